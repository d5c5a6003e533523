// wx_test.cu — round 12, helper wx: SPARKD_WX (gemm.cu): 4 (default) / 3 wx_kernel (the codes, and for 4 Q8_0's
// meta, by tensor copies), 1 w64_kernel's weight copies with the L2::256B prefetch size (P 5), 0 w64 as before.
// Checks (wx_selftest, called by cuda_selftest; also run first by the kernel bench) and the kernel bench
// (wx_kbench, SPARKD_KBENCH=wx).
//
// What is checked, per type (Q8_0, Q4_K, Q6_K) at T = 33, 48, 64:
// - w64 with SPARKD_WX=1 against w64 with SPARKD_WX=0 on the same f16 input: the
//   same instructions but for the copies' prefetch size, so the outputs must be bit-identical (tol 0); the same
//   for SPARKD_WX=3 (wx_kernel: the same A values, B and order of the sums; only how the codes arrive differs);
//   and against the f32 reference (weights dequantized by appliance/format/quant.c, the f32 input,
//   float64 sums) within 2e-3 (f16 rounding of the weights and input, as w64_test.cu);
// - that the wx variant ran on the on side (its launch counter) and not on the off side;
// - rows not multiples of the CTA, two matrices with a padded ldy, accumulate, the K split by the rule,
//   forced to 1 and to 5 pieces (deferred partials), WG 4 (Q8_0);
// - the control: the on side with token T - 1's input doubled must differ from the off side by > 1e-3
//   (else the bitwise check could not see a wrong output);
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
extern "C" void cuda_wx_set(int mode);                   // gemm.cu: SPARKD_WX 0 / 1 / 2 (-1: as it says)
extern "C" long cuda_wx_launches(void);                  // gemm.cu: launches that took a wx variant
extern "C" long cuda_wx3_launches(void);                 // gemm.cu: ... wx_kernel (SPARKD_WX=3, 4)
extern "C" long cuda_wx4_launches(void);                 // gemm.cu: ... wx_kernel with the meta by tensor copies (4)
extern "C" void cuda_wx_last(int *ctas, int *chunks);    // gemm.cu: the last w64 launch's CTAs, chunks a CTA
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

// One product of 1 or 2 matrices at T tokens on w64_kernel, SPARKD_WX=0 (side 0) against SPARKD_WX=mode
// (side 1); wg: warpgroups (0: the default), ks: K pieces (0: the rule), defer: deferred partials,
// control: side 1's token T - 1 input doubled.
void test_wx(uint32_t type, int N, int N2, int K, int T, int accumulate, int ks, int defer, int mode, int wg, int control) {
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
            fprintf(C->f, "not ok - wx prepare: %s\n", e2.msg);
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
    long wl[2] = {0, 0}, ll[2] = {0, 0}, w3 = 0, w4 = 0;
    bool deferred = true;
    for (int v = 0; v < 2; v++) { // 0: SPARKD_WX=0, 1: SPARKD_WX=mode
        for (int i = 0; i < nm; i++) {
            if (accumulate) cudaMemcpy(dy[i], y0[i].data(), y0[i].size() * 4, cudaMemcpyHostToDevice);
            else poison(dy[i], (size_t)T * ld[i] * 4);
        }
        cuda_defer d;
        memset(&d, 0, sizeof d);
        d.on = defer;
        a.defer = defer ? &d : NULL;
        cuda_w64_set(1);
        cuda_wx_set(v ? mode : 0);
        cuda_w64_tune(wg ? wg : type == QUANT_Q8_0 ? -2 : 3, ks, 1); // (the engine's default WG)
        cuda_w64_scope(1);
        const long w0 = cuda_wx_launches(), l0 = cuda_w64_launches(), w30 = cuda_wx3_launches(), w40 = cuda_wx4_launches();
        rc |= cuda_matmul(&a, &m[control && v ? 1 : 0], C->st, &e2);
        cudaStreamSynchronize(C->st);
        wl[v] = cuda_wx_launches() - w0, ll[v] = cuda_w64_launches() - l0;
        if (v) w3 = cuda_wx3_launches() - w30, w4 = cuda_wx4_launches() - w40;
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
    const bool ran = ll[0] > 0 && ll[1] > 0 && wl[0] == 0 && wl[1] > 0 && deferred && (mode == 3 || mode == 4) == (w3 > 0) &&
                     (mode == 4 && type == QUANT_Q8_0 && K % 256 == 0) == (w4 > 0);
    char shape[160], note[200];
    snprintf(shape, sizeof shape, "%s N%d%s%.0d K%d T%d%s ks %s%s WG %s SPARKD_WX=%d", tname(type), N, N2 ? "+" : "", N2, K, T,
             accumulate ? " +=" : "", ks ? (ks == 1 ? "1" : "5") : "rule", defer ? " deferred" : "", wg ? (wg == 4 ? "4" : "3") : "default",
             mode);
    if (control) {
        snprintf(note, sizeof note, "(on side's token %d input doubled: must differ from SPARKD_WX=0 by > 1e-3%s)", T - 1,
                 ran ? "" : "; w64 / wx did NOT run as asked");
        report("wx control", shape, eo, 1e-3, rc == 0 && ce == cudaSuccess && ran && eo > 1e-3, note);
    } else {
        snprintf(note, sizeof note, "(vs SPARKD_WX=0 bitwise; vs f32 %.2g, tol 2e-3%s%s)", ef,
                 ran ? "" : "; w64 / wx did NOT run as asked", ce != cudaSuccess ? cudaGetErrorString(ce) : "");
        report("wx", shape, eo, 0, rc == 0 && ce == cudaSuccess && fin && ran && eo == 0 && ef <= 2e-3, note);
    }
    dfree_all();
}

} // namespace

