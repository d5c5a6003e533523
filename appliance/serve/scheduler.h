/* sched.h — the scheduler (NB: the build uses -iquote for appliance/, so this never shadows <sched.h>): one thread owns the model state and runs continuous
 * batching; front-end threads submit requests and read events back.
 *
 * A request is prompt token ids + sampling parameters. Every step the scheduler
 * batches the next token of each running sequence together with chunks of
 * pending prompts, under max_batched_tokens and max_seqs. New requests join
 * between steps; finished and cancelled ones leave at once, freeing their KV.
 *
 * Front ends never touch model state. They call sched_submit, then
 * sched_next in a loop (with a timeout so they can send keep-alives) until a
 * DONE or ERROR event, then sched_release. sched_cancel (e.g. the client went
 * away, or a stop string matched) makes the request finish at the next step.
 *
 * Owns: the engine (cpu.h), per-slot samplers, the request queue, all planned
 * at sched_create. Per-request memory is one handle from a fixed pool; events
 * go through a fixed-size ring per request (the scheduler never blocks on a
 * slow reader: when the ring is full, the sequence waits a step). */
#ifndef SPARKD_SCHED_H
#define SPARKD_SCHED_H

#include <stdint.h>

#include "err.h"
#include "model.h"
#include "sampler.h"

#define SCHED_MAX_TOP_LOGPROBS 20

typedef struct sched sched;
typedef struct sched_req sched_req;

typedef struct sched_opts {
    int n_threads;          /* CPU engine threads */
    int n_ctx;              /* max positions per sequence (prompt + generated) */
    int max_seqs;           /* sequences decoded together */
    int max_batched_tokens; /* tokens per forward step */
    int max_queue;          /* waiting requests before 429 */
    int n_kv_blocks;        /* KV pool in blocks of CPU_KV_BLOCK (16) positions; 0 = max_seqs * n_ctx / 16 */
    int kv_f16;             /* store K/V as f16 (half the memory) instead of f32 */
    int kv_q8;              /* store K/V as int8 + a scale per head row (a quarter); wins over kv_f16 */
    int no_prefix_cache;    /* prefix caching is on unless this is set */
} sched_opts;

typedef struct sched_params {
    const int32_t *prompt; /* (n_prompt) ids; copied at submit */
    int n_prompt;
    int max_tokens;        /* >= 1; clamped to n_ctx - n_prompt */
    sampler_params sp;
    int top_logprobs;      /* 0..SCHED_MAX_TOP_LOGPROBS alternatives per token */
    int logprobs;          /* report the chosen token's logprob */
    int ignore_eos;
} sched_params;

typedef enum sched_event_type {
    SCHED_EV_TOKEN = 0, /* one generated token */
    SCHED_EV_DONE,      /* finished: see finish */
    SCHED_EV_ERROR,     /* failed: see http_status, msg */
} sched_event_type;

typedef enum sched_finish {
    SCHED_FINISH_STOP = 0,   /* end-of-generation token */
    SCHED_FINISH_LENGTH,     /* max_tokens or context reached */
    SCHED_FINISH_CANCELLED,  /* sched_cancel */
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
    double ttft_s;                              /* on DONE: submit -> first token */
    int http_status;                            /* on ERROR */
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
} sched_stats;

int sched_create(sched **out, const model *m, const sched_opts *o, err *e);
/* Stops the thread. Front ends must have released every handle first. */
void sched_free(sched *s);

/* Queues a request. Errors (with e set): ERR_INVALID (400: empty prompt, prompt
 * longer than the context, or prompt + max_tokens larger than the whole KV pool —
 * the message gives the numbers), ERR_NOMEM (429: the queue is full),
 * ERR_UNAVAILABLE (503: draining). max_tokens is clamped to the context. */
int sched_submit(sched *s, const sched_params *p, sched_req **out, err *e);
/* Waits up to timeout_ms for the next event. Returns 1 with *ev filled, 0 on
 * timeout. After DONE or ERROR there are no more events. */
int sched_next(sched_req *r, sched_event *ev, int timeout_ms);
/* Returns how many tokens the request had generated when the cancel was
 * registered; at most one step already in flight can add one more. */
int sched_cancel(sched_req *r);
/* Gives the handle back (cancels first if still running). */
void sched_release(sched_req *r);

void sched_get_stats(sched *s, sched_stats *st);

/* Graceful drain: refuse new requests (ERR_UNAVAILABLE), let running and queued
 * ones finish for up to timeout_s seconds, then cancel what is left. Returns the
 * number of requests that had to be cancelled. Blocks the caller. */
int sched_drain(sched *s, double timeout_s);
int sched_draining(sched *s);
const model *sched_model(const sched *s);

#endif
