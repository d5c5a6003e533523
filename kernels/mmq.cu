// mmq.cu — Y = X W^T for T > 1 tokens on the int8 tensor cores (mma.sync m16n8k32
// s8 * s8 -> s32), the `fast` precision's product for Q8_0, Q4_K and Q6_K weights.
//
// The input is the mm input's Q8 form (cuda_kern.h): each token row quantized per natural
// block of 32 to int8 (d = amax / 127, as the dp4a GEMV), written by the producer of the
// row (mmin_emit: the residual norm, the activation, cuda_mmin_prepare) next to its f16
// forms, so no extra launch. The weights' codes are used as they are: Q8_0's int8 codes,
// Q4_K's nibbles (0..15, unpacked to int8 in registers). Per 32-block the MMA's int32 sum
// I (read as f32 without a conversion: mma_s8_f32) is scaled in f32:
//   y += (s_w * d_x) * I (+ m_w * d_x * sum(q) for Q4_K's min)
// so the result is the product of the dequantized weights with the dequantized int8
// activation up to f32 rounding order (selftest: test_mmq).
//
// CTA: 128 rows x 64 tokens, 8 warps of 32 rows x 32 tokens; per 64-element chunk of K a
// stage holds the int8 activation tile (64 x 64 B), its block scales (and sums), the codes
// (128 x 64 B Q8_0, 128 x 32 B Q4_K/Q6_K, + Q6_K's 2-bit plane) and the codes' scale bytes,
// filled by cp.async through 3 stages; Q4_K's and Q6_K's scales (and mins) of the chunk are
// decoded once per CTA into a shared table (one thread per row and half). Codes and
// activations are in P64 order: quad lane c finds its fragment bytes of both 32-blocks of a
// chunk in 16 contiguous bytes (8 for 4-bit codes) per row, so a lane loads one LDS.128
// (LDS.64) per row and token and the MMA's k maps to the same 32 P64 positions in A and B:
// block G of a chunk is positions 16c + 8G .. 16c + 8G + 7 (Q6_K: its 16-blocks are the
// first and the last 4 of those 8, so one m16n8k16 each).
// Small grids split K over CTAs (partials in the caller's work buffer, summed in a fixed
// order), as the f16 kernel.
#include "cuda_kern.h"

#include <stdlib.h>
#include <string.h>

#include "fz_part.cuh"
#include "kern_util.cuh"
#include "qfmt.cuh"

#define MQ_M 128
#define MQ_N 64

struct mmq_mat {
    const uint8_t *codes, *hi, *meta;           // the weight's planes (qfmt.cuh)
    uint64_t code_pitch, hi_pitch, meta_pitch;  // bytes per row
    float *y;                        // (T, ldy) f32
    int rows, ldy, mtiles;
};
struct mmq_params {
    mmq_mat m[CUDA_MM_MAX_MATS];
    int n, K, T, accumulate;
    int ksplit;  // CTAs along K (grid.z); > 1: partials to ws, mmq_reduce sums them
    float *ws;   // (ksplit, T, ws_rows) f32
    int ws_rows; // rows of all matrices
    int kcut, kcut1;         // mmq3_kernel, ksplit == 2 (round 8, t64): kcut 0 = K split evenly; > 0 = the
                             // z = 0 CTAs take chunks [0, kcut), the z = 1 CTAs [kcut1, K / 64) (kcut1 =
                             // kcut; kcut + 1 in the tests' control: one chunk lost)
    int row0[CUDA_MM_MAX_MATS];
    const int8_t *xq;        // (T, K) int8, P64
    const float *xd, *xs;    // (T, K / 32) block scales, d * sum(q)
    int cbias[4];            // mmq3_kernel's MMA accumulator: the bits of 1.5 * 2^23 each
    int psel;                // mmq3_kernel: 0x3210, an identity byte permutation
    cuda_defer *defer;       // host side: cuda_mm_args.defer (fz: no reduce launch)
};

// V3: mmq3_kernel's layout (Q4_K's token sums outside the stages, in a superblock ring)
template <uint32_t F, bool V3 = false> struct mmq_cfg {
    static constexpr bool q4 = F == QT_Q4_K, q6 = F == QT_Q6_K, q8 = F == QT_Q8_0;
    static constexpr int wpitch = q4 || q6 ? 32 : 64;  // smem bytes of codes per row and chunk
    static constexpr int hpitch = q6 ? 16 : 0;         // smem bytes of hi bits per row
    static constexpr int mpitch = q4 ? 16 : q6 ? (V3 ? 0 : 8) : 4; // smem bytes of meta per row (V3 Q6_K: in a ring)
    static constexpr int off_xd = MQ_N * 64;
    static constexpr int off_xs = off_xd + MQ_N * 8;
    static constexpr int off_w = off_xs + (q4 && !V3 ? MQ_N * 8 : 0);
    static constexpr int off_h = off_w + MQ_M * wpitch;
    static constexpr int off_m = off_h + MQ_M * hpitch;
    static constexpr int stage = off_m + MQ_M * mpitch;
    static constexpr int stages = 3;
    // Q4_K / Q6_K: the current chunk's scales decoded once per CTA, f32 [row][4]:
    // Q4_K s, m of block 0, s, m of block 1; Q6_K s of the four 16-blocks
    static constexpr bool dec = q4 || q6;
    static constexpr int off_dec = stage * stages;
    static constexpr int smem = off_dec + (dec ? MQ_M * 16 : 0);
    // mmq3_kernel's tables after the stages (V3). Q4_K: the decoded scales of the 4 chunks of
    // the current superblock [4][128 rows] float4 {s0, s1, nM0, nM1}; its mins as floats
    // [128 rows][8 blocks] (0 for blocks outside the CTA's K range); -dmin [128 rows]; the
    // tokens' sums of 2 superblocks (ring by superblock parity) [2][64 tokens][8 blocks].
    // Q6_K: [2 chunks][128 rows] float4 {s0..s3} + float4 {nM0..nM3} (chunk parity; the next
    // chunk's is built during this one) and the meta of 4 chunks [4][128 rows][8 bytes: f16 d,
    // 2 pad, the chunk's 4 int8 scales] (a ring by chunk & 3, copied one chunk ahead). Q8_0: each warp's own
    // [8 warps][32 rows] float4 {s0, s1, nM0, nM1}, built at the start of each chunk (run 2: the
    // same double-buffered with the d one chunk ahead cost more instructions than it saved).
    static constexpr int off_tm = off_dec + 4 * MQ_M * 16;
    static constexpr int off_td = off_tm + MQ_M * 32;
    static constexpr int off_xr = off_td + MQ_M * 4;
    static constexpr int off_mr = off_dec + 2 * MQ_M * 32; // Q6_K's meta ring
    static constexpr int smem3 = q4 ? off_xr + 2 * MQ_N * 32 : q8 ? off_dec + MQ_M * 32 : off_mr + 4 * MQ_M * 8;
};

__device__ __forceinline__ void mq_cp16(void *dst, const void *src, bool valid) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void mq_cp8(void *dst, const void *src, bool valid) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 8 : 0));
}
__device__ __forceinline__ void mq_cp4(void *dst, const void *src, bool valid) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void mq_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void mq_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// r = A (16x32 s8, row) * B (32x8 s8, col) as f32. The s32 accumulator starts at the bits
// of 1.5 * 2^23, so for |dot| < 2^22 (a 32-block's dot is at most 32 * 127 * 128 in
// magnitude) the result's bits are the f32 1.5 * 2^23 + dot, and one exact FADD gives the
// dot: the I2F conversion (a slow pipe) is not needed.
__device__ __forceinline__ void mma_s8_f32(float *r, const uint32_t *a, uint32_t b0, uint32_t b1) {
    int d[4];
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%10,%10,%10,%10};\n"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(0x4b400000));
#pragma unroll
    for (int i = 0; i < 4; i++) r[i] = __int_as_float(d[i]) - 12582912.0f;
}