namespace {
// SPARKD_WX=3's and 4's rows (wx_kernel): Q8_0 (WG 3, 4) and Q4_K, partial row tiles, splits, two matrices, controls.
void wx3_rows() {
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) {
        const int K = t == QUANT_Q8_0 ? 2112 : 2304;
        for (int T : {33, 64}) {
            test_wx(t, 1000, 0, K, T, 0, 0, 0, 3, 0, 0);
            test_wx(t, 257, 67, K, T, T == 33, 1, 0, 3, 0, 0);
            test_wx(t, 385, 0, K, T, 0, 5, 1, 3, 0, 0);
        }
        if (t == QUANT_Q8_0) {
            test_wx(t, 1000, 0, K, 64, 0, 0, 0, 3, 3, 0);
            test_wx(t, 1000, 0, K, 48, 0, 0, 0, 3, 4, 0);
        }
        test_wx(t, 385, 0, K, 64, 0, 5, 1, 3, 0, 1); // the control
        test_wx(t, 4096, 0, 4096, 64, 0, 0, 1, 3, 0, 0); // o's shape at the rule's split
    }
    // SPARKD_WX=4 (Q8_0's meta by tensor copies too; K a multiple of 256: the meta rows 16-byte aligned), K split
    // pieces starting inside a group of 4 chunks (36 chunks in 5 pieces), WG 3 and 4, the control
    for (int T : {33, 64}) {
        test_wx(QUANT_Q8_0, 1000, 0, 2304, T, 0, 0, 0, 4, 0, 0);
        test_wx(QUANT_Q8_0, 257, 67, 2304, T, T == 33, 1, 0, 4, 3, 0);
        test_wx(QUANT_Q8_0, 385, 0, 2304, T, 0, 5, 1, 4, 4, 0);
    }
    test_wx(QUANT_Q8_0, 385, 0, 2304, 64, 0, 5, 1, 4, 3, 1); // the control
    test_wx(QUANT_Q8_0, 4096, 0, 4096, 64, 0, 0, 1, 4, 0, 0);
    test_wx(QUANT_Q8_0, 1000, 0, 2112, 48, 0, 0, 0, 4, 0, 0); // K / 16 not a multiple of 16: falls back to 3
}
} // namespace

