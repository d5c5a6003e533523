/* fcgi.h — the FastCGI responder and the OpenAI-compatible HTTP API.
 *
 * Layers, in the order a request meets them:
 *   server.c   the server's life: listening socket, worker threads (accept
 *              under a mutex), model, SIGTERM drain, second signal
 *   wire.c     the FastCGI record layer (our own, from the 1.0 spec): params
 *              (bounded), body, STDOUT records, management records
 *   conn.c     one connection: params -> HTTP request, body with the size cap,
 *              fcgi_handle, end of request
 *   route.c    method + path -> handler; auth; /health /metrics /v1/models
 *              /tokenize /detokenize
 *   request.c  JSON body -> fcgi_gen: parsed once (jsonv.h) and every field
 *              type- and range-checked; the values stay for the template
 *   prompt.c   fcgi_gen -> prompt token ids (chat template rendered from the
 *              request's own values, or the completions prompt)
 *   generate.c the generation loop: sched events -> text -> stop strings ->
 *              output parser -> the API's writer (run.h)
 *   chat.c, completions.c   the two OpenAI shapes of a reply (chunks, whole)
 *   sse.c      event-stream framing: headers, data frames, keep-alives, errors
 *   reply.c    status lines, headers, OpenAI-shaped error bodies
 *   jw.c       the JSON text writer every reply is written with
 *   metrics.c  counters and histograms, Prometheus text format
 *   auth.c     API keys: SHA-256 (BearSSL) compared in constant time
 *
 * The transport is behind fcgi_out (write/flush/gone callbacks) so the API
 * layer is testable without sockets (tests/unit/test_http*.c).
 *
 * Owns: fcgi_app holds the session (model, tokenizer, template, engine,
 * scheduler: serve/session.h) for the life of the server; each worker thread
 * owns one fcgi_worker whose buffers are sized at start. */
#ifndef SPARKD_FCGI_H
#define SPARKD_FCGI_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "config.h"
#include "err.h"
#include "jsonv.h"
#include "output_parse.h"
#include "sampler.h"
#include "scheduler.h"
#include "session.h"
#include "tmpl.h"
#include "tok.h"
#include "jw.h"

/* ---- metrics (metrics.c) ---- */
#define FCGI_HIST_BUCKETS 14
typedef struct fcgi_hist {
    const double *le;                     /* FCGI_HIST_BUCKETS upper bounds (seconds) */
    _Atomic long count[FCGI_HIST_BUCKETS + 1]; /* per bucket, last = +Inf (not cumulative) */
    _Atomic long n;
    _Atomic uint64_t sum_us;              /* sum in microseconds (atomic add, no lock) */
} fcgi_hist;

enum { FCGI_NSTATUS = 10 };               /* statuses counted by code, see metrics.c */
typedef struct fcgi_metrics {
    _Atomic long requests[FCGI_NSTATUS];
    _Atomic long errors[8];               /* by type, see metrics.c */
    _Atomic long prompt_tokens, generated_tokens, cancelled, client_gone;
    _Atomic long cut_drain, cut_engine; /* generations cut by the drain deadline / an engine fault */
    fcgi_hist ttft, itl, e2e;
} fcgi_metrics;

void fcgi_metrics_init(fcgi_metrics *m);
void fcgi_metrics_status(fcgi_metrics *m, int status);
void fcgi_metrics_error(fcgi_metrics *m, const char *type);
void fcgi_hist_observe(fcgi_hist *h, double seconds);
/* Renders the text exposition format into buf; returns bytes (truncated at cap). */
size_t fcgi_metrics_render(const fcgi_metrics *m, const sched_stats *st, int state, char *buf, size_t cap);

/* ---- auth (auth.c) ---- */
/* Authorization header value ("Bearer KEY") against the configured digests.
 * Returns 1 if allowed. Time depends only on the number of keys. */
int fcgi_auth_check(const config *c, const char *authorization);
/* The same for a bare key (the x-api-key header). */
int fcgi_auth_check_key(const config *c, const char *key);
void fcgi_sha256_hex(const void *data, size_t len, char out[65]);

/* ---- the application ---- */
enum { FCGI_LOADING = 0, FCGI_READY, FCGI_DRAINING, FCGI_FAILED };

