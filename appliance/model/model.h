/* model.h — a model is data: hyper-parameters plus a table of weight tensors,
 * read from a GGUF file and checked against the architecture's expectations.
 *
 * Families: gemma3; llama (Llama 2/3, Mistral-style dense); qwen2 and qwen3
 * (dense; qwen3 adds per-head QK-norm). A backend (cpu.h, later kernels/)
 * implements the forward pass over this description.
 *
 * Owns: the gguf_file and one weight buffer holding the whole data section
 * (read once with pread, never copied). Tensor pointers below point into it.
 * Shapes use GGUF order: ne[0] is the row length (input features), ne[1] the
 * number of rows (output features). */
#ifndef SPARKD_MODEL_H
#define SPARKD_MODEL_H

#include <stdint.h>

#include "err.h"
#include "gguf.h"

typedef enum model_arch {
    MODEL_ARCH_GEMMA3 = 0,
    MODEL_ARCH_LLAMA,
    MODEL_ARCH_QWEN2,
    MODEL_ARCH_QWEN3,
} model_arch;

typedef enum model_rope_style {
    MODEL_ROPE_NORM = 0, /* rotate adjacent pairs (2i, 2i+1): llama (weights permuted at conversion) */
    MODEL_ROPE_NEOX = 1, /* rotate halves (i, i + d/2): gemma, qwen */
} model_rope_style;

typedef enum model_rope_scaling {
    MODEL_ROPE_SCALE_NONE = 0,
    MODEL_ROPE_SCALE_LINEAR, /* positions divided by factor */
    MODEL_ROPE_SCALE_YARN,   /* YaRN: ramp between interpolation and extrapolation */
} model_rope_scaling;

typedef enum model_act {
    MODEL_ACT_SILU = 0,  /* SwiGLU: silu(gate) * up */
    MODEL_ACT_GELU_TANH, /* GeGLU with tanh-approximated GELU (gemma) */
} model_act;

typedef struct model_hparams {
    int32_t n_vocab;    /* rows of token_embd */
    int32_t dim;        /* residual width (embedding_length) */
    int32_t n_layer;
    int32_t n_head;     /* query heads */
    int32_t n_head_kv;  /* key/value heads (GQA when < n_head) */
    int32_t head_dim;   /* key_length (== value_length here) */
    int32_t ffn_dim;    /* feed_forward_length */
    int32_t ctx_train;  /* context_length the model was trained for */
    float norm_eps;     /* RMSNorm epsilon */
    float attn_scale;   /* multiplier of q.k (1/sqrt(head_dim) or arch-specific) */
    float embd_scale;   /* multiplier of the looked-up embedding (gemma: sqrt(dim)) */
    float final_softcap; /* 0 = none; else logits = c * tanh(logits / c) */
    model_act act;
    model_rope_style rope_style;
    float rope_base;     /* theta for global layers */
    float rope_base_swa; /* theta for sliding-window layers (gemma3: 10000) */
    model_rope_scaling rope_scaling;
    float rope_factor;          /* linear / yarn scale factor (>= 1) */
    int32_t rope_orig_ctx;      /* yarn: original context */
    float yarn_beta_fast, yarn_beta_slow, yarn_attn_factor;
    int32_t swa_window;  /* sliding window in tokens, 0 = none */
    int32_t swa_pattern; /* every swa_pattern-th layer is global (gemma3: 6), 0 = all global */
} model_hparams;

typedef struct model_layer {
    const gguf_tensor *attn_norm;      /* (dim) */
    const gguf_tensor *wq;             /* (dim -> n_head*head_dim): ne = [dim, n_head*head_dim] */
    const gguf_tensor *wk;             /* ne = [dim, n_head_kv*head_dim] */
    const gguf_tensor *wv;             /* ne = [dim, n_head_kv*head_dim] */
    const gguf_tensor *bq, *bk, *bv;   /* optional biases (qwen2): (rows) */
    const gguf_tensor *q_norm;         /* optional (head_dim): qwen3, gemma3 */
    const gguf_tensor *k_norm;         /* optional (head_dim) */
    const gguf_tensor *wo;             /* ne = [n_head*head_dim, dim] */
    const gguf_tensor *post_attn_norm; /* optional (dim): gemma3 */
    const gguf_tensor *ffn_norm;       /* (dim) */
    const gguf_tensor *w_gate;         /* ne = [dim, ffn_dim] */
    const gguf_tensor *w_up;           /* ne = [dim, ffn_dim] */
    const gguf_tensor *w_down;         /* ne = [ffn_dim, dim] */
    const gguf_tensor *post_ffn_norm;  /* optional (dim): gemma3 */
    int is_swa;                        /* sliding-window layer */
} model_layer;

typedef struct model {
    model_arch arch;
    const char *arch_name;
    model_hparams hp;
    gguf_file *gguf;
    void *weights;           /* the data section, gguf_data_size() bytes */
    uint64_t weights_bytes;
    int weights_mapped;      /* 1 if mmap'd (gguf owns the mapping) */
    const gguf_tensor *token_embd;  /* ne = [dim, n_vocab] */
    const gguf_tensor *output_norm; /* (dim) */
    const gguf_tensor *output;      /* ne = [dim, n_vocab]; == token_embd when tied */
    const gguf_tensor *rope_freqs;  /* optional (head_dim/2) f32 divisors (llama3 scaling) */
    model_layer *layers;            /* n_layer */
} model;

typedef struct model_load_opts {
    int use_mmap;    /* map instead of pread (slower on GB10) */
    int progress;    /* print load progress on stderr */
    int header_only; /* validate and describe, load no weights */
    const uint8_t *sha256; /* 32 bytes: the file's expected SHA-256, computed while loading
                              (not with header_only); a mismatch fails the load. NULL = none */
} model_load_opts;

int model_load(model **out, const char *path, const model_load_opts *opts, err *e);
void model_free(model *m);

/* Bytes of KV cache one token of context costs (f32 K and V, all layers). */
uint64_t model_kv_bytes_per_token(const model *m, int kv_elem_bytes);

#endif
