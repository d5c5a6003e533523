/* tok.c — SentencePiece-style BPE (tokenizer.ggml.model = llama) and byte-level
 * BPE (gpt2) built from a format-neutral vocabulary (tok_vocab); the GGUF
 * adapter (tok_vocab_from_gguf) is here too. See tok.h for the contract.
 *
 * Both families share one engine: the text is first cut at added tokens
 * (CONTROL when parse_special, USER_DEFINED always) with a leftmost-longest
 * match over a byte trie, as HF tokenizers' AddedVocabulary does; each piece in
 * between is then turned into symbols (UTF-8 chars for llama, bytes for gpt2)
 * that are merged pairwise, best pair first (ties: leftmost), with a binary heap.
 *  - llama: a pair may merge when the concatenation is a vocabulary token that
 *    may be a merge result; its rank orders by score (higher first).
 *  - gpt2: a pair merges when tokenizer.ggml.merges lists it; rank = its index.
 *
 * Gemma stores its runs of spaces ("  ", "   "...) as USER_DEFINED tokens made
 * of real spaces. HF's Gemma tokenizer spells them "▁▁"... and reaches them by
 * merges ranked above every normal token (their position in the vocabulary
 * comes first) rather than matching them in the raw text; we do the same, which
 * is what makes e.g. 40 spaces tokenize as 32+8, not 31+9. */
#include "tok.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

#define TOK_MAX_VOCAB (1 << 24)
#define TOK_MAX_PIECE 4096
#define RANK_NONE INT32_MAX

enum { TT_UNDEF = 0, TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };
enum { KIND_SPM = 1, KIND_BPE = 2 };

/* uint64 -> (int32, int32) open-addressing hash; key 0 is reserved as empty, so
 * every stored key has bit 63 set. */
typedef struct u64map {
    uint64_t *keys; /* [cap] */
    int32_t *v1;    /* [cap] */
    int32_t *v2;    /* [cap] */
    uint64_t mask;  /* cap - 1, cap a power of two */
} u64map;

struct tok {
    int kind;
    int32_t n;              /* vocabulary size */
    uni_split_kind split;   /* gpt2 only */
    int nfc;                /* gpt2: NFC-normalize text pieces (qwen2) */
    int whole_words;        /* gpt2: a piece that is itself a vocabulary token is
                               emitted as is, before any merge (tiktoken's rule, HF's
                               ignore_merges; o200k's tokenizer.json asks for it) */
    int add_bos, add_space_prefix;
    int32_t bos, eos, unk, pad;
    uint8_t *type;          /* [n] token_type */
    uint8_t *eog;           /* [n] 1 = ends generation */
    int32_t *rank;          /* [n] llama: merge rank of a token as a merge result */
    uint32_t *key_off, *key_len; /* [n] the spelling merges look up (llama: ▁ for
                                    space; gpt2: raw bytes) into keys */
    uint32_t *dec_off, *dec_len; /* [n] decoded bytes into dec */
    char *keys, *dec;       /* arenas */
    int32_t byte_id[256];   /* <0xXX> token (llama) or byte-level char token (gpt2), -1 */
    /* text -> id: open addressing over ids (-1 empty) */
    int32_t *tab;
    uint64_t tab_mask;
    u64map pairs;           /* gpt2: (left<<32|right)|bit63 -> (rank, result) */
    /* added-token trie: nodes 0..n_nodes; child (node<<8|byte)|bit63 -> node;
     * node_tok[node] = token ending there or -1 */
    u64map trie;
    int32_t *node_tok;
    int32_t n_nodes;
    uint8_t first_byte[256]; /* 1 if some added token starts with this byte */
    size_t max_piece;
};

/* ---------------------------------------------------------------- helpers */

static uint64_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

static int map_init(u64map *m, uint64_t n)
{
    uint64_t cap = pow2_at_least(n * 2 + 1);
    m->keys = calloc(cap, sizeof *m->keys);
    m->v1 = malloc(cap * sizeof *m->v1);
    m->v2 = malloc(cap * sizeof *m->v2);
    m->mask = cap - 1;
    return m->keys && m->v1 && m->v2;
}

static void map_free(u64map *m)
{
    free(m->keys);
    free(m->v1);
    free(m->v2);
}

/* Returns the slot of key (inserting it if absent and `insert`), or -1. */
static int64_t map_slot(const u64map *m, uint64_t key, int insert)
{
    key |= 1ull << 63;
    uint64_t i = mix64(key) & m->mask;
    for (;;) {
        if (m->keys[i] == key) return (int64_t)i;
        if (m->keys[i] == 0) {
            if (!insert) return -1;
            m->keys[i] = key;
            return (int64_t)i;
        }
        i = (i + 1) & m->mask;
    }
}

/* Shows untrusted bytes in a message: printable ASCII as is, the rest \xHH,
 * cut at 40 chars. */
typedef struct shown { char s[180]; } shown;
static shown show(const char *p, size_t n)
{
    shown r;
    size_t o = 0;
    for (size_t i = 0; i < n && o < sizeof r.s - 8; i++) {
        unsigned char c = (unsigned char)p[i];
        if (i >= 40) {
            memcpy(r.s + o, "...", 3);
            o += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7F && c != '\'' && c != '\\') r.s[o++] = (char)c;
        else o += (size_t)snprintf(r.s + o, sizeof r.s - o, "\\x%02X", c);
    }
    r.s[o] = 0;
    return r;
}

static int32_t lookup(const tok *t, const void *s, size_t n)
{
    uint64_t i = hash_bytes(s, n) & t->tab_mask;
    for (;;) {
        int32_t id = t->tab[i];
        if (id < 0) return -1;
        if (t->key_len[id] == n && memcmp(t->keys + t->key_off[id], s, n) == 0) return id;
        i = (i + 1) & t->tab_mask;
    }
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
 * other 68 bytes for U+0100.. in byte order. */
static void byte_level_table(uint32_t byte_cp[256])
{
    int k = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        byte_cp[b] = printable ? (uint32_t)b : (uint32_t)(256 + k++);
    }
}

/* Byte-level spelling -> raw bytes into out (room for n bytes); returns the
 * length, or -1 if some char is outside the byte alphabet. */
static long byte_level_decode(const uint8_t *s, size_t n, const int16_t *cp_byte, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = uni_decode(s + i, n - i, &cp);
        if (cp >= 324 || cp_byte[cp] < 0) return -1;
        out[o++] = (uint8_t)cp_byte[cp];
        i += (size_t)l;
    }
    return (long)o;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

