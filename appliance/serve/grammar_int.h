/* grammar_int.h — what the files of the grammar module share (not a public header).
 *
 *   grammar_build.c   expression builder (gb_*), UTF-8 classes, NFA -> DFA per rule,
 *                     inlining, trimming, the flat automaton (grammar_automaton)
 *   grammar_regex.c   regular expressions -> expressions
 *   grammar_gbnf.c    llama.cpp GBNF -> rules
 *   grammar_schema.c  JSON Schema -> rules
 *   grammar_vocab.c   the sorted vocabulary
 *   grammar_match.c   stacks, closure, byte steps, vocabulary walks, token caches, masks
 *   grammar.c         grammar_compile and the small public entry points
 */
#ifndef SPARKD_GRAMMAR_INT_H
#define SPARKD_GRAMMAR_INT_H

#include <stdint.h>

#include "grammar.h"

/* ------------------------------------------------------------------ expressions */

enum {
    GX_NONE = 0, /* matches nothing */
    GX_EMPTY,    /* matches the empty string */
    GX_SET,      /* one byte of a set: a = set index */
    GX_SEQ,      /* kids[a .. a+b) in order */
    GX_ALT,      /* any of kids[a .. a+b) */
    GX_REP,      /* kid repeated a..b times (b = -1: unbounded) */
    GX_CALL,     /* rule a */
};

typedef struct gx_node {
    int32_t kind;
    int32_t a, b;
    int32_t kid;
} gx_node;

typedef struct gb_rule {
    int32_t body;     /* expression, -1 until set */
    int32_t name;     /* offset in gb.names */
    uint8_t inline_ok; /* may be copied into its callers when small and not recursive */
} gb_rule;

/* Builder: everything lives in growable arrays with hard caps; after the first failure
 * every builder call returns -1 and the first error stays in *e. */
typedef struct gb {
    gx_node *nodes;
    int32_t n_nodes, cap_nodes;
    int32_t *kids;
    int32_t n_kids, cap_kids;
    uint8_t (*sets)[32];
    int32_t n_sets, cap_sets;
    int32_t *set_hash; /* open addressing over sets, size set_hash_cap */
    int32_t set_hash_cap;
    gb_rule *rules;
    int32_t n_rules, cap_rules;
    char *names;
    int32_t n_names, cap_names;
    const grammar_opts *o;
    err *e;
    int failed;
    int64_t work; /* compile steps spent (bounded by o->max_work) */
} gb;

#define GB_MAX_NODES (1 << 22)
#define GB_MAX_RULES 65536

