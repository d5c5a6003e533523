// moe_selftest.cu — the MoE kernels (moe.cu) against CPU references (cuda_moe_selftest).
//
// References are written here (routing as engine/cpu's cpu_moe.c defines it, products in
// float64 over weights dequantized by appliance/format/quant.c); they share no code with
// the kernels. Inputs are fresh random numbers each run (the seed is printed;
// SPARKD_SELFTEST_SEED repeats one), shapes are odd (T = 1, 5, 7, 67, 300; hidden 192 and
// 2880 = 45 x 64, not a power of two), outputs and the whole scratch buffer are poisoned
// (NaN bytes) before every run, and a check fails on any non-finite output. Errors are
// relative L2 norms ||out - ref|| / ||ref||.
#include "cuda.h"
#include "cuda_moe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "kern_util.cuh"
#include "selftest_util.cuh"

namespace {

struct ctx_t : st_ctx {
    int checks = 0;
};
ctx_t *C;

void report(const char *what, const char *shape, double err, double tol, double us, bool ok, const char *note = "") {
    ok = ok && err <= tol && !isnan(err);
    C->checks++;
    if (!ok) C->fails++;
    fprintf(C->f, "%s - moe %s %s: err %.3g (tol %.3g) %.1f us%s%s\n", ok ? "ok" : "not ok", what, shape, err, tol, us,
            note[0] ? " " : "", note);
    fflush(C->f);
}
void fail_line(const char *what, const char *msg) {
    C->checks++;
    C->fails++;
    fprintf(C->f, "not ok - moe %s: %s\n", what, msg);
    fflush(C->f);
}

// Random valid GGUF rows of `type` whose dequantized values have roughly unit scale / sqrt
// of the row length times `gain` (so products stay O(1) through two layers).
std::vector<uint8_t> gen_rows(uint32_t type, int64_t rows, int cols, double gain) {
    uint64_t rb = 0;
    quant_row_bytes(type, cols, &rb);
    std::vector<uint8_t> out((size_t)rb * rows);
    rng_t &R = C->rng;
    for (auto &b : out) b = (uint8_t)R.next();
    const quant_traits *qt = quant_traits_of(type);
    const size_t nblk = out.size() / qt->block_bytes;
    const double s = gain / sqrt((double)cols); // target RMS of a weight
    for (size_t i = 0; i < nblk; i++) {
        uint8_t *b = out.data() + i * qt->block_bytes;
        uint16_t h;
        switch (type) {
        case QUANT_Q8_0: h = rand_f16(0.5 * s / 73, 1.5 * s / 73); memcpy(b, &h, 2); break;   // codes RMS ~73
        case QUANT_Q4_0: h = rand_f16(0.5 * s / 4.6, 1.5 * s / 4.6); memcpy(b, &h, 2); break; // (c - 8) RMS ~4.6
        case QUANT_Q4_K: case QUANT_Q5_K:
            // s * code with 6-bit sub-scales (RMS ~36) and codes (RMS ~9 / 18): d ~ s / 300
            h = rand_f16(0.3 * s / 300, 1.5 * s / 300); memcpy(b, &h, 2);
            h = rand_f16(0.3 * s / 300, 1.5 * s / 300); memcpy(b + 2, &h, 2); break;
        case QUANT_Q6_K: h = rand_f16(0.3 * s / 1000, 1.5 * s / 1000); memcpy(b + 208, &h, 2); break;
        case QUANT_MXFP4: { // values 0..6 (RMS ~3.3 after the halving): 2^(e-127) ~ s / 3.3
            const int e0 = 127 + (int)lround(log2(s / 3.3));
            b[0] = (uint8_t)(e0 - 1 + R.below(3));
            break;
        }
        }
    }
    return out;
}

std::vector<float> dequant_rows(uint32_t type, const std::vector<uint8_t> &raw, int64_t rows, int cols) {
    uint64_t rb = 0;
    quant_row_bytes(type, cols, &rb);
    std::vector<float> w((size_t)rows * cols);
    for (int64_t r = 0; r < rows; r++)
        quant_dequant_row(type, raw.data() + (size_t)r * rb, w.data() + (size_t)r * cols, cols);
    return w;
}

bool make_weight(cuda_weight *w, uint32_t type, const std::vector<uint8_t> &raw, int64_t rows, int cols) {
    w->type = type;
    w->rows = rows;
    w->cols = cols;
    const uint64_t bytes = cuda_weight_bytes(type, rows, cols);
    w->base = bytes ? dalloc(bytes) : NULL;
    void *draw = dup(raw);
    if (!w->base || !draw) {
        fail_line("weights", "cannot allocate or bad shape");
        return false;
    }
    poison(w->base, bytes);
    err e2 = {ERR_OK, {0}};
    if (cuda_weight_repack(w, draw, 0, rows, C->st, &e2)) {
        fail_line("repack", e2.msg);
        return false;
    }
    return true;
}

// ------------------------------------------------------------------------------ references

// Routing as engine/cpu (cpu_moe.c): bias added, gating, top-k ties to the lower index.
void ref_route(const float *logit_in, const float *bias, int E, int k, int gating, int norm, int32_t *id, float *w,
               float *kth_gap) {
    std::vector<float> l(logit_in, logit_in + E);
    if (bias)
        for (int i = 0; i < E; i++) l[i] += bias[i];
    if (gating == CUDA_MOE_SOFTMAX_TOPK) {
        float mx = l[0], sum = 0.0f;
        for (int i = 1; i < E; i++) mx = l[i] > mx ? l[i] : mx;
        for (int i = 0; i < E; i++) sum += l[i] = expf(l[i] - mx);
        for (int i = 0; i < E; i++) l[i] /= sum;
    }
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < E; i++) {
            int taken = 0;
            for (int q = 0; q < j; q++) taken |= id[q] == i;
            if (!taken && (best < 0 || l[i] > l[best])) best = i;
        }
        id[j] = best;
    }
    // the gap between the k-th choice and the best one left out (near-ties may differ)
    float gap = INFINITY;
    for (int i = 0; i < E; i++) {
        int taken = 0;
        for (int q = 0; q < k; q++) taken |= id[q] == i;
        if (!taken) gap = fminf(gap, l[id[k - 1]] - l[i]);
    }
    for (int j = 1; j < k; j++) gap = fminf(gap, l[id[j - 1]] - l[id[j]]);
    *kth_gap = gap;
    float s = 0.0f;
    if (gating == CUDA_MOE_SOFTMAX_TOPK) {
        for (int j = 0; j < k; j++) s += w[j] = l[id[j]];
        if (norm)
            for (int j = 0; j < k; j++) w[j] /= s;
    } else {
        const float mx = l[id[0]];
        for (int j = 0; j < k; j++) s += w[j] = expf(l[id[j]] - mx);
        for (int j = 0; j < k; j++) w[j] /= s;
    }
}

