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
// next GEMV streams its weights while the kernel before it finishes. The int8 kernels (round
// 5, SPARKD_GEMV_PRE) also prefetch the iterations past their register ring into L2 there.
//
// Paired mode (pair_act): w[0] = gate, w[1] = up; a warp's R rows are R/2 gate rows and
// the same R/2 up rows, and the CTA writes act(gate) * up straight into the down
// product's input (f32 P64), so SwiGLU/GeGLU costs no launch and no pass over memory.
#include "cuda_kern.h"

#include <algorithm>
#include <pthread.h>
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
    int nq;          // gemv4: row quads of the product (m[i].ctas = quads of matrix i there)
    int wk;          // warps along K per row group (1, 2, 4, 8)
    int pair_act;    // 0, or CUDA_ACT_* + 1 (paired mode, see above)
    float *act_xp;   // paired mode: (T, act_ld) f32 P64 rows
    int act_ld;
    const float *xp; // (T, ldx) f32 P64 rows
    int pre;         // int8 path: 1 = the PRE kernels (round 5: gdq_quantize8, Q4_K step V 1/2, L2 prefetch if pf > 0), 0 = round 4
    int pf;          // int8 path: warp iterations past the register ring prefetched into L2 before pdl_wait
    unsigned long long *trace; // PRE kernels, benches only (cuda_gemv_trace_set): (gridDim.y, gridDim.x, GEMV_TRACE) globaltimer ns, or NULL
};

// Trace points of a CTA (thread 0, %globaltimer): 0 start, 1 ring loads issued (before
// pdl_wait), 2 pdl_wait returned, 3 x quantized (after the barrier), 4 all warps done.
#define GEMV_TRACE 5
__device__ __forceinline__ void gemv_trace(const gemv_params &p, int k) {
    if (p.trace && threadIdx.x == 0) {
        unsigned long long t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        p.trace[((size_t)blockIdx.y * gridDim.x + blockIdx.x) * GEMV_TRACE + k] = t;
    }
}

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

// ------------------------------------------------------------------- int8 path (fast precision)
//
// The `fast` decode product (engine precision fast, or SPARKD_GEMV_DP4A=1 to force it for
// an A/B): the activation row is quantized to int8 in blocks of 32 (d = amax / 127,
// q = roundf(x / d), as llama.cpp's q8_1) and each 4 weight codes times 4 activation
// bytes are one __dp4a; the per-block scales multiply the int32 partial sums in f32.
// Every CTA quantizes the row itself into shared memory after pdl_wait (K floats read from
// L2, ~3-25% of the CTA's weight bytes at >= 16 rows per CTA), so the path needs no extra
// launch, no scratch memory and no change to the producers: the paired gate/up product
// still writes the down product's f32 P64 input, which the down product quantizes again.
// Result: exactly the product of the dequantized weights with the dequantized int8
// activation (q * d), up to f32 rounding order; against the f32 product the error of an
// output is at most sum over elements |w| * d_block / 2 (selftest prints that bound).
//
// Shared layout (K % 64 == 0): xq[K] int8 in P64 order, except Q4_K/Q4_0 where each run of
// 8 positions is stored as positions 0,4,1,5,2,6,3,7 (the order of a code word's low and
// high nibbles, so a word's nibbles need one mask each and no byte permute);
// xd[K / 32] the block scales d; xs[K / SG] per-block sums: Q4_K d * sum(q) over 32
// (times the min), Q4_0 8 * sum(q) over 32 and Q6_K 32 * sum(q) over 16 (the code offsets).
template <uint32_t F> struct gdq_cfg {
    static constexpr qfmt f = qfmt_of(F);
    static constexpr bool nib = F == QT_Q4_K || F == QT_Q4_0;
    static constexpr int SG = F == QT_Q6_K ? 16 : 32;
    static constexpr int LPC = f.cbits == 4 ? 2 : 4; // lanes per 64-element chunk
    static constexpr int CPI = 32 / LPC;
    static constexpr int R = 4;                       // rows per warp
};
static bool gdq_type(uint32_t t) { return t == QT_Q8_0 || t == QT_Q4_K || t == QT_Q6_K || t == QT_Q4_0; }
static size_t gdq_smem(int K) { return (size_t)K + (size_t)(K / 32) * 4 + (size_t)(K / 16) * 4; }

// Quantizes row x (K f32, P64) into shared memory; called by all threads, ends synchronized.
template <uint32_t F>
__device__ __forceinline__ void gdq_quantize(const float *__restrict__ x, int K, int8_t *xq, float *xd, float *xs) {
    using C = gdq_cfg<F>;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nch = K / 64;
    // chunks per warp whose loads go out together (K = 4096: all of them; Q6_K 4: registers)
    constexpr int U = F == QT_Q6_K ? 4 : 8;
    for (int c0 = warp; c0 < nch; c0 += GEMV_WARPS * U) {
        float2 v[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int ci = c0 + GEMV_WARPS * u;
            v[u] = ci < nch ? __ldg((const float2 *)(x + (size_t)ci * 64 + 2 * lane)) : make_float2(0.0f, 0.0f);
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int ci = c0 + GEMV_WARPS * u;
            if (ci >= nch) break; // warp-uniform
            // positions 2 lane, 2 lane + 1: 32-block (lane >> 2) & 1, 16-block 2 * that + ((lane >> 1) & 1)
            float a = fmaxf(fabsf(v[u].x), fabsf(v[u].y));
            a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, 1));
            a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, 2));
            a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, 8));
            a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, 16));
            const float d = a / 127.0f;
            const int q0 = a == 0.0f ? 0 : (int)roundf(v[u].x / d);
            const int q1 = a == 0.0f ? 0 : (int)roundf(v[u].y / d);
            const int g = (lane >> 2) & 1;
            if constexpr (C::nib) {
                const int base = ci * 64 + ((2 * lane) & ~7), qd = (2 * lane) & 7;
                xq[base + 2 * (qd & 3) + (qd >> 2)] = (int8_t)q0;
                xq[base + 2 * ((qd + 1) & 3) + ((qd + 1) >> 2)] = (int8_t)q1;
            } else {
                *(char2 *)(xq + ci * 64 + 2 * lane) = make_char2((signed char)q0, (signed char)q1);
            }
            if ((lane & 27) == 0) xd[2 * ci + g] = d;
            if constexpr (F != QT_Q8_0) {
                int s = q0 + q1;
                s += __shfl_xor_sync(0xffffffffu, s, 1);
                s += __shfl_xor_sync(0xffffffffu, s, 8);
                s += __shfl_xor_sync(0xffffffffu, s, 16);
                if constexpr (F == QT_Q6_K) {
                    if ((lane & 25) == 0) xs[4 * ci + 2 * g + ((lane >> 1) & 1)] = 32.0f * (float)s;
                } else {
                    s += __shfl_xor_sync(0xffffffffu, s, 2);
                    if ((lane & 27) == 0) xs[2 * ci + g] = F == QT_Q4_0 ? 8.0f * (float)s : d * (float)s;
                }
            }
        }
    }
    __syncthreads();
}

// gdq_quantize's result bit for bit (the same max, the same rounded quotients, exact integer
// sums) with a shorter chain: lane l of a warp pass owns the run of 8
// consecutive P64 positions 8 (l & 7) .. +7 of chunk c + (l >> 3) (two float4 loads), so a
// 32-block (the runs of one parity in a chunk, 4 lanes) needs 2 shuffle rounds per max and
// per sum instead of 4, a lane does 8 independent divisions (one reciprocal, no branches where
// the block's scale is in range), and the run's 8 bytes leave in one 8-byte store (Q4_K/Q4_0:
// in the nibble order 0,4,1,5,2,6,3,7). Ends synchronized.
// PM (q4v, round 7): the 16-byte pieces piece-major (piece k of chunk ci at (k nch + ci) 16):
// lanes that each own one chunk then read piece k of consecutive chunks without bank conflicts.
// NW: warps of the CTA (q4v: 8 or 16).
template <uint32_t F, bool PM = false, int NW = GEMV_WARPS>
__device__ __forceinline__ void gdq_quantize8(const float *__restrict__ x, int K, int8_t *xq, float *xd, float *xs) {
    using C = gdq_cfg<F>;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nch = K / 64, m = lane & 7, g = m & 1;
    // passes whose loads go out together (K = 4096: all; Q6_K: registers); q4v with 16 warps: Q8_0 3
    // (K 12288 in one round), Q6_K 2, Q4_K 2 (3 spills beside its ring)
    constexpr int U = NW > GEMV_WARPS ? (F == QT_Q8_0 ? 3 : 2) : F == QT_Q6_K ? 1 : 2;
    constexpr int PS = NW * 4;           // chunks per pass of the CTA
    // rows longer than one loop (K > 4096; down: K 12288 = 3 loops): the later passes' lines
    // into L1 now (lanes 0 and 4 of each run group: one 128-byte line each), so each loop
    // waits for L1, not for another L2 round trip
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if ((m & 3) == 0)
        for (int ci = warp * 4 + PS * U + (lane >> 3); ci < nch; ci += PS)
            asm volatile("prefetch.global.L1 [%0];" ::"l"(__cvta_generic_to_global(x + (size_t)ci * 64 + 8 * m)));
#endif
    for (int c0 = warp * 4; c0 < nch; c0 += PS * U) {
        float4 v[U][2];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int ci = c0 + PS * u + (lane >> 3);
            const float4 *src = (const float4 *)(x + (size_t)ci * 64 + 8 * m);
            v[u][0] = ci < nch ? __ldg(src) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            v[u][1] = ci < nch ? __ldg(src + 1) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (c0 + PS * u >= nch) break; // warp-uniform; lanes past nch compute on zeros, store nothing
            const int ci = c0 + PS * u + (lane >> 3);
            const float e[8] = {v[u][0].x, v[u][0].y, v[u][0].z, v[u][0].w, v[u][1].x, v[u][1].y, v[u][1].z, v[u][1].w};
            float a = fabsf(e[0]);
#pragma unroll
            for (int i = 1; i < 8; i++) a = fmaxf(a, fabsf(e[i]));
            a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, 2));
            a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, 4));
            const float d = a / 127.0f;
            // e / d as div.rn.f32's fast path computes it (ptxas: MUFU.RCP, one Newton step,
            // the quotient, one residual correction: these instructions, so these bits) without
            // its per-division range check and branch: for a in [2^-80, 2^100] every operand
            // and intermediate of a quotient >= 1/4 in magnitude is normal (so the fast path is
            // the IEEE quotient), and smaller quotients round to 0 either way. Other blocks
            // (a = 0, tiny, huge, inf, NaN): the IEEE division.
            const bool fast = a >= 0x1p-80f && a <= 0x1p100f;
            float rc = 0.0f;
            if (fast) {
                float r;
                asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(d));
                rc = fmaf(r, fmaf(-d, r, 1.0f), r);
            }
            // the 8 codes into two words as they come (few live registers: Q6_K's ring)
            uint32_t w0 = 0u, w1 = 0u;
            int s0 = 0, s1 = 0; // sums of positions 0..3 and 4..7