// The wx rows of cuda_selftest (kernels/selftest.cu calls it after the w64 rows).
int wx_selftest(void *file, int quick, uint64_t seed, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, quick, e);
    C = &ctx;
    ctx.rng.s = seed;
    if (!st_open_stream()) return 1;
    cuda_w64_set(1);
    const bool on = cuda_w64_takes(64, QUANT_Q8_0);
    cuda_w64_set(-1);
    if (!on) {
        fprintf(ctx.f, "ok - wx skipped (w64_kernel needs sm_90a)\n");
        st_close_stream();
        return ctx.fails;
    }
    cuda_gemms_set(0, -1);
    cuda_t64_g2_set(0);
    wx3_rows(); // SPARKD_WX=3 and 4 (4: the default)
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q6_K}) {
        const int K = t == QUANT_Q8_0 ? 2112 : 2304; // 33 / 36 chunks of 64
        for (int T : {33, 48, 64}) {
            test_wx(t, 1000, 0, K, T, 0, 0, 0, 1, 0, 0);       // row tiles not whole, the rule's split (reduce launch)
            if (!quick || T == 64) test_wx(t, 257, 67, K, T, T == 48, 1, 0, 1, 0, 0); // two matrices, ldy padded, one piece
            test_wx(t, 385, 0, K, T, 0, 5, 1, 1, 0, 0);        // 5 pieces, deferred
        }
        if (t == QUANT_Q8_0) { // WG 3 and 4 explicitly
            test_wx(t, 1000, 0, K, 64, 0, 0, 0, 1, 3, 0);
            test_wx(t, 1000, 0, K, 64, 0, 0, 0, 1, 4, 0);
            test_wx(t, 385, 0, K, 35, 0, 5, 1, 1, 4, 0);
        }
        test_wx(t, 385, 0, K, 64, 0, 5, 1, 1, 0, 1); // the control
        if (!quick) test_wx(t, 4096, 0, 4096, 64, 0, 0, 1, 1, 0, 0); // o's shape at the rule's split
    }
    cuda_t64_g2_set(-1);
    cuda_gemms_set(-1, -1);
    st_close_stream();
    return ctx.fails;
}

