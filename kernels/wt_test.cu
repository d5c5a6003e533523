// wt_test.cu — round 13, helper wt: SPARKD_WT (gemm.cu): 1 runs SPARKD_WX=4's Q8_0 launches (wx_kernel with the codes
// and the meta by tensor copies) on wt_kernel (the step's CTA barrier replaced by per-slot mbarriers, 8 stages), 2
// (default) the same with the step unrolled 8 times (constant slots), 0 wx_kernel as before. Checks (wt_selftest, called by cuda_selftest; also run first by the kernel bench) and
// the kernel bench (wt_kbench, SPARKD_KBENCH=wt).
//
// What is checked (Q8_0; K a multiple of 256, as SPARKD_WX=4 needs), at T = 33, 48, 64, WG 3 and 4:
// - SPARKD_WT=1 and 2 against SPARKD_WT=0 on the same f16 input: the same A values, B, wgmma sequence and order of the sums,
//   so the outputs must be bit-identical (tol 0); and against the f32 reference (weights dequantized by
//   appliance/format/quant.c, the f32 input, float64 sums) within 2e-3 (f16 rounding of weights and input);
// - that wt_kernel ran on the on side (its launch counter) and not on the off side, and wx's MT path on both;
// - rows not multiples of the CTA, two matrices with a padded ldy, accumulate, the K split by the rule, forced to 1
//   and to 5 pieces (deferred partials; pieces of 7-8 chunks, groups of 4 split), K of 4 chunks (fewer than the 6
//   the prologue fills), K of 48 chunks in one piece (the ring wraps 6 times: every slot's mbarriers through both
//   parities several times);
// - the control: the on side with token T - 1's input doubled must differ from the off side by > 1e-3.
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

extern "C" void cuda_w64_set(int mode);                  // gemm.cu: 1 / 0 (-1: as SPARKD_W64 says)
extern "C" void cuda_w64_tune(int wg, int ks, int pipe); // gemm.cu (see w64_test.cu)
extern "C" void cuda_w64_scope(int on);                  // gemm.cu: cuda_matmul routes as for the engine's products
extern "C" long cuda_w64_launches(void);                 // gemm.cu
extern "C" int cuda_w64_takes(int T, uint32_t type);     // gemm.cu
extern "C" void cuda_wx_set(int mode);                   // gemm.cu: SPARKD_WX (-1: as it says)
extern "C" long cuda_wx4_launches(void);                 // gemm.cu: launches on SPARKD_WX=4's Q8_0 path
extern "C" void cuda_wx_last(int *ctas, int *chunks);    // gemm.cu: the last w64 launch's CTAs, chunks a CTA
extern "C" void cuda_wt_set(int mode);                   // gemm.cu: SPARKD_WT 0 / 1 (-1: as it says)
extern "C" long cuda_wt_launches(void);                  // gemm.cu: wt_kernel launches
extern "C" long cuda_wt2_launches(void);                 // gemm.cu: ... of them with the step unrolled 8 times (2)
extern "C" void cuda_t64_g2_set(int lvl);                // gemms.cu

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

