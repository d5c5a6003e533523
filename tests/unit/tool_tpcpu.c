/* tool_tpcpu — the tensor-parallel sharding math on the CPU engine, for
 * tests/tp/test_tp_cpu.py (the check CI runs without a GPU).
 *
 *   tool_tpcpu MODEL SIZE [STEPS [PAD [SPLIT]]]
 *
 * Loads MODEL, runs the unsharded CPU engine and SIZE CPU engines over the packed shard
 * views (shard_open + shard_pack: each holds only its heads, FFN / expert columns and
 * vocabulary rows), one thread per rank, in lockstep: the all-reduce after the attention
 * output and after the FFN is a barrier and a sum of the ranks' partial outputs in rank
 * order (cpu_set_tp). A prompt of 13 seeded random tokens, then STEPS (default 6) decode
 * steps teacher-forced with the unsharded engine's greedy token; at every step the ranks'
 * vocabulary rows put together are compared with the unsharded logits. Then the same with
 * the all-reduce left out (each rank keeps its own partial sums), and, for a model with
 * expert down biases, with every rank adding them (not rank 0 alone): negative controls,
 * which must NOT match (SIZE > 1). PAD > 0: every rank's experts are first padded to a
 * multiple of PAD with shard_copy_experts (the layout the CUDA engine uploads: zero rows
 * of gate/up and their biases, zero blocks of down's columns), so the padding is checked
 * to change nothing either. SPLIT: how MoE layers divide, columns (default) or experts
 * (whole experts per rank, shard.h); with experts the controls are: no all-reduce; the
 * expert down biases on rank 0 alone (the columns rule, wrong here: each expert's bias
 * belongs to its rank), for a model with them; and every rank taking its experts for
 * experts 0.. (expert0 = 0: the offset ignored). Prints
 *   step S rel_l2 R max_abs A argmax_equal 0|1
 *   ok - / not ok - lines, and exit status 0 (all ok), 1 (a check failed), 2 (usage/load),
 *   3 (the model cannot be split: "refused: MESSAGE"). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "quant.h"
#include "engine.h"
#include "model.h"
#include "shard.h"

#define TP_MAX 8
#define CTX 64

typedef struct group {
    int size, reduce;     /* reduce = 0: the negative control (no sum) */
    pthread_barrier_t bar;
    float *part[TP_MAX];  /* each rank's o of this call */
    float *sum;           /* (CTX * dim) */
} group;

typedef struct rank {
    group *g;
    int r;
    engine *eng;
    engine_seq seq;
    int rc;
    err e;
} rank;

static void allreduce(void *user, float *o, size_t n) {
    rank *k = user;
    group *g = k->g;
    g->part[k->r] = o;
    pthread_barrier_wait(&g->bar);
    if (k->r == 0 && g->reduce)
        for (size_t i = 0; i < n; i++) {
            float s = 0.0f;
            for (int q = 0; q < g->size; q++) s += g->part[q][i];
            g->sum[i] = s;
        }
    pthread_barrier_wait(&g->bar);
    if (g->reduce) memcpy(o, g->sum, n * sizeof *o);
}

/* Pads the experts of every MoE layer of view v (of shard s) to a multiple of pad, in
 * buffers appended to *bufs (the caller frees them). 0, or -1 (memory, or a width whose
 * padding is not whole blocks of down's format). */
