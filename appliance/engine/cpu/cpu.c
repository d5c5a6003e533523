/* cpu.c — CPU forward pass for the dense families (gemma3, llama, qwen2/3).
 *
 * Per layer (T = new tokens in the batch, rows of every activation buffer):
 *   xn  = rmsnorm(x) * attn_norm
 *   q,k,v = xn Wq^T (+bq), xn Wk^T (+bk), xn Wv^T (+bv)
 *   q,k = per-head rmsnorm (qwen3, gemma3), then RoPE at each token's position
 *   K/V of the new tokens -> the slot's cache; causal (optionally sliding-window)
 *   softmax attention over the cache -> att
 *   o = att Wo^T; gemma: o = rmsnorm(o) * post_attn_norm;  x += o
 *   xn = rmsnorm(x) * ffn_norm; h = act(xn Wg^T) * (xn Wu^T); d = h Wd^T
 *   gemma: d = rmsnorm(d) * post_ffn_norm;  x += d
 * then rmsnorm(x) * output_norm and the output projection, only for the rows
 * whose logits are wanted. */
#include "cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "pool.h"
#include "quant.h"
#include "sysmem.h"
#include "vec.h"

struct cpu_engine {
    const model *m;
    pool *pool;
    cpu_engine_opts opt;
    int q_dim, kv_dim; /* n_head*head_dim, n_head_kv*head_dim */

    /* activations, T = o.max_tokens rows */
    float *x;    /* (T, dim) residual stream */
    float *xn;   /* (T, dim) normed input of a sub-block */
    float *q;    /* (T, q_dim) */
    float *k;    /* (T, kv_dim) */
    float *v;    /* (T, kv_dim) */
    float *att;  /* (T, q_dim) attention output */
    float *o;    /* (T, dim) output of a sub-block */
    float *gate; /* (T, ffn_dim) */
    float *up;   /* (T, ffn_dim) */
    float *outx; /* (n_slots, dim) final-normed rows whose logits are wanted */
    float *logits; /* (n_slots, n_vocab) */

    /* per thread */
    float *scores;  /* (n_threads, n_ctx) attention probabilities */
    float *mm_scratch; /* (n_threads, scratch_floats) */
    size_t scratch_floats;

    /* RoPE inverse frequencies, (head_dim/2) each: global and sliding layers */
    float *inv_freq;
    float *inv_freq_swa;
    float yarn_mscale;

    /* KV pool, see cpu.h: (n_layer, n_blocks, CPU_KV_BLOCK, kv_dim) of kv_type */
    void *k_pool;
    void *v_pool;
    float *k_scale; /* CPU_KV_Q8 only: (n_layer, n_blocks, CPU_KV_BLOCK, n_head_kv) */
    float *v_scale;
    int n_blocks;
    int blocks_per_slot;   /* ceil(n_ctx / CPU_KV_BLOCK) */
    int32_t *slot_blocks;  /* (n_slots, blocks_per_slot): the identity tables of slot callers */

    /* per-call token bookkeeping, (T) each: which block table/pos a row is */
    int32_t *tok_pos;
    const int32_t **tok_blocks;
    int32_t *tok_ids;
    int32_t *out_rows; /* (n_slots) row index whose logits sequence i wants, -1 none */
    int n_tok;
};

static float *f32_ptr(const gguf_tensor *t) { return t ? (float *)t->data : NULL; }

static int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }

