/* constrain.c — see constrain.h.
 *
 * Grammars come from appliance/serve/grammar.h, compiled per request against the
 * app's grammar_vocab (built once at start). What each form becomes:
 *   response_format json_object            GRAMMAR_JSON_OBJECT
 *   response_format json_schema            GRAMMAR_JSON_SCHEMA of the schema
 *   forced call, a named function          prefill up to the arguments, then the
 *     (or "required" with one tool)        tool's parameters schema (Qwen3 JSON body,
 *                                          harmony message); the closing markup is
 *                                          written for the model once the JSON is
 *                                          complete (constraint done)
 *   forced call, "required", several tools Qwen3: prefill "<tool_call>\n", then a
 *                                          schema of anyOf {"name": one tool,
 *                                          "arguments": its parameters}
 *   Qwen3-Coder, a named function          prefill "<tool_call>\n<function=NAME>\n",
 *     (or "required" with one tool)        then GRAMMAR_GBNF of the tool's parameters
 *                                          (fcgi_xml_params_gbnf): the properties in
 *                                          the schema's order, required ones mandatory,
 *                                          "<parameter=KEY>\nVALUE\n</parameter>\n"
 *                                          each, then "</function>"; a string VALUE
 *                                          is raw text without "</parameter>" and
 *                                          "</tool_call>" (where the parser cuts) or an
 *                                          enum string; integer / number / boolean /
 *                                          null JSON literals; object / array values
 *                                          (untyped ones with object or array keywords
 *                                          too) under their sub-schema (nx_expr below:
 *                                          properties, required, closed objects, items,
 *                                          small min/maxItems, enum/const, scalar types;
 *                                          anything else there, $ref, anyOf, pattern,
 *                                          bounds..., stays any JSON of its kind); other
 *                                          untyped values any JSON. The
 *                                          suffix "\n</tool_call>" closes the call.
 *                                          Schemas it cannot express ($ref, anyOf or
 *                                          $defs at the top, type lists, bounds,
 *                                          patterns, keys with '>'): prefill only, as
 *                                          before, not an error. The parser keeps a
 *                                          string-typed value's raw text
 *                                          (fcgi_tool_str_param), so "42" stays "42".
 *   DeepSeek V3.2 (DSML), a named function the same with fcgi_dsml_params_gbnf after
 *                                          the prefilled block and
 *                                          "<｜DSML｜invoke name=\"NAME\">\n": each
 *                                          property "<｜DSML｜parameter name=\"KEY\"
 *                                          string=\"true\">RAW</｜DSML｜parameter>\n"
 *                                          (RAW never holds "｜DSML｜") or string=
 *                                          \"false\" with JSON; "</｜DSML｜invoke>";
 *                                          the suffix closes the block
 *   Qwen3-Coder / V3.2, "required" over    prefill up to the name ("<function=",
 *     several tools                        "invoke name=\""), then ONE GBNF
 *                                          (fcgi_calls_gbnf): an alternation of
 *                                          NAME + ">\n" (V3.2 "\">\n") + that tool's
 *                                          parameter rules (prefixed tN); a tool whose
 *                                          schema the markup cannot express takes any
 *                                          parameters there (its name is still masked)
 *   harmony / DeepSeek V3/R1/V3.1,         staged (calls_staged): prefill up to the
 *     "required" over several tools        name; ST_NAME a choice grammar of NAME +
 *                                          the separator's text (harmony " ", V3.1
 *                                          "<｜tool▁sep｜>" when it is text, R1
 *                                          "\n```json\n"); ST_SEP the separator's
 *                                          control tokens, one allowed at a time
 *                                          (harmony "<|constrain|>json<|message|>");
 *                                          ST_ARGS the chosen tool's parameters schema
 *                                          (every tool's compiled up front; the chosen
 *                                          one's state made when the name completes).
 *                                          A name followed directly by a control token
 *                                          (a vocabulary where <｜tool▁sep｜> is one)
 *                                          may be a prefix of another: the separator
 *                                          is allowed wherever the name can end, and
 *                                          no end-of-generation token is, in ST_NAME
 *   DeepSeek, a named function             prefill up to the arguments (V3.1:
 *                                          "NAME<｜tool▁sep｜>", R1: "function
 *                                          <｜tool▁sep｜>NAME\n```json\n"), then the
 *                                          parameters schema; the suffix closes the
 *                                          call and the block
 * JSON whitespace between tokens is bounded (JSON_WS bytes at each place).
 *
 * Reasoning models: a Qwen3-style model may open "<think>" first. The constraint
 * then lets the reasoning run unconstrained, lets the whitespace after "</think>"
 * through, and applies the grammar from the first other token. */
#include "constrain.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"

#define JSON_WS 2 /* whitespace bytes allowed at each place of generated JSON */

enum { PHASE_PRE = 0, PHASE_THINK, PHASE_GAP, PHASE_ARMED };
/* ST_ONE: one grammar (c->g). The staged call ("required" over several tools,
 * arguments in JSON): ST_NAME the names grammar (c->g: each name followed by the
 * text part of the separator), ST_SEP the separator's control tokens one by one,
 * ST_ARGS the chosen tool's arguments grammar (c->args[chosen], state c->ast). */
enum { ST_ONE = 0, ST_NAME, ST_SEP, ST_ARGS };

#define SEP_MAX 8     /* control-token ids of a separator */
#define ACC_MAX 160   /* bytes of a name and the separator's text */

struct fcgi_constraint {
    sched_constraint sc;
    grammar *g;
    grammar_state *st;
    fcgi_app *a;
    int phase;           /* PHASE_* */
    int32_t think_open, think_close; /* ids of "<think>" / "</think>", -1 none */
    char suffix[96];     /* written for the model when the grammar completes */
    /* the staged call */
    int stage;           /* ST_* */
    int n_tools;
    grammar **args;      /* (n_tools) each tool's arguments grammar */
    char *names;         /* (n_tools) NUL-terminated: each name + the separator's text part */
    int32_t sep[SEP_MAX];
    int n_sep, i_sep;
    char acc[ACC_MAX];   /* the bytes ST_NAME accepted */
    size_t n_acc;
    grammar_state *ast;  /* the chosen tool's arguments state (made when chosen) */
};

static int gget(fcgi_app *a, grammar_kind kind, const char *text, size_t n, int64_t *budget, grammar **out, err *e);
static void grel(fcgi_app *a, grammar *g);
static int gcache_new(fcgi_app *a);

/* ---------------------------------------------------------------- per app */

static int32_t special_id(const tok *tk, const char *s) {
    int32_t ids[4];
    err e = {0};
    int n = tok_encode(tk, s, strlen(s), 0, 1, ids, 4, &e);
    size_t len;
    const char *p = n == 1 ? tok_piece(tk, ids[0], &len, 1) : NULL;
    return p && len == strlen(s) && !memcmp(p, s, len) ? ids[0] : -1;
}

int fcgi_constraint_setup(fcgi_app *a, int32_t n_vocab, err *e) {
    int rc = grammar_vocab_new(&a->gvocab, a->tk, n_vocab, e);
    if (rc) return rc;
    const size_t nw = grammar_mask_words(a->gvocab);
    a->ws_tokens = calloc(nw, sizeof *a->ws_tokens);
    if (!a->ws_tokens) return err_set(e, ERR_NOMEM, "out of memory");
    const int32_t V = tok_vocab_size(a->tk) < n_vocab ? tok_vocab_size(a->tk) : n_vocab;
    for (int32_t id = 0; id < V; id++) {
        size_t len;
        const char *p = tok_piece(a->tk, id, &len, 0);
        if (!p || !len) continue;
        size_t k = 0;
        while (k < len && (p[k] == ' ' || p[k] == '\n' || p[k] == '\t' || p[k] == '\r')) k++;
        if (k == len) a->ws_tokens[id / 32] |= 1u << (id % 32);
    }
    a->eog_tokens = calloc(nw, sizeof *a->eog_tokens);
    if (!a->eog_tokens) return err_set(e, ERR_NOMEM, "out of memory");
    for (int32_t id = 0; id < V; id++)
        if (tok_is_eog(a->tk, id)) a->eog_tokens[id / 32] |= 1u << (id % 32);
    if (gcache_new(a)) return err_set(e, ERR_NOMEM, "out of memory");
    a->think_open = special_id(a->tk, "<think>");
    a->think_close = special_id(a->tk, "</think>");
    return 0;
}

static void gcache_free(fcgi_app *a);

void fcgi_constraint_teardown(fcgi_app *a) {
    gcache_free(a);
    grammar_vocab_free(a->gvocab);
    free(a->ws_tokens);
    free(a->eog_tokens);
    a->gvocab = NULL;
    a->ws_tokens = NULL;
    a->eog_tokens = NULL;
}

