// attn.cu — causal softmax attention over the paged KV cache, flash-style (online
// softmax, one pass over K/V), f32 arithmetic on any KV type; prefill and decode in one
// kernel, with GQA, sliding window, attention sinks and a split over long contexts.
//
// A CTA takes one tile of query tokens of one sequence (cuda_attn_tile) and one KV head,
// i.e. rows = tokens x (the query heads of that KV head, up to 32 of them). Positions go by
// in tiles of 32: lane j of a warp owns position p0 + j for the scores (q rows come from
// shared memory as broadcasts, the lane's K row from global/L1, converted to f32), and dims
// 4*lane + 128*i for P.V. With more than 8 rows the four warps split the rows (R <= 8
// each) and all walk the same KV tiles (L1 serves the repeats); with 8 rows or fewer
// (decode) each warp takes every fourth KV tile for all rows and the warps' partial
// (max, sum, output) are merged in shared memory. n_split > 1 also divides a tile's
// positions over CTAs; cuda_attention then merges their partials in a second kernel.
#include "cuda_kern.h"

#include <cuda_fp8.h>
#include <stdlib.h>
#include <string.h>

#include "kern_util.cuh"
#include "attn_pf.cuh"
#include "rowfuse.cuh"

#define ATT_WARPS 4
#define ATT_R 8      // rows per warp (max)
#define ATT_ROWS 32  // rows per CTA (max)
#define ATT_DMAX 256
#define V_ILP 8      // V rows in flight per P.V step


extern "C" int cuda_attn_tile_tokens(int group) { return group >= ATT_ROWS ? 1 : ATT_ROWS / group; }

// 8 consecutive elements of a cache row at element index d (d % 8 == 0) as floats.
template <int KV>
__device__ __forceinline__ void kv_load8(const void *base, size_t at, float *o) {
    if constexpr (KV == CUDA_KV_F32) {
        const float4 a = *(const float4 *)((const float *)base + at), b = *(const float4 *)((const float *)base + at + 4);
        o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w; o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
    } else if constexpr (KV == CUDA_KV_F16) {
        const uint4 v = *(const uint4 *)((const __half *)base + at);
        const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float2 f = __half22float2(*(const __half2 *)&w[i]);
            o[2 * i] = f.x;
            o[2 * i + 1] = f.y;
        }
    } else if constexpr (KV == CUDA_KV_BF16) {
        const uint4 v = *(const uint4 *)((const __nv_bfloat16 *)base + at);
        const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            o[2 * i] = __uint_as_float(w[i] << 16);
            o[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    } else if constexpr (KV == CUDA_KV_Q8) {
        const uint2 v = *(const uint2 *)((const int8_t *)base + at);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            o[i] = (float)(int8_t)(v.x >> (8 * i));
            o[4 + i] = (float)(int8_t)(v.y >> (8 * i));
        }
    } else {
        const uint2 v = *(const uint2 *)((const uint8_t *)base + at);
        const uint32_t w[2] = {v.x, v.y};
#pragma unroll
        for (int i = 0; i < 2; i++) {
#pragma unroll
            for (int k = 0; k < 2; k++) {
                const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(w[i] >> (16 * k)), __NV_E4M3);
                const float2 f = __half22float2(*(const __half2 *)&h);
                o[4 * i + 2 * k] = f.x;
                o[4 * i + 2 * k + 1] = f.y;
            }
        }
    }
}

// 4 consecutive elements at d (d % 4 == 0).
template <int KV>
__device__ __forceinline__ float4 kv_load4(const void *base, size_t at) {
    if constexpr (KV == CUDA_KV_F32) {
        return *(const float4 *)((const float *)base + at);
    } else if constexpr (KV == CUDA_KV_F16) {
        const uint2 v = *(const uint2 *)((const __half *)base + at);
        const float2 a = __half22float2(*(const __half2 *)&v.x), b = __half22float2(*(const __half2 *)&v.y);
        return make_float4(a.x, a.y, b.x, b.y);
    } else if constexpr (KV == CUDA_KV_BF16) {
        const uint2 v = *(const uint2 *)((const __nv_bfloat16 *)base + at);
        return make_float4(__uint_as_float(v.x << 16), __uint_as_float(v.x & 0xffff0000u),
                           __uint_as_float(v.y << 16), __uint_as_float(v.y & 0xffff0000u));
    } else if constexpr (KV == CUDA_KV_Q8) {
        const uint32_t v = *(const uint32_t *)((const int8_t *)base + at);
        return make_float4((float)(int8_t)v, (float)(int8_t)(v >> 8), (float)(int8_t)(v >> 16), (float)(int8_t)(v >> 24));
    } else {
        const uint32_t v = *(const uint32_t *)((const uint8_t *)base + at);
        const __half2_raw h0 = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)v, __NV_E4M3);
        const __half2_raw h1 = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(v >> 16), __NV_E4M3);
        const float2 a = __half22float2(*(const __half2 *)&h0), b = __half22float2(*(const __half2 *)&h1);
        return make_float4(a.x, a.y, b.x, b.y);
    }
}

struct att_params {
    cuda_attn_args a;
    int G, Gc, hsplit, QT;
};

__device__ __forceinline__ size_t kv_row(const att_params &P, int seq, int pos, int hk) {
    const cuda_attn_args &a = P.a;
    const int32_t blk = a.block_tables[(size_t)seq * a.max_blocks + pos / a.kv_block];
    return ((size_t)blk * a.n_kv + hk) * a.kv_block + (pos % a.kv_block);
}

template <int KV>
__global__ __launch_bounds__(ATT_WARPS * 32) void attn_kernel(const att_params P) {
    const cuda_attn_args &a = P.a;
    extern __shared__ __align__(16) float sm[];
    const int D = a.head_dim;
    const cuda_attn_tile tile = a.tiles[blockIdx.x];
    const int hk = blockIdx.y / P.hsplit;
    const int hg0 = (blockIdx.y % P.hsplit) * ATT_ROWS; // first head-in-group of this CTA
    const int Gc = min(P.Gc, P.G - hg0);
    const int rows = tile.n * Gc;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const bool wsplit = rows <= ATT_R;
    const int split = blockIdx.z;
    pdl_trigger();
    pdl_wait();

    // q rows -> shared (row r: token r / Gc, head hk * G + hg0 + r % Gc)
    float *qs = sm;
    for (int idx = threadIdx.x; idx < rows * D; idx += blockDim.x) {
        const int r = idx / D, d = idx % D;
        const int h = hk * P.G + hg0 + r % Gc;
        qs[idx] = a.q[(size_t)(tile.t0 + r / Gc) * a.ldq + (size_t)h * D + d];
    }
    __syncthreads();

    // positions of the whole tile, and this split's share (whole 32-position tiles)
    const int last = tile.pos0 + tile.n - 1;
    const int first = a.window > 0 ? max(0, tile.pos0 - a.window + 1) : 0;
    const int ntile = (last - first) / 32 + 1;
    const int per = (ntile + a.n_split - 1) / a.n_split;
    const int kt0 = split * per, kt1 = min(ntile, kt0 + per);

    // this warp's rows
    int rr[ATT_R], nr = 0;
#pragma unroll
    for (int i = 0; i < ATT_R; i++) {
        const int r = wsplit ? i : warp + ATT_WARPS * i;
        rr[i] = r;
        if (r < rows && (wsplit ? i < rows : true)) nr = i + 1;
    }
    float m[ATT_R], l[ATT_R], o[ATT_R][2][4];
#pragma unroll
    for (int i = 0; i < ATT_R; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int k = 0; k < 2; k++) o[i][k][0] = o[i][k][1] = o[i][k][2] = o[i][k][3] = 0.0f;
    }
    const bool k8 = KV == CUDA_KV_Q8 || KV == CUDA_KV_FP8;
    for (int kt = kt0 + (wsplit ? warp : 0); kt < kt1; kt += wsplit ? ATT_WARPS : 1) {
        const int p0 = first + kt * 32;
        const int p = p0 + lane;
        const bool pv = p <= last;
        const size_t krow = kv_row(P, tile.seq, pv ? p : last, hk);
        // scores of position p for every row of the warp
        float s[ATT_R];
#pragma unroll
        for (int i = 0; i < ATT_R; i++) s[i] = 0.0f;
#pragma unroll 4
        for (int d = 0; d < D; d += 8) {
            float kv[8];
            kv_load8<KV>(a.kv.k, krow * D + d, kv);
#pragma unroll
            for (int i = 0; i < ATT_R; i++) {
                if (i >= nr) break;
                const float4 q0 = *(const float4 *)(qs + rr[i] * D + d), q1 = *(const float4 *)(qs + rr[i] * D + d + 4);
                s[i] += q0.x * kv[0] + q0.y * kv[1] + q0.z * kv[2] + q0.w * kv[3] + q1.x * kv[4] + q1.y * kv[5] +
                        q1.z * kv[6] + q1.w * kv[7];
            }
        }
        const float ksc = k8 ? a.kv.k_scale[krow] : 1.0f;
        float pr[ATT_R];
#pragma unroll
        for (int i = 0; i < ATT_R; i++) {
            if (i >= nr) break;
            const int pos_r = tile.pos0 + rr[i] / Gc;
            const bool ok = pv && p <= pos_r && (a.window <= 0 || p > pos_r - a.window);
            const float sc = ok ? s[i] * ksc * a.scale : -INFINITY;
            const float mx = fmaxf(m[i], warp_max(sc));
            const float pp = mx == -INFINITY ? 0.0f : expf(sc - mx);
            const float corr = mx == -INFINITY ? 1.0f : expf(m[i] - mx);
            l[i] = l[i] * corr + warp_sum(pp);
            m[i] = mx;
#pragma unroll
            for (int k = 0; k < 2; k++) {
                o[i][k][0] *= corr; o[i][k][1] *= corr; o[i][k][2] *= corr; o[i][k][3] *= corr;
            }
            pr[i] = pp;
        }
        // P.V: lane owns dims 4*lane + 128*k. Position p0 + j's V row is the K row lane j
        // found (same cache row index); V_ILP rows are loaded before any is used.
        const int jmax = min(32, last - p0 + 1);
        for (int j0 = 0; j0 < jmax; j0 += V_ILP) {
            float4 vv[V_ILP][2];
            float vsc[V_ILP];
#pragma unroll
            for (int u = 0; u < V_ILP; u++) {
                const int j = j0 + u;
                const size_t vrow = (size_t)__shfl_sync(0xffffffffu, (unsigned long long)krow, j & 31);
                vsc[u] = k8 && j < jmax ? a.kv.v_scale[vrow] : 1.0f;
#pragma unroll
                for (int k = 0; k < 2; k++) {
                    const int d = 4 * lane + 128 * k;
                    vv[u][k] = d < D && j < jmax ? kv_load4<KV>(a.kv.v, vrow * D + d) : make_float4(0.f, 0.f, 0.f, 0.f);
                }
            }
#pragma unroll
            for (int u = 0; u < V_ILP; u++) {
                const int j = j0 + u;
#pragma unroll
                for (int i = 0; i < ATT_R; i++) {
                    if (i >= nr) break;
                    // (j past jmax: p is 0 there, the shuffle stays warp-uniform)
                    const float pj = __shfl_sync(0xffffffffu, pr[i], j & 31) * vsc[u];
                    if (j >= jmax) continue;
#pragma unroll
                    for (int k = 0; k < 2; k++) {
                        o[i][k][0] = fmaf(pj, vv[u][k].x, o[i][k][0]);
                        o[i][k][1] = fmaf(pj, vv[u][k].y, o[i][k][1]);
                        o[i][k][2] = fmaf(pj, vv[u][k].z, o[i][k][2]);
                        o[i][k][3] = fmaf(pj, vv[u][k].w, o[i][k][3]);
                    }
                }
            }
        }
    }

    // merge the warps (decode layout): partials -> shared, warp 0 combines
    if (wsplit) {
        float *ws = sm + ATT_ROWS * D; // [warp][row][D + 2]
        const int stride = D + 2;
#pragma unroll
        for (int i = 0; i < ATT_R; i++) {
            if (i >= nr) break;
            float *dst = ws + ((size_t)warp * ATT_R + i) * stride;
#pragma unroll
            for (int k = 0; k < 2; k++) {
                const int d = 4 * lane + 128 * k;
                if (d < D) { dst[d] = o[i][k][0]; dst[d + 1] = o[i][k][1]; dst[d + 2] = o[i][k][2]; dst[d + 3] = o[i][k][3]; }
            }
            if (lane == 0) { dst[D] = m[i]; dst[D + 1] = l[i]; }
        }
        __syncthreads();
        if (warp != 0) return;
#pragma unroll
        for (int i = 0; i < ATT_R; i++) {
            if (i >= nr) break;
            float mx = -INFINITY;
            for (int w = 0; w < ATT_WARPS; w++) mx = fmaxf(mx, ws[((size_t)w * ATT_R + i) * stride + D]);
            float ls = 0.0f, acc[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
            for (int w = 0; w < ATT_WARPS; w++) {
                const float *src = ws + ((size_t)w * ATT_R + i) * stride;
                const float c = src[D] == -INFINITY ? 0.0f : expf(src[D] - mx);
                ls += src[D + 1] * c;
#pragma unroll
                for (int k = 0; k < 2; k++) {
                    const int d = 4 * lane + 128 * k;
                    if (d < D) {
#pragma unroll
                        for (int q = 0; q < 4; q++) acc[k][q] += src[d + q] * c;
                    }
                }
            }
            m[i] = mx;
            l[i] = ls;
#pragma unroll
            for (int k = 0; k < 2; k++) {
#pragma unroll
                for (int q = 0; q < 4; q++) o[i][k][q] = acc[k][q];
            }
        }
    }

    // write: final (n_split == 1) or partial
#pragma unroll
    for (int i = 0; i < ATT_R; i++) {
        if (i >= nr) break;
        const int r = rr[i];
        const int tok = r / Gc, h = hk * P.G + hg0 + r % Gc;
        if (a.n_split == 1) {
            float lt = l[i];
            if (a.sinks && m[i] != -INFINITY) lt += expf(a.sinks[h] - m[i]);
            const float inv = lt > 0.0f ? 1.0f / lt : 0.0f;
            float *row = a.out + (size_t)(tile.t0 + tok) * a.ldo;
#pragma unroll
            for (int k = 0; k < 2; k++) {
                const int d = 4 * lane + 128 * k;
                if (d >= D) continue;
                const float4 v = make_float4(o[i][k][0] * inv, o[i][k][1] * inv, o[i][k][2] * inv, o[i][k][3] * inv);
                if (a.out_p64) {
                    const int e0 = h * D + d;
                    row[p64_at(e0)] = v.x; row[p64_at(e0 + 1)] = v.y; row[p64_at(e0 + 2)] = v.z; row[p64_at(e0 + 3)] = v.w;
                } else {
                    *(float4 *)(row + (size_t)h * D + d) = v;
                }
            }
        } else {
            const size_t prow = (((size_t)tile.t0 + tok) * a.n_head + h) * a.n_split + split;
            float *dst = a.work + prow * (size_t)(D + 2);
#pragma unroll
            for (int k = 0; k < 2; k++) {
                const int d = 4 * lane + 128 * k;
                if (d < D) *(float2 *)(dst + d) = make_float2(o[i][k][0], o[i][k][1]), *(float2 *)(dst + d + 2) = make_float2(o[i][k][2], o[i][k][3]);
            }
            if (lane == 0) { dst[D] = m[i]; dst[D + 1] = l[i]; }
        }
    }
}

