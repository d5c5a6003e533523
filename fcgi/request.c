/* request.c — a request body -> fcgi_gen, with every field checked.
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
 *    (server.c refuses a longer CONTENT_LENGTH with 413 before reading);
 *  - duplicate keys are rejected (400), not resolved first- or last-wins: a
 *    body that means different things to different parsers is refused;
 *  - "\u0000" inside a string is rejected (values are also C strings);
 *  - a known field of the wrong type or out of range is a 400 naming it;
 *    unknown fields are ignored (clients send many optional extras), except
 *    features we do not implement (n > 1, best_of, suffix, logit_bias,
 *    response_format other than text), which are refused rather than ignored;
 *  - numbers: JSON has no NaN/Infinity literals, and an overflowing literal
 *    (1e999) is refused: both 400. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fcgi.h"

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

#define BAD(param, ...) fcgi_errorf(er, 400, "invalid_request_error", "invalid_value", param, __VA_ARGS__)
#define BADTYPE(param, want) \
    fcgi_errorf(er, 400, "invalid_request_error", "invalid_type", param, "'%s' must be %s", param, want)

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
     * objects); the cap leaves room and still bounds a hostile body */
    jv_arena *a = jv_arena_new(32 * len + (1u << 20));
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

static int is_null(const jv *v) { return !v || v->type == JV_NONE; }
static int is_num(const jv *v) { return v && (v->type == JV_INT || v->type == JV_FLOAT); }
static int is_str(const jv *v) { return v && v->type == JV_STR; }
static int is_list(const jv *v) { return v && v->type == JV_LIST; }
static int is_obj(const jv *v) { return v && v->type == JV_DICT; }
static size_t list_n(const jv *v) { return is_list(v) ? v->u.l->n : 0; }
static const char *str_of(const jv *v) { return is_str(v) ? v->u.s->p : NULL; }

/* Optional number in [lo, hi]; absent or null leaves *out. */
static int opt_float(const jv *o, const char *k, double lo, double hi, float *out, fcgi_error *er) {
    const jv *v = fcgi_jget(o, k);
    if (is_null(v)) return 0;
    if (!is_num(v)) return BADTYPE(k, "a number");
    double x = v->type == JV_INT ? (double)v->u.i : v->u.f;
    if (!isfinite(x) || x < lo || x > hi) return BAD(k, "'%s' = %g is out of range [%g, %g]", k, x, lo, hi);
    *out = (float)x;
    return 0;
}

/* Optional integer in [lo, hi]; returns 1 if present. */
static int opt_int(const jv *o, const char *k, long long lo, long long hi, long long *out, fcgi_error *er) {
    const jv *v = fcgi_jget(o, k);
    if (is_null(v)) return 0;
    if (v->type != JV_INT) return BADTYPE(k, "an integer");
    long long x = v->u.i;
    if (x < lo || x > hi) return BAD(k, "'%s' = %lld is out of range [%lld, %lld]", k, x, lo, hi);
    *out = x;
    return 1;
}

static int opt_bool(const jv *o, const char *k, int *out, fcgi_error *er) {
    const jv *v = fcgi_jget(o, k);
    if (is_null(v)) return 0;
    if (v->type != JV_BOOL) return BADTYPE(k, "a boolean");
    *out = (int)v->u.i;
    return 0;
}

static int check_content(const jv *c, int idx, int required, fcgi_error *er) {
    if (is_null(c)) {
        if (required) return BAD("messages", "messages[%d].content is required", idx);
        return 0;
    }
    if (is_str(c)) return 0;
    if (!is_list(c)) return BAD("messages", "messages[%d].content must be a string or an array of parts", idx);
    for (size_t i = 0; i < c->u.l->n; i++) {
        const jv *part = &c->u.l->v[i];
        const jv *ty = fcgi_jget(part, "type");
        if (!is_obj(part) || !is_str(ty))
            return BAD("messages", "messages[%d].content[%zu] must be an object with a 'type'", idx, i);
        if (strcmp(str_of(ty), "text"))
            return BAD("messages", "messages[%d].content[%zu]: part type '%.40s' is not supported (text only)", idx, i,
                       str_of(ty));
        if (!is_str(fcgi_jget(part, "text")))
            return BAD("messages", "messages[%d].content[%zu].text must be a string", idx, i);
    }
    return 0;
}

