/* arch_llama.c — Llama 2/3 and Mistral-style dense models: SwiGLU, pre-norm
 * attention with GQA, rope on adjacent pairs (the converter permuted Q/K for
 * it), optional per-dimension frequency factors (Llama 3.1 scaling). */
#include "arch.h"

static int llama_read(model *m, err *e) {
    int rc;
    if ((rc = arch_read_common(m, e))) return rc;
    if ((rc = arch_read_rope(m, &m->rope[0], 10000.0f, e))) return rc;
    m->rope[0].style = MODEL_ROPE_NORM;
    m->n_rope = 1;
    return 0;
}

static int llama_bind(model *m, err *e) {
    int rc;
    if ((rc = arch_bind_embeddings(m, e))) return rc;
    if ((rc = arch_bind_rope_factors(m, &m->rope[0], e))) return rc;
    const arch_dense_opts o = {0};
    if ((rc = arch_bind_dense(m, &o, e))) return rc;
    return arch_read_attn_scale(m, e);
}

const model_arch_ops arch_llama = {.name = "llama", .read = llama_read, .bind = llama_bind};
