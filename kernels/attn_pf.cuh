// attn_pf.cuh — the prefill attention's row output, shared by attn.cu's attn_pf_kernel and apf.cu's
// attn_apf_kernel (round 10): each warp's 16 rows (two halves of 8, hh) of one tile.
#pragma once

#include "cuda_kern.h"
#include "kern_util.cuh"


// The work item of this CTA: tile tix (longest first) and KV head hk. order > 0 (round 9 pp's
// bit 8): the CTAs in a snake order over waves of `order` CTAs (the rank-r item of the
// longest-first list, reversed on odd waves); 0: blockIdx as it comes.
__device__ __forceinline__ void pf_item(const cuda_attn_args &a, int order, int &tix, int &hk) {
    tix = a.n_tiles - 1 - blockIdx.x;
    hk = blockIdx.y;
    if (order > 0) {
        const int N = gridDim.x * gridDim.y, L = blockIdx.y * gridDim.x + blockIdx.x, w = L / order, i = L % order;
        const int cnt = min(order, N - w * order), r = w * order + (w & 1 ? cnt - 1 - i : i);
        tix = a.n_tiles - 1 - r / gridDim.y;
        hk = r % gridDim.y;
    }
}

// Rows out: the output (sinks added) or this split's partial (max in natural log units).
// o: the warp's O fragment, NT x (m16n8 accumulator: rows r0 + 8 hh, columns n * 8 + 2 c, + 1);
// mrow / lrow: the running max (log2 units) and sum of the two rows a thread holds; lrow is
// summed over the quad here. t0: the tile's first token; hk: the KV head; G query heads a KV
// head; R: the tile's rows (token-major); the split index is blockIdx.z.
template <int D, int NT>
__device__ __forceinline__ void pf_rows_out(const cuda_attn_args &a, int t0, int hk, int G, int R, int r0, int c,
                                            const float (&o)[NT][4], const float (&mrow)[2], const float (&lrow)[2]) {
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        float l = lrow[hh];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const int r = r0 + 8 * hh;
        if (r >= R) continue;
        const int tok = r / G, h = hk * G + r % G;
        const float m = mrow[hh];
        if (a.n_split == 1) {
            float cm = 1.0f;
            if (a.sinks) {
                const float sk = a.sinks[h] * 1.4426950408889634f;
                const float M = fmaxf(m, sk);
                cm = m == -INFINITY ? 0.0f : exp2f(m - M);
                l = l * cm + exp2f(sk - M);
            }
            const float inv = l > 0.0f ? cm / l : 0.0f;
            float *row = a.out + (size_t)(t0 + tok) * a.ldo;
#pragma unroll
            for (int n = 0; n < NT; n++) {
                const int d = n * 8 + 2 * c;
                const float x = o[n][2 * hh] * inv, y = o[n][2 * hh + 1] * inv;
                if (a.out_p64) {
                    row[p64_at(h * D + d)] = x;
                    row[p64_at(h * D + d + 1)] = y;
                } else {
                    *(float2 *)(row + (size_t)h * D + d) = make_float2(x, y);
                }
            }
        } else {
            const size_t prow = (((size_t)t0 + tok) * a.n_head + h) * a.n_split + blockIdx.z;
            float *dst = a.work + prow * (size_t)(D + 2);
#pragma unroll
            for (int n = 0; n < NT; n++) *(float2 *)(dst + n * 8 + 2 * c) = make_float2(o[n][2 * hh], o[n][2 * hh + 1]);
            if (c == 0) dst[D] = m == -INFINITY ? -INFINITY : m * 0.6931471805599453f, dst[D + 1] = l;
        }
    }
}
