// pf_test.cuh — selftest rows and the kernel bench of round 8's prefill product (gemm.cu: hfw_kernel,
// hf2's A values on 16 x 128 warp tiles fed to wgmma on sm_90a, 3 warpgroups a CTA: hfw3; SPARKD_PF).
// Included by selftest.cu after hfast_test.cuh: the rows reuse test_hfast (the product
// against the dequantize-then-f32 reference, tol 2e-3, for Q8_0 also against the exact emulation of
// its numerics, tol 2e-5; a row fails too when cuda_matmul did not take hfast).
// Tile code (cuda_hfast_tile_set) 17: hfw3 (192 x 128 CTAs); on a GPU without sm_90a it runs hf2 (as 11).
// (Codes 14-16 and 18-20, hf3 / hfw / W0 / A through shared memory: measured and removed, kernels/PERF.md
// "Round 8, helper pf".)

// The rows of one tile code: T in {65, 100, 512, 2048, 130}, every hf2 type, rows not a multiple of the
// tile, two matrices, accumulate, split K, one chunk of K.
void pf_rows(int wm) {
    const uint32_t types[] = {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q5_K, QUANT_Q6_K};
    for (uint32_t t : types) {
        test_hfast(t, 200, 512, 65, 0, 0, 0, 0, wm);    // one partial token tile (65 of 128)
        test_hfast(t, 257, 768, 100, 67, 0, 1, 0, wm);  // two matrices, split K, rows not a multiple of the tile
        test_hfast(t, 129, 512, 100, 0, 1, 0, 0, wm);   // accumulate, a partial row tile
        test_hfast(t, 300, 1024, 512, 0, 1, 1, 0, wm);  // accumulate, 4 full token tiles
        test_hfast(t, 300, 1024, 512, 77, 0, 0, 0, wm); // two matrices, no split
        test_hfast(t, 330, 512, 2048, 0, 0, 0, 0, wm); // 16 token tiles
        // one chunk of K (Q8_0; the K-quants' smallest K is a 256-element superblock: 4 chunks), a partial
        // second token tile
        test_hfast(t, 96, t == QUANT_Q8_0 ? 64 : 256, 130, 0, 1, 0, 0, wm);
    }
    // controls: poisoned codes must fail the comparison
    test_hfast(QUANT_Q8_0, 200, 512, 512, 0, 0, 0, 1, wm);
    test_hfast(QUANT_Q5_K, 200, 512, 512, 0, 0, 0, 1, wm);
}

// selftest: hfw3's rows (the default prefill product at T >= 65 on sm_90a; tile code 17, which runs
// hf2 on other GPUs) with its controls, and the default route itself (tile rule, T = 512) for every type.
void pf_selftest(int /*quick: the same rows*/) {
    pf_rows(17);
    for (uint32_t t : {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q5_K, QUANT_Q6_K}) test_hfast(t, 400, 1024, 512, 67, 0, 1);
    test_hfast(QUANT_Q4_K, 200, 512, 512, 0, 0, 0, 1); // the default route, poisoned codes: must fail the comparison
}

// A layout probe, run when a code's rows fail: Q8_0, K = 64, N = 64, T = 128, row r has one code 1 at
// k = r (d = 1), x random, so y[t][r] must be x[t][r] (to f16). For the first wrong rows it prints
// which x[t'][k'] each of a few y[t][r] holds ("# diag" lines): the k and token mapping the kernel used.
void pf_diag(int wm) {
    const int N = 64, K = 64, T = 128;
    std::vector<uint8_t> raw((size_t)N * 2 * 34, 0);
    const uint16_t one = quant_f32_to_f16(1.0f);
    for (int r = 0; r < N; r++)
        for (int b = 0; b < 2; b++) {
            uint8_t *blk = raw.data() + ((size_t)r * 2 + b) * 34;
            memcpy(blk, &one, 2);
            if (r / 32 == b) blk[2 + r % 32] = 1;
        }
    cuda_weight w;
    if (!make_weight(&w, QUANT_Q8_0, raw, N, K)) return;
    err e0 = {ERR_OK, {0}};
    cuda_hfast_check(&w, C->st, &e0);
    auto x = randn((size_t)T * K, 1.0);
    float *dx = dup(x);
    cuda_mmin m;
    cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(T, K, CUDA_MMIN_F16)), T, K, CUDA_MMIN_F16);
    float *dy = (float *)dalloc((size_t)T * N * 4);
    poison(dy, (size_t)T * N * 4);
    if (cuda_mmin_prepare(dx, K, &m, T, C->st, &e0)) return;
    cuda_mm_args a;
    memset(&a, 0, sizeof a);
    a.n = 1; a.w[0] = &w; a.y[0] = dy; a.ldy[0] = N;
    cuda_hfast_set(33);
    cuda_hfast_tile_set(wm, 0);
    const int rc = cuda_matmul(&a, &m, C->st, &e0);
    cudaStreamSynchronize(C->st);
    cuda_hfast_tile_set(-1, -1);
    cuda_hfast_set(0);
    const cudaError_t ce = cudaGetLastError();
    auto y = get(dy, (size_t)T * N);
    int bad = 0, shown = 0;
    for (int r = 0; r < N; r++) {
        int wrong = 0;
        for (int t = 0; t < T; t++) {
            const float want = x[(size_t)t * K + r], got = y[(size_t)t * N + r];
            if (!(fabsf(got - want) <= 2e-3f * fabsf(want) + 1e-4f)) wrong++;
        }
        if (!wrong) continue;
        bad++;
        if (shown++ >= 6) continue;
        for (int t : {0, 1, 9}) {
            const float got = y[(size_t)t * N + r];
            int bt = -1, bk = -1;
            float be = 1e30f;
            for (int t2 = 0; t2 < T; t2++)
                for (int k2 = 0; k2 < K; k2++) {
                    const float d = fabsf(x[(size_t)t2 * K + k2] - got);
                    if (d < be) { be = d; bt = t2; bk = k2; }
                }
            fprintf(C->f, "# diag code %d: y[t %d][row %d] = %g (%d tokens wrong) ~ x[t %d][k %d] (diff %.2g)\n", wm, t, r,
                    got, wrong, bt, bk, be);
        }
    }
    fprintf(C->f, "# diag code %d: %d of %d rows wrong (rc %d, %s)\n", wm, bad, N, rc, cudaGetErrorString(ce));
    dfree_all();
}

