// selftest.cu — every kernel of cuda_kern.h against a CPU reference (cuda_selftest).
//
// References are written here or come from appliance/format/quant.c (dequantization,
// bit-exact with the gguf Python package); they share no code with the kernels. Inputs are
// fresh random numbers each run (the seed is printed; SPARKD_SELFTEST_SEED repeats one),
// shapes include rows/tokens that are not multiples of any tile (1, 7, 67, 257, 4097),
// outputs are poisoned with NaN before every run and a check fails if any output is left
// unwritten or non-finite. Errors are relative L2 norms ||out - ref|| / ||ref|| against
// float64 references unless a line says otherwise (products: relative to the norm of the
// sums of |w x|); each line gives the tolerance and the
// kernel time (median of timed repeats, CUDA events).
#include "cuda.h"
#include "cuda_kern.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "kern_util.cuh"
#include "selftest_util.cuh"

int fz_attn_q8_check(const cuda_attn_args *a0, int T, void *file, void *stream); // fz_test.cu (round 8)
int fz_selftest(void *file, int quick, uint64_t seed, err *e);                    // fz_test.cu (round 8)
namespace {

// ----------------------------------------------------------------------------- plumbing

struct row_t {
    char kernel[24], shape[160], note[64];
    double err, tol, us;
    int ok;
};

struct ctx_t : st_ctx {
    std::vector<row_t> rows;
    int cuda_error = 0;
};

ctx_t *C;

#define ST_CUDA(call)                                                                      \
    do {                                                                                   \
        cudaError_t rc_ = (call);                                                          \
        if (rc_ != cudaSuccess) {                                                          \
            cuda_fail(C->e, rc_, #call, __FILE__, __LINE__);                               \
            C->cuda_error = 1;                                                             \
            return;                                                                        \
        }                                                                                  \
    } while (0)
#define ST_API(call)                                                                       \
    do {                                                                                   \
        err e2_ = {ERR_OK, {0}};                                                           \
        if ((call) != 0) {                                                                 \
            fprintf(C->f, "not ok - %s: %s\n", #call, e2_.msg);                          \
            C->fails++;                                                                    \
            return;                                                                        \
        }                                                                                  \
    } while (0)
#define EE (&e2_)

void report(const char *kernel, const char *shape, double err, double tol, double us, int ok, const char *note = "") {
    row_t r;
    snprintf(r.kernel, sizeof r.kernel, "%s", kernel);
    snprintf(r.shape, sizeof r.shape, "%s", shape);
    snprintf(r.note, sizeof r.note, "%s", note);
    r.err = err;
    r.tol = tol;
    r.us = us;
    r.ok = ok && err <= tol && !isnan(err);
    if (!r.ok) C->fails++;
    C->rows.push_back(r);
    fprintf(C->f, "%s - %s %s: err %.3g (tol %.3g) %.1f us%s%s\n", r.ok ? "ok" : "not ok", kernel, shape, err, tol,
            us, note[0] ? " " : "", note);
    fflush(C->f);
}

// ||a - b|| / ||b||, and whether every a is finite.
double rel_l2(const float *a, const double *b, size_t n, int *finite) {
    double num = 0, den = 0;
    *finite = 1;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) *finite = 0;
        const double d = (double)a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    if (!*finite) return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

// host conversions (references)
uint16_t f2bf(float f) { // round to nearest even
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}
float bf2f(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
float e4m3_decode(uint8_t c) {
    const int s = c >> 7, ex = (c >> 3) & 15, m = c & 7;
    float v;
    if (ex == 15 && m == 7) v = NAN;
    else if (ex == 0) v = ldexpf((float)m, -9);
    else v = ldexpf(1.0f + m / 8.0f, ex - 7);
    return s ? -v : v;
}
uint8_t e4m3_encode(float x) { // nearest, ties to even code, saturating at 448
    const float a = fminf(fabsf(x), 448.0f);
    int lo = 0, hi = 126; // codes 0..126 are non-negative finite, increasing
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (e4m3_decode((uint8_t)mid) <= a) lo = mid; else hi = mid - 1;
    }
    int c = lo;
    if (c < 126) {
        const float d0 = a - e4m3_decode((uint8_t)c), d1 = e4m3_decode((uint8_t)(c + 1)) - a;
        if (d1 < d0 || (d1 == d0 && (c & 1))) c++;
    }
    return (uint8_t)(c | (x < 0 ? 0x80 : 0));
}

const uint32_t kTypes[] = {QUANT_F32, QUANT_F16, QUANT_BF16, QUANT_Q8_0, QUANT_Q4_0, QUANT_Q4_1,
                           QUANT_Q5_0, QUANT_Q5_1, QUANT_Q4_K, QUANT_Q5_K, QUANT_Q6_K, QUANT_MXFP4};

// The generators of selftest_util.cuh (shared with hsmall_test.cu and the other selftest files).
std::vector<uint8_t> gen_rows(uint32_t type, int rows, int cols) { return st_gen_rows(type, rows, cols); }
std::vector<float> ref_dequant(uint32_t type, const std::vector<uint8_t> &raw, int rows, int cols) { return st_ref_dequant(type, raw, rows, cols); }
bool make_weight(cuda_weight *w, uint32_t type, const std::vector<uint8_t> &raw, int rows, int cols) { return st_make_weight(w, type, raw, rows, cols); }
std::vector<float> randn(size_t n, double scale) { return st_randn(n, scale); }

// ----------------------------------------------------------------------------- weights

void test_dequant(uint32_t type, int rows, int cols) {
    auto raw = gen_rows(type, rows, cols);
    auto ref = ref_dequant(type, raw, rows, cols);
    cuda_weight w;
    if (!make_weight(&w, type, raw, rows, cols)) return;
    const int n = rows + 3;
    std::vector<int32_t> ids(n);
    for (int i = 0; i < n; i++) ids[i] = C->rng.below(rows);
    ids[0] = rows - 1;
    const float scale = type == QUANT_F32 ? 1.0f : 25.29822f; // an embedding scale (sqrt 640)
    int32_t *dids = dup(ids);
    float *out = (float *)dalloc((size_t)n * cols * 4);
    poison(out, (size_t)n * cols * 4);
    double us = time_us([&] { err e2; cuda_weight_rows(&w, dids, n, scale, out, C->st, &e2); }, 5);
    auto got = get(out, (size_t)n * cols);
    size_t bad = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < cols; k++) {
            const float want = ref[(size_t)ids[i] * cols + k] * scale; // quant.c then vec_scale
            if (!(got[(size_t)i * cols + k] == want)) bad++;
        }
    char shape[64];
    snprintf(shape, sizeof shape, "%s %dx%d", tname(type), rows, cols);
    report("repack+dequant", shape, (double)bad, 0, us, 1, "(mismatching elements; bit-exact)");
}

// GEMV / GEMM against dequantize-then-float64.
void test_matmul(uint32_t type, int N, int K, int T, int path, int exact, int accumulate, int time_reps,
                 int check_tokens) {
    auto raw = gen_rows(type, N, K);
    auto W = ref_dequant(type, raw, N, K);
    cuda_weight w;
    if (!make_weight(&w, type, raw, N, K)) return;
    auto x = randn((size_t)T * K, 1.0);
    // a few large rows: the per-token power-of-two scaling must keep them exact
    if (T > 2) for (int k = 0; k < K; k++) x[(size_t)1 * K + k] *= 3000.0f;
    float *dx = dup(x);
    const int forms = CUDA_MMIN_XP | CUDA_MMIN_F16 | CUDA_MMIN_BF16;
    void *mbuf = dalloc(cuda_mmin_bytes(T, K, forms));
    cuda_mmin m;
    cuda_mmin_carve(&m, mbuf, T, K, forms);
    std::vector<float> y0 = accumulate ? randn((size_t)T * N, 1.0) : std::vector<float>();
    float *dy = (float *)dalloc((size_t)T * N * 4);
    if (!dx || !mbuf || !dy) { report("matmul", "alloc", 1, 0, 0, 0); return; }
    err e2 = {ERR_OK, {0}};
    if (cuda_mmin_prepare(dx, K, &m, T, C->st, &e2)) { fprintf(C->f, "not ok - prepare: %s\n", e2.msg); C->fails++; return; }
    cuda_mm_args a;
    memset(&a, 0, sizeof a);
    a.n = 1; a.w[0] = &w; a.y[0] = dy; a.ldy[0] = N; a.accumulate = accumulate; a.path = path; a.exact = exact;
    a.work_bytes = 32u << 20; // split-K partials (small grids)
    a.work = (float *)dalloc(a.work_bytes);
    if (accumulate) cudaMemcpy(dy, y0.data(), y0.size() * 4, cudaMemcpyHostToDevice);
    else poison(dy, (size_t)T * N * 4);
    if (cuda_matmul(&a, &m, C->st, &e2)) { fprintf(C->f, "not ok - matmul %s: %s\n", tname(type), e2.msg); C->fails++; return; }
    cudaStreamSynchronize(C->st);
    auto y = get(dy, (size_t)T * N);
    double us = 0;
    if (time_reps) {
        a.accumulate = 0;
        us = time_us([&] { err e3; cuda_matmul(&a, &m, C->st, &e3); }, time_reps);
    }
    // reference on check_tokens tokens (all when 0)
    std::vector<int> toks;
    if (!check_tokens || check_tokens >= T) for (int t = 0; t < T; t++) toks.push_back(t);
    else { toks.push_back(0); toks.push_back(T - 1); while ((int)toks.size() < check_tokens) toks.push_back(C->rng.below(T)); }
    // error relative to the size of the terms (sum |w x| per output): one output of a
    // dot with cancellation must not look inaccurate
    double num = 0, den = 0;
    int fin = 1;
    for (int t : toks)
        for (int r = 0; r < N; r++) {
            double s = 0, sa = 0;
            const float *wr = W.data() + (size_t)r * K, *xr = x.data() + (size_t)t * K;
            for (int k = 0; k < K; k++) { s += (double)wr[k] * xr[k]; sa += fabs((double)wr[k] * xr[k]); }
            if (accumulate) { s += y0[(size_t)t * N + r]; sa += fabs(y0[(size_t)t * N + r]); }
            const double d = y[(size_t)t * N + r] - s;
            num += d * d;
            den += sa * sa;
        }
    const double err_ = den > 0 ? sqrt(num / den) : sqrt(num);
    // every output written (also the tokens not compared)
    for (float v : y) if (!isfinite(v)) fin = 0;
    char shape[64], note[64] = "";
    snprintf(shape, sizeof shape, "%s N%d K%d T%d%s%s", tname(type), N, K, T, accumulate ? " +=" : "",
             exact ? "" : " f16-in");
    const bool gemv = path == CUDA_MM_FORCE_GEMV || type == QUANT_F32 || (path == CUDA_MM_AUTO && T == 1);
    if (time_reps && us > 0) {
        if (T <= 8) snprintf(note, sizeof note, "%.0f GB/s", (double)cuda_weight_bytes(type, N, K) / (us * 1e3));
        else snprintf(note, sizeof note, "%.1f TFLOP/s", 2.0 * T * N * K / (us * 1e6));
    }
    report(gemv ? "gemv" : "gemm", shape, err_, exact ? 1e-5 : 3e-3, us, fin, note);
}

// gate/up in one GEMV writing act(gate) * up in P64 order (cuda_mm_args.pair_act)
void test_gemv_pair(uint32_t type, int rows, int K, int act) {
    auto rg = gen_rows(type, rows, K), ru = gen_rows(type, rows, K);
    auto Wg = ref_dequant(type, rg, rows, K), Wu = ref_dequant(type, ru, rows, K);
    cuda_weight wg, wu;
    if (!make_weight(&wg, type, rg, rows, K) || !make_weight(&wu, type, ru, rows, K)) return;
    auto x = randn(K, 1.0);
    float *dx = dup(x);
    cuda_mmin m, out;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(1, K, CUDA_MMIN_XP)), 1, K, CUDA_MMIN_XP);
    cuda_mmin_carve(&out, dalloc(cuda_mmin_bytes(1, rows, CUDA_MMIN_XP)), 1, rows, CUDA_MMIN_XP);
    float *dummy = (float *)dalloc((size_t)rows * 4);
    poison(out.xp, (size_t)rows * 4);
    err e2 = {ERR_OK, {0}};
    if (cuda_mmin_prepare(dx, K, &m, 1, C->st, &e2)) { fprintf(C->f, "not ok - prepare: %s\n", e2.msg); C->fails++; return; }
    cuda_mm_args a;
    memset(&a, 0, sizeof a);
    a.n = 2; a.w[0] = &wg; a.w[1] = &wu; a.y[0] = a.y[1] = dummy; a.ldy[0] = a.ldy[1] = rows; a.exact = 1;
    a.pair_act = act + 1; a.act_out = &out;
    const int rc = cuda_matmul(&a, &m, C->st, &e2);
    if (rc) fprintf(C->f, "# gemv-pair: %s\n", e2.msg);
    cudaStreamSynchronize(C->st);
    auto xp = get(out.xp, (size_t)rows);
    std::vector<double> ref;
    std::vector<float> got;
    for (int r = 0; r < rows; r++) {
        double g = 0, u = 0;
        for (int k = 0; k < K; k++) {
            g += (double)Wg[(size_t)r * K + k] * x[k];
            u += (double)Wu[(size_t)r * K + k] * x[k];
        }
        const double av = act == CUDA_ACT_GELU_TANH ? 0.5 * g * (1.0 + tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)))
                                                    : g / (1.0 + exp(-g));
        ref.push_back(av * u);
        got.push_back(xp[(size_t)(r & ~63) + inv_perm64(r & 63)]);
    }
    int fin;
    const double er = rel_l2(got.data(), ref.data(), ref.size(), &fin);
    double us = time_us([&] { err e3; cuda_matmul(&a, &m, C->st, &e3); }, 10);
    char shape[64], note[64];
    snprintf(shape, sizeof shape, "%s 2x%d K%d %s", tname(type), rows, K, act == CUDA_ACT_GELU_TANH ? "gelu_tanh" : "silu");
    snprintf(note, sizeof note, "%.0f GB/s", 2.0 * (double)cuda_weight_bytes(type, rows, K) / (us * 1e3));
    report("gemv-pair-act", shape, er, 1e-5, us, rc == 0 && fin, note);
    dfree_all();
}

// The GEMV's int8 path (exact = 0, gemv.cu): the activation quantized per natural block of
// 32 the way the kernel does it (d = amax / 127 in f32, q = roundf(x / d)), written here.
std::vector<float> q8_blocks(const float *x, int K) {
    std::vector<float> out(K);
    for (int b = 0; b < K / 32; b++) {
        float a = 0.0f;
        for (int i = 0; i < 32; i++) a = fmaxf(a, fabsf(x[32 * b + i]));
        const float d = a / 127.0f;
        for (int i = 0; i < 32; i++) {
            const float q = a == 0.0f ? 0.0f : roundf(x[32 * b + i] / d);
            out[32 * b + i] = q * d; // q * d: what the kernel's scaled int sums stand for
        }
    }
    return out;
}

// Two checks of one output set y (rows of W times x): against the dequantized-int8 input
// xq (only f32 summation order differs: relative to sum |w xq|, tolerance 2e-6), and
// against the exact f32 input x, bounded per output by sum |w| |x - xq| (+ 1e-5 of sum
// |w x|): returns the largest |y - exact| / bound, which must stay <= 1.
struct dq_err { double rel, ratio, bound_rel; };
dq_err dq_compare(const std::vector<float> &y, const float *W, int N, int K, const std::vector<float> &x,
                  const std::vector<float> &xq, const std::vector<float> *y0) {
    dq_err r = {0, 0, 0};
    double num = 0, den = 0, bnum = 0, bden = 0;
    for (int n = 0; n < N; n++) {
        double s = 0, sa = 0, se = 0, sea = 0, bound = 0;
        const float *wr = W + (size_t)n * K;
        for (int k = 0; k < K; k++) {
            s += (double)wr[k] * xq[k]; sa += fabs((double)wr[k] * xq[k]);
            se += (double)wr[k] * x[k]; sea += fabs((double)wr[k] * x[k]);
            bound += fabs((double)wr[k]) * fabs((double)x[k] - xq[k]);
        }
        if (y0) { s += (*y0)[n]; se += (*y0)[n]; sa += fabs((*y0)[n]); sea += fabs((*y0)[n]); }
        const double d = y[n] - s;
        num += d * d; den += sa * sa;
        const double ratio = fabs(y[n] - se) / (bound + 1e-5 * sea + 1e-30);
        if (!(ratio <= r.ratio)) r.ratio = ratio; // NaN propagates
        bnum += bound * bound; bden += sea * sea;
    }
    r.rel = den > 0 ? sqrt(num / den) : sqrt(num);
    r.bound_rel = bden > 0 ? sqrt(bnum / bden) : 0;
    return r;
}

// "" or " gemv4" (cuda_gemv4_set(2): the persistent kernel for every int8 product): the rows'
// label says which kernel ran
static const char *g_gemv_tag = "";

void test_gemv_dq(uint32_t type, int N, int K, int accumulate, int wk) {
    auto raw = gen_rows(type, N, K);
    auto W = ref_dequant(type, raw, N, K);
    cuda_weight w;
    if (!make_weight(&w, type, raw, N, K)) return;
    auto x = randn(K, 1.0);
    for (int k = 0; k < K; k += 97) x[k] *= 20.0f; // outliers: blocks with a large scale
    for (int k = 64; k < 96 && k < K; k++) x[k] = 0.0f; // an all-zero block (d = 0)
    auto xq = q8_blocks(x.data(), K);
    float *dx = dup(x);
    cuda_mmin m;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(1, K, CUDA_MMIN_XP)), 1, K, CUDA_MMIN_XP);
    std::vector<float> y0 = accumulate ? randn(N, 1.0) : std::vector<float>();
    float *dy = (float *)dalloc((size_t)N * 4);
    err e2 = {ERR_OK, {0}};
    if (cuda_mmin_prepare(dx, K, &m, 1, C->st, &e2)) { fprintf(C->f, "not ok - prepare: %s\n", e2.msg); C->fails++; return; }
    if (accumulate) cudaMemcpy(dy, y0.data(), (size_t)N * 4, cudaMemcpyHostToDevice);
    else poison(dy, (size_t)N * 4);
    cuda_mm_args a;
    memset(&a, 0, sizeof a);
    a.n = 1; a.w[0] = &w; a.y[0] = dy; a.ldy[0] = N; a.accumulate = accumulate; a.exact = 0;
    cuda_gemv_wk_set(wk);
    const int rc = cuda_matmul(&a, &m, C->st, &e2);
    cudaStreamSynchronize(C->st);
    auto y = get(dy, (size_t)N);
    a.accumulate = 0;
    const double us = time_us([&] { err e3; cuda_matmul(&a, &m, C->st, &e3); }, 10);
    cuda_gemv_wk_set(0);
    int fin = 1;
    for (float v : y) if (!isfinite(v)) fin = 0;
    const dq_err r = dq_compare(y, W.data(), N, K, x, xq, accumulate ? &y0 : NULL);
    char shape[64], note[64];
    snprintf(shape, sizeof shape, "%s N%d K%d%s wk%d int8-x%s", tname(type), N, K, accumulate ? " +=" : "", wk, g_gemv_tag);
    report("gemv-dp4a", shape, r.rel, 2e-6, us, rc == 0 && fin, "(vs int8 x)");
    snprintf(note, sizeof note, "(|y-exact|/bound; bound ~%.1e of |wx|)", r.bound_rel);
    report("gemv-dp4a-vs-f32", shape, r.ratio, 1.0, 0, rc == 0 && fin, note);
    dfree_all();
}

