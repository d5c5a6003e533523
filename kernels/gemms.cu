// gemms.cu — Y = X W^T for small batches (2 <= T <= 32 tokens: batched decode) at precision
// fast, on the f16 tensor cores (mma.m16n8k16, f32 accumulation), built to stream the
// weights once at the bandwidth wall (kernels/PERF.md "Round 6, helper hsmall").
//
// Numerics (the same recipe as the T >= 33 f16 kernel of precision fast): the A fragment is
// f16(s * code + m) built in registers from the codes (qfmt.cuh quarter_pair gives the
// exact f16 code, one HFMA2 / HMUL2 per pair applies the group's scale s and min m, both
// rounded to f16 once: they are exact f32 products of f16 and small integers, so f16 math
// gives the same bits); B is the input's f16 `hi` form (cuda_mmin.hi: each token row scaled
// by 2^-e_t, the result multiplied by tscale[t] = 2^e_t); f32 accumulation over the whole of
// K; K split over CTAs sums its partials in a fixed order (splitk_reduce: deterministic).
//
// Work: a CTA of 8 warps owns 128 rows (16 a warp: one m16 tile) and a range of K in units
// of 128 elements; every warp runs the whole range. The CTA's slice of the input (T tokens x
// its K range, f16) is copied into shared memory once, after pdl_wait(); the weights go from
// global memory straight into registers through a ring of R units per lane whose first loads
// are issued before pdl_wait() (they overlap the previous kernel's tail under PDL).
// In a unit (two 64-element chunks) lane (g, c) holds 32 code bytes of rows g and g + 8 (Q8_0:
// quarter c of both chunks, two 16-byte loads a row; 4-bit codes: quarters 2(c & 1), +1 of
// chunk c >> 1, one 16-byte load a row, + 8 bytes of Q6_K's 2-bit plane), so each load
// instruction of a warp reads 64 contiguous bytes of each of 8 rows. The MMA's k order inside a unit is the
// lane's own (positions 32c..32c+31 of the unit, P64 order as stored), and the input slice
// in shared memory is read in that same order (a 16-byte swizzle keeps its LDS.128
// conflict-free), so no data moves between lanes.
#include "cuda_kern.h"

#include <cooperative_groups.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz_part.cuh"
#include "kern_util.cuh"
#include "qfmt.cuh"

#define GS_SMEM_MIN (48 * 1024)    // input slice per CTA at least (gs_smem_cap)
#define GS_MAX_T 32
#define G2_MAX_T 64                // gemms2_kernel: up to 8 token tiles (SPARKD_HS2_MAX_T, default 32)
#define GS_FIRST 2                 // units of the input slice waited for before the loop starts

struct gemms_mat {
    const uint8_t *codes, *hi, *meta;
    uint64_t code_pitch, hi_pitch, meta_pitch;
    float *y;
    int rows, ldy, mtiles;
};
struct gemms_params {
    gemms_mat m[CUDA_MM_MAX_MATS];
    int n, K, T, accumulate;
    int ksplit;       // CTAs along K (grid.y); > 1: partials summed in a fixed order, by
    int cluster;      //   0 (default): ws + gemms_reduce_kernel, 1: the ksplit CTAs of a row tile
                      //   (a thread-block cluster) through distributed shared memory, 2: ws and the
                      //   tile's last CTA to finish (counter cnt[tile]) sums them
    int upc;          // 128-element units of K per CTA (the last split may have fewer)
    int pitch;        // bytes per token row of the shared input slice (upc * 256 + 16 or 32)
    float *ws;        // (ksplit, T, ws_rows) f32
    int ws_rows;      // rows of all matrices
    int row0[CUDA_MM_MAX_MATS];
    uint32_t ml, mh;      // 0x64006400, 0x54005400 (q4k_pair, q6k_pair), in registers
    const uint16_t *xh;   // (T, K) f16 bits, P64 order: x * 2^-e_t (hi form)
    const float *tscale;  // (T) 2^e_t
    // gemms2_kernel only: ring stages, 128-row tiles of all matrices, CTAs, units a stage
    int stages, ntiles, grid, unit, trows; // trows: rows a tile (128 MT)
    int c2;                                // two CTAs an SM (host side: which kernel)
    cuda_defer *defer;                     // host side: cuda_mm_args.defer (fz: no reduce launch)
};

// Ring depth (units in flight per lane beyond the one being computed; R + 1 slots): within 128
// registers (2 CTAs an SM) without spills; per SM 32-64 KB of weights in flight.
template <uint32_t F, int NT> struct gs_cfg {
    static constexpr int R = NT == 4 ? 2 : F == QT_Q6_K && NT == 2 ? 2 : 3;
};

// One unit's raw loads for a lane: rows g and g + 8 (r = 0, 1).
//   Q8_0: c[r][0..1] quarter c of the unit's two chunks, m[r].x/.y their four f16 d
//   Q4_K: c[r][0] the 32 codes (16 bytes), m[r] the superblock head (d, dmin, scales[12])
//   Q6_K: c[r][0] the low nibbles, m[r].x = d (+ pad), .y = the 4 int8 scales of the lane's
//         chunk, .z/.w = the 2-bit plane words of its two quarters
template <uint32_t F> struct gs_slot {
    uint4 c[2][F == QT_Q8_0 ? 2 : 1];
    uint4 m[2];
};

template <uint32_t F>
__device__ __forceinline__ void gs_load(gs_slot<F> &s, const uint8_t *const *cr, const uint8_t *const *hr,
                                        const uint8_t *const *mr, int u, int c) {
    const int ci = 2 * u + (c >> 1); // the lane's chunk
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if constexpr (F == QT_Q8_0) { // quarter c of both chunks, their four f16 d
            s.c[r][0] = __ldg((const uint4 *)(cr[r] + (size_t)u * 128 + 16 * c));
            s.c[r][1] = __ldg((const uint4 *)(cr[r] + (size_t)u * 128 + 64 + 16 * c));
            const uint2 d = __ldg((const uint2 *)(mr[r] + (size_t)u * 8));
            s.m[r].x = d.x;
            s.m[r].y = d.y;
        } else {
            s.c[r][0] = __ldg((const uint4 *)(cr[r] + (size_t)u * 64 + 16 * c));
            if constexpr (F == QT_Q4_K) {
                s.m[r] = __ldg((const uint4 *)(mr[r] + (size_t)(u >> 1) * 16));
            } else { // Q6_K
                const uint8_t *b = mr[r] + (size_t)(u >> 1) * 20;
                s.m[r].x = __ldg((const unsigned int *)b);
                s.m[r].y = __ldg((const unsigned int *)(b + 4 + 4 * (ci & 3)));
                const uint2 h = __ldg((const uint2 *)(hr[r] + (size_t)u * 32 + 8 * c));
                s.m[r].z = h.x;
                s.m[r].w = h.y;
            }
        }
    }
}

__device__ __forceinline__ uint32_t h2u(__half2 v) { return *(const uint32_t *)&v; }
__device__ __forceinline__ __half2 u2h(uint32_t v) { return *(const __half2 *)&v; }
__device__ __forceinline__ uint32_t h2mul(uint32_t a, uint32_t b) { return h2u(__hmul2(u2h(a), u2h(b))); }
__device__ __forceinline__ uint32_t h2fma(uint32_t a, uint32_t b, uint32_t c) {
    return h2u(__hfma2(u2h(a), u2h(b), u2h(c)));
}
// two bytes b0, b1 of x (selector 0x4140: bytes 0, 1; 0x4342: bytes 2, 3) as f16 {b0, b1},
// minus `sub` (f16 bits of 1024 + offset): exact small integers
__device__ __forceinline__ uint32_t bytes_h2(uint32_t x, uint32_t sel, uint16_t sub) {
    const uint32_t h = __byte_perm(x, 0x64646464u, sel);
    return h2u(__hsub2(u2h(h), __half2half2(__ushort_as_half(sub))));
}

// The lane's f16x2 scales (both halves equal) per step group of one unit: s[r][k], k =
// step >> 1 (Q8_0: the two chunks' groups of 32), (step >> 1) & 1 (Q4_K: the chunk's two
// groups of 32) or step & 3 (Q6_K: groups of 16); Q4_K's mins m[r][k] (negated: weight =
// s * code + m).
template <uint32_t F> struct gs_sc {
    uint32_t s[2][F == QT_Q4_K ? 2 : 4];
    uint32_t m[2][F == QT_Q4_K ? 2 : 1];
};

template <uint32_t F>
__device__ __forceinline__ void gs_scales(gs_sc<F> &o, const gs_slot<F> &s, int q /* chunk & 3 */) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const uint4 h = s.m[r];
        if constexpr (F == QT_Q8_0) {
            o.s[r][0] = __byte_perm(h.x, 0, 0x1010);
            o.s[r][1] = __byte_perm(h.x, 0, 0x3232);
            o.s[r][2] = __byte_perm(h.y, 0, 0x1010);
            o.s[r][3] = __byte_perm(h.y, 0, 0x3232);
        } else if constexpr (F == QT_Q4_K) {
            // groups 2q, 2q + 1 of the superblock (quant.c kscale_min), two at a time in
            // the byte pairs of 16-bit values
            const uint32_t sel = (q & 1) ? 0x4432u : 0x4410u; // bytes 2, 3 or 0, 1; zeros above
            const uint32_t A = __byte_perm(h.y, 0, sel);      // scales[0..3]
            const uint32_t B = __byte_perm(h.z, 0, sel);      // scales[4..7]
            const uint32_t Cc = __byte_perm(h.w, 0, sel);     // scales[8..11]
            const uint32_t hm = 0u - (uint32_t)(q >> 1);       // groups 4..7: all ones
            const uint32_t sc = (((Cc & 0x0f0fu) | ((A >> 2) & 0x3030u)) & hm) | (A & 0x3f3fu & ~hm);
            const uint32_t mn = ((((Cc >> 4) & 0x0f0fu) | ((B >> 2) & 0x3030u)) & hm) | (B & 0x3f3fu & ~hm);
            const uint32_t sv = h2mul(__byte_perm(h.x, 0, 0x1010), bytes_h2(sc, 0x4140, 0x6400)); // d * sc
            const uint32_t mv = h2mul(__byte_perm(h.x, 0, 0x3232), bytes_h2(mn, 0x4140, 0x6400)) ^ 0x80008000u; // -dmin * mn
            o.s[r][0] = __byte_perm(sv, 0, 0x1010);
            o.s[r][1] = __byte_perm(sv, 0, 0x3232);
            o.m[r][0] = __byte_perm(mv, 0, 0x1010);
            o.m[r][1] = __byte_perm(mv, 0, 0x3232);
        } else { // Q6_K: d * int8 scale of the chunk's four groups of 16
            const uint32_t w = h.y ^ 0x80808080u;
            const uint32_t dd = __byte_perm(h.x, 0, 0x1010);
            const uint32_t v01 = h2mul(dd, bytes_h2(w, 0x4140, 0x6480)); // - (1024 + 128)
            const uint32_t v23 = h2mul(dd, bytes_h2(w, 0x4342, 0x6480));
            o.s[r][0] = __byte_perm(v01, 0, 0x1010);
            o.s[r][1] = __byte_perm(v01, 0, 0x3232);
            o.s[r][2] = __byte_perm(v23, 0, 0x1010);
            o.s[r][3] = __byte_perm(v23, 0, 0x3232);
        }
    }
}

