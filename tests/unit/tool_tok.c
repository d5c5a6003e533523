/* tool_tok — drives the tokenizer for the Python tests (tests/tok/).
 *
 *   tool_tok MODEL.gguf load               prints "ok vocab=N bos=B eos=E add_bos=A" or "error CODE: message"
 *   tool_tok MODEL.gguf encode [flags]     stdin: one hex-encoded string per line;
 *                                          stdout: one line of space-separated ids each
 *                                          (or "error: message"). flags: special (parse
 *                                          special tokens), bos (add BOS)
 *   tool_tok MODEL.gguf decode [special]   stdin: lines of ids; stdout: hex of tok_decode
 *                                          (special=0, or 1 with the flag) and of the
 *                                          streamed text, "hexA hexB"
 *   tool_tok MODEL.gguf bench FILE [reps]  encodes FILE reps times on this thread; prints
 *                                          "bench bytes=N tokens=T seconds=S MBps=X"
 * Hex keeps arbitrary bytes (NUL, invalid UTF-8, newlines) safe on a line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "tok.h"

static int hexv(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void put_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) printf("%02x", (unsigned char)s[i]);
}

static char *read_line(FILE *f, size_t *len)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t r = getline(&line, &cap, f);
    if (r < 0) {
        free(line);
        return NULL;
    }
    while (r > 0 && (line[r - 1] == '\n' || line[r - 1] == '\r')) line[--r] = 0;
    *len = (size_t)r;
    return line;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: tool_tok MODEL.gguf load|encode|decode|bench ...\n");
        return 2;
    }
    err e = {0};
    gguf_file *g = NULL;
    tok *t = NULL;
    if (gguf_open(&g, argv[1], &e) || tok_load(&t, g, &e)) {
        printf("error %s: %s\n", err_code_name(e.code), e.msg);
        gguf_close(g);
        return strcmp(argv[2], "load") == 0 ? 0 : 1;
    }
    const char *mode = argv[2];
    int rc = 0;
    if (strcmp(mode, "load") == 0) {
        printf("ok vocab=%d bos=%d eos=%d add_bos=%d\n", tok_vocab_size(t), tok_bos(t), tok_eos(t), tok_add_bos(t));
    } else if (strcmp(mode, "encode") == 0) {
        int special = 0, bos = 0;
        for (int i = 3; i < argc; i++) {
            if (strcmp(argv[i], "special") == 0) special = 1;
            if (strcmp(argv[i], "bos") == 0) bos = 1;
        }
        size_t len;
        char *line;
        while ((line = read_line(stdin, &len))) {
            size_t n = len / 2;
            char *buf = malloc(n + 1);
            for (size_t i = 0; i < n; i++) buf[i] = (char)(hexv(line[2 * i]) * 16 + hexv(line[2 * i + 1]));
            int cap = (int)tok_max_ids(n);
            int32_t *ids = malloc((size_t)cap * sizeof *ids);
            err le = {0};
            int k = tok_encode(t, buf, n, bos, special, ids, cap, &le);
            if (k < 0) {
                printf("error: %s\n", le.msg);
            } else {
                for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
                printf("\n");
            }
            fflush(stdout);
            free(ids);
            free(buf);
            free(line);
        }
    } else if (strcmp(mode, "decode") == 0) {
        int dec_special = argc > 3 && strcmp(argv[3], "special") == 0;
        size_t len;
        char *line;
        while ((line = read_line(stdin, &len))) {
            int cap = (int)len / 2 + 2, n = 0;
            int32_t *ids = malloc((size_t)cap * sizeof *ids);
            char *p = line;
            while (*p && n < cap) {
                char *end;
                long v = strtol(p, &end, 10);
                if (end == p) break;
                ids[n++] = (int32_t)v;
                p = end;
            }
            size_t need = tok_decode(t, ids, n, NULL, 0, dec_special);
            char *out = malloc(need + 1);
            tok_decode(t, ids, n, out, need + 1, dec_special);
            put_hex(out, need);
            printf(" ");
            tok_stream st;
            tok_stream_init(&st);
            char chunk[64 + 8192];
            for (int i = 0; i < n; i++) {
                size_t w = tok_stream_feed(t, &st, ids[i], chunk, sizeof chunk);
                put_hex(chunk, w);
            }
            put_hex(chunk, tok_stream_flush(&st, chunk, sizeof chunk));
            printf("\n");
            fflush(stdout);
            free(out);
            free(ids);
            free(line);
        }
    } else if (strcmp(mode, "bench") == 0 && argc >= 4) {
        FILE *f = fopen(argv[3], "rb");
        if (!f) {
            printf("error: cannot open the bench file\n");
            rc = 1;
        } else {
            fseek(f, 0, SEEK_END);
            long n = ftell(f);
            fseek(f, 0, SEEK_SET);
            char *buf = malloc((size_t)n + 1);
            size_t got = fread(buf, 1, (size_t)n, f);
            fclose(f);
            int reps = argc >= 5 ? atoi(argv[4]) : 3;
            int cap = (int)tok_max_ids(got);
            int32_t *ids = malloc((size_t)cap * sizeof *ids);
            int k = 0;
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            for (int r = 0; r < reps; r++) k = tok_encode(t, buf, got, 0, 0, ids, cap, &e);
            clock_gettime(CLOCK_MONOTONIC, &b);
            double s = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
            printf("bench bytes=%zu tokens=%d seconds=%.4f MBps=%.2f\n", got, k, s / reps,
                   (double)got * reps / s / 1e6);
            free(ids);
            free(buf);
        }
    } else {
        fprintf(stderr, "unknown mode\n");
        rc = 2;
    }
    tok_free(t);
    gguf_close(g);
    return rc;
}
