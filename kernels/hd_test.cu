// hd_test.cu — round 11, helper hd: checks (hd_selftest, called by cuda_selftest) and the kernel
// bench (hd_kbench, SPARKD_KBENCH=hd) of the head at 33..64 tokens with split-K room and of
// sampling's lean first pass (kernels/hd.cu).
//
// What is checked:
// - sampling: cuda_sample with SPARKD_HD off (sample_pre_kernel) and on (sample_pre_hd_kernel)
//   over the same rows (greedy / sampled; neutral penalties, real ones with counts, a -0.0
//   frequency penalty, bias, a grammar mask, top logprobs; NaN logits): every output (token,
//   logprob, top ids and logprobs) must be the same bits. Outputs poisoned before each call.
//   Control: the old path with a row's repetition penalty changed must differ from the new one
//   (the comparison sees a penalty that is skipped).
// - the head product (cuda_matmul in the engine's scope, as engine.cu runs it) of a Q6_K / Q4_K /
//   Q8_0 matrix of >= 16384 rows at 8, 32, 33 and 64 tokens, with the split-K room (gemms2 must run:
//   its launch counter) and without it, each against the f64 CPU reference (test_head says why 2e-3);
//   control: the room path's product of another input must exceed the tolerance.
//   Greedy rows with no top logprobs: cuda_sample_greedy (one launch) against the old path, two calls
//   in a row (the per-row tickets must reset), and cuda_hd_greedy's answer on such rows and mixed ones.
// - cuda_hd_head_work's range (on: 2..64; off: never).
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

extern "C" int cuda_hd_head_work(int T);             // hd.cu
extern "C" int cuda_hd_smp(void);                    // hd.cu
extern "C" int cuda_hd_set(int on);                  // hd.cu: 1 / 0 (-1: as SPARKD_HD says); returns what it was
extern "C" void cuda_hd_tune(int head_min, int head_max, int smp); // hd.cu
extern "C" void cuda_hd_greedy_set(int on);          // hd.cu: SPARKD_HD_GREEDY 1 / 0 (-1: env)
extern "C" int cuda_hd_greedy(const cuda_sample_row *rows, int n); // hd.cu
extern "C" int cuda_sample_greedy(const cuda_sample_args *a, void *stream, err *e); // sample.cu (round 11)
extern "C" void cuda_w64_set(int mode);              // gemm.cu: 1 / 0 (-1: as SPARKD_W64 says)
extern "C" void cuda_w64_tune(int wg, int ks, int pipe); // gemm.cu
extern "C" void cuda_w64_scope(int on);              // gemm.cu: cuda_matmul routes as for the engine's products
extern "C" long cuda_w64_launches(void);             // gemm.cu
extern "C" long cuda_gemms2_launches(void);          // gemms.cu
extern "C" long cuda_gemms_launches(void);           // gemms.cu
extern "C" void cuda_t64_g2_set(int lvl);            // gemms.cu: SPARKD_T64_G2 level 0..2 (-1: as it says)
extern "C" void cuda_gemms2_stages_set(int s);       // gemms.cu: gemms2's ring stages (0: as many as fit; -1: env)
extern "C" void cuda_hfast_set(int min_t);           // gemm.cu: hfast from min_t tokens (-1: as the env says)
extern "C" int cuda_w64_takes(int T, uint32_t type); // gemm.cu (true on sm_90a only, where gemms2 is built too)

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

// ---- sampling

// The rows of the sampling check: r -> its parameters (16 kinds, cycled).
cuda_sample_row smp_row(int r, int V, int *n_bias_total, std::vector<int32_t> &bid, std::vector<float> &bval,
                        int *n_masks) {
    cuda_sample_row R;
    memset(&R, 0, sizeof R);
    const int k = r % 16;
    R.logits_row = r;
    R.slot = r;
    R.temperature = (k & 1) ? 0.8f : 0.0f;
    R.top_p = (k & 1) ? 0.95f : 1.0f;
    R.top_k = k == 5 ? 40 : 0;
    R.min_p = k == 7 ? 0.05f : 0.0f;
    R.rep_pen = (k == 2 || k == 3) ? 1.3f : 1.0f;
    R.freq_pen = k == 4 || k == 5 ? 0.5f : k == 6 ? -0.0f : 0.0f;
    R.pres_pen = k == 8 || k == 9 ? 0.25f : 0.0f;
    R.u = (float)C->rng.unit();
    R.mask_off = -1;
    if (k == 10 || k == 11) { R.mask_off = *n_masks * ((V + 31) / 32); (*n_masks)++; }
    R.bias_off = *n_bias_total;
    R.n_bias = k == 12 || k == 13 ? 17 : 0;
    for (int b = 0; b < R.n_bias; b++) {
        bid.push_back(C->rng.below(V));
        bval.push_back((float)(C->rng.normal() * 5.0));
    }
    *n_bias_total += R.n_bias;
    R.n_top = k == 14 || k == 15 ? 20 : k == 1 ? 5 : 0;
    return R;
}

