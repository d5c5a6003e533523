/* test_grammar.c — the grammar engine without a model.
 *
 *  1. byte-level matching: known strings in and out of small grammars of every kind;
 *  2. the hostile table: schemas, regexes, GBNF and choices that must fail with exactly
 *     this error (deep nesting, recursion without a way out, huge enums, regex blow-ups,
 *     minItems 10^9, unsupported keywords, left recursion...), each within 2 seconds;
 *  3. masks against brute force: over a toy vocabulary (single bytes, multi-byte tokens
 *     that cross grammar boundaries, partial UTF-8, end tokens) every step of random
 *     walks must allow exactly the tokens whose bytes a fresh state accepts after the
 *     same prefix — through the cached verdicts, the uncertain tokens and (with a small
 *     max_depth) the walk from the real stack;
 *  4. bounds: nesting stops at max_depth, a long loop keeps the state working.
 * The reference for 3 is the engine's own byte-level matcher (grammar_state_accept_bytes),
 * itself checked in 1 and against llguidance and jsonschema in tests/grammar. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grammar.h"
#include "t.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------ 1. matching */

typedef struct match_case {
    grammar_kind kind;
    const char *text;
    const char *input;
    int ok;      /* bytes accepted */
    int can_end; /* when accepted */
} match_case;

