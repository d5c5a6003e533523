/* jsonv.c — JSON values with Python's semantics (see jsonv.h). */
#include "jsonv.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

/* ---------------------------------------------------------------- arena */

typedef struct jv_chunk {
    struct jv_chunk *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
} jv_chunk;

struct jv_arena {
    jv_chunk *head;
    size_t total, cap; /* bytes of chunks allocated so far, and the limit */
    int exhausted;
};

enum { JV_CHUNK = 64 * 1024 };

jv_arena *jv_arena_new(size_t cap_bytes) {
    jv_arena *a = calloc(1, sizeof *a);
    if (a) a->cap = cap_bytes;
    return a;
}

void jv_arena_free(jv_arena *a) {
    if (!a) return;
    for (jv_chunk *c = a->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    free(a);
}

void *jv_alloc(jv_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    jv_chunk *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t size = n > JV_CHUNK / 2 ? n : JV_CHUNK;
        if (a->exhausted || a->total + size > a->cap || size < n) {
            a->exhausted = 1;
            return NULL;
        }
        c = malloc(sizeof *c + size);
        if (!c) {
            a->exhausted = 1;
            return NULL;
        }
        c->size = size;
        c->used = 0;
        a->total += size;
        if (n > JV_CHUNK / 2 && a->head) {
            /* a big block gets its own chunk behind the current one, so the
             * current chunk's free tail stays usable */
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

int jv_arena_exhausted(const jv_arena *a) { return a->exhausted; }

const jv_str *jv_str_new(jv_arena *a, const char *p, size_t len) {
    jv_str *s = jv_alloc(a, sizeof *s + len + 1);
    if (!s) return NULL;
    s->len = len;
    if (len) memcpy(s->p, p, len);
    s->p[len] = '\0';
    return s;
}

jv_list *jv_list_new(jv_arena *a, size_t cap) {
    jv_list *l = jv_alloc(a, sizeof *l);
    if (!l) return NULL;
    l->n = 0;
    l->cap = cap;
    l->v = cap ? jv_alloc(a, cap * sizeof(jv)) : NULL;
    if (cap && !l->v) return NULL;
    return l;
}

int jv_list_push(jv_arena *a, jv_list *l, jv v) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 4;
        jv *nv = jv_alloc(a, nc * sizeof(jv));
        if (!nv) return -1;
        if (l->n) memcpy(nv, l->v, l->n * sizeof(jv));
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = v;
    return 0;
}

jv_dict *jv_dict_new(jv_arena *a, size_t cap) {
    jv_dict *d = jv_alloc(a, sizeof *d);
    if (!d) return NULL;
    d->n = 0;
    d->cap = cap;
    d->k = cap ? jv_alloc(a, cap * sizeof *d->k) : NULL;
    d->v = cap ? jv_alloc(a, cap * sizeof(jv)) : NULL;
    if (cap && (!d->k || !d->v)) return NULL;
    return d;
}

long jv_dict_find(const jv_dict *d, const char *k, size_t klen) {
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i]->len == klen && memcmp(d->k[i]->p, k, klen) == 0) return (long)i;
    return -1;
}

/* Appends without looking the key up (the caller checks duplicates later). */
static int dict_append(jv_arena *a, jv_dict *d, const jv_str *k, jv v) {
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 4;
        const jv_str **nk = jv_alloc(a, nc * sizeof *nk);
        jv *nv = jv_alloc(a, nc * sizeof(jv));
        if (!nk || !nv) return -1;
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof *nk);
            memcpy(nv, d->v, d->n * sizeof(jv));
        }
        d->k = nk;
        d->v = nv;
        d->cap = nc;
    }
    d->k[d->n] = k;
    d->v[d->n] = v;
    d->n++;
    return 0;
}

int jv_dict_set(jv_arena *a, jv_dict *d, const jv_str *k, jv v) {
    long at = jv_dict_find(d, k->p, k->len);
    if (at >= 0) {
        d->v[at] = v;
        return 0;
    }
    return dict_append(a, d, k, v);
}

/* ---------------------------------------------------------------- unicode */