// cp.async copies of chunk kc into stage buffer sb.
template <uint32_t F>
__device__ __forceinline__ void mmq_load_stage(uint8_t *sb, const mmq_params &p, const mmq_mat &M, int m0, int n0,
                                               int kc) {
    using C = mmq_cfg<F>;
    const int tid = threadIdx.x, nb = p.K / 32;
    const int ntok = min(MQ_N, p.T - n0); // tokens past T are never read back
    if (tid < ntok * 4) { // 256 threads: one 16-byte piece each at most
        const int tok = tid >> 2, part = tid & 3;
        mq_cp16(sb + tok * 64 + part * 16, p.xq + (size_t)(n0 + tok) * p.K + (size_t)kc * 64 + part * 16, true);
    }
    if (tid < ntok) mq_cp8(sb + C::off_xd + tid * 8, p.xd + (size_t)(n0 + tid) * nb + 2 * kc, true);
    if constexpr (C::q4) {
        if (tid >= 64 && tid - 64 < ntok)
            mq_cp8(sb + C::off_xs + (tid - 64) * 8, p.xs + (size_t)(n0 + tid - 64) * nb + 2 * kc, true);
    }
    constexpr int ppr = C::wpitch / 16; // 16-byte pieces per row
    static_assert(MQ_M * ppr % 256 == 0, "whole rounds of pieces");
#pragma unroll
    for (int i = 0; i < MQ_M * ppr / 256; i++) {
        const int piece = tid + 256 * i, row = piece / ppr, part = piece % ppr;
        const bool v = m0 + row < M.rows;
        const uint8_t *src = M.codes + (uint64_t)(v ? m0 + row : 0) * M.code_pitch + (size_t)kc * C::wpitch + part * 16;
        mq_cp16(sb + C::off_w + row * C::wpitch + part * 16, src, v);
    }
    if (tid < MQ_M) {
        const bool v = m0 + tid < M.rows;
        const uint8_t *mr = M.meta + (uint64_t)(v ? m0 + tid : 0) * M.meta_pitch;
        if constexpr (C::q4) {
            mq_cp16(sb + C::off_m + tid * 16, mr + (size_t)(kc >> 2) * 16, v); // superblock head
        } else if constexpr (C::q6) {
            // f16 d (+ 2 pad bytes), then the int8 scales of the chunk's four 16-blocks
            mq_cp4(sb + C::off_m + tid * 8, mr + (size_t)(kc >> 2) * 20, v);
            mq_cp4(sb + C::off_m + tid * 8 + 4, mr + (size_t)(kc >> 2) * 20 + 4 + 4 * (kc & 3), v);
            mq_cp16(sb + C::off_h + tid * 16, M.hi + (uint64_t)(v ? m0 + tid : 0) * M.hi_pitch + (size_t)kc * 16, v);
        } else {
            mq_cp4(sb + C::off_m + tid * 4, mr + (size_t)kc * 4, v); // f16 d of 2 blocks
        }
    }
}

// Q4_K: one code word of a quarter (elements 0..7 of it, nibbles interleaved as
// cuda_kern.h says) -> int8 elements 0..3 and 4..7 in order.
__device__ __forceinline__ void mq_unpack(uint32_t w, uint32_t &e03, uint32_t &e47) {
    const uint32_t lo = w & 0x0f0f0f0fu, hi = (w >> 4) & 0x0f0f0f0fu; // [e0 e4 e1 e5], [e2 e6 e3 e7]
    e03 = __byte_perm(lo, hi, 0x6420);
    e47 = __byte_perm(lo, hi, 0x7531);
}

// Q6_K: the same word with its hi-plane bits t = (the quarter's 2-bit word >> 8 w) &
// 0x00ff00ff (bits 2j of byte 0: element 2j's, of byte 2: element 2j + 1's) -> int8
// codes minus 32 (-32..31), elements 0..3 and 4..7 in order.
__device__ __forceinline__ void mq_unpack6(uint32_t w, uint32_t t, uint32_t &e03, uint32_t &e47) {
    uint32_t lo = w & 0x0f0f0f0fu, hi = (w >> 4) & 0x0f0f0f0fu;                // [e0 e4 e1 e5], [e2 e6 e3 e7]
    const uint32_t y = (t & 0x000f000fu) | ((t & 0x00f000f0u) << 4);          // hi bits of [e0 e4 e1 e5] in bits 0-1
    lo |= (y & 0x03030303u) << 4;
    hi |= ((y >> 2) & 0x03030303u) << 4;
    // bytewise c - 32 without borrows between bytes
    e03 = ((__byte_perm(lo, hi, 0x6420) | 0x80808080u) - 0x20202020u) ^ 0x80808080u;
    e47 = ((__byte_perm(lo, hi, 0x7531) | 0x80808080u) - 0x20202020u) ^ 0x80808080u;
}

// r = A (16x16 s8) * B (16x8 s8) as f32, the same bias as mma_s8_f32 (Q6_K's 16-blocks:
// of a 32-block's k, 0..15 — registers a0, a1, b0 — are one 16-block, 16..31 the other).
__device__ __forceinline__ void mma_s8k16_f32(float *r, uint32_t a0, uint32_t a1, uint32_t b0) {
    int d[4];
    asm volatile("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
                 "{%7,%7,%7,%7};\n"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(a0), "r"(a1), "r"(b0), "r"(0x4b400000));
#pragma unroll
    for (int i = 0; i < 4; i++) r[i] = __int_as_float(d[i]) - 12582912.0f;
}

