/* quant.c — dequantization, dot products and the row-parallel matmul for the
 * ggml block formats the CPU engine computes with (see quant.h).
 *
 * Three layers per type:
 *   dq_*   block dequantization, bit-exact with the gguf package (and ggml):
 *          every product and sum is a separate, correctly rounded f32 operation
 *          in the same order as the reference. This relies on the compiler not
 *          contracting a*b+c into an FMA, which -std=c11 guarantees for GCC
 *          (-ffp-contract=off); clang is told below.
 *   dot_*  fused dequant+dot of one row against f32 activations (the T=1 /
 *          token-generation path): no scratch, several independent
 *          accumulators; AVX2+FMA where available.
 *   mm_*   T>1 (prompt processing): a tile of weight rows is dequantized once
 *          into caller scratch and a register-blocked f32 micro-kernel runs it
 *          against every activation row, so FMAs dominate.
 *
 * Block layouts (byte offsets inside one block; f16 = IEEE half, little endian):
 *   Q4_0  (32 el, 18 B)  d:f16 | qs[16]: el j = lo nibble of qs[j], el j+16 = hi; y = d*(q-8)
 *   Q4_1  (32 el, 20 B)  d:f16 m:f16 | qs[16]; y = d*q + m
 *   Q5_0  (32 el, 22 B)  d:f16 | qh:u32 (bit j = 5th bit of el j) | qs[16]; y = d*(q-16)
 *   Q5_1  (32 el, 24 B)  d:f16 m:f16 | qh:u32 | qs[16]; y = d*q + m
 *   Q8_0  (32 el, 34 B)  d:f16 | qs:i8[32]; y = q*d
 *   Q4_K  (256 el, 144 B) d:f16 dmin:f16 | scales[12] (8x 6-bit scale + 8x 6-bit
 *         min) | qs[128]: 4 groups of 32 bytes, sub-block 2g = lo nibbles of
 *         group g, 2g+1 = hi nibbles; y = (d*sc)*q - (dmin*m)
 *   Q5_K  (256 el, 176 B) as Q4_K plus qh[32] before qs: bit i of qh[l] is the
 *         5th bit of element l of sub-block i
 *   Q6_K  (256 el, 210 B) ql[128] | qh[64] | scales:i8[16] | d:f16; two halves
 *         of 128 el; y = (d*sc[el/16])*(q-32)
 *   MXFP4 (32 el, 17 B)  e:E8M0 | qs[16] (E2M1 codes, lo/hi nibble as Q4_0);
 *         y = e8m0_half(e) * kvalue(code)
 */
#include "quant.h"

#include <math.h>
#include <string.h>

#ifdef __AVX2__
#include <immintrin.h>
#endif

#if defined(__clang__)
#pragma clang fp contract(off)
#endif

#define QK_K 256

/* ---------------------------------------------------------------- f16/bf16 */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Exact for every input, NaN payloads included (numpy widens halves the same
 * way, so F16 tensors dequantize bit-for-bit like the gguf package). */
float quant_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24 is exact in f32 */
        float v = (float)man * 0x1p-24f;
        return bits_f32(sign | f32_bits(v));
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t quant_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {
        /* result is subnormal (or zero): scale so the half ulp (2^-24) becomes
         * one integer step, then round to nearest even by hand. */
        if (a < 0x33000000u) return sign; /* below half the smallest subnormal */
        uint32_t e = a >> 23;             /* 102..112 */
        uint32_t m = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* value = m * 2^(e-150); want units of 2^-24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    /* normal: rebias, round the 13 dropped bits to nearest even; a carry out of
     * the mantissa correctly bumps the exponent (up to inf). */
    uint32_t r = a - (112u << 23);
    uint32_t q = r >> 13;
    uint32_t rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;
    return (uint16_t)(sign | q);
}

float quant_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t quant_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040); /* NaN stays a quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

/* FP8 E4M3 (OCP "fn" variant, as in CUDA's __nv_fp8_e4m3): bias 7, no infinities,
 * S.1111.111 is NaN, max finite 448, smallest subnormal 2^-9. */
float quant_fp8_e4m3_to_f32(uint8_t b) {
    const uint32_t sign = (uint32_t)(b & 0x80) << 24;
    const uint32_t exp = (b >> 3) & 0xf, man = b & 7;
    if (exp == 0xf && man == 7) return bits_f32(sign | 0x7fc00000u);
    if (exp == 0) return bits_f32(sign | f32_bits((float)man * 0x1p-9f)); /* subnormal: exact */
    return bits_f32(sign | ((exp + 120) << 23) | (man << 20));
}

uint8_t quant_f32_to_fp8_e4m3(float f) {
    const uint32_t u = f32_bits(f);
    const uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint8_t)(sign | 0x7f);  /* NaN */
    if (a >= 0x43e80000u) return (uint8_t)(sign | 0x7e); /* >= 464 (and inf): saturate to 448 */
    if (a < 0x3c800000u) {
        /* below 2^-6: subnormal steps of 2^-9; round to nearest even */
        const float v = bits_f32(a) * 0x1p9f; /* exact: a power-of-two scale */
        uint32_t q = (uint32_t)v;
        const float r = v - (float)q;
        if (r > 0.5f || (r == 0.5f && (q & 1))) q++;
        return (uint8_t)(sign | q); /* q == 8 is the smallest normal, 0.0001.000: correct */
    }
    /* normal: keep 3 mantissa bits, round to nearest even on the 20 dropped bits */
    uint32_t r = a + 0x7ffffu + ((a >> 20) & 1);
    const uint32_t e = (r >> 23) - 120, m = (r >> 20) & 7;
    return (uint8_t)(sign | (e << 3) | m);
}

/* Block scales: finite in any real file, so the hardware converter (which
 * quiets signalling NaNs) is as exact as the bit version where it matters. */
