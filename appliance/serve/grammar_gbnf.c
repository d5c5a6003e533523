/* grammar_gbnf.c — llama.cpp's GBNF text to rules.
 *
 *   name ::= alternative | alternative ...        (one rule per line; the start rule is root)
 *   "literal" with \n \r \t \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH escapes, [a-z] [^...] classes,
 *   . (any code point), rule names, ( ... ) groups, * + ? {m} {m,} {m,n}, # comments.
 * Newlines end a rule except inside parentheses and right after ::= or |, as in llama.cpp.
 * Refused with the line and column: token references (<...>), undefined or twice-defined
 * rules, a missing root, counts above opts.max_repeat, nesting deeper than 200. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar_int.h"
#include "unicode.h"

typedef struct gp {
    gb *b;
    const unsigned char *s;
    size_t n, i;
    int depth;
    /* rule names -> ids */
    int32_t *tab;
    uint32_t tab_cap;
    uint8_t *defined;
    int32_t cap_defined;
} gp;

static int32_t gp_fail(gp *p, err_code code, const char *what)
{
    size_t line = 1, col = 1;
    for (size_t k = 0; k < p->i && k < p->n; k++) {
        if (p->s[k] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return gb_fail(p->b, code, "gbnf: line %zu, column %zu: %s", line, col, what);
}

static int is_word(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static void gp_space(gp *p, int newline_ok)
{
    while (p->i < p->n) {
        unsigned char c = p->s[p->i];
        if (c == ' ' || c == '\t' || (newline_ok && (c == '\n' || c == '\r'))) {
            p->i++;
        } else if (c == '#') {
            while (p->i < p->n && p->s[p->i] != '\n' && p->s[p->i] != '\r') p->i++;
        } else {
            break;
        }
    }
}

static uint32_t name_hash(const unsigned char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
    return h;
}

/* Rule id of name s[0..n), created on first use. */
static int32_t gp_rule(gp *p, const unsigned char *s, size_t n)
{
    gb *b = p->b;
    if ((uint32_t)b->n_rules * 2 + 2 >= p->tab_cap) {
        uint32_t nc = p->tab_cap ? p->tab_cap * 2 : 256;
        int32_t *t = malloc((size_t)nc * sizeof *t);
        if (!t) return gb_fail(b, ERR_NOMEM, "out of memory");
        for (uint32_t k = 0; k < nc; k++) t[k] = -1;
        for (int32_t r = 0; r < b->n_rules; r++) {
            const char *nm = gb_rule_name(b, r);
            uint32_t k = name_hash((const unsigned char *)nm, strlen(nm)) & (nc - 1);
            while (t[k] >= 0) k = (k + 1) & (nc - 1);
            t[k] = r;
        }
        free(p->tab);
        p->tab = t;
        p->tab_cap = nc;
    }
    uint32_t k = name_hash(s, n) & (p->tab_cap - 1);
    while (p->tab[k] >= 0) {
        const char *nm = gb_rule_name(b, p->tab[k]);
        if (strlen(nm) == n && memcmp(nm, s, n) == 0) return p->tab[k];
        k = (k + 1) & (p->tab_cap - 1);
    }
    if (n > 200) return gp_fail(p, ERR_INVALID, "rule name longer than 200 bytes");
    char name[201];
    memcpy(name, s, n);
    name[n] = 0;
    int32_t r = gb_rule_new(b, name, 1);
    if (r < 0) return -1;
    if (r >= p->cap_defined) {
        int32_t nc = p->cap_defined ? p->cap_defined * 2 : 64;
        while (nc <= r) nc *= 2;
        uint8_t *d = realloc(p->defined, (size_t)nc);
        if (!d) return gb_fail(b, ERR_NOMEM, "out of memory");
        memset(d + p->cap_defined, 0, (size_t)(nc - p->cap_defined));
        p->defined = d;
        p->cap_defined = nc;
    }
    p->tab[k] = r;
    return r;
}

static int64_t gp_cp(gp *p)
{
    const unsigned char *s = p->s + p->i;
    size_t left = p->n - p->i;
    uint32_t c = s[0];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || (size_t)len > left) return -1;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (int k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return -1;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return -1;
    p->i += (size_t)len;
    return cp;
}

/* One character of a literal or class, escapes included; -1 on error (reported). */
static int64_t gp_char(gp *p)
{
    if (p->i >= p->n) return gp_fail(p, ERR_INVALID, "unexpected end of input");
    if (p->s[p->i] != '\\') {
        int64_t cp = gp_cp(p);
        return cp < 0 ? gp_fail(p, ERR_INVALID, "invalid UTF-8") : cp;
    }
    p->i++;
    if (p->i >= p->n) return gp_fail(p, ERR_INVALID, "unexpected end of input after \\");
    int c = p->s[p->i++];
    int digits = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
    if (digits) {
        uint32_t v = 0;
        for (int k = 0; k < digits; k++) {
            if (p->i >= p->n) return gp_fail(p, ERR_INVALID, "short hex escape");
            int ch = p->s[p->i];
            int h = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
            if (h < 0) return gp_fail(p, ERR_INVALID, "bad hex escape");
            v = v * 16 + (uint32_t)h;
            p->i++;
        }
        if (v > 0x10FFFF) return gp_fail(p, ERR_INVALID, "code point above U+10FFFF");
        return v;
    }
    switch (c) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case '\\': return '\\';
    case '"': return '"';
    case '[': return '[';
    case ']': return ']';
    default: p->i--; return gp_fail(p, ERR_INVALID, "unknown escape");
    }
}

static int32_t gp_alts(gp *p, int nested);

static int32_t gp_primary(gp *p)
{
    unsigned char c = p->s[p->i];
    if (c == '"') {
        p->i++;
        int32_t acc = -1;
        uint8_t buf[256];
        size_t nb = 0;
        for (;;) {
            if (p->i >= p->n || p->s[p->i] == '\n') return gp_fail(p, ERR_INVALID, "unterminated string literal");
            if (p->s[p->i] == '"') {
                p->i++;
                break;
            }
            int64_t cp = gp_char(p);
            if (cp < 0) return -1;
            if (cp >= 0xD800 && cp <= 0xDFFF) return gp_fail(p, ERR_INVALID, "surrogate code point in a literal");
            /* encode into buf, flush as literal pieces */
            uint8_t u[4];
            int nu = uni_encode((uint32_t)cp, u);
            if (nb + 4 > sizeof buf) {
                int32_t part = gx_lit(p->b, (const char *)buf, nb);
                acc = acc < 0 ? part : gx_seq2(p->b, acc, part);
                nb = 0;
            }
            memcpy(buf + nb, u, (size_t)nu);
            nb += (size_t)nu;
        }
        int32_t part = gx_lit(p->b, (const char *)buf, nb);
        return acc < 0 ? part : gx_seq2(p->b, acc, part);
    }
    if (c == '[') {
        p->i++;
        gb_cpset cs;
        cps_init(&cs);
        int neg = 0;
        if (p->i < p->n && p->s[p->i] == '^') {
            neg = 1;
            p->i++;
        }
        for (;;) {
            if (p->i >= p->n) {
                cps_free(&cs);
                return gp_fail(p, ERR_INVALID, "unterminated character class");
            }
            if (p->s[p->i] == ']') {
                p->i++;
                break;
            }
            int64_t lo = gp_char(p), hi;
            if (lo < 0) {
                cps_free(&cs);
                return -1;
            }
            hi = lo;
            if (p->i + 1 < p->n && p->s[p->i] == '-' && p->s[p->i + 1] != ']') {
                p->i++;
                hi = gp_char(p);
                if (hi < 0) {
                    cps_free(&cs);
                    return -1;
                }
                if (hi < lo) {
                    cps_free(&cs);
                    return gp_fail(p, ERR_INVALID, "character range out of order");
                }
            }
            if (cps_add(&cs, (uint32_t)lo, (uint32_t)hi)) {
                cps_free(&cs);
                return gb_fail(p->b, ERR_NOMEM, "out of memory");
            }
        }
        if (neg && cps_negate(&cs)) {
            cps_free(&cs);
            return gb_fail(p->b, ERR_NOMEM, "out of memory");
        }
        int32_t x = gx_cpset(p->b, &cs);
        cps_free(&cs);
        return x;
    }
    if (c == '.') {
        p->i++;
        gb_cpset cs;
        cps_init(&cs);
        if (cps_add(&cs, 0, 0x10FFFF)) return gb_fail(p->b, ERR_NOMEM, "out of memory");
        int32_t x = gx_cpset(p->b, &cs);
        cps_free(&cs);
        return x;
    }
    if (c == '(') {
        p->i++;
        if (++p->depth > 200) return gp_fail(p, ERR_INVALID, "groups nested deeper than 200");
        gp_space(p, 1);
        int32_t x = gp_alts(p, 1);
        p->depth--;
        if (x < 0) return -1;
        gp_space(p, 1);
        if (p->i >= p->n || p->s[p->i] != ')') return gp_fail(p, ERR_INVALID, "expecting )");
        p->i++;
        return x;
    }
    if (c == '<') return gp_fail(p, ERR_UNSUPPORTED, "token references (<...>) are not supported");
    if (is_word(c)) {
        size_t st = p->i;
        while (p->i < p->n && is_word(p->s[p->i])) p->i++;
        int32_t r = gp_rule(p, p->s + st, p->i - st);
        return r < 0 ? -1 : gx_call(p->b, r);
    }
    return gp_fail(p, ERR_INVALID, "unexpected character");
}

static int32_t gp_seq(gp *p, int nested)
{
    gx_seqbuf q;
    gx_seqbuf_init(&q);
    for (;;) {
        gp_space(p, nested);
        if (p->i >= p->n) break;
        unsigned char c = p->s[p->i];
        if (c == '|' || c == ')' || c == '\n' || c == '\r') break;
        int32_t x = gp_primary(p);
        if (x < 0) return -1;
        gp_space(p, nested);
        while (p->i < p->n) {
            unsigned char q = p->s[p->i];
            int64_t lo, hi;
            size_t at = p->i;
            if (q == '*') {
                lo = 0;
                hi = -1;
            } else if (q == '+') {
                lo = 1;
                hi = -1;
            } else if (q == '?') {
                lo = 0;
                hi = 1;
            } else if (q == '{') {
                p->i++;
                gp_space(p, nested);
                if (!gb_parse_count(p->s, p->n, &p->i, &lo)) return gp_fail(p, ERR_INVALID, "expecting a number after {");
                gp_space(p, nested);
                hi = lo;
                if (p->i < p->n && p->s[p->i] == ',') {
                    p->i++;
                    gp_space(p, nested);
                    if (!gb_parse_count(p->s, p->n, &p->i, &hi)) hi = -1;
                    gp_space(p, nested);
                }
                if (p->i >= p->n || p->s[p->i] != '}') return gp_fail(p, ERR_INVALID, "expecting }");
                if (hi >= 0 && hi < lo) return gp_fail(p, ERR_INVALID, "{m,n} with n < m");
                int64_t big = hi < 0 ? lo : hi;
                if (big > p->b->o->max_repeat) {
                    p->i = at;
                    char msg[96];
                    snprintf(msg, sizeof msg, "repetition count %lld is more than the limit %d", (long long)big,
                             p->b->o->max_repeat);
                    return gp_fail(p, ERR_INVALID, msg);
                }
            } else {
                break;
            }
            p->i++;
            x = gx_rep(p->b, x, (int32_t)lo, (int32_t)hi);
            if (x < 0) return -1;
            gp_space(p, nested);
        }
        if (gx_seqbuf_add(p->b, &q, x)) return -1;
    }
    return gx_seqbuf_end(p->b, &q);
}

static int32_t gp_alts(gp *p, int nested)
{
    int32_t x = gp_seq(p, nested);
    while (x >= 0 && p->i < p->n && p->s[p->i] == '|') {
        p->i++;
        gp_space(p, 1);
        int32_t y = gp_seq(p, nested);
        x = gx_alt2(p->b, x, y);
    }
    return x;
}

int32_t gbnf_build(gb *b, const char *text, size_t len)
{
    gp p;
    memset(&p, 0, sizeof p);
    p.b = b;
    p.s = (const unsigned char *)text;
    p.n = len;
    int32_t root = -1;
    for (;;) {
        gp_space(&p, 1);
        if (p.i >= p.n) break;
        size_t st = p.i;
        while (p.i < p.n && is_word(p.s[p.i])) p.i++;
        if (p.i == st) {
            gp_fail(&p, ERR_INVALID, "expecting a rule name");
            break;
        }
        int32_t r = gp_rule(&p, p.s + st, p.i - st);
        if (r < 0) break;
        gp_space(&p, 0);
        if (p.i + 3 > p.n || memcmp(p.s + p.i, "::=", 3) != 0) {
            gp_fail(&p, ERR_INVALID, "expecting ::=");
            break;
        }
        if (p.defined[r]) {
            p.i = st;
            gp_fail(&p, ERR_INVALID, "rule defined twice");
            break;
        }
        p.i += 3;
        gp_space(&p, 1);
        int32_t body = gp_alts(&p, 0);
        if (body < 0) break;
        gb_rule_set(b, r, body);
        p.defined[r] = 1;
        gp_space(&p, 0);
        if (p.i < p.n && p.s[p.i] != '\n' && p.s[p.i] != '\r') {
            gp_fail(&p, ERR_INVALID, p.s[p.i] == ')' ? "unbalanced )" : "expecting the end of the line");
            break;
        }
    }
    if (!b->failed) {
        for (int32_t r = 0; r < b->n_rules; r++)
            if (!p.defined[r]) {
                gb_fail(b, ERR_INVALID, "gbnf: rule '%s' is used but never defined", gb_rule_name(b, r));
                break;
            }
    }
    if (!b->failed) {
        root = gp_rule(&p, (const unsigned char *)"root", 4);
        if (root >= 0 && !p.defined[root]) {
            gb_fail(b, ERR_INVALID, "gbnf: no rule named root");
            root = -1;
        }
    }
    free(p.tab);
    free(p.defined);
    return b->failed ? -1 : root;
}
