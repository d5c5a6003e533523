/* engine.h — the seam between serving and computing (prefix engine_).
 *
 * A backend (engine/cpu/, kernels/ for CUDA) is an ops table chosen once at start
 * (engine_select). Everything above this header — the scheduler, the session, the
 * CLI, the HTTP front end — sees only these types and calls through the table; no
 * caller names a backend. A backend sees only model.h (layer kinds, tensors) and
 * branches on layer kinds, never on an architecture name.
 *
 * Life of an engine:
 *   ops->plan    bytes and KV geometry for given options, without allocating
 *                (the memory check and `sparkd info` use it; create allocates
 *                exactly what plan returned, tests/unit/test_engine checks that)
 *   ops->create  allocates everything once: weights in the backend's layout, the
 *                KV pool, recurrent state slots, activations, logits, sampling
 *                buffers; nothing grows afterwards
 *   ops->forward one step over a batch of sequences (engine_seq); keeps the logits
 *                of the entries that ask for them, on the backend
 *   ops->sample  picks the next token of those entries on the backend (penalties,
 *                grammar mask, logit bias, temperature / top-k / top-p / min-p, the
 *                caller's uniform draw) and returns only ids and logprobs
 *   ops->destroy
 *
 * KV memory: the backend owns the bytes (host or device), in fixed blocks of
 * plan.kv_block positions; serve/kvpool.c owns which block holds what (allocation,
 * prefix cache). A sequence hands forward its block table. Recurrent layers
 * (Mamba2, gated DeltaNet) keep a fixed-size state per slot instead; plan says how
 * many slots and whether block-level prefix caching is valid for the model.
 *
 * Threading: one thread (the scheduler's) drives an engine; calls are not
 * re-entrant. Errors are values (err_code + message); a backend fault makes every
 * later call fail with ERR_IO until the engine is destroyed (the front end then
 * reports 503 and /health goes red). */
#ifndef SPARKD_ENGINE_H
#define SPARKD_ENGINE_H

#include <stdint.h>

#include "err.h"
#include "model.h"
#include "sampler.h"

#define ENGINE_MAX_TOP 20 /* top logprobs per sampled token */

typedef struct engine engine; /* a backend's instance; opaque here */

/* The values 0-2 are those kv_type had before bf16 and fp8 came. */
typedef enum engine_kv_type {
    ENGINE_KV_F32 = 0, /* exact: attention matches float32 references */
    ENGINE_KV_F16,     /* IEEE half */
    ENGINE_KV_Q8,      /* int8, one f32 scale per (position, kv head) row */
    ENGINE_KV_BF16,    /* bfloat16 */
    ENGINE_KV_FP8,     /* fp8 e4m3, one f32 scale per (position, kv head) row */
    ENGINE_KV_COUNT
} engine_kv_type;

/* "f32" "f16" "q8" "bf16" "fp8" <-> engine_kv_type: the one spelling used by the
 * INI file, the CLI and `sparkd info`. parse returns -1 for an unknown name. */
int engine_kv_type_parse(const char *name);
const char *engine_kv_type_name(engine_kv_type t);
#define ENGINE_KV_TYPE_NAMES "f32, f16, q8, bf16, fp8" /* for messages */

/* Input precision of the tensor-core products (cuda backend; the CPU engine is always
 * exact): EXACT splits each activation into f16 hi + lo halves (two MMAs per term, results
 * equal dequantize-then-dot to f32 rounding order); FAST reads one f16 (one MMA per term,
 * relative error <= 2^-11 of sum |w x| per output). "exact" "fast" <-> the enum: the
 * spelling of [engine] precision and --precision; parse returns -1 for others. */
typedef enum engine_precision { ENGINE_PRECISION_EXACT = 0, ENGINE_PRECISION_FAST } engine_precision;
int engine_precision_parse(const char *name);
const char *engine_precision_name(engine_precision p);

/* KV byte arithmetic every backend plans with (engine.c): one stored element, and
 * the f32 scale of one (position, kv head) row (q8, fp8; 0 otherwise). */
int engine_kv_elem_bytes(engine_kv_type t);
int engine_kv_scale_bytes(engine_kv_type t);
/* K and V of one position over all attention layers (model_kv_bytes_per_token). */
uint64_t engine_kv_bytes_per_token(const model *m, engine_kv_type t);

/* Tensor parallelism ([parallel] in the INI; kernels/tp.cu, docs in INSTALL.md): `size`
 * processes, one GPU each, on one host or several, compute one model together. Every
 * rank holds only its shard of the weights and of the KV cache (attention heads and
 * FFN columns Megatron-style, the vocabulary of the output layer); rank 0 runs the
 * front end and the scheduler and sends each step's batch to the others over its
 * control socket; NCCL (loaded at run time) sums the partial results. */
