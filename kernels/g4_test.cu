// g4_test.cu — round 12, helper g4: the activation of 33..64 tokens on g4_act_kernel (g4.cu,
// SPARKD_G4) against layer.cu's kernels (SPARKD_G4=0), g4_selftest (called by cuda_selftest), and
// the kernel bench g4_kbench (SPARKD_KBENCH=g4).
//
// What is checked, per row (T tokens, ffn, deferred gemms2 pieces or plain gate / up rows):
// - the forms (f16 hi / lo, gsum, tscale, the int8 form, the f32 XP form: the whole carved buffer,
//   poisoned with NaN bytes before each run) bit-identical to SPARKD_G4=0's (act_cl_kernel or
//   act_row_kernel): the sums, silu and row exponent are the same arithmetic in the same order;
// - the XP values against the float64 silu(gate) * up of the reduced product (the f16 product's own
//   gate / up, summed by gemms2_reduce_kernel): relative to the row's norm, tolerance 1e-6;
// - g4_act_kernel ran (its launch counter) where it must;
// - a control that must fail: the deferred pieces with their tiles misnumbered (tile0 ^ 1), or for
//   plain rows one gate value changed to -3 x itself - 1;
// rows for SPARKD_G4=2 (two cluster barriers) and =3 (one), CL 2 / 4 / 8.
#include "cuda.h"
#include "cuda_kern.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "kern_util.cuh"
#include "selftest_util.cuh"

extern "C" void cuda_gemms2_set(int on);           // gemms.cu: 1/0 = gemms2_kernel where it fits / never (-1: env)
extern "C" long cuda_gemms2_launches(void);        // gemms.cu
extern "C" void cuda_g4_set(int v);                // g4.cu: SPARKD_G4 (0 off; -1: env)
extern "C" long cuda_g4_launches(void);            // g4.cu
extern "C" void cuda_g4_min_set(int t);            // g4.cu: fewest tokens (-1: env)
extern "C" void cuda_g4_cl_set(int cl);            // g4.cu: CTAs a row (-1: env)

namespace {

struct ctx_t : st_ctx {};
ctx_t *C;

size_t ndiff(const std::vector<uint32_t> &a, const std::vector<uint32_t> &b) {
    size_t n = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); i++) n += a[i] != b[i];
    return n + (a.size() > b.size() ? a.size() - b.size() : b.size() - a.size());
}

const int AFORMS = CUDA_MMIN_F16 | CUDA_MMIN_Q8 | CUDA_MMIN_XP;