// Q4_K pair j of a quarter (qfmt.cuh quarter_pair's value, fewer instructions): the nibbles
// at bits 4k, 16 + 4k of word j >> 2 (k = j & 3) as f16 1024 + q (k even: mantissa bits 0-3,
// magic 0x6400) or 64 + q (k odd: bits 4-7, magic 0x5400, ulp 1/16), minus 1024 or 64: exact.
// The magic words come in registers (ml, mh: kernel parameters) so that mask-and-or is one
// LOP3; words 2, 3 of a byte pair need one shift by 8 per word.
__device__ __forceinline__ uint32_t q4k_pair(const quarter &r, int j, uint32_t ml, uint32_t mh) {
    const uint32_t w = j < 4 ? r.q.x : r.q.y, k = j & 3, v = k >= 2 ? w >> 8 : w;
    const uint32_t h = (k & 1) ? (v & 0x00f000f0u) | mh : (v & 0x000f000fu) | ml;
    return h2u(__hsub2(u2h(h), __half2half2(__ushort_as_half((k & 1) ? 0x5400 : 0x6400))));
}

// Q6_K pair j the same way, with the 2-bit plane's bits of the pair (bits 2b, 2b + 1 and 16 +
// 2b.. of hb, b = 4 (j >> 2) + (j & 3)) shifted next to the nibble (bits 4-5 under magic
// 0x6400, bits 8-9 under 0x5400), minus 1024 + 32 or 64 + 32: the code minus 32, exact.
__device__ __forceinline__ uint32_t q6k_pair(const quarter &r, int j, uint32_t ml, uint32_t mh) {
    const uint32_t w = j < 4 ? r.q.x : r.q.y, k = j & 3, v = k >= 2 ? w >> 8 : w;
    const int sh = ((k & 1) ? 8 : 4) - 2 * (4 * (j >> 2) + (int)k);
    const uint32_t hs = sh >= 0 ? r.hb << sh : r.hb >> -sh;
    const uint32_t h = (k & 1) ? (v & 0x00f000f0u) | ((hs & 0x03000300u) | mh) : (v & 0x000f000fu) | ((hs & 0x00300030u) | ml);
    return h2u(__hsub2(u2h(h), __half2half2(__ushort_as_half((k & 1) ? 0x5600 : 0x6420))));
}

__device__ __forceinline__ void gs_mma(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                 "{%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// One unit of a lane: 8 k16 steps x NT token tiles x MT m16 tiles (m-tile mt: the rows of
// slot s[mt], accumulators acc[mt]; the B fragments of a step are read once for all MT).
// bs: the lane's input bytes of this unit in shared memory (token g of tile 0, + 64c), pitch:
// bytes per token row, sw: the swizzle.
template <uint32_t F, int NT, int MT>
__device__ __forceinline__ void gs_unit_m(const gs_slot<F> *s, int q, const uint8_t *bs, int pitch, int sw,
                                          uint32_t ml, uint32_t mh, float (*acc)[NT][4]) {
    gs_sc<F> sc[MT];
    quarter qr[MT][2][2]; // [m-tile][row][quarter of the lane]
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        gs_scales<F>(sc[mt], s[mt], q);
#pragma unroll
        for (int r = 0; r < 2; r++) {
            if constexpr (F == QT_Q8_0) {
                qr[mt][r][0].q = s[mt].c[r][0];
                qr[mt][r][1].q = s[mt].c[r][1];
            } else {
                qr[mt][r][0].q.x = s[mt].c[r][0].x;
                qr[mt][r][0].q.y = s[mt].c[r][0].y;
                qr[mt][r][1].q.x = s[mt].c[r][0].z;
                qr[mt][r][1].q.y = s[mt].c[r][0].w;
                if constexpr (F == QT_Q6_K) {
                    qr[mt][r][0].hb = s[mt].m[r].z;
                    qr[mt][r][1].hb = s[mt].m[r].w;
                }
            }
        }
    }
#pragma unroll
    for (int i = 0; i < 4; i++) { // 16-byte block i of the lane's 64 input bytes: steps 2i, 2i + 1
        uint4 bv[NT];
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
            bv[nt] = *(const uint4 *)(bs + nt * 8 * pitch + (F == QT_Q8_0 ? 16 * (i & 1) + 128 * (i >> 1) : (16 * i) ^ sw));
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int st = 2 * i + h, Q = st >> 2, j = 2 * (st & 3);
            const int k = F == QT_Q6_K ? (st & 3) : F == QT_Q8_0 ? st >> 1 : ((st >> 1) & 1);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                uint32_t a[4];
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    uint32_t p0, p1;
                    if constexpr (F == QT_Q4_K) {
                        p0 = q4k_pair(qr[mt][r][Q], j, ml, mh);
                        p1 = q4k_pair(qr[mt][r][Q], j + 1, ml, mh);
                    } else if constexpr (F == QT_Q6_K) {
                        p0 = q6k_pair(qr[mt][r][Q], j, ml, mh);
                        p1 = q6k_pair(qr[mt][r][Q], j + 1, ml, mh);
                    } else {
                        p0 = quarter_pair<F>(qr[mt][r][Q], j);
                        p1 = quarter_pair<F>(qr[mt][r][Q], j + 1);
                    }
                    if constexpr (F == QT_Q4_K) {
                        a[r] = h2fma(p0, sc[mt].s[r][k], sc[mt].m[r][k]);
                        a[2 + r] = h2fma(p1, sc[mt].s[r][k], sc[mt].m[r][k]);
                    } else {
                        a[r] = h2mul(p0, sc[mt].s[r][k]);
                        a[2 + r] = h2mul(p1, sc[mt].s[r][k]);
                    }
                }
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
                    gs_mma(acc[mt][nt], a, h ? bv[nt].z : bv[nt].x, h ? bv[nt].w : bv[nt].y);
            }
        }
    }
}
template <uint32_t F, int NT>
__device__ __forceinline__ void gs_unit(const gs_slot<F> &s, int q, const uint8_t *bs, int pitch, int sw,
                                        uint32_t ml, uint32_t mh, float (*acc)[4]) {
    gs_unit_m<F, NT, 1>(&s, q, bs, pitch, sw, ml, mh, (float (*)[NT][4])acc);
}

// Copies units [ua, ub) of the CTA's input slice (all NT * 8 token rows; tokens past T as
// zeros) into shared memory as one cp.async group: token t, unit ur, 16-byte block bk
// (positions 8bk..8bk+7) at t * pitch + ur * 256 + 16 * sb, sb = bk (Q8_0; pitch % 128 = 16)
// or (bk & 12) | ((bk & 3) ^ (bk >> 3)) (4-bit codes; pitch % 128 = 32): the LDS.128 of
// gs_unit hit 8 different 16-byte bank groups in each quarter warp.
template <uint32_t F, int NT>
__device__ __forceinline__ void gs_fill(uint8_t *smem, const gemms_params &p, int ubeg, int ua, int ub) {
    const int per_tok = (ub - ua) * 16, pieces = NT * 8 * per_tok;
    for (int pc = threadIdx.x; pc < pieces; pc += blockDim.x) {
        const int t = pc / per_tok, rem = pc - t * per_tok, ur = ua + (rem >> 4), bk = rem & 15;
        const bool v = t < p.T;
        const uint16_t *src = v ? p.xh + (size_t)t * p.K + (size_t)(ubeg + ur) * 128 + 8 * bk : p.xh;
        const int sb = F == QT_Q8_0 ? bk : (bk & 12) | ((bk & 3) ^ ((bk >> 3) & 1));
        const unsigned dst = (unsigned)__cvta_generic_to_shared(smem + t * p.pitch + ur * 256 + 16 * sb);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(v ? 16 : 0));
    }
    asm volatile("cp.async.commit_group;\n" ::);
}

// Mode 2's tile counters: static device memory (zero at module load, one copy a device; no
// allocation, graph capture safe), zero between launches (a tile's last CTA resets its own).
// Split launches on one device must not overlap (one stream: PDL's wait precedes the counting).
#define GS_CNT 16384
__device__ int g_gs_cnt[GS_CNT];

