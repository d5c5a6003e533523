// fc_test.cu — round 11, helper fc: hfw3's ring depth (gemm.cu hfw_kernel's NS, SPARKD_FC).
// Checks (fc_selftest, called by cuda_selftest) and the kernel bench (fc_kbench, SPARKD_KBENCH=fc).
//
// What is checked: SPARKD_FC = 4 (the default: 6 stages, the x tiles as images made by hfw_ximg_kernel and sent by
// bulk copies) against SPARKD_FC = 0 (round 8's hfw3) on hfw3 with W1 (SPARKD_PP's default 59): the same products in
// the same order, so the output words must be bit-identical (0 words differ), y poisoned with NaN first; 0
// non-finite words. The FC run must have taken hfw3 (else the row says skip: no sm_90a here). Control: the FC run on
// an input whose token 100 is changed must differ. Shapes: Qwen3-8B's pp512 products (q+k+v as one list (CR), o split
// K 3, gate+up paired, down split K 3; Q8_0 and Q4_K, Q6_K's o- and down-shaped plain products), K of one / two /
// five chunks (fewer chunks than stages), rows and tokens not multiples of the tile. Three rows also against the CPU
// reference (dequantized weights times the input, f64 sums; tolerance 2e-3 relative Frobenius norm).
#include "cuda.h"
#include "cuda_kern.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "kern_util.cuh"
#include "selftest_util.cuh"

extern "C" int cuda_fc_mode(void);           // gemm.cu: SPARKD_FC (0: round 8's hfw3; 4: x images, 6 stages)
extern "C" void cuda_fc_set(int mode);       // gemm.cu: tests and benches (-1: the env)
extern "C" long cuda_fc_xb_launches(void);   // gemm.cu: XB (image) launches so far
extern "C" void cuda_pp_set(int mode);       // gemm.cu: SPARKD_PP (-1: the env)
extern "C" int cuda_hfast_min_t(void);       // gemm.cu: hfast's threshold (0x7fffffff: off)
extern "C" int cuda_hfast_launches(void);    // gemm.cu: hfast / hf2 / hfw launches so far

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

// n matrices of rows[i] x K at T tokens (pair: gate+up paired, act(gate) * up in y[0]); SPARKD_FC 0 vs fc
// vs fc on x2 (the control). ref: also the FC run's y[0] vs the CPU reference (n = 1, no pair).
void fc_case(uint32_t type, int n, const int *rows, int K, int T, bool pair, int fc, bool ref = false) {
    char tag[128];
    snprintf(tag, sizeof tag, "fc%d %s n%d %dx%d T%d%s", fc, tname(type), n, rows[0], K, T, pair ? " paired" : "");
    cuda_weight w[3];
    memset(w, 0, sizeof w);
    std::vector<uint8_t> raw0;
    for (int i = 0; i < n; i++) {
        auto raw = st_gen_rows(type, rows[i], K);
        if (!st_make_weight(&w[i], type, raw, rows[i], K)) return;
        if (!i) raw0 = raw;
    }
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
    int hl[3] = {0, 0, 0};
    long xb[3] = {0, 0, 0}; // XB launches a run: FC 4 must have taken the image path (a buffer was available)
    cuda_pp_set(-1);
    for (int run = 0; run < 3 && !bad; run++) { // 0: FC 0, 1: fc, 2: fc on x2
        cuda_fc_set(run ? fc : 0);
        const int h0 = cuda_hfast_launches();
        const long x0 = cuda_fc_xb_launches();
        for (int i = 0; i < n; i++) poison(y[i], (size_t)T * rows[i] * 4);
        cuda_mm_args a;
        memset(&a, 0, sizeof a);
        a.n = n; a.exact = 0; a.work = work; a.work_bytes = 64u << 20;
        for (int i = 0; i < n; i++) { a.w[i] = &w[i]; a.y[i] = y[i]; a.ldy[i] = rows[i]; }
        if (pair) { a.pair_act = CUDA_ACT_SILU + 1; a.act_out = &am; }
        bad = cuda_matmul(&a, &m[run == 2], C->st, &e2) != 0 || cudaStreamSynchronize(C->st) != cudaSuccess;
        hl[run] = cuda_hfast_launches() - h0;
        xb[run] = cuda_fc_xb_launches() - x0;
        if (bad) break;
        for (int i = 0; i < (pair ? 1 : n); i++) {
            const auto v = get(y[i], (size_t)T * rows[i]);
            const size_t o = out[run].size();
            out[run].resize(o + v.size());
            memcpy(out[run].data() + o, v.data(), v.size() * 4);
        }
    }
    cuda_fc_set(-1);
    if (bad) {
        fprintf(C->f, "not ok - %s: %s\n", tag, e2.code ? e2.msg : cudaGetErrorString(cudaGetLastError()));
        C->fails++;
        return;
    }
    if (!hl[1] || !g_hfw) {
        fprintf(C->f, "ok - %s: # skip, no hfw3 here\n", tag);
        return;
    }
    size_t nan = 0;
    for (uint32_t u : out[1]) nan += (u & 0x7f800000u) == 0x7f800000u;
    const size_t nd = ndiff(out[0], out[1]), nc = ndiff(out[0], out[2]);
    // at 512 tokens hfw3 takes every product: FC 4 must have run the image (XB) kernels, else the row would
    // compare SPARKD_FC=0 with itself (no image buffer: an engine's too small, or none could be allocated)
    const bool xb_missing = fc == 4 && T >= 512 && xb[1] == 0;
    if (nd || nan || xb_missing) C->fails++;
    fprintf(C->f, "%s - %s: %zu of %zu output words differ from SPARKD_FC=0's hfw3 (want 0), %zu non-finite, %ld XB "
            "launches (FC 0: %ld)%s\n", nd || nan || xb_missing ? "not ok" : "ok", tag, nd, out[0].size(), nan, xb[1], xb[0],
            xb_missing ? " (want > 0 at 512 tokens)" : "");
    if (T > 100) {
        if (!nc) C->fails++;
        fprintf(C->f, "%s - %s control (token 100 changed): %zu words differ (want > 0)\n", nc ? "ok" : "not ok", tag, nc);
    }
    if (ref && n == 1 && !pair) {
        // y[t][r] = sum_k W[r][k] x[t][k] (x rounded to f16 as the hi form holds it, up to its token scale)
        const auto wd = st_ref_dequant(type, raw0, rows[0], K);
        double se = 0, sr = 0;
        for (int t = 0; t < T; t++)
            for (int r = 0; r < rows[0]; r++) {
                double s = 0;
                const float *wr = wd.data() + (size_t)r * K, *xt = x.data() + (size_t)t * K;
                for (int k = 0; k < K; k++) s += (double)wr[k] * xt[k];
                float yv;
                memcpy(&yv, &out[1][(size_t)t * rows[0] + r], 4);
                se += (yv - s) * (yv - s);
                sr += s * s;
            }
        const double rel = sqrt(se / (sr > 0 ? sr : 1));
        const bool ok = rel <= 2e-3;
        if (!ok) C->fails++;
        fprintf(C->f, "%s - %s vs the CPU reference: rel err %.2e (tol 2e-3)\n", ok ? "ok" : "not ok", tag, rel);
    }
    fflush(C->f);
}

