// a8_test.cu — round 12, helper a8: decode attention at long context, 1 and 8 sequences sharing
// a prefix (attn.cu's attn_dec3_kernel<D, 1>, SPARKD_A8). Checks (a8_selftest, called by
// cuda_selftest) and the kernel bench (a8_kbench, SPARKD_KBENCH=a8).
//
// What is checked, one Qwen3-8B attention layer (32 heads, 8 KV heads, d128, f16 KV in blocks
// of 16, precision fast), contexts 2K / 8K / 32K, 1 sequence, and 8 sequences whose first ctx
// positions are the same physical blocks (the shared prefix, one cascade item of 32 rows) with
// own suffixes of 1..22 positions:
// - SPARKD_A8 = 1 (its kernel, the plan at its residency) against the float64 CPU reference
//   (4 heads of 4 KV heads per sequence) within 3e-3 (precision fast's bound in selftest.cu:
//   Q and P one f16 each, ~5e-4 expected), and against SPARKD_A8 = 0 (today's kernel and plan)
//   within 2e-3 (P is rounded to f16 against each part's running maximum: another split rounds
//   other values, ~1e-4 apart; 1e-6 where the item counts agree, as on GB10);
// - SPARKD_A8 = 2 (its kernel, today's plan) against SPARKD_A8 = 0 within 1e-6 (same items,
//   same per-step arithmetic; the merge skips the warps that hold another m-tile, which today's
//   adds with weight 0); SPARKD_A8 = 3 (3 stages a warp, 2 CTAs an SM) against the reference
//   (3e-3) and SPARKD_A8 = 0 (1e-6 with the same items, else 2e-3);
// - its kernel must have run (launch counter), and not at precision exact (today's kernel and item
//   count there: the same results as SPARKD_A8 = 0, bitwise);
// - the control: SPARKD_ATT8 = 2 (the partial sums written halved) through A8's kernel must miss
//   the reference by more than 3e-3.
// Outputs and partials are poisoned with NaN before each call (a row not written fails).
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

extern "C" int cuda_attn_dec_a8(int mode);          // attn.cu: SPARKD_A8 mode 0..5 (-1: unchanged); returns the old
extern "C" long cuda_attn_dec_a8_launches(void);     // attn.cu: attn_dec3_kernel<D, 1> launches so far
extern "C" int cuda_l32_mode(int mode);             // l32.cu (round 13): SPARKD_L32 (0 here: a8's rows compare today's kernels)

namespace {

struct ctx_t : st_ctx {};
ctx_t *C;

// ok: err <= tol (not NaN) and the caller's own condition ok
void report(const char *what, const char *shape, double err, double tol, double us, bool ok, const char *note = "") {
    ok = ok && !isnan(err) && err <= tol;
    if (!ok) C->fails++;
    fprintf(C->f, "%s - %s %s: err %.3g (tol %.3g) %.1f us%s%s\n", ok ? "ok" : "not ok", what, shape, err, tol, us,
            note[0] ? " " : "", note);
    fflush(C->f);
}

int sms_of() {
    int sms = 0, dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        sms < 1)
        cudaGetLastError(), sms = 132;
    return sms;
}

// One decode layer: nseq sequences; the first ctx / 16 blocks of every sequence are sequence 0's
// (shared), sequence s's token at position ctx + own(s) - 1, own(s) = 1 + 3 s positions after
// the prefix (one sequence: position ctx). K, V pools of f16 [block][HK][16][D].
struct layer_t {
    static constexpr int H = 32, HK = 8, D = 128, KVB = 16;
    int ctx = 0, nseq = 0, max_blocks = 0, nblk = 0, copies = 1;
    std::vector<int32_t> bt;              // [nseq][max_blocks]
    std::vector<uint16_t> kh, vh;         // host f16 pools [nblk][HK][KVB][D]
    std::vector<cuda_attn_tile> tiles;    // one per sequence
    std::vector<float> q;                 // [nseq][H][D]
    std::vector<void *> kd, vd;           // device pools (copies: benches rotate them past L2)
    cuda_attn_args a;
    double bytes = 0;                     // K + V bytes read once (the shared prefix once)
    int own(int s) const { return 1 + 3 * s; }
    int pos(int s) const { return ctx + own(s) - 1; }
};

