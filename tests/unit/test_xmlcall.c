/* test_xmlcall.c — the forced-call grammars of the markup formats: Qwen3-Coder's
 * XML (fcgi_xml_params_gbnf), DeepSeek V3.2's DSML (fcgi_dsml_params_gbnf) and
 * "required" over several tools (fcgi_calls_gbnf: one tool's name, then that
 * tool's parameters). The GBNF compiles (grammar_gbnf.c) and accepts exactly the
 * call bodies the schema allows, in the model's syntax. References: the formats as
 * Qwen3-Coder's and V3.2's chat templates write them (samples below), and for raw
 * string values libc's strstr over random strings built from the closing tags'
 * pieces (an XML value may not contain "</parameter>" nor "</tool_call>"; a DSML
 * value not "｜DSML｜"). Nested object / array values under their sub-schema: samples
 * as tojson writes them, random arrays of objects whose validity is decided while they
 * are written (part by part, by construction), and mutated schemas whose GBNF must
 * always compile. */
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

    /* ---- nested object / array values under their sub-schema (tojson spacing, or none) */
    const char *nest =
        "{\"type\":\"object\",\"properties\":{"
        "\"trip\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"},"
        "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":2},\"mode\":{\"enum\":[\"car\",\"train\"]}},"
        "\"required\":[\"city\"],\"additionalProperties\":false},"
        "\"stops\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
        "\"nights\":{\"type\":\"integer\"},\"ok\":{\"type\":\"boolean\"}},\"required\":[\"name\",\"nights\"]},\"minItems\":1},"
        "\"free\":{\"type\":\"object\",\"additionalProperties\":true},"
        "\"loose\":{\"type\":\"array\",\"items\":{\"anyOf\":[{\"type\":\"integer\"}]}},"
        "\"u\":{\"properties\":{\"a\":{\"type\":\"null\"},\"n\":{\"const\":2.5}},\"required\":[\"a\"]}"
        "},\"required\":[\"trip\"]}";
