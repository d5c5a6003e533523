// l32.cu — round 13, helper l32: decode attention of ONE sequence at long context (batch 1,
// precision fast), SPARKD_L32. Called from attn.cu's attn_dec_launch (cuda_l32_dec) before
// its own kernels; declines (returns -1) every other shape.
//
// Why (round 12 base profile, 32K b1, Qwen3-8B: 8 KV heads, G = 4): attn_dec3_kernel reads the
// 134 MB at 74% of the probe where the same kernel streams at 94-97% when its CTAs are long
// (8 sequences not shared, 64 sequences): the b1 split (33 parts a KV head, 2 CTAs an SM, one
// static range of ~15.5 steps a warp) ends when the slowest SM ends, and SMs do not get equal
// DRAM service (a8's ncu: SM active cycles -3% / +13% around the mean). Then a second launch
// (the combine, 4.7 us serialized) merges the 33 partials of every head.
//
// What this kernel does differently (same shared footprint and residency as attn_dec3: 2 CTAs
// of 4 warps an SM, a ring of 2 steps of 16 positions a warp, 80 KB at d128):
// - the steps of a KV head are dealt dynamically: warp w of CTA (slot x) takes steps
//   wid = x + nc w, wid + nw, wid + 2 nw (nw = nc x 4 warps a head) and then claims the next
//   step of the head with one atomicAdd on l32_claims[hk] (a claim made one step ahead, its
//   block id loaded one step ahead), so the SMs that get more bandwidth take more steps and
//   all warps finish within about one step of each other;
// - one m-tile a warp (G <= 16 query heads of the KV head as rows), Q hi (precision fast)
//   in registers for the whole range, no pair / two-m-tile branches;
// - SPARKD_L32 = 2: the combine folded in: the last CTA of a KV head (a ticket,
//   l32_arrivals[hk]) merges the nc partials of its G heads and writes the output (f32 rows,
//   P64 rows or the int8 form, as attn_dec_combine_u); it also resets the head's two counters
//   for the next launch. SPARKD_L32 = 1: the same kernel, the caller launches today's combine.
//   SPARKD_L32 = 3: no claims: warp w takes steps wid + k nw (a strided static split, deterministic),
//   today's combine. SPARKD_L32 = 3 is the default (the lead, after GPU run 1: mode 1 + SPARKD_L32_QKV measured best,
//   32K b1 Q4_K_M 272.0 / 274.6 -> 282.9 / 284.1 tok/s, mode 3 alone 280.4, but mode 1's claims make the sums' order
//   change from call to call; the default stays deterministic; the final call's A/B measures 3 + QKV); SPARKD_L32 = 0: today's path exactly (this file not
//   called, the q / k / v rows by cuda_qkv_rope_store). Run 0 (H200, 32K b1 Q4_K_M): model 274.4 / 274.5 (0) vs 270.1 / 271.5 (2), 276.4
//   (1); kbench 40.6 (0) vs 45.7 us (2); the claims were then made one step ahead (now two).
// Counters: __device__ globals (zero at module load, reset by each launch's last CTA): one
// decode attention at a time a device (the engine's stream order; a second engine decoding on
// the same device concurrently would share them).
#include "cuda_kern.h"

#include <stdlib.h>
#include <string.h>

#include "kern_util.cuh"

#define L32_WARPS 4
#define L32_STEP 16 // positions a warp step (one m16n8k16 k-extent of P.V)
#define L32_MAXKV 64

#define L32_PAD 32 // (counters 128 bytes apart: the heads' claims do not queue on one L2 line)
__device__ unsigned l32_claims[L32_MAXKV * L32_PAD];   // [KV head * L32_PAD]: steps claimed past the static 3 a warp
__device__ unsigned l32_arrivals[L32_MAXKV * L32_PAD]; // [KV head * L32_PAD]: CTAs done (the last one merges / resets)