// Mode 2's end of a K-split CTA (after its partials are in ws): the tile's last CTA to arrive
// sums the ks partials in z order (deterministic) and stores them. Not inlined (scalars only:
// no copy of the parameters), so the main loop's register allocation stays as without it.
//   cnt: the tile's counter; ws: the tile's first row in partial plane z = 0 of token 0
//   (planes T * ws_rows apart, tokens ws_rows apart); y: its first row of token 0 (ldy apart)
__device__ __noinline__ void gs_fixup(int *cnt, int ks, int T, int ws_rows, const float *ws, float *y, int ldy,
                                      int nrows, int accumulate, int tile_rows) {
    __shared__ int s_last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        s_last = atomicAdd(cnt, 1) == ks - 1;
        if (s_last) *cnt = 0; // every split has counted: ready for the next launch
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    for (int e = threadIdx.x; e < T * tile_rows; e += blockDim.x) {
        const int tk = e / tile_rows, r = e % tile_rows;
        if (r >= nrows) continue;
        const float *w = ws + (size_t)tk * ws_rows + r;
        float sum = 0.0f;
        for (int z = 0; z < ks; z++) sum += __ldcg(w + (size_t)z * T * ws_rows);
        float *o = y + (size_t)tk * ldy + r;
        *o = accumulate ? *o + sum : sum;
    }
}

template <uint32_t F, int NT, int W>
__global__ __launch_bounds__(W * 32, W == 8 ? 2 : 1) void gemms_kernel(const gemms_params p) {
    constexpr int ROWS = 16 * W; // rows of the CTA
    constexpr int R = gs_cfg<F, NT>::R;
    extern __shared__ __align__(16) uint8_t smem[];
    pdl_trigger();
    int b = blockIdx.x, mi = 0;
    while (mi + 1 < p.n && b >= p.m[mi].mtiles) b -= p.m[mi++].mtiles;
    const gemms_mat &M = p.m[mi];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
    const int nu = p.K >> 7;
    const int ubeg = blockIdx.y * p.upc, n = min(nu - ubeg, p.upc);
    const int rg = b * ROWS + warp * 16 + g, rg8 = rg + 8;
    const uint8_t *cr[2], *hr[2], *mr[2];
    {
        const int r0 = min(rg, M.rows - 1), r1 = min(rg8, M.rows - 1);
        cr[0] = M.codes + (uint64_t)r0 * M.code_pitch;
        cr[1] = M.codes + (uint64_t)r1 * M.code_pitch;
        hr[0] = M.hi + (uint64_t)r0 * M.hi_pitch;
        hr[1] = M.hi + (uint64_t)r1 * M.hi_pitch;
        mr[0] = M.meta + (uint64_t)r0 * M.meta_pitch;
        mr[1] = M.meta + (uint64_t)r1 * M.meta_pitch;
    }
    // the weights of the first R units: constant, so before the wait
    gs_slot<F> ring[R + 1]; // slot i % (R + 1) holds unit i
#pragma unroll
    for (int i = 0; i < R; i++)
        if (i < n) gs_load<F>(ring[i], cr, hr, mr, ubeg + i, c);
    pdl_wait();
    // the input slice, in two groups: units [0, g1) first (the loop starts when they are in),
    // the rest behind them (waited for before unit g1)
    const int g1 = min(n, GS_FIRST);
    gs_fill<F, NT>(smem, p, ubeg, 0, g1);
    gs_fill<F, NT>(smem, p, ubeg, g1, n);
    asm volatile("cp.async.wait_group 1;\n" ::);
    __syncthreads();
    float acc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
    const uint8_t *bs = smem + g * p.pitch + (F == QT_Q8_0 ? 32 : 64) * c;
    const int sw = (c >> 1) ? 16 : 0;
    const uint32_t ml = p.ml, mh = p.mh;
    for (int u0 = 0; u0 < n; u0 += R + 1) {
#pragma unroll
        for (int i = 0; i <= R; i++) {
            const int u = u0 + i;
            if (u < n) {
                if (u == g1) {
                    asm volatile("cp.async.wait_group 0;\n" ::);
                    __syncthreads();
                }
                // unit u + R into the slot unit u - 1 left, then unit u
                if (u + R < n) gs_load<F>(ring[(i + R) % (R + 1)], cr, hr, mr, ubeg + u + R, c);
                gs_unit<F, NT>(ring[i], (2 * (ubeg + u) + (c >> 1)) & 3, bs + u * 256, p.pitch, sw, ml, mh, acc);
            }
        }
    }
    if (p.cluster == 1) {
        // the cluster's CTAs (rank z = blockIdx.y: K part z) leave their partials in shared
        // memory, token-major (part[t][row of the tile]); rank z then sums rows of the tile
        // [.., ..) for every token over ranks 0..ksplit-1 in that order (deterministic) and
        // stores them
        namespace cg = cooperative_groups;
        cg::cluster_group cl = cg::this_cluster();
        __syncthreads(); // every warp is done with the input slice
        float *part = (float *)smem;
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int tk = nt * 8 + 2 * c + h;
                part[tk * ROWS + warp * 16 + g] = acc[nt][h];
                part[tk * ROWS + warp * 16 + g + 8] = acc[nt][2 + h];
            }
        cl.sync();
        const int ks = p.ksplit, z = (int)blockIdx.y;
        for (int e = z * W * 32 + (int)threadIdx.x; e < p.T * ROWS; e += ks * W * 32) {
            float s = 0.0f;
            for (int r = 0; r < ks; r++) s += cl.map_shared_rank(part, r)[e];
            const int tk = e / ROWS, row = b * ROWS + (e % ROWS);
            if (row < M.rows) {
                float *y = M.y + (size_t)tk * M.ldy + row;
                const float v = s * p.tscale[tk];
                *y = p.accumulate ? *y + v : v;
            }
        }
        cl.sync(); // the other ranks read this CTA's shared memory until here
        return;
    }
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int tk = nt * 8 + 2 * c + h;
            if (tk >= p.T) continue;
            const float ts = p.tscale[tk];
            if (p.ksplit > 1) {
                float *w = p.ws + ((size_t)blockIdx.y * p.T + tk) * p.ws_rows + p.row0[mi];
                if (rg < M.rows) w[rg] = acc[nt][h] * ts;
                if (rg8 < M.rows) w[rg8] = acc[nt][2 + h] * ts;
                continue;
            }
            float *y = M.y + (size_t)tk * M.ldy;
            if (rg < M.rows) y[rg] = p.accumulate ? y[rg] + acc[nt][h] * ts : acc[nt][h] * ts;
            if (rg8 < M.rows) y[rg8] = p.accumulate ? y[rg8] + acc[nt][2 + h] * ts : acc[nt][2 + h] * ts;
        }
    }
    if (p.ksplit > 1 && p.cluster == 2) {
        // the tile again from %ctaid.x (nothing kept live across the main loop for this)
        unsigned bx;
        asm volatile("mov.u32 %0, %%ctaid.x;" : "=r"(bx));
        int fb = (int)bx, fm = 0;
        while (fm + 1 < p.n && fb >= p.m[fm].mtiles) fb -= p.m[fm++].mtiles;
        gs_fixup(g_gs_cnt + bx, p.ksplit, p.T, p.ws_rows, p.ws + p.row0[fm] + fb * ROWS, p.m[fm].y + fb * ROWS,
                 p.m[fm].ldy, min(ROWS, p.m[fm].rows - fb * ROWS), p.accumulate, ROWS);
    }
}

__global__ void gemms_reduce_kernel(const gemms_params p) {
    pdl_trigger();
    pdl_wait();
    splitk_reduce(p);
}

// ------------------------------------------------------------------------------ gemms2
// gemms2_kernel (SPARKD_HS2, default on; kernels/PERF.md "Round 7, helper hs2"): the same
// numerics and fragment recipe as gemms_kernel (gs_unit), with the weights streamed through a
// shared-memory ring (cp.async, S - 1 stages in flight a warp, no registers held) instead of a
// register ring, and a persistent grid.
//   Work: the products' 128-row tiles x their K in stages of U units (U * 128 elements) form
//   one index space x = tile * nst + stage (nst = K / (128 U)); CTA b of G (one an SM) owns
//   [x_beg(b), x_beg(b + 1)), x_beg(b) = b * N / G: every CTA streams the same number of
//   stages (+-1) with no second wave, and the stream runs on across tile boundaries.
//   A tile inside one CTA's range is stored (or accumulated) directly; a tile cut by a range
//   boundary leaves each piece's partial sums in the work buffer (slot 0: the CTA's first
//   piece, 1: its last) and gemms2_reduce_kernel sums the pieces in CTA order (deterministic).
//   Warps: 8 consumers (16 rows each) and 1 input warp. A consumer copies its own rows'
//   weights: lane (g, c) copies exactly the 16-byte pieces it later reads (gs_slot's bytes)
//   into its own slots (cp.async.cg, one group a stage; no cross-lane sync for the codes),
//   and lanes c = 0, 1 the meta of rows g, g + 8 (read by the quad after a __syncwarp). The
//   input warp copies each stage's input slice (T tokens x U * 128, f16 hi; gs_fill's
//   layout and swizzle) into a CTA-shared ring slot: full[i] completes by the 32 lanes'
//   cp.async.mbarrier.arrive.noinc, empty[i] by one arrival a consumer warp. The first S - 1
//   weight stages are requested before pdl_wait.
template <uint32_t F, int NT, int MT = 1, bool C2 = false> struct g2_cfg {
    // MT m16 tiles a warp (16 MT rows; a tile of 128 MT rows); MT = 2: one unit a stage; C2: two
    // CTAs an SM (SPARKD_HS2_2CTA), stages of 1 (Q8_0) or 2 units
    static constexpr int U = C2 ? (F == QT_Q8_0 ? 1 : 2) : MT == 2 ? 1 : F == QT_Q4_K && NT < 4 ? 4 : 2; // units a stage
    static constexpr int CP = F == QT_Q8_0 ? 4 : 2;                         // 16-byte code pieces a lane a unit a m-tile
    static constexpr int HP = F == QT_Q6_K ? 2 : 0;                         // 8-byte hi pieces a lane a unit a m-tile
    static constexpr int SB = F == QT_Q8_0 ? 8 : F == QT_Q4_K ? 16 : 20;    // meta bytes a unit (Q8_0) / superblock
    static constexpr int MST = F == QT_Q8_0 ? U * 8 : (U >= 2 ? U / 2 : 1) * SB; // meta bytes a row a stage
    static constexpr int MOFF = MT * U * (CP * 512 + HP * 256);             // meta rows in a warp's slot
    static constexpr int WST = (MOFF + 16 * MT * MST + 15) / 16 * 16;       // weight bytes a warp a stage
    static constexpr int ROWS = 128 * MT;                                   // rows a tile
    static constexpr int PITCH = U * 256 + (F == QT_Q8_0 ? 16 : 32);        // input bytes a token row
    static constexpr int XST = NT * 8 * PITCH;                              // input bytes a stage
    static constexpr int STAGE = 8 * WST + XST;                             // bytes a stage
};

