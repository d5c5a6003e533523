/* chat.c — the /v1/chat/completions reply shapes: chat.completion.chunk
 * deltas (role first, then content / reasoning_content (and the same text as
 * "reasoning", the field newer clients read) / tool_calls) and the whole
 * chat.completion; and what every OpenAI chat/completions shape shares: the
 * head, usage (with prompt_tokens_details.cached_tokens), the stream's chunk
 * framing, its usage chunk, [DONE] and its error event. */
#include <string.h>

#include "run.h"

void fcgi_write_head(fcgi_run *R, jw *f, const char *object) {
    jw_lit(f, "{\"id\":");
    jw_str(f, R->id, strlen(R->id));
    jw_lit(f, ",\"object\":\"");
    jw_lit(f, object);
    jw_lit(f, "\",\"created\":");
    jw_int(f, R->created);
    jw_lit(f, ",\"model\":");
    jw_str(f, R->a->model_id, strlen(R->a->model_id));
    jw_lit(f, ",\"system_fingerprint\":\"sparkd\"");
}

void fcgi_write_usage(fcgi_run *R, jw *f) {
    jw_lit(f, "{\"prompt_tokens\":");
    jw_int(f, R->n_prompt);
    jw_lit(f, ",\"completion_tokens\":");
    jw_int(f, R->n_gen);
    jw_lit(f, ",\"total_tokens\":");
    jw_int(f, R->n_prompt + R->n_gen);
    jw_lit(f, ",\"prompt_tokens_details\":{\"cached_tokens\":");
    jw_int(f, R->n_cached);
    jw_lit(f, "},\"completion_tokens_details\":{\"reasoning_tokens\":");
    jw_int(f, R->n_reasoning);
    jw_lit(f, "}}");
}

void fcgi_write_usage_n(fcgi_run *const *R, int n, jw *f) {
    fcgi_run u = *R[0];
    for (int i = 1; i < n; i++) {
        u.n_gen += R[i]->n_gen;
        u.n_reasoning += R[i]->n_reasoning;
    }
    fcgi_write_usage(&u, f);
}

void fcgi_pending_reset(fcgi_run *R) {
    fcgi_worker *w = R->w;
    jw_reset(&w->content);
    jw_reset(&w->reasoning);
    jw_reset(&w->tools);
    jw_reset(&w->events);
}

void fcgi_tools_close(fcgi_run *R) {
    if (R->tools.open) {
        jw_lit(&R->w->tools, "\"}}");
        R->tools.open = 0;
    }
}

/* {"token","logprob","bytes"[,"top_logprobs"]} */
static void lp_entry(jw *b, const char *piece, size_t plen, float logprob) {
    jw_lit(b, "{\"token\":");
    jw_str(b, piece, plen);
    jw_lit(b, ",\"logprob\":");
    jw_num(b, logprob);
    jw_lit(b, ",\"bytes\":");
    jw_bytes(b, piece, plen);
}

static void chat_logprob(fcgi_run *R, const sched_event *ev) {
    fcgi_worker *w = R->w;
    const tok *tk = R->a->tk;
    size_t plen;
    const char *piece = tok_piece(tk, ev->token, &plen, 0);
    if (!piece) { piece = ""; plen = 0; }
    if (R->lp_count++) jw_lit(&w->lp, ",");
    lp_entry(&w->lp, piece, plen, ev->logprob);
    jw_lit(&w->lp, ",\"top_logprobs\":[");
    for (int i = 0; i < ev->n_top && i < R->g->top_logprobs; i++) {
        size_t tl;
        const char *tp = tok_piece(tk, ev->top_ids[i], &tl, 0);
        if (!tp) { tp = ""; tl = 0; }
        if (i) jw_lit(&w->lp, ",");
        lp_entry(&w->lp, tp, tl, ev->top_logprobs[i]);
        jw_lit(&w->lp, "}");
    }
    jw_lit(&w->lp, "]}");
}

/* {"content":[...]} with the pending entries (consumed), or null. */
static void chat_logprobs(fcgi_run *R, jw *f) {
    fcgi_worker *w = R->w;
    if (!R->g->logprobs) { jw_lit(f, "null"); return; }
    jw_lit(f, "{\"content\":[");
    jw_raw(f, w->lp.p ? w->lp.p : "", w->lp.n);
    jw_lit(f, "]}");
    jw_reset(&w->lp);
    R->lp_count = 0;
}

static void finish_reason(jw *f, const char *finish) {
    jw_lit(f, ",\"finish_reason\":");
    if (finish) jw_str(f, finish, strlen(finish));
    else jw_lit(f, "null");
}

/* "name": as the k-th member of an object (a comma before all but the first). */
static void member(jw *f, int *k, const char *name) {
    jw_lit(f, (*k)++ ? ",\"" : "\"");
    jw_lit(f, name);
    jw_lit(f, "\":");
}

/* The members a delta and a message share after role and content. */
static void reasoning_and_tools(fcgi_run *R, jw *f, int *k) {
    fcgi_worker *w = R->w;
    if (w->reasoning.n) {
        /* reasoning_content (DeepSeek's name, what most clients read) and
         * reasoning (the newer name), the same text */
        member(f, k, "reasoning_content");
        jw_str(f, w->reasoning.p, w->reasoning.n);
        member(f, k, "reasoning");
        jw_str(f, w->reasoning.p, w->reasoning.n);
    }
    if (w->tools.n) {
        member(f, k, "tool_calls");
        jw_lit(f, "[");
        jw_raw(f, w->tools.p, w->tools.n);
        jw_lit(f, "]");
    }
}

