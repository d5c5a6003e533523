/* fuzz_parse — libFuzzer target for the output parsers (appliance/parse.c).
 * Byte 0 picks the format (bits 0-1 and 4-5), the "thinking" flag (bit 2), a
 * small or large buffer (bit 3) and (bit 6) a string-parameter hook
 * (parse_set_str_param: keys starting with 's' of functions starting with 'f');
 * byte 1 seeds the chunk sizes. The rest is model output, fed once whole and
 * once in chunks: the two event streams must agree (streaming safety), or the
 * target aborts. Run: tests/fuzz/run_fuzz.sh fuzz_parse SECONDS */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "output_parse.h"

typedef struct acc {
    char *buf; /* a canonical transcript: type byte + payload per event, texts merged */
    size_t n, cap;
    int last;
    int open;   /* a tool call is between START and END */
    int ncalls; /* calls started */
} acc;

static void acc_put(acc *a, const char *p, size_t n) {
    if (a->n + n > a->cap) {
        size_t nc = a->cap ? a->cap : 1024;
        while (nc < a->n + n) nc *= 2;
        a->buf = realloc(a->buf, nc);
        if (!a->buf) abort();
        a->cap = nc;
    }
    memcpy(a->buf + a->n, p, n);
    a->n += n;
}

static void sink(void *user, const parse_event *ev) {
    acc *a = user;
    char tag = (char)('A' + ev->type);
    int text = ev->type == PARSE_EV_CONTENT || ev->type == PARSE_EV_REASONING || ev->type == PARSE_EV_TOOL_ARGS;
    if (!text || a->last != ev->type) acc_put(a, &tag, 1);
    if (text) acc_put(a, ev->text, ev->len);
    if (ev->type == PARSE_EV_TOOL_START) acc_put(a, ev->name, strlen(ev->name) + 1);
    a->last = text ? (int)ev->type : -1;
    /* shape: START ARGS* END per call, indices in order, nothing else inside a
     * call (a consumer keeps the call open by its index), no empty deltas */
    if (text && ev->len == 0) abort();
    if (ev->type == PARSE_EV_TOOL_START) {
        if (a->open || ev->index != a->ncalls) abort();
        a->open = 1;
        a->ncalls++;
    } else if (ev->type == PARSE_EV_TOOL_ARGS || ev->type == PARSE_EV_TOOL_END) {
        if (!a->open || ev->index != a->ncalls - 1) abort();
        if (ev->type == PARSE_EV_TOOL_END) a->open = 0;
    } else if (a->open) abort();
}

static int str_param(void *u, const char *fn, const char *key, size_t kl) {
    (void)u;
    return fn && fn[0] == 'f' && kl > 0 && key[0] == 's';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    parse_format fmt = (parse_format)(((data[0] & 3) | (data[0] >> 2 & 12)) % PARSE_NFORMATS);
    int thinking = (data[0] >> 2) & 1;
    size_t max_text = (data[0] & 8) ? 64 : 4096;
    unsigned seed = data[1];
    const char *text = (const char *)data + 2;
    size_t n = size - 2;

    acc whole = {0}, chunked = {0};
    whole.last = chunked.last = -1;
    parse *p;
    err e = {0};
    if (parse_create(&p, fmt, thinking, max_text, &e)) return 0;
    if (data[0] & 0x40) parse_set_str_param(p, str_param, NULL);
    parse_feed(p, text, n, sink, &whole);
    parse_finish(p, sink, &whole);
    if (whole.open || parse_tool_calls(p) != whole.ncalls) abort();
    parse_free(p);

    if (parse_create(&p, fmt, thinking, max_text, &e)) abort();
    if (data[0] & 0x40) parse_set_str_param(p, str_param, NULL);
    for (size_t at = 0; at < n;) {
        seed = seed * 1103515245u + 12345u;
        size_t k = 1 + (seed >> 16) % 9;
        if (k > n - at) k = n - at;
        parse_feed(p, text + at, k, sink, &chunked);
        at += k;
    }
    parse_finish(p, sink, &chunked);
    if (chunked.open || parse_tool_calls(p) != chunked.ncalls) abort();
    parse_free(p);
    /* a full buffer gives bytes up early, so only the roomy configuration
     * promises split independence */
    if (max_text == 4096 && (whole.n != chunked.n || (whole.n && memcmp(whole.buf, chunked.buf, whole.n) != 0))) abort();
    free(whole.buf);
    free(chunked.buf);
    return 0;
}
