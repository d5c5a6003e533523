// e64.cu — round 12, helper e64: the row producers between the products of a 33..64-row decode step
// (64 parallel sequences). At these rows layer.cu runs qkv_kernel<true> (one warp a head of one
// token, the split-K partials of q / k / v summed by a loop over z that the compiler does not
// unroll: each partial's load waits for the add before it; /work/prof/r12/base: 10.1 us a call
// for ~8 MB at Q8_0 (5 partials)) and resid_cl_kernel<1> (a cluster of 4 CTAs a row, 1 float4 a
// thread, the 8 partials of o / down read by part_ld4's loop, 4 cluster barriers; 8.0-8.3 us a
// call for ~11 MB). Here every partial is loaded before any is added (guarded loads of a fixed
// ZMAX), so a thread has all its loads in flight at once.
//
// Values: bit-identical to the kernels they replace. qkv: qkv_kernel<true>'s operations in its
// order (partials summed from 0.0f in z order as its float4 loop does, element by element; the
// lane holds d = lane + 32 j as its loops do; bias, sum of squares, norm, sincosf RoPE and the
// stores as pe.cu's pe_qkv_kernel, which is bitwise with qkv_kernel<false>). resid: one CTA of
// E64_RNT = 512 threads a row of 4096 (2 float4s a thread, float4 j * 512 + tid); the sum of
// squares of old thread g (float4 g of resid_norm_row_kernel<1>, 1024 threads) is formed as
// there, each old warp's sum by the same butterfly (my warp w at j holds old warp j * 16 + w),
// the 32 warp sums in warp order as block_sum does (resid_cl_kernel is bitwise with that kernel);
// the partials summed from 0.0f in z order as part_ld4; the emit is mmin_emit_row's (the same
// 8-lane groups of 32 elements; the row max is exact in any order).
//
// SPARKD_E64: mask (1 qkv with partials, 2 resid_norm, 4 attention combine + o's input prepare in one kernel;
// default 7); 0 = layer.cu's / attn.cu's launches exactly.
// SPARKD_E64_MIN: the fewest rows taken (default 2 since run 1: the 2..32-row steps too; the most: 64).
#include "cuda_kern.h"

#include <stdlib.h>
#include <string.h>

#include "fz_part.cuh"
#include "kern_util.cuh"
#include "mmin.cuh"
#include "rowfuse.cuh"

#define E64_MAXT 64 // rows up to which these kernels are taken (above: pe.cu's)
#define E64_RNT 512 // resid: threads a row of 4096
#define E64_RZ 8    // resid: the most partials
#define E64_QZ 16   // qkv: the most partials of one of q / k / v
#define E64_QD 128  // qkv: head_dim = n_rot

static int e64_v = -1, e64_min_v = -1;
// The mask (SPARKD_E64, read once).
static int e64_mask(void) {
    if (e64_v < 0) e64_v = cuda_env_int("SPARKD_E64", 7) & 7;
    return e64_v;
}
static int e64_min(void) {
    if (e64_min_v < 0) {
        e64_min_v = cuda_env_int("SPARKD_E64_MIN", 2); // (run 0: 33 and 2 measured; 2 won at 32K b8, +4.1%)
        if (e64_min_v < 2) e64_min_v = 2;
    }
    return e64_min_v;
}
// Tests and benches: the mask (0 = off), -1 = as the environment says; the fewest rows (-1: the environment's).
extern "C" void cuda_e64_set(int mask, int min_rows) {
    e64_v = mask < 0 ? -1 : mask & 7;
    e64_min_v = min_rows < 0 ? -1 : min_rows < 2 ? 2 : min_rows;
}
static long e64_n = 0; // launches of this file's kernels (tests)
extern "C" long cuda_e64_launches(void) { return e64_n; }

// A thread's sum of squares of one float4 as resid_norm_row_kernel<1> forms it (FMUL x^2, FFMA y^2, z^2, w^2).
__device__ __forceinline__ float e64_sq4(float4 v) {
    return __fmaf_rn(v.w, v.w, __fmaf_rn(v.z, v.z, __fmaf_rn(v.y, v.y, __fmul_rn(v.x, v.x))));
}

