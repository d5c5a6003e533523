// q4v_test.cuh — selftest rows and the kernel bench of the round-7 Q4_K / Q6_K / Q8_0 batch-1 GEMV
// (gemv.cu q4v_kernel). Included by selftest.cu inside its unnamed namespace, after its
// helpers (gen_rows, ref_dequant, make_weight, randn, q8_blocks, dq_compare, report,
// time_us, test_gemv_dq*); not a header of its own.
//
// q4v_selftest: q4v forced (cuda_gemv_q4v_set(2)) on the int8-x GEMV rows of selftest.cu
// (gemv-dp4a: against the double sum over the CPU's int8 quantization of the same x,
// tol 2e-6 of sum |w xq|, and within the int8 rounding bound of the f32 product): a tiny
// shape, odd K (2304: 36 chunks, a partial last iteration), odd rows, accumulate, three
// matrices in one launch, the paired gate/up (+ down on its output), every Qwen3-8B Q4_K_M
// product shape (q+k 5120, o 4096, v 1024, down K 12288, a 24576-row stand-in for the head;
// gate+up 2 x 12288 without --quick), for Q4_K, Q6_K and Q8_0.
// q4v-vs-old: q4v against round 5's kernel (cuda_gemv_q4v_set(0)) on the same x (not the
// same bits: other lanes sum other terms; tol 2e-6 of sum |w xq|). q4v-ran: the q4v kernel
// launched for every one of those products (its launch counter). Control: q4v's output
// against the reference whose x has the two 32-element halves of every 64-chunk swapped (what
// a sub-block mix-up in the kernel would give): must exceed the tolerance.
//
// q4v_kbench (SPARKD_KBENCH=q4v): each Qwen3-8B Q4_K product behind its producer
// (cuda_resid_norm of one row) in a CUDA graph with PDL, weights rotated over copies beyond
// the L2, us per pair with q4v off (round 5's gemv4 / gemv_dq), on with its defaults, on
// without the K split, the producer alone,
// the GEMV share in us, GB/s and % of the read probe; then the q4v CTA timeline.

extern "C" void cuda_gemv_q4v_ks_set(int ks); // gemv.cu: q4v's K split 1 / 2 forced, 0 = its rule, -1 = as SPARKD_Q4V_KS says

// One product at q4v mode `mode` (0 off, 2 forced) on x: y (rows of all matrices).
static std::vector<float> q4v_run(const std::vector<cuda_weight> &w, int K, const std::vector<float> &x, int mode) {
    float *dx = dup(x);
    cuda_mmin m;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(1, K, CUDA_MMIN_XP)), 1, K, CUDA_MMIN_XP);
    size_t ny = 0;
    for (const auto &wi : w) ny += wi.rows;
    float *dy = (float *)dalloc(ny * 4);
    poison(dy, ny * 4);
    err e2 = {ERR_OK, {0}};
    std::vector<float> y;
    if (cuda_mmin_prepare(dx, K, &m, 1, C->st, &e2)) return y;
    cuda_mm_args a;
    memset(&a, 0, sizeof a);
    a.n = (int)w.size(); a.exact = 0;
    size_t off = 0;
    for (size_t i = 0; i < w.size(); i++) {
        a.w[i] = &w[i];
        a.y[i] = dy + off;
        a.ldy[i] = (int)w[i].rows;
        off += w[i].rows;
    }
    cuda_gemv_q4v_set(mode);
    const int rc = cuda_matmul(&a, &m, C->st, &e2);
    cuda_gemv_q4v_set(-1);
    if (rc || cudaStreamSynchronize(C->st) != cudaSuccess) return y;
    return get(dy, ny);
}

