/* grammar.c — grammar_compile and the small public entry points (see grammar.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grammar_int.h"
#include "jsonv.h"

void grammar_opts_default(grammar_opts *o)
{
    memset(o, 0, sizeof *o);
    o->json_ws = GRAMMAR_WS_COMPACT;
    o->max_depth = 64;
    o->max_stacks = 256;
    o->max_text = (size_t)1 << 20;
    o->max_repeat = 256;
    o->max_work = 100000000;
}

/* A JSON array of strings: the output is exactly one of them. */
int32_t choice_build(gb *b, const char *text, size_t len)
{
    jv_arena *ar = jv_arena_new(len * 32 + 65536);
    if (!ar) return gb_fail(b, ERR_NOMEM, "out of memory");
    jv v;
    err pe = {0};
    int32_t root = -1;
    if (jv_parse(ar, text, len, 8, &v, &pe)) {
        gb_fail(b, ERR_INVALID, "choice: not JSON: %s", pe.msg);
    } else if (v.type != JV_LIST || v.u.l->n == 0) {
        gb_fail(b, ERR_INVALID, "choice: expecting a non-empty JSON array of strings");
    } else if (v.u.l->n > 65536) {
        gb_fail(b, ERR_INVALID, "choice: more than 65536 choices");
    } else {
        int32_t *alts = malloc(v.u.l->n * sizeof(int32_t));
        if (!alts) {
            gb_fail(b, ERR_NOMEM, "out of memory");
        } else {
            size_t i;
            for (i = 0; i < v.u.l->n; i++) {
                jv it = v.u.l->v[i];
                if (it.type != JV_STR) {
                    gb_fail(b, ERR_INVALID, "choice: $[%zu]: not a string", i);
                    break;
                }
                alts[i] = gx_lit(b, it.u.s->p, it.u.s->len);
            }
            if (!b->failed) {
                root = gb_rule_new(b, "choice", 0);
                gb_rule_set(b, root, gx_alt(b, alts, (int)v.u.l->n));
            }
            free(alts);
        }
    }
    jv_arena_free(ar);
    return b->failed ? -1 : root;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int grammar_compile(grammar **out, const grammar_vocab *v, grammar_kind kind, const char *text, size_t len,
                    const grammar_opts *o, err *e)
{
    *out = NULL;
    double t0 = now_ms();
    grammar_opts opts;
    if (o) opts = *o;
    else grammar_opts_default(&opts);
    if (opts.max_depth < 2 || opts.max_depth > 1024) return err_set(e, ERR_INVALID, "grammar: max_depth must be 2..1024");
    if (opts.max_stacks < 1 || opts.max_stacks > 65536)
        return err_set(e, ERR_INVALID, "grammar: max_stacks must be 1..65536");
    if (opts.max_repeat < 1) opts.max_repeat = 1;
    if (opts.max_work <= 0) opts.max_work = 1;
    if (kind != GRAMMAR_JSON_OBJECT && !text) return err_set(e, ERR_INVALID, "grammar: no text");
    if (len > opts.max_text)
        return err_set(e, ERR_INVALID, "grammar: %zu bytes of grammar text, more than the limit %zu", len, opts.max_text);
    grammar *g = calloc(1, sizeof *g);
    if (!g) return err_set(e, ERR_NOMEM, "grammar: out of memory");
    g->v = v;
    g->o = opts;
    gb b;
    gb_init(&b, &g->o, e);
    int32_t root = -1;
    switch (kind) {
    case GRAMMAR_JSON_SCHEMA: root = schema_build(&b, text, len, 0); break;
    case GRAMMAR_JSON_OBJECT: root = schema_build(&b, NULL, 0, 1); break;
    case GRAMMAR_REGEX: root = regex_build(&b, text, len); break;
    case GRAMMAR_CHOICE: root = choice_build(&b, text, len); break;
    case GRAMMAR_GBNF: root = gbnf_build(&b, text, len); break;
    default: gb_fail(&b, ERR_INVALID, "grammar: unknown kind %d", (int)kind);
    }
    if (root < 0 || b.failed || gm_auto_build(&g->a, &b, root)) {
        if (e && e->code == ERR_OK) err_set(e, ERR_INVALID, "grammar: compile failed");
        gb_free(&b);
        grammar_free(g);
        return e ? (int)e->code : ERR_INVALID;
    }
    int n_rules = 0;
    for (int32_t r = 0; r < g->a.n_rules; r++)
        if (g->a.rule_start[r] >= 0) n_rules++;
    gb_free(&b);
    g->st.n_rules = n_rules;
    g->st.n_states = g->a.n_states;
    if (v && gm_caches_build(g, e)) {
        grammar_free(g);
        return e ? (int)e->code : ERR_INVALID;
    }
    if (!v) {
        g->cache = calloc((size_t)g->a.n_states + 1, sizeof(gm_cache));
        if (!g->cache) {
            grammar_free(g);
            return err_set(e, ERR_NOMEM, "grammar: out of memory");
        }
    }
    g->st.bytes = sizeof *g + (size_t)g->a.n_states * ((size_t)g->a.n_classes * 4 + 3 * 4 + 2 + sizeof(gm_cache)) +
                  (size_t)g->a.call_off[g->a.n_states] * 8 + (size_t)g->n_acc_ids * 4 + (size_t)g->n_acc_words * 4 +
                  (size_t)g->n_unc * 12;
    g->st.compile_ms = now_ms() - t0;
    *out = g;
    return 0;
}

void grammar_free(grammar *g)
{
    if (!g) return;
    gm_auto_free(&g->a);
    free(g->cache);
    free(g->acc_ids);
    free(g->acc_bits);
    free(g->unc_str);
    free(g->unc_at);
    free(g->unc_lcp);
    free(g);
}

void grammar_get_stats(const grammar *g, grammar_stats *s) { *s = g->st; }