int jv_utf8_next(const char *s, size_t n, uint32_t *cp) {
    int l = uni_decode((const uint8_t *)s, n, cp);
    if (*cp == UNI_INVALID) *cp = (uint8_t)s[0];
    return l;
}

size_t jv_utf8_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((uint8_t)s[i] & 0xC0) != 0x80) c++;
    return c;
}

int jv_py_isspace(uint32_t cp) {
    /* str.isspace(): bidi class WS/B/S or category Zs */
    if ((cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20)) return 1;
    if (cp < 0x85) return 0;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

int jv_py_isprintable(uint32_t cp) {
    if (cp == 0x20) return 1;
    if (cp < 0x7F) return cp > 0x20;
    /* not printable: categories C* and Z* (unassigned code points have no flags) */
    return (uni_flags(cp) & (UNI_L | UNI_N | UNI_M | UNI_P | UNI_S)) != 0;
}

/* ---------------------------------------------------------------- parse */

typedef struct jp {
    jv_arena *a;
    const char *s;
    size_t n, i;
    int max_depth;
    unsigned flags; /* JV_PARSE_* */
    err *e;
} jp;

static void jp_ws(jp *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
        p->i++;
}

static int jp_fail(jp *p, const char *what) {
    return err_set(p->e, ERR_FORMAT, "JSON: %s at byte %zu", what, p->i);
}

static int jp_hex4(jp *p, uint32_t *out) {
    if (p->n - p->i < 4) return -1;
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i + k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return -1;
    }
    p->i += 4;
    *out = v;
    return 0;
}

static int jp_string(jp *p, const jv_str **out) {
    p->i++; /* opening quote */
    /* The decoded string is never longer than its source text (an escape
     * shrinks or keeps its length), so it is decoded straight into an arena
     * block sized by a first scan to the closing quote: no temporary buffer. */
    size_t end = p->i;
    while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    size_t cap = (end < p->n ? end : p->n) - p->i;
    jv_str *str = jv_alloc(p->a, sizeof *str + cap + 1);
    if (!str) return err_set(p->e, ERR_NOMEM, "JSON: value too large");
    char *o = str->p;
    while (1) {
        if (p->i >= p->n) return jp_fail(p, "unterminated string");
        uint8_t c = (uint8_t)p->s[p->i];
        if (c == '"') { p->i++; break; }
        if (c < 0x20) return jp_fail(p, "control character in string");
        if (c == '\\') {
            if (p->i + 1 >= p->n) return jp_fail(p, "unterminated string");
            char x = p->s[p->i + 1];
            p->i += 2;
            switch (x) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '/': *o++ = '/'; break;
            case 'b': *o++ = '\b'; break;
            case 'f': *o++ = '\f'; break;
            case 'n': *o++ = '\n'; break;
            case 'r': *o++ = '\r'; break;
            case 't': *o++ = '\t'; break;
            case 'u': {
                uint32_t cp, lo;
                if (jp_hex4(p, &cp)) return jp_fail(p, "bad \\u escape");
                if (cp >= 0xD800 && cp < 0xDC00) {
                    if (p->n - p->i >= 6 && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u') {
                        p->i += 2;
                        if (jp_hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF) return jp_fail(p, "lone surrogate");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    } else return jp_fail(p, "lone surrogate");
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) return jp_fail(p, "lone surrogate");
                if (cp == 0 && (p->flags & JV_PARSE_NO_NUL)) return jp_fail(p, "\\u0000 in a string");
                o += uni_encode(cp, (uint8_t *)o);
                break;
            }
            default: return jp_fail(p, "bad escape");
            }
            continue;
        }
        uint32_t cp;
        int l = uni_decode((const uint8_t *)p->s + p->i, p->n - p->i, &cp);
        if (cp == UNI_INVALID) return jp_fail(p, "invalid UTF-8");
        memcpy(o, p->s + p->i, (size_t)l);
        o += l;
        p->i += (size_t)l;
    }
    str->len = (size_t)(o - str->p);
    str->p[str->len] = '\0';
    *out = str;
    return 0;
}

static int jp_value(jp *p, jv *out, int depth);

static int key_cmp(const void *x, const void *y) {
    const jv_str *a = *(const jv_str *const *)x, *b = *(const jv_str *const *)y;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->p, b->p, n);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