static inline float ld_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
#ifdef __F16C__
    return _cvtsh_ss(h);
#else
    return quant_f16_to_f32(h);
#endif
}

/* 2^(e-127) / 2: MXFP4's code table is doubled so the half folds in here.
 * e < 2 lands on f32 subnormals (2^-128, 2^-127). */
static inline float e8m0_half(uint8_t e) {
    return bits_f32(e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23);
}

static const int8_t mxfp4_kvalues[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* 6-bit scale and min of sub-block j of a Q4_K/Q5_K block. */
static inline void kscale_min(const uint8_t *s, int j, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* ------------------------------------------------ scalar block dequantizers */

typedef void dq_fn(const uint8_t *src, float *y, int64_t nblocks);

/* With AVX2 the SIMD versions below replace these; they stay compiled as the
 * portable path's code (built and tested without -march on x86 too). */
#ifdef __AVX2__
#define DQ_SCALAR static __attribute__((unused))
#else
#define DQ_SCALAR static
#endif

static void dq_f32(const uint8_t *src, float *y, int64_t n) { memcpy(y, src, (size_t)n * 4); }

static void dq_f16(const uint8_t *src, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        y[i] = quant_f16_to_f32(h);
    }
}

static void dq_bf16(const uint8_t *src, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        y[i] = quant_bf16_to_f32(h);
    }
}

DQ_SCALAR void dq_q4_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 18, y += 32) {
        float d = ld_f16(b);
        const uint8_t *qs = b + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)((qs[j] & 0xf) - 8);
            y[j + 16] = d * (float)((qs[j] >> 4) - 8);
        }
    }
}

DQ_SCALAR void dq_q4_1(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 20, y += 32) {
        float d = ld_f16(b), m = ld_f16(b + 2);
        const uint8_t *qs = b + 4;
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)(qs[j] & 0xf) + m;
            y[j + 16] = d * (float)(qs[j] >> 4) + m;
        }
    }
}

DQ_SCALAR void dq_q5_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 22, y += 32) {
        float d = ld_f16(b);
        uint32_t qh;
        memcpy(&qh, b + 2, 4);
        const uint8_t *qs = b + 6;
        for (int j = 0; j < 16; j++) {
            int q0 = (qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4);
            int q1 = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = d * (float)(q0 - 16);
            y[j + 16] = d * (float)(q1 - 16);
        }
    }
}

DQ_SCALAR void dq_q5_1(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 24, y += 32) {
        float d = ld_f16(b), m = ld_f16(b + 2);
        uint32_t qh;
        memcpy(&qh, b + 4, 4);
        const uint8_t *qs = b + 8;
        for (int j = 0; j < 16; j++) {
            int q0 = (qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4);
            int q1 = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = d * (float)q0 + m;
            y[j + 16] = d * (float)q1 + m;
        }
    }
}

DQ_SCALAR void dq_q8_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 34, y += 32) {
        float d = ld_f16(b);
        const int8_t *qs = (const int8_t *)(b + 2);
        for (int j = 0; j < 32; j++) y[j] = (float)qs[j] * d;
    }
}

DQ_SCALAR void dq_q4_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 144, y += QK_K) {
        float d = ld_f16(b), dmin = ld_f16(b + 2);
        const uint8_t *sc = b + 4, *qs = b + 16;
        for (int j = 0; j < 8; j++) {
            uint8_t s, m;
            kscale_min(sc, j, &s, &m);
            float ds = d * (float)s, dm = dmin * (float)m;
            const uint8_t *q = qs + 32 * (j / 2);
            int sh = 4 * (j & 1);
            for (int l = 0; l < 32; l++) y[32 * j + l] = ds * (float)((q[l] >> sh) & 0xf) - dm;
        }
    }
}

DQ_SCALAR void dq_q5_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 176, y += QK_K) {
        float d = ld_f16(b), dmin = ld_f16(b + 2);
        const uint8_t *sc = b + 4, *qh = b + 16, *qs = b + 48;
        for (int j = 0; j < 8; j++) {
            uint8_t s, m;
            kscale_min(sc, j, &s, &m);
            float ds = d * (float)s, dm = dmin * (float)m;
            const uint8_t *q = qs + 32 * (j / 2);
            int sh = 4 * (j & 1);
            for (int l = 0; l < 32; l++) {
                int v = ((q[l] >> sh) & 0xf) | (((qh[l] >> j) & 1) << 4);
                y[32 * j + l] = ds * (float)v - dm;
            }
        }
    }
}