// ------------------------------------------------------------------- resid_norm (mask 2)
// resid_norm_row_kernel<1, PT> / resid_cl_kernel<PT> for rows of dim = 4 * J * NT, no post-norm.
// PT: o from deferred split-K partials a.o_part (nz in 1..ZMAX, not g2). grid (n), block NT.
template <int J, int NT, int ZMAX, bool PT>
__global__ __launch_bounds__(NT) void e64_resid_kernel(cuda_resid_args a, cuda_mmin out, int has_out) {
    __shared__ float red[32];
    __shared__ float zero; // 0.0f, read after the barrier below: the first add cannot be scheduled before it
    pdl_trigger();
    const int i = blockIdx.x, tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    if (PT && tid == 0) *(volatile float *)&zero = 0.0f; // (volatile: nvcc would assume the one value stored)
    float4 wn[J]; // the norm weights (no kernel writes them) while the product runs
#pragma unroll
    for (int j = 0; j < J; j++) wn[j] = ld4(a.norm_w + 4 * (j * NT + tid));
    pdl_wait();
    const int r = a.rows ? a.rows[i] : i;
    const int dim = a.dim;
    float *x = a.x + (size_t)r * dim;
    float4 v[J]; // the row's float4s j * NT + tid
#pragma unroll
    for (int j = 0; j < J; j++) v[j] = ld4(x + 4 * (j * NT + tid));
    if (a.o) {
        float4 o[J];
        if (PT) {
            const int nz = a.o_part.nz;
            const float *p = a.o_part.p + (size_t)r * a.o_part.ld;
            float4 q[ZMAX][J]; // every partial's float4s in flight before the first add
#pragma unroll
            for (int z = 0; z < ZMAX; z++)
#pragma unroll
                for (int j = 0; j < J; j++)
                    if (z < nz) q[z][j] = ld4(p + (size_t)z * a.o_part.zs + 4 * (j * NT + tid));
            // (without the barrier ptxas adds the first partials before the last are asked for: two latencies)
            __syncthreads();
            const float z0 = *(volatile float *)&zero;
#pragma unroll
            for (int j = 0; j < J; j++) {
                float4 s = make_float4(z0, z0, z0, z0); // (0.0f: part_ld4's order)
#pragma unroll
                for (int z = 0; z < ZMAX; z++)
                    if (z < nz) { s.x += q[z][j].x; s.y += q[z][j].y; s.z += q[z][j].z; s.w += q[z][j].w; }
                o[j] = s;
            }
        } else {
            const float *op = a.o + (size_t)r * dim;
#pragma unroll
            for (int j = 0; j < J; j++) o[j] = ld4(op + 4 * (j * NT + tid));
        }
#pragma unroll
        for (int j = 0; j < J; j++) {
            if (a.o_bias) {
                const float4 b = ld4(a.o_bias + 4 * (j * NT + tid));
                o[j].x += b.x; o[j].y += b.y; o[j].z += b.z; o[j].w += b.w;
            }
            v[j].x += o[j].x; v[j].y += o[j].y; v[j].z += o[j].z; v[j].w += o[j].w;
            *(float4 *)(x + 4 * (j * NT + tid)) = v[j];
        }
    }
    // block_sum of the 1024-thread kernel: old warp j * (NT / 32) + w's butterfly, then the warp sums in order
#pragma unroll
    for (int j = 0; j < J; j++) {
        float s = 0.0f;
        s += e64_sq4(v[j]);
        s = warp_sum(s);
        if (lane == 0) red[j * (NT / 32) + w] = s;
    }
    __syncthreads();
    float ss = lane < J * (NT / 32) ? red[lane] : 0.0f;
    ss = warp_sum(ss);
    const float rr = 1.0f / sqrtf(ss / (float)dim + a.eps);
#pragma unroll
    for (int j = 0; j < J; j++) {
        v[j].x = v[j].x * rr * wn[j].x; v[j].y = v[j].y * rr * wn[j].y;
        v[j].z = v[j].z * rr * wn[j].z; v[j].w = v[j].w * rr * wn[j].w;
    }
    if (a.xout)
#pragma unroll
        for (int j = 0; j < J; j++) *(float4 *)(a.xout + (size_t)i * dim + 4 * (j * NT + tid)) = v[j];
    if (has_out) mmin_emit_row<J>(out, i, v, red); // (block_max's first barrier: every read of red above is done)
}