__device__ __forceinline__ uint32_t g2_smem(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void g2_bar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void g2_bar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// this thread's earlier cp.async copies, once complete, count as one arrival on bar
__device__ __forceinline__ void g2_bar_arrive_cp(uint32_t bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void g2_bar_wait(uint32_t bar, uint32_t parity) {
    uint32_t ok = 0;
    do {
        asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(ok)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!ok);
}
// cp.async.wait_group S - 2 (an immediate: S = 3..6)
__device__ __forceinline__ void g2_wait_cp(int S) {
    switch (S) {
    case 3: asm volatile("cp.async.wait_group 1;\n" ::: "memory"); break;
    case 4: asm volatile("cp.async.wait_group 2;\n" ::: "memory"); break;
    case 5: asm volatile("cp.async.wait_group 3;\n" ::: "memory"); break;
    default: asm volatile("cp.async.wait_group 4;\n" ::: "memory"); break;
    }
}
__device__ __forceinline__ void g2_cp16(uint32_t dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void g2_cp8(uint32_t dst, const void *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void g2_cp4(uint32_t dst, const void *src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(src) : "memory");
}

// The tile of index space entry x (x / nst) as (matrix, tile of the matrix).
__device__ __forceinline__ void g2_tile(const gemms_params &p, int t, int &mi, int &b) {
    mi = 0;
    b = t;
    while (mi + 1 < p.n && b >= p.m[mi].mtiles) b -= p.m[mi++].mtiles;
}
// First index of CTA cta's range, and the CTA whose range holds index x.
__device__ __forceinline__ long long g2_beg(long long N, int G, int cta) { return (long long)cta * N / G; }
__device__ __forceinline__ int g2_cta_of(long long N, int G, long long x) { return (int)(((x + 1) * G - 1) / N); }

// A consumer lane's weight copies (one stage at a time, into its warp's part of a ring slot):
// code piece k of m-tile mt, unit uu at (((mt * U + uu) * CP + k) * 32 + lane) * 16 (gs_load's
// c[r][..] of this lane), Q6_K's hi piece k (8 bytes) at MT * U * CP * 512 + (((mt * U + uu) * 2
// + k) * 32 + lane) * 8, the meta of the warp's row j (16 mt + g, + 8) at MOFF + j * MST. The
// code / hi pointers are set at a tile's first copied stage (set) and advance a stage a copy.
template <uint32_t F, int NT, int MT, bool C2> struct g2_src {
    using C = g2_cfg<F, NT, MT, C2>;
    static constexpr int PR = C::MST / 4, NP = (16 * MT * PR + 31) / 32; // Q6_K: 4-byte meta pieces
    const uint8_t *cp_[MT][2], *hp_[MT][2], *mp_[F == QT_Q6_K ? NP : 1];
    __device__ __forceinline__ static size_t moff(int st) { // meta bytes of the row before stage st
        return F == QT_Q8_0 ? (size_t)st * C::MST : (size_t)((st * C::U) >> 1) * C::SB;
    }
    __device__ __forceinline__ void set(const gemms_params &p, int t, int st, int warp, int g, int c, int lane) {
        int mi, b;
        g2_tile(p, t, mi, b);
        const gemms_mat &M = p.m[mi];
        const int r00 = b * C::ROWS + warp * 16 * MT;
        const size_t cs = (size_t)st * C::U * (F == QT_Q8_0 ? 128 : 64) + 16 * c;
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                const int rr = min(r00 + 16 * mt + g + 8 * r, M.rows - 1);
                cp_[mt][r] = M.codes + (uint64_t)rr * M.code_pitch + cs;
                if constexpr (F == QT_Q6_K) hp_[mt][r] = M.hi + (uint64_t)rr * M.hi_pitch + (size_t)st * C::U * 32 + 8 * c;
            }
        if constexpr (F == QT_Q6_K) {
#pragma unroll
            for (int q = 0; q < NP; q++) { // the rows of pieces lane + 32 q (row starts: moff added a copy)
                const int pc = lane + 32 * q, j = pc / PR, k = pc - j * PR;
                const int rr = min(r00 + (j < 16 * MT ? j : 16 * MT - 1), M.rows - 1);
                mp_[q] = M.meta + (uint64_t)rr * M.meta_pitch + 4 * k;
            }
        } else {
            mp_[0] = M.meta + (uint64_t)min(r00 + g + 8 * c, M.rows - 1) * M.meta_pitch;
        }
    }
    __device__ __forceinline__ void copy(uint32_t ws_, int st, int g, int c, int lane) {
        constexpr int U = C::U, CB = F == QT_Q8_0 ? 128 : 64;
        const uint32_t d = ws_ + lane * 16;
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
            for (int uu = 0; uu < U; uu++) {
                const int pb = (mt * U + uu) * C::CP;
                if constexpr (F == QT_Q8_0) {
                    g2_cp16(d + ((pb + 0) * 32) * 16, cp_[mt][0] + uu * 128);
                    g2_cp16(d + ((pb + 1) * 32) * 16, cp_[mt][0] + uu * 128 + 64);
                    g2_cp16(d + ((pb + 2) * 32) * 16, cp_[mt][1] + uu * 128);
                    g2_cp16(d + ((pb + 3) * 32) * 16, cp_[mt][1] + uu * 128 + 64);
                } else {
                    g2_cp16(d + ((pb + 0) * 32) * 16, cp_[mt][0] + uu * 64);
                    g2_cp16(d + ((pb + 1) * 32) * 16, cp_[mt][1] + uu * 64);
                    if constexpr (F == QT_Q6_K) {
                        const uint32_t dh = ws_ + MT * U * C::CP * 512 + lane * 8;
                        g2_cp8(dh + (((mt * U + uu) * 2 + 0) * 32) * 8, hp_[mt][0] + uu * 32);
                        g2_cp8(dh + (((mt * U + uu) * 2 + 1) * 32) * 8, hp_[mt][1] + uu * 32);
                    }
                }
            }
#pragma unroll
            for (int r = 0; r < 2; r++) {
                cp_[mt][r] += U * CB;
                if constexpr (F == QT_Q6_K) hp_[mt][r] += U * 32;
            }
        }
        const size_t mo = moff(st);
        if constexpr (F == QT_Q6_K) {
#pragma unroll
            for (int q = 0; q < NP; q++) {
                const int pc = lane + 32 * q, j = pc / PR, k = pc - j * PR;
                if (pc < 16 * MT * PR) g2_cp4(ws_ + C::MOFF + j * C::MST + 4 * k, mp_[q] + mo);
            }
        } else if (c < 2 * MT) { // row g + 8 c of the warp
            const uint32_t md = ws_ + C::MOFF + (g + 8 * c) * C::MST;
            if constexpr (C::MST == 8) {
                g2_cp8(md, mp_[0] + mo);
            } else {
#pragma unroll
                for (int k = 0; k < C::MST / 16; k++) g2_cp16(md + 16 * k, mp_[0] + mo + 16 * k);
            }
        }
    }
};

template <uint32_t F, int NT, int MT, bool C2>
__global__ __launch_bounds__(288, C2 ? 2 : 1) void gemms2_kernel(const gemms_params p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ != 900
    // launched on compute capability 9.x only (g2_geom): no body elsewhere (build time)
    __trap();
#else
    using C = g2_cfg<F, NT, MT, C2>;
    constexpr int U = C::U, ROWS = C::ROWS;
    extern __shared__ __align__(16) uint8_t smem[];
    const int S = p.stages, G = (int)gridDim.x, cta = (int)blockIdx.x;
    const int nst = (p.K >> 7) / U;
    const long long N = (long long)p.ntiles * nst;
    const long long xb = g2_beg(N, G, cta), xe = g2_beg(N, G, cta + 1);
    const int cnt = (int)(xe - xb);
    uint64_t *bars = (uint64_t *)(smem + (size_t)S * C::STAGE); // full[S], empty[S]
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int t0 = (int)(xb / nst), s0 = (int)(xb % nst);
    pdl_trigger();
    if (threadIdx.x == 0) {
        for (int i = 0; i < S; i++) {
            g2_bar_init(g2_smem(bars + i), 32);    // the input warp's lanes (cp.async arrivals)
            g2_bar_init(g2_smem(bars + S + i), 8); // one arrival a consumer warp
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    if (warp == 8) {
        // ---- input warp: stage i's slice into slot i % S (phase (i / S) & 1)
        pdl_wait();
        // a token's stage is U * 16 pieces of 16 bytes: lane takes pieces lane + 32 q of every
        // token (fixed shared / global offsets); tokens past T are never copied (their MMA
        // columns are never stored)
        // (U = 1: 16 pieces a token, lanes 16..31 take the odd tokens)
        constexpr int PER = U >= 2 ? U / 2 : 1, TSTEP = U >= 2 ? 1 : 2;
        const int tk0 = U >= 2 ? 0 : lane >> 4;
        int doff[PER], soff[PER];
#pragma unroll
        for (int q = 0; q < PER; q++) {
            const int rem = U >= 2 ? lane + 32 * q : lane & 15, ur = rem >> 4, bk = rem & 15;
            const int sb = F == QT_Q8_0 ? bk : (bk & 12) | ((bk & 3) ^ ((bk >> 3) & 1));
            doff[q] = ur * 256 + 16 * sb;
            soff[q] = ur * 128 + 8 * bk;
        }
        const int T = p.T;
        int st = s0;
        const uint32_t xd0 = g2_smem(smem) + 8 * C::WST;
        for (int i = 0, slot = 0, ph = 0; i < cnt; i++) {
            if (i >= S) g2_bar_wait(g2_smem(bars + S + slot), ph ^ 1);
            const uint32_t xd = xd0 + slot * C::STAGE;
            const uint16_t *xs = p.xh + (size_t)st * U * 128;
            for (int tk = tk0; tk < T; tk += TSTEP) {
#pragma unroll
                for (int q = 0; q < PER; q++) g2_cp16(xd + tk * C::PITCH + doff[q], xs + (size_t)tk * p.K + soff[q]);
            }
            g2_bar_arrive_cp(g2_smem(bars + slot));
            if (++st == nst) st = 0;
            if (++slot == S) slot = 0, ph ^= 1;
        }
        asm volatile("cp.async.wait_all;\n" ::: "memory");
        return;
    }
    // ---- consumers: warp w owns rows 16 w + g, + 8 of every tile
    const int g = lane >> 2, c = lane & 3;
    uint8_t *wbase = smem + (size_t)warp * C::WST;
    // the first S - 1 weight stages (constant: before the wait), one cp.async group each
    int ti = t0, si = s0; // the next stage to copy
    g2_src<F, NT, MT, C2> src;
    src.set(p, ti, si, warp, g, c, lane);
    const uint32_t wb32 = g2_smem(wbase);
    for (int i = 0; i < S - 1; i++) {
        if (i < cnt) src.copy(wb32 + i * C::STAGE, si, g, c, lane);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
        if (++si == nst) {
            si = 0;
            if (++ti < p.ntiles) src.set(p, ti, 0, warp, g, c, lane);
        }
    }
    pdl_wait();
    const uint32_t ml = p.ml, mh = p.mh;
    float acc[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++) acc[mt][nt][0] = acc[mt][nt][1] = acc[mt][nt][2] = acc[mt][nt][3] = 0.0f;
    const int row_a = warp * 16 * MT + g; // row of the tile of m-tile 0 (+ 8, + 16 mt)
    const int xoff_lane = 8 * C::WST + g * C::PITCH + (F == QT_Q8_0 ? 32 : 64) * c;
    const int sw = (c >> 1) ? 16 : 0;
    int t = t0, st = s0;
    for (int i = 0, slot = 0, ph = 0, wslot = S - 1; i < cnt; i++) {
        // this warp's stage i is in (groups complete in order: S - 2 younger ones may pend)
        g2_wait_cp(S);
        __syncwarp();
        // stage i + S - 1 into the slot stage i - 1 left (every lane is past it: the sync above)
        if (i + S - 1 < cnt) {
            src.copy(wb32 + wslot * C::STAGE, si, g, c, lane);
            if (++si == nst) {
                si = 0;
                if (++ti < p.ntiles) src.set(p, ti, 0, warp, g, c, lane);
            }
        }
        asm volatile("cp.async.commit_group;\n" ::: "memory");
        if (++wslot == S) wslot = 0;
        const uint8_t *base = smem + (size_t)slot * C::STAGE;
        g2_bar_wait(g2_smem(bars + slot), ph); // the input slice
        const uint8_t *wl = wbase + (size_t)slot * C::STAGE;
#pragma unroll
        for (int uu = 0; uu < U; uu++) {
            gs_slot<F> s[MT];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    const uint8_t *mr = wl + C::MOFF + (16 * mt + g + 8 * r) * C::MST;
                    const int pb = (mt * U + uu) * C::CP;
                    if constexpr (F == QT_Q8_0) {
                        s[mt].c[r][0] = *(const uint4 *)(wl + ((pb + 2 * r) * 32 + lane) * 16);
                        s[mt].c[r][1] = *(const uint4 *)(wl + ((pb + 2 * r + 1) * 32 + lane) * 16);
                        const uint2 d = *(const uint2 *)(mr + uu * 8);
                        s[mt].m[r].x = d.x;
                        s[mt].m[r].y = d.y;
                    } else if constexpr (F == QT_Q4_K) {
                        s[mt].c[r][0] = *(const uint4 *)(wl + ((pb + r) * 32 + lane) * 16);
                        s[mt].m[r] = *(const uint4 *)(mr + (uu >> 1) * 16);
                    } else { // Q6_K: as gs_load
                        s[mt].c[r][0] = *(const uint4 *)(wl + ((pb + r) * 32 + lane) * 16);
                        const int ci = 2 * (st * U + uu) + (c >> 1);
                        const uint8_t *sb = mr + (uu >> 1) * 20;
                        s[mt].m[r].x = *(const unsigned int *)sb;
                        s[mt].m[r].y = *(const unsigned int *)(sb + 4 + 4 * (ci & 3));
                        const uint2 h =
                            *(const uint2 *)(wl + MT * U * C::CP * 512 + (((mt * U + uu) * 2 + r) * 32 + lane) * 8);
                        s[mt].m[r].z = h.x;
                        s[mt].m[r].w = h.y;
                    }
                }
            const int ug = st * U + uu; // the unit of the row
            gs_unit_m<F, NT, MT>(s, (2 * ug + (c >> 1)) & 3, base + xoff_lane + uu * 256, C::PITCH, sw, ml, mh, acc);
        }
        __syncwarp();
        if (lane == 0) g2_bar_arrive(g2_smem(bars + S + slot));
        if (++slot == S) slot = 0, ph ^= 1;
        if (st == nst - 1 || i == cnt - 1) {
            // the tile's piece is done: whole tile -> y, else the piece's partials -> ws slot
            const bool whole = (long long)t * nst >= xb && (long long)(t + 1) * nst <= xe;
            int mi, b;
            g2_tile(p, t, mi, b);
            const gemms_mat &M = p.m[mi];
            float *w = p.ws + ((size_t)(2 * cta + (t == t0 ? 0 : 1)) * p.T) * ROWS;
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                const int ra = row_a + 16 * mt, rg = b * ROWS + ra, rg8 = rg + 8;
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        const int tk = nt * 8 + 2 * c + h;
                        if (tk >= p.T) continue;
                        const float ts = p.tscale[tk];
                        const float v0 = acc[mt][nt][h] * ts, v1 = acc[mt][nt][2 + h] * ts;
                        if (whole) {
                            float *y = M.y + (size_t)tk * M.ldy;
                            if (rg < M.rows) y[rg] = p.accumulate ? y[rg] + v0 : v0;
                            if (rg8 < M.rows) y[rg8] = p.accumulate ? y[rg8] + v1 : v1;
                        } else {
                            w[tk * ROWS + ra] = v0;
                            w[tk * ROWS + ra + 8] = v1;
                        }
                    }
                }
            }
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++) acc[mt][nt][0] = acc[mt][nt][1] = acc[mt][nt][2] = acc[mt][nt][3] = 0.0f;
        }
        if (++st == nst) st = 0, t++;
    }