template <uint32_t F>
__global__ __launch_bounds__(256, 2) void mmq_kernel(const mmq_params p) {
    using C = mmq_cfg<F>;
    extern __shared__ __align__(16) uint8_t smem[];
    pdl_trigger();
    pdl_wait();
    int b = blockIdx.x, mi = 0;
    while (mi + 1 < p.n && b >= p.m[mi].mtiles) b -= p.m[mi++].mtiles;
    const mmq_mat &M = p.m[mi];
    const int m0 = b * MQ_M, n0 = blockIdx.y * MQ_N;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
    const int wm = warp & 3, wn = warp >> 2; // rows 32 wm.., tokens 32 wn..
    const int nk_all = p.K / 64;
    const int kz0 = (int)((long)nk_all * blockIdx.z / p.ksplit), kz1 = (int)((long)nk_all * (blockIdx.z + 1) / p.ksplit);
    const int nk = kz1 - kz0;
    const int ntiles = max(0, min(4, (p.T - n0 - 32 * wn + 7) / 8)); // n8 tiles of this warp with tokens

    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

#pragma unroll
    for (int s = 0; s < C::stages - 1; s++) {
        if (s < nk) mmq_load_stage<F>(smem + s * C::stage, p, M, m0, n0, kz0 + s);
        mq_commit();
    }
    for (int kc = 0; kc < nk; kc++) {
        mq_wait<C::stages - 2>();
        __syncthreads();
        {
            const int kn = kc + C::stages - 1;
            if (kn < nk) mmq_load_stage<F>(smem + (kn % C::stages) * C::stage, p, M, m0, n0, kz0 + kn);
            mq_commit();
        }
        const uint8_t *sb = smem + (kc % C::stages) * C::stage;
        if constexpr (C::dec) {
            // one thread per (row, half): the barrier at the top of the next iteration keeps
            // these writes after every warp's reads of this chunk's table
            float *dt = (float *)(smem + C::off_dec);
            const int r = threadIdx.x >> 1, hf = threadIdx.x & 1;
            if constexpr (C::q4) {
                float sv, mv;
                group_sm<F>(sb + C::off_m + r * 16, 2 * ((kz0 + kc) & 3) + hf, sv, mv);
                *(float2 *)(dt + 4 * r + 2 * hf) = make_float2(sv, mv);
            } else {
                const uint8_t *mb = sb + C::off_m + r * 8;
                const float d = f16_bits_to_f32(*(const uint16_t *)mb);
                *(float2 *)(dt + 4 * r + 2 * hf) = make_float2(__fmul_rn(d, (float)(int8_t)mb[4 + 2 * hf]),
                                                               __fmul_rn(d, (float)(int8_t)mb[5 + 2 * hf]));
            }
            __syncthreads();
        }
        if (ntiles == 0) continue; // warp-uniform: no tokens for this warp
        // A fragments of both 32-blocks: a[mt][G][4]; scales sw[mt][h][G] (h: row g, g + 8), mins mw
        constexpr int NS = C::q6 ? 4 : 2; // scale groups per chunk
        uint32_t a[2][2][4];
        float sw[2][2][NS], mw[2][2][2];
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = wm * 32 + mt * 16 + g + 8 * h;
                if constexpr (C::q4) {
                    const uint2 v = *(const uint2 *)(sb + C::off_w + r * 32 + 8 * c);
                    mq_unpack(v.x, a[mt][0][h], a[mt][0][2 + h]);
                    mq_unpack(v.y, a[mt][1][h], a[mt][1][2 + h]);
                    const float4 t = *(const float4 *)(smem + C::off_dec + r * 16);
                    sw[mt][h][0] = t.x; mw[mt][h][0] = t.y;
                    sw[mt][h][1] = t.z; mw[mt][h][1] = t.w;
                } else if constexpr (C::q6) {
                    const uint2 v = *(const uint2 *)(sb + C::off_w + r * 32 + 8 * c);
                    const uint32_t hb = *(const uint32_t *)(sb + C::off_h + r * 16 + 4 * c);
                    mq_unpack6(v.x, hb & 0x00ff00ffu, a[mt][0][h], a[mt][0][2 + h]);
                    mq_unpack6(v.y, (hb >> 8) & 0x00ff00ffu, a[mt][1][h], a[mt][1][2 + h]);
                    const float4 t = *(const float4 *)(smem + C::off_dec + r * 16);
                    sw[mt][h][0] = t.x; sw[mt][h][1] = t.y; sw[mt][h][2] = t.z; sw[mt][h][3] = t.w;
                    mw[mt][h][0] = mw[mt][h][1] = 0.0f;
                } else {
                    const uint4 v = *(const uint4 *)(sb + C::off_w + r * 64 + 16 * c);
                    a[mt][0][h] = v.x; a[mt][0][2 + h] = v.y;
                    a[mt][1][h] = v.z; a[mt][1][2 + h] = v.w;
                    const uint32_t dd = *(const uint32_t *)(sb + C::off_m + r * 4);
                    sw[mt][h][0] = f16_bits_to_f32((uint16_t)(dd & 0xffffu));
                    sw[mt][h][1] = f16_bits_to_f32((uint16_t)(dd >> 16));
                    mw[mt][h][0] = mw[mt][h][1] = 0.0f;
                }
            }
        }
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            if (nt >= ntiles) break;
            const int tl = wn * 32 + nt * 8; // the n8 tile's first token in the CTA tile
            const uint4 xb = *(const uint4 *)(sb + (tl + g) * 64 + 16 * c);
            const float2 d0 = *(const float2 *)(sb + C::off_xd + (tl + 2 * c) * 8);     // token 2c: blocks 0, 1
            const float2 d1 = *(const float2 *)(sb + C::off_xd + (tl + 2 * c + 1) * 8); // token 2c + 1
            float2 s0 = make_float2(0.0f, 0.0f), s1 = s0;
            if constexpr (C::q4) {
                s0 = *(const float2 *)(sb + C::off_xs + (tl + 2 * c) * 8);
                s1 = *(const float2 *)(sb + C::off_xs + (tl + 2 * c + 1) * 8);
            }
#pragma unroll
            for (int G = 0; G < 2; G++) {
                const uint32_t b0 = G ? xb.z : xb.x, b1 = G ? xb.w : xb.y;
                const float dx0 = G ? d0.y : d0.x, dx1 = G ? d1.y : d1.x;
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    float *o = acc[mt][nt];
                    if constexpr (C::q6) {
#pragma unroll
                        for (int hf = 0; hf < 2; hf++) {
                            float t[4];
                            mma_s8k16_f32(t, a[mt][G][2 * hf], a[mt][G][2 * hf + 1], hf ? b1 : b0);
                            const float w0 = sw[mt][0][2 * G + hf], w8 = sw[mt][1][2 * G + hf];
                            o[0] = fmaf(t[0], w0 * dx0, o[0]);
                            o[1] = fmaf(t[1], w0 * dx1, o[1]);
                            o[2] = fmaf(t[2], w8 * dx0, o[2]);
                            o[3] = fmaf(t[3], w8 * dx1, o[3]);
                        }
                        continue;
                    }
                    float t[4];
                    mma_s8_f32(t, a[mt][G], b0, b1);
                    o[0] = fmaf(t[0], sw[mt][0][G] * dx0, o[0]);
                    o[1] = fmaf(t[1], sw[mt][0][G] * dx1, o[1]);
                    o[2] = fmaf(t[2], sw[mt][1][G] * dx0, o[2]);
                    o[3] = fmaf(t[3], sw[mt][1][G] * dx1, o[3]);
                    if constexpr (C::q4) {
                        const float xs0 = G ? s0.y : s0.x, xs1 = G ? s1.y : s1.x;
                        o[0] = fmaf(mw[mt][0][G], xs0, o[0]);
                        o[1] = fmaf(mw[mt][0][G], xs1, o[1]);
                        o[2] = fmaf(mw[mt][1][G], xs0, o[2]);
                        o[3] = fmaf(mw[mt][1][G], xs1, o[3]);
                    }
                }
            }
        }
    }
    mq_wait<0>();
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
        const int rg = m0 + wm * 32 + mt * 16 + g, rg8 = rg + 8;
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            if (nt >= ntiles) break;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int tk = n0 + wn * 32 + nt * 8 + 2 * c + h;
                if (tk >= p.T) continue;
                if (p.ksplit > 1) {
                    float *w = p.ws + ((size_t)blockIdx.z * p.T + tk) * p.ws_rows + p.row0[mi];
                    if (rg < M.rows) w[rg] = acc[mt][nt][h];
                    if (rg8 < M.rows) w[rg8] = acc[mt][nt][2 + h];
                    continue;
                }
                float *y = M.y + (size_t)tk * M.ldy;
                if (rg < M.rows) y[rg] = p.accumulate ? y[rg] + acc[mt][nt][h] : acc[mt][nt][h];
                if (rg8 < M.rows) y[rg8] = p.accumulate ? y[rg8] + acc[mt][nt][2 + h] : acc[mt][nt][2 + h];
            }
        }
    }
}