// From layer.cu's elt_resid_norm (its alignment checks passed; pt: o is a's deferred partials):
// 0 = launched, -1 = not taken, > 0 = an error.
int cuda_e64_resid(const cuda_resid_args *a, const cuda_mmin &out, bool pt, void *stream, err *e) {
    if (!(e64_mask() & 2) || a->n < e64_min() || a->n > E64_MAXT || a->dim != 4 * 2 * E64_RNT || (a->o && a->post_w)) return -1;
    if (pt && (a->o_part.g2 || a->o_part.nz < 1 || a->o_part.nz > E64_RZ)) return -1;
    const int has = a->out != NULL ? 1 : 0;
    e64_n++;
    const dim3 g((unsigned)a->n);
    if (pt) CUDA_TRY(cuda_launch(e64_resid_kernel<2, E64_RNT, E64_RZ, true>, g, dim3(E64_RNT), 0, stream, *a, out, has));
    else CUDA_TRY(cuda_launch(e64_resid_kernel<2, E64_RNT, E64_RZ, false>, g, dim3(E64_RNT), 0, stream, *a, out, has));
    return 0;
}

// ------------------------------------------------------------------- qkv with partials (mask 1)
// qkv_kernel<true> for head_dim = n_rot = 128, neox, KV f32 / f16 / bf16, z-split partials (not g2).
// grid (T, ceil((n_head + 2 n_kv) / 4)), 4 warps: warp w takes head blockIdx.y * 4 + w of token blockIdx.x.
template <int ZMAX>
__global__ __launch_bounds__(128) void e64_qkv_kernel(cuda_qkv_args a, cuda_tokens tk) {
    __shared__ float zero; // 0.0f, read after the barrier below (as e64_resid_kernel)
    pdl_trigger();
    if (threadIdx.x == 0) *(volatile float *)&zero = 0.0f;
    const int lane = threadIdx.x & 31, h = blockIdx.y * 4 + (threadIdx.x >> 5), t = blockIdx.x;
    const int heads = a.n_head + 2 * a.n_kv;
    const int kind = h < a.n_head ? 0 : h < a.n_head + a.n_kv ? 1 : 2; // q, k, v
    const int hh = kind == 0 ? h : kind == 1 ? h - a.n_head : h - a.n_head - a.n_kv;
    const float *nw = kind == 0 ? a.q_norm : kind == 1 ? a.k_norm : NULL;
    const float *bias = kind == 0 ? a.bq : kind == 1 ? a.bk : a.bv;
    float nwr[4], ifr[2]; // weights (no kernel writes them) before the wait
#pragma unroll
    for (int j = 0; j < 4; j++) nwr[j] = nw && h < heads ? nw[lane + 32 * j] : 0.0f;
#pragma unroll
    for (int j = 0; j < 2; j++) ifr[j] = a.inv_freq[lane + 32 * j];
    pdl_wait(); // (every warp has a head: n_head + 2 n_kv % 4 == 0, e64_qkv)
    const cuda_part &P = kind == 0 ? a.pq : kind == 1 ? a.pk : a.pv;
    const int nz = P.nz;
    float x[4]; // elements lane + 32 j of the head
    const int pos = tk.pos[t];
    float q[ZMAX][4]; // every partial in flight before the first add
    if (nz > 0) {
        const float *pp = P.p + (size_t)t * P.ld + (size_t)hh * E64_QD + lane;
#pragma unroll
        for (int z = 0; z < ZMAX; z++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                if (z < nz) q[z][j] = pp[(size_t)z * P.zs + 32 * j];
    }
    __syncthreads(); // (nz is uniform in a warp, not in the CTA: every warp passes here once)
    const float z0 = *(volatile float *)&zero;
    if (nz > 0) {
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float s = z0; // (0.0f: qkv_kernel<true>'s order, z ascending)
#pragma unroll
            for (int z = 0; z < ZMAX; z++)
                if (z < nz) s += q[z][j];
            x[j] = s;
        }
    } else {
        const int ld = kind == 0 ? a.ldq : kind == 1 ? a.ldk : a.ldv;
        const float *src = (kind == 0 ? a.q : kind == 1 ? a.k : a.v) + (size_t)t * ld + (size_t)hh * E64_QD + lane;
#pragma unroll
        for (int j = 0; j < 4; j++) x[j] = src[32 * j];
    }
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        float v = x[j];
        if (bias) v += bias[(size_t)hh * E64_QD + lane + 32 * j];
        x[j] = v;
        ss += v * v;
    }
    if (nw) {
        ss = warp_sum(ss);
        const float r = 1.0f / sqrtf(ss / (float)E64_QD + a.eps);
#pragma unroll
        for (int j = 0; j < 4; j++) x[j] = x[j] * r * nwr[j];
    }
    if (kind < 2) {
#pragma unroll
        for (int j = 0; j < 2; j++) { // pair (i, i + 64), i = lane + 32 j
            float sn, cs;
            sincosf((float)pos * ifr[j], &sn, &cs);
            cs *= a.mscale;
            sn *= a.mscale;
            const float x0 = x[j], x1 = x[j + 2];
            x[j] = x0 * cs - x1 * sn;
            x[j + 2] = x0 * sn + x1 * cs;
        }
    }
    if (kind == 0) {
        float *dst = a.q + (size_t)t * a.ldq + (size_t)hh * E64_QD + lane;
#pragma unroll
        for (int j = 0; j < 4; j++) dst[32 * j] = x[j];
    } else {
        const int32_t blk = tk.block_tables[(size_t)tk.seq[t] * tk.max_blocks + pos / a.kv_block];
        const size_t row = ((size_t)blk * a.n_kv + hh) * a.kv_block + pos % a.kv_block;
        void *cache = kind == 1 ? a.kv.k : a.kv.v;
        if (a.kv_type == CUDA_KV_F16) {
#pragma unroll
            for (int j = 0; j < 4; j++) ((__half *)cache)[row * E64_QD + lane + 32 * j] = __float2half_rn(x[j]);
        } else if (a.kv_type == CUDA_KV_BF16) {
#pragma unroll
            for (int j = 0; j < 4; j++) ((__nv_bfloat16 *)cache)[row * E64_QD + lane + 32 * j] = __float2bfloat16_rn(x[j]);
        } else {
#pragma unroll
            for (int j = 0; j < 4; j++) ((float *)cache)[row * E64_QD + lane + 32 * j] = x[j];
        }
    }
}

