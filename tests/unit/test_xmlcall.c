/* test_xmlcall.c — the forced-call grammars of the markup formats: Qwen3-Coder's
 * XML (fcgi_xml_params_gbnf), DeepSeek V3.2's DSML (fcgi_dsml_params_gbnf) and
 * "required" over several tools (fcgi_calls_gbnf: one tool's name, then that
 * tool's parameters). The GBNF compiles (grammar_gbnf.c) and accepts exactly the
 * call bodies the schema allows, in the model's syntax. References: the formats as
 * Qwen3-Coder's and V3.2's chat templates write them (samples below), and for raw
 * string values libc's strstr over random strings built from the closing tags'
 * pieces (an XML value may not contain "</parameter>" nor "</tool_call>"; a DSML
 * value not "｜DSML｜"). */
#include <stdint.h>

#include "constrain.h"
#include "grammar.h"
#include "t.h"

static grammar *compile_with(int (*gen)(const jv *, jv_buf *), const char *schema, int *unsupported) {
    jv_arena *ar = jv_arena_new(1 << 20);
    jv v;
    err e = {0};
    *unsupported = 0;
    if (!ar || jv_parse(ar, schema, strlen(schema), 64, &v, &e)) { jv_arena_free(ar); return NULL; }
    jv_buf b;
    jv_buf_init(&b, 1 << 20);
    int rc = gen(&v, &b);
    grammar *g = NULL;
    if (rc == 1) *unsupported = 1;
    else if (rc == 0 && grammar_compile(&g, NULL, GRAMMAR_GBNF, b.p, b.n, NULL, &e)) {
        printf("# compile: %s\n%.*s\n", e.msg, (int)b.n, b.p);
        g = NULL;
    }
    jv_buf_free(&b);
    jv_arena_free(ar);
    return g;
}

static grammar *compile_schema(const char *schema, int *unsupported) {
    return compile_with(fcgi_xml_params_gbnf, schema, unsupported);
}

/* fcgi_calls_gbnf over a JSON list of chat-shape tools */
static grammar *compile_calls(const char *tools, int dsml) {
    jv_arena *ar = jv_arena_new(1 << 20);
    jv v;
    err e = {0};
    if (!ar || jv_parse(ar, tools, strlen(tools), 64, &v, &e)) { jv_arena_free(ar); return NULL; }
    fcgi_gen g;
    memset(&g, 0, sizeof g);
    g.tools = &v;
    jv_buf b;
    jv_buf_init(&b, 1 << 20);
    grammar *gr = NULL;
    if (fcgi_calls_gbnf(&g, dsml, &b) == 0 && grammar_compile(&gr, NULL, GRAMMAR_GBNF, b.p, b.n, NULL, &e)) {
        printf("# compile: %s\n%.*s\n", e.msg, (int)b.n, b.p);
        gr = NULL;
    }
    jv_buf_free(&b);
    jv_arena_free(ar);
    return gr;
}

/* 1 if the whole body matches */
static int matches(const grammar *g, const char *body) {
    grammar_state *st = NULL;
    err e = {0};
    if (grammar_state_new(&st, g, &e)) return -1;
    int r = grammar_state_accept_bytes(st, body, strlen(body), &e) == 0 && grammar_state_can_end(st);
    grammar_state_free(st);
    return r;
}

#define P(k, v) "<parameter=" k ">\n" v "\n</parameter>\n"

