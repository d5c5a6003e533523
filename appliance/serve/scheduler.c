/* sched.c — continuous batching over a paged KV cache with prefix caching
 * (see sched.h).
 *
 * A sequence is a token array toks[0..len) — prompt, then generated tokens —
 * and the number of positions whose K/V are already computed, n_kv. Each step
 * feeds toks[n_kv..len) (in chunks under the step's token budget); when a chunk
 * reaches len, its logits are sampled and the token appended. Decoding is the
 * case len - n_kv == 1, and those go first in every step so running streams
 * keep their pace while long prompts are read in chunks.
 *
 * KV blocks (CPU_KV_BLOCK positions) come from one pool planned at start. A
 * full block of a sequence is content-addressed by a chain hash of all tokens
 * up to its end; when it is released it stays cached (LRU) so a later prompt
 * with the same prefix maps it instead of recomputing. Allocation takes a never-
 * hashed free block first, then evicts the least recently used cached block.
 * When a running sequence needs a block and none is left, the youngest running
 * sequence is preempted: its blocks are released (its full blocks stay cached)
 * and it re-enters the queue head to be recomputed. */
#include "scheduler.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu.h"
#include "tok.h"

#define SCHED_RING 64 /* events buffered per request */
#define BS CPU_KV_BLOCK

typedef enum req_state {
    REQ_FREE = 0,
    REQ_QUEUED,
    REQ_RUNNING,
    REQ_FINISHED, /* final event pushed; waiting for the front end's release */
} req_state;

struct sched_req {
    sched *s;
    req_state state;
    int released;    /* front end gave the handle back */
    int cancelled;
    sched_params p;  /* p.prompt points at toks */
    int32_t *toks;   /* (n_ctx) prompt then generated tokens */
    int len;         /* tokens in toks */
    int n_kv;        /* positions whose K/V are in this sequence's blocks */
    int n_gen;       /* tokens generated (emitted) */
    int32_t *blocks; /* (blocks_per_seq) block table */
    int n_blocks;    /* blocks held */
    int run;         /* index in s->run while running, else -1 */
    long admitted;   /* admission order: preemption picks the youngest */
    int resumed;     /* re-admitted after preemption: sampler history rebuilt */
    double t_submit, t_first;
    /* event ring, guarded by s->mu */
    sched_event ring[SCHED_RING];
    int head, count;
    pthread_cond_t cv; /* signalled when an event is pushed */
    struct sched_req *next_queued;
};

typedef struct kv_block {
    int refs;
    int hashed;          /* holds a full, content-addressed block */
    uint64_t hash;       /* chain hash of all tokens up to this block's end */
    int lru_prev, lru_next; /* cached (refs == 0 && hashed) list, oldest first */
} kv_block;

struct sched {
    const model *m;
    sched_opts o;
    cpu_engine *eng;
    sampler **samplers;   /* (max_seqs) one per running entry */
    sched_req **run;      /* (max_seqs) running requests, NULL free */
    sched_req *reqs;      /* (n_reqs) handle pool */
    int n_reqs;
    sched_req *q_head, *q_tail;
    long n_queued;
    long admit_counter;
    int draining;
    pthread_mutex_t mu;
    pthread_cond_t wake;  /* the scheduler waits here for work */
    pthread_cond_t idle;  /* signalled when nothing is queued or running */
    pthread_t thread;
    int quit;
    cpu_seq *batch;        /* (max_seqs) */
    sched_req **batch_req; /* (max_seqs) */
    tok *tk;               /* end-of-generation ids */

