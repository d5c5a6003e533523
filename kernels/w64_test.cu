// w64_test.cu — round 9, helper w64: w64_kernel (gemm.cu), the products of 33..64 tokens on
// wgmma m64n64k16. Checks (w64_selftest, called by cuda_selftest) and the kernel bench
// (w64_kbench, SPARKD_KBENCH=w64).
//
// What is checked, per type (Q8_0, Q4_K, Q5_K, Q6_K) at T = 33, 48, 64:
// - w64_kernel (cuda_matmul in the engine's scope, cuda_w64_scope) against hf2_kernel on the same
//   f16 input (cuda_matmul outside the scope with hfast from 33 tokens): the same A values, the
//   same B, f32 sums in another order, so ||y - y_hf2|| / ||y_hf2|| per token <= 1e-4; and against
//   the f32 reference (weights dequantized by appliance/format/quant.c, the f32 input, float64
//   sums; nothing shared with the kernels) within 2e-3 (f16 rounding of the weights and input);
// - that w64_kernel ran (its launch counter) and hf2 ran for the other side (hfast's counter);
// - rows not multiples of the 192-row CTA, two matrices with a padded ldy, accumulate, the K
//   split by the rule (reduce launch), forced to 1 and to 5 pieces, and deferred (fz: the partials
//   described in cuda_defer summed here in the consumer's order);
// - the control: the deferred sum with piece 1 left out must differ by > 1e-3 (the partial layout
//   is what the check reads);
// - outside the engine's scope (or with SPARKD_W64=0) cuda_matmul must not take w64_kernel.
// Outputs are poisoned with NaN before each product (a skipped row or token fails).
#include "cuda.h"
#include "cuda_kern.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <algorithm>
#include <vector>

#include "kern_util.cuh"
#include "selftest_util.cuh"

extern "C" void cuda_w64_set(int mode);          // gemm.cu: 1 / 0 (-1: as SPARKD_W64 says)
extern "C" void cuda_w64_tune(int wg, int ks, int pipe); // gemm.cu: warpgroups a CTA (0: keep, -2: auto), K pieces (0: the rule,
                                                        // -1: keep), step (bit 0 SPARKD_W64_PIPE, bit 1 FENCE; -1: keep)
extern "C" void cuda_w64_scope(int on);          // gemm.cu: cuda_matmul routes as for the engine's products
extern "C" long cuda_w64_launches(void);         // gemm.cu: w64_kernel launches so far
extern "C" int cuda_w64_takes(int T, uint32_t type); // gemm.cu
extern "C" int cuda_hfast_launches(void);        // gemm.cu: hfast / hf2 launches so far
extern "C" void cuda_t64_g2_set(int lvl);        // gemms.cu: SPARKD_T64_G2 level 0..2 (-1: as it says)

