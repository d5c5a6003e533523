// dq.cu — round 10, helper dq: the batch-1 decode attention chain (q / k norm + RoPE + KV store,
// attention, split merge) in one launch. Contract in dq.h.
//
// Why: at batch 1 on an H200 (round 9 base profile, ~515 positions, ncu) a layer's chain was
// qkv_kernel 5.2 us + attn_dec3_kernel 12.6 us (grid 35 x 8, 254 registers, ~5 x 8 CTAs with
// work) + attn_dec_combine_u 4.1 us: 22 us a layer, ~790 us of a ~3.0 ms token, nearly all of it
// fixed latency (2 MB of KV a layer is 0.5 us at the probe).
//
// grid (splits, n_kv), 4 warps. Every CTA of KV head h:
//   1. (before pdl_wait: the norm weights and inverse frequencies, which no kernel writes; the
//      position and block table, which only the host writes) after the wait issues its first
//      tile's K / V loads, then normalizes / rotates its G q heads and the head's k from the raw
//      GEMV rows (bias, RMS norm, RoPE: qkv_kernel's arithmetic), rounds k and v to f16; CTA 0
//      stores them into the cache at pos. No CTA reads position pos from the cache: the CTA
//      whose range holds it takes its K / V row from shared memory (so no ordering is needed).
//   2. walks its range [r0, r1) of positions in tiles of 32, tile i by warp i % 4: lane j holds
//      the K row of position tile + j (16 x 16-byte loads) and scores it against the G q rows
//      (f32 FMAs, q in shared memory as broadcasts), online softmax per head (log2 units: scale
//      * log2 e folded into q), P.V with lane j owning dims 4 j .. 4 j + 3 of every head (the
//      tile's 32 V rows loaded 8 bytes a lane, all in flight with the K loads).
//   3. merges its 4 warps in shared memory; one active CTA writes the output row itself, else
//      each writes a partial (o, max, sum) to work, and the last CTA of the head to finish (an
//      atomic ticket after __threadfence, reset by that CTA) merges them, adds the sink and
//      writes Wo's f32 input (P64 order when out_p64).
// SPARKD_DQ_PRE=1 (off by default): the first tile's K / V loads before pdl_wait (see there).
// SPARKD_DQB (round 12, default 4; 0 = today exactly): 4 dqc_kernel (see there) with its first step's K / V
// loads before pdl_wait (3, its cluster merge, lost in the model and was removed in round 13: 3 reads as 4); 1 dq_kernel with the first tile's K / V loads before
// pdl_wait (SPARKD_DQ_PRE's path; the pre-wait loads are on with SPARKD_DQB != 0 unless SPARKD_DQ_PRE=0).
// SPARKD_DQM (round 13, default 2; 0 = dqc_kernel exactly): with SPARKD_DQB=4, dqm_kernel (see there) instead of
// dqc_kernel: 2 on 16 warps, 1 on 8 warps with two K / V buffers a warp; SPARKD_DQM_CHUNK (default 64) its positions a
// CTA at least (twice that on 16 warps).
// SPARKD_DQ_PIPE=0: no loads of the next tile during this one's work (see dq_kernel).
// Each CTA takes chunk = max(SPARKD_DQ_CHUNK, ceil(n / splits) rounded up to 32) positions, so
// the grid is fixed for a CUDA graph replayed at any context; CTAs past the context exit before
// the wait.
#include "cuda.h"
#include "cuda_kern.h"
#include "dq.h"

#include <cooperative_groups.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern_util.cuh"

#define DQ_D 128     // head_dim
#define DQ_WARPS 4
#define DQ_TILE 32   // positions a warp step (one a lane)
#define DQ_SPLITS_MAX 64
#define DQ_KV_MAX 256 // KV heads the ticket array holds
// The engine's default context limit for the chain (SPARKD_DQ_CTX): GPU run 0 (H200, one layer,
// per call of 10, PDL): 512 positions 15.44 -> 14.09 us, 4096 20.23 -> 22.02, 32768 46.98 -> 74.94
// (the f32 FMA step of a lone warp is latency-bound: one CTA of 4101 positions took 150 us);
// whole model b1 at ~540: Q8_0 +6.8%, Q4_K_M +15.9%; 32K b1 -26%.
#define DQ_CTX_DEFAULT 2048

// (head, ticket): the CTAs of a head that finished this launch; zero at module load, and reset
// to zero by the head's last CTA (one array a device: launches on one device are serialized)
__device__ unsigned dq_ticket[DQ_KV_MAX];

struct dq_params {
    const float *q, *k, *v;        // raw GEMV rows of the token: (n_head * D), (n_kv * D), (n_kv * D) f32
    const float *bq, *bk, *bv;     // biases (same shapes) or NULL
    const float *q_norm, *k_norm;  // (D) f32 RMS norm weights or NULL
    float eps;
    const float *inv_freq;         // (n_rot / 2) f32
    int n_rot, neox;
    float mscale;
    int n_head, n_kv;
    __half *kc, *vc;               // cache pools: elem(b, h, o, d) at ((b * n_kv + h) * kv_block + o) * D + d
    int kv_block;
    const int32_t *pos, *seq, *bt; // (1), (1), (n_seq, max_blocks)
    int max_blocks;
    float scale;                   // multiplier of q.k
    int window;                    // 0: full causal
    const float *sinks;            // (n_head) or NULL
    float *work;                   // partials: (n_kv, splits, G, D + 2) f32: o[D], max (log2), sum
    float *out;                    // (n_head * D) f32, P64 order when out_p64
    int out_p64;
    int splits, chunk;
    int ctl;                       // bit 0: SPARKD_DQ_PRE=1 (see the kernel)
    long long *prof;               // (dqc_kernel<.., PROF> only: the kbench's phase clocks) (n_kv * DQB_C, 8)
};

__device__ __forceinline__ float dq_ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
// Head hh's output element tid from its merged state: o (the weighted V sum), l (the weight sum)
// and mc (their max, log2 units), with the head's attention sink folded in when the model has one.
__device__ __forceinline__ void dq_out(const dq_params &a, int hh, int tid, float o, float l, float mc) {
    if (a.sinks) {
        const float sk = a.sinks[hh] * 1.4426950408889634f, m2 = fmaxf(mc, sk);
        const float rr = mc == -INFINITY ? 0.0f : dq_ex2(mc - m2);
        o *= rr;
        l = l * rr + dq_ex2(sk - m2);
    }
    const int e = hh * DQ_D + tid;
    a.out[a.out_p64 ? p64_at(e) : (size_t)e] = l > 0.0f ? o / l : 0.0f;
}

// The cache row of position p of KV head kvh (0 when p >= r1: not loaded).
__device__ __forceinline__ size_t dq_row(const dq_params &a, int kvh, int seq, int p, int r1) {
    if (p >= r1) return 0;
    const int32_t blk = a.bt[(size_t)seq * a.max_blocks + p / a.kv_block];
    return ((size_t)blk * a.n_kv + kvh) * a.kv_block + p % a.kv_block;
}
// K row (16 x uint4) of position tb + lane (row: its cache row) and V slices (32 x uint2: dims
// 4 lane.. of the tile's 32 rows) of the tile at tb; positions >= r1 and position pos (from
// shared memory later) as zeros.
__device__ __forceinline__ void dq_load_k(const dq_params &a, size_t row, int pos, int tb, int r1, int lane, uint4 *kk) {
    const int p = tb + lane;
    const bool live = p < r1 && p != pos;
    const uint4 *kr = (const uint4 *)(a.kc + row * DQ_D);
#pragma unroll
    for (int i = 0; i < DQ_D / 8; i++) kk[i] = live ? kr[i] : make_uint4(0, 0, 0, 0);
}
__device__ __forceinline__ void dq_load_v(const dq_params &a, size_t row, int pos, int tb, int r1, int lane, uint2 *vv) {
#pragma unroll
    for (int j = 0; j < DQ_TILE; j++) {
        const size_t rj = __shfl_sync(0xffffffffu, row, j);
        const int pj = tb + j;
        vv[j] = pj < r1 && pj != pos ? *(const uint2 *)(a.vc + rj * DQ_D + 4 * lane) : make_uint2(0, 0);
    }
}
__device__ __forceinline__ void dq_load_rows(const dq_params &a, size_t row, int pos, int tb, int r1, int lane, uint4 *kk,
                                             uint2 *vv) {
    dq_load_k(a, row, pos, tb, r1, lane, kk);
    dq_load_v(a, row, pos, tb, r1, lane, vv);
}