#pragma unroll
            for (int i = 0; i < 8; i++) {
                float qf;
                if (fast) {
                    const float q0 = e[i] * rc;
                    qf = fmaf(rc, fmaf(-d, q0, e[i]), q0);
                } else {
                    qf = e[i] / d;
                }
                const int qi = a == 0.0f ? 0 : (int)roundf(qf);
                const int slot = C::nib ? 2 * (i & 3) + (i >> 2) : i;
                if (slot < 4) w0 |= (uint32_t)(qi & 0xff) << (8 * slot);
                else w1 |= (uint32_t)(qi & 0xff) << (8 * (slot - 4));
                if (i < 4) s0 += qi;
                else s1 += qi;
            }
            const uint2 w = make_uint2(w0, w1);
            const bool st = ci < nch;
            if (st) *(uint2 *)(xq + (PM ? ((m >> 1) * nch + ci) * 16 + 8 * (m & 1) : ci * 64 + 8 * m)) = w;
            if (st && m < 2) xd[2 * ci + g] = d;
            if constexpr (F == QT_Q6_K) {
                // s0, s1: 16-blocks 2g, 2g + 1
                s0 += __shfl_xor_sync(0xffffffffu, s0, 2);
                s1 += __shfl_xor_sync(0xffffffffu, s1, 2);
                s0 += __shfl_xor_sync(0xffffffffu, s0, 4);
                s1 += __shfl_xor_sync(0xffffffffu, s1, 4);
                if (st && m < 2) *(float2 *)(xs + 4 * ci + 2 * g) = make_float2(32.0f * (float)s0, 32.0f * (float)s1);
            } else if constexpr (F != QT_Q8_0) {
                int s = s0 + s1;
                s += __shfl_xor_sync(0xffffffffu, s, 2);
                s += __shfl_xor_sync(0xffffffffu, s, 4);
                if (st && m < 2) xs[2 * ci + g] = F == QT_Q4_0 ? 8.0f * (float)s : d * (float)s;
            }
        }
    }
    __syncthreads();
}

// [off0, off1) of row `row` of a plane (base, pitch) into L2 (no registers written), widened
// to 16-byte bounds (planes start 256-aligned and are padded to 256: the widened range
// stays inside the weight's allocation). sm_90+: one bulk prefetch; older: nothing.
__device__ __forceinline__ void l2_prefetch(const uint8_t *base, uint64_t pitch, int row, uint32_t off0, uint32_t off1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const uint64_t a = (uint64_t)__cvta_generic_to_global(base + (uint64_t)(uint32_t)row * pitch);
    const uint64_t a0 = (a + off0) & ~(uint64_t)15, a1 = (a + off1 + 15) & ~(uint64_t)15;
    if (a1 > a0) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(a0), "r"((uint32_t)(a1 - a0)));
#else
    (void)base; (void)pitch; (void)row; (void)off0; (void)off1;
#endif
}

// Plane pl (0 codes, 1 meta, 2 hi: Q6_K) of chunks [ci0, ci1) of one row into L2: the bytes
// gdq_load reads for those chunks.
template <uint32_t F>
__device__ __forceinline__ void gdq_prefetch(const gemv_mat &M, int row, int ci0, int ci1, int pl) {
    constexpr qfmt f = qfmt_of(F);
    if (pl == 0) {
        constexpr uint32_t cb = f.cbits == 8 ? 64 : 32; // code bytes per chunk
        l2_prefetch(M.codes, M.code_pitch, row, ci0 * cb, ci1 * cb);
    } else if (pl == 1) {
        if constexpr (F == QT_Q4_K || F == QT_Q6_K) { // one meta entry per 4 chunks
            l2_prefetch(M.meta, M.meta_pitch, row, (ci0 >> 2) * f.meta_bytes, ((ci1 + 3) >> 2) * f.meta_bytes);
        } else {                                        // two entries per chunk
            l2_prefetch(M.meta, M.meta_pitch, row, ci0 * 2 * f.meta_bytes, ci1 * 2 * f.meta_bytes);
        }
    } else if constexpr (F == QT_Q6_K) {
        l2_prefetch(M.hi, M.hi_pitch, row, ci0 * 16, ci1 * 16);
    }
}
template <uint32_t F> struct gdq_pf {
    static constexpr int NP = F == QT_Q6_K ? 3 : 2; // planes
    static constexpr int IT = 4 * NP;               // prefetches of a warp iteration (4 rows x planes)
};

// One iteration's loads of a row: codes (16 bytes per lane), hi bits, meta.
template <uint32_t F> struct gdq_slot {
    uint4 c[gdq_cfg<F>::R];
    uint2 h[gdq_cfg<F>::R];
    uint4 mt[gdq_cfg<F>::R];
};

template <uint32_t F>
__device__ __forceinline__ void gdq_load(gdq_slot<F> &s, const gemv_rows &W, const int *row, bool pair, int ci,
                                         int c0) {
    using C = gdq_cfg<F>;
#pragma unroll
    for (int r = 0; r < C::R; r++) {
        const bool m1 = pair && r >= C::R / 2;
        const uint8_t *cr = (m1 ? W.codes[1] : W.codes[0]) + (uint64_t)(uint32_t)row[r] * W.code_pitch;
        const uint8_t *mr = (m1 ? W.meta[1] : W.meta[0]) + (uint64_t)(uint32_t)row[r] * W.meta_pitch;
        if constexpr (C::f.cbits == 8) {
            s.c[r] = __ldg((const uint4 *)(cr + (size_t)ci * 64 + 16 * c0));
        } else {
            s.c[r] = __ldg((const uint4 *)(cr + (size_t)ci * 32 + 8 * c0));
        }
        if constexpr (F == QT_Q6_K) {
            const uint8_t *hr = (m1 ? W.hi[1] : W.hi[0]) + (uint64_t)(uint32_t)row[r] * W.hi_pitch;
            s.h[r] = __ldg((const uint2 *)(hr + (size_t)ci * 16 + 4 * c0));
        }
        if constexpr (F == QT_Q4_K) {
            // the 8 lanes of a superblock (lanes 8k..8k+7: chunks 4k'..4k'+3) each load one
            // word of its 16-byte head; gdq_step gathers the head by shuffles (registers)
            s.mt[r].x = __ldg((const unsigned int *)(mr + (size_t)(ci >> 2) * 16) + (threadIdx.x & 3));
        } else {
            s.mt[r] = meta_load<F>(mr, ci);
        }
    }
}

// Q6_K: the 6-bit codes of word w (0, 1) of a quarter (code word cw, hi-plane word hb) as two
// int8x4 vectors A (positions 0..3 of the word's run of 8) and B (4..7), unsigned 0..63.
__device__ __forceinline__ void q6_word(uint32_t cw, uint32_t hb, int w, uint32_t &A, uint32_t &B) {
    const uint32_t L = cw & 0x0f0f0f0fu, H = (cw >> 4) & 0x0f0f0f0fu; // positions 0,4,1,5 / 2,6,3,7
    A = __byte_perm(L, H, 0x6420);
    B = __byte_perm(L, H, 0x7531);
    const uint32_t hh = __byte_perm(hb >> (8 * w), 0u, 0x2020); // even, odd, even, odd hi bytes
    const uint32_t ha = (hh & 0x00000303u) | ((hh >> 2) & 0x03030000u);
    const uint32_t hbb = ((hh >> 4) & 0x00000303u) | ((hh >> 6) & 0x03030000u);
    A |= ha << 4;
    B |= hbb << 4;
}

// Q4_K: the 6-bit scale sc and min mn of sub-block j (0..7) from a superblock head r
// (scales in r.y, r.z, r.w), as meta_sm computes them, without its branch on j < 4 (j
// differs between the lanes of a warp: the branch runs both sides one after the other).
__device__ __forceinline__ void q4k_scmn(const uint4 &r, int j, int &sc, int &mn) {
    const int sh = 8 * (j & 3);
    const int by = (int)((r.y >> sh) & 0xffu), bz = (int)((r.z >> sh) & 0xffu), bw = (int)((r.w >> sh) & 0xffu);
    sc = j < 4 ? (by & 63) : ((bw & 0xf) | ((by >> 6) << 4));
    mn = j < 4 ? (bz & 63) : ((bw >> 4) | ((bz >> 6) << 4));
}