void tok_free(tok *t)
{
    if (!t) return;
    free(t->type);
    free(t->eog);
    free(t->rank);
    free(t->key_off);
    free(t->key_len);
    free(t->dec_off);
    free(t->dec_len);
    free(t->keys);
    free(t->dec);
    free(t->tab);
    map_free(&t->pairs);
    map_free(&t->trie);
    free(t->node_tok);
    free(t);
}

/* ------------------------------------------------------------------- load */

static int all_spaces(const char *s, size_t n)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ') return 0;
    return 1;
}

static const char *const eog_names[] = {
    "<end_of_turn>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>",
    "<|end|>", "<|return|>", "<|call|>", "<eos>", "</s>",
};

/* Builds t->tab, the text -> id table (a later duplicate wins, as in a Python
 * dict built from the vocabulary). */
static int build_lookup(tok *t, err *e)
{
    uint64_t cap = pow2_at_least((uint64_t)t->n * 2 + 1);
    t->tab = malloc(cap * sizeof *t->tab);
    if (!t->tab) return err_set(e, ERR_NOMEM, "tokenizer: out of memory (lookup table)");
    memset(t->tab, 0xFF, cap * sizeof *t->tab);
    t->tab_mask = cap - 1;
    for (int32_t id = 0; id < t->n; id++) {
        const char *s = t->keys + t->key_off[id];
        size_t n = t->key_len[id];
        if (n == 0) continue;
        uint64_t i = hash_bytes(s, n) & t->tab_mask;
        for (;;) {
            int32_t o = t->tab[i];
            if (o < 0) { t->tab[i] = id; break; }
            if (t->key_len[o] == n && memcmp(t->keys + t->key_off[o], s, n) == 0) {
                t->tab[i] = id;
                break;
            }
            i = (i + 1) & t->tab_mask;
        }
    }
    return 0;
}

/* Inserts the added tokens into the match trie. */
static int build_trie(tok *t, err *e)
{
    uint64_t total = 1;
    for (int32_t id = 0; id < t->n; id++)
        if (t->type[id] == TT_CONTROL || t->type[id] == TT_USER) total += t->dec_len[id];
    if (!map_init(&t->trie, total) || !(t->node_tok = malloc(total * sizeof *t->node_tok)))
        return err_set(e, ERR_NOMEM, "tokenizer: out of memory (added-token trie)");
    memset(t->node_tok, 0xFF, total * sizeof *t->node_tok);
    t->n_nodes = 1;
    for (int32_t id = 0; id < t->n; id++) {
        int ty = t->type[id];
        if (ty != TT_CONTROL && ty != TT_USER) continue;
        const uint8_t *s = (const uint8_t *)t->dec + t->dec_off[id];
        size_t n = t->dec_len[id];
        if (n == 0) continue;
        /* llama: all-space USER_DEFINED tokens are merge results, not matched */
        if (t->kind == KIND_SPM && ty == TT_USER && t->rank[id] != RANK_NONE) continue;
        int32_t node = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t key = ((uint64_t)node << 8) | s[i];
            int64_t sl = map_slot(&t->trie, key, 0);
            if (sl < 0) {
                sl = map_slot(&t->trie, key, 1);
                t->trie.v1[sl] = t->n_nodes++;
            }
            node = t->trie.v1[sl];
        }
        t->node_tok[node] = id; /* a later duplicate wins */
        t->first_byte[s[0]] = 1;
    }
    return 0;
}

typedef struct score_id { float score; int32_t id; } score_id;

