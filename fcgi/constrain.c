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
 *                                          null JSON literals; object / array / untyped
 *                                          any JSON of that kind (the nested schema is
 *                                          NOT enforced: a generic JSON grammar). The
 *                                          suffix "\n</tool_call>" closes the call.
 *                                          Schemas it cannot express ($ref, anyOf or
 *                                          $defs at the top, type lists, bounds,
 *                                          patterns, keys with '>'): prefill only, as
 *                                          before, not an error. A string value that is
 *                                          itself JSON ("42") is read back by the
 *                                          parser as JSON (it has no schema): not fixed.
 *   Qwen3-Coder "required" over several    prefill only (the opener is forced; the
 *     tools, harmony with the name open    arguments are the model's)
 *   DeepSeek, a named function             prefill up to the arguments (V3.1:
 *                                          "NAME<｜tool▁sep｜>", R1: "function
 *                                          <｜tool▁sep｜>NAME\n```json\n"), then the
 *                                          parameters schema; the suffix closes the
 *                                          call and the block
 *   DeepSeek, "required", several tools    prefill up to the name (the model names
 *                                          the function and writes the arguments)
 *   DeepSeek V3.2 (DSML)                   prefill only, as Qwen3-Coder: the block and
 *                                          "<｜DSML｜invoke name=\"NAME\">\n" (named) or
 *                                          "<｜DSML｜invoke name=\"" (required, several
 *                                          tools); the parameters are the model's (they
 *                                          are DSML, not JSON, so no schema mask)
 * JSON whitespace between tokens is bounded (JSON_WS bytes at each place).
 *
 * Reasoning models: a Qwen3-style model may open "<think>" first. The constraint
 * then lets the reasoning run unconstrained, lets the whitespace after "</think>"
 * through, and applies the grammar from the first other token. */
#include "constrain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar.h"

#define JSON_WS 2 /* whitespace bytes allowed at each place of generated JSON */

enum { PHASE_PRE = 0, PHASE_THINK, PHASE_GAP, PHASE_ARMED };

struct fcgi_constraint {
    sched_constraint sc;
    grammar *g;
    grammar_state *st;
    const fcgi_app *a;
    int phase;           /* PHASE_* */
    int32_t think_open, think_close; /* ids of "<think>" / "</think>", -1 none */
    char suffix[96];     /* written for the model when the grammar completes */
};

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
    a->think_open = special_id(a->tk, "<think>");
    a->think_close = special_id(a->tk, "</think>");
    return 0;
}

void fcgi_constraint_teardown(fcgi_app *a) {
    grammar_vocab_free(a->gvocab);
    free(a->ws_tokens);
    a->gvocab = NULL;
    a->ws_tokens = NULL;
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

static int c_accept(void *u, int32_t t, err *e) {
    fcgi_constraint *c = u;
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

static int c_done(void *u) {
    fcgi_constraint *c = u;
    return c->phase == PHASE_ARMED && grammar_state_done(c->st);
}

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

/* ---------------------------------------------------------------- Qwen3-Coder XML parameters */

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

/* The fixed rules: xmlstr is raw text that never contains "</parameter>" (where
 * the parser ends the value) nor "</tool_call>" (where it ends the call). As a
 * regular expression over code points, with D = "<" followed by a proper prefix
 * of "/parameter>" or "/tool_call>" (a tag begun but not finished):
 *   ( [^<] | D* "<" X )* D*
 * where X is the byte after D that breaks the tag (anything but the tag's next
 * byte and '<'). The generic JSON rules (object / array / untyped values:
 * any JSON value of that kind, the nested schema is not enforced) keep "</" out
 * of their strings (a JSON string can always write "<\/" instead). Rules a schema
 * does not use cost nothing at compile time; xmlstr costs about 0.2 s of compile
 * on a 151k vocabulary (its positions accept most tokens; a variant with fewer,
 * ASCII-only positions accepted twice as many tokens in all and took 0.38 s). */
static void gbnf_fixed(jv_buf *o) {
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
    jv_buf_puts(o,
                "jint ::= \"-\"? ( \"0\" | [1-9] [0-9]* )\n"
                "jnum ::= jint ( \".\" [0-9]+ )? ( [eE] [-+]? [0-9]+ )?\n"
                "jws ::= \" \"?\n"
                "jstr ::= \"\\\"\" ( jc | \"/\" | \"<\"+ jc )* \"<\"* \"\\\"\"\n"
                "jc ::= [^\"\\\\</\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} )\n"
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

/* One property's value: 0 written, 1 not expressible here. */
static int gbnf_value(jv_buf *o, const jv *ps) {
    static const char *const plain[] = {"type", "enum", "description", "title", "default", "examples", NULL};
    if (!ps || ps->type != JV_DICT) return 1;
    const jv *t = fcgi_jget(ps, "type");
    const char *ty = t && t->type == JV_STR ? t->u.s->p : NULL;
    if (t && !ty) return 1; /* a list of types */
    const int generic = ty && (!strcmp(ty, "object") || !strcmp(ty, "array"));
    for (size_t i = 0; i < ps->u.d->n; i++)
        if (!generic && !key_in(ps->u.d->k[i]->p, plain)) return 1; /* anyOf, $ref, minimum, pattern... */
    const jv *en = fcgi_jget(ps, "enum");
    if (en) {
        if (en->type != JV_LIST || !en->u.l->n || generic) return 1;
        jv_buf_puts(o, "(");
        for (size_t i = 0; i < en->u.l->n; i++) {
            const jv *v = &en->u.l->v[i];
            if (i) jv_buf_puts(o, " |");
            jv_buf_putc(o, ' ');
            if (v->type == JV_STR) {
                /* a raw string: only for string properties, and it must survive the parser */
                if (ty && strcmp(ty, "string")) return 1;
                if (has_sub(v->u.s->p, v->u.s->len, "</parameter>") || has_sub(v->u.s->p, v->u.s->len, "</tool_call>"))
                    return 1;
                gbnf_lit(o, v->u.s->p, v->u.s->len);
            } else {
                if (ty && !strcmp(ty, "string")) return 1;
                jv_buf tx;
                jv_buf_init(&tx, 4096);
                err e = {0};
                int bad = jv_dump(&tx, *v, NULL, ",", ":", 0, 0, &e) || tx.over || !tx.n ||
                          has_sub(tx.p, tx.n, "</");
                if (!bad) gbnf_lit(o, tx.p, tx.n);
                jv_buf_free(&tx);
                if (bad) return 1;
            }
        }
        jv_buf_puts(o, " )");
        return 0;
    }
    if (!ty) jv_buf_puts(o, "jval");
    else if (!strcmp(ty, "string")) jv_buf_puts(o, "xmlstr");
    else if (!strcmp(ty, "integer")) jv_buf_puts(o, "jint");
    else if (!strcmp(ty, "number")) jv_buf_puts(o, "jnum");
    else if (!strcmp(ty, "boolean")) jv_buf_puts(o, "( \"true\" | \"false\" )");
    else if (!strcmp(ty, "null")) jv_buf_puts(o, "\"null\"");
    else if (!strcmp(ty, "object")) jv_buf_puts(o, "jobj");
    else if (!strcmp(ty, "array")) jv_buf_puts(o, "jarr");
    else return 1;
    return 0;
}

int fcgi_xml_params_gbnf(const jv *params, jv_buf *o) {
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
    jv_buf_puts(o, "root ::=");
    for (size_t i = 0; i < props->n; i++) {
        int required = 0;
        for (size_t r = 0; req && r < req->u.l->n; r++)
            if (!strcmp(req->u.l->v[r].u.s->p, props->k[i]->p)) required = 1;
        char h[48];
        snprintf(h, sizeof h, " p%zu%s", i, required ? "" : "?");
        jv_buf_puts(o, h);
    }
    jv_buf_puts(o, " \"</function>\"\n");
    for (size_t i = 0; i < props->n; i++) {
        const jv_str *k = props->k[i];
        /* the parser reads the key up to the first '>' */
        if (!k->len || memchr(k->p, '>', k->len) || memchr(k->p, '\n', k->len) || memchr(k->p, 0, k->len)) return 1;
        char h[48];
        snprintf(h, sizeof h, "p%zu ::= ", i);
        jv_buf_puts(o, h);
        char open[600];
        int m = snprintf(open, sizeof open, "<parameter=%s>\n", k->p);
        if (m < 0 || (size_t)m >= sizeof open) return 1;
        gbnf_lit(o, open, (size_t)m);
        jv_buf_putc(o, ' ');
        if (gbnf_value(o, &props->v[i])) return 1;
        jv_buf_puts(o, " \"\\n</parameter>\\n\"\n");
    }
    gbnf_fixed(o);
    return o->over ? -1 : 0;
}

int fcgi_constraint_new(fcgi_app *a, const fcgi_gen *g, int thinking, fcgi_constraint **out, fcgi_error *er) {
    *out = NULL;
    const int forced = g->tool_choice == FCGI_TOOLS_REQUIRED || g->tool_choice == FCGI_TOOLS_NAMED;
    const char *param = forced ? "tool_choice" : g->api == FCGI_API_RESPONSES ? "text.format" : "response_format";
    grammar_kind kind;
    const char *suffix = "";
    jv_buf text;
    jv_buf_init(&text, (size_t)8 << 20);
    if (forced) {
        const char *name = fcgi_forced_name(g);
        if (a->pfmt == PARSE_QWEN3 && name) {
            kind = GRAMMAR_JSON_SCHEMA;
            suffix = "}\n</tool_call>";
            if (params_text(g, name, &text)) goto toolarge;
        } else if (a->pfmt == PARSE_QWEN3) {
            kind = GRAMMAR_JSON_SCHEMA;
            suffix = "\n</tool_call>";
            if (calls_text(g, &text)) goto toolarge;
        } else if (a->pfmt == PARSE_QWEN3_CODER && name) {
            const jv *params = NULL;
            for (size_t i = 0; i < g->tools->u.l->n; i++) {
                const jv *fn = fcgi_jget(&g->tools->u.l->v[i], "function");
                if (!strcmp(fcgi_jget(fn, "name")->u.s->p, name)) params = fcgi_jget(fn, "parameters");
            }
            kind = GRAMMAR_GBNF;
            suffix = "\n</tool_call>";
            int rc = fcgi_xml_params_gbnf(params, &text);
            if (rc < 0) goto toolarge;
            if (rc > 0) {
                jv_buf_free(&text);
                return 0; /* a schema the XML grammar cannot express: prefill only */
            }
        } else if (a->pfmt == PARSE_HARMONY && name) {
            kind = GRAMMAR_JSON_SCHEMA;
            suffix = "<|call|>";
            if (params_text(g, name, &text)) goto toolarge;
        } else if ((a->pfmt == PARSE_DEEPSEEK || a->pfmt == PARSE_DEEPSEEK_R1) && name) {
            kind = GRAMMAR_JSON_SCHEMA;
            suffix = a->pfmt == PARSE_DEEPSEEK_R1 ? "\n```" PARSE_DS_CALL_END PARSE_DS_CALLS_END : PARSE_DS_CALL_END PARSE_DS_CALLS_END;
            if (params_text(g, name, &text)) goto toolarge;
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
    grammar_opts o;
    grammar_opts_default(&o);
    o.json_ws = JSON_WS;
    err e = {0};
    int rc = grammar_compile(&c->g, a->gvocab, kind, text.p ? text.p : "", text.n, &o, &e);
    jv_buf_free(&text);
    if (!rc) rc = grammar_state_new(&c->st, c->g, &e);
    if (rc) {
        fcgi_constraint_free(c);
        /* the XML grammar is ours, not the client's: past the engine's bounds (text,
         * work, repeats) the call keeps its prefill only, as before, instead of a 400 */
        if (forced && a->pfmt == PARSE_QWEN3_CODER && e.code != ERR_NOMEM) return 0;
        if (e.code == ERR_NOMEM) return fcgi_errorf(er, 500, "server_error", NULL, NULL, "out of memory compiling the schema");
        return fcgi_errorf(er, 400, "invalid_request_error", e.code == ERR_UNSUPPORTED ? "unsupported_schema" : "invalid_schema",
                           param, "%s: %s", forced ? "the tool's parameters schema" : "the schema", e.msg);
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

const sched_constraint *fcgi_constraint_sched(fcgi_constraint *c) { return c ? &c->sc : NULL; }

const char *fcgi_constraint_suffix(const fcgi_constraint *c) {
    return c && c->phase == PHASE_ARMED && grammar_state_done(c->st) && c->suffix[0] ? c->suffix : NULL;
}

void fcgi_constraint_free(fcgi_constraint *c) {
    if (!c) return;
    grammar_state_free(c->st);
    grammar_free(c->g);
    free(c);
}