// grid (n_tiles, n_head): merges the n_split partials of every token of the tile.
__global__ void attn_combine_kernel(const att_params P) {
    const cuda_attn_args &a = P.a;
    pdl_trigger();
    pdl_wait();
    const cuda_attn_tile tile = a.tiles[blockIdx.x];
    const int h = blockIdx.y, D = a.head_dim;
    for (int tok = 0; tok < tile.n; tok++) {
        const float *part = a.work + (((size_t)tile.t0 + tok) * a.n_head + h) * a.n_split * (size_t)(D + 2);
        float mx = -INFINITY;
        for (int s = 0; s < a.n_split; s++) mx = fmaxf(mx, part[(size_t)s * (D + 2) + D]);
        float ls = 0.0f;
        for (int s = 0; s < a.n_split; s++) {
            const float ms = part[(size_t)s * (D + 2) + D];
            if (ms != -INFINITY) ls += part[(size_t)s * (D + 2) + D + 1] * expf(ms - mx);
        }
        if (a.sinks && mx != -INFINITY) ls += expf(a.sinks[h] - mx);
        const float inv = ls > 0.0f ? 1.0f / ls : 0.0f;
        float *row = a.out + (size_t)(tile.t0 + tok) * a.ldo;
        for (int d = threadIdx.x; d < D; d += blockDim.x) {
            float acc = 0.0f;
            for (int s = 0; s < a.n_split; s++) {
                const float ms = part[(size_t)s * (D + 2) + D];
                if (ms != -INFINITY) acc += part[(size_t)s * (D + 2) + d] * expf(ms - mx);
            }
            row[a.out_p64 ? p64_at(h * D + d) : (size_t)h * D + d] = acc * inv;
        }
    }
}

extern "C" uint64_t cuda_attn_work_bytes(int n_tiles, int n_head, int n_kv, int head_dim, int n_split) {
    if (n_split <= 1 || n_kv < 1) return 0;
    const int QT = cuda_attn_tile_tokens(n_head / n_kv);
    return cuda_attn_work_bytes_tokens(n_tiles * QT, n_head, head_dim, n_split);
}

extern "C" uint64_t cuda_attn_work_bytes_tokens(int T, int n_head, int head_dim, int n_split) {
    if (n_split <= 1) return 0;
    return (uint64_t)T * n_head * n_split * (uint64_t)(head_dim + 2) * 4;
}

template <int KV>
static int attn_launch(const att_params &P, dim3 grid, size_t smem, void *stream, err *e) {
    static bool attr[64]; // (per device)
    CUDA_TRY(cuda_smem_once(attn_kernel<KV>, (int)((ATT_ROWS * ATT_DMAX + ATT_WARPS * ATT_R * (ATT_DMAX + 2)) * 4), attr));
    CUDA_TRY(cuda_launch(attn_kernel<KV>, grid, dim3(ATT_WARPS * 32), smem, stream, P));
    return 0;
}

// ================================================================ decode on the tensor cores
//
// One CTA (4 warps) takes one plan item (cuda_attn_item) and one KV head: the rows are the
// item's member tokens x the G query heads of that KV head (up to 32 rows = two m16 tiles),
// so every K/V row is read from memory once for all of them: the G heads of a GQA group at
// batch 1, and member tokens x G at once for a prefix that several sequences share (their
// block tables hold the same block ids: the plan's cascade items). The positions of the item
// go by in steps of 16; warp w takes steps w, w + 4, ..., each step's 16 K and 16 V rows
// copied global -> the warp's own shared buffer with cp.async (16-byte chunks, two stages:
// the next step's rows are in flight while this one is computed), then
//   S (rows x 16) = Q K^T   mma.sync m16n8k16, K fragments by ldmatrix from the K rows,
//   online softmax per row (exp2; scale * log2 e folded into Q),
//   O += P V                mma.sync m16n8k16, V fragments by ldmatrix.trans.
// Q and P are f32 values split into f16 hi + lo halves, each multiplied (two MMAs): with K
// and V exact in f16 the products keep ~22 bits, the f32 kernel's accuracy (tolerance 2e-5),
// at twice the tensor work, which is still far below the time of the bytes. The 4 warps'
// partials merge in shared memory; the CTA writes one (O, max, sum) partial per row into its
// token's slot; attn_dec_combine merges a token's slots by log-sum-exp (sinks added there).

#define DEC_WARPS 4
#define DEC_ROWS 32 // rows per CTA (2 m-tiles)
#define DEC_STEP 16 // positions per warp step

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void cp_async16(void *dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(dst)), "l"(src));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
__device__ __forceinline__ void ldsm4(uint32_t *r, const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm4t(uint32_t *r, const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(p)));
}
__device__ __forceinline__ void mma16816(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// (x, y) -> f16x2 hi and the f16x2 of what hi missed
__device__ __forceinline__ void split2(float x, float y, uint32_t &hi, uint32_t &lo) {
    const __half2 h = __floats2half2_rn(x, y);
    const float2 hf = __half22float2(h);
    const __half2 l = __floats2half2_rn(x - hf.x, y - hf.y);
    hi = *(const uint32_t *)&h;
    lo = *(const uint32_t *)&l;
}

template <int D> struct dec_smem {
    static constexpr int LD = D + 8;                          // halves per row (16 B pad: ldmatrix banks)
    static constexpr int Q = 2 * DEC_ROWS * LD * 2;           // Q hi, lo (bytes)
    static constexpr int STAGE = 2 * DEC_STEP * LD * 2;       // K + V rows of one step
    static constexpr int KV = DEC_WARPS * 2 * STAGE;          // 2 stages per warp
    static constexpr int PART = DEC_WARPS * DEC_ROWS * (D + 2) * 4; // the warps' partials (reuses KV)
    static constexpr int TOTAL = Q + (KV > PART ? KV : PART);
};

template <int D>
__global__ __launch_bounds__(DEC_WARPS * 32, 2) void attn_dec_kernel(const cuda_attn_args a) {
    using SM = dec_smem<D>;
    constexpr int LD = SM::LD, NT = D / 8; // dim n-tiles of O
    extern __shared__ __align__(16) uint8_t dsm[];
    __half *qh = (__half *)dsm, *ql = qh + DEC_ROWS * LD;
    uint8_t *kvs = dsm + SM::Q;
    pdl_trigger();
    pdl_wait();
    const cuda_attn_item &it = a.plan[blockIdx.x]; // (read in place: a local copy would sit in local memory)
    if (it.n <= 0) return;
    const int hk = blockIdx.y, G = a.n_head / a.n_kv, R = it.n * G;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, c = lane & 3;
    const float qsc = a.scale * 1.4426950408889634f;

    // the range after the window: [lo, hi) in steps of DEC_STEP, this item's part of it
    int minpos = 1 << 30, maxpos = 0;
    for (int m = 0; m < it.n; m++) {
        const int p = a.tiles[it.tile[m]].pos0;
        minpos = min(minpos, p);
        maxpos = max(maxpos, p);
    }
    int lo = it.p0, hi = min(it.p1, maxpos + 1);
    if (a.window > 0) lo = max(lo, minpos - a.window + 1);
    const int nsteps_all = hi > lo ? (hi - lo + DEC_STEP - 1) / DEC_STEP : 0;
    const int per = (nsteps_all + it.nparts - 1) / it.nparts;
    const int s0 = it.part * per, s1 = min(nsteps_all, s0 + per);
    const int seq0 = a.tiles[it.tile[0]].seq; // member 0's table holds every position of the range
    const int32_t *btab = a.block_tables + (size_t)seq0 * a.max_blocks;

    // Q rows (member r / G, head hk * G + r % G) * scale * log2 e -> f16 hi, lo; rows >= R zero
    for (int idx = threadIdx.x; idx < DEC_ROWS * (D / 2); idx += blockDim.x) {
        const int r = idx / (D / 2), d = 2 * (idx % (D / 2));
        float x = 0.0f, y = 0.0f;
        if (r < R) {
            const float *q = a.q + (size_t)a.tiles[it.tile[r / G]].t0 * a.ldq + (size_t)(hk * G + r % G) * D + d;
            x = q[0] * qsc;
            y = q[1] * qsc;
        }
        uint32_t h_, l_;
        split2(x, y, h_, l_);
        *(uint32_t *)(qh + r * LD + d) = h_;
        *(uint32_t *)(ql + r * LD + d) = l_;
    }
    // per-lane rows: mt * 16 + g + 8 * hh; their token position (masking) or -1 (padding)
    int rpos[2][2];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            const int r = mt * 16 + g + 8 * hh;
            rpos[mt][hh] = r < R ? a.tiles[it.tile[r / G]].pos0 : -1;
        }
    const int nmt = R > 16 ? 2 : 1;
    __syncthreads();

    float o[2][NT][4], mrow[2][2], lrow[2][2];
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
#pragma unroll
        for (int hh = 0; hh < 2; hh++) mrow[mt][hh] = -INFINITY, lrow[mt][hh] = 0.0f;
#pragma unroll
        for (int n = 0; n < NT; n++) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.0f;
    }
    __half *wbuf = (__half *)(kvs + (size_t)warp * 2 * SM::STAGE); // [stage][K 16 x LD | V 16 x LD]
    const __half *K = (const __half *)a.kv.k, *V = (const __half *)a.kv.v;
    // stage the K and V rows of step s (positions lo + 16 s ..; past hi: the last valid row)
    auto issue = [&](int s, int stage) {
        __half *kb = wbuf + (size_t)stage * 2 * DEC_STEP * LD, *vb = kb + DEC_STEP * LD;
        const int p = min(lo + s * DEC_STEP + (lane & 15), hi - 1);
        const size_t row = ((size_t)btab[p / a.kv_block] * a.n_kv + hk) * a.kv_block + p % a.kv_block;
        constexpr int CH = D / 8; // 16-byte chunks per row
#pragma unroll
        for (int i = 0; i < DEC_STEP * CH / 32; i++) {
            const int j = lane + 32 * i, rr = j / CH, ch = j % CH;
            const size_t rw = __shfl_sync(0xffffffffu, (unsigned long long)row, rr);
            cp_async16(kb + rr * LD + ch * 8, K + rw * D + ch * 8);
            cp_async16(vb + rr * LD + ch * 8, V + rw * D + ch * 8);
        }
    };
    int s = s0 + warp;
    if (s < s1) issue(s, 0);
    cp_commit();
    for (int stage = 0; s < s1; s += DEC_WARPS, stage ^= 1) {
        if (s + DEC_WARPS < s1) issue(s + DEC_WARPS, stage ^ 1);
        cp_commit();
        cp_wait<1>();
        __syncwarp();
        const __half *kb = wbuf + (size_t)stage * 2 * DEC_STEP * LD, *vb = kb + DEC_STEP * LD;
        const int p0 = lo + s * DEC_STEP;
        // S = Q K^T: two n-tiles of 8 positions
        float sc[2][2][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int nt = 0; nt < 2; nt++) sc[mt][nt][0] = sc[mt][nt][1] = sc[mt][nt][2] = sc[mt][nt][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++) {
            uint32_t kf[4]; // b0, b1 of positions 0-7, then of 8-15
            ldsm4(kf, kb + ((lane >> 4) * 8 + (lane & 7)) * LD + ks * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                if (mt >= nmt) break;
                uint32_t ah[4], al[4];
                const int qo = (mt * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LD + ks * 16 + (lane >> 4) * 8;
                ldsm4(ah, qh + qo);
                ldsm4(al, ql + qo);
                mma16816(sc[mt][0], ah, kf[0], kf[1]);
                mma16816(sc[mt][0], al, kf[0], kf[1]);
                mma16816(sc[mt][1], ah, kf[2], kf[3]);
                mma16816(sc[mt][1], al, kf[2], kf[3]);
            }
        }
        // online softmax; P as the A operand of P V (hi, lo)
        uint32_t ph[2][4], pl[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
            if (mt >= nmt) break;
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                const int pr = rpos[mt][hh];
                float v[4];
#pragma unroll
                for (int nt = 0; nt < 2; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int p = p0 + nt * 8 + 2 * c + e;
                        const bool ok = p < hi && p <= pr && (a.window <= 0 || p > pr - a.window);
                        v[nt * 2 + e] = ok ? sc[mt][nt][2 * hh + e] : -INFINITY;
                    }
                float mx = fmaxf(fmaxf(v[0], v[1]), fmaxf(v[2], v[3]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float mn = fmaxf(mrow[mt][hh], mx);
                const float corr = mn == -INFINITY ? 1.0f : exp2f(mrow[mt][hh] - mn);
                mrow[mt][hh] = mn;
                float ps = 0.0f;
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    v[i] = mn == -INFINITY ? 0.0f : exp2f(v[i] - mn);
                    ps += v[i];
                }
                lrow[mt][hh] = lrow[mt][hh] * corr + ps;
#pragma unroll
                for (int n = 0; n < NT; n++) o[mt][n][2 * hh] *= corr, o[mt][n][2 * hh + 1] *= corr;
                // a0 (row g, k 2c..) = n-tile 0, a1 (row g + 8) , a2 (row g, k 8 + 2c..) = n-tile 1, a3
                split2(v[0], v[1], ph[mt][hh], pl[mt][hh]);
                split2(v[2], v[3], ph[mt][2 + hh], pl[mt][2 + hh]);
            }
        }
        // O += P V: V fragments of dims 16 j .. 16 j + 15 (two n-tiles) per ldmatrix.trans
#pragma unroll
        for (int j = 0; j < D / 16; j++) {
            uint32_t vf[4];
            ldsm4t(vf, vb + (((lane >> 3) & 1) * 8 + (lane & 7)) * LD + j * 16 + (lane >> 4) * 8);
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                if (mt >= nmt) break;
                mma16816(o[mt][2 * j], ph[mt], vf[0], vf[1]);
                mma16816(o[mt][2 * j], pl[mt], vf[0], vf[1]);
                mma16816(o[mt][2 * j + 1], ph[mt], vf[2], vf[3]);
                mma16816(o[mt][2 * j + 1], pl[mt], vf[2], vf[3]);
            }
        }
        __syncwarp(); // this stage is refilled next iteration but one
    }
    cp_wait<0>();
    __syncthreads(); // every warp done with its buffers: they become the partials

    // the warps' partials -> shared [warp][row][D + 2] (max and sum in log2 units)
    float *part = (float *)kvs;
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            float l = lrow[mt][hh];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const int r = mt * 16 + g + 8 * hh;
            float *dst = part + ((size_t)warp * DEC_ROWS + r) * (D + 2);
            if (mt < nmt) {
#pragma unroll
                for (int n = 0; n < NT; n++) *(float2 *)(dst + n * 8 + 2 * c) = make_float2(o[mt][n][2 * hh], o[mt][n][2 * hh + 1]);
            }
            if (c == 0) dst[D] = mt < nmt ? mrow[mt][hh] : -INFINITY, dst[D + 1] = mt < nmt ? l : 0.0f;
        }
    }
    __syncthreads();
    // merge the warps: thread d of each row; one partial per row to its token's slot
    for (int r = 0; r < R; r++) {
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) mx = fmaxf(mx, part[((size_t)w * DEC_ROWS + r) * (D + 2) + D]);
        const int mem = r / G, h = hk * G + r % G;
        float *dst = a.work + (((size_t)a.tiles[it.tile[mem]].t0 * a.n_head + h) * a.plan_nsl + it.slot[mem]) * (D + 2);
        for (int d = threadIdx.x; d < D + 1; d += blockDim.x) {
            float acc = 0.0f, ls = 0.0f;
#pragma unroll
            for (int w = 0; w < DEC_WARPS; w++) {
                const float *src = part + ((size_t)w * DEC_ROWS + r) * (D + 2);
                const float cw = src[D] == -INFINITY ? 0.0f : exp2f(src[D] - mx);
                if (d < D) acc += src[d] * cw;
                else ls += src[D + 1] * cw;
            }
            if (d < D) dst[d] = acc;
            else dst[D] = mx, dst[D + 1] = ls;
        }
    }
}

