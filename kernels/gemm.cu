// gemm.cu — Y = X W^T on the tensor cores (mma.sync.m16n8k16, f32 accumulation), and
// cuda_matmul, which picks it or the GEMV.
//
// Weights stay in their codes until registers: a CTA streams 128 rows x 64 elements of
// codes (plus hi bits) per step through shared memory with cp.async (3 stages; 2 for
// 16-bit weights), and each warp turns its 16 rows' codes straight into A fragments
// (exact small integers in f16: qfmt.cuh). The activation tile (64 tokens, hi and lo f16
// halves, P64 order so a quad lane's B fragments of all four k16 steps are 32 contiguous
// bytes) comes through the same pipeline. Per scale group, a warp multiplies codes by
// hi and lo into a scratch fragment and folds it into the accumulator with the group's f32
// scale (and the min times the group's activation sum), so the result carries no weight
// rounding and ~22 bits of activation: it matches dequantize-then-f32 to ~1e-6.
//
// Warp w of the CTA owns rows [16w, 16w + 16) of the tile and all 64 tokens (eight n8
// tiles); tiles past the last token are skipped, so small batches cost few MMAs.
//
// hfast_kernel (below) is precision fast's product for T >= 33: the weights rounded once to
// f16 in the fragment, the hi half alone, no per-group fold (~1e-4..7e-4 relative); hf2_kernel
// computes the same as a software pipeline and is the default for Q8_0, Q4_K, Q5_K, Q6_K.
#include "cuda_kern.h"

#include <pthread.h>
#include <string.h>

#include "fz_part.cuh"
#include "kern_util.cuh"
#include "qfmt.cuh"

#define GB_M 128
#define GB_N 64
#define XP_PITCH 72 // halves per token row of an activation tile (64 + 8: no bank conflicts)

int cuda_gemv_launch(const cuda_mm_args *a, const cuda_mmin *x, int T, void *stream, err *e);
int cuda_mmq_wants(const cuda_mm_args *a, const cuda_mmin *x); // mmq.cu
int cuda_mmq_launch(const cuda_mm_args *a, const cuda_mmin *x, void *stream, err *e);

struct gemm_mat {
    const uint8_t *codes, *hi, *meta;
    uint64_t code_pitch, hi_pitch, meta_pitch;
    float *y;
    int rows, ldy, mtiles;
};
struct gemm_params {
    gemm_mat m[CUDA_MM_MAX_MATS];
    int n, K, T, accumulate, exact;
    int ksplit;       // CTAs along K (grid.z); > 1: partials go to ws, gemm_reduce sums them
    int ntn;          // hf2_kernel: > 0: grid.x = row tiles x ntn token tiles, token tile fastest (0: grid.y)
    int pfw0;         // hfw_kernel: always 0 (SPARKD_PF_W0 removed: no change); the read stays: without it ptxas
                      // reschedules hfw3 on sm_90a (unmeasured; kernels/PERF.md "Round 8, helper pf")
    float *ws;        // (ksplit, T, rows of all matrices) f32
    int ws_rows;      // rows of all matrices
    int row0[CUDA_MM_MAX_MATS]; // first ws row of each matrix
    const uint16_t *xh, *xl;
    const float *gsum, *tscale;
    cuda_defer *defer; // host side: cuda_mm_args.defer (fz: no reduce launch)
    int pair_act;      // hfw_kernel<.., PA = true> (round 9, pp): CUDA_ACT_* + 1 of the paired gate+up epilogue
    const uint8_t *ximg; // hfw_kernel<.., XB = true> (round 11, fc): the x tiles' shared-memory images (hfw_ximg_kernel)
};

template <uint32_t F> struct gemm_cfg {
    static constexpr qfmt f = qfmt_of(F);
    static constexpr int wpitch = f.cbits == 4 ? 32 : f.cbits == 8 ? 64 : 144; // smem bytes per row
    static constexpr int hpitch = f.hbits == 1 ? 8 : f.hbits == 2 ? 16 : 0;
    static constexpr int xs = GB_N * XP_PITCH * 2;
    static constexpr int gs = GB_N * 2 * 4;
    static constexpr int off_xl = xs, off_gs = 2 * xs, off_w = 2 * xs + gs;
    static constexpr int off_h = off_w + GB_M * wpitch;
    static constexpr int stage = off_h + GB_M * hpitch;
    static constexpr int stages = f.cbits == 16 ? 2 : 3;
    static constexpr int smem = stage * stages;
    static constexpr int ngroups = f.group == 16 ? 4 : f.group == 32 ? 2 : 0; // per chunk
};

// Two outputs of a warp's accumulator fragment, rows rg and rg8 of matrix mi at token tk, times the
// token's scale: into the split-K room (ksplit > 1) or y (adding to it with p.accumulate). The
// epilogue of hfast_kernel, hf2_kernel, hfw_kernel and w64_kernel alike.
__device__ __forceinline__ void hf_store2(const gemm_params &p, const gemm_mat &M, int mi, int tk, int rg, int rg8, int rows,
                                          float v0, float v1) {
    const float ts = p.tscale[tk];
    if (p.ksplit > 1) {
        float *w = p.ws + ((size_t)blockIdx.z * p.T + tk) * p.ws_rows + p.row0[mi];
        if (rg < rows) w[rg] = v0 * ts;
        if (rg8 < rows) w[rg8] = v1 * ts;
        return;
    }
    float *y = M.y + (size_t)tk * M.ldy;
    if (rg < rows) y[rg] = p.accumulate ? y[rg] + v0 * ts : v0 * ts;
    if (rg8 < rows) y[rg8] = p.accumulate ? y[rg8] + v1 * ts : v1 * ts;
}

__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async8(void *dst, const void *src, bool valid) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 8 : 0));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

template <bool BF>
__device__ __forceinline__ void mma16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    if constexpr (BF)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                     "{%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                     "{%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Issues the cp.async copies of chunk kc into stage buffer sb.
template <uint32_t F>
__device__ __forceinline__ void gemm_load_stage(uint8_t *sb, const gemm_params &p, const gemm_mat &M,
                                                int m0, int n0, int kc) {
    using C = gemm_cfg<F>;
    constexpr qfmt f = C::f;
    const int tid = threadIdx.x;
    // activations: 64 tokens x 128 bytes, hi (and lo)
    // activations: the tile's tokens only (rows past T are never read back: a column of
    // the product depends on its own B column alone)
    const int ntok = min(GB_N, p.T - n0);
    for (int piece = tid; piece < ntok * 8; piece += 256) {
        const int tok = piece >> 3, part = piece & 7;
        const size_t src = (size_t)(n0 + tok) * p.K + (size_t)kc * 64 + part * 8;
        cp_async16(sb + tok * XP_PITCH * 2 + part * 16, p.xh + src, true);
        if (p.exact) cp_async16(sb + C::off_xl + tok * XP_PITCH * 2 + part * 16, p.xl + src, true);
    }
    if constexpr (f.has_min) {
        if (tid < ntok) cp_async8(sb + C::off_gs + tid * 8, p.gsum + (size_t)(n0 + tid) * (p.K / 32) + 2 * kc, true);
    }
    constexpr int ppr = f.cbits * 64 / 8 / 16; // 16-byte pieces per row
    for (int piece = tid; piece < GB_M * ppr; piece += 256) {
        const int row = piece / ppr, part = piece % ppr;
        const bool v = m0 + row < M.rows;
        const uint8_t *src = M.codes + (uint64_t)(v ? m0 + row : 0) * M.code_pitch + (size_t)kc * (f.cbits * 8) + part * 16;
        cp_async16(sb + C::off_w + row * C::wpitch + part * 16, src, v);
    }
    if constexpr (f.hbits == 1) {
        if (tid < GB_M) {
            const bool v = m0 + tid < M.rows;
            cp_async8(sb + C::off_h + tid * 8, M.hi + (uint64_t)(v ? m0 + tid : 0) * M.hi_pitch + (size_t)kc * 8, v);
        }
    } else if constexpr (f.hbits == 2) {
        if (tid < GB_M) {
            const bool v = m0 + tid < M.rows;
            cp_async16(sb + C::off_h + tid * 16, M.hi + (uint64_t)(v ? m0 + tid : 0) * M.hi_pitch + (size_t)kc * 16, v);
        }
    }
}

template <uint32_t F>
__device__ __forceinline__ void quarter_from_smem(quarter &q, const uint8_t *sb, int row, int c) {
    using C = gemm_cfg<F>;
    constexpr qfmt f = C::f;
    const uint8_t *w = sb + C::off_w + row * C::wpitch;
    if constexpr (f.cbits == 4) {
        const uint2 v = *(const uint2 *)(w + 8 * c);
        q.q.x = v.x;
        q.q.y = v.y;
    } else if constexpr (f.cbits == 8) {
        q.q = *(const uint4 *)(w + 16 * c);
    } else {
        q.q = *(const uint4 *)(w + 32 * c);
        q.q2 = *(const uint4 *)(w + 32 * c + 16);
    }
    if constexpr (f.hbits == 1) q.hb = *(const uint16_t *)(sb + C::off_h + row * 8 + 2 * c);
    else if constexpr (f.hbits == 2) q.hb = *(const uint32_t *)(sb + C::off_h + row * 16 + 4 * c);
}

template <uint32_t F>
__global__ __launch_bounds__(256) void gemm_kernel(const gemm_params p) {
    using C = gemm_cfg<F>;
    constexpr qfmt f = C::f;
    constexpr bool BF = F == QT_BF16;
    constexpr int NGc = C::ngroups;
    extern __shared__ __align__(16) uint8_t smem[];
    pdl_trigger();
    pdl_wait();
    int b = blockIdx.x, mi = 0;
    while (mi + 1 < p.n && b >= p.m[mi].mtiles) b -= p.m[mi++].mtiles;
    const gemm_mat &M = p.m[mi];
    const int m0 = b * GB_M, n0 = blockIdx.y * GB_N;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
    const int nk_all = p.K / 64;
    const int kz0 = (int)((long)nk_all * blockIdx.z / p.ksplit), kz1 = (int)((long)nk_all * (blockIdx.z + 1) / p.ksplit);
    const int nk = kz1 - kz0;
    const int ntiles = min(8, (p.T - n0 + 7) / 8);
    const int rg = m0 + warp * 16 + g, rg8 = rg + 8;
    const uint8_t *meta_g = M.meta + (uint64_t)min(rg, M.rows - 1) * M.meta_pitch;
    const uint8_t *meta_g8 = M.meta + (uint64_t)min(rg8, M.rows - 1) * M.meta_pitch;

    float acc[8][4];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;

#pragma unroll
    for (int s = 0; s < C::stages - 1; s++) {
        if (s < nk) gemm_load_stage<F>(smem + s * C::stage, p, M, m0, n0, kz0 + s);
        cp_commit();
    }
    for (int kc = 0; kc < nk; kc++) {
        cp_wait<C::stages - 2>();
        __syncthreads();
        {
            const int kn = kc + C::stages - 1;
            if (kn < nk) gemm_load_stage<F>(smem + (kn % C::stages) * C::stage, p, M, m0, n0, kz0 + kn);
            cp_commit();
        }
        float sg[NGc > 0 ? NGc : 1], sg8[NGc > 0 ? NGc : 1], mg[NGc > 0 ? NGc : 1], mg8[NGc > 0 ? NGc : 1];
#pragma unroll
        for (int gl = 0; gl < NGc; gl++) {
            group_sm<F>(meta_g, (kz0 + kc) * NGc + gl, sg[gl], mg[gl]);
            group_sm<F>(meta_g8, (kz0 + kc) * NGc + gl, sg8[gl], mg8[gl]);
        }
        const uint8_t *sb = smem + (kc % C::stages) * C::stage;
        uint32_t a[4][4];
        {
            quarter qa, qb;
            quarter_from_smem<F>(qa, sb, warp * 16 + g, c);
            quarter_from_smem<F>(qb, sb, warp * 16 + g + 8, c);
#pragma unroll
            for (int s = 0; s < 4; s++) {
                a[s][0] = quarter_pair<F>(qa, 2 * s);
                a[s][1] = quarter_pair<F>(qb, 2 * s);
                a[s][2] = quarter_pair<F>(qa, 2 * s + 1);
                a[s][3] = quarter_pair<F>(qb, 2 * s + 1);
            }
        }
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            if (nt >= ntiles) break;
            const int tok = nt * 8 + g;
            uint32_t bh[8], bl[8];
            {
                const uint4 *xh = (const uint4 *)(sb + tok * XP_PITCH * 2 + 32 * c);
                const uint4 v0 = xh[0], v1 = xh[1];
                bh[0] = v0.x; bh[1] = v0.y; bh[2] = v0.z; bh[3] = v0.w;
                bh[4] = v1.x; bh[5] = v1.y; bh[6] = v1.z; bh[7] = v1.w;
                if (p.exact) {
                    const uint4 *xl = (const uint4 *)(sb + C::off_xl + tok * XP_PITCH * 2 + 32 * c);
                    const uint4 w0 = xl[0], w1 = xl[1];
                    bl[0] = w0.x; bl[1] = w0.y; bl[2] = w0.z; bl[3] = w0.w;
                    bl[4] = w1.x; bl[5] = w1.y; bl[6] = w1.z; bl[7] = w1.w;
                }
            }
            if constexpr (NGc == 0) {
#pragma unroll
                for (int s = 0; s < 4; s++) {
                    mma16816<BF>(acc[nt], a[s], bh[2 * s], bh[2 * s + 1]);
                    if (p.exact) mma16816<BF>(acc[nt], a[s], bl[2 * s], bl[2 * s + 1]);
                }
            } else {
                constexpr int SPG = 4 / NGc; // k16 steps per scale group
#pragma unroll
                for (int gl = 0; gl < NGc; gl++) {
                    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                    for (int s = gl * SPG; s < gl * SPG + SPG; s++) {
                        mma16816<false>(t, a[s], bh[2 * s], bh[2 * s + 1]);
                        if (p.exact) mma16816<false>(t, a[s], bl[2 * s], bl[2 * s + 1]);
                    }
                    acc[nt][0] = fmaf(sg[gl], t[0], acc[nt][0]);
                    acc[nt][1] = fmaf(sg[gl], t[1], acc[nt][1]);
                    acc[nt][2] = fmaf(sg8[gl], t[2], acc[nt][2]);
                    acc[nt][3] = fmaf(sg8[gl], t[3], acc[nt][3]);
                    if constexpr (f.has_min) {
                        const float *gs = (const float *)(sb + C::off_gs);
                        const float x0 = gs[(nt * 8 + 2 * c) * 2 + gl], x1 = gs[(nt * 8 + 2 * c + 1) * 2 + gl];
                        acc[nt][0] = fmaf(mg[gl], x0, acc[nt][0]);
                        acc[nt][1] = fmaf(mg[gl], x1, acc[nt][1]);
                        acc[nt][2] = fmaf(mg8[gl], x0, acc[nt][2]);
                        acc[nt][3] = fmaf(mg8[gl], x1, acc[nt][3]);
                    }
                }
            }
        }
    }
    cp_wait<0>();
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
        if (nt >= ntiles) break;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int tk = n0 + nt * 8 + 2 * c + h;
            if (tk >= p.T) continue;
            const float ts = p.tscale[tk];
            if (p.ksplit > 1) {
                float *w = p.ws + ((size_t)blockIdx.z * p.T + tk) * p.ws_rows + p.row0[mi];
                if (rg < M.rows) w[rg] = acc[nt][h] * ts;
                if (rg8 < M.rows) w[rg8] = acc[nt][2 + h] * ts;
                continue;
            }
            float *y = M.y + (size_t)tk * M.ldy;
            if (rg < M.rows) y[rg] = p.accumulate ? y[rg] + acc[nt][h] * ts : acc[nt][h] * ts;
            if (rg8 < M.rows) y[rg8] = p.accumulate ? y[rg8] + acc[nt][2 + h] * ts : acc[nt][2 + h] * ts;
        }
    }
}

// Sums the split-K partials in a fixed order (deterministic), then stores or accumulates.
__global__ void gemm_reduce_kernel(const gemm_params p) {
    pdl_trigger();
    pdl_wait();
    splitk_reduce(p);
}

// ---------------------------------------------------------------------------------------
// hfast_kernel: precision fast's product for T >= SPARKD_HFAST_MIN_T tokens (default 33) on
// the f16 tensor cores. Each A fragment pair is the weight itself, rounded once to f16:
// f16(s * code + m) by one HFMA2 (HMUL2 without a min) from the group's f16 scale and min
// while the fragment is built, B is the input's f16 `hi` form alone (already scaled by the
// power of two 1 / tscale), and the f32 accumulators run straight across every group of K:
// no scratch MMA, no fold, no group sums. Error ~1e-4..1e-3 relative (f16 weight and
// activation rounding; selftest test_hfast). Matrices whose scales could leave the f16 range
// take gemm_kernel instead (cuda_hfast_check at load).
//
// CTA: 4 warps of 32 rows (two m16 tiles) x 64 tokens (eight n8 tiles): per 64-element chunk
// a warp builds 32 A registers and reads its B fragments once per 16 MMAs (2 LDS.128 per n8
// tile); or (MT = 1, gate+up-sized products at T > 64) 8 warps of 16 rows x 128 tokens. A
// stage holds the activation tile, the codes (+ hi bits) and the rows' meta words of the
// chunk, filled by cp.async through 4 stages (3 where a GB10 block would exceed 99 KB); the
// weights of the first stages are requested before the PDL wait.
#define HF_N 64

// MT: m16 tiles a warp (2: 32 rows x 64 tokens; 1: 16 rows x 128 tokens, same 64 accumulators)
template <uint32_t F, int WM, int MT = 2> struct hf_cfg {
    static constexpr qfmt f = qfmt_of(F);
    static constexpr int NTL = 16 / MT, TN = 8 * NTL; // n8 tiles a warp, tokens a CTA
    static constexpr int HM = 16 * MT * WM, NT = 32 * WM;
    static constexpr int wpitch = f.cbits == 4 ? 32 : 64; // smem bytes per row and chunk
    static constexpr int hpitch = f.hbits == 1 ? 8 : f.hbits == 2 ? 16 : 0;
    // meta bytes per row and chunk: Q8_0 the two f16 d; Q4_K/Q5_K the superblock head;
    // Q6_K d (+ pad) and the chunk's 4 int8 scales
    static constexpr int mpitch = f.meta_bytes == 2 ? 4 : F == QT_Q6_K ? 8 : 16;
    static constexpr int off_w = TN * XP_PITCH * 2;
    static constexpr int off_h = off_w + HM * wpitch;
    static constexpr int off_m = off_h + HM * hpitch;
    static constexpr int stage = (off_m + HM * mpitch + 127) & ~127;
    static constexpr int stages = 4 * stage <= 98 * 1024 ? 4 : 3; // a GB10 block takes <= 99 KB
    static constexpr int smem = stage * stages;
    static constexpr int ng = f.group == 16 ? 4 : 2; // scale groups per chunk
};

__device__ __forceinline__ void cp_async4(void *dst, const void *src, bool valid) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 4 : 0));
}
// wx (round 12; SPARKD_WX=1): cp_async16 / 8 / 4 (N bytes) with the L2 prefetch size PF = 256: the L2 fetches
// the 256-byte aligned block around the source from DRAM in one request, so the next chunks' bytes of the same
// weight row (64 B a chunk for Q8_0, 32 B for Q4_K, 4 B of Q8_0 meta) are L2 hits. PF = 0: the plain copies.
template <int PF, int N> __device__ __forceinline__ void cp_async_l2(void *dst, const void *src, bool valid) {
    static_assert((PF == 0 || PF == 256) && (N == 4 || N == 8 || N == 16), "cp_async_l2: PF 0 / 256, N 4 / 8 / 16");
    if constexpr (PF == 0) {
        if constexpr (N == 16) cp_async16(dst, src, valid);
        else if constexpr (N == 8) cp_async8(dst, src, valid);
        else cp_async4(dst, src, valid);
    } else {
        const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
        if constexpr (N == 16) // (.cg as cp_async16: 16-byte copies may bypass L1)
            asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 16 : 0));
        else
            asm volatile("cp.async.ca.shared.global.L2::256B [%0], [%1], %3, %2;\n" ::"r"(s), "l"(src), "r"(valid ? N : 0), "n"(N));
    }
}

// A thread's cp.async sources, computed once per CTA (the matrix fields are read once):
// weight piece i of chunk kc is w + i * wstep + kc * (cbits * 8) (rows past the matrix
// clamped to row 0 and zero-filled: bit i of wv clear), activation piece i is x + i * xstep
// + kc * 128 (skipped past the tile's tokens: bit i of xv clear); the hi bits and meta of row
// m0 + tid from h and m.
struct hf_src {
    const uint8_t *w, *h, *m, *x;
    uint64_t wstep, xstep;
    uint32_t wv, xv;
    bool rv;
};

template <uint32_t F, int WM, int MT>
__device__ __forceinline__ hf_src hf_src_of(const gemm_params &p, const gemm_mat &M, int m0, int n0) {
    using C = hf_cfg<F, WM, MT>;
    constexpr qfmt f = C::f;
    constexpr int ppr = f.cbits * 64 / 8 / 16; // 16-byte pieces per row and chunk
    const int tid = threadIdx.x, rows = M.rows;
    hf_src s;
    const int r0 = tid / ppr;
    s.w = M.codes + (uint64_t)(m0 + r0 < rows ? m0 + r0 : 0) * M.code_pitch + (tid % ppr) * 16;
    s.wstep = (uint64_t)(C::NT / ppr) * M.code_pitch;
    s.wv = 0;
#pragma unroll
    for (int i = 0; i < C::HM * ppr / C::NT; i++)
        if (m0 + r0 + i * (C::NT / ppr) < rows) s.wv |= 1u << i;
    // a piece past the matrix is zero-filled from its first piece's row (row 0 when that one is past it too)
    const int rr = m0 + tid < rows ? m0 + tid : 0;
    s.rv = tid < C::HM && m0 + tid < rows;
    s.h = M.hi + (uint64_t)rr * M.hi_pitch;
    s.m = M.meta + (uint64_t)rr * M.meta_pitch;
    const int ntok = min(C::TN, p.T - n0), t0 = tid >> 3;
    s.x = (const uint8_t *)(p.xh + (size_t)(n0 + (t0 < ntok ? t0 : 0)) * p.K) + (tid & 7) * 16;
    s.xstep = (uint64_t)(C::NT / 8) * p.K * 2;
    s.xv = 0;
#pragma unroll
    for (int i = 0; i < C::TN * 8 / C::NT; i++)
        if (t0 + i * (C::NT / 8) < ntok) s.xv |= 1u << i;
    return s;
}

// The weight part of chunk kc (codes, hi bits, meta) of the CTA's rows into stage sb.
template <uint32_t F, int WM, int MT>
__device__ __forceinline__ void hf_load_w(uint8_t *sb, const hf_src &s, int kc) {
    using C = hf_cfg<F, WM, MT>;
    constexpr qfmt f = C::f;
    constexpr int ppr = f.cbits * 64 / 8 / 16;
    static_assert(C::HM * ppr % C::NT == 0 && C::HM <= C::NT, "hf_load_w: whole rounds");
    const int tid = threadIdx.x;
    const uint8_t *wk = s.w + (size_t)kc * (f.cbits * 8);
    uint8_t *dw = sb + C::off_w + (tid / ppr) * C::wpitch + (tid % ppr) * 16;
#pragma unroll
    for (int i = 0; i < C::HM * ppr / C::NT; i++)
        cp_async16(dw + i * (C::NT / ppr) * C::wpitch, (s.wv >> i) & 1 ? wk + i * s.wstep : wk, (s.wv >> i) & 1);
    if (C::HM < C::NT && tid >= C::HM) return; // one row a thread for hi bits and meta
    if constexpr (f.hbits == 1) cp_async8(sb + C::off_h + tid * 8, s.h + (size_t)kc * 8, s.rv);
    else if constexpr (f.hbits == 2) cp_async16(sb + C::off_h + tid * 16, s.h + (size_t)kc * 16, s.rv);
    uint8_t *md = sb + C::off_m + tid * C::mpitch;
    if constexpr (f.meta_bytes == 2) cp_async4(md, s.m + (size_t)kc * 4, s.rv); // Q8_0, Q4_0, Q5_0: two f16 d
    else if constexpr (F == QT_Q6_K) {
        cp_async4(md, s.m + (size_t)(kc >> 2) * 20, s.rv);
        cp_async4(md + 4, s.m + (size_t)(kc >> 2) * 20 + 4 + 4 * (kc & 3), s.rv);
    } else cp_async16(md, s.m + (size_t)(kc >> 2) * 16, s.rv);
}

// The activation part of chunk kc (the tile's tokens of the hi form) into stage sb.
template <int NT, int TN>
__device__ __forceinline__ void hf_load_x(uint8_t *sb, const hf_src &s, int kc) {
    const int tid = threadIdx.x;
    const uint8_t *xk = s.x + (size_t)kc * 128;
    uint8_t *dx = sb + (tid >> 3) * XP_PITCH * 2 + (tid & 7) * 16;
#pragma unroll
    for (int i = 0; i < TN * 8 / NT; i++)
        if ((s.xv >> i) & 1) cp_async16(dx + i * (NT / 8) * XP_PITCH * 2, xk + i * s.xstep, true);
}

