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

#endif
