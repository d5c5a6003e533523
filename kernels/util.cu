// util.cu — the error mapping every kernels/*.cu uses, the cluster launch's fallback test and
// the cached environment switches (kern_util.cuh).
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
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
static thread_local int t_pdl_off = 0; // cuda_pdl_suspend: this thread's launches without PDL
int cuda_pdl_enabled(void) { return g_pdl && !t_pdl_off; }
void cuda_pdl_set(int on) { g_pdl = on; }
int cuda_pdl_suspend(int off) {
    const int was = t_pdl_off;
    t_pdl_off = off;
    return was;
}

int cuda_cluster_refused(cudaError_t rc, void *stream, const char *call, const char *file, int line, err *e) {
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(CUDA_STREAM(stream), &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone)
        return cuda_fail(e, rc, call, file, line);
    cudaGetLastError();
    return -1;
}

// cuda_env_int's cache: a slot a name asked for (a process reads a few dozen switches). A slot
// is written under env_mu and published by the release store of env_n, so a reader that loads
// env_n (acquire) reads that many whole slots without the lock.
enum { ENV_SLOTS = 64 };
static struct {
    const char *name; // the caller's literal
    int set;          // 1: the value is a number (value), 0: unset / empty / not a number (def)
    int value;
} env_slot[ENV_SLOTS];
static int env_n;
static pthread_mutex_t env_mu = PTHREAD_MUTEX_INITIALIZER;

static int env_find(int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (env_slot[i].name == name || !strcmp(env_slot[i].name, name)) return i;
    return -1;
}
// 1 and *value when s begins with a digit (cuda_env_int's rule), else 0.
static int env_parse(const char *s, int *value) {
    if (!s || s[0] < '0' || s[0] > '9') return 0;
    long long v = 0;
    if (s[0] != '0')
        for (; *s >= '0' && *s <= '9'; s++) v = v < INT_MAX ? v * 10 + (*s - '0') : INT_MAX;
    *value = v < INT_MAX ? (int)v : INT_MAX;
    return 1;
}

int cuda_env_int(const char *name, int def) {
    int i = env_find(__atomic_load_n(&env_n, __ATOMIC_ACQUIRE), name);
    if (i < 0) {
        pthread_mutex_lock(&env_mu);
        const int n = env_n;
        i = env_find(n, name);
        if (i < 0) {
            int value = 0;
            const int set = env_parse(getenv(name), &value);
            if (n == ENV_SLOTS) { // (more names than slots: read each time; no such caller today)
                pthread_mutex_unlock(&env_mu);
                return set ? value : def;
            }
            env_slot[n].name = name;
            env_slot[n].set = set;
            env_slot[n].value = value;
            __atomic_store_n(&env_n, n + 1, __ATOMIC_RELEASE);
            i = n;
        }
        pthread_mutex_unlock(&env_mu);
    }
    return env_slot[i].set ? env_slot[i].value : def;
}