static int score_id_cmp(const void *pa, const void *pb)
{
    const score_id *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* ---------------------------------------------------------- GGUF adapter */

/* The vocabulary's memory: pointer/length arrays into the GGUF file and copies
 * of the numeric arrays (which the file stores unaligned). */
typedef struct vocab_arena {
    const char **text;
    uint32_t *text_len;
    float *scores;
    int32_t *types;
    const char **merges;
    uint32_t *merge_len;
} vocab_arena;

void tok_vocab_free(tok_vocab *v)
{
    vocab_arena *a = v->arena;
    if (a) {
        free(a->text);
        free(a->text_len);
        free(a->scores);
        free(a->types);
        free(a->merges);
        free(a->merge_len);
        free(a);
    }
    memset(v, 0, sizeof *v);
}

static int gguf_special(tok_vocab *v, const gguf_file *g, const char *key, int role, err *e)
{
    int32_t id;
    int rc = gguf_get_i32(g, key, &id, e);
    if (rc == ERR_ABSENT) return 0;
    if (rc) return rc;
    if (v->n_special == TOK_MAX_SPECIAL) return 0;
    v->special[v->n_special++] = (tok_special){.name = key, .id = id, .role = role};
    return 0;
}

int tok_vocab_from_gguf(tok_vocab *v, const gguf_file *g, err *e)
{
    memset(v, 0, sizeof *v);
    v->name_tokens = "tokenizer.ggml.tokens";
    v->name_scores = "tokenizer.ggml.scores";
    v->name_types = "tokenizer.ggml.token_type";
    v->name_merges = "tokenizer.ggml.merges";
    v->name_pre = "tokenizer.ggml.pre";
    v->add_bos = v->add_space_prefix = -1;
    const char *model;
    uint64_t model_len;
    int rc = gguf_get_str(g, "tokenizer.ggml.model", &model, &model_len, e);
    if (rc == ERR_ABSENT) return err_set(e, ERR_FORMAT, "tokenizer.ggml.model: missing");
    if (rc) return rc;
    if (model_len == 5 && memcmp(model, "llama", 5) == 0) v->kind = TOK_SPM;
    else if (model_len == 4 && memcmp(model, "gpt2", 4) == 0) v->kind = TOK_BPE;
    else {
        shown m = show(model, model_len);
        return err_set(e, ERR_UNSUPPORTED, "tokenizer.ggml.model: '%s' is not supported (llama, gpt2)", m.s);
    }

    gguf_arr toks, scores = {0}, types = {0}, merges = {0};
    rc = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, &toks, e);
    if (rc == ERR_ABSENT) return err_set(e, ERR_FORMAT, "tokenizer.ggml.tokens: missing");
    if (rc) return rc;
    if (toks.n == 0) return err_set(e, ERR_FORMAT, "tokenizer.ggml.tokens: empty vocabulary");
    if (toks.n > TOK_MAX_VOCAB)
        return err_set(e, ERR_FORMAT, "tokenizer.ggml.tokens: %llu tokens exceed the limit of %d",
                       (unsigned long long)toks.n, TOK_MAX_VOCAB);
    const int32_t n = (int32_t)toks.n;
    rc = gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, &scores, e);
    if (rc && rc != ERR_ABSENT) return rc;
    const int have_scores = rc == 0;
    if (have_scores && scores.n != toks.n)
        return err_set(e, ERR_FORMAT, "tokenizer.ggml.scores: %llu entries for %d tokens",
                       (unsigned long long)scores.n, n);
    if (!have_scores && v->kind == TOK_SPM)
        return err_set(e, ERR_FORMAT, "tokenizer.ggml.scores: missing (required by the llama tokenizer)");
    rc = gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_VT_INT32, &types, e);
    if (rc && rc != ERR_ABSENT) return rc;
    const int have_types = rc == 0;
    if (have_types && types.n != toks.n)
        return err_set(e, ERR_FORMAT, "tokenizer.ggml.token_type: %llu entries for %d tokens",
                       (unsigned long long)types.n, n);
    if (v->kind == TOK_BPE) {
        rc = gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_VT_STRING, &merges, e);
        if (rc == ERR_ABSENT)
            return err_set(e, ERR_FORMAT, "tokenizer.ggml.merges: missing (required by the gpt2 tokenizer)");
        if (rc) return rc;
        if (merges.n > (uint64_t)INT32_MAX - 1)
            return err_set(e, ERR_FORMAT, "tokenizer.ggml.merges: %llu entries exceed the limit",
                           (unsigned long long)merges.n);
    }

    vocab_arena *a = calloc(1, sizeof *a);
    if (!a) return err_set(e, ERR_NOMEM, "tokenizer: out of memory");
    v->arena = a;
    a->text = malloc((size_t)n * sizeof *a->text);
    a->text_len = malloc((size_t)n * sizeof *a->text_len);
    if (have_scores) a->scores = malloc((size_t)n * sizeof *a->scores);
    if (have_types) a->types = malloc((size_t)n * sizeof *a->types);
    if (merges.n) {
        a->merges = malloc((size_t)merges.n * sizeof *a->merges);
        a->merge_len = malloc((size_t)merges.n * sizeof *a->merge_len);
    }
    if (!a->text || !a->text_len || (have_scores && !a->scores) || (have_types && !a->types) ||
        (merges.n && (!a->merges || !a->merge_len))) {
        tok_vocab_free(v);
        return err_set(e, ERR_NOMEM, "tokenizer: out of memory (%d tokens)", n);
    }
    for (int32_t i = 0; i < n; i++) {
        uint64_t l;
        a->text[i] = gguf_arr_str(&toks, (uint64_t)i, &l);
        a->text_len[i] = l > UINT32_MAX ? UINT32_MAX : (uint32_t)l;
        if (have_scores) a->scores[i] = gguf_arr_f32(&scores, (uint64_t)i);
        if (have_types) a->types[i] = gguf_arr_i32(&types, (uint64_t)i);
    }
    for (uint64_t i = 0; i < merges.n; i++) {
        uint64_t l;
        a->merges[i] = gguf_arr_str(&merges, i, &l);
        a->merge_len[i] = l > UINT32_MAX ? UINT32_MAX : (uint32_t)l;
    }
    v->n = n;
    v->text = a->text;
    v->text_len = a->text_len;
    v->scores = a->scores;
    v->types = a->types;
    v->n_merges = (int64_t)merges.n;
    v->merges = a->merges;
    v->merge_len = a->merge_len;

    static const struct { const char *key; int role; } ids[] = {
        {"tokenizer.ggml.bos_token_id", TOK_ROLE_BOS}, {"tokenizer.ggml.eos_token_id", TOK_ROLE_EOS},
        {"tokenizer.ggml.unknown_token_id", TOK_ROLE_UNK}, {"tokenizer.ggml.padding_token_id", TOK_ROLE_PAD},
        {"tokenizer.ggml.eot_token_id", TOK_ROLE_EOG}, {"tokenizer.ggml.eom_token_id", TOK_ROLE_EOG},
        {"tokenizer.ggml.seperator_token_id", TOK_ROLE_OTHER}, {"tokenizer.ggml.separator_token_id", TOK_ROLE_OTHER},
    };
    for (size_t k = 0; k < sizeof ids / sizeof *ids; k++)
        if ((rc = gguf_special(v, g, ids[k].key, ids[k].role, e))) {
            tok_vocab_free(v);
            return rc;
        }
    rc = gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos, e);
    if (rc && rc != ERR_ABSENT) { tok_vocab_free(v); return rc; }
    rc = gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, e);
    if (rc && rc != ERR_ABSENT) { tok_vocab_free(v); return rc; }
    if (v->kind == TOK_BPE) {
        uint64_t pre_len = 0;
        rc = gguf_get_str(g, "tokenizer.ggml.pre", &v->pre, &pre_len, e);
        if (rc && rc != ERR_ABSENT) { tok_vocab_free(v); return rc; }
        if (rc == ERR_ABSENT) v->pre = NULL;
        v->pre_len = (size_t)pre_len;
    }
    return 0;
}

int tok_load(tok **out, gguf_file *g, err *e)
{
    *out = NULL;
    tok_vocab v;
    int rc = tok_vocab_from_gguf(&v, g, e);
    if (rc) return rc;
    rc = tok_create(out, &v, e);
    tok_vocab_free(&v);
    return rc;
}

/* ------------------------------------------------------------- the build */

