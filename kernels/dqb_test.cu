// dqb_test.cu — round 12, helper dqb: checks of SPARKD_DQB (dq.cu: 1 dq_kernel with the first tile's
// K / V loads before pdl_wait; 3 / 4 dqc_kernel, 8 warps a CTA, 8-position warp steps, its CTAs merged over
// a thread-block cluster / by dq's ticket) and its kernel bench (SPARKD_KBENCH=dqb).
//
// What is checked (Qwen3-8B's attention shape: 32 q heads, 8 KV heads of 128, f16 KV in blocks of 16
// whose ids are shuffled), one token at position pos of one sequence, from the raw q / k / v GEMV
// rows (random; optional biases), q / k RMS norm weights and RoPE (neox, theta 1e6):
// - the output row against a float64 reference written here (the RoPE angle rounded to f32 as the
//   kernels do, the new K / V row rounded to f16 as the cache holds it): ||out - ref|| / ||ref|| <=
//   1e-4 (f32 sums, ex2.approx), for each of three launches in a row on NaN-poisoned outputs (the
//   cluster barrier's phases start afresh each launch);
// - the same output against today's dq_kernel (SPARKD_DQB=0) on the same inputs: relative 1e-5
//   (mode 1: the same kernel, so 0; dqc: other sums' order);
// - the K and V rows stored at pos (f16 of the reference, relative 2e-3);
// - SPARKD_DQB=1 and 4 with SPARKD_DQM=0, and SPARKD_DQM=1 (round 13: dqm_kernel; test mode 5) (dqc's / dqm's
//   chunk is half the row's: their steps are 8 positions, their CTAs 8 warps); partial RoPE (64 of 128 dims, neox)
//   and RoPE pairs (2 i, 2 i + 1) over 128 and 98 dims; dqm at positions 1, 17, 63, 64, 65, 300, 545, 2100;
// - positions 0, 1, 17, 128, 160, 257, 1024, 4096 (1 .. 8 CTAs a head, 1 .. 5 tiles a warp),
//   32-position chunks (every CTA of the cluster busy), a window with sinks, biases, P64 and
//   natural output, SPARKD_DQ_PRE=1;
// - a launch counter (the mode's kernel really ran, not a fallback);
// - the control: the output against the reference without the newest position must miss.
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

extern "C" void cuda_dq_pre_set(int on); // dq.cu: SPARKD_DQ_PRE's bit (-1: as the env says)
extern "C" int cuda_dqb_set(int on);     // dq.cu: SPARKD_DQB (-1: as the env says)
extern "C" long cuda_dqb_launches(void); // dq.cu: cluster launches so far
extern "C" void cuda_dqb_prof_set(long long *prof); // dq.cu: mode 4 launches write phase clocks there (NULL: off)
extern "C" void cuda_dqc_chunk_set(int chunk);       // dq.cu: SPARKD_DQC_CHUNK (mode 4; -1: as the env says)
extern "C" int cuda_dqm_set(int on);                 // dq.cu: SPARKD_DQM (round 13; -1: as the env says)
extern "C" void cuda_dqm_chunk_set(int chunk);       // dq.cu: SPARKD_DQM_CHUNK (-1: as the env says)
extern "C" long cuda_dqm_launches(void);             // dq.cu: dqm_kernel launches so far

// The test's modes: SPARKD_DQB 0 / 1 / 4 with SPARKD_DQM=0, 5 = SPARKD_DQB=4 with SPARKD_DQM=1 (dqm_kernel, 8 warps,
// two K / V buffers a warp), 6 = SPARKD_DQM=2 (dqm_kernel, 16 warps a CTA).
void mode_set(int mode) {
    cuda_dqb_set(mode < 0 ? -1 : mode >= 5 ? 4 : mode);
    cuda_dqm_set(mode < 0 ? -1 : mode >= 5 ? mode - 4 : 0);
}

