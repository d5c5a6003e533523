// e64_test.cu — round 12, helper e64: e64.cu's row producers at 33..64 rows against layer.cu's
// kernels they replace (e64_selftest, called by cuda_selftest) and the kernel bench
// (e64_kbench, SPARKD_KBENCH=e64).
//
// What is checked: cuda_resid_norm (o as 1..8 deferred split-K partials, plain rows, none; bias,
// xout, rows, every form) and cuda_qkv_rope_store with q / k / v as deferred partials (1..16 of
// them, some of q / k / v plain; qk-norm, bias; KV f16 / bf16 / f32) with SPARKD_E64 on must give
// every output word bit-identical to SPARKD_E64=0 (resid_cl_kernel / resid_norm_row_kernel<1>,
// qkv_kernel<true>): the residual x, xout and the whole mm-input buffer, q and the KV caches,
// all poisoned (0xff: NaN) before each run, so a word the new kernel skips differs. The new
// kernel must have run (its launch counter). Control: one input element changed by 1% must differ.
#include "cuda.h"
#include "cuda_kern.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "kern_util.cuh"
#include "selftest_util.cuh"

extern "C" void cuda_e64_set(int mask, int min_rows); // e64.cu: kernels taken (1 qkv, 2 resid; 0 off, -1 env)
extern "C" long cuda_e64_launches(void);             // e64.cu: launches so far
extern "C" int cuda_e64_attn_prep(const cuda_attn_args *aa, cuda_mmin *m, int T, void *stream, err *e); // e64.cu (mask 4)

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
void verdict(const char *tag, const std::vector<uint8_t> &ref, const std::vector<uint8_t> &got, const std::vector<uint8_t> &ctl,
             long ran) {
    const size_t nd = ndiff_b(ref, got), nc = ndiff_b(ref, ctl);
    const bool ok = nd == 0 && ran == 1 && nc > 0;
    fprintf(C->f, "%s - %s: %zu of %zu bytes differ from SPARKD_E64=0 (bitwise), new kernel launches %ld, control %zu differ\n",
            ok ? "ok" : "not ok", tag, nd, ref.size(), ran, nc);
    if (!ok) C->fails++;
}

// One resid_norm case: T rows of dim 4096, nz deferred partials (0: o plain rows, -1: no o).
void resid_case(int T, int nz, int forms, bool bias, bool xout, bool rows) {
    const int dim = 4096;
    char tag[160];
    snprintf(tag, sizeof tag, "e64 resid_norm T%d %s forms %d%s%s%s", T, nz > 0 ? "partials" : nz == 0 ? "o" : "no o", forms,
             bias ? " bias" : "", xout ? " xout" : "", rows ? " rows" : "");
    if (nz > 0) snprintf(tag + strlen(tag), sizeof tag - strlen(tag), " nz %d", nz);
    const int R = rows ? T + 7 : T;
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
        cuda_e64_set(mask, 2);
        err e2 = {ERR_OK, {0}};
        const int rc = cuda_resid_norm(&a, C->st, &e2);
        cuda_e64_set(-1, -1);
        if (rc || cudaStreamSynchronize(C->st) != cudaSuccess) { fprintf(C->f, "not ok - %s: %s\n", tag, e2.msg); C->fails++; return false; }
        o.clear();
        put(o, dx, (size_t)R * dim);
        if (xout) put(o, dxo, (size_t)T * dim);
        put(o, (const uint8_t *)mbuf, mb);
        return true;
    };
    std::vector<uint8_t> ref, got, ctl;
    if (!go(0, ref)) return;
    const long l0 = cuda_e64_launches();
    if (!go(2, got)) return;
    const long ran = cuda_e64_launches() - l0;
    const size_t ci = (size_t)(np - 1) * R * dim + (size_t)rw[T / 2] * dim + 5; // control: the last partial (or o / x)
    if (nz >= 0) { pp[ci] *= 1.01f; cudaMemcpy(dp, pp.data(), pp.size() * 4, cudaMemcpyHostToDevice); }
    else x0[(size_t)rw[T / 2] * dim + 5] *= 1.01f;
    if (!go(2, ctl)) return;
    verdict(tag, ref, got, ctl, ran);
}

