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

#include "kern_util.cuh"

#define ATT_WARPS 4
#define ATT_R 8      // rows per warp (max)
#define ATT_ROWS 32  // rows per CTA (max)
#define ATT_DMAX 256
#define V_ILP 8      // V rows in flight per P.V step

// Where element e of a row goes in the P64 order of an mm input (cuda_kern.h).
__device__ __forceinline__ size_t p64_at(int e) { return (size_t)(e & ~63) + inv_perm64(e & 63); }

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
    static bool attr = false;
    if (!attr) {
        CUDA_TRY(cudaFuncSetAttribute(attn_kernel<KV>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      (ATT_ROWS * ATT_DMAX + ATT_WARPS * ATT_R * (ATT_DMAX + 2)) * 4));
        attr = true;
    }
    CUDA_TRY(cuda_launch(attn_kernel<KV>, grid, dim3(ATT_WARPS * 32), smem, stream, P));
    return 0;
}

extern "C" int cuda_attention(const cuda_attn_args *a, void *stream, err *e) {
    if (!a || !a->q || !a->out || !a->tiles || a->n_tiles < 1 || a->n_tiles > 65535 || a->n_head < 1 ||
        a->n_kv < 1 || a->n_head % a->n_kv || a->head_dim < 8 || a->head_dim > ATT_DMAX || a->head_dim % 8 ||
        a->kv_block < 1 || !a->kv.k || !a->kv.v || a->kv_type < 0 || a->kv_type > CUDA_KV_FP8 || a->n_split < 1 ||
        a->n_split > 1024 || (a->n_split > 1 && !a->work) ||
        ((a->kv_type == CUDA_KV_Q8 || a->kv_type == CUDA_KV_FP8) && (!a->kv.k_scale || !a->kv.v_scale)))
        return err_set(e, ERR_INVALID, "cuda_attention: bad arguments (heads %d/%d, head_dim %d, split %d)",
                       a ? a->n_head : 0, a ? a->n_kv : 0, a ? a->head_dim : 0, a ? a->n_split : 0);
    att_params P;
    P.a = *a;
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
