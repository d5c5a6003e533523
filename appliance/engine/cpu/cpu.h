/* cpu.h — inside the CPU backend (engine/cpu/ only; everything else sees
 * engine.h and engine_cpu_ops).
 *
 * The readable reference forward pass every GPU result is checked against,
 * multi-threaded over a pool. Files:
 *   cpu.c        plan, create, forward (the layer loop, branching on layer kinds),
 *                matrix products, element-wise stages, the ops table
 *   cpu_attn.c   the KV cache formats (f32, f16, bf16, q8, fp8) and attention
 *   cpu_moe.c    the mixture-of-experts FFN: router, top-k by gating kind, experts read
 *                in place from the stacked tensors, expert biases, weighted sum
 *   cpu_sample.c sampler slots: penalties, mask, bias, the pick, logprobs
 *   quant_gemv.c the T = 1 matrix-vector kernels (quant.h)
 *
 * Memory — activations for max_tokens tokens, the KV pool, per-thread scratch,
 * logits and a sampler for each of max_seqs slots — is planned by cpu_layout and
 * allocated once in create through cpu_alloc, which counts what it hands out
 * (ops->usage), so the plan and the allocation are checked to agree; forward
 * never allocates. Weights are used in place in the model's buffer.
 *
 * KV pool, per attention layer (kv layer l):
 *   k_pool[l][block][CPU_KV_BLOCK][n_head_kv * head_dim]  elements of kv_type (v_pool alike)
 *   k_scale[l][block][CPU_KV_BLOCK][n_head_kv]           f32 (q8, fp8 only: x = q * scale)
 * A sequence names its blocks with a block table: blocks[i] holds positions
 * [i * CPU_KV_BLOCK, (i + 1) * CPU_KV_BLOCK). */
#ifndef SPARKD_CPU_H
#define SPARKD_CPU_H

#include <stdint.h>

#include "engine.h"
#include "pool.h"

#define CPU_KV_BLOCK 16

/* Sizes of everything create allocates, from the model and the options. */
typedef struct cpu_layout {
    int n_ctx, max_seqs, max_tokens, n_threads, n_blocks;
    int q_dim, kv_dim;          /* n_head * head_dim, n_head_kv * head_dim */
    int n_kv_layers;
    uint64_t scratch_floats;    /* per thread, quant_matmul */
    uint64_t kv_elems;          /* elements of k_pool (= v_pool) */
    uint64_t kv_scales;         /* floats of k_scale (= v_scale); 0 unless q8 / fp8 */
    int moe_experts, moe_used, moe_ffn; /* largest over the MoE layers (0: none) */
    uint64_t kv_bytes, work_bytes;
} cpu_layout;

typedef void (*cpu_tp_fn)(void *user, float *o, size_t n); /* cpu_set_tp */

struct engine {
    cpu_tp_fn tp_fn; /* NULL: one rank (cpu_set_tp) */
    void *tp_user;
    const model *m;
    pool *pool;
    engine_opts opt;
    cpu_layout lay;
    uint64_t allocated_kv, allocated_work; /* counted by cpu_alloc */

    /* activations, T = max_tokens rows */
    float *x;      /* (T, dim) residual stream */
    float *xn;     /* (T, dim) normed input of a sub-block */
    float *q;      /* (T, q_dim) */
    float *k;      /* (T, kv_dim) */
    float *v;      /* (T, kv_dim) */
    float *att;    /* (T, q_dim) attention output */
    float *o;      /* (T, dim) output of a sub-block */
    float *gate;   /* (T, ffn_dim) */
    float *up;     /* (T, ffn_dim) */
    float *outx;   /* (max_seqs, dim) final-normed rows whose logits are wanted */
    float *logits; /* (max_seqs, n_vocab): row i = forward entry i */

    /* per thread */
    float *scores;     /* (n_threads, n_ctx) attention probabilities */
    float *mm_scratch; /* (n_threads, scratch_floats) */