// The f16x2 scale (and min) of the chunk's scale groups for one row from its meta words md
// (stage copy) at chunk kc, as group_sm computes them, then rounded to f16.
template <uint32_t F, int NG>
__device__ __forceinline__ void hf_scales(const uint8_t *md, int kc, __half2 (&s2)[NG], __half2 (&m2)[NG]) {
    if constexpr (F == QT_Q8_0 || F == QT_Q4_0 || F == QT_Q5_0) {
        const uint32_t w = *(const uint32_t *)md;
        const uint32_t a = __byte_perm(w, 0, 0x1010), b = __byte_perm(w, 0, 0x3232);
        s2[0] = *(const __half2 *)&a;
        s2[1] = *(const __half2 *)&b;
        m2[0] = m2[1] = __float2half2_rn(0.0f);
    } else if constexpr (F == QT_Q6_K) {
        const uint2 w = *(const uint2 *)md;
        const float d = f16_bits_to_f32((uint16_t)(w.x & 0xffff));
#pragma unroll
        for (int j = 0; j < NG; j++) {
            const float s = __fmul_rn(d, (float)(int8_t)(w.y >> (8 * j)));
            s2[j] = __float2half2_rn(s);
            m2[j] = __float2half2_rn(0.0f);
        }
    } else { // Q4_K, Q5_K: sub-blocks 2q and 2q + 1 of the superblock, q = kc & 3
        const uint4 w = *(const uint4 *)md;
        const float d = f16_bits_to_f32((uint16_t)(w.x & 0xffff)), dmin = f16_bits_to_f32((uint16_t)(w.x >> 16));
        const int q = kc & 3;
#pragma unroll
        for (int j = 0; j < NG; j++) {
            const int bsh = 8 * ((2 * q + j) & 3);
            const uint32_t x0 = (w.y >> bsh) & 0xff, x1 = (w.z >> bsh) & 0xff, x2 = (w.w >> bsh) & 0xff;
            const uint32_t sc = q < 2 ? x0 & 63 : (x2 & 15) | ((x0 >> 6) << 4);
            const uint32_t mn = q < 2 ? x1 & 63 : (x2 >> 4) | ((x1 >> 6) << 4);
            s2[j] = __float2half2_rn(__fmul_rn(d, (float)sc));
            m2[j] = __float2half2_rn(-__fmul_rn(dmin, (float)mn));
        }
    }
}

template <uint32_t F, int WM, int MT>
__global__ __launch_bounds__(32 * WM, MT == 1 ? 2 : WM == 8 ? 1 : WM == 4 ? 3 : 4) void hfast_kernel(const gemm_params p) {
    using C = hf_cfg<F, WM, MT>;
    constexpr int NTL = C::NTL;
    constexpr qfmt f = C::f;
    constexpr int NG = C::ng;
    extern __shared__ __align__(16) uint8_t smem[];
    pdl_trigger();
    int b = blockIdx.x, by = blockIdx.y, mi = 0;
    if (p.ntn > 0) { // token tile fastest (hf2's CTA order, see hf2_kernel)
        by = b % p.ntn;
        b /= p.ntn;
    }
    while (mi + 1 < p.n && b >= p.m[mi].mtiles) b -= p.m[mi++].mtiles;
    const gemm_mat &M = p.m[mi];
    const int m0 = b * C::HM, n0 = by * C::TN;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
    const int nk_all = p.K / 64;
    const int kz0 = (int)((long)nk_all * blockIdx.z / p.ksplit), kz1 = (int)((long)nk_all * (blockIdx.z + 1) / p.ksplit);
    const int nk = kz1 - kz0;
    // weights first (no kernel writes them), then the activations after the PDL wait; the
    // first commit group holds every early weight copy and chunk 0's activations
    const hf_src src = hf_src_of<F, WM, MT>(p, M, m0, n0);
    const int rows = M.rows;
#pragma unroll
    for (int s = 0; s < C::stages - 1; s++)
        if (s < nk) hf_load_w<F, WM, MT>(smem + s * C::stage, src, kz0 + s);
    pdl_wait();
#pragma unroll
    for (int s = 0; s < C::stages - 1; s++) {
        if (s < nk) hf_load_x<C::NT, C::TN>(smem + s * C::stage, src, kz0 + s);
        cp_commit();
    }
    const int ntiles = min(NTL, (p.T - n0 + 7) / 8);
    const bool full = p.T - n0 >= C::TN;
    float acc[MT][NTL][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < NTL; i++) acc[mt][i][0] = acc[mt][i][1] = acc[mt][i][2] = acc[mt][i][3] = 0.0f;

    for (int kc = 0; kc < nk; kc++) {
        cp_wait<C::stages - 2>();
        __syncthreads();
        {
            const int kn = kc + C::stages - 1;
            uint8_t *sn = smem + (kn % C::stages) * C::stage;
            if (kn < nk) {
                hf_load_w<F, WM, MT>(sn, src, kz0 + kn);
                hf_load_x<C::NT, C::TN>(sn, src, kz0 + kn);
            }
            cp_commit();
        }
        const uint8_t *sb = smem + (kc % C::stages) * C::stage;
        uint32_t a[MT][4][4];
#pragma unroll
        for (int i = 0; i < 2 * MT; i++) { // rows g, g + 8 (m16 tile 0), g + 16, g + 24 (tile 1)
            const int row = warp * 16 * MT + 8 * i + g;
            __half2 s2[NG], m2[NG];
            hf_scales<F, NG>(sb + C::off_m + row * C::mpitch, kz0 + kc, s2, m2);
            quarter q;
            const uint8_t *w = sb + C::off_w + row * C::wpitch;
            if constexpr (f.cbits == 4) {
                const uint2 v = *(const uint2 *)(w + 8 * c);
                q.q.x = v.x;
                q.q.y = v.y;
            } else {
                q.q = *(const uint4 *)(w + 16 * c);
            }
            if constexpr (f.hbits == 1) q.hb = *(const uint16_t *)(sb + C::off_h + row * 8 + 2 * c);
            else if constexpr (f.hbits == 2) q.hb = *(const uint32_t *)(sb + C::off_h + row * 16 + 4 * c);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const uint32_t cb = quarter_pair<F>(q, j);
                const int gi = NG == 4 ? j >> 1 : j >> 2; // pair j is in k16 step j >> 1
                __half2 v;
                if constexpr (f.has_min) v = __hfma2(*(const __half2 *)&cb, s2[gi], m2[gi]);
                else v = __hmul2(*(const __half2 *)&cb, s2[gi]);
                a[i >> 1][j >> 1][(j & 1) * 2 + (i & 1)] = *(const uint32_t *)&v;
            }
        }
        auto tile = [&](int nt) {
            const uint4 *xh = (const uint4 *)(sb + (nt * 8 + g) * XP_PITCH * 2 + 32 * c);
            const uint4 v0 = xh[0], v1 = xh[1];
            const uint32_t bh[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
#pragma unroll
            for (int s = 0; s < 4; s++)
#pragma unroll
                for (int mt = 0; mt < MT; mt++) mma16816<false>(acc[mt][nt], a[mt][s], bh[2 * s], bh[2 * s + 1]);
        };
        if (full) { // all the tile's tokens: no branch between the n8 tiles
#pragma unroll
            for (int nt = 0; nt < NTL; nt++) tile(nt);
        } else {
#pragma unroll
            for (int nt = 0; nt < NTL; nt++) {
                if (nt >= ntiles) break;
                tile(nt);
            }
        }
    }
    cp_wait<0>();
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        const int rg = m0 + warp * 16 * MT + 16 * mt + g, rg8 = rg + 8;
#pragma unroll
        for (int nt = 0; nt < NTL; nt++) {
            if (nt >= ntiles) break;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int tk = n0 + nt * 8 + 2 * c + h;
                if (tk >= p.T) continue;
                hf_store2(p, M, mi, tk, rg, rg8, rows, acc[mt][nt][h], acc[mt][nt][2 + h]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// hf2_kernel: the same product as hfast_kernel (the same A values: f16(s * (code - off) + m)
// by one HMUL2/HFMA2 a pair, the hi form as B, f32 accumulation; only the order of the f32
// sums may differ), scheduled as a software pipeline by k16 steps. hfast_kernel builds a
// chunk's 32 A registers after the chunk's barrier and then runs its 64 HMMAs, so each warp
// alternates an ALU phase (PRMT -> HADD2 -> HMUL2 chains behind LDS) and an HMMA phase (ncu: no
// eligible warp 63% of cycles). Here a warp (32 rows x 64 tokens, CTA 128 x 64, 3 CTAs an SM)
// builds step s + 1's 8 A registers while step s's 16 HMMAs run, and the barrier of a chunk
// makes the NEXT chunk visible, so step 0 of chunk kc + 1 is built during step 3 of chunk kc.
// The rows' codes are read once a chunk (hf2_rows), B two steps at once, the chunk's scales
// once a row (hf2_decode), 4-bit pairs in one LOP3 (hf2_pair4); the CTAs run token tile
// fastest (p.ntn). Stage ring (4 stages): at chunk kc the warps read slots kc (B, codes) and
// kc + 1 (codes of step 0, scales) while cp.async fills slot kc + 3 (= kc - 1, free after the
// barrier). SPARKD_HF2=0: hfast_kernel as in round 6 (one binary A/Bs both). kernels/PERF.md
// "Round 7, helper hf2" has the SASS counts and the runs.
// 3 CTAs an SM (<= 168 registers, no spills), 4 stages (Q8_0 71.7 KB a CTA). (A 4-CTA build at
// <= 128 registers and 3 stages lost 5-20% on every product in run 0: spills, the codes read a word
// a step.)
template <uint32_t F> struct hf2_cfg {
    using C = hf_cfg<F, 4, 2>;
    static constexpr int stages = 4;
    static constexpr int smem = C::stage * stages;
};

// hf_load_w + hf_load_x for hf2's CTA (128 rows x 64 tokens); WF: every row of the tile is inside
// the matrix, XF: every token of the tile is inside T (no per-piece validity: plain copies).
template <uint32_t F, bool WF, bool XF>
__device__ __forceinline__ void hf2_load(uint8_t *sb, const hf_src &s, int kc) {
    using C = hf_cfg<F, 4, 2>;
    constexpr qfmt f = C::f;
    constexpr int ppr = f.cbits * 64 / 8 / 16;
    const int tid = threadIdx.x;
    if constexpr (!WF) {
        hf_load_w<F, 4, 2>(sb, s, kc);
    } else {
        const uint8_t *wk = s.w + (size_t)kc * (f.cbits * 8);
        uint8_t *dw = sb + C::off_w + (tid / ppr) * C::wpitch + (tid % ppr) * 16;
#pragma unroll
        for (int i = 0; i < C::HM * ppr / C::NT; i++) cp_async16(dw + i * (C::NT / ppr) * C::wpitch, wk + i * s.wstep, true);
        if constexpr (f.hbits == 1) cp_async8(sb + C::off_h + tid * 8, s.h + (size_t)kc * 8, true);
        else if constexpr (f.hbits == 2) cp_async16(sb + C::off_h + tid * 16, s.h + (size_t)kc * 16, true);
        uint8_t *md = sb + C::off_m + tid * C::mpitch;
        if constexpr (f.meta_bytes == 2) cp_async4(md, s.m + (size_t)kc * 4, true);
        else if constexpr (F == QT_Q6_K) {
            cp_async4(md, s.m + (size_t)(kc >> 2) * 20, true);
            cp_async4(md + 4, s.m + (size_t)(kc >> 2) * 20 + 4 + 4 * (kc & 3), true);
        } else cp_async16(md, s.m + (size_t)(kc >> 2) * 16, true);
    }
    if constexpr (!XF) {
        hf_load_x<C::NT, C::TN>(sb, s, kc);
    } else {
        const uint8_t *xk = s.x + (size_t)kc * 128;
        uint8_t *dx = sb + (tid >> 3) * XP_PITCH * 2 + (tid & 7) * 16;
#pragma unroll
        for (int i = 0; i < C::TN * 8 / C::NT; i++) cp_async16(dx + i * (C::NT / 8) * XP_PITCH * 2, xk + i * s.xstep, true);
    }
}

// The thread that copied row r's meta words of a chunk (thread r) turns them, once its copies have
// landed and before the chunk's barrier, into the f16 factors the A build multiplies with, in place
// (hf_scales' values exactly, computed once a row instead of once a quad lane): Q4_K/Q5_K {s2[0],
// m2[0], s2[1], m2[1]} (16 B, the superblock head's size), Q6_K the chunk's 4 group scales as
// halves (8 B); Q8_0's two f16 d are used as stored.
template <uint32_t F>
__device__ __forceinline__ void hf2_decode(uint8_t *sb, int kc) {
    using C = hf_cfg<F, 4, 2>;
    constexpr int NG = C::ng;
    if constexpr (F == QT_Q4_K || F == QT_Q5_K || F == QT_Q6_K) {
        uint8_t *md = sb + C::off_m + threadIdx.x * C::mpitch;
        __half2 s2[NG], m2[NG];
        hf_scales<F, NG>(md, kc, s2, m2);
        if constexpr (F == QT_Q6_K) {
            const __half2 lo = __lows2half2(s2[0], s2[1]), hi = __lows2half2(s2[2], s2[3]);
            *(uint2 *)md = make_uint2(*(const uint32_t *)&lo, *(const uint32_t *)&hi);
        } else {
            *(uint4 *)md = make_uint4(*(const uint32_t *)&s2[0], *(const uint32_t *)&m2[0], *(const uint32_t *)&s2[1],
                                      *(const uint32_t *)&m2[1]);
        }
    }
}

// The quarters (codes + hi bits) of a lane's 4 rows (rowb + 8i, quad lane c) of the chunk in slot sb,
// one LDS.128 (Q8_0) / LDS.64 (4-bit) a row: conflict-free, once a chunk (a word a step would be a
// 4-way / 2-way bank conflict).
template <uint32_t F>
__device__ __forceinline__ void hf2_rows(quarter (&q)[4], const uint8_t *sb, int rowb, int c) {
    using C = hf_cfg<F, 4, 2>;
    constexpr qfmt f = C::f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int row = rowb + 8 * i;
        const uint8_t *w = sb + C::off_w + row * C::wpitch;
        if constexpr (f.cbits == 4) {
            const uint2 v = *(const uint2 *)(w + 8 * c);
            q[i].q.x = v.x;
            q[i].q.y = v.y;
        } else {
            q[i].q = *(const uint4 *)(w + 16 * c);
        }
        if constexpr (f.hbits == 1) q[i].hb = *(const uint16_t *)(sb + C::off_h + row * 8 + 2 * c);
        else if constexpr (f.hbits == 2) q[i].hb = *(const uint32_t *)(sb + C::off_h + row * 16 + 4 * c);
    }
}

// quarter_pair for the 4-bit formats in fewer instructions, the same f16 values: the nibble at
// bits 4-7 of each half is made 64 + c by OR-ing 0x5400 (the ulp of 64 is 1/16) instead of shifting
// it down to 1024 + c, and the mask and the OR are one LOP3 (1 instruction a pair, + 1 shift for the
// odd k16 steps, instead of 3); the hi bits go to mantissa bit 4 (1024 + c) or 8 (64 + c); then
// one HSUB2 of 1024 + off or 64 + off (exact: small integers).
template <uint32_t M, uint32_t O> __device__ __forceinline__ uint32_t hf2_and_or(uint32_t a) {
    uint32_t d; // (a & M) | O in one LOP3
    asm("lop3.b32 %0, %1, %2, %3, 0xea;\n" : "=r"(d) : "r"(a), "n"(M), "n"(O));
    return d;
}
template <uint32_t F> __device__ __forceinline__ uint32_t hf2_pair4(const quarter &r, int j) {
    constexpr qfmt f = qfmt_of(F);
    const int k = j & 3, b = 4 * (j >> 2) + k; // nibble of each half; hi-plane bit of the pair's first element
    const uint32_t w0 = j < 4 ? r.q.x : r.q.y, w = k >= 2 ? w0 >> 8 : w0;
    uint32_t h = k & 1 ? hf2_and_or<0x00f000f0u, 0x54005400u>(w) : hf2_and_or<0x000f000fu, 0x64006400u>(w);
    const int hs = k & 1 ? 8 : 4;
    if constexpr (f.hbits == 1) {
        const uint32_t x = (r.hb & 0xffu) | ((r.hb & 0xff00u) << 8);
        h |= ((x >> b) & 0x00010001u) << hs;
    } else if constexpr (f.hbits == 2) {
        h |= ((r.hb >> (2 * b)) & 0x00030003u) << hs;
    }
    const uint16_t sub = k & 1 ? (uint16_t)(0x5400 + 16 * f.off) : (uint16_t)(0x6400 + f.off); // 64 + off, 1024 + off
    const __half2 v = __hsub2(*(const __half2 *)&h, __half2half2(__ushort_as_half(sub)));
    return *(const uint32_t *)&v;
}

// The 8 A registers of k16 step s: pairs 2s and 2s + 1 of each row's quarter q[i], exactly as
// hfast_kernel builds them (the factors of the pairs' scale group from hf2_decode's words in the
// slot sb of the chunk).
template <uint32_t F>
__device__ __forceinline__ void hf2_build(uint32_t (&a)[2][4], const quarter (&q)[4], const uint8_t *sb, int rowb, int s) {
    using C = hf_cfg<F, 4, 2>;
    constexpr qfmt f = C::f;
    constexpr int NG = C::ng;
    const int gi = NG == 4 ? s : s >> 1; // both pairs of the step are in one group
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint8_t *md = sb + C::off_m + (rowb + 8 * i) * C::mpitch;
        __half2 s2, m2;
        if constexpr (F == QT_Q4_K || F == QT_Q5_K) {
            const uint2 v = *(const uint2 *)(md + 8 * gi);
            s2 = *(const __half2 *)&v.x;
            m2 = *(const __half2 *)&v.y;
        } else {
            const __half2 v = *(const __half2 *)(md + (F == QT_Q6_K ? 4 * (gi >> 1) : 0));
            s2 = (F == QT_Q6_K ? gi & 1 : gi) ? __high2half2(v) : __low2half2(v);
        }
#pragma unroll
        for (int jj = 0; jj < 2; jj++) {
            uint32_t cb;
            if constexpr (f.cbits == 4) cb = hf2_pair4<F>(q[i], 2 * s + jj);
            else cb = quarter_pair<F>(q[i], 2 * s + jj);
            __half2 v;
            if constexpr (f.has_min) v = __hfma2(*(const __half2 *)&cb, s2, m2);
            else v = __hmul2(*(const __half2 *)&cb, s2);
            a[i >> 1][jj * 2 + (i & 1)] = *(const uint32_t *)&v;
        }
    }
}

// The chunk loop; FULL: the tile's tokens all present (8 n8 tiles), else ntiles of them.
template <uint32_t F, bool FULL, bool WF>
__device__ __forceinline__ void hf2_loop(float (&acc)[2][8][4], uint8_t *smem, const hf_src &src, int kz0, int nk,
                                         int ntiles, int rowb, int g, int c) {
    using C = hf_cfg<F, 4, 2>;
    constexpr int S = hf2_cfg<F>::stages;
    uint32_t a[2][4];
    quarter q[4];
    cp_wait<S - 2>(); // chunk 0
    hf2_decode<F>(smem, kz0);
    __syncthreads();
    hf2_rows<F>(q, smem, rowb, c);
    hf2_build<F>(a, q, smem, rowb, 0);
    // slot offsets: chunk kc (read), kc + 1 (read: step 0's codes, scales), kc + S - 1 (written)
    uint32_t ob = 0, ox = C::stage, on = (S - 1) * C::stage;
    for (int kc = 0; kc < nk; kc++) {
        const bool more = kc + 1 < nk;
        cp_wait<S - 3>(); // chunk kc + 1 landed (this thread's copies) ...
        if (more) hf2_decode<F>(smem + ox, kz0 + kc + 1);
        __syncthreads();  // ... and everyone's; every warp is past chunk kc - 1 (its slot is free)
        {
            const int kn = kc + S - 1;
            if (kn < nk) hf2_load<F, WF, FULL>(smem + on, src, kz0 + kn);
            cp_commit();
        }
        const uint8_t *sb = smem + ob;
        const uint8_t *sx = smem + ox;
        ob = ox;
        ox = ox + C::stage == S * C::stage ? 0 : ox + C::stage;
        on = on + C::stage == S * C::stage ? 0 : on + C::stage;
        uint4 bv[8]; // two steps' B fragments of each n8 tile: one conflict-free LDS.128 (144-byte token pitch)
#pragma unroll
        for (int s = 0; s < 4; s++) {
            if ((s & 1) == 0) {
#pragma unroll
                for (int nt = 0; nt < 8; nt++)
                    if (FULL || nt < ntiles) bv[nt] = *(const uint4 *)(sb + (nt * 8 + g) * XP_PITCH * 2 + 32 * c + 16 * (s >> 1));
            }
            uint32_t an[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
            if (s < 3) {
                hf2_build<F>(an, q, sb, rowb, s + 1);
            } else if (more) {
                hf2_rows<F>(q, sx, rowb, c);
                hf2_build<F>(an, q, sx, rowb, 0);
            }
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                if (!FULL && nt >= ntiles) break;
                const uint32_t b0 = s & 1 ? bv[nt].z : bv[nt].x, b1 = s & 1 ? bv[nt].w : bv[nt].y;
#pragma unroll
                for (int mt = 0; mt < 2; mt++) mma16816<false>(acc[mt][nt], a[mt], b0, b1);
            }
#pragma unroll
            for (int mt = 0; mt < 2; mt++) // (after the last chunk's step 3: unused)
#pragma unroll
                for (int r = 0; r < 4; r++) a[mt][r] = an[mt][r];
        }
    }
}

template <uint32_t F>
__global__ __launch_bounds__(128, 3) void hf2_kernel(const gemm_params p) {
    using C = hf_cfg<F, 4, 2>;
    constexpr int S = hf2_cfg<F>::stages;
    extern __shared__ __align__(16) uint8_t smem[];
    pdl_trigger();
    // token tile fastest (p.ntn > 0): the CTAs that read a row tile's weights run together, so a
    // matrix larger than the L2 (gate+up: 100 MB of Q8_0) comes from DRAM once, not once a token tile
    int b = blockIdx.x, by = blockIdx.y, mi = 0;
    if (p.ntn > 0) {
        by = b % p.ntn;
        b /= p.ntn;
    }
    while (mi + 1 < p.n && b >= p.m[mi].mtiles) b -= p.m[mi++].mtiles;
    const gemm_mat &M = p.m[mi];
    const int m0 = b * C::HM, n0 = by * C::TN;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
    const int nk_all = p.K / 64;
    const int kz0 = (int)((long)nk_all * blockIdx.z / p.ksplit), kz1 = (int)((long)nk_all * (blockIdx.z + 1) / p.ksplit);
    const int nk = kz1 - kz0;
    const hf_src src = hf_src_of<F, 4, 2>(p, M, m0, n0);
#pragma unroll
    for (int s = 0; s < S - 1; s++)
        if (s < nk) hf_load_w<F, 4, 2>(smem + s * C::stage, src, kz0 + s);
    pdl_wait();
#pragma unroll
    for (int s = 0; s < S - 1; s++) {
        if (s < nk) hf_load_x<C::NT, C::TN>(smem + s * C::stage, src, kz0 + s);
        cp_commit();
    }
    const int ntiles = min(8, (p.T - n0 + 7) / 8);
    float acc[2][8][4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int i = 0; i < 8; i++) acc[mt][i][0] = acc[mt][i][1] = acc[mt][i][2] = acc[mt][i][3] = 0.0f;
    const int rowb = warp * 32 + g;
    if (nk > 0) {
        // (the prologue's copies above check every piece; the loop's only where the tile is partial)
        if (m0 + C::HM <= M.rows) {
            if (p.T - n0 >= C::TN) hf2_loop<F, true, true>(acc, smem, src, kz0, nk, 8, rowb, g, c);
            else hf2_loop<F, false, true>(acc, smem, src, kz0, nk, ntiles, rowb, g, c);
        } else {
            if (p.T - n0 >= C::TN) hf2_loop<F, true, false>(acc, smem, src, kz0, nk, 8, rowb, g, c);
            else hf2_loop<F, false, false>(acc, smem, src, kz0, nk, ntiles, rowb, g, c);
        }
    }
    cp_wait<0>();
    const int rows = M.rows;
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
        const int rg = m0 + warp * 32 + 16 * mt + g, rg8 = rg + 8;
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            if (nt >= ntiles) break;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int tk = n0 + nt * 8 + 2 * c + h;
                if (tk >= p.T) continue;
                hf_store2(p, M, mi, tk, rg, rg8, rows, acc[mt][nt][h], acc[mt][nt][2 + h]);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// hf3's helpers (round 8, helper pf), used by hfw_kernel below: the A registers of a 16-row warp tile
// (rows rowb, rowb + 8) built from the codes as hf2_build builds them (the same A values
// f16(s * (code - off) + m)), the scales decoded once a row (hf3_decode, hf2_decode's values).
// hf3_kernel (these on mma.sync 16 x 128 warp tiles) and its variants were measured and removed:
// kernels/PERF.md "Round 8, helper pf".

// hf2_decode for an hfw CTA: thread r < HM (it copied row r's meta) turns the words into the f16
// factors in place, after its copies landed and before the barrier.
template <uint32_t F, class C>
__device__ __forceinline__ void hf3_decode(uint8_t *sb, int kc) {
    constexpr int NG = C::ng;
    if constexpr (F == QT_Q4_K || F == QT_Q5_K || F == QT_Q6_K) {
        if (C::HM < C::NT && threadIdx.x >= C::HM) return;
        uint8_t *md = sb + C::off_m + threadIdx.x * C::mpitch;
        __half2 s2[NG], m2[NG];
        hf_scales<F, NG>(md, kc, s2, m2);
        if constexpr (F == QT_Q6_K) {
            const __half2 lo = __lows2half2(s2[0], s2[1]), hi = __lows2half2(s2[2], s2[3]);
            *(uint2 *)md = make_uint2(*(const uint32_t *)&lo, *(const uint32_t *)&hi);
        } else {
            *(uint4 *)md = make_uint4(*(const uint32_t *)&s2[0], *(const uint32_t *)&m2[0], *(const uint32_t *)&s2[1],
                                      *(const uint32_t *)&m2[1]);
        }
    }
}

// The quarters of a lane's 2 rows (rowb, rowb + 8; quad lane c) of the chunk in slot sb.
template <uint32_t F, class C>
__device__ __forceinline__ void hf3_rows(quarter (&q)[2], const uint8_t *sb, int rowb, int c) {
    constexpr qfmt f = C::f;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int row = rowb + 8 * i;
        const uint8_t *w = sb + C::off_w + row * C::wpitch;
        if constexpr (f.cbits == 4) {
            const uint2 v = *(const uint2 *)(w + 8 * c);
            q[i].q.x = v.x;
            q[i].q.y = v.y;
        } else {
            q[i].q = *(const uint4 *)(w + 16 * c);
        }
        if constexpr (f.hbits == 1) q[i].hb = *(const uint16_t *)(sb + C::off_h + row * 8 + 2 * c);
        else if constexpr (f.hbits == 2) q[i].hb = *(const uint32_t *)(sb + C::off_h + row * 16 + 4 * c);
    }
}

// The A registers of k16 steps 2p and 2p + 1 (a[step - 2p][0..3]) from the rows' quarters, as
// hf2_build builds them.
template <uint32_t F, class C>
__device__ __forceinline__ void hf3_build(uint32_t (&a)[2][4], const quarter (&q)[2], const uint8_t *sb, int rowb, int p) {
    constexpr qfmt f = C::f;
    constexpr int NG = C::ng;
#pragma unroll
    for (int st = 0; st < 2; st++) {
        const int s = 2 * p + st, gi = NG == 4 ? s : s >> 1;
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const uint8_t *md = sb + C::off_m + (rowb + 8 * i) * C::mpitch;
            __half2 s2, m2;
            if constexpr (F == QT_Q4_K || F == QT_Q5_K) {
                const uint2 v = *(const uint2 *)(md + 8 * gi);
                s2 = *(const __half2 *)&v.x;
                m2 = *(const __half2 *)&v.y;
            } else {
                const __half2 v = *(const __half2 *)(md + (F == QT_Q6_K ? 4 * (gi >> 1) : 0));
                s2 = (F == QT_Q6_K ? gi & 1 : gi) ? __high2half2(v) : __low2half2(v);
            }
#pragma unroll
            for (int jj = 0; jj < 2; jj++) {
                uint32_t cb;
                if constexpr (f.cbits == 4) cb = hf2_pair4<F>(q[i], 2 * s + jj);
                else cb = quarter_pair<F>(q[i], 2 * s + jj);
                __half2 v;
                if constexpr (f.has_min) v = __hfma2(*(const __half2 *)&cb, s2, m2);
                else v = __hmul2(*(const __half2 *)&cb, s2);
                a[st][jj * 2 + i] = *(const uint32_t *)&v;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// hfw_kernel (round 8, pf; sm_90a only): hf3's warp tile (16 rows a warp, 128 tokens; the A
// registers built from the codes exactly as hf3_build) fed to wgmma.mma_async m64n128k16 with A from
// registers and B (the activations) read by the tensor cores straight from shared memory: no B
// fragment loads through the register file (hf3 and hf2 spend one LDS.128 a lane per two or four
// HMMAs on them, and the shared-memory bandwidth that goes with it). wgmma needs B in its canonical
// K-major layout, which the P64 order is not: the x tile goes through registers (hfw_ldx / hfw_stx:
// 4 threads a token, each 32 bytes of the P64 chunk) into natural order (natural 16-byte granule u =
// P64 words u, u + 8, u + 16, u + 24) in the 128-byte-swizzled tile (granule u of token t at u ^ (t & 7));
// in natural order quad lane c's A pairs are its own quarter c, so hf3_build's registers are the
// wgmma A fragments unchanged. CTA = WG = 3 warpgroups (192 rows x 128 tokens, 3 stages, 1 an SM)
// sharing the x tile (warpgroups 0-1 move it). Numerics: the same A values, the hi form as B, f32
// accumulation (order of the sums differs). The default at T >= 65 on sm_90a (SPARKD_PF, tile code 17).
// One warpgroup a CTA (WG = 1), A through shared memory and SPARKD_PF_W0 were measured and removed:
// kernels/PERF.md "Round 8, helper pf".
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define HFW_ON 1
#endif
// NS (round 11, fc; SPARKD_FC): stages of the ring (3: round 8's hfw3); the weights of chunk kc + NS are copied
// at step kc, so a copy has NS - 2 steps to land instead of one.
template <uint32_t F, int WG, int NS = 3> struct hfw_cfg : hf_cfg<F, 4 * WG, 1> { // WG warpgroups: 64 WG rows x 128 tokens
    using B = hf_cfg<F, 4 * WG, 1>;
    static constexpr int off_w = 128 * 128; // x tile: 128 tokens x 128 B, natural order, 128B swizzle
    static constexpr int off_h = off_w + B::HM * B::wpitch;
    static constexpr int off_m = off_h + B::HM * B::hpitch;
    static constexpr int stage = (off_m + B::HM * B::mpitch + 1023) & ~1023; // tiles 1024-aligned
    static constexpr int stages = NS;
    static constexpr int smem = stage * stages + 1024; // (+ the base rounded up to 1024)
};

// wgmma descriptor of a K-major, 128B-swizzled B tile at shared address sa (8-row atoms 1024 B apart)
__device__ __forceinline__ uint64_t hfw_desc(uint32_t sa) {
    return (uint64_t)((sa & 0x3ffff) >> 4) | (uint64_t)1 << 16 | (uint64_t)(1024 >> 4) << 32 | (uint64_t)1 << 62;
}
__device__ __forceinline__ void hfw_fence() {
#ifdef HFW_ON
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void hfw_commit() {
#ifdef HFW_ON
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N> __device__ __forceinline__ void hfw_wait(float (&d)[16][4]) {
#ifdef HFW_ON
    asm volatile("wgmma.wait_group.sync.aligned %64;\n" : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3]) : "n"(N) : "memory");
#endif
}
// d += A (this warp's 16 rows of the m64 tile, mma.m16n8k16 fragment) x B (128 tokens x k16 at desc)
__device__ __forceinline__ void hfw_mma(float (&d)[16][4], const uint32_t (&a)[4], uint64_t desc) {
#ifdef HFW_ON
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
                 "{%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
                 : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
#endif
}
// The weight part of chunk kc (codes, hi bits, meta; as hf_load_w) into a stage of a wgmma kernel
// whose configuration C (hfw_cfg, w64_cfg) gives the stage's layout; WF: all rows inside the matrix.
// PF: L2 prefetch size (wx; 0: plain copies); NOC (wx_kernel): not the codes (a tensor copy sends them)
template <uint32_t F, class C, bool WF, int PF = 0, bool NOC = false>
__device__ __forceinline__ void wg_load_w(uint8_t *sb, const hf_src &s, int kc) {
    constexpr qfmt f = C::f;
    constexpr int ppr = f.cbits * 64 / 8 / 16;
    const int tid = threadIdx.x;
    const uint8_t *wk = s.w + (size_t)kc * (f.cbits * 8);
    uint8_t *dw = sb + C::off_w + (tid / ppr) * C::wpitch + (tid % ppr) * 16;
#pragma unroll
    for (int i = 0; i < (NOC ? 0 : C::HM * ppr / C::NT); i++) {
        const bool v = WF || ((s.wv >> i) & 1);
        cp_async_l2<PF, 16>(dw + i * (C::NT / ppr) * C::wpitch, v ? wk + i * s.wstep : wk, v);
    }
    if (tid >= C::HM) return; // one row a thread for hi bits and meta
    const bool rv = WF || s.rv;
    if constexpr (f.hbits == 1) cp_async_l2<PF, 8>(sb + C::off_h + tid * 8, s.h + (size_t)kc * 8, rv);
    else if constexpr (f.hbits == 2) cp_async_l2<PF, 16>(sb + C::off_h + tid * 16, s.h + (size_t)kc * 16, rv);
    uint8_t *md = sb + C::off_m + tid * C::mpitch;
    if constexpr (f.meta_bytes == 2) cp_async_l2<PF, 4>(md, s.m + (size_t)kc * 4, rv);
    else if constexpr (F == QT_Q6_K) {
        cp_async_l2<PF, 4>(md, s.m + (size_t)(kc >> 2) * 20, rv);
        cp_async_l2<PF, 4>(md + 4, s.m + (size_t)(kc >> 2) * 20 + 4 + 4 * (kc & 3), rv);
    } else cp_async_l2<PF, 16>(md, s.m + (size_t)(kc >> 2) * 16, rv);
}
// ... into an hfw stage
template <uint32_t F, int WG, bool WF>
__device__ __forceinline__ void hfw_load_w(uint8_t *sb, const hf_src &s, int kc) {
    using C = hfw_cfg<F, WG>;
    wg_load_w<F, hfw_cfg<F, WG>, WF>(sb, s, kc);
}
// The x tile's copy: 512 tasks (128 tokens x 4 quarters of a 128-byte chunk) over the NX threads that
// move it (warpgroups 0-1), TPT a thread; task i = threadIdx.x + NX j is token
// i / 4, quarter q = i % 4: two LDG.128 of P64 words 8q..8q+7 (a warp instruction reads 8 whole 128-byte
// token rows), and P64 word 8q + w is word q of natural granule w, so the thread stores its 8 words as
// word q of the 8 granules (STS.32, conflict-free: the 8 tokens of a warp have distinct t & 7).
template <int WG> struct hfw_x {
    static constexpr int NX = 256, TPT = 512 / NX;
};
// Chunk kc of the tile's tokens (x0: the tile's first token row of the hi form, pitch bytes a token;
// tokens >= ntok not read, their registers keep what they held: columns past T are never stored).
template <int WG>
__device__ __forceinline__ void hfw_ldx(uint4 (&v)[2 * hfw_x<WG>::TPT], const uint8_t *x0, size_t pitch, int kc, int ntok) {
#pragma unroll
    for (int j = 0; j < hfw_x<WG>::TPT; j++) {
        const int i = threadIdx.x + hfw_x<WG>::NX * j, t = i >> 2, q = i & 3;
        if (t < ntok) {
            const uint4 *g = (const uint4 *)(x0 + (size_t)t * pitch + (size_t)kc * 128 + 32 * q);
            v[2 * j] = __ldg(g);
            v[2 * j + 1] = __ldg(g + 1);
        }
    }
}
// ... stored in natural order into the 128B-swizzled tile of stage sb (granule u of token t at u ^ (t & 7)).
template <int WG>
__device__ __forceinline__ void hfw_stx(uint8_t *sb, const uint4 (&v)[2 * hfw_x<WG>::TPT]) {
    // task j's token is threadIdx.x / 4 + (NX / 4) j: the same t & 7 for every j (NX / 4 is a multiple of 8)
    const int k7 = (threadIdx.x >> 2) & 7;
    uint8_t *row = sb + (threadIdx.x >> 2) * 128 + 4 * (threadIdx.x & 3);
#pragma unroll
    for (int j = 0; j < hfw_x<WG>::TPT; j++)
#pragma unroll
        for (int w = 0; w < 8; w++)
            *(uint32_t *)(row + j * (hfw_x<WG>::NX / 4) * 128 + ((w ^ k7) << 4)) = u4_word(v[2 * j + (w >> 2)], w & 3);
}
// XB (round 11, fc; SPARKD_FC=4): the x tiles come as images already in wgmma's layout (hfw_ximg_kernel: per
// 128-token tile and chunk, 16 KB: token t's natural granule u at t * 128 + (u ^ (t & 7)) 16), one bulk copy
// (cp.async.bulk, the async proxy, the TMA unit) a chunk issued by thread 0 and completing on the slot's mbarrier:
// no generic-proxy writes of x, hence no fence.proxy.async (MEMBAR.ALL.CTA) in the loop, no LDG / STS of x.
// [ximg] = (T tiles of 128 tokens, K / 64 chunks, 128 x 128 B); tokens >= T zero.
__global__ __launch_bounds__(256) void hfw_ximg_kernel(const gemm_params p, uint8_t *img, int tiles) {
    pdl_wait();
    pdl_trigger();
    const int nk = p.K / 64, lane = threadIdx.x & 31;
    const long r = (long)blockIdx.x * 8 + (threadIdx.x >> 5); // (token, chunk) row of one warp
    if (r >= (long)tiles * 128 * nk) return;
    const int t = (int)(r / nk), k = (int)(r % nk);
    uint32_t v = 0;
    if (t < p.T) v = *(const uint32_t *)((const uint8_t *)p.xh + (size_t)t * p.K * 2 + (size_t)k * 128 + 4 * lane);
    *(uint32_t *)(img + ((size_t)(t >> 7) * nk + k) * 16384 + (t & 127) * 128 + ((((lane & 7) ^ (t & 7)) << 4) + 4 * (lane >> 3))) = v;
}
__device__ __forceinline__ void hfw_mb_init(uint32_t bar) {
#ifdef HFW_ON
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(bar) : "memory");
#endif
}
// thread 0: chunk kc's image (16 KB at src) into the x tile at dst, completing on bar
__device__ __forceinline__ void hfw_bulk_x(uint32_t dst, const uint8_t *src, uint32_t bar) {
#ifdef HFW_ON
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], 16384;\n" ::"r"(bar) : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], 16384, [%2];\n" ::"r"(dst),
                 "l"(src), "r"(bar)
                 : "memory");
#endif
}
__device__ __forceinline__ void hfw_mb_wait(uint32_t bar, uint32_t parity) {
#ifdef HFW_ON
    uint32_t ok = 0;
    while (!ok)
        asm volatile("{\n.reg .pred P;\nmbarrier.try_wait.parity.shared::cta.b64 P, [%1], %2;\nselp.u32 %0, 1, 0, P;\n}\n"
                     : "=r"(ok) : "r"(bar), "r"(parity) : "memory");
#endif
}

// NS (round 11, fc): see hfw_cfg. XB (round 11, fc; W1, NS >= 4): see hfw_ximg_kernel: wgmma kc waits for its slot's
// mbarrier (phase kc / NS); after the barrier thread 0 sends chunk kc + NS - 1's image into slot kc - 1 (every
// warpgroup is past wgmma kc - 1); the weights' copies as before, NS - 2 steps to land.
template <uint32_t F, int WG, bool WF, bool W1 = false, int NS = 3, bool XB = false>
__device__ __forceinline__ void hfw_step(float (&acc)[16][4], const uint32_t (&a)[4][4], uint32_t (&an)[4][4],
                                         uint8_t *smem, uint32_t sbase, int kc, int nk, int kz0, const hf_src &src,
                                         const uint8_t *x0, size_t xp, int ntok, uint4 (&xv)[2 * hfw_x<WG>::TPT], int rowb,
                                         int c, bool w0) {
    using C = hfw_cfg<F, WG, NS>;
    constexpr int S = C::stages;
    const int ob = (kc % S) * C::stage, ox = ((kc + 1) % S) * C::stage, on = ((kc + 2) % S) * C::stage;
    if constexpr (XB) hfw_mb_wait(sbase + S * C::stage + 8 * (kc % S), (uint32_t)(kc / S) & 1);
    hfw_fence();
#pragma unroll
    for (int s = 0; s < 4; s++) hfw_mma(acc, a[s], hfw_desc(sbase + ob + 32 * s));
    hfw_commit();
    // the weights of chunk kc + 3 into slot kc (its codes and scales were read by the A build of the last
    // step, before the barrier; wgmma reads only the slot's x tile), the x tile of chunk kc + 2 into
    // slot kc + 2 (= kc - 1: every warp is past its wgmma, see the barrier below)
    // (the proxy fence right after the stores: it compiles to MEMBAR.CTA, which would also wait for
    // loads issued before it)
    if (w0) cp_wait<0>(); // (never: p.pfw0 is 0; kept so that hfw3's SASS stays as measured, see gemm_params)
    const bool more2 = kc + 2 < nk;
    const bool xw = threadIdx.x < hfw_x<WG>::NX; // the threads that move the x tile
    if constexpr (W1) {
        hfw_wait<1>(acc);
        __syncthreads();
    }
    if constexpr (XB) {
        static_assert(W1 && S >= 4, "hfw_step: XB needs W1 and 4 or more stages");
        const int m = kc + S - 1; // (slot (kc - 1) % S)
        if (threadIdx.x == 0 && m < nk)
            hfw_bulk_x(sbase + (m % S) * C::stage, x0 + (size_t)(kz0 + m) * 16384, sbase + S * C::stage + 8 * (m % S));
        if (kc + S < nk) hfw_load_w<F, WG, WF>(smem + ob, src, kz0 + kc + S);
        cp_commit();
    } else {
    if (more2 && xw) hfw_stx<WG>(smem + on, xv);
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); // the x stores, for wgmma's reads
    if (kc + S < nk) hfw_load_w<F, WG, WF>(smem + ob, src, kz0 + kc + S); // (S = 3 but for SPARKD_FC)
    cp_commit();
    if (kc + 3 < nk && xw) hfw_ldx<WG>(xv, x0, xp, kz0 + kc + 3, ntok);
    }
    // the next chunk's A registers (slot kc + 1: visible since the last barrier)
    {
        quarter q[2];
        uint32_t t2[2][4];
        hf3_rows<F, C>(q, smem + ox, rowb, c);
        hf3_build<F, C>(t2, q, smem + ox, rowb, 0);
#pragma unroll
        for (int r = 0; r < 4; r++) { an[0][r] = t2[0][r]; an[1][r] = t2[1][r]; }
        hf3_build<F, C>(t2, q, smem + ox, rowb, 1);
#pragma unroll
        for (int r = 0; r < 4; r++) { an[2][r] = t2[0][r]; an[3][r] = t2[1][r]; }
    }
    // the A registers materialized here, while the wgmma runs: without this the compiler sinks their
    // arithmetic to its use, after the wgmma wait and the barrier (run 0's build: no overlap at all)
#pragma unroll
    for (int s = 0; s < 4; s++)
#pragma unroll
        for (int r = 0; r < 4; r++) asm volatile("" : "+r"(an[s][r])::"memory");
    cp_wait<S - 2>(); // chunk kc + 2's weights (this thread's copies; kc + 3 .. kc + S's may be in flight)
    if (more2) hf3_decode<F, C>(smem + on, kz0 + kc + 2);
    if constexpr (!W1) {
        hfw_wait<0>(acc);
        __syncthreads();
    }
}

