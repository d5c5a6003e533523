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
extern "C" void cuda_pe_nolo(int on);      // pe.cu: the engine says no product reads the low halves (mask 8)

namespace {

struct ctx_t : st_ctx {};
ctx_t *C;

size_t ndiff_b(const std::vector<uint8_t> &a, const std::vector<uint8_t> &b) {
    size_t n = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); i++) n += a[i] != b[i];
    return n + (a.size() > b.size() ? a.size() - b.size() : b.size() - a.size());
}
// v's bytes [off + lo, ...) of m's low halves (lo, blo; buffer mbuf) set to 0xff (the poison): what a nolo
// run must leave there, compared with the full run's other words.
void mask_lo(std::vector<uint8_t> &v, size_t off, const cuda_mmin &m, const void *mbuf) {
    const size_t n = (size_t)m.T * m.K * 2;
    const uint16_t *lo[2] = {m.forms & CUDA_MMIN_F16 ? m.lo : NULL, m.forms & CUDA_MMIN_BF16 ? m.blo : NULL};
    for (const uint16_t *p : lo)
        if (p) memset(v.data() + off + ((const uint8_t *)p - (const uint8_t *)mbuf), 0xff, n);
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
    {   // mask 8 (the engine's nolo): every word but the low halves, which stay poisoned
        std::vector<uint8_t> nl;
        cuda_pe_nolo(1);
        const bool ok1 = go(15, nl);
        cuda_pe_nolo(0);
        if (!ok1) return;
        cuda_mmin mm;
        cuda_mmin_carve(&mm, mbuf, T, dim, forms);
        std::vector<uint8_t> r2 = ref;
        mask_lo(r2, (size_t)R * dim * 4 + (xout ? (size_t)T * dim * 4 : 0), mm, mbuf);
        const size_t nd2 = ndiff_b(r2, nl);
        fprintf(C->f, "%s - %s nolo: %zu bytes differ from SPARKD_PE=0 with its low halves left poisoned\n", nd2 ? "not ok" : "ok",
                tag, nd2);
        if (nd2) C->fails++;
    }
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
    {   // mask 8 (the engine's nolo), as resid_case
        std::vector<uint8_t> nl;
        cuda_pe_nolo(1);
        const bool ok1 = go(15, nl);
        cuda_pe_nolo(0);
        if (!ok1) return;
        cuda_mmin mm;
        cuda_mmin_carve(&mm, mbuf, T, K, forms);
        std::vector<uint8_t> r2 = ref;
        mask_lo(r2, 0, mm, mbuf);
        const size_t nd2 = ndiff_b(r2, nl);
        fprintf(C->f, "%s - %s nolo: %zu bytes differ from SPARKD_PE=0 with its low halves left poisoned\n", nd2 ? "not ok" : "ok",
                tag, nd2);
        if (nd2) C->fails++;
    }
    x[(size_t)(T / 2) * ldx + 7] *= 1.01f;
    cudaMemcpy(dxx, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
    if (!go(3, ctl)) return;
    const size_t nd = ndiff_b(ref, got), nc = ndiff_b(ref, ctl);
    const bool ok = nd == 0 && ran == 1 && nc > 0;
    fprintf(C->f, "%s - %s: %zu of %zu bytes differ from SPARKD_PE=0 (bitwise), new kernel launches %ld, control %zu differ\n",
            ok ? "ok" : "not ok", tag, nd, ref.size(), ran, nc);
    if (!ok) C->fails++;
}

// One qkv_rope_store case: T tokens of nseq sequences (token t: sequence t % nseq, positions from pos0),
// Qwen3-8B's heads (32 q, 8 kv, 128), neox RoPE over all 128, kv_type cache (blocks of 16).
void qkv_case(int T, int nseq, int pos0, int kv_type, bool norm, bool bias) {
    const int nh = 32, nkv = 8, D = 128, kvb = 16;
    char tag[160];
    snprintf(tag, sizeof tag, "pe qkv T%d seqs %d pos0 %d kv_type %d%s%s", T, nseq, pos0, kv_type, norm ? " qk-norm" : "",
             bias ? " bias" : "");
    const int ldq = nh * D + 64, ldk = nkv * D, ldv = nkv * D + 32;
    auto q0 = st_randn((size_t)T * ldq, 1.0), k0 = st_randn((size_t)T * ldk, 1.0), v0 = st_randn((size_t)T * ldv, 1.0);
    auto qn = st_randn(D, 1.0), kn = st_randn(D, 1.0), bq = st_randn((size_t)nh * D, 0.1), bk = st_randn((size_t)nkv * D, 0.1),
         bv = st_randn((size_t)nkv * D, 0.1);
    std::vector<float> inv(D / 2);
    for (int i = 0; i < D / 2; i++) inv[i] = (float)pow(1000000.0, -2.0 * i / D);
    const int per = (T + nseq - 1) / nseq, maxb = (pos0 + per + kvb - 1) / kvb + 1;
    std::vector<int32_t> pos(T), seq(T), bt((size_t)nseq * maxb);
    for (int t = 0; t < T; t++) { seq[t] = t % nseq; pos[t] = pos0 + t / nseq; }
    for (size_t i = 0; i < bt.size(); i++) bt[i] = (int32_t)((i * 5 + 1) % bt.size()); // (a permutation of the blocks)
    const size_t es = kv_type == CUDA_KV_F32 ? 4 : 2, cb = bt.size() * nkv * kvb * D * es;
    float *dq = dup(q0), *dk = dup(k0), *dv = dup(v0);
    void *kc = dalloc(cb), *vc = dalloc(cb);
    if (!dq || !dk || !dv || !kc || !vc) { fprintf(C->f, "not ok - %s: alloc\n", tag); C->fails++; return; }
    cuda_tokens tk;
    tk.pos = dup(pos);
    tk.seq = dup(seq);
    tk.block_tables = dup(bt);
    tk.max_blocks = maxb;
    tk.T = T;
    cuda_qkv_args a;
    memset(&a, 0, sizeof a);
    a.q = dq; a.k = dk; a.v = dv; a.ldq = ldq; a.ldk = ldk; a.ldv = ldv;
    if (bias) { a.bq = dup(bq); a.bk = dup(bk); a.bv = dup(bv); }
    if (norm) { a.q_norm = dup(qn); a.k_norm = dup(kn); }
    a.eps = 1e-6f;
    a.inv_freq = dup(inv);
    a.n_rot = D; a.neox = 1; a.mscale = 1.0f;
    a.n_head = nh; a.n_kv = nkv; a.head_dim = D;
    a.kv.k = kc; a.kv.v = vc;
    a.kv_type = kv_type; a.kv_block = kvb;
    auto go = [&](int mask, std::vector<uint8_t> &o) -> bool {
        cudaMemcpy(dq, q0.data(), q0.size() * 4, cudaMemcpyHostToDevice);
        cudaMemcpy(dk, k0.data(), k0.size() * 4, cudaMemcpyHostToDevice);
        cudaMemcpy(dv, v0.data(), v0.size() * 4, cudaMemcpyHostToDevice);
        poison(kc, cb);
        poison(vc, cb);
        cuda_pe_set(mask);
        err e2 = {ERR_OK, {0}};
        const int rc = cuda_qkv_rope_store(&a, &tk, C->st, &e2);
        cuda_pe_set(-1);
        if (rc || cudaStreamSynchronize(C->st) != cudaSuccess) { fprintf(C->f, "not ok - %s: %s\n", tag, e2.msg); C->fails++; return false; }
        o.clear();
        put(o, dq, q0.size());
        put(o, dk, k0.size());
        put(o, dv, v0.size());
        put(o, (const uint8_t *)kc, cb);
        put(o, (const uint8_t *)vc, cb);
        return true;
    };
    std::vector<uint8_t> ref, got, ctl;
    if (!go(0, ref)) return;
    const long l0 = cuda_pe_launches();
    if (!go(7, got)) return;
    const long ran = cuda_pe_launches() - l0;
    k0[(size_t)(T - 1) * ldk + 3 * D + 9] *= 1.01f; // control: one element of k of the last token
    if (!go(7, ctl)) return;
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
    prep_case(130, 12288, 12288, F | CUDA_MMIN_Q8);
    prep_case(100, 12288, 12352, F | CUDA_MMIN_BF16 | CUDA_MMIN_Q8 | CUDA_MMIN_XP);
    prep_case(512, 4096, 4096, F);
    prep_case(77, 4096, 4160, F | CUDA_MMIN_BF16);
    dfree_all();
    qkv_case(512, 1, 0, CUDA_KV_F16, true, false);
    qkv_case(301, 3, 4000, CUDA_KV_BF16, true, true);
    qkv_case(66, 2, 3000, CUDA_KV_F32, false, true);
    qkv_case(305, 3, 4000, CUDA_KV_F16, true, true);
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
    fprintf(ctx.f, "| step | T | SPARKD_PE=0 us | SPARKD_PE=7 us | saved us | GB/s new (bytes once) | %% probe |\n|---|---|---|---|---|---|---|\n");
    auto x0 = st_randn((size_t)T * dim, 1.0), nw = st_randn(dim, 1.0), pp = st_randn((size_t)3 * T * dim, 0.5);
    auto xa = st_randn((size_t)T * ffn, 1.0);
    float *dx = dup(x0), *dp = dup(pp), *dxa = dup(xa);
    const float *dnw = dup(nw);
    cuda_mmin m4, m12;
    cuda_mmin_carve(&m4, dalloc(cuda_mmin_bytes(T, dim, F)), T, dim, F);
    cuda_mmin_carve(&m12, dalloc(cuda_mmin_bytes(T, ffn, F)), T, ffn, F);
    if (!dx || !dp || !dxa || !dnw || !m4.hi || !m12.hi) { fprintf(ctx.f, "# pe kbench: alloc failed\n"); return; }
    double tot[2] = {0, 0};
    int cols_on = 7, cols_nolo = 15; // (the new column's mask; the nolo rows swap them)
    auto row = [&](const char *name, double mbytes, int calls, auto fn) {
        double us[2];
        for (int v = 0; v < 2; v++) {
            cuda_pe_set(v ? cols_on : 0);
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
    {
        // qkv_rope_store: one sequence at positions 0..511, qk-norm, f16 cache of blocks of 16
        const int nh = 32, nkv = 8, D = 128, kvb = 16, nb = T / kvb;
        auto qkv = st_randn((size_t)T * (nh + 2 * nkv) * D, 1.0), qn = st_randn(D, 1.0);
        std::vector<float> inv(D / 2);
        for (int i = 0; i < D / 2; i++) inv[i] = (float)pow(1000000.0, -2.0 * i / D);
        std::vector<int32_t> pos(T), seq(T, 0), bt(nb);
        for (int t = 0; t < T; t++) pos[t] = t;
        for (int b = 0; b < nb; b++) bt[b] = b;
        float *dqkv = dup(qkv);
        cuda_tokens tk;
        tk.pos = dup(pos); tk.seq = dup(seq); tk.block_tables = dup(bt); tk.max_blocks = nb; tk.T = T;
        cuda_qkv_args a;
        memset(&a, 0, sizeof a);
        const int ld = (nh + 2 * nkv) * D; // (the q+k+v product's one output)
        a.q = dqkv; a.k = dqkv + nh * D; a.v = dqkv + (nh + nkv) * D; a.ldq = a.ldk = a.ldv = ld;
        a.q_norm = dup(qn); a.k_norm = a.q_norm; a.eps = 1e-6f; a.inv_freq = dup(inv);
        a.n_rot = D; a.neox = 1; a.mscale = 1.0f; a.n_head = nh; a.n_kv = nkv; a.head_dim = D;
        a.kv.k = dalloc((size_t)nb * nkv * kvb * D * 2); a.kv.v = dalloc((size_t)nb * nkv * kvb * D * 2);
        a.kv_type = CUDA_KV_F16; a.kv_block = kvb;
        if (dqkv && a.kv.k && a.kv.v)
            row("qkv_rope_store (q, k norm + RoPE, KV f16)", ((double)T * nh * D * 8 + (double)T * nkv * D * 2 * 6) / 1e6, 1,
                [&] { cuda_qkv_rope_store(&a, &tk, C->st, &e2); });
    }
    {   // mask 8 as the engine's fast forward sets it (cuda_pe_nolo): the same producers without the low halves
        cuda_pe_nolo(1);
        const double t0 = tot[0], t1 = tot[1];
        cuda_resid_args a;
        memset(&a, 0, sizeof a);
        a.x = dx; a.o = dp; a.norm_w = dnw; a.n = T; a.dim = dim; a.eps = 1e-6f; a.out = &m4;
        a.o_part.p = dp; a.o_part.zs = (long long)T * dim; a.o_part.ld = dim; a.o_part.nz = 3;
        std::swap(cols_on, cols_nolo);
        row("resid_norm, 3 partials, nolo", ((double)T * dim * 4 * 5 + (double)T * dim * 2) / 1e6, 2, [&] { cuda_resid_norm(&a, C->st, &e2); });
        row("prepare K 12288, nolo", ((double)T * ffn * 6) / 1e6, 1, [&] { cuda_mmin_prepare(dxa, ffn, &m12, T, C->st, &e2); });
        row("prepare K 4096, nolo", ((double)T * dim * 6) / 1e6, 1, [&] { cuda_mmin_prepare(dxa, dim, &m4, T, C->st, &e2); });
        std::swap(cols_on, cols_nolo);
        cuda_pe_nolo(0);
        fprintf(ctx.f, "# nolo rows: the new column is SPARKD_PE=15 with the engine's nolo (compare with the rows above); a layer's "
                       "2 resid + 2 prepares: %.1f us\n", tot[1] - t1);
        tot[0] = t0; tot[1] = t1;
    }
    fprintf(ctx.f, "# a layer (2 resid_norm with partials, 2 prepares, qkv): SPARKD_PE=0 %.1f us, on %.1f us, saved %.1f us%s\n", tot[0],
            tot[1], tot[0] - tot[1], e2.code != ERR_OK ? " (an error was reported)" : "");
    dfree_all();
    st_close_stream();
}
