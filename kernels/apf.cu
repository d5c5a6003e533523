// apf.cu — round 10, helper apf: the prefill attention at precision fast on CTAs of 8 warps
// (attn_apf_kernel), routed from attn.cu's prefill dispatch (cuda_attention, `prefill` set)
// when SPARKD_APF is on (default) and the call is at precision fast (pf_fast); exact calls and
// SPARKD_APF=0 keep attn_pf_kernel exactly as before.
//
// Same work items as attn_pf_kernel (one engine tile of up to cuda_attn_pf_tokens(G) tokens x
// the G query heads of one KV head = up to 64 rows, token-major; n_split CTAs over a tile's
// positions; the longest-first order and pp's snake), but a CTA is 4 NH warps (NH = 2: 8 warps; the
// template keeps NH = 4, 16 warps, measured slower in run 0 and not instantiated): warp w takes rows
// 16 (w & 3) .. + 15 and, of every K/V stage of 32 NH positions, the 32 positions 32 (w >> 2) ..;
// the NH warps of a row group merge their (max, sum, O) through shared memory at the end.
// Why (round 9's kbench and the SASS of attn_pf_kernel<128>):
// - the longest CTA of pp512 walks 16 tiles of 32 positions one after the other, alone on its
//   SM for most of it (its partner CTA of the snake is short): its chain of 16 steps (S, softmax,
//   PV, two barriers and a copy latency each) is the kernel's time. Here it is 8 steps of 64
//   positions, each warp doing half of a step, with one barrier a step;
// - Q was staged by a loop whose loads sit in branches (rows < R), so each of a thread's 32
//   iterations waited for its own L2 round trip before the next load issued: here each thread
//   issues all its Q loads (float4, rows clamped, no branch) before converting any;
// - a stage's cp.async waited for a block-table load (two dependent round trips a tile): here
//   the block ids of tile kt + 2 are loaded while tile kt + 1's copies issue.
// Q is f16 (precision fast: hi only, no lo rows), scale * log2 e folded in, so shared memory is
// Q 64 x (D + 8) halves + 2 stages x (K + V) 64 x (D + 8) halves = 87 KB at d128 (2 CTAs an SM on
// an H200: 16 warps; 1 on a GB10), 46 KB at d64. The arithmetic per warp (ldmatrix, mma.sync
// m16n8k16, exp2 online softmax, P as the A operand of PV from registers) is attn_pf_kernel's
// fast path.
#include "cuda_kern.h"

#include <stdlib.h>

#include "kern_util.cuh"
#include "attn_pf.cuh"

#define APF_ROWS 64 // rows per CTA (= attn.cu's PF_ROWS: the engine's tiles)
#define APF_WN 32   // positions per warp and stage
// NH parts of a stage: CTA of 4 NH warps, stages of 32 NH positions (NH = 2 is what runs)

static __device__ __forceinline__ uint32_t apf_smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
static __device__ __forceinline__ void apf_cp16(void *dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(apf_smem_u32(dst)), "l"(src));
}
static __device__ __forceinline__ void apf_commit() { asm volatile("cp.async.commit_group;\n" ::); }
static __device__ __forceinline__ void apf_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::); }
static __device__ __forceinline__ void apf_ldsm4(uint32_t *r, const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(apf_smem_u32(p)));
}
static __device__ __forceinline__ void apf_ldsm4t(uint32_t *r, const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(apf_smem_u32(p)));
}
static __device__ __forceinline__ void apf_mma(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// 2^x (MUFU.EX2, denormal results flushed: no range fix-up around it); 2^-inf = 0
static __device__ __forceinline__ float apf_ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}
static __device__ __forceinline__ uint32_t apf_h2(float x, float y) {
    const __half2 h = __floats2half2_rn(x, y);
    return *(const uint32_t *)&h;
}

template <int D, int NH> struct apf_smem {
    static constexpr int BN = 32 * NH;              // positions of a stage
    static constexpr int LD = D + 8;                // halves per row (16 B pad: ldmatrix banks)
    static constexpr int Q = APF_ROWS * LD * 2;     // Q (f16) rows, bytes
    static constexpr int STAGE = 2 * BN * LD * 2;   // K + V rows of one stage, bytes
    static constexpr int TOTAL = Q + 2 * STAGE;     // NH 2: 87,040 B at d128, 46,080 at d64; NH 4: 156,672 / 82,944
    // the merge at the end (in the stages): per warp of parts 1.., O (D / 8 n-tiles x 4) then (m, l) x 2, per lane
    static constexpr int MERGE = (NH - 1) * 4 * 32 * (D / 2 + 4) * 4;
    static_assert(MERGE <= 2 * STAGE, "merge buffer");
};