uint64_t cpu_engine_plan_bytes(const model *m, const cpu_engine_opts *o) {
    const model_hparams *hp = &m->hp;
    uint64_t T = (uint64_t)o->max_tokens, q_dim = (uint64_t)hp->n_head * hp->head_dim,
             kv_dim = (uint64_t)hp->n_head_kv * hp->head_dim;
    uint64_t n = T * (2 * (uint64_t)hp->dim + 2 * q_dim + 2 * kv_dim + (uint64_t)hp->dim +
                      2 * (uint64_t)hp->ffn_dim);
    n += (uint64_t)o->n_slots * ((uint64_t)hp->dim + (uint64_t)hp->n_vocab);
    n += (uint64_t)o->n_threads * ((uint64_t)o->n_ctx + quant_matmul_scratch_floats(
                                                            max_i64(hp->dim, max_i64(hp->ffn_dim, (int64_t)q_dim))));
    uint64_t blocks = o->n_kv_blocks > 0 ? (uint64_t)o->n_kv_blocks
                                         : (uint64_t)o->n_slots * (((uint64_t)o->n_ctx + CPU_KV_BLOCK - 1) / CPU_KV_BLOCK);
    const uint64_t rows = (uint64_t)hp->n_layer * blocks * CPU_KV_BLOCK;
    uint64_t kv = o->kv_type == CPU_KV_Q8 ? 2ull * rows * (kv_dim + 4ull * (uint64_t)hp->n_head_kv)
                                          : 2ull * rows * kv_dim * (o->kv_type == CPU_KV_F16 ? 2 : 4);
    return n * sizeof(float) + kv;
}

static float *alloc_f32(uint64_t n, err *e, int *rc) {
    if (*rc) return NULL;
    void *p = NULL;
    if (n == 0) n = 1;
    if (posix_memalign(&p, 64, (size_t)(n * sizeof(float)))) {
        *rc = err_set(e, ERR_NOMEM, "cannot allocate %.1f MB for the CPU engine",
                      (double)(n * sizeof(float)) / 1e6);
        return NULL;
    }
    return p;
}

/* YaRN correction range: the dims whose wavelength falls between beta_fast and
 * beta_slow rotations over the original context get a linear ramp. */
static float yarn_corr_dim(int n_dims, int orig_ctx, float n_rot, float base) {
    return (float)n_dims * logf((float)orig_ctx / (n_rot * 2.0f * (float)M_PI)) / (2.0f * logf(base));
}

static void rope_freqs(const model *m, float *inv, float base, int scaled, float *mscale) {
    const model_hparams *hp = &m->hp;
    const int half = hp->head_dim / 2;
    const float *ff = scaled ? f32_ptr(m->rope_freqs) : NULL;
    float lo = 0, hi = 0;
    if (scaled && hp->rope_scaling == MODEL_ROPE_SCALE_YARN) {
        lo = floorf(yarn_corr_dim(hp->head_dim, hp->rope_orig_ctx, hp->yarn_beta_fast, base));
        hi = ceilf(yarn_corr_dim(hp->head_dim, hp->rope_orig_ctx, hp->yarn_beta_slow, base));
        if (lo < 0) lo = 0;
        if (hi > hp->head_dim - 1) hi = (float)(hp->head_dim - 1);
        if (mscale) *mscale = 0.1f * logf(hp->rope_factor) + 1.0f;
    }
    for (int i = 0; i < half; i++) {
        /* Same float32 recipe as transformers' default RoPE init. */
        float f = 1.0f / powf(base, (float)(2 * i) / (float)hp->head_dim);
        if (ff) f /= ff[i];
        if (scaled && hp->rope_scaling == MODEL_ROPE_SCALE_LINEAR) f /= hp->rope_factor;
        if (scaled && hp->rope_scaling == MODEL_ROPE_SCALE_YARN) {
            float ramp = (hi - lo) < 0.001f ? 0.0f : ((float)i - lo) / (hi - lo);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            float extrap = 1.0f - ramp; /* 1 = keep the original frequency */
            f = f / hp->rope_factor * (1.0f - extrap) + f * extrap;
        }
        inv[i] = f;
    }
}