// (shared = false: every sequence its own blocks, no prefix shared: the 64-sequence benchmark's shape)
void make_layer(layer_t &L, int ctx, int nseq, int copies, bool host_copy, bool shared = true) {
    const int KVB = layer_t::KVB, HK = layer_t::HK, D = layer_t::D, H = layer_t::H;
    L.ctx = ctx;
    L.nseq = nseq;
    L.copies = copies;
    const int pre = shared ? ctx / KVB : 0;
    L.max_blocks = (L.pos(nseq - 1) + 1 + KVB - 1) / KVB;
    L.bt.assign((size_t)nseq * L.max_blocks, 0);
    int nb = 0;
    std::vector<int32_t> perm;
    for (int i = 0; i < pre; i++) L.bt[i] = nb++;
    for (int s = 0; s < nseq; s++)
        for (int i = 0; i < L.max_blocks; i++) L.bt[(size_t)s * L.max_blocks + i] = i < pre ? L.bt[i] : nb++;
    // (the pool in a shuffled block order: tables are not the identity)
    perm.resize(nb);
    for (int i = 0; i < nb; i++) perm[i] = i;
    for (int i = nb - 1; i > 0; i--) std::swap(perm[i], perm[C->rng.below(i + 1)]);
    for (auto &b : L.bt) b = perm[b];
    L.nblk = nb;
    const size_t elems = (size_t)nb * HK * KVB * D;
    L.kh.resize(elems);
    L.vh.resize(elems);
    uint32_t x = (uint32_t)C->rng.next() | 1u;
    for (auto &h : L.kh) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; h = quant_f32_to_f16((float)(int)(x % 2001u - 1000u) * 2e-3f); }
    for (auto &h : L.vh) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; h = quant_f32_to_f16((float)(int)(x % 2001u - 1000u) * 1e-3f); }
    L.kd.resize(copies);
    L.vd.resize(copies);
    for (int i = 0; i < copies; i++) { L.kd[i] = dup(L.kh); L.vd[i] = dup(L.vh); }
    if (!host_copy) { std::vector<uint16_t>().swap(L.kh); std::vector<uint16_t>().swap(L.vh); }
    L.tiles.clear();
    uint64_t read_pos = 0;
    for (int s = 0; s < nseq; s++) {
        L.tiles.push_back({s, s, 1, L.pos(s)});
        read_pos += (uint64_t)L.pos(s) + 1 - (s ? (uint64_t)pre * KVB : 0);
    }
    L.bytes = (double)read_pos * HK * D * 2 * 2;
    L.q = st_randn((size_t)nseq * H * D, 1.0);
    cuda_attn_args &a = L.a;
    memset(&a, 0, sizeof a);
    a.q = dup(L.q);
    a.out = (float *)dalloc((size_t)nseq * H * D * 4);
    a.ldq = a.ldo = H * D;
    a.kv.k = L.kd[0]; a.kv.v = L.vd[0];
    a.kv_type = CUDA_KV_F16; a.kv_block = KVB;
    a.block_tables = dup(L.bt); a.max_blocks = L.max_blocks;
    a.tiles = dup(L.tiles); a.n_tiles = nseq;
    a.n_head = H; a.n_kv = HK; a.head_dim = D; a.scale = 1.0f / sqrtf((float)D);
    a.n_split = 1;
    a.plan_nsl = cuda_attn_dec_nsl(nseq);
    a.work = (float *)dalloc(cuda_attn_dec_work_bytes(nseq, H, D, a.plan_nsl));
    a.pf_fast = 1;
}

// The plan for the current SPARKD_A8 / ATT8 modes and L.a.pf_fast (as cuda_forward makes it);
// false on failure.
bool plan_layer(layer_t &L, int *items_out) {
    const int n_items = cuda_attn_dec_items_p(L.nseq, layer_t::HK, sms_of(), L.a.pf_fast);
    std::vector<cuda_attn_item> items(n_items);
    std::vector<int32_t> nslot(L.nseq);
    const int rc = cuda_attn_dec_plan(L.tiles.data(), L.nseq, L.bt.data(), L.max_blocks, layer_t::KVB,
                                      layer_t::H / layer_t::HK, n_items, L.a.plan_nsl, items.data(), nslot.data());
    if (rc < 1) return false;
    L.a.plan = dup(items);
    L.a.plan_nslot = dup(nslot);
    L.a.plan_items = n_items;
    if (items_out) *items_out = n_items;
    return true;
}

