/* quant_gemv.c — the token-generation product y = W x (T = 1) for the block
 * formats, the CPU decode loop's hot spot (quant.h: quant_gemv).
 *
 * At T = 1 every weight byte is used once, so the kernel must decode as fast
 * as memory delivers (a plain read loop streams 9-13 GB/s per core on the x86
 * test machine). What gets close:
 *   - four rows per pass share each load of x and amortize the horizontal sums;
 *   - the per-block scale is applied once to an 8-lane partial sum of q*x
 *     instead of to every element (d * sum(q*x) == sum((d*q)*x) up to rounding
 *     order), and additive mins use per-sub-block sums of x computed once per
 *     call (sum((d*q - m)*x) == d*sum(q*x) - m*sum(x));
 *   - codes go from bytes to 32-bit lanes with one in-lane vpshufb (two ports)
 *     rather than vpmovzx + lane extracts (one port); that gathers elements
 *     {4m..4m+3, 16+4m..16+4m+3} of a 32-element group into vector m, so x is
 *     permuted the same way once per call (xp below);
 *   - signed codes are shuffled into the top byte of each lane, which makes the
 *     lane q * 2^24 exactly (sign extension for free); each row's sum is
 *     scaled by 2^-24 at the end, also exactly.
 * Activations stay f32 and nothing is rounded to a lower precision: results
 * equal dequantize-then-dot up to the order of f32 roundings (tests/unit/
 * test_quant*.c/py check them against float64 at 1e-5 of sum|w*x|).
 *
 * Without AVX2 (aarch64, or -march without it) quant_gemv declines and
 * quant_matmul uses its per-row dots. */
#include "quant.h"

#include <string.h>

#ifdef __AVX2__
#include <immintrin.h>
#endif

#define GV_ROWS 4 /* rows per pass; quant_matmul splits rows in multiples of 16 */

size_t quant_gemv_scratch_floats(int64_t K) {
    /* xp: K permuted floats, xs: K/32 sub-block sums, + slack for rounding */
    return (size_t)(K + K / 32 + 64);
}

#ifdef __AVX2__

static inline float ld_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* f16 at p as 8 equal floats: vpbroadcastw + vcvtph2ps, fewer uops than a
 * scalar convert and a broadcast */
static inline __m256 bcast_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _mm256_cvtph_ps(_mm_set1_epi16((short)h));
}

static inline __m256i ld256(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)(const void *)p); }

/* Sum of the 8 lanes of a, b, c, d -> 4 floats (a's sum first). */
static inline __m128 hsum4x8(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
/* y[0..R) = lane sums of acc[0..R) times scale (a power of two: exact) */
static inline void store_rows(int R, const __m256 *acc, float scale, float *y) {
    if (R == 4) _mm_storeu_ps(y, _mm_mul_ps(hsum4x8(acc[0], acc[1], acc[2], acc[3]), _mm_set1_ps(scale)));
    else
        for (int r = 0; r < R; r++) y[r] = hsum8(acc[r]) * scale;
}

/* vpshufb controls: vector m's dword k of each 128-bit lane takes byte 4m+k of
 * that lane, either as the top byte (signed codes: lane = q * 2^24) or the
 * bottom byte (unsigned codes: lane = q). 0x80 zeroes a byte. */
static inline __m256i shuf_top(int m) {
    uint32_t b = (uint32_t)(4 * m);
    __m128i c = _mm_setr_epi32((int)(0x00808080u | (b << 24)), (int)(0x00808080u | ((b + 1) << 24)),
                               (int)(0x00808080u | ((b + 2) << 24)), (int)(0x00808080u | ((b + 3) << 24)));
    return _mm256_broadcastsi128_si256(c);
}
static inline __m256i shuf_low(int m) {
    uint32_t b = (uint32_t)(4 * m);
    __m128i c = _mm_setr_epi32((int)(0x80808000u | b), (int)(0x80808000u | (b + 1)),
                               (int)(0x80808000u | (b + 2)), (int)(0x80808000u | (b + 3)));
    return _mm256_broadcastsi128_si256(c);
}

/* xp: x with every 32-element group reordered to the vpshufb lane order
 * (xp[32g + 8m + 4L + k] = x[32g + 16L + 4m + k]). */
static void permute_x(const float *x, int64_t K, float *xp) {
    for (int64_t g = 0; g < K; g += 32)
        for (int m = 0; m < 4; m++) {
            _mm_storeu_ps(xp + g + 8 * m, _mm_loadu_ps(x + g + 4 * m));
            _mm_storeu_ps(xp + g + 8 * m + 4, _mm_loadu_ps(x + g + 16 + 4 * m));
        }
}
/* xs[j] = sum of x over elements [32j, 32j + 32) */
static void block_sums(const float *x, int64_t K, float *xs) {
    for (int64_t g = 0; g < K; g += 32) {
        __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(x + g), _mm256_loadu_ps(x + g + 8)),
                                 _mm256_add_ps(_mm256_loadu_ps(x + g + 16), _mm256_loadu_ps(x + g + 24)));
        xs[g / 32] = hsum8(s);
    }
}

