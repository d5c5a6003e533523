// pp_test.cu — round 9, helper pp: the prompt step at T >= 65 beyond the products' inner loops.
// Checks (pp_selftest, called by cuda_selftest) and the kernel bench (pp_kbench, SPARKD_KBENCH=pp).
//
// What is checked (gemm.cu, SPARKD_PP):
// - bit 2, the paired gate+up product (hfw_kernel<F, 3, true>: gate row r and up row r in one CTA,
//   act(gate) * up in the epilogue) followed by cuda_mmin_prepare, against today's path (gate and
//   up written by hfw3, then cuda_act_mm): the input form of down (hi, lo, gsum, tscale; f16 as the
//   engine gives it at T >= 65) must be bit-identical (0 words differ), y[0] poisoned with NaN first;
//   the paired launch must have run where hfw3 runs (sm_90a; elsewhere the row says it was not
//   taken and checks that the fallback (product + cuda_act_mm_part) gave the same bits). Control: gate and up swapped must
//   differ. Rows: T 65 / 130 / 512, rows not a multiple of the 96-row half tile, Q8_0 and Q4_K, SiLU
//   and GELU-tanh.
// - bit 1, a split hfw3 product (o / down at T = 512) leaving its partials to resid_norm (fz's
//   deferral) against the reduce launch + plain resid_norm: the residual and the normed input form
//   bit-identical; the product must have split; control: a partial dropped must differ.
#include "cuda.h"
#include "cuda_kern.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "kern_util.cuh"
#include "selftest_util.cuh"

extern "C" long cuda_pp_pair_launches(void); // gemm.cu: paired gate+up launches so far
extern "C" int cuda_pp_mode(void);           // gemm.cu: SPARKD_PP's bits (1 hfw3 partials deferred, 2 paired gate+up)
extern "C" void cuda_pp_set(int mode);       // gemm.cu: tests and benches (-1: the env)
extern "C" int cuda_hfast_min_t(void);       // gemm.cu: hfast's threshold (0x7fffffff: off)
extern "C" int cuda_hfast_launches(void);    // gemm.cu: hfast / hf2 / hfw launches so far
extern "C" long cuda_pp_cat_launches(void);  // gemm.cu: one-list (CR, SPARKD_PP bit 32) launches so far

namespace {

struct ctx_t : st_ctx {};
ctx_t *C;
bool g_hfw = false; // hfw3 runs here (sm_90a: compute capability 9.0)
void hfw_probe() {
    int dev = 0, mj = 0, mn = 0;
    g_hfw = cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetAttribute(&mj, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&mn, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess && mj == 9 && mn == 0;
}

size_t ndiff(const std::vector<uint32_t> &a, const std::vector<uint32_t> &b) {
    size_t n = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); i++) n += a[i] != b[i];
    return n + (a.size() > b.size() ? a.size() - b.size() : b.size() - a.size());
}
// The words of an mmin buffer of mb bytes (padding between the arrays: zeroed before in both runs).
std::vector<uint32_t> words(const void *d, uint64_t mb) {
    std::vector<uint32_t> w(mb / 4);
    cudaMemcpy(w.data(), d, mb / 4 * 4, cudaMemcpyDeviceToHost);
    return w;
}