namespace {

struct ctx_t : st_ctx {};
ctx_t *C;

void report(const char *what, const char *shape, double err, double tol, bool ok, const char *note = "") {
    ok = ok && !isnan(err);
    if (!ok) C->fails++;
    fprintf(C->f, "%s - %s %s: err %.3g (tol %.3g)%s%s\n", ok ? "ok" : "not ok", what, shape, err, tol, note[0] ? " " : "",
            note);
    fflush(C->f);
}

// One product of 1 or 2 matrices (N, N2 rows; N2's ldy padded) at T tokens on w64_kernel (ks: K
// pieces, 0 = the rule; defer: fz's deferred partials; drop: the control) against hf2 and f32.
void test_w64(uint32_t type, int N, int N2, int K, int T, int accumulate, int ks, int defer, int drop, int pipe = 1) {
    const int nm = N2 > 0 ? 2 : 1, Ns[2] = {N, N2}, ld[2] = {N, N2 + 3};
    cuda_weight w[2];
    std::vector<float> W[2];
    for (int i = 0; i < nm; i++) {
        auto raw = st_gen_rows(type, Ns[i], K);
        W[i] = st_ref_dequant(type, raw, Ns[i], K);
        if (!st_make_weight(&w[i], type, raw, Ns[i], K)) return;
    }
    auto x = st_randn((size_t)T * K, 1.0);
    for (size_t k = 0; k < x.size(); k += 97) x[k] *= 20.0f;      // outliers
    for (int k = 64; k < 96 && k < K; k++) x[k] = 0.0f;           // a zero block
    for (int k = 0; k < K; k++) x[(size_t)1 * K + k] *= 3000.0f; // a large token
    float *dx = dup(x);
    const int forms = CUDA_MMIN_F16;
    cuda_mmin m;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(T, K, forms)), T, K, forms);
    err e2 = {ERR_OK, {0}};
    if (cuda_mmin_prepare(dx, K, &m, T, C->st, &e2)) { fprintf(C->f, "not ok - w64 prepare: %s\n", e2.msg); C->fails++; return; }
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
    cuda_defer d;
    memset(&d, 0, sizeof d);
    int rc = 0;
    long l0 = 0, l1 = 0;
    int h0 = 0, h1 = 0;
    cuda_part parts[2];
    memset(parts, 0, sizeof parts);
    for (int v = 0; v < 2; v++) { // 0: hf2 (outside the scope, hfast from 33 tokens), 1: w64
        for (int i = 0; i < nm; i++) {
            if (accumulate) cudaMemcpy(dy[i], y0[i].data(), y0[i].size() * 4, cudaMemcpyHostToDevice);
            else poison(dy[i], (size_t)T * ld[i] * 4);
        }
        if (v) {
            cuda_w64_set(1);
            cuda_w64_tune(0, ks, pipe);
            cuda_w64_scope(1);
            d.on = defer;
            a.defer = defer ? &d : NULL;
            l0 = cuda_w64_launches();
        } else {
            cuda_hfast_set(33);
            h0 = cuda_hfast_launches();
        }
        rc |= cuda_matmul(&a, &m, C->st, &e2);
        cudaStreamSynchronize(C->st);
        if (v) {
            l1 = cuda_w64_launches();
            cuda_w64_scope(0);
            cuda_w64_tune(0, -1, 1);
            a.defer = NULL;
            if (defer) for (int i = 0; i < nm; i++) parts[i] = d.part[i];
        } else {
            h1 = cuda_hfast_launches();
            cuda_hfast_set(-1);
        }
        for (int i = 0; i < nm; i++) (v ? yn : yo)[i] = get(dy[i], (size_t)T * ld[i]);
    }
    cuda_w64_set(-1);
    const cudaError_t ce = cudaGetLastError();
    bool deferred = false;
    for (int i = 0; i < nm; i++) {
        if (parts[i].nz > 0) deferred = true;
        yn[i] = st_part_sum(parts[i], yn[i], T, Ns[i], ld[i], drop ? 1 : -1);
    }
    std::vector<int> toks = {0, 1, T - 1, T / 2};
    for (int i = 0; i < 4; i++) toks.push_back(C->rng.below(T));
    std::vector<int> all;
    for (int t = 0; t < T; t++) all.push_back(t);
    double eo = 0, ef = 0;
    int fin = 1;
    for (int i = 0; i < nm; i++) {
        eo = std::max(eo, st_tok_err(yn[i], &yo[i], ld[i], W[i], Ns[i], K, x, all, NULL, &fin));
        if (!drop) ef = std::max(ef, st_tok_err(yn[i], NULL, ld[i], W[i], Ns[i], K, x, toks, accumulate ? &y0[i] : NULL, &fin));
    }
    const bool ran = l1 > l0 && h1 > h0 && (!defer || deferred);
    char shape[128], note[200];
    snprintf(shape, sizeof shape, "%s N%d%s%.0d K%d T%d%s ks %s%s%s", tname(type), N, N2 ? "+" : "", N2, K, T,
             accumulate ? " +=" : "", ks ? (ks == 1 ? "1" : "5") : "rule", defer ? " deferred" : "",
             pipe == 0 ? " PIPE=0" : pipe == 3 ? " FENCE=1" : "");
    if (drop) {
        snprintf(note, sizeof note, "(partials of piece 1 left out: must differ from hf2 by > 1e-3%s)",
                 ran ? "" : "; w64 / hf2 / the deferral did NOT run");
        report("w64 control", shape, eo, 1e-3, rc == 0 && ce == cudaSuccess && ran && eo > 1e-3, note);
    } else {
        snprintf(note, sizeof note, "(vs hf2 on the same f16 input; vs f32 %.2g, tol 2e-3%s%s)", ef,
                 ran ? "" : "; w64 / hf2 / the deferral did NOT run", ce != cudaSuccess ? cudaGetErrorString(ce) : "");
        report("w64", shape, eo, 1e-4, rc == 0 && ce == cudaSuccess && fin && ran && eo <= 1e-4 && ef <= 2e-3, note);
    }
    dfree_all();
}

