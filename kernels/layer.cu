// layer.cu — the element-wise stages of a layer, each one pass that also writes the next
// product's input (cuda_mmin) so no separate conversion pass is needed: residual add +
// (post-)RMSNorm, gated activation, per-head QK-norm + RoPE + KV-cache store, soft-capping.
// Arithmetic follows engine/cpu (rmsnorm multiplies x * r * w in that order; the KV int8
// scale is amax / 127 with round-to-nearest-even codes).
#include "cuda_kern.h"

#include <cooperative_groups.h>
#include <cuda_fp8.h>
#include <stdlib.h>
#include <string.h>

#include "fz_part.cuh"
#include "kern_util.cuh"
#include "mmin.cuh"
#include "rowfuse.cuh"

// ------------------------------------------------------------------- deferred partials (fz)
// A consumer that cannot read a product's deferred split-K partials (cuda_part) sums them into
// the product's y first, in the reduce kernels' order: one thread an element (r, t), rows
// (T, ldy) f32.
__global__ void part_flush_kernel(cuda_part P, float *y, int ldy, int rows) {
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.y;
    for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += gridDim.x * blockDim.x)
        y[(size_t)t * ldy + r] = part_ld1(P, y + (size_t)t * ldy, t, r);
}
static int part_flush(const cuda_part &P, float *y, int ldy, int T, int rows, void *stream, err *e) {
    if (!part_on(P)) return 0;
    if (!y || T > 65535) return err_set(e, ERR_INVALID, "part_flush: T %d", T);
    CUDA_TRY(cuda_launch(part_flush_kernel, dim3((unsigned)((rows + 255) / 256), (unsigned)T), dim3(256), 0, stream, P, y,
                         ldy, rows));
    return 0;
}
// Whether a float4 consumer may read P (16-byte aligned rows and partials).
static bool part_a16(const cuda_part &P) {
    return !part_on(P) || (((uintptr_t)P.p & 15) == 0 && P.ld % 4 == 0 && (P.g2 || P.zs % 4 == 0));
}

// ------------------------------------------------------------------- residual + norm

__global__ void resid_norm_kernel(cuda_resid_args a, cuda_mmin out, int has_out) {
    __shared__ float red[32];
    pdl_trigger();
    pdl_wait();
    const int i = blockIdx.x;
    const int r = a.rows ? a.rows[i] : i;
    float *x = a.x + (size_t)r * a.dim;
    const int dim = a.dim;
    if (a.o) {
        const float *o = a.o + (size_t)r * dim, *ob = a.o_bias;
        float ro = 1.0f;
        if (a.post_w) {
            float ss = 0.0f;
            for (int k = threadIdx.x; k < dim; k += blockDim.x) {
                const float v = ob ? o[k] + ob[k] : o[k];
                ss += v * v;
            }
            ss = block_sum(ss, red);
            ro = 1.0f / sqrtf(ss / (float)dim + a.eps);
        }
        for (int k = threadIdx.x; k < dim; k += blockDim.x) {
            const float v = ob ? o[k] + ob[k] : o[k];
            x[k] += a.post_w ? v * ro * a.post_w[k] : v;
        }
        __syncthreads();
    }
    float ss = 0.0f;
    for (int k = threadIdx.x; k < dim; k += blockDim.x) ss += x[k] * x[k];
    ss = block_sum(ss, red);
    const float rr = 1.0f / sqrtf(ss / (float)dim + a.eps);
    const float *w = a.norm_w;
    auto val = [&](int k) { return x[k] * rr * w[k]; };
    if (a.xout)
        for (int k = threadIdx.x; k < dim; k += blockDim.x) a.xout[(size_t)i * dim + k] = val(k);
    if (has_out) mmin_emit(out, i, val, red);
}

static int elt_resid_norm(const cuda_resid_args *a, const cuda_mmin &out, void *stream, err *e);
static int elt_act(const float *gate, const float *up, int ld, int T, int ffn, int act, const cuda_mmin &out,
                   const cuda_part &pg, const cuda_part &pu, void *stream, err *e);

extern "C" int cuda_resid_norm(const cuda_resid_args *a, void *stream, err *e) {
    if (!a || !a->x || !a->norm_w || a->n < 1 || a->dim < 1 || (a->out && a->out->K != a->dim) ||
        (!a->out && !a->xout))
        return err_set(e, ERR_INVALID, "cuda_resid_norm: n %d dim %d", a ? a->n : 0, a ? a->dim : 0);
    cuda_mmin out;
    memset(&out, 0, sizeof out);
    if (a->out) {
        a->out->T = a->n;
        out = *a->out;
    }
    if (!elt_old()) {
        const int rc = elt_resid_norm(a, out, stream, e);
        if (rc >= 0) return rc;
    }
    if (a->o) // (deferred partials the kernel below cannot read: into o first)
        if (part_flush(a->o_part, (float *)a->o, a->dim, part_tokens(a->o_part), a->dim, stream, e)) return -1;
    // few rows (decode): one wide block per row, the reductions are the latency
    CUDA_TRY(cuda_launch(resid_norm_kernel, dim3((unsigned)a->n), dim3(a->n <= 16 ? 1024 : 256), 0, stream, *a, out,
                         a->out != NULL ? 1 : 0));
    return 0;
}

// ------------------------------------------------------------------- gated activation

__device__ __forceinline__ float act_f(float g, int act) {
    if (act == CUDA_ACT_GELU_TANH) {
        const float c = 0.7978845608028654f; // sqrt(2/pi)
        return 0.5f * g * (1.0f + tanhf(c * (g + 0.044715f * g * g * g)));
    }
    return g / (1.0f + expf(-g));
}

__global__ void act_mm_kernel(const float *gate, const float *up, int ld, int act, cuda_mmin out) {
    __shared__ float red[32];
    pdl_trigger();
    pdl_wait();
    const float *g = gate + (size_t)blockIdx.x * ld, *u = up + (size_t)blockIdx.x * ld;
    mmin_emit(out, blockIdx.x, [&](int k) { return act_f(g[k], act) * u[k]; }, red);
}