// ---------------------------------------------------------------- decode, deeper pipeline
//
// attn_dec2_kernel: the same item/partial contract as attn_dec_kernel, with
// - a ring of NS stages per warp (2 by default, as the old kernel; SPARKD_ATTN_DEC_NS=3|4), so
//   NS - 1 steps of K/V (8 KB each at d128) are in flight per warp while one is computed;
// - rows unpadded (D halves) with the 16-byte chunks XOR-swizzled by row & 7 (ldmatrix stays
//   conflict-free): 81 KB a CTA at 2 stages (the old kernel 87 KB), 112 KB at 3;
// - the block id of the step after the next prefetched into a register one step ahead (the old
//   kernel's issue waited on that load before computing);
// - the first steps' copies issued before Q is staged (their latencies overlap);
// - with pf_fast (precision fast, as the prefill kernel) Q and P rounded to one f16 each: half
//   the MMAs and Q fragment loads (~5e-4 relative, the selftest's fast bound 3e-3).
// The plan (cuda_attn_dec_plan) then sizes the grid to one wave of resident CTAs.
#define DEC_NSMAX 4 // stages per warp, at most (SPARKD_ATTN_DEC_NS)
template <int D> struct dec2_smem {
    static constexpr int Q = 2 * DEC_ROWS * D * 2;       // Q hi, lo (bytes)
    static constexpr int STAGE = 2 * DEC_STEP * D * 2;   // K + V rows of one step
    static constexpr int PART = DEC_WARPS * DEC_ROWS * (D + 2) * 4;
    static int total(int ns) { return Q + (DEC_WARPS * ns * STAGE > PART ? DEC_WARPS * ns * STAGE : PART); }
};
// halves offset of (row r, element d) in a swizzled row-major [.][D] f16 buffer
template <int D> __device__ __forceinline__ int swz(int r, int d) { return r * D + ((((d >> 3) ^ r) & 7) | ((d >> 3) & ~7)) * 8 + (d & 7); }

template <int D>
__global__ __launch_bounds__(DEC_WARPS * 32, 2) void attn_dec2_kernel(const cuda_attn_args a, const int NS) {
    using SM = dec2_smem<D>;
    constexpr int NT = D / 8; // dim n-tiles of O
    extern __shared__ __align__(16) uint8_t dsm[];
    __half *qh = (__half *)dsm, *ql = qh + DEC_ROWS * D;
    uint8_t *kvs = dsm + SM::Q;
    pdl_trigger();
    // The plan, tiles and block tables are host copies made before the step's first kernel (no
    // kernel writes them): read before pdl_wait, with the first block ids, while the kernel
    // before (qkv: Q, K/V rows) finishes. Q and K/V only after the wait.
    // item-major: CTA i takes item i / n_kv for KV head i % n_kv (the plan is sorted longest
    // first, so the first wave holds the long parts of every head)
    const int cta = blockIdx.x + blockIdx.y * gridDim.x;
    const cuda_attn_item &it = a.plan[cta / a.n_kv];
    if (it.n <= 0) return;
    const int hk = cta % a.n_kv, G = a.n_head / a.n_kv, R = it.n * G;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, c = lane & 3;
    const float qsc = a.scale * 1.4426950408889634f;
    const bool fast = a.pf_fast; // precision fast: Q and P one f16 each (the hi MMAs only)

    int minpos = 1 << 30, maxpos = 0;
    for (int m = 0; m < it.n; m++) {
        const int p = a.tiles[it.tile[m]].pos0;
        minpos = min(minpos, p);
        maxpos = max(maxpos, p);
    }
    int lo = it.p0, hi = min(it.p1, maxpos + 1);
    if (a.window > 0) lo = max(lo, minpos - a.window + 1);
    const int nsteps_all = hi > lo ? (hi - lo + DEC_STEP - 1) / DEC_STEP : 0;
    const int per = (nsteps_all + it.nparts - 1) / it.nparts;
    const int s0 = it.part * per, s1 = min(nsteps_all, s0 + per);
    const int seq0 = a.tiles[it.tile[0]].seq;
    const int32_t *btab = a.block_tables + (size_t)seq0 * a.max_blocks;
    const int kvb = a.kv_block;
    // position -> (block index, row in the block); blocks of a power of two (the engine's 16) by shifts
    const bool kpow2 = (kvb & (kvb - 1)) == 0;
    const int ksh = __ffs(kvb) - 1;
    auto blk_at = [&](int p) { return kpow2 ? p >> ksh : p / kvb; };
    auto row_in = [&](int p) { return kpow2 ? p & (kvb - 1) : p % kvb; };

    __half *wbuf = (__half *)(kvs + (size_t)warp * NS * SM::STAGE); // [stage][K 16 x D | V 16 x D]
    const __half *K = (const __half *)a.kv.k, *V = (const __half *)a.kv.v;
    // lane l (mod 16): position of row l of step s (past hi: the last valid row) and its block id
    auto pos_of = [&](int s) { return min(lo + s * DEC_STEP + (lane & 15), hi - 1); };
    auto issue = [&](int s, int blk, int stage) {
        __half *kb = wbuf + (size_t)stage * 2 * DEC_STEP * D, *vb = kb + DEC_STEP * D;
        const size_t row = ((size_t)blk * a.n_kv + hk) * kvb + row_in(pos_of(s));
        constexpr int CH = D / 8;
#pragma unroll
        for (int i = 0; i < DEC_STEP * CH / 32; i++) {
            const int j = lane + 32 * i, rr = j / CH, ch = j % CH;
            const size_t rw = __shfl_sync(0xffffffffu, (unsigned long long)row, rr);
            const int o = swz<D>(rr, ch * 8);
            cp_async16(kb + o, K + rw * D + ch * 8);
            cp_async16(vb + o, V + rw * D + ch * 8);
        }
    };
    int s = s0 + warp;
    int b0[DEC_NSMAX - 1];
#pragma unroll
    for (int k = 0; k < DEC_NSMAX - 1; k++) {
        const int sk = s + k * DEC_WARPS;
        b0[k] = k < NS - 1 && sk < s1 ? btab[blk_at(pos_of(sk))] : 0;
    }
    int sn = s + (NS - 1) * DEC_WARPS; // the next step to issue, and its block id (prefetched)
    int nblk = sn < s1 ? btab[blk_at(pos_of(sn))] : 0;
    pdl_wait();
    // Q rows (member r / G, head hk * G + r % G) * scale * log2 e: loaded into registers first
    // (all loads of the thread in flight at once), stored after the first copies are issued
    constexpr int QI = DEC_ROWS * (D / 2) / (DEC_WARPS * 32); // (row, pair) items per thread
    float2 qv[QI];
#pragma unroll
    for (int k = 0; k < QI; k++) {
        const int idx = threadIdx.x + k * DEC_WARPS * 32, r = idx / (D / 2), d = 2 * (idx % (D / 2));
        qv[k] = make_float2(0.0f, 0.0f);
        if (r < R) {
            const float *q = a.q + (size_t)a.tiles[it.tile[r / G]].t0 * a.ldq + (size_t)(hk * G + r % G) * D + d;
            qv[k] = make_float2(q[0], q[1]);
        }
    }
    // prologue: this warp's first NS - 1 steps (s0 + warp + k * DEC_WARPS) into stages 0..NS-2
#pragma unroll
    for (int k = 0; k < DEC_NSMAX - 1; k++) {
        if (k >= NS - 1) break;
        if (s + k * DEC_WARPS < s1) issue(s + k * DEC_WARPS, b0[k], k);
        cp_commit();
    }
    // Q -> f16 hi, lo (rows >= R zero)
#pragma unroll
    for (int k = 0; k < QI; k++) {
        const int idx = threadIdx.x + k * DEC_WARPS * 32, r = idx / (D / 2), d = 2 * (idx % (D / 2));
        uint32_t h_, l_;
        split2(qv[k].x * qsc, qv[k].y * qsc, h_, l_);
        *(uint32_t *)(qh + swz<D>(r, d)) = h_;
        *(uint32_t *)(ql + swz<D>(r, d)) = l_;
    }
    int rpos[2][2];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            const int r = mt * 16 + g + 8 * hh;
            rpos[mt][hh] = r < R ? a.tiles[it.tile[r / G]].pos0 : -1;
        }
    const int nmt = R > 16 ? 2 : 1;
    __syncthreads();

    float o[2][NT][4], mrow[2][2], lrow[2][2];
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
#pragma unroll
        for (int hh = 0; hh < 2; hh++) mrow[mt][hh] = -INFINITY, lrow[mt][hh] = 0.0f;
#pragma unroll
        for (int n = 0; n < NT; n++) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.0f;
    }
    for (int stage = 0; s < s1; s += DEC_WARPS) {
        // refill the stage computed last iteration with step sn; then wait for step s
        if (sn < s1) {
            issue(sn, nblk, stage == 0 ? NS - 1 : stage - 1);
            sn += DEC_WARPS;
            if (sn < s1) nblk = btab[blk_at(pos_of(sn))];
        }
        cp_commit();
        if (NS == 4) cp_wait<3>();
        else if (NS == 3) cp_wait<2>();
        else cp_wait<1>();
        __syncwarp();
        const __half *kb = wbuf + (size_t)stage * 2 * DEC_STEP * D, *vb = kb + DEC_STEP * D;
        const int p0 = lo + s * DEC_STEP;
        float sc[2][2][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int nt = 0; nt < 2; nt++) sc[mt][nt][0] = sc[mt][nt][1] = sc[mt][nt][2] = sc[mt][nt][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++) {
            uint32_t kf[4]; // b0, b1 of positions 0-7, then of 8-15
            ldsm4(kf, kb + swz<D>((lane >> 4) * 8 + (lane & 7), ks * 16 + ((lane >> 3) & 1) * 8));
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                if (mt >= nmt) break;
                uint32_t ah[4], al[4];
                const int qo = swz<D>(mt * 16 + ((lane >> 3) & 1) * 8 + (lane & 7), ks * 16 + (lane >> 4) * 8);
                ldsm4(ah, qh + qo);
                mma16816(sc[mt][0], ah, kf[0], kf[1]);
                mma16816(sc[mt][1], ah, kf[2], kf[3]);
                if (fast) continue;
                ldsm4(al, ql + qo);
                mma16816(sc[mt][0], al, kf[0], kf[1]);
                mma16816(sc[mt][1], al, kf[2], kf[3]);
            }
        }
        uint32_t ph[2][4], pl[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
            if (mt >= nmt) break;
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                const int pr = rpos[mt][hh];
                float v[4];
#pragma unroll
                for (int nt = 0; nt < 2; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int p = p0 + nt * 8 + 2 * c + e;
                        const bool ok = p < hi && p <= pr && (a.window <= 0 || p > pr - a.window);
                        v[nt * 2 + e] = ok ? sc[mt][nt][2 * hh + e] : -INFINITY;
                    }
                float mx = fmaxf(fmaxf(v[0], v[1]), fmaxf(v[2], v[3]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float mn = fmaxf(mrow[mt][hh], mx);
                const float corr = mn == -INFINITY ? 1.0f : exp2f(mrow[mt][hh] - mn);
                mrow[mt][hh] = mn;
                float ps = 0.0f;
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    v[i] = mn == -INFINITY ? 0.0f : exp2f(v[i] - mn);
                    ps += v[i];
                }
                lrow[mt][hh] = lrow[mt][hh] * corr + ps;
#pragma unroll
                for (int n = 0; n < NT; n++) o[mt][n][2 * hh] *= corr, o[mt][n][2 * hh + 1] *= corr;
                split2(v[0], v[1], ph[mt][hh], pl[mt][hh]);
                split2(v[2], v[3], ph[mt][2 + hh], pl[mt][2 + hh]);
            }
        }
#pragma unroll
        for (int j = 0; j < D / 16; j++) {
            uint32_t vf[4];
            ldsm4t(vf, vb + swz<D>(((lane >> 3) & 1) * 8 + (lane & 7), j * 16 + (lane >> 4) * 8));
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                if (mt >= nmt) break;
                mma16816(o[mt][2 * j], ph[mt], vf[0], vf[1]);
                mma16816(o[mt][2 * j + 1], ph[mt], vf[2], vf[3]);
                if (fast) continue;
                mma16816(o[mt][2 * j], pl[mt], vf[0], vf[1]);
                mma16816(o[mt][2 * j + 1], pl[mt], vf[2], vf[3]);
            }
        }
        __syncwarp(); // this stage is refilled next iteration
        stage = stage + 1 == NS ? 0 : stage + 1;
    }
    cp_wait<0>();
    __syncthreads();

    float *part = (float *)kvs;
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            float l = lrow[mt][hh];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const int r = mt * 16 + g + 8 * hh;
            float *dst = part + ((size_t)warp * DEC_ROWS + r) * (D + 2);
            if (mt < nmt) {
#pragma unroll
                for (int n = 0; n < NT; n++) *(float2 *)(dst + n * 8 + 2 * c) = make_float2(o[mt][n][2 * hh], o[mt][n][2 * hh + 1]);
            }
            if (c == 0) dst[D] = mt < nmt ? mrow[mt][hh] : -INFINITY, dst[D + 1] = mt < nmt ? l : 0.0f;
        }
    }
    __syncthreads();
    for (int r = 0; r < R; r++) {
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) mx = fmaxf(mx, part[((size_t)w * DEC_ROWS + r) * (D + 2) + D]);
        const int mem = r / G, h = hk * G + r % G;
        float *dst = a.work + (((size_t)a.tiles[it.tile[mem]].t0 * a.n_head + h) * a.plan_nsl + it.slot[mem]) * (D + 2);
        for (int d = threadIdx.x; d < D + 1; d += blockDim.x) {
            float acc = 0.0f, ls = 0.0f;
#pragma unroll
            for (int w = 0; w < DEC_WARPS; w++) {
                const float *src = part + ((size_t)w * DEC_ROWS + r) * (D + 2);
                const float cw = src[D] == -INFINITY ? 0.0f : exp2f(src[D] - mx);
                if (d < D) acc += src[d] * cw;
                else ls += src[D + 1] * cw;
            }
            if (d < D) dst[d] = acc;
            else dst[D] = mx, dst[D + 1] = ls;
        }
    }
}

// ---------------------------------------------------------------- decode, round 6 (att8)
//
// attn_dec3_kernel: attn_dec2_kernel's contract, plan, smem layout and pipeline (NS stages a
// warp, XOR-swizzled rows), with the per-step instruction count cut (SASS of dec2's step at
// 32 rows: ~1,300 instructions, 128 HMMA of them; the cascade pass ran at 34% of the probe):
// - the step's loop is specialized on the m-tiles (1: <= 16 rows, 2: <= 32) and on precision
//   fast (Q, P one f16): dec2 branched on both inside every k-step and every P.V tile, which
//   serialized each ldmatrix -> HMMA pair; here every branch is outside the step;
// - exp2 by ex2.approx.ftz (dec2's exp2f: ~10 instructions of denormal handling each; the
//   weights below 2^-126 of the row max become 0, below every tolerance);
// - the causal / window mask only on steps that need it (uniform test per step: the last
//   step of a range, window layers): the other steps skip ~60 compares and selects;
// - O rescaled only when a row's max moved (one warp vote a step; exact: the skipped factor
//   is exp2(0) = 1), 64-128 FMULs a step saved once the maxima settle;
// - a step that lies inside one KV block (kv_block a multiple of 16, the range 16-aligned:
//   every step but a range's last) copies its rows from one base address per lane, no shuffles;
// - the CTA's partials merge in parallel (all threads over rows x dims, per-row weights and
//   destinations staged in shared memory) instead of one row at a time (32 rows in a cascade
//   item: 32 serial rounds of global loads of the plan before).
// ctl: bit 0 (selftest control only) the partial sums written halved, so the results must
// miss; bit 1 (SPARKD_ATT8_PRE=1) the first copies of rows before every member's position
// issued before pdl_wait (see there).
__device__ __forceinline__ float ex2a(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}
template <int V> struct dec_ic { static constexpr int value = V; };
// (shared-window addresses as u32: the swizzled offsets below are computed once per thread)
__device__ __forceinline__ void cp_async16u(uint32_t dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void ldsm4u(uint32_t *r, uint32_t p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(p));
}
__device__ __forceinline__ void ldsm4tu(uint32_t *r, uint32_t p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(p));
}

