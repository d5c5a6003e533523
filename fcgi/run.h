/* run.h — one generation in flight, shared by the generation loop
 * (generate.c), the event-stream framing (sse.c) and the API shapes that
 * write it out (chat.c for chat and completions, messages.c, responses.c).
 *
 * The loop turns scheduler events into text and routes it (stop strings, the
 * output parser) into the worker's pending buffers: w->content, w->reasoning,
 * w->tools (OpenAI's tool_calls delta array body) and the logprob buffers, and,
 * in order, into w->events (the log the Anthropic and Responses shapes read,
 * where the order of blocks matters). An API shape (fcgi_api) then writes what
 * is pending as stream events, or the whole reply at the end.
 *
 * Owns nothing: a fcgi_run lives on the worker's stack for one request and
 * points at the app, the worker's buffers and the validated request. */
#ifndef SPARKD_FCGI_RUN_H
#define SPARKD_FCGI_RUN_H

#include "fcgi.h"

typedef struct fcgi_run fcgi_run;

/* One API's reply shapes. finish is the loop's word for how it ended: "stop"
 * (end token or a stop string: then R->stop_index >= 0), "length",
 * "tool_calls"; each shape says it in its own terms. */
typedef struct fcgi_api {
    const char *id_prefix;  /* "chatcmpl-", "cmpl-", "msg_", "resp_" */
    /* One generated token's logprob entry into the pending buffers (NULL: the
     * shape reports none). */
    void (*logprob)(fcgi_run *R, const sched_event *ev);
    /* Stream: what is pending, as events (nothing when nothing is). -1 when the
     * client is gone. */
    int (*stream_delta)(fcgi_run *R);
    /* Stream: the events that end a complete reply. */
    int (*stream_end)(fcgi_run *R, const char *finish);
    /* Stream: the reply cannot complete (drain deadline, engine fault): what is
     * pending, then the error in the shape's own error event; never the events
     * of a complete reply. */
    int (*stream_error)(fcgi_run *R, const fcgi_error *er);
    /* The whole non-streamed reply into f. */
    void (*whole)(fcgi_run *R, jw *f, const char *finish);
    /* n > 1 choices (chat and completions only; NULL elsewhere): the whole reply
     * with R[0..n) as choices 0..n-1 and usage over all of them; in a stream, a
     * choice's end (what is pending, then its finish chunk), and once all have
     * ended the stream's end (the usage chunk if asked, [DONE]) written by R
     * with usage over all choices. */
    void (*whole_n)(fcgi_run *const *R, int n, jw *f, const char *const *finish);
    int (*stream_choice_end)(fcgi_run *R, const char *finish);
    int (*stream_close)(fcgi_run *R);
} fcgi_api;

extern const fcgi_api fcgi_api_chat, fcgi_api_completions, fcgi_api_messages, fcgi_api_responses, fcgi_api_infill;

typedef struct fcgi_tools_state {
    int open; /* a tool call's arguments string is open in w->tools */
    int n;    /* tool calls seen */
    int done; /* parallel_tool_calls false: the one call is complete; later events are dropped */
} fcgi_tools_state;

struct fcgi_run {
    fcgi_app *a;
    fcgi_worker *w;
    const fcgi_gen *g;
    fcgi_out *o;
    const fcgi_api *api;
    char id[48];
    int index;            /* the choice (n > 1): its chunks' and its object's "index" */
    long created;
    int n_prompt;
    int n_cached;         /* prompt tokens the prefix cache held */
    int n_gen;            /* completion tokens reported in usage */
    int n_reasoning;      /* of them, reasoning (approximate: tokens while the parser was in reasoning) */
    size_t nhold;         /* bytes held back in w->hold (may start a stop string) */
    int stop_hit;
    int stop_index;       /* which stop string ended it, -1 */
    int n_seen;           /* token events read */
    size_t text_off;      /* completions logprobs text_offset */
    parse *ps;            /* output parser (chat models with reasoning/tool formats), or NULL */
    fcgi_tools_state tools;
    int sent_role;        /* chat stream: the first delta carried the role */
    int lp_count;         /* entries in w->lp */
    int in_reasoning;     /* the parser's last event was reasoning */
    double t_submit, t_last;
    /* the shapes' own stream state */
    int started;          /* messages/responses: the opening events went out */
    int block;            /* messages: index of the open content block, -1 none */
    int block_type;       /* messages: FCGI_EV_* of the open block */
    int seq;              /* responses: sequence_number of the next event */
    int item;             /* responses: output_index of the open item, -1 none */
    int item_type;        /* responses: FCGI_EV_* of the open item */
    int n_items;          /* responses: output items so far */
    char item_id[48];     /* responses: id of the open item */
    char call_id[64];     /* responses: the open function_call's call_id and name */
    char call_name[72];
    size_t ev_at;         /* messages/responses: how far w->events has been written out */
};