// The int8 tensor-core product (mmq.cu, precision fast, T > 1; Q8_0, Q4_K, Q6_K): the
// input's Q8 form is written by cuda_mmin_prepare (mmin_emit), the product checked per
// token against the CPU's int8 quantization of the same row (q8_blocks: only f32
// summation order differs; tolerance 5e-6 of sum |w xq|, up to 128 block partials summed
// in f32) and against the f32 input within the int8 rounding bound (dq_compare). Two
// matrices of different rows in one launch when N2 > 0 (the second one's ldy padded),
// accumulate, split K over CTAs when splitk. If cuda_matmul took any other path (the f16
// kernel's 11-bit input) the first check fails by orders of magnitude.
extern "C" void cuda_mmq_old_set(int on); // mmq.cu: 1 = the round-4 int8 kernel, -1 = as SPARKD_MMQ_OLD says
extern "C" void cuda_mmq3_min_t_set(int t); // mmq.cu: fewest tokens for mmq3_kernel, -1 = as SPARKD_MMQ3_MIN_T says
static const char *g_mmq_tag = "";
void test_mmq(uint32_t type, int N, int K, int T, int N2, int accumulate, int splitk, int time_reps) {
    const int nm = N2 > 0 ? 2 : 1, Ns[2] = {N, N2}, ld[2] = {N, N2 + 3};
    cuda_weight w[2];
    std::vector<float> W[2];
    for (int i = 0; i < nm; i++) {
        auto raw = gen_rows(type, Ns[i], K);
        W[i] = ref_dequant(type, raw, Ns[i], K);
        if (!make_weight(&w[i], type, raw, Ns[i], K)) return;
    }
    auto x = randn((size_t)T * K, 1.0);
    for (size_t k = 0; k < x.size(); k += 97) x[k] *= 20.0f;          // outliers: blocks with a large scale
    for (int k = 64; k < 96 && k < K; k++) x[k] = 0.0f;               // an all-zero block (d = 0)
    if (T > 2) for (int k = 0; k < K; k++) x[(size_t)1 * K + k] *= 3000.0f; // a large row
    float *dx = dup(x);
    const int forms = CUDA_MMIN_F16 | CUDA_MMIN_Q8;
    cuda_mmin m;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(T, K, forms)), T, K, forms);
    std::vector<float> y0[2];
    float *dy[2] = {NULL, NULL};
    for (int i = 0; i < nm; i++) {
        dy[i] = (float *)dalloc((size_t)T * ld[i] * 4);
        if (accumulate) {
            y0[i] = randn((size_t)T * ld[i], 1.0);
            cudaMemcpy(dy[i], y0[i].data(), y0[i].size() * 4, cudaMemcpyHostToDevice);
        } else {
            poison(dy[i], (size_t)T * ld[i] * 4);
        }
    }
    err e2 = {ERR_OK, {0}};
    if (cuda_mmin_prepare(dx, K, &m, T, C->st, &e2)) { fprintf(C->f, "not ok - prepare: %s\n", e2.msg); C->fails++; return; }
    cuda_mm_args a;
    memset(&a, 0, sizeof a);
    a.n = nm; a.accumulate = accumulate; a.exact = 0;
    for (int i = 0; i < nm; i++) { a.w[i] = &w[i]; a.y[i] = dy[i]; a.ldy[i] = ld[i]; }
    if (splitk) { a.work_bytes = 32u << 20; a.work = (float *)dalloc(a.work_bytes); }
    cuda_mmq_set(1);
    const int rc = cuda_matmul(&a, &m, C->st, &e2);
    cudaStreamSynchronize(C->st);
    std::vector<float> y[2];
    for (int i = 0; i < nm; i++) y[i] = get(dy[i], (size_t)T * ld[i]);
    double us = 0;
    if (time_reps) {
        a.accumulate = 0;
        us = time_us([&] { err e3; cuda_matmul(&a, &m, C->st, &e3); }, time_reps);
    }
    int fin = 1;
    for (int i = 0; i < nm; i++)
        for (int t = 0; t < T; t++)
            for (int r = 0; r < Ns[i]; r++) if (!isfinite(y[i][(size_t)t * ld[i] + r])) fin = 0;
    std::vector<int> toks;
    if (T <= 16) for (int t = 0; t < T; t++) toks.push_back(t);
    else { toks = {0, 1, T - 1, 63 < T ? 63 : 0, 64 < T ? 64 : 0}; while (toks.size() < 12) toks.push_back(C->rng.below(T)); }
    double rel = 0, ratio = 0, brel = 0;
    for (int i = 0; i < nm; i++)
        for (int t : toks) {
            std::vector<float> xt(x.begin() + (size_t)t * K, x.begin() + (size_t)(t + 1) * K);
            auto xq = q8_blocks(xt.data(), K);
            std::vector<float> yt(y[i].begin() + (size_t)t * ld[i], y[i].begin() + (size_t)t * ld[i] + Ns[i]);
            std::vector<float> y0t;
            if (accumulate) y0t.assign(y0[i].begin() + (size_t)t * ld[i], y0[i].begin() + (size_t)t * ld[i] + Ns[i]);
            const dq_err r = dq_compare(yt, W[i].data(), Ns[i], K, xt, xq, accumulate ? &y0t : NULL);
            if (!(r.rel <= rel)) rel = r.rel; // NaN propagates
            if (!(r.ratio <= ratio)) ratio = r.ratio;
            if (r.bound_rel > brel) brel = r.bound_rel;
        }
    char shape[96], note[64] = "";
    snprintf(shape, sizeof shape, "%s N%d%s%.0d K%d T%d%s%s%s", tname(type), N, N2 ? "+" : "", N2, K, T,
             accumulate ? " +=" : "", splitk ? " splitk" : "", g_mmq_tag);
    if (us > 0) {
        double ops = 0;
        for (int i = 0; i < nm; i++) ops += 2.0 * T * Ns[i] * K;
        snprintf(note, sizeof note, "(vs int8 x) %.1f TOPS", ops / (us * 1e6));
    }
    report("mmq", shape, rel, 5e-6, us, rc == 0 && fin, us > 0 ? note : "(vs int8 x)");
    snprintf(note, sizeof note, "(|y-exact|/bound; bound ~%.1e of |wx|)", brel);
    report("mmq-vs-f32", shape, ratio, 1.0, 0, rc == 0 && fin, note);
    dfree_all();
}

// Paired gate/up on the int8 path, then the down product (int8 path too) on the pair's
// output: the chain the engine runs at precision = fast.
void test_gemv_dq_pair(uint32_t type, int rows, int K, int dim, int act) {
    auto rg = gen_rows(type, rows, K), ru = gen_rows(type, rows, K), rd = gen_rows(type, dim, rows);
    auto Wg = ref_dequant(type, rg, rows, K), Wu = ref_dequant(type, ru, rows, K), Wd = ref_dequant(type, rd, dim, rows);
    cuda_weight wg, wu, wd;
    if (!make_weight(&wg, type, rg, rows, K) || !make_weight(&wu, type, ru, rows, K) || !make_weight(&wd, type, rd, dim, rows)) return;
    auto x = randn(K, 1.0);
    auto xq = q8_blocks(x.data(), K);
    float *dx = dup(x);
    cuda_mmin m, out;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(1, K, CUDA_MMIN_XP)), 1, K, CUDA_MMIN_XP);
    cuda_mmin_carve(&out, dalloc(cuda_mmin_bytes(1, rows, CUDA_MMIN_XP)), 1, rows, CUDA_MMIN_XP);
    float *dummy = (float *)dalloc((size_t)rows * 4), *dy = (float *)dalloc((size_t)dim * 4);
    poison(out.xp, (size_t)rows * 4);
    poison(dy, (size_t)dim * 4);
    err e2 = {ERR_OK, {0}};
    if (cuda_mmin_prepare(dx, K, &m, 1, C->st, &e2)) { fprintf(C->f, "not ok - prepare: %s\n", e2.msg); C->fails++; return; }
    cuda_mm_args a;
    memset(&a, 0, sizeof a);
    a.n = 2; a.w[0] = &wg; a.w[1] = &wu; a.y[0] = a.y[1] = dummy; a.ldy[0] = a.ldy[1] = rows; a.exact = 0;
    a.pair_act = act + 1; a.act_out = &out;
    cuda_mm_args d;
    memset(&d, 0, sizeof d);
    d.n = 1; d.w[0] = &wd; d.y[0] = dy; d.ldy[0] = dim; d.exact = 0;
    const int rc = cuda_matmul(&a, &m, C->st, &e2) || cuda_matmul(&d, &out, C->st, &e2);
    if (rc) fprintf(C->f, "# gemv-dp4a-pair: %s\n", e2.msg);
    cudaStreamSynchronize(C->st);
    auto hp = get(out.xp, (size_t)rows);
    auto y = get(dy, (size_t)dim);
    std::vector<double> ref;
    std::vector<float> got(rows), h(rows);
    for (int r = 0; r < rows; r++) {
        double g = 0, u = 0;
        for (int k = 0; k < K; k++) {
            g += (double)Wg[(size_t)r * K + k] * xq[k];
            u += (double)Wu[(size_t)r * K + k] * xq[k];
        }
        const double av = act == CUDA_ACT_GELU_TANH ? 0.5 * g * (1.0 + tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)))
                                                    : g / (1.0 + exp(-g));
        ref.push_back(av * u);
        got[r] = h[r] = hp[(size_t)(r & ~63) + inv_perm64(r & 63)];
    }
    int fin;
    const double er = rel_l2(got.data(), ref.data(), ref.size(), &fin);
    // the down product on exactly the pair's output (its own quantization of it)
    auto hq = q8_blocks(h.data(), rows);
    const dq_err r = dq_compare(y, Wd.data(), dim, rows, h, hq, NULL);
    int fin2 = 1;
    for (float v : y) if (!isfinite(v)) fin2 = 0;
    char shape[64];
    snprintf(shape, sizeof shape, "%s 2x%d K%d %s int8-x%s", tname(type), rows, K, act == CUDA_ACT_GELU_TANH ? "gelu_tanh" : "silu", g_gemv_tag);
    report("gemv-dp4a-pair", shape, er, 1e-5, 0, rc == 0 && fin, "(vs int8 x)");
    snprintf(shape, sizeof shape, "%s %dx%d on the pair's output%s", tname(type), dim, rows, g_gemv_tag);
    report("gemv-dp4a-down", shape, r.rel, 2e-6, 0, rc == 0 && fin2, "(vs int8 x)");
    dfree_all();
}

// Round 5 (gemv.cu, SPARKD_GEMV_PRE): the int8 GEMV's round-5 kernels (PRE=1: x quantized by
// gdq_quantize8, the Q4_K step without divergence handling; PRE=3: also the weights past the
// register ring prefetched into L2 before pdl_wait) against the round-4
// kernels (cuda_gemv_pre_set(0)): the outputs must be the same bits. err = outputs that differ (tol 0; any non-finite output also fails). g4: the
// kernel choice (cuda_gemv4_set); wk: K split (gemv_dq_kernel's wk, gemv4's KS at g4 = 2);
// nmat 3: three matrices in one launch (rows N, 65, 67); pair: gate/up into the activation.
// control: x differs in one element between the two runs, so the rows MUST differ (the
// comparison can fail).
void test_gemv_pre(uint32_t type, int N, int K, int g4, int wk, int nmat, int pair, int control = 0) {
    cuda_gemv_q4v_set(0); // (round 5's kernels against round 4's: q4v is not the same bits)
    const int rows[3] = {N, 65, 67};
    const int nm = pair ? 2 : nmat;
    cuda_weight w[3];
    for (int i = 0; i < nm; i++) {
        auto raw = gen_rows(type, pair ? N : rows[i], K);
        if (!make_weight(&w[i], type, raw, pair ? N : rows[i], K)) return;
    }
    auto x = randn(K, 1.0);
    for (int k = 0; k < K; k += 97) x[k] *= 20.0f;       // blocks with a large scale
    for (int k = 64; k < 96 && k < K; k++) x[k] = 0.0f; // an all-zero block (d = 0)
    for (int k = 200; k < 232 && k < K; k++) x[k] *= 1e-30f; // tiny values (the division's slow path)
    for (int k = 256; k < 288 && k < K; k++) x[k] *= 1e-22f; // small (~2^-73: quantize8's fast division)
    for (int k = 320; k < 352 && k < K; k++) x[k] *= 1e3f;   // large (kept moderate: the paired rows' act(g) * u must stay finite)
    for (int k = 384; k < 416 && k < K; k++) x[k] = (k & 1) ? 1e-41f : 0.0f; // denormal amax
    for (int k = 448; k < 480 && k < K; k++) x[k] = 1e-24f * (float)(k - 460); // a ~ 2^-75.5 (fast division) ...
    if (K > 450) { x[449] = 1e-38f; x[450] = 1e-44f; }                       // ... with tiny and denormal x
    float *dx = dup(x);
    cuda_mmin m, out;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(1, K, CUDA_MMIN_XP)), 1, K, CUDA_MMIN_XP);
    size_t ny = 0;
    for (int i = 0; i < nm; i++) ny += pair ? 0 : rows[i];
    if (pair) {
        cuda_mmin_carve(&out, dalloc(cuda_mmin_bytes(1, N, CUDA_MMIN_XP)), 1, N, CUDA_MMIN_XP);
        ny = N;
    }
    float *dy = pair ? out.xp : (float *)dalloc(ny * 4), *dummy = (float *)dalloc((size_t)N * 4);
    cuda_mm_args a;
    memset(&a, 0, sizeof a);
    a.n = nm; a.exact = 0;
    size_t off = 0;
    for (int i = 0; i < nm; i++) {
        a.w[i] = &w[i];
        a.y[i] = pair ? dummy : dy + off;
        a.ldy[i] = pair ? N : rows[i];
        off += pair ? 0 : rows[i];
    }
    if (pair) { a.pair_act = CUDA_ACT_SILU + 1; a.act_out = &out; }
    cuda_gemv4_set(g4);
    cuda_gemv_wk_set(wk);
    std::vector<float> y[3]; // SPARKD_GEMV_PRE = 0, 1, 3 (3: with the L2 prefetch, the same bits again)
    int rc = 0;
    for (int v = 0; v < 3; v++) {
        err e2 = {ERR_OK, {0}};
        if (control && v == 1) {
            // x[5] becomes 8 x its block's largest magnitude: the block's scale and every code
            // in it change, so every output row changes far beyond its last bit
            float amax = 0.0f;
            for (int k = 0; k < 32; k++) amax = fmaxf(amax, fabsf(x[k]));
            x[5] = 8.0f * amax;
            cudaMemcpy(dx, x.data(), (size_t)K * 4, cudaMemcpyHostToDevice);
        }
        rc |= cuda_mmin_prepare(dx, K, &m, 1, C->st, &e2);
        cuda_gemv_pre_set(v == 2 ? 3 : v);
        poison(dy, ny * 4);
        rc |= cuda_matmul(&a, &m, C->st, &e2);
        if (cudaStreamSynchronize(C->st) != cudaSuccess) rc = 1;
        y[v] = get(dy, ny);
    }
    cuda_gemv_pre_set(-1);
    cuda_gemv_wk_set(0);
    cuda_gemv4_set(-1);
    cuda_gemv_q4v_set(-1);
    int fin = 1;
    size_t diff = 0;
    for (size_t i = 0; i < ny; i++) {
        if (!isfinite(y[0][i]) || !isfinite(y[1][i]) || !isfinite(y[2][i])) fin = 0;
        if (memcmp(&y[0][i], &y[1][i], 4) || (!control && memcmp(&y[0][i], &y[2][i], 4))) diff++;
    }
    char shape[96];
    snprintf(shape, sizeof shape, "%s %s%d K%d %s wk%d%s", tname(type), pair ? "2x" : nm == 3 ? "x3 " : "N", N, K,
             g4 == 0 ? "old" : g4 == 2 ? "gemv4" : "auto", wk, pair ? " pair" : "");
    if (control) report("gemv-pre-exact control", shape, diff ? 0.0 : 1.0, 0, 0, rc == 0 && fin, "(x differs: rows must differ)");
    else report("gemv-pre-exact", shape, (double)diff, 0, 0, rc == 0 && fin, "(outputs of PRE=1 or PRE=3 differing from PRE=0)");
    dfree_all();
}

void test_matmul_multi() {
    // three matrices in one launch (q/k/v), GEMV and GEMM
    for (int T : {1, 7}) {
        const int K = 256, Ns[3] = {128 + 5, 64 + 1, 64 + 1};
        cuda_weight w[3];
        std::vector<float> W[3];
        float *dy[3];
        for (int i = 0; i < 3; i++) {
            auto raw = gen_rows(QUANT_Q8_0, Ns[i], K);
            W[i] = ref_dequant(QUANT_Q8_0, raw, Ns[i], K);
            if (!make_weight(&w[i], QUANT_Q8_0, raw, Ns[i], K)) return;
            dy[i] = (float *)dalloc((size_t)T * (Ns[i] + 3) * 4);
            poison(dy[i], (size_t)T * (Ns[i] + 3) * 4);
        }
        auto x = randn((size_t)T * K, 1.0);
        float *dx = dup(x);
        const int forms = CUDA_MMIN_XP | CUDA_MMIN_F16;
        cuda_mmin m;
        cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(T, K, forms)), T, K, forms);
        err e2 = {ERR_OK, {0}};
        cuda_mmin_prepare(dx, K, &m, T, C->st, &e2);
        cuda_mm_args a;
        memset(&a, 0, sizeof a);
        a.n = 3;
        a.exact = 1;
        for (int i = 0; i < 3; i++) { a.w[i] = &w[i]; a.y[i] = dy[i]; a.ldy[i] = Ns[i] + 3; }
        const int rc = cuda_matmul(&a, &m, C->st, &e2);
        cudaStreamSynchronize(C->st);
        std::vector<double> ref;
        std::vector<float> got;
        for (int i = 0; i < 3; i++) {
            auto y = get(dy[i], (size_t)T * (Ns[i] + 3));
            for (int t = 0; t < T; t++)
                for (int r = 0; r < Ns[i]; r++) {
                    double s = 0;
                    for (int k = 0; k < K; k++) s += (double)W[i][(size_t)r * K + k] * x[(size_t)t * K + k];
                    ref.push_back(s);
                    got.push_back(y[(size_t)t * (Ns[i] + 3) + r]);
                }
        }
        int fin;
        const double er = rel_l2(got.data(), ref.data(), ref.size(), &fin);
        char shape[64];
        snprintf(shape, sizeof shape, "Q8_0 x3 (133/65/65 rows, ldy+3) K256 T%d", T);
        report(T == 1 ? "gemv-multi" : "gemm-multi", shape, er, 1e-5, 0, fin && rc == 0);
        dfree_all();
    }
}

// Three matrices in one int8 (dp4a) GEMV launch (q/k/v-like, odd rows, padded ldy): the
// row-to-matrix mapping of both int8 kernels, against the CPU's int8 quantization of x.
void test_gemv_dq_multi(uint32_t type) {
    const int K = 512, Ns[3] = {128 + 5, 64 + 1, 64 + 3};
    cuda_weight w[3];
    std::vector<float> W[3];
    float *dy[3];
    for (int i = 0; i < 3; i++) {
        auto raw = gen_rows(type, Ns[i], K);
        W[i] = ref_dequant(type, raw, Ns[i], K);
        if (!make_weight(&w[i], type, raw, Ns[i], K)) return;
        dy[i] = (float *)dalloc((size_t)(Ns[i] + 3) * 4);
        poison(dy[i], (size_t)(Ns[i] + 3) * 4);
    }
    auto x = randn(K, 1.0);
    auto xq = q8_blocks(x.data(), K);
    float *dx = dup(x);
    cuda_mmin m;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(1, K, CUDA_MMIN_XP)), 1, K, CUDA_MMIN_XP);
    err e2 = {ERR_OK, {0}};
    if (cuda_mmin_prepare(dx, K, &m, 1, C->st, &e2)) { fprintf(C->f, "not ok - prepare: %s\n", e2.msg); C->fails++; return; }
    cuda_mm_args a;
    memset(&a, 0, sizeof a);
    a.n = 3;
    a.exact = 0;
    for (int i = 0; i < 3; i++) { a.w[i] = &w[i]; a.y[i] = dy[i]; a.ldy[i] = Ns[i] + 3; }
    const int rc = cuda_matmul(&a, &m, C->st, &e2);
    cudaStreamSynchronize(C->st);
    std::vector<double> ref;
    std::vector<float> got;
    for (int i = 0; i < 3; i++) {
        auto y = get(dy[i], (size_t)(Ns[i] + 3));
        for (int r = 0; r < Ns[i]; r++) {
            double acc = 0;
            for (int k = 0; k < K; k++) acc += (double)W[i][(size_t)r * K + k] * xq[k];
            ref.push_back(acc);
            got.push_back(y[r]);
        }
    }
    int fin;
    const double er = rel_l2(got.data(), ref.data(), ref.size(), &fin);
    char shape[80];
    snprintf(shape, sizeof shape, "%s x3 (133/65/67 rows, ldy+3) K%d int8-x%s", tname(type), K, g_gemv_tag);
    report("gemv-dp4a-multi", shape, er, 2e-6, 0, fin && rc == 0, "(vs int8 x)");
    dfree_all();
}

// ----------------------------------------------------------------------------- layer ops

void test_resid_norm(int n, int dim, int with_o, int with_post, int gather) {
    const int rows_total = gather ? n + 5 : n;
    auto x = randn((size_t)rows_total * dim, 2.0), o = randn((size_t)rows_total * dim, 1.0);
    auto pw = randn(dim, 0.3), nw = randn(dim, 0.3);
    for (auto &v : pw) v += 1.0f;
    for (auto &v : nw) v += 1.0f;
    std::vector<int32_t> rows(n);
    for (int i = 0; i < n; i++) rows[i] = gather ? (i * 7 + 3) % rows_total : i;
    if (gather) { std::sort(rows.begin(), rows.end()); rows.erase(std::unique(rows.begin(), rows.end()), rows.end()); n = (int)rows.size(); }
    float *dx = dup(x), *d_o = dup(o), *dpw = dup(pw), *dnw = dup(nw);
    int32_t *drows = dup(rows);
    float *xout = (float *)dalloc((size_t)n * dim * 4);
    poison(xout, (size_t)n * dim * 4);
    const int K = dim;
    const bool mm = K % 128 == 0;
    cuda_mmin m;
    memset(&m, 0, sizeof m);
    if (mm) {
        cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(n, K, CUDA_MMIN_XP | CUDA_MMIN_F16)), n, K, CUDA_MMIN_XP | CUDA_MMIN_F16);
        poison(m.xp, (size_t)n * K * 4);
    }
    cuda_resid_args a;
    memset(&a, 0, sizeof a);
    a.x = dx; a.o = with_o ? d_o : NULL; a.post_w = with_post ? dpw : NULL; a.norm_w = dnw;
    a.rows = gather ? drows : NULL; a.n = n; a.dim = dim; a.eps = 1e-6f; a.out = mm ? &m : NULL; a.xout = xout;
    err e2 = {ERR_OK, {0}};
    const int rc = cuda_resid_norm(&a, C->st, &e2);
    cudaStreamSynchronize(C->st);
    auto gx = get(dx, x.size()), go = get(xout, (size_t)n * dim);
    std::vector<float> gxp = mm ? get(m.xp, (size_t)n * K) : std::vector<float>();
    std::vector<double> rx, ro;
    std::vector<float> gotx, goto_, gotp;
    for (int i = 0; i < n; i++) {
        const int r = rows[i];
        std::vector<double> xr(dim);
        for (int k = 0; k < dim; k++) xr[k] = x[(size_t)r * dim + k];
        if (with_o) {
            double ss = 0;
            for (int k = 0; k < dim; k++) ss += (double)o[(size_t)r * dim + k] * o[(size_t)r * dim + k];
            const double ror = 1.0 / sqrt(ss / dim + 1e-6);
            for (int k = 0; k < dim; k++) xr[k] += with_post ? o[(size_t)r * dim + k] * ror * pw[k] : o[(size_t)r * dim + k];
        }
        double ss = 0;
        for (int k = 0; k < dim; k++) ss += xr[k] * xr[k];
        const double rr = 1.0 / sqrt(ss / dim + 1e-6);
        for (int k = 0; k < dim; k++) {
            rx.push_back(xr[k]);
            gotx.push_back(gx[(size_t)r * dim + k]);
            ro.push_back(xr[k] * rr * nw[k]);
            goto_.push_back(go[(size_t)i * dim + k]);
            if (mm) gotp.push_back(gxp[(size_t)i * K + (k & ~63) + inv_perm64(k & 63)]);
        }
    }
    int f1, f2, f3 = 1;
    double er = std::max(rel_l2(gotx.data(), rx.data(), rx.size(), &f1), rel_l2(goto_.data(), ro.data(), ro.size(), &f2));
    if (mm) er = std::max(er, rel_l2(gotp.data(), ro.data(), ro.size(), &f3));
    char shape[64];
    snprintf(shape, sizeof shape, "n%d dim%d%s%s%s", n, dim, with_o ? " +o" : "", with_post ? " post" : "", gather ? " rows" : "");
    double us = time_us([&] { err e3; cuda_resid_norm(&a, C->st, &e3); }, 5);
    report("resid_norm", shape, er, 1e-5, us, rc == 0 && f1 && f2 && f3);
}

