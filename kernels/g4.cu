// g4.cu — round 12, helper g4: the gated activation of 33..64 tokens (SPARKD_G4, kernels/PERF.md
// "Round 12, helper `g4`"). Internal to kernels/ (layer.cu's elt_act calls g4_act first).
//
// Why: at 64 sequences Q4_K_M's gate+up runs on gemms2_kernel (a persistent grid of 132 CTAs over
// 192 tiles x 16 stages: ~131 of the 192 tiles are cut between two CTAs) and leaves the cut tiles'
// pieces to the activation (fz: cuda_part g2). act_cl_kernel<1, true> then took 23.9 us (serialized
// ncu, H200) for 10.3 MB read: 0.43 TB/s. Its shape: 256 CTAs of 768 threads, clusters of 4, 46
// registers a thread (one CTA an SM: ~120 CTAs resident, 2-3 waves), one float4 of gate and of up a
// thread, each found through part_ld4's 64-bit divisions (tile -> first / last CTA -> slot, ~5 a
// load) and a loop whose loads issue one after the other. So each thread runs a long dependent
// chain (divisions -> load -> load -> sum -> two cluster barriers -> stores) with almost nothing in
// flight.
//
// What (SPARKD_G4=2, the default): g4_act_kernel, the same values and forms as act_row_kernel /
// act_cl_kernel (bit-identical: the same sums in the same order, silu(g) * u as act_f, the row
// exponent from the max over the whole row: max is exact in any order), on clusters of CL CTAs a
// row (SPARKD_G4_CL; default 8: run 0's kbench, faster than 4 at every T) of <= 256 threads (ffn
// 12288: NV = 2 float4s a thread x 192 threads at CL 8, 3 x 256 at CL 4): at 64 tokens 512 CTAs, all
// resident at once. A thread computes every address first in 32-bit integers (the host checks
// N x G < 2^31 and that a tile spans at most three CTAs' ranges), then issues all of its loads (gate
// and up, every piece of a cut tile) before it sums any.
// Tokens SPARKD_G4_MIN (default 2) .. 64 (8 sequences at 32K: act_cl_kernel 8.4 us a layer for 8 rows);
// plain gate / up rows (no partials: Q8_0's act_row_kernel<4> at 64 sequences, 8 us) take it as well;
// nz-style partials (gemms_kernel's K split) do not (act_cl_kernel as before).
// SPARKD_G4=3: the same with one full cluster barrier instead of two (b1 below). SPARKD_G4=0:
// layer.cu's kernels exactly as before.
// Run 0 (H200): 64 seq Q4_K_M 7,584.7 -> 8,041.9 tok/s (+6.0%), 32 seq +3.7%, 32K 8 seq +1.4%, Q8_0 64
// seq -0.4%; bitwise rows ok. (SPARKD_G4_MT2, gemms2 with two m16 tiles a warp at 33..64, lost: gate+up
// +5%, the Q6_K head +45%, the model -5%; removed.)
#include "cuda_kern.h"

#include <cooperative_groups.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz_part.cuh"
#include "kern_util.cuh"
#include "mmin.cuh"
#include "rowfuse.cuh"

// A product's deferred gemms2 pieces (cuda_part with g2 = 1) in 32-bit form; on = 0: plain rows.
struct g4_part {
    const float *p; // ws: (2 G, T, ld) f32, slot 0 / 1 of CTA c at (2 c + slot)
    int on, G, N, nst, T, ld, tile0;
};

// layer.cu's act_f, the same expression (bit-identical values).
__device__ __forceinline__ float g4_act_f(float g, int act) {
    if (act == CUDA_ACT_GELU_TANH) {
        const float c = 0.7978845608028654f; // sqrt(2/pi)
        return 0.5f * g * (1.0f + tanhf(c * (g + 0.044715f * g * g * g)));
    }
    return g / (1.0f + expf(-g));
}