DQ_SCALAR void dq_q6_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 210, y += QK_K) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = ld_f16(b + 208);
        for (int h = 0; h < 2; h++) {
            float *yy = y + 128 * h;
            const uint8_t *l0 = ql + 64 * h, *h0 = qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                int q1 = ((l0[l] & 0xf) | ((h0[l] & 3) << 4)) - 32;
                int q2 = ((l0[l + 32] & 0xf) | (((h0[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((l0[l] >> 4) | (((h0[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((l0[l + 32] >> 4) | (((h0[l] >> 6) & 3) << 4)) - 32;
                const int8_t *s = sc + 8 * h;
                yy[l] = (d * (float)s[l / 16]) * (float)q1;
                yy[l + 32] = (d * (float)s[2 + l / 16]) * (float)q2;
                yy[l + 64] = (d * (float)s[4 + l / 16]) * (float)q3;
                yy[l + 96] = (d * (float)s[6 + l / 16]) * (float)q4;
            }
        }
    }
}

DQ_SCALAR void dq_mxfp4(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 17, y += 32) {
        float d = e8m0_half(b[0]);
        const uint8_t *qs = b + 1;
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)mxfp4_kvalues[qs[j] & 0xf];
            y[j + 16] = d * (float)mxfp4_kvalues[qs[j] >> 4];
        }
    }
}

/* ------------------------------------------------------------ type table */

typedef float dot_fn(const uint8_t *row, const float *x, int64_t nblocks);

typedef struct qkern {
    int32_t be, bb; /* elements, bytes per block */
    dq_fn *dq;
    dot_fn *dot; /* NULL: generic dequant-to-stack dot */
} qkern;

static float dot_f32(const uint8_t *row, const float *x, int64_t n);
#ifdef __AVX2__
static float dot_f16_avx2(const uint8_t *row, const float *x, int64_t n);
static float dot_bf16_avx2(const uint8_t *row, const float *x, int64_t n);
static float dot_q4_0_avx2(const uint8_t *row, const float *x, int64_t nb);
static float dot_q4_1_avx2(const uint8_t *row, const float *x, int64_t nb);
static float dot_q5_0_avx2(const uint8_t *row, const float *x, int64_t nb);
static float dot_q5_1_avx2(const uint8_t *row, const float *x, int64_t nb);
static float dot_q8_0_avx2(const uint8_t *row, const float *x, int64_t nb);
static float dot_q4_k_avx2(const uint8_t *row, const float *x, int64_t nb);
static float dot_q5_k_avx2(const uint8_t *row, const float *x, int64_t nb);
static float dot_q6_k_avx2(const uint8_t *row, const float *x, int64_t nb);
static float dot_mxfp4_avx2(const uint8_t *row, const float *x, int64_t nb);
#define AVX(f) f
#else
#define AVX(f) 0
#endif

#ifdef __AVX2__
static dq_fn dqv_f16, dqv_bf16, dqv_q4_0, dqv_q4_1, dqv_q5_0, dqv_q5_1, dqv_q8_0, dqv_q4_k, dqv_q5_k,
    dqv_q6_k, dqv_mxfp4;
#define DQ(f) dqv_##f
#else
#define DQ(f) dq_##f
#endif

static const qkern *kern_of(uint32_t type) {
    static const qkern k_f32 = {1, 4, dq_f32, dot_f32};
    static const qkern k_f16 = {1, 2, DQ(f16), AVX(dot_f16_avx2)};
    static const qkern k_bf16 = {1, 2, DQ(bf16), AVX(dot_bf16_avx2)};
    static const qkern k_q4_0 = {32, 18, DQ(q4_0), AVX(dot_q4_0_avx2)};
    static const qkern k_q4_1 = {32, 20, DQ(q4_1), AVX(dot_q4_1_avx2)};
    static const qkern k_q5_0 = {32, 22, DQ(q5_0), AVX(dot_q5_0_avx2)};
    static const qkern k_q5_1 = {32, 24, DQ(q5_1), AVX(dot_q5_1_avx2)};
    static const qkern k_q8_0 = {32, 34, DQ(q8_0), AVX(dot_q8_0_avx2)};
    static const qkern k_q4_k = {256, 144, DQ(q4_k), AVX(dot_q4_k_avx2)};
    static const qkern k_q5_k = {256, 176, DQ(q5_k), AVX(dot_q5_k_avx2)};
    static const qkern k_q6_k = {256, 210, DQ(q6_k), AVX(dot_q6_k_avx2)};
    static const qkern k_mxfp4 = {32, 17, DQ(mxfp4), AVX(dot_mxfp4_avx2)};
    switch (type) {
    case QUANT_F32: return &k_f32;
    case QUANT_F16: return &k_f16;
    case QUANT_BF16: return &k_bf16;
    case QUANT_Q4_0: return &k_q4_0;
    case QUANT_Q4_1: return &k_q4_1;
    case QUANT_Q5_0: return &k_q5_0;
    case QUANT_Q5_1: return &k_q5_1;
    case QUANT_Q8_0: return &k_q8_0;
    case QUANT_Q4_K: return &k_q4_k;
    case QUANT_Q5_K: return &k_q5_k;
    case QUANT_Q6_K: return &k_q6_k;
    case QUANT_MXFP4: return &k_mxfp4;
    default: return 0;
    }
}

/* ------------------------------------------------------------ dequant API */

/* Types the CPU does not compute with (the loader checks cpu_supported first)
 * come out as NaN rather than garbage, so a missed check is loud. */
void quant_dequant_row(uint32_t type, const void *src, float *dst, int64_t n) {
    const qkern *k = kern_of(type);
    if (!k || n <= 0 || n % k->be) {
        for (int64_t i = 0; i < n; i++) dst[i] = NAN;
        return;
    }
    k->dq((const uint8_t *)src, dst, n / k->be);
}

/* ---------------------------------------------------------- portable dots */

/* Eight independent lanes: the loop shape compilers vectorize on any ISA, and
 * the summation order callers of the scalar path see. */
static float dot_f32_lanes(const float *a, const float *x, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] += a[i + l] * x[i + l];
    float s = 0;
    for (; i < n; i++) s += a[i] * x[i];
    return s + ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

#ifdef __AVX2__
static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

static float dot_f32(const uint8_t *row, const float *x, int64_t n) {
#ifdef __AVX2__
    const float *w = (const float *)(const void *)row;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
#else
    /* row may be unaligned for f32 only if the caller's row stride is odd; copy
     * through a small stack buffer to stay within C's aliasing rules. */
    float buf[256], s = 0;
    for (int64_t i = 0; i < n; i += 256) {
        int64_t m = n - i < 256 ? n - i : 256;
        memcpy(buf, row + 4 * i, (size_t)m * 4);
        s += dot_f32_lanes(buf, x + i, m);
    }
    return s;
#endif
}

/* Dequantize up to 256 elements at a time onto the stack and dot them. */
static float dot_generic(const qkern *k, const uint8_t *row, const float *x, int64_t n) {
    float buf[QK_K], s = 0;
    int64_t per = QK_K / k->be; /* blocks per chunk */
    for (int64_t i = 0; i < n; i += QK_K) {
        int64_t m = n - i < QK_K ? n - i : QK_K;
        int64_t nb = m / k->be;
        if (nb > per) nb = per;
        k->dq(row + (i / k->be) * k->bb, buf, nb);
        s += dot_f32_lanes(buf, x + i, m);
    }
    return s;
}

float quant_dot_row(uint32_t type, const void *row, const float *x, int64_t n) {
    const qkern *k = kern_of(type);
    if (!k || n <= 0 || n % k->be) return NAN;
    if (k->dot) return k->dot((const uint8_t *)row, x, k->be == 1 ? n : n / k->be);
    return dot_generic(k, (const uint8_t *)row, x, n);
}

/* ------------------------------------------------------------- AVX2 dots */

#ifdef __AVX2__

/* 8 bytes -> 8 floats */
static inline __m256 cvt_i8x8(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }
static inline __m256 cvt_u8x8(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }

/* acc[0..3] += w(32 int8 codes in q, times per-block d) * x[0..32) */
static inline void fma32_i8(__m256i q, __m256 d, const float *x, __m256 acc[4]) {
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    acc[0] = _mm256_fmadd_ps(_mm256_mul_ps(cvt_i8x8(lo), d), _mm256_loadu_ps(x), acc[0]);
    acc[1] = _mm256_fmadd_ps(_mm256_mul_ps(cvt_i8x8(_mm_srli_si128(lo, 8)), d),
                             _mm256_loadu_ps(x + 8), acc[1]);
    acc[2] = _mm256_fmadd_ps(_mm256_mul_ps(cvt_i8x8(hi), d), _mm256_loadu_ps(x + 16), acc[2]);
    acc[3] = _mm256_fmadd_ps(_mm256_mul_ps(cvt_i8x8(_mm_srli_si128(hi, 8)), d),
                             _mm256_loadu_ps(x + 24), acc[3]);
}

/* acc[0..3] += (d*q + m) * x over 32 unsigned codes */
static inline void fma32_u8_dm(__m256i q, __m256 d, __m256 m, const float *x, __m256 acc[4]) {
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    acc[0] = _mm256_fmadd_ps(_mm256_fmadd_ps(cvt_u8x8(lo), d, m), _mm256_loadu_ps(x), acc[0]);
    acc[1] = _mm256_fmadd_ps(_mm256_fmadd_ps(cvt_u8x8(_mm_srli_si128(lo, 8)), d, m),
                             _mm256_loadu_ps(x + 8), acc[1]);
    acc[2] = _mm256_fmadd_ps(_mm256_fmadd_ps(cvt_u8x8(hi), d, m), _mm256_loadu_ps(x + 16), acc[2]);
    acc[3] = _mm256_fmadd_ps(_mm256_fmadd_ps(cvt_u8x8(_mm_srli_si128(hi, 8)), d, m),
                             _mm256_loadu_ps(x + 24), acc[3]);
}

static inline float hsum4(__m256 acc[4]) {
    return hsum256(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

/* 16 bytes of nibbles -> 32 bytes: lo nibbles in the low lane (elements
 * 0..15), hi nibbles in the high lane (16..31): the Q4_0 element order. */
static inline __m256i nibbles32(const uint8_t *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i m = _mm_set1_epi8(0xf);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

/* 32 bits -> 32 bytes, byte j = 0x10 if bit j is set (Q5's fifth bit). */
static inline __m256i bits32_to_0x10(uint32_t bits) {
    __m256i v = _mm256_set1_epi32((int)bits);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    v = _mm256_shuffle_epi8(v, shuf);
    const __m256i bit = _mm256_set1_epi64x((int64_t)0x8040201008040201ull);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* Dot of a row of n 16-bit floats (bf16 = 0: IEEE f16, 1: bfloat16) with x. Always
 * called with a constant bf16, so each caller compiles to its own loop. */
static inline float dot_16bit_avx2(const uint8_t *row, const float *x, int64_t n, const int bf16) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 w0, w1;
        if (bf16) {
            __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(row + 2 * i));
            w0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(h)), 16));
            w1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1)), 16));
        } else {
            w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(row + 2 * i)));
            w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(row + 2 * i + 16)));
        }
        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, row + 2 * i, 2);
        s += (bf16 ? quant_bf16_to_f32(h) : quant_f16_to_f32(h)) * x[i];
    }
    return s;
}