// gate / up of `rows` x K (type), T tokens: today's path (the product, then cuda_act_mm) vs the paired
// product + cuda_mmin_prepare (cuda_matmul's pair_act); run 2 = the control (gate and up swapped).
void pair_case(uint32_t type, int rows, int K, int T, int act) {
    char tag[128];
    snprintf(tag, sizeof tag, "pp pair %s %dx%d T%d %s", tname(type), rows, K, T, act == CUDA_ACT_SILU ? "silu" : "gelu");
    cuda_weight w[2];
    memset(w, 0, sizeof w);
    for (int i = 0; i < 2; i++)
        if (!st_make_weight(&w[i], type, st_gen_rows(type, rows, K), rows, K)) return;
    auto x = st_randn((size_t)T * K, 1.0);
    for (size_t k = 0; k < x.size(); k += 97) x[k] *= 20.0f;
    const int forms = CUDA_MMIN_F16;
    cuda_mmin m;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(T, K, forms)), T, K, forms);
    err e2 = {ERR_OK, {0}};
    if (cuda_mmin_prepare(dup(x), K, &m, T, C->st, &e2)) { fprintf(C->f, "not ok - %s: prepare %s\n", tag, e2.msg); C->fails++; return; }
    float *y[2] = {(float *)dalloc((size_t)T * rows * 4), (float *)dalloc((size_t)T * rows * 4)};
    const uint64_t ab = cuda_mmin_bytes(T, rows, forms);
    void *ob[3] = {dalloc(ab), dalloc(ab), dalloc(ab)};
    cuda_mmin am[3];
    float *work = (float *)dalloc(32u << 20);
    long done[3] = {0, 0, 0}; // paired launches of each run
    bool bad = false;
    for (int run = 0; run < 3 && !bad; run++) { // 0: today's path, 1: paired, 2: paired control
        poison(y[0], (size_t)T * rows * 4);
        poison(y[1], (size_t)T * rows * 4);
        cudaMemset(ob[run], 0, ab);
        cuda_mmin_carve(&am[run], ob[run], T, rows, forms);
        cuda_mm_args a;
        memset(&a, 0, sizeof a);
        a.n = 2; a.exact = 0; a.work = work; a.work_bytes = 32u << 20;
        for (int i = 0; i < 2; i++) { a.w[i] = &w[run == 2 ? 1 - i : i]; a.y[i] = y[i]; a.ldy[i] = rows; }
        if (run) { a.pair_act = act + 1; a.act_out = &am[run]; }
        const long l0 = cuda_pp_pair_launches();
        bad = cuda_matmul(&a, &m, C->st, &e2) != 0;
        done[run] = cuda_pp_pair_launches() - l0;
        if (!bad && !run) bad = cuda_act_mm(y[0], y[1], rows, T, rows, act, &am[run], C->st, &e2) != 0;
    }
    bad = bad || cudaStreamSynchronize(C->st) != cudaSuccess;
    if (bad) {
        fprintf(C->f, "not ok - %s: %s\n", tag, e2.code ? e2.msg : cudaGetErrorString(cudaGetLastError()));
        C->fails++;
        return;
    }
    const auto w0 = words(ob[0], ab), w1 = words(ob[1], ab), w2 = words(ob[2], ab);
    const size_t nd = ndiff(w0, w1), nc = ndiff(w0, w2);
    const bool taken = done[1] > 0;
    if (!taken) {
        // not on hfw3 here (no sm_90a, or T below hfast's threshold): both runs took today's path
        const bool ok = nd == 0 && !done[2];
        if (!ok) C->fails++;
        fprintf(C->f, "%s - %s: not paired (no hfw3 here, or a split K): the fallback vs today's path: %zu words differ (want 0)\n",
                ok ? "ok" : "not ok", tag, nd);
        return;
    }
    if (nd) C->fails++;
    fprintf(C->f, "%s - %s: %zu of %zu words of down's input differ from gate/up + cuda_act_mm (want 0)\n",
            nd ? "not ok" : "ok", tag, nd, w0.size());
    if (!nc) C->fails++;
    fprintf(C->f, "%s - %s control (gate and up swapped): %zu words differ (want > 0)\n", nc ? "ok" : "not ok", tag, nc);
    fflush(C->f);
}

