// l32_test.cu — round 13, helper l32: checks (l32_selftest, called by cuda_selftest) and the
// kernel bench (l32_kbench, SPARKD_KBENCH=l32) of l32.cu's batch-1 decode attention (SPARKD_L32).
//
// One Qwen3-8B attention layer (32 heads, 8 KV heads, d128, f16 KV in blocks of 16 in a shuffled
// pool, precision fast); one sequence at positions 700 / 4096 / 8199 (quick) and 32772 (full):
// odd lengths end in a partial step. Outputs and partials are poisoned (NaN) before every call.
// - SPARKD_L32 = 1 (dynamic steps, today's combine) and 2 (combine folded in) against the float64
//   CPU reference (4 heads) within 3e-3 (precision fast's bound: Q and P one f16 each), against
//   SPARKD_L32 = 0 (today's kernel) within 2e-3 (which warp takes which step changes from call to
//   call, so P is rounded against other running maxima: ~1e-4 apart, not bitwise);
// - mode 2 a second and third time (the counters the last CTA resets must be back at zero);
// - the P64 and int8 (fz) output forms of the folded combine against today's combine's (mode 1);
// - the kernel ran once a call (launch counter) and not at mode 0, not at precision exact, not for
//   8 sequences (bitwise equal to mode 0 there);
// - the control: the partial sums halved (SPARKD_ATT8's control mode 2) must miss the reference.
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

extern "C" int cuda_l32_mode(int mode);   // l32.cu: SPARKD_L32 0..3 (-1 unchanged); returns the old
extern "C" long cuda_l32_launches(void);  // l32.cu: l32_dec_kernel launches so far
extern "C" int cuda_l32_pre(int on);      // l32.cu: SPARKD_L32_PRE 0 / 1 (-1 unchanged); returns the old
extern "C" int cuda_l32_qkv(int on);      // l32.cu: SPARKD_L32_QKV 0 / 1 (-1 unchanged); returns the old
extern "C" long cuda_l32_qkv_launches(void);
extern "C" int cuda_l32_qkv_takes(const cuda_qkv_args *qa, int T);
extern "C" int cuda_l32_qkv_attention(const cuda_qkv_args *qa, const cuda_attn_args *aa, const cuda_tokens *tk, void *stream, err *e);

namespace {

struct ctx_t : st_ctx {};
ctx_t *C;

void report(const char *what, const char *shape, double err, double tol, bool ok, const char *note = "") {
    ok = ok && !isnan(err) && err <= tol;
    if (!ok) C->fails++;
    fprintf(C->f, "%s - l32 %s %s: err %.3g (tol %.3g)%s%s\n", ok ? "ok" : "not ok", what, shape, err, tol, note[0] ? " " : "", note);
    fflush(C->f);
}

int sms_of() {
    int sms = 0, dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        sms < 1)
        cudaGetLastError(), sms = 132;
    return sms;
}

// nseq sequences, sequence s's token at position pos + 5 s, every sequence its own blocks
struct layer_t {
    static constexpr int H = 32, HK = 8, D = 128, KVB = 16;
    int pos = 0, nseq = 0, max_blocks = 0, copies = 1;
    std::vector<int32_t> bt;           // [nseq][max_blocks]
    std::vector<uint16_t> kh, vh;      // host f16 pools [block][HK][KVB][D]
    std::vector<cuda_attn_tile> tiles; // one per sequence
    std::vector<float> q;              // [nseq][H][D]
    std::vector<void *> kd, vd;        // device pools (benches rotate copies past L2)
    cuda_attn_args a;
    double bytes = 0;                  // K + V bytes of one call
    int pos_of(int s) const { return pos + 5 * s; }
};