int main(void) {
    int uns;
    const char *schema =
        "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"description\":\"a city\"},"
        "\"days\":{\"type\":\"integer\"},\"unit\":{\"type\":\"string\",\"enum\":[\"c\",\"f\\\"q\"]},"
        "\"exact\":{\"type\":\"boolean\"},\"w\":{\"type\":\"number\"},\"tags\":{\"type\":\"array\",\"items\":{}},"
        "\"opt\":{\"type\":\"object\"}},\"required\":[\"city\",\"days\"]}";
    grammar *g = compile_schema(schema, &uns);
    T_OK(g != NULL, "the GBNF of a 7-property schema compiles");
    if (!g) T_DONE();
    struct { const char *body; int want; const char *what; } cases[] = {
        {P("city", "Oslo") P("days", "3") "</function>", 1, "required parameters only"},
        {P("city", "Oslo, \"Norway\" <b>x</b> </param") P("days", "-12") P("unit", "f\"q") P("exact", "false")
         P("w", "2.5e-3") P("tags", "[1, \"a\", {\"k\":null}]") P("opt", "{\"a\": [true]}") "</function>", 1,
         "every parameter, in order, with quotes, tags and JSON"},
        {P("city", "multi\nline\n\nvalue") P("days", "0") "</function>", 1, "a multi-line string"},
        {P("city", "") P("days", "0") "</function>", 1, "an empty string"},
        {P("city", "Oslo") "</function>", 0, "a required parameter missing"},
        {P("days", "3") P("city", "Oslo") "</function>", 0, "parameters out of the schema's order"},
        {P("cit", "Oslo") P("days", "3") "</function>", 0, "a key not in the schema"},
        {P("city", "Oslo") P("days", "3.5") "</function>", 0, "a non-integer for an integer"},
        {P("city", "Oslo") P("days", "03") "</function>", 0, "a leading zero"},
        {P("city", "Oslo") P("days", "three") "</function>", 0, "a word for an integer"},
        {P("city", "Oslo\n</parameter>\nx") P("days", "3") "</function>", 0, "a string containing \\n</parameter>"},
        {P("city", "a</parameter>b") P("days", "3") "</function>", 0, "a string containing </parameter>"},
        {P("city", "a</tool_call>") P("days", "3") "</function>", 0, "a string containing </tool_call>"},
        {P("city", "Oslo") P("days", "3") P("unit", "k") "</function>", 0, "a string outside its enum"},
        {P("city", "Oslo") P("days", "3") P("exact", "yes") "</function>", 0, "a non-boolean"},
        {P("city", "Oslo") P("days", "3") P("tags", "{}") "</function>", 0, "an object for an array"},
        {P("city", "Oslo") P("days", "3") P("opt", "{\"a\":\"</x>\"}") "</function>", 0,
         "a JSON string with </ (the parser could cut there)"},
        {P("city", "Oslo") P("days", "3"), 0, "no </function>"},
        {"<parameter=city>\nOslo</parameter>\n" P("days", "3") "</function>", 0, "the value's closing newline missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        T_OK(matches(g, cases[i].body) == cases[i].want, "%s: %s", cases[i].want ? "accepted" : "refused",
             cases[i].what);
    grammar_free(g);

    /* raw strings against strstr: random strings over the tags' pieces */
    g = compile_schema("{\"properties\":{\"s\":{\"type\":\"string\"}},\"required\":[\"s\"]}", &uns);
    T_OK(g != NULL, "a one-string schema compiles");
    if (g) {
        static const char *const bits[] = {"<", "/", "p", "parameter", "parameter>", ">", "t", "tool_call", "tool_call>",
                                           "\n", "a", "</", "</p", "</t", "é", "<<",
                                           "</parameter>", "</tool_call>", "</paramete", "</tool_cal"};
        uint64_t x = 0x9e3779b97f4a7c15u;
        int agree = 0, n_bad = 0, total = 2000;
        for (int k = 0; k < total; k++) {
            char val[256] = "", body[400];
            int parts = 1 + (int)(k % 9);
            for (int j = 0; j < parts; j++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                strcat(val, bits[x % (sizeof bits / sizeof bits[0])]);
            }
            snprintf(body, sizeof body, "<parameter=s>\n%s\n</parameter>\n</function>", val);
            int want = !strstr(val, "</parameter>") && !strstr(val, "</tool_call>");
            n_bad += !want;
            agree += matches(g, body) == want;
        }
        T_OK(agree == total && n_bad > 20, "raw string values: the grammar agrees with strstr on %d/%d random values "
             "(%d with a closing tag)", agree, total, n_bad);
        grammar_free(g);
    }

    g = compile_schema("{\"type\":\"object\"}", &uns);
    T_OK(g && matches(g, "</function>") == 1 && matches(g, P("x", "1") "</function>") == 0,
         "no properties: only </function>");
    grammar_free(g);
    g = compile_schema("{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/x\"}}}", &uns);
    T_OK(!g && uns, "a $ref property: not expressible (prefill only)");
    g = compile_schema("{\"anyOf\":[{\"type\":\"object\"}]}", &uns);
    T_OK(!g && uns, "anyOf at the top: not expressible (prefill only)");
    g = compile_schema("{\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":3}}}", &uns);
    T_OK(!g && uns, "a bound it would not enforce: not expressible (prefill only)");
    g = compile_schema("{\"properties\":{\"a\":{\"type\":[\"string\",\"null\"]}}}", &uns);
    T_OK(!g && uns, "a list of types: not expressible (prefill only)");
    g = compile_schema("{\"properties\":{\"a\":{}},\"required\":[\"b\"]}", &uns);
    T_OK(!g && uns, "a required name that is not a property: not expressible");
    g = compile_schema("{\"properties\":{\"k\\\"\\\\ey\":{\"type\":\"integer\",\"enum\":[1,22]}},\"required\":[\"k\\\"\\\\ey\"]}",
                       &uns);
    T_OK(g && matches(g, P("k\"\\ey", "22") "</function>") == 1 && matches(g, P("k\"\\ey", "2") "</function>") == 0,
         "a key with a quote and a backslash (escaped in the GBNF literal); an integer enum");
    grammar_free(g);

    /* ---- DeepSeek V3.2's DSML parameters */
