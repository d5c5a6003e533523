/* llamacpp_logits.c — the second golden reference: llama.cpp (libllama, CPU) on the same
 * GGUF, from token ids. Built against the llama.cpp tree tests/bench/build_llamacpp.sh
 * prepares (not part of sparkd's build; make_refs_llamacpp.py builds and runs it).
 *
 *   llamacpp_logits MODEL.gguf N_NEW TOPK STRIDE ID...
 *
 * Decodes the prompt ids in one batch, then N_NEW greedy tokens one at a time (argmax of
 * the float32 logits, first maximum on ties), through llama.cpp's own KV cache (F32 K/V,
 * flash attention off: the exact path). Prints, like tests/unit/tool_logits:
 *   top ID:LOGIT ...      the TOPK largest first-step logits, descending
 *   strided V ...         first-step logits at ids 0, STRIDE, 2*STRIDE, ...
 *   greedy ID ...         the N_NEW greedy ids
 *   margins M ...         top-1 minus top-2 logit at each greedy step */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static int argmax2(const float *v, int n, float *margin) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    float second = -1e30f;
    for (int i = 0; i < n; i++)
        if (i != best && v[i] > second) second = v[i];
    *margin = v[best] - second;
    return best;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s MODEL N_NEW TOPK STRIDE ID...\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    int n_new = atoi(argv[2]), topk = atoi(argv[3]), stride = atoi(argv[4]);
    int n_prompt = argc - 5;
    llama_token *ids = malloc(sizeof(llama_token) * (size_t)(n_prompt + n_new + 1));
    for (int i = 0; i < n_prompt; i++) ids[i] = atoi(argv[5 + i]);

    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(path, mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", path); return 1; }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 512;
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_threads = cp.n_threads_batch = 2;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "cannot create a context\n"); return 1; }
    int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

    if (llama_decode(ctx, llama_batch_get_one(ids, n_prompt))) { fprintf(stderr, "decode failed\n"); return 1; }
    const float *lg = llama_get_logits_ith(ctx, -1);
    float *first = malloc(sizeof(float) * (size_t)n_vocab);
    memcpy(first, lg, sizeof(float) * (size_t)n_vocab);

    /* top-k by repeated selection (vocabularies here are small) */
    char *used = calloc((size_t)n_vocab, 1);
    printf("top");
    for (int k = 0; k < topk && k < n_vocab; k++) {
        int b = -1;
        for (int i = 0; i < n_vocab; i++)
            if (!used[i] && (b < 0 || first[i] > first[b])) b = i;
        used[b] = 1;
        printf(" %d:%.6f", b, first[b]);
    }
    printf("\nstrided");
    for (int i = 0; i < n_vocab; i += stride) printf(" %.6f", first[i]);
    printf("\n");

    float *margins = malloc(sizeof(float) * (size_t)(n_new + 1));
    int *gen = malloc(sizeof(int) * (size_t)(n_new + 1));
    for (int s = 0; s < n_new; s++) {
        const float *row = llama_get_logits_ith(ctx, -1);
        int t = argmax2(row, n_vocab, &margins[s]);
        gen[s] = t;
        ids[n_prompt + s] = t;
        if (s + 1 < n_new && llama_decode(ctx, llama_batch_get_one(&ids[n_prompt + s], 1))) {
            fprintf(stderr, "decode failed at step %d\n", s);
            return 1;
        }
    }
    printf("greedy");
    for (int s = 0; s < n_new; s++) printf(" %d", gen[s]);
    printf("\nmargins");
    for (int s = 0; s < n_new; s++) printf(" %.6f", margins[s]);
    printf("\n");

    free(margins); free(gen); free(used); free(first); free(ids);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