void make_layer(layer_t &L, int pos, int nseq, int copies, bool host_copy) {
    const int KVB = layer_t::KVB, HK = layer_t::HK, D = layer_t::D, H = layer_t::H;
    L.pos = pos, L.nseq = nseq, L.copies = copies;
    L.max_blocks = (L.pos_of(nseq - 1) + KVB) / KVB;
    const int nb = nseq * L.max_blocks;
    std::vector<int32_t> perm(nb);
    for (int i = 0; i < nb; i++) perm[i] = i;
    for (int i = nb - 1; i > 0; i--) std::swap(perm[i], perm[C->rng.below(i + 1)]);
    L.bt.assign((size_t)nb, 0);
    for (int i = 0; i < nb; i++) L.bt[i] = perm[i];
    const size_t elems = (size_t)nb * HK * KVB * D;
    L.kh.resize(elems);
    L.vh.resize(elems);
    uint32_t x = (uint32_t)C->rng.next() | 1u;
    for (auto &h : L.kh) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; h = quant_f32_to_f16((float)(int)(x % 2001u - 1000u) * 2e-3f); }
    for (auto &h : L.vh) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; h = quant_f32_to_f16((float)(int)(x % 2001u - 1000u) * 1e-3f); }
    L.kd.resize(copies);
    L.vd.resize(copies);
    for (int i = 0; i < copies; i++) L.kd[i] = dup(L.kh), L.vd[i] = dup(L.vh);
    if (!host_copy) std::vector<uint16_t>().swap(L.kh), std::vector<uint16_t>().swap(L.vh);
    L.tiles.clear();
    double npos = 0;
    for (int s = 0; s < nseq; s++) L.tiles.push_back({s, s, 1, L.pos_of(s)}), npos += L.pos_of(s) + 1;
    L.bytes = npos * HK * D * 2 * 2;
    L.q = st_randn((size_t)nseq * H * D, 1.0);
    cuda_attn_args &a = L.a;
    memset(&a, 0, sizeof a);
    a.q = dup(L.q);
    a.out = (float *)dalloc((size_t)nseq * H * D * 4);
    a.ldq = a.ldo = H * D;
    a.kv.k = L.kd[0];
    a.kv.v = L.vd[0];
    a.kv_type = CUDA_KV_F16;
    a.kv_block = KVB;
    a.block_tables = dup(L.bt);
    a.max_blocks = L.max_blocks;
    a.tiles = dup(L.tiles);
    a.n_tiles = nseq;
    a.n_head = H, a.n_kv = HK, a.head_dim = D, a.scale = 1.0f / sqrtf((float)D);
    a.n_split = 1;
    a.plan_nsl = cuda_attn_dec_nsl(nseq);
    a.work = (float *)dalloc(cuda_attn_dec_work_bytes(nseq, H, D, a.plan_nsl));
    a.pf_fast = 1;
    const int n_items = cuda_attn_dec_items_p(nseq, HK, sms_of(), 1);
    std::vector<cuda_attn_item> items(n_items);
    std::vector<int32_t> nslot(nseq);
    if (cuda_attn_dec_plan(L.tiles.data(), nseq, L.bt.data(), L.max_blocks, KVB, H / HK, n_items, a.plan_nsl, items.data(), nslot.data()) >= 1) {
        a.plan = dup(items);
        a.plan_nslot = dup(nslot);
        a.plan_items = n_items;
    }
}

// one call at SPARKD_L32 = mode (output and partials poisoned); the f32 output (or, q8: the int8
// form dequantized), empty on failure; *launches: l32_dec_kernel launches of the call
std::vector<float> run_layer(layer_t &L, int mode, int *launches) {
    const int was = cuda_l32_mode(mode);
    std::vector<float> out;
    const size_t n = (size_t)L.nseq * layer_t::H * layer_t::D;
    const long l0 = cuda_l32_launches();
    if (L.a.plan) {
        poison(L.a.out, n * 4);
        poison(L.a.work, cuda_attn_dec_work_bytes(L.nseq, layer_t::H, layer_t::D, L.a.plan_nsl));
        if (L.a.out_q8) poison(L.a.out_q8, n), poison(L.a.out_q8d, n / 32 * 4);
        err e2 = {ERR_OK, {0}};
        if (cuda_attention(&L.a, C->st, &e2) == 0 && cudaStreamSynchronize(C->st) == cudaSuccess) {
            if (!L.a.out_q8) {
                out = get(L.a.out, n);
            } else { // (P64 order: code at p64 position of element e; scale a block of 32)
                const auto q8 = get(L.a.out_q8, n);
                const auto d = get(L.a.out_q8d, n / 32);
                out.resize(n);
                for (size_t t = 0; t < (size_t)L.nseq; t++)
                    for (int e = 0; e < layer_t::H * layer_t::D; e++) {
                        const size_t k = t * layer_t::H * layer_t::D;
                        out[k + e] = (float)q8[k + (size_t)(e & ~63) + inv_perm64(e & 63)] * d[k / 32 + e / 32];
                    }
            }
        } else {
            fprintf(C->f, "# l32: %s\n", e2.msg), cudaGetLastError();
        }
    }
    if (launches) *launches = (int)(cuda_l32_launches() - l0);
    cuda_l32_mode(was);
    return out;
}

