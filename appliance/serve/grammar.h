/* grammar.h — constrained decoding: a grammar turned into a per-step token mask.
 *
 * Inputs (grammar_kind): a JSON Schema (the subset OpenAI's strict structured outputs
 * allows, and a little more), "any JSON object" (response_format json_object), a regular
 * expression, a list of choices, or llama.cpp's GBNF text. All are compiled to one form:
 * rules, each a byte-level DFA whose edges are bytes or calls of other rules (a recursive
 * transition network). At generation time a state is a bounded set of stacks of such
 * rule positions; a token is allowed iff its whole byte string can be consumed from the
 * current state (tokens that cross grammar-element boundaries are handled exactly), and the
 * end-of-generation tokens are allowed exactly when the grammar can end.
 *
 * Three objects, three lifetimes:
 *   grammar_vocab  one per tokenizer (per model): the token byte strings sorted, with their
 *                  common prefixes (a flat trie). Immutable; share it across threads.
 *   grammar        one per compiled schema / regex / GBNF: the automaton plus, when compiled
 *                  against a vocabulary, a token cache per grammar position (which tokens
 *                  are accepted whatever the stack below, which depend on it). Immutable
 *                  after grammar_compile; share it across threads and sequences.
 *   grammar_state  one per sequence: the stacks. Every buffer it uses (about 0.4 MiB plus
 *                  4 bytes per grammar state) is allocated by grammar_state_new;
 *                  mask/accept/reset never allocate. One thread at a time per state.
 * grammar_compile may run on several threads at once (it shares nothing but the vocab).
 *
 * Costs: grammar_vocab_new sorts the vocabulary (tens of ms for 262k tokens).
 * grammar_compile walks the vocabulary once per grammar position whose cache is not
 * trivially small (milliseconds each; bounded by opts.max_work, ERR_INVALID past it).
 * grammar_state_mask is the per-token cost: copying the cached sets of the current positions
 * and checking only the tokens that leave a rule against the real stack (tens of µs; see
 * BENCHMARKS.md). grammar_state_accept is proportional to the token's length.
 *
 * Errors are values: compile errors are ERR_INVALID (bad input: the message names the JSON
 * path of the offending keyword, e.g. "$.properties.a.minItems: ...", the regex position
 * or the GBNF line) or ERR_UNSUPPORTED (a keyword or construct this engine does not do,
 * named the same way); ERR_NOMEM when memory ran out. Nothing here asserts on input. */
#ifndef SPARKD_GRAMMAR_H
#define SPARKD_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tok.h"

typedef struct grammar_vocab grammar_vocab;
typedef struct grammar grammar;
typedef struct grammar_state grammar_state;

typedef enum grammar_kind {
    GRAMMAR_JSON_SCHEMA = 0, /* text: a JSON Schema document (see grammar_schema.c for the subset) */
    GRAMMAR_JSON_OBJECT,     /* text ignored (may be NULL): any JSON object */
    GRAMMAR_REGEX,           /* text: a regular expression; the whole output must match it */
    GRAMMAR_CHOICE,          /* text: a JSON array of strings; the output is exactly one of them */
    GRAMMAR_GBNF,            /* text: llama.cpp GBNF; the start rule is "root" */
} grammar_kind;

/* JSON whitespace between tokens (json_schema, json_object). */
#define GRAMMAR_WS_COMPACT 0 /* none: {"a":1,"b":[2,3]} — separators "," and ":" */
#define GRAMMAR_WS_ANY (-1)  /* any run of space, tab, CR, LF (unbounded) */
/* n > 0: a run of at most n of those bytes at each place */

typedef struct grammar_opts {
    int json_ws;         /* GRAMMAR_WS_COMPACT, GRAMMAR_WS_ANY or a bound n > 0 (default 0) */
    int max_depth;       /* nesting bound while generating: rule frames on a stack (default 64);
                          * recursive schemas and json_object nest at most this deep */
    int max_stacks;      /* stacks alive at once (ambiguous grammars); past it the state fails
                          * with ERR_INVALID "grammar too ambiguous" (default 256) */
    size_t max_text;     /* input text bytes (default 1 MiB) */
    int max_repeat;      /* largest count in a bounded repetition: {m,n}, minItems/maxItems,
                          * minLength/maxLength (default 256) */
    int64_t max_work;    /* compile budget in automaton steps, each for the DFA construction and
                          * for the vocabulary walks; past it ERR_INVALID "too complex"
                          * (default 100M: about a second at worst) */
} grammar_opts;