// PIPE (SPARKD_DQ_PIPE, default 1): the next tile's K loads issued right after this tile's Q.K, its
// V loads right after this tile's P.V (the registers just freed): a warp keeps ~8 KB in flight
// while it computes, instead of none (0: each tile's loads at the top of its step).
template <int G, bool PIPE>
__global__ __launch_bounds__(DQ_WARPS * 32, 2) void dq_kernel(const dq_params a) {
    __shared__ __align__(16) float qs[G][DQ_D];        // q rows: normed, rotated, * scale * log2 e
    __shared__ __align__(16) float raw[G + 2][DQ_D];   // q heads, k, v of the token during step 1
    __shared__ __align__(16) __half kn[DQ_D], vn[DQ_D]; // the new K / V row (f16, as the cache holds it)
    __shared__ __align__(16) float nq[DQ_D], nk[DQ_D]; // norm weights
    __shared__ __align__(16) float ps[DQ_WARPS][G][DQ_TILE]; // a warp's tile probabilities
    __shared__ __align__(16) float mo[DQ_WARPS][G][DQ_D];    // warps' partial outputs
    __shared__ float mm[DQ_WARPS][G], ml[DQ_WARPS][G];
    __shared__ int s_last;
    pdl_trigger();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int kvh = blockIdx.y, split = blockIdx.x;
    // (host-written metadata: before the wait)
    const int pos = a.pos[0], seq = a.seq[0];
    const int lo = a.window > 0 && pos - a.window + 1 > 0 ? pos - a.window + 1 : 0;
    const int n = pos + 1 - lo;
    int chunk = (n + a.splits - 1) / a.splits;
    chunk = (chunk + DQ_TILE - 1) / DQ_TILE * DQ_TILE;
    if (chunk < a.chunk) chunk = a.chunk;
    const int nact = (n + chunk - 1) / chunk;
    if (split >= nact) return;
    const int r0 = lo + split * chunk, r1 = r0 + chunk < pos + 1 ? r0 + chunk : pos + 1;
    // weights (no kernel writes them): before the wait
    nq[tid] = a.q_norm ? a.q_norm[tid] : 1.0f;
    nk[tid] = a.k_norm ? a.k_norm[tid] : 1.0f;
    const int half = a.n_rot / 2;
    const int ip = tid & 63; // this thread's rotation pair
    const float ifr = ip < half ? a.inv_freq[ip] : 0.0f;
    int tb = r0 + warp * DQ_TILE;
    const size_t row0 = dq_row(a, kvh, seq, tb + lane, r1); // (the block table: host data)
    uint4 kk[DQ_D / 8];
    uint2 vv[DQ_TILE];
    // ctl bit 0 (SPARKD_DQ_PRE=1): the first tile's K / V before the wait: positions < pos, which
    // only earlier steps wrote (the engine synchronizes every step); off: after it (the rule)
    if ((a.ctl & 1) && tb < r1) dq_load_rows(a, row0, pos, tb, r1, lane, kk, vv);
    pdl_wait();
    if (!(a.ctl & 1) && tb < r1) dq_load_rows(a, row0, pos, tb, r1, lane, kk, vv);
    __syncthreads(); // (nq / nk)
    // ---- step 1: the token's q heads, k and v of this KV head
    for (int r = warp; r < G + 2; r += DQ_WARPS) {
        const float *src = r < G ? a.q + (size_t)(kvh * G + r) * DQ_D : (r == G ? a.k : a.v) + (size_t)kvh * DQ_D;
        const float *bias = r < G ? a.bq : r == G ? a.bk : a.bv;
        const size_t boff = r < G ? (size_t)(kvh * G + r) * DQ_D : (size_t)kvh * DQ_D;
        float4 x = *(const float4 *)(src + 4 * lane);
        if (bias) {
            const float4 b = *(const float4 *)(bias + boff + 4 * lane);
            x.x += b.x; x.y += b.y; x.z += b.z; x.w += b.w;
        }
        const bool norm = r < G ? a.q_norm != NULL : r == G ? a.k_norm != NULL : false;
        if (norm) {
            const float ss = warp_sum(x.x * x.x + x.y * x.y + x.z * x.z + x.w * x.w);
            const float rr = 1.0f / sqrtf(ss / (float)DQ_D + a.eps);
            const float *nw = r < G ? nq : nk;
            x.x = x.x * rr * nw[4 * lane]; x.y = x.y * rr * nw[4 * lane + 1];
            x.z = x.z * rr * nw[4 * lane + 2]; x.w = x.w * rr * nw[4 * lane + 3];
        }
        *(float4 *)&raw[r][4 * lane] = x;
    }
    __syncthreads();
    if (ip < half) {
        float sn, cs;
        sincosf((float)pos * ifr, &sn, &cs);
        cs *= a.mscale;
        sn *= a.mscale;
        const int ia = a.neox ? ip : 2 * ip, ib = a.neox ? ip + half : 2 * ip + 1;
        for (int r = tid >> 6; r <= G; r += DQ_WARPS * 32 / 64) {
            const float x0 = raw[r][ia], x1 = raw[r][ib];
            raw[r][ia] = x0 * cs - x1 * sn;
            raw[r][ib] = x0 * sn + x1 * cs;
        }
    }
    __syncthreads();
    const float qscale = a.scale * 1.4426950408889634f;
#pragma unroll
    for (int h = 0; h < G; h++) qs[h][tid] = raw[h][tid] * qscale;
    const __half kh = __float2half_rn(raw[G][tid]), vh = __float2half_rn(raw[G + 1][tid]);
    kn[tid] = kh;
    vn[tid] = vh;
    if (split == 0) {
        const int32_t blk = a.bt[(size_t)seq * a.max_blocks + pos / a.kv_block];
        const size_t row = ((size_t)blk * a.n_kv + kvh) * a.kv_block + pos % a.kv_block;
        a.kc[row * DQ_D + tid] = kh;
        a.vc[row * DQ_D + tid] = vh;
    }
    __syncthreads();
    // ---- step 2: the range, tiles of 32 positions, tile i by warp i % 4
    float M[G], Ls[G], acc[G][4];
#pragma unroll
    for (int h = 0; h < G; h++) {
        M[h] = -INFINITY;
        Ls[h] = 0.0f;
        acc[h][0] = acc[h][1] = acc[h][2] = acc[h][3] = 0.0f;
    }
    for (; tb < r1; tb += DQ_WARPS * DQ_TILE) {
        const int tbn = tb + DQ_WARPS * DQ_TILE; // (this warp's next tile)
        size_t rown = 0;
        if (!PIPE && tb != r0 + warp * DQ_TILE) dq_load_rows(a, dq_row(a, kvh, seq, tb + lane, r1), pos, tb, r1, lane, kk, vv);
        if (PIPE) rown = dq_row(a, kvh, seq, tbn + lane, r1); // (its block-table load under this tile's work)
        if (tb <= pos && pos < tb + DQ_TILE) { // (uniform: the tile holding the new position)
            if (tb + lane == pos) {
#pragma unroll
                for (int i = 0; i < DQ_D / 8; i++) kk[i] = ((const uint4 *)kn)[i];
            }
#pragma unroll
            for (int j = 0; j < DQ_TILE; j++)
                if (tb + j == pos) vv[j] = ((const uint2 *)vn)[lane];
        }
        const bool live = tb + lane < r1;
        float s[G], s2[G]; // (two sums a head: dependent chains of 64 FMAs instead of 128)
#pragma unroll
        for (int h = 0; h < G; h++) s[h] = 0.0f, s2[h] = 0.0f;
#pragma unroll
        for (int i = 0; i < DQ_D / 8; i++) {
            const __half2 *k2 = (const __half2 *)&kk[i];
            float kf[8];
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const float2 f = __half22float2(k2[c]);
                kf[2 * c] = f.x;
                kf[2 * c + 1] = f.y;
            }
#pragma unroll
            for (int h = 0; h < G; h++) {
                const float4 q0 = *(const float4 *)&qs[h][8 * i], q1 = *(const float4 *)&qs[h][8 * i + 4];
                s[h] = fmaf(q0.w, kf[3], fmaf(q0.z, kf[2], fmaf(q0.y, kf[1], fmaf(q0.x, kf[0], s[h]))));
                s2[h] = fmaf(q1.w, kf[7], fmaf(q1.z, kf[6], fmaf(q1.y, kf[5], fmaf(q1.x, kf[4], s2[h]))));
            }
        }
        if (PIPE && tbn < r1) dq_load_k(a, rown, pos, tbn, r1, lane, kk);
#pragma unroll
        for (int h = 0; h < G; h++) {
            const float sc = live ? s[h] + s2[h] : -INFINITY;
            const float mt = warp_max(sc), mn = fmaxf(M[h], mt);
            const float fac = dq_ex2(M[h] - mn); // (M = -inf: 0)
            const float p = dq_ex2(sc - mn);
            Ls[h] = Ls[h] * fac + p;
            acc[h][0] *= fac; acc[h][1] *= fac; acc[h][2] *= fac; acc[h][3] *= fac;
            M[h] = mn;
            ps[warp][h][lane] = p;
        }
        __syncwarp();
#pragma unroll
        for (int j4 = 0; j4 < DQ_TILE / 4; j4++) {
            float4 P[G];
#pragma unroll
            for (int h = 0; h < G; h++) P[h] = *(const float4 *)&ps[warp][h][4 * j4];
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const __half2 *v2 = (const __half2 *)&vv[4 * j4 + c];
                const float2 va = __half22float2(v2[0]), vb = __half22float2(v2[1]);
#pragma unroll
                for (int h = 0; h < G; h++) {
                    const float pw = c == 0 ? P[h].x : c == 1 ? P[h].y : c == 2 ? P[h].z : P[h].w;
                    acc[h][0] += pw * va.x; acc[h][1] += pw * va.y; acc[h][2] += pw * vb.x; acc[h][3] += pw * vb.y;
                }
            }
        }
        __syncwarp();
        if (PIPE && tbn < r1) dq_load_v(a, rown, pos, tbn, r1, lane, vv);
    }
    // ---- step 3: the warps' partials -> the CTA's, then the head's
#pragma unroll
    for (int h = 0; h < G; h++) {
        const float l = warp_sum(Ls[h]);
        if (lane == 0) mm[warp][h] = M[h], ml[warp][h] = l;
        *(float4 *)&mo[warp][h][4 * lane] = make_float4(acc[h][0], acc[h][1], acc[h][2], acc[h][3]);
    }
    __syncthreads();
    float *part = a.work + ((size_t)kvh * a.splits + split) * G * (DQ_D + 2);