template <uint32_t F, int WG, bool WF, bool W1 = false, int NS = 3, bool XB = false>
__device__ __forceinline__ void hfw_loop(float (&acc)[16][4], uint8_t *smem, uint32_t sbase, const hf_src &src, int kz0,
                                         int nk, const uint8_t *x0, size_t xp, int ntok, uint4 (&xv)[2 * hfw_x<WG>::TPT],
                                         int rowb, int c, bool w0) {
    using C = hfw_cfg<F, WG, NS>;
    uint32_t a0[4][4], a1[4][4];
    {
        quarter q[2];
        uint32_t t2[2][4];
        hf3_rows<F, C>(q, smem, rowb, c);
        hf3_build<F, C>(t2, q, smem, rowb, 0);
#pragma unroll
        for (int r = 0; r < 4; r++) { a0[0][r] = t2[0][r]; a0[1][r] = t2[1][r]; }
        hf3_build<F, C>(t2, q, smem, rowb, 1);
#pragma unroll
        for (int r = 0; r < 4; r++) { a0[2][r] = t2[0][r]; a0[3][r] = t2[1][r]; }
    }
    __syncthreads(); // every warp has read slot 0's codes: step 0 copies chunk 3's weights there
    for (int kc = 0; kc < nk; kc += 2) {
        hfw_step<F, WG, WF, W1, NS, XB>(acc, a0, a1, smem, sbase, kc, nk, kz0, src, x0, xp, ntok, xv, rowb, c, w0);
        if (kc + 1 < nk) hfw_step<F, WG, WF, W1, NS, XB>(acc, a1, a0, smem, sbase, kc + 1, nk, kz0, src, x0, xp, ntok, xv, rowb, c, w0);
    }
    if constexpr (W1) hfw_wait<0>(acc); // (the last chunk's wgmma)
}

// Round 9 (pp): the paired gate+up CTA (hfw_kernel<F, WG, PA = true>). Its rows i < HM / 2 are gate's
// rows m0 + i (matrix 0), rows HM / 2 + i up's rows m0 + i (matrix 1), so gate row r and up row r meet in
// one CTA: warp w (< 2 WG) and warp w + 2 WG hold them in the same lane and register. The cp.async
// sources as hf_src_of lays a CTA's rows out (pieces of NT / ppr rows: Q8_0 two pieces of HM / 2 rows,
// piece 1 = the same row of up; 4-bit one piece of all HM rows); gate and up of one type and shape.
template <uint32_t F, int WG>
__device__ __forceinline__ hf_src hfw_pair_src(const gemm_params &p, int m0, int n0) {
    using C = hfw_cfg<F, WG>;
    constexpr qfmt f = C::f;
    constexpr int ppr = f.cbits * 64 / 8 / 16, NP = C::HM * ppr / C::NT, H = C::HM / 2;
    static_assert(NP == 1 || (NP == 2 && C::NT / ppr == H), "hfw_pair_src: a piece is all the rows or half of them");
    const int tid = threadIdx.x, rows = p.m[0].rows;
    hf_src s = hf_src_of<F, 4 * WG, 1>(p, p.m[0], m0, n0); // (its x fields; the weight fields are set below)
    const int r0 = tid / ppr;
    const int j0 = NP == 2 ? 0 : r0 / H, l0 = m0 + (NP == 2 ? r0 : r0 % H);
    const bool v0 = l0 < rows;
    s.w = p.m[j0].codes + (uint64_t)(v0 ? l0 : 0) * p.m[j0].code_pitch + (tid % ppr) * 16;
    s.wv = v0 ? (NP == 2 ? 3u : 1u) : 0u;
    s.wstep = NP == 2 ? (uint64_t)(p.m[1].codes - p.m[0].codes) : 0; // piece 1: the same row of up
    const int jt = tid < C::HM ? tid / H : 0, lt = m0 + tid % H;
    s.rv = tid < C::HM && lt < rows;
    const int rr = s.rv ? lt : 0;
    s.h = p.m[jt].hi + (uint64_t)rr * p.m[jt].hi_pitch;
    s.m = p.m[jt].meta + (uint64_t)rr * p.m[jt].meta_pitch;
    return s;
}
// layer.cu's act_f, the same expression (the paired epilogue's values are the activation kernels'
// bits: kernels/pp_test.cu compares every word).
__device__ __forceinline__ float hfw_act(float g, int act) {
    if (act == CUDA_ACT_GELU_TANH) {
        const float c = 0.7978845608028654f; // sqrt(2/pi)
        return 0.5f * g * (1.0f + tanhf(c * (g + 0.044715f * g * g * g)));
    }
    return g / (1.0f + expf(-g));
}

// Round 9 (pp), CR: the matrices of one launch as one list of rows (q, k, v: 4096 + 1024 + 1024 rows are 32
// tiles of 192, 34 tiles matrix by matrix: 136 CTAs, two waves on 132 SMs). Virtual row v (v < ws_rows) is
// row v - row0[j] of the last matrix j with row0[j] <= v; the sources per piece as hf_src_of lays a CTA's
// rows out (piece 1 of Q8_0 may lie in the next matrix: wstep is then the distance between the two rows).
__device__ __forceinline__ int hfw_mat_of(const gemm_params &p, int v) {
    int j = 0;
#pragma unroll
    for (int i = 1; i < CUDA_MM_MAX_MATS; i++)
        if (i < p.n && v >= p.row0[i]) j = i;
    return j;
}
template <uint32_t F, int WG>
__device__ __forceinline__ hf_src hfw_cat_src(const gemm_params &p, int m0, int n0) {
    using C = hfw_cfg<F, WG>;
    constexpr qfmt f = C::f;
    constexpr int ppr = f.cbits * 64 / 8 / 16, NP = C::HM * ppr / C::NT;
    static_assert(NP == 1 || NP == 2, "hfw_cat_src: one or two pieces a thread");
    const int tid = threadIdx.x;
    hf_src s = hf_src_of<F, 4 * WG, 1>(p, p.m[0], 0, n0); // (its x fields; the weight fields are set below)
    auto row = [&](int v, bool &ok) -> const uint8_t * {
        ok = v < p.ws_rows;
        const int j = hfw_mat_of(p, ok ? v : 0), lr = ok ? v - p.row0[j] : 0;
        return p.m[j].codes + (uint64_t)lr * p.m[j].code_pitch + (tid % ppr) * 16;
    };
    bool ok0 = false, ok1 = false;
    s.w = row(m0 + tid / ppr, ok0);
    s.wv = ok0 ? 1u : 0u;
    s.wstep = 0;
    if constexpr (NP == 2) {
        const uint8_t *w1 = row(m0 + tid / ppr + C::NT / ppr, ok1);
        s.wstep = (uint64_t)(w1 - s.w);
        s.wv |= ok1 ? 2u : 0u;
    }
    const int v = m0 + tid;
    s.rv = tid < C::HM && v < p.ws_rows;
    const int j = hfw_mat_of(p, s.rv ? v : 0), lr = s.rv ? v - p.row0[j] : 0;
    s.h = p.m[j].hi + (uint64_t)lr * p.m[j].hi_pitch;
    s.m = p.m[j].meta + (uint64_t)lr * p.m[j].meta_pitch;
    return s;
}