// A split hfw3 product of rows x K at T tokens into resid_norm (dim = rows): reduce launch (SPARKD_PP
// bit 1 off) vs deferred (on) vs deferred with a partial dropped (the control).
void defer_case(uint32_t type, int rows, int K, int T) {
    char tag[128];
    snprintf(tag, sizeof tag, "pp defer %s %dx%d T%d", tname(type), rows, K, T);
    cuda_weight w;
    memset(&w, 0, sizeof w);
    if (!st_make_weight(&w, type, st_gen_rows(type, rows, K), rows, K)) return;
    auto x = st_randn((size_t)T * K, 1.0);
    const int forms = CUDA_MMIN_F16;
    cuda_mmin m;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(T, K, forms)), T, K, forms);
    err e2 = {ERR_OK, {0}};
    if (cuda_mmin_prepare(dup(x), K, &m, T, C->st, &e2)) { fprintf(C->f, "not ok - %s: prepare %s\n", tag, e2.msg); C->fails++; return; }
    const int dim = rows;
    auto x0 = st_randn((size_t)T * dim, 1.0), nw = st_randn(dim, 1.0);
    float *y = (float *)dalloc((size_t)T * rows * 4), *dx = (float *)dalloc((size_t)T * dim * 4);
    const float *dnw = dup(nw);
    const uint64_t ab = cuda_mmin_bytes(T, dim, forms);
    void *ob = dalloc(ab);
    const uint64_t wbytes = 64ull << 20;
    float *work = (float *)dalloc(wbytes);
    std::vector<uint32_t> out[3];
    bool split[3] = {false, false, false}, bad = false;
    for (int run = 0; run < 3 && !bad; run++) {
        cuda_pp_set(run == 0 ? 0 : 1);
        poison(y, (size_t)T * rows * 4);
        cudaMemcpy(dx, x0.data(), x0.size() * 4, cudaMemcpyHostToDevice);
        cudaMemset(ob, 0, ab);
        cuda_mmin am;
        cuda_mmin_carve(&am, ob, T, dim, forms);
        cuda_mm_args a;
        memset(&a, 0, sizeof a);
        cuda_defer d;
        memset(&d, 0, sizeof d);
        d.on = 1;
        a.n = 1; a.exact = 0; a.work = work; a.work_bytes = wbytes; a.defer = &d;
        a.w[0] = &w; a.y[0] = y; a.ldy[0] = rows;
        bad = cuda_matmul(&a, &m, C->st, &e2) != 0;
        if (bad) break;
        split[run] = d.part[0].nz > 1;
        if (run == 2 && d.part[0].nz > 0) d.part[0].nz--;
        cuda_resid_args ra;
        memset(&ra, 0, sizeof ra);
        ra.x = dx; ra.o = y; ra.norm_w = dnw; ra.n = T; ra.dim = dim; ra.eps = 1e-6f; ra.out = &am;
        ra.o_part = d.part[0];
        bad = cuda_resid_norm(&ra, C->st, &e2) != 0 || cudaStreamSynchronize(C->st) != cudaSuccess;
        if (bad) break;
        const auto xv = get(dx, (size_t)T * dim);
        out[run].resize(xv.size());
        memcpy(out[run].data(), xv.data(), xv.size() * 4);
        const auto wv = words(ob, ab);
        out[run].insert(out[run].end(), wv.begin(), wv.end());
    }
    cuda_pp_set(-1);
    if (bad) {
        fprintf(C->f, "not ok - %s: %s\n", tag, e2.code ? e2.msg : cudaGetErrorString(cudaGetLastError()));
        C->fails++;
        return;
    }
    if (!split[1]) {
        // hfw3 absent (no sm_90a: hf2 defers as before) or no split at this shape: nothing to compare
        const size_t nd = ndiff(out[0], out[1]);
        const bool ok = nd == 0 || !split[0];
        if (!ok) C->fails++;
        fprintf(C->f, "%s - %s: not deferred by hfw3 here (split %d / %d), %zu words differ\n", ok ? "ok" : "not ok", tag,
                (int)split[0], (int)split[1], nd);
        return;
    }
    const size_t nd = ndiff(out[0], out[1]), nc = ndiff(out[0], out[2]);
    if (nd || split[0]) C->fails++;
    fprintf(C->f, "%s - %s: %zu of %zu words (residual, down's input) differ from the reduce launch (want 0)%s\n",
            nd || split[0] ? "not ok" : "ok", tag, nd, out[0].size(), split[0] ? "; SPARKD_PP=0 deferred too" : "");
    if (!nc) C->fails++;
    fprintf(C->f, "%s - %s control (a partial dropped): %zu words differ (want > 0)\n", nc ? "ok" : "not ok", tag, nc);
    fflush(C->f);
}