const int CHECK_HEADS[4] = {0, 13, 22, 31};

// float64 reference of the checked heads of sequence 0: [4][D]
std::vector<double> reference(const layer_t &L) {
    const int D = layer_t::D, HK = layer_t::HK, KVB = layer_t::KVB, G = layer_t::H / layer_t::HK;
    std::vector<double> ref((size_t)4 * D, 0.0), sc;
    const int pos = L.pos_of(0);
    for (int hi = 0; hi < 4; hi++) {
        const int h = CHECK_HEADS[hi], hk = h / G;
        const float *qh = &L.q[(size_t)h * D];
        sc.assign(pos + 1, 0.0);
        double mx = -INFINITY;
        for (int p = 0; p <= pos; p++) {
            const size_t row = ((size_t)L.bt[p / KVB] * HK + hk) * KVB + p % KVB;
            double d = 0;
            for (int i = 0; i < D; i++) d += (double)qh[i] * quant_f16_to_f32(L.kh[row * D + i]);
            sc[p] = d * L.a.scale;
            mx = std::max(mx, sc[p]);
        }
        double l = 0;
        double *o = &ref[(size_t)hi * D];
        for (int p = 0; p <= pos; p++) {
            const double w = exp(sc[p] - mx);
            l += w;
            const size_t row = ((size_t)L.bt[p / KVB] * HK + hk) * KVB + p % KVB;
            for (int i = 0; i < D; i++) o[i] += w * quant_f16_to_f32(L.vh[row * D + i]);
        }
        for (int i = 0; i < D; i++) o[i] /= l;
    }
    return ref;
}