// A8 = 1 (round 12, helper a8; SPARKD_A8, see attn_dec_launch): precision fast, warp pairs on:
// only the one-m-tile steps (items of <= 16 rows by single warps, of 17..32 rows by warp pairs)
// are compiled, Q lo is not kept (Q hi only: 8 KB at d128), the partials take [warp][16][D + 2]
// (a warp holds one m-tile): 153 registers (sm_90a, no spills); NS = 2 stages a warp (4 a pair):
// 72 KB at d128, 3 CTAs an SM (today's: 254 registers and 83 KB, 2); NS = 3 (SPARKD_A8=3; 6 a
// pair): 104 KB, 2 CTAs an SM.
template <int D, int A8 = 0>
__global__ __launch_bounds__(DEC_WARPS * 32, A8 ? 3 : 2) void attn_dec3_kernel(const cuda_attn_args a, const int NS, const int ctl) {
    using SM = dec2_smem<D>;
    constexpr int NT = D / 8; // dim n-tiles of O
    constexpr int MTX = A8 ? 1 : 2; // (m-tiles a warp holds at most)
    // (stages a warp or pair at most: DEC_NSMAX; A8: 6, 3 a warp and 6 a pair at SPARKD_A8=3)
    extern __shared__ __align__(16) uint8_t dsm[];
    __half *qh = (__half *)dsm, *ql = qh + DEC_ROWS * D;
    uint8_t *kvs = dsm + (A8 ? SM::Q / 2 : SM::Q); // (A8: Q hi only)
    pdl_trigger();
    // (the plan, tiles and block tables: host copies, read before pdl_wait as in dec2)
    const int cta = blockIdx.x + blockIdx.y * gridDim.x;
    const cuda_attn_item &it = a.plan[cta / a.n_kv];
    if (it.n <= 0) return;
    const int hk = cta % a.n_kv, G = a.n_head / a.n_kv, R = it.n * G;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, c = lane & 3;
    const float qsc = a.scale * 1.4426950408889634f;
    const bool fast = A8 ? true : a.pf_fast; // (A8: launched at precision fast only)
    // (ctl & 4, the default; SPARKD_ATT8_PAIR=0 off) items of more than 16 rows: warps pair up on one ring of 2 NS
    // stages; each warp copies half of every step's rows and computes one m-tile of it (a 4-row
    // item's work a warp), the pair's steps interleave with the other pair's
    const bool pairm = A8 ? R > 16 : (ctl & 4) && R > 16 && NS == 2 && fast; // (precision fast only; A8: NS = 2, pairs on)
    const int STR = pairm ? 2 : DEC_WARPS, NSE = pairm ? 2 * NS : NS, hb = pairm ? (warp & 1) * 8 : 0;
    const int mt_off = pairm ? (warp & 1) : 0; // (the m-tile of a paired warp)

    int minpos = 1 << 30, maxpos = 0;
    for (int m = 0; m < it.n; m++) {
        const int p = a.tiles[it.tile[m]].pos0;
        minpos = min(minpos, p);
        maxpos = max(maxpos, p);
    }
    int lo = it.p0, hi = min(it.p1, maxpos + 1);
    if (a.window > 0) lo = max(lo, minpos - a.window + 1);
    const int nsteps_all = hi > lo ? (hi - lo + DEC_STEP - 1) / DEC_STEP : 0;
    const int per = (nsteps_all + it.nparts - 1) / it.nparts;
    const int s0 = it.part * per, s1 = min(nsteps_all, s0 + per);
    const int seq0 = a.tiles[it.tile[0]].seq;
    const int32_t *btab = a.block_tables + (size_t)seq0 * a.max_blocks;
    const int kvb = a.kv_block;
    const bool kpow2 = (kvb & (kvb - 1)) == 0;
    const int ksh = __ffs(kvb) - 1;
    auto blk_at = [&](int p) { return kpow2 ? p >> ksh : p / kvb; };
    auto row_in = [&](int p) { return kpow2 ? p & (kvb - 1) : p % kvb; };
    // steps inside one block: blocks of a multiple of 16 rows and a 16-aligned range
    const bool alig = kvb % DEC_STEP == 0 && lo % DEC_STEP == 0;
    // steps from p0 up to (excluded) nomask_end need no mask: every member attends to all of
    // them (p < hi, p <= the lowest member position, inside every member's window)
    const int nomask_end = min(hi, minpos + 1);
    const int win_lo = a.window > 0 ? maxpos - a.window + 1 : -(1 << 30); // p >= win_lo: inside every window

    __half *wbuf = (__half *)(kvs + (size_t)(pairm ? warp >> 1 : warp) * NSE * SM::STAGE); // [stage][K 16 x D | V 16 x D]
    const uint32_t wbuf_u = smem_u32(wbuf);
    const __half *K = (const __half *)a.kv.k, *V = (const __half *)a.kv.v;
    // per-lane invariants of the block-aligned copy (chunk ch of rows r0 + RPI i, see issue)
    const int gl_r0 = lane / (D / 8), gl_ch = lane % (D / 8);
    const int gl_off = gl_r0 * D + gl_ch * 8;
    const uint32_t sx = 16u * (uint32_t)(gl_ch ^ gl_r0) + 2u * D * (uint32_t)gl_r0;
    auto pos_of = [&](int s) { return min(lo + s * DEC_STEP + (lane & 15), hi - 1); };
    auto issue = [&](int s, int blk, int stage) {
        __half *kb = wbuf + (size_t)stage * 2 * DEC_STEP * D, *vb = kb + DEC_STEP * D;
        constexpr int CH = D / 8;
        const int p0s = lo + s * DEC_STEP;
        if (alig && p0s + DEC_STEP <= hi) {
            // rows row_in(p0s) .. + 15 of block blk (every lane holds that block's id): lane
            // copies chunk ch of rows r0 + RPI i; its swizzled byte offset in the stage is
            // 2 D (r0 + RPI i) + (16 (ch ^ r0) ^ 16 ((RPI i) & 7)) (r0 < RPI: no carries)
            constexpr int RPI = 32 / CH; // rows per round of the warp
            const size_t base = (((size_t)blk * a.n_kv + hk) * kvb + row_in(p0s)) * D + gl_off;
            const __half *kg = K + base, *vg = V + base;
            const uint32_t sst = wbuf_u + (uint32_t)stage * SM::STAGE + 2u * D * hb; // (rows from hb: 8 | 0 ^ (RPI i & 7) = same swizzle)
            const __half *kh = kg + hb * D, *vh = vg + hb * D;
#pragma unroll
            for (int i = 0; i < DEC_STEP / RPI; i++) {
                if (pairm && i >= DEC_STEP / 2 / RPI) break; // (a paired warp: 8 rows)
                const uint32_t d = sst + 2u * D * RPI * i + (sx ^ (16u * ((RPI * i) & 7)));
                cp_async16u(d, kh + RPI * i * D);
                cp_async16u(d + DEC_STEP * D * 2, vh + RPI * i * D);
            }
            return;
        }
        const size_t row = ((size_t)blk * a.n_kv + hk) * kvb + row_in(pos_of(s));
#pragma unroll
        for (int i = 0; i < DEC_STEP * CH / 32; i++) {
            if (pairm && i >= DEC_STEP / 2 * CH / 32) break; // (a paired warp: rows hb .. hb + 7)
            const int j = lane + 32 * i, rr = hb + j / CH, ch = j % CH;
            const size_t rw = __shfl_sync(0xffffffffu, (unsigned long long)row, rr);
            const int o = swz<D>(rr, ch * 8);
            cp_async16(kb + o, K + rw * D + ch * 8);
            cp_async16(vb + o, V + rw * D + ch * 8);
        }
    };
    int s = s0 + (pairm ? warp >> 1 : warp);
    int b0[(A8 ? 6 : DEC_NSMAX) - 1];
#pragma unroll
    for (int k = 0; k < (A8 ? 6 : DEC_NSMAX) - 1; k++) {
        const int sk = s + k * STR;
        b0[k] = k < NSE - 1 && sk < s1 ? btab[blk_at(pos_of(sk))] : 0;
    }
    int sn = s + (NSE - 1) * STR;
    int nblk = sn < s1 ? btab[blk_at(pos_of(sn))] : 0;
    // (ctl & 2, SPARKD_ATT8_PRE=1) the first steps whose 16 rows all precede every member's
    // position are copied before pdl_wait: the kernel before (qkv) writes only the rows at
    // the members' positions, earlier rows were final when the step began (the engine
    // synchronizes every step; blocks shared by several sequences hold only their common
    // history). The other first steps are issued after the wait as before.
    int kpre = 0;
    if (ctl & 2) {
#pragma unroll
        for (int k = 0; k < (A8 ? 6 : DEC_NSMAX) - 1; k++) {
            const int sk = s + k * STR;
            if (k >= NSE - 1 || kpre < k || sk >= s1 || lo + (sk + 1) * DEC_STEP > minpos) break;
            issue(sk, b0[k], k);
            cp_commit();
            kpre = k + 1;
        }
    }
    pdl_wait();
    constexpr int QI = DEC_ROWS * (D / 2) / (DEC_WARPS * 32);
    float2 qv[QI];
#pragma unroll
    for (int k = 0; k < QI; k++) {
        const int idx = threadIdx.x + k * DEC_WARPS * 32, r = idx / (D / 2), d = 2 * (idx % (D / 2));
        qv[k] = make_float2(0.0f, 0.0f);
        if (r < R) {
            const float *q = a.q + (size_t)a.tiles[it.tile[r / G]].t0 * a.ldq + (size_t)(hk * G + r % G) * D + d;
            qv[k] = make_float2(q[0], q[1]);
        }
    }
#pragma unroll
    for (int k = 0; k < (A8 ? 6 : DEC_NSMAX) - 1; k++) {
        if (k >= NSE - 1) break;
        if (k < kpre) continue; // (issued before the wait)
        if (s + k * STR < s1) issue(s + k * STR, b0[k], k);
        cp_commit();
    }
#pragma unroll
    for (int k = 0; k < QI; k++) {
        const int idx = threadIdx.x + k * DEC_WARPS * 32, r = idx / (D / 2), d = 2 * (idx % (D / 2));
        uint32_t h_, l_;
        split2(qv[k].x * qsc, qv[k].y * qsc, h_, l_);
        *(uint32_t *)(qh + swz<D>(r, d)) = h_;
        if (!A8) *(uint32_t *)(ql + swz<D>(r, d)) = l_;
    }
    int rpos[MTX][2];
#pragma unroll
    for (int mt = 0; mt < MTX; mt++)
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            const int r = (mt + mt_off) * 16 + g + 8 * hh; // (mt_off: a paired warp's m-tile in slot 0)
            rpos[mt][hh] = r < R ? a.tiles[it.tile[r / G]].pos0 : -1;
        }
    __syncthreads();

    float o[MTX][NT][4], mrow[MTX][2], lrow[MTX][2];
#pragma unroll
    for (int mt = 0; mt < MTX; mt++) {
#pragma unroll
        for (int hh = 0; hh < 2; hh++) mrow[mt][hh] = -INFINITY, lrow[mt][hh] = 0.0f;
#pragma unroll
        for (int n = 0; n < NT; n++) o[mt][n][0] = o[mt][n][1] = o[mt][n][2] = o[mt][n][3] = 0.0f;
    }
    // ldmatrix addresses: byte offset of (row r, 16-byte chunk k) in a swizzled [.][D] f16
    // buffer = 2 D r + 16 (k ^ (r & 7)); with k = 2 ks + b: 2 D r + (16 (b ^ (r & 7)) ^ 32 ks)
    // K (x4: positions 0-7 / 8-15 x k halves): r = (lane >> 4) 8 + (lane & 7), b = (lane >> 3) & 1
    // Q and V (x4 / x4.trans: rows 0-7 / 8-15 x k halves): r = ((lane >> 3) & 1) 8 + (lane & 7), b = lane >> 4
    const uint32_t kx = 16u * (uint32_t)(((lane >> 3) & 1) ^ (lane & 7)), koff = 2u * D * (uint32_t)((lane >> 4) * 8 + (lane & 7));
    const uint32_t qx = 16u * (uint32_t)((lane >> 4) ^ (lane & 7)), qoff = 2u * D * (uint32_t)(((lane >> 3) & 1) * 8 + (lane & 7));
    const uint32_t qb = smem_u32(qh) + qoff + mt_off * 32u * D; // (Q lo at + DEC_ROWS * D * 2)
    // the steps of this warp, specialized on MT (m-tiles) and FAST (one f16 for Q and P)
    auto run = [&](auto mtc, auto fc, auto pc) {
        constexpr int MT = decltype(mtc)::value;
        constexpr bool FAST = decltype(fc)::value != 0;
        constexpr bool PAIR = decltype(pc)::value != 0; // (MT = 1, NSE = 4 stages a pair)
        for (int stage = 0; s < s1; s += STR) {
            if (PAIR) {
                // this warp's copies of step s landed; the barrier makes the partner's visible
                // and says both computed the stage refilled next (the previous step's)
                if constexpr (A8) {
                    if (NSE == 6) cp_wait<4>(); // (A8, NS = 3)
                    else cp_wait<2>();
                } else cp_wait<2>();
                if (warp >> 1) asm volatile("bar.sync 2, 64;\n" ::: "memory");
                else asm volatile("bar.sync 1, 64;\n" ::: "memory");
                if (sn < s1) {
                    issue(sn, nblk, stage == 0 ? NSE - 1 : stage - 1);
                    sn += STR;
                    if (sn < s1) nblk = btab[blk_at(pos_of(sn))];
                }
                cp_commit();
            } else {
                if (sn < s1) {
                    issue(sn, nblk, stage == 0 ? NS - 1 : stage - 1);
                    sn += STR;
                    if (sn < s1) nblk = btab[blk_at(pos_of(sn))];
                }
                cp_commit();
                if (NS == 4) cp_wait<3>();
                else if (NS == 3) cp_wait<2>();
                else cp_wait<1>();
                __syncwarp();
            }
            const uint32_t kst = wbuf_u + (uint32_t)stage * SM::STAGE; // K rows; V at + DEC_STEP * D * 2
            const int p0 = lo + s * DEC_STEP;
            float sc[MT][2][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < 2; nt++) sc[mt][nt][0] = sc[mt][nt][1] = sc[mt][nt][2] = sc[mt][nt][3] = 0.0f;
#pragma unroll
            for (int ks = 0; ks < D / 16; ks++) {
                uint32_t kf[4];
                ldsm4u(kf, kst + koff + (kx ^ (32u * ks)));
                if (FAST || MT == 1) {
                    uint32_t ah[MT][4], al[MT][4];
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        const uint32_t qa = qb + mt * 32u * D + (qx ^ (32u * ks));
                        ldsm4u(ah[mt], qa);
                        if (!FAST) ldsm4u(al[mt], qa + DEC_ROWS * D * 2);
                    }
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        mma16816(sc[mt][0], ah[mt], kf[0], kf[1]);
                        mma16816(sc[mt][1], ah[mt], kf[2], kf[3]);
                        if (!FAST) {
                            mma16816(sc[mt][0], al[mt], kf[0], kf[1]);
                            mma16816(sc[mt][1], al[mt], kf[2], kf[3]);
                        }
                    }
                } else { // (32 rows, hi + lo: one A fragment live at a time, fewer registers)
#pragma unroll
                    for (int hl = 0; hl < 2; hl++)
#pragma unroll
                        for (int mt = 0; mt < MT; mt++) {
                            uint32_t af[4];
                            ldsm4u(af, qb + mt * 32u * D + (qx ^ (32u * ks)) + hl * DEC_ROWS * D * 2);
                            mma16816(sc[mt][0], af, kf[0], kf[1]);
                            mma16816(sc[mt][1], af, kf[2], kf[3]);
                        }
                }
            }
            const bool full = p0 + DEC_STEP <= nomask_end && p0 >= win_lo; // (uniform)
            float corr[MT][2], v[MT][2][4];
            bool moved = false;
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
#pragma unroll
                    for (int nt = 0; nt < 2; nt++)