// acc[r] += the lane's part of row r's dot over chunk ci.
// V (Q4_K only): 0 = round 4; 1 = the scales by q4k_scmn; 2 = also full-warp shuffles (the
// caller guarantees that all 32 lanes run the step: K % 1024 == 0). The same values either way.
template <uint32_t F, int V = 0>
__device__ __forceinline__ void gdq_step(const gdq_slot<F> &s, const int8_t *xq, const float *xd, const float *xs,
                                         int ci, int c0, float *acc) {
    using C = gdq_cfg<F>;
    if constexpr (F == QT_Q8_0) {
        const uint4 X = *(const uint4 *)(xq + ci * 64 + 16 * c0);
        const float2 dx = *(const float2 *)(xd + 2 * ci);
#pragma unroll
        for (int r = 0; r < C::R; r++) {
            const int i0 = __dp4a((int)s.c[r].x, (int)X.x, __dp4a((int)s.c[r].y, (int)X.y, 0));
            const int i1 = __dp4a((int)s.c[r].z, (int)X.z, __dp4a((int)s.c[r].w, (int)X.w, 0));
            float s0, s1, m;
            meta_sm<F>(s.mt[r], ci, 0, s0, m);
            meta_sm<F>(s.mt[r], ci, 1, s1, m);
            acc[r] = fmaf(s0 * dx.x, (float)i0, acc[r]);
            acc[r] = fmaf(s1 * dx.y, (float)i1, acc[r]);
        }
    } else if constexpr (F == QT_Q4_K || F == QT_Q4_0) {
        const uint4 X0 = *(const uint4 *)(xq + ci * 64 + 16 * c0);
        const uint4 X1 = *(const uint4 *)(xq + ci * 64 + 16 * c0 + 16);
        const float2 dx = *(const float2 *)(xd + 2 * ci);
        const int own = c0 >> 1; // this lane adds the min / offset term of block `own`
        const float so = xs[2 * ci + own];
        constexpr uint32_t M = 0x0f0f0f0fu;
#pragma unroll
        for (int r = 0; r < C::R; r++) {
            const uint4 v = s.c[r];
            int i0 = __dp4a((int)(v.x & M), (int)X0.x, __dp4a((int)((v.x >> 4) & M), (int)X0.y, 0));
            i0 = __dp4a((int)(v.z & M), (int)X1.x, __dp4a((int)((v.z >> 4) & M), (int)X1.y, i0));
            int i1 = __dp4a((int)(v.y & M), (int)X0.z, __dp4a((int)((v.y >> 4) & M), (int)X0.w, 0));
            i1 = __dp4a((int)(v.w & M), (int)X1.z, __dp4a((int)((v.w >> 4) & M), (int)X1.w, i1));
            float s0, s1, m0, m1;
            uint4 mt;
            if constexpr (F == QT_Q4_K) {
                // the superblock's 8 lanes run this step together (K % 256 == 0, chunk
                // groups of 4 start at multiples of 4): mask them only
                const int l0 = (threadIdx.x & 31) & ~7;
                const unsigned gm = V == 2 ? 0xffffffffu : 0xffu << l0;
                mt.x = __shfl_sync(gm, s.mt[r].x, l0);
                mt.y = __shfl_sync(gm, s.mt[r].x, l0 + 1);
                mt.z = __shfl_sync(gm, s.mt[r].x, l0 + 2);
                mt.w = __shfl_sync(gm, s.mt[r].x, l0 + 3);
                // the two lanes of a chunk each unpack one sub-block's 6-bit scale and min
                // (lane parity = own) and swap scales: one unpack per lane instead of two
                float sme, mme;
                if constexpr (V == 0) {
                    meta_sm<F>(mt, ci, own, sme, mme);
                } else { // meta_sm's arithmetic, q4k_scmn's unpack
                    int sc, mn;
                    q4k_scmn(mt, 2 * (ci & 3) + own, sc, mn);
                    sme = __fmul_rn(f16_bits_to_f32((uint16_t)(mt.x & 0xffffu)), (float)sc);
                    mme = -__fmul_rn(f16_bits_to_f32((uint16_t)(mt.x >> 16)), (float)mn);
                }
                const float sot = __shfl_xor_sync(gm, sme, 1);
                s0 = own ? sot : sme;
                s1 = own ? sme : sot;
                m0 = m1 = mme;
            } else {
                mt = s.mt[r];
                meta_sm<F>(mt, ci, 0, s0, m0);
                meta_sm<F>(mt, ci, 1, s1, m1);
            }
            if constexpr (F == QT_Q4_K) {
                acc[r] = fmaf(s0 * dx.x, (float)i0, acc[r]);
                acc[r] = fmaf(s1 * dx.y, (float)i1, acc[r]);
                acc[r] = fmaf(m0, so, acc[r]); // this lane's block: m * d * sum(q) over all 32
            } else {
                acc[r] = fmaf(s0 * dx.x, (float)i0 - (own ? 0.0f : so), acc[r]);
                acc[r] = fmaf(s1 * dx.y, (float)i1 - (own ? so : 0.0f), acc[r]);
            }
        }
    } else { // Q6_K: 16-element blocks 2w + (0: positions 0..3, 1: 4..7 of each run)
        const uint4 X0 = *(const uint4 *)(xq + ci * 64 + 16 * c0);
        const uint4 X1 = *(const uint4 *)(xq + ci * 64 + 16 * c0 + 16);
        const float2 dx = *(const float2 *)(xd + 2 * ci);
        const int own = c0 >> 1; // this lane subtracts the offsets of blocks 2 own, 2 own + 1
        const float2 so = *(const float2 *)(xs + 4 * ci + 2 * own);
#pragma unroll
        for (int r = 0; r < C::R; r++) {
            const uint4 v = s.c[r];
            uint32_t A, B;
            int i[4];
            q6_word(v.x, s.h[r].x, 0, A, B);
            i[0] = __dp4a((int)A, (int)X0.x, 0);
            i[1] = __dp4a((int)B, (int)X0.y, 0);
            q6_word(v.y, s.h[r].x, 1, A, B);
            i[2] = __dp4a((int)A, (int)X0.z, 0);
            i[3] = __dp4a((int)B, (int)X0.w, 0);
            q6_word(v.z, s.h[r].y, 0, A, B);
            i[0] = __dp4a((int)A, (int)X1.x, i[0]);
            i[1] = __dp4a((int)B, (int)X1.y, i[1]);
            q6_word(v.w, s.h[r].y, 1, A, B);
            i[2] = __dp4a((int)A, (int)X1.z, i[2]);
            i[3] = __dp4a((int)B, (int)X1.w, i[3]);
#pragma unroll
            for (int g = 0; g < 4; g++) {
                float sg, m;
                meta_sm<F>(s.mt[r], ci, g, sg, m);
                const float off = (g >> 1) == own ? ((g & 1) ? so.y : so.x) : 0.0f;
                acc[r] = fmaf(sg * ((g >> 1) ? dx.y : dx.x), (float)i[g] - off, acc[r]);
            }
        }
    }
}

// PRE (round 5; host: p.pre, SPARKD_GEMV_PRE=0 = false): the L2 prefetch before pdl_wait,
// gdq_quantize8 and gdq_step V 1/2; false = the round-4 kernel as it was.
template <uint32_t F, bool PRE>
__global__ __launch_bounds__(GEMV_WARPS * 32, 2) void gemv_dq_kernel(const gemv_params p) {
    using C = gdq_cfg<F>;
    constexpr int R = C::R, LPC = C::LPC, CPI = C::CPI;
    extern __shared__ __align__(16) uint8_t gdq_sm[];
    __shared__ float red[GEMV_WARPS][R];
    pdl_trigger();
    if constexpr (PRE) gemv_trace(p, 0);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wk = warp % p.wk, wr = warp / p.wk;
    const int rows_cta = (GEMV_WARPS / p.wk) * R;
    int b = blockIdx.x, mi = 0;
    while (mi + 1 < p.n && b >= p.m[mi].ctas) b -= p.m[mi++].ctas;
    const int t = blockIdx.y;
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
            const int rr = pair ? b * (rows_cta / 2) + wr * (R / 2) + (r % (R / 2)) : b * rows_cta + wr * R + r;
            row[r] = min(rr, nrows - 1);
        }
    }
    const int K = p.K, nch = K / 64, nit = (nch + CPI - 1) / CPI;
    const int nj = nit > wk ? (nit - wk + p.wk - 1) / p.wk : 0;
    const int csub = lane / LPC, c0 = (lane % LPC) * (4 / LPC);
    auto chunk = [&](int j) { return (wk + j * p.wk) * CPI + csub; };
    gdq_slot<F> s0, s1;
    if (nj > 0 && chunk(0) < nch) gdq_load<F>(s0, W, row, pair, chunk(0), c0);
    if (nj > 1 && chunk(1) < nch) gdq_load<F>(s1, W, row, pair, chunk(1), c0);
    // iterations 2 .. 1 + pf into L2 while the kernel before runs (lane: one row's plane)
    if (PRE && p.pf > 0 && nj > 2) {
        using PF = gdq_pf<F>;
        const int n = min(nj - 2, p.pf) * PF::IT;
        for (int it = lane; it < n; it += 32) {
            const int j = 2 + it / PF::IT, r = (it % PF::IT) & 3, pl = (it % PF::IT) >> 2;
            const int ci0 = (wk + j * p.wk) * CPI;
            if (ci0 >= nch) continue;
            const int rr = r == 0 ? row[0] : r == 1 ? row[1] : r == 2 ? row[2] : row[3];
            gdq_prefetch<F>(p.m[pair ? (r >= 2 ? 1 : 0) : mi], rr, ci0, min(ci0 + CPI, nch), pl);
        }
    }
    if constexpr (PRE) gemv_trace(p, 1);
    pdl_wait(); // x comes from the kernel before
    if constexpr (PRE) gemv_trace(p, 2);
    int8_t *xq = (int8_t *)gdq_sm;
    float *xd = (float *)(gdq_sm + K), *xs = xd + K / 32;
    // (Q6_K here keeps gdq_quantize: with its 2-slot ring of hi planes live, quantize8 spills on sm_90a)
    if (F != QT_Q6_K && PRE) gdq_quantize8<F>(p.xp + (size_t)t * p.ldx, K, xq, xd, xs);
    else gdq_quantize<F>(p.xp + (size_t)t * p.ldx, K, xq, xd, xs);
    if constexpr (PRE) gemv_trace(p, 3);
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;
    // all 32 lanes in every step (Q4_K's full-warp shuffles): whole iterations of chunks
    const bool full = PRE && F == QT_Q4_K && nch % CPI == 0;
    auto step = [&](const gdq_slot<F> &sl, int ci) {
        if constexpr (PRE && F == QT_Q4_K) {
            if (full) gdq_step<F, 2>(sl, xq, xd, xs, ci, c0, acc);
            else gdq_step<F, 1>(sl, xq, xd, xs, ci, c0, acc);
        } else {
            gdq_step<F>(sl, xq, xd, xs, ci, c0, acc);
        }
    };
    for (int j = 0; j < nj; j += 2) {
        int ci = chunk(j);
        if (ci < nch) step(s0, ci);
        if (j + 2 < nj && chunk(j + 2) < nch) gdq_load<F>(s0, W, row, pair, chunk(j + 2), c0);
        if (j + 1 < nj) {
            ci = chunk(j + 1);
            if (ci < nch) step(s1, ci);
            if (j + 3 < nj && chunk(j + 3) < nch) gdq_load<F>(s1, W, row, pair, chunk(j + 3), c0);
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
            const int rw = b * rows_cta + i;
            if (rw < M.rows) {
                float *y = M.y + (size_t)t * M.ldy + rw;
                *y = p.accumulate ? *y + v : v;
            }
        }
    } else if (i < rows_cta / 2) {
        constexpr int H = R / 2;
        const int gr = i / H, r = i % H;
        float g = 0.0f, u = 0.0f;
        for (int k = 0; k < p.wk; k++) {
            g += red[gr * p.wk + k][r];
            u += red[gr * p.wk + k][r + H];
        }
        const int rw = b * (rows_cta / 2) + i;
        if (rw < p.m[0].rows)
            p.act_xp[(size_t)t * p.act_ld + (rw & ~63) + inv_perm64(rw & 63)] = gemv_act(g, p.pair_act - 1) * u;
    }
    if constexpr (PRE) {
        if (p.trace) {
            __syncthreads();
            gemv_trace(p, 4);
        }
    }
}