/* The Responses API store (responses.c): per response id, the conversation. */
#define FCGI_STORE_MAX 1024              /* responses kept */
#define FCGI_STORE_BYTES ((size_t)256 << 20) /* bytes kept, all responses */
typedef struct fcgi_store fcgi_store;
int fcgi_store_new(fcgi_store **out);
void fcgi_store_free(fcgi_store *s);
int fcgi_store_put(fcgi_store *s, const char *id, const char *text, size_t n);
/* A malloc'd copy of id's text (*n bytes), or NULL. */
char *fcgi_store_get(fcgi_store *s, const char *id, size_t *n);

typedef struct grammar_vocab grammar_vocab;

typedef struct fcgi_app {
    const config *cfg;
    fcgi_store *store;     /* NULL: /v1/responses store disabled */
    grammar_vocab *gvocab; /* constrained output (constrain.c); NULL: not available */
    uint32_t *ws_tokens;   /* (mask words) tokens that are whitespace only */
    uint32_t *eog_tokens;  /* (mask words) end-of-generation tokens */
    struct fcgi_gcache *gcache; /* compiled grammars by their source text (constrain.c) */
    int32_t think_open, think_close; /* "<think>" / "</think>" ids, -1 when absent */
    session *sess;         /* owns what the fields below borrow */
    const tok *tk;
    tmpl *tp;              /* NULL: the model has no chat template (chat -> 400) */
    sched *s;
    parse_format pfmt;
    char model_id[128];
    int n_ctx;
    long created;          /* unix time the model finished loading */
    char bos_text[64], eos_text[64];
    _Atomic int state;
    _Atomic long inflight;
    fcgi_metrics metrics;
} fcgi_app;

/* Response writer. write/flush return 0 or -1 (peer gone); gone() polls the
 * connection without blocking and returns 1 if the peer hung up. */
typedef struct fcgi_out {
    int (*write)(void *u, const char *p, size_t n);
    int (*flush)(void *u);
    int (*gone)(void *u);
    void *u;
    int failed;            /* a write or flush failed: stop, cancel */
    int status;            /* status sent (0 = headers not sent yet) */
    int err_shape;         /* FCGI_ERR_*: how this route's errors look */
} fcgi_out;

enum { FCGI_ERR_OPENAI = 0, FCGI_ERR_ANTHROPIC };

typedef struct fcgi_http_req {
    const char *method;        /* "GET", "POST", ... */
    const char *path;          /* without query string */
    const char *authorization; /* may be NULL */
    const char *x_api_key;     /* the x-api-key header (Anthropic's clients); may be NULL */
    const char *body;          /* may contain NULs; body[body_len] == 0 */
    size_t body_len;
} fcgi_http_req;

/* Per worker thread, sized at start; the jw buffers grow only if a reply
 * outgrows every earlier one, then stay. */
typedef struct fcgi_worker {
    int32_t *ids;       /* (ids_cap) prompt token ids */
    int ids_cap;        /* n_ctx + 1 */
    char *body;         /* (body_cap + 1) request body */
    size_t body_cap;    /* max_body_bytes */
    char *hold;         /* (hold_cap) generated text held back while it may start a stop string */
    size_t hold_cap;
    jw frame;           /* the SSE frame or JSON reply being written */
    jw content;         /* generated content of a non-streamed reply / of one chunk */
    jw reasoning;       /* reasoning_content, same */
    jw tools;           /* tool_calls array body, same */
    jw events;          /* the output parser's events in order (run.h); kept whole for
                         * the messages and responses shapes */
    jw item, items;     /* responses: the open output item's text; the items written so far */
    jw all_content, all_reasoning; /* the whole reply's content and reasoning (the responses store) */
    jw lp;              /* logprob entries not yet sent */
    jw lp2, lp3, lp4;   /* completions logprobs: token_logprobs, top_logprobs, text_offset */
    /* (FCGI_MAX_N - 1) the text buffers of choices 1.. of an n > 1 request (their
     * hold and jw buffers only; ids and body stay the parent's): allocated at the
     * worker's first such request, kept like the jw buffers */
    struct fcgi_worker *more;
} fcgi_worker;

int fcgi_worker_init(fcgi_worker *w, const fcgi_app *a, err *e);
void fcgi_worker_free(fcgi_worker *w);
/* w->more for an n > 1 request; -1 out of memory. */
int fcgi_worker_more(fcgi_worker *w);