// From layer.cu's cuda_qkv_rope_store where it launches qkv_kernel<true> (z-split partials, float4-aligned):
// 0 = launched, -1 = not taken, > 0 = an error.
int cuda_e64_qkv(const cuda_qkv_args *a, const cuda_tokens *tk, void *stream, err *e) {
    if (!(e64_mask() & 1) || tk->T < e64_min() || tk->T > E64_MAXT || a->head_dim != E64_QD || a->n_rot != E64_QD || !a->neox ||
        !(a->kv_type == CUDA_KV_F16 || a->kv_type == CUDA_KV_BF16 || a->kv_type == CUDA_KV_F32) || a->pq.g2 || a->pk.g2 ||
        a->pv.g2 || (a->n_head + 2 * a->n_kv) % 4 || a->pq.nz > E64_QZ || a->pk.nz > E64_QZ || a->pv.nz > E64_QZ)
        return -1;
    const int heads = a->n_head + 2 * a->n_kv;
    e64_n++;
    const dim3 g((unsigned)tk->T, (unsigned)((heads + 3) / 4));
    if (a->pq.nz <= 8 && a->pk.nz <= 8 && a->pv.nz <= 8) // (Q8_0's 5: fewer registers, 768 CTAs of 64 seqs in one wave)
        CUDA_TRY(cuda_launch(e64_qkv_kernel<8>, g, dim3(128), 0, stream, *a, *tk));
    else
        CUDA_TRY(cuda_launch(e64_qkv_kernel<E64_QZ>, g, dim3(128), 0, stream, *a, *tk));
    return 0;
}

// ------------------------------------------------------------------- attention combine + o's input (mask 4)
// At 33..64 decode rows the engine runs attn_dec_combine_u<128, 16> (grid (tokens, heads) of 128 threads: the
// plan's slots of one head merged, the f32 row written; /work/prof/r12/base 7.6 us a layer at 64 sequences) and
// then cuda_mmin_prepare on those rows (prep_row_kernel<1>: one 1024-thread CTA a row reads the row back, its max,
// the forms; 3.5 us). e64_comb_kernel does both in one CTA a token: warp w merges head w (lane: d = 4 lane .. + 3,
// the combine's operations for each d in its order, so every f32 value has its bits), writes the f32 row as the
// combine does, and the block emits the forms from the same registers as prep_row_kernel<1> (1024 threads, thread
// i float4 i: mmin_emit_row<1>). A token with no slots keeps its old row (the combine leaves it, the prepare reads it).
// cuda_e64_attn_prep (engine.cu) arms e64_ap for one cuda_attention call; attn_dec_launch asks e64_comb at its
// combine launches (U = 16: plan_nsl <= 16, 33..64 sequences; U = 40 / 52: more slots, up to 16 sequences (52: SPARKD_A8's); the same U as
// the combine it replaces); if nothing took it the prepare runs as before.
#define E64_CD 128 // head_dim
static thread_local cuda_mmin *e64_ap = NULL; // the armed call's mm input (o's)
static thread_local int e64_ap_done = 0;

