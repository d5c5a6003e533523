/* qtypes.c — the ggml type table: names and block geometry for every type id a
 * GGUF file may carry, including ones the CPU cannot compute with (so `sparkd
 * info` can describe any file and the loader can size every tensor). */
#include "quant.h"

#define T(id, nm, be, bb, ok) [id] = {nm, be, bb, ok}

static const quant_traits quant_table[QUANT_TYPE_LIMIT] = {
    T(QUANT_F32, "F32", 1, 4, 1),
    T(QUANT_F16, "F16", 1, 2, 1),
    T(QUANT_Q4_0, "Q4_0", 32, 18, 1),
    T(QUANT_Q4_1, "Q4_1", 32, 20, 1),
    T(QUANT_Q5_0, "Q5_0", 32, 22, 1),
    T(QUANT_Q5_1, "Q5_1", 32, 24, 1),
    T(QUANT_Q8_0, "Q8_0", 32, 34, 1),
    T(QUANT_Q8_1, "Q8_1", 32, 36, 0),
    T(QUANT_Q2_K, "Q2_K", 256, 84, 0),
    T(QUANT_Q3_K, "Q3_K", 256, 110, 0),
    T(QUANT_Q4_K, "Q4_K", 256, 144, 1),
    T(QUANT_Q5_K, "Q5_K", 256, 176, 1),
    T(QUANT_Q6_K, "Q6_K", 256, 210, 1),
    T(QUANT_Q8_K, "Q8_K", 256, 292, 0),
    T(QUANT_IQ2_XXS, "IQ2_XXS", 256, 66, 0),
    T(QUANT_IQ2_XS, "IQ2_XS", 256, 74, 0),
    T(QUANT_IQ3_XXS, "IQ3_XXS", 256, 98, 0),
    T(QUANT_IQ1_S, "IQ1_S", 256, 50, 0),
    T(QUANT_IQ4_NL, "IQ4_NL", 32, 18, 0),
    T(QUANT_IQ3_S, "IQ3_S", 256, 110, 0),
    T(QUANT_IQ2_S, "IQ2_S", 256, 82, 0),
    T(QUANT_IQ4_XS, "IQ4_XS", 256, 136, 0),
    T(QUANT_I8, "I8", 1, 1, 0),
    T(QUANT_I16, "I16", 1, 2, 0),
    T(QUANT_I32, "I32", 1, 4, 0),
    T(QUANT_I64, "I64", 1, 8, 0),
    T(QUANT_F64, "F64", 1, 8, 0),
    T(QUANT_IQ1_M, "IQ1_M", 256, 56, 0),
    T(QUANT_BF16, "BF16", 1, 2, 1),
    T(QUANT_TQ1_0, "TQ1_0", 256, 54, 0),
    T(QUANT_TQ2_0, "TQ2_0", 256, 66, 0),
    T(QUANT_MXFP4, "MXFP4", 32, 17, 1),
};

const quant_traits *quant_traits_of(uint32_t type) {
    if (type >= QUANT_TYPE_LIMIT) return 0;
    const quant_traits *t = &quant_table[type];
    return t->name ? t : 0;
}

int quant_row_bytes(uint32_t type, int64_t n, uint64_t *out) {
    const quant_traits *t = quant_traits_of(type);
    if (!t || n <= 0 || n % t->block_elems != 0) return -1;
    uint64_t blocks = (uint64_t)(n / t->block_elems);
    if (blocks > UINT64_MAX / (uint64_t)t->block_bytes) return -1;
    *out = blocks * (uint64_t)t->block_bytes;
    return 0;
}
