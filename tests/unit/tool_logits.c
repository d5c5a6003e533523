/* tool_logits — first-step logits of a token sequence, for the golden tests.
 *
 *   tool_logits MODEL TOPK STRIDE GEN ID [ID...]
 * prints
 *   top ID:LOGIT ... (TOPK entries, best first)
 *   strided L0 L1 ... (logits at ids 0, STRIDE, 2*STRIDE, ...)
 *   argmax ID
 *   greedy ID... (GEN greedy tokens continuing the sequence; omitted if GEN = 0)
 * Runs the engine `sparkd run` uses (SPARKD_DEVICE, default cpu) through engine.h;
 * threads from SPARKD_THREADS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "model.h"

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: tool_logits MODEL TOPK STRIDE GEN ID [ID...]\n");
        return 2;
    }
    err e = {0};
    int topk = atoi(argv[2]), stride = atoi(argv[3]), gen = atoi(argv[4]), n = argc - 5;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n; i++) ids[i] = atoi(argv[5 + i]);
    const char *th = getenv("SPARKD_THREADS");
    model *m;
    if (model_load(&m, argv[1], NULL, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    const engine_ops *ops = engine_select(getenv("SPARKD_DEVICE"), &e);
    engine_opts eo = {.n_threads = th ? atoi(th) : 2, .n_ctx = n + gen + 1, .max_seqs = 1, .max_tokens = n};
    engine_plan plan;
    engine *eng = NULL;
    if (!ops || ops->plan(m, &eo, &plan, &e) || ops->create(&eng, m, &eo, &e)) {
        fprintf(stderr, "error: %s\n", e.msg);
        return 1;
    }
    if (ops->usage) { /* what create took must be what plan said */
        engine_usage u;
        ops->usage(eng, &u);
        if (u.kv_bytes != plan.kv_bytes || u.work_bytes != plan.work_bytes || u.state_bytes != plan.state_bytes) {
            fprintf(stderr, "error: plan (kv %llu, work %llu, state %llu bytes) != allocated (%llu, %llu, %llu)\n",
                    (unsigned long long)plan.kv_bytes, (unsigned long long)plan.work_bytes,
                    (unsigned long long)plan.state_bytes, (unsigned long long)u.kv_bytes,
                    (unsigned long long)u.work_bytes, (unsigned long long)u.state_bytes);
            return 1;
        }
    }
    int32_t *blocks = malloc(sizeof(int32_t) * (size_t)plan.n_kv_blocks);
    for (int i = 0; i < plan.n_kv_blocks; i++) blocks[i] = i;
    engine_seq sq = {.tokens = ids, .n = n, .pos = 0, .blocks = blocks, .slot = 0, .want = ENGINE_WANT_LOGITS};
    const float *l = NULL;
    if (ops->forward(eng, &sq, 1, &e) || !(l = ops->logits(eng, 0, &e))) {
        fprintf(stderr, "error: %s\n", e.msg);
        return 1;
    }
    const int V = m->hp.n_vocab;
    char *taken = calloc((size_t)V, 1);
    printf("top");
    for (int k = 0; k < topk && k < V; k++) {
        int best = -1;
        for (int i = 0; i < V; i++)
            if (!taken[i] && (best < 0 || l[i] > l[best])) best = i;
        taken[best] = 1;
        printf(" %d:%.6f", best, (double)l[best]);
    }
    printf("\nstrided");
    for (int i = 0; i < V; i += stride) printf(" %.6f", (double)l[i]);
    int am = 0;
    for (int i = 1; i < V; i++)
        if (l[i] > l[am]) am = i;
    printf("\nargmax %d\n", am);
    if (gen > 0) {
        printf("greedy");
        int32_t id = am;
        for (int g = 0; g < gen; g++) {
            printf(" %d", id);
            if (g + 1 == gen) break;
            engine_seq d = {.tokens = &id, .n = 1, .pos = n + g, .blocks = blocks, .slot = 0, .want = ENGINE_WANT_LOGITS};
            if (ops->forward(eng, &d, 1, &e) || !(l = ops->logits(eng, 0, &e))) {
                fprintf(stderr, "error: %s\n", e.msg);
                return 1;
            }
            id = 0;
            for (int i = 1; i < V; i++)
                if (l[i] > l[id]) id = i;
        }
        printf("\n");
    }
    free(taken);
    free(ids);
    free(blocks);
    ops->destroy(eng);
    model_free(m);
    return 0;
}