#endif
}

// The pieces of tiles cut by a range boundary, summed in CTA order: block (b - 1, token) for
// boundary b (the first CTA of range b), a thread a row of the tile that boundary cuts first.
__global__ __launch_bounds__(256) void gemms2_reduce_kernel(const gemms_params p) {
    pdl_trigger();
    pdl_wait();
    const int tk = blockIdx.y, G = p.grid, nst = (p.K >> 7) / p.unit, bd = blockIdx.x + 1;
    const long long N = (long long)p.ntiles * nst, xb = g2_beg(N, G, bd);
    if (xb % nst == 0) return; // boundary bd cuts no tile
    const int t = (int)(xb / nst);
    const int c0 = g2_cta_of(N, G, (long long)t * nst), c1 = g2_cta_of(N, G, (long long)(t + 1) * nst - 1);
    if (bd != c0 + 1) return; // the tile's first cut sums it
    int mi, b;
    g2_tile(p, t, mi, b);
    const int lr = b * p.trows + (int)threadIdx.x;
    if (lr >= p.m[mi].rows) return;
    float s = 0.0f;
    for (int cta = c0; cta <= c1; cta++) {
        const int slot = (int)(g2_beg(N, G, cta) / nst) == t ? 0 : 1;
        s += p.ws[((size_t)(2 * cta + slot) * p.T + tk) * p.trows + threadIdx.x];
    }
    float *y = p.m[mi].y + (size_t)tk * p.m[mi].ldy + lr;
    *y = p.accumulate ? *y + s : s;
}

// ------------------------------------------------------------------------------ host

static int g_on = -1, g_max_t = -1; // SPARKD_HSMALL, SPARKD_HSMALL_MAX_T
static long g_launches = 0;
static int g_force_ks = 0;           // benches: cuda_gemms_force_ks
static int g_cluster = -1;           // SPARKD_HSMALL_CLUSTER: 0 (default) ws + reduce kernel, 1 clusters, 2 last CTA
static int g_wide = -1;              // SPARKD_HSMALL_WIDE: NT = 4 in CTAs of 16 warps (default 1)
static int g_hs2 = -1;               // SPARKD_HS2: 1 (default) gemms2_kernel where it fits, 0 gemms_kernel only
static int g_hs2_max_t = -1;         // SPARKD_HS2_MAX_T: gemms2's top T (default 32, at most 64)
static int g_hs2_stages = -1;        // SPARKD_HS2_STAGES: ring stages (default 3; 0 = as many as fit, <= 6)
static int g_hs2_min_rows = -1;      // SPARKD_HS2_MIN_ROWS: gemms2 only for products of >= this many rows (default 16384)
static int g_hs2_mt = -1;            // SPARKD_HS2_MT: 2 = warps of 32 rows (two m16 tiles) at T 17..32; default 1
static int g_hs2_2cta = -1;          // SPARKD_HS2_2CTA: 1 = two CTAs an SM (smaller stages, <= 113 KB a CTA)
static long g_launches2 = 0;         // gemms2_kernel launches
// Benches (hsmall_test.cu): every later plan takes K split ks when it fits (no gemms otherwise);
// 0 = the cost model's choice.
extern "C" void cuda_gemms_force_ks(int ks) { g_force_ks = ks > 0 ? ks : 0; }
// Tests and benches: 1/0 = CTAs of 16 / 8 warps at T > 16; -1 = as SPARKD_HSMALL_WIDE says.
extern "C" void cuda_gemms_wide_set(int on) { g_wide = on < 0 ? -1 : on ? 1 : 0; }
static void gs_env();
// Tests and benches: the K split's partials through 1 = clusters, 0 = ws and the reduce kernel,
// 2 = ws and the tile's last CTA; -1 = as SPARKD_HSMALL_CLUSTER says.
extern "C" void cuda_gemms_cluster_set(int on) {
    g_cluster = -1;
    gs_env();
    if (on >= 0 && on <= 2) g_cluster = on;
}

