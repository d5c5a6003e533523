// apf_test.cu — round 10, helper apf: checks of the precision-fast prefill attention on 8-warp
// CTAs (apf.cu, SPARKD_APF) — apf_selftest, called by cuda_selftest — and its kernel bench
// (apf_kbench, SPARKD_KBENCH=apf).
//
// What is checked, per call (random Q, K, V; the block table a random permutation of the pool):
// - SPARKD_APF=1, =2 and =3 each against a float64 reference computed here from the same f32 Q and f16 K / V
//   (causal, window, sinks; nothing shared with the kernels): ||out - ref|| / ||ref|| < 3e-3
//   (Q and P rounded to f16, as attn_pf_kernel's fast path; ~5e-4 expected);
// - SPARKD_APF=1 against SPARKD_APF=0 at precision fast (attn_pf_kernel, the same roundings in
//   another order): < 3e-3; the new kernel must have launched once (its counter), the old one
//   not at all with the switch off; exact calls never take it;
// - outputs are poisoned with NaN before each call (a row left unwritten fails), n_split > 1
//   goes through attn.cu's combine, out_p64 rows are read back through the P64 order;
// - the control: the new kernel with the scale x 1.25 must miss the reference by more than 3e-3.
// Shapes: Qwen3-8B's (32 / 8 heads, d 128) at 512 tokens, odd prompts after a prefix (67 + 300),
// 1 and 7 tokens, G 1 / 4 / 8, d 64 with a window and sinks (gpt-oss's layers), n_split 3 / 4.
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

extern "C" void cuda_apf_set(int on);    // apf.cu: SPARKD_APF (-1: as the environment says)
extern "C" long cuda_apf_launches(void); // apf.cu: attn_apf_kernel launches so far
extern "C" int cuda_pp_mode(void);       // gemm.cu: SPARKD_PP's bits