#pragma unroll
    for (int h = 0; h < G; h++) {
        float mc = -INFINITY;
#pragma unroll
        for (int w = 0; w < DQ_WARPS; w++) mc = fmaxf(mc, mm[w][h]);
        float o = 0.0f, l = 0.0f;
#pragma unroll
        for (int w = 0; w < DQ_WARPS; w++) {
            const float wt = mm[w][h] == -INFINITY ? 0.0f : dq_ex2(mm[w][h] - mc);
            o += wt * mo[w][h][tid];
            l += wt * ml[w][h];
        }
        if (nact == 1) {
            dq_out(a, kvh * G + h, tid, o, l, mc);
        } else {
            float *ph = part + (size_t)h * (DQ_D + 2);
            ph[tid] = o;
            if (tid == 0) ph[DQ_D] = mc, ph[DQ_D + 1] = l;
        }
    }
    if (nact == 1) return;
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        const unsigned t = atomicAdd(&dq_ticket[kvh], 1u);
        s_last = t == (unsigned)nact - 1;
        if (s_last) atomicExch(&dq_ticket[kvh], 0u); // (for the next launch)
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    // the head's nact partials, 8 splits a round for all G heads (every load of a round
    // independent: nact <= 8 is one L2 round trip), merged online (log2 units)
    const float *base = a.work + (size_t)kvh * a.splits * G * (DQ_D + 2);
    float Mh[G], Lh[G], Oh[G];
#pragma unroll
    for (int h = 0; h < G; h++) Mh[h] = -INFINITY, Lh[h] = 0.0f, Oh[h] = 0.0f;
    for (int s0 = 0; s0 < nact; s0 += 8) {
        float m[G][8], l[G][8], x[G][8];
#pragma unroll
        for (int h = 0; h < G; h++)
#pragma unroll
            for (int u = 0; u < 8; u++) {
                const bool in = s0 + u < nact;
                const float *ph = base + ((size_t)(s0 + u) * G + h) * (DQ_D + 2);
                m[h][u] = in ? __ldcg(ph + DQ_D) : -INFINITY;
                l[h][u] = in ? __ldcg(ph + DQ_D + 1) : 0.0f;
                x[h][u] = in ? __ldcg(ph + tid) : 0.0f;
            }
#pragma unroll
        for (int h = 0; h < G; h++) {
            float cm = Mh[h];
#pragma unroll
            for (int u = 0; u < 8; u++) cm = fmaxf(cm, m[h][u]);
            if (cm == -INFINITY) continue;
            const float r = Mh[h] == -INFINITY ? 0.0f : dq_ex2(Mh[h] - cm);
            Oh[h] *= r;
            Lh[h] *= r;
#pragma unroll
            for (int u = 0; u < 8; u++) {
                const float w = m[h][u] == -INFINITY ? 0.0f : dq_ex2(m[h][u] - cm);
                Oh[h] += w * x[h][u];
                Lh[h] += w * l[h][u];
            }
            Mh[h] = cm;
        }
    }
#pragma unroll
    for (int h = 0; h < G; h++) {
        dq_out(a, kvh * G + h, tid, Oh[h], Lh[h], Mh[h]);
    }
}

// ---- SPARKD_DQB (round 12, helper dqb). 4 (default): dqc_kernel below (finer split, dq's ticket merge);
// 3: the same merged over a thread-block cluster; 1: dq_kernel with its first tile's K / V loads before
// pdl_wait (SPARKD_DQ_PRE's path; safe: see dq_kernel and PERF.md "Round 12, helper dqb"). 0 = today.
// Run 0's cluster version of dq_kernel (dqb_kernel, modes 1 and 2) lost in the model and is gone.
#define DQB_C 8 // dqc_kernel: CTAs a KV head at most (the cluster's portable size)

__device__ __forceinline__ void dqb_cluster_arrive_relaxed() {
    asm volatile("barrier.cluster.arrive.relaxed;\n" ::: "memory");
}
__device__ __forceinline__ void dqb_cluster_arrive_release() {
    asm volatile("barrier.cluster.arrive.release;\n" ::: "memory");
}
__device__ __forceinline__ void dqb_cluster_wait() {
    asm volatile("barrier.cluster.wait.acquire;\n" ::: "memory");
}

// PROF (the kbench only: cuda_dqb_prof_set, mode 4): thread 0 of each CTA writes to a.prof[(kvh * DQB_C + split) * 8 + k]
// k = 0 the globaltimer (ns) at entry, then the SM clocks since entry at 1 after pdl_wait, 2 the q / k / v rows normed,
// 3 RoPE and the KV store done, 4 warp 0's steps done, 5 the CTA's warps merged, 6 the partial written and the ticket
// taken (the merging CTA: the merge done), 7 the end; -1 where not reached (CTAs past the context exit first).
#define DQB_STAMP(k)                                                                                  \
    do {                                                                                              \
        if (PROF && tid == 0) a.prof[((size_t)kvh * DQB_C + split) * 8 + (k)] = clock64() - prof_t0; \
    } while (0)

// ---- SPARKD_DQB=3 / 4 (round 12, helper dqb): dqc_kernel, a finer split of the positions.
// Why: dq_kernel gives a warp a tile of 32 positions with a lane a position: ~1.4k instructions a tile (1,024 FMAs a lane for 4 heads), one tile a warp at 128 positions a CTA, at ~1 warp a
// scheduler: ~1-1.5 us of a launch in the tile alone, whatever the context below ~1K. Here a CTA has 8 warps,
// a warp takes 8 positions a step with 4 lanes a position (lane = position j = lane / 4 and a quarter of the
// dims: 16-byte chunks 4 i + lane % 4, i < 4), the 4 lanes' partial dots summed by 2 shuffles; P.V as before
// (lane = 4 dims of every head, the step's 8 V rows coalesced). Chunk = max(SPARKD_DQC_CHUNK (default 64),
// n / 8) rounded up to 8: at 512 positions 8 CTAs x 8 warps x one step of 8 (~0.5k instructions a warp).
// The CTAs of a head merge (CL, mode 3) over a cluster of 8 through distributed shared memory (rank 0), or
// (mode 4) as dq_kernel: partials in work, the last CTA by an atomic ticket. Run 0: the cluster merge of
// dq_kernel's tiles (then mode 1) lost ~1.3% in the model though the kernel bench said -1..-2 us a launch.
#define DQC_WARPS 8
#define DQC_T 8 // positions a warp step (4 lanes a position)

// The K chunks (4 x 16 bytes: dims 8 (4 i + lane % 4) ..) of position tb + lane / 4 and the V slices (8 x
// 8 bytes: dims 4 lane ..) of the step's 8 positions; positions >= r1 and pos as zeros. row: the cache row of
// position tb + lane / 4 (0 past r1).
__device__ __forceinline__ void dqc_load_k(const dq_params &a, size_t row, int pos, int tb, int r1, int lane, uint4 *kk) {
    const int p = tb + (lane >> 2);
    const bool live = p < r1 && p != pos;
    const uint4 *kr = (const uint4 *)(a.kc + row * DQ_D);
#pragma unroll
    for (int i = 0; i < 4; i++) kk[i] = live ? kr[4 * i + (lane & 3)] : make_uint4(0, 0, 0, 0);
}
__device__ __forceinline__ void dqc_load_v(const dq_params &a, size_t row, int pos, int tb, int r1, int lane, uint2 *vv) {
#pragma unroll
    for (int j = 0; j < DQC_T; j++) {
        const size_t rj = __shfl_sync(0xffffffffu, row, 4 * j);
        const int pj = tb + j;
        vv[j] = pj < r1 && pj != pos ? *(const uint2 *)(a.vc + rj * DQ_D + 4 * lane) : make_uint2(0, 0);
    }
}

