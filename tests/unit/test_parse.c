/* test_parse.c — output parsers: known answers for Qwen3, Qwen3-Coder,
 * GPT-OSS harmony and DeepSeek (V3.1 and R1 tool-call forms, hostile cases); every stream split (each 2-way split, byte by byte,
 * random chunks) must give the one-shot result; malformed output keeps every
 * character; a random mix of tag fragments never crashes or loses text.
 * The expected answers are written from the formats' published shapes (the
 * templates in tests/tmpl render exactly these strings). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "output_parse.h"
#include "t.h"

#define REC_MAX 65536

typedef struct rec {
    char all[REC_MAX]; /* every text event in order (content + reasoning) */
    size_t nall;
    char content[REC_MAX];
    size_t ncontent;
    char reasoning[REC_MAX];
    size_t nreasoning;
    char tools[REC_MAX]; /* "name(args);" per call */
    size_t ntools_text;
    char types[4096]; /* merged sequence of event kinds: C R T */
    size_t ntypes;
    int ntools, bad_order, bad_utf8;
    char ids[16][40];
    int args_events[16]; /* TOOL_ARGS events per call */
    int open;            /* between a call's START and END */
} rec;

static void put(char *buf, size_t *n, const char *s, size_t len) {
    if (*n + len > REC_MAX) len = REC_MAX - *n;
    memcpy(buf + *n, s, len);
    *n += len;
}

static void type_mark(rec *r, char c) {
    if (r->ntypes && r->types[r->ntypes - 1] == c) return;
    if (r->ntypes < sizeof r->types - 1) r->types[r->ntypes++] = c;
    r->types[r->ntypes] = '\0';
}

static int utf8_incomplete_tail(const char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = (unsigned char)s[n - k];
        if ((c & 0xC0) == 0x80) continue;
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > k;
    }
    return 0;
}

static void sink(void *user, const parse_event *ev) {
    rec *r = user;
    switch (ev->type) {
    case PARSE_EV_CONTENT:
    case PARSE_EV_REASONING:
        if (ev->len == 0 || r->open) r->bad_order++; /* no text inside a call */
        if (utf8_incomplete_tail(ev->text, ev->len)) r->bad_utf8++;
        put(r->all, &r->nall, ev->text, ev->len);
        if (ev->type == PARSE_EV_CONTENT) put(r->content, &r->ncontent, ev->text, ev->len);
        else put(r->reasoning, &r->nreasoning, ev->text, ev->len);
        type_mark(r, ev->type == PARSE_EV_CONTENT ? 'C' : 'R');
        break;
    case PARSE_EV_TOOL_START:
        if (ev->index != r->ntools || r->open) r->bad_order++;
        r->open = 1;
        if (r->ntools < 16) snprintf(r->ids[r->ntools], sizeof r->ids[0], "%s", ev->id);
        put(r->tools, &r->ntools_text, ev->name, strlen(ev->name));
        put(r->tools, &r->ntools_text, "(", 1);
        type_mark(r, 'T');
        break;
    case PARSE_EV_TOOL_ARGS:
        if (ev->index != r->ntools || !r->open) r->bad_order++;
        if (ev->len == 0) r->bad_order++;
        if (r->ntools < 16) r->args_events[r->ntools]++;
        put(r->tools, &r->ntools_text, ev->text, ev->len);
        break;
    case PARSE_EV_TOOL_END:
        if (ev->index != r->ntools || !r->open) r->bad_order++;
        r->open = 0;
        put(r->tools, &r->ntools_text, ");", 2);
        r->ntools++;
        type_mark(r, 'X'); /* so two calls in a row stay distinct */
        break;
    }
}

/* parse_str_param for the tests: "city" and "zip" of f are strings */
static int str_param_f(void *u, const char *fn, const char *key, size_t kl) {
    (void)u;
    return !strcmp(fn, "f") && ((kl == 4 && !memcmp(key, "city", 4)) || (kl == 3 && !memcmp(key, "zip", 3)));
}

/* Qwen3-Coder with the string-parameter hook, fed in pieces of `step` bytes. */
static void run_typed(const char *s, size_t step, rec *r) {
    memset(r, 0, sizeof *r);
    parse *p;
    err e = {0};
    if (parse_create(&p, PARSE_QWEN3_CODER, 0, 1 << 16, &e)) return;
    parse_set_str_param(p, str_param_f, NULL);
    for (size_t at = 0, n = strlen(s); at < n; at += step) parse_feed(p, s + at, at + step > n ? n - at : step, sink, r);
    parse_finish(p, sink, r);
    parse_free(p);
}

/* Feeds s in chunks given by cuts[] (sorted offsets), returns the record. */
static int run_split(parse_format fmt, int thinking, const char *s, size_t n, const size_t *cuts, int ncuts, rec *r,
                     size_t max_text) {
    memset(r, 0, sizeof *r);
    parse *p;
    err e = {0};
    if (parse_create(&p, fmt, thinking, max_text, &e)) return -1;
    size_t at = 0;
    for (int k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        parse_feed(p, s + at, end - at, sink, r);
        at = end;
    }
    parse_finish(p, sink, r);
    if (parse_tool_calls(p) != r->ntools || r->open) r->bad_order++;
    parse_free(p);
    return 0;
}

