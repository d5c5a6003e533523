// qfmt.cuh — the repacked weight formats (cuda_kern.h describes the layout): plane sizes,
// per-group scale/min, and the decoding of one quarter-chunk (the 16 values quad lane c of
// a warp owns in a 64-element chunk) into f16 pairs. Internal to weights.cu, gemv.cu,
// gemm.cu; host code uses qfmt_of / wplanes_of for sizes.
#ifndef SPARKD_QFMT_CUH
#define SPARKD_QFMT_CUH

#include "cuda_kern.h"
#include "kern_util.cuh"

// ggml type ids (quant.h), the ones the kernels compute with
enum {
    QT_F32 = 0, QT_F16 = 1, QT_Q4_0 = 2, QT_Q4_1 = 3, QT_Q5_0 = 6, QT_Q5_1 = 7, QT_Q8_0 = 8,
    QT_Q4_K = 12, QT_Q5_K = 13, QT_Q6_K = 14, QT_BF16 = 30, QT_MXFP4 = 39
};

struct qfmt {
    int ok;         // supported
    int cbits;      // bits per element in the codes plane: 4, 8, 16, 32
    int hbits;      // bits per element in the hi plane: 0, 1, 2
    int meta_bytes; // bytes per meta entry (0: none)
    int meta_elems; // elements per meta entry
    int group;      // elements per scale group (0: no scale, values are stored directly)
    int has_min;    // weight = s * c + m with m != 0
    int off;        // code offset subtracted before scaling
    int raw_be;     // GGUF: elements per block
    int raw_bb;     // GGUF: bytes per block
};

