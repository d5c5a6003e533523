/* unicode.c — UTF-8, category lookups, the byte-level BPE pre-splitters and
 * NFC, over the tables in unicode_tab.c. See unicode.h. */
#include "unicode.h"

#include <string.h>

int uni_seq_len(uint8_t c)
{
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

int uni_decode(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t c = s[0];
    int len = uni_seq_len(c);
    if (len == 1) { *cp = c; return 1; }
    if (len == 0 || (size_t)len > n) { *cp = UNI_INVALID; return 1; }
    for (int i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) { *cp = UNI_INVALID; return 1; }
    uint32_t v;
    if (len == 2) {
        v = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
    } else if (len == 3) {
        v = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        if (v < 0x800 || (v >= 0xD800 && v <= 0xDFFF)) { *cp = UNI_INVALID; return 1; }
    } else {
        v = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
            ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        if (v < 0x10000 || v > 0x10FFFF) { *cp = UNI_INVALID; return 1; }
    }
    *cp = v;
    return len;
}

int uni_encode(uint32_t cp, uint8_t *out)
{
    if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

static int range_find(const uni_range *r, int n, uint32_t cp)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid].lo) hi = mid - 1;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return mid;
    }
    return -1;
}

uint16_t uni_flags(uint32_t cp)
{
    if (cp < 0x80) return uni_ascii_flags[cp];
    if (cp == UNI_INVALID) return 0;
    int i = range_find(uni_flag_ranges, uni_flag_ranges_n, cp);
    return i < 0 ? 0 : uni_flag_ranges[i].val;
}

int uni_ccc(uint32_t cp)
{
    if (cp < 0x300 || cp == UNI_INVALID) return 0;
    int i = range_find(uni_ccc_ranges, uni_ccc_ranges_n, cp);
    return i < 0 ? 0 : uni_ccc_ranges[i].val;
}

/* ---- pre-tokenizer splits ----
 * Each alternative of the regex is tried in order at the current position and
 * the first that matches wins, as a backtracking regex engine would; the
 * greedy runs with backtracking (\s*[\r\n]+ and \s+(?!\S)) are solved in closed
 * form below. */

typedef struct cursor {
    const uint8_t *s;
    size_t n;
} cursor;

/* Code point and flags at offset p (p < n). */
static uint32_t cp_at(const cursor *c, size_t p, int *len, uint16_t *fl)
{
    uint32_t cp;
    *len = uni_decode(c->s + p, c->n - p, &cp);
    *fl = uni_flags(cp);
    return cp;
}

static int is_crlf(uint32_t cp) { return cp == '\r' || cp == '\n'; }

/* Offset after a run of at most `max` chars whose flags have any of `want`. */
static size_t run_upto(const cursor *c, size_t p, uint16_t want, long max)
{
    for (long k = 0; k < max && p < c->n; k++) {
        int l;
        uint16_t f;
        cp_at(c, p, &l, &f);
        if (!(f & want)) break;
        p += (size_t)l;
    }
    return p;
}

/* Offset after a maximal run of chars whose flags have any of `want`. */
static size_t run_of(const cursor *c, size_t p, uint16_t want) { return run_upto(c, p, want, (long)c->n); }

/* [^\s\p{L}\p{N}]+ : offset after the run (== p if none). */
static size_t run_other(const cursor *c, size_t p)
{
    while (p < c->n) {
        int l;
        uint16_t f;
        cp_at(c, p, &l, &f);
        if (f & (UNI_WS | UNI_L | UNI_N)) break;
        p += (size_t)l;
    }
    return p;
}

static int ascii_lower(uint32_t cp) { return (cp >= 'A' && cp <= 'Z') ? (int)(cp + 32) : (int)cp; }

/* 's|'t|'re|'ve|'m|'ll|'d at p (p is at '\''); returns the match end or 0.
 * icase: ASCII case folding plus U+017F (long s folds to 's'). */