/* ---------------------------------------------------------------- forced prefix */

int fcgi_forced_prefix(const fcgi_app *a, const fcgi_gen *g, int thinking, char *buf, size_t cap, const char **prefix,
                       fcgi_error *er) {
    *prefix = NULL;
    if (g->tool_choice != FCGI_TOOLS_REQUIRED && g->tool_choice != FCGI_TOOLS_NAMED) return 0;
    const char *name = fcgi_forced_name(g);
    const char *close = thinking ? "\n</think>\n\n" : "";
    int k;
    switch (a->pfmt) {
    case PARSE_QWEN3:
        k = name ? snprintf(buf, cap, "%s<tool_call>\n{\"name\": \"%s\", \"arguments\": ", close, name)
                 : snprintf(buf, cap, "%s<tool_call>\n", close);
        break;
    case PARSE_QWEN3_CODER:
        k = name ? snprintf(buf, cap, "%s<tool_call>\n<function=%s>\n", close, name)
                 : snprintf(buf, cap, "%s<tool_call>\n<function=", close);
        break;
    case PARSE_HARMONY:
        k = name ? snprintf(buf, cap, "<|channel|>commentary to=functions.%s <|constrain|>json<|message|>", name)
                 : snprintf(buf, cap, "<|channel|>commentary to=functions.");
        break;
    case PARSE_DEEPSEEK:
        k = name ? snprintf(buf, cap, "%s" PARSE_DS_CALLS_BEGIN PARSE_DS_CALL_BEGIN "%s" PARSE_DS_SEP, close, name)
                 : snprintf(buf, cap, "%s" PARSE_DS_CALLS_BEGIN PARSE_DS_CALL_BEGIN, close);
        break;
    case PARSE_DEEPSEEK_V32:
        k = name ? snprintf(buf, cap, "%s" PARSE_DSML_CALLS_BEGIN "\n" PARSE_DSML_INVOKE " name=\"%s\">\n", close, name)
                 : snprintf(buf, cap, "%s" PARSE_DSML_CALLS_BEGIN "\n" PARSE_DSML_INVOKE " name=\"", close);
        break;
    case PARSE_DEEPSEEK_R1:
        k = name ? snprintf(buf, cap, "%s" PARSE_DS_CALLS_BEGIN PARSE_DS_CALL_BEGIN "function" PARSE_DS_SEP "%s\n```json\n",
                            close, name)
                 : snprintf(buf, cap, "%s" PARSE_DS_CALLS_BEGIN PARSE_DS_CALL_BEGIN "function" PARSE_DS_SEP, close);
        break;
    default:
        return fcgi_errorf(er, 400, "invalid_request_error", "unsupported_value", "tool_choice",
                           "this model's chat template has no tool-call syntax sparkd knows, so a tool call cannot be "
                           "forced; use tool_choice \"auto\"");
    }
    if (k < 0 || (size_t)k >= cap) return fcgi_errorf(er, 500, "server_error", NULL, NULL, "tool-call prefix too long");
    *prefix = buf;
    return 0;
}

const char *fcgi_forced_name(const fcgi_gen *g) {
    if (g->tool_choice == FCGI_TOOLS_NAMED) return g->tool_name;
    if (g->tool_choice == FCGI_TOOLS_REQUIRED && g->tools && g->tools->u.l->n == 1)
        return fcgi_jget(fcgi_jget(&g->tools->u.l->v[0], "function"), "name")->u.s->p;
    return NULL;
}

/* ---------------------------------------------------------------- the constraint's calls */

static int allowed(const uint32_t *w, int32_t id) { return w[id / 32] >> (id % 32) & 1; }

static int c_mask(void *u, uint32_t *words, err *e) {
    fcgi_constraint *c = u;
    const size_t nw = grammar_mask_words(c->a->gvocab);
    switch (c->stage) {
    case ST_NAME: {
        int rc = grammar_state_mask(c->st, words, e);
        if (rc) return rc;
        for (size_t i = 0; i < nw; i++) words[i] &= ~c->a->eog_tokens[i]; /* a name is never the end */
        if (c->n_sep && grammar_state_can_end(c->st)) words[c->sep[0] / 32] |= 1u << (c->sep[0] % 32);
        return 0;
    }
    case ST_SEP:
        memset(words, 0, nw * sizeof *words);
        words[c->sep[c->i_sep] / 32] |= 1u << (c->sep[c->i_sep] % 32);
        return 0;
    case ST_ARGS: return grammar_state_mask(c->ast, words, e);
    }
    if (c->phase == PHASE_THINK) {
        memset(words, 0xff, nw * sizeof *words);
        return 0;
    }
    int rc = grammar_state_mask(c->st, words, e);
    if (rc) return rc;
    if (c->phase == PHASE_PRE && c->think_open >= 0) words[c->think_open / 32] |= 1u << (c->think_open % 32);
    if (c->phase == PHASE_GAP)
        for (size_t i = 0; i < nw; i++) words[i] |= c->a->ws_tokens[i];
    return 0;
}

/* ST_NAME is over: the tool whose name (and separator text) was written. */
static int choose(fcgi_constraint *c, err *e) {
    const char *nm = c->names;
    for (int i = 0; i < c->n_tools; i++, nm += strlen(nm) + 1) {
        if (strlen(nm) != c->n_acc || memcmp(nm, c->acc, c->n_acc)) continue;
        return grammar_state_new(&c->ast, c->args[i], e);
    }
    return err_set(e, ERR_INVALID, "forced call: the name written is none of the tools'");
}

static int c_accept_staged(fcgi_constraint *c, int32_t t, err *e) {
    switch (c->stage) {
    case ST_NAME: {
        int rc;
        if (c->n_sep && t == c->sep[0] && grammar_state_can_end(c->st)) {
            if ((rc = choose(c, e))) return rc;
            c->i_sep = 1;
            c->stage = c->i_sep < c->n_sep ? ST_SEP : ST_ARGS;
            return 0;
        }
        if ((rc = grammar_state_accept(c->st, t, e))) return rc;
        size_t len;
        const char *p = tok_piece(c->a->tk, t, &len, 0);
        if (c->n_acc + len > sizeof c->acc) return err_set(e, ERR_INVALID, "forced call: the name is too long");
        memcpy(c->acc + c->n_acc, p, len);
        c->n_acc += len;
        if (grammar_state_done(c->st)) {
            if ((rc = choose(c, e))) return rc;
            c->i_sep = 0;
            c->stage = c->n_sep ? ST_SEP : ST_ARGS;
        }
        return 0;
    }
    case ST_SEP:
        if (t != c->sep[c->i_sep]) return err_set(e, ERR_INVALID, "forced call: not the separator's token");
        if (++c->i_sep == c->n_sep) c->stage = ST_ARGS;
        return 0;
    default: return grammar_state_accept(c->ast, t, e);
    }
}

static int c_accept(void *u, int32_t t, err *e) {
    fcgi_constraint *c = u;
    if (c->stage != ST_ONE) return c_accept_staged(c, t, e);
    switch (c->phase) {
    case PHASE_PRE:
        if (t == c->think_open) { c->phase = PHASE_THINK; return 0; }
        c->phase = PHASE_ARMED;
        break;
    case PHASE_THINK:
        if (t == c->think_close) c->phase = PHASE_GAP;
        return 0;
    case PHASE_GAP:
        if (allowed(c->a->ws_tokens, t)) {
            /* whitespace the grammar itself would take counts for it */
            err ig = {0};
            if (grammar_state_accept(c->st, t, &ig) == 0) c->phase = PHASE_ARMED;
            return 0;
        }
        c->phase = PHASE_ARMED;
        break;
    }
    return grammar_state_accept(c->st, t, e);
}

/* 1 once the grammar that ends the output is complete. */
static int finished(const fcgi_constraint *c) {
    if (c->stage == ST_ONE) return c->phase == PHASE_ARMED && grammar_state_done(c->st);
    return c->stage == ST_ARGS && grammar_state_done(c->ast);
}

static int c_done(void *u) { return finished(u); }

/* ---------------------------------------------------------------- building */

/* The tool's parameters schema (an empty object schema when it has none), dumped. */
static int params_text(const fcgi_gen *g, const char *name, jv_buf *out) {
    for (size_t i = 0; i < g->tools->u.l->n; i++) {
        const jv *fn = fcgi_jget(&g->tools->u.l->v[i], "function");
        if (strcmp(fcgi_jget(fn, "name")->u.s->p, name)) continue;
        const jv *p = fcgi_jget(fn, "parameters");
        err e = {0};
        if (!p || p->type != JV_DICT) { jv_buf_puts(out, "{\"type\":\"object\"}"); return out->over ? -1 : 0; }
        return jv_dump(out, *p, NULL, ",", ":", 0, 0, &e) || out->over ? -1 : 0;
    }
    return -1;
}

