// moe.cu — the mixture-of-experts FFN (cuda_moe.h): routing on the device, expert products
// over the stacked expert tensors (P64 planes, cuda_kern.h), activation, weighted sum.
//
// Launches of one call (T tokens, k experts each, N = T * k entries):
//   route      T <= 32: one CTA does gating, counting, the prefix sum, the tile table and
//              the placement; else a memset + a warp-per-token gating kernel (global
//              counters) + one CTA for the rest. Placement within an expert uses shared
//              atomics, so the order of an expert's tokens varies between runs; no result
//              depends on it (every product column is computed on its own, the combine
//              sums in expert order).
//   small T (<= CUDA_MOE_GEMV_MAX_T): "mmv" — the tensor-core GEMV. A CTA owns 16 rows of
//              one active expert (gate and up rows together for the first product); its 8
//              warps split K, each turning its weight quarters into mma.m16n8k16 f16
//              fragments in registers (qfmt.cuh) against up to 8 of the expert's tokens as
//              the B columns; partial sums meet in shared memory in a fixed order. The
//              first product applies biases and the activation in its epilogue and writes
//              h (f32); a prep pass turns h into the f16 hi/lo input of the second, whose
//              epilogue adds the down bias. Weights are read once per expert; x and h come
//              through L1/L2.
//   larger T:  grouped GEMM — tokens sorted by expert; a tile table (expert, first sorted
//              position, <= 64 tokens) built by the router lets one launch cover every
//              expert: grid (row tiles of gate|up, table entries). The pipeline follows
//              gemm.cu (cp.async, 3 stages, 128 rows x 64 elements of codes per step, codes
//              to f16 fragments in registers, hi + lo activation halves, group scales folded
//              in f32); activation rows are gathered through the sorted token list. Then
//              act(g + bg, u + bu) -> f16 hi/lo rows of h, the down GEMM over sorted rows.
//   combine    out[t] = sum over its k entries in increasing expert order of w * y.
// On sm_120/121 an MXFP4 grouped GEMM on kind::mxf8f6f4 (block-scaled e2m1 x e4m3) is
// compiled too (see cuda_moe.h for when it runs).
#include "cuda_moe.h"

#include <cuda_fp8.h>
#include <stdlib.h>
#include <string.h>

#include "kern_util.cuh"
#include "mmin.cuh"
#include "qfmt.cuh"

// ------------------------------------------------------------------------------ helpers

namespace {

constexpr int kMaxE = CUDA_MOE_MAX_EXPERTS;
constexpr int kMaxK = CUDA_MOE_MAX_USED;

struct moe_mat {
    const uint8_t *codes, *hi, *meta;
    uint64_t code_pitch, hi_pitch, meta_pitch;
};

moe_mat mat_of(const cuda_weight *w) {
    moe_mat m;
    wmat_planes(m, w);
    return m;
}

uint64_t a256(uint64_t x) { return (x + 255) & ~(uint64_t)255; }

// The work buffer of one call (cuda_moe_work_bytes): routing arrays, the tile table,
// intermediate products. Laid out from base (NULL: sizes only).
struct moe_work {
    int32_t *ids, *inv, *stok, *sexp, *count, *first, *active, *meta;
    float *w;
    int4 *tiles;
    int max_tiles;
    float *g, *u, *ys;   // (N, F), (N, F), (N, dim) f32
    cuda_mmin h;         // (N, F) f16 hi/lo: input of the down product
    cuda_mmin x16;       // (T, dim) f16 hi/lo when the caller's x has only the f32 form
    uint8_t *x8h, *x8l, *x8sh, *x8sl; // (T, dim) e4m3 hi/lo, (T, dim/32) ue8m0: native path
    uint8_t *h8h, *h8l, *h8sh, *h8sl; // (N, F), (N, F/32)
    uint64_t total;
};

uint64_t work_carve(uint8_t *base, int T, int dim, int F, int E, int k, moe_work *w) {
    const uint64_t N = (uint64_t)T * k;
    uint64_t off = 0;
    auto take = [&](uint64_t b) { uint8_t *r = base ? base + off : NULL; off += a256(b); return r; };
    memset(w, 0, sizeof *w);
    w->max_tiles = (int)(N / 64 + (uint64_t)(E < (int)N ? E : (int)N) + 1);
    w->ids = (int32_t *)take(N * 4);
    w->inv = (int32_t *)take(N * 4);
    w->stok = (int32_t *)take(N * 4);
    w->sexp = (int32_t *)take(N * 4);
    w->w = (float *)take(N * 4);
    w->count = (int32_t *)take((uint64_t)E * 4);
    w->first = (int32_t *)take((uint64_t)(E + 1) * 4);
    w->active = (int32_t *)take((uint64_t)E * 4);
    w->meta = (int32_t *)take(16);
    w->tiles = (int4 *)take((uint64_t)w->max_tiles * 16);
    w->g = (float *)take(N * F * 4);
    w->u = (float *)take(N * F * 4);
    w->ys = (float *)take(N * dim * 4);
    const uint64_t hb = cuda_mmin_bytes((int)N, F, CUDA_MMIN_F16);
    uint8_t *hp = take(hb);
    if (base) cuda_mmin_carve(&w->h, hp, (int)N, F, CUDA_MMIN_F16);
    const uint64_t xb = cuda_mmin_bytes(T, dim, CUDA_MMIN_F16);
    uint8_t *xp = take(xb);
    if (base) cuda_mmin_carve(&w->x16, xp, T, dim, CUDA_MMIN_F16);
    w->x8h = take((uint64_t)T * dim);
    w->x8l = take((uint64_t)T * dim);
    w->x8sh = take((uint64_t)T * dim / 32);
    w->x8sl = take((uint64_t)T * dim / 32);
    w->h8h = take(N * F);
    w->h8l = take(N * F);
    w->h8sh = take(N * F / 32);
    w->h8sl = take(N * F / 32);
    w->total = off;
    return off;
}

__device__ __forceinline__ float moe_act(float g, float u, int act, float alpha, float limit) {
    if (act == CUDA_MOE_ACT_SWIGLU_OAI) { // as engine/cpu's cpu_act_rows
        const float x = g < limit ? g : limit;
        const float y = u < -limit ? -limit : u > limit ? limit : u;
        return x / (1.0f + expf(-alpha * x)) * (y + 1.0f);
    }
    if (act == CUDA_ACT_GELU_TANH) {
        const float c = 0.7978845608028654f; // sqrt(2/pi)
        return 0.5f * g * (1.0f + tanhf(c * (g + 0.044715f * g * g * g))) * u;
    }
    return g / (1.0f + expf(-g)) * u;
}

__device__ __forceinline__ void mma16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                 "{%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void cp16(void *dst, const void *src, bool valid) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp8(void *dst, const void *src, bool valid) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 8 : 0));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// A-fragments (mma.m16n8k16, four k16 steps of one 64-element chunk) of rows g and g + 8
// from their quarters (qfmt.cuh's P64 order makes this a straight decode).
template <uint32_t F>
__device__ __forceinline__ void frag_a(uint32_t (&a)[4][4], const quarter &qa, const quarter &qb) {
#pragma unroll
    for (int s = 0; s < 4; s++) {
        a[s][0] = quarter_pair<F>(qa, 2 * s);
        a[s][1] = quarter_pair<F>(qb, 2 * s);
        a[s][2] = quarter_pair<F>(qa, 2 * s + 1);
        a[s][3] = quarter_pair<F>(qb, 2 * s + 1);
    }
}

// ------------------------------------------------------------------------------ routing

struct route_p {
    const float *logits; // (T, E)
    const float *bias;   // (E) or NULL
    int T, E, k, gating, norm;
    int e0, nl;          // the experts grouped: [e0, e0 + nl) (expert parallelism; else 0, E)
    int32_t *ids;
    float *w;
    int32_t *count;      // (E) global counters (zeroed before the gating kernel)
    int32_t *first, *active, *meta, *stok, *sexp, *inv;
    int4 *tiles;
    int max_tiles;
};

// Gating of token t by one warp: writes ids/w (k entries, descending) and counts them.
__device__ void route_token(const route_p &p, int t, int lane, int32_t *cnt) {
    const float *l = p.logits + (size_t)t * p.E;
    float v[kMaxE / 32];
#pragma unroll
    for (int i = 0; i < kMaxE / 32; i++) {
        const int e = lane + 32 * i;
        float x = -INFINITY;
        if (e < p.E) {
            x = l[e];
            if (p.bias) x += p.bias[e];
            if (isnan(x)) x = -INFINITY;
        }
        v[i] = x;
    }
    if (p.gating == CUDA_MOE_SOFTMAX_TOPK) {
        float mx = -INFINITY;
#pragma unroll
        for (int i = 0; i < kMaxE / 32; i++) mx = fmaxf(mx, v[i]);
        mx = warp_max(mx);
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < kMaxE / 32; i++)
            if (lane + 32 * i < p.E) {
                v[i] = expf(v[i] - mx);
                s += v[i];
            }
        s = warp_sum(s);
#pragma unroll
        for (int i = 0; i < kMaxE / 32; i++) v[i] = v[i] / s;
    }
    unsigned taken = 0;
    int sid[kMaxK];
    float sv[kMaxK];
#pragma unroll
    for (int j = 0; j < kMaxK; j++) {
        sid[j] = 0;
        sv[j] = 0.0f;
        if (j >= p.k) continue;
        float bv = 0.0f;
        int be = -1;
#pragma unroll
        for (int i = 0; i < kMaxE / 32; i++) {
            const int e = lane + 32 * i;
            if (e < p.E && !((taken >> i) & 1u) && (be < 0 || v[i] > bv)) {
                bv = v[i];
                be = e;
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const int oe = __shfl_xor_sync(0xffffffffu, be, o);
            const bool better = oe >= 0 && (be < 0 || ov > bv || (ov == bv && oe < be));
            if (better) {
                bv = ov;
                be = oe;
            }
        }
        bv = __shfl_sync(0xffffffffu, bv, 0);
        be = __shfl_sync(0xffffffffu, be, 0);
        if ((be & 31) == lane) taken |= 1u << (be >> 5);
        sid[j] = be;
        sv[j] = bv;
    }
    if (lane == 0) {
        float wt[kMaxK];
        float s = 0.0f;
        if (p.gating == CUDA_MOE_SOFTMAX_TOPK) {
#pragma unroll
            for (int j = 0; j < kMaxK; j++)
                if (j < p.k) s += wt[j] = sv[j];
#pragma unroll
            for (int j = 0; j < kMaxK; j++)
                if (j < p.k && p.norm) wt[j] /= s;
        } else {
            const float mx = sv[0];
#pragma unroll
            for (int j = 0; j < kMaxK; j++)
                if (j < p.k) s += wt[j] = expf(sv[j] - mx);
#pragma unroll
            for (int j = 0; j < kMaxK; j++)
                if (j < p.k) wt[j] /= s;
        }
#pragma unroll
        for (int j = 0; j < kMaxK; j++)
            if (j < p.k) {
                p.ids[(size_t)t * p.k + j] = sid[j];
                p.w[(size_t)t * p.k + j] = wt[j];
                atomicAdd(&cnt[sid[j]], 1);
            }
    }
}

// One CTA: prefix sum over the counts, active list, tile table, placement. Expert
// parallelism (p.nl < p.E): only experts [e0, e0 + nl) are grouped, numbered from 0 in
// first/active/tiles/sexp (the weights hold those alone); entries routed elsewhere go to
// a "none" bucket after them (positions first[nl] .. N, in no tile and not active, so
// the products never see them) and get inv = -1, which the combine skips.
__device__ void route_place(const route_p &p, const int32_t *cnt) {
    __shared__ int first_s[kMaxE + 1];
    __shared__ int fill[kMaxE + 1];
    const int nl = p.nl;
    if (threadIdx.x == 0) {
        int acc = 0, na = 0, nt = 0;
        for (int e = 0; e < nl; e++) {
            first_s[e] = acc;
            const int c = cnt[p.e0 + e];
            if (c) {
                p.active[na++] = e;
                for (int s = 0; s < c; s += 64)
                    if (nt < p.max_tiles) p.tiles[nt++] = make_int4(e, acc + s, c - s < 64 ? c - s : 64, 0);
            }
            acc += c;
        }
        first_s[nl] = acc;
        p.meta[0] = na;
        p.meta[1] = nt;
    }
    __syncthreads();
    for (int i = threadIdx.x; i <= nl; i += blockDim.x) {
        p.first[i] = first_s[i];
        fill[i] = 0;
    }
    __syncthreads();
    const int n = p.T * p.k;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int e = p.ids[i] - p.e0;
        const bool mine = e >= 0 && e < nl;
        const int b = mine ? e : nl;
        const int pos = first_s[b] + atomicAdd(&fill[b], 1);
        p.stok[pos] = i / p.k;
        p.sexp[pos] = mine ? e : 0; // "none": a valid bias row for act_kernel, never used
        p.inv[i] = mine ? pos : -1;
    }
}