static float dot_f16_avx2(const uint8_t *row, const float *x, int64_t n) { return dot_16bit_avx2(row, x, n, 0); }
static float dot_bf16_avx2(const uint8_t *row, const float *x, int64_t n) { return dot_16bit_avx2(row, x, n, 1); }

static float dot_q8_0_avx2(const uint8_t *b, const float *x, int64_t nb) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < nb; i++, b += 34, x += 32) {
        /* sign-extend straight from memory: saves the shuffle-port uops of
         * splitting a 32-byte register, the bottleneck of this loop */
        __m256 d = _mm256_set1_ps(ld_f16(b));
        for (int c = 0; c < 4; c++) {
            __m128i q8 = _mm_loadl_epi64((const __m128i *)(const void *)(b + 2 + 8 * c));
            __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8));
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(q, d), _mm256_loadu_ps(x + 8 * c), acc[c]);
        }
    }
    return hsum4(acc);
}

static float dot_q4_0_avx2(const uint8_t *b, const float *x, int64_t nb) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const __m256i off = _mm256_set1_epi8(8);
    for (int64_t i = 0; i < nb; i++, b += 18, x += 32) {
        __m256 d = _mm256_set1_ps(ld_f16(b));
        __m256i q = _mm256_sub_epi8(nibbles32(b + 2), off);
        fma32_i8(q, d, x, acc);
    }
    return hsum4(acc);
}

