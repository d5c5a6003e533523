/* grammar_schema.c — JSON Schema to rules.
 *
 * The subset (OpenAI strict structured outputs and what pydantic emits, plus a little):
 *   type (a name or an array of names; "nullable": true adds null), enum, const,
 *   object: properties (generated in their order; the ones not in required may be left
 *     out), required, additionalProperties (absent or false: no other keys — strict mode;
 *     true or a schema: other keys after the declared ones, ASCII-only when properties
 *     are declared so that they can never repeat a declared key),
 *   array: items, prefixItems, minItems, maxItems (counts up to opts.max_repeat),
 *   string: pattern (searched as JSON Schema says: unanchored ends match anything), format
 *     (date-time, date, time, duration, email, hostname, ipv4, uuid; other formats are
 *     annotations and ignored, as the specification allows), minLength/maxLength,
 *   integer: minimum, maximum, exclusiveMinimum, exclusiveMaximum (exact digit ranges),
 *   number: the same bounds when they are integers (no exponent then),
 *   anyOf, oneOf (as anyOf: exact when the branches do not overlap), allOf of one schema,
 *   $ref to "#", "#/$defs/..", "#/definitions/.." or any JSON pointer in the document,
 *   recursion included, boolean schemas.
 * Every other keyword is refused (ERR_UNSUPPORTED) naming its path; annotations (title,
 * description, default, examples, ...) are ignored.
 *
 * Output JSON: strings hold printable ASCII and any non-ASCII character raw; \" \\ \b \f
 * \n \r \t escapes, and \u00XX only for control characters and DEL — one spelling per
 * character (as llguidance's default). Whitespace between tokens per opts.json_ws.
 * Shared rules (string, number, integer, any value) are kept as rules, so their token
 * caches are computed once. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar_int.h"
#include "jsonv.h"

typedef struct sc_ref {
    const char *ref;
    size_t len;
    int32_t rule;
} sc_ref;

typedef struct sc {
    gb *b;
    jv_arena *ar;
    jv doc;
    int ws_mode;
    int32_t r_string, r_number, r_integer, r_value, r_object_any, r_array_any;
    sc_ref *refs;
    int n_refs, cap_refs;
    int depth;
    char path[1024];
    size_t plen;
} sc;

#define SC_MAX_DEPTH 64
#define SC_MAX_ENUM 4096
#define SC_MAX_PROPS 1024

/* ------------------------------------------------------------------ paths and errors */

static size_t path_push_key(sc *c, const char *k, size_t n)
{
    size_t old = c->plen;
    int ident = n > 0;
    for (size_t i = 0; i < n; i++) {
        char ch = k[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '$' || ch == '-'))
            ident = 0;
    }
    size_t room = sizeof c->path - c->plen;
    int w;
    if (ident) w = snprintf(c->path + c->plen, room, ".%.*s", (int)(n > 200 ? 200 : n), k);
    else w = snprintf(c->path + c->plen, room, "[\"%.*s\"]", (int)(n > 200 ? 200 : n), k);
    if (w > 0 && (size_t)w < room) c->plen += (size_t)w;
    return old;
}

static size_t path_push_idx(sc *c, size_t i)
{
    size_t old = c->plen;
    size_t room = sizeof c->path - c->plen;
    int w = snprintf(c->path + c->plen, room, "[%zu]", i);
    if (w > 0 && (size_t)w < room) c->plen += (size_t)w;
    return old;
}

static void path_pop(sc *c, size_t old)
{
    c->plen = old;
    c->path[old] = 0;
}

static int32_t sc_fail(sc *c, err_code code, const char *what)
{
    if (c->plen > 160) /* keep the message whole: the start and the end of a long path */
        return gb_fail(c->b, code, "%.40s...%s: %s", c->path, c->path + c->plen - 110, what);
    return gb_fail(c->b, code, "%s: %s", c->path, what);
}

static int32_t sc_fail_key(sc *c, err_code code, const char *key, const char *what)
{
    size_t o = path_push_key(c, key, strlen(key));
    int32_t r = sc_fail(c, code, what);
    path_pop(c, o);
    return r;
}

/* ------------------------------------------------------------------ small pieces */

static int32_t ws(sc *c)
{
    gb *b = c->b;
    if (c->ws_mode == GRAMMAR_WS_COMPACT) return gx_empty(b);
    uint8_t s[32] = {0};
    s[' ' >> 3] |= 1u << (' ' & 7);
    s['\t' >> 3] |= 1u << ('\t' & 7);
    s['\n' >> 3] |= 1u << ('\n' & 7);
    s['\r' >> 3] |= 1u << ('\r' & 7);
    int32_t x = gx_set(b, s);
    return c->ws_mode < 0 ? gx_rep(b, x, 0, -1) : gx_rep(b, x, 0, c->ws_mode);
}

static int32_t around(sc *c, char ch)
{
    int32_t v[3] = {ws(c), gx_byte(c->b, (uint8_t)ch), ws(c)};
    return gx_seq(c->b, v, 3);
}

/* One character of a JSON string, encoded (see the header comment). */
static int32_t json_char(sc *c)
{
    gb *b = c->b;
    gb_cpset cs;
    cps_init(&cs);
    cps_add(&cs, 0x20, 0x21);
    cps_add(&cs, 0x23, 0x5B);
    cps_add(&cs, 0x5D, 0x7E);
    cps_add(&cs, 0x80, 0x10FFFF);
    int32_t raw = gx_cpset(b, &cs);
    cps_free(&cs);
    uint8_t esc[32] = {0};
    const char *e1 = "\"\\bfnrt";
    for (const char *p = e1; *p; p++) esc[(uint8_t)*p >> 3] |= (uint8_t)(1u << (*p & 7));
    int32_t hex = gx_alt2(b, gx_byte_range(b, '0', '9'), gx_alt2(b, gx_byte_range(b, 'a', 'f'), gx_byte_range(b, 'A', 'F')));
    int32_t u1[3] = {gx_lit(b, "u00", 3), gx_byte_range(b, '0', '1'), hex};
    int32_t u2[2] = {gx_lit(b, "u007", 4), gx_alt2(b, gx_byte(b, 'F'), gx_byte(b, 'f'))};
    int32_t after[3] = {gx_set(b, esc), gx_seq(b, u1, 3), gx_seq(b, u2, 2)};
    int32_t escape = gx_seq2(b, gx_byte(b, '\\'), gx_alt(b, after, 3));
    return gx_alt2(b, raw, escape);
}

static int32_t string_rule(sc *c)
{
    if (c->r_string >= 0) return c->r_string;
    gb *b = c->b;
    c->r_string = gb_rule_new(b, "string", 0);
    int32_t q = gx_byte(b, '"');
    int32_t v[3] = {q, gx_rep(b, json_char(c), 0, -1), gx_byte(b, '"')};
    gb_rule_set(b, c->r_string, gx_seq(b, v, 3));
    return c->r_string;
}

static int32_t digits(gb *b, int min) { return gx_rep(b, gx_byte_range(b, '0', '9'), min, -1); }

/* -?(0|[1-9][0-9]*) */
static int32_t int_body(gb *b)
{
    int32_t nz = gx_seq2(b, gx_byte_range(b, '1', '9'), digits(b, 0));
    return gx_seq2(b, gx_opt(b, gx_byte(b, '-')), gx_alt2(b, gx_byte(b, '0'), nz));
}