// One row: gate + up of ffn rows x K Q4_K at T tokens (deferred: through gemms2 with the defer on;
// plain: random gate / up rows), then the activation with SPARKD_G4=0, =2 (CL CTAs a row), control.
void run(int T, int ffn, int K, bool deferred, int CL, int mode_on = 2) {
    char tag[160];
    snprintf(tag, sizeof tag, "g4 act T%d ffn %d %s CL%d%s", T, ffn, deferred ? "gemms2 pieces" : "plain rows", CL,
             mode_on == 3 ? " SPARKD_G4=3 (one cluster barrier)" : "");
    err e2 = {ERR_OK, {0}};
    float *y[2] = {(float *)dalloc((size_t)T * ffn * 4), (float *)dalloc((size_t)T * ffn * 4)};
    const uint64_t wbytes = 64ull << 20;
    float *work = (float *)dalloc(wbytes);
    const uint64_t mb = cuda_mmin_bytes(T, ffn, AFORMS);
    void *buf = dalloc(mb);
    cuda_mmin am;
    cuda_mmin_carve(&am, buf, T, ffn, AFORMS);
    cuda_weight w[2];
    memset(w, 0, sizeof w);
    cuda_mmin m;
    std::vector<float> gh, uh; // the reduced gate / up (host)
    float *yc = NULL;          // plain: the control's gate rows
    if (deferred) {
        for (int i = 0; i < 2; i++)
            if (!st_make_weight(&w[i], QUANT_Q4_K, st_gen_rows(QUANT_Q4_K, ffn, K), ffn, K)) return;
        auto x = st_randn((size_t)T * K, 1.0);
        for (size_t k = 0; k < x.size(); k += 97) x[k] *= 20.0f;
        const int forms = CUDA_MMIN_F16 | CUDA_MMIN_Q8;
        cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(T, K, forms)), T, K, forms);
        if (cuda_mmin_prepare(dup(x), K, &m, T, C->st, &e2)) { fprintf(C->f, "not ok - %s: prepare %s\n", tag, e2.msg); C->fails++; return; }
        cuda_gemms2_set(1);
    } else {
        auto g = st_randn((size_t)T * ffn, 2.0), u = st_randn((size_t)T * ffn, 1.0);
        for (size_t k = 0; k < g.size(); k += 101) g[k] *= 10.0f;
        for (int k = 0; k < ffn; k++) u[(size_t)(T / 2) * ffn + k] *= 500.0f; // a large token
        cudaMemcpy(y[0], g.data(), g.size() * 4, cudaMemcpyHostToDevice);
        cudaMemcpy(y[1], u.data(), u.size() * 4, cudaMemcpyHostToDevice);
        g[5] = -3.0f * g[5] - 1.0f;
        yc = dup(g);
        gh = get(y[0], (size_t)T * ffn);
        uh = get(y[1], (size_t)T * ffn);
    }
    // mode 0: reduce launch (host reference of gate / up), then SPARKD_G4=0 on the deferred pieces
    // (or plain rows); 1: SPARKD_G4=2; 2: =2 with the control's fault. out: the buffer's words.
    bool split = !deferred, ran = false;
    auto pass = [&](int mode, std::vector<uint32_t> &out) -> bool {
        cuda_defer d;
        memset(&d, 0, sizeof d);
        if (deferred) {
            cuda_mm_args a;
            memset(&a, 0, sizeof a);
            a.n = 2; a.work = work; a.work_bytes = wbytes;
            for (int i = 0; i < 2; i++) { a.w[i] = &w[i]; a.y[i] = y[i]; a.ldy[i] = ffn; }
            if (mode == 0 && gh.empty()) { // the reduced product, for the float64 reference
                if (cuda_matmul(&a, &m, C->st, &e2)) return false;
                cudaStreamSynchronize(C->st);
                gh = get(y[0], (size_t)T * ffn);
                uh = get(y[1], (size_t)T * ffn);
            }
            for (int i = 0; i < 2; i++) poison(y[i], (size_t)T * ffn * 4);
            d.on = 1;
            a.defer = &d;
            if (cuda_matmul(&a, &m, C->st, &e2)) return false;
            for (int i = 0; i < 2; i++) {
                if (d.part[i].g2) split = true;
                if (mode == 2 && d.part[i].g2) d.part[i].tile0 ^= 1;
            }
        }
        poison(buf, mb);
        cuda_g4_set(mode ? mode_on : 0);
        const long l0 = cuda_g4_launches();
        const float *g = !deferred && mode == 2 ? yc : y[0];
        if (cuda_act_mm_part(g, y[1], ffn, T, ffn, CUDA_ACT_SILU, &d.part[0], &d.part[1], &am, C->st, &e2)) return false;
        if (mode == 1) ran = cuda_g4_launches() > l0;
        if (cudaStreamSynchronize(C->st) != cudaSuccess) return false;
        out.resize(mb / 4);
        cudaMemcpy(out.data(), buf, mb / 4 * 4, cudaMemcpyDeviceToHost);
        return cudaGetLastError() == cudaSuccess;
    };
    cuda_g4_min_set(2);
    cuda_g4_cl_set(CL);
    std::vector<uint32_t> ref, got, bad;
    const bool ok = pass(0, ref) && pass(1, got) && pass(2, bad);
    cuda_g4_set(-1);
    cuda_g4_min_set(-1);
    cuda_g4_cl_set(-1);
    cuda_gemms2_set(-1);
    if (!ok) {
        fprintf(C->f, "not ok - %s: %s\n", tag, e2.code ? e2.msg : cudaGetErrorString(cudaGetLastError()));
        C->fails++;
        return;
    }
    if (!split) {
        fprintf(C->f, "not ok - %s: the product left no gemms2 pieces (nothing deferred)\n", tag);
        C->fails++;
        return;
    }
    // float64: XP (P64 order) against silu(g) * u of the reduced gate / up
    std::vector<float> xp(got.size() ? (size_t)T * ffn : 0);
    memcpy(xp.data(), (const char *)got.data() + ((const char *)am.xp - (const char *)buf), xp.size() * 4);
    double worst = 0;
    bool fin = true;
    for (int t = 0; t < T; t++) {
        double num = 0, den = 0;
        for (int k = 0; k < ffn; k++) {
            const double gv = gh[(size_t)t * ffn + k], uv = uh[(size_t)t * ffn + k];
            const double r = gv / (1.0 + exp(-gv)) * uv;
            const float v = xp[(size_t)t * ffn + (k & ~63) + inv_perm64(k & 63)];
            fin = fin && isfinite(v);
            num += (v - r) * (v - r);
            den += r * r;
        }
        const double er = sqrt(num / (den > 0 ? den : 1));
        if (er > worst) worst = er;
    }
    const size_t nd = ndiff(ref, got), nb = ndiff(ref, bad);
    const bool rok = ran && nd == 0 && fin && worst < 1e-6;
    if (!rok) C->fails++;
    fprintf(C->f, "%s - %s: %zu of %zu words differ from SPARKD_G4=0 (want 0), xp vs float64 %.2g (tol 1e-6)%s%s\n",
            rok ? "ok" : "not ok", tag, nd, ref.size(), worst, ran ? "" : ", g4_act_kernel did not run",
            fin ? "" : ", non-finite");
    if (!nb) C->fails++;
    fprintf(C->f, "%s - %s control (%s): %zu words differ (want > 0)\n", nb ? "ok" : "not ok", tag,
            deferred ? "pieces misplaced" : "one gate value -3x - 1", nb);
    fflush(C->f);
}

} // namespace