// SPARKD_PP bit 16 (W1: hfw3's wgmma in flight across the step barrier): n matrices of rows[i] x K at T
// tokens, PP 3 vs 19 (3 + W1; the paired product too): y bit-identical (the same products in the same
// order), y poisoned first; the hfw3 launch must have run (else the row is skipped: no sm_90a here).
// Control: the W1 run on an input whose token 100 is changed must differ.
// mode: the SPARKD_PP compared with 3 (19: + W1; 35: + CR, the launch's matrices as one list of rows, whose
// launch counter must then move; 51: both).
void w1_case(uint32_t type, int n, const int *rows, int K, int T, bool pair, int mode = 19) {
    char tag[128];
    snprintf(tag, sizeof tag, "pp%s%s %s n%d %dx%d T%d%s", mode & 16 ? " w1" : "", mode & 32 ? " cr" : "", tname(type), n,
             rows[0], K, T, pair ? " paired" : "");
    cuda_weight w[3];
    memset(w, 0, sizeof w);
    for (int i = 0; i < n; i++)
        if (!st_make_weight(&w[i], type, st_gen_rows(type, rows[i], K), rows[i], K)) return;
    auto x = st_randn((size_t)T * K, 1.0);
    auto x2 = x;
    if (T > 100)
        for (int k = 0; k < K; k++) x2[(size_t)100 * K + k] *= -1.5f;
    const int forms = CUDA_MMIN_F16;
    cuda_mmin m[2];
    err e2 = {ERR_OK, {0}};
    for (int j = 0; j < 2; j++) {
        cuda_mmin_carve(&m[j], dalloc(cuda_mmin_bytes(T, K, forms)), T, K, forms);
        if (cuda_mmin_prepare(dup(j ? x2 : x), K, &m[j], T, C->st, &e2)) { fprintf(C->f, "not ok - %s: prepare %s\n", tag, e2.msg); C->fails++; return; }
    }
    float *y[3] = {NULL, NULL, NULL};
    for (int i = 0; i < n; i++) y[i] = (float *)dalloc((size_t)T * rows[i] * 4);
    cuda_mmin am;
    if (pair) cuda_mmin_carve(&am, dalloc(cuda_mmin_bytes(T, rows[0], forms)), T, rows[0], forms);
    float *work = (float *)dalloc(64u << 20);
    std::vector<uint32_t> out[3];
    bool bad = false;
    const int hl0 = cuda_hfast_launches();
    long cr[3] = {0, 0, 0};
    for (int run = 0; run < 3 && !bad; run++) { // 0: PP 3, 1: mode, 2: mode on x2
        cuda_pp_set(run ? mode : 3);
        const long c0 = cuda_pp_cat_launches();
        for (int i = 0; i < n; i++) poison(y[i], (size_t)T * rows[i] * 4);
        cuda_mm_args a;
        memset(&a, 0, sizeof a);
        a.n = n; a.exact = 0; a.work = work; a.work_bytes = 64u << 20;
        for (int i = 0; i < n; i++) { a.w[i] = &w[i]; a.y[i] = y[i]; a.ldy[i] = rows[i]; }
        if (pair) { a.pair_act = CUDA_ACT_SILU + 1; a.act_out = &am; }
        bad = cuda_matmul(&a, &m[run == 2], C->st, &e2) != 0 || cudaStreamSynchronize(C->st) != cudaSuccess;
        cr[run] = cuda_pp_cat_launches() - c0;
        if (bad) break;
        for (int i = 0; i < (pair ? 1 : n); i++) {
            const auto v = get(y[i], (size_t)T * rows[i]);
            const size_t o = out[run].size();
            out[run].resize(o + v.size());
            memcpy(out[run].data() + o, v.data(), v.size() * 4);
        }
    }
    cuda_pp_set(-1);
    if (bad) {
        fprintf(C->f, "not ok - %s: %s\n", tag, e2.code ? e2.msg : cudaGetErrorString(cudaGetLastError()));
        C->fails++;
        return;
    }
    if (cuda_hfast_launches() == hl0 || !g_hfw) {
        fprintf(C->f, "ok - %s: # skip, no hfw3 here\n", tag);
        return;
    }
    size_t nan = 0;
    for (uint32_t u : out[1]) nan += (u & 0x7f800000u) == 0x7f800000u;
    const size_t nd = ndiff(out[0], out[1]), nc = ndiff(out[0], out[2]);
    const bool crbad = (mode & 32) && (!cr[1] || cr[0]); // (CR must have run in the mode's run only)
    if (nd || nan || crbad) C->fails++;
    fprintf(C->f, "%s - %s: %zu of %zu output words differ from SPARKD_PP=3's hfw3 (want 0), %zu non-finite%s\n",
            nd || nan || crbad ? "not ok" : "ok", tag, nd, out[0].size(), nan, crbad ? ", the one-list launch did not run" : "");
    if (T > 100) {
        if (!nc) C->fails++;
        fprintf(C->f, "%s - %s control (token 100 changed): %zu words differ (want > 0)\n", nc ? "ok" : "not ok", tag, nc);
    }
    fflush(C->f);
}