// Outside the engine's scope (scope 0) or with w64 off (mode 0) cuda_matmul must not take w64_kernel.
void test_w64_route(uint32_t type, int T, int scope, int mode) {
    const int N = 300, K = 1024;
    cuda_weight w;
    auto raw = st_gen_rows(type, N, K);
    if (!st_make_weight(&w, type, raw, N, K)) return;
    float *dx = dup(st_randn((size_t)T * K, 1.0));
    const int forms = CUDA_MMIN_F16 | CUDA_MMIN_Q8;
    cuda_mmin m;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(T, K, forms)), T, K, forms);
    err e2 = {ERR_OK, {0}};
    if (cuda_mmin_prepare(dx, K, &m, T, C->st, &e2)) { fprintf(C->f, "not ok - w64 prepare: %s\n", e2.msg); C->fails++; return; }
    float *dy = (float *)dalloc((size_t)T * N * 4);
    cuda_mm_args a;
    memset(&a, 0, sizeof a);
    a.n = 1; a.exact = 0; a.w[0] = &w; a.y[0] = dy; a.ldy[0] = N;
    a.work_bytes = 32u << 20;
    a.work = (float *)dalloc(a.work_bytes);
    cuda_w64_set(mode);
    cuda_w64_scope(scope);
    const long l0 = cuda_w64_launches();
    const int rc = cuda_matmul(&a, &m, C->st, &e2);
    cudaStreamSynchronize(C->st);
    const long l1 = cuda_w64_launches();
    cuda_w64_scope(0);
    cuda_w64_set(-1);
    char shape[96];
    snprintf(shape, sizeof shape, "%s T%d scope %d SPARKD_W64=%d", tname(type), T, scope, mode);
    report("w64 routing", shape, (double)(l1 - l0), 0, rc == 0 && cudaGetLastError() == cudaSuccess && l1 == l0,
           "(w64_kernel launches: must be 0)");
    dfree_all();
}

} // namespace

// The w64 rows of cuda_selftest (kernels/selftest.cu calls it after the t64 rows).
int w64_selftest(void *file, int quick, uint64_t seed, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, quick, e);
    C = &ctx;
    ctx.rng.s = seed;
    if (!st_open_stream()) return 1;
    cuda_w64_set(-1);
    if (!cuda_w64_takes(64, QUANT_Q8_0)) {
        fprintf(ctx.f, "ok - w64 skipped (w64_kernel needs sm_90a; SPARKD_W64=0 also skips)\n");
        test_w64_route(QUANT_Q8_0, 64, 1, 1);
        st_close_stream();
        return ctx.fails;
    }
    cuda_gemms_set(0, -1);
    cuda_t64_g2_set(0); // (the hf2 side: hf2 for every product, not gemms2)
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K, QUANT_Q5_K}) {
        const int K = t == QUANT_Q8_0 ? 2112 : 2304; // 33 / 36 chunks of 64
        for (int T : {33, 48, 64}) {
            if (quick && t == QUANT_Q5_K && T != 48) continue;
            test_w64(t, 1000, 0, K, T, 0, 0, 0, 0);           // 5.2 row tiles, the rule's split (reduce launch)
            test_w64(t, 257, 67, K, T, T == 48, 1, 0, 0);     // two matrices, ldy padded, one K piece (+= at 48)
            test_w64(t, 385, 0, K, T, 0, 5, 1, 0);            // 5 K pieces, deferred
        }
        test_w64(t, 385, 0, K, 64, 0, 5, 1, 1); // the control
        if (t != QUANT_Q5_K) { // SPARKD_W64_PIPE=0 (each step drains its wgmma)
            test_w64(t, 1000, 0, K, 64, 0, 0, 0, 0, 0);
            test_w64(t, 385, 0, K, 40, 0, 5, 1, 0, 0);
        }
        if (t == QUANT_Q8_0 || t == QUANT_Q4_K) test_w64(t, 1000, 0, K, 64, 0, 0, 0, 0, 3); // SPARKD_W64_FENCE=1
        if (!quick) test_w64(t, 4096, 0, 4096, 64, 0, 0, 1, 0); // o's shape at the rule's split
    }
    test_w64_route(QUANT_Q8_0, 64, 0, 1);
    test_w64_route(QUANT_Q4_K, 48, 1, 0);
    test_w64_route(QUANT_Q8_0, 65, 1, 1);
    cuda_t64_g2_set(-1);
    cuda_gemms_set(-1, -1);
    st_close_stream();
    return ctx.fails;
}

