/* sha256.c — see sha256.h. */
#include "sha256.h"

#include <bearssl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(sizeof(br_sha256_context) <= sizeof(sha256_ctx), "sha256_ctx too small for br_sha256_context");

void sha256_init(sha256_ctx *c) { br_sha256_init((br_sha256_context *)c); }
void sha256_update(sha256_ctx *c, const void *data, size_t n) { br_sha256_update((br_sha256_context *)c, data, n); }
void sha256_final(sha256_ctx *c, uint8_t out[32]) { br_sha256_out((const br_sha256_context *)c, out); }

void sha256_of(const void *data, size_t n, uint8_t out[32]) {
    sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, data, n);
    sha256_final(&c, out);
}

void sha256_hex(const uint8_t d[32], char out[65]) {
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[64] = 0;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

int sha256_parse_hex(const char *s, size_t n, uint8_t out[32]) {
    if (n != 64) return -1;
    for (int i = 0; i < 32; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int sha256_file(const char *path, uint8_t out[32], err *e) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(e, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    enum { CHUNK = 8 << 20 };
    uint8_t *buf = malloc(CHUNK);
    if (!buf) { close(fd); return err_set(e, ERR_NOMEM, "out of memory"); }
    sha256_ctx c;
    sha256_init(&c);
    int rc = 0;
    for (;;) {
        ssize_t got = read(fd, buf, CHUNK);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) { rc = err_set(e, ERR_IO, "%s: read failed: %s", path, strerror(errno)); break; }
        if (got == 0) break;
        sha256_update(&c, buf, (size_t)got);
    }
    free(buf);
    close(fd);
    if (!rc) sha256_final(&c, out);
    return rc;
}

/* ---- manifests ---- */

#define MANIFEST_MAX_BYTES (16u << 20)
#define MANIFEST_MAX_LINE 4096
#define MANIFEST_MAX_ENTRIES 65536

void sha256_manifest_free(sha256_manifest *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) {
        free(m->entries[i].name);
        free(m->entries[i].path);
    }
    free(m->entries);
    free(m);
}

/* "\\" -> '\', "\n" -> newline; any other escape is an error. Returns the length or -1. */
static long unescape(char *s, size_t n) {
    size_t w = 0;
    for (size_t r = 0; r < n; r++) {
        if (s[r] != '\\') { s[w++] = s[r]; continue; }
        if (++r >= n) return -1;
        if (s[r] == '\\') s[w++] = '\\';
        else if (s[r] == 'n') s[w++] = '\n';
        else return -1;
    }
    return (long)w;
}

static int bad(err *e, const char *name, int line, const char *why) {
    return err_set(e, ERR_FORMAT, "%s:%d: %s", name, line, why);
}

int sha256_manifest_parse(sha256_manifest **out, const char *text, size_t len, const char *name, const char *dir,
                          err *e) {
    *out = NULL;
    if (len > MANIFEST_MAX_BYTES) return err_set(e, ERR_FORMAT, "%s: larger than 16 MiB", name);
    sha256_manifest *m = calloc(1, sizeof *m);
    if (!m) return err_set(e, ERR_NOMEM, "out of memory");
    int cap = 0, line = 0, rc = 0;
    char buf[MANIFEST_MAX_LINE + 1];
    size_t i = 0;
    while (i < len && !rc) {
        line++;
        size_t n = 0;
        while (i < len && text[i] != '\n') {
            if (n >= MANIFEST_MAX_LINE) { rc = bad(e, name, line, "line longer than 4096 bytes"); break; }
            if (!text[i]) { rc = bad(e, name, line, "NUL byte"); break; }
            buf[n++] = text[i++];
        }
        if (rc) break;
        i++;
        buf[n] = 0;
        if (n == 0) continue; /* blank line */
        char *p = buf;
        int escaped = 0;
        if (*p == '\\') { escaped = 1; p++; n--; }
        uint8_t d[32];
        if (n < 67 || sha256_parse_hex(p, 64, d) || p[64] != ' ' || (p[65] != ' ' && p[65] != '*')) {
            rc = bad(e, name, line, "want 64 hex digits, a blank, ' ' or '*', then the file name (sha256sum format)");
            break;
        }
        char *fname = p + 66;
        size_t fl = n - 66;
        if (escaped) {
            long u = unescape(fname, fl);
            if (u < 0) { rc = bad(e, name, line, "bad escape in the file name (only \\\\ and \\n)"); break; }
            fl = (size_t)u;
            fname[fl] = 0;
        }
        if (fl == 0 || memchr(fname, 0, fl)) { rc = bad(e, name, line, "empty file name"); break; }
        for (int k = 0; k < m->n; k++)
            if (strlen(m->entries[k].name) == fl && !memcmp(m->entries[k].name, fname, fl)) {
                rc = bad(e, name, line, "file listed twice");
                break;
            }
        if (rc) break;
        if (m->n >= MANIFEST_MAX_ENTRIES) { rc = bad(e, name, line, "more than 65536 entries"); break; }
        if (m->n == cap) {
            int nc = cap ? cap * 2 : 16;
            sha256_entry *ne = realloc(m->entries, (size_t)nc * sizeof *ne);
            if (!ne) { rc = err_set(e, ERR_NOMEM, "out of memory"); break; }
            m->entries = ne;
            cap = nc;
        }
        sha256_entry *en = &m->entries[m->n];
        memcpy(en->digest, d, 32);
        en->name = strndup(fname, fl);
        size_t dl = dir ? strlen(dir) : 0;
        en->path = malloc(dl + fl + 2);
        if (!en->name || !en->path) {
            free(en->name);
            free(en->path);
            rc = err_set(e, ERR_NOMEM, "out of memory");
            break;
        }
        if (fname[0] == '/' || !dl) snprintf(en->path, dl + fl + 2, "%s", en->name);
        else snprintf(en->path, dl + fl + 2, "%s/%s", dir, en->name);
        m->n++;
    }
    if (rc) { sha256_manifest_free(m); return rc; }
    *out = m;
    return 0;
}

int sha256_manifest_load(sha256_manifest **out, const char *path, err *e) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(e, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = malloc(MANIFEST_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MANIFEST_MAX_BYTES + 1, f) : 0;
    int rerr = ferror(f);
    fclose(f);
    if (!buf) return err_set(e, ERR_NOMEM, "out of memory");
    int rc;
    if (rerr) rc = err_set(e, ERR_IO, "%s: read error", path);
    else {
        char dir[4096] = "";
        const char *slash = strrchr(path, '/');
        if (slash && (size_t)(slash - path) < sizeof dir)
            snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
        rc = sha256_manifest_parse(out, buf, n, path, dir, e);
    }
    free(buf);
    return rc;
}

const sha256_entry *sha256_manifest_find(const sha256_manifest *m, const char *file) {
    struct stat fs, es;
    int have = stat(file, &fs) == 0;
    for (int i = 0; i < m->n; i++)
        if (have && stat(m->entries[i].path, &es) == 0 && es.st_dev == fs.st_dev && es.st_ino == fs.st_ino)
            return &m->entries[i];
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->entries[i].path, file)) return &m->entries[i];
    return NULL;
}