void test_act(int T, int ffn, int act) {
    auto g = randn((size_t)T * ffn, 2.0), u = randn((size_t)T * ffn, 1.0);
    float *dg = dup(g), *du = dup(u);
    cuda_mmin m;
    const int forms = CUDA_MMIN_XP | CUDA_MMIN_F16;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(T, ffn, forms)), T, ffn, forms);
    poison(m.xp, (size_t)T * ffn * 4);
    err e2 = {ERR_OK, {0}};
    const int rc = cuda_act_mm(dg, du, ffn, T, ffn, act, &m, C->st, &e2);
    cudaStreamSynchronize(C->st);
    auto xp = get(m.xp, (size_t)T * ffn);
    auto hi = get(m.hi, (size_t)T * ffn), lo = get(m.lo, (size_t)T * ffn);
    auto ts = get(m.tscale, T);
    std::vector<double> ref;
    std::vector<float> got, got2;
    for (int t = 0; t < T; t++)
        for (int k = 0; k < ffn; k++) {
            const double gv = g[(size_t)t * ffn + k];
            const double a = act == CUDA_ACT_GELU_TANH ? 0.5 * gv * (1 + tanh(0.7978845608028654 * (gv + 0.044715 * gv * gv * gv)))
                                                       : gv / (1 + exp(-gv));
            ref.push_back(a * u[(size_t)t * ffn + k]);
            const size_t at = (size_t)t * ffn + (k & ~63) + inv_perm64(k & 63);
            got.push_back(xp[at]);
            got2.push_back((quant_f16_to_f32(hi[at]) + quant_f16_to_f32(lo[at])) * ts[t]);
        }
    int f1, f2;
    const double er = std::max(rel_l2(got.data(), ref.data(), ref.size(), &f1), rel_l2(got2.data(), ref.data(), ref.size(), &f2));
    char shape[64];
    snprintf(shape, sizeof shape, "T%d ffn%d %s (xp, hi+lo)", T, ffn, act == CUDA_ACT_GELU_TANH ? "gelu_tanh" : "silu");
    double us = time_us([&] { err e3; cuda_act_mm(dg, du, ffn, T, ffn, act, &m, C->st, &e3); }, 5);
    report("act_mm", shape, er, 1e-5, us, rc == 0 && f1 && f2);
}

// ----------------------------------------------------------------------------- element-wise producers (second generation)

// One producer (kind 0: resid_norm with o (+ post_w when post), 1: act_mm silu (gelu when
// post), 2: mmin_prepare) at T rows of K into `forms`, against float64: the XP values, the
// F16/BF16 hi + lo times 2^e (and the per-32 sums), and the Q8 codes / scales / sums bit
// for bit against the CPU's quantization of the f32 row the same kernel computes (a
// companion run with XP added; its XP must equal this run's where both have it). The
// residual's x update too. `fresh` inputs per run (the residual updates x in place).
struct elt_io {
    std::vector<float> xp, ts, gs, q8d, q8s, xo;
    std::vector<uint16_t> hi, lo, bhi, blo;
    std::vector<int8_t> q8;
    double us;
    int rc;
};
elt_io elt_run(int kind, int T, int K, int forms, int post, const std::vector<float> &in0, const std::vector<float> &in1,
               const std::vector<float> &pw, const std::vector<float> &nw, bool time_it) {
    elt_io r;
    cuda_mmin m;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(T, K, forms)), T, K, forms);
    if (m.xp) poison(m.xp, (size_t)T * K * 4);
    if (m.hi) { poison(m.hi, (size_t)T * K * 2); poison(m.lo, (size_t)T * K * 2); poison(m.gsum, (size_t)T * K / 32 * 4); }
    if (m.bhi) { poison(m.bhi, (size_t)T * K * 2); poison(m.blo, (size_t)T * K * 2); poison(m.gsum, (size_t)T * K / 32 * 4); }
    if (m.q8) { poison(m.q8, (size_t)T * K); poison(m.q8d, (size_t)T * K / 32 * 4); poison(m.q8s, (size_t)T * K / 32 * 4); }
    float *d0 = dup(in0), *d1 = kind < 2 ? dup(in1) : NULL, *dpw = dup(pw), *dnw = dup(nw);
    err e2 = {ERR_OK, {0}};
    cuda_resid_args a;
    memset(&a, 0, sizeof a);
    a.x = d0; a.o = d1; a.post_w = post ? dpw : NULL; a.norm_w = dnw; a.n = T; a.dim = K; a.eps = 1e-6f; a.out = &m;
    auto launch = [&]() {
        if (kind == 0) return cuda_resid_norm(&a, C->st, &e2);
        if (kind == 1) return cuda_act_mm(d0, d1, K, T, K, post ? CUDA_ACT_GELU_TANH : CUDA_ACT_SILU, &m, C->st, &e2);
        return cuda_mmin_prepare(d0, K, &m, T, C->st, &e2);
    };
    r.rc = launch();
    cudaStreamSynchronize(C->st);
    const size_t n = (size_t)T * K;
    if (m.xp) r.xp = get(m.xp, n);
    if (m.hi) { r.hi = get(m.hi, n); r.lo = get(m.lo, n); }
    if (m.bhi) { r.bhi = get(m.bhi, n); r.blo = get(m.blo, n); }
    if (m.gsum) { r.gs = get(m.gsum, n / 32); r.ts = get(m.tscale, T); }
    if (m.q8) { r.q8 = get(m.q8, n); r.q8d = get(m.q8d, n / 32); r.q8s = get(m.q8s, n / 32); }
    if (kind == 0) r.xo = get(d0, n);
    r.us = 0;
    if (time_it && kind != 0) r.us = time_us([&] { launch(); }, 10);
    if (time_it && kind == 0) { a.o = NULL; r.us = time_us([&] { launch(); }, 10); } // x stays put: no o
    return r;
}

void test_elt(int kind, int T, int K, int forms, int post) {
    const size_t n = (size_t)T * K;
    auto in0 = randn(n, kind == 1 ? 2.0 : 1.5), in1 = randn(n, 1.0);
    auto pw = randn(K, 0.3), nw = randn(K, 0.3);
    for (auto &v : pw) v += 1.0f;
    for (auto &v : nw) v += 1.0f;
    if (T > 2) for (int k = 0; k < K; k++) in0[(size_t)1 * K + k] *= 3000.0f; // a large row
    for (int k = 64; k < 96 && kind == 2; k++) in0[k] = 0.0f;                 // an all-zero block
    // float64 reference of the produced rows (and of the updated residual)
    std::vector<double> ref(n), xr(kind == 0 ? n : 0);
    for (int t = 0; t < T; t++) {
        const size_t b = (size_t)t * K;
        if (kind == 0) {
            double so = 0;
            for (int k = 0; k < K; k++) so += (double)in1[b + k] * in1[b + k];
            const double ro = 1.0 / sqrt(so / K + 1e-6);
            double ss = 0;
            for (int k = 0; k < K; k++) {
                xr[b + k] = in0[b + k] + (post ? in1[b + k] * ro * pw[k] : (double)in1[b + k]);
                ss += xr[b + k] * xr[b + k];
            }
            const double rr = 1.0 / sqrt(ss / K + 1e-6);
            for (int k = 0; k < K; k++) ref[b + k] = xr[b + k] * rr * nw[k];
        } else if (kind == 1) {
            for (int k = 0; k < K; k++) {
                const double g = in0[b + k];
                const double av = post ? 0.5 * g * (1 + tanh(0.7978845608028654 * (g + 0.044715 * g * g * g))) : g / (1 + exp(-g));
                ref[b + k] = av * in1[b + k];
            }
        } else {
            for (int k = 0; k < K; k++) ref[b + k] = in0[b + k];
        }
    }
    elt_io comp = elt_run(kind, T, K, forms | CUDA_MMIN_XP, post, in0, in1, pw, nw, false);
    elt_io run = elt_run(kind, T, K, forms, post, in0, in1, pw, nw, true);
    double er = 0, er_tc = 0;
    int fin = 1, f2 = 1;
    size_t bad = 0;
    std::vector<float> nat(n); // comp's XP in natural order
    for (size_t t = 0; t < (size_t)T; t++)
        for (int k = 0; k < K; k++) nat[t * K + k] = comp.xp[t * K + (k & ~63) + inv_perm64(k & 63)];
    er = rel_l2(nat.data(), ref.data(), n, &fin);
    if (kind == 0) {
        int f3;
        er = std::max(er, rel_l2(run.xo.data(), xr.data(), n, &f3));
        fin &= f3;
    }
    if (forms & CUDA_MMIN_XP) bad += run.xp != comp.xp;
    for (int bf = 0; bf < 2; bf++) {
        const int fm = bf ? CUDA_MMIN_BF16 : CUDA_MMIN_F16;
        if (!(forms & fm)) continue;
        const std::vector<uint16_t> &H = bf ? run.bhi : run.hi, &L = bf ? run.blo : run.lo;
        std::vector<float> got(n), gsg(n / 32);
        std::vector<double> gsr(n / 32, 0.0);
        for (size_t t = 0; t < (size_t)T; t++)
            for (int k = 0; k < K; k++) {
                const size_t at = t * K + (k & ~63) + inv_perm64(k & 63);
                const float h = bf ? bf2f(H[at]) : quant_f16_to_f32(H[at]), l = bf ? bf2f(L[at]) : quant_f16_to_f32(L[at]);
                got[t * K + k] = (h + l) * run.ts[t];
                gsr[(t * K + k) / 32] += ref[t * K + k];
            }
        for (size_t g = 0; g < n / 32; g++) gsg[g] = run.gs[g] * run.ts[g / (K / 32)];
        int fa, fb;
        er_tc = std::max(er_tc, rel_l2(got.data(), ref.data(), n, &fa));
        er_tc = std::max(er_tc, rel_l2(gsg.data(), gsr.data(), n / 32, &fb));
        f2 &= fa & fb;
    }
    size_t q8bad = 0;
    if (forms & CUDA_MMIN_Q8) {
        for (size_t g = 0; g < n / 32; g++) {
            float a = 0.0f;
            for (int i = 0; i < 32; i++) a = fmaxf(a, fabsf(nat[g * 32 + i]));
            const float d = a / 127.0f;
            int sq = 0;
            for (int i = 0; i < 32; i++) {
                const size_t e = g * 32 + i, t = e / K, k = e % K;
                const int q = a == 0.0f ? 0 : (int)roundf(nat[e] / d);
                sq += q;
                if (run.q8[t * K + (k & ~63) + inv_perm64((int)(k & 63))] != (int8_t)q) q8bad++;
            }
            if (!(run.q8d[g] == d) || !(run.q8s[g] == d * (float)sq)) q8bad++;
        }
    }
    const char *kn[3] = {"elt resid_norm", "elt act_mm", "elt prepare"};
    char shape[96], note[96];
    snprintf(shape, sizeof shape, "T%d K%d%s%s%s%s%s%s", T, K, forms & CUDA_MMIN_XP ? " xp" : "", forms & CUDA_MMIN_F16 ? " f16" : "",
             forms & CUDA_MMIN_BF16 ? " bf16" : "", forms & CUDA_MMIN_Q8 ? " q8" : "",
             post ? (kind == 0 ? " post" : kind == 1 ? " gelu" : "") : "", cuda_elt_old() ? " OLD" : "");
    snprintf(note, sizeof note, "(tc err %.1e; %zu q8 mismatches, %zu xp diffs)", er_tc, q8bad, bad);
    const double tol_tc = forms & CUDA_MMIN_BF16 ? 1e-4 : 1e-5;
    report(kn[kind], shape, er, 1e-5, run.us,
           comp.rc == 0 && run.rc == 0 && fin && f2 && er_tc <= tol_tc && q8bad == 0 && bad == 0, note);
    dfree_all();
}

// The combinations of rows, widths and forms the engine uses (T = 1 XP; T > 1 the Q8
// form alone at precision fast, F16 (+ XP) at exact, Q8 + F16 when a weight mmq does not
// take shares the input, BF16), widths on the 1/2/4-float4-per-thread row kernels, a width
// that falls back to the first generation (K % 128 != 0) and chunk tails (K / 4 not a
// multiple of 256).
void test_elt_all(int quick) {
    const int Q8 = CUDA_MMIN_Q8, F16 = CUDA_MMIN_F16, XP = CUDA_MMIN_XP, BF = CUDA_MMIN_BF16;
    for (int T : {1, 2, 17, 64, 512, 2048}) {
        if (quick && T == 2048) continue;
        const int f = T == 1 ? XP : Q8;
        test_elt(0, T, 4096, f, 0);
        test_elt(1, T, 12288, f, 0);
        test_elt(2, T, 4096, f, 0);
    }
    test_elt(0, 1, 4096, XP, 1);
    test_elt(0, 17, 4096, Q8 | F16, 1);
    test_elt(0, 64, 4096, F16 | XP, 0);
    test_elt(0, 7, 640, Q8 | XP, 1);
    test_elt(0, 5, 5120, BF | Q8, 0);
    test_elt(0, 3, 8192, F16, 1);
    test_elt(0, 2, 16384, Q8 | F16, 0);
    test_elt(0, 3, 4160, Q8, 0);
    test_elt(1, 17, 12288, Q8 | F16, 0);
    test_elt(1, 64, 12288, F16 | XP, 0);
    test_elt(1, 5, 1088, Q8 | XP, 1);
    test_elt(1, 3, 3072, BF | XP, 1);
    test_elt(1, 2, 25600, F16, 0); // 6400 float4s: no row kernel, the first generation
    test_elt(2, 17, 4096, Q8 | F16, 0);
    test_elt(2, 512, 4096, Q8 | XP, 0);
    test_elt(2, 64, 4096, F16, 0);
    test_elt(2, 3, 1088, Q8, 0);
    test_elt(2, 5, 4096, BF | XP, 0);
}

// Inverse frequencies of one RoPE (what the engine computes from model_rope): plain base,
// linear scaling, YaRN ramp (with its mscale), llama3 per-dimension divisors.
void rope_table(int variant, int n_rot, float base, std::vector<float> &inv, float &mscale) {
    const int half = n_rot / 2;
    inv.resize(half);
    mscale = 1.0f;
    const float factor = 4.0f;
    float lo = 0, hi = 0;
    if (variant == 2) {
        auto corr = [&](float nr) { return (float)n_rot * logf(1024.0f / (nr * 2.0f * (float)M_PI)) / (2.0f * logf(base)); };
        lo = fmaxf(0.0f, floorf(corr(32.0f)));
        hi = fminf((float)(n_rot - 1), ceilf(corr(1.0f)));
        mscale = 0.1f * logf(factor) + 1.0f;
    }
    for (int i = 0; i < half; i++) {
        float f = 1.0f / powf(base, (float)(2 * i) / (float)n_rot);
        if (variant == 1) f /= factor;
        if (variant == 2) {
            float ramp = (hi - lo) < 0.001f ? 0.0f : ((float)i - lo) / (hi - lo);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            f = f / factor * ramp + f * (1.0f - ramp);
        }
        if (variant == 3) f /= 1.0f + 3.0f * (float)i / (float)half; // freq factors in [1, 4)
        inv[i] = f;
    }
}

void test_qkv(int T, int n_head, int n_kv, int D, int n_rot, int neox, int variant, int kv_type, int norms, int bias) {
    const int kvb = 16;
    // sequences of random lengths; token t -> (seq, pos) distinct
    const int nseq = 3;
    std::vector<int32_t> pos(T), seq(T);
    std::vector<int> len(nseq, 0);
    for (int t = 0; t < T; t++) { seq[t] = t % nseq; pos[t] = len[seq[t]]++ * 3 + (t % 2); }
    int maxpos = 0;
    for (int t = 0; t < T; t++) maxpos = std::max(maxpos, pos[t]);
    const int max_blocks = maxpos / kvb + 1, n_blocks = nseq * max_blocks + 3;
    std::vector<int32_t> perm(n_blocks);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) std::swap(perm[i], perm[C->rng.below(i + 1)]);
    std::vector<int32_t> bt((size_t)nseq * max_blocks);
    for (size_t i = 0; i < bt.size(); i++) bt[i] = perm[i];
    auto q = randn((size_t)T * n_head * D, 1.0), k = randn((size_t)T * n_kv * D, 1.0), v = randn((size_t)T * n_kv * D, 1.0);
    auto bq = randn((size_t)n_head * D, 0.5), bk = randn((size_t)n_kv * D, 0.5), bv = randn((size_t)n_kv * D, 0.5);
    auto qn = randn(D, 0.2), kn = randn(D, 0.2);
    for (auto &x : qn) x += 1.0f;
    for (auto &x : kn) x += 1.0f;
    std::vector<float> inv;
    float msc;
    rope_table(variant, n_rot, 10000.0f, inv, msc);
    const int esz = kv_type == CUDA_KV_F32 ? 4 : (kv_type == CUDA_KV_F16 || kv_type == CUDA_KV_BF16) ? 2 : 1;
    const size_t cache_elems = (size_t)n_blocks * n_kv * kvb * D;
    void *kc = dalloc(cache_elems * esz), *vc = dalloc(cache_elems * esz);
    float *ks = (float *)dalloc((size_t)n_blocks * n_kv * kvb * 4), *vs = (float *)dalloc((size_t)n_blocks * n_kv * kvb * 4);
    poison(kc, cache_elems * esz); poison(vc, cache_elems * esz);
    float *dq = dup(q), *dk = dup(k), *dv = dup(v);
    cuda_qkv_args a;
    memset(&a, 0, sizeof a);
    a.q = dq; a.k = dk; a.v = dv; a.ldq = n_head * D; a.ldk = a.ldv = n_kv * D;
    if (bias) { a.bq = dup(bq); a.bk = dup(bk); a.bv = dup(bv); }
    if (norms) { a.q_norm = dup(qn); a.k_norm = dup(kn); }
    a.eps = 1e-6f; a.inv_freq = dup(inv); a.n_rot = n_rot; a.neox = neox; a.mscale = msc;
    a.n_head = n_head; a.n_kv = n_kv; a.head_dim = D;
    a.kv.k = kc; a.kv.v = vc; a.kv.k_scale = ks; a.kv.v_scale = vs; a.kv_type = kv_type; a.kv_block = kvb;
    cuda_tokens tk = {dup(pos), dup(seq), dup(bt), max_blocks, T};
    err e2 = {ERR_OK, {0}};
    const int rc = cuda_qkv_rope_store(&a, &tk, C->st, &e2);
    cudaStreamSynchronize(C->st);
    auto gq = get(dq, q.size());
    std::vector<uint8_t> gk = get((uint8_t *)kc, cache_elems * esz), gv = get((uint8_t *)vc, cache_elems * esz);
    auto gks = get(ks, (size_t)n_blocks * n_kv * kvb), gvs = get(vs, (size_t)n_blocks * n_kv * kvb);
    auto dec = [&](const std::vector<uint8_t> &cb, const std::vector<float> &sc, size_t i) -> float {
        switch (kv_type) {
        case CUDA_KV_F32: { float f; memcpy(&f, &cb[i * 4], 4); return f; }
        case CUDA_KV_F16: { uint16_t h; memcpy(&h, &cb[i * 2], 2); return quant_f16_to_f32(h); }
        case CUDA_KV_BF16: { uint16_t h; memcpy(&h, &cb[i * 2], 2); return bf2f(h); }
        case CUDA_KV_Q8: return (float)(int8_t)cb[i] * sc[i / D];
        default: return e4m3_decode(cb[i]) * sc[i / D];
        }
    };
    std::vector<double> rq, rkv;
    std::vector<float> gotq, gotkv;
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < n_head + 2 * n_kv; h++) {
            const int kind = h < n_head ? 0 : h < n_head + n_kv ? 1 : 2;
            const int hh = kind == 0 ? h : kind == 1 ? h - n_head : h - n_head - n_kv;
            const float *src = kind == 0 ? &q[((size_t)t * n_head + hh) * D] : kind == 1 ? &k[((size_t)t * n_kv + hh) * D] : &v[((size_t)t * n_kv + hh) * D];
            const float *b = kind == 0 ? &bq[(size_t)hh * D] : kind == 1 ? &bk[(size_t)hh * D] : &bv[(size_t)hh * D];
            std::vector<double> x(D);
            for (int d = 0; d < D; d++) x[d] = (double)src[d] + (bias ? b[d] : 0.0);
            if (norms && kind < 2) {
                double ss = 0;
                for (int d = 0; d < D; d++) ss += x[d] * x[d];
                const double r = 1.0 / sqrt(ss / D + 1e-6);
                for (int d = 0; d < D; d++) x[d] = x[d] * r * (kind == 0 ? qn[d] : kn[d]);
            }
            if (kind < 2)
                for (int i = 0; i < n_rot / 2; i++) {
                    const double th = (double)(float)((float)pos[t] * inv[i]);
                    const double cs = cos(th) * msc, sn = sin(th) * msc;
                    const int ia = neox ? i : 2 * i, ib = neox ? i + n_rot / 2 : 2 * i + 1;
                    const double x0 = x[ia], x1 = x[ib];
                    x[ia] = x0 * cs - x1 * sn;
                    x[ib] = x0 * sn + x1 * cs;
                }
            if (kind == 0) {
                for (int d = 0; d < D; d++) { rq.push_back(x[d]); gotq.push_back(gq[((size_t)t * n_head + hh) * D + d]); }
            } else {
                const int blk = bt[(size_t)seq[t] * max_blocks + pos[t] / kvb];
                const size_t row = ((size_t)blk * n_kv + hh) * kvb + pos[t] % kvb;
                for (int d = 0; d < D; d++) {
                    rkv.push_back(x[d]);
                    gotkv.push_back(dec(kind == 1 ? gk : gv, kind == 1 ? gks : gvs, row * D + d));
                }
            }
        }
    }
    int f1, f2;
    const double eq = rel_l2(gotq.data(), rq.data(), rq.size(), &f1);
    const double ekv = rel_l2(gotkv.data(), rkv.data(), rkv.size(), &f2);
    const double tol_kv = kv_type == CUDA_KV_F32 ? 1e-5 : kv_type == CUDA_KV_F16 ? 1e-3 : kv_type == CUDA_KV_BF16 ? 8e-3
                          : kv_type == CUDA_KV_Q8 ? 1.5e-2 : 6e-2;
    static const char *vn[] = {"plain", "linear", "yarn", "llama3"};
    static const char *kn_[] = {"f32", "f16", "q8", "bf16", "fp8"};
    char shape[64];
    snprintf(shape, sizeof shape, "T%d h%d/%d d%d rot%d %s %s kv %s%s%s", T, n_head, n_kv, D, n_rot, neox ? "neox" : "norm",
             vn[variant], kn_[kv_type], norms ? " qknorm" : "", bias ? " bias" : "");
    double us = time_us([&] { err e3; cuda_qkv_rope_store(&a, &tk, C->st, &e3); }, 5);
    // q error and cache error (the cache tolerance is the storage type's rounding)
    report("qkv_rope_store", shape, std::max(eq / 1e-5, ekv / tol_kv) * 1e-5, 1e-5, us, rc == 0 && f1 && f2,
           "(err scaled: q tol 1e-5, cache tol by type)");
}

