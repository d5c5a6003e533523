/* quant.h — ggml tensor types on the CPU: sizes, dequantization, dot products
 * and the row-parallel matrix multiply the CPU forward pass is built on.
 *
 * Activations are always f32; weights stay in their stored type and are
 * dequantized on the fly (so results match a dequantize-then-f32 reference such
 * as HF transformers' GGUF loader up to summation order).
 *
 * Type ids are ggml's (they are what GGUF files store). Block layouts follow
 * ggml's definitions; dequantization is bit-exact against the `gguf` Python
 * package's reference (tests/unit/quant_*). */
#ifndef SPARKD_QUANT_H
#define SPARKD_QUANT_H

#include <stddef.h>
#include <stdint.h>

enum quant_type {
    QUANT_F32 = 0,
    QUANT_F16 = 1,
    QUANT_Q4_0 = 2,
    QUANT_Q4_1 = 3,
    QUANT_Q5_0 = 6,
    QUANT_Q5_1 = 7,
    QUANT_Q8_0 = 8,
    QUANT_Q8_1 = 9,
    QUANT_Q2_K = 10,
    QUANT_Q3_K = 11,
    QUANT_Q4_K = 12,
    QUANT_Q5_K = 13,
    QUANT_Q6_K = 14,
    QUANT_Q8_K = 15,
    QUANT_IQ2_XXS = 16,
    QUANT_IQ2_XS = 17,
    QUANT_IQ3_XXS = 18,
    QUANT_IQ1_S = 19,
    QUANT_IQ4_NL = 20,
    QUANT_IQ3_S = 21,
    QUANT_IQ2_S = 22,
    QUANT_IQ4_XS = 23,
    QUANT_I8 = 24,
    QUANT_I16 = 25,
    QUANT_I32 = 26,
    QUANT_I64 = 27,
    QUANT_F64 = 28,
    QUANT_IQ1_M = 29,
    QUANT_BF16 = 30,
    QUANT_TQ1_0 = 34,
    QUANT_TQ2_0 = 35,
    QUANT_MXFP4 = 39,
    QUANT_TYPE_LIMIT = 40
};

typedef struct quant_traits {
    const char *name;     /* "Q4_K" */
    int32_t block_elems;  /* elements per block (1 for plain types) */
    int32_t block_bytes;  /* bytes per block */
    int cpu_supported;    /* dequant/dot/matmul implemented on the CPU */
} quant_traits;

/* NULL for ids ggml never defined or has removed (4, 5, 31-33, 36-38, >= 40). */
const quant_traits *quant_traits_of(uint32_t type);

/* Bytes of a row of n elements. Returns 0 and sets *out, or -1 if n is not a
 * positive multiple of the block size or the size overflows. */
int quant_row_bytes(uint32_t type, int64_t n, uint64_t *out);

/* dst[0..n) = dequantized src. n is a multiple of the block size. */
void quant_dequant_row(uint32_t type, const void *src, float *dst, int64_t n);

/* sum_i dequant(row)[i] * x[i] over n elements. */
float quant_dot_row(uint32_t type, const void *row, const float *x, int64_t n);

/* Row-parallel matrix multiply, the CPU forward's workhorse:
 *   Y[t * ldy + r] = dot(W row r, X + t * ldx)   for r in [r0, r1), t in [0, T)
 * W: N rows of K elements of `type`, row stride row_bytes.
 * X: T rows of K f32 (ldx >= K). Y: T rows of f32 (ldy >= r1).
 * scratch: at least quant_matmul_scratch_floats(K) floats, private to the caller
 * thread (used to dequantize a tile of W once and reuse it for all T rows).
 * Each thread of the forward calls this on its own [r0, r1). */
void quant_matmul(uint32_t type, const void *W, uint64_t row_bytes, int64_t K, int64_t r0,
                  int64_t r1, const float *X, int64_t ldx, int64_t T, float *Y, int64_t ldy,
                  float *scratch);
size_t quant_matmul_scratch_floats(int64_t K);

/* The T = 1 case of quant_matmul (quant_gemv.c): y[r] = dot(W row r, x) for r
 * in [r0, r1), several rows per pass. scratch: quant_gemv_scratch_floats(K)
 * floats (quant_matmul_scratch_floats covers it). Returns 0, or -1 without
 * touching y where it has no kernel for the type/ISA (the caller then uses
 * per-row dots). */
int quant_gemv(uint32_t type, const void *W, uint64_t row_bytes, int64_t K, int64_t r0, int64_t r1,
               const float *x, float *y, float *scratch);
size_t quant_gemv_scratch_floats(int64_t K);

/* fp16 / bf16 / fp8 conversions (round-to-nearest-even on the way down). fp8 is E4M3
 * in the OCP "fn" form CUDA's __nv_fp8_e4m3 uses: max 448, no infinities (values
 * beyond saturate to +-448), S.1111.111 is NaN. */
float quant_f16_to_f32(uint16_t h);
uint16_t quant_f32_to_f16(float f);
float quant_bf16_to_f32(uint16_t h);
uint16_t quant_f32_to_bf16(float f);
float quant_fp8_e4m3_to_f32(uint8_t b);
uint8_t quant_f32_to_fp8_e4m3(float f);

#endif