    /* KV block pool */
    int n_blocks, blocks_per_seq;
    kv_block *blk;        /* (n_blocks) */
    int32_t *free_stack;  /* (n_blocks) never-hashed free blocks */
    int n_free;
    int lru_head, lru_tail; /* cached blocks, -1 when empty */
    int n_cached;
    /* hash -> block, open addressing, (map_cap) slots, -1 empty, -2 tombstone */
    int32_t *map;
    int map_cap;
    sched_stats st;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- block pool ---- */

static uint64_t chain_hash(uint64_t h, const int32_t *toks) {
    for (int i = 0; i < BS; i++) {
        h ^= (uint64_t)(uint32_t)toks[i] + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
        h *= 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    return h ? h : 1;
}

static int map_find(const sched *s, uint64_t h) {
    for (int i = (int)(h & (uint64_t)(s->map_cap - 1)), n = 0; n < s->map_cap; n++, i = (i + 1) & (s->map_cap - 1)) {
        int b = s->map[i];
        if (b == -1) return -1;
        if (b >= 0 && s->blk[b].hash == h) return b;
    }
    return -1;
}

static void map_put(sched *s, int b) {
    const uint64_t h = s->blk[b].hash;
    for (int i = (int)(h & (uint64_t)(s->map_cap - 1));; i = (i + 1) & (s->map_cap - 1))
        if (s->map[i] < 0) { s->map[i] = b; return; }
}

static void map_del(sched *s, int b) {
    const uint64_t h = s->blk[b].hash;
    for (int i = (int)(h & (uint64_t)(s->map_cap - 1)), n = 0; n < s->map_cap; n++, i = (i + 1) & (s->map_cap - 1)) {
        if (s->map[i] == -1) return;
        if (s->map[i] == b) { s->map[i] = -2; return; }
    }
}

static void lru_unlink(sched *s, int b) {
    kv_block *k = &s->blk[b];
    if (k->lru_prev >= 0) s->blk[k->lru_prev].lru_next = k->lru_next; else s->lru_head = k->lru_next;
    if (k->lru_next >= 0) s->blk[k->lru_next].lru_prev = k->lru_prev; else s->lru_tail = k->lru_prev;
    k->lru_prev = k->lru_next = -1;
    s->n_cached--;
}

static void lru_push(sched *s, int b) {
    kv_block *k = &s->blk[b];
    k->lru_prev = s->lru_tail;
    k->lru_next = -1;
    if (s->lru_tail >= 0) s->blk[s->lru_tail].lru_next = b; else s->lru_head = b;
    s->lru_tail = b;
    s->n_cached++;
}

static int blocks_available(const sched *s) { return s->n_free + s->n_cached; }

/* A block for new content, or -1. */
static int block_alloc(sched *s) {
    int b;
    if (s->n_free > 0) {
        b = s->free_stack[--s->n_free];
    } else if (s->lru_head >= 0) {
        b = s->lru_head; /* evict the least recently used cached block */
        lru_unlink(s, b);
        map_del(s, b);
    } else {
        return -1;
    }
    s->blk[b].refs = 1;
    s->blk[b].hashed = 0;
    return b;
}

static void block_ref(sched *s, int b) {
    if (s->blk[b].refs++ == 0) lru_unlink(s, b);
}

static void block_unref(sched *s, int b) {
    kv_block *k = &s->blk[b];
    if (--k->refs > 0) return;
    if (k->hashed && !s->o.no_prefix_cache) lru_push(s, b);
    else {
        if (k->hashed) map_del(s, b);
        k->hashed = 0;
        s->free_stack[s->n_free++] = b;
    }
}

/* Block i of r is now full: record its chain hash and publish it, unless an
 * identical block is already cached (then r keeps its private copy). */
static void block_publish(sched *s, sched_req *r, int i) {
    const int b = r->blocks[i];
    if (s->blk[b].hashed) return; /* mapped from the cache */
    s->blk[b].hash = chain_hash(i ? s->blk[r->blocks[i - 1]].hash : 0, r->toks + (size_t)i * BS);
    if (s->o.no_prefix_cache || map_find(s, s->blk[b].hash) >= 0) return;
    s->blk[b].hashed = 1;
    map_put(s, b);
}

static void release_blocks(sched *s, sched_req *r) {
    for (int i = 0; i < r->n_blocks; i++) block_unref(s, r->blocks[i]);
    r->n_blocks = 0;
    r->n_kv = 0;
}

/* ---- events ---- */

static int push_event(sched_req *r, const sched_event *ev) {
    if (r->count == SCHED_RING) return 0;
    r->ring[(r->head + r->count) % SCHED_RING] = *ev;
    r->count++;
    pthread_cond_broadcast(&r->cv);
    return 1;
}

static void leave_run(sched *s, sched_req *r) {
    if (r->run >= 0) {
        s->run[r->run] = NULL;
        r->run = -1;
    }
}

/* Final event; blocks released; the handle returns to the pool once released. */
static void finish(sched *s, sched_req *r, const sched_event *ev) {
    leave_run(s, r);
    release_blocks(s, r);
    if (!push_event(r, ev)) { /* only when the reader is gone: drop its oldest event */
        r->head = (r->head + 1) % SCHED_RING;
        r->count--;
        push_event(r, ev);
    }
    r->state = r->released ? REQ_FREE : REQ_FINISHED;
}

static void done_event(sched_req *r, sched_finish why, sched_event *ev) {
    memset(ev, 0, sizeof *ev);
    ev->type = SCHED_EV_DONE;
    ev->finish = why;
    ev->n_prompt = r->p.n_prompt;
    ev->n_generated = r->n_gen;
    ev->ttft_s = r->t_first > 0 ? r->t_first - r->t_submit : 0;
}

static void token_logprobs(const sched *s, const sched_req *r, const float *logits, int32_t tok,
                           sched_event *ev) {
    const int V = s->m->hp.n_vocab;
    float mx = logits[0];
    for (int i = 1; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)(logits[i] - mx));
    const float lse = mx + (float)log(sum);
    ev->logprob = logits[tok] - lse;
    const int n = r->p.top_logprobs;
    ev->n_top = 0;
    for (int i = 0; i < V && n > 0; i++) { /* insertion into the top n (n <= 20) */
        const float lp = logits[i] - lse;
        int k = ev->n_top;
        if (k == n && lp <= ev->top_logprobs[k - 1]) continue;
        if (k < n) ev->n_top++;
        else k = n - 1;
        while (k > 0 && ev->top_logprobs[k - 1] < lp) {
            ev->top_logprobs[k] = ev->top_logprobs[k - 1];
            ev->top_ids[k] = ev->top_ids[k - 1];
            k--;
        }
        ev->top_logprobs[k] = lp;
        ev->top_ids[k] = i;
    }
}

/* ---- admission and preemption ---- */

/* Maps the longest cached prefix of r's tokens (whole blocks, never the block
 * holding the last token, whose logits must be computed). */
static void map_prefix(sched *s, sched_req *r) {
    r->n_blocks = 0;
    r->n_kv = 0;
    if (s->o.no_prefix_cache) return;
    const int max_full = (r->len - 1) / BS;
    uint64_t h = 0;
    for (int i = 0; i < max_full; i++) {
        h = chain_hash(h, r->toks + (size_t)i * BS);
        int b = map_find(s, h);
        if (b < 0) break;
        block_ref(s, b);
        r->blocks[r->n_blocks++] = b;
        r->n_kv += BS;
    }
}

static void admit(sched *s, sched_req *r, int slot) {
    r->state = REQ_RUNNING;
    r->run = slot;
    r->admitted = ++s->admit_counter;
    s->run[slot] = r;
    map_prefix(s, r);
    if (!r->resumed) {
        s->st.prefix_hit_tokens += r->n_kv;
        s->st.prefix_miss_tokens += r->p.n_prompt - r->n_kv;
    }
    sampler_params sp = r->p.sp;
    if (r->resumed) sp.seed += (uint64_t)r->n_gen; /* a resumed stream draws fresh numbers */
    sampler_reset(s->samplers[slot], &sp);
    for (int k = 0; k < r->len; k++) sampler_accept(s->samplers[slot], r->toks[k]);
}

/* Frees the youngest running sequence's blocks and requeues it at the head. */
static void preempt_youngest(sched *s) {
    sched_req *y = NULL;
    for (int i = 0; i < s->o.max_seqs; i++)
        if (s->run[i] && (!y || s->run[i]->admitted > y->admitted)) y = s->run[i];
    if (!y) return;
    leave_run(s, y);
    release_blocks(s, y);
    y->state = REQ_QUEUED;
    y->resumed = 1;
    y->next_queued = s->q_head;
    s->q_head = y;
    if (!s->q_tail) s->q_tail = y;
    s->n_queued++;
    s->st.preemptions++;
}

/* Makes sure r has blocks for positions [0, upto). 0 on success, -1 if the
 * pool is exhausted (nothing was taken then beyond what r already held). */
static int reserve(sched *s, sched_req *r, int upto) {
    const int need = (upto + BS - 1) / BS;
    while (r->n_blocks < need) {
        int b = block_alloc(s);
        if (b < 0) return -1;
        r->blocks[r->n_blocks++] = b;
    }
    return 0;
}

/* ---- one step ---- */

static int step(sched *s) {
    const int S = s->o.max_seqs;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < S; i++) {
        sched_req *r = s->run[i];
        if (r && (r->cancelled || r->released)) {
            sched_event ev;
            done_event(r, SCHED_FINISH_CANCELLED, &ev);
            finish(s, r, &ev);
        }
    }
    /* admit while a running entry is free and the head's prompt could get blocks */
    for (int i = 0; i < S && s->q_head; i++) {
        if (s->run[i]) continue;
        sched_req *r = s->q_head;
        if (r->cancelled || r->released) {
            s->q_head = r->next_queued;
            if (!s->q_head) s->q_tail = NULL;
            s->n_queued--;
            sched_event ev;
            done_event(r, SCHED_FINISH_CANCELLED, &ev);
            finish(s, r, &ev);
            i--;
            continue;
        }
        /* Admission: its uncached prompt blocks must be available now (cached
         * blocks it would reuse count as available too, conservatively). */
        if ((r->len + BS - 1) / BS > blocks_available(s)) break;
        s->q_head = r->next_queued;
        if (!s->q_head) s->q_tail = NULL;
        s->n_queued--;
        admit(s, r, i);
    }
    /* batch: decoding sequences first, then prompt chunks, under the budget */
    int nb = 0, budget = s->o.max_batched_tokens;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < S && budget > 0; i++) {
            sched_req *r = s->run[i];
            if (!r) continue;
            const int todo = r->len - r->n_kv;
            if ((pass == 0) != (todo == 1)) continue;
            if (todo == 1 && r->count >= SCHED_RING - 1) continue; /* slow reader: sit out */
            const int n = todo < budget ? todo : budget;
            while (reserve(s, r, r->n_kv + n) < 0) {
                preempt_youngest(s);
                if (r->run < 0) break; /* r itself was the youngest */
            }
            if (r->run < 0) continue;
            s->batch[nb] = (cpu_seq){.tokens = r->toks + r->n_kv, .n = n, .pos = r->n_kv, .blocks = r->blocks,
                                     .want_logits = r->n_kv + n == r->len};
            s->batch_req[nb++] = r;
            budget -= n;
        }
    }
    /* a preempted sequence may already be in this batch: drop such entries */
    int w = 0;
    for (int b = 0; b < nb; b++)
        if (s->batch_req[b]->run >= 0) {
            s->batch[w] = s->batch[b];
            s->batch_req[w++] = s->batch_req[b];
        }
    nb = w;
    pthread_mutex_unlock(&s->mu);
    if (nb == 0) return 0;

    err e = {0};
    int rc = cpu_forward(s->eng, s->batch, nb, &e);

    pthread_mutex_lock(&s->mu);
    s->st.steps++;
    s->st.batched_seqs_total += nb;
    for (int b = 0; b < nb; b++) {
        sched_req *r = s->batch_req[b];
        const cpu_seq *q = &s->batch[b];
        if (rc) {
            sched_event ev = {.type = SCHED_EV_ERROR, .http_status = 500};
            snprintf(ev.msg, sizeof ev.msg, "forward failed: %.140s", e.msg);
            finish(s, r, &ev);
            continue;
        }
        const int first_block = r->n_kv / BS;
        const int prompt_end = r->p.n_prompt < r->n_kv + q->n ? r->p.n_prompt : r->n_kv + q->n;
        if (prompt_end > r->n_kv) s->st.prompt_tokens += prompt_end - r->n_kv;
        r->n_kv += q->n;
        for (int i = first_block; i < r->n_kv / BS; i++) block_publish(s, r, i);
        if (!q->want_logits) continue;
        const float *logits = cpu_logits(s->eng, b);
        const int32_t t = sampler_sample(s->samplers[r->run], logits);
        if (r->n_gen == 0) r->t_first = now_s();
        r->n_gen++;
        r->toks[r->len++] = t;
        s->st.generated_tokens++;
        const int eog = !r->p.ignore_eos && s->tk && tok_is_eog(s->tk, t);
        if (!eog) {
            sched_event ev = {.type = SCHED_EV_TOKEN, .token = t};
            if (r->p.logprobs || r->p.top_logprobs) token_logprobs(s, r, logits, t, &ev);
            push_event(r, &ev);
        }
        if (eog || r->n_gen >= r->p.max_tokens || r->len >= s->o.n_ctx) {
            sched_event ev;
            done_event(r, eog ? SCHED_FINISH_STOP : SCHED_FINISH_LENGTH, &ev);
            finish(s, r, &ev);
        }
    }
    if (!s->q_head) {
        int any = 0;
        for (int i = 0; i < S; i++) any |= s->run[i] != NULL;
        if (!any) pthread_cond_broadcast(&s->idle);
    }
    pthread_mutex_unlock(&s->mu);
    return 1;
}