int cpu_engine_create(cpu_engine **out, const model *m, const cpu_engine_opts *opts, err *e) {
    *out = NULL;
    const model_hparams *hp = &m->hp;
    if (opts->n_threads < 1 || opts->n_ctx < 1 || opts->n_slots < 1 || opts->max_tokens < 1)
        return err_set(e, ERR_INVALID, "engine options must be positive (threads %d, ctx %d, slots %d, batch %d)",
                       opts->n_threads, opts->n_ctx, opts->n_slots, opts->max_tokens);
    int mrc = sysmem_check(cpu_engine_plan_bytes(m, opts), "the KV cache and activation buffers", e);
    if (mrc) return mrc;
    cpu_engine *c = calloc(1, sizeof *c);
    if (!c) return err_set(e, ERR_NOMEM, "out of memory");
    c->m = m;
    c->opt = *opts;
    c->q_dim = hp->n_head * hp->head_dim;
    c->kv_dim = hp->n_head_kv * hp->head_dim;
    const uint64_t T = (uint64_t)opts->max_tokens;
    int rc = 0;
    c->x = alloc_f32(T * hp->dim, e, &rc);
    c->xn = alloc_f32(T * hp->dim, e, &rc);
    c->q = alloc_f32(T * c->q_dim, e, &rc);
    c->k = alloc_f32(T * c->kv_dim, e, &rc);
    c->v = alloc_f32(T * c->kv_dim, e, &rc);
    c->att = alloc_f32(T * c->q_dim, e, &rc);
    c->o = alloc_f32(T * hp->dim, e, &rc);
    c->gate = alloc_f32(T * hp->ffn_dim, e, &rc);
    c->up = alloc_f32(T * hp->ffn_dim, e, &rc);
    c->outx = alloc_f32((uint64_t)opts->n_slots * hp->dim, e, &rc);
    c->logits = alloc_f32((uint64_t)opts->n_slots * hp->n_vocab, e, &rc);
    c->scores = alloc_f32((uint64_t)opts->n_threads * opts->n_ctx, e, &rc);
    c->scratch_floats = quant_matmul_scratch_floats(max_i64(hp->dim, max_i64(hp->ffn_dim, c->q_dim)));
    c->mm_scratch = alloc_f32((uint64_t)opts->n_threads * c->scratch_floats, e, &rc);
    c->inv_freq = alloc_f32((uint64_t)hp->head_dim / 2, e, &rc);
    c->inv_freq_swa = alloc_f32((uint64_t)hp->head_dim / 2, e, &rc);
    c->blocks_per_slot = (opts->n_ctx + CPU_KV_BLOCK - 1) / CPU_KV_BLOCK;
    c->n_blocks = opts->n_kv_blocks > 0 ? opts->n_kv_blocks : opts->n_slots * c->blocks_per_slot;
    /* f16 elements are carved from an f32 allocation of half the count */
    const uint64_t kv_elems = (uint64_t)hp->n_layer * (uint64_t)c->n_blocks * CPU_KV_BLOCK * c->kv_dim;
    const uint64_t kv_f32s = opts->kv_type == CPU_KV_F16 ? (kv_elems + 1) / 2
                             : opts->kv_type == CPU_KV_Q8 ? (kv_elems + 3) / 4 : kv_elems;
    c->k_pool = alloc_f32(kv_f32s, e, &rc);
    c->v_pool = alloc_f32(kv_f32s, e, &rc);
    if (opts->kv_type == CPU_KV_Q8) {
        c->k_scale = alloc_f32(kv_elems / (uint64_t)hp->head_dim, e, &rc);
        c->v_scale = alloc_f32(kv_elems / (uint64_t)hp->head_dim, e, &rc);
    }
    if (!rc) {
        c->slot_blocks = malloc(sizeof(int32_t) * (size_t)opts->n_slots * (size_t)c->blocks_per_slot);
        if (c->slot_blocks)
            for (int i = 0; i < opts->n_slots * c->blocks_per_slot; i++)
                c->slot_blocks[i] = i < c->n_blocks ? i : c->n_blocks - 1; /* only reachable if the pool is smaller */
        c->tok_pos = malloc(T * sizeof(int32_t));
        c->tok_blocks = malloc(T * sizeof(*c->tok_blocks));
        c->tok_ids = malloc(T * sizeof(int32_t));
        c->out_rows = malloc((size_t)opts->n_slots * sizeof(int32_t));
        if (!c->tok_pos || !c->tok_blocks || !c->tok_ids || !c->out_rows || !c->slot_blocks)
            rc = err_set(e, ERR_NOMEM, "out of memory");
    }
    if (!rc) {
        c->pool = pool_create(opts->n_threads);
        if (!c->pool) rc = err_set(e, ERR_NOMEM, "cannot start %d threads", opts->n_threads);
    }
    if (rc) {
        cpu_engine_free(c);
        return rc;
    }
    c->yarn_mscale = 1.0f;
    /* Gemma 3 scales rope only on global layers; local layers keep their base. */
    rope_freqs(m, c->inv_freq, hp->rope_base, 1, &c->yarn_mscale);
    rope_freqs(m, c->inv_freq_swa, hp->rope_base_swa, m->arch != MODEL_ARCH_GEMMA3, NULL);
    *out = c;
    return 0;
}