// PA (round 9, pp): the paired gate+up CTA (hfw_pair_src) whose epilogue writes act(gate) * up (f32,
// matrix 0's y) instead of gate and up; one K piece (p.ksplit == 1), p.pair_act = CUDA_ACT_* + 1.
// W1 (round 9, pp): see hfw_step. CR (round 9, pp): the matrices as one list of rows (hfw_cat_src).
// NS, XB (round 11, fc): see hfw_cfg, hfw_ximg_kernel and hfw_step.
template <uint32_t F, int WG, bool PA = false, bool W1 = false, bool CR = false, int NS = 3, bool XB = false>
__global__ __launch_bounds__(128 * WG, 1) void hfw_kernel(const gemm_params p) {
#ifdef HFW_ON
    using C = hfw_cfg<F, WG, NS>;
    extern __shared__ __align__(1024) uint8_t smem_raw[];
    const uint32_t sraw = (uint32_t)__cvta_generic_to_shared(smem_raw);
    uint8_t *smem = smem_raw + (((sraw + 1023) & ~1023u) - sraw);
    const uint32_t sbase = (uint32_t)__cvta_generic_to_shared(smem);
    pdl_trigger();
    int b = blockIdx.x, by = blockIdx.y, mi = 0;
    if (p.ntn > 0) { // token tile fastest, as hf2
        by = b % p.ntn;
        b /= p.ntn;
    }
    if constexpr (!PA && !CR)
        while (mi + 1 < p.n && b >= p.m[mi].mtiles) b -= p.m[mi++].mtiles;
    const gemm_mat &M = p.m[mi];
    const int m0 = PA ? b * (C::HM / 2) : b * C::HM, n0 = by * 128; // (C::HM = 64 WG; PA: rows of each matrix)
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
    const int nk_all = p.K / 64;
    const int kz0 = (int)((long)nk_all * blockIdx.z / p.ksplit), kz1 = (int)((long)nk_all * (blockIdx.z + 1) / p.ksplit);
    const int nk = kz1 - kz0;
    hf_src src;
    if constexpr (PA) src = hfw_pair_src<F, WG>(p, m0, n0);
    else if constexpr (CR) src = hfw_cat_src<F, WG>(p, m0, n0);
    else src = hf_src_of<F, 4 * WG, 1>(p, M, m0, n0);
    const bool wf = m0 + (PA ? C::HM / 2 : C::HM) <= (CR ? p.ws_rows : M.rows);
    if constexpr (XB) {
        if (threadIdx.x == 0) { // (before any copy: the fence would wait for those in flight)
            for (int s = 0; s < C::stages; s++) hfw_mb_init(sbase + C::stages * C::stage + 8 * s);
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); // the inits, for the bulk copies
        }
    }
    // weights of chunks 0, 1, 2 before the PDL wait (one commit group each); then the activations
    // (this thread's token) of chunks 0, 1 stored, chunk 2's in registers
    for (int s = 0; s < C::stages; s++) {
        if (s < nk) {
            if (wf) hfw_load_w<F, WG, true>(smem + s * C::stage, src, kz0 + s);
            else hfw_load_w<F, WG, false>(smem + s * C::stage, src, kz0 + s);
        }
        cp_commit();
    }
    pdl_wait();
    const bool xw = threadIdx.x < hfw_x<WG>::NX; // the threads that move the x tile
    const int ntok = min(128, p.T - n0);
    const uint8_t *x0 = XB ? p.ximg + (size_t)by * (p.K / 64) * 16384 : (const uint8_t *)(p.xh + (size_t)n0 * p.K);
    const size_t xp = (size_t)p.K * 2;
    uint4 xv[2 * hfw_x<WG>::TPT];
#pragma unroll
    for (int i = 0; i < 2 * hfw_x<WG>::TPT; i++) xv[i] = make_uint4(0, 0, 0, 0);
    if constexpr (XB) {
        // the images of chunks 0 .. NS - 2 (thread 0); the weights' groups as NS stages without XB
        if (threadIdx.x == 0)
            for (int s = 0; s < C::stages - 1 && s < nk; s++)
                hfw_bulk_x(sbase + s * C::stage, x0 + (size_t)(kz0 + s) * 16384, sbase + C::stages * C::stage + 8 * s);
        cp_wait<C::stages - 2>(); // chunks 0, 1
    } else {
    for (int s = 0; s < 2 && s < nk && xw; s++) {
        hfw_ldx<WG>(xv, x0, xp, kz0 + s, ntok);
        hfw_stx<WG>(smem + s * C::stage, xv);
    }
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); // the x stores, for wgmma's reads
    if (nk > 2 && xw) hfw_ldx<WG>(xv, x0, xp, kz0 + 2, ntok);
    cp_wait<C::stages - 2>(); // chunks 0, 1
    }
    for (int s = 0; s < 2 && s < nk; s++) hf3_decode<F, C>(smem + s * C::stage, kz0 + s);
    __syncthreads();
    float acc[16][4];
#pragma unroll
    for (int i = 0; i < 16; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
    const int rowb = warp * 16 + g;
    if (nk > 0) {
        if (wf) hfw_loop<F, WG, true, W1, NS, XB>(acc, smem, sbase, src, kz0, nk, x0, xp, ntok, xv, rowb, c, p.pfw0 != 0);
        else hfw_loop<F, WG, false, W1, NS, XB>(acc, smem, sbase, src, kz0, nk, x0, xp, ntok, xv, rowb, c, p.pfw0 != 0);
    }
    const int ntiles = min(16, (p.T - n0 + 7) / 8);
    const int rows = M.rows;
    const int rg = m0 + rowb, rg8 = rg + 8;
    if constexpr (PA) {
        // gate row m0 + r is warp r / 16's (< HW), up row m0 + r warp r / 16 + HW's, in the same lane and
        // registers. Each hands half of its tokens to its partner through the idle stages (the gate warp
        // its n8 tiles 8-15, the up warp 0-7), then both write act(gate) * up for the other half (the gate
        // warp tiles 0-7, the up warp 8-15): each value times the token's scale first (the plain
        // epilogue's y), then act_f(gate) * up as the activation kernels compute it
        constexpr int HW = 2 * WG; // warps of one half
        float *ex = (float *)smem; // [2 HW warps][32 accumulators][32 lanes] f32 (2 HW x 4 KB)
        cp_wait<0>();
        __syncthreads();
        const bool up = warp >= HW;
#pragma unroll
        for (int j = 0; j < 32; j++) ex[(warp * 32 + j) * 32 + lane] = up ? acc[j >> 2][j & 3] : acc[8 + (j >> 2)][j & 3];
        __syncthreads();
        const float *pe = ex + (up ? warp - HW : warp + HW) * 32 * 32 + lane; // the partner's 32 values
        const int act = p.pair_act - 1, nt0 = up ? 8 : 0;
        const int rr = m0 + (up ? rowb - 16 * HW : rowb), rr8 = rr + 8; // (the row of gate and of up)
#pragma unroll
        for (int i = 0; i < 8; i++) {
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int tk = n0 + (nt0 + i) * 8 + 2 * c + h;
                if (tk >= p.T) continue;
                const float m0v = up ? acc[8 + i][h] : acc[i][h], m1v = up ? acc[8 + i][2 + h] : acc[i][2 + h];
                const float o0v = pe[(4 * i + h) * 32], o1v = pe[(4 * i + 2 + h) * 32];
                const float ts = p.tscale[tk];
                float *y = M.y + (size_t)tk * M.ldy;
                if (rr < rows) y[rr] = hfw_act((up ? o0v : m0v) * ts, act) * ((up ? m0v : o0v) * ts);
                if (rr8 < rows) y[rr8] = hfw_act((up ? o1v : m1v) * ts, act) * ((up ? m1v : o1v) * ts);
            }
        }
    } else if constexpr (CR) {
        // each of the lane's two rows in its own matrix (virtual rows rg, rg8; the split-K partials' rows are
        // the virtual rows: row0[j] + local row)
        const bool v0 = rg < p.ws_rows, v8 = rg8 < p.ws_rows;
        const int j0 = hfw_mat_of(p, v0 ? rg : 0), j8 = hfw_mat_of(p, v8 ? rg8 : 0);
        const int l0 = rg - p.row0[j0], l8 = rg8 - p.row0[j8];
#pragma unroll
        for (int nt = 0; nt < 16; nt++) {
            if (nt >= ntiles) break;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int tk = n0 + nt * 8 + 2 * c + h;
                if (tk >= p.T) continue;
                const float ts = p.tscale[tk];
                if (p.ksplit > 1) {
                    float *w = p.ws + ((size_t)blockIdx.z * p.T + tk) * p.ws_rows;
                    if (v0) w[rg] = acc[nt][h] * ts;
                    if (v8) w[rg8] = acc[nt][2 + h] * ts;
                    continue;
                }
                if (v0) {
                    float *y = p.m[j0].y + (size_t)tk * p.m[j0].ldy + l0;
                    *y = p.accumulate ? *y + acc[nt][h] * ts : acc[nt][h] * ts;
                }
                if (v8) {
                    float *y = p.m[j8].y + (size_t)tk * p.m[j8].ldy + l8;
                    *y = p.accumulate ? *y + acc[nt][2 + h] * ts : acc[nt][2 + h] * ts;
                }
            }
        }
    } else {
#pragma unroll
        for (int nt = 0; nt < 16; nt++) {
            if (nt >= ntiles) break;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int tk = n0 + nt * 8 + 2 * c + h;
                if (tk >= p.T) continue;
                hf_store2(p, M, mi, tk, rg, rg8, rows, acc[nt][h], acc[nt][2 + h]);
            }
        }
    }
#endif
}

// ---------------------------------------------------------------------------------------
// w64_kernel (round 9, helper w64; sm_90a only): the products of 33..64 tokens (batched decode)
// streaming each weight once. hfw's warp tile on a 64-token wgmma (m64n64k16, A from registers
// built from the codes by hf3_rows / hf3_build: the same A values f16(s * (code - off) + m), the hi
// form as B, f32 accumulation; only the order of the sums differs from hf2 / hfw), CTA = WG
// warpgroups (64 WG rows) x 64 tokens, 1 an SM, split K to ~one wave (partials [ks][T][rows], fz's
// deferred layout). At 64 tokens the product is memory-bound (Qwen3-8B Q8_0 layer: 205 MB of
// weights = 47 us at the probe, 24.7 GFLOP = ~25 us of dense f16 tensor work), so: a deep ring of
// S stages (S - 1 chunks in flight, ~90 KB an SM for Q8_0), weights AND the x tile by cp.async
// (the x tile: 4-byte copies that put P64 word i of a token, word i >> 3 of natural granule i & 7,
// into the 128B-swizzled K-major tile wgmma reads: one coalesced 128-byte row a warp instruction,
// conflict-free; no register staging), the weights of the first S - 1 chunks before the PDL wait.
// The x tile's cp.async writes are read by wgmma (the async proxy) after cp.async.wait_group and a
// barrier, without fence.proxy.async (as CUTLASS's cp.async + GMMA mainloop); P bit 1 (SPARKD_W64_FENCE=1)
// adds it after each chunk's wait. GPU run 1: the same speed either way (the fence was suspected after run
// 0, wrongly: the step is latency-bound on its instruction stream, kernels/PERF.md "Round 9, helper w64").
// Stage ring: at chunk kc the wgmma reads slot kc, the warps build chunk kc + 1's A from slot
// kc + 1, the copies of chunk kc + S - 1 go to slot kc - 1 (free: its wgmma waited, its A built),
// and chunk kc + 2's scales are decoded in place (hf3_decode) once its copies landed.
template <uint32_t F, int WG> struct w64_cfg : hf_cfg<F, 4 * WG, 1> {
    using B = hf_cfg<F, 4 * WG, 1>;
    static constexpr int off_w = 64 * 128; // x tile: 64 tokens x 128 B, natural order, 128B swizzle
    static constexpr int off_h = off_w + B::HM * B::wpitch;
    static constexpr int off_m = off_h + B::HM * B::hpitch;
    static constexpr int stage = (off_m + B::HM * B::mpitch + 1023) & ~1023; // tiles 1024-aligned
    static constexpr int stages = 6;
    static constexpr int smem = stage * stages + 1024; // (+ the base rounded up to 1024)
};
template <int N> __device__ __forceinline__ void w64_wait(float (&d)[8][4]) {
#ifdef HFW_ON
    asm volatile("wgmma.wait_group.sync.aligned %32;\n"
                 : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
                   "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
                   "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
                   "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
                 : "n"(N) : "memory");
#endif
}
// d += A (this warp's 16 rows of the m64 tile, mma.m16n8k16 fragment) x B (64 tokens x k16 at desc)
__device__ __forceinline__ void w64_mma(float (&d)[8][4], const uint32_t (&a)[4], uint64_t desc) {
#ifdef HFW_ON
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, "
                 "%13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
                 "{%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"
                 : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
                   "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
                   "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
                   "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
#endif
}
// ... into a w64 stage (w64_load_x copies the chunk's x tile)
template <uint32_t F, int WG, bool WF, int PF = 0>
__device__ __forceinline__ void w64_load_w(uint8_t *sb, const hf_src &s, int kc) {
    wg_load_w<F, w64_cfg<F, WG>, WF, PF>(sb, s, kc);
}
// Warp w copies tokens w, w + 4 WG, ... (< ntok); lane i = P64 word i of the token's 128 bytes. The
// per-token source offsets and swizzled destinations are computed once a CTA (w64_xs_of): run 0's loop
// spent ~15 instructions of 64-bit address arithmetic a copy.
template <int WG> struct w64_xs {
    static constexpr int NW = 4 * WG, J = (64 + NW - 1) / NW;
    uint32_t o[J]; // token w + NW j: its row's byte offset from x0 + 4 lane (< 2^32: 64 rows of K f16)
    uint32_t d[J]; // ... its word's byte offset in a stage's x tile (128B swizzle)
    uint32_t m;    // bit j: the token is < ntok
};
template <int WG, bool KEEP = false> __device__ __forceinline__ w64_xs<WG> w64_xs_of(size_t pitch, int ntok) {
    w64_xs<WG> xs;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, u = lane & 7, q = lane >> 3;
    xs.m = 0;
#pragma unroll
    for (int j = 0; j < w64_xs<WG>::J; j++) {
        const int t = w + w64_xs<WG>::NW * j;
        xs.o[j] = (uint32_t)((size_t)t * pitch) + 4 * lane;
        xs.d[j] = t * 128 + ((u ^ (t & 7)) << 4) + 4 * q;
        if (t < ntok) xs.m |= 1u << j;
    }
    // opaque, so that ptxas keeps them in registers rather than recomputing them from p.K in every step
    // (it did: ~8 instructions a copy); not at WG 4, whose 128-register cap has no room for them (KEEP: wx_kernel,
    // whose codes' copies left the room: 104-108 registers at WG 4 without them)
    if constexpr (WG < 4 || KEEP) {
#pragma unroll
        for (int j = 0; j < w64_xs<WG>::J; j++) asm volatile("" : "+r"(xs.o[j]), "+r"(xs.d[j]));
    }
    return xs;
}
template <int WG>
__device__ __forceinline__ void w64_load_x(uint8_t *sb, const uint8_t *x0, const w64_xs<WG> &xs, int kc) {
    const uint8_t *xk = x0 + (size_t)kc * 128;
#pragma unroll
    for (int j = 0; j < w64_xs<WG>::J; j++)
        if ((xs.m >> j) & 1) cp_async4(sb + xs.d[j], xk + xs.o[j], true);
}
// The A registers of chunk kc (4 k16 steps) from slot sb.
template <uint32_t F, class C>
__device__ __forceinline__ void w64_build(uint32_t (&a)[4][4], const uint8_t *sb, int rowb, int c) {
    quarter q[2];
    uint32_t t2[2][4];
    hf3_rows<F, C>(q, sb, rowb, c);
    hf3_build<F, C>(t2, q, sb, rowb, 0);
#pragma unroll
    for (int r = 0; r < 4; r++) { a[0][r] = t2[0][r]; a[1][r] = t2[1][r]; }
    hf3_build<F, C>(t2, q, sb, rowb, 1);
#pragma unroll
    for (int r = 0; r < 4; r++) { a[2][r] = t2[0][r]; a[3][r] = t2[1][r]; }
}

template <uint32_t F, int WG, bool WF, bool FENCE>
__device__ __forceinline__ void w64_step(float (&acc)[8][4], const uint32_t (&a)[4][4], uint32_t (&an)[4][4], uint8_t *smem,
                                         uint32_t sbase, int kc, int nk, int kz0, const hf_src &src, const uint8_t *x0,
                                         const w64_xs<WG> &xs, int rowb, int c) {
    using C = w64_cfg<F, WG>;
    constexpr int S = C::stages;
    const int ob = (kc % S) * C::stage, ox = ((kc + 1) % S) * C::stage, on = ((kc + S - 1) % S) * C::stage,
              o2 = ((kc + 2) % S) * C::stage;
    hfw_fence();
#pragma unroll
    for (int s = 0; s < 4; s++) w64_mma(acc, a[s], hfw_desc(sbase + ob + 32 * s));
    hfw_commit();
    if (kc + S - 1 < nk) {
        w64_load_w<F, WG, WF>(smem + on, src, kz0 + kc + S - 1);
        w64_load_x<WG>(smem + on, x0, xs, kz0 + kc + S - 1);
    }
    cp_commit();
    if (kc + 1 < nk) w64_build<F, C>(an, smem + ox, rowb, c);
#pragma unroll
    for (int s = 0; s < 4; s++)
#pragma unroll
        for (int r = 0; r < 4; r++) asm volatile("" : "+r"(an[s][r])::"memory");
    cp_wait<S - 3>(); // chunk kc + 2 landed (this thread's copies)
    if (kc + 2 < nk) hf3_decode<F, C>(smem + o2, kz0 + kc + 2);
    if constexpr (FENCE) asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); // (see w64_kernel)
    w64_wait<0>(acc);
    __syncthreads();
}

// P = 1 (SPARKD_W64_PIPE, default): one wgmma group kept in flight across the step boundary. The step
// issues chunk kc's wgmma, waits for chunk kc - 1's (wait 1: its A registers and slot kc - 1 are then free
// in this warpgroup; the barrier makes it so for all of them and publishes chunk kc + 1's scales), then
// refills slot kc - 1 and builds chunk kc + 1's A while chunk kc's wgmma runs: the tensor pipe gets the
// next chunk's wgmma at the top of the next step without draining (P = 0 waits for its own wgmma before
// the step's barrier, so every step drains it).
template <uint32_t F, int WG, bool WF, bool FENCE, int PF = 0>
__device__ __forceinline__ void w64_step1(float (&acc)[8][4], const uint32_t (&a)[4][4], uint32_t (&an)[4][4], uint8_t *smem,
                                          uint32_t sbase, int kc, int nk, int kz0, const hf_src &src, const uint8_t *x0,
                                          const w64_xs<WG> &xs, int rowb, int c) {
    using C = w64_cfg<F, WG>;
    constexpr int S = C::stages;
    const int ob = (kc % S) * C::stage, ox = ((kc + 1) % S) * C::stage, on = ((kc + S - 1) % S) * C::stage,
              o2 = ((kc + 2) % S) * C::stage;
    hfw_fence();
#pragma unroll
    for (int s = 0; s < 4; s++) w64_mma(acc, a[s], hfw_desc(sbase + ob + 32 * s));
    hfw_commit();
    w64_wait<1>(acc); // chunk kc - 1's wgmma (this warpgroup)
    __syncthreads();  // ... every warpgroup's: slot kc - 1 free; chunk kc + 1's scales visible
    if (kc + S - 1 < nk) {
        w64_load_w<F, WG, WF, PF>(smem + on, src, kz0 + kc + S - 1);
        w64_load_x<WG>(smem + on, x0, xs, kz0 + kc + S - 1);
    }
    cp_commit();
    if (kc + 1 < nk) w64_build<F, C>(an, smem + ox, rowb, c);
#pragma unroll
    for (int s = 0; s < 4; s++)
#pragma unroll
        for (int r = 0; r < 4; r++) asm volatile("" : "+r"(an[s][r])::"memory");
    cp_wait<S - 3>(); // chunk kc + 2 landed (this thread's copies)
    if (kc + 2 < nk) hf3_decode<F, C>(smem + o2, kz0 + kc + 2);
    if constexpr (FENCE) asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); // (see w64_kernel)
}

template <uint32_t F, int WG, int P>
__global__ __launch_bounds__(128 * WG, 1) void w64_kernel(const gemm_params p) {
#ifdef HFW_ON
    using C = w64_cfg<F, WG>;
    constexpr int S = C::stages;
    constexpr int PF = (P & 4) ? 256 : 0; // wx (SPARKD_WX=1): the weights' L2 prefetch size
    extern __shared__ __align__(1024) uint8_t smem_raw[];
    const uint32_t sraw = (uint32_t)__cvta_generic_to_shared(smem_raw);
    uint8_t *smem = smem_raw + (((sraw + 1023) & ~1023u) - sraw);
    const uint32_t sbase = (uint32_t)__cvta_generic_to_shared(smem);
    pdl_trigger();
    int b = blockIdx.x, mi = 0;
    while (mi + 1 < p.n && b >= p.m[mi].mtiles) b -= p.m[mi++].mtiles;
    const gemm_mat &M = p.m[mi];
    const int m0 = b * C::HM;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
    const int nk_all = p.K / 64;
    const int kz0 = (int)((long)nk_all * blockIdx.z / p.ksplit), kz1 = (int)((long)nk_all * (blockIdx.z + 1) / p.ksplit);
    const int nk = kz1 - kz0;
    const hf_src src = hf_src_of<F, 4 * WG, 1>(p, M, m0, 0);
    const bool wf = m0 + C::HM <= M.rows;
    // weights of chunks 0 .. S - 2 before the PDL wait (a commit group each), then their x tiles (one
    // group each): chunk j is complete once at most S - 2 - j groups are pending
    for (int s = 0; s < S - 1; s++) {
        if (s < nk) {
            if (wf) w64_load_w<F, WG, true, PF>(smem + s * C::stage, src, kz0 + s);
            else w64_load_w<F, WG, false, PF>(smem + s * C::stage, src, kz0 + s);
        }
        cp_commit();
    }
    pdl_wait();
    const uint8_t *x0 = (const uint8_t *)p.xh;
    const w64_xs<WG> xs = w64_xs_of<WG>((size_t)p.K * 2, min(64, p.T));
    for (int s = 0; s < S - 1; s++) {
        if (s < nk) w64_load_x<WG>(smem + s * C::stage, x0, xs, kz0 + s);
        cp_commit();
    }
    cp_wait<S - 3>(); // chunks 0, 1
    for (int s = 0; s < 2 && s < nk; s++) hf3_decode<F, C>(smem + s * C::stage, kz0 + s);
    if constexpr ((P & 2) != 0) asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    float acc[8][4];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
    const int rowb = warp * 16 + g;
    if (nk > 0) {
        uint32_t a0[4][4], a1[4][4];
        w64_build<F, C>(a0, smem, rowb, c);
        constexpr bool FE = (P & 2) != 0;
        if constexpr ((P & 1) != 0) {
            for (int kc = 0; kc < nk; kc += 2) {
                if (wf) w64_step1<F, WG, true, FE, PF>(acc, a0, a1, smem, sbase, kc, nk, kz0, src, x0, xs, rowb, c);
                else w64_step1<F, WG, false, FE, PF>(acc, a0, a1, smem, sbase, kc, nk, kz0, src, x0, xs, rowb, c);
                if (kc + 1 < nk) {
                    if (wf) w64_step1<F, WG, true, FE, PF>(acc, a1, a0, smem, sbase, kc + 1, nk, kz0, src, x0, xs, rowb, c);
                    else w64_step1<F, WG, false, FE, PF>(acc, a1, a0, smem, sbase, kc + 1, nk, kz0, src, x0, xs, rowb, c);
                }
            }
            w64_wait<0>(acc);
        } else {
            for (int kc = 0; kc < nk; kc += 2) {
                if (wf) w64_step<F, WG, true, FE>(acc, a0, a1, smem, sbase, kc, nk, kz0, src, x0, xs, rowb, c);
                else w64_step<F, WG, false, FE>(acc, a0, a1, smem, sbase, kc, nk, kz0, src, x0, xs, rowb, c);
                if (kc + 1 < nk) {
                    if (wf) w64_step<F, WG, true, FE>(acc, a1, a0, smem, sbase, kc + 1, nk, kz0, src, x0, xs, rowb, c);
                    else w64_step<F, WG, false, FE>(acc, a1, a0, smem, sbase, kc + 1, nk, kz0, src, x0, xs, rowb, c);
                }
            }
        }
    }
    cp_wait<0>();
    const int rows = M.rows;
    const int rg = m0 + rowb, rg8 = rg + 8;
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int tk = nt * 8 + 2 * c + h;
            if (tk >= p.T) continue;
            hf_store2(p, M, mi, tk, rg, rg8, rows, acc[nt][h], acc[nt][2 + h]);
        }
    }
