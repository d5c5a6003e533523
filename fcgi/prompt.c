/* prompt.c — a validated request -> prompt token ids.
 *
 * Chat: the template context is built from the request's own parsed values
 * (fcgi_gen's arena): no text is serialized and parsed again, so the template
 * sees exactly the values request.c validated. The context has HF
 * apply_chat_template's shape: chat_template_kwargs first, then messages
 * (text-part arrays joined with "\n", as most templates want a string),
 * add_generation_prompt, bos_token, eos_token and tools on top.
 * Completions: the text prompt is tokenized, or the token ids are checked
 * against the vocabulary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi.h"

static const jv_str *str_new(jv_arena *ar, const char *s, size_t n) { return jv_str_new(ar, s, n); }

static int set(jv_arena *ar, jv_dict *d, const char *k, jv v) {
    const jv_str *ks = str_new(ar, k, strlen(k));
    return ks ? jv_dict_set(ar, d, ks, v) : -1;
}

/* A message whose content is an array of text parts becomes a shallow copy
 * with the parts joined; others are used as they are. */
static int flat_message(jv_arena *ar, const jv *m, jv *out) {
    const jv *c = fcgi_jget(m, "content");
    if (!c || c->type != JV_LIST) { *out = *m; return 0; }
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
    if (g->tools && set(ar, d, "tools", *g->tools)) return -1;
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

static int chat_tokens(fcgi_app *a, fcgi_worker *w, const fcgi_gen *g, int *thinking, fcgi_error *er) {
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
    if (a->cfg->log_level >= 2)
        fprintf(stderr, "sparkd: chat prompt (%zu bytes): %.*s\n", tlen, (int)(tlen > 2000 ? 2000 : tlen), text);
    free(text);
    if (n < 0) return too_long(a, g, er, token_count_from(&e));
    return n;
}

int fcgi_prompt_build(fcgi_app *a, fcgi_worker *w, const fcgi_gen *g, int *thinking, fcgi_error *er) {
    err e = {0};
    int n;
    *thinking = 0;
    if (g->chat) {
        if ((n = chat_tokens(a, w, g, thinking, er)) < 0) return -1;
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
