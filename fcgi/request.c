/* request.c — a request body -> fcgi_gen, with every field checked: the shared
 * validators (request.h) and OpenAI's /v1/chat/completions and /v1/completions.
 * Anthropic's /v1/messages is messages.c, /v1/responses is responses.c; both
 * end in the same fcgi_gen.
 *
 * One JSON path: the body is parsed once, by jv_parse_ex (appliance/text/
 * jsonv.c, the reader the template engine uses), into values in one arena
 * that fcgi_gen owns; validation reads those values and the chat template is
 * rendered from the same values (prompt.c), never from re-serialized text.
 *
 * Policies (documented for clients in etc/sparkd.ini's header and tested in
 * tests/unit/test_http.c and tests/e2e/):
 *  - the body must be one JSON object, valid UTF-8, nested at most
 *    FCGI_MAX_DEPTH levels (checked on the raw bytes before parsing, so a deep
 *    body never reaches a recursive parser), no larger than max_body_bytes
 *    (conn.c refuses a longer CONTENT_LENGTH with 413 before reading);
 *  - duplicate keys are rejected (400), not resolved first- or last-wins: a
 *    body that means different things to different parsers is refused;
 *  - "\u0000" inside a string is rejected (values are also C strings);
 *  - a known field of the wrong type or out of range is a 400 naming it;
 *    unknown fields are ignored (clients send many optional extras), except
 *    features we do not implement (best_of other than 1, n beyond FCGI_MAX_N),
 *    which are refused rather than ignored;
 *  - numbers: JSON has no NaN/Infinity literals, and an overflowing literal
 *    (1e999) is refused: both 400. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

#define BAD(param, ...) FCGI_BAD(er, param, __VA_ARGS__)
#define BADTYPE(param, want) FCGI_BADTYPE(er, param, want)

int fcgi_json_depth(const char *p, size_t n) {
    int depth = 0, max = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') in_str = 1;
        else if (c == '[' || c == '{') {
            if (++depth > max) max = depth;
        } else if (c == ']' || c == '}') depth--;
    }
    return max;
}

const jv *fcgi_jget(const jv *o, const char *k) {
    if (!o || o->type != JV_DICT) return NULL;
    long i = jv_dict_find(o->u.d, k, strlen(k));
    return i < 0 ? NULL : &o->u.d->v[i];
}

int fcgi_parse_object(const char *body, size_t len, jv_arena **arena, jv *out, fcgi_error *er) {
    *arena = NULL;
    if (len == 0) return BAD(NULL, "the request body is empty; want a JSON object");
    int d = fcgi_json_depth(body, len);
    if (d > FCGI_MAX_DEPTH) return BAD(NULL, "JSON nested %d levels deep; the limit is %d", d, FCGI_MAX_DEPTH);
    /* parsed values take at most ~21 bytes per byte of text (a list of empty
     * objects); the cap leaves room for that and for what the translations
     * into the chat shape build, and still bounds a hostile body */
    jv_arena *a = jv_arena_new(48 * len + (1u << 20));
    if (!a) return fcgi_errorf(er, 500, "server_error", NULL, NULL, "out of memory");
    err e = {0};
    size_t at = 0;
    if (jv_parse_ex(a, body, len, FCGI_MAX_DEPTH, JV_PARSE_NO_DUPLICATES | JV_PARSE_STRICT_NUMBERS | JV_PARSE_NO_NUL,
                    out, &at, &e)) {
        jv_arena_free(a);
        if (e.code == ERR_NOMEM) return fcgi_errorf(er, 500, "server_error", NULL, NULL, "out of memory parsing the body");
        int line = 1;
        size_t col0 = 0;
        for (size_t i = 0; i < at && i < len; i++)
            if (body[i] == '\n') line++, col0 = i + 1;
        /* the message names what was wrong, never quotes the input */
        const char *what = !strncmp(e.msg, "JSON: ", 6) ? e.msg + 6 : e.msg;
        return fcgi_errorf(er, 400, "invalid_request_error", "invalid_json", NULL, "invalid JSON at line %d column %zu: %s",
                           line, at - col0 + 1, what);
    }
    if (out->type != JV_DICT) {
        jv_arena_free(a);
        return BAD(NULL, "the request body must be a JSON object");
    }
    *arena = a;
    return 0;
}