// Where float4 k of token t lies: a (the value, or the first piece), m (the middle piece: a tile over
// three CTAs' ranges) and b (the last piece), NULL where absent. As part_ld4 with g2: a cut tile is
// summed 0 + first (+ middle) + last in CTA order; every CTA after the first begins its range inside
// the tile (slot 0).
__device__ __forceinline__ void g4_addr(const g4_part &P, const float *y, int t, int k, const float *&a, const float *&m,
                                        const float *&b) {
    const int tile = P.tile0 + k / P.ld, kr = k - (k / P.ld) * P.ld;
    const int c0 = ((tile * P.nst + 1) * P.G - 1) / P.N, c1 = (((tile + 1) * P.nst) * P.G - 1) / P.N;
    m = NULL;
    if (c0 == c1) {
        a = y + k;
        b = NULL;
        return;
    }
    const int s0 = (c0 * P.N / P.G) / P.nst == tile ? 0 : 1;
    a = P.p + ((size_t)(2 * c0 + s0) * P.T + t) * P.ld + kr;
    if (c1 - c0 == 2) m = P.p + ((size_t)(2 * (c0 + 1)) * P.T + t) * P.ld + kr;
    b = P.p + ((size_t)(2 * c1) * P.T + t) * P.ld + kr;
}

// Row t = blockIdx.x / CL; CTA r of its cluster takes elements [r ffn / CL, (r + 1) ffn / CL), thread
// i float4s k0 / 4 + j blockDim.x + i (j < NV). PT: gate / up from gemms2 pieces.
// b1 (SPARKD_G4=3): one full cluster barrier instead of two: every CTA writes its block max into each
// CTA's cm[rank] (distributed shared memory) after a split barrier begun at entry (arrive.relaxed) has
// completed (every CTA of the cluster has started: its shared memory may be written), then one
// barrier.cluster arrive (release) / wait (acquire), then each CTA reads its own cm[0..CL): no remote
// read after the barrier, so no second barrier before a CTA may exit.
template <int NV, bool PT>
__global__ __launch_bounds__(256) void g4_act_kernel(const float *gate, const float *up, int ld, int act, cuda_mmin out,
                                                     g4_part pg, g4_part pu, int b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    __shared__ float red[32];
    __shared__ float cmax, rmax, cm[8];
    if (b1) asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
    namespace cg = cooperative_groups;
    cg::cluster_group cl = cg::this_cluster();
    const int CL = (int)cl.num_blocks(), r = (int)cl.block_rank();
    const int t = blockIdx.x / CL, nt = blockDim.x, tid = threadIdx.x, k0 = r * (out.K / CL);
    const float *g = gate + (size_t)t * ld, *u = up + (size_t)t * ld;
    pdl_trigger();
    const float *ga[NV], *gm[NV], *gb[NV], *ua[NV], *um[NV], *ub[NV];
#pragma unroll
    for (int j = 0; j < NV; j++) {
        const int k = k0 + 4 * (j * nt + tid);
        if (PT) {
            g4_addr(pg, g, t, k, ga[j], gm[j], gb[j]);
            g4_addr(pu, u, t, k, ua[j], um[j], ub[j]);
        } else {
            ga[j] = g + k;
            ua[j] = u + k;
            gm[j] = gb[j] = um[j] = ub[j] = NULL;
        }
    }
    pdl_wait();
    const float4 z4 = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float4 gv[NV], uv[NV], g2[NV], u2[NV], g3[NV], u3[NV];
#pragma unroll
    for (int j = 0; j < NV; j++) {
        gv[j] = ld4(ga[j]);
        uv[j] = ld4(ua[j]);
        if (PT) {
            g2[j] = gb[j] ? ld4(gb[j]) : z4;
            u2[j] = ub[j] ? ld4(ub[j]) : z4;
            g3[j] = gm[j] ? ld4(gm[j]) : z4;
            u3[j] = um[j] ? ld4(um[j]) : z4;
        }
    }
    float4 v[NV];
    float a = 0.0f;
#pragma unroll
    for (int j = 0; j < NV; j++) {
        float4 G = gv[j], U = uv[j];
        if (PT) { // (0 + first) [+ middle] + last, part_ld4's order
            if (gb[j]) {
                G = make_float4(0.0f + G.x, 0.0f + G.y, 0.0f + G.z, 0.0f + G.w);
                if (gm[j]) G = make_float4(G.x + g3[j].x, G.y + g3[j].y, G.z + g3[j].z, G.w + g3[j].w);
                G = make_float4(G.x + g2[j].x, G.y + g2[j].y, G.z + g2[j].z, G.w + g2[j].w);
            }
            if (ub[j]) {
                U = make_float4(0.0f + U.x, 0.0f + U.y, 0.0f + U.z, 0.0f + U.w);
                if (um[j]) U = make_float4(U.x + u3[j].x, U.y + u3[j].y, U.z + u3[j].z, U.w + u3[j].w);
                U = make_float4(U.x + u2[j].x, U.y + u2[j].y, U.z + u2[j].z, U.w + u2[j].w);
            }
        }
        v[j] = make_float4(g4_act_f(G.x, act) * U.x, g4_act_f(G.y, act) * U.y, g4_act_f(G.z, act) * U.z,
                           g4_act_f(G.w, act) * U.w);
        a = fmaxf(a, amax4(v[j]));
    }
    // the row exponent: max over the cluster's CTAs (distributed shared memory), as cl_emit_row
    a = block_max(a, red);
    float rm;
    if (b1) {
        asm volatile("barrier.cluster.wait.aligned;\n" ::: "memory"); // (every CTA has started)
        if (tid < CL) *cl.map_shared_rank(&cm[r], tid) = a;
        cl.sync(); // (sm_90a SASS: MEMBAR.ALL.GPU + UCGABAR_ARV / _WAIT + CCTL.IVALL, as each cl.sync of =2)
        rm = cm[0];
        for (int i = 1; i < CL; i++) rm = fmaxf(rm, cm[i]); // (max: exact in any order)
    } else {
        if (tid == 0) cmax = a;
        cl.sync();
        if (tid < 32) {
            float m = tid < CL ? *cl.map_shared_rank(&cmax, tid) : -INFINITY;
            m = warp_max(m);
            if (tid == 0) rmax = m;
        }
        cl.sync(); // (also: no CTA leaves while another reads its cmax)
        rm = rmax;
    }
    const int ex = mmin_exponent(rm);
    const float inv = ldexpf(1.0f, -ex);
    if (r == 0 && tid == 0) out.tscale[t] = ldexpf(1.0f, ex);
#pragma unroll
    for (int j = 0; j < NV; j++) mmin_emit4(out, t, k0 + 4 * (j * nt + tid), v[j], true, inv);
#endif
}

