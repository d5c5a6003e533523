/* arch_gpt_oss.c — OpenAI gpt-oss (20b: 24 layers, 32 experts; 120b: 36 layers, 128
 * experts) as llama.cpp's converter writes it (general.architecture "gpt-oss").
 *
 * Attention: GQA with q/k/v/o biases and a learned sink logit per head
 * (attn_sinks.weight); layers alternate a sliding window (attention.sliding_window,
 * 128) on even layers with full attention on odd ones — llama.cpp's pattern 2, the
 * "layer_types" of the HF config — or every n-th layer full when the file carries
 * attention.sliding_window_pattern = n; scale 1/sqrt(head_dim). One rope for every
 * layer: NEOX, YaRN (factor 32 over 4096 positions, theta 150000) with the correction
 * range used as computed, not widened to whole dims: OpenAI's reference code and the HF
 * config (truncate: false) do so; llama.cpp rounds it.
 *
 * FFN on every layer: a mixture of experts. post_attention_norm is the norm in front of
 * it (gpt-oss has no norm after the mixer). Router ffn_gate_inp with bias; the top-k
 * router logits, softmax over those k; each expert's gate/up/down with biases
 * (ffn_{gate,up,down}_exps.{weight,bias}, MXFP4 weights in the published files); the
 * clamped SwiGLU: g = min(g, 7), u = clamp(u, -7, 7), g * sigmoid(1.702 g) * (u + 1).
 * GGUF carries neither constant (llama.cpp hard-codes them too). */
#include <stdlib.h>

#include "arch.h"

static int gpt_oss_read(model *m, err *e) {
    int rc;
    if ((rc = arch_read_common(m, e))) return rc;
    model_hparams *hp = &m->hp;
    hp->ffn_dim = 0; /* no dense FFN; the experts' width is in each layer's moe */
    hp->act = MODEL_ACT_SWIGLU_OAI;
    hp->act_alpha = 1.702f;
    hp->act_limit = 7.0f;
    if ((rc = arch_read_rope(m, &m->rope[0], 150000.0f, e))) return rc;
    m->rope[0].yarn_exact = 1;
    m->n_rope = 1;
    return 0;
}

static int gpt_oss_bind(model *m, err *e) {
    int rc;
    int32_t window = 0, pattern = 2;
    if ((rc = arch_u32(m, "attention.sliding_window", &window, 1, 1, 1u << 24, e))) return rc;
    if ((rc = arch_u32(m, "attention.sliding_window_pattern", &pattern, 0, 1, 1024, e))) return rc;
    model_moe proto;
    if ((rc = arch_read_moe(m, &proto, e))) return rc;
    proto.gating = MODEL_MOE_TOPK_SOFTMAX;
    if ((rc = arch_bind_embeddings(m, e))) return rc;
    const model_hparams *hp = &m->hp;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return err_set(e, ERR_NOMEM, "out of memory for %d layers", hp->n_layer);
    const arch_dense_opts o = {0};
    const int64_t d = hp->dim, f = proto.ffn_dim, ne = proto.n_expert;
    for (int il = 0; il < hp->n_layer; il++) {
        model_layer *L = &m->layers[il];
        model_attention *A = &L->attn;
        model_moe *M = &L->moe;
        if ((rc = arch_bind_attention(m, il, &o, e))) return rc;
        if ((rc = arch_layer_weight(m, &A->sinks, il, "attn_sinks", hp->n_head, 0, 1, e))) return rc;
        A->window = il % pattern < pattern - 1 ? window : 0; /* pattern 2: even layers slide */
        if ((rc = arch_layer_weight(m, &L->ffn_norm, il, "post_attention_norm", d, 0, 1, e))) return rc;
        L->ffn = MODEL_FFN_MOE;
        *M = proto;
        if ((rc = arch_layer_weight(m, &M->router, il, "ffn_gate_inp", d, ne, 1, e))) return rc;
        if ((rc = arch_layer_bias(m, &M->router_b, il, "ffn_gate_inp", ne, e))) return rc;
        if ((rc = arch_layer_experts(m, &M->gate_exps, il, "ffn_gate_exps", d, f, ne, e))) return rc;
        if ((rc = arch_layer_experts(m, &M->up_exps, il, "ffn_up_exps", d, f, ne, e))) return rc;
        if ((rc = arch_layer_experts(m, &M->down_exps, il, "ffn_down_exps", f, d, ne, e))) return rc;
        if ((rc = arch_layer_expert_bias(m, &M->gate_b, il, "ffn_gate_exps", f, ne, e))) return rc;
        if ((rc = arch_layer_expert_bias(m, &M->up_b, il, "ffn_up_exps", f, ne, e))) return rc;
        if ((rc = arch_layer_expert_bias(m, &M->down_b, il, "ffn_down_exps", d, ne, e))) return rc;
    }
    return arch_read_attn_scale(m, e);
}

const model_arch_ops arch_gpt_oss = {.name = "gpt-oss", .read = gpt_oss_read, .bind = gpt_oss_bind};
