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
#include "cuda_kern.h"

#include <string.h>

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
    float *ws;        // (ksplit, T, rows of all matrices) f32
    int ws_rows;      // rows of all matrices
    int row0[CUDA_MM_MAX_MATS]; // first ws row of each matrix
    const uint16_t *xh, *xl;
    const float *gsum, *tscale;
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

template <uint32_t F>
static int gemm_launch(const gemm_params &p, int mtiles, void *stream, err *e) {
    using C = gemm_cfg<F>;
    static bool attr = false;
    if (!attr) {
        CUDA_TRY(cudaFuncSetAttribute(gemm_kernel<F>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::smem));
        attr = true;
    }
    dim3 grid((unsigned)mtiles, (unsigned)((p.T + GB_N - 1) / GB_N), (unsigned)p.ksplit);
    CUDA_TRY(cuda_launch(gemm_kernel<F>, grid, dim3(256), (size_t)C::smem, stream, p));
    if (p.ksplit > 1)
        CUDA_TRY(cuda_launch(gemm_reduce_kernel, dim3((unsigned)((p.ws_rows + 255) / 256), (unsigned)p.T), dim3(256), 0,
                             stream, p));
    return 0;
}

extern "C" int cuda_matmul(const cuda_mm_args *a, const cuda_mmin *x, void *stream, err *e) {
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
    if (cuda_gemms_wants(a, x)) return cuda_gemms_launch(a, x, stream, e); // 2 <= T <= 32 at fast (gemms.cu)
    if (cuda_mmq_wants(a, x)) return cuda_mmq_launch(a, x, stream, e); // int8 tensor cores (fast)
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
    p.ksplit = 1;
    static int sms = 0; // two CTAs per SM is the target (132 on an H200, 48 on GB10)
    if (!sms) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            sms = 48;
    }
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
