/* prompt.c — a validated request -> prompt token ids.
 *
 * Chat: the template context is built from the request's own parsed values
 * (fcgi_gen's arena): no text is serialized and parsed again, so the template
 * sees exactly the values request.c validated. The context has HF
 * apply_chat_template's shape: chat_template_kwargs first, then messages
 * (text-part arrays joined with "\n", as most templates want a string; a null
 * content as ""),
 * add_generation_prompt, bos_token, eos_token and tools on top.
 * Completions: the text prompt is tokenized, or the token ids are checked
 * against the vocabulary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi.h"

static const jv_str *str_new(jv_arena *ar, const char *s, size_t n) { return jv_str_new(ar, s, n); }
static int flat_content(jv_arena *ar, const jv *m, jv *out);

static int set(jv_arena *ar, jv_dict *d, const char *k, jv v) {
    const jv_str *ks = str_new(ar, k, strlen(k));
    return ks ? jv_dict_set(ar, d, ks, v) : -1;
}

/* tool_calls whose function.arguments is JSON text become copies with the
 * arguments as the object it spells: HF's templates take arguments as a mapping
 * (Qwen3-Coder iterates it with |items, GPT-OSS writes it with |tojson), while
 * OpenAI's clients send a string. Text that is not a JSON object stays as is. */
static int tool_calls_as_objects(jv_arena *ar, jv_dict *d) {
    long at = jv_dict_find(d, "tool_calls", 10);
    if (at < 0 || d->v[at].type != JV_LIST) return 0;
    const jv_list *calls = d->v[at].u.l;
    jv_list *nl = jv_list_new(ar, calls->n);
    if (!nl) return -1;
    for (size_t i = 0; i < calls->n; i++) {
        jv call = calls->v[i];
        const jv *fn = fcgi_jget(&call, "function");
        const jv *args = fcgi_jget(fn, "arguments");
        jv parsed;
        err e = {0};
        if (args && args->type == JV_STR &&
            !jv_parse(ar, args->u.s->p, args->u.s->len, FCGI_MAX_DEPTH, &parsed, &e) && parsed.type == JV_DICT) {
            jv_dict *nf = jv_dict_new(ar, fn->u.d->n), *nc = jv_dict_new(ar, call.u.d->n);
            if (!nf || !nc) return -1;
            for (size_t k = 0; k < fn->u.d->n; k++) {
                jv v = fn->u.d->v[k];
                if (fn->u.d->k[k]->len == 9 && !memcmp(fn->u.d->k[k]->p, "arguments", 9)) v = parsed;
                if (jv_dict_set(ar, nf, fn->u.d->k[k], v)) return -1;
            }
            for (size_t k = 0; k < call.u.d->n; k++) {
                jv v = call.u.d->v[k];
                if (call.u.d->k[k]->len == 8 && !memcmp(call.u.d->k[k]->p, "function", 8)) {
                    v.type = JV_DICT;
                    v.sub = 0;
                    v.u.d = nf;
                }
                if (jv_dict_set(ar, nc, call.u.d->k[k], v)) return -1;
            }
            call.type = JV_DICT;
            call.u.d = nc;
        }
        if (jv_list_push(ar, nl, call)) return -1;
    }
    d->v[at].type = JV_LIST;
    d->v[at].u.l = nl;
    return 0;
}

/* A shallow copy of a message's members (to change some in the copy). */
static jv_dict *copy_members(jv_arena *ar, const jv *m) {
    const jv_dict *src = m->u.d;
    jv_dict *d = jv_dict_new(ar, src->n + 1);
    if (!d) return NULL;
    for (size_t k = 0; k < src->n; k++)
        if (jv_dict_set(ar, d, src->k[k], src->v[k])) return NULL;
    return d;
}

/* A message with tool_calls gets object arguments (above); then content: an
 * array of text parts joined, null made "". */
static int flat_message(jv_arena *ar, const jv *m, jv *out) {
    jv fixed;
    if (fcgi_jget(m, "tool_calls")) {
        jv_dict *d = copy_members(ar, m);
        if (!d || tool_calls_as_objects(ar, d)) return -1;
        fixed.type = JV_DICT;
        fixed.sub = 0;
        fixed.u.d = d;
        m = &fixed;
    }
    return flat_content(ar, m, out);
}