// The rows (fc_selftest and, first, fc_kbench); the number of failures. quick: without the K = 12288 Q4_K / Q6_K
// paired and Q6_K rows.
int fc_rows(bool quick) {
    const int f0 = C->fails;
    const int fc = 4;
    const int r1[3] = {4096, 1024, 1024}; // q+k+v (one list of rows: CR) at pp512
    fc_case(QUANT_Q8_0, 3, r1, 4096, 512, false, fc);
    fc_case(QUANT_Q4_K, 3, r1, 4096, 512, false, fc);
    const int r2[1] = {1000}; // 6 row tiles, one partial token tile
    fc_case(QUANT_Q4_K, 1, r2, 1024, 200, false, fc, true);
    fc_case(QUANT_Q8_0, 1, r2, 1024, 130, false, fc, true);
    fc_case(QUANT_Q6_K, 1, r2, 1024, 130, false, fc, true); // (Q4_K_M's v / down / head type)
    const int r4[2] = {1024, 1024}; // paired, K 256 (4 chunks: fewer than 6 stages)
    fc_case(QUANT_Q8_0, 2, r4, 256, 512, true, fc);
    fc_case(QUANT_Q4_K, 2, r4, 256, 100, true, fc);
    const int r5[1] = {4096}; // o at pp512: split K 3 (21-22 chunks a CTA)
    fc_case(QUANT_Q8_0, 1, r5, 4096, 512, false, fc);
    fc_case(QUANT_Q4_K, 1, r5, 4096, 512, false, fc);
    fc_case(QUANT_Q6_K, 1, r5, 4096, 512, false, fc);
    const int r6[1] = {4096 + 192}; // 23 row tiles; K of 1, 2, 5 chunks (Q8_0; Q4_K: 4 chunks a superblock)
    for (int K : {64, 128, 320}) fc_case(QUANT_Q8_0, 1, r6, K, 130, false, fc);
    fc_case(QUANT_Q4_K, 1, r6, 256, 67, false, fc);
    const int r7[3] = {1000, 300, 300}; // CR with rows not multiples of the tile
    fc_case(QUANT_Q4_K, 3, r7, 512, 130, false, fc);
    const int r8[2] = {12288, 12288}; // Qwen3-8B's gate+up at pp512, paired
    fc_case(QUANT_Q8_0, 2, r8, 4096, 512, true, fc);
    const int r9[1] = {4096}; // down at pp512 (split K 3)
    fc_case(QUANT_Q8_0, 1, r9, 12288, 512, false, fc);
    fc_case(QUANT_Q4_K, 1, r9, 12288, 512, false, fc);
    fc_case(QUANT_Q6_K, 1, r9, 12288, 512, false, fc);
    if (!quick) fc_case(QUANT_Q4_K, 2, r8, 4096, 512, true, fc);
    return C->fails - f0;
}

} // namespace