static void gs_env() {
    if (g_hs2 < 0) g_hs2 = cuda_env_int("SPARKD_HS2", 1) != 0;
    if (g_hs2_2cta < 0) {
        const char *v = getenv("SPARKD_HS2_2CTA");
        g_hs2_2cta = v && v[0] == '1' ? 1 : v && v[0] == '0' ? 0 : 2;
    }
    if (g_hs2_mt < 0) {
        const char *v = getenv("SPARKD_HS2_MT");
        g_hs2_mt = v && v[0] == '2' ? 2 : 1;
    }
    if (g_hs2_stages < 0) { // GPU run 0: 3 stages 1.02-1.07x the deepest ring, and 1/2 the shared memory
        const char *v = getenv("SPARKD_HS2_STAGES");
        g_hs2_stages = v ? atoi(v) : 3;
        if (g_hs2_stages < 0) g_hs2_stages = 0;
    }
    if (g_hs2_min_rows < 0) { // GPU run 0: gemms2 won on gate+up (24576 rows) and the head, lost on the
        const char *v = getenv("SPARKD_HS2_MIN_ROWS"); // <= 6144-row products (a ~3-4 us fixed cost)
        g_hs2_min_rows = v ? atoi(v) : 16384;
        if (g_hs2_min_rows < 0) g_hs2_min_rows = 0;
    }
    if (g_hs2_max_t < 0) {
        const char *v = getenv("SPARKD_HS2_MAX_T");
        const int t = v ? atoi(v) : 32;
        g_hs2_max_t = t < 0 ? 0 : t > G2_MAX_T ? G2_MAX_T : t;
    }
    if (g_on < 0) g_on = cuda_env_int("SPARKD_HSMALL", 1) != 0;
    if (g_wide < 0) g_wide = cuda_env_int("SPARKD_HSMALL_WIDE", 1) != 0;
    if (g_cluster < 0) {
        const char *v = getenv("SPARKD_HSMALL_CLUSTER");
        int dev = 0, ok = 0;
        g_cluster = v && v[0] == '1' ? 1 : v && v[0] == '2' ? 2 : 0; // GPU run 1: 0 measured best
        if (g_cluster == 1 && (cudaGetDevice(&dev) != cudaSuccess ||
                               cudaDeviceGetAttribute(&ok, cudaDevAttrClusterLaunch, dev) != cudaSuccess || !ok))
            g_cluster = 0; // no thread-block clusters on this device
    }
    if (g_max_t < 0) {
        const char *v = getenv("SPARKD_HSMALL_MAX_T");
        const int t = v ? atoi(v) : GS_MAX_T;
        g_max_t = t < 0 ? 0 : t > GS_MAX_T ? GS_MAX_T : t;
    }
}

extern "C" void cuda_gemms_set(int on, int max_t) {
    g_on = on < 0 ? -1 : on ? 1 : 0;
    g_max_t = max_t < 0 ? -1 : max_t > GS_MAX_T ? GS_MAX_T : max_t;
    gs_env();
}
extern "C" int cuda_gemms_max_t(void) {
    gs_env();
    return !g_on ? 0 : g_hs2 && g_hs2_max_t > g_max_t ? g_hs2_max_t : g_max_t;
}
extern "C" long cuda_gemms_launches(void) { return g_launches; }
// Tests and benches: 1/0 = gemms2_kernel where it fits / never; -1 = as SPARKD_HS2 says.
extern "C" void cuda_gemms2_set(int on) {
    g_hs2 = -1;
    gs_env();
    if (on >= 0) g_hs2 = on ? 1 : 0;
}
extern "C" long cuda_gemms2_launches(void) { return g_launches2; }
// Tests and benches: 1 = two CTAs an SM at T <= 32, 2 = at 17..32 for Q8_0 (the default), 0 =
// never; -1 = as SPARKD_HS2_2CTA says.
extern "C" void cuda_gemms2_2cta_set(int on) {
    g_hs2_2cta = -1;
    gs_env();
    if (on >= 0 && on <= 2) g_hs2_2cta = on;
}
// Tests and benches: gemms2 only for products of >= rows rows (0: all); -1 = as SPARKD_HS2_MIN_ROWS says.
extern "C" void cuda_gemms2_min_rows_set(int rows) {
    g_hs2_min_rows = -1;
    gs_env();
    if (rows >= 0) g_hs2_min_rows = rows;
}
// Benches: gemms2's ring stages (3..6, fewer when they do not fit; 0 = as many as fit); -1 = as
// SPARKD_HS2_STAGES says (default 3).
extern "C" void cuda_gemms2_stages_set(int s) {
    g_hs2_stages = -1;
    gs_env();
    if (s >= 0) g_hs2_stages = s;
}
// Tests and benches: gemms2's m16 tiles a warp at T > 16 (1 or 2); -1 = as SPARKD_HS2_MT says.
extern "C" void cuda_gemms2_mt_set(int mt) {
    g_hs2_mt = -1;
    gs_env();
    if (mt == 1 || mt == 2) g_hs2_mt = mt;
}
// Tests and benches: gemms2's top T (<= 64); -1 = as SPARKD_HS2_MAX_T says.
extern "C" void cuda_gemms2_max_t_set(int t) {
    g_hs2_max_t = -1;
    gs_env();
    if (t >= 0) g_hs2_max_t = t > G2_MAX_T ? G2_MAX_T : t;
}

static int gs_type_ok(uint32_t t) { return t == QT_Q8_0 || t == QT_Q4_K || t == QT_Q6_K; }
// Round 8 (t64): SPARKD_T64_G2=1 (with SPARKD_T64 on) gives gemms2 the K-quants' products of >=
// SPARKD_HS2_MIN_ROWS rows (gate+up, the head) at 33..64 tokens too, where hf2 takes them otherwise
// (kbench round 8 base, T = 64 Q4_K gate+up: gemms2 72.8 us, hfast 77.9). Q8_0 stays on mmq (its
// input has no f16 form at T = 64) unless SPARKD_T64_G2=2: gemms2 for Q8_0's >= SPARKD_HS2_MIN_ROWS
// rows too (gate+up, the head; the engine then writes the f16 form of their inputs, cuda_t64_g2_head).
// Default 1: GPU run 0 (H200, with fz), Q4_K_M 64 sequences 6,791 vs 6,542 tok/s (+3.8%); kernel
// bench T = 64: Q4_K gate+up 73.4 vs hf2 76.6 us, Q6_K head 347.6 vs 365.2, Q8_0 head 335.5 vs mmq
// 391.9, Q8_0 gate+up 80.2 vs the uneven mmq split 85.9. Run 1: Q8_0's head on gemms2 bought nothing
// in the whole model (64 sequences 7,554.5 with it vs 7,553.9 without) and =2 lost (7,254.7: the f16
// form of the q+k+v / gate+up input), so Q8_0 takes gemms2 at 33..64 only with SPARKD_T64_G2=2 (head
// and gate+up). SPARKD_T64_G2=0: off.
extern "C" int cuda_t64_on(void); // mmq.cu
static int g_t64_g2 = -1;
extern "C" void cuda_t64_g2_set(int lvl) { g_t64_g2 = lvl < 0 ? -1 : lvl > 2 ? 2 : lvl; } // tests, benches: 0..2; -1: env
static int t64_g2_on() { // 0 off, 1 or 2 (SPARKD_T64_G2)
    if (g_t64_g2 < 0) {
        const char *v = getenv("SPARKD_T64_G2");
        g_t64_g2 = v && v[0] == '0' ? 0 : v && v[0] == '2' ? 2 : 1;
    }
    return cuda_t64_on() ? g_t64_g2 : 0;
}
// The engine (input_forms): SPARKD_T64_G2's level at T tokens (0 outside 33..64): 2 = Q8_0's head and
// gate+up on gemms2, whose inputs then need the f16 form.
extern "C" int cuda_t64_g2_head(int T) { return T >= 33 && T <= G2_MAX_T ? t64_g2_on() : 0; }
static int g2_top_t(const cuda_mm_args *a) {
    int64_t rows = 0;
    for (int i = 0; i < a->n; i++) rows += a->w[i]->rows;
    const int lvl = t64_g2_on();
    return lvl && (a->w[0]->type != QT_Q8_0 || lvl == 2) ? G2_MAX_T : g_hs2_max_t;
}
static int gs_nt(int T) { return T <= 8 ? 1 : T <= 16 ? 2 : 4; }
static int g2_nt(int T) { return T <= 32 ? gs_nt(T) : 8; } // gemms2: 8 token tiles at 33..64
// m16 tiles a warp: 2 (SPARKD_HS2_MT=2) at 17..32 tokens (at 33..64 the accumulators spill)
static int g2_mt(int T) { return g_hs2_mt == 2 && g2_nt(T) == 4 ? 2 : 1; }
// two CTAs an SM wanted at T tokens: SPARKD_HS2_2CTA=1 at T <= 32, default (2) at 17..32 for Q8_0
// only (GPU run 1, Q8_0: 32 sequences +2.9%, 8 sequences -5.6%; the K-quants were not measured and
// Q4_K's 2-CTA kernel at 17..32 spills 24 bytes), 0 never; one m16 tile a warp
static int g2_c2(int T, uint32_t type) {
    return g_hs2_2cta && g2_mt(T) == 1 &&
           (g_hs2_2cta == 1 ? g2_nt(T) <= 4 : g2_nt(T) == 4 && type == QT_Q8_0);
}
// Warps of a CTA at T tokens: 16 for 4 token tiles (the input slice, 4x larger than at T <= 8,
// then serves 256 rows: half the L2 -> shared traffic a weight byte), else 8.
static int gs_warps(int T) { return gs_nt(T) == 4 && g_wide ? 16 : 8; }
// Rows of a CTA at T tokens (benches and tests count tiles with it).
extern "C" int cuda_gemms_tile_rows(int T) {
    gs_env();
    return 16 * gs_warps(T);
}

