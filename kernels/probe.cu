// probe.cu — device description and read-bandwidth probe (see cuda.h).
//
// Include cuda.h before anything that pulls in err.h: it wraps err.h in extern "C".
#include "cuda.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kern_util.cuh"

// ---------------------------------------------------------------------------------------
// device description

extern "C" int cuda_device_describe(char *out, size_t cap, err *e) {
    if (!out || cap == 0) return err_set(e, ERR_INVALID, "cuda_device_describe: no output buffer");
    out[0] = '\0';
    int n = 0;
    CUDA_TRY(cudaGetDeviceCount(&n));
    if (n <= 0) return err_set(e, ERR_UNSUPPORTED, "no CUDA device");
    cudaDeviceProp p;
    CUDA_TRY(cudaGetDeviceProperties(&p, 0));
    int clock_khz = 0;
    CUDA_TRY(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
    snprintf(out, cap,
             "%s, sm_%d%d, %d SMs, %.1f GiB global, %.1f MiB L2, %zu KiB smem/block (opt-in), "
             "%.2f GHz, %s, %d device(s)",
             p.name, p.major, p.minor, p.multiProcessorCount,
             (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0),
             (double)p.l2CacheSize / (1024.0 * 1024.0), p.sharedMemPerBlockOptin / 1024,
             clock_khz / 1e6, p.integrated ? "integrated" : "discrete", n);
    return 0;
}

// ---------------------------------------------------------------------------------------
// read-bandwidth probe

// src: n16 uint4 (16-byte) elements. Each thread sums what it loads; the sum is written
// only if it hits an unlikely value, which keeps the loads live without a store stream.
__global__ void cuda_read_bw_kernel(const uint4 *__restrict__ src, size_t n16,
                                    unsigned int *__restrict__ sink) {
    unsigned int acc = 0;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n16; i += stride) {
        uint4 v = src[i];
        acc += v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x9e3779b9u) sink[0] = acc;
}

extern "C" int cuda_probe_read_bw(size_t bytes, int iters, double *gbps, err *e) {
    if (!gbps || iters <= 0 || bytes < (1u << 20))
        return err_set(e, ERR_INVALID, "cuda_probe_read_bw: need gbps, iters > 0, bytes >= 1 MiB");
    *gbps = 0.0;
    size_t n16 = bytes / 16;
    bytes = n16 * 16;
    int status = 0;
    uint4 *buf = NULL;
    unsigned int *sink = NULL;
    cudaEvent_t t0 = NULL, t1 = NULL;
    int sms = 0, per_sm = 0;
    const int threads = 256;
    float best_ms = 0.0f;

    CUDA_TRY_GOTO(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), out);
    CUDA_TRY_GOTO(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, cuda_read_bw_kernel,
                                                                threads, 0), out);
    CUDA_TRY_GOTO(cudaMalloc((void **)&buf, bytes), out);
    CUDA_TRY_GOTO(cudaMalloc((void **)&sink, sizeof *sink), out);
    CUDA_TRY_GOTO(cudaMemset(buf, 0x5a, bytes), out);
    CUDA_TRY_GOTO(cudaEventCreate(&t0), out);
    CUDA_TRY_GOTO(cudaEventCreate(&t1), out);
    {
        // enough resident blocks to fill every SM; the grid-stride loop covers the rest
        int blocks = sms * (per_sm > 0 ? per_sm : 1);
        for (int it = -1; it < iters; it++) {  // it == -1: warm-up, not timed
            CUDA_TRY_GOTO(cudaEventRecord(t0), out);
            cuda_read_bw_kernel<<<blocks, threads>>>(buf, n16, sink);
            CUDA_TRY_GOTO(cudaGetLastError(), out);
            CUDA_TRY_GOTO(cudaEventRecord(t1), out);
            CUDA_TRY_GOTO(cudaEventSynchronize(t1), out);
            float ms = 0.0f;
            CUDA_TRY_GOTO(cudaEventElapsedTime(&ms, t0, t1), out);
            if (it >= 0 && (best_ms == 0.0f || ms < best_ms)) best_ms = ms;
        }
    }
    if (best_ms > 0.0f) *gbps = (double)bytes / (best_ms * 1e-3) / 1e9;
out:
    if (t0) cudaEventDestroy(t0);
    if (t1) cudaEventDestroy(t1);
    cudaFree(buf);
    cudaFree(sink);
    return status;
}

