// mmin.cuh — writing one row of a product's input (cuda_mmin, see cuda_kern.h) from any
// producer: the producer gives the row's values through a functor val(e) (natural order,
// e < K) that may be called several times. Internal to weights.cu and layer.cu.
#ifndef SPARKD_MMIN_CUH
#define SPARKD_MMIN_CUH

#include "kern_util.cuh"
#include "cuda_kern.h"

// Largest element of the scaled row stays below 2^14: hi/lo then never overflow f16 and
// products with codes or f16 weights stay far inside f32.
__device__ __forceinline__ int mmin_exponent(float amax) {
    if (!(amax > 0.0f) || !isfinite(amax)) return 0;
    int ex;
    frexpf(amax, &ex); // amax in [2^(ex-1), 2^ex)
    int e = ex - 14;
    return e < -120 ? -120 : e > 120 ? 120 : e;
}

// Writes row t of m from val. Called by every thread of the block (blockDim.x % 32 == 0);
// red: __shared__ float[32]. Ends with the block synchronized.
template <class V>
__device__ void mmin_emit(const cuda_mmin &m, int t, V val, float *red) {
    const int K = m.K;
    const size_t rb = (size_t)t * (size_t)K;
    float inv = 1.0f;
    if (m.forms & (CUDA_MMIN_F16 | CUDA_MMIN_BF16)) {
        float amax = 0.0f;
        for (int e = threadIdx.x; e < K; e += blockDim.x) amax = fmaxf(amax, fabsf(val(e)));
        amax = block_max(amax, red);
        const int ex = mmin_exponent(amax);
        inv = ldexpf(1.0f, -ex);
        if (threadIdx.x == 0) m.tscale[t] = ldexpf(1.0f, ex);
    }
    const int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    for (int g = threadIdx.x >> 5; g < K / 32; g += nw) {
        const int e = 32 * g + lane;
        const float x = val(e);
        const size_t at = rb + (size_t)(e & ~63) + (size_t)inv_perm64(e & 63);
        if (m.forms & CUDA_MMIN_XP) m.xp[at] = x;
        if (m.forms & (CUDA_MMIN_F16 | CUDA_MMIN_BF16)) {
            const float v = x * inv; // exact: inv is a power of two (unless v underflows)
            if (m.forms & CUDA_MMIN_F16) {
                const __half h = __float2half_rn(v);
                const __half l = __float2half_rn(v - __half2float(h));
                m.hi[at] = __half_as_ushort(h);
                m.lo[at] = __half_as_ushort(l);
            }
            if (m.forms & CUDA_MMIN_BF16) {
                const __nv_bfloat16 h = __float2bfloat16_rn(v);
                const __nv_bfloat16 l = __float2bfloat16_rn(v - __bfloat162float(h));
                m.bhi[at] = __bfloat16_as_ushort(h);
                m.blo[at] = __bfloat16_as_ushort(l);
            }
            const float s = warp_sum(v);
            if (lane == 0) m.gsum[(size_t)t * (K / 32) + g] = s;
        }
        if (m.forms & CUDA_MMIN_Q8) {
            // the dp4a GEMV's quantization (gemv.cu gdq_quantize), per natural block of 32
            const float a = warp_max(fabsf(x));
            const float d = a / 127.0f;
            const int q = a == 0.0f ? 0 : (int)roundf(x / d);
            m.q8[at] = (int8_t)q;
            const float sq = warp_sum((float)q); // exact: |sum| <= 32 * 127
            if (lane == 0) {
                m.q8d[(size_t)t * (K / 32) + g] = d;
                m.q8s[(size_t)t * (K / 32) + g] = d * sq;
            }
        }
    }
    __syncthreads();
}

// ---- vectorized emit (layer.cu's second-generation kernels): every thread holds 4
// consecutive elements e0..e0+3 (e0 % 4 == 0) of row t as a float4, the 8 lanes of an
// aligned group of 8 hold one natural block of 32 (lane & 7 == (e0 >> 2) & 7). In P64
// order e0 and e0 + 1 land at p = inv_perm64(e0 & 63) and p + 1, e0 + 2 and e0 + 3 at
// p + 16 and p + 17, so every form is written as two 2-element stores.

