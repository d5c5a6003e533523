// t64_test.cu — round 8, helper t64: the products of 33..64 tokens (64-sequence decode). Checks
// (t64_selftest, called by cuda_selftest) and the kernel bench (t64_kbench, SPARKD_KBENCH=t64).
//
// What is checked (mmq.cu's uneven K split, mmq3 from 33 tokens, gemms.cu's SPARKD_T64_G2 route):
// - the int8 product with SPARKD_T64 on against the same product with it off (round 7's path:
//   the round-4 kernel below 64 tokens, mmq3 with the even split at 64) on the same int8 input:
//   only the f32 summation order differs, so ||y - y_old|| / ||y_old|| per token must stay
//   below 1e-5; and against the f32 reference (weights dequantized by appliance/format/quant.c,
//   the f32 input, float64 sums; nothing shared with the kernels) within 2e-2 (the input's
//   int8 rounding, ~0.5% here);
// - the uneven split must have run (its launch counter), in small products by planning for a
//   few CTA slots (cuda_t64_test_set), and in a product of 0.75 x 2 x SMs tiles with the device's
//   own slots (as Qwen3-8B's gate+up at T <= 64 on an H200); rows not multiples of the 128-row
//   tile, two matrices with a padded ldy, accumulate, cuts inside a Q4_K / Q6_K superblock;
// - the control: the same split with one chunk of K left out (the z = 1 pieces start one chunk
//   late) must differ from the old path by more than 1e-3 (else the check could not see it);
// - SPARKD_T64_G2=1: a K-quant product of >= 16384 rows at 33..64 tokens runs on gemms2 (its
//   launch counter) within gemms2's f16 tolerance of the f32 reference, a Q8_0 one does not.
// Outputs are poisoned with NaN before each product (a skipped row fails).
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

extern "C" int cuda_t64_on(void);                    // mmq.cu: SPARKD_T64 (default 1)
extern "C" void cuda_t64_set(int on);                // mmq.cu: 1 / 0, -1 = as SPARKD_T64 says
extern "C" void cuda_t64_test_set(int slots, int drop); // mmq.cu: plan for `slots` CTA slots; drop = the control
extern "C" long cuda_t64_launches(void);             // mmq.cu: launches with the uneven split
extern "C" void cuda_t64_g2_set(int lvl);            // gemms.cu: SPARKD_T64_G2 level 0..2 (-1: as it says)
extern "C" long cuda_gemms2_launches(void);          // gemms.cu: gemms2_kernel launches so far
extern "C" void cuda_gemms2_min_rows_set(int rows);  // gemms.cu: gemms2 only from this many rows (-1: env)
extern "C" void cuda_mmq3_min_t_set(int t);          // mmq.cu: fewest tokens for mmq3 (-1: env)
extern "C" void cuda_t64_rounds_set(int r);          // mmq.cu (benches): the uneven split's rounds (0: its rule)
extern "C" void cuda_t64_hks_set(int ks);            // gemm.cu: hf2's K split cap at 33..64 (SPARKD_T64_HKS; -1: env)
extern "C" int cuda_hfast_launches(void);            // gemm.cu: hfast / hf2 launches so far

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

int g_sms = 132;