// One Q8_0 product of 1 or 2 matrices at T tokens on SPARKD_WX=4's path, SPARKD_WT=0 (side 0) against SPARKD_WT=mode
// (side 1: 1 or 2); wg: warpgroups (3 / 4); ks: K pieces (0: the rule); defer: deferred partials; control: side 1's
// token T - 1 input doubled.
void test_wt(int mode, int N, int N2, int K, int T, int accumulate, int ks, int defer, int wg, int control) {
    const uint32_t type = QUANT_Q8_0;
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
    auto x2 = x;
    for (int k = 0; k < K; k++) x2[(size_t)(T - 1) * K + k] *= 2.0f;
    float *dx = dup(x), *dx2 = dup(x2);
    const int forms = CUDA_MMIN_F16;
    cuda_mmin m[2];
    err e2 = {ERR_OK, {0}};
    for (int v = 0; v < 2; v++) {
        cuda_mmin_carve(&m[v], dalloc(cuda_mmin_bytes(T, K, forms)), T, K, forms);
        if (cuda_mmin_prepare(v ? dx2 : dx, K, &m[v], T, C->st, &e2)) {
            fprintf(C->f, "not ok - wt prepare: %s\n", e2.msg);
            C->fails++;
            return;
        }
    }
    std::vector<float> y0[2], ys[2][2];
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
    long tl[2] = {0, 0}, xl[2] = {0, 0}, t2l = 0;
    bool deferred = true;
    for (int v = 0; v < 2; v++) { // 0: SPARKD_WT=0, 1: SPARKD_WT=1
        for (int i = 0; i < nm; i++) {
            if (accumulate) cudaMemcpy(dy[i], y0[i].data(), y0[i].size() * 4, cudaMemcpyHostToDevice);
            else poison(dy[i], (size_t)T * ld[i] * 4);
        }
        cuda_defer d;
        memset(&d, 0, sizeof d);
        d.on = defer;
        a.defer = defer ? &d : NULL;
        cuda_w64_set(1);
        cuda_wx_set(4);
        cuda_wt_set(v ? mode : 0);
        cuda_w64_tune(wg, ks, 1);
        cuda_w64_scope(1);
        const long t0 = cuda_wt_launches(), x0 = cuda_wx4_launches(), t20 = cuda_wt2_launches();
        rc |= cuda_matmul(&a, &m[control && v ? 1 : 0], C->st, &e2);
        cudaStreamSynchronize(C->st);
        tl[v] = cuda_wt_launches() - t0, xl[v] = cuda_wx4_launches() - x0;
        if (v) t2l = cuda_wt2_launches() - t20;
        cuda_w64_scope(0);
        for (int i = 0; i < nm; i++) {
            ys[v][i] = get(dy[i], (size_t)T * ld[i]);
            if (defer) {
                if (d.part[i].nz == 0 && ks != 1) deferred = false;
                ys[v][i] = st_part_sum(d.part[i], ys[v][i], T, Ns[i], ld[i]);
            }
        }
        a.defer = NULL;
    }
    cuda_w64_tune(3, 0, 1);
    cuda_wt_set(-1);
    cuda_wx_set(-1);
    cuda_w64_set(-1);
    const cudaError_t ce = cudaGetLastError();
    std::vector<int> toks = {0, 1, T - 1, T / 2};
    for (int i = 0; i < 4; i++) toks.push_back(C->rng.below(T));
    std::vector<int> all;
    for (int t = 0; t < T; t++) all.push_back(t);
    double eo = 0, ef = 0;
    int fin = 1;
    for (int i = 0; i < nm; i++) {
        eo = std::max(eo, st_tok_err(ys[1][i], &ys[0][i], ld[i], W[i], Ns[i], K, x, all, NULL, &fin));
        if (!control) ef = std::max(ef, st_tok_err(ys[1][i], NULL, ld[i], W[i], Ns[i], K, x, toks, accumulate ? &y0[i] : NULL, &fin));
    }
    const bool ran = tl[0] == 0 && tl[1] > 0 && xl[0] > 0 && xl[1] > 0 && deferred && (mode == 2) == (t2l > 0);
    char shape[160], note[200];
    snprintf(shape, sizeof shape, "Q8_0 N%d%s%.0d K%d T%d%s ks %s%s WG %d SPARKD_WT=%d", N, N2 ? "+" : "", N2, K, T,
             accumulate ? " +=" : "", ks ? (ks == 1 ? "1" : "5") : "rule", defer ? " deferred" : "", wg, mode);
    if (control) {
        snprintf(note, sizeof note, "(on side's token %d input doubled: must differ from SPARKD_WT=0 by > 1e-3%s)", T - 1,
                 ran ? "" : "; wt / wx did NOT run as asked");
        report("wt control", shape, eo, 1e-3, rc == 0 && ce == cudaSuccess && ran && eo > 1e-3, note);
    } else {
        snprintf(note, sizeof note, "(vs SPARKD_WT=0 bitwise; vs f32 %.2g, tol 2e-3%s%s%s)", ef,
                 ran ? "" : "; wt / wx did NOT run as asked", ce != cudaSuccess ? " " : "",
                 ce != cudaSuccess ? cudaGetErrorString(ce) : "");
        report("wt", shape, eo, 0, rc == 0 && ce == cudaSuccess && fin && ran && eo == 0 && ef <= 2e-3, note);
    }
    dfree_all();
}