// One qkv_rope_store case: T tokens of nseq sequences (token t: sequence t % nseq, positions from pos0),
// 32 q / 8 kv heads of 128, neox RoPE over 128, kv_type cache (blocks of 16); q / k / v as nz[i] partials.
void qkv_case(int T, int nseq, int pos0, int kv_type, bool norm, bool bias, int nzq, int nzk, int nzv) {
    const int nh = 32, nkv = 8, D = 128, kvb = 16;
    char tag[160];
    snprintf(tag, sizeof tag, "e64 qkv T%d seqs %d pos0 %d kv_type %d%s%s partials q %d k %d v %d", T, nseq, pos0, kv_type,
             norm ? " qk-norm" : "", bias ? " bias" : "", nzq, nzk, nzv);
    const int nz[3] = {nzq, nzk, nzv}, ld[3] = {nh * D + 64, nkv * D, nkv * D + 32}, rows[3] = {nh * D, nkv * D, nkv * D};
    std::vector<float> h[3], ph[3];
    float *d[3], *pd[3];
    bool okm = true;
    for (int i = 0; i < 3; i++) {
        h[i] = st_randn((size_t)T * ld[i], 1.0);
        d[i] = dup(h[i]);
        ph[i] = st_randn((size_t)(nz[i] ? nz[i] : 1) * T * rows[i], 0.7);
        pd[i] = dup(ph[i]);
        okm = okm && d[i] && pd[i];
    }
    auto qn = st_randn(D, 1.0), kn = st_randn(D, 1.0), bq = st_randn((size_t)nh * D, 0.1), bk = st_randn((size_t)nkv * D, 0.1),
         bv = st_randn((size_t)nkv * D, 0.1);
    std::vector<float> inv(D / 2);
    for (int i = 0; i < D / 2; i++) inv[i] = (float)pow(1000000.0, -2.0 * i / D);
    const int per = (T + nseq - 1) / nseq, maxb = (pos0 + per + kvb - 1) / kvb + 1;
    std::vector<int32_t> pos(T), seq(T), bt((size_t)nseq * maxb);
    for (int t = 0; t < T; t++) { seq[t] = t % nseq; pos[t] = pos0 + t / nseq; }
    for (size_t i = 0; i < bt.size(); i++) bt[i] = (int32_t)((i * 5 + 1) % bt.size());
    const size_t es = kv_type == CUDA_KV_F32 ? 4 : 2, cb = bt.size() * nkv * kvb * D * es;
    void *kc = dalloc(cb), *vc = dalloc(cb);
    if (!okm || !kc || !vc) { fprintf(C->f, "not ok - %s: alloc\n", tag); C->fails++; return; }
    cuda_tokens tk;
    tk.pos = dup(pos);
    tk.seq = dup(seq);
    tk.block_tables = dup(bt);
    tk.max_blocks = maxb;
    tk.T = T;
    cuda_qkv_args a;
    memset(&a, 0, sizeof a);
    a.q = d[0]; a.k = d[1]; a.v = d[2]; a.ldq = ld[0]; a.ldk = ld[1]; a.ldv = ld[2];
    if (bias) { a.bq = dup(bq); a.bk = dup(bk); a.bv = dup(bv); }
    if (norm) { a.q_norm = dup(qn); a.k_norm = dup(kn); }
    a.eps = 1e-6f;
    a.inv_freq = dup(inv);
    a.n_rot = D; a.neox = 1; a.mscale = 1.0f;
    a.n_head = nh; a.n_kv = nkv; a.head_dim = D;
    a.kv.k = kc; a.kv.v = vc;
    a.kv_type = kv_type; a.kv_block = kvb;
    cuda_part *P[3] = {&a.pq, &a.pk, &a.pv};
    for (int i = 0; i < 3; i++)
        if (nz[i]) { P[i]->p = pd[i]; P[i]->ld = rows[i]; P[i]->zs = (long long)T * rows[i]; P[i]->nz = nz[i]; }
    auto go = [&](int mask, std::vector<uint8_t> &o) -> bool {
        for (int i = 0; i < 3; i++) {
            cudaMemcpy(d[i], h[i].data(), h[i].size() * 4, cudaMemcpyHostToDevice);
            cudaMemcpy(pd[i], ph[i].data(), ph[i].size() * 4, cudaMemcpyHostToDevice);
        }
        poison(kc, cb);
        poison(vc, cb);
        cuda_e64_set(mask, 2);
        err e2 = {ERR_OK, {0}};
        const int rc = cuda_qkv_rope_store(&a, &tk, C->st, &e2);
        cuda_e64_set(-1, -1);
        if (rc || cudaStreamSynchronize(C->st) != cudaSuccess) { fprintf(C->f, "not ok - %s: %s\n", tag, e2.msg); C->fails++; return false; }
        o.clear();
        for (int i = 0; i < 3; i++) put(o, d[i], h[i].size());
        put(o, (const uint8_t *)kc, cb);
        put(o, (const uint8_t *)vc, cb);
        return true;
    };
    std::vector<uint8_t> ref, got, ctl;
    if (!go(0, ref)) return;
    const long l0 = cuda_e64_launches();
    if (!go(1, got)) return;
    const long ran = cuda_e64_launches() - l0;
    // control: one element of k's last partial (or plain k) of the last token + 1 (x 1.01 can vanish in the f16 cache)
    if (nzk) ph[1][(size_t)(nzk - 1) * T * rows[1] + (size_t)(T - 1) * rows[1] + 3 * D + 9] += 1.0f;
    else h[1][(size_t)(T - 1) * ld[1] + 3 * D + 9] += 1.0f;
    if (!go(1, ctl)) return;
    verdict(tag, ref, got, ctl, ran);
}