// ------------------------------------------------------------------- gemv4 (round 4)
//
// The int8 path as a persistent stream: the grid is what fits on the device at once (CTAs
// per SM from the occupancy query x SMs), each CTA quantizes x once into shared memory, and
// each warp walks row quads gw, gw + GW, gw + 2 GW, ... (GW = warps in the grid; a quad = 4
// rows of one matrix, or 2 gate + the same 2 up rows in paired mode) over the whole of K,
// with a register ring of NS iterations (3 for 4/8-bit codes, 2 for Q6_K's hi plane) that
// runs on across quads: the loads of the next quad go out while the warp finishes this
// one, so a warp's bytes in flight never drop to zero between rows, there is no wave tail
// and no second CTA start per SM, and x is read and quantized once per CTA instead of once
// per 32 rows (gate+up: 264 instead of 768 times on an H200, output head 264 instead of
// 4748). The step (gdq_step) and loads (gdq_load) are gemv_dq_kernel's; a warp owns its
// rows whole (no K split), so outputs leave by a warp sum, no shared memory, no barrier.
// Used where there are at least as many quads as resident warps (the big products on an
// H200; every Qwen3-8B product on a 48-SM GB10); SPARKD_GEMV4_OLD=1 keeps gemv_dq_kernel.
template <uint32_t F> struct g4_cfg {
    static constexpr int NS = F == QT_Q6_K ? 2 : 3; // register ring depth (iterations)
};

// Matrix mi and first row r0 of quad q (non-paired: m[i].ctas = quads of matrix i).
__device__ __forceinline__ void g4_locate(const gemv_params &p, int q, int &mi, int &r0) {
    mi = 0;
    if (p.pair_act) {
        r0 = 2 * q;
        return;
    }
    while (mi + 1 < p.n && q >= p.m[mi].ctas) q -= p.m[mi++].ctas;
    r0 = 4 * q;
}

// Plane bases and the 4 row indices (clamped: duplicates are computed, never stored) of quad q.
__device__ __forceinline__ void g4_rows(const gemv_params &p, int q, gemv_rows &W, int *row) {
    int mi, r0;
    g4_locate(p, q, mi, r0);
    const bool pair = p.pair_act != 0;
    const gemv_mat &M0 = p.m[pair ? 0 : mi], &M1 = p.m[pair ? 1 : mi];
    W.codes[0] = M0.codes; W.hi[0] = M0.hi; W.meta[0] = M0.meta;
    W.codes[1] = M1.codes; W.hi[1] = M1.hi; W.meta[1] = M1.meta;
    W.code_pitch = (uint32_t)M0.code_pitch; W.hi_pitch = (uint32_t)M0.hi_pitch; W.meta_pitch = (uint32_t)M0.meta_pitch;
    const int nrows = M0.rows;
#pragma unroll
    for (int r = 0; r < 4; r++) row[r] = min(pair ? r0 + (r & 1) : r0 + r, nrows - 1);
}

// The outputs of quad q for token t from the lanes' partial sums (called by the whole warp).
// With a K split (p.wk = KS warps per quad) warps kw = 1 .. KS-1 of the group leave their
// sums in red[warp][par] and warp kw = 0 adds them in that fixed order (deterministic); the
// group meets at named barrier 1 + group (KS x 32 threads). red is double-buffered by quad
// parity par: a helper warp writes the same buffer again only two quads later, after the
// next barrier, which warp 0 of the group reaches only once it has read this one.
__device__ __forceinline__ void g4_store(const gemv_params &p, int q, int t, const float *acc, float (*red)[2][4],
                                         int par) {
    float v[4];
#pragma unroll
    for (int r = 0; r < 4; r++) v[r] = warp_sum(acc[r]);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int KS = p.wk, kw = warp % KS;
    float val = lane == 0 ? v[0] : lane == 1 ? v[1] : lane == 2 ? v[2] : v[3]; // lanes 0..3: row lane
    if (KS > 1) {
        if (kw && lane < 4) red[warp][par][lane] = val;
        // immediate barrier ids (1..4), so ptxas reserves 5 barriers, not all 16
        const int nt = 32 * KS;
        switch (warp / KS) {
        case 0: asm volatile("bar.sync 1, %0;" ::"r"(nt) : "memory"); break;
        case 1: asm volatile("bar.sync 2, %0;" ::"r"(nt) : "memory"); break;
        case 2: asm volatile("bar.sync 3, %0;" ::"r"(nt) : "memory"); break;
        default: asm volatile("bar.sync 4, %0;" ::"r"(nt) : "memory"); break;
        }
        if (kw) return;
        if (lane < 4)
            for (int k = 1; k < KS; k++) val += red[warp + k][par][lane];
    }
    int mi, r0;
    g4_locate(p, q, mi, r0);
    if (!p.pair_act) {
        if (lane < 4) {
            const gemv_mat &M = p.m[mi];
            const int rw = r0 + lane;
            if (rw < M.rows) {
                float *y = M.y + (size_t)t * M.ldy + rw;
                *y = p.accumulate ? *y + val : val;
            }
        }
    } else {
        // lanes 0, 1: gate rows r0, r0 + 1; lanes 2, 3: the same up rows
        const float u = __shfl_down_sync(0xffffffffu, val, 2);
        const int rw = r0 + lane;
        if (lane < 2 && rw < p.m[0].rows)
            p.act_xp[(size_t)t * p.act_ld + (rw & ~63) + inv_perm64(rw & 63)] = gemv_act(val, p.pair_act - 1) * u;
    }
}

// PRE: as gemv_dq_kernel's.
template <uint32_t F, bool PRE>
__global__ __launch_bounds__(GEMV_WARPS * 32, 2) void gemv4_kernel(const gemv_params p) {
    using C = gdq_cfg<F>;
    constexpr int R = 4, LPC = C::LPC, CPI = C::CPI, NS = g4_cfg<F>::NS;
    constexpr bool TR = PRE && F != QT_Q6_K; // trace points (Q6_K: none, its registers are full)
    static_assert(C::R == R, "gemv4: quads of 4 rows");
    extern __shared__ __align__(16) uint8_t g4_sm[];
    __shared__ float red[GEMV_WARPS][2][4];
    pdl_trigger();
    if constexpr (TR) gemv_trace(p, 0);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int t = blockIdx.y;
    const bool pair = p.pair_act != 0;
    const int nq = p.nq, KS = p.wk, kw = warp % KS;
    // group gg of KS warps (never across CTAs: KS divides GEMV_WARPS) walks quads gg, gg + GG, ...
    const int gg = (blockIdx.x * GEMV_WARPS + warp) / KS, GG = gridDim.x * (GEMV_WARPS / KS);
    const int K = p.K, nch = K / 64, nit = (nch + CPI - 1) / CPI;
    const int nitw = nit > kw ? (nit - kw + KS - 1) / KS : 0; // this warp's iterations kw, kw + KS, ... of a quad
    const int nqw = gg < nq ? (nq - gg + GG - 1) / GG : 0;    // quads of the group
    const int ntot = nqw * nitw;                              // warp iterations in all
    const int csub = lane / LPC, c0 = (lane % LPC) * (4 / LPC);
    // load cursor: quad lq, iteration li (its rows in LW / lrow)
    int lq = gg, li = 0;
    gemv_rows LW;
    int lrow[R];
    if (nqw > 0) g4_rows(p, lq, LW, lrow);
    gdq_slot<F> s[NS];
    auto load_next = [&](gdq_slot<F> &sl) {
        const int ci = (kw + li * KS) * CPI + csub;
        if (ci < nch) gdq_load<F>(sl, LW, lrow, pair, ci, c0);
        if (++li == nitw) {
            li = 0;
            lq += GG;
            if (lq < nq) g4_rows(p, lq, LW, lrow);
        }
    };
#pragma unroll
    for (int u = 0; u < NS; u++)
        if (u < ntot) load_next(s[u]);
    // warp iterations NS .. NS + pf - 1 into L2 while the kernel before runs (the loads
    // above already cover the first NS): lane it % 32 takes row (it % IT) & 3's plane
    if (PRE && p.pf > 0 && ntot > NS) {
        using PF = gdq_pf<F>;
        const int n = min(ntot - NS, p.pf) * PF::IT;
        for (int it = lane; it < n; it += 32) {
            const int u = NS + it / PF::IT, r = (it % PF::IT) & 3, pl = (it % PF::IT) >> 2;
            const int q = gg + (u / nitw) * GG, ci0 = (kw + (u % nitw) * KS) * CPI;
            if (ci0 >= nch) continue;
            int mi, r0;
            g4_locate(p, q, mi, r0);
            const int rw = min(pair ? r0 + (r & 1) : r0 + r, p.m[pair ? 0 : mi].rows - 1);
            gdq_prefetch<F>(p.m[pair ? (r >= 2 ? 1 : 0) : mi], rw, ci0, min(ci0 + CPI, nch), pl);
        }
    }
    if constexpr (TR) gemv_trace(p, 1);
    pdl_wait(); // x comes from the kernel before
    if constexpr (TR) gemv_trace(p, 2);
    int8_t *xq = (int8_t *)g4_sm;
    float *xd = (float *)(g4_sm + K), *xs = xd + K / 32;
    if (PRE) gdq_quantize8<F>(p.xp + (size_t)t * p.ldx, K, xq, xd, xs);
    else gdq_quantize<F>(p.xp + (size_t)t * p.ldx, K, xq, xd, xs);
    if constexpr (TR) gemv_trace(p, 3);
    const bool full = PRE && F == QT_Q4_K && nch % CPI == 0; // all 32 lanes in every step
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;
    int cq = gg, cit = 0, par = 0; // compute cursor
    for (int j = 0; j < ntot; j += NS) {
#pragma unroll
        for (int u = 0; u < NS; u++) {
            if (j + u < ntot) {
                const int ci = (kw + cit * KS) * CPI + csub;
                if (ci < nch) {
                    if constexpr (PRE && F == QT_Q4_K) {
                        if (full) gdq_step<F, 2>(s[u], xq, xd, xs, ci, c0, acc);
                        else gdq_step<F, 1>(s[u], xq, xd, xs, ci, c0, acc);
                    } else {
                        gdq_step<F>(s[u], xq, xd, xs, ci, c0, acc);
                    }
                }
                if (j + u + NS < ntot) load_next(s[u]);
                if (++cit == nitw) {
                    cit = 0;
                    g4_store(p, cq, t, acc, red, par);
                    cq += GG;
                    par ^= 1;
#pragma unroll
                    for (int r = 0; r < R; r++) acc[r] = 0.0f;
                }
            }
        }
    }
    if constexpr (TR) {
        if (p.trace) {
            __syncthreads();
            gemv_trace(p, 4);
        }
    }
}

