/* chat.c — the /v1/chat/completions reply shapes: chat.completion.chunk
 * deltas (role first, then content / reasoning_content / tool_calls) and the
 * whole chat.completion; the head and usage pieces every OpenAI shape shares. */
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
    jw_lit(f, "}");
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
        member(f, k, "reasoning_content");
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

static void chat_whole(fcgi_run *R, jw *f, const char *finish) {
    fcgi_worker *w = R->w;
    int k = 1; /* after role */
    fcgi_write_head(R, f, "chat.completion");
    jw_lit(f, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\"");
    member(f, &k, "content");
    if (w->content.n || !w->tools.n) jw_str(f, w->content.p ? w->content.p : "", w->content.n);
    else jw_lit(f, "null");
    reasoning_and_tools(R, f, &k);
    jw_lit(f, "},\"logprobs\":");
    chat_logprobs(R, f);
    finish_reason(f, finish);
    jw_lit(f, "}],\"usage\":");
    fcgi_write_usage(R, f);
    jw_lit(f, "}");
}

const fcgi_api fcgi_api_chat = {
    .id_prefix = "chatcmpl-",
    .chunk_object = "chat.completion.chunk",
    .logprob = chat_logprob,
    .chunk = chat_chunk,
    .whole = chat_whole,
};
