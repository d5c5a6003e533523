// pe_test.cu — round 11, helper pe: pe.cu's small-CTA row producers (T > 64) against layer.cu's
// kernels they replace (pe_selftest, called by cuda_selftest) and the kernel bench
// (pe_kbench, SPARKD_KBENCH=pe).
//
// What is checked: cuda_resid_norm (o as 1..4 deferred split-K partials, as plain rows, none;
// bias; xout; rows) and cuda_mmin_prepare (K 4096 / 12288, padded ldx) with SPARKD_PE on must
// give every output word bit-identical to SPARKD_PE=0 (layer.cu's resid_norm_row_kernel /
// prep_row_kernel): the residual x, xout and the whole mm-input buffer (every form asked for),
// which is poisoned (0xff: NaN) before each run, so a word the new kernel skips differs. The
// new kernels must have run (their launch counter). Control: the new run with one partial (or
// input) element changed by 1% must differ.
#include "cuda.h"
#include "cuda_kern.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "kern_util.cuh"
#include "selftest_util.cuh"

extern "C" void cuda_pe_set(int mask);  // pe.cu: kernels taken (1 resid, 2 prepare; 0 off, -1 env)
extern "C" long cuda_pe_launches(void); // pe.cu: launches so far

namespace {

struct ctx_t : st_ctx {};
ctx_t *C;

size_t ndiff_b(const std::vector<uint8_t> &a, const std::vector<uint8_t> &b) {
    size_t n = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); i++) n += a[i] != b[i];
    return n + (a.size() > b.size() ? a.size() - b.size() : b.size() - a.size());
}
template <class T> void put(std::vector<uint8_t> &o, const T *d, size_t n) {
    const std::vector<T> h = get(d, n);
    const uint8_t *p = (const uint8_t *)h.data();
    o.insert(o.end(), p, p + n * sizeof(T));
}

// One resid_norm case: T rows of dim 4096, nz deferred partials (0: o plain rows, -1: no o).
void resid_case(int T, int nz, int forms, bool bias, bool xout, bool rows) {
    const int dim = 4096;
    char tag[160];
    snprintf(tag, sizeof tag, "pe resid_norm T%d %s forms %d%s%s%s", T, nz > 0 ? "partials" : nz == 0 ? "o" : "no o", forms,
             bias ? " bias" : "", xout ? " xout" : "", rows ? " rows" : "");
    if (nz > 0) snprintf(tag + strlen(tag), sizeof tag - strlen(tag), " nz %d", nz);
    const int R = rows ? T + 7 : T; // residual rows (rows: a permutation into them)
    auto x0 = st_randn((size_t)R * dim, 1.0), nw = st_randn(dim, 1.0), ob = st_randn(dim, 0.1);
    for (size_t k = 0; k < x0.size(); k += 97) x0[k] *= 20.0f;
    const int np = nz > 0 ? nz : 1;
    auto pp = st_randn((size_t)np * R * dim, 0.5); // (np, R, dim) partials or o's rows
    std::vector<int32_t> rw(T);
    for (int i = 0; i < T; i++) rw[i] = rows ? (int)((i * 7 + 3) % R) : i;
    float *dx = (float *)dalloc((size_t)R * dim * 4), *dxo = (float *)dalloc((size_t)T * dim * 4);
    float *dp = dup(pp);
    const float *dnw = dup(nw), *dob = dup(ob);
    const int32_t *drw = dup(rw);
    const uint64_t mb = cuda_mmin_bytes(T, dim, forms);
    void *mbuf = dalloc(mb);
    if (!dx || !dxo || !dp || !dnw || !dob || !drw || !mbuf) { fprintf(C->f, "not ok - %s: alloc\n", tag); C->fails++; return; }
    auto go = [&](int mask, std::vector<uint8_t> &o) -> bool {
        cudaMemcpy(dx, x0.data(), x0.size() * 4, cudaMemcpyHostToDevice);
        poison(dxo, (size_t)T * dim * 4);
        poison(mbuf, mb);
        cuda_mmin m;
        cuda_mmin_carve(&m, mbuf, T, dim, forms);
        cuda_resid_args a;
        memset(&a, 0, sizeof a);
        a.x = dx;
        a.o = nz < 0 ? NULL : dp;
        a.o_bias = bias && nz >= 0 ? dob : NULL;
        a.norm_w = dnw;
        a.rows = rows ? drw : NULL;
        a.n = T;
        a.dim = dim;
        a.eps = 1e-6f;
        a.out = &m;
        a.xout = xout ? dxo : NULL;
        if (nz > 0) {
            a.o_part.p = dp;
            a.o_part.zs = (long long)R * dim;
            a.o_part.ld = dim;
            a.o_part.nz = nz;
        }
        cuda_pe_set(mask);
        err e2 = {ERR_OK, {0}};
        const int rc = cuda_resid_norm(&a, C->st, &e2);
        cuda_pe_set(-1);
        if (rc || cudaStreamSynchronize(C->st) != cudaSuccess) { fprintf(C->f, "not ok - %s: %s\n", tag, e2.msg); C->fails++; return false; }
        o.clear();
        put(o, dx, (size_t)R * dim);
        if (xout) put(o, dxo, (size_t)T * dim);
        put(o, (const uint8_t *)mbuf, mb);
        return true;
    };
    std::vector<uint8_t> ref, got, ctl;
    if (!go(0, ref)) return;
    const long l0 = cuda_pe_launches();
    if (!go(3, got)) return;
    const long ran = cuda_pe_launches() - l0;
    // control: one element of the last partial (or of o / x) changed by 1%
    const size_t ci = (size_t)(np - 1) * R * dim + (size_t)rw[T / 2] * dim + 5;
    if (nz >= 0) { pp[ci] *= 1.01f; cudaMemcpy(dp, pp.data(), pp.size() * 4, cudaMemcpyHostToDevice); }
    else x0[(size_t)rw[T / 2] * dim + 5] *= 1.01f;
    if (!go(3, ctl)) return;
    const size_t nd = ndiff_b(ref, got), nc = ndiff_b(ref, ctl);
    const bool ok = nd == 0 && ran == 1 && nc > 0;
    fprintf(C->f, "%s - %s: %zu of %zu bytes differ from SPARKD_PE=0 (bitwise), new kernel launches %ld, control %zu differ\n",
            ok ? "ok" : "not ok", tag, nd, ref.size(), ran, nc);
    if (!ok) C->fails++;
}