int tok_create(tok **out, const tok_vocab *v, err *e)
{
    *out = NULL;
    const int kind = v->kind == TOK_SPM ? KIND_SPM : KIND_BPE;
    const int32_t n = v->n;
    int rc;
    if (n < 1 || n > TOK_MAX_VOCAB) return err_set(e, ERR_FORMAT, "%s: %d tokens", v->name_tokens, n);
    if (kind == KIND_SPM && !v->scores)
        return err_set(e, ERR_FORMAT, "%s: missing (required by the llama tokenizer)", v->name_scores);

    tok *t = calloc(1, sizeof *t);
    if (!t) return err_set(e, ERR_NOMEM, "tokenizer: out of memory");
    t->kind = kind;
    t->n = n;
    uint64_t key_bytes = 0;
    for (int32_t i = 0; i < n; i++) {
        const uint64_t l = v->text_len[i];
        if (l > TOK_MAX_PIECE) {
            tok_free(t);
            return err_set(e, ERR_FORMAT, "%s[%d]: %llu bytes long (limit %d)", v->name_tokens, i,
                           (unsigned long long)l, TOK_MAX_PIECE);
        }
        key_bytes += l;
    }
    t->type = malloc((size_t)n);
    t->eog = calloc((size_t)n, 1);
    t->rank = malloc((size_t)n * sizeof *t->rank);
    t->key_off = malloc((size_t)n * 4);
    t->key_len = malloc((size_t)n * 4);
    t->dec_off = malloc((size_t)n * 4);
    t->dec_len = malloc((size_t)n * 4);
    /* llama keys grow when spaces become U+2581 (1 -> 3 bytes) */
    t->keys = malloc(key_bytes * 3 + 1);
    t->dec = malloc(key_bytes + 1);
    if (!t->type || !t->eog || !t->rank || !t->key_off || !t->key_len || !t->dec_off ||
        !t->dec_len || !t->keys || !t->dec) {
        tok_free(t);
        return err_set(e, ERR_NOMEM, "tokenizer: out of memory (%d tokens)", n);
    }
    memset(t->byte_id, 0xFF, sizeof t->byte_id);

    uint32_t byte_cp[256];
    int16_t cp_byte[324];
    byte_level_table(byte_cp);
    memset(cp_byte, 0xFF, sizeof cp_byte);
    for (int b = 0; b < 256; b++) cp_byte[byte_cp[b]] = (int16_t)b;

    uint64_t ko = 0, dco = 0;
    for (int32_t i = 0; i < n; i++) {
        const uint64_t l = v->text_len[i];
        const char *s = v->text[i];
        int32_t ty = v->types ? v->types[i] : TT_NORMAL;
        if (ty < 0 || ty > TT_BYTE) {
            tok_free(t);
            return err_set(e, ERR_FORMAT, "%s[%d]: unknown type %d", v->name_types, i, ty);
        }
        if (ty == TT_UNDEF) ty = TT_NORMAL;
        t->type[i] = (uint8_t)ty;
        if (v->scores && !isfinite(v->scores[i])) {
            tok_free(t);
            return err_set(e, ERR_FORMAT, "%s[%d]: not a finite number", v->name_scores, i);
        }
        t->key_off[i] = (uint32_t)ko;
        t->dec_off[i] = (uint32_t)dco;
        t->rank[i] = RANK_NONE;
        if (ty == TT_BYTE) {
            int hi = l == 6 ? hexval(s[3]) : -1, lo = l == 6 ? hexval(s[4]) : -1;
            if (l != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>' || hi < 0 || lo < 0) {
                shown sh = show(s, l);
                tok_free(t);
                return err_set(e, ERR_FORMAT, "%s[%d]: malformed byte token '%s'", v->name_tokens, i, sh.s);
            }
            int b = hi * 16 + lo;
            if (kind == KIND_SPM) {
                if (t->byte_id[b] >= 0) {
                    shown sh = show(s, l);
                    int32_t first = t->byte_id[b];
                    tok_free(t);
                    return err_set(e, ERR_FORMAT, "%s[%d]: byte token '%s' duplicates token %d", v->name_tokens, i,
                                   sh.s, first);
                }
                t->byte_id[b] = i;
            }
            t->dec[dco++] = (char)b;
            /* the key stays the literal text: "<0x41>" typed by a user is text */
            memcpy(t->keys + ko, s, l);
            ko += l;
        } else if (kind == KIND_SPM) {
            int respell = (ty == TT_USER && all_spaces(s, l));
            for (uint64_t k = 0; k < l; k++) {
                if (respell) {
                    memcpy(t->keys + ko, "\xE2\x96\x81", 3);
                    ko += 3;
                } else {
                    t->keys[ko++] = s[k];
                }
            }
            /* decoded text: U+2581 -> ' ' */
            for (uint64_t k = 0; k < l;) {
                if (k + 3 <= l && memcmp(s + k, "\xE2\x96\x81", 3) == 0) {
                    t->dec[dco++] = ' ';
                    k += 3;
                } else {
                    t->dec[dco++] = s[k++];
                }
            }
            if (respell) t->rank[i] = -1; /* placed before normal tokens below */
        } else {
            long bl = byte_level_decode((const uint8_t *)s, l, cp_byte, (uint8_t *)t->dec + dco);
            if (bl < 0) { /* not byte-level spelled (an added token): raw UTF-8 */
                memcpy(t->dec + dco, s, l);
                bl = (long)l;
            }
            memcpy(t->keys + ko, t->dec + dco, (size_t)bl);
            ko += (uint64_t)bl;
            dco += (uint64_t)bl;
        }
        t->key_len[i] = (uint32_t)(ko - t->key_off[i]);
        t->dec_len[i] = (uint32_t)(dco - t->dec_off[i]);
        if ((size_t)t->dec_len[i] > t->max_piece) t->max_piece = t->dec_len[i];
    }

    t->bos = t->eos = t->unk = t->pad = -1;
    for (int k = 0; k < v->n_special; k++) {
        const tok_special *sp = &v->special[k];
        if (sp->id < -1 || sp->id >= n) {
            tok_free(t);
            return err_set(e, ERR_FORMAT, "%s: %d is out of range (vocab has %d tokens)", sp->name, sp->id, n);
        }
        if (sp->id < 0) continue;
        switch (sp->role) {
        case TOK_ROLE_BOS: t->bos = sp->id; break;
        case TOK_ROLE_EOS: t->eos = sp->id; break;
        case TOK_ROLE_UNK: t->unk = sp->id; break;
        case TOK_ROLE_PAD: t->pad = sp->id; break;
        case TOK_ROLE_EOG: t->eog[sp->id] = 1; break;
        default: break;
        }
    }
    if (t->eos >= 0) t->eog[t->eos] = 1;
    /* Harmony (GPT-OSS): "<|end|>" closes one message (the analysis) and the model
     * goes on with the next; only "<|return|>" and "<|call|>" end its turn. So
     * "<|end|>" is not an end of generation in a vocabulary that has "<|return|>"
     * (as llama.cpp decides for gpt-oss). */
    int harmony = 0;
    for (int32_t i = 0; i < n && !harmony; i++)
        harmony = t->type[i] == TT_CONTROL && t->dec_len[i] == 10 && !memcmp(t->dec + t->dec_off[i], "<|return|>", 10);
    for (int32_t i = 0; i < n; i++) {
        if (t->type[i] != TT_CONTROL && t->type[i] != TT_USER) continue;
        for (size_t k = 0; k < sizeof eog_names / sizeof *eog_names; k++)
            if (t->dec_len[i] == strlen(eog_names[k]) && memcmp(t->dec + t->dec_off[i], eog_names[k], t->dec_len[i]) == 0 &&
                !(harmony && !strcmp(eog_names[k], "<|end|>")))
                t->eog[i] = 1;
    }
    t->add_bos = v->add_bos >= 0 ? v->add_bos : kind == KIND_SPM;
    t->add_space_prefix = v->add_space_prefix >= 0 ? v->add_space_prefix : kind == KIND_SPM;

    if (kind == KIND_SPM) {
        /* merge ranks: all-space user tokens first (in id order), then normal
         * tokens by score, higher first, ties by id */
        score_id *order = malloc((size_t)n * sizeof *order);
        if (!order) {
            tok_free(t);
            return err_set(e, ERR_NOMEM, "tokenizer: out of memory");
        }
        int32_t r = 0, m = 0;
        for (int32_t i = 0; i < n; i++) {
            if (t->rank[i] == -1) t->rank[i] = r++;
            else if (t->type[i] == TT_NORMAL) order[m++] = (score_id){v->scores[i], i};
        }
        qsort(order, (size_t)m, sizeof *order, score_id_cmp);
        for (int32_t i = 0; i < m; i++) t->rank[order[i].id] = r + i;
        free(order);
    }

    if ((rc = build_lookup(t, e))) { tok_free(t); return rc; }

    if (kind == KIND_BPE) {
        for (int b = 0; b < 256; b++) {
            uint8_t c = (uint8_t)b;
            t->byte_id[b] = lookup(t, &c, 1);
        }
        const char *pre = v->pre ? v->pre : "default";
        const size_t pre_len = v->pre ? v->pre_len : 7;
        static const struct { const char *name; uni_split_kind k; int nfc, whole; } pres[] = {
            {"default", UNI_SPLIT_GPT2, 0, 0}, {"gpt2", UNI_SPLIT_GPT2, 0, 0},
            {"llama-bpe", UNI_SPLIT_LLAMA3, 0, 0}, {"llama3", UNI_SPLIT_LLAMA3, 0, 0},
            {"llama-v3", UNI_SPLIT_LLAMA3, 0, 0}, {"smaug-bpe", UNI_SPLIT_LLAMA3, 0, 0},
            {"qwen2", UNI_SPLIT_QWEN2, 1, 0}, {"deepseek-r1-qwen", UNI_SPLIT_QWEN2, 1, 0},
            {"gpt-4o", UNI_SPLIT_O200K, 0, 1},
        };
        size_t k;
        for (k = 0; k < sizeof pres / sizeof *pres; k++)
            if (strlen(pres[k].name) == pre_len && memcmp(pres[k].name, pre, pre_len) == 0) break;
        if (k == sizeof pres / sizeof *pres) {
            shown sh = show(pre, pre_len);
            tok_free(t);
            return err_set(e, ERR_UNSUPPORTED,
                           "%s: '%s' is not supported (default, gpt2, llama-bpe, llama3, qwen2, gpt-4o)", v->name_pre,
                           sh.s);
        }
        t->split = pres[k].k;
        t->nfc = pres[k].nfc;
        t->whole_words = pres[k].whole;

        if (!map_init(&t->pairs, (uint64_t)v->n_merges)) {
            tok_free(t);
            return err_set(e, ERR_NOMEM, "tokenizer: out of memory (merges)");
        }
        uint8_t buf[2 * TOK_MAX_PIECE + 2];
        for (int64_t i = 0; i < v->n_merges; i++) {
            const uint64_t l = v->merge_len[i];
            const char *s = v->merges[i];
            const char *sp = l ? memchr(s, ' ', l) : NULL;
            if (!sp || sp == s || sp == s + l - 1 || memchr(sp + 1, ' ', (size_t)(s + l - sp - 1)) ||
                l > 2 * TOK_MAX_PIECE) {
                shown sh = show(s, l);
                tok_free(t);
                return err_set(e, ERR_FORMAT, "%s[%lld]: '%s' is not an 'a b' pair", v->name_merges, (long long)i, sh.s);
            }
            const char *half[2] = {s, sp + 1};
            size_t hl[2] = {(size_t)(sp - s), (size_t)(s + l - sp - 1)};
            int32_t ids[2];
            size_t bl_total = 0;
            for (int h = 0; h < 2; h++) {
                long bl = byte_level_decode((const uint8_t *)half[h], hl[h], cp_byte, buf + bl_total);
                if (bl < 0) {
                    memcpy(buf + bl_total, half[h], hl[h]);
                    bl = (long)hl[h];
                }
                ids[h] = lookup(t, buf + bl_total, (size_t)bl);
                if (ids[h] < 0) {
                    shown sh = show(half[h], hl[h]);
                    tok_free(t);
                    return err_set(e, ERR_FORMAT, "%s[%lld]: '%s' is not in the vocabulary", v->name_merges,
                                   (long long)i, sh.s);
                }
                bl_total += (size_t)bl;
            }
            int32_t res = lookup(t, buf, bl_total);
            if (res < 0) {
                shown sh = show(s, l);
                tok_free(t);
                return err_set(e, ERR_FORMAT, "%s[%lld]: the result of '%s' is not in the vocabulary", v->name_merges,
                               (long long)i, sh.s);
            }
            int64_t slot = map_slot(&t->pairs, ((uint64_t)(uint32_t)ids[0] << 32) | (uint32_t)ids[1], 1);
            t->pairs.v1[slot] = (int32_t)i; /* a later duplicate wins, as in HF */
            t->pairs.v2[slot] = res;
        }
    }
    if ((rc = build_trie(t, e))) { tok_free(t); return rc; }
    *out = t;
    return 0;
}

