/* cpu_attn.c — the CPU KV cache and attention. See cpu.h for the pool layout.
 *
 * KV types (engine_kv_type), each row = one (position, kv head), head_dim elements:
 *   f32   exact: attention matches float32 references bit for bit
 *   f16   IEEE half, round to nearest even (F16C when the build has it)
 *   bf16  bfloat16, round to nearest even
 *   q8    int8 = round(x * 127 / amax), scale = amax / 127 per row
 *   fp8   e4m3 of x * 448 / amax (round to nearest even), scale = amax / 448 per row
 * The CPU is the reference the GPU's KV types are checked against. */
#include <math.h>
#include <string.h>

#if defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "cpu.h"
#include "quant.h"
#include "vec.h"

int cpu_kv_supported(engine_kv_type t) { return (int)t >= 0 && t < ENGINE_KV_COUNT; }

/* Element offset of (kv layer, position) through a block table. */
static size_t kv_off(const engine *c, const int32_t *blocks, int kvl, int pos) {
    const size_t block = (size_t)blocks[pos / CPU_KV_BLOCK];
    return (((size_t)kvl * (size_t)c->lay.n_blocks + block) * CPU_KV_BLOCK + (size_t)(pos % CPU_KV_BLOCK)) *
           (size_t)c->lay.kv_dim;
}

/* One row per head: int8 or fp8 codes of x / scale, scale = amax / qmax. */
static void store_scaled(const engine *c, void *pool, float *scales, size_t off, const float *x, int fp8) {
    const int hd = c->m->hp.head_dim;
    const float qmax = fp8 ? 448.0f : 127.0f;
    for (int h = 0; h < c->lay.kv_dim / hd; h++) {
        const float *xh = x + (size_t)h * hd;
        float amax = 0.0f;
        for (int i = 0; i < hd; i++) amax = fabsf(xh[i]) > amax ? fabsf(xh[i]) : amax;
        const float scale = amax / qmax, inv = amax > 0 ? qmax / amax : 0.0f;
        scales[off / (size_t)hd + (size_t)h] = scale;
        if (fp8) {
            uint8_t *d = (uint8_t *)pool + off + (size_t)h * hd;
            for (int i = 0; i < hd; i++) d[i] = quant_f32_to_fp8_e4m3(xh[i] * inv);
        } else {
            int8_t *d = (int8_t *)pool + off + (size_t)h * hd;
            for (int i = 0; i < hd; i++) d[i] = (int8_t)lrintf(xh[i] * inv);
        }
    }
}

static void kv_store_row(const engine *c, void *pool, float *scales, size_t off, const float *x) {
    const int n = c->lay.kv_dim;
    switch (c->opt.kv_type) {
    case ENGINE_KV_Q8: store_scaled(c, pool, scales, off, x, 0); break;
    case ENGINE_KV_FP8: store_scaled(c, pool, scales, off, x, 1); break;
    case ENGINE_KV_F16: {
        uint16_t *d = (uint16_t *)pool + off;
        int i = 0;
#ifdef __F16C__
        for (; i + 8 <= n; i += 8)
            _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
#endif
        for (; i < n; i++) d[i] = quant_f32_to_f16(x[i]);
        break;
    }
    case ENGINE_KV_BF16: {
        uint16_t *d = (uint16_t *)pool + off;
        for (int i = 0; i < n; i++) d[i] = quant_f32_to_bf16(x[i]);
        break;
    }
    default: memcpy((float *)pool + off, x, sizeof(float) * (size_t)n); break;
    }
}

void cpu_kv_store(engine *c, int layer, int t) {
    const size_t off = kv_off(c, c->tok_blocks[t], c->kv_layer[layer], c->tok_pos[t]);
    kv_store_row(c, c->k_pool, c->k_scale, off, c->k + (size_t)t * c->lay.kv_dim);
    kv_store_row(c, c->v_pool, c->v_scale, off, c->v + (size_t)t * c->lay.kv_dim);
}

#ifdef __AVX2__
static float hsum256(__m256 acc) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}
#endif

/* q . k for an int8 key row of n elements (times its scale outside) */
static float dot_i8(const float *q, const int8_t *k, int n) {
    int i = 0;
    float s = 0.0f;
#ifdef __AVX2__
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i),
                              _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(k + i)))), acc);
    s = hsum256(acc);
#endif
    for (; i < n; i++) s += q[i] * (float)k[i];
    return s;
}

static void axpy_i8(float *y, float a, const int8_t *v, int n) {
    for (int i = 0; i < n; i++) y[i] += a * (float)v[i];
}

/* q . k for an fp8 key row (times its scale outside) */
static float dot_fp8(const float *q, const uint8_t *k, const float *lut, int n) {
    int i = 0;
    float s = 0.0f;
#ifdef __AVX2__
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(k + i)));
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_i32gather_ps(lut, idx, 4), acc);
    }
    s = hsum256(acc);