__global__ __launch_bounds__(512) void route_small_kernel(const route_p p) {
    __shared__ int32_t cnt[kMaxE];
    for (int i = threadIdx.x; i < p.E; i += blockDim.x) cnt[i] = 0;
    __syncthreads();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int t = warp; t < p.T; t += blockDim.x >> 5) route_token(p, t, lane, cnt);
    __syncthreads();
    route_place(p, cnt);
}

__global__ __launch_bounds__(256) void route_tokens_kernel(const route_p p) {
    const int t = blockIdx.x * 8 + (threadIdx.x >> 5);
    if (t < p.T) route_token(p, t, threadIdx.x & 31, p.count);
}

__global__ __launch_bounds__(1024) void route_scan_kernel(const route_p p) {
    __shared__ int32_t cnt[kMaxE];
    for (int i = threadIdx.x; i < p.E; i += blockDim.x) cnt[i] = p.count[i];
    __syncthreads();
    route_place(p, cnt);
}

// ------------------------------------------------------------------------------ input forms

// x16 row t from the caller's f32 P64 row (the caller's x had only the XP form).
__global__ void x16_kernel(const float *xp, int K, cuda_mmin m) {
    __shared__ float red[32];
    const float *row = xp + (size_t)blockIdx.x * K;
    mmin_emit(m, blockIdx.x, [&](int e) { return row[(e & ~63) + inv_perm64(e & 63)]; }, red);
}

// h row pos: act(g + bg, u + bu) (u != NULL) or g as it is (the mmv path applied the
// activation already) -> f16 hi/lo mm input; with e8 also the e4m3 form (native path).
struct act_p {
    const float *g, *u;
    const float *bg, *bu;
    const int32_t *sexp;
    int F, act;
    float alpha, limit;
    cuda_mmin h;
    uint8_t *q8h, *q8l, *s8h, *s8l; // NULL: no e4m3 form
};

