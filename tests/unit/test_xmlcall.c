/* test_xmlcall.c — the Qwen3-Coder forced-call grammar (fcgi_xml_params_gbnf):
 * the GBNF it writes for a tool's parameters schema compiles (grammar_gbnf.c) and
 * accepts exactly the call bodies the schema allows, in the model's XML syntax.
 * References: the format as Qwen3-Coder's chat template writes it (samples below),
 * and for raw string values libc's strstr over random strings built from the
 * closing tags' pieces (a value may not contain "</parameter>" nor "</tool_call>"). */
#include <stdint.h>

#include "constrain.h"
#include "grammar.h"
#include "t.h"

static grammar *compile_schema(const char *schema, int *unsupported) {
    jv_arena *ar = jv_arena_new(1 << 20);
    jv v;
    err e = {0};
    *unsupported = 0;
    if (!ar || jv_parse(ar, schema, strlen(schema), 64, &v, &e)) { jv_arena_free(ar); return NULL; }
    jv_buf b;
    jv_buf_init(&b, 1 << 20);
    int rc = fcgi_xml_params_gbnf(&v, &b);
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
    T_DONE();
}