// ---------------------------------------------------------------------------------------
// tensor-core peaks of the kinds the prompt products issue: mma.sync.m16n8k16 f16 x f16 -> f32
// (precision exact, and the f16 path) and mma.sync.m16n8k32 s8 x s8 -> s32 (precision fast:
// kernels/mmq.cu)

// Every warp runs `iters` rounds of 8 independent MMAs from registers (operands are
// non-zero and differ per lane); the sums are written only on an unlikely value.
// a[4], b0, b1: the same register counts for both kinds (16 x 16 f16 / 16 x 32 s8 A, B halves).
template <int S8>
__global__ void cuda_mma_peak_kernel(int iters, float *sink) {
    const uint32_t l = threadIdx.x & 31;
    uint32_t a[4], b0, b1;
    for (int i = 0; i < 4; i++) a[i] = 0x3c003c00u + (l * 7 + i) * 0x00010001u; // ~1.0 halves; small s8 codes
    b0 = 0x38003800u + l * 0x00030003u;                                          // ~0.5
    b1 = 0x34003400u + l * 0x00050005u;                                          // ~0.25
    float acc[8][4];
    int iacc[8][4];
    for (int k = 0; k < 8; k++) {
        acc[k][0] = acc[k][1] = acc[k][2] = acc[k][3] = 0.0f;
        iacc[k][0] = iacc[k][1] = iacc[k][2] = iacc[k][3] = 0;
    }
    for (int it = 0; it < iters; it++) {
#pragma unroll
        for (int k = 0; k < 8; k++) {
            if (S8)
                asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                             "{%8,%9}, {%0,%1,%2,%3};\n"
                             : "+r"(iacc[k][0]), "+r"(iacc[k][1]), "+r"(iacc[k][2]), "+r"(iacc[k][3])
                             : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
            else
                asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                             "{%8,%9}, {%0,%1,%2,%3};\n"
                             : "+f"(acc[k][0]), "+f"(acc[k][1]), "+f"(acc[k][2]), "+f"(acc[k][3])
                             : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
        }
    }
    float s = 0.0f;
    for (int k = 0; k < 8; k++) s += acc[k][0] + acc[k][1] + acc[k][2] + acc[k][3] +
                                     (float)(iacc[k][0] + iacc[k][1] + iacc[k][2] + iacc[k][3]);
    if (s == 1234.5f) sink[0] = s;
}

static int probe_mma(int s8, double *tops, err *e) {
    if (!tops) return err_set(e, ERR_INVALID, "cuda_probe_mma_peak: no output");
    *tops = 0.0;
    int status = 0, sms = 0;
    float *sink = NULL;
    cudaEvent_t t0 = NULL, t1 = NULL;
    const int iters = 4096, threads = 256, per_sm = 4;
    float best_ms = 0.0f;
    CUDA_TRY_GOTO(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), out);
    CUDA_TRY_GOTO(cudaMalloc((void **)&sink, sizeof *sink), out);
    CUDA_TRY_GOTO(cudaEventCreate(&t0), out);
    CUDA_TRY_GOTO(cudaEventCreate(&t1), out);
    for (int it = -1; it < 5; it++) {
        CUDA_TRY_GOTO(cudaEventRecord(t0), out);
        if (s8) cuda_mma_peak_kernel<1><<<sms * per_sm, threads>>>(iters, sink);
        else cuda_mma_peak_kernel<0><<<sms * per_sm, threads>>>(iters, sink);
        CUDA_TRY_GOTO(cudaGetLastError(), out);
        CUDA_TRY_GOTO(cudaEventRecord(t1), out);
        CUDA_TRY_GOTO(cudaEventSynchronize(t1), out);
        float ms = 0.0f;
        CUDA_TRY_GOTO(cudaEventElapsedTime(&ms, t0, t1), out);
        if (it >= 0 && (best_ms == 0.0f || ms < best_ms)) best_ms = ms;
    }
    if (best_ms > 0.0f) {
        const double k = s8 ? 32.0 : 16.0; // m16 n8 k
        const double ops = (double)sms * per_sm * (threads / 32) * iters * 8 * (2.0 * 16 * 8 * k);
        *tops = ops / (best_ms * 1e-3) / 1e12;
    }
out:
    if (t0) cudaEventDestroy(t0);
    if (t1) cudaEventDestroy(t1);
    cudaFree(sink);
    return status;
}

extern "C" int cuda_probe_mma_peak(double *tflops, err *e) { return probe_mma(0, tflops, e); }
extern "C" int cuda_probe_mma_peak_s8(double *tops, err *e) { return probe_mma(1, tops, e); }