#pragma unroll
                        for (int e = 0; e < 2; e++) v[mt][hh][nt * 2 + e] = sc[mt][nt][2 * hh + e];
                    if (!full) {
                        const int pr = rpos[mt][hh];
#pragma unroll
                        for (int nt = 0; nt < 2; nt++)
#pragma unroll
                            for (int e = 0; e < 2; e++) {
                                const int p = p0 + nt * 8 + 2 * c + e;
                                const bool ok = p < hi && p <= pr && (a.window <= 0 || p > pr - a.window);
                                if (!ok) v[mt][hh][nt * 2 + e] = -INFINITY;
                            }
                    }
                    float mx = fmaxf(fmaxf(v[mt][hh][0], v[mt][hh][1]), fmaxf(v[mt][hh][2], v[mt][hh][3]));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                    const float mo = mrow[mt][hh], mn = fmaxf(mo, mx);
                    corr[mt][hh] = mo == mn ? 1.0f : ex2a(mo - mn); // (mo = -inf < mn: 0)
                    moved |= mo != mn;
                    mrow[mt][hh] = mn;
                    float ps = 0.0f;
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        v[mt][hh][i] = mn == -INFINITY ? 0.0f : ex2a(v[mt][hh][i] - mn);
                        ps += v[mt][hh][i];
                    }
                    lrow[mt][hh] = lrow[mt][hh] * corr[mt][hh] + ps;
                }
            }
            if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int hh = 0; hh < 2; hh++)
#pragma unroll
                        for (int n = 0; n < NT; n++) o[mt][n][2 * hh] *= corr[mt][hh], o[mt][n][2 * hh + 1] *= corr[mt][hh];
            }
            uint32_t ph[MT][4], pl[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    if (FAST) {
                        const __half2 h0 = __floats2half2_rn(v[mt][hh][0], v[mt][hh][1]);
                        const __half2 h1 = __floats2half2_rn(v[mt][hh][2], v[mt][hh][3]);
                        ph[mt][hh] = *(const uint32_t *)&h0;
                        ph[mt][2 + hh] = *(const uint32_t *)&h1;
                        pl[mt][hh] = pl[mt][2 + hh] = 0u;
                    } else {
                        split2(v[mt][hh][0], v[mt][hh][1], ph[mt][hh], pl[mt][hh]);
                        split2(v[mt][hh][2], v[mt][hh][3], ph[mt][2 + hh], pl[mt][2 + hh]);
                    }
                }
#pragma unroll
            for (int j = 0; j < D / 16; j++) {
                uint32_t vf[4];
                ldsm4tu(vf, kst + DEC_STEP * D * 2 + qoff + (qx ^ (32u * j)));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma16816(o[mt][2 * j], ph[mt], vf[0], vf[1]);
                    mma16816(o[mt][2 * j + 1], ph[mt], vf[2], vf[3]);
                    if (!FAST) {
                        mma16816(o[mt][2 * j], pl[mt], vf[0], vf[1]);
                        mma16816(o[mt][2 * j + 1], pl[mt], vf[2], vf[3]);
                    }
                }
            }
            if (!PAIR) __syncwarp(); // this stage is refilled next iteration
            stage = stage + 1 == NSE ? 0 : stage + 1;
        }
    };
    if constexpr (A8) {
        if (pairm) run(dec_ic<1>(), dec_ic<1>(), dec_ic<1>());
        else run(dec_ic<1>(), dec_ic<1>(), dec_ic<0>());
        cp_wait<0>();
        __syncthreads();
        // partials -> smem [warp][16][D + 2] (the ring): a warp's one m-tile (a paired warp's is
        // m-tile mt_off: rows 16 mt_off + 0..15; a single warp's rows 0..15)
        float *part = (float *)kvs;
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            float l = lrow[0][hh];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            float *dst = part + ((size_t)warp * 16 + g + 8 * hh) * (D + 2);
#pragma unroll
            for (int n = 0; n < NT; n++) *(float2 *)(dst + n * 8 + 2 * c) = make_float2(o[0][n][2 * hh], o[0][n][2 * hh + 1]);
            if (c == 0) dst[D] = mrow[0][hh], dst[D + 1] = l;
        }
        // merge: row r from warps r / 16, r / 16 + 2 (pairs) or all 4 (rows r < 16); weights and
        // row offsets in the Q space ([DEC_WARPS][DEC_ROWS] floats, then [DEC_ROWS] offsets)
        float *cw = (float *)dsm;
        unsigned long long *doff = (unsigned long long *)(cw + DEC_WARPS * DEC_ROWS);
        __syncthreads();
        if (threadIdx.x < R) {
            const int r = threadIdx.x, rr = r & 15;
            float mx = -INFINITY;
#pragma unroll
            for (int w = 0; w < DEC_WARPS; w++) {
                const bool in = pairm ? (w & 1) == (r >> 4) : true;
                if (in) mx = fmaxf(mx, part[((size_t)w * 16 + rr) * (D + 2) + D]);
            }
            float ls = 0.0f;
#pragma unroll
            for (int w = 0; w < DEC_WARPS; w++) {
                const bool in = pairm ? (w & 1) == (r >> 4) : true;
                const float *src = part + ((size_t)w * 16 + rr) * (D + 2);
                const float wt = !in || src[D] == -INFINITY ? 0.0f : ex2a(src[D] - mx);
                cw[w * DEC_ROWS + r] = wt;
                if (in) ls += src[D + 1] * wt;
            }
            const int mem = r / G, h = hk * G + r % G;
            const size_t off = (((size_t)a.tiles[it.tile[mem]].t0 * a.n_head + h) * a.plan_nsl + it.slot[mem]) * (D + 2);
            doff[r] = off;
            a.work[off + D] = mx;
            a.work[off + D + 1] = (ctl & 1) ? 0.5f * ls : ls;
        }
        __syncthreads();
        for (int idx = threadIdx.x; idx < R * (D / 2); idx += blockDim.x) {
            const int r = idx / (D / 2), d = 2 * (idx % (D / 2)), rr = r & 15;
            float2 acc = make_float2(0.0f, 0.0f);
#pragma unroll
            for (int w = 0; w < DEC_WARPS; w++) {
                const float wt = cw[w * DEC_ROWS + r];
                if (wt == 0.0f) continue; // (another m-tile's warp, or no positions)
                const float2 x = *(const float2 *)(part + ((size_t)w * 16 + rr) * (D + 2) + d);
                acc.x += wt * x.x;
                acc.y += wt * x.y;
            }
            *(float2 *)(a.work + doff[r] + d) = acc;
        }
        return;
    } else { // (A8 = 0: today's steps and merge, unchanged)
    if (pairm) {
        run(dec_ic<1>(), dec_ic<1>(), dec_ic<1>());
    } else if (R > 16) {
        if (fast) run(dec_ic<2>(), dec_ic<1>(), dec_ic<0>());
        else run(dec_ic<2>(), dec_ic<0>(), dec_ic<0>());
    } else {
        if (fast) run(dec_ic<1>(), dec_ic<1>(), dec_ic<0>());
        else run(dec_ic<1>(), dec_ic<0>(), dec_ic<0>());
    }
    const int nmt = R > 16 && !pairm ? 2 : 1;
    cp_wait<0>();
    __syncthreads();

    // the 4 warps' partials -> smem [warp][row][D + 2] (the K/V ring), then merged by all
    // threads: row stats and weights first (threads < R), then rows x dims in float2 units
    float *part = (float *)kvs;
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            float l = lrow[mt][hh];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const int r = mt * 16 + g + 8 * hh;
            float *dst = part + ((size_t)warp * DEC_ROWS + r) * (D + 2);
            if (pairm) { // (this warp's m-tile in slot 0 -> rows of m-tile mt_off; the other rows zero, weight 0)
                const bool mine = mt == mt_off;
                float lm = __shfl_xor_sync(0xffffffffu, lrow[0][hh], 1);
                lm = lrow[0][hh] + lm;
                lm += __shfl_xor_sync(0xffffffffu, lm, 2);
#pragma unroll
                for (int n = 0; n < NT; n++)
                    *(float2 *)(dst + n * 8 + 2 * c) = mine ? make_float2(o[0][n][2 * hh], o[0][n][2 * hh + 1]) : make_float2(0.0f, 0.0f);
                if (c == 0) dst[D] = mine ? mrow[0][hh] : -INFINITY, dst[D + 1] = mine ? lm : 0.0f;
                continue;
            }
            if (mt < nmt) {
#pragma unroll
                for (int n = 0; n < NT; n++) *(float2 *)(dst + n * 8 + 2 * c) = make_float2(o[mt][n][2 * hh], o[mt][n][2 * hh + 1]);
            }
            if (c == 0) dst[D] = mt < nmt ? mrow[mt][hh] : -INFINITY, dst[D + 1] = mt < nmt ? l : 0.0f;
        }
    }
    // (Q is no longer read: its space holds the merge weights [warp][row] and row offsets)
    float *cw = (float *)dsm;                                        // [DEC_WARPS][DEC_ROWS]
    unsigned long long *doff = (unsigned long long *)(cw + DEC_WARPS * DEC_ROWS); // [DEC_ROWS]
    __syncthreads();
    if (threadIdx.x < R) {
        const int r = threadIdx.x;
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) mx = fmaxf(mx, part[((size_t)w * DEC_ROWS + r) * (D + 2) + D]);
        float ls = 0.0f;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) {
            const float *src = part + ((size_t)w * DEC_ROWS + r) * (D + 2);
            const float wt = src[D] == -INFINITY ? 0.0f : ex2a(src[D] - mx);
            cw[w * DEC_ROWS + r] = wt;
            ls += src[D + 1] * wt;
        }
        const int mem = r / G, h = hk * G + r % G;
        const size_t off = (((size_t)a.tiles[it.tile[mem]].t0 * a.n_head + h) * a.plan_nsl + it.slot[mem]) * (D + 2);
        doff[r] = off;
        a.work[off + D] = mx;
        a.work[off + D + 1] = (ctl & 1) ? 0.5f * ls : ls;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < R * (D / 2); idx += blockDim.x) {
        const int r = idx / (D / 2), d = 2 * (idx % (D / 2));
        float2 acc = make_float2(0.0f, 0.0f);
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) {
            const float wt = cw[w * DEC_ROWS + r];
            const float2 x = *(const float2 *)(part + ((size_t)w * DEC_ROWS + r) * (D + 2) + d);
            acc.x += wt * x.x;
            acc.y += wt * x.y;
        }
        *(float2 *)(a.work + doff[r] + d) = acc;
    }
    } // (A8 = 0)
}

// Round 8 fz (a.out_q8): the combine's value v of element e (natural order) of token t as the
// int8 form of the next product's input, exactly as cuda_mmin_prepare's mmin_emit4 would write
// it from the f32 row: a warp holds one natural block of 32 (e = 32 k + lane; D % 32 == 0), d =
// amax / 127, q = round(v / d), q8s = d * sum(q). Called by all 32 lanes of the warp.
__device__ __forceinline__ void attn_emit_q8(const cuda_attn_args &a, int t, int e, float v) {
    const int K = a.ldo;
    const float am = warp_max(fabsf(v));
    const float d = am / 127.0f;
    const int q = am == 0.0f ? 0 : (int)roundf(v / d);
    const int sq = __reduce_add_sync(0xffffffffu, q);
    a.out_q8[(size_t)t * K + p64_at(e)] = (int8_t)q;
    if ((threadIdx.x & 31) == 0) {
        const size_t gi = (size_t)t * (K / 32) + (size_t)(e >> 5);
        a.out_q8d[gi] = d;
        a.out_q8s[gi] = d * (float)sq;
    }
}

// grid (n_tiles, n_head), D threads: merges the plan_nslot[tile] partials of the tile's
// token and head h (log2 units), adds the sink, writes the output row.
template <int D>
__global__ __launch_bounds__(D) void attn_dec_combine(const cuda_attn_args a) {
    __shared__ float w[64 + 1];
    pdl_trigger();
    pdl_wait();
    const int t = a.tiles[blockIdx.x].t0, h = blockIdx.y, d = threadIdx.x;
    const int ns = a.plan_nslot[blockIdx.x]; // (tile blockIdx.x: one token, t)
    const float *part = a.work + ((size_t)t * a.n_head + h) * a.plan_nsl * (D + 2);
    if (ns <= 0) return; // (a token the plan does not cover: none in a decode batch)
    __shared__ float sm_mx, sm_l;
    if (d < 32) {
        float mx = -INFINITY;
        for (int s = d; s < ns; s += 32) mx = fmaxf(mx, part[(size_t)s * (D + 2) + D]);
        mx = warp_max(mx);
        const float sk = a.sinks ? a.sinks[h] * 1.4426950408889634f : -INFINITY;
        const float M = fmaxf(mx, sk);
        float l = 0.0f;
        for (int s = d; s < ns; s += 32) {
            const float ms = part[(size_t)s * (D + 2) + D];
            const float cw = ms == -INFINITY ? 0.0f : exp2f(ms - M);
            w[s] = cw;
            l += cw * part[(size_t)s * (D + 2) + D + 1];
        }
        l = warp_sum(l);
        if (d == 0) {
            if (a.sinks && M != -INFINITY) l += exp2f(sk - M);
            sm_l = l;
            sm_mx = M;
        }
    }
    __syncthreads();
    const float inv = sm_l > 0.0f ? 1.0f / sm_l : 0.0f;
    float acc[4] = {0, 0, 0, 0};
    int s = 0;
    for (; s + 4 <= ns; s += 4) {
#pragma unroll
        for (int u = 0; u < 4; u++) acc[u] += w[s + u] * part[(size_t)(s + u) * (D + 2) + d];
    }
    for (; s < ns; s++) acc[0] += w[s] * part[(size_t)s * (D + 2) + d];
    const float v = (acc[0] + acc[1] + acc[2] + acc[3]) * inv;
    if (a.out_q8) return attn_emit_q8(a, t, h * D + d, v);
    float *row = a.out + (size_t)t * a.ldo;
    row[a.out_p64 ? p64_at(h * D + d) : (size_t)h * D + d] = v;
}