// One decode attention step of T sequences (one token each; sequence i at position pos0 + 37 i % 500, Qwen3-8B
// heads, f16 KV in blocks of 16, the engine's plan) followed by o's input prepare: SPARKD_E64=0 (attn_dec3 or
// dec2 + attn_dec_combine_u<128, 16>, then cuda_mmin_prepare) vs cuda_e64_attn_prep (mask 4: e64_comb_kernel).
// Compared: the attention's f32 rows and the whole mm-input buffer (every form asked for), both poisoned first.
// bench > 0: time both (us) instead, reps each.
struct attn_setup {
    cuda_attn_args aa;
    cuda_mmin m;
    void *mbuf;
    uint64_t mb;
    float *dq;
    std::vector<float> q;
};
bool attn_make(attn_setup &S, int T, int pos0, int forms, bool sinks, int seqs) { // seqs: the engine's (slots per token)
    const int H = 32, HK = 8, D = 128, KVB = 16;
    int sms = 132, dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) sms = 132;
    std::vector<int32_t> pos(T);
    int maxp = 0;
    for (int i = 0; i < T; i++) { pos[i] = pos0 + (37 * i) % 500; maxp = pos[i] > maxp ? pos[i] : maxp; }
    const int max_blocks = maxp / KVB + 1, nblk = 509; // (a pool of 509 blocks shared by the tables: 16 MB K + V)
    std::vector<int32_t> bt((size_t)T * max_blocks);
    for (size_t i = 0; i < bt.size(); i++) bt[i] = (int32_t)((i * 7 + 3) % (size_t)nblk);
    std::vector<uint16_t> kv((size_t)nblk * HK * KVB * D);
    uint32_t xs = (2463534242u ^ (uint32_t)C->rng.next()) | 1u;
    for (auto &h : kv) { xs ^= xs << 13; xs ^= xs >> 17; xs ^= xs << 5; h = quant_f32_to_f16((float)(int)(xs % 2001u) * 1e-3f - 1.0f); }
    std::vector<cuda_attn_tile> tiles(T);
    for (int i = 0; i < T; i++) tiles[i] = {i, i, 1, pos[i]};
    const int nsl = cuda_attn_dec_nsl(seqs), n_items = cuda_attn_dec_items(T, HK, sms); // (64 sequences: 16 slots, 8: 64)
    std::vector<cuda_attn_item> items(n_items);
    std::vector<int32_t> nslot(T);
    cuda_attn_dec_plan(tiles.data(), T, bt.data(), max_blocks, KVB, H / HK, n_items, nsl, items.data(), nslot.data());
    S.q = st_randn((size_t)T * H * D, 1.0);
    S.dq = dup(S.q);
    memset(&S.aa, 0, sizeof S.aa);
    cuda_attn_args &aa = S.aa;
    aa.q = S.dq; aa.out = (float *)dalloc((size_t)T * H * D * 4); aa.ldq = aa.ldo = H * D;
    aa.kv.k = dup(kv); aa.kv.v = dup(kv); aa.kv_type = CUDA_KV_F16; aa.kv_block = KVB;
    aa.block_tables = dup(bt); aa.max_blocks = max_blocks; aa.tiles = dup(tiles); aa.n_tiles = T;
    aa.n_head = H; aa.n_kv = HK; aa.head_dim = D; aa.scale = 1.0f / sqrtf((float)D); aa.window = 0;
    aa.sinks = sinks ? dup(st_randn(H, 1.0)) : NULL;
    aa.n_split = 1; aa.work = (float *)dalloc(cuda_attn_dec_work_bytes(T, H, D, nsl)); aa.pf_fast = 1;
    aa.plan = dup(items); aa.plan_nslot = dup(nslot); aa.plan_items = n_items; aa.plan_nsl = nsl;
    S.mb = cuda_mmin_bytes(T, H * D, forms);
    S.mbuf = dalloc(S.mb);
    cuda_mmin_carve(&S.m, S.mbuf, T, H * D, forms);
    return S.dq && aa.out && aa.kv.k && aa.kv.v && aa.block_tables && aa.tiles && aa.work && aa.plan && aa.plan_nslot && S.mbuf &&
           (!sinks || aa.sinks);
}
// Old (mask 0: cuda_attention + cuda_mmin_prepare) or new (cuda_e64_attn_prep); returns its rc (-1: not taken).
int attn_run(attn_setup &S, int T, bool fused, err *e2) {
    cuda_e64_set(fused ? 4 : 0, 2);
    int rc;
    if (fused) rc = cuda_e64_attn_prep(&S.aa, &S.m, T, C->st, e2);
    else {
        rc = cuda_attention(&S.aa, C->st, e2);
        if (!rc) rc = cuda_mmin_prepare(S.aa.out, S.aa.ldo, &S.m, T, C->st, e2);
    }
    cuda_e64_set(-1, -1);
    return rc;
}
void attn_case(int T, int pos0, int forms, bool sinks, int seqs = 64) {
    char tag[160];
    snprintf(tag, sizeof tag, "e64 attention combine + o's prepare T%d pos0 %d forms %d%s (slots of an engine of %d sequences)", T, pos0,
             forms, sinks ? " sinks" : "", seqs);
    attn_setup S;
    if (!attn_make(S, T, pos0, forms, sinks, seqs)) { fprintf(C->f, "not ok - %s: alloc\n", tag); C->fails++; return; }
    auto go = [&](bool fused, std::vector<uint8_t> &o) -> bool {
        poison(S.aa.out, (size_t)T * 4096 * 4);
        poison(S.mbuf, S.mb);
        cudaMemset(S.aa.work, 0, 4096); // (the combine reads only what dec3 wrote)
        err e2 = {ERR_OK, {0}};
        const int rc = attn_run(S, T, fused, &e2);
        if (rc || cudaStreamSynchronize(C->st) != cudaSuccess) {
            fprintf(C->f, "not ok - %s: rc %d %s\n", tag, rc, e2.msg);
            C->fails++;
            return false;
        }
        o.clear();
        put(o, S.aa.out, (size_t)T * 4096);
        put(o, (const uint8_t *)S.mbuf, S.mb);
        return true;
    };
    std::vector<uint8_t> ref, got, ctl;
    if (!go(false, ref)) return;
    const long l0 = cuda_e64_launches();
    if (!go(true, got)) return;
    const long ran = cuda_e64_launches() - l0;
    S.q[(size_t)(T / 2) * 4096 + 5 * 128 + 17] += 0.5f; // control: one q element of one token's head 5
    cudaMemcpy(S.dq, S.q.data(), S.q.size() * 4, cudaMemcpyHostToDevice);
    if (!go(true, ctl)) return;
    if (ran == 0 && ndiff_b(ref, got) == 0 && ndiff_b(ref, ctl) > 0) { // (the attention took a path without e64's hook)
        fprintf(C->f, "ok - %s # SKIP the fused kernel was not reached (an attention path without e64_comb's hook, e.g. "
                      "SPARKD_A8's); the fallback's %zu bytes equal SPARKD_E64=0's\n", tag, ref.size());
        return;
    }
    verdict(tag, ref, got, ctl, ran);
}

} // namespace