void test_softcap(int n, int V) {
    auto l = randn((size_t)n * V, 20.0);
    float *dl = dup(l);
    err e2 = {ERR_OK, {0}};
    const int rc = cuda_softcap(dl, V, n, V, 30.0f, C->st, &e2);
    auto g = get(dl, l.size());
    std::vector<double> ref(l.size());
    for (size_t i = 0; i < l.size(); i++) ref[i] = 30.0 * tanh(l[i] / 30.0);
    int fin;
    const double er = rel_l2(g.data(), ref.data(), ref.size(), &fin);
    char shape[64];
    snprintf(shape, sizeof shape, "n%d vocab%d cap30", n, V);
    report("softcap", shape, er, 1e-6, 0, rc == 0 && fin);
}

// ----------------------------------------------------------------------------- attention

struct attn_case {
    int n_head, n_kv, D, kv_type, window, sinks, n_split;
    std::vector<int> n, pos0; // per sequence: new tokens, position of the first
    int check;                // query tokens compared per sequence (0 = all)
    int p64 = 0;              // out rows in P64 order (the f32 input of the next GEMV)
    int dec = 0;              // 1: the decode plan (tensor-core kernel, cuda_attn_dec_plan); one token per sequence
    std::vector<int> shared = {}; // per sequence: leading blocks that are sequence 0's (same ids: a shared prefix)
    int pf = 0;               // 1: the tensor-core prefill kernel (tiles of cuda_attn_pf_tokens, cuda_attn_args.prefill)
    int fast = 0;             // with pf: one f16 for Q and P (precision fast, cuda_attn_args.pf_fast)
};

// A case of the prefill kernel (f16 KV): n tokens per sequence after pos0 positions of context.
attn_case pf_case(int H, int HK, int D, int window, int sinks, int n_split, std::vector<int> n, std::vector<int> pos0,
                  int check, int p64 = 0, int fast = 0) {
    attn_case c = {H, HK, D, CUDA_KV_F16, window, sinks, n_split, n, pos0, check, p64, 0};
    c.pf = 1;
    c.fast = fast;
    return c;
}

int st_sms() {
    int sms = 0;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess || sms < 1) cudaGetLastError(), sms = 132;
    return sms;
}

void test_attn(const attn_case &c) {
    const int kvb = 16, nseq = (int)c.n.size(), H = c.n_head, HK = c.n_kv, D = c.D, G = H / HK;
    int T = 0, max_blocks = 0;
    std::vector<int> t0(nseq);
    for (int s = 0; s < nseq; s++) { t0[s] = T; T += c.n[s]; max_blocks = std::max(max_blocks, (c.pos0[s] + c.n[s] + kvb - 1) / kvb); }
    const int n_blocks = nseq * max_blocks + 2;
    std::vector<int32_t> perm(n_blocks);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) std::swap(perm[i], perm[C->rng.below(i + 1)]);
    std::vector<int32_t> bt((size_t)nseq * max_blocks);
    for (size_t i = 0; i < bt.size(); i++) bt[i] = perm[i];
    for (int s = 1; s < nseq && s < (int)c.shared.size(); s++)
        for (int i = 0; i < c.shared[s] && i < max_blocks; i++) bt[(size_t)s * max_blocks + i] = bt[i];
    const int esz = c.kv_type == CUDA_KV_F32 ? 4 : (c.kv_type == CUDA_KV_F16 || c.kv_type == CUDA_KV_BF16) ? 2 : 1;
    const size_t rows = (size_t)n_blocks * HK * kvb, elems = rows * D;
    std::vector<uint8_t> kb(elems * esz, 0), vb(elems * esz, 0);
    std::vector<float> ksc(rows, 1.0f), vsc(rows, 1.0f);
    std::vector<float> kval(elems, 0.0f), vval(elems, 0.0f); // decoded reference values
    auto store = [&](std::vector<uint8_t> &cb, std::vector<float> &sc, std::vector<float> &val, size_t row, const float *x) {
        float amax = 0;
        for (int d = 0; d < D; d++) amax = fmaxf(amax, fabsf(x[d]));
        const float qm = c.kv_type == CUDA_KV_Q8 ? 127.0f : 448.0f;
        const float scale = amax / qm, inv = amax > 0 ? qm / amax : 0;
        if (c.kv_type == CUDA_KV_Q8 || c.kv_type == CUDA_KV_FP8) sc[row] = scale;
        for (int d = 0; d < D; d++) {
            const size_t i = row * D + d;
            switch (c.kv_type) {
            case CUDA_KV_F32: memcpy(&cb[i * 4], &x[d], 4); val[i] = x[d]; break;
            case CUDA_KV_F16: { uint16_t h = quant_f32_to_f16(x[d]); memcpy(&cb[i * 2], &h, 2); val[i] = quant_f16_to_f32(h); break; }
            case CUDA_KV_BF16: { uint16_t h = f2bf(x[d]); memcpy(&cb[i * 2], &h, 2); val[i] = bf2f(h); break; }
            case CUDA_KV_Q8: { int8_t q8 = (int8_t)lrintf(x[d] * inv); cb[i] = (uint8_t)q8; val[i] = (float)q8 * scale; break; }
            default: { uint8_t f8 = e4m3_encode(x[d] * inv); cb[i] = f8; val[i] = e4m3_decode(f8) * scale; break; }
            }
        }
    };
    std::vector<float> tmp(D);
    std::vector<char> done(rows, 0); // (rows of a shared block: written once)
    for (int s = 0; s < nseq; s++)
        for (int p = 0; p < c.pos0[s] + c.n[s]; p++)
            for (int h = 0; h < HK; h++) {
                const size_t row = ((size_t)bt[(size_t)s * max_blocks + p / kvb] * HK + h) * kvb + p % kvb;
                if (done[row]) continue;
                done[row] = 1;
                for (int d = 0; d < D; d++) tmp[d] = (float)C->rng.normal();
                store(kb, ksc, kval, row, tmp.data());
                for (int d = 0; d < D; d++) tmp[d] = (float)C->rng.normal();
                store(vb, vsc, vval, row, tmp.data());
            }
    auto q = randn((size_t)T * H * D, 1.0);
    auto sinks = randn(H, 1.0);
    const float scale = 1.0f / sqrtf((float)D);
    const int QT = c.pf ? cuda_attn_pf_tokens(G) : cuda_attn_tile_tokens(G);
    std::vector<cuda_attn_tile> tiles;
    for (int s = 0; s < nseq; s++)
        for (int i = 0; i < c.n[s]; i += QT) tiles.push_back({s, t0[s] + i, std::min(QT, c.n[s] - i), c.pos0[s] + i});
    cuda_attn_args a;
    memset(&a, 0, sizeof a);
    a.q = dup(q);
    a.out = (float *)dalloc((size_t)T * H * D * 4);
    poison(a.out, (size_t)T * H * D * 4);
    a.ldq = a.ldo = H * D;
    a.kv.k = dup(kb); a.kv.v = dup(vb); a.kv.k_scale = dup(ksc); a.kv.v_scale = dup(vsc);
    a.kv_type = c.kv_type; a.kv_block = kvb;
    a.block_tables = dup(bt); a.max_blocks = max_blocks;
    a.tiles = dup(tiles); a.n_tiles = (int)tiles.size();
    a.n_head = H; a.n_kv = HK; a.head_dim = D; a.scale = scale; a.window = c.window;
    a.sinks = c.sinks ? dup(sinks) : NULL;
    a.n_split = c.n_split;
    a.work = c.n_split > 1 ? (float *)dalloc(cuda_attn_work_bytes(a.n_tiles, H, HK, D, c.n_split)) : NULL;
    a.pf_fast = c.fast; // (decode plan: attn_dec2_kernel's precision fast too)
    if (c.pf) {
        a.prefill = 1;
        a.work = c.n_split > 1 ? (float *)dalloc(cuda_attn_work_bytes_tokens(T, H, D, c.n_split)) : NULL;
        if (a.work) poison(a.work, cuda_attn_work_bytes_tokens(T, H, D, c.n_split));
    }
    a.out_p64 = c.p64;
    int plan_rc = 1, n_items = 0, n_casc = 0;
    if (c.dec) {
        // the engine's decode plan, made here the same way (cuda_forward)
        n_items = cuda_attn_dec_items(nseq, HK, st_sms());
        const int nsl = cuda_attn_dec_nsl(nseq);
        std::vector<cuda_attn_item> items(n_items);
        std::vector<int32_t> nslot(nseq);
        plan_rc = cuda_attn_dec_plan(tiles.data(), (int)tiles.size(), bt.data(), max_blocks, kvb, G, n_items, nsl,
                                     items.data(), nslot.data());
        for (const cuda_attn_item &x : items) n_casc += x.n > 1;
        a.plan = dup(items);
        a.plan_nslot = dup(nslot);
        a.plan_items = n_items;
        a.plan_nsl = nsl;
        a.work = (float *)dalloc(cuda_attn_dec_work_bytes(T, H, D, nsl));
        poison(a.work, cuda_attn_dec_work_bytes(T, H, D, nsl));
    }
    err e2 = {ERR_OK, {0}};
    const int rc = plan_rc < 1 ? -1 : cuda_attention(&a, C->st, &e2);
    if (plan_rc < 1) fprintf(C->f, "# attention: the decode plan failed (%d)\n", plan_rc);
    if (rc) fprintf(C->f, "# attention: %s\n", e2.msg);
    cudaStreamSynchronize(C->st);
    auto out = get(a.out, (size_t)T * H * D);
    int fin = 1;
    for (float v : out) if (!isfinite(v)) fin = 0;
    std::vector<double> ref;
    std::vector<float> got;
    std::vector<double> sc;
    for (int s = 0; s < nseq; s++) {
        std::vector<int> toks;
        if (!c.check || c.check >= c.n[s]) for (int i = 0; i < c.n[s]; i++) toks.push_back(i);
        else { toks.push_back(0); toks.push_back(c.n[s] - 1); while ((int)toks.size() < c.check) toks.push_back(C->rng.below(c.n[s])); }
        for (int i : toks) {
            const int pos = c.pos0[s] + i;
            const int first = c.window > 0 ? std::max(0, pos - c.window + 1) : 0;
            for (int h = 0; h < H; h++) {
                const int hk = h / G;
                const float *qh = &q[((size_t)(t0[s] + i) * H + h) * D];
                sc.assign(pos - first + 1, 0.0);
                double mx = -INFINITY;
                for (int p = first; p <= pos; p++) {
                    const size_t row = ((size_t)bt[(size_t)s * max_blocks + p / kvb] * HK + hk) * kvb + p % kvb;
                    double d = 0;
                    for (int k = 0; k < D; k++) d += (double)qh[k] * kval[row * D + k];
                    sc[p - first] = d * scale;
                    mx = std::max(mx, sc[p - first]);
                }
                if (c.sinks) mx = std::max(mx, (double)sinks[h]);
                double l = c.sinks ? exp(sinks[h] - mx) : 0.0;
                std::vector<double> o(D, 0.0);
                for (int p = first; p <= pos; p++) {
                    const double w = exp(sc[p - first] - mx);
                    l += w;
                    const size_t row = ((size_t)bt[(size_t)s * max_blocks + p / kvb] * HK + hk) * kvb + p % kvb;
                    for (int k = 0; k < D; k++) o[k] += w * vval[row * D + k];
                }
                for (int k = 0; k < D; k++) {
                    ref.push_back(o[k] / l);
                    const int e_ = h * D + k;
                    got.push_back(out[(size_t)(t0[s] + i) * H * D +
                                      (c.p64 ? (size_t)(e_ & ~63) + inv_perm64(e_ & 63) : (size_t)e_)]);
                }
            }
        }
    }
    int f2;
    const double er = rel_l2(got.data(), ref.data(), ref.size(), &f2);
    static const char *kn_[] = {"f32", "f16", "q8", "bf16", "fp8"};
    char shape[160];
    int ctx = 0;
    for (int s = 0; s < nseq; s++) ctx = std::max(ctx, c.pos0[s] + c.n[s]);
    int sh = 0;
    for (int s = 1; s < nseq && s < (int)c.shared.size(); s++) sh = std::max(sh, c.shared[s]);
    char split[64];
    if (c.dec) snprintf(split, sizeof split, "dec items%d cascade%d shared<=%dblk", n_items, n_casc, sh);
    else snprintf(split, sizeof split, "split%d", c.n_split);
    snprintf(shape, sizeof shape, "%dseq T%d ctx<=%d h%d/%d d%d %s%s%s %s%s", nseq, T, ctx, H, HK, D,
             kn_[c.kv_type], c.window ? " win" : "", c.sinks ? " sinks" : "", split, c.p64 ? " p64" : "");
    double us = time_us([&] { err e3; cuda_attention(&a, C->st, &e3); }, 5);
    if (c.dec && rc == 0) C->fails += fz_attn_q8_check(&a, T, C->f, C->st); // round 8 fz (fz_test.cu)
    // (the tensor-core kernels: Q and P in f16 hi + lo, K and V exact in f16)
    // (fast: Q and P rounded to f16 once, ~2.8e-4 rms each: ~5e-4 relative expected)
    const int a8 = c.dec ? cuda_attn_dec_att8(-1) : 0; // (1: attn_dec3_kernel; 2: its control)
    if (a8 == 2) { // the control must miss the bound: ok when it does
        char note[64];
        snprintf(note, sizeof note, "(error %.3g must exceed %.0e)", er, c.fast ? 3e-3 : 5e-5);
        report("attention dec3 control", shape, er > (c.fast ? 3e-3 : 5e-5) ? 0.0 : 1.0, 0.5, us, rc == 0, note);
        return;
    }
    report(c.dec ? (c.fast ? (a8 == 3 ? "attention dec3 pair fast" : a8 ? "attention dec3 fast" : "attention dec fast") : a8 ? "attention dec3" : "attention dec")
                 : c.fast ? "attention pf fast" : c.pf ? "attention pf" : "attention", shape, er,
           c.fast ? 3e-3 : c.dec || c.pf ? 5e-5 : 2e-5, us, rc == 0 && fin && f2);
}

// ----------------------------------------------------------------------------- sampling

struct smp_ref {
    int token;
    // Tokens the kernel may pick for the same draw: the kernel sums probabilities in fixed
    // point (each token's exp((l - max) / T) floored to a multiple of 2^-31, in expf), so
    // its cumulative mass at sorted position i may sit up to (i + 1) * 2^-31 + 4e-6 * acc
    // below the exact one, and the candidate cut (all but 1e-6 of the mass) may differ by
    // 1e-6 of the mass. Every token whose exact interval meets [r - w, r + w] is accepted
    // (w from those bounds); `near` says the draw was within w of a boundary.
    bool near;
    std::vector<int> ok;
};

// The semantics of cuda_kern.h / sampler.c, in float64 with a full sort.
smp_ref sample_ref(const float *raw, int V, const cuda_sample_row &R, const uint32_t *cnt, const uint32_t *mask,
                   const int32_t *bid, const float *bval) {
    std::vector<float> l(raw, raw + V);
    for (int b = 0; b < R.n_bias; b++) if (bid[b] >= 0 && bid[b] < V) l[bid[b]] += bval[b];
    for (int i = 0; i < V; i++) {
        float v = l[i];
        if (isnan(v)) v = -INFINITY;
        if (mask && !((mask[i >> 5] >> (i & 31)) & 1u)) v = -INFINITY;
        if (cnt && cnt[i]) {
            if (R.rep_pen != 1.0f) v = v > 0 ? v / R.rep_pen : v * R.rep_pen;
            v -= R.freq_pen * (float)cnt[i] + R.pres_pen;
        }
        l[i] = v;
    }
    smp_ref res = {0, false, {}};
    int best = 0;
    for (int i = 1; i < V; i++) if (l[i] > l[best]) best = i;
    if (R.temperature <= 0 || l[best] == -INFINITY) { res.token = best; res.ok.push_back(best); return res; }
    std::vector<int> idx(V);
    for (int i = 0; i < V; i++) idx[i] = i;
    std::sort(idx.begin(), idx.end(), [&](int a, int b) { return l[a] != l[b] ? l[a] > l[b] : a < b; });
    // candidates as sampler.c takes them: top-k, else the top m for m = 256, 1024, ...
    // until they hold top_p of the mass (or all but 1e-6 of it)
    const double mx = l[idx[0]];
    auto pr = [&](int i) { return exp(((double)l[idx[i]] - mx) / R.temperature); };
    int keep = R.top_k > 0 && R.top_k < V ? R.top_k : std::min(V, 256);
    if (!(R.top_k > 0)) {
        double all = 0;
        for (int i = 0; i < V; i++) all += pr(i);
        for (;;) {
            if (keep == V) break;
            double in = 0;
            for (int i = 0; i < keep; i++) in += pr(i);
            if (R.top_p < 1.0f ? in >= R.top_p * all : (all - in) <= 1e-6 * all) break;
            keep = keep * 4 < V ? keep * 4 : V;
        }
    }
    std::vector<double> p(keep);
    double mu = 0;
    for (int i = 0; i < keep; i++) { p[i] = pr(i); mu += p[i]; }
    if (R.top_p < 1.0f) {
        double acc = 0;
        for (int i = 0; i < keep; i++) { acc += p[i]; if (acc >= R.top_p * mu) { keep = i + 1; break; } }
    }
    if (R.min_p > 0) { int k2 = 1; while (k2 < keep && p[k2] >= R.min_p * p[0]) k2++; keep = k2; }
    double tot = 0;
    for (int i = 0; i < keep; i++) tot += p[i];
    const double r = R.u * tot;
    const double w = (double)(keep + 1) * 0x1p-31 + 5e-6 * tot;
    double acc = 0;
    res.token = idx[keep - 1];
    for (int i = 0; i < keep; i++) {
        const double a0 = acc;
        acc += p[i];
        if (r < acc && r >= a0) res.token = idx[i];
        if (acc > r - w && a0 <= r + w) res.ok.push_back(idx[i]);
    }
    // the kernel's cut may keep a few more tail tokens than this one (see above)
    if (keep < V && r + w >= tot)
        for (int i = keep; i < V && i < keep + 64; i++) res.ok.push_back(idx[i]);
    res.near = res.ok.size() > 1;
    return res;
}

