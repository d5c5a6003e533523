/* model.h — a model is data: hyper-parameters, a stack of typed layers and the weight
 * tensors they name. Format-neutral: the loader reads a weights file through a
 * model_source (GGUF today, safetensors next) and an architecture's arch_NAME.c binds
 * tensors and hyper-parameters into this description. Backends (engine/cpu, kernels/)
 * compute over it and branch on layer kinds only — never on an architecture name.
 *
 * A layer = a token mixer (attention with its options; recurrent kinds later) and a
 * feed-forward block (dense, or a mixture of experts). Shapes use GGUF order: ne[0] is
 * the row length (input features), ne[1] the number of rows (output features), ne[2]
 * the expert index for stacked expert tensors.
 *
 * Owns: the source (open file), one weight buffer holding every tensor's bytes (read
 * once into its final place, never copied), the tensor table and the layer array.
 * Tensor data pointers point into the weight buffer. */
#ifndef SPARKD_MODEL_H
#define SPARKD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "gguf.h"

#define MODEL_MAX_DIMS 4

/* One weight tensor. dtype is a ggml type id (quant.h); rows are row_bytes apart
 * (ne[0] elements each), experts (ne[2]) are ne[1] * row_bytes apart. */
typedef struct model_tensor {
    const char *name;     /* as the source names it ("blk.3.attn_q.weight") */
    uint32_t dtype;       /* quant_type */
    int n_dims;
    int64_t ne[MODEL_MAX_DIMS];
    uint64_t row_bytes;   /* bytes of one row of ne[0] elements */
    uint64_t nbytes;
    const void *data;     /* host bytes in the model's weight buffer */
    uint64_t offset;      /* of data within the weight buffer (backends that copy
                           * or repack the buffer use it) */
    const struct model_tensor *scale; /* optional dequantization scale (FP8 checkpoints:
                                       * per tensor or per row, f32); NULL = none */
} model_tensor;

typedef enum model_mixer_kind {
    MODEL_MIXER_ATTENTION = 0, /* softmax attention over the KV cache */
    /* recurrent kinds (fixed-size state per sequence) come with their issue:
     * MODEL_MIXER_MAMBA2, MODEL_MIXER_GATED_DELTANET */
} model_mixer_kind;

typedef enum model_ffn_kind {
    MODEL_FFN_DENSE = 0, /* act(x Wg^T) * (x Wu^T) -> Wd */
    MODEL_FFN_MOE,       /* router -> top-k experts, each a gated FFN, weighted sum */
} model_ffn_kind;

typedef enum model_act {
    MODEL_ACT_SILU = 0,    /* SwiGLU: silu(g) * u */
    MODEL_ACT_GELU_TANH,   /* GeGLU with tanh-approximated GELU (gemma) */
    MODEL_ACT_SWIGLU_OAI,  /* gpt-oss: g = min(g, limit); u = clamp(u, -limit, limit);
                            * (g * sigmoid(alpha * g)) * (u + 1) */
} model_act;

typedef enum model_rope_style {
    MODEL_ROPE_NORM = 0, /* rotate adjacent pairs (2i, 2i+1): llama (weights permuted at conversion) */
    MODEL_ROPE_NEOX = 1, /* rotate halves (i, i + d/2): gemma, qwen, gpt-oss */
} model_rope_style;

typedef enum model_rope_scaling {
    MODEL_ROPE_SCALE_NONE = 0,
    MODEL_ROPE_SCALE_LINEAR, /* positions divided by factor */
    MODEL_ROPE_SCALE_YARN,   /* YaRN: ramp between interpolation and extrapolation */
} model_rope_scaling;

/* One rotary embedding. A model has up to MODEL_MAX_ROPES of them and each attention
 * layer names one (gemma3: global layers scaled with rope_base, local layers plain
 * with base 10000). Backends derive the inverse frequencies from these fields alone. */
