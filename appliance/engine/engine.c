/* engine.c — choosing a backend, the KV type names and the KV byte arithmetic
 * every backend plans with. See engine.h. */
#include "engine.h"

#include <string.h>

#ifdef SPARKD_CUDA
#include "cuda.h"
/* Weak: a program linked without the CUDA unit (the unit tests) or a tree where
 * kernels/ has no engine yet still links, and engine_select("cuda") then says what
 * is missing instead of failing to link. */
extern const engine_ops engine_cuda_ops __attribute__((weak));
extern int cuda_device_describe(char *out, size_t cap, err *e) __attribute__((weak));
extern const engine_ops engine_tp_ops __attribute__((weak));
#endif

static const char *const kv_names[ENGINE_KV_COUNT] = {"f32", "f16", "q8", "bf16", "fp8"};

int engine_kv_type_parse(const char *name) {
    for (int t = 0; t < ENGINE_KV_COUNT; t++)
        if (name && !strcmp(name, kv_names[t])) return t;
    return -1;
}

const char *engine_kv_type_name(engine_kv_type t) {
    return (int)t >= 0 && t < ENGINE_KV_COUNT ? kv_names[t] : "?";
}

int engine_kv_elem_bytes(engine_kv_type t) {
    switch (t) {
    case ENGINE_KV_F16:
    case ENGINE_KV_BF16: return 2;
    case ENGINE_KV_Q8:
    case ENGINE_KV_FP8: return 1;
    default: return 4;
    }
}

int engine_kv_scale_bytes(engine_kv_type t) {
    return t == ENGINE_KV_Q8 || t == ENGINE_KV_FP8 ? (int)sizeof(float) : 0;
}

uint64_t engine_kv_bytes_per_token(const model *m, engine_kv_type t) {
    return model_kv_bytes_per_token(m, (double)engine_kv_elem_bytes(t), engine_kv_scale_bytes(t));
}

const engine_ops *engine_select_parallel(const engine_parallel *p, const char *device, err *e) {
    if (!p || p->size < 2) {
        err_set(e, ERR_INVALID, "tensor parallel: size %d", p ? p->size : 0);
        return NULL;
    }
    if (device && strcmp(device, "cuda") && strcmp(device, "auto")) {
        err_set(e, ERR_INVALID, "[parallel] size %d needs device = cuda (not %.16s)", p->size, device);
        return NULL;
    }
#ifdef SPARKD_CUDA
    if (&engine_tp_ops != NULL) return &engine_tp_ops;
#endif
    err_set(e, ERR_UNSUPPORTED, "[parallel] size %d: this sparkd was built without CUDA (tensor parallel needs it)", p->size);
    return NULL;
}

/* A test binary (build/tests/sparkd_scripted, tests/engine_script/) defines this
 * table; every device then means the scripted engine. The shipped binaries leave it
 * undefined, so this is NULL there. */
extern const engine_ops engine_test_ops __attribute__((weak));

const engine_ops *engine_select(const char *device, err *e) {
    if (&engine_test_ops != NULL) return &engine_test_ops;
    if (!device || !device[0] || !strcmp(device, "cpu")) return &engine_cpu_ops;
    const int cuda = !strcmp(device, "cuda");
    if (!cuda && strcmp(device, "auto")) {
        err_set(e, ERR_INVALID, "device '%.32s' is not one of cpu, cuda, auto", device);
        return NULL;
    }
#ifdef SPARKD_CUDA
    if (&engine_cuda_ops == NULL || cuda_device_describe == NULL) {
        if (!cuda) return &engine_cpu_ops;
        err_set(e, ERR_UNSUPPORTED, "device = cuda: this build has no CUDA engine yet (use cpu)");
        return NULL;
    }
    char line[256];
    err de = {0};
    if (cuda_device_describe(line, sizeof line, &de)) {
        if (!cuda) return &engine_cpu_ops;
        err_set(e, de.code, "device = cuda: %s", de.msg);
        return NULL;
    }
    return &engine_cuda_ops;
#else
    if (!cuda) return &engine_cpu_ops;
    err_set(e, ERR_UNSUPPORTED, "device = cuda: this sparkd was built without CUDA (CPU only)");
    return NULL;
#endif
}