void wt_rows(int quick) {
    for (int mode : {1, 2})
        for (int wg : {3, 4}) {
            for (int T : {33, 48, 64}) {
                if (quick && T == 48) continue;
                test_wt(mode, 1000, 0, 2304, T, 0, 0, 0, wg, 0);       // row tiles not whole, the rule's split
                test_wt(mode, 257, 67, 2304, T, T == 33, 1, 0, wg, 0); // two matrices, ldy padded, one piece (36 chunks)
                test_wt(mode, 385, 0, 2304, T, 0, 5, 1, wg, 0);        // 5 pieces of 7-8 chunks, deferred
            }
            test_wt(mode, 300, 0, 256, 64, 0, 1, 0, wg, 0);  // 4 chunks: fewer than the prologue's 6
            test_wt(mode, 200, 0, 3072, 64, 1, 1, 0, wg, 0); // 48 chunks in one piece, accumulate
            test_wt(mode, 385, 0, 2304, 64, 0, 5, 1, wg, 1); // the control
        }
    if (!quick) test_wt(1, 4096, 0, 4096, 64, 0, 0, 1, 4, 0); // o's shape at the rule's split
}
} // namespace

// The wt rows of cuda_selftest (kernels/selftest.cu calls it after the wx rows).
int wt_selftest(void *file, int quick, uint64_t seed, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, quick, e);
    C = &ctx;
    ctx.rng.s = seed;
    if (!st_open_stream()) return 1;
    cuda_w64_set(1);
    const bool on = cuda_w64_takes(64, QUANT_Q8_0);
    cuda_w64_set(-1);
    if (!on) {
        fprintf(ctx.f, "ok - wt skipped (wt_kernel needs sm_90a)\n");
        st_close_stream();
        return ctx.fails;
    }
    cuda_gemms_set(0, -1);
    cuda_t64_g2_set(0);
    wt_rows(quick);
    cuda_t64_g2_set(-1);
    cuda_gemms_set(-1, -1);
    st_close_stream();
    return ctx.fails;
}