// ------------------------------------------------------------------- q4v (round 7)
//
// Q4_K and Q6_K at batch 1 with fewer instructions per weight byte (kernels/PERF.md round 7
// "q4v"; SPARKD_Q4V=0 = gemv4 / gemv_dq_kernel as in round 5, SPARKD_Q6V=0 = that for Q6_K
// only). gemv4's stream (resident CTAs, x quantized once per CTA, a register ring of NS
// iterations that runs on across rows) with another lane layout: a warp owns a row pair
// (rows 2q, 2q + 1 of one matrix; paired mode: gate row q and up row q) over all of K, and
// lane l owns whole 64-element chunks ci = 32 it + l of both rows: its 32 code bytes (two
// 16-byte loads) hold every sub-block of the chunk and its meta load (Q4_K: the 16-byte
// superblock head; Q6_K: d and the chunk's four int8 scales) their scales, decoded by the
// lane itself (ci & 3 = l & 3 for every ci of the lane: the decode's selects are fixed per
// lane) — no shuffles of the head, no divergence, one fold per sub-block.
// Q4_K: low nibbles w & 0x0f0f0f0f, high nibbles w & 0xf0f0f0f0 as they are (dp4a u8 x s8 =
// 16 x their dot, shifted back once per sub-block: exact); x in the nibble order
// (gdq_quantize8's). Per sub-block the integer sc * dot (|.| < 2^22: exact in f32), then one
// fold by d and the x scale, and the min term d_min * (mn0 xs0 + mn1 xs1) (xs = the x block's
// scale x its code sum, as gdq_quantize8 writes it).
// Q6_K: per 8 codes two byte permutes regroup the low nibbles into the two 16-element
// blocks (positions 0..3, 4..7) and two more place the 2-bit plane's bits at bits 4..5 of
// the same bytes (from the plane word masked and shifted once per 16 codes), one LOP3 each
// merges them: 6-bit codes 0..63 for the dp4a; the offset 32 leaves through the x block sums
// (xs = 32 x code sum).
// x: gdq_quantize8's bytes (the same quantization, bit for bit) stored piece-major (PM) so
// that the lanes' 16-byte reads of consecutive chunks hit distinct banks. Different lanes
// sum different terms than gemv4, so the f32 result is not gemv4's bits; the integer dots
// are exact and the folds fewer (selftest q4v rows: relative error against the
// double-precision sum over the same int8 x).
template <uint32_t F> struct q4v_cfg {
    static constexpr int NS = F == QT_Q4_K ? 3 : 2; // register ring depth (iterations of a warp)
    static constexpr int CW = F == QT_Q8_0 ? 4 : 2; // 16-byte code loads of a chunk
};

template <uint32_t F> struct q4v_slot {
    uint4 c[2][q4v_cfg<F>::CW]; // [row][]: the chunk's 32 (4-bit) or 64 (Q8_0) code bytes
    uint4 h[2];    // [row]: Q4_K the superblock head (d, dmin, scales[12]); Q6_K the 2-bit plane's 16 bytes
    uint32_t d[2], sc[2]; // [row]: Q6_K the superblock's f16 d, the chunk's 4 int8 scales; Q8_0 d: the two f16 scales
};

// Matrix mi and first row r0 of pair q (non-paired: m[i].ctas = pairs of matrix i).
__device__ __forceinline__ void q4v_locate(const gemv_params &p, int q, int &mi, int &r0) {
    mi = 0;
    if (p.pair_act) {
        r0 = q;
        return;
    }
    while (mi + 1 < p.n && q >= p.m[mi].ctas) q -= p.m[mi++].ctas;
    r0 = 2 * q;
}

// Code, hi and meta row pointers of pair q (a last odd row is computed twice, stored once).
__device__ __forceinline__ void q4v_rows(const gemv_params &p, int q, const uint8_t **cr, const uint8_t **hr,
                                         const uint8_t **mr) {
    int mi, r0;
    q4v_locate(p, q, mi, r0);
    const bool pair = p.pair_act != 0;
    const gemv_mat &M0 = p.m[pair ? 0 : mi], &M1 = p.m[pair ? 1 : mi];
    const int rb = pair ? r0 : min(r0 + 1, M0.rows - 1);
    cr[0] = M0.codes + (uint64_t)(uint32_t)r0 * M0.code_pitch;
    hr[0] = M0.hi + (uint64_t)(uint32_t)r0 * M0.hi_pitch;
    mr[0] = M0.meta + (uint64_t)(uint32_t)r0 * M0.meta_pitch;
    cr[1] = M1.codes + (uint64_t)(uint32_t)rb * M1.code_pitch;
    hr[1] = M1.hi + (uint64_t)(uint32_t)rb * M1.hi_pitch;
    mr[1] = M1.meta + (uint64_t)(uint32_t)rb * M1.meta_pitch;
}

// (a & 0x0f0f0f0f) | (b & 0xf0f0f0f0) in one LOP3.
__device__ __forceinline__ uint32_t lo_hi_merge(uint32_t a, uint32_t b) {
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, 0x0f0f0f0f, 0xE4;" : "=r"(d) : "r"(a), "r"(b));
    return d;
}

// dp4a with unsigned bytes in a (0..255) and signed bytes in b.
__device__ __forceinline__ int dp4a_us(uint32_t a, uint32_t b, int c) {
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

// acc[r] += row r's dot over the lane's chunk: X = the chunk's 64 x bytes (4 pieces; Q4_K
// in the nibble order), dx = its two 32-blocks' x scales, xs = its x block sums (Q4_K: scale x
// code sum of the two 32-blocks; Q6_K: 32 x code sum of the four 16-blocks). Q4_K: hi =
// chunk & 3 >= 2 (the sub-blocks' scales and mins split 4 + 2 bits), sel = the byte selector
// of the chunk's first sub-block in the 4-byte scale / min words.
template <uint32_t F>
__device__ __forceinline__ void q4v_step(const q4v_slot<F> &s, const uint4 *X, float2 dx, float4 xs, bool hi,
                                         uint32_t sel, float *acc) {
    constexpr uint32_t LO = 0x0f0f0f0fu, HI = 0xf0f0f0f0u;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if constexpr (F == QT_Q8_0) {
            // 16-byte piece k = runs 2k (words x, y: 32-block 0) and 2k + 1 (z, w: block 1)
            int i0 = 0, i1 = 0;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                i0 = __dp4a((int)s.c[r][k].x, (int)X[k].x, __dp4a((int)s.c[r][k].y, (int)X[k].y, i0));
                i1 = __dp4a((int)s.c[r][k].z, (int)X[k].z, __dp4a((int)s.c[r][k].w, (int)X[k].w, i1));
            }
            const float s0 = f16_bits_to_f32((uint16_t)(s.d[r] & 0xffffu)), s1 = f16_bits_to_f32((uint16_t)(s.d[r] >> 16));
            acc[r] = fmaf(s0 * dx.x, (float)i0, fmaf(s1 * dx.y, (float)i1, acc[r]));
            continue;
        }
        const uint32_t w[8] = {s.c[r][0].x, s.c[r][0].y, s.c[r][0].z, s.c[r][0].w,
                               s.c[r][1].x, s.c[r][1].y, s.c[r][1].z, s.c[r][1].w};
        if constexpr (F == QT_Q4_K) {
            // word v = x bytes 8v .. 8v + 7 (piece v / 2; low nibbles with its first 4 bytes,
            // high nibbles with the next 4); even words: sub-block 0, odd: sub-block 1
            int l0 = 0, h0 = 0, l1 = 0, h1 = 0;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                l0 = __dp4a((int)(w[2 * k] & LO), (int)X[k].x, l0);
                h0 = dp4a_us(w[2 * k] & HI, X[k].y, h0);
                l1 = __dp4a((int)(w[2 * k + 1] & LO), (int)X[k].z, l1);
                h1 = dp4a_us(w[2 * k + 1] & HI, X[k].w, h1);
            }
            const int i0 = l0 + (h0 >> 4), i1 = l1 + (h1 >> 4); // h: multiples of 16 (exact)
            // scales / mins of sub-blocks j = 2 (chunk & 3) + {0, 1} (meta_sm's arithmetic on
            // 4 bytes at once): j < 4: q[j] & 63, q[j + 4] & 63; else (q[j + 4] & 15) | (q[j - 4] >> 6) << 4,
            // (q[j + 4] >> 4) | (q[j] >> 6) << 4; words y = q[0..3], z = q[4..7], w = q[8..11]
            const uint4 hd = s.h[r];
            const uint32_t mA = hi ? 0x0f0f0f0fu : 0x3f3f3f3fu, mB = hi ? 0x30303030u : 0u;
            const uint32_t SC = ((hi ? hd.w : hd.y) & mA) | ((hd.y >> 2) & mB);
            const uint32_t MN = ((hi ? hd.w >> 4 : hd.z) & mA) | ((hd.z >> 2) & mB);
            const int sc0 = (int)__byte_perm(SC, 0u, sel), sc1 = (int)__byte_perm(SC, 0u, sel + 1u);
            const int mn0 = (int)__byte_perm(MN, 0u, sel), mn1 = (int)__byte_perm(MN, 0u, sel + 1u);
            const float d = f16_bits_to_f32((uint16_t)(hd.x & 0xffffu)), dmin = f16_bits_to_f32((uint16_t)(hd.x >> 16));
            const float t = fmaf(dx.y, (float)(sc1 * i1), dx.x * (float)(sc0 * i0));
            const float u = fmaf(xs.y, (float)mn1, xs.x * (float)mn0);
            acc[r] = fmaf(d, t, fmaf(-dmin, u, acc[r]));
        } else if constexpr (F == QT_Q6_K) {
            // quarter c: code words 2c, 2c + 1 (runs of 8), plane word c: byte w (run 2c + w)
            // holds the 2-bit parts of positions 0, 2, 4, 6 at bits 0, 2, 4, 6, byte w + 2
            // those of 1, 3, 5, 7. 16-blocks: 2 (run & 1) + (position >= 4)
            const uint32_t hw[4] = {s.h[r].x, s.h[r].y, s.h[r].z, s.h[r].w};
            int i[4] = {0, 0, 0, 0};
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const uint32_t hm = hw[c] & 0x33333333u, hn = (hw[c] >> 2) & 0x33333333u; // positions 0,4 | 2,6 (P), 1,5 | 3,7 (Q)
                const uint32_t hm4 = hm << 4, hn4 = hn << 4;
#pragma unroll
                for (int v = 0; v < 2; v++) {
                    const uint32_t cw = w[2 * c + v], cw4 = cw >> 4;
                    const uint32_t sl = v ? 0x7531u : 0x6420u; // bytes w, w + 2 of both sources
                    // positions 0..3: low nibbles of bytes 0, 2, high nibbles of bytes 0, 2;
                    // their 2-bit parts: P bits 0-1, Q 0-1, P 2-3, Q 2-3 (bits 4-5 after the shifts)
                    const uint32_t A = lo_hi_merge(__byte_perm(cw, cw4, 0x6420u), __byte_perm(hm4, hn4, sl));
                    const uint32_t B = lo_hi_merge(__byte_perm(cw, cw4, 0x7531u), __byte_perm(hm, hn, sl));
                    i[2 * v] = __dp4a((int)A, (int)(v ? X[c].z : X[c].x), i[2 * v]);
                    i[2 * v + 1] = __dp4a((int)B, (int)(v ? X[c].w : X[c].y), i[2 * v + 1]);
                }
            }
            const uint32_t scw = s.sc[r];
            const float s0 = (float)(int8_t)(scw & 0xffu), s1 = (float)(int8_t)((scw >> 8) & 0xffu);
            const float s2 = (float)(int8_t)((scw >> 16) & 0xffu), s3 = (float)(int8_t)(scw >> 24);
            const float t0 = fmaf(s1, (float)i[1] - xs.y, s0 * ((float)i[0] - xs.x));
            const float t1 = fmaf(s3, (float)i[3] - xs.w, s2 * ((float)i[2] - xs.z));
            const float d = f16_bits_to_f32((uint16_t)(s.d[r] & 0xffffu));
            acc[r] = fmaf(d, fmaf(dx.y, t1, dx.x * t0), acc[r]);
        }
    }
}