#define ENGINE_PARALLEL_MAX 8
/* How the ranks split a mixture-of-experts layer ([parallel] moe_split, --moe-split;
 * appliance/engine/shard.h): COLUMNS = the same rows of every expert's gate/up and columns
 * of its down on every rank (the default); EXPERTS = whole experts, rank r holding
 * [r*E/N, (r+1)*E/N), every rank routing over all E and computing only its own experts'
 * (token, expert) pairs. parse returns -1 for other spellings. */
typedef enum engine_moe_split { ENGINE_MOE_SPLIT_COLUMNS = 0, ENGINE_MOE_SPLIT_EXPERTS } engine_moe_split;
int engine_moe_split_parse(const char *name);
const char *engine_moe_split_name(engine_moe_split s);
typedef struct engine_parallel {
    int size;              /* ranks in the group; 1 = off */
    int rank;              /* this process, 0..size-1; 0 drives the others */
    char addr[256];        /* rank 0's control socket HOST:PORT: rank 0 listens, the others connect */
    int gpu;               /* CUDA device ordinal this rank computes on */
    int connect_timeout_s; /* start: how long rank 0 waits for every peer (and peers for rank 0) */
    int step_timeout_s;    /* a step (or the NCCL setup) not done by then: the group is aborted */
    char nccl_lib[256];    /* "" = libnccl.so.2 from the loader's search path */
    engine_moe_split moe_split; /* MoE layers: columns of every expert (0) or whole experts */
} engine_parallel;

typedef struct engine_opts {
    int n_threads;       /* CPU threads (cpu backend; host-side work elsewhere), >= 1 */
    int n_ctx;           /* max positions per sequence */
    int max_seqs;        /* sequences per forward call = recurrent state and sampler slots */
    int max_tokens;      /* new tokens per forward call (decode tokens + prompt chunks) */
    int n_kv_blocks;     /* KV pool in blocks; 0 = max_seqs * ceil(n_ctx / kv_block) */
    engine_kv_type kv_type;
    engine_precision precision; /* tensor-core product input (cuda backend); 0 = exact */
    int device;          /* GPU ordinal (cuda backend) */
    uint64_t memory_limit; /* bytes; 0 = none. A hard ceiling over weights + KV + state +
                            * work: plan fails with ERR_NOMEM naming the numbers */
    const engine_parallel *parallel; /* NULL (or size 1): one GPU. Else engine_tp_ops only:
                            * plan and create are this rank's (its shard, its KV share) */
} engine_opts;

typedef struct engine_plan {
    uint64_t weights_bytes; /* resident weights in the backend's layout */
    uint64_t kv_bytes;      /* the KV pool */
    uint64_t state_bytes;   /* recurrent state slots */
    uint64_t work_bytes;    /* activations, logits, sampling, staging, graphs */
    uint64_t total_bytes;   /* the sum: what create will take */
    uint64_t available_bytes; /* what the backend found free (0 = not measured) and where:  */
    const char *available_from; /* "/proc/meminfo MemAvailable + SwapFree", "cudaMemGetInfo" */
    uint64_t kv_bytes_per_token; /* all attention layers, this kv_type */
    int kv_block;           /* positions per KV block */
    int n_kv_blocks;        /* blocks in the pool */
    int n_state_slots;      /* recurrent state slots (0: no recurrent layers) */
    int prefix_cache;       /* 1: full KV blocks may be shared by content (no recurrent layers) */
} engine_plan;

enum {
    ENGINE_WANT_LOGITS = 1, /* keep the last new token's logits for ops->sample */
};

/* One sequence of a forward batch. */
typedef struct engine_seq {
    const int32_t *tokens; /* (n) new token ids */
    int n;                 /* >= 1 */
    int pos;               /* position of tokens[0]; K/V of [0, pos) are in the blocks */
    const int32_t *blocks; /* block table: blocks[i] holds positions [i*kv_block, (i+1)*kv_block),
                            * covering [0, pos + n) */
    int slot;              /* [0, max_seqs): recurrent state and sampler slot; distinct in a batch */
    int want;              /* ENGINE_WANT_* flags */
} engine_seq;

/* One token to pick, for an entry of the last forward batch that wanted logits. */
typedef struct engine_sample_in {
    int seq;                   /* index of the entry in the last forward batch */
    const sampler_params *sp;  /* temperature <= 0: greedy */
    float u;                   /* uniform [0, 1) draw from the sequence's seeded host RNG
                                * (sampler_rng_next): the same seed gives the same tokens on
                                * every backend */
    const uint32_t *mask;      /* NULL, or ceil(n_vocab / 32) words: bit (id % 32) of word
                                * id / 32 set = id allowed (grammar); applied first */
    const int32_t *bias_ids;   /* (n_bias) logit_bias: added to the raw logits before penalties */
    const float *bias_vals;
    int n_bias;
    int logprob;               /* report the chosen token's logprob */
    int n_top;                 /* 0..ENGINE_MAX_TOP alternatives */
} engine_sample_in;

/* logprobs are log-softmax of the raw logits (before penalties, mask and temperature),
 * as OpenAI reports them. */