// SPARKD_KBENCH=pf: hfw3's rows first (their ok / not ok lines); then the Qwen3-8B products at T = 512
// and 2048 (Q8_0, Q4_K; weights rotated over copies beyond the L2): hf2 (today) and, when its rows
// passed, hfw3, in us and TFLOP/s (% of the mma.sync peak SPARKD_MMA_PEAK, 642).
void pf_kbench(double peak) {
    const int f0 = C->fails;
    pf_rows(17);
    const bool wok3 = C->fails == f0;
    if (!wok3) fprintf(C->f, "# hfw3 rows failed: hfw3 not timed\n");
    pf_diag(17); // (also when they pass: the probe must then print 0 wrong rows)
    struct prod { const char *name; int n, rows, K; } prods[] = {
        {"q+k+v", 1, 6144, 4096}, {"o", 1, 4096, 4096}, {"gate+up", 2, 12288, 4096}, {"down", 1, 4096, 12288}};
    constexpr int NV = 2;
    const char *kn[NV] = {"hf2", "hfw3"};
    const int vwm[NV] = {11, 17};
    for (uint32_t type : {QUANT_Q8_0, QUANT_Q4_K}) {
        double layer[2][NV] = {{0}};
        for (const prod &pr : prods) {
            const uint64_t wb = cuda_weight_bytes(type, pr.rows, pr.K) * pr.n;
            int copies = (int)((768ull << 20) / wb) + 1;
            if (copies > 8) copies = 8;
            auto raw = gen_rows(type, pr.rows, pr.K);
            std::vector<cuda_weight> ws((size_t)copies * pr.n);
            for (auto &w : ws) {
                if (!make_weight(&w, type, raw, pr.rows, pr.K)) return;
                err e0;
                cuda_hfast_check(&w, C->st, &e0);
            }
            const int Tmax = 2048, forms = CUDA_MMIN_F16;
            cuda_mmin m;
            cuda_mmin_carve(&m, dalloc(cuda_mmin_bytes(Tmax, pr.K, forms)), Tmax, pr.K, forms);
            float *dx = dup(randn((size_t)Tmax * pr.K, 1.0));
            float *dy[2] = {(float *)dalloc((size_t)Tmax * pr.rows * 4), (float *)dalloc((size_t)Tmax * pr.rows * 4)};
            float *splitk = (float *)dalloc(32u << 20);
            for (int ti = 0; ti < 2; ti++) {
                const int T = ti ? 2048 : 512;
                err e2 = {ERR_OK, {0}};
                if (cuda_mmin_prepare(dx, pr.K, &m, T, C->st, &e2)) return;
                double h2 = 0;
                for (int v = 0; v < NV; v++) {
                    if (v == 1 && !wok3) continue;
                    cuda_hfast_set(33);
                    cuda_hfast_tile_set(vwm[v], 0);
                    int it = 0;
                    cuda_mm_args a;
                    memset(&a, 0, sizeof a);
                    a.n = pr.n; a.exact = 0; a.work = splitk; a.work_bytes = 32u << 20;
                    for (int i = 0; i < pr.n; i++) { a.y[i] = dy[i]; a.ldy[i] = pr.rows; }
                    const double us = time_us([&] {
                        const int cc = it++ % copies;
                        for (int i = 0; i < pr.n; i++) a.w[i] = &ws[(size_t)cc * pr.n + i];
                        err e3;
                        cuda_matmul(&a, &m, C->st, &e3);
                    }, 3 * copies);
                    cudaError_t ce = cudaGetLastError();
                    const double tf = 2.0 * T * pr.rows * pr.n * (double)pr.K / (us * 1e6);
                    if (v == 0) h2 = us;
                    layer[ti][v] += us;
                    fprintf(C->f, "| %s | %s %dx%dx%d | %d | %s | %.1f | | | %.1f (%.0f%% peak) %.2fx hf2 %s |\n", tname(type),
                            pr.name, pr.n, pr.rows, pr.K, T, kn[v], us, tf, peak > 0 ? 100.0 * tf / peak : 0.0,
                            h2 > 0 ? h2 / us : 0.0, ce != cudaSuccess ? cudaGetErrorString(ce) : "");
                    fflush(C->f);
                }
                cuda_hfast_set(-1);
                cuda_hfast_tile_set(-1, -1);
            }
            dfree_all();
        }
        for (int ti = 0; ti < 2; ti++)
            fprintf(C->f, "| %s | layer (q+k+v, o, gate+up, down) | %d | hf2 %.1f us, hfw3 %.1f | | | | hfw3 %.2fx hf2 |\n",
                    tname(type), ti ? 2048 : 512, layer[ti][0], layer[ti][1], layer[ti][1] > 0 ? layer[ti][0] / layer[ti][1] : 0.0);
    }
}