template <int G, bool CL, bool PROF>
__global__ __launch_bounds__(DQC_WARPS * 32, 1) void dqc_kernel(const dq_params a) {
    __shared__ __align__(16) float qs[G][DQ_D];        // q rows: normed, rotated, * scale * log2 e
    __shared__ __align__(16) float raw[G + 2][DQ_D];   // q heads, k, v of the token during step 1
    __shared__ __align__(16) __half kn[DQ_D], vn[DQ_D]; // the new K / V row (f16, as the cache holds it)
    __shared__ __align__(16) float nq[DQ_D], nk[DQ_D]; // norm weights
    __shared__ __align__(16) float ps[DQC_WARPS][G][DQC_T]; // a warp's step probabilities
    __shared__ __align__(16) float mo[DQC_WARPS][G][DQ_D];  // warps' partial outputs
    __shared__ float mm[DQC_WARPS][G], ml[DQC_WARPS][G];
    __shared__ __align__(16) float pm[CL ? DQB_C : 1][G][DQ_D]; // (CL, rank 0) the cluster's CTA partial outputs, pushed there
    __shared__ float pl[CL ? DQB_C : 1][G][2];                  // (CL, rank 0) their max (log2) and weight sum
    __shared__ int s_last;
    const long long prof_t0 = PROF ? clock64() : 0;
    pdl_trigger();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int kvh = blockIdx.y, split = blockIdx.x; // (CL: split = the CTA's rank in its cluster)
    if (PROF && tid == 0) {
        long long gt;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(gt));
        a.prof[((size_t)kvh * DQB_C + split) * 8] = gt;
        for (int q = 1; q < 8; q++) a.prof[((size_t)kvh * DQB_C + split) * 8 + q] = -1;
    }
    // (host-written metadata: before the wait)
    const int pos = a.pos[0], seq = a.seq[0];
    const int lo = a.window > 0 && pos - a.window + 1 > 0 ? pos - a.window + 1 : 0;
    const int n = pos + 1 - lo;
    int chunk = (n + DQB_C - 1) / DQB_C;
    chunk = (chunk + DQC_T - 1) / DQC_T * DQC_T;
    if (chunk < a.chunk) chunk = a.chunk;
    const int nact = (n + chunk - 1) / chunk;
    if (split >= nact) return; // (CL: an exited thread counts as arrived at the cluster barrier)
    if (CL) dqb_cluster_arrive_relaxed(); // phase 1: this CTA has started
    const int r0 = lo + split * chunk, r1 = r0 + chunk < pos + 1 ? r0 + chunk : pos + 1;
    // weights (no kernel writes them): before the wait
    if (tid < DQ_D) {
        nq[tid] = a.q_norm ? a.q_norm[tid] : 1.0f;
        nk[tid] = a.k_norm ? a.k_norm[tid] : 1.0f;
    }
    const int half = a.n_rot / 2;
    const int ip = tid & 63; // (threads < 128) this thread's rotation pair
    const float ifr = ip < half ? a.inv_freq[ip] : 0.0f;
    const int jp = lane >> 2, qd = lane & 3; // this lane's position in a step, its quarter of the dims
    int tb = r0 + warp * DQC_T;
    const size_t row0 = dq_row(a, kvh, seq, tb + jp, r1); // (the block table: host data)
    uint4 kk[4];
    uint2 vv[DQC_T];
    // ctl bit 0 (SPARKD_DQ_PRE=1): the first step's K / V before the wait (positions < pos: earlier steps')
    if ((a.ctl & 1) && tb < r1) {
        dqc_load_k(a, row0, pos, tb, r1, lane, kk);
        dqc_load_v(a, row0, pos, tb, r1, lane, vv);
    }
    pdl_wait();
    DQB_STAMP(1);
    // ---- step 1: the token's q heads, k and v of this KV head (row = warp), loaded before the K / V step's
    float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    const int r = warp;
    if (r < G + 2) {
        const float *src = r < G ? a.q + (size_t)(kvh * G + r) * DQ_D : (r == G ? a.k : a.v) + (size_t)kvh * DQ_D;
        const float *bias = r < G ? a.bq : r == G ? a.bk : a.bv;
        const size_t boff = r < G ? (size_t)(kvh * G + r) * DQ_D : (size_t)kvh * DQ_D;
        x = *(const float4 *)(src + 4 * lane);
        if (bias) {
            const float4 b = *(const float4 *)(bias + boff + 4 * lane);
            x.x += b.x; x.y += b.y; x.z += b.z; x.w += b.w;
        }
    }
    if (!(a.ctl & 1) && tb < r1) {
        dqc_load_k(a, row0, pos, tb, r1, lane, kk);
        dqc_load_v(a, row0, pos, tb, r1, lane, vv);
    }
    __syncthreads(); // (nq / nk)
    if (r < G + 2) {
        const bool norm = r < G ? a.q_norm != NULL : r == G ? a.k_norm != NULL : false;
        if (norm) {
            const float ss = warp_sum(x.x * x.x + x.y * x.y + x.z * x.z + x.w * x.w);
            const float rr = 1.0f / sqrtf(ss / (float)DQ_D + a.eps);
            const float *nw = r < G ? nq : nk;
            x.x = x.x * rr * nw[4 * lane]; x.y = x.y * rr * nw[4 * lane + 1];
            x.z = x.z * rr * nw[4 * lane + 2]; x.w = x.w * rr * nw[4 * lane + 3];
        }
        *(float4 *)&raw[r][4 * lane] = x;
    }
    __syncthreads();
    DQB_STAMP(2);
    if (tid < DQ_D && ip < half) {
        float sn, cs;
        sincosf((float)pos * ifr, &sn, &cs);
        cs *= a.mscale;
        sn *= a.mscale;
        const int ia = a.neox ? ip : 2 * ip, ib = a.neox ? ip + half : 2 * ip + 1;
        for (int rr = tid >> 6; rr <= G; rr += DQ_D / 64) {
            const float x0 = raw[rr][ia], x1 = raw[rr][ib];
            raw[rr][ia] = x0 * cs - x1 * sn;
            raw[rr][ib] = x0 * sn + x1 * cs;
        }
    }
    __syncthreads();
    if (tid < DQ_D) {
        const float qscale = a.scale * 1.4426950408889634f;
#pragma unroll
        for (int h = 0; h < G; h++) qs[h][tid] = raw[h][tid] * qscale;
        const __half kh = __float2half_rn(raw[G][tid]), vh = __float2half_rn(raw[G + 1][tid]);
        kn[tid] = kh;
        vn[tid] = vh;
        if (split == 0) {
            const int32_t blk = a.bt[(size_t)seq * a.max_blocks + pos / a.kv_block];
            const size_t row = ((size_t)blk * a.n_kv + kvh) * a.kv_block + pos % a.kv_block;
            a.kc[row * DQ_D + tid] = kh;
            a.vc[row * DQ_D + tid] = vh;
        }
    }
    __syncthreads();
    DQB_STAMP(3);
    // ---- step 2: the range in steps of 8 positions, step i by warp i % 8
    float M[G], Ls[G], acc[G][4];
#pragma unroll
    for (int h = 0; h < G; h++) {
        M[h] = -INFINITY;
        Ls[h] = 0.0f;
        acc[h][0] = acc[h][1] = acc[h][2] = acc[h][3] = 0.0f;
    }
    for (; tb < r1; tb += DQC_WARPS * DQC_T) {
        const int tbn = tb + DQC_WARPS * DQC_T; // (this warp's next step)
        const size_t rown = dq_row(a, kvh, seq, tbn + jp, r1);
        if (tb <= pos && pos < tb + DQC_T) { // (uniform: the step holding the new position)
            if (tb + jp == pos) {
#pragma unroll
                for (int i = 0; i < 4; i++) kk[i] = ((const uint4 *)kn)[4 * i + qd];
            }
#pragma unroll
            for (int j = 0; j < DQC_T; j++)
                if (tb + j == pos) vv[j] = ((const uint2 *)vn)[lane];
        }
        const bool live = tb + jp < r1;
        float s[G], s2[G];
#pragma unroll
        for (int h = 0; h < G; h++) s[h] = 0.0f, s2[h] = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int c = 4 * i + qd; // (dims 8 c .. 8 c + 7)
            const __half2 *k2 = (const __half2 *)&kk[i];
            float kf[8];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float2 f = __half22float2(k2[e]);
                kf[2 * e] = f.x;
                kf[2 * e + 1] = f.y;
            }
#pragma unroll
            for (int h = 0; h < G; h++) {
                const float4 q0 = *(const float4 *)&qs[h][8 * c], q1 = *(const float4 *)&qs[h][8 * c + 4];
                s[h] = fmaf(q0.w, kf[3], fmaf(q0.z, kf[2], fmaf(q0.y, kf[1], fmaf(q0.x, kf[0], s[h]))));
                s2[h] = fmaf(q1.w, kf[7], fmaf(q1.z, kf[6], fmaf(q1.y, kf[5], fmaf(q1.x, kf[4], s2[h]))));
            }
        }
        if (tbn < r1) dqc_load_k(a, rown, pos, tbn, r1, lane, kk);
#pragma unroll
        for (int h = 0; h < G; h++) {
            float sc = s[h] + s2[h];
            sc += __shfl_xor_sync(0xffffffffu, sc, 1);
            sc += __shfl_xor_sync(0xffffffffu, sc, 2);
            sc = live ? sc : -INFINITY;
            const float mt = warp_max(sc), mn = fmaxf(M[h], mt);
            const float fac = dq_ex2(M[h] - mn); // (M = -inf: 0)
            const float p = dq_ex2(sc - mn);
            Ls[h] = Ls[h] * fac + (qd == 0 ? p : 0.0f); // (a position's 4 lanes: counted once)
            acc[h][0] *= fac; acc[h][1] *= fac; acc[h][2] *= fac; acc[h][3] *= fac;
            M[h] = mn;
            if (qd == 0) ps[warp][h][jp] = p;
        }
        __syncwarp();
#pragma unroll
        for (int j4 = 0; j4 < DQC_T / 4; j4++) {
            float4 P[G];
#pragma unroll
            for (int h = 0; h < G; h++) P[h] = *(const float4 *)&ps[warp][h][4 * j4];
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const __half2 *v2 = (const __half2 *)&vv[4 * j4 + c];
                const float2 va = __half22float2(v2[0]), vb = __half22float2(v2[1]);
#pragma unroll
                for (int h = 0; h < G; h++) {
                    const float pw = c == 0 ? P[h].x : c == 1 ? P[h].y : c == 2 ? P[h].z : P[h].w;
                    acc[h][0] += pw * va.x; acc[h][1] += pw * va.y; acc[h][2] += pw * vb.x; acc[h][3] += pw * vb.y;
                }
            }
        }
        __syncwarp();
        if (tbn < r1) dqc_load_v(a, rown, pos, tbn, r1, lane, vv);
    }
    // ---- step 3: the warps' partials -> the CTA's, then the head's (CL: rank 0 through the cluster; else dq's ticket)
    DQB_STAMP(4);
#pragma unroll
    for (int h = 0; h < G; h++) {
        const float l = warp_sum(Ls[h]);
        if (lane == 0) mm[warp][h] = M[h], ml[warp][h] = l;
        *(float4 *)&mo[warp][h][4 * lane] = make_float4(acc[h][0], acc[h][1], acc[h][2], acc[h][3]);
    }
    __syncthreads();
    DQB_STAMP(5);
    float O[G], L[G], MC[G];
    const int dd = tid & (DQ_D - 1); // (threads >= 128 repeat threads < 128's dims; only those write)
