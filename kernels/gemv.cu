// gemv.cu — y = W x for one token (and every token of F32 weights): the decode product.
//
// f32 activations in P64 order (cuda_mmin.xp), f32 accumulation: the result equals
// dequantize-then-dot up to the order of f32 roundings (no activation rounding at all).
//
// Decode at batch 1 reads every weight byte once, so the kernel is built to keep enough
// bytes in flight (kernels/PERF.md): a CTA of 8 warps owns RB rows; its warps split K
// (wk warps per row group, 8 / wk row groups of R rows), so even a 1024-row matrix has
// thousands of warps and each warp only a few iterations, whose loads are issued before
// the first use (a two-slot register ring). In an iteration lane l takes quarter l % 4 of
// chunk l / 4 (4-bit codes: quarters 2(l % 2), +1 of chunk l / 2, one 16-byte load per
// row), so each load instruction of the warp reads whole chunks of a row contiguously; the
// x quarters (float4s, from L1) serve all R rows. Codes become exact f16 pairs
// (magic-number adds, no I2F) then f32; each lane applies the group scale (and min times
// its part of the group's x sum) to its partial dot; warp sums, then the wk partial sums
// of each row in a fixed order (deterministic).
//
// Weights (constant) are loaded before pdl_wait(): with programmatic dependent launch the
// next GEMV streams its weights while the kernel before it finishes.
//
// Paired mode (pair_act): w[0] = gate, w[1] = up; a warp's R rows are R/2 gate rows and
// the same R/2 up rows, and the CTA writes act(gate) * up straight into the down
// product's input (f32 P64), so SwiGLU/GeGLU costs no launch and no pass over memory.
#include "cuda_kern.h"

#include <stdlib.h>
#include <string.h>

#include "kern_util.cuh"
#include "qfmt.cuh"

#define GEMV_WARPS 8 // warps per CTA

struct gemv_mat {
    const uint8_t *codes, *hi, *meta;
    uint64_t code_pitch, hi_pitch, meta_pitch;
    float *y;
    int rows, ldy, ctas;
};
struct gemv_params {
    gemv_mat m[CUDA_MM_MAX_MATS];
    int n, K, ldx, accumulate;
    int wk;          // warps along K per row group (1, 2, 4, 8)
    int pair_act;    // 0, or CUDA_ACT_* + 1 (paired mode, see above)
    float *act_xp;   // paired mode: (T, act_ld) f32 P64 rows
    int act_ld;
    const float *xp; // (T, ldx) f32 P64 rows
};

template <uint32_t F> struct gemv_cfg {
    static constexpr qfmt f = qfmt_of(F);
    static constexpr int QPL = f.cbits == 4 ? 2 : 1; // quarters per lane
    static constexpr int LPC = 4 / QPL;              // lanes per chunk
    static constexpr int CPI = 32 / LPC;             // chunks per warp iteration
    // rows per warp: 4 for plain 4/8-bit codes, 2 where hi bits or 16-bit values make an
    // iteration's registers twice as many (128 registers at most: 2 CTAs per SM)
    static constexpr int R = f.cbits == 32 ? 1 : (f.cbits == 16 || f.hbits) ? 2 : 4;
    static constexpr int NG = f.group == 16 ? 4 : f.group == 32 ? 2 : 1; // scale groups per chunk
};