static const match_case MATCH[] = {
    {GRAMMAR_REGEX, "[a-c]+x?", "abca", 1, 1},
    {GRAMMAR_REGEX, "[a-c]+x?", "abcax", 1, 1},
    {GRAMMAR_REGEX, "[a-c]+x?", "abcaxx", 0, 0},
    {GRAMMAR_REGEX, "(ab|a)(bc|c)", "ab", 1, 0},
    {GRAMMAR_REGEX, "(ab|a)(bc|c)", "abc", 1, 1},
    {GRAMMAR_REGEX, "a{2,3}", "aaa", 1, 1},
    {GRAMMAR_REGEX, "a{2,3}", "aaaa", 0, 0},
    {GRAMMAR_REGEX, "\\u00e9\\x41.", "\xc3\xa9" "A\xe4\xb8\xad", 1, 1},
    {GRAMMAR_REGEX, ".", "\n", 0, 0},
    {GRAMMAR_REGEX, "[^a]", "\xf0\x9f\x99\x82", 1, 1},
    {GRAMMAR_REGEX, "[^a]", "\xed\xa0\x80", 0, 0}, /* a surrogate is no character */
    {GRAMMAR_REGEX, "^\\d\\s\\w$", "1 _", 1, 1},
    {GRAMMAR_REGEX, "x{0}y", "y", 1, 1},
    {GRAMMAR_CHOICE, "[\"yes\", \"no\", \"n/a\"]", "n", 1, 0},
    {GRAMMAR_CHOICE, "[\"yes\", \"no\", \"n/a\"]", "no", 1, 1},
    {GRAMMAR_CHOICE, "[\"yes\", \"no\", \"n/a\"]", "nope", 0, 0},
    {GRAMMAR_GBNF, "root ::= \"a\" b* \"c\"\nb ::= [x-z] | \"q\"", "axqzc", 1, 1},
    {GRAMMAR_GBNF, "root ::= \"a\" b* \"c\"\nb ::= [x-z] | \"q\"", "axPc", 0, 0},
    {GRAMMAR_GBNF, "root ::= x\nx ::= \"(\" x \")\" | \"\"  # nested parentheses", "(())", 1, 1},
    {GRAMMAR_GBNF, "root ::= x\nx ::= \"(\" x \")\" | \"\"", "(()", 1, 0},
    {GRAMMAR_GBNF, "root ::= [^\\n]{2} \"\\u00e9\" .", "ab\xc3\xa9\n", 1, 1},
    {GRAMMAR_GBNF, "root ::= (\"a\" | \"b\")\n  # comment\n", "b", 1, 1},
    {GRAMMAR_GBNF, "root ::= a*\na ::= b*\nb ::= \"x\"", "xxx", 1, 1}, /* nullable in a loop */
    {GRAMMAR_JSON_OBJECT, NULL, "{\"a\":[1,{\"b\":null}],\"c\":\"\\u001f\\n\"}", 1, 1},
    {GRAMMAR_JSON_OBJECT, NULL, "[]", 0, 0},
    {GRAMMAR_JSON_OBJECT, NULL, "{\"a\":01}", 0, 0},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":-5,\"maximum\":120}},"
                          "\"required\":[\"a\"],\"additionalProperties\":false}",
     "{\"a\":-5}", 1, 1},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":-5,\"maximum\":120}},"
                          "\"required\":[\"a\"],\"additionalProperties\":false}",
     "{\"a\":121}", 0, 0},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"}},"
                          "\"additionalProperties\":false}",
     "{\"b\":\"x\"}", 1, 1}, /* optional a left out */
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"}},"
                          "\"additionalProperties\":false}",
     "{\"b\":\"x\",\"a\":1}", 0, 0}, /* declared order */
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"additionalProperties\":true}",
     "{\"a\":1,\"ab\":[true]}", 1, 1},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"additionalProperties\":true}",
     "{\"a\":1,\"a\":", 0, 0}, /* an extra key never repeats a declared one */
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},\"minItems\":2,\"maxItems\":3}", "[true,false]", 1, 1},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},\"minItems\":2,\"maxItems\":3}", "[true", 1, 0},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},\"minItems\":2,\"maxItems\":3}", "[true]", 0, 0},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},\"minItems\":2,\"maxItems\":3}",
     "[true,true,true,true", 0, 0},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"number\",\"minimum\":0,\"exclusiveMaximum\":10}", "9.99", 1, 1},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"number\",\"minimum\":0,\"exclusiveMaximum\":10}", "10", 0, 0},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"number\",\"minimum\":0,\"maximum\":10}", "10.000", 1, 1},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"number\",\"minimum\":0,\"exclusiveMaximum\":10}", "-0.5", 0, 0},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"string\",\"pattern\":\"b+\"}", "\"abbc\"", 1, 1}, /* searched */
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"string\",\"pattern\":\"^a\\\"\"}", "\"a\\\"\"", 1, 1},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"string\",\"format\":\"date\"}", "\"2024-02-29\"", 1, 1},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"string\",\"format\":\"date\"}", "\"2023-02-29\"", 0, 0},
    {GRAMMAR_JSON_SCHEMA, "{\"enum\":[\"a\\nb\",{\"k\":[1]}]}", "\"a\\u000Ab\"", 1, 1},
    {GRAMMAR_JSON_SCHEMA, "{\"enum\":[\"a\\nb\",{\"k\":[1]}]}", "{\"k\":[1]}", 1, 1},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":[\"string\",\"null\"],\"maxLength\":2}", "\"ab\"", 1, 1},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":[\"string\",\"null\"],\"maxLength\":2}", "\"abc", 0, 0},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":[\"string\",\"null\"],\"maxLength\":2}", "null", 1, 1},
    {GRAMMAR_JSON_SCHEMA,
     "{\"$defs\":{\"t\":{\"type\":\"object\",\"properties\":{\"k\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/t\"}}},"
     "\"required\":[\"k\"],\"additionalProperties\":false}},\"$ref\":\"#/$defs/t\"}",
     "{\"k\":[{\"k\":[]},{\"k\":[{\"k\":[]}]}]}", 1, 1},
};

/* ------------------------------------------------------------------ 2. hostile table */

typedef struct hostile_case {
    grammar_kind kind;
    const char *text; /* NULL: made by make_text(i) */
    err_code code;
    const char *msg; /* the whole message */
} hostile_case;