// One call with SPARKD_A8 = a8, ATT8 = att8 (output, partials poisoned first); empty on failure.
std::vector<float> run_layer(layer_t &L, int a8, int att8, int fast, int *items, long *launches) {
    const int a8_was = cuda_attn_dec_a8(a8), att8_was = cuda_attn_dec_att8(att8), l32_was = cuda_l32_mode(0);
    std::vector<float> out;
    L.a.pf_fast = fast;
    const long l0 = cuda_attn_dec_a8_launches();
    if (plan_layer(L, items)) {
        poison(L.a.out, (size_t)L.nseq * layer_t::H * layer_t::D * 4);
        poison(L.a.work, cuda_attn_dec_work_bytes(L.nseq, layer_t::H, layer_t::D, L.a.plan_nsl));
        err e2 = {ERR_OK, {0}};
        if (cuda_attention(&L.a, C->st, &e2) == 0 && cudaStreamSynchronize(C->st) == cudaSuccess)
            out = get(L.a.out, (size_t)L.nseq * layer_t::H * layer_t::D);
        else
            fprintf(C->f, "# a8: %s\n", e2.msg), cudaGetLastError();
    }
    if (launches) *launches = cuda_attn_dec_a8_launches() - l0;
    cuda_attn_dec_a8(a8_was);
    cuda_attn_dec_att8(att8_was);
    cuda_l32_mode(l32_was);
    return out;
}

const int CHECK_HEADS[4] = {0, 13, 22, 31}; // (KV heads 0, 3, 5, 7)

// float64 reference of the checked heads of every sequence: [nseq][4][D]
std::vector<double> reference(const layer_t &L) {
    const int D = layer_t::D, HK = layer_t::HK, KVB = layer_t::KVB, G = layer_t::H / layer_t::HK;
    static std::vector<float> f16;
    if (f16.empty()) {
        f16.resize(65536);
        for (int i = 0; i < 65536; i++) f16[i] = quant_f16_to_f32((uint16_t)i);
    }
    std::vector<double> ref((size_t)L.nseq * 4 * D, 0.0), sc;
    for (int s = 0; s < L.nseq; s++)
        for (int hi = 0; hi < 4; hi++) {
            const int h = CHECK_HEADS[hi], hk = h / G, pos = L.pos(s);
            const float *qh = &L.q[((size_t)s * layer_t::H + h) * D];
            sc.assign(pos + 1, 0.0);
            double mx = -INFINITY;
            for (int p = 0; p <= pos; p++) {
                const size_t row = ((size_t)L.bt[(size_t)s * L.max_blocks + p / KVB] * HK + hk) * KVB + p % KVB;
                const uint16_t *k = &L.kh[row * D];
                double d = 0;
                for (int i = 0; i < D; i++) d += (double)qh[i] * f16[k[i]];
                sc[p] = d * L.a.scale;
                mx = std::max(mx, sc[p]);
            }
            double l = 0;
            double *o = &ref[((size_t)s * 4 + hi) * D];
            for (int p = 0; p <= pos; p++) {
                const double w = exp(sc[p] - mx);
                l += w;
                const size_t row = ((size_t)L.bt[(size_t)s * L.max_blocks + p / KVB] * HK + hk) * KVB + p % KVB;
                const uint16_t *v = &L.vh[row * D];
                for (int i = 0; i < D; i++) o[i] += w * f16[v[i]];
            }
            for (int i = 0; i < D; i++) o[i] /= l;
        }
    return ref;
}