// Only the f32 form (small batches): no row reductions, so every element is its own thread.
__global__ void act_xp_kernel(const float *gate, const float *up, int ld, int act, int K, float *xp) {
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.y;
    for (int k = blockIdx.x * blockDim.x + threadIdx.x; k < K; k += gridDim.x * blockDim.x) {
        const float v = act_f(gate[(size_t)t * ld + k], act) * up[(size_t)t * ld + k];
        xp[(size_t)t * K + (k & ~63) + inv_perm64(k & 63)] = v;
    }
}

extern "C" int cuda_act_mm(const float *gate, const float *up, int ld, int T, int ffn, int act,
                           cuda_mmin *out, void *stream, err *e) {
    return cuda_act_mm_part(gate, up, ld, T, ffn, act, NULL, NULL, out, stream, e);
}
extern "C" int cuda_act_mm_part(const float *gate, const float *up, int ld, int T, int ffn, int act, const cuda_part *pg,
                                const cuda_part *pu, cuda_mmin *out, void *stream, err *e) {
    if (!gate || !up || !out || T < 1 || ffn < 1 || ld < ffn || out->K != ffn || (act != CUDA_ACT_SILU && act != CUDA_ACT_GELU_TANH))
        return err_set(e, ERR_INVALID, "cuda_act_mm: T %d ffn %d act %d", T, ffn, act);
    out->T = T;
    cuda_part none;
    memset(&none, 0, sizeof none);
    const cuda_part &g_ = pg ? *pg : none, &u_ = pu ? *pu : none;
    if (!elt_old()) {
        const int rc = elt_act(gate, up, ld, T, ffn, act, *out, g_, u_, stream, e);
        if (rc >= 0) return rc;
    }
    // (deferred partials the kernels below cannot read: into gate / up first)
    if (part_flush(g_, (float *)gate, ld, T, ffn, stream, e) || part_flush(u_, (float *)up, ld, T, ffn, stream, e)) return -1;
    if (out->forms == CUDA_MMIN_XP && T <= 65535) {
        CUDA_TRY(cuda_launch(act_xp_kernel, dim3((unsigned)((ffn + 255) / 256), (unsigned)T), dim3(256), 0, stream, gate,
                             up, ld, act, ffn, out->xp));
        return 0;
    }
    CUDA_TRY(cuda_launch(act_mm_kernel, dim3((unsigned)T), dim3(T <= 16 ? 1024 : 256), 0, stream, gate, up, ld, act,
                         *out));
    return 0;
}

// ------------------------------------------------------------------- second generation
// The producers above run one CTA per row and walk the row twice through val(e) (global
// re-reads, expf twice). These hold each thread's values in registers as float4s (128-bit
// loads), compute every value once, and need a row-wide reduction only where the
// arithmetic does (RMSNorm; the exponent of the F16/BF16 forms). Producers without one
// (the activation and a plain prepare into the Q8 / XP forms) run a 2-D grid of
// (row chunks of 1024 elements, rows). Values are bit-identical to the first generation
// except the f32 summation order of the RMSNorm sums and of gsum. SPARKD_ELT_OLD=1 keeps
// the first generation (A/B).

static int elt_old_v = -1;
int elt_old() {
    if (elt_old_v < 0) {
        const char *v = getenv("SPARKD_ELT_OLD");
        elt_old_v = v && v[0] && v[0] != '0' ? 1 : 0;
    }
    return elt_old_v;
}
extern "C" void cuda_elt_old_set(int on) { elt_old_v = on ? 1 : 0; }
extern "C" int cuda_elt_old(void) { return elt_old(); }

#define ELT_CHUNK 256 // threads (float4s) of a chunk CTA

// Float4s per thread (1, 2, 4) for a row of K in registers with K / (4 NV) threads
// (% 32 == 0, <= 1024); 0 when none fits.
static int elt_row_nv(int K, int *threads) {
    if (K < 128 || K % 128) return 0;
    for (int nv = 1; nv <= 4; nv *= 2) {
        const int th = K / 4 / nv;
        if (th % 32 == 0 && th <= 1024) {
            *threads = th;
            return nv;
        }
    }
    return 0;
}
static bool a16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// PT: o from deferred split-K partials (a.o_part, fz)
template <int NV, bool PT = false>
__global__ __launch_bounds__(1024) void resid_norm_row_kernel(cuda_resid_args a, cuda_mmin out, int has_out) {
    __shared__ float red[32];
    pdl_trigger();
    const int i = blockIdx.x, nt = blockDim.x, tid = threadIdx.x;
    // the norm weights (no kernel writes them): fetched while the product runs (NV < 4: the
    // widest rows would spill at 1024 threads and load them after the sums)
    float4 wn[NV];
#pragma unroll
    for (int j = 0; j < NV; j++)
        if (NV < 4) wn[j] = ld4(a.norm_w + 4 * (j * nt + tid));
    pdl_wait();
    const int r = a.rows ? a.rows[i] : i;
    const int dim = a.dim;
    float *x = a.x + (size_t)r * dim;
    float4 v[NV];
#pragma unroll
    for (int j = 0; j < NV; j++) v[j] = ld4(x + 4 * (j * nt + tid));
    if (a.o) {
        const float *op = a.o + (size_t)r * dim;
        float4 o[NV];
#pragma unroll
        for (int j = 0; j < NV; j++) {
            const int k = 4 * (j * nt + tid);
            o[j] = PT ? part_ld4(a.o_part, op, r, k) : ld4(op + k);
            if (a.o_bias) {
                const float4 b = ld4(a.o_bias + k);
                o[j].x += b.x; o[j].y += b.y; o[j].z += b.z; o[j].w += b.w;
            }
        }
        if (a.post_w) {
            float ss = 0.0f;
#pragma unroll
            for (int j = 0; j < NV; j++) ss += o[j].x * o[j].x + o[j].y * o[j].y + o[j].z * o[j].z + o[j].w * o[j].w;
            ss = block_sum(ss, red);
            const float ro = 1.0f / sqrtf(ss / (float)dim + a.eps);
#pragma unroll
            for (int j = 0; j < NV; j++) {
                const float4 pw = ld4(a.post_w + 4 * (j * nt + tid));
                v[j].x += o[j].x * ro * pw.x; v[j].y += o[j].y * ro * pw.y;
                v[j].z += o[j].z * ro * pw.z; v[j].w += o[j].w * ro * pw.w;
            }
        } else {
#pragma unroll
            for (int j = 0; j < NV; j++) { v[j].x += o[j].x; v[j].y += o[j].y; v[j].z += o[j].z; v[j].w += o[j].w; }
        }
#pragma unroll
        for (int j = 0; j < NV; j++) *(float4 *)(x + 4 * (j * nt + tid)) = v[j];
    }
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < NV; j++) ss += v[j].x * v[j].x + v[j].y * v[j].y + v[j].z * v[j].z + v[j].w * v[j].w;
    ss = block_sum(ss, red);
    const float rr = 1.0f / sqrtf(ss / (float)dim + a.eps);