// order > 0: pp's snake over waves of `order` (= SM count) CTAs, as attn_pf_kernel (attn.cu).
template <int D, int NH, int MINB>
__global__ __launch_bounds__(NH * 128, MINB) void attn_apf_kernel(const cuda_attn_args a, int order) {
    using SM = apf_smem<D, NH>;
    constexpr int LD = SM::LD, NT = D / 8, CH = D / 8, APF_BN = SM::BN, NTH = NH * 128;
    constexpr int NR = APF_BN * CH / NTH; // K (and V) chunks of 16 B a thread and stage
    constexpr int RS = NTH / CH;          // rows between a thread's chunks
    constexpr int TPR = NTH / APF_ROWS;   // threads a Q row
    extern __shared__ __align__(16) uint8_t apfsm[];
    __half *qs = (__half *)apfsm;
    __half *kvs = (__half *)(apfsm + SM::Q); // [stage][K APF_BN x LD | V APF_BN x LD]
    pdl_trigger();
    pdl_wait();
    int tix, hk;
    pf_item(a, order, tix, hk); // (attn_pf.cuh: the tile and KV head of this CTA, pp's snake order)
    const cuda_attn_tile tile = a.tiles[tix];
    const int G = a.n_head / a.n_kv, R = tile.n * G;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, c = lane & 3;
    const int rg = warp & 3, kp = warp >> 2; // row group (16 rows), part of a stage (32 positions)
    const float qsc = a.scale * 1.4426950408889634f;
    const int last = tile.pos0 + tile.n - 1;
    const int first = a.window > 0 ? max(0, tile.pos0 - a.window + 1) : 0;
    const int ntile = (last - first) / APF_BN + 1;
    const int per = (ntile + a.n_split - 1) / a.n_split;
    const int kt0 = blockIdx.z * per, kt1 = min(ntile, kt0 + per);
    const int32_t *btab = a.block_tables + (size_t)tile.seq * a.max_blocks;
    const __half *K = (const __half *)a.kv.k, *V = (const __half *)a.kv.v;
    const int ch = tid % CH, rb = tid / CH;
    // p / kv_block as umulhi(p, ceil(2^32 / kv_block)): exact while p * kv_block < 2^32 (cuda_apf_takes)
    const uint32_t kvb = (uint32_t)a.kv_block, kvm = (uint32_t)((0x100000000ull + kvb - 1) / kvb);

    // the block ids of this thread's rows rb + RS i of tile kt (positions past `last`: the last row)
    auto ids = [&](int kt, int *b) {
        const int p0 = first + kt * APF_BN;
#pragma unroll
        for (int i = 0; i < NR; i++) b[i] = btab[__umulhi((uint32_t)min(p0 + rb + RS * i, last), kvm)];
    };
    auto issue = [&](int kt, int stage, const int *b) {
        __half *kb = kvs + (size_t)stage * 2 * APF_BN * LD, *vb = kb + APF_BN * LD;
        const int p0 = first + kt * APF_BN;
#pragma unroll
        for (int i = 0; i < NR; i++) {
            const int rr = rb + RS * i, p = min(p0 + rr, last);
            const size_t row = ((size_t)b[i] * a.n_kv + hk) * kvb + (p - __umulhi((uint32_t)p, kvm) * kvb);
            apf_cp16(kb + rr * LD + ch * 8, K + row * D + ch * 8);
            apf_cp16(vb + rr * LD + ch * 8, V + row * D + ch * 8);
        }
    };
    // Q rows (token r / G, head hk * G + r % G) * scale * log2 e -> f16; rows >= R zero. Thread: row
    // tid / TPR, dims 4 TPR i + 4 (tid % TPR). The f32 rows come by cp.async into stage 1 (free until the
    // loop's first barrier), their own group first, so they are in flight before the first tile's block-id
    // round trip (run 0's ncu: the Q loads waited behind it; ptxas sinks plain loads below the copies).
    // Each thread converts the chunks it copied itself: no barrier before the conversion.
    static_assert(APF_ROWS * D * 4 <= SM::STAGE, "Q f32 rows in a stage");
    const int qr = tid / TPR, q4 = tid % TPR;
    float *qf = (float *)(apfsm + SM::Q + SM::STAGE); // (APF_ROWS, D) f32, until the loop starts
    {
        const int rr = min(qr, R - 1);
        const float *src = a.q + (size_t)(tile.t0 + rr / G) * a.ldq + (size_t)(hk * G + rr % G) * D + 4 * q4;
#pragma unroll
        for (int i = 0; i < D / (4 * TPR); i++) apf_cp16(qf + qr * D + 4 * TPR * i + 4 * q4, src + 4 * TPR * i);
    }
    apf_commit();
    int bid[NR];
    if (kt0 < kt1) {
        ids(kt0, bid);
        issue(kt0, 0, bid);
    }
    apf_commit();
    if (kt0 + 1 < kt1) ids(kt0 + 1, bid);
    asm volatile("cp.async.wait_group 1;\n" ::); // the Q group
    {
        const float sc = qr < R ? qsc : 0.0f;
#pragma unroll
        for (int i = 0; i < D / (4 * TPR); i++) {
            const float4 v = *(const float4 *)(qf + qr * D + 4 * TPR * i + 4 * q4);
            *(uint2 *)(qs + qr * LD + 4 * TPR * i + 4 * q4) = make_uint2(apf_h2(v.x * sc, v.y * sc), apf_h2(v.z * sc, v.w * sc));
        }
    }
    // this lane's rows 16 rg + g (+ 8): their positions, -1 past R; the warp's span
    const int r0 = 16 * rg + g;
    const int rpos[2] = {r0 < R ? tile.pos0 + r0 / G : -1, r0 + 8 < R ? tile.pos0 + (r0 + 8) / G : -1};
    const bool wact = 16 * rg < R;
    const int wmin = tile.pos0 + (16 * rg) / G, wmax = tile.pos0 + min(16 * rg + 15, R - 1) / G;

    float o[NT][4], mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.0f, 0.0f};
