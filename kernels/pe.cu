// pe.cu — round 11, helper pe: the row producers of a prefill layer at many rows (T > 64) with
// small CTAs. layer.cu's resid_norm_row_kernel<1, PT> runs one 1024-thread CTA a row of 4096
// (54 registers at PT: one CTA an SM, 512 rows = ~4 waves, each wave load -> reduce -> emit
// with nothing to overlap it; ~20 us a call at pp512 in /work/prof/r10/base/pp-q8.txt). Here a
// row takes PE_NT = 256 threads, each holding J float4s (float4 index j * PE_NT + tid, the
// order mmin_emit_row expects), so several rows share an SM and one row's loads overlap
// another's reductions; the deferred split-K partials (cuda_part, nz <= 4) are loaded for all
// j before they are summed.
//
// Values: bit-identical to the kernels they replace. resid: the sum of squares of old thread
// g (= float4 g of the row) is formed as resid_norm_row_kernel<1>'s (x^2 by FMUL, then FFMA
// y^2, z^2, w^2; the same contraction as layer.cu's cl_sq4), each old warp's sum by the same
// xor butterfly over the same 32 float4s (my warp w at j holds old warp j * PE_NT / 32 + w),
// and the 32-or-fewer warp sums reduced in warp order as block_sum does; the partials are
// summed from 0.0f in z order as part_ld4 does. prep / emit: only a max over the row (exact in
// any order) and element-wise forms (mmin_emit4, same 8-lane groups).
//
// qkv (mask 4): layer.cu's qkv_kernel<false> (bias, per-head RMSNorm, neox RoPE, q back in place, k / v into
// an f32 / f16 / bf16 cache) for head_dim = n_rot = 128 with each warp taking one head of PE_QTOK tokens,
// every row loaded before any is used (qkv_kernel: one head of one token a warp, 6144 CTAs of 4 warps at
// pp512, load -> reduce -> sincos -> store in sequence), the values in registers (lane holds d = lane + 32 j
// as qkv_kernel's lane does, so the sums of squares, the norm and the rotation are its operations in its
// order: bit-identical).
//
// nolo (mask 8, run 1): resid / prepare leave the F16 (BF16) form's low half unwritten when the engine says
// no product of this forward reads it (cuda_pe_nolo: precision fast with every product kind on int8 inputs,
// exact = 0: the hfast / hfw / mmq / gemm kernels then read hi only; no MoE, no tensor parallel). Every
// other word as before (bitwise).
//
// SPARKD_PE: mask of the kernels taken (1 resid_norm, 2 prepare, 4 qkv, 8 nolo; default 15); 0 = layer.cu's
// launches exactly.
#include "cuda_kern.h"

#include <stdlib.h>
#include <string.h>

#include "fz_part.cuh"
#include "kern_util.cuh"
#include "mmin.cuh"

#define PE_NT 256   // threads a row
#define PE_MIN_T 65 // rows from which these kernels are taken (below: layer.cu's cluster / row kernels)

static int pe_v = -1;
// The mask (SPARKD_PE, read once).
int pe_mask(void) {
    if (pe_v < 0) pe_v = cuda_env_int("SPARKD_PE", 15) & 15; // (cuda_env_int: "0..." = 0)
    return pe_v;
}
// Tests and benches: the mask (0 = off), -1 = as the environment says.
extern "C" void cuda_pe_set(int mask) { pe_v = mask < 0 ? -1 : mask & 15; }
static thread_local int pe_nolo_v = 0; // this thread's forward: no product reads the low halves (cuda_pe_nolo; per thread: engines forward on their own threads)
extern "C" void cuda_pe_nolo(int on) { pe_nolo_v = on ? 1 : 0; }
static bool pe_nolo(void) { return pe_nolo_v && (pe_mask() & 8); }
static long pe_n = 0; // launches of this file's kernels (tests)
extern "C" long cuda_pe_launches(void) { return pe_n; }

// A thread's sum of squares of one float4 as resid_norm_row_kernel<1> forms it (see the top).
__device__ __forceinline__ float pe_sq4(float4 v) {
    return __fmaf_rn(v.w, v.w, __fmaf_rn(v.z, v.z, __fmaf_rn(v.y, v.y, __fmul_rn(v.x, v.x))));
}