static int jp_check_duplicates(jp *p, const jv_dict *d) {
    if (d->n < 2) return 0;
    if (d->n <= 16) {
        for (size_t i = 1; i < d->n; i++)
            for (size_t j = 0; j < i; j++)
                if (!key_cmp(&d->k[i], &d->k[j])) return jp_fail(p, "duplicate object key");
        return 0;
    }
    const jv_str **ks = jv_alloc(p->a, d->n * sizeof *ks);
    if (!ks) return err_set(p->e, ERR_NOMEM, "JSON: out of memory");
    memcpy(ks, d->k, d->n * sizeof *ks);
    qsort(ks, d->n, sizeof *ks, key_cmp);
    for (size_t i = 1; i < d->n; i++)
        if (!key_cmp(&ks[i - 1], &ks[i])) return jp_fail(p, "duplicate object key");
    return 0;
}

static int jp_number(jp *p, jv *out) {
    size_t s = p->i;
    int is_float = 0;
    if (p->s[p->i] == '-') p->i++;
    if (p->i < p->n && p->s[p->i] == 'I' && !(p->flags & JV_PARSE_STRICT_NUMBERS)) {
        if (p->n - p->i >= 8 && memcmp(p->s + p->i, "Infinity", 8) == 0) {
            p->i += 8;
            *out = jv_float(-INFINITY);
            return 0;
        }
        return jp_fail(p, "bad number");
    }
    if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return jp_fail(p, "bad number");
    if (p->s[p->i] == '0') p->i++;
    else while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    if (p->i + 1 < p->n && p->s[p->i] == '.' && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9') {
        is_float = 1;
        p->i++;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        size_t j = p->i + 1;
        if (j < p->n && (p->s[j] == '+' || p->s[j] == '-')) j++;
        if (j < p->n && p->s[j] >= '0' && p->s[j] <= '9') {
            is_float = 1;
            p->i = j;
            while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
        }
    }
    char tmp[400];
    size_t len = p->i - s;
    if (len >= sizeof tmp) {
        /* Python keeps such integers exact; we cannot, so refuse rather than change them */
        return jp_fail(p, "number too long");
    }
    memcpy(tmp, p->s + s, len);
    tmp[len] = '\0';
    if (!is_float) {
        char *end;
        errno = 0;
        long long v = strtoll(tmp, &end, 10);
        if (errno == ERANGE) return jp_fail(p, "integer out of 64-bit range");
        *out = jv_int(v);
        return 0;
    }
    errno = 0;
    double f = strtod(tmp, NULL);
    /* RFC 8259 numbers are finite: an overflow (1e999) is refused, as
     * jansson and most JSON parsers do; an underflow rounds towards 0 */
    if ((p->flags & JV_PARSE_STRICT_NUMBERS) && errno == ERANGE && isinf(f)) return jp_fail(p, "number out of range");
    *out = jv_float(f);
    return 0;
}