// out is P64-ordered when p64 (row of sequence 0)
double err_ref(const std::vector<float> &out, const std::vector<double> &ref, bool p64 = false) {
    if (out.empty()) return NAN;
    const int D = layer_t::D;
    double num = 0, den = 0;
    for (int hi = 0; hi < 4; hi++)
        for (int i = 0; i < D; i++) {
            const int e = CHECK_HEADS[hi] * D + i;
            const float v = out[p64 ? (size_t)(e & ~63) + inv_perm64(e & 63) : (size_t)e];
            const double r = ref[(size_t)hi * D + i];
            if (!isfinite(v)) return NAN;
            num += (v - r) * (v - r);
            den += r * r;
        }
    return sqrt(num / (den > 0 ? den : 1));
}
double err_out(const std::vector<float> &x, const std::vector<float> &y) {
    if (x.empty() || x.size() != y.size()) return NAN;
    double num = 0, den = 0;
    for (size_t i = 0; i < x.size(); i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) return NAN;
        num += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        den += (double)y[i] * y[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

void test_b1(int pos, bool forms) {
    layer_t L;
    make_layer(L, pos, 1, 1, true);
    char shape[80], note[96];
    int n0 = -1, n1 = -1, n2 = -1, n2b = -1, n2c = -1;
    const auto o0 = run_layer(L, 0, &n0);
    const auto o1 = run_layer(L, 1, &n1);
    const auto o2 = run_layer(L, 2, &n2);
    const auto o2b = run_layer(L, 2, &n2b);
    const auto o2c = run_layer(L, 2, &n2c);
    const auto ref = reference(L);
    snprintf(shape, sizeof shape, "b1 ctx %d", pos + 1);
    snprintf(note, sizeof note, "(launches %d / %d / %d: must be 0 / 1 / 1)", n0, n1, n2);
    report("mode 0 (today) vs reference", shape, err_ref(o0, ref), 3e-3, n0 == 0, note);
    report("mode 1 (dynamic steps) vs reference", shape, err_ref(o1, ref), 3e-3, n1 == 1);
    report("mode 2 (combine folded) vs reference", shape, err_ref(o2, ref), 3e-3, n2 == 1);
    report("mode 2, 2nd call (counters reset) vs reference", shape, err_ref(o2b, ref), 3e-3, n2b == 1);
    report("mode 2, 3rd call vs reference", shape, err_ref(o2c, ref), 3e-3, n2c == 1);
    report("mode 1 vs mode 0", shape, err_out(o1, o0), 2e-3, true);
    report("mode 2 vs mode 0", shape, err_out(o2, o0), 2e-3, true);
    report("mode 2 vs mode 1", shape, err_out(o2, o1), 2e-3, true);
    { // mode 3: the strided static split (no claims): deterministic
        int n3 = -1, n3b = -1;
        const auto o3 = run_layer(L, 3, &n3), o3b = run_layer(L, 3, &n3b);
        report("mode 3 (strided static) vs reference", shape, err_ref(o3, ref), 3e-3, n3 == 1);
        report("mode 3 vs mode 0", shape, err_out(o3, o0), 2e-3, true);
        report("mode 3 twice: bitwise", shape, err_out(o3b, o3), 0.0, n3b == 1);
    }
    for (int pre = 1; pre <= 2; pre++) { // SPARKD_L32_PRE=1 / 2: the first static steps before pdl_wait (the same values)
        const int pre_was = cuda_l32_pre(pre);
        int np = -1;
        const auto op = run_layer(L, 2, &np);
        cuda_l32_pre(pre_was);
        report(pre == 1 ? "mode 2 + PRE=1 vs reference" : "mode 2 + PRE=2 vs reference", shape, err_ref(op, ref), 3e-3, np == 1);
    }
    if (forms) {
        // P64 rows: the folded combine's writes vs attn_dec_combine_u's
        L.a.out_p64 = 1;
        const auto p1 = run_layer(L, 1, NULL), p2 = run_layer(L, 2, &n2);
        report("P64 rows, mode 2 vs mode 1", shape, err_out(p2, p1), 2e-3, n2 == 1);
        report("P64 rows, mode 2 vs reference", shape, err_ref(p2, ref, true), 3e-3, true);
        L.a.out_p64 = 0;
        // the int8 form (round 8 fz): codes and scales of the next product's input
        const size_t n = (size_t)layer_t::H * layer_t::D;
        L.a.out_q8 = (int8_t *)dalloc(n);
        L.a.out_q8d = (float *)dalloc(n / 32 * 4);
        L.a.out_q8s = (float *)dalloc(n / 32 * 4);
        const auto q1 = run_layer(L, 1, NULL), q2 = run_layer(L, 2, &n2);
        // (a code may differ by one where the f32 value sits at a rounding edge: ~1/127 of its block's max)
        report("int8 form, mode 2 vs mode 1 (dequantized)", shape, err_out(q2, q1), 5e-3, n2 == 1);
        report("int8 form, mode 2 vs reference (dequantized)", shape, err_ref(q2, ref), 1.5e-2, true);
        L.a.out_q8 = NULL, L.a.out_q8d = L.a.out_q8s = NULL;
        // precision exact: not taken
        L.a.pf_fast = 0;
        int ne = -1;
        const auto oe = run_layer(L, 2, &ne);
        const auto oe0 = run_layer(L, 0, NULL);
        snprintf(note, sizeof note, "(launches %d: must be 0)", ne);
        report("precision exact: today's kernel, mode 2 vs 0 bitwise", shape, err_out(oe, oe0), 0.0, ne == 0, note);
        L.a.pf_fast = 1;
        // the control: partial sums halved (SPARKD_ATT8's control) through l32's kernel must miss
        const int att8_was = cuda_attn_dec_att8(2);
        int nc = -1;
        const auto oc = run_layer(L, 2, &nc);
        cuda_attn_dec_att8(att8_was);
        const double ec = err_ref(oc, ref);
        snprintf(note, sizeof note, "(error %.3g must exceed 3e-3; launches %d)", ec, nc);
        report("control (sums halved)", shape, ec > 3e-3 ? 0.0 : 1.0, 0.5, nc == 1, note);
        // and the next call is right again (the control's counters reset too)
        const auto oa = run_layer(L, 2, NULL);
        report("mode 2 after the control vs reference", shape, err_ref(oa, ref), 3e-3, true);
    }
    dfree_all();
}

// SPARKD_L32_QKV: the token's q / k / v rows (raw, as the GEMV leaves them) normalized, rotated and
// stored inside l32's launch, against cuda_qkv_rope_store + cuda_attention (SPARKD_L32 = 2): the cache
// rows k, v at pos bitwise (the same operations), the output within 2e-3 (the dynamic steps). Row pos
// is poisoned (NaN) before the fused call: it must be written, and the attention must not read it.
void test_qkv(int pos, int mode) {
    layer_t L;
    make_layer(L, pos, 1, 1, true);
    const int H = layer_t::H, HK = layer_t::HK, D = layer_t::D, KVB = layer_t::KVB;
    char shape[80], note[96];
    snprintf(shape, sizeof shape, "b1 ctx %d (row %d of its step), SPARKD_L32=%d", pos + 1, pos % 16, mode);
    const auto qraw = st_randn((size_t)H * D, 1.0), kraw = st_randn((size_t)HK * D, 1.0), vraw = st_randn((size_t)HK * D, 1.0);
    std::vector<float> qn(D), kn(D), ifr(D / 2);
    for (int i = 0; i < D; i++) qn[i] = (float)(0.5 + C->rng.unit()), kn[i] = (float)(0.5 + C->rng.unit());
    for (int i = 0; i < D / 2; i++) ifr[i] = (float)pow(1e6, -2.0 * i / D);
    cuda_qkv_args qa;
    memset(&qa, 0, sizeof qa);
    qa.q = (float *)L.a.q; // (the layer's q buffer: raw rows uploaded before each call)
    qa.k = dup(kraw); qa.v = dup(vraw);
    qa.ldq = H * D; qa.ldk = qa.ldv = HK * D;
    qa.q_norm = dup(qn); qa.k_norm = dup(kn); qa.eps = 1e-6f;
    qa.inv_freq = dup(ifr); qa.n_rot = D; qa.neox = 1; qa.mscale = 1.0f;
    qa.n_head = H; qa.n_kv = HK; qa.head_dim = D;
    qa.kv = L.a.kv; qa.kv_type = CUDA_KV_F16; qa.kv_block = KVB;
    const std::vector<int32_t> tpos = {pos}, tseq = {0};
    cuda_tokens tk = {dup(tpos), dup(tseq), L.a.block_tables, L.max_blocks, 1};
    const size_t row = ((size_t)L.bt[pos / KVB] * HK) * KVB + pos % KVB; // (head 0's row; head h at + h KVB)
    auto rows = [&]() { // k, v rows of every KV head at pos (f16 bits)
        std::vector<uint16_t> r((size_t)2 * HK * D);
        for (int h = 0; h < HK; h++) {
            cudaMemcpy(&r[(size_t)h * D], (const uint16_t *)L.a.kv.k + (row + (size_t)h * KVB) * D, D * 2, cudaMemcpyDeviceToHost);
            cudaMemcpy(&r[(size_t)(HK + h) * D], (const uint16_t *)L.a.kv.v + (row + (size_t)h * KVB) * D, D * 2, cudaMemcpyDeviceToHost);
        }
        return r;
    };
    const int mode_was = cuda_l32_mode(mode), qkv_was = cuda_l32_qkv(1);
    const int takes = cuda_l32_qkv_takes(&qa, 1);
    std::vector<float> oa, ob;
    std::vector<uint16_t> ra, rb;
    err e2 = {ERR_OK, {0}};
    // (A) today's two launches
    cudaMemcpy(qa.q, qraw.data(), qraw.size() * 4, cudaMemcpyHostToDevice);
    poison(L.a.out, (size_t)H * D * 4);
    if (cuda_qkv_rope_store(&qa, &tk, C->st, &e2) == 0 && cuda_attention(&L.a, C->st, &e2) == 0 && cudaStreamSynchronize(C->st) == cudaSuccess)
        oa = get(L.a.out, (size_t)H * D), ra = rows();
    // (B) one launch; row pos poisoned first
    cudaMemcpy(qa.q, qraw.data(), qraw.size() * 4, cudaMemcpyHostToDevice);
    poison(L.a.out, (size_t)H * D * 4);
    for (int h = 0; h < HK; h++) {
        cudaMemset((uint16_t *)L.a.kv.k + (row + (size_t)h * KVB) * D, 0xff, D * 2);
        cudaMemset((uint16_t *)L.a.kv.v + (row + (size_t)h * KVB) * D, 0xff, D * 2);
    }
    const long l0 = cuda_l32_qkv_launches();
    if (cuda_l32_qkv_attention(&qa, &L.a, &tk, C->st, &e2) == 0 && cudaStreamSynchronize(C->st) == cudaSuccess)
        ob = get(L.a.out, (size_t)H * D), rb = rows();
    else
        fprintf(C->f, "# l32 qkv: %s\n", e2.msg), cudaGetLastError();
    const long nl = cuda_l32_qkv_launches() - l0;
    cuda_l32_mode(mode_was);
    cuda_l32_qkv(qkv_was);
    size_t nd = ra.size() == rb.size() && !ra.empty() ? 0 : 1;
    for (size_t i = 0; i < ra.size() && i < rb.size(); i++) nd += ra[i] != rb[i];
    snprintf(note, sizeof note, "(%zu of %zu cache halves at pos differ: want 0; fused launches %ld: want 1; takes %d)", nd, ra.size(), nl, takes);
    report("QKV fused: cache rows at pos bitwise", shape, (double)nd, 0.0, nl == 1 && takes == 1, note);
    report("QKV fused vs qkv_rope_store + attention", shape, err_out(ob, oa), 2e-3, nl == 1);
    dfree_all();
}

void test_b8(int pos) {
    layer_t L;
    make_layer(L, pos, 8, 1, false);
    char shape[80], note[64];
    snprintf(shape, sizeof shape, "b8 ctx %d", pos + 1);
    int n0 = -1, n2 = -1;
    const auto o0 = run_layer(L, 0, &n0);
    const auto o2 = run_layer(L, 2, &n2);
    snprintf(note, sizeof note, "(launches %d: must be 0)", n2);
    report("8 sequences: not taken, mode 2 vs 0 bitwise", shape, err_out(o2, o0), 0.0, n2 == 0 && n0 == 0, note);
    dfree_all();
}

} // namespace

int l32_selftest(void *file, int quick, uint64_t seed, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, quick, e);
    C = &ctx;
    ctx.rng.s = seed;
    if (!st_open_stream()) return 1;
    test_b1(4096, true);
    test_b1(699, false);
    test_b1(8198, false);
    test_b8(4100);
    test_qkv(4096, 1); // (pos the first row of its step)
    test_qkv(4111, 1); // (the last row)
    test_qkv(8198, 3);
    test_qkv(4111, 2);
    if (!quick) test_b1(32771, true);
    st_close_stream();
    return ctx.fails;
}

