// dq_test.cu — round 10, helper dq: checks of cuda_dq_attention (dq_selftest, called by
// cuda_selftest) and its kernel bench (dq_kbench, SPARKD_KBENCH=dq).
//
// What is checked (Qwen3-8B's attention shape: 32 q heads, 8 KV heads of 128, f16 KV in blocks
// of 16 whose ids are shuffled): one token at position pos of one sequence, from the raw q / k / v
// GEMV rows (random, optional biases), q / k RMS norm weights, RoPE (neox, theta 1e6) against a
// float64 reference written here (the RoPE angle rounded to f32 as every kernel does; the new
// K / V row rounded to f16 as the cache holds it):
// - the output row (natural order, or P64 order as Wo's GEMV reads it), ||out - ref|| / ||ref||
//   below 1e-4 (f32 sums, ex2.approx), for every one of three launches in a row (the ticket of
//   the split merge must be reset by each launch), outputs poisoned with NaN before each;
// - the K and V rows stored at pos for every KV head (f16 of the reference, relative 2e-3);
// - one CTA (no merge), 5 / 26 / 32 splits (the ticket merge), a sliding window, sinks, biases;
// - the control: the same output against the reference without the newest position must miss
//   by more than the tolerance (else the check could not see a lost row).
#include "cuda.h"
#include "cuda_kern.h"
#include "dq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "kern_util.cuh"
#include "selftest_util.cuh"

extern "C" void cuda_dq_pre_set(int on);  // dq.cu: SPARKD_DQ_PRE's bit (-1: as the env says)
extern "C" void cuda_dq_pipe_set(int on); // dq.cu: SPARKD_DQ_PIPE (-1: as the env says)