#pragma unroll
    for (int h = 0; h < G; h++) {
        float mc = -INFINITY;
#pragma unroll
        for (int w = 0; w < DQC_WARPS; w++) mc = fmaxf(mc, mm[w][h]);
        float o = 0.0f, l = 0.0f;
#pragma unroll
        for (int w = 0; w < DQC_WARPS; w++) {
            const float wt = mm[w][h] == -INFINITY ? 0.0f : dq_ex2(mm[w][h] - mc);
            o += wt * mo[w][h][dd];
            l += wt * ml[w][h];
        }
        O[h] = o, L[h] = l, MC[h] = mc;
    }
    if (nact == 1) {
        if (tid < DQ_D) {
#pragma unroll
            for (int h = 0; h < G; h++) dq_out(a, kvh * G + h, tid, O[h], L[h], MC[h]);
        }
        DQB_STAMP(7);
        return;
    }
    if (CL) {
        dqb_cluster_wait(); // (phase 1: every working CTA of the cluster has started)
        cooperative_groups::cluster_group cl = cooperative_groups::this_cluster();
        float *pm0 = cl.map_shared_rank(&pm[0][0][0], 0), *pl0 = cl.map_shared_rank(&pl[0][0][0], 0);
        if (tid < DQ_D) {
#pragma unroll
            for (int h = 0; h < G; h++) {
                pm0[((size_t)split * G + h) * DQ_D + tid] = O[h];
                if (tid == 0) pl0[(split * G + h) * 2] = MC[h], pl0[(split * G + h) * 2 + 1] = L[h];
            }
        }
        dqb_cluster_arrive_release();
        if (split != 0) return;
        dqb_cluster_wait();
        if (tid >= DQ_D) return;
#pragma unroll
        for (int h = 0; h < G; h++) {
            float cm = -INFINITY;
            for (int s = 0; s < nact; s++) cm = fmaxf(cm, pl[s][h][0]);
            float o = 0.0f, l = 0.0f;
            for (int s = 0; s < nact; s++) {
                const float w = pl[s][h][0] == -INFINITY ? 0.0f : dq_ex2(pl[s][h][0] - cm);
                o += w * pm[s][h][tid];
                l += w * pl[s][h][1];
            }
            dq_out(a, kvh * G + h, tid, o, l, cm);
        }
        return;
    }
    // dq_kernel's merge: partials (n_kv, DQB_C, G, D + 2) in work, the head's last CTA (atomic ticket after
    // __threadfence, reset by that CTA) merges them
    float *part = a.work + ((size_t)kvh * DQB_C + split) * G * (DQ_D + 2);
    if (tid < DQ_D) {
#pragma unroll
        for (int h = 0; h < G; h++) {
            float *ph = part + (size_t)h * (DQ_D + 2);
            ph[tid] = O[h];
            if (tid == 0) ph[DQ_D] = MC[h], ph[DQ_D + 1] = L[h];
        }
    }
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        const unsigned t = atomicAdd(&dq_ticket[kvh], 1u);
        s_last = t == (unsigned)nact - 1;
        if (s_last) atomicExch(&dq_ticket[kvh], 0u); // (for the next launch)
    }
    __syncthreads();
    DQB_STAMP(6);
    if (!s_last) {
        DQB_STAMP(7);
        return;
    }
    if (tid >= DQ_D) return;
    __threadfence();
    const float *base = a.work + (size_t)kvh * DQB_C * G * (DQ_D + 2);
    float m[G][DQB_C], l[G][DQB_C], xo[G][DQB_C]; // (every load of the merge independent: one L2 round trip)
#pragma unroll
    for (int h = 0; h < G; h++)
#pragma unroll
        for (int u = 0; u < DQB_C; u++) {
            const bool in = u < nact;
            const float *ph = base + ((size_t)u * G + h) * (DQ_D + 2);
            m[h][u] = in ? __ldcg(ph + DQ_D) : -INFINITY;
            l[h][u] = in ? __ldcg(ph + DQ_D + 1) : 0.0f;
            xo[h][u] = in ? __ldcg(ph + tid) : 0.0f;
        }
#pragma unroll
    for (int h = 0; h < G; h++) {
        float cm = -INFINITY;
#pragma unroll
        for (int u = 0; u < DQB_C; u++) cm = fmaxf(cm, m[h][u]);
        float o = 0.0f, ls = 0.0f;
#pragma unroll
        for (int u = 0; u < DQB_C; u++) {
            const float w = m[h][u] == -INFINITY ? 0.0f : dq_ex2(m[h][u] - cm);
            o += w * xo[h][u];
            ls += w * l[h][u];
        }
        dq_out(a, kvh * G + h, tid, o, ls, cm);
    }
    DQB_STAMP(7);
}

// ---- SPARKD_DQM (round 13, helper dqm; default 2 (16 warps), 0 = dqc_kernel exactly): dqm_kernel, dqc_kernel's steps with a
// shorter chain around them. Why (round 12 run 1, dqc's phase clocks, the latest working CTA at 512 positions):
// pdl_wait 1.93 us, q / k / v normed 2.54, RoPE + KV store 3.20, steps 5.51, CTA merge 5.68, ticket 6.86, end 9.03;
// the split merge (3.2-3.4 us whenever a head has > 1 CTA) is most of the step's growth above ~64 positions.
//   1. before pdl_wait, besides dqc's: each lane's norm weights, biases and RoPE inverse frequencies (its 4 dims,
//      registers; run 1: the sincosf moved after the wait, under the raw row's load: run 0's phase clocks had the
//      pre-wait part 0.4-0.8 us longer than dqc's with it there);
//   2. warp r < G + 2 holds row r (q heads, k, v) as 4 dims a lane: bias, norm, then RoPE in registers (neox: the
//      partner dims half / 4 lanes away, one shuffle a dim; else within the lane), and writes q to shared, the new
//      K / V row to shared and (split 0) to the cache: one __syncthreads between the wait and the steps (dqc: four);
//   3. the steps as dqc_kernel's, with DEPTH (2 for SPARKD_DQM=1) K / V register buffers a warp: a buffer is refilled
//      with the step DEPTH ahead (run 0: two buffers +2% after 1536 positions, where a warp has 3-4 steps);
//   4. the CTA's warps merged by all its threads (W = 8: a thread one dim of G / 2 heads; dqc: 128 threads, G heads);
//   5. the head's split merge with release / acquire instead of two fence.sc (MEMBAR.SC.GPU): partials stored,
//      __syncthreads, thread 0 atom.acq_rel.gpu on the ticket (release: the CTA's stores, ordered before it by the
//      barrier, are visible before the ticket moves; acquire: the last CTA sees every other CTA's partial),
//      __syncthreads, the partials read through L2 (the CUTLASS semaphore pattern).
// Chunk = max(SPARKD_DQM_CHUNK (default 64), n / 8) rounded up to 8, as dqc's (W = 16, SPARKD_DQM=2: twice that).
__device__ __forceinline__ unsigned dqm_ticket_add(unsigned *p) {
    unsigned t;
    asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;" : "=r"(t) : "l"(p) : "memory");
    return t;
}
__device__ __forceinline__ void dqm_ticket_reset(unsigned *p) {
    asm volatile("st.relaxed.gpu.global.u32 [%0], 0;" ::"l"(p) : "memory");
}