// ---- round 5 (mmq3_kernel): the same tiles, stages and smem layout as mmq_kernel (kept for
// the A/B: SPARKD_MMQ_OLD=1), fewer instructions per MMA:
// - per output and 32-block two FFMAs: t = fma(bits(D), s_w, nM), y = fma(t, d_x, y), with
//   nM = -1.5 * 2^23 * s_w per row and block, computed once per chunk. Exact: bits(D) as f32
//   is 1.5 * 2^23 + dot (|dot| < 2^22, see mma_s8_f32), s_w has at most 18 significant bits
//   (Q8_0: an f16 d, 11 bits; Q4_K: f16 d times a 6-bit scale, 17; Q6_K: f16 d times an int8
//   scale, 18) and 1.5 * 2^23 = 3 * 2^22 two, so nM is exact in f32 and the FMA's exact
//   product 1.5 * 2^23 * s_w + dot * s_w cancels against it exactly: t = round(dot * s_w),
//   one rounding, where the old kernel rounded s_w * d_x instead (same error bound).
// - the MMA's C operand: 4 registers from a kernel parameter (cbias, the host sets the bits
//   of 1.5 * 2^23; 2 LDC.64 a chunk), never the destination;
// - Q8_0's A fragments through an identity PRMT (opaque selector psel): the MMA's A registers
//   interleave rows g and g + 8, an LDS.128 holds one row, and plain copies were rebuilt
//   before every MMA (4 moves an MMA); fresh values are placed once a chunk (1 PRMT an MMA);
// - the cp.async plumbing out of the chunk loop: per-thread source pointers (the matrix's
//   fields read once), advanced by one IMAD.WIDE a chunk, per-thread predicates and shared
//   destinations, stage offsets rotated without a division; the weights' first stages go out
//   before the PDL wait (weights are never written by a kernel);
// - scales: Q8_0 converted per warp into a private table, Q4_K decoded once per superblock,
//   and Q4_K's min term once per superblock on the tf32 tensor cores (see below).

// r = A (16x32 s8) * B (32x8 s8) + C (s32), raw bits (mma_s8_f32's bias comes in C).
__device__ __forceinline__ void mma_s8_raw(uint32_t (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                                           const uint32_t (&cb)[4]) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};\n"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(cb[0]), "r"(cb[1]), "r"(cb[2]),
          "r"(cb[3]));
}
// The same for m16n8k16 (Q6_K's 16-blocks).
__device__ __forceinline__ void mma_s8k16_raw(uint32_t (&d)[4], uint32_t a0, uint32_t a1, uint32_t b0,
                                              const uint32_t (&cb)[4]) {
    asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%8,%9,%10};\n"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a0), "r"(a1), "r"(b0), "r"(cb[0]), "r"(cb[1]), "r"(cb[2]), "r"(cb[3]));
}
// d = A (16x8 tf32) * B (8x8 tf32) + c, f32 (Q4_K's min term per superblock).
__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, const float (&c)[4]) {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}
// x rounded to tf32 (nearest, ties away), for finite x (cvt.rna.tf32.f32 without its inf/NaN
// handling: 2 instructions instead of 4)
__device__ __forceinline__ uint32_t tf32_rna(float x) { return (__float_as_uint(x) + 0x1000u) & 0xffffe000u; }
__device__ __forceinline__ void mq3_cp16(uint32_t dst, const void *src, int size) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(size));
}
// predicated in the instruction (no branch around the address arithmetic): copies when on != 0
__device__ __forceinline__ void mq3_cp16p(uint32_t dst, const void *src, int on) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %2, 0;\n@p cp.async.cg.shared.global [%0], [%1], 16;\n}\n" ::"r"(dst),
                 "l"(src), "r"(on));
}
__device__ __forceinline__ void mq3_cp8p(uint32_t dst, const void *src, int on) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %2, 0;\n@p cp.async.ca.shared.global [%0], [%1], 8;\n}\n" ::"r"(dst),
                 "l"(src), "r"(on));
}
__device__ __forceinline__ void mq3_cp4(uint32_t dst, const void *src, int size) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(size));
}

// One thread's share of a stage's cp.async copies, set up once: sources at chunk kz0, each
// advanced by a constant per chunk (j: chunks after kz0), destinations relative to the stage.
template <uint32_t F> struct mq3_loader {
    using C = mmq_cfg<F, true>;
    static constexpr int NW = C::wpitch == 64 ? 2 : 1; // 16-byte code pieces per thread
    const uint8_t *xq, *xd, *w[NW], *meta, *hi;
    int wsz[NW], msz;        // cp.async source sizes (0: row past the matrix, zero fill)
    int has_x, has_d;        // this thread copies activation bytes / scales (/ sums)
    bool has_m;              // this thread copies a row's meta
    int kz0, nk;
    uint32_t sbase;          // shared address of the dynamic shared memory

    __device__ __forceinline__ void init(const mmq_params &p, int mi, int m0, int n0, int kz0_, int nk_, uint32_t sbase_) {
        const int tid = threadIdx.x, nb = p.K / 32, ntok = min(MQ_N, p.T - n0);
        kz0 = kz0_;
        nk = nk_;
        sbase = sbase_;
        const uint8_t *codes = p.m[mi].codes, *mt = p.m[mi].meta;
        const uint64_t cp = p.m[mi].code_pitch, mp = p.m[mi].meta_pitch;
        const int rows = p.m[mi].rows;
        has_x = tid < ntok * 4;
        xq = (const uint8_t *)p.xq + (size_t)(n0 + (has_x ? tid >> 2 : 0)) * p.K + (size_t)kz0 * 64 + (tid & 3) * 16;
        // threads 0..63 the tokens' block scales, 64..127 (Q4_K) their sums: both 8 bytes a chunk
        const int dt = tid & 63;
        has_d = dt < ntok && (C::q4 ? tid < 128 : tid < 64);
        xd = (const uint8_t *)(C::q4 && tid >= 64 ? p.xs : p.xd) + ((size_t)(n0 + (has_d ? dt : 0)) * nb + 2 * (size_t)kz0) * 4;
#pragma unroll
        for (int i = 0; i < NW; i++) {
            constexpr int ppr = C::wpitch / 16;
            const int piece = tid + 256 * i, row = piece / ppr, part = piece % ppr;
            const bool v = m0 + row < rows;
            w[i] = codes + (uint64_t)(v ? m0 + row : 0) * cp + (size_t)kz0 * C::wpitch + part * 16;
            wsz[i] = v ? 16 : 0;
        }
        const bool vm = tid < MQ_M && m0 + tid < rows;
        has_m = tid < MQ_M;
        msz = vm ? 4 : 0;
        meta = mt + (uint64_t)(vm ? m0 + tid : 0) * mp;
        hi = NULL;
        if constexpr (C::q8) meta += (size_t)kz0 * 4;
        if constexpr (C::q6) hi = p.m[mi].hi + (uint64_t)(vm ? m0 + tid : 0) * p.m[mi].hi_pitch + (size_t)kz0 * 16;
        // opaque to the compiler: each source is then one 64-bit register pair advanced by one
        // IMAD.WIDE a chunk (else the uniform matrix base is re-added to a per-thread offset
        // every chunk: three instructions a copy)
        opaque(xq); opaque(xd); opaque(meta);
#pragma unroll
        for (int i = 0; i < NW; i++) opaque(w[i]);
        if constexpr (C::q6) opaque(hi);
    }
    static __device__ __forceinline__ void opaque(const uint8_t *&ptr) { asm("mov.b64 %0, %0;" : "+l"(ptr)); }
    // weights of chunk kz0 + j into the stage at shared address s
    __device__ __forceinline__ void weights(uint32_t s, int j) const {
        const int tid = threadIdx.x;
#pragma unroll
        for (int i = 0; i < NW; i++) mq3_cp16(s + C::off_w + (tid + 256 * i) * 16, w[i] + (size_t)(unsigned)j * C::wpitch, wsz[i]);
        if (has_m) {
            if constexpr (C::q4) {
                mq3_cp16(s + C::off_m + tid * 16, meta + (size_t)((unsigned)(kz0 + j) >> 2) * 16, msz * 4);
            } else if constexpr (C::q6) {
                mq3_cp16(s + C::off_h + tid * 16, hi + (size_t)(unsigned)j * 16, msz * 4);
                if (j + 1 < nk) meta_q6(j + 1); // one chunk ahead, into the ring
            } else {
                mq3_cp4(s + C::off_m + tid * 4, meta + (size_t)(unsigned)j * 4, msz); // f16 d of 2 blocks
            }
        }
    }
    // Q6_K: the f16 d (+ 2 pad bytes) and the 4 int8 scales of chunk kz0 + j of row tid into
    // ring slot j & 3
    __device__ __forceinline__ void meta_q6(int j) const {
        const unsigned k = (unsigned)(kz0 + j);
        const uint8_t *mb = meta + (size_t)(k >> 2) * 20;
        const uint32_t d = sbase + C::off_mr + (j & 3) * (MQ_M * 8) + threadIdx.x * 8;
        mq3_cp4(d, mb, msz);
        mq3_cp4(d + 4, mb + 4 + 4 * (k & 3), msz);
    }
    // activations (int8 rows, block scales, Q4_K's sums) of chunk kz0 + j
    __device__ __forceinline__ void acts(uint32_t s, int j) const {
        const int tid = threadIdx.x;
        mq3_cp16p(s + tid * 16, xq + (size_t)(unsigned)j * 64, has_x);
        uint32_t dd = s + C::off_xd + tid * 8;
        if constexpr (C::q4) { // threads 64..127: the sums of chunk k into the superblock ring
            const unsigned k = (unsigned)(kz0 + j);
            if (tid >= 64) dd = sbase + C::off_xr + ((k >> 2) & 1) * (MQ_N * 32) + (tid - 64) * 32 + (k & 3) * 8;
        }
        mq3_cp8p(dd, xd + (size_t)(unsigned)j * 8, has_d);
    }
};

