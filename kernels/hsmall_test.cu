// hsmall_test.cu — the small-batch f16 product (gemms.cu) against a CPU reference
// (hsmall_selftest, called by cuda_selftest) and its kernel bench (hsmall_kbench,
// SPARKD_KBENCH=small).
//
// Reference: the weights dequantized by appliance/format/quant.c, the input in f32, sums in
// float64 (dequantize-then-f32); nothing shared with the kernel. Inputs are fresh random
// numbers (the seed is cuda_selftest's + 1), row counts are not multiples of the kernel's
// 128-row tile, outputs are poisoned with NaN, a check fails if any output is non-finite or
// if the product did not run on gemms.cu (its launch counter). The error is the largest over
// tokens of ||y_t - ref_t|| / ||ref_t||: the kernel rounds each weight and each input element
// to f16 once (relative ~3e-4 RMS each, uncorrelated), so the expected error is ~4e-4 and the
// tolerance 2e-3. The control row computes the same error against a reference whose input has
// neighbouring elements swapped (what a wrong element order would give): it must exceed the
// tolerance, or the check could not see such a bug.
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

extern "C" void cuda_gemms_force_ks(int ks); // gemms.cu (benches)
extern "C" int cuda_gemms_tile_rows(int T);   // gemms.cu: rows of a CTA at T tokens
extern "C" void cuda_gemms_wide_set(int on);  // gemms.cu: 0 = CTAs of 8 warps at T > 16 too
extern "C" void cuda_gemms_cluster_set(int on); // gemms.cu: 0 = K-split partials through ws + reduce kernel
extern "C" void cuda_gemms2_set(int on);      // gemms.cu: 1/0 = gemms2_kernel (SPARKD_HS2) where it fits / never
extern "C" long cuda_gemms2_launches(void);   // gemms.cu: gemms2_kernel launches so far
extern "C" void cuda_gemms2_max_t_set(int t); // gemms.cu: gemms2's top T (<= 64; -1: SPARKD_HS2_MAX_T)
extern "C" void cuda_gemms2_stages_set(int s); // gemms.cu: gemms2's ring stages (0: as many as fit)
extern "C" void cuda_gemms2_mt_set(int mt);   // gemms.cu: gemms2's m16 tiles a warp at T 17..32 (-1: SPARKD_HS2_MT)
extern "C" void cuda_gemms2_min_rows_set(int rows); // gemms.cu: gemms2 only from this many rows (0: all)
extern "C" void cuda_gemms2_2cta_set(int on); // gemms.cu: two CTAs an SM (-1: SPARKD_HS2_2CTA)