/* 8-lane partial sum of codes * x over one 32-element group: q holds the
 * codes (lane L byte j = element 16L + j), sh the four controls, xv the
 * group's four permuted x vectors. */
static inline __m256 group_dot(__m256i q, const __m256i sh[4], const __m256 xv[4]) {
    __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_shuffle_epi8(q, sh[0])), xv[0]);
    s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_shuffle_epi8(q, sh[1])), xv[1], s);
    s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_shuffle_epi8(q, sh[2])), xv[2], s);
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_shuffle_epi8(q, sh[3])), xv[3], s);
}
static inline void load_x4(const float *xp, __m256 xv[4]) {
    for (int m = 0; m < 4; m++) xv[m] = _mm256_loadu_ps(xp + 8 * m);
}

#define GV_INLINE static inline __attribute__((always_inline))
/* The row loops below carry "#pragma GCC unroll 4" so that acc[] lives in
 * registers: without it GCC 12 keeps acc on the stack (Q8_0 measured 13%
 * slower). */

/* Each kernel: rows w, w + rb, ... (R of them, R = 4 or 1), nb blocks each,
 * against x (natural order), xp (permuted), xs (block sums); y[0..R). */
typedef struct gv_args {
    const uint8_t *w;
    uint64_t rb;
    uint64_t pf; /* prefetch distance in bytes: the same spot GV_ROWS rows on */
    int64_t nb;
    const float *x, *xp, *xs;
    float *y;
} gv_args;

/* The hardware prefetcher alone leaves the four interleaved row streams at
 * about half the memory bandwidth (measured: 4.9 vs 9.3 GB/s on 262144 x 640
 * Q8_0), so each block asks for the bytes the next pass will read. Must be
 * always_inline: GCC 12 deems an out-of-line prefetch-only function pure and
 * deletes the calls. */
GV_INLINE void prefetch_next(const uint8_t *b, uint64_t dist, int bytes) {
    for (int o = 0; o < bytes; o += 64) _mm_prefetch((const char *)b + dist + o, _MM_HINT_T0);
}

/* ---- Q8_0: natural order; vpmovsxbd straight from memory is already one
 * shuffle per 8 codes, on the port the FMAs leave idle. */
static inline __m256 cvt_i8x8_mem(const uint8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)));
}
GV_INLINE void gv_q8_0(int R, const gv_args *a) {
    __m256 acc[GV_ROWS];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < a->nb; i++) {
        const float *x = a->x + 32 * i;
        __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8), x2 = _mm256_loadu_ps(x + 16),
               x3 = _mm256_loadu_ps(x + 24);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *b = a->w + (uint64_t)r * a->rb + 34 * (uint64_t)i;
            prefetch_next(b, a->pf, 34);
            __m256 s = _mm256_mul_ps(cvt_i8x8_mem(b + 2), x0);
            s = _mm256_fmadd_ps(cvt_i8x8_mem(b + 10), x1, s);
            s = _mm256_fmadd_ps(cvt_i8x8_mem(b + 18), x2, s);
            s = _mm256_fmadd_ps(cvt_i8x8_mem(b + 26), x3, s);
            acc[r] = _mm256_fmadd_ps(s, bcast_f16(b), acc[r]);
        }
    }
    store_rows(R, acc, 1.0f, a->y);
}

/* 16 bytes of nibbles -> 32 codes in vpshufb order: lane 0 = low nibbles
 * (elements 0..15), lane 1 = high nibbles (16..31). */
static inline __m256i nib_lanes(const uint8_t *p) {
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)p));
    v = _mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4));
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}
/* Q5's fifth bits (bit j of qh = element j) as bytes in the same order:
 * 0xff where the bit is set, 0 where clear. */