void cpu_engine_free(cpu_engine *c) {
    if (!c) return;
    if (c->pool) pool_free(c->pool);
    free(c->x); free(c->xn); free(c->q); free(c->k); free(c->v); free(c->att); free(c->o);
    free(c->gate); free(c->up); free(c->outx); free(c->logits); free(c->scores);
    free(c->mm_scratch); free(c->inv_freq); free(c->inv_freq_swa);
    free(c->k_pool); free(c->v_pool); free(c->k_scale); free(c->v_scale); free(c->slot_blocks);
    free(c->tok_pos); free(c->tok_blocks); free(c->tok_ids); free(c->out_rows);
    free(c);
}

int cpu_engine_threads(const cpu_engine *c) { return pool_size(c->pool); }

int cpu_engine_kv_blocks(const cpu_engine *c) { return c->n_blocks; }

const float *cpu_logits(const cpu_engine *c, int i) {
    return c->logits + (size_t)i * (size_t)c->m->hp.n_vocab;
}

/* ---- matrix multiply over the pool ---- */

typedef struct mm_job {
    int n;                     /* up to 3 independent products sharing X */
    const gguf_tensor *w[3];   /* ne = [K, N_i] */
    float *y[3];               /* (T, N_i) */
    const float *x;            /* (T, K) */
    int64_t T;
    cpu_engine *c;
} mm_job;

static void mm_worker(void *arg, int ith, int nth) {
    mm_job *j = arg;
    float *scratch = j->c->mm_scratch + (size_t)ith * j->c->scratch_floats;
    for (int i = 0; i < j->n; i++) {
        const gguf_tensor *w = j->w[i];
        const int64_t K = w->ne[0], N = w->ne[1];
        uint64_t row_bytes;
        quant_row_bytes(w->type, K, &row_bytes); /* validated at load */
        long lo, hi;
        pool_split((long)N, ith, nth, 16, &lo, &hi);
        if (lo < hi)
            quant_matmul(w->type, w->data, row_bytes, K, lo, hi, j->x, K, j->T, j->y[i], N, scratch);
    }
}

static void matmul3(cpu_engine *c, const float *x, int64_t T, int n, const gguf_tensor *w0,
                    float *y0, const gguf_tensor *w1, float *y1, const gguf_tensor *w2, float *y2) {
    mm_job j = {.n = n, .w = {w0, w1, w2}, .y = {y0, y1, y2}, .x = x, .T = T, .c = c};
    pool_run(c->pool, mm_worker, &j);
}

/* ---- per-token element-wise stages ---- */

typedef struct tok_job {
    cpu_engine *c;
    int layer;
    int stage;
} tok_job;

enum {
    STAGE_EMBED_NORM,   /* x = embed(tokens) * scale; xn = norm(x) (layer 0) */
    STAGE_QK_ROPE_KV,   /* bias, qk-norm, rope; K/V -> cache */
    STAGE_ATTN_RESID,   /* post-attn norm, x += o, xn = ffn_norm(x) */
    STAGE_ACT,          /* gate = act(gate) * up */
    STAGE_FFN_RESID,    /* post-ffn norm, x += o, xn = next layer's attn_norm(x) */
};

static float gelu_tanh(float x) {
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

static float silu(float x) { return x / (1.0f + expf(-x)); }

static void rope_apply(float *vec, int head_dim, const float *inv, float pos, model_rope_style style,
                       float mscale) {
    const int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        float th = pos * inv[i];
        float cs = cosf(th) * mscale, sn = sinf(th) * mscale;
        int a = style == MODEL_ROPE_NEOX ? i : 2 * i;
        int b = style == MODEL_ROPE_NEOX ? i + half : 2 * i + 1;
        float x0 = vec[a], x1 = vec[b];
        vec[a] = x0 * cs - x1 * sn;
        vec[b] = x0 * sn + x1 * cs;
    }
}

