/* cpu.h — the CPU backend: the readable reference forward pass every GPU
 * result is checked against, multi-threaded over a pool.
 *
 * A forward call takes a batch of sequences, each with its new token span, its
 * starting position and its KV slot, and produces logits for the sequences that
 * ask for them (for their last new token). Memory — activations for up to
 * max_tokens tokens per call, the KV cache for n_slots sequences of n_ctx
 * positions, per-thread scratch, logits for up to n_slots sequences — is
 * planned and allocated once in cpu_engine_create; forward never allocates.
 *
 * KV cache: a pool of fixed-size blocks of CPU_KV_BLOCK positions,
 *   k_pool[layer][block][CPU_KV_BLOCK][n_head_kv * head_dim]  (same for v_pool),
 * stored as f32, f16 or int8 with a per-head-row scale (cpu_engine_opts.kv_type;
 * the q8 scales live in k_scale/v_scale[layer][block][CPU_KV_BLOCK][n_head_kv]). A sequence names its blocks
 * with a block table: blocks[i] holds positions [i*CPU_KV_BLOCK, (i+1)*CPU_KV_BLOCK).
 * The scheduler owns block allocation (sharing, prefix caching); simple callers
 * (the CLI, tools) pass blocks = NULL and a slot instead: slot s then owns the
 * contiguous blocks [s*B, (s+1)*B), B = ceil(n_ctx / CPU_KV_BLOCK). */
#ifndef SPARKD_CPU_H
#define SPARKD_CPU_H

#include <stdint.h>

#include "err.h"
#include "model.h"

typedef struct cpu_engine cpu_engine;

#define CPU_KV_BLOCK 16

typedef enum cpu_kv_type {
    CPU_KV_F32 = 0, /* exact: matches float32 references bit for bit in the attention */
    CPU_KV_F16 = 1, /* half the memory; keys/values rounded to IEEE half */
    CPU_KV_Q8 = 2,  /* a quarter (+ one f32 scale per head row): symmetric int8 per head_dim row */
} cpu_kv_type;

typedef struct cpu_engine_opts {
    int n_threads;   /* >= 1 */
    int n_ctx;       /* max positions per sequence (model's ctx_train is not enforced) */
    int n_slots;     /* sequences per forward call (and slots for blocks = NULL callers) */
    int max_tokens;  /* tokens per forward call (prompt chunk size) */
    int n_kv_blocks; /* KV pool size in blocks; 0 = n_slots * ceil(n_ctx / CPU_KV_BLOCK) */
    cpu_kv_type kv_type;
} cpu_engine_opts;

typedef struct cpu_seq {
    const int32_t *tokens; /* (n) new tokens */
    int n;                 /* >= 1 */
    int pos;               /* position of tokens[0]; KV for [0, pos) must be in the slot */
    int slot;              /* KV slot in [0, n_slots), used when blocks == NULL */
    const int32_t *blocks; /* block table covering [0, pos + n), or NULL (slot) */
    int want_logits;       /* 1: compute logits of the last new token */
} cpu_seq;

int cpu_engine_create(cpu_engine **out, const model *m, const cpu_engine_opts *opts, err *e);
void cpu_engine_free(cpu_engine *c);

/* Bytes cpu_engine_create would allocate for these options (for `info`). */
uint64_t cpu_engine_plan_bytes(const model *m, const cpu_engine_opts *opts);

/* Runs the batch. Total new tokens <= max_tokens, at most n_slots sequences,
 * distinct slots, pos + n <= n_ctx. Logits of sequence i (if wanted) are then
 * at cpu_logits(c, i) — (n_vocab) floats, valid until the next call. */
int cpu_forward(cpu_engine *c, const cpu_seq *seqs, int n_seqs, err *e);
const float *cpu_logits(const cpu_engine *c, int i);

/* Convenience for one sequence of any length: feeds tokens in chunks of
 * max_tokens; logits of the last token at cpu_logits(c, 0). */
int cpu_prefill(cpu_engine *c, int slot, const int32_t *tokens, int n, int pos, err *e);

int cpu_engine_threads(const cpu_engine *c);
int cpu_engine_kv_blocks(const cpu_engine *c); /* blocks in the pool */

#endif