double ref_act(double g, double u, int act, double alpha, double limit) {
    if (act == CUDA_MOE_ACT_SWIGLU_OAI) {
        const double x = g < limit ? g : limit;
        const double y = u < -limit ? -limit : u > limit ? limit : u;
        return x / (1.0 + exp(-alpha * x)) * (y + 1.0);
    }
    if (act == CUDA_ACT_GELU_TANH) {
        const double c = 0.7978845608028654;
        return 0.5 * g * (1.0 + tanh(c * (g + 0.044715 * g * g * g))) * u;
    }
    return g / (1.0 + exp(-g)) * u;
}

// ------------------------------------------------------------------------------ routing

// Checks routing results read back from the work buffer against ref_route (ids in order,
// weights within 2e-6 relative; a differing choice is accepted only where the reference's
// own gap is under 1e-5) and the grouping invariants. Returns the worst weight error or
// INFINITY on a broken invariant.
double check_routing(const cuda_moe_args &a, const std::vector<float> &logits, const std::vector<float> &bias,
                     int *near_ties, char *why, size_t why_cap) {
    const int T = a.T, E = a.n_expert, k = a.n_used, N = T * k;
    cuda_moe_view v;
    cuda_moe_view_of(a.work, T, a.dim, a.ffn, E, k, &v);
    const auto ids = get(v.ids, N), inv = get(v.inv, N), stok = get(v.stok, N), first = get(v.first, E + 1);
    const auto w = get(v.w, N);
    double worst = 0.0;
    *near_ties = 0;
    std::vector<int32_t> rid(k);
    std::vector<float> rw(k);
    for (int t = 0; t < T; t++) {
        float gap;
        ref_route(logits.data() + (size_t)t * E, bias.empty() ? NULL : bias.data(), E, k, a.gating, a.norm_topk,
                  rid.data(), rw.data(), &gap);
        bool same = true;
        for (int j = 0; j < k; j++) same &= ids[(size_t)t * k + j] == rid[j];
        if (!same) {
            if (gap < 1e-5f) {
                (*near_ties)++;
                continue;
            }
            snprintf(why, why_cap, "token %d: experts differ (reference gap %.3g)", t, (double)gap);
            return INFINITY;
        }
        for (int j = 0; j < k; j++) {
            const double d = fabs((double)w[(size_t)t * k + j] - rw[j]) / fmax(fabs(rw[j]), 1e-30);
            if (!(d <= 1e30)) { snprintf(why, why_cap, "token %d: weight not finite", t); return INFINITY; }
            worst = fmax(worst, d);
        }
    }
    // grouping: first[] is the prefix sum of the counts, inv a permutation into the groups
    std::vector<int> cnt(E, 0), seen(N, 0);
    for (int i = 0; i < N; i++) {
        if (ids[i] < 0 || ids[i] >= E) { snprintf(why, why_cap, "entry %d: expert %d", i, ids[i]); return INFINITY; }
        cnt[ids[i]]++;
    }
    int acc = 0;
    for (int e = 0; e < E; e++) {
        if (first[e] != acc) { snprintf(why, why_cap, "first[%d] = %d, expected %d", e, first[e], acc); return INFINITY; }
        acc += cnt[e];
    }
    if (first[E] != N) { snprintf(why, why_cap, "first[E] = %d", first[E]); return INFINITY; }
    for (int i = 0; i < N; i++) {
        const int p = inv[i], e = ids[i];
        if (p < 0 || p >= N || seen[p]++ || p < first[e] || p >= first[e + 1] || stok[p] != i / k) {
            snprintf(why, why_cap, "entry %d: position %d breaks the grouping", i, p);
            return INFINITY;
        }
    }
    return worst;
}