/* Element offset of (layer, position) through a block table. */
static size_t kv_off(const cpu_engine *c, const int32_t *blocks, int layer, int pos) {
    const size_t block = (size_t)blocks[pos / CPU_KV_BLOCK];
    return (((size_t)layer * (size_t)c->n_blocks + block) * CPU_KV_BLOCK + (size_t)(pos % CPU_KV_BLOCK)) * c->kv_dim;
}

static void kv_store(const cpu_engine *c, void *pool, float *scales, size_t off, const float *x) {
    if (c->opt.kv_type == CPU_KV_Q8) {
        /* one symmetric scale per head row: amax / 127, round to nearest */
        const int hd = c->m->hp.head_dim;
        int8_t *d = (int8_t *)pool + off;
        for (int h = 0; h < c->kv_dim / hd; h++) {
            const float *xh = x + (size_t)h * hd;
            float amax = 0.0f;
            for (int i = 0; i < hd; i++) amax = fabsf(xh[i]) > amax ? fabsf(xh[i]) : amax;
            const float scale = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
            scales[off / (size_t)hd + (size_t)h] = scale;
            for (int i = 0; i < hd; i++) d[(size_t)h * hd + i] = (int8_t)lrintf(xh[i] * inv);
        }
    } else if (c->opt.kv_type == CPU_KV_F16) {
        uint16_t *d = (uint16_t *)pool + off;
        int i = 0;
#ifdef __F16C__
        for (; i + 8 <= c->kv_dim; i += 8)
            _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
#endif
        for (; i < c->kv_dim; i++) d[i] = quant_f32_to_f16(x[i]);
    } else {
        memcpy((float *)pool + off, x, sizeof(float) * (size_t)c->kv_dim);
    }
}

/* q . k for an int8 key row of n elements (times its scale outside) */
static float dot_i8(const float *q, const int8_t *k, int n) {
    int i = 0;
    float s = 0.0f;
#ifdef __AVX2__
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i),
                              _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(k + i)))), acc);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    s = _mm_cvtss_f32(h);
#endif
    for (; i < n; i++) s += q[i] * (float)k[i];
    return s;
}

static void axpy_i8(float *y, float a, const int8_t *v, int n) {
    for (int i = 0; i < n; i++) y[i] += a * (float)v[i];
}

/* q . k for an f16 key row of n elements */
static float dot_f16(const float *q, const uint16_t *k, int n) {
    int i = 0;
    float s = 0.0f;
#ifdef __F16C__
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i))), acc);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    s = _mm_cvtss_f32(h);
#endif
    for (; i < n; i++) s += q[i] * quant_f16_to_f32(k[i]);
    return s;
}

/* y += a * v for an f16 value row */
static void axpy_f16(float *y, float a, const uint16_t *v, int n) {
    int i = 0;
#ifdef __F16C__
    __m256 va = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i))),
                                                _mm256_loadu_ps(y + i)));
#endif
    for (; i < n; i++) y[i] += a * quant_f16_to_f32(v[i]);
}