namespace {

__device__ __forceinline__ uint32_t l32_su(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void l32_cp16(uint32_t dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void l32_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void l32_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
__device__ __forceinline__ void l32_ldsm4(uint32_t *r, uint32_t p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(p));
}
__device__ __forceinline__ void l32_ldsm4t(uint32_t *r, uint32_t p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(p));
}
// bytes [p, p + n) into L2 (n a multiple of 16, p 16-byte aligned)
__device__ __forceinline__ void l32_prefetch_l2(const void *p, int n) {
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(p), "r"(n) : "memory");
}
// c (m16 x n8 f32) += a (m16 x k16 f16, row) b (k16 x n8 f16, col)
__device__ __forceinline__ void l32_mma(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ float l32_ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// shared bytes: Q hi [16][D] f16 (swizzled) + the ring [warp][stage 2][K 16 x D | V 16 x D] f16
// (swizzled rows); the 4 warps' partials [warp][16][D + 2] f32 reuse the ring at the end
template <int D> struct l32_smem {
    static constexpr int Q = 16 * D * 2;
    static constexpr int STAGE = 2 * L32_STEP * D * 2;
    static constexpr int RING = L32_WARPS * 2 * STAGE;
    static constexpr int PART = L32_WARPS * 16 * (D + 2) * 4;
    static_assert(PART <= RING, "partials fit the ring");
    static_assert(Q + RING <= 2 * 32 * D * 2 + RING, "the kernel's bytes fit TOTAL");
    // attn_dec3_kernel's footprint (Q hi + lo of 32 rows + the same ring): the launch asks for it
    // so that the residency stays 2 CTAs an SM (68 KB would let a third in: a8's lesson, round 12)
    static constexpr int TOTAL = 2 * 32 * D * 2 + RING;
};

// grid (plan_items, n_kv) as attn_dec3 (CTA i: slot i / n_kv, KV head i % n_kv); 128 threads.
// a: one decode token (n_tiles 1), f16 KV in blocks of a power-of-two multiple of 16 rows, no
// window, no sinks, G = n_head / n_kv <= 16; work [n_head][plan_nsl][D + 2] partials of the token
// (slot x of head h: the CTA's merged (O, max, sum), log2 units). fold: 1 the last CTA a KV head
// writes the output. ctl bit 0 (selftest control): partial sums written halved; bit 1 (SPARKD_L32_PRE):
// the first static steps before pdl_wait; bit 2 (SPARKD_L32_PRE=2): the third static step into L2 there too.
// QKV (SPARKD_L32_QKV, cuda_l32_qkv_attention): qa's raw q / k / v rows of the token (bias, QK-norm, RoPE:
// qkv_kernel's arithmetic, its pre-loaded path) are made here instead of by cuda_qkv_rope_store: every
// CTA makes its G q heads and head hk's k and v (f16, as the cache holds them); the CTA of slot 0
// stores k and v at pos; no CTA reads row pos from the cache: the step holding it takes rows pos.. of
// the stage from shared memory (so no ordering between CTAs is needed).
template <int D, bool QKV>
__global__ __launch_bounds__(L32_WARPS * 32, 2) void l32_dec_kernel(const cuda_attn_args a, const int fold, const int ctl,
                                                                 const cuda_qkv_args qa) {
    using SM = l32_smem<D>;
    constexpr int NT = D / 8;  // n-tiles of O (dims)
    constexpr int KS = D / 16; // k-steps of S
    constexpr int CH = D / 8;  // 16-byte chunks a row
    extern __shared__ __align__(16) uint8_t dsm[];
    __shared__ int s_last;
    __shared__ __align__(16) float qrow[QKV ? L32_WARPS : 1][QKV ? D : 4]; // (QKV) a warp's head row, f32
    __shared__ __align__(16) __half kvrow[2][QKV ? D : 8];                 // (QKV) k, v at pos, f16
    __half *qs = (__half *)dsm;
    uint8_t *ring = dsm + SM::Q;
    pdl_trigger();
    const int n_kv = a.n_kv;
    const int cta = blockIdx.x + blockIdx.y * gridDim.x;
    const int slot = cta / n_kv, hk = cta % n_kv;
    int nc = a.plan_nslot[0]; // (partials of the token = CTAs taking part a KV head; host copy)
    if (nc > (int)gridDim.x * (int)gridDim.y / n_kv) nc = (int)gridDim.x * (int)gridDim.y / n_kv;
    if (slot >= nc) return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, c = lane & 3;
    const cuda_attn_tile tl = a.tiles[0];
    const int pos = tl.pos0, t0 = tl.t0, G = a.n_head / n_kv;
    const int nsteps = pos / L32_STEP + 1;
    const int nw = nc * L32_WARPS, wid = slot + nc * warp;
    const int32_t *btab = a.block_tables + (size_t)tl.seq * a.max_blocks;
    const int ksh = __ffs(a.kv_block) - 1, kmask = a.kv_block - 1;
    auto blk_of = [&](int s) { return s < nsteps ? btab[(s * L32_STEP) >> ksh] : 0; };
    const __half *K = (const __half *)a.kv.k, *V = (const __half *)a.kv.v;
    const uint32_t ring_u = l32_su(ring) + (uint32_t)warp * 2u * SM::STAGE;
    // step s (block blk) -> stage: 16 rows of K then of V; row r's chunk ch at byte
    // 2 D r + 16 (ch ^ (r & 7)); rows past pos (the last step) repeat row pos
    auto issue = [&](int s, int blk, int stage) {
        const uint32_t st = ring_u + (uint32_t)stage * SM::STAGE;
        const int p0 = s * L32_STEP;
        const size_t base = ((size_t)blk * n_kv + hk) * (size_t)a.kv_block * D;
        if (p0 + L32_STEP - 1 <= pos) { // (every step but the last: 16 rows from one address, immediate offsets)
            // lane: chunk ch of rows r0 + RPI i (r0 < RPI, RPI i a multiple of RPI: r & 7 = r0 ^ (RPI i & 7))
            constexpr int RPI = 32 / CH; // rows a round of the warp
            const int r0 = lane / CH, ch = lane % CH;
            const size_t off = base + (size_t)((p0 & kmask) + r0) * D + ch * 8;
            const __half *kg = K + off, *vg = V + off;
            const uint32_t d0 = st + 2u * D * (uint32_t)r0, sx = 16u * (uint32_t)(ch ^ r0);
#pragma unroll
            for (int i = 0; i < L32_STEP / RPI; i++) {
                const uint32_t dd = d0 + 2u * D * RPI * i + (sx ^ (16u * (uint32_t)((RPI * i) & 7)));
                l32_cp16(dd, kg + (size_t)RPI * i * D);
                l32_cp16(dd + L32_STEP * D * 2, vg + (size_t)RPI * i * D);
            }
            return;
        }
#pragma unroll
        for (int i = 0; i < L32_STEP * CH / 32; i++) {
            const int j = lane + 32 * i, r = j / CH, ch = j % CH;
            const int p = min(p0 + r, pos);
            const size_t src = base + (size_t)(p & kmask) * D + ch * 8;
            const uint32_t dst = st + 2u * D * r + 16u * (uint32_t)(ch ^ (r & 7));
            l32_cp16(dst, K + src);
            l32_cp16(dst + L32_STEP * D * 2, V + src);
        }
    };
    // this warp's first four steps are static; then claims (4 nw + the head's counter), each made two
    // iterations before its step's copies are issued (run 0: claimed one ahead, the atomic's round trip
    // under the full DRAM load sat on every step: 45.9 vs dec3's 40.7 us at 32K)
    int s_cur = wid, s_nxt = wid + nw, s_3 = wid + 2 * nw, s_4 = wid + 3 * nw;
    const int b_cur = blk_of(s_cur);
    int b_nxt = blk_of(s_nxt);
    // (ctl & 2, SPARKD_L32_PRE=1) the static steps whose 16 rows all precede the token's position are
    // copied before pdl_wait: the kernels before this one in the step (q/k/v, qkv_kernel) write only
    // row pos of the cache; the rows before it were final when the step began (the engine synchronizes
    // every step). kern_util.cuh's rule keeps this to weights: off by default until measured.
    const bool pre_cur = (ctl & 2) && s_cur * L32_STEP + L32_STEP - 1 < pos;
    bool pre_nxt = pre_cur && s_nxt * L32_STEP + L32_STEP - 1 < pos;
    if (pre_cur) issue(s_cur, b_cur, 0), l32_commit();
    if (pre_nxt) issue(s_nxt, b_nxt, 1), l32_commit();
    if ((ctl & 4) && lane == 0 && s_3 * L32_STEP + L32_STEP - 1 < pos) { // (SPARKD_L32_PRE=2: the third static step into L2)
        const size_t base = (((size_t)blk_of(s_3) * n_kv + hk) * a.kv_block + ((s_3 * L32_STEP) & kmask)) * D;
        l32_prefetch_l2(K + base, L32_STEP * D * 2);
        l32_prefetch_l2(V + base, L32_STEP * D * 2);
    }
    pdl_wait();
    if (!pre_cur) {
        if (s_cur < nsteps) issue(s_cur, b_cur, 0);
        l32_commit();
    }
    // Q hi (scale log2 e folded in) -> smem rows 0..15 (rows >= G zero), then A fragments in registers
    const float qsc = a.scale * 1.4426950408889634f;
    auto q_at = [&](int r, int d) { // (byte offset of Q row r, element d: swizzled 16-byte chunks)
        return 2 * D * r + 16 * ((((d >> 3) ^ r) & 7) | ((d >> 3) & ~7)) + 2 * (d & 7);
    };
    if constexpr (!QKV) {
        for (int idx = threadIdx.x; idx < 16 * D / 2; idx += L32_WARPS * 32) {
            const int r = idx / (D / 2), d = 2 * (idx % (D / 2));
            float2 v = make_float2(0.0f, 0.0f);
            if (r < G) v = *(const float2 *)(a.q + (size_t)t0 * a.ldq + (size_t)(hk * G + r) * D + d);
            const __half2 h = __floats2half2_rn(v.x * qsc, v.y * qsc);
            *(__half2 *)((uint8_t *)qs + q_at(r, d)) = h;
        }
    } else {
        // one head row of the token by this warp into v (qkv_kernel's pre-loaded path, the same
        // operations in the same order): + bias, RMS norm with the kind's weights, RoPE of n_rot dims
        auto head_row = [&](int kind, int hh, float *v) {
            const float *src = (kind == 0 ? qa.q + (size_t)t0 * qa.ldq : kind == 1 ? qa.k + (size_t)t0 * qa.ldk : qa.v + (size_t)t0 * qa.ldv) +
                               (size_t)hh * D;
            const float *bias = kind == 0 ? qa.bq : kind == 1 ? qa.bk : qa.bv;
            const float *nw = kind == 0 ? qa.q_norm : kind == 1 ? qa.k_norm : NULL;
            float ss = 0.0f;
            for (int d = lane; d < D; d += 32) {
                float x = src[d];
                if (bias) x += bias[(size_t)hh * D + d];
                v[d] = x;
                ss += x * x;
            }
            if (nw) {
                ss = warp_sum(ss);
                const float r = 1.0f / sqrtf(ss / (float)D + qa.eps);
                for (int d = lane; d < D; d += 32) v[d] = v[d] * r * nw[d];
            }
            __syncwarp();
            if (kind < 2) {
                const int half = qa.n_rot / 2;
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int i = lane + 32 * j;
                    if (i >= half) break;
                    float sn, cs;
                    sincosf((float)pos * qa.inv_freq[i], &sn, &cs);
                    cs *= qa.mscale;
                    sn *= qa.mscale;
                    const int ia = qa.neox ? i : 2 * i, ib = qa.neox ? i + half : 2 * i + 1;
                    const float x0 = v[ia], x1 = v[ib];
                    v[ia] = x0 * cs - x1 * sn;
                    v[ib] = x0 * sn + x1 * cs;
                }
                __syncwarp();
            }
        };
        for (int idx = threadIdx.x; idx < (16 - G) * D / 2; idx += L32_WARPS * 32) { // (rows G..15: zero)
            const int r = G + idx / (D / 2), d = 2 * (idx % (D / 2));
            *(__half2 *)((uint8_t *)qs + q_at(r, d)) = __floats2half2_rn(0.0f, 0.0f);
        }
        float *v = qrow[warp];
        for (int r = warp; r < G; r += L32_WARPS) {
            head_row(0, hk * G + r, v);
            for (int d = 2 * lane; d < D; d += 64) *(__half2 *)((uint8_t *)qs + q_at(r, d)) = __floats2half2_rn(v[d] * qsc, v[d + 1] * qsc);
            __syncwarp();
        }
        if (warp < 2) { // k (warp 0), v (warp 1) of head hk at pos; slot 0 stores them
            head_row(1 + warp, hk, v);
            __half *cache = (__half *)(warp ? qa.kv.v : qa.kv.k) + (((size_t)btab[pos >> ksh] * n_kv + hk) * a.kv_block + (pos & kmask)) * D;
            for (int d = lane; d < D; d += 32) {
                const __half h = __float2half_rn(v[d]);
                kvrow[warp][d] = h;
                if (slot == 0) cache[d] = h;
            }
        }
    }
    __syncthreads();
    // ldmatrix lane offsets (see attn_dec3_kernel): K x4 rows (lane >> 4) 8 + (lane & 7), chunk
    // bit (lane >> 3) & 1; Q and V rows ((lane >> 3) & 1) 8 + (lane & 7), chunk bit lane >> 4
    const uint32_t kx = 16u * (uint32_t)(((lane >> 3) & 1) ^ (lane & 7)), koff = 2u * D * (uint32_t)((lane >> 4) * 8 + (lane & 7));
    const uint32_t qx = 16u * (uint32_t)((lane >> 4) ^ (lane & 7)), qoff = 2u * D * (uint32_t)(((lane >> 3) & 1) * 8 + (lane & 7));
    uint32_t qf[KS][4]; // (Q's A fragments, all k-steps)
#pragma unroll
    for (int ks = 0; ks < KS; ks++) l32_ldsm4(qf[ks], l32_su(qs) + qoff + (qx ^ (32u * ks)));

    float o[NT][4], mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.0f, 0.0f};