// One cuda_mmin_prepare case: T rows of K (row stride ldx).
void prep_case(int T, int K, int ldx, int forms) {
    char tag[120];
    snprintf(tag, sizeof tag, "pe prepare T%d K%d ldx %d forms %d", T, K, ldx, forms);
    auto x = st_randn((size_t)T * ldx, 1.0);
    for (size_t k = 0; k < x.size(); k += 89) x[k] *= 30.0f;
    float *dxx = dup(x);
    const uint64_t mb = cuda_mmin_bytes(T, K, forms);
    void *mbuf = dalloc(mb);
    if (!dxx || !mbuf) { fprintf(C->f, "not ok - %s: alloc\n", tag); C->fails++; return; }
    auto go = [&](int mask, std::vector<uint8_t> &o) -> bool {
        poison(mbuf, mb);
        cuda_mmin m;
        cuda_mmin_carve(&m, mbuf, T, K, forms);
        cuda_pe_set(mask);
        err e2 = {ERR_OK, {0}};
        const int rc = cuda_mmin_prepare(dxx, ldx, &m, T, C->st, &e2);
        cuda_pe_set(-1);
        if (rc || cudaStreamSynchronize(C->st) != cudaSuccess) { fprintf(C->f, "not ok - %s: %s\n", tag, e2.msg); C->fails++; return false; }
        o.clear();
        put(o, (const uint8_t *)mbuf, mb);
        return true;
    };
    std::vector<uint8_t> ref, got, ctl;
    if (!go(0, ref)) return;
    const long l0 = cuda_pe_launches();
    if (!go(3, got)) return;
    const long ran = cuda_pe_launches() - l0;
    x[(size_t)(T / 2) * ldx + 7] *= 1.01f;
    cudaMemcpy(dxx, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
    if (!go(3, ctl)) return;
    const size_t nd = ndiff_b(ref, got), nc = ndiff_b(ref, ctl);
    const bool ok = nd == 0 && ran == 1 && nc > 0;
    fprintf(C->f, "%s - %s: %zu of %zu bytes differ from SPARKD_PE=0 (bitwise), new kernel launches %ld, control %zu differ\n",
            ok ? "ok" : "not ok", tag, nd, ref.size(), ran, nc);
    if (!ok) C->fails++;
}

} // namespace