// x[0..3] of a slot (d = 4 lane .. + 3; 8-byte aligned: slots of D + 2 floats), zeros when !in.
__device__ __forceinline__ void e64_ldx(float (&x)[4], const float *p, bool in) {
    const float2 a = in ? *(const float2 *)p : make_float2(0.0f, 0.0f), b = in ? *(const float2 *)(p + 2) : make_float2(0.0f, 0.0f);
    x[0] = a.x; x[1] = a.y; x[2] = b.x; x[3] = b.y;
}
template <int U>
__global__ __launch_bounds__(1024) void e64_comb_kernel(const cuda_attn_args a, cuda_mmin out) {
    __shared__ float red[32];
    pdl_trigger();
    const int tile = blockIdx.x, tid = threadIdx.x, lane = tid & 31, h = tid >> 5; // warp h: head h
    const int t = a.tiles[tile].t0; // (host copies: before the wait, as the combine)
    const int ns = a.plan_nslot[tile];
    pdl_wait();
    float *orow = a.out + (size_t)t * a.ldo + (size_t)h * E64_CD + 4 * lane;
    float4 v[1];
    if (ns <= 0) {
        v[0] = ld4(orow); // (the combine writes nothing: the prepare reads the row as it is)
    } else {
        const float *part = a.work + ((size_t)t * a.n_head + h) * a.plan_nsl * (E64_CD + 2);
        float M = -INFINITY, L = 0.0f, acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int s0 = 0; s0 < ns; s0 += U) {
            // the combine's round of U slots: lane u < U holds slot s0 + u's (max, sum) (a shuffle gives them to
            // every lane), x of 4 slots at a time in registers (the combine's x[U] of 128 threads would spill at 1024)
            const int cnt = min(U, ns - s0);
            const float *p0 = part + (size_t)s0 * (E64_CD + 2);
            float mv[(U + 31) / 32], lv[(U + 31) / 32]; // slot 32 i + lane's (max, sum)
#pragma unroll
            for (int i = 0; i < (U + 31) / 32; i++) {
                const bool in = 32 * i + lane < cnt;
                mv[i] = in ? p0[(size_t)(32 * i + lane) * (E64_CD + 2) + E64_CD] : -INFINITY;
                lv[i] = in ? p0[(size_t)(32 * i + lane) * (E64_CD + 2) + E64_CD + 1] : 0.0f;
            }
            float x[4][4];
#pragma unroll
            for (int uu = 0; uu < 4; uu++) e64_ldx(x[uu], p0 + (size_t)uu * (E64_CD + 2) + 4 * lane, uu < cnt);
            float cm = M;
#pragma unroll
            for (int u = 0; u < U; u++) cm = fmaxf(cm, __shfl_sync(0xffffffffu, mv[u / 32], u % 32)); // (slots past cnt: -inf)
            if (cm == -INFINITY) continue; // (no positions yet)
            const float r = M == -INFINITY ? 0.0f : exp2f(M - cm);
#pragma unroll
            for (int k = 0; k < 4; k++) acc[k] *= r;
            L *= r;
            for (int u0 = 0; u0 < cnt; u0 += 4) {
                if (u0) {
#pragma unroll
                    for (int uu = 0; uu < 4; uu++) e64_ldx(x[uu], p0 + (size_t)(u0 + uu) * (E64_CD + 2) + 4 * lane, u0 + uu < cnt);
                }
#pragma unroll
                for (int uu = 0; uu < 4; uu++) {
                    const int u = u0 + uu; // (< U + 3: lanes past U hold -inf / 0 and are not used)
                    float mu, lu;
                    if (U <= 32 || u < 32) {
                        mu = __shfl_sync(0xffffffffu, mv[0], u & 31);
                        lu = __shfl_sync(0xffffffffu, lv[0], u & 31);
                    } else {
                        mu = __shfl_sync(0xffffffffu, mv[(U + 31) / 32 - 1], u & 31);
                        lu = __shfl_sync(0xffffffffu, lv[(U + 31) / 32 - 1], u & 31);
                    }
                    if (u0 + uu < cnt) {
                        const float w = mu == -INFINITY ? 0.0f : exp2f(mu - cm);
#pragma unroll
                        for (int k = 0; k < 4; k++) acc[k] += w * x[uu][k];
                        L += w * lu;
                    }
                }
            }
            if (cnt < U) { // the combine's slots past ns: w = 0, x = l = 0, acc += 0 * 0 (once is the same as U - cnt times)
#pragma unroll
                for (int k = 0; k < 4; k++) acc[k] = __fadd_rn(acc[k], 0.0f);
                L = __fadd_rn(L, 0.0f);
            }
            M = cm;
        }
        if (a.sinks) {
            const float sk = a.sinks[h] * 1.4426950408889634f, M2 = fmaxf(M, sk);
            const float r = M == -INFINITY ? 0.0f : exp2f(M - M2);
#pragma unroll
            for (int k = 0; k < 4; k++) acc[k] *= r;
            L = L * r + exp2f(sk - M2);
        }
        v[0] = make_float4(L > 0.0f ? acc[0] / L : 0.0f, L > 0.0f ? acc[1] / L : 0.0f, L > 0.0f ? acc[2] / L : 0.0f,
                           L > 0.0f ? acc[3] / L : 0.0f);
        *(float4 *)orow = v[0];
    }
    mmin_emit_row<1>(out, t, v, red);
}