#pragma unroll
    for (int n = 0; n < NT; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    // (lane 0: the claim made one iteration ago = the step after s_4; the first one here, after the wait)
    // (ctl & 8, SPARKD_L32=3: no claims, warp w's steps wid + k nw for every k: the strided static split,
    // deterministic; the A/B of the atomics' cost)
    const bool strided = ctl & 8;
    unsigned pend = strided ? (unsigned)(s_4 + nw) : 1u << 30;
    if (!strided && lane == 0 && s_4 < nsteps) pend = 4u * nw + atomicAdd(&l32_claims[hk * L32_PAD], 1u);
    int stage = 0;
    while (s_cur < nsteps) {
        if (!pre_nxt) { // (pre_nxt: the first iteration's copies went before the wait)
            if (s_nxt < nsteps) issue(s_nxt, b_nxt, stage ^ 1);
            l32_commit();
        }
        pre_nxt = false;
        const int b_3 = blk_of(s_3); // (loaded now, used next iteration)
        unsigned pnew = strided ? pend + (unsigned)nw : 1u << 30; // (lane 0: the step after pend's, consumed two iterations on)
        if (!strided && lane == 0 && s_4 < nsteps) pnew = 4u * nw + atomicAdd(&l32_claims[hk * L32_PAD], 1u);
        l32_wait<1>();
        __syncwarp();
        const uint32_t kst = ring_u + (uint32_t)stage * SM::STAGE;
        if (QKV && s_cur == nsteps - 1) { // (the step holding pos: rows pos - p0 .. 15 = k, v at pos, from kvrow)
            uint8_t *stp = ring + (size_t)(warp * 2 + stage) * SM::STAGE;
            const int r0 = pos - s_cur * L32_STEP;
            for (int idx = lane; idx < (L32_STEP - r0) * CH; idx += 32) {
                const int r = r0 + idx / CH, ch = idx % CH;
                const int o = 2 * D * r + 16 * (ch ^ (r & 7));
                *(uint4 *)(stp + o) = *(const uint4 *)(&kvrow[0][ch * 8]);
                *(uint4 *)(stp + L32_STEP * D * 2 + o) = *(const uint4 *)(&kvrow[1][ch * 8]);
            }
            __syncwarp();
        }
        float sc[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
        for (int ks = 0; ks < KS; ks++) {
            uint32_t kf[4];
            l32_ldsm4(kf, kst + koff + (kx ^ (32u * ks)));
            l32_mma(sc[0], qf[ks], kf[0], kf[1]);
            l32_mma(sc[1], qf[ks], kf[2], kf[3]);
        }
        const int p0 = s_cur * L32_STEP;
        const bool full = p0 + L32_STEP - 1 <= pos; // (uniform: only the last step is partial)
        float corr[2], v[2][4];
        bool moved = false;
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const float x = sc[nt][2 * hh + e];
                    v[hh][nt * 2 + e] = full || p0 + nt * 8 + 2 * c + e <= pos ? x : -INFINITY;
                }
            float mx = fmaxf(fmaxf(v[hh][0], v[hh][1]), fmaxf(v[hh][2], v[hh][3]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float mo = mrow[hh], mn = fmaxf(mo, mx);
            corr[hh] = mo == mn ? 1.0f : l32_ex2(mo - mn);
            moved |= mo != mn;
            mrow[hh] = mn;
            float ps = 0.0f;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                v[hh][i] = mn == -INFINITY ? 0.0f : l32_ex2(v[hh][i] - mn);
                ps += v[hh][i];
            }
            lrow[hh] = lrow[hh] * corr[hh] + ps;
        }
        if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
            for (int n = 0; n < NT; n++) o[n][0] *= corr[0], o[n][1] *= corr[0], o[n][2] *= corr[1], o[n][3] *= corr[1];
        }
        uint32_t ph[4];
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            const __half2 h0 = __floats2half2_rn(v[hh][0], v[hh][1]), h1 = __floats2half2_rn(v[hh][2], v[hh][3]);
            ph[hh] = *(const uint32_t *)&h0;
            ph[2 + hh] = *(const uint32_t *)&h1;
        }