#define TRIP_OK P("trip", "{\"city\": \"Oslo\"}")
    g = compile_schema(nest, &uns);
    T_OK(g != NULL, "the GBNF of a schema with nested objects and arrays compiles");
    if (g) {
        struct { const char *body; int want; const char *what; } nc[] = {
            {TRIP_OK "</function>", 1, "a nested object with its required key"},
            {P("trip", "{\"city\": \"Oslo\", \"days\": 3, \"tags\": [\"a\", \"b\"], \"mode\": \"train\"}") "</function>", 1,
             "every nested key, tojson spacing"},
            {P("trip", "{\"city\":\"Oslo\",\"days\":3,\"tags\":[]}") "</function>", 1, "compact spacing, an empty array"},
            {P("trip", "{\"days\": 3}") "</function>", 0, "a required nested key missing"},
            {P("trip", "{}") "</function>", 0, "an empty object with a required key"},
            {P("trip", "{\"city\": \"Oslo\", \"days\": \"3\"}") "</function>", 0, "a string for a nested integer"},
            {P("trip", "{\"city\": 5}") "</function>", 0, "an integer for a nested string"},
            {P("trip", "{\"city\": \"Oslo\", \"x\": 1}") "</function>", 0, "an extra key (additionalProperties false)"},
            {P("trip", "{\"city\": \"Oslo\", \"tags\": [\"a\", \"b\", \"c\"]}") "</function>", 0, "more items than maxItems"},
            {P("trip", "{\"city\": \"Oslo\", \"tags\": [1]}") "</function>", 0, "an array item of the wrong type"},
            {P("trip", "{\"city\": \"Oslo\", \"mode\": \"bus\"}") "</function>", 0, "a nested value outside its enum"},
            {P("trip", "{\"city\": \"a</b\"}") "</function>", 0, "a nested string holding </"},
            {P("trip", "[\"Oslo\"]") "</function>", 0, "an array for an object"},
            {TRIP_OK P("stops", "[{\"name\": \"Bergen\", \"nights\": 2}, {\"name\": \"Voss\", \"nights\": 1, \"ok\": true}]")
             "</function>", 1, "an array of objects (additionalProperties absent, properties declared)"},
            {TRIP_OK P("stops", "[]") "</function>", 0, "fewer items than minItems"},
            {TRIP_OK P("stops", "[{\"name\": \"Bergen\"}]") "</function>", 0, "an item missing a required key"},
            {TRIP_OK P("stops", "[{\"name\": \"Bergen\", \"nights\": 2.5}]") "</function>", 0, "an item's integer as 2.5"},
            {TRIP_OK P("stops", "[{\"name\": \"Bergen\", \"nights\": 2, \"x\": 0}]") "</function>", 0,
             "an item with an undeclared key (strict as grammar_schema.c)"},
            {TRIP_OK P("free", "{\"anything\": [1, {\"b\": null}]}") "</function>", 1,
             "additionalProperties true: any object"},
            {TRIP_OK P("free", "[1]") "</function>", 0, "... still an object"},
            {TRIP_OK P("loose", "[1, \"x\", {}]") "</function>", 1, "items anyOf (not expressible): any array"},
            {TRIP_OK P("u", "{\"a\": null}") "</function>", 1, "untyped with properties: an object"},
            {TRIP_OK P("u", "{\"a\": null, \"n\": 2.5}") "</function>", 1, "... a nested const"},
            {TRIP_OK P("u", "{\"a\": null, \"n\": 2}") "</function>", 0, "... a value other than the const"},
            {TRIP_OK P("u", "{\"a\": 1}") "</function>", 0, "... the wrong nested type"},
            {TRIP_OK P("u", "{}") "</function>", 0, "... its required key missing"},
        };
        for (size_t i = 0; i < sizeof nc / sizeof nc[0]; i++)
            T_OK(matches(g, nc[i].body) == nc[i].want, "nested %s: %s", nc[i].want ? "accepted" : "refused", nc[i].what);
        /* random "stops" arrays, each part valid or not by construction (the verdict is
         * the schema's, decided while writing, not by the grammar's code) */
        uint64_t x = 0x853c49e6748fea9bu;
#define RND(m) (x ^= x << 13, x ^= x >> 7, x ^= x << 17, (int)(x % (m)))
        static const char *const names[] = {"\"Bergen\"", "\"a<b\"", "\"x</y\"", "\"\"", "7", "null"};
        static const int name_ok[] = {1, 1, 0, 1, 0, 0};
        static const char *const nights[] = {"2", "0", "-3", "2.5", "\"2\"", "true", "1e2"};
        static const int nights_ok[] = {1, 1, 1, 0, 0, 0, 0};
        int agree = 0, n_valid = 0, total = 1500;
        for (int k = 0; k < total; k++) {
            char val[1024] = "[", body[1400];
            int n = RND(4), valid = n >= 1;
            for (int i = 0; i < n; i++) {
                if (i) strcat(val, RND(2) ? ", " : ",");
                strcat(val, "{");
                int first = 1, has_name = RND(20) > 0, has_n = RND(20) > 0;
                if (has_name) {
                    int j = RND(4) ? RND(2) : RND(6);
                    strcat(val, "\"name\": ");
                    strcat(val, names[j]);
                    valid &= name_ok[j];
                    first = 0;
                } else valid = 0;
                if (has_n) {
                    int j = RND(4) ? RND(3) : RND(7);
                    strcat(val, first ? "\"nights\": " : ", \"nights\": ");
                    strcat(val, nights[j]);
                    valid &= nights_ok[j];
                    first = 0;
                } else valid = 0;
                if (RND(2)) {
                    int j = RND(5) ? RND(2) : 2;
                    strcat(val, first ? "\"ok\": " : ", \"ok\": ");
                    strcat(val, j == 0 ? "true" : j == 1 ? "false" : "\"yes\"");
                    valid &= j < 2;
                    first = 0;
                }
                if (RND(20) == 0) {
                    strcat(val, first ? "\"zz\": 1" : ", \"zz\": 1");
                    valid = 0;
                }
                strcat(val, "}");
            }
            strcat(val, "]");
            snprintf(body, sizeof body, TRIP_OK P("stops", "%s") "</function>", val);
            n_valid += valid;
            agree += matches(g, body) == valid;
        }
        T_OK(agree == total && n_valid > 100 && n_valid < total - 100,
             "random nested arrays of objects: the grammar agrees with the schema on %d/%d (%d valid)", agree, total,
             n_valid);
        grammar_free(g);
    }
    /* mutated nested schemas: whatever parses as JSON either compiles or is refused as
     * not expressible (1), for both markups; never GBNF the compiler rejects */
    {
        uint64_t x = 0x9fb21c651e98df25u;
        static const char pieces[] = "{}[]\",:01-e.tnfa\\";
        static const char *const words[] = {"\"type\"", "\"object\"", "\"array\"", "\"items\"", "\"properties\"",
                                            "\"required\"", "\"enum\"", "\"const\"", "\"minItems\"", "\"maxItems\"",
                                            "\"additionalProperties\"", "false", "true", "null", "\"</\"", "\"\xef\xbd\x9c\"",
                                            "99", "-1", "2.0", "{}", "[]"};
        int parsed = 0, fine = 0, n_ok = 0, total = 3000;
        for (int k = 0; k < total; k++) {
            char m[2048];
            snprintf(m, sizeof m, "%s", nest);
            for (int c = 1 + RND(3); c > 0; c--) {
                size_t L = strlen(m), at = (size_t)RND((uint64_t)L);
                if (RND(2)) { /* a word in */
                    const char *w = words[RND(sizeof words / sizeof words[0])];
                    if (L + strlen(w) + 1 >= sizeof m) continue;
                    memmove(m + at + strlen(w), m + at, L - at + 1);
                    memcpy(m + at, w, strlen(w));
                } else if (RND(2)) m[at] = pieces[RND(sizeof pieces - 1)];
                else memmove(m + at, m + at + 1, L - at);
            }
            jv_arena *ar = jv_arena_new(1 << 20);
            jv v;
            err e = {0};
            if (ar && jv_parse(ar, m, strlen(m), 64, &v, &e) == 0) {
                parsed++;
                int good = 1;
                for (int dsml = 0; dsml < 2; dsml++) {
                    jv_buf b;
                    jv_buf_init(&b, 1 << 20);
                    int rc = dsml ? fcgi_dsml_params_gbnf(&v, &b) : fcgi_xml_params_gbnf(&v, &b);
                    grammar *gg = NULL;
                    if (rc == 0 && grammar_compile(&gg, NULL, GRAMMAR_GBNF, b.p, b.n, NULL, &e)) {
                        good = 0;
                        if (fine == n_ok) printf("# mutated schema %s -> %s\n", m, e.msg);
                    }
                    fine += rc == 0 && !dsml;
                    grammar_free(gg);
                    jv_buf_free(&b);
                }
                n_ok += good;
            }
            jv_arena_free(ar);
        }
        T_OK(n_ok == parsed && parsed > 300 && fine > 100,
             "%d mutated nested schemas that parse: every generated GBNF compiles (%d/%d; %d expressible)", parsed,
             n_ok, parsed, fine);
    }
    /* nesting past the followed depth: any JSON object there */
    {
        char deep[4096] = "{\"properties\":{\"v\":", val[512] = "";
        for (int i = 0; i < 24; i++) strcat(deep, "{\"type\":\"object\",\"properties\":{\"k\":");
        strcat(deep, "{\"type\":\"integer\"}");
        for (int i = 0; i < 24; i++) strcat(deep, "},\"required\":[\"k\"]}");
        strcat(deep, "},\"required\":[\"v\"]}");
        g = compile_schema(deep, &uns);
        char body[1024];
        for (int i = 0; i < 24; i++) strcat(val, "{\"k\": ");
        strcat(val, "7");
        for (int i = 0; i < 24; i++) strcat(val, "}");
        snprintf(body, sizeof body, P("v", "%s") "</function>", val);
        int deep_ok = g && matches(g, body) == 1;
        char bad[1024];
        snprintf(bad, sizeof bad, P("v", "{\"k\": \"x\"}") "</function>");
        T_OK(deep_ok && matches(g, bad) == 0,
             "24 nested levels: compiles, a valid value accepted, a wrong type at the top refused");
        grammar_free(g);
    }

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
    g = compile_with(fcgi_dsml_params_gbnf, nest, &uns);
    T_OK(g != NULL, "DSML: the nested schema compiles");
    if (g) {
#define DTRIP DP("trip", "false", "{\"city\": \"Oslo\"}")
        struct { const char *body; int want; const char *what; } dn[] = {
            {DTRIP DEND, 1, "a nested object, string=\"false\""},
            {DTRIP DP("stops", "false", "[{\"name\": \"B\", \"nights\": 2}]") DEND, 1, "an array of objects"},
            {DP("trip", "true", "{\"city\": \"Oslo\"}") DEND, 0, "string=\"true\" for an object"},
            {DP("trip", "false", "{\"days\": 1}") DEND, 0, "a required nested key missing"},
            {DP("trip", "false", "{\"city\": \"Oslo\", \"z\": 1}") DEND, 0, "an extra nested key"},
            {DTRIP DP("stops", "false", "[{\"name\": \"B\", \"nights\": \"2\"}]") DEND, 0, "an item's wrong type"},
            {DP("trip", "false", "{\"city\": \"" BAR "\"}") DEND, 0, "a nested string holding the bar"},
        };
        for (size_t i = 0; i < sizeof dn / sizeof dn[0]; i++)
            T_OK(matches(g, dn[i].body) == dn[i].want, "DSML nested %s: %s", dn[i].want ? "accepted" : "refused",
                 dn[i].what);
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
