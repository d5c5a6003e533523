/* grammar_regex.c — regular expressions to expressions over UTF-8 bytes.
 *
 * The common subset of ECMAScript (JSON Schema "pattern") and Python's re: literals
 * (UTF-8, matched as code points), . (any code point but \n), classes [a-z] [^...] with
 * \d \w \s \D \W \S (\d = [0-9] and \w = [A-Za-z0-9_] as ECMAScript, the dialect JSON
 * Schema names; \s = Unicode White_Space), escapes \n \r \t \f \v \0 \xHH \uHHHH \u{H...},
 * groups (...) (?:...) (?<name>...) (?P<name>...), alternation |, quantifiers * + ? {n}
 * {n,} {n,m} (lazy forms are the same language), ^ at the start and $ at the end.
 * Refused with the position: backreferences, lookaround, \b \B, anchors inside, possessive
 * quantifiers, counts above opts.max_repeat, nesting deeper than 200. */
#include <stdio.h>
#include <string.h>

#include "grammar_int.h"
#include "unicode.h"

typedef struct rx {
    gb *b;
    const unsigned char *s;
    size_t n, i;
    const char *where;
    int depth;
} rx;

static int32_t rx_fail(rx *r, err_code code, const char *what)
{
    return gb_fail(r->b, code, "%s: at offset %zu: %s", r->where, r->i, what);
}

/* Decodes one UTF-8 code point at r->i (r->i < r->n); -1 on invalid UTF-8 (a byte that
 * does not start a valid, shortest-form, non-surrogate sequence). */
