/* grammar_match.c — stacks, byte steps, vocabulary walks, token caches, masks.
 *
 * A parser state is a set of stacks. A stack is its top (a DFA state with byte edges)
 * plus a chain of suspended frames (nodes: the state to continue at when the frame above
 * ends). Consuming a byte moves every top along its byte edge and then closes the result:
 * calls push a frame, a final state pops one (or ends the grammar at the bottom), and only
 * tops with byte edges are kept. Stacks that are equal are shared: nodes are hash-consed
 * and a step never visits the same (top, node) pair twice, which is also what stops
 * nullable loops.
 *
 * Masks. For every grammar position q (a state with byte edges) grammar_compile walks the
 * vocabulary once with q's rule at the bottom of a private stack (GM_EXIT below it) and
 * sorts tokens into accepted (consumed inside the rule, whatever lies below), uncertain
 * (the rule ends after `exit` bytes and the rest must be checked against the stack below)
 * and rejected. A mask is then: for each stack top, its accepted set (a bitset or a list),
 * plus the uncertain tokens whose rest the real stack accepts — found by walking their
 * rests, sorted, as a small trie from the frame below. Only when a stack is so deep that
 * the private walk could have pushed past max_depth does the mask walk the whole
 * vocabulary from the real stack instead.
 *
 * Memory: a state allocates its frame pool, sets and scratch once; mask and accept work
 * inside them (frames made while masking are dropped at the end; accept keeps the live
 * ones by compacting the pool). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grammar_int.h"

/* ------------------------------------------------------------------ simulation context */

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t p = 64;
    while (p < n) p *= 2;
    return p;
}

int gm_sim_init(gm_sim *s, const grammar *g, int32_t cap_nodes, int32_t cap_buf, uint32_t max_len)
{
    memset(s, 0, sizeof *s);
    s->g = g;
    s->a = &g->a;
    s->max_depth = g->o.max_depth;
    s->max_stacks = g->o.max_stacks;
    s->cap_nodes = cap_nodes;
    s->nodes = malloc((size_t)cap_nodes * sizeof(gm_node));
    s->hc_mask = pow2_at_least((uint32_t)cap_nodes * 2) - 1;
    s->hc = malloc(((size_t)s->hc_mask + 1) * sizeof(int32_t));
    s->vis_mask = pow2_at_least((uint32_t)g->o.max_stacks * 8) - 1;
    s->vis_key = malloc(((size_t)s->vis_mask + 1) * sizeof(uint64_t));
    s->vis_stamp = calloc((size_t)s->vis_mask + 1, sizeof(uint32_t));
    s->cap_work = (int32_t)(s->vis_mask + 1) * 4;
    s->work = malloc((size_t)s->cap_work * sizeof(gm_elem));
    s->cap_buf = cap_buf;
    s->buf = malloc((size_t)cap_buf * sizeof(gm_elem));
    size_t nd = (size_t)max_len + 2;
    s->d_start = malloc(nd * sizeof(int32_t));
    s->d_len = malloc(nd * sizeof(int32_t));
    s->d_flags = malloc(nd);
    s->d_nodes = malloc(nd * sizeof(int32_t));
    if (!s->nodes || !s->hc || !s->vis_key || !s->vis_stamp || !s->work || !s->buf || !s->d_start || !s->d_len ||
        !s->d_flags || !s->d_nodes)
        return -1;
    for (uint32_t i = 0; i <= s->hc_mask; i++) s->hc[i] = -1;
    s->nodes[GM_BOTTOM] = (gm_node){-1, -1, 0};
    s->nodes[GM_EXIT] = (gm_node){-1, -1, 0};
    s->n_nodes = 2;
    return 0;
}

void gm_sim_free(gm_sim *s)
{
    free(s->nodes);
    free(s->hc);
    free(s->vis_key);
    free(s->vis_stamp);
    free(s->work);
    free(s->buf);
    free(s->d_start);
    free(s->d_len);
    free(s->d_flags);
    free(s->d_nodes);
    memset(s, 0, sizeof *s);
}

static void sim_fail(gm_sim *s, const char *msg)
{
    if (s->failed) return;
    s->failed = 1;
    s->fail_code = ERR_INVALID;
    strncpy(s->fail_msg, msg, sizeof s->fail_msg - 1);
    s->fail_msg[sizeof s->fail_msg - 1] = 0;
}

static inline uint32_t hash2(uint32_t x, uint32_t y)
{
    uint32_t h = x * 0x9E3779B1u ^ (y + 0x7F4A7C15u) * 0x85EBCA77u;
    return h ^ (h >> 15);
}