/* ---- the ordered event log (w->events) ---- */
enum { FCGI_EV_CONTENT = 1, FCGI_EV_REASONING, FCGI_EV_TOOL_START, FCGI_EV_TOOL_ARGS, FCGI_EV_TOOL_END };
typedef struct fcgi_evrec {
    int type;          /* FCGI_EV_* */
    int index;         /* tool call index */
    const char *text;  /* CONTENT, REASONING, TOOL_ARGS: the delta */
    size_t len;
    const char *id;    /* TOOL_START: the call id, NUL-terminated */
    const char *name;  /* TOOL_START: the function name, NUL-terminated */
} fcgi_evrec;
/* Walks a log from *at (start at 0); 1 with r filled while there is a record. */
int fcgi_events_next(const jw *log, size_t *at, fcgi_evrec *r);

/* ---- shared pieces of the OpenAI shapes (chat.c) ---- */
/* {"id":...,"object":object,"created":...,"model":...,"system_fingerprint":...  (left open) */
void fcgi_write_head(fcgi_run *R, jw *f, const char *object);
void fcgi_write_usage(fcgi_run *R, jw *f);
/* Closes an open tool-call arguments string in w->tools. */
void fcgi_tools_close(fcgi_run *R);
/* Clears what a stream flush consumed. */
void fcgi_pending_reset(fcgi_run *R);
/* The OpenAI stream: a chunk of the pending deltas (choice writes the choice's
 * members; finish NULL: not finished); the end (pending, finish chunk, usage
 * chunk if asked, [DONE]); the error end (pending, then the error object). */
int fcgi_openai_chunk(fcgi_run *R, const char *object, void (*choice)(fcgi_run *, jw *, const char *),
                      const char *finish);
int fcgi_openai_end(fcgi_run *R, const char *object, void (*choice)(fcgi_run *, jw *, const char *),
                    const char *finish);
/* fcgi_openai_end in two: one choice's end (pending, its finish chunk); the
 * stream's end (usage chunk if asked, [DONE]). */
int fcgi_openai_choice_end(fcgi_run *R, const char *object, void (*choice)(fcgi_run *, jw *, const char *),
                           const char *finish);
int fcgi_openai_close(fcgi_run *R, const char *object);
/* Usage over R[0..n): the prompt once, completion and reasoning tokens summed. */
void fcgi_write_usage_n(fcgi_run *const *R, int n, jw *f);
int fcgi_openai_error(fcgi_run *R, const char *object, void (*choice)(fcgi_run *, jw *, const char *),
                      const fcgi_error *er);

/* ---- sse.c ---- */
/* Headers of an event stream (once). */
int fcgi_sse_start(fcgi_run *R);
/* Sends w->frame as one "data: ...\n\n" event and flushes; -1 if the client is gone. */
int fcgi_sse_frame(fcgi_run *R);
/* Sends w->frame as "event: NAME\ndata: ...\n\n" (flushed when flush). */
int fcgi_sse_named(fcgi_run *R, const char *name, int flush);
/* A ": keep-alive" comment (opens the stream if needed). */
void fcgi_sse_keepalive(fcgi_run *R);

#endif