/* ---------------------------------------------------------------- getters */

int32_t tok_vocab_size(const tok *t) { return t->n; }
int32_t tok_bos(const tok *t) { return t->bos; }
int32_t tok_eos(const tok *t) { return t->eos; }
int tok_add_bos(const tok *t) { return t->add_bos && t->bos >= 0; }
int tok_is_eog(const tok *t, int32_t id) { return id >= 0 && id < t->n && t->eog[id]; }

const char *tok_piece(const tok *t, int32_t id, size_t *len, int special)
{
    *len = 0;
    if (id < 0 || id >= t->n) return "";
    int ty = t->type[id];
    if (!special && (ty == TT_CONTROL || ty == TT_UNKNOWN)) return "";
    *len = t->dec_len[id];
    return t->dec + t->dec_off[id];
}

/* ----------------------------------------------------------------- encode */

/* One symbol of the word being merged: a byte span of the (normalized) text. */
typedef struct sym {
    uint32_t start, len;
    int32_t id;         /* -1: not in the vocabulary (llama: byte fallback) */
    int32_t prev, next; /* linked list over live symbols, -1 at the ends */
} sym;

typedef struct cand {
    int32_t rank;
    uint32_t start; /* of the left symbol: ties go to the leftmost pair */
    int32_t left, right, result;
    uint32_t len;   /* left.len + right.len when pushed: stale if changed */
} cand;