template <uint32_t F>
__global__ __launch_bounds__(256, 2) void mmq3_kernel(const mmq_params p) {
    using C = mmq_cfg<F, true>;
    static_assert(C::smem3 <= 48 * 1024, "2 CTAs per SM on a GB10 (100 KB of shared memory)");
    extern __shared__ __align__(16) uint8_t smem[];
    pdl_trigger();
    int b = blockIdx.x, mi = 0;
    while (mi + 1 < p.n && b >= p.m[mi].mtiles) b -= p.m[mi++].mtiles;
    const int m0 = b * MQ_M, n0 = blockIdx.y * MQ_N;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, c = lane & 3;
    const int wm = warp & 3, wn = warp >> 2; // rows 32 wm.., tokens 32 wn..
    const int nk_all = p.K / 64;
    // K range: an even split by blockIdx.z, or (kcut > 0, ksplit 2) t64's uneven one (mmq_t64_cut)
    const int kz0 = p.kcut > 0 ? (blockIdx.z ? p.kcut1 : 0) : (int)((long)nk_all * blockIdx.z / p.ksplit);
    const int kz1 = p.kcut > 0 ? (blockIdx.z ? nk_all : p.kcut) : (int)((long)nk_all * (blockIdx.z + 1) / p.ksplit);
    const int nk = kz1 - kz0;
    const int ntiles = max(0, min(4, (p.T - n0 - 32 * wn + 7) / 8)); // n8 tiles of this warp with tokens
    // all 4 tiles have tokens (ntiles == 4), as its own comparison: ptxas 13.0 turned
    // `ntiles == 4` into the predicate output of the clamp's VIMNMX.RELU, which on the H200 held
    // only where the clamp did not cut (run 2: 15 of 16 warps at T = 512 took the branchy path)
    const bool full4 = p.T - n0 - 32 * wn > 24;
    const uint32_t cb[4] = {(uint32_t)p.cbias[0], (uint32_t)p.cbias[1], (uint32_t)p.cbias[2], (uint32_t)p.cbias[3]};
    const uint32_t psel = (uint32_t)p.psel; // 0x3210: __byte_perm(x, 0, psel) == x

    const uint32_t s0 = (uint32_t)__cvta_generic_to_shared(smem);
    mq3_loader<F> L;
    L.init(p, mi, m0, n0, kz0, nk, s0);
    if constexpr (C::q4) {
        // the sums ring starts at 0: blocks outside the K range (min 0) must not meet a NaN
        static_assert(2 * MQ_N * 32 == 256 * 16, "one 16-byte store per thread");
        *(float4 *)(smem + C::off_xr + threadIdx.x * 16) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        __syncthreads();
    }
    // stages 0 and 1: weights before the PDL wait, activations after it; group 0 = stage 0's
    // copies and stage 1's weights, group 1 = stage 1's activations
#pragma unroll
    for (int s = 0; s < C::stages - 1; s++)
        if (s < nk) L.weights(s0 + s * C::stage, s);
    if constexpr (C::q6)
        if (threadIdx.x < MQ_M && nk > 0) L.meta_q6(0);
    pdl_wait();
#pragma unroll
    for (int s = 0; s < C::stages - 1; s++) {
        if (s < nk) L.acts(s0 + s * C::stage, s);
        mq_commit();
    }

    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

    int rd = 0, wr = (C::stages - 1) * C::stage; // stage offsets of chunk kc and kc + 2
    for (int kc = 0; kc < nk; kc++) {
        mq_wait<C::stages - 2>();
        __syncthreads();
        if (kc + C::stages - 1 < nk) {
            L.weights(s0 + wr, kc + C::stages - 1);
            L.acts(s0 + wr, kc + C::stages - 1);
        }
        mq_commit();
        const uint8_t *sb = smem + rd;
        rd = rd == (C::stages - 1) * C::stage ? 0 : rd + C::stage;
        wr = wr == (C::stages - 1) * C::stage ? 0 : wr + C::stage;
        const int q = (kz0 + kc) & 3; // chunk in the superblock (Q4_K)
        if constexpr (C::q4) {
            // the superblock's 8 scales and mins, once per superblock (and at the first chunk:
            // a K split may start inside one): thread (row, half) decodes groups 4 half ..
            // 4 half + 3, chunks 2 half and 2 half + 1; 4 bytes at a time (kscale_min's bits)
            if (kc == 0 || q == 0) {
                const int r = threadIdx.x >> 1, hf = threadIdx.x & 1;
                const uint4 hd = *(const uint4 *)(sb + C::off_m + r * 16); // d, dmin, scales[12]
                uint32_t sc4, mn4;
                if (hf == 0) {
                    sc4 = hd.y & 0x3f3f3f3fu;
                    mn4 = hd.z & 0x3f3f3f3fu;
                } else {
                    sc4 = (hd.w & 0x0f0f0f0fu) | ((hd.y >> 2) & 0x30303030u);
                    mn4 = ((hd.w >> 4) & 0x0f0f0f0fu) | ((hd.z >> 2) & 0x30303030u);
                }
                const float d = f16_bits_to_f32((uint16_t)(hd.x & 0xffffu)), dmin = f16_bits_to_f32((uint16_t)(hd.x >> 16));
                const int c0 = (kz0 + kc) & ~3; // the superblock's first chunk
                float mn[4];
#pragma unroll
                for (int u = 0; u < 2; u++) {
                    const float s0 = __fmul_rn(d, (float)((sc4 >> (16 * u)) & 0xffu));
                    const float s1 = __fmul_rn(d, (float)((sc4 >> (16 * u + 8)) & 0xffu));
                    const int qq = 2 * hf + u;
                    // nM exact: s = d * (6-bit scale), <= 17 significant bits
                    *(float4 *)(smem + C::off_dec + (qq * MQ_M + r) * 16) = make_float4(s0, s1, -12582912.0f * s0, -12582912.0f * s1);
                    const bool in = c0 + qq >= kz0 && c0 + qq < kz0 + nk; // chunk in this CTA's K range
                    mn[2 * u] = in ? (float)((mn4 >> (16 * u)) & 0xffu) : 0.0f;
                    mn[2 * u + 1] = in ? (float)((mn4 >> (16 * u + 8)) & 0xffu) : 0.0f;
                }
                *(float4 *)(smem + C::off_tm + r * 32 + hf * 16) = make_float4(mn[0], mn[1], mn[2], mn[3]);
                if (hf == 0) *(float *)(smem + C::off_td + r * 4) = -dmin;
                __syncthreads();
            }
        } else if constexpr (C::q6) {
            // one thread per (row, half) decodes s of 2 16-blocks and their nM of chunk k into the
            // table of parity k & 1: chunk 0's before its reads (a barrier), chunk kc + 1's now
            // (its meta came with chunk kc's codes; the next chunk's barrier orders the writes
            // before their reads and after every read of the table's previous chunk, kc - 1)
            auto q6_table = [&](int k) {
                float *dt = (float *)(smem + C::off_dec) + (k & 1) * (MQ_M * 8) + 8 * (threadIdx.x >> 1);
                const int hf = threadIdx.x & 1;
                const uint8_t *mb = smem + C::off_mr + (k & 3) * (MQ_M * 8) + (threadIdx.x >> 1) * 8;
                const float d = f16_bits_to_f32(*(const uint16_t *)mb);
                const float sa = __fmul_rn(d, (float)(int8_t)mb[4 + 2 * hf]), sc = __fmul_rn(d, (float)(int8_t)mb[5 + 2 * hf]);
                *(float2 *)(dt + 2 * hf) = make_float2(sa, sc);
                *(float2 *)(dt + 4 + 2 * hf) = make_float2(-12582912.0f * sa, -12582912.0f * sc); // exact: <= 18 bits
            };
            if (kc == 0) {
                q6_table(0);
                __syncthreads();
            }
            q6_table(kc + 1); // after the last chunk: stale ring bytes, never read
        }
        if constexpr (C::q8) {
            // Q8_0: each warp converts its own 32 rows' f16 d (lane = row) into a private table
            // (the barrier at the top of the next chunk orders the next writes after these reads)
            const uint32_t dd = *(const uint32_t *)(sb + C::off_m + (wm * 32 + lane) * 4);
            const float s0 = f16_bits_to_f32((uint16_t)(dd & 0xffffu)), s1 = f16_bits_to_f32((uint16_t)(dd >> 16));
            // nM exact: an f16 d, 11 significant bits
            *(float4 *)(smem + C::off_dec + (warp * 32 + lane) * 16) = make_float4(s0, s1, -12582912.0f * s0, -12582912.0f * s1);
            __syncwarp();
        }
        if (ntiles == 0) continue; // warp-uniform: no tokens for this warp
        constexpr int NS = C::q6 ? 4 : 2; // scale groups per chunk
        uint32_t a[2][2][4];
        float sw[2][2][NS], nm[2][2][NS];
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = wm * 32 + mt * 16 + g + 8 * h;
                if constexpr (C::q4) {
                    const uint2 v = *(const uint2 *)(sb + C::off_w + r * 32 + 8 * c);
                    mq_unpack(v.x, a[mt][0][h], a[mt][0][2 + h]);
                    mq_unpack(v.y, a[mt][1][h], a[mt][1][2 + h]);
                    const float4 t = *(const float4 *)(smem + C::off_dec + (q * MQ_M + r) * 16);
                    sw[mt][h][0] = t.x; sw[mt][h][1] = t.y; nm[mt][h][0] = t.z; nm[mt][h][1] = t.w;
                } else if constexpr (C::q6) {
                    const uint2 v = *(const uint2 *)(sb + C::off_w + r * 32 + 8 * c);
                    const uint32_t hb = *(const uint32_t *)(sb + C::off_h + r * 16 + 4 * c);
                    mq_unpack6(v.x, hb & 0x00ff00ffu, a[mt][0][h], a[mt][0][2 + h]);
                    mq_unpack6(v.y, (hb >> 8) & 0x00ff00ffu, a[mt][1][h], a[mt][1][2 + h]);
                    const float4 t = *(const float4 *)(smem + C::off_dec + (kc & 1) * (MQ_M * 32) + r * 32);
                    const float4 u = *(const float4 *)(smem + C::off_dec + (kc & 1) * (MQ_M * 32) + r * 32 + 16);
                    sw[mt][h][0] = t.x; sw[mt][h][1] = t.y; sw[mt][h][2] = t.z; sw[mt][h][3] = t.w;
                    nm[mt][h][0] = u.x; nm[mt][h][1] = u.y; nm[mt][h][2] = u.z; nm[mt][h][3] = u.w;
                } else {
                    // the words of rows g and g + 8 interleave in an MMA's A registers: an
                    // identity PRMT with an opaque selector (ptxas cannot fold it) makes each a
                    // fresh value placed once per chunk, where plain copies of the LDS.128 result
                    // were rebuilt before every MMA (ptxas reused the copies for D)
                    const uint4 v = *(const uint4 *)(sb + C::off_w + r * 64 + 16 * c);
                    a[mt][0][h] = __byte_perm(v.x, 0, psel); a[mt][0][2 + h] = __byte_perm(v.y, 0, psel);
                    a[mt][1][h] = __byte_perm(v.z, 0, psel); a[mt][1][2 + h] = __byte_perm(v.w, 0, psel);
                    const float4 t = *(const float4 *)(smem + C::off_dec + (warp * 32 + mt * 16 + g + 8 * h) * 16);
                    sw[mt][h][0] = t.x; sw[mt][h][1] = t.y; nm[mt][h][0] = t.z; nm[mt][h][1] = t.w;
                }
            }
        }
        // one n8 token tile: 4 MMAs (Q6_K 8) and their scaling
        auto tile = [&](const int nt) {
            const int tl = wn * 32 + nt * 8; // the n8 tile's first token in the CTA tile
            const uint4 xb = *(const uint4 *)(sb + (tl + g) * 64 + 16 * c);
            // tokens 2c and 2c + 1, blocks 0 and 1: 16 aligned bytes
            const float4 dq = *(const float4 *)(sb + C::off_xd + (tl + 2 * c) * 8);
            const float2 d0 = make_float2(dq.x, dq.y), d1 = make_float2(dq.z, dq.w);
#pragma unroll
            for (int G = 0; G < 2; G++) {
                const uint32_t b0 = G ? xb.z : xb.x, b1 = G ? xb.w : xb.y;
                const float dx0 = G ? d0.y : d0.x, dx1 = G ? d1.y : d1.x;
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    float *o = acc[mt][nt];
                    if constexpr (C::q6) {
#pragma unroll
                        for (int hf = 0; hf < 2; hf++) {
                            uint32_t d[4];
                            mma_s8k16_raw(d, a[mt][G][2 * hf], a[mt][G][2 * hf + 1], hf ? b1 : b0, cb);
                            const int k = 2 * G + hf; // the 16-block
                            o[0] = fmaf(fmaf(__uint_as_float(d[0]), sw[mt][0][k], nm[mt][0][k]), dx0, o[0]);
                            o[1] = fmaf(fmaf(__uint_as_float(d[1]), sw[mt][0][k], nm[mt][0][k]), dx1, o[1]);
                            o[2] = fmaf(fmaf(__uint_as_float(d[2]), sw[mt][1][k], nm[mt][1][k]), dx0, o[2]);
                            o[3] = fmaf(fmaf(__uint_as_float(d[3]), sw[mt][1][k], nm[mt][1][k]), dx1, o[3]);
                        }
                        continue;
                    }
                    uint32_t d[4];
                    mma_s8_raw(d, a[mt][G], b0, b1, cb);
                    o[0] = fmaf(fmaf(__uint_as_float(d[0]), sw[mt][0][G], nm[mt][0][G]), dx0, o[0]);
                    o[1] = fmaf(fmaf(__uint_as_float(d[1]), sw[mt][0][G], nm[mt][0][G]), dx1, o[1]);
                    o[2] = fmaf(fmaf(__uint_as_float(d[2]), sw[mt][1][G], nm[mt][1][G]), dx0, o[2]);
                    o[3] = fmaf(fmaf(__uint_as_float(d[3]), sw[mt][1][G], nm[mt][1][G]), dx1, o[3]);
                }
            }
        };
        if (!C::q6 && full4) {
            // Q8_0, Q4_K: the 4 tiles without branches between them, so the next tile's loads
            // go out before this tile's MMAs (Q6_K: no registers left for it)
#pragma unroll
            for (int nt = 0; nt < 4; nt++) tile(nt);
        } else {
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
                if (nt >= ntiles) break;
                tile(nt);
            }
        }
        if constexpr (C::q4) {
            // Q4_K's min term once per superblock (its last chunk, or the K range's): per row
            // and token sum_b mn[r][b] * xs[t][b] over the 8 blocks on the tf32 tensor cores
            // (mn: 6-bit integers, exact; xs split into a tf32 hi and the rest: ~2^-21 of xs),
            // then y += -dmin * that (one FFMA per output and superblock instead of one per block)
            if (q == 3 || kc == nk - 1) {
                const float *xr = (const float *)(smem + C::off_xr + (((kz0 + kc) >> 2) & 1) * (MQ_N * 32));
                uint32_t am[2][4];
                float dm[2][2];
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    const int r = wm * 32 + mt * 16 + g;
                    const float *tm = (const float *)(smem + C::off_tm);
                    am[mt][0] = __float_as_uint(tm[r * 8 + c]);
                    am[mt][1] = __float_as_uint(tm[(r + 8) * 8 + c]);
                    am[mt][2] = __float_as_uint(tm[r * 8 + c + 4]);
                    am[mt][3] = __float_as_uint(tm[(r + 8) * 8 + c + 4]);
                    dm[mt][0] = ((const float *)(smem + C::off_td))[r];
                    dm[mt][1] = ((const float *)(smem + C::off_td))[r + 8];
                }
#pragma unroll
                for (int nt = 0; nt < 4; nt++) {
                    if (nt >= ntiles) break;
                    const int tk = wn * 32 + nt * 8 + g; // B column g: token tk, blocks c and c + 4
                    const float x0 = xr[tk * 8 + c], x1 = xr[tk * 8 + c + 4];
                    const uint32_t h0 = tf32_rna(x0), h1 = tf32_rna(x1);
                    const uint32_t l0 = __float_as_uint(x0 - __uint_as_float(h0)), l1 = __float_as_uint(x1 - __uint_as_float(h1));
#pragma unroll
                    for (int mt = 0; mt < 2; mt++) {
                        float dd[4];
                        const float z[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                        mma_tf32(dd, am[mt], h0, h1, z);
                        mma_tf32(dd, am[mt], l0, l1, dd);
                        float *o = acc[mt][nt];
                        o[0] = fmaf(dd[0], dm[mt][0], o[0]);
                        o[1] = fmaf(dd[1], dm[mt][0], o[1]);
                        o[2] = fmaf(dd[2], dm[mt][1], o[2]);
                        o[3] = fmaf(dd[3], dm[mt][1], o[3]);
                    }
                }
            }
        }
    }
    mq_wait<0>();
    const mmq_mat &M = p.m[mi];
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
        const int rg = m0 + wm * 32 + mt * 16 + g, rg8 = rg + 8;
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            if (nt >= ntiles) break;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int tk = n0 + wn * 32 + nt * 8 + 2 * c + h;
                if (tk >= p.T) continue;
                if (p.ksplit > 1) {
                    float *w = p.ws + ((size_t)blockIdx.z * p.T + tk) * p.ws_rows + p.row0[mi];
                    if (rg < M.rows) w[rg] = acc[mt][nt][h];
                    if (rg8 < M.rows) w[rg8] = acc[mt][nt][2 + h];
                    continue;
                }
                float *y = M.y + (size_t)tk * M.ldy;
                if (rg < M.rows) y[rg] = p.accumulate ? y[rg] + acc[mt][nt][h] : acc[mt][nt][h];
                if (rg8 < M.rows) y[rg8] = p.accumulate ? y[rg8] + acc[mt][nt][2 + h] : acc[mt][nt][2 + h];
            }
        }
    }
}