static int32_t node_mk(gm_sim *s, int32_t ret, int32_t parent)
{
    uint32_t h = hash2((uint32_t)ret, (uint32_t)parent) & s->hc_mask;
    int32_t slot = -1;
    for (int probe = 0; probe < 16; probe++) {
        int32_t id = s->hc[h];
        if (id < 2 || id >= s->n_nodes) {
            slot = (int32_t)h;
            break;
        }
        if (s->nodes[id].ret == ret && s->nodes[id].parent == parent) return id;
        h = (h + 1) & s->hc_mask;
    }
    if (s->n_nodes >= s->cap_nodes) {
        sim_fail(s, "grammar state too large (frame pool exhausted)");
        return -1;
    }
    int32_t id = s->n_nodes++;
    int32_t depth = s->nodes[parent].depth + 1;
    s->nodes[id] = (gm_node){ret, parent, depth};
    if (depth > s->grow_seen) s->grow_seen = depth;
    if (slot >= 0) s->hc[slot] = id;
    return id;
}

static inline void step_begin(gm_sim *s)
{
    if (++s->stamp == 0) {
        memset(s->vis_stamp, 0, ((size_t)s->vis_mask + 1) * sizeof(uint32_t));
        s->stamp = 1;
    }
}

/* 1 if (q, p) is new in this step, 0 if seen, -1 if the table is too full. */
static inline int vis_insert(gm_sim *s, int32_t q, int32_t p, int32_t *count)
{
    uint64_t key = ((uint64_t)(uint32_t)q << 32) | (uint32_t)p;
    uint32_t h = hash2((uint32_t)q, (uint32_t)p) & s->vis_mask;
    for (;;) {
        if (s->vis_stamp[h] != s->stamp) {
            if (++*count > (int32_t)(s->vis_mask >> 1)) return -1;
            s->vis_stamp[h] = s->stamp;
            s->vis_key[h] = key;
            return 1;
        }
        if (s->vis_key[h] == key) return 0;
        h = (h + 1) & s->vis_mask;
    }
}

/* Closes (q0, p0): appends the byte-ready stacks to out[*n_out..], sets END / EXIT flags. */
static int expand(gm_sim *s, int32_t q0, int32_t p0, gm_elem *out, int32_t *n_out, int32_t cap_out, uint8_t *flags,
                  int32_t *count)
{
    const gm_auto *a = s->a;
    int32_t sp = 0;
    s->work[sp++] = (gm_elem){q0, p0};
    while (sp) {
        gm_elem e = s->work[--sp];
        int r = vis_insert(s, e.q, e.p, count);
        if (r < 0) goto ambiguous;
        if (!r) continue;
        if (a->has_bytes[e.q]) {
            if (*n_out >= cap_out) goto ambiguous;
            out[(*n_out)++] = e;
        }
        int32_t k0 = a->call_off[e.q], k1 = a->call_off[e.q + 1];
        if (k0 < k1 && s->nodes[e.p].depth + 2 <= s->max_depth) {
            for (int32_t k = k0; k < k1; k++) {
                int32_t n = node_mk(s, a->call_ret[k], e.p);
                if (n < 0) return -1;
                if (sp >= s->cap_work) goto ambiguous;
                s->work[sp++] = (gm_elem){a->rule_start[a->call_rule[k]], n};
            }
        }
        if (a->final[e.q]) {
            if (e.p == GM_BOTTOM) *flags |= GM_F_END;
            else if (e.p == GM_EXIT) *flags |= GM_F_EXIT;
            else {
                if (sp >= s->cap_work) goto ambiguous;
                s->work[sp++] = (gm_elem){s->nodes[e.p].ret, s->nodes[e.p].parent};
            }
        }
    }
    return 0;
ambiguous:
    sim_fail(s, "grammar too ambiguous (more stacks than max_stacks)");
    return -1;
}

/* One byte from in[0..n_in) into out; returns the flags (END / EXIT) of the result. */
static inline uint8_t advance(gm_sim *s, const gm_elem *in, int32_t n_in, uint8_t byte, gm_elem *out, int32_t *n_out,
                              int32_t cap_out)
{
    const gm_auto *a = s->a;
    const int32_t cls = a->class_of[byte], nc = a->n_classes;
    *n_out = 0;
    if (n_in == 1) {
        int32_t t = a->trans[(size_t)in[0].q * (size_t)nc + (size_t)cls];
        if (t < 0) return 0;
        if (a->call_off[t] == a->call_off[t + 1] && !a->final[t]) {
            out[0] = (gm_elem){t, in[0].p};
            *n_out = 1;
            return 0;
        }
    }
    uint8_t flags = 0;
    int32_t count = 0;
    step_begin(s);
    int32_t cap = cap_out < s->max_stacks ? cap_out : s->max_stacks;
    for (int32_t i = 0; i < n_in; i++) {
        int32_t t = a->trans[(size_t)in[i].q * (size_t)nc + (size_t)cls];
        if (t >= 0 && expand(s, t, in[i].p, out, n_out, cap, &flags, &count)) {
            *n_out = 0;
            return 0;
        }
    }
    return flags;
}

