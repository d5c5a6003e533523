/* scheduler.h — the scheduler (prefix sched_): one thread drives the engine and
 * runs continuous batching; front-end threads submit requests and read events back.
 *
 * Policy only. A request is prompt token ids + sampling parameters. Every step
 * the scheduler batches the next token of each running sequence together with
 * chunks of pending prompts, under max_batched_tokens and max_seqs (decode
 * first, so running streams keep their pace). New requests join between steps;
 * finished and cancelled ones leave at once. When the KV pool runs dry the
 * youngest sequence is preempted (requeued at the head; its cached prefix makes
 * the restart cheap). It reaches the backend only through engine.h (forward,
 * sample, slot_reset / slot_accept) and KV blocks only through kvpool.h.
 *
 * Front ends never touch model state. They call sched_submit, then sched_next in
 * a loop (with a timeout so they can send keep-alives) until a DONE or ERROR
 * event, then sched_release. sched_cancel (the client went away, a stop string
 * matched) makes the request finish at the next step. Errors are values
 * (err_code + message); the front end maps them to its statuses.
 *
 * Owns: the KV pool bookkeeping (kvpool), the request queue and a fixed pool of
 * request handles, all planned at sched_create; it borrows the engine. Events go
 * through a fixed-size ring per request (the scheduler never blocks on a slow
 * reader: when the ring is full, the sequence waits a step). Sampling draws come
 * from each request's own seeded RNG (sampler_rng), so a sequence's tokens do not
 * depend on what it was batched with, nor on a preemption. */
#ifndef SPARKD_SCHED_H
#define SPARKD_SCHED_H

#include <stdint.h>

#include "engine.h"
#include "err.h"
#include "sampler.h"

#define SCHED_MAX_TOP_LOGPROBS ENGINE_MAX_TOP

typedef struct sched sched;
typedef struct sched_req sched_req;

typedef struct sched_opts {
    int n_ctx;              /* max positions per sequence (prompt + generated): the engine's */
    int max_seqs;           /* sequences decoded together (<= the engine's max_seqs) */
    int max_batched_tokens; /* tokens per forward step (<= the engine's max_tokens) */
    int max_queue;          /* waiting requests beyond free decode slots before ERR_NOMEM (429) */
    int no_prefix_cache;    /* prefix caching is on unless this is set (or the plan forbids it) */
    int32_t n_vocab;        /* prompt ids must be below it */
    const int32_t *eog;     /* (n_eog) end-of-generation ids (copied): the tokenizer's */
    int n_eog;
} sched_opts;

#define SCHED_MAX_BIAS 1024 /* logit_bias entries per request */

/* A rule on the tokens a request may generate (a grammar from grammar.h behind it,
 * or anything else with these three calls). The scheduler calls it on its own thread
 * only, once per generated token: mask before the token is picked (the engine applies
 * it, engine.h), accept after. A nonzero return ends the request with an ERROR event
 * carrying e (ERR_INVALID: the rule cannot go on). */
typedef struct sched_constraint {
    /* Allowed ids of the next token into words: ceil(n_vocab / 32) words, bit id % 32
     * of word id / 32 set = allowed (engine.h). A mask that allows nothing is an
     * error the scheduler reports. */
    int (*mask)(void *u, uint32_t *words, err *e);
    int (*accept)(void *u, int32_t token, err *e);
    /* 1 once the output is complete and nothing may follow: the request finishes
     * (SCHED_FINISH_STOP) without asking the model for an end token. May be NULL. */
    int (*done)(void *u);
    void *u;
} sched_constraint;

typedef struct sched_params {
    const int32_t *prompt; /* (n_prompt) ids; copied at submit */
    int n_prompt;
    int max_tokens;        /* >= 1; clamped to n_ctx - n_prompt */
    sampler_params sp;
    int top_logprobs;      /* 0..SCHED_MAX_TOP_LOGPROBS alternatives per token */
    int logprobs;          /* report the chosen token's logprob */
    int ignore_eos;
    const sched_constraint *constraint; /* NULL, or borrowed until the final event */
    const int32_t *bias_ids;  /* (n_bias) logit_bias, copied at submit; ids < n_vocab */
    const float *bias_vals;
    int n_bias;               /* 0..SCHED_MAX_BIAS */
    /* Nonzero: a group of requests with one prompt (the n choices of one API
     * request). A queued member is not admitted while a running member is still
     * computing the prompt; then it maps the prompt's full KV blocks from the
     * prefix cache (when the cache is on) and computes only the last partial
     * block, so n choices share the prompt's KV. */
    uint64_t group;
} sched_params;