void test_sample(int n, int V) {
    std::vector<float> lg((size_t)n * V);
    for (auto &x : lg) x = (float)(2.0 * C->rng.normal());
    for (int r = 0; r < n; r++) {
        for (int j = 0; j < 20; j++) lg[(size_t)r * V + C->rng.below(V)] = (float)(25.0 + 2.0 * C->rng.normal());
        if (r % 5 == 3) lg[(size_t)r * V + C->rng.below(V)] = NAN;
    }
    std::vector<uint32_t> counts((size_t)n * V, 0);
    for (int r = 0; r < n; r++)
        for (int j = 0; j < 300; j++) counts[(size_t)r * V + C->rng.below(V)] = 1 + C->rng.below(3);
    // a repeated top token, so the penalties move the argmax
    for (int r = 0; r < n; r++) {
        int top = 0;
        for (int i = 1; i < V; i++)
            if (lg[(size_t)r * V + i] > lg[(size_t)r * V + top]) top = i;
        counts[(size_t)r * V + top] = 2;
    }
    std::vector<int32_t> bid;
    std::vector<float> bval;
    int nb = 0, nm = 0;
    std::vector<cuda_sample_row> rows(n);
    for (int r = 0; r < n; r++) rows[r] = smp_row(r, V, &nb, bid, bval, &nm);
    const int words = (V + 31) / 32;
    std::vector<uint32_t> masks((size_t)(nm ? nm : 1) * words);
    for (auto &w : masks) w = (uint32_t)C->rng.next() | (uint32_t)C->rng.next(); // ~3/4 of the tokens allowed
    cuda_sample_args a;
    memset(&a, 0, sizeof a);
    a.logits = dup(lg); a.ld = V; a.n_vocab = V; a.n = n;
    a.counts = dup(counts);
    a.masks = dup(masks);
    a.bias_ids = dup(bid.empty() ? std::vector<int32_t>(1, 0) : bid);
    a.bias_vals = dup(bval.empty() ? std::vector<float>(1, 0.0f) : bval);
    a.work = (float *)dalloc(cuda_sample_work_bytes(n, V));
    a.out = (cuda_sample_out *)dalloc(n * sizeof(cuda_sample_out));
    // hd 2: cuda_sample_greedy (the caller's rows must all be greedy with no top logprobs)
    auto run = [&](int hd, const std::vector<cuda_sample_row> &rs, std::vector<cuda_sample_out> &o) -> bool {
        cuda_hd_set(hd != 0);
        cuda_sample_row *drows = dup(rs);
        a.rows = drows;
        poison(a.out, n * sizeof(cuda_sample_out));
        poison(a.work, cuda_sample_work_bytes(n, V));
        err e2 = {ERR_OK, {0}};
        const int rc = hd == 2 ? cuda_sample_greedy(&a, C->st, &e2) : cuda_sample(&a, C->st, &e2);
        cudaStreamSynchronize(C->st);
        o = get(a.out, n);
        cuda_hd_set(-1);
        return rc == 0 && cudaGetLastError() == cudaSuccess;
    };
    std::vector<cuda_sample_out> o0, o1;
    const bool ok0 = run(0, rows, o0), ok1 = run(1, rows, o1);
    int diff = 0;
    for (int r = 0; r < n; r++) {
        const bool same = o0[r].token == o1[r].token && !memcmp(&o0[r].logprob, &o1[r].logprob, 4) &&
                          o0[r].n_top == o1[r].n_top &&
                          !memcmp(o0[r].top_ids, o1[r].top_ids, sizeof o0[r].top_ids) &&
                          !memcmp(o0[r].top_logprobs, o1[r].top_logprobs, sizeof o0[r].top_logprobs);
        diff += !same;
    }
    char shape[96];
    snprintf(shape, sizeof shape, "%d rows V %d (16 kinds of row)", n, V);
    report("hd sample lean first pass vs sample_pre_kernel", shape, (double)diff, 0, ok0 && ok1 && diff == 0,
           "(rows whose outputs differ in any bit)");
    // control: row 0 greedy with neutral penalties on the new path vs the old path with rep_pen 1.3 on
    // every row (row 0's repeated top token then loses at least its logit's 30%): must differ
    std::vector<cuda_sample_row> rp = rows;
    for (auto &R : rp) R.rep_pen = 1.3f;
    std::vector<cuda_sample_out> o2;
    const bool ok2 = run(0, rp, o2);
    int cdiff = 0;
    for (int r = 0; r < n; r++) cdiff += o2[r].token != o1[r].token || memcmp(&o2[r].logprob, &o1[r].logprob, 4);
    report("hd sample control (penalties changed: must differ)", shape, (double)cdiff, 1, ok2 && cdiff >= 1,
           "(rows that differ: must be >= 1)");
    // every row greedy, no top logprobs: cuda_sample_greedy (one launch; twice: the tickets reset) vs the
    // old path; cuda_hd_greedy must say yes to these rows and no to the mixed ones
    std::vector<cuda_sample_row> rg = rows;
    for (auto &R : rg) { R.temperature = 0.0f; R.n_top = 0; }
    cuda_hd_set(1);
    cuda_hd_greedy_set(1);
    const bool asks = cuda_hd_greedy(rg.data(), n) && !cuda_hd_greedy(rows.data(), n);
    cuda_hd_greedy_set(-1);
    cuda_hd_set(-1);
    std::vector<cuda_sample_out> g0, g1, g2;
    const bool okg = run(0, rg, g0) && run(2, rg, g1) && run(2, rg, g2);
    int gdiff = 0;
    for (int r = 0; r < n; r++)
        for (const auto *o : {&g1, &g2})
            gdiff += (*o)[r].token != g0[r].token || memcmp(&(*o)[r].logprob, &g0[r].logprob, 4) || (*o)[r].n_top != 0;
    report("hd sample greedy in one launch vs cuda_sample (2 calls)", shape, (double)gdiff, 0, okg && asks && gdiff == 0,
           "(row outputs that differ in any bit)");
    dfree_all();
}