namespace {

struct ctx_t : st_ctx {};
ctx_t *C;

void report(const char *what, const char *shape, double err, double tol, double us, bool ok, const char *note = "") {
    ok = ok && !isnan(err);
    if (!ok) C->fails++;
    fprintf(C->f, "%s - dqb %s %s: err %.3g (tol %.3g) %.1f us%s%s\n", ok ? "ok" : "not ok", what, shape, err, tol, us,
            note[0] ? " " : "", note);
    fflush(C->f);
}

const int H = 32, HK = 8, D = 128, G = 4, KVB = 16;

// One layer's inputs: host copies and device buffers.
struct layer_t {
    int pos, window, max_blocks, nb;
    int n_rot = D, neox = 1;      // RoPE: rotated dims, pairs (i, i + n_rot / 2) (neox) or (2 i, 2 i + 1)
    std::vector<int32_t> bt;      // (max_blocks) the sequence's block table
    std::vector<uint16_t> kc, vc; // (nb, HK, KVB, D) f16 pools
    std::vector<float> q, k, v;   // raw GEMV rows (H * D), (HK * D), (HK * D)
    std::vector<float> bq, bk, bv; // biases (same shapes; empty: none)
    std::vector<float> qn, kn, ifr; // norm weights (D), inverse frequencies (D / 2)
    std::vector<float> sinks;     // (H) or empty
    float *d_q, *d_k, *d_v, *d_bq, *d_bk, *d_bv, *d_qn, *d_kn, *d_ifr, *d_sinks, *d_out, *d_work;
    void *d_kc, *d_vc;
    int32_t *d_pos, *d_seq, *d_bt;
};

size_t kv_at(int blk, int h, int o) { return (((size_t)blk * HK + h) * KVB + o) * D; }

void make_layer(layer_t &L, int pos, bool bias, bool sinks, int window, int n_rot = D, int neox = 1) {
    rng_t &R = C->rng;
    L.pos = pos;
    L.n_rot = n_rot;
    L.neox = neox;
    L.window = window;
    L.max_blocks = pos / KVB + 3;
    L.nb = L.max_blocks + 2;
    std::vector<int32_t> perm(L.nb);
    for (int i = 0; i < L.nb; i++) perm[i] = i;
    for (int i = L.nb - 1; i > 0; i--) std::swap(perm[i], perm[R.below(i + 1)]);
    L.bt.assign(perm.begin(), perm.begin() + L.max_blocks);
    const size_t pool = (size_t)L.nb * HK * KVB * D;
    L.kc.resize(pool);
    L.vc.resize(pool);
    for (size_t i = 0; i < pool; i++) L.kc[i] = quant_f32_to_f16((float)R.normal()), L.vc[i] = quant_f32_to_f16((float)R.normal());
    L.q = st_randn((size_t)H * D, 1.5);
    L.k = st_randn((size_t)HK * D, 1.5);
    L.v = st_randn((size_t)HK * D, 1.0);
    L.bq.clear(); L.bk.clear(); L.bv.clear();
    if (bias) L.bq = st_randn((size_t)H * D, 0.3), L.bk = st_randn((size_t)HK * D, 0.3), L.bv = st_randn((size_t)HK * D, 0.3);
    L.qn = st_randn(D, 0.2);
    L.kn = st_randn(D, 0.2);
    for (int d = 0; d < D; d++) L.qn[d] += 1.0f, L.kn[d] += 1.0f;
    L.ifr.resize(D / 2);
    for (int i = 0; i < D / 2; i++) L.ifr[i] = (float)pow(1e6, -2.0 * i / D);
    L.sinks.clear();
    if (sinks) L.sinks = st_randn(H, 1.0);
    L.d_q = dup(L.q); L.d_k = dup(L.k); L.d_v = dup(L.v);
    L.d_bq = bias ? dup(L.bq) : NULL; L.d_bk = bias ? dup(L.bk) : NULL; L.d_bv = bias ? dup(L.bv) : NULL;
    L.d_qn = dup(L.qn); L.d_kn = dup(L.kn); L.d_ifr = dup(L.ifr);
    L.d_sinks = sinks ? dup(L.sinks) : NULL;
    L.d_kc = dup(L.kc); L.d_vc = dup(L.vc);
    L.d_pos = dup(std::vector<int32_t>{pos});
    L.d_seq = dup(std::vector<int32_t>{0});
    L.d_bt = dup(L.bt);
    L.d_out = (float *)dalloc((size_t)H * D * 4);
    L.d_work = (float *)dalloc(cuda_dq_work_bytes(H, D) + 4096);
}

// float64: q / k bias + RMS norm + RoPE, v bias; out (H * D, natural order); knew / vnew (HK * D,
// f16-rounded as stored). drop_new: the newest position left out (the control's reference).
void reference(const layer_t &L, std::vector<double> &out, std::vector<float> &knew, std::vector<float> &vnew, bool drop_new) {
    const int pos = L.pos;
    auto prep = [&](const float *x, const float *b, const float *nw, bool rope, std::vector<double> &y) {
        y.resize(D);
        double ss = 0;
        for (int d = 0; d < D; d++) y[d] = (double)x[d] + (b ? (double)b[d] : 0.0), ss += y[d] * y[d];
        if (nw) {
            const double r = 1.0 / sqrt(ss / D + 1e-6);
            for (int d = 0; d < D; d++) y[d] *= r * nw[d];
        }
        if (rope)
            for (int i = 0; i < L.n_rot / 2; i++) {
                const double th = (double)((float)pos * L.ifr[i]);
                const int ia = L.neox ? i : 2 * i, ib = L.neox ? i + L.n_rot / 2 : 2 * i + 1;
                const double c = cos(th), s = sin(th), x0 = y[ia], x1 = y[ib];
                y[ia] = x0 * c - x1 * s;
                y[ib] = x0 * s + x1 * c;
            }
    };
    knew.resize((size_t)HK * D);
    vnew.resize((size_t)HK * D);
    out.assign((size_t)H * D, 0.0);
    const int lo = L.window > 0 && pos - L.window + 1 > 0 ? pos - L.window + 1 : 0, hi = drop_new ? pos : pos + 1;
    const double scale = 1.0 / sqrt((double)D);
    for (int kh = 0; kh < HK; kh++) {
        std::vector<double> k, v;
        prep(&L.k[(size_t)kh * D], L.bk.empty() ? NULL : &L.bk[(size_t)kh * D], L.kn.data(), true, k);
        prep(&L.v[(size_t)kh * D], L.bv.empty() ? NULL : &L.bv[(size_t)kh * D], NULL, false, v);
        for (int d = 0; d < D; d++) {
            knew[(size_t)kh * D + d] = quant_f16_to_f32(quant_f32_to_f16((float)k[d]));
            vnew[(size_t)kh * D + d] = quant_f16_to_f32(quant_f32_to_f16((float)v[d]));
        }
        auto kv = [&](const std::vector<uint16_t> &pool, const std::vector<float> &nw, int p, int d) -> double {
            return p == pos ? nw[(size_t)kh * D + d] : quant_f16_to_f32(pool[kv_at(L.bt[p / KVB], kh, p % KVB) + d]);
        };
        for (int g = 0; g < G; g++) {
            const int h = kh * G + g;
            std::vector<double> q, s;
            prep(&L.q[(size_t)h * D], L.bq.empty() ? NULL : &L.bq[(size_t)h * D], L.qn.data(), true, q);
            double m = L.sinks.empty() ? -INFINITY : (double)L.sinks[h];
            for (int p = lo; p < hi; p++) {
                double acc = 0;
                for (int d = 0; d < D; d++) acc += q[d] * kv(L.kc, knew, p, d);
                s.push_back(acc * scale);
                m = std::max(m, acc * scale);
            }
            double l = L.sinks.empty() ? 0.0 : exp((double)L.sinks[h] - m);
            std::vector<double> o(D, 0.0);
            for (int p = lo; p < hi; p++) {
                const double w = exp(s[p - lo] - m);
                l += w;
                for (int d = 0; d < D; d++) o[d] += w * kv(L.vc, vnew, p, d);
            }
            for (int d = 0; d < D; d++) out[(size_t)h * D + d] = l > 0 ? o[d] / l : 0.0;
        }
    }
}

void args_of(const layer_t &L, int p64, cuda_qkv_args &qa, cuda_attn_args &aa, cuda_tokens &tk) {
    memset(&qa, 0, sizeof qa);
    qa.q = L.d_q; qa.k = L.d_k; qa.v = L.d_v; qa.ldq = H * D; qa.ldk = qa.ldv = HK * D;
    qa.bq = L.d_bq; qa.bk = L.d_bk; qa.bv = L.d_bv; qa.q_norm = L.d_qn; qa.k_norm = L.d_kn; qa.eps = 1e-6f;
    qa.inv_freq = L.d_ifr; qa.n_rot = L.n_rot; qa.neox = L.neox; qa.mscale = 1.0f;
    qa.n_head = H; qa.n_kv = HK; qa.head_dim = D;
    qa.kv.k = L.d_kc; qa.kv.v = L.d_vc; qa.kv_type = CUDA_KV_F16; qa.kv_block = KVB;
    memset(&aa, 0, sizeof aa);
    aa.out = L.d_out; aa.ldq = aa.ldo = H * D; aa.out_p64 = p64; aa.work = L.d_work;
    aa.n_head = H; aa.n_kv = HK; aa.head_dim = D; aa.kv = qa.kv; aa.kv_type = CUDA_KV_F16; aa.kv_block = KVB;
    aa.scale = 1.0f / sqrtf((float)D); aa.window = L.window; aa.sinks = L.d_sinks;
    tk.pos = L.d_pos; tk.seq = L.d_seq; tk.block_tables = L.d_bt; tk.max_blocks = L.max_blocks; tk.T = 1;
}

// ||got - ref|| / ||ref|| with got in P64 order when p64 (ref natural).
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

// One launch of cuda_dq_attention in mode (0 / 1 / 4 / 5: mode_set) into poisoned outputs; false on an error.
bool run_once(const layer_t &L, cuda_qkv_args &qa, cuda_attn_args &aa, cuda_tokens &tk, int mode, std::vector<float> &out,
              char *msg, size_t nmsg) {
    mode_set(mode);
    poison(L.d_out, (size_t)H * D * 4);
    err e2 = {ERR_OK, {0}};
    const int rc = cuda_dq_attention(&qa, &aa, &tk, C->st, &e2);
    const cudaError_t ce = cudaStreamSynchronize(C->st);
    mode_set(-1);
    if (rc || ce != cudaSuccess) {
        snprintf(msg, nmsg, "%s", rc ? e2.msg : cudaGetErrorString(ce));
        return false;
    }
    out = get(L.d_out, (size_t)H * D);
    return true;
}

void test_dqb(int mode, int pos, int chunk, bool bias, bool sinks, int window, int p64, bool control, int n_rot = D,
              int neox = 1) {
    layer_t L;
    make_layer(L, pos, bias, sinks, window, n_rot, neox);
    std::vector<double> ref, ref0;
    std::vector<float> knew, vnew;
    reference(L, ref, knew, vnew, false);
    cuda_dq_tune(0, chunk);
    cuda_dqc_chunk_set(mode >= 4 ? chunk / 2 : -1); // (dqc's / dqm's steps are 8 positions, their CTAs twice the warps)
    cuda_dqm_chunk_set(mode >= 4 ? chunk / 2 : -1);
    cuda_qkv_args qa;
    cuda_attn_args aa;
    cuda_tokens tk;
    args_of(L, p64, qa, aa, tk);
    char shape[160], msg[256];
    snprintf(shape, sizeof shape, "%s, pos %d, chunk %d%s%s%s%s%s", mode == 6 ? "SPARKD_DQM=2" : mode == 5 ? "SPARKD_DQM=1" : mode == 4 ? "SPARKD_DQB=4 DQM=0" : mode == 1 ? "SPARKD_DQB=1" : "SPARKD_DQB=0",
             pos, mode >= 4 ? chunk / 2 : chunk, bias ? ", biases" : "", sinks ? ", sinks" : "", window ? ", window" : "", p64 ? ", P64 out" : "",
             n_rot != D || !neox ? (neox ? ", n_rot 64 neox" : ", RoPE pairs (2i, 2i+1)") : "");
    std::vector<float> got, old;
    double worst = 0;
    const long n0 = mode >= 5 ? cuda_dqm_launches() : cuda_dqb_launches();
    for (int rep = 0; rep < 3; rep++) {
        if (!run_once(L, qa, aa, tk, mode, got, msg, sizeof msg)) {
            report("chain", shape, NAN, 1e-4, 0, false, msg);
            cuda_dq_tune(0, 0);
            cuda_dqc_chunk_set(-1);
            cuda_dqm_chunk_set(-1);
            dfree_all();
            return;
        }
        const double r = rel(got, ref, p64);
        worst = std::max(worst, isnan(r) ? INFINITY : r);
    }
    const long ran = (mode >= 5 ? cuda_dqm_launches() : cuda_dqb_launches()) - n0;
    mode_set(mode);
    const double us = time_us([&] { err e3; cuda_dq_attention(&qa, &aa, &tk, C->st, &e3); }, 10);
    mode_set(-1);
    char note[64];
    snprintf(note, sizeof note, "(%ld launches of mode %d of 3)", ran, mode);
    report("chain vs float64 (3 launches)", shape, worst, 1e-4, us, worst <= 1e-4 && ran == 3, note);
    // the K / V rows at pos, every KV head
    {
        const int blk = L.bt[pos / KVB];
        const std::vector<uint16_t> kc = get((const uint16_t *)L.d_kc, L.kc.size()), vc = get((const uint16_t *)L.d_vc, L.vc.size());
        double num = 0, den = 0;
        for (int kh = 0; kh < HK; kh++)
            for (int d = 0; d < D; d++) {
                const double a = quant_f16_to_f32(kc[kv_at(blk, kh, pos % KVB) + d]), b = knew[(size_t)kh * D + d];
                const double c = quant_f16_to_f32(vc[kv_at(blk, kh, pos % KVB) + d]), x = vnew[(size_t)kh * D + d];
                num += (a - b) * (a - b) + (c - x) * (c - x);
                den += b * b + x * x;
            }
        const double r = sqrt(num / den);
        report("KV store", shape, r, 2e-3, 0, r <= 2e-3);
    }
    // against today's dq_kernel on the same inputs (it stores the same K / V row again)
    if (run_once(L, qa, aa, tk, 0, old, msg, sizeof msg)) {
        std::vector<double> o64(old.begin(), old.end());
        const double r = rel(got, o64, 0);
        const double tus = time_us([&] { err e3; mode_set(0); cuda_dq_attention(&qa, &aa, &tk, C->st, &e3); mode_set(-1); }, 10);
        report("vs dq_kernel (SPARKD_DQB=0)", shape, r, 1e-5, tus, r <= 1e-5);
    } else {
        report("vs dq_kernel (SPARKD_DQB=0)", shape, NAN, 1e-5, 0, false, msg);
    }
    if (control && pos > 0) {
        reference(L, ref0, knew, vnew, true);
        const double r = rel(got, ref0, p64);
        report("control (reference without the new position, must miss)", shape, r, 1e-4, 0, r > 1e-4);
    }
    cuda_dq_tune(0, 0);
    cuda_dqc_chunk_set(-1);
    cuda_dqm_chunk_set(-1);
    dfree_all();
}

} // namespace