static inline __m256i qh_set(const uint8_t *p) {
    uint32_t qh;
    memcpy(&qh, p, 4);
    const __m256i sel = _mm256_setr_epi64x(0, 0x0101010101010101ll, 0x0202020202020202ll, 0x0303030303030303ll);
    const __m256i bit = _mm256_set1_epi64x((int64_t)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), sel);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* ---- 32-element formats with signed codes: Q4_0, Q5_0, MXFP4 */
enum { F_Q4_0, F_Q5_0, F_MXFP4, F_Q4_1, F_Q5_1 };
static const int8_t gv_mxfp4_k[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

GV_INLINE void gv_b32(int R, int fmt, const gv_args *a) {
    const int bb = fmt == F_Q4_0 ? 18 : fmt == F_Q5_0 ? 22 : fmt == F_MXFP4 ? 17 : fmt == F_Q4_1 ? 20 : 24;
    const int has_min = fmt == F_Q4_1 || fmt == F_Q5_1;
    __m256i sh[4];
    for (int m = 0; m < 4; m++) sh[m] = has_min ? shuf_low(m) : shuf_top(m);
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)gv_mxfp4_k));
    __m256 acc[GV_ROWS];
    float bias[GV_ROWS] = {0, 0, 0, 0};
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < a->nb; i++) {
        __m256 xv[4];
        load_x4(a->xp + 32 * i, xv);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *b = a->w + (uint64_t)r * a->rb + (uint64_t)bb * (uint64_t)i;
            prefetch_next(b, a->pf, bb);
            __m256i q;
            __m256 d;
            switch (fmt) {
            case F_Q4_0:
                q = _mm256_sub_epi8(nib_lanes(b + 2), _mm256_set1_epi8(8));
                d = bcast_f16(b);
                break;
            case F_Q5_0: /* q - 16 = nibble, or nibble | 0xf0 (as int8) where bit 5 is clear */
                q = _mm256_or_si256(nib_lanes(b + 6), _mm256_andnot_si256(qh_set(b + 2), _mm256_set1_epi8((char)0xf0)));
                d = bcast_f16(b);
                break;
            case F_MXFP4: {
                q = _mm256_shuffle_epi8(lut, nib_lanes(b + 1));
                uint32_t e = b[0];
                /* e8m0 / 2 (the table is doubled), built exactly */
                uint32_t u = e < 2 ? 0x00200000u << e : (e - 1) << 23;
                d = _mm256_castsi256_ps(_mm256_set1_epi32((int)u));
                break;
            }
            case F_Q4_1:
                q = nib_lanes(b + 4);
                d = bcast_f16(b);
                bias[r] += ld_f16(b + 2) * a->xs[i];
                break;
            default: /* F_Q5_1 */
                q = _mm256_or_si256(nib_lanes(b + 8), _mm256_and_si256(qh_set(b + 4), _mm256_set1_epi8(0x10)));
                d = bcast_f16(b);
                bias[r] += ld_f16(b + 2) * a->xs[i];
                break;
            }
            acc[r] = _mm256_fmadd_ps(group_dot(q, sh, xv), d, acc[r]);
        }
    }
    if (has_min) /* fold the min terms into lane 0 before the horizontal sum */
        for (int r = 0; r < R; r++) acc[r] = _mm256_add_ps(acc[r], _mm256_setr_ps(bias[r], 0, 0, 0, 0, 0, 0, 0));
    store_rows(R, acc, has_min ? 1.0f : 0x1p-24f, a->y);
}

/* ---- Q4_K / Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins.
 * Scales and mins of one super-block, as 8 bytes each (sub-block order). */
static inline void kscales8(const uint8_t *s, uint64_t *sc, uint64_t *mn) {
    uint32_t w0, w1, w2;
    memcpy(&w0, s, 4);
    memcpy(&w1, s + 4, 4);
    memcpy(&w2, s + 8, 4);
    uint32_t sc_lo = w0 & 0x3f3f3f3fu, mn_lo = w1 & 0x3f3f3f3fu;
    uint32_t sc_hi = (w2 & 0x0f0f0f0fu) | ((w0 >> 2) & 0x30303030u);
    uint32_t mn_hi = ((w2 >> 4) & 0x0f0f0f0fu) | ((w1 >> 2) & 0x30303030u);
    *sc = sc_lo | (uint64_t)sc_hi << 32;
    *mn = mn_lo | (uint64_t)mn_hi << 32;
}
static inline __m256 u8x8_ps(uint64_t v) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)v)));
}