/* anyOf over {"name": [tool], "arguments": its parameters} for every tool. */
static int calls_text(const fcgi_gen *g, jv_buf *out) {
    jv_buf_puts(out, "{\"anyOf\":[");
    for (size_t i = 0; i < g->tools->u.l->n; i++) {
        const jv *fn = fcgi_jget(&g->tools->u.l->v[i], "function");
        const char *name = fcgi_jget(fn, "name")->u.s->p;
        if (i) jv_buf_putc(out, ',');
        jv_buf_puts(out, "{\"type\":\"object\",\"properties\":{\"name\":{\"enum\":[\"");
        jv_buf_puts(out, name); /* valid names need no escaping: [A-Za-z0-9_.-] */
        jv_buf_puts(out, "\"]},\"arguments\":");
        if (params_text(g, name, out)) return -1;
        jv_buf_puts(out, "},\"required\":[\"name\",\"arguments\"],\"additionalProperties\":false}");
    }
    jv_buf_puts(out, "]}");
    return out->over ? -1 : 0;
}

/* ---------------------------------------------------------------- XML / DSML parameter grammars */

/* The GBNF literal of s[0..n): quotes and backslashes escaped, control bytes as \xHH. */
static void gbnf_lit(jv_buf *o, const char *s, size_t n) {
    jv_buf_putc(o, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') { jv_buf_putc(o, '\\'); jv_buf_putc(o, (char)ch); }
        else if (ch < 0x20 || ch == 0x7f) { char h[8]; snprintf(h, sizeof h, "\\x%02X", ch); jv_buf_puts(o, h); }
        else jv_buf_putc(o, (char)ch);
    }
    jv_buf_putc(o, '"');
}
static void gbnf_str(jv_buf *o, const char *s) { gbnf_lit(o, s, strlen(s)); }

/* After "<" + s[..k) of a closing tag (s without its '<'), a byte that breaks
 * the tag: anything but s[k] and '<' (a '<' starts over: xmlstr's D below); the
 * tag's last byte is never reached. */
static void gbnf_break(jv_buf *o, const char *s) {
    jv_buf_puts(o, "( [^");
    jv_buf_putc(o, s[0]);
    jv_buf_puts(o, "<]");
    if (s[1]) {
        jv_buf_puts(o, " | \"");
        jv_buf_putc(o, s[0]);
        jv_buf_puts(o, "\" ");
        gbnf_break(o, s + 1);
    }
    jv_buf_puts(o, " )");
}

/* Optional proper prefix of s (s without its last byte '>'). */
static void gbnf_prefix(jv_buf *o, const char *s) {
    if (!s[1]) return;
    jv_buf_puts(o, "( \"");
    jv_buf_putc(o, s[0]);
    jv_buf_puts(o, "\" ");
    gbnf_prefix(o, s + 1);
    jv_buf_puts(o, " )?");
}

/* The two markups a parameter grammar is written in. */
enum { MK_XML = 0, MK_DSML = 1 };

/* The fixed rules.
 * XML: xmlstr is raw text that never contains "</parameter>" (where the parser
 * ends the value) nor "</tool_call>" (where it ends the call). As a regular
 * expression over code points, with D = "<" followed by a proper prefix of
 * "/parameter>" or "/tool_call>" (a tag begun but not finished):
 *   ( [^<] | D* "<" X )* D*
 * where X is the byte after D that breaks the tag (anything but the tag's next
 * byte and '<'). The generic JSON rules (the nested values nx_expr cannot
 * follow: any JSON value of that kind) and nx_expr's own rules keep "</" out of
 * their strings (a JSON string can always write "<\/" instead). Rules a schema
 * does not use cost nothing at compile time; xmlstr costs about 0.2 s of compile
 * on a 151k vocabulary (its positions accept most tokens; a variant with fewer,
 * ASCII-only positions accepted twice as many tokens in all and took 0.38 s).
 * DSML: dstr is raw text that never contains "｜DSML｜" (U+FF5C D S M L U+FF5C:
 * every marker the parser cuts at, "</｜DSML｜parameter>", "</｜DSML｜invoke>",
 * "<｜DSML｜invoke", "</｜DSML｜function_calls>", holds it). The automaton
 * counts how much of the word it has seen (k = 0..5 after a '｜'); as an
 * expression, with R the ways from k = 1 back to k = 1 and X the ways from
 * k = 1 back to 0:
 *   ( [^｜] | "｜" R* X )* ( "｜" R* ( "D" ( "S" ( "M" "L"? )? )? )? )?
 * Its JSON strings never hold '｜' (JSON can write \uff5c). */
static void gbnf_fixed(jv_buf *o, int mk) {
    if (mk == MK_XML) {
        jv_buf_puts(o, "xmlstr ::= ( [^<] | xmltag* \"<\" ( [^/<] | \"/\" ( [^pt<] | \"p\" ");
        gbnf_break(o, "arameter>");
        jv_buf_puts(o, " | \"t\" ");
        gbnf_break(o, "ool_call>");
        jv_buf_puts(o, " ) ) )* xmltag*\n");
        jv_buf_puts(o, "xmltag ::= \"<\" ( \"/\" ( \"p\" ");
        gbnf_prefix(o, "arameter>");
        jv_buf_puts(o, " | \"t\" ");
        gbnf_prefix(o, "ool_call>");
        jv_buf_puts(o, " )? )?\n");
        jv_buf_puts(o, "jstr ::= \"\\\"\" ( jc | \"/\" | \"<\"+ jc )* \"<\"* \"\\\"\"\n"
                       "jc ::= [^\"\\\\</\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} )\n");
    } else {
        jv_buf_puts(o, "dstr ::= ( [^\xef\xbd\x9c] | \"\xef\xbd\x9c\" dr* dx )* ( \"\xef\xbd\x9c\" dr* ( \"D\" ( \"S\" "
                       "( \"M\" \"L\"? )? )? )? )?\n"
                       "dr ::= \"\xef\xbd\x9c\" | \"D\xef\xbd\x9c\" | \"DS\xef\xbd\x9c\" | \"DSM\xef\xbd\x9c\"\n"
                       "dx ::= [^\xef\xbd\x9c" "D] | \"D\" [^\xef\xbd\x9cS] | \"DS\" [^\xef\xbd\x9cM] | \"DSM\" "
                       "[^\xef\xbd\x9cL] | \"DSML\" [^\xef\xbd\x9c]\n"
                       "jstr ::= \"\\\"\" ( [^\"\\\\\xef\xbd\x9c\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" "
                       "[0-9a-fA-F]{4} ) )* \"\\\"\"\n");
    }
    jv_buf_puts(o,
                "jint ::= \"-\"? ( \"0\" | [1-9] [0-9]* )\n"
                "jnum ::= jint ( \".\" [0-9]+ )? ( [eE] [-+]? [0-9]+ )?\n"
                "jws ::= \" \"?\n"
                "jval ::= jobj | jarr | jstr | jnum | \"true\" | \"false\" | \"null\"\n"
                "jobj ::= \"{\" jws ( jstr jws \":\" jws jval jws ( \",\" jws jstr jws \":\" jws jval jws )* )? \"}\"\n"
                "jarr ::= \"[\" jws ( jval jws ( \",\" jws jval jws )* )? \"]\"\n");
}

static int has_sub(const char *s, size_t n, const char *t) {
    size_t m = strlen(t);
    for (size_t i = 0; i + m <= n; i++)
        if (!memcmp(s + i, t, m)) return 1;
    return 0;
}

static int key_in(const char *k, const char *const *set) {
    for (; *set; set++)
        if (!strcmp(k, *set)) return 1;
    return 0;
}

/* A raw string the parser would cut (it holds a closing marker). */
static int raw_cut(int mk, const char *s, size_t n) {
    return mk == MK_XML ? has_sub(s, n, "</parameter>") || has_sub(s, n, "</tool_call>") : has_sub(s, n, PARSE_DSML);
}

/* ---------------------------------------------------------------- nested JSON values under their sub-schema
 *
 * An object / array parameter value (and an untyped one whose schema has object or
 * array keywords) follows its schema: properties in the schema's order, the required
 * ones mandatory and the others optional, no other keys (additionalProperties false,
 * or absent where properties are declared, as grammar_schema.c's strict mode; a bare
 * {"type": "object"} stays any object), items, minItems / maxItems up to
 * NEST_ITEMS, enum / const, the scalar types, nested to NEST_DEPTH levels. A schema
 * (or a sub-schema) with any other keyword ($ref, anyOf, pattern, minimum,
 * additionalProperties true or a schema, prefixItems, type lists, ...), or nested
 * deeper, or an object of more than NEST_PROPS properties, becomes any JSON value of
 * its type there (jobj, jarr, jstr, ... as before): never stricter than the schema.
 * Spacing as tojson writes it (", " and ": "): one optional space (jws) around every
 * token. Each object, member and array is a rule of its own, named RPnK (rp the
 * tool's prefix, K a counter), written to a side buffer appended after the tool's. */