void gb_init(gb *b, const grammar_opts *o, err *e);
void gb_free(gb *b);
/* Records an error (the first one wins) and returns -1. */
int gb_fail(gb *b, err_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Charges n steps of work; fails the build past o->max_work. Returns 0 or -1. */
int gb_charge(gb *b, int64_t n, const char *what);

int32_t gb_rule_new(gb *b, const char *name, int inline_ok);
void gb_rule_set(gb *b, int32_t rule, int32_t body);
const char *gb_rule_name(const gb *b, int32_t rule);
int32_t gb_rule_find(const gb *b, const char *name, size_t len); /* -1 if none */

int32_t gx_none(gb *b);
int32_t gx_empty(gb *b);
int32_t gx_set(gb *b, const uint8_t set[32]);
int32_t gx_byte(gb *b, uint8_t c);
int32_t gx_byte_range(gb *b, uint8_t lo, uint8_t hi);
int32_t gx_lit(gb *b, const char *s, size_t n);
int32_t gx_seq(gb *b, const int32_t *items, int n);
int32_t gx_alt(gb *b, const int32_t *items, int n);
int32_t gx_seq2(gb *b, int32_t x, int32_t y);
int32_t gx_alt2(gb *b, int32_t x, int32_t y);
int32_t gx_rep(gb *b, int32_t x, int32_t min, int32_t max);
int32_t gx_opt(gb *b, int32_t x);
int32_t gx_call(gb *b, int32_t rule);

/* A sequence of any length, item by item: items collect in chunks of 64, each chunk a
 * GX_SEQ appended to what came before. add returns 0 or -1 (the builder failed); end
 * returns the whole sequence (the empty one when nothing was added) or -1. */
typedef struct gx_seqbuf {
    int32_t items[64];
    int n;
    int32_t acc; /* the chunks so far, -1 when none */
} gx_seqbuf;
void gx_seqbuf_init(gx_seqbuf *q);
int gx_seqbuf_add(gb *b, gx_seqbuf *q, int32_t x);
int32_t gx_seqbuf_end(gb *b, gx_seqbuf *q);

/* Parsing helper of the text front ends: the decimal number at s[*i] (n bytes in all).
 * Returns 0 when s[*i] is not a digit; else 1 with *i past the digits and *v their value,
 * held at 100000000 (counts are checked against grammar_opts.max_repeat afterwards). */
int gb_parse_count(const unsigned char *s, size_t n, size_t *i, int64_t *v);

/* Code-point classes: sorted, non-overlapping, merged [lo, hi] pairs (n pairs). */
typedef struct gb_cpset {
    uint32_t *r; /* 2n values */
    int n, cap;
} gb_cpset;
void cps_init(gb_cpset *c);
void cps_free(gb_cpset *c);
int cps_add(gb_cpset *c, uint32_t lo, uint32_t hi); /* 0 or -1 (no memory) */
int cps_normalize(gb_cpset *c);                     /* sort and merge */
int cps_negate(gb_cpset *c);                        /* complement in [0, 0x10FFFF] */
/* UTF-8 of every code point in c (surrogates excluded) as an expression. */
int32_t gx_cpset(gb *b, gb_cpset *c);
/* One code point's UTF-8. */
int32_t gx_cp(gb *b, uint32_t cp);

/* Regex -> expression (grammar_regex.c). where: prefix for error messages ("regex",
 * "$.properties.a.pattern"). anchored_only: the regex must match the whole string (JSON
 * Schema patterns are searched: the caller wraps them). Returns the expression or -1.
 * anchor_start and anchor_end report ^ and $ at the ends. */
int32_t gx_regex(gb *b, const char *re, size_t len, const char *where, int *anchor_start, int *anchor_end);

/* Front ends: fill the builder's rules and return the root rule or -1. */
int32_t gbnf_build(gb *b, const char *text, size_t len);
int32_t schema_build(gb *b, const char *text, size_t len, int json_object);
int32_t choice_build(gb *b, const char *text, size_t len);
int32_t regex_build(gb *b, const char *text, size_t len);

/* ------------------------------------------------------------------ the automaton */

/* All rules' DFAs in one numbering. Bytes map to classes (bytes no rule tells apart share
 * a class); trans is dense over classes. */
typedef struct gm_auto {
    int32_t n_states, n_classes, n_rules;
    uint8_t class_of[256];
    int32_t *trans;     /* (n_states * n_classes): target state or -1 */
    uint8_t *final;     /* (n_states) a rule may end here */
    uint8_t *has_bytes; /* (n_states) some byte edge leaves */
    int32_t *call_off;  /* (n_states + 1) into call_rule / call_ret */
    int32_t *call_rule; /* callee rule */
    int32_t *call_ret;  /* state to continue at when the callee ends */
    int32_t *rule_start; /* (n_rules) */
    int32_t *state_rule; /* (n_states) */
    int32_t root;        /* rule */
} gm_auto;

/* Builds the automaton from the builder's rules (inline, NFA, DFA, trim, checks). */
int gm_auto_build(gm_auto *a, gb *b, int32_t root);
void gm_auto_free(gm_auto *a);

/* ------------------------------------------------------------------ vocabulary */

struct grammar_vocab {
    int32_t n_vocab;
    int32_t n_str;      /* distinct non-empty token strings, sorted bytewise */
    uint8_t *bytes;     /* concatenated strings */
    uint32_t *off;      /* (n_str + 1) */
    uint32_t *lcp;      /* (n_str) common prefix with the previous string (0 for the first) */
    int32_t *ids_off;   /* (n_str + 1) into ids */
    int32_t *ids;       /* token ids of each string (several ids may share bytes) */
    int32_t first[257]; /* first string whose first byte is >= b */
    int32_t *eog;       /* end-of-generation token ids */
    int32_t n_eog;
    uint32_t max_len;   /* longest string */
    int32_t *tok_str;   /* (n_vocab) string index of each token, -1 for none (control, empty, eog) */
    uint8_t *is_eog;    /* (n_vocab) */
};

/* ------------------------------------------------------------------ token caches */

enum { GC_NONE = 0, GC_LIST = 1, GC_BITS = 2 };

/* What one grammar position (a state with byte edges) accepts from a vocabulary,
 * computed with the position's rule at the bottom of a private stack:
 *   accepted  the whole token is consumed without leaving the rule (or leaves it exactly
 *             at the token's end): allowed whatever stack lies below;
 *   uncertain the token leaves the rule after `exit` of its bytes; the rest is checked
 *             against the real stack when masking (sorted by that rest, with common
 *             prefixes, so the check walks a small trie);
 *   the rest  rejected whatever the stack. */
typedef struct gm_cache {
    uint8_t acc_kind;   /* GC_NONE, GC_LIST (token ids), GC_BITS (mask words) */
    int16_t grow;       /* deepest local stack seen: runtime depth + grow must stay within
                         * max_depth, else the mask walks the vocabulary from the real stack */
    uint32_t acc_off;   /* into acc_ids or acc_bits */
    uint32_t acc_n;     /* ids, or 0 for bits */
    uint32_t unc_off;   /* into unc_str / unc_at / unc_lcp */
    uint32_t unc_n;
} gm_cache;

/* ------------------------------------------------------------------ stacks */

typedef struct gm_elem {
    int32_t q; /* state of the top frame (has byte edges) */
    int32_t p; /* frame below (node), GM_BOTTOM or GM_EXIT */
} gm_elem;

typedef struct gm_node {
    int32_t ret;    /* state the frame continues at */
    int32_t parent; /* node below */
    int32_t depth;  /* frames below, this one included */
} gm_node;

#define GM_BOTTOM 0 /* below the root: popping here ends the grammar */
#define GM_EXIT 1   /* below a cached position's rule: popping here leaves the rule */

enum { GM_F_END = 1, GM_F_EXIT = 2 };

/* A simulation context: frame pool, closure scratch, per-depth walk buffers. */
typedef struct gm_sim {
    const grammar *g;
    const gm_auto *a;
    gm_node *nodes;
    int32_t n_nodes, cap_nodes;
    int32_t *hc; /* hash-cons of nodes by (ret, parent), entries may be stale */
    uint32_t hc_mask;
    uint64_t *vis_key; /* closure dedupe over (q, p) */
    uint32_t *vis_stamp;
    uint32_t vis_mask, stamp;
    gm_elem *work; /* closure work stack */
    int32_t cap_work;
    gm_elem *buf; /* walk: the sets of every depth, one after another */
    int32_t cap_buf;
    int32_t *d_start; /* (max_len + 2) per depth: where its set starts in buf */
    int32_t *d_len;
    uint8_t *d_flags;
    int32_t *d_nodes; /* node pool top when the depth was entered */
    int32_t max_depth, max_stacks;
    int32_t grow_seen; /* deepest node depth created */
    int failed;        /* 1: too many stacks / pool exhausted */
    err_code fail_code;
    char fail_msg[128];
} gm_sim;

int gm_sim_init(gm_sim *s, const grammar *g, int32_t cap_nodes, int32_t cap_buf, uint32_t max_len);
void gm_sim_free(gm_sim *s);

struct grammar {
    const grammar_vocab *v;
    grammar_opts o;
    gm_auto a;
    gm_cache *cache;   /* (a.n_states) */
    int32_t *acc_ids;  /* pooled token ids */
    uint32_t *acc_bits; /* pooled mask words */
    int32_t *unc_str;  /* (n_unc) vocab string index */
    uint32_t *unc_at;  /* (n_unc) exit offset in the string */
    uint32_t *unc_lcp; /* (n_unc) common prefix of the rest with the previous entry's rest */
    int64_t n_acc_ids, n_acc_words, n_unc;
    grammar_stats st;
};

/* Computes every position's cache (grammar_match.c). */
int gm_caches_build(grammar *g, err *e);

#endif
