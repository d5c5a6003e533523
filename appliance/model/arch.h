/* arch.h — the architecture registry (inside model/ only).
 *
 * One arch_NAME.c per family turns a source's metadata and tensors into the
 * layer-typed description of model.h: it reads its hyper-parameters, fills the
 * rope table and binds every layer's tensors with their shapes checked. This is
 * the only place that knows an architecture by name; backends see layer kinds.
 *
 * Arch files read metadata through model_meta_* (and the "<arch>.<suffix>"
 * helpers below), never the GGUF reader, so another source (safetensors +
 * config.json) can answer the same keys. Tensor names are GGUF's
 * ("blk.N.attn_q.weight"); a source with other names maps them in the loader.
 *
 * Adding a family: write arch_NAME.c with a `const model_arch_ops arch_NAME`,
 * list it in arch.c's table. */
#ifndef SPARKD_ARCH_H
#define SPARKD_ARCH_H

#include <stdint.h>

#include "err.h"
#include "model.h"

struct model_arch_ops {
    const char *name; /* general.architecture */
    /* Hyper-parameters (m->hp) and the rope table (m->rope, m->n_rope). */
    int (*read)(model *m, err *e);
    /* token_embd / output and m->layers[0..n_layer), every shape checked. */
    int (*bind)(model *m, err *e);
};

/* The family named name[0..len), or NULL. */
const model_arch_ops *arch_find(const char *name, size_t len);

/* ---- helpers shared by the families (arch.c) ---- */

/* "<arch>.<suffix>" as u32 / f32 within [lo, hi]. Absent: an error naming the key
 * when required, else *out is left as it was (the caller's default). */
int arch_u32(const model *m, const char *suffix, int32_t *out, int required, uint32_t lo, uint32_t hi,
             err *e);
int arch_f32(const model *m, const char *suffix, float *out, int required, float lo, float hi, err *e);

/* The hyper-parameters every transformer family here stores the same way
 * (embedding_length, block_count, feed_forward_length, head counts, key/value
 * length, context_length, RMS epsilon); defaults: SiLU, embedding scale 1. */
int arch_read_common(model *m, err *e);

/* rope.freq_base (default base) and the rope.scaling.* keys into r (NEOX style,
 * n_rot = head_dim; a caller changes the style after). YaRN's attn_factor is
 * 0.1 ln(factor) + 1. */
int arch_read_rope(model *m, model_rope *r, float base, err *e);

/* A weight of shape [ne0, ne1] (ne1 = 0: 1-D, which must be F32). Missing: an
 * error when required, else *out = NULL. */
int arch_tensor(model *m, const model_tensor **out, const char *name, int64_t ne0, int64_t ne1,
                int required, err *e);
/* "blk.<il>.<suffix>.weight" / ".bias" */
int arch_layer_weight(model *m, const model_tensor **out, int il, const char *suffix, int64_t ne0,
                      int64_t ne1, int required, err *e);
int arch_layer_bias(model *m, const model_tensor **out, int il, const char *suffix, int64_t n, err *e);

/* Stacked experts "blk.<il>.<suffix>.weight", ne = [ne0, ne1, n_expert] (any type the
 * format knows; the backend checks its kernels), and their optional biases
 * "blk.<il>.<suffix>.bias", ne = [ne1, n_expert], which must be F32. */
int arch_layer_experts(model *m, const model_tensor **out, int il, const char *suffix, int64_t ne0, int64_t ne1,
                       int64_t n_expert, err *e);
int arch_layer_expert_bias(model *m, const model_tensor **out, int il, const char *suffix, int64_t ne1,
                           int64_t n_expert, err *e);

/* The mixture-of-experts keys every MoE family here stores the same way
 * (expert_count, expert_used_count, expert_feed_forward_length) into mo. */
int arch_read_moe(model *m, model_moe *mo, err *e);

/* token_embd (sets hp.n_vocab), output_norm, output (tied to token_embd when absent). */
int arch_bind_embeddings(model *m, err *e);

/* Optional rope_freqs.weight, (n_rot/2) f32 divisors of r's frequencies (llama3 scaling). */
int arch_bind_rope_factors(model *m, model_rope *r, err *e);

/* "<arch>.attention.scale", when present, replaces every attention layer's scale
 * (called last: it overrides a family's own rule). */
int arch_read_attn_scale(model *m, err *e);

/* What differs between the dense pre-norm transformers here. */
typedef struct arch_dense_opts {
    int qk_norm;    /* attn_q_norm / attn_k_norm required (qwen3, gemma3) */
    int post_norms; /* post_attention_norm / post_ffw_norm required (gemma3) */
} arch_dense_opts;

/* Layer il's attention mixer: attn_norm, wq wk wv wo, optional q/k/v/o biases, q/k
 * norms (required when o->qk_norm), post_attention_norm as a norm of the mixer's
 * output when o->post_norms; rope 0, no window, scale 1/sqrt(head_dim). */
int arch_bind_attention(model *m, int il, const arch_dense_opts *o, err *e);

/* Allocates m->layers and binds, for every layer, an attention mixer (wq wk wv wo,
 * optional q/k/v biases, q/k norms) and a dense FFN (gate, up, down) with their
 * norms; every layer gets rope 0, no window, scale 1/sqrt(head_dim). The family
 * then adjusts windows, rope indices and scales. */
int arch_bind_dense(model *m, const arch_dense_opts *o, err *e);

extern const model_arch_ops arch_gemma3, arch_llama, arch_qwen2, arch_qwen3, arch_gpt_oss, arch_qwen3moe;

#endif
