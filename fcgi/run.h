/* run.h — one generation in flight, shared by the generation loop
 * (generate.c), the event-stream framing (sse.c) and the API shapes that
 * write it out (chat.c, completions.c).
 *
 * The loop turns scheduler events into text and routes it (stop strings, the
 * output parser) into the worker's pending buffers: w->content, w->reasoning,
 * w->tools (the tool_calls array body) and the logprob buffers. An API shape
 * (fcgi_api) then writes those buffers in its own JSON: a stream chunk with
 * what is pending, or the whole reply at the end.
 *
 * Owns nothing: a fcgi_run lives on the worker's stack for one request and
 * points at the app, the worker's buffers and the validated request. */
#ifndef SPARKD_FCGI_RUN_H
#define SPARKD_FCGI_RUN_H

#include "fcgi.h"

typedef struct fcgi_run fcgi_run;

/* One API's reply shapes. */
typedef struct fcgi_api {
    const char *id_prefix;    /* "chatcmpl-", "cmpl-" */
    const char *chunk_object; /* the "object" of stream chunks */
    /* One generated token's logprob entry into the pending buffers. */
    void (*logprob)(fcgi_run *R, const sched_event *ev);
    /* The "choices" element body of a stream chunk with the pending deltas
     * (consumed) and finish (NULL: not finished yet) into f. */
    void (*chunk)(fcgi_run *R, jw *f, const char *finish);
    /* The whole non-streamed reply into f. */
    void (*whole)(fcgi_run *R, jw *f, const char *finish);
} fcgi_api;

extern const fcgi_api fcgi_api_chat, fcgi_api_completions;

typedef struct fcgi_tools_state {
    int open; /* a tool call's arguments string is open in w->tools */
    int n;    /* tool calls seen */
} fcgi_tools_state;

struct fcgi_run {
    fcgi_app *a;
    fcgi_worker *w;
    const fcgi_gen *g;
    fcgi_out *o;
    const fcgi_api *api;
    char id[48];
    long created;
    int n_prompt;
    int n_gen;            /* completion tokens reported in usage */
    size_t nhold;         /* bytes held back in w->hold (may start a stop string) */
    int stop_hit;
    int n_seen;           /* token events read */
    size_t text_off;      /* completions logprobs text_offset */
    parse *ps;            /* output parser (chat models with reasoning/tool formats), or NULL */
    fcgi_tools_state tools;
    int sent_role;        /* chat stream: the first delta carried the role */
    int lp_count;         /* entries in w->lp */
    double t_submit, t_last;
};

/* ---- shared pieces of the reply shapes (chat.c) ---- */
/* {"id":...,"object":object,"created":...,"model":...,"system_fingerprint":...  (left open) */
void fcgi_write_head(fcgi_run *R, jw *f, const char *object);
void fcgi_write_usage(fcgi_run *R, jw *f);
/* Closes an open tool-call arguments string in w->tools. */
void fcgi_tools_close(fcgi_run *R);

/* ---- sse.c ---- */
/* Headers of an event stream (once). */
int fcgi_sse_start(fcgi_run *R);
/* Sends w->frame as one "data: ...\n\n" event and flushes; -1 if the client is gone. */
int fcgi_sse_frame(fcgi_run *R);
/* A ": keep-alive" comment (opens the stream if needed). */
void fcgi_sse_keepalive(fcgi_run *R);
/* A chunk with the pending deltas (nothing if nothing is pending and finish is NULL). */
int fcgi_sse_chunk(fcgi_run *R, const char *finish);
/* The final usage-only chunk (stream_options.include_usage). */
int fcgi_sse_usage(fcgi_run *R);
/* "data: [DONE]". */
int fcgi_sse_done(fcgi_run *R);
/* An OpenAI error object as a data event after the stream began. */
int fcgi_sse_error(fcgi_run *R, const fcgi_error *er);

#endif