#pragma unroll
    for (int j = 0; j < NV; j++) {
        const float4 w = NV < 4 ? wn[j] : ld4(a.norm_w + 4 * (j * nt + tid));
        v[j].x = v[j].x * rr * w.x; v[j].y = v[j].y * rr * w.y; v[j].z = v[j].z * rr * w.z; v[j].w = v[j].w * rr * w.w;
    }
    if (a.xout)
#pragma unroll
        for (int j = 0; j < NV; j++) *(float4 *)(a.xout + (size_t)i * dim + 4 * (j * nt + tid)) = v[j];
    if (has_out) mmin_emit_row<NV>(out, i, v, red);
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
template <int NV> __device__ __forceinline__ void cl_emit_row(const cuda_mmin &out, int t, int k0, const float4 (&v)[NV]);
#endif
// Round 8 fz: resid_norm_row_kernel<1> (no post-norm) over a thread-block cluster of CL CTAs a row (2..32 rows:
// one CTA a row leaves most SMs idle; the deferred partials of o / down are read by CL x more
// SMs). Global thread g = r * blockDim.x + tid of the row's cluster holds float4 g as thread g of
// the one-CTA kernel does; the block sums gather the 32-or-fewer warp sums of the whole cluster
// in warp order (distributed shared memory) and reduce them as block_sum does, so every bit
// equals resid_norm_row_kernel<1>'s.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// A thread's sum of squares of its float4 exactly as nvcc (CUDA 13.0) contracts resid_norm_row_kernel<1>'s
// `ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w` (read from its SASS, sm_90a and sm_121a alike:
// FMUL x^2, then FFMA y^2, z^2, w^2); the selftest's cluster rows compare every bit with that kernel.
__device__ __forceinline__ float cl_sq4(float4 v) {
    return __fmaf_rn(v.w, v.w, __fmaf_rn(v.z, v.z, __fmaf_rn(v.y, v.y, __fmul_rn(v.x, v.x))));
}
__device__ __forceinline__ float cl_block_sum(float v, float *red) {
    namespace cg = cooperative_groups;
    cg::cluster_group cl = cg::this_cluster();
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nwl = blockDim.x >> 5, nw = nwl * (int)cl.num_blocks();
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    cl.sync();
    v = lane < nw ? *cl.map_shared_rank(red + lane % nwl, lane / nwl) : 0.0f;
    v = warp_sum(v);
    cl.sync(); // (red is written again by the next sum; no CTA leaves while another reads it)
    return v;
}
#endif
template <bool PT>
__global__ __launch_bounds__(1024) void resid_cl_kernel(cuda_resid_args a, cuda_mmin out, int has_out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    __shared__ float red[32];
    pdl_trigger();
    const int CL = (int)cooperative_groups::this_cluster().num_blocks();
    const int rk = (int)cooperative_groups::this_cluster().block_rank();
    const int i = blockIdx.x / CL, nt = blockDim.x, tid = rk * nt + threadIdx.x;
    const float4 wn = ld4(a.norm_w + 4 * tid);
    pdl_wait();
    const int r = a.rows ? a.rows[i] : i;
    const int dim = a.dim;
    float *x = a.x + (size_t)r * dim;
    float4 v = ld4(x + 4 * tid);
    if (a.o) {
        const float *op = a.o + (size_t)r * dim;
        const int k = 4 * tid;
        float4 o = PT ? part_ld4(a.o_part, op, r, k) : ld4(op + k);
        if (a.o_bias) {
            const float4 b = ld4(a.o_bias + k);
            o.x += b.x; o.y += b.y; o.z += b.z; o.w += b.w;
        }
        v.x += o.x; v.y += o.y; v.z += o.z; v.w += o.w; // (post_w: not this kernel, resid_cl_launch)
        *(float4 *)(x + k) = v;
    }
    float ss = 0.0f;
    ss += cl_sq4(v);
    ss = cl_block_sum(ss, red);
    const float rr = 1.0f / sqrtf(ss / (float)dim + a.eps);
    v.x = v.x * rr * wn.x; v.y = v.y * rr * wn.y; v.z = v.z * rr * wn.z; v.w = v.w * rr * wn.w;
    if (a.xout) *(float4 *)(a.xout + (size_t)i * dim + 4 * tid) = v;
    const float4 vv[1] = {v};
    if (has_out) cl_emit_row<1>(out, i, rk * 4 * nt, vv);
#endif
}
static int resid_cl_launch(const cuda_resid_args *a, const cuda_mmin &out, int th, bool pt, void *stream, err *e);
int pe_resid(const cuda_resid_args *a, const cuda_mmin &out, bool pt, void *stream, err *e); // pe.cu (round 11)
int pe_prepare(const float *x, int ldx, const cuda_mmin &m, int T, void *stream, err *e);     // pe.cu (round 11)
int pe_qkv(const cuda_qkv_args *a, const cuda_tokens *tk, void *stream, err *e);              // pe.cu (round 11)