#define NEST_DEPTH 16 /* schema levels followed (grammar_schema.c allows 64; these are rules per value) */
#define NEST_PROPS 64
#define NEST_ITEMS 16

typedef struct nx {
    jv_buf *rules; /* the rules made so far */
    const char *rp;
    int n;         /* rules made */
    int mk;
} nx;

static const char *const NEST_NOTES[] = {"description", "title", "default", "examples", "$comment", "deprecated",
                                         "readOnly", "writeOnly", NULL};
static const char *const NEST_OBJ[] = {"properties", "required", "additionalProperties", NULL};
static const char *const NEST_ARR[] = {"items", "minItems", "maxItems", NULL};

static const char *nx_generic(const char *ty) {
    if (!ty) return "jval";
    if (!strcmp(ty, "object")) return "jobj";
    if (!strcmp(ty, "array")) return "jarr";
    if (!strcmp(ty, "string")) return "jstr";
    if (!strcmp(ty, "integer")) return "jint";
    if (!strcmp(ty, "number")) return "jnum";
    if (!strcmp(ty, "boolean")) return "( \"true\" | \"false\" )";
    if (!strcmp(ty, "null")) return "\"null\"";
    return "jval";
}

/* A new rule's name into h (RPnK). */
static void nx_name(nx *x, char *h, size_t cap) { snprintf(h, cap, "%sn%d", x->rp, x->n++); }

/* The JSON text of v as tojson spells it, as a GBNF literal: 0, or 1 when a
 * closing marker could appear in it (XML "</", DSML the bar). */
static int nx_literal(nx *x, jv_buf *o, jv v) {
    jv_buf tx;
    jv_buf_init(&tx, 1 << 16);
    err e = {0};
    int bad = jv_dump(&tx, v, NULL, ", ", ": ", 0, 0, &e) || tx.over || !tx.n ||
              has_sub(tx.p, tx.n, x->mk == MK_XML ? "</" : "\xef\xbd\x9c");
    if (!bad) gbnf_lit(o, tx.p, tx.n);
    jv_buf_free(&tx);
    return bad;
}

/* the JSON type of v fits type name ty (NULL: any) */
static int nx_fits(jv v, const char *ty) {
    if (!ty) return 1;
    switch (v.type) {
    case JV_NONE: return !strcmp(ty, "null");
    case JV_BOOL: return !strcmp(ty, "boolean");
    case JV_INT: return !strcmp(ty, "integer") || !strcmp(ty, "number");
    case JV_FLOAT: return !strcmp(ty, "number");
    case JV_STR: return !strcmp(ty, "string");
    case JV_LIST: return !strcmp(ty, "array");
    case JV_DICT: return !strcmp(ty, "object");
    default: return 0;
    }
}

static int nx_expr(nx *x, jv_buf *o, const jv *s, int depth);

/* enum / const: the values of the schema's type, each as tojson writes it. 1: not expressible. */
static int nx_enum(nx *x, jv_buf *o, const jv *en, const jv *cn, const char *ty) {
    jv_buf b;
    jv_buf_init(&b, o->max);
    int n = 0, bad = 0;
    jv_buf_puts(&b, "(");
    if (cn) {
        if (nx_fits(*cn, ty)) { jv_buf_putc(&b, ' '); bad = nx_literal(x, &b, *cn); n = 1; }
    } else {
        for (size_t i = 0; !bad && i < en->u.l->n; i++) {
            if (!nx_fits(en->u.l->v[i], ty)) continue;
            jv_buf_puts(&b, n++ ? " | " : " ");
            bad = nx_literal(x, &b, en->u.l->v[i]);
        }
    }
    jv_buf_puts(&b, " )");
    if (!bad && n && !b.over) jv_buf_put(o, b.p, b.n);
    jv_buf_free(&b);
    return bad || !n;
}

/* A closed object: "{" members "}" as a rule; its name into o. 1: not expressible. */
static int nx_object(nx *x, jv_buf *o, const jv_dict *d, int depth) {
    const jv *pv = NULL, *rq = NULL, *ap = NULL;
    for (size_t i = 0; i < d->n; i++) {
        if (!strcmp(d->k[i]->p, "properties")) pv = &d->v[i];
        else if (!strcmp(d->k[i]->p, "required")) rq = &d->v[i];
        else if (!strcmp(d->k[i]->p, "additionalProperties")) ap = &d->v[i];
    }
    if ((pv && pv->type != JV_DICT) || (rq && rq->type != JV_LIST)) return 1;
    if (ap && !(ap->type == JV_BOOL && !ap->u.i)) return 1; /* other keys allowed: any object */
    if (!pv && !ap) return 1; /* a bare {"type": "object"}: any object */
    const jv_dict *props = pv ? pv->u.d : NULL;
    const size_t np = props ? props->n : 0;
    if (np > NEST_PROPS) return 1;
    uint8_t req[NEST_PROPS] = {0};
    for (size_t r = 0; rq && r < rq->u.l->n; r++) {
        const jv *rv = &rq->u.l->v[r];
        long at = rv->type == JV_STR && props ? jv_dict_find(props, rv->u.s->p, rv->u.s->len) : -1;
        if (at < 0) return 1;
        req[at] = 1;
    }
    int first = x->n; /* member rules: RPn(first+i) */
    char h[64];
    for (size_t i = 0; i < np; i++) { /* reserve the member names first */
        nx_name(x, h, sizeof h);
    }
    char self[64];
    nx_name(x, self, sizeof self);
    for (size_t i = 0; i < np; i++) {
        jv_buf m;
        jv_buf_init(&m, o->max);
        snprintf(h, sizeof h, "%sn%d ::= ", x->rp, first + (int)i);
        jv_buf_puts(&m, h);
        jv kv = {.type = JV_STR, .u.s = props->k[i]};
        int bad = nx_literal(x, &m, kv);
        jv_buf_puts(&m, " jws \":\" jws ");
        if (!bad) bad = nx_expr(x, &m, &props->v[i], depth + 1) < 0;
        jv_buf_putc(&m, '\n');
        if (!bad) jv_buf_put(x->rules, m.p, m.n);
        bad |= m.over;
        jv_buf_free(&m);
        if (bad) return 1; /* a key holding a marker's start */
    }
    jv_buf b;
    jv_buf_init(&b, o->max);
    jv_buf_puts(&b, self);
    jv_buf_puts(&b, " ::= \"{\" jws");
    /* B: the first member written is j (every one before it optional and left out);
     * after it A(j+1): the rest, each "," member, the optional ones optional */
    size_t last = np; /* the first required one */
    for (size_t j = 0; j < np && last == np; j++)
        if (req[j]) last = j;
    if (np) {
        jv_buf_puts(&b, " (");
        for (size_t j = 0; j < np && j <= last; j++) {
            snprintf(h, sizeof h, "%s %sn%d", j ? " |" : "", x->rp, first + (int)j);
            jv_buf_puts(&b, h);
            for (size_t k = j + 1; k < np; k++) {
                snprintf(h, sizeof h, " ( jws \",\" jws %sn%d )%s", x->rp, first + (int)k, req[k] ? "" : "?");
                jv_buf_puts(&b, h);
            }
        }
        jv_buf_puts(&b, last == np ? " )? jws" : " ) jws");
    }
    jv_buf_puts(&b, " \"}\"\n");
    int over = b.over;
    jv_buf_put(x->rules, b.p, b.n);
    jv_buf_free(&b);
    if (over) return -1;
    jv_buf_puts(o, self);
    return 0;
}

/* a count keyword: its value, or dflt when absent; -2 when not a small non-negative integer */
static int64_t nx_count(const jv_dict *d, const char *k, int64_t dflt) {
    long at = jv_dict_find(d, k, strlen(k));
    if (at < 0) return dflt;
    const jv *v = &d->v[at];
    if (v->type == JV_FLOAT && v->u.f == (double)(int64_t)v->u.f && v->u.f >= 0 && v->u.f < 1e9) return (int64_t)v->u.f;
    if (v->type != JV_INT || v->u.i < 0) return -2;
    return v->u.i;
}