// mmin_emit4's words without the low halves (lo, blo): the same values in the same 8-lane groups.
__device__ __forceinline__ void pe_emit4_nolo(const cuda_mmin &m, int t, int e0, float4 v, float inv) {
    const size_t at = (size_t)t * m.K + (size_t)(e0 & ~63) + (size_t)inv_perm64(e0 & 63);
    const size_t gi = (size_t)t * (m.K / 32) + (size_t)(e0 >> 5);
    const bool first = (threadIdx.x & 7) == 0;
    if (m.forms & CUDA_MMIN_XP) {
        *(float2 *)(m.xp + at) = make_float2(v.x, v.y);
        *(float2 *)(m.xp + at + 16) = make_float2(v.z, v.w);
    }
    if (m.forms & (CUDA_MMIN_F16 | CUDA_MMIN_BF16)) {
        const float s0 = v.x * inv, s1 = v.y * inv, s2 = v.z * inv, s3 = v.w * inv;
        if (m.forms & CUDA_MMIN_F16) {
            *(ushort2 *)(m.hi + at) = make_ushort2(__half_as_ushort(__float2half_rn(s0)), __half_as_ushort(__float2half_rn(s1)));
            *(ushort2 *)(m.hi + at + 16) = make_ushort2(__half_as_ushort(__float2half_rn(s2)), __half_as_ushort(__float2half_rn(s3)));
        }
        if (m.forms & CUDA_MMIN_BF16) {
            *(ushort2 *)(m.bhi + at) =
                make_ushort2(__bfloat16_as_ushort(__float2bfloat16_rn(s0)), __bfloat16_as_ushort(__float2bfloat16_rn(s1)));
            *(ushort2 *)(m.bhi + at + 16) =
                make_ushort2(__bfloat16_as_ushort(__float2bfloat16_rn(s2)), __bfloat16_as_ushort(__float2bfloat16_rn(s3)));
        }
        const float s = grp8_sum((s0 + s1) + (s2 + s3));
        if (first) m.gsum[gi] = s;
    }
    if (m.forms & CUDA_MMIN_Q8) {
        const float a = grp8_max(fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
        const float d = a / 127.0f;
        const int q0 = a == 0.0f ? 0 : (int)roundf(v.x / d), q1 = a == 0.0f ? 0 : (int)roundf(v.y / d),
                  q2 = a == 0.0f ? 0 : (int)roundf(v.z / d), q3 = a == 0.0f ? 0 : (int)roundf(v.w / d);
        const int sq = grp8_isum(q0 + q1 + q2 + q3);
        *(char2 *)(m.q8 + at) = make_char2((signed char)q0, (signed char)q1);
        *(char2 *)(m.q8 + at + 16) = make_char2((signed char)q2, (signed char)q3);
        if (first) {
            m.q8d[gi] = d;
            m.q8s[gi] = d * (float)sq;
        }
    }
}
// mmin_emit_row<J>, or with NOLO its words without the low halves.
template <int J, bool NOLO>
__device__ __forceinline__ void pe_emit_row(const cuda_mmin &m, int t, const float4 (&v)[J], float *red) {
    if (!NOLO) {
        mmin_emit_row<J>(m, t, v, red);
        return;
    }
    const float inv = mmin_row_inv<J>(m, t, v, red);
#pragma unroll
    for (int j = 0; j < J; j++) pe_emit4_nolo(m, t, 4 * (j * (int)blockDim.x + (int)threadIdx.x), v[j], inv);
}

// resid_norm_row_kernel<1, PT> for rows of dim = 4 * J * PE_NT (J float4s a thread); no post-norm.
// PT: o from deferred split-K partials a.o_part (nz in 1..4, not g2).
template <int J, bool PT, bool NOLO = false>
__global__ __launch_bounds__(PE_NT) void pe_resid_kernel(cuda_resid_args a, cuda_mmin out, int has_out) {
    __shared__ float red[32];
    pdl_trigger();
    pdl_wait();
    const int i = blockIdx.x, tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    const int r = a.rows ? a.rows[i] : i;
    const int dim = a.dim;
    float *x = a.x + (size_t)r * dim;
    float4 v[J]; // the row's float4s j * PE_NT + tid
#pragma unroll
    for (int j = 0; j < J; j++) v[j] = ld4(x + 4 * (j * PE_NT + tid));
    if (a.o) {
        float4 o[J];
        if (PT) {
            // every partial's float4s loaded first (partial z > nz - 1: partial nz - 1 again, not added)
            const int nz = a.o_part.nz;
            const float *p = a.o_part.p + (size_t)r * a.o_part.ld;
            float4 q[4][J];
#pragma unroll
            for (int z = 0; z < 4; z++)
#pragma unroll
                for (int j = 0; j < J; j++) q[z][j] = ld4(p + (size_t)(z < nz ? z : nz - 1) * a.o_part.zs + 4 * (j * PE_NT + tid));
#pragma unroll
            for (int j = 0; j < J; j++) {
                float4 s = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
                for (int z = 0; z < 4; z++)
                    if (z < nz) { s.x += q[z][j].x; s.y += q[z][j].y; s.z += q[z][j].z; s.w += q[z][j].w; }
                o[j] = s;
            }
        } else {
            const float *op = a.o + (size_t)r * dim;
#pragma unroll
            for (int j = 0; j < J; j++) o[j] = ld4(op + 4 * (j * PE_NT + tid));
        }
#pragma unroll
        for (int j = 0; j < J; j++) {
            if (a.o_bias) {
                const float4 b = ld4(a.o_bias + 4 * (j * PE_NT + tid));
                o[j].x += b.x; o[j].y += b.y; o[j].z += b.z; o[j].w += b.w;
            }
            v[j].x += o[j].x; v[j].y += o[j].y; v[j].z += o[j].z; v[j].w += o[j].w;
            *(float4 *)(x + 4 * (j * PE_NT + tid)) = v[j];
        }
    }
    // block_sum of the 1024-thread kernel: warp sums of old warps j * (PE_NT / 32) + w, then in warp order
#pragma unroll
    for (int j = 0; j < J; j++) {
        float s = 0.0f;
        s += pe_sq4(v[j]);
        s = warp_sum(s);
        if (lane == 0) red[j * (PE_NT / 32) + w] = s;
    }
    __syncthreads();
    float ss = lane < J * (PE_NT / 32) ? red[lane] : 0.0f;
    ss = warp_sum(ss);
    __syncthreads(); // (red is used again by the emit's max)
    const float rr = 1.0f / sqrtf(ss / (float)dim + a.eps);
#pragma unroll
    for (int j = 0; j < J; j++) {
        const float4 wn = ld4(a.norm_w + 4 * (j * PE_NT + tid));
        v[j].x = v[j].x * rr * wn.x; v[j].y = v[j].y * rr * wn.y; v[j].z = v[j].z * rr * wn.z; v[j].w = v[j].w * rr * wn.w;
    }
    if (a.xout)
#pragma unroll
        for (int j = 0; j < J; j++) *(float4 *)(a.xout + (size_t)i * dim + 4 * (j * PE_NT + tid)) = v[j];
    if (has_out) pe_emit_row<J, NOLO>(out, i, v, red);
}

// prep_row_kernel<NV> for rows of K = 4 * J * NT.
template <int J, int NT = PE_NT, bool NOLO = false>
__global__ __launch_bounds__(NT) void pe_prep_kernel(const float *x, int ldx, cuda_mmin out) {
    __shared__ float red[32];
    pdl_trigger();
    pdl_wait();
    const int t = blockIdx.x, tid = threadIdx.x;
    float4 v[J]; // the row's float4s j * NT + tid
#pragma unroll
    for (int j = 0; j < J; j++) v[j] = ld4(x + (size_t)t * ldx + 4 * (j * NT + tid));
    pe_emit_row<J, NOLO>(out, t, v, red);
}

// From layer.cu's elt_resid_norm (its alignment checks passed; pt: o is a's deferred partials):
// 0 = launched, -1 = not taken, > 0 = an error.
int pe_resid(const cuda_resid_args *a, const cuda_mmin &out, bool pt, void *stream, err *e) {
    if (!(pe_mask() & 1) || a->n < PE_MIN_T || a->dim != 4 * 4 * PE_NT || (a->o && a->post_w)) return -1;
    if (pt && (a->o_part.g2 || a->o_part.nz < 1 || a->o_part.nz > 4)) return -1;
    const int has = a->out != NULL ? 1 : 0;
    pe_n++;
    const dim3 g((unsigned)a->n), b(PE_NT);
    if (pe_nolo() && has) {
        if (pt) CUDA_TRY(cuda_launch(pe_resid_kernel<4, true, true>, g, b, 0, stream, *a, out, has));
        else CUDA_TRY(cuda_launch(pe_resid_kernel<4, false, true>, g, b, 0, stream, *a, out, has));
        return 0;
    }
    if (pt) CUDA_TRY(cuda_launch(pe_resid_kernel<4, true>, g, b, 0, stream, *a, out, has));
    else CUDA_TRY(cuda_launch(pe_resid_kernel<4, false>, g, b, 0, stream, *a, out, has));
    return 0;
}

// From layer.cu's elt_prepare (F16 / BF16 forms; x 16-byte aligned, ldx % 4 == 0): as pe_resid.
int pe_prepare(const float *x, int ldx, const cuda_mmin &m, int T, void *stream, err *e) {
    if (!(pe_mask() & 2) || T < PE_MIN_T || (m.K != 4 * 4 * PE_NT && m.K != 4 * 12 * PE_NT)) return -1;
    pe_n++;
    if (pe_nolo()) { // (the default geometries only)
        if (m.K == 4 * 4 * PE_NT) CUDA_TRY(cuda_launch(pe_prep_kernel<4, PE_NT, true>, dim3((unsigned)T), dim3(PE_NT), 0, stream, x, ldx, m));
        else CUDA_TRY(cuda_launch(pe_prep_kernel<12, PE_NT, true>, dim3((unsigned)T), dim3(PE_NT), 0, stream, x, ldx, m));
        return 0;
    }
    if (m.K == 4 * 4 * PE_NT) CUDA_TRY(cuda_launch(pe_prep_kernel<4>, dim3((unsigned)T), dim3(PE_NT), 0, stream, x, ldx, m));
    else CUDA_TRY(cuda_launch(pe_prep_kernel<12>, dim3((unsigned)T), dim3(PE_NT), 0, stream, x, ldx, m));
    return 0;
}

// ------------------------------------------------------------------- qkv (mask 4)
#define PE_QTOK 4 // tokens a warp (run 1's kernel bench at T 512: 2 / 4 / 8 tokens 12.70 / 13.38 / 14.18 us; ncu in the engine 4 < 8)
#define PE_QD 128 // head_dim = n_rot

// grid (ceil(T / TOK), ceil((n_head + 2 n_kv) / 4)), 4 warps: warp w takes head blockIdx.y * 4 + w of
// tokens blockIdx.x * TOK + u, u < TOK.
template <int TOK>
__global__ __launch_bounds__(128) void pe_qkv_kernel(cuda_qkv_args a, cuda_tokens tk) {
    pdl_trigger();
    const int lane = threadIdx.x & 31, h = blockIdx.y * 4 + (threadIdx.x >> 5);
    const int heads = a.n_head + 2 * a.n_kv;
    const int kind = h < a.n_head ? 0 : h < a.n_head + a.n_kv ? 1 : 2; // q, k, v
    const int hh = kind == 0 ? h : kind == 1 ? h - a.n_head : h - a.n_head - a.n_kv;
    const float *nw = kind == 0 ? a.q_norm : kind == 1 ? a.k_norm : NULL;
    const float *bias = kind == 0 ? a.bq : kind == 1 ? a.bk : a.bv;
    float nwr[4], ifr[2]; // weights (no kernel writes them) before the wait, as qkv_kernel
#pragma unroll
    for (int j = 0; j < 4; j++) nwr[j] = nw && h < heads ? nw[lane + 32 * j] : 0.0f;
#pragma unroll
    for (int j = 0; j < 2; j++) ifr[j] = a.inv_freq[lane + 32 * j];
    pdl_wait();
    if (h >= heads) return;
    const int ld = kind == 0 ? a.ldq : kind == 1 ? a.ldk : a.ldv;
    float *base = (kind == 0 ? a.q : kind == 1 ? a.k : a.v) + (size_t)hh * PE_QD;
    const int t0 = blockIdx.x * TOK;
    float x[TOK][4]; // token u's elements lane + 32 j
    int pos[TOK];
#pragma unroll
    for (int u = 0; u < TOK; u++) {
        const int t = t0 + u < tk.T ? t0 + u : tk.T - 1; // (past T: the last token again, not stored)
        pos[u] = tk.pos[t];
#pragma unroll
        for (int j = 0; j < 4; j++) x[u][j] = base[(size_t)t * ld + lane + 32 * j];
    }
#pragma unroll
    for (int u = 0; u < TOK; u++) {
        const int t = t0 + u;
        if (t >= tk.T) break;
        float ss = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float v = x[u][j];
            if (bias) v += bias[(size_t)hh * PE_QD + lane + 32 * j];
            x[u][j] = v;
            ss += v * v;
        }
        if (nw) {
            ss = warp_sum(ss);
            const float r = 1.0f / sqrtf(ss / (float)PE_QD + a.eps);
#pragma unroll
            for (int j = 0; j < 4; j++) x[u][j] = x[u][j] * r * nwr[j];
        }
        if (kind < 2) {
#pragma unroll
            for (int j = 0; j < 2; j++) { // pair (i, i + 64), i = lane + 32 j
                float sn, cs;
                sincosf((float)pos[u] * ifr[j], &sn, &cs);
                cs *= a.mscale;
                sn *= a.mscale;
                const float x0 = x[u][j], x1 = x[u][j + 2];
                x[u][j] = x0 * cs - x1 * sn;
                x[u][j + 2] = x0 * sn + x1 * cs;
            }
        }
        if (kind == 0) {
#pragma unroll
            for (int j = 0; j < 4; j++) base[(size_t)t * ld + lane + 32 * j] = x[u][j];
        } else {
            const int p = pos[u];
            const int32_t blk = tk.block_tables[(size_t)tk.seq[t] * tk.max_blocks + p / a.kv_block];
            const size_t row = ((size_t)blk * a.n_kv + hh) * a.kv_block + p % a.kv_block;
            void *cache = kind == 1 ? a.kv.k : a.kv.v;
            if (a.kv_type == CUDA_KV_F16) {
#pragma unroll
                for (int j = 0; j < 4; j++) ((__half *)cache)[row * PE_QD + lane + 32 * j] = __float2half_rn(x[u][j]);
            } else if (a.kv_type == CUDA_KV_BF16) {
#pragma unroll
                for (int j = 0; j < 4; j++)
                    ((__nv_bfloat16 *)cache)[row * PE_QD + lane + 32 * j] = __float2bfloat16_rn(x[u][j]);
            } else {
#pragma unroll
                for (int j = 0; j < 4; j++) ((float *)cache)[row * PE_QD + lane + 32 * j] = x[u][j];
            }
        }
    }
}

// From layer.cu's cuda_qkv_rope_store where it launches qkv_kernel<false> (second generation; partials, if
// any, already flushed): 0 = launched, -1 = not taken, > 0 = an error.
int pe_qkv(const cuda_qkv_args *a, const cuda_tokens *tk, void *stream, err *e) {
    if (!(pe_mask() & 4) || tk->T < PE_MIN_T || a->head_dim != PE_QD || a->n_rot != PE_QD || !a->neox ||
        !(a->kv_type == CUDA_KV_F16 || a->kv_type == CUDA_KV_BF16 || a->kv_type == CUDA_KV_F32) ||
        part_on(a->pq) || part_on(a->pk) || part_on(a->pv))
        return -1;
    const int heads = a->n_head + 2 * a->n_kv;
    const dim3 g((unsigned)((tk->T + PE_QTOK - 1) / PE_QTOK), (unsigned)((heads + 3) / 4));
    pe_n++;
    CUDA_TRY(cuda_launch(pe_qkv_kernel<PE_QTOK>, g, dim3(128), 0, stream, *a, *tk));
    return 0;
}