#pragma unroll
        for (int j = 0; j < D / 16; j++) {
            uint32_t vf[4];
            l32_ldsm4t(vf, kst + L32_STEP * D * 2 + qoff + (qx ^ (32u * j)));
            l32_mma(o[2 * j], ph, vf[0], vf[1]);
            l32_mma(o[2 * j + 1], ph, vf[2], vf[3]);
        }
        __syncwarp(); // (this stage is refilled next iteration)
        s_cur = s_nxt;
        s_nxt = s_3;
        b_nxt = b_3;
        s_3 = s_4;
        s_4 = (int)__shfl_sync(0xffffffffu, pend, 0);
        pend = pnew;
        stage ^= 1;
    }
    l32_wait<0>();
    __syncthreads();

    // the 4 warps' partials -> [warp][16][D + 2] (the ring), merged per row r < G by all threads
    float *part = (float *)ring;
    // (after the loop ring_u's stages are dead; Q's space holds the weights [warp][16] and offsets)
    float *cw = (float *)dsm;
    unsigned long long *doff = (unsigned long long *)(cw + L32_WARPS * 16);
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        float l = lrow[hh];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        float *dst = part + ((size_t)warp * 16 + g + 8 * hh) * (D + 2);
#pragma unroll
        for (int n = 0; n < NT; n++) *(float2 *)(dst + n * 8 + 2 * c) = make_float2(o[n][2 * hh], o[n][2 * hh + 1]);
        if (c == 0) dst[D] = mrow[hh], dst[D + 1] = l;
    }
    __syncthreads();
    const size_t tok = ((size_t)t0 * a.n_head + (size_t)hk * G) * a.plan_nsl; // (head hk G's first slot)
    if (threadIdx.x < G) {
        const int r = threadIdx.x;
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < L32_WARPS; w++) mx = fmaxf(mx, part[((size_t)w * 16 + r) * (D + 2) + D]);
        float ls = 0.0f;