static void *sched_main(void *arg) {
    sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        const int quit = s->quit;
        pthread_mutex_unlock(&s->mu);
        if (quit) return NULL;
        if (step(s)) continue;
        pthread_mutex_lock(&s->mu);
        if (!s->q_head) pthread_cond_broadcast(&s->idle);
        if (!s->quit) {
            /* Sleep until a submit/cancel/release; recheck every 50 ms so a reader
             * draining a full ring lets its sequence resume. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
            pthread_cond_timedwait(&s->wake, &s->mu, &ts);
        }
        pthread_mutex_unlock(&s->mu);
    }
}

/* ---- life cycle ---- */

static void sched_destroy(sched *s) {
    if (s->reqs)
        for (int i = 0; i < s->n_reqs; i++) {
            free(s->reqs[i].toks);
            free(s->reqs[i].blocks);
            pthread_cond_destroy(&s->reqs[i].cv);
        }
    if (s->samplers)
        for (int i = 0; i < s->o.max_seqs; i++) sampler_free(s->samplers[i]);
    free(s->samplers); free(s->run); free(s->batch); free(s->batch_req); free(s->reqs);
    free(s->blk); free(s->free_stack); free(s->map);
    tok_free(s->tk);
    cpu_engine_free(s->eng);
    free(s);
}

int sched_create(sched **out, const model *m, const sched_opts *o, err *e) {
    *out = NULL;
    if (o->max_seqs < 1 || o->max_batched_tokens < 1 || o->n_ctx < 2 || o->max_queue < 0 || o->n_kv_blocks < 0)
        return err_set(e, ERR_INVALID, "scheduler options out of range");
    sched *s = calloc(1, sizeof *s);
    if (!s) return err_set(e, ERR_NOMEM, "out of memory");
    s->m = m;
    s->o = *o;
    s->blocks_per_seq = (o->n_ctx + BS - 1) / BS;
    s->n_blocks = o->n_kv_blocks > 0 ? o->n_kv_blocks : o->max_seqs * s->blocks_per_seq;
    cpu_engine_opts eo = {.n_threads = o->n_threads, .n_ctx = o->n_ctx, .n_slots = o->max_seqs,
                          .max_tokens = o->max_batched_tokens, .n_kv_blocks = s->n_blocks,
                          .kv_type = o->kv_q8 ? CPU_KV_Q8 : o->kv_f16 ? CPU_KV_F16 : CPU_KV_F32};
    int rc = cpu_engine_create(&s->eng, m, &eo, e);
    if (!rc) rc = tok_load(&s->tk, m->gguf, e);
    if (rc) { sched_destroy(s); return rc; }
    s->samplers = calloc((size_t)o->max_seqs, sizeof *s->samplers);
    s->run = calloc((size_t)o->max_seqs, sizeof *s->run);
    s->batch = calloc((size_t)o->max_seqs, sizeof *s->batch);
    s->batch_req = calloc((size_t)o->max_seqs, sizeof *s->batch_req);
    s->n_reqs = o->max_seqs + o->max_queue;
    s->reqs = calloc((size_t)s->n_reqs, sizeof *s->reqs);
    s->blk = calloc((size_t)s->n_blocks, sizeof *s->blk);
    s->free_stack = malloc(sizeof(int32_t) * (size_t)s->n_blocks);
    for (s->map_cap = 16; s->map_cap < 2 * s->n_blocks; s->map_cap *= 2) {}
    s->map = malloc(sizeof(int32_t) * (size_t)s->map_cap);
    if (!s->samplers || !s->run || !s->batch || !s->batch_req || !s->reqs || !s->blk || !s->free_stack || !s->map) {
        sched_destroy(s);
        return err_set(e, ERR_NOMEM, "out of memory for the scheduler");
    }
    for (int i = 0; i < s->map_cap; i++) s->map[i] = -1;
    for (int i = 0; i < s->n_blocks; i++) {
        s->blk[i].lru_prev = s->blk[i].lru_next = -1;
        s->free_stack[i] = s->n_blocks - 1 - i;
    }
    s->n_free = s->n_blocks;
    s->lru_head = s->lru_tail = -1;
    sampler_params sp;
    sampler_default_params(&sp);
    for (int i = 0; i < o->max_seqs; i++)
        if ((rc = sampler_create(&s->samplers[i], m->hp.n_vocab, &sp, e))) { sched_destroy(s); return rc; }
    for (int i = 0; i < s->n_reqs; i++) {
        sched_req *r = &s->reqs[i];
        r->s = s;
        r->run = -1;
        r->toks = malloc(sizeof(int32_t) * (size_t)o->n_ctx);
        r->blocks = malloc(sizeof(int32_t) * (size_t)s->blocks_per_seq);
        pthread_cond_init(&r->cv, NULL);
        if (!r->toks || !r->blocks) { sched_destroy(s); return err_set(e, ERR_NOMEM, "out of memory"); }
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->idle, NULL);
    s->st.kv_total = s->n_blocks;
    if (pthread_create(&s->thread, NULL, sched_main, s)) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->wake);
        pthread_cond_destroy(&s->idle);
        sched_destroy(s);
        return err_set(e, ERR_NOMEM, "cannot start the scheduler thread");
    }
    *out = s;
    return 0;
}