static const hostile_case HOSTILE[] = {
    /* 0..3 are generated (see make_text) */
    {GRAMMAR_JSON_SCHEMA, NULL, ERR_INVALID,
     "$.items.items.items.items.items.items.it...ms.items.items.items.items.items.items.items.items.items.items.items."
     "items.items.items.items.items.items.items: schemas nested deeper than 64"},
    {GRAMMAR_JSON_SCHEMA, NULL, ERR_INVALID, "$.enum: more than 4096 values"},
    {GRAMMAR_JSON_SCHEMA, NULL, ERR_INVALID, "$: the schema is not valid JSON: JSON: nesting too deep at byte 129"},
    {GRAMMAR_REGEX, NULL, ERR_INVALID, "grammar: 2000000 bytes of grammar text, more than the limit 1048576"},
    {GRAMMAR_JSON_SCHEMA, "{\"$ref\":\"#\"}", ERR_INVALID,
     "$: can never be satisfied (nothing matches it, e.g. a recursion without a way out)"},
    {GRAMMAR_JSON_SCHEMA,
     "{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#\"}},\"required\":[\"a\"],\"additionalProperties\":false}",
     ERR_INVALID, "$: can never be satisfied (nothing matches it, e.g. a recursion without a way out)"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"string\",\"pattern\":\"^(a|b)*a(a|b){20}$\"}", ERR_INVALID,
     "$: too complex (more than 20000 automaton states in one rule)"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"string\",\"pattern\":\"^((a{100}){100}){100}$\"}", ERR_INVALID,
     "$: too complex (more than 20000 automaton states in one rule)"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"string\",\"pattern\":\"a{1000}\"}", ERR_INVALID,
     "$.pattern: at offset 1: repetition count 1000 is more than the limit 256"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"array\",\"minItems\":1000000000}", ERR_INVALID,
     "$.minItems: 1000000000 is more than the 256 this server supports"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":-1}", ERR_INVALID,
     "$.maxItems: must be a non-negative integer"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", ERR_INVALID,
     "$.maxItems: is less than minItems"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"array\",\"uniqueItems\":true}", ERR_UNSUPPORTED, "$.uniqueItems: unsupported keyword"},
    {GRAMMAR_JSON_SCHEMA, "{\"properties\":{\"a\":{\"not\":{}}}}", ERR_UNSUPPORTED,
     "$.properties.a.not: unsupported keyword"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"object\",\"patternProperties\":{\"^x\":{}}}", ERR_UNSUPPORTED,
     "$.patternProperties: unsupported keyword"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"strin\"}", ERR_INVALID, "$.type: unknown type name"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":[\"string\",7]}", ERR_INVALID, "$.type[1]: unknown type name"},
    {GRAMMAR_JSON_SCHEMA, "false", ERR_INVALID, "$: schema false matches nothing"},
    {GRAMMAR_JSON_SCHEMA, "[1]", ERR_INVALID, "$: a schema must be an object or a boolean"},
    {GRAMMAR_JSON_SCHEMA, "{\"enum\":[]}", ERR_INVALID, "$.enum: must be a non-empty array"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"string\",\"enum\":[1,2]}", ERR_INVALID, "$.enum: no value matches the type"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"a\":{}},\"required\":[\"b\"],\"additionalProperties\":false}",
     ERR_INVALID, "$.required[0]: required property 'b' is not in properties"},
    {GRAMMAR_JSON_SCHEMA, "{\"$ref\":\"https://example.com/s.json\"}", ERR_UNSUPPORTED,
     "$.$ref: cannot resolve 'https://example.com/s.json' (only references inside this document: #, #/$defs/name, ...)"},
    {GRAMMAR_JSON_SCHEMA, "{\"$ref\":\"#/$defs/missing\",\"$defs\":{}}", ERR_UNSUPPORTED,
     "$.$ref: cannot resolve '#/$defs/missing' (only references inside this document: #, #/$defs/name, ...)"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"p\":{\"type\":\"string\",\"pattern\":\"(?=x)\"}}}",
     ERR_UNSUPPORTED, "$.properties.p.pattern: at offset 2: lookahead is not supported"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", ERR_UNSUPPORTED,
     "$.pattern: at offset 4: backreferences are not supported"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"number\",\"minimum\":0.5}", ERR_UNSUPPORTED,
     "$: bounds on a number must be integers (use integer, or whole-number bounds)"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", ERR_INVALID,
     "$: minimum is above maximum: no integer fits"},
    {GRAMMAR_JSON_SCHEMA, "{\"anyOf\":[{\"type\":\"string\"}],\"type\":\"string\"}", ERR_UNSUPPORTED,
     "$: $ref, anyOf, oneOf and allOf next to other validation keywords are not supported"},
    {GRAMMAR_JSON_SCHEMA, "{\"allOf\":[{},{}]}", ERR_UNSUPPORTED,
     "$.allOf: allOf with more than one schema is not supported"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":\"string\",\"pattern\":\"^x\",\"maxLength\":3}", ERR_UNSUPPORTED,
     "$.minLength: minLength/maxLength together with pattern or format are not supported"},
    {GRAMMAR_JSON_SCHEMA, "{\"type\":", ERR_INVALID, "$: the schema is not valid JSON: JSON: unexpected end at byte 8"},
    {GRAMMAR_REGEX, "(ab", ERR_INVALID, "regex: at offset 3: missing )"},
    {GRAMMAR_REGEX, "ab)", ERR_INVALID, "regex: at offset 2: unbalanced )"},
    {GRAMMAR_REGEX, "[z-a]", ERR_INVALID, "regex: at offset 4: character range out of order"},
    {GRAMMAR_REGEX, "a\\bc", ERR_UNSUPPORTED, "regex: at offset 2: word boundaries (\\b) are not supported"},
    {GRAMMAR_REGEX, "a^b", ERR_UNSUPPORTED, "regex: at offset 1: ^ and $ are supported only at the ends of the pattern"},
    {GRAMMAR_REGEX, "*a", ERR_INVALID, "regex: at offset 0: nothing to repeat"},
    {GRAMMAR_REGEX, "a{3,2}", ERR_INVALID, "regex: at offset 1: {n,m} with m < n"},
    {GRAMMAR_REGEX, "\xff", ERR_INVALID, "regex: at offset 0: invalid UTF-8"},
    {GRAMMAR_GBNF, "root ::= expr\nexpr ::= expr \"+\" term | term\nterm ::= [0-9]+", ERR_INVALID,
     "expr: left recursion (the rule can reach itself before consuming any input)"},
    {GRAMMAR_GBNF, "root ::= a\na ::= \"x\" a", ERR_INVALID,
     "a: can never be satisfied (nothing matches it, e.g. a recursion without a way out)"},
    {GRAMMAR_GBNF, "root ::= item\n", ERR_INVALID, "gbnf: rule 'item' is used but never defined"},
    {GRAMMAR_GBNF, "start ::= \"x\"", ERR_INVALID, "gbnf: no rule named root"},
    {GRAMMAR_GBNF, "root ::= \"x\"\nroot ::= \"y\"", ERR_INVALID, "gbnf: line 2, column 1: rule defined twice"},
    {GRAMMAR_GBNF, "root ::= \"abc", ERR_INVALID, "gbnf: line 1, column 14: unterminated string literal"},
    {GRAMMAR_GBNF, "root ::= <think> \"x\"", ERR_UNSUPPORTED,
     "gbnf: line 1, column 10: token references (<...>) are not supported"},
    {GRAMMAR_GBNF, "root ::= \"\\q\"", ERR_INVALID, "gbnf: line 1, column 12: unknown escape"},
    {GRAMMAR_GBNF, "root ::= \"a\"{1000000000}", ERR_INVALID,
     "gbnf: line 1, column 13: repetition count 100000000 is more than the limit 256"},
    {GRAMMAR_GBNF, "root ::= ((((((((((((((((((((\"a\")))))))))))))))))))){256}{256}", ERR_INVALID,
     "root: too complex (more than 20000 automaton states in one rule)"},
    {GRAMMAR_GBNF, "root ::= \"a\" )", ERR_INVALID, "gbnf: line 1, column 14: unbalanced )"},
    {GRAMMAR_CHOICE, "{\"a\":1}", ERR_INVALID, "choice: expecting a non-empty JSON array of strings"},
    {GRAMMAR_CHOICE, "[]", ERR_INVALID, "choice: expecting a non-empty JSON array of strings"},
    {GRAMMAR_CHOICE, "[\"a\",2]", ERR_INVALID, "choice: $[1]: not a string"},
};