/* An array: "[" items "]" as a rule; its name into o. 1: not expressible. */
static int nx_array(nx *x, jv_buf *o, const jv_dict *d, int depth) {
    int64_t mn = nx_count(d, "minItems", 0), mx = nx_count(d, "maxItems", -1);
    if (mn == -2 || mx == -2 || mn > NEST_ITEMS || (mx >= 0 && mx < mn)) return 1;
    if (mx > NEST_ITEMS) mx = -1; /* a large bound is not enforced */
    long at = jv_dict_find(d, "items", 5);
    const jv *it = at >= 0 ? &d->v[at] : NULL;
    if (it && it->type == JV_BOOL && !it->u.i) {
        if (mn > 0) return 1;
        mx = 0;
    }
    char self[64], item[64], h[96];
    nx_name(x, self, sizeof self);
    nx_name(x, item, sizeof item);
    jv_buf m;
    jv_buf_init(&m, o->max);
    jv_buf_puts(&m, item);
    jv_buf_puts(&m, " ::= ");
    int rc = nx_expr(x, &m, it && it->type == JV_DICT ? it : NULL, depth + 1);
    jv_buf_putc(&m, '\n');
    if (!rc && !m.over) jv_buf_put(x->rules, m.p, m.n);
    rc = rc || m.over ? -1 : 0;
    jv_buf_free(&m);
    if (rc) return -1;
    jv_buf_puts(x->rules, self);
    jv_buf_puts(x->rules, " ::= \"[\" jws");
    if (mx != 0) {
        jv_buf_putc(x->rules, ' ');
        if (mn == 0) jv_buf_puts(x->rules, "( ");
        jv_buf_puts(x->rules, item);
        int64_t lo = mn > 0 ? mn - 1 : 0, hi = mx > 0 ? mx - 1 : -1;
        if (hi != 0) {
            if (hi < 0) snprintf(h, sizeof h, " ( jws \",\" jws %s ){%lld,}", item, (long long)lo);
            else snprintf(h, sizeof h, " ( jws \",\" jws %s ){%lld,%lld}", item, (long long)lo, (long long)hi);
            jv_buf_puts(x->rules, h);
        }
        if (mn == 0) jv_buf_puts(x->rules, " )?");
        jv_buf_puts(x->rules, " jws");
    }
    jv_buf_puts(x->rules, " \"]\"\n");
    jv_buf_puts(o, self);
    return x->rules->over ? -1 : 0;
}

/* The keywords of schema d all in the annotation list or one of l1 / l2. */
static int nx_only(const jv_dict *d, const char *const *l1, const char *const *l2) {
    for (size_t i = 0; i < d->n; i++) {
        const char *k = d->k[i]->p;
        if (!strcmp(k, "type") || !strcmp(k, "enum") || !strcmp(k, "const") || key_in(k, NEST_NOTES)) continue;
        if ((l1 && key_in(k, l1)) || (l2 && key_in(k, l2))) continue;
        return 0;
    }
    return 1;
}

static int nx_has(const jv_dict *d, const char *const *l) {
    for (size_t i = 0; i < d->n; i++)
        if (key_in(d->k[i]->p, l)) return 1;
    return 0;
}

/* The type a schema's value has: its "type", or untyped with only object (array)
 * keywords: object (array). NULL: any. *list: "type" is not one name. */
static const char *nx_type(const jv_dict *d, int *list) {
    long at = jv_dict_find(d, "type", 4);
    *list = 0;
    if (at >= 0) {
        if (d->v[at].type == JV_STR) return d->v[at].u.s->p;
        *list = 1;
        return NULL;
    }
    int ob = nx_has(d, NEST_OBJ), ar = nx_has(d, NEST_ARR);
    if (ob && !ar && nx_only(d, NEST_OBJ, NULL)) return "object";
    if (ar && !ob && nx_only(d, NEST_ARR, NULL)) return "array";
    return NULL;
}

/* A JSON value of schema s (NULL: any) into o. 0, or -1 when a buffer overflowed. */
static int nx_expr(nx *x, jv_buf *o, const jv *s, int depth) {
    if (!s || s->type != JV_DICT) { jv_buf_puts(o, "jval"); return o->over ? -1 : 0; }
    const jv_dict *d = s->u.d;
    int list;
    const char *ty = nx_type(d, &list);
    const char *gen = list ? "jval" : nx_generic(ty);
    int isobj = ty && !strcmp(ty, "object"), isarr = ty && !strcmp(ty, "array");
    int fine = !list && depth <= NEST_DEPTH && nx_only(d, isobj ? NEST_OBJ : NULL, isarr ? NEST_ARR : NULL);
    long en = jv_dict_find(d, "enum", 4), cn = jv_dict_find(d, "const", 5);
    int rc = 1;
    size_t mark = o->n;
    if (fine && (en >= 0 || cn >= 0)) {
        if (cn < 0 && d->v[en].type != JV_LIST) rc = 1;
        else rc = nx_enum(x, o, en >= 0 ? &d->v[en] : NULL, cn >= 0 ? &d->v[cn] : NULL, ty);
    } else if (fine && isobj) rc = nx_object(x, o, d, depth);
    else if (fine && isarr) rc = nx_array(x, o, d, depth);
    if (rc < 0) return -1;
    if (rc) { o->n = mark; jv_buf_puts(o, gen); }
    return o->over || x->rules->over ? -1 : 0;
}

/* One property's value: 0 written, 1 not expressible here. DSML values start
 * with the rest of their string attribute: true">  (raw text) or false"> (JSON). */
static int gbnf_value(jv_buf *o, const jv *ps, int mk, nx *x) {
    static const char *const plain[] = {"type", "enum", "description", "title", "default", "examples", NULL};
    const char *as_str = mk == MK_DSML ? "\"true\\\">\" " : "";
    const char *as_json = mk == MK_DSML ? "\"false\\\">\" " : "";
    if (!ps || ps->type != JV_DICT) return 1;
    const jv *t = fcgi_jget(ps, "type");
    const char *ty = t && t->type == JV_STR ? t->u.s->p : NULL;
    if (t && !ty) return 1; /* a list of types */
    int list;
    const char *nt = nx_type(ps->u.d, &list);
    if (nt && (!strcmp(nt, "object") || !strcmp(nt, "array"))) { /* JSON under its sub-schema (or any of its kind) */
        jv_buf_puts(o, as_json);
        nx_expr(x, o, ps, 1);
        return 0;
    }
    for (size_t i = 0; i < ps->u.d->n; i++)
        if (!key_in(ps->u.d->k[i]->p, plain)) return 1; /* anyOf, $ref, minimum, pattern... */
    const jv *en = fcgi_jget(ps, "enum");
    if (en) {
        if (en->type != JV_LIST || !en->u.l->n) return 1;
        jv_buf_puts(o, "(");
        for (size_t i = 0; i < en->u.l->n; i++) {
            const jv *v = &en->u.l->v[i];
            if (i) jv_buf_puts(o, " |");
            jv_buf_putc(o, ' ');
            if (v->type == JV_STR) {
                /* a raw string: only for string properties, and it must survive the parser */
                if (ty && strcmp(ty, "string")) return 1;
                if (raw_cut(mk, v->u.s->p, v->u.s->len)) return 1;
                jv_buf_puts(o, as_str);
                gbnf_lit(o, v->u.s->p, v->u.s->len);
            } else {
                if (ty && !strcmp(ty, "string")) return 1;
                jv_buf tx;
                jv_buf_init(&tx, 4096);
                err e = {0};
                int bad = jv_dump(&tx, *v, NULL, ",", ":", 0, 0, &e) || tx.over || !tx.n ||
                          has_sub(tx.p, tx.n, mk == MK_XML ? "</" : "\xef\xbd\x9c");
                if (!bad) { jv_buf_puts(o, as_json); gbnf_lit(o, tx.p, tx.n); }
                jv_buf_free(&tx);
                if (bad) return 1;
            }
        }
        jv_buf_puts(o, " )");
        return 0;
    }
    const char *str = mk == MK_XML ? "xmlstr" : "dstr";
    if (!ty) {
        if (mk == MK_XML) jv_buf_puts(o, "jval");
        else jv_buf_puts(o, "( \"true\\\">\" dstr | \"false\\\">\" jval )");
        return 0;
    }
    if (!strcmp(ty, "string")) { jv_buf_puts(o, as_str); jv_buf_puts(o, str); return 0; }
    jv_buf_puts(o, as_json);
    if (!strcmp(ty, "integer")) jv_buf_puts(o, "jint");
    else if (!strcmp(ty, "number")) jv_buf_puts(o, "jnum");
    else if (!strcmp(ty, "boolean")) jv_buf_puts(o, "( \"true\" | \"false\" )");
    else if (!strcmp(ty, "null")) jv_buf_puts(o, "\"null\"");
    else return 1;
    return 0;
}

/* A parameter key the markup can carry (the parser reads an XML key up to the
 * first '>'; a DSML key is a quoted value without '"', '<', '>' or controls). */