static int gs_sms() {
    static int sms = 0;
    if (!sms) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            sms = 48;
    }
    return sms;
}

// Shared memory a CTA may take for its input slice: two CTAs an SM (H200: 113 KB, GB10: 49 KB).
static int gs_smem_cap() {
    static int cap = 0;
    if (!cap) {
        int dev = 0, per_sm = 0, optin = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
            per_sm = optin = 2 * GS_SMEM_MIN + 2048;
        cap = per_sm / 2 - 1024;
        if (cap > optin) cap = optin;
        cap &= ~1023;
        if (cap < GS_SMEM_MIN) cap = GS_SMEM_MIN;
    }
    return cap;
}

// gemms2_kernel's geometry for weights of `type` at T tokens, K: units a stage, ring stages
// (as many as the opt-in shared memory of a CTA holds, at most 6), the block's shared bytes;
// 0 when it does not apply (another type, K not a multiple of a stage, < 3 stages: GB10's
// ~100 KB a CTA keeps gemms_kernel).
// c2_io: in, two CTAs an SM wanted; out, taken (where 3 stages do not fit half an SM, e.g. Q6_K at
// T = 32: one CTA an SM).
static int g2_geom(uint32_t type, int T, int K, int *unit, int *stages, size_t *smem, int *c2_io) {
    if (type != QT_Q8_0 && type != QT_Q4_K && type != QT_Q6_K) return 0;
    const int nt = g2_nt(T), mt = g2_mt(T), c2 = *c2_io;
    int U = 0, st = 0;
#define G2_GEOM(F_, NT_, MT_, C2_)                                                                                 \
    if (type == F_ && nt == NT_ && mt == MT_ && c2 == C2_) {                                                    \
        U = g2_cfg<F_, NT_, MT_, C2_>::U;                                                                          \
        st = g2_cfg<F_, NT_, MT_, C2_>::STAGE;                                                                     \
    }
    G2_GEOM(QT_Q8_0, 1, 1, 0) G2_GEOM(QT_Q8_0, 2, 1, 0) G2_GEOM(QT_Q8_0, 4, 1, 0) G2_GEOM(QT_Q8_0, 8, 1, 0)
    G2_GEOM(QT_Q4_K, 1, 1, 0) G2_GEOM(QT_Q4_K, 2, 1, 0) G2_GEOM(QT_Q4_K, 4, 1, 0) G2_GEOM(QT_Q4_K, 8, 1, 0)
    G2_GEOM(QT_Q6_K, 1, 1, 0) G2_GEOM(QT_Q6_K, 2, 1, 0) G2_GEOM(QT_Q6_K, 4, 1, 0) G2_GEOM(QT_Q6_K, 8, 1, 0)
    G2_GEOM(QT_Q8_0, 4, 2, 0) G2_GEOM(QT_Q4_K, 4, 2, 0) G2_GEOM(QT_Q6_K, 4, 2, 0)
    G2_GEOM(QT_Q8_0, 1, 1, 1) G2_GEOM(QT_Q8_0, 2, 1, 1) G2_GEOM(QT_Q8_0, 4, 1, 1)
    G2_GEOM(QT_Q4_K, 1, 1, 1) G2_GEOM(QT_Q4_K, 2, 1, 1) G2_GEOM(QT_Q4_K, 4, 1, 1)
    G2_GEOM(QT_Q6_K, 1, 1, 1) G2_GEOM(QT_Q6_K, 2, 1, 1) G2_GEOM(QT_Q6_K, 4, 1, 1)
#undef G2_GEOM
    if (!U || K % (128 * U)) return 0;
    static int optin = 0;
    if (!optin) { // compute capability 9.x (H100 / H200) only: the kernel is built for sm_90a alone
        int dev = 0, major = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess || major != 9)
            optin = 1;
    }
    // two CTAs an SM: each within half the SM's shared memory less its 1 KB reserve
    const int budget = c2 ? (optin + 1024) / 2 - 1024 - 1024 : optin - 1024;
    int S = budget / (st + 16);
    if (S > 6) S = 6;
    if (g_hs2_stages >= 3 && g_hs2_stages < S) S = g_hs2_stages;
    if (S < 3 && c2) { // one CTA an SM instead
        *c2_io = 0;
        return g2_geom(type, T, K, unit, stages, smem, c2_io);
    }
    if (S < 3) return 0;
    *unit = U;
    *stages = S;
    *smem = (size_t)S * st + 16 * (size_t)S;
    return 1;
}
// Whether gemms2_kernel takes a product of the matrices a (rows a[i]->w rows): SPARKD_HS2 on, T
// <= SPARKD_HS2_MAX_T, the geometry, and the work buffer holding two pieces of partials a CTA
// (2 x SMs x T x trows f32). Sets the tile rows (128 MT), their count, the grid.
static int g2_wants(const cuda_mm_args *a, int T, int K, uint64_t work_bytes, int *unit, int *stages, size_t *smem,
                    int *grid, int *trows, int *ntiles, int *c2) {
    *c2 = g2_c2(T, a->w[0]->type);
    if (!g_hs2 || T > g2_top_t(a) || !g2_geom(a->w[0]->type, T, K, unit, stages, smem, c2)) return 0;
    const int tr = 128 * g2_mt(T);
    int tiles = 0;
    int64_t rows = 0;
    for (int i = 0; i < a->n; i++) {
        tiles += (int)((a->w[i]->rows + tr - 1) / tr);
        rows += a->w[i]->rows;
    }
    if (rows < g_hs2_min_rows) return 0; // small products: gemms_kernel (GPU run 0)
    const long long N = (long long)tiles * (K / (128 * *unit));
    const int slots = (*c2 ? 2 : 1) * gs_sms();
    int G = (int)(N < slots ? N : slots);
    // two CTAs an SM and SMs <= tiles <= 2 x SMs (gate+up: 192): a CTA a tile, no cut tile, no reduce
    if (*c2 && tiles >= gs_sms() && tiles <= slots) G = tiles;
    if ((uint64_t)2 * G * T * tr * 4 > work_bytes) return 0;
    *grid = G;
    *trows = tr;
    *ntiles = tiles;
    return 1;
}

// The K split: units per CTA (upc) and splits (ks) for `tiles` CTAs of 128 rows over K / 128
// units, T tokens, wbytes of weights. The input slice must fit gs_smem_cap(); with clusters
// (SPARKD_HSMALL_CLUSTER=1) ks <= 8 (a portable cluster), else (default) the partials need the
// caller's work buffer (ks * T * ws_rows f32). Cost in units of one CTA's unit time: waves of
// resident CTAs x (units + 4), stretched below one CTA an SM, + the split's exchange (GPU run 0's
// forced splits: the fewest equal waves win; 7-8 CTA clusters ran slower). Returns 0 when
// nothing fits.
extern "C" int cuda_gemms_plan(int T, int K, int tiles, int ws_rows, uint64_t wbytes, uint64_t work_bytes,
                               int *ks_out, int *upc_out) {
    gs_env();
    const int nu = K / 128, tpad = 8 * gs_nt(T), slots = (gs_warps(T) == 8 ? 2 : 1) * gs_sms(), cap = gs_smem_cap();
    double best = 1e300;
    int bks = 0, bupc = 0;
    for (int k = 1; k <= nu && k <= 64; k++) {
        const int upc = (nu + k - 1) / k, ks = (nu + upc - 1) / upc;
        if (ks != k) continue; // the same split as a smaller k
        if ((uint64_t)tpad * (uint64_t)(upc * 256 + 32) > (uint64_t)cap) continue;
        if (g_cluster == 1 ? ks > 8 : ks > 1 && (uint64_t)ks * T * ws_rows * 4 > work_bytes) continue;
        if (g_force_ks > 0) { // benches: this split if it fits
            if (ks != g_force_ks) continue;
            bks = ks;
            bupc = upc;
            break;
        }
        // waves of resident CTAs times a CTA's units (+ ~4 units of start: ring loads, slice
        // copy), stretched when the grid cannot fill one CTA an SM; a split adds its exchange
        // (clusters of 7-8 measured slower in GPU run 0: 1.3x)
        const long ctas = (long)tiles * ks, waves = (ctas + slots - 1) / slots;
        const double fill = ctas >= gs_sms() ? 1.0 : (double)gs_sms() / (double)ctas; // < 1 CTA an SM
        double cost = (double)waves * (upc + 4) * fill;
        if (ks > 1)
            cost += g_cluster == 1 ? (ks > 6 ? 0.3 * cost : 0.0) + 1.0
                                   : (g_cluster ? 0.5 : 2.0) + 2.0 * ks * T * ws_rows * 4.0 / (double)(wbytes / nu + 1);
        if (cost < best) {
            best = cost;
            bks = ks;
            bupc = upc;
        }
    }
    if (!bks) return 0;
    *ks_out = bks;
    *upc_out = bupc;
    return 1;
}