// e4m3 hi/lo form of one row from val (natural order), K elements: per 32-group an ue8m0
// scale 2^(sh-127) with the group's amax / scale <= 448, hi = e4m3(v / scale), lo =
// e4m3((v - hi * scale) / scale_lo) with scale_lo = scale / 16 (sl = sh - 4). Bytes in P64
// order. Every thread of the block; blockDim.x % 32 == 0.
template <class V>
__device__ void e8_emit(uint8_t *qh, uint8_t *ql, uint8_t *sh, uint8_t *sl, int t, int K, V val) {
    const int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    for (int g = threadIdx.x >> 5; g < K / 32; g += nw) {
        const int e = 32 * g + lane;
        const float v = val(e);
        const float amax = warp_max(fabsf(v));
        int se = 127;
        if (amax > 0.0f && isfinite(amax)) {
            int ex;
            frexpf(amax / 448.0f, &ex); // amax / 448 in [2^(ex-1), 2^ex)
            se = 127 + ex;
            se = se < 5 ? 5 : se > 250 ? 250 : se;
        }
        const int sle = se - 4;
        const float inv_h = ldexpf(1.0f, 127 - se), sc_h = ldexpf(1.0f, se - 127);
        const float inv_l = ldexpf(1.0f, 127 - sle);
        const __nv_fp8_storage_t bh = __nv_cvt_float_to_fp8(v * inv_h, __NV_SATFINITE, __NV_E4M3);
        const float hv = __half2float(__half(__nv_cvt_fp8_to_halfraw(bh, __NV_E4M3))) * sc_h;
        const __nv_fp8_storage_t bl = __nv_cvt_float_to_fp8((v - hv) * inv_l, __NV_SATFINITE, __NV_E4M3);
        const size_t at = (size_t)t * K + (size_t)(e & ~63) + (size_t)inv_perm64(e & 63);
        qh[at] = bh;
        ql[at] = bl;
        if (lane == 0) {
            sh[(size_t)t * (K / 32) + g] = (uint8_t)se;
            sl[(size_t)t * (K / 32) + g] = (uint8_t)sle;
        }
    }
}

__global__ void act_kernel(const act_p p) {
    __shared__ float red[32];
    const int pos = blockIdx.x;
    const float *g = p.g + (size_t)pos * p.F;
    const float *u = p.u ? p.u + (size_t)pos * p.F : NULL;
    const int e = p.sexp[pos];
    const float *bg = p.bg ? p.bg + (size_t)e * p.F : NULL, *bu = p.bu ? p.bu + (size_t)e * p.F : NULL;
    auto val = [&](int i) {
        if (!u) return g[i];
        return moe_act(bg ? g[i] + bg[i] : g[i], bu ? u[i] + bu[i] : u[i], p.act, p.alpha, p.limit);
    };
    mmin_emit(p.h, pos, val, red);
    if (p.q8h) e8_emit(p.q8h, p.q8l, p.s8h, p.s8l, pos, p.F, val);
}

// x8 row t from the caller's f32 P64 row.
__global__ void x8_kernel(const float *xp, int K, uint8_t *qh, uint8_t *ql, uint8_t *sh, uint8_t *sl) {
    const float *row = xp + (size_t)blockIdx.x * K;
    e8_emit(qh, ql, sh, sl, blockIdx.x, K, [&](int e) { return row[(e & ~63) + inv_perm64(e & 63)]; });
}

// ------------------------------------------------------------------------------ mmv (small T)

#define MV_WARPS 8

struct mv_p {
    moe_mat m[2];        // gate, up (NM = 2) or down (NM = 1)
    int rows, K;         // rows per expert (F or dim), input length
    const uint16_t *xh, *xl; // f16 hi/lo input rows (P64)
    const float *gsum, *tscale;
    const int32_t *stok; // input row of each sorted position (NULL: the position itself)
    const int32_t *first, *active, *meta;
    const float *b0, *b1; // per-expert biases (E, rows) or NULL
    float *out;          // NM = 2: h (N, rows); NM = 1: y (N, rows)
    int act;
    float alpha, limit;
};

// grid (rows / 16, active experts): 16 rows of NM matrices of expert active[y] against its
// tokens, 8 at a time (the n8 columns of the mma); the 8 warps split K.
template <uint32_t F, int NM>
__global__ __launch_bounds__(MV_WARPS * 32) void mmv_kernel(const mv_p p) {
    constexpr qfmt f = qfmt_of(F);
    constexpr int NGc = f.group == 16 ? 4 : 2; // scale groups per chunk (quantized types only)
    constexpr int SPG = 4 / NGc;                // k16 steps per group
    __shared__ float red[MV_WARPS][NM][4][32];
    if ((int)blockIdx.y >= p.meta[0]) return;
    const int e = p.active[blockIdx.y];
    const int s0 = p.first[e], n = p.first[e + 1] - s0;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
    const int r0 = blockIdx.x * 16;
    const int ra = min(r0 + g, p.rows - 1), rb = min(r0 + g + 8, p.rows - 1);
    const uint64_t base = (uint64_t)e * p.rows;
    const uint8_t *ca[NM], *cb[NM], *ha[NM], *hb[NM], *ma[NM], *mb[NM];
#pragma unroll
    for (int mi = 0; mi < NM; mi++) {
        const moe_mat &M = p.m[mi];
        ca[mi] = M.codes + (base + ra) * M.code_pitch;
        cb[mi] = M.codes + (base + rb) * M.code_pitch;
        ha[mi] = M.hi + (base + ra) * M.hi_pitch;
        hb[mi] = M.hi + (base + rb) * M.hi_pitch;
        ma[mi] = M.meta + (base + ra) * M.meta_pitch;
        mb[mi] = M.meta + (base + rb) * M.meta_pitch;
    }
    const int nch = p.K / 64;
    for (int t0 = 0; t0 < n; t0 += 8) {
        const int nv = min(8, n - t0);
        // B column g: token t0 + g; C columns 2c, 2c + 1
        const bool bv = g < nv;
        const int xb = p.stok ? p.stok[s0 + t0 + (bv ? g : 0)] : s0 + t0 + (bv ? g : 0);
        const int xc0 = p.stok ? p.stok[s0 + t0 + min(2 * c, nv - 1)] : s0 + t0 + min(2 * c, nv - 1);
        const int xc1 = p.stok ? p.stok[s0 + t0 + min(2 * c + 1, nv - 1)] : s0 + t0 + min(2 * c + 1, nv - 1);
        float acc[NM][4];
#pragma unroll
        for (int mi = 0; mi < NM; mi++) acc[mi][0] = acc[mi][1] = acc[mi][2] = acc[mi][3] = 0.0f;
        for (int ci = warp; ci < nch; ci += MV_WARPS) {
            uint32_t bh[8], bl[8];
            if (bv) {
                const uint4 *h = (const uint4 *)(p.xh + (size_t)xb * p.K + (size_t)ci * 64 + 16 * c);
                const uint4 *l = (const uint4 *)(p.xl + (size_t)xb * p.K + (size_t)ci * 64 + 16 * c);
                const uint4 h0 = h[0], h1 = h[1], l0 = l[0], l1 = l[1];
                bh[0] = h0.x; bh[1] = h0.y; bh[2] = h0.z; bh[3] = h0.w;
                bh[4] = h1.x; bh[5] = h1.y; bh[6] = h1.z; bh[7] = h1.w;
                bl[0] = l0.x; bl[1] = l0.y; bl[2] = l0.z; bl[3] = l0.w;
                bl[4] = l1.x; bl[5] = l1.y; bl[6] = l1.z; bl[7] = l1.w;
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) bh[i] = bl[i] = 0u;
            }
            float x0[NGc], x1[NGc];
            if constexpr (f.has_min) {
#pragma unroll
                for (int gl = 0; gl < NGc; gl++) {
                    x0[gl] = p.gsum[(size_t)xc0 * (p.K / 32) + ci * 2 + gl * 2 / NGc];
                    x1[gl] = p.gsum[(size_t)xc1 * (p.K / 32) + ci * 2 + gl * 2 / NGc];
                }
            }
#pragma unroll
            for (int mi = 0; mi < NM; mi++) {
                quarter qa, qb;
                quarter_load<F>(qa, ca[mi], ha[mi], ci, c);
                quarter_load<F>(qb, cb[mi], hb[mi], ci, c);
                uint32_t a[4][4];
                frag_a<F>(a, qa, qb);
#pragma unroll
                for (int gl = 0; gl < NGc; gl++) {
                    float sa, sb, mna, mnb;
                    group_sm<F>(ma[mi], ci * NGc + gl, sa, mna);
                    group_sm<F>(mb[mi], ci * NGc + gl, sb, mnb);
                    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                    for (int s = gl * SPG; s < gl * SPG + SPG; s++) {
                        mma16816(t, a[s], bh[2 * s], bh[2 * s + 1]);
                        mma16816(t, a[s], bl[2 * s], bl[2 * s + 1]);
                    }
                    acc[mi][0] = fmaf(sa, t[0], acc[mi][0]);
                    acc[mi][1] = fmaf(sa, t[1], acc[mi][1]);
                    acc[mi][2] = fmaf(sb, t[2], acc[mi][2]);
                    acc[mi][3] = fmaf(sb, t[3], acc[mi][3]);
                    if constexpr (f.has_min) {
                        // gsum is per 32 elements; with 16-element groups (none with a min
                        // today) this would need halves — qfmt has no such format
                        acc[mi][0] = fmaf(mna, x0[gl], acc[mi][0]);
                        acc[mi][1] = fmaf(mna, x1[gl], acc[mi][1]);
                        acc[mi][2] = fmaf(mnb, x0[gl], acc[mi][2]);
                        acc[mi][3] = fmaf(mnb, x1[gl], acc[mi][3]);
                    }
                }
            }
        }
#pragma unroll
        for (int mi = 0; mi < NM; mi++)
#pragma unroll
            for (int i = 0; i < 4; i++) red[warp][mi][i][lane] = acc[mi][i];
        __syncthreads();
        if (warp == 0) {
            float v[NM][4];
#pragma unroll
            for (int mi = 0; mi < NM; mi++)
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    float s = 0.0f;
#pragma unroll
                    for (int w = 0; w < MV_WARPS; w++) s += red[w][mi][i][lane];
                    v[mi][i] = s;
                }
            // C fragment: v[.][0..1] row r0 + g, columns 2c, 2c + 1; v[.][2..3] row r0 + g + 8
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int col = 2 * c + (i & 1), row = r0 + g + 8 * (i >> 1);
                if (col >= nv || row >= p.rows) continue;
                const int pos = s0 + t0 + col;
                const float ts = p.tscale[(i & 1) ? xc1 : xc0];
                if constexpr (NM == 2) {
                    float gv = v[0][i] * ts, uv = v[1][i] * ts;
                    if (p.b0) gv += p.b0[(size_t)e * p.rows + row];
                    if (p.b1) uv += p.b1[(size_t)e * p.rows + row];
                    p.out[(size_t)pos * p.rows + row] = moe_act(gv, uv, p.act, p.alpha, p.limit);
                } else {
                    float y = v[0][i] * ts;
                    if (p.b0) y += p.b0[(size_t)e * p.rows + row];
                    p.out[(size_t)pos * p.rows + row] = y;
                }
            }
        }
        __syncthreads();
    }
}