static int jp_value(jp *p, jv *out, int depth) {
    jp_ws(p);
    if (p->i >= p->n) return jp_fail(p, "unexpected end");
    if (depth > p->max_depth) return jp_fail(p, "nesting too deep");
    char c = p->s[p->i];
    if (c == '{') {
        p->i++;
        jv_dict *d = jv_dict_new(p->a, 0);
        if (!d) return err_set(p->e, ERR_NOMEM, "JSON: out of memory");
        jp_ws(p);
        if (p->i < p->n && p->s[p->i] == '}') {
            p->i++;
        } else {
            while (1) {
                jp_ws(p);
                if (p->i >= p->n || p->s[p->i] != '"') return jp_fail(p, "expected a key");
                const jv_str *k;
                if (jp_string(p, &k)) return p->e ? (int)p->e->code : ERR_FORMAT;
                jp_ws(p);
                if (p->i >= p->n || p->s[p->i] != ':') return jp_fail(p, "expected ':'");
                p->i++;
                jv v;
                int rc = jp_value(p, &v, depth + 1);
                if (rc) return rc;
                if (p->flags & JV_PARSE_NO_DUPLICATES) {
                    /* appended unchecked; duplicates are found once the object is
                     * complete, in n log n (a per-key lookup would be n^2) */
                    if (dict_append(p->a, d, k, v)) return err_set(p->e, ERR_NOMEM, "JSON: out of memory");
                } else if (jv_dict_set(p->a, d, k, v)) return err_set(p->e, ERR_NOMEM, "JSON: out of memory");
                jp_ws(p);
                if (p->i < p->n && p->s[p->i] == ',') { p->i++; continue; }
                if (p->i < p->n && p->s[p->i] == '}') {
                    p->i++;
                    if ((p->flags & JV_PARSE_NO_DUPLICATES) && (rc = jp_check_duplicates(p, d))) return rc;
                    break;
                }
                return jp_fail(p, "expected ',' or '}'");
            }
        }
        out->type = JV_DICT;
        out->sub = 0;
        out->u.d = d;
        return 0;
    }
    if (c == '[') {
        p->i++;
        jv_list *l = jv_list_new(p->a, 0);
        if (!l) return err_set(p->e, ERR_NOMEM, "JSON: out of memory");
        jp_ws(p);
        if (p->i < p->n && p->s[p->i] == ']') {
            p->i++;
        } else {
            while (1) {
                jv v;
                int rc = jp_value(p, &v, depth + 1);
                if (rc) return rc;
                if (jv_list_push(p->a, l, v)) return err_set(p->e, ERR_NOMEM, "JSON: out of memory");
                jp_ws(p);
                if (p->i < p->n && p->s[p->i] == ',') { p->i++; continue; }
                if (p->i < p->n && p->s[p->i] == ']') { p->i++; break; }
                return jp_fail(p, "expected ',' or ']'");
            }
        }
        out->type = JV_LIST;
        out->sub = 0;
        out->u.l = l;
        return 0;
    }
    if (c == '"') {
        const jv_str *s;
        int rc = jp_string(p, &s);
        if (rc) return rc;
        *out = jv_strv(s);
        return 0;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return jp_number(p, out);
#define JP_WORD(w, val)                                                              \
    if (p->n - p->i >= sizeof(w) - 1 && memcmp(p->s + p->i, w, sizeof(w) - 1) == 0) { \
        p->i += sizeof(w) - 1;                                                       \
        *out = val;                                                                  \
        return 0;                                                                    \
    }
    JP_WORD("true", jv_bool(1));
    JP_WORD("false", jv_bool(0));
    JP_WORD("null", jv_none());
    if (!(p->flags & JV_PARSE_STRICT_NUMBERS)) {
        JP_WORD("NaN", jv_float(NAN));
        JP_WORD("Infinity", jv_float(INFINITY));
    }
#undef JP_WORD
    return jp_fail(p, "unexpected character");
}

int jv_parse_ex(jv_arena *a, const char *text, size_t len, int max_depth, unsigned flags, jv *out, size_t *err_at,
                err *e) {
    jp p = {.a = a, .s = text, .n = len, .i = 0, .max_depth = max_depth, .flags = flags, .e = e};
    int rc = jp_value(&p, out, 0);
    if (!rc) {
        jp_ws(&p);
        if (p.i != p.n) rc = jp_fail(&p, "extra data");
    }
    if (rc && err_at) *err_at = p.i;
    return rc;
}

int jv_parse(jv_arena *a, const char *text, size_t len, int max_depth, jv *out, err *e) {
    return jv_parse_ex(a, text, len, max_depth, 0, out, NULL, e);
}

/* ---------------------------------------------------------------- buffers */

void jv_buf_init(jv_buf *b, size_t max) {
    b->p = NULL;
    b->n = b->cap = 0;
    b->max = max;
    b->over = 0;
}

void jv_buf_free(jv_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

void jv_buf_put(jv_buf *b, const char *p, size_t n) {
    if (b->over) return;
    if (n > b->max - b->n || b->n + n + 1 < b->n) {
        b->over = 1;
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->over = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void jv_buf_puts(jv_buf *b, const char *s) { jv_buf_put(b, s, strlen(s)); }
void jv_buf_putc(jv_buf *b, char c) { jv_buf_put(b, &c, 1); }

/* ---------------------------------------------------------------- printing */

void jv_float_repr(jv_buf *b, double f) {
    if (isnan(f)) { jv_buf_puts(b, "nan"); return; }
    if (isinf(f)) { jv_buf_puts(b, f < 0 ? "-inf" : "inf"); return; }
    if (f == 0) { jv_buf_puts(b, signbit(f) ? "-0.0" : "0.0"); return; }
    /* shortest digits that round-trip, as Python's repr does */
    char tmp[40];
    int prec;
    for (prec = 0; prec < 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec, f);
        if (strtod(tmp, NULL) == f) break;
    }
    /* tmp = [-]d[.ddd]e[+-]XX */
    char digits[24];
    int nd = 0, neg = 0;
    const char *q = tmp;
    if (*q == '-') { neg = 1; q++; }
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9') digits[nd++] = *q;
    int exp10 = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (neg) jv_buf_putc(b, '-');
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            jv_buf_puts(b, "0.");
            for (int k = 0; k < -exp10 - 1; k++) jv_buf_putc(b, '0');
            jv_buf_put(b, digits, (size_t)nd);
        } else {
            int intd = exp10 + 1;
            for (int k = 0; k < intd; k++) jv_buf_putc(b, k < nd ? digits[k] : '0');
            jv_buf_putc(b, '.');
            if (nd > intd) jv_buf_put(b, digits + intd, (size_t)(nd - intd));
            else jv_buf_putc(b, '0');
        }
    } else {
        jv_buf_putc(b, digits[0]);
        if (nd > 1) {
            jv_buf_putc(b, '.');
            jv_buf_put(b, digits + 1, (size_t)(nd - 1));
        }
        char e[16];
        snprintf(e, sizeof e, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
        jv_buf_puts(b, e);
    }
}

static void put_int(jv_buf *b, int64_t i) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%lld", (long long)i);
    jv_buf_puts(b, tmp);
}

static void dump_str(jv_buf *b, const char *s, size_t n, int ensure_ascii) {
    jv_buf_putc(b, '"');
    size_t run = 0; /* start of bytes copied as they are */
    for (size_t i = 0; i < n;) {
        uint8_t c = (uint8_t)s[i];
        const char *esc = NULL;
        char tmp[16];
        size_t adv = 1;
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c == '\b') esc = "\\b";
        else if (c == '\f') esc = "\\f";
        else if (c < 0x20) { snprintf(tmp, sizeof tmp, "\\u%04x", c); esc = tmp; }
        else if (c >= 0x80 && ensure_ascii) {
            uint32_t cp;
            adv = (size_t)jv_utf8_next(s + i, n - i, &cp);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else {
                snprintf(tmp, sizeof tmp, "\\u%04x", cp);
            }
            esc = tmp;
        }
        if (esc) {
            jv_buf_put(b, s + run, i - run);
            jv_buf_puts(b, esc);
            i += adv;
            run = i;
        } else {
            i++;
        }
    }
    jv_buf_put(b, s + run, n - run);
    jv_buf_putc(b, '"');
}