/* ---------------------------------------------------------------- typed reads */

int fcgi_opt_float(const jv *o, const char *k, double lo, double hi, float *out, fcgi_error *er) {
    const jv *v = fcgi_jget(o, k);
    if (fcgi_is_null(v)) return 0;
    if (!fcgi_is_num(v)) return BADTYPE(k, "a number");
    double x = v->type == JV_INT ? (double)v->u.i : v->u.f;
    if (!isfinite(x) || x < lo || x > hi) return BAD(k, "'%s' = %g is out of range [%g, %g]", k, x, lo, hi);
    *out = (float)x;
    return 0;
}

int fcgi_opt_int(const jv *o, const char *k, long long lo, long long hi, long long *out, fcgi_error *er) {
    const jv *v = fcgi_jget(o, k);
    if (fcgi_is_null(v)) return 0;
    if (v->type != JV_INT) return BADTYPE(k, "an integer");
    long long x = v->u.i;
    if (x < lo || x > hi) return BAD(k, "'%s' = %lld is out of range [%lld, %lld]", k, x, lo, hi);
    *out = x;
    return 1;
}

int fcgi_opt_bool(const jv *o, const char *k, int *out, fcgi_error *er) {
    const jv *v = fcgi_jget(o, k);
    if (fcgi_is_null(v)) return 0;
    if (v->type != JV_BOOL) return BADTYPE(k, "a boolean");
    *out = (int)v->u.i;
    return 0;
}

int fcgi_opt_str(const jv *o, const char *k, size_t max, const char **out, fcgi_error *er) {
    const jv *v = fcgi_jget(o, k);
    *out = NULL;
    if (fcgi_is_null(v)) return 0;
    if (!fcgi_is_str(v)) return BADTYPE(k, "a string");
    if (v->u.s->len > max) return BAD(k, "'%s' is %zu bytes; the limit is %zu", k, v->u.s->len, max);
    *out = v->u.s->p;
    return 0;
}

/* ---------------------------------------------------------------- shared fields */

int fcgi_check_model(const jv *root, const char *model_id, fcgi_gen *g, fcgi_error *er) {
    const jv *model = fcgi_jget(root, "model");
    if (!model) return BAD("model", "'model' is required");
    if (!fcgi_is_str(model)) return BADTYPE("model", "a string");
    g->model = fcgi_str(model);
    if (strcmp(g->model, model_id))
        return fcgi_errorf(er, 404, "invalid_request_error", "model_not_found", "model",
                           "The model '%.100s' does not exist (this server serves '%s')", g->model, model_id);
    return 0;
}

int fcgi_parse_sampling(const jv *root, const fcgi_limits *lim, fcgi_gen *g, fcgi_error *er) {
    long long x;
    int rc;
    if (fcgi_opt_float(root, "temperature", 0, 2, &g->sp.temperature, er)) return -1;
    if (fcgi_opt_float(root, "top_p", 0, 1, &g->sp.top_p, er)) return -1;
    if (!fcgi_is_null(fcgi_jget(root, "top_p")) && g->sp.top_p <= 0)
        return BAD("top_p", "'top_p' = 0 is out of range (0, 1]: it would keep no token");
    if (fcgi_opt_float(root, "min_p", 0, 1, &g->sp.min_p, er)) return -1;
    if (fcgi_opt_float(root, "presence_penalty", -2, 2, &g->sp.presence_penalty, er)) return -1;
    if (fcgi_opt_float(root, "frequency_penalty", -2, 2, &g->sp.frequency_penalty, er)) return -1;
    if (fcgi_opt_float(root, "repetition_penalty", 0.01, 10, &g->sp.repetition_penalty, er)) return -1;
    if ((rc = fcgi_opt_int(root, "top_k", -1, lim->max_top_k, &x, er)) < 0) return -1;
    if (rc == 1) g->sp.top_k = x < 0 ? 0 : (int32_t)x;
    if ((rc = fcgi_opt_int(root, "seed", INT64_MIN, INT64_MAX, &x, er)) < 0) return -1;
    if (rc == 1) { g->sp.seed = (uint64_t)x; g->has_seed = 1; }
    return 0;
}