static int32_t integer_rule(sc *c)
{
    if (c->r_integer >= 0) return c->r_integer;
    c->r_integer = gb_rule_new(c->b, "integer", 0);
    gb_rule_set(c->b, c->r_integer, int_body(c->b));
    return c->r_integer;
}

static int32_t number_rule(sc *c)
{
    if (c->r_number >= 0) return c->r_number;
    gb *b = c->b;
    c->r_number = gb_rule_new(b, "number", 0);
    int32_t frac = gx_opt(b, gx_seq2(b, gx_byte(b, '.'), digits(b, 1)));
    uint8_t e[32] = {0}, pm[32] = {0};
    e['e' >> 3] |= 1u << ('e' & 7);
    e['E' >> 3] |= 1u << ('E' & 7);
    pm['+' >> 3] |= 1u << ('+' & 7);
    pm['-' >> 3] |= 1u << ('-' & 7);
    int32_t ex[3] = {gx_set(b, e), gx_opt(b, gx_set(b, pm)), digits(b, 1)};
    int32_t v[3] = {int_body(b), frac, gx_opt(b, gx_seq(b, ex, 3))};
    gb_rule_set(b, c->r_number, gx_seq(b, v, 3));
    return c->r_number;
}

static int32_t value_rule(sc *c);

/* {"k": any, ...} and [any, ...] */
static int32_t object_any_rule(sc *c)
{
    if (c->r_object_any >= 0) return c->r_object_any;
    gb *b = c->b;
    c->r_object_any = gb_rule_new(b, "object", 1);
    int32_t member[3] = {gx_call(b, string_rule(c)), around(c, ':'), gx_call(b, value_rule(c))};
    int32_t m = gx_seq(b, member, 3);
    int32_t more = gx_rep(b, gx_seq2(b, around(c, ','), m), 0, -1);
    int32_t v[5] = {gx_byte(b, '{'), ws(c), gx_opt(b, gx_seq2(b, m, more)), ws(c), gx_byte(b, '}')};
    gb_rule_set(b, c->r_object_any, gx_seq(b, v, 5));
    return c->r_object_any;
}

static int32_t array_any_rule(sc *c)
{
    if (c->r_array_any >= 0) return c->r_array_any;
    gb *b = c->b;
    c->r_array_any = gb_rule_new(b, "array", 1);
    int32_t it = gx_call(b, value_rule(c));
    int32_t more = gx_rep(b, gx_seq2(b, around(c, ','), it), 0, -1);
    int32_t v[5] = {gx_byte(b, '['), ws(c), gx_opt(b, gx_seq2(b, it, more)), ws(c), gx_byte(b, ']')};
    gb_rule_set(b, c->r_array_any, gx_seq(b, v, 5));
    return c->r_array_any;
}

static int32_t value_rule(sc *c)
{
    if (c->r_value >= 0) return c->r_value;
    gb *b = c->b;
    c->r_value = gb_rule_new(b, "value", 1);
    int32_t alts[7] = {gx_call(b, object_any_rule(c)), gx_call(b, array_any_rule(c)), gx_call(b, string_rule(c)),
                       gx_call(b, number_rule(c)),     gx_lit(b, "true", 4),           gx_lit(b, "false", 5),
                       gx_lit(b, "null", 4)};
    gb_rule_set(b, c->r_value, gx_alt(b, alts, 7));
    return c->r_value;
}

/* One character of a fixed string, every spelling the string grammar allows for it
 * (\n or \u000a or \u000A ...), so a value equal after decoding is accepted. */
static int32_t char_spellings(sc *c, uint8_t ch)
{
    gb *b = c->b;
    static const char shortf[] = "\b\f\n\r\t";
    static const char shortl[] = "bfnrt";
    if (ch == '"') return gx_lit(b, "\\\"", 2);
    if (ch == '\\') return gx_lit(b, "\\\\", 2);
    if (ch >= 0x20 && ch != 0x7F) return gx_byte(b, ch);
    int32_t alts[2];
    int n = 0;
    const char *sp = ch ? strchr(shortf, ch) : NULL;
    if (sp) alts[n++] = gx_seq2(b, gx_byte(b, '\\'), gx_byte(b, (uint8_t)shortl[sp - shortf]));
    const char *hex = "0123456789abcdef";
    int hi = ch >> 4, lo = ch & 15;
    int32_t low = lo >= 10 ? gx_alt2(b, gx_byte(b, (uint8_t)hex[lo]), gx_byte(b, (uint8_t)(hex[lo] - 32)))
                           : gx_byte(b, (uint8_t)hex[lo]);
    char pre[5] = {'\\', 'u', '0', '0', hex[hi]};
    alts[n++] = gx_seq2(b, gx_lit(b, pre, 5), low);
    return gx_alt(b, alts, n);
}

/* A fixed JSON value (enum, const): compact, strings in any allowed spelling. */
static int32_t literal_of(sc *c, jv v)
{
    gb *b = c->b;
    if (b->failed) return -1;
    switch (v.type) {
    case JV_STR: {
        const jv_str *s = v.u.s;
        int32_t acc = gx_byte(b, '"');
        size_t i = 0;
        while (i < s->len && !b->failed) {
            int32_t part[64];
            int k = 0;
            while (i < s->len && k < 64) part[k++] = char_spellings(c, (uint8_t)s->p[i++]);
            acc = gx_seq2(b, acc, gx_seq(b, part, k));
        }
        return gx_seq2(b, acc, gx_byte(b, '"'));
    }
    case JV_LIST: {
        int32_t acc = gx_seq2(b, gx_byte(b, '['), ws(c));
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) acc = gx_seq2(b, acc, around(c, ','));
            acc = gx_seq2(b, acc, literal_of(c, v.u.l->v[i]));
        }
        return gx_seq(b, (int32_t[]){acc, ws(c), gx_byte(b, ']')}, 3);
    }
    case JV_DICT: {
        int32_t acc = gx_seq2(b, gx_byte(b, '{'), ws(c));
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i) acc = gx_seq2(b, acc, around(c, ','));
            acc = gx_seq(b, (int32_t[]){acc, literal_of(c, jv_strv(v.u.d->k[i])), around(c, ':'),
                                        literal_of(c, v.u.d->v[i])}, 4);
        }
        return gx_seq(b, (int32_t[]){acc, ws(c), gx_byte(b, '}')}, 3);
    }
    default: {
        jv_buf buf;
        jv_buf_init(&buf, 4096);
        err e = {0};
        int32_t x;
        if (jv_dump(&buf, v, NULL, ",", ":", 0, 0, &e) || buf.over) x = sc_fail(c, ERR_INVALID, "value cannot be written as JSON");
        else x = gx_lit(b, buf.p, buf.n);
        jv_buf_free(&buf);
        return x;
    }
    }
}

/* A property name as written by json.dumps (one spelling: keys are matched as written). */
static int32_t key_literal(sc *c, const jv_str *k)
{
    jv_buf buf;
    jv_buf_init(&buf, 1 << 16);
    err e = {0};
    int32_t x;
    if (jv_dump(&buf, jv_strv(k), NULL, ",", ":", 0, 0, &e) || buf.over) x = sc_fail(c, ERR_INVALID, "property name too long");
    else x = gx_lit(c->b, buf.p, buf.n);
    jv_buf_free(&buf);
    return x;
}