int e64_selftest(void *file, int quick, uint64_t seed, err *e) {
    ctx_t ctx;
    C = &ctx;
    st_begin(&ctx, file, quick, e);
    ctx.rng.s = seed;
    if (!st_open_stream()) {
        fprintf(ctx.f, "not ok - e64: stream\n");
        return 1;
    }
    const int F = CUDA_MMIN_F16;
    resid_case(64, 8, F, false, false, false);
    resid_case(48, 5, F | CUDA_MMIN_BF16 | CUDA_MMIN_Q8 | CUDA_MMIN_XP, true, true, false);
    resid_case(33, 1, F, false, true, true);
    resid_case(64, 0, F, true, false, false);
    resid_case(40, -1, F | CUDA_MMIN_Q8, false, true, false);
    resid_case(57, 8, F, false, false, true);
    resid_case(8, 8, F, false, false, false);
    resid_case(2, 6, F | CUDA_MMIN_BF16, true, true, true);
    resid_case(64, 8, F, false, true, false);
    resid_case(16, 3, F | CUDA_MMIN_Q8, true, false, true);
    resid_case(24, 0, F, true, true, false);
    dfree_all();
    qkv_case(64, 64, 700, CUDA_KV_F16, true, false, 5, 5, 5);
    qkv_case(64, 64, 3000, CUDA_KV_F16, true, false, 3, 3, 16);
    qkv_case(48, 16, 100, CUDA_KV_BF16, true, true, 2, 0, 7);
    qkv_case(33, 3, 4000, CUDA_KV_F32, false, true, 0, 4, 1);
    qkv_case(8, 8, 32768, CUDA_KV_F16, true, false, 5, 5, 16);
    qkv_case(2, 1, 17, CUDA_KV_BF16, true, true, 8, 8, 8);
    dfree_all();
    attn_case(64, 500, F, false);
    attn_case(48, 3000, F | CUDA_MMIN_BF16 | CUDA_MMIN_Q8, true);
    attn_case(33, 40, F | CUDA_MMIN_XP, false);
    attn_case(8, 200, F, false);
    attn_case(8, 2000, F, false, 8);
    attn_case(16, 700, F | CUDA_MMIN_BF16, true, 16);
    attn_case(3, 30, F, false, 8);
    dfree_all();
    st_close_stream();
    return ctx.fails;
}