#pragma unroll
        for (int w = 0; w < L32_WARPS; w++) {
            const float *src = part + ((size_t)w * 16 + r) * (D + 2);
            const float wt = src[D] == -INFINITY ? 0.0f : l32_ex2(src[D] - mx);
            cw[w * 16 + r] = wt;
            ls += src[D + 1] * wt;
        }
        const size_t off = (tok + (size_t)r * a.plan_nsl + slot) * (D + 2);
        doff[r] = off;
        a.work[off + D] = mx;
        a.work[off + D + 1] = (ctl & 1) ? 0.5f * ls : ls;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < G * (D / 2); idx += L32_WARPS * 32) {
        const int r = idx / (D / 2), d = 2 * (idx % (D / 2));
        float2 acc = make_float2(0.0f, 0.0f);
#pragma unroll
        for (int w = 0; w < L32_WARPS; w++) {
            const float wt = cw[w * 16 + r];
            const float2 x = *(const float2 *)(part + ((size_t)w * 16 + r) * (D + 2) + d);
            acc.x += wt * x.x;
            acc.y += wt * x.y;
        }
        *(float2 *)(a.work + doff[r] + d) = acc;
    }

    // the ticket: the head's last CTA resets its counters (and, fold, merges the nc partials)
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) s_last = atomicAdd(&l32_arrivals[hk * L32_PAD], 1u) == (unsigned)nc - 1u;
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    if (threadIdx.x == 0) l32_claims[hk * L32_PAD] = 0u, l32_arrivals[hk * L32_PAD] = 0u;
    if (!fold) return;
    // row r (head hk G + r) by warp r % 4: lane j holds slots j and j + 32's (max, sum), then
    // dims lane + 32 k of every slot, U slots' loads at a time (L2: cg loads, not L1)
    constexpr int U = 24, DK = D / 32;
    for (int r = warp; r < G; r += L32_WARPS) {
        const int h = hk * G + r;
        const float *pr = a.work + (tok + (size_t)r * a.plan_nsl) * (D + 2);
        float m0 = -INFINITY, l0 = 0.0f, m1 = -INFINITY, l1 = 0.0f;
        if (lane < nc) m0 = __ldcg(pr + (size_t)lane * (D + 2) + D), l0 = __ldcg(pr + (size_t)lane * (D + 2) + D + 1);
        if (lane + 32 < nc)
            m1 = __ldcg(pr + (size_t)(lane + 32) * (D + 2) + D), l1 = __ldcg(pr + (size_t)(lane + 32) * (D + 2) + D + 1);
        const float M = warp_max(fmaxf(m0, m1));
        const float w0 = m0 == -INFINITY ? 0.0f : exp2f(m0 - M), w1 = m1 == -INFINITY ? 0.0f : exp2f(m1 - M);
        const float L = warp_sum(w0 * l0 + w1 * l1);
        float acc[DK];
#pragma unroll
        for (int k = 0; k < DK; k++) acc[k] = 0.0f;
        for (int s0 = 0; s0 < nc; s0 += U) {
            float x[U][DK];
#pragma unroll
            for (int u = 0; u < U; u++)
#pragma unroll
                for (int k = 0; k < DK; k++) x[u][k] = s0 + u < nc ? __ldcg(pr + (size_t)(s0 + u) * (D + 2) + lane + 32 * k) : 0.0f;
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int s = s0 + u;
                const float w = __shfl_sync(0xffffffffu, s < 32 ? w0 : w1, s & 31);
#pragma unroll
                for (int k = 0; k < DK; k++) acc[k] += (s < nc ? w : 0.0f) * x[u][k];
            }
        }
        const float inv = L > 0.0f ? 1.0f / L : 0.0f;