static int key_ok(int mk, const jv_str *k) {
    if (!k->len || k->len > 200) return 0;
    for (size_t i = 0; i < k->len; i++) {
        unsigned char ch = (unsigned char)k->p[i];
        if (ch == '>' || ch == 0) return 0;
        if (mk == MK_XML && ch == '\n') return 0;
        if (mk == MK_DSML && (ch < 0x20 || ch == '"' || ch == '<')) return 0;
    }
    return 1;
}

/* One tool's parameters as rules RProot (the body up to the call's end marker)
 * and RPp0, RPp1... (rp: a rule-name prefix, "" or "tN"). 0 written, 1 not
 * expressible (nothing useful written), -1 out overflowed. */
static int params_rules_x(jv_buf *o, const jv *params, const char *rp, int mk, nx *x) {
    static const char *const top[] = {"type", "properties", "required", "additionalProperties", "description",
                                      "title", "$schema", "strict", NULL};
    jv_dict empty = {0};
    const jv_dict *props = &empty;
    const jv *req = NULL;
    if (params) {
        if (params->type != JV_DICT) return 1;
        for (size_t i = 0; i < params->u.d->n; i++)
            if (!key_in(params->u.d->k[i]->p, top)) return 1; /* anyOf, $ref, $defs, patternProperties... */
        const jv *t = fcgi_jget(params, "type");
        if (t && (t->type != JV_STR || strcmp(t->u.s->p, "object"))) return 1;
        const jv *p = fcgi_jget(params, "properties");
        if (p && p->type != JV_DICT) return 1;
        if (p) props = p->u.d;
        req = fcgi_jget(params, "required");
        if (req && req->type != JV_LIST) return 1;
        /* every required name must be a property, or no output could satisfy it */
        for (size_t r = 0; req && r < req->u.l->n; r++) {
            const jv *rv = &req->u.l->v[r];
            if (rv->type != JV_STR) return 1;
            size_t i = 0;
            while (i < props->n && strcmp(props->k[i]->p, rv->u.s->p)) i++;
            if (i == props->n) return 1;
        }
    }
    jv_buf_puts(o, rp);
    jv_buf_puts(o, "root ::=");
    for (size_t i = 0; i < props->n; i++) {
        int required = 0;
        for (size_t r = 0; req && r < req->u.l->n; r++)
            if (!strcmp(req->u.l->v[r].u.s->p, props->k[i]->p)) required = 1;
        char h[64];
        snprintf(h, sizeof h, " %sp%zu%s", rp, i, required ? "" : "?");
        jv_buf_puts(o, h);
    }
    jv_buf_putc(o, ' ');
    gbnf_str(o, mk == MK_XML ? "</function>" : PARSE_DSML_INVOKE_END);
    jv_buf_putc(o, '\n');
    for (size_t i = 0; i < props->n; i++) {
        const jv_str *k = props->k[i];
        if (!key_ok(mk, k)) return 1;
        char h[64];
        snprintf(h, sizeof h, "%sp%zu ::= ", rp, i);
        jv_buf_puts(o, h);
        char open[600];
        int m = mk == MK_XML ? snprintf(open, sizeof open, "<parameter=%s>\n", k->p)
                             : snprintf(open, sizeof open, PARSE_DSML_PARAM " name=\"%s\" string=\"", k->p);
        if (m < 0 || (size_t)m >= sizeof open) return 1;
        gbnf_lit(o, open, (size_t)m);
        jv_buf_putc(o, ' ');
        if (gbnf_value(o, &props->v[i], mk, x)) return 1;
        jv_buf_putc(o, ' ');
        gbnf_str(o, mk == MK_XML ? "\n</parameter>\n" : PARSE_DSML_PARAM_END "\n");
        jv_buf_putc(o, '\n');
    }
    return o->over ? -1 : 0;
}

static int params_rules(jv_buf *o, const jv *params, const char *rp, int mk) {
    jv_buf rules;
    jv_buf_init(&rules, o->max);
    nx x = {&rules, rp, 0, mk};
    int rc = params_rules_x(o, params, rp, mk, &x);
    if (!rc) jv_buf_put(o, rules.p, rules.n);
    if (!rc && (rules.over || o->over)) rc = -1;
    jv_buf_free(&rules);
    return rc;
}

/* A tool whose schema the markup grammar cannot express: any parameters, the
 * values raw text (XML) or raw text / JSON by their attribute (DSML). */
static void params_any(jv_buf *o, const char *rp, int mk) {
    jv_buf_puts(o, rp);
    if (mk == MK_XML)
        jv_buf_puts(o, "root ::= ( \"<parameter=\" [^>\\n\\x00]+ \">\\n\" xmlstr \"\\n</parameter>\\n\" )* \"</function>\"\n");
    else
        jv_buf_puts(o, "root ::= ( \"" PARSE_DSML_PARAM " name=\\\"\" [^\"<>\\x00-\\x1F]+ \"\\\" string=\\\"\" "
                       "( \"true\\\">\" dstr | \"false\\\">\" jval ) \"" PARSE_DSML_PARAM_END "\\n\" )* \""
                       PARSE_DSML_INVOKE_END "\"\n");
}

static int params_gbnf(const jv *params, jv_buf *o, int mk) {
    int rc = params_rules(o, params, "", mk);
    if (rc) return rc;
    gbnf_fixed(o, mk);
    return o->over ? -1 : 0;
}

int fcgi_xml_params_gbnf(const jv *params, jv_buf *o) { return params_gbnf(params, o, MK_XML); }
int fcgi_dsml_params_gbnf(const jv *params, jv_buf *o) { return params_gbnf(params, o, MK_DSML); }

static const jv *tool_params(const fcgi_gen *g, size_t i) {
    return fcgi_jget(fcgi_jget(&g->tools->u.l->v[i], "function"), "parameters");
}
static const char *tool_name(const fcgi_gen *g, size_t i) {
    return fcgi_jget(fcgi_jget(&g->tools->u.l->v[i], "function"), "name")->u.s->p;
}

int fcgi_tool_str_param(void *u, const char *fn, const char *key, size_t kl) {
    const fcgi_gen *g = u;
    if (!g->tools || !fn) return 0;
    for (size_t i = 0; i < g->tools->u.l->n; i++) {
        if (strcmp(tool_name(g, i), fn)) continue;
        const jv *pr = fcgi_jget(tool_params(g, i), "properties");
        if (!pr || pr->type != JV_DICT) return 0;
        for (size_t k = 0; k < pr->u.d->n; k++) {
            if (pr->u.d->k[k]->len != kl || memcmp(pr->u.d->k[k]->p, key, kl)) continue;
            const jv *t = fcgi_jget(&pr->u.d->v[k], "type"), *en = fcgi_jget(&pr->u.d->v[k], "enum");
            if (t) return t->type == JV_STR && !strcmp(t->u.s->p, "string");
            if (!en || en->type != JV_LIST || !en->u.l->n) return 0;
            for (size_t j = 0; j < en->u.l->n; j++) /* no type, an enum of strings only */
                if (en->u.l->v[j].type != JV_STR) return 0;
            return 1;
        }
        return 0;
    }
    return 0;
}

int fcgi_calls_gbnf(const fcgi_gen *g, int dsml, jv_buf *o) {
    const int mk = dsml ? MK_DSML : MK_XML;
    const size_t n = g->tools->u.l->n;
    jv_buf_puts(o, "root ::=");
    for (size_t i = 0; i < n; i++) {
        char h[600];
        snprintf(h, sizeof h, "%s%s%s", tool_name(g, i), mk == MK_XML ? ">" : "\">", "\n");
        jv_buf_puts(o, i ? " | " : " ");
        gbnf_str(o, h);
        snprintf(h, sizeof h, " t%zuroot", i);
        jv_buf_puts(o, h);
    }
    jv_buf_putc(o, '\n');
    for (size_t i = 0; i < n; i++) {
        char rp[32];
        snprintf(rp, sizeof rp, "t%zu", i);
        size_t mark = o->n;
        int rc = params_rules(o, tool_params(g, i), rp, mk);
        if (rc < 0) return -1;
        if (rc > 0) {
            o->n = mark; /* drop what it wrote: any parameters for this tool */
            params_any(o, rp, mk);
        }
    }
    gbnf_fixed(o, mk);
    return o->over ? -1 : 0;
}

/* The 400/500 of a grammar that did not compile. */
static int compile_error(const err *e, int forced, const char *param, fcgi_error *er) {
    if (e->code == ERR_NOMEM) return fcgi_errorf(er, 500, "server_error", NULL, NULL, "out of memory compiling the schema");
    return fcgi_errorf(er, 400, "invalid_request_error", e->code == ERR_UNSUPPORTED ? "unsupported_schema" : "invalid_schema",
                       param, "%s: %s", forced ? "the tool's parameters schema" : "the schema", e->msg);
}