namespace {

struct ctx_t : st_ctx {};
ctx_t *C;

void report(const char *what, const char *shape, double err, double tol, double us, bool ok, const char *note = "") {
    ok = ok && !isnan(err);
    if (!ok) C->fails++;
    fprintf(C->f, "%s - %s %s: err %.3g (tol %.3g) %.1f us%s%s\n", ok ? "ok" : "not ok", what, shape, err, tol, us,
            note[0] ? " " : "", note);
    fflush(C->f);
}

// The generators of selftest_util.cuh (shared with selftest.cu).
std::vector<uint8_t> gen_rows(uint32_t type, int rows, int cols) { return st_gen_rows(type, rows, cols); }
std::vector<float> ref_dequant(uint32_t type, const std::vector<uint8_t> &raw, int rows, int cols) { return st_ref_dequant(type, raw, rows, cols); }
bool make_weight(cuda_weight *w, uint32_t type, const std::vector<uint8_t> &raw, int rows, int cols) { return st_make_weight(w, type, raw, rows, cols); }
std::vector<float> randn(size_t n, double scale) { return st_randn(n, scale); }

// Largest over tokens of ||y_t - ref_t|| / ||ref_t||, ref = W x_t (+ y0); swap: the
// reference's input with elements 2i and 2i + 1 exchanged (the control).
double tok_err(const std::vector<float> &y, int ld, const std::vector<float> &W, int N, int K,
               const std::vector<float> &x, int T, const std::vector<float> *y0, bool swap, int *fin) {
    double worst = 0;
    *fin = 1;
    std::vector<double> xt(K);
    for (int t = 0; t < T; t++) {
        for (int k = 0; k < K; k++) xt[k] = x[(size_t)t * K + (swap ? k ^ 1 : k)];
        double num = 0, den = 0;
        for (int n = 0; n < N; n++) {
            const float *wr = W.data() + (size_t)n * K;
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)wr[k] * xt[k];
            if (y0) s += (*y0)[(size_t)t * ld + n];
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

const char *g_cl_tag = ""; // " cluster" / " last-cta" / " 8-warp" while the other modes run
int g_kb_all = 0;          // kbench: SPARKD_KBENCH_ALL=1 adds the round-6 modes and forced splits
int g_want2 = 0;           // 1: the product must run on gemms2_kernel, 0: must not, -1: either

void test_gemms(uint32_t type, int N, int K, int T, int N2, int accumulate, int splitk, bool control,
                bool expect = true, double tol = 2e-3) {
    const int nm = N2 > 0 ? 2 : 1, Ns[2] = {N, N2}, ld[2] = {N, N2 + 3};
    cuda_weight w[2];
    std::vector<float> W[2];
    for (int i = 0; i < nm; i++) {
        auto raw = gen_rows(type, Ns[i], K);
        W[i] = ref_dequant(type, raw, Ns[i], K);
        if (!make_weight(&w[i], type, raw, Ns[i], K)) return;
    }
    auto x = randn((size_t)T * K, 1.0);
    for (size_t k = 0; k < x.size(); k += 97) x[k] *= 20.0f;                 // outliers
    for (int k = 64; k < 96 && k < K; k++) x[k] = 0.0f;                      // a zero block
    for (int k = 0; k < K; k++) x[(size_t)1 * K + k] *= 3000.0f;            // a large token (tscale)
    if (T > 4) for (int k = 0; k < K; k++) x[(size_t)4 * K + k] *= 1e-3f;    // a small one
    float *dx = dup(x);
    const int forms = CUDA_MMIN_F16 | CUDA_MMIN_Q8; // as the engine's input at fast
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
    if (cuda_mmin_prepare(dx, K, &m, T, C->st, &e2)) { fprintf(C->f, "not ok - gemms prepare: %s\n", e2.msg); C->fails++; return; }
    cuda_mm_args a;
    memset(&a, 0, sizeof a);
    a.n = nm; a.accumulate = accumulate; a.exact = 0;
    for (int i = 0; i < nm; i++) { a.w[i] = &w[i]; a.y[i] = dy[i]; a.ldy[i] = ld[i]; }
    if (splitk) { a.work_bytes = 32u << 20; a.work = (float *)dalloc(a.work_bytes); }
    int ks = 1, upc = 0, tiles = 0, rows = 0;
    uint64_t wb = 0;
    const int tr = cuda_gemms_tile_rows(T);
    for (int i = 0; i < nm; i++) { tiles += (Ns[i] + tr - 1) / tr; rows += Ns[i]; wb += cuda_weight_bytes(type, Ns[i], K); }
    cuda_gemms_plan(T, K, tiles, rows, wb, a.work ? a.work_bytes : 0, &ks, &upc);
    const long l0 = cuda_gemms_launches(), l2 = cuda_gemms2_launches();
    const int rc = cuda_matmul(&a, &m, C->st, &e2);
    cudaStreamSynchronize(C->st);
    const cudaError_t ce = cudaGetLastError();
    const bool ran2 = cuda_gemms2_launches() == l2 + 1;
    const bool ran = cuda_gemms_launches() == l0 + 1 && (g_want2 < 0 || ran2 == (g_want2 == 1));
    double er = 0, erc = 0;
    int fin = 1;
    for (int i = 0; i < nm; i++) {
        auto y = get(dy[i], (size_t)T * ld[i]);
        int f1 = 1;
        er = std::max(er, tok_err(y, ld[i], W[i], Ns[i], K, x, T, accumulate ? &y0[i] : NULL, false, &f1));
        if (control && i == 0) erc = tok_err(y, ld[i], W[i], Ns[i], K, x, T, accumulate ? &y0[i] : NULL, true, &f1);
        if (!f1) fin = 0;
    }
    char shape[128], note[96];
    snprintf(shape, sizeof shape, "%s N%d%s%.0d K%d T%d%s%s%s", tname(type), N, N2 ? "+" : "", N2, K, T,
             accumulate ? " +=" : "", splitk ? " work" : "", g_cl_tag);
    if (expect && ran2)
        snprintf(note, sizeof note, "(gemms2: persistent, smem ring%s%s)", ran ? "" : "; NOT as expected",
                 ce != cudaSuccess ? cudaGetErrorString(ce) : "");
    else if (expect)
        snprintf(note, sizeof note, "(gemms_kernel: ks %d, %d units a CTA%s%s)", ks, upc, ran ? "" : "; NOT as expected",
                 ce != cudaSuccess ? cudaGetErrorString(ce) : "");
    else
        snprintf(note, sizeof note, "(SPARKD_HSMALL=0: today's int8 path%s%s)", ran ? "; gemms RAN" : "",
                 ce != cudaSuccess ? cudaGetErrorString(ce) : "");
    report(expect ? (ran2 ? "gemms2" : "gemms") : "gemms-off", shape, er, tol, 0, rc == 0 && ce == cudaSuccess && fin && ran == expect && er <= tol, note);
    if (control)
        report("gemms-control", shape, erc, 2e-3, 0, rc == 0 && erc > 2e-3,
               "(reference input with neighbours swapped: must exceed the tolerance)");
    dfree_all();
}

// ------------------------------------------------------------------------------ bench

// The Qwen3-8B decode products at T tokens: gemms (hsmall) beside today's routing (int8
// mmq: its old kernel below 64 tokens) and the f16 kernel at fast, weights rotated over
// copies beyond the L2; GB/s = weight bytes / time.
void bench_small(uint32_t type, double probe) {
    struct prod { const char *name; int n, rows, K; } prods[] = {
        {"q+k+v", 1, 6144, 4096}, {"o", 1, 4096, 4096}, {"gate+up", 2, 12288, 4096}, {"down", 1, 4096, 12288},
        {"head", 1, 151936, 4096}};
    for (const prod &pr : prods) {
        if (pr.rows > 100000 && type == QUANT_Q4_K) continue; // the head: Q8_0 / Q6_K (Q4_K_M's)
        const uint64_t wb = cuda_weight_bytes(type, pr.rows, pr.K) * pr.n;
        int copies = (int)((768ull << 20) / wb) + 1; // beyond the L2, and launches back to back
        if (copies > 16) copies = 16;              // (time of the batch / copies: no host gaps)
        if (copies < 8 && wb < (256ull << 20)) copies = 8;
        auto raw = gen_rows(type, pr.rows, pr.K);
        std::vector<cuda_weight> ws((size_t)copies * pr.n);
        for (auto &w : ws)
            if (!make_weight(&w, type, raw, pr.rows, pr.K)) return;
        const int Tmax = 64;
        const int forms = CUDA_MMIN_F16 | CUDA_MMIN_Q8;
        cuda_mmin m;
        cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(Tmax, pr.K, forms)), Tmax, pr.K, forms);
        float *dx = dup(randn((size_t)Tmax * pr.K, 1.0));
        float *dy[2] = {(float *)dalloc((size_t)Tmax * pr.rows * 4), (float *)dalloc((size_t)Tmax * pr.rows * 4)};
        float *splitk = (float *)dalloc(32u << 20);
        cuda_gemms2_max_t_set(64); // gemms2 rows at T = 64 too (the others: SPARKD_HS2_MAX_T)
        cuda_gemms2_min_rows_set(0); // and for every product (the default takes the large ones)
        for (int T : {2, 8, 16, 32, 64}) {
            err e2 = {ERR_OK, {0}};
            if (cuda_mmin_prepare(dx, pr.K, &m, T, C->st, &e2)) return;
            const char *kn[7] = {"gemms (hsmall r6)", T > 32 && type != QUANT_Q8_0 ? "hfast (today)" : "int8 mmq (today)", "f16 mma fast", "gemms, clusters",
                                 "gemms, ws + last CTA sums", "gemms, CTAs of 8 warps", "gemms2 (hs2)"};
            double us_v[7] = {0, 0, 0, 0, 0, 0, 0};
            int ks = 0, upc = 0;
            cuda_gemms_plan(T, pr.K, pr.n * ((pr.rows + cuda_gemms_tile_rows(T) - 1) / cuda_gemms_tile_rows(T)), pr.n * pr.rows, wb, 32u << 20, &ks, &upc);
            for (int v : {0, 6, 1, 2, 3, 4, 5}) {
                if (T > 32 && v != 6 && v != 1) continue; // gemms_kernel: T <= 32
                if ((v == 3 || v == 4) && (ks < 2 || !g_kb_all)) continue;
                if (v == 5 && (T <= 16 || !g_kb_all)) continue;
                if (v == 2 && !g_kb_all) continue;
                cuda_gemms2_set(v == 6);
                cuda_gemms_set(v == 0 || v >= 3, -1);
                cuda_gemms_cluster_set(v == 3 ? 1 : v == 4 ? 2 : -1);
                cuda_gemms_wide_set(v == 5 ? 0 : -1);
                cuda_mmq_set(v == 1);
                cuda_mm_args a;
                memset(&a, 0, sizeof a);
                a.n = pr.n; a.exact = 0; a.work = splitk; a.work_bytes = 32u << 20;
                for (int i = 0; i < pr.n; i++) { a.y[i] = dy[i]; a.ldy[i] = pr.rows; }
                const long l0 = cuda_gemms_launches(), l2 = cuda_gemms2_launches();
                us_v[v] = time_us([&] {
                    for (int c = 0; c < copies; c++) {
                        for (int i = 0; i < pr.n; i++) a.w[i] = &ws[(size_t)c * pr.n + i];
                        err e3;
                        cuda_matmul(&a, &m, C->st, &e3);
                    }
                }, 3) / copies;
                const bool ran = v == 6 ? cuda_gemms2_launches() > l2 : cuda_gemms_launches() > l0;
                cudaError_t ce = cudaGetLastError();
                const double gbs = (double)wb / (us_v[v] * 1e3);
                char extra[96] = "";
                if (v == 6) {
                    snprintf(extra, sizeof extra, "%s; %.2fx r6", ran ? "gemms2" : "NOT gemms2", us_v[0] > 0 ? us_v[0] / us_v[6] : 0.0);
                } else if (v == 0 || v >= 3) {
                    int ks3 = ks, upc3 = upc;
                    if (v >= 3) cuda_gemms_plan(T, pr.K, pr.n * ((pr.rows + cuda_gemms_tile_rows(T) - 1) / cuda_gemms_tile_rows(T)), pr.n * pr.rows, wb, 32u << 20, &ks3, &upc3);
                    snprintf(extra, sizeof extra, "ks %d, %d units a CTA%s", ks3, upc3, ran ? "" : ", NOT gemms");
                }
                else if (us_v[6] > 0) snprintf(extra, sizeof extra, "gemms2 %.2fx faster", us_v[v] / us_v[6]);
                cuda_gemms_cluster_set(-1);
                cuda_gemms_wide_set(-1);
                cuda_gemms2_set(-1);
                fprintf(C->f, "| %s | %s %dx%dx%d | %d | %s | %.1f | %.0f | %.0f%% | %s%s |\n", tname(type), pr.name,
                        pr.n, pr.rows, pr.K, T, kn[v], us_v[v], gbs, probe > 0 ? 100.0 * gbs / probe : 0.0, extra,
                        ce != cudaSuccess ? cudaGetErrorString(ce) : "");
                fflush(C->f);
            }
            // gemms2 with fewer ring stages than fit (tuning data for the ring depth); sf = 0:
            // warps of two m16 tiles (SPARKD_HS2_MT=2) at T = 32
            for (int sf : {0, 1, 3, 4, 5}) {
                if (T != 8 && T != 32 && T != 64) break;
                if (sf == 0 && T != 32) continue;
                if (sf == 1 && T > 32) continue;
                cuda_gemms2_mt_set(sf == 0 ? 2 : -1);
                cuda_gemms2_2cta_set(sf == 1 ? 1 : -1);
                cuda_gemms_set(1, -1);
                cuda_gemms2_set(1);
                cuda_gemms2_stages_set(sf == 1 ? -1 : sf);
                cuda_mm_args a;
                memset(&a, 0, sizeof a);
                a.n = pr.n; a.exact = 0; a.work = splitk; a.work_bytes = 32u << 20;
                for (int i = 0; i < pr.n; i++) { a.y[i] = dy[i]; a.ldy[i] = pr.rows; }
                const long l2 = cuda_gemms2_launches();
                const double us = time_us([&] {
                    for (int c = 0; c < copies; c++) {
                        for (int i = 0; i < pr.n; i++) a.w[i] = &ws[(size_t)c * pr.n + i];
                        err e3;
                        cuda_matmul(&a, &m, C->st, &e3);
                    }
                }, 3) / copies;
                const bool ran = cuda_gemms2_launches() > l2;
                cuda_gemms2_stages_set(-1);
                cuda_gemms2_mt_set(-1);
                cuda_gemms2_2cta_set(-1);
                const double gbs = (double)wb / (us * 1e3);
                char kname[48];
                if (sf == 1) snprintf(kname, sizeof kname, "gemms2, 2 CTAs an SM");
                else if (sf) snprintf(kname, sizeof kname, "gemms2, %d stages", sf);
                else snprintf(kname, sizeof kname, "gemms2, warps of 32 rows");
                fprintf(C->f, "| %s | %s %dx%dx%d | %d | %s | %.1f | %.0f | %.0f%% | %s; %.2fx the default |\n",
                        tname(type), pr.name, pr.n, pr.rows, pr.K, T, kname, us, gbs, probe > 0 ? 100.0 * gbs / probe : 0.0,
                        ran ? "gemms2" : "NOT gemms2", us_v[6] / us);
                fflush(C->f);
            }
            cuda_gemms2_set(-1);
            // the K splits the cost model did not take (tuning data for cuda_gemms_plan)
            cuda_gemms_set(1, -1);
            cuda_gemms2_set(0);
            for (int kf : {1, 2, 3, 4, 5, 6, 8, 11, 16, 24}) {
                if ((T != 8 && T != 32) || !g_kb_all) break;
                int ks2 = 0, upc2 = 0;
                cuda_gemms_force_ks(kf);
                const bool fits = cuda_gemms_plan(T, pr.K, pr.n * ((pr.rows + cuda_gemms_tile_rows(T) - 1) / cuda_gemms_tile_rows(T)), pr.n * pr.rows, wb, 32u << 20, &ks2, &upc2);
                if (!fits || kf == ks) { cuda_gemms_force_ks(0); continue; }
                cuda_mm_args a;
                memset(&a, 0, sizeof a);
                a.n = pr.n; a.exact = 0; a.work = splitk; a.work_bytes = 32u << 20;
                for (int i = 0; i < pr.n; i++) { a.y[i] = dy[i]; a.ldy[i] = pr.rows; }
                const double us = time_us([&] {
                    for (int c = 0; c < copies; c++) {
                        for (int i = 0; i < pr.n; i++) a.w[i] = &ws[(size_t)c * pr.n + i];
                        err e3;
                        cuda_matmul(&a, &m, C->st, &e3);
                    }
                }, 3) / copies;
                cuda_gemms_force_ks(0);
                const double gbs = (double)wb / (us * 1e3);
                fprintf(C->f, "| %s | %s %dx%dx%d | %d | gemms forced ks %d (%d units) | %.1f | %.0f | %.0f%% | %.2fx the chosen |\n",
                        tname(type), pr.name, pr.n, pr.rows, pr.K, T, ks2, upc2, us, gbs,
                        probe > 0 ? 100.0 * gbs / probe : 0.0, us_v[0] / us);
                fflush(C->f);
            }
            cuda_gemms_set(-1, -1);
            cuda_gemms2_set(-1);
            cuda_mmq_set(1);
        }
        cuda_gemms2_max_t_set(-1);
        cuda_gemms2_min_rows_set(-1);
        dfree_all();
    }
}

} // namespace