// SPARKD_KBENCH=w64 (cuda_kbench): the Qwen3-8B products at 64 and 48 tokens, today's routing
// (outside the engine's scope: Q8_0 on mmq, K-quants on hf2 / gemms2) beside w64_kernel (WG 3 and,
// for Q8_0 / Q4_K, 2 and 4 warpgroups a CTA), weights rotated over copies beyond the L2, launches
// back to back, the layer products' split-K partials deferred as in the engine (no reduce launch;
// the head reduces); GB/s = weight bytes / time, % of the probe; a layer row per type and T.
void w64_kbench(void *file, double probe, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    ctx.rng.s = 6464;
    if (!st_open_stream()) return;
    cuda_w64_set(-1);
    const bool on = cuda_w64_takes(64, QUANT_Q8_0);
    // SPARKD_KBENCH_W64=TYPE:PRODUCT[:VARIANT] (e.g. Q8_0:gate+up:1, for ncu): that product at T = 64 only
    const char *only = getenv("SPARKD_KBENCH_W64");
    char only_name[64] = "";
    int only_v = -1;
    if (only) {
        const char *c2 = strchr(only, ':') ? strchr(strchr(only, ':') + 1, ':') : NULL;
        snprintf(only_name, sizeof only_name, "%.*s", c2 ? (int)(c2 - only) : (int)strlen(only), only);
        if (c2) only_v = atoi(c2 + 1);
    }
    fprintf(ctx.f, "| type | product | T | routing | us | GB/s (weights) | %% probe |\n|---|---|---|---|---|---|---|\n");
    struct prod { uint32_t type; const char *name; int n, rows, K; bool layer; } prods[] = {
        {QUANT_Q8_0, "q+k+v", 3, 0, 4096, true}, {QUANT_Q8_0, "o", 1, 4096, 4096, true},
        {QUANT_Q8_0, "gate+up", 2, 12288, 4096, true}, {QUANT_Q8_0, "down", 1, 4096, 12288, true},
        {QUANT_Q8_0, "head", 1, 151936, 4096, false},
        {QUANT_Q4_K, "q+k+v", 3, 0, 4096, true}, {QUANT_Q4_K, "o", 1, 4096, 4096, true},
        {QUANT_Q4_K, "gate+up", 2, 12288, 4096, true}, {QUANT_Q4_K, "down", 1, 4096, 12288, true},
        {QUANT_Q6_K, "down", 1, 4096, 12288, false}, {QUANT_Q6_K, "head", 1, 151936, 4096, false}};
    const char *vn[7] = {"today (mmq / hf2 / gemms2)", "w64 WG 3", "w64 WG 2", "w64 WG 4", "w64 WG 3 PIPE=0", "w64 WG 3 FENCE=1",
                         "w64 WG auto"};
    double layer[2][2][7]; // [Q8_0, Q4_K][T 48, 64][variant]
    memset(layer, 0, sizeof layer);
    for (const prod &pr : prods) {
        const uint32_t type = pr.type;
        if (only) {
            char nm[64];
            snprintf(nm, sizeof nm, "%s:%s", tname(type), pr.name);
            if (strcasecmp(nm, only_name)) continue;
        }
        // q+k+v: 4096 + 1024 + 1024 rows (three matrices, one launch)
        const int rows[3] = {pr.rows ? pr.rows : 4096, pr.rows ? pr.rows : 1024, 1024};
        uint64_t wb = 0;
        for (int i = 0; i < pr.n; i++) wb += cuda_weight_bytes(type, rows[i], pr.K);
        int copies = (int)((768ull << 20) / wb) + 1;
        if (copies > 16) copies = 16;
        if (copies < 8 && wb < (256ull << 20)) copies = 8;
        std::vector<cuda_weight> ws((size_t)copies * pr.n);
        for (int i = 0; i < pr.n; i++) {
            auto raw = st_gen_rows(type, rows[i], pr.K);
            for (int c = 0; c < copies; c++)
                if (!st_make_weight(&ws[(size_t)c * pr.n + i], type, raw, rows[i], pr.K)) return;
        }
        const int forms = CUDA_MMIN_F16 | CUDA_MMIN_Q8;
        cuda_mmin m;
        cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(64, pr.K, forms)), 64, pr.K, forms);
        float *dx = dup(st_randn((size_t)64 * pr.K, 1.0));
        float *dy[3];
        for (int i = 0; i < pr.n; i++) dy[i] = (float *)dalloc((size_t)64 * rows[i] * 4);
        float *splitk = (float *)dalloc(32u << 20);
        for (int T : {48, 64}) {
            if (only && T != 64) continue;
            err e2 = {ERR_OK, {0}};
            if (cuda_mmin_prepare(dx, pr.K, &m, T, C->st, &e2)) return;
            for (int v = 0; v < 7; v++) {
                if ((v && !on) || (only_v >= 0 && v != only_v)) continue;
                if ((v == 2 || v == 3 || v >= 5) && type == QUANT_Q6_K) continue;
                if (v >= 4 && T == 48) continue;
                cuda_w64_tune(v == 2 ? 2 : v == 3 ? 4 : v == 6 ? -2 : 3, 0, v == 4 ? 0 : v == 5 ? 3 : 1);
                cuda_mm_args a;
                memset(&a, 0, sizeof a);
                cuda_defer d;
                memset(&d, 0, sizeof d);
                d.on = 1;
                a.n = pr.n; a.exact = 0; a.work = splitk; a.work_bytes = 32u << 20;
                a.defer = pr.rows == 151936 ? NULL : &d;
                for (int i = 0; i < pr.n; i++) { a.y[i] = dy[i]; a.ldy[i] = rows[i]; }
                const long l0 = cuda_w64_launches();
                cuda_w64_scope(v > 0);
                const double us = time_us([&] {
                    for (int c = 0; c < copies; c++) {
                        for (int i = 0; i < pr.n; i++) a.w[i] = &ws[(size_t)c * pr.n + i];
                        err e3;
                        cuda_matmul(&a, &m, C->st, &e3);
                    }
                }, 5) / copies;
                cuda_w64_scope(0);
                const cudaError_t ce = cudaGetLastError();
                const double gbs = (double)wb / (us * 1e3);
                if (pr.layer) layer[type == QUANT_Q4_K][T == 64][v] += us;
                fprintf(C->f, "| %s | %s %dx%dx%d | %d | %s | %.1f | %.0f | %.0f%%%s%s%s |\n", tname(type), pr.name, pr.n,
                        rows[0], pr.K, T, vn[v], us, gbs, probe > 0 ? 100.0 * gbs / probe : 0.0,
                        v && cuda_w64_launches() == l0 ? " (w64 did NOT run)" : "", ce != cudaSuccess ? " " : "",
                        ce != cudaSuccess ? cudaGetErrorString(ce) : "");
                fflush(C->f);
            }
        }
        cuda_w64_tune(3, 0, 1);
        dfree_all();
    }
    for (int ty = 0; ty < 2; ty++)
        for (int ti = 0; ti < 2; ti++)
            fprintf(C->f, "| %s | layer (q+k+v, o, gate+up, down) | %d | today %.1f us, w64 WG 3 %.1f, WG 2 %.1f, WG 4 %.1f, PIPE=0 %.1f, FENCE=1 %.1f, WG auto %.1f | | | w64 %.2fx |\n",
                    ty ? "Q4_K" : "Q8_0", ti ? 64 : 48, layer[ty][ti][0], layer[ty][ti][1], layer[ty][ti][2], layer[ty][ti][3], layer[ty][ti][4], layer[ty][ti][5], layer[ty][ti][6],
                    layer[ty][ti][1] > 0 ? layer[ty][ti][0] / layer[ty][ti][1] : 0.0);
    cuda_w64_set(-1);
    st_close_stream();
}