typedef struct scratch {
    uint8_t *norm;  /* [3*len + 16] normalized text of a piece */
    uint8_t *nfc;   /* [3*len + 16] NFC output (gpt2 with NFC) */
    uint32_t *ends; /* [len + 1] split ends */
    sym *syms;      /* [len + 4] */
    cand *heap;     /* [3*len + 8] */
    size_t len;     /* the len the four above were sized for */
} scratch;

typedef struct sink {
    int32_t *ids;
    int cap;
    long n;
} sink;

static void emit(sink *k, int32_t id)
{
    if (k->n < k->cap) k->ids[k->n] = id;
    k->n++;
}

static int cand_less(const cand *a, const cand *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->start < b->start);
}

static void heap_push(cand *h, int *n, cand c)
{
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!cand_less(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, int *n)
{
    cand top = h[0], last = h[--(*n)];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < *n && cand_less(&h[l], best)) { m = l; best = &h[l]; }
        if (r < *n && cand_less(&h[r], best)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n > 0) h[i] = last;
    return top;
}

/* The merge candidate for syms[l], syms[r], or rank RANK_NONE. */
static cand pair_of(const tok *t, const uint8_t *text, const sym *s, int32_t l, int32_t r)
{
    cand c = {RANK_NONE, s[l].start, l, r, -1, s[l].len + s[r].len};
    if (s[l].id < 0 || s[r].id < 0) return c;
    if (t->kind == KIND_SPM) {
        int32_t id = lookup(t, text + s[l].start, c.len);
        if (id >= 0 && t->rank[id] != RANK_NONE) {
            c.rank = t->rank[id];
            c.result = id;
        }
    } else {
        int64_t sl = map_slot(&t->pairs, ((uint64_t)(uint32_t)s[l].id << 32) | (uint32_t)s[r].id, 0);
        if (sl >= 0) {
            c.rank = t->pairs.v1[sl];
            c.result = t->pairs.v2[sl];
        }
    }
    return c;
}

/* Runs the merges over syms[0..ns) (a linked chain over text). */
static void merge_all(const tok *t, const uint8_t *text, sym *s, int32_t ns, cand *heap)
{
    int nh = 0;
    for (int32_t i = 0; i + 1 < ns; i++) {
        cand c = pair_of(t, text, s, i, i + 1);
        if (c.rank != RANK_NONE) heap_push(heap, &nh, c);
    }
    while (nh > 0) {
        cand c = heap_pop(heap, &nh);
        sym *l = &s[c.left], *r = &s[c.right];
        if (l->len == 0 || r->len == 0 || l->next != c.right || l->len + r->len != c.len) continue;
        l->len += r->len;
        l->id = c.result;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = c.left;
        r->len = 0;
        if (l->prev >= 0) {
            cand p = pair_of(t, text, s, l->prev, c.left);
            if (p.rank != RANK_NONE) heap_push(heap, &nh, p);
        }
        if (l->next >= 0) {
            cand p = pair_of(t, text, s, c.left, l->next);
            if (p.rank != RANK_NONE) heap_push(heap, &nh, p);
        }
    }
}

/* llama: one piece of text between added tokens. */
static void encode_spm(const tok *t, const uint8_t *text, size_t len, int at_start, scratch *sc, sink *k)
{
    size_t m = 0;
    if (t->add_space_prefix && at_start) {
        memcpy(sc->norm, "\xE2\x96\x81", 3);
        m = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(sc->norm + m, "\xE2\x96\x81", 3);
            m += 3;
        } else {
            sc->norm[m++] = text[i];
        }
    }
    sym *s = sc->syms;
    int32_t ns = 0;
    for (size_t i = 0; i < m;) {
        uint32_t cp;
        int l = uni_decode(sc->norm + i, m - i, &cp);
        s[ns] = (sym){(uint32_t)i, (uint32_t)l, cp == UNI_INVALID ? -1 : lookup(t, sc->norm + i, (size_t)l),
                      ns - 1, -1};
        if (ns > 0) s[ns - 1].next = ns;
        ns++;
        i += (size_t)l;
    }
    merge_all(t, sc->norm, s, ns, sc->heap);
    int last_unk = 0;
    for (int32_t i = 0; i < ns; i++) {
        if (s[i].len == 0) continue;
        if (s[i].id >= 0) {
            emit(k, s[i].id);
            last_unk = 0;
            continue;
        }
        /* byte fallback: every byte of the char must have its token, else the
         * whole char becomes one <unk> (runs of <unk> fuse, as HF's fuse_unk) */
        int ok = 1;
        for (uint32_t b = 0; b < s[i].len; b++)
            if (t->byte_id[sc->norm[s[i].start + b]] < 0) ok = 0;
        if (ok) {
            for (uint32_t b = 0; b < s[i].len; b++) emit(k, t->byte_id[sc->norm[s[i].start + b]]);
            last_unk = 0;
        } else if (t->unk >= 0 && !last_unk) {
            emit(k, t->unk);
            last_unk = 1;
        }
    }
}

