/* arch_qwen.c — Qwen2 (q/k/v biases) and Qwen3 (per-head QK RMSNorm, no
 * biases) dense models: SwiGLU, GQA, rope on halves (NEOX). */
#include "arch.h"

static int qwen_read(model *m, err *e) {
    int rc;
    if ((rc = arch_read_common(m, e))) return rc;
    if ((rc = arch_read_rope(m, &m->rope[0], 10000.0f, e))) return rc;
    m->n_rope = 1;
    return 0;
}

static int qwen_bind(model *m, int qk_norm, err *e) {
    int rc;
    if ((rc = arch_bind_embeddings(m, e))) return rc;
    if ((rc = arch_bind_rope_factors(m, &m->rope[0], e))) return rc;
    const arch_dense_opts o = {.qk_norm = qk_norm};
    if ((rc = arch_bind_dense(m, &o, e))) return rc;
    return arch_read_attn_scale(m, e);
}

static int qwen2_bind(model *m, err *e) { return qwen_bind(m, 0, e); }
static int qwen3_bind(model *m, err *e) { return qwen_bind(m, 1, e); }

const model_arch_ops arch_qwen2 = {.name = "qwen2", .read = qwen_read, .bind = qwen2_bind};
const model_arch_ops arch_qwen3 = {.name = "qwen3", .read = qwen_read, .bind = qwen3_bind};