// ---- the head with split-K room

// Each path against the f64 reference (weights dequantized by quant.c, the f32 input, float64 sums) on
// tokens 0, 1, T/2, T-1, tolerance 2e-3 (hsmall_test.cu's reasoning: each weight and input element
// rounded to f16 once, ~4e-4 expected). The input has the f16 form only, so the path without room is an
// f16 product too (gemms_kernel at T <= 16, gemm_kernel at 17..32 where the gemms plan needs room, w64 at
// 33..64). Run 1 compared the room path with the engine's path at T = 32 (input forms f16 + int8 rows:
// mmq on the int8 rows) and saw 1.22e-2: the int8 rows' rounding (per-32 blocks, x20 outliers set a
// block's scale: ~1.7e-2 expected), not the room path.
void test_head(uint32_t type, int N, int K, int T) {
    auto raw = st_gen_rows(type, N, K);
    const std::vector<float> W = st_ref_dequant(type, raw, N, K);
    cuda_weight w;
    if (!st_make_weight(&w, type, raw, N, K)) return;
    auto x = st_randn((size_t)T * K, 1.0);
    for (size_t k = 0; k < x.size(); k += 97) x[k] *= 20.0f;
    auto x2 = x;
    for (int k = 0; k < K; k++) x2[k] = -x2[k]; // the control's input: token 0 negated
    std::vector<int> toks = {0};
    for (int t : {1, T / 2, T - 1})
        if (std::find(toks.begin(), toks.end(), t) == toks.end()) toks.push_back(t);
    std::vector<double> ref(toks.size() * (size_t)N);
    for (size_t q = 0; q < toks.size(); q++) {
        const float *xt = x.data() + (size_t)toks[q] * K;
        for (int n = 0; n < N; n++) {
            const float *wr = W.data() + (size_t)n * K;
            double acc = 0;
            for (int k = 0; k < K; k++) acc += (double)wr[k] * xt[k];
            ref[q * N + n] = acc;
        }
    }
    // largest over the checked tokens of ||y_t - ref_t|| / ||ref_t||; fin: those values finite
    auto ref_err = [&](const std::vector<float> &y, int *fin) {
        double worst = 0;
        for (size_t q = 0; q < toks.size(); q++) {
            double num = 0, den = 0;
            for (int n = 0; n < N; n++) {
                const double v = y[(size_t)toks[q] * N + n], r = ref[q * N + n];
                if (!isfinite(v)) *fin = 0;
                num += (v - r) * (v - r);
                den += r * r;
            }
            const double e = den > 0 ? sqrt(num / den) : sqrt(num);
            if (!(e <= worst)) worst = e;
        }
        return worst;
    };
    const int forms = CUDA_MMIN_F16;
    cuda_mmin m, m2;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(T, K, forms)), T, K, forms);
    cuda_mmin_carve(&m2, dalloc(cuda_mmin_bytes(T, K, forms)), T, K, forms);
    err e2 = {ERR_OK, {0}};
    if (cuda_mmin_prepare(dup(x), K, &m, T, C->st, &e2) || cuda_mmin_prepare(dup(x2), K, &m2, T, C->st, &e2)) {
        fprintf(C->f, "not ok - hd head prepare: %s\n", e2.msg);
        C->fails++;
        return;
    }
    float *dy = (float *)dalloc((size_t)T * N * 4);
    float *work = (float *)dalloc(32u << 20);
    auto run = [&](bool room, const cuda_mmin &mi, long *g2) -> std::vector<float> {
        cuda_mm_args a;
        memset(&a, 0, sizeof a);
        a.n = 1; a.w[0] = &w; a.y[0] = dy; a.ldy[0] = N; a.exact = 0;
        if (room) { a.work = work; a.work_bytes = 32u << 20; }
        poison(dy, (size_t)T * N * 4);
        const long l0 = cuda_gemms2_launches();
        cuda_w64_scope(1);
        err e3 = {ERR_OK, {0}};
        const int rc = cuda_matmul(&a, &mi, C->st, &e3);
        cuda_w64_scope(0);
        cudaStreamSynchronize(C->st);
        *g2 = rc == 0 && cudaGetLastError() == cudaSuccess ? cuda_gemms2_launches() - l0 : -1;
        return get(dy, (size_t)T * N);
    };
    const long want = cuda_w64_takes(64, QUANT_Q8_0) ? 1 : 0; // sm_90a: gemms2 takes it with the room
    long g_old = 0, g_new = 0, g_ctl = 0;
    const auto yo = run(false, m, &g_old);
    const auto yn = run(true, m, &g_new);
    const auto yc = run(true, m2, &g_ctl);
    int fin_o = 1, fin_n = 1, fin_c = 1;
    const double eo = ref_err(yo, &fin_o), en = ref_err(yn, &fin_n), ec = ref_err(yc, &fin_c);
    char shape[96], note[96];
    snprintf(shape, sizeof shape, "%s %d x %d T %d", tname(type), N, K, T);
    snprintf(note, sizeof note, "(gemms2 launches: %ld, must be %ld)", g_new, want);
    report("hd head with split-K room vs f64 reference", shape, en, 2e-3, fin_n && en <= 2e-3 && g_new == want, note);
    snprintf(note, sizeof note, "(gemms2 launches: %ld, must be 0)", g_old);
    report("hd head without room (today's f16 path) vs f64 reference", shape, eo, 2e-3, fin_o && eo <= 2e-3 && g_old == 0, note);
    report("hd head control (room, token 0 negated: must exceed)", shape, ec, 2e-3, fin_c && ec > 2e-3 && g_ctl == want);
    dfree_all();
}

} // namespace