// One product of 1 or 2 matrices (N, N2 rows; N2's ldy padded) at T tokens: SPARKD_T64 on
// (slots: CTA slots the split plans for, 0 = the device's; drop: the control) against off and
// against f32. want: the uneven split must run (1) / must not (0).
void test_t64_mmq(uint32_t type, int N, int N2, int K, int T, int accumulate, int slots, int want, int drop) {
    const int nm = N2 > 0 ? 2 : 1, Ns[2] = {N, N2}, ld[2] = {N, N2 + 3};
    cuda_weight w[2];
    std::vector<float> W[2];
    for (int i = 0; i < nm; i++) {
        auto raw = st_gen_rows(type, Ns[i], K);
        W[i] = st_ref_dequant(type, raw, Ns[i], K);
        if (!st_make_weight(&w[i], type, raw, Ns[i], K)) return;
    }
    auto x = st_randn((size_t)T * K, 1.0);
    for (size_t k = 0; k < x.size(); k += 97) x[k] *= 20.0f;                 // outliers
    for (int k = 64; k < 96 && k < K; k++) x[k] = 0.0f;                      // a zero block
    for (int k = 0; k < K; k++) x[(size_t)1 * K + k] *= 3000.0f;            // a large token
    float *dx = dup(x);
    const int forms = CUDA_MMIN_F16 | CUDA_MMIN_Q8;
    cuda_mmin m;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(T, K, forms)), T, K, forms);
    err e2 = {ERR_OK, {0}};
    if (cuda_mmin_prepare(dx, K, &m, T, C->st, &e2)) { fprintf(C->f, "not ok - t64 prepare: %s\n", e2.msg); C->fails++; return; }
    std::vector<float> y0[2], yo[2], yn[2];
    float *dy[2] = {NULL, NULL};
    for (int i = 0; i < nm; i++) {
        dy[i] = (float *)dalloc((size_t)T * ld[i] * 4);
        if (accumulate) y0[i] = st_randn((size_t)T * ld[i], 1.0);
    }
    cuda_mm_args a;
    memset(&a, 0, sizeof a);
    a.n = nm; a.accumulate = accumulate; a.exact = 0;
    for (int i = 0; i < nm; i++) { a.w[i] = &w[i]; a.y[i] = dy[i]; a.ldy[i] = ld[i]; }
    a.work_bytes = 32u << 20;
    a.work = (float *)dalloc(a.work_bytes);
    int rc = 0;
    long l0 = 0, l1 = 0;
    for (int v = 0; v < 2; v++) { // 0: SPARKD_T64=0 (round 7), 1: on
        for (int i = 0; i < nm; i++) {
            if (accumulate) cudaMemcpy(dy[i], y0[i].data(), y0[i].size() * 4, cudaMemcpyHostToDevice);
            else poison(dy[i], (size_t)T * ld[i] * 4);
        }
        cuda_t64_set(v);
        cuda_t64_g2_set(0); // (gemms.cu is off in these rows anyway: cuda_gemms_set(0))
        cuda_t64_test_set(v ? slots : 0, v ? drop : 0);
        if (v) l0 = cuda_t64_launches();
        rc |= cuda_matmul(&a, &m, C->st, &e2);
        cudaStreamSynchronize(C->st);
        if (v) l1 = cuda_t64_launches();
        for (int i = 0; i < nm; i++) (v ? yn : yo)[i] = get(dy[i], (size_t)T * ld[i]);
    }
    cuda_t64_test_set(0, 0);
    cuda_t64_set(-1);
    cuda_t64_g2_set(-1);
    const cudaError_t ce = cudaGetLastError();
    std::vector<int> toks = {0, 1, T - 1, T / 2};
    for (int i = 0; i < 4; i++) toks.push_back(C->rng.below(T));
    std::vector<int> all;
    for (int t = 0; t < T; t++) all.push_back(t);
    double eo = 0, ef = 0;
    int fin = 1;
    for (int i = 0; i < nm; i++) {
        eo = std::max(eo, st_tok_err(yn[i], &yo[i], ld[i], W[i], Ns[i], K, x, all, NULL, &fin));
        ef = std::max(ef, st_tok_err(yn[i], NULL, ld[i], W[i], Ns[i], K, x, toks, accumulate ? &y0[i] : NULL, &fin));
        ef = std::max(ef, st_tok_err(yo[i], NULL, ld[i], W[i], Ns[i], K, x, toks, accumulate ? &y0[i] : NULL, &fin));
    }
    const bool ran = (l1 > l0) == (want == 1);
    char shape[128], note[160];
    snprintf(shape, sizeof shape, "%s N%d%s%.0d K%d T%d%s slots %d", tname(type), N, N2 ? "+" : "", N2, K, T,
             accumulate ? " +=" : "", slots ? slots : 2 * g_sms);
    if (drop) {
        snprintf(note, sizeof note, "(chunk kcut left out: must differ from round 7's by > 1e-3%s)",
                 ran ? "" : "; the uneven split did NOT run");
        report("t64 control", shape, eo, 1e-3, 0, rc == 0 && ce == cudaSuccess && ran && eo > 1e-3, note);
    } else {
        snprintf(note, sizeof note, "(vs SPARKD_T64=0 on the same int8 input; vs f32 %.2g, tol 5e-2; uneven split %s%s%s)",
                 ef, want ? "expected" : "not expected", ran ? "" : ": NOT as expected", ce != cudaSuccess ? cudaGetErrorString(ce) : "");
        report("t64 mmq", shape, eo, 1e-5, 0, rc == 0 && ce == cudaSuccess && fin && ran && eo <= 1e-5 && ef <= 5e-2, note);
    }
    dfree_all();
}