typedef struct dumpcfg {
    const char *indent, *item_sep, *key_sep;
    int sort_keys, ensure_ascii;
    err *e;
} dumpcfg;

static void newline_indent(jv_buf *b, const dumpcfg *c, int level) {
    jv_buf_putc(b, '\n');
    for (int k = 0; k < level; k++) jv_buf_puts(b, c->indent);
}

static int strcmp_keys(const jv_str *a, const jv_str *b) {
    size_t n = a->len < b->len ? a->len : b->len;
    int r = memcmp(a->p, b->p, n);
    if (r) return r;
    return a->len < b->len ? -1 : a->len > b->len;
}

static int dump_rec(jv_buf *b, jv v, const dumpcfg *c, int level) {
    if (level > 1000) return err_set(c->e, ERR_INVALID, "tojson: nesting too deep");
    switch ((jv_type)v.type) {
    case JV_NONE: jv_buf_puts(b, "null"); return 0;
    case JV_BOOL: jv_buf_puts(b, v.u.i ? "true" : "false"); return 0;
    case JV_INT: put_int(b, v.u.i); return 0;
    case JV_FLOAT:
        if (isnan(v.u.f)) jv_buf_puts(b, "NaN");
        else if (isinf(v.u.f)) jv_buf_puts(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else jv_float_repr(b, v.u.f);
        return 0;
    case JV_STR: dump_str(b, v.u.s->p, v.u.s->len, c->ensure_ascii); return 0;
    case JV_LIST: {
        const jv_list *l = v.u.l;
        if (v.sub == 2) return err_set(c->e, ERR_INVALID, "tojson: Object of type generator is not JSON serializable");
        if (l->n == 0) { jv_buf_puts(b, "[]"); return 0; }
        jv_buf_putc(b, '[');
        for (size_t i = 0; i < l->n; i++) {
            if (i) jv_buf_puts(b, c->item_sep);
            if (c->indent) newline_indent(b, c, level + 1);
            int rc = dump_rec(b, l->v[i], c, level + 1);
            if (rc) return rc;
        }
        if (c->indent) newline_indent(b, c, level);
        jv_buf_putc(b, ']');
        return 0;
    }
    case JV_DICT: {
        const jv_dict *d = v.u.d;
        if (d->n == 0) { jv_buf_puts(b, "{}"); return 0; }
        /* order: insertion, or sorted (a small index sort; dicts here are small) */
        size_t order_small[64];
        size_t *order = d->n <= 64 ? order_small : malloc(d->n * sizeof *order);
        if (!order) return err_set(c->e, ERR_NOMEM, "tojson: out of memory");
        for (size_t i = 0; i < d->n; i++) order[i] = i;
        if (c->sort_keys) {
            for (size_t i = 1; i < d->n; i++) { /* insertion sort, stable */
                size_t x = order[i], j = i;
                while (j > 0 && strcmp_keys(d->k[order[j - 1]], d->k[x]) > 0) { order[j] = order[j - 1]; j--; }
                order[j] = x;
            }
        }
        jv_buf_putc(b, '{');
        int rc = 0;
        for (size_t i = 0; i < d->n && !rc; i++) {
            if (i) jv_buf_puts(b, c->item_sep);
            if (c->indent) newline_indent(b, c, level + 1);
            dump_str(b, d->k[order[i]]->p, d->k[order[i]]->len, c->ensure_ascii);
            jv_buf_puts(b, c->key_sep);
            rc = dump_rec(b, d->v[order[i]], c, level + 1);
        }
        if (order != order_small) free(order);
        if (rc) return rc;
        if (c->indent) newline_indent(b, c, level);
        jv_buf_putc(b, '}');
        return 0;
    }
    case JV_UNDEF: return err_set(c->e, ERR_INVALID, "tojson: Object of type Undefined is not JSON serializable");
    case JV_OBJ: break;
    }
    return err_set(c->e, ERR_INVALID, "tojson: object is not JSON serializable");
}

int jv_dump(jv_buf *b, jv v, const char *indent, const char *item_sep, const char *key_sep, int sort_keys,
            int ensure_ascii, err *e) {
    dumpcfg c = {indent, item_sep ? item_sep : (indent ? "," : ", "), key_sep ? key_sep : ": ", sort_keys,
                 ensure_ascii, e};
    return dump_rec(b, v, &c, 0);
}

static void repr_str(jv_buf *b, const char *s, size_t n) {
    char quote = '\'';
    if (memchr(s, '\'', n) && !memchr(s, '"', n)) quote = '"';
    jv_buf_putc(b, quote);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = jv_utf8_next(s + i, n - i, &cp);
        char tmp[16];
        if (cp == (uint32_t)quote || cp == '\\') { jv_buf_putc(b, '\\'); jv_buf_putc(b, (char)cp); }
        else if (cp == '\t') jv_buf_puts(b, "\\t");
        else if (cp == '\n') jv_buf_puts(b, "\\n");
        else if (cp == '\r') jv_buf_puts(b, "\\r");
        else if (jv_py_isprintable(cp)) jv_buf_put(b, s + i, (size_t)l);
        else {
            if (cp <= 0xFF) snprintf(tmp, sizeof tmp, "\\x%02x", cp);
            else if (cp <= 0xFFFF) snprintf(tmp, sizeof tmp, "\\u%04x", cp);
            else snprintf(tmp, sizeof tmp, "\\U%08x", cp);
            jv_buf_puts(b, tmp);
        }
        i += (size_t)l;
    }
    jv_buf_putc(b, quote);
}

