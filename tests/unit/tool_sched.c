/* tool_sched — drives the scheduler for tests/sched/test_sched.py.
 *
 *   tool_sched MODEL gen   MAX_SEQS BUDGET N_REQ N_TOK [OPTS]  greedy outputs of N_REQ
 *           requests submitted at once; prints "req I: ids..." and "stats ...".
 *           OPTS: no-prefix (prefix cache off), blocks=N (KV pool), shared=L (every
 *           prompt starts with the same L ids), f16 / q8 / bf16 / fp8 (KV type)
 *   tool_sched MODEL drain                                 graceful drain: finishes, then 503
 *   tool_sched MODEL ttft PREFIX BUDGET                    time to first token of a PREFIX-token
 *           prompt uncached, then of another prompt sharing that prefix (cached)
 *   tool_sched MODEL itl PROMPT BUDGET                     inter-token latency of a running
 *           stream before and while a PROMPT-token request is being prefilled
 *   tool_sched MODEL cancel                                cancel mid-stream; slot freed
 *   tool_sched MODEL queue                                 bounded queue refuses (429)
 *   tool_sched MODEL long                                  prompt longer than the context
 *   tool_sched MODEL constrain                             a constraint's mask is obeyed, its
 *           done() ends the output, a mask allowing nothing fails that request only;
 *           logit_bias +100 forces a token under greedy sampling; n_cached reported
 * Request i's prompt is deterministic: length 3 + (i * 7) % 40 ids from an LCG. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scheduler.h"
#include "session.h"

static int shared_len;

/* What a test asks of the scheduler; each creates its own session over the model. */
typedef struct tool_opts {
    int n_threads, n_ctx, max_seqs, max_batched_tokens, max_queue, n_kv_blocks, no_prefix_cache;
    engine_kv_type kv_type;
} tool_opts;

static const char *model_path;
static int n_vocab;
static session *open_sessions[4];

static int tool_sched_create(sched **out, const tool_opts *o, err *e) {
    session_opts so;
    session_defaults(&so);
    so.model_path = model_path;
    so.n_threads = o->n_threads;
    so.n_ctx = o->n_ctx;
    so.max_seqs = o->max_seqs;
    so.max_tokens = o->max_batched_tokens;
    so.n_kv_blocks = o->n_kv_blocks;
    so.kv_type = o->kv_type;
    so.scheduler = 1;
    so.max_queue = o->max_queue;
    so.prefix_cache = !o->no_prefix_cache;
    session *ss;
    int rc = session_open(&ss, &so, e);
    if (rc) return rc;
    for (int i = 0; i < 4; i++)
        if (!open_sessions[i]) { open_sessions[i] = ss; break; }
    n_vocab = ss->m->hp.n_vocab;
    *out = ss->s;
    return 0;
}

static void tool_sched_free(sched *s) {
    for (int i = 0; i < 4; i++)
        if (open_sessions[i] && open_sessions[i]->s == s) {
            session_close(open_sessions[i]);
            open_sessions[i] = NULL;
        }
}