void test_route(int T, int E, int k, int gating, int norm, int with_bias) {
    const int dim = 64, ffn = 64;
    cuda_moe_args a;
    memset(&a, 0, sizeof a);
    a.T = T; a.dim = dim; a.ffn = ffn; a.n_expert = E; a.n_used = k; a.gating = gating; a.norm_topk = norm;
    std::vector<float> logits((size_t)T * E), bias;
    for (auto &x : logits) x = (float)(2.0 * C->rng.normal());
    // a few exact ties (ties go to the lower index on both sides)
    for (int t = 0; t < T; t += 3) logits[(size_t)t * E + (E - 1)] = logits[(size_t)t * E];
    if (with_bias) {
        bias.resize(E);
        for (auto &x : bias) x = (float)(0.5 * C->rng.normal());
    }
    a.logits = dup(logits);
    a.router_b = with_bias ? dup(bias) : NULL;
    cuda_mmin x;
    memset(&x, 0, sizeof x);
    x.T = T; x.K = dim; x.forms = CUDA_MMIN_XP;
    x.xp = (float *)dalloc((size_t)T * dim * 4);
    a.x = &x;
    a.out = (float *)dalloc((size_t)T * dim * 4);
    a.work_bytes = cuda_moe_work_bytes(T, dim, ffn, E, k);
    a.work = dalloc(a.work_bytes);
    if (!a.logits || !a.work || !x.xp || !a.out) { fail_line("route", "cannot allocate"); return; }
    poison(a.work, a.work_bytes);
    err e2 = {ERR_OK, {0}};
    if (cuda_moe_route(&a, C->st, &e2)) { fail_line("route", e2.msg); return; }
    const double us = time_us([&] { cuda_moe_route(&a, C->st, &e2); }, 10);
    if (cudaStreamSynchronize(C->st) != cudaSuccess) { fail_line("route", cudaGetErrorString(cudaGetLastError())); return; }
    int ties = 0;
    char why[160] = "";
    const double err = check_routing(a, logits, bias, &ties, why, sizeof why);
    char shape[96], note[200];
    snprintf(shape, sizeof shape, "%s T=%d E=%d k=%d%s%s", gating == CUDA_MOE_SOFTMAX_TOPK ? "softmax-topk" : "topk-softmax",
             T, E, k, norm ? " norm" : "", with_bias ? " bias" : "");
    snprintf(note, sizeof note, "%s%s(%d near-ties)", why, why[0] ? " " : "", ties);
    report("route", shape, err, 2e-6, us, ties * 20 <= T, note);
}

// ------------------------------------------------------------------------------ the FFN

struct ffn_case {
    int T, dim, ffn, E, k, gating, norm, act, biases;
    uint32_t tgu, tdown;
    int path; // CUDA_MM_*
    int time_reps;
    int split; // > 1: also as `split` expert-parallel calls (expert0 / n_local), outputs summed
};