static const jv *get(const jv_dict *d, const char *k)
{
    long i = jv_dict_find(d, k, strlen(k));
    return i < 0 ? NULL : &d->v[i];
}

static int is_num(const jv *v) { return v && (v->type == JV_INT || v->type == JV_FLOAT); }

static int64_t count_of(sc *c, const jv_dict *d, const char *k, int64_t dflt, int *bad)
{
    const jv *v = get(d, k);
    if (!v) return dflt;
    if (v->type == JV_FLOAT && v->u.f == floor(v->u.f) && fabs(v->u.f) < 1e15) return (int64_t)v->u.f;
    if (v->type != JV_INT || v->u.i < 0) {
        sc_fail_key(c, ERR_INVALID, k, "must be a non-negative integer");
        *bad = 1;
        return dflt;
    }
    if (v->u.i > c->b->o->max_repeat) {
        char msg[128];
        snprintf(msg, sizeof msg, "%lld is more than the %d this server supports", (long long)v->u.i,
                 c->b->o->max_repeat);
        sc_fail_key(c, ERR_INVALID, k, msg);
        *bad = 1;
        return dflt;
    }
    return v->u.i;
}

/* ------------------------------------------------------------------ integer ranges */

#define INF_U UINT64_MAX

static int ndig(uint64_t x)
{
    int n = 1;
    while (x >= 10) {
        x /= 10;
        n++;
    }
    return n;
}

/* Digit strings of equal length L from x to y (leading zeros allowed inside). */
static int32_t same_len(gb *b, const char *x, const char *y, int L)
{
    if (L == 0) return gx_empty(b);
    if (L == 1) return gx_byte_range(b, (uint8_t)x[0], (uint8_t)y[0]);
    int tail_min = 1, tail_max = 1;
    for (int i = 1; i < L; i++) {
        if (x[i] != '0') tail_min = 0;
        if (y[i] != '9') tail_max = 0;
    }
    if (tail_min && tail_max)
        return gx_seq2(b, gx_byte_range(b, (uint8_t)x[0], (uint8_t)y[0]), gx_rep(b, gx_byte_range(b, '0', '9'), L - 1, L - 1));
    if (x[0] == y[0]) return gx_seq2(b, gx_byte(b, (uint8_t)x[0]), same_len(b, x + 1, y + 1, L - 1));
    char nines[24], zeros[24];
    memset(nines, '9', sizeof nines);
    memset(zeros, '0', sizeof zeros);
    int32_t alts[3];
    int n = 0;
    alts[n++] = gx_seq2(b, gx_byte(b, (uint8_t)x[0]), same_len(b, x + 1, nines, L - 1));
    if (x[0] + 1 <= y[0] - 1)
        alts[n++] = gx_seq2(b, gx_byte_range(b, (uint8_t)(x[0] + 1), (uint8_t)(y[0] - 1)),
                            gx_rep(b, gx_byte_range(b, '0', '9'), L - 1, L - 1));
    alts[n++] = gx_seq2(b, gx_byte(b, (uint8_t)y[0]), same_len(b, zeros, y + 1, L - 1));
    return gx_alt(b, alts, n);
}

/* Canonical decimal integers in [a, b] (b = INF_U: unbounded), a <= b. */
static int32_t uint_range(gb *b, uint64_t a, uint64_t hi)
{
    int32_t alts[24];
    int n = 0;
    int la = ndig(a), lb = hi == INF_U ? la : ndig(hi);
    uint64_t p10 = 1;
    for (int i = 1; i < la; i++) p10 *= 10;
    for (int L = la; L <= lb; L++) {
        uint64_t lo = L == 1 ? 0 : p10;
        uint64_t top = L >= 20 ? UINT64_MAX : p10 * 10 - 1;
        if (L == 1) top = 9;
        if (lo < a) lo = a;
        if (hi != INF_U && top > hi) top = hi;
        if (lo <= top) {
            char xs[24], ys[24];
            snprintf(xs, sizeof xs, "%0*llu", L, (unsigned long long)lo);
            snprintf(ys, sizeof ys, "%0*llu", L, (unsigned long long)top);
            alts[n++] = same_len(b, xs, ys, L);
        }
        if (L < 20) p10 = L == 1 && la == 1 ? 10 : p10 * 10;
    }
    if (hi == INF_U) /* every longer number */
        alts[n++] = gx_seq2(b, gx_byte_range(b, '1', '9'), gx_rep(b, gx_byte_range(b, '0', '9'), la, -1));
    return gx_alt(b, alts, n);
}

/* Integers in [lo, hi]; has_lo / has_hi say whether each bound exists. */
static int32_t int_range(sc *c, int64_t lo, int has_lo, int64_t hi, int has_hi)
{
    gb *b = c->b;
    if (has_lo && has_hi && lo > hi) return sc_fail(c, ERR_INVALID, "minimum is above maximum: no integer fits");
    int32_t alts[2];
    int n = 0;
    /* non-negative part: [max(lo, 0), hi] */
    if (!has_hi || hi >= 0) {
        uint64_t a = has_lo && lo > 0 ? (uint64_t)lo : 0;
        alts[n++] = uint_range(b, a, has_hi ? (uint64_t)hi : INF_U);
    }
    /* negative part: magnitudes [max(1, -hi), -lo] */
    if (!has_lo || lo < 0) {
        uint64_t a = has_hi && hi < 0 ? (uint64_t)(-(hi + 1)) + 1 : 1;
        uint64_t z = has_lo ? (uint64_t)(-(lo + 1)) + 1 : INF_U;
        alts[n++] = gx_seq2(b, gx_byte(b, '-'), uint_range(b, a, z));
    }
    return gx_alt(b, alts, n);
}

/* Decimal numbers (no exponent) whose magnitude m satisfies A (<|<=) m (<|<=) B, for
 * integers A <= B (B = INF_U: unbounded). */
static int32_t mag_range(gb *b, uint64_t A, int a_ex, uint64_t B, int b_ex)
{
    int32_t any_frac = gx_opt(b, gx_seq2(b, gx_byte(b, '.'), digits(b, 1)));
    int32_t zero_frac = gx_opt(b, gx_seq2(b, gx_byte(b, '.'), gx_rep(b, gx_byte(b, '0'), 1, -1)));
    int32_t nz_frac = gx_seq(b, (int32_t[]){gx_byte(b, '.'), gx_rep(b, gx_byte(b, '0'), 0, -1), gx_byte_range(b, '1', '9'),
                                            digits(b, 0)}, 4);
    int32_t alts[3];
    int n = 0;
    if (B != INF_U && A == B) {
        if (a_ex || b_ex) return gx_none(b);
        return gx_seq2(b, uint_range(b, A, A), zero_frac);
    }
    /* integer part == A */
    alts[n++] = gx_seq2(b, uint_range(b, A, A), a_ex ? nz_frac : any_frac);
    /* A < integer part < B, any fraction */
    if (B == INF_U) alts[n++] = gx_seq2(b, uint_range(b, A + 1, INF_U), any_frac);
    else if (A + 1 <= B - 1) alts[n++] = gx_seq2(b, uint_range(b, A + 1, B - 1), any_frac);
    /* integer part == B: only B itself */
    if (B != INF_U && !b_ex) alts[n++] = gx_seq2(b, uint_range(b, B, B), zero_frac);
    return gx_alt(b, alts, n);
}