// q4v vs round 5's kernel on the same x (and the control: q4v vs a wrong reference).
void test_q4v_vs_old(uint32_t type, int N, int K, int control) {
    auto raw = gen_rows(type, N, K);
    auto W = ref_dequant(type, raw, N, K);
    std::vector<cuda_weight> w(1);
    if (!make_weight(&w[0], type, raw, N, K)) return;
    auto x = randn(K, 1.0);
    for (int k = 0; k < K; k += 97) x[k] *= 20.0f;
    for (int k = 64; k < 96 && k < K; k++) x[k] = 0.0f;
    const int n0 = cuda_gemv_q4v_launches();
    auto yn = q4v_run(w, K, x, 2);
    const int ran = cuda_gemv_q4v_launches() - n0;
    auto yo = q4v_run(w, K, x, 0);
    const int ran0 = cuda_gemv_q4v_launches() - n0 - ran;
    char shape[64];
    snprintf(shape, sizeof shape, "%s N%d K%d", tname(type), N, K);
    if ((int)yn.size() != N || (int)yo.size() != N) {
        report(control ? "q4v control" : "q4v-vs-old", shape, NAN, 2e-6, 0, false, "(launch failed)");
        return;
    }
    int fin = 1;
    for (int i = 0; i < N; i++) if (!isfinite(yn[i]) || !isfinite(yo[i])) fin = 0;
    std::vector<float> xs = x;
    if (control)
        for (int k = 0; k + 64 <= K; k += 64)
            for (int j = 0; j < 32; j++) std::swap(xs[k + j], xs[k + 32 + j]);
    auto xq = q8_blocks(xs.data(), K);
    double num = 0, den = 0;
    for (int n = 0; n < N; n++) {
        double s = 0, sa = 0;
        for (int k = 0; k < K; k++) {
            s += (double)W[(size_t)n * K + k] * xq[k];
            sa += fabs((double)W[(size_t)n * K + k] * xq[k]);
        }
        const double d = control ? (double)yn[n] - s : (double)yn[n] - (double)yo[n];
        num += d * d;
        den += sa * sa;
    }
    const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    if (control) {
        char note[96];
        snprintf(note, sizeof note, "(x halves swapped in the reference: err %.3g must exceed 2e-6)", rel);
        report("q4v control", shape, rel > 2e-6 ? 0.0 : 1.0, 0, 0, fin && ran == 1, note);
    } else {
        char note[96];
        snprintf(note, sizeof note, "(|q4v - round 5| / sum|w xq|; q4v launches %d, with Q4V=0 %d)", ran, ran0);
        report("q4v-vs-old", shape, rel, 2e-6, 0, fin && ran == 1 && ran0 == 0, note);
    }
    dfree_all();
}

void q4v_selftest(int quick) {
    for (uint32_t t : {QUANT_Q4_K, QUANT_Q6_K, QUANT_Q8_0}) {
        cuda_gemv_q4v_set(2);
        g_gemv_tag = " q4v";
        int calls = 0, missed = 0;
        // each product must launch q4v at least `per` times (its test's own launches)
        auto run = [&](int per, auto fn) {
            const int n0 = cuda_gemv_q4v_launches();
            fn();
            calls++;
            if (cuda_gemv_q4v_launches() - n0 < per) missed++;
        };
        run(1, [&] { test_gemv_dq(t, 1, 256, 0, 0); });
        run(1, [&] { test_gemv_dq(t, 67, 2304, 1, 0); });
        run(1, [&] { test_gemv_dq(t, 1001, 2304, 0, 0); });
        run(1, [&] { test_gemv_dq(t, 1024, 4096, 0, 0); });
        run(1, [&] { test_gemv_dq(t, 4096, 4096, 1, 0); });
        run(1, [&] { test_gemv_dq(t, 5120, 4096, 0, 0); });
        run(1, [&] { test_gemv_dq(t, 4096, 12288, 0, 0); });
        run(1, [&] { test_gemv_dq(t, 24576, 4096, 0, 0); });
        run(1, [&] { test_gemv_dq_multi(t); });
        run(2, [&] { test_gemv_dq_pair(t, 1280, 1024, 259, CUDA_ACT_SILU); });
        run(2, [&] { test_gemv_dq_pair(t, 1536, 2304, 67, CUDA_ACT_GELU_TANH); });
        if (!quick) run(2, [&] { test_gemv_dq_pair(t, 12288, 4096, 4096, CUDA_ACT_SILU); });
        // CTAs of 8 warps (SPARKD_Q4V_W=8; Q8_0: 16 only)
        if (t != QUANT_Q8_0) {
            cuda_gemv_q4v_warps_set(8);
            g_gemv_tag = " q4v 8 warps";
            run(1, [&] { test_gemv_dq(t, 67, 2304, 1, 0); });
            run(1, [&] { test_gemv_dq(t, 4096, 12288, 0, 0); });
            run(2, [&] { test_gemv_dq_pair(t, 1280, 2304, 67, CUDA_ACT_SILU); });
            cuda_gemv_q4v_warps_set(0);
        }
        // the K split over a warp pair forced (the rule takes it for the 1024-row v), and off
        cuda_gemv_q4v_ks_set(2);
        g_gemv_tag = " q4v K split 2";
        run(1, [&] { test_gemv_dq(t, 1001, 2304, 1, 0); });
        run(1, [&] { test_gemv_dq(t, 4096, 12288, 0, 0); });
        run(1, [&] { test_gemv_dq(t, 6144, 4096, 0, 0); });
        run(1, [&] { test_gemv_dq_multi(t); });
        run(2, [&] { test_gemv_dq_pair(t, 1280, 2304, 67, CUDA_ACT_SILU); });
        run(1, [&] { test_gemv_dq(t, 67, 6144, 0, 0); }); // 3 iterations a row: 2 + 1
        cuda_gemv_q4v_ks_set(1);
        g_gemv_tag = " q4v K split 1";
        run(1, [&] { test_gemv_dq(t, 1024, 4096, 0, 0); });
        cuda_gemv_q4v_ks_set(-1);
        g_gemv_tag = "";
        cuda_gemv_q4v_set(-1);
        char note[64];
        snprintf(note, sizeof note, "(%d of %d products without their q4v launches)", missed, calls);
        report("q4v-ran", tname(t), (double)missed, 0, 0, missed == 0, note);
        test_q4v_vs_old(t, 4096, 4096, 0);
        test_q4v_vs_old(t, 1001, 2304, 0);
        test_q4v_vs_old(t, 4096, 4096, 1);
    }
}