    float *inv_freq;   /* (n_rope, head_dim / 2) RoPE inverse frequencies of model.rope[r] */
    int32_t *kv_layer; /* (n_layer) index among attention layers, -1 for other mixers */

    /* KV pool (see the header comment) */
    void *k_pool, *v_pool;
    float *k_scale, *v_scale;
    float fp8_lut[256]; /* fp8 e4m3 byte -> f32 */

    /* per-call bookkeeping */
    int32_t *tok_pos;           /* (T) position of each row */
    const int32_t **tok_blocks; /* (T) block table of each row */
    int32_t *tok_ids;           /* (T) */
    int32_t *out_rows;          /* (max_seqs) row whose logits entry i wants, -1 none */
    int32_t *seq_slot;          /* (max_seqs) slot of entry i of the last forward */
    int n_tok, n_last;          /* rows of this call; entries of the last forward */

    sampler **samplers; /* (max_seqs) penalty history per slot */

    /* mixture of experts (cpu_moe.c; NULL without MoE layers), E = moe_experts,
     * k = moe_used, F = moe_ffn */
    float *moe_logits;   /* (T, E) router logits, then gating probabilities */
    int32_t *moe_id;     /* (T, k) chosen experts of each row */
    float *moe_w;        /* (T, k) their weights */
    int32_t *moe_first;  /* (E + 1) offsets into moe_row: expert e's entries are
                          * [moe_first[e], moe_first[e + 1]) */
    int32_t *moe_row;    /* (T * k) rows routed to each expert, grouped by expert */
    float *moe_rw;       /* (T * k) the weight of each such entry */
    float *moe_x;        /* (T, dim) the gathered input rows of one expert */
    float *moe_g;        /* (T, F) gate, then act(gate) * up */
    float *moe_u;        /* (T, F) up */
    float *moe_y;        /* (T, dim) one expert's output rows */
};

/* Fills l; 0 or ERR_INVALID / ERR_UNSUPPORTED with e set. */
int cpu_layout_of(const model *m, const engine_opts *o, cpu_layout *l, err *e);

/* cpu_attn.c */
void cpu_attention(engine *c, int layer);                 /* att = softmax(q K^T) V for every row */
void cpu_kv_store(engine *c, int layer, int t);           /* K/V of row t -> its block */
int cpu_kv_supported(engine_kv_type t);

/* Tensor parallel on the CPU (tests: tests/unit/tool_tpcpu.c, the sharding math without a
 * GPU): an engine over a packed shard view (shard_pack) calls fn(user, o, n) with its
 * partial output o (n = tokens * dim floats) after the attention output projection and
 * after the FFN, before the residual add; fn must leave the sum over the ranks in o. The
 * logits of such an engine are its vocabulary rows only (the first rows of entry 0). */
void cpu_set_tp(engine *c, cpu_tp_fn fn, void *user);

/* cpu_moe.c */
void cpu_moe(engine *c, int layer); /* o = MoE FFN of xn for every row */

/* cpu.c, shared with cpu_moe.c: y_i = x W_i^T for up to 3 weights, threads over rows */
void cpu_matmul3(engine *c, const float *x, int64_t T, int n, const model_tensor *w0, float *y0,
                 const model_tensor *w1, float *y1, const model_tensor *w2, float *y2);

/* g = act(g) * u over n values, the model's activation (SwiGLU, GeGLU, clamped SwiGLU) */
void cpu_act_rows(const model_hparams *hp, float *g, const float *u, int n);

/* cpu_sample.c */
int cpu_sample(engine *c, const engine_sample_in *in, int n, engine_sample_out *out, err *e);
int cpu_slot_reset(engine *c, int slot, const int32_t *tokens, int n, err *e);
int cpu_slot_accept(engine *c, int slot, int32_t token, err *e);
const float *cpu_logits(engine *c, int seq, err *e);

#endif