namespace {

struct ctx_t : st_ctx {};
ctx_t *C;

// One prefill attention call and its host copies: sequences of n[s] new tokens after pos0[s]
// positions, f16 K / V pool (n_blocks, HK, kvb, D), tiles of cuda_attn_pf_tokens(G).
struct apf_call {
    cuda_attn_args a;
    int T, H, HK, D, kvb;
    std::vector<float> q;            // (T, H * D)
    std::vector<uint16_t> k, v;      // pool, f16 bits
    std::vector<int32_t> bt;         // (nseq, max_blocks)
    std::vector<int> seq, pos;       // per token
    std::vector<float> sinks;        // (H) or empty
    size_t work_b;
};

bool apf_make(apf_call &c, int H, int HK, int D, const std::vector<int> &n, const std::vector<int> &pos0, int window,
              int sinks, int n_split, int fast, int p64, bool shuffle) {
    const int kvb = 16, nseq = (int)n.size(), G = H / HK;
    int T = 0, max_blocks = 0;
    std::vector<int> t0(nseq);
    for (int s = 0; s < nseq; s++) { t0[s] = T; T += n[s]; max_blocks = std::max(max_blocks, (pos0[s] + n[s] + kvb - 1) / kvb); }
    const int n_blocks = nseq * max_blocks + 3;
    std::vector<int32_t> perm(n_blocks);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    if (shuffle)
        for (int i = n_blocks - 1; i > 0; i--) std::swap(perm[i], perm[C->rng.below(i + 1)]);
    c.bt.assign((size_t)nseq * max_blocks, 0);
    for (size_t i = 0; i < c.bt.size(); i++) c.bt[i] = perm[i];
    c.k.resize((size_t)n_blocks * HK * kvb * D);
    c.v.resize(c.k.size());
    for (auto &h : c.k) h = quant_f32_to_f16((float)C->rng.normal());
    for (auto &h : c.v) h = quant_f32_to_f16((float)C->rng.normal());
    std::vector<cuda_attn_tile> tiles;
    const int QT = cuda_attn_pf_tokens(G);
    c.seq.clear(); c.pos.clear();
    for (int s = 0; s < nseq; s++) {
        for (int i = 0; i < n[s]; i += QT) tiles.push_back({s, t0[s] + i, std::min(QT, n[s] - i), pos0[s] + i});
        for (int i = 0; i < n[s]; i++) c.seq.push_back(s), c.pos.push_back(pos0[s] + i);
    }
    c.q = st_randn((size_t)T * H * D, 1.0);
    c.sinks = sinks ? st_randn(H, 1.0) : std::vector<float>();
    cuda_attn_args &a = c.a;
    memset(&a, 0, sizeof a);
    a.q = dup(c.q);
    a.out = (float *)dalloc((size_t)T * H * D * 4);
    a.ldq = a.ldo = H * D;
    a.kv.k = dup(c.k);
    a.kv.v = dup(c.v);
    a.kv_type = CUDA_KV_F16;
    a.kv_block = kvb;
    a.block_tables = dup(c.bt);
    a.max_blocks = max_blocks;
    a.tiles = dup(tiles);
    a.n_tiles = (int)tiles.size();
    a.n_head = H; a.n_kv = HK; a.head_dim = D;
    a.scale = 1.0f / sqrtf((float)D);
    a.window = window;
    a.sinks = sinks ? dup(c.sinks) : NULL;
    a.n_split = n_split;
    a.prefill = 1;
    a.pf_fast = fast;
    a.out_p64 = p64;
    c.work_b = n_split > 1 ? cuda_attn_work_bytes_tokens(T, H, D, n_split) : 0;
    a.work = n_split > 1 ? (float *)dalloc(c.work_b) : NULL;
    c.T = T; c.H = H; c.HK = HK; c.D = D; c.kvb = kvb;
    return a.q && a.out && a.kv.k && a.kv.v && a.block_tables && a.tiles && (!sinks || a.sinks) && (n_split == 1 || a.work);
}

// float64 reference (T, H * D) in natural order.
std::vector<double> apf_ref(const apf_call &c, double scale) {
    const int H = c.H, D = c.D, G = H / c.HK, mb = c.a.max_blocks;
    std::vector<double> out((size_t)c.T * H * D, 0.0), sc, acc(D);
    for (int t = 0; t < c.T; t++) {
        const int pt = c.pos[t], s = c.seq[t];
        const int lo = c.a.window > 0 ? std::max(0, pt - c.a.window + 1) : 0;
        sc.assign(pt + 1, 0.0);
        for (int h = 0; h < H; h++) {
            const int hk = h / G;
            const float *qr = &c.q[((size_t)t * H + h) * D];
            double mx = -INFINITY;
            for (int p = lo; p <= pt; p++) {
                const size_t row = ((size_t)c.bt[(size_t)s * mb + p / c.kvb] * c.HK + hk) * c.kvb + p % c.kvb;
                double d = 0;
                for (int i = 0; i < D; i++) d += (double)qr[i] * quant_f16_to_f32(c.k[row * D + i]);
                sc[p] = d * scale;
                mx = std::max(mx, sc[p]);
            }
            if (!c.sinks.empty()) mx = std::max(mx, (double)c.sinks[h]);
            double l = c.sinks.empty() ? 0.0 : exp((double)c.sinks[h] - mx);
            std::fill(acc.begin(), acc.end(), 0.0);
            for (int p = lo; p <= pt; p++) {
                const double w = exp(sc[p] - mx);
                l += w;
                const size_t row = ((size_t)c.bt[(size_t)s * mb + p / c.kvb] * c.HK + hk) * c.kvb + p % c.kvb;
                for (int i = 0; i < D; i++) acc[i] += w * quant_f16_to_f32(c.v[row * D + i]);
            }
            for (int i = 0; i < D; i++) out[((size_t)t * H + h) * D + i] = acc[i] / l;
        }
    }
    return out;
}

// The call at SPARKD_APF = apf (the output poisoned first), read back in natural order; empty on an error.
std::vector<float> apf_run(apf_call &c, int apf, long *launched) {
    std::vector<float> w;
    const size_t n = (size_t)c.T * c.H * c.D;
    poison(c.a.out, n * 4);
    if (c.a.work) poison(c.a.work, c.work_b);
    cuda_apf_set(apf);
    const long l0 = cuda_apf_launches();
    err e2 = {ERR_OK, {0}};
    const int rc = cuda_attention(&c.a, C->st, &e2);
    cuda_apf_set(-1);
    if (launched) *launched = cuda_apf_launches() - l0;
    if (rc || cudaStreamSynchronize(C->st) != cudaSuccess) {
        cudaGetLastError();
        return w;
    }
    auto o = get(c.a.out, n);
    if (!c.a.out_p64) return o;
    w.resize(n);
    const int K = c.H * c.D;
    for (int t = 0; t < c.T; t++)
        for (int e = 0; e < K; e++) w[(size_t)t * K + e] = o[(size_t)t * K + (e & ~63) + inv_perm64(e & 63)];
    return w;
}

// ||x - ref|| / ||ref|| (NaN when x is empty or holds a non-finite value)
double rel(const std::vector<float> &x, const std::vector<double> &ref) {
    if (x.size() != ref.size() || x.empty()) return NAN;
    double num = 0, den = 0;
    for (size_t i = 0; i < x.size(); i++) {
        if (!isfinite(x[i])) return NAN;
        num += (x[i] - ref[i]) * (x[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

void row(bool ok, const char *tag, double err, double tol, const char *note) {
    ok = ok && !isnan(err);
    if (!ok) C->fails++;
    fprintf(C->f, "%s - %s: err %.3g (tol %.3g)%s%s\n", ok ? "ok" : "not ok", tag, err, tol, note[0] ? " " : "", note);
    fflush(C->f);
}

// One shape: the new kernel against float64 (when cpu) and against attn_pf_kernel, the launch
// counters, exact untouched, and (control) a wrong scale.
void check(const char *what, int H, int HK, int D, std::vector<int> n, std::vector<int> pos0, int window, int sinks,
           int n_split, int p64, bool cpu, bool control) {
    const double tol = 3e-3;
    char tag[200];
    int ctx = 0, T = 0;
    for (size_t s = 0; s < n.size(); s++) { ctx = std::max(ctx, pos0[s] + n[s]); T += n[s]; }
    snprintf(tag, sizeof tag, "apf %s: %zu seq T%d ctx<=%d h%d/%d d%d%s%s split%d%s", what, n.size(), T, ctx, H, HK, D,
             window ? " win" : "", sinks ? " sinks" : "", n_split, p64 ? " p64" : "");
    apf_call c;
    if (!apf_make(c, H, HK, D, n, pos0, window, sinks, n_split, 1, p64, true)) {
        row(false, tag, NAN, tol, "(cudaMalloc)");
        dfree_all();
        return;
    }
    long l_old = 0;
    const auto w0 = apf_run(c, 0, &l_old);
    std::vector<double> r0(w0.begin(), w0.end());
    std::vector<double> ref;
    if (cpu) ref = apf_ref(c, c.a.scale);
    char note[160], t2[240];
    for (int mode = 1; mode <= 3; mode++) { // SPARKD_APF=1 (<= 128 registers, 2 CTAs an SM), =2 (no cap, 1 an SM), =3 (2 if > 2 CTAs an SM)
        long l_new = 0;
        const auto w1 = apf_run(c, mode, &l_new);
        snprintf(note, sizeof note, "(vs SPARKD_APF=0 fast; new-kernel launches off %ld / on %ld)", l_old, l_new);
        snprintf(t2, sizeof t2, "%s APF=%d vs old", tag, mode);
        row(l_old == 0 && l_new == 1, t2, w0.empty() ? NAN : rel(w1, r0), tol, note);
        if (!cpu) continue;
        snprintf(t2, sizeof t2, "%s APF=%d vs f64", tag, mode);
        snprintf(note, sizeof note, "(float64 reference; SPARKD_APF=0 fast: %.3g)", rel(w0, ref));
        row(true, t2, rel(w1, ref), tol, note);
        if (control) {
            const float sc = c.a.scale;
            c.a.scale = sc * 1.25f;
            const auto wc = apf_run(c, mode, NULL);
            c.a.scale = sc;
            const double ec = rel(wc, ref);
            snprintf(t2, sizeof t2, "%s APF=%d control (scale x 1.25 must miss)", tag, mode);
            row(!isnan(ec) && ec > tol, t2, ec, tol, "(err must exceed tol)");
        }
    }
    // exact calls stay on attn_pf_kernel
    c.a.pf_fast = 0;
    long l_ex = 0;
    const auto we = apf_run(c, 1, &l_ex);
    c.a.pf_fast = 1;
    snprintf(t2, sizeof t2, "%s exact untouched", tag);
    snprintf(note, sizeof note, "(exact vs fast old; new-kernel launches %ld)", l_ex);
    row(l_ex == 0, t2, rel(we, r0), tol, note);
    dfree_all();
}

} // namespace

int apf_selftest(void *file, int quick, uint64_t seed, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, quick, e);
    C = &ctx;
    ctx.rng.s = seed;
    if (!st_open_stream()) {
        fprintf(ctx.f, "not ok - apf: stream\n");
        return 1;
    }
    check("pp512", 32, 8, 128, {512}, {0}, 0, 0, 1, 0, !quick, false);
    check("pp300", 8, 2, 128, {300}, {0}, 0, 0, 1, 0, true, true);
    check("odd", 16, 4, 128, {67, 300}, {5, 200}, 0, 0, 1, 0, true, false);
    check("odd sinks p64", 16, 4, 128, {67, 45}, {5, 130}, 0, 1, 1, 1, true, false);
    check("1 and 7 tokens", 8, 2, 128, {1, 7}, {0, 300}, 0, 0, 1, 0, true, false);
    check("G1", 8, 8, 128, {17, 40}, {0, 99}, 0, 0, 1, 0, true, false);
    check("window d64", 16, 4, 64, {300}, {2100}, 256, 0, 1, 0, true, true);
    check("gpt-oss d64 G8", 64, 8, 64, {100, 33}, {0, 200}, 128, 1, 1, 0, true, false);
    check("gpt-oss d64 full", 64, 8, 64, {130}, {60}, 0, 1, 1, 0, true, false);
    check("split", 8, 2, 128, {40}, {3000}, 0, 0, 4, 0, true, false);
    check("split G1 sinks", 8, 8, 128, {17}, {2000}, 0, 1, 3, 0, true, false);
    check("split d64 win", 16, 4, 64, {70}, {1500}, 200, 0, 3, 0, true, false);
    check("512 after 2048 split", 32, 8, 128, {512}, {2048}, 0, 0, 4, 0, false, false);
    if (!quick) check("pp2048", 32, 8, 128, {2048}, {0}, 0, 0, 1, 0, false, false);
    cuda_apf_set(-1);
    st_close_stream();
    return ctx.fails;
}

// SPARKD_KBENCH=apf: the prefill attention of one layer (Qwen3-8B: 32 / 8 heads, d 128, f16 KV, the
// engine's tiles and split rule), SPARKD_APF 0 / 1 / 2 at precision fast (and the old kernel exact); us a
// layer and TFLOP/s of the causal work. SPARKD_APF_KB=i runs shape i only (for ncu: -k regex:attn_).
void apf_kbench(void *file, double probe, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    ctx.rng.s = 4245;
    (void)probe;
    if (!st_open_stream()) return;
    int sms = 132, dev = 0;
    if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    const char *only = getenv("SPARKD_APF_KB");
    fprintf(ctx.f, "| apf | shape | split | old fast us | APF=1 us | APF=2 us | APF=1/old | APF=2/old | TFLOP/s old | APF=1 | APF=2 | old exact us |\n"
                   "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    struct sh { int n, nseq, ctx; } shs[] = {{128, 1, 0}, {512, 1, 0}, {2048, 1, 0}, {512, 1, 2048}, {128, 16, 0}, {300, 1, 0}};
    for (int si = 0; si < (int)(sizeof shs / sizeof shs[0]); si++) {
        if (only && atoi(only) != si) continue;
        const sh &x = shs[si];
        std::vector<int> n(x.nseq, x.n), pos0(x.nseq, x.ctx);
        double flops = 0;
        for (int s = 0; s < x.nseq; s++)
            for (int i = 0; i < x.n; i++) flops += 4.0 * 128 * 32 * (x.ctx + i + 1);
        // the engine's split rule (engine.cu: few tiles at a long context)
        const int QT = cuda_attn_pf_tokens(4), tiles = x.nseq * ((x.n + QT - 1) / QT), T = x.n * x.nseq;
        const int split_tokens = (2 * sms / 8 + 1) * cuda_attn_tile_tokens(4);
        int split = 1;
        if (tiles * 8 < 2 * sms && x.ctx + x.n > 1024) split = std::min(T <= split_tokens ? 32 : 4, (x.ctx + x.n) / 512);
        apf_call c;
        if (!apf_make(c, 32, 8, 128, n, pos0, 0, 0, split, 1, 0, false)) break;
        double us[4] = {0, 0, 0, 0};
        for (int v = 0; v < 4; v++) { // old fast, APF=1, APF=2, old exact
            c.a.pf_fast = v < 3;
            cuda_apf_set(v < 3 ? v : 0);
            us[v] = time_us([&] { err e4; cuda_attention(&c.a, ctx.st, &e4); }, only ? 3 : 20);
        }
        cuda_apf_set(-1);
        cudaError_t ce = cudaGetLastError();
        auto tf = [&](double u) { return u > 0 ? flops / (u * 1e6) : 0.0; };
        fprintf(ctx.f, "| apf | %d seq x %d tokens after %d | %d | %.1f | %.1f | %.1f | %.3f | %.3f | %.1f | %.1f | %.1f | %.1f %s|\n", x.nseq,
                x.n, x.ctx, split, us[0], us[1], us[2], us[0] > 0 ? us[1] / us[0] : 0.0, us[0] > 0 ? us[2] / us[0] : 0.0, tf(us[0]),
                tf(us[1]), tf(us[2]), us[3], ce != cudaSuccess ? cudaGetErrorString(ce) : "");
        fflush(ctx.f);
        dfree_all();
    }
    fprintf(ctx.f, "# SPARKD_PP bits %d (8: the snake order)\n", cuda_pp_mode());
    st_close_stream();
}