void test_ffn(const ffn_case &c) {
    const int T = c.T, D = c.dim, F = c.ffn, E = c.E, k = c.k;
    char shape[160];
    snprintf(shape, sizeof shape, "%s/%s T=%d dim=%d ffn=%d E=%d k=%d %s%s %s", tname(c.tgu), tname(c.tdown), T, D, F, E, k,
             c.act == CUDA_MOE_ACT_SWIGLU_OAI ? "swiglu-oai" : c.act == CUDA_ACT_GELU_TANH ? "geglu" : "swiglu",
             c.biases ? " biases" : "",
             c.path == CUDA_MM_FORCE_GEMV ? "mmv" : c.path == CUDA_MM_FORCE_GEMM ? "gemm"
             : c.path == CUDA_MM_FORCE_NATIVE ? "mxf8f6f4" : "auto");
    const double gain_gu = c.act == CUDA_MOE_ACT_SWIGLU_OAI ? 3.0 : 1.0; // the clamp at 7 gets exercised
    const auto rg = gen_rows(c.tgu, (int64_t)E * F, D, gain_gu), ru = gen_rows(c.tgu, (int64_t)E * F, D, gain_gu);
    const auto rd = gen_rows(c.tdown, (int64_t)E * D, F, 0.5);
    cuda_weight wg, wu, wd;
    if (!make_weight(&wg, c.tgu, rg, (int64_t)E * F, D) || !make_weight(&wu, c.tgu, ru, (int64_t)E * F, D) ||
        !make_weight(&wd, c.tdown, rd, (int64_t)E * D, F))
        return;
    // input rows (RMS 1), router logits, biases
    std::vector<float> x((size_t)T * D), logits((size_t)T * E), rb, bg, bu, bd;
    for (auto &v : x) v = (float)C->rng.normal();
    for (auto &v : logits) v = (float)(2.0 * C->rng.normal());
    if (c.biases) {
        rb.resize(E); bg.resize((size_t)E * F); bu.resize((size_t)E * F); bd.resize((size_t)E * D);
        for (auto &v : rb) v = (float)(0.5 * C->rng.normal());
        for (auto &v : bg) v = (float)(0.5 * C->rng.normal());
        for (auto &v : bu) v = (float)(0.5 * C->rng.normal());
        for (auto &v : bd) v = (float)(0.1 * C->rng.normal());
    }
    cuda_moe_args a;
    memset(&a, 0, sizeof a);
    a.T = T; a.dim = D; a.ffn = F; a.n_expert = E; a.n_used = k; a.gating = c.gating; a.norm_topk = c.norm;
    a.act = c.act; a.act_alpha = 1.702f; a.act_limit = 7.0f;
    a.logits = dup(logits);
    a.router_b = c.biases ? dup(rb) : NULL;
    a.gate = &wg; a.up = &wu; a.down = &wd;
    a.gate_b = c.biases ? dup(bg) : NULL;
    a.up_b = c.biases ? dup(bu) : NULL;
    a.down_b = c.biases ? dup(bd) : NULL;
    a.path = c.path;
    a.exact = 1;
    // the input as the engine's residual stage would hand it over: f32 P64 always, f16 when T > 1
    cuda_mmin xm;
    const int forms = CUDA_MMIN_XP | (T > 1 || c.path == CUDA_MM_FORCE_GEMM ? CUDA_MMIN_F16 : 0);
    void *xbuf = dalloc(cuda_mmin_bytes(T, D, forms));
    float *xd = dup(x);
    if (!xbuf || !xd) { fail_line("ffn", "cannot allocate"); return; }
    cuda_mmin_carve(&xm, xbuf, T, D, forms);
    err e2 = {ERR_OK, {0}};
    if (cuda_mmin_prepare(xd, D, &xm, T, C->st, &e2)) { fail_line("ffn mmin", e2.msg); return; }
    a.x = &xm;
    a.out = (float *)dalloc((size_t)T * D * 4);
    a.work_bytes = cuda_moe_work_bytes(T, D, F, E, k);
    a.work = dalloc(a.work_bytes);
    if (!a.out || !a.work) { fail_line("ffn", "cannot allocate"); return; }
    poison(a.out, (size_t)T * D * 4);
    poison(a.work, a.work_bytes);
    if (cuda_moe_ffn(&a, C->st, &e2)) { fail_line(shape, e2.msg); return; }
    if (cudaStreamSynchronize(C->st) != cudaSuccess) { fail_line(shape, cudaGetErrorString(cudaGetLastError())); return; }
    const auto out = get(a.out, (size_t)T * D);
    // routing must agree with the reference (near-ties aside); the product reference uses
    // the GPU's choices so a near-tie does not turn into a large output difference
    int ties = 0;
    char why[160] = "";
    const double rerr = check_routing(a, logits, rb, &ties, why, sizeof why);
    cuda_moe_view v;
    cuda_moe_view_of(a.work, T, D, F, E, k, &v);
    const auto ids = get(v.ids, (size_t)T * k);
    const auto wts = get(v.w, (size_t)T * k);
    // reference: expert by expert (each dequantized once), float64 sums
    std::vector<double> ref((size_t)T * D, 0.0), h(F);
    uint64_t rbg = 0, rbd = 0;
    quant_row_bytes(c.tgu, D, &rbg);
    quant_row_bytes(c.tdown, F, &rbd);
    for (int e = 0; e < E; e++) {
        bool used = false;
        for (size_t i = 0; i < ids.size(); i++) used |= ids[i] == e;
        if (!used) continue;
        const std::vector<uint8_t> sg(rg.begin() + (size_t)e * F * rbg, rg.begin() + (size_t)(e + 1) * F * rbg);
        const std::vector<uint8_t> su(ru.begin() + (size_t)e * F * rbg, ru.begin() + (size_t)(e + 1) * F * rbg);
        const std::vector<uint8_t> sd(rd.begin() + (size_t)e * D * rbd, rd.begin() + (size_t)(e + 1) * D * rbd);
        const auto Wg = dequant_rows(c.tgu, sg, F, D), Wu = dequant_rows(c.tgu, su, F, D);
        const auto Wd = dequant_rows(c.tdown, sd, D, F);
        for (int t = 0; t < T; t++)
            for (int j = 0; j < k; j++) {
                if (ids[(size_t)t * k + j] != e) continue;
                const float *xr = x.data() + (size_t)t * D;
                for (int r = 0; r < F; r++) {
                    const float *gr = Wg.data() + (size_t)r * D, *ur = Wu.data() + (size_t)r * D;
                    double g = 0, u = 0;
                    for (int i = 0; i < D; i++) { g += (double)gr[i] * xr[i]; u += (double)ur[i] * xr[i]; }
                    if (c.biases) { g += bg[(size_t)e * F + r]; u += bu[(size_t)e * F + r]; }
                    h[r] = ref_act(g, u, c.act, 1.702f, 7.0f);
                }
                for (int r = 0; r < D; r++) {
                    const float *dr = Wd.data() + (size_t)r * F;
                    double y = 0;
                    for (int i = 0; i < F; i++) y += (double)dr[i] * h[i];
                    if (c.biases) y += bd[(size_t)e * D + r];
                    ref[(size_t)t * D + r] += (double)wts[(size_t)t * k + j] * y;
                }
            }
    }
    double num = 0, den = 0;
    bool finite = true;
    for (size_t i = 0; i < ref.size(); i++) {
        if (!isfinite(out[i])) finite = false;
        num += (out[i] - ref[i]) * (out[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    const double err = finite ? sqrt(num / (den > 0 ? den : 1)) : INFINITY;
    double us = 0;
    if (c.time_reps) us = time_us([&] { cuda_moe_ffn(&a, C->st, &e2); }, c.time_reps);
    char note[240];
    snprintf(note, sizeof note, "routing %s%s%s(%d near-ties)", rerr <= 2e-6 ? "ok" : "BAD", why[0] ? " " : "", why, ties);
    // ~22-bit activations (f16 hi + lo) for mmv/gemm; two e4m3 terms (~9 bits) natively
    const double tol = c.path == CUDA_MM_FORCE_NATIVE ? 1e-2 : 2e-5;
    report("ffn", shape, err, tol, us, finite && rerr <= 2e-6, note);
    if (c.split < 2 || E % c.split) return;
    // expert parallelism (moe_split = experts): `split` calls, each with the weights and
    // biases of experts [e0, e0 + n) only and routing over all E; their outputs summed
    // must equal the same reference; one call alone must not (the check can fail)
    const int n = E / c.split;
    std::vector<double> sum((size_t)T * D, 0.0);
    double err0 = 0;
    bool fin = true;
    for (int r = 0; r < c.split; r++) {
        const int e0 = r * n;
        auto sub = [&](const std::vector<uint8_t> &v, uint64_t per) {
            return std::vector<uint8_t>(v.begin() + (size_t)e0 * per, v.begin() + (size_t)(e0 + n) * per);
        };
        auto subf = [&](const std::vector<float> &v, int per) {
            return std::vector<float>(v.begin() + (size_t)e0 * per, v.begin() + (size_t)(e0 + n) * per);
        };
        cuda_weight sg, su, sd;
        if (!make_weight(&sg, c.tgu, sub(rg, (uint64_t)F * rbg), (int64_t)n * F, D) ||
            !make_weight(&su, c.tgu, sub(ru, (uint64_t)F * rbg), (int64_t)n * F, D) ||
            !make_weight(&sd, c.tdown, sub(rd, (uint64_t)D * rbd), (int64_t)n * D, F))
            return;
        cuda_moe_args b = a;
        b.expert0 = e0;
        b.n_local = n;
        b.gate = &sg; b.up = &su; b.down = &sd;
        b.gate_b = c.biases ? dup(subf(bg, F)) : NULL;
        b.up_b = c.biases ? dup(subf(bu, F)) : NULL;
        b.down_b = c.biases ? dup(subf(bd, D)) : NULL;
        poison(b.out, (size_t)T * D * 4);
        poison(b.work, b.work_bytes);
        if (cuda_moe_ffn(&b, C->st, &e2)) { fail_line(shape, e2.msg); return; }
        if (cudaStreamSynchronize(C->st) != cudaSuccess) { fail_line(shape, cudaGetErrorString(cudaGetLastError())); return; }
        const auto part = get(b.out, (size_t)T * D);
        double n0 = 0, d0 = 0;
        for (size_t i = 0; i < sum.size(); i++) {
            if (!isfinite(part[i])) fin = false;
            sum[i] += part[i];
            n0 += (part[i] - ref[i]) * (part[i] - ref[i]);
            d0 += ref[i] * ref[i];
        }
        if (r == 0) err0 = sqrt(n0 / (d0 > 0 ? d0 : 1));
    }
    double ne = 0, de = 0;
    for (size_t i = 0; i < sum.size(); i++) {
        ne += (sum[i] - ref[i]) * (sum[i] - ref[i]);
        de += ref[i] * ref[i];
    }
    const double err_ep = fin ? sqrt(ne / (de > 0 ? de : 1)) : INFINITY;
    char shape2[200], note2[120];
    snprintf(shape2, sizeof shape2, "%s, experts over %d calls of %d", shape, c.split, n);
    snprintf(note2, sizeof note2, "summed; the first call alone is off by %.3g", err0);
    report("ffn expert-parallel", shape2, err_ep, tol, 0, fin && err0 > 0.1, note2);
}

// Speed of the FFN alone at real shapes: one layer's experts, T tokens for each T of ts,
// routing drawn afresh for each of 8 rotating logit sets so the chosen experts change as
// in a real decode. Bytes: the distinct experts a call reads times their size.
void bench_ffn(const char *name, const int *ts, int nts, int D, int F, int E, int k, uint32_t tgu, uint32_t tdown) {
    // one expert drawn, copied to all E (drawing 1.7 GB of codes would cost seconds; the
    // copies still sit at distinct addresses, so the reads are the same)
    auto tile = [&](const std::vector<uint8_t> &one) {
        std::vector<uint8_t> all(one.size() * (size_t)E);
        for (int e = 0; e < E; e++) memcpy(all.data() + one.size() * (size_t)e, one.data(), one.size());
        return all;
    };
    cuda_weight wg, wu, wd;
    {
        const auto rg = tile(gen_rows(tgu, F, D, 1.0)), rd = tile(gen_rows(tdown, D, F, 0.5));
        if (!make_weight(&wg, tgu, rg, (int64_t)E * F, D) || !make_weight(&wu, tgu, rg, (int64_t)E * F, D) ||
            !make_weight(&wd, tdown, rd, (int64_t)E * D, F))
            return;
    }
    const double per_expert = (double)cuda_weight_bytes(tgu, F, D) * 2 + (double)cuda_weight_bytes(tdown, D, F);
    for (int ti = 0; ti < nts; ti++) {
        const int T = ts[ti], R = 8;
        std::vector<float> logits((size_t)R * T * E), x((size_t)T * D);
        for (auto &v : logits) v = (float)(2.0 * C->rng.normal());
        for (auto &v : x) v = (float)C->rng.normal();
        float *dl = dup(logits), *dx = dup(x);
        cuda_mmin xm;
        const int forms = CUDA_MMIN_XP | (T > 1 ? CUDA_MMIN_F16 : 0);
        void *xbuf = dalloc(cuda_mmin_bytes(T, D, forms));
        cuda_moe_args a;
        memset(&a, 0, sizeof a);
        a.T = T; a.dim = D; a.ffn = F; a.n_expert = E; a.n_used = k; a.gating = CUDA_MOE_TOPK_SOFTMAX;
        a.act = CUDA_ACT_SILU; a.gate = &wg; a.up = &wu; a.down = &wd; a.path = CUDA_MM_AUTO; a.exact = 1;
        a.out = (float *)dalloc((size_t)T * D * 4);
        a.work_bytes = cuda_moe_work_bytes(T, D, F, E, k);
        a.work = dalloc(a.work_bytes);
        if (!dl || !dx || !xbuf || !a.out || !a.work) { fail_line("bench", "cannot allocate"); return; }
        cuda_mmin_carve(&xm, xbuf, T, D, forms);
        err e2 = {ERR_OK, {0}};
        if (cuda_mmin_prepare(dx, D, &xm, T, C->st, &e2)) { fail_line("bench", e2.msg); return; }
        a.x = &xm;
        int it = 0, rc = 0;
        const double us = time_us([&] {
            for (int i = 0; i < R; i++) {
                a.logits = dl + (size_t)(it++ % R) * T * E;
                rc |= cuda_moe_ffn(&a, C->st, &e2);
            }
        }, 5) / R;
        if (rc || cudaStreamSynchronize(C->st) != cudaSuccess) { fail_line("bench", rc ? e2.msg : "launch failed"); return; }
        cuda_moe_view v;
        cuda_moe_view_of(a.work, T, D, F, E, k, &v);
        const auto meta = get(v.meta, 2);
        const double gb = meta[0] * per_expert / 1e9, flop = 2.0 * 3.0 * D * (double)F * k * T;
        fprintf(C->f, "# moe bench %-14s T=%-4d %-4s %9.1f us  %3d experts read, %7.1f GB/s of expert weights, %6.1f TFLOP/s\n",
                name, T, T <= CUDA_MOE_GEMV_MAX_T ? "mmv" : "gemm", us, meta[0], gb / (us * 1e-6), flop / (us * 1e-6) / 1e12);
        fflush(C->f);
    }
}

} // namespace

extern "C" int cuda_moe_selftest(void *file, int quick, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, quick, e);
    C = &ctx;
    char line[320];
    if (cuda_device_describe(line, sizeof line, e)) return -1;
    ctx.rng.s = st_seed(0x6d6f65ull);
    fprintf(ctx.f, "# moe kernels, seed %llu\n", (unsigned long long)ctx.rng.s);
    if (!st_open_stream()) return err_set(e, ERR_IO, "moe selftest: cannot create a stream"), -1;

    // router + top-k: both gating kinds, the one-CTA (T <= 32) and the multi-kernel path
    test_route(1, 8, 4, CUDA_MOE_TOPK_SOFTMAX, 0, 1);
    test_route(7, 32, 4, CUDA_MOE_TOPK_SOFTMAX, 0, 1);
    test_route(5, 16, 8, CUDA_MOE_SOFTMAX_TOPK, 1, 0);
    test_route(67, 128, 8, CUDA_MOE_SOFTMAX_TOPK, 1, 0);
    test_route(300, 128, 4, CUDA_MOE_TOPK_SOFTMAX, 0, 1);
    test_route(33, 256, 16, CUDA_MOE_SOFTMAX_TOPK, 0, 1);
    dfree_all();

    const int OAI = CUDA_MOE_ACT_SWIGLU_OAI, TS = CUDA_MOE_TOPK_SOFTMAX, ST = CUDA_MOE_SOFTMAX_TOPK;
    const int GV = CUDA_MM_FORCE_GEMV, GM = CUDA_MM_FORCE_GEMM, AU = CUDA_MM_AUTO;
    const ffn_case cases[] = {
        // gpt-oss-like: MXFP4 experts, biases, clamped SwiGLU, top-4 softmax over the chosen
        {1, 192, 192, 8, 4, TS, 0, OAI, 1, QUANT_MXFP4, QUANT_MXFP4, AU, 5, 0},
        {7, 192, 192, 8, 4, TS, 0, OAI, 1, QUANT_MXFP4, QUANT_MXFP4, GV, 5, 0},
        {7, 192, 192, 8, 4, TS, 0, OAI, 1, QUANT_MXFP4, QUANT_MXFP4, GM, 5, 0},
        {67, 192, 320, 8, 4, TS, 0, OAI, 1, QUANT_MXFP4, QUANT_MXFP4, AU, 5, 0},
        {67, 192, 320, 8, 4, TS, 0, OAI, 1, QUANT_MXFP4, QUANT_MXFP4, GV, 5, 0},
        {1, 2880, 2880, 8, 4, TS, 0, OAI, 1, QUANT_MXFP4, QUANT_MXFP4, AU, 10, 0},
        // qwen3moe-like: Q4_K gate/up, Q6_K (or Q4_K) down, softmax then top-8 renormalized
        {1, 256, 256, 16, 8, ST, 1, CUDA_ACT_SILU, 0, QUANT_Q4_K, QUANT_Q6_K, AU, 5, 0},
        {5, 256, 256, 16, 8, ST, 1, CUDA_ACT_SILU, 0, QUANT_Q4_K, QUANT_Q6_K, AU, 5, 0},
        {67, 512, 768, 16, 8, ST, 1, CUDA_ACT_SILU, 0, QUANT_Q4_K, QUANT_Q4_K, AU, 5, 0},
        {33, 256, 256, 16, 8, ST, 1, CUDA_ACT_SILU, 0, QUANT_Q4_K, QUANT_Q6_K, GV, 5, 0},
        // the other expert types, GeGLU
        {7, 256, 192, 8, 2, TS, 0, CUDA_ACT_GELU_TANH, 1, QUANT_Q8_0, QUANT_Q8_0, GM, 5, 0},
        {1, 256, 256, 8, 2, TS, 0, CUDA_ACT_GELU_TANH, 1, QUANT_Q8_0, QUANT_Q5_K, AU, 5, 0},
        {9, 256, 256, 8, 3, ST, 0, CUDA_ACT_SILU, 1, QUANT_Q5_K, QUANT_Q4_0, GM, 5, 0},
        {3, 256, 256, 8, 3, ST, 0, CUDA_ACT_SILU, 1, QUANT_Q4_0, QUANT_Q4_0, GV, 5, 0},
        // expert parallelism: the weights of a share of the experts, routing over all
        {7, 192, 192, 8, 4, TS, 0, OAI, 1, QUANT_MXFP4, QUANT_MXFP4, GV, 0, 2},
        {67, 192, 320, 8, 4, TS, 0, OAI, 1, QUANT_MXFP4, QUANT_MXFP4, GM, 0, 2},
        {1, 256, 256, 16, 8, ST, 1, CUDA_ACT_SILU, 0, QUANT_Q4_K, QUANT_Q6_K, AU, 0, 4},
        {67, 256, 256, 16, 8, ST, 1, CUDA_ACT_SILU, 0, QUANT_Q4_K, QUANT_Q6_K, GM, 0, 2},
    };
    for (const ffn_case &c : cases) {
        test_ffn(c);
        dfree_all();
    }
    if (!quick) {
        test_ffn({67, 2880, 704, 8, 4, TS, 0, OAI, 1, QUANT_MXFP4, QUANT_MXFP4, AU, 3, 0});
        dfree_all();
        test_ffn({9, 2048, 768, 32, 8, ST, 1, CUDA_ACT_SILU, 0, QUANT_Q4_K, QUANT_Q6_K, AU, 3, 0});
        dfree_all();
    }
    // the block-scaled MXFP4 kernel (sm_121a cubin): runs on GB10 only
    if (cuda_moe_native_ok()) {
        test_ffn({67, 192, 320, 8, 4, TS, 0, OAI, 1, QUANT_MXFP4, QUANT_MXFP4, CUDA_MM_FORCE_NATIVE, 5, 2});
        dfree_all();
        test_ffn({67, 2880, 704, 8, 4, TS, 0, OAI, 1, QUANT_MXFP4, QUANT_MXFP4, CUDA_MM_FORCE_NATIVE, 3, 0});
        dfree_all();
    } else {
        fprintf(ctx.f, "ok - moe mxf8f6f4 block-scaled MXFP4 GEMM # SKIP compiled for sm_121a, runs on a GB10 (this device is not sm_121)\n");
    }
    if (!quick && getenv("SPARKD_MOE_BENCH")) {
        // one layer's experts at the real shapes (gpt-oss-20b / 120b, Qwen3-30B-A3B)
        const int ts[] = {1, 8, 64, 2048};
        bench_ffn("gpt-oss-20b", ts, 4, 2880, 2880, 32, 4, QUANT_MXFP4, QUANT_MXFP4);
        dfree_all();
        bench_ffn("gpt-oss-120b", ts, 4, 2880, 2880, 128, 4, QUANT_MXFP4, QUANT_MXFP4);
        dfree_all();
        bench_ffn("qwen3-30b-a3b", ts, 4, 2048, 768, 128, 8, QUANT_Q4_K, QUANT_Q6_K);
        dfree_all();
    }
    dfree_all();
    fprintf(ctx.f, "# moe: %d checks, %d failed\n", ctx.checks, ctx.fails);
    st_close_stream();
    return ctx.fails;
}