static float dot_q4_1_avx2(const uint8_t *b, const float *x, int64_t nb) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < nb; i++, b += 20, x += 32) {
        __m256 d = _mm256_set1_ps(ld_f16(b)), m = _mm256_set1_ps(ld_f16(b + 2));
        fma32_u8_dm(nibbles32(b + 4), d, m, x, acc);
    }
    return hsum4(acc);
}

static float dot_q5_0_avx2(const uint8_t *b, const float *x, int64_t nb) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const __m256i off = _mm256_set1_epi8(16);
    for (int64_t i = 0; i < nb; i++, b += 22, x += 32) {
        __m256 d = _mm256_set1_ps(ld_f16(b));
        uint32_t qh;
        memcpy(&qh, b + 2, 4);
        __m256i q = _mm256_or_si256(nibbles32(b + 6), bits32_to_0x10(qh));
        fma32_i8(_mm256_sub_epi8(q, off), d, x, acc);
    }
    return hsum4(acc);
}

static float dot_q5_1_avx2(const uint8_t *b, const float *x, int64_t nb) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < nb; i++, b += 24, x += 32) {
        __m256 d = _mm256_set1_ps(ld_f16(b)), m = _mm256_set1_ps(ld_f16(b + 2));
        uint32_t qh;
        memcpy(&qh, b + 4, 4);
        __m256i q = _mm256_or_si256(nibbles32(b + 8), bits32_to_0x10(qh));
        fma32_u8_dm(q, d, m, x, acc);
    }
    return hsum4(acc);
}

static float dot_mxfp4_avx2(const uint8_t *b, const float *x, int64_t nb) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)mxfp4_kvalues));
    for (int64_t i = 0; i < nb; i++, b += 17, x += 32) {
        __m256 d = _mm256_set1_ps(e8m0_half(b[0]));
        __m256i q = _mm256_shuffle_epi8(lut, nibbles32(b + 1));
        fma32_i8(q, d, x, acc);
    }
    return hsum4(acc);
}

static float dot_q4_k_avx2(const uint8_t *b, const float *x, int64_t nb) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < nb; i++, b += 144, x += QK_K) {
        float d = ld_f16(b), dmin = ld_f16(b + 2);
        const uint8_t *qs = b + 16;
        for (int g = 0; g < 4; g++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * g));
            __m256i lo = _mm256_and_si256(v, _mm256_set1_epi8(0xf));
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0xf));
            uint8_t s0, m0, s1, m1;
            kscale_min(b + 4, 2 * g, &s0, &m0);
            kscale_min(b + 4, 2 * g + 1, &s1, &m1);
            fma32_u8_dm(lo, _mm256_set1_ps(d * (float)s0), _mm256_set1_ps(-(dmin * (float)m0)),
                        x + 64 * g, acc);
            fma32_u8_dm(hi, _mm256_set1_ps(d * (float)s1), _mm256_set1_ps(-(dmin * (float)m1)),
                        x + 64 * g + 32, acc);
        }
    }
    return hsum4(acc);
}

static float dot_q5_k_avx2(const uint8_t *b, const float *x, int64_t nb) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < nb; i++, b += 176, x += QK_K) {
        float d = ld_f16(b), dmin = ld_f16(b + 2);
        const uint8_t *qs = b + 48;
        __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(b + 16));
        for (int g = 0; g < 4; g++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * g));
            __m256i lo = _mm256_and_si256(v, _mm256_set1_epi8(0xf));
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0xf));
            /* bit 2g of qh[l] -> 0x10 for lo, bit 2g+1 for hi */
            __m256i h0 = _mm256_and_si256(_mm256_slli_epi16(qh, 4), _mm256_set1_epi8(0x10));
            __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(qh, 3), _mm256_set1_epi8(0x10));
            qh = _mm256_srli_epi16(qh, 2);
            uint8_t s0, m0, s1, m1;
            kscale_min(b + 4, 2 * g, &s0, &m0);
            kscale_min(b + 4, 2 * g + 1, &s1, &m1);
            fma32_u8_dm(_mm256_or_si256(lo, h0), _mm256_set1_ps(d * (float)s0),
                        _mm256_set1_ps(-(dmin * (float)m0)), x + 64 * g, acc);
            fma32_u8_dm(_mm256_or_si256(hi, h1), _mm256_set1_ps(d * (float)s1),
                        _mm256_set1_ps(-(dmin * (float)m1)), x + 64 * g + 32, acc);
        }
    }
    return hsum4(acc);
}

/* acc += q * x where q's 32 elements split into two 16-element halves with
 * their own scale (Q6_K's sub-block of 16). */
static inline void fma32_i8_2s(__m256i q, __m256 d0, __m256 d1, const float *x, __m256 acc[4]) {
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    acc[0] = _mm256_fmadd_ps(_mm256_mul_ps(cvt_i8x8(lo), d0), _mm256_loadu_ps(x), acc[0]);
    acc[1] = _mm256_fmadd_ps(_mm256_mul_ps(cvt_i8x8(_mm_srli_si128(lo, 8)), d0),
                             _mm256_loadu_ps(x + 8), acc[1]);
    acc[2] = _mm256_fmadd_ps(_mm256_mul_ps(cvt_i8x8(hi), d1), _mm256_loadu_ps(x + 16), acc[2]);
    acc[3] = _mm256_fmadd_ps(_mm256_mul_ps(cvt_i8x8(_mm_srli_si128(hi, 8)), d1),
                             _mm256_loadu_ps(x + 24), acc[3]);
}