// Whether cuda_matmul hands this product to cuda_gemms_launch (gemm.cu asks): precision
// fast, 2 <= T <= SPARKD_HSMALL_MAX_T (default 32), Q8_0 / Q4_K / Q6_K weights, the input's
// f16 form present, K % 128 == 0, a K split that fits. SPARKD_HSMALL=0: never.
extern "C" int cuda_gemms_wants(const cuda_mm_args *a, const cuda_mmin *x) {
    gs_env();
    if (!g_on || a->exact || a->pair_act || a->path == CUDA_MM_FORCE_GEMV || x->T < 2 ||
        x->T > (g_hs2 && g2_top_t(a) > cuda_gemms_max_t() ? g2_top_t(a) : cuda_gemms_max_t()) ||
        !(x->forms & CUDA_MMIN_F16) || !x->hi || !x->tscale || x->K % 128 || !gs_type_ok(a->w[0]->type))
        return 0;
    int tiles = 0, rows = 0, ks, upc;
    uint64_t wb = 0;
    {
        int u2, s2, g2, r2, n2, c2;
        size_t m2;
        if (g2_wants(a, x->T, x->K, a->work ? a->work_bytes : 0, &u2, &s2, &m2, &g2, &r2, &n2, &c2)) return 1;
    }
    if (x->T > g_max_t) return 0; // gemms_kernel: T <= 32
    for (int i = 0; i < a->n; i++) {
        tiles += (int)((a->w[i]->rows + 16 * gs_warps(x->T) - 1) / (16 * gs_warps(x->T)));
        rows += (int)a->w[i]->rows;
        wb += cuda_weight_bytes(a->w[i]->type, a->w[i]->rows, a->w[i]->cols);
    }
    return cuda_gemms_plan(x->T, x->K, tiles, rows, wb, a->work ? a->work_bytes : 0, &ks, &upc);
}

template <uint32_t F, int NT, int W>
static int gs_launch(gemms_params p, int mtiles, float *work, uint64_t work_bytes, void *stream, err *e) {
    static bool attr[64]; // (per device)
    CUDA_TRY(cuda_smem_once(gemms_kernel<F, NT, W>, (int)(gs_smem_cap()), attr));
    size_t smem = (size_t)NT * 8 * p.pitch;
    if (p.cluster == 2 && mtiles > GS_CNT) p.cluster = 0; // more tiles than counters: ws + the reduce kernel
    if (p.cluster == 1) {
        // the partials (NT * 8 tokens x 128 rows f32) reuse the slice's shared memory
        if (smem < (size_t)NT * 8 * 16 * W * 4) smem = (size_t)NT * 8 * 16 * W * 4;
        const cudaError_t rc = cuda_launch_cluster(gemms_kernel<F, NT, W>, dim3((unsigned)mtiles, (unsigned)p.ksplit),
                                                   dim3(1, (unsigned)p.ksplit), dim3(W * 32), smem, stream, p);
        if (rc == cudaSuccess) {
            g_launches++;
            return 0;
        }
        // a device that cannot place the cluster: the work buffer from now on, if it fits (no
        // capture test here, unlike layer.cu's cuda_cluster_refused: its rule, kept)
        cudaGetLastError();
        if (!work || (uint64_t)p.ksplit * p.T * p.ws_rows * 4 > work_bytes)
            return cuda_fail(e, rc, "cudaLaunchKernelEx (gemms cluster)", __FILE__, __LINE__);
        fprintf(stderr, "gemms: cluster launch failed (%s): K-split partials through the work buffer\n",
                cudaGetErrorString(rc));
        g_cluster = 0;
        p.cluster = 0;
        p.ws = work;
        smem = (size_t)NT * 8 * p.pitch;
    }
    CUDA_TRY(cuda_launch(gemms_kernel<F, NT, W>, dim3((unsigned)mtiles, (unsigned)p.ksplit), dim3(W * 32), smem,
                         stream, p));
    if (p.ksplit > 1 && p.cluster != 2 && !(p.cluster == 0 && part_defer_z(p.defer, p.ws, p.ksplit, p.T, p.ws_rows, p.row0, p.n)))
        CUDA_TRY(cuda_launch(gemms_reduce_kernel, dim3((unsigned)((p.ws_rows + 255) / 256), (unsigned)p.T), dim3(256), 0,
                             stream, p));
    g_launches++;
    return 0;
}

template <uint32_t F>
static int gs_launch_t(const gemms_params &p, int mtiles, float *work, uint64_t wbytes, void *stream, err *e) {
    switch (gs_nt(p.T)) {
    case 1: return gs_launch<F, 1, 8>(p, mtiles, work, wbytes, stream, e);
    case 2: return gs_launch<F, 2, 8>(p, mtiles, work, wbytes, stream, e);
    default:
        if (gs_warps(p.T) == 16) return gs_launch<F, 4, 16>(p, mtiles, work, wbytes, stream, e);
        return gs_launch<F, 4, 8>(p, mtiles, work, wbytes, stream, e);
    }
}

template <uint32_t F, int NT, int MT, bool C2 = false>
static int g2_launch(const gemms_params &p, size_t smem, void *stream, err *e) {
    static size_t attr = 0;
    if (attr < smem) {
        CUDA_TRY(cudaFuncSetAttribute(gemms2_kernel<F, NT, MT, C2>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr = smem;
    }
    CUDA_TRY(cuda_launch(gemms2_kernel<F, NT, MT, C2>, dim3((unsigned)p.grid), dim3(288), smem, stream, p));
    // a tile cut by a range boundary: its pieces summed by the reduce kernel
    const int nst = (p.K >> 7) / p.unit;
    const long long N = (long long)p.ntiles * nst;
    bool cut = false;
    for (int b = 1; b < p.grid && !cut; b++) cut = ((long long)b * N / p.grid) % nst != 0;
    int tile0[CUDA_MM_MAX_MATS] = {0, 0, 0}; // fz: the pieces left to the consumer instead
    for (int i = 1; i < p.n; i++) tile0[i] = tile0[i - 1] + p.m[i - 1].mtiles;
    if (cut && !part_defer_g2(p.defer, p.ws, p.grid, N, nst, p.T, p.trows, tile0, p.n))
        CUDA_TRY(cuda_launch(gemms2_reduce_kernel, dim3((unsigned)(p.grid - 1), (unsigned)p.T), dim3((unsigned)p.trows), 0,
                             stream, p));
    g_launches++;
    g_launches2++;
    return 0;
}
template <uint32_t F> static int g2_launch_t(const gemms_params &p, size_t smem, void *stream, err *e) {
    const bool m2 = p.trows == 256, c2 = p.c2;
    switch (g2_nt(p.T)) {
    case 1: return c2 ? g2_launch<F, 1, 1, true>(p, smem, stream, e) : g2_launch<F, 1, 1>(p, smem, stream, e);
    case 2: return c2 ? g2_launch<F, 2, 1, true>(p, smem, stream, e) : g2_launch<F, 2, 1>(p, smem, stream, e);
    case 4:
        return m2 ? g2_launch<F, 4, 2>(p, smem, stream, e)
                  : c2 ? g2_launch<F, 4, 1, true>(p, smem, stream, e) : g2_launch<F, 4, 1>(p, smem, stream, e);
    default: return g2_launch<F, 8, 1>(p, smem, stream, e);
    }
}

// The product of cuda_matmul's arguments (checked there: matrices of one type, K = x->K;
// cuda_gemms_wants said yes).
extern "C" int cuda_gemms_launch(const cuda_mm_args *a, const cuda_mmin *x, void *stream, err *e) {
    const uint32_t type = a->w[0]->type;
    gemms_params p;
    memset(&p, 0, sizeof p);
    p.n = a->n;
    p.K = x->K;
    p.T = x->T;
    p.accumulate = a->accumulate;
    p.defer = a->accumulate ? NULL : a->defer;
    p.xh = x->hi;
    p.tscale = x->tscale;
    p.ml = 0x64006400u;
    p.mh = 0x54005400u;
    int mtiles = 0;
    uint64_t wb = 0;
    for (int i = 0; i < a->n; i++) {
        const cuda_weight *w = a->w[i];
        wb += cuda_weight_bytes(w->type, w->rows, w->cols);
        gemms_mat &m = p.m[i];
        wmat_planes(m, w);
        m.y = a->y[i];
        m.rows = (int)w->rows;
        m.ldy = a->ldy[i];
        m.mtiles = (m.rows + 16 * gs_warps(p.T) - 1) / (16 * gs_warps(p.T));
        mtiles += m.mtiles;
        p.row0[i] = p.ws_rows;
        p.ws_rows += m.rows;
    }
    {
        size_t smem = 0;
        if (g2_wants(a, p.T, p.K, a->work ? a->work_bytes : 0, &p.unit, &p.stages, &smem, &p.grid, &p.trows, &p.ntiles,
                     &p.c2)) {
            for (int i = 0; i < a->n; i++) p.m[i].mtiles = (p.m[i].rows + p.trows - 1) / p.trows;
            p.ws = a->work;
            if (type == QT_Q8_0) return g2_launch_t<QT_Q8_0>(p, smem, stream, e);
            if (type == QT_Q4_K) return g2_launch_t<QT_Q4_K>(p, smem, stream, e);
            return g2_launch_t<QT_Q6_K>(p, smem, stream, e);
        }
    }
    if (!cuda_gemms_plan(p.T, p.K, mtiles, p.ws_rows, wb, a->work ? a->work_bytes : 0, &p.ksplit, &p.upc))
        return err_set(e, ERR_INVALID, "cuda_gemms: no K split fits (T %d, K %d)", p.T, p.K);
    p.pitch = p.upc * 256 + (type == QT_Q8_0 ? 16 : 32);
    p.cluster = p.ksplit > 1 ? g_cluster : 0;
    p.ws = p.ksplit > 1 && p.cluster != 1 ? a->work : NULL;
    if (type == QT_Q8_0) return gs_launch_t<QT_Q8_0>(p, mtiles, a->work, a->work_bytes, stream, e);
    if (type == QT_Q4_K) return gs_launch_t<QT_Q4_K>(p, mtiles, a->work, a->work_bytes, stream, e);
    if (type == QT_Q6_K) return gs_launch_t<QT_Q6_K>(p, mtiles, a->work, a->work_bytes, stream, e);
    return err_set(e, ERR_UNSUPPORTED, "cuda_gemms: no kernel for type %u", type);
}