// The hd rows of cuda_selftest (kernels/selftest.cu calls it after the w64 rows).
int hd_selftest(void *file, int quick, uint64_t seed, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, quick, e);
    C = &ctx;
    ctx.rng.s = seed;
    if (!st_open_stream()) return 1;
    {
        const int was = cuda_hd_set(1);
        cuda_hd_tune(-1, -1, -1);
        const bool on = cuda_hd_head_work(64) && cuda_hd_head_work(33) && cuda_hd_head_work(32) && cuda_hd_head_work(2) &&
                        !cuda_hd_head_work(65) && !cuda_hd_head_work(1);
        cuda_hd_set(0);
        const bool off = !cuda_hd_head_work(64) && !cuda_hd_smp();
        cuda_hd_set(was);
        cuda_hd_set(-1);
        report("hd head range (on: 2..64 unless SPARKD_HD_HEAD_MIN / MAX; off: none)", "T 1, 2, 32, 33, 64, 65", 0, 0,
               on && off);
    }
    test_sample(37, 151936);
    if (!quick) test_sample(64, 151936);
    test_sample(5, 1000); // one slice
    for (uint32_t t : {QUANT_Q6_K, QUANT_Q4_K, QUANT_Q8_0})
        for (int T : {8, 32, 33, 64}) {
            if (t == QUANT_Q8_0 && T > 32) continue; // (Q8_0 at 33..64: w64 either way)
            if (quick && t != QUANT_Q6_K && T != 8) continue;
            test_head(t, 16384 + 640, 4096, T);
        }
    st_close_stream();
    return ctx.fails;
}

