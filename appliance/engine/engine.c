/* engine.c — choosing a backend, the KV type names, the KV byte arithmetic every backend
 * plans with and the plan / batch checks they share. See engine.h. */
#include "engine.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef SPARKD_CUDA
#include "cuda.h"
/* Weak: a program linked without the CUDA unit (the unit tests) or a tree where
 * kernels/ has no engine yet still links, and engine_select("cuda") then says what
 * is missing instead of failing to link. */
extern const engine_ops engine_cuda_ops __attribute__((weak));
extern int cuda_device_describe(char *out, size_t cap, err *e) __attribute__((weak));
extern const engine_ops engine_tp_ops __attribute__((weak));
#endif

static const char *const kv_names[ENGINE_KV_COUNT] = {"f32", "f16", "q8", "bf16", "fp8"};

int engine_kv_type_parse(const char *name) {
    for (int t = 0; t < ENGINE_KV_COUNT; t++)
        if (name && !strcmp(name, kv_names[t])) return t;
    return -1;
}

const char *engine_kv_type_name(engine_kv_type t) {
    return (int)t >= 0 && t < ENGINE_KV_COUNT ? kv_names[t] : "?";
}

int engine_precision_parse(const char *name) {
    if (name && !strcmp(name, "exact")) return ENGINE_PRECISION_EXACT;
    if (name && !strcmp(name, "fast")) return ENGINE_PRECISION_FAST;
    return -1;
}

const char *engine_precision_name(engine_precision p) {
    return p == ENGINE_PRECISION_EXACT ? "exact" : p == ENGINE_PRECISION_FAST ? "fast" : "?";
}

int engine_moe_split_parse(const char *name) {
    if (name && !strcmp(name, "columns")) return ENGINE_MOE_SPLIT_COLUMNS;
    if (name && !strcmp(name, "experts")) return ENGINE_MOE_SPLIT_EXPERTS;
    return -1;
}

const char *engine_moe_split_name(engine_moe_split s) {
    return s == ENGINE_MOE_SPLIT_COLUMNS ? "columns" : s == ENGINE_MOE_SPLIT_EXPERTS ? "experts" : "?";
}

int engine_kv_elem_bytes(engine_kv_type t) {
    switch (t) {
    case ENGINE_KV_F16:
    case ENGINE_KV_BF16: return 2;
    case ENGINE_KV_Q8:
    case ENGINE_KV_FP8: return 1;
    default: return 4;
    }
}

int engine_kv_scale_bytes(engine_kv_type t) {
    return t == ENGINE_KV_Q8 || t == ENGINE_KV_FP8 ? (int)sizeof(float) : 0;
}

uint64_t engine_kv_bytes_per_token(const model *m, engine_kv_type t) {
    return model_kv_bytes_per_token(m, (double)engine_kv_elem_bytes(t), engine_kv_scale_bytes(t));
}

int engine_kv_pool_blocks(const engine_opts *o, int kv_block, int *n_blocks, err *e) {
    const uint64_t per_seq = ((uint64_t)o->n_ctx + kv_block - 1) / kv_block;
    const uint64_t blocks = o->n_kv_blocks > 0 ? (uint64_t)o->n_kv_blocks : (uint64_t)o->max_seqs * per_seq;
    if (blocks > (uint64_t)(INT32_MAX / kv_block))
        return err_set(e, ERR_INVALID, "a KV pool of %llu blocks is too large", (unsigned long long)blocks);
    *n_blocks = (int)blocks;
    return 0;
}

int engine_plan_check_limit(const engine_plan *p, const engine_opts *o, err *e) {
    const double MB = 1048576.0;
    if (o->memory_limit && p->total_bytes > o->memory_limit)
        return err_set(e, ERR_NOMEM,
                       "the memory limit is %.1f MB but weights %.1f MB + KV cache %.1f MB + buffers %.1f MB need %.1f MB",
                       (double)o->memory_limit / MB, (double)p->weights_bytes / MB, (double)p->kv_bytes / MB,
                       (double)p->work_bytes / MB, (double)p->total_bytes / MB);
    return 0;
}

/* YaRN correction range: the dims whose wavelength falls between beta_fast and
 * beta_slow rotations over the original context get a linear ramp. */
static float yarn_corr_dim(int n_dims, int orig_ctx, float n_rot, float base) {
    return (float)n_dims * logf((float)orig_ctx / (n_rot * 2.0f * (float)M_PI)) / (2.0f * logf(base));
}