/* ------------------------------------------------------------------ walks */

/* What a walk does with its verdicts. */
typedef struct walk_sink {
    /* compile: per-string verdicts */
    int32_t *acc;    /* accepted string indexes */
    int64_t n_acc, cap_acc;
    int32_t *unc_s;  /* uncertain: string, exit offset */
    uint32_t *unc_a;
    int64_t n_unc, cap_unc;
    int oom;
    /* run time: mask words */
    uint32_t *words;
} walk_sink;

static void sink_acc(walk_sink *w, int32_t str)
{
    if (w->n_acc == w->cap_acc) {
        int64_t nc = w->cap_acc ? w->cap_acc * 2 : 1024;
        int32_t *q = realloc(w->acc, (size_t)nc * sizeof(int32_t));
        if (!q) {
            w->oom = 1;
            return;
        }
        w->acc = q;
        w->cap_acc = nc;
    }
    w->acc[w->n_acc++] = str;
}

static void sink_unc(walk_sink *w, int32_t str, uint32_t at)
{
    if (w->n_unc == w->cap_unc) {
        int64_t nc = w->cap_unc ? w->cap_unc * 2 : 1024;
        int32_t *q = realloc(w->unc_s, (size_t)nc * sizeof(int32_t));
        uint32_t *r = q ? realloc(w->unc_a, (size_t)nc * sizeof(uint32_t)) : NULL;
        if (q) w->unc_s = q;
        if (!q || !r) {
            w->oom = 1;
            return;
        }
        w->unc_a = r;
        w->cap_unc = nc;
    }
    w->unc_s[w->n_unc] = str;
    w->unc_a[w->n_unc] = at;
    w->n_unc++;
}

static inline void set_bits_of(const grammar_vocab *v, uint32_t *words, int32_t str)
{
    for (int32_t k = v->ids_off[str]; k < v->ids_off[str + 1]; k++) {
        int32_t id = v->ids[k];
        words[id >> 5] |= 1u << (id & 31);
    }
}

/* A list of strings to walk: string k is bytes(idx[k]) from at[k] on (at NULL: from 0),
 * with lcp[k] shared with entry k-1. */
typedef struct walk_list {
    const int32_t *idx; /* NULL: strings lo..hi of the vocabulary themselves */
    const uint32_t *at;
    const uint32_t *lcp;
    int32_t lo, hi;
} walk_list;

/* Walks the list from the set already at depth 0 of s (buf[0..d_len[0]), d_flags[0]).
 * mode 0 (compile): EXIT below, verdicts into w's lists. mode 1 (run time): accepted
 * strings set their tokens' bits in w->words. Returns 0 or -1 (s->failed). */
static int walk(gm_sim *s, const walk_list *L, int mode, walk_sink *w, int64_t *work)
{
    const grammar_vocab *v = s->g->v;
    uint32_t vd = 0;
    int32_t i = L->lo;
    const int32_t base_nodes = s->d_nodes[0];
    while (i < L->hi) {
        const int32_t str = L->idx ? L->idx[i] : i;
        const uint32_t at = L->at ? L->at[i] : 0;
        const uint8_t *p = v->bytes + v->off[str] + at;
        const uint32_t len = v->off[str + 1] - v->off[str] - at;
        uint32_t d = i == L->lo ? 0 : L->lcp[i];
        if (d > vd) d = vd;
        s->n_nodes = s->d_nodes[d];
        int dead = 0;
        while (d < len) {
            int32_t st = s->d_start[d], n_in = s->d_len[d];
            int32_t ost = st + n_in, n_out = 0;
            uint8_t fl = advance(s, s->buf + st, n_in, p[d], s->buf + ost, &n_out, s->cap_buf - ost);
            if (s->failed) return -1;
            d++;
            s->d_start[d] = ost;
            s->d_len[d] = n_out;
            s->d_flags[d] = fl;
            s->d_nodes[d] = s->n_nodes;
            (*work)++;
            if (n_out == 0) {
                dead = 1;
                break;
            }
        }
        vd = d;
        if (!dead) {
            /* consumed: accepted */
            if (mode == 0) sink_acc(w, str);
            else set_bits_of(v, w->words, str);
            i++;
            continue;
        }
        /* the set at depth d is empty: every string sharing p[0..d) dies at d */
        if (mode == 1) {
            int end_here = (s->d_flags[d] & GM_F_END) && len == d;
            if (end_here) set_bits_of(v, w->words, str);
            i++;
            while (i < L->hi && L->lcp[i] >= d) {
                if ((s->d_flags[d] & GM_F_END)) {
                    const int32_t s2 = L->idx ? L->idx[i] : i;
                    const uint32_t a2 = L->at ? L->at[i] : 0;
                    if (v->off[s2 + 1] - v->off[s2] - a2 == d) set_bits_of(v, w->words, s2);
                }
                i++;
            }
            continue;
        }
        int any_exit = 0;
        for (uint32_t k = 1; k <= d; k++)
            if (s->d_flags[k] & GM_F_EXIT) any_exit = 1;
        int32_t j = i;
        do {
            if (any_exit) {
                const int32_t s2 = L->idx ? L->idx[j] : j;
                const uint32_t l2 = v->off[s2 + 1] - v->off[s2];
                if (l2 == d && (s->d_flags[d] & GM_F_EXIT)) {
                    sink_acc(w, s2);
                } else {
                    for (uint32_t k = 1; k <= d; k++)
                        if ((s->d_flags[k] & GM_F_EXIT) && k < l2) sink_unc(w, s2, k);
                }
            }
            j++;
        } while (j < L->hi && L->lcp[j] >= d);
        i = j;
    }
    s->n_nodes = base_nodes;
    return 0;
}