#pragma unroll
        for (int k = 0; k < DK; k++) {
            const float val = acc[k] * inv;
            const int e = h * D + 32 * k + lane; // (lanes hold a natural block of 32)
            if (a.out_q8) {
                // the int8 form of the next product's input, as attn.cu's attn_emit_q8 writes it
                const int Kx = a.ldo;
                const float am = warp_max(fabsf(val));
                const float dq = am / 127.0f;
                const int q = am == 0.0f ? 0 : (int)roundf(val / dq);
                const int sq = __reduce_add_sync(0xffffffffu, q);
                a.out_q8[(size_t)t0 * Kx + p64_at(e)] = (int8_t)q;
                if (lane == 0) {
                    const size_t gi = (size_t)t0 * (Kx / 32) + (size_t)(e >> 5);
                    a.out_q8d[gi] = dq;
                    a.out_q8s[gi] = dq * (float)sq;
                }
            } else {
                float *row = a.out + (size_t)t0 * a.ldo;
                row[a.out_p64 ? p64_at(e) : (size_t)e] = val;
            }
        }
    }
}

int g_l32 = -1;         // SPARKD_L32 (read once; default 3, deterministic; mode 1 + QKV measured +3.7% at 32K b1 in GPU run 1)
long g_l32_launches = 0; // (l32_dec_kernel launches so far: the selftest's proof that it ran)
long g_l32_qkv_launches = 0; // (of them with the q / k / v rows made inside: SPARKD_L32_QKV)
int g_l32_qkv = -1; // SPARKD_L32_QKV (read once; default 1 since GPU run 1; needs SPARKD_L32 != 0)