// The meta bits of chunk ci of a row (what meta_sm needs), one load.
template <uint32_t F>
__device__ __forceinline__ uint4 meta_load(const uint8_t *mrow, int ci) {
    uint4 r = make_uint4(0u, 0u, 0u, 0u);
    if constexpr (F == QT_Q8_0 || F == QT_Q4_0 || F == QT_Q5_0) {
        r.x = __ldg((const unsigned int *)(mrow + (size_t)ci * 4)); // f16 d of groups 2ci, 2ci+1
    } else if constexpr (F == QT_Q4_1 || F == QT_Q5_1) {
        const uint2 v = __ldg((const uint2 *)(mrow + (size_t)ci * 8)); // (d, m) of 2ci, 2ci+1
        r.x = v.x;
        r.y = v.y;
    } else if constexpr (F == QT_MXFP4) {
        r.x = __ldg((const unsigned short *)(mrow + (size_t)ci * 2)); // E8M0 of 2ci, 2ci+1
    } else if constexpr (F == QT_Q4_K || F == QT_Q5_K) {
        r = __ldg((const uint4 *)(mrow + (size_t)(ci >> 2) * 16)); // superblock head
    } else if constexpr (F == QT_Q6_K) {
        const uint8_t *b = mrow + (size_t)(ci >> 2) * 20;
        r.x = __ldg((const unsigned int *)b);                       // d, pad
        r.y = __ldg((const unsigned int *)(b + 4 + 4 * (ci & 3)));  // int8 scales of 4ci..4ci+3
    }
    return r;
}

// Scale s and min m of group gl (0 .. NG-1) of chunk ci from meta_load's bits; rounded
// exactly as group_sm (qfmt.cuh) and quant.c.
template <uint32_t F>
__device__ __forceinline__ void meta_sm(const uint4 &r, int ci, int gl, float &s, float &m) {
    m = 0.0f;
    if constexpr (F == QT_Q8_0 || F == QT_Q4_0 || F == QT_Q5_0) {
        s = f16_bits_to_f32((uint16_t)(r.x >> (16 * gl)));
    } else if constexpr (F == QT_Q4_1 || F == QT_Q5_1) {
        const uint32_t dm = gl ? r.y : r.x;
        s = f16_bits_to_f32((uint16_t)(dm & 0xffffu));
        m = f16_bits_to_f32((uint16_t)(dm >> 16));
    } else if constexpr (F == QT_MXFP4) {
        s = e8m0_half((uint8_t)(r.x >> (8 * gl)));
    } else if constexpr (F == QT_Q4_K || F == QT_Q5_K) {
        const float d = f16_bits_to_f32((uint16_t)(r.x & 0xffffu));
        const float dmin = f16_bits_to_f32((uint16_t)(r.x >> 16));
        const int j = 2 * (ci & 3) + gl; // sub-block of the superblock
        auto sb = [&](int k) -> int {    // scales[k] (bytes 4 + k of the head)
            const uint32_t w = k < 4 ? r.y : k < 8 ? r.z : r.w;
            return (int)((w >> (8 * (k & 3))) & 0xffu);
        };
        int sc, mn;
        if (j < 4) {
            sc = sb(j) & 63;
            mn = sb(j + 4) & 63;
        } else {
            sc = (sb(j + 4) & 0xf) | ((sb(j - 4) >> 6) << 4);
            mn = (sb(j + 4) >> 4) | ((sb(j) >> 6) << 4);
        }
        s = __fmul_rn(d, (float)sc);
        m = -__fmul_rn(dmin, (float)mn);
    } else if constexpr (F == QT_Q6_K) {
        const float d = f16_bits_to_f32((uint16_t)(r.x & 0xffffu));
        s = __fmul_rn(d, (float)(int8_t)(uint8_t)(r.y >> (8 * gl)));
    } else {
        s = 1.0f;
    }
}

// One iteration's loads of a warp's R rows: codes (+ hi bits) and meta of one chunk.
template <uint32_t F> struct gemv_slot {
    quarter q[gemv_cfg<F>::R][gemv_cfg<F>::QPL];
    uint4 mt[gemv_cfg<F>::R];
};

// Where a warp's R rows are: plane bases of (up to) two matrices and each row's index.
struct gemv_rows {
    const uint8_t *codes[2], *hi[2], *meta[2];
    uint32_t code_pitch, hi_pitch, meta_pitch;
};