static int elt_resid_norm(const cuda_resid_args *a, const cuda_mmin &out, void *stream, err *e) {
    int th = 0;
    const int nv = elt_row_nv(a->dim, &th);
    if (!nv || !a16(a->x) || (a->o && !a16(a->o)) || (a->o_bias && !a16(a->o_bias)) || (a->post_w && !a16(a->post_w)) ||
        !a16(a->norm_w) || (a->xout && !a16(a->xout)))
        return -1;
    const bool pt = a->o && part_on(a->o_part);
    if (pt && !part_a16(a->o_part)) return -1;
    { const int pr = pe_resid(a, out, pt, stream, e); if (pr >= 0) return pr; } // round 11 pe (pe.cu; SPARKD_PE=0: off)
    { const int er = cuda_e64_resid(a, out, pt, stream, e); if (er >= 0) return er; } // round 12 e64 (e64.cu; SPARKD_E64=0: off)
    if (nv == 1) {
        const int cr = resid_cl_launch(a, out, th, pt, stream, e);
        if (cr >= 0) return cr;
    }
    const int has = a->out != NULL ? 1 : 0;
    const dim3 g((unsigned)a->n), b((unsigned)th);
    if (pt) {
        if (nv == 1) CUDA_TRY(cuda_launch(resid_norm_row_kernel<1, true>, g, b, 0, stream, *a, out, has));
        else if (nv == 2) CUDA_TRY(cuda_launch(resid_norm_row_kernel<2, true>, g, b, 0, stream, *a, out, has));
        else CUDA_TRY(cuda_launch(resid_norm_row_kernel<4, true>, g, b, 0, stream, *a, out, has));
        return 0;
    }
    if (nv == 1) CUDA_TRY(cuda_launch(resid_norm_row_kernel<1>, g, b, 0, stream, *a, out, has));
    else if (nv == 2) CUDA_TRY(cuda_launch(resid_norm_row_kernel<2>, g, b, 0, stream, *a, out, has));
    else CUDA_TRY(cuda_launch(resid_norm_row_kernel<4>, g, b, 0, stream, *a, out, has));
    return 0;
}

// Activation, whole row in registers (the F16/BF16 forms: the row exponent).
// PT: gate / up from deferred split-K partials (pg / pu, fz)
template <int NV, bool PT = false>
__global__ __launch_bounds__(1024) void act_row_kernel(const float *gate, const float *up, int ld, int act, cuda_mmin out,
                                                       cuda_part pg, cuda_part pu) {
    __shared__ float red[32];
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.x, nt = blockDim.x, tid = threadIdx.x;
    const float *g = gate + (size_t)t * ld, *u = up + (size_t)t * ld;
    float4 v[NV];
#pragma unroll
    for (int j = 0; j < NV; j++) {
        const int k = 4 * (j * nt + tid);
        const float4 gv = PT ? part_ld4(pg, g, t, k) : ld4(g + k), uv = PT ? part_ld4(pu, u, t, k) : ld4(u + k);
        v[j] = make_float4(act_f(gv.x, act) * uv.x, act_f(gv.y, act) * uv.y, act_f(gv.z, act) * uv.z,
                           act_f(gv.w, act) * uv.w);
    }
    mmin_emit_row<NV>(out, t, v, red);
}

// Round 8 fz: the activation of a row over a thread-block cluster of CL CTAs (at 2..32 tokens
// one CTA a row leaves most SMs idle: 8 CTAs of 768 threads at batch 8). CTA r of row t's
// cluster (blockIdx.x = t CL + r) takes elements [r K / CL, (r + 1) K / CL); the F16 / BF16
// forms' row exponent comes from the max of the CTAs' block maxima (distributed shared memory),
// so every value and form is bit-identical to act_row_kernel's (max is exact in any order).
// The emit of a row slice held in registers (thread i: float4s k0 / 4 + j * blockDim.x + i) by
// CTA r of the row's cluster: mmin_emit_row's with the exponent of the whole row.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
template <int NV>
__device__ __forceinline__ void cl_emit_row(const cuda_mmin &out, int t, int k0, const float4 (&v)[NV]) {
    __shared__ float red[32];
    __shared__ float cmax, rmax;
    namespace cg = cooperative_groups;
    cg::cluster_group cl = cg::this_cluster();
    const int CL = (int)cl.num_blocks(), r = (int)cl.block_rank(), nt = blockDim.x, tid = threadIdx.x;
    float inv = 1.0f;
    if (out.forms & (CUDA_MMIN_F16 | CUDA_MMIN_BF16)) {
        float a = 0.0f;
#pragma unroll
        for (int j = 0; j < NV; j++) a = fmaxf(a, amax4(v[j]));
        a = block_max(a, red);
        if (tid == 0) cmax = a;
        cl.sync();
        if (tid < 32) {
            float m = tid < CL ? *cl.map_shared_rank(&cmax, tid) : -INFINITY;
            m = warp_max(m);
            if (tid == 0) rmax = m;
        }
        cl.sync(); // (also: no CTA leaves while another reads its cmax)
        const int ex = mmin_exponent(rmax);
        inv = ldexpf(1.0f, -ex);
        if (r == 0 && tid == 0) out.tscale[t] = ldexpf(1.0f, ex);
    }
#pragma unroll
    for (int j = 0; j < NV; j++) mmin_emit4(out, t, k0 + 4 * (j * nt + tid), v[j], true, inv);
}
#endif
template <int NV, bool PT>
__global__ __launch_bounds__(1024) void act_cl_kernel(const float *gate, const float *up, int ld, int act, cuda_mmin out,
                                                      cuda_part pg, cuda_part pu) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    pdl_trigger();
    pdl_wait();
    const int CL = (int)cooperative_groups::this_cluster().num_blocks();
    const int r = (int)cooperative_groups::this_cluster().block_rank();
    const int t = blockIdx.x / CL, nt = blockDim.x, tid = threadIdx.x, k0 = r * (out.K / CL);
    const float *g = gate + (size_t)t * ld, *u = up + (size_t)t * ld;
    float4 v[NV];
#pragma unroll
    for (int j = 0; j < NV; j++) {
        const int k = k0 + 4 * (j * nt + tid);
        const float4 gv = PT ? part_ld4(pg, g, t, k) : ld4(g + k), uv = PT ? part_ld4(pu, u, t, k) : ld4(u + k);
        v[j] = make_float4(act_f(gv.x, act) * uv.x, act_f(gv.y, act) * uv.y, act_f(gv.z, act) * uv.z,
                           act_f(gv.w, act) * uv.w);
    }
    cl_emit_row<NV>(out, t, k0, v);