#define BAR "\xef\xbd\x9c"
#define DP(k, s, v) "<" BAR "DSML" BAR "parameter name=\"" k "\" string=\"" s "\">" v "</" BAR "DSML" BAR "parameter>\n"
#define DEND "</" BAR "DSML" BAR "invoke>"
    g = compile_with(fcgi_dsml_params_gbnf, schema, &uns);
    T_OK(g != NULL, "the DSML GBNF of the 7-property schema compiles");
    if (g) {
        struct { const char *body; int want; const char *what; } dc[] = {
            {DP("city", "true", "Oslo") DP("days", "false", "3") DEND, 1, "required parameters only, as V3.2's template writes them"},
            {DP("city", "true", "Oslo, \"N\" <b>x</b> </" BAR "DSM") DP("days", "false", "-12") DP("unit", "true", "f\"q")
             DP("exact", "false", "false") DP("w", "false", "2.5e-3") DP("tags", "false", "[1, \"a\", {\"k\":null}]")
             DP("opt", "false", "{\"a\": [true]}") DEND, 1, "every parameter in order, quotes, tags, a broken marker, JSON"},
            {DP("city", "true", "multi\nline") DP("days", "false", "0") DEND, 1, "a multi-line string"},
            {DP("city", "true", "") DP("days", "false", "0") DEND, 1, "an empty string"},
            {DP("city", "false", "Oslo") DP("days", "false", "3") DEND, 0, "string=\"false\" for a string"},
            {DP("city", "true", "Oslo") DP("days", "true", "3") DEND, 0, "string=\"true\" for an integer"},
            {DP("city", "true", "Oslo") DEND, 0, "a required parameter missing"},
            {DP("days", "false", "3") DP("city", "true", "Oslo") DEND, 0, "out of the schema's order"},
            {DP("cit", "true", "Oslo") DP("days", "false", "3") DEND, 0, "a key not in the schema"},
            {DP("city", "true", "Oslo") DP("days", "false", "3.5") DEND, 0, "a non-integer for an integer"},
            {DP("city", "true", "a</" BAR "DSML" BAR "parameter>b") DP("days", "false", "3") DEND, 0,
             "a string holding the parameter's closing marker"},
            {DP("city", "true", "a<" BAR "DSML" BAR "invoke") DP("days", "false", "3") DEND, 0,
             "a string holding an invoke marker"},
            {DP("city", "true", "Oslo") DP("days", "false", "3") DP("unit", "true", "k") DEND, 0, "outside the enum"},
            {DP("city", "true", "Oslo") DP("days", "false", "3") DP("exact", "false", "yes") DEND, 0, "a non-boolean"},
            {DP("city", "true", "Oslo") DP("days", "false", "3") DP("opt", "false", "{\"a\":\"" BAR "\"}") DEND, 0,
             "a JSON string holding the bar (it could spell a marker)"},
            {DP("city", "true", "Oslo") DP("days", "false", "3"), 0, "no </｜DSML｜invoke>"},
        };
        for (size_t i = 0; i < sizeof dc / sizeof dc[0]; i++)
            T_OK(matches(g, dc[i].body) == dc[i].want, "DSML %s: %s", dc[i].want ? "accepted" : "refused", dc[i].what);
        grammar_free(g);
    }
    g = compile_with(fcgi_dsml_params_gbnf, "{\"properties\":{\"s\":{\"type\":\"string\"}},\"required\":[\"s\"]}", &uns);
    T_OK(g != NULL, "DSML: a one-string schema compiles");
    if (g) {
        static const char *const bits[] = {BAR, "D", "S", "M", "L", "DSML", BAR "DSML", "DSML" BAR, BAR "D", "x",
                                           "<", "/", "\n", BAR BAR, "DS", "SML", "é", "parameter>"};
        uint64_t x = 0x2545f4914f6cdd1du;
        int agree = 0, n_bad = 0, total = 3000;
        for (int k = 0; k < total; k++) {
            char val[256] = "", body[600];
            int parts = 1 + (int)(k % 11);
            for (int j = 0; j < parts; j++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                strcat(val, bits[x % (sizeof bits / sizeof bits[0])]);
            }
            snprintf(body, sizeof body, DP("s", "true", "%s") DEND, val);
            int want = !strstr(val, BAR "DSML" BAR);
            n_bad += !want;
            agree += matches(g, body) == want;
        }
        T_OK(agree == total && n_bad > 50, "DSML raw strings: the grammar agrees with strstr on %d/%d random values "
             "(%d holding ｜DSML｜)", agree, total, n_bad);
        grammar_free(g);
    }
    g = compile_with(fcgi_dsml_params_gbnf, "{\"properties\":{\"k\":{\"enum\":[\"a" BAR "DSML" BAR "\"]}}}", &uns);
    T_OK(!g && uns, "DSML: an enum string holding ｜DSML｜: not expressible (prefill only)");
    g = compile_with(fcgi_dsml_params_gbnf, "{\"properties\":{\"k\\\"\":{\"type\":\"string\"}}}", &uns);
    T_OK(!g && uns, "DSML: a key with a quote: not expressible");

    /* ---- "required" over several tools: one grammar, a name then that tool's parameters */
    const char *tools =
        "[{\"type\":\"function\",\"function\":{\"name\":\"get\",\"parameters\":{\"type\":\"object\","
        "\"properties\":{\"n\":{\"type\":\"integer\"}},\"required\":[\"n\"]}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"parameters\":{\"type\":\"object\","
        "\"properties\":{\"tz\":{\"type\":\"string\",\"enum\":[\"UTC\",\"CET\"]}},\"required\":[\"tz\"]}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"any\",\"parameters\":{\"anyOf\":[{\"type\":\"object\"}]}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"bare\"}}]";
    g = compile_calls(tools, 0);
    T_OK(g != NULL, "XML: the GBNF of 4 tools compiles");
    if (g) {
        struct { const char *body; int want; const char *what; } rc[] = {
            {"get>\n" P("n", "3") "</function>", 1, "get(n=3)"},
            {"get_time>\n" P("tz", "CET") "</function>", 1, "get_time(tz=CET): a name with another as its prefix"},
            {"get>\n" P("tz", "CET") "</function>", 0, "get with get_time's parameter"},
            {"get_time>\n" P("n", "3") "</function>", 0, "get_time with get's parameter"},
            {"get_time>\n" P("tz", "PST") "</function>", 0, "get_time outside its enum"},
            {"gets>\n" P("n", "3") "</function>", 0, "a name that is no tool's"},
            {"get>" P("n", "3") "</function>", 0, "the newline after the name missing"},
            {"any>\n" P("whatever", "x y") P("k", "1") "</function>", 1,
             "a schema the markup cannot express: any parameters"},
            {"any>\n<parameter=k>\na</tool_call>\n</parameter>\n</function>", 0,
             "... whose raw values still never close the call"},
            {"bare>\n</function>", 1, "a tool without parameters"},
            {"bare>\n" P("n", "3") "</function>", 0, "... takes none"},
        };
        for (size_t i = 0; i < sizeof rc / sizeof rc[0]; i++)
            T_OK(matches(g, rc[i].body) == rc[i].want, "XML required %s: %s", rc[i].want ? "accepted" : "refused",
                 rc[i].what);
        grammar_free(g);
    }
    g = compile_calls(tools, 1);
    T_OK(g != NULL, "DSML: the GBNF of 4 tools compiles");
    if (g) {
        struct { const char *body; int want; const char *what; } rc[] = {
            {"get\">\n" DP("n", "false", "3") DEND, 1, "get(n=3)"},
            {"get_time\">\n" DP("tz", "true", "UTC") DEND, 1, "get_time(tz=UTC)"},
            {"get\">\n" DP("tz", "true", "UTC") DEND, 0, "get with get_time's parameter"},
            {"gett\">\n" DP("n", "false", "3") DEND, 0, "a name that is no tool's"},
            {"any\">\n" DP("x", "true", "a b") DP("y", "false", "[1]") DEND, 1, "any parameters for an anyOf schema"},
            {"any\">\n" DP("y", "false", "[1") DEND, 0, "... string=\"false\" still JSON"},
            {"bare\">\n" DEND, 1, "a tool without parameters"},
        };
        for (size_t i = 0; i < sizeof rc / sizeof rc[0]; i++)
            T_OK(matches(g, rc[i].body) == rc[i].want, "DSML required %s: %s", rc[i].want ? "accepted" : "refused",
                 rc[i].what);
        grammar_free(g);
    }
    T_DONE();
}