#endif
}

// ---------------------------------------------------------------------------------------
// wx_kernel (round 12, helper wx; SPARKD_WX=3; sm_90a only): w64_kernel's pipelined step (P 1) with the CTA's
// codes of a chunk sent by ONE tensor copy (cp.async.bulk.tensor.2d, the TMA unit: a box of HM rows x 64 B (Q8_0) /
// 32 B (Q4_K) of the matrix's codes, rows past the matrix zero-filled, the tensor map's L2 promotion 256 B) issued
// by thread 0 after the step's barrier and completing on the slot's mbarrier, instead of 2 (Q8_0) / 1 (Q4_K) 16-byte
// cp.async a thread (each an L1TEX miss request, with its 64-bit address arithmetic every step). The builders wait
// for the slot's mbarrier phase (try_wait, already complete in the steady state) before reading its codes. The
// meta (and x tile) stay per-thread cp.async (meta with the L2::256B prefetch), waited as in w64. Same A values,
// same B, same order of the sums as w64_kernel P 1: bit-identical outputs. Q8_0 (WG 3, 4), Q4_K and Q6_K (WG 3; Q6_K's
// 2-bit hi plane stays per-thread cp.async).
// [tm] one tensor map a matrix (wx_tmap_of; dims {K * cbits / 8 bytes, rows}, box {cbits * 8 bytes, HM rows}).
struct __align__(64) wx_tmap {
    unsigned long long opaque[16]; // CUtensorMap (the driver's cuTensorMapEncodeTiled fills it)
};
struct wx_tmaps {
    wx_tmap m[CUDA_MM_MAX_MATS];
};
template <uint32_t F, class C>
__device__ __forceinline__ void wx_tma_codes(uint32_t dst, uint32_t bar, const wx_tmap *tm, int kc, int m0) {
#ifdef HFW_ON
    constexpr int box = C::f.cbits * 8, bytes = box * C::HM;
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "n"(bytes) : "memory");
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
                 "l"((unsigned long long)tm), "r"(kc * box), "r"(m0), "r"(bar)
                 : "memory");
#endif
}
// MT (SPARKD_WX=4, Q8_0): the meta too, by one tensor copy a group of 4 K chunks (box HM rows x 16 B: the rows' two
// f16 d of 4 chunks) into a ring of 4 entries (HM x 16 B each) after the stages, on 4 more mbarriers; entry e holds
// the CTA's local group L (= global group - kz0 / 4) with L % 4 = e, phase L / 4. A group is sent with the copy of its
// first chunk (or of the CTA's first chunk); the entry it overwrites held group L - 4, whose chunks were built
// before the step's barrier. hf3_build reads a chunk's d from its group's entry (wx_mcfg: mpitch 16, at 4 (kc % 4)).
template <uint32_t F, int WG> struct wx_mcfg : w64_cfg<F, WG> {
    static constexpr int off_m = 0, mpitch = 16;
    static constexpr int ring = 4 * w64_cfg<F, WG>::HM * 16; // bytes of the meta ring
};
template <uint32_t F, class C>
__device__ __forceinline__ void wx_tma_meta(uint32_t dst, uint32_t bar, const wx_tmap *tm, int g, int m0) {
#ifdef HFW_ON
    constexpr int bytes = 16 * C::HM;
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "n"(bytes) : "memory");
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
                 "l"((unsigned long long)tm), "r"(g * 16), "r"(m0), "r"(bar)
                 : "memory");
#endif
}
// thread 0: local chunk n's meta group if n starts one (or is the CTA's first chunk)
template <uint32_t F, int WG>
__device__ __forceinline__ void wx_meta_issue(uint32_t sbase, int n, int kz0, const wx_tmap *tmm, int m0) {
    using C = w64_cfg<F, WG>;
    constexpr int S = C::stages;
    if (n != 0 && ((kz0 + n) & 3) != 0) return;
    const int L = ((kz0 + n) >> 2) - (kz0 >> 2);
    const uint32_t ring = sbase + S * C::stage;
    wx_tma_meta<F, C>(ring + (L & 3) * C::HM * 16, ring + wx_mcfg<F, WG>::ring + 8 * S + 8 * (L & 3), tmm, (kz0 + n) >> 2, m0);
}
// the A registers of local chunk j from its slot's codes and its group's meta entry (after waiting for both)
template <uint32_t F, int WG>
__device__ __forceinline__ void wx_build_mt(uint32_t (&a)[4][4], const uint8_t *slot, uint8_t *smem, uint32_t sbase, int j,
                                            int kz0, int rowb, int c) {
    using C = w64_cfg<F, WG>;
    using MC = wx_mcfg<F, WG>;
    constexpr int S = C::stages;
    const int L = ((kz0 + j) >> 2) - (kz0 >> 2);
    hfw_mb_wait(sbase + S * C::stage + MC::ring + 8 * S + 8 * (L & 3), (uint32_t)(L >> 2) & 1);
    const uint8_t *mb = smem + S * C::stage + (L & 3) * C::HM * 16 + 4 * ((kz0 + j) & 3); // (MC: off_m 0, mpitch 16)
    quarter q[2];
    uint32_t t2[2][4];
    hf3_rows<F, C>(q, slot, rowb, c);
    hf3_build<F, MC>(t2, q, mb, rowb, 0);
#pragma unroll
    for (int r = 0; r < 4; r++) { a[0][r] = t2[0][r]; a[1][r] = t2[1][r]; }
    hf3_build<F, MC>(t2, q, mb, rowb, 1);
#pragma unroll
    for (int r = 0; r < 4; r++) { a[2][r] = t2[0][r]; a[3][r] = t2[1][r]; }
}
template <uint32_t F, int WG, bool WF, bool MT>
__device__ __forceinline__ void wx_step(float (&acc)[8][4], const uint32_t (&a)[4][4], uint32_t (&an)[4][4], uint8_t *smem,
                                        uint32_t sbase, int kc, int nk, int kz0, const hf_src &src, const uint8_t *x0,
                                        const w64_xs<WG> &xs, int rowb, int c, const wx_tmap *tm, const wx_tmap *tmm, int m0) {
    using C = w64_cfg<F, WG>;
    constexpr int S = C::stages;
    const uint32_t bars = sbase + S * C::stage + (MT ? wx_mcfg<F, WG>::ring : 0); // the stages' mbarriers (8 B each)
    const int ob = (kc % S) * C::stage, ox = ((kc + 1) % S) * C::stage, on = ((kc + S - 1) % S) * C::stage,
              o2 = ((kc + 2) % S) * C::stage;
    hfw_fence();
#pragma unroll
    for (int s = 0; s < 4; s++) w64_mma(acc, a[s], hfw_desc(sbase + ob + 32 * s));
    hfw_commit();
    w64_wait<1>(acc); // chunk kc - 1's wgmma (this warpgroup)
    __syncthreads();  // ... every warpgroup's: slot kc - 1 free (its codes were read by the build of step kc - 2)
    if (kc + S - 1 < nk) {
        if (threadIdx.x == 0) {
            wx_tma_codes<F, C>(sbase + on + C::off_w, bars + 8 * ((kc + S - 1) % S), tm, kz0 + kc + S - 1, m0);
            if constexpr (MT) wx_meta_issue<F, WG>(sbase, kc + S - 1, kz0, tmm, m0);
        }
        if constexpr (!MT) wg_load_w<F, C, WF, 256, true>(smem + on, src, kz0 + kc + S - 1);
        w64_load_x<WG>(smem + on, x0, xs, kz0 + kc + S - 1);
    }
    cp_commit();
    if (kc + 1 < nk) {
        hfw_mb_wait(bars + 8 * ((kc + 1) % S), (uint32_t)((kc + 1) / S) & 1); // chunk kc + 1's codes landed
        if constexpr (MT) wx_build_mt<F, WG>(an, smem + ox, smem, sbase, kc + 1, kz0, rowb, c);
        else w64_build<F, C>(an, smem + ox, rowb, c);
    }
#pragma unroll
    for (int s = 0; s < 4; s++)
#pragma unroll
        for (int r = 0; r < 4; r++) asm volatile("" : "+r"(an[s][r])::"memory");
    cp_wait<S - 3>(); // chunk kc + 2's meta and x landed (this thread's copies)
    if constexpr (!MT) {
        if (kc + 2 < nk) hf3_decode<F, C>(smem + o2, kz0 + kc + 2);
    }
}

template <uint32_t F, int WG, bool MT = false>
__global__ __launch_bounds__(128 * WG, 1) void wx_kernel(const gemm_params p, const __grid_constant__ wx_tmaps tms,
                                                         const __grid_constant__ wx_tmaps tmms) {
#ifdef HFW_ON
    using C = w64_cfg<F, WG>;
    constexpr int S = C::stages;
    static_assert(!MT || F == QT_Q8_0, "wx_kernel: MT is Q8_0's");
    extern __shared__ __align__(1024) uint8_t smem_raw[];
    const uint32_t sraw = (uint32_t)__cvta_generic_to_shared(smem_raw);
    uint8_t *smem = smem_raw + (((sraw + 1023) & ~1023u) - sraw);
    const uint32_t sbase = (uint32_t)__cvta_generic_to_shared(smem);
    const uint32_t bars = sbase + S * C::stage + (MT ? wx_mcfg<F, WG>::ring : 0);
    pdl_trigger();
    int b = blockIdx.x, mi = 0;
    while (mi + 1 < p.n && b >= p.m[mi].mtiles) b -= p.m[mi++].mtiles;
    const gemm_mat &M = p.m[mi];
    const wx_tmap *tm = &tms.m[mi], *tmm = &tmms.m[mi];
    const int m0 = b * C::HM;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
    const int nk_all = p.K / 64;
    const int kz0 = (int)((long)nk_all * blockIdx.z / p.ksplit), kz1 = (int)((long)nk_all * (blockIdx.z + 1) / p.ksplit);
    const int nk = kz1 - kz0;
    const hf_src src = hf_src_of<F, 4 * WG, 1>(p, M, m0, 0);
    const bool wf = m0 + C::HM <= M.rows;
    if (threadIdx.x == 0) { // the mbarriers (before any copy), then the codes of chunks 0 .. S - 2
        for (int s = 0; s < S + (MT ? 4 : 0); s++) hfw_mb_init(bars + 8 * s);
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); // the inits, for the tensor copies
        for (int s = 0; s < S - 1 && s < nk; s++) {
            wx_tma_codes<F, C>(sbase + s * C::stage + C::off_w, bars + 8 * s, tm, kz0 + s, m0);
            if constexpr (MT) wx_meta_issue<F, WG>(sbase, s, kz0, tmm, m0);
        }
    }
    // the meta of chunks 0 .. S - 2 before the PDL wait (a commit group each), then their x tiles (one group each)
    for (int s = 0; s < S - 1; s++) {
        if (s < nk && !MT) {
            if (wf) wg_load_w<F, C, true, 256, true>(smem + s * C::stage, src, kz0 + s);
            else wg_load_w<F, C, false, 256, true>(smem + s * C::stage, src, kz0 + s);
        }
        cp_commit();
    }
    pdl_wait();
    const uint8_t *x0 = (const uint8_t *)p.xh;
    const w64_xs<WG> xs = w64_xs_of<WG, true>((size_t)p.K * 2, min(64, p.T));
    for (int s = 0; s < S - 1; s++) {
        if (s < nk) w64_load_x<WG>(smem + s * C::stage, x0, xs, kz0 + s);
        cp_commit();
    }
    cp_wait<S - 3>(); // chunks 0, 1 (meta, x)
    if constexpr (!MT)
        for (int s = 0; s < 2 && s < nk; s++) hf3_decode<F, C>(smem + s * C::stage, kz0 + s);
    __syncthreads(); // (also: the mbarriers' inits before anyone waits on them)
    float acc[8][4];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
    const int rowb = warp * 16 + g;
    if (nk > 0) {
        uint32_t a0[4][4], a1[4][4];
        hfw_mb_wait(bars, 0); // chunk 0's codes
        if constexpr (MT) wx_build_mt<F, WG>(a0, smem, smem, sbase, 0, kz0, rowb, c);
        else w64_build<F, C>(a0, smem, rowb, c);
        for (int kc = 0; kc < nk; kc += 2) {
            if (wf) wx_step<F, WG, true, MT>(acc, a0, a1, smem, sbase, kc, nk, kz0, src, x0, xs, rowb, c, tm, tmm, m0);
            else wx_step<F, WG, false, MT>(acc, a0, a1, smem, sbase, kc, nk, kz0, src, x0, xs, rowb, c, tm, tmm, m0);
            if (kc + 1 < nk) {
                if (wf) wx_step<F, WG, true, MT>(acc, a1, a0, smem, sbase, kc + 1, nk, kz0, src, x0, xs, rowb, c, tm, tmm, m0);
                else wx_step<F, WG, false, MT>(acc, a1, a0, smem, sbase, kc + 1, nk, kz0, src, x0, xs, rowb, c, tm, tmm, m0);
            }
        }
        w64_wait<0>(acc);
    }
    cp_wait<0>();
    const int rows = M.rows;
    const int rg = m0 + rowb, rg8 = rg + 8;
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int tk = nt * 8 + 2 * c + h;
            if (tk >= p.T) continue;
            hf_store2(p, M, mi, tk, rg, rg8, rows, acc[nt][h], acc[nt][2 + h]);
        }
    }
#endif
}

// ---------------------------------------------------------------------------------------
// wt_kernel (round 13, helper wt; SPARKD_WT=1; sm_90a only; Q8_0 with the meta by tensor copies, WG 3 / 4): wx_kernel<Q8_0,
// WG, MT>'s product (the same A values, B, wgmma sequence and order of the sums: bit-identical outputs) with the step's
// CTA-wide barrier replaced by mbarriers, so the warps no longer run in lock step. Round 12's ncu of wx<8,3,1> (64 seq
// Q8_0 gate+up): issue slots 48% busy at 3 warps a scheduler, ~185 instructions a warp a chunk, stalls a issue: wait
// 1.76, long scoreboard 0.69, barrier 0.51, math throttle 0.44, dispatch 0.36: every warp reaches the barrier, then all
// issue the same phase (copies, then the A build) at once, and the tail of each phase runs on one warp a scheduler.
// Ring of S = 8 stages; chunk n lives in slot n % S. Two mbarriers a slot:
// - full[s] (NT + 1 arrivals + the codes' bytes): thread 0's arrive.expect_tx with the codes' tensor copy, and every
//   thread's cp.async.mbarrier.arrive.noinc after its x copies of the chunk (fires when they landed). A warp waits on it
//   before building chunk n's A (so the x tile that chunk n's wgmma reads has landed too).
// - empty[s] (NW arrivals): lane 0 of each warp, once its wgmma.wait_group showed chunk n's wgmma done (step n + 1).
// Step kc: wgmma(kc); wait for wgmma(kc - 1), release its slot; refill slot (kc - 2) % S with chunk kc + S - 2 once
// empty says every warp released chunk kc - 2 (one step of slack: a warp waits only for one a whole step behind);
// build chunk kc + 1's A. S - 2 = 6 chunks in flight (wx: 5). The meta ring (a 4-chunk group a tensor copy, as wx MT)
// is after the stages; an entry is rewritten with the copy of chunk kc + 6, whose group's entry held chunks <= kc - 7,
// built before every warp released chunk kc - 2.
// The descriptors: one base, + the slot's offset (wx recomputed the whole descriptor: 4 uniform ops a wgmma).
template <uint32_t F, int WG> struct wt_cfg : w64_cfg<F, WG> {
    using B = w64_cfg<F, WG>;
    static constexpr int S = 8;                              // stages (a power of 2: slot n & 7, phase n >> 3)
    static constexpr int ring = 4 * B::HM * 16;              // the meta ring: 4 entries of HM rows x 16 B
    static constexpr int off_ring = S * B::stage;            // (stages 1024-aligned from the base)
    static constexpr int off_full = off_ring + ring;         // S mbarriers
    static constexpr int off_empty = off_full + 8 * S;       // S mbarriers
    static constexpr int off_mbar = off_empty + 8 * S;       // 4 mbarriers (the meta ring's entries)
    static constexpr int smem = off_mbar + 32 + 1024;        // (+ the base rounded up to 1024)
};
__device__ __forceinline__ void wt_mb_init(uint32_t bar, uint32_t count) {
#ifdef HFW_ON
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
#endif
}
// waits for the phase of the given parity; a wait that never ends (a protocol bug) traps instead of hanging the
// process (~2^22 tries, each of which suspends the thread for a while)
__device__ __forceinline__ void wt_mb_wait(uint32_t bar, uint32_t parity) {
#ifdef HFW_ON
    uint32_t ok = 0, n = 0;
    while (true) {
        asm volatile("{\n.reg .pred P;\nmbarrier.try_wait.parity.shared::cta.b64 P, [%1], %2;\nselp.u32 %0, 1, 0, P;\n}\n"
                     : "=r"(ok) : "r"(bar), "r"(parity) : "memory");
        if (ok) break;
        if (++n > (1u << 22)) __trap();
    }
#endif
}
__device__ __forceinline__ void wt_mb_arrive(uint32_t bar) {
#ifdef HFW_ON
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
#endif
}
// this thread's cp.async so far arrive on bar once they landed (the arrival is counted in the barrier's init)
__device__ __forceinline__ void wt_cp_arrive(uint32_t bar) {
#ifdef HFW_ON
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
#endif
}
// The x copies as w64_load_x, from per-thread 64-bit sources made once (x0 + the token's row + 4 lane + kz0 128; wx's
// SASS reloads p.xh from the constant bank and redoes the 64-bit sum every copy: ~6 instructions a copy, 36 a step)
template <int WG> struct wt_xs {
    static constexpr int J = w64_xs<WG>::J;
    const uint8_t *p[J]; // token w + NW j's 4 bytes of the CTA's first chunk
    uint32_t d[J];       // ... their byte offset in a stage's x tile (128B swizzle)
    uint32_t m;          // bit j: the token is < ntok
};
template <int WG> __device__ __forceinline__ wt_xs<WG> wt_xs_of(const uint8_t *x0, size_t pitch, int ntok, int kz0) {
    const w64_xs<WG> o = w64_xs_of<WG, true>(pitch, ntok);
    wt_xs<WG> xs;
#pragma unroll
    for (int j = 0; j < wt_xs<WG>::J; j++) {
        xs.p[j] = x0 + (size_t)kz0 * 128 + o.o[j], xs.d[j] = o.d[j];
        asm volatile("" : "+l"(xs.p[j])); // (kept in registers, not rebuilt from p.xh every copy)
    }
    xs.m = o.m;
    return xs;
}
template <int WG> __device__ __forceinline__ void wt_load_x(uint8_t *sb, const wt_xs<WG> &xs, int n) {
#pragma unroll
    for (int j = 0; j < wt_xs<WG>::J; j++)
        if ((xs.m >> j) & 1) cp_async4(sb + xs.d[j], xs.p[j] + (uint32_t)n * 128u, true);
}
// thread 0: local chunk n's codes (slot n % S, on full) and, where n starts a meta group (or is the CTA's first chunk),
// the group's meta entry
template <uint32_t F, int WG>
__device__ __forceinline__ void wt_issue(uint32_t sbase, int n, int kz0, const wx_tmap *tm, const wx_tmap *tmm, int m0) {
    using C = w64_cfg<F, WG>;
    using T = wt_cfg<F, WG>;
    const int sl = n & (T::S - 1);
    wx_tma_codes<F, C>(sbase + sl * C::stage + C::off_w, sbase + T::off_full + 8 * sl, tm, kz0 + n, m0);
    if (n != 0 && ((kz0 + n) & 3) != 0) return;
    const int L = ((kz0 + n) >> 2) - (kz0 >> 2);
    wx_tma_meta<F, C>(sbase + T::off_ring + (L & 3) * C::HM * 16, sbase + T::off_mbar + 8 * (L & 3), tmm, (kz0 + n) >> 2, m0);
}
// the A registers of local chunk j in slot sl, fill parity ph (after waiting for its codes and x, and its meta group;
// MW: the meta group's wait only at the group's first chunk of this CTA, as this warp waited for it there)
template <uint32_t F, int WG, bool MW = false>
__device__ __forceinline__ void wt_build_s(uint32_t (&a)[4][4], uint8_t *smem, uint32_t sbase, int sl, uint32_t ph, int j, int kz0,
                                           int rowb, int c) {
    using C = w64_cfg<F, WG>;
    using MC = wx_mcfg<F, WG>;
    using T = wt_cfg<F, WG>;
    const int L = ((kz0 + j) >> 2) - (kz0 >> 2);
    wt_mb_wait(sbase + T::off_full + 8 * sl, ph);
    if (!MW || j == 0 || ((kz0 + j) & 3) == 0) wt_mb_wait(sbase + T::off_mbar + 8 * (L & 3), (uint32_t)(L >> 2) & 1);
    const uint8_t *slot = smem + sl * C::stage;
    const uint8_t *mb = smem + T::off_ring + (L & 3) * C::HM * 16 + 4 * ((kz0 + j) & 3); // (MC: off_m 0, mpitch 16)
    quarter q[2];
    uint32_t t2[2][4];
    hf3_rows<F, C>(q, slot, rowb, c);
    hf3_build<F, MC>(t2, q, mb, rowb, 0);
#pragma unroll
    for (int r = 0; r < 4; r++) { a[0][r] = t2[0][r]; a[1][r] = t2[1][r]; }
    hf3_build<F, MC>(t2, q, mb, rowb, 1);
#pragma unroll
    for (int r = 0; r < 4; r++) { a[2][r] = t2[0][r]; a[3][r] = t2[1][r]; }
}
template <uint32_t F, int WG>
__device__ __forceinline__ void wt_build(uint32_t (&a)[4][4], uint8_t *smem, uint32_t sbase, int j, int kz0, int rowb, int c) {
    wt_build_s<F, WG>(a, smem, sbase, j & (wt_cfg<F, WG>::S - 1), (uint32_t)(j >> 3) & 1, j, kz0, rowb, c);
}
template <uint32_t F, int WG>
__device__ __forceinline__ void wt_step(float (&acc)[8][4], const uint32_t (&a)[4][4], uint32_t (&an)[4][4], uint8_t *smem,
                                        uint32_t sbase, uint32_t dlo, int kc, int nk, int kz0, const wt_xs<WG> &xs, int rowb,
                                        int c, const wx_tmap *tm, const wx_tmap *tmm, int m0) {
    using C = w64_cfg<F, WG>;
    using T = wt_cfg<F, WG>;
    constexpr int S = T::S;
    const uint32_t d0 = dlo + (uint32_t)(((kc & (S - 1)) * C::stage) >> 4); // (the descriptor's address field, 16-byte units)
    hfw_fence();
#pragma unroll
    for (int s = 0; s < 4; s++) w64_mma(acc, a[s], (uint64_t)(d0 + 2 * s) | ((uint64_t)(1024 >> 4) << 32 | (uint64_t)1 << 62));
    hfw_commit();
    w64_wait<1>(acc); // chunk kc - 1's wgmma (this warpgroup): its A registers and, for this warp, its slot are free
    if (kc > 0 && (threadIdx.x & 31) == 0) wt_mb_arrive(sbase + T::off_empty + 8 * ((kc - 1) & (S - 1)));
    const int n = kc + S - 2; // refill slot (kc - 2) % S once every warp released chunk kc - 2
    if (n < nk) {
        const int sl = n & (S - 1);
        if (kc >= 2) wt_mb_wait(sbase + T::off_empty + 8 * sl, (uint32_t)((n >> 3) - 1) & 1);
        if (threadIdx.x == 0) wt_issue<F, WG>(sbase, n, kz0, tm, tmm, m0);
        wt_load_x<WG>(smem + sl * C::stage, xs, n);
        wt_cp_arrive(sbase + T::off_full + 8 * sl);
    }
    if (kc + 1 < nk) wt_build<F, WG>(an, smem, sbase, kc + 1, kz0, rowb, c);
#pragma unroll
    for (int s = 0; s < 4; s++)
#pragma unroll
        for (int r = 0; r < 4; r++) asm volatile("" : "+r"(an[s][r])::"memory");
}

