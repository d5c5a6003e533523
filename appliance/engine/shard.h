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
 *   MoE FFN    the same split inside every expert (F = the experts' width): rows
 *              [r*F/N, (r+1)*F/N) of every expert's gate and up and of their biases
 *              (gate_b, up_b: the same columns of each expert's row), the same columns of
 *              every expert's down; moe.ffn_dim is F/N. The router and its bias stay
 *              whole, so every rank picks the same experts with the same weights; the
 *              down bias (weighted by the routing weight inside the expert sum) is kept
 *              by rank 0 only (NULL on the others), so the ranks' partial sums add up to
 *              it once. A shared expert is refused (not sharded yet).
 *   MoE FFN, moe_split = experts (ENGINE_MOE_SPLIT_EXPERTS): whole experts instead, rank
 *              r holding [r*E/N, (r+1)*E/N): those experts' gate, up and down (ne[2] =
 *              E/N, contiguous bytes) and their gate/up/down biases (the same rows of
 *              the (width, E) bias tensors); moe.expert0 = r*E/N and moe.n_expert_local =
 *              E/N say which (model.h), moe.ffn_dim stays whole. The router and its bias
 *              stay whole, so every rank computes the same top-k over all E; a backend
 *              computes only the routed (token, expert) pairs whose expert it holds (the
 *              others add zero) and the FFN all-reduce sums the ranks. Each expert's down
 *              bias belongs to the rank holding the expert (it is weighted by the routing
 *              weight inside that expert's term), so no rank-0 case. Nothing is cut
 *              inside an expert: the route for files the columns split refuses.
 *   output     vocabulary rows [V*r/N, V*(r+1)/N) (integer division: shards may differ
 *              by one row) of the output matrix, or of the embedding when it is tied.
 *   whole      token_embd, every norm, rope tables: each rank keeps the whole residual.
 * hp.n_head, hp.n_head_kv and hp.ffn_dim are the rank's; hp.n_vocab stays the whole
 * vocabulary (token ids, sampling): the output tensor's ne[1] is the shard's rows.
 * What the backend adds (kernels/engine.cu): the partial outputs of wo, w_down and the
 * experts' down are summed over the ranks (all-reduce) before the residual add, where bo
 * is added once; the vocabulary shards of the logits are concatenated on rank 0 (gather).
 * The CUDA engine pads each rank's experts to its kernels' multiple of 64 with zeros
 * (shard_copy_experts). The CPU engine runs a packed view (shard_pack) with the sums done
 * by a hook (cpu_set_tp): tests/tp/test_tp_cpu.py, the sharding check without a GPU.
 *
 * Bytes: a row slice points into the model's weight buffer. A column slice's rows are
 * `stride` source bytes apart (its data points at row 0 of the slice and row_bytes is
 * the slice's own), and a slice of a stacked expert tensor (ne[2] experts) numbers its
 * rows expert-major (row e * ne[1] + j) with experts further apart than ne[1] rows, so
 * read any tensor of a view with shard_copy_rows.
 *
 * Refused (ERR_UNSUPPORTED, naming the tensor): a width not divisible by N, a column
 * slice that would cut a quantization block (the down matrices' F/N must be a multiple
 * of the format's block: 32 for MXFP4 / Q8_0, 256 for K-quants — Q4_K_M MoE files whose
 * expert width is 768 cannot be split in two this way: split them by experts), quantized
 * vectors; by experts, a number of experts not divisible by N.
 *
 * Owns: the view's model struct, layer array and tensor table, and after shard_pack the
 * sliced tensors' bytes; never the source's weight buffer (the source model must outlive
 * the view). */
#ifndef SPARKD_SHARD_H
#define SPARKD_SHARD_H

#include <stdint.h>

#include "engine.h"
#include "err.h"
#include "model.h"

typedef struct shard shard;

/* 0 if the model can be split over `size` ranks; else ERR_UNSUPPORTED (or ERR_INVALID for
 * a size out of 1..8) naming the first reason (heads not divisible, an FFN width whose
 * share is not a whole number of quantization blocks, a sliced vector that is quantized,
 * a shared expert, a layer kind not sharded yet). */
int shard_check(const model *m, int size, engine_moe_split split, err *e);

/* The view of rank `rank` of `size` (shard_check first); split: how MoE layers divide. */
int shard_open(shard **out, const model *m, int size, int rank, engine_moe_split split, err *e);
void shard_free(shard *s);

/* Copies every sliced tensor of the view into a buffer the view owns, contiguous (rows
 * row_bytes apart, experts ne[1] rows apart), so that a backend reading tensors in place
 * (the CPU engine) can run the view as a model; offsets then count in that buffer. The
 * tensors kept whole still point into the source model. */
int shard_pack(shard *s, err *e);
const model *shard_model(const shard *s);

/* Rows [r0, r0 + n) of tensor t of the view (or of any model: a tensor the view does not
 * own is read as it lies) packed into dst: n * t->row_bytes bytes. A stacked expert
 * tensor's rows are numbered expert-major: 0 .. ne[1] * ne[2]. */
void shard_copy_rows(const shard *s, const model_tensor *t, int64_t r0, int64_t n, void *dst);

/* A stacked expert tensor t (ne = [cols, f, E] gate/up, or [f, dim, E] down; of the view
 * or of any model) with each expert's width f padded to fp (backends whose kernels need a
 * multiple: the CUDA engine pads to 64; the padding adds nothing: zero rows of gate/up
 * give act(0, 0) = 0, zero columns of down multiply those zeros; fp - f must be whole
 * blocks of down's format). Rows [r0, r0 + n) of the padded layout into dst, rb bytes
 * each: gate/up (down = 0): E * fp rows of t->row_bytes (= rb), expert e's real rows at
 * e * fp, then fp - f zero rows; down (down = 1): dim * E rows of the f columns' bytes
 * followed by zero bytes up to rb (the row bytes of fp columns). */
void shard_copy_experts(const shard *s, const model_tensor *t, int f, int fp, int down, int64_t r0, int64_t n,
                        uint64_t rb, void *dst);

/* The vocabulary rows of rank r: [*v0, *v0 + *vn). */
void shard_vocab(int n_vocab, int size, int rank, int *v0, int *vn);

#endif