/* A message whose content is an array of text parts becomes a shallow copy
 * with the parts joined; others are used as they are. */
static int flat_content(jv_arena *ar, const jv *m, jv *out) {
    const jv *c = fcgi_jget(m, "content");
    if (!c || c->type == JV_NONE) {
        /* a tool-calling assistant turn sent with content null (as OpenAI's
         * clients do): templates test substrings of content, so it becomes "" */
        const jv_dict *src = m->u.d;
        jv_dict *d = jv_dict_new(ar, src->n + 1);
        const jv_str *empty = jv_str_new(ar, "", 0), *key = jv_str_new(ar, "content", 7);
        if (!d || !empty || !key) return -1;
        for (size_t k = 0; k < src->n; k++)
            if (jv_dict_set(ar, d, src->k[k], src->v[k])) return -1;
        if (jv_dict_set(ar, d, key, jv_strv(empty))) return -1;
        out->type = JV_DICT;
        out->sub = 0;
        out->u.d = d;
        return 0;
    }
    if (c->type != JV_LIST) { *out = *m; return 0; }
    size_t len = 0;
    for (size_t k = 0; k < c->u.l->n; k++) len += fcgi_jget(&c->u.l->v[k], "text")->u.s->len + 1;
    jv_str *s = jv_alloc(ar, sizeof *s + len + 1);
    if (!s) return -1;
    char *p = s->p;
    for (size_t k = 0; k < c->u.l->n; k++) {
        const jv_str *t = fcgi_jget(&c->u.l->v[k], "text")->u.s;
        if (k) *p++ = '\n';
        memcpy(p, t->p, t->len);
        p += t->len;
    }
    s->len = (size_t)(p - s->p);
    *p = 0;
    const jv_dict *src = m->u.d;
    jv_dict *d = jv_dict_new(ar, src->n);
    if (!d) return -1;
    for (size_t k = 0; k < src->n; k++) {
        jv v = src->v[k];
        if (src->k[k]->len == 7 && !memcmp(src->k[k]->p, "content", 7)) v = jv_strv(s);
        if (jv_dict_set(ar, d, src->k[k], v)) return -1;
    }
    out->type = JV_DICT;
    out->sub = 0;
    out->u.d = d;
    return 0;
}

int fcgi_chat_context(const fcgi_gen *g, const char *bos_text, const char *eos_text, jv *ctx) {
    jv_arena *ar = g->arena;
    jv_dict *d = jv_dict_new(ar, 8);
    if (!d) return -1;
    if (g->template_kwargs) {
        const jv_dict *kw = g->template_kwargs->u.d;
        for (size_t i = 0; i < kw->n; i++)
            if (jv_dict_set(ar, d, kw->k[i], kw->v[i])) return -1;
    }
    const jv_list *ms = g->messages->u.l;
    jv_list *l = jv_list_new(ar, ms->n);
    if (!l) return -1;
    for (size_t i = 0; i < ms->n; i++) {
        jv m;
        if (flat_message(ar, &ms->v[i], &m) || jv_list_push(ar, l, m)) return -1;
    }
    jv msgs = {.type = JV_LIST};
    msgs.u.l = l;
    const jv_str *bos = str_new(ar, bos_text, strlen(bos_text));
    const jv_str *eos = str_new(ar, eos_text, strlen(eos_text));
    if (!bos || !eos) return -1;
    if (set(ar, d, "messages", msgs) || set(ar, d, "add_generation_prompt", jv_bool(1)) ||
        set(ar, d, "bos_token", jv_strv(bos)) || set(ar, d, "eos_token", jv_strv(eos)))
        return -1;
    /* tool_choice "none": the model is not shown the tools at all */
    if (g->tools && g->tool_choice != FCGI_TOOLS_NONE && set(ar, d, "tools", *g->tools)) return -1;
    /* reasoning effort and thinking reach the templates that read them (GPT-OSS:
     * reasoning_effort; Qwen3: enable_thinking), unless the kwargs said already */
    if (g->reasoning_effort && jv_dict_find(d, "reasoning_effort", 16) < 0) {
        const char *e = !strcmp(g->reasoning_effort, "minimal") || !strcmp(g->reasoning_effort, "none") ? "low"
                                                                                                          : g->reasoning_effort;
        const jv_str *es = str_new(ar, e, strlen(e));
        if (!es || set(ar, d, "reasoning_effort", jv_strv(es))) return -1;
    }
    int think = g->thinking;
    if (think < 0 && g->reasoning_effort && (!strcmp(g->reasoning_effort, "none") || !strcmp(g->reasoning_effort, "minimal")))
        think = 0;
    if (think >= 0 && jv_dict_find(d, "enable_thinking", 15) < 0 && set(ar, d, "enable_thinking", jv_bool(think)))
        return -1;
    ctx->type = JV_DICT;
    ctx->sub = 0;
    ctx->u.d = d;
    return 0;
}