#define MODEL_MAX_ROPES 2
typedef struct model_rope {
    model_rope_style style;
    int n_rot;                 /* rotated dims (head_dim for every family today) */
    float base;                /* theta */
    model_rope_scaling scaling;
    float factor;              /* linear / yarn scale (>= 1) */
    int32_t orig_ctx;          /* yarn: original context */
    float yarn_beta_fast, yarn_beta_slow;
    int yarn_exact;            /* yarn: 1 = the correction range as computed (gpt-oss: its
                                * reference code and HF's truncate=false); 0 = widened to
                                * whole dims by floor/ceil (llama.cpp; HF's default) */
    float attn_factor;         /* yarn: multiplies cos/sin (mscale); 1 otherwise */
    const model_tensor *freq_factors; /* optional (n_rot/2) f32 divisors (llama3 scaling) */
} model_rope;

typedef struct model_attention {
    const model_tensor *wq;     /* ne = [dim, n_head * head_dim] */
    const model_tensor *wk;     /* ne = [dim, n_head_kv * head_dim] */
    const model_tensor *wv;     /* ne = [dim, n_head_kv * head_dim] */
    const model_tensor *wo;     /* ne = [n_head * head_dim, dim] */
    const model_tensor *bq, *bk, *bv, *bo; /* optional biases, (rows) f32 */
    const model_tensor *q_norm; /* optional per-head RMSNorm, (head_dim) f32 */
    const model_tensor *k_norm; /* optional, (head_dim) f32 */
    const model_tensor *sinks;  /* optional learned sink logit per head, (n_head) f32:
                                 * an extra softmax term exp(sink) with no value (gpt-oss) */
    int window;                 /* sliding window in tokens (0 = full causal) */
    int rope;                   /* index into model.rope */
    float scale;                /* multiplier of q.k */
} model_attention;

typedef struct model_dense_ffn {
    const model_tensor *w_gate; /* ne = [dim, ffn_dim] */
    const model_tensor *w_up;   /* ne = [dim, ffn_dim] */
    const model_tensor *w_down; /* ne = [ffn_dim, dim] */
} model_dense_ffn;

typedef enum model_moe_gating {
    MODEL_MOE_SOFTMAX_TOPK = 0, /* softmax over all experts, take top k (qwen3moe; weights
                                 * renormalized to sum 1 when norm_topk) */
    MODEL_MOE_TOPK_SOFTMAX,     /* take the top k router logits, softmax over them (gpt-oss) */
} model_moe_gating;

typedef struct model_moe {
    int n_expert;               /* experts in the layer */
    int n_used;                 /* experts per token (top k) */
    int ffn_dim;                /* rows of one expert's gate/up */
    model_moe_gating gating;
    int norm_topk;              /* SOFTMAX_TOPK: renormalize the k weights */
    const model_tensor *router;    /* ne = [dim, n_expert] */
    const model_tensor *router_b;  /* optional (n_expert) f32 */
    /* The experts this model's tensors hold: [expert0, expert0 + n_expert_local). A
     * loaded model holds them all (0, n_expert); a tensor-parallel shard split by experts
     * (appliance/engine/shard.h, ENGINE_MOE_SPLIT_EXPERTS) holds its rank's share: the
     * router stays whole (routing is over all n_expert), and a routed (token, expert)
     * pair outside the range adds nothing on this rank (the ranks' outputs are summed).
     * Expert e's slice of the tensors below is number e - expert0. n_expert_local 0 means
     * all n_expert (a loader that leaves the fields zero still means the whole layer). */
    int expert0, n_expert_local;
    const model_tensor *gate_exps; /* ne = [dim, ffn_dim, n_expert_local] */
    const model_tensor *up_exps;   /* ne = [dim, ffn_dim, n_expert_local] */
    const model_tensor *down_exps; /* ne = [ffn_dim, dim, n_expert_local] */
    const model_tensor *gate_b, *up_b; /* optional (ffn_dim, n_expert_local) f32 */
    const model_tensor *down_b;        /* optional (dim, n_expert_local) f32 */
    model_dense_ffn shared;     /* optional shared expert (w_gate NULL = none) */
    const model_tensor *shared_gate; /* optional (dim) f32: sigmoid gate of the shared expert */
} model_moe;

typedef struct model_layer {
    model_mixer_kind mixer;
    model_ffn_kind ffn;
    const model_tensor *attn_norm;      /* (dim) f32, before the mixer */
    const model_tensor *post_attn_norm; /* optional (dim): gemma3 normalizes the mixer output */
    const model_tensor *ffn_norm;       /* (dim), before the FFN */
    const model_tensor *post_ffn_norm;  /* optional (dim): gemma3 */
    model_attention attn;               /* mixer == MODEL_MIXER_ATTENTION */
    model_dense_ffn dense;              /* ffn == MODEL_FFN_DENSE */
    model_moe moe;                      /* ffn == MODEL_FFN_MOE */
} model_layer;

