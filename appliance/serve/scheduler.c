/* scheduler.c — continuous batching over a paged KV cache with prefix caching
 * (see scheduler.h).
 *
 * A sequence is a token array toks[0..len) — prompt, then generated tokens —
 * and the number of positions whose K/V are already computed, n_kv. Each step
 * feeds toks[n_kv..len) (in chunks under the step's token budget); when a chunk
 * reaches len, its logits are sampled and the token appended. Decoding is the
 * case len - n_kv == 1, and those go first in every step so running streams
 * keep their pace while long prompts are read in chunks.
 *
 * KV blocks come from kvpool (prefix cache included). When a running sequence
 * needs a block and none is left, the youngest running sequence is preempted:
 * its blocks are released (its full blocks stay cached) and it re-enters the
 * queue head to be recomputed. */
#include "scheduler.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvpool.h"

#define SCHED_RING 64 /* events buffered per request */

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
    int drained;     /* cancelled by the drain deadline, not by its front end */
    sched_params p;  /* p.prompt points at toks; p.bias_* at bias_ids/bias_vals */
    int32_t *toks;   /* (n_ctx) prompt then generated tokens */
    int32_t *bias_ids; /* (SCHED_MAX_BIAS) logit_bias, copied at submit */
    float *bias_vals;
    int n_cached;    /* prompt tokens the prefix cache held at (first) admission */
    int len;         /* tokens in toks */
    int n_kv;        /* positions whose K/V are in this sequence's blocks */
    int n_gen;       /* tokens generated (emitted) */
    kvpool_seq kv;   /* block table, (blocks for n_ctx) entries */
    sampler_rng rng; /* seeded at submit; one draw per sampled token */
    int run;         /* index in s->run while running (= its engine slot), else -1 */
    long admitted;   /* admission order: preemption picks the youngest */
    int resumed;     /* re-admitted after preemption */
    double t_submit, t_first;
    /* event ring, guarded by s->mu */
    sched_event ring[SCHED_RING];
    int head, count;
    pthread_cond_t cv; /* signalled when an event is pushed */
    pthread_cond_t *also; /* while a sched_next_any waits on this request with others: its cv */
    struct sched_req *next_queued;
};