int fc_selftest(void *file, int quick, uint64_t seed, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, quick, e);
    C = &ctx;
    ctx.rng.s = seed;
    if (!st_open_stream()) return 1;
    hfw_probe();
    const int hf_was_off = cuda_hfast_min_t() == 0x7fffffff;
    cuda_hfast_set(33);
    fc_rows(quick != 0);
    cuda_fc_set(-1);
    cuda_pp_set(-1);
    cuda_hfast_set(hf_was_off ? 0 : -1);
    dfree_all();
    st_close_stream();
    return ctx.fails;
}

// SPARKD_KBENCH=fc (cuda_kbench): the products of a Qwen3-8B pp512 layer (T = 512, SPARKD_PP's default) at
// SPARKD_FC = 0 and 4 (4: the image kernel included), weights rotated over copies beyond the L2: q+k+v (6144 x 4096, one list), o (4096 x
// 4096, split K 3), gate+up paired (2 x 12288 x 4096 -> act(gate) * up), down (4096 x 12288, split K 3); us a product,
// us a layer, TFLOP/s against SPARKD_MMA_PEAK (642), and us a chunk: the time over (CTAs / 132) waves of
// (K / 64 / split) chunks (a CTA's chunk time when the waves are full). SPARKD_FC_BENCH_ONLY=v: value v (0 / 4) only.
void fc_kbench(void *file, double probe, err *e) {
    (void)probe;
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    ctx.rng.s = 1111;
    if (!st_open_stream()) return;
    hfw_probe();
    cuda_hfast_set(33);
    cuda_pp_set(-1);
    const bool ok = fc_rows(true) == 0; // (timings only when the rows pass)
    dfree_all();
    if (!ok) fprintf(ctx.f, "# fc rows failed: SPARKD_FC=4 timings skipped\n");
    const char *pk = getenv("SPARKD_MMA_PEAK");
    const double peak = pk ? atof(pk) : 642.0;
    const char *only = getenv("SPARKD_FC_BENCH_ONLY");
    const int T = 512, dim = 4096, ffn = 12288, kv = 1024;
    fprintf(ctx.f, "| type | product (T = 512) | SPARKD_FC=0 us | =4 (x images by bulk copy) | 0 / 4 | us a chunk 0 / 4 | TFLOP/s 0 / 4 |\n|---|---|---|---|---|---|---|\n");
    for (uint32_t type : {QUANT_Q8_0, QUANT_Q4_K}) {
        const uint64_t wb = cuda_weight_bytes(type, ffn, dim) * 2 + cuda_weight_bytes(type, dim, dim) * 2 +
                            cuda_weight_bytes(type, dim, ffn) + cuda_weight_bytes(type, kv, dim) * 2;
        int copies = (int)((512ull << 20) / wb) + 1;
        if (copies > 4) copies = 4;
        std::vector<cuda_weight> wg(copies), wu(copies), wo(copies), wd(copies), wq(copies), wk(copies), wv(copies);
        {
            auto rg = st_gen_rows(type, ffn, dim), ro = st_gen_rows(type, dim, dim), rd = st_gen_rows(type, dim, ffn);
            auto rk = st_gen_rows(type, kv, dim);
            for (int c = 0; c < copies; c++)
                if (!st_make_weight(&wg[c], type, rg, ffn, dim) || !st_make_weight(&wu[c], type, rg, ffn, dim) ||
                    !st_make_weight(&wo[c], type, ro, dim, dim) || !st_make_weight(&wd[c], type, rd, dim, ffn) ||
                    !st_make_weight(&wq[c], type, ro, dim, dim) || !st_make_weight(&wk[c], type, rk, kv, dim) ||
                    !st_make_weight(&wv[c], type, rk, kv, dim))
                    return;
        }
        const int forms = CUDA_MMIN_F16;
        cuda_mmin in_dim, in_ffn, act;
        cuda_mmin_carve(&in_dim, dalloc(cuda_mmin_bytes(T, dim, forms)), T, dim, forms);
        cuda_mmin_carve(&in_ffn, dalloc(cuda_mmin_bytes(T, ffn, forms)), T, ffn, forms);
        cuda_mmin_carve(&act, dalloc(cuda_mmin_bytes(T, ffn, forms)), T, ffn, forms);
        err e2 = {ERR_OK, {0}};
        if (cuda_mmin_prepare(dup(st_randn((size_t)T * dim, 1.0)), dim, &in_dim, T, C->st, &e2)) return;
        if (cuda_mmin_prepare(dup(st_randn((size_t)T * ffn, 1.0)), ffn, &in_ffn, T, C->st, &e2)) return;
        float *y0 = (float *)dalloc((size_t)T * ffn * 4), *y1 = (float *)dalloc((size_t)T * ffn * 4);
        float *y2 = (float *)dalloc((size_t)T * kv * 4);
        const uint64_t wbytes = 64ull << 20;
        float *work = (float *)dalloc(wbytes);
        int it = 0;
        auto prod = [&](int s) { // 0 q+k+v, 1 o, 2 gate+up (paired), 3 down
            const int c = it++ % copies;
            cuda_mm_args a;
            memset(&a, 0, sizeof a);
            a.exact = 0; a.work = work; a.work_bytes = wbytes;
            err e3;
            if (s == 0) {
                a.n = 3; a.w[0] = &wq[c]; a.w[1] = &wk[c]; a.w[2] = &wv[c];
                a.y[0] = y0; a.y[1] = y1; a.y[2] = y2; a.ldy[0] = dim; a.ldy[1] = a.ldy[2] = kv;
                cuda_matmul(&a, &in_dim, C->st, &e3);
            } else if (s == 2) {
                a.n = 2; a.w[0] = &wg[c]; a.w[1] = &wu[c]; a.y[0] = y0; a.y[1] = y1; a.ldy[0] = a.ldy[1] = ffn;
                a.pair_act = CUDA_ACT_SILU + 1; a.act_out = &act;
                cuda_matmul(&a, &in_dim, C->st, &e3);
            } else {
                a.n = 1; a.w[0] = s == 1 ? &wo[c] : &wd[c]; a.y[0] = y0; a.ldy[0] = dim;
                cuda_matmul(&a, s == 1 ? &in_dim : &in_ffn, C->st, &e3);
            }
        };
        static const char *sn[4] = {"q+k+v 6144 x 4096", "o 4096 x 4096", "gate+up 2 x 12288 x 4096 paired", "down 4096 x 12288"};
        // CTAs and chunks a CTA (hfw3: 192-row tiles, 96 a matrix paired; o split K 3 at T = 512)
        static const double ctas[4] = {32.0 * 4, 22.0 * 4 * 3, 128.0 * 4, 22.0 * 4 * 3};
        static const double chunks[4] = {64, 64.0 / 3, 64, 64};
        static const double flop[4] = {2.0 * T * 6144 * dim, 2.0 * T * dim * dim, 2.0 * T * 2 * ffn * dim, 2.0 * T * dim * ffn};
        double lay[5] = {0, 0, 0, 0, 0};
        for (int s = 0; s < 4; s++) {
            double us[5] = {0, 0, 0, 0, 0};
            for (int v : {0, 4}) {
                if (v && !ok) continue;
                if (only && atoi(only) != v) continue;
                cuda_fc_set(v);
                us[v] = time_us([&] { prod(s); }, 5 * copies);
                lay[v] += us[v];
            }
            const cudaError_t ce = cudaGetLastError();
            const double waves = ctas[s] / 132.0 < 1 ? 1 : ctas[s] / 132.0;
            auto chunk = [&](double u) { return u / waves / chunks[s]; };
            auto tf = [&](double u) { return u > 0 ? flop[s] / (u * 1e6) : 0.0; };
            fprintf(C->f, "| %s | %s | %.1f | %.1f | %.3fx | %.3f / %.3f | %.0f / %.0f |\n", tname(type), sn[s], us[0], us[4],
                    us[4] > 0 ? us[0] / us[4] : 0.0, chunk(us[0]), chunk(us[4]), tf(us[0]), tf(us[4]));
            if (ce != cudaSuccess) fprintf(C->f, "# error: %s\n", cudaGetErrorString(ce));
            fflush(C->f);
        }
        double fl = 0;
        for (double f : flop) fl += f;
        auto pc = [&](double u) { return u > 0 ? 100.0 * fl / (u * 1e6) / peak : 0.0; };
        fprintf(C->f, "| %s | layer (4 products) | %.1f | %.1f | %.3fx | | %.1f%% / %.1f%% of %.0f |\n", tname(type), lay[0], lay[4],
                lay[4] > 0 ? lay[0] / lay[4] : 0.0, pc(lay[0]), pc(lay[4]), peak);
        fflush(C->f);
        cuda_fc_set(-1);
        dfree_all();
    }
    cuda_hfast_set(-1);
    st_close_stream();
}