#endif
}
// cuda_mmin_prepare's row over a cluster (as act_cl_kernel; prep_row_kernel's values and forms).
template <int NV>
__global__ __launch_bounds__(1024) void prep_cl_kernel(const float *x, int ldx, cuda_mmin out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    pdl_trigger();
    pdl_wait();
    const int CL = (int)cooperative_groups::this_cluster().num_blocks();
    const int r = (int)cooperative_groups::this_cluster().block_rank();
    const int t = blockIdx.x / CL, nt = blockDim.x, tid = threadIdx.x, k0 = r * (out.K / CL);
    float4 v[NV];
#pragma unroll
    for (int j = 0; j < NV; j++) v[j] = ld4(x + (size_t)t * ldx + k0 + 4 * (j * nt + tid));
    cl_emit_row<NV>(out, t, k0, v);
#endif
}

// SPARKD_FZ_ACTCL: CTAs a row of the cluster kernels (act_cl_kernel, prep_cl_kernel, resid_cl_kernel;
// 2, 4 or 8); 0 = the one-CTA-a-row kernels; default (-1): 8 at 2..16 rows, 4 at 17..32, none else;
// off with SPARKD_FZ=0. SPARKD_FZ_CLK=mask picks the kernels (1 act, 2 prepare, 4 resid_norm; default 7).
static int act_cl_v = -2, cl_mask = -1; // cl_mask: SPARKD_FZ_CLK, 1 act, 2 prepare, 4 resid_norm (default 7)
static bool cl_kind(int bit) {
    if (cl_mask < 0) {
        const char *m = getenv("SPARKD_FZ_CLK");
        cl_mask = m ? atoi(m) & 7 : 7;
    }
    return (cl_mask & bit) != 0;
}
// Tests: CTAs a row forced (2, 4, 8; 0 = act_row_kernel), -2 = as the environment says.
extern "C" void cuda_fz_actcl_set(int cl) { act_cl_v = cl == 0 || cl == 2 || cl == 4 || cl == 8 ? cl : -2; }
// SPARKD_FZ_CL64=0: no cluster kernels at 33..64 rows (run 0's rule); default 1: act and resid_norm
// take them there when they read deferred partials (one CTA a row read 2-8 partials of a row)
static bool cl64() { return cuda_env_int("SPARKD_FZ_CL64", 1) != 0; }
static int act_cl_env() {
    int &v = act_cl_v;
    if (v == -2) {
        const char *c = getenv("SPARKD_FZ_ACTCL");
        v = !cuda_env_int("SPARKD_FZ", 1) ? 0 : c ? atoi(c) : -1;
        if (v != -1 && v != 2 && v != 4 && v != 8) v = 0;
        int dev = 0, ok = 0, major = 0;
        if (v && (cudaGetDevice(&dev) != cudaSuccess ||
                  cudaDeviceGetAttribute(&ok, cudaDevAttrClusterLaunch, dev) != cudaSuccess || !ok ||
                  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess || major < 9)) {
            v = 0;
            cudaGetLastError();
        }
    }
    return v;
}
// The cluster launch (with PDL as cuda_launch) of act_cl_kernel (x NULL) or prep_cl_kernel (x, ldx);
// 0 = launched, -1 = not taken (the caller runs the one-CTA-a-row kernel), > 0 = an error
// (cuda_fail's code).
static int act_cl_launch(const float *gate, const float *up, int ld, int T, int ffn, int act, const cuda_mmin &out,
                         const cuda_part &pg, const cuda_part &pu, bool pt, void *stream, err *e,
                         const float *x = NULL, int ldx = 0) {
    static int off = 0; // a launch the device refused: not again
    const int env = act_cl_env(), T2 = pt && cl64() ? 64 : 32; // (33..64 rows: only to read partials)
    const int CL = env > 0 ? env : T <= 16 ? 8 : T <= T2 ? 4 : 0;
    if (off || !env || !CL || T < 2 || T > T2 || ffn % CL || (long)T * CL > 65535 || !cl_kind(x ? 2 : 1) ||
        !(out.forms & (CUDA_MMIN_F16 | CUDA_MMIN_BF16))) // (one token: b1f's, untouched)
        return -1;
    int th = 0;
    const int nv = elt_row_nv(ffn / CL, &th);
    if (nv != 1 && nv != 2) return -1;
    const dim3 grid((unsigned)(T * CL)), cl((unsigned)CL), block((unsigned)th);
    const cudaError_t rc =
        x ? cuda_launch_cluster(nv == 1 ? prep_cl_kernel<1> : prep_cl_kernel<2>, grid, cl, block, 0, stream, x, ldx, out)
          : cuda_launch_cluster(nv == 1 ? (pt ? act_cl_kernel<1, true> : act_cl_kernel<1, false>)
                                        : (pt ? act_cl_kernel<2, true> : act_cl_kernel<2, false>),
                                grid, cl, block, 0, stream, gate, up, ld, act, out, pg, pu);
    if (rc == cudaSuccess) return 0;
    const int f = cuda_cluster_refused(rc, stream, "cudaLaunchKernelEx (act cluster)", __FILE__, __LINE__, e);
    if (f > 0) return f;
    fprintf(stderr, "layer: activation cluster launch failed (%s): one CTA a row from now on\n", cudaGetErrorString(rc));
    off = 1;
    return -1;
}

// resid_cl_kernel's launch for a row kernel of th threads (NV 1): 0 = launched, -1 = not taken,
// > 0 = an error (cuda_fail's code).
static int resid_cl_launch(const cuda_resid_args *a, const cuda_mmin &out, int th, bool pt, void *stream, err *e) {
    static int off = 0;
    const int env = act_cl_env(), T = a->n, T2 = pt && cl64() ? 64 : 32; // (33..64 rows: only to read partials)
    const int CL = env > 0 ? env : T <= 16 ? 8 : T <= T2 ? 4 : 0;
    if (off || !env || !CL || T < 2 || T > T2 || th % (32 * CL) || (long)T * CL > 65535 || (a->o && a->post_w) ||
        !cl_kind(4))
        return -1;
    const int has = a->out != NULL ? 1 : 0;
    const cudaError_t rc = cuda_launch_cluster(pt ? resid_cl_kernel<true> : resid_cl_kernel<false>, dim3((unsigned)(T * CL)),
                                               dim3((unsigned)CL), dim3((unsigned)(th / CL)), 0, stream, *a, out, has);
    if (rc == cudaSuccess) return 0;
    const int f = cuda_cluster_refused(rc, stream, "cudaLaunchKernelEx (resid cluster)", __FILE__, __LINE__, e);
    if (f > 0) return f;
    fprintf(stderr, "layer: resid_norm cluster launch failed (%s): one CTA a row from now on\n", cudaGetErrorString(rc));
    off = 1;
    return -1;
}

