/* tok.h — tokenizers built from GGUF metadata.
 *
 * Two families:
 *  - "llama" (tokenizer.ggml.model = llama): SentencePiece-style BPE over
 *    scores with byte fallback (<0xXX> tokens) — Gemma 3. Spaces become U+2581.
 *  - "gpt2": byte-level BPE over ranked merges with a pre-tokenizer regex chosen
 *    by tokenizer.ggml.pre (qwen2, llama-bpe, gpt-4o, default...) — Qwen2/3,
 *    Llama 3, GPT-OSS (o200k_harmony).
 * Special/control tokens (token_type CONTROL or USER_DEFINED) are matched in the
 * raw text when parse_special is set.
 *
 * Owns: the vocabulary copy (pieces, scores, types), merge table and lookup
 * hashes, allocated at tok_load and freed by tok_free. Encoding and decoding
 * allocate nothing (they write into caller buffers) except scratch planned at
 * load. Safe to use from several threads at once (read-only after load). */
#ifndef SPARKD_TOK_H
#define SPARKD_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "gguf.h"

typedef struct tok tok;

/* Builds the tokenizer from g's tokenizer.ggml.* keys. Validates everything:
 * empty vocab, ids out of range (bos/eos/...), malformed byte tokens such as
 * <0x-1> or <0xZZ>, merges naming unknown tokens, array element types. */
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