// ------------------------------------------------------------------------------ host
static int g4_v = -2;   // SPARKD_G4 (cuda_g4_set): 0 off, 2 the activation kernel (default), 3 the same with one cluster barrier
static long g4_launches = 0;
extern "C" void cuda_g4_set(int v) { g4_v = v < 0 ? -2 : v; } // tests, benches; -1: as SPARKD_G4 says
extern "C" long cuda_g4_launches(void) { return g4_launches; }
static int g4_min_v = -1, g4_cl_v = -1;
extern "C" void cuda_g4_min_set(int t) { g4_min_v = t; }   // tests, benches: fewest tokens (-1: SPARKD_G4_MIN)
extern "C" void cuda_g4_cl_set(int cl) { g4_cl_v = cl; }   // tests, benches: CTAs a row (-1: SPARKD_G4_CL)
static int g4_mode() {
    if (g4_v == -2) g4_v = cuda_env_int("SPARKD_G4", 2);
    return g4_v;
}
static bool g4_dev_ok() {
    static int ok = -1;
    if (ok < 0) {
        int dev = 0, cl = 0, major = 0;
        ok = cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetAttribute(&cl, cudaDevAttrClusterLaunch, dev) == cudaSuccess &&
             cl && cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9;
        cudaGetLastError();
    }
    return ok == 1;
}
static bool g4_a16(const void *p) { return ((uintptr_t)p & 15) == 0; }
// cuda_part -> g4_part; false when this kernel cannot read it (nz-style partials, 32-bit overflow,
// a tile over more than three CTAs' ranges).
static bool g4_part_of(const cuda_part &P, int T, g4_part *o) {
    memset(o, 0, sizeof *o);
    if (!part_on(P)) return true;
    if (!P.g2 || P.G < 1 || P.nst < 1 || P.ld < 4 || P.ld % 4 || P.zs != T || !g4_a16(P.p)) return false;
    // 32-bit products; at most three pieces a tile (a middle CTA's whole range inside the tile: (pieces - 2)
    // ranges of >= floor(N / G) stages within nst - 2)
    const long long per = P.N / P.G;
    if ((P.N + 1) * (long long)P.G >= (1ll << 31) || per < 1 || (P.nst > 2 && 2 + (P.nst - 2) / per > 3)) return false;
    o->p = P.p;
    o->on = 1;
    o->G = P.G;
    o->N = (int)P.N;
    o->nst = P.nst;
    o->T = T;
    o->ld = P.ld;
    o->tile0 = P.tile0;
    return true;
}