/* Reads a bound; 1 if present. Integers only when int_only (else ERR_UNSUPPORTED). */
static int bound(sc *c, const jv_dict *d, const char *k, double *out)
{
    const jv *v = get(d, k);
    if (!v) return 0;
    if (!is_num(v)) {
        sc_fail_key(c, ERR_INVALID, k, "must be a number");
        return -1;
    }
    *out = v->type == JV_INT ? (double)v->u.i : v->u.f;
    if (!isfinite(*out) || fabs(*out) > 9e18) {
        sc_fail_key(c, ERR_UNSUPPORTED, k, "bounds beyond +-9e18 are not supported");
        return -1;
    }
    return 1;
}

static int32_t integer_expr(sc *c, const jv_dict *d)
{
    double mn, mx, xmn, xmx;
    int h1 = bound(c, d, "minimum", &mn), h2 = bound(c, d, "maximum", &mx);
    int h3 = bound(c, d, "exclusiveMinimum", &xmn), h4 = bound(c, d, "exclusiveMaximum", &xmx);
    if (h1 < 0 || h2 < 0 || h3 < 0 || h4 < 0) return -1;
    if (!h1 && !h2 && !h3 && !h4) return gx_call(c->b, integer_rule(c));
    int64_t lo = INT64_MIN, hi = INT64_MAX;
    int has_lo = 0, has_hi = 0;
    if (h1) {
        lo = (int64_t)ceil(mn);
        has_lo = 1;
    }
    if (h3) {
        int64_t v = (int64_t)floor(xmn) + 1;
        if (!has_lo || v > lo) lo = v;
        has_lo = 1;
    }
    if (h2) {
        hi = (int64_t)floor(mx);
        has_hi = 1;
    }
    if (h4) {
        int64_t v = (int64_t)ceil(xmx) - 1;
        if (!has_hi || v < hi) hi = v;
        has_hi = 1;
    }
    return int_range(c, lo, has_lo, hi, has_hi);
}

static int32_t number_expr(sc *c, const jv_dict *d)
{
    gb *b = c->b;
    double mn = 0, mx = 0, xmn = 0, xmx = 0;
    int h1 = bound(c, d, "minimum", &mn), h2 = bound(c, d, "maximum", &mx);
    int h3 = bound(c, d, "exclusiveMinimum", &xmn), h4 = bound(c, d, "exclusiveMaximum", &xmx);
    if (h1 < 0 || h2 < 0 || h3 < 0 || h4 < 0) return -1;
    if (!h1 && !h2 && !h3 && !h4) return gx_call(b, number_rule(c));
    /* the tighter bound of each side, as an integer with an exclusive flag */
    int has_lo = 0, has_hi = 0, lo_ex = 0, hi_ex = 0;
    double lo = 0, hi = 0;
    if (h1) {
        lo = mn;
        has_lo = 1;
    }
    if (h3 && (!has_lo || xmn >= lo)) {
        lo = xmn;
        lo_ex = 1;
        has_lo = 1;
    }
    if (h2) {
        hi = mx;
        has_hi = 1;
    }
    if (h4 && (!has_hi || xmx <= hi)) {
        hi = xmx;
        hi_ex = 1;
        has_hi = 1;
    }
    if ((has_lo && lo != floor(lo)) || (has_hi && hi != floor(hi)))
        return sc_fail(c, ERR_UNSUPPORTED, "bounds on a number must be integers (use integer, or whole-number bounds)");
    if (has_lo && has_hi && (lo > hi || (lo == hi && (lo_ex || hi_ex))))
        return sc_fail(c, ERR_INVALID, "the bounds leave no number");
    int32_t alts[2];
    int n = 0;
    /* x >= 0 part: magnitude in [max(lo,0), hi] */
    if (!has_hi || hi > 0 || (hi == 0 && !hi_ex)) {
        uint64_t A = 0;
        int a_ex = 0;
        if (has_lo && lo >= 0) {
            A = (uint64_t)lo;
            a_ex = lo_ex;
        }
        uint64_t B = has_hi ? (uint64_t)hi : INF_U;
        alts[n++] = mag_range(b, A, a_ex, B, has_hi ? hi_ex : 0);
    }
    /* x < 0 part: x = -m, m in (0 or -hi, -lo] */
    if (!has_lo || lo < 0) {
        uint64_t A = 0;
        int a_ex = 1; /* m > 0: -0 is the zero of the other part */
        if (has_hi && hi < 0) {
            A = (uint64_t)(-hi);
            a_ex = hi_ex;
        }
        uint64_t B = has_lo ? (uint64_t)(-lo) : INF_U;
        alts[n++] = gx_seq2(b, gx_byte(b, '-'), mag_range(b, A, a_ex, B, has_lo ? lo_ex : 0));
    }
    return gx_alt(b, alts, n);
}

/* ------------------------------------------------------------------ strings */

/* Rewrites the byte sets of expression nodes [from, to) so that characters JSON must
 * escape appear escaped (the regex speaks of the decoded string). */
static void escape_sets(sc *c, int32_t from, int32_t to)
{
    gb *b = c->b;
    for (int32_t x = from; x < to && !b->failed; x++) {
        if (b->nodes[x].kind != GX_SET) continue;
        uint8_t s[32];
        memcpy(s, b->sets[b->nodes[x].a], 32);
        int32_t alts[40];
        int n = 0;
        int changed = 0;
        for (int ch = 0; ch < 0x80; ch++) {
            if (!((s[ch >> 3] >> (ch & 7)) & 1)) continue;
            if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7F) continue;
            changed = 1;
            s[ch >> 3] &= (uint8_t)~(1u << (ch & 7));
            char e[8];
            size_t el = 2;
            e[0] = '\\';
            switch (ch) {
            case '"': e[1] = '"'; break;
            case '\\': e[1] = '\\'; break;
            case '\b': e[1] = 'b'; break;
            case '\f': e[1] = 'f'; break;
            case '\n': e[1] = 'n'; break;
            case '\r': e[1] = 'r'; break;
            case '\t': e[1] = 't'; break;
            default: el = (size_t)snprintf(e, sizeof e, "\\u%04x", ch);
            }
            if (n < 39) alts[n++] = gx_lit(b, e, el);
        }
        if (!changed) continue;
        alts[n++] = gx_set(b, s);
        int32_t alt = gx_alt(b, alts, n);
        if (alt < 0) return;
        b->nodes[x] = b->nodes[alt]; /* in place: every user of x now sees the escaped form */
    }
}

#define RE_DATE                                                                                                    \
    "(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|"            \
    "02-(?:0[1-9]|1[0-9]|2[0-8]))|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|"                                      \
    "(?:0[48]|[2468][048]|[13579][26])00)-02-29)"
#define RE_TIME "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"

/* Formats as regexes (anchored), exact for jsonschema's checkers: dates know leap years;
 * time and date-time are RFC 3339 without leap seconds (T/t, Z/z as RFC 3339 allows). */