// Activation into forms without a row reduction (Q8, XP): grid (chunks of 4 ELT_CHUNK, T).
template <bool PT = false>
__global__ __launch_bounds__(ELT_CHUNK) void act_chunk_kernel(const float *gate, const float *up, int ld, int act,
                                                              cuda_mmin out, cuda_part pg, cuda_part pu) {
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.y, f = blockIdx.x * ELT_CHUNK + threadIdx.x;
    const bool live = f < out.K / 4;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (live) {
        const float *g = gate + (size_t)t * ld, *u = up + (size_t)t * ld;
        const float4 gv = PT ? part_ld4(pg, g, t, 4 * f) : ld4(g + 4 * f), uv = PT ? part_ld4(pu, u, t, 4 * f) : ld4(u + 4 * f);
        v = make_float4(act_f(gv.x, act) * uv.x, act_f(gv.y, act) * uv.y, act_f(gv.z, act) * uv.z,
                        act_f(gv.w, act) * uv.w);
    }
    mmin_emit4(out, t, 4 * f, v, live, 1.0f);
}

static int elt_act(const float *gate, const float *up, int ld, int T, int ffn, int act, const cuda_mmin &out,
                   const cuda_part &pg, const cuda_part &pu, void *stream, err *e) {
    if (ld % 4 || !a16(gate) || !a16(up) || !part_a16(pg) || !part_a16(pu)) return -1;
    const bool pt = part_on(pg) || part_on(pu);
    if (!(out.forms & (CUDA_MMIN_F16 | CUDA_MMIN_BF16))) {
        if (T > 65535) return -1;
        const dim3 g((unsigned)((ffn / 4 + ELT_CHUNK - 1) / ELT_CHUNK), (unsigned)T);
        if (pt) CUDA_TRY(cuda_launch(act_chunk_kernel<true>, g, dim3(ELT_CHUNK), 0, stream, gate, up, ld, act, out, pg, pu));
        else CUDA_TRY(cuda_launch(act_chunk_kernel<>, g, dim3(ELT_CHUNK), 0, stream, gate, up, ld, act, out, pg, pu));
        return 0;
    }
    { const int gr = cuda_g4_act(gate, up, ld, T, ffn, act, out, pg, pu, stream, e); if (gr >= 0) return gr; } // round 12 g4 (g4.cu; SPARKD_G4=0: off)
    const int cr = act_cl_launch(gate, up, ld, T, ffn, act, out, pg, pu, pt, stream, e);
    if (cr >= 0) return cr;
    int th = 0;
    const int nv = elt_row_nv(ffn, &th);
    if (!nv) return -1;
    const dim3 g((unsigned)T), b((unsigned)th);
    if (pt) {
        if (nv == 1) CUDA_TRY(cuda_launch(act_row_kernel<1, true>, g, b, 0, stream, gate, up, ld, act, out, pg, pu));
        else if (nv == 2) CUDA_TRY(cuda_launch(act_row_kernel<2, true>, g, b, 0, stream, gate, up, ld, act, out, pg, pu));
        else CUDA_TRY(cuda_launch(act_row_kernel<4, true>, g, b, 0, stream, gate, up, ld, act, out, pg, pu));
        return 0;
    }
    if (nv == 1) CUDA_TRY(cuda_launch(act_row_kernel<1>, g, b, 0, stream, gate, up, ld, act, out, pg, pu));
    else if (nv == 2) CUDA_TRY(cuda_launch(act_row_kernel<2>, g, b, 0, stream, gate, up, ld, act, out, pg, pu));
    else CUDA_TRY(cuda_launch(act_row_kernel<4>, g, b, 0, stream, gate, up, ld, act, out, pg, pu));
    return 0;
}

// Plain rows -> mm input (cuda_mmin_prepare), the same two shapes.
template <int NV>
__global__ __launch_bounds__(1024) void prep_row_kernel(const float *x, int ldx, cuda_mmin out) {
    __shared__ float red[32];
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.x, nt = blockDim.x, tid = threadIdx.x;
    float4 v[NV];
#pragma unroll
    for (int j = 0; j < NV; j++) v[j] = ld4(x + (size_t)t * ldx + 4 * (j * nt + tid));
    mmin_emit_row<NV>(out, t, v, red);
}

__global__ __launch_bounds__(ELT_CHUNK) void prep_chunk_kernel(const float *x, int ldx, cuda_mmin out) {
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.y, f = blockIdx.x * ELT_CHUNK + threadIdx.x;
    const bool live = f < out.K / 4;
    const float4 v = live ? ld4(x + (size_t)t * ldx + 4 * f) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    mmin_emit4(out, t, 4 * f, v, live, 1.0f);
}

int elt_prepare(const float *x, int ldx, cuda_mmin *m, int T, void *stream, err *e) {
    if (elt_old() || ldx % 4 || !a16(x)) return -1;
    if (!(m->forms & (CUDA_MMIN_F16 | CUDA_MMIN_BF16))) {
        if (T > 65535) return -1;
        const dim3 g((unsigned)((m->K / 4 + ELT_CHUNK - 1) / ELT_CHUNK), (unsigned)T);
        CUDA_TRY(cuda_launch(prep_chunk_kernel, g, dim3(ELT_CHUNK), 0, stream, x, ldx, *m));
        return 0;
    }
    { const int pr = pe_prepare(x, ldx, *m, T, stream, e); if (pr >= 0) return pr; } // round 11 pe (pe.cu; SPARKD_PE=0: off)
    {
        cuda_part none;
        memset(&none, 0, sizeof none);
        const int cr = act_cl_launch(NULL, NULL, 0, T, m->K, 0, *m, none, none, false, stream, e, x, ldx);
        if (cr >= 0) return cr;
    }
    int th = 0;
    const int nv = elt_row_nv(m->K, &th);
    if (!nv) return -1;
    const dim3 g((unsigned)T), b((unsigned)th);
    if (nv == 1) CUDA_TRY(cuda_launch(prep_row_kernel<1>, g, b, 0, stream, x, ldx, *m));
    else if (nv == 2) CUDA_TRY(cuda_launch(prep_row_kernel<2>, g, b, 0, stream, x, ldx, *m));
    else CUDA_TRY(cuda_launch(prep_row_kernel<4>, g, b, 0, stream, x, ldx, *m));
    return 0;
}