void sched_free(sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->quit = 1;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->idle);
    sched_destroy(s);
}

int sched_submit(sched *s, const sched_params *p, sched_req **out, err *e) {
    *out = NULL;
    if (p->n_prompt < 1) return err_set(e, ERR_INVALID, "the prompt is empty");
    if (p->n_prompt >= s->o.n_ctx)
        return err_set(e, ERR_INVALID,
                       "the prompt has %d tokens but the context holds %d (prompt plus at least one generated token)",
                       p->n_prompt, s->o.n_ctx);
    if (p->max_tokens < 1) return err_set(e, ERR_INVALID, "max_tokens must be at least 1");
    if (p->top_logprobs < 0 || p->top_logprobs > SCHED_MAX_TOP_LOGPROBS)
        return err_set(e, ERR_INVALID, "top_logprobs must be in [0, %d]", SCHED_MAX_TOP_LOGPROBS);
    int rc = sampler_check_params(&p->sp, e);
    if (rc) return rc;
    for (int i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= s->m->hp.n_vocab)
            return err_set(e, ERR_INVALID, "token id %d out of range", p->prompt[i]);
    int max_tokens = p->max_tokens;
    if (max_tokens > s->o.n_ctx - p->n_prompt) max_tokens = s->o.n_ctx - p->n_prompt;
    const long need = ((long)p->n_prompt + max_tokens + BS - 1) / BS;
    if (need > s->n_blocks)
        return err_set(e, ERR_INVALID,
                       "the prompt (%d tokens) plus max_tokens (%d) needs %ld KV blocks of %d, the pool has %d",
                       p->n_prompt, max_tokens, need, BS, s->n_blocks);
    pthread_mutex_lock(&s->mu);
    if (s->draining) {
        pthread_mutex_unlock(&s->mu);
        return err_set(e, ERR_UNAVAILABLE, "the server is shutting down");
    }
    sched_req *r = NULL;
    if (s->n_queued < s->o.max_queue)
        for (int i = 0; i < s->n_reqs; i++)
            if (s->reqs[i].state == REQ_FREE) { r = &s->reqs[i]; break; }
    if (!r) {
        long q = s->n_queued;
        pthread_mutex_unlock(&s->mu);
        return err_set(e, ERR_NOMEM, "the server is busy: %ld requests are waiting", q);
    }
    r->state = REQ_QUEUED;
    r->released = r->cancelled = r->resumed = 0;
    r->p = *p;
    r->p.max_tokens = max_tokens;
    memcpy(r->toks, p->prompt, sizeof(int32_t) * (size_t)p->n_prompt);
    r->p.prompt = r->toks;
    r->len = p->n_prompt;
    r->n_kv = r->n_gen = r->n_blocks = 0;
    r->run = -1;
    r->head = r->count = 0;
    r->t_submit = now_s();
    r->t_first = 0;
    r->next_queued = NULL;
    if (s->q_tail) s->q_tail->next_queued = r;
    else s->q_head = r;
    s->q_tail = r;
    s->n_queued++;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->mu);
    *out = r;
    return 0;
}