/* ---- reply.c ---- */
int fcgi_out_write(fcgi_out *o, const char *p, size_t n);
int fcgi_out_printf(fcgi_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int fcgi_out_flush(fcgi_out *o);
/* Sends "Status:" + content type + extra header lines ("Name: v\r\n"...) + blank line. */
int fcgi_out_headers(fcgi_out *o, int status, const char *content_type, const char *extra);
/* Sends the JSON text in b (then a newline) as a whole response; b->oom
 * turns it into a 500. */
int fcgi_reply_json(fcgi_out *o, int status, const jw *b, const char *extra);

typedef struct fcgi_error {
    int status;
    const char *type;   /* invalid_request_error, authentication_error, ... */
    const char *code;   /* may be NULL */
    const char *param;  /* may be NULL */
    char msg[320];
} fcgi_error;
int fcgi_errorf(fcgi_error *er, int status, const char *type, const char *code, const char *param,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* {"error":{"message","type","param","code"}} into b. */
void fcgi_error_write(jw *b, const fcgi_error *er);
/* The same in a route's shape: FCGI_ERR_ANTHROPIC is
 * {"type":"error","error":{"type","message"}} with Anthropic's type names. */
void fcgi_error_write_shape(jw *b, const fcgi_error *er, int shape);
/* Sends an error response (counted in metrics by the caller). */
int fcgi_reply_error(fcgi_out *o, const fcgi_error *er, const char *extra);

/* ---- request.c ---- */
#define FCGI_MAX_STOP 64
#define FCGI_MAX_DEPTH 64
/* Choices per request ("n" on chat and completions): each is a sequence of its
 * own, counted against max_seqs + max_queue at admission; they share the
 * prompt's KV through the prefix cache (sched_params.group). */
#define FCGI_MAX_N 8

typedef struct fcgi_limits {
    long max_body_bytes;
    int max_tokens;
    int max_stop, max_stop_len;
    long max_tools_bytes;
    int max_top_logprobs;
    int max_top_k;          /* resolved: > 0 */
    int32_t n_vocab;        /* logit_bias ids below it */
    sampler_params sp;      /* defaults */
} fcgi_limits;

/* The API a generation request came in on (and is answered in). */
typedef enum fcgi_api_kind {
    FCGI_API_COMPLETIONS = 0, /* /v1/completions */
    FCGI_API_CHAT,            /* /v1/chat/completions */
    FCGI_API_RESPONSES,       /* /v1/responses (OpenAI) */
    FCGI_API_MESSAGES,        /* /v1/messages (Anthropic) */
    FCGI_API_INFILL,          /* /infill (llama-server's fill-in-the-middle) */
} fcgi_api_kind;

enum { FCGI_TOOLS_AUTO = 0, FCGI_TOOLS_NONE, FCGI_TOOLS_REQUIRED, FCGI_TOOLS_NAMED };
enum { FCGI_FMT_TEXT = 0, FCGI_FMT_JSON_OBJECT, FCGI_FMT_JSON_SCHEMA };

/* A validated generation request, whatever API it came in on: the Responses and
 * Messages parsers translate their input into the chat shape (messages, tools)
 * the templates expect. Every pointer points into values in arena (owned:
 * fcgi_gen_free frees it): the parsed body, and what the translation built. */
typedef struct fcgi_gen {
    int chat;               /* messages-based (chat, responses, messages): 1; completions: 0 */
    fcgi_api_kind api;
    jv_arena *arena;        /* the parsed body's values and everything built from them */
    jv root;                /* the body (a JV_DICT) */
    const char *model;
    const jv *messages;     /* chat shape: the list */
    const jv *tools;        /* chat shape ({"type":"function","function":{...}}): the list, NULL if none */
    const jv *template_kwargs; /* chat_template_kwargs object, may be NULL */
    const char *reasoning_effort; /* "minimal" .. "high", NULL if not asked */
    int thinking;           /* -1: the template's default; 0/1: enable_thinking for the template */
    int tool_choice;        /* FCGI_TOOLS_* */
    const char *tool_name;  /* FCGI_TOOLS_NAMED */
    int parallel_tool_calls;/* 0: at most one call */
    int format;             /* FCGI_FMT_* (response_format / text.format) */
    const jv *schema;       /* FCGI_FMT_JSON_SCHEMA: the schema */
    const char *prompt;     /* completions, text prompt */
    size_t prompt_len;
    const jv *prompt_ids;   /* completions, token-id prompt (a list of JV_INT) */
    const char *suffix;     /* completions: fill-in-the-middle suffix (NULL: none) */
    size_t suffix_len;
    const char *fim_extra;  /* /infill "prompt": text after the middle marker (NULL: none) */
    size_t fim_extra_len;
    int stream, include_usage;
    int n;                  /* choices (chat, completions): 1..FCGI_MAX_N, each a sequence of its own */
    int max_tokens;         /* -1: absent */
    sampler_params sp;
    int logprobs;           /* report logprobs of chosen tokens */
    int top_logprobs;       /* alternatives per token */
    int n_stop;
    const char *stop[FCGI_MAX_STOP];
    size_t stop_len[FCGI_MAX_STOP];
    int n_bias;             /* logit_bias, in arena */
    int32_t *bias_ids;
    float *bias_vals;
    int ignore_eos;
    int echo;
    int has_seed;
    /* /v1/responses */
    int store;              /* keep the response for previous_response_id */
    const char *instructions;
} fcgi_gen;

/* Max nesting of [ and { in a raw body (outside strings), without parsing it. */
int fcgi_json_depth(const char *p, size_t n);
/* Parses and validates a /v1/chat/completions (chat=1) or /v1/completions
 * body. On failure fills er (status 400/404) and returns -1; g is left empty. */
int fcgi_request_parse(const char *body, size_t len, int chat, const fcgi_limits *lim,
                       const char *model_id, fcgi_gen *g, fcgi_error *er);
/* Anthropic's /v1/messages (count_only: /v1/messages/count_tokens, where
 * max_tokens may be absent) and OpenAI's /v1/responses, into the same
 * fcgi_gen. On failure er is set and g must still be freed. */
int fcgi_messages_parse(const char *body, size_t len, const fcgi_limits *lim, const char *model_id, int count_only,
                        fcgi_gen *g, fcgi_error *er);
/* llama-server's /infill: input_prefix, input_suffix, prompt (after the middle
 * marker), and the completions fields; "model" may be left out. */
int fcgi_infill_parse(const char *body, size_t len, const fcgi_limits *lim, const char *model_id, fcgi_gen *g,
                      fcgi_error *er);
int fcgi_responses_parse(const char *body, size_t len, const fcgi_limits *lim, const char *model_id, fcgi_store *store,
                         fcgi_gen *g, fcgi_error *er);
void fcgi_gen_free(fcgi_gen *g);
/* Parses any JSON object body with the same rules (depth, duplicates, UTF-8,
 * strict numbers) into *out, whose values live in *arena (the caller frees it
 * with jv_arena_free). On failure fills er, *arena is NULL, returns -1. */
int fcgi_parse_object(const char *body, size_t len, jv_arena **arena, jv *out, fcgi_error *er);
/* o's member k; NULL when o is not an object or has no such key. */
const jv *fcgi_jget(const jv *o, const char *k);

/* ---- prompt.c ---- */
/* The chat template's context for g, built in g's arena from g's own values
 * (kwargs, messages with text parts joined, add_generation_prompt, bos_token,
 * eos_token, tools). -1: out of memory. */
int fcgi_chat_context(const fcgi_gen *g, const char *bos_text, const char *eos_text, jv *ctx);
/* The prompt of g as token ids in w->ids: the chat template rendered from the
 * request's values (messages, tools, chat_template_kwargs) and tokenized, or
 * the completions prompt (text or ids); prefix (may be NULL): text the reply is
 * to start with, appended to the chat prompt (constrain.h). *thinking: the rendered chat prompt
 * left a reasoning block open, so the output starts as reasoning. Returns the
 * count, or -1 with er set (400: no template, template error, too long for
 * the context). */
int fcgi_prompt_build(fcgi_app *a, fcgi_worker *w, const fcgi_gen *g, const char *prefix, int *thinking,
                      fcgi_error *er);

/* ---- route.c / generate.c ---- */
void fcgi_limits_from(const fcgi_app *a, fcgi_limits *l);
/* Handles one request completely; returns the HTTP status sent. */
int fcgi_handle(fcgi_app *a, fcgi_worker *w, const fcgi_http_req *rq, fcgi_out *o);
int fcgi_generate(fcgi_app *a, fcgi_worker *w, const fcgi_http_req *rq, fcgi_api_kind api, fcgi_out *o);

/* ---- wire.c: the FastCGI record layer ---- */
#define FCGI_MAX_PARAMS_BYTES (64 * 1024) /* a request's PARAMS stream, bytes */
#define FCGI_MAX_PARAMS 512               /* name-value pairs per request */
#define FCGI_OUT_CAP 16384                /* STDOUT bytes buffered before a record goes out */
#define FCGI_IO_WOULD_WAIT (-2)

/* The bytes under a connection: a socket in the server, memory in the fuzzer. */
typedef struct fcgi_io {
    /* Reads up to n bytes: > 0 bytes, 0 at EOF, -1 on error or timeout. idle
     * (waiting for the next request): FCGI_IO_WOULD_WAIT instead of blocking
     * when nothing has arrived, so the connection can be parked. */
    ssize_t (*read)(void *u, void *p, size_t n, int idle);
    /* Peeks without consuming or blocking: bytes there (0: none yet), -1 EOF/error. */
    ssize_t (*peek)(void *u, void *p, size_t n);
    /* Writes all of iov[0..n) (n <= 4): 0, or -1 (peer gone, timeout). */
    int (*write)(void *u, const struct iovec *iov, int n);
    /* 1 if the peer hung up (a half-close is not a hang-up). */
    int (*gone)(void *u);
    void *u;
} fcgi_io;

typedef struct fcgi_conn {
    fcgi_io io;
    int max_conns;        /* answered to FCGI_GET_VALUES */
    unsigned id;          /* the active request id (0: none) */
    int keep;             /* FCGI_KEEP_CONN: the peer keeps the connection after the request */
    int closed;           /* the connection is finished (EOF, error, or !keep after a request) */
    int ended;            /* the active request's END_REQUEST was sent */
    int too_big;          /* the active request's params passed FCGI_MAX_PARAMS_BYTES */
    char *raw;            /* (FCGI_MAX_PARAMS_BYTES) the PARAMS stream */
    size_t nraw;
    char *env;            /* (FCGI_MAX_PARAMS_BYTES + 2 * FCGI_MAX_PARAMS) "NAME\0VALUE\0"... */
    size_t param_at[FCGI_MAX_PARAMS];
    int nparams;
    int stdin_done;       /* the empty STDIN record was read */
    size_t in_left, in_pad; /* of the STDIN record being read: content and padding bytes left */
    char *out;            /* (FCGI_OUT_CAP) STDOUT content not sent yet */
    size_t nout;
    int out_failed;
    uint8_t *scratch;     /* (scratch_cap) content that is read and dropped or answered */
    size_t scratch_cap;
} fcgi_conn;

enum { FCGI_BODY_OK = 0, FCGI_BODY_SHORT, FCGI_BODY_LONG, FCGI_BODY_ABORTED, FCGI_BODY_ERROR };

/* Buffers for one connection at a time, allocated here once. -1: out of memory. */
int fcgi_conn_init(fcgi_conn *c, fcgi_io io, int max_conns);
void fcgi_conn_free(fcgi_conn *c);
/* Starts a new connection on c's buffers. */
void fcgi_conn_reset(fcgi_conn *c, fcgi_io io);
/* Reads up to the end of the next request's params (answering management
 * records on the way): 1 = a request (fcgi_conn_param, fcgi_conn_body), 2 =
 * nothing has arrived (park the connection until it is readable), 0 = the
 * connection ended, -1 = protocol error (the connection is finished). */
int fcgi_conn_next(fcgi_conn *c);
const char *fcgi_conn_param(const fcgi_conn *c, const char *name);
/* Reads len body bytes into buf (*got set): FCGI_BODY_OK, or SHORT (the stream
 * ended first), LONG (more than len), ABORTED, ERROR. The stream's final empty
 * record stays unread until fcgi_conn_end (see wire.c). */
int fcgi_conn_body(fcgi_conn *c, char *buf, size_t len, size_t *got);
/* STDOUT of the active request (buffered; flush sends a record now). */
int fcgi_conn_write(fcgi_conn *c, const char *p, size_t n);
int fcgi_conn_flush(fcgi_conn *c);
/* Ends the active request (STDOUT end, END_REQUEST) and reads the rest of its
 * STDIN. -1 if the connection is finished. */
int fcgi_conn_end(fcgi_conn *c);
/* unix:PATH or HOST:PORT; returns the listening fd or -1 with e set. */
int fcgi_listen_open(const char *listen_addr, int backlog, err *e);

/* ---- conn.c ---- */
/* Serves the requests that have arrived on a connection. Returns 1 if the
 * connection stays open and idle (wait until it is readable, then call again),
 * 0 if it is finished (close it). */
int fcgi_conn_serve(fcgi_app *a, fcgi_worker *w, fcgi_conn *c);

/* ---- server.c ---- */
/* Loads the model named by c and serves until SIGTERM/SIGINT; returns 0 after
 * a clean drain, nonzero with e set on a start failure. */
int fcgi_serve(const config *c, err *e);

#endif