static size_t contraction(const cursor *c, size_t p, int icase)
{
    size_t q = p + 1;
    if (q >= c->n) return 0;
    int l1;
    uint16_t f;
    uint32_t a = cp_at(c, q, &l1, &f);
    if (icase) {
        a = (uint32_t)ascii_lower(a);
        if (a == 0x17F) a = 's';
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return q + (size_t)l1;
    if (a != 'r' && a != 'v' && a != 'l') return 0;
    size_t r = q + (size_t)l1;
    if (r >= c->n) return 0;
    int l2;
    uint32_t b = cp_at(c, r, &l2, &f);
    if (icase) b = (uint32_t)ascii_lower(b);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return r + (size_t)l2;
    return 0;
}

/* \s*[\r\n]+ | \s+(?!\S) | \s+ at p, where p starts a whitespace char. */
static size_t space_tail(const cursor *c, size_t p, int with_newline_rule)
{
    size_t end = p, last_nl = (size_t)-1, last_start = p;
    while (end < c->n) {
        int l;
        uint16_t f;
        uint32_t cp = cp_at(c, end, &l, &f);
        if (!(f & UNI_WS)) break;
        if (is_crlf(cp)) last_nl = end + (size_t)l;
        last_start = end;
        end += (size_t)l;
    }
    /* \s*[\r\n]+: greedy \s* backs off to just before the last newline of the
     * run; [\r\n]+ then takes that newline (the next char is not one). */
    if (with_newline_rule && last_nl != (size_t)-1) return last_nl;
    /* \s+(?!\S): all of the run at the end of text, else all but its last char. */
    if (end == c->n) return end;
    if (last_start > p) return last_start;
    return end; /* \s+ */
}

static size_t next_llama3(const cursor *c, size_t p, int max_digits)
{
    int l0;
    uint16_t f0;
    uint32_t c0 = cp_at(c, p, &l0, &f0);
    size_t q = p + (size_t)l0;
    if (c0 == '\'') {
        size_t e = contraction(c, p, 1);
        if (e) return e;
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (f0 & UNI_L) return run_of(c, q, UNI_L);
    if (!is_crlf(c0) && !(f0 & UNI_N) && q < c->n) {
        int l1;
        uint16_t f1;
        cp_at(c, q, &l1, &f1);
        if (f1 & UNI_L) return run_of(c, q, UNI_L);
    }
    /* \p{N}{1,max} */
    if (f0 & UNI_N) return run_upto(c, q, UNI_N, max_digits - 1);
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t s = (c0 == ' ') ? q : p;
    size_t e = run_other(c, s);
    if (e > s) {
        while (e < c->n && (c->s[e] == '\r' || c->s[e] == '\n')) e++;
        return e;
    }
    /* the rest starts with whitespace (every other char matched above) */
    return space_tail(c, p, 1);
}

static size_t next_gpt2(const cursor *c, size_t p)
{
    int l0;
    uint16_t f0;
    uint32_t c0 = cp_at(c, p, &l0, &f0);
    if (c0 == '\'') {
        size_t e = contraction(c, p, 0);
        if (e) return e;
    }
    size_t s = p;
    uint16_t fs = f0;
    if (c0 == ' ' && p + 1 < c->n) {
        int l1;
        s = p + 1;
        cp_at(c, s, &l1, &fs);
    }
    if (fs & UNI_L) return run_of(c, s, UNI_L);
    if (fs & UNI_N) return run_of(c, s, UNI_N);
    if (!(fs & UNI_WS) && s < c->n) {
        size_t e = run_other(c, s);
        if (e > s) return e;
    }
    if (f0 & UNI_WS) return space_tail(c, p, 0);
    return p + (size_t)l0; /* unreachable in practice: every char class is covered */
}

/* o200k (gpt-4o, gpt-oss) letters come in two overlapping classes:
 * U = [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] ("upper") and W = [\p{Ll}\p{Lm}\p{Lo}\p{M}]
 * ("lower"); Lm, Lo and M belong to both. */
#define O2_U (UNI_LU | UNI_LT | UNI_LM | UNI_LO | UNI_M)
#define O2_W (UNI_LL | UNI_LM | UNI_LO | UNI_M)
#define O2_BOTH (UNI_LM | UNI_LO | UNI_M)

/* U*W+ at s; returns the match end or 0. The greedy U* takes the whole U run;
 * if the char after it is lower-only (Ll), W+ runs on from there. Otherwise
 * U* backs off to its last char that is also in W (Lm/Lo/M), and W+ is that
 * one char: the chars after it in the run are Lu/Lt and the char after the run
 * is in neither class. */
static size_t o200k_upper_lower(const cursor *c, size_t s)
{
    size_t e = s, last_both = (size_t)-1;
    while (e < c->n) {
        int l;
        uint16_t f;
        cp_at(c, e, &l, &f);
        if (!(f & O2_U)) break;
        e += (size_t)l;
        if (f & O2_BOTH) last_both = e;
    }
    if (e < c->n) {
        int l;
        uint16_t f;
        cp_at(c, e, &l, &f);
        if (f & UNI_LL) return run_of(c, e, O2_W);
    }
    return last_both == (size_t)-1 ? 0 : last_both;
}

/* U+W* at s; returns the match end or 0. */
static size_t o200k_upper_plus(const cursor *c, size_t s)
{
    size_t e = run_of(c, s, O2_U);
    return e == s ? 0 : run_of(c, e, O2_W);
}

/* The optional (?i:'s|'t|'re|'ve|'m|'ll|'d) after a word. */
static size_t o200k_suffix(const cursor *c, size_t e)
{
    if (e < c->n && c->s[e] == '\'') {
        size_t x = contraction(c, e, 1);
        if (x) return x;
    }
    return e;
}

/* [^\r\n\p{L}\p{N}]?[U]*[W]+(?i:'s|...)?|[^\r\n\p{L}\p{N}]?[U]+[W]*(?i:'s|...)?|
 * \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t next_o200k(const cursor *c, size_t p)
{
    int l0;
    uint16_t f0;
    uint32_t c0 = cp_at(c, p, &l0, &f0);
    size_t q = p + (size_t)l0;
    /* the optional prefix char is tried first, then no prefix (a mark, being
     * neither L nor N, can be the prefix or start the word itself) */
    int prefix = !is_crlf(c0) && !(f0 & (UNI_L | UNI_N)) && q < c->n;
    size_t e;
    if (prefix && (e = o200k_upper_lower(c, q))) return o200k_suffix(c, e);
    if ((e = o200k_upper_lower(c, p))) return o200k_suffix(c, e);
    if (prefix && (e = o200k_upper_plus(c, q))) return o200k_suffix(c, e);
    if ((e = o200k_upper_plus(c, p))) return o200k_suffix(c, e);
    if (f0 & UNI_N) return run_upto(c, q, UNI_N, 2); /* \p{N}{1,3} */
    size_t s = (c0 == ' ') ? q : p;
    e = run_other(c, s);
    if (e > s) {
        while (e < c->n && (c->s[e] == '\r' || c->s[e] == '\n' || c->s[e] == '/')) e++;
        return e;
    }
    return space_tail(c, p, 1);
}

size_t uni_split(uni_split_kind kind, const uint8_t *text, size_t len, uint32_t *ends)
{
    cursor c = {text, len};
    size_t p = 0, n = 0;
    while (p < len) {
        size_t e;
        if (kind == UNI_SPLIT_GPT2) e = next_gpt2(&c, p);
        else if (kind == UNI_SPLIT_O200K) e = next_o200k(&c, p);
        else e = next_llama3(&c, p, kind == UNI_SPLIT_LLAMA3 ? 3 : 1);
        if (e <= p) e = p + 1; /* never stall */
        ends[n++] = (uint32_t)e;
        p = e;
    }
    return n;
}

/* ---- NFC ---- */

enum { H_SBASE = 0xAC00, H_LBASE = 0x1100, H_VBASE = 0x1161, H_TBASE = 0x11A7,
       H_LCOUNT = 19, H_VCOUNT = 21, H_TCOUNT = 28, H_NCOUNT = 588, H_SCOUNT = 11172 };

static const uni_decomp *decomp_of(uint32_t cp)
{
    int lo = 0, hi = uni_decomps_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < uni_decomps[mid].cp) hi = mid - 1;
        else if (cp > uni_decomps[mid].cp) lo = mid + 1;
        else return &uni_decomps[mid];
    }
    return NULL;
}

