/* grammar_build.c — expressions to automaton.
 *
 * Front ends describe rules as expressions over single bytes (sets), sequences,
 * alternatives, bounded or unbounded repetition and calls of other rules. Here each rule
 * becomes a Thompson NFA (small rules that are not recursive are copied into their callers
 * instead of called: fewer frames and fewer tokens whose fate depends on the stack), the
 * NFA becomes a DFA by subset construction over byte classes and callee rules, rules that
 * can never complete are cut away, left recursion is refused, and all DFAs are numbered
 * into one table (gm_auto). Every step is charged to the compile budget. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar_int.h"
#include "unicode.h"

/* ------------------------------------------------------------------ builder */

static int grow(void **p, int32_t *cap, int32_t need, size_t elem, int32_t max)
{
    if (need <= *cap) return 0;
    if (need > max) return -1;
    int64_t nc = *cap ? (int64_t)*cap * 2 : 64;
    while (nc < need) nc *= 2;
    if (nc > max) nc = max;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return -1;
    *p = q;
    *cap = (int32_t)nc;
    return 0;
}

void gb_init(gb *b, const grammar_opts *o, err *e)
{
    memset(b, 0, sizeof *b);
    b->o = o;
    b->e = e;
}

void gb_free(gb *b)
{
    free(b->nodes);
    free(b->kids);
    free(b->sets);
    free(b->set_hash);
    free(b->rules);
    free(b->names);
    memset(b, 0, sizeof *b);
}

