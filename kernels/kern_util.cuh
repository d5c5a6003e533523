// kern_util.cuh — what every kernels/*.cu shares (internal; not a C interface):
// error mapping with file:line, warp reductions, f16/bf16 bit helpers, the P64 order.
#ifndef SPARKD_KERN_UTIL_CUH
#define SPARKD_KERN_UTIL_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "err.h"
}

// Maps a CUDA status to an err_code (no device/driver/image -> ERR_UNSUPPORTED, out of
// memory -> ERR_NOMEM, else ERR_IO) and sets e to "file:line: call: message (name)".
int cuda_fail(err *e, cudaError_t rc, const char *call, const char *file, int line);

// Returns from the enclosing int function on failure. Use CUDA_TRY_GOTO where there is
// something to free (it sets `status`).
#define CUDA_TRY(call)                                                                     \
    do {                                                                                   \
        cudaError_t rc_ = (call);                                                          \
        if (rc_ != cudaSuccess) return cuda_fail(e, rc_, #call, __FILE__, __LINE__);      \
    } while (0)
#define CUDA_TRY_GOTO(call, label)                                                         \
    do {                                                                                   \
        cudaError_t rc_ = (call);                                                          \
        if (rc_ != cudaSuccess) {                                                          \
            status = cuda_fail(e, rc_, #call, __FILE__, __LINE__);                        \
            goto label;                                                                    \
        }                                                                                  \
    } while (0)
// After a <<<>>> launch.
#define CUDA_LAUNCHED() CUDA_TRY(cudaGetLastError())

#define CUDA_STREAM(s) ((cudaStream_t)(s))

// ---- programmatic dependent launch (PDL, sm_90 and later: H100/H200 and GB10)
// A kernel launched with cuda_launch() may start while the kernel before it on the stream
// is still running (when cuda_pdl_enabled()): every such kernel calls pdl_wait() before it
// reads anything an earlier kernel wrote or writes anything an earlier kernel reads
// (griddepcontrol.wait returns once the earlier grids have completed and their memory is
// visible; it is a no-op for a normal launch), and pdl_trigger() to let the next kernel's
// CTAs be scheduled early (they can then fetch constant data such as weights before their
// own wait). Work before pdl_wait() may touch only memory no kernel writes (weights).
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" :::);
#endif
}
// Whether cuda_launch() asks for programmatic serialization (util.cu: off by default; the
// engine turns it on for devices of compute capability 9.0+ unless SPARKD_NO_PDL is set).
int cuda_pdl_enabled(void);
void cuda_pdl_set(int on);
// cuda_pdl_suspend(1): the calling thread's launches go without the PDL attribute until
// cuda_pdl_suspend(0) (engine.cu: prompt steps); returns the previous state.
int cuda_pdl_suspend(int off);

// cuda_launch and cuda_launch_cluster's launch: kern on grid x block, smem bytes of dynamic
// shared memory, with the n attributes at[0..n) and then (at[n], written here: at has room for
// n + 1) the PDL attribute when enabled.
template <typename... KArgs, typename... Args>
cudaError_t cuda_launch_attrs(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, void *stream,
                              cudaLaunchAttribute *at, unsigned n, Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = CUDA_STREAM(stream);
    at[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[n].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = cuda_pdl_enabled() ? n + 1 : n;
    return cudaLaunchKernelEx(&cfg, kern, ((KArgs)args)...);
}

// kern<<<grid, block, smem, stream>>>(args...), with the PDL attribute when enabled.
// Returns the launch status (CUDA_TRY it).
template <typename... KArgs, typename... Args>
cudaError_t cuda_launch(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, void *stream, Args... args) {
    cudaLaunchAttribute at[1];
    return cuda_launch_attrs(kern, grid, block, smem, stream, at, 0, args...);
}

// kern on a grid of clusters of `cluster` CTAs (the cluster dimension attribute; grid a multiple
// of it in each dimension), with the PDL attribute when enabled (as cuda_launch). Returns the
// launch status: a device that cannot place the cluster refuses it here, and the caller decides
// what then (layer.cu: cuda_cluster_refused and its one-CTA-a-row kernels; gemms.cu: its work
// buffer).
template <typename... KArgs, typename... Args>
cudaError_t cuda_launch_cluster(void (*kern)(KArgs...), dim3 grid, dim3 cluster, dim3 block, size_t smem, void *stream,
                                Args... args) {
    cudaLaunchAttribute at[2];
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = cluster.x;
    at[0].val.clusterDim.y = cluster.y;
    at[0].val.clusterDim.z = cluster.z;
    return cuda_launch_attrs(kern, grid, block, smem, stream, at, 1, args...);
}
// The dynamic shared memory kern may take (cudaFuncAttributeMaxDynamicSharedMemorySize), set once a
// device: function attributes are per device (a tensor-parallel engine launches on two). set: the
// caller's static flags, one a device (devices past 64 set it every launch).
template <typename... KArgs>
cudaError_t cuda_smem_once(void (*kern)(KArgs...), int smem, bool (&set)[64]) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) dev = -1;
    if (dev >= 0 && dev < 64 && set[dev]) return cudaSuccess;
    const cudaError_t rc = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (rc == cudaSuccess && dev >= 0 && dev < 64) set[dev] = true;
    return rc;
}
// After cuda_launch_cluster returned rc != cudaSuccess on stream: -1 when the caller may take a
// launch without clusters instead (the stream is not capturing; the error is cleared), else
// cuda_fail's code with `call` in the message (a capture is broken by the failed launch).
int cuda_cluster_refused(cudaError_t rc, void *stream, const char *call, const char *file, int line, err *e);

// The environment variable `name` (a string literal: the cache keeps the pointer) as an int,
// read once a process (cached per name; safe from any thread): a value that begins with a
// digit 1-9 reads as the number its leading digits spell (clamped to INT_MAX), one that begins
// with 0 reads 0 whatever follows ("0", "00", "05": the on/off switches' test of the first
// character); unset, empty or beginning with anything else (a sign, a space, a letter) reads
// def. So cuda_env_int("SPARKD_X", 1) != 0 is on unless SPARKD_X begins with 0.
int cuda_env_int(const char *name, int def);

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide sum / max for blockDim.x a multiple of 32 (<= 1024); red is __shared__ [32].
// Every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float *red) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float *red) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
    return warp_max(v);
}

__device__ __forceinline__ float f16_bits_to_f32(uint16_t h) {
    return __half2float(__ushort_as_half(h));
}

// P64 order (cuda_kern.h): storage position p of a 64-element chunk holds element perm64(p);
// inv_perm64(e) is where element e is stored.
__host__ __device__ __forceinline__ int perm64(int p) {
    return 32 * ((p & 15) >> 3) + 2 * (p >> 4) + (p & 1) + 8 * ((p & 7) >> 1);
}
__host__ __device__ __forceinline__ int inv_perm64(int e) {
    const int grp = e >> 5, r = e & 31;
    const int c = (r >> 1) & 3, jj = (r & 1) | ((r >> 3) << 1);
    return 16 * c + 8 * grp + jj;
}
// Where element e of a row goes in the P64 order of an mm input (each 64-element group
// permuted by inv_perm64).
__device__ __forceinline__ size_t p64_at(int e) { return (size_t)(e & ~63) + inv_perm64(e & 63); }

// 2^(e-127) / 2 (MXFP4 scale with the code table doubled), as quant.c.
__device__ __forceinline__ float e8m0_half(uint8_t e) {
    return __uint_as_float(e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23);
}

#endif