// Sums the split-K partials in a fixed order (deterministic), then stores or accumulates.
__global__ void mmq_reduce_kernel(const mmq_params p) {
    pdl_trigger();
    pdl_wait();
    splitk_reduce(p);
}

// The round-4 kernel (mmq_kernel) instead of mmq3_kernel, a bit per type (1 Q8_0, 2 Q4_K,
// 4 Q6_K): SPARKD_MMQ_OLD=1 all of them, or the types named (e.g. SPARKD_MMQ_OLD=q4k,q6k), read
// at the first launch; cuda_mmq_old_set (the selftest's A/B) sets all (1) or none (0), or
// goes back to the environment's choice (-1).
static int mmq_old = -1;
extern "C" void cuda_mmq_old_set(int on) { mmq_old = on < 0 ? -1 : on ? 7 : 0; }
static int mmq_old_bit(uint32_t F) { return F == QT_Q8_0 ? 1 : F == QT_Q4_K ? 2 : 4; }
// Products of fewer tokens than this take the old kernel: mmq3_kernel was measured at T = 64,
// 512 and 2048 only, and run 2's build (a4ed608, whose full-tile test misfired, fixed since)
// was slower on batch-8 decode. SPARKD_MMQ3_MIN_T=n (read at the first launch) or
// cuda_mmq3_min_t_set (the selftest) moves the threshold (2: mmq3 for every T > 1; -1: back to
// the environment's choice).
static int mmq3_min_t = -1;
extern "C" void cuda_mmq3_min_t_set(int t) { mmq3_min_t = t; }