static const char *format_regex(const char *f)
{
    if (strcmp(f, "date") == 0) return RE_DATE;
    if (strcmp(f, "time") == 0) return RE_TIME;
    if (strcmp(f, "date-time") == 0) return RE_DATE "[Tt]" RE_TIME;
    if (strcmp(f, "duration") == 0)
        return "P(?:(?:[0-9]+Y(?:[0-9]+M)?(?:[0-9]+D)?|[0-9]+M(?:[0-9]+D)?|[0-9]+D)(?:T(?:[0-9]+H(?:[0-9]+M)?(?:[0-9]+S)?|"
               "[0-9]+M(?:[0-9]+S)?|[0-9]+S))?|T(?:[0-9]+H(?:[0-9]+M)?(?:[0-9]+S)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)|[0-9]+W)";
    if (strcmp(f, "email") == 0)
        return "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*"
               "[A-Za-z0-9])?\\.)+[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?";
    if (strcmp(f, "hostname") == 0)
        return "[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*";
    if (strcmp(f, "ipv4") == 0)
        return "(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    if (strcmp(f, "uuid") == 0)
        return "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
    return NULL;
}

static int32_t string_expr(sc *c, const jv_dict *d)
{
    gb *b = c->b;
    const jv *pat = get(d, "pattern"), *fmt = get(d, "format");
    int bad = 0;
    int has_len = get(d, "minLength") || get(d, "maxLength");
    int64_t mn = count_of(c, d, "minLength", 0, &bad);
    int64_t mx = get(d, "maxLength") ? count_of(c, d, "maxLength", -1, &bad) : -1;
    if (bad) return -1;
    if (pat && pat->type != JV_STR) return sc_fail_key(c, ERR_INVALID, "pattern", "must be a string");
    if (fmt && fmt->type != JV_STR) return sc_fail_key(c, ERR_INVALID, "format", "must be a string");
    const char *fre = fmt ? format_regex(fmt->u.s->p) : NULL;
    if (pat && fre) return sc_fail_key(c, ERR_UNSUPPORTED, "format", "format together with pattern is not supported");
    if ((pat || fre) && has_len)
        return sc_fail_key(c, ERR_UNSUPPORTED, "minLength", "minLength/maxLength together with pattern or format are not supported");
    if (!pat && !fre && !has_len) return gx_call(b, string_rule(c));
    if (has_len) {
        if (mx >= 0 && mx < mn) return sc_fail_key(c, ERR_INVALID, "maxLength", "is less than minLength");
        int32_t v[3] = {gx_byte(b, '"'), gx_rep(b, json_char(c), (int32_t)mn, (int32_t)mx), gx_byte(b, '"')};
        return gx_seq(b, v, 3);
    }
    const char *re = pat ? pat->u.s->p : fre;
    size_t rl = pat ? pat->u.s->len : strlen(fre);
    size_t o = path_push_key(c, pat ? "pattern" : "format", pat ? 7 : 6);
    int32_t from = b->n_nodes;
    int as = 1, ae = 1;
    int32_t x = pat ? gx_regex(b, re, rl, c->path, &as, &ae) : gx_regex(b, re, rl, c->path, &(int){0}, &(int){0});
    path_pop(c, o);
    if (x < 0) return -1;
    if (!pat) as = ae = 1;
    /* search semantics: an unanchored end matches anything there */
    if (!as || !ae) {
        gb_cpset cs;
        cps_init(&cs);
        cps_add(&cs, 0, 0x10FFFF);
        int32_t any = gx_rep(b, gx_cpset(b, &cs), 0, -1);
        cps_free(&cs);
        if (!as) x = gx_seq2(b, any, x);
        if (!ae) x = gx_seq2(b, x, any);
    }
    escape_sets(c, from, b->n_nodes);
    int32_t v[3] = {gx_byte(b, '"'), x, gx_byte(b, '"')};
    int32_t body = gx_seq(b, v, 3);
    int32_t r = gb_rule_new(b, c->path, 1);
    gb_rule_set(b, r, body);
    return gx_call(b, r);
}

/* ------------------------------------------------------------------ objects and arrays */

static int32_t sc_schema(sc *c, jv s);

/* A key other than the declared names: "..." over printable ASCII except " and \. */
static int32_t extra_key(sc *c, const jv_dict *props)
{
    gb *b = c->b;
    uint8_t A[32] = {0};
    for (int ch = 0x20; ch < 0x7F; ch++)
        if (ch != '"' && ch != '\\') A[ch >> 3] |= (uint8_t)(1u << (ch & 7));
    int32_t any = gx_rep(b, gx_set(b, A), 0, -1);
    if (!props || props->n == 0) {
        int32_t v[3] = {gx_byte(b, '"'), any, gx_byte(b, '"')};
        return gx_seq(b, v, 3);
    }
    /* all prefixes w of declared names (ASCII part): w then a byte no name continues with,
     * then anything; or w itself when w is no name */
    int32_t *alts = malloc(sizeof(int32_t) * 4096);
    int n = 0;
    if (!alts) return gb_fail(b, ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < props->n && n < 4000; i++) {
        const jv_str *k = props->k[i];
        for (size_t l = 0; l <= k->len && n < 4000; l++) {
            /* skip a prefix already handled by an earlier name */
            int dup = 0;
            for (size_t j = 0; j < i && !dup; j++)
                if (props->k[j]->len >= l && memcmp(props->k[j]->p, k->p, l) == 0) dup = 1;
            if (dup) continue;
            int ascii = 1;
            for (size_t q = 0; q < l; q++)
                if (!((A[(uint8_t)k->p[q] >> 3] >> ((uint8_t)k->p[q] & 7)) & 1)) ascii = 0;
            if (!ascii) break;
            uint8_t next[32];
            memcpy(next, A, 32);
            int is_name = 0;
            for (size_t j = 0; j < props->n; j++) {
                const jv_str *kj = props->k[j];
                if (kj->len == l && memcmp(kj->p, k->p, l) == 0) is_name = 1;
                if (kj->len > l && memcmp(kj->p, k->p, l) == 0) {
                    uint8_t ch = (uint8_t)kj->p[l];
                    next[ch >> 3] &= (uint8_t)~(1u << (ch & 7));
                }
            }
            int32_t pre = gx_lit(b, k->p, l);
            alts[n++] = gx_seq(b, (int32_t[]){pre, gx_set(b, next), any}, 3);
            if (!is_name) alts[n++] = pre;
        }
    }
    int32_t body = gx_alt(b, alts, n);
    free(alts);
    int32_t v[3] = {gx_byte(b, '"'), body, gx_byte(b, '"')};
    return gx_seq(b, v, 3);
}