// Called by cuda_selftest (selftest.cu) with its output and seed: returns the failures.
int hsmall_selftest(void *file, int quick, uint64_t seed, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, quick, e);
    C = &ctx;
    ctx.rng.s = seed + 1;
    if (!st_open_stream()) {
        fprintf(ctx.f, "not ok - gemms: cannot create a stream\n");
        return 1;
    }
    cuda_gemms_set(1, 32);
    // gemms2_kernel (SPARKD_HS2=1, the default): every T tile count, two matrices, accumulate,
    // rows not a multiple of 128, tiles whole in a CTA's range and cut by range boundaries
    // (SPARKD_HS2_MIN_ROWS=0: the small test products too; one CTA an SM: SPARKD_HS2_2CTA=0)
    cuda_gemms2_set(1);
    cuda_gemms2_min_rows_set(0);
    cuda_gemms2_2cta_set(0);
    g_want2 = 1;
    g_cl_tag = " hs2";
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) {
        test_gemms(t, 257, 1024, 2, 0, 0, 1, true);
        test_gemms(t, 300, 1024, 5, 131, 1, 1, false);
        test_gemms(t, 1000, 4096, 8, 0, 0, 1, false);
        test_gemms(t, 129, 2048, 16, 0, 1, 1, false);
        test_gemms(t, 515, 4096, 32, 67, 0, 1, false);
        test_gemms(t, 200, 512, 32, 0, 1, 1, false);
        test_gemms(t, 40000, 512, 8, 0, 1, 1, false);
        test_gemms(t, 34000, 256, 24, 0, 0, 1, false); // every CTA: whole tiles (K = one stage)
        if (!quick) test_gemms(t, 4097, 12288, 24, 0, 1, 1, false);
    }
    // 33 <= T <= 64 (SPARKD_HS2_MAX_T=64: 8 token tiles)
    cuda_gemms2_max_t_set(64);
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) {
        test_gemms(t, 300, 1024, 40, 131, 1, 1, t == QUANT_Q8_0);
        test_gemms(t, 515, 2048, 64, 0, 0, 1, false);
        test_gemms(t, 34000, 256, 40, 0, 1, 1, false);
    }
    cuda_gemms2_max_t_set(-1);
    // warps of two m16 tiles (256-row tiles, one unit a stage) at 17..32 tokens (SPARKD_HS2_MT=2)
    cuda_gemms2_mt_set(2);
    g_cl_tag = " hs2 mt2";
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) {
        test_gemms(t, 300, 1024, 24, 131, 1, 1, t == QUANT_Q8_0);
        test_gemms(t, 515, 4096, 32, 0, 0, 1, false);
        test_gemms(t, 34000, 256, 20, 0, 1, 1, false);
    }
    cuda_gemms2_mt_set(-1);
    // two CTAs an SM (SPARKD_HS2_2CTA=1: stages of 1 unit (Q8_0) / 2, a grid of 2 x SMs; Q6_K at
    // T = 32 does not fit 3 stages in half an SM: one CTA an SM)
    cuda_gemms2_2cta_set(1);
    g_cl_tag = " hs2 2cta";
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) {
        test_gemms(t, 257, 1024, 2, 0, 0, 1, t == QUANT_Q8_0);
        test_gemms(t, 300, 1024, 8, 131, 1, 1, false);
        test_gemms(t, 129, 2048, 16, 0, 1, 1, false);
        test_gemms(t, 515, 4096, 32, 67, 0, 1, false);
        test_gemms(t, 34000, 256, 8, 0, 1, 1, false);
        test_gemms(t, 19195, 256, 8, 0, 1, 1, false); // 150 tiles: a CTA a tile, no reduce
    }
    cuda_gemms2_2cta_set(0);
    g_cl_tag = " hs2";
    // where it does not apply: no work buffer, K not a multiple of a stage -> gemms_kernel
    g_want2 = 0;
    test_gemms(QUANT_Q8_0, 200, 512, 8, 0, 1, 0, false);
    test_gemms(QUANT_Q6_K, 515, 4096, 8, 0, 0, 0, false);
    test_gemms(QUANT_Q4_K, 257, 768, 8, 0, 0, 1, false);
    // the round-6 kernel (SPARKD_HS2=0)
    cuda_gemms2_set(0);
    g_cl_tag = "";
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) {
        test_gemms(t, 257, 768, 2, 0, 0, 0, true);
        test_gemms(t, 300, 1024, 5, 131, 1, 1, false);
        test_gemms(t, 1000, 4096, 8, 0, 0, 1, false);
        test_gemms(t, 129, 2048, 16, 0, 1, 1, false);
        test_gemms(t, 515, 4096, 32, 67, 0, 1, false);
        test_gemms(t, 200, 512, 32, 0, 1, 0, false);
        if (!quick) test_gemms(t, 4097, 12288, 24, 0, 1, 1, false);
    }
    // the K split's other reductions: clusters (SPARKD_HSMALL_CLUSTER=1: partials summed through
    // distributed shared memory; the default 0 puts them in the work buffer for gemms_reduce_kernel)
    cuda_gemms_cluster_set(1);
    g_cl_tag = " cluster";
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) {
        test_gemms(t, 300, 1024, 5, 131, 1, 1, false);
        test_gemms(t, 515, 4096, 32, 67, 0, 1, false);
    }
    // T > 16 in CTAs of 8 warps (SPARKD_HSMALL_WIDE=0; default 16)
    cuda_gemms_wide_set(0);
    g_cl_tag = " 8-warp";
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) {
        test_gemms(t, 515, 4096, 32, 67, 0, 1, false);
        test_gemms(t, 200, 512, 32, 0, 1, 0, false);
    }
    cuda_gemms_wide_set(-1);
    // and the tile's last CTA summing them (SPARKD_HSMALL_CLUSTER=2)
    cuda_gemms_cluster_set(2);
    g_cl_tag = " last-cta";
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) {
        test_gemms(t, 300, 1024, 5, 131, 1, 1, false);
        test_gemms(t, 515, 4096, 32, 67, 0, 1, false);
    }
    cuda_gemms_cluster_set(-1);
    g_cl_tag = "";
    cuda_gemms2_set(-1);
    cuda_gemms2_min_rows_set(-1);
    cuda_gemms2_2cta_set(-1);
    // the default routing (SPARKD_HS2_MIN_ROWS 16384): a 1000-row product on gemms_kernel, gate+up
    // sized ones (2 x 8500 rows) on gemms2
    cuda_gemms2_set(1);
    g_cl_tag = " hs2 default";
    g_want2 = 0;
    test_gemms(QUANT_Q8_0, 1000, 1024, 8, 0, 0, 1, false);
    g_want2 = 1;
    test_gemms(QUANT_Q4_K, 8500, 512, 8, 8500, 1, 1, false);
    g_cl_tag = "";
    cuda_gemms2_set(-1);
    g_want2 = -1;
    // SPARKD_HSMALL=0's routing: the same product must not reach gemms.cu (int8 input: 3e-2)
    cuda_gemms_set(0, -1);
    test_gemms(QUANT_Q8_0, 257, 768, 8, 0, 0, 1, false, false, 3e-2);
    cuda_gemms_set(-1, -1);
    st_close_stream();
    return ctx.fails;
}

// SPARKD_KBENCH=small (cuda_kbench): the table rows after its header.
void hsmall_kbench(void *file, double probe, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    ctx.rng.s = 777;
    if (!st_open_stream()) return;
    g_kb_all = getenv("SPARKD_KBENCH_ALL") && getenv("SPARKD_KBENCH_ALL")[0] == '1';
    fprintf(ctx.f, "| type | product | T | kernel | us | GB/s (weights) | %% probe | |\n|---|---|---|---|---|---|---|---|\n");
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) bench_small(t, probe);
    st_close_stream();
}