static void tok_worker(void *arg, int ith, int nth) {
    tok_job *j = arg;
    cpu_engine *c = j->c;
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    const int dim = hp->dim;
    long lo, hi;
    pool_split(c->n_tok, ith, nth, 1, &lo, &hi);
    const model_layer *L = j->layer >= 0 && j->layer < hp->n_layer ? &m->layers[j->layer] : NULL;
    for (long t = lo; t < hi; t++) {
        float *x = c->x + t * dim, *xn = c->xn + t * dim, *o = c->o + t * dim;
        switch (j->stage) {
        case STAGE_EMBED_NORM: {
            const gguf_tensor *te = m->token_embd;
            uint64_t rb;
            quant_row_bytes(te->type, dim, &rb);
            quant_dequant_row(te->type, (const uint8_t *)te->data + rb * (uint64_t)c->tok_ids[t], x, dim);
            if (hp->embd_scale != 1.0f) vec_scale(x, hp->embd_scale, dim);
            vec_rmsnorm(xn, x, f32_ptr(m->layers[0].attn_norm), dim, hp->norm_eps);
            break;
        }
        case STAGE_QK_ROPE_KV: {
            float *q = c->q + t * c->q_dim, *k = c->k + t * c->kv_dim, *v = c->v + t * c->kv_dim;
            if (L->bq) vec_axpy(q, 1.0f, f32_ptr(L->bq), c->q_dim);
            if (L->bk) vec_axpy(k, 1.0f, f32_ptr(L->bk), c->kv_dim);
            if (L->bv) vec_axpy(v, 1.0f, f32_ptr(L->bv), c->kv_dim);
            const float *inv = L->is_swa ? c->inv_freq_swa : c->inv_freq;
            const float ms = L->is_swa ? 1.0f : c->yarn_mscale;
            const float pos = (float)c->tok_pos[t];
            for (int h = 0; h < hp->n_head; h++) {
                float *qh = q + h * hp->head_dim;
                if (L->q_norm) vec_rmsnorm(qh, qh, f32_ptr(L->q_norm), hp->head_dim, hp->norm_eps);
                rope_apply(qh, hp->head_dim, inv, pos, hp->rope_style, ms);
            }
            for (int h = 0; h < hp->n_head_kv; h++) {
                float *kh = k + h * hp->head_dim;
                if (L->k_norm) vec_rmsnorm(kh, kh, f32_ptr(L->k_norm), hp->head_dim, hp->norm_eps);
                rope_apply(kh, hp->head_dim, inv, pos, hp->rope_style, ms);
            }
            const size_t off = kv_off(c, c->tok_blocks[t], j->layer, c->tok_pos[t]);
            kv_store(c, c->k_pool, c->k_scale, off, k);
            kv_store(c, c->v_pool, c->v_scale, off, v);
            break;
        }
        case STAGE_ATTN_RESID:
            if (L->post_attn_norm) vec_rmsnorm(o, o, f32_ptr(L->post_attn_norm), dim, hp->norm_eps);
            vec_axpy(x, 1.0f, o, dim);
            vec_rmsnorm(xn, x, f32_ptr(L->ffn_norm), dim, hp->norm_eps);
            break;
        case STAGE_ACT: {
            float *g = c->gate + t * hp->ffn_dim, *u = c->up + t * hp->ffn_dim;
            if (hp->act == MODEL_ACT_GELU_TANH)
                for (int i = 0; i < hp->ffn_dim; i++) g[i] = gelu_tanh(g[i]) * u[i];
            else
                for (int i = 0; i < hp->ffn_dim; i++) g[i] = silu(g[i]) * u[i];
            break;
        }
        case STAGE_FFN_RESID:
            if (L->post_ffn_norm) vec_rmsnorm(o, o, f32_ptr(L->post_ffn_norm), dim, hp->norm_eps);
            vec_axpy(x, 1.0f, o, dim);
            if (j->layer + 1 < hp->n_layer)
                vec_rmsnorm(xn, x, f32_ptr(m->layers[j->layer + 1].attn_norm), dim, hp->norm_eps);
            break;
        }
    }
}

static void run_stage(cpu_engine *c, int layer, int stage) {
    tok_job j = {.c = c, .layer = layer, .stage = stage};
    pool_run(c->pool, tok_worker, &j);
}

/* ---- attention: one (token, head) pair at a time, split over threads ---- */

typedef struct attn_job {
    cpu_engine *c;
    int layer;
} attn_job;