static int pad_experts(const shard *s, model *v, int pad, model_tensor *tens, int *nt, void **bufs, int *nb) {
    for (int il = 0; il < v->hp.n_layer; il++) {
        model_moe *M = &v->layers[il].moe;
        if (v->layers[il].ffn != MODEL_FFN_MOE) continue;
        const int f = M->ffn_dim, fp = (f + pad - 1) / pad * pad;
        if (fp == f) continue;
        const int64_t E = M->n_expert_local ? M->n_expert_local : M->n_expert; /* the experts the view holds */
        const model_tensor *src[5] = {M->gate_exps, M->up_exps, M->down_exps, M->gate_b, M->up_b};
        const model_tensor **dst[5] = {&M->gate_exps, &M->up_exps, &M->down_exps, &M->gate_b, &M->up_b};
        for (int i = 0; i < 5; i++) {
            if (!src[i]) continue;
            model_tensor *t = &tens[(*nt)++];
            *t = *src[i];
            const int down = i >= 2; /* down and the biases: padded columns */
            int64_t rows;
            uint64_t rb = t->row_bytes;
            if (down) {
                if (quant_row_bytes(t->dtype, fp, &rb)) return -1;
                t->ne[0] = fp;
                t->row_bytes = rb;
                rows = i == 2 ? t->ne[1] * E : E;
            } else {
                t->ne[1] = fp;
                rows = (int64_t)fp * E;
            }
            t->nbytes = rb * (uint64_t)rows;
            void *b = malloc(t->nbytes);
            if (!b) return -1;
            bufs[(*nb)++] = b;
            shard_copy_experts(s, src[i], f, fp, down, 0, rows, rb, b);
            t->data = b;
            *dst[i] = t;
        }
        M->ffn_dim = fp;
    }
    return 0;
}