static void chat_chunk(fcgi_run *R, jw *f, const char *finish) {
    fcgi_worker *w = R->w;
    /* a delta carries only what changed: the role once (first chunk), content
     * when there is some (or "" beside the role when nothing else is there) */
    int k = 0;
    jw_lit(f, "\"delta\":{");
    if (!R->sent_role) {
        member(f, &k, "role");
        jw_lit(f, "\"assistant\"");
        R->sent_role = 1;
    }
    if (w->content.n || (k && !w->reasoning.n && !w->tools.n)) {
        member(f, &k, "content");
        jw_str(f, w->content.p ? w->content.p : "", w->content.n);
    }
    reasoning_and_tools(R, f, &k);
    jw_lit(f, "},\"logprobs\":");
    if (R->lp_count) chat_logprobs(R, f);
    else jw_lit(f, "null");
    finish_reason(f, finish);
}

static void chat_whole_n(fcgi_run *const *Rs, int n, jw *f, const char *const *finishes) {
    fcgi_write_head(Rs[0], f, "chat.completion");
    jw_lit(f, ",\"choices\":[");
    for (int i = 0; i < n; i++) {
        fcgi_run *R = Rs[i];
        fcgi_worker *w = R->w;
        int k = 1; /* after role */
        jw_lit(f, i ? ",{\"index\":" : "{\"index\":");
        jw_int(f, i);
        jw_lit(f, ",\"message\":{\"role\":\"assistant\"");
        member(f, &k, "content");
        if (w->content.n || !w->tools.n) jw_str(f, w->content.p ? w->content.p : "", w->content.n);
        else jw_lit(f, "null");
        reasoning_and_tools(R, f, &k);
        jw_lit(f, "},\"logprobs\":");
        chat_logprobs(R, f);
        finish_reason(f, finishes[i]);
        jw_lit(f, "}");
    }
    jw_lit(f, "],\"usage\":");
    fcgi_write_usage_n(Rs, n, f);
    jw_lit(f, "}");
}

static void chat_whole(fcgi_run *R, jw *f, const char *finish) { chat_whole_n(&R, 1, f, &finish); }

/* ---- the OpenAI stream framing (chat and completions) ---- */

/* A chunk with the pending deltas and finish (NULL: not finished); nothing when
 * nothing is pending and finish is NULL. */
int fcgi_openai_chunk(fcgi_run *R, const char *object, void (*choice)(fcgi_run *, jw *, const char *),
                      const char *finish) {
    fcgi_worker *w = R->w;
    if (!finish && !w->content.n && !w->reasoning.n && !w->tools.n && !R->lp_count) {
        jw_reset(&w->events);
        return 0;
    }
    jw *f = &w->frame;
    jw_reset(f);
    /* an open arguments string is closed in this chunk and continued by
     * index in the next (OpenAI's streamed tool_calls deltas) */
    fcgi_tools_close(R);
    fcgi_write_head(R, f, object);
    jw_lit(f, ",\"choices\":[{\"index\":");
    jw_int(f, R->index);
    jw_lit(f, ",");
    choice(R, f, finish);
    jw_lit(f, "}]");
    if (R->g->include_usage) jw_lit(f, ",\"usage\":null");
    jw_lit(f, "}");
    fcgi_pending_reset(R);
    return fcgi_sse_frame(R);
}

int fcgi_openai_choice_end(fcgi_run *R, const char *object, void (*choice)(fcgi_run *, jw *, const char *),
                           const char *finish) {
    fcgi_openai_chunk(R, object, choice, NULL);
    return fcgi_openai_chunk(R, object, choice, finish);
}

int fcgi_openai_end(fcgi_run *R, const char *object, void (*choice)(fcgi_run *, jw *, const char *),
                    const char *finish) {
    fcgi_openai_choice_end(R, object, choice, finish);
    return fcgi_openai_close(R, object);
}

int fcgi_openai_close(fcgi_run *R, const char *object) {
    if (R->g->include_usage) {
        jw *f = &R->w->frame;
        jw_reset(f);
        fcgi_write_head(R, f, object);
        jw_lit(f, ",\"choices\":[],\"usage\":");
        fcgi_write_usage(R, f);
        jw_lit(f, "}");
        fcgi_sse_frame(R);
    }
    fcgi_out_write(R->o, "data: [DONE]\n\n", 14);
    return fcgi_out_flush(R->o);
}

int fcgi_openai_error(fcgi_run *R, const char *object, void (*choice)(fcgi_run *, jw *, const char *),
                      const fcgi_error *er) {
    fcgi_openai_chunk(R, object, choice, NULL);
    jw *f = &R->w->frame;
    jw_reset(f);
    fcgi_error_write(f, er);
    return fcgi_sse_frame(R);
}

static int chat_delta(fcgi_run *R) { return fcgi_openai_chunk(R, "chat.completion.chunk", chat_chunk, NULL); }
static int chat_end(fcgi_run *R, const char *finish) {
    return fcgi_openai_end(R, "chat.completion.chunk", chat_chunk, finish);
}
static int chat_error(fcgi_run *R, const fcgi_error *er) {
    return fcgi_openai_error(R, "chat.completion.chunk", chat_chunk, er);
}
static int chat_choice_end(fcgi_run *R, const char *finish) {
    return fcgi_openai_choice_end(R, "chat.completion.chunk", chat_chunk, finish);
}
static int chat_close(fcgi_run *R) { return fcgi_openai_close(R, "chat.completion.chunk"); }

const fcgi_api fcgi_api_chat = {
    .id_prefix = "chatcmpl-",
    .logprob = chat_logprob,
    .stream_delta = chat_delta,
    .stream_end = chat_end,
    .stream_error = chat_error,
    .whole = chat_whole,
    .whole_n = chat_whole_n,
    .stream_choice_end = chat_choice_end,
    .stream_close = chat_close,
};
