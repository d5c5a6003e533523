/* completions.c — the legacy /v1/completions reply shapes: text_completion
 * chunks and the whole reply, with logprobs as four parallel arrays (tokens,
 * token_logprobs, top_logprobs as {piece: logprob} objects, text_offset); and
 * llama-server's /infill shape, which editors' completion plugins read:
 * {"content", "stop", "stop_type", "tokens_predicted", "tokens_evaluated"},
 * streamed as data: {"content": delta, "stop": false} events and a last one
 * with stop true. */
#include <string.h>

#include "run.h"

static void completions_logprob(fcgi_run *R, const sched_event *ev) {
    fcgi_worker *w = R->w;
    const tok *tk = R->a->tk;
    size_t plen;
    const char *piece = tok_piece(tk, ev->token, &plen, 0);
    if (!piece) { piece = ""; plen = 0; }
    const char *sep = R->lp_count++ ? "," : "";
    jw_lit(&w->lp, sep);
    jw_str(&w->lp, piece, plen);
    jw_lit(&w->lp2, sep);
    jw_num(&w->lp2, ev->logprob);
    jw_lit(&w->lp3, sep);
    jw_lit(&w->lp3, "{");
    for (int i = 0; i < ev->n_top && i < R->g->top_logprobs; i++) {
        size_t tl;
        const char *tp = tok_piece(tk, ev->top_ids[i], &tl, 0);
        if (!tp) { tp = ""; tl = 0; }
        if (i) jw_lit(&w->lp3, ",");
        jw_str(&w->lp3, tp, tl);
        jw_lit(&w->lp3, ":");
        jw_num(&w->lp3, ev->top_logprobs[i]);
    }
    jw_lit(&w->lp3, "}");
    jw_lit(&w->lp4, sep);
    jw_int(&w->lp4, (long long)R->text_off);
    R->text_off += plen;
}

static void body(jw *f, const jw *b) { jw_raw(f, b->p ? b->p : "", b->n); }

/* The four arrays of the pending entries (consumed), or null. */
static void completions_logprobs(fcgi_run *R, jw *f) {
    fcgi_worker *w = R->w;
    if (!R->g->logprobs) { jw_lit(f, "null"); return; }
    jw_lit(f, "{\"tokens\":[");
    body(f, &w->lp);
    jw_lit(f, "],\"token_logprobs\":[");
    body(f, &w->lp2);
    jw_lit(f, "],\"top_logprobs\":[");
    body(f, &w->lp3);
    jw_lit(f, "],\"text_offset\":[");
    body(f, &w->lp4);
    jw_lit(f, "]}");
    jw_reset(&w->lp); jw_reset(&w->lp2); jw_reset(&w->lp3); jw_reset(&w->lp4);
    R->lp_count = 0;
}

static void text_and_logprobs(fcgi_run *R, jw *f, const char *finish, int whole) {
    fcgi_worker *w = R->w;
    jw_lit(f, "\"text\":");
    jw_str(f, w->content.p ? w->content.p : "", w->content.n);
    jw_lit(f, ",\"logprobs\":");
    if (whole || R->lp_count) completions_logprobs(R, f);
    else jw_lit(f, "null");
    jw_lit(f, ",\"finish_reason\":");
    if (finish) jw_str(f, finish, strlen(finish));
    else jw_lit(f, "null");
}

static void completions_chunk(fcgi_run *R, jw *f, const char *finish) { text_and_logprobs(R, f, finish, 0); }

static void completions_whole_n(fcgi_run *const *R, int n, jw *f, const char *const *finish) {
    fcgi_write_head(R[0], f, "text_completion");
    jw_lit(f, ",\"choices\":[");
    for (int i = 0; i < n; i++) {
        jw_lit(f, i ? ",{\"index\":" : "{\"index\":");
        jw_int(f, i);
        jw_lit(f, ",");
        text_and_logprobs(R[i], f, finish[i], 1);
        jw_lit(f, "}");
    }
    jw_lit(f, "],\"usage\":");
    fcgi_write_usage_n(R, n, f);
    jw_lit(f, "}");
}

static void completions_whole(fcgi_run *R, jw *f, const char *finish) { completions_whole_n(&R, 1, f, &finish); }

static int completions_delta(fcgi_run *R) { return fcgi_openai_chunk(R, "text_completion", completions_chunk, NULL); }
static int completions_end(fcgi_run *R, const char *finish) {
    return fcgi_openai_end(R, "text_completion", completions_chunk, finish);
}
static int completions_error(fcgi_run *R, const fcgi_error *er) {
    return fcgi_openai_error(R, "text_completion", completions_chunk, er);
}
static int completions_choice_end(fcgi_run *R, const char *finish) {
    return fcgi_openai_choice_end(R, "text_completion", completions_chunk, finish);
}
static int completions_close(fcgi_run *R) { return fcgi_openai_close(R, "text_completion"); }

const fcgi_api fcgi_api_completions = {
    .id_prefix = "cmpl-",
    .logprob = completions_logprob,
    .stream_delta = completions_delta,
    .stream_end = completions_end,
    .stream_error = completions_error,
    .whole = completions_whole,
    .whole_n = completions_whole_n,
    .stream_choice_end = completions_choice_end,
    .stream_close = completions_close,
};

/* ---- /infill (llama-server) ---- */

static void infill_obj(fcgi_run *R, jw *f, const char *finish) {
    fcgi_worker *w = R->w;
    jw_lit(f, "{\"content\":");
    jw_str(f, w->content.p ? w->content.p : "", w->content.n);
    jw_lit(f, ",\"id_slot\":0,\"stop\":");
    jw_lit(f, finish ? "true" : "false");
    if (finish) {
        jw_lit(f, ",\"stop_type\":\"");
        jw_lit(f, !strcmp(finish, "length") ? "limit" : R->stop_index >= 0 ? "word" : "eos");
        jw_lit(f, "\",\"model\":");
        jw_str(f, R->a->model_id, strlen(R->a->model_id));
        jw_lit(f, ",\"tokens_predicted\":");
        jw_int(f, R->n_gen);
        jw_lit(f, ",\"tokens_evaluated\":");
        jw_int(f, R->n_prompt);
        jw_lit(f, ",\"tokens_cached\":");
        jw_int(f, R->n_cached);
    }
    jw_lit(f, "}");
}

static int infill_delta(fcgi_run *R) {
    fcgi_worker *w = R->w;
    if (!w->content.n) return 0;
    jw *f = &w->frame;
    jw_reset(f);
    infill_obj(R, f, NULL);
    fcgi_pending_reset(R);
    return fcgi_sse_frame(R);
}

static int infill_end(fcgi_run *R, const char *finish) {
    infill_delta(R);
    jw *f = &R->w->frame;
    jw_reset(f);
    infill_obj(R, f, finish);
    return fcgi_sse_frame(R);
}

static int infill_error(fcgi_run *R, const fcgi_error *er) {
    infill_delta(R);
    jw *f = &R->w->frame;
    jw_reset(f);
    fcgi_error_write(f, er);
    return fcgi_sse_frame(R);
}

static void infill_whole(fcgi_run *R, jw *f, const char *finish) { infill_obj(R, f, finish); }

const fcgi_api fcgi_api_infill = {
    .id_prefix = "infill-",
    .logprob = NULL,
    .stream_delta = infill_delta,
    .stream_end = infill_end,
    .stream_error = infill_error,
    .whole = infill_whole,
};