typedef struct engine_sample_out {
    int32_t token;
    float logprob;
    int n_top;
    int32_t top_ids[ENGINE_MAX_TOP];      /* by descending logprob */
    float top_logprobs[ENGINE_MAX_TOP];
} engine_sample_out;

/* What create really allocated, by the categories of engine_plan (for the check that
 * plan and create agree: tests/unit/test_engine.c). weights_bytes counts the weights
 * the engine computes from, also where it uses the model's buffer in place. */
typedef struct engine_usage {
    uint64_t weights_bytes, kv_bytes, state_bytes, work_bytes;
} engine_usage;

typedef struct engine_ops {
    const char *name; /* "cpu", "cuda" */
    /* Fills p for these options; allocates nothing. ERR_NOMEM (naming the numbers) when
     * total_bytes exceeds memory_limit or what is free; ERR_UNSUPPORTED when the model
     * has a layer kind or tensor type this backend cannot run (naming it). */
    int (*plan)(const model *m, const engine_opts *o, engine_plan *p, err *e);
    int (*create)(engine **out, const model *m, const engine_opts *o, err *e);
    void (*destroy)(engine *g);
    /* One step. Total new tokens <= max_tokens, n <= max_seqs, slots distinct,
     * pos + n <= n_ctx, block ids in range: otherwise ERR_INVALID and nothing ran. */
    int (*forward)(engine *g, const engine_seq *seqs, int n, err *e);
    /* Penalty history of a sampler slot: reset to these tokens (the prompt, or prompt +
     * generated after a preemption), then accept each token as it is generated. */
    int (*slot_reset)(engine *g, int slot, const int32_t *tokens, int n, err *e);
    int (*slot_accept)(engine *g, int slot, int32_t token, err *e);
    /* Picks tokens for in[0..n) (each names a forward entry that wanted logits and
     * the slot of that entry keeps the penalty history). */
    int (*sample)(engine *g, const engine_sample_in *in, int n, engine_sample_out *out, err *e);
    /* The logits of forward entry seq, copied to host memory owned by the engine, valid
     * until the next forward: tests, golden checks and tools. (n_vocab) floats. */
    const float *(*logits)(engine *g, int seq, err *e);
    /* What create allocated (see engine_usage); may be NULL in a backend that cannot say. */
    void (*usage)(const engine *g, engine_usage *u);
} engine_ops;

/* Plan and forward arithmetic every backend shares (engine.c), so that all of them accept
 * and refuse the same things with the same words:
 *  - engine_kv_pool_blocks: the KV pool in blocks of kv_block positions (o->n_kv_blocks, or
 *    max_seqs * ceil(n_ctx / kv_block)); ERR_INVALID when its positions pass INT32_MAX;
 *  - engine_plan_check_limit: ERR_NOMEM naming weights, KV cache, buffers and their sum
 *    when p->total_bytes is over o->memory_limit (0: no limit);
 *  - engine_check_batch: the rules of ops->forward over seqs[0..n) for an engine with these
 *    options, a pool of n_blocks blocks of kv_block positions and n_vocab token ids
 *    (ERR_INVALID naming the first broken one). */
int engine_kv_pool_blocks(const engine_opts *o, int kv_block, int *n_blocks, err *e);
int engine_plan_check_limit(const engine_plan *p, const engine_opts *o, err *e);
int engine_check_batch(const engine_seq *seqs, int n, const engine_opts *o, int kv_block, int n_blocks, int n_vocab,
                       err *e);
/* inv[i] = the rotation speed of pair i under rope r, (n_rot / 2) floats: the float32
 * recipe of transformers' RoPE init (freq_factors, linear scaling, YaRN's ramp). Every
 * backend builds its frequency table with it. */
void engine_rope_inv_freq(const model_rope *r, float *inv);

/* The backends compiled into this binary. */
extern const engine_ops engine_cpu_ops;
#ifdef SPARKD_CUDA
extern const engine_ops engine_cuda_ops;
/* Tensor parallel over NCCL (kernels/tp.cu): needs engine_opts.parallel. On rank 0 it is
 * a whole engine (forward sends the batch to the other ranks first; sample and logits
 * are rank 0's: the logits are gathered there). On the other ranks only create, destroy
 * and engine_tp_follow (kernels/tp.h) are used. */
extern const engine_ops engine_tp_ops;
#endif

/* The tensor-parallel engine for p (size > 1): engine_tp_ops when this build has the
 * CUDA unit and device is "cuda" or "auto"; NULL with e set otherwise. */
const engine_ops *engine_select_parallel(const engine_parallel *p, const char *device, err *e);

/* "cpu", "cuda" or "auto" (the GPU when one is present and usable, else the CPU).
 * Returns the table, or NULL with e set (unknown name, or "cuda" asked for in a build
 * or on a machine without it: the message says which). */
const engine_ops *engine_select(const char *device, err *e);

#endif