// ---- round 8, helper t64: products of 33..64 tokens (64-sequence decode). SPARKD_T64=0: round
// 7's routing and kernels exactly; 1 (default): mmq3_kernel from 33 tokens (round 7: from 64; the
// misfire that kept it off below 64 is fixed) and the uneven K split below (mmq_t64_cut), plus
// gemms.cu's t64 routing (SPARKD_T64_G2). Read at the first product; cuda_t64_set (tests, benches).
static int t64_on = -1;
extern "C" int cuda_t64_on(void) {
    if (t64_on < 0) t64_on = cuda_env_int("SPARKD_T64", 1) != 0;
    return t64_on;
}
// Tests and benches: 1 / 0 = on / off, -1 = as SPARKD_T64 says (mmq3's threshold follows it
// unless SPARKD_MMQ3_MIN_T or cuda_mmq3_min_t_set fixes it).
extern "C" void cuda_t64_set(int on) {
    t64_on = on < 0 ? -1 : on ? 1 : 0;
    if (mmq3_min_t > 0 && !getenv("SPARKD_MMQ3_MIN_T")) mmq3_min_t = -1;
}
static int t64_slots = 0, t64_drop = 0; // tests: CTA slots planned for (0: 2 x SMs); the control
static long t64_launches = 0;           // launches with the uneven split
// Tests: plan for `slots` CTA slots instead of 2 x SMs (0: the device's), so small products take
// the uneven split; drop = 1: the control (the z = 1 pieces skip chunk kcut: must fail).
extern "C" void cuda_t64_test_set(int slots, int drop) {
    t64_slots = slots > 0 ? slots : 0;
    t64_drop = drop ? 1 : 0;
}
extern "C" long cuda_t64_launches(void) { return t64_launches; }
static int t64_rounds = 0; // benches: the z = 1 pieces' rounds r (0: ceil(M / E), mmq_t64_cut)
extern "C" void cuda_t64_rounds_set(int r) { t64_rounds = r > 0 ? r : 0; }