/* gpt2: one piece of text between added tokens. Returns 0, or -1 out of memory. */
static int encode_bpe(const tok *t, const uint8_t *text, size_t len, scratch *sc, sink *k)
{
    uint8_t *big = NULL;
    scratch wide = *sc;
    if (t->nfc && !uni_nfc_trivial(text, len)) {
        len = uni_nfc(text, len, sc->nfc);
        text = sc->nfc;
        if (len > sc->len) {
            /* NFC made the piece longer than the text the scratch was sized for
             * (up to 3x: composition exclusions decompose): this piece gets its own */
            big = malloc((len + 1) * sizeof(uint32_t) + (len + 4) * sizeof(sym) + (3 * len + 8) * sizeof(cand) + 16);
            if (!big) return -1;
            wide.heap = (cand *)big;
            wide.syms = (sym *)(big + (3 * len + 8) * sizeof(cand));
            wide.ends = (uint32_t *)((uint8_t *)wide.syms + (len + 4) * sizeof(sym));
            wide.len = len;
            sc = &wide;
        }
    }
    size_t np = uni_split(t->split, text, len, sc->ends);
    size_t start = 0;
    for (size_t p = 0; p < np; p++) {
        size_t end = sc->ends[p], wl = end - start;
        const uint8_t *w = text + start;
        int32_t whole = wl > 1 ? -1 : t->byte_id[w[0]];
        if (whole < 0 && t->whole_words) {
            whole = lookup(t, w, wl);
            if (whole >= 0 && t->type[whole] != TT_NORMAL) whole = -1;
        }
        if (whole >= 0) {
            emit(k, whole);
        } else {
            sym *s = sc->syms;
            for (size_t i = 0; i < wl; i++)
                s[i] = (sym){(uint32_t)i, 1, t->byte_id[w[i]], (int32_t)i - 1,
                             i + 1 < wl ? (int32_t)i + 1 : -1};
            merge_all(t, w, s, (int32_t)wl, sc->heap);
            for (size_t i = 0; i < wl; i++)
                if (s[i].len) {
                    if (s[i].id >= 0) emit(k, s[i].id);
                    else if (t->unk >= 0) emit(k, t->unk);
                }
        }
        start = end;
    }
    free(big);
    return 0;
}

/* Returns 0, or -1 out of memory. */
static int encode_piece(const tok *t, const uint8_t *text, size_t len, int at_start, scratch *sc, sink *k)
{
    if (len == 0) return 0;
    if (t->kind == KIND_SPM) {
        encode_spm(t, text, len, at_start, sc, k);
        return 0;
    }
    return encode_bpe(t, text, len, sc, k);
}

/* Length of the maximal subpart of an ill-formed sequence at s[0..n) (Unicode
 * ch. 3 "U+FFFD substitution of maximal subparts", what Python's and the
 * WHATWG decoders do), or 0 if s starts a well-formed char. */
static size_t bad_utf8_at(const uint8_t *s, size_t n)
{
    int want = uni_seq_len(s[0]);
    if (want == 1) return 0;
    if (want == 0) return 1;
    size_t k = 1;
    while (k < (size_t)want && k < n) {
        uint8_t lo = 0x80, hi = 0xBF;
        if (k == 1) {
            if (s[0] == 0xE0) lo = 0xA0;
            else if (s[0] == 0xED) hi = 0x9F;
            else if (s[0] == 0xF0) lo = 0x90;
            else if (s[0] == 0xF4) hi = 0x8F;
        }
        if (s[k] < lo || s[k] > hi) break;
        k++;
    }
    return k == (size_t)want ? 0 : k;
}

/* Offset of the first ill-formed byte of text, or len. */
static size_t first_bad_utf8(const uint8_t *text, size_t len)
{
    for (size_t i = 0; i < len;) {
        if (text[i] < 0x80) { i++; continue; }
        if (bad_utf8_at(text + i, len - i)) return i;
        i += (size_t)uni_seq_len(text[i]);
    }
    return len;
}

static int encode_valid(const tok *t, const uint8_t *text, size_t len, int add_bos, int parse_special,
                        int32_t *ids, int cap, err *e);