void engine_rope_inv_freq(const model_rope *r, float *inv) {
    const int half = r->n_rot / 2;
    const float *ff = r->freq_factors ? (const float *)r->freq_factors->data : NULL;
    float lo = 0, hi = 0;
    if (r->scaling == MODEL_ROPE_SCALE_YARN) {
        lo = yarn_corr_dim(r->n_rot, r->orig_ctx, r->yarn_beta_fast, r->base);
        hi = yarn_corr_dim(r->n_rot, r->orig_ctx, r->yarn_beta_slow, r->base);
        if (!r->yarn_exact) { /* llama.cpp's widening to whole dims; gpt-oss keeps the range as computed */
            lo = floorf(lo);
            hi = ceilf(hi);
        }
        if (lo < 0) lo = 0;
        if (hi > r->n_rot - 1) hi = (float)(r->n_rot - 1);
    }
    for (int i = 0; i < half; i++) {
        /* Same float32 recipe as transformers' default RoPE init. */
        float f = 1.0f / powf(r->base, (float)(2 * i) / (float)r->n_rot);
        if (ff) f /= ff[i];
        if (r->scaling == MODEL_ROPE_SCALE_LINEAR) f /= r->factor;
        if (r->scaling == MODEL_ROPE_SCALE_YARN) {
            float ramp = (hi - lo) < 0.001f ? 0.0f : ((float)i - lo) / (hi - lo);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            float extrap = 1.0f - ramp; /* 1 = keep the original frequency */
            f = f / r->factor * (1.0f - extrap) + f * extrap;
        }
        inv[i] = f;
    }
}

int engine_check_batch(const engine_seq *seqs, int n, const engine_opts *o, int kv_block, int n_blocks, int n_vocab,
                       err *e) {
    if (n < 1 || n > o->max_seqs)
        return err_set(e, ERR_INVALID, "batch of %d sequences (1..%d allowed)", n, o->max_seqs);
    int n_tok = 0;
    for (int i = 0; i < n; i++) {
        const engine_seq *s = &seqs[i];
        if (s->n < 1 || s->pos < 0 || s->pos > o->n_ctx - s->n)
            return err_set(e, ERR_INVALID, "sequence %d: %d tokens at position %d do not fit (context %d)", i, s->n,
                           s->pos, o->n_ctx);
        if (s->slot < 0 || s->slot >= o->max_seqs)
            return err_set(e, ERR_INVALID, "sequence %d: slot %d out of range", i, s->slot);
        for (int k = 0; k < i; k++)
            if (seqs[k].slot == s->slot) return err_set(e, ERR_INVALID, "slot %d used twice in one batch", s->slot);
        if (!s->blocks) return err_set(e, ERR_INVALID, "sequence %d has no block table", i);
        for (int b = 0; b <= (s->pos + s->n - 1) / kv_block; b++)
            if (s->blocks[b] < 0 || s->blocks[b] >= n_blocks)
                return err_set(e, ERR_INVALID, "sequence %d: KV block %d out of range", i, s->blocks[b]);
        if (s->n > o->max_tokens - n_tok)
            return err_set(e, ERR_INVALID, "batch has more than %d tokens", o->max_tokens);
        for (int t = 0; t < s->n; t++)
            if (s->tokens[t] < 0 || s->tokens[t] >= n_vocab)
                return err_set(e, ERR_INVALID, "token id %d out of range [0, %d)", s->tokens[t], n_vocab);
        n_tok += s->n;
    }
    return 0;
}

const engine_ops *engine_select_parallel(const engine_parallel *p, const char *device, err *e) {
    if (!p || p->size < 2) {
        err_set(e, ERR_INVALID, "tensor parallel: size %d", p ? p->size : 0);
        return NULL;
    }
    if (device && strcmp(device, "cuda") && strcmp(device, "auto")) {
        err_set(e, ERR_INVALID, "[parallel] size %d needs device = cuda (not %.16s)", p->size, device);
        return NULL;
    }
#ifdef SPARKD_CUDA
    if (&engine_tp_ops != NULL) return &engine_tp_ops;
#endif
    err_set(e, ERR_UNSUPPORTED, "[parallel] size %d: this sparkd was built without CUDA (tensor parallel needs it)", p->size);
    return NULL;
}

/* A test binary (build/tests/sparkd_scripted, tests/engine_script/) defines this
 * table; every device then means the scripted engine. The shipped binaries leave it
 * undefined, so this is NULL there. */
extern const engine_ops engine_test_ops __attribute__((weak));

const engine_ops *engine_select(const char *device, err *e) {
    if (&engine_test_ops != NULL) return &engine_test_ops;
    if (!device || !device[0] || !strcmp(device, "cpu")) return &engine_cpu_ops;
    const int cuda = !strcmp(device, "cuda");
    if (!cuda && strcmp(device, "auto")) {
        err_set(e, ERR_INVALID, "device '%.32s' is not one of cpu, cuda, auto", device);
        return NULL;
    }
#ifdef SPARKD_CUDA
    if (&engine_cuda_ops == NULL || cuda_device_describe == NULL) {
        if (!cuda) return &engine_cpu_ops;
        err_set(e, ERR_UNSUPPORTED, "device = cuda: this build has no CUDA engine yet (use cpu)");
        return NULL;
    }
    char line[256];
    err de = {0};
    if (cuda_device_describe(line, sizeof line, &de)) {
        if (!cuda) return &engine_cpu_ops;
        err_set(e, de.code, "device = cuda: %s", de.msg);
        return NULL;
    }
    return &engine_cuda_ops;
#else
    if (!cuda) return &engine_cpu_ops;
    err_set(e, ERR_UNSUPPORTED, "device = cuda: this sparkd was built without CUDA (CPU only)");
    return NULL;
#endif
}