static void attn_worker(void *arg, int ith, int nth) {
    attn_job *j = arg;
    cpu_engine *c = j->c;
    const model_hparams *hp = &c->m->hp;
    const model_layer *L = &c->m->layers[j->layer];
    const int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    float *p = c->scores + (size_t)ith * c->opt.n_ctx;
    long lo, hi;
    pool_split((long)c->n_tok * hp->n_head, ith, nth, 1, &lo, &hi);
    for (long w = lo; w < hi; w++) {
        const int t = (int)(w / hp->n_head), h = (int)(w % hp->n_head), hk = h / group;
        const int pos = c->tok_pos[t];
        const int32_t *blocks = c->tok_blocks[t];
        const int f16 = c->opt.kv_type == CPU_KV_F16, q8 = c->opt.kv_type == CPU_KV_Q8;
        int first = 0;
        if (L->is_swa && hp->swa_window > 0 && pos - hp->swa_window + 1 > 0) first = pos - hp->swa_window + 1;
        const float *qh = c->q + (size_t)t * c->q_dim + (size_t)h * hd;
        float mx = -INFINITY;
        for (int s = first; s <= pos; s++) {
            const size_t off = kv_off(c, blocks, j->layer, s) + (size_t)hk * hd;
            float sc = (q8 ? dot_i8(qh, (const int8_t *)c->k_pool + off, hd) * c->k_scale[off / (size_t)hd]
                        : f16 ? dot_f16(qh, (const uint16_t *)c->k_pool + off, hd)
                              : vec_dot(qh, (const float *)c->k_pool + off, hd)) * hp->attn_scale;
            p[s] = sc;
            if (sc > mx) mx = sc;
        }
        float sum = 0.0f;
        for (int s = first; s <= pos; s++) {
            p[s] = expf(p[s] - mx);
            sum += p[s];
        }
        const float inv = 1.0f / sum;
        float *out = c->att + (size_t)t * c->q_dim + (size_t)h * hd;
        memset(out, 0, sizeof(float) * hd);
        for (int s = first; s <= pos; s++) {
            const size_t off = kv_off(c, blocks, j->layer, s) + (size_t)hk * hd;
            if (q8) axpy_i8(out, p[s] * inv * c->v_scale[off / (size_t)hd], (const int8_t *)c->v_pool + off, hd);
            else if (f16) axpy_f16(out, p[s] * inv, (const uint16_t *)c->v_pool + off, hd);
            else vec_axpy(out, p[s] * inv, (const float *)c->v_pool + off, hd);
        }
    }
}

/* ---- final norm for the rows whose logits are wanted ---- */

typedef struct head_job {
    cpu_engine *c;
    int n_out;
} head_job;

static void head_worker(void *arg, int ith, int nth) {
    head_job *j = arg;
    cpu_engine *c = j->c;
    const model *m = c->m;
    const gguf_tensor *w = m->output;
    const int64_t K = w->ne[0], N = w->ne[1];
    uint64_t rb;
    quant_row_bytes(w->type, K, &rb);
    long lo, hi;
    pool_split((long)N, ith, nth, 64, &lo, &hi);
    if (lo < hi)
        quant_matmul(w->type, w->data, rb, K, lo, hi, c->outx, K, j->n_out, c->logits, N,
                     c->mm_scratch + (size_t)ith * c->scratch_floats);
    const float cap = m->hp.final_softcap;
    if (cap > 0.0f)
        for (int r = 0; r < j->n_out; r++)
            for (long i = lo; i < hi; i++) {
                float *l = c->logits + (size_t)r * N + i;
                *l = cap * tanhf(*l / cap);
            }
}