static int32_t object_expr(sc *c, const jv_dict *d)
{
    gb *b = c->b;
    const jv *pv = get(d, "properties"), *rq = get(d, "required"), *ap = get(d, "additionalProperties");
    if (pv && pv->type != JV_DICT) return sc_fail_key(c, ERR_INVALID, "properties", "must be an object");
    if (rq && rq->type != JV_LIST) return sc_fail_key(c, ERR_INVALID, "required", "must be an array");
    const jv_dict *props = pv ? pv->u.d : NULL;
    size_t np = props ? props->n : 0;
    if (np > SC_MAX_PROPS) return sc_fail_key(c, ERR_INVALID, "properties", "more than 1024 properties");
    /* extras: additionalProperties true or a schema */
    int32_t extra_val = -1;
    if (ap && !(ap->type == JV_BOOL && ap->u.i == 0)) {
        size_t o = path_push_key(c, "additionalProperties", 20);
        extra_val = ap->type == JV_BOOL ? gx_call(b, value_rule(c)) : sc_schema(c, *ap);
        path_pop(c, o);
        if (extra_val < 0) return -1;
    }
    uint8_t *req = calloc(np + 1, 1);
    int32_t *mem = malloc((np + 1) * sizeof(int32_t));
    int32_t *A = malloc((np + 2) * sizeof(int32_t));
    int32_t *B = malloc((np + 2) * sizeof(int32_t));
    int32_t result = -1;
    if (!req || !mem || !A || !B) {
        gb_fail(b, ERR_NOMEM, "out of memory");
        goto out;
    }
    if (rq) {
        for (size_t i = 0; i < rq->u.l->n; i++) {
            jv r = rq->u.l->v[i];
            size_t o = path_push_key(c, "required", 8);
            size_t o2 = path_push_idx(c, i);
            if (r.type != JV_STR) {
                sc_fail(c, ERR_INVALID, "must be a string");
                goto out;
            }
            long at = props ? jv_dict_find(props, r.u.s->p, r.u.s->len) : -1;
            if (at < 0) {
                char msg[300];
                snprintf(msg, sizeof msg, "required property '%.200s' is not in properties", r.u.s->p);
                sc_fail(c, extra_val >= 0 ? ERR_UNSUPPORTED : ERR_INVALID, msg);
                goto out;
            }
            path_pop(c, o2);
            path_pop(c, o);
            req[at] = 1;
        }
    }
    {
        size_t o = path_push_key(c, "properties", 10);
        for (size_t i = 0; i < np; i++) {
            size_t o2 = path_push_key(c, props->k[i]->p, props->k[i]->len);
            int32_t val = sc_schema(c, props->v[i]);
            path_pop(c, o2);
            if (val < 0) {
                path_pop(c, o);
                goto out;
            }
            int32_t key = key_literal(c, props->k[i]);
            int32_t m[3] = {key, around(c, ':'), val};
            mem[i] = gx_seq(b, m, 3);
        }
        path_pop(c, o);
    }
    int32_t xm = -1;
    if (extra_val >= 0) {
        int32_t m[3] = {extra_key(c, props), around(c, ':'), extra_val};
        xm = gx_seq(b, m, 3);
    }
    /* A[i]: the rest once something was written; B[i]: nothing written yet */
    A[np] = xm >= 0 ? gx_rep(b, gx_seq2(b, around(c, ','), xm), 0, -1) : gx_empty(b);
    B[np] = xm >= 0 ? gx_opt(b, gx_seq2(b, xm, A[np])) : gx_empty(b);
    for (size_t k = np; k-- > 0;) {
        int32_t one = gx_seq2(b, around(c, ','), mem[k]);
        A[k] = gx_seq2(b, req[k] ? one : gx_opt(b, one), A[k + 1]);
        int32_t here = gx_seq2(b, mem[k], A[k + 1]);
        B[k] = req[k] ? here : gx_alt2(b, here, B[k + 1]);
    }
    int32_t v[5] = {gx_byte(b, '{'), ws(c), B[0], ws(c), gx_byte(b, '}')};
    int32_t body = gx_seq(b, v, 5);
    int32_t r = gb_rule_new(b, c->path, 1);
    gb_rule_set(b, r, body);
    result = b->failed ? -1 : gx_call(b, r);
out:
    free(req);
    free(mem);
    free(A);
    free(B);
    return result;
}

static int32_t array_expr(sc *c, const jv_dict *d)
{
    gb *b = c->b;
    int bad = 0;
    int64_t mn = count_of(c, d, "minItems", 0, &bad);
    int64_t mx = get(d, "maxItems") ? count_of(c, d, "maxItems", -1, &bad) : -1;
    if (bad) return -1;
    if (mx >= 0 && mx < mn) return sc_fail_key(c, ERR_INVALID, "maxItems", "is less than minItems");
    const jv *it = get(d, "items"), *pi = get(d, "prefixItems");
    if (pi && pi->type != JV_LIST) return sc_fail_key(c, ERR_INVALID, "prefixItems", "must be an array");
    size_t np = pi ? pi->u.l->n : 0;
    if (np > (size_t)b->o->max_repeat) return sc_fail_key(c, ERR_INVALID, "prefixItems", "too many items");
    int32_t rest = -1; /* element schema after the prefix, -1: none allowed */
    if (!it || (it->type == JV_BOOL && it->u.i)) rest = gx_call(b, value_rule(c));
    else if (!(it->type == JV_BOOL && !it->u.i)) {
        size_t o = path_push_key(c, "items", 5);
        rest = sc_schema(c, *it);
        path_pop(c, o);
        if (rest < 0) return -1;
    }
    if (rest < 0 && (mx < 0 || mx > (int64_t)np)) mx = (int64_t)np;
    if (mx >= 0 && mn > mx) return sc_fail_key(c, ERR_INVALID, "minItems", "more items than the schema allows");
    int32_t *el = malloc((np + 1) * sizeof(int32_t));
    if (!el) return gb_fail(b, ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < np; i++) {
        size_t o = path_push_key(c, "prefixItems", 11);
        size_t o2 = path_push_idx(c, i);
        el[i] = sc_schema(c, pi->u.l->v[i]);
        path_pop(c, o2);
        path_pop(c, o);
        if (el[i] < 0) {
            free(el);
            return -1;
        }
    }
    /* tail(i): elements i.. (0-based) once element i-1 was written; built backwards */
    /* elements 0..last-1 are written out; past them an unbounded array repeats `rest` */
    int64_t last = mx;
    if (mx < 0) {
        last = (int64_t)np > mn ? (int64_t)np : mn;
        if (last < 1) last = 1;
    }
    int32_t tail = mx >= 0 ? gx_empty(b) : gx_rep(b, gx_seq2(b, around(c, ','), rest), 0, -1);
    for (int64_t i = last - 1; i >= 1; i--) {
        int32_t e = i < (int64_t)np ? el[i] : rest;
        int32_t one = gx_seq(b, (int32_t[]){around(c, ','), e, tail}, 3);
        tail = i < mn ? one : gx_opt(b, one);
    }
    int32_t inner;
    if (last == 0) inner = gx_empty(b);
    else {
        int32_t first = gx_seq2(b, np > 0 ? el[0] : rest, tail);
        inner = mn >= 1 ? first : gx_opt(b, first);
    }
    free(el);
    int32_t v[5] = {gx_byte(b, '['), ws(c), inner, ws(c), gx_byte(b, ']')};
    int32_t body = gx_seq(b, v, 5);
    int32_t r = gb_rule_new(b, c->path, 1);
    gb_rule_set(b, r, body);
    return b->failed ? -1 : gx_call(b, r);
}

/* ------------------------------------------------------------------ references */

