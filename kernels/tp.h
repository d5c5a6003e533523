/* tp.h — tensor parallelism in the CUDA engine (prefix tp_; engine_tp_ops in engine.h).
 *
 * Ranks are processes, one GPU each (engine_parallel: [parallel] in the INI). Each holds
 * the shard view of the model (appliance/engine/shard.h: its heads, FFN columns and
 * vocabulary rows, the whole residual stream) and runs the plain CUDA engine over it
 * (kernels/engine.cu), which calls back here at three points of a step:
 *   tp_allreduce       after the attention output projection and after the FFN down
 *                      projection: the partial (T, dim) sums of every rank added, in
 *                      place, the same bits on every rank
 *   tp_gather_logits   after the output layer: rank r's (n, V_r) logits land in columns
 *                      [v0_r, v0_r + V_r) of rank 0's (n, V) logits; rank 0 samples (the
 *                      logits are gathered, not sampled shard-wise: penalties, grammar
 *                      masks, top-p and logprobs stay exactly the single-GPU sampler's)
 *   tp_wait            instead of cudaStreamSynchronize: polls the stream, the NCCL
 *                      communicator's error state and the control sockets (a peer that
 *                      exits closes its socket); a dead peer or a step over
 *                      step_timeout_s aborts the communicator (ncclCommAbort) and
 *                      returns ERR_UNAVAILABLE naming the rank: the engine is then
 *                      faulted, the front end answers 503, nothing hangs.
 * Two communicators implement them:
 *   NCCL   (engine_tp_ops) libnccl.so.2 loaded with dlopen only when [parallel] asks
 *          for it (the binary needs no NCCL otherwise); the unique id travels over rank
 *          0's TCP control socket (appliance/engine/tpwire.h), which then carries every
 *          step's batch from rank 0 to the others.
 *   local  (tp_local_*) N shards in one process on one GPU, one host thread each,
 *          partial results summed on the device in rank order: the sharding math
 *          checked against the unsharded engine without a second GPU (sparkd selftest
 *          --tp N; kernels/tpcheck.cu).
 * NCCL_NVLS_ENABLE is set to 0 unless the environment sets it (NVLink multicast is of no
 * use to two ranks and must stay off on shared multi-GPU hosts). */
#ifndef SPARKD_TP_H
#define SPARKD_TP_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "engine.h"
#include "err.h"
#include "shard.h"

typedef struct tp_ctx tp_ctx;

/* ---- engine hooks (kernels/engine.cu) */
const shard *tp_shard(const tp_ctx *t);
/* buf: device (count) f32, this rank's partial sum -> the sum over ranks. */
int tp_allreduce(tp_ctx *t, float *buf, size_t count, void *stream, err *e);
/* Device (max_seqs, V_r) f32: where this rank's output product writes (row stride V_r). */
float *tp_logits_shard(tp_ctx *t);
/* logits: device (n, ld) f32 of rank 0, filled from every rank's shard (others: untouched). */
int tp_gather_logits(tp_ctx *t, float *logits, int n, int ld, void *stream, err *e);
int tp_wait(tp_ctx *t, void *stream, err *e);
/* 1 if steps may be captured into CUDA graphs (NCCL: yes; local: no, it syncs on the host). */
int tp_graphs_ok(const tp_ctx *t);

/* engine.cu: the CUDA engine of one rank over its view (engine_opts.parallel ignored). */
int cuda_engine_create_rank(engine **out, const model *view, const engine_opts *o, tp_ctx *t, err *e);

/* ---- NCCL ranks (engine_tp_ops) */
/* On ranks > 0 after engine_tp_ops.create: executes rank 0's steps until rank 0 says
 * goodbye (returns 0) or fails (ERR_UNAVAILABLE: rank 0 went away; other codes: a step
 * failed). Never returns while rank 0 is alive and healthy. */
int engine_tp_follow(engine *g, err *e);

/* ---- one process, one GPU: engine_opts.parallel->size shard engines in lockstep (rank,
 * address and NCCL ignored), each driven by a host thread of its own; forward runs every
 * shard, sample / slot_* / logits are rank 0's (sparkd selftest --tp N). */
extern const engine_ops tp_local_ops;

/* The sharded engine against the whole-model CUDA engine on the model at path
 * (kernels/tpcheck.cu): logits, greedy tokens, batched = solo, decode speed at 1 and 64
 * sequences. par->addr "" = par->size shards in this process (tp_local_ops); else this
 * process is rank 0 of an NCCL group (the others run `sparkd serve` with their rank).
 * Prints ok / not ok lines to f; returns the failures, or -1 with e set. */
int cuda_tp_check(void *f, const char *path, int kv_type, const engine_parallel *par, err *e);

#ifdef __cplusplus
}
#endif

#endif