template <int D, bool QKV> int l32_launch(const cuda_attn_args *a, int fold, int ctl, const cuda_qkv_args *qa, void *stream, err *e) {
    static bool attr[64];
    CUDA_TRY(cuda_smem_once(l32_dec_kernel<D, QKV>, l32_smem<D>::TOTAL, attr));
    CUDA_TRY(cuda_launch(l32_dec_kernel<D, QKV>, dim3((unsigned)a->plan_items, (unsigned)a->n_kv), dim3(L32_WARPS * 32),
                         (size_t)l32_smem<D>::TOTAL, stream, *a, fold, ctl, *qa));
    g_l32_launches++;
    if (QKV) g_l32_qkv_launches++;
    return 0;
}
// (the shapes l32_dec_kernel takes: one token at precision fast, see cuda_l32_dec)
bool l32_shape_ok(const cuda_attn_args *a) {
    const int G = a->n_kv > 0 ? a->n_head / a->n_kv : 0;
    return a->pf_fast && a->plan && a->plan_nslot && a->n_tiles == 1 && a->window <= 0 && !a->sinks && a->kv_type == CUDA_KV_F16 &&
           (a->head_dim == 64 || a->head_dim == 128) && a->n_kv >= 1 && a->n_kv <= L32_MAXKV && G >= 1 && G <= 16 &&
           a->n_head % a->n_kv == 0 && a->kv_block >= L32_STEP && !(a->kv_block & (a->kv_block - 1)) && a->plan_nsl <= 64 &&
           !(a->out_q8 && a->out_p64);
}

} // namespace

extern "C" int cuda_attn_dec_combine_launch(const cuda_attn_args *a, void *stream, err *e); // attn.cu: combine_u after the decode kernel
extern "C" int cuda_attn_dec_l32_gate(void); // attn.cu: 0 = the decode switches route around l32, 1 = not, 2 = + the control