// From attn.cu's attn_dec_launch at its attn_dec_combine_u<D, U> launches (U: that combine's): 0 = launched (instead
// of it), -1 = not armed / not taken, > 0 = an error.
int cuda_e64_comb(const cuda_attn_args *a, int U, void *stream, err *e) {
    if (!e64_ap || e64_ap_done || a->head_dim != E64_CD || (U != 16 && U != 40 && U != 52)) return -1;
    e64_n++;
    e64_ap_done = 1;
    if (U == 52) CUDA_TRY(cuda_launch(e64_comb_kernel<52>, dim3((unsigned)a->n_tiles), dim3(1024), 0, stream, *a, *e64_ap));
    else if (U == 40) CUDA_TRY(cuda_launch(e64_comb_kernel<40>, dim3((unsigned)a->n_tiles), dim3(1024), 0, stream, *a, *e64_ap));
    else CUDA_TRY(cuda_launch(e64_comb_kernel<16>, dim3((unsigned)a->n_tiles), dim3(1024), 0, stream, *a, *e64_ap));
    return 0;
}

// engine.cu, where it runs cuda_attention then cuda_mmin_prepare(aa->out, aa->ldo, m, T): both, the combine and
// the prepare in one kernel where e64_comb takes them. 0 = done, -1 = not taken (the caller runs both), > 0 = an error.
extern "C" int cuda_e64_attn_prep(const cuda_attn_args *aa, cuda_mmin *m, int T, void *stream, err *e) {
    if (!(e64_mask() & 4) || elt_old() || !aa || !m || T < e64_min() || T > E64_MAXT || !aa->plan || aa->out_q8 || aa->out_p64 ||
        aa->head_dim != E64_CD || aa->n_head * E64_CD != 4096 || aa->n_tiles != T || aa->plan_nsl > 64 || m->K != 4096 ||
        aa->ldo < 4096 || aa->ldo % 4 || ((uintptr_t)aa->out & 15) || ((uintptr_t)aa->work & 7) ||
        !(m->forms & (CUDA_MMIN_F16 | CUDA_MMIN_BF16)))
        return -1;
    m->T = T;
    e64_ap = m;
    e64_ap_done = 0;
    const int rc = cuda_attention(aa, stream, e);
    e64_ap = NULL;
    if (rc) return rc > 0 ? rc : ERR_INVALID;
    if (e64_ap_done) return 0;
    const int pr = cuda_mmin_prepare(aa->out, aa->ldo, m, T, stream, e); // (the attention took another path)
    return pr > 0 ? pr : pr ? ERR_INVALID : 0;
}
