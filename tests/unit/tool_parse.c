/* tool_parse — runs the output parser (parse.h) for the Python parity tests.
 *
 *   tool_parse FORMAT CHUNK           reads one generated text from stdin
 *   tool_parse FORMAT CHUNK --batch   reads records "<len>\n<len bytes>" until EOF
 *   tool_parse --detect TEMPLATE      prints the format parse_detect picks for a
 *                                     chat template file (no vocabulary markers)
 *
 * FORMAT: plain | qwen3 | qwen3-coder | harmony | deepseek | deepseek-r1 (a "+think" suffix opens the
 * parser in reasoning mode). CHUNK: bytes per parse_feed call (>= 1), so the
 * same text can be checked under different stream splits.
 *
 * Output: one JSON object per event, one per line:
 *   {"t":"content"|"reasoning","i":N,"x":"delta"}
 *   {"t":"tool_start","i":N,"id":"call_..","name":"f"}
 *   {"t":"tool_args","i":N,"x":"delta"}   {"t":"tool_end","i":N}
 * and, in batch mode, a line "END" after each record. Bytes >= 0x80 are written
 * as they are (a delta that split a UTF-8 sequence shows up as invalid UTF-8
 * on the reader's side, which is what the test wants to see). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "output_parse.h"

static void put_json_str(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void on_event(void *user, const parse_event *ev) {
    (void)user;
    static const char *const names[] = {"content", "reasoning", "tool_start", "tool_args", "tool_end"};
    printf("{\"t\":\"%s\",\"i\":%d", names[ev->type], ev->index);
    if (ev->type == PARSE_EV_TOOL_START) {
        printf(",\"id\":");
        put_json_str(ev->id, strlen(ev->id));
        printf(",\"name\":");
        put_json_str(ev->name, strlen(ev->name));
    } else if (ev->type != PARSE_EV_TOOL_END) {
        printf(",\"x\":");
        put_json_str(ev->text, ev->len);
    }
    printf("}\n");
}

/* Parses one text with a fresh parser; 0 or 1 on a setup error. */
static int run_one(parse_format fmt, int thinking, size_t chunk, const char *text, size_t len) {
    parse *p;
    err e = {0};
    if (parse_create(&p, fmt, thinking, 1 << 20, &e)) {
        fprintf(stderr, "parse_create: %s\n", e.msg);
        return 1;
    }
    for (size_t off = 0; off < len; off += chunk)
        parse_feed(p, text + off, len - off < chunk ? len - off : chunk, on_event, NULL);
    parse_finish(p, on_event, NULL);
    parse_free(p);
    return 0;
}

static char *read_n(size_t n) {
    char *buf = malloc(n ? n : 1);
    if (buf && fread(buf, 1, n, stdin) != n) {
        free(buf);
        return NULL;
    }
    return buf;
}

static const char *const fmt_names[PARSE_NFORMATS] = {"plain", "qwen3", "qwen3-coder", "harmony", "deepseek",
                                                      "deepseek-r1", "deepseek-v3.2"};

static int detect(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    printf("%s\n", fmt_names[parse_detect(buf, n, 0)]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--detect")) return detect(argv[2]);
    if (argc < 3) {
        fprintf(stderr, "usage: tool_parse plain|qwen3|qwen3-coder|harmony|deepseek|deepseek-r1|deepseek-v3.2[+think] CHUNK [--batch]\n");
        return 2;
    }
    char fname[64];
    snprintf(fname, sizeof fname, "%s", argv[1]);
    int thinking = 0;
    char *plus = strchr(fname, '+');
    if (plus && !strcmp(plus, "+think")) {
        thinking = 1;
        *plus = '\0';
    }
    parse_format fmt;
    if (!strcmp(fname, "plain")) fmt = PARSE_PLAIN;
    else if (!strcmp(fname, "qwen3")) fmt = PARSE_QWEN3;
    else if (!strcmp(fname, "qwen3-coder")) fmt = PARSE_QWEN3_CODER;
    else if (!strcmp(fname, "harmony")) fmt = PARSE_HARMONY;
    else if (!strcmp(fname, "deepseek")) fmt = PARSE_DEEPSEEK;
    else if (!strcmp(fname, "deepseek-r1")) fmt = PARSE_DEEPSEEK_R1;
    else if (!strcmp(fname, "deepseek-v3.2")) fmt = PARSE_DEEPSEEK_V32;
    else {
        fprintf(stderr, "unknown format %s\n", argv[1]);
        return 2;
    }
    long chunk = strtol(argv[2], NULL, 10);
    if (chunk < 1) {
        fprintf(stderr, "CHUNK must be >= 1\n");
        return 2;
    }
    int batch = argc >= 4 && !strcmp(argv[3], "--batch");

    if (!batch) {
        size_t cap = 1 << 16, n = 0, got;
        char *text = malloc(cap);
        while (text && (got = fread(text + n, 1, cap - n, stdin)) > 0) {
            n += got;
            if (n == cap) {
                char *q = realloc(text, cap *= 2);
                if (!q) free(text);
                text = q;
            }
        }
        if (!text) return 1;
        int rc = run_one(fmt, thinking, (size_t)chunk, text, n);
        free(text);
        return rc;
    }
    char head[32];
    while (fgets(head, sizeof head, stdin)) {
        char *end;
        unsigned long n = strtoul(head, &end, 10);
        if (end == head || *end != '\n' || n > (1ul << 26)) {
            fprintf(stderr, "bad record header\n");
            return 1;
        }
        char *text = read_n(n);
        if (!text) {
            fprintf(stderr, "short record\n");
            return 1;
        }
        int rc = run_one(fmt, thinking, (size_t)chunk, text, n);
        free(text);
        if (rc) return rc;
        printf("END\n");
    }
    return 0;
}