// attn_dec_combine for the dec2/dec3 paths: no shared memory and no barrier; every thread
// (dim d) reads the slots' (max, sum) itself (the same addresses for all: broadcasts) with its
// own value, U slots per round, all loads of a round independent, merged online (log2 units).
// A token's ns slots take ceil(ns / U) rounds of memory latency (the old one: ~3 + ns / 4).
// U = 16 for dec2; U = 40 for dec3 (att8): the 33-34 slots of a 32K token (b1, b8) in one
// round instead of 3; more slots (up to plan_nsl = 64) take a second round.
template <int D, int U>
__global__ __launch_bounds__(D) void attn_dec_combine_u(const cuda_attn_args a) {
    pdl_trigger();
    const int t = a.tiles[blockIdx.x].t0, h = blockIdx.y, d = threadIdx.x; // (host copies: before the wait)
    const int ns = a.plan_nslot[blockIdx.x];
    if (ns <= 0) return;
    pdl_wait();
    const float *part = a.work + ((size_t)t * a.n_head + h) * a.plan_nsl * (D + 2);
    float M = -INFINITY, L = 0.0f, acc = 0.0f;
    for (int s0 = 0; s0 < ns; s0 += U) {
        float m[U], l[U], x[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const float *p = part + (size_t)(s0 + u) * (D + 2);
            const bool in = s0 + u < ns;
            m[u] = in ? p[D] : -INFINITY;
            l[u] = in ? p[D + 1] : 0.0f;
            x[u] = in ? p[d] : 0.0f;
        }
        float cm = M;
#pragma unroll
        for (int u = 0; u < U; u++) cm = fmaxf(cm, m[u]);
        if (cm == -INFINITY) continue; // (no positions yet)
        const float r = M == -INFINITY ? 0.0f : exp2f(M - cm);
        acc *= r;
        L *= r;
#pragma unroll
        for (int u = 0; u < U; u++) {
            const float w = m[u] == -INFINITY ? 0.0f : exp2f(m[u] - cm);
            acc += w * x[u];
            L += w * l[u];
        }
        M = cm;
    }
    if (a.sinks) {
        const float sk = a.sinks[h] * 1.4426950408889634f, M2 = fmaxf(M, sk);
        const float r = M == -INFINITY ? 0.0f : exp2f(M - M2);
        acc *= r;
        L = L * r + exp2f(sk - M2);
    }
    const float v = L > 0.0f ? acc / L : 0.0f;
    if (a.out_q8) return attn_emit_q8(a, t, h * D + d, v);
    float *row = a.out + (size_t)t * a.ldo;
    row[a.out_p64 ? p64_at(h * D + d) : (size_t)h * D + d] = v;
}

extern "C" int cuda_attn_dec_ok(int n_head, int n_kv, int head_dim, int kv_type) {
    return kv_type == CUDA_KV_F16 && (head_dim == 64 || head_dim == 128) && n_kv > 0 && n_head % n_kv == 0 &&
           n_head / n_kv <= DEC_ROWS;
}

// SPARKD_ATTN_DEC_OLD=1: attn_dec_kernel and its plan (~4 CTAs per SM, >= 8 steps an item), the
// A/B of attn_dec2_kernel. SPARKD_ATTN_DEC_WAVES=N: the new plan sizes the grid to N waves of
// resident CTAs (default 1); SPARKD_ATTN_DEC_MINSTEPS=n: >= n steps of 16 an item (default 8). SPARKD_ATTN_DEC_EXACT=1: attn_dec2_kernel ignores pf_fast (the A/B
// of its one-f16 path at precision fast). Read once; cuda_attn_dec_tune sets old / waves (benches).
// SPARKD_ATT8=0: attn_dec2_kernel (round 5) instead of attn_dec3_kernel (round 6), same plan.
// SPARKD_ATT8_ROWS=n: cascade groups of at most n rows (default 32; 16 = one m-tile, 4 members
// at G = 4, the prefix then read by several groups: faster in the kernel bench of GPU run 0,
// slower in the whole model of run 1, 32K b8 1,233 vs 1,275 tok/s).
// SPARKD_ATT8_PRE=1: attn_dec3_kernel copies its first steps before pdl_wait where no kernel
// of the step writes them (off by default: kern_util.cuh's rule allows only weights there).
static int g_dec_old = -1, g_dec_waves = 1, g_dec_exact = 0, g_dec_minsteps = 8, g_att8 = 1, g_dec_rows = 0, g_att8_pre = 0;
// SPARKD_ATT8_PAIR=0: attn_dec3_kernel's items of more than 16 rows at precision fast by two
// m-tiles a warp instead of warp pairs (see there; pairs by default since GPU run 1: 32K b8
// 1,283.7 vs 1,274.7 tok/s).
static int g_att8_pair = 1;
// SPARKD_A8 (round 12, helper a8): 1 attn_dec3_kernel<D, 1> at precision fast (one
// m-tile a warp, 2 stages a warp, 3 CTAs an SM) and the plan sized to its resident CTAs (3 a SM:
// 49 items a KV head at 8 KV heads on 132 SMs instead of 33); 2: that kernel with today's plan
// (items for 2 a SM, the kernel 3 a SM); 3: the same kernel with 3 stages a warp (6 a warp pair: 2 CTAs an
// SM, today's item count); 4: 3 for a batch of one sequence, 1 for more; 5: that kernel with 2
// stages and today's shared bytes (83 KB: today's footprint, 2 CTAs an SM, today's items), for
// batches of 2..8 sequences only (the default since GPU run 1: 32K b8 +4.5%; 64 sequences lost
// 2.4% with it, b1 even: those keep today's kernel); 0 today's kernel and plan exactly.
// Used where SPARKD_ATT8 is 1-3,
// SPARKD_ATT8_PAIR on (or ATT8 = 3), SPARKD_ATTN_DEC_NS unset or 2, the new plan; else today's path.
static int g_a8 = 5;
static void dec_env() {
    if (g_dec_old >= 0) return;
    const int e8 = cuda_env_int("SPARKD_A8", 5); // (the project's reader: read once, cached)
    g_a8 = e8 <= 5 ? e8 : 5;
    const char *a8 = getenv("SPARKD_ATT8");
    g_att8 = a8 && *a8 && !strcmp(a8, "0") ? 0 : 1;
    g_att8_pre = getenv("SPARKD_ATT8_PRE") && atoi(getenv("SPARKD_ATT8_PRE")) == 1;
    g_att8_pair = !(getenv("SPARKD_ATT8_PAIR") && atoi(getenv("SPARKD_ATT8_PAIR")) == 0);
    a8 = getenv("SPARKD_ATT8_ROWS");
    if (a8 && atoi(a8) >= 1 && atoi(a8) <= DEC_ROWS) g_dec_rows = atoi(a8);
    const char *ms = getenv("SPARKD_ATTN_DEC_MINSTEPS"); // (steps an item at least: 8 = the old plan's)
    if (ms && atoi(ms) >= 1 && atoi(ms) <= 64) g_dec_minsteps = atoi(ms);
    g_dec_exact = getenv("SPARKD_ATTN_DEC_EXACT") != NULL; // (pf_fast ignored: hi + lo at precision fast too)
    const char *s = getenv("SPARKD_ATTN_DEC_WAVES");
    if (s && atoi(s) >= 1 && atoi(s) <= 8) g_dec_waves = atoi(s);
    s = getenv("SPARKD_ATTN_DEC_OLD");
    g_dec_old = s && *s && strcmp(s, "0") ? 1 : 0;
}
extern "C" void cuda_attn_dec_tune(int old, int waves) {
    dec_env();
    if (old >= 0) g_dec_old = old ? 1 : 0;
    if (waves >= 1 && waves <= 8) g_dec_waves = waves;
}
extern "C" int cuda_attn_dec_rows(int rows) {
    dec_env();
    const int was = g_dec_rows;
    if (rows >= 0 && rows <= DEC_ROWS) g_dec_rows = rows; // (0: the default)
    return was;
}
extern "C" int cuda_attn_dec_att8(int mode) {
    dec_env();
    const int was = g_att8;
    if (mode >= 0 && mode <= 4) g_att8 = mode;
    return was;
}

// attn_dec2_kernel's launch for head_dim D on the current device: stages per warp (3 where two
// CTAs fit an SM, else 2), dynamic shared bytes, resident CTAs per SM. Set up once.
struct dec2_cfg {
    int ns, smem, per_sm, carveout;
};
template <int D> static dec2_cfg dec2_compute() {
    dec2_cfg c = {0, 0, 0, 0};
    int dev = 0, optin = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
        optin = 0, cudaGetLastError();
    // 2 stages (81 KB at d128: two CTAs leave ~60 KB of an H200 SM to the kernels around it,
    // as the round-3 kernel's 87 KB did). Run 1 (H200): 3 stages (112 KB, the whole SM for two
    // CTAs) + a 100% shared carveout gained ~2 us of 54 at 32K b1 over a two-wave plan but cost
    // 6-11 us a layer at ~600 positions in the whole model (the GEMVs' early-launched CTAs and
    // their L2 prefetch had no room / a different L1 split): SPARKD_ATTN_DEC_NS=3|4 and
    // SPARKD_ATTN_DEC_CARVEOUT=1 for the A/B.
    c.ns = 2;
    const char *env = getenv("SPARKD_ATTN_DEC_NS");
    if (env && atoi(env) >= 2 && atoi(env) <= DEC_NSMAX && dec2_smem<D>::total(atoi(env)) <= optin) c.ns = atoi(env);
    c.carveout = getenv("SPARKD_ATTN_DEC_CARVEOUT") != NULL;
    c.smem = dec2_smem<D>::total(c.ns);
    cudaFuncSetAttribute(attn_dec2_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, c.smem);
    cudaFuncSetAttribute(attn_dec3_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, c.smem);
    if (c.carveout) cudaFuncSetAttribute(attn_dec2_kernel<D>, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
    if (c.carveout) cudaFuncSetAttribute(attn_dec3_kernel<D>, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
    int nb = 0, nb3 = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, attn_dec2_kernel<D>, DEC_WARPS * 32, (size_t)c.smem) != cudaSuccess ||
        nb < 1)
        nb = 1, cudaGetLastError();
    // (one plan for both kernels: the wave of the one with fewer resident CTAs)
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb3, attn_dec3_kernel<D>, DEC_WARPS * 32, (size_t)c.smem) != cudaSuccess ||
        nb3 < 1)
        nb3 = 1, cudaGetLastError();
    c.per_sm = nb < nb3 ? nb : nb3;
    return c;
}
// (computed once on the device current at the first call, engine layout or launch: the devices
// of one process are taken to be of one kind; the kernel's attributes are set per device at launch)
template <int D> static dec2_cfg dec2_setup() {
    static const dec2_cfg c = dec2_compute<D>(); // (a function-local static: initialized once, thread-safe)
    return c;
}

// SPARKD_A8: attn_dec3_kernel<D, 1>'s dynamic shared bytes (Q hi + 2 stages a warp; the
// [warp][16][D + 2] partials fit in the ring) and resident CTAs an SM (at most 3, 0: unusable)
// (V: 2 or 3 stages a warp, SPARKD_A8 = 1, 2 or 3)
template <int D, int V> static int a8_smem() { return dec2_smem<D>::Q / 2 + DEC_WARPS * V * dec2_smem<D>::STAGE; }
template <int D, int V> static int a8_compute() {
    int nb = 0;
    // (the attribute at the 3-stage size where the device allows it, else at V's: never lowered
    // below what a launch set, which raises it when it needs more)
    if (cudaFuncSetAttribute(attn_dec3_kernel<D, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize, a8_smem<D, 3>()) != cudaSuccess) {
        cudaGetLastError();
        if (cudaFuncSetAttribute(attn_dec3_kernel<D, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize, a8_smem<D, V>()) != cudaSuccess)
            return cudaGetLastError(), 0;
    }
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, attn_dec3_kernel<D, 1>, DEC_WARPS * 32, (size_t)a8_smem<D, V>()) != cudaSuccess)
        return cudaGetLastError(), 0;
    return nb > 3 ? 3 : nb;
}
// (SPARKD_A8 = 4: 3 stages for a batch of one sequence, 2 for more)
static int a8_ns(int n) { return g_a8 == 3 || (g_a8 == 4 && n == 1) ? 3 : 2; }
template <int D> static int a8_per_sm(int ns) { // (with ns stages a warp)
    if (ns == 3) {
        static const int n3 = a8_compute<D, 3>();
        return n3;
    }
    static const int n2 = a8_compute<D, 2>();
    return n2;
}
static bool a8_usable() { // (the switches A8's kernel needs; precision fast is checked at launch)
    return g_a8 && !g_dec_old && g_att8 >= 1 && g_att8 <= 3 && (g_att8 == 3 || g_att8_pair) && dec2_setup<128>().ns == 2 &&
           !g_dec_exact;
}
static long g_a8_launches = 0; // (attn_dec3_kernel<D, 1> launches so far: the selftest's proof that it ran)
extern "C" long cuda_attn_dec_a8_launches(void) { return g_a8_launches; }
extern "C" int cuda_attn_dec_a8(int mode) { // (tests and benches: 0..2, -1 = unchanged; returns the old mode)
    dec_env();
    const int was = g_a8;
    if (mode >= 0 && mode <= 5) g_a8 = mode;
    return was;
}

extern "C" int cuda_attn_dec_items_p(int n, int n_kv, int sms, int fast) {
    dec_env();
    if (n_kv < 1) n_kv = 1;
    if (g_dec_old) return (4 * sms + n_kv - 1) / n_kv + 2 * n; // ~4 CTAs per SM
    // one wave (g_dec_waves) of resident CTAs for the proportional split, + 2 per token
    // (SPARKD_A8 = 1 at precision fast: the wave of attn_dec3_kernel<128, 1>)
    const int psm = fast && g_a8 != 2 && g_a8 != 5 && a8_usable() && a8_per_sm<128>(a8_ns(n)) > dec2_setup<128>().per_sm
                        ? a8_per_sm<128>(a8_ns(n))
                        : dec2_setup<128>().per_sm;
    const int w = g_dec_waves * psm * sms / n_kv;
    return (w > 1 ? w : 1) + 2 * n;
}

extern "C" int cuda_attn_dec_items(int n, int n_kv, int sms) { return cuda_attn_dec_items_p(n, n_kv, sms, 1); }

extern "C" int cuda_attn_dec_nsl(int max_seqs) { return max_seqs <= 16 ? 64 : max_seqs <= 64 ? 16 : 8; }

extern "C" uint64_t cuda_attn_dec_work_bytes(int T, int n_head, int head_dim, int nsl) {
    return (uint64_t)T * n_head * nsl * (uint64_t)(head_dim + 2) * 4;
}

// (the order of the new plan: positions per part descending, then cascade first, tile, part)
static int dec_item_cmp(const void *pa, const void *pb) {
    const cuda_attn_item *a = (const cuda_attn_item *)pa, *b = (const cuda_attn_item *)pb;
    const int la = (a->p1 - a->p0 + a->nparts - 1) / a->nparts, lb = (b->p1 - b->p0 + b->nparts - 1) / b->nparts;
    if (la != lb) return la > lb ? -1 : 1;
    if (a->n != b->n) return a->n > b->n ? -1 : 1;
    if (a->tile[0] != b->tile[0]) return a->tile[0] < b->tile[0] ? -1 : 1;
    return a->part < b->part ? -1 : a->part > b->part ? 1 : 0;
}