int pe_selftest(void *file, int quick, uint64_t seed, err *e) {
    ctx_t ctx;
    C = &ctx;
    st_begin(&ctx, file, quick, e);
    ctx.rng.s = seed;
    if (!st_open_stream()) {
        fprintf(ctx.f, "not ok - pe: stream\n");
        return 1;
    }
    const int F = CUDA_MMIN_F16;
    resid_case(512, 3, F, false, false, false);
    resid_case(65, 2, F | CUDA_MMIN_BF16 | CUDA_MMIN_Q8 | CUDA_MMIN_XP, true, true, false);
    resid_case(300, 4, F, false, true, true);
    resid_case(129, 1, F | CUDA_MMIN_Q8, false, false, false);
    resid_case(200, 0, F, true, false, false);
    resid_case(97, -1, F, false, true, false);
    dfree_all();
    prep_case(512, 12288, 12288, F);
    prep_case(100, 12288, 12352, F | CUDA_MMIN_BF16 | CUDA_MMIN_Q8 | CUDA_MMIN_XP);
    prep_case(512, 4096, 4096, F);
    prep_case(77, 4096, 4160, F | CUDA_MMIN_BF16);
    dfree_all();
    st_close_stream();
    return ctx.fails;
}

// SPARKD_KBENCH=pe: one prefill layer's row producers at T = 512 (Qwen3-8B: hidden 4096, FFN
// 12288, F16 form), SPARKD_PE=0 vs on, each timed warm (median of 20) on the same buffers.
void pe_kbench(void *file, double probe, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    ctx.rng.s = 777;
    if (!st_open_stream()) return;
    const int T = 512, dim = 4096, ffn = 12288, F = CUDA_MMIN_F16;
    fprintf(ctx.f, "| step | T | SPARKD_PE=0 us | SPARKD_PE=3 us | saved us | GB/s new (bytes once) | %% probe |\n|---|---|---|---|---|---|---|\n");
    auto x0 = st_randn((size_t)T * dim, 1.0), nw = st_randn(dim, 1.0), pp = st_randn((size_t)3 * T * dim, 0.5);
    auto xa = st_randn((size_t)T * ffn, 1.0);
    float *dx = dup(x0), *dp = dup(pp), *dxa = dup(xa);
    const float *dnw = dup(nw);
    cuda_mmin m4, m12;
    cuda_mmin_carve(&m4, dalloc(cuda_mmin_bytes(T, dim, F)), T, dim, F);
    cuda_mmin_carve(&m12, dalloc(cuda_mmin_bytes(T, ffn, F)), T, ffn, F);
    if (!dx || !dp || !dxa || !dnw || !m4.hi || !m12.hi) { fprintf(ctx.f, "# pe kbench: alloc failed\n"); return; }
    double tot[2] = {0, 0};
    auto row = [&](const char *name, double mbytes, int calls, auto fn) {
        double us[2];
        for (int v = 0; v < 2; v++) {
            cuda_pe_set(v ? 3 : 0);
            us[v] = time_us(fn, 20);
            tot[v] += calls * us[v];
        }
        cuda_pe_set(-1);
        const double gbs = mbytes / us[1] * 1e3; // (MB / us = TB/s)
        fprintf(ctx.f, "| %s (x%d a layer) | %d | %.2f | %.2f | %.2f | %.0f | %.1f |\n", name, calls, T, us[0], us[1], us[0] - us[1],
                gbs, probe > 0 ? 100.0 * gbs / probe : 0.0);
    };
    err e2 = {ERR_OK, {0}};
    for (int nz = 3; nz >= 0; nz -= 3) {
        cuda_resid_args a;
        memset(&a, 0, sizeof a);
        a.x = dx;
        a.o = dp;
        a.norm_w = dnw;
        a.n = T;
        a.dim = dim;
        a.eps = 1e-6f;
        a.out = &m4;
        if (nz) {
            a.o_part.p = dp;
            a.o_part.zs = (long long)T * dim;
            a.o_part.ld = dim;
            a.o_part.nz = nz;
        }
        // bytes: x read + written, partials (or o) read, hi + lo written (gsum, tscale small)
        const double mb = ((double)T * dim * 4 * (2 + (nz ? nz : 1)) + (double)T * dim * 4) / 1e6;
        row(nz ? "resid_norm, o = 3 split-K partials" : "resid_norm, o plain", mb, nz ? 2 : 0,
            [&] { cuda_resid_norm(&a, C->st, &e2); });
    }
    row("prepare K 12288 (down's input)", ((double)T * ffn * 8) / 1e6, 1, [&] { cuda_mmin_prepare(dxa, ffn, &m12, T, C->st, &e2); });
    row("prepare K 4096 (o's input)", ((double)T * dim * 8) / 1e6, 1, [&] { cuda_mmin_prepare(dxa, dim, &m4, T, C->st, &e2); });
    fprintf(ctx.f, "# a layer (2 resid_norm with partials, 2 prepares): SPARKD_PE=0 %.1f us, on %.1f us, saved %.1f us%s\n", tot[0],
            tot[1], tot[0] - tot[1], e2.code != ERR_OK ? " (an error was reported)" : "");
    dfree_all();
    st_close_stream();
}