// The uneven K split (t64). A product of M = tiles x token tiles CTAs with slots / 2 < M < slots
// (2 CTAs an SM: slots = 264 on an H200; Qwen3-8B's gate+up at T <= 64: M = 192) had no split:
// 60 SMs ran two CTAs of all 64 chunks and 72 SMs one, so the step lasted 64 chunk times of an SM
// with two CTAs. Here every tile is cut in two at kcut: the M z = 0 CTAs (launched first: grid z
// is slowest) take [0, kcut) and fill M slots, the E = slots - M others run the M z = 1 pieces
// of s = nk - kcut chunks in r = ceil(M / E) rounds as slots free up; s = nk / (r + 1) makes both
// end together (gate+up: E 72, r 3, s 16, kcut 48: 48 chunk times instead of 64, plus the
// [2][T][rows] partials and their reduce). Returns kcut (0: not taken). GPU run 0 (H200): Q8_0
// gate+up T = 64 85.9 vs 90.4 us, T = 48 76.4 vs 87.8 (kernel bench); whole model (with fz's deferred
// reduces) Q8_0 64 sequences 7,546 vs 7,193 tok/s (+4.9%); the 32-sequence step unchanged.
static int mmq_t64_cut(int M, int slots, int nk) {
    if (M * 2 <= slots || M >= slots || nk < 8) return 0;
    const int E = slots - M, r = t64_rounds > 0 ? t64_rounds : (M + E - 1) / E, s = nk / (r + 1);
    return s >= 1 ? nk - s : 0;
}

template <uint32_t F>
static int mmq_launch(mmq_params p, int mtiles, void *stream, err *e) {
    using C = mmq_cfg<F>;        // mmq_kernel's layout
    using C3 = mmq_cfg<F, true>; // mmq3_kernel's
    static bool attr = false;
    if (!attr) {
        CUDA_TRY(cudaFuncSetAttribute(mmq_kernel<F>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::smem));
        CUDA_TRY(cudaFuncSetAttribute(mmq3_kernel<F>, cudaFuncAttributeMaxDynamicSharedMemorySize, C3::smem3));
        attr = true;
    }
    if (mmq3_min_t < 0) {
        const char *v = getenv("SPARKD_MMQ3_MIN_T");
        mmq3_min_t = v && atoi(v) > 0 ? atoi(v) : cuda_t64_on() ? 33 : 64;
    }
    if (mmq_old < 0) {
        const char *v = getenv("SPARKD_MMQ_OLD");
        mmq_old = !v ? 0 : !strcmp(v, "1") ? 7 : (strstr(v, "q8") ? 1 : 0) | (strstr(v, "q4") ? 2 : 0) | (strstr(v, "q6") ? 4 : 0);
    }
    const bool old = (mmq_old & mmq_old_bit(F)) || p.T < mmq3_min_t;
    if (old && p.kcut > 0) { // the uneven split is mmq3_kernel's: the old kernel as before, no split
        p.kcut = 0;
        p.ksplit = 1;
        p.ws = NULL;
    }
    if (p.kcut > 0) t64_launches++;
    dim3 grid((unsigned)mtiles, (unsigned)((p.T + MQ_N - 1) / MQ_N), (unsigned)p.ksplit);
    if (old) CUDA_TRY(cuda_launch(mmq_kernel<F>, grid, dim3(256), (size_t)C::smem, stream, p));
    else CUDA_TRY(cuda_launch(mmq3_kernel<F>, grid, dim3(256), (size_t)C3::smem3, stream, p));
    if (p.ksplit > 1 && !part_defer_z(p.defer, p.ws, p.ksplit, p.T, p.ws_rows, p.row0, p.n))
        CUDA_TRY(cuda_launch(mmq_reduce_kernel, dim3((unsigned)((p.ws_rows + 255) / 256), (unsigned)p.T), dim3(256), 0,
                             stream, p));
    return 0;
}

static int mmq_on = -1;
extern "C" void cuda_mmq_set(int on) { mmq_on = on ? 1 : 0; }
extern "C" int cuda_mmq_type_ok(uint32_t type) { return type == QT_Q8_0 || type == QT_Q4_K || type == QT_Q6_K; }

// Whether cuda_matmul hands this product to cuda_mmq_launch (gemm.cu asks).
int cuda_mmq_wants(const cuda_mm_args *a, const cuda_mmin *x) {
    if (mmq_on < 0) mmq_on = cuda_env_int("SPARKD_MMQ", 1) != 0;
    return mmq_on && !a->exact && a->path != CUDA_MM_FORCE_GEMV && x->T > 1 && (x->forms & CUDA_MMIN_Q8) && x->q8 &&
           cuda_mmq_type_ok(a->w[0]->type);
}

// The product of cuda_matmul's arguments (checked there: matrices of one type, K = x->K).
int cuda_mmq_launch(const cuda_mm_args *a, const cuda_mmin *x, void *stream, err *e) {
    const uint32_t type = a->w[0]->type;
    const int T = x->T;
    mmq_params p;
    memset(&p, 0, sizeof p);
    p.n = a->n;
    p.K = x->K;
    p.T = T;
    p.accumulate = a->accumulate;
    p.defer = a->accumulate ? NULL : a->defer;
    p.xq = x->q8;
    p.xd = x->q8d;
    p.xs = x->q8s;
    for (int i = 0; i < 4; i++) p.cbias[i] = 0x4b400000; // 1.5 * 2^23 (mmq3_kernel)
    p.psel = 0x3210;
    int mtiles = 0;
    for (int i = 0; i < a->n; i++) {
        const cuda_weight *w = a->w[i];
        mmq_mat &m = p.m[i];
        wmat_planes(m, w);
        m.y = a->y[i];
        m.rows = (int)w->rows;
        m.ldy = a->ldy[i];
        m.mtiles = (m.rows + MQ_M - 1) / MQ_M;
        mtiles += m.mtiles;
        p.row0[i] = p.ws_rows;
        p.ws_rows += m.rows;
    }
    // small grids (batched decode: 64 tokens, narrow matrices) split K over CTAs when the
    // caller gave room for the partials: two CTAs per SM is the target
    p.ksplit = 1;
    static int sms = 0;
    if (!sms) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
            sms = 48;
    }
    const int t64 = cuda_t64_on() && T >= 33 && T <= 64;
    const int nk = x->K / 64, ntile_n = (T + MQ_N - 1) / MQ_N, want = t64 && t64_slots ? t64_slots : 2 * sms;
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
    // t64: the uneven split where the even rule left half a wave idle (mmq_t64_cut)
    if (t64 && p.ksplit == 1 && a->work && (uint64_t)2 * T * p.ws_rows * 4 <= a->work_bytes) {
        const int cut = mmq_t64_cut(mtiles * ntile_n, want, nk);
        if (cut > 0) {
            p.ksplit = 2;
            p.kcut = cut;
            p.kcut1 = cut + (t64_drop && cut + 1 < nk); // the tests' control: chunk kcut left out
            p.ws = a->work;
        }
    }
    if (type == QT_Q8_0) return mmq_launch<QT_Q8_0>(p, mtiles, stream, e);
    if (type == QT_Q4_K) return mmq_launch<QT_Q4_K>(p, mtiles, stream, e);
    if (type == QT_Q6_K) return mmq_launch<QT_Q6_K>(p, mtiles, stream, e);
    return err_set(e, ERR_UNSUPPORTED, "cuda_mmq: no int8 kernel for type %u", type);
}
