/* dq.h — round 10, helper dq: the batch-1 decode attention chain in one launch (kernels/dq.cu).
 *
 * cuda_dq_attention does, for one token (T == 1) of one sequence, what cuda_qkv_rope_store +
 * cuda_attention (decode plan: attn_dec3 + attn_dec_combine_u) do together: bias, q / k RMS
 * norm and RoPE of the raw q+k+v GEMV output, the new K / V row into the f16 paged cache, the
 * attention over positions [lo, pos] and the merge of its splits, writing the f32 row Wo reads
 * (P64 order when out_p64). It reads qa (everything qkv_rope_store reads; q / k / v plain rows,
 * no deferred partials) and aa (out, out_p64, work, scale, window, sinks, n_head, n_kv); q is
 * not written back (nothing after the attention reads it).
 *
 * SPARKD_DQ=0: never taken (today's path exactly); default 1: taken where cuda_dq_takes says.
 * SPARKD_DQ_SPLITS=n (1..64, default 32): CTAs over one KV head's positions at most;
 * SPARKD_DQ_CHUNK=n (32..4096, default 128): positions of a CTA at least (multiple of 32).
 * SPARKD_DQ_CTX=n: the longest context (positions) the engine runs the chain at (cuda_dq_max_ctx). */
#ifndef SPARKD_DQ_H
#define SPARKD_DQ_H

#include "cuda_kern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether cuda_dq_attention takes this layer's step: T == 1, SPARKD_DQ on, f16 KV, head_dim
 * 128, n_head / n_kv == 4, no deferred partials, work_bytes >= cuda_dq_work_bytes. */
int cuda_dq_takes(const cuda_qkv_args *qa, int T, uint64_t work_bytes);
uint64_t cuda_dq_work_bytes(int n_head, int head_dim);
int cuda_dq_attention(const cuda_qkv_args *qa, const cuda_attn_args *aa, const cuda_tokens *tk, void *stream, err *e);
/* Tests and benches: 1 / 0 = on / off, -1 = as SPARKD_DQ says; returns what it was. */
int cuda_dq_set(int on);
/* Tests and benches: splits and chunk (0: the env / default). */
void cuda_dq_tune(int splits, int chunk);
long cuda_dq_launches(void);
/* The engine takes the chain for a one-token step of at most this many positions (context incl.
 * the new token; SPARKD_DQ_CTX, default DQ_CTX_DEFAULT in dq.cu; 0 when SPARKD_DQ=0): its CUDA graphs
 * are keyed by it, so a step past it replays today's qkv + attention + combine exactly. */
int cuda_dq_max_ctx(void);

#ifdef __cplusplus
}
#endif

#endif