template <int G, int W, int DEPTH, bool PROF>
__global__ __launch_bounds__(W * 32, 1) void dqm_kernel(const dq_params a) {
    static_assert(G + 2 <= W && (G * DQ_D) % (W * 32) == 0, "dqm_kernel: a warp a row, W * 32 / D CTA parts of G heads");
    static_assert(DEPTH == 1 || DEPTH == 2, "dqm_kernel: one or two K / V buffers a warp");
    __shared__ __align__(16) float qs[G][DQ_D];        // q rows: normed, rotated, * scale * log2 e
    __shared__ __align__(16) __half kn[DQ_D], vn[DQ_D]; // the new K / V row (f16, as the cache holds it)
    __shared__ __align__(16) float ps[W][G][DQC_T]; // a warp's step probabilities
    __shared__ __align__(16) float mo[W][G][DQ_D];  // warps' partial outputs
    __shared__ float mm[W][G], ml[W][G];
    __shared__ int s_last;
    const long long prof_t0 = PROF ? clock64() : 0;
    pdl_trigger();
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int kvh = blockIdx.y, split = blockIdx.x;
    if (PROF && tid == 0) {
        long long gt;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(gt));
        a.prof[((size_t)kvh * DQB_C + split) * 8] = gt;
        for (int q = 1; q < 8; q++) a.prof[((size_t)kvh * DQB_C + split) * 8 + q] = -1;
    }
    // (host-written metadata: before the wait)
    const int pos = a.pos[0], seq = a.seq[0];
    const int lo = a.window > 0 && pos - a.window + 1 > 0 ? pos - a.window + 1 : 0;
    const int n = pos + 1 - lo;
    int chunk = (n + DQB_C - 1) / DQB_C;
    chunk = (chunk + DQC_T - 1) / DQC_T * DQC_T;
    if (chunk < a.chunk) chunk = a.chunk;
    const int nact = (n + chunk - 1) / chunk;
    if (split >= nact) return;
    const int r0 = lo + split * chunk, r1 = r0 + chunk < pos + 1 ? r0 + chunk : pos + 1;
    const int jp = lane >> 2, qd = lane & 3; // this lane's position in a step, its quarter of the dims
    int tb = r0 + warp * DQC_T;
    const size_t row0 = dq_row(a, kvh, seq, tb + jp, r1); // (the block table: host data)
    uint4 kk[4], kk2[4]; // (kk2 / vv2: DEPTH 2's second buffer; unused with DEPTH 1)
    uint2 vv[DQC_T], vv2[DQC_T];
    const int tb2 = tb + W * DQC_T; // (DEPTH 2: the second buffer's first step)
    const size_t row2 = DEPTH == 2 ? dq_row(a, kvh, seq, tb2 + jp, r1) : 0;
    // ctl bit 0 (SPARKD_DQ_PRE): the first step's (DEPTH 2: steps') K / V before the wait (positions < pos: earlier steps')
    if ((a.ctl & 1) && tb < r1) {
        dqc_load_k(a, row0, pos, tb, r1, lane, kk);
        dqc_load_v(a, row0, pos, tb, r1, lane, vv);
    }
    if (DEPTH == 2 && (a.ctl & 1) && tb2 < r1) {
        dqc_load_k(a, row2, pos, tb2, r1, lane, kk2);
        dqc_load_v(a, row2, pos, tb2, r1, lane, vv2);
    }
    // this warp's row r of the token (r < G: q head kvh * G + r, G: k, G + 1: v), dims 4 lane .. 4 lane + 3:
    // its norm weights and rotation (c, s; 1, 0 for dims RoPE leaves alone) before the wait (weights, pos)
    const int r = warp;
    const bool qrow = r < G, rot = r <= G;
    float4 nw = make_float4(1.0f, 1.0f, 1.0f, 1.0f), bw = make_float4(0.0f, 0.0f, 0.0f, 0.0f); // (norm weights, bias)
    const float *nsrc = qrow ? a.q_norm : r == G ? a.k_norm : NULL;
    const float *bias = qrow ? a.bq : r == G ? a.bk : a.bv;
    const size_t roff = qrow ? (size_t)(kvh * G + r) * DQ_D : (size_t)kvh * DQ_D; // (row r's offset in q / k / v)
    if (r < G + 2 && nsrc) nw = *(const float4 *)(nsrc + 4 * lane);
    if (r < G + 2 && bias) bw = *(const float4 *)(bias + roff + 4 * lane);
    const int half = a.n_rot / 2;
    // neox: dim d < half pairs with d + half (y = x c - x' s), half <= d < n_rot with d - half (y = x' s + x c);
    // half % 4 == 0 (cuda_dq_attention's test): a lane's 4 dims share the case, the partner lane is lane +- half / 4.
    // Else pairs (2 i, 2 i + 1), i < half: the lane's dims 0, 1 (rp0) and 2, 3 (rp1) each rotated or not.
    const bool first = 4 * lane < half, inrot = 4 * lane < a.n_rot;
    const bool rp0 = 4 * lane + 1 < a.n_rot, rp1 = 4 * lane + 3 < a.n_rot;
    // (the angles' inverse frequencies here; their sin / cos after the wait, under the x row's load)
    const bool rotl = r < G + 2 && rot && inrot; // (warp-uniform in r)
    float fr[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (rotl) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int d = 4 * lane + e;
            const int ip = a.neox ? (first ? d : d - half) : d >> 1;
            if (a.neox || ((e & 1) == 0 && (e == 0 ? rp0 : rp1))) fr[e] = a.inv_freq[ip];
        }
    }
    const int plane = a.neox && inrot ? (first ? lane + half / 4 : lane - half / 4) : lane;
    size_t newrow = 0; // (split 0) the cache row of pos
    if (split == 0) {
        const int32_t blk = a.bt[(size_t)seq * a.max_blocks + pos / a.kv_block];
        newrow = ((size_t)blk * a.n_kv + kvh) * a.kv_block + pos % a.kv_block;
    }
    pdl_wait();
    DQB_STAMP(1);
    // ---- step 1: bias, norm, RoPE of row r in registers; q / the new K / V row to shared, (split 0) K / V to the cache
    float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r < G + 2) x = *(const float4 *)((qrow ? a.q : r == G ? a.k : a.v) + roff + 4 * lane);
    float cs[4] = {1.0f, 1.0f, 1.0f, 1.0f}, sn[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (rotl) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            if (!a.neox && (e & 1)) { // (the pair's second dim: the same angle as e - 1)
                cs[e] = cs[e - 1], sn[e] = sn[e - 1];
                continue;
            }
            if (!a.neox && !(e == 0 ? rp0 : rp1)) continue;
            float s, c;
            sincosf((float)pos * fr[e], &s, &c);
            cs[e] = c * a.mscale;
            sn[e] = s * a.mscale;
        }
    }
    if (r < G + 2 && bias) x.x += bw.x, x.y += bw.y, x.z += bw.z, x.w += bw.w;
    if (!(a.ctl & 1) && tb < r1) {
        dqc_load_k(a, row0, pos, tb, r1, lane, kk);
        dqc_load_v(a, row0, pos, tb, r1, lane, vv);
    }
    if (DEPTH == 2 && !(a.ctl & 1) && tb2 < r1) {
        dqc_load_k(a, row2, pos, tb2, r1, lane, kk2);
        dqc_load_v(a, row2, pos, tb2, r1, lane, vv2);
    }
    if (r < G + 2) { // (warp-uniform)
        if (nsrc) {
            const float ss = warp_sum(x.x * x.x + x.y * x.y + x.z * x.z + x.w * x.w);
            const float rr = 1.0f / sqrtf(ss / (float)DQ_D + a.eps);
            x.x = x.x * rr * nw.x; x.y = x.y * rr * nw.y;
            x.z = x.z * rr * nw.z; x.w = x.w * rr * nw.w;
        }
        if (rot) {
            if (a.neox) {
                const float p0 = __shfl_sync(0xffffffffu, x.x, plane), p1 = __shfl_sync(0xffffffffu, x.y, plane);
                const float p2 = __shfl_sync(0xffffffffu, x.z, plane), p3 = __shfl_sync(0xffffffffu, x.w, plane);
                if (inrot && first) {
                    x.x = x.x * cs[0] - p0 * sn[0]; x.y = x.y * cs[1] - p1 * sn[1];
                    x.z = x.z * cs[2] - p2 * sn[2]; x.w = x.w * cs[3] - p3 * sn[3];
                } else if (inrot) {
                    x.x = p0 * sn[0] + x.x * cs[0]; x.y = p1 * sn[1] + x.y * cs[1];
                    x.z = p2 * sn[2] + x.z * cs[2]; x.w = p3 * sn[3] + x.w * cs[3];
                }
            } else {
                const float x0 = x.x, x1 = x.y, x2 = x.z, x3 = x.w;
                if (rp0) x.x = x0 * cs[0] - x1 * sn[0], x.y = x0 * sn[1] + x1 * cs[1];
                if (rp1) x.z = x2 * cs[2] - x3 * sn[2], x.w = x2 * sn[3] + x3 * cs[3];
            }
        }
        if (qrow) {
            const float qscale = a.scale * 1.4426950408889634f;
            *(float4 *)&qs[r][4 * lane] = make_float4(x.x * qscale, x.y * qscale, x.z * qscale, x.w * qscale);
        } else {
            __half2 h01 = __floats2half2_rn(x.x, x.y), h23 = __floats2half2_rn(x.z, x.w);
            uint2 hv;
            hv.x = *(const unsigned *)&h01;
            hv.y = *(const unsigned *)&h23;
            *(uint2 *)&(r == G ? kn : vn)[4 * lane] = hv;
            if (split == 0) *(uint2 *)((r == G ? a.kc : a.vc) + newrow * DQ_D + 4 * lane) = hv;
        }
    }
    __syncthreads();
    DQB_STAMP(2);
    DQB_STAMP(3);
    // ---- step 2: dqc_kernel's steps of 8 positions, step i by warp i % W; DEPTH buffers of K / V a warp: a step's
    // buffer is refilled with the positions DEPTH steps ahead (K after its Q.K, V after its P.V)
    float M[G], Ls[G], acc[G][4];
#pragma unroll
    for (int h = 0; h < G; h++) {
        M[h] = -INFINITY;
        Ls[h] = 0.0f;
        acc[h][0] = acc[h][1] = acc[h][2] = acc[h][3] = 0.0f;
    }
    auto step = [&](uint4 (&kq)[4], uint2 (&vq)[DQC_T], int tb) {
        const int tbn = tb + DEPTH * W * DQC_T; // (what this buffer holds next)
        const size_t rown = dq_row(a, kvh, seq, tbn + jp, r1);
        if (tb <= pos && pos < tb + DQC_T) { // (uniform: the step holding the new position)
            if (tb + jp == pos) {
#pragma unroll
                for (int i = 0; i < 4; i++) kq[i] = ((const uint4 *)kn)[4 * i + qd];
            }
#pragma unroll
            for (int j = 0; j < DQC_T; j++)
                if (tb + j == pos) vq[j] = ((const uint2 *)vn)[lane];
        }
        const bool live = tb + jp < r1;
        float s[G], s2[G];
#pragma unroll
        for (int h = 0; h < G; h++) s[h] = 0.0f, s2[h] = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int c = 4 * i + qd; // (dims 8 c .. 8 c + 7)
            const __half2 *k2 = (const __half2 *)&kq[i];
            float kf[8];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float2 f = __half22float2(k2[e]);
                kf[2 * e] = f.x;
                kf[2 * e + 1] = f.y;
            }
#pragma unroll
            for (int h = 0; h < G; h++) {
                const float4 q0 = *(const float4 *)&qs[h][8 * c], q1 = *(const float4 *)&qs[h][8 * c + 4];
                s[h] = fmaf(q0.w, kf[3], fmaf(q0.z, kf[2], fmaf(q0.y, kf[1], fmaf(q0.x, kf[0], s[h]))));
                s2[h] = fmaf(q1.w, kf[7], fmaf(q1.z, kf[6], fmaf(q1.y, kf[5], fmaf(q1.x, kf[4], s2[h]))));
            }
        }
        if (tbn < r1) dqc_load_k(a, rown, pos, tbn, r1, lane, kq);