#pragma unroll
    for (int n = 0; n < NT; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

    for (int kt = kt0, stage = 0; kt < kt1; kt++, stage ^= 1) {
        apf_wait_all();
        __syncthreads(); // tile kt (and Q) visible to every warp; every warp done with tile kt - 1's stage
        if (kt + 1 < kt1) {
            issue(kt + 1, stage ^ 1, bid);
            if (kt + 2 < kt1) ids(kt + 2, bid);
        }
        apf_commit();
        const int p0 = first + kt * APF_BN + APF_WN * kp;
        // the warp's rows see some position of its part (causal; window: not all before it)
        if (wact && p0 <= wmax && (a.window <= 0 || p0 + APF_WN - 1 > wmin - a.window)) {
            const __half *kb = kvs + (size_t)stage * 2 * APF_BN * LD + APF_WN * kp * LD, *vb = kb + APF_BN * LD;
            float s[APF_WN / 8][4];
#pragma unroll
            for (int nt = 0; nt < APF_WN / 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
            for (int ks = 0; ks < D / 16; ks++) {
                uint32_t ah[4];
                apf_ldsm4(ah, qs + (16 * rg + ((lane >> 3) & 1) * 8 + (lane & 7)) * LD + ks * 16 + (lane >> 4) * 8);
#pragma unroll
                for (int h2 = 0; h2 < APF_WN / 16; h2++) {
                    uint32_t kf[4]; // b0, b1 of positions 16 h2 + 0-7, then of + 8-15
                    apf_ldsm4(kf, kb + (16 * h2 + (lane >> 4) * 8 + (lane & 7)) * LD + ks * 16 + ((lane >> 3) & 1) * 8);
                    apf_mma(s[2 * h2], ah, kf[0], kf[1]);
                    apf_mma(s[2 * h2 + 1], ah, kf[2], kf[3]);
                }
            }
            // causal / window mask, only where some row of the warp does not see all 32 positions (rows
            // past R: zero Q, finite scores, dropped at the end)
            if (p0 + APF_WN - 1 > wmin || (a.window > 0 && p0 <= wmax - a.window)) {
#pragma unroll
                for (int hh = 0; hh < 2; hh++)
#pragma unroll
                    for (int nt = 0; nt < APF_WN / 8; nt++)
#pragma unroll
                        for (int e = 0; e < 2; e++) {
                            const int p = p0 + nt * 8 + 2 * c + e, pr = rpos[hh];
                            if (!(p <= pr && (a.window <= 0 || p > pr - a.window))) s[nt][2 * hh + e] = -INFINITY;
                        }
            }
            // online softmax per row; P as the A operand of P V per 16 positions
            uint32_t ph[APF_WN / 16][4];
            float cr[2]; // the rows' O rescale (1: max unchanged)
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                float v[APF_WN / 4];
#pragma unroll
                for (int nt = 0; nt < APF_WN / 8; nt++) v[nt * 2] = s[nt][2 * hh], v[nt * 2 + 1] = s[nt][2 * hh + 1];
                float mx = v[0];
#pragma unroll
                for (int i = 1; i < APF_WN / 4; i++) mx = fmaxf(mx, v[i]);
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float mn = fmaxf(mrow[hh], mx), ms = mn == -INFINITY ? 0.0f : mn; // (a row that saw nothing: 2^-inf = 0)
                const float corr = apf_ex2(mrow[hh] - ms);
                mrow[hh] = mn;
                float ps = 0.0f;
#pragma unroll
                for (int i = 0; i < APF_WN / 4; i++) {
                    v[i] = apf_ex2(v[i] - ms);
                    ps += v[i];
                }
                lrow[hh] = lrow[hh] * corr + ps;
                cr[hh] = corr;
#pragma unroll
                for (int kc = 0; kc < APF_WN / 16; kc++) {
                    ph[kc][hh] = apf_h2(v[4 * kc], v[4 * kc + 1]);
                    ph[kc][2 + hh] = apf_h2(v[4 * kc + 2], v[4 * kc + 3]);
                }
            }
            // O *= the rescale, unless no row of the warp changed its max (2^0 = 1 exactly)
            if (!__all_sync(0xffffffffu, cr[0] == 1.0f && cr[1] == 1.0f)) {
#pragma unroll
                for (int n = 0; n < NT; n++) o[n][0] *= cr[0], o[n][1] *= cr[0], o[n][2] *= cr[1], o[n][3] *= cr[1];
            }
            // O += P V: V fragments of positions 16 kc.., dims 16 j .. 16 j + 15 per ldmatrix.trans
#pragma unroll
            for (int j = 0; j < D / 16; j++) {
#pragma unroll
                for (int kc = 0; kc < APF_WN / 16; kc++) {
                    uint32_t vf[4];
                    apf_ldsm4t(vf, vb + (16 * kc + ((lane >> 3) & 1) * 8 + (lane & 7)) * LD + j * 16 + (lane >> 4) * 8);
                    apf_mma(o[2 * j], ph[kc], vf[0], vf[1]);
                    apf_mma(o[2 * j + 1], ph[kc], vf[2], vf[3]);
                }
            }
        }
    }
    apf_wait_all();
    __syncthreads(); // every warp done with the stages: they hold the merge now

    // parts 1..NH-1 put (O, m, l) in shared memory in fragment order; part 0 merges them
    if (kp > 0) {
        float *mg = (float *)(apfsm + SM::Q) + (size_t)((kp - 1) * 4 + rg) * 32 * (D / 2 + 4);
#pragma unroll
        for (int n = 0; n < NT; n++) *(float4 *)(mg + (size_t)(4 * n) * 32 + 4 * lane) = make_float4(o[n][0], o[n][1], o[n][2], o[n][3]);
        *(float4 *)(mg + (size_t)(D / 2) * 32 + 4 * lane) = make_float4(mrow[0], mrow[1], lrow[0], lrow[1]);
    }
    __syncthreads();
    if (kp > 0) return;
#pragma unroll 1
    for (int part = 1; part < NH; part++) {
        const float *mg = (const float *)(apfsm + SM::Q) + (size_t)((part - 1) * 4 + rg) * 32 * (D / 2 + 4);
        const float4 ml = *(const float4 *)(mg + (size_t)(D / 2) * 32 + 4 * lane);
        const float mo[2] = {ml.x, ml.y}, lo[2] = {ml.z, ml.w};
        float c0[2], c1[2];
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            const float mn = fmaxf(mrow[hh], mo[hh]);
            c0[hh] = mrow[hh] == -INFINITY ? 0.0f : exp2f(mrow[hh] - mn);
            c1[hh] = mo[hh] == -INFINITY ? 0.0f : exp2f(mo[hh] - mn);
            mrow[hh] = mn;
            lrow[hh] = lrow[hh] * c0[hh] + lo[hh] * c1[hh];
        }
#pragma unroll
        for (int n = 0; n < NT; n++) {
            const float4 u = *(const float4 *)(mg + (size_t)(4 * n) * 32 + 4 * lane);
            o[n][0] = o[n][0] * c0[0] + u.x * c1[0];
            o[n][1] = o[n][1] * c0[0] + u.y * c1[0];
            o[n][2] = o[n][2] * c0[1] + u.z * c1[1];
            o[n][3] = o[n][3] * c0[1] + u.w * c1[1];
        }
    }

    pf_rows_out<D, NT>(a, tile.t0, hk, G, R, r0, c, o, mrow, lrow); // rows out (attn_pf.cuh)
}