/* ------------------------------------------------------------------ caches (compile time) */

typedef struct rest_ctx {
    const grammar_vocab *v;
    const int32_t *s; /* string of each uncertain entry */
    const uint32_t *a; /* its exit offset */
} rest_ctx;

/* Orders uncertain entries by the bytes after their exit (qsort_r: no globals, so
 * grammars compile on several threads at once). */
static int cmp_rest(const void *x, const void *y, void *ctx)
{
    const rest_ctx *r = ctx;
    int32_t i = *(const int32_t *)x, j = *(const int32_t *)y;
    const grammar_vocab *v = r->v;
    const uint8_t *a = v->bytes + v->off[r->s[i]] + r->a[i];
    const uint8_t *b = v->bytes + v->off[r->s[j]] + r->a[j];
    uint32_t la = v->off[r->s[i] + 1] - v->off[r->s[i]] - r->a[i];
    uint32_t lb = v->off[r->s[j] + 1] - v->off[r->s[j]] - r->a[j];
    uint32_t n = la < lb ? la : lb;
    int c = memcmp(a, b, n);
    if (c) return c;
    if (la != lb) return la < lb ? -1 : 1;
    return i < j ? -1 : i > j;
}

static int pool_push_ids(grammar *g, const int32_t *ids, int64_t n, int64_t *cap)
{
    if (g->n_acc_ids + n > *cap) {
        int64_t nc = *cap ? *cap * 2 : 4096;
        while (nc < g->n_acc_ids + n) nc *= 2;
        int32_t *q = realloc(g->acc_ids, (size_t)nc * sizeof(int32_t));
        if (!q) return -1;
        g->acc_ids = q;
        *cap = nc;
    }
    memcpy(g->acc_ids + g->n_acc_ids, ids, (size_t)n * sizeof(int32_t));
    g->n_acc_ids += n;
    return 0;
}