GV_INLINE void gv_qk(int R, int five, const gv_args *a) {
    const int bb = five ? 176 : 144;
    __m256i sh[4];
    for (int m = 0; m < 4; m++) sh[m] = shuf_low(m);
    const __m256i m4 = _mm256_set1_epi8(0x0f), b4 = _mm256_set1_epi8(0x10);
    __m256 acc[GV_ROWS], macc[GV_ROWS];
    for (int r = 0; r < R; r++) acc[r] = macc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < a->nb; i++) {
        const float *xp = a->xp + 256 * i;
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *b = a->w + (uint64_t)r * a->rb + (uint64_t)bb * (uint64_t)i;
            prefetch_next(b, a->pf, bb);
            uint64_t sc8, mn8;
            kscales8(b + 4, &sc8, &mn8);
            /* (d * scale_j) for the 8 sub-blocks, via memory so each is a
             * broadcast load rather than a shuffle */
            float scf[8];
            _mm256_storeu_ps(scf, _mm256_mul_ps(u8x8_ps(sc8), bcast_f16(b)));
            macc[r] = _mm256_fmadd_ps(_mm256_mul_ps(u8x8_ps(mn8), bcast_f16(b + 2)),
                                      _mm256_loadu_ps(a->xs + 8 * i), macc[r]);
            const uint8_t *qs = b + (five ? 48 : 16);
            __m256i qh = five ? ld256(b + 16) : _mm256_setzero_si256();
            for (int g = 0; g < 4; g++) {
                __m256i v = ld256(qs + 32 * g);
                __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                if (five) { /* bit 2g of qh[l] is the fifth bit of lo's byte l, bit 2g+1 of hi's */
                    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(qh, 4), b4));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(qh, 3), b4));
                    qh = _mm256_srli_epi16(qh, 2);
                }
                __m256 xv[4];
                load_x4(xp + 64 * g, xv);
                acc[r] = _mm256_fmadd_ps(group_dot(lo, sh, xv), _mm256_broadcast_ss(scf + 2 * g), acc[r]);
                load_x4(xp + 64 * g + 32, xv);
                acc[r] = _mm256_fmadd_ps(group_dot(hi, sh, xv), _mm256_broadcast_ss(scf + 2 * g + 1), acc[r]);
            }
        }
    }
    for (int r = 0; r < R; r++) acc[r] = _mm256_sub_ps(acc[r], macc[r]);
    store_rows(R, acc, 1.0f, a->y);
}

/* ---- Q6_K: two halves of 128; 16 signed scales, one per 16 elements. A
 * 32-element group's lane 0 holds one sub-block of 16 and lane 1 the next,
 * so its scale vector is (s_a x4, s_b x4). */
GV_INLINE void gv_q6_k(int R, const gv_args *a) {
    __m256i sh[4];
    for (int m = 0; m < 4; m++) sh[m] = shuf_top(m);
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(0x30), off = _mm256_set1_epi8(32);
    const __m256i pair[4] = {_mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1), _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3),
                             _mm256_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5), _mm256_setr_epi32(6, 6, 6, 6, 7, 7, 7, 7)};
    __m256 acc[GV_ROWS];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < a->nb; i++) {
        const float *xp = a->xp + 256 * i;
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *b = a->w + (uint64_t)r * a->rb + 210 * (uint64_t)i;
            prefetch_next(b, a->pf, 210);
            __m256 d = bcast_f16(b + 208);
            for (int h = 0; h < 2; h++) {
                __m256 s8 = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                 _mm_loadl_epi64((const __m128i *)(const void *)(b + 192 + 8 * h)))));
                __m256i l0 = ld256(b + 64 * h), l1 = ld256(b + 64 * h + 32), qh = ld256(b + 128 + 32 * h);
                __m256i q[4] = {
                    _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m3)),
                    _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m3)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m3)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                    _mm256_and_si256(_mm256_srli_epi16(qh, 2), m3))};
                for (int g = 0; g < 4; g++) {
                    __m256 xv[4];
                    load_x4(xp + 128 * h + 32 * g, xv);
                    acc[r] = _mm256_fmadd_ps(group_dot(_mm256_sub_epi8(q[g], off), sh, xv),
                                             _mm256_permutevar8x32_ps(s8, pair[g]), acc[r]);
                }
            }
        }
    }
    store_rows(R, acc, 0x1p-24f, a->y);
}