// Sum / max over the 8 lanes of an aligned group (all 32 lanes of the warp call it).
__device__ __forceinline__ float grp8_sum(float v) {
#pragma unroll
    for (int o = 1; o < 8; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float grp8_max(float v) {
#pragma unroll
    for (int o = 1; o < 8; o <<= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ int grp8_isum(int v) {
#pragma unroll
    for (int o = 1; o < 8; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Writes elements e0..e0+3 of row t (m.forms; the F16/BF16 forms scaled by inv = 2^-e_t,
// tscale written by the caller). Called by all 32 lanes of a warp; a lane with live = 0
// (past the row's end: whole groups of 8) only takes part in the shuffles.
__device__ __forceinline__ void mmin_emit4(const cuda_mmin &m, int t, int e0, float4 v, bool live, float inv) {
    const int K = m.K;
    const size_t rb = (size_t)t * (size_t)K;
    const size_t at = rb + (size_t)(e0 & ~63) + (size_t)inv_perm64(e0 & 63);
    const size_t gi = (size_t)t * (K / 32) + (size_t)(e0 >> 5);
    const bool first = (threadIdx.x & 7) == 0;
    if (m.forms & CUDA_MMIN_XP) {
        if (live) {
            *(float2 *)(m.xp + at) = make_float2(v.x, v.y);
            *(float2 *)(m.xp + at + 16) = make_float2(v.z, v.w);
        }
    }
    if (m.forms & (CUDA_MMIN_F16 | CUDA_MMIN_BF16)) {
        const float s0 = v.x * inv, s1 = v.y * inv, s2 = v.z * inv, s3 = v.w * inv; // exact: inv = 2^-e
        if (m.forms & CUDA_MMIN_F16) {
            const __half h0 = __float2half_rn(s0), h1 = __float2half_rn(s1), h2 = __float2half_rn(s2),
                         h3 = __float2half_rn(s3);
            const __half l0 = __float2half_rn(s0 - __half2float(h0)), l1 = __float2half_rn(s1 - __half2float(h1)),
                         l2 = __float2half_rn(s2 - __half2float(h2)), l3 = __float2half_rn(s3 - __half2float(h3));
            if (live) {
                *(ushort2 *)(m.hi + at) = make_ushort2(__half_as_ushort(h0), __half_as_ushort(h1));
                *(ushort2 *)(m.hi + at + 16) = make_ushort2(__half_as_ushort(h2), __half_as_ushort(h3));
                *(ushort2 *)(m.lo + at) = make_ushort2(__half_as_ushort(l0), __half_as_ushort(l1));
                *(ushort2 *)(m.lo + at + 16) = make_ushort2(__half_as_ushort(l2), __half_as_ushort(l3));
            }
        }
        if (m.forms & CUDA_MMIN_BF16) {
            const __nv_bfloat16 h0 = __float2bfloat16_rn(s0), h1 = __float2bfloat16_rn(s1),
                                h2 = __float2bfloat16_rn(s2), h3 = __float2bfloat16_rn(s3);
            const __nv_bfloat16 l0 = __float2bfloat16_rn(s0 - __bfloat162float(h0)),
                                l1 = __float2bfloat16_rn(s1 - __bfloat162float(h1)),
                                l2 = __float2bfloat16_rn(s2 - __bfloat162float(h2)),
                                l3 = __float2bfloat16_rn(s3 - __bfloat162float(h3));
            if (live) {
                *(ushort2 *)(m.bhi + at) = make_ushort2(__bfloat16_as_ushort(h0), __bfloat16_as_ushort(h1));
                *(ushort2 *)(m.bhi + at + 16) = make_ushort2(__bfloat16_as_ushort(h2), __bfloat16_as_ushort(h3));
                *(ushort2 *)(m.blo + at) = make_ushort2(__bfloat16_as_ushort(l0), __bfloat16_as_ushort(l1));
                *(ushort2 *)(m.blo + at + 16) = make_ushort2(__bfloat16_as_ushort(l2), __bfloat16_as_ushort(l3));
            }
        }
        const float s = grp8_sum((s0 + s1) + (s2 + s3));
        if (live && first) m.gsum[gi] = s;
    }
    if (m.forms & CUDA_MMIN_Q8) {
        // the dp4a GEMV's quantization (gemv.cu gdq_quantize), per natural block of 32
        const float a = grp8_max(fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
        const float d = a / 127.0f;
        const int q0 = a == 0.0f ? 0 : (int)roundf(v.x / d), q1 = a == 0.0f ? 0 : (int)roundf(v.y / d),
                  q2 = a == 0.0f ? 0 : (int)roundf(v.z / d), q3 = a == 0.0f ? 0 : (int)roundf(v.w / d);
        const int sq = grp8_isum(q0 + q1 + q2 + q3); // |sum| <= 32 * 127
        if (live) {
            *(char2 *)(m.q8 + at) = make_char2((signed char)q0, (signed char)q1);
            *(char2 *)(m.q8 + at + 16) = make_char2((signed char)q2, (signed char)q3);
            if (first) {
                m.q8d[gi] = d;
                m.q8s[gi] = d * (float)sq;
            }
        }
    }
}

__device__ __forceinline__ float4 ld4(const float *p) { return *(const float4 *)p; }
__device__ __forceinline__ float amax4(float4 v) {
    return fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
}

// Row emit when the whole row sits in registers: thread i of a block of blockDim.x
// (% 32 == 0) holds float4 index j * blockDim.x + i in v[j], j < NV, and NV * blockDim.x * 4
// == m.K. One row reduction (the exponent) only for the F16/BF16 forms. red: __shared__
// float[32]. Ends with the block synchronized only when it reduced.
// The row's scale for the F16/BF16 forms (its tscale written by thread 0; 1 without them).
template <int NV>
__device__ __forceinline__ float mmin_row_inv(const cuda_mmin &m, int t, const float4 (&v)[NV], float *red) {
    float inv = 1.0f;
    if (m.forms & (CUDA_MMIN_F16 | CUDA_MMIN_BF16)) {
        float a = 0.0f;
#pragma unroll
        for (int j = 0; j < NV; j++) a = fmaxf(a, amax4(v[j]));
        a = block_max(a, red);
        const int ex = mmin_exponent(a);
        inv = ldexpf(1.0f, -ex);
        if (threadIdx.x == 0) m.tscale[t] = ldexpf(1.0f, ex);
    }
    return inv;
}
template <int NV>
__device__ __forceinline__ void mmin_emit_row(const cuda_mmin &m, int t, const float4 (&v)[NV], float *red) {
    const float inv = mmin_row_inv<NV>(m, t, v, red);
#pragma unroll
    for (int j = 0; j < NV; j++) mmin_emit4(m, t, 4 * (j * (int)blockDim.x + (int)threadIdx.x), v[j], true, inv);
}

// The second-generation producers (layer.cu): 1 = take the first-generation kernels
// (SPARKD_ELT_OLD=1 at the first call; cuda_elt_old_set for the bench's A/B).
int elt_old();
// cuda_mmin_prepare's second-generation path (layer.cu); returns -1 when it does not take
// the shape (the caller then runs the first-generation kernel).
int elt_prepare(const float *x, int ldx, cuda_mmin *m, int T, void *stream, err *e);

#endif