// SPARKD_T64_G2=1: a product of >= SPARKD_HS2_MIN_ROWS rows (0 here) at T tokens on gemms2 for the
// K-quants (want2 1), not for Q8_0 (want2 0: mmq), checked against f32 (2e-3 on gemms2, 2e-2 on mmq).
void test_t64_g2(uint32_t type, int N, int K, int T, int want2, int hks = 0, int lvl = 1) {
    cuda_weight w;
    auto raw = st_gen_rows(type, N, K);
    auto W = st_ref_dequant(type, raw, N, K);
    if (!st_make_weight(&w, type, raw, N, K)) return;
    auto x = st_randn((size_t)T * K, 1.0);
    for (size_t k = 0; k < x.size(); k += 97) x[k] *= 20.0f;
    float *dx = dup(x);
    const int forms = CUDA_MMIN_F16 | CUDA_MMIN_Q8;
    cuda_mmin m;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(T, K, forms)), T, K, forms);
    err e2 = {ERR_OK, {0}};
    if (cuda_mmin_prepare(dx, K, &m, T, C->st, &e2)) { fprintf(C->f, "not ok - t64 prepare: %s\n", e2.msg); C->fails++; return; }
    float *dy = (float *)dalloc((size_t)T * N * 4);
    poison(dy, (size_t)T * N * 4);
    cuda_mm_args a;
    memset(&a, 0, sizeof a);
    a.n = 1; a.exact = 0; a.w[0] = &w; a.y[0] = dy; a.ldy[0] = N;
    a.work_bytes = 32u << 20;
    a.work = (float *)dalloc(a.work_bytes);
    cuda_t64_set(1);
    cuda_t64_g2_set(lvl);
    cuda_gemms2_min_rows_set(hks ? 1 << 30 : lvl == 2 ? -1 : 0);
    cuda_t64_hks_set(hks ? hks : -1);
    const long l2 = cuda_gemms2_launches();
    const int lh = cuda_hfast_launches();
    const int rc = cuda_matmul(&a, &m, C->st, &e2);
    cudaStreamSynchronize(C->st);
    const bool ran2 = hks ? cuda_hfast_launches() > lh : cuda_gemms2_launches() > l2;
    cuda_gemms2_min_rows_set(-1);
    cuda_t64_hks_set(-1);
    cuda_t64_g2_set(-1);
    cuda_t64_set(-1);
    const cudaError_t ce = cudaGetLastError();
    auto y = get(dy, (size_t)T * N);
    std::vector<int> toks = {0, T - 1, C->rng.below(T), C->rng.below(T)};
    int fin = 1;
    const double er = st_tok_err(y, NULL, N, W, N, K, x, toks, NULL, &fin);
    const double tol = want2 ? 2e-3 : 2e-2;
    char shape[96], note[96];
    snprintf(shape, sizeof shape, "%s N%d K%d T%d%s", tname(type), N, K, T, hks ? " hf2 ks cap" : lvl == 2 ? " G2=2" : "");
    snprintf(note, sizeof note, "(vs f32; %s expected%s)", hks ? "hf2" : want2 ? "gemms2" : "mmq", ran2 == (want2 == 1) ? "" : ": NOT as expected");
    report(hks ? "t64 hks" : "t64 g2", shape, er, tol, 0, rc == 0 && ce == cudaSuccess && fin && ran2 == (want2 == 1) && er <= tol, note);
    dfree_all();
}

} // namespace

