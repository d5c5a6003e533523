/* shard.h — one rank's share of a model under tensor parallelism (prefix shard_).
 *
 * A shard is a view: a `model` with the same layers whose hyper-parameters and tensors
 * are one rank's, so a backend computes it as if it were a smaller model. Rank r of N:
 *   attention  query heads [r*H/N, (r+1)*H/N) and KV heads [r*Hkv/N, (r+1)*Hkv/N) (the
 *              GQA groups stay whole: query head h reads KV head h / (H/Hkv)): wq, wk,
 *              wv and bq, bk, bv by rows ("column-parallel"), sinks by head; wo by
 *              columns ("row-parallel": the rank's product is a partial sum of the whole
 *              output); bo, q_norm, k_norm whole. The KV cache holds the rank's heads.
 *   dense FFN  rows [r*F/N, (r+1)*F/N) of w_gate and w_up, the same columns of w_down.
 *   output     vocabulary rows [V*r/N, V*(r+1)/N) (integer division: shards may differ
 *              by one row) of the output matrix, or of the embedding when it is tied.
 *   whole      token_embd, every norm, rope tables: each rank keeps the whole residual.
 * hp.n_head, hp.n_head_kv and hp.ffn_dim are the rank's; hp.n_vocab stays the whole
 * vocabulary (token ids, sampling): the output tensor's ne[1] is the shard's rows.
 * What the backend adds (kernels/engine.cu): the partial outputs of wo and w_down are
 * summed over the ranks (all-reduce) before the residual add, where bo is added once;
 * the vocabulary shards of the logits are concatenated on rank 0 (gather).
 *
 * Bytes: a row slice points into the model's weight buffer. A column slice's rows are
 * `stride` source bytes apart (its data points at row 0 of the slice and row_bytes is
 * the slice's own), so read any tensor of a view with shard_copy_rows.
 *
 * Mixture-of-experts layers are refused today (ERR_UNSUPPORTED): the design (INSTALL.md,
 * "Tensor parallel") is the same split inside every expert (rows of gate/up, columns of
 * down, the router whole) or, as an option, whole experts per rank (expert parallel).
 *
 * Owns: the view's model struct, layer array and tensor table; never weight bytes (the
 * source model must outlive the view). */
#ifndef SPARKD_SHARD_H
#define SPARKD_SHARD_H

#include <stdint.h>

#include "err.h"
#include "model.h"

typedef struct shard shard;

/* 0 if the model can be split over `size` ranks; else ERR_UNSUPPORTED (or ERR_INVALID for
 * a size out of 1..8) naming the first reason (heads not divisible, an FFN width whose
 * share is not a whole number of quantization blocks, a sliced vector that is quantized,
 * a layer kind not sharded yet). */
int shard_check(const model *m, int size, err *e);

/* The view of rank `rank` of `size` (shard_check first). */
int shard_open(shard **out, const model *m, int size, int rank, err *e);
void shard_free(shard *s);
const model *shard_model(const shard *s);

/* Rows [r0, r0 + n) of tensor t of the view (or of any model: a tensor the view does not
 * own is read as it lies) packed into dst: n * t->row_bytes bytes. */
void shard_copy_rows(const shard *s, const model_tensor *t, int64_t r0, int64_t n, void *dst);

/* The vocabulary rows of rank r: [*v0, *v0 + *vn). */
void shard_vocab(int n_vocab, int size, int rank, int *v0, int *vn);

#endif