__host__ __device__ constexpr qfmt qfmt_of(uint32_t t) {
    switch (t) {
    case QT_F32: return qfmt{1, 32, 0, 0, 0, 0, 0, 0, 1, 4};
    case QT_F16: return qfmt{1, 16, 0, 0, 0, 0, 0, 0, 1, 2};
    case QT_BF16: return qfmt{1, 16, 0, 0, 0, 0, 0, 0, 1, 2};
    case QT_Q8_0: return qfmt{1, 8, 0, 2, 32, 32, 0, 0, 32, 34};
    case QT_Q4_0: return qfmt{1, 4, 0, 2, 32, 32, 0, 8, 32, 18};
    case QT_Q4_1: return qfmt{1, 4, 0, 4, 32, 32, 1, 0, 32, 20};
    case QT_Q5_0: return qfmt{1, 4, 1, 2, 32, 32, 0, 16, 32, 22};
    case QT_Q5_1: return qfmt{1, 4, 1, 4, 32, 32, 1, 0, 32, 24};
    case QT_Q4_K: return qfmt{1, 4, 0, 16, 256, 32, 1, 0, 256, 144};
    case QT_Q5_K: return qfmt{1, 4, 1, 16, 256, 32, 1, 0, 256, 176};
    case QT_Q6_K: return qfmt{1, 4, 2, 20, 256, 16, 0, 32, 256, 210};
    case QT_MXFP4: return qfmt{1, 4, 0, 1, 32, 32, 0, 0, 32, 17};
    default: return qfmt{0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    }
}

// Byte offsets of the planes in a weight allocation, and their row pitches.
struct wplanes {
    uint64_t codes, hi, meta, total;
    uint64_t code_pitch, hi_pitch, meta_pitch;
};

__host__ __device__ inline uint64_t align256(uint64_t x) { return (x + 255) & ~(uint64_t)255; }

__host__ __device__ inline wplanes wplanes_of(uint32_t t, int64_t rows, int64_t cols) {
    const qfmt f = qfmt_of(t);
    wplanes p = {0, 0, 0, 0, 0, 0, 0};
    p.code_pitch = (uint64_t)cols * (uint64_t)f.cbits / 8;
    p.hi_pitch = (uint64_t)cols * (uint64_t)f.hbits / 8;
    p.meta_pitch = f.meta_bytes ? (uint64_t)(cols / f.meta_elems) * (uint64_t)f.meta_bytes : 0;
    p.codes = 0;
    p.hi = align256(p.codes + p.code_pitch * (uint64_t)rows);
    p.meta = align256(p.hi + p.hi_pitch * (uint64_t)rows);
    p.total = align256(p.meta + p.meta_pitch * (uint64_t)rows);
    return p;
}

// ------------------------------------------------------------------- group scale and min

// Q4_K/Q5_K: 6-bit scale and min of sub-block j from the 12 scale bytes (quant.c's
// kscale_min).
__device__ __forceinline__ void kscale_min(const uint8_t *s, int j, int &sc, int &mn) {
    if (j < 4) {
        sc = s[j] & 63;
        mn = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
        mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Scale s and min m of group gi (units of fmt.group elements) of a row whose meta starts
// at meta. Rounded exactly as quant.c (separate f32 products).
template <uint32_t F>
__device__ __forceinline__ void group_sm(const uint8_t *meta, int gi, float &s, float &m) {
    m = 0.0f;
    if constexpr (F == QT_Q8_0 || F == QT_Q4_0 || F == QT_Q5_0) {
        s = f16_bits_to_f32(((const uint16_t *)meta)[gi]);
    } else if constexpr (F == QT_Q4_1 || F == QT_Q5_1) {
        const uint32_t dm = ((const uint32_t *)meta)[gi];
        s = f16_bits_to_f32((uint16_t)(dm & 0xffff));
        m = f16_bits_to_f32((uint16_t)(dm >> 16));
    } else if constexpr (F == QT_MXFP4) {
        s = e8m0_half(meta[gi]);
    } else if constexpr (F == QT_Q4_K || F == QT_Q5_K) {
        const uint8_t *b = meta + (gi >> 3) * 16;
        const float d = f16_bits_to_f32(*(const uint16_t *)b);
        const float dmin = f16_bits_to_f32(*(const uint16_t *)(b + 2));
        int sc, mn;
        kscale_min(b + 4, gi & 7, sc, mn);
        s = __fmul_rn(d, (float)sc);
        m = -__fmul_rn(dmin, (float)mn);
    } else if constexpr (F == QT_Q6_K) {
        const uint8_t *b = meta + (gi >> 4) * 20;
        const float d = f16_bits_to_f32(*(const uint16_t *)b);
        s = __fmul_rn(d, (float)(int8_t)b[4 + (gi & 15)]);
    } else {
        s = 1.0f;
    }
}

// ------------------------------------------------------------------- quarter decoding

// One quad lane's quarter of a 64-element chunk of one row: its 16 values' raw bits.
//   4-bit codes: q.x, q.y (two words of 8 nibbles); 8-bit: q (16 bytes); f16/bf16: q, q2
//   (16 halves); f32: q, q2, q3, q4 (16 floats, GEMV only). hb: the hi-plane word.
struct quarter {
    uint4 q, q2, q3, q4;
    uint32_t hb;
};

// Loads quarter c of chunk ci of a row (codes row pointer cr, hi row pointer hr).
template <uint32_t F>
__device__ __forceinline__ void quarter_load(quarter &r, const uint8_t *cr, const uint8_t *hr, int ci,
                                             int c) {
    constexpr qfmt f = qfmt_of(F);
    if constexpr (f.cbits == 4) {
        const uint2 v = *(const uint2 *)(cr + (size_t)ci * 32 + 8 * c);
        r.q.x = v.x;
        r.q.y = v.y;
    } else if constexpr (f.cbits == 8) {
        r.q = *(const uint4 *)(cr + (size_t)ci * 64 + 16 * c);
    } else if constexpr (f.cbits == 16) {
        const uint4 *p = (const uint4 *)(cr + (size_t)ci * 128 + 32 * c);
        r.q = p[0];
        r.q2 = p[1];
    } else {
        const uint4 *p = (const uint4 *)(cr + (size_t)ci * 256 + 64 * c);
        r.q = p[0];
        r.q2 = p[1];
        r.q3 = p[2];
        r.q4 = p[3];
    }
    if constexpr (f.hbits == 1) r.hb = ((const uint16_t *)(hr + (size_t)ci * 8))[c];
    else if constexpr (f.hbits == 2) r.hb = ((const uint32_t *)(hr + (size_t)ci * 16))[c];
}

__device__ __forceinline__ uint32_t u4_word(const uint4 &v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// Pair j (0..7) of the quarter — its elements 2j and 2j+1 — as the f16x2 bits of their
// codes minus the format's offset (integers, exact in f16), or for F16/BF16 the stored
// values themselves (BF16 pairs are bf16x2). Not for F32.
template <uint32_t F>
__device__ __forceinline__ uint32_t quarter_pair(const quarter &r, int j) {
    constexpr qfmt f = qfmt_of(F);
    if constexpr (F == QT_F16 || F == QT_BF16) {
        return j < 4 ? u4_word(r.q, j) : u4_word(r.q2, j - 4);
    } else if constexpr (F == QT_Q8_0) {
        // bytes 2j, 2j+1 -> halves 1024 + (q + 128), minus 1152
        const uint32_t w = u4_word(r.q, j >> 1) ^ 0x80808080u;
        // result bytes: byte 2(j&1) of w, 0x64, byte 2(j&1)+1, 0x64
        const uint32_t h = __byte_perm(w, 0x64646464u, (j & 1) ? 0x4342u : 0x4140u);
        const __half2 v = __hsub2(*(const __half2 *)&h, __half2half2(__ushort_as_half(0x6480))); // 1152
        return *(const uint32_t *)&v;
    } else if constexpr (F == QT_MXFP4) {
        const uint32_t w = (j < 4 ? r.q.x : r.q.y) >> (4 * (j & 3));
        const uint32_t sel = (w & 0x7u) | ((w & 0x70000u) >> 8);
        const uint32_t mag = __byte_perm(0x03020100u, 0x0c080604u, sel) & 0x00ff00ffu;
        const uint32_t h = mag | 0x64006400u;
        const __half2 v = __hsub2(*(const __half2 *)&h, __half2half2(__ushort_as_half(0x6400)));
        return *(const uint32_t *)&v ^ ((w & 0x00080008u) << 12);
    } else { // 4-bit codes (+ hi bits)
        const uint32_t w = (j < 4 ? r.q.x : r.q.y) >> (4 * (j & 3));
        uint32_t h = (w & 0x000f000fu) | 0x64006400u;
        const int b = 4 * (j >> 2) + (j & 3); // hi-plane bit of the pair's first element
        if constexpr (f.hbits == 1) {
            const uint32_t x = (r.hb & 0xffu) | ((r.hb & 0xff00u) << 8);
            h |= ((x >> b) & 0x00010001u) << 4;
        } else if constexpr (f.hbits == 2) {
            h |= ((r.hb >> (2 * b)) & 0x00030003u) << 4;
        }
        constexpr uint16_t sub = (uint16_t)(0x6400 + f.off); // f16 of 1024 + off (exact)
        const __half2 v = __hsub2(*(const __half2 *)&h, __half2half2(__ushort_as_half(sub)));
        return *(const uint32_t *)&v;
    }
}

// Pair j as two floats (GEMV): codes minus offset, or the stored values.
template <uint32_t F>
__device__ __forceinline__ float2 quarter_pair_f32(const quarter &r, int j) {
    if constexpr (F == QT_F32) {
        const uint4 &v = j < 2 ? r.q : j < 4 ? r.q2 : j < 6 ? r.q3 : r.q4;
        const int k = (j & 1) * 2;
        return make_float2(__uint_as_float(u4_word(v, k)), __uint_as_float(u4_word(v, k + 1)));
    } else if constexpr (F == QT_BF16) {
        const uint32_t p = quarter_pair<F>(r, j);
        return make_float2(__uint_as_float(p << 16), __uint_as_float(p & 0xffff0000u));
    } else {
        const uint32_t p = quarter_pair<F>(r, j);
        return __half22float2(*(const __half2 *)&p);
    }
}

// Code (minus offset) of quarter element i as an int, for exact element-wise dequantization.
template <uint32_t F>
__device__ __forceinline__ float quarter_value(const quarter &r, int i) {
    const float2 v = quarter_pair_f32<F>(r, i >> 1);
    return (i & 1) ? v.y : v.x;
}

// A repacked weight's planes as the product kernels read them: sets m.codes, m.hi, m.meta and
// their row pitches (M: gemm_mat, gemv_mat, mmq_mat, moe_mat: the same six members).
template <class M> inline void wmat_planes(M &m, const cuda_weight *w) {
    const wplanes pl = wplanes_of(w->type, w->rows, w->cols);
    m.codes = (const uint8_t *)w->base + pl.codes;
    m.hi = (const uint8_t *)w->base + pl.hi;
    m.meta = (const uint8_t *)w->base + pl.meta;
    m.code_pitch = pl.code_pitch;
    m.hi_pitch = pl.hi_pitch;
    m.meta_pitch = pl.meta_pitch;
}

// Sums split-K partials p.ws (ksplit, T, ws_rows) in a fixed order (deterministic) into the
// products' rows (matrix mi owns rows [row0[mi], row0[mi + 1])), storing or accumulating. One
// thread a row, grid (rows / blockDim, T). P: gemm_params / mmq_params (the same members).
template <class P> __device__ __forceinline__ void splitk_reduce(const P &p) {
    const int t = blockIdx.y;
    for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < p.ws_rows; r += gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int z = 0; z < p.ksplit; z++) s += p.ws[((size_t)z * p.T + t) * p.ws_rows + r];
        int mi = 0;
        while (mi + 1 < p.n && r >= p.row0[mi + 1]) mi++;
        float *y = p.m[mi].y + (size_t)t * p.m[mi].ldy + (r - p.row0[mi]);
        *y = p.accumulate ? *y + s : s;
    }
}

#endif