int fcgi_check_stop(const jv *v, const char *param, const fcgi_limits *lim, fcgi_gen *g, fcgi_error *er) {
    if (fcgi_is_null(v)) return 0;
    const jv *items = v;
    size_t n = 1;
    if (fcgi_is_list(v)) {
        n = fcgi_list_n(v);
        if (n > (size_t)lim->max_stop) return BAD(param, "%zu stop strings; the limit is %d", n, lim->max_stop);
        items = v->u.l->v;
    } else if (!fcgi_is_str(v)) return BADTYPE(param, "a string or an array of strings");
    for (size_t i = 0; i < n; i++) {
        const jv *s = &items[i];
        if (!fcgi_is_str(s)) return BAD(param, "%s[%zu] must be a string", param, i);
        size_t len = s->u.s->len;
        if (len == 0) return BAD(param, "%s[%zu] is empty", param, i);
        if (len > (size_t)lim->max_stop_len)
            return BAD(param, "%s[%zu] is %zu bytes; the limit is %d", param, i, len, lim->max_stop_len);
        if (g->n_stop >= FCGI_MAX_STOP || g->n_stop >= lim->max_stop)
            return BAD(param, "more than %d stop strings", lim->max_stop);
        g->stop[g->n_stop] = s->u.s->p;
        g->stop_len[g->n_stop] = len;
        g->n_stop++;
    }
    return 0;
}

int fcgi_parse_logit_bias(const jv *v, int32_t n_vocab, fcgi_gen *g, fcgi_error *er) {
    if (fcgi_is_null(v)) return 0;
    if (!fcgi_is_obj(v)) return BADTYPE("logit_bias", "an object of token id -> bias");
    const jv_dict *d = v->u.d;
    if (d->n > SCHED_MAX_BIAS) return BAD("logit_bias", "%zu entries; the limit is %d", d->n, SCHED_MAX_BIAS);
    if (!d->n) return 0;
    g->bias_ids = jv_alloc(g->arena, sizeof(int32_t) * d->n);
    g->bias_vals = jv_alloc(g->arena, sizeof(float) * d->n);
    if (!g->bias_ids || !g->bias_vals) return fcgi_errorf(er, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < d->n; i++) {
        const char *k = d->k[i]->p;
        char *end;
        long id = strtol(k, &end, 10);
        if (!k[0] || *end || id < 0 || id >= n_vocab)
            return BAD("logit_bias", "logit_bias key '%.20s' is not a token id in [0, %d)", k, n_vocab);
        const jv *b = &d->v[i];
        double x = b->type == JV_INT ? (double)b->u.i : b->type == JV_FLOAT ? b->u.f : NAN;
        if (!isfinite(x) || x < -100 || x > 100) return BAD("logit_bias", "logit_bias['%s'] must be a number in [-100, 100]", k);
        g->bias_ids[g->n_bias] = (int32_t)id;
        g->bias_vals[g->n_bias] = (float)x;
        g->n_bias++;
    }
    return 0;
}

int fcgi_valid_fn_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return 0;
    }
    return 1;
}

int fcgi_check_tools(const jv *tools, const fcgi_limits *lim, const char *param, fcgi_error *er) {
    if (!fcgi_is_list(tools)) return BADTYPE(param, "an array");
    if (fcgi_list_n(tools) > 128) return BAD(param, "%zu tools; the limit is 128", fcgi_list_n(tools));
    for (size_t i = 0; i < tools->u.l->n; i++) {
        const jv *t = &tools->u.l->v[i];
        const jv *ty = fcgi_jget(t, "type"), *f = fcgi_jget(t, "function");
        if (!fcgi_is_obj(t) || !fcgi_str_is(ty, "function")) return BAD(param, "%s[%zu].type must be \"function\"", param, i);
        if (!fcgi_is_obj(f)) return BAD(param, "%s[%zu].function must be an object", param, i);
        const jv *name = fcgi_jget(f, "name");
        if (!fcgi_is_str(name) || !fcgi_valid_fn_name(fcgi_str(name)))
            return BAD(param, "%s[%zu].function.name must be 1-64 of [A-Za-z0-9_.-]", param, i);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(fcgi_str(fcgi_jget(fcgi_jget(&tools->u.l->v[j], "function"), "name")), fcgi_str(name)))
                return BAD(param, "%s[%zu]: the function name '%s' is used twice", param, i, fcgi_str(name));
        const jv *d = fcgi_jget(f, "description");
        if (d && !fcgi_is_str(d) && !fcgi_is_null(d)) return BAD(param, "%s[%zu].function.description must be a string", param, i);
        const jv *p = fcgi_jget(f, "parameters");
        if (p && !fcgi_is_obj(p) && !fcgi_is_null(p)) return BAD(param, "%s[%zu].function.parameters must be an object", param, i);
    }
    /* size as the template sees it (compact JSON); the dump stops at the cap */
    jv_buf b;
    jv_buf_init(&b, (size_t)lim->max_tools_bytes);
    err e = {0};
    int rc = jv_dump(&b, *tools, NULL, ",", ":", 0, 0, &e);
    int over = rc || b.over;
    jv_buf_free(&b);
    if (over)
        return fcgi_errorf(er, 400, "invalid_request_error", "tools_too_large", param,
                           "'%s' is more than %ld bytes serialized; the limit is %ld", param, lim->max_tools_bytes,
                           lim->max_tools_bytes);
    return 0;
}