int gm_caches_build(grammar *g, err *e)
{
    const grammar_vocab *v = g->v;
    const gm_auto *a = &g->a;
    const int32_t ns = a->n_states;
    const size_t nw = grammar_mask_words(v);
    gm_sim s;
    walk_sink w;
    memset(&w, 0, sizeof w);
    int32_t *tmp_ids = NULL, *order = NULL;
    uint8_t *reach = NULL;
    int32_t *stk = NULL;
    int64_t cap_ids = 0, cap_words = 0, cap_unc = 0, work = 0;
    int rc = -1;
    g->cache = calloc((size_t)ns + 1, sizeof(gm_cache));
    reach = calloc((size_t)ns + 1, 1);
    stk = malloc(((size_t)ns + 1) * sizeof(int32_t));
    tmp_ids = malloc((size_t)v->n_vocab * sizeof(int32_t));
    if (!g->cache || !reach || !stk || !tmp_ids) goto nomem;
    if (gm_sim_init(&s, g, 1 << 16, 1 << 17, v->max_len)) {
        gm_sim_free(&s);
        goto nomem;
    }
    /* states reachable from the rule starts */
    {
        int32_t sp = 0;
        for (int32_t r = 0; r < a->n_rules; r++)
            if (a->rule_start[r] >= 0 && !reach[a->rule_start[r]]) {
                reach[a->rule_start[r]] = 1;
                stk[sp++] = a->rule_start[r];
            }
        while (sp) {
            int32_t q = stk[--sp];
            for (int32_t c = 0; c < a->n_classes; c++) {
                int32_t t = a->trans[(size_t)q * (size_t)a->n_classes + (size_t)c];
                if (t >= 0 && !reach[t]) {
                    reach[t] = 1;
                    stk[sp++] = t;
                }
            }
            for (int32_t k = a->call_off[q]; k < a->call_off[q + 1]; k++)
                if (!reach[a->call_ret[k]]) {
                    reach[a->call_ret[k]] = 1;
                    stk[sp++] = a->call_ret[k];
                }
        }
    }
    for (int32_t q = 0; q < ns; q++) {
        gm_cache *c = &g->cache[q];
        if (!a->has_bytes[q] || !reach[q]) continue;
        w.n_acc = 0;
        w.n_unc = 0;
        s.n_nodes = 2;
        s.grow_seen = 0;
        s.buf[0] = (gm_elem){q, GM_EXIT};
        s.d_start[0] = 0;
        s.d_len[0] = 1;
        s.d_flags[0] = 0;
        s.d_nodes[0] = 2;
        /* only the first bytes q has edges for */
        for (int b = 0; b < 256; b++) {
            if (a->trans[(size_t)q * (size_t)a->n_classes + a->class_of[b]] < 0) continue;
            walk_list L = {NULL, NULL, v->lcp, v->first[b], v->first[b + 1]};
            if (L.lo >= L.hi) continue;
            if (walk(&s, &L, 0, &w, &work)) {
                err_set(e, ERR_INVALID, "grammar: %s (rule position %d)", s.fail_msg, q);
                goto out;
            }
            if (w.oom) goto nomem;
        }
        if (work > g->o.max_work) {
            err_set(e, ERR_INVALID, "grammar: too complex for this vocabulary (more than %lld steps)",
                    (long long)g->o.max_work);
            goto out;
        }
        c->grow = (int16_t)(s.grow_seen > 32000 ? 32000 : s.grow_seen);
        /* accepted: token ids as a list, or a bitset when that is smaller */
        int64_t n_ids = 0;
        for (int64_t k = 0; k < w.n_acc; k++)
            for (int32_t t = v->ids_off[w.acc[k]]; t < v->ids_off[w.acc[k] + 1]; t++) tmp_ids[n_ids++] = v->ids[t];
        if (n_ids == 0) {
            c->acc_kind = GC_NONE;
        } else if ((size_t)n_ids * 32 > (size_t)v->n_vocab) {
            if (g->n_acc_words + (int64_t)nw > cap_words) {
                int64_t nc = cap_words ? cap_words * 2 : (int64_t)nw * 4;
                while (nc < g->n_acc_words + (int64_t)nw) nc *= 2;
                uint32_t *q2 = realloc(g->acc_bits, (size_t)nc * sizeof(uint32_t));
                if (!q2) goto nomem;
                g->acc_bits = q2;
                cap_words = nc;
            }
            uint32_t *bits = g->acc_bits + g->n_acc_words;
            memset(bits, 0, nw * sizeof(uint32_t));
            for (int64_t k = 0; k < n_ids; k++) bits[tmp_ids[k] >> 5] |= 1u << (tmp_ids[k] & 31);
            c->acc_kind = GC_BITS;
            c->acc_off = (uint32_t)g->n_acc_words;
            c->acc_n = 0;
            g->n_acc_words += (int64_t)nw;
        } else {
            c->acc_kind = GC_LIST;
            c->acc_off = (uint32_t)g->n_acc_ids;
            c->acc_n = (uint32_t)n_ids;
            if (pool_push_ids(g, tmp_ids, n_ids, &cap_ids)) goto nomem;
        }
        g->st.n_accept += n_ids;
        /* uncertain: sorted by the rest after the exit, with common prefixes */
        if (w.n_unc) {
            free(order);
            order = malloc((size_t)w.n_unc * sizeof(int32_t));
            if (!order) goto nomem;
            for (int64_t k = 0; k < w.n_unc; k++) order[k] = (int32_t)k;
            rest_ctx rc2 = {v, w.unc_s, w.unc_a};
            qsort_r(order, (size_t)w.n_unc, sizeof(int32_t), cmp_rest, &rc2);
            if (g->n_unc + w.n_unc > cap_unc) {
                int64_t nc = cap_unc ? cap_unc * 2 : 4096;
                while (nc < g->n_unc + w.n_unc) nc *= 2;
                int32_t *q1 = realloc(g->unc_str, (size_t)nc * sizeof(int32_t));
                if (q1) g->unc_str = q1;
                uint32_t *q2 = realloc(g->unc_at, (size_t)nc * sizeof(uint32_t));
                if (q2) g->unc_at = q2;
                uint32_t *q3 = realloc(g->unc_lcp, (size_t)nc * sizeof(uint32_t));
                if (q3) g->unc_lcp = q3;
                if (!q1 || !q2 || !q3) goto nomem;
                cap_unc = nc;
            }
            c->unc_off = (uint32_t)g->n_unc;
            c->unc_n = (uint32_t)w.n_unc;
            for (int64_t k = 0; k < w.n_unc; k++) {
                int64_t at = g->n_unc + k;
                g->unc_str[at] = w.unc_s[order[k]];
                g->unc_at[at] = w.unc_a[order[k]];
                uint32_t l = 0;
                if (k > 0) {
                    const uint8_t *x = v->bytes + v->off[g->unc_str[at - 1]] + g->unc_at[at - 1];
                    const uint8_t *y = v->bytes + v->off[g->unc_str[at]] + g->unc_at[at];
                    uint32_t lx = v->off[g->unc_str[at - 1] + 1] - v->off[g->unc_str[at - 1]] - g->unc_at[at - 1];
                    uint32_t ly = v->off[g->unc_str[at] + 1] - v->off[g->unc_str[at]] - g->unc_at[at];
                    while (l < lx && l < ly && x[l] == y[l]) l++;
                }
                g->unc_lcp[at] = l;
            }
            g->n_unc += w.n_unc;
            g->st.n_uncertain += w.n_unc;
        }
        g->st.n_positions++;
    }
    g->st.work = work;
    rc = 0;
    goto out;
nomem:
    err_set(e, ERR_NOMEM, "grammar: out of memory for the token caches");
out:
    gm_sim_free(&s);
    free(w.acc);
    free(w.unc_s);
    free(w.unc_a);
    free(tmp_ids);
    free(order);
    free(reach);
    free(stk);
    return rc;
}