// The outputs of pair q for token t from the lanes' partial sums (the whole warp calls it):
// lanes 0-15 sum row 0, lanes 16-31 row 1 (5 shuffle rounds for both), fixed order. With a
// K split (p.wk = 2: warps 2g, 2g + 1 of a CTA share each pair, kw = warp & 1) warp 2g + 1
// leaves its two sums in red[warp][par] and warp 2g adds them after named barrier 1 + g (64
// threads); red is double-buffered by pair parity par (as g4_store's).
template <int NW>
__device__ __forceinline__ void q4v_store(const gemv_params &p, int q, int t, const float *acc, float (*red)[2][2],
                                          int par) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float v = (lane & 16) ? acc[1] : acc[0];
    v += __shfl_xor_sync(0xffffffffu, (lane & 16) ? acc[0] : acc[1], 16);
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (p.wk > 1) {
        const int kw = warp & 1;
        if (kw && (lane & 15) == 0) red[warp][par][lane >> 4] = v;
        // immediate barrier ids (1 .. NW / 2)
        switch (warp >> 1) {
        case 0: asm volatile("bar.sync 1, 64;" ::: "memory"); break;
        case 1: asm volatile("bar.sync 2, 64;" ::: "memory"); break;
        case 2: asm volatile("bar.sync 3, 64;" ::: "memory"); break;
        case 3: asm volatile("bar.sync 4, 64;" ::: "memory"); break;
        default:
            if constexpr (NW > 8) {
                switch (warp >> 1) {
                case 4: asm volatile("bar.sync 5, 64;" ::: "memory"); break;
                case 5: asm volatile("bar.sync 6, 64;" ::: "memory"); break;
                case 6: asm volatile("bar.sync 7, 64;" ::: "memory"); break;
                default: asm volatile("bar.sync 8, 64;" ::: "memory"); break;
                }
            }
            break;
        }
        if (kw) return;
        if ((lane & 15) == 0) v += red[warp + 1][par][lane >> 4];
    }
    const float v1 = __shfl_down_sync(0xffffffffu, v, 16);
    if (lane) return;
    int mi, r0;
    q4v_locate(p, q, mi, r0);
    if (p.pair_act) {
        p.act_xp[(size_t)t * p.act_ld + (r0 & ~63) + inv_perm64(r0 & 63)] = gemv_act(v, p.pair_act - 1) * v1;
    } else {
        const gemv_mat &M = p.m[mi];
        float *y = M.y + (size_t)t * M.ldy + r0;
        y[0] = p.accumulate ? y[0] + v : v;
        if (r0 + 1 < M.rows) y[1] = p.accumulate ? y[1] + v1 : v1;
    }
}

// NW: warps of a CTA, 8 (2 CTAs an SM) or 16 (1 CTA an SM: x quantized once per SM,
// by twice the warps).
template <uint32_t F, int NW>
__global__ __launch_bounds__(NW * 32, 16 / NW) void q4v_kernel(const gemv_params p) {
    constexpr int NS = q4v_cfg<F>::NS;
    extern __shared__ __align__(16) uint8_t q4v_sm[];
    __shared__ float red[NW][2][2];
    pdl_trigger();
    gemv_trace(p, 0);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int t = blockIdx.y;
    const int nq = p.nq;
    // group gg of KS warps (p.wk: 1, or 2 = warps 2g, 2g + 1 of the CTA) walks pairs gg, gg + GG, ...;
    // its warp kw takes iterations kw, kw + KS, ... of each (the host picks KS 2 only where nit >= 2)
    const int KS = p.wk, kw = warp & (KS - 1);
    const int gg = (blockIdx.x * NW + warp) / KS, GG = gridDim.x * NW / KS;
    const int K = p.K, nch = K / 64, nit = (nch + 31) / 32;
    const int nitw = (nit - kw + KS - 1) / KS;              // this warp's iterations of a pair
    const int nqw = gg < nq ? (nq - gg + GG - 1) / GG : 0; // pairs of the group
    const int ntot = nqw * nitw;                            // its iterations in all
    int lq = gg, li = 0;                                    // load cursor: pair, iteration
    const uint8_t *cr[2], *hr[2], *mr[2];
    if (nqw > 0) q4v_rows(p, lq, cr, hr, mr);
    q4v_slot<F> s[NS];
    auto load_next = [&](q4v_slot<F> &sl) {
        const int ci = (kw + li * KS) * 32 + lane;
        if (ci < nch) {
#pragma unroll
            for (int r = 0; r < 2; r++) {
                constexpr int CW = q4v_cfg<F>::CW;
                const uint4 *c = (const uint4 *)(cr[r] + (size_t)ci * (16 * CW));
#pragma unroll
                for (int k = 0; k < CW; k++) sl.c[r][k] = __ldg(c + k);
                if constexpr (F == QT_Q8_0) {
                    sl.d[r] = __ldg((const unsigned int *)(mr[r] + (size_t)ci * 4));
                } else if constexpr (F == QT_Q4_K) {
                    sl.h[r] = __ldg((const uint4 *)(mr[r] + (size_t)(ci >> 2) * 16));
                } else {
                    sl.h[r] = __ldg((const uint4 *)(hr[r] + (size_t)ci * 16));
                    const uint8_t *m = mr[r] + (size_t)(ci >> 2) * 20;
                    sl.d[r] = __ldg((const unsigned int *)m);
                    sl.sc[r] = __ldg((const unsigned int *)(m + 4 + 4 * (ci & 3)));
                }
            }
        }
        if (++li == nitw) {
            li = 0;
            lq += GG;
            if (lq < nq) q4v_rows(p, lq, cr, hr, mr);
        }
    };
#pragma unroll
    for (int u = 0; u < NS; u++)
        if (u < ntot) load_next(s[u]);
    gemv_trace(p, 1);
    pdl_wait(); // x comes from the kernel before
    gemv_trace(p, 2);
    int8_t *xq = (int8_t *)q4v_sm;
    float *xd = (float *)(q4v_sm + K), *xs = xd + K / 32;
    gdq_quantize8<F, true, NW>(p.xp + (size_t)t * p.ldx, K, xq, xd, xs);
    gemv_trace(p, 3);
    const bool hi = (lane & 2) != 0;
    const uint32_t sel = 0x4440u + 2u * (uint32_t)(lane & 1);
    float acc[2] = {0.0f, 0.0f};
    int cq = gg, cit = 0, par = 0; // compute cursor
    for (int j = 0; j < ntot; j += NS) {
#pragma unroll
        for (int u = 0; u < NS; u++) {
            if (j + u < ntot) {
                const int ci = (kw + cit * KS) * 32 + lane;
                if (ci < nch) {
                    uint4 X[4];
#pragma unroll
                    for (int k = 0; k < 4; k++) X[k] = *(const uint4 *)(xq + ((size_t)k * nch + ci) * 16);
                    const float2 dx = *(const float2 *)(xd + 2 * ci);
                    float4 xv = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                    if constexpr (F == QT_Q4_K) {
                        const float2 x2 = *(const float2 *)(xs + 2 * ci);
                        xv = make_float4(x2.x, x2.y, 0.0f, 0.0f);
                    } else if constexpr (F == QT_Q6_K) {
                        xv = *(const float4 *)(xs + 4 * ci);
                    }
                    q4v_step<F>(s[u], X, dx, xv, hi, sel, acc);
                }
                if (j + u + NS < ntot) load_next(s[u]);
                if (++cit == nitw) {
                    cit = 0;
                    q4v_store<NW>(p, cq, t, acc, red, par);
                    cq += GG;
                    par ^= 1;
                    acc[0] = acc[1] = 0.0f;
                }
            }
        }
    }
    if (p.trace) {
        __syncthreads();
        gemv_trace(p, 4);
    }
}

// gemv4 mode: 0 = gemv_dq_kernel always (SPARKD_GEMV4_OLD=1), 1 = gemv4 where the product
// has at least a quad per resident warp (default), 2 = gemv4 for every int8 product (tests);
// cuda_gemv4_set(-1): as the environment says again (SPARKD_GEMV4_OLD=1 = 0; SPARKD_GEMV4=0|1|2).
static int g_g4 = -1;
extern "C" void cuda_gemv4_set(int mode) { g_g4 = mode < 0 ? -1 : mode > 2 ? 2 : mode; }
static int g4_mode() {
    if (g_g4 < 0) {
        const char *s = getenv("SPARKD_GEMV4_OLD"), *m = getenv("SPARKD_GEMV4"); // SPARKD_GEMV4=0|1|2: the mode
        g_g4 = s && atoi(s) ? 0 : m && *m ? (atoi(m) < 0 ? 0 : atoi(m) > 2 ? 2 : atoi(m)) : 1;
    }
    return g_g4;
}

// The int8 path's round-5 kernels (cuda_gemv_pre_set, SPARKD_GEMV_PRE): 0 = off (the round-4
// kernels), 1 = on (default: gdq_quantize8, the Q4_K step; the L2 prefetch before pdl_wait only
// with SPARKD_GEMV_PF_KB=n > 0: GPU run 1 measured it 1-5% slower per product), 2 = on and never
// the prefetch, 3 = on with the prefetch (half the L2 unless SPARKD_GEMV_PF_KB: run 1's default).
static int g_pre = -1;
extern "C" void cuda_gemv_pre_set(int on) { g_pre = on < 0 ? -1 : on > 3 ? 3 : on; }
static int gemv_pre_mode() {
    if (g_pre < 0) {
        const char *s = getenv("SPARKD_GEMV_PRE");
        const int v = s && *s ? atoi(s) : 1;
        g_pre = v < 0 ? 0 : v > 3 ? 3 : v;
    }
    return g_pre;
}
static bool gemv_pre() { return gemv_pre_mode() != 0; }