extern "C" int cuda_attn_dec_plan(const cuda_attn_tile *tiles, int n_tiles, const int32_t *bt, int max_blocks,
                                  int kv_block, int group, int n_items, int nsl, cuda_attn_item *items, int32_t *nslot) {
    enum { MAXT = 1024, MAXG = 128 };
    if (n_tiles < 1 || n_tiles > MAXT || n_items < 2 * n_tiles || group < 1 || group > DEC_ROWS || nsl < 8 || nsl > 64)
        return -1;
    memset(items, 0, (size_t)n_items * sizeof *items);
    dec_env();
    const int grows = g_dec_rows > 0 ? g_dec_rows : DEC_ROWS; // (rows of a cascade item at most, SPARKD_ATT8_ROWS)
    const int gmax = grows / group < CUDA_ATTN_MEMBERS ? grows / group : CUDA_ATTN_MEMBERS;
    const int target = n_items - 2 * n_tiles; // items for the proportional split (cuda_attn_dec_items)
    // groups: tile i takes later ungrouped tiles (up to gmax members) whose table starts with
    // its first block; the shared run = their common leading block ids, clipped to the lowest
    // position + 1 (every member attends to all of it). own0[t]: where t's own pass starts.
    int own0[MAXT];
    bool taken[MAXT];
    for (int t = 0; t < n_tiles; t++) own0[t] = 0, taken[t] = false, nslot[t] = 0;
    cuda_attn_item grp[MAXG];
    int ng = 0;
    int64_t total = 0; // positions read (a shared run once)
    for (int t = 0; t < n_tiles; t++) total += tiles[t].pos0 + 1;
    for (int i = 0; i < n_tiles && ng < MAXG && gmax > 1; i++) {
        if (taken[i]) continue;
        // candidates: ungrouped later tiles of other sequences, by the blocks they share with
        // tile i (common leading ids), longest first; keep the first m that save the most
        // reads, m x shared positions
        const int32_t *bi = bt + (size_t)tiles[i].seq * max_blocks;
        const int nbi = tiles[i].pos0 / kv_block + 1;
        int cand[CUDA_ATTN_MEMBERS - 1], ck[CUDA_ATTN_MEMBERS - 1], nc = 0;
        for (int j = i + 1; j < n_tiles; j++) {
            if (taken[j] || tiles[j].seq == tiles[i].seq) continue;
            const int32_t *bj = bt + (size_t)tiles[j].seq * max_blocks;
            if (bj[0] != bi[0]) continue;
            const int nbj = tiles[j].pos0 / kv_block + 1;
            int k = 0;
            while (k < nbi && k < nbj && bj[k] == bi[k]) k++;
            int x; // insertion into the gmax - 1 longest
            if (nc < gmax - 1) {
                x = nc++;
            } else {
                if (k <= ck[nc - 1]) continue;
                x = nc - 1;
            }
            while (x > 0 && ck[x - 1] < k) cand[x] = cand[x - 1], ck[x] = ck[x - 1], x--;
            cand[x] = j;
            ck[x] = k;
        }
        int best = 0, best_ls = 0, minpos = tiles[i].pos0;
        int64_t best_save = 0;
        for (int m = 1; m <= nc; m++) {
            if (tiles[cand[m - 1]].pos0 < minpos) minpos = tiles[cand[m - 1]].pos0;
            int ls = ck[m - 1] * kv_block; // (ck is descending: the m-th is the common run)
            if (ls > minpos + 1) ls = minpos + 1;
            if ((int64_t)m * ls > best_save) best_save = (int64_t)m * ls, best = m, best_ls = ls;
        }
        if (best < 1 || best_ls < 4 * DEC_STEP) continue;
        cuda_attn_item *gi = &grp[ng++];
        memset(gi, 0, sizeof *gi);
        gi->n = best + 1;
        gi->p1 = best_ls;
        gi->tile[0] = (int16_t)i;
        for (int m = 0; m < best; m++) gi->tile[m + 1] = (int16_t)cand[m];
        for (int m = 0; m < gi->n; m++) {
            taken[gi->tile[m]] = true;
            own0[gi->tile[m]] = best_ls;
        }
        total -= (int64_t)best * best_ls; // the shared run is read once, not n times
    }
    // >= 8 steps (2 per warp) an item (new plan: SPARKD_ATTN_DEC_MINSTEPS); new plan: the
    // target lowered until the items (each range >= 1) fit the wave: tiny ranges (a member's
    // own rest after a shared run) must not push big parts into a second wave
    dec_env();
    const int minpos_item = (g_dec_old ? 8 : g_dec_minsteps) * DEC_STEP;
    int tgt = target;
    auto parts_of = [&](int64_t len, int cap) {
        int64_t k = total > 0 ? (len * tgt + total / 2) / total : 1;
        const int64_t kmax = (len + minpos_item - 1) / minpos_item;
        if (k > kmax) k = kmax;
        if (k > cap) k = cap;
        return (int)(k < 1 ? 1 : k);
    };
    // att8: ranges under half a share (members' rests after a shared run) run after the long
    // parts; with the wave full of long parts they formed a second wave (b8 shared at 32K: 64
    // CTAs of 1-2 steps, ~4-5 us after the rest). One item a head per 8 such ranges is kept out
    // of the long parts' wave instead, so they cycle through those slots while the long parts run.
    int wave = target;
    if (!g_dec_old && g_att8) {
        int nsmall = 0;
        for (int t = 0; t < n_tiles; t++) {
            const int len = tiles[t].pos0 + 1 - own0[t];
            nsmall += 2 * (int64_t)(len > 0 ? len : 1) * target < total;
        }
        int reserve = (nsmall + 7) / 8;
        if (reserve > target / 4) reserve = target / 4;
        wave = target - reserve;
    }
    for (int iter = 0; !g_dec_old && iter < 8; iter++) { // (dry run of the two loops below)
        int sum = 0;
        for (int k = 0; k < ng; k++) {
            const int np = parts_of(grp[k].p1, nsl - 4);
            sum += np;
            for (int m = 0; m < grp[k].n; m++) nslot[grp[k].tile[m]] += np;
        }
        for (int t = 0; t < n_tiles; t++) {
            const int len = tiles[t].pos0 + 1 - own0[t];
            // (a range under half an item's share, e.g. a member's rest after a shared run,
            // goes last (the sort below) and does not count against the wave)
            if (2 * (int64_t)(len > 0 ? len : 1) * target >= total) sum += parts_of(len > 0 ? len : 1, nsl - nslot[t]);
            nslot[t] = 0;
        }
        if (sum <= wave || tgt <= 1) break;
        tgt -= sum - wave;
        if (tgt < 1) tgt = 1;
    }
    int n_used = 0;
    for (int k = 0; k < ng; k++) { // cascade items: member slots from 0
        const cuda_attn_item gi = grp[k];
        int np = parts_of(gi.p1, nsl - 4); // (>= 4 slots left for each member's own rest)
        if (np > n_items - n_used - n_tiles) np = n_items - n_used - n_tiles;
        for (int p = 0; p < np; p++) {
            cuda_attn_item *x = &items[n_used++];
            *x = gi;
            x->part = p;
            x->nparts = np;
            for (int m = 0; m < gi.n; m++) x->slot[m] = (int16_t)nslot[gi.tile[m]]++;
        }
    }
    for (int t = 0; t < n_tiles; t++) { // every tile's own rest (an item even when empty: a slot)
        const int len = tiles[t].pos0 + 1 - own0[t];
        int np = parts_of(len > 0 ? len : 1, nsl - nslot[t]);
        if (np > n_items - n_used - (n_tiles - 1 - t)) np = n_items - n_used - (n_tiles - 1 - t);
        if (np < 1) return -1; // cannot happen: n_items >= target + 2 n_tiles
        for (int p = 0; p < np; p++) {
            cuda_attn_item *x = &items[n_used++];
            x->n = 1;
            x->p0 = own0[t];
            x->p1 = tiles[t].pos0 + 1;
            x->part = p;
            x->nparts = np;
            x->tile[0] = (int16_t)t;
            x->slot[0] = (int16_t)nslot[t]++;
        }
    }
    // new plan: longest items first; attn_dec2_kernel takes items in that order over all KV
    // heads (item-major CTA order), so the long parts fill the first wave and short ones follow
    if (!g_dec_old) qsort(items, (size_t)n_used, sizeof *items, dec_item_cmp);
    return n_used;
}