/* ------------------------------------------------------------------ per-sequence state */

struct grammar_state {
    const grammar *g;
    gm_sim sim;
    gm_elem *cur; /* current stacks (max_stacks) */
    int32_t n_cur;
    uint8_t cur_flags;
    int32_t n_persist; /* nodes [0, n_persist) belong to cur */
    int finished;      /* an end token was accepted */
    int failed;
    char fail_msg[160];
    uint32_t *pos_stamp; /* (n_states) accepted set already OR'd in this mask */
    uint32_t stamp;
    int32_t *map; /* (cap_nodes) compaction */
};

#define STATE_NODES 8192
#define STATE_BUF 16384

static void state_start(grammar_state *st)
{
    gm_sim *s = &st->sim;
    s->n_nodes = 2;
    s->failed = 0;
    for (uint32_t i = 0; i <= s->hc_mask; i++) s->hc[i] = -1;
    int32_t n = 0;
    uint8_t fl = 0;
    int32_t count = 0;
    step_begin(s);
    const gm_auto *a = &st->g->a;
    expand(s, a->rule_start[a->root], GM_BOTTOM, st->cur, &n, st->g->o.max_stacks, &fl, &count);
    st->n_cur = n;
    st->cur_flags = fl;
    st->n_persist = s->n_nodes;
    st->finished = 0;
    st->failed = s->failed;
    if (s->failed) snprintf(st->fail_msg, sizeof st->fail_msg, "%s", s->fail_msg);
}

int grammar_state_new(grammar_state **out, const grammar *g, err *e)
{
    *out = NULL;
    grammar_state *st = calloc(1, sizeof *st);
    if (!st) return err_set(e, ERR_NOMEM, "grammar: out of memory for a state");
    st->g = g;
    uint32_t max_len = g->v ? g->v->max_len : 0;
    if (max_len < 64) max_len = 64;
    st->cur = malloc((size_t)g->o.max_stacks * sizeof(gm_elem));
    st->pos_stamp = calloc((size_t)g->a.n_states + 1, sizeof(uint32_t));
    st->map = malloc(STATE_NODES * sizeof(int32_t));
    if (!st->cur || !st->pos_stamp || !st->map || gm_sim_init(&st->sim, g, STATE_NODES, STATE_BUF, max_len)) {
        grammar_state_free(st);
        return err_set(e, ERR_NOMEM, "grammar: out of memory for a state");
    }
    state_start(st);
    *out = st;
    return 0;
}

void grammar_state_free(grammar_state *st)
{
    if (!st) return;
    gm_sim_free(&st->sim);
    free(st->cur);
    free(st->pos_stamp);
    free(st->map);
    free(st);
}

void grammar_state_reset(grammar_state *st) { state_start(st); }

