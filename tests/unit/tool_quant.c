/* tool_quant.c — drives appliance/quant.c from tests/unit/test_quant_ref.py.
 *
 *   tool_quant dequant TYPE IN OUT
 *       IN: raw blocks of ggml type id TYPE; OUT: f32, every element.
 *   tool_quant matmul TYPE K T R0 R1 LDX LDY W X Y
 *       W: N rows of K elements (N from the file size), packed;
 *       X: T x LDX f32; Y: written as T x LDY f32 after poisoning every element
 *       with NaN, then quant_matmul over rows [R0, R1).
 *   tool_quant dot TYPE K W X Y
 *       Y[r] = quant_dot_row(row r, X) for every row.
 *   tool_quant f16enc IN OUT
 *       IN: f32; OUT: u16 = quant_f32_to_f16 of each.
 *   tool_quant bf16enc IN OUT / fp8enc IN OUT
 *       IN: f32; OUT: u16 = quant_f32_to_bf16, u8 = quant_f32_to_fp8_e4m3 of each.
 *   tool_quant fp8dec OUT
 *       OUT: f32 = quant_fp8_e4m3_to_f32 of the bytes 0..255.
 * Exit 0 on success, 2 on bad usage or I/O. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

static void *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0) {
        fclose(f);
        return NULL;
    }
    void *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

static int spill(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static int usage(void) {
    fprintf(stderr, "usage: tool_quant dequant|matmul|dot|f16enc|bf16enc|fp8enc|fp8dec ...\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage();
    const char *cmd = argv[1];
    if (!strcmp(cmd, "f16enc") && argc == 4) {
        size_t n;
        float *in = slurp(argv[2], &n);
        if (!in) return 2;
        size_t cnt = n / 4;
        uint16_t *out = malloc(cnt * 2 + 1);
        for (size_t i = 0; i < cnt; i++) out[i] = quant_f32_to_f16(in[i]);
        int rc = spill(argv[3], out, cnt * 2);
        free(in);
        free(out);
        return rc ? 2 : 0;
    }
    if ((!strcmp(cmd, "bf16enc") || !strcmp(cmd, "fp8enc")) && argc == 4) {
        const int fp8 = !strcmp(cmd, "fp8enc");
        size_t n;
        float *in = slurp(argv[2], &n);
        if (!in) return 2;
        size_t cnt = n / 4;
        uint8_t *out = malloc(cnt * 2 + 1);
        for (size_t i = 0; i < cnt; i++) {
            if (fp8) out[i] = quant_f32_to_fp8_e4m3(in[i]);
            else {
                uint16_t h = quant_f32_to_bf16(in[i]);
                memcpy(out + 2 * i, &h, 2);
            }
        }
        int rc = spill(argv[3], out, cnt * (fp8 ? 1 : 2));
        free(in);
        free(out);
        return rc ? 2 : 0;
    }
    if (!strcmp(cmd, "fp8dec") && argc == 3) {
        float out[256];
        for (int b = 0; b < 256; b++) out[b] = quant_fp8_e4m3_to_f32((uint8_t)b);
        return spill(argv[2], out, sizeof out) ? 2 : 0;
    }
    if (argc < 3) return usage();
    uint32_t type = (uint32_t)atoi(argv[2]);
    const quant_traits *tr = quant_traits_of(type);
    if (!tr || !tr->cpu_supported) {
        fprintf(stderr, "tool_quant: type %u not supported\n", type);
        return 2;
    }
    if (!strcmp(cmd, "dequant") && argc == 5) {
        size_t n;
        uint8_t *in = slurp(argv[3], &n);
        if (!in || n % (size_t)tr->block_bytes) return 2;
        int64_t elems = (int64_t)(n / (size_t)tr->block_bytes) * tr->block_elems;
        float *out = malloc((size_t)elems * 4 + 4);
        quant_dequant_row(type, in, out, elems);
        int rc = spill(argv[4], out, (size_t)elems * 4);
        free(in);
        free(out);
        return rc ? 2 : 0;
    }
    if (!strcmp(cmd, "dot") && argc == 7) {
        int64_t K = atoll(argv[3]);
        uint64_t rb;
        if (quant_row_bytes(type, K, &rb)) return 2;
        size_t nw, nx;
        uint8_t *w = slurp(argv[4], &nw);
        float *x = slurp(argv[5], &nx);
        if (!w || !x || nw % rb || nx < (size_t)K * 4) return 2;
        int64_t N = (int64_t)(nw / rb);
        float *y = malloc((size_t)N * 4 + 4);
        for (int64_t r = 0; r < N; r++) y[r] = quant_dot_row(type, w + (uint64_t)r * rb, x, K);
        int rc = spill(argv[6], y, (size_t)N * 4);
        free(w);
        free(x);
        free(y);
        return rc ? 2 : 0;
    }
    if (!strcmp(cmd, "matmul") && argc == 12) {
        int64_t K = atoll(argv[3]), T = atoll(argv[4]), r0 = atoll(argv[5]), r1 = atoll(argv[6]);
        int64_t ldx = atoll(argv[7]), ldy = atoll(argv[8]);
        uint64_t rb;
        if (quant_row_bytes(type, K, &rb)) return 2;
        size_t nw, nx;
        uint8_t *w = slurp(argv[9], &nw);
        float *x = slurp(argv[10], &nx);
        if (!w || !x || nw % rb || T < 1 || ldx < K || nx < (size_t)(T * ldx) * 4) return 2;
        int64_t N = (int64_t)(nw / rb);
        if (r0 < 0 || r1 > N || r0 > r1 || ldy < r1) return 2;
        float *y = malloc((size_t)(T * ldy) * 4);
        for (int64_t i = 0; i < T * ldy; i++) y[i] = NAN;
        /* exactly the advertised scratch, so ASan sees any overrun */
        float *scratch = malloc(quant_matmul_scratch_floats(K) * sizeof(float));
        quant_matmul(type, w, rb, K, r0, r1, x, ldx, T, y, ldy, scratch);
        int rc = spill(argv[11], y, (size_t)(T * ldy) * 4);
        free(scratch);
        free(w);
        free(x);
        free(y);
        return rc ? 2 : 0;
    }
    return usage();
}