template <uint32_t F>
__device__ __forceinline__ void gemv_load(gemv_slot<F> &s, const gemv_rows &W, const int *row, bool pair, int ci,
                                          int c0) {
    using C = gemv_cfg<F>;
    constexpr qfmt f = C::f;
    const uint8_t *cr[C::R], *hr[C::R], *mr[C::R];
#pragma unroll
    for (int r = 0; r < C::R; r++) {
        const bool m1 = pair && r >= C::R / 2; // (selects, not an index: no local memory)
        cr[r] = (m1 ? W.codes[1] : W.codes[0]) + (uint64_t)(uint32_t)row[r] * W.code_pitch;
        hr[r] = (m1 ? W.hi[1] : W.hi[0]) + (uint64_t)(uint32_t)row[r] * W.hi_pitch;
        mr[r] = (m1 ? W.meta[1] : W.meta[0]) + (uint64_t)(uint32_t)row[r] * W.meta_pitch;
    }
#pragma unroll
    for (int r = 0; r < C::R; r++) {
        if constexpr (C::QPL == 2) {
            const uint4 v = __ldg((const uint4 *)(cr[r] + (size_t)ci * 32 + 8 * c0));
            s.q[r][0].q.x = v.x;
            s.q[r][0].q.y = v.y;
            s.q[r][1].q.x = v.z;
            s.q[r][1].q.y = v.w;
            if constexpr (f.hbits == 1) {
                const uint32_t h = __ldg((const unsigned int *)(hr[r] + (size_t)ci * 8 + 2 * c0));
                s.q[r][0].hb = h & 0xffffu;
                s.q[r][1].hb = h >> 16;
            } else if constexpr (f.hbits == 2) {
                const uint2 h = __ldg((const uint2 *)(hr[r] + (size_t)ci * 16 + 4 * c0));
                s.q[r][0].hb = h.x;
                s.q[r][1].hb = h.y;
            }
        } else {
            quarter_load<F>(s.q[r][0], cr[r], hr[r], ci, c0);
        }
        if constexpr (f.group != 0) s.mt[r] = meta_load<F>(mr[r], ci);
    }
}