static int make_prompt(int i, int32_t *ids, int n_vocab) {
    int n = 3 + (i * 7) % 40;
    uint64_t x = 0x51ed270b27a3c9e1ull;
    for (int k = 0; k < shared_len; k++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[k] = (int32_t)((x >> 33) % (uint64_t)n_vocab);
    }
    ids += shared_len;
    x = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
    for (int k = 0; k < n; k++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[k] = (int32_t)((x >> 33) % (uint64_t)n_vocab);
    }
    return shared_len + n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fill_ids(int32_t *ids, int n, uint64_t seed, int n_vocab) {
    uint64_t x = seed;
    for (int k = 0; k < n; k++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[k] = (int32_t)((x >> 33) % (uint64_t)n_vocab);
    }
}

/* Submits ids, waits for the first token, returns seconds (cancels the rest). */
static double time_first_token(sched *s, const int32_t *ids, int n, int max_tokens) {
    sched_params p = {.n_prompt = n, .prompt = ids, .max_tokens = max_tokens, .ignore_eos = 1};
    sampler_default_params(&p.sp);
    p.sp.temperature = 0;
    sched_req *r;
    err e = {0};
    double t0 = now_s();
    if (sched_submit(s, &p, &r, &e)) { printf("not ok - submit: %s\n", e.msg); return -1; }
    sched_event ev;
    while (!sched_next(r, &ev, 1000)) {}
    double t = now_s() - t0;
    sched_cancel(r);
    while (sched_next(r, &ev, 5000) && ev.type == SCHED_EV_TOKEN) {}
    sched_release(r);
    return t;
}

static int fail(const char *what, const err *e) {
    printf("not ok - %s: %s\n", what, e ? e->msg : "");
    return 1;
}

/* A test constraint: allows only ids[0..n) (cycling through them is not needed:
 * any of them, every step), done after `stop_after` accepted tokens; counts the
 * tokens it saw; `deny` makes the mask allow nothing. */
typedef struct set_rule {
    const int32_t *ids;
    int n, stop_after, seen, bad, deny;
    int32_t vocab;
} set_rule;
static int rule_mask(void *u, uint32_t *w, err *e) {
    (void)e;
    set_rule *r = u;
    memset(w, 0, sizeof(uint32_t) * (((size_t)r->vocab + 31) / 32));
    if (!r->deny)
        for (int i = 0; i < r->n; i++) w[r->ids[i] / 32] |= 1u << (r->ids[i] % 32);
    return 0;
}
static int rule_accept(void *u, int32_t t, err *e) {
    (void)e;
    set_rule *r = u;
    int in = 0;
    for (int i = 0; i < r->n; i++) in |= r->ids[i] == t;
    r->bad += !in;
    r->seen++;
    return 0;
}
static int rule_done(void *u) {
    set_rule *r = u;
    return r->stop_after && r->seen >= r->stop_after;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: tool_sched MODEL gen|cancel|queue|long ...\n");
        return 2;
    }
    err e = {0};
    model_path = argv[1];
    const char *mode = argv[2];
    int rc = 0;
    int32_t ids[512];
    if (!strcmp(mode, "gen") && argc >= 7) {
        int max_seqs = atoi(argv[3]), budget = atoi(argv[4]), n_req = atoi(argv[5]), n_tok = atoi(argv[6]);
        tool_opts o = {.n_threads = 2, .n_ctx = 512, .max_seqs = max_seqs, .max_batched_tokens = budget,
                        .max_queue = n_req};
        for (int a = 7; a < argc; a++) {
            if (!strcmp(argv[a], "no-prefix")) o.no_prefix_cache = 1;
            else if (engine_kv_type_parse(argv[a]) >= 0) o.kv_type = (engine_kv_type)engine_kv_type_parse(argv[a]);
            else if (!strncmp(argv[a], "blocks=", 7)) o.n_kv_blocks = atoi(argv[a] + 7);
            else if (!strncmp(argv[a], "shared=", 7)) shared_len = atoi(argv[a] + 7);
        }
        sched *s;
        if (tool_sched_create(&s, &o, &e)) return fail("sched_create", &e);
        sched_req **rq = calloc((size_t)n_req, sizeof *rq);
        int32_t *out = calloc((size_t)n_req * (size_t)n_tok, sizeof(int32_t));
        int *n_out = calloc((size_t)n_req, sizeof(int)), *done = calloc((size_t)n_req, sizeof(int));
        for (int i = 0; i < n_req; i++) {
            sched_params p = {.n_prompt = make_prompt(i, ids, n_vocab), .prompt = ids,
                              .max_tokens = n_tok, .ignore_eos = 1};
            sampler_default_params(&p.sp);
            p.sp.temperature = 0;
            if (sched_submit(s, &p, &rq[i], &e)) return fail("submit", &e);
        }
        int left = n_req;
        while (left > 0) {
            for (int i = 0; i < n_req; i++) {
                sched_event ev;
                while (!done[i] && sched_next(rq[i], &ev, 1)) {
                    if (ev.type == SCHED_EV_TOKEN) {
                        if (n_out[i] < n_tok) out[(size_t)i * n_tok + n_out[i]] = ev.token;
                        n_out[i]++;
                    } else {
                        if (ev.type == SCHED_EV_ERROR) printf("not ok - request %d error %s\n", i, ev.msg);
                        if (ev.finish != SCHED_FINISH_LENGTH || ev.n_generated != n_tok)
                            printf("not ok - request %d finish %d after %d tokens\n", i, ev.finish, ev.n_generated);
                        done[i] = 1;
                        left--;
                        sched_release(rq[i]);
                    }
                }
            }
        }
        for (int i = 0; i < n_req; i++) {
            printf("req %d:", i);
            for (int k = 0; k < n_out[i] && k < n_tok; k++) printf(" %d", out[(size_t)i * n_tok + k]);
            printf("\n");
        }
        sched_stats st;
        sched_get_stats(s, &st);
        printf("stats steps %ld batched %ld mean_batch %.3f prompt %ld generated %ld kv_used %ld kv_cached %ld "
               "prefix_hit %ld prefix_miss %ld preemptions %ld\n", st.steps,
               st.batched_seqs_total, st.steps ? (double)st.batched_seqs_total / (double)st.steps : 0.0,
               st.prompt_tokens, st.generated_tokens, st.kv_used, st.kv_cached, st.prefix_hit_tokens,
               st.prefix_miss_tokens, st.preemptions);
        free(rq); free(out); free(n_out); free(done);
        tool_sched_free(s);
    } else if (!strcmp(mode, "cancel")) {
        tool_opts o = {.n_threads = 2, .n_ctx = 512, .max_seqs = 2, .max_batched_tokens = 64, .max_queue = 4};
        sched *s;
        if (tool_sched_create(&s, &o, &e)) return fail("sched_create", &e);
        sched_params p = {.n_prompt = make_prompt(1, ids, n_vocab), .prompt = ids, .max_tokens = 400,
                          .ignore_eos = 1};
        sampler_default_params(&p.sp);
        sched_req *r;
        if (sched_submit(s, &p, &r, &e)) return fail("submit", &e);
        sched_event ev;
        int got = 0;
        while (got < 3 && sched_next(r, &ev, 5000)) got += ev.type == SCHED_EV_TOKEN;
        const int at_cancel = sched_cancel(r);
        int after = 0, finished = 0;
        while (sched_next(r, &ev, 5000)) {
            if (ev.type == SCHED_EV_TOKEN) continue; /* buffered before or during the cancel */
            finished = ev.type == SCHED_EV_DONE && ev.finish == SCHED_FINISH_CANCELLED;
            after = ev.n_generated - at_cancel; /* computed after the cancel was registered */
            break;
        }
        sched_stats st;
        sched_get_stats(s, &st);
        printf("%s - cancel ends the stream with CANCELLED\n", finished ? "ok" : "not ok");
        /* only the step already in flight may finish after the cancel */
        printf("%s - at most 1 token computed after cancel (%d)\n", after <= 1 ? "ok" : "not ok", after);
        printf("%s - slot and KV freed (running %ld, kv_used %ld)\n", st.running == 0 && st.kv_used == 0 ? "ok" : "not ok",
               st.running, st.kv_used);
        sched_release(r);
        rc = !finished || after > 1 || st.running || st.kv_used;
        tool_sched_free(s);
    } else if (!strcmp(mode, "queue")) {
        tool_opts o = {.n_threads = 1, .n_ctx = 256, .max_seqs = 1, .max_batched_tokens = 32, .max_queue = 2};
        sched *s;
        if (tool_sched_create(&s, &o, &e)) return fail("sched_create", &e);
        sched_params p = {.n_prompt = make_prompt(2, ids, n_vocab), .prompt = ids, .max_tokens = 200,
                          .ignore_eos = 1};
        sampler_default_params(&p.sp);
        sched_req *r[4] = {0};
        int refused = -1;
        for (int i = 0; i < 4; i++) {
            err e2 = {0};
            if (sched_submit(s, &p, &r[i], &e2)) {
                refused = i;
                printf("%s - submit %d refused with ERR_NOMEM (%s)\n", e2.code == ERR_NOMEM ? "ok" : "not ok", i, e2.msg);
                break;
            }
            if (i == 0) { sched_event ev; sched_next(r[0], &ev, 5000); } /* first is running */
        }
        printf("%s - 1 running + 2 queued accepted, 4th refused (refused index %d)\n", refused == 3 ? "ok" : "not ok", refused);
        for (int i = 0; i < 4; i++)
            if (r[i]) sched_release(r[i]);
        rc = refused != 3;
        tool_sched_free(s);
        /* a burst submitted before the scheduler admits anything: free decode
         * slots count as room (max_seqs 2 + max_queue 1 = 3 accepted) */
        tool_opts o2 = {.n_threads = 1, .n_ctx = 256, .max_seqs = 2, .max_batched_tokens = 32, .max_queue = 1};
        if (tool_sched_create(&s, &o2, &e)) return fail("sched_create", &e);
        memset(r, 0, sizeof r);
        int accepted = 0;
        for (int i = 0; i < 4; i++) {
            err e2 = {0};
            if (sched_submit(s, &p, &r[i], &e2) == 0) accepted++;
        }
        printf("%s - a burst of 4 on 2 free slots + a queue of 1: %d accepted (want 3)\n", accepted == 3 ? "ok" : "not ok",
               accepted);
        for (int i = 0; i < 4; i++)
            if (r[i]) sched_release(r[i]);
        rc |= accepted != 3;
        tool_sched_free(s);
    } else if (!strcmp(mode, "constrain")) {
        tool_opts o = {.n_threads = 2, .n_ctx = 256, .max_seqs = 2, .max_batched_tokens = 64, .max_queue = 2};
        sched *s;
        if (tool_sched_create(&s, &o, &e)) return fail("sched_create", &e);
        /* sampled at temperature 1: without the mask almost every token would be outside the set */
        static const int32_t allowed[3] = {100, 200, 300};
        set_rule a = {.ids = allowed, .n = 3, .stop_after = 7, .vocab = n_vocab};
        set_rule d = {.ids = allowed, .n = 3, .deny = 1, .vocab = n_vocab};
        sched_constraint ca = {.mask = rule_mask, .accept = rule_accept, .done = rule_done, .u = &a};
        sched_constraint cd = {.mask = rule_mask, .accept = rule_accept, .u = &d};
        sched_params p = {.n_prompt = make_prompt(3, ids, n_vocab), .prompt = ids, .max_tokens = 50, .constraint = &ca};
        sampler_default_params(&p.sp);
        p.sp.temperature = 1.0f;
        p.sp.seed = 7;
        sched_req *ra, *rd;
        if (sched_submit(s, &p, &ra, &e)) return fail("submit", &e);
        sched_params q = p;
        q.constraint = &cd;
        if (sched_submit(s, &q, &rd, &e)) return fail("submit", &e);
        sched_event ev;
        int toks = 0, outside = 0;
        while (sched_next(ra, &ev, 10000) && ev.type == SCHED_EV_TOKEN) {
            toks++;
            outside += ev.token != 100 && ev.token != 200 && ev.token != 300;
        }
        printf("%s - constrained: %d tokens all in the allowed set (%d outside), done() ended it (finish %d)\n",
               toks == 7 && !outside && a.bad == 0 && ev.type == SCHED_EV_DONE && ev.finish == SCHED_FINISH_STOP ? "ok"
                                                                                                      : "not ok",
               toks, outside, ev.finish);
        rc |= !(toks == 7 && !outside && a.bad == 0 && ev.type == SCHED_EV_DONE && ev.finish == SCHED_FINISH_STOP);
        sched_event ed;
        while (sched_next(rd, &ed, 10000) && ed.type == SCHED_EV_TOKEN) {}
        printf("%s - a mask that allows nothing fails that request only (%s: %s)\n",
               ed.type == SCHED_EV_ERROR && ed.code == ERR_INVALID ? "ok" : "not ok",
               ed.type == SCHED_EV_ERROR ? "ERROR" : "no error", ed.msg);
        rc |= !(ed.type == SCHED_EV_ERROR && ed.code == ERR_INVALID);
        sched_release(ra);
        sched_release(rd);
        /* logit_bias: +100 on one id wins every greedy step; the same prompt again
         * finds its prefix in the cache */
        int32_t bid = n_vocab - 7;
        float bval = 100.0f;
        sched_params b = {.n_prompt = make_prompt(3, ids, n_vocab), .prompt = ids, .max_tokens = 5, .bias_ids = &bid,
                          .bias_vals = &bval, .n_bias = 1};
        sampler_default_params(&b.sp);
        b.sp.temperature = 0;
        sched_req *rb;
        if (sched_submit(s, &b, &rb, &e)) return fail("submit", &e);
        int forced = 0, n = 0;
        while (sched_next(rb, &ev, 10000) && ev.type == SCHED_EV_TOKEN) { n++; forced += ev.token == bid; }
        printf("%s - logit_bias +100 forces id %d: %d of %d tokens; prompt %d tokens, %d cached\n",
               n == 5 && forced == 5 ? "ok" : "not ok", bid, forced, n, ev.n_prompt, ev.n_cached);
        rc |= !(n == 5 && forced == 5);
        sched_release(rb);
        int32_t bad = n_vocab;
        b.bias_ids = &bad;
        err e2 = {0};
        int r2 = sched_submit(s, &b, &rb, &e2);
        printf("%s - logit_bias with an id past the vocabulary is refused (%s)\n", r2 == ERR_INVALID ? "ok" : "not ok",
               e2.msg);
        rc |= r2 != ERR_INVALID;
        tool_sched_free(s);
    } else if (!strcmp(mode, "drain")) {
        tool_opts o = {.n_threads = 2, .n_ctx = 256, .max_seqs = 2, .max_batched_tokens = 64, .max_queue = 4};
        sched *s;
        if (tool_sched_create(&s, &o, &e)) return fail("sched_create", &e);
        sched_req *r[3];
        for (int i = 0; i < 3; i++) {
            sched_params p = {.n_prompt = make_prompt(i, ids, n_vocab), .prompt = ids, .max_tokens = 20,
                              .ignore_eos = 1};
            sampler_default_params(&p.sp);
            if (sched_submit(s, &p, &r[i], &e)) return fail("submit", &e);
        }
        int cancelled = sched_drain(s, 120.0); /* the ring (64) holds all 20 tokens: no reader needed */
        int finished = 0;
        for (int i = 0; i < 3; i++) {
            sched_event ev;
            int n = 0;
            while (sched_next(r[i], &ev, 1000) && ev.type == SCHED_EV_TOKEN) n++;
            finished += ev.type == SCHED_EV_DONE && ev.finish == SCHED_FINISH_LENGTH && n == 20;
            sched_release(r[i]);
        }
        printf("%s - drain lets 3 in-flight requests finish (%d finished, %d cancelled)\n",
               finished == 3 && cancelled == 0 ? "ok" : "not ok", finished, cancelled);
        sched_params p = {.n_prompt = make_prompt(5, ids, n_vocab), .prompt = ids, .max_tokens = 4};
        sampler_default_params(&p.sp);
        sched_req *x;
        err e2 = {0};
        int rc2 = sched_submit(s, &p, &x, &e2);
        printf("%s - a request after the drain is refused with ERR_UNAVAILABLE (%s)\n",
               rc2 == ERR_UNAVAILABLE ? "ok" : "not ok", e2.msg);
        rc = !(finished == 3 && cancelled == 0 && rc2 == ERR_UNAVAILABLE);
        tool_sched_free(s);
        /* a drain that times out cancels what is left */
        if (tool_sched_create(&s, &o, &e)) return fail("sched_create", &e);
        sched_params q = {.n_prompt = make_prompt(1, ids, n_vocab), .prompt = ids, .max_tokens = 240,
                          .ignore_eos = 1};
        sampler_default_params(&q.sp);
        if (sched_submit(s, &q, &x, &e)) return fail("submit", &e);
        int c2 = sched_drain(s, 0.05);
        sched_event ev;
        int tail = 0;
        while (sched_next(x, &ev, 5000) && ev.type == SCHED_EV_TOKEN) tail++;
        printf("%s - a drain past its timeout cuts the rest, finish DRAINED (%d cut, finish %d)\n",
               c2 == 1 && ev.type == SCHED_EV_DONE && ev.finish == SCHED_FINISH_DRAINED ? "ok" : "not ok", c2,
               ev.finish);
        rc |= !(c2 == 1 && ev.finish == SCHED_FINISH_DRAINED);
        sched_release(x);
        tool_sched_free(s);
    } else if (!strcmp(mode, "ttft") && argc == 5) {
        const int prefix = atoi(argv[3]), budget = atoi(argv[4]), tail = 24;
        tool_opts o = {.n_threads = 2, .n_ctx = prefix + tail + 16, .max_seqs = 2, .max_batched_tokens = budget,
                        .max_queue = 2};
        sched *s;
        if (tool_sched_create(&s, &o, &e)) return fail("sched_create", &e);
        int32_t *a = malloc(sizeof(int32_t) * (size_t)(prefix + tail));
        fill_ids(a, prefix + tail, 1, n_vocab);
        double cold = time_first_token(s, a, prefix + tail, 2);
        fill_ids(a + prefix, tail, 2, n_vocab); /* same prefix, another question */
        double warm = time_first_token(s, a, prefix + tail, 2);
        sched_stats st;
        sched_get_stats(s, &st);
        printf("ttft prefix %d tail %d budget %d: uncached %.3f s, cached %.3f s, ratio %.3f (prefix hits %ld tokens)\n",
               prefix, tail, budget, cold, warm, warm / cold, st.prefix_hit_tokens);
        free(a);
        tool_sched_free(s);
    } else if (!strcmp(mode, "itl") && argc == 5) {
        const int plen = atoi(argv[3]), budget = atoi(argv[4]), n_gen = 400;
        tool_opts o = {.n_threads = 2, .n_ctx = plen + 16 > n_gen + 16 ? plen + 16 : n_gen + 16, .max_seqs = 2,
                        .max_batched_tokens = budget, .max_queue = 2};
        sched *s;
        if (tool_sched_create(&s, &o, &e)) return fail("sched_create", &e);
        sched_params p = {.n_prompt = 8, .prompt = ids, .max_tokens = n_gen, .ignore_eos = 1};
        fill_ids(ids, 8, 3, n_vocab);
        sampler_default_params(&p.sp);
        sched_req *stream, *big = NULL;
        if (sched_submit(s, &p, &stream, &e)) return fail("submit", &e);
        int32_t *b = malloc(sizeof(int32_t) * (size_t)plen);
        fill_ids(b, plen, 4, n_vocab);
        double last = 0, before_sum = 0, during_max = 0, during_sum = 0, before_max = 0;
        int n = 0, n_before = 0, n_during = 0, big_first = 0;
        sched_event ev;
        while (sched_next(stream, &ev, 60000) && ev.type == SCHED_EV_TOKEN) {
            double t = now_s();
            if (n > 0) {
                double gap = t - last;
                if (!big) { before_sum += gap; n_before++; if (gap > before_max) before_max = gap; }
                else if (!big_first) { during_sum += gap; n_during++; if (gap > during_max) during_max = gap; }
            }
            last = t;
            n++;
            if (n == 20 && !big) {
                sched_params q = {.n_prompt = plen, .prompt = b, .max_tokens = 1, .ignore_eos = 1};
                sampler_default_params(&q.sp);
                if (sched_submit(s, &q, &big, &e)) return fail("submit", &e);
            }
            sched_event bev;
            if (big && !big_first && sched_next(big, &bev, 0)) big_first = 1;
            if (big_first && n_during > 0) break;
        }
        printf("itl budget %d: before %.4f s mean / %.4f max over %d; during a %d-token prefill %.4f mean / %.4f max over %d\n",
               budget, n_before ? before_sum / n_before : 0, before_max, n_before, plen,
               n_during ? during_sum / n_during : 0, during_max, n_during);
        sched_cancel(stream);
        while (sched_next(stream, &ev, 5000) && ev.type == SCHED_EV_TOKEN) {}
        sched_release(stream);
        if (big) {
            sched_cancel(big);
            while (sched_next(big, &ev, 5000) && ev.type == SCHED_EV_TOKEN) {}
            sched_release(big);
        }
        free(b);
        tool_sched_free(s);
    } else if (!strcmp(mode, "long")) {
        tool_opts o = {.n_threads = 1, .n_ctx = 16, .max_seqs = 1, .max_batched_tokens = 8, .max_queue = 2};
        sched *s;
        if (tool_sched_create(&s, &o, &e)) return fail("sched_create", &e);
        int32_t big[40];
        for (int i = 0; i < 40; i++) big[i] = i % n_vocab;
        sched_params p = {.n_prompt = 40, .prompt = big, .max_tokens = 4};
        sampler_default_params(&p.sp);
        sched_req *r;
        err e2 = {0};
        int x = sched_submit(s, &p, &r, &e2);
        printf("%s - prompt longer than the context refused: %s\n",
               x == ERR_INVALID && strstr(e2.msg, "40") && strstr(e2.msg, "16") ? "ok" : "not ok", e2.msg);
        rc = x != ERR_INVALID;
        tool_sched_free(s);
    } else {
        fprintf(stderr, "bad arguments\n");
        rc = 2;
    }
    return rc;
}