struct sched {
    sched_opts o;
    const engine_ops *ops;
    engine *eng;
    kvpool *kv;
    int kv_total;         /* blocks in the pool (fixed: read without the lock) */
    int prefix_on;        /* the prefix cache is on (sched_params.group waits only then) */
    uint8_t *eog;         /* (n_vocab) 1 = ends generation */
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
    engine_seq *batch;           /* (max_seqs) */
    sched_req **batch_req;       /* (max_seqs) */
    engine_sample_in *samp_in;   /* (max_seqs) */
    uint32_t *masks;             /* (max_seqs * mask_words) constraint masks, one row per batch entry */
    size_t mask_words;           /* ceil(n_vocab / 32) */
    engine_sample_out *samp_out; /* (max_seqs) */
    int *samp_of;                /* (max_seqs) batch entry -> index in samp_in, -1 */
    err *cerr;                   /* (max_seqs) a batch entry's constraint error (code 0: none) */
    sched_stats st;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void release_blocks(sched *s, sched_req *r) {
    kvpool_seq_release(s->kv, &r->kv);
    r->n_kv = 0;
}

/* ---- events ---- */

static int push_event(sched_req *r, const sched_event *ev) {
    if (r->count == SCHED_RING) return 0;
    r->ring[(r->head + r->count) % SCHED_RING] = *ev;
    r->count++;
    pthread_cond_broadcast(&r->cv);
    if (r->also) pthread_cond_broadcast(r->also);
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
    ev->n_cached = r->n_cached;
    ev->ttft_s = r->t_first > 0 ? r->t_first - r->t_submit : 0;
}

/* ---- admission and preemption ---- */

static void admit(sched *s, sched_req *r, int slot) {
    r->state = REQ_RUNNING;
    r->run = slot;
    r->admitted = ++s->admit_counter;
    s->run[slot] = r;
    r->n_kv = kvpool_seq_map_prefix(s->kv, &r->kv, r->toks, r->len);
    if (!r->resumed) {
        r->n_cached = r->n_kv < r->p.n_prompt ? r->n_kv : r->p.n_prompt;
        s->st.prefix_hit_tokens += r->n_kv;
        s->st.prefix_miss_tokens += r->p.n_prompt - r->n_kv;
    }
    /* the slot's penalty history: the prompt, plus what was generated before a
     * preemption (the RNG stream simply continues) */
    s->ops->slot_reset(s->eng, slot, r->toks, r->len, NULL);
}

/* A running member of group g is still computing its prompt. */
static int group_prefilling(const sched *s, uint64_t g) {
    for (int i = 0; i < s->o.max_seqs; i++) {
        const sched_req *q = s->run[i];
        if (q && q->p.group == g && q->n_kv < q->p.n_prompt) return 1;
    }
    return 0;
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

/* ---- one step ---- */

/* The request's constraint mask for its next token into m; an error, or a mask that
 * allows nothing, is set in *ce (the request then ends with it). */
static int constraint_mask(sched *s, sched_req *r, uint32_t *m, err *ce) {
    const sched_constraint *c = r->p.constraint;
    if (c->mask(c->u, m, ce)) {
        if (!ce->code) err_set(ce, ERR_INVALID, "the output constraint failed");
        return -1;
    }
    uint32_t any = 0;
    for (size_t i = 0; i < s->mask_words; i++) any |= m[i];
    if (!any) return err_set(ce, ERR_INVALID, "the output constraint allows no token here"), -1;
    return 0;
}

static int step(sched *s) {
    const int S = s->o.max_seqs;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < S; i++) {
        sched_req *r = s->run[i];
        if (r && (r->cancelled || r->released)) {
            sched_event ev;
            done_event(r, r->drained ? SCHED_FINISH_DRAINED : SCHED_FINISH_CANCELLED, &ev);
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
            done_event(r, r->drained ? SCHED_FINISH_DRAINED : SCHED_FINISH_CANCELLED, &ev);
            finish(s, r, &ev);
            i--;
            continue;
        }
        /* Admission: its uncached prompt blocks must be available now (cached
         * blocks it would reuse count as available too, conservatively). */
        if (kvpool_blocks_for(s->kv, r->len) > kvpool_available(s->kv)) break;
        /* a sibling is computing the same prompt: wait for its blocks (FIFO kept) */
        if (r->p.group && s->prefix_on && group_prefilling(s, r->p.group)) break;
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
            while (kvpool_seq_reserve(s->kv, &r->kv, r->n_kv + n) < 0) {
                preempt_youngest(s);
                if (r->run < 0) break; /* r itself was the youngest */
            }
            if (r->run < 0) continue;
            s->batch[nb] = (engine_seq){.tokens = r->toks + r->n_kv, .n = n, .pos = r->n_kv, .blocks = r->kv.blocks,
                                        .slot = r->run, .want = r->n_kv + n == r->len ? ENGINE_WANT_LOGITS : 0};
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

    /* The engine runs outside the lock (only this thread touches a running
     * sequence's tokens, slot and RNG). */
    err e = {0};
    int rc = s->ops->forward(s->eng, s->batch, nb, &e);
    int ns = 0;
    /* a constraint that fails fails its own request only (cerr[b] set), not the batch */
    for (int b = 0; b < nb && !rc; b++) {
        s->samp_of[b] = -1;
        s->cerr[b].code = ERR_OK;
        if (!(s->batch[b].want & ENGINE_WANT_LOGITS)) continue;
        sched_req *r = s->batch_req[b];
        const uint32_t *mask = NULL;
        if (r->p.constraint) {
            uint32_t *m = s->masks + (size_t)ns * s->mask_words;
            if (constraint_mask(s, r, m, &s->cerr[b])) continue;
            mask = m;
        }
        s->samp_of[b] = ns;
        s->samp_in[ns++] = (engine_sample_in){.seq = b, .sp = &r->p.sp, .u = sampler_rng_next(&r->rng),
                                              .mask = mask, .bias_ids = r->p.bias_ids, .bias_vals = r->p.bias_vals,
                                              .n_bias = r->p.n_bias, .logprob = r->p.logprobs || r->p.top_logprobs,
                                              .n_top = r->p.top_logprobs};
    }
    if (!rc && ns) rc = s->ops->sample(s->eng, s->samp_in, ns, s->samp_out, &e);
    for (int b = 0; b < nb && !rc; b++)
        if (s->samp_of[b] >= 0) rc = s->ops->slot_accept(s->eng, s->batch[b].slot, s->samp_out[s->samp_of[b]].token, &e);
    for (int b = 0; b < nb && !rc; b++) {
        sched_req *r = s->batch_req[b];
        if (s->samp_of[b] < 0 || !r->p.constraint) continue;
        const sched_constraint *c = r->p.constraint;
        if (c->accept(c->u, s->samp_out[s->samp_of[b]].token, &s->cerr[b])) {
            if (!s->cerr[b].code) err_set(&s->cerr[b], ERR_INVALID, "the output constraint refused a token");
            s->samp_of[b] = -1;
        }
    }

    pthread_mutex_lock(&s->mu);
    if (rc == ERR_UNAVAILABLE) s->st.engine_failed = 1;
    s->st.steps++;
    s->st.batched_seqs_total += nb;
    for (int b = 0; b < nb; b++) {
        sched_req *r = s->batch_req[b];
        const engine_seq *q = &s->batch[b];
        if (rc) {
            sched_event ev = {.type = SCHED_EV_ERROR, .code = e.code ? e.code : ERR_IO};
            snprintf(ev.msg, sizeof ev.msg, "the engine failed: %.130s", e.msg);
            finish(s, r, &ev);
            continue;
        }
        const int prompt_end = r->p.n_prompt < r->n_kv + q->n ? r->p.n_prompt : r->n_kv + q->n;
        if (prompt_end > r->n_kv) s->st.prompt_tokens += prompt_end - r->n_kv;
        kvpool_seq_filled(s->kv, &r->kv, r->toks, r->n_kv, r->n_kv + q->n);
        r->n_kv += q->n;
        if (s->cerr[b].code) {
            sched_event ev = {.type = SCHED_EV_ERROR, .code = s->cerr[b].code};
            snprintf(ev.msg, sizeof ev.msg, "%.150s", s->cerr[b].msg);
            finish(s, r, &ev);
            continue;
        }
        if (s->samp_of[b] < 0) continue;
        const engine_sample_out *so = &s->samp_out[s->samp_of[b]];
        const int32_t t = so->token;
        if (r->n_gen == 0) r->t_first = now_s();
        r->n_gen++;
        r->toks[r->len++] = t;
        s->st.generated_tokens++;
        const int eog = !r->p.ignore_eos && s->eog[t];
        if (!eog) {
            sched_event ev = {.type = SCHED_EV_TOKEN, .token = t};
            if (r->p.logprobs || r->p.top_logprobs) {
                ev.logprob = so->logprob;
                ev.n_top = so->n_top;
                memcpy(ev.top_ids, so->top_ids, sizeof(int32_t) * (size_t)so->n_top);
                memcpy(ev.top_logprobs, so->top_logprobs, sizeof(float) * (size_t)so->n_top);
            }
            push_event(r, &ev);
        }
        /* a constraint that is complete ends the output as if an end token came */
        const int complete = !eog && r->p.constraint && r->p.constraint->done && r->p.constraint->done(r->p.constraint->u);
        if (eog || complete || r->n_gen >= r->p.max_tokens || r->len >= s->o.n_ctx) {
            sched_event ev;
            done_event(r, eog || complete ? SCHED_FINISH_STOP : SCHED_FINISH_LENGTH, &ev);
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
            free(s->reqs[i].bias_ids);
            free(s->reqs[i].bias_vals);
            free(s->reqs[i].kv.blocks);
            pthread_cond_destroy(&s->reqs[i].cv);
        }
    free(s->run); free(s->batch); free(s->batch_req); free(s->reqs);
    free(s->samp_in); free(s->samp_out); free(s->samp_of); free(s->eog);
    free(s->masks); free(s->cerr);
    kvpool_free(s->kv);
    free(s);
}

int sched_create(sched **out, const engine_ops *ops, engine *g, const engine_plan *plan, const sched_opts *o,
                 err *e) {
    *out = NULL;
    if (o->max_seqs < 1 || o->max_batched_tokens < 1 || o->n_ctx < 2 || o->max_queue < 0 || o->n_vocab < 1 ||
        o->n_eog < 0 || (o->n_eog && !o->eog))
        return err_set(e, ERR_INVALID, "scheduler options out of range");
    sched *s = calloc(1, sizeof *s);
    if (!s) return err_set(e, ERR_NOMEM, "out of memory");
    s->o = *o;
    s->o.eog = NULL;
    s->ops = ops;
    s->eng = g;
    int rc = kvpool_create(&s->kv, plan->n_kv_blocks, plan->kv_block, plan->prefix_cache && !o->no_prefix_cache, e);
    if (rc) { sched_destroy(s); return rc; }
    s->kv_total = plan->n_kv_blocks;
    s->prefix_on = plan->prefix_cache && !o->no_prefix_cache;
    const int blocks_per_seq = kvpool_blocks_for(s->kv, o->n_ctx);
    s->run = calloc((size_t)o->max_seqs, sizeof *s->run);
    s->batch = calloc((size_t)o->max_seqs, sizeof *s->batch);
    s->batch_req = calloc((size_t)o->max_seqs, sizeof *s->batch_req);
    s->samp_in = calloc((size_t)o->max_seqs, sizeof *s->samp_in);
    s->samp_out = calloc((size_t)o->max_seqs, sizeof *s->samp_out);
    s->samp_of = calloc((size_t)o->max_seqs, sizeof *s->samp_of);
    s->eog = calloc((size_t)o->n_vocab, 1);
    s->mask_words = ((size_t)o->n_vocab + 31) / 32;
    s->masks = calloc((size_t)o->max_seqs * s->mask_words, sizeof *s->masks);
    s->cerr = calloc((size_t)o->max_seqs, sizeof *s->cerr);
    s->n_reqs = o->max_seqs + o->max_queue;
    s->reqs = calloc((size_t)s->n_reqs, sizeof *s->reqs);
    if (!s->run || !s->batch || !s->batch_req || !s->samp_in || !s->samp_out || !s->samp_of || !s->eog || !s->reqs ||
        !s->masks || !s->cerr) {
        sched_destroy(s);
        return err_set(e, ERR_NOMEM, "out of memory for the scheduler");
    }
    for (int i = 0; i < o->n_eog; i++)
        if (o->eog[i] >= 0 && o->eog[i] < o->n_vocab) s->eog[o->eog[i]] = 1;
    for (int i = 0; i < s->n_reqs; i++) {
        sched_req *r = &s->reqs[i];
        r->s = s;
        r->run = -1;
        r->toks = malloc(sizeof(int32_t) * (size_t)o->n_ctx);
        r->bias_ids = malloc(sizeof(int32_t) * SCHED_MAX_BIAS);
        r->bias_vals = malloc(sizeof(float) * SCHED_MAX_BIAS);
        r->kv.blocks = malloc(sizeof(int32_t) * (size_t)blocks_per_seq);
        pthread_cond_init(&r->cv, NULL);
        if (!r->toks || !r->bias_ids || !r->bias_vals || !r->kv.blocks) {
            sched_destroy(s);
            return err_set(e, ERR_NOMEM, "out of memory");
        }
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->idle, NULL);
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
        if (p->prompt[i] < 0 || p->prompt[i] >= s->o.n_vocab)
            return err_set(e, ERR_INVALID, "token id %d out of range", p->prompt[i]);
    if (p->n_bias < 0 || p->n_bias > SCHED_MAX_BIAS || (p->n_bias && (!p->bias_ids || !p->bias_vals)))
        return err_set(e, ERR_INVALID, "logit_bias: %d entries; at most %d", p->n_bias, SCHED_MAX_BIAS);
    for (int i = 0; i < p->n_bias; i++)
        if (p->bias_ids[i] < 0 || p->bias_ids[i] >= s->o.n_vocab)
            return err_set(e, ERR_INVALID, "logit_bias: token id %d out of range", p->bias_ids[i]);
    if (p->constraint && (!p->constraint->mask || !p->constraint->accept))
        return err_set(e, ERR_INVALID, "a constraint needs mask and accept");
    int max_tokens = p->max_tokens;
    if (max_tokens > s->o.n_ctx - p->n_prompt) max_tokens = s->o.n_ctx - p->n_prompt;
    const long need = kvpool_blocks_for(s->kv, (long)p->n_prompt + max_tokens);
    if (need > s->kv_total)
        return err_set(e, ERR_INVALID,
                       "the prompt (%d tokens) plus max_tokens (%d) needs %ld KV blocks of %d, the pool has %d",
                       p->n_prompt, max_tokens, need, kvpool_block_size(s->kv), s->kv_total);
    pthread_mutex_lock(&s->mu);
    if (s->draining) {
        pthread_mutex_unlock(&s->mu);
        return err_set(e, ERR_UNAVAILABLE, "the server is shutting down");
    }
    /* Admission counts free decode slots and the queue together: a burst that
     * arrives before the scheduler thread has moved the first requests into
     * free slots must not see "busy" while slots are free. The bound is
     * max_seqs + max_queue requests running or waiting. */
    int running = 0;
    for (int i = 0; i < s->o.max_seqs; i++) running += s->run[i] != NULL;
    sched_req *r = NULL;
    if (s->n_queued < s->o.max_queue + (s->o.max_seqs - running))
        for (int i = 0; i < s->n_reqs; i++)
            if (s->reqs[i].state == REQ_FREE) { r = &s->reqs[i]; break; }
    if (!r) {
        long q = s->n_queued;
        pthread_mutex_unlock(&s->mu);
        return err_set(e, ERR_NOMEM, "the server is busy: %ld requests are waiting", q);
    }
    r->state = REQ_QUEUED;
    r->released = r->cancelled = r->drained = r->resumed = 0;
    r->p = *p;
    r->p.max_tokens = max_tokens;
    memcpy(r->toks, p->prompt, sizeof(int32_t) * (size_t)p->n_prompt);
    r->p.prompt = r->toks;
    if (p->n_bias) {
        memcpy(r->bias_ids, p->bias_ids, sizeof(int32_t) * (size_t)p->n_bias);
        memcpy(r->bias_vals, p->bias_vals, sizeof(float) * (size_t)p->n_bias);
    }
    r->p.bias_ids = p->n_bias ? r->bias_ids : NULL;
    r->p.bias_vals = p->n_bias ? r->bias_vals : NULL;
    r->n_cached = 0;
    r->len = p->n_prompt;
    r->n_kv = r->n_gen = r->kv.n_blocks = 0;
    sampler_rng_seed(&r->rng, p->sp.seed);
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

/* The first of rs[start..], rs[0..start) (in that order) holding an event, or -1. */
static int first_ready(sched_req *const *rs, int n, int start) {
    for (int k = 0; k < n; k++) {
        const int i = (start + k) % n;
        if (rs[i]->count > 0) return i;
    }
    return -1;
}

int sched_next_any(sched_req *const *rs, int n, int start, sched_event *ev, int timeout_ms) {
    sched *s = rs[0]->s;
    pthread_mutex_lock(&s->mu);
    int i = first_ready(rs, n, start);
    if (i < 0 && timeout_ms > 0) {
        /* one condition for all n: each request's pushes also signal rs[0]'s */
        pthread_cond_t *cv = &rs[0]->cv;
        for (int k = 1; k < n; k++) rs[k]->also = cv;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        while ((i = first_ready(rs, n, start)) < 0)
            if (pthread_cond_timedwait(cv, &s->mu, &ts) == ETIMEDOUT) break;
        for (int k = 1; k < n; k++) rs[k]->also = NULL;
    }
    if (i >= 0) {
        sched_req *r = rs[i];
        *ev = r->ring[r->head];
        r->head = (r->head + 1) % SCHED_RING;
        r->count--;
        if (r->count == SCHED_RING - 2) pthread_cond_broadcast(&s->wake); /* room again */
    }
    pthread_mutex_unlock(&s->mu);
    return i;
}

int sched_next(sched_req *r, sched_event *ev, int timeout_ms) {
    return sched_next_any(&r, 1, 0, ev, timeout_ms) == 0;
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
    kvpool_stats ks;
    kvpool_get_stats(s->kv, &ks);
    st->kv_cached = ks.cached;
    st->kv_used = ks.used;
    st->kv_total = ks.total;
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
    /* what is left is cut: DONE with SCHED_FINISH_DRAINED, so the front end
     * can tell its clients the text is incomplete */
    for (sched_req *r = s->q_head; r; r = r->next_queued) { r->cancelled = r->drained = 1; cancelled++; }
    for (int i = 0; i < s->o.max_seqs; i++)
        if (s->run[i]) { s->run[i]->cancelled = s->run[i]->drained = 1; cancelled++; }
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