static float dot_q6_k_avx2(const uint8_t *b, const float *x, int64_t nb) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const __m256i m4 = _mm256_set1_epi8(0xf), m3 = _mm256_set1_epi8(0x30), off = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < nb; i++, b += 210, x += QK_K) {
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = ld_f16(b + 208);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b + 64 * h, *qhp = b + 128 + 32 * h;
            const int8_t *s = sc + 8 * h;
            const float *xx = x + 128 * h;
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(const void *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(const void *)(ql + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)qhp);
            __m256i q1 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m3));
            __m256i q2 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m3));
            __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m3));
            __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                         _mm256_and_si256(_mm256_srli_epi16(qh, 2), m3));
            fma32_i8_2s(_mm256_sub_epi8(q1, off), _mm256_set1_ps(d * (float)s[0]), _mm256_set1_ps(d * (float)s[1]), xx, acc);
            fma32_i8_2s(_mm256_sub_epi8(q2, off), _mm256_set1_ps(d * (float)s[2]), _mm256_set1_ps(d * (float)s[3]), xx + 32, acc);
            fma32_i8_2s(_mm256_sub_epi8(q3, off), _mm256_set1_ps(d * (float)s[4]), _mm256_set1_ps(d * (float)s[5]), xx + 64, acc);
            fma32_i8_2s(_mm256_sub_epi8(q4, off), _mm256_set1_ps(d * (float)s[6]), _mm256_set1_ps(d * (float)s[7]), xx + 96, acc);
        }
    }
    return hsum4(acc);
}


/* SIMD dequantizers: same operations in the same order as the scalar ones
 * (a product, then a separate add/sub; never an FMA), so still bit-exact. */
static inline void st32_i8(__m256i q, __m256 d, float *y) {
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y, _mm256_mul_ps(d, cvt_i8x8(lo)));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, cvt_i8x8(_mm_srli_si128(lo, 8))));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(d, cvt_i8x8(hi)));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(d, cvt_i8x8(_mm_srli_si128(hi, 8))));
}
/* y = d*q + m, or d*q - m when sub (Q4_K/Q5_K): adding -m instead would
 * differ from the reference in the sign of an exact zero. */
static inline void st32_u8_dm(__m256i q, __m256 d, __m256 m, int sub, float *y) {
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    __m256 v[4] = {_mm256_mul_ps(d, cvt_u8x8(lo)), _mm256_mul_ps(d, cvt_u8x8(_mm_srli_si128(lo, 8))),
                   _mm256_mul_ps(d, cvt_u8x8(hi)), _mm256_mul_ps(d, cvt_u8x8(_mm_srli_si128(hi, 8)))};
    for (int i = 0; i < 4; i++) _mm256_storeu_ps(y + 8 * i, sub ? _mm256_sub_ps(v[i], m) : _mm256_add_ps(v[i], m));
}