int grammar_state_can_end(const grammar_state *st)
{
    return !st->failed && (st->finished || (st->cur_flags & GM_F_END));
}

int grammar_state_done(const grammar_state *st)
{
    return grammar_state_can_end(st) && (st->finished || st->n_cur == 0);
}

static int state_fail(grammar_state *st, err *e)
{
    st->failed = 1;
    snprintf(st->fail_msg, sizeof st->fail_msg, "%s", st->sim.fail_msg);
    return err_set(e, ERR_INVALID, "grammar: %s", st->fail_msg);
}

/* 1 if the cached verdicts of stack el may have pushed past max_depth. */
static int s_grow_exceeds(const grammar_state *st, gm_elem el)
{
    return st->sim.nodes[el.p].depth + 1 + st->g->cache[el.q].grow > st->g->o.max_depth;
}

int grammar_state_mask(grammar_state *st, uint32_t *words, err *e)
{
    const grammar *g = st->g;
    const grammar_vocab *v = g->v;
    if (!v) return err_set(e, ERR_INVALID, "grammar: compiled without a vocabulary");
    const size_t nw = grammar_mask_words(v);
    if (st->failed || st->finished || st->n_cur == 0 || g->cache[st->cur[0].q].acc_kind != GC_BITS ||
        s_grow_exceeds(st, st->cur[0]))
        memset(words, 0, nw * sizeof(uint32_t));
    else /* the first stack's accepted bitset is copied instead of OR'd into zeros */
        memcpy(words, g->acc_bits + g->cache[st->cur[0].q].acc_off, nw * sizeof(uint32_t));
    if (st->failed) return err_set(e, ERR_INVALID, "grammar: %s", st->fail_msg);
    if (st->finished) {
        for (int32_t k = 0; k < v->n_eog; k++) words[v->eog[k] >> 5] |= 1u << (v->eog[k] & 31);
        return 0;
    }
    gm_sim *s = &st->sim;
    if (++st->stamp == 0) {
        memset(st->pos_stamp, 0, ((size_t)g->a.n_states + 1) * sizeof(uint32_t));
        st->stamp = 1;
    }
    walk_sink w;
    memset(&w, 0, sizeof w);
    w.words = words;
    int64_t work = 0;
    for (int32_t k = 0; k < st->n_cur; k++) {
        const gm_elem el = st->cur[k];
        const gm_cache *c = &g->cache[el.q];
        s->n_nodes = st->n_persist;
        if (s_grow_exceeds(st, el)) {
            /* deep stack: the cached verdicts may have pushed past max_depth; walk the
             * whole vocabulary from the real stack */
            s->buf[0] = el;
            s->d_start[0] = 0;
            s->d_len[0] = 1;
            s->d_flags[0] = 0;
            s->d_nodes[0] = s->n_nodes;
            for (int b = 0; b < 256; b++) {
                if (g->a.trans[(size_t)el.q * (size_t)g->a.n_classes + g->a.class_of[b]] < 0) continue;
                walk_list L = {NULL, NULL, v->lcp, v->first[b], v->first[b + 1]};
                if (L.lo < L.hi && walk(s, &L, 1, &w, &work)) return state_fail(st, e);
            }
            continue;
        }
        if (st->pos_stamp[el.q] != st->stamp) {
            st->pos_stamp[el.q] = st->stamp;
            if (k == 0 && c->acc_kind == GC_BITS) {
                /* copied above */
            } else if (c->acc_kind == GC_BITS) {
                const uint32_t *bits = g->acc_bits + c->acc_off;
                for (size_t i = 0; i < nw; i++) words[i] |= bits[i];
            } else if (c->acc_kind == GC_LIST) {
                const int32_t *ids = g->acc_ids + c->acc_off;
                for (uint32_t i = 0; i < c->acc_n; i++) words[ids[i] >> 5] |= 1u << (ids[i] & 31);
            }
        }
        if (c->unc_n && el.p != GM_BOTTOM) {
            /* the rest of each uncertain token, from the frame below */
            int32_t n0 = 0;
            uint8_t fl = 0;
            int32_t count = 0;
            step_begin(s);
            if (expand(s, s->nodes[el.p].ret, s->nodes[el.p].parent, s->buf, &n0, g->o.max_stacks, &fl, &count))
                return state_fail(st, e);
            if (n0 == 0) continue;
            s->d_start[0] = 0;
            s->d_len[0] = n0;
            s->d_flags[0] = fl;
            s->d_nodes[0] = s->n_nodes;
            walk_list L = {g->unc_str + c->unc_off, g->unc_at + c->unc_off, g->unc_lcp + c->unc_off, 0,
                           (int32_t)c->unc_n};
            if (walk(s, &L, 1, &w, &work)) return state_fail(st, e);
        }
    }
    s->n_nodes = st->n_persist;
    if (st->cur_flags & GM_F_END)
        for (int32_t k = 0; k < v->n_eog; k++) words[v->eog[k] >> 5] |= 1u << (v->eog[k] & 31);
    return 0;
}