static void repr_rec(jv_buf *b, jv v, int level) {
    if (level > 200) { jv_buf_puts(b, "..."); return; }
    switch ((jv_type)v.type) {
    case JV_UNDEF: jv_buf_puts(b, "Undefined"); return;
    case JV_NONE: jv_buf_puts(b, "None"); return;
    case JV_BOOL: jv_buf_puts(b, v.u.i ? "True" : "False"); return;
    case JV_INT: put_int(b, v.u.i); return;
    case JV_FLOAT: jv_float_repr(b, v.u.f); return;
    case JV_STR: repr_str(b, v.u.s->p, v.u.s->len); return;
    case JV_LIST: {
        int tuple = v.sub == 1;
        if (v.sub == 2) { jv_buf_puts(b, "<generator object>"); return; }
        jv_buf_putc(b, tuple ? '(' : '[');
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) jv_buf_puts(b, ", ");
            repr_rec(b, v.u.l->v[i], level + 1);
        }
        if (tuple && v.u.l->n == 1) jv_buf_putc(b, ',');
        jv_buf_putc(b, tuple ? ')' : ']');
        return;
    }
    case JV_DICT:
        jv_buf_putc(b, '{');
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i) jv_buf_puts(b, ", ");
            repr_str(b, v.u.d->k[i]->p, v.u.d->k[i]->len);
            jv_buf_puts(b, ": ");
            repr_rec(b, v.u.d->v[i], level + 1);
        }
        jv_buf_putc(b, '}');
        return;
    case JV_OBJ: jv_buf_puts(b, "<object>"); return;
    }
}