void grammar_opts_default(grammar_opts *o);

/* ---- vocabulary (one per tokenizer) */

/* Reads every token's bytes with tok_piece(t, id, &len, 0): control tokens (empty pieces)
 * are never allowed inside a grammar; end-of-generation tokens (tok_is_eog) are allowed
 * exactly when the grammar can end. n_vocab: the model's logit rows (masks cover that
 * many ids; rows past the tokenizer's vocabulary are never allowed), 0 for the
 * tokenizer's size. The grammar_vocab keeps its own copy of the bytes; t may be freed. */
int grammar_vocab_new(grammar_vocab **out, const tok *t, int32_t n_vocab, err *e);
/* The same from raw pieces (tests, tools): pieces[i] of lens[i] bytes (len 0 = never
 * allowed), is_eog[i] != 0 for end-of-generation tokens. */
int grammar_vocab_from_pieces(grammar_vocab **out, int32_t n_vocab, const char *const *pieces,
                              const size_t *lens, const uint8_t *is_eog, err *e);
void grammar_vocab_free(grammar_vocab *v);
int32_t grammar_vocab_size(const grammar_vocab *v);
/* Words of a mask: ceil(n_vocab / 32), the layout of engine.h (bit id % 32 of word id / 32). */
size_t grammar_mask_words(const grammar_vocab *v);

/* ---- grammars */

/* Compiles text[0..len) of the given kind. v may be NULL: the grammar then matches bytes
 * only (grammar_state_accept_bytes, grammar_state_can_end; no masks or tokens). o may be
 * NULL for the defaults. The grammar keeps a pointer to v: free v after the grammar. */
int grammar_compile(grammar **out, const grammar_vocab *v, grammar_kind kind, const char *text, size_t len,
                    const grammar_opts *o, err *e);
void grammar_free(grammar *g);

/* What compile built, for logs and benchmarks. */
typedef struct grammar_stats {
    int n_rules;         /* after inlining */
    int n_states;        /* DFA states, all rules */
    int n_positions;     /* states with byte edges: the token caches */
    int64_t n_accept;    /* token ids held in the caches (lists and bitsets) */
    int64_t n_uncertain; /* (token, exit offset) entries checked against the stack at run time */
    size_t bytes;        /* memory held by the grammar */
    double compile_ms;   /* wall time of grammar_compile */
    int64_t work;        /* vocabulary-walk steps spent (bounded by opts.max_work) */
} grammar_stats;
void grammar_get_stats(const grammar *g, grammar_stats *s);

/* ---- per-sequence state */

/* Allocates every buffer the state will use (stacks, frame pool, walk buffers): a few
 * hundred KiB, planned from the grammar's opts. The state starts at the grammar's start. */
int grammar_state_new(grammar_state **out, const grammar *g, err *e);
void grammar_state_free(grammar_state *s);
/* Back to the start; clears a failed state. */
void grammar_state_reset(grammar_state *s);

/* Fills words[0 .. grammar_mask_words(v)) with the allowed tokens of this step (bit set =
 * allowed). An all-zero mask means the state can neither continue nor end (only possible
 * when max_depth cut every continuation): the caller ends the generation with an error.
 * Fails (ERR_INVALID) only when the grammar needs more stacks than opts.max_stacks; the
 * state then stays failed until reset. Needs a grammar compiled with a vocabulary. */
int grammar_state_mask(grammar_state *s, uint32_t *words, err *e);

/* Advances by one token. An end-of-generation token is accepted only when the grammar can
 * end (the state is then finished: nothing but another end token is allowed). A token the
 * mask would not allow: ERR_INVALID and the state is unchanged. */
int grammar_state_accept(grammar_state *s, int32_t token, err *e);
/* Advances by raw bytes (text forced by the caller, tests): ERR_INVALID if the bytes
 * cannot be consumed (the state is then unchanged). */
int grammar_state_accept_bytes(grammar_state *s, const void *bytes, size_t n, err *e);

/* 1 if the output so far is a complete match (an end token would be accepted). */
int grammar_state_can_end(const grammar_state *s);
/* 1 if it can end and no byte can follow: the caller may stop without asking the model. */
int grammar_state_done(const grammar_state *s);

#endif