/* s[0..n) as a JSON string literal. */
static void json_lit(jv_buf *o, const char *s, size_t n) {
    jv_buf_putc(o, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') { jv_buf_putc(o, '\\'); jv_buf_putc(o, (char)ch); }
        else if (ch < 0x20) { char h[8]; snprintf(h, sizeof h, "\\u%04x", ch); jv_buf_puts(o, h); }
        else jv_buf_putc(o, (char)ch);
    }
    jv_buf_putc(o, '"');
}

/* "required" over several tools where the arguments are JSON (harmony, DeepSeek
 * V3/R1/V3.1): the prefill stops before the name; the names grammar takes one
 * tool's name and the text part of the separator (sep, as the template writes
 * it; its control tokens, which no grammar can spell, are then allowed one by
 * one), and the arguments are masked by that tool's parameters schema. */
static int calls_staged(fcgi_app *a, const fcgi_gen *g, const char *sep, const char *suffix, fcgi_constraint **out,
                        fcgi_error *er) {
    const int n = (int)g->tools->u.l->n;
    fcgi_constraint *c = calloc(1, sizeof *c);
    jv_buf t;
    jv_buf_init(&t, (size_t)8 << 20);
    err e = {0};
    int32_t ids[32];
    char text[64];
    size_t tl = 0;
    if (!c) goto nomem;
    c->a = a;
    c->stage = ST_NAME;
    c->phase = PHASE_ARMED;
    c->think_open = c->think_close = -1;
    snprintf(c->suffix, sizeof c->suffix, "%s", suffix);
    /* the separator: text tokens first (into the names grammar), then control tokens */
    int k = tok_encode(a->tk, sep, strlen(sep), 0, 1, ids, 32, &e), i = 0;
    for (; k > 0 && i < k; i++) {
        size_t len;
        const char *p = tok_piece(a->tk, ids[i], &len, 0);
        if (!len) break;
        if (tl + len >= sizeof text) { k = -1; break; }
        memcpy(text + tl, p, len);
        tl += len;
    }
    if (k < 0 || k - i > SEP_MAX) {
        fcgi_constraint_free(c);
        jv_buf_free(&t);
        return fcgi_errorf(er, 500, "server_error", NULL, NULL, "tool-call separator not tokenizable");
    }
    c->n_sep = k - i;
    memcpy(c->sep, ids + i, (size_t)c->n_sep * sizeof *ids);
    c->n_tools = n;
    c->args = calloc((size_t)n, sizeof *c->args);
    c->names = malloc((size_t)n * (64 + tl + 1) + 1);
    if (!c->args || !c->names) goto nomem;
    char *np = c->names;
    jv_buf_putc(&t, '[');
    for (int j = 0; j < n; j++) {
        const char *nm = tool_name(g, (size_t)j);
        size_t nl = strlen(nm); /* 1..64 (request.c) */
        memcpy(np, nm, nl);
        memcpy(np + nl, text, tl);
        np[nl + tl] = 0;
        if (j) jv_buf_putc(&t, ',');
        json_lit(&t, np, nl + tl);
        np += nl + tl + 1;
    }
    jv_buf_putc(&t, ']');
    if (t.over) goto toolarge;
    /* one compile budget for all of them, as the one grammar of the other formats has */
    grammar_opts dflt;
    grammar_opts_default(&dflt);
    int64_t budget = dflt.max_work;
    if (gget(a, GRAMMAR_CHOICE, t.p, t.n, &budget, &c->g, &e) || grammar_state_new(&c->st, c->g, &e)) goto bad;
    for (int j = 0; j < n; j++) {
        t.n = 0;
        if (params_text(g, tool_name(g, (size_t)j), &t)) goto toolarge;
        if (gget(a, GRAMMAR_JSON_SCHEMA, t.p, t.n, &budget, &c->args[j], &e)) goto bad;
    }
    jv_buf_free(&t);
    c->sc = (sched_constraint){.mask = c_mask, .accept = c_accept, .done = c_done, .u = c};
    *out = c;
    return 0;
nomem:
    fcgi_constraint_free(c);
    jv_buf_free(&t);
    return fcgi_errorf(er, 500, "server_error", NULL, NULL, "out of memory");
toolarge:
    fcgi_constraint_free(c);
    jv_buf_free(&t);
    return fcgi_errorf(er, 400, "invalid_request_error", "invalid_schema", "tool_choice", "the schema is too large");
bad:
    fcgi_constraint_free(c);
    jv_buf_free(&t);
    return compile_error(&e, 1, "tool_choice", er);
}

int fcgi_constraint_new(fcgi_app *a, const fcgi_gen *g, int thinking, fcgi_constraint **out, fcgi_error *er) {
    *out = NULL;
    const int forced = g->tool_choice == FCGI_TOOLS_REQUIRED || g->tool_choice == FCGI_TOOLS_NAMED;
    const char *param = forced ? "tool_choice" : g->api == FCGI_API_RESPONSES ? "text.format" : "response_format";
    grammar_kind kind;
    const char *suffix = "";
    const int markup = a->pfmt == PARSE_QWEN3_CODER || a->pfmt == PARSE_DEEPSEEK_V32; /* parameters in XML / DSML */
    jv_buf text;
    jv_buf_init(&text, (size_t)8 << 20);
    if (forced) {
        const char *name = fcgi_forced_name(g);
        const char *ds_end = a->pfmt == PARSE_DEEPSEEK_R1 ? "\n```" PARSE_DS_CALL_END PARSE_DS_CALLS_END
                                                           : PARSE_DS_CALL_END PARSE_DS_CALLS_END;
        if (a->pfmt == PARSE_QWEN3 && name) {
            kind = GRAMMAR_JSON_SCHEMA;
            suffix = "}\n</tool_call>";
            if (params_text(g, name, &text)) goto toolarge;
        } else if (a->pfmt == PARSE_QWEN3) {
            kind = GRAMMAR_JSON_SCHEMA;
            suffix = "\n</tool_call>";
            if (calls_text(g, &text)) goto toolarge;
        } else if (markup) {
            const int mk = a->pfmt == PARSE_QWEN3_CODER ? MK_XML : MK_DSML;
            kind = GRAMMAR_GBNF;
            suffix = mk == MK_XML ? "\n</tool_call>" : "\n" PARSE_DSML_CALLS_END;
            int rc;
            if (name) {
                const jv *params = NULL;
                for (size_t i = 0; i < g->tools->u.l->n; i++)
                    if (!strcmp(tool_name(g, i), name)) params = tool_params(g, i);
                rc = params_gbnf(params, &text, mk);
            } else {
                rc = fcgi_calls_gbnf(g, mk == MK_DSML, &text);
            }
            if (rc < 0) goto toolarge;
            if (rc > 0) {
                jv_buf_free(&text);
                return 0; /* a schema the markup grammar cannot express: prefill only */
            }
        } else if (a->pfmt == PARSE_HARMONY && name) {
            kind = GRAMMAR_JSON_SCHEMA;
            suffix = "<|call|>";
            if (params_text(g, name, &text)) goto toolarge;
        } else if ((a->pfmt == PARSE_DEEPSEEK || a->pfmt == PARSE_DEEPSEEK_R1) && name) {
            kind = GRAMMAR_JSON_SCHEMA;
            suffix = ds_end;
            if (params_text(g, name, &text)) goto toolarge;
        } else if (a->pfmt == PARSE_HARMONY || a->pfmt == PARSE_DEEPSEEK || a->pfmt == PARSE_DEEPSEEK_R1) {
            jv_buf_free(&text);
            if (!a->gvocab) return 0; /* prefill only */
            const char *sep = a->pfmt == PARSE_HARMONY ? " <|constrain|>json<|message|>"
                              : a->pfmt == PARSE_DEEPSEEK ? PARSE_DS_SEP : "\n```json\n";
            return calls_staged(a, g, sep, a->pfmt == PARSE_HARMONY ? "<|call|>" : ds_end, out, er);
        } else {
            jv_buf_free(&text);
            return 0; /* prefill only (constrain.c's header) */
        }
    } else if (g->format == FCGI_FMT_JSON_OBJECT) {
        kind = GRAMMAR_JSON_OBJECT;
    } else if (g->format == FCGI_FMT_JSON_SCHEMA) {
        kind = GRAMMAR_JSON_SCHEMA;
        err de = {0};
        if (jv_dump(&text, *g->schema, NULL, ",", ":", 0, 0, &de) || text.over) goto toolarge;
    } else {
        jv_buf_free(&text);
        return 0;
    }
    if (!a->gvocab) {
        jv_buf_free(&text);
        return fcgi_errorf(er, 400, "invalid_request_error", "unsupported_value", param,
                           "constrained output is not available: the grammar vocabulary could not be built at start");
    }
    fcgi_constraint *c = calloc(1, sizeof *c);
    if (!c) { jv_buf_free(&text); return fcgi_errorf(er, 500, "server_error", NULL, NULL, "out of memory"); }
    c->a = a;
    err e = {0};
    int rc = gget(a, kind, text.p ? text.p : "", text.n, NULL, &c->g, &e);
    jv_buf_free(&text);
    if (!rc) rc = grammar_state_new(&c->st, c->g, &e);
    if (rc) {
        fcgi_constraint_free(c);
        /* the markup grammar is ours, not the client's: past the engine's bounds (text,
         * work, repeats) the call keeps its prefill only, as before, instead of a 400 */
        if (forced && markup && e.code != ERR_NOMEM) return 0;
        return compile_error(&e, forced, param, er);
    }
    snprintf(c->suffix, sizeof c->suffix, "%s", suffix);
    c->think_open = c->think_close = -1;
    if (!forced && (a->pfmt == PARSE_QWEN3 || a->pfmt == PARSE_QWEN3_CODER || a->pfmt == PARSE_DEEPSEEK ||
                    a->pfmt == PARSE_DEEPSEEK_R1 || a->pfmt == PARSE_DEEPSEEK_V32)) {
        c->think_open = a->think_open;
        c->think_close = a->think_close;
    }
    /* forced calls close any open reasoning in their prefix; structured output
     * waits for the reasoning the prompt opened, or that the model may open */
    c->phase = forced ? PHASE_ARMED : thinking && c->think_close >= 0 ? PHASE_THINK
                                                                      : c->think_open >= 0 ? PHASE_PRE : PHASE_ARMED;
    c->sc = (sched_constraint){.mask = c_mask, .accept = c_accept, .done = c_done, .u = c};
    *out = c;
    return 0;
toolarge:
    jv_buf_free(&text);
    return fcgi_errorf(er, 400, "invalid_request_error", "invalid_schema", param, "the schema is too large");
}