// ------------------------------------------------------------------- QK-norm, RoPE, KV store

#define QKV_WARPS 4

// grid (T, ceil((n_head + 2 n_kv) / QKV_WARPS)): one warp per head of one token.
// PT: q / k / v from deferred split-K partials (a.pq / pk / pv, fz)
template <bool PT = false>
__global__ __launch_bounds__(QKV_WARPS * 32) void qkv_kernel(cuda_qkv_args a, cuda_tokens tk, int pre_w) {
    __shared__ __align__(16) float rowbuf[QKV_WARPS][256];
    pdl_trigger();
    const int t = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int D = a.head_dim;
    // weights (no kernel writes them) into registers before the wait on the product: the
    // inverse frequencies and the norm weights of the kind of this warp's first head
    // (second generation; SPARKD_ELT_OLD reads them in the loop as before)
    const bool pre = pre_w != 0;
    float ifr[4], nwr[8];
    int nw_kind = -1;
    if (pre) {
        const int h0 = blockIdx.y * QKV_WARPS + warp;
        nw_kind = h0 < a.n_head ? 0 : h0 < a.n_head + a.n_kv ? 1 : 2;
        const float *nw0 = nw_kind == 0 ? a.q_norm : nw_kind == 1 ? a.k_norm : NULL;
        if (!nw0) nw_kind = -1;
#pragma unroll
        for (int j = 0; j < 8; j++) nwr[j] = nw0 && lane + 32 * j < D ? nw0[lane + 32 * j] : 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) ifr[j] = lane + 32 * j < a.n_rot / 2 ? a.inv_freq[lane + 32 * j] : 0.0f;
    }
    pdl_wait();
    const int pos = tk.pos[t];
    const int32_t blk = tk.block_tables[(size_t)tk.seq[t] * tk.max_blocks + pos / a.kv_block];
    const int off = pos % a.kv_block;
    float *v = rowbuf[warp];
    for (int h = blockIdx.y * QKV_WARPS + warp; h < a.n_head + 2 * a.n_kv; h += QKV_WARPS * gridDim.y) {
        const int kind = h < a.n_head ? 0 : h < a.n_head + a.n_kv ? 1 : 2; // q, k, v
        const int hh = kind == 0 ? h : kind == 1 ? h - a.n_head : h - a.n_head - a.n_kv;
        float *src = kind == 0 ? a.q + (size_t)t * a.ldq : kind == 1 ? a.k + (size_t)t * a.ldk : a.v + (size_t)t * a.ldv;
        // (PT: the split-K partials of this head's row, nz of them zs apart; nz 0: src; no gemms2 pieces here)
        const float *pp = NULL;
        int pnz = 0;
        long long pzs = 0;
        if (PT) {
            const int pld = kind == 0 ? a.pq.ld : kind == 1 ? a.pk.ld : a.pv.ld;
            pnz = kind == 0 ? a.pq.nz : kind == 1 ? a.pk.nz : a.pv.nz;
            pzs = kind == 0 ? a.pq.zs : kind == 1 ? a.pk.zs : a.pv.zs;
            pp = (kind == 0 ? a.pq.p : kind == 1 ? a.pk.p : a.pv.p) + (size_t)t * pld + (size_t)hh * D;
        }
        src += (size_t)hh * D;
        const float *bias = kind == 0 ? a.bq : kind == 1 ? a.bk : a.bv;
        const float *nw = kind == 0 ? a.q_norm : kind == 1 ? a.k_norm : NULL;
        if (PT && pnz) { // the head's sums into v first, a float4 a lane (the loads of all partials in flight)
#pragma unroll 1
            for (int d4 = 4 * lane; d4 < D; d4 += 128) {
                float4 s = make_float4(0.0f, 0.0f, 0.0f, 0.0f); // (the reduce kernels' order)
                for (int z = 0; z < pnz; z++) {
                    const float4 q = *(const float4 *)(pp + (size_t)z * pzs + d4);
                    s.x += q.x; s.y += q.y; s.z += q.z; s.w += q.w;
                }
                *(float4 *)(v + d4) = s;
            }
            __syncwarp();
        }
        float ss = 0.0f;
        for (int d = lane; d < D; d += 32) {
            float x = PT && pnz ? v[d] : src[d];
            if (bias) x += bias[(size_t)hh * D + d];
            v[d] = x;
            ss += x * x;
        }
        if (nw) {
            ss = warp_sum(ss);
            const float r = 1.0f / sqrtf(ss / (float)D + a.eps);
            if (kind == nw_kind) {
#pragma unroll
                for (int j = 0; j < 8; j++)
                    if (lane + 32 * j < D) v[lane + 32 * j] = v[lane + 32 * j] * r * nwr[j];
            } else {
                for (int d = lane; d < D; d += 32) v[d] = v[d] * r * nw[d];
            }
        }
        __syncwarp();
        if (kind < 2) {
            const int half = a.n_rot / 2;
            if (pre) {
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int i = lane + 32 * j;
                    if (i >= half) break;
                    float sn, cs;
                    sincosf((float)pos * ifr[j], &sn, &cs);
                    cs *= a.mscale;
                    sn *= a.mscale;
                    const int ia = a.neox ? i : 2 * i, ib = a.neox ? i + half : 2 * i + 1;
                    const float x0 = v[ia], x1 = v[ib];
                    v[ia] = x0 * cs - x1 * sn;
                    v[ib] = x0 * sn + x1 * cs;
                }
            } else {
                for (int i = lane; i < half; i += 32) {
                    const float th = (float)pos * a.inv_freq[i];
                    const float cs = cosf(th) * a.mscale, sn = sinf(th) * a.mscale;
                    const int ia = a.neox ? i : 2 * i, ib = a.neox ? i + half : 2 * i + 1;
                    const float x0 = v[ia], x1 = v[ib];
                    v[ia] = x0 * cs - x1 * sn;
                    v[ib] = x0 * sn + x1 * cs;
                }
            }
            __syncwarp();
        }
        if (kind == 0) {
            for (int d = lane; d < D; d += 32) src[d] = v[d];
        } else {
            const size_t row = ((size_t)blk * a.n_kv + hh) * a.kv_block + off;
            void *cache = kind == 1 ? a.kv.k : a.kv.v;
            float *scale = kind == 1 ? a.kv.k_scale : a.kv.v_scale;
            if (a.kv_type == CUDA_KV_F32) {
                for (int d = lane; d < D; d += 32) ((float *)cache)[row * D + d] = v[d];
            } else if (a.kv_type == CUDA_KV_F16) {
                for (int d = lane; d < D; d += 32) ((__half *)cache)[row * D + d] = __float2half_rn(v[d]);
            } else if (a.kv_type == CUDA_KV_BF16) {
                for (int d = lane; d < D; d += 32)
                    ((__nv_bfloat16 *)cache)[row * D + d] = __float2bfloat16_rn(v[d]);
            } else {
                float amax = 0.0f;
                for (int d = lane; d < D; d += 32) amax = fmaxf(amax, fabsf(v[d]));
                amax = warp_max(amax);
                const float qmax = a.kv_type == CUDA_KV_Q8 ? 127.0f : 448.0f;
                const float inv = amax > 0.0f ? qmax / amax : 0.0f;
                if (lane == 0) scale[row] = amax / qmax;
                if (a.kv_type == CUDA_KV_Q8) {
                    for (int d = lane; d < D; d += 32) ((int8_t *)cache)[row * D + d] = (int8_t)__float2int_rn(v[d] * inv);
                } else {
                    for (int d = lane; d < D; d += 32)
                        ((__nv_fp8_storage_t *)cache)[row * D + d] =
                            __nv_cvt_float_to_fp8(v[d] * inv, __NV_SATFINITE, __NV_E4M3);
                }
            }
        }
        __syncwarp();
    }
}