// SPARKD_KBENCH=e64: a decode layer's row producers at T = 64 / 48 / 33 / 32 / 8 rows (Qwen3-8B: hidden 4096, 32 / 8 heads
// of 128, f16 KV), SPARKD_E64=0 vs on (SPARKD_E64_MIN=2 here: every T taken);
// each timed warm (median of 50) on the same buffers.
void e64_kbench(void *file, double probe, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    ctx.rng.s = 777;
    if (!st_open_stream()) return;
    const int dim = 4096, F = CUDA_MMIN_F16;
    fprintf(ctx.f, "| step | T | SPARKD_E64=0 us | SPARKD_E64=7 us | saved us | GB/s new (bytes once) | %% probe |\n"
                   "|---|---|---|---|---|---|---|\n");
    double tot[2][2] = {{0, 0}, {0, 0}}; // [T 64, T 8][off, on]
    err e2 = {ERR_OK, {0}};
    auto row = [&](const char *name, int T, double mbytes, int calls, bool, auto fn) {
        double us[2] = {0, 0};
        for (int v = 0; v < 2; v++) {
            cuda_e64_set(v ? 7 : 0, 2);
            us[v] = time_us(fn, 50);
        }
        cuda_e64_set(-1, -1);
        for (int v = 0; v < 2; v++) {
            if (T == 64) tot[0][v] += calls * us[v];
            if (T == 8) tot[1][v] += calls * us[v];
        }
        const double gbs = mbytes / us[1] * 1e3;
        fprintf(ctx.f, "| %s (x%d a layer) | %d | %.2f | %.2f | %.2f | %.0f | %.1f |\n", name, calls, T, us[0], us[1], us[0] - us[1], gbs,
                probe > 0 ? 100.0 * gbs / probe : 0.0);
    };
    for (int T : {64, 48, 33, 32, 8}) {
        auto x0 = st_randn((size_t)T * dim, 1.0), nw = st_randn(dim, 1.0), pp = st_randn((size_t)8 * T * dim, 0.5);
        float *dx = dup(x0), *dp = dup(pp);
        const float *dnw = dup(nw);
        cuda_mmin m4;
        cuda_mmin_carve(&m4, dalloc(cuda_mmin_bytes(T, dim, F)), T, dim, F);
        if (!dx || !dp || !dnw || !m4.hi) { fprintf(ctx.f, "# e64 kbench: alloc failed\n"); return; }
        for (int nz : {8, 6, 0}) {
            if (nz == 6 && T != 64 && T != 8) continue;
            cuda_resid_args a;
            memset(&a, 0, sizeof a);
            a.x = dx; a.o = nz ? dp : NULL; a.norm_w = dnw; a.n = T; a.dim = dim; a.eps = 1e-6f; a.out = &m4;
            if (nz) { a.o_part.p = dp; a.o_part.zs = (long long)T * dim; a.o_part.ld = dim; a.o_part.nz = nz; }
            // bytes: x read (+ written), partials read, hi + lo written
            const double mb = ((double)T * dim * 4 * (nz ? 2 + nz : 1) + (double)T * dim * 4) / 1e6;
            char name[96];
            snprintf(name, sizeof name, nz ? "resid_norm, o = %d split-K partials" : "resid_norm, no o (first)", nz);
            row(name, T, mb, nz == 8 ? 2 : 0, true, [&] { cuda_resid_norm(&a, C->st, &e2); });
        }
        {
            const int nh = 32, nkv = 8, D = 128, kvb = 16, seqs = T, maxb = 4;
            const int rows = (nh + 2 * nkv) * D;
            for (int pv : {5, 16}) { // Q8_0: one q+k+v product of 5 partials; Q4_K_M: q+k 3 (b64) / 5 (b8), v 16
                const int pqk = pv == 5 ? 5 : T <= 16 ? 5 : 3;
                auto ws = st_randn((size_t)(pqk + 16) * T * rows, 0.7), qkv = st_randn((size_t)T * rows, 1.0), qn = st_randn(D, 1.0);
                std::vector<float> inv(D / 2);
                for (int i = 0; i < D / 2; i++) inv[i] = (float)pow(1000000.0, -2.0 * i / D);
                std::vector<int32_t> pos(T), seq(T), bt((size_t)seqs * maxb);
                for (int t = 0; t < T; t++) { pos[t] = 40 + t % 7; seq[t] = t; } // (block 2 of each sequence's 4)
                for (size_t b = 0; b < bt.size(); b++) bt[b] = (int32_t)b;
                float *dqkv = dup(qkv), *dws = dup(ws);
                cuda_tokens tk;
                tk.pos = dup(pos); tk.seq = dup(seq); tk.block_tables = dup(bt); tk.max_blocks = maxb; tk.T = T;
                cuda_qkv_args a;
                memset(&a, 0, sizeof a);
                a.q = dqkv; a.k = dqkv + nh * D; a.v = dqkv + (nh + nkv) * D; a.ldq = a.ldk = a.ldv = rows;
                a.q_norm = dup(qn); a.k_norm = a.q_norm; a.eps = 1e-6f; a.inv_freq = dup(inv);
                a.n_rot = D; a.neox = 1; a.mscale = 1.0f; a.n_head = nh; a.n_kv = nkv; a.head_dim = D;
                a.kv.k = dalloc((size_t)bt.size() * nkv * kvb * D * 2); a.kv.v = dalloc((size_t)bt.size() * nkv * kvb * D * 2);
                a.kv_type = CUDA_KV_F16; a.kv_block = kvb;
                if (!dqkv || !dws || !a.kv.k || !a.kv.v) continue;
                a.pq.p = dws; a.pk.p = dws + nh * D; a.pq.ld = a.pk.ld = rows;
                a.pq.zs = a.pk.zs = (long long)T * rows; a.pq.nz = a.pk.nz = pqk;
                if (pv == 5) { a.pv = a.pq; a.pv.p = dws + (nh + nkv) * D; }
                else { a.pv.p = dws + (size_t)pqk * T * rows; a.pv.ld = nkv * D; a.pv.zs = (long long)T * nkv * D; a.pv.nz = pv; }
                const double mb = ((double)T * (nh + nkv) * D * 4 * pqk + (double)T * nkv * D * 4 * pv + (double)T * nh * D * 4 +
                                   (double)T * nkv * D * 4) / 1e6;
                char name[96];
                snprintf(name, sizeof name, "qkv_rope_store, partials q+k %d v %d (%s)", pqk, pv, pv == 5 ? "Q8_0" : "Q4_K_M");
                row(name, T, mb, (T == 64 && pv == 5) || (T == 8 && pv == 16) ? 1 : 0, false, [&] { cuda_qkv_rope_store(&a, &tk, C->st, &e2); });
            }
        }
        if (T != 32) { // the attention combine + o's prepare (contexts 500..1000), old two launches vs one
            attn_setup S;
            if (attn_make(S, T, 500, F, false, T <= 16 ? T : 64)) {
                double us[2];
                for (int v = 0; v < 2; v++) us[v] = time_us([&] { attn_run(S, T, v == 1, &e2); }, 50);
                if (T == 64) { tot[0][0] += us[0]; tot[0][1] += us[1]; }
                if (T == 8) { tot[1][0] += us[0]; tot[1][1] += us[1]; }
                fprintf(ctx.f, "| attention (dec3 + combine) + o's prepare (x1 a layer; ctx 500..1000) | %d | %.2f | %.2f | %.2f | | |\n", T,
                        us[0], us[1], us[0] - us[1]);
            }
        }
        dfree_all();
    }
    fprintf(ctx.f, "# a layer's 2 resid_norm (8 partials) + qkv + attention with o's prepare: T 64 (Q8_0 qkv) SPARKD_E64=0 %.1f us, on %.1f us, saved %.1f; T 8 (Q4_K_M qkv) "
                   "%.1f -> %.1f us, saved %.1f%s\n",
            tot[0][0], tot[0][1], tot[0][0] - tot[0][1], tot[1][0], tot[1][1], tot[1][0] - tot[1][1],
            e2.code != ERR_OK ? " (an error was reported)" : "");
    dfree_all();
    // the fused combine's selftest rows again here (the bench may run with another attention path than selftest --quick)
    attn_case(64, 500, F, false);
    attn_case(48, 3000, F | CUDA_MMIN_BF16 | CUDA_MMIN_Q8, true);
    attn_case(8, 2000, F, false, 8);
    dfree_all();
    st_close_stream();
}