static void *rank_forward(void *arg) {
    rank *k = arg;
    k->rc = engine_cpu_ops.forward(k->eng, &k->seq, 1, &k->e);
    return NULL;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* One run of prompt + steps on the group; worst relative L2 over the steps in *worst.
 * Returns 0, or -1 when an engine failed. */
static int run(const model *m, engine *whole, rank *rk, group *g, int steps, int print, double *worst, int *am_ok) {
    const int V = m->hp.n_vocab, size = g->size;
    int32_t toks[CTX], blocks[CTX];
    for (int i = 0; i < CTX; i++) blocks[i] = i;
    uint32_t st = 12345u;
    for (int i = 0; i < 13; i++) {
        st = st * 1664525u + 1013904223u;
        toks[i] = (int32_t)((st >> 8) % (uint32_t)V);
    }
    float *cat = malloc((size_t)V * sizeof *cat);
    if (!cat) return -1;
    *worst = 0.0;
    *am_ok = 1;
    int pos = 0, n = 13, rc = 0;
    err e = {0};
    for (int s = 0; s <= steps && !rc; s++) {
        engine_seq q = {.tokens = toks + pos, .n = n, .pos = pos, .blocks = blocks, .slot = 0, .want = ENGINE_WANT_LOGITS};
        if (engine_cpu_ops.forward(whole, &q, 1, &e)) {
            fprintf(stderr, "whole forward: %s\n", e.msg);
            rc = -1;
            break;
        }
        pthread_t th[TP_MAX];
        for (int r = 0; r < size; r++) {
            rk[r].seq = q;
            pthread_create(&th[r], NULL, rank_forward, &rk[r]);
        }
        for (int r = 0; r < size; r++) pthread_join(th[r], NULL);
        for (int r = 0; r < size && !rc; r++)
            if (rk[r].rc) {
                fprintf(stderr, "rank %d forward: %s\n", r, rk[r].e.msg);
                rc = -1;
            }
        if (rc) break;
        const float *ref = engine_cpu_ops.logits(whole, 0, &e);
        for (int r = 0; r < size; r++) {
            int v0, vn;
            shard_vocab(V, size, r, &v0, &vn);
            memcpy(cat + v0, engine_cpu_ops.logits(rk[r].eng, 0, &e), (size_t)vn * sizeof *cat);
        }
        double d2 = 0, r2 = 0, mx = 0;
        for (int i = 0; i < V; i++) {
            const double d = (double)cat[i] - ref[i];
            d2 += d * d;
            r2 += (double)ref[i] * ref[i];
            if (fabs(d) > mx) mx = fabs(d);
        }
        const double rel = sqrt(d2 / (r2 > 0 ? r2 : 1));
        const int next = argmax(ref, V), eq = argmax(cat, V) == next;
        if (print) printf("step %d rel_l2 %.3g max_abs %.3g argmax_equal %d\n", s, rel, mx, eq);
        if (rel > *worst || isnan(rel)) *worst = isnan(rel) ? INFINITY : rel;
        if (!eq) *am_ok = 0;
        pos += n;
        toks[pos] = next;
        n = 1;
    }
    free(cat);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: tool_tpcpu MODEL SIZE [STEPS [PAD [columns|experts]]]\n");
        return 2;
    }
    const int size = atoi(argv[2]), steps = argc > 3 ? atoi(argv[3]) : 6, pad = argc > 4 ? atoi(argv[4]) : 0;
    const int split = argc > 5 ? engine_moe_split_parse(argv[5]) : ENGINE_MOE_SPLIT_COLUMNS;
    if (size < 1 || size > TP_MAX || steps < 0 || 13 + steps > CTX || pad < 0 || split < 0) {
        fprintf(stderr, "SIZE 1..%d, STEPS 0..%d\n", TP_MAX, CTX - 13);
        return 2;
    }
    err e = {0};
    model *m;
    if (model_load(&m, argv[1], NULL, &e)) {
        fprintf(stderr, "error: %s\n", e.msg);
        return 2;
    }
    const engine_moe_split sp = (engine_moe_split)split;
    if (shard_check(m, size, sp, &e)) {
        printf("refused: %s\n", e.msg);
        model_free(m);
        return 3;
    }
    engine_opts o;
    memset(&o, 0, sizeof o);
    o.n_threads = 1;
    o.n_ctx = CTX;
    o.max_seqs = 1;
    o.max_tokens = 16;
    o.kv_type = ENGINE_KV_F32;
    engine *whole = NULL;
    shard *sh[TP_MAX] = {0};
    model_tensor *ptens = NULL;
    void **pbufs = NULL;
    int n_pt = 0, n_pb = 0;
    rank rk[TP_MAX];
    memset(rk, 0, sizeof rk);
    group g;
    memset(&g, 0, sizeof g);
    g.size = size;
    g.sum = malloc((size_t)o.max_tokens * m->hp.dim * sizeof(float));
    pthread_barrier_init(&g.bar, NULL, (unsigned)size);
    int status = 2;
    if (!g.sum || engine_cpu_ops.create(&whole, m, &o, &e)) {
        fprintf(stderr, "whole engine: %s\n", e.msg);
        goto out;
    }
    if (pad) {
        ptens = calloc((size_t)size * m->hp.n_layer * 5 + 1, sizeof *ptens);
        pbufs = calloc((size_t)size * m->hp.n_layer * 5 + 1, sizeof *pbufs);
        if (!ptens || !pbufs) goto out;
    }
    for (int r = 0; r < size; r++) {
        if (shard_open(&sh[r], m, size, r, sp, &e) || shard_pack(sh[r], &e)) {
            fprintf(stderr, "rank %d: %s\n", r, e.msg);
            goto out;
        }
        if (pad && pad_experts(sh[r], (model *)shard_model(sh[r]), pad, ptens, &n_pt, pbufs, &n_pb)) {
            fprintf(stderr, "rank %d: experts cannot be padded to a multiple of %d\n", r, pad);
            goto out;
        }
        if (engine_cpu_ops.create(&rk[r].eng, shard_model(sh[r]), &o, &e)) {
            fprintf(stderr, "rank %d: %s\n", r, e.msg);
            goto out;
        }
        rk[r].g = &g;
        rk[r].r = r;
        cpu_set_tp(rk[r].eng, allreduce, &rk[r]);
    }
    double worst, worst_bad;
    int am, am_bad;
    g.reduce = 1;
    if (run(m, whole, rk, &g, steps, 1, &worst, &am)) goto out;
    g.reduce = 0;
    worst_bad = 1;
    if (size > 1 && run(m, whole, rk, &g, steps, 0, &worst_bad, &am_bad)) goto out;
    /* columns: expert down biases on every rank (the views of ranks > 0 have none:
     * shard.c); experts: on rank 0 alone (each rank's view has its experts' biases) */
    double worst_db = -1, worst_off = -1;
    int am_db, am_off, has_db = 0, has_moe = 0;
    for (int il = 0; il < m->hp.n_layer; il++) {
        has_db |= m->layers[il].ffn == MODEL_FFN_MOE && m->layers[il].moe.down_b;
        has_moe |= m->layers[il].ffn == MODEL_FFN_MOE;
    }
    const int nl = m->hp.n_layer;
    const model_tensor **saved = calloc((size_t)size * (nl ? nl : 1), sizeof *saved); /* the views' down_b */
    if (!saved) goto out;
    for (int r = 0; r < size; r++)
        for (int il = 0; il < nl; il++) saved[r * nl + il] = shard_model(sh[r])->layers[il].moe.down_b;
    if (has_db && size > 1) {
        for (int r = 1; r < size; r++)
            for (int il = 0; il < nl; il++) /* a test's poison: the view is the tool's own */
                ((model *)shard_model(sh[r]))->layers[il].moe.down_b =
                    sp == ENGINE_MOE_SPLIT_EXPERTS ? NULL : m->layers[il].moe.down_b;
        g.reduce = 1;
        if (run(m, whole, rk, &g, steps, 0, &worst_db, &am_db)) {
            free(saved);
            goto out;
        }
    }
    if (sp == ENGINE_MOE_SPLIT_EXPERTS && has_moe && size > 1) {
        for (int r = 0; r < size; r++)
            for (int il = 0; il < nl; il++) { /* the biases back; the offset dropped */
                model_moe *VM = &((model *)shard_model(sh[r]))->layers[il].moe;
                VM->down_b = saved[r * nl + il];
                VM->expert0 = 0;
            }
        g.reduce = 1;
        if (run(m, whole, rk, &g, steps, 0, &worst_off, &am_off)) {
            free(saved);
            goto out;
        }
    }
    free(saved);
    status = 0;
    const double tol = 1e-4;
    if (worst < tol)
        printf("ok - %d CPU ranks, partial sums added: logits within rel L2 %.2g of the unsharded engine (< %g) over %d "
               "steps\n", size, worst, tol, steps + 1);
    else {
        printf("not ok - %d CPU ranks: logits rel L2 %.3g (tolerance %g)\n", size, worst, tol);
        status = 1;
    }
    if (pad) printf("# experts padded to a multiple of %d on every rank\n", pad);
    if (am)
        printf("ok - greedy tokens equal at every step\n");
    else {
        printf("not ok - a greedy token differs\n");
        status = 1;
    }
    if (size == 1)
        ;
    else if (worst_bad > 1e-2)
        printf("ok - negative control: without the all-reduce the logits are off by rel L2 %.3g\n", worst_bad);
    else {
        printf("not ok - negative control: without the all-reduce the logits still match (rel L2 %.3g): the check "
               "cannot fail\n", worst_bad);
        status = 1;
    }
    const char *db_what = sp == ENGINE_MOE_SPLIT_EXPERTS ? "on rank 0 alone" : "on every rank";
    if (has_db && size > 1) {
        if (worst_db > 10 * tol)
            printf("ok - negative control: expert down biases added %s put the logits off by rel L2 %.3g\n", db_what,
                   worst_db);
        else {
            printf("not ok - negative control: down biases %s still match (rel L2 %.3g)\n", db_what, worst_db);
            status = 1;
        }
    }
    if (worst_off >= 0) {
        if (worst_off > 10 * tol)
            printf("ok - negative control: every rank's experts taken for experts 0.. (offset dropped) put the logits "
                   "off by rel L2 %.3g\n", worst_off);
        else {
            printf("not ok - negative control: experts with the offset dropped still match (rel L2 %.3g)\n", worst_off);
            status = 1;
        }
    }
    if (size > 1) printf("# moe_split %s\n", engine_moe_split_name(sp));
out:
    for (int r = 0; r < size; r++) {
        if (rk[r].eng) engine_cpu_ops.destroy(rk[r].eng);
        shard_free(sh[r]);
    }
    if (whole) engine_cpu_ops.destroy(whole);
    for (int i = 0; i < n_pb; i++) free(pbufs[i]);
    free(pbufs);
    free(ptens);
    pthread_barrier_destroy(&g.bar);
    free(g.sum);
    model_free(m);
    return status;
}