int gb_fail(gb *b, err_code code, const char *fmt, ...)
{
    if (!b->failed) {
        b->failed = 1;
        if (b->e && b->e->code == ERR_OK) {
            b->e->code = code;
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(b->e->msg, sizeof b->e->msg, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

int gb_charge(gb *b, int64_t n, const char *what)
{
    if (b->failed) return -1;
    b->work += n;
    if (b->work > b->o->max_work)
        return gb_fail(b, ERR_INVALID, "%s: too complex (more than %lld compile steps)", what,
                       (long long)b->o->max_work);
    return 0;
}

static int32_t node_new(gb *b, int32_t kind, int32_t a, int32_t bb, int32_t kid)
{
    if (b->failed) return -1;
    if (grow((void **)&b->nodes, &b->cap_nodes, b->n_nodes + 1, sizeof(gx_node), GB_MAX_NODES))
        return gb_fail(b, ERR_INVALID, "grammar too large (more than %d expression nodes)", GB_MAX_NODES);
    gx_node *x = &b->nodes[b->n_nodes];
    x->kind = kind;
    x->a = a;
    x->b = bb;
    x->kid = kid;
    return b->n_nodes++;
}

int32_t gb_rule_new(gb *b, const char *name, int inline_ok)
{
    if (b->failed) return -1;
    if (grow((void **)&b->rules, &b->cap_rules, b->n_rules + 1, sizeof(gb_rule), GB_MAX_RULES))
        return gb_fail(b, ERR_INVALID, "grammar too large (more than %d rules)", GB_MAX_RULES);
    size_t nl = strlen(name);
    if (nl > 200) nl = 200;
    if (grow((void **)&b->names, &b->cap_names, b->n_names + (int32_t)nl + 1, 1, 1 << 26))
        return gb_fail(b, ERR_NOMEM, "out of memory for rule names");
    memcpy(b->names + b->n_names, name, nl);
    b->names[b->n_names + nl] = 0;
    gb_rule *r = &b->rules[b->n_rules];
    r->body = -1;
    r->name = b->n_names;
    r->inline_ok = (uint8_t)(inline_ok != 0);
    b->n_names += (int32_t)nl + 1;
    return b->n_rules++;
}

void gb_rule_set(gb *b, int32_t rule, int32_t body)
{
    if (rule >= 0 && rule < b->n_rules) b->rules[rule].body = body;
}

const char *gb_rule_name(const gb *b, int32_t rule) { return b->names + b->rules[rule].name; }

int32_t gb_rule_find(const gb *b, const char *name, size_t len)
{
    for (int32_t i = 0; i < b->n_rules; i++) {
        const char *n = b->names + b->rules[i].name;
        if (strlen(n) == len && memcmp(n, name, len) == 0) return i;
    }
    return -1;
}

int32_t gx_none(gb *b) { return node_new(b, GX_NONE, 0, 0, -1); }
int32_t gx_empty(gb *b) { return node_new(b, GX_EMPTY, 0, 0, -1); }

static uint32_t set_hash(const uint8_t s[32])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 32; i++) h = (h ^ s[i]) * 16777619u;
    return h;
}

int32_t gx_set(gb *b, const uint8_t set[32])
{
    if (b->failed) return -1;
    int empty = 1;
    for (int i = 0; i < 32; i++)
        if (set[i]) empty = 0;
    if (empty) return gx_none(b);
    if (b->n_sets * 2 >= b->set_hash_cap) {
        int32_t nc = b->set_hash_cap ? b->set_hash_cap * 2 : 256;
        int32_t *h = malloc((size_t)nc * sizeof *h);
        if (!h) return gb_fail(b, ERR_NOMEM, "out of memory");
        for (int32_t i = 0; i < nc; i++) h[i] = -1;
        for (int32_t i = 0; i < b->n_sets; i++) {
            uint32_t k = set_hash(b->sets[i]) & (uint32_t)(nc - 1);
            while (h[k] >= 0) k = (k + 1) & (uint32_t)(nc - 1);
            h[k] = i;
        }
        free(b->set_hash);
        b->set_hash = h;
        b->set_hash_cap = nc;
    }
    uint32_t k = set_hash(set) & (uint32_t)(b->set_hash_cap - 1);
    while (b->set_hash[k] >= 0) {
        if (memcmp(b->sets[b->set_hash[k]], set, 32) == 0) return node_new(b, GX_SET, b->set_hash[k], 0, -1);
        k = (k + 1) & (uint32_t)(b->set_hash_cap - 1);
    }
    if (b->n_sets + 1 > b->cap_sets) {
        int32_t nc = b->cap_sets ? b->cap_sets * 2 : 64;
        void *q = realloc(b->sets, (size_t)nc * 32);
        if (!q) return gb_fail(b, ERR_NOMEM, "out of memory");
        b->sets = q;
        b->cap_sets = nc;
    }
    memcpy(b->sets[b->n_sets], set, 32);
    b->set_hash[k] = b->n_sets;
    return node_new(b, GX_SET, b->n_sets++, 0, -1);
}

int32_t gx_byte_range(gb *b, uint8_t lo, uint8_t hi)
{
    uint8_t s[32] = {0};
    for (int c = lo; c <= hi; c++) s[c >> 3] |= (uint8_t)(1u << (c & 7));
    return gx_set(b, s);
}

int32_t gx_byte(gb *b, uint8_t c) { return gx_byte_range(b, c, c); }

static int32_t list_node(gb *b, int32_t kind, const int32_t *items, int n)
{
    if (b->failed) return -1;
    for (int i = 0; i < n; i++)
        if (items[i] < 0) return -1;
    if (n == 1) return items[0];
    if (n == 0) return kind == GX_SEQ ? gx_empty(b) : gx_none(b);
    if (grow((void **)&b->kids, &b->cap_kids, b->n_kids + n, sizeof(int32_t), GB_MAX_NODES))
        return gb_fail(b, ERR_INVALID, "grammar too large (more than %d expression nodes)", GB_MAX_NODES);
    int32_t at = b->n_kids;
    memcpy(b->kids + at, items, (size_t)n * sizeof(int32_t));
    b->n_kids += n;
    return node_new(b, kind, at, n, -1);
}

int32_t gx_seq(gb *b, const int32_t *items, int n) { return list_node(b, GX_SEQ, items, n); }
int32_t gx_alt(gb *b, const int32_t *items, int n) { return list_node(b, GX_ALT, items, n); }
int32_t gx_seq2(gb *b, int32_t x, int32_t y)
{
    int32_t v[2] = {x, y};
    return gx_seq(b, v, 2);
}

void gx_seqbuf_init(gx_seqbuf *q)
{
    q->n = 0;
    q->acc = -1;
}

int gx_seqbuf_add(gb *b, gx_seqbuf *q, int32_t x)
{
    q->items[q->n++] = x;
    if (q->n == 64) {
        int32_t part = gx_seq(b, q->items, q->n);
        q->acc = q->acc < 0 ? part : gx_seq2(b, q->acc, part);
        q->n = 0;
        if (q->acc < 0) return -1;
    }
    return 0;
}

int32_t gx_seqbuf_end(gb *b, gx_seqbuf *q)
{
    int32_t part = gx_seq(b, q->items, q->n);
    return q->acc < 0 ? part : gx_seq2(b, q->acc, part);
}

int gb_parse_count(const unsigned char *s, size_t n, size_t *i, int64_t *v)
{
    if (*i >= n || s[*i] < '0' || s[*i] > '9') return 0;
    *v = 0;
    while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
        *v = *v * 10 + (s[(*i)++] - '0');
        if (*v > 100000000) *v = 100000000;
    }
    return 1;
}

int32_t gx_alt2(gb *b, int32_t x, int32_t y)
{
    int32_t v[2] = {x, y};
    return gx_alt(b, v, 2);
}

int32_t gx_lit(gb *b, const char *s, size_t n)
{
    if (n == 0) return gx_empty(b);
    if (n == 1) return gx_byte(b, (uint8_t)s[0]);
    int32_t tmp[64];
    int32_t acc = -1;
    size_t i = 0;
    while (i < n) {
        size_t k = n - i < 64 ? n - i : 64;
        for (size_t j = 0; j < k; j++) tmp[j] = gx_byte(b, (uint8_t)s[i + j]);
        int32_t part = gx_seq(b, tmp, (int)k);
        acc = acc < 0 ? part : gx_seq2(b, acc, part);
        i += k;
    }
    return acc;
}

int32_t gx_rep(gb *b, int32_t x, int32_t min, int32_t max)
{
    if (x < 0 || b->failed) return -1;
    if (min < 0 || (max >= 0 && max < min)) return gb_fail(b, ERR_INVALID, "repetition {%d,%d} is empty", min, max);
    if (min == 1 && max == 1) return x;
    if (max == 0) return gx_empty(b);
    return node_new(b, GX_REP, min, max, x);
}

int32_t gx_opt(gb *b, int32_t x) { return gx_rep(b, x, 0, 1); }
int32_t gx_call(gb *b, int32_t rule) { return node_new(b, GX_CALL, rule, 0, -1); }

/* ------------------------------------------------------------------ code-point sets */

void cps_init(gb_cpset *c) { memset(c, 0, sizeof *c); }
void cps_free(gb_cpset *c)
{
    free(c->r);
    memset(c, 0, sizeof *c);
}

int cps_add(gb_cpset *c, uint32_t lo, uint32_t hi)
{
    if (lo > hi) return 0;
    if (hi > 0x10FFFF) hi = 0x10FFFF;
    if (lo > 0x10FFFF) return 0;
    if (c->n + 1 > c->cap) {
        int nc = c->cap ? c->cap * 2 : 16;
        if (nc > (1 << 20)) return -1;
        uint32_t *q = realloc(c->r, (size_t)nc * 2 * sizeof *q);
        if (!q) return -1;
        c->r = q;
        c->cap = nc;
    }
    c->r[2 * c->n] = lo;
    c->r[2 * c->n + 1] = hi;
    c->n++;
    return 0;
}

static int cmp_pair(const void *x, const void *y)
{
    const uint32_t *a = x, *b = y;
    return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
}

int cps_normalize(gb_cpset *c)
{
    if (c->n <= 1) return 0;
    qsort(c->r, (size_t)c->n, 2 * sizeof(uint32_t), cmp_pair);
    int w = 0;
    for (int i = 1; i < c->n; i++) {
        uint32_t lo = c->r[2 * i], hi = c->r[2 * i + 1];
        if (lo <= c->r[2 * w + 1] + 1) {
            if (hi > c->r[2 * w + 1]) c->r[2 * w + 1] = hi;
        } else {
            w++;
            c->r[2 * w] = lo;
            c->r[2 * w + 1] = hi;
        }
    }
    c->n = w + 1;
    return 0;
}

int cps_negate(gb_cpset *c)
{
    cps_normalize(c);
    gb_cpset o;
    cps_init(&o);
    uint32_t next = 0;
    for (int i = 0; i < c->n; i++) {
        if (c->r[2 * i] > next && cps_add(&o, next, c->r[2 * i] - 1)) goto fail;
        next = c->r[2 * i + 1] + 1;
    }
    if (next <= 0x10FFFF && cps_add(&o, next, 0x10FFFF)) goto fail;
    cps_free(c);
    *c = o;
    return 0;
fail:
    cps_free(&o);
    return -1;
}

static int utf8_len(uint32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

typedef struct seqs {
    int32_t *alts;
    int n, cap;
} seqs;

/* Splits [lo, hi] (same UTF-8 length, no surrogates) until every byte position of the
 * encodings is one contiguous range, and appends one sequence of byte ranges per piece. */
static int utf8_split(gb *b, seqs *out, uint32_t lo, uint32_t hi, int depth)
{
    if (b->failed || depth > 64) return -1;
    static const uint32_t bounds[3] = {0x7F, 0x7FF, 0xFFFF};
    for (int i = 0; i < 3; i++)
        if (lo <= bounds[i] && hi > bounds[i]) {
            if (utf8_split(b, out, lo, bounds[i], depth + 1)) return -1;
            return utf8_split(b, out, bounds[i] + 1, hi, depth + 1);
        }
    int n = utf8_len(lo);
    for (int i = 1; i < n; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if ((lo & m) != 0) {
                if (utf8_split(b, out, lo, lo | m, depth + 1)) return -1;
                return utf8_split(b, out, (lo | m) + 1, hi, depth + 1);
            }
            if ((hi & m) != m) {
                if (utf8_split(b, out, lo, (hi & ~m) - 1, depth + 1)) return -1;
                return utf8_split(b, out, hi & ~m, hi, depth + 1);
            }
        }
    }
    uint8_t a[4], z[4];
    uni_encode(lo, a);
    uni_encode(hi, z);
    int32_t parts[4];
    for (int k = 0; k < n; k++) parts[k] = gx_byte_range(b, a[k], z[k]);
    int32_t s = gx_seq(b, parts, n);
    if (s < 0) return -1;
    if (out->n + 1 > out->cap) {
        int nc = out->cap ? out->cap * 2 : 16;
        int32_t *q = realloc(out->alts, (size_t)nc * sizeof *q);
        if (!q) return gb_fail(b, ERR_NOMEM, "out of memory");
        out->alts = q;
        out->cap = nc;
    }
    out->alts[out->n++] = s;
    return 0;
}

int32_t gx_cpset(gb *b, gb_cpset *c)
{
    if (b->failed) return -1;
    cps_normalize(c);
    seqs s = {0};
    for (int i = 0; i < c->n; i++) {
        uint32_t lo = c->r[2 * i], hi = c->r[2 * i + 1];
        /* surrogates are not characters */
        if (lo < 0xD800 && hi >= 0xD800) {
            if (utf8_split(b, &s, lo, 0xD7FF, 0)) goto fail;
            lo = 0xE000;
        }
        if (lo >= 0xD800 && lo <= 0xDFFF) lo = 0xE000;
        if (lo > hi) continue;
        if (utf8_split(b, &s, lo, hi, 0)) goto fail;
    }
    /* single-byte pieces share one set */
    {
        uint8_t one[32] = {0};
        int any = 0, w = 0;
        int32_t *keep = s.alts;
        for (int i = 0; i < s.n; i++) {
            gx_node *x = &b->nodes[s.alts[i]];
            if (x->kind == GX_SET) {
                for (int k = 0; k < 32; k++) one[k] |= b->sets[x->a][k];
                any = 1;
            } else {
                keep[w++] = s.alts[i];
            }
        }
        if (any) {
            int32_t one_set = gx_set(b, one);
            if (one_set < 0) goto fail;
            if (w + 1 > s.cap) {
                int32_t *q = realloc(s.alts, (size_t)(w + 1) * sizeof *q);
                if (!q) goto fail;
                s.alts = q;
            }
            s.alts[w++] = one_set;
        }
        s.n = w;
    }
    int32_t r = gx_alt(b, s.alts, s.n);
    free(s.alts);
    return r;
fail:
    free(s.alts);
    return b->failed ? -1 : gb_fail(b, ERR_NOMEM, "out of memory");
}

int32_t gx_cp(gb *b, uint32_t cp)
{
    uint8_t u[4];
    int n = uni_encode(cp, u);
    return gx_lit(b, (const char *)u, (size_t)n);
}

/* ------------------------------------------------------------------ NFA */

enum { E_EPS = 0, E_SET = 1, E_CALL = 2 };

typedef struct nfa_edge {
    int32_t from, to, kind, label;
} nfa_edge;

typedef struct nfa {
    int32_t n_states;
    nfa_edge *e;
    int32_t n_e, cap_e;
} nfa;

#define NFA_MAX_EDGES (1 << 21)

typedef struct build_ctx {
    gb *b;
    nfa *n;
    const uint8_t *inl; /* (n_rules) rule is copied into callers */
    int depth;
} build_ctx;

static int32_t nfa_state(build_ctx *c)
{
    if (c->n->n_states >= NFA_MAX_EDGES)
        return gb_fail(c->b, ERR_INVALID, "grammar too large (more than %d automaton states)", NFA_MAX_EDGES);
    return c->n->n_states++;
}

static int nfa_edge_add(build_ctx *c, int32_t from, int32_t to, int32_t kind, int32_t label)
{
    nfa *n = c->n;
    if (grow((void **)&n->e, &n->cap_e, n->n_e + 1, sizeof(nfa_edge), NFA_MAX_EDGES))
        return gb_fail(c->b, ERR_INVALID, "grammar too large (more than %d automaton edges)", NFA_MAX_EDGES);
    n->e[n->n_e++] = (nfa_edge){from, to, kind, label};
    if ((n->n_e & 1023) == 0 && gb_charge(c->b, 1024, "grammar")) return -1;
    return 0;
}

static int nfa_build(build_ctx *c, int32_t x, int32_t s, int32_t t)
{
    gb *b = c->b;
    if (b->failed) return -1;
    if (++c->depth > 2000) return gb_fail(b, ERR_INVALID, "grammar nested too deeply");
    const gx_node *nd = &b->nodes[x];
    int rc = 0;
    switch (nd->kind) {
    case GX_NONE: break;
    case GX_EMPTY: rc = nfa_edge_add(c, s, t, E_EPS, 0); break;
    case GX_SET: rc = nfa_edge_add(c, s, t, E_SET, nd->a); break;
    case GX_CALL:
        if (c->inl[nd->a]) rc = nfa_build(c, b->rules[nd->a].body, s, t);
        else rc = nfa_edge_add(c, s, t, E_CALL, nd->a);
        break;
    case GX_SEQ: {
        int32_t cur = s;
        for (int32_t i = 0; i < nd->b && !rc; i++) {
            int32_t kid = b->kids[nd->a + i];
            int32_t nx = i == nd->b - 1 ? t : nfa_state(c);
            if (nx < 0) {
                rc = -1;
                break;
            }
            rc = nfa_build(c, kid, cur, nx);
            cur = nx;
        }
        break;
    }
    case GX_ALT:
        for (int32_t i = 0; i < nd->b && !rc; i++) {
            /* a private entry per branch keeps loops inside branches apart */
            int32_t m = nfa_state(c);
            if (m < 0 || nfa_edge_add(c, s, m, E_EPS, 0)) {
                rc = -1;
                break;
            }
            rc = nfa_build(c, b->kids[nd->a + i], m, t);
        }
        break;
    case GX_REP: {
        int32_t cur = s;
        int32_t kid = nd->kid, min = nd->a, max = nd->b;
        for (int32_t i = 0; i < min && !rc; i++) {
            int32_t m = nfa_state(c);
            if (m < 0) {
                rc = -1;
                break;
            }
            rc = nfa_build(c, kid, cur, m);
            cur = m;
        }
        if (rc) break;
        if (max < 0) {
            int32_t h = nfa_state(c), m = nfa_state(c);
            if (h < 0 || m < 0) {
                rc = -1;
                break;
            }
            rc = nfa_edge_add(c, cur, h, E_EPS, 0);
            if (!rc) rc = nfa_build(c, kid, h, m);
            if (!rc) rc = nfa_edge_add(c, m, h, E_EPS, 0);
            if (!rc) rc = nfa_edge_add(c, h, t, E_EPS, 0);
        } else {
            for (int32_t i = min; i < max && !rc; i++) {
                int32_t m = nfa_state(c);
                if (m < 0) {
                    rc = -1;
                    break;
                }
                rc = nfa_edge_add(c, cur, t, E_EPS, 0);
                if (!rc) rc = nfa_build(c, kid, cur, m);
                cur = m;
            }
            if (!rc) rc = nfa_edge_add(c, cur, t, E_EPS, 0);
        }
        break;
    }
    default: rc = gb_fail(b, ERR_INVALID, "internal: bad expression node");
    }
    c->depth--;
    return rc ? -1 : 0;
}

/* ------------------------------------------------------------------ inlining decisions */

/* Expanded size of an expression when callees marked inline are copied (saturating). */
static int64_t expr_size(const gb *b, int32_t x, const int64_t *rule_size, const uint8_t *inl, int depth)
{
    if (depth > 2000) return INT64_MAX / 4;
    const gx_node *nd = &b->nodes[x];
    int64_t s = 1;
    switch (nd->kind) {
    case GX_CALL: s = inl[nd->a] ? rule_size[nd->a] : 1; break;
    case GX_SEQ:
    case GX_ALT:
        for (int32_t i = 0; i < nd->b; i++) {
            s += expr_size(b, b->kids[nd->a + i], rule_size, inl, depth + 1);
            if (s > INT64_MAX / 8) return INT64_MAX / 8;
        }
        break;
    case GX_REP: {
        int64_t k = expr_size(b, nd->kid, rule_size, inl, depth + 1);
        int64_t reps = nd->b < 0 ? (nd->a > 0 ? nd->a : 1) + 1 : nd->b;
        if (k > 0 && reps > (INT64_MAX / 8) / k) return INT64_MAX / 8;
        s = k * reps + 2;
        break;
    }
    default: break;
    }
    return s;
}

/* Rules called from expression x (each added once per call of collect, via stamp). */
static int collect_calls(const gb *b, int32_t x, int32_t **out, int32_t *n, int32_t *cap, int depth)
{
    if (depth > 2000) return -1;
    const gx_node *nd = &b->nodes[x];
    switch (nd->kind) {
    case GX_CALL:
        if (grow((void **)out, cap, *n + 1, sizeof(int32_t), 1 << 26)) return -1;
        (*out)[(*n)++] = nd->a;
        break;
    case GX_SEQ:
    case GX_ALT:
        for (int32_t i = 0; i < nd->b; i++)
            if (collect_calls(b, b->kids[nd->a + i], out, n, cap, depth + 1)) return -1;
        break;
    case GX_REP: return collect_calls(b, nd->kid, out, n, cap, depth + 1);
    default: break;
    }
    return 0;
}

#define INLINE_MAX 256

/* Marks rules to copy into their callers: inline_ok, not on a call cycle, small once
 * their own inlinable callees are copied. Callees are decided before callers (DFS). */
static int decide_inline(gb *b, uint8_t *inl)
{
    int32_t nr = b->n_rules;
    int32_t *call_off = calloc((size_t)nr + 1, sizeof(int32_t));
    int32_t *calls = NULL, n_calls = 0, cap_calls = 0;
    uint8_t *color = calloc((size_t)nr, 1); /* 0 new, 1 on stack, 2 done */
    uint8_t *cyc = calloc((size_t)nr, 1);
    int64_t *size = calloc((size_t)nr, sizeof(int64_t));
    int32_t *stk = malloc((size_t)nr * 2 * sizeof(int32_t) + 16);
    int rc = -1;
    if (!call_off || !color || !cyc || !size || !stk) goto out;
    for (int32_t r = 0; r < nr; r++) {
        call_off[r] = n_calls;
        if (b->rules[r].body >= 0 && collect_calls(b, b->rules[r].body, &calls, &n_calls, &cap_calls, 0)) {
            gb_fail(b, ERR_INVALID, "grammar nested too deeply");
            goto out;
        }
    }
    call_off[nr] = n_calls;
    /* iterative DFS: stk holds (rule, next call index) */
    for (int32_t root = 0; root < nr; root++) {
        if (color[root]) continue;
        int sp = 0;
        stk[0] = root;
        stk[1] = call_off[root];
        color[root] = 1;
        sp = 1;
        while (sp > 0) {
            int32_t r = stk[2 * (sp - 1)], *ci = &stk[2 * (sp - 1) + 1];
            if (*ci < call_off[r + 1]) {
                int32_t callee = calls[(*ci)++];
                if (color[callee] == 1) {
                    /* a cycle: every rule on the stack from callee up is recursive */
                    for (int k = sp - 1; k >= 0; k--) {
                        cyc[stk[2 * k]] = 1;
                        if (stk[2 * k] == callee) break;
                    }
                } else if (color[callee] == 0) {
                    color[callee] = 1;
                    stk[2 * sp] = callee;
                    stk[2 * sp + 1] = call_off[callee];
                    sp++;
                }
            } else {
                color[r] = 2;
                size[r] = b->rules[r].body >= 0 ? expr_size(b, b->rules[r].body, size, inl, 0) : 1;
                inl[r] = b->rules[r].inline_ok && !cyc[r] && size[r] <= INLINE_MAX && b->rules[r].body >= 0;
                sp--;
            }
        }
    }
    /* a rule on a cycle found after its callee finished: never inline it */
    for (int32_t r = 0; r < nr; r++)
        if (cyc[r]) inl[r] = 0;
    rc = 0;
out:
    if (rc && !b->failed) gb_fail(b, ERR_NOMEM, "out of memory");
    free(call_off);
    free(calls);
    free(color);
    free(cyc);
    free(size);
    free(stk);
    return rc;
}

/* ------------------------------------------------------------------ DFA per rule */

typedef struct rule_dfa {
    int32_t n;         /* states */
    int32_t *trans;    /* (n * n_classes) */
    uint8_t *final;
    int32_t *call_off; /* (n + 1) */
    int32_t *call_rule, *call_to;
    int32_t n_calls;
} rule_dfa;

static void rule_dfa_free(rule_dfa *d)
{
    free(d->trans);
    free(d->final);
    free(d->call_off);
    free(d->call_rule);
    free(d->call_to);
    memset(d, 0, sizeof *d);
}

typedef struct subset_ctx {
    gb *b;
    const char *rule_name;
    const nfa *n;
    int32_t *eoff;     /* CSR of edges by from: (n_states + 1) */
    int32_t *eidx;
    int32_t n_classes;
    uint8_t *set_cls;  /* (n_sets * n_classes): set contains class */
    /* DFA states as sorted NFA-state lists in one pool */
    int32_t *pool;
    int64_t n_pool, cap_pool;
    int64_t *st_off; /* (n_dfa + 1) */
    int32_t n_dfa, cap_dfa;
    int32_t *hash;
    uint32_t hash_cap;
    uint32_t *mark;
    uint32_t stamp;
    int32_t *stack, *tmp;
} subset_ctx;

static uint32_t list_hash(const int32_t *v, int32_t n)
{
    uint32_t h = 2166136261u ^ (uint32_t)n;
    for (int32_t i = 0; i < n; i++) h = (h ^ (uint32_t)v[i]) * 16777619u;
    return h;
}

static int cmp_i32(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return a < b ? -1 : a > b;
}

/* Epsilon closure of seeds[0..n) into ctx->tmp (sorted); returns its size. */
static int32_t closure(subset_ctx *c, const int32_t *seeds, int32_t n)
{
    c->stamp++;
    int32_t sp = 0, m = 0;
    for (int32_t i = 0; i < n; i++)
        if (c->mark[seeds[i]] != c->stamp) {
            c->mark[seeds[i]] = c->stamp;
            c->stack[sp++] = seeds[i];
        }
    while (sp > 0) {
        int32_t s = c->stack[--sp];
        c->tmp[m++] = s;
        for (int32_t k = c->eoff[s]; k < c->eoff[s + 1]; k++) {
            const nfa_edge *e = &c->n->e[c->eidx[k]];
            if (e->kind == E_EPS && c->mark[e->to] != c->stamp) {
                c->mark[e->to] = c->stamp;
                c->stack[sp++] = e->to;
            }
        }
    }
    qsort(c->tmp, (size_t)m, sizeof(int32_t), cmp_i32);
    return m;
}

/* DFA state for the set in ctx->tmp[0..m), created if new; -1 on failure. */
static int32_t dfa_intern(subset_ctx *c, int32_t m, int32_t max_states)
{
    uint32_t h = list_hash(c->tmp, m);
    if ((uint32_t)c->n_dfa * 2 + 2 >= c->hash_cap) {
        uint32_t nc = c->hash_cap ? c->hash_cap * 2 : 1024;
        int32_t *nh = malloc((size_t)nc * sizeof *nh);
        if (!nh) return gb_fail(c->b, ERR_NOMEM, "out of memory");
        for (uint32_t i = 0; i < nc; i++) nh[i] = -1;
        for (int32_t d = 0; d < c->n_dfa; d++) {
            uint32_t k = list_hash(c->pool + c->st_off[d], (int32_t)(c->st_off[d + 1] - c->st_off[d])) & (nc - 1);
            while (nh[k] >= 0) k = (k + 1) & (nc - 1);
            nh[k] = d;
        }
        free(c->hash);
        c->hash = nh;
        c->hash_cap = nc;
    }
    uint32_t k = h & (c->hash_cap - 1);
    while (c->hash[k] >= 0) {
        int32_t d = c->hash[k];
        int64_t len = c->st_off[d + 1] - c->st_off[d];
        if (len == m && memcmp(c->pool + c->st_off[d], c->tmp, (size_t)m * sizeof(int32_t)) == 0) return d;
        k = (k + 1) & (c->hash_cap - 1);
    }
    if (c->n_dfa >= max_states)
        return gb_fail(c->b, ERR_INVALID, "%s: too complex (more than %d automaton states in one rule)", c->rule_name,
                       max_states);
    if (c->n_pool + m > c->cap_pool) {
        int64_t nc = c->cap_pool ? c->cap_pool * 2 : 4096;
        while (nc < c->n_pool + m) nc *= 2;
        if (nc > ((int64_t)1 << 28)) return gb_fail(c->b, ERR_INVALID, "grammar too complex (automaton)");
        int32_t *q = realloc(c->pool, (size_t)nc * sizeof(int32_t));
        if (!q) return gb_fail(c->b, ERR_NOMEM, "out of memory");
        c->pool = q;
        c->cap_pool = nc;
    }
    if (c->n_dfa + 2 > c->cap_dfa) {
        int32_t nc = c->cap_dfa ? c->cap_dfa * 2 : 256;
        int64_t *q = realloc(c->st_off, (size_t)nc * sizeof(int64_t));
        if (!q) return gb_fail(c->b, ERR_NOMEM, "out of memory");
        c->st_off = q;
        c->cap_dfa = nc;
    }
    memcpy(c->pool + c->n_pool, c->tmp, (size_t)m * sizeof(int32_t));
    c->st_off[c->n_dfa] = c->n_pool;
    c->n_pool += m;
    c->st_off[c->n_dfa + 1] = c->n_pool;
    c->hash[k] = c->n_dfa;
    return c->n_dfa++;
}

#define DFA_MAX_STATES 20000
#define AUTO_MAX_STATES 100000

/* Subset construction of one rule's NFA (start 0, final 1). */
static int nfa_to_dfa(gb *b, const char *rule_name, const nfa *n, int32_t n_classes, const uint8_t *set_cls,
                      rule_dfa *out)
{
    subset_ctx c;
    memset(&c, 0, sizeof c);
    c.b = b;
    c.rule_name = rule_name;
    c.n = n;
    c.n_classes = n_classes;
    c.set_cls = (uint8_t *)set_cls;
    int32_t ns = n->n_states;
    int rc = -1;
    int32_t *cls_cnt = NULL, *cls_list = NULL, *moves = NULL, *call_seen = NULL, *rule_list = NULL;
    int32_t *trans = NULL, *call_off = NULL, *call_rule = NULL, *call_to = NULL;
    uint8_t *final = NULL;
    int32_t cap_states = 0, n_calls = 0, cap_calls = 0;
    c.eoff = calloc((size_t)ns + 1, sizeof(int32_t));
    c.eidx = malloc((size_t)(n->n_e + 1) * sizeof(int32_t));
    c.mark = calloc((size_t)ns, sizeof(uint32_t));
    c.stack = malloc((size_t)ns * sizeof(int32_t));
    c.tmp = malloc((size_t)ns * sizeof(int32_t));
    moves = malloc((size_t)(n->n_e + 1) * sizeof(int32_t));
    cls_cnt = malloc((size_t)(n_classes + 1) * sizeof(int32_t));
    if (!c.eoff || !c.eidx || !c.mark || !c.stack || !c.tmp || !moves || !cls_cnt) goto nomem;
    for (int32_t i = 0; i < n->n_e; i++) c.eoff[n->e[i].from + 1]++;
    for (int32_t i = 0; i < ns; i++) c.eoff[i + 1] += c.eoff[i];
    {
        int32_t *fill = malloc((size_t)ns * sizeof(int32_t));
        if (!fill) goto nomem;
        memcpy(fill, c.eoff, (size_t)ns * sizeof(int32_t));
        for (int32_t i = 0; i < n->n_e; i++) c.eidx[fill[n->e[i].from]++] = i;
        free(fill);
    }
    int32_t seed = 0;
    int32_t m = closure(&c, &seed, 1);
    if (dfa_intern(&c, m, DFA_MAX_STATES) < 0) goto fail;
    for (int32_t d = 0; d < c.n_dfa; d++) {
        if (d + 1 > cap_states) {
            int32_t nc = cap_states ? cap_states * 2 : 64;
            int32_t *t2 = realloc(trans, (size_t)nc * (size_t)n_classes * sizeof(int32_t));
            if (!t2) goto nomem;
            trans = t2;
            uint8_t *f2 = realloc(final, (size_t)nc);
            if (!f2) goto nomem;
            final = f2;
            int32_t *c2 = realloc(call_off, ((size_t)nc + 1) * sizeof(int32_t));
            if (!c2) goto nomem;
            call_off = c2;
            cap_states = nc;
        }
        const int64_t lo = c.st_off[d], hi = c.st_off[d + 1];
        if (gb_charge(b, (hi - lo) * 4 + n_classes, "grammar")) goto fail;
        final[d] = 0;
        /* byte moves: for each class, the targets of set edges containing it */
        for (int32_t k = 0; k < n_classes; k++) {
            int32_t nm = 0;
            for (int64_t i = lo; i < hi; i++) {
                int32_t s = c.pool[i];
                for (int32_t q = c.eoff[s]; q < c.eoff[s + 1]; q++) {
                    const nfa_edge *e = &n->e[c.eidx[q]];
                    if (e->kind == E_SET && set_cls[(size_t)e->label * (size_t)n_classes + (size_t)k])
                        moves[nm++] = e->to;
                }
            }
            int32_t tgt = -1;
            if (nm) {
                if (gb_charge(b, nm, "grammar")) goto fail;
                int32_t mm = closure(&c, moves, nm);
                tgt = dfa_intern(&c, mm, DFA_MAX_STATES);
                if (tgt < 0) goto fail;
            }
            trans[(size_t)d * (size_t)n_classes + (size_t)k] = tgt;
        }
        /* re-read: the pool may have moved */
        const int64_t lo2 = c.st_off[d], hi2 = c.st_off[d + 1];
        call_off[d] = n_calls;
        /* call moves, one per distinct callee */
        int32_t nr = 0;
        for (int64_t i = lo2; i < hi2; i++) {
            int32_t s = c.pool[i];
            if (s == 1) final[d] = 1;
            for (int32_t q = c.eoff[s]; q < c.eoff[s + 1]; q++) {
                const nfa_edge *e = &n->e[c.eidx[q]];
                if (e->kind == E_CALL) moves[nr++] = e->label;
            }
        }
        qsort(moves, (size_t)nr, sizeof(int32_t), cmp_i32);
        for (int32_t i = 0; i < nr; i++) {
            if (i > 0 && moves[i] == moves[i - 1]) continue;
            int32_t callee = moves[i];
            int32_t nt = 0;
            const int64_t lo3 = c.st_off[d], hi3 = c.st_off[d + 1];
            int32_t *tg = c.stack; /* closure() reuses stack; copy targets first */
            int32_t *targets = malloc((size_t)(n->n_e + 1) * sizeof(int32_t));
            if (!targets) goto nomem;
            for (int64_t j = lo3; j < hi3; j++) {
                int32_t s = c.pool[j];
                for (int32_t q = c.eoff[s]; q < c.eoff[s + 1]; q++) {
                    const nfa_edge *e = &n->e[c.eidx[q]];
                    if (e->kind == E_CALL && e->label == callee) targets[nt++] = e->to;
                }
            }
            (void)tg;
            int32_t mm = closure(&c, targets, nt);
            free(targets);
            int32_t tgt = dfa_intern(&c, mm, DFA_MAX_STATES);
            if (tgt < 0) goto fail;
            if (grow((void **)&call_rule, &cap_calls, n_calls + 1, sizeof(int32_t), 1 << 26)) goto nomem;
            int32_t cap2 = cap_calls;
            int32_t *ct = realloc(call_to, (size_t)cap2 * sizeof(int32_t));
            if (!ct) goto nomem;
            call_to = ct;
            call_rule[n_calls] = callee;
            call_to[n_calls] = tgt;
            n_calls++;
        }
    }
    call_off[c.n_dfa] = n_calls;
    out->n = c.n_dfa;
    out->trans = trans;
    out->final = final;
    out->call_off = call_off;
    out->call_rule = call_rule;
    out->call_to = call_to;
    out->n_calls = n_calls;
    trans = NULL;
    final = NULL;
    call_off = NULL;
    call_rule = NULL;
    call_to = NULL;
    rc = 0;
    goto fail;
nomem:
    gb_fail(b, ERR_NOMEM, "out of memory");
fail:
    free(c.eoff);
    free(c.eidx);
    free(c.mark);
    free(c.stack);
    free(c.tmp);
    free(c.pool);
    free(c.st_off);
    free(c.hash);
    free(moves);
    free(cls_cnt);
    free(cls_list);
    free(call_seen);
    free(rule_list);
    free(trans);
    free(final);
    free(call_off);
    free(call_rule);
    free(call_to);
    return rc;
}

/* ------------------------------------------------------------------ the whole automaton */

void gm_auto_free(gm_auto *a)
{
    free(a->trans);
    free(a->final);
    free(a->has_bytes);
    free(a->call_off);
    free(a->call_rule);
    free(a->call_ret);
    free(a->rule_start);
    free(a->state_rule);
    memset(a, 0, sizeof *a);
}

/* The states of d a depth-first walk reaches from its start over calls of nullable rules
 * (calls not cut): where the rule can be with nothing consumed. Returns them in the order
 * the walk takes them off its stack (*n_out of them; the caller frees), NULL when out of
 * memory. */
static int32_t *walk_nullable(const rule_dfa *d, const uint8_t *nullable, int32_t *n_out)
{
    uint8_t *seen = calloc((size_t)d->n, 1);
    int32_t *st = malloc((size_t)d->n * sizeof(int32_t));
    int32_t *out = malloc((size_t)d->n * sizeof(int32_t));
    if (!seen || !st || !out) {
        free(seen);
        free(st);
        free(out);
        return NULL;
    }
    int sp = 0;
    int32_t n = 0;
    st[sp++] = 0;
    seen[0] = 1;
    while (sp) {
        int32_t s = st[--sp];
        out[n++] = s;
        for (int32_t k = d->call_off[s]; k < d->call_off[s + 1]; k++) {
            int32_t c2 = d->call_rule[k];
            if (c2 >= 0 && nullable[c2] && !seen[d->call_to[k]]) {
                seen[d->call_to[k]] = 1;
                st[sp++] = d->call_to[k];
            }
        }
    }
    free(seen);
    free(st);
    *n_out = n;
    return out;
}

int gm_auto_build(gm_auto *a, gb *b, int32_t root)
{
    memset(a, 0, sizeof *a);
    if (b->failed || root < 0) return -1;
    const int32_t nr = b->n_rules;
    for (int32_t r = 0; r < nr; r++)
        if (b->rules[r].body < 0) return gb_fail(b, ERR_INVALID, "rule '%s' is used but never defined", gb_rule_name(b, r));
    uint8_t *inl = calloc((size_t)nr, 1);
    rule_dfa *dfa = calloc((size_t)nr, sizeof(rule_dfa));
    uint8_t *used = calloc((size_t)nr, 1);
    int32_t *order = malloc((size_t)nr * sizeof(int32_t));
    uint8_t *set_cls = NULL;
    int32_t *map = NULL;
    uint8_t *coreach = NULL, *prod = NULL, *nullable = NULL;
    int32_t *offs = NULL;
    int rc = -1;
    if (!inl || !dfa || !used || !order) goto nomem;
    if (decide_inline(b, inl)) goto fail;
    inl[root] = 0;

    /* byte classes: refine one class by every byte set */
    {
        uint8_t cls[256] = {0};
        int32_t ncls = 1;
        for (int32_t s = 0; s < b->n_sets; s++) {
            int32_t remap_in[256], remap_out[256];
            for (int i = 0; i < 256; i++) remap_in[i] = remap_out[i] = -1;
            int32_t nn = 0;
            for (int c = 0; c < 256; c++) {
                int in = (b->sets[s][c >> 3] >> (c & 7)) & 1;
                int32_t *rm = in ? remap_in : remap_out;
                if (rm[cls[c]] < 0) rm[cls[c]] = nn++;
                cls[c] = (uint8_t)rm[cls[c]];
            }
            ncls = nn;
            if (gb_charge(b, 256, "grammar")) goto fail;
        }
        memcpy(a->class_of, cls, 256);
        a->n_classes = ncls;
        set_cls = calloc((size_t)(b->n_sets + 1) * (size_t)ncls, 1);
        if (!set_cls) goto nomem;
        for (int32_t s = 0; s < b->n_sets; s++)
            for (int c = 0; c < 256; c++)
                if ((b->sets[s][c >> 3] >> (c & 7)) & 1) set_cls[(size_t)s * (size_t)ncls + cls[c]] = 1;
    }

    /* rules reachable from the root through calls that stay calls; DFA for each */
    int32_t n_order = 0, total_states = 0;
    used[root] = 1;
    order[n_order++] = root;
    for (int32_t i = 0; i < n_order; i++) {
        int32_t r = order[i];
        nfa n = {0};
        n.n_states = 2;
        build_ctx bc = {b, &n, inl, 0};
        if (nfa_build(&bc, b->rules[r].body, 0, 1)) {
            free(n.e);
            goto fail;
        }
        int rc2 = nfa_to_dfa(b, gb_rule_name(b, r), &n, a->n_classes, set_cls, &dfa[r]);
        free(n.e);
        if (rc2) goto fail;
        total_states += dfa[r].n;
        if (total_states > AUTO_MAX_STATES) {
            gb_fail(b, ERR_INVALID, "grammar too complex (more than %d automaton states)", AUTO_MAX_STATES);
            goto fail;
        }
        for (int32_t k = 0; k < dfa[r].n_calls; k++) {
            int32_t callee = dfa[r].call_rule[k];
            if (!used[callee]) {
                used[callee] = 1;
                order[n_order++] = callee;
            }
        }
    }

    /* productive rules (can complete), by fixpoint; a state is co-reachable when a final
     * state can be reached over bytes and calls of productive rules */
    prod = calloc((size_t)nr, 1);
    int32_t total = 0;
    for (int32_t i = 0; i < n_order; i++) total += dfa[order[i]].n;
    coreach = calloc((size_t)total + 1, 1);
    offs = calloc((size_t)nr, sizeof(int32_t));
    nullable = calloc((size_t)nr, 1);
    if (!prod || !coreach || !offs || !nullable) goto nomem;
    {
        int32_t acc = 0;
        for (int32_t i = 0; i < n_order; i++) {
            offs[order[i]] = acc;
            acc += dfa[order[i]].n;
        }
    }
    for (int changed = 1; changed;) {
        changed = 0;
        for (int32_t i = 0; i < n_order; i++) {
            int32_t r = order[i];
            rule_dfa *d = &dfa[r];
            uint8_t *cr = coreach + offs[r];
            /* backward closure by repeated sweeps (rule DFAs are small) */
            for (int more = 1; more;) {
                more = 0;
                if (gb_charge(b, (int64_t)d->n * (a->n_classes + 1), "grammar")) goto fail;
                for (int32_t s = 0; s < d->n; s++) {
                    if (cr[s]) continue;
                    int ok = d->final[s];
                    for (int32_t k = 0; !ok && k < a->n_classes; k++) {
                        int32_t t = d->trans[(size_t)s * (size_t)a->n_classes + (size_t)k];
                        if (t >= 0 && cr[t]) ok = 1;
                    }
                    for (int32_t k = d->call_off[s]; !ok && k < d->call_off[s + 1]; k++)
                        if (prod[d->call_rule[k]] && cr[d->call_to[k]]) ok = 1;
                    if (ok) {
                        cr[s] = 1;
                        more = 1;
                    }
                }
            }
            if (!prod[r] && cr[0]) {
                prod[r] = 1;
                changed = 1;
            }
        }
    }
    if (!prod[root]) {
        /* name the innermost rule that can never complete */
        const char *who = gb_rule_name(b, root);
        for (int32_t i = n_order - 1; i >= 0; i--)
            if (!prod[order[i]]) {
                who = gb_rule_name(b, order[i]);
                break;
            }
        gb_fail(b, ERR_INVALID, "%s: can never be satisfied (nothing matches it, e.g. a recursion without a way out)",
                who);
        goto fail;
    }
    /* cut edges to dead states and calls of unproductive rules */
    for (int32_t i = 0; i < n_order; i++) {
        int32_t r = order[i];
        rule_dfa *d = &dfa[r];
        uint8_t *cr = coreach + offs[r];
        for (int32_t s = 0; s < d->n; s++) {
            for (int32_t k = 0; k < a->n_classes; k++) {
                int32_t *t = &d->trans[(size_t)s * (size_t)a->n_classes + (size_t)k];
                if (*t >= 0 && !cr[*t]) *t = -1;
            }
            for (int32_t k = d->call_off[s]; k < d->call_off[s + 1]; k++)
                if (!prod[d->call_rule[k]] || !cr[d->call_to[k]]) d->call_rule[k] = -1;
        }
    }
    /* nullable rules, then left recursion: a rule reaching itself through calls made
     * before any byte is consumed would push frames forever */
    for (int changed = 1; changed;) {
        changed = 0;
        for (int32_t i = 0; i < n_order; i++) {
            int32_t r = order[i];
            if (nullable[r] || !prod[r]) continue;
            rule_dfa *d = &dfa[r];
            int32_t nw;
            int32_t *w = walk_nullable(d, nullable, &nw);
            if (!w) goto nomem;
            for (int32_t j = 0; j < nw; j++)
                if (d->final[w[j]]) nullable[r] = 1;
            free(w);
            if (nullable[r]) changed = 1;
        }
    }
    {
        /* left-call graph edges r -> callee for calls at states reachable with nothing consumed */
        int32_t *lc_off = calloc((size_t)nr + 1, sizeof(int32_t));
        int32_t *lc = NULL, n_lc = 0, cap_lc = 0;
        if (!lc_off) goto nomem;
        for (int32_t r = 0; r < nr; r++) {
            lc_off[r] = n_lc;
            if (!used[r] || !prod[r]) continue;
            rule_dfa *d = &dfa[r];
            int32_t nw;
            int32_t *w = walk_nullable(d, nullable, &nw);
            if (!w) {
                free(lc_off);
                free(lc);
                goto nomem;
            }
            for (int32_t j = 0; j < nw; j++)
                for (int32_t k = d->call_off[w[j]]; k < d->call_off[w[j] + 1]; k++) {
                    int32_t c2 = d->call_rule[k];
                    if (c2 < 0) continue;
                    if (grow((void **)&lc, &cap_lc, n_lc + 1, sizeof(int32_t), 1 << 26)) {
                        free(w);
                        free(lc_off);
                        free(lc);
                        goto nomem;
                    }
                    lc[n_lc++] = c2;
                }
            free(w);
        }
        lc_off[nr] = n_lc;
        uint8_t *color = calloc((size_t)nr, 1);
        int32_t *stk = malloc((size_t)nr * 2 * sizeof(int32_t) + 16);
        int bad = -1;
        if (!color || !stk) {
            free(color);
            free(stk);
            free(lc_off);
            free(lc);
            goto nomem;
        }
        for (int32_t r0 = 0; r0 < nr && bad < 0; r0++) {
            if (color[r0] || !used[r0]) continue;
            int sp = 1;
            stk[0] = r0;
            stk[1] = lc_off[r0];
            color[r0] = 1;
            while (sp > 0 && bad < 0) {
                int32_t r = stk[2 * (sp - 1)];
                int32_t *ci = &stk[2 * (sp - 1) + 1];
                if (*ci < lc_off[r + 1]) {
                    int32_t callee = lc[(*ci)++];
                    if (color[callee] == 1) bad = callee;
                    else if (color[callee] == 0) {
                        color[callee] = 1;
                        stk[2 * sp] = callee;
                        stk[2 * sp + 1] = lc_off[callee];
                        sp++;
                    }
                } else {
                    color[r] = 2;
                    sp--;
                }
            }
        }
        free(color);
        free(stk);
        free(lc_off);
        free(lc);
        if (bad >= 0) {
            gb_fail(b, ERR_INVALID, "%s: left recursion (the rule can reach itself before consuming any input)",
                    gb_rule_name(b, bad));
            goto fail;
        }
    }

    /* number everything: rule order = discovery order, states by offs */
    a->n_rules = nr;
    a->n_states = total;
    a->root = root;
    if ((int64_t)total * a->n_classes > ((int64_t)1 << 25)) {
        gb_fail(b, ERR_INVALID, "grammar too large (%d states x %d byte classes)", total, a->n_classes);
        goto fail;
    }
    a->trans = malloc(((size_t)total * (size_t)a->n_classes + 1) * sizeof(int32_t));
    a->final = calloc((size_t)total + 1, 1);
    a->has_bytes = calloc((size_t)total + 1, 1);
    a->call_off = calloc((size_t)total + 1, sizeof(int32_t));
    a->rule_start = malloc((size_t)nr * sizeof(int32_t));
    a->state_rule = malloc(((size_t)total + 1) * sizeof(int32_t));
    int32_t n_calls = 0;
    for (int32_t i = 0; i < n_order; i++) n_calls += dfa[order[i]].n_calls;
    a->call_rule = malloc(((size_t)n_calls + 1) * sizeof(int32_t));
    a->call_ret = malloc(((size_t)n_calls + 1) * sizeof(int32_t));
    if (!a->trans || !a->final || !a->has_bytes || !a->call_off || !a->rule_start || !a->state_rule ||
        !a->call_rule || !a->call_ret)
        goto nomem;
    for (int32_t r = 0; r < nr; r++) a->rule_start[r] = used[r] ? offs[r] : -1;
    int32_t nc = 0;
    for (int32_t i = 0; i < n_order; i++) {
        int32_t r = order[i];
        rule_dfa *d = &dfa[r];
        for (int32_t s = 0; s < d->n; s++) {
            int32_t g = offs[r] + s;
            a->state_rule[g] = r;
            a->final[g] = d->final[s];
            int hb = 0;
            for (int32_t k = 0; k < a->n_classes; k++) {
                int32_t t = d->trans[(size_t)s * (size_t)a->n_classes + (size_t)k];
                a->trans[(size_t)g * (size_t)a->n_classes + (size_t)k] = t >= 0 ? offs[r] + t : -1;
                if (t >= 0) hb = 1;
            }
            a->has_bytes[g] = (uint8_t)hb;
            a->call_off[g] = nc;
            for (int32_t k = d->call_off[s]; k < d->call_off[s + 1]; k++) {
                if (d->call_rule[k] < 0) continue;
                a->call_rule[nc] = d->call_rule[k];
                a->call_ret[nc] = offs[r] + d->call_to[k];
                nc++;
            }
        }
    }
    a->call_off[total] = nc;
    rc = 0;
    goto fail;
nomem:
    gb_fail(b, ERR_NOMEM, "out of memory");
fail:
    if (dfa)
        for (int32_t r = 0; r < nr; r++) rule_dfa_free(&dfa[r]);
    free(dfa);
    free(inl);
    free(used);
    free(order);
    free(set_cls);
    free(map);
    free(coreach);
    free(prod);
    free(nullable);
    free(offs);
    if (rc) gm_auto_free(a);
    return rc;
}