// tdiv > 1 divides every temperature (peaked distributions: the candidate-list path of
// the second generation). The rows are also run through the first generation (one CTA
// per row, SPARKD_ELT_OLD's path): tokens and top ids must be identical, logprobs within 1e-5.
void test_sample(int V, int ties, float tdiv = 1.0f) {
    const int n = 9;
    std::vector<float> logits((size_t)n * V);
    for (auto &x : logits) {
        x = (float)(3.0 * C->rng.normal());
        if (ties) x = roundf(x * 2.0f) / 2.0f;
    }
    logits[5] = NAN;
    std::vector<uint32_t> counts((size_t)n * V, 0);
    std::vector<int32_t> acc_slot, acc_tok;
    for (int i = 0; i < 300; i++) { acc_slot.push_back(C->rng.below(n)); acc_tok.push_back(C->rng.below(V)); }
    // the top tokens of each row get a history too, so penalties change the choice
    for (int r = 0; r < n; r++) {
        int best = 0;
        for (int i = 1; i < V; i++) if (logits[(size_t)r * V + i] > logits[(size_t)r * V + best]) best = i;
        acc_slot.push_back(r); acc_tok.push_back(best);
        acc_slot.push_back(r); acc_tok.push_back(best);
    }
    for (size_t i = 0; i < acc_slot.size(); i++) counts[(size_t)acc_slot[i] * V + acc_tok[i]]++;
    const int words = (V + 31) / 32;
    std::vector<uint32_t> masks((size_t)words);
    for (auto &m : masks) m = (uint32_t)C->rng.next();
    std::vector<int32_t> bid;
    std::vector<float> bval;
    for (int i = 0; i < 12; i++) { bid.push_back(C->rng.below(V)); bval.push_back((float)(4.0 * C->rng.normal())); }
    std::vector<cuda_sample_row> rows(n);
    for (int r = 0; r < n; r++) {
        cuda_sample_row &R = rows[r];
        memset(&R, 0, sizeof R);
        R.logits_row = r; R.slot = r; R.temperature = 0; R.top_p = 1; R.min_p = 0; R.rep_pen = 1;
        R.u = (float)C->rng.unit(); R.mask_off = -1; R.n_top = 0;
    }
    rows[1].rep_pen = 1.3f; rows[1].freq_pen = 0.5f; rows[1].pres_pen = 0.7f; rows[1].mask_off = 0;
    rows[1].bias_off = 0; rows[1].n_bias = 12; rows[1].n_top = 20;
    rows[2].temperature = 0.7f; rows[2].top_k = 40; rows[2].n_top = 5;
    rows[3].temperature = 1.0f; rows[3].top_p = 0.9f;
    rows[4].temperature = 1.3f; rows[4].min_p = 0.05f;
    rows[5].temperature = 0.8f; rows[5].top_k = 100; rows[5].top_p = 0.95f; rows[5].min_p = 0.02f; rows[5].rep_pen = 1.1f;
    rows[5].freq_pen = 0.2f; rows[5].n_top = 20;
    rows[6].temperature = 1.0f; // the whole distribution
    rows[7].temperature = 0.5f; rows[7].top_k = 5; rows[7].mask_off = 0; rows[7].bias_off = 0; rows[7].n_bias = 12;
    rows[8].temperature = 2.0f; rows[8].top_p = 0.5f; rows[8].n_top = 20; rows[8].pres_pen = -1.0f;
    for (auto &R : rows) R.temperature /= tdiv;
    cuda_sample_args a;
    memset(&a, 0, sizeof a);
    a.logits = dup(logits); a.ld = V; a.n_vocab = V; a.rows = dup(rows); a.n = n;
    uint32_t *dcounts = (uint32_t *)dalloc(counts.size() * 4);
    cudaMemset(dcounts, 0, counts.size() * 4);
    err e2 = {ERR_OK, {0}};
    int rc = cuda_counts_add(dcounts, V, dup(acc_slot), dup(acc_tok), (int)acc_slot.size(), C->st, &e2);
    cudaStreamSynchronize(C->st);
    const bool counts_ok = get(dcounts, counts.size()) == counts;
    a.counts = dcounts; a.masks = dup(masks); a.bias_ids = dup(bid); a.bias_vals = dup(bval);
    a.work = (float *)dalloc(cuda_sample_work_bytes(n, V));
    a.out = (cuda_sample_out *)dalloc(n * sizeof(cuda_sample_out));
    poison(a.out, n * sizeof(cuda_sample_out));
    rc |= cuda_sample(&a, C->st, &e2);
    cudaStreamSynchronize(C->st);
    auto out = get(a.out, n);
    double us = time_us([&] { err e3; cuda_sample(&a, C->st, &e3); }, 5);
    int bad = 0, near = 0, gen_diff = 0;
    {
        const int was = cuda_elt_old();
        cuda_elt_old_set(!was);
        cuda_sample_out *o2 = (cuda_sample_out *)dalloc(n * sizeof(cuda_sample_out));
        poison(o2, n * sizeof(cuda_sample_out));
        cuda_sample_args a2 = a;
        a2.out = o2;
        rc |= cuda_sample(&a2, C->st, &e2);
        cudaStreamSynchronize(C->st);
        cuda_elt_old_set(was);
        auto out2 = get(o2, n);
        for (int r = 0; r < n; r++) {
            bool same = out2[r].token == out[r].token && out2[r].n_top == out[r].n_top &&
                        fabsf(out2[r].logprob - out[r].logprob) <= 1e-5f;
            for (int k = 0; same && k < out[r].n_top && k < CUDA_SAMPLE_TOP; k++)
                same = out2[r].top_ids[k] == out[r].top_ids[k] && fabsf(out2[r].top_logprobs[k] - out[r].top_logprobs[k]) <= 1e-5f;
            if (!same) {
                gen_diff++;
                fprintf(C->f, "# sample row %d: token %d here, %d with the other generation\n", r, out[r].token, out2[r].token);
            }
        }
    }
    double lp_err = 0;
    for (int r = 0; r < n; r++) {
        const cuda_sample_row &R = rows[r];
        const float *raw = &logits[(size_t)r * V];
        smp_ref ref = sample_ref(raw, V, R, &counts[(size_t)r * V], R.mask_off >= 0 ? masks.data() : NULL,
                                 bid.data() + R.bias_off, bval.data() + R.bias_off);
        if (out[r].token != ref.token) {
            if (std::find(ref.ok.begin(), ref.ok.end(), out[r].token) != ref.ok.end()) near++;
            else {
                bad++;
                fprintf(C->f, "# sample row %d: got %d want %d (%zu tokens within the fixed-point bound)\n", r,
                        out[r].token, ref.token, ref.ok.size());
            }
        }
        // logprobs: log-softmax of raw (NaN -> -inf)
        double mx = -INFINITY, se = 0;
        for (int i = 0; i < V; i++) if (!isnan(raw[i])) mx = std::max(mx, (double)raw[i]);
        for (int i = 0; i < V; i++) if (!isnan(raw[i])) se += exp(raw[i] - mx);
        const double lse = mx + log(se);
        const int tk = out[r].token >= 0 && out[r].token < V ? out[r].token : 0;
        const double want_lp = isnan(raw[tk]) ? -INFINITY : raw[tk] - lse;
        if (isfinite(want_lp)) lp_err = std::max(lp_err, fabs(out[r].logprob - want_lp));
        if (R.n_top) {
            std::vector<int> idx(V);
            for (int i = 0; i < V; i++) idx[i] = i;
            auto key = [&](int i) { return isnan(raw[i]) ? -INFINITY : raw[i]; };
            std::partial_sort(idx.begin(), idx.begin() + R.n_top, idx.end(),
                              [&](int x, int y) { return key(x) != key(y) ? key(x) > key(y) : x < y; });
            if (out[r].n_top != R.n_top) { bad++; fprintf(C->f, "# sample row %d: %d top\n", r, out[r].n_top); }
            for (int k = 0; k < std::min(R.n_top, out[r].n_top); k++) {
                if (out[r].top_ids[k] != idx[k]) { bad++; fprintf(C->f, "# sample row %d top %d: %d vs %d\n", r, k, out[r].top_ids[k], idx[k]); break; }
                lp_err = std::max(lp_err, fabs(out[r].top_logprobs[k] - (key(idx[k]) - lse)));
            }
        }
    }
    char shape[64], note[128];
    snprintf(shape, sizeof shape, "%d rows vocab%d%s%s%s", n, V, ties ? " ties" : "", tdiv > 1.0f ? " peaked" : "",
             cuda_elt_old() ? " OLD" : "");
    snprintf(note, sizeof note, "(%d wrong, %d near-boundary, %d differ old/new; lp err)", bad, near, gen_diff);
    report("sample", shape, lp_err, 2e-4, us, rc == 0 && bad == 0 && gen_diff == 0 && counts_ok, note);
}


// ----------------------------------------------------------------------------- benchmarks

// Product throughput with weights rotated over copies that together exceed the L2 several
// times, so every call reads from device memory: GB/s of weight bytes for small T,
// TFLOP/s for prefill-sized T.
void bench_matmul(uint32_t type, int N, int K, double probe, bool decode_only = false) {
    const uint64_t wb = cuda_weight_bytes(type, N, K);
    int copies = (int)((768ull << 20) / wb) + 1;
    if (copies > 64) copies = 64;
    auto raw = gen_rows(type, N, K);
    std::vector<cuda_weight> ws(copies);
    for (int i = 0; i < copies; i++)
        if (!make_weight(&ws[i], type, raw, N, K)) return;
    const int Tmax = 512;
    const int forms = CUDA_MMIN_XP | CUDA_MMIN_F16 | CUDA_MMIN_BF16;
    cuda_mmin m;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(Tmax, K, forms)), Tmax, K, forms);
    float *dx = dup(randn((size_t)Tmax * K, 1.0));
    float *dy = (float *)dalloc((size_t)Tmax * N * 4);
    float *splitk = (float *)dalloc(32u << 20);
    // g4: the int8 GEMV kernel choice (cuda_gemv4_set: -1 as the environment says, 0 the
    // per-32-rows gemv_dq_kernel, 1 the default choice, 2 the persistent gemv4 always)
    struct cfg { int T, path, exact, wk, g4 = -1; } cfgs[] = {{1, CUDA_MM_AUTO, 1, 0}, {1, CUDA_MM_FORCE_GEMM, 1, 0}, {1, CUDA_MM_FORCE_GEMM, 0, 0},
                                                {8, CUDA_MM_AUTO, 1, 0}, {32, CUDA_MM_AUTO, 1, 0}, {64, CUDA_MM_AUTO, 1, 0},
                                                {64, CUDA_MM_AUTO, 0, 0}, {512, CUDA_MM_AUTO, 1, 0}, {512, CUDA_MM_AUTO, 0, 0}};
    std::vector<cfg> list(cfgs, cfgs + sizeof cfgs / sizeof *cfgs);
    // decode_only: the f32 GEMV (exact) and the int8 one (exact = 0: "gemv dp4a") with the
    // built-in K split, then each with K split over 1, 2, 4, 8 warps
    // (dp4a: the old per-32-rows kernel "old", the persistent "gemv4", and the default choice)
    if (decode_only) list = {{1, CUDA_MM_AUTO, 1, 0}, {1, CUDA_MM_AUTO, 0, 0, 0}, {1, CUDA_MM_AUTO, 0, 0, 2}, {1, CUDA_MM_AUTO, 0, 0, 1},
                             {1, CUDA_MM_AUTO, 1, 1}, {1, CUDA_MM_AUTO, 1, 2},
                             {1, CUDA_MM_AUTO, 1, 4}, {1, CUDA_MM_AUTO, 1, 8}, {1, CUDA_MM_AUTO, 0, 1}, {1, CUDA_MM_AUTO, 0, 2},
                             {1, CUDA_MM_AUTO, 0, 4}};
    for (const cfg &c : list) {
        const int wk = c.wk;
        cuda_gemv_wk_set(wk);
        cuda_gemv4_set(c.g4);
        if (type == QUANT_F32 && c.path == CUDA_MM_FORCE_GEMM) continue;
        err e2 = {ERR_OK, {0}};
        if (cuda_mmin_prepare(dx, K, &m, c.T, C->st, &e2)) return;
        int it = 0;
        cuda_mm_args a;
        memset(&a, 0, sizeof a);
        a.n = 1; a.y[0] = dy; a.ldy[0] = N; a.path = c.path; a.exact = c.exact;
        a.work = splitk; a.work_bytes = 32u << 20;
        double us = time_us([&] {
            a.w[0] = &ws[it++ % copies];
            err e3;
            cuda_matmul(&a, &m, C->st, &e3);
        }, 3 * copies);
        cudaError_t ce = cudaGetLastError();
        const bool gemv = c.path == CUDA_MM_FORCE_GEMV || type == QUANT_F32 || (c.path == CUDA_MM_AUTO && c.T == 1);
        const double gbs = (double)wb / (us * 1e3), tfl = 2.0 * c.T * N * K / (us * 1e6);
        char kn[32];
        snprintf(kn, sizeof kn, "%s%s", gemv ? "gemv" : "mma", c.exact ? "" : gemv ? " dp4a" : " f16-in");
        if (gemv && wk) snprintf(kn, sizeof kn, "gemv%s wk=%d", c.exact ? "" : " dp4a", wk);
        if (gemv && !c.exact && !wk && c.g4 >= 0) snprintf(kn, sizeof kn, "gemv dp4a %s", c.g4 == 0 ? "old" : c.g4 == 2 ? "gemv4" : "auto");
        fprintf(C->f, "| %s | %dx%d | %d | %s | %.1f | %.0f | %.0f%% | %.2f |%s\n", tname(type), N, K, c.T, kn, us,
                gbs, probe > 0 ? 100.0 * gbs / probe : 0.0, tfl, ce != cudaSuccess ? cudaGetErrorString(ce) : "");
        fflush(C->f);
    }
    cuda_gemv_wk_set(0);
    cuda_gemv4_set(-1);
    dfree_all();
}

// A GEMV chain's timeline: a graph of `copies` steps (step(i, true): producer + GEMV on weight
// copy i) run with the GEMV trace on; per CTA of every GEMV, globaltimer stamps (start, ring loads
// issued, pdl_wait returned, x quantized, done) relative to the end of the GEMV before it (its last
// CTA), averaged over the graph's launches 1 .. copies-1. tl: first start, last start, ring issued
// (median), pdl_wait returned (median, last), x quantized (median, last), last CTA done, in us;
// returns how many launches were averaged (0: none). The caller picks the kernel variant first.
template <class Step>
static int chain_timeline(int copies, Step step, double tl[8]) {
    int tl_n = 0;
    const size_t cap = (size_t)copies * 2048 * 5;
    unsigned long long *tb = (unsigned long long *)dalloc(cap * 8);
    cudaMemset(tb, 0, cap * 8);
    cudaStreamSynchronize(C->st);
    cuda_gemv_trace_set(tb, cap);
    cudaGraph_t g;
    cudaGraphExec_t ge;
    bool okg = cudaStreamBeginCapture(C->st, cudaStreamCaptureModeRelaxed) == cudaSuccess;
    if (okg) {
        for (int i = 0; i < copies; i++) step(i, true);
        okg = cudaStreamEndCapture(C->st, &g) == cudaSuccess;
    }
    const size_t used = cuda_gemv_trace_set(NULL, 0);
    if (okg) {
        okg = cudaGraphInstantiate(&ge, g, 0) == cudaSuccess;
        cudaGraphDestroy(g);
    }
    if (okg) {
        cudaGraphLaunch(ge, C->st);
        cudaGraphLaunch(ge, C->st);
        cudaStreamSynchronize(C->st);
        cudaGraphExecDestroy(ge);
        const size_t per = used / copies, nct = per / 5;
        auto h = get(tb, used);
        for (int i = 1; i < copies && per && nct; i++) {
            const unsigned long long *a = &h[(size_t)(i - 1) * per], *b = &h[(size_t)i * per];
            unsigned long long pe = 0;
            std::vector<double> st[5];
            for (size_t c = 0; c < nct; c++) pe = std::max(pe, a[c * 5 + 4]);
            for (size_t c = 0; c < nct; c++)
                for (int k = 0; k < 5; k++) st[k].push_back((double)b[c * 5 + k] - (double)pe);
            if (!pe || st[0].empty() || b[0] == 0) continue;
            for (auto &v : st) std::sort(v.begin(), v.end());
            const size_t md = st[0].size() / 2;
            const double v8[8] = {st[0].front(), st[0].back(), st[1][md], st[2][md], st[2].back(), st[3][md], st[3].back(), st[4].back()};
            for (int k = 0; k < 8; k++) tl[k] += v8[k] * 1e-3;
            tl_n++;
        }
        for (int k = 0; k < 8; k++) tl[k] = tl_n ? tl[k] / tl_n : 0.0;
    }
    return tl_n;
}

// Round 5 (gemv.cu, SPARKD_GEMV_PRE): a decode step's product as the engine runs it: its
// producer (cuda_resid_norm of one row, PDL trigger at its start) then the int8 GEMV, both
// in one CUDA graph of `copies` such pairs (weights rotated over copies beyond the L2),
// replayed; us per pair with the round-4 kernels and K split (SPARKD_GEMV_PRE=0
// SPARKD_GEMV4_BAL=0), the default, the default with the round-4 K split, PRE=3 (L2 prefetch),
// and the producers alone. What ncu's isolated kernel times cannot show: the GEMV's weights
// moving while its producer runs.
// ks4: the product forced onto gemv4 with 4 warps per quad (cuda_gemv4_set(2), wk 4): the
// 1024-row v product, which the default choice leaves on gemv_dq_kernel (64 CTAs).
void bench_decode_chain(uint32_t type, const char *name, int rows, int K, int pair, int ks4 = 0) {
    const int nw = pair ? 2 : 1;
    const uint64_t wb = cuda_weight_bytes(type, rows, K) * nw;
    int copies = (int)((768ull << 20) / wb) + 1;
    if (copies > 48) copies = 48;
    auto raw = gen_rows(type, rows, K);
    std::vector<cuda_weight> ws((size_t)copies * nw);
    for (auto &w : ws)
        if (!make_weight(&w, type, raw, rows, K)) return;
    float *dx = dup(randn(K, 2.0)), *dnw = dup(randn(K, 0.3));
    cuda_mmin m, out;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(1, K, CUDA_MMIN_XP)), 1, K, CUDA_MMIN_XP);
    cuda_mmin_carve(&out, dalloc(cuda_mmin_bytes(1, rows, CUDA_MMIN_XP)), 1, rows, CUDA_MMIN_XP);
    float *dy = (float *)dalloc((size_t)rows * 4);
    cuda_resid_args ra;
    memset(&ra, 0, sizeof ra);
    ra.x = dx; ra.norm_w = dnw; ra.n = 1; ra.dim = K; ra.eps = 1e-6f; ra.out = &m;
    auto step = [&](int i, bool gemv) {
        err e3;
        cuda_resid_norm(&ra, C->st, &e3);
        if (!gemv) return;
        cuda_mm_args a;
        memset(&a, 0, sizeof a);
        a.n = nw; a.exact = 0;
        for (int j = 0; j < nw; j++) { a.w[j] = &ws[(size_t)i * nw + j]; a.y[j] = dy; a.ldy[j] = rows; }
        if (pair) { a.pair_act = CUDA_ACT_SILU + 1; a.act_out = &out; }
        cuda_matmul(&a, &m, C->st, &e3);
    };
    // with programmatic dependent launch as the engine runs it (cuda_kbench does not turn it
    // on for the other benches; run 2's chain rows were measured without it)
    const int pdl0 = cuda_pdl_enabled();
    {
        int major = 0;
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
        cuda_pdl_set(major >= 9 && !getenv("SPARKD_NO_PDL"));
    }
    // PRE=0 (the round-4 kernels), PRE=1 (default), producers alone, PRE=3 (L2 prefetch
    // before pdl_wait), PRE=1 with SPARKD_GEMV4_BAL=1 (the balanced K split); BAL=0 otherwise
    double us[5] = {0, 0, 0, 0, 0};
    if (ks4) {
        cuda_gemv4_set(2);
        cuda_gemv_wk_set(4);
    }
    for (int v = 0; v < 5; v++) {
        cuda_gemv_pre_set(v == 1 || v == 4 ? 1 : v == 3 ? 3 : 0);
        cuda_gemv4_bal_set(v == 4 ? 1 : 0);
        step(0, true); // warm-up outside the capture (occupancy and attribute caches)
        cudaStreamSynchronize(C->st);
        cudaGraph_t g;
        cudaGraphExec_t ge;
        if (cudaStreamBeginCapture(C->st, cudaStreamCaptureModeRelaxed) != cudaSuccess) break;
        for (int i = 0; i < copies; i++) step(i, v != 2);
        if (cudaStreamEndCapture(C->st, &g) != cudaSuccess) break;
        const bool okg = cudaGraphInstantiate(&ge, g, 0) == cudaSuccess;
        cudaGraphDestroy(g);
        if (!okg) break;
        us[v] = time_us([&] { cudaGraphLaunch(ge, C->st); }, 20) / copies;
        cudaGraphExecDestroy(ge);
    }
    // the default variant's timeline (chain_timeline)
    double tl[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    cuda_gemv_pre_set(1);
    cuda_gemv4_bal_set(0);
    const int tl_n = chain_timeline(copies, step, tl);
    cuda_gemv_pre_set(-1);
    cuda_gemv4_bal_set(-1);
    cuda_gemv4_set(-1);
    cuda_gemv_wk_set(0);
    const int pdl = cuda_pdl_enabled();
    cuda_pdl_set(pdl0);
    cudaError_t ce = cudaGetLastError();
    if (tl_n)
        fprintf(C->f, "| gemv timeline | %s %s%s | us after the previous GEMV's last CTA ended (PRE=1, %d launches): first CTA start %.2f, last start %.2f | ring issued (median CTA) %.2f | pdl_wait returned median %.2f, last %.2f | x quantized median %.2f, last %.2f | last CTA done %.2f |\n",
                tname(type), name, ks4 ? " (gemv4 KS 4)" : "", tl_n, tl[0], tl[1], tl[2], tl[3], tl[4], tl[5], tl[6], tl[7]);
    fprintf(C->f, "| decode chain | %s %s%s %dx%d%s | resid_norm + gemv dp4a, %s, graph | round 4 (PRE=0) %.2f us | PRE=1 %.2f us | %+.1f%% | PRE=1 BAL=1 %.2f us | PRE=3 (L2 prefetch) %.2f us | producer alone %.2f us | GEMV share %.1f -> %.1f us (%.0f -> %.0f GB/s) |%s\n",
            tname(type), name, ks4 ? " (gemv4 KS 4)" : "", rows, K, pair ? " x2" : "", pdl ? "PDL" : "no PDL", us[0], us[1], us[0] > 0 ? 100.0 * (us[1] - us[0]) / us[0] : 0.0, us[4], us[3], us[2],
            us[0] - us[2], us[1] - us[2], (double)wb / ((us[0] - us[2]) * 1e3), (double)wb / ((us[1] - us[2]) * 1e3),
            ce != cudaSuccess ? cudaGetErrorString(ce) : "");
    fflush(C->f);
    dfree_all();
}

