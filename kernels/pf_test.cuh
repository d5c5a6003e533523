// pf_test.cuh — selftest rows of round 8's hf3_kernel (gemm.cu: hf2's product on 16 x 128 warp
// tiles, SPARKD_PF). Included by selftest.cu after hfast_test.cuh (it reuses test_hfast: the
// product against the dequantize-then-f32 reference, tol 2e-3, and for Q8_0 against the exact
// emulation of its numerics, tol 2e-5; a row also fails when cuda_matmul did not take hfast).
// Tile codes (cuda_hfast_tile_set): 14 hf3 with 64 x 128 CTAs, 15 hf3 with 128 x 128 CTAs.
void pf_selftest(int quick) {
    const uint32_t types[] = {QUANT_Q8_0, QUANT_Q4_K, QUANT_Q5_K, QUANT_Q6_K};
    for (uint32_t t : types)
        for (int wm : {14, 15}) {
            test_hfast(t, 200, 512, 65, 0, 0, 0, 0, wm);    // one partial token tile (65 of 128)
            test_hfast(t, 257, 768, 100, 67, 0, 1, 0, wm);  // two matrices, split K, rows not a multiple of the tile
            test_hfast(t, 129, 512, 100, 0, 1, 0, 0, wm);   // accumulate, a partial row tile
            test_hfast(t, 300, 1024, 512, 0, 1, 1, 0, wm);  // accumulate, 4 full token tiles
            test_hfast(t, 300, 1024, 512, 77, 0, 0, 0, wm); // two matrices, no split
            if (!quick || wm == 14) test_hfast(t, 330, 512, 2048, 0, 0, 0, 0, wm); // 16 token tiles
            test_hfast(t, 96, 64, 130, 0, 1, 0, 0, wm);     // one chunk of K, a partial second token tile
        }
    // the default rule (SPARKD_PF unset: hf3 at T >= 65) on two Qwen3-8B-like shapes
    test_hfast(QUANT_Q8_0, 1024, 4096, 512, 0, 0, 1);
    test_hfast(QUANT_Q4_K, 4096, 1024, 100, 0, 1, 1);
    // controls: poisoned codes must fail the comparison
    test_hfast(QUANT_Q8_0, 200, 512, 512, 0, 0, 0, 1, 14);
    test_hfast(QUANT_Q4_K, 200, 512, 512, 0, 0, 0, 1, 14);
    test_hfast(QUANT_Q6_K, 200, 512, 512, 0, 0, 0, 1, 15);
}