static int token_count_from(const err *e) {
    long n = 0;
    if (sscanf(e->msg, "text needs %ld tokens", &n) == 1) return (int)n;
    return -1;
}

static int too_long(fcgi_app *a, const fcgi_gen *g, fcgi_error *er, int n) {
    const char *param = g->chat ? "messages" : "prompt";
    if (n < 0)
        return fcgi_errorf(er, 400, "invalid_request_error", "context_length_exceeded", param,
                           "the prompt does not fit in the context of %d tokens", a->n_ctx);
    return fcgi_errorf(er, 400, "invalid_request_error", "context_length_exceeded", param,
                       "This model's maximum context length is %d tokens; the prompt has %d tokens (at least %d "
                       "needed with one generated token)", a->n_ctx, n, n + 1);
}

/* The rendered prompt leaves a reasoning block open: a "<think>" with no
 * "</think>" after it (Qwen3-Thinking-style generation prompts end with
 * "<think>\n"), so the output starts as reasoning. */
static int opens_think(const char *text, size_t n) {
    const char *open = NULL;
    for (const char *p = text; (p = memmem(p, n - (size_t)(p - text), "<think>", 7)); p += 7) open = p;
    return open && !memmem(open, n - (size_t)(open - text), "</think>", 8);
}

static int chat_tokens(fcgi_app *a, fcgi_worker *w, const fcgi_gen *g, const char *prefix, int *thinking,
                       fcgi_error *er) {
    if (!a->tp)
        return fcgi_errorf(er, 400, "invalid_request_error", "no_chat_template", "messages",
                           "this model has no chat template; use /v1/completions or set [model] chat_template_file");
    jv ctx;
    if (fcgi_chat_context(g, a->bos_text, a->eos_text, &ctx)) return fcgi_errorf(er, 500, "server_error", NULL, NULL, "out of memory");
    err e = {0};
    char *text = NULL;
    size_t tlen = 0;
    if (tmpl_render_value(a->tp, ctx, NULL, &text, &tlen, &e)) {
        free(text);
        return fcgi_errorf(er, 400, "invalid_request_error", "template_error", "messages", "chat template: %s", e.msg);
    }
    /* a template that writes the BOS text itself gets no second BOS */
    size_t bl = strlen(a->bos_text);
    int add_bos = tok_add_bos(a->tk) && !(bl && tlen >= bl && !memcmp(text, a->bos_text, bl));
    int n = tok_encode(a->tk, text, tlen, add_bos, 1, w->ids, w->ids_cap, &e);
    *thinking = opens_think(text, tlen);
    if (n >= 0 && prefix) { /* a forced tool call's opener (constrain.h), the model's own markers */
        int k = tok_encode(a->tk, prefix, strlen(prefix), 0, 1, w->ids + n, w->ids_cap - n, &e);
        n = k < 0 ? k : n + k;
    }
    if (a->cfg->log_level >= 2)
        fprintf(stderr, "sparkd: chat prompt (%zu bytes): %.*s\n", tlen, (int)(tlen > 2000 ? 2000 : tlen), text);
    free(text);
    if (n < 0) return too_long(a, g, er, token_count_from(&e));
    return n;
}

/* The single special token spelled s, or -1. */
static int32_t special_id(const tok *tk, const char *s) {
    int32_t ids[4];
    err e = {0};
    int n = tok_encode(tk, s, strlen(s), 0, 1, ids, 4, &e);
    size_t len;
    const char *p = n == 1 ? tok_piece(tk, ids[0], &len, 1) : NULL;
    return p && len == strlen(s) && !memcmp(p, s, len) ? ids[0] : -1;
}