// ------------------------------------------------------------------------------ grouped GEMM

#define MG_M 128
#define MG_N 64
#define MG_XP 72 // halves per token row of an activation tile

struct mg_p {
    moe_mat m[2];
    int nmat, rows, mtiles, K, exact;
    const int4 *tiles;
    const int32_t *meta;  // [1] = tiles present
    const int32_t *stok;  // input row of each sorted position (NULL: the position itself)
    const uint16_t *xh, *xl;
    const float *gsum, *tscale;
    float *y[2];          // (N, rows) each, row = sorted position
    const float *bias;    // (E, rows) added (down) or NULL
    // native (e4m3 activations)
    const uint8_t *q8h, *q8l, *s8h, *s8l;
};

template <uint32_t F> struct mg_cfg {
    static constexpr qfmt f = qfmt_of(F);
    static constexpr int wpitch = f.cbits == 4 ? 32 : 64; // smem bytes per row (4/8-bit codes)
    static constexpr int hpitch = f.hbits == 1 ? 8 : f.hbits == 2 ? 16 : 0;
    static constexpr int xs = MG_N * MG_XP * 2;
    static constexpr int gs = MG_N * 2 * 4;
    static constexpr int off_xl = xs, off_w = 2 * xs + gs; // group sums at 2 * xs
    static constexpr int off_h = off_w + MG_M * wpitch;
    static constexpr int stage = off_h + MG_M * hpitch;
    static constexpr int stages = 3;
    static constexpr int smem = stage * stages;
    static constexpr int ngroups = f.group == 16 ? 4 : 2;
};

template <uint32_t F>
__device__ __forceinline__ void mg_load(uint8_t *sb, const mg_p &p, const moe_mat &M, uint64_t wrow0, int m0, int kc,
                                        int ntok, const int *xrow) {
    using C = mg_cfg<F>;
    constexpr qfmt f = C::f;
    const int tid = threadIdx.x;
    for (int piece = tid; piece < ntok * 8; piece += 256) {
        const int tok = piece >> 3, part = piece & 7;
        const size_t src = (size_t)xrow[tok] * p.K + (size_t)kc * 64 + part * 8;
        cp16(sb + tok * MG_XP * 2 + part * 16, p.xh + src, true);
        if (p.exact) cp16(sb + C::off_xl + tok * MG_XP * 2 + part * 16, p.xl + src, true);
    }
    if constexpr (f.has_min) {
        if (tid < ntok) cp8(sb + 2 * C::xs + tid * 8, p.gsum + (size_t)xrow[tid] * (p.K / 32) + 2 * kc, true);
    }
    constexpr int ppr = f.cbits * 64 / 8 / 16; // 16-byte pieces per row
    for (int piece = tid; piece < MG_M * ppr; piece += 256) {
        const int row = piece / ppr, part = piece % ppr;
        const bool v = m0 + row < p.rows;
        const uint8_t *src = M.codes + (wrow0 + (v ? m0 + row : 0)) * M.code_pitch + (size_t)kc * (f.cbits * 8) + part * 16;
        cp16(sb + C::off_w + row * C::wpitch + part * 16, src, v);
    }
    if constexpr (f.hbits == 1) {
        if (tid < MG_M) {
            const bool v = m0 + tid < p.rows;
            cp8(sb + C::off_h + tid * 8, M.hi + (wrow0 + (v ? m0 + tid : 0)) * M.hi_pitch + (size_t)kc * 8, v);
        }
    } else if constexpr (f.hbits == 2) {
        if (tid < MG_M) {
            const bool v = m0 + tid < p.rows;
            cp16(sb + C::off_h + tid * 16, M.hi + (wrow0 + (v ? m0 + tid : 0)) * M.hi_pitch + (size_t)kc * 16, v);
        }
    }
}

template <uint32_t F>
__device__ __forceinline__ void mg_quarter(quarter &q, const uint8_t *sb, int row, int c) {
    using C = mg_cfg<F>;
    constexpr qfmt f = C::f;
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
}