/* Resolves a local JSON pointer ("#", "#/a/b") in the document. */
static int resolve(sc *c, const char *ref, size_t len, jv *out)
{
    if (len == 0 || ref[0] != '#') return -1;
    jv cur = c->doc;
    size_t i = 1;
    if (i < len && ref[i] != '/') return -1;
    while (i < len) {
        i++; /* '/' */
        char tokbuf[256];
        size_t tl = 0;
        while (i < len && ref[i] != '/') {
            char ch = ref[i++];
            if (ch == '~' && i < len && (ref[i] == '0' || ref[i] == '1')) ch = ref[i++] == '0' ? '~' : '/';
            else if (ch == '%' && i + 1 < len) {
                /* percent-encoding in URI fragments */
                int h1 = ref[i], h2 = ref[i + 1];
                int v1 = h1 >= '0' && h1 <= '9' ? h1 - '0' : (h1 | 32) >= 'a' && (h1 | 32) <= 'f' ? (h1 | 32) - 'a' + 10 : -1;
                int v2 = h2 >= '0' && h2 <= '9' ? h2 - '0' : (h2 | 32) >= 'a' && (h2 | 32) <= 'f' ? (h2 | 32) - 'a' + 10 : -1;
                if (v1 >= 0 && v2 >= 0) {
                    ch = (char)(v1 * 16 + v2);
                    i += 2;
                }
            }
            if (tl < sizeof tokbuf - 1) tokbuf[tl++] = ch;
        }
        tokbuf[tl] = 0;
        if (cur.type == JV_DICT) {
            long at = jv_dict_find(cur.u.d, tokbuf, tl);
            if (at < 0) return -1;
            cur = cur.u.d->v[at];
        } else if (cur.type == JV_LIST) {
            char *end;
            long k = strtol(tokbuf, &end, 10);
            if (*end || k < 0 || (size_t)k >= cur.u.l->n) return -1;
            cur = cur.u.l->v[k];
        } else {
            return -1;
        }
    }
    *out = cur;
    return 0;
}

static int32_t ref_expr(sc *c, const jv *ref)
{
    gb *b = c->b;
    if (ref->type != JV_STR) return sc_fail_key(c, ERR_INVALID, "$ref", "must be a string");
    const char *r = ref->u.s->p;
    size_t rl = ref->u.s->len;
    for (int i = 0; i < c->n_refs; i++)
        if (c->refs[i].len == rl && memcmp(c->refs[i].ref, r, rl) == 0) return gx_call(b, c->refs[i].rule);
    jv target;
    if (resolve(c, r, rl, &target)) {
        char msg[300];
        snprintf(msg, sizeof msg, "cannot resolve '%.200s' (only references inside this document: #, #/$defs/name, ...)", r);
        return sc_fail_key(c, ERR_UNSUPPORTED, "$ref", msg);
    }
    if (c->n_refs == c->cap_refs) {
        int nc = c->cap_refs ? c->cap_refs * 2 : 16;
        if (nc > 4096) return sc_fail_key(c, ERR_INVALID, "$ref", "more than 4096 distinct references");
        sc_ref *q = realloc(c->refs, (size_t)nc * sizeof *q);
        if (!q) return gb_fail(b, ERR_NOMEM, "out of memory");
        c->refs = q;
        c->cap_refs = nc;
    }
    /* the rule exists before its body is compiled: recursion calls it */
    char name[300];
    snprintf(name, sizeof name, "%.290s", r[0] == '#' && rl > 1 ? r + 1 : "$");
    /* error paths inside the target read as "$" + pointer with dots */
    for (char *p = name; *p; p++)
        if (*p == '/') *p = '.';
    int32_t rule = gb_rule_new(b, name, 1);
    if (rule < 0) return -1;
    c->refs[c->n_refs++] = (sc_ref){r, rl, rule};
    char saved[sizeof c->path];
    size_t saved_len = c->plen;
    memcpy(saved, c->path, sizeof saved);
    c->plen = (size_t)snprintf(c->path, sizeof c->path, "$%s", r[0] == '#' && rl > 1 ? name : "");
    int32_t body = sc_schema(c, target);
    memcpy(c->path, saved, sizeof saved);
    c->plen = saved_len;
    if (body < 0) return -1;
    gb_rule_set(b, rule, body);
    return gx_call(b, rule);
}

/* ------------------------------------------------------------------ schemas */

static const char *const ANNOTATIONS[] = {
    "title",   "description", "default",  "examples",         "$comment",          "$schema", "$id", "$anchor",
    "$defs",   "definitions", "deprecated", "readOnly",       "writeOnly",         "contentEncoding",
    "contentMediaType", "discriminator", "strict", "name", "$dynamicAnchor", "x-guidance", NULL};
static const char *const HANDLED[] = {"type",      "enum",      "const",            "anyOf",   "oneOf",
                                      "allOf",     "$ref",      "nullable",         "properties", "required",
                                      "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
                                      "pattern",   "format",    "minLength",        "maxLength", "minimum",
                                      "maximum",   "exclusiveMinimum", "exclusiveMaximum", NULL};

static int in_list(const char *const *l, const char *k, size_t n)
{
    for (; *l; l++)
        if (strlen(*l) == n && memcmp(*l, k, n) == 0) return 1;
    return 0;
}

enum { T_NULL = 1, T_BOOL = 2, T_INT = 4, T_NUM = 8, T_STR = 16, T_ARR = 32, T_OBJ = 64, T_ALL = 127 };

static int type_bit(const jv_str *s)
{
    static const char *const names[] = {"null", "boolean", "integer", "number", "string", "array", "object"};
    for (int i = 0; i < 7; i++)
        if (strcmp(s->p, names[i]) == 0) return 1 << i;
    return 0;
}

static int value_type_ok(jv v, int types)
{
    switch (v.type) {
    case JV_NONE: return types & T_NULL;
    case JV_BOOL: return types & T_BOOL;
    case JV_INT: return types & (T_INT | T_NUM);
    case JV_FLOAT: return (types & T_NUM) || ((types & T_INT) && v.u.f == floor(v.u.f));
    case JV_STR: return types & T_STR;
    case JV_LIST: return types & T_ARR;
    case JV_DICT: return types & T_OBJ;
    default: return 0;
    }
}