static uint32_t compose(uint32_t a, uint32_t b)
{
    if (a >= H_LBASE && a < H_LBASE + H_LCOUNT && b >= H_VBASE && b < H_VBASE + H_VCOUNT)
        return H_SBASE + ((a - H_LBASE) * H_VCOUNT + (b - H_VBASE)) * H_TCOUNT;
    if (a >= H_SBASE && a < H_SBASE + H_SCOUNT && (a - H_SBASE) % H_TCOUNT == 0 &&
        b > H_TBASE && b < H_TBASE + H_TCOUNT)
        return a + (b - H_TBASE);
    int lo = 0, hi = uni_comps_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const uni_comp *m = &uni_comps[mid];
        if (a < m->a || (a == m->a && b < m->b)) hi = mid - 1;
        else if (a > m->a || b > m->b) lo = mid + 1;
        else return m->c;
    }
    return 0;
}

static int is_second(uint32_t cp)
{
    if ((cp >= H_VBASE && cp < H_VBASE + H_VCOUNT) || (cp > H_TBASE && cp < H_TBASE + H_TCOUNT))
        return 1;
    int lo = 0, hi = uni_comp_seconds_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < uni_comp_seconds[mid]) hi = mid - 1;
        else if (cp > uni_comp_seconds[mid]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

/* A code point NFC can never change nor combine with its left neighbour: runs
 * are cut in front of it. */
static int is_boundary(uint32_t cp)
{
    if (cp < 0x300) return 1;
    if (cp == UNI_INVALID) return 1;
    return uni_ccc(cp) == 0 && !decomp_of(cp) && !is_second(cp) &&
           !(cp >= H_SBASE && cp < H_SBASE + H_SCOUNT);
}

static int decompose_into(uint32_t cp, uint32_t *buf, int n, int cap)
{
    if (cp >= H_SBASE && cp < H_SBASE + H_SCOUNT) {
        uint32_t s = cp - H_SBASE;
        if (n + 3 > cap) return n;
        buf[n++] = H_LBASE + s / H_NCOUNT;
        buf[n++] = H_VBASE + (s % H_NCOUNT) / H_TCOUNT;
        if (s % H_TCOUNT) buf[n++] = H_TBASE + s % H_TCOUNT;
        return n;
    }
    const uni_decomp *d = cp == UNI_INVALID ? NULL : decomp_of(cp);
    if (!d) {
        if (n < cap) buf[n++] = cp;
        return n;
    }
    n = decompose_into(d->a, buf, n, cap);
    if (d->b) n = decompose_into(d->b, buf, n, cap);
    return n;
}

/* NFC of one run of code points (decomposed in place, reordered, composed). */
static size_t nfc_run(uint32_t *cps, int n, const uint8_t *raw_invalid, uint8_t *out)
{
    /* canonical ordering: stable insertion sort of each run of non-starters */
    for (int i = 1; i < n; i++) {
        int ci = uni_ccc(cps[i]);
        if (ci == 0) continue;
        int j = i;
        while (j > 0 && uni_ccc(cps[j - 1]) > ci) {
            uint32_t t = cps[j];
            cps[j] = cps[j - 1];
            cps[j - 1] = t;
            j--;
        }
    }
    /* canonical composition */
    int starter = -1, last_ccc = 0, m = 0;
    for (int i = 0; i < n; i++) {
        uint32_t cp = cps[i];
        int cc = uni_ccc(cp);
        if (starter >= 0 && cp != UNI_INVALID) {
            int blocked = (m - 1 != starter) && (last_ccc == 0 || last_ccc >= cc);
            uint32_t comp = blocked ? 0 : compose(cps[starter], cp);
            if (comp) {
                cps[starter] = comp;
                continue;
            }
        }
        if (cc == 0) starter = m;
        last_ccc = cc;
        cps[m++] = cp;
    }
    size_t o = 0;
    for (int i = 0; i < m; i++) {
        if (cps[i] == UNI_INVALID) out[o++] = *raw_invalid++;
        else o += (size_t)uni_encode(cps[i], out + o);
    }
    return o;
}

int uni_nfc_trivial(const uint8_t *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        /* lead bytes of U+0300 and above: 0xCC and up */
        if (text[i] >= 0xCC) return 0;
    }
    return 1;
}

#define NFC_RUN_MAX 256

size_t uni_nfc(const uint8_t *text, size_t len, uint8_t *out)
{
    uint32_t cps[NFC_RUN_MAX];
    uint8_t invalid[NFC_RUN_MAX]; /* raw bytes of UNI_INVALID entries, in order */
    size_t o = 0, p = 0;
    while (p < len) {
        int n = 0, ninv = 0;
        size_t q = p;
        /* one run: a boundary char (or anything at the start) and the
         * non-boundary chars after it, capped so the stack buffer suffices */
        while (q < len) {
            uint32_t cp;
            int l = uni_decode(text + q, len - q, &cp);
            if (q > p && is_boundary(cp)) break;
            if (n > NFC_RUN_MAX - 8) break;
            if (cp == UNI_INVALID) invalid[ninv++] = text[q];
            n = decompose_into(cp, cps, n, NFC_RUN_MAX);
            q += (size_t)l;
        }
        o += nfc_run(cps, n, invalid, out + o);
        p = q;
    }
    return o;
}