// grid (nmat * mtiles, max tiles): rows [m0, m0 + 128) of matrix mi of the tile's expert
// against the tile's <= 64 sorted positions.
template <uint32_t F>
__global__ __launch_bounds__(256) void mg_kernel(const mg_p p) {
    using C = mg_cfg<F>;
    constexpr qfmt f = C::f;
    constexpr int NGc = C::ngroups;
    constexpr int SPG = 4 / NGc;
    extern __shared__ __align__(16) uint8_t smem[];
    __shared__ int xrow[MG_N];
    __shared__ float xts[MG_N];
    if ((int)blockIdx.y >= p.meta[1]) return;
    const int4 tl = p.tiles[blockIdx.y];
    const int e = tl.x, p0 = tl.y, ntok = tl.z;
    const int mi = blockIdx.x / p.mtiles, m0 = (blockIdx.x % p.mtiles) * MG_M;
    const moe_mat &M = p.m[mi];
    const uint64_t wrow0 = (uint64_t)e * p.rows;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, c = lane & 3;
    if (tid < MG_N) {
        const int pos = p0 + min(tid, ntok - 1);
        const int r = p.stok ? p.stok[pos] : pos;
        xrow[tid] = r;
        xts[tid] = p.tscale[r];
    }
    __syncthreads();
    const int nk = p.K / 64;
    const int ntiles = min(8, (ntok + 7) / 8);
    const int rg = m0 + warp * 16 + g, rg8 = rg + 8;
    const uint8_t *meta_g = M.meta + (wrow0 + min(rg, p.rows - 1)) * M.meta_pitch;
    const uint8_t *meta_g8 = M.meta + (wrow0 + min(rg8, p.rows - 1)) * M.meta_pitch;
    float acc[8][4];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
#pragma unroll
    for (int s = 0; s < C::stages - 1; s++) {
        if (s < nk) mg_load<F>(smem + s * C::stage, p, M, wrow0, m0, s, ntok, xrow);
        cp_commit();
    }
    for (int kc = 0; kc < nk; kc++) {
        cp_wait<C::stages - 2>();
        __syncthreads();
        {
            const int kn = kc + C::stages - 1;
            if (kn < nk) mg_load<F>(smem + (kn % C::stages) * C::stage, p, M, wrow0, m0, kn, ntok, xrow);
            cp_commit();
        }
        float sg[NGc], sg8[NGc], mg[NGc], mg8[NGc];
#pragma unroll
        for (int gl = 0; gl < NGc; gl++) {
            group_sm<F>(meta_g, kc * NGc + gl, sg[gl], mg[gl]);
            group_sm<F>(meta_g8, kc * NGc + gl, sg8[gl], mg8[gl]);
        }
        const uint8_t *sb = smem + (kc % C::stages) * C::stage;
        uint32_t a[4][4];
        {
            quarter qa, qb;
            mg_quarter<F>(qa, sb, warp * 16 + g, c);
            mg_quarter<F>(qb, sb, warp * 16 + g + 8, c);
            frag_a<F>(a, qa, qb);
        }
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            if (nt >= ntiles) break;
            const int tok = nt * 8 + g;
            uint32_t bh[8], bl[8];
            {
                const uint4 *xh = (const uint4 *)(sb + tok * MG_XP * 2 + 32 * c);
                const uint4 v0 = xh[0], v1 = xh[1];
                bh[0] = v0.x; bh[1] = v0.y; bh[2] = v0.z; bh[3] = v0.w;
                bh[4] = v1.x; bh[5] = v1.y; bh[6] = v1.z; bh[7] = v1.w;
                if (p.exact) {
                    const uint4 *xl = (const uint4 *)(sb + C::off_xl + tok * MG_XP * 2 + 32 * c);
                    const uint4 w0 = xl[0], w1 = xl[1];
                    bl[0] = w0.x; bl[1] = w0.y; bl[2] = w0.z; bl[3] = w0.w;
                    bl[4] = w1.x; bl[5] = w1.y; bl[6] = w1.z; bl[7] = w1.w;
                }
            }
#pragma unroll
            for (int gl = 0; gl < NGc; gl++) {
                float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                for (int s = gl * SPG; s < gl * SPG + SPG; s++) {
                    mma16816(t, a[s], bh[2 * s], bh[2 * s + 1]);
                    if (p.exact) mma16816(t, a[s], bl[2 * s], bl[2 * s + 1]);
                }
                acc[nt][0] = fmaf(sg[gl], t[0], acc[nt][0]);
                acc[nt][1] = fmaf(sg[gl], t[1], acc[nt][1]);
                acc[nt][2] = fmaf(sg8[gl], t[2], acc[nt][2]);
                acc[nt][3] = fmaf(sg8[gl], t[3], acc[nt][3]);
                if constexpr (f.has_min) {
                    const float *gs = (const float *)(sb + 2 * C::xs);
                    const float x0 = gs[(nt * 8 + 2 * c) * 2 + gl], x1 = gs[(nt * 8 + 2 * c + 1) * 2 + gl];
                    acc[nt][0] = fmaf(mg[gl], x0, acc[nt][0]);
                    acc[nt][1] = fmaf(mg[gl], x1, acc[nt][1]);
                    acc[nt][2] = fmaf(mg8[gl], x0, acc[nt][2]);
                    acc[nt][3] = fmaf(mg8[gl], x1, acc[nt][3]);
                }
            }
        }
    }
    cp_wait<0>();
    float *y = p.y[mi];
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
        if (nt >= ntiles) break;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int tk = nt * 8 + 2 * c + h;
            if (tk >= ntok) continue;
            const float ts = xts[tk];
            float *yr = y + (size_t)(p0 + tk) * p.rows;
            if (rg < p.rows) yr[rg] = acc[nt][h] * ts + (p.bias ? p.bias[wrow0 + rg] : 0.0f);
            if (rg8 < p.rows) yr[rg8] = acc[nt][2 + h] * ts + (p.bias ? p.bias[wrow0 + rg8] : 0.0f);
        }
    }
}

// ------------------------------------------------------------------------------ native MXFP4

// sm_120/121 only: D += (A * sfa) (B * sfb), A e2m1 (weights, in 8-bit containers: code << 2),
// B e4m3, ue8m0 scales, m16n8k32. Scale operands: lane (g, t) holds in sfa the scales of
// row g + 8 * (t & 1) (bytes by k32 step, thread-id 0 picks lanes t = 0, 1), in sfb those of
// column g (thread-id 0: lanes t = 0).
__device__ __forceinline__ void mma_mxf4e4m3(float *d, const uint32_t *a, uint32_t b0, uint32_t b1, uint32_t sfa,
                                             uint32_t sfb, uint16_t byte) {
#if defined(__CUDA_ARCH_FEAT_SM121_ALL) || defined(__CUDA_ARCH_FEAT_SM120_ALL)
    const uint16_t tid0 = 0;
    asm volatile("mma.sync.aligned.m16n8k32.row.col.kind::mxf8f6f4.block_scale.scale_vec::1X.f32.e2m1.e4m3.f32.ue8m0 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3}, {%10}, {%11,%12}, {%13}, {%14,%15};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(sfa), "h"(byte), "h"(tid0),
                   "r"(sfb), "h"(byte), "h"(tid0));
#else
    (void)d; (void)a; (void)b0; (void)b1; (void)sfa; (void)sfb; (void)byte;
    __trap();
#endif
}

// The 8 codes of one quarter word (natural elements 2c + 8k (nibble k) and 2c + 1 + 8k
// (nibble k + 4), k < 4, of one 32-element block) as two registers of the m16n8k32 A
// fragment: k slots 4c..4c+3 <- elements 2c, 2c+1, 8+2c, 9+2c and slots 16+4c.. <- 16+2c,
// 17+2c, 24+2c, 25+2c. B uses the same slot <-> element map (P64 e4m3 bytes), so the
// product is the block's dot product.
__device__ __forceinline__ void e2m1_regs(uint32_t w, uint32_t &lo, uint32_t &hi) {
    const uint32_t x0 = w & 0x000F000Fu, x1 = (w >> 4) & 0x000F000Fu;   // n0, n4 | n1, n5
    const uint32_t x2 = (w >> 8) & 0x000F000Fu, x3 = (w >> 12) & 0x000F000Fu; // n2, n6 | n3, n7
    lo = __byte_perm(x0, x1, 0x6420) << 2;
    hi = __byte_perm(x2, x3, 0x6420) << 2;
}