static int check_tool_calls(const jv *tc, int idx, fcgi_error *er) {
    if (is_null(tc)) return 0;
    if (!is_list(tc)) return BAD("messages", "messages[%d].tool_calls must be an array", idx);
    for (size_t i = 0; i < tc->u.l->n; i++) {
        const jv *c = &tc->u.l->v[i];
        const jv *f = fcgi_jget(c, "function");
        if (!is_obj(c) || !is_obj(f) || !is_str(fcgi_jget(f, "name")))
            return BAD("messages", "messages[%d].tool_calls[%zu] needs function.name", idx, i);
        const jv *a = fcgi_jget(f, "arguments");
        if (a && !is_str(a) && !is_obj(a))
            return BAD("messages", "messages[%d].tool_calls[%zu].function.arguments must be a string", idx, i);
    }
    return 0;
}

static int check_messages(const jv *ms, fcgi_error *er) {
    if (!ms) return BAD("messages", "'messages' is required");
    if (!is_list(ms)) return BADTYPE("messages", "an array");
    if (list_n(ms) == 0) return BAD("messages", "'messages' must not be empty");
    for (size_t i = 0; i < ms->u.l->n; i++) {
        const jv *m = &ms->u.l->v[i];
        int idx = (int)i;
        if (!is_obj(m)) return BAD("messages", "messages[%d] must be an object", idx);
        const jv *role = fcgi_jget(m, "role");
        if (!is_str(role)) return BAD("messages", "messages[%d].role must be a string", idx);
        const char *r = str_of(role);
        int assistant = !strcmp(r, "assistant");
        if (strcmp(r, "system") && strcmp(r, "developer") && strcmp(r, "user") && !assistant && strcmp(r, "tool"))
            return BAD("messages", "messages[%d].role '%.40s' is not one of system, developer, user, assistant, tool",
                       idx, r);
        const jv *tc = fcgi_jget(m, "tool_calls");
        if (check_content(fcgi_jget(m, "content"), idx, !assistant || is_null(tc), er)) return -1;
        if (assistant && check_tool_calls(tc, idx, er)) return -1;
        const jv *name = fcgi_jget(m, "name");
        if (name && !is_str(name) && !is_null(name)) return BAD("messages", "messages[%d].name must be a string", idx);
        const jv *tid = fcgi_jget(m, "tool_call_id");
        if (tid && !is_str(tid) && !is_null(tid))
            return BAD("messages", "messages[%d].tool_call_id must be a string", idx);
    }
    return 0;
}

