// gemv.cu — y = W x for one token (and every token of F32 weights): the decode product.
//
// f32 activations in P64 order (cuda_mmin.xp), f32 accumulation: the result equals
// dequantize-then-dot up to the order of f32 roundings (no activation rounding at all).
// A warp owns R rows (2; 1 for 16/32-bit weights, whose codes are the bulk of the
// traffic). Lane l takes quarter l % 4 of chunk 8 * it + l / 4, so each load instruction
// of the warp reads 8 whole chunks of a row contiguously (256-1024 bytes), and the x
// quarter (four float4) serves all R rows. Codes become exact f16 pairs (magic-number
// adds, no I2F) then f32; each lane applies the group scale (and min times its part of
// the group's x sum) to its partial dot; a warp reduction ends the row.
#include "cuda_kern.h"

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
    const float *xp;
};

template <uint32_t F> struct gemv_cfg {
    static constexpr int R = qfmt_of(F).cbits >= 16 ? 1 : 2;
};

template <uint32_t F>
__global__ __launch_bounds__(GEMV_WARPS * 32) void gemv_kernel(const gemv_params p) {
    constexpr qfmt f = qfmt_of(F);
    constexpr int R = gemv_cfg<F>::R;
    constexpr int NG = f.group == 16 ? 4 : f.group == 32 ? 2 : 1; // scale groups per chunk
    int b = blockIdx.x, mi = 0;
    while (mi + 1 < p.n && b >= p.m[mi].ctas) b -= p.m[mi++].ctas;
    const gemv_mat &M = p.m[mi];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int r0 = (b * GEMV_WARPS + warp) * R;
    if (r0 >= M.rows) return;
    const int t = blockIdx.y;
    const float *x = p.xp + (size_t)t * p.ldx;
    const uint8_t *cr[R], *hr[R], *mr[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int row = min(r0 + r, M.rows - 1);
        cr[r] = M.codes + (uint64_t)row * M.code_pitch;
        hr[r] = M.hi + (uint64_t)row * M.hi_pitch;
        mr[r] = M.meta + (uint64_t)row * M.meta_pitch;
    }
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;
    const int nch = p.K / 64, c = lane & 3;
#pragma unroll 2
    for (int ci = lane >> 2; ci < nch; ci += 8) {
        quarter q[R];
#pragma unroll
        for (int r = 0; r < R; r++) quarter_load<F>(q[r], cr[r], hr[r], ci, c);
        const float4 *xv = (const float4 *)(x + (size_t)ci * 64 + 16 * c);
        float xs[16];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float4 v = xv[i];
            xs[4 * i] = v.x; xs[4 * i + 1] = v.y; xs[4 * i + 2] = v.z; xs[4 * i + 3] = v.w;
        }
        float d[R][NG], sx[NG];
#pragma unroll
        for (int g = 0; g < NG; g++) {
            sx[g] = 0.0f;
#pragma unroll
            for (int r = 0; r < R; r++) d[r][g] = 0.0f;
        }
#pragma unroll
        for (int j = 0; j < 8; j++) {
            // chunk-level group of pair j: 32-groups j >> 2, 16-groups j >> 1 (perm64)
            const int g = NG == 4 ? (j >> 1) : NG == 2 ? (j >> 2) : 0;
            if constexpr (f.has_min) sx[g] += xs[2 * j] + xs[2 * j + 1];
#pragma unroll
            for (int r = 0; r < R; r++) {
                const float2 w = quarter_pair_f32<F>(q[r], j);
                d[r][g] = fmaf(w.x, xs[2 * j], fmaf(w.y, xs[2 * j + 1], d[r][g]));
            }
        }
#pragma unroll
        for (int r = 0; r < R; r++) {
            if constexpr (f.group == 0) {
                acc[r] += d[r][0];
            } else {
#pragma unroll
                for (int g = 0; g < NG; g++) {
                    float s, m;
                    group_sm<F>(mr[r], ci * NG + g, s, m);
                    acc[r] = fmaf(s, d[r][g], acc[r]);
                    if constexpr (f.has_min) acc[r] = fmaf(m, sx[g], acc[r]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        const float v = warp_sum(acc[r]);
        if (lane == 0 && r0 + r < M.rows) {
            float *y = M.y + (size_t)t * M.ldy + r0 + r;
            *y = p.accumulate ? *y + v : v;
        }
    }
}

#define FOR_EACH_QT(X)                                                                      \
    X(QT_F32) X(QT_F16) X(QT_BF16) X(QT_Q8_0) X(QT_Q4_0) X(QT_Q4_1) X(QT_Q5_0) X(QT_Q5_1)    \
    X(QT_Q4_K) X(QT_Q5_K) X(QT_Q6_K) X(QT_MXFP4)

// Launched by cuda_matmul (gemm.cu), which has checked the arguments.
int cuda_gemv_launch(const cuda_mm_args *a, const cuda_mmin *x, int T, void *stream, err *e) {
    gemv_params p;
    memset(&p, 0, sizeof p);
    p.n = a->n;
    p.K = x->K;
    p.ldx = x->K;
    p.xp = x->xp;
    p.accumulate = a->accumulate;
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
        const int R = w->type == QT_F32 || w->type == QT_F16 || w->type == QT_BF16 ? 1 : 2;
        m.ctas = (m.rows + R * GEMV_WARPS - 1) / (R * GEMV_WARPS);
        ctas += m.ctas;
    }
    dim3 grid((unsigned)ctas, (unsigned)T);
    switch (a->w[0]->type) {
#define X(TY)                                                                                \
    case TY: gemv_kernel<TY><<<grid, GEMV_WARPS * 32, 0, CUDA_STREAM(stream)>>>(p); break;
        FOR_EACH_QT(X)
#undef X
    }
    CUDA_LAUNCHED();
    return 0;
}