extern "C" int cuda_l32_dec(const cuda_attn_args *a, int ctl, void *stream, err *e); // l32.cu (round 13): batch 1 at long context
template <int D>
static int attn_dec_launch(const cuda_attn_args *a, void *stream, err *e) {
    dec_env();
    if (!g_dec_old) {
        const dec2_cfg c = dec2_setup<D>();
        static bool set[64]; // (function attributes are per device)
        int dev = 0;
        CUDA_TRY(cudaGetDevice(&dev));
        if (dev < 0 || dev >= 64 || !set[dev]) {
            CUDA_TRY(cudaFuncSetAttribute(attn_dec2_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, c.smem));
            CUDA_TRY(cudaFuncSetAttribute(attn_dec3_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, c.smem));
            if (c.carveout) {
                CUDA_TRY(cudaFuncSetAttribute(attn_dec2_kernel<D>, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
                CUDA_TRY(cudaFuncSetAttribute(attn_dec3_kernel<D>, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
            }
            if (dev >= 0 && dev < 64) set[dev] = true;
        }
        cuda_attn_args b = *a;
        if (g_dec_exact) b.pf_fast = 0;
        if (g_att8 && b.pf_fast) { // round 13 l32 (l32.cu, SPARKD_L32): one token at precision fast; -1 = not taken
            const int lr = cuda_l32_dec(&b, g_att8 == 2 ? 1 : 0, stream, e);
            if (lr == -2) CUDA_TRY(cuda_launch(attn_dec_combine_u<D, 40>, dim3((unsigned)a->n_tiles, (unsigned)a->n_head), dim3(D), 0, stream, *a));
            if (lr != -1) return lr == -2 ? 0 : lr;
        }
        // (SPARKD_A8; 5, the default: batches of 2..8 sequences only, today's kernel for the others)
        if (b.pf_fast && a8_usable() && a8_per_sm<D>(a8_ns(a->n_tiles)) > 0 && (g_a8 != 5 || (a->n_tiles >= 2 && a->n_tiles <= 8))) {
            // (SPARKD_A8 = 5: 2 stages with today's shared bytes: today's footprint, 2 CTAs an SM)
            const int ns = a8_ns(a->n_tiles), sm8 = g_a8 == 5 ? c.smem : ns == 3 ? a8_smem<D, 3>() : a8_smem<D, 2>();
            static int set8[64]; // (the shared bytes the kernel's attribute allows, per device)
            if (dev < 0 || dev >= 64 || set8[dev] < sm8) {
                CUDA_TRY(cudaFuncSetAttribute(attn_dec3_kernel<D, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize, sm8));
                if (dev >= 0 && dev < 64) set8[dev] = sm8;
            }
            const int ctl = (g_att8 == 2 ? 1 : 0) | (g_att8_pre ? 2 : 0) | 4;
            CUDA_TRY(cuda_launch(attn_dec3_kernel<D, 1>, dim3((unsigned)a->plan_items, (unsigned)a->n_kv), dim3(DEC_WARPS * 32),
                                 (size_t)sm8, stream, b, ns, ctl));
            g_a8_launches++;
            if (a->plan_nsl > 16) {
                CUDA_TRY(cuda_launch(attn_dec_combine_u<D, 52>, dim3((unsigned)a->n_tiles, (unsigned)a->n_head), dim3(D), 0, stream, *a));
                return 0;
            }
            CUDA_TRY(cuda_launch(attn_dec_combine_u<D, 16>, dim3((unsigned)a->n_tiles, (unsigned)a->n_head), dim3(D), 0, stream, *a));
            return 0;
        }
        if (g_att8) {
            CUDA_TRY(cuda_launch(attn_dec3_kernel<D>, dim3((unsigned)a->plan_items, (unsigned)a->n_kv), dim3(DEC_WARPS * 32),
                                 (size_t)c.smem, stream, b, c.ns, (g_att8 == 2 ? 1 : 0) | (g_att8_pre ? 2 : 0) | (g_att8 == 3 || (g_att8 != 4 && g_att8_pair) ? 4 : 0)));
            if (a->plan_nsl > 16) { // (up to 16 slots: the U = 16 combine's one round already)
                { const int ec = cuda_e64_comb(a, 40, stream, e); if (ec >= 0) return ec; } // round 12 e64 (e64.cu)
                CUDA_TRY(cuda_launch(attn_dec_combine_u<D, 40>, dim3((unsigned)a->n_tiles, (unsigned)a->n_head), dim3(D), 0, stream, *a));
                return 0;
            }
        } else {
            CUDA_TRY(cuda_launch(attn_dec2_kernel<D>, dim3((unsigned)a->plan_items, (unsigned)a->n_kv), dim3(DEC_WARPS * 32),
                                 (size_t)c.smem, stream, b, c.ns));
        }
        { const int ec = cuda_e64_comb(a, 16, stream, e); if (ec >= 0) return ec; } // round 12 e64 (e64.cu; armed by the engine only)
        CUDA_TRY(cuda_launch(attn_dec_combine_u<D, 16>, dim3((unsigned)a->n_tiles, (unsigned)a->n_head), dim3(D), 0, stream, *a));
        return 0;
    }
    static bool attr[64]; // (per device)
    CUDA_TRY(cuda_smem_once(attn_dec_kernel<D>, (int)(dec_smem<D>::TOTAL), attr));
    CUDA_TRY(cuda_launch(attn_dec_kernel<D>, dim3((unsigned)a->plan_items, (unsigned)a->n_kv), dim3(DEC_WARPS * 32),
                         (size_t)dec_smem<D>::TOTAL, stream, *a));
    CUDA_TRY(cuda_launch(attn_dec_combine<D>, dim3((unsigned)a->n_tiles, (unsigned)a->n_head), dim3(D), 0, stream, *a));
    return 0;
}

// round 13 l32 (l32.cu, SPARKD_L32_QKV): whether attn_dec_launch would offer a one-token decode to l32 at all (the
// switches that route it: SPARKD_ATTN_DEC_OLD, SPARKD_ATTN_DEC_EXACT, SPARKD_ATT8), so that the fused q/k/v route obeys
// them too: 0 = not, 1 = yes, 2 = yes with the selftest's control (SPARKD_ATT8=2)
extern "C" int cuda_attn_dec_l32_gate(void) {
    dec_env();
    return g_dec_old || g_dec_exact || !g_att8 ? 0 : g_att8 == 2 ? 2 : 1;
}

// round 13 l32 (l32.cu, SPARKD_L32_QKV with SPARKD_L32 = 1 / 3): the decode plan's combine alone, as the dec3 path
// launches it after its kernel
extern "C" int cuda_attn_dec_combine_launch(const cuda_attn_args *a, void *stream, err *e) {
    if (a->head_dim == 128)
        CUDA_TRY(cuda_launch(attn_dec_combine_u<128, 40>, dim3((unsigned)a->n_tiles, (unsigned)a->n_head), dim3(128), 0, stream, *a));
    else
        CUDA_TRY(cuda_launch(attn_dec_combine_u<64, 40>, dim3((unsigned)a->n_tiles, (unsigned)a->n_head), dim3(64), 0, stream, *a));
    return 0;
}

// ================================================================ prefill on the tensor cores
//
// Flash-attention-2 style: one CTA (4 warps) takes one tile of query tokens of one sequence
// (cuda_attn_tile, up to cuda_attn_pf_tokens(G) tokens) and one KV head; its rows are the
// tile's tokens x the G query heads of that KV head (token-major, up to 64 rows: 16 per warp,
// one m16 tile each). Positions go by in tiles of PF_BN: the CTA copies a tile's K and V rows
// global -> shared with cp.async (two stages: the next tile is in flight while this one is
// computed), then each warp, for its 16 rows,
//   S (16 x PF_BN) = Q K^T   mma.sync m16n8k16, Q (hi, lo) and K fragments by ldmatrix,
//   causal / window mask per row, online softmax in registers (exp2; scale * log2 e in Q),
//   O += P V                mma.sync m16n8k16, V fragments by ldmatrix.trans.
// Q and P are split into f16 hi + lo like the decode kernel (the f32 kernel's accuracy);
// pf_fast (precision fast) multiplies the hi halves only: half the MMAs, ~1e-3 relative.
// Warps whose rows all precede a tile skip it (the causal triangle). n_split > 1 divides the
// positions over CTAs (blockIdx.z) and writes the old kernel's partial layout (natural-log
// max), merged by attn_combine_kernel; n_split == 1 writes the output (sinks added here).
// Tiles are taken last first: a sequence's last tiles attend to the most positions.

#define PF_WARPS 4
#define PF_ROWS 64 // rows per CTA (16 per warp)
#define PF_BN 32   // positions per K/V tile

extern "C" int cuda_attn_pf_tokens(int group) { return group >= PF_ROWS ? 1 : PF_ROWS / (group > 0 ? group : 1); }

extern "C" int cuda_attn_pf_ok(int n_head, int n_kv, int head_dim, int kv_type) {
    return kv_type == CUDA_KV_F16 && (head_dim == 64 || head_dim == 128) && n_kv > 0 && n_head % n_kv == 0 &&
           n_head / n_kv <= PF_ROWS;
}

template <int D> struct pf_smem {
    static constexpr int LD = D + 8;                 // halves per row (16 B pad: ldmatrix banks)
    static constexpr int Q = 2 * PF_ROWS * LD * 2;   // Q hi, lo (bytes)
    static constexpr int STAGE = 2 * PF_BN * LD * 2; // K + V rows of one tile
    static constexpr int TOTAL = Q + 2 * STAGE;      // 68 KB at d128, 36 KB at d64
};

// order > 0 (round 9 pp, SPARKD_PP bit 8; order = the SM count S, with one KV split and at most 3 S CTAs,
// all resident at once): CTA L of the dispatch order (x fastest) takes the item (tile, KV head) of rank r
// in the longest-first list, in a snake over waves of S: wave w = L / S takes ranks [w S, w S + S), in
// reverse on odd waves, so the SM that got the longest item of wave 0 gets the shortest of wave 1 (the
// base profile, pp512: 52 us a layer, about twice the average work on the busiest SMs with the plain
// order, whose co-resident CTAs L and L + S are both long).
template <int D>
__global__ __launch_bounds__(PF_WARPS * 32, 3) void attn_pf_kernel(const cuda_attn_args a, int order) {
    using SM = pf_smem<D>;
    constexpr int LD = SM::LD, NT = D / 8, CH = D / 8;
    extern __shared__ __align__(16) uint8_t psm[];
    __half *qh = (__half *)psm, *ql = qh + PF_ROWS * LD;
    __half *kvs = (__half *)(psm + SM::Q); // [stage][K PF_BN x LD | V PF_BN x LD]
    pdl_trigger();
    pdl_wait();
    int tix, hk;
    pf_item(a, order, tix, hk); // (attn_pf.cuh: the tile and KV head of this CTA, pp's snake order)
    const cuda_attn_tile tile = a.tiles[tix];
    const int G = a.n_head / a.n_kv, R = tile.n * G;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, c = lane & 3;
    const float qsc = a.scale * 1.4426950408889634f;
    const bool exact = !a.pf_fast; // (warp-uniform: the lo halves' loads and MMAs are skipped)
    const int last = tile.pos0 + tile.n - 1;
    const int first = a.window > 0 ? max(0, tile.pos0 - a.window + 1) : 0;
    const int ntile = (last - first) / PF_BN + 1;
    const int per = (ntile + a.n_split - 1) / a.n_split;
    const int kt0 = blockIdx.z * per, kt1 = min(ntile, kt0 + per);
    const int32_t *btab = a.block_tables + (size_t)tile.seq * a.max_blocks;
    const __half *K = (const __half *)a.kv.k, *V = (const __half *)a.kv.v;

    // stage the K and V rows of tile kt (positions first + PF_BN kt ..; past `last`: the last row)
    auto issue = [&](int kt, int stage) {
        __half *kb = kvs + (size_t)stage * 2 * PF_BN * LD, *vb = kb + PF_BN * LD;
        const int p0 = first + kt * PF_BN;
#pragma unroll
        for (int i = 0; i < PF_BN * CH / (PF_WARPS * 32); i++) {
            const int j = tid + PF_WARPS * 32 * i, rr = j / CH, ch = j % CH;
            const int p = min(p0 + rr, last);
            const size_t row = ((size_t)btab[p / a.kv_block] * a.n_kv + hk) * a.kv_block + p % a.kv_block;
            cp_async16(kb + rr * LD + ch * 8, K + row * D + ch * 8);
            cp_async16(vb + rr * LD + ch * 8, V + row * D + ch * 8);
        }
    };
    if (kt0 < kt1) issue(kt0, 0);
    cp_commit();

    // Q rows (token r / G, head hk * G + r % G) * scale * log2 e -> f16 hi, lo; rows >= R zero
    for (int idx = tid; idx < PF_ROWS * (D / 2); idx += PF_WARPS * 32) {
        const int r = idx / (D / 2), d = 2 * (idx % (D / 2));
        float x = 0.0f, y = 0.0f;
        if (r < R) {
            const float2 v = *(const float2 *)(a.q + (size_t)(tile.t0 + r / G) * a.ldq + (size_t)(hk * G + r % G) * D + d);
            x = v.x * qsc;
            y = v.y * qsc;
        }
        uint32_t h_, l_;
        split2(x, y, h_, l_);
        *(uint32_t *)(qh + r * LD + d) = h_;
        *(uint32_t *)(ql + r * LD + d) = l_;
    }
    // this lane's rows 16 warp + g (+ 8): their positions, -1 past R; the warp's span
    const int r0 = 16 * warp + g;
    const int rpos[2] = {r0 < R ? tile.pos0 + r0 / G : -1, r0 + 8 < R ? tile.pos0 + (r0 + 8) / G : -1};
    const bool wact = 16 * warp < R;
    const int wmin = tile.pos0 + (16 * warp) / G, wmax = tile.pos0 + min(16 * warp + 15, R - 1) / G;

    float o[NT][4], mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.0f, 0.0f};
#pragma unroll
    for (int n = 0; n < NT; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

    for (int kt = kt0, stage = 0; kt < kt1; kt++, stage ^= 1) {
        if (kt + 1 < kt1) issue(kt + 1, stage ^ 1);
        cp_commit();
        cp_wait<1>();
        __syncthreads(); // this tile's rows (and Q) visible to every warp
        const int p0 = first + kt * PF_BN;
        // the warp's rows see some position of the tile (causal; window: not all before it)
        if (wact && p0 <= wmax && (a.window <= 0 || p0 + PF_BN - 1 > wmin - a.window)) {
            const __half *kb = kvs + (size_t)stage * 2 * PF_BN * LD, *vb = kb + PF_BN * LD;
            float s[PF_BN / 8][4];
#pragma unroll
            for (int nt = 0; nt < PF_BN / 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
            for (int ks = 0; ks < D / 16; ks++) {
                uint32_t ah[4], al[4];
                const int qo = (16 * warp + ((lane >> 3) & 1) * 8 + (lane & 7)) * LD + ks * 16 + (lane >> 4) * 8;
                ldsm4(ah, qh + qo);
                if (exact) ldsm4(al, ql + qo);
#pragma unroll
                for (int h2 = 0; h2 < PF_BN / 16; h2++) {
                    uint32_t kf[4]; // b0, b1 of positions 16 h2 + 0-7, then of + 8-15
                    ldsm4(kf, kb + (16 * h2 + (lane >> 4) * 8 + (lane & 7)) * LD + ks * 16 + ((lane >> 3) & 1) * 8);
                    mma16816(s[2 * h2], ah, kf[0], kf[1]);
                    mma16816(s[2 * h2 + 1], ah, kf[2], kf[3]);
                    if (exact) {
                        mma16816(s[2 * h2], al, kf[0], kf[1]);
                        mma16816(s[2 * h2 + 1], al, kf[2], kf[3]);
                    }
                }
            }
            // online softmax per row; P as the A operand of P V (hi, lo) per 16 positions
            uint32_t ph[PF_BN / 16][4], pl[PF_BN / 16][4];
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                const int pr = rpos[hh];
                float v[PF_BN / 4];
#pragma unroll
                for (int nt = 0; nt < PF_BN / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int p = p0 + nt * 8 + 2 * c + e;
                        const bool ok = p <= pr && (a.window <= 0 || p > pr - a.window);
                        v[nt * 2 + e] = ok ? s[nt][2 * hh + e] : -INFINITY;
                    }
                float mx = v[0];
#pragma unroll
                for (int i = 1; i < PF_BN / 4; i++) mx = fmaxf(mx, v[i]);
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float mn = fmaxf(mrow[hh], mx);
                const float corr = mn == -INFINITY ? 1.0f : exp2f(mrow[hh] - mn);
                mrow[hh] = mn;
                float ps = 0.0f;
#pragma unroll
                for (int i = 0; i < PF_BN / 4; i++) {
                    v[i] = mn == -INFINITY ? 0.0f : exp2f(v[i] - mn);
                    ps += v[i];
                }
                lrow[hh] = lrow[hh] * corr + ps;
#pragma unroll
                for (int n = 0; n < NT; n++) o[n][2 * hh] *= corr, o[n][2 * hh + 1] *= corr;
                // a0 (row g, k 2c..) = n-tile 2 kc, a1 (row g + 8), a2 (row g, k 8 + 2c..) = n-tile 2 kc + 1, a3
#pragma unroll
                for (int kc = 0; kc < PF_BN / 16; kc++) {
                    split2(v[4 * kc], v[4 * kc + 1], ph[kc][hh], pl[kc][hh]);
                    split2(v[4 * kc + 2], v[4 * kc + 3], ph[kc][2 + hh], pl[kc][2 + hh]);
                }
            }
            // O += P V: V fragments of positions 16 kc.., dims 16 j .. 16 j + 15 per ldmatrix.trans
#pragma unroll
            for (int j = 0; j < D / 16; j++) {
#pragma unroll
                for (int kc = 0; kc < PF_BN / 16; kc++) {
                    uint32_t vf[4];
                    ldsm4t(vf, vb + (16 * kc + ((lane >> 3) & 1) * 8 + (lane & 7)) * LD + j * 16 + (lane >> 4) * 8);
                    mma16816(o[2 * j], ph[kc], vf[0], vf[1]);
                    mma16816(o[2 * j + 1], ph[kc], vf[2], vf[3]);
                    if (exact) {
                        mma16816(o[2 * j], pl[kc], vf[0], vf[1]);
                        mma16816(o[2 * j + 1], pl[kc], vf[2], vf[3]);
                    }
                }
            }
        }
        __syncthreads(); // every warp done with this stage: it is refilled next iteration
    }
    cp_wait<0>();

    pf_rows_out<D, NT>(a, tile.t0, hk, G, R, r0, c, o, mrow, lrow); // rows out (attn_pf.cuh)
}

extern "C" int cuda_pp_mode(void); // gemm.cu: SPARKD_PP's bits (round 9 pp; 8: the snake order above)
template <int D>
static int attn_pf_launch(const cuda_attn_args *a, void *stream, err *e) {
    static bool attr = false;
    static int sms = 0;
    if (!attr) {
        CUDA_TRY(cudaFuncSetAttribute(attn_pf_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, pf_smem<D>::TOTAL));
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            sms = 0;
        attr = true;
    }
    const long n = (long)a->n_tiles * a->n_kv;
    const int order = (cuda_pp_mode() & 8) && a->n_split == 1 && sms > 0 && n > sms && n <= 3L * sms ? sms : 0;
    CUDA_TRY(cuda_launch(attn_pf_kernel<D>, dim3((unsigned)a->n_tiles, (unsigned)a->n_kv, (unsigned)a->n_split),
                         dim3(PF_WARPS * 32), (size_t)pf_smem<D>::TOTAL, stream, *a, order));
    return 0;
}

extern "C" int cuda_apf_takes(const cuda_attn_args *a);                     // apf.cu (round 10): SPARKD_APF, fast
extern "C" int cuda_apf_launch(const cuda_attn_args *a, void *stream, err *e); // apf.cu: -1 = not taken
extern "C" int cuda_attention(const cuda_attn_args *a, void *stream, err *e) {
    if (!a || !a->q || !a->out || !a->tiles || a->n_tiles < 1 || a->n_tiles > 65535 || a->n_head < 1 ||
        a->n_kv < 1 || a->n_head % a->n_kv || a->head_dim < 8 || a->head_dim > ATT_DMAX || a->head_dim % 8 ||
        a->kv_block < 1 || !a->kv.k || !a->kv.v || a->kv_type < 0 || a->kv_type > CUDA_KV_FP8 || a->n_split < 1 ||
        a->n_split > 1024 || (a->n_split > 1 && !a->work) ||
        ((a->kv_type == CUDA_KV_Q8 || a->kv_type == CUDA_KV_FP8) && (!a->kv.k_scale || !a->kv.v_scale)))
        return err_set(e, ERR_INVALID, "cuda_attention: bad arguments (heads %d/%d, head_dim %d, split %d)",
                       a ? a->n_head : 0, a ? a->n_kv : 0, a ? a->head_dim : 0, a ? a->n_split : 0);
    if (a->out_q8 && (!a->plan || a->out_p64 || !a->out_q8d || !a->out_q8s || a->head_dim % 32 || a->ldo != a->n_head * a->head_dim))
        return err_set(e, ERR_INVALID, "cuda_attention: the int8 output needs the decode plan and rows of n_head * head_dim");
    if (a->plan) {
        if (!cuda_attn_dec_ok(a->n_head, a->n_kv, a->head_dim, a->kv_type) || a->plan_items < 1 || !a->plan_nslot ||
            !a->work || a->plan_nsl < 1 || a->plan_nsl > 64 || a->n_kv > 65535)
            return err_set(e, ERR_INVALID, "cuda_attention: bad decode plan (items %d, slots %d)", a->plan_items, a->plan_nsl);
        return a->head_dim == 64 ? attn_dec_launch<64>(a, stream, e) : attn_dec_launch<128>(a, stream, e);
    }
    att_params P;
    P.a = *a;
    if (a->prefill) {
        if (!cuda_attn_pf_ok(a->n_head, a->n_kv, a->head_dim, a->kv_type) || a->n_kv > 65535 || a->n_split > 65535)
            return err_set(e, ERR_INVALID, "cuda_attention: bad prefill shape (heads %d/%d, head_dim %d, kv %d)",
                           a->n_head, a->n_kv, a->head_dim, a->kv_type);
        int rc = cuda_apf_takes(a) ? cuda_apf_launch(a, stream, e) : -1; // round 10 apf (apf.cu): precision fast, SPARKD_APF
        if (rc == -1) rc = a->head_dim == 64 ? attn_pf_launch<64>(a, stream, e) : attn_pf_launch<128>(a, stream, e);
        if (rc || a->n_split == 1) return rc;
        CUDA_TRY(cuda_launch(attn_combine_kernel, dim3((unsigned)a->n_tiles, (unsigned)a->n_head), dim3(128), 0, stream, P));
        return 0;
    }
    P.G = a->n_head / a->n_kv;
    P.Gc = P.G < ATT_ROWS ? P.G : ATT_ROWS;
    P.hsplit = (P.G + ATT_ROWS - 1) / ATT_ROWS;
    P.QT = cuda_attn_tile_tokens(P.G);
    dim3 grid((unsigned)a->n_tiles, (unsigned)(a->n_kv * P.hsplit), (unsigned)a->n_split);
    const size_t smem = (size_t)(ATT_ROWS * a->head_dim + ATT_WARPS * ATT_R * (a->head_dim + 2)) * 4;
    int rc = 0;
    switch (a->kv_type) {
    case CUDA_KV_F32: rc = attn_launch<CUDA_KV_F32>(P, grid, smem, stream, e); break;
    case CUDA_KV_F16: rc = attn_launch<CUDA_KV_F16>(P, grid, smem, stream, e); break;
    case CUDA_KV_BF16: rc = attn_launch<CUDA_KV_BF16>(P, grid, smem, stream, e); break;
    case CUDA_KV_Q8: rc = attn_launch<CUDA_KV_Q8>(P, grid, smem, stream, e); break;
    default: rc = attn_launch<CUDA_KV_FP8>(P, grid, smem, stream, e); break;
    }
    if (rc || a->n_split == 1) return rc;
    CUDA_TRY(cuda_launch(attn_combine_kernel, dim3((unsigned)a->n_tiles, (unsigned)a->n_head), dim3(128), 0, stream, P));
    return 0;
}