// SPARKD_KBENCH=q4v: one product behind its producer, q4v off / on (see the top).
void q4v_chain(uint32_t type, const char *name, int rows, int K, int pair, double probe) {
    const int nw = pair ? 2 : 1;
    const uint64_t wb = cuda_weight_bytes(type, rows, K) * nw;
    int copies = (int)((768ull << 20) / wb) + 1;
    if (copies > 48) copies = 48;
    auto raw = gen_rows(type, rows, K);
    std::vector<cuda_weight> ws((size_t)copies * nw);
    for (auto &w : ws)
        if (!make_weight(&w, type, raw, rows, K)) return;
    float *dx = dup(randn(K, 2.0)), *dnw = dup(randn(K, 0.3));
    cuda_mmin m, out;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(1, K, CUDA_MMIN_XP)), 1, K, CUDA_MMIN_XP);
    cuda_mmin_carve(&out, dalloc(cuda_mmin_bytes(1, rows, CUDA_MMIN_XP)), 1, rows, CUDA_MMIN_XP);
    float *dy = (float *)dalloc((size_t)rows * 4);
    cuda_resid_args ra;
    memset(&ra, 0, sizeof ra);
    ra.x = dx; ra.norm_w = dnw; ra.n = 1; ra.dim = K; ra.eps = 1e-6f; ra.out = &m;
    auto step = [&](int i, bool gemv) {
        err e3;
        cuda_resid_norm(&ra, C->st, &e3);
        if (!gemv) return;
        cuda_mm_args a;
        memset(&a, 0, sizeof a);
        a.n = nw; a.exact = 0;
        for (int j = 0; j < nw; j++) { a.w[j] = &ws[(size_t)i * nw + j]; a.y[j] = dy; a.ldy[j] = rows; }
        if (pair) { a.pair_act = CUDA_ACT_SILU + 1; a.act_out = &out; }
        cuda_matmul(&a, &m, C->st, &e3);
    };
    const int pdl0 = cuda_pdl_enabled();
    {
        int major = 0;
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
        cuda_pdl_set(major >= 9 && !getenv("SPARKD_NO_PDL"));
    }
    // v 0: q4v off (round 5), 1: q4v's defaults, 2: the producers alone, 3: q4v's defaults
    // without the K split; graphs of `copies` pairs
    double us[4] = {0, 0, 0, 0};
    for (int v = 0; v < 4; v++) {
        cuda_gemv_q4v_set(v == 1 || v == 3 ? 1 : 0);
        cuda_gemv_q4v_ks_set(v == 3 ? 1 : 0);
        step(0, true);
        cudaStreamSynchronize(C->st);
        cudaGraph_t g;
        cudaGraphExec_t ge;
        if (cudaStreamBeginCapture(C->st, cudaStreamCaptureModeRelaxed) != cudaSuccess) break;
        for (int i = 0; i < copies; i++) step(i, v != 2);
        if (cudaStreamEndCapture(C->st, &g) != cudaSuccess) break;
        const bool okg = cudaGraphInstantiate(&ge, g, 0) == cudaSuccess;
        cudaGraphDestroy(g);
        if (!okg) break;
        us[v] = time_us([&] { cudaGraphLaunch(ge, C->st); }, 20) / copies;
        cudaGraphExecDestroy(ge);
    }
    // q4v's timeline (selftest.cu chain_timeline, as bench_decode_chain's)
    double tl[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    cuda_gemv_q4v_set(1);
    cuda_gemv_q4v_warps_set(0);
    const int tl_n = chain_timeline(copies, step, tl);
    cuda_gemv_q4v_set(-1);
    cuda_gemv_q4v_warps_set(0);
    cuda_gemv_q4v_ks_set(-1);
    const int pdl = cuda_pdl_enabled();
    cuda_pdl_set(pdl0);
    cudaError_t ce = cudaGetLastError();
    const double s0 = us[0] - us[2], s1 = us[1] - us[2];
    const double g0 = (double)wb / (s0 * 1e3), g1 = (double)wb / (s1 * 1e3);
    fprintf(C->f, "| q4v chain | %s %s %dx%d%s | resid_norm + gemv dp4a, %s, graph, us a pair | Q4V=0 %.2f | Q4V=1 %.2f (%+.1f%%) | Q4V=1 KS=1 %.2f | producer alone %.2f | GEMV share %.2f -> %.2f us | %.0f -> %.0f GB/s | %.0f%% -> %.0f%% of the probe |%s\n",
            tname(type), name, rows, K, pair ? " x2" : "", pdl ? "PDL" : "no PDL", us[0], us[1], us[0] > 0 ? 100.0 * (us[1] - us[0]) / us[0] : 0.0, us[3], us[2],
            s0, s1, g0, g1, probe > 0 ? 100.0 * g0 / probe : 0.0, probe > 0 ? 100.0 * g1 / probe : 0.0,
            ce != cudaSuccess ? cudaGetErrorString(ce) : "");
    if (tl_n)
        fprintf(C->f, "| q4v timeline | %s %s | us after the previous GEMV's last CTA (Q4V=1, default W, %d launches): first CTA start %.2f, last start %.2f | ring issued (median CTA) %.2f | pdl_wait returned median %.2f, last %.2f | x quantized median %.2f, last %.2f | last CTA done %.2f |\n",
                tname(type), name, tl_n, tl[0], tl[1], tl[2], tl[3], tl[4], tl[5], tl[6], tl[7]);
    fflush(C->f);
    dfree_all();
}

