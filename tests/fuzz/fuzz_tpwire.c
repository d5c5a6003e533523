/* fuzz_tpwire — libFuzzer target for the tensor-parallel STEP decoder
 * (appliance/engine/tpwire.c): the bytes rank 0 sends each step. Byte 0 picks the limits
 * (sequences 1..8, kv_block 1..32), the rest is the payload (copied to an aligned
 * buffer). A decoded step must satisfy every limit the decoder promises and re-encode
 * to the same bytes.
 * Run: tests/fuzz/run_fuzz.sh fuzz_tpwire SECONDS */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tpwire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > (1 << 16)) return 0;
    tpwire_limits lim = {.max_seqs = 1 + (data[0] & 7), .max_tokens = 64, .max_blocks = 8,
                         .kv_block = 1 + (data[0] >> 3), .n_vocab = 1000, .n_ctx = 128};
    size--;
    uint32_t *buf = malloc(size + 4);
    if (!buf) return 0;
    memcpy(buf, data + 1, size);
    engine_seq seqs[8];
    int n = -1;
    err e = {0};
    int rc = tpwire_step_decode((const uint8_t *)buf, size, &lim, seqs, &n, &e);
    if (rc) {
        if (rc != ERR_FORMAT || !e.msg[0] || n != 0) abort();
        free(buf);
        return 0;
    }
    if (n < 1 || n > lim.max_seqs) abort();
    int total = 0;
    for (int i = 0; i < n; i++) {
        const engine_seq *s = &seqs[i];
        if (s->n < 1 || s->pos < 0 || s->pos + s->n > lim.n_ctx || s->slot < 0 || s->slot >= lim.max_seqs) abort();
        for (int k = 0; k < s->n; k++)
            if (s->tokens[k] < 0 || s->tokens[k] >= lim.n_vocab) abort();
        for (int k = 0; k < i; k++)
            if (seqs[k].slot == s->slot) abort();
        total += s->n;
    }
    if (total > lim.max_tokens) abort();
    uint8_t *again = malloc(size + 4);
    if (!again) abort();
    const size_t len = tpwire_step_encode(again, size, seqs, n, lim.kv_block);
    if (len != size || memcmp(again, buf, size)) abort();
    free(again);
    free(buf);
    return 0;
}