static void dqv_q8_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 34, y += 32)
        st32_i8(_mm256_loadu_si256((const __m256i *)(const void *)(b + 2)), _mm256_set1_ps(ld_f16(b)), y);
}
static void dqv_q4_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 18, y += 32)
        st32_i8(_mm256_sub_epi8(nibbles32(b + 2), _mm256_set1_epi8(8)), _mm256_set1_ps(ld_f16(b)), y);
}
static void dqv_q4_1(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 20, y += 32)
        st32_u8_dm(nibbles32(b + 4), _mm256_set1_ps(ld_f16(b)), _mm256_set1_ps(ld_f16(b + 2)), 0, y);
}
static void dqv_q5_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 22, y += 32) {
        uint32_t qh;
        memcpy(&qh, b + 2, 4);
        __m256i q = _mm256_or_si256(nibbles32(b + 6), bits32_to_0x10(qh));
        st32_i8(_mm256_sub_epi8(q, _mm256_set1_epi8(16)), _mm256_set1_ps(ld_f16(b)), y);
    }
}
static void dqv_q5_1(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 24, y += 32) {
        uint32_t qh;
        memcpy(&qh, b + 4, 4);
        __m256i q = _mm256_or_si256(nibbles32(b + 8), bits32_to_0x10(qh));
        st32_u8_dm(q, _mm256_set1_ps(ld_f16(b)), _mm256_set1_ps(ld_f16(b + 2)), 0, y);
    }
}
static void dqv_mxfp4(const uint8_t *b, float *y, int64_t nb) {
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)mxfp4_kvalues));
    for (int64_t i = 0; i < nb; i++, b += 17, y += 32)
        st32_i8(_mm256_shuffle_epi8(lut, nibbles32(b + 1)), _mm256_set1_ps(e8m0_half(b[0])), y);
}
static void dqv_q4_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 144, y += QK_K) {
        float d = ld_f16(b), dmin = ld_f16(b + 2);
        for (int g = 0; g < 4; g++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(b + 16 + 32 * g));
            __m256i lo = _mm256_and_si256(v, _mm256_set1_epi8(0xf));
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0xf));
            uint8_t s0, m0, s1, m1;
            kscale_min(b + 4, 2 * g, &s0, &m0);
            kscale_min(b + 4, 2 * g + 1, &s1, &m1);
            st32_u8_dm(lo, _mm256_set1_ps(d * (float)s0), _mm256_set1_ps(dmin * (float)m0), 1, y + 64 * g);
            st32_u8_dm(hi, _mm256_set1_ps(d * (float)s1), _mm256_set1_ps(dmin * (float)m1), 1, y + 64 * g + 32);
        }
    }
}
static void dqv_q5_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 176, y += QK_K) {
        float d = ld_f16(b), dmin = ld_f16(b + 2);
        __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(b + 16));
        for (int g = 0; g < 4; g++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(b + 48 + 32 * g));
            __m256i lo = _mm256_and_si256(v, _mm256_set1_epi8(0xf));
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0xf));
            __m256i h0 = _mm256_and_si256(_mm256_slli_epi16(qh, 4), _mm256_set1_epi8(0x10));
            __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(qh, 3), _mm256_set1_epi8(0x10));
            qh = _mm256_srli_epi16(qh, 2);
            uint8_t s0, m0, s1, m1;
            kscale_min(b + 4, 2 * g, &s0, &m0);
            kscale_min(b + 4, 2 * g + 1, &s1, &m1);
            st32_u8_dm(_mm256_or_si256(lo, h0), _mm256_set1_ps(d * (float)s0), _mm256_set1_ps(dmin * (float)m0), 1, y + 64 * g);
            st32_u8_dm(_mm256_or_si256(hi, h1), _mm256_set1_ps(d * (float)s1), _mm256_set1_ps(dmin * (float)m1), 1, y + 64 * g + 32);
        }
    }
}
static inline void st32_i8_2s(__m256i q, __m256 d0, __m256 d1, float *y) {
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y, _mm256_mul_ps(d0, cvt_i8x8(lo)));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(d0, cvt_i8x8(_mm_srli_si128(lo, 8))));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(d1, cvt_i8x8(hi)));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(d1, cvt_i8x8(_mm_srli_si128(hi, 8))));
}
static void dqv_q6_k(const uint8_t *b, float *y, int64_t nb) {
    const __m256i m4 = _mm256_set1_epi8(0xf), m3 = _mm256_set1_epi8(0x30), off = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < nb; i++, b += 210, y += QK_K) {
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = ld_f16(b + 208);
        for (int h = 0; h < 2; h++) {
            const int8_t *s = sc + 8 * h;
            float *yy = y + 128 * h;
            __m256i l0 = _mm256_loadu_si256((const __m256i *)(const void *)(b + 64 * h));
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(const void *)(b + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(b + 128 + 32 * h));
            __m256i q1 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m3));
            __m256i q2 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m3));
            __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m3));
            __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                         _mm256_and_si256(_mm256_srli_epi16(qh, 2), m3));
            st32_i8_2s(_mm256_sub_epi8(q1, off), _mm256_set1_ps(d * (float)s[0]), _mm256_set1_ps(d * (float)s[1]), yy);
            st32_i8_2s(_mm256_sub_epi8(q2, off), _mm256_set1_ps(d * (float)s[2]), _mm256_set1_ps(d * (float)s[3]), yy + 32);
            st32_i8_2s(_mm256_sub_epi8(q3, off), _mm256_set1_ps(d * (float)s[4]), _mm256_set1_ps(d * (float)s[5]), yy + 64);
            st32_i8_2s(_mm256_sub_epi8(q4, off), _mm256_set1_ps(d * (float)s[6]), _mm256_set1_ps(d * (float)s[7]), yy + 96);
        }
    }
}
static void dqv_f16(const uint8_t *src, float *y, int64_t n) {
    /* bit trick rather than vcvtph2ps, which would quiet signalling NaNs */
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i)));
        __m256i sign = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x8000)), 16);
        __m256i em = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x7fff)), 13);
        /* (exp,man) << 13 read as f32 is the value times 2^-112, exactly,
         * subnormals included; inf/NaN (exp 31) instead get exp 255. */
        __m256 v = _mm256_mul_ps(_mm256_castsi256_ps(em), _mm256_castsi256_ps(_mm256_set1_epi32(0x77800000)));
        __m256i special = _mm256_cmpgt_epi32(em, _mm256_set1_epi32(0x0f7fffff));
        __m256i infnan = _mm256_or_si256(em, _mm256_set1_epi32(0x70000000));
        __m256i r = _mm256_blendv_epi8(_mm256_castps_si256(v), infnan, special);
        _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_or_si256(r, sign)));
    }
    dq_f16(src + 2 * i, y + i, n - i);
}
static void dqv_bf16(const uint8_t *src, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i)));
        _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
    }
    dq_bf16(src + 2 * i, y + i, n - i);
}
#endif /* __AVX2__ */

/* ---------------------------------------------------------------- matmul */

/* Tile geometry: MM_ROWS weight rows x MM_KC columns are dequantized at a time
 * (MM_KC is a multiple of every block size), so the tile (32 KiB) and the
 * activation slice it meets stay in L1/L2 whatever K is. */
#define MM_ROWS 16
#define MM_KC 512

size_t quant_matmul_scratch_floats(int64_t K) {
    int64_t kc = K < MM_KC ? K : MM_KC;
    if (kc < 1) kc = 1;
    size_t tile = (size_t)MM_ROWS * (size_t)kc, gv = quant_gemv_scratch_floats(K);
    return tile > gv ? tile : gv;
}

/* Register-blocked micro-kernel: R weight rows (stride ldw floats) against TT
 * activation rows (stride ldx), kc columns; Y[t*ldy + r] (+)= dot.
 * accumulate: add to Y (later K chunks) instead of storing. */
#ifdef __AVX2__
static inline __attribute__((always_inline)) void mk_avx2(int R, int TT, const float *w, int64_t ldw,
                                                          const float *x, int64_t ldx, int64_t kc,
                                                          float *y, int64_t ldy, int accumulate) {
    /* the pragmas make GCC unroll at -O2 so acc/wv live in registers */
    __m256 acc[4][3];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int t = 0; t < TT; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) wv[r] = _mm256_loadu_ps(w + r * ldw + k);