#define MN_XP 144 // bytes per token row of the e4m3 tile: 64 hi + 64 lo + 16 pad
struct mn_cfg {
    static constexpr int xs = MG_N * MN_XP;
    static constexpr int off_sc = xs;                 // 64 tokens x 4 scale bytes
    static constexpr int off_w = xs + MG_N * 4;
    static constexpr int stage = off_w + MG_M * 32;
    static constexpr int stages = 3;
    static constexpr int smem = stage * stages;
};

__device__ __forceinline__ void mn_load(uint8_t *sb, const mg_p &p, const moe_mat &M, uint64_t wrow0, int m0, int kc,
                                        int ntok, const int *xrow) {
    const int tid = threadIdx.x;
    for (int piece = tid; piece < ntok * 8; piece += 256) {
        const int tok = piece >> 3, part = piece & 7; // parts 0-3 hi, 4-7 lo
        const size_t src = (size_t)xrow[tok] * p.K + (size_t)kc * 64 + (part & 3) * 16;
        cp16(sb + tok * MN_XP + part * 16, (part < 4 ? p.q8h : p.q8l) + src, true);
    }
    if (tid < ntok) {
        // scale bytes of blocks 2kc, 2kc + 1: hi pair then lo pair (4 bytes, one 4-byte copy
        // each as two 2-byte halves would need 4-byte alignment; copy through registers)
        const size_t so = (size_t)xrow[tid] * (p.K / 32) + 2 * kc;
        uint8_t *d = sb + mn_cfg::off_sc + tid * 4;
        d[0] = p.s8h[so];
        d[1] = p.s8h[so + 1];
        d[2] = p.s8l[so];
        d[3] = p.s8l[so + 1];
    }
    for (int piece = tid; piece < MG_M * 2; piece += 256) {
        const int row = piece >> 1, part = piece & 1;
        const bool v = m0 + row < p.rows;
        cp16(sb + mn_cfg::off_w + row * 32 + part * 16,
             M.codes + (wrow0 + (v ? m0 + row : 0)) * M.code_pitch + (size_t)kc * 32 + part * 16, v);
    }
}

__global__ __launch_bounds__(256) void mn_kernel(const mg_p p) {
    extern __shared__ __align__(16) uint8_t smem[];
    __shared__ int xrow[MG_N];
    if ((int)blockIdx.y >= p.meta[1]) return;
    const int4 tl = p.tiles[blockIdx.y];
    const int e = tl.x, p0 = tl.y, ntok = tl.z;
    const int mi = blockIdx.x / p.mtiles, m0 = (blockIdx.x % p.mtiles) * MG_M;
    const moe_mat &M = p.m[mi];
    const uint64_t wrow0 = (uint64_t)e * p.rows;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, c = lane & 3;
    if (tid < MG_N) {
        const int pos = p0 + min(tid, ntok - 1);
        xrow[tid] = p.stok ? p.stok[pos] : pos;
    }
    __syncthreads();
    const int nk = p.K / 64;
    const int ntiles = min(8, (ntok + 7) / 8);
    const int rg = m0 + warp * 16 + g, rg8 = rg + 8;
    const int rs = (c & 1) ? rg8 : rg; // the row whose scales this lane supplies
    const uint8_t *meta_s = M.meta + (wrow0 + min(rs, p.rows - 1)) * M.meta_pitch;
    float acc[8][4];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
#pragma unroll
    for (int s = 0; s < mn_cfg::stages - 1; s++) {
        if (s < nk) mn_load(smem + s * mn_cfg::stage, p, M, wrow0, m0, s, ntok, xrow);
        cp_commit();
    }
    for (int kc = 0; kc < nk; kc++) {
        cp_wait<mn_cfg::stages - 2>();
        __syncthreads();
        {
            const int kn = kc + mn_cfg::stages - 1;
            if (kn < nk) mn_load(smem + (kn % mn_cfg::stages) * mn_cfg::stage, p, M, wrow0, m0, kn, ntok, xrow);
            cp_commit();
        }
        const uint8_t *sb = smem + (kc % mn_cfg::stages) * mn_cfg::stage;
        const uint32_t sfa = (uint32_t)meta_s[2 * kc] | (uint32_t)meta_s[2 * kc + 1] << 8;
        const uint2 wa = *(const uint2 *)(sb + mn_cfg::off_w + (warp * 16 + g) * 32 + 8 * c);
        const uint2 wb = *(const uint2 *)(sb + mn_cfg::off_w + (warp * 16 + g + 8) * 32 + 8 * c);
        uint32_t a[2][4];
        e2m1_regs(wa.x, a[0][0], a[0][2]);
        e2m1_regs(wb.x, a[0][1], a[0][3]);
        e2m1_regs(wa.y, a[1][0], a[1][2]);
        e2m1_regs(wb.y, a[1][1], a[1][3]);
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            if (nt >= ntiles) break;
            const int tok = nt * 8 + g;
            const uint4 bh = *(const uint4 *)(sb + tok * MN_XP + 16 * c);
            const uint4 bl = *(const uint4 *)(sb + tok * MN_XP + 64 + 16 * c);
            const uint32_t sc = *(const uint32_t *)(sb + mn_cfg::off_sc + tok * 4);
            const uint32_t sfh = sc & 0xffffu, sfl = sc >> 16;
            mma_mxf4e4m3(acc[nt], a[0], bh.x, bh.y, sfa, sfh, 0);
            mma_mxf4e4m3(acc[nt], a[0], bl.x, bl.y, sfa, sfl, 0);
            mma_mxf4e4m3(acc[nt], a[1], bh.z, bh.w, sfa, sfh, 1);
            mma_mxf4e4m3(acc[nt], a[1], bl.z, bl.w, sfa, sfl, 1);
        }
    }
    cp_wait<0>();
    float *y = p.y[mi];
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
        if (nt >= ntiles) break;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int tk = nt * 8 + 2 * c + h;
            if (tk >= ntok) continue;
            float *yr = y + (size_t)(p0 + tk) * p.rows;
            if (rg < p.rows) yr[rg] = acc[nt][h] + (p.bias ? p.bias[wrow0 + rg] : 0.0f);
            if (rg8 < p.rows) yr[rg8] = acc[nt][2 + h] + (p.bias ? p.bias[wrow0 + rg8] : 0.0f);
        }
    }
}

// ------------------------------------------------------------------------------ combine

__global__ void combine_kernel(const float *ys, const int32_t *ids, const float *w, const int32_t *inv, int k, int dim,
                               float *out) {
    const int t = blockIdx.y;
    int e[kMaxK], pos[kMaxK];
    float wt[kMaxK];
#pragma unroll
    for (int j = 0; j < kMaxK; j++) {
        e[j] = j < k ? ids[(size_t)t * k + j] : 0x7fffffff;
        pos[j] = j < k ? inv[(size_t)t * k + j] : -1; // -1: an expert another rank holds
        wt[j] = j < k ? w[(size_t)t * k + j] : 0.0f;
    }
    // increasing expert order (the CPU's summation order)
#pragma unroll
    for (int i = 1; i < kMaxK; i++)
#pragma unroll
        for (int j = kMaxK - 1; j >= i; j--)
            if (e[j] < e[j - 1]) {
                const int te = e[j], tp = pos[j];
                const float tw = wt[j];
                e[j] = e[j - 1]; pos[j] = pos[j - 1]; wt[j] = wt[j - 1];
                e[j - 1] = te; pos[j - 1] = tp; wt[j - 1] = tw;
            }
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < dim; i += gridDim.x * blockDim.x) {
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < kMaxK; j++)
            if (j < k && pos[j] >= 0) s = fmaf(wt[j], ys[(size_t)pos[j] * dim + i], s);
        out[(size_t)t * dim + i] = s;
    }
}