// ---------------------------------------------------------------- switch and launch

static int g_apf_force = -1; // cuda_apf_set: -1 = as SPARKD_APF says
static long g_apf_launches = 0;

// SPARKD_APF (default 1): 0 = attn_pf_kernel as before; 1 = attn_apf_kernel<D, 2, 2> (8 warps, <= 128
// registers: 2 CTAs an SM on an H200) for precision-fast prefill calls; 2 = attn_apf_kernel<D, 2, 1> (the
// same code without the register cap: 1 CTA an SM; run 1's A/B). (Run 0's SPARKD_APF=2, 16-warp CTAs
// <D, 4, 1>, lost: pp512 36.7 us against 26.2.) 3 = 2 where the grid has more CTAs than 2 an SM (several
// waves), else 1. cuda_apf_set(v) overrides it
// (selftest, kbench); -1 restores the environment's.
extern "C" void cuda_apf_set(int v) { g_apf_force = v; }
extern "C" int cuda_apf_mode(void) {
    const int v = g_apf_force >= 0 ? g_apf_force : cuda_env_int("SPARKD_APF", 1);
    return v > 3 ? 3 : v;
}
extern "C" long cuda_apf_launches(void) { return g_apf_launches; }
// Whether attn.cu's prefill dispatch hands call a to cuda_apf_launch (shape already checked by
// cuda_attn_pf_ok there: f16 KV, head_dim 64 / 128, G <= 64).
extern "C" int cuda_apf_takes(const cuda_attn_args *a) {
    return a->pf_fast && cuda_apf_mode() > 0 && (a->head_dim == 64 || a->head_dim == 128) && a->kv_type == CUDA_KV_F16 &&
           a->ldq % 4 == 0 && ((uintptr_t)a->q & 15) == 0 && // (Q rows by float4)
           a->kv_block >= 2 && (uint64_t)a->max_blocks * a->kv_block * a->kv_block < (1ull << 32); // (the kernel's p / kv_block)
}

