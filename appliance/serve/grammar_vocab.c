/* grammar_vocab.c — the vocabulary as sorted byte strings.
 *
 * Every token that can appear inside a grammar (non-empty piece, not an end-of-generation
 * token) is listed once per distinct byte string, sorted bytewise, with the length of the
 * prefix it shares with the previous string. Walking the list in order with a stack of
 * parser states indexed by depth is a walk over the vocabulary trie: each trie node is
 * entered once, and a subtree whose prefix is rejected is skipped whole. */
#include <stdlib.h>
#include <string.h>

#include "grammar_int.h"

typedef struct piece_ref {
    const uint8_t *p;
    uint32_t len;
    int32_t id;
} piece_ref;

static int cmp_piece(const void *x, const void *y)
{
    const piece_ref *a = x, *b = y;
    uint32_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->p, b->p, n);
    if (c) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

void grammar_vocab_free(grammar_vocab *v)
{
    if (!v) return;
    free(v->bytes);
    free(v->off);
    free(v->lcp);
    free(v->ids_off);
    free(v->ids);
    free(v->eog);
    free(v->tok_str);
    free(v->is_eog);
    free(v);
}

int grammar_vocab_from_pieces(grammar_vocab **out, int32_t n_vocab, const char *const *pieces, const size_t *lens,
                              const uint8_t *is_eog, err *e)
{
    *out = NULL;
    if (n_vocab <= 0 || n_vocab > (1 << 24)) return err_set(e, ERR_INVALID, "grammar: vocabulary size %d out of range", n_vocab);
    grammar_vocab *v = calloc(1, sizeof *v);
    piece_ref *refs = malloc((size_t)n_vocab * sizeof *refs);
    if (!v || !refs) goto nomem;
    v->n_vocab = n_vocab;
    v->tok_str = malloc((size_t)n_vocab * sizeof(int32_t));
    v->is_eog = calloc((size_t)n_vocab, 1);
    v->eog = malloc((size_t)n_vocab * sizeof(int32_t));
    if (!v->tok_str || !v->is_eog || !v->eog) goto nomem;
    int32_t n = 0;
    size_t total = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        v->tok_str[i] = -1;
        if (is_eog && is_eog[i]) {
            v->is_eog[i] = 1;
            v->eog[v->n_eog++] = i;
            continue;
        }
        if (!lens[i] || lens[i] > 65535) continue;
        refs[n].p = (const uint8_t *)pieces[i];
        refs[n].len = (uint32_t)lens[i];
        refs[n].id = i;
        total += lens[i];
        n++;
    }
    qsort(refs, (size_t)n, sizeof *refs, cmp_piece);
    v->bytes = malloc(total + 1);
    v->off = malloc(((size_t)n + 1) * sizeof(uint32_t));
    v->lcp = malloc(((size_t)n + 1) * sizeof(uint32_t));
    v->ids_off = malloc(((size_t)n + 1) * sizeof(int32_t));
    v->ids = malloc(((size_t)n + 1) * sizeof(int32_t));
    if (!v->bytes || !v->off || !v->lcp || !v->ids_off || !v->ids) goto nomem;
    int32_t ns = 0;
    uint32_t at = 0;
    for (int32_t i = 0; i < n; i++) {
        int same = i > 0 && refs[i].len == refs[i - 1].len && memcmp(refs[i].p, refs[i - 1].p, refs[i].len) == 0;
        if (!same) {
            v->off[ns] = at;
            memcpy(v->bytes + at, refs[i].p, refs[i].len);
            at += refs[i].len;
            if (refs[i].len > v->max_len) v->max_len = refs[i].len;
            uint32_t l = 0;
            if (ns > 0) {
                const uint8_t *a = v->bytes + v->off[ns - 1], *b = refs[i].p;
                uint32_t la = v->off[ns] - v->off[ns - 1];
                while (l < la && l < refs[i].len && a[l] == b[l]) l++;
            }
            v->lcp[ns] = l;
            v->ids_off[ns] = i;
            ns++;
        }
        v->ids[i] = refs[i].id;
        v->tok_str[refs[i].id] = ns - 1;
    }
    v->off[ns] = at;
    v->ids_off[ns] = n;
    v->n_str = ns;
    /* first string per leading byte */
    int32_t s = 0;
    for (int b = 0; b <= 256; b++) {
        while (s < ns && b < 256 && v->bytes[v->off[s]] < b) s++;
        v->first[b] = b == 256 ? ns : s;
    }
    free(refs);
    *out = v;
    return 0;
nomem:
    free(refs);
    grammar_vocab_free(v);
    return err_set(e, ERR_NOMEM, "grammar: out of memory for the vocabulary");
}

int grammar_vocab_new(grammar_vocab **out, const tok *t, int32_t n_vocab, err *e)
{
    *out = NULL;
    int32_t nt = tok_vocab_size(t);
    if (nt <= 0) return err_set(e, ERR_INVALID, "grammar: empty vocabulary");
    if (n_vocab != 0 && n_vocab < nt)
        return err_set(e, ERR_INVALID, "grammar: %d logit rows for a tokenizer of %d tokens", n_vocab, nt);
    int32_t n = n_vocab ? n_vocab : nt;
    const char **pieces = calloc((size_t)n, sizeof *pieces);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    uint8_t *eog = calloc((size_t)n, 1);
    if (!pieces || !lens || !eog) {
        free(pieces);
        free(lens);
        free(eog);
        return err_set(e, ERR_NOMEM, "grammar: out of memory for the vocabulary");
    }
    for (int32_t i = 0; i < nt; i++) {
        pieces[i] = tok_piece(t, i, &lens[i], 0);
        eog[i] = (uint8_t)(tok_is_eog(t, i) != 0);
    }
    int rc = grammar_vocab_from_pieces(out, n, pieces, lens, eog, e);
    free(pieces);
    free(lens);
    free(eog);
    return rc;
}

int32_t grammar_vocab_size(const grammar_vocab *v) { return v->n_vocab; }
size_t grammar_mask_words(const grammar_vocab *v) { return ((size_t)v->n_vocab + 31) / 32; }