// ---------------------------------------------------------------- kernel bench
//
// One layer's decode attention (kernel + combine, PDL on as in the engine), Qwen3-8B shape,
// precision fast: 1 sequence at 4K / 8K / 32K positions, 8 sequences at 32K (not taken: the
// control of the bench), SPARKD_L32 = 0 / 1 / 2; us per call (median of 9 runs of 10 calls back
// to back, KV pools rotated past L2), GB/s of the KV read and % of the probe.
void l32_kbench(void *file, double probe, err *e) {
    ctx_t ctx;
    st_begin(&ctx, file, 0, e);
    C = &ctx;
    ctx.rng.s = 3232;
    if (!st_open_stream()) return;
    const int pdl0 = cuda_pdl_enabled();
    cuda_pdl_set(1);
    fprintf(ctx.f, "| l32 attention | ctx | seqs | SPARKD_L32 | us per layer | GB/s | %% probe |\n|---|---|---|---|---|---|---|\n");
    const int shapes[4][2] = {{32767, 1}, {8191, 1}, {4095, 1}, {32767, 8}};
    for (int sh = 0; sh < 4; sh++) {
        layer_t L;
        const double kvb = (double)(shapes[sh][0] + 1) * shapes[sh][1] * layer_t::HK * layer_t::D * 2 * 2;
        int copies = (int)(512e6 / kvb) + 1;
        if (copies > 8) copies = 8;
        make_layer(L, shapes[sh][0], shapes[sh][1], copies, false);
        for (int mode : {0, 1, 3, 2, 0, 1, 3, 4}) { // (4: mode 1 with SPARKD_L32_PRE=1)
            const int was = cuda_l32_mode(mode == 4 ? 1 : mode), pre_was = cuda_l32_pre(mode == 4 ? 1 : 0);
            int ci = 0;
            const double us = time_us([&] {
                for (int r = 0; r < 10; r++) {
                    L.a.kv.k = L.kd[ci % copies];
                    L.a.kv.v = L.vd[ci % copies];
                    ci++;
                    err e3;
                    cuda_attention(&L.a, C->st, &e3);
                }
            }, 9) / 10;
            cuda_l32_mode(was);
            cuda_l32_pre(pre_was);
            fprintf(ctx.f, "| %s | %d | %d | %d | %.1f | %.0f | %.1f%% |\n", mode == 4 ? "l32 PRE=1" : mode ? "l32" : "dec3 + combine", shapes[sh][0] + 1,
                    shapes[sh][1], mode == 4 ? 1 : mode, us, L.bytes / us * 1e-3, probe > 0 ? 100.0 * L.bytes / us * 1e-3 / probe : 0.0);
            fflush(ctx.f);
        }
        dfree_all();
    }
    cuda_pdl_set(pdl0);
    st_close_stream();
}