static char *make_text(int i, size_t *len)
{
    char *s = NULL;
    size_t n = 0;
    if (i == 0) { /* 100 nested array schemas */
        s = malloc(4096);
        for (int k = 0; k < 100; k++) n += (size_t)sprintf(s + n, "{\"type\":\"array\",\"items\":");
        n += (size_t)sprintf(s + n, "{\"type\":\"string\"}");
        for (int k = 0; k < 100; k++) s[n++] = '}';
    } else if (i == 1) { /* an enum of 5000 values */
        s = malloc(65536);
        n = (size_t)sprintf(s, "{\"enum\":[");
        for (int k = 0; k < 5000; k++) n += (size_t)sprintf(s + n, "%s%d", k ? "," : "", k);
        n += (size_t)sprintf(s + n, "]}");
    } else if (i == 2) { /* JSON nested 200 deep */
        s = malloc(512);
        for (int k = 0; k < 200; k++) s[n++] = '[';
        for (int k = 0; k < 200; k++) s[n++] = ']';
    } else if (i == 3) { /* 2 MB of regex */
        n = 2000000;
        s = malloc(n);
        memset(s, 'a', n);
    }
    *len = n;
    return s;
}

/* ------------------------------------------------------------------ 3. toy vocabulary */

static const char *const TOY_MULTI[] = {
    "{\"", "\":", "\",\"", "\"}", "\"]", "[{", "}]", "},{", "true", "false", "null", "12", "345", "0.", "e+",
    "abc", "name", "\":\"", "\", \"", "\\n", "\\u00", "\\\"", "\xc3\xa9", "\xe4\xb8\xad", "\xf0\x9f\x99\x82", "\xe4",
    "\xb8\xad", "\xf0\x9f", "  ", "\n  ", "ab\"", "\"a", "a\",\"b", "x\":[", "\":1}", "\":{\"", "((", "))", "xy",
    "yes", "no", "(x", "x)", "\"k\":[", "1,", "],", "-0", "2024-", "ab", "ba", "aab", ",\"", "\"a\":"};