// L2 bytes of the current device (cudaDevAttrL2CacheSize, cached per device; 0 unknown).
static int64_t l2_bytes() {
    static int64_t cache[16];
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 16) return 0;
    pthread_mutex_lock(&mu);
    if (!cache[dev]) {
        if (cudaDeviceGetAttribute(&v, cudaDevAttrL2CacheSize, dev) != cudaSuccess) (void)cudaGetLastError();
        cache[dev] = v > 0 ? v : -1;
    }
    const int64_t n = cache[dev] > 0 ? cache[dev] : 0;
    pthread_mutex_unlock(&mu);
    return n;
}

// Warp iterations past the register ring that each of `warps` warps prefetches into L2
// before pdl_wait: the product's prefetch stays within a budget (SPARKD_GEMV_PF_KB=n KB;
// unset: none at PRE 1, half the L2 at PRE 3), at most 64. T > 1: none (the tokens' CTAs
// would fetch the same bytes).
static int gemv_pf(uint32_t type, int64_t warps, int T) {
    const int mode = gemv_pre_mode();
    if (mode == 0 || mode == 2 || T != 1 || warps <= 0) return 0;
    static int64_t kb = -2;
    if (kb == -2) {
        const char *s = getenv("SPARKD_GEMV_PF_KB");
        kb = s && *s ? (atoll(s) < 0 ? 0 : atoll(s)) : -1;
    }
    const int64_t budget = kb >= 0 ? kb * 1024 : mode == 3 ? l2_bytes() / 2 : 0;
    const qfmt f = qfmt_of(type);
    const int cpi = f.cbits == 4 ? 16 : 8; // gdq_cfg::CPI
    // bytes of one warp iteration: 4 rows x cpi chunks x (codes + hi + meta per chunk)
    const int64_t per_chunk = 64 * f.cbits / 8 + 64 * f.hbits / 8 + (f.meta_bytes * 64 + f.meta_elems - 1) / f.meta_elems;
    const int64_t it = 4 * cpi * per_chunk;
    int64_t n = budget / (warps * it);
    return (int)(n > 64 ? 64 : n);
}

// Resident CTAs of gemv4_kernel<type> on the current device with smem bytes of shared memory
// (occupancy query x SMs), cached per (device, type, smem).
template <uint32_t F, bool PRE> static int g4_resident_t(size_t smem) {
    int dev = 0, nsm = 0, occ = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return 0;
    struct ent { int dev; size_t smem; int n; };
    static ent cache[8];
    static int ncache = 0;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; // engines of several devices may launch at once
    pthread_mutex_lock(&mu);
    int n = -1;
    for (int i = 0; i < ncache && n < 0; i++)
        if (cache[i].dev == dev && cache[i].smem == smem) n = cache[i].n;
    if (n < 0) {
        if (cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, gemv4_kernel<F, PRE>, GEMV_WARPS * 32, smem) != cudaSuccess) {
            (void)cudaGetLastError();
            n = 0;
        } else {
            n = occ * nsm;
            if (ncache < 8) cache[ncache++] = {dev, smem, n};
        }
    }
    pthread_mutex_unlock(&mu);
    return n;
}
static int g4_resident(uint32_t type, size_t smem, bool pre) {
    switch (type) {
    case QT_Q8_0: return pre ? g4_resident_t<QT_Q8_0, true>(smem) : g4_resident_t<QT_Q8_0, false>(smem);
    case QT_Q4_K: return pre ? g4_resident_t<QT_Q4_K, true>(smem) : g4_resident_t<QT_Q4_K, false>(smem);
    case QT_Q6_K: return pre ? g4_resident_t<QT_Q6_K, true>(smem) : g4_resident_t<QT_Q6_K, false>(smem);
    case QT_Q4_0: return pre ? g4_resident_t<QT_Q4_0, true>(smem) : g4_resident_t<QT_Q4_0, false>(smem);
    }
    return 0;
}

// cuda_gemv_trace_set: each later launch of a PRE kernel takes the next grid x GEMV_TRACE
// entries of buf (until cap entries are used; then none).
static unsigned long long *g_trace;
static size_t g_trace_cap, g_trace_used;
extern "C" size_t cuda_gemv_trace_set(unsigned long long *buf, size_t cap) {
    const size_t used = g_trace_used;
    g_trace = buf;
    g_trace_cap = buf ? cap : 0;
    g_trace_used = 0;
    return used;
}
static unsigned long long *trace_take(dim3 grid) {
    const size_t n = (size_t)grid.x * grid.y * GEMV_TRACE;
    if (!g_trace || g_trace_used + n > g_trace_cap) return NULL;
    unsigned long long *t = g_trace + g_trace_used;
    g_trace_used += n;
    return t;
}

// SPARKD_GEMV4_BAL / cuda_gemv4_bal_set: gemv4_try's balanced K split (1) or the round-4
// rule (0, default); -1 = as the environment says.
static int g_bal = -1;
extern "C" void cuda_gemv4_bal_set(int on) { g_bal = on < 0 ? -1 : on ? 1 : 0; }

// gemv4 launch (dq path only). Returns 1 when launched, 0 to use gemv_dq_kernel, -1 on error.
static int gemv4_try(const cuda_mm_args *a, const cuda_mmin *x, int T, void *stream, gemv_params &p, int wk_set, err *e) {
    const int mode = g4_mode();
    if (mode == 0 || (mode == 1 && wk_set > 0)) return 0; // SPARKD_GEMV_WK tunes the old kernel
    const uint32_t type = a->w[0]->type;
    int nq = 0;
    if (a->pair_act) nq = (int)((a->w[0]->rows + 1) / 2);
    else
        for (int i = 0; i < a->n; i++) nq += (int)((a->w[i]->rows + 3) / 4);
    const size_t sm = gdq_smem(x->K);
    const int res = g4_resident(type, sm, p.pre != 0);
    if (res <= 0) return 0;
    // K split: the fewest warps per quad (1, 2, 4; at most the quad's iterations) that give
    // at least 3/4 of the resident warps a quad; none: the old kernel. Forced (mode 2): 1,
    // or SPARKD_GEMV_WK / cuda_gemv_wk_set's 2 or 4 (tests)
    const int nit = (x->K / 64 + (qfmt_of(type).cbits == 4 ? 15 : 7)) / (qfmt_of(type).cbits == 4 ? 16 : 8);
    int ks = 0;
    if (mode == 2) {
        ks = wk_set == 2 || wk_set == 4 ? wk_set : 1;
        while (ks > 1 && ks > nit) ks /= 2;
    } else {
        static int ksmax = -1; // SPARKD_GEMV4_KSMAX=1|2|4 (default 4): 1 = only products with a quad per warp
        if (ksmax < 0) {
            const char *e4 = getenv("SPARKD_GEMV4_KSMAX");
            ksmax = e4 && (atoi(e4) == 1 || atoi(e4) == 2) ? atoi(e4) : 4;
        }
        // SPARKD_GEMV4_BAL=1 (default 0 = the round-4 rule above; run 2's chain bench: KS 4 on
        // q+k+v / q+k was +1..2% slower on Q8_0 and Q4_K, 5% faster on Q6_K): where the round-4 rule
        // already splits K (KS > 1: a product small for the device, latency-bound), a larger
        // qualifying split when it gives the busiest warp (quads of its group x the quad's
        // iterations per warp) at least 10% fewer iterations. q+k+v on an H200 (1,536 quads,
        // 1,056 groups at KS 2): KS 2 leaves some groups 2 quads, others 1 (Q8_0: 8 iterations
        // for the busiest warp); KS 4 gives every group ~3 quads of 2 (6). (A bandwidth-bound
        // GB10, where the rule gives KS 1, keeps it.)
        if (g_bal < 0) {
            const char *eb = getenv("SPARKD_GEMV4_BAL");
            g_bal = eb && *eb && atoi(eb) ? 1 : 0;
        }
        const int bal = g_bal;
        int64_t c0 = -1, best = -1;
        int kb = 0;
        for (int k = 1; k <= ksmax && k <= nit && (bal || !ks); k *= 2) {
            if ((int64_t)nq * k * 4 < (int64_t)res * GEMV_WARPS * 3) continue;
            const int per_t = res / T < 1 ? 1 : res / T;
            const int gk = (int)std::min<int64_t>(((int64_t)nq * k + GEMV_WARPS - 1) / GEMV_WARPS, per_t);
            const int64_t groups = (int64_t)gk * (GEMV_WARPS / k);
            const int64_t cost = ((nq + groups - 1) / groups) * ((nit + k - 1) / k);
            if (!ks) {
                ks = k; // the round-4 choice
                c0 = cost;
            }
            if (best < 0 || cost < best) {
                best = cost;
                kb = k;
            }
        }
        if (!ks) return 0;
        if (bal && ks > 1 && kb != ks && best * 10 <= c0 * 9) ks = kb;
    }
    p.nq = nq;
    p.wk = ks;
    for (int i = 0; i < a->n; i++) {
        gemv_mat &m = p.m[i];
        if (a->pair_act) m.ctas = i == 0 ? nq : 0;
        else m.ctas = (m.rows + 3) / 4;
    }
    int per_t = res / T;
    if (per_t < 1) per_t = 1;
    int g = (int)(((int64_t)nq * ks + GEMV_WARPS - 1) / GEMV_WARPS);
    if (g > per_t) g = per_t;
    p.pf = gemv_pf(type, (int64_t)g * GEMV_WARPS, T);
    dim3 grid((unsigned)g, (unsigned)T);
    p.trace = p.pre ? trace_take(grid) : NULL;
    switch (type) {
#define X(TY)                                                                                \
    case TY: CUDA_TRY(cuda_launch(p.pre ? gemv4_kernel<TY, true> : gemv4_kernel<TY, false>, grid, dim3(GEMV_WARPS * 32), sm, stream, p)); break;
        X(QT_Q8_0) X(QT_Q4_K) X(QT_Q6_K) X(QT_Q4_0)
#undef X
    }
    return 1;
}