extern "C" int dqb_selftest(void *file, int quick, uint64_t seed, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, quick, e);
    C = &ctx;
    ctx.rng.s = seed;
    if (!st_open_stream()) return 1;
    for (int mode : {1, 4, 5}) { // (1: dq_kernel + the pre-wait loads; 4: dqc_kernel (DQM=0); 5: dqm_kernel)
        test_dqb(mode, 0, 128, false, false, 0, 1, false);    // the new position alone
        test_dqb(mode, 1, 128, false, false, 0, 0, true);
        test_dqb(mode, 17, 128, true, true, 0, 1, true);      // one CTA, biases, sinks
        test_dqb(mode, 128, 128, false, false, 0, 1, true);   // 129 positions: two CTAs, the second one position
        test_dqb(mode, 160, 128, false, true, 0, 0, true);
        test_dqb(mode, 257, 128, true, false, 0, 1, true);    // three CTAs
        test_dqb(mode, 257, 32, false, false, 0, 1, false);   // chunk 16: every CTA busy
        test_dqb(mode, 1024, 128, false, false, 0, 1, true);  // eight CTAs of 128
        test_dqb(mode, 1000, 64, false, true, 300, 0, false); // a window of 300, sinks
        test_dqb(mode, 4096, 128, true, false, 0, 1, true);   // eight CTAs of 544: 4 .. 5 tiles a warp
        cuda_dq_pre_set(1);
        test_dqb(mode, 515, 128, false, true, 0, 1, false);   // SPARKD_DQ_PRE=1
        test_dqb(mode, 40, 128, false, false, 0, 0, false);
        cuda_dq_pre_set(-1);
    }
    for (int mode : {4, 5, 6}) {
        test_dqb(mode, 2047, 128, false, true, 0, 1, true); // 8 CTAs of 256, 4 steps a warp
        test_dqb(mode, 100, 16, true, false, 0, 0, true);   // chunk 8: 8 CTAs of 16 (2 warps each)
        test_dqb(mode, 300, 128, true, true, 0, 1, true, 64, 1); // RoPE on 64 of 128 dims (neox pairs 32 apart)
        test_dqb(mode, 65, 128, false, false, 0, 0, true, D, 0); // RoPE pairs (2i, 2i+1)
        test_dqb(mode, 545, 128, false, false, 0, 1, true, 98, 0); // 49 pairs: a lane with one pair rotated, one not
    }
    // round 13 dqm (mode 5; chunk 128 here = SPARKD_DQM_CHUNK 64, the default): positions around one CTA a head
    // (<= 64), the merge (65: two CTAs, the second one position), the model's common range, past 2K
    // mode 6 (16 warps): twice the chunk, so one CTA a head to 128 positions here
    for (int mode : {5, 6}) {
        for (int pos : {1, 17, 63, 64, 65, 127, 128, 300, 545, 2100})
            test_dqb(mode, pos, 128, pos == 300, pos == 545, 0, pos & 1, true);
        test_dqb(mode, 545, 512, false, false, 0, 1, true);   // SPARKD_DQM_CHUNK 256: 3 (mode 6: 2) CTAs, 4 steps a warp
        test_dqb(mode, 2100, 8192, false, false, 0, 1, true); // one CTA of 2101 positions (33 / 17 steps a warp)
        test_dqb(mode, 1000, 64, false, true, 300, 0, false); // a window of 300, sinks
        test_dqb(mode, 4096, 128, true, false, 0, 1, true);   // eight CTAs of 512
        cuda_dq_pre_set(1);
        test_dqb(mode, 40, 128, false, false, 0, 0, false);
        cuda_dq_pre_set(-1);
    }
    cuda_dq_pre_set(0);
    test_dqb(4, 515, 128, false, false, 0, 1, true);        // mode 4 without the pre-wait loads
    test_dqb(5, 515, 128, false, false, 0, 1, true);        // dqm without the pre-wait loads
    test_dqb(6, 515, 128, false, false, 0, 1, true);
    test_dqb(5, 1500, 128, false, false, 0, 1, true);       // 3 steps a warp: both buffers refilled
    test_dqb(1, 515, 128, false, false, 0, 1, true);        // mode 1 with SPARKD_DQ_PRE=0: dq_kernel as today
    cuda_dq_pre_set(-1);
    st_close_stream();
    return ctx.fails;
}