#endif
    for (; i < n; i++) s += q[i] * lut[k[i]];
    return s;
}

static void axpy_fp8(float *y, float a, const uint8_t *v, const float *lut, int n) {
    for (int i = 0; i < n; i++) y[i] += a * lut[v[i]];
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

/* q . k for a bf16 key row: a bf16 is the top half of an f32 */
static float dot_bf16(const float *q, const uint16_t *k, int n) {
    int i = 0;
    float s = 0.0f;
#ifdef __AVX2__
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(k + i))), 16);
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_castsi256_ps(w), acc);
    }
    s = hsum256(acc);
#endif
    for (; i < n; i++) s += q[i] * quant_bf16_to_f32(k[i]);
    return s;
}

static void axpy_bf16(float *y, float a, const uint16_t *v, int n) {
    for (int i = 0; i < n; i++) y[i] += a * quant_bf16_to_f32(v[i]);
}

/* ---- attention: one (token, head) pair at a time, split over threads ---- */

typedef struct attn_job {
    engine *c;
    int layer;
} attn_job;

static void attn_worker(void *arg, int ith, int nth) {
    attn_job *j = arg;
    engine *c = j->c;
    const model_hparams *hp = &c->m->hp;
    const model_attention *A = &c->m->layers[j->layer].attn;
    const int kvl = c->kv_layer[j->layer];
    const int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    const engine_kv_type kt = c->opt.kv_type;
    const float *sinks = A->sinks ? (const float *)A->sinks->data : NULL;
    float *p = c->scores + (size_t)ith * c->opt.n_ctx;
    long lo, hi;
    pool_split((long)c->n_tok * hp->n_head, ith, nth, 1, &lo, &hi);
    for (long w = lo; w < hi; w++) {
        const int t = (int)(w / hp->n_head), h = (int)(w % hp->n_head), hk = h / group;
        const int pos = c->tok_pos[t];
        const int32_t *blocks = c->tok_blocks[t];
        int first = 0;
        if (A->window > 0 && pos - A->window + 1 > 0) first = pos - A->window + 1;
        const float *qh = c->q + (size_t)t * c->lay.q_dim + (size_t)h * hd;
        float mx = -INFINITY;
        for (int s = first; s <= pos; s++) {
            const size_t off = kv_off(c, blocks, kvl, s) + (size_t)hk * hd;
            float d;
            switch (kt) {
            case ENGINE_KV_Q8: d = dot_i8(qh, (const int8_t *)c->k_pool + off, hd) * c->k_scale[off / (size_t)hd]; break;
            case ENGINE_KV_FP8:
                d = dot_fp8(qh, (const uint8_t *)c->k_pool + off, c->fp8_lut, hd) * c->k_scale[off / (size_t)hd];
                break;
            case ENGINE_KV_F16: d = dot_f16(qh, (const uint16_t *)c->k_pool + off, hd); break;
            case ENGINE_KV_BF16: d = dot_bf16(qh, (const uint16_t *)c->k_pool + off, hd); break;
            default: d = vec_dot(qh, (const float *)c->k_pool + off, hd); break;
            }
            const float sc = d * A->scale;
            p[s] = sc;
            if (sc > mx) mx = sc;
        }
        /* a sink is one more logit in the softmax with no value behind it */
        if (sinks && sinks[h] > mx) mx = sinks[h];
        float sum = 0.0f;
        for (int s = first; s <= pos; s++) {
            p[s] = expf(p[s] - mx);
            sum += p[s];
        }
        if (sinks) sum += expf(sinks[h] - mx);
        const float inv = 1.0f / sum;
        float *out = c->att + (size_t)t * c->lay.q_dim + (size_t)h * hd;
        memset(out, 0, sizeof(float) * hd);
        for (int s = first; s <= pos; s++) {
            const size_t off = kv_off(c, blocks, kvl, s) + (size_t)hk * hd;
            switch (kt) {
            case ENGINE_KV_Q8:
                axpy_i8(out, p[s] * inv * c->v_scale[off / (size_t)hd], (const int8_t *)c->v_pool + off, hd);
                break;
            case ENGINE_KV_FP8:
                axpy_fp8(out, p[s] * inv * c->v_scale[off / (size_t)hd], (const uint8_t *)c->v_pool + off, c->fp8_lut,
                         hd);
                break;
            case ENGINE_KV_F16: axpy_f16(out, p[s] * inv, (const uint16_t *)c->v_pool + off, hd); break;
            case ENGINE_KV_BF16: axpy_bf16(out, p[s] * inv, (const uint16_t *)c->v_pool + off, hd); break;
            default: vec_axpy(out, p[s] * inv, (const float *)c->v_pool + off, hd); break;
            }
        }
    }
}

void cpu_attention(engine *c, int layer) {
    attn_job aj = {.c = c, .layer = layer};
    pool_run(c->pool, attn_worker, &aj);
}