/* ---------------------------------------------------------------- compiled grammars */

/* A bounded cache of compiled grammars keyed by (kind, source text), per app:
 * the same tools or schema on the next request (an agent's loop, the n choices
 * of one request) skip the compile (a Qwen3-Coder forced call's xmlstr alone is
 * ~0.16 s on a 151k vocabulary). Grammars are immutable after compile, so one is
 * shared by every constraint holding it. Bounds, planned: at most GCACHE_ENTRIES
 * grammars and GCACHE_BYTES of grammar memory (grammar_stats.bytes) plus their
 * key texts; a grammar over half of that is never kept. Only entries no request
 * holds are evicted (least recently used first); when every entry is held the new
 * grammar is used uncached and freed with its request. Compiles run on the
 * FastCGI worker threads, several at once, outside the lock; the mutex guards
 * only the table (a lookup, an insert, a release: a few dozen compares). */
#define GCACHE_ENTRIES 32
#define GCACHE_BYTES ((size_t)96 << 20)

typedef struct gc_entry {
    grammar *g;    /* NULL: a free slot */
    char *key;     /* kind byte, then the source text */
    size_t klen;
    size_t bytes;  /* grammar memory + klen */
    int refs;      /* constraints holding it */
    uint64_t used; /* last use (tick) */
} gc_entry;

struct fcgi_gcache {
    pthread_mutex_t mu;
    gc_entry e[GCACHE_ENTRIES];
    size_t bytes;
    uint64_t tick, hits, misses;
};

static gc_entry *gc_find(struct fcgi_gcache *c, const char *key, size_t klen) {
    for (int i = 0; i < GCACHE_ENTRIES; i++)
        if (c->e[i].g && c->e[i].klen == klen && !memcmp(c->e[i].key, key, klen)) return &c->e[i];
    return NULL;
}

static void gc_drop(struct fcgi_gcache *c, gc_entry *x) {
    c->bytes -= x->bytes;
    grammar_free(x->g);
    free(x->key);
    memset(x, 0, sizeof *x);
}

/* A free slot with room for `bytes` more, evicting unheld entries; NULL if none. */
static gc_entry *gc_room(struct fcgi_gcache *c, size_t bytes) {
    for (;;) {
        gc_entry *slot = NULL, *lru = NULL;
        for (int i = 0; i < GCACHE_ENTRIES; i++) {
            gc_entry *x = &c->e[i];
            if (!x->g) { if (!slot) slot = x; continue; }
            if (!x->refs && (!lru || x->used < lru->used)) lru = x;
        }
        if (slot && c->bytes + bytes <= GCACHE_BYTES) return slot;
        if (!lru) return NULL;
        gc_drop(c, lru);
    }
}

static int gcache_new(fcgi_app *a) {
    a->gcache = calloc(1, sizeof *a->gcache);
    if (!a->gcache) return -1;
    if (pthread_mutex_init(&a->gcache->mu, NULL)) { free(a->gcache); a->gcache = NULL; return -1; }
    return 0;
}

static void gcache_free(fcgi_app *a) {
    struct fcgi_gcache *c = a->gcache;
    if (!c) return;
    for (int i = 0; i < GCACHE_ENTRIES; i++)
        if (c->e[i].g) gc_drop(c, &c->e[i]);
    pthread_mutex_destroy(&c->mu);
    free(c);
    a->gcache = NULL;
}

void fcgi_gcache_stats(const fcgi_app *a, uint64_t *hits, uint64_t *misses, int *entries, size_t *bytes) {
    struct fcgi_gcache *c = a->gcache;
    *hits = *misses = 0;
    *entries = 0;
    *bytes = 0;
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    *hits = c->hits;
    *misses = c->misses;
    for (int i = 0; i < GCACHE_ENTRIES; i++) *entries += c->e[i].g != NULL;
    *bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
}

/* budget: NULL, or the compile work (grammar_opts.max_work) left to a request
 * that compiles several grammars, charged with what this compile spends. */
static int gget(fcgi_app *a, grammar_kind kind, const char *text, size_t n, int64_t *budget, grammar **out, err *e) {
    struct fcgi_gcache *c = a->gcache;
    char *key = c ? malloc(n + 1) : NULL;
    if (key) {
        key[0] = (char)kind;
        memcpy(key + 1, text, n);
        pthread_mutex_lock(&c->mu);
        gc_entry *x = gc_find(c, key, n + 1);
        if (x) {
            x->refs++;
            x->used = ++c->tick;
            c->hits++;
            *out = x->g;
        } else {
            c->misses++;
        }
        pthread_mutex_unlock(&c->mu);
        if (x) { free(key); return 0; }
    }
    grammar_opts o;
    grammar_opts_default(&o);
    o.json_ws = JSON_WS;
    if (budget) o.max_work = *budget > 0 ? *budget : 1;
    int rc = grammar_compile(out, a->gvocab, kind, text, n, &o, e);
    grammar_stats gs;
    if (!rc) grammar_get_stats(*out, &gs);
    if (!rc && budget) *budget -= gs.work > 0 ? gs.work : 1;
    if (rc || !key) { free(key); return rc; }
    const size_t bytes = gs.bytes + n + 1;
    pthread_mutex_lock(&c->mu);
    gc_entry *x = gc_find(c, key, n + 1); /* another worker compiled it meanwhile */
    if (x) {
        x->refs++;
        x->used = ++c->tick;
        grammar_free(*out);
        *out = x->g;
    } else if (bytes <= GCACHE_BYTES / 2 && (x = gc_room(c, bytes))) {
        *x = (gc_entry){.g = *out, .key = key, .klen = n + 1, .bytes = bytes, .refs = 1, .used = ++c->tick};
        c->bytes += bytes;
        key = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    free(key);
    return 0;
}

static void grel(fcgi_app *a, grammar *g) {
    struct fcgi_gcache *c = a->gcache;
    if (c) {
        pthread_mutex_lock(&c->mu);
        for (int i = 0; i < GCACHE_ENTRIES; i++)
            if (c->e[i].g == g) {
                c->e[i].refs--;
                pthread_mutex_unlock(&c->mu);
                return;
            }
        pthread_mutex_unlock(&c->mu);
    }
    grammar_free(g); /* never cached */
}

const sched_constraint *fcgi_constraint_sched(fcgi_constraint *c) { return c ? &c->sc : NULL; }

const char *fcgi_constraint_suffix(const fcgi_constraint *c) {
    return c && finished(c) && c->suffix[0] ? c->suffix : NULL;
}

void fcgi_constraint_free(fcgi_constraint *c) {
    if (!c) return;
    grammar_state_free(c->st);
    grammar_state_free(c->ast);
    if (c->g) grel(c->a, c->g);
    for (int i = 0; c->args && i < c->n_tools; i++)
        if (c->args[i]) grel(c->a, c->args[i]);
    free(c->args);
    free(c->names);
    free(c);
}