/* Fill-in-the-middle: PREFIX-marker prompt SUFFIX-marker suffix MIDDLE-marker
 * (PSM order, as Qwen2.5-Coder and StarCoder were trained), with the model's
 * own marker tokens; the user's text is never read for special tokens here. */
static int fim_tokens(fcgi_app *a, fcgi_worker *w, const fcgi_gen *g, fcgi_error *er) {
    static const char *const styles[][3] = {{"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"},
                                            {"<fim_prefix>", "<fim_suffix>", "<fim_middle>"}};
    int32_t m[3] = {-1, -1, -1};
    for (size_t k = 0; k < sizeof styles / sizeof *styles && m[0] < 0; k++) {
        for (int i = 0; i < 3; i++) m[i] = special_id(a->tk, styles[k][i]);
        if (m[0] < 0 || m[1] < 0 || m[2] < 0) m[0] = -1;
    }
    if (m[0] < 0)
        return fcgi_errorf(er, 400, "invalid_request_error", "unsupported_value", "suffix",
                           "this model has no fill-in-the-middle tokens (<|fim_prefix|> or <fim_prefix>): 'suffix' cannot be used");
    err e = {0};
    int n = 0, k;
    if (tok_add_bos(a->tk) && tok_bos(a->tk) >= 0 && n < w->ids_cap) w->ids[n++] = tok_bos(a->tk);
    if (n < w->ids_cap) w->ids[n++] = m[0];
    if ((k = tok_encode(a->tk, g->prompt ? g->prompt : "", g->prompt ? g->prompt_len : 0, 0, 0, w->ids + n, w->ids_cap - n, &e)) < 0)
        return too_long(a, g, er, -1);
    n += k;
    if (n < w->ids_cap) w->ids[n++] = m[1];
    if ((k = tok_encode(a->tk, g->suffix, g->suffix_len, 0, 0, w->ids + n, w->ids_cap - n, &e)) < 0) return too_long(a, g, er, -1);
    n += k;
    if (n >= w->ids_cap) return too_long(a, g, er, -1);
    w->ids[n++] = m[2];
    if (g->fim_extra && g->fim_extra_len) {
        if ((k = tok_encode(a->tk, g->fim_extra, g->fim_extra_len, 0, 0, w->ids + n, w->ids_cap - n, &e)) < 0)
            return too_long(a, g, er, -1);
        n += k;
    }
    return n;
}

int fcgi_prompt_build(fcgi_app *a, fcgi_worker *w, const fcgi_gen *g, const char *prefix, int *thinking,
                      fcgi_error *er) {
    err e = {0};
    int n;
    *thinking = 0;
    if (g->chat) {
        if ((n = chat_tokens(a, w, g, prefix, thinking, er)) < 0) return -1;
    } else if (g->suffix) {
        if ((n = fim_tokens(a, w, g, er)) < 0) return -1;
    } else if (g->prompt) {
        n = tok_encode(a->tk, g->prompt, g->prompt_len, tok_add_bos(a->tk), 1, w->ids, w->ids_cap, &e);
        if (n < 0) return too_long(a, g, er, token_count_from(&e));
    } else {
        const jv_list *l = g->prompt_ids->u.l;
        if (l->n > (size_t)w->ids_cap) return too_long(a, g, er, (int)l->n);
        int32_t V = tok_vocab_size(a->tk);
        for (size_t i = 0; i < l->n; i++) {
            int64_t v = l->v[i].u.i;
            if (v < 0 || v >= V)
                return fcgi_errorf(er, 400, "invalid_request_error", "invalid_value", "prompt",
                                   "prompt[%zu] = %lld is not a token id (vocabulary has %d)", i, (long long)v, V);
            w->ids[i] = (int32_t)v;
        }
        n = (int)l->n;
    }
    if (n == 0) return fcgi_errorf(er, 400, "invalid_request_error", "invalid_value", "prompt", "the prompt encodes to no tokens");
    if (n >= a->n_ctx) return too_long(a, g, er, n);
    return n;
}