/* Keeps the nodes the new stacks use, renumbered in creation order (parents first). */
static void compact(grammar_state *st, gm_elem *set, int32_t n)
{
    gm_sim *s = &st->sim;
    int32_t *map = st->map;
    for (int32_t i = 0; i < s->n_nodes; i++) map[i] = -1;
    map[GM_BOTTOM] = GM_BOTTOM;
    map[GM_EXIT] = GM_EXIT;
    for (int32_t k = 0; k < n; k++)
        for (int32_t p = set[k].p; p >= 2 && map[p] == -1; p = s->nodes[p].parent) map[p] = -2;
    int32_t next = 2;
    for (int32_t i = 2; i < s->n_nodes; i++) {
        if (map[i] != -2) continue;
        gm_node nd = s->nodes[i];
        nd.parent = map[nd.parent];
        map[i] = next;
        s->nodes[next++] = nd;
    }
    for (int32_t k = 0; k < n; k++) set[k].p = map[set[k].p];
    s->n_nodes = next;
    for (uint32_t i = 0; i <= s->hc_mask; i++) s->hc[i] = -1;
    for (int32_t i = 2; i < next; i++) {
        uint32_t h = hash2((uint32_t)s->nodes[i].ret, (uint32_t)s->nodes[i].parent) & s->hc_mask;
        for (int probe = 0; probe < 16; probe++) {
            if (s->hc[h] < 0) {
                s->hc[h] = i;
                break;
            }
            h = (h + 1) & s->hc_mask;
        }
    }
}

int grammar_state_accept_bytes(grammar_state *st, const void *bytes, size_t n, err *e)
{
    if (st->failed) return err_set(e, ERR_INVALID, "grammar: %s", st->fail_msg);
    if (st->finished) return n ? err_set(e, ERR_INVALID, "grammar: output already ended") : 0;
    if (n == 0) return 0;
    gm_sim *s = &st->sim;
    const uint8_t *p = bytes;
    const int32_t half = s->cap_buf / 2;
    gm_elem *a = s->buf, *b = s->buf + half;
    s->n_nodes = st->n_persist;
    memcpy(a, st->cur, (size_t)st->n_cur * sizeof(gm_elem));
    int32_t na = st->n_cur;
    uint8_t fl = st->cur_flags;
    for (size_t i = 0; i < n; i++) {
        int32_t nb = 0;
        fl = advance(s, a, na, p[i], b, &nb, half);
        if (s->failed) {
            s->n_nodes = st->n_persist;
            return state_fail(st, e);
        }
        if (nb == 0 && !(i + 1 == n && (fl & GM_F_END))) {
            s->n_nodes = st->n_persist;
            return err_set(e, ERR_INVALID, "grammar: byte %zu (0x%02x) is not allowed here", i, p[i]);
        }
        gm_elem *t = a;
        a = b;
        b = t;
        na = nb;
    }
    compact(st, a, na);
    memcpy(st->cur, a, (size_t)na * sizeof(gm_elem));
    st->n_cur = na;
    st->cur_flags = fl;
    st->n_persist = s->n_nodes;
    return 0;
}

int grammar_state_accept(grammar_state *st, int32_t token, err *e)
{
    const grammar_vocab *v = st->g->v;
    if (!v) return err_set(e, ERR_INVALID, "grammar: compiled without a vocabulary");
    if (token < 0 || token >= v->n_vocab) return err_set(e, ERR_INVALID, "grammar: token %d out of range", token);
    if (st->failed) return err_set(e, ERR_INVALID, "grammar: %s", st->fail_msg);
    if (v->is_eog[token]) {
        if (!grammar_state_can_end(st)) return err_set(e, ERR_INVALID, "grammar: end token %d before the grammar can end", token);
        st->finished = 1;
        return 0;
    }
    int32_t str = v->tok_str[token];
    if (str < 0) return err_set(e, ERR_INVALID, "grammar: token %d is never allowed (control or empty)", token);
    if (st->finished) return err_set(e, ERR_INVALID, "grammar: output already ended");
    err e2 = {0};
    if (grammar_state_accept_bytes(st, v->bytes + v->off[str], v->off[str + 1] - v->off[str], &e2)) {
        if (st->failed) return err_set(e, e2.code, "%s", e2.msg);
        return err_set(e, ERR_INVALID, "grammar: token %d is not allowed here", token);
    }
    return 0;
}