static int valid_fn_name(const char *s) {
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

static int check_tools(const jv *tools, const fcgi_limits *lim, fcgi_error *er) {
    if (!is_list(tools)) return BADTYPE("tools", "an array");
    if (list_n(tools) > 128) return BAD("tools", "%zu tools; the limit is 128", list_n(tools));
    for (size_t i = 0; i < tools->u.l->n; i++) {
        const jv *t = &tools->u.l->v[i];
        const jv *ty = fcgi_jget(t, "type"), *f = fcgi_jget(t, "function");
        if (!is_obj(t) || !is_str(ty) || strcmp(str_of(ty), "function"))
            return BAD("tools", "tools[%zu].type must be \"function\"", i);
        if (!is_obj(f)) return BAD("tools", "tools[%zu].function must be an object", i);
        const jv *name = fcgi_jget(f, "name");
        if (!is_str(name) || !valid_fn_name(str_of(name)))
            return BAD("tools", "tools[%zu].function.name must be 1-64 of [A-Za-z0-9_.-]", i);
        const jv *d = fcgi_jget(f, "description");
        if (d && !is_str(d) && !is_null(d)) return BAD("tools", "tools[%zu].function.description must be a string", i);
        const jv *p = fcgi_jget(f, "parameters");
        if (p && !is_obj(p) && !is_null(p)) return BAD("tools", "tools[%zu].function.parameters must be an object", i);
    }
    /* size as the template sees it (compact JSON); the dump stops at the cap */
    jv_buf b;
    jv_buf_init(&b, (size_t)lim->max_tools_bytes);
    err e = {0};
    int rc = jv_dump(&b, *tools, NULL, ",", ":", 0, 0, &e);
    int over = rc || b.over;
    jv_buf_free(&b);
    if (over)
        return fcgi_errorf(er, 400, "invalid_request_error", "tools_too_large", "tools",
                           "'tools' is more than %ld bytes serialized; the limit is %ld", lim->max_tools_bytes,
                           lim->max_tools_bytes);
    return 0;
}

static int check_stop(const jv *v, const fcgi_limits *lim, fcgi_gen *g, fcgi_error *er) {
    if (is_null(v)) return 0;
    const jv *items = v;
    size_t n = 1;
    if (is_list(v)) {
        n = list_n(v);
        if (n > (size_t)lim->max_stop) return BAD("stop", "%zu stop strings; the limit is %d", n, lim->max_stop);
        items = v->u.l->v;
    } else if (!is_str(v)) return BADTYPE("stop", "a string or an array of strings");
    for (size_t i = 0; i < n; i++) {
        const jv *s = &items[i];
        if (!is_str(s)) return BAD("stop", "stop[%zu] must be a string", i);
        size_t len = s->u.s->len;
        if (len == 0) return BAD("stop", "stop[%zu] is empty", i);
        if (len > (size_t)lim->max_stop_len)
            return BAD("stop", "stop[%zu] is %zu bytes; the limit is %d", i, len, lim->max_stop_len);
        if (g->n_stop >= FCGI_MAX_STOP || g->n_stop >= lim->max_stop)
            return BAD("stop", "more than %d stop strings", lim->max_stop);
        g->stop[g->n_stop] = s->u.s->p;
        g->stop_len[g->n_stop] = len;
        g->n_stop++;
    }
    return 0;
}

static int check_prompt(const jv *p, fcgi_gen *g, fcgi_error *er) {
    if (!p) return BAD("prompt", "'prompt' is required");
    if (list_n(p) == 1 && is_str(&p->u.l->v[0])) p = &p->u.l->v[0];
    if (is_str(p)) {
        g->prompt = p->u.s->p;
        g->prompt_len = p->u.s->len;
        if (g->prompt_len == 0) return BAD("prompt", "'prompt' is empty");
        return 0;
    }
    if (!is_list(p)) return BADTYPE("prompt", "a string or an array of token ids");
    if (list_n(p) == 0) return BAD("prompt", "'prompt' is empty");
    for (size_t i = 0; i < p->u.l->n; i++) {
        const jv *v = &p->u.l->v[i];
        if (is_str(v) || is_list(v)) return BAD("prompt", "batched prompts are not supported; send one prompt per request");
        if (v->type != JV_INT) return BAD("prompt", "prompt[%zu] must be a token id (integer)", i);
    }
    g->prompt_ids = p;
    return 0;
}

static int refuse_unsupported(const jv *root, int chat, fcgi_error *er) {
    long long n = 1;
    int rc = opt_int(root, "n", -(1ll << 40), 1ll << 40, &n, er);
    if (rc < 0) return -1;
    if (rc == 1 && n < 1) return BAD("n", "'n' = %lld must be at least 1", n);
    if (rc == 1 && n > 1) return BAD("n", "'n' = %lld: only n = 1 is supported", n);
    rc = opt_int(root, "best_of", -(1ll << 40), 1ll << 40, &n, er);
    if (rc < 0) return -1;
    if (rc == 1 && n != 1) return BAD("best_of", "'best_of' = %lld: only 1 is supported", n);
    const jv *v = fcgi_jget(root, "logit_bias");
    if (!is_null(v) && (!is_obj(v) || v->u.d->n)) return BAD("logit_bias", "'logit_bias' is not supported");
    v = fcgi_jget(root, "response_format");
    if (!is_null(v)) {
        const jv *ty = fcgi_jget(v, "type");
        if (!is_obj(v) || !is_str(ty)) return BAD("response_format", "'response_format' needs a type");
        if (strcmp(str_of(ty), "text"))
            return BAD("response_format", "response_format '%.40s' is not supported (text only)", str_of(ty));
    }
    if (!chat) {
        v = fcgi_jget(root, "suffix");
        if (!is_null(v)) return BAD("suffix", "'suffix' is not supported");
    }
    return 0;
}

int fcgi_request_parse(const char *body, size_t len, int chat, const fcgi_limits *lim, const char *model_id,
                       fcgi_gen *g, fcgi_error *er) {
    memset(g, 0, sizeof *g);
    g->chat = chat;
    g->max_tokens = -1;
    g->sp = lim->sp;
    if (fcgi_parse_object(body, len, &g->arena, &g->root, er)) return -1;
    const jv *root = &g->root;

    const jv *model = fcgi_jget(root, "model");
    if (!model) { BAD("model", "'model' is required"); goto fail; }
    if (!is_str(model)) { BADTYPE("model", "a string"); goto fail; }
    g->model = str_of(model);
    if (strcmp(g->model, model_id)) {
        fcgi_errorf(er, 404, "invalid_request_error", "model_not_found", "model",
                    "The model '%.100s' does not exist (this server serves '%s')", g->model, model_id);
        goto fail;
    }
    if (refuse_unsupported(root, chat, er)) goto fail;

    if (chat) {
        g->messages = fcgi_jget(root, "messages");
        if (check_messages(g->messages, er)) goto fail;
        const jv *tools = fcgi_jget(root, "tools");
        if (!is_null(tools)) {
            if (check_tools(tools, lim, er)) goto fail;
            if (list_n(tools)) g->tools = tools;
        }
        const jv *tc = fcgi_jget(root, "tool_choice");
        if (!is_null(tc)) {
            if (!is_str(tc) && !is_obj(tc)) { BADTYPE("tool_choice", "a string or an object"); goto fail; }
            if (!is_str(tc) || (strcmp(str_of(tc), "auto") && strcmp(str_of(tc), "none"))) {
                BAD("tool_choice", "only tool_choice \"auto\" and \"none\" are supported");
                goto fail;
            }
            if (!strcmp(str_of(tc), "none")) g->tools = NULL;
        }
        const jv *kw = fcgi_jget(root, "chat_template_kwargs");
        if (!is_null(kw)) {
            if (!is_obj(kw)) { BADTYPE("chat_template_kwargs", "an object"); goto fail; }
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
        if (check_prompt(fcgi_jget(root, "prompt"), g, er)) goto fail;
        if (opt_bool(root, "echo", &g->echo, er)) goto fail;
    }

    if (opt_bool(root, "stream", &g->stream, er)) goto fail;
    const jv *so = fcgi_jget(root, "stream_options");
    if (!is_null(so)) {
        if (!is_obj(so)) { BADTYPE("stream_options", "an object"); goto fail; }
        if (!g->stream) { BAD("stream_options", "'stream_options' is only allowed when 'stream' is true"); goto fail; }
        if (opt_bool(so, "include_usage", &g->include_usage, er)) goto fail;
    }

    long long x;
    int rc;
    /* max_completion_tokens supersedes max_tokens in OpenAI's chat API */
    const char *mt = !is_null(fcgi_jget(root, "max_completion_tokens")) ? "max_completion_tokens" : "max_tokens";
    if ((rc = opt_int(root, mt, -(1ll << 62), 1ll << 62, &x, er)) < 0) goto fail;
    if (rc == 1) {
        if (x <= 0) { BAD(mt, "'%s' = %lld must be at least 1", mt, x); goto fail; }
        g->max_tokens = x > lim->max_tokens ? lim->max_tokens : (int)x; /* clamped again to the context */
    }

    if (opt_float(root, "temperature", 0, 2, &g->sp.temperature, er)) goto fail;
    if (opt_float(root, "top_p", 0, 1, &g->sp.top_p, er)) goto fail;
    if (!is_null(fcgi_jget(root, "top_p")) && g->sp.top_p <= 0) {
        BAD("top_p", "'top_p' = 0 is out of range (0, 1]: it would keep no token");
        goto fail;
    }
    if (opt_float(root, "min_p", 0, 1, &g->sp.min_p, er)) goto fail;
    if (opt_float(root, "presence_penalty", -2, 2, &g->sp.presence_penalty, er)) goto fail;
    if (opt_float(root, "frequency_penalty", -2, 2, &g->sp.frequency_penalty, er)) goto fail;
    if (opt_float(root, "repetition_penalty", 0.01, 10, &g->sp.repetition_penalty, er)) goto fail;
    if ((rc = opt_int(root, "top_k", -1, lim->max_top_k, &x, er)) < 0) goto fail;
    if (rc == 1) g->sp.top_k = x < 0 ? 0 : (int32_t)x;
    if ((rc = opt_int(root, "seed", INT64_MIN, INT64_MAX, &x, er)) < 0) goto fail;
    if (rc == 1) { g->sp.seed = (uint64_t)x; g->has_seed = 1; }

    if (chat) {
        if (opt_bool(root, "logprobs", &g->logprobs, er)) goto fail;
        if ((rc = opt_int(root, "top_logprobs", 0, lim->max_top_logprobs, &x, er)) < 0) goto fail;
        if (rc == 1) {
            if (!g->logprobs && x > 0) { BAD("top_logprobs", "'top_logprobs' needs 'logprobs': true"); goto fail; }
            g->top_logprobs = (int)x;
        }
    } else {
        /* legacy completions: logprobs is the number of alternatives */
        if ((rc = opt_int(root, "logprobs", 0, lim->max_top_logprobs, &x, er)) < 0) goto fail;
        if (rc == 1) { g->logprobs = 1; g->top_logprobs = (int)x; }
    }
    if (check_stop(fcgi_jget(root, "stop"), lim, g, er)) goto fail;
    if (opt_bool(root, "ignore_eos", &g->ignore_eos, er)) goto fail;
    return 0;
fail:
    fcgi_gen_free(g);
    return -1;
}

void fcgi_gen_free(fcgi_gen *g) {
    jv_arena_free(g->arena);
    memset(g, 0, sizeof *g);
}