// ---------------------------------------------------------------- kernel bench
//
// us a launch of cuda_dq_attention at positions 1 .. 4096 (Qwen3-8B attention shape, f16 KV, PDL as
// the engine), dq_kernel (SPARKD_DQB=0) vs the cluster kernel: single calls, per call of 10 back to
// back in a CUDA graph, and "in a chain" (a graph too): hold = a kernel that takes every SM whole (dynamic shared memory) for
// ~3 us after its pdl_wait, as the q+k and o GEMVs do; the time of (hold, dq, hold) x 10 minus
// (hold, hold) x 10, a tenth: what dq adds between two GEMVs, SM residency included.

__global__ void dqb_hold_kernel(int cycles, int *sink) {
    extern __shared__ int hold_smem[];
    pdl_trigger();
    pdl_wait();
    const long long t0 = clock64();
    while (clock64() - t0 < cycles) {
    }
    if (threadIdx.x == 0) hold_smem[0] = (int)t0, sink[blockIdx.x] = hold_smem[0];
}

extern "C" void dqb_kbench(void *file, double probe, err *e) {
    (void)probe;
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    ctx.rng.s = 777;
    if (!st_open_stream()) return;
    int sms = 132, dev = 0, smem_sm = 0, smem_optin = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    cudaDeviceGetAttribute(&smem_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev);
    cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    const int hold_smem = std::min(smem_optin, smem_sm - 12 * 1024); // (no dq CTA fits beside it)
    cudaFuncSetAttribute(dqb_hold_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, hold_smem);
    int *sink = (int *)dalloc((size_t)sms * 4);
    fprintf(ctx.f, "| positions | variant | us single | us per call of 10 | us in a chain (hold, dq, hold) |\n|---|---|---|---|---|\n");
    const int pdl0 = cuda_pdl_enabled();
    cuda_pdl_set(1);
    const int hold_cycles = 5000;
    auto hold = [&] { (void)cuda_launch(dqb_hold_kernel, dim3(sms), dim3(128), (size_t)hold_smem, C->st, hold_cycles, sink); };
    // body's launches captured into a CUDA graph (as the engine replays a decode step: no host launch
    // cost in the time, PDL edges kept), the median of 20 replays
    auto graph_us = [&](auto body) -> double {
        cudaGraph_t g = NULL;
        cudaGraphExec_t ge = NULL;
        if (cudaStreamBeginCapture(C->st, cudaStreamCaptureModeThreadLocal) != cudaSuccess) return NAN;
        body();
        if (cudaStreamEndCapture(C->st, &g) != cudaSuccess || cudaGraphInstantiate(&ge, g, 0) != cudaSuccess) {
            if (g) cudaGraphDestroy(g);
            cudaGetLastError();
            return NAN;
        }
        const double us = time_us([&] { cudaGraphLaunch(ge, C->st); }, 20);
        cudaGraphExecDestroy(ge);
        cudaGraphDestroy(g);
        return us;
    };
    const double hh = graph_us([&] { for (int r = 0; r < 10; r++) hold(), hold(); }) / 10;
    for (int pos : {17, 64, 65, 160, 300, 512, 1024, 2048, 4096}) {
        layer_t L;
        make_layer(L, pos, false, false, 0);
        cuda_qkv_args qa;
        cuda_attn_args aa;
        cuda_tokens tk;
        args_of(L, 1, qa, aa, tk);
        // (mode: mode_set's, 4 = dqc_kernel (SPARKD_DQM=0, today), 5 = dqm_kernel; chunk: SPARKD_DQC_CHUNK / _DQM_CHUNK)
        struct var { const char *name; int mode, pre, chunk; };
        static const var vars[] = {{"dq_kernel (SPARKD_DQB=0)", 0, -1, -1}, {"dqc (SPARKD_DQM=0, today)", 4, -1, -1},
                                   {"dqm (SPARKD_DQM=1)", 5, -1, -1},         {"dqm, DQM_CHUNK=32", 5, -1, 32},
                                   {"dqm, DQM_CHUNK=128", 5, -1, 128},        {"dqm, DQM_CHUNK=256", 5, -1, 256},
                                   {"dqc, DQC_CHUNK=32", 4, -1, 32},          {"dqm16 (SPARKD_DQM=2)", 6, -1, -1},
                                   {"dqm16, DQM_CHUNK=128", 6, -1, 128},      {"dqm16, DQM_CHUNK=256", 6, -1, 256}};
        for (const var &V : vars) {
            mode_set(V.mode);
            cuda_dq_pre_set(V.pre);
            cuda_dqc_chunk_set(V.mode == 4 ? V.chunk : -1);
            cuda_dqm_chunk_set(V.mode >= 5 ? V.chunk : -1);
            err e3;
            const double u1 = time_us([&] { cuda_dq_attention(&qa, &aa, &tk, C->st, &e3); }, 20);
            const double u10 = graph_us([&] { for (int r = 0; r < 10; r++) cuda_dq_attention(&qa, &aa, &tk, C->st, &e3); }) / 10;
            const double uc = graph_us([&] { for (int r = 0; r < 10; r++) hold(), cuda_dq_attention(&qa, &aa, &tk, C->st, &e3), hold(); }) / 10 - hh;
            const cudaError_t ce = cudaGetLastError();
            fprintf(ctx.f, "| %d | %s | %.2f | %.2f | %.2f | %s\n", pos, V.name, u1, u10, uc, ce != cudaSuccess ? cudaGetErrorString(ce) : "");
            fflush(ctx.f);
        }
        mode_set(-1);
        cuda_dq_pre_set(-1);
        cuda_dqc_chunk_set(-1);
        cuda_dqm_chunk_set(-1);
        dfree_all();
        sink = (int *)dalloc((size_t)sms * 4);
    }
    fprintf(ctx.f, "(hold, hold) x 10: %.2f us a pair\n", hh);
    // Phases of SPARKD_DQB=4 (dq.cu's PROF instantiation of dqc_kernel): us since each CTA's entry (SM clock) at 1
    // pdl_wait passed, 2 q / k / v normed, 3 RoPE + KV store, 4 warp 0's steps done, 5 CTA merge, 6 ticket taken, 7 end;
    // for rank 0 of head 0 and the latest over the working CTAs; entry spread = the working CTAs' globaltimer range.
    // Median of 7 launches, alone ("single") and right after a hold kernel ("after hold": its pdl_wait waits ~2.5 us).
    int clk_khz = 1980000;
    cudaDeviceGetAttribute(&clk_khz, cudaDevAttrClockRate, dev);
    // (dqm: 2 = 3, its norm, RoPE and store are one phase)
    fprintf(ctx.f, "\n| positions | kernel | launch | CTA | 1 wait | 2 norm | 3 rope+store | 4 steps | 5 CTA merge | 6 ticket | 7 end | entry spread us |\n"
                   "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int pos : {17, 160, 512, 1024, 2047})
    for (int mode : {4, 5, 6}) {
        layer_t L;
        make_layer(L, pos, false, false, 0);
        cuda_qkv_args qa;
        cuda_attn_args aa;
        cuda_tokens tk;
        args_of(L, 1, qa, aa, tk);
        long long *dprof = (long long *)dalloc((size_t)HK * 8 * 8 * sizeof(long long));
        sink = (int *)dalloc((size_t)sms * 4);
        for (int after_hold = 0; after_hold < 2; after_hold++) {
            std::vector<std::vector<double>> r0(8), mx(8);
            std::vector<double> spread;
            for (int rep = 0; rep < 7; rep++) {
                mode_set(mode);
                cuda_dqb_prof_set(dprof);
                err e3;
                if (after_hold) hold();
                cuda_dq_attention(&qa, &aa, &tk, C->st, &e3);
                cudaStreamSynchronize(C->st);
                cuda_dqb_prof_set(NULL);
                mode_set(-1);
                const std::vector<long long> pr = get(dprof, (size_t)HK * 8 * 8);
                long long g0 = -1, g1 = -1;
                std::vector<double> m(8, 0.0);
                for (int c = 0; c < HK * 8; c++) {
                    if (pr[c * 8 + 7] < 0) continue; // (not a working CTA)
                    g0 = g0 < 0 || pr[c * 8] < g0 ? pr[c * 8] : g0;
                    g1 = pr[c * 8] > g1 ? pr[c * 8] : g1;
                    for (int k = 1; k < 8; k++) m[k] = std::max(m[k], pr[c * 8 + k] * 1e3 / clk_khz);
                }
                for (int k = 1; k < 8; k++) {
                    r0[k].push_back(pr[k] < 0 ? NAN : pr[k] * 1e3 / clk_khz);
                    mx[k].push_back(m[k]);
                }
                spread.push_back((g1 - g0) * 1e-3);
            }
            auto med = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v.empty() ? NAN : v[v.size() / 2]; };
            for (int w = 0; w < 2; w++) {
                fprintf(ctx.f, "| %d | %s | %s | %s |", pos, mode == 6 ? "dqm16" : mode == 5 ? "dqm" : "dqc", after_hold ? "after hold" : "single", w ? "latest" : "rank 0 head 0");
                for (int k = 1; k < 8; k++) fprintf(ctx.f, " %.2f |", med(w ? mx[k] : r0[k]));
                fprintf(ctx.f, " %.2f |\n", med(spread));
            }
        }
        fflush(ctx.f);
        dfree_all();
        sink = (int *)dalloc((size_t)sms * 4);
    }
    cuda_pdl_set(pdl0);
    st_close_stream();
}