// W1's rows (pp_selftest and, first, pp_kbench); the number of failures.
int w1_rows() {
    const int f0 = C->fails;
    const int r1[3] = {4096, 1024, 1024}; // q+k+v: 22 + 6 + 6 row tiles
    w1_case(QUANT_Q8_0, 3, r1, 1024, 512, false);
    const int r2[1] = {1000}; // 6 row tiles, one partial token tile
    w1_case(QUANT_Q4_K, 1, r2, 1024, 200, false);
    w1_case(QUANT_Q6_K, 1, r2, 1024, 130, false);
    w1_case(QUANT_Q5_K, 1, r2, 512, 300, false);
    const int r3[1] = {4096 + 192}; // 23 row tiles
    w1_case(QUANT_Q8_0, 1, r3, 2048, 130, false);
    const int r4[2] = {1024, 1024}; // paired (rows a multiple of 64 for the act form), K 256: no split
    w1_case(QUANT_Q8_0, 2, r4, 256, 512, true);
    w1_case(QUANT_Q4_K, 2, r4, 256, 100, true);
    const int r5[1] = {4096}; // split K (o at T = 512: 88 CTAs, split 3)
    w1_case(QUANT_Q8_0, 1, r5, 4096, 512, false);
    const int r6[1] = {64}; // one chunk of K (Q8_0): the loop's first and last step at once
    w1_case(QUANT_Q8_0, 1, r6, 64, 130, false);
    // CR (one list of rows), alone and with W1: q+k+v (34 -> 32 tiles), rows not multiples of the tile (10 -> 9;
    // Q8_0's second piece of a thread in the next matrix), a split K (T 67) whose partials keep their rows
    for (int mode : {35, 51}) {
        w1_case(QUANT_Q8_0, 3, r1, 1024, 512, false, mode);
        const int r7[3] = {1000, 300, 300};
        w1_case(QUANT_Q8_0, 3, r7, 512, 200, false, mode);
        w1_case(QUANT_Q4_K, 3, r7, 512, 130, false, mode);
        w1_case(QUANT_Q8_0, 3, r1, 2048, 67, false, mode);
    }
    return C->fails - f0;
}

} // namespace