int g4_selftest(void *file, int quick, uint64_t seed, err *e) {
    ctx_t ctx;
    C = &ctx;
    st_begin(&ctx, file, quick, e);
    ctx.rng.s = seed;
    if (!st_open_stream()) {
        fprintf(ctx.f, "not ok - g4: stream\n");
        return 1;
    }
    int dev = 0, major = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    if (major < 9) {
        fprintf(ctx.f, "# skip - g4: compute capability %d (the activation's clusters need 9+)\n", major);
        st_close_stream();
        return 0;
    }
    // Qwen3-8B's gate + up (12288 x 4096 each: 192 tiles x 16 stages over 132 CTAs on an H200, so
    // most tiles are cut); plain rows also at an ffn of 3072 (one float4 a thread)
    struct { int T, ffn, K; bool def; int CL, mode; } cases[] = {
        {64, 12288, 4096, true, 8, 2}, {64, 12288, 4096, true, 8, 3}, {64, 12288, 4096, false, 8, 3},
        {33, 12288, 4096, true, 4, 2}, {48, 12288, 4096, true, 8, 2}, {40, 3072, 4096, false, 4, 2},
        {64, 12288, 4096, true, 2, 2}, {17, 12288, 4096, true, 4, 3}, {48, 12288, 4096, false, 8, 2},
        {8, 12288, 4096, true, 8, 2}, {2, 12288, 4096, true, 8, 3}, {16, 12288, 4096, true, 4, 2},
        {33, 12288, 4096, true, 8, 3}, {40, 3072, 4096, false, 4, 3}, {64, 12288, 4096, true, 4, 2},
    };
    int i = 0;
    for (const auto &c : cases) {
        if (quick && i++ >= 3) break;
        run(c.T, c.ffn, c.K, c.def, c.CL, c.mode);
        dfree_all();
    }
    st_close_stream();
    return ctx.fails;
}