// The Qwen3-8B prefill products (q+k+v, o, gate+up, down) at T = 64 and 512: the f16
// tensor-core kernel exact (hi + lo) and fast (one f16), and the int8 one (mmq), each
// with weights rotated over copies beyond the L2; TOPS = 2 T N K / time. Also the cost
// the Q8 form adds to an input's producer (cuda_mmin_prepare, F16 vs F16 + Q8).
void bench_prefill(uint32_t type, double peak) {
    struct prod { const char *name; int n, rows, K; } prods[] = {
        {"q+k+v", 1, 6144, 4096}, {"o", 1, 4096, 4096}, {"gate+up", 2, 12288, 4096}, {"down", 1, 4096, 12288}};
    for (const prod &pr : prods) {
        const uint64_t wb = cuda_weight_bytes(type, pr.rows, pr.K) * pr.n;
        int copies = (int)((768ull << 20) / wb) + 1;
        if (copies > 16) copies = 16;
        auto raw = gen_rows(type, pr.rows, pr.K);
        std::vector<cuda_weight> ws((size_t)copies * pr.n);
        for (auto &w : ws)
            if (!make_weight(&w, type, raw, pr.rows, pr.K)) return;
        const int Tmax = 2048;
        const int forms = CUDA_MMIN_F16 | CUDA_MMIN_Q8;
        cuda_mmin m;
        cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(Tmax, pr.K, forms)), Tmax, pr.K, forms);
        float *dx = dup(randn((size_t)Tmax * pr.K, 1.0));
        float *dy[2] = {(float *)dalloc((size_t)Tmax * pr.rows * 4), (float *)dalloc((size_t)Tmax * pr.rows * 4)};
        float *splitk = (float *)dalloc(32u << 20);
        for (int T : {64, 512, 2048}) {
            err e2 = {ERR_OK, {0}};
            if (cuda_mmin_prepare(dx, pr.K, &m, T, C->st, &e2)) return;
            const char *kn[4] = {"f16 mma exact", "f16 mma fast", "int8 mmq", "int8 mmq old"};
            double base = 0;
            for (int v = 0; v < 4; v++) {
                cuda_mmq_set(v >= 2);
                cuda_mmq_old_set(v == 3);
                int it = 0;
                cuda_mm_args a;
                memset(&a, 0, sizeof a);
                a.n = pr.n; a.exact = v == 0; a.work = splitk; a.work_bytes = 32u << 20;
                for (int i = 0; i < pr.n; i++) { a.y[i] = dy[i]; a.ldy[i] = pr.rows; }
                const double us = time_us([&] {
                    const int c = it++ % copies;
                    for (int i = 0; i < pr.n; i++) a.w[i] = &ws[(size_t)c * pr.n + i];
                    err e3;
                    cuda_matmul(&a, &m, C->st, &e3);
                }, 3 * copies);
                cudaError_t ce = cudaGetLastError();
                const double tops = 2.0 * T * pr.rows * pr.n * (double)pr.K / (us * 1e6);
                if (v == 1) base = us;
                char sp[32] = "";
                if (v >= 2 && base > 0) snprintf(sp, sizeof sp, "%.2fx fast", base / us);
                fprintf(C->f, "| %s | %s %dx%dx%d | %d | %s | %.1f | %.1f | %.0f%% | %s%s |\n", tname(type), pr.name, pr.n,
                        pr.rows, pr.K, T, kn[v], us, tops, peak > 0 ? 100.0 * tops / peak : 0.0, sp,
                        ce != cudaSuccess ? cudaGetErrorString(ce) : "");
                fflush(C->f);
            }
            cuda_mmq_set(1);
            cuda_mmq_old_set(-1);
            // the producer's cost of the int8 rows
            for (int fv = 0; fv < 2; fv++) {
                cuda_mmin m2 = m;
                m2.forms = fv ? forms : CUDA_MMIN_F16;
                const double us = time_us([&] { err e3; cuda_mmin_prepare(dx, pr.K, &m2, T, C->st, &e3); }, 20);
                fprintf(C->f, "| %s | prepare %dx%d | %d | %s | %.1f | | | |\n", tname(type), T, pr.K, T,
                        fv ? "F16 + Q8 form" : "F16 form", us);
            }
        }
        dfree_all();
    }
}

// SPARKD_KBENCH=elt: the element-wise producers and sampling at the Qwen3-8B shape, first
// generation (SPARKD_ELT_OLD's kernels with every form the engine used to write) vs the
// second (its kernels with the same forms, then with the forms the engine now writes).
void bench_elt() {
    const int Q8 = CUDA_MMIN_Q8, F16 = CUDA_MMIN_F16, XP = CUDA_MMIN_XP;
    const int was = cuda_elt_old();
    fprintf(C->f, "| kernel | T | variant | forms | us per call | GB/s (min bytes) | |\n|---|---|---|---|---|---|---|\n");
    const int Tmax = 512;
    struct { const char *name; int kind, K; } ks[] = {{"resid_norm (+o)", 0, 4096}, {"act_mm silu", 1, 12288}, {"mmin_prepare", 2, 4096}};
    for (auto &kd : ks) {
        const int K = kd.K;
        const int allf = XP | F16 | Q8;
        cuda_mmin m;
        cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(Tmax, K, allf)), Tmax, K, allf);
        float *d0 = dup(randn((size_t)Tmax * K, 1.0)), *d1 = dup(randn((size_t)Tmax * K, 1.0));
        float *dnw = dup(randn(K, 1.0));
        for (int T : {1, 64, 512}) {
            struct { const char *v; int old, forms; } vs[] = {
                {"old", 1, T == 1 ? XP : allf}, {"new, old forms", 0, T == 1 ? XP : allf}, {"new", 0, T == 1 ? XP : Q8}};
            for (auto &v : vs) {
                cuda_elt_old_set(v.old);
                cuda_mmin mm = m;
                mm.forms = v.forms;
                cuda_resid_args a;
                memset(&a, 0, sizeof a);
                a.x = d0; a.o = d1; a.norm_w = dnw; a.n = T; a.dim = K; a.eps = 1e-6f; a.out = &mm;
                const double us = time_us([&] {
                    err e3;
                    if (kd.kind == 0) cuda_resid_norm(&a, C->st, &e3);
                    else if (kd.kind == 1) cuda_act_mm(d0, d1, K, T, K, CUDA_ACT_SILU, &mm, C->st, &e3);
                    else cuda_mmin_prepare(d0, K, &mm, T, C->st, &e3);
                }, 50);
                // bytes that must move: inputs read (+ x written) + the forms written
                double by = (double)T * K * 4 * (kd.kind == 0 ? 3 : kd.kind == 1 ? 2 : 1);
                by += (double)T * K * ((v.forms & XP ? 4 : 0) + (v.forms & F16 ? 4 : 0) + (v.forms & Q8 ? 1 : 0));
                cudaError_t ce = cudaGetLastError();
                fprintf(C->f, "| %s K%d | %d | %s | %s%s%s | %.2f | %.0f | %s |\n", kd.name, K, T, v.v, v.forms & XP ? "xp " : "",
                        v.forms & F16 ? "f16 " : "", v.forms & Q8 ? "q8" : "", us, by / (us * 1e3),
                        ce != cudaSuccess ? cudaGetErrorString(ce) : "");
                fflush(C->f);
            }
        }
        dfree_all();
    }
    // QK-norm + RoPE + f16 KV store, Qwen3-8B heads (32 q / 8 kv, 128), tokens of one
    // sequence at positions 1000.. (repeated calls rewrite q in place: timing only)
    for (int T : {1, 64, 512}) {
        const int nh = 32, nkv = 8, D = 128, kvb = 16, p0 = 1000;
        const int max_blocks = (p0 + T) / kvb + 1;
        std::vector<int32_t> pos(T), seq(T, 0), bt(max_blocks);
        for (int t = 0; t < T; t++) pos[t] = p0 + t;
        for (int i = 0; i < max_blocks; i++) bt[i] = i;
        std::vector<float> inv(D / 2), nw(D, 1.0f);
        for (int i = 0; i < D / 2; i++) inv[i] = powf(1e6f, -2.0f * i / D);
        cuda_qkv_args a;
        memset(&a, 0, sizeof a);
        a.q = dup(randn((size_t)T * nh * D, 1.0)); a.k = dup(randn((size_t)T * nkv * D, 1.0));
        a.v = dup(randn((size_t)T * nkv * D, 1.0)); a.ldq = nh * D; a.ldk = a.ldv = nkv * D;
        a.q_norm = dup(nw); a.k_norm = dup(nw); a.eps = 1e-6f; a.inv_freq = dup(inv); a.n_rot = D; a.neox = 1;
        a.mscale = 1.0f; a.n_head = nh; a.n_kv = nkv; a.head_dim = D;
        a.kv.k = dalloc((size_t)max_blocks * nkv * kvb * D * 2); a.kv.v = dalloc((size_t)max_blocks * nkv * kvb * D * 2);
        a.kv_type = CUDA_KV_F16; a.kv_block = kvb;
        cuda_tokens tk = {dup(pos), dup(seq), dup(bt), max_blocks, T};
        for (int old = 1; old >= 0; old--) {
            cuda_elt_old_set(old);
            const double us = time_us([&] { err e3; cuda_qkv_rope_store(&a, &tk, C->st, &e3); }, 50);
            cudaError_t ce = cudaGetLastError();
            fprintf(C->f, "| qkv_rope_store 32/8 x 128 f16 KV | %d | %s | | %.2f | | %s |\n", T, old ? "old" : "new", us,
                    ce != cudaSuccess ? cudaGetErrorString(ce) : "");
            fflush(C->f);
        }
        dfree_all();
    }
    // sampling over a 151936 vocabulary: greedy, and sampled (temperature 0.8, top_p 0.95)
    // on LLM-like logits (20 tokens near 25 above a N(0, 2) background: tokens of non-zero
    // mass are those within 17 of the top, the candidate list) and on flat ones (N(0, 3):
    // every token has mass, the full-row passes in one CTA as before)
    const int V = 151936;
    for (int n : {1, 64}) {
        for (int kind = 0; kind < 4; kind++) {
            std::vector<float> lg((size_t)n * V);
            for (auto &x : lg) x = (float)((kind == 2 ? 3.0 : 2.0) * C->rng.normal());
            if (kind != 2)
                for (int r = 0; r < n; r++)
                    for (int j = 0; j < 20; j++) lg[(size_t)r * V + C->rng.below(V)] = (float)(25.0 + 2.0 * C->rng.normal());
            std::vector<cuda_sample_row> rows(n);
            for (int r = 0; r < n; r++) {
                cuda_sample_row &R = rows[r];
                memset(&R, 0, sizeof R);
                R.logits_row = r; R.slot = r; R.temperature = kind == 0 || kind == 3 ? 0.0f : 0.8f;
                R.top_p = kind == 0 || kind == 3 ? 1.0f : 0.95f; R.n_top = kind == 3 ? 20 : 0;
                R.rep_pen = 1.0f; R.u = (float)C->rng.unit(); R.mask_off = -1;
            }
            cuda_sample_args a;
            memset(&a, 0, sizeof a);
            a.logits = dup(lg); a.ld = V; a.n_vocab = V; a.rows = dup(rows); a.n = n;
            a.work = (float *)dalloc(cuda_sample_work_bytes(n, V));
            a.out = (cuda_sample_out *)dalloc(n * sizeof(cuda_sample_out));
            const char *kn[4] = {"greedy", "sampled, LLM-like logits", "sampled, flat logits", "greedy + 20 top logprobs, LLM-like"};
            for (int old = 1; old >= 0; old--) {
                cuda_elt_old_set(old);
                const double us = time_us([&] { err e3; cuda_sample(&a, C->st, &e3); }, 20);
                cudaError_t ce = cudaGetLastError();
                fprintf(C->f, "| sample V%d %s | %d | %s | | %.2f | | %s |\n", V, kn[kind], n, old ? "old" : "new", us,
                        ce != cudaSuccess ? cudaGetErrorString(ce) : "");
                fflush(C->f);
            }
            dfree_all();
        }
    }
    cuda_elt_old_set(was);
}

// ----------------------------------------------------------------------------- driver

void print_table() {
    FILE *f = C->f;
    fprintf(f, "\n| kernel | shape | error | tolerance | time (us) | result |\n|---|---|---|---|---|---|\n");
    for (const row_t &r : C->rows)
        fprintf(f, "| %s | %s | %.2e | %.0e | %.1f | %s%s%s |\n", r.kernel, r.shape, r.err, r.tol, r.us,
                r.ok ? "ok" : "FAIL", r.note[0] ? " " : "", r.note);
}

// Decode attention alone at a long context (Qwen3-8B shape: 32 / 8 heads x 128, f16 KV,
// blocks of 16): nseq sequences, each a token at position ctx - 1 + s; shared > 0: every
// sequence's table starts with the same blocks (ctx - 1 positions: a prefix cache hit), else
// each its own. The old kernel (split like the engine: 32 ways) against the plan. GB/s over the
// KV bytes read once (a shared prefix counted once) and % of the probe. Rotates over copies of
// the cache that together exceed the L2 when they fit in 12 GB.
void bench_attn(int ctx, int nseq, int shared, double probe) {
    const int H = 32, HK = 8, D = 128, G = H / HK, kvb = 16;
    const int max_blocks = (ctx + nseq + kvb - 1) / kvb;
    std::vector<int32_t> bt((size_t)nseq * max_blocks);
    int nb = 0;
    const int pre = shared ? (ctx - 1) / kvb : 0; // whole shared blocks
    for (int i = 0; i < pre; i++) bt[i] = nb++;
    for (int s = 0; s < nseq; s++)
        for (int i = 0; i < max_blocks; i++) bt[(size_t)s * max_blocks + i] = i < pre ? bt[i] : nb++;
    const uint64_t kvbytes = (uint64_t)nb * HK * kvb * D * 2; // K (= V) pool
    int copies = (int)((512ull << 20) / (2 * kvbytes)) + 1;
    if (copies > 8) copies = 8;
    if ((uint64_t)copies * 2 * kvbytes > (12ull << 30)) copies = 1;
    std::vector<uint16_t> kv(kvbytes / 2);
    uint32_t x = 2463534242u;
    for (auto &h : kv) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; h = quant_f32_to_f16((float)(int)(x % 2001u - 1000u) * 1e-3f); }
    std::vector<void *> ks(copies), vs(copies);
    for (int i = 0; i < copies; i++) { ks[i] = dup(kv); vs[i] = dup(kv); }
    std::vector<cuda_attn_tile> tiles;
    uint64_t read_pos = 0; // positions read once per KV head
    for (int s = 0; s < nseq; s++) {
        tiles.push_back({s, s, 1, ctx - 1 + s});
        read_pos += (uint64_t)(ctx + s) - (s && shared ? (uint64_t)pre * kvb : 0);
    }
    const double bytes = (double)read_pos * HK * D * 2 * 2;
    cuda_attn_args a;
    memset(&a, 0, sizeof a);
    a.q = dup(randn((size_t)nseq * H * D, 1.0));
    a.out = (float *)dalloc((size_t)nseq * H * D * 4);
    a.ldq = a.ldo = H * D;
    a.kv_type = CUDA_KV_F16; a.kv_block = kvb;
    a.block_tables = dup(bt); a.max_blocks = max_blocks;
    a.tiles = dup(tiles); a.n_tiles = nseq;
    a.n_head = H; a.n_kv = HK; a.head_dim = D; a.scale = 1.0f / sqrtf((float)D);
    const int nsl = cuda_attn_dec_nsl(nseq);
    const uint64_t wb = std::max(cuda_attn_work_bytes_tokens(nseq, H, D, 32), cuda_attn_dec_work_bytes(nseq, H, D, nsl));
    float *work = (float *)dalloc(wb);
    // modes: the f32 kernel split like the engine; the plan with attn_dec2_kernel (one wave,
    // then two: SPARKD_ATTN_DEC_WAVES); the round-3 attn_dec_kernel and plan (SPARKD_ATTN_DEC_OLD=1);
    // dec2 at precision fast; new and round 3 again with programmatic dependent launch on (as
    // the engine's graphs: a launch overlaps the tail of the one before); then round 6's
    // attn_dec3_kernel (SPARKD_ATT8) exact / fast / fast + PDL (32-row cascade items by warp
    // pairs, its default) / fast + PDL with cascade items of 16 rows (SPARKD_ATT8_ROWS=16), and
    // dec2 / dec3 fast + PDL timed as 10 calls back to back
    // (per call: the launch gaps of a single timed call hidden, as in the engine's graph), and
    // dec3 fast + PDL with 32-row items by two m-tiles a warp (SPARKD_ATT8_PAIR=0)
    struct bmode { const char *name; int old, waves, fast, pdl, att8, rows, reps; };
    static const bmode bm[] = {
        {"", 0, 1, 0, -1, 0, 32, 1},
        {"new (dec2, 1 wave)", 0, 1, 0, -1, 0, 32, 1},
        {"new (dec2, 2 waves)", 0, 2, 0, -1, 0, 32, 1},
        {"round 3 (dec, DEC_OLD)", 1, 1, 0, -1, 0, 32, 1},
        {"new fast (dec2, one f16)", 0, 1, 1, -1, 0, 32, 1},
        {"new, PDL", 0, 1, 0, 1, 0, 32, 1},
        {"round 3, PDL", 1, 1, 0, 1, 0, 32, 1},
        {"att8 (dec3)", 0, 1, 0, -1, 1, 0, 1},
        {"att8 fast (dec3, one f16)", 0, 1, 1, -1, 1, 0, 1},
        {"att8 fast, PDL", 0, 1, 1, 1, 1, 0, 1},
        {"att8 fast, PDL, cascade rows 16", 0, 1, 1, 1, 1, 16, 1},
        {"dec2 fast, PDL, per call of 10", 0, 1, 1, 1, 0, 32, 10},
        {"att8 fast, PDL, per call of 10", 0, 1, 1, 1, 1, 0, 10},
        {"att8 fast, PDL, no warp pairs", 0, 1, 1, 1, 4, 0, 1},
    };
    const int pdl0 = cuda_pdl_enabled();
    const int att8_0 = cuda_attn_dec_att8(-1), rows0 = cuda_attn_dec_rows(-1);
    const char *only = getenv("SPARKD_KBENCH_ATTN_MODE"); // (one mode of bm only: for ncu)
    for (int mode = 0; mode < (int)(sizeof bm / sizeof bm[0]); mode++) {
        const bmode &B = bm[mode];
        if (only && *only && atoi(only) != mode) continue;
        cuda_attn_dec_tune(B.old, B.waves);
        cuda_attn_dec_att8(B.att8);
        cuda_attn_dec_rows(B.rows);
        a.pf_fast = B.fast;
        cuda_pdl_set(B.pdl >= 0 ? B.pdl : pdl0);
        const int n_items = cuda_attn_dec_items(nseq, HK, st_sms());
        std::vector<cuda_attn_item> items(n_items);
        std::vector<int32_t> nslot(nseq);
        const int used = cuda_attn_dec_plan(tiles.data(), nseq, bt.data(), max_blocks, kvb, G, n_items, nsl, items.data(), nslot.data());
        int casc = 0;
        for (const cuda_attn_item &it : items) casc += it.n > 1;
        a.work = work;
        a.n_split = mode == 0 ? (nseq * HK < 2 * st_sms() ? 32 : 4) : 1; // (the engine's choice, CU_ATT_SPLIT_*)
        a.plan = mode ? dup(items) : NULL;
        a.plan_nslot = dup(nslot); a.plan_items = n_items; a.plan_nsl = nsl;
        int it = 0;
        double us = time_us([&] {
            for (int r = 0; r < B.reps; r++) {
                a.kv.k = ks[it % copies]; a.kv.v = vs[it % copies]; it++;
                err e3;
                cuda_attention(&a, C->st, &e3);
            }
        }, 20) / B.reps;
        cudaError_t ce = cudaGetLastError();
        const double gbs = bytes / (us * 1e3);
        fprintf(C->f, "| attention decode | ctx %d x %d seq%s | %s | %.1f | %.0f | %.0f%% | %s |\n", ctx, nseq,
                shared ? " shared prefix" : "", mode ? B.name : (a.n_split == 32 ? "old (split 32)" : "old (split 4)"), us, gbs,
                probe > 0 ? 100.0 * gbs / probe : 0.0, ce != cudaSuccess ? cudaGetErrorString(ce) : "");
        if (mode) fprintf(C->f, "#   plan: %d of %d items used, %d cascade items, %d slots for token 0; KV read once %.1f MB\n",
                          used, n_items, casc, nslot[0], bytes / 1e6);
        fflush(C->f);
    }
    cuda_attn_dec_att8(att8_0);
    cuda_attn_dec_rows(rows0);
    cuda_attn_dec_tune(-1, 1);
    cuda_pdl_set(pdl0);
    dfree_all();
}

