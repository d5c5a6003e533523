/* cuda.h — the CUDA unit's C interface (prefix cuda_).
 *
 * Every kernels/NAME.cu file is compiled by nvcc for sm_90a (H100/H200) and sm_121a
 * (GB10) into one fatbin and linked into sparkd with cudart_static; the rest of sparkd is
 * C11 and sees only this header. Every function returns 0 or an err_code and fills `e`;
 * none aborts, so a machine without a GPU or driver gets an error value back (the CPU
 * build does not link this unit at all: SPARKD_CUDA is 0 there).
 *
 * Status mapping: no device, no/old driver, no kernel image for this chip ->
 * ERR_UNSUPPORTED; out of device memory -> ERR_NOMEM; bad arguments -> ERR_INVALID; any
 * other CUDA failure -> ERR_IO. Messages carry the source file:line of the failing call.
 *
 * This header: the device description and a bandwidth probe. The inference kernels have
 * their own interface, cuda_kern.h. */
#ifndef SPARKD_CUDA_H
#define SPARKD_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "err.h"

/* Writes one line describing device 0 into out[cap] (always NUL-terminated when cap > 0):
 * name, compute capability, SMs, global memory, L2, max shared memory per block,
 * whether the device is integrated (GB10 is; its memory is the host's, see
 * firmware-notes/README.md for why sizes must then come from /proc/meminfo). */
int cuda_device_describe(char *out, size_t cap, err *e);

/* Device-memory read bandwidth over a `bytes` buffer (rounded down to 16-byte units; at
 * least 1 MiB), best of `iters` timed passes after one warm-up. Each thread issues
 * 16-byte loads in a grid-stride loop and keeps a sum so the loads cannot be elided.
 * *gbps = bytes / best pass time, in 1e9 bytes per second. */
int cuda_probe_read_bw(size_t bytes, int iters, double *gbps, err *e);

/* Tensor-core throughput of the instruction the prefill GEMM issues (mma.sync m16n8k16,
 * f16 inputs, f32 accumulation), from registers, every SM busy: best of 5 timed runs, in
 * 1e12 FLOP/s (2 x 16 x 8 x 16 per instruction). The exact GEMM path issues two of these
 * per product term (activation hi and lo halves). */
int cuda_probe_mma_peak(double *tflops, err *e);
/* The same for the int8 products of precision fast (mma.sync m16n8k32 s8 x s8 -> s32),
 * in 1e12 OP/s (2 x 16 x 8 x 32 per instruction). */
int cuda_probe_mma_peak_s8(double *tops, err *e);

/* Benchmarks only (sparkd bench --depth): fills KV blocks [0, n_blocks) (all when < 0)
 * of a CUDA engine (engine_cuda_ops) with random values, so decode at a long context can
 * be timed without first prefilling that context. */
struct engine;
int cuda_bench_fill_kv(struct engine *g, int n_blocks, unsigned long long seed, err *e);

#ifdef __cplusplus
}
#endif

#endif