// ||out - ref|| / ||ref|| over the checked heads (NaN when out is empty or not finite)
double err_ref(const layer_t &L, const std::vector<float> &out, const std::vector<double> &ref) {
    if (out.empty()) return NAN;
    const int D = layer_t::D;
    double num = 0, den = 0;
    for (int s = 0; s < L.nseq; s++)
        for (int hi = 0; hi < 4; hi++)
            for (int i = 0; i < D; i++) {
                const double r = ref[((size_t)s * 4 + hi) * D + i];
                const float v = out[((size_t)s * layer_t::H + CHECK_HEADS[hi]) * D + i];
                if (!isfinite(v)) return NAN;
                num += (v - r) * (v - r);
                den += r * r;
            }
    return sqrt(num / (den > 0 ? den : 1));
}
// ||x - y|| / ||y|| over all outputs (NaN when either is empty or x not finite)
double err_out(const std::vector<float> &x, const std::vector<float> &y) {
    if (x.empty() || x.size() != y.size()) return NAN;
    double num = 0, den = 0;
    for (size_t i = 0; i < x.size(); i++) {
        if (!isfinite(x[i])) return NAN;
        num += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        den += (double)y[i] * y[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

void test_layer(int ctx, int nseq, bool control) {
    layer_t L;
    make_layer(L, ctx, nseq, 1, true);
    char shape[96];
    int it0 = 0, it1 = 0, it2 = 0, it3 = 0;
    long n0 = 0, n1 = 0, n2 = 0, n3 = 0, nx = 0;
    const auto o0 = run_layer(L, 0, 1, 1, &it0, &n0);
    const auto o1 = run_layer(L, 1, 1, 1, &it1, &n1);
    const auto o2 = run_layer(L, 2, 1, 1, &it2, &n2);
    const auto o3 = run_layer(L, 3, 1, 1, &it3, &n3);
    int it5 = 0;
    long n5 = 0;
    const auto o5 = run_layer(L, 5, 1, 1, &it5, &n5);
    const auto ref = reference(L);
    snprintf(shape, sizeof shape, "ctx %d, %d seq%s, items %d / %d / %d / %d a KV head", ctx, nseq, nseq > 1 ? " (shared prefix)" : "",
             it0, it1, it2, it3);
    char note[80];
    snprintf(note, sizeof note, "(launches of A8's kernel %ld / %ld / %ld / %ld)", n0, n1, n2, n3);
    report("a8 fast vs reference", shape, err_ref(L, o1, ref), 3e-3, 0, n1 == 1 && n0 == 0, note);
    report("a8=0 fast vs reference", shape, err_ref(L, o0, ref), 3e-3, 0, true);
    // (a different split: P rounded to f16 against other running maxima, ~1e-4 apart expected)
    report("a8 vs a8=0", shape, err_out(o1, o0), it1 == it0 ? 1e-6 : 2e-3, 0, true);
    report("a8=2 (today's plan) vs a8=0", shape, err_out(o2, o0), 1e-6, 0, n2 == 1);
    report("a8=3 (3 stages a warp) vs reference", shape, err_ref(L, o3, ref), 3e-3, 0, n3 == 1);
    report("a8=3 vs a8=0", shape, err_out(o3, o0), it3 == it0 ? 1e-6 : 2e-3, 0, true);
    // (5: batches of 2..8 sequences only; today's kernel for the others)
    report("a8=5 (today's footprint) vs a8=0", shape, err_out(o5, o0), it5 == it0 ? 1e-6 : 2e-3, 0, n5 == (nseq >= 2 && nseq <= 8));
    if (control) {
        const auto oc = run_layer(L, 1, 2, 1, NULL, &nx);
        const double ec = err_ref(L, oc, ref);
        snprintf(note, sizeof note, "(error %.3g must exceed 3e-3)", ec);
        report("a8 control (sums halved)", shape, ec > 3e-3 ? 0.0 : 1.0, 0.5, 0, nx == 1, note);
        // precision exact: today's kernel and item count (A8's are fast only), within the exact bound
        int ie = 0, i0e = 0;
        const auto oe = run_layer(L, 1, 1, 0, &ie, &nx);
        const auto oe0 = run_layer(L, 0, 1, 0, &i0e, NULL);
        snprintf(note, sizeof note, "(items %d, with A8 off %d: must be equal)", ie, i0e);
        report("a8 on, precision exact (today's kernel)", shape, err_ref(L, oe, ref), 5e-5, 0, nx == 0 && ie == i0e, note);
        report("a8 on vs off, precision exact", shape, err_out(oe, oe0), 0.0, 0, true);
    }
    dfree_all();
}

} // namespace

int a8_selftest(void *file, int quick, uint64_t seed, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, quick, e);
    C = &ctx;
    ctx.rng.s = seed;
    if (!st_open_stream()) return 1;
    test_layer(2048, 8, true);
    test_layer(2048, 1, false);
    test_layer(8192, 8, false);
    test_layer(8192, 1, false);
    if (!quick) {
        test_layer(32768, 1, false);
        test_layer(32768, 8, true);
    }
    st_close_stream();
    return ctx.fails;
}

// ---------------------------------------------------------------- kernel bench
//
// One layer's decode attention (kernel + combine, PDL on as in the engine), Qwen3-8B shape,
// precision fast, at 8K and 32K for 1 and 8 sequences (the 8 sharing the prefix), and 64
// sequences of ~545-734 positions sharing nothing (the 64-sequence benchmark's shape): SPARKD_A8
// = 0 (today), 1 (A8's kernel and plan), 2 (A8's kernel, today's plan), 3 (A8's kernel with 3
// stages a warp, 2 CTAs an SM), 5 (A8's kernel in today's 83 KB: 2 CTAs an SM, today's plan); us
// per call (median of 9 runs of 10 calls back to back, the KV pools rotated past L2 where they
// are small), GB/s of the KV read once.
void a8_kbench(void *file, double probe, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    ctx.rng.s = 4242;
    if (!st_open_stream()) return;
    const int pdl0 = cuda_pdl_enabled(), l32_was = cuda_l32_mode(0);
    cuda_pdl_set(1);
    fprintf(ctx.f, "| attention | ctx | seqs | SPARKD_A8 | items a KV head | us per layer | GB/s (KV once) | %% probe |\n"
                   "|---|---|---|---|---|---|---|---|\n");
    // (then 64 sequences of 512 + 32 positions, nothing shared: the 64-sequence benchmark's last step)
    for (int shape = 0; shape < 5; shape++) {
        const int ctxlen = shape < 2 ? 32768 : shape < 4 ? 8192 : 512 + 32, nseq = shape == 4 ? 64 : shape & 1 ? 8 : 1;
        {
            layer_t L;
            const double kvb = (double)ctxlen * nseq * layer_t::HK * layer_t::D * 2 * 2 / (shape == 4 ? 1 : nseq);
            int copies = (int)(512e6 / kvb) + 1;
            if (copies > 8) copies = 8;
            make_layer(L, ctxlen, nseq, copies, false, shape != 4);
            for (int a8 : {0, 1, 2, 3, 5}) {
                const int a8_was = cuda_attn_dec_a8(a8);
                int items = 0;
                if (!plan_layer(L, &items)) {
                    fprintf(ctx.f, "# a8 kbench: plan failed\n");
                    cuda_attn_dec_a8(a8_was);
                    continue;
                }
                int ci = 0;
                const double us = time_us([&] { // (10 calls back to back: the launch gaps hidden as in a graph)
                    for (int r = 0; r < 10; r++) {
                        L.a.kv.k = L.kd[ci % copies];
                        L.a.kv.v = L.vd[ci % copies];
                        ci++;
                        err e3;
                        cuda_attention(&L.a, C->st, &e3);
                    }
                }, 9) / 10;
                fprintf(ctx.f, "| dec3%s + combine | %d | %d | %d | %d | %.1f | %.0f | %.1f%% |\n", a8 ? "<D,1>" : "", ctxlen, nseq,
                        a8, items, us, L.bytes / us * 1e-3, probe > 0 ? 100.0 * L.bytes / us * 1e-3 / probe : 0.0);
                fflush(ctx.f);
                cuda_attn_dec_a8(a8_was);
            }
            dfree_all();
        }
    }
    cuda_pdl_set(pdl0);
    cuda_l32_mode(l32_was);
    st_close_stream();
}
