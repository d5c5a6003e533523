// selftest_util.cuh — the host-side test context the kernel selftests share (selftest.cu,
// moe_selftest.cu; internal, not a C interface): the random stream, the run's stream and
// timing events, device buffers freed together, upload / download / NaN poisoning, kernel
// timing, and the test generators (random valid GGUF rows, their f32 reference, a repacked
// device weight, normal draws). Host code only: nothing here runs on the device.
//
// Everything sits in an unnamed namespace, so each selftest file has its own copy and its
// own current context S (set by st_begin for the length of one selftest call).
#ifndef SPARKD_SELFTEST_UTIL_CUH
#define SPARKD_SELFTEST_UTIL_CUH

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <vector>

#include "cuda_kern.h"
#include "kern_util.cuh"

extern "C" {
#include "quant.h"
}

namespace {

// splitmix64: uniform, normal and bounded draws for test inputs.
struct rng_t {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    double unit() { return (double)(next() >> 11) * (1.0 / 9007199254740992.0); } // [0,1)
    double normal() {
        double u = unit(), v = unit();
        if (u < 1e-300) u = 1e-300;
        return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
    }
    int below(int n) { return (int)(next() % (uint64_t)n); }
};

// One selftest call's state (a selftest file derives its own context from it).
struct st_ctx {
    FILE *f;
    int quick;
    rng_t rng;
    int fails = 0;
    cudaStream_t st = 0;
    cudaEvent_t e0 = 0, e1 = 0;
    std::vector<void *> dev; // freed by dfree_all (after each test)
    err *e;
};

st_ctx *S; // the running selftest's context

// Makes c the current context (output to file, stdout when NULL).
inline void st_begin(st_ctx *c, void *file, int quick, err *e) {
    c->f = file ? (FILE *)file : stdout;
    c->quick = quick;
    c->e = e;
    S = c;
}

// The seed of a run: SPARKD_SELFTEST_SEED when set, else the time and clock mixed with mix.
inline uint64_t st_seed(uint64_t mix) {
    const char *seed_env = getenv("SPARKD_SELFTEST_SEED");
    return seed_env ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32) ^ mix;
}

// The stream and the two timing events of the current context; false when one cannot be made.
inline bool st_open_stream() {
    return cudaStreamCreate(&S->st) == cudaSuccess && cudaEventCreate(&S->e0) == cudaSuccess &&
           cudaEventCreate(&S->e1) == cudaSuccess;
}
inline void st_close_stream() {
    cudaStreamDestroy(S->st);
    cudaEventDestroy(S->e0);
    cudaEventDestroy(S->e1);
}

// Device memory of `bytes` (16 when 0), freed by dfree_all; NULL when cudaMalloc fails
// (its error is cleared, so the next launch check does not report it).
inline void *dalloc(size_t bytes) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 16) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    S->dev.push_back(p);
    return p;
}
inline void dfree_all() {
    for (void *p : S->dev) cudaFree(p);
    S->dev.clear();
}
// A device copy of h (dalloc'd).
template <class T> T *dup(const std::vector<T> &h) {
    T *d = (T *)dalloc(h.size() * sizeof(T));
    if (d && !h.empty()) cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
    return d;
}
// n elements of device array d, on the host.
template <class T> std::vector<T> get(const T *d, size_t n) {
    std::vector<T> h(n);
    cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
}
inline void poison(void *d, size_t bytes) { cudaMemset(d, 0xff, bytes); } // NaN for f32

