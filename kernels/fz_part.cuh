// fz_part.cuh — split-K partials summed by their consumer (round 8, helper fz): the host side a
// product's launcher calls instead of its reduce launch (cuda_mm_args.defer), and the device
// side a consumer (layer.cu: resid_norm, the activation, qkv) reads a value through. The sums run
// in the reduce kernels' order (splitk_reduce, gemms2_reduce_kernel), so a consumer sees the
// same bits the reduce would have stored. Internal to kernels/.
#ifndef SPARKD_FZ_PART_CUH
#define SPARKD_FZ_PART_CUH

#include <string.h>

#include "cuda_kern.h"

// Host: whether a product of ksplit > 1 partials (ws (ksplit, T, ws_rows) f32, matrix i's rows
// from row0[i]) leaves them to its consumer; if so describes them in d (the caller then skips
// its reduce launch).
static inline bool part_defer_z(cuda_defer *d, const float *ws, int ksplit, int T, int ws_rows, const int *row0, int n) {
    if (!d || !d->on || ksplit < 2 || !ws) return false;
    for (int i = 0; i < n; i++) {
        cuda_part &P = d->part[i];
        memset(&P, 0, sizeof P);
        P.p = ws + row0[i];
        P.zs = (long long)T * ws_rows;
        P.ld = ws_rows;
        P.nz = ksplit;
    }
    d->used = (uint64_t)ksplit * T * ws_rows * 4;
    return true;
}

// Host: the same for gemms2_kernel's pieces (2 slots a CTA of G, trows rows, T tokens; tiles of
// matrix i from tile0[i]; N = tiles x nst).
static inline bool part_defer_g2(cuda_defer *d, const float *ws, int G, long long N, int nst, int T, int trows,
                                 const int *tile0, int n) {
    if (!d || !d->on || !ws) return false;
    for (int i = 0; i < n; i++) {
        cuda_part &P = d->part[i];
        memset(&P, 0, sizeof P);
        P.p = ws;
        P.g2 = 1;
        P.G = G;
        P.N = N;
        P.nst = nst;
        P.zs = T;
        P.ld = trows;
        P.tile0 = tile0[i];
    }
    d->used = (uint64_t)2 * G * T * trows * 4;
    return true;
}

__host__ __device__ inline bool part_on(const cuda_part &P) { return P.nz > 0 || P.g2; }
// The tokens the partials hold.
static inline int part_tokens(const cuda_part &P) { return P.g2 ? (int)P.zs : P.ld ? (int)(P.zs / P.ld) : 0; }

#ifdef __CUDACC__
// Device: elements r..r+3 (r % 4 == 0, the 4 in one tile) of token t of an output whose plain
// row is y (token t's row, or NULL where P carries every value).
__device__ __forceinline__ float4 part_ld4(const cuda_part &P, const float *y, int t, int r) {
    float4 s = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (P.g2) {
        const long long tile = P.tile0 + r / P.ld;
        const int c0 = (int)(((tile * P.nst + 1) * P.G - 1) / P.N);
        const int c1 = (int)((((tile + 1) * P.nst) * P.G - 1) / P.N);
        if (c0 == c1) return *(const float4 *)(y + r);
        for (int c = c0; c <= c1; c++) {
            const int slot = ((long long)c * P.N / P.G) / P.nst == tile ? 0 : 1;
            const float4 q = *(const float4 *)(P.p + ((size_t)(2 * c + slot) * P.zs + t) * P.ld + r % P.ld);
            s.x += q.x; s.y += q.y; s.z += q.z; s.w += q.w;
        }
        return s;
    }
    const float *p = P.p + (size_t)t * P.ld + r;
    for (int z = 0; z < P.nz; z++) {
        const float4 q = *(const float4 *)(p + (size_t)z * P.zs);
        s.x += q.x; s.y += q.y; s.z += q.z; s.w += q.w;
    }
    return s;
}
// One element r of token t (as part_ld4).
__device__ __forceinline__ float part_ld1(const cuda_part &P, const float *y, int t, int r) {
    float s = 0.0f;
    if (P.g2) {
        const long long tile = P.tile0 + r / P.ld;
        const int c0 = (int)(((tile * P.nst + 1) * P.G - 1) / P.N);
        const int c1 = (int)((((tile + 1) * P.nst) * P.G - 1) / P.N);
        if (c0 == c1) return y[r];
        for (int c = c0; c <= c1; c++) {
            const int slot = ((long long)c * P.N / P.G) / P.nst == tile ? 0 : 1;
            s += P.p[((size_t)(2 * c + slot) * P.zs + t) * P.ld + r % P.ld];
        }
        return s;
    }
    const float *p = P.p + (size_t)t * P.ld + r;
    for (int z = 0; z < P.nz; z++) s += p[(size_t)z * P.zs];
    return s;
}
#endif

#endif