void jv_repr(jv_buf *b, jv v) { repr_rec(b, v, 0); }

void jv_to_str(jv_buf *b, jv v) {
    if (v.type == JV_STR) jv_buf_put(b, v.u.s->p, v.u.s->len);
    else if (v.type == JV_UNDEF) return;
    else repr_rec(b, v, 0);
}

/* ---------------------------------------------------------------- semantics */

int jv_truthy(jv v) {
    switch ((jv_type)v.type) {
    case JV_UNDEF:
    case JV_NONE: return 0;
    case JV_BOOL:
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0;
    case JV_STR: return v.u.s->len != 0;
    case JV_LIST: return v.sub == 2 || v.u.l->n != 0;
    case JV_DICT: return v.u.d->n != 0;
    case JV_OBJ: return 1;
    }
    return 0;
}

static int is_num(jv v) { return v.type == JV_BOOL || v.type == JV_INT || v.type == JV_FLOAT; }

int jv_equal(jv a, jv b) {
    if (is_num(a) && is_num(b)) {
        if (a.type != JV_FLOAT && b.type != JV_FLOAT) return a.u.i == b.u.i;
        double x = a.type == JV_FLOAT ? a.u.f : (double)a.u.i;
        double y = b.type == JV_FLOAT ? b.u.f : (double)b.u.i;
        return x == y;
    }
    if (a.type != b.type) return 0;
    switch ((jv_type)a.type) {
    case JV_UNDEF:
    case JV_NONE: return 1;
    case JV_STR: return a.u.s->len == b.u.s->len && memcmp(a.u.s->p, b.u.s->p, a.u.s->len) == 0;
    case JV_LIST:
        if (a.sub != b.sub || a.u.l->n != b.u.l->n) return 0;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jv_equal(a.u.l->v[i], b.u.l->v[i])) return 0;
        return 1;
    case JV_DICT:
        if (a.u.d->n != b.u.d->n) return 0;
        for (size_t i = 0; i < a.u.d->n; i++) {
            long j = jv_dict_find(b.u.d, a.u.d->k[i]->p, a.u.d->k[i]->len);
            if (j < 0 || !jv_equal(a.u.d->v[i], b.u.d->v[j])) return 0;
        }
        return 1;
    case JV_OBJ: return a.u.o == b.u.o;
    default: return 0;
    }
}