// SPARKD_KBENCH=wt (cuda_kbench): the Qwen3-8B Q8_0 products on SPARKD_WX=4's path in the engine's routing (scope on, WG
// as the default picks, the layer products' partials deferred as in the engine), SPARKD_WT 0 / 1 / 2 one after another
// in the order 0 1 2 2 1 0 (drift shows; SPARKD_KBENCH_WT_V=0110 e.g. picks others), weights rotated over copies beyond
// the L2 (the head: 2 copies); us, GB/s of weights, % of the probe, CTAs x chunks, us a chunk (time / (waves x chunks
// a CTA)); the layer (q+k+v, o, gate+up, down) at T = 33, 48, 64; then a chain of 24 layers with distinct weights (the
// 4 products in the model's order, us a layer). The correctness rows first (as in the self-test).
// SPARKD_KBENCH_WT=PRODUCT (e.g. gate+up, chain): that product only (for ncu).
void wt_kbench(void *file, double probe, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    ctx.rng.s = 1313;
    if (!st_open_stream()) return;
    cuda_w64_set(1);
    if (!cuda_w64_takes(64, QUANT_Q8_0)) {
        fprintf(ctx.f, "wt kbench: wt_kernel needs sm_90a\n");
        cuda_w64_set(-1);
        st_close_stream();
        return;
    }
    cuda_gemms_set(0, -1);
    cuda_t64_g2_set(0);
    const char *only = getenv("SPARKD_KBENCH_WT");
    if (!only) {
        wt_rows(1);
        fprintf(ctx.f, "wt rows: %d not ok\n", ctx.fails);
    }
    cuda_w64_set(1);
    fprintf(ctx.f, "| product | T | SPARKD_WT | us | GB/s (weights) | %% probe | CTAs x chunks | us a chunk |\n"
                   "|---|---|---|---|---|---|---|---|\n");
    struct prod { const char *name; int n, rows, K; bool layer; } prods[] = {
        {"q+k+v", 3, 0, 4096, true}, {"o", 1, 4096, 4096, true}, {"gate+up", 2, 12288, 4096, true},
        {"down", 1, 4096, 12288, true}, {"head", 1, 151936, 4096, false}};
    double layer[3][3]; // [T 33, 48, 64][WT]
    memset(layer, 0, sizeof layer);
    const int Ts[3] = {33, 48, 64};
    // SPARKD_KBENCH_WT_V (e.g. "0,1,1,0"): the SPARKD_WT values in order (default 0 1 2 2 1 0: drift shows)
    int order[8] = {0, 1, 2, 2, 1, 0}, no = 6;
    if (const char *vl = getenv("SPARKD_KBENCH_WT_V")) {
        no = 0;
        for (const char *q = vl; *q && no < 8; q++)
            if (*q >= '0' && *q <= '2') order[no++] = *q - '0';
    }
    int nv[3] = {0, 0, 0};
    for (int i = 0; i < no; i++) nv[order[i]]++;
    int sms = 132, dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) sms = 132;
    const uint32_t type = QUANT_Q8_0;
    for (const prod &pr : prods) {
        if (only && strcasecmp(pr.name, only)) continue;
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
        const int forms = CUDA_MMIN_F16;
        cuda_mmin m;
        cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(64, pr.K, forms)), 64, pr.K, forms);
        float *dx = dup(st_randn((size_t)64 * pr.K, 1.0));
        float *dy[3];
        for (int i = 0; i < pr.n; i++) dy[i] = (float *)dalloc((size_t)64 * rows[i] * 4);
        float *splitk = (float *)dalloc(32u << 20);
        for (int ti = 0; ti < 3; ti++) {
            const int T = Ts[ti];
            if (T != 64 && (!pr.layer || only)) continue;
            err e2 = {ERR_OK, {0}};
            if (cuda_mmin_prepare(dx, pr.K, &m, T, C->st, &e2)) return;
            for (int oi = 0; oi < no; oi++) {
                const int v = order[oi];
                cuda_wx_set(4);
                cuda_wt_set(v);
                cuda_w64_tune(-2, 0, 1);
                cuda_mm_args a;
                memset(&a, 0, sizeof a);
                cuda_defer d;
                memset(&d, 0, sizeof d);
                d.on = 1;
                a.n = pr.n; a.exact = 0; a.work = splitk; a.work_bytes = 32u << 20;
                a.defer = pr.rows == 151936 ? NULL : &d;
                for (int i = 0; i < pr.n; i++) { a.y[i] = dy[i]; a.ldy[i] = rows[i]; }
                const long t0 = cuda_wt_launches(), x0 = cuda_wx4_launches();
                cuda_w64_scope(1);
                const double us = time_us([&] {
                    for (int c = 0; c < copies; c++) {
                        for (int i = 0; i < pr.n; i++) a.w[i] = &ws[(size_t)c * pr.n + i];
                        err e3;
                        cuda_matmul(&a, &m, C->st, &e3);
                    }
                }, 5) / copies;
                cuda_w64_scope(0);
                const cudaError_t ce = cudaGetLastError();
                int ctas = 0, chunks = 0;
                cuda_wx_last(&ctas, &chunks);
                const int waves = (ctas + sms - 1) / sms;
                const double gbs = (double)wb / (us * 1e3);
                if (pr.layer) layer[ti][v] += us / nv[v];
                const bool bad = cuda_wx4_launches() == x0 || (v > 0) != (cuda_wt_launches() > t0);
                fprintf(C->f, "| %s %dx%dx%d | %d | %d | %.1f | %.0f | %.0f%% | %d x %d | %.3f%s%s%s |\n", pr.name, pr.n, rows[0], pr.K,
                        T, v, us, gbs, probe > 0 ? 100.0 * gbs / probe : 0.0, ctas, chunks,
                        chunks > 0 ? us / (waves * chunks) : 0.0, bad ? " (wt / wx did NOT run as asked)" : "",
                        ce != cudaSuccess ? " " : "", ce != cudaSuccess ? cudaGetErrorString(ce) : "");
                fflush(C->f);
            }
        }
        dfree_all();
    }
    for (int ti = 0; ti < 3; ti++)
        if (layer[ti][0] > 0)
            fprintf(C->f, "| layer (q+k+v, o, gate+up, down) | %d | WT 0 %.1f us, WT 1 %.1f, WT 2 %.1f | | | | | WT 1 %.3fx, WT 2 %.3fx |\n",
                    Ts[ti], layer[ti][0], layer[ti][1], layer[ti][2], layer[ti][1] > 0 ? layer[ti][0] / layer[ti][1] : 0.0,
                    layer[ti][2] > 0 ? layer[ti][0] / layer[ti][2] : 0.0);
    // The layer chain: q+k+v, o, gate+up, down of NL layers with distinct weights one after another (the model's order
    // of products without its other launches), T = 64, us a layer, WT 0 1 1 0.
    if (!only || !strcasecmp(only, "chain")) {
        const int NL = 24;
        struct sh { int rows, K; } shp[7] = {{4096, 4096}, {1024, 4096}, {1024, 4096}, {4096, 4096}, {12288, 4096}, {12288, 4096}, {4096, 12288}};
        std::vector<cuda_weight> ws((size_t)NL * 7);
        bool okw = true;
        for (int i = 0; i < 7 && okw; i++) {
            auto raw = st_gen_rows(type, shp[i].rows, shp[i].K);
            for (int l = 0; l < NL && okw; l++) okw = st_make_weight(&ws[(size_t)l * 7 + i], type, raw, shp[i].rows, shp[i].K);
        }
        const int forms = CUDA_MMIN_F16;
        cuda_mmin m4, m12;
        err e2 = {ERR_OK, {0}};
        if (okw) {
            cuda_mmin_carve(&m4, dalloc(cuda_mmin_bytes(64, 4096, forms)), 64, 4096, forms);
            cuda_mmin_carve(&m12, dalloc(cuda_mmin_bytes(64, 12288, forms)), 64, 12288, forms);
            float *dx4 = dup(st_randn((size_t)64 * 4096, 1.0)), *dx12 = dup(st_randn((size_t)64 * 12288, 1.0));
            okw = !cuda_mmin_prepare(dx4, 4096, &m4, 64, C->st, &e2) && !cuda_mmin_prepare(dx12, 12288, &m12, 64, C->st, &e2);
        }
        if (!okw) fprintf(C->f, "wt chain: setup failed\n");
        float *dy[7];
        for (int i = 0; i < 7 && okw; i++) dy[i] = (float *)dalloc((size_t)64 * shp[i].rows * 4);
        float *splitk = okw ? (float *)dalloc(32u << 20) : NULL;
        double ch[3] = {0, 0, 0};
        for (int oi = 0; oi < no && okw; oi++) {
            const int v = order[oi];
            cuda_wx_set(4);
            cuda_wt_set(v);
            cuda_w64_tune(-2, 0, 1);
            cuda_w64_scope(1);
            const double us = time_us([&] {
                for (int l = 0; l < NL; l++) {
                    for (int g = 0; g < 4; g++) {
                        cuda_mm_args a;
                        memset(&a, 0, sizeof a);
                        cuda_defer d;
                        memset(&d, 0, sizeof d);
                        d.on = 1;
                        a.n = g == 0 ? 3 : g == 2 ? 2 : 1;
                        a.exact = 0; a.work = splitk; a.work_bytes = 32u << 20; a.defer = &d;
                        for (int i = 0; i < a.n; i++) {
                            const int wi = g == 0 ? i : g == 1 ? 3 : g == 2 ? 4 + i : 6;
                            a.w[i] = &ws[(size_t)l * 7 + wi];
                            a.y[i] = dy[wi];
                            a.ldy[i] = shp[wi].rows;
                        }
                        err e3;
                        cuda_matmul(&a, g == 3 ? &m12 : &m4, C->st, &e3);
                    }
                }
            }, 3) / NL;
            cuda_w64_scope(0);
            ch[v] += us / nv[v];
            const cudaError_t ce = cudaGetLastError();
            fprintf(C->f, "| chain of %d layers (q+k+v, o, gate+up, down; distinct weights) | 64 | %d | %.1f us a layer |%s%s |\n", NL, v,
                    us, ce != cudaSuccess ? " " : "", ce != cudaSuccess ? cudaGetErrorString(ce) : "");
            fflush(C->f);
        }
        if (ch[0] > 0)
            fprintf(C->f, "| chain | 64 | WT 0 %.1f us, WT 1 %.1f, WT 2 %.1f us a layer | WT 1 %.3fx, WT 2 %.3fx |\n", ch[0], ch[1], ch[2],
                    ch[1] > 0 ? ch[0] / ch[1] : 0.0, ch[2] > 0 ? ch[0] / ch[2] : 0.0);
        dfree_all();
    }
    cuda_w64_tune(3, 0, 1);
    cuda_wt_set(-1);
    cuda_wx_set(-1);
    cuda_w64_set(-1);
    cuda_t64_g2_set(-1);
    cuda_gemms_set(-1, -1);
    st_close_stream();
}