// SPARKD_WT=2 (U8): wt_step unrolled 8 times (chunk kc = kc0 + J, kc0 a multiple of 8): the slots, the barriers'
// addresses, the descriptors and which parity each wait takes are constants; ph = (kc0 / 8) & 1 the only runtime bit
// (WT 1's step spends ~45 uniform ops a warp on them: ~1/4 of its ~200 instructions).
template <uint32_t F, int WG, int J>
__device__ __forceinline__ void wt_step8(float (&acc)[8][4], const uint32_t (&a)[4][4], uint32_t (&an)[4][4], uint8_t *smem,
                                         uint32_t sbase, uint32_t dlo, int kc0, uint32_t ph, int nk, int kz0, const wt_xs<WG> &xs,
                                         int rowb, int c, const wx_tmap *tm, const wx_tmap *tmm, int m0) {
    using C = w64_cfg<F, WG>;
    using T = wt_cfg<F, WG>;
    constexpr int S = T::S;
    static_assert(S == 8 && J >= 0 && J < 8, "wt_step8: 8 stages");
    const int kc = kc0 + J;
    const uint32_t d0 = dlo + (uint32_t)((J * C::stage) >> 4);
    hfw_fence();
#pragma unroll
    for (int s = 0; s < 4; s++) w64_mma(acc, a[s], (uint64_t)(d0 + 2 * s) | ((uint64_t)(1024 >> 4) << 32 | (uint64_t)1 << 62));
    hfw_commit();
    w64_wait<1>(acc); // chunk kc - 1's wgmma (this warpgroup)
    if ((J > 0 || kc0 > 0) && (threadIdx.x & 31) == 0) wt_mb_arrive(sbase + T::off_empty + 8 * ((J + S - 1) & (S - 1)));
    const int n = kc + S - 2; // refill slot (J + 6) % 8 once every warp released chunk kc - 2
    constexpr int SL = (J + S - 2) & (S - 1);
    if (n < nk) {
        if (J >= 2 || kc0 > 0) wt_mb_wait(sbase + T::off_empty + 8 * SL, J >= 2 ? ph : ph ^ 1u); // (chunk kc0 + J - 2)
        if (threadIdx.x == 0) wt_issue<F, WG>(sbase, n, kz0, tm, tmm, m0);
        wt_load_x<WG>(smem + SL * C::stage, xs, n);
        wt_cp_arrive(sbase + T::off_full + 8 * SL);
    }
    if (kc + 1 < nk) wt_build_s<F, WG, true>(an, smem, sbase, (J + 1) & (S - 1), J + 1 < S ? ph : ph ^ 1u, kc + 1, kz0, rowb, c);
#pragma unroll
    for (int s = 0; s < 4; s++)
#pragma unroll
        for (int r = 0; r < 4; r++) asm volatile("" : "+r"(an[s][r])::"memory");
}

template <uint32_t F, int WG, bool U8 = false>
__global__ __launch_bounds__(128 * WG, 1) void wt_kernel(const gemm_params p, const __grid_constant__ wx_tmaps tms,
                                                         const __grid_constant__ wx_tmaps tmms) {
#ifdef HFW_ON
    using C = w64_cfg<F, WG>;
    using T = wt_cfg<F, WG>;
    constexpr int S = T::S;
    static_assert(F == QT_Q8_0, "wt_kernel: Q8_0 (the meta by tensor copies)");
    extern __shared__ __align__(1024) uint8_t smem_raw[];
    const uint32_t sraw = (uint32_t)__cvta_generic_to_shared(smem_raw);
    uint8_t *smem = smem_raw + (((sraw + 1023) & ~1023u) - sraw);
    const uint32_t sbase = (uint32_t)__cvta_generic_to_shared(smem);
    pdl_trigger();
    int b = blockIdx.x, mi = 0;
    while (mi + 1 < p.n && b >= p.m[mi].mtiles) b -= p.m[mi++].mtiles;
    const gemm_mat &M = p.m[mi];
    const wx_tmap *tm = &tms.m[mi], *tmm = &tmms.m[mi];
    const int m0 = b * C::HM;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
    const int nk_all = p.K / 64;
    const int kz0 = (int)((long)nk_all * blockIdx.z / p.ksplit), kz1 = (int)((long)nk_all * (blockIdx.z + 1) / p.ksplit);
    const int nk = kz1 - kz0;
    if (threadIdx.x == 0) { // the mbarriers (before any copy), then the codes and meta of chunks 0 .. S - 3
        for (int s = 0; s < S; s++) {
            wt_mb_init(sbase + T::off_full + 8 * s, 128 * WG + 1);
            wt_mb_init(sbase + T::off_empty + 8 * s, 4 * WG);
        }
        for (int s = 0; s < 4; s++) wt_mb_init(sbase + T::off_mbar + 8 * s, 1);
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); // the inits, for the tensor copies
        for (int s = 0; s < S - 2 && s < nk; s++) wt_issue<F, WG>(sbase, s, kz0, tm, tmm, m0);
    }
    __syncthreads(); // the inits before any thread's arrive
    pdl_wait();
    const wt_xs<WG> xs = wt_xs_of<WG>((const uint8_t *)p.xh, (size_t)p.K * 2, min(64, p.T), kz0);
    for (int s = 0; s < S - 2 && s < nk; s++) {
        wt_load_x<WG>(smem + s * C::stage, xs, s);
        wt_cp_arrive(sbase + T::off_full + 8 * s);
    }
    float acc[8][4];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
    const int rowb = warp * 16 + g;
    const uint32_t dlo = (uint32_t)hfw_desc(sbase); // the descriptors' low word at slot 0, k16 step 0
    if (nk > 0) {
        uint32_t a0[4][4], a1[4][4];
        wt_build<F, WG>(a0, smem, sbase, 0, kz0, rowb, c);
        if constexpr (U8) {
            for (int kc0 = 0; kc0 < nk; kc0 += 8) {
                const uint32_t ph = (uint32_t)(kc0 >> 3) & 1;
                wt_step8<F, WG, 0>(acc, a0, a1, smem, sbase, dlo, kc0, ph, nk, kz0, xs, rowb, c, tm, tmm, m0);
                if (kc0 + 1 >= nk) break;
                wt_step8<F, WG, 1>(acc, a1, a0, smem, sbase, dlo, kc0, ph, nk, kz0, xs, rowb, c, tm, tmm, m0);
                if (kc0 + 2 >= nk) break;
                wt_step8<F, WG, 2>(acc, a0, a1, smem, sbase, dlo, kc0, ph, nk, kz0, xs, rowb, c, tm, tmm, m0);
                if (kc0 + 3 >= nk) break;
                wt_step8<F, WG, 3>(acc, a1, a0, smem, sbase, dlo, kc0, ph, nk, kz0, xs, rowb, c, tm, tmm, m0);
                if (kc0 + 4 >= nk) break;
                wt_step8<F, WG, 4>(acc, a0, a1, smem, sbase, dlo, kc0, ph, nk, kz0, xs, rowb, c, tm, tmm, m0);
                if (kc0 + 5 >= nk) break;
                wt_step8<F, WG, 5>(acc, a1, a0, smem, sbase, dlo, kc0, ph, nk, kz0, xs, rowb, c, tm, tmm, m0);
                if (kc0 + 6 >= nk) break;
                wt_step8<F, WG, 6>(acc, a0, a1, smem, sbase, dlo, kc0, ph, nk, kz0, xs, rowb, c, tm, tmm, m0);
                if (kc0 + 7 >= nk) break;
                wt_step8<F, WG, 7>(acc, a1, a0, smem, sbase, dlo, kc0, ph, nk, kz0, xs, rowb, c, tm, tmm, m0);
            }
        } else {
            for (int kc = 0; kc < nk; kc += 2) {
                wt_step<F, WG>(acc, a0, a1, smem, sbase, dlo, kc, nk, kz0, xs, rowb, c, tm, tmm, m0);
                if (kc + 1 < nk) wt_step<F, WG>(acc, a1, a0, smem, sbase, dlo, kc + 1, nk, kz0, xs, rowb, c, tm, tmm, m0);
            }
        }
        w64_wait<0>(acc);
    }
    const int rows = M.rows;
    const int rg = m0 + rowb, rg8 = rg + 8;
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int tk = nt * 8 + 2 * c + h;
            if (tk >= p.T) continue;
            hf_store2(p, M, mi, tk, rg, rg8, rows, acc[nt][h], acc[nt][2 + h]);
        }
    }
#endif
}

// ---- the f16 range of a matrix's weights (cuda_hfast_check): one thread a scale group,
// the largest |s| * max|code - off| + |m| of the matrix (non-finite scales count as huge)
template <uint32_t F>
__global__ void hfast_range_kernel(const gemm_mat M, int groups, unsigned *out) {
    constexpr qfmt f = qfmt_of(F);
    // largest |code - off|: Q8_0 128, Q4_K 15, Q5_K 31, Q6_K 32, Q4_0 8, Q5_0 16
    constexpr int top = (1 << (f.cbits + f.hbits)) - 1 - f.off;
    constexpr float cmax = F == QT_Q8_0 ? 128.0f : (float)(top > f.off ? top : f.off);
    float mx = 0.0f;
    const long n = (long)M.rows * groups;
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        const int r = (int)(i / groups), gi = (int)(i % groups);
        float s, m;
        group_sm<F>(M.meta + (uint64_t)r * M.meta_pitch, gi, s, m);
        float v = fabsf(s) * cmax + fabsf(m);
        if (!(v <= 3.0e38f)) v = 3.0e38f;
        mx = fmaxf(mx, v);
    }
    mx = warp_max(mx);
    if ((threadIdx.x & 31) == 0) atomicMax(out, __float_as_uint(mx));
}

// Matrices checked so far: weight base -> 1 ok, 0 out of range (open addressing; entries
// are written once per check, base last).
#define HF_TABLE 8192
struct hf_entry {
    const void *base;
    uint32_t type;
    int64_t rows, cols;
    int ok;
};
static hf_entry hf_table[HF_TABLE];
static size_t hf_slot(const void *base) { return ((uintptr_t)base >> 8) * 0x9E3779B97F4A7C15ull >> 51 & (HF_TABLE - 1); }
static int hf_lookup(const cuda_weight *w) { // 1 ok, 0 out of range, -1 not checked
    for (size_t i = hf_slot(w->base), n = 0; n < HF_TABLE; i = (i + 1) & (HF_TABLE - 1), n++) {
        const void *b = __atomic_load_n(&hf_table[i].base, __ATOMIC_ACQUIRE);
        if (!b) return -1;
        if (b == w->base && hf_table[i].type == w->type && hf_table[i].rows == w->rows && hf_table[i].cols == w->cols)
            return hf_table[i].ok;
    }
    return -1;
}
static void hf_store_locked(const cuda_weight *w, int ok) {
    for (size_t i = hf_slot(w->base), n = 0; n < HF_TABLE; i = (i + 1) & (HF_TABLE - 1), n++) {
        const void *b = __atomic_load_n(&hf_table[i].base, __ATOMIC_ACQUIRE);
        if (b == w->base) {
            hf_table[i].type = w->type; hf_table[i].rows = w->rows; hf_table[i].cols = w->cols; hf_table[i].ok = ok;
            return;
        }
        if (!b) {
            hf_table[i].type = w->type; hf_table[i].rows = w->rows; hf_table[i].cols = w->cols; hf_table[i].ok = ok;
            __atomic_store_n(&hf_table[i].base, w->base, __ATOMIC_RELEASE);
            return;
        }
    }
}
static int hf_lock = 0; // writers (engines of several devices may load at once)
static void hf_store(const cuda_weight *w, int ok) {
    while (__atomic_exchange_n(&hf_lock, 1, __ATOMIC_ACQUIRE)) {
    }
    hf_store_locked(w, ok);
    __atomic_store_n(&hf_lock, 0, __ATOMIC_RELEASE);
}

extern "C" int cuda_hfast_type_ok(uint32_t type) {
    return type == QT_Q8_0 || type == QT_Q4_K || type == QT_Q5_K || type == QT_Q6_K || type == QT_Q4_0 || type == QT_Q5_0;
}

// SPARKD_FAST_MM=int8: today's int8 routing exactly (hfast off); SPARKD_HFAST_MIN_T=n: the
// fewest tokens that take hfast (default 33). cuda_hfast_set: tests and benches.
// Q8_0 below SPARKD_HFAST_MIN_T_Q8 (default 65) stays on the int8 mmq: run 1 (H200), Q8_0 at
// T = 64 hfast's best tiles 196.9 us a layer against mmq's 193.3 (Q4_K 205.3 vs 226.4, Q6_K
// 215.4 vs 330.4: hfast). cuda_hfast_set(n > 0) sets both thresholds (tests, benches).
static int hf_min_t = -1, hf_min_t_q8 = -1;
extern "C" void cuda_hfast_set(int min_t) { hf_min_t = hf_min_t_q8 = min_t; }
static void hf_env() {
    if (hf_min_t < 0) {
        const char *mm = getenv("SPARKD_FAST_MM");
        const char *v = getenv("SPARKD_HFAST_MIN_T"), *v8 = getenv("SPARKD_HFAST_MIN_T_Q8");
        const bool off = mm && !strcmp(mm, "int8");
        hf_min_t = off ? 0 : v && atoi(v) > 1 ? atoi(v) : 33;
        hf_min_t_q8 = off ? 0 : v8 && atoi(v8) > 1 ? atoi(v8) : 65;
    }
}
extern "C" int cuda_hfast_min_t(void) {
    hf_env();
    return hf_min_t ? hf_min_t : 0x7fffffff;
}
extern "C" int cuda_hfast_min_t_type(uint32_t type) {
    hf_env();
    const int t = type == QT_Q8_0 ? hf_min_t_q8 : hf_min_t;
    return t ? t : 0x7fffffff;
}

extern "C" int cuda_hfast_check(const cuda_weight *w, void *stream, err *e) {
    if (!cuda_hfast_type_ok(w->type)) return 0;
    static unsigned *dmaxs[64]; // one word per device
    int dev = 0;
    CUDA_TRY(cudaGetDevice(&dev));
    if (dev < 0 || dev >= 64) return err_set(e, ERR_UNSUPPORTED, "cuda_hfast_check: device %d", dev);
    if (!dmaxs[dev]) CUDA_TRY(cudaMalloc(&dmaxs[dev], sizeof(unsigned)));
    unsigned *dmax = dmaxs[dev];
    gemm_mat m;
    memset(&m, 0, sizeof m);
    wmat_planes(m, w);
    m.rows = (int)w->rows;
    const int groups = (int)(w->cols / qfmt_of(w->type).group);
    CUDA_TRY(cudaMemsetAsync(dmax, 0, sizeof(unsigned), CUDA_STREAM(stream)));
    const long n = (long)m.rows * groups;
    const unsigned blocks = (unsigned)(n / 256 + 1 < 1024 ? n / 256 + 1 : 1024);
    switch (w->type) {
    case QT_Q8_0: hfast_range_kernel<QT_Q8_0><<<blocks, 256, 0, CUDA_STREAM(stream)>>>(m, groups, dmax); break;
    case QT_Q4_K: hfast_range_kernel<QT_Q4_K><<<blocks, 256, 0, CUDA_STREAM(stream)>>>(m, groups, dmax); break;
    case QT_Q5_K: hfast_range_kernel<QT_Q5_K><<<blocks, 256, 0, CUDA_STREAM(stream)>>>(m, groups, dmax); break;
    case QT_Q6_K: hfast_range_kernel<QT_Q6_K><<<blocks, 256, 0, CUDA_STREAM(stream)>>>(m, groups, dmax); break;
    case QT_Q4_0: hfast_range_kernel<QT_Q4_0><<<blocks, 256, 0, CUDA_STREAM(stream)>>>(m, groups, dmax); break;
    case QT_Q5_0: hfast_range_kernel<QT_Q5_0><<<blocks, 256, 0, CUDA_STREAM(stream)>>>(m, groups, dmax); break;
    }
    CUDA_TRY(cudaGetLastError());
    unsigned h = 0;
    CUDA_TRY(cudaMemcpyAsync(&h, dmax, sizeof h, cudaMemcpyDeviceToHost, CUDA_STREAM(stream)));
    CUDA_TRY(cudaStreamSynchronize(CUDA_STREAM(stream)));
    float mx;
    memcpy(&mx, &h, 4);
    // weights below 2^15 in f16 (max 65504); times the hi form (< 2^14) far inside f32
    const int ok = mx < 32768.0f;
    hf_store(w, ok);
    return 0;
}

// Whether cuda_matmul gives these matrices to hfast_kernel: precision fast (exact = 0), the
// f16 form present, T at least the threshold, a supported type, every matrix checked in
// range (an unchecked one is checked here unless the stream is capturing a graph).
static bool hfast_wants(const cuda_mm_args *a, const cuda_mmin *x, void *stream, bool any_t = false) {
    if (a->exact || (!any_t && x->T < cuda_hfast_min_t_type(a->w[0]->type)) || !(x->forms & CUDA_MMIN_F16) || !x->hi ||
        !cuda_hfast_type_ok(a->w[0]->type))
        return false;
    for (int i = 0; i < a->n; i++) {
        int ok = hf_lookup(a->w[i]);
        if (ok < 0) {
            cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
            if (cudaStreamIsCapturing(CUDA_STREAM(stream), &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone)
                return false;
            err e2 = {ERR_OK, {0}};
            if (cuda_hfast_check(a->w[i], stream, &e2)) return false;
            ok = hf_lookup(a->w[i]);
        }
        if (ok != 1) return false;
    }
    return true;
}

template <uint32_t F, int WM, int MT = 2>
static int hfast_launch_t(const gemm_params &p, int mtiles, void *stream, err *e) {
    using C = hf_cfg<F, WM, MT>;
    static bool attr[64]; // (per device)
    CUDA_TRY(cuda_smem_once(hfast_kernel<F, WM, MT>, (int)(C::smem), attr));
    const unsigned ntn = (unsigned)((p.T + C::TN - 1) / C::TN);
    dim3 grid(p.ntn > 0 ? (unsigned)mtiles * ntn : (unsigned)mtiles, p.ntn > 0 ? 1u : ntn, (unsigned)p.ksplit);
    CUDA_TRY(cuda_launch(hfast_kernel<F, WM, MT>, grid, dim3(C::NT), (size_t)C::smem, stream, p));
    if (p.ksplit > 1 && !part_defer_z(p.defer, p.ws, p.ksplit, p.T, p.ws_rows, p.row0, p.n))
        CUDA_TRY(cuda_launch(gemm_reduce_kernel, dim3((unsigned)((p.ws_rows + 255) / 256), (unsigned)p.T), dim3(256), 0,
                             stream, p));
    return 0;
}

template <uint32_t F>
static int hf2_launch_t(const gemm_params &p, int mtiles, void *stream, err *e) {
    using C2 = hf2_cfg<F>;
    static bool attr[64]; // (per device)
    CUDA_TRY(cuda_smem_once(hf2_kernel<F>, (int)(C2::smem), attr));
    const unsigned ntn = (unsigned)((p.T + HF_N - 1) / HF_N);
    dim3 grid(p.ntn > 0 ? (unsigned)mtiles * ntn : (unsigned)mtiles, p.ntn > 0 ? 1u : ntn, (unsigned)p.ksplit);
    CUDA_TRY(cuda_launch(hf2_kernel<F>, grid, dim3(128), (size_t)C2::smem, stream, p));
    if (p.ksplit > 1 && !part_defer_z(p.defer, p.ws, p.ksplit, p.T, p.ws_rows, p.row0, p.n))
        CUDA_TRY(cuda_launch(gemm_reduce_kernel, dim3((unsigned)((p.ws_rows + 255) / 256), (unsigned)p.T), dim3(256), 0,
                             stream, p));
    return 0;
}
// pp_defer (round 9, pp; SPARKD_PP bit 1): a split hfw3 product leaves its partials to the consumer (fz)
template <uint32_t F, int WG, bool PA = false, bool W1 = false, bool CR = false, int NS = 3, bool XB = false>
static int hfw_launch_t(const gemm_params &p, int mtiles, void *stream, err *e, bool pp_defer = false) {
    using CW = hfw_cfg<F, WG, NS>;
    constexpr int smem = CW::smem + (XB ? 64 : 0); // (XB: the stages' mbarriers after the stages)
    static bool attr[64]; // (per device)
    CUDA_TRY(cuda_smem_once(hfw_kernel<F, WG, PA, W1, CR, NS, XB>, (int)(smem), attr));
    const unsigned ntn = (unsigned)((p.T + 127) / 128);
    dim3 grid(p.ntn > 0 ? (unsigned)mtiles * ntn : (unsigned)mtiles, p.ntn > 0 ? 1u : ntn, (unsigned)p.ksplit);
    CUDA_TRY(cuda_launch(hfw_kernel<F, WG, PA, W1, CR, NS, XB>, grid, dim3(128 * WG), (size_t)smem, stream, p));
    if (p.ksplit > 1 && !(pp_defer && part_defer_z(p.defer, p.ws, p.ksplit, p.T, p.ws_rows, p.row0, p.n)))
        CUDA_TRY(cuda_launch(gemm_reduce_kernel, dim3((unsigned)((p.ws_rows + 255) / 256), (unsigned)p.T), dim3(256), 0,
                             stream, p));
    return 0;
}
static long pp_pair_launches = 0, pp_cat_launches = 0; // (tests: paired / one-list launches so far)
// SPARKD_FC (round 11, fc): hfw3 with W1 (SPARKD_PP bit 16) for Q8_0, Q4_K (plain, paired, one-list launches) and
// Q6_K (plain): 0 = round 8's kernel exactly (3 stages, the x tile LDG -> STS -> proxy fence every chunk); any other
// value (default 4) = XB: 6 stages, the x tiles as images sent by bulk copies (hfw_ximg_kernel; run 1: pp512 +9.8%
// Q8_0, +11.2% Q4_K_M); where the stages do not fit the opt-in limit, or while a graph is captured, round 8's kernel.
// (1 / 2: 4 / 6 stages without XB, = 0 in run 0; 3: the x tile by cp.async + proxy fence, 0.70x: removed, PERF.md.)
// Read once.
static int fc_mode_v = -1, fc_optin = 0;
extern "C" int cuda_fc_mode(void) {
    if (fc_mode_v < 0) {
        int dev = 0, optin = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
            optin = 0;
        fc_optin = optin;
        fc_mode_v = cuda_env_int("SPARKD_FC", 4) != 0 ? 4 : 0;
    }
    return fc_mode_v;
}
extern "C" void cuda_fc_set(int mode) { // tests and benches (-1: the env again; else 0 or 4)
    fc_mode_v = -1;
    cuda_fc_mode();
    if (mode >= 0) fc_mode_v = mode ? 4 : 0;
}
// SPARKD_FC=4's image buffer of each device. An engine plans it with its work memory (cuda_fc_img_bytes,
// cuda_fc_provide); without one (tests, benches) a buffer is kept for the process and grown when a product
// needs more. One stream a device uses it: the products of a device run in stream order.
static uint8_t *fc_img_d[16], *fc_prov_d[16];
static long fc_xb_launches = 0;                                    // (tests: XB launches so far)
extern "C" long cuda_fc_xb_launches(void) { return fc_xb_launches; }
static size_t fc_img_bytes_d[16], fc_prov_bytes_d[16];
// Bytes of the x images of T tokens K wide: 0 where hfw3 never runs (SPARKD_FC=0, not sm_90).
extern "C" uint64_t cuda_fc_img_bytes(int T, int K) {
    int dev = 0, major = 0;
    if (T < 1 || K < 64 || cuda_fc_mode() != 4 || cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess || major != 9)
        return 0;
    return (uint64_t)((T + 127) / 128) * 128 * (uint64_t)K * 2;
}
// The engine's buffer for this device.
extern "C" void cuda_fc_provide(void *buf, uint64_t bytes) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 16) return;
    fc_prov_d[dev] = (uint8_t *)buf;
    fc_prov_bytes_d[dev] = buf ? (size_t)bytes : 0;
}
// At the engine's end: withdraws buf if it is still this device's (an engine that failed to start
// leaves another engine's buffer in place).
extern "C" void cuda_fc_withdraw(const void *buf) {
    int dev = 0;
    if (!buf || cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 16 || fc_prov_d[dev] != buf) return;
    fc_prov_d[dev] = NULL;
    fc_prov_bytes_d[dev] = 0;
}
// this device's buffer of >= need bytes (NULL: none; then the caller takes another path)
static uint8_t *fc_img_get(size_t need) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 16) return NULL;
    if (fc_prov_d[dev]) return need <= fc_prov_bytes_d[dev] ? fc_prov_d[dev] : NULL; // an engine's: never grown
    if (need <= fc_img_bytes_d[dev]) return fc_img_d[dev];
    if (cudaDeviceSynchronize() != cudaSuccess) return NULL;
    if (fc_img_d[dev]) cudaFree(fc_img_d[dev]);
    fc_img_d[dev] = NULL;
    fc_img_bytes_d[dev] = 0;
    if (cudaMalloc((void **)&fc_img_d[dev], need) != cudaSuccess) {
        cudaGetLastError();
        fc_img_d[dev] = NULL;
        return NULL;
    }
    fc_img_bytes_d[dev] = need;
    return fc_img_d[dev];
}
// hfw3 at the ring depth of SPARKD_FC (see above); NS = 3 is hfw_launch_t's instantiation of round 8
template <uint32_t F, bool PA, bool CR>
static int hfw_fc_launch(gemm_params &p, int mt, void *stream, err *e, bool dz) {
    if constexpr (F == QT_Q8_0 || F == QT_Q4_K || (F == QT_Q6_K && !PA && !CR)) {
        const int fc = cuda_fc_mode();
        if (fc == 4 && fc_optin >= (int)hfw_cfg<F, 3, 6>::smem + 64) {
            // the x images first (a buffer kept and grown; not while a graph is captured: then 3 stages)
            const int tiles = (p.T + 127) / 128;
            const size_t need = (size_t)tiles * 128 * p.K * 2;
            cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
            uint8_t *img = NULL;
            if (cudaStreamIsCapturing((cudaStream_t)stream, &cs) == cudaSuccess && cs == cudaStreamCaptureStatusNone &&
                (img = fc_img_get(need)) != NULL) {
                p.ximg = img;
                const long rows = (long)tiles * 128 * (p.K / 64);
                CUDA_TRY(cuda_launch(hfw_ximg_kernel, dim3((unsigned)((rows + 7) / 8)), dim3(256), 0, stream, p, img, tiles));
                const int rc = hfw_launch_t<F, 3, PA, true, CR, 6, true>(p, mt, stream, e, dz);
                p.ximg = NULL;
                fc_xb_launches++;
                return rc;
            }
        }
    }
    return hfw_launch_t<F, 3, PA, true, CR>(p, mt, stream, e, dz);
}
// hfw3 with round 9's (pp) W1 (SPARKD_PP bit 16) for the types it was measured with; PA the paired tiles
template <uint32_t F, bool PA>
static int hfw_pp_launch(gemm_params &p, int mt, int pp, void *stream, err *e, bool dz) {
    if (pp & 16) return hfw_fc_launch<F, PA, false>(p, mt, stream, e, dz);
    return hfw_launch_t<F, 3, PA>(p, mt, stream, e, dz);
}
// CR (SPARKD_PP bit 32): the matrices of the launch as one list of mt row tiles (Q8_0, Q4_K)
template <uint32_t F>
static int hfw_cr_launch(gemm_params &p, int mt, int pp, void *stream, err *e, bool dz) {
    pp_cat_launches++;
    if (pp & 16) return hfw_fc_launch<F, false, true>(p, mt, stream, e, dz);
    return hfw_launch_t<F, 3, false, false, true>(p, mt, stream, e, dz);
}
static bool hf2_type(uint32_t t) { return t == QT_Q8_0 || t == QT_Q4_K || t == QT_Q5_K || t == QT_Q6_K; }
// SPARKD_HF2=0: hfast_kernel with round 6's tile rule for every type (default 1: hf2_kernel, see hfast_launch);
// SPARKD_HF2_RASTER=0: hf2's CTAs row tile fastest (grid.y = token tiles) instead of token tile fastest
// SPARKD_HF2_Q8T128=1: Q8_0's gate+up-sized products on round 6's 128 x 128 tile (default 0: hf2)
static int hf2_on = -1, hf2_raster = -1, hf2_q8t128 = -1;
static int pf_mode = -1, pf_wg = 0; // SPARKD_PF, and whether hfw_kernel runs here (sm_90a; see hfast_launch)