int cpu_forward(cpu_engine *c, const cpu_seq *seqs, int n_seqs, err *e) {
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    if (n_seqs < 1 || n_seqs > c->opt.n_slots)
        return err_set(e, ERR_INVALID, "batch of %d sequences (1..%d allowed)", n_seqs, c->opt.n_slots);
    int n_tok = 0;
    for (int i = 0; i < n_seqs; i++) {
        const cpu_seq *s = &seqs[i];
        if (s->n < 1 || s->pos < 0 || s->pos > c->opt.n_ctx - s->n)
            return err_set(e, ERR_INVALID, "sequence %d: %d tokens at position %d do not fit (context %d)",
                           i, s->n, s->pos, c->opt.n_ctx);
        const int32_t *blocks = s->blocks;
        if (!blocks) {
            if (s->slot < 0 || s->slot >= c->opt.n_slots || (s->slot + 1) * c->blocks_per_slot > c->n_blocks)
                return err_set(e, ERR_INVALID, "sequence %d: slot %d out of range", i, s->slot);
            for (int k = 0; k < i; k++)
                if (!seqs[k].blocks && seqs[k].slot == s->slot)
                    return err_set(e, ERR_INVALID, "slot %d used twice in one batch", s->slot);
            blocks = c->slot_blocks + (size_t)s->slot * c->blocks_per_slot;
        } else {
            for (int b = 0; b <= (s->pos + s->n - 1) / CPU_KV_BLOCK; b++)
                if (blocks[b] < 0 || blocks[b] >= c->n_blocks)
                    return err_set(e, ERR_INVALID, "sequence %d: KV block %d out of range", i, blocks[b]);
        }
        if (s->n > c->opt.max_tokens - n_tok)
            return err_set(e, ERR_INVALID, "batch has more than %d tokens", c->opt.max_tokens);
        for (int t = 0; t < s->n; t++) {
            if (s->tokens[t] < 0 || s->tokens[t] >= hp->n_vocab)
                return err_set(e, ERR_INVALID, "token id %d out of range [0, %d)", s->tokens[t], hp->n_vocab);
            c->tok_ids[n_tok] = s->tokens[t];
            c->tok_pos[n_tok] = s->pos + t;
            c->tok_blocks[n_tok] = blocks;
            n_tok++;
        }
        c->out_rows[i] = s->want_logits ? n_tok - 1 : -1;
    }
    c->n_tok = n_tok;

    run_stage(c, 0, STAGE_EMBED_NORM);
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *L = &m->layers[il];
        matmul3(c, c->xn, n_tok, 3, L->wq, c->q, L->wk, c->k, L->wv, c->v);
        run_stage(c, il, STAGE_QK_ROPE_KV);
        attn_job aj = {.c = c, .layer = il};
        pool_run(c->pool, attn_worker, &aj);
        matmul3(c, c->att, n_tok, 1, L->wo, c->o, NULL, NULL, NULL, NULL);
        run_stage(c, il, STAGE_ATTN_RESID);
        matmul3(c, c->xn, n_tok, 2, L->w_gate, c->gate, L->w_up, c->up, NULL, NULL);
        run_stage(c, il, STAGE_ACT);
        matmul3(c, c->gate, n_tok, 1, L->w_down, c->o, NULL, NULL, NULL, NULL);
        run_stage(c, il, STAGE_FFN_RESID);
    }

    /* Gather the rows that need logits, in sequence order, then one product. */
    int n_out = 0;
    for (int i = 0; i < n_seqs; i++) {
        if (c->out_rows[i] < 0) continue;
        vec_rmsnorm(c->outx + (size_t)n_out * hp->dim, c->x + (size_t)c->out_rows[i] * hp->dim,
                    f32_ptr(m->output_norm), hp->dim, hp->norm_eps);
        n_out++;
    }
    if (n_out) {
        head_job hj = {.c = c, .n_out = n_out};
        pool_run(c->pool, head_worker, &hj);
        /* logits row r belongs to the r-th sequence that wanted logits; move them
         * to each sequence's own index (descending so nothing is overwritten). */
        int r = n_out - 1;
        for (int i = n_seqs - 1; i >= 0 && r >= 0; i--) {
            if (c->out_rows[i] < 0) continue;
            if (r != i)
                memmove(c->logits + (size_t)i * hp->n_vocab, c->logits + (size_t)r * hp->n_vocab,
                        sizeof(float) * hp->n_vocab);
            r--;
        }
    }
    return 0;
}

int cpu_prefill(cpu_engine *c, int slot, const int32_t *tokens, int n, int pos, err *e) {
    int done = 0;
    while (done < n) {
        int chunk = n - done < c->opt.max_tokens ? n - done : c->opt.max_tokens;
        cpu_seq s = {.tokens = tokens + done, .n = chunk, .pos = pos + done, .slot = slot,
                     .want_logits = done + chunk == n};
        int rc = cpu_forward(c, &s, 1, e);
        if (rc) return rc;
        done += chunk;
    }
    return 0;
}