extern "C" int cuda_hfast_min_t(void); // gemm.cu: hfast's threshold (0x7fffffff: off)

// The t64 rows of cuda_selftest (kernels/selftest.cu calls it after the gemms rows).
int t64_selftest(void *file, int quick, uint64_t seed, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, quick, e);
    C = &ctx;
    ctx.rng.s = seed;
    if (!st_open_stream()) return 1;
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&g_sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        g_sms = 48;
    const int hf_was_off = cuda_hfast_min_t() == 0x7fffffff;
    cuda_hfast_set(0);      // K-quants at T >= 33 would take hf2: the int8 product here
    cuda_gemms_set(0, -1);  // (T <= 32 only; not these rows)
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) {
        const int K = t == QUANT_Q8_0 ? 2112 : 2304; // 33 / 36 chunks of 64
        for (int T : {33, 48, 64}) {
            // 3 + 1 tiles on 6 slots: r 2, s nk / 3 (Q4_K/Q6_K: a cut at a superblock boundary)
            test_t64_mmq(t, 257, 67, K, T, T == 48, 6, 1, 0);
            // 4 tiles on 5 slots: r 4, s nk / 5 (cut inside a superblock)
            test_t64_mmq(t, 300, 100, K, T, T != 48, 5, 1, 0);
        }
        // the device's own slots (2 x SMs): 0.75 of them as tiles (gate+up at T <= 64), rows not a
        // multiple of 128; and a product of few tiles (the even rule's split, no uneven one)
        test_t64_mmq(t, (3 * 2 * g_sms / 4) * 128 - 77, 0, 1024, 64, 0, 0, 1, 0);
        if (!quick) test_t64_mmq(t, (3 * 2 * g_sms / 4) * 128 - 77, 0, 1024, 40, 1, 0, 1, 0);
        test_t64_mmq(t, 1000, 0, K, 64, 0, 0, 0, 0);
        // the control: the small pieces lost
        test_t64_mmq(t, 257, 67, K, 48, 0, 6, 1, 1);
    }
    cuda_gemms_set(-1, -1);
    // SPARKD_T64_G2=1 (hfast on as in the engine: the K-quants would take hf2 otherwise)
    cuda_hfast_set(-1);
    test_t64_g2(QUANT_Q4_K, 1000, 2048, 48, 1);
    test_t64_g2(QUANT_Q6_K, 515, 2048, 64, 1);
    test_t64_g2(QUANT_Q8_0, 1000, 2048, 64, 0);    // Q8_0 below 65536 rows: mmq
    test_t64_g2(QUANT_Q8_0, 66000, 512, 40, 0);    // Q8_0 at level 1: mmq even at the head's size (run 1)
    test_t64_g2(QUANT_Q8_0, 66000, 512, 40, 1, 0, 2); // SPARKD_T64_G2=2: gemms2
    test_t64_g2(QUANT_Q8_0, 20000, 512, 48, 1, 0, 2); // SPARKD_T64_G2=2: Q8_0 of >= 16384 rows too
    test_t64_g2(QUANT_Q8_0, 16000, 512, 64, 0, 0, 2); // (below SPARKD_HS2_MIN_ROWS: mmq)
    // SPARKD_T64_HKS=12 / 16: hf2 with up to 12 / 16 K pieces (16 row tiles at K 4096: 3 x SMs / 16 >= 12 on an H200)
    test_t64_g2(QUANT_Q4_K, 2000, 4096, 64, 1, 12);
    test_t64_g2(QUANT_Q6_K, 1999, 4096, 48, 1, 16);
    test_t64_g2(QUANT_Q8_0, 2001, 4096, 64, 0, 12); // Q8_0 at 64: mmq (hf2 from 65)
    cuda_hfast_set(hf_was_off ? 0 : -1);
    cuda_mmq3_min_t_set(-1);
    st_close_stream();
    return ctx.fails;
}