// Prefill attention of one layer (Qwen3-8B shape: 32 / 8 heads x 128, f16 KV, blocks of 16):
// nseq sequences of n new tokens each after ctx positions of context, as the engine runs a
// prompt chunk: the old f32 kernel (tiles of cuda_attn_tile_tokens, the engine's split rule)
// against the tensor-core prefill kernel (tiles of cuda_attn_pf_tokens). TFLOP/s over the
// causal work (4 x head_dim FLOPs per query head and visible position).
void bench_attn_pf(int n, int nseq, int ctx) {
    const int H = 32, HK = 8, D = 128, G = H / HK, kvb = 16, T = n * nseq;
    const int max_blocks = (ctx + n + kvb - 1) / kvb;
    std::vector<int32_t> bt((size_t)nseq * max_blocks);
    for (size_t i = 0; i < bt.size(); i++) bt[i] = (int32_t)i;
    const uint64_t kvbytes = (uint64_t)bt.size() * HK * kvb * D * 2;
    std::vector<uint16_t> kv(kvbytes / 2);
    uint32_t x = 2463534242u;
    for (auto &h : kv) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; h = quant_f32_to_f16((float)(int)(x % 2001u - 1000u) * 1e-3f); }
    double flops = 0;
    for (int s = 0; s < nseq; s++)
        for (int i = 0; i < n; i++) flops += 4.0 * D * H * (ctx + i + 1);
    cuda_attn_args a;
    memset(&a, 0, sizeof a);
    a.q = dup(randn((size_t)T * H * D, 1.0));
    a.out = (float *)dalloc((size_t)T * H * D * 4);
    a.ldq = a.ldo = H * D;
    a.kv.k = dup(kv); a.kv.v = dup(kv);
    a.kv_type = CUDA_KV_F16; a.kv_block = kvb;
    a.block_tables = dup(bt); a.max_blocks = max_blocks;
    a.n_head = H; a.n_kv = HK; a.head_dim = D; a.scale = 1.0f / sqrtf((float)D);
    a.work = (float *)dalloc(cuda_attn_work_bytes_tokens(T, H, D, 32));
    for (int mode = 0; mode < 3; mode++) { // old, new exact, new fast (precision fast)
        const int QT = mode ? cuda_attn_pf_tokens(G) : cuda_attn_tile_tokens(G);
        std::vector<cuda_attn_tile> tiles;
        for (int s = 0; s < nseq; s++)
            for (int i = 0; i < n; i += QT) tiles.push_back({s, s * n + i, std::min(QT, n - i), ctx + i});
        a.tiles = dup(tiles); a.n_tiles = (int)tiles.size();
        a.prefill = mode > 0;
        a.pf_fast = mode == 2;
        // the engine's split rule (cuda_forward): only few tiles at long context split
        a.n_split = 1;
        const int split_tokens = (2 * st_sms() / HK + 1) * cuda_attn_tile_tokens(G); // (cuda_layout: 32 ways up to these tokens, else 4)
        if (a.n_tiles * HK < 2 * st_sms() && ctx + n > 1024) a.n_split = std::min(T <= split_tokens ? 32 : 4, (ctx + n) / 512);
        err e3 = {ERR_OK, {0}};
        const int rc = cuda_attention(&a, C->st, &e3);
        const double us = time_us([&] { err e4; cuda_attention(&a, C->st, &e4); }, 20);
        cudaError_t ce = cudaGetLastError();
        fprintf(C->f, "| attention prefill | %d seq x %d tokens after %d | %s | %.1f | %.1f | %d tiles, split %d %s%s |\n", nseq, n,
                ctx, mode == 2 ? "new fast (one f16)" : mode ? "new (tensor cores)" : "old (f32)", us, flops / (us * 1e6), a.n_tiles, a.n_split,
                rc ? e3.msg : "", ce != cudaSuccess ? cudaGetErrorString(ce) : "");
        fflush(C->f);
    }
    dfree_all();
}

#include "hfast_test.cuh" // hfast: precision fast's f16 product (test_hfast_all, bench_hfast)
#include "pf_test.cuh" // pf: round 8's hfw3 rows (pf_selftest)
#include "q4v_test.cuh" // q4v: the round-7 Q4_K batch-1 GEMV (q4v_selftest, q4v_kbench)
} // namespace

int hsmall_selftest(void *file, int quick, uint64_t seed, err *e); // hsmall_test.cu
void hsmall_kbench(void *file, double probe, err *e);
int t64_selftest(void *file, int quick, uint64_t seed, err *e); // t64_test.cu (round 8: 33..64 tokens)
int dq_selftest(void *file, int quick, uint64_t seed, err *e); void dq_kbench(void *file, double probe, err *e); // dq_test.cu (round 10)
int pe_selftest(void *file, int quick, uint64_t seed, err *e); void pe_kbench(void *file, double probe, err *e); // pe_test.cu (round 11)
void t64_kbench(void *file, double probe, err *e);
int w64_selftest(void *file, int quick, uint64_t seed, err *e); void w64_kbench(void *file, double probe, err *e); // w64_test.cu (round 9)
int wx_selftest(void *file, int quick, uint64_t seed, err *e); void wx_kbench(void *file, double probe, err *e); // wx_test.cu (round 12)
int wt_selftest(void *file, int quick, uint64_t seed, err *e); void wt_kbench(void *file, double probe, err *e); // wt_test.cu (round 13)
int pp_selftest(void *file, int quick, uint64_t seed, err *e); void pp_kbench(void *file, double probe, err *e); // pp_test.cu (round 9)
int apf_selftest(void *file, int quick, uint64_t seed, err *e); void apf_kbench(void *file, double probe, err *e); // apf_test.cu (round 10)
int fc_selftest(void *file, int quick, uint64_t seed, err *e); void fc_kbench(void *file, double probe, err *e); // fc_test.cu (round 11)
int hd_selftest(void *file, int quick, uint64_t seed, err *e); void hd_kbench(void *file, double probe, err *e); // hd_test.cu (round 11)
int g4_selftest(void *file, int quick, uint64_t seed, err *e); void g4_kbench(void *file, double probe, err *e); // g4_test.cu (round 12)
int e64_selftest(void *file, int quick, uint64_t seed, err *e); void e64_kbench(void *file, double probe, err *e); // e64_test.cu (round 12)
int a8_selftest(void *file, int quick, uint64_t seed, err *e); void a8_kbench(void *file, double probe, err *e); // a8_test.cu (round 12)
int l32_selftest(void *file, int quick, uint64_t seed, err *e); void l32_kbench(void *file, double probe, err *e); // l32_test.cu (round 13)
extern "C" int cuda_kbench(void *file, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    char line[320];
    if (cuda_device_describe(line, sizeof line, e)) return -1;
    ctx.rng.s = 12345;
    if (!st_open_stream()) return err_set(e, ERR_IO, "kbench: cannot create a stream"), -1;
    double probe = 0;
    if (cuda_probe_read_bw((size_t)2 << 30, 10, &probe, e)) return -1;
    fprintf(ctx.f, "# %s\n# read probe %.0f GB/s (2 GiB, best of 10)\n", line, probe);
    fprintf(ctx.f, "| type | N x K | T | kernel | us | GB/s | %% probe | TFLOP/s |\n|---|---|---|---|---|---|---|---|\n");
    const char *mode = getenv("SPARKD_KBENCH");
    if (mode && !strcmp(mode, "attn")) {
        // decode attention of one layer at 32K (Qwen3-8B shape, f16 KV): old kernel vs plan
        fprintf(ctx.f, "| kernel | shape | variant | us per layer | GB/s (KV read once) | %% probe | |\n|---|---|---|---|---|---|---|\n");
        bench_attn(32768, 1, 0, probe);
        bench_attn(32768, 8, 1, probe);
        bench_attn(4096, 8, 1, probe); // (the shared-prefix pass's fixed part: 32K minus 4K)
        bench_attn(32768, 8, 0, probe);
        bench_attn(4096, 1, 0, probe);
        bench_attn(4096, 64, 0, probe);
        bench_attn(512, 1, 0, probe); // short context: latency, not bandwidth
        st_close_stream();
        return 0;
    }
    if (mode && !strcmp(mode, "attnpf")) {
        // prefill attention of one layer (Qwen3-8B shape, f16 KV): old f32 kernel vs tensor cores
        fprintf(ctx.f, "| kernel | shape | variant | us per layer | TFLOP/s (causal) | |\n|---|---|---|---|---|---|\n");
        bench_attn_pf(512, 1, 0);      // pp512
        bench_attn_pf(2048, 1, 0);     // pp2048
        bench_attn_pf(128, 16, 0);     // a 2048-token chunk of 128-token prompts (64-sequence benchmark)
        bench_attn_pf(512, 1, 4096);   // a chunk after 4K of context
        bench_attn_pf(16, 1, 8192);    // a few tokens at long context (split)
        st_close_stream();
        return 0;
    }
    if (mode && !strcmp(mode, "hfast")) { // precision fast's f16 product vs the int8 mmq
        const char *pk = getenv("SPARKD_MMA_PEAK");
        for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) bench_hfast(t, pk ? atof(pk) : 642.0, probe);
        st_close_stream();
        return 0;
    }
    if (mode && !strcmp(mode, "small")) { hsmall_kbench(ctx.f, probe, e); st_close_stream(); return 0; } // gemms.cu
    if (mode && !strcmp(mode, "pf")) { const char *pk = getenv("SPARKD_MMA_PEAK"); pf_kbench(pk ? atof(pk) : 642.0); st_close_stream(); return 0; } // pf_test.cuh
    if (mode && !strcmp(mode, "elt")) {
        bench_elt();
        st_close_stream();
        return 0;
    }
    if (mode && !strcmp(mode, "t64")) { t64_kbench(ctx.f, probe, e); st_close_stream(); return 0; } // t64_test.cu
    if (mode && !strcmp(mode, "dq")) { dq_kbench(ctx.f, probe, e); st_close_stream(); return 0; } // dq_test.cu (round 10)
    if (mode && !strcmp(mode, "dqb")) { void dqb_kbench(void *, double, err *); dqb_kbench(ctx.f, probe, e); st_close_stream(); return 0; } // dqb_test.cu (round 12)
    if (mode && !strcmp(mode, "pe")) { pe_kbench(ctx.f, probe, e); st_close_stream(); return 0; } // pe_test.cu (round 11)
    if (mode && !strcmp(mode, "w64")) { w64_kbench(ctx.f, probe, e); st_close_stream(); return 0; } // w64_test.cu
    if (mode && !strcmp(mode, "wx")) { wx_kbench(ctx.f, probe, e); st_close_stream(); return 0; } // wx_test.cu (round 12)
    if (mode && !strcmp(mode, "wt")) { wt_kbench(ctx.f, probe, e); st_close_stream(); return 0; } // wt_test.cu (round 13)
    if (mode && !strcmp(mode, "pp")) { pp_kbench(ctx.f, probe, e); st_close_stream(); return 0; } // pp_test.cu (round 9)
    if (mode && !strcmp(mode, "apf")) { apf_kbench(ctx.f, probe, e); st_close_stream(); return 0; } // apf_test.cu (round 10)
    if (mode && !strcmp(mode, "fc")) { fc_kbench(ctx.f, probe, e); st_close_stream(); return 0; } // fc_test.cu (round 11)
    if (mode && !strcmp(mode, "hd")) { hd_kbench(ctx.f, probe, e); st_close_stream(); return 0; } // hd_test.cu (round 11)
    if (mode && !strcmp(mode, "g4")) { g4_kbench(ctx.f, probe, e); st_close_stream(); return 0; } // g4_test.cu (round 12)
    if (mode && !strcmp(mode, "e64")) { e64_kbench(ctx.f, probe, e); st_close_stream(); return 0; } // e64_test.cu (round 12)
    if (mode && !strcmp(mode, "a8")) { a8_kbench(ctx.f, probe, e); st_close_stream(); return 0; } // a8_test.cu (round 12)
    if (mode && !strcmp(mode, "l32")) { l32_kbench(ctx.f, probe, e); st_close_stream(); return 0; } // l32_test.cu (round 13)
    if (mode && !strcmp(mode, "prefill")) {
        // the Qwen3-8B prefill products: f16 kernel exact / fast vs the int8 mmq (fast);
        // % of peak against the mma.sync f16 peak (634 TFLOP/s measured on an H200 this
        // round; SPARKD_MMA_PEAK overrides), the int8 MMAs' own peak is about twice that
        const char *pk = getenv("SPARKD_MMA_PEAK");
        const double peak = pk ? atof(pk) : 634.0;
        fprintf(ctx.f, "| type | product | T | kernel | us | TOPS | %% f16 peak | |\n|---|---|---|---|---|---|---|---|\n");
        for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) bench_prefill(t, peak);
        st_close_stream();
        return 0;
    }
    if (mode && !strcmp(mode, "q4v")) { q4v_kbench(probe); st_close_stream(); return 0; } // gemv.cu q4v (q4v_test.cuh)
    if (mode && !strcmp(mode, "decode")) {
        // the products of a Qwen3-8B decode step (q+k+v rows, gate+up rows, down, o, head)
        // in Q8_0, Q4_K and Q6_K; "gemv" (f32 x) beside "gemv dp4a" (int8 x, precision fast)
        cuda_gemv_dp4a_set(0);
        // round 5: each product behind its producer in a graph with PDL, pre-wait work off / on
        for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) {
            bench_decode_chain(t, "q+k+v", 6144, 4096, 0);
            if (t == QUANT_Q4_K) bench_decode_chain(t, "q+k", 5120, 4096, 0); // Q4_K_M's layers with a Q6_K v
            bench_decode_chain(t, "o", 4096, 4096, 0);
            bench_decode_chain(t, "v", 1024, 4096, 0);
            bench_decode_chain(t, "v", 1024, 4096, 0, 1);
            bench_decode_chain(t, "gate+up", 12288, 4096, 1);
            bench_decode_chain(t, "down", 4096, 12288, 0);
            if (t == QUANT_Q6_K) bench_decode_chain(t, "head", 151936, 4096, 0); // Q4_K_M's output
        }
        for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) {
            bench_matmul(t, 6144, 4096, probe, true);
            bench_matmul(t, 4096, 4096, probe, true);
            bench_matmul(t, 24576, 4096, probe, true);
            bench_matmul(t, 4096, 12288, probe, true);
            bench_matmul(t, 151936, 4096, probe, true);
        }
        cudaStreamDestroy(ctx.st);
        cudaEventDestroy(ctx.e0);
        cudaEventDestroy(ctx.e1);
        return 0;
    }
    const uint32_t types[] = {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K, QUANT_Q5_K, QUANT_Q4_0, QUANT_MXFP4, QUANT_F16, QUANT_BF16};
    for (uint32_t t : types) bench_matmul(t, 4096, 4096, probe);
    bench_matmul(QUANT_Q8_0, 12288, 4096, probe);
    bench_matmul(QUANT_Q8_0, 4096, 12288, probe);
    bench_matmul(QUANT_Q4_K, 12288, 4096, probe);
    bench_matmul(QUANT_Q4_K, 1024, 4096, probe);
    bench_matmul(QUANT_Q6_K, 151936, 4096, probe);
    st_close_stream();
    return 0;
}