// SPARKD_KBENCH=wx (cuda_kbench): the Qwen3-8B products at 64 tokens (layer rows also at 33 and 48) on w64_kernel
// in the engine's routing (scope on, WG as the default picks), SPARKD_WX 0 / 1 / 2 one after another, weights
// rotated over copies beyond the L2 (the head: 2 copies), the layer products' partials deferred as in the engine;
// us, GB/s of weights, % of the probe and us a K chunk (time / (waves x chunks a CTA)); SPARKD_WX=3 (wx_kernel) too
// for Q8_0 / Q4_K and 4 for Q8_0, after their correctness rows (printed first, as in the self-test). Diagnostic rows
// ("L2"): o's shape with one copy of the weights (L2-resident after the first launch): a chunk's time when its
// bytes come from the L2, against the rotated rows' DRAM time.
// SPARKD_KBENCH_WX=TYPE:PRODUCT (e.g. Q8_0:gate+up): that product only (for ncu).
void wx_kbench(void *file, double probe, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    ctx.rng.s = 1212;
    if (!st_open_stream()) return;
    cuda_w64_set(1);
    const bool on = cuda_w64_takes(64, QUANT_Q8_0);
    if (!on) {
        fprintf(ctx.f, "wx kbench: w64_kernel needs sm_90a\n");
        cuda_w64_set(-1);
        st_close_stream();
        return;
    }
    cuda_gemms_set(0, -1);
    cuda_t64_g2_set(0);
    const char *only = getenv("SPARKD_KBENCH_WX");
    // SPARKD_KBENCH_WX_V=0,4 (e.g.): those SPARKD_WX variants only (for ncu: 6 x copies launches a variant)
    const char *vl = getenv("SPARKD_KBENCH_WX_V");
    int vmask = 0x3f;
    if (vl) {
        vmask = 0;
        for (const char *c = vl; *c; c++)
            if (*c >= '0' && *c <= '5') vmask |= 1 << (*c - '0');
    }
    if (!only) { // SPARKD_WX=3's rows and a few of 1 / 2 first (bitwise against SPARKD_WX=0)
        wx3_rows();
        test_wx(QUANT_Q8_0, 1000, 0, 2112, 64, 0, 0, 0, 1, 0, 0);
        test_wx(QUANT_Q4_K, 1000, 0, 2304, 64, 0, 0, 0, 1, 0, 0);
        fprintf(ctx.f, "wx rows: %d not ok\n", ctx.fails);
    }
    fprintf(ctx.f, "| type | product | T | SPARKD_WX | us | GB/s (weights) | %% probe | CTAs x chunks | us a chunk |\n"
                   "|---|---|---|---|---|---|---|---|---|\n");
    struct prod { uint32_t type; const char *name; int n, rows, K; int layer; bool l2; } prods[] = {
        {QUANT_Q8_0, "q+k+v", 3, 0, 4096, 1, false}, {QUANT_Q8_0, "o", 1, 4096, 4096, 1, false},
        {QUANT_Q8_0, "gate+up", 2, 12288, 4096, 1, false}, {QUANT_Q8_0, "down", 1, 4096, 12288, 1, false},
        {QUANT_Q8_0, "o L2", 1, 4096, 4096, 0, true},
        {QUANT_Q4_K, "q+k+v", 3, 0, 4096, 2, false}, {QUANT_Q4_K, "o", 1, 4096, 4096, 2, false},
        {QUANT_Q4_K, "gate+up", 2, 12288, 4096, 2, false}, {QUANT_Q4_K, "down", 1, 4096, 12288, 2, false},
        {QUANT_Q4_K, "o L2", 1, 4096, 4096, 0, true},
        {QUANT_Q6_K, "down", 1, 4096, 12288, 0, false}, {QUANT_Q8_0, "head", 1, 151936, 4096, 0, false}};
    double layer[2][3][6]; // [Q8_0, Q4_K][T 33, 48, 64][WX]
    memset(layer, 0, sizeof layer);
    const int Ts[3] = {33, 48, 64};
    int sms = 132, dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) sms = 132;
    for (const prod &pr : prods) {
        const uint32_t type = pr.type;
        if (only) {
            char nm[64];
            snprintf(nm, sizeof nm, "%s:%s", tname(type), pr.name);
            if (strcasecmp(nm, only)) continue;
        }
        const int rows[3] = {pr.rows ? pr.rows : 4096, pr.rows ? pr.rows : 1024, 1024};
        uint64_t wb = 0;
        for (int i = 0; i < pr.n; i++) wb += cuda_weight_bytes(type, rows[i], pr.K);
        int copies = (int)((768ull << 20) / wb) + 1;
        if (copies > 16) copies = 16;
        if (copies < 8 && wb < (256ull << 20)) copies = 8;
        if (pr.l2) copies = 1;
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
            for (int v = 0; v < 5; v++) {
                if (v == 2 || (v == 4 && type != QUANT_Q8_0) || !((vmask >> v) & 1)) continue;
                cuda_wx_set(v);
                cuda_w64_tune(type == QUANT_Q8_0 ? -2 : 3, 0, 1);
                cuda_mm_args a;
                memset(&a, 0, sizeof a);
                cuda_defer d;
                memset(&d, 0, sizeof d);
                d.on = 1;
                a.n = pr.n; a.exact = 0; a.work = splitk; a.work_bytes = 32u << 20;
                a.defer = pr.rows == 151936 ? NULL : &d;
                for (int i = 0; i < pr.n; i++) { a.y[i] = dy[i]; a.ldy[i] = rows[i]; }
                const long l0 = cuda_w64_launches(), w0 = cuda_wx_launches(), w30 = cuda_wx3_launches(), w40 = cuda_wx4_launches();
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
                if (pr.layer) layer[pr.layer - 1][ti][v] += us;
                const bool bad = cuda_w64_launches() == l0 || (v > 0) != (cuda_wx_launches() > w0) ||
                                 (v == 3 || v == 4) != (cuda_wx3_launches() > w30) || (v == 4) != (cuda_wx4_launches() > w40);
                fprintf(C->f, "| %s | %s %dx%dx%d | %d | %d | %.1f | %.0f | %.0f%% | %d x %d | %.3f%s%s%s |\n", tname(type), pr.name,
                        pr.n, rows[0], pr.K, T, v, us, gbs, probe > 0 ? 100.0 * gbs / probe : 0.0, ctas, chunks,
                        chunks > 0 ? us / (waves * chunks) : 0.0, bad ? " (w64 / wx did NOT run as asked)" : "",
                        ce != cudaSuccess ? " " : "", ce != cudaSuccess ? cudaGetErrorString(ce) : "");
                fflush(C->f);
            }
        }
        dfree_all();
    }
    // The layer chain: q+k+v, o, gate+up, down of NL layers with distinct weights one after another (the model's
    // order of products without its other launches), T = 64, us a layer at each SPARKD_WX: whether the products'
    // alternation shows what run 0's model showed (Q8_0 64 seq +11.6% at WX 1) and the isolated rows above did not.
    if (!only || !strcasecmp(only, "chain")) {
        for (uint32_t type : {QUANT_Q8_0, QUANT_Q4_K}) {
            const int NL = 24;
            struct sh { int rows, K; } shp[7] = {{4096, 4096}, {1024, 4096}, {1024, 4096}, {4096, 4096}, {12288, 4096}, {12288, 4096}, {4096, 12288}};
            std::vector<cuda_weight> ws((size_t)NL * 7);
            bool okw = true;
            for (int i = 0; i < 7 && okw; i++) {
                auto raw = st_gen_rows(type, shp[i].rows, shp[i].K);
                for (int l = 0; l < NL && okw; l++) okw = st_make_weight(&ws[(size_t)l * 7 + i], type, raw, shp[i].rows, shp[i].K);
            }
            if (!okw) { fprintf(C->f, "wx chain: weights failed\n"); dfree_all(); continue; }
            const int forms = CUDA_MMIN_F16;
            cuda_mmin m4, m12;
            cuda_mmin_carve(&m4, dalloc(cuda_mmin_bytes(64, 4096, forms)), 64, 4096, forms);
            cuda_mmin_carve(&m12, dalloc(cuda_mmin_bytes(64, 12288, forms)), 64, 12288, forms);
            float *dx4 = dup(st_randn((size_t)64 * 4096, 1.0)), *dx12 = dup(st_randn((size_t)64 * 12288, 1.0));
            err e2 = {ERR_OK, {0}};
            if (cuda_mmin_prepare(dx4, 4096, &m4, 64, C->st, &e2) || cuda_mmin_prepare(dx12, 12288, &m12, 64, C->st, &e2)) {
                dfree_all();
                continue;
            }
            float *dy[7];
            for (int i = 0; i < 7; i++) dy[i] = (float *)dalloc((size_t)64 * shp[i].rows * 4);
            float *splitk = (float *)dalloc(32u << 20);
            for (int v = 0; v < 5; v++) {
                if (v == 2 || (v == 4 && type != QUANT_Q8_0)) continue;
                cuda_wx_set(v);
                cuda_w64_tune(type == QUANT_Q8_0 ? -2 : 3, 0, 1);
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
                const cudaError_t ce = cudaGetLastError();
                fprintf(C->f, "| %s | chain of %d layers (q+k+v, o, gate+up, down; distinct weights) | 64 | %d | %.1f us a layer |%s%s |\n",
                        tname(type), NL, v, us, ce != cudaSuccess ? " " : "", ce != cudaSuccess ? cudaGetErrorString(ce) : "");
                fflush(C->f);
            }
            dfree_all();
        }
    }
    for (int ty = 0; ty < 2; ty++)
        for (int ti = 0; ti < 3; ti++)
            if (layer[ty][ti][0] > 0)
                fprintf(C->f, "| %s | layer (q+k+v, o, gate+up, down) | %d | WX 0 %.1f us, WX 1 %.1f, WX 3 %.1f, WX 4 %.1f | | | | | WX 1 %.3fx, WX 3 %.3fx, WX 4 %.3fx |\n",
                        ty ? "Q4_K" : "Q8_0", Ts[ti], layer[ty][ti][0], layer[ty][ti][1], layer[ty][ti][3], layer[ty][ti][4],
                        layer[ty][ti][1] > 0 ? layer[ty][ti][0] / layer[ty][ti][1] : 0.0,
                        layer[ty][ti][3] > 0 ? layer[ty][ti][0] / layer[ty][ti][3] : 0.0,
                        layer[ty][ti][4] > 0 ? layer[ty][ti][0] / layer[ty][ti][4] : 0.0);
    cuda_w64_tune(3, 0, 1);
    cuda_wx_set(-1);
    cuda_w64_set(-1);
    cuda_t64_g2_set(-1);
    cuda_gemms_set(-1, -1);
    st_close_stream();
}
