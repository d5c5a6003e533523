/* cuda_moe.h — the mixture-of-experts FFN on the GPU (prefix cuda_moe_): router gating and
 * top-k, grouping of (token, expert) entries by expert, the experts' gated FFNs over the
 * stacked expert tensors, and the weighted sum. The CPU reference is
 * appliance/engine/cpu/cpu_moe.c; kernels/moe_selftest.cu checks every stage against it.
 *
 * Owns nothing: buffers are the caller's (device memory), launches go on the caller's
 * stream, nothing synchronizes; errors as in cuda_kern.h.
 *
 * For T tokens with normed FFN input x (a cuda_mmin of T rows of dim) and router logits
 * (computed by the caller: cuda_matmul with the F32 router):
 *   route     logits + router_b; gating by kind (cuda_moe_args.gating):
 *               SOFTMAX_TOPK  p = softmax over all experts; the k largest p; w = those p
 *                             (divided by their sum when norm_topk)        (qwen3moe)
 *               TOPK_SOFTMAX  the k largest logits; w = softmax over those k  (gpt-oss)
 *             ties go to the lower expert index; the T*k entries (t, j) are grouped by
 *             expert: first[e]..first[e+1] are expert e's positions in the sorted order,
 *             stok[pos] its token, inv[t*k+j] the position of entry (t, j)
 *   experts   for each sorted position pos of expert e and token t:
 *               h = act(x_t Wg_e^T + bg_e, x_t Wu_e^T + bu_e)     (ffn values)
 *               y[pos] = h Wd_e^T + bd_e                             (dim values)
 *             act: SwiGLU, GeGLU (tanh) or gpt-oss's clamped SwiGLU
 *               g = min(g, limit), u = clamp(u, -limit, limit), g * sigmoid(alpha g) * (u + 1)
 *   combine   out[t] = sum over j, in increasing expert order, of w[t, j] * y[inv[t, j]]
 *
 * Two product paths, each reading every chosen expert's weights once per call:
 *   GEMV (T <= CUDA_MOE_GEMV_MAX_T by default): one CTA per (active expert, row block)
 *     loops over that expert's tokens (up to 4 per pass), f32 activations, f32 sums; gate
 *     and up of a row are computed by the same warp and the activation is applied there.
 *   grouped GEMM (larger T): tokens sorted by expert, one launch over all experts (a tile
 *     table: expert, first position, tokens <= 64), weights dequantized in registers into
 *     mma.sync.m16n8k16 f16 fragments (hi + lo activation halves), f32 accumulation.
 *   On sm_120/121 (GB10) an MXFP4 grouped GEMM on the block-scaled tensor cores is also
 *   compiled (mma.sync kind::mxf8f6f4, e2m1 weights with their ue8m0 scales, activations as
 *   two e4m3 terms with ue8m0 scales per 32): selected with CUDA_MM_FORCE_NATIVE or
 *   SPARKD_MXFP4_NATIVE=1 (the engine); it computes with ~9 bits of activation instead of
 *   ~22, hence not the default.
 *
 * Weights: the stacked expert tensors repacked as one cuda_weight each (rows = n_expert *
 * rows per expert; expert e's rows start at e * rows per expert), any of the types
 * cuda_moe_type_ok accepts; gate and up share a type. */
#ifndef SPARKD_CUDA_MOE_H
#define SPARKD_CUDA_MOE_H

#include <stdint.h>

#include "cuda_kern.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { CUDA_MOE_SOFTMAX_TOPK = 0, CUDA_MOE_TOPK_SOFTMAX = 1 }; /* = model_moe_gating */
enum { CUDA_MOE_ACT_SWIGLU_OAI = 2 };       /* = MODEL_ACT_SWIGLU_OAI (0, 1: CUDA_ACT_*) */
enum { CUDA_MM_FORCE_NATIVE = 3 };          /* cuda_moe_args.path: the sm_12x MXFP4 kernel */
#define CUDA_MOE_MAX_EXPERTS 256
#define CUDA_MOE_MAX_USED 16
#define CUDA_MOE_GEMV_MAX_T 8