typedef struct toy {
    int n;
    const char **p;
    size_t *len;
    uint8_t *eog;
} toy;

static void toy_build(toy *t)
{
    int nm = (int)(sizeof TOY_MULTI / sizeof TOY_MULTI[0]);
    t->n = 256 + nm + 3;
    t->p = calloc((size_t)t->n, sizeof(char *));
    t->len = calloc((size_t)t->n, sizeof(size_t));
    t->eog = calloc((size_t)t->n, 1);
    static char bytes[256];
    for (int i = 0; i < 256; i++) {
        bytes[i] = (char)i;
        t->p[i] = &bytes[i];
        t->len[i] = 1;
    }
    for (int i = 0; i < nm; i++) {
        t->p[256 + i] = TOY_MULTI[i];
        t->len[256 + i] = strlen(TOY_MULTI[i]);
    }
    /* two end tokens and one control token (empty piece) */
    t->eog[256 + nm] = 1;
    t->eog[256 + nm + 1] = 1;
}

static uint64_t rs = 0x1234567;
static uint32_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (uint32_t)rs;
}

/* Random walks: every step's mask must equal brute force. Returns mismatches. */
static int walk_check(const toy *t, const grammar_vocab *v, const grammar *g, int walks, int steps, int *n_steps,
                      char *why, size_t why_cap)
{
    err e = {0};
    grammar_state *st = NULL, *ref = NULL;
    if (grammar_state_new(&st, g, &e) || grammar_state_new(&ref, g, &e)) {
        snprintf(why, why_cap, "state: %s", e.msg);
        return 1;
    }
    size_t nw = grammar_mask_words(v);
    uint32_t *mask = malloc(nw * 4);
    char prefix[4096];
    int bad = 0;
    for (int w = 0; w < walks && !bad; w++) {
        grammar_state_reset(st);
        size_t pl = 0;
        for (int s = 0; s < steps && !bad; s++) {
            if (grammar_state_mask(st, mask, &e)) {
                snprintf(why, why_cap, "mask failed: %s", e.msg);
                bad = 1;
                break;
            }
            (*n_steps)++;
            int allowed[512], na = 0;
            for (int id = 0; id < t->n; id++) {
                int got = (mask[id >> 5] >> (id & 31)) & 1;
                /* brute force: a fresh state, the prefix, then the token's bytes */
                int want;
                grammar_state_reset(ref);
                err e2 = {0};
                if (grammar_state_accept_bytes(ref, prefix, pl, &e2)) want = -1;
                else if (t->eog[id]) want = grammar_state_can_end(ref);
                else if (t->len[id] == 0) want = 0;
                else want = grammar_state_accept_bytes(ref, t->p[id], t->len[id], &e2) == 0;
                if (got != want) {
                    snprintf(why, why_cap, "walk %d step %d after \"%.*s\": token %d \"%.*s\" mask %d, bytes %d", w, s,
                             (int)(pl > 60 ? 60 : pl), prefix + (pl > 60 ? pl - 60 : 0), id, (int)t->len[id], t->p[id],
                             got, want);
                    bad = 1;
                    break;
                }
                if (got) allowed[na++] = id;
            }
            if (bad || na == 0) break;
            int pick = allowed[rnd() % (unsigned)na];
            if (grammar_state_accept(st, pick, &e)) {
                snprintf(why, why_cap, "accept %d refused: %s", pick, e.msg);
                bad = 1;
                break;
            }
            if (t->eog[pick]) {
                /* finished: only end tokens from now on */
                grammar_state_mask(st, mask, &e);
                for (int id = 0; id < t->n; id++)
                    if (((mask[id >> 5] >> (id & 31)) & 1) != t->eog[id]) {
                        snprintf(why, why_cap, "after the end token, token %d is %s", id,
                                 t->eog[id] ? "refused" : "allowed");
                        bad = 1;
                    }
                break;
            }
            if (pl + t->len[pick] >= sizeof prefix) break;
            memcpy(prefix + pl, t->p[pick], t->len[pick]);
            pl += t->len[pick];
        }
    }
    free(mask);
    grammar_state_free(st);
    grammar_state_free(ref);
    return bad;
}