static int has_tool(const fcgi_gen *g, const char *name) {
    for (size_t i = 0; i < fcgi_list_n(g->tools); i++)
        if (!strcmp(fcgi_str(fcgi_jget(fcgi_jget(&g->tools->u.l->v[i], "function"), "name")), name)) return 1;
    return 0;
}

int fcgi_parse_tool_choice(const jv *v, const char *param, fcgi_gen *g, fcgi_error *er) {
    g->tool_choice = FCGI_TOOLS_AUTO;
    if (fcgi_is_null(v)) return 0;
    if (fcgi_is_str(v)) {
        const char *s = fcgi_str(v);
        if (!strcmp(s, "auto")) g->tool_choice = FCGI_TOOLS_AUTO;
        else if (!strcmp(s, "none")) g->tool_choice = FCGI_TOOLS_NONE;
        else if (!strcmp(s, "required")) g->tool_choice = FCGI_TOOLS_REQUIRED;
        else return BAD(param, "%s '%.40s' is not one of \"none\", \"auto\", \"required\" or a function", param, s);
    } else if (fcgi_is_obj(v)) {
        const jv *ty = fcgi_jget(v, "type");
        if (!fcgi_str_is(ty, "function")) return BAD(param, "%s.type must be \"function\"", param);
        const jv *f = fcgi_jget(v, "function");
        const jv *name = fcgi_is_obj(f) ? fcgi_jget(f, "name") : fcgi_jget(v, "name");
        if (!fcgi_is_str(name)) return BAD(param, "%s names no function", param);
        g->tool_choice = FCGI_TOOLS_NAMED;
        g->tool_name = fcgi_str(name);
    } else return BADTYPE(param, "a string or an object");
    if ((g->tool_choice == FCGI_TOOLS_REQUIRED || g->tool_choice == FCGI_TOOLS_NAMED) && !fcgi_list_n(g->tools))
        return BAD(param, "%s asks for a tool call but the request has no tools", param);
    if (g->tool_choice == FCGI_TOOLS_NAMED && !has_tool(g, g->tool_name))
        return BAD(param, "%s names '%.64s', which is not among the tools", param, g->tool_name);
    return 0;
}

int fcgi_parse_format(const jv *v, const char *param, int flat, fcgi_gen *g, fcgi_error *er) {
    if (fcgi_is_null(v)) return 0;
    const jv *ty = fcgi_jget(v, "type");
    if (!fcgi_is_obj(v) || !fcgi_is_str(ty)) return BAD(param, "'%s' needs a type", param);
    const char *t = fcgi_str(ty);
    if (!strcmp(t, "text")) { g->format = FCGI_FMT_TEXT; return 0; }
    if (!strcmp(t, "json_object")) { g->format = FCGI_FMT_JSON_OBJECT; return 0; }
    if (strcmp(t, "json_schema")) return BAD(param, "%s type '%.40s' is not one of text, json_object, json_schema", param, t);
    const jv *js = flat ? v : fcgi_jget(v, "json_schema");
    if (!fcgi_is_obj(js)) return BAD(param, "%s.json_schema must be an object", param);
    const jv *name = fcgi_jget(js, "name");
    if (name && !fcgi_is_null(name) && (!fcgi_is_str(name) || !fcgi_valid_fn_name(fcgi_str(name))))
        return BAD(param, "%s: the schema's name must be 1-64 of [A-Za-z0-9_.-]", param);
    const jv *schema = fcgi_jget(js, "schema");
    if (!fcgi_is_obj(schema)) return BAD(param, "%s: 'schema' must be a JSON Schema object", param);
    const jv *strict = fcgi_jget(js, "strict");
    if (strict && !fcgi_is_null(strict) && strict->type != JV_BOOL) return BAD(param, "%s: 'strict' must be a boolean", param);
    g->format = FCGI_FMT_JSON_SCHEMA;
    g->schema = schema;
    return 0;
}