// ------------------------------------------------------------------------------ dispatch

#define MOE_TYPES(X) X(QT_MXFP4) X(QT_Q4_0) X(QT_Q8_0) X(QT_Q4_K) X(QT_Q5_K) X(QT_Q6_K)

template <uint32_t F> int set_smem_once(const void *fn, int bytes, err *e) {
    static bool done = false;
    if (!done) {
        CUDA_TRY(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
        done = true;
    }
    return 0;
}

int check_w(const cuda_weight *w, int rows_per_e, int E, int cols, const char *what, err *e) {
    if (!w || !w->base || !cuda_moe_type_ok(w->type) || w->cols != cols || w->rows != (int64_t)rows_per_e * E ||
        !cuda_weight_bytes(w->type, w->rows, w->cols))
        return err_set(e, ERR_INVALID, "cuda_moe: %s weight (type %u, %lld x %lld) does not fit %d experts of %d x %d",
                       what, w ? w->type : 0u, w ? (long long)w->rows : 0LL, w ? (long long)w->cols : 0LL, E,
                       rows_per_e, cols);
    return 0;
}

int check_args(const cuda_moe_args *a, err *e) {
    if (!a || a->T < 1 || a->dim < 64 || a->dim % 64 || a->ffn < 64 || a->ffn % 64 || a->n_expert < 1 ||
        a->n_expert > kMaxE || a->n_used < 1 || a->n_used > kMaxK || a->n_used > a->n_expert || !a->logits ||
        !a->x || a->x->K != a->dim || a->x->T < a->T || !a->out || !a->work ||
        (a->gating != CUDA_MOE_SOFTMAX_TOPK && a->gating != CUDA_MOE_TOPK_SOFTMAX) ||
        (a->act != CUDA_ACT_SILU && a->act != CUDA_ACT_GELU_TANH && a->act != CUDA_MOE_ACT_SWIGLU_OAI) ||
        (long long)a->T * a->n_used > (1 << 24) || a->expert0 < 0 || a->n_local < 0 ||
        a->expert0 + (a->n_local ? a->n_local : a->n_expert) > a->n_expert)
        return err_set(e, ERR_INVALID, "cuda_moe: bad arguments (T %d, dim %d, ffn %d, experts %d, top %d)", a ? a->T : 0,
                       a ? a->dim : 0, a ? a->ffn : 0, a ? a->n_expert : 0, a ? a->n_used : 0);
    if (a->work_bytes < cuda_moe_work_bytes(a->T, a->dim, a->ffn, a->n_expert, a->n_used))
        return err_set(e, ERR_INVALID, "cuda_moe: work buffer of %llu bytes, %llu needed",
                       (unsigned long long)a->work_bytes,
                       (unsigned long long)cuda_moe_work_bytes(a->T, a->dim, a->ffn, a->n_expert, a->n_used));
    return 0;
}

route_p route_params(const cuda_moe_args *a, const moe_work &w) {
    route_p p;
    memset(&p, 0, sizeof p);
    p.logits = a->logits;
    p.bias = a->router_b;
    p.T = a->T;
    p.E = a->n_expert;
    p.e0 = a->expert0;
    p.nl = a->n_local ? a->n_local : a->n_expert;
    p.k = a->n_used;
    p.gating = a->gating;
    p.norm = a->norm_topk;
    p.ids = w.ids;
    p.w = w.w;
    p.count = w.count;
    p.first = w.first;
    p.active = w.active;
    p.meta = w.meta;
    p.stok = w.stok;
    p.sexp = w.sexp;
    p.inv = w.inv;
    p.tiles = w.tiles;
    p.max_tiles = w.max_tiles;
    return p;
}

int launch_route(const cuda_moe_args *a, const moe_work &w, void *stream, err *e) {
    const route_p p = route_params(a, w);
    cudaStream_t st = CUDA_STREAM(stream);
    if (a->T <= 32) {
        route_small_kernel<<<1, 512, 0, st>>>(p);
        CUDA_LAUNCHED();
        return 0;
    }
    CUDA_TRY(cudaMemsetAsync(w.count, 0, (size_t)a->n_expert * 4, st));
    route_tokens_kernel<<<(a->T + 7) / 8, 256, 0, st>>>(p);
    CUDA_LAUNCHED();
    route_scan_kernel<<<1, 1024, 0, st>>>(p);
    CUDA_LAUNCHED();
    return 0;
}

template <uint32_t F>
int launch_mmv(const mv_p &p, int nm, int grid_x, int grid_y, cudaStream_t st, err *e) {
    if (nm == 2) mmv_kernel<F, 2><<<dim3(grid_x, grid_y), MV_WARPS * 32, 0, st>>>(p);
    else mmv_kernel<F, 1><<<dim3(grid_x, grid_y), MV_WARPS * 32, 0, st>>>(p);
    CUDA_LAUNCHED();
    return 0;
}

int mmv(uint32_t type, const mv_p &p, int nm, int grid_x, int grid_y, cudaStream_t st, err *e) {
    switch (type) {
#define X(T) case T: return launch_mmv<T>(p, nm, grid_x, grid_y, st, e);
        MOE_TYPES(X)
#undef X
    }
    return err_set(e, ERR_UNSUPPORTED, "cuda_moe: no kernel for type %u", type);
}

template <uint32_t F>
int launch_mg(const mg_p &p, int grid_y, cudaStream_t st, err *e) {
    int rc = set_smem_once<F>((const void *)mg_kernel<F>, mg_cfg<F>::smem, e);
    if (rc) return rc;
    mg_kernel<F><<<dim3(p.nmat * p.mtiles, grid_y), 256, mg_cfg<F>::smem, st>>>(p);
    CUDA_LAUNCHED();
    return 0;
}

int mg(uint32_t type, const mg_p &p, int grid_y, cudaStream_t st, err *e) {
    switch (type) {
#define X(T) case T: return launch_mg<T>(p, grid_y, st, e);
        MOE_TYPES(X)
#undef X
    }
    return err_set(e, ERR_UNSUPPORTED, "cuda_moe: no kernel for type %u", type);
}

int mn(const mg_p &p, int grid_y, cudaStream_t st, err *e) {
    static bool attr = false;
    if (!attr) {
        CUDA_TRY(cudaFuncSetAttribute(mn_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, mn_cfg::smem));
        attr = true;
    }
    mn_kernel<<<dim3(p.nmat * p.mtiles, grid_y), 256, mn_cfg::smem, st>>>(p);
    CUDA_LAUNCHED();
    return 0;
}

} // namespace

// ------------------------------------------------------------------------------ C interface

extern "C" int cuda_moe_type_ok(uint32_t type) {
    switch (type) {
#define X(T) case T: return 1;
        MOE_TYPES(X)
#undef X
    }
    return 0;
}

extern "C" int cuda_moe_native_ok(void) {
    static int ok = -1;
    if (ok < 0) {
        int dev = 0, major = 0, minor = 0;
        ok = cudaGetDevice(&dev) == cudaSuccess &&
             cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
             cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess && major == 12 &&
             minor == 1;
        cudaGetLastError();
    }
    return ok;
}

extern "C" uint64_t cuda_moe_work_bytes(int T, int dim, int ffn, int n_expert, int n_used) {
    moe_work w;
    if (T < 1 || dim < 1 || ffn < 1 || n_expert < 1 || n_used < 1) return 0;
    return work_carve(NULL, T, dim, ffn, n_expert, n_used, &w);
}

extern "C" void cuda_moe_view_of(void *work, int T, int dim, int ffn, int n_expert, int n_used, cuda_moe_view *v) {
    moe_work w;
    work_carve((uint8_t *)work, T, dim, ffn, n_expert, n_used, &w);
    v->ids = w.ids;
    v->w = w.w;
    v->first = w.first;
    v->stok = w.stok;
    v->inv = w.inv;
    v->meta = w.meta;
}