extern "C" int cuda_pp_mode(void); // gemm.cu: SPARKD_PP's bits (8: the snake order)
// Launches attn_apf_kernel<D, NH, MINB>; -1 (nothing launched) when the device cannot hold its CTA.
template <int D, int NH, int MINB>
static int apf_launch(const cuda_attn_args *a, void *stream, err *e) {
    using SM = apf_smem<D, NH>;
    static int state = 0, sms = 0, res = 0; // state 0: not set up, 1: ready, 2: does not fit
    if (state == 0) {
        int dev = 0, optin = 0;
        state = 2;
        if (cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess && optin >= SM::TOTAL) {
            CUDA_TRY(cudaFuncSetAttribute(attn_apf_kernel<D, NH, MINB>, cudaFuncAttributeMaxDynamicSharedMemorySize, SM::TOTAL));
            if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&res, attn_apf_kernel<D, NH, MINB>, NH * 128, SM::TOTAL) != cudaSuccess) res = 0;
            state = res > 0 ? 1 : 2;
        }
        cudaGetLastError();
    }
    if (state != 1) return -1;
    const long n = (long)a->n_tiles * a->n_kv;
    const int order = (cuda_pp_mode() & 8) && a->n_split == 1 && n > sms && n <= (long)res * sms ? sms : 0;
    CUDA_TRY(cuda_launch(attn_apf_kernel<D, NH, MINB>, dim3((unsigned)a->n_tiles, (unsigned)a->n_kv, (unsigned)a->n_split),
                         dim3(NH * 128), (size_t)SM::TOTAL, stream, *a, order));
    g_apf_launches++;
    return 0;
}

// The prefill attention of call a (cuda_apf_takes(a)): the output, or n_split partials for
// attn.cu's combine launch. Returns 0, the launch error, or -1 when no variant fits the device
// (the caller then runs attn_pf_kernel).
extern "C" int cuda_apf_launch(const cuda_attn_args *a, void *stream, err *e) {
    int rc = -1;
    const int mode = cuda_apf_mode();
    static int sms = 0;
    if (mode == 3 && sms == 0) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) sms = 1 << 20;
        cudaGetLastError();
    }
    if (mode == 2 || (mode == 3 && (long)a->n_tiles * a->n_kv * a->n_split > 2L * sms))
        rc = a->head_dim == 64 ? apf_launch<64, 2, 1>(a, stream, e) : apf_launch<128, 2, 1>(a, stream, e);
    if (rc == -1) rc = a->head_dim == 64 ? apf_launch<64, 2, 2>(a, stream, e) : apf_launch<128, 2, 2>(a, stream, e);
    return rc;
}