// The mode a launch on `stream` runs. Modes 1 and 2 use l32_claims / l32_arrivals, one set a device, so two launches in
// flight at once on one device (two engines on one GPU: `selftest --tp N`'s shards, each its own stream) would share
// them: only the first stream that launches mode 1 or 2 on a device takes it; any other stream runs mode 3 (no claims,
// no merge: the counters' values do not matter to it).
static uintptr_t l32_owner[64]; // [device]: that stream + 1 (0 = none yet)
extern "C" int cuda_l32_mode(int mode); // (below: SPARKD_L32, read once)
static int l32_mode_on(void *stream) {
    const int mode = cuda_l32_mode(-1);
    if (mode != 1 && mode != 2) return mode;
    int dev = -1;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 3;
    uintptr_t want = (uintptr_t)stream + 1, none = 0;
    if (__atomic_compare_exchange_n(&l32_owner[dev], &none, want, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return mode;
    return none == want ? mode : 3; // (none: the owner found)
}

int g_l32_pre = -1; // SPARKD_L32_PRE (read once): 1 = the first static steps copied before pdl_wait, 2 = and the third into L2

extern "C" long cuda_l32_launches(void) { return g_l32_launches; }
// tests and benches: SPARKD_L32_PRE 0 / 1 / 2 (-1 unchanged); returns the old setting
extern "C" int cuda_l32_pre(int on) {
    if (g_l32_pre < 0) g_l32_pre = cuda_env_int("SPARKD_L32_PRE", 0);
    if (g_l32_pre > 2) g_l32_pre = 2;
    const int was = g_l32_pre;
    if (on >= 0) g_l32_pre = on > 2 ? 2 : on;
    return was;
}
// tests and benches: mode 0..3 (-1 unchanged); returns the old mode
extern "C" int cuda_l32_mode(int mode) {
    if (g_l32 < 0) g_l32 = cuda_env_int("SPARKD_L32", 3);
    if (g_l32 > 3) g_l32 = 0;
    const int was = g_l32;
    if (mode >= 0 && mode <= 3) g_l32 = mode;
    return was;
}

// attn.cu's attn_dec_launch (the decode plan's path, precision fast): -1 not taken (the caller
// runs its kernels), 0 attention and combine launched (SPARKD_L32 = 2), -2 attention launched and
// the caller launches its combine (SPARKD_L32 = 1), > 0 an error. ctl: 1 = the selftest's control
// (partial sums halved); SPARKD_L32_PRE adds 2 (1) or 6 (2). Fixed per batch size and layer (a graph replays it): one token, no
// window, no sinks, head_dim 64 / 128, G <= 16, KV blocks a power of two >= 16.
extern "C" int cuda_l32_dec(const cuda_attn_args *a, int ctl, void *stream, err *e) {
    const int mode = l32_mode_on(stream);
    if (mode == 0 || !l32_shape_ok(a)) return -1;
    const int fold = mode == 2;
    const int pre = cuda_l32_pre(-1);
    if (pre) ctl |= pre == 2 ? 6 : 2;
    if (mode == 3) ctl |= 8;
    cuda_qkv_args none;
    memset(&none, 0, sizeof none);
    const int rc = a->head_dim == 128 ? l32_launch<128, false>(a, fold, ctl, &none, stream, e) : l32_launch<64, false>(a, fold, ctl, &none, stream, e);
    if (rc) return rc;
    return fold ? 0 : -2;
}

extern "C" long cuda_l32_qkv_launches(void) { return g_l32_qkv_launches; }
// tests and benches: SPARKD_L32_QKV 0 / 1 (-1 unchanged); returns the old setting
extern "C" int cuda_l32_qkv(int on) {
    if (g_l32_qkv < 0) g_l32_qkv = cuda_env_int("SPARKD_L32_QKV", 1) ? 1 : 0;
    const int was = g_l32_qkv;
    if (on >= 0) g_l32_qkv = on ? 1 : 0;
    return was;
}
// engine.cu, before it would launch cuda_qkv_rope_store for T tokens: 1 = the q / k / v rows can be made
// inside the attention launch (SPARKD_L32_QKV on, SPARKD_L32 != 0, one token, f16 KV, no split-K partials,
// d64 / d128, RoPE of <= 256 dims); then cuda_l32_qkv_attention replaces both launches.
extern "C" int cuda_l32_qkv_takes(const cuda_qkv_args *qa, int T) {
    const int G = qa->n_kv > 0 ? qa->n_head / qa->n_kv : 0;
    return cuda_l32_qkv(-1) && cuda_l32_mode(-1) != 0 && cuda_attn_dec_l32_gate() && T == 1 && qa->kv_type == CUDA_KV_F16 && qa->pq.nz <= 0 && !qa->pq.g2 &&
           qa->pk.nz <= 0 && !qa->pk.g2 && qa->pv.nz <= 0 && !qa->pv.g2 && (qa->head_dim == 64 || qa->head_dim == 128) &&
           qa->n_rot >= 0 && qa->n_rot <= qa->head_dim && !(qa->n_rot & 1) && (qa->n_rot == 0 || qa->inv_freq) && qa->n_kv >= 1 &&
           qa->n_kv <= L32_MAXKV && G >= 1 && G <= 16 && qa->n_head % qa->n_kv == 0 && qa->kv.k && qa->kv.v;
}
// The token's norm / RoPE / KV store and its attention in one launch (after cuda_l32_qkv_takes said 1);
// where aa's shape is not l32's after all: cuda_qkv_rope_store then cuda_attention, as before.
extern "C" int cuda_l32_qkv_attention(const cuda_qkv_args *qa, const cuda_attn_args *aa, const cuda_tokens *tk, void *stream, err *e) {
    if (!cuda_l32_qkv_takes(qa, tk->T) || !l32_shape_ok(aa) || aa->head_dim != qa->head_dim || aa->n_head != qa->n_head ||
        aa->n_kv != qa->n_kv || aa->kv_block != qa->kv_block || aa->kv.k != qa->kv.k || aa->kv.v != qa->kv.v) {
        const int rc = cuda_qkv_rope_store(qa, tk, stream, e);
        return rc ? rc : cuda_attention(aa, stream, e);
    }
    const int mode = l32_mode_on(stream), pre = cuda_l32_pre(-1), fold = mode == 2;
    const int ctl = (pre == 2 ? 6 : pre ? 2 : 0) | (mode == 3 ? 8 : 0) | (cuda_attn_dec_l32_gate() == 2 ? 1 : 0);
    const int rc = aa->head_dim == 128 ? l32_launch<128, true>(aa, fold, ctl, qa, stream, e) : l32_launch<64, true>(aa, fold, ctl, qa, stream, e);
    return rc || fold ? rc : cuda_attn_dec_combine_launch(aa, stream, e); // (SPARKD_L32 = 1: today's combine after it)
}