// SPARKD_KBENCH=g4: Qwen3-8B's gate+up (Q4_K 2 x 12288 x 4096 on gemms2, pieces deferred) + the
// activation at T = 64 / 48 / 33 / 32 / 17 / 16 / 8 / 2, SPARKD_G4=0 beside =2 (CL 4 and 8) and =3 (CL 8):
// the activation alone (the same pieces, launched back to back: run 0 says ~6.5 us a launch is the
// floor of this loop, host-bound) and product + activation (weights rotated over copies beyond the
// L2); then the plain-row activation (Q8_0's act_row at 33..64).
void g4_kbench(void *file, double probe, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    ctx.rng.s = 4244;
    if (!st_open_stream()) return;
    (void)probe;
    const int ffn = 12288, K = 4096;
    const uint64_t wb = cuda_weight_bytes(QUANT_Q4_K, ffn, K) * 2;
    const int copies = 10; // 10 x 57.7 MB beyond the L2
    auto raw = st_gen_rows(QUANT_Q4_K, ffn, K);
    std::vector<cuda_weight> ws((size_t)copies * 2);
    for (auto &w : ws)
        if (!st_make_weight(&w, QUANT_Q4_K, raw, ffn, K)) return;
    const int forms = CUDA_MMIN_F16 | CUDA_MMIN_Q8;
    cuda_mmin m;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(64, K, forms)), 64, K, forms);
    float *dx = dup(st_randn((size_t)64 * K, 1.0));
    float *y[2] = {(float *)dalloc((size_t)64 * ffn * 4), (float *)dalloc((size_t)64 * ffn * 4)};
    const uint64_t wbytes = 64ull << 20;
    float *work = (float *)dalloc(wbytes);
    cuda_mmin am;
    const int aforms = CUDA_MMIN_F16; // (w64 / gemms read the f16 form)
    cuda_mmin_carve(&am, dalloc(cuda_mmin_bytes(64, ffn, aforms)), 64, ffn, aforms);
    fprintf(ctx.f, "| g4 | T | variant | activation us | gate+up + activation us | gate+up GB/s | launches |\n|---|---|---|---|---|---|---|\n");
    cuda_g4_min_set(2);
    for (int T : {64, 48, 33, 32, 17, 16, 8, 2}) {
        err e2 = {ERR_OK, {0}};
        if (cuda_mmin_prepare(dx, K, &m, T, C->st, &e2)) return;
        for (int v = 0; v < 4; v++) {
            cuda_g4_set(v == 0 ? 0 : v == 3 ? 3 : 2);
            cuda_g4_cl_set(v == 1 ? 4 : 8);
            cuda_mm_args a;
            memset(&a, 0, sizeof a);
            cuda_defer d;
            memset(&d, 0, sizeof d);
            d.on = 1;
            a.n = 2; a.work = work; a.work_bytes = wbytes; a.defer = &d;
            for (int i = 0; i < 2; i++) { a.y[i] = y[i]; a.ldy[i] = ffn; }
            const long l0 = cuda_g4_launches(), l2 = cuda_gemms2_launches();
            const double both = time_us([&] {
                for (int c = 0; c < copies; c++) {
                    for (int i = 0; i < 2; i++) a.w[i] = &ws[(size_t)c * 2 + i];
                    err e3;
                    cuda_matmul(&a, &m, C->st, &e3);
                    cuda_act_mm_part(y[0], y[1], ffn, T, ffn, CUDA_ACT_SILU, &d.part[0], &d.part[1], &am, C->st, &e3);
                }
            }, 5) / copies;
            const double prod = time_us([&] {
                for (int c = 0; c < copies; c++) {
                    for (int i = 0; i < 2; i++) a.w[i] = &ws[(size_t)c * 2 + i];
                    err e3;
                    cuda_matmul(&a, &m, C->st, &e3);
                }
            }, 5) / copies;
            // the activation alone on the last product's pieces
            const double act = time_us([&] {
                for (int c = 0; c < 20; c++) {
                    err e3;
                    cuda_act_mm_part(y[0], y[1], ffn, T, ffn, CUDA_ACT_SILU, &d.part[0], &d.part[1], &am, C->st, &e3);
                }
            }, 5) / 20;
            const cudaError_t ce = cudaGetLastError();
            fprintf(ctx.f, "| Q4_K gate+up pieces | %d | %s | %.2f | %.1f | %.0f | %s%s%s%s |\n", T,
                    v == 0 ? "SPARKD_G4=0" : v == 1 ? "SPARKD_G4=2 CL4" : v == 2 ? "SPARKD_G4=2 CL8" : "SPARKD_G4=3 CL8", act, both,
                    (double)wb / (prod * 1e3), cuda_gemms2_launches() > l2 ? "gemms2" : "gemms", d.part[0].g2 ? " pieces" : "",
                    cuda_g4_launches() > l0 ? " g4" : "", ce != cudaSuccess ? cudaGetErrorString(ce) : "");
            fflush(ctx.f);
        }
    }
    // plain rows (Q8_0's w64 reduces its own split: act_row_kernel at 33..64 today)
    for (int T : {64, 48, 33}) {
        for (int v = 0; v < 4; v++) {
            cuda_g4_set(v == 0 ? 0 : v == 3 ? 3 : 2);
            cuda_g4_cl_set(v == 1 ? 4 : 8);
            const long l0 = cuda_g4_launches();
            const double act = time_us([&] {
                for (int c = 0; c < 20; c++) {
                    err e3;
                    cuda_act_mm_part(y[0], y[1], ffn, T, ffn, CUDA_ACT_SILU, NULL, NULL, &am, C->st, &e3);
                }
            }, 5) / 20;
            const cudaError_t ce = cudaGetLastError();
            fprintf(ctx.f, "| plain rows | %d | %s | %.2f | | | %s%s |\n", T,
                    v == 0 ? "SPARKD_G4=0" : v == 1 ? "SPARKD_G4=2 CL4" : v == 2 ? "SPARKD_G4=2 CL8" : "SPARKD_G4=3 CL8", act,
                    cuda_g4_launches() > l0 ? "g4" : "", ce != cudaSuccess ? cudaGetErrorString(ce) : "");
            fflush(ctx.f);
        }
    }
    cuda_g4_set(-1);
    cuda_g4_min_set(-1);
    cuda_g4_cl_set(-1);
    dfree_all();
    st_close_stream();
}