namespace {

struct ctx_t : st_ctx {};
ctx_t *C;

void report(const char *what, const char *shape, double err, double tol, double us, bool ok, const char *note = "") {
    ok = ok && !isnan(err);
    if (!ok) C->fails++;
    fprintf(C->f, "%s - %s %s: err %.3g (tol %.3g) %.1f us%s%s\n", ok ? "ok" : "not ok", what, shape, err, tol, us,
            note[0] ? " " : "", note);
    fflush(C->f);
}

const int H = 32, HK = 8, D = 128, G = 4, KVB = 16;

// One layer's inputs on the host and the device.
struct layer_t {
    int pos, max_blocks, nb;
    std::vector<int32_t> bt;            // (max_blocks) block table of the sequence
    std::vector<uint16_t> kc, vc;       // (nb, HK, KVB, D) f16 pools
    std::vector<float> q, k, v;         // raw rows (H * D), (HK * D), (HK * D)
    std::vector<float> bq, bk, bv;      // biases (empty: none)
    std::vector<float> qn, kn, ifr;     // norm weights (D), inverse frequencies (D / 2)
    std::vector<float> sinks;           // (H) or empty
    int window;
    // device
    float *dq_, *dk, *dv, *dbq, *dbk, *dbv, *dqn, *dkn, *difr, *dsinks, *dout, *dwork;
    void *dkc, *dvc;
    int32_t *dpos, *dseq, *dbt;
};

size_t kv_at(int blk, int h, int o) { return (((size_t)blk * HK + h) * KVB + o) * D; }

void make_layer(layer_t &L, int pos, bool bias, bool sinks, int window) {
    rng_t &R = C->rng;
    L.pos = pos;
    L.window = window;
    L.max_blocks = pos / KVB + 1 + 2;
    L.nb = L.max_blocks + 3;
    std::vector<int32_t> perm(L.nb);
    for (int i = 0; i < L.nb; i++) perm[i] = i;
    for (int i = L.nb - 1; i > 0; i--) std::swap(perm[i], perm[R.below(i + 1)]);
    L.bt.assign(perm.begin(), perm.begin() + L.max_blocks);
    const size_t pool = (size_t)L.nb * HK * KVB * D;
    L.kc.resize(pool);
    L.vc.resize(pool);
    for (size_t i = 0; i < pool; i++) {
        L.kc[i] = quant_f32_to_f16((float)R.normal());
        L.vc[i] = quant_f32_to_f16((float)R.normal());
    }
    L.q = st_randn((size_t)H * D, 1.5);
    L.k = st_randn((size_t)HK * D, 1.5);
    L.v = st_randn((size_t)HK * D, 1.0);
    L.bq.clear(); L.bk.clear(); L.bv.clear();
    if (bias) { L.bq = st_randn((size_t)H * D, 0.3); L.bk = st_randn((size_t)HK * D, 0.3); L.bv = st_randn((size_t)HK * D, 0.3); }
    L.qn = st_randn(D, 0.2);
    L.kn = st_randn(D, 0.2);
    for (int d = 0; d < D; d++) L.qn[d] += 1.0f, L.kn[d] += 1.0f;
    L.ifr.resize(D / 2);
    for (int i = 0; i < D / 2; i++) L.ifr[i] = (float)pow(1e6, -2.0 * i / D);
    L.sinks.clear();
    if (sinks) L.sinks = st_randn(H, 1.0);
    L.dq_ = dup(L.q); L.dk = dup(L.k); L.dv = dup(L.v);
    L.dbq = bias ? dup(L.bq) : NULL; L.dbk = bias ? dup(L.bk) : NULL; L.dbv = bias ? dup(L.bv) : NULL;
    L.dqn = dup(L.qn); L.dkn = dup(L.kn); L.difr = dup(L.ifr);
    L.dsinks = sinks ? dup(L.sinks) : NULL;
    L.dkc = dup(L.kc); L.dvc = dup(L.vc);
    L.dpos = dup(std::vector<int32_t>{pos});
    L.dseq = dup(std::vector<int32_t>{0});
    L.dbt = dup(L.bt);
    L.dout = (float *)dalloc((size_t)H * D * 4);
    L.dwork = (float *)dalloc(cuda_dq_work_bytes(H, D) + 4096);
}

// The float64 reference: out (H * D natural order), the new K / V rows (HK * D, f16-rounded).
// drop_new: the newest position left out (the control).
void reference(const layer_t &L, std::vector<double> &out, std::vector<float> &knew, std::vector<float> &vnew, bool drop_new) {
    const int pos = L.pos;
    auto prep = [&](const float *x, const float *b, const float *nw, bool rope, std::vector<double> &y) {
        y.resize(D);
        double ss = 0;
        for (int d = 0; d < D; d++) y[d] = (double)x[d] + (b ? (double)b[d] : 0.0), ss += y[d] * y[d];
        if (nw) {
            const double r = 1.0 / sqrt(ss / D + 1e-6);
            for (int d = 0; d < D; d++) y[d] = y[d] * r * nw[d];
        }
        if (rope)
            for (int i = 0; i < D / 2; i++) {
                const double th = (double)((float)pos * L.ifr[i]); // (the f32 angle, as the kernels)
                const double c = cos(th), s = sin(th), x0 = y[i], x1 = y[i + D / 2];
                y[i] = x0 * c - x1 * s;
                y[i + D / 2] = x0 * s + x1 * c;
            }
    };
    knew.resize((size_t)HK * D);
    vnew.resize((size_t)HK * D);
    out.assign((size_t)H * D, 0.0);
    const int lo = L.window > 0 && pos - L.window + 1 > 0 ? pos - L.window + 1 : 0;
    const double scale = 1.0 / sqrt((double)D);
    for (int kh = 0; kh < HK; kh++) {
        std::vector<double> k, v;
        prep(&L.k[(size_t)kh * D], L.bk.empty() ? NULL : &L.bk[(size_t)kh * D], L.kn.data(), true, k);
        prep(&L.v[(size_t)kh * D], L.bv.empty() ? NULL : &L.bv[(size_t)kh * D], NULL, false, v);
        for (int d = 0; d < D; d++) {
            knew[(size_t)kh * D + d] = quant_f16_to_f32(quant_f32_to_f16((float)k[d]));
            vnew[(size_t)kh * D + d] = quant_f16_to_f32(quant_f32_to_f16((float)v[d]));
        }
        for (int g = 0; g < G; g++) {
            const int h = kh * G + g;
            std::vector<double> q;
            prep(&L.q[(size_t)h * D], L.bq.empty() ? NULL : &L.bq[(size_t)h * D], L.qn.data(), true, q);
            std::vector<double> s;
            double m = -INFINITY;
            const int hi = drop_new ? pos : pos + 1;
            for (int p = lo; p < hi; p++) {
                double acc = 0;
                for (int d = 0; d < D; d++) {
                    const float kd = p == pos ? knew[(size_t)kh * D + d]
                                              : quant_f16_to_f32(L.kc[kv_at(L.bt[p / KVB], kh, p % KVB) + d]);
                    acc += q[d] * kd;
                }
                s.push_back(acc * scale);
                m = std::max(m, acc * scale);
            }
            if (!L.sinks.empty()) m = std::max(m, (double)L.sinks[h]);
            double l = L.sinks.empty() ? 0.0 : exp((double)L.sinks[h] - m);
            std::vector<double> o(D, 0.0);
            for (int p = lo; p < hi; p++) {
                const double w = exp(s[p - lo] - m);
                l += w;
                for (int d = 0; d < D; d++) {
                    const float vd = p == pos ? vnew[(size_t)kh * D + d]
                                              : quant_f16_to_f32(L.vc[kv_at(L.bt[p / KVB], kh, p % KVB) + d]);
                    o[d] += w * vd;
                }
            }
            for (int d = 0; d < D; d++) out[(size_t)h * D + d] = o[d] / l;
        }
    }
}

void args_of(const layer_t &L, int p64, cuda_qkv_args &qa, cuda_attn_args &aa, cuda_tokens &tk) {
    memset(&qa, 0, sizeof qa);
    qa.q = L.dq_; qa.k = L.dk; qa.v = L.dv; qa.ldq = H * D; qa.ldk = qa.ldv = HK * D;
    qa.bq = L.dbq; qa.bk = L.dbk; qa.bv = L.dbv; qa.q_norm = L.dqn; qa.k_norm = L.dkn; qa.eps = 1e-6f;
    qa.inv_freq = L.difr; qa.n_rot = D; qa.neox = 1; qa.mscale = 1.0f;
    qa.n_head = H; qa.n_kv = HK; qa.head_dim = D;
    qa.kv.k = L.dkc; qa.kv.v = L.dvc; qa.kv_type = CUDA_KV_F16; qa.kv_block = KVB;
    memset(&aa, 0, sizeof aa);
    aa.out = L.dout; aa.ldq = aa.ldo = H * D; aa.out_p64 = p64; aa.work = L.dwork;
    aa.n_head = H; aa.n_kv = HK; aa.head_dim = D; aa.kv = qa.kv; aa.kv_type = CUDA_KV_F16; aa.kv_block = KVB;
    aa.scale = 1.0f / sqrtf((float)D); aa.window = L.window; aa.sinks = L.dsinks;
    tk.pos = L.dpos; tk.seq = L.dseq; tk.block_tables = L.dbt; tk.max_blocks = L.max_blocks; tk.T = 1;
}

double rel(const std::vector<float> &got, const std::vector<double> &ref, int p64) {
    double num = 0, den = 0;
    for (size_t e = 0; e < ref.size(); e++) {
        const size_t at = p64 ? (e & ~(size_t)63) + inv_perm64((int)(e & 63)) : e;
        const double d = (double)got[at] - ref[e];
        num += d * d;
        den += ref[e] * ref[e];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

void test_dq(int pos, int splits, int chunk, bool bias, bool sinks, int window, int p64, bool control) {
    layer_t L;
    make_layer(L, pos, bias, sinks, window);
    std::vector<double> ref, ref0;
    std::vector<float> knew, vnew;
    reference(L, ref, knew, vnew, false);
    cuda_dq_tune(splits, chunk);
    cuda_qkv_args qa;
    cuda_attn_args aa;
    cuda_tokens tk;
    args_of(L, p64, qa, aa, tk);
    char shape[160];
    snprintf(shape, sizeof shape, "pos %d, splits %d, chunk %d%s%s%s%s", pos, splits, chunk, bias ? ", biases" : "",
             sinks ? ", sinks" : "", window ? ", window" : "", p64 ? ", P64 out" : "");
    double worst = 0;
    for (int rep = 0; rep < 3; rep++) {
        poison(L.dout, (size_t)H * D * 4);
        err e2 = {ERR_OK, {0}};
        const int rc = cuda_dq_attention(&qa, &aa, &tk, C->st, &e2);
        const cudaError_t ce = cudaStreamSynchronize(C->st);
        if (rc || ce != cudaSuccess) {
            report("dq chain", shape, NAN, 1e-4, 0, false, rc ? e2.msg : cudaGetErrorString(ce));
            cuda_dq_tune(0, 0);
            dfree_all();
            return;
        }
        const double r = rel(get(L.dout, (size_t)H * D), ref, p64);
        worst = std::max(worst, isnan(r) ? INFINITY : r);
    }
    const double us = time_us([&] { err e3; cuda_dq_attention(&qa, &aa, &tk, C->st, &e3); }, 10);
    report("dq chain (3 launches)", shape, worst, 1e-4, us, worst <= 1e-4);
    // the K / V rows at pos (every KV head)
    {
        const int blk = L.bt[pos / KVB];
        std::vector<uint16_t> kc = get((const uint16_t *)L.dkc, L.kc.size()), vc = get((const uint16_t *)L.dvc, L.vc.size());
        double num = 0, den = 0;
        for (int kh = 0; kh < HK; kh++)
            for (int d = 0; d < D; d++) {
                const double a = quant_f16_to_f32(kc[kv_at(blk, kh, pos % KVB) + d]), b = knew[(size_t)kh * D + d];
                const double c = quant_f16_to_f32(vc[kv_at(blk, kh, pos % KVB) + d]), x = vnew[(size_t)kh * D + d];
                num += (a - b) * (a - b) + (c - x) * (c - x);
                den += b * b + x * x;
            }
        const double r = sqrt(num / den);
        report("dq KV store", shape, r, 2e-3, 0, r <= 2e-3);
    }
    if (control && pos > 0) {
        reference(L, ref0, knew, vnew, true);
        const double r = rel(get(L.dout, (size_t)H * D), ref0, p64);
        report("dq control (reference without the new position, must miss)", shape, r, 1e-4, 0, r > 1e-4);
    }
    cuda_dq_tune(0, 0);
    dfree_all();
}

} // namespace

int dq_selftest(void *file, int quick, uint64_t seed, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, quick, e);
    C = &ctx;
    ctx.rng.s = seed;
    if (!st_open_stream()) return 1;
    test_dq(0, 32, 128, false, false, 0, 1, false);   // one position (the new one)
    test_dq(20, 32, 128, true, true, 0, 0, true);     // one CTA, biases, sinks
    test_dq(515, 32, 128, false, false, 0, 1, true);  // 5 CTAs a head (the ticket merge), P64
    test_dq(515, 4, 32, true, false, 0, 0, false);    // 4 CTAs of 160
    test_dq(1000, 32, 64, false, true, 300, 1, false); // a window of 300, sinks
    test_dq(4100, 32, 128, false, false, 0, 1, true); // 26 CTAs
    test_dq(4100, 1, 128, false, false, 0, 0, false); // one CTA of 4101
    cuda_dq_pipe_set(0); // (SPARKD_DQ_PIPE=0: no loads of the next tile during this one)
    test_dq(4100, 32, 128, false, true, 0, 1, false);
    test_dq(4100, 1, 128, true, false, 0, 0, false);
    cuda_dq_pipe_set(1);
    cuda_dq_pre_set(1);
    test_dq(515, 32, 64, false, true, 0, 1, false);   // SPARKD_DQ_PRE=1 (first loads before the wait), 9 CTAs
    test_dq(4100, 32, 128, true, false, 0, 1, false);
    cuda_dq_pre_set(-1);
    cuda_dq_pipe_set(-1);
    if (!quick) test_dq(32790, 32, 128, true, false, 0, 1, false); // 32 CTAs of 1025
    st_close_stream();
    return ctx.fails;
}

// ---------------------------------------------------------------- kernel bench
//
// One layer's chain at batch 1 (Qwen3-8B attention shape, f16 KV, precision fast), contexts 512 .. 32K: old =
// cuda_qkv_rope_store + cuda_attention with the decode plan (attn_dec3 + attn_dec_combine_u, as
// the engine launches them), new = cuda_dq_attention; PDL as the engine has it; single calls and
// per call of 10 back to back, over copies of the cache that together exceed the L2.
void dq_kbench(void *file, double probe, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    ctx.rng.s = 777;
    if (!st_open_stream()) return;
    int sms = 132, dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) sms = 132;
    fprintf(ctx.f, "| chain | ctx | variant | us per layer | GB/s (KV) | %% probe | |\n|---|---|---|---|---|---|---|\n");
    const int pdl0 = cuda_pdl_enabled();
    cuda_pdl_set(1); // (as the engine on sm_90+: each launch overlaps the tail of the one before)
    for (int ctxlen : {512, 1024, 2048, 4096, 8192, 32768}) {
        const int pos = ctxlen - 1;
        const int max_blocks = pos / KVB + 1;
        const uint64_t kvbytes = (uint64_t)max_blocks * HK * KVB * D * 2;
        int copies = (int)((512ull << 20) / (2 * kvbytes)) + 1;
        if (copies > 64) copies = 64;
        std::vector<uint16_t> kv(kvbytes / 2);
        uint32_t x = 2463534242u;
        for (auto &h : kv) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; h = quant_f32_to_f16((float)(int)(x % 2001u - 1000u) * 1e-3f); }
        std::vector<void *> ks(copies), vs(copies);
        for (int i = 0; i < copies; i++) { ks[i] = dup(kv); vs[i] = dup(kv); }
        std::vector<int32_t> bt(max_blocks);
        for (int i = 0; i < max_blocks; i++) bt[i] = i;
        layer_t L;
        L.pos = pos; L.window = 0; L.max_blocks = max_blocks;
        L.dq_ = dup(st_randn((size_t)H * D, 1.0)); L.dk = dup(st_randn((size_t)HK * D, 1.0)); L.dv = dup(st_randn((size_t)HK * D, 1.0));
        L.dbq = L.dbk = L.dbv = NULL; L.dsinks = NULL;
        std::vector<float> nw(D, 1.0f), ifr(D / 2);
        for (int i = 0; i < D / 2; i++) ifr[i] = (float)pow(1e6, -2.0 * i / D);
        L.dqn = dup(nw); L.dkn = dup(nw); L.difr = dup(ifr);
        L.dkc = ks[0]; L.dvc = vs[0];
        L.dpos = dup(std::vector<int32_t>{pos}); L.dseq = dup(std::vector<int32_t>{0}); L.dbt = dup(bt);
        L.dout = (float *)dalloc((size_t)H * D * 4);
        cuda_qkv_args qa;
        cuda_attn_args aa;
        cuda_tokens tk;
        args_of(L, 1, qa, aa, tk);
        // the old chain's plan (cuda_forward's: one tile, cuda_attn_dec_items / _plan)
        const int nsl = cuda_attn_dec_nsl(1);
        const int n_items = cuda_attn_dec_items(1, HK, sms);
        std::vector<cuda_attn_tile> tiles = {{0, 0, 1, pos}};
        std::vector<cuda_attn_item> items(n_items);
        std::vector<int32_t> nslot(1);
        cuda_attn_dec_plan(tiles.data(), 1, bt.data(), max_blocks, KVB, G, n_items, nsl, items.data(), nslot.data());
        const uint64_t wb = std::max(cuda_attn_dec_work_bytes(1, H, D, nsl), cuda_dq_work_bytes(H, D) * 2);
        float *work = (float *)dalloc(wb);
        aa.work = work;
        aa.q = L.dq_; aa.tiles = dup(tiles); aa.n_tiles = 1; aa.block_tables = L.dbt; aa.max_blocks = max_blocks;
        aa.n_split = 1; aa.pf_fast = 1;
        aa.plan = dup(items); aa.plan_nslot = dup(nslot); aa.plan_items = n_items; aa.plan_nsl = nsl;
        const double bytes = (double)ctxlen * HK * D * 2 * 2;
        struct var { const char *name; int dq, splits, chunk, reps, pre, pipe; };
        static const var vars[] = {
            {"old (qkv + dec3 + combine)", 0, 0, 0, 1, 0, 1},         {"dq (splits 32, chunk 128)", 1, 32, 128, 1, 0, 1},
            {"old, per call of 10", 0, 0, 0, 10, 0, 1},               {"dq, per call of 10", 1, 32, 128, 10, 0, 1},
            {"dq PIPE=0 (run 0's loop), per call of 10", 1, 32, 128, 10, 0, 0},
            {"dq PRE=1, per call of 10", 1, 32, 128, 10, 1, 1},
            {"dq (splits 32, chunk 64), per call of 10", 1, 32, 64, 10, 0, 1},
        };
        for (const var &V : vars) {
            if (V.dq) cuda_dq_tune(V.splits, V.chunk);
            cuda_dq_pre_set(V.pre);
            cuda_dq_pipe_set(V.pipe);
            int it = 0;
            const double us = time_us([&] {
                for (int r = 0; r < V.reps; r++) {
                    qa.kv.k = aa.kv.k = ks[it % copies];
                    qa.kv.v = aa.kv.v = vs[it % copies];
                    it++;
                    err e3;
                    if (V.dq) {
                        cuda_dq_attention(&qa, &aa, &tk, C->st, &e3);
                    } else {
                        cuda_qkv_rope_store(&qa, &tk, C->st, &e3);
                        cuda_attention(&aa, C->st, &e3);
                    }
                }
            }, 20) / V.reps;
            const cudaError_t ce = cudaGetLastError();
            const double gbs = bytes / (us * 1e3);
            fprintf(ctx.f, "| attention chain b1 | %d | %s | %.2f | %.0f | %.0f%% | %s |\n", ctxlen, V.name, us, gbs,
                    probe > 0 ? 100.0 * gbs / probe : 0.0, ce != cudaSuccess ? cudaGetErrorString(ce) : "");
            fflush(ctx.f);
        }
        cuda_dq_tune(0, 0);
        cuda_dq_pre_set(-1);
        cuda_dq_pipe_set(-1);
        dfree_all();
    }
    cuda_pdl_set(pdl0);
    st_close_stream();
}
