// util.cu — the error mapping every kernels/*.cu uses (kern_util.cuh).
#include <string.h>

#include "kern_util.cuh"

// The source file's base name, so messages never carry a build host's path.
static const char *cuda_src_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int cuda_fail(err *e, cudaError_t rc, const char *call, const char *file, int line) {
    err_code code = ERR_IO;
    switch (rc) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorInvalidDevice:
    case cudaErrorStubLibrary:
    case cudaErrorCallRequiresNewerDriver:
    case cudaErrorUnsupportedPtxVersion:
        code = ERR_UNSUPPORTED;
        break;
    case cudaErrorMemoryAllocation:
        code = ERR_NOMEM;
        break;
    default:
        break;
    }
    return err_set(e, code, "%s:%d: %s: %s (%s)", cuda_src_name(file), line, call,
                   cudaGetErrorString(rc), cudaGetErrorName(rc));
}

static int g_pdl = 0;
int cuda_pdl_enabled(void) { return g_pdl; }
void cuda_pdl_set(int on) { g_pdl = on; }