int sched_next(sched_req *r, sched_event *ev, int timeout_ms) {
    sched *s = r->s;
    pthread_mutex_lock(&s->mu);
    if (r->count == 0 && timeout_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        while (r->count == 0)
            if (pthread_cond_timedwait(&r->cv, &s->mu, &ts) == ETIMEDOUT) break;
    }
    int got = 0;
    if (r->count > 0) {
        *ev = r->ring[r->head];
        r->head = (r->head + 1) % SCHED_RING;
        r->count--;
        got = 1;
        if (r->count == SCHED_RING - 2) pthread_cond_broadcast(&s->wake); /* room again */
    }
    pthread_mutex_unlock(&s->mu);
    return got;
}

int sched_cancel(sched_req *r) {
    sched *s = r->s;
    pthread_mutex_lock(&s->mu);
    r->cancelled = 1;
    const int n = r->n_gen;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->mu);
    return n;
}

void sched_release(sched_req *r) {
    sched *s = r->s;
    pthread_mutex_lock(&s->mu);
    r->released = 1;
    if (r->state == REQ_FINISHED) r->state = REQ_FREE;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->mu);
}

void sched_get_stats(sched *s, sched_stats *st) {
    pthread_mutex_lock(&s->mu);
    *st = s->st;
    st->kv_cached = s->n_cached;
    st->kv_used = s->n_blocks - s->n_free - s->n_cached;
    st->queued = s->n_queued;
    long running = 0;
    for (int i = 0; i < s->o.max_seqs; i++) running += s->run[i] != NULL;
    st->running = running;
    pthread_mutex_unlock(&s->mu);
}

int sched_drain(sched *s, double timeout_s) {
    pthread_mutex_lock(&s->mu);
    s->draining = 1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double end = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + timeout_s;
    for (;;) {
        int busy = s->q_head != NULL;
        for (int i = 0; i < s->o.max_seqs; i++) busy |= s->run[i] != NULL;
        if (!busy) break;
        clock_gettime(CLOCK_REALTIME, &ts);
        double now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
        if (now >= end) break;
        double wait = end - now < 0.1 ? end - now : 0.1;
        ts.tv_nsec += (long)(wait * 1e9);
        while (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&s->idle, &s->mu, &ts);
    }
    int cancelled = 0;
    for (sched_req *r = s->q_head; r; r = r->next_queued) { r->cancelled = 1; cancelled++; }
    for (int i = 0; i < s->o.max_seqs; i++)
        if (s->run[i]) { s->run[i]->cancelled = 1; cancelled++; }
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->mu);
    return cancelled;
}

int sched_draining(sched *s) {
    pthread_mutex_lock(&s->mu);
    int d = s->draining;
    pthread_mutex_unlock(&s->mu);
    return d;
}

const model *sched_model(const sched *s) { return s->m; }