// SPARKD_KBENCH=t64 (cuda_kbench): the Qwen3-8B products t64 changes, SPARKD_T64=0 (round 7's
// routing) beside the new one, weights rotated over copies beyond the L2, launches back to back;
// GB/s = weight bytes / time, % of the probe. Q8_0: every layer product at 48 and 64 tokens (mmq3
// from 33 tokens, the uneven split) and a layer row; Q4_K gate+up and Q6_K's head (Q4_K_M's) at 64
// with SPARKD_T64_G2=1 (gemms2) beside hf2; the products t64 leaves alone are not repeated.
void t64_kbench(void *file, double probe, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    ctx.rng.s = 4242;
    if (!st_open_stream()) return;
    fprintf(ctx.f, "| type | product | T | routing | us | GB/s (weights) | %% probe | |\n|---|---|---|---|---|---|---|---|\n");
    struct prod { uint32_t type; const char *name; int n, rows, K; } prods[] = {
        {QUANT_Q8_0, "q+k+v", 1, 6144, 4096}, {QUANT_Q8_0, "o", 1, 4096, 4096}, {QUANT_Q8_0, "gate+up", 2, 12288, 4096},
        {QUANT_Q8_0, "down", 1, 4096, 12288}, {QUANT_Q8_0, "head", 1, 151936, 4096}, {QUANT_Q4_K, "gate+up", 2, 12288, 4096},
        {QUANT_Q6_K, "head", 1, 151936, 4096},
        {QUANT_Q4_K, "o", 1, 4096, 4096}, {QUANT_Q4_K, "down", 1, 4096, 12288}, {QUANT_Q6_K, "down", 1, 4096, 12288}};
    const char *vn[5] = {"SPARKD_T64=0 (round 7)", "SPARKD_T64=1 T64_G2=0", "SPARKD_T64=1 T64_G2=1 (Q8_0: =2)", "SPARKD_T64=1 T64_HKS=12",
                         "SPARKD_T64=1 T64_HKS=16"};
    double layer[2][2] = {{0, 0}, {0, 0}}; // Q8_0 [T 48 / 64][round 7 / t64]
    for (const prod &pr : prods) {
        const uint32_t type = pr.type;
        const uint64_t wb = cuda_weight_bytes(type, pr.rows, pr.K) * pr.n;
        int copies = (int)((768ull << 20) / wb) + 1;
        if (copies > 16) copies = 16;
        if (copies < 8 && wb < (256ull << 20)) copies = 8;
        auto raw = st_gen_rows(type, pr.rows, pr.K);
        std::vector<cuda_weight> ws((size_t)copies * pr.n);
        for (auto &w : ws)
            if (!st_make_weight(&w, type, raw, pr.rows, pr.K)) return;
        const int forms = CUDA_MMIN_F16 | CUDA_MMIN_Q8;
        cuda_mmin m;
        cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(64, pr.K, forms)), 64, pr.K, forms);
        float *dx = dup(st_randn((size_t)64 * pr.K, 1.0));
        float *dy[2] = {(float *)dalloc((size_t)64 * pr.rows * 4), (float *)dalloc((size_t)64 * pr.rows * 4)};
        float *splitk = (float *)dalloc(32u << 20);
        for (int T : {48, 64}) {
            if (T == 48 && type != QUANT_Q8_0) continue;
            err e2 = {ERR_OK, {0}};
            if (cuda_mmin_prepare(dx, pr.K, &m, T, C->st, &e2)) return;
            for (int v = 0; v < 5; v++) {
                // Q8_0: round 7 and t64; K-quants' >= 16384-row products: G2; their 4096-row ones: hf2's split cap
                const bool big = pr.n * pr.rows >= 16384;
                if (v && (type == QUANT_Q8_0 ? v != 1 && !(v == 2 && big) : big ? v != 2 : v < 3)) continue;
                cuda_t64_set(v > 0);
                cuda_t64_g2_set(v == 2 ? (type == QUANT_Q8_0 ? 2 : 1) : 0);
                cuda_t64_hks_set(v == 3 ? 12 : v == 4 ? 16 : 8);
                cuda_mm_args a;
                memset(&a, 0, sizeof a);
                a.n = pr.n; a.exact = 0; a.work = splitk; a.work_bytes = 32u << 20;
                for (int i = 0; i < pr.n; i++) { a.y[i] = dy[i]; a.ldy[i] = pr.rows; }
                const long l0 = cuda_t64_launches(), l2 = cuda_gemms2_launches();
                const double us = time_us([&] {
                    for (int c = 0; c < copies; c++) {
                        for (int i = 0; i < pr.n; i++) a.w[i] = &ws[(size_t)c * pr.n + i];
                        err e3;
                        cuda_matmul(&a, &m, C->st, &e3);
                    }
                }, 5) / copies;
                const cudaError_t ce = cudaGetLastError();
                const double gbs = (double)wb / (us * 1e3);
                if (type == QUANT_Q8_0 && pr.rows < 65536 && v < 2) layer[T == 64][v > 0] += us;
                fprintf(C->f, "| %s | %s %dx%dx%d | %d | %s | %.1f | %.0f | %.0f%% | %s%s%s |\n", tname(type), pr.name, pr.n,
                        pr.rows, pr.K, T, vn[v], us, gbs, probe > 0 ? 100.0 * gbs / probe : 0.0,
                        cuda_t64_launches() > l0 ? "uneven split" : "", cuda_gemms2_launches() > l2 ? "gemms2" : "",
                        ce != cudaSuccess ? cudaGetErrorString(ce) : "");
                fflush(C->f);
            }
        }
        // Q8_0 gate+up at 64: the uneven split's rounds r (its rule: 3 on an H200)
        if (type == QUANT_Q8_0 && pr.n == 2) {
            for (int r = 2; r <= 6; r++) {
                cuda_t64_set(1);
                cuda_t64_g2_set(0); // (run 0's build left the G2 variant on here: those rows were gemms2)
                cuda_t64_rounds_set(r);
                cuda_mm_args a;
                memset(&a, 0, sizeof a);
                a.n = pr.n; a.exact = 0; a.work = splitk; a.work_bytes = 32u << 20;
                for (int i = 0; i < pr.n; i++) { a.y[i] = dy[i]; a.ldy[i] = pr.rows; }
                const long l0 = cuda_t64_launches(), l2 = cuda_gemms2_launches();
                const double us = time_us([&] {
                    for (int c = 0; c < copies; c++) {
                        for (int i = 0; i < pr.n; i++) a.w[i] = &ws[(size_t)c * pr.n + i];
                        err e3;
                        cuda_matmul(&a, &m, C->st, &e3);
                    }
                }, 5) / copies;
                const cudaError_t ce = cudaGetLastError();
                const double gbs = (double)wb / (us * 1e3);
                char vr[48];
                snprintf(vr, sizeof vr, "SPARKD_T64=1, rounds %d", r);
                fprintf(C->f, "| %s | %s %dx%dx%d | 64 | %s | %.1f | %.0f | %.0f%% | %s%s%s |\n", tname(type), pr.name, pr.n,
                        pr.rows, pr.K, vr, us, gbs, probe > 0 ? 100.0 * gbs / probe : 0.0,
                        cuda_t64_launches() > l0 ? "uneven split" : "", cuda_gemms2_launches() > l2 ? "gemms2" : "",
                        ce != cudaSuccess ? cudaGetErrorString(ce) : "");
                fflush(C->f);
                cuda_t64_rounds_set(0);
            }
        }
        cuda_t64_set(-1);
        cuda_t64_g2_set(-1);
        cuda_t64_hks_set(-1);
        dfree_all();
    }
    for (int ti = 0; ti < 2; ti++)
        fprintf(C->f, "| Q8_0 | layer (q+k+v, o, gate+up, down) | %d | round 7 %.1f us, t64 %.1f us | | | | t64 %.2fx |\n",
                ti ? 64 : 48, layer[ti][0], layer[ti][1], layer[ti][1] > 0 ? layer[ti][0] / layer[ti][1] : 0.0);
    st_close_stream();
}