// Median time of `reps` runs of fn on the context's stream (after one warm-up), microseconds.
template <class F> double time_us(F fn, int reps) {
    fn();
    std::vector<float> t;
    for (int i = 0; i < reps; i++) {
        cudaEventRecord(S->e0, S->st);
        fn();
        cudaEventRecord(S->e1, S->st);
        cudaEventSynchronize(S->e1);
        float ms = 0;
        cudaEventElapsedTime(&ms, S->e0, S->e1);
        t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    return t.empty() ? 0.0 : 1e3 * t[t.size() / 2];
}

inline const char *tname(uint32_t t) { const quant_traits *q = quant_traits_of(t); return q ? q->name : "?"; }
// An f16 drawn uniformly from [lo, hi).
inline uint16_t rand_f16(double lo, double hi) { return quant_f32_to_f16((float)(lo + (hi - lo) * S->rng.unit())); }

// Random but valid GGUF rows (finite scales of realistic size, every code value), from S's rng.
inline std::vector<uint8_t> st_gen_rows(uint32_t type, int rows, int cols) {
    uint64_t rb = 0;
    quant_row_bytes(type, cols, &rb);
    std::vector<uint8_t> out((size_t)rb * rows);
    rng_t &R = S->rng;
    for (auto &b : out) b = (uint8_t)R.next();
    const quant_traits *qt = quant_traits_of(type);
    const size_t nblk = out.size() / qt->block_bytes;
    for (size_t i = 0; i < nblk; i++) {
        uint8_t *b = out.data() + i * qt->block_bytes;
        uint16_t h;
        switch (type) {
        case QUANT_F32: { float v = (float)(0.1 * R.normal()); memcpy(b, &v, 4); break; }
        case QUANT_F16: h = quant_f32_to_f16((float)(0.1 * R.normal())); memcpy(b, &h, 2); break;
        case QUANT_BF16: h = quant_f32_to_bf16((float)(0.1 * R.normal())); memcpy(b, &h, 2); break;
        case QUANT_Q8_0: case QUANT_Q4_0: case QUANT_Q5_0:
            h = rand_f16(0.002, 0.02); memcpy(b, &h, 2); break;
        case QUANT_Q4_1: case QUANT_Q5_1:
            h = rand_f16(0.002, 0.02); memcpy(b, &h, 2);
            h = rand_f16(-0.05, 0.05); memcpy(b + 2, &h, 2); break;
        case QUANT_Q4_K: case QUANT_Q5_K:
            h = rand_f16(0.0005, 0.004); memcpy(b, &h, 2);
            h = rand_f16(0.0005, 0.004); memcpy(b + 2, &h, 2); break;
        case QUANT_Q6_K: h = rand_f16(0.0005, 0.004); memcpy(b + 208, &h, 2); break;
        case QUANT_MXFP4: b[0] = (uint8_t)(118 + R.below(8)); break;
        }
    }
    return out;
}

// The reference matrix (rows, cols) f32, via quant.c.
inline std::vector<float> st_ref_dequant(uint32_t type, const std::vector<uint8_t> &raw, int rows, int cols) {
    uint64_t rb = 0;
    quant_row_bytes(type, cols, &rb);
    std::vector<float> w((size_t)rows * cols);
    for (int r = 0; r < rows; r++) quant_dequant_row(type, raw.data() + (size_t)r * rb, w.data() + (size_t)r * cols, cols);
    return w;
}

// A device weight repacked from raw on S's stream (in two chunks, to exercise row0; the
// allocation poisoned first); false (and a "not ok" line counted in S) on failure.
inline bool st_make_weight(cuda_weight *w, uint32_t type, const std::vector<uint8_t> &raw, int rows, int cols) {
    w->type = type;
    w->rows = rows;
    w->cols = cols;
    w->base = dalloc(cuda_weight_bytes(type, rows, cols));
    void *draw = dup(raw);
    if (!w->base || !draw) return false;
    poison(w->base, cuda_weight_bytes(type, rows, cols));
    uint64_t rb = 0;
    quant_row_bytes(type, cols, &rb);
    err e2 = {ERR_OK, {0}};
    const int half = rows / 2;
    if (cuda_weight_repack(w, draw, 0, half, S->st, &e2) ||
        cuda_weight_repack(w, (const uint8_t *)draw + (size_t)half * rb, half, rows - half, S->st, &e2)) {
        fprintf(S->f, "not ok - repack: %s\n", e2.msg);
        S->fails++;
        return false;
    }
    return true;
}

// n normal draws times scale, from S's rng.
inline std::vector<float> st_randn(size_t n, double scale) {
    std::vector<float> v(n);
    for (auto &x : v) x = (float)(scale * S->rng.normal());
    return v;
}

} // namespace

// Round 9-13 product tests (t64, w64, wx, wt): the largest over the tokens toks of ||y_t - r_t|| / ||r_t|| (ld a
// token); r = ref or, ref == NULL, the f32 reference W x_t (+ y0) in float64. fin: cleared where a value of y is not finite.
inline double st_tok_err(const std::vector<float> &y, const std::vector<float> *ref, int ld, const std::vector<float> &W, int N,
                         int K, const std::vector<float> &x, const std::vector<int> &toks, const std::vector<float> *y0, int *fin) {
    double worst = 0;
    for (int t : toks) {
        double num = 0, den = 0;
        for (int n = 0; n < N; n++) {
            double s;
            if (ref) {
                s = (*ref)[(size_t)t * ld + n];
            } else {
                const float *wr = W.data() + (size_t)n * K;
                const float *xt = x.data() + (size_t)t * K;
                s = 0;
                for (int k = 0; k < K; k++) s += (double)wr[k] * xt[k];
                if (y0) s += (*y0)[(size_t)t * ld + n];
            }
            const float v = y[(size_t)t * ld + n];
            if (!isfinite(v)) *fin = 0;
            num += ((double)v - s) * ((double)v - s);
            den += s * s;
        }
        const double r = den > 0 ? sqrt(num / den) : sqrt(num);
        if (!(r <= worst)) worst = r;
    }
    return worst;
}

// The deferred partials of a product's output (T tokens, rows N) summed as a consumer does (z = 0.. from 0.0f), piece
// `drop` left out (-1: none); y itself where the product wrote y (partials not on).
inline std::vector<float> st_part_sum(const cuda_part &P, const std::vector<float> &y, int T, int N, int ld, int drop = -1) {
    if (P.nz == 0) return y;
    std::vector<float> ws((size_t)P.nz * P.zs);
    cudaMemcpy(ws.data(), P.p, ws.size() * 4, cudaMemcpyDeviceToHost);
    std::vector<float> out((size_t)T * ld, 0.0f);
    for (int t = 0; t < T; t++)
        for (int r = 0; r < N; r++) {
            float s = 0.0f;
            for (int z = 0; z < P.nz; z++)
                if (z != drop) s += ws[(size_t)z * P.zs + (size_t)t * P.ld + r];
            out[(size_t)t * ld + r] = s;
        }
    return out;
}

#endif