// SPARKD_KBENCH=hd (cuda_kbench): the head (151936 x 4096, Q6_K and Q8_0) at T = 8, 32, 64 by
// route (the engine's scope without split-K room = today; with room = hd; others forced), weights
// rotated over two copies beyond the L2; and cuda_sample at 64 rows (greedy, with and without the
// engine's counts; sampled) old vs hd.
void hd_kbench(void *file, double probe, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    ctx.rng.s = 1111;
    if (!st_open_stream()) return;
    const double peak = getenv("SPARKD_MMA_PEAK") ? atof(getenv("SPARKD_MMA_PEAK")) : 642.0;
    fprintf(ctx.f, "| type | product | T | route | us | GB/s (weights) | %% probe | TFLOP/s | kernels |\n|---|---|---|---|---|---|---|---|---|\n");
    const int V = 151936, K = 4096;
    const char *only = getenv("SPARKD_KBENCH_HD"); // "sample": the sampling rows only
    for (uint32_t type : {QUANT_Q6_K, QUANT_Q8_0}) {
        if (only && !strcmp(only, "sample")) break;
        const uint64_t wb = cuda_weight_bytes(type, V, K);
        const int copies = 2;
        std::vector<cuda_weight> ws(copies);
        {
            auto raw = st_gen_rows(type, V, K);
            for (int c = 0; c < copies; c++)
                if (!st_make_weight(&ws[c], type, raw, V, K)) return;
        }
        const int forms = CUDA_MMIN_F16 | CUDA_MMIN_Q8;
        cuda_mmin m;
        cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(64, K, forms)), 64, K, forms);
        float *dx = dup(st_randn((size_t)64 * K, 1.0));
        float *dy = (float *)dalloc((size_t)64 * V * 4);
        float *work = (float *)dalloc(32u << 20);
        for (int T : {8, 32, 64}) {
            err e2 = {ERR_OK, {0}};
            if (cuda_mmin_prepare(dx, K, &m, T, C->st, &e2)) return;
            // 0 today (scope, no room); 1 hd (scope, room); 2 scope, room, SPARKD_T64_G2=2 (Q8_0's gemms2);
            // 3 room, w64 off (outside w64: gemms2 / hf2 / mmq); 4 w64 WG 4 (Q8_0), room; 5 w64 WG 3, room;
            // 6 / 7 room, gemms2 ring of 4 / 6 stages (default 3; Q8_0 with T64_G2=2 at 33..64); 8 room, hfast / hf2
            // (w64 off, T64_G2=0, hfast from 33 tokens for every type; T = 64 only)
            const char *vn[9] = {"today (engine scope, no room)", "hd (engine scope + split-K room)", "room + T64_G2=2",
                                 "room, SPARKD_W64=0", "room, w64 WG 4", "room, w64 WG 3", "room, gemms2 4 stages",
                                 "room, gemms2 6 stages", "room, hfast/hf2 (W64=0, T64_G2=0)"};
            for (int v = 0; v < 9; v++) {
                if (v == 8 && T != 64) continue;
                if (v == 8) { cuda_w64_set(0); cuda_t64_g2_set(0); cuda_hfast_set(33); }
                if ((v == 2 || v == 4) && type != QUANT_Q8_0) continue;
                if ((v == 4 || v == 5) && T < 33) continue;
                if (v >= 6) {
                    cuda_gemms2_stages_set(v == 6 ? 4 : 6);
                    if (type == QUANT_Q8_0 && T >= 33) cuda_t64_g2_set(2);
                }
                if (v == 2) cuda_t64_g2_set(2);
                if (v == 3) cuda_w64_set(0);
                if (v == 4) cuda_w64_tune(4, 0, 1);
                if (v == 5) cuda_w64_tune(3, 0, 1);
                cuda_mm_args a;
                memset(&a, 0, sizeof a);
                a.n = 1; a.exact = 0; a.y[0] = dy; a.ldy[0] = V;
                if (v) { a.work = work; a.work_bytes = 32u << 20; }
                const long w0 = cuda_w64_launches(), g0 = cuda_gemms2_launches(), s0 = cuda_gemms_launches();
                cuda_w64_scope(1);
                int n_calls = 0;
                const double us = time_us([&] {
                    for (int c = 0; c < copies; c++) {
                        a.w[0] = &ws[c];
                        err e3;
                        cuda_matmul(&a, &m, C->st, &e3);
                        n_calls++;
                    }
                }, 5) / copies;
                cuda_w64_scope(0);
                const cudaError_t ce = cudaGetLastError();
                const long dw = cuda_w64_launches() - w0, dg = cuda_gemms2_launches() - g0, ds = cuda_gemms_launches() - s0;
                cuda_t64_g2_set(-1);
                cuda_gemms2_stages_set(-1);
                if (v == 8) cuda_hfast_set(-1);
                cuda_w64_set(-1);
                cuda_w64_set(-1); // (the next w64_env reads every SPARKD_W64_* again: WG back to its default)
                const double gbs = (double)wb / (us * 1e3), tf = 2.0 * V * K * T / (us * 1e6);
                fprintf(ctx.f, "| %s | head %dx%d | %d | %s | %.1f | %.0f | %.0f%% | %.1f (%.0f%% of %.0f) | w64 %ld gemms2 %ld gemms %ld of %d%s%s |\n",
                        tname(type), V, K, T, vn[v], us, gbs, probe > 0 ? 100.0 * gbs / probe : 0.0, tf, 100.0 * tf / peak, peak,
                        dw, dg, ds - dg, n_calls, ce != cudaSuccess ? " " : "", ce != cudaSuccess ? cudaGetErrorString(ce) : "");
                fflush(ctx.f);
            }
        }
        dfree_all();
    }
    // sampling, 64 rows (and 1) of V 151936: old (sample_pre_kernel) vs hd (sample_pre_hd_kernel)
    fprintf(ctx.f, "| sample | rows | variant | us (3 launches) | |\n|---|---|---|---|---|\n");
    for (int n : {64, 1}) {
        for (int kind = 0; kind < 3; kind++) { // 0 greedy, no counts; 1 greedy + counts (the engine); 2 sampled + counts
            std::vector<float> lg((size_t)n * V);
            for (auto &x : lg) x = (float)(2.0 * C->rng.normal());
            for (int r = 0; r < n; r++)
                for (int j = 0; j < 20; j++) lg[(size_t)r * V + C->rng.below(V)] = (float)(25.0 + 2.0 * C->rng.normal());
            std::vector<cuda_sample_row> rows(n);
            for (int r = 0; r < n; r++) {
                cuda_sample_row &R = rows[r];
                memset(&R, 0, sizeof R);
                R.logits_row = r; R.slot = r; R.temperature = kind == 2 ? 0.8f : 0.0f;
                R.top_p = kind == 2 ? 0.95f : 1.0f; R.rep_pen = 1.0f; R.u = (float)C->rng.unit(); R.mask_off = -1;
            }
            cuda_sample_args a;
            memset(&a, 0, sizeof a);
            a.logits = dup(lg); a.ld = V; a.n_vocab = V; a.rows = dup(rows); a.n = n;
            if (kind) {
                a.counts = (uint32_t *)dalloc((size_t)n * V * 4);
                cudaMemset((void *)a.counts, 0, (size_t)n * V * 4);
            }
            a.work = (float *)dalloc(cuda_sample_work_bytes(n, V));
            a.out = (cuda_sample_out *)dalloc(n * sizeof(cuda_sample_out));
            const char *kn[3] = {"greedy, no counts", "greedy + counts (engine)", "sampled t 0.8 p 0.95 + counts"};
            for (int hd = 0; hd <= (kind == 2 ? 1 : 2); hd++) { // 2: cuda_sample_greedy (greedy rows only)
                cuda_hd_set(hd != 0);
                const double us = time_us([&] {
                    err e3;
                    if (hd == 2) cuda_sample_greedy(&a, C->st, &e3);
                    else cuda_sample(&a, C->st, &e3);
                }, 20);
                cudaError_t ce = cudaGetLastError();
                fprintf(ctx.f, "| V %d %s | %d | %s | %.2f | %s |\n", V, kn[kind], n,
                        hd == 2 ? "hd greedy (1 launch)" : hd ? "hd (lean first pass)" : "old", us,
                        ce != cudaSuccess ? cudaGetErrorString(ce) : "");
                fflush(ctx.f);
            }
            cuda_hd_set(-1);
            dfree_all();
        }
    }
    st_close_stream();
}