int fcgi_parse_effort(const jv *v, const char *param, fcgi_gen *g, fcgi_error *er) {
    if (fcgi_is_null(v)) return 0;
    static const char *const ok[] = {"none", "minimal", "low", "medium", "high"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (fcgi_str_is(v, ok[i])) { g->reasoning_effort = ok[i]; return 0; }
    return BAD(param, "'%s' must be one of none, minimal, low, medium, high", param);
}

/* ---------------------------------------------------------------- builders */

jv fcgi_jstr(jv_arena *a, const char *s, size_t n) {
    const jv_str *js = jv_str_new(a, s, n);
    return js ? jv_strv(js) : jv_undef();
}

jv fcgi_jdict(jv_arena *a) {
    jv v = jv_undef();
    jv_dict *d = jv_dict_new(a, 4);
    if (d) { v.type = JV_DICT; v.u.d = d; }
    return v;
}

jv fcgi_jlist(jv_arena *a) {
    jv v = jv_undef();
    jv_list *l = jv_list_new(a, 4);
    if (l) { v.type = JV_LIST; v.u.l = l; }
    return v;
}

int fcgi_jset(jv_arena *a, jv *dict, const char *k, jv v) {
    if (fcgi_jbad(v) || dict->type != JV_DICT) return -1;
    const jv_str *ks = jv_str_new(a, k, strlen(k));
    return ks ? jv_dict_set(a, dict->u.d, ks, v) : -1;
}

int fcgi_jpush(jv_arena *a, jv *list, jv v) {
    if (fcgi_jbad(v) || list->type != JV_LIST) return -1;
    return jv_list_push(a, list->u.l, v);
}

/* ---------------------------------------------------------------- chat and completions */

static int check_content(const jv *c, int idx, int required, fcgi_error *er) {
    if (fcgi_is_null(c)) {
        if (required) return BAD("messages", "messages[%d].content is required", idx);
        return 0;
    }
    if (fcgi_is_str(c)) return 0;
    if (!fcgi_is_list(c)) return BAD("messages", "messages[%d].content must be a string or an array of parts", idx);
    for (size_t i = 0; i < c->u.l->n; i++) {
        const jv *part = &c->u.l->v[i];
        const jv *ty = fcgi_jget(part, "type");
        if (!fcgi_is_obj(part) || !fcgi_is_str(ty))
            return BAD("messages", "messages[%d].content[%zu] must be an object with a 'type'", idx, i);
        if (strcmp(fcgi_str(ty), "text"))
            return BAD("messages", "messages[%d].content[%zu]: part type '%.40s' is not supported (text only)", idx, i,
                       fcgi_str(ty));
        if (!fcgi_is_str(fcgi_jget(part, "text")))
            return BAD("messages", "messages[%d].content[%zu].text must be a string", idx, i);
    }
    return 0;
}

static int check_tool_calls(const jv *tc, int idx, fcgi_error *er) {
    if (fcgi_is_null(tc)) return 0;
    if (!fcgi_is_list(tc)) return BAD("messages", "messages[%d].tool_calls must be an array", idx);
    for (size_t i = 0; i < tc->u.l->n; i++) {
        const jv *c = &tc->u.l->v[i];
        const jv *f = fcgi_jget(c, "function");
        if (!fcgi_is_obj(c) || !fcgi_is_obj(f) || !fcgi_is_str(fcgi_jget(f, "name")))
            return BAD("messages", "messages[%d].tool_calls[%zu] needs function.name", idx, i);
        const jv *a = fcgi_jget(f, "arguments");
        if (a && !fcgi_is_str(a) && !fcgi_is_obj(a))
            return BAD("messages", "messages[%d].tool_calls[%zu].function.arguments must be a string", idx, i);
    }
    return 0;
}

static int check_messages(const jv *ms, fcgi_error *er) {
    if (!ms) return BAD("messages", "'messages' is required");
    if (!fcgi_is_list(ms)) return BADTYPE("messages", "an array");
    if (fcgi_list_n(ms) == 0) return BAD("messages", "'messages' must not be empty");
    for (size_t i = 0; i < ms->u.l->n; i++) {
        const jv *m = &ms->u.l->v[i];
        int idx = (int)i;
        if (!fcgi_is_obj(m)) return BAD("messages", "messages[%d] must be an object", idx);
        const jv *role = fcgi_jget(m, "role");
        if (!fcgi_is_str(role)) return BAD("messages", "messages[%d].role must be a string", idx);
        const char *r = fcgi_str(role);
        int assistant = !strcmp(r, "assistant");
        if (strcmp(r, "system") && strcmp(r, "developer") && strcmp(r, "user") && !assistant && strcmp(r, "tool"))
            return BAD("messages", "messages[%d].role '%.40s' is not one of system, developer, user, assistant, tool",
                       idx, r);
        const jv *tc = fcgi_jget(m, "tool_calls");
        if (check_content(fcgi_jget(m, "content"), idx, !assistant || fcgi_is_null(tc), er)) return -1;
        if (assistant && check_tool_calls(tc, idx, er)) return -1;
        const jv *name = fcgi_jget(m, "name");
        if (name && !fcgi_is_str(name) && !fcgi_is_null(name)) return BAD("messages", "messages[%d].name must be a string", idx);
        const jv *tid = fcgi_jget(m, "tool_call_id");
        if (tid && !fcgi_is_str(tid) && !fcgi_is_null(tid))
            return BAD("messages", "messages[%d].tool_call_id must be a string", idx);
        const jv *rc = fcgi_jget(m, "reasoning_content");
        if (rc && !fcgi_is_str(rc) && !fcgi_is_null(rc))
            return BAD("messages", "messages[%d].reasoning_content must be a string", idx);
    }
    return 0;
}

static int check_prompt(const jv *p, fcgi_gen *g, fcgi_error *er) {
    if (!p) return BAD("prompt", "'prompt' is required");
    if (fcgi_list_n(p) == 1 && fcgi_is_str(&p->u.l->v[0])) p = &p->u.l->v[0];
    if (fcgi_is_str(p)) {
        g->prompt = p->u.s->p;
        g->prompt_len = p->u.s->len;
        if (g->prompt_len == 0 && !g->suffix) return BAD("prompt", "'prompt' is empty");
        return 0;
    }
    if (!fcgi_is_list(p)) return BADTYPE("prompt", "a string or an array of token ids");
    if (fcgi_list_n(p) == 0) return BAD("prompt", "'prompt' is empty");
    for (size_t i = 0; i < p->u.l->n; i++) {
        const jv *v = &p->u.l->v[i];
        if (fcgi_is_str(v) || fcgi_is_list(v)) return BAD("prompt", "batched prompts are not supported; send one prompt per request");
        if (v->type != JV_INT) return BAD("prompt", "prompt[%zu] must be a token id (integer)", i);
    }
    g->prompt_ids = p;
    return 0;
}

/* n (choices, 1..FCGI_MAX_N); best_of other than 1 is refused. */
static int parse_n(const jv *root, fcgi_gen *g, fcgi_error *er) {
    long long n = 1;
    int rc = fcgi_opt_int(root, "n", -(1ll << 40), 1ll << 40, &n, er);
    if (rc < 0) return -1;
    if (rc == 1 && n < 1) return BAD("n", "'n' = %lld must be at least 1", n);
    if (rc == 1 && n > FCGI_MAX_N) return BAD("n", "'n' = %lld: at most %d choices per request", n, FCGI_MAX_N);
    g->n = (int)n;
    rc = fcgi_opt_int(root, "best_of", -(1ll << 40), 1ll << 40, &n, er);
    if (rc < 0) return -1;
    if (rc == 1 && n != 1) return BAD("best_of", "'best_of' = %lld: only 1 is supported", n);
    return 0;
}

/* Fields every OpenAI-shaped API has (chat, completions). */
static int common_openai(const jv *root, const fcgi_limits *lim, fcgi_gen *g, fcgi_error *er) {
    if (fcgi_opt_bool(root, "stream", &g->stream, er)) return -1;
    const jv *so = fcgi_jget(root, "stream_options");
    if (!fcgi_is_null(so)) {
        if (!fcgi_is_obj(so)) return BADTYPE("stream_options", "an object");
        if (!g->stream) return BAD("stream_options", "'stream_options' is only allowed when 'stream' is true");
        if (fcgi_opt_bool(so, "include_usage", &g->include_usage, er)) return -1;
    }
    long long x;
    int rc;
    /* max_completion_tokens supersedes max_tokens in OpenAI's chat API */
    const char *mt = !fcgi_is_null(fcgi_jget(root, "max_completion_tokens")) ? "max_completion_tokens" : "max_tokens";
    if ((rc = fcgi_opt_int(root, mt, -(1ll << 62), 1ll << 62, &x, er)) < 0) return -1;
    if (rc == 1) {
        if (x <= 0) return BAD(mt, "'%s' = %lld must be at least 1", mt, x);
        g->max_tokens = x > lim->max_tokens ? lim->max_tokens : (int)x; /* clamped again to the context */
    }
    if (fcgi_parse_sampling(root, lim, g, er)) return -1;
    if (fcgi_parse_logit_bias(fcgi_jget(root, "logit_bias"), lim->n_vocab, g, er)) return -1;
    if (fcgi_check_stop(fcgi_jget(root, "stop"), "stop", lim, g, er)) return -1;
    if (fcgi_opt_bool(root, "ignore_eos", &g->ignore_eos, er)) return -1;
    return 0;
}

static void gen_init(fcgi_gen *g, fcgi_api_kind api, const fcgi_limits *lim) {
    memset(g, 0, sizeof *g);
    g->api = api;
    g->chat = api == FCGI_API_CHAT || api == FCGI_API_RESPONSES || api == FCGI_API_MESSAGES;
    g->max_tokens = -1;
    g->n = 1;
    g->sp = lim->sp;
    g->thinking = -1;
    g->parallel_tool_calls = 1;
}

int fcgi_gen_begin(const char *body, size_t len, fcgi_api_kind api, const fcgi_limits *lim, fcgi_gen *g,
                   fcgi_error *er) {
    gen_init(g, api, lim);
    return fcgi_parse_object(body, len, &g->arena, &g->root, er);
}

int fcgi_request_parse(const char *body, size_t len, int chat, const fcgi_limits *lim, const char *model_id,
                       fcgi_gen *g, fcgi_error *er) {
    if (fcgi_gen_begin(body, len, chat ? FCGI_API_CHAT : FCGI_API_COMPLETIONS, lim, g, er)) return -1;
    const jv *root = &g->root;
    if (fcgi_check_model(root, model_id, g, er) || parse_n(root, g, er)) goto fail;

    if (chat) {
        g->messages = fcgi_jget(root, "messages");
        if (check_messages(g->messages, er)) goto fail;
        const jv *tools = fcgi_jget(root, "tools");
        if (!fcgi_is_null(tools)) {
            if (fcgi_check_tools(tools, lim, "tools", er)) goto fail;
            if (fcgi_list_n(tools)) g->tools = tools;
        }
        if (fcgi_parse_tool_choice(fcgi_jget(root, "tool_choice"), "tool_choice", g, er)) goto fail;
        if (fcgi_opt_bool(root, "parallel_tool_calls", &g->parallel_tool_calls, er)) goto fail;
        if (fcgi_parse_format(fcgi_jget(root, "response_format"), "response_format", 0, g, er)) goto fail;
        if (fcgi_parse_effort(fcgi_jget(root, "reasoning_effort"), "reasoning_effort", g, er)) goto fail;
        const jv *kw = fcgi_jget(root, "chat_template_kwargs");
        if (!fcgi_is_null(kw)) {
            if (!fcgi_is_obj(kw)) { BADTYPE("chat_template_kwargs", "an object"); goto fail; }
            /* the context members built from validated fields cannot come in
             * through the kwargs (a "tools" there would skip the tool checks) */
            static const char *const reserved[] = {"messages", "tools", "add_generation_prompt", "bos_token",
                                                   "eos_token"};
            for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
                if (fcgi_jget(kw, reserved[i])) {
                    BAD("chat_template_kwargs", "chat_template_kwargs.%s is not allowed: it is set from the request's "
                        "own validated fields", reserved[i]);
                    goto fail;
                }
            g->template_kwargs = kw;
        }
    } else {
        const jv *sfx = fcgi_jget(root, "suffix");
        if (!fcgi_is_null(sfx)) {
            if (!fcgi_is_str(sfx)) { BADTYPE("suffix", "a string"); goto fail; }
            g->suffix = sfx->u.s->p;
            g->suffix_len = sfx->u.s->len;
        }
        if (check_prompt(fcgi_jget(root, "prompt"), g, er)) goto fail;
        if (fcgi_opt_bool(root, "echo", &g->echo, er)) goto fail;
        if (g->suffix && g->echo) { BAD("echo", "'echo' cannot be used with 'suffix'"); goto fail; }
    }
    if (common_openai(root, lim, g, er)) goto fail;

    long long x;
    int rc;
    if (chat) {
        if (fcgi_opt_bool(root, "logprobs", &g->logprobs, er)) goto fail;
        if ((rc = fcgi_opt_int(root, "top_logprobs", 0, lim->max_top_logprobs, &x, er)) < 0) goto fail;
        if (rc == 1) {
            if (!g->logprobs && x > 0) { BAD("top_logprobs", "'top_logprobs' needs 'logprobs': true"); goto fail; }
            g->top_logprobs = (int)x;
        }
    } else {
        /* legacy completions: logprobs is the number of alternatives */
        if ((rc = fcgi_opt_int(root, "logprobs", 0, lim->max_top_logprobs, &x, er)) < 0) goto fail;
        if (rc == 1) { g->logprobs = 1; g->top_logprobs = (int)x; }
    }
    return 0;
fail:
    fcgi_gen_free(g);
    return -1;
}

int fcgi_infill_parse(const char *body, size_t len, const fcgi_limits *lim, const char *model_id, fcgi_gen *g,
                      fcgi_error *er) {
    if (fcgi_gen_begin(body, len, FCGI_API_INFILL, lim, g, er)) return -1;
    const jv *root = &g->root;
    /* llama-server serves one model and does not ask for its name */
    if (fcgi_jget(root, "model") && fcgi_check_model(root, model_id, g, er)) return -1;
    const jv *pre = fcgi_jget(root, "input_prefix"), *suf = fcgi_jget(root, "input_suffix"), *ex = fcgi_jget(root, "prompt");
    if (!fcgi_is_null(pre) && !fcgi_is_str(pre)) return BADTYPE("input_prefix", "a string");
    if (!fcgi_is_null(suf) && !fcgi_is_str(suf)) return BADTYPE("input_suffix", "a string");
    if (!fcgi_is_null(ex) && !fcgi_is_str(ex)) return BADTYPE("prompt", "a string");
    if (fcgi_is_null(pre) && fcgi_is_null(suf)) return BAD("input_prefix", "'input_prefix' or 'input_suffix' is required");
    g->prompt = fcgi_is_str(pre) ? pre->u.s->p : "";
    g->prompt_len = fcgi_is_str(pre) ? pre->u.s->len : 0;
    g->suffix = fcgi_is_str(suf) ? suf->u.s->p : "";
    g->suffix_len = fcgi_is_str(suf) ? suf->u.s->len : 0;
    if (fcgi_is_str(ex)) { g->fim_extra = ex->u.s->p; g->fim_extra_len = ex->u.s->len; }
    long long x;
    int rc;
    if ((rc = fcgi_opt_int(root, "n_predict", -1, 1ll << 62, &x, er)) < 0) return -1;
    if (rc == 1 && x > 0) g->max_tokens = x > lim->max_tokens ? lim->max_tokens : (int)x;
    return common_openai(root, lim, g, er);
}

void fcgi_gen_free(fcgi_gen *g) {
    jv_arena_free(g->arena);
    memset(g, 0, sizeof *g);
}