static int32_t sc_schema(sc *c, jv s)
{
    gb *b = c->b;
    if (b->failed) return -1;
    if (s.type == JV_BOOL) {
        if (s.u.i) return gx_call(b, value_rule(c));
        return sc_fail(c, ERR_INVALID, "schema false matches nothing");
    }
    if (s.type != JV_DICT) return sc_fail(c, ERR_INVALID, "a schema must be an object or a boolean");
    if (++c->depth > SC_MAX_DEPTH) {
        c->depth--;
        return sc_fail(c, ERR_INVALID, "schemas nested deeper than 64");
    }
    const jv_dict *d = s.u.d;
    int32_t result = -1;
    int n_valid = 0; /* validation keywords other than the combinators */
    const jv *ref = get(d, "$ref"), *any = get(d, "anyOf"), *one = get(d, "oneOf"), *all = get(d, "allOf");
    const jv *nullable = get(d, "nullable");
    int add_null = nullable && nullable->type == JV_BOOL && nullable->u.i;
    for (size_t i = 0; i < d->n; i++) {
        const jv_str *k = d->k[i];
        if (in_list(ANNOTATIONS, k->p, k->len)) continue;
        if (!in_list(HANDLED, k->p, k->len)) {
            result = sc_fail_key(c, ERR_UNSUPPORTED, k->p, "unsupported keyword");
            goto out;
        }
        if (strcmp(k->p, "$ref") && strcmp(k->p, "anyOf") && strcmp(k->p, "oneOf") && strcmp(k->p, "allOf") &&
            strcmp(k->p, "nullable"))
            n_valid++;
    }
    if ((ref != NULL) + (any != NULL) + (one != NULL) + (all != NULL) > 1 || ((ref || any || one || all) && n_valid)) {
        result = sc_fail(c, ERR_UNSUPPORTED, "$ref, anyOf, oneOf and allOf next to other validation keywords are not supported");
        goto out;
    }
    if (ref) {
        result = ref_expr(c, ref);
    } else if (any || one || all) {
        const jv *l = any ? any : one ? one : all;
        const char *kw = any ? "anyOf" : one ? "oneOf" : "allOf";
        if (l->type != JV_LIST || l->u.l->n == 0) {
            result = sc_fail_key(c, ERR_INVALID, kw, "must be a non-empty array");
            goto out;
        }
        if (all && l->u.l->n != 1) {
            result = sc_fail_key(c, ERR_UNSUPPORTED, kw, "allOf with more than one schema is not supported");
            goto out;
        }
        if (l->u.l->n > SC_MAX_ENUM) {
            result = sc_fail_key(c, ERR_INVALID, kw, "more than 4096 schemas");
            goto out;
        }
        int32_t *alts = malloc(l->u.l->n * sizeof(int32_t));
        if (!alts) {
            result = gb_fail(b, ERR_NOMEM, "out of memory");
            goto out;
        }
        size_t o = path_push_key(c, kw, strlen(kw));
        size_t i;
        for (i = 0; i < l->u.l->n; i++) {
            size_t o2 = path_push_idx(c, i);
            alts[i] = sc_schema(c, l->u.l->v[i]);
            path_pop(c, o2);
            if (alts[i] < 0) break;
        }
        path_pop(c, o);
        result = i == l->u.l->n ? gx_alt(b, alts, (int)i) : -1;
        free(alts);
    } else {
        /* the types this schema admits */
        int types = 0;
        const jv *ty = get(d, "type"), *en = get(d, "enum"), *cn = get(d, "const");
        if (ty) {
            if (ty->type == JV_STR) {
                types = type_bit(ty->u.s);
                if (!types) {
                    result = sc_fail_key(c, ERR_INVALID, "type", "unknown type name");
                    goto out;
                }
            } else if (ty->type == JV_LIST && ty->u.l->n > 0) {
                for (size_t i = 0; i < ty->u.l->n; i++) {
                    int tb = ty->u.l->v[i].type == JV_STR ? type_bit(ty->u.l->v[i].u.s) : 0;
                    if (!tb) {
                        size_t o = path_push_key(c, "type", 4);
                        path_push_idx(c, i);
                        result = sc_fail(c, ERR_INVALID, "unknown type name");
                        path_pop(c, o);
                        goto out;
                    }
                    types |= tb;
                }
            } else {
                result = sc_fail_key(c, ERR_INVALID, "type", "must be a type name or an array of them");
                goto out;
            }
        } else {
            /* no type: what the other keywords speak of, else anything */
            if (get(d, "properties") || get(d, "required") || get(d, "additionalProperties")) types |= T_OBJ;
            if (get(d, "items") || get(d, "prefixItems") || get(d, "minItems") || get(d, "maxItems")) types |= T_ARR;
            if (get(d, "pattern") || get(d, "format") || get(d, "minLength") || get(d, "maxLength")) types |= T_STR;
            if (get(d, "minimum") || get(d, "maximum") || get(d, "exclusiveMinimum") || get(d, "exclusiveMaximum"))
                types |= T_NUM;
            if (!types) types = T_ALL;
        }
        if (add_null) types |= T_NULL;
        if (en || cn) {
            if (en && cn) {
                result = sc_fail(c, ERR_UNSUPPORTED, "enum together with const is not supported");
                goto out;
            }
            if (n_valid > 1 + (ty != NULL)) {
                result = sc_fail(c, ERR_UNSUPPORTED, "enum/const next to validation keywords other than type are not supported");
                goto out;
            }
            const jv *l = en ? en : cn;
            if (en && (en->type != JV_LIST || en->u.l->n == 0)) {
                result = sc_fail_key(c, ERR_INVALID, "enum", "must be a non-empty array");
                goto out;
            }
            size_t n = en ? en->u.l->n : 1;
            if (n > SC_MAX_ENUM) {
                result = sc_fail_key(c, ERR_INVALID, "enum", "more than 4096 values");
                goto out;
            }
            int32_t *alts = malloc(n * sizeof(int32_t));
            if (!alts) {
                result = gb_fail(b, ERR_NOMEM, "out of memory");
                goto out;
            }
            int k = 0;
            for (size_t i = 0; i < n; i++) {
                jv v = en ? l->u.l->v[i] : *l;
                if (!value_type_ok(v, types)) continue;
                alts[k++] = literal_of(c, v);
            }
            if (k == 0) {
                free(alts);
                result = sc_fail_key(c, ERR_INVALID, en ? "enum" : "const", "no value matches the type");
                goto out;
            }
            result = gx_alt(b, alts, k);
            free(alts);
            goto out;
        }
        int32_t alts[7];
        int n = 0;
        if (types & T_NULL) alts[n++] = gx_lit(b, "null", 4);
        if (types & T_BOOL) alts[n++] = gx_alt2(b, gx_lit(b, "true", 4), gx_lit(b, "false", 5));
        if (types & T_NUM) alts[n++] = number_expr(c, d);
        else if (types & T_INT) alts[n++] = integer_expr(c, d);
        if (types & T_STR) alts[n++] = string_expr(c, d);
        if (types & T_ARR) alts[n++] = array_expr(c, d);
        if (types & T_OBJ) alts[n++] = object_expr(c, d);
        for (int i = 0; i < n; i++)
            if (alts[i] < 0) goto out;
        result = gx_alt(b, alts, n);
    }
out:
    c->depth--;
    if (result >= 0 && add_null && (ref || any || one || all))
        result = gx_alt2(b, result, gx_lit(b, "null", 4));
    return b->failed ? -1 : result;
}

int32_t schema_build(gb *b, const char *text, size_t len, int json_object)
{
    sc c;
    memset(&c, 0, sizeof c);
    c.b = b;
    c.ws_mode = b->o->json_ws;
    c.r_string = c.r_number = c.r_integer = c.r_value = c.r_object_any = c.r_array_any = -1;
    strcpy(c.path, "$");
    c.plen = 1;
    int32_t root = -1;
    if (json_object) {
        int32_t ws0 = ws(&c);
        (void)ws0;
        root = gb_rule_new(b, "json_object", 0);
        gb_rule_set(b, root, gx_call(b, object_any_rule(&c)));
        return b->failed ? -1 : root;
    }
    c.ar = jv_arena_new(len * 32 + ((size_t)1 << 20));
    if (!c.ar) return gb_fail(b, ERR_NOMEM, "out of memory");
    err pe = {0};
    if (jv_parse(c.ar, text, len, 128, &c.doc, &pe)) {
        gb_fail(b, ERR_INVALID, "$: the schema is not valid JSON: %s", pe.msg);
    } else {
        root = gb_rule_new(b, "$", 0);
        int32_t body = sc_schema(&c, c.doc);
        gb_rule_set(b, root, body);
        if (body < 0) root = -1;
    }
    jv_arena_free(c.ar);
    free(c.refs);
    return b->failed ? -1 : root;
}