int tok_encode(const tok *t, const char *text_, size_t len, int add_bos, int parse_special,
               int32_t *ids, int cap, err *e)
{
    const uint8_t *text = (const uint8_t *)text_;
    if (len > (size_t)INT32_MAX / 4)
        return err_set(e, ERR_INVALID, "text of %zu bytes is too long to tokenize", len), -1;
    size_t bad = first_bad_utf8(text, len);
    if (bad == len) return encode_valid(t, text, len, add_bos, parse_special, ids, cap, e);
    /* Ill-formed UTF-8 is tokenized as its U+FFFD-substituted form: the text a
     * UTF-8 decoder (and so HF tokenizers, which only takes valid strings)
     * would see. A copy, at most 3x longer. */
    uint8_t *fixed = malloc(3 * len);
    if (!fixed) return err_set(e, ERR_NOMEM, "tokenizer: out of memory for %zu bytes of text", len), -1;
    memcpy(fixed, text, bad);
    size_t o = bad;
    for (size_t i = bad; i < len;) {
        size_t b = text[i] < 0x80 ? 0 : bad_utf8_at(text + i, len - i);
        if (b) {
            memcpy(fixed + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += b;
        } else {
            size_t l = (size_t)uni_seq_len(text[i]);
            memcpy(fixed + o, text + i, l);
            o += l;
            i += l;
        }
    }
    int r = encode_valid(t, fixed, o, add_bos, parse_special, ids, cap, e);
    free(fixed);
    return r;
}

size_t tok_max_ids(size_t len) { return 3 * len + 4; }

static int encode_valid(const tok *t, const uint8_t *text, size_t len, int add_bos, int parse_special,
                        int32_t *ids, int cap, err *e)
{
    if (cap < 0) return err_set(e, ERR_INVALID, "tok_encode: negative capacity"), -1;
    if (len > (size_t)INT32_MAX / 4)
        return err_set(e, ERR_INVALID, "text of %zu bytes is too long to tokenize", len), -1;
    sink k = {ids, cap, 0};
    if (add_bos && t->add_bos && t->bos >= 0) emit(&k, t->bos);
    if (len == 0) return (int)k.n;

    /* One allocation per call, sized by the text: the tokenizer stays
     * read-only and so safe to share between threads. */
    size_t norm_sz = 3 * len + 16;
    size_t need = 2 * norm_sz + (len + 1) * sizeof(uint32_t) + (len + 4) * sizeof(sym) +
                  (3 * len + 8) * sizeof(cand) + 64;
    uint8_t *mem = malloc(need);
    if (!mem) return err_set(e, ERR_NOMEM, "tokenizer: out of memory for %zu bytes of text", len), -1;
    scratch sc;
    sc.heap = (cand *)mem;
    sc.syms = (sym *)(mem + (3 * len + 8) * sizeof(cand));
    sc.ends = (uint32_t *)((uint8_t *)sc.syms + (len + 4) * sizeof(sym));
    sc.norm = (uint8_t *)(sc.ends + len + 1);
    sc.nfc = sc.norm + norm_sz;
    sc.len = len;

    size_t seg = 0;
    for (size_t i = 0; i < len;) {
        int32_t match = -1;
        size_t mlen = 0;
        if (t->first_byte[text[i]]) {
            int32_t node = 0;
            for (size_t j = i; j < len; j++) {
                int64_t sl = map_slot(&t->trie, ((uint64_t)node << 8) | text[j], 0);
                if (sl < 0) break;
                node = t->trie.v1[sl];
                int32_t id = t->node_tok[node];
                if (id >= 0 && (parse_special || t->type[id] != TT_CONTROL)) {
                    match = id;
                    mlen = j + 1 - i;
                }
            }
        }
        if (match < 0) {
            i++;
            continue;
        }
        if (encode_piece(t, text + seg, i - seg, seg == 0, &sc, &k)) goto nomem;
        emit(&k, match);
        i += mlen;
        seg = i;
    }
    if (encode_piece(t, text + seg, len - seg, seg == 0, &sc, &k)) goto nomem;
    free(mem);
    if (k.n > cap)
        return err_set(e, ERR_NOMEM, "text needs %ld tokens, room for %d", k.n, cap), -1;
    return (int)k.n;
nomem:
    free(mem);
    return err_set(e, ERR_NOMEM, "tokenizer: out of memory for a %zu-byte piece after NFC", len), -1;
}

/* ----------------------------------------------------------------- decode */

void tok_stream_init(tok_stream *s) { s->npend = 0; }

/* Appends the complete UTF-8 of in[0..n) to out, invalid bytes as U+FFFD; an
 * incomplete but so far valid tail is kept in s (when s is not NULL).
 * `o` is the current output length; returns the new one (never past cap). */
static size_t utf8_clean(tok_stream *s, const uint8_t *in, size_t n, char *out, size_t o, size_t cap)
{
    static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    size_t i = 0;
    while (i < n) {
        int want = uni_seq_len(in[i]);
        if (want > 1 && i + (size_t)want > n) {
            /* incomplete at the end: keep if its bytes so far could still be valid */
            int ok = 1;
            for (size_t j = i + 1; j < n; j++)
                if ((in[j] & 0xC0) != 0x80) ok = 0;
            if (ok && n - i >= 2) { /* second byte ranges of E0/ED/F0/F4 */
                uint8_t c = in[i], d = in[i + 1];
                if ((c == 0xE0 && d < 0xA0) || (c == 0xED && d > 0x9F) || (c == 0xF0 && d < 0x90) ||
                    (c == 0xF4 && d > 0x8F))
                    ok = 0;
            }
            if (ok && s) {
                memcpy(s->pend, in + i, n - i);
                s->npend = (int)(n - i);
                return o;
            }
        }
        uint32_t cp;
        int l = uni_decode(in + i, n - i, &cp);
        if (cp == UNI_INVALID) {
            if (o + 3 <= cap) { memcpy(out + o, fffd, 3); o += 3; }
            i += 1;
            continue;
        }
        if (o + (size_t)l <= cap) { memcpy(out + o, in + i, (size_t)l); o += (size_t)l; }
        i += (size_t)l;
    }
    return o;
}

size_t tok_stream_feed(const tok *t, tok_stream *s, int32_t id, char *out, size_t cap)
{
    size_t plen;
    const char *p = tok_piece(t, id, &plen, 0);
    /* pending bytes (<= 3) + the piece, cleaned in pieces small enough for a
     * stack buffer: only the first chunk can join the pending tail */
    uint8_t buf[4 + 64];
    size_t o = 0, i = 0;
    int np = s->npend;
    memcpy(buf, s->pend, (size_t)np);
    s->npend = 0;
    do {
        size_t take = plen - i < 64 ? plen - i : 64;
        memcpy(buf + np, p + i, take);
        i += take;
        size_t n = (size_t)np + take;
        np = 0;
        /* cut before a trailing incomplete sequence unless this is the end */
        if (i < plen) {
            size_t cut = n;
            for (size_t b = n; b > 0 && b + 4 > n; b--) {
                if ((buf[b - 1] & 0xC0) != 0x80) {
                    int want = uni_seq_len(buf[b - 1]);
                    if (want > 1 && b - 1 + (size_t)want > n) cut = b - 1;
                    break;
                }
            }
            o = utf8_clean(NULL, buf, cut, out, o, cap);
            np = (int)(n - cut);
            memmove(buf, buf + cut, (size_t)np);
        } else {
            o = utf8_clean(s, buf, n, out, o, cap);
        }
    } while (i < plen);
    return o;
}

size_t tok_stream_flush(tok_stream *s, char *out, size_t cap)
{
    size_t o = utf8_clean(NULL, s->pend, (size_t)s->npend, out, 0, cap);
    s->npend = 0;
    return o;
}

size_t tok_decode(const tok *t, const int32_t *ids, int n, char *out, size_t cap, int special)
{
    /* Whole-sequence: concatenate the bytes, then make them valid UTF-8. */
    size_t total = 0;
    tok_stream st;
    tok_stream_init(&st);
    char tmp[4 + 64 * 4];
    for (int i = 0; i < n; i++) {
        size_t plen;
        const char *p = tok_piece(t, ids[i], &plen, special);
        /* feed through the stream cleaner in chunks via a temporary token-less path */
        size_t off = 0;
        while (off < plen) {
            size_t take = plen - off < 64 ? plen - off : 64;
            uint8_t buf[4 + 64];
            int np = st.npend;
            memcpy(buf, st.pend, (size_t)np);
            st.npend = 0;
            memcpy(buf + np, p + off, take);
            off += take;
            size_t w = utf8_clean(&st, buf, (size_t)np + take, tmp, 0, sizeof tmp);
            for (size_t j = 0; j < w; j++, total++)
                if (cap && total < cap - 1) out[total] = tmp[j];
        }
    }
    size_t w = tok_stream_flush(&st, tmp, sizeof tmp);
    for (size_t j = 0; j < w; j++, total++)
        if (cap && total < cap - 1) out[total] = tmp[j];
    if (cap) out[total < cap - 1 ? total : cap - 1] = 0;
    return total;
}