typedef void gv_fn(const gv_args *a);
#define GV_PAIR(name, call)                                                                        \
    static void name##_4(const gv_args *a) { call(4); }                                            \
    static void name##_1(const gv_args *a) { call(1); }
#define C_Q8_0(R) gv_q8_0(R, a)
#define C_Q4_0(R) gv_b32(R, F_Q4_0, a)
#define C_Q5_0(R) gv_b32(R, F_Q5_0, a)
#define C_MXFP4(R) gv_b32(R, F_MXFP4, a)
#define C_Q4_1(R) gv_b32(R, F_Q4_1, a)
#define C_Q5_1(R) gv_b32(R, F_Q5_1, a)
#define C_Q4_K(R) gv_qk(R, 0, a)
#define C_Q5_K(R) gv_qk(R, 1, a)
#define C_Q6_K(R) gv_q6_k(R, a)
GV_PAIR(k_q8_0, C_Q8_0)
GV_PAIR(k_q4_0, C_Q4_0)
GV_PAIR(k_q5_0, C_Q5_0)
GV_PAIR(k_mxfp4, C_MXFP4)
GV_PAIR(k_q4_1, C_Q4_1)
GV_PAIR(k_q5_1, C_Q5_1)
GV_PAIR(k_q4_k, C_Q4_K)
GV_PAIR(k_q5_k, C_Q5_K)
GV_PAIR(k_q6_k, C_Q6_K)

int quant_gemv(uint32_t type, const void *W, uint64_t row_bytes, int64_t K, int64_t r0, int64_t r1,
               const float *x, float *y, float *scratch) {
    gv_fn *k4, *k1;
    int be = 32, perm = 1, sums = 0;
    switch (type) {
    case QUANT_Q8_0: k4 = k_q8_0_4, k1 = k_q8_0_1, perm = 0; break;
    case QUANT_Q4_0: k4 = k_q4_0_4, k1 = k_q4_0_1; break;
    case QUANT_Q5_0: k4 = k_q5_0_4, k1 = k_q5_0_1; break;
    case QUANT_MXFP4: k4 = k_mxfp4_4, k1 = k_mxfp4_1; break;
    case QUANT_Q4_1: k4 = k_q4_1_4, k1 = k_q4_1_1, sums = 1; break;
    case QUANT_Q5_1: k4 = k_q5_1_4, k1 = k_q5_1_1, sums = 1; break;
    case QUANT_Q4_K: k4 = k_q4_k_4, k1 = k_q4_k_1, sums = 1, be = 256; break;
    case QUANT_Q5_K: k4 = k_q5_k_4, k1 = k_q5_k_1, sums = 1, be = 256; break;
    case QUANT_Q6_K: k4 = k_q6_k_4, k1 = k_q6_k_1, be = 256; break;
    default: return -1;
    }
    if (K <= 0 || K % be) return -1;
    gv_args a = {.w = (const uint8_t *)W, .rb = row_bytes, .pf = GV_ROWS * row_bytes, .nb = K / be, .x = x, .xp = x, .xs = 0};
    if (perm) {
        permute_x(x, K, scratch);
        a.xp = scratch;
    }
    if (sums) {
        block_sums(x, K, scratch + K);
        a.xs = scratch + K;
    }
    int64_t r = r0;
    for (; r + GV_ROWS <= r1; r += GV_ROWS) {
        a.w = (const uint8_t *)W + (uint64_t)r * row_bytes;
        a.y = y + r;
        k4(&a);
    }
    for (; r < r1; r++) {
        a.w = (const uint8_t *)W + (uint64_t)r * row_bytes;
        a.y = y + r;
        k1(&a);
    }
    return 0;
}

#else /* no AVX2 (aarch64, x86 without -march): quant_matmul's per-row dots do
       * the work. A plain-C 4-row Q8_0 kernel was tried and measured no faster
       * than them on x86-64 baseline (1.7 vs 1.8 GB/s); untested on NEON. */

int quant_gemv(uint32_t type, const void *W, uint64_t row_bytes, int64_t K, int64_t r0, int64_t r1,
               const float *x, float *y, float *scratch) {
    (void)type, (void)W, (void)row_bytes, (void)K, (void)r0, (void)r1, (void)x, (void)y, (void)scratch;
    return -1;
}

#endif