extern "C" int cuda_moe_route(const cuda_moe_args *a, void *stream, err *e) {
    int rc = check_args(a, e);
    if (rc) return rc;
    moe_work w;
    work_carve((uint8_t *)a->work, a->T, a->dim, a->ffn, a->n_expert, a->n_used, &w);
    return launch_route(a, w, stream, e);
}

extern "C" int cuda_moe_ffn(const cuda_moe_args *a, void *stream, err *e) {
    int rc = check_args(a, e);
    if (rc) return rc;
    const int E = a->n_expert, F = a->ffn, D = a->dim, T = a->T, k = a->n_used, N = T * k;
    const int EL = a->n_local ? a->n_local : E; // experts the weights hold
    if ((rc = check_w(a->gate, F, EL, D, "gate", e)) || (rc = check_w(a->up, F, EL, D, "up", e)) ||
        (rc = check_w(a->down, D, EL, F, "down", e)))
        return rc;
    if (a->gate->type != a->up->type)
        return err_set(e, ERR_UNSUPPORTED, "cuda_moe: gate (type %u) and up (type %u) differ", a->gate->type, a->up->type);
    cudaStream_t st = CUDA_STREAM(stream);
    moe_work w;
    work_carve((uint8_t *)a->work, T, D, F, E, k, &w);
    if ((rc = launch_route(a, w, stream, e))) return rc;

    int path = a->path;
    if (path == CUDA_MM_AUTO) path = T <= CUDA_MOE_GEMV_MAX_T ? CUDA_MM_FORCE_GEMV : CUDA_MM_FORCE_GEMM;
    if (path == CUDA_MM_FORCE_NATIVE) {
        if (!cuda_moe_native_ok() || a->gate->type != QT_MXFP4 || a->down->type != QT_MXFP4)
            return err_set(e, ERR_UNSUPPORTED, "cuda_moe: the block-scaled MXFP4 kernel needs an sm_121 GPU and MXFP4 experts");
        if (!(a->x->forms & CUDA_MMIN_XP)) return err_set(e, ERR_INVALID, "cuda_moe: the native path needs the f32 input form");
    } else if (path == CUDA_MM_FORCE_GEMM && !(a->x->forms & CUDA_MMIN_F16)) {
        return err_set(e, ERR_INVALID, "cuda_moe: the GEMM path needs the f16 input form");
    }
    // the f16 input of the tensor-core paths
    const cuda_mmin *x = a->x;
    if (path == CUDA_MM_FORCE_GEMV && !(x->forms & CUDA_MMIN_F16)) {
        if (!(x->forms & CUDA_MMIN_XP)) return err_set(e, ERR_INVALID, "cuda_moe: input has neither form");
        w.x16.T = T;
        x16_kernel<<<T, 256, 0, st>>>(x->xp, D, w.x16);
        CUDA_LAUNCHED();
        x = &w.x16;
    }
    if (path == CUDA_MM_FORCE_GEMV) {
        mv_p p;
        memset(&p, 0, sizeof p);
        p.m[0] = mat_of(a->gate);
        p.m[1] = mat_of(a->up);
        p.rows = F;
        p.K = D;
        p.xh = x->hi;
        p.xl = x->lo;
        p.gsum = x->gsum;
        p.tscale = x->tscale;
        p.stok = w.stok;
        p.first = w.first;
        p.active = w.active;
        p.meta = w.meta;
        p.b0 = a->gate_b;
        p.b1 = a->up_b;
        p.out = w.g; // h, f32 (N, F)
        p.act = a->act;
        p.alpha = a->act_alpha;
        p.limit = a->act_limit;
        const int ny = N < EL ? N : EL;
        if ((rc = mmv(a->gate->type, p, 2, (F + 15) / 16, ny, st, e))) return rc;
        act_p q;
        memset(&q, 0, sizeof q);
        q.g = w.g;
        q.sexp = w.sexp;
        q.F = F;
        q.h = w.h;
        q.h.T = N;
        act_kernel<<<N, 256, 0, st>>>(q);
        CUDA_LAUNCHED();
        mv_p d;
        memset(&d, 0, sizeof d);
        d.m[0] = mat_of(a->down);
        d.rows = D;
        d.K = F;
        d.xh = w.h.hi;
        d.xl = w.h.lo;
        d.gsum = w.h.gsum;
        d.tscale = w.h.tscale;
        d.stok = NULL;
        d.first = w.first;
        d.active = w.active;
        d.meta = w.meta;
        d.b0 = a->down_b;
        d.out = w.ys;
        if ((rc = mmv(a->down->type, d, 1, (D + 15) / 16, ny, st, e))) return rc;
    } else {
        const bool native = path == CUDA_MM_FORCE_NATIVE;
        if (native) {
            x8_kernel<<<T, 256, 0, st>>>(x->xp, D, w.x8h, w.x8l, w.x8sh, w.x8sl);
            CUDA_LAUNCHED();
        }
        mg_p p;
        memset(&p, 0, sizeof p);
        p.m[0] = mat_of(a->gate);
        p.m[1] = mat_of(a->up);
        p.nmat = 2;
        p.rows = F;
        p.mtiles = (F + MG_M - 1) / MG_M;
        p.K = D;
        p.exact = native ? 1 : a->exact;
        p.tiles = w.tiles;
        p.meta = w.meta;
        p.stok = w.stok;
        p.xh = x->hi;
        p.xl = x->lo;
        p.gsum = x->gsum;
        p.tscale = x->tscale;
        p.y[0] = w.g;
        p.y[1] = w.u;
        p.q8h = w.x8h;
        p.q8l = w.x8l;
        p.s8h = w.x8sh;
        p.s8l = w.x8sl;
        if ((rc = native ? mn(p, w.max_tiles, st, e) : mg(a->gate->type, p, w.max_tiles, st, e))) return rc;
        act_p q;
        memset(&q, 0, sizeof q);
        q.g = w.g;
        q.u = w.u;
        q.bg = a->gate_b;
        q.bu = a->up_b;
        q.sexp = w.sexp;
        q.F = F;
        q.act = a->act;
        q.alpha = a->act_alpha;
        q.limit = a->act_limit;
        q.h = w.h;
        q.h.T = N;
        if (native) {
            q.q8h = w.h8h;
            q.q8l = w.h8l;
            q.s8h = w.h8sh;
            q.s8l = w.h8sl;
        }
        act_kernel<<<N, 256, 0, st>>>(q);
        CUDA_LAUNCHED();
        mg_p d;
        memset(&d, 0, sizeof d);
        d.m[0] = mat_of(a->down);
        d.nmat = 1;
        d.rows = D;
        d.mtiles = (D + MG_M - 1) / MG_M;
        d.K = F;
        d.exact = native ? 1 : a->exact;
        d.tiles = w.tiles;
        d.meta = w.meta;
        d.stok = NULL;
        d.xh = w.h.hi;
        d.xl = w.h.lo;
        d.gsum = w.h.gsum;
        d.tscale = w.h.tscale;
        d.y[0] = w.ys;
        d.bias = a->down_b;
        d.q8h = w.h8h;
        d.q8l = w.h8l;
        d.s8h = w.h8sh;
        d.s8l = w.h8sl;
        if ((rc = native ? mn(d, w.max_tiles, st, e) : mg(a->down->type, d, w.max_tiles, st, e))) return rc;
    }
    combine_kernel<<<dim3((D + 255) / 256 < 16 ? (D + 255) / 256 : 16, T), 256, 0, st>>>(w.ys, w.ids, w.w, w.inv, k, D,
                                                                                     a->out);
    CUDA_LAUNCHED();
    return 0;
}