void q4v_kbench(double probe) {
    cuda_gemv_dp4a_set(0);
    // Q4_K_M's products (Q4_K: q+k, o, v, gate+up, down; Q6_K: v, down, the head) and Q8_0's
    q4v_chain(QUANT_Q4_K, "q+k", 5120, 4096, 0, probe);
    q4v_chain(QUANT_Q4_K, "o", 4096, 4096, 0, probe);
    q4v_chain(QUANT_Q4_K, "v", 1024, 4096, 0, probe);
    q4v_chain(QUANT_Q4_K, "gate+up", 12288, 4096, 1, probe);
    q4v_chain(QUANT_Q4_K, "down", 4096, 12288, 0, probe);
    q4v_chain(QUANT_Q6_K, "v", 1024, 4096, 0, probe);
    q4v_chain(QUANT_Q6_K, "down", 4096, 12288, 0, probe);
    q4v_chain(QUANT_Q6_K, "head", 151936, 4096, 0, probe);
    q4v_chain(QUANT_Q8_0, "q+k+v", 6144, 4096, 0, probe);
    q4v_chain(QUANT_Q8_0, "o", 4096, 4096, 0, probe);
    q4v_chain(QUANT_Q8_0, "gate+up", 12288, 4096, 1, probe);
    q4v_chain(QUANT_Q8_0, "down", 4096, 12288, 0, probe);
    q4v_chain(QUANT_Q8_0, "head", 151936, 4096, 0, probe);
}