static int same(const rec *a, const rec *b) {
    return a->ncontent == b->ncontent && !memcmp(a->content, b->content, a->ncontent) &&
           a->nreasoning == b->nreasoning && !memcmp(a->reasoning, b->reasoning, a->nreasoning) &&
           a->ntools_text == b->ntools_text && !memcmp(a->tools, b->tools, a->ntools_text) &&
           !strcmp(a->types, b->types) && a->ntools == b->ntools;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* All splits agree with the one-shot parse; returns the number of disagreements. */
static int stream_check(parse_format fmt, int thinking, const char *s, size_t n, rec *one, size_t max_text) {
    static rec other;
    int bad = 0;
    run_split(fmt, thinking, s, n, NULL, 0, one, max_text);
    for (size_t cut = 1; cut < n; cut++) {
        run_split(fmt, thinking, s, n, &cut, 1, &other, max_text);
        bad += !same(one, &other) || other.bad_order || other.bad_utf8;
    }
    size_t *cuts = malloc((n + 1) * sizeof *cuts);
    for (size_t k = 0; k + 1 < n; k++) cuts[k] = k + 1;
    run_split(fmt, thinking, s, n, cuts, n > 1 ? (int)n - 1 : 0, &other, max_text);
    bad += !same(one, &other) || other.bad_order || other.bad_utf8;
    for (int rep = 0; rep < 8; rep++) {
        int nc = 0;
        size_t at = 0;
        while (1) {
            at += 1 + rnd() % 7;
            if (at >= n) break;
            cuts[nc++] = at;
        }
        run_split(fmt, thinking, s, n, cuts, nc, &other, max_text);
        bad += !same(one, &other) || other.bad_order || other.bad_utf8;
    }
    free(cuts);
    return bad;
}

/* input and output with the format's tags and all whitespace removed must be equal */
static void strip_tags_ws(const char *s, size_t n, const char *const *tags, char *out, size_t *on) {
    *on = 0;
    for (size_t i = 0; i < n;) {
        int hit = 0;
        for (int t = 0; tags[t]; t++) {
            size_t tl = strlen(tags[t]);
            if (tl <= n - i && !memcmp(s + i, tags[t], tl)) { i += tl; hit = 1; break; }
        }
        if (hit) continue;
        if (s[i] != ' ' && s[i] != '\n' && s[i] != '\t' && s[i] != '\r') out[(*on)++] = s[i];
        i++;
    }
}

static const char *const qwen_tags[] = {"<think>", "</think>", "<tool_call>", "</tool_call>", PARSE_DS_CALLS_BEGIN,
                                        PARSE_DS_CALLS_END, PARSE_DS_CALL_BEGIN, PARSE_DS_CALL_END,
                                        PARSE_DSML_CALLS_BEGIN, PARSE_DSML_CALLS_END, NULL};

static int keeps_every_char(const char *in, size_t n, const rec *r) {
    static char a[REC_MAX], b[REC_MAX];
    size_t na, nb;
    strip_tags_ws(in, n, qwen_tags, a, &na);
    strip_tags_ws(r->all, r->nall, qwen_tags, b, &nb);
    return na == nb && !memcmp(a, b, na);
}

typedef struct kcase {
    parse_format fmt;
    int thinking;
    const char *in, *content, *reasoning, *tools;
} kcase;

static const char *fmt_name(parse_format f) {
    return f == PARSE_QWEN3 ? "qwen3" : f == PARSE_QWEN3_CODER ? "qwen3-coder" : f == PARSE_HARMONY ? "harmony"
         : f == PARSE_DEEPSEEK ? "deepseek" : f == PARSE_DEEPSEEK_R1 ? "deepseek-r1"
         : f == PARSE_DEEPSEEK_V32 ? "deepseek-v3.2" : "plain";
}

int main(void) {
    static const kcase known[] = {
        {PARSE_QWEN3, 0, "<think>\nI think.\n</think>\n\nHello!", "Hello!", "I think.", ""},
        {PARSE_QWEN3, 1, "I think.\n</think>\n\nHello!", "Hello!", "I think.", ""},
        {PARSE_QWEN3, 0, "Plain answer, no tags.\n", "Plain answer, no tags.\n", "", ""},
        {PARSE_QWEN3, 0, "Hi\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
         "Hi", "", "get_weather({\"city\": \"Paris\"});"},
        {PARSE_QWEN3, 1,
         "plan\n</think>\n\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {\"y\": [true, null, 2.5]}}\n</tool_call>",
         "", "plan", "a({\"x\": 1});b({\"y\": [true, null, 2.5]});"},
        {PARSE_QWEN3, 0, "<tool_call>\n{\"name\": \"f\", \"arguments\": \"{\\\"k\\\": \\\"v\\\"}\"}\n</tool_call>", "", "", "f({\"k\": \"v\"});"},
        {PARSE_QWEN3, 0, "<tool_call>\n{\"name\": \"f\"}\n</tool_call>", "", "", "f({});"},
        {PARSE_QWEN3, 0, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"s\": \"日本語 👩‍👩‍👧\"}}\n</tool_call>", "", "",
         "f({\"s\": \"日本語 👩‍👩‍👧\"});"},
        {PARSE_QWEN3, 0, "<think>推理</think>答案 👩‍👩‍👧", "答案 👩‍👩‍👧", "推理", ""},
        {PARSE_QWEN3, 0, "a < b and <thin k> and </think> and <tool_call", "a < b and <thin k> and </think> and <tool_call", "", ""},
        /* malformed: bad JSON, unterminated, nested, interleaved */
        {PARSE_QWEN3, 0, "x<tool_call>\n{bad json}\n</tool_call>y", "x<tool_call>\n{bad json}\n</tool_call>y", "", ""},
        {PARSE_QWEN3, 0, "<think>never closed", "", "never closed", ""},
        {PARSE_QWEN3, 0, "<tool_call>{\"name\": \"f\", \"arguments\": {}}", "", "", "f({});"},
        {PARSE_QWEN3, 0, "<tool_call>{\"name\": \"f\"", "<tool_call>{\"name\": \"f\"", "", ""},
        {PARSE_QWEN3, 0, "<think>a<think>b</think>c", "c", "a<think>b", ""},
        {PARSE_QWEN3, 0, "<tool_call><think>x</think></tool_call>z", "<tool_call><think>x</think></tool_call>z", "", ""},
        {PARSE_QWEN3, 0, "<tool_call>\n{\"name\": \"f\", \"arguments\": [1]}\n</tool_call>", "<tool_call>\n{\"name\": \"f\", \"arguments\": [1]}\n</tool_call>", "", ""},
        /* Qwen3-Coder XML */
        {PARSE_QWEN3_CODER, 0,
         "Let me check.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
         "Let me check.", "", "get_weather({\"city\": \"Paris\", \"days\": 3});"},
        {PARSE_QWEN3_CODER, 0,
         "<tool_call>\n<function=edit>\n<parameter=opts>\n{\"a\": [1, 2], \"b\": false}\n</parameter>\n<parameter=text>\nline1\nline2\n</parameter>\n</function>\n</tool_call>",
         "", "", "edit({\"opts\": {\"a\": [1, 2], \"b\": false}, \"text\": \"line1\\nline2\"});"},
        {PARSE_QWEN3_CODER, 0,
         "<tool_call>\n<function=a>\n</function>\n</tool_call>\n<tool_call>\n<function=b>\n<parameter=q>\n\"quoted\"\n</parameter>\n</function>\n</tool_call>",
         "", "", "a({});b({\"q\": \"quoted\"});"},
        /* a started call that goes wrong: the arguments close with what was
         * valid, the rest is content */
        {PARSE_QWEN3_CODER, 0, "<tool_call>\n<function=f>\n<parameter=x>\n1\n</function>\n</tool_call>",
         "<parameter=x>\n1\n</function>", "", "f({});"},
        {PARSE_QWEN3_CODER, 0, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"k\": 1}}\n</tool_call>", "", "", "f({\"k\": 1});"},
        /* GPT-OSS harmony */
        {PARSE_HARMONY, 0, "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>Answer.<|return|>",
         "Answer.", "Think.", ""},
        {PARSE_HARMONY, 0,
         "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|>",
         "", "Need weather.", "get_weather({\"city\":\"Paris\"});"},
        {PARSE_HARMONY, 0, "<|start|>assistant to=functions.f<|channel|>commentary json<|message|>{}<|call|>", "", "", "f({});"},
        {PARSE_HARMONY, 0, "Hello without headers", "Hello without headers", "", ""},
        /* arguments stream as generated, so invalid JSON stays in them (as with OpenAI) */
        {PARSE_HARMONY, 0, "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{not json<|call|>", "", "", "f({not json);"},
        {PARSE_HARMONY, 0, "<|channel|>analysis<|message|>cut off", "", "cut off", ""},
        {PARSE_HARMONY, 0, "<|channel|>commentary<|message|>Preamble for the user.<|end|>", "Preamble for the user.", "", ""},
        {PARSE_HARMONY, 0, "<|channel|>final<|message|>日本語 <| not a tag 👩‍👩‍👧<|return|>", "日本語 <| not a tag 👩‍👩‍👧", "", ""},
        /* streamed Qwen3 arguments are the model's own text; the buffered path
         * (name not first, arguments as a string) re-serializes */
        {PARSE_QWEN3, 0, "<tool_call>\n{ \"name\" :\"f\" ,\n \"parameters\":{\"a\":{\"b\":\"}{\\\"]\"},\"c\":[1,{}]} }\n</tool_call>", "", "",
         "f({\"a\":{\"b\":\"}{\\\"]\"},\"c\":[1,{}]});"},
        {PARSE_QWEN3, 0, "<tool_call>\n{\"arguments\": {\"a\":1}, \"name\": \"f\"}\n</tool_call>", "", "", "f({\"a\": 1});"},
        {PARSE_QWEN3, 0, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}, \"extra\": 2}</tool_call>after", ", \"extra\": 2}after", "",
         "f({\"a\": 1});"},
        {PARSE_QWEN3, 0, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": \"cut", "", "", "f({\"a\": \"cut);"},
        {PARSE_QWEN3_CODER, 0, "<tool_call>\n<function=f>\n<parameter=a>\nx\n</parameter>\n<bogus>\n</tool_call>tail",
         "<bogus>tail", "", "f({\"a\": \"x\"});"},
        {PARSE_HARMONY, 0, "<|channel|>commentary to=functions.f <|constrain|>json<|message|> \n{\"a\": \"日本語 👩‍👩‍👧\"} \n<|call|>", "", "",
         "f({\"a\": \"日本語 👩‍👩‍👧\"});"},
        /* plain */
        {PARSE_PLAIN, 0, "a<think>b</think>", "a<think>b</think>", "", ""},
        /* DeepSeek V3.1: NAME<｜tool▁sep｜>ARGS; R1: function<｜tool▁sep｜>NAME ```json ARGS``` */
#define CB PARSE_DS_CALLS_BEGIN
#define CE PARSE_DS_CALLS_END
#define KB PARSE_DS_CALL_BEGIN
#define KE PARSE_DS_CALL_END
#define SEP PARSE_DS_SEP
        {PARSE_DEEPSEEK, 0, "Let me check." CB KB "get_weather" SEP "{\"city\": \"Paris\"}" KE CE, "Let me check.", "",
         "get_weather({\"city\": \"Paris\"});"},
        {PARSE_DEEPSEEK, 0, CB KB "a" SEP "{\"x\": 1}" KE KB "b" SEP "{\"y\": [true, null, 2.5]}" KE CE, "", "",
         "a({\"x\": 1});b({\"y\": [true, null, 2.5]});"},
        {PARSE_DEEPSEEK_R1, 0,
         CB KB "function" SEP "get_weather\n```json\n{\"city\": \"Paris\"}\n```" KE "\n" KB "function" SEP "calc\n```json\n{}\n```" KE CE,
         "", "", "get_weather({\"city\": \"Paris\"});calc({});"},
        {PARSE_DEEPSEEK_R1, 1, "plan 日本語\n</think>\n\n" CB KB "function" SEP "f\n```json\n{\"s\": \"👩‍👩‍👧\"}\n```" KE CE, "",
         "plan 日本語", "f({\"s\": \"👩‍👩‍👧\"});"},
        {PARSE_DEEPSEEK, 0, "<think>r</think>\n\nok" CB KB "f" SEP "\"{\\\"k\\\": 1}\"" KE CE "\n\nDone.", "okDone.", "r",
         "f({\"k\": 1});"},
        /* a bare <｜tool▁call▁begin｜> (no block opener) and fenced V3.1 arguments */
        {PARSE_DEEPSEEK, 0, KB "f" SEP "```json\n{\"a\": 1}\n```" KE, "", "", "f({\"a\": 1});"},
        {PARSE_DEEPSEEK, 0, CB KB "f" SEP KE CE, "", "", "f({});"},
        /* hostile: invalid JSON, no separator, a name with a space, arguments not an
         * object, unterminated, nested markers, stray text in the block */
        {PARSE_DEEPSEEK, 0, "x" CB KB "f" SEP "{bad" KE CE "y", "x" KB "f" SEP "{bad" KE "y", "", ""},
        {PARSE_DEEPSEEK, 0, CB KB "just text" KE CE, KB "just text" KE, "", ""},
        {PARSE_DEEPSEEK, 0, CB KB "bad name" SEP "{}" KE CE, KB "bad name" SEP "{}" KE, "", ""},
        {PARSE_DEEPSEEK, 0, CB KB "f" SEP "[1, 2]" KE CE, KB "f" SEP "[1, 2]" KE, "", ""},
        {PARSE_DEEPSEEK, 0, CB KB "f" SEP "{\"a\": 1}", "", "", "f({\"a\": 1});"},
        {PARSE_DEEPSEEK, 0, CB KB "f" SEP "{\"a\": ", KB "f" SEP "{\"a\": ", "", ""},
        {PARSE_DEEPSEEK, 0, CB KB "f" SEP "{\"a\": " KB "g" SEP "{}" KE CE, KB "f" SEP "{\"a\": ", "", "g({});"},
        {PARSE_DEEPSEEK, 0, CB KB "f" SEP "{}" KE "junk" KB "g" SEP "{}" KE CE, "junk", "", "f({});g({});"},
        {PARSE_DEEPSEEK, 0, CB KB "f" SEP "{}" SEP "{}" KE CE, KB "f" SEP "{}" SEP "{}" KE, "", ""},
        {PARSE_DEEPSEEK_R1, 0, CB KB "function" SEP "f\n```json\n{\"a\": 1}" KE CE, "", "", "f({\"a\": 1});"},
        {PARSE_DEEPSEEK_R1, 0, CB KB "function" SEP "\n```json\n{}\n```" KE CE, KB "function" SEP "\n```json\n{}\n```" KE, "", ""},
        {PARSE_DEEPSEEK, 0, "a <\xef\xbd\x9ctool and \xef\xbd\x9c> <｜tool▁call", "a <\xef\xbd\x9ctool and \xef\xbd\x9c> <｜tool▁call", "", ""},
        {PARSE_DEEPSEEK, 0, "<think>never closed " CB, "", "never closed " CB, ""},
        /* DeepSeek V3.2 (DSML): string="true" values as they stand, string="false" as JSON */
#define FB PARSE_DSML_CALLS_BEGIN
#define FE PARSE_DSML_CALLS_END
#define IV PARSE_DSML_INVOKE
#define IE PARSE_DSML_INVOKE_END
#define PB PARSE_DSML_PARAM
#define PE PARSE_DSML_PARAM_END
        {PARSE_DEEPSEEK_V32, 0,
         "Let me check.\n\n" FB "\n" IV " name=\"get_weather\">\n" PB " name=\"city\" string=\"true\">Paris" PE "\n" PB
         " name=\"days\" string=\"false\">3" PE "\n" IE "\n" FE,
         "Let me check.", "", "get_weather({\"city\": \"Paris\", \"days\": 3});"},
        {PARSE_DEEPSEEK_V32, 0,
         FB "\n" IV " name=\"a\">\n" PB " name=\"s\" string=\"true\">42" PE "\n" PB " name=\"o\" string=\"false\">{\"k\": [1, null]}" PE
         "\n" IE "\n" IV " name=\"b\">\n" IE "\n" FE,
         "", "", "a({\"s\": \"42\", \"o\": {\"k\": [1, null]}});b({});"},
        {PARSE_DEEPSEEK_V32, 1, "plan 日本語</think>\n\n" FB "\n" IV " name=\"f\">\n" PB " name=\"t\" string=\"true\">👩‍👩‍👧" PE IE FE,
         "", "plan 日本語", "f({\"t\": \"👩‍👩‍👧\"});"},
        /* the block opener ends reasoning that was never closed (llama.cpp's reading too) */
        {PARSE_DEEPSEEK_V32, 1, "plan\n\n" FB "\n" IV " name=\"f\">\n" IE "\n" FE, "", "plan", "f({});"},
        {PARSE_DEEPSEEK_V32, 0, "<think>r</think>ok\n\n" FB IV " name=\"f\">" IE FE "\n\nDone.", "okDone.", "r", "f({});"},
        /* raw multi-line strings with quotes and backslashes; no attribute: JSON if it parses */
        {PARSE_DEEPSEEK_V32, 0,
         FB IV " name=\"w\">" PB " name=\"text\" string=\"true\">l1\n\"q\" \\ <x> " PE PB " name=\"n\">5" PE PB " name=\"t\">hi" PE IE FE,
         "", "", "w({\"text\": \"l1\\n\\\"q\\\" \\\\ <x> \", \"n\": 5, \"t\": \"hi\"});"},
        /* a bare invoke (no block) */
        {PARSE_DEEPSEEK_V32, 0, IV " name=\"f\">" PB " name=\"b\" string=\"false\">true" PE IE, "", "", "f({\"b\": true});"},
        /* hostile: string="false" not JSON, an unknown string value, a name with a
         * space, no name, an unterminated parameter, a quote in a key, junk in the
         * block, an invoke cut short by the next, markers half-written */
        {PARSE_DEEPSEEK_V32, 0, "x" FB IV " name=\"f\">" PB " name=\"a\" string=\"false\">{bad" PE IE FE "y",
         "x" IV " name=\"f\">" PB " name=\"a\" string=\"false\">{bad" PE IE "y", "", ""},
        {PARSE_DEEPSEEK_V32, 0, FB IV " name=\"f\">" PB " name=\"a\" string=\"maybe\">1" PE IE FE,
         IV " name=\"f\">" PB " name=\"a\" string=\"maybe\">1" PE IE, "", ""},
        {PARSE_DEEPSEEK_V32, 0, FB IV " name=\"bad name\">" IE FE, IV " name=\"bad name\">" IE, "", ""},
        {PARSE_DEEPSEEK_V32, 0, FB IV ">" IE FE, IV ">" IE, "", ""},
        {PARSE_DEEPSEEK_V32, 0, FB IV " name=\"f\">" PB " name=\"a\" string=\"true\">x" IE FE,
         IV " name=\"f\">" PB " name=\"a\" string=\"true\">x" IE, "", ""},
        {PARSE_DEEPSEEK_V32, 0, FB IV " name=\"f\">" PB " name=\"a\"b\" string=\"true\">x" PE IE FE,
         IV " name=\"f\">" PB " name=\"a\"b\" string=\"true\">x" PE IE, "", ""},
        {PARSE_DEEPSEEK_V32, 0, FB IV " name=\"f\">" IE "junk" IV " name=\"g\">" IE FE, "junk", "", "f({});g({});"},
        {PARSE_DEEPSEEK_V32, 0, FB IV " name=\"f\">" PB " name=\"a\"" IV " name=\"g\">" IE FE,
         IV " name=\"f\">" PB " name=\"a\"", "", "g({});"},
        {PARSE_DEEPSEEK_V32, 0, IV "X name=\"f\">" IE, IV "X name=\"f\">" IE, "", ""},
        /* cut off by the end of the output: read as it stands */
        {PARSE_DEEPSEEK_V32, 0, FB IV " name=\"f\">" PB " name=\"a\" string=\"true\">x" PE, "", "", "f({\"a\": \"x\"});"},
        {PARSE_DEEPSEEK_V32, 0, FB IV " name=\"f\">" PB " name=\"a\" string=\"true\">x",
         IV " name=\"f\">" PB " name=\"a\" string=\"true\">x", "", ""},
        {PARSE_DEEPSEEK_V32, 0, "a <\xef\xbd\x9c" "DSML\xef\xbd\x9c and <｜DSML｜func", "a <\xef\xbd\x9c" "DSML\xef\xbd\x9c and <｜DSML｜func", "", ""},
        {PARSE_DEEPSEEK_V32, 0, "<think>never closed " FB IV " name=\"f\">" IE, "", "never closed", "f({});"},
        /* V3.1's markers are text to V3.2 */
        {PARSE_DEEPSEEK_V32, 0, CB KB "f" SEP "{}" KE CE, CB KB "f" SEP "{}" KE CE, "", ""},
    };
    static rec one;
    for (size_t k = 0; k < sizeof known / sizeof *known; k++) {
        const kcase *c = &known[k];
        size_t n = strlen(c->in);
        int bad = stream_check(c->fmt, c->thinking, c->in, n, &one, 4096);
        int ok = one.ncontent == strlen(c->content) && !memcmp(one.content, c->content, one.ncontent) &&
                 one.nreasoning == strlen(c->reasoning) && !memcmp(one.reasoning, c->reasoning, one.nreasoning) &&
                 one.ntools_text == strlen(c->tools) && !memcmp(one.tools, c->tools, one.ntools_text);
        T_OK(ok, "parse %s case %zu: content/reasoning/tools as expected", fmt_name(c->fmt), k);
        if (!ok)
            printf("#   got content [%.*s] reasoning [%.*s] tools [%.*s]\n", (int)one.ncontent, one.content,
                   (int)one.nreasoning, one.reasoning, (int)one.ntools_text, one.tools);
        T_OK(bad == 0, "parse %s case %zu: %zu splits + byte-by-byte + random chunks equal one-shot (%d differ)",
             fmt_name(c->fmt), k, n, bad);
        if (c->fmt != PARSE_HARMONY && one.ntools == 0)
            T_OK(keeps_every_char(c->in, n, &one), "parse %s case %zu: every non-tag character kept", fmt_name(c->fmt), k);
        int uniq = 1;
        for (int a = 0; a < one.ntools && a < 16; a++)
            for (int b = a + 1; b < one.ntools && b < 16; b++) uniq &= strcmp(one.ids[a], one.ids[b]) != 0;
        if (one.ntools > 1) T_OK(uniq, "parse %s case %zu: tool call ids unique", fmt_name(c->fmt), k);
    }

    /* well-formed inputs: no tag text reaches content or reasoning */
    {
        int leaks = 0;
        for (size_t k = 0; k < sizeof known / sizeof *known; k++) {
            const kcase *c = &known[k];
            if (strstr(c->content, "<tool_call") || strstr(c->content, "<|") || c->fmt == PARSE_PLAIN) continue;
            run_split(c->fmt, c->thinking, c->in, strlen(c->in), NULL, 0, &one, 4096);
            leaks += memmem(one.content, one.ncontent, "<think", 6) || memmem(one.content, one.ncontent, "<tool_call", 10) ||
                     memmem(one.content, one.ncontent, "<|", 2) || memmem(one.reasoning, one.nreasoning, "</think", 7);
        }
        T_OK(leaks == 0, "parse: no tag text in content/reasoning of well-formed outputs (%d leaks)", leaks);
    }

    /* random mixes of tag fragments: no crash, splits agree, characters kept */
    static const char *pieces[] = {
        "<think>", "</think>", "<tool_call>", "</tool_call>", "{\"name\": \"f\", \"arguments\": {\"a\": 1}}",
        "<function=g>", "<parameter=p>", "</parameter>", "</function>", "<|channel|>", "analysis", "final",
        "commentary to=functions.h", "<|message|>", "<|end|>", "<|start|>", "<|call|>", "<|return|>", "<|constrain|>json",
        "text", " ", "\n", "é", "日本", "👩‍👧", "<", "<|", "</", "{", "}", "\"", "<think", "</tool_", "\xff",
        CB, CE, KB, KE, SEP, "function", "```json\n", "\n```", "<\xef\xbd\x9c", "\xe2\x96\x81", "{\"a\": \"\xe2\x96\x81\"}",
        FB, FE, IV, IE, PB, PE, " name=\"f\">", " name=\"a\" string=\"true\">", " name=\"b\" string=\"false\">", "[1]",
        "<\xef\xbd\x9c" "DSML", "\"",
    };
    int fmts[] = {PARSE_QWEN3, PARSE_QWEN3_CODER, PARSE_HARMONY, PARSE_PLAIN, PARSE_DEEPSEEK, PARSE_DEEPSEEK_R1, PARSE_DEEPSEEK_V32};
    for (int f = 0; f < 7; f++) {
        int disagree = 0, lost = 0, bad_events = 0, runs = 0;
        char in[512];
        for (int it = 0; it < 400; it++) {
            size_t n = 0;
            int np = 1 + (int)(rnd() % 14);
            for (int q = 0; q < np; q++) {
                const char *pc = pieces[rnd() % (sizeof pieces / sizeof *pieces)];
                size_t l = strlen(pc);
                if (n + l >= sizeof in) break;
                memcpy(in + n, pc, l);
                n += l;
            }
            int thinking = (int)(rnd() % 2);
            static rec other;
            run_split((parse_format)fmts[f], thinking, in, n, NULL, 0, &one, 4096);
            size_t cuts[64];
            int nc = 0;
            size_t at = 0;
            while (nc < 64) {
                at += 1 + rnd() % 5;
                if (at >= n) break;
                cuts[nc++] = at;
            }
            run_split((parse_format)fmts[f], thinking, in, n, cuts, nc, &other, 4096);
            disagree += !same(&one, &other);
            bad_events += one.bad_order + other.bad_order;
            if (fmts[f] != PARSE_HARMONY && one.ntools == 0) lost += !keeps_every_char(in, n, &one);
            runs++;
        }
        T_OK(disagree == 0 && bad_events == 0, "parse %s: %d random fragment mixes, chunked == one-shot (%d differ, %d bad events)",
             fmt_name((parse_format)fmts[f]), runs, disagree, bad_events);
        if (fmts[f] != PARSE_HARMONY)
            T_OK(lost == 0, "parse %s: random mixes keep every non-tag character (%d lost)", fmt_name((parse_format)fmts[f]), lost);
    }

    /* a buffer smaller than a tool call: a streamed call still goes through
     * whole; a buffered one degrades to content, nothing is lost */
    {
        char big[3000];
        int n = snprintf(big, sizeof big, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"s\": \"");
        int a0 = n - 7; /* the arguments start at {"s" */
        while (n < 2900) big[n++] = 'x';
        n += snprintf(big + n, sizeof big - (size_t)n, "\"}}\n</tool_call>");
        run_split(PARSE_QWEN3, 0, big, (size_t)n, NULL, 0, &one, 256);
        size_t alen = (size_t)(n - 14 - a0); /* up to the outer "}\n</tool_call>" */
        T_OK(one.ntools == 1 && one.ntools_text == alen + 4 && !memcmp(one.tools + 2, big + a0, alen),
             "parse qwen3: a streamed tool call larger than max_text keeps its %zu bytes of arguments", alen);
        n = snprintf(big, sizeof big, "<tool_call>\n{\"arguments\": {\"s\": \"");
        while (n < 2900) big[n++] = 'x';
        n += snprintf(big + n, sizeof big - (size_t)n, "\"}, \"name\": \"f\"}\n</tool_call>");
        run_split(PARSE_QWEN3, 0, big, (size_t)n, NULL, 0, &one, 256);
        T_OK(one.ntools == 0 && keeps_every_char(big, (size_t)n, &one),
             "parse qwen3: a buffered tool call larger than max_text becomes content with every character kept");
        /* junk after streamed arguments outgrows the buffer: the call ends
         * before the junk goes out as content (found by fuzz_parse) */
        n = snprintf(big, sizeof big, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}");
        while (n < 400) big[n++] = 'j';
        n += snprintf(big + n, sizeof big - (size_t)n, "</tool_call>");
        run_split(PARSE_QWEN3, 0, big, (size_t)n, NULL, 0, &one, 64);
        T_OK(one.ntools == 1 && one.bad_order == 0 && one.ncontent == 400 - 46 && !strcmp(one.tools, "f({\"a\": 1});"),
             "parse qwen3: junk after streamed arguments larger than max_text: call ended, then %zu bytes of content", one.ncontent);
    }

    /* arguments arrive incrementally: fed in token-sized chunks (3-5 bytes),
     * a call whose arguments span several feeds gets several TOOL_ARGS deltas */
    {
        static const struct { parse_format fmt; const char *in; int min_deltas, whole_deltas; } inc[] = {
            {PARSE_QWEN3, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\", \"days\": 3}}\n</tool_call>", 8, 1},
            {PARSE_QWEN3_CODER, "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>", 3, 3},
            {PARSE_HARMONY, "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Paris\", \"unit\": \"celsius\", \"days\": 3}<|call|>", 8, 1},
        };
        for (size_t k = 0; k < sizeof inc / sizeof *inc; k++) {
            size_t n = strlen(inc[k].in), cuts[256];
            int nc = 0;
            for (size_t at = 3 + rnd() % 3; at < n && nc < 256; at += 3 + rnd() % 3) cuts[nc++] = at;
            static rec whole;
            run_split(inc[k].fmt, 0, inc[k].in, n, NULL, 0, &whole, 4096);
            run_split(inc[k].fmt, 0, inc[k].in, n, cuts, nc, &one, 4096);
            T_OK(one.ntools == 1 && one.args_events[0] >= inc[k].min_deltas && whole.args_events[0] == inc[k].whole_deltas && same(&one, &whole),
                 "parse %s: arguments in %d deltas when fed in 3-5 byte chunks (want >= %d; one-shot: %d), same text", fmt_name(inc[k].fmt),
                 one.args_events[0], inc[k].min_deltas, whole.args_events[0]);
        }
    }

    /* DeepSeek: a huge name, a call larger than the buffer */
    {
        static char big[4096];
        int n = snprintf(big, sizeof big, "%s%s", CB, KB);
        while (n < 2000) big[n++] = 'n';
        n += snprintf(big + n, sizeof big - (size_t)n, "%s{}%s%s", SEP, KE, CE);
        run_split(PARSE_DEEPSEEK, 0, big, (size_t)n, NULL, 0, &one, 4096);
        T_OK(one.ntools == 0 && keeps_every_char(big, (size_t)n, &one), "parse deepseek: a 1900-byte name is content, every character kept");
        run_split(PARSE_DEEPSEEK, 0, big, (size_t)n, NULL, 0, &one, 256);
        T_OK(one.ntools == 0 && keeps_every_char(big, (size_t)n, &one),
             "parse deepseek: a call larger than max_text becomes content, every character kept");
        n = snprintf(big, sizeof big, "%s%sf%s{\"s\": \"", CB, KB, SEP);
        while (n < 3000) big[n++] = 'x';
        n += snprintf(big + n, sizeof big - (size_t)n, "\"}%s%s", KE, CE);
        run_split(PARSE_DEEPSEEK, 0, big, (size_t)n, NULL, 0, &one, 4096);
        T_OK(one.ntools == 1 && one.ntools_text > 2900, "parse deepseek: a 3000-byte call within max_text is one call");
        /* V3.2 the same */
        n = snprintf(big, sizeof big, "%s%s name=\"", FB, IV);
        while (n < 2000) big[n++] = 'n';
        n += snprintf(big + n, sizeof big - (size_t)n, "\">%s%s", IE, FE);
        run_split(PARSE_DEEPSEEK_V32, 0, big, (size_t)n, NULL, 0, &one, 4096);
        T_OK(one.ntools == 0 && keeps_every_char(big, (size_t)n, &one), "parse deepseek-v3.2: a 1900-byte name is content, every character kept");
        n = snprintf(big, sizeof big, "%s%s name=\"f\">%s name=\"s\" string=\"true\">", FB, IV, PB);
        while (n < 3000) big[n++] = 'x';
        n += snprintf(big + n, sizeof big - (size_t)n, "%s%s%s", PE, IE, FE);
        run_split(PARSE_DEEPSEEK_V32, 0, big, (size_t)n, NULL, 0, &one, 256);
        T_OK(one.ntools == 0 && keeps_every_char(big, (size_t)n, &one),
             "parse deepseek-v3.2: a call larger than max_text becomes content, every character kept");
        run_split(PARSE_DEEPSEEK_V32, 0, big, (size_t)n, NULL, 0, &one, 4096);
        T_OK(one.ntools == 1 && one.ntools_text > 2900, "parse deepseek-v3.2: a 3000-byte call within max_text is one call");
    }
#undef CB
#undef FB
#undef FE
#undef IV
#undef IE
#undef PB
#undef PE
#undef CE
#undef KB
#undef KE
#undef SEP

    T_OK(parse_detect(NULL, 0, 1) == PARSE_HARMONY, "parse_detect: a vocabulary with <|channel|> is harmony");
    {
        const char *q = "{{ '<tool_call>' }} <think>";
        const char *c = "<function=x> <parameter=y>";
        const char *h = "{{ '<|start|>assistant<|channel|>final<|message|>' }}";
        T_OK(parse_detect(q, strlen(q), 0) == PARSE_QWEN3 && parse_detect(c, strlen(c), 0) == PARSE_QWEN3_CODER &&
                 parse_detect("hi", 2, 0) == PARSE_PLAIN && parse_detect(h, strlen(h), 0) == PARSE_HARMONY,
             "parse_detect: qwen3 / qwen3-coder / plain / harmony from the template text");
        const char *r1 = "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}";
        T_OK(parse_detect(r1, strlen(r1), 0) == PARSE_QWEN3, "parse_detect: a template with only </think> reasons");
        const char *v31 = "{{'" PARSE_DS_CALLS_BEGIN PARSE_DS_CALL_BEGIN "'+ name + '" PARSE_DS_SEP "' + args}}";
        const char *dr1 = "{{'" PARSE_DS_CALL_BEGIN "' + type + '" PARSE_DS_SEP "' + name + '\\n```json\\n'}}";
        T_OK(parse_detect(v31, strlen(v31), 0) == PARSE_DEEPSEEK && parse_detect(dr1, strlen(dr1), 0) == PARSE_DEEPSEEK_R1,
             "parse_detect: DeepSeek V3.1 / R1 tool-call markers in the template");
        const char *v32 = "{{ '<think>' }}";
        T_OK(parse_detect(v32, strlen(v32), PARSE_VOCAB_DEEPSEEK) == PARSE_DEEPSEEK && parse_detect(NULL, 0, PARSE_VOCAB_DEEPSEEK) == PARSE_DEEPSEEK &&
                 parse_detect(q, strlen(q), PARSE_VOCAB_DEEPSEEK) == PARSE_QWEN3,
             "parse_detect: a DeepSeek vocabulary -> deepseek unless the template says <tool_call>");
        const char *dsml = "{%- set dsml_token = '" PARSE_DSML "' -%}{{ '<' + dsml_token + 'function_calls>' }}";
        const char *dsml_only = "{{ '" PARSE_DSML "' }}";
        T_OK(parse_detect(dsml, strlen(dsml), PARSE_VOCAB_DEEPSEEK) == PARSE_DEEPSEEK_V32 &&
                 parse_detect(dsml, strlen(dsml), 0) == PARSE_DEEPSEEK_V32 &&
                 parse_detect(dsml_only, strlen(dsml_only), PARSE_VOCAB_DEEPSEEK) == PARSE_DEEPSEEK,
             "parse_detect: V3.2's DSML token and function_calls in the template -> deepseek-v3.2");
    }
    {
        /* Qwen3-Coder values carry no type: with the tools' schemas a string parameter keeps its text */
        const char *x = "<tool_call>\n<function=f>\n<parameter=city>\n3.5\n</parameter>\n<parameter=zip>\n"
                        "\"0123\"\n</parameter>\n<parameter=n>\n42\n</parameter>\n</function>\n</tool_call>";
        const char *want = "f({\"city\": \"3.5\", \"zip\": \"\\\"0123\\\"\", \"n\": 42});";
        rec r1, r2, r3;
        run_typed(x, strlen(x), &r1);
        run_typed(x, 1, &r2);
        run_split(PARSE_QWEN3_CODER, 0, x, strlen(x), NULL, 0, &r3, 1 << 16);
        T_OK(!strcmp(r1.tools, want) && !strcmp(r2.tools, want),
             "qwen3-coder: string-typed parameters keep their raw text (\"3.5\", the quotes of \"0123\"), others JSON; "
             "whole and byte by byte (%s | %s)", r1.tools, r2.tools);
        T_OK(!strcmp(r3.tools, "f({\"city\": 3.5, \"zip\": \"0123\", \"n\": 42});"),
             "qwen3-coder: without the schemas a value is JSON when it parses (%s)", r3.tools);
    }
    T_DONE();
}