extern "C" int cuda_qkv_rope_store(const cuda_qkv_args *a, const cuda_tokens *tk, void *stream, err *e) {
    if (!a || !tk || tk->T < 1 || a->head_dim < 2 || a->head_dim > 256 || a->n_rot < 0 ||
        a->n_rot > a->head_dim || (a->n_rot & 1) || (a->n_rot && !a->inv_freq) || a->n_head < 1 ||
        a->n_kv < 1 || a->kv_block < 1 || !a->kv.k || !a->kv.v || a->kv_type < 0 || a->kv_type > CUDA_KV_FP8 ||
        ((a->kv_type == CUDA_KV_Q8 || a->kv_type == CUDA_KV_FP8) && (!a->kv.k_scale || !a->kv.v_scale)))
        return err_set(e, ERR_INVALID, "cuda_qkv_rope_store: bad arguments (head_dim %d, n_rot %d, kv_type %d)",
                       a ? a->head_dim : 0, a ? a->n_rot : 0, a ? a->kv_type : -1);
    const int heads = a->n_head + 2 * a->n_kv;
    const dim3 g((unsigned)tk->T, (unsigned)((heads + QKV_WARPS - 1) / QKV_WARPS));
    if (part_on(a->pq) || part_on(a->pk) || part_on(a->pv)) {
        // the first generation, gemms2's pieces (not read by qkv_kernel) or rows not of float4s: the
        // partials into q / k / v first
        const bool fl = elt_old() || a->pq.g2 || a->pk.g2 || a->pv.g2 || a->head_dim % 4 || !part_a16(a->pq) ||
                        !part_a16(a->pk) || !part_a16(a->pv);
        if (fl) {
            if (part_flush(a->pq, a->q, a->ldq, tk->T, a->n_head * a->head_dim, stream, e) ||
                part_flush(a->pk, a->k, a->ldk, tk->T, a->n_kv * a->head_dim, stream, e) ||
                part_flush(a->pv, a->v, a->ldv, tk->T, a->n_kv * a->head_dim, stream, e))
                return -1;
        } else {
            { const int er = cuda_e64_qkv(a, tk, stream, e); if (er >= 0) return er; } // round 12 e64 (e64.cu; SPARKD_E64=0: off)
            CUDA_TRY(cuda_launch(qkv_kernel<true>, g, dim3(QKV_WARPS * 32), 0, stream, *a, *tk, 1));
            return 0;
        }
    }
    if (!elt_old()) { const int pr = pe_qkv(a, tk, stream, e); if (pr >= 0) return pr; } // round 11 pe (pe.cu; SPARKD_PE=0: off)
    CUDA_TRY(cuda_launch(qkv_kernel<>, g, dim3(QKV_WARPS * 32), 0, stream, *a, *tk, elt_old() ? 0 : 1));
    return 0;
}

// ------------------------------------------------------------------- soft-capping

__global__ void softcap_kernel(float *l, int ld, int n_vocab, float cap) {
    pdl_trigger();
    pdl_wait();
    float *row = l + (size_t)blockIdx.y * ld;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n_vocab; i += gridDim.x * blockDim.x)
        row[i] = cap * tanhf(row[i] / cap);
}

extern "C" int cuda_softcap(float *logits, int ld, int n, int n_vocab, float cap, void *stream, err *e) {
    if (!logits || n < 1 || n > 65535 || n_vocab < 1 || ld < n_vocab || !(cap > 0.0f))
        return err_set(e, ERR_INVALID, "cuda_softcap: n %d vocab %d cap %g", n, n_vocab, (double)cap);
    dim3 grid((unsigned)((n_vocab + 1023) / 1024 < 64 ? (n_vocab + 1023) / 1024 : 64), (unsigned)n);
    CUDA_TRY(cuda_launch(softcap_kernel, grid, dim3(1024), 0, stream, logits, ld, n_vocab, cap));
    return 0;
}