static int64_t rx_cp(rx *r)
{
    uint32_t cp;
    const int len = uni_decode(r->s + r->i, r->n - r->i, &cp);
    if (cp == UNI_INVALID) return -1;
    r->i += (size_t)len;
    return cp;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int64_t rx_hex(rx *r, int digits)
{
    uint32_t v = 0;
    for (int k = 0; k < digits; k++) {
        if (r->i >= r->n || hexval(r->s[r->i]) < 0) return -1;
        v = v * 16 + (uint32_t)hexval(r->s[r->i++]);
    }
    return v;
}

static int add_class_escape(gb_cpset *c, int e)
{
    int neg = e == 'D' || e == 'W' || e == 'S';
    gb_cpset t;
    cps_init(&t);
    int rc = 0;
    switch (e | 0x20) {
    case 'd': rc |= cps_add(&t, '0', '9'); break;
    case 'w':
        rc |= cps_add(&t, '0', '9');
        rc |= cps_add(&t, 'A', 'Z');
        rc |= cps_add(&t, 'a', 'z');
        rc |= cps_add(&t, '_', '_');
        break;
    case 's': /* Unicode White_Space (what Rust's and Python's \s mean, less Python's \x1c-\x1f) */
        rc |= cps_add(&t, '\t', '\r');
        rc |= cps_add(&t, ' ', ' ');
        rc |= cps_add(&t, 0x85, 0x85);
        rc |= cps_add(&t, 0xA0, 0xA0);
        rc |= cps_add(&t, 0x1680, 0x1680);
        rc |= cps_add(&t, 0x2000, 0x200A);
        rc |= cps_add(&t, 0x2028, 0x2029);
        rc |= cps_add(&t, 0x202F, 0x202F);
        rc |= cps_add(&t, 0x205F, 0x205F);
        rc |= cps_add(&t, 0x3000, 0x3000);
        break;
    }
    if (neg) rc |= cps_negate(&t);
    for (int i = 0; !rc && i < t.n; i++) rc |= cps_add(c, t.r[2 * i], t.r[2 * i + 1]);
    cps_free(&t);
    return rc;
}

/* One escaped code point after '\' (r->i at the letter). Returns the code point, or
 * -2 when a class escape was added to cls (cls may be NULL outside classes: then -3
 * with *cls_letter set), -1 on error (already reported). */
static int64_t rx_escape(rx *r, int in_class, int *cls_letter)
{
    if (r->i >= r->n) return rx_fail(r, ERR_INVALID, "pattern ends with a backslash");
    int c = r->s[r->i];
    switch (c) {
    case 'd': case 'D': case 'w': case 'W': case 's': case 'S':
        r->i++;
        *cls_letter = c;
        return -3;
    case 'n': r->i++; return '\n';
    case 'r': r->i++; return '\r';
    case 't': r->i++; return '\t';
    case 'f': r->i++; return '\f';
    case 'v': r->i++; return '\v';
    case '0': r->i++; return 0;
    case 'b':
        if (in_class) {
            r->i++;
            return '\b';
        }
        return rx_fail(r, ERR_UNSUPPORTED, "word boundaries (\\b) are not supported");
    case 'B': return rx_fail(r, ERR_UNSUPPORTED, "\\B is not supported");
    case 'A': case 'Z': case 'z': case 'G':
        return rx_fail(r, ERR_UNSUPPORTED, "anchors other than ^ at the start and $ at the end are not supported");
    case 'x': {
        r->i++;
        int64_t v = rx_hex(r, 2);
        if (v < 0) return rx_fail(r, ERR_INVALID, "\\x needs two hex digits");
        return v;
    }
    case 'u': {
        r->i++;
        int64_t v;
        if (r->i < r->n && r->s[r->i] == '{') {
            r->i++;
            v = 0;
            int nd = 0;
            while (r->i < r->n && hexval(r->s[r->i]) >= 0 && nd < 8) {
                v = v * 16 + hexval(r->s[r->i++]);
                nd++;
            }
            if (!nd || r->i >= r->n || r->s[r->i] != '}' || v > 0x10FFFF)
                return rx_fail(r, ERR_INVALID, "bad \\u{...} escape");
            r->i++;
        } else {
            v = rx_hex(r, 4);
            if (v < 0) return rx_fail(r, ERR_INVALID, "\\u needs four hex digits");
            /* a surrogate pair written as two escapes */
            if (v >= 0xD800 && v <= 0xDBFF && r->i + 6 <= r->n && r->s[r->i] == '\\' && r->s[r->i + 1] == 'u') {
                size_t save = r->i;
                r->i += 2;
                int64_t lo = rx_hex(r, 4);
                if (lo >= 0xDC00 && lo <= 0xDFFF) return 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
                r->i = save;
            }
        }
        if (v >= 0xD800 && v <= 0xDFFF) return rx_fail(r, ERR_INVALID, "lone surrogate escape");
        return v;
    }
    default:
        if (c >= '1' && c <= '9') return rx_fail(r, ERR_UNSUPPORTED, "backreferences are not supported");
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            return rx_fail(r, ERR_INVALID, "unknown escape");
        {
            int64_t v = rx_cp(r); /* \. \* \\ \/ ... */
            return v < 0 ? rx_fail(r, ERR_INVALID, "invalid UTF-8") : v;
        }
    }
}

static int32_t rx_class(rx *r)
{
    /* r->i just after '[' */
    gb_cpset c;
    cps_init(&c);
    int neg = 0, first = 1;
    if (r->i < r->n && r->s[r->i] == '^') {
        neg = 1;
        r->i++;
    }
    for (;;) {
        if (r->i >= r->n) {
            cps_free(&c);
            return rx_fail(r, ERR_INVALID, "unterminated character class");
        }
        if (r->s[r->i] == ']' && !first) {
            r->i++;
            break;
        }
        first = 0;
        int64_t lo;
        int letter = 0;
        if (r->s[r->i] == '\\') {
            r->i++;
            lo = rx_escape(r, 1, &letter);
            if (lo == -3) {
                if (add_class_escape(&c, letter)) goto nomem;
                continue;
            }
        } else if (r->s[r->i] == '[' && r->i + 1 < r->n && r->s[r->i + 1] == ':') {
            cps_free(&c);
            return rx_fail(r, ERR_UNSUPPORTED, "POSIX classes ([:alpha:]) are not supported");
        } else {
            lo = rx_cp(r);
            if (lo < 0) {
                cps_free(&c);
                return rx_fail(r, ERR_INVALID, "invalid UTF-8");
            }
        }
        if (lo < 0) {
            cps_free(&c);
            return -1;
        }
        int64_t hi = lo;
        if (r->i + 1 < r->n && r->s[r->i] == '-' && r->s[r->i + 1] != ']') {
            r->i++;
            if (r->s[r->i] == '\\') {
                r->i++;
                hi = rx_escape(r, 1, &letter);
                if (hi == -3) {
                    cps_free(&c);
                    return rx_fail(r, ERR_INVALID, "a class escape cannot end a range");
                }
            } else {
                hi = rx_cp(r);
                if (hi < 0) {
                    cps_free(&c);
                    return rx_fail(r, ERR_INVALID, "invalid UTF-8");
                }
            }
            if (hi < 0) {
                cps_free(&c);
                return -1;
            }
            if (hi < lo) {
                cps_free(&c);
                return rx_fail(r, ERR_INVALID, "character range out of order");
            }
        }
        if (cps_add(&c, (uint32_t)lo, (uint32_t)hi)) goto nomem;
    }
    if (neg && cps_negate(&c)) goto nomem;
    int32_t x = gx_cpset(r->b, &c);
    cps_free(&c);
    return x;
nomem:
    cps_free(&c);
    return gb_fail(r->b, ERR_NOMEM, "out of memory");
}

static int32_t rx_alt(rx *r);

static int32_t rx_atom(rx *r)
{
    unsigned char c = r->s[r->i];
    if (c == '(') {
        r->i++;
        if (r->i < r->n && r->s[r->i] == '?') {
            r->i++;
            if (r->i < r->n && r->s[r->i] == ':') {
                r->i++;
            } else if (r->i < r->n && (r->s[r->i] == '<' || r->s[r->i] == 'P')) {
                if (r->s[r->i] == 'P') r->i++;
                if (r->i >= r->n || r->s[r->i] != '<') return rx_fail(r, ERR_UNSUPPORTED, "unsupported group syntax");
                if (r->i + 1 < r->n && (r->s[r->i + 1] == '=' || r->s[r->i + 1] == '!'))
                    return rx_fail(r, ERR_UNSUPPORTED, "lookbehind is not supported");
                r->i++;
                while (r->i < r->n && r->s[r->i] != '>') r->i++;
                if (r->i >= r->n) return rx_fail(r, ERR_INVALID, "unterminated group name");
                r->i++;
            } else if (r->i < r->n && (r->s[r->i] == '=' || r->s[r->i] == '!')) {
                return rx_fail(r, ERR_UNSUPPORTED, "lookahead is not supported");
            } else {
                return rx_fail(r, ERR_UNSUPPORTED, "unsupported group syntax (?...)");
            }
        }
        if (++r->depth > 200) return rx_fail(r, ERR_INVALID, "groups nested deeper than 200");
        int32_t x = rx_alt(r);
        r->depth--;
        if (x < 0) return -1;
        if (r->i >= r->n || r->s[r->i] != ')') return rx_fail(r, ERR_INVALID, "missing )");
        r->i++;
        return x;
    }
    if (c == '[') {
        r->i++;
        return rx_class(r);
    }
    if (c == '.') {
        r->i++;
        gb_cpset cs;
        cps_init(&cs);
        if (cps_add(&cs, 0, '\n' - 1) || cps_add(&cs, '\n' + 1, 0x10FFFF)) {
            cps_free(&cs);
            return gb_fail(r->b, ERR_NOMEM, "out of memory");
        }
        int32_t x = gx_cpset(r->b, &cs);
        cps_free(&cs);
        return x;
    }
    if (c == '\\') {
        r->i++;
        int letter = 0;
        int64_t cp = rx_escape(r, 0, &letter);
        if (cp == -3) {
            gb_cpset cs;
            cps_init(&cs);
            if (add_class_escape(&cs, letter)) {
                cps_free(&cs);
                return gb_fail(r->b, ERR_NOMEM, "out of memory");
            }
            int32_t x = gx_cpset(r->b, &cs);
            cps_free(&cs);
            return x;
        }
        if (cp < 0) return -1;
        return gx_cp(r->b, (uint32_t)cp);
    }
    if (c == '^' || c == '$') return rx_fail(r, ERR_UNSUPPORTED, "^ and $ are supported only at the ends of the pattern");
    if (c == '*' || c == '+' || c == '?') return rx_fail(r, ERR_INVALID, "nothing to repeat");
    if (c == ')') return rx_fail(r, ERR_INVALID, "unbalanced )");
    int64_t cp = rx_cp(r);
    if (cp < 0) return rx_fail(r, ERR_INVALID, "invalid UTF-8");
    return gx_cp(r->b, (uint32_t)cp);
}

/* Parses {n}, {n,}, {n,m} at r->i (which is at '{'); returns 1 with the counts, 0 when
 * the brace is not a quantifier (then it is a literal, as in Python and ECMAScript). */
static int rx_braces(rx *r, int64_t *lo, int64_t *hi)
{
    size_t save = r->i;
    r->i++;
    if (!gb_parse_count(r->s, r->n, &r->i, lo)) {
        r->i = save;
        return 0;
    }
    *hi = *lo;
    if (r->i < r->n && r->s[r->i] == ',') {
        r->i++;
        if (!gb_parse_count(r->s, r->n, &r->i, hi)) *hi = -1;
    }
    if (r->i >= r->n || r->s[r->i] != '}') {
        r->i = save;
        return 0;
    }
    r->i++;
    return 1;
}

static int32_t rx_seq(rx *r)
{
    gx_seqbuf q;
    gx_seqbuf_init(&q);
    while (r->i < r->n && r->s[r->i] != '|' && r->s[r->i] != ')') {
        if (r->s[r->i] == '$' && r->i + 1 == r->n && r->depth == 0) break;
        int32_t x = rx_atom(r);
        if (x < 0) return -1;
        for (;;) {
            if (r->i >= r->n) break;
            unsigned char q = r->s[r->i];
            int64_t lo, hi;
            size_t at = r->i;
            if (q == '*') {
                lo = 0;
                hi = -1;
                r->i++;
            } else if (q == '+') {
                lo = 1;
                hi = -1;
                r->i++;
            } else if (q == '?') {
                lo = 0;
                hi = 1;
                r->i++;
            } else if (q == '{' && rx_braces(r, &lo, &hi)) {
                if (hi >= 0 && hi < lo) {
                    r->i = at;
                    return rx_fail(r, ERR_INVALID, "{n,m} with m < n");
                }
                int64_t big = hi < 0 ? lo : hi;
                if (big > r->b->o->max_repeat) {
                    r->i = at;
                    char msg[96];
                    snprintf(msg, sizeof msg, "repetition count %lld is more than the limit %d", (long long)big,
                             r->b->o->max_repeat);
                    return rx_fail(r, ERR_INVALID, msg);
                }
            } else {
                break;
            }
            if (r->i < r->n && r->s[r->i] == '?') r->i++; /* lazy: same language */
            else if (r->i < r->n && r->s[r->i] == '+')
                return rx_fail(r, ERR_UNSUPPORTED, "possessive quantifiers are not supported");
            x = gx_rep(r->b, x, (int32_t)lo, (int32_t)hi);
            if (x < 0) return -1;
        }
        if (gx_seqbuf_add(r->b, &q, x)) return -1;
    }
    return gx_seqbuf_end(r->b, &q);
}

static int32_t rx_alt(rx *r)
{
    int32_t x = rx_seq(r);
    while (x >= 0 && r->i < r->n && r->s[r->i] == '|') {
        r->i++;
        if (r->i < r->n && r->s[r->i] == '^' && r->depth == 0)
            return rx_fail(r, ERR_UNSUPPORTED, "^ and $ are supported only at the ends of the pattern");
        int32_t y = rx_seq(r);
        x = gx_alt2(r->b, x, y);
    }
    return x;
}

int32_t gx_regex(gb *b, const char *re, size_t len, const char *where, int *anchor_start, int *anchor_end)
{
    rx r = {b, (const unsigned char *)re, len, 0, where, 0};
    *anchor_start = *anchor_end = 0;
    if (len && re[0] == '^') {
        *anchor_start = 1;
        r.i = 1;
    }
    int32_t x = rx_alt(&r);
    if (x < 0) return -1;
    if (r.i < r.n && r.s[r.i] == '$' && r.i + 1 == r.n) {
        *anchor_end = 1;
        r.i++;
    }
    if (r.i != r.n) return rx_fail(&r, ERR_INVALID, r.s[r.i] == ')' ? "unbalanced )" : "unexpected character");
    return x;
}

int32_t regex_build(gb *b, const char *text, size_t len)
{
    int as, ae;
    int32_t x = gx_regex(b, text, len, "regex", &as, &ae);
    int32_t root = gb_rule_new(b, "regex", 0);
    gb_rule_set(b, root, x);
    return x < 0 ? -1 : root;
}