#pragma unroll
        for (int h = 0; h < G; h++) {
            float sc = s[h] + s2[h];
            sc += __shfl_xor_sync(0xffffffffu, sc, 1);
            sc += __shfl_xor_sync(0xffffffffu, sc, 2);
            sc = live ? sc : -INFINITY;
            const float mt = warp_max(sc), mn = fmaxf(M[h], mt);
            const float fac = dq_ex2(M[h] - mn); // (M = -inf: 0)
            const float p = dq_ex2(sc - mn);
            Ls[h] = Ls[h] * fac + (qd == 0 ? p : 0.0f); // (a position's 4 lanes: counted once)
            acc[h][0] *= fac; acc[h][1] *= fac; acc[h][2] *= fac; acc[h][3] *= fac;
            M[h] = mn;
            if (qd == 0) ps[warp][h][jp] = p;
        }
        __syncwarp();
#pragma unroll
        for (int j4 = 0; j4 < DQC_T / 4; j4++) {
            float4 P[G];
#pragma unroll
            for (int h = 0; h < G; h++) P[h] = *(const float4 *)&ps[warp][h][4 * j4];
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const __half2 *v2 = (const __half2 *)&vq[4 * j4 + c];
                const float2 va = __half22float2(v2[0]), vb = __half22float2(v2[1]);
#pragma unroll
                for (int h = 0; h < G; h++) {
                    const float pw = c == 0 ? P[h].x : c == 1 ? P[h].y : c == 2 ? P[h].z : P[h].w;
                    acc[h][0] += pw * va.x; acc[h][1] += pw * va.y; acc[h][2] += pw * vb.x; acc[h][3] += pw * vb.y;
                }
            }
        }
        __syncwarp();
        if (tbn < r1) dqc_load_v(a, rown, pos, tbn, r1, lane, vq);
    };
    if constexpr (DEPTH == 1) {
        for (; tb < r1; tb += W * DQC_T) step(kk, vv, tb);
    } else {
        while (tb < r1) {
            step(kk, vv, tb);
            tb += W * DQC_T;
            if (tb >= r1) break;
            step(kk2, vv2, tb);
            tb += W * DQC_T;
        }
    }
    // ---- step 3: the warps' partials -> the CTA's (thread: dim dd of heads hb .. hb + GH - 1), then the head's
    DQB_STAMP(4);
#pragma unroll
    for (int h = 0; h < G; h++) {
        const float l = warp_sum(Ls[h]);
        if (lane == 0) mm[warp][h] = M[h], ml[warp][h] = l;
        *(float4 *)&mo[warp][h][4 * lane] = make_float4(acc[h][0], acc[h][1], acc[h][2], acc[h][3]);
    }
    __syncthreads();
    DQB_STAMP(5);
    constexpr int GH = G * DQ_D / (W * 32); // heads a thread
    const int dd = tid & (DQ_D - 1), hb = (tid >> 7) * GH;
    float O[GH], L[GH], MC[GH];
#pragma unroll
    for (int j = 0; j < GH; j++) {
        const int h = hb + j;
        float mc = -INFINITY;
#pragma unroll
        for (int w = 0; w < W; w++) mc = fmaxf(mc, mm[w][h]);
        float o = 0.0f, l = 0.0f;
#pragma unroll
        for (int w = 0; w < W; w++) {
            const float wt = mm[w][h] == -INFINITY ? 0.0f : dq_ex2(mm[w][h] - mc);
            o += wt * mo[w][h][dd];
            l += wt * ml[w][h];
        }
        O[j] = o, L[j] = l, MC[j] = mc;
    }
    if (nact == 1) {
#pragma unroll
        for (int j = 0; j < GH; j++) dq_out(a, kvh * G + hb + j, dd, O[j], L[j], MC[j]);
        DQB_STAMP(7);
        return;
    }
    // partials (n_kv, DQB_C, G, D + 2) in work as dqc's; the head's last CTA (the ticket) merges them
    float *part = a.work + ((size_t)kvh * DQB_C + split) * G * (DQ_D + 2);
#pragma unroll
    for (int j = 0; j < GH; j++) {
        float *ph = part + (size_t)(hb + j) * (DQ_D + 2);
        ph[dd] = O[j];
        if (dd == 0) ph[DQ_D] = MC[j], ph[DQ_D + 1] = L[j];
    }
    __syncthreads();
    if (tid == 0) {
        const unsigned t = dqm_ticket_add(&dq_ticket[kvh]);
        s_last = t == (unsigned)nact - 1;
        if (s_last) dqm_ticket_reset(&dq_ticket[kvh]); // (for the next launch; kernel boundaries order it)
    }
    __syncthreads();
    DQB_STAMP(6);
    if (!s_last) {
        DQB_STAMP(7);
        return;
    }
    const float *base = a.work + (size_t)kvh * DQB_C * G * (DQ_D + 2);
    float m[GH][DQB_C], l[GH][DQB_C], xo[GH][DQB_C]; // (every load of the merge independent: one L2 round trip)
#pragma unroll
    for (int j = 0; j < GH; j++)
#pragma unroll
        for (int u = 0; u < DQB_C; u++) {
            const bool in = u < nact && u != split;
            const float *ph = base + ((size_t)u * G + hb + j) * (DQ_D + 2);
            m[j][u] = u == split ? MC[j] : in ? __ldcg(ph + DQ_D) : -INFINITY;
            l[j][u] = u == split ? L[j] : in ? __ldcg(ph + DQ_D + 1) : 0.0f;
            xo[j][u] = u == split ? O[j] : in ? __ldcg(ph + dd) : 0.0f;
        }
#pragma unroll
    for (int j = 0; j < GH; j++) {
        float cm = -INFINITY;
#pragma unroll
        for (int u = 0; u < DQB_C; u++) cm = fmaxf(cm, m[j][u]);
        float o = 0.0f, ls = 0.0f;
#pragma unroll
        for (int u = 0; u < DQB_C; u++) {
            const float w = m[j][u] == -INFINITY ? 0.0f : dq_ex2(m[j][u] - cm);
            o += w * xo[j][u];
            ls += w * l[j][u];
        }
        dq_out(a, kvh * G + hb + j, dd, o, ls, cm);
    }
    DQB_STAMP(7);
}

// ---------------------------------------------------------------- host

// The switches, read once (cuda_env_int: the first digits, a non-number = the default; pthread_once, since
// several engines' threads may plan at once). cuda_dq_set / _tune / _pre_set / _pipe_set (tests, benches)
// change the live values; -1 there = back to the environment's.
static int g_dq_on, g_dq_splits, g_dq_chunk, g_env_on, g_env_splits, g_env_chunk, g_dq_pre, g_env_pre, g_dq_pipe,
    g_env_pipe, g_dq_ctx, g_dqb, g_env_dqb, g_dqc_chunk, g_env_dqc_chunk, g_dqm, g_env_dqm, g_dqm_chunk, g_env_dqm_chunk;
static long g_dq_launches = 0, g_dqb_launches = 0;
static pthread_once_t g_dq_once = PTHREAD_ONCE_INIT;
static void dq_env_read() {
    g_env_on = cuda_env_int("SPARKD_DQ", 1) != 0;
    const int sp = cuda_env_int("SPARKD_DQ_SPLITS", 32), ch = cuda_env_int("SPARKD_DQ_CHUNK", 128);
    g_env_splits = sp >= 1 && sp <= DQ_SPLITS_MAX ? sp : 32;
    g_env_chunk = ch >= 32 && ch <= 4096 ? ch / DQ_TILE * DQ_TILE : 128;
    // (-1 unset: the pre-wait loads with SPARKD_DQB != 0 only, so SPARKD_DQB=0 is today's path exactly)
    g_env_pre = cuda_env_int("SPARKD_DQ_PRE", -1);
    if (g_env_pre > 1) g_env_pre = 1;
    g_env_pipe = cuda_env_int("SPARKD_DQ_PIPE", 1) != 0;
    g_dq_ctx = cuda_env_int("SPARKD_DQ_CTX", DQ_CTX_DEFAULT);
    // (round 12 dqb: 4 dqc_kernel (ticket merge), 3 its cluster merge, 1 dq_kernel + the pre-wait K / V loads; 0 = today)
    g_env_dqb = cuda_env_int("SPARKD_DQB", 4); // (default 4 after run 1: +13..+17.5% Q4_K_M, +12% Q8_0 at batch 1)
    if (g_env_dqb != 0 && g_env_dqb != 1 && g_env_dqb != 4) g_env_dqb = 4; // (3, the cluster merge, removed in round 13: 4)
    const int cc = cuda_env_int("SPARKD_DQC_CHUNK", 64); // (SPARKD_DQB=3 / 4: positions of a CTA at least)
    g_env_dqc_chunk = cc >= DQC_T && cc <= 4096 ? cc / DQC_T * DQC_T : 64;
    g_dqc_chunk = g_env_dqc_chunk;
    // (round 13 dqm: 1 dqm_kernel where SPARKD_DQB=4 runs dqc_kernel; 0 = dqc_kernel, today)
    // (default 2 after run 1, 16 warps: Q4_K_M --npl 1 after 512 +4.4%, after 1536 +8.9% against 0; 1 = 8 warps with two
    // K / V buffers (run 0's =3): +3.6% / +5.8%; run 0's one-buffer =1 is gone; values past 2 read as 2)
    g_env_dqm = cuda_env_int("SPARKD_DQM", 2);
    if (g_env_dqm > 2) g_env_dqm = 2;
    const int mc = cuda_env_int("SPARKD_DQM_CHUNK", 64); // (positions of a dqm CTA at least)
    g_env_dqm_chunk = mc >= DQC_T && mc <= 4096 ? mc / DQC_T * DQC_T : 64;
    g_dqm = g_env_dqm;
    g_dqm_chunk = g_env_dqm_chunk;
    g_dqb = g_env_dqb;
    g_dq_on = g_env_on;
    g_dq_splits = g_env_splits;
    g_dq_chunk = g_env_chunk;
    g_dq_pre = g_env_pre;
    g_dq_pipe = g_env_pipe;
}
static void dq_env() { pthread_once(&g_dq_once, dq_env_read); }