#pragma GCC unroll 3
        for (int t = 0; t < TT; t++) {
            __m256 xv = _mm256_loadu_ps(x + t * ldx + k);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
    for (int t = 0; t < TT; t++) {
        if (R == 4) {
            /* 4 sums for rows r..r+3 of output row t, contiguous in Y */
            __m256 s01 = _mm256_hadd_ps(acc[0][t], acc[1][t]);
            __m256 s23 = _mm256_hadd_ps(acc[2][t], acc[3][t]);
            __m256 s = _mm256_hadd_ps(s01, s23);
            __m128 v = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
            float tail[4] = {0, 0, 0, 0};
            for (int64_t kk = k; kk < kc; kk++)
                for (int r = 0; r < 4; r++) tail[r] += w[r * ldw + kk] * x[t * ldx + kk];
            v = _mm_add_ps(v, _mm_loadu_ps(tail));
            float *yp = y + t * ldy;
            if (accumulate) v = _mm_add_ps(v, _mm_loadu_ps(yp));
            _mm_storeu_ps(yp, v);
        } else {
            for (int r = 0; r < R; r++) {
                float s = hsum256(acc[r][t]);
                for (int64_t kk = k; kk < kc; kk++) s += w[r * ldw + kk] * x[t * ldx + kk];
                y[t * ldy + r] = accumulate ? y[t * ldy + r] + s : s;
            }
        }
    }
}
#endif

#ifndef __AVX2__
static inline __attribute__((always_inline)) void mk_generic(int R, int TT, const float *w,
                                                             int64_t ldw, const float *x,
                                                             int64_t ldx, int64_t kc, float *y,
                                                             int64_t ldy, int accumulate) {
    float acc[4][3][8];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < TT; t++)
            for (int l = 0; l < 8; l++) acc[r][t][l] = 0;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8)
        for (int r = 0; r < R; r++)
            for (int t = 0; t < TT; t++)
                for (int l = 0; l < 8; l++) acc[r][t][l] += w[r * ldw + k + l] * x[t * ldx + k + l];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < TT; t++) {
            float *a = acc[r][t];
            float s = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
            for (int64_t kk = k; kk < kc; kk++) s += w[r * ldw + kk] * x[t * ldx + kk];
            y[t * ldy + r] = accumulate ? y[t * ldy + r] + s : s;
        }
}

#define MK mk_generic
#else
#define MK mk_avx2
#endif

/* All (rows x T) of one dequantized tile: w is nrows x kc (stride ldw). */
static void mm_tile(const float *w, int64_t ldw, int nrows, const float *x, int64_t ldx, int64_t T,
                    int64_t kc, float *y, int64_t ldy, int acc) {
    int64_t t = 0;
    for (; t + 3 <= T; t += 3) {
        const float *xt = x + t * ldx;
        float *yt = y + t * ldy;
        int r = 0;
        for (; r + 4 <= nrows; r += 4) MK(4, 3, w + r * ldw, ldw, xt, ldx, kc, yt + r, ldy, acc);
        switch (nrows - r) {
        case 3: MK(3, 3, w + r * ldw, ldw, xt, ldx, kc, yt + r, ldy, acc); break;
        case 2: MK(2, 3, w + r * ldw, ldw, xt, ldx, kc, yt + r, ldy, acc); break;
        case 1: MK(1, 3, w + r * ldw, ldw, xt, ldx, kc, yt + r, ldy, acc); break;
        default: break;
        }
    }
    if (t < T) {
        int tt = (int)(T - t);
        const float *xt = x + t * ldx;
        float *yt = y + t * ldy;
        int r = 0;
        if (tt == 2) {
            for (; r + 4 <= nrows; r += 4) MK(4, 2, w + r * ldw, ldw, xt, ldx, kc, yt + r, ldy, acc);
            for (; r < nrows; r++) MK(1, 2, w + r * ldw, ldw, xt, ldx, kc, yt + r, ldy, acc);
        } else {
            for (; r + 4 <= nrows; r += 4) MK(4, 1, w + r * ldw, ldw, xt, ldx, kc, yt + r, ldy, acc);
            for (; r < nrows; r++) MK(1, 1, w + r * ldw, ldw, xt, ldx, kc, yt + r, ldy, acc);
        }
    }
}

void quant_matmul(uint32_t type, const void *W, uint64_t row_bytes, int64_t K, int64_t r0,
                  int64_t r1, const float *X, int64_t ldx, int64_t T, float *Y, int64_t ldy,
                  float *scratch) {
    const qkern *k = kern_of(type);
    const uint8_t *wb = (const uint8_t *)W;
    if (r1 <= r0 || T <= 0) return;
    if (!k || K <= 0 || K % k->be) {
        for (int64_t t = 0; t < T; t++)
            for (int64_t r = r0; r < r1; r++) Y[t * ldy + r] = NAN;
        return;
    }
    if (T == 1) {
        /* token generation: weight bytes dominate, stream each row once */
        if (quant_gemv(type, W, row_bytes, K, r0, r1, X, Y, scratch) == 0) return;
        for (int64_t r = r0; r < r1; r++) Y[r] = quant_dot_row(type, wb + (uint64_t)r * row_bytes, X, K);
        return;
    }
    /* f32 weights with a float-multiple stride need no copy */
    int direct = type == QUANT_F32 && row_bytes % 4 == 0 && ((uintptr_t)W & 3) == 0;
    for (int64_t k0 = 0; k0 < K; k0 += MM_KC) {
        int64_t kc = K - k0 < MM_KC ? K - k0 : MM_KC;
        const uint64_t boff = (uint64_t)(k0 / k->be) * (uint64_t)k->bb;
        for (int64_t r = r0; r < r1; r += MM_ROWS) {
            int nrows = (int)(r1 - r < MM_ROWS ? r1 - r : MM_ROWS);
            const float *w;
            int64_t ldw;
            if (direct) {
                w = (const float *)(const void *)(wb + (uint64_t)r * row_bytes + boff);
                ldw = (int64_t)(row_bytes / 4);
            } else {
                for (int i = 0; i < nrows; i++)
                    k->dq(wb + (uint64_t)(r + i) * row_bytes + boff, scratch + (int64_t)i * kc, kc / k->be);
                w = scratch;
                ldw = kc;
            }
            mm_tile(w, ldw, nrows, X + k0, ldx, T, kc, Y + r, ldy, k0 > 0);
        }
    }
}