typedef struct model_hparams {
    int32_t n_vocab;      /* rows of token_embd */
    int32_t dim;          /* residual width */
    int32_t n_layer;
    int32_t n_head;       /* query heads */
    int32_t n_head_kv;    /* key/value heads (GQA when < n_head) */
    int32_t head_dim;     /* key and value length */
    int32_t ffn_dim;      /* dense FFN width (0 when every layer is MoE) */
    int32_t ctx_train;    /* context the model was trained for */
    float norm_eps;       /* RMSNorm epsilon */
    float embd_scale;     /* multiplier of the looked-up embedding (gemma: sqrt(dim)) */
    float final_softcap;  /* 0 = none; else logits = c * tanh(logits / c) */
    model_act act;        /* of every FFN (dense and experts) */
    float act_alpha, act_limit; /* MODEL_ACT_SWIGLU_OAI: 1.702, 7.0 */
} model_hparams;

typedef struct model_arch_ops model_arch_ops; /* model/arch.h */

typedef struct model {
    const char *arch_name;     /* "gemma3", "llama", "qwen2", "qwen3", "gpt-oss", "qwen3moe" */
    const model_arch_ops *arch;
    model_hparams hp;
    model_rope rope[MODEL_MAX_ROPES];
    int n_rope;
    gguf_file *gguf;           /* the source file (GGUF today) */
    void *weights;             /* every tensor's bytes, weights_bytes long (NULL when
                                * header_only or mapped) */
    uint64_t weights_bytes;    /* the source's data section (also when header_only) */
    int weights_mapped;        /* 1 if mmap'd (the source owns the mapping) */
    model_tensor *tensors;     /* (n_tensors) the source's tensor table */
    int64_t n_tensors;
    const model_tensor *token_embd;  /* ne = [dim, n_vocab] */
    const model_tensor *output_norm; /* (dim) */
    const model_tensor *output;      /* ne = [dim, n_vocab]; == token_embd when tied */
    model_layer *layers;             /* (n_layer) */
} model;

typedef struct model_load_opts {
    int use_mmap;    /* map instead of pread (slower on GB10) */
    int progress;    /* print load progress on stderr */
    int header_only; /* validate and describe, load no weights */
    /* optional: sees every byte of the file once, in order, while the weights are
     * read (not with header_only): a digest without a second pass (the session's
     * SHA-256 check) */
    void (*sink)(void *user, const void *data, size_t n);
    void *sink_user;
} model_load_opts;

/* Opens path, reads the architecture's hyper-parameters and binds its layers
 * (every shape checked), then reads all weights into one 2 MiB-aligned buffer
 * (MADV_HUGEPAGE) unless header_only. Errors name the key or tensor. */
int model_load(model **out, const char *path, const model_load_opts *opts, err *e);
void model_free(model *m);

/* Looks a tensor up by its source name (NULL if absent). */
const model_tensor *model_find_tensor(const model *m, const char *name);

/* Metadata by its key ("general.name", "tokenizer.chat_template",
 * "gemma3.context_length"...), whatever the source: 0 with the value, ERR_ABSENT if
 * the key does not exist (e untouched: absence is the caller's decision), or
 * ERR_FORMAT with e set when it has another type or the value does not fit.
 * Strings point into the source and are not NUL-terminated (use *len). */
int model_meta_str(const model *m, const char *key, const char **s, uint64_t *len, err *e);
int model_meta_u32(const model *m, const char *key, uint32_t *out, err *e);
int model_meta_f32(const model *m, const char *key, float *out, err *e);
int model_meta_bool(const model *m, const char *key, int *out, err *e);

/* Layers whose mixer keeps a KV cache (attention). */
int model_n_kv_layers(const model *m);

/* Bytes of KV cache one token of context costs over all attention layers, with
 * elem_bytes per element and extra_per_row bytes per (layer, kv head) row (scales). */
uint64_t model_kv_bytes_per_token(const model *m, double elem_bytes, int extra_per_row);

#endif