/* 1 if experts of this type have MoE kernels (MXFP4, Q4_K, Q5_K, Q6_K, Q8_0, Q4_0). */
int cuda_moe_type_ok(uint32_t type);
/* 1 if this build has the block-scaled MXFP4 kernel for the current device (sm_12x). */
int cuda_moe_native_ok(void);

/* Scratch of one call with up to T tokens (cuda_moe_args.work). */
uint64_t cuda_moe_work_bytes(int T, int dim, int ffn, int n_expert, int n_used);

typedef struct cuda_moe_args {
    int T;                 /* tokens (rows of x, logits, out) */
    int dim, ffn;          /* residual width; rows of one expert's gate/up */
    int n_expert, n_used;  /* <= CUDA_MOE_MAX_EXPERTS, <= CUDA_MOE_MAX_USED */
    int expert0, n_local;  /* expert parallelism (shard.h, moe_split = experts): the weights
                            * and expert biases hold experts [expert0, expert0 + n_local)
                            * only; routing is over all n_expert and an entry routed to an
                            * expert outside adds nothing (route: a "none" bucket, inv -1).
                            * 0, 0 = all (n_local 0 means n_expert) */
    int gating, norm_topk; /* CUDA_MOE_* */
    int act;               /* CUDA_ACT_SILU, CUDA_ACT_GELU_TANH, CUDA_MOE_ACT_SWIGLU_OAI */
    float act_alpha, act_limit;
    const float *logits;   /* (T, n_expert) f32 router logits, bias not added */
    const float *router_b; /* (n_expert) f32 or NULL */
    const cuda_weight *gate, *up; /* rows n_local * ffn, cols dim */
    const cuda_weight *down;      /* rows n_local * dim, cols ffn */
    const float *gate_b, *up_b;   /* (n_local, ffn) f32 or NULL */
    const float *down_b;          /* (n_local, dim) f32 or NULL */
    const cuda_mmin *x;    /* (T, dim): the XP form for the GEMV path, F16 for the GEMM */
    float *out;            /* (T, dim) f32, row stride dim */
    int path;              /* CUDA_MM_AUTO, CUDA_MM_FORCE_GEMV/GEMM, CUDA_MM_FORCE_NATIVE */
    int exact;             /* GEMM: 1 = hi + lo activation halves (as cuda_mm_args.exact) */
    void *work;            /* device, cuda_moe_work_bytes(T, ...) bytes, 256-aligned */
    uint64_t work_bytes;
} cuda_moe_args;

/* The whole FFN (route, experts, combine): 5 launches on the GEMV path (T <= 32 routes in
 * one), 7-8 on the GEMM path. */
int cuda_moe_ffn(const cuda_moe_args *a, void *stream, err *e);
/* Routing alone (tests): the stage cuda_moe_ffn starts with. */
int cuda_moe_route(const cuda_moe_args *a, void *stream, err *e);

/* Where routing results live in the work buffer (device pointers; tests read them). */
typedef struct cuda_moe_view {
    int32_t *ids;   /* (T * n_used) expert of entry (t, j), j in descending weight order */
    float *w;       /* (T * n_used) its weight */
    int32_t *first; /* (n_local + 1): expert e - expert0's positions */
    int32_t *stok;  /* (T * n_used) token of sorted position */
    int32_t *inv;   /* (T * n_used) sorted position of entry (t, j); -1: not a local expert */
    int32_t *meta;  /* [0] active experts, [1] GEMM tiles */
} cuda_moe_view;
void cuda_moe_view_of(void *work, int T, int dim, int ffn, int n_expert, int n_used, cuda_moe_view *v);

/* Runs the MoE kernels against CPU references (moe_selftest.cu): router/top-k of both
 * gating kinds, GEMV and grouped GEMM over each expert type, the MXFP4 block-scaled kernel
 * where the device has it, activations and the whole FFN on odd shapes, outputs poisoned;
 * expert parallelism: the FFN as 2 or 4 calls over shares of the experts (expert0 /
 * n_local), summed, against the same reference ("moe ffn expert-parallel" lines).
 * Prints "ok - / not ok - " lines to f (a FILE *); returns the number of failures, -1 with
 * e set when no GPU is usable. */
int cuda_moe_selftest(void *f, int quick, err *e);

#ifdef __cplusplus
}
#endif

#endif