int pp_selftest(void *file, int quick, uint64_t seed, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, quick, e);
    C = &ctx;
    ctx.rng.s = seed;
    if (!st_open_stream()) return 1;
    hfw_probe();
    const int hf_was_off = cuda_hfast_min_t() == 0x7fffffff;
    cuda_hfast_set(33);
    cuda_pp_set(-1);
    // (the activation's rows are an FFN width: a multiple of 64, as the input forms need)
    // (K 256: small grids split K at larger K, and a split product is not paired; the full shapes below)
    pair_case(QUANT_Q8_0, 1088, 256, 65, CUDA_ACT_SILU);  // one partial token tile, rows 11.3 half tiles
    pair_case(QUANT_Q4_K, 320, 256, 130, CUDA_ACT_GELU_TANH);
    pair_case(QUANT_Q8_0, 1536, 256, 512, CUDA_ACT_GELU_TANH);
    pair_case(QUANT_Q4_K, 6144, 4096, 512, CUDA_ACT_SILU); // 256 CTAs: no split
    pair_case(QUANT_Q8_0, 1536, 1024, 512, CUDA_ACT_SILU); // split K: not paired, the fallback's bits
    if (!quick) pair_case(QUANT_Q8_0, 12288, 4096, 512, CUDA_ACT_SILU); // Qwen3-8B's gate+up
    defer_case(QUANT_Q8_0, 4096, 4096, 512); // o at pp512 (split 3)
    defer_case(QUANT_Q4_K, 1024, 2048, 100); // a small grid (split 8)
    defer_case(QUANT_Q8_0, 1024, 4096, 67);
    w1_rows();
    cuda_pp_set(-1);
    cuda_hfast_set(hf_was_off ? 0 : -1);
    dfree_all();
    st_close_stream();
    return ctx.fails;
}