// Tile and K split: see hfast_launch.
static int env_wm = -1, env_ks = -1, hf_launches = 0;
// tests and benches (declared there): the tile and split (0 = the rule, -1 = as the
// environment says), and how many hfast launches cuda_matmul made so far
extern "C" void cuda_hfast_tile_set(int wm, int ks) {
    env_wm = wm < 0 ? -1 : wm;
    env_ks = ks < 0 ? 0 : ks;
}
extern "C" int cuda_hfast_launches(void) { return hf_launches; }
// Round 8 (t64): hf2's K split at 33..64 tokens up to SPARKD_T64_HKS pieces (with SPARKD_T64 on;
// default 12, 8 = round 7's cap): at T = 64 o and down (32 row tiles) took 8 pieces, 256 CTAs of the
// 396 that 3 an SM hold, and Q4_K_M's Q6_K v (8 tiles) 64; 12 fills the wave (more partials: 12 x T
// x rows f32). GPU run 0 (H200, with fz's deferred reduces): Q4_K_M 64 sequences 6,940 vs 6,542
// tok/s (+6.2%), though the back-to-back kernel bench of o / down alone was 1-6% slower.
extern "C" int cuda_t64_on(void); // mmq.cu
static int t64_hks = -1;
extern "C" void cuda_t64_hks_set(int ks) { t64_hks = ks < 0 ? -1 : ks; } // tests, benches; -1: env
static int hf2_ks_cap(int T) {
    if (t64_hks < 0) {
        const char *v = getenv("SPARKD_T64_HKS");
        t64_hks = v && atoi(v) > 0 ? atoi(v) : 12;
    }
    return T >= 33 && T <= 64 && cuda_t64_on() && t64_hks > 8 ? (t64_hks > 16 ? 16 : t64_hks) : 8;
}
// SPARKD_PP (round 9, pp): bits 1 (hfw3's split partials to the consumer), 2 (the paired gate+up
// epilogue), 8 (attn.cu: the prefill attention's CTAs in a snake order over the waves), 16 (W1:
// hfw3's wgmma in flight across the step's barrier, the A build overlapping it) and 32 (CR: a launch's
// matrices as one list of row tiles where that takes fewer); default 59, 0 = round 8's prefill path
// exactly. (Bit 4, hfw3 in clusters of 2 CTAs sharing the x tile, was measured and
// removed: 0.67x, kernels/PERF.md.) Read once.
static int pp_mode_v = -1;
extern "C" int cuda_pp_mode(void) {
    if (pp_mode_v < 0) {
        const char *v = getenv("SPARKD_PP");
        pp_mode_v = v && v[0] ? atoi(v) & 59 : 59;
    }
    return pp_mode_v;
}
extern "C" void cuda_pp_set(int mode) { pp_mode_v = mode < 0 ? -1 : mode & 59; }
extern "C" long cuda_pp_pair_launches(void) { return pp_pair_launches; } // tests: paired launches so far
extern "C" long cuda_pp_cat_launches(void) { return pp_cat_launches; }   // tests: one-list (CR) launches so far

// pair (round 9, pp): CUDA_ACT_* + 1 of a paired gate+up product (cuda_matmul's pair_act at T > 1; 0:
// none): hfw3 may take it (*pair_done = 1: act(gate) * up in y[0], y[1] not written)
static int hfast_launch(gemm_params &p, const cuda_mm_args *a, int sms, void *stream, err *e, int pair = 0,
                        int *pair_done = NULL) {
    hf_launches++;
    if (env_wm < 0) {
        const char *v = getenv("SPARKD_HFAST_WM");
        env_wm = v ? atoi(v) : 0;
        v = getenv("SPARKD_HFAST_KSPLIT");
        env_ks = v ? atoi(v) : 0;
    }
    const int nk = p.K / 64;
    // Tiles: 2, 4, 8 warps of 32 rows x 64 tokens (CTAs per SM 4, 3, 1: registers), 9 = 8 warps
    // of 16 rows x 128 tokens (128 x 128 CTAs, 2 per SM). Run 1 (H200, every tile of every
    // Qwen3-8B product at T = 64 and 512, Q8_0/Q4_K/Q6_K): 128-row CTAs best almost everywhere
    // (the 256-row CTAs' 8 warps per SM lost 10-45%: the kernel is latency-bound, ncu: no
    // eligible warp 63% of the time at 12 warps); 128 x 128 best for gate+up at T = 512 (Q8_0
    // 412.6 vs 445.2 us, Q6_K 443.3 vs 486.2, Q4_K 457.8 vs 461.9) and worse on the smaller
    // products; split K to ~3 CTAs per SM only below 1 CTA per SM (T = 64: q+k+v, o, down).
    // SPARKD_HFAST_WM=4|9 and SPARKD_HFAST_KSPLIT=n override (tuning); 10 (or 11): hf2_kernel;
    // 12: the round-6 rule (as SPARKD_HF2=0); 13: hf2_kernel, row tile fastest.
    if (hf2_on < 0) {
        const char *v = getenv("SPARKD_HF2");
        hf2_on = !(v && !strcmp(v, "0"));
        v = getenv("SPARKD_HF2_RASTER");
        if (hf2_raster < 0) hf2_raster = !(v && !strcmp(v, "0"));
        v = getenv("SPARKD_HF2_Q8T128");
        if (hf2_q8t128 < 0) hf2_q8t128 = v && !strcmp(v, "1");
    }
    const uint32_t ty = a->w[0]->type;
    int m128 = 0;
    for (int i = 0; i < p.n; i++) m128 += (p.m[i].rows + 127) / 128;
    // hf2 (128 x 64 CTAs, 3 an SM) for its types, split K only below 2 CTAs an SM (to ~one wave:
    // T = 64 gate+up 2, q+k+v / o / down 8). SPARKD_HF2_Q8T128=1: Q8_0's products where round 6's
    // rule takes the 128 x 128 tile stay there. Run 0: Q8_0 gate+up at T = 512 388.5 us there vs
    // 485.2 on hf2 in run 0's CTA order; run 1 (token tile fastest): kernel bench 391.9-405.2 vs
    // 418.7, but the whole model faster on hf2: pp512 13,101 vs 12,659 tok/s, 64 x 512 prompts
    // 15,157 vs 14,732 (SPARKD_HF2=0: 12,974 / 14,265).
    // hfw3 (round 8, pf): hfw_kernel (wgmma, 192 x 128 CTAs sharing the x tile, 1 an SM) at T >= 65
    // for hf2's types on sm_90a. SPARKD_PF=0: today's path (hf2 / round-6 rule) exactly; any other
    // value (the default, 4) hfw3 on sm_90a and today's path elsewhere. Tile code 17: hfw3 at any T
    // (without sm_90a: hf2, as 11). Measured and removed (kernels/PERF.md "Round 8, helper pf"): PF=1 / 2
    // (hf3_kernel), 3 (hfw with one warpgroup a CTA), 5 (hfw3 with A through shared memory),
    // SPARKD_PF_W0, tile codes 14-16 and 18-20.
    if (pf_mode < 0) {
        const char *v = getenv("SPARKD_PF");
        pf_mode = v ? atoi(v) : 4; // default hfw3 (run 1: pp512 Q8_0 +23%, Q4_K_M +44%); sm_90a only, else today's path
        int dev = 0, optin = 0, mj = 0, mn = 0;
        if (cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&mj, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&mn, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess)
            pf_wg = mj == 9 && mn == 0 && optin >= (int)hfw_cfg<QT_Q8_0, 3>::smem; // wgmma: sm_90a only
    }
    if (hf2_type(ty) && pf_wg && (env_wm == 17 || (env_wm <= 0 && pf_mode != 0 && p.T >= 65))) {
        int mt = 0;
        for (int i = 0; i < p.n; i++) {
            p.m[i].mtiles = (p.m[i].rows + 191) / 192;
            mt += p.m[i].mtiles;
        }
        const int ntn = (p.T + 127) / 128, ctas = mt * ntn;
        int ks = 1;
        if (env_ks > 0) ks = env_ks;
        else if (10 * ctas < 9 * sms && nk >= 8) ks = (2 * sms + ctas / 2) / ctas; // one CTA an SM: to ~2 waves
        if (ks > nk / 4) ks = nk / 4;
        if (ks > 8) ks = 8;
        if (!a->work) ks = 1;
        while (ks > 1 && (uint64_t)ks * p.T * p.ws_rows * 4 > a->work_bytes) ks--;
        p.ksplit = ks < 1 ? 1 : ks;
        p.ws = p.ksplit > 1 ? a->work : NULL;
        p.ntn = hf2_raster ? ntn : 0;
        p.pfw0 = 0; // (see gemm_params)
        const int pp = cuda_pp_mode();
        // round 9 (pp): gate+up in one list of paired tiles (96 rows of each a CTA: the same CTA count
        // as two lists of 192-row tiles), the activation in the epilogue; only where nothing splits K
        if ((pp & 2) && pair && pair_done && p.n == 2 && p.ksplit == 1 && !p.accumulate &&
            (ty == QT_Q8_0 || ty == QT_Q4_K) && p.m[0].rows == p.m[1].rows && a->w[0]->cols == a->w[1]->cols &&
            p.m[0].code_pitch == p.m[1].code_pitch && p.m[0].hi_pitch == p.m[1].hi_pitch &&
            p.m[0].meta_pitch == p.m[1].meta_pitch && p.m[0].ldy >= p.m[0].rows) {
            p.m[0].mtiles = (p.m[0].rows + 95) / 96;
            p.m[1].mtiles = 0;
            p.pair_act = pair;
            *pair_done = 1;
            pp_pair_launches++;
            if (ty == QT_Q8_0) return hfw_pp_launch<QT_Q8_0, true>(p, p.m[0].mtiles, pp, stream, e, false);
            return hfw_pp_launch<QT_Q4_K, true>(p, p.m[0].mtiles, pp, stream, e, false);
        }
        const bool dz = (pp & 1) != 0;
        if ((pp & 32) && p.n > 1 && (ty == QT_Q8_0 || ty == QT_Q4_K)) {
            // round 9 pp: one list of rows where it takes fewer tiles (q+k+v of Qwen3-8B: 32 instead of 34)
            const int mtc = (p.ws_rows + 191) / 192;
            if (mtc < mt) {
                const int ctc = mtc * ntn;
                int kc = 1;
                if (env_ks > 0) kc = env_ks;
                else if (10 * ctc < 9 * sms && nk >= 8) kc = (2 * sms + ctc / 2) / ctc;
                if (kc > nk / 4) kc = nk / 4;
                if (kc > 8) kc = 8;
                if (!a->work) kc = 1;
                while (kc > 1 && (uint64_t)kc * p.T * p.ws_rows * 4 > a->work_bytes) kc--;
                p.ksplit = kc < 1 ? 1 : kc;
                p.ws = p.ksplit > 1 ? a->work : NULL;
                if (ty == QT_Q8_0) return hfw_cr_launch<QT_Q8_0>(p, mtc, pp, stream, e, dz);
                return hfw_cr_launch<QT_Q4_K>(p, mtc, pp, stream, e, dz);
            }
        }
        switch (ty) {
        case QT_Q8_0: return hfw_pp_launch<QT_Q8_0, false>(p, mt, pp, stream, e, dz);
        case QT_Q4_K: return hfw_pp_launch<QT_Q4_K, false>(p, mt, pp, stream, e, dz);
        case QT_Q5_K: return hfw_pp_launch<QT_Q5_K, false>(p, mt, pp, stream, e, dz);
        case QT_Q6_K: return hfw_pp_launch<QT_Q6_K, false>(p, mt, pp, stream, e, dz);
        }
    }
    const bool t128_q8 = hf2_q8t128 && ty == QT_Q8_0 && p.T > HF_N && m128 * ((p.T + HF_N - 1) / HF_N) >= 6 * sms;
    const int wmr = env_wm == 12 ? 0 : env_wm; // the round-6 rule below
    if (hf2_type(ty) && (env_wm == 10 || env_wm == 11 || env_wm == 13 || env_wm == 17 || (env_wm <= 0 && hf2_on && !t128_q8))) {
        int mt = 0;
        for (int i = 0; i < p.n; i++) {
            p.m[i].mtiles = (p.m[i].rows + 127) / 128;
            mt += p.m[i].mtiles;
        }
        const int ctas = mt * ((p.T + HF_N - 1) / HF_N);
        int ks = 1;
        if (env_ks > 0) ks = env_ks;
        else if (ctas < 2 * sms && nk >= 8) ks = 3 * sms / ctas;
        if (ks > nk / 4) ks = nk / 4;
        if (ks > hf2_ks_cap(p.T)) ks = hf2_ks_cap(p.T);
        if (!a->work) ks = 1;
        while (ks > 1 && (uint64_t)ks * p.T * p.ws_rows * 4 > a->work_bytes) ks--;
        p.ksplit = ks < 1 ? 1 : ks;
        p.ws = p.ksplit > 1 ? a->work : NULL;
        p.ntn = hf2_raster && env_wm != 13 ? (p.T + HF_N - 1) / HF_N : 0;
        switch (ty) {
        case QT_Q8_0: return hf2_launch_t<QT_Q8_0>(p, mt, stream, e);
        case QT_Q4_K: return hf2_launch_t<QT_Q4_K>(p, mt, stream, e);
        case QT_Q5_K: return hf2_launch_t<QT_Q5_K>(p, mt, stream, e);
        case QT_Q6_K: return hf2_launch_t<QT_Q6_K>(p, mt, stream, e);
        }
    }
    const bool t128_ok = ty == QT_Q8_0 || ty == QT_Q4_K || ty == QT_Q6_K;
    int best_ks = 1;
    int best_wm = wmr == 9 && t128_ok ? 9 : 4; // (the 2- and 8-warp tiles of run 1 are not built)
    if (wmr <= 0 && t128_ok && p.T > HF_N && m128 * ((p.T + HF_N - 1) / HF_N) >= 6 * sms) best_wm = 9;
    {
        const int hm = best_wm == 9 ? 128 : 32 * best_wm, tn = best_wm == 9 ? 128 : HF_N;
        int mt = 0;
        for (int i = 0; i < p.n; i++) mt += (p.m[i].rows + hm - 1) / hm;
        const int ctas = mt * ((p.T + tn - 1) / tn);
        int ks = 1;
        if (env_ks > 0) ks = env_ks;
        else if (ctas < sms && nk >= 8) ks = (3 * sms + ctas - 1) / ctas;
        if (ks > nk / 4) ks = nk / 4;
        if (ks > 8) ks = 8;
        if (!a->work) ks = 1;
        while (ks > 1 && (uint64_t)ks * p.T * p.ws_rows * 4 > a->work_bytes) ks--;
        best_ks = ks < 1 ? 1 : ks;
    }
    const int wm = best_wm, hm = wm == 9 ? 128 : 32 * wm;
    int mtiles = 0;
    for (int i = 0; i < p.n; i++) {
        p.m[i].mtiles = (p.m[i].rows + hm - 1) / hm;
        mtiles += p.m[i].mtiles;
    }
    p.ksplit = best_ks;
    p.ws = best_ks > 1 ? a->work : NULL;
    // hf2's CTA order for these too (Q8_0's 128 x 128 products: gate+up at T = 512 is 100 MB), except
    // as round 6 (SPARKD_HF2=0, tile code 12) or SPARKD_HF2_RASTER=0
    const int tn = wm == 9 ? 128 : HF_N;
    p.ntn = hf2_on && hf2_raster && env_wm != 12 ? (p.T + tn - 1) / tn : 0;
    const uint32_t type = a->w[0]->type;
#define HF_CASE(TY) \
    case TY: return hfast_launch_t<TY, 4>(p, mtiles, stream, e);
#define HF_CASE9(TY) \
    case TY: return wm == 9 ? hfast_launch_t<TY, 8, 1>(p, mtiles, stream, e) : hfast_launch_t<TY, 4>(p, mtiles, stream, e);
    switch (type) {
        HF_CASE9(QT_Q8_0) HF_CASE9(QT_Q4_K) HF_CASE9(QT_Q6_K) HF_CASE(QT_Q5_K) HF_CASE(QT_Q4_0) HF_CASE(QT_Q5_0)
    }
#undef HF_CASE
#undef HF_CASE9
    return err_set(e, ERR_UNSUPPORTED, "cuda_matmul: no hfast kernel for type %u", type);
}

template <uint32_t F>
static int gemm_launch(const gemm_params &p, int mtiles, void *stream, err *e) {
    using C = gemm_cfg<F>;
    static bool attr[64]; // (per device)
    CUDA_TRY(cuda_smem_once(gemm_kernel<F>, (int)(C::smem), attr));
    dim3 grid((unsigned)mtiles, (unsigned)((p.T + GB_N - 1) / GB_N), (unsigned)p.ksplit);
    CUDA_TRY(cuda_launch(gemm_kernel<F>, grid, dim3(256), (size_t)C::smem, stream, p));
    if (p.ksplit > 1 && !part_defer_z(p.defer, p.ws, p.ksplit, p.T, p.ws_rows, p.row0, p.n))
        CUDA_TRY(cuda_launch(gemm_reduce_kernel, dim3((unsigned)((p.ws_rows + 255) / 256), (unsigned)p.T), dim3(256), 0,
                             stream, p));
    return 0;
}

// ---- w64 (round 9): the routing of the products of 33..64 tokens to w64_kernel.
// SPARKD_W64=0: today's routing exactly (w64_kernel never runs, Q8_0 keeps its int8 rows and mmq).
// Default: on sm_90a, the engine's products (cuda_w64_scope: mm_p and the head in engine.cu; the
// tests that call cuda_matmul directly keep today's routing unless they set it) of Q8_0 / Q4_K /
// Q5_K / Q6_K weights at SPARKD_W64_MIN..SPARKD_W64_MAX tokens (default 33..64) take w64_kernel,
// after gemms2 keeps the products it wants (SPARKD_W64_G2, default 1: the K-quants' gate+up and head at
// SPARKD_T64_G2=1; 0: w64 before gemms2) and before mmq; Q8_0 then reads the
// f16 form (engine.cu forms_at asks cuda_w64_takes). SPARKD_W64_KQ=0: Q8_0 only. SPARKD_W64_WG=2|3|4:
// warpgroups a CTA (default: 0 for Q8_0, 3 else; rows 64 WG; 2 and 4 built for Q8_0 and Q4_K only; 0: 4 unless its grid fills the SMs
// more than 0.1 worse than 3's: Qwen3-8B q+k+v, o, down, head on 4, gate+up on 3), SPARKD_W64_KS=n: K pieces,
// SPARKD_W64_PIPE=0: each step drains its own wgmma (WG 3; not Q5_K); SPARKD_W64_FENCE=1: fence.proxy.async
// after each chunk's wait as in run 0 (pipelined; Q8_0 / Q4_K WG 3 only).
static int w64_mode = -1, w64_min = 33, w64_max = 64, w64_wg = -1, w64_ks = 0, w64_kq = 1, w64_g2 = 1, w64_dev = 0, w64_pipe = 1,
           w64_fence = 0;