typedef enum sched_event_type {
    SCHED_EV_TOKEN = 0, /* one generated token */
    SCHED_EV_DONE,      /* finished: see finish */
    SCHED_EV_ERROR,     /* failed: see code, msg */
} sched_event_type;

typedef enum sched_finish {
    SCHED_FINISH_STOP = 0,   /* end-of-generation token */
    SCHED_FINISH_LENGTH,     /* max_tokens or context reached */
    SCHED_FINISH_CANCELLED,  /* sched_cancel (by the front end) */
    SCHED_FINISH_DRAINED,    /* cut by sched_drain's deadline: the output is incomplete */
} sched_finish;

typedef struct sched_event {
    sched_event_type type;
    int32_t token;
    float logprob;                              /* log softmax of the chosen token */
    int n_top;
    int32_t top_ids[SCHED_MAX_TOP_LOGPROBS];
    float top_logprobs[SCHED_MAX_TOP_LOGPROBS];
    sched_finish finish;
    int n_prompt, n_generated;                  /* usage, on DONE */
    int n_cached;                               /* on DONE: prompt tokens found in the prefix cache */
    double ttft_s;                              /* on DONE: submit -> first token */
    err_code code;                              /* on ERROR: ERR_IO = the engine failed */
    char msg[160];                              /* on ERROR */
} sched_event;

typedef struct sched_stats {
    long queued, running;
    long steps, batched_seqs_total; /* mean batch size = batched_seqs_total / steps */
    long prompt_tokens, generated_tokens; /* computed (prefix-cache hits are not) */
    long kv_used, kv_total;         /* KV blocks referenced by running sequences / in the pool */
    long kv_cached;                 /* unreferenced blocks kept for prefix reuse */
    long prefix_hit_tokens, prefix_miss_tokens; /* prompt tokens found / not found in the cache */
    long preemptions;
    int engine_failed; /* a step got ERR_UNAVAILABLE from the engine (a tensor-parallel group
                        * that lost a rank): every later step fails too, /health says so */
} sched_stats;

/* Starts the scheduler thread over an engine created with plan (its KV block
 * size, block count and prefix-cache validity) and options matching o. The engine
 * stays the caller's; free the scheduler first. */
int sched_create(sched **out, const engine_ops *ops, engine *g, const engine_plan *plan, const sched_opts *o,
                 err *e);
/* Stops the thread. Front ends must have released every handle first. */
void sched_free(sched *s);

/* Queues a request. Errors (with e set): ERR_INVALID (empty prompt, prompt longer
 * than the context, or prompt + max_tokens larger than the whole KV pool — the
 * message gives the numbers), ERR_NOMEM (max_seqs + max_queue requests are
 * already running or waiting), ERR_UNAVAILABLE (draining). max_tokens is
 * clamped to the context. */
int sched_submit(sched *s, const sched_params *p, sched_req **out, err *e);
/* Waits up to timeout_ms for the next event. Returns 1 with *ev filled, 0 on
 * timeout. After DONE or ERROR there are no more events. */
int sched_next(sched_req *r, sched_event *ev, int timeout_ms);
/* The same over n requests of one scheduler (the choices of one API request): the
 * next event of whichever has one, looking from rs[start] on; returns its index, or
 * -1 after timeout_ms with none. */
int sched_next_any(sched_req *const *rs, int n, int start, sched_event *ev, int timeout_ms);
/* Returns how many tokens the request had generated when the cancel was
 * registered; at most one step already in flight can add one more. */
int sched_cancel(sched_req *r);
/* Gives the handle back (cancels first if still running). */
void sched_release(sched_req *r);

void sched_get_stats(sched *s, sched_stats *st);

/* Graceful drain: refuse new requests (ERR_UNAVAILABLE), let running and queued
 * ones finish for up to timeout_s seconds, then cut what is left (their DONE says
 * SCHED_FINISH_DRAINED). Returns the number of requests cut. Blocks the caller. */
int sched_drain(sched *s, double timeout_s);
int sched_draining(sched *s);

#endif