// SPARKD_KBENCH=pp (cuda_kbench): the Qwen3-8B steps of a T = 512 layer that SPARKD_PP changes, today's
// launches (SPARKD_PP=0) beside the new ones, weights rotated over copies beyond the L2: gate+up +
// activation (-> down's f16 input) vs the paired product + prepare; o + reduce + resid_norm vs o with
// its partials read by resid_norm; down the same. Each piece alone too.
void pp_kbench(void *file, double probe, err *e) {
    (void)probe;
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    ctx.rng.s = 4343;
    if (!st_open_stream()) return;
    hfw_probe();
    cuda_hfast_set(33);
    const bool w1_ok = w1_rows() == 0; // (W1's timings below only when its rows pass)
    dfree_all();
    const int T = 512, dim = 4096, ffn = 12288;
    // hfw3's time against its CTA count (Q8_0, K 4096, T 512: 4 token tiles a row tile): whether a CTA
    // alone is faster than one of a full wave (a shared limit, the L2) or not (each SM its own limit);
    // the tail of q+k+v (136 CTAs on 132 SMs) is the 34-tile row
    fprintf(ctx.f, "| Q8_0 | hfw3 rows x 4096, T 512 | CTAs | us (PP 3) | us per CTA-wave (CTAs / 132) | TFLOP/s | W1 (PP 19) us | W1 per wave | W1 TFLOP/s |\n|---|---|---|---|---|---|---|---|---|\n");
    {
        const int K = 4096, maxt = 132;
        const auto raw = st_gen_rows(QUANT_Q8_0, 192 * maxt, K);
        const auto xh = st_randn((size_t)T * K, 1.0);
        for (int tiles : {1, 16, 33, 34, 66, 99, 132}) {
            const int rows = 192 * tiles;
            cuda_weight w[2];
            for (auto &x : w)
                if (!st_make_weight(&x, QUANT_Q8_0, raw, rows, K)) return;
            cuda_mmin m;
            cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(T, K, CUDA_MMIN_F16)), T, K, CUDA_MMIN_F16);
            err e2 = {ERR_OK, {0}};
            if (cuda_mmin_prepare(dup(xh), K, &m, T, C->st, &e2)) return;
            float *y = (float *)dalloc((size_t)T * rows * 4);
            int it = 0;
            double u2[2] = {0, 0};
            for (int v = 0; v < 2; v++) {
                if (v && !w1_ok) continue;
                cuda_pp_set(v ? 19 : 3);
                u2[v] = time_us([&] {
                    cuda_mm_args a;
                    memset(&a, 0, sizeof a);
                    a.n = 1; a.exact = 0; a.w[0] = &w[it++ & 1]; a.y[0] = y; a.ldy[0] = rows;
                    err e3;
                    cuda_matmul(&a, &m, C->st, &e3);
                }, 9);
            }
            cuda_pp_set(-1);
            const double us = u2[0];
            const int ctas = 4 * tiles;
            fprintf(ctx.f, "| Q8_0 | %d x 4096 | %d | %.1f | %.1f | %.0f | %.1f | %.1f | %.0f |\n", rows, ctas, us, us / (ctas / 132.0),
                    2.0 * T * rows * K / (us * 1e6), u2[1], u2[1] / (ctas / 132.0), u2[1] > 0 ? 2.0 * T * rows * K / (u2[1] * 1e6) : 0.0);
            fflush(ctx.f);
            dfree_all();
        }
    }
    fprintf(ctx.f, "| type | step (T = %d) | SPARKD_PP=0 us | =3 | =19 (3 + W1) | =27 (+ attn order, pairing) | =59 (default: + CR) | 0 / 59 |\n|---|---|---|---|---|---|---|---|\n", T);
    for (uint32_t type : {QUANT_Q8_0, QUANT_Q4_K}) {
        // the weights: gate, up, o, down (copies rotated)
        const uint64_t wb = cuda_weight_bytes(type, ffn, dim) * 2 + cuda_weight_bytes(type, dim, dim) +
                            cuda_weight_bytes(type, dim, ffn);
        int copies = (int)((512ull << 20) / wb) + 1;
        if (copies > 4) copies = 4;
        std::vector<cuda_weight> wg(copies), wu(copies), wo(copies), wd(copies), wk(copies), wv(copies);
        {
            auto rg = st_gen_rows(type, ffn, dim), ro = st_gen_rows(type, dim, dim), rd = st_gen_rows(type, dim, ffn);
            auto rk = st_gen_rows(type, 1024, dim);
            for (int c = 0; c < copies; c++)
                if (!st_make_weight(&wg[c], type, rg, ffn, dim) || !st_make_weight(&wu[c], type, rg, ffn, dim) ||
                    !st_make_weight(&wo[c], type, ro, dim, dim) || !st_make_weight(&wd[c], type, rd, dim, ffn) ||
                    !st_make_weight(&wk[c], type, rk, 1024, dim) || !st_make_weight(&wv[c], type, rk, 1024, dim))
                    return;
        }
        const int forms = CUDA_MMIN_F16;
        cuda_mmin in_dim, in_ffn;
        cuda_mmin_carve(&in_dim, dalloc(cuda_mmin_bytes(T, dim, forms)), T, dim, forms);
        cuda_mmin_carve(&in_ffn, dalloc(cuda_mmin_bytes(T, ffn, forms)), T, ffn, forms);
        err e2 = {ERR_OK, {0}};
        float *dx = dup(st_randn((size_t)T * dim, 1.0));
        if (cuda_mmin_prepare(dx, dim, &in_dim, T, C->st, &e2)) return;
        {
            float *dh = dup(st_randn((size_t)T * ffn, 1.0));
            if (cuda_mmin_prepare(dh, ffn, &in_ffn, T, C->st, &e2)) return;
        }
        float *gate = (float *)dalloc((size_t)T * ffn * 4), *up = (float *)dalloc((size_t)T * ffn * 4);
        float *o = (float *)dalloc((size_t)T * dim * 4), *xr = (float *)dalloc((size_t)T * dim * 4);
        cudaMemcpy(xr, dx, (size_t)T * dim * 4, cudaMemcpyDeviceToDevice);
        float *nw = dup(st_randn(dim, 1.0));
        const uint64_t wbytes = 64ull << 20;
        float *work = (float *)dalloc(wbytes);
        cuda_mmin in_tmp; // resid_norm's output (a copy of in_dim's shape: in_dim stays the products' input)
        cuda_mmin_carve(&in_tmp, dalloc(cuda_mmin_bytes(T, dim, forms)), T, dim, forms);
        int it = 0;
        cuda_defer d; // the last product's partials (the consumer alone reads those the route call left)
        memset(&d, 0, sizeof d);
        // step s, piece: 0 the whole step, 1 the product alone, 2 the consumer alone
        auto step = [&](int s, int piece) {
            const int c = it++ % copies;
            cuda_mm_args a;
            memset(&a, 0, sizeof a);
            d.on = 1;
            a.exact = 0; a.work = work; a.work_bytes = wbytes; a.defer = &d;
            err e3;
            if (s == 0) { // gate+up -> down's input: the whole step (pair_act), the plain product, or
                          // the consumer alone (the activation kernel, or the prepare after the paired product)
                a.n = 2; a.w[0] = &wg[c]; a.w[1] = &wu[c]; a.y[0] = gate; a.y[1] = up; a.ldy[0] = a.ldy[1] = ffn;
                if (piece == 0) { a.pair_act = CUDA_ACT_SILU + 1; a.act_out = &in_ffn; }
                if (piece != 2) cuda_matmul(&a, &in_dim, C->st, &e3);
                if (piece != 2) return;
                if (cuda_pp_mode() & 2) cuda_mmin_prepare(gate, ffn, &in_ffn, T, C->st, &e3);
                else cuda_act_mm_part(gate, up, ffn, T, ffn, CUDA_ACT_SILU, &d.part[0], &d.part[1], &in_ffn, C->st, &e3);
                return;
            }
            if (s == 3) { // q+k+v (o's weights as q): the product alone, into gate's room
                a.n = 3; a.w[0] = &wo[c]; a.w[1] = &wk[c]; a.w[2] = &wv[c];
                a.y[0] = gate; a.y[1] = up; a.y[2] = up + (size_t)T * 1024; a.ldy[0] = dim; a.ldy[1] = a.ldy[2] = 1024;
                cuda_matmul(&a, &in_dim, C->st, &e3);
                return;
            }
            a.n = 1; a.w[0] = s == 1 ? &wo[c] : &wd[c]; a.y[0] = o; a.ldy[0] = dim;
            if (piece != 2) cuda_matmul(&a, s == 1 ? &in_dim : &in_ffn, C->st, &e3);
            if (piece == 1) return;
            cuda_resid_args ra;
            memset(&ra, 0, sizeof ra);
            ra.x = xr; ra.o = o; ra.norm_w = nw; ra.n = T; ra.dim = dim; ra.eps = 1e-6f; ra.out = &in_tmp;
            ra.o_part = d.part[0];
            cuda_resid_norm(&ra, C->st, &e3);
        };
        static const char *sn[4] = {"gate+up + act -> down's input", "o + resid_norm", "down + resid_norm", "q+k+v"};
        static const char *pn[3] = {"", " (product alone; gate+up: plain)", " (consumer alone; gate+up: act vs prepare)"};
        for (int s = 0; s < 4; s++)
            for (int piece = 0; piece < 3; piece++) {
                if (s == 3 && piece) continue;
                static const int vm[5] = {0, 3, 19, 27, 59};
                double us[5] = {0, 0, 0, 0, 0};
                for (int v = 0; v < 5; v++) {
                    if (v >= 2 && !w1_ok) continue;
                    cuda_pp_set(vm[v]);
                    step(s, 1); // (the partials the consumer alone reads)
                    us[v] = time_us([&] { step(s, piece); }, 5 * copies);
                }
                const cudaError_t ce = cudaGetLastError();
                fprintf(C->f, "| %s | %s%s | %.1f | %.1f | %.1f | %.1f | %.1f | %.2fx |\n", tname(type), sn[s], pn[piece], us[0],
                        us[1], us[2], us[3], us[4], us[4] > 0 ? us[0] / us[4] : 0.0);
                if (ce != cudaSuccess) fprintf(C->f, "# error: %s\n", cudaGetErrorString(ce));
                fflush(C->f);
            }
        cuda_pp_set(-1);
        dfree_all();
    }
    cuda_hfast_set(-1);
    st_close_stream();
}