int main(void)
{
    err e;
    /* 1. matching */
    int n_match = (int)(sizeof MATCH / sizeof MATCH[0]), match_bad = 0;
    for (int i = 0; i < n_match; i++) {
        const match_case *c = &MATCH[i];
        grammar *g = NULL;
        grammar_state *st = NULL;
        err_clear(&e);
        const char *txt = c->text ? c->text : "";
        if (grammar_compile(&g, NULL, c->kind, txt, strlen(txt), NULL, &e) || grammar_state_new(&st, g, &e)) {
            printf("#   case %d: compile: %s\n", i, e.msg);
            match_bad++;
            grammar_free(g);
            continue;
        }
        int okb = grammar_state_accept_bytes(st, c->input, strlen(c->input), &e) == 0;
        int ce = okb && grammar_state_can_end(st);
        if (okb != c->ok || ce != c->can_end) {
            printf("#   case %d (%s on %s): accepted %d can_end %d, want %d %d\n", i, c->input, txt, okb, ce, c->ok,
                   c->can_end);
            match_bad++;
        }
        grammar_state_free(st);
        grammar_free(g);
    }
    T_OK(match_bad == 0, "byte-level matching: %d cases (regex, choice, GBNF, json_object, JSON Schema)", n_match);

    /* 2. hostile table */
    int n_host = (int)(sizeof HOSTILE / sizeof HOSTILE[0]), host_bad = 0;
    double worst = 0;
    for (int i = 0; i < n_host; i++) {
        const hostile_case *c = &HOSTILE[i];
        size_t len;
        char *gen = NULL;
        const char *txt = c->text;
        if (!txt) txt = gen = make_text(i, &len);
        else len = strlen(txt);
        grammar *g = NULL;
        err_clear(&e);
        double t0 = now_s();
        int rc = grammar_compile(&g, NULL, c->kind, txt, len, NULL, &e);
        double dt = now_s() - t0;
        if (dt > worst) worst = dt;
        if (rc != (int)c->code || strcmp(e.msg, c->msg) != 0 || dt > 2.0) {
            printf("#   hostile %d: rc %d (%s) in %.2f s, message\n#     got:  %s\n#     want: %s\n", i, rc,
                   err_code_name((err_code)rc), dt, e.msg, c->msg);
            host_bad++;
        }
        grammar_free(g);
        free(gen);
    }
    T_OK(host_bad == 0, "hostile table: %d grammars refused with their exact error, slowest %.2f s", n_host, worst);

    /* 3. masks against brute force over a toy vocabulary */
    toy t;
    toy_build(&t);
    grammar_vocab *v = NULL;
    err_clear(&e);
    T_OK(grammar_vocab_from_pieces(&v, t.n, t.p, t.len, t.eog, &e) == 0, "toy vocabulary: %d tokens", t.n);
    static const struct {
        grammar_kind kind;
        const char *text;
        int ws, depth;
    } G[] = {
        {GRAMMAR_JSON_SCHEMA,
         "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"a\":{\"anyOf\":[{\"type\":\"integer\"},"
         "{\"type\":\"array\",\"items\":{\"type\":\"string\",\"pattern\":\"^[a-c]+$\"},\"maxItems\":3}]},"
         "\"k\":{\"type\":[\"boolean\",\"null\"]}},\"required\":[\"name\"],\"additionalProperties\":false}",
         0, 64},
        {GRAMMAR_JSON_SCHEMA,
         "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"number\"},\"ab\":{\"enum\":[\"x\\\"y\",12,null]}},"
         "\"additionalProperties\":false}",
         2, 64},
        {GRAMMAR_JSON_OBJECT, "", 0, 64},
        {GRAMMAR_JSON_OBJECT, "", GRAMMAR_WS_ANY, 5}, /* shallow: the walk from the real stack */
        {GRAMMAR_JSON_SCHEMA,
         "{\"$defs\":{\"t\":{\"type\":\"object\",\"properties\":{\"k\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/t\"}}},"
         "\"required\":[\"k\"],\"additionalProperties\":false}},\"$ref\":\"#/$defs/t\"}",
         0, 6},
        {GRAMMAR_GBNF, "root ::= x\nx ::= \"(\" x \")\" | \"x\"", 0, 8},
        {GRAMMAR_GBNF, "root ::= a | b\na ::= \"x\" a | \"x\"\nb ::= \"x\"+ \"y\"?", 0, 64}, /* ambiguous */
        {GRAMMAR_GBNF, "root ::= (w \" \")* w\nw ::= [a-c]+ | \"yes\" | \"no\"", 0, 64},
        {GRAMMAR_REGEX, "(ab|a)+\"?[\\u00e9\\u4e2d]*", 0, 64},
        {GRAMMAR_CHOICE, "[\"yes\",\"no\",\"n\",\"ab\\\"\"]", 0, 64},
    };
    int n_g = (int)(sizeof G / sizeof G[0]);
    for (int i = 0; i < n_g; i++) {
        grammar_opts o;
        grammar_opts_default(&o);
        o.json_ws = G[i].ws;
        o.max_depth = G[i].depth;
        grammar *g = NULL;
        err_clear(&e);
        if (grammar_compile(&g, v, G[i].kind, G[i].text, strlen(G[i].text), &o, &e)) {
            T_OK(0, "toy grammar %d compiles: %s", i, e.msg);
            continue;
        }
        char why[512] = "";
        int steps = 0;
        int bad = walk_check(&t, v, g, 8, 40, &steps, why, sizeof why);
        T_OK(!bad, "toy grammar %d (kind %d, depth %d): masks equal brute force at %d steps %s", i, (int)G[i].kind,
             G[i].depth, steps, why);
        grammar_free(g);
    }

    /* 4. bounds */
    {
        grammar_opts o;
        grammar_opts_default(&o);
        o.max_depth = 16;
        grammar *g = NULL;
        grammar_state *st = NULL;
        const char *txt = "root ::= x\nx ::= \"(\" x \")\" | \"x\"";
        err_clear(&e);
        int rc = grammar_compile(&g, v, GRAMMAR_GBNF, txt, strlen(txt), &o, &e) || grammar_state_new(&st, g, &e);
        int depth = 0;
        while (!rc && grammar_state_accept_bytes(st, "(", 1, &e) == 0) depth++;
        /* 16 frames: root and 15 x, the last of which cannot push again: 14 '(' */
        T_OK(!rc && depth == 14, "nesting stops at max_depth 16: %d '(' accepted", depth);
        grammar_state_free(st);
        grammar_free(g);
        txt = "(ab|c)*";
        rc = grammar_compile(&g, v, GRAMMAR_REGEX, txt, strlen(txt), NULL, &e) || grammar_state_new(&st, g, &e);
        int32_t ab = 256 + 48; /* "ab" */
        int n_ok = 0;
        size_t nw = grammar_mask_words(v);
        uint32_t *mask = malloc(nw * 4);
        for (int k = 0; !rc && k < 20000; k++) {
            if (grammar_state_mask(st, mask, &e) || !((mask[ab >> 5] >> (ab & 31)) & 1)) break;
            if (grammar_state_accept(st, ab, &e)) break;
            n_ok++;
        }
        T_OK(n_ok == 20000 && grammar_state_can_end(st), "20000 tokens through a loop: the state stays bounded (%d)",
             n_ok);
        free(mask);
        grammar_state_free(st);
        grammar_free(g);
    }
    grammar_vocab_free(v);
    free(t.p);
    free(t.len);
    free(t.eog);
    T_DONE();
}