template <int NV>
static cudaError_t g4_launch_nv(bool pt, int T, int CL, int th, void *stream, const float *gate, const float *up, int ld, int act,
                                const cuda_mmin &out, const g4_part &pg, const g4_part &pu, int b1) {
    return cuda_launch_cluster(pt ? g4_act_kernel<NV, true> : g4_act_kernel<NV, false>, dim3((unsigned)(T * CL)),
                               dim3((unsigned)CL), dim3((unsigned)th), 0, stream, gate, up, ld, act, out, pg, pu, b1);
}

// layer.cu's elt_act (the F16 / BF16 forms): 0 = launched, -1 = not taken (the caller goes on as
// before), > 0 = an error (cuda_fail's code).
int cuda_g4_act(const float *gate, const float *up, int ld, int T, int ffn, int act, const cuda_mmin &out, const cuda_part &pgp,
               const cuda_part &pup, void *stream, err *e) {
    static int off = 0; // a cluster launch the device refused: not again
    if (off || !g4_mode()) return -1;
    const int tmin = g4_min_v >= 0 ? g4_min_v : cuda_env_int("SPARKD_G4_MIN", 2);
    int CL = g4_cl_v > 0 ? g4_cl_v : cuda_env_int("SPARKD_G4_CL", 0);
    if (CL != 2 && CL != 4 && CL != 8) CL = 8; // (run 0's kbench: 8 faster than 4 at every T, 2..64)
    const int b1 = g4_mode() == 3 ? 1 : 0;
    if (T < (tmin < 2 ? 2 : tmin) || T > 64 || !(out.forms & (CUDA_MMIN_F16 | CUDA_MMIN_BF16)) || ffn % (32 * CL) ||
        out.K != ffn || ld % 4 || !g4_a16(gate) || !g4_a16(up) || !g4_dev_ok())
        return -1;
    g4_part pg, pu;
    if (!g4_part_of(pgp, T, &pg) || !g4_part_of(pup, T, &pu) || pg.on != pu.on) return -1;
    if (pg.on && (pg.G != pu.G || pg.N != pu.N || pg.nst != pu.nst || pg.ld != pu.ld)) return -1;
    // float4s a CTA, split as NV a thread over th <= 256 threads (th % 32 == 0)
    const int f4 = ffn / CL / 4;
    int nv = 0, th = 0;
    for (int n = 1; n <= 4 && !nv; n++)
        if (f4 % n == 0 && f4 / n <= 256 && (f4 / n) % 32 == 0) nv = n, th = f4 / n;
    if (!nv) return -1;
    const bool pt = pg.on != 0;
    cudaError_t rc;
    switch (nv) {
    case 1: rc = g4_launch_nv<1>(pt, T, CL, th, stream, gate, up, ld, act, out, pg, pu, b1); break;
    case 2: rc = g4_launch_nv<2>(pt, T, CL, th, stream, gate, up, ld, act, out, pg, pu, b1); break;
    case 3: rc = g4_launch_nv<3>(pt, T, CL, th, stream, gate, up, ld, act, out, pg, pu, b1); break;
    default: rc = g4_launch_nv<4>(pt, T, CL, th, stream, gate, up, ld, act, out, pg, pu, b1); break;
    }
    if (rc == cudaSuccess) {
        g4_launches++;
        return 0;
    }
    const int f = cuda_cluster_refused(rc, stream, "cudaLaunchKernelEx (g4 act cluster)", __FILE__, __LINE__, e);
    if (f > 0) return f;
    fprintf(stderr, "g4: activation cluster launch failed (%s): layer.cu's kernels from now on\n", cudaGetErrorString(rc));
    off = 1;
    return -1;
}