// q4v (round 7): 0 = off (SPARKD_Q4V=0: gemv4 / gemv_dq_kernel as in round 5), 1 = Q4_K and
// Q6_K int8 products at PRE != 0 unless SPARKD_GEMV_WK / cuda_gemv_wk_set tunes the old kernels
// (default; Q6_K also needs SPARKD_Q6V != 0), 2 = every Q4_K / Q6_K int8 product (tests);
// cuda_gemv_q4v_set(-1): as the environment says.
static int g_q4v = -1;
extern "C" void cuda_gemv_q4v_set(int mode) { g_q4v = mode < 0 ? -1 : mode > 2 ? 2 : mode; }
static int q4v_mode() {
    if (g_q4v < 0) {
        const char *s = getenv("SPARKD_Q4V");
        const int v = s && *s ? atoi(s) : 1;
        g_q4v = v < 0 ? 0 : v > 2 ? 2 : v;
    }
    return g_q4v;
}
// Q8_0's own switch at mode 1 (SPARKD_Q8V=0: Q8_0 products stay on round 5's kernels)
static int g_q8v = -1;
extern "C" void cuda_gemv_q8v_set(int on) { g_q8v = on < 0 ? -1 : on ? 1 : 0; }
static bool q8v_on() {
    if (g_q8v < 0) {
        const char *s = getenv("SPARKD_Q8V");
        g_q8v = s && *s && !atoi(s) ? 0 : 1;
    }
    return g_q8v == 1;
}
// Q6_K's own switch at mode 1 (SPARKD_Q6V=0: Q6_K products stay on round 5's kernels)
static int g_q6v = -1;
extern "C" void cuda_gemv_q6v_set(int on) { g_q6v = on < 0 ? -1 : on ? 1 : 0; }
static bool q6v_on() {
    if (g_q6v < 0) {
        const char *s = getenv("SPARKD_Q6V");
        g_q6v = s && *s && !atoi(s) ? 0 : 1;
    }
    return g_q6v == 1;
}
static int g_q4v_launches;
extern "C" int cuda_gemv_q4v_launches(void) { return g_q4v_launches; }

// Warps of a q4v CTA: -1 = the default (16), 8 or 16 forced (SPARKD_Q4V_W=8|16;
// cuda_gemv_q4v_warps_set, 0 = as the environment says).
static int g_q4v_w = 0;
extern "C" void cuda_gemv_q4v_warps_set(int nw) { g_q4v_w = nw == 8 || nw == 16 ? nw : 0; }
static int q4v_warps() {
    if (!g_q4v_w) {
        const char *s = getenv("SPARKD_Q4V_W");
        g_q4v_w = s && (atoi(s) == 8 || atoi(s) == 16) ? atoi(s) : -1;
    }
    return g_q4v_w;
}

// q4v's K split: 0 = the rule in q4v_try (default), 1 or 2 forced (SPARKD_Q4V_KS=1|2;
// cuda_gemv_q4v_ks_set, -1 = as the environment says).
static int g_q4v_ks = -1;
extern "C" void cuda_gemv_q4v_ks_set(int ks) { g_q4v_ks = ks == 1 || ks == 2 ? ks : ks == 0 ? 0 : -1; }
static int q4v_ks() {
    if (g_q4v_ks < 0) {
        const char *s = getenv("SPARKD_Q4V_KS");
        g_q4v_ks = s && (atoi(s) == 1 || atoi(s) == 2) ? atoi(s) : 0;
    }
    return g_q4v_ks;
}

// Resident CTAs of q4v_kernel<F, NW> with smem bytes of shared memory (as g4_resident_t).
template <uint32_t F, int NW> static int q4v_resident(size_t smem) {
    int dev = 0, nsm = 0, occ = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return 0;
    struct ent { int dev; size_t smem; int n; };
    static ent cache[8];
    static int ncache = 0;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    int n = -1;
    for (int i = 0; i < ncache && n < 0; i++)
        if (cache[i].dev == dev && cache[i].smem == smem) n = cache[i].n;
    if (n < 0) {
        if (cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, q4v_kernel<F, NW>, NW * 32, smem) != cudaSuccess) {
            (void)cudaGetLastError();
            n = 0;
        } else {
            n = occ * nsm;
            if (ncache < 8) cache[ncache++] = {dev, smem, n};
        }
    }
    pthread_mutex_unlock(&mu);
    return n;
}

// q4v launch (dq path, Q4_K / Q6_K). Returns 1 when launched, 0 to use the other kernels, -1 on error.
static int q4v_try(const cuda_mm_args *a, const cuda_mmin *x, int T, void *stream, gemv_params &p, int wk_set, err *e) {
    const int mode = q4v_mode();
    if (mode == 0 || (mode == 1 && (wk_set > 0 || !p.pre))) return 0;
    const uint32_t type = a->w[0]->type;
    if (type != QT_Q4_K && type != QT_Q6_K && type != QT_Q8_0) return 0;
    if (type == QT_Q6_K && mode == 1 && !q6v_on()) return 0;
    if (type == QT_Q8_0 && mode == 1 && !q8v_on()) return 0;
    int nq = 0; // row pairs
    if (a->pair_act) nq = (int)a->w[0]->rows;
    else
        for (int i = 0; i < a->n; i++) nq += (int)((a->w[i]->rows + 1) / 2);
    const size_t sm = gdq_smem(x->K);
    // 16 warps a CTA (one CTA an SM: x quantized once per SM) unless SPARKD_Q4V_W=8 (GPU run 0,
    // chain rows: 16 at least as fast as 8 on every product, the 1024-row v too)
    int nw = q4v_warps();
    if (nw < 0 || type == QT_Q8_0) nw = 16; // (Q8_0: 16 only)
    const int res = type == QT_Q8_0 ? q4v_resident<QT_Q8_0, 16>(sm)
                    : type == QT_Q4_K ? (nw == 16 ? q4v_resident<QT_Q4_K, 16>(sm) : q4v_resident<QT_Q4_K, 8>(sm))
                                      : (nw == 16 ? q4v_resident<QT_Q6_K, 16>(sm) : q4v_resident<QT_Q6_K, 8>(sm));
    if (res <= 0) return 0;
    int per_t = res / T;
    if (per_t < 1) per_t = 1;
    // K split over a warp pair (KS 2) where it at least halves the busiest warp's iterations (an
    // H200: the 1024-row v; GPU run 1, chain rows: v Q4_K 4.61 -> 4.29 us, Q6_K 5.32 -> 4.63, but
    // q+k Q4_K 7.55 -> 7.48 and Q8_0 q+k+v 8.41 -> 10.19 where it only cut 4 iterations to 3);
    // SPARKD_Q4V_KS=1|2 forces; 2 needs >= 2 iterations a row
    const int nit = (x->K / 64 + 31) / 32;
    auto grid_of = [&](int ks) { return (int)std::min<int64_t>(((int64_t)nq * ks + nw - 1) / nw, per_t); };
    auto busiest = [&](int ks) {
        const int64_t groups = (int64_t)grid_of(ks) * nw / ks;
        return ((nq + groups - 1) / groups) * ((nit + ks - 1) / ks);
    };
    int ks = q4v_ks();
    if (ks == 0) ks = nit >= 2 && busiest(2) * 2 <= busiest(1) ? 2 : 1;
    if (nit < 2) ks = 1;
    p.nq = nq;
    p.wk = ks;
    for (int i = 0; i < a->n; i++) {
        gemv_mat &m = p.m[i];
        m.ctas = a->pair_act ? (i == 0 ? nq : 0) : (m.rows + 1) / 2;
    }
    const int g = grid_of(ks);
    dim3 grid((unsigned)g, (unsigned)T);
    p.trace = trace_take(grid);
    void (*kern)(gemv_params) = type == QT_Q8_0   ? q4v_kernel<QT_Q8_0, 16>
                                : type == QT_Q4_K ? (nw == 16 ? q4v_kernel<QT_Q4_K, 16> : q4v_kernel<QT_Q4_K, 8>)
                                                  : (nw == 16 ? q4v_kernel<QT_Q6_K, 16> : q4v_kernel<QT_Q6_K, 8>);
    CUDA_TRY(cuda_launch(kern, grid, dim3(nw * 32), sm, stream, p));
    g_q4v_launches++;
    return 1;
}

// SPARKD_GEMV_DP4A=1: the int8 path also for exact products (A/B; temporary).
static int g_dp4a = -1;
extern "C" void cuda_gemv_dp4a_set(int on) { g_dp4a = on ? 1 : 0; }
static bool gdq_forced() {
    if (g_dp4a < 0) {
        const char *s = getenv("SPARKD_GEMV_DP4A");
        g_dp4a = s && atoi(s) ? 1 : 0;
    }
    return g_dp4a == 1;
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
    // the int8 path: fast precision (exact = 0) or forced; rows of K that fit shared memory
    const bool dq = gdq_type(type) && (!a->exact || gdq_forced()) && gdq_smem(x->K) <= 46u * 1024u;
    p.wk = gemv_wk(type, x->K);
    if (dq && g_wk <= 0) {
        // >= 16 rows per CTA (each CTA quantizes the row: K floats from L2); two warps per
        // row group where one would leave fewer than two CTAs per SM
        int rows = 0;
        for (int i = 0; i < a->n; i++) rows += (int)a->w[i]->rows;
        p.wk = rows / 32 >= 2 * 132 ? 1 : 2;
    }
    const qfmt qf = qfmt_of(type);
    const int R = dq ? 4 : qf.cbits == 32 ? 1 : (qf.cbits == 16 || qf.hbits) ? 2 : 4; // gemv_cfg::R
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
        gemv_mat &m = p.m[i];
        wmat_planes(m, w);
        m.y = a->y[i];
        m.rows = (int)w->rows;
        m.ldy = a->ldy[i];
        if (a->pair_act) m.ctas = i == 0 ? (m.rows + rows_cta / 2 - 1) / (rows_cta / 2) : 0;
        else m.ctas = (m.rows + rows_cta - 1) / rows_cta;
        ctas += m.ctas;
    }
    dim3 grid((unsigned)ctas, (unsigned)T);
    if (dq) {
        p.pre = gemv_pre() ? 1 : 0;
        p.pf = gemv_pf(type, (int64_t)ctas * GEMV_WARPS, T);
        const int qv = q4v_try(a, x, T, stream, p, g_wk, e);
        if (qv < 0) return -1;
        if (qv > 0) return 0;
        const int g4 = gemv4_try(a, x, T, stream, p, g_wk, e);
        if (g4 < 0) return -1;
        if (g4 > 0) return 0;
        const size_t sm = gdq_smem(x->K);
        p.trace = p.pre ? trace_take(grid) : NULL;
        switch (type) {
#define X(TY)                                                                                \
    case TY: CUDA_TRY(cuda_launch(p.pre ? gemv_dq_kernel<TY, true> : gemv_dq_kernel<TY, false>, grid, dim3(GEMV_WARPS * 32), sm, stream, p)); break;
            X(QT_Q8_0) X(QT_Q4_K) X(QT_Q6_K) X(QT_Q4_0)
#undef X
        }
        return 0;
    }
    switch (type) {
#define X(TY)                                                                                \
    case TY: CUDA_TRY(cuda_launch(gemv_kernel<TY>, grid, dim3(GEMV_WARPS * 32), 0, stream, p)); break;
        FOR_EACH_QT(X)
#undef X
    }
    return 0;
}
