/* arch_qwen3moe.c — Qwen3 mixture-of-experts (Qwen3-30B-A3B, Qwen3-Coder-30B-A3B,
 * Qwen3-235B-A22B) as llama.cpp's converter writes it (general.architecture
 * "qwen3moe"): Qwen3's attention (GQA, per-head QK RMSNorm, no biases, NEOX rope) and
 * on every layer a mixture of experts without a shared expert: router ffn_gate_inp (no
 * bias), softmax over all experts, the top k (8 of 128), their weights renormalized to
 * sum 1 (norm_topk_prob of the released configs; GGUF does not carry it and llama.cpp
 * hard-codes it too), SwiGLU experts ffn_{gate,up,down}_exps of
 * expert_feed_forward_length. feed_forward_length (the dense width of the config) is
 * unused. */
#include <stdlib.h>

#include "arch.h"

static int qwen3moe_read(model *m, err *e) {
    int rc;
    if ((rc = arch_read_common(m, e))) return rc;
    m->hp.ffn_dim = 0; /* every layer is MoE */
    if ((rc = arch_read_rope(m, &m->rope[0], 1000000.0f, e))) return rc;
    m->n_rope = 1;
    return 0;
}

static int qwen3moe_bind(model *m, err *e) {
    int rc;
    model_moe proto;
    if ((rc = arch_read_moe(m, &proto, e))) return rc;
    proto.gating = MODEL_MOE_SOFTMAX_TOPK;
    proto.norm_topk = 1;
    if ((rc = arch_bind_embeddings(m, e))) return rc;
    const model_hparams *hp = &m->hp;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return err_set(e, ERR_NOMEM, "out of memory for %d layers", hp->n_layer);
    const arch_dense_opts o = {.qk_norm = 1};
    const int64_t d = hp->dim, f = proto.ffn_dim, ne = proto.n_expert;
    for (int il = 0; il < hp->n_layer; il++) {
        model_layer *L = &m->layers[il];
        model_moe *M = &L->moe;
        if ((rc = arch_bind_attention(m, il, &o, e))) return rc;
        if ((rc = arch_layer_weight(m, &L->ffn_norm, il, "ffn_norm", d, 0, 1, e))) return rc;
        L->ffn = MODEL_FFN_MOE;
        *M = proto;
        if ((rc = arch_layer_weight(m, &M->router, il, "ffn_gate_inp", d, ne, 1, e))) return rc;
        if ((rc = arch_layer_experts(m, &M->gate_exps, il, "ffn_gate_exps", d, f, ne, e))) return rc;
        if ((rc = arch_layer_experts(m, &M->up_exps, il, "ffn_up_exps", d, f, ne, e))) return rc;
        if ((rc = arch_layer_experts(m, &M->down_exps, il, "ffn_down_exps", f, d, ne, e))) return rc;
    }
    return arch_read_attn_scale(m, e);
}

const model_arch_ops arch_qwen3moe = {.name = "qwen3moe", .read = qwen3moe_read, .bind = qwen3moe_bind};