static long w64_count = 0;
static thread_local int w64_scoped = 0;
// wx (round 12; kernels/PERF.md "Round 12, helper wx"): SPARKD_WX=0: w64 exactly as before (the same kernels and
// launches); 4 (default; run 1: 64 seq Q8_0 +10.6%, Q4_K_M +2.5%): Q8_0 (WG 3, 4), Q4_K and Q6_K (WG 3) on wx_kernel
// (the codes by one tensor copy a chunk; Q8_0's meta too, a copy a 4-chunk group, where K / 16 is a multiple of 16
// bytes); 3: as 4 without Q8_0's meta copies; 1: w64 with the weights' copies carrying the L2::256B prefetch size
// (w64_kernel P 5; also where a tensor map cannot be made). Other values: 4. Other combinations run P 1 unchanged.
// (Run 0 / 1 also measured 2 (L2::128B) and 5 (a bulk L2 prefetch before the PDL wait): no gain / a loss, removed.)
static int w64_wx = -1;
static long wx_count = 0, wx3_count = 0, wx4_count = 0; // launches of a wx variant; of wx_kernel; with MT
static int wx_last_ctas = 0, wx_last_chunks = 0; // the last w64 launch: CTAs, K chunks of its largest piece
// SPARKD_WX's values: 0, 1, 3; any other is 4 (the default)
static int wx_mode_of(int v) { return v == 0 || v == 1 || v == 3 ? v : 4; }
static void w64_env() {
    if (w64_mode >= 0) return;
    const char *v = getenv("SPARKD_W64");
    const int mode = v && !strcmp(v, "0") ? 0 : 1;
    w64_min = 33, w64_max = 64, w64_wg = -1, w64_ks = 0, w64_kq = 1, w64_g2 = 1, w64_pipe = 1, w64_fence = 0;
    if ((v = getenv("SPARKD_W64_MIN")) && atoi(v) >= 2) w64_min = atoi(v);
    if ((v = getenv("SPARKD_W64_MAX")) && atoi(v) >= 2) w64_max = atoi(v) > 64 ? 64 : atoi(v);
    if ((v = getenv("SPARKD_W64_WG")) && (atoi(v) == 0 || (atoi(v) >= 2 && atoi(v) <= 4))) w64_wg = atoi(v);
    if ((v = getenv("SPARKD_W64_KS"))) w64_ks = atoi(v);
    if ((v = getenv("SPARKD_W64_KQ"))) w64_kq = strcmp(v, "0") != 0;
    if ((v = getenv("SPARKD_W64_G2"))) w64_g2 = strcmp(v, "0") != 0;
    if ((v = getenv("SPARKD_W64_PIPE"))) w64_pipe = strcmp(v, "0") != 0;
    if ((v = getenv("SPARKD_W64_FENCE"))) w64_fence = !strcmp(v, "1");
    if (w64_wx < 0) w64_wx = wx_mode_of(cuda_env_int("SPARKD_WX", 4));
    int dev = 0, optin = 0, mj = 0, mn = 0;
    if (cudaGetDevice(&dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&mj, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&mn, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess)
        w64_dev = mj == 9 && mn == 0 && optin >= (int)w64_cfg<QT_Q8_0, 4>::smem; // wgmma: sm_90a only
    w64_mode = mode;
}
// Tests and benches: mode 1 / 0 (-1: as SPARKD_W64 says); warpgroups (0: keep); K pieces (0: the rule, -1:
// keep); the step: bit 0 SPARKD_W64_PIPE, bit 1 SPARKD_W64_FENCE (-1: keep).
extern "C" void cuda_w64_set(int mode) {
    if (mode < 0) {
        w64_mode = -1;
        return;
    }
    w64_env();
    w64_mode = mode;
}
extern "C" void cuda_w64_tune(int wg, int ks, int pipe) {
    w64_env();
    if (wg == -2 || (wg >= 2 && wg <= 4)) w64_wg = wg == -2 ? 0 : wg;
    if (ks >= 0) w64_ks = ks;
    if (pipe >= 0) w64_pipe = pipe & 1, w64_fence = (pipe >> 1) & 1;
}
extern "C" void cuda_w64_scope(int on) { w64_scoped = on; }
// Tests and benches: SPARKD_WX's value (0, 1, 3 or 4; -1: as the environment says); launches that took a wx variant;
// the last w64 launch's CTAs and K chunks a CTA (the kernel bench's us a chunk).
extern "C" void cuda_wx_set(int mode) {
    w64_env();
    w64_wx = wx_mode_of(mode < 0 ? cuda_env_int("SPARKD_WX", 4) : mode);
}
extern "C" long cuda_wx_launches(void) { return wx_count; }
extern "C" long cuda_wx3_launches(void) { return wx3_count; }
extern "C" long cuda_wx4_launches(void) { return wx4_count; }
extern "C" void cuda_wx_last(int *ctas, int *chunks) { *ctas = wx_last_ctas, *chunks = wx_last_chunks; }
extern "C" long cuda_w64_launches(void) { return w64_count; }
// Whether a product of this weight type at T tokens takes w64_kernel (in the engine's scope).
extern "C" int cuda_w64_takes(int T, uint32_t type) {
    w64_env();
    return w64_mode && w64_dev && T >= w64_min && T <= w64_max &&
           (type == QT_Q8_0 || (w64_kq && (type == QT_Q4_K || type == QT_Q5_K || type == QT_Q6_K)));
}

template <uint32_t F, int WG, int P = 1>
static int w64_launch_t(const gemm_params &p, int mtiles, void *stream, err *e) {
    using C = w64_cfg<F, WG>;
    static bool attr[64]; // (per device)
    CUDA_TRY(cuda_smem_once(w64_kernel<F, WG, P>, (int)(C::smem), attr));
    CUDA_TRY(cuda_launch(w64_kernel<F, WG, P>, dim3((unsigned)mtiles, 1u, (unsigned)p.ksplit), dim3(128 * WG), (size_t)C::smem,
                         stream, p));
    if (p.ksplit > 1 && !part_defer_z(p.defer, p.ws, p.ksplit, p.T, p.ws_rows, p.row0, p.n))
        CUDA_TRY(cuda_launch(gemm_reduce_kernel, dim3((unsigned)((p.ws_rows + 255) / 256), (unsigned)p.T), dim3(256), 0,
                             stream, p));
    return 0;
}
// wx (SPARKD_WX=3): the codes' tensor maps (wx_kernel), one per (codes, rows, CTA rows), made by the driver's
// cuTensorMapEncodeTiled (through cudaGetDriverEntryPointByVersion: no libcuda link) once and kept in a fixed
// hash table (weights do not move; the key holds address, pitch, width, rows and CTA rows, so a new matrix at a
// freed one's address gets its own map; unavailable: the caller runs P 5 instead). Host only.
typedef int (*wx_encode_fn)(wx_tmap *, int, unsigned, void *, const unsigned long long *, const unsigned long long *,
                            const unsigned *, const unsigned *, int, int, int, int);
static wx_encode_fn wx_encode = NULL;
static int wx_encode_state = 0; // 0: not asked yet, 1: available, -1: not
struct wx_tent {
    const uint8_t *codes; // (the plane's base) NULL: free
    uint64_t pitch, width;
    int rows, hm, box0;
    wx_tmap m;
};
static wx_tent wx_tcache[2048]; // open addressing on the codes' address (8 probes, then the home slot is replaced)
static pthread_mutex_t wx_tlock = PTHREAD_MUTEX_INITIALIZER;
// plane: base, row pitch and width (bytes), rows; box: box0 bytes x hm rows
static bool wx_tmap_of(const uint8_t *base, uint64_t pitch, uint64_t width, int rows, int box0, int hm, wx_tmap *out) {
    const uint32_t h = (uint32_t)((((uintptr_t)base >> 8) * 0x9E3779B97F4A7C15ull) >> 40) ^ (uint32_t)hm;
    pthread_mutex_lock(&wx_tlock);
    int slot = -1;
    for (int i = 0; i < 8; i++) {
        wx_tent &t = wx_tcache[(h + i) & 2047];
        if (t.codes == base && t.pitch == pitch && t.width == width && t.rows == rows && t.hm == hm && t.box0 == box0) {
            *out = t.m;
            pthread_mutex_unlock(&wx_tlock);
            return true;
        }
        if (!t.codes && slot < 0) slot = (int)((h + i) & 2047);
    }
    if (slot < 0) slot = (int)(h & 2047);
    if (wx_encode_state == 0) {
        void *fn = NULL;
        cudaDriverEntryPointQueryResult q;
        wx_encode_state = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) == cudaSuccess &&
                                  q == cudaDriverEntryPointSuccess && fn
                              ? 1 : -1;
        if (wx_encode_state > 0) wx_encode = (wx_encode_fn)fn;
        else cudaGetLastError();
    }
    bool ok = false;
    if (wx_encode_state > 0 && ((uintptr_t)base & 15) == 0 && pitch % 16 == 0 && pitch >= width && width >= (uint64_t)box0 &&
        rows > 0) {
        wx_tent &t = wx_tcache[slot];
        const unsigned long long dims[2] = {width, (unsigned long long)rows}, strides[1] = {pitch};
        const unsigned box[2] = {(unsigned)box0, (unsigned)hm}, es[2] = {1, 1};
        // UINT8, no interleave, no swizzle, L2 promotion 256 B, out-of-bounds elements zero
        if (wx_encode(&t.m, 0, 2, (void *)base, dims, strides, box, es, 0, 0, 3, 0) == 0) {
            t.codes = base, t.pitch = pitch, t.width = width, t.rows = rows, t.hm = hm, t.box0 = box0;
            *out = t.m;
            ok = true;
        } else t.codes = NULL;
    }
    pthread_mutex_unlock(&wx_tlock);
    return ok;
}
template <uint32_t F, int WG, bool MT = false>
static int wx_launch_t(const gemm_params &p, int mtiles, void *stream, err *e, const wx_tmaps &tms, const wx_tmaps &tmms) {
    using C = w64_cfg<F, WG>;
    constexpr int smem = C::smem + (MT ? wx_mcfg<F, WG>::ring : 0) + 128; // (+ the meta ring, the mbarriers)
    static bool attr[64]; // (per device)
    CUDA_TRY(cuda_smem_once(wx_kernel<F, WG, MT>, (int)(smem), attr));
    CUDA_TRY(cuda_launch(wx_kernel<F, WG, MT>, dim3((unsigned)mtiles, 1u, (unsigned)p.ksplit), dim3(128 * WG), (size_t)smem, stream,
                         p, tms, tmms));
    if (p.ksplit > 1 && !part_defer_z(p.defer, p.ws, p.ksplit, p.T, p.ws_rows, p.row0, p.n))
        CUDA_TRY(cuda_launch(gemm_reduce_kernel, dim3((unsigned)((p.ws_rows + 255) / 256), (unsigned)p.T), dim3(256), 0,
                             stream, p));
    return 0;
}
// wt (round 13, helper wt; kernels/PERF.md "Round 13, helper wt"): SPARKD_WT=0: wx exactly (the same kernels and
// launches); 1: wx's Q8_0 launches with the meta by tensor copies (SPARKD_WX=4's wx_kernel<Q8_0, 3 / 4, MT>) on
// wt_kernel instead, where the device's opt-in shared memory holds its 8 stages (run 1: 64 seq Q8_0 +5.3%); 2 (default;
// run 1: +7.7%): wt_kernel with its step unrolled 8 times (U8: constant slots, barriers and descriptors). Other values:
// 2. Read once.
static int wt_mode = -1, wt_optin = -1;
static long wt_count = 0, wt2_count = 0; // (tests: wt_kernel launches so far; of them U8's)
static bool wt_on(int wg) {
    if (wt_mode < 0) {
        const int v = cuda_env_int("SPARKD_WT", 2);
        wt_mode = v == 0 || v == 1 ? v : 2;
    }
    if (wt_optin < 0) {
        int dev = 0, optin = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
            optin = 0;
        wt_optin = optin;
    }
    return wt_mode > 0 && wt_optin >= (wg == 3 ? wt_cfg<QT_Q8_0, 3>::smem : wt_cfg<QT_Q8_0, 4>::smem);
}
// Tests and benches: SPARKD_WT's value (0 / 1 / 2; -1: as the environment says); wt_kernel launches so far.
extern "C" void cuda_wt_set(int mode) {
    wt_mode = -1;
    if (mode >= 0) wt_mode = mode == 0 || mode == 1 ? mode : 2;
}
extern "C" long cuda_wt_launches(void) { return wt_count; }
extern "C" long cuda_wt2_launches(void) { return wt2_count; }
template <int WG, bool U8>
static int wt_launch_t(const gemm_params &p, int mtiles, void *stream, err *e, const wx_tmaps &tms, const wx_tmaps &tmms) {
    constexpr int smem = wt_cfg<QT_Q8_0, WG>::smem;
    static bool attr[64]; // (per device)
    CUDA_TRY(cuda_smem_once(wt_kernel<QT_Q8_0, WG, U8>, (int)(smem), attr));
    CUDA_TRY(cuda_launch(wt_kernel<QT_Q8_0, WG, U8>, dim3((unsigned)mtiles, 1u, (unsigned)p.ksplit), dim3(128 * WG), (size_t)smem,
                         stream, p, tms, tmms));
    if (p.ksplit > 1 && !part_defer_z(p.defer, p.ws, p.ksplit, p.T, p.ws_rows, p.row0, p.n))
        CUDA_TRY(cuda_launch(gemm_reduce_kernel, dim3((unsigned)((p.ws_rows + 255) / 256), (unsigned)p.T), dim3(256), 0,
                             stream, p));
    return 0;
}
// CTAs of 64 WG rows x 64 tokens, 1 an SM; K split to at most one wave (floor(SMs / row tiles)
// pieces of >= 4 chunks, <= 16): Qwen3-8B at T = 64 on 132 SMs: q+k+v 32 x 4, o 22 x 6, gate+up 128
// x 1, down 22 x 6, head 792 x 1.
static int w64_launch(gemm_params &p, const cuda_mm_args *a, int sms, void *stream, err *e) {
    w64_count++;
    const uint32_t ty = a->w[0]->type;
    // built: every type WG 3 P 1 (pipelined, no fence: the default); Q8_0 / Q4_K WG 2 and 4 P 1; Q8_0 / Q4_K /
    // Q6_K WG 3 P 0 (each step drains its wgmma); Q8_0 / Q4_K WG 3 P 3 (pipelined, fenced); others run P 1
    const int pv = w64_pipe | w64_fence << 1;
    const int P = pv == 1 || (pv == 0 && ty != QT_Q5_K) || (pv == 3 && (ty == QT_Q8_0 || ty == QT_Q4_K)) ? pv : 1;
    int wg = (ty == QT_Q8_0 || ty == QT_Q4_K) && P == 1 ? w64_wg : 3;
    if (wg < 0) wg = ty == QT_Q8_0 ? 0 : 3; // the default: auto for Q8_0 (run 1: 64 seq +9.8% vs WG 3's +8.7%), 3 else
    if (wg == 0) { // SPARKD_W64_WG=0: 4 warpgroups unless their grid fills the SMs clearly worse than 3's
        double fill[2];
        for (int k = 0; k < 2; k++) {
            int m = 0;
            for (int i = 0; i < p.n; i++) m += (p.m[i].rows + 64 * (3 + k) - 1) / (64 * (3 + k));
            int z = m < sms ? sms / m : 1;
            if (z > p.K / 256) z = p.K / 256 > 0 ? p.K / 256 : 1;
            const long c = (long)m * z, waves = (c + sms - 1) / sms;
            fill[k] = (double)c / (double)(waves * sms);
        }
        wg = fill[1] >= fill[0] - 0.1 ? 4 : 3;
    }
    const int hm = 64 * wg;
    int mt = 0;
    for (int i = 0; i < p.n; i++) {
        p.m[i].mtiles = (p.m[i].rows + hm - 1) / hm;
        mt += p.m[i].mtiles;
    }
    const int nk = p.K / 64;
    int ks = w64_ks > 0 ? w64_ks : mt < sms ? sms / mt : 1;
    if (ks > nk / 4) ks = nk / 4;
    if (ks > 16) ks = 16;
    if (!a->work) ks = 1;
    while (ks > 1 && (uint64_t)ks * p.T * p.ws_rows * 4 > a->work_bytes) ks--;
    p.ksplit = ks < 1 ? 1 : ks;
    p.ws = p.ksplit > 1 ? a->work : NULL;
    p.ntn = 0;
    wx_last_ctas = mt * p.ksplit, wx_last_chunks = (nk + p.ksplit - 1) / p.ksplit;
    if ((w64_wx == 3 || w64_wx == 4) && P == 1 && ((ty == QT_Q8_0 && (wg == 3 || wg == 4)) || ((ty == QT_Q4_K || ty == QT_Q6_K) && wg == 3))) {
        // wx_kernel: the codes by one tensor copy a chunk (falls to P 5 below where a map cannot be made); 4: the
        // Q8_0 meta too, a group of 4 chunks a copy (falls to 3 where its map cannot be made)
        wx_tmaps tms, tmms;
        memset(&tms, 0, sizeof tms);
        memset(&tmms, 0, sizeof tmms);
        const int cb = ty == QT_Q8_0 ? 8 : 4;
        bool ok = true, mok = w64_wx == 4 && ty == QT_Q8_0;
        for (int i = 0; i < p.n && ok; i++)
            ok = wx_tmap_of(p.m[i].codes, p.m[i].code_pitch, (uint64_t)p.K * cb / 8, p.m[i].rows, cb * 8, 64 * wg, &tms.m[i]);
        for (int i = 0; i < p.n && ok && mok; i++)
            mok = wx_tmap_of(p.m[i].meta, p.m[i].meta_pitch, (uint64_t)p.K / 16, p.m[i].rows, 16, 64 * wg, &tmms.m[i]);
        if (ok) {
            wx_count++, wx3_count++;
            if (mok) {
                wx4_count++;
                if (wt_on(wg)) { // wt (round 13): the same product without the step's CTA barrier
                    wt_count++;
                    if (wt_mode == 2 && ++wt2_count)
                        return wg == 3 ? wt_launch_t<3, true>(p, mt, stream, e, tms, tmms) : wt_launch_t<4, true>(p, mt, stream, e, tms, tmms);
                    return wg == 3 ? wt_launch_t<3, false>(p, mt, stream, e, tms, tmms) : wt_launch_t<4, false>(p, mt, stream, e, tms, tmms);
                }
                return wg == 3 ? wx_launch_t<QT_Q8_0, 3, true>(p, mt, stream, e, tms, tmms)
                               : wx_launch_t<QT_Q8_0, 4, true>(p, mt, stream, e, tms, tmms);
            }
            if (ty == QT_Q4_K) return wx_launch_t<QT_Q4_K, 3>(p, mt, stream, e, tms, tms);
            if (ty == QT_Q6_K) return wx_launch_t<QT_Q6_K, 3>(p, mt, stream, e, tms, tms);
            return wg == 3 ? wx_launch_t<QT_Q8_0, 3>(p, mt, stream, e, tms, tms) : wx_launch_t<QT_Q8_0, 4>(p, mt, stream, e, tms, tms);
        }
    }
    if (w64_wx > 0 && P == 1) { // wx: the weights' copies with the L2::256B prefetch size (w64_kernel P bit 2)
        if (ty == QT_Q8_0 && (wg == 3 || wg == 4)) {
            wx_count++;
            return wg == 3 ? w64_launch_t<QT_Q8_0, 3, 5>(p, mt, stream, e) : w64_launch_t<QT_Q8_0, 4, 5>(p, mt, stream, e);
        }
        if (ty == QT_Q4_K && wg == 3) {
            wx_count++;
            return w64_launch_t<QT_Q4_K, 3, 5>(p, mt, stream, e);
        }
        if (ty == QT_Q6_K) {
            wx_count++;
            return w64_launch_t<QT_Q6_K, 3, 5>(p, mt, stream, e);
        }
    }
    switch (ty) {
    case QT_Q8_0: if (P == 0) return w64_launch_t<QT_Q8_0, 3, 0>(p, mt, stream, e);
                  if (P == 3) return w64_launch_t<QT_Q8_0, 3, 3>(p, mt, stream, e);
                  return wg == 2 ? w64_launch_t<QT_Q8_0, 2>(p, mt, stream, e) : wg == 4 ? w64_launch_t<QT_Q8_0, 4>(p, mt, stream, e)
                                                                              : w64_launch_t<QT_Q8_0, 3>(p, mt, stream, e);
    case QT_Q4_K: if (P == 0) return w64_launch_t<QT_Q4_K, 3, 0>(p, mt, stream, e);
                  if (P == 3) return w64_launch_t<QT_Q4_K, 3, 3>(p, mt, stream, e);
                  return wg == 2 ? w64_launch_t<QT_Q4_K, 2>(p, mt, stream, e) : wg == 4 ? w64_launch_t<QT_Q4_K, 4>(p, mt, stream, e)
                                                                              : w64_launch_t<QT_Q4_K, 3>(p, mt, stream, e);
    case QT_Q5_K: return w64_launch_t<QT_Q5_K, 3>(p, mt, stream, e);
    case QT_Q6_K: return P == 0 ? w64_launch_t<QT_Q6_K, 3, 0>(p, mt, stream, e) : w64_launch_t<QT_Q6_K, 3>(p, mt, stream, e);
    }
    return err_set(e, ERR_UNSUPPORTED, "cuda_matmul: no w64 kernel for type %u", ty);
}

static int mm_run(const cuda_mm_args *a, const cuda_mmin *x, void *stream, err *e, int pair, int *pair_done);

// Round 9 (pp): pair_act at T > 1 (the engine asks it at T >= 65 with SPARKD_PP bit 2): gate w[0] and up
// w[1] of one type and shape, act(gate) * up into act_out. Where hfw3 runs the product (sm_90a, T >= 65)
// one list of paired tiles computes the activation in its epilogue (into y[0]'s rows; y[1] not written)
// and cuda_mmin_prepare makes act_out from them; elsewhere the product writes gate and up (its split-K
// partials, if a->defer asks, go to the activation) and cuda_act_mm_part makes act_out: the launches
// the engine makes without pair_act. act_out's values are the same bits either way (kernels/pp_test.cu).
static int pp_pair_matmul(const cuda_mm_args *a, const cuda_mmin *x, void *stream, err *e) {
    const int T = x->T;
    if (a->n != 2 || !a->act_out || !a->w[0] || !a->w[1] || a->w[0]->rows != a->w[1]->rows ||
        a->act_out->K != a->w[0]->rows || a->ldy[0] != a->ldy[1] || a->accumulate ||
        (a->pair_act != CUDA_ACT_SILU + 1 && a->pair_act != CUDA_ACT_GELU_TANH + 1))
        return err_set(e, ERR_INVALID, "cuda_matmul: the paired activation at T %d needs gate and up of one shape, "
                                       "one ldy and act_out of their rows", T);
    cuda_mm_args b = *a;
    b.pair_act = 0;
    b.act_out = NULL;
    int done = 0;
    const int rc = mm_run(&b, x, stream, e, a->pair_act, &done);
    if (rc) return rc;
    const int rows = (int)a->w[0]->rows;
    if (done) return cuda_mmin_prepare(a->y[0], a->ldy[0], a->act_out, T, stream, e);
    return cuda_act_mm_part(a->y[0], a->y[1], a->ldy[0], T, rows, a->pair_act - 1, a->defer ? &a->defer->part[0] : NULL,
                            a->defer ? &a->defer->part[1] : NULL, a->act_out, stream, e);
}

extern "C" int cuda_matmul(const cuda_mm_args *a, const cuda_mmin *x, void *stream, err *e) {
    if (a && x && a->pair_act && x->T > 1 && a->path != CUDA_MM_FORCE_GEMV && a->n == 2 && a->w[0] &&
        a->w[0]->type != QT_F32)
        return pp_pair_matmul(a, x, stream, e);
    return mm_run(a, x, stream, e, 0, NULL);
}

static int mm_run(const cuda_mm_args *a, const cuda_mmin *x, void *stream, err *e, int pair, int *pair_done) {
    if (!a || !x || a->n < 1 || a->n > CUDA_MM_MAX_MATS)
        return err_set(e, ERR_INVALID, "cuda_matmul: %d matrices", a ? a->n : 0);
    const uint32_t type = a->w[0]->type;
    const int T = x->T;
    for (int i = 0; i < a->n; i++) {
        const cuda_weight *w = a->w[i];
        if (!w->base || w->type != type || w->cols != x->K || !cuda_weight_bytes(w->type, w->rows, w->cols) ||
            !a->y[i] || a->ldy[i] < w->rows || w->rows > (1 << 30))
            return err_set(e, ERR_INVALID, "cuda_matmul: matrix %d (type %u, %lld x %lld, ldy %d) does not "
                                           "fit an input of K %d", i, w->type, (long long)w->rows,
                           (long long)w->cols, a->ldy[i], x->K);
    }
    if (T < 1) return err_set(e, ERR_INVALID, "cuda_matmul: T %d", T);
    if (a->defer) { // fz: nothing deferred unless a split launcher below says so
        a->defer->used = 0;
        memset(a->defer->part, 0, sizeof a->defer->part);
    }
    const bool gemv = a->path == CUDA_MM_FORCE_GEMV || type == QT_F32 || (a->path == CUDA_MM_AUTO && T == 1);
    if (a->pair_act && (!gemv || a->n != 2 || type == QT_F32 || a->w[0]->rows != a->w[1]->rows || !a->act_out ||
                        !a->act_out->xp || !(a->act_out->forms & CUDA_MMIN_XP) || a->act_out->K != a->w[0]->rows ||
                        (a->pair_act != CUDA_ACT_SILU + 1 && a->pair_act != CUDA_ACT_GELU_TANH + 1)))
        return err_set(e, ERR_INVALID, "cuda_matmul: the paired activation needs the GEMV path, gate and up of one "
                                       "shape and an f32 output of their rows");
    if (gemv) {
        if (!(x->forms & CUDA_MMIN_XP) || T > 65535)
            return err_set(e, ERR_INVALID, "cuda_matmul: GEMV needs the f32 input form (T %d)", T);
        return cuda_gemv_launch(a, x, T, stream, e);
    }
    static int sms = 0; // two CTAs per SM is the target (132 on an H200, 48 on GB10)
    if (!sms) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            sms = 48;
    }
    // w64 (round 9): the engine's products of 33..64 tokens on sm_90a (see w64_launch)
    const bool w64 = w64_scoped && cuda_w64_takes(T, type) && a->path == CUDA_MM_AUTO &&
                     !(w64_g2 && cuda_gemms_wants(a, x)) && hfast_wants(a, x, stream, true);
    if (!w64 && cuda_gemms_wants(a, x)) return cuda_gemms_launch(a, x, stream, e); // 2 <= T <= 32 at fast (gemms.cu)
    const bool hf = w64 || hfast_wants(a, x, stream); // f16 tensor cores, weights scaled in the fragment (fast)
    if (!hf && cuda_mmq_wants(a, x)) return cuda_mmq_launch(a, x, stream, e); // int8 tensor cores (fast)
    const int need = type == QT_BF16 ? CUDA_MMIN_BF16 : CUDA_MMIN_F16;
    if (!(x->forms & need))
        return err_set(e, ERR_INVALID, "cuda_matmul: the tensor-core path needs the %s input form",
                       type == QT_BF16 ? "bf16" : "f16");
    gemm_params p;
    memset(&p, 0, sizeof p);
    p.n = a->n;
    p.K = x->K;
    p.T = T;
    p.accumulate = a->accumulate;
    p.defer = a->accumulate ? NULL : a->defer;
    p.exact = a->exact;
    p.xh = type == QT_BF16 ? x->bhi : x->hi;
    p.xl = type == QT_BF16 ? x->blo : x->lo;
    p.gsum = x->gsum;
    p.tscale = x->tscale;
    int mtiles = 0;
    for (int i = 0; i < a->n; i++) {
        const cuda_weight *w = a->w[i];
        gemm_mat &m = p.m[i];
        wmat_planes(m, w);
        m.y = a->y[i];
        m.rows = (int)w->rows;
        m.ldy = a->ldy[i];
        m.mtiles = (m.rows + GB_M - 1) / GB_M;
        mtiles += m.mtiles;
        p.row0[i] = p.ws_rows;
        p.ws_rows += m.rows;
    }
    // small grids (decode batches on narrow matrices) split K over CTAs, when the caller
    // gave room for the partials
    if (w64) return w64_launch(p, a, sms, stream, e);
    if (hf) return hfast_launch(p, a, sms, stream, e, pair, pair_done);
    p.ksplit = 1;
    const int nk = x->K / 64, ntile_n = (T + GB_N - 1) / GB_N, want = 2 * sms;
    if (a->work && mtiles * ntile_n < want && nk >= 8) {
        int ks = want / (mtiles * ntile_n);
        if (ks > nk / 4) ks = nk / 4;
        if (ks > 8) ks = 8;
        while (ks > 1 && (uint64_t)ks * T * p.ws_rows * 4 > a->work_bytes) ks--;
        if (ks > 1) {
            p.ksplit = ks;
            p.ws = a->work;
        }
    }
    switch (type) {
#define X(TY) case TY: return gemm_launch<TY>(p, mtiles, stream, e);
        X(QT_F16) X(QT_BF16) X(QT_Q8_0) X(QT_Q4_0) X(QT_Q4_1) X(QT_Q5_0) X(QT_Q5_1) X(QT_Q4_K) X(QT_Q5_K)
        X(QT_Q6_K) X(QT_MXFP4)
#undef X
    }
    return err_set(e, ERR_UNSUPPORTED, "cuda_matmul: no tensor-core kernel for type %u", type);
}
