/* tok.h — tokenizers built from a format-neutral vocabulary.
 *
 * Two families:
 *  - SentencePiece-style BPE over scores with byte fallback (<0xXX> tokens) —
 *    Gemma 3 (GGUF: tokenizer.ggml.model = llama). Spaces become U+2581.
 *  - byte-level BPE over ranked merges with a pre-tokenizer regex chosen by name
 *    (qwen2, llama-bpe, gpt-4o, default...) — Qwen2/3, Llama 3, GPT-OSS
 *    (o200k_harmony) (GGUF: gpt2).
 * Special/control tokens (token_type CONTROL or USER_DEFINED) are matched in the
 * raw text when parse_special is set.
 *
 * A source hands the tokenizer a tok_vocab (tokens, scores, types, merges,
 * special ids, pre-tokenizer name, add_bos...): tok_vocab_from_gguf is the GGUF
 * adapter; a tokenizer.json adapter fills the same struct. tok_create validates
 * the content (byte tokens, merges, ids...) and builds the tokenizer; messages
 * name the fields as the source names them.
 *
 * Owns: the vocabulary copy (pieces, types), merge table and lookup hashes,
 * allocated at tok_create and freed by tok_free (the tok_vocab may go once
 * tok_create returns). Encoding and decoding allocate nothing (they write into
 * caller buffers) except scratch planned at load. Safe to use from several
 * threads at once (read-only after load). */
#ifndef SPARKD_TOK_H
#define SPARKD_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "gguf.h"

typedef struct tok tok;

typedef enum tok_kind {
    TOK_SPM = 1, /* SentencePiece-style: merges by score, byte fallback */
    TOK_BPE = 2, /* byte-level BPE: ranked merges, a pre-tokenizer */
} tok_kind;

/* What a special id is for. */
enum { TOK_ROLE_OTHER = 0, TOK_ROLE_BOS, TOK_ROLE_EOS, TOK_ROLE_UNK, TOK_ROLE_PAD, TOK_ROLE_EOG };

typedef struct tok_special {
    const char *name; /* as the source names it, for messages */
    int32_t id;       /* -1 = none; else must be < n */
    int role;         /* TOK_ROLE_* */
} tok_special;

#define TOK_MAX_SPECIAL 16

/* A vocabulary as any source describes it. Arrays are read, never kept. */
typedef struct tok_vocab {
    tok_kind kind;
    int32_t n;                  /* tokens */
    const char *const *text;    /* (n) spellings as stored (SPM: U+2581 for spaces; BPE:
                                 * byte-level chars), not NUL-terminated */
    const uint32_t *text_len;   /* (n) */
    const float *scores;        /* (n) merge priority (SPM: required), or NULL */
    const int32_t *types;       /* (n) 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
                                 * 6 byte (0 = normal); NULL = all normal */
    int64_t n_merges;           /* BPE */
    const char *const *merges;  /* (n_merges) "left right", by rank */
    const uint32_t *merge_len;
    const char *pre;            /* BPE pre-tokenizer name (GGUF's tokenizer.ggml.pre); NULL = default */
    size_t pre_len;
    int add_bos;                /* -1: the kind's default (SPM yes, BPE no) */
    int add_space_prefix;       /* -1: the kind's default */
    tok_special special[TOK_MAX_SPECIAL];
    int n_special;
    /* how the source names these fields (in messages) */
    const char *name_tokens, *name_scores, *name_types, *name_merges, *name_pre;
    void *arena;                /* the adapter's allocations (tok_vocab_free) */
} tok_vocab;

/* The GGUF adapter: g's tokenizer.ggml.* keys, checked for presence, element
 * types and counts. v borrows strings from g (keep g open until tok_create). */
int tok_vocab_from_gguf(tok_vocab *v, const gguf_file *g, err *e);
void tok_vocab_free(tok_vocab *v);

/* Builds the tokenizer. Validates everything: empty vocab, ids out of range
 * (bos/eos/...), malformed byte tokens such as <0x-1> or <0xZZ>, merges naming
 * unknown tokens, unknown token types, non-finite scores. */
int tok_create(tok **out, const tok_vocab *v, err *e);
/* tok_vocab_from_gguf + tok_create. */
int tok_load(tok **out, gguf_file *g, err *e);
void tok_free(tok *t);

int32_t tok_vocab_size(const tok *t);
int32_t tok_bos(const tok *t);      /* -1 if none */
int32_t tok_eos(const tok *t);      /* -1 if none */
int tok_add_bos(const tok *t);      /* tokenizer.ggml.add_bos_token */
/* End-of-generation: eos, eot, <end_of_turn>, <|im_end|>, <|endoftext|>, ... */
int tok_is_eog(const tok *t, int32_t id);

/* Encodes text[0..len) into ids (at most cap). Returns the number of ids
 * written (>= 0), or -1 with e set (e.g. more than cap ids needed: the message
 * gives the count). add_bos: prepend BOS if the model uses one. Ill-formed
 * UTF-8 is tokenized as if each maximal ill-formed subpart were U+FFFD (what a
 * UTF-8 decoder such as Python's would hand HF tokenizers). */
int tok_encode(const tok *t, const char *text, size_t len, int add_bos, int parse_special,
               int32_t *ids, int cap, err *e);
/* The most ids tok_encode can return for len bytes of text: a token covers at least
 * one byte of the normalized text, which U+FFFD substitution, NFC (composition
 * exclusions) and SPM's U+2581 for spaces make up to 3x longer; +4 for BOS and the
 * SPM space prefix. */
size_t tok_max_ids(size_t len);

/* The bytes a token stands for when decoded on its own (U+2581 -> ' ' for SPM,
 * byte-level chars -> bytes for gpt2, <0xXX> -> the byte). Control tokens decode
 * to their text only if `special` is set, else to nothing. */
const char *tok_piece(const tok *t, int32_t id, size_t *len, int special);

/* Streaming detokenization: bytes are emitted only as complete UTF-8 sequences;
 * an incomplete tail is held in the stream until the next token completes it or
 * tok_stream_flush() emits it (invalid sequences become U+FFFD). */
typedef struct tok_stream {
    uint8_t pend[8];
    int npend;
} tok_stream;
void tok_stream_init(tok_stream *s);
/* Appends the text of `id` to out (capacity cap, >= 64 + longest piece);
 * returns bytes written. */
size_t tok_stream_feed(const tok *t, tok_stream *s, int32_t id, char *out, size_t cap);
size_t tok_stream_flush(tok_stream *s, char *out, size_t cap);

/* Whole-sequence decode into out (NUL-terminated, truncated at cap-1); returns
 * the full length it would need. */
size_t tok_decode(const tok *t, const int32_t *ids, int n, char *out, size_t cap, int special);

#endif