extern "C" int cuda_selftest(void *file, int quick, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, quick, e);
    C = &ctx;
    char line[320];
    if (cuda_device_describe(line, sizeof line, e)) return -1;
    ctx.rng.s = st_seed(0);
    fprintf(ctx.f, "# %s\n# seed %llu (SPARKD_SELFTEST_SEED repeats it)\n", line, (unsigned long long)ctx.rng.s);
    if (!st_open_stream()) return err_set(e, ERR_IO, "selftest: cannot create a stream"), -1;
    {
        // the kernels run as the engine launches them: with programmatic dependent launch
        // where the device has it (SPARKD_NO_PDL=1: without)
        int major = 0;
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
        cuda_pdl_set(major >= 9 && !getenv("SPARKD_NO_PDL"));
        fprintf(ctx.f, "# programmatic dependent launch %s\n", cuda_pdl_enabled() ? "on" : "off");
    }

    cuda_gemv_dp4a_set(0); // exact products stay exact here whatever SPARKD_GEMV_DP4A says
    cuda_hfast_set(0); // the kernels' own paths below; test_hfast_all turns hfast on for its rows
    for (uint32_t t : kTypes) { test_dequant(t, 7, 256); test_dequant(t, 129, 4096); dfree_all(); }
    for (uint32_t t : kTypes) {
        test_matmul(t, 1, 256, 1, CUDA_MM_AUTO, 1, 0, 0, 0);
        test_matmul(t, 7, 512, 1, CUDA_MM_AUTO, 1, 1, 0, 0);
        test_matmul(t, 4097, 4096, 1, CUDA_MM_AUTO, 1, 0, 20, 0);
        dfree_all();
        if (t == QUANT_F32) { test_matmul(t, 257, 512, 7, CUDA_MM_AUTO, 1, 0, 0, 0); dfree_all(); continue; }
        test_matmul(t, 257, 512, 1, CUDA_MM_FORCE_GEMM, 1, 0, 0, 0);
        test_matmul(t, 257, 512, 2, CUDA_MM_AUTO, 1, 0, 0, 0);
        test_matmul(t, 257, 512, 7, CUDA_MM_AUTO, 1, 1, 0, 0);
        test_matmul(t, 257, 512, 67, CUDA_MM_AUTO, 1, 0, 0, 0);
        test_matmul(t, 257, 512, 67, CUDA_MM_AUTO, 0, 0, 0, 0);
        dfree_all();
        if (!quick && (t == QUANT_Q8_0 || t == QUANT_Q4_K || t == QUANT_Q6_K || t == QUANT_F16)) {
            test_matmul(t, 4096, 4096, 512, CUDA_MM_AUTO, 1, 0, 10, 8);
            test_matmul(t, 4096, 4096, 512, CUDA_MM_AUTO, 0, 0, 10, 8);
            test_matmul(t, 4096, 4096, 8, CUDA_MM_AUTO, 1, 0, 20, 0);
            test_matmul(t, 4096, 4096, 64, CUDA_MM_AUTO, 1, 0, 20, 0);
            test_matmul(t, 129, 1024, 4097, CUDA_MM_AUTO, 1, 0, 5, 64);
            dfree_all();
        }
    }
    test_matmul_multi();
    // GEMV warps that run three iterations and more (long rows), every register slot reused
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K, QUANT_Q5_0, QUANT_F16, QUANT_MXFP4}) {
        test_matmul(t, 129, 12288, 1, CUDA_MM_AUTO, 1, 1, 0, 0);
        dfree_all();
    }
    for (int wk : {1, 2, 4, 8}) { // every K split on an odd shape
        cuda_gemv_wk_set(wk);
        test_matmul(QUANT_Q4_K, 67, 2048, 1, CUDA_MM_AUTO, 1, 0, 0, 0);
        test_matmul(QUANT_Q8_0, 67, 1024, 1, CUDA_MM_AUTO, 1, 0, 0, 0);
        dfree_all();
    }
    cuda_gemv_wk_set(0);
    // the int8 (dp4a) GEMV of precision = fast: rows and K not multiples of a CTA's work
    // (16 or 32 rows, 512 / 1024 elements per warp iteration), every K split, accumulate
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_0, QUANT_Q4_K, QUANT_Q6_K}) {
        const int Kodd = t == QUANT_Q8_0 || t == QUANT_Q4_0 ? 2112 : 2304;
        test_gemv_dq(t, 1, 256, 0, 0);
        test_gemv_dq(t, 67, Kodd, 0, 0);
        test_gemv_dq(t, 67, Kodd, 1, 1);
        test_gemv_dq(t, 1000, Kodd, 0, 2);
        test_gemv_dq(t, 257, 4096, 0, 4);
        test_gemv_dq(t, 129, 12288, 1, 8);
        test_gemv_dq(t, 4097, 4096, 0, 0);
        test_gemv_dq_pair(t, t == QUANT_Q8_0 ? 384 : 1280, t == QUANT_Q6_K ? 512 : 1024, 259, t == QUANT_Q6_K ? CUDA_ACT_GELU_TANH : CUDA_ACT_SILU);
        test_gemv_dq_multi(t);
    }
    // the persistent int8 kernel (gemv4) forced for every product: a tiny and an odd shape,
    // accumulate, three matrices, the paired gate/up (+ down on its output), and every
    // Qwen3-8B product shape (q+k+v 6144, o 4096, gate+up 2 x 12288, down K 12288; the
    // 151936-row head differs from gate+up only in quads per warp), K split over 2 / 4
    // warps per quad (the label's wk); then the default choice (gemv4 with the fewest warps
    // per quad that keep 3/4 of the resident warps busy, else the old kernel) on Qwen3-8B shapes
    cuda_gemv_q4v_set(0); // (Q4_K: gemv4 itself here; q4v's rows: q4v_selftest)
    cuda_gemv4_set(2);
    g_gemv_tag = " gemv4";
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_0, QUANT_Q4_K, QUANT_Q6_K}) {
        const int Kodd = t == QUANT_Q8_0 || t == QUANT_Q4_0 ? 2112 : 2304;
        test_gemv_dq(t, 1, 256, 0, 0);
        test_gemv_dq(t, 67, Kodd, 1, 0);
        test_gemv_dq(t, 1000, Kodd, 0, 0);
        test_gemv_dq(t, 1000, Kodd, 0, 2); // K split over 2 and 4 warps per quad
        test_gemv_dq(t, 257, 4096, 1, 4);
        test_gemv_dq(t, 129, 12288, 0, 2);
        test_gemv_dq_multi(t);
        cuda_gemv_wk_set(4);
        test_gemv_dq_multi(t);
        cuda_gemv_wk_set(0);
        test_gemv_dq_pair(t, t == QUANT_Q8_0 ? 384 : 1280, t == QUANT_Q6_K ? 512 : 1024, 259, t == QUANT_Q6_K ? CUDA_ACT_GELU_TANH : CUDA_ACT_SILU);
        cuda_gemv_wk_set(2);
        test_gemv_dq_pair(t, 1280, 2304, 67, CUDA_ACT_SILU);
        cuda_gemv_wk_set(0);
        if (quick) continue;
        test_gemv_dq(t, 6144, 4096, 0, 0);
        test_gemv_dq(t, 4096, 4096, 1, 0);
        test_gemv_dq(t, 4096, 12288, 0, 0);
        test_gemv_dq_pair(t, 12288, 4096, 4096, CUDA_ACT_SILU);
    }
    cuda_gemv4_set(1);
    g_gemv_tag = " auto";
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_0, QUANT_Q4_K, QUANT_Q6_K}) {
        test_gemv_dq(t, 24576, 4096, 0, 0);
        test_gemv_dq(t, 4096, 4096, 0, 0);
        test_gemv_dq(t, 6144, 4096, 1, 0); // q+k+v (with SPARKD_GEMV4_BAL=1: KS 4 on an H200)
        if (!quick) test_gemv_dq(t, 4096, 12288, 1, 0);
    }
    g_gemv_tag = "";
    cuda_gemv4_set(-1);
    cuda_gemv_q4v_set(-1);
    q4v_selftest(quick); // round 7: gemv.cu q4v (q4v_test.cuh)
    // round 5: the round-5 int8 kernels (PRE=1 and 3) bit-identical to the round-4 kernels on
    // every int8 type and kernel shape: the old per-32-rows kernel (wk 1, 2, with
    // prefetched iterations at K 12288), gemv4 at KS 1 / 2 / 4, three matrices, the paired
    // gate/up, odd K (a partial pass of quantize8), the default choice on Qwen3-8B shapes
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_0, QUANT_Q4_K, QUANT_Q6_K}) {
        const int Kodd = t == QUANT_Q8_0 || t == QUANT_Q4_0 ? 2112 : 2304;
        test_gemv_pre(t, 67, Kodd, 0, 1, 1, 0);
        test_gemv_pre(t, 257, 12288, 0, 1, 1, 0);
        test_gemv_pre(t, 1000, 4096, 0, 2, 1, 0);
        test_gemv_pre(t, 1280, 4096, 0, 0, 1, 1);
        test_gemv_pre(t, 1000, Kodd, 2, 1, 1, 0);
        test_gemv_pre(t, 1000, Kodd, 2, 2, 1, 0);
        test_gemv_pre(t, 257, 4096, 2, 4, 1, 0);
        test_gemv_pre(t, 129, 12288, 2, 2, 3, 0);
        test_gemv_pre(t, 1280, Kodd, 2, 1, 1, 1);
        test_gemv_pre(t, 1280, 2304, 2, 2, 1, 1);
        test_gemv_pre(t, 4096, 4096, 1, 0, 1, 0);
        if (quick) continue;
        test_gemv_pre(t, 4096, 12288, 1, 0, 1, 0);
        test_gemv_pre(t, 12288, 4096, 1, 0, 1, 1);
    }
    test_gemv_pre(QUANT_Q4_K, 4096, 4096, 1, 0, 1, 0, 1);
    // the int8 tensor-core product of precision = fast (T > 1; Q8_0, Q4_K, Q6_K): tokens
    // 2/7/64/65/512/1000, rows not multiples of 128, odd chunk counts, two matrices with
    // padded ldy, accumulate, split K
    cuda_gemms_set(0, -1); // (T <= 32 would take gemms.cu: its own rows follow, hsmall_test.cu)
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) {
        const int Kodd = t == QUANT_Q8_0 ? 2112 : 2304;
        test_mmq(t, 257, Kodd, 2, 0, 0, 0, 0);
        test_mmq(t, 257, Kodd, 7, 0, 1, 0, 0);
        test_mmq(t, 257, Kodd, 64, 67, 0, 1, 0);
        test_mmq(t, 129, Kodd, 65, 0, 1, 1, 0);
        test_mmq(t, 1000, 512, 512, 0, 0, 0, 0);
        test_mmq(t, 67, Kodd, 1000, 131, 0, 0, 0);
        if (!quick) test_mmq(t, 4096, 4096, 512, 0, 0, 0, 10);
    }
    // the round-4 int8 kernel too (SPARKD_MMQ_OLD's A/B), on the split-K and padded cases
    cuda_mmq_old_set(1);
    g_mmq_tag = " old kernel";
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) {
        const int Kodd = t == QUANT_Q8_0 ? 2112 : 2304;
        test_mmq(t, 257, Kodd, 64, 67, 0, 1, 0);
        test_mmq(t, 67, Kodd, 1000, 131, 0, 0, 0);
    }
    g_mmq_tag = "";
    cuda_mmq_old_set(-1);
    // mmq3_kernel below its default threshold (64 tokens) too, where the old kernel runs
    cuda_mmq3_min_t_set(2);
    g_mmq_tag = " mmq3";
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) {
        const int Kodd = t == QUANT_Q8_0 ? 2112 : 2304;
        test_mmq(t, 257, Kodd, 2, 0, 0, 0, 0);
        test_mmq(t, 257, Kodd, 7, 0, 1, 0, 0);
        test_mmq(t, 129, Kodd, 40, 0, 1, 1, 0);
    }
    g_mmq_tag = "";
    cuda_mmq3_min_t_set(-1);
    cuda_gemms_set(-1, -1);
    ctx.fails += hsmall_selftest(ctx.f, quick, ctx.rng.next(), e); // gemms.cu (hsmall_test.cu)
    test_gemv_pair(QUANT_Q8_0, 384, 4096, CUDA_ACT_SILU);
    test_gemv_pair(QUANT_Q4_K, 1152, 1024, CUDA_ACT_SILU);
    test_gemv_pair(QUANT_Q6_K, 128, 512, CUDA_ACT_GELU_TANH);
    test_gemv_pair(QUANT_F16, 256, 768, CUDA_ACT_SILU);
    test_gemv_pair(QUANT_Q5_1, 384, 2048, CUDA_ACT_GELU_TANH);
    ctx.fails += t64_selftest(ctx.f, quick, ctx.rng.next(), e); // 33..64 tokens (t64_test.cu)
    ctx.fails += dq_selftest(ctx.f, quick, ctx.rng.next(), e); // round 10 dq: the batch-1 attention chain in one launch (dq_test.cu)
    { int dqb_selftest(void *, int, uint64_t, err *); ctx.fails += dqb_selftest(ctx.f, quick, ctx.rng.next(), e); } // round 12 dqb: the batch-1 attention chain on dqc_kernel, SPARKD_DQB (dqb_test.cu)
    ctx.fails += pe_selftest(ctx.f, quick, ctx.rng.next(), e); // round 11 pe: small-CTA row producers at T > 64, bitwise vs SPARKD_PE=0 (pe_test.cu)
    ctx.fails += w64_selftest(ctx.f, quick, ctx.rng.next(), e); // 33..64 tokens on wgmma (w64_test.cu, round 9)
    ctx.fails += wx_selftest(ctx.f, quick, ctx.rng.next(), e); // round 12 wx: the 33..64-token products' weights by TMA tensor copies, SPARKD_WX (wx_test.cu)
    ctx.fails += wt_selftest(ctx.f, quick, ctx.rng.next(), e); // round 13 wt: wx's Q8_0 product without the step's CTA barrier, SPARKD_WT, bitwise vs 0 (wt_test.cu)
    ctx.fails += hd_selftest(ctx.f, quick, ctx.rng.next(), e); // round 11 hd: the head's split-K room, sampling's lean first pass (hd_test.cu)
    ctx.fails += e64_selftest(ctx.f, quick, ctx.rng.next(), e); // round 12 e64: row producers at 33..64 rows, bitwise vs SPARKD_E64=0 (e64_test.cu)
    ctx.fails += a8_selftest(ctx.f, quick, ctx.rng.next(), e); // round 12 a8: the lean decode attention for 2..8 sequences, SPARKD_A8 (a8_test.cu)
    ctx.fails += l32_selftest(ctx.f, quick, ctx.rng.next(), e); // round 13 l32: batch-1 decode attention, dynamic steps + folded combine, SPARKD_L32 (l32_test.cu)
    test_resid_norm(1, 640, 0, 0, 0);
    test_resid_norm(7, 640, 1, 1, 0);
    test_resid_norm(4097, 1024, 1, 0, 0);
    test_resid_norm(9, 4096, 1, 1, 1);
    test_resid_norm(3, 100, 1, 0, 0); // dim not a multiple of 128: f32 output only
    dfree_all();
    ctx.fails += fz_selftest(ctx.f, quick, ctx.rng.next(), e); // round 8 fz: split-K partials summed by the consumer (fz_test.cu)
    ctx.fails += pp_selftest(ctx.f, quick, ctx.rng.next(), e); // round 9 pp: the paired gate+up, hfw3's deferred partials (pp_test.cu)
    ctx.fails += apf_selftest(ctx.f, quick, ctx.rng.next(), e); // round 10 apf: the fast prefill attention on 8-warp CTAs (apf_test.cu)
    ctx.fails += fc_selftest(ctx.f, quick, ctx.rng.next(), e); // round 11 fc: hfw3's ring depth, SPARKD_FC (fc_test.cu)
    ctx.fails += g4_selftest(ctx.f, quick, ctx.rng.next(), e); // round 12 g4: the activation at 33..64 tokens, bitwise vs SPARKD_G4=0 (g4_test.cu)
    test_act(1, 768, CUDA_ACT_SILU);
    test_act(7, 2048, CUDA_ACT_GELU_TANH);
    test_act(4097, 1024, CUDA_ACT_SILU);
    dfree_all();
    test_elt_all(quick);
    for (int kv = CUDA_KV_F32; kv <= CUDA_KV_FP8; kv++) { test_qkv(7, 8, 2, 128, 128, 1, 0, kv, 1, 0); dfree_all(); }
    test_qkv(1, 4, 1, 256, 256, 1, 2, CUDA_KV_F16, 1, 0);
    test_qkv(7, 4, 2, 64, 64, 0, 1, CUDA_KV_F32, 0, 1);
    test_qkv(67, 4, 2, 64, 32, 0, 3, CUDA_KV_BF16, 0, 0);
    test_qkv(4097, 8, 2, 128, 128, 1, 0, CUDA_KV_F16, 1, 1);
    dfree_all();
    test_softcap(3, 1000);
    dfree_all();
    {
        attn_case c;
        // prefill: GQA, one sequence with a cached prefix, then odd tile counts
        for (int kv = CUDA_KV_F32; kv <= CUDA_KV_FP8; kv++) {
            c = {8, 2, 128, kv, 0, 0, 1, {7}, {0}, 0};
            test_attn(c);
            dfree_all();
        }
        c = {8, 2, 128, CUDA_KV_F16, 0, 0, 1, {67, 1, 33}, {100, 0, 5}, 0}; test_attn(c);
        c = {4, 1, 256, CUDA_KV_F32, 16, 0, 1, {67}, {40}, 0}; test_attn(c);           // gemma-like, window
        c = {8, 8, 64, CUDA_KV_BF16, 0, 1, 1, {45}, {3}, 0}; test_attn(c);              // MHA, sinks
        c = {64, 1, 64, CUDA_KV_F16, 0, 0, 1, {3}, {10}, 0}; test_attn(c);              // 64 heads per KV head
        dfree_all();
        // decode: one token per sequence, contexts 1..4097, split over the context
        c = {32, 8, 128, CUDA_KV_F16, 0, 0, 1, {1, 1, 1, 1, 1}, {0, 6, 32, 999, 4096}, 0}; test_attn(c);
        c = {32, 8, 128, CUDA_KV_F16, 0, 0, 8, {1, 1, 1, 1, 1}, {0, 6, 32, 999, 4096}, 0}; test_attn(c);
        c = {32, 8, 128, CUDA_KV_Q8, 0, 1, 8, {1, 1, 1}, {4096, 77, 2}, 0}; test_attn(c);
        c = {4, 1, 256, CUDA_KV_FP8, 512, 0, 4, {1, 1}, {4096, 300}, 0}; test_attn(c);
        dfree_all();
        // output in P64 order (decode: straight into the Wo GEMV's input), split and not
        c = {32, 8, 128, CUDA_KV_F16, 0, 0, 32, {1, 1, 1}, {0, 999, 4096}, 0, 1}; test_attn(c);
        c = {8, 2, 128, CUDA_KV_F32, 0, 0, 1, {7, 1}, {3, 40}, 0, 1}; test_attn(c);
        dfree_all();
        if (!quick) { c = {32, 8, 128, CUDA_KV_F16, 0, 0, 1, {4097}, {0}, 12}; test_attn(c); dfree_all(); }
        // (twice: attn_dec2_kernel, "attention dec", then attn_dec3_kernel, "attention dec3"; then dec3's control)
        const int att8_was = cuda_attn_dec_att8(-1);
        for (int att8 = 0; att8 < 3; att8++) {
        cuda_attn_dec_att8(att8);
        if (att8 == 2) { // (dec3: 32-row cascade items by two m-tiles a warp, 16-row items, warp pairs; then the control)
            cuda_attn_dec_att8(4);
            const int rows_was = cuda_attn_dec_rows(32);
            c = {32, 8, 128, CUDA_KV_F16, 0, 0, 1, {1, 1, 1, 1, 1, 1, 1, 1}, {1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007},
                 0, 0, 1, {0, 63, 63, 63, 63, 63, 63, 63}}; test_attn(c);
            c.fast = 1; test_attn(c);
            c = {32, 8, 128, CUDA_KV_F16, 0, 1, 1, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {1500, 1600, 1700, 1800, 1900, 2000,
                 2100, 2200, 2300, 2400, 2500, 2600}, 0, 0, 1, {0, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90}}; test_attn(c);
            c = {64, 8, 64, CUDA_KV_F16, 128, 1, 1, {1, 1, 1, 1, 1}, {3000, 3001, 3010, 2999, 7}, 0, 1, 1,
                 {0, 187, 187, 187, 0}}; test_attn(c);
            cuda_attn_dec_att8(1);
            cuda_attn_dec_rows(16); // (SPARKD_ATT8_ROWS=16)
            c = {32, 8, 128, CUDA_KV_F16, 0, 0, 1, {1, 1, 1, 1, 1, 1, 1, 1}, {1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007},
                 0, 0, 1, {0, 63, 63, 63, 63, 63, 63, 63}}; c.fast = 1; test_attn(c);
            cuda_attn_dec_rows(32);
            dfree_all();
            cuda_attn_dec_att8(3); // (warp pairs for the items of more than 16 rows, SPARKD_ATT8_PAIR=1)
            c = {32, 8, 128, CUDA_KV_F16, 0, 0, 1, {1, 1, 1, 1, 1, 1, 1, 1}, {1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007},
                 0, 0, 1, {0, 63, 63, 63, 63, 63, 63, 63}}; c.fast = 1; test_attn(c);
            c = {64, 8, 64, CUDA_KV_F16, 128, 1, 1, {1, 1, 1, 1, 1}, {3000, 3001, 3010, 2999, 7}, 0, 1, 1,
                 {0, 187, 187, 187, 0}}; c.fast = 1; test_attn(c);
            c = {32, 8, 128, CUDA_KV_F16, 0, 1, 1, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {1500, 1600, 1700, 1800, 1900, 2000,
                 2100, 2200, 2300, 2400, 2500, 2600}, 0, 0, 1, {0, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90}}; c.fast = 1; test_attn(c);
            dfree_all();
            cuda_attn_dec_rows(rows_was);
            cuda_attn_dec_att8(2);
            c = {32, 8, 128, CUDA_KV_F16, 0, 0, 1, {1, 1}, {999, 4999}, 0, 0, 1}; test_attn(c); dfree_all(); break;
        }
        // decode plan on the tensor cores (f16 KV; the other KV types keep the kernel above):
        // contexts 1, 31, 32, 33, 1000, 5000 (pos0 + 1), P64 out, gpt-oss shape (64/8 heads,
        // d64) with sinks, a window layer, then shared prefixes: fully shared with the run
        // ending mid-block, partially shared with different suffix lengths, two groups
        c = {32, 8, 128, CUDA_KV_F16, 0, 0, 1, {1, 1, 1, 1, 1, 1}, {0, 30, 31, 32, 999, 4999}, 0, 0, 1}; test_attn(c);
        c = {32, 8, 128, CUDA_KV_F16, 0, 0, 1, {1}, {4999}, 0, 1, 1}; test_attn(c);
        c = {32, 8, 128, CUDA_KV_F16, 0, 0, 1, {1, 1, 1}, {0, 999, 4096}, 0, 1, 1}; test_attn(c);
        c = {64, 8, 64, CUDA_KV_F16, 0, 1, 1, {1, 1, 1}, {0, 200, 4999}, 0, 0, 1}; test_attn(c);
        c = {64, 8, 64, CUDA_KV_F16, 128, 1, 1, {1, 1, 1}, {0, 200, 4999}, 0, 0, 1}; test_attn(c);
        c = {16, 2, 64, CUDA_KV_F16, 0, 0, 1, {1, 1, 1, 1}, {2000, 2100, 2100, 40}, 0, 0, 1, {0, 125, 125, 3}}; test_attn(c);
        dfree_all();
        c = {32, 8, 128, CUDA_KV_F16, 0, 0, 1, {1, 1, 1, 1, 1, 1, 1, 1}, {1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007},
             0, 0, 1, {0, 63, 63, 63, 63, 63, 63, 63}}; test_attn(c);
        c = {32, 8, 128, CUDA_KV_F16, 0, 0, 1, {1, 1, 1, 1, 1}, {4999, 3000, 2047, 5100, 100}, 0, 0, 1,
             {0, 100, 127, 200, 3}}; test_attn(c);
        c = {64, 8, 64, CUDA_KV_F16, 128, 1, 1, {1, 1, 1, 1, 1}, {3000, 3001, 3010, 2999, 7}, 0, 1, 1,
             {0, 187, 187, 187, 0}}; test_attn(c);
        c = {32, 8, 128, CUDA_KV_F16, 0, 1, 1, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {1500, 1600, 1700, 1800, 1900, 2000,
             2100, 2200, 2300, 2400, 2500, 2600}, 0, 0, 1, {0, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90, 90}}; test_attn(c);
        dfree_all();
        // precision fast (one f16 for Q and P): b1 long, a shared prefix with sinks and a window (d64), P64
        c = {32, 8, 128, CUDA_KV_F16, 0, 0, 1, {1, 1, 1}, {0, 999, 4999}, 0, 1, 1}; c.fast = 1; test_attn(c);
        c = {64, 8, 64, CUDA_KV_F16, 128, 1, 1, {1, 1, 1, 1, 1}, {3000, 3001, 3010, 2999, 7}, 0, 1, 1,
             {0, 187, 187, 187, 0}}; c.fast = 1; test_attn(c);
        c = {32, 8, 128, CUDA_KV_F16, 0, 0, 1, {1, 1, 1, 1, 1, 1, 1, 1}, {1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007},
             0, 0, 1, {0, 63, 63, 63, 63, 63, 63, 63}}; c.fast = 1; test_attn(c);
        dfree_all();
        if (!quick) {
            c = {32, 8, 128, CUDA_KV_F16, 0, 0, 1, {1}, {32767}, 0, 1, 1}; test_attn(c); dfree_all();
            c = {32, 8, 128, CUDA_KV_F16, 0, 0, 1, {1, 1, 1, 1, 1, 1, 1, 1}, {32767, 32768, 32769, 32770, 32790, 32800,
                 32900, 33000}, 0, 1, 1, {0, 2047, 2047, 2047, 2047, 2047, 2047, 2047}}; test_attn(c); dfree_all();
        }
        }
        cuda_attn_dec_att8(att8_was);
    }
    {
        // prefill on the tensor cores (f16 KV): Qwen3-8B shape (32/8 heads, d128) at chunk
        // sizes 1..600 (multiples of 16 and not) after 0 / 37 / 1000 positions of context,
        // several sequences of different lengths in one step (decode tokens among them),
        // G = 1, 8, 64, head_dim 64 and 128, sinks, a window, P64 output, a split context
        attn_case c;
        c = pf_case(32, 8, 128, 0, 0, 1, {1}, {0}, 0); test_attn(c);
        c = pf_case(32, 8, 128, 0, 0, 1, {7}, {37}, 0); test_attn(c);
        c = pf_case(32, 8, 128, 0, 0, 1, {16}, {0}, 0); test_attn(c);
        c = pf_case(32, 8, 128, 0, 0, 1, {17}, {1000}, 0); test_attn(c);
        c = pf_case(32, 8, 128, 0, 0, 1, {63}, {37}, 0); test_attn(c);
        c = pf_case(32, 8, 128, 0, 0, 1, {512}, {0}, 40); test_attn(c);
        c = pf_case(32, 8, 128, 0, 0, 1, {600}, {1000}, 40); test_attn(c);
        dfree_all();
        c = pf_case(32, 8, 128, 0, 0, 1, {100, 1, 33, 257, 1}, {0, 1000, 37, 5, 0}, 24); test_attn(c);
        c = pf_case(32, 8, 128, 0, 0, 1, {128, 128, 128, 128, 128, 128, 128, 128}, {0, 0, 0, 0, 0, 0, 0, 0}, 12); test_attn(c);
        c = pf_case(8, 8, 128, 0, 0, 1, {130, 64, 65}, {1000, 0, 37}, 24); test_attn(c);       // G = 1
        c = pf_case(8, 8, 64, 0, 0, 1, {600}, {0}, 30); test_attn(c);                          // G = 1, d64
        c = pf_case(64, 8, 64, 0, 1, 1, {45, 200, 1}, {0, 37, 300}, 24); test_attn(c);         // gpt-oss shape, sinks
        c = pf_case(64, 8, 64, 128, 1, 1, {45, 300}, {0, 1000}, 24); test_attn(c);             // + window 128
        c = pf_case(32, 8, 128, 256, 0, 1, {300}, {700}, 24); test_attn(c);                    // window 256, d128
        c = pf_case(64, 1, 64, 0, 0, 1, {3, 5}, {10, 0}, 0); test_attn(c);                     // G = 64
        c = pf_case(16, 4, 128, 0, 0, 1, {7, 1}, {3, 40}, 0, 1); test_attn(c);                 // P64 out
        dfree_all();
        c = pf_case(32, 8, 128, 0, 0, 4, {20, 5}, {3000, 1200}, 0); test_attn(c);              // split 4 (long context)
        c = pf_case(64, 8, 64, 0, 1, 8, {9, 1}, {2000, 77}, 0); test_attn(c);                  // split 8, sinks
        c = pf_case(32, 8, 128, 0, 0, 1, {512, 37}, {0, 1000}, 40, 0, 1); test_attn(c);       // precision fast
        c = pf_case(64, 8, 64, 128, 1, 1, {200}, {300}, 24, 0, 1); test_attn(c);
        dfree_all();
    }
    test_sample(1000, 0);
    test_sample(151936, 0);
    test_sample(1000, 1);
    test_sample(151936, 0, 8.0f);
    test_sample(1000, 1, 8.0f);
    test_sample(151936, 1, 16.0f);
    test_sample(4096, 0); // every token a candidate, 2048 per slice: past the slice cap, the full row
    if (!quick) for (int i = 0; i < 3; i++) test_sample(151936, 0); // fresh draws: the tail bound above
    dfree_all();
    test_hfast_all(quick);
    pf_selftest(quick);
    cuda_hfast_set(-1);
    print_table();
    fprintf(ctx.f, "\n%zu checks, %d failed\n", ctx.rows.size(), ctx.fails);
    st_close_stream();
    if (ctx.cuda_error) return -1;
    return ctx.fails;
}