extern "C" int cuda_dq_set(int on) {
    dq_env();
    const int was = g_dq_on;
    g_dq_on = on < 0 ? g_env_on : on ? 1 : 0;
    return was;
}
extern "C" void cuda_dq_tune(int splits, int chunk) {
    dq_env();
    g_dq_splits = splits >= 1 && splits <= DQ_SPLITS_MAX ? splits : g_env_splits;
    g_dq_chunk = chunk >= 32 && chunk <= 4096 ? chunk / DQ_TILE * DQ_TILE : g_env_chunk;
}
extern "C" long cuda_dq_launches(void) { return g_dq_launches; }
extern "C" long cuda_dqb_launches(void) { return g_dqb_launches; } // (tests: launches of a SPARKD_DQB != 0 mode)
extern "C" int cuda_dq_max_ctx(void) {
    dq_env();
    return g_dq_on ? g_dq_ctx : 0;
}
// (tests and benches: SPARKD_DQ_PRE's bit, 1 / 0, -1 = as the env says: unset = on with SPARKD_DQB != 0)
extern "C" void cuda_dq_pre_set(int on) {
    dq_env();
    g_dq_pre = on < 0 ? g_env_pre : on ? 1 : 0;
}
// (tests and benches: SPARKD_DQ_PIPE, 1 / 0, -1 = as the env says)
extern "C" void cuda_dq_pipe_set(int on) {
    dq_env();
    g_dq_pipe = on < 0 ? g_env_pipe : on ? 1 : 0;
}

// (tests and benches: SPARKD_DQB, 0 / 1 / 3 / 4, -1 = as the env says; returns what it was)
extern "C" int cuda_dqb_set(int on) {
    dq_env();
    const int was = g_dqb;
    g_dqb = on < 0 ? g_env_dqb : on == 0 || on == 1 ? on : 4;
    return was;
}

// (tests and benches: SPARKD_DQC_CHUNK, 8..4096, -1 = as the env says)
extern "C" void cuda_dqc_chunk_set(int chunk) {
    dq_env();
    g_dqc_chunk = chunk >= DQC_T && chunk <= 4096 ? chunk / DQC_T * DQC_T : g_env_dqc_chunk;
}
// (tests and benches: SPARKD_DQM, 0 / 1 / 2, -1 = as the env says; returns what it was)
extern "C" int cuda_dqm_set(int on) {
    dq_env();
    const int was = g_dqm;
    g_dqm = on < 0 ? g_env_dqm : on >= 0 && on <= 2 ? on : 2;
    return was;
}
// (tests and benches: SPARKD_DQM_CHUNK, 8..4096, -1 = as the env says)
extern "C" void cuda_dqm_chunk_set(int chunk) {
    dq_env();
    g_dqm_chunk = chunk >= DQC_T && chunk <= 4096 ? chunk / DQC_T * DQC_T : g_env_dqm_chunk;
}
static long g_dqm_launches = 0;
extern "C" long cuda_dqm_launches(void) { return g_dqm_launches; } // (tests: dqm_kernel launches)
// (kbench: the next mode-4 launches run dqc_kernel's PROF instantiation writing prof, (n_kv * 8, 8) clocks;
// NULL = back to the plain kernel)
static long long *g_dqb_prof = NULL;
extern "C" void cuda_dqb_prof_set(long long *prof) { g_dqb_prof = prof; }

extern "C" uint64_t cuda_dq_work_bytes(int n_head, int head_dim) {
    dq_env();
    // (dqc_kernel, SPARKD_DQB 3 / 4, writes DQB_C partials a KV head's query heads whatever the split count)
    const int sp = g_dq_splits > DQB_C ? g_dq_splits : DQB_C;
    return (uint64_t)n_head * sp * (uint64_t)(head_dim + 2) * 4;
}

static bool dq_part_on(const cuda_part &p) { return p.p != NULL; }

extern "C" int cuda_dq_takes(const cuda_qkv_args *qa, int T, uint64_t work_bytes) {
    dq_env();
    if (!g_dq_on || !qa || T != 1) return 0;
    if (qa->kv_type != CUDA_KV_F16 || qa->head_dim != DQ_D || qa->n_kv < 1 || qa->n_kv > DQ_KV_MAX ||
        qa->n_head != 4 * qa->n_kv || qa->n_rot < 0 || qa->n_rot > DQ_D || (qa->n_rot & 1) || (qa->n_rot && !qa->inv_freq))
        return 0;
    if (dq_part_on(qa->pq) || dq_part_on(qa->pk) || dq_part_on(qa->pv)) return 0;
    if (qa->ldq < qa->n_head * DQ_D || ((uintptr_t)qa->q | (uintptr_t)qa->k | (uintptr_t)qa->v) & 15) return 0;
    if (((uintptr_t)qa->bq | (uintptr_t)qa->bk | (uintptr_t)qa->bv) & 15) return 0;
    return work_bytes >= cuda_dq_work_bytes(qa->n_head, qa->head_dim);
}

extern "C" int cuda_dq_attention(const cuda_qkv_args *qa, const cuda_attn_args *aa, const cuda_tokens *tk, void *stream, err *e) {
    dq_env();
    if (!qa || !aa || !tk || tk->T != 1 || !aa->out || !aa->work || aa->n_head != qa->n_head || aa->n_kv != qa->n_kv)
        return err_set(e, ERR_INVALID, "cuda_dq_attention: bad arguments");
    dq_params p;
    memset(&p, 0, sizeof p);
    p.q = qa->q; p.k = qa->k; p.v = qa->v;
    p.bq = qa->bq; p.bk = qa->bk; p.bv = qa->bv;
    p.q_norm = qa->q_norm; p.k_norm = qa->k_norm; p.eps = qa->eps;
    p.inv_freq = qa->inv_freq; p.n_rot = qa->n_rot; p.neox = qa->neox; p.mscale = qa->mscale;
    p.n_head = qa->n_head; p.n_kv = qa->n_kv;
    p.kc = (__half *)qa->kv.k; p.vc = (__half *)qa->kv.v; p.kv_block = qa->kv_block;
    p.pos = tk->pos; p.seq = tk->seq; p.bt = tk->block_tables; p.max_blocks = tk->max_blocks;
    p.scale = aa->scale; p.window = aa->window; p.sinks = aa->sinks;
    p.work = aa->work; p.out = aa->out; p.out_p64 = aa->out_p64;
    p.splits = g_dq_splits; p.chunk = g_dq_chunk;
    p.ctl = (g_dq_pre < 0 ? g_dqb != 0 : g_dq_pre != 0) ? 1 : 0; // (SPARKD_DQ_PRE unset: on with SPARKD_DQB != 0)
    if (g_dqb == 4) { // (dqc_kernel: 8 warps a CTA, 8 positions a warp step, DQB_C CTAs a head at most)
        p.splits = DQB_C;
        p.chunk = g_dqc_chunk;
        const dim3 grid(DQB_C, (unsigned)p.n_kv), block(DQC_WARPS * 32);
        // (dqm: neox RoPE pairs a lane's 4 dims with one lane's, so half the rotated dims a multiple of 4)
        if (g_dqb == 4 && g_dqm && !(p.neox && (p.n_rot / 2) % 4)) {
            p.prof = g_dqb_prof;
            if (g_dqm == 2) { // (16 warps a CTA: a step round of 128 positions, twice SPARKD_DQM_CHUNK a CTA at least)
                p.chunk = 2 * g_dqm_chunk;
                CUDA_TRY(g_dqb_prof ? cuda_launch(dqm_kernel<4, 16, 1, true>, grid, dim3(16 * 32), 0, stream, p)
                                    : cuda_launch(dqm_kernel<4, 16, 1, false>, grid, dim3(16 * 32), 0, stream, p));
            } else { // (8 warps, two K / V buffers a warp: the loads two steps ahead; run 0's =3)
                p.chunk = g_dqm_chunk;
                CUDA_TRY(g_dqb_prof ? cuda_launch(dqm_kernel<4, DQC_WARPS, 2, true>, grid, block, 0, stream, p)
                                    : cuda_launch(dqm_kernel<4, DQC_WARPS, 2, false>, grid, block, 0, stream, p));
            }
            g_dq_launches++;
            g_dqb_launches++;
            g_dqm_launches++;
            return 0;
        }
        p.prof = g_dqb_prof;
        CUDA_TRY(g_dqb_prof ? cuda_launch(dqc_kernel<4, false, true>, grid, block, 0, stream, p)
                            : cuda_launch(dqc_kernel<4, false, false>, grid, block, 0, stream, p));
        g_dq_launches++;
        g_dqb_launches++;
        return 0;
    }
    if (g_dqb) g_dqb_launches++;
    if (g_dq_pipe) CUDA_TRY(cuda_launch(dq_kernel<4, true>, dim3((unsigned)p.splits, (unsigned)p.n_kv), dim3(DQ_WARPS * 32), 0, stream, p));
    else CUDA_TRY(cuda_launch(dq_kernel<4, false>, dim3((unsigned)p.splits, (unsigned)p.n_kv), dim3(DQ_WARPS * 32), 0, stream, p));
    g_dq_launches++;
    return 0;
}