// acc[r] += the lane's part of row r's dot over chunk ci.
template <uint32_t F>
__device__ __forceinline__ void gemv_step(const gemv_slot<F> &s, const float *x, int ci, int c0, float *acc) {
    using C = gemv_cfg<F>;
    constexpr qfmt f = C::f;
    constexpr int R = C::R, NG = C::NG;
    float d[R][NG], sx[NG];
#pragma unroll
    for (int g = 0; g < NG; g++) {
        sx[g] = 0.0f;
#pragma unroll
        for (int r = 0; r < R; r++) d[r][g] = 0.0f;
    }
#pragma unroll
    for (int qq = 0; qq < C::QPL; qq++) {
        const float4 *xv = (const float4 *)(x + (size_t)ci * 64 + 16 * (c0 + qq));
        float xs[16];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float4 v = xv[i];
            xs[4 * i] = v.x; xs[4 * i + 1] = v.y; xs[4 * i + 2] = v.z; xs[4 * i + 3] = v.w;
        }
#pragma unroll
        for (int j = 0; j < 8; j++) {
            // chunk-level group of pair j: 32-groups j >> 2, 16-groups j >> 1 (perm64)
            const int g = NG == 4 ? (j >> 1) : NG == 2 ? (j >> 2) : 0;
            if constexpr (f.has_min) sx[g] += xs[2 * j] + xs[2 * j + 1];
#pragma unroll
            for (int r = 0; r < R; r++) {
                const float2 w = quarter_pair_f32<F>(s.q[r][qq], j);
                d[r][g] = fmaf(w.x, xs[2 * j], fmaf(w.y, xs[2 * j + 1], d[r][g]));
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        if constexpr (f.group == 0) {
            acc[r] += d[r][0];
        } else {
#pragma unroll
            for (int g = 0; g < NG; g++) {
                float sc, mn;
                meta_sm<F>(s.mt[r], ci, g, sc, mn);
                acc[r] = fmaf(sc, d[r][g], acc[r]);
                if constexpr (f.has_min) acc[r] = fmaf(mn, sx[g], acc[r]);
            }
        }
    }
}

__device__ __forceinline__ float gemv_act(float g, int act) {
    if (act == CUDA_ACT_GELU_TANH) {
        const float c = 0.7978845608028654f; // sqrt(2/pi)
        return 0.5f * g * (1.0f + tanhf(c * (g + 0.044715f * g * g * g)));
    }
    return g / (1.0f + expf(-g));
}

template <uint32_t F>
__global__ __launch_bounds__(GEMV_WARPS * 32, 2) void gemv_kernel(const gemv_params p) {
    using C = gemv_cfg<F>;
    constexpr int R = C::R, LPC = C::LPC, CPI = C::CPI;
    __shared__ float red[GEMV_WARPS][R];
    pdl_trigger();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wk = warp % p.wk, wr = warp / p.wk;
    const int rows_cta = (GEMV_WARPS / p.wk) * R;
    int b = blockIdx.x, mi = 0;
    while (mi + 1 < p.n && b >= p.m[mi].ctas) b -= p.m[mi++].ctas;
    const int t = blockIdx.y;
    // the warp's rows (clamped to the matrix: duplicates are computed, never stored)
    const bool pair = p.pair_act != 0;
    gemv_rows W;
    {
        const gemv_mat &M0 = p.m[pair ? 0 : mi], &M1 = p.m[pair ? 1 : mi];
        W.codes[0] = M0.codes; W.hi[0] = M0.hi; W.meta[0] = M0.meta;
        W.codes[1] = M1.codes; W.hi[1] = M1.hi; W.meta[1] = M1.meta;
        W.code_pitch = (uint32_t)M0.code_pitch; W.hi_pitch = (uint32_t)M0.hi_pitch; W.meta_pitch = (uint32_t)M0.meta_pitch;
    }
    int row[R];
    {
        const int nrows = p.m[pair ? 0 : mi].rows;
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int rr = pair ? b * (rows_cta / 2) + wr * (R / 2) + (r % (R / 2 > 0 ? R / 2 : 1))
                                : b * rows_cta + wr * R + r;
            row[r] = min(rr, nrows - 1);
        }
    }
    const int nch = p.K / 64, nit = (nch + CPI - 1) / CPI;
    const int nj = nit > wk ? (nit - wk + p.wk - 1) / p.wk : 0; // iterations wk, wk + p.wk, ...
    const int csub = lane / LPC, c0 = (lane % LPC) * C::QPL;
    auto chunk = [&](int j) { return (wk + j * p.wk) * CPI + csub; };
    gemv_slot<F> s0, s1;
    if (nj > 0 && chunk(0) < nch) gemv_load<F>(s0, W, row, pair, chunk(0), c0);
    if (nj > 1 && chunk(1) < nch) gemv_load<F>(s1, W, row, pair, chunk(1), c0);
    pdl_wait(); // x comes from the kernel before
    const float *x = p.xp + (size_t)t * p.ldx;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;
    for (int j = 0; j < nj; j += 2) {
        int ci = chunk(j);
        if (ci < nch) gemv_step<F>(s0, x, ci, c0, acc);
        if (j + 2 < nj && chunk(j + 2) < nch) gemv_load<F>(s0, W, row, pair, chunk(j + 2), c0);
        if (j + 1 < nj) {
            ci = chunk(j + 1);
            if (ci < nch) gemv_step<F>(s1, x, ci, c0, acc);
            if (j + 3 < nj && chunk(j + 3) < nch) gemv_load<F>(s1, W, row, pair, chunk(j + 3), c0);
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        const float v = warp_sum(acc[r]);
        if (lane == 0) red[warp][r] = v;
    }
    __syncthreads();
    const int i = threadIdx.x;
    if (!p.pair_act) {
        if (i < rows_cta) {
            const int gr = i / R, r = i % R;
            float v = 0.0f;
            for (int k = 0; k < p.wk; k++) v += red[gr * p.wk + k][r];
            const gemv_mat &M = p.m[mi];
            const int row = b * rows_cta + i;
            if (row < M.rows) {
                float *y = M.y + (size_t)t * M.ldy + row;
                *y = p.accumulate ? *y + v : v;
            }
        }
    } else if (R >= 2 && i < rows_cta / 2) {
        constexpr int H = R / 2 > 0 ? R / 2 : 1;
        const int gr = i / H, r = i % H;
        float g = 0.0f, u = 0.0f;
        for (int k = 0; k < p.wk; k++) {
            g += red[gr * p.wk + k][r];
            u += red[gr * p.wk + k][r + H];
        }
        const int row = b * (rows_cta / 2) + i;
        if (row < p.m[0].rows)
            p.act_xp[(size_t)t * p.act_ld + (row & ~63) + inv_perm64(row & 63)] = gemv_act(g, p.pair_act - 1) * u;
    }
}

#define FOR_EACH_QT(X)                                                                      \
    X(QT_F32) X(QT_F16) X(QT_BF16) X(QT_Q8_0) X(QT_Q4_0) X(QT_Q4_1) X(QT_Q5_0) X(QT_Q5_1)    \
    X(QT_Q4_K) X(QT_Q5_K) X(QT_Q6_K) X(QT_MXFP4)

// Warps along K: up to 8, leaving each warp at least two iterations where the row has
// them (both register slots loaded before the first use); cuda_gemv_wk_set or
// SPARKD_GEMV_WK=1|2|4|8 override it (tuning).
static int g_wk = -1;
extern "C" void cuda_gemv_wk_set(int wk) { g_wk = wk == 1 || wk == 2 || wk == 4 || wk == 8 ? wk : 0; }
static int gemv_wk(uint32_t type, int K) {
    if (g_wk < 0) {
        const char *s = getenv("SPARKD_GEMV_WK");
        cuda_gemv_wk_set(s ? atoi(s) : 0);
    }
    if (g_wk > 0) return g_wk;
    const int cpi = qfmt_of(type).cbits == 4 ? 16 : 8;
    const int nit = (K / 64 + cpi - 1) / cpi;
    int wk = 1;
    while (wk * 2 <= GEMV_WARPS && wk * 4 <= nit) wk *= 2;
    return wk;
}

// Launched by cuda_matmul (gemm.cu), which has checked the arguments.
int cuda_gemv_launch(const cuda_mm_args *a, const cuda_mmin *x, int T, void *stream, err *e) {
    gemv_params p;
    memset(&p, 0, sizeof p);
    const uint32_t type = a->w[0]->type;
    p.n = a->n;
    p.K = x->K;
    p.ldx = x->K;
    p.xp = x->xp;
    p.accumulate = a->accumulate;
    p.wk = gemv_wk(type, x->K);
    const qfmt qf = qfmt_of(type);
    const int R = qf.cbits == 32 ? 1 : (qf.cbits == 16 || qf.hbits) ? 2 : 4; // gemv_cfg::R
    const int rows_cta = (GEMV_WARPS / p.wk) * R;
    if (a->pair_act) {
        p.pair_act = a->pair_act;
        p.act_xp = a->act_out->xp;
        p.act_ld = a->act_out->K;
        a->act_out->T = T;
    }
    int ctas = 0;
    for (int i = 0; i < a->n; i++) {
        const cuda_weight *w = a->w[i];
        const wplanes pl = wplanes_of(w->type, w->rows, w->cols);
        gemv_mat &m = p.m[i];
        m.codes = (const uint8_t *)w->base + pl.codes;
        m.hi = (const uint8_t *)w->base + pl.hi;
        m.meta = (const uint8_t *)w->base + pl.meta;
        m.code_pitch = pl.code_pitch;
        m.hi_pitch = pl.hi_pitch;
        m.meta_pitch = pl.meta_pitch;
        m.y = a->y[i];
        m.rows = (int)w->rows;
        m.ldy = a->ldy[i];
        if (a->pair_act) m.ctas = i == 0 ? (m.rows + rows_cta / 2 - 1) / (rows_cta / 2) : 0;
        else m.ctas = (m.rows + rows_cta - 1) / rows_cta;
        ctas += m.ctas;
    }
    dim3 grid((unsigned)ctas, (unsigned)T);
    switch (type) {
#define X(TY)                                                                                \
    case TY: CUDA_TRY(cuda_launch(gemv_kernel<TY>, grid, dim3(GEMV_WARPS * 32), 0, stream, p)); break;
        FOR_EACH_QT(X)
#undef X
    }
    return 0;
}
