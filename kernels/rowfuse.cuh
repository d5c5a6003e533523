// rowfuse.cuh — internal entry points of round 12's fused row producers (e64.cu, g4.cu), which
// layer.cu and attn.cu try before their own launches. Each returns 0 = launched (instead of the
// caller's kernel), -1 = not taken (the caller goes on as before), > 0 = an error (cuda_fail's code).
// C++ linkage (references); not part of the C interface in cuda_kern.h.
#ifndef SPARKD_ROWFUSE_CUH
#define SPARKD_ROWFUSE_CUH

#include "cuda_kern.h"

// e64.cu: residual + RMSNorm from o's / down's split-K partials (pt), rows a->n (2..64) of dim 4096
int cuda_e64_resid(const cuda_resid_args *a, const cuda_mmin &out, bool pt, void *stream, err *e);
// e64.cu: q / k / v norm + RoPE + KV store from the split-K partials, tk->T rows (2..64)
int cuda_e64_qkv(const cuda_qkv_args *a, const cuda_tokens *tk, void *stream, err *e);
// e64.cu: the decode attention's combine + o's input prepare in one kernel (armed by the engine), U = the combine's
int cuda_e64_comb(const cuda_attn_args *a, int U, void *stream, err *e);
// g4.cu: SiLU(gate) * up from gemms2's pieces (pg / pu) into o's mm input, T rows (2..64) of ffn
int cuda_g4_act(const float *gate, const float *up, int ld, int T, int ffn, int act, const cuda_mmin &out,
                const cuda_part &pg, const cuda_part &pu, void *stream, err *e);

#endif
