/* tpwire.h — the tensor-parallel control channel (prefix tpwire_): rank 0's TCP socket
 * the other ranks connect to, its frames, and the step (batch) encoding.
 *
 * Start: rank 0 listens on [parallel] address; rank r > 0 connects (retrying until the
 * connect timeout) and sends HELLO (its rank, the group size and a fingerprint of its
 * model); rank 0 checks it and answers WELCOME (the NCCL unique id and the engine
 * options every rank must share: context, sequences, tokens per step, KV blocks and
 * type); after NCCL is set up and its engine created, rank r answers READY (an err
 * code and message). Then rank 0 sends one STEP per forward call and BYE when it
 * stops; the other ranks never write after READY, so EOF on a socket (on either side)
 * means the peer went away.
 *
 * Frame: u32 magic "SPTW", u32 type, u32 payload length, payload; little-endian (every
 * rank runs on the same kind of machine; the fingerprint includes the byte order).
 * STEP payload: u32 n, then per sequence i32 n_tokens, pos, slot, want, n_blocks, then
 * n_tokens token ids and n_blocks block ids (the table covering [0, pos + n_tokens)).
 * Decoding checks every count against the receiver's limits before reading it (the
 * peer is trusted, the bytes are not: tests/fuzz/fuzz_tpwire.c).
 *
 * Every call takes a timeout in ms (< 0: none) and returns 0 or an err_code:
 * ERR_UNAVAILABLE when the peer is gone or silent past the timeout, ERR_FORMAT for a
 * malformed frame, ERR_IO for other socket failures. */
#ifndef SPARKD_TPWIRE_H
#define SPARKD_TPWIRE_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "err.h"

enum { TPWIRE_HELLO = 1, TPWIRE_WELCOME = 2, TPWIRE_STEP = 3, TPWIRE_BYE = 4, TPWIRE_READY = 5 };
#define TPWIRE_MAGIC 0x57545053u /* "SPTW" */
#define TPWIRE_VERSION 2 /* 2: the welcome carries moe_split */
#define TPWIRE_ID_BYTES 128      /* ncclUniqueId */

typedef struct tpwire_hello {
    uint32_t version, rank, size, endian; /* endian: 0x01020304 as the sender stores it */
    int32_t n_layer, dim, n_head, n_head_kv, head_dim, ffn_dim, n_vocab;
    uint64_t weights_bytes;               /* the model file's data section */
} tpwire_hello;

typedef struct tpwire_welcome {
    uint8_t nccl_id[TPWIRE_ID_BYTES];
    int32_t n_ctx, max_seqs, max_tokens, n_kv_blocks, kv_type;
    int32_t moe_split; /* engine_moe_split: rank 0's, which the peers follow */
} tpwire_welcome;

/* The fingerprint of this process's model and rank. */
void tpwire_hello_of(tpwire_hello *h, const model *m, int rank, int size);
/* 0 if h (a peer's) is compatible with mine; ERR_INVALID naming the difference. */
int tpwire_hello_check(const tpwire_hello *mine, const tpwire_hello *h, err *e);

/* "HOST:PORT" or "[V6]:PORT": a listening socket (SO_REUSEADDR), or -1 with e set. */
int tpwire_listen(const char *addr, err *e);
/* One connection from lfd within timeout_ms, or -1 (ERR_UNAVAILABLE on timeout). */
int tpwire_accept(int lfd, int timeout_ms, err *e);
/* Connects to addr, retrying every 200 ms until timeout_ms has passed; -1 with e set. */
int tpwire_connect(const char *addr, int timeout_ms, err *e);

int tpwire_send(int fd, uint32_t type, const void *payload, uint32_t len, int timeout_ms, err *e);
/* One frame into buf[cap]: *type, *len. A payload over cap is ERR_FORMAT. */
int tpwire_recv(int fd, uint32_t *type, void *buf, uint32_t cap, uint32_t *len, int timeout_ms, err *e);
/* 1 if the peer has closed its end or the socket has an error (pending data is not
 * looked at: it is the next frame). Never blocks. */
int tpwire_peer_gone(int fd);

/* Bytes of the largest STEP payload under these limits. */
size_t tpwire_step_cap(int max_seqs, int max_tokens, int max_blocks);
/* Encodes seqs[0..n) (block tables of ceil((pos + n_tokens) / kv_block) entries) into
 * buf; returns the length, or 0 if it does not fit cap. */
size_t tpwire_step_encode(uint8_t *buf, size_t cap, const engine_seq *seqs, int n, int kv_block);

typedef struct tpwire_limits {
    int max_seqs, max_tokens, max_blocks, kv_block, n_vocab, n_ctx;
} tpwire_limits;
/* Decodes a STEP into seqs[0..*n) (capacity lim->max_seqs); their token and block
 * pointers point into buf (4-byte aligned payload). ERR_FORMAT naming the first bad
 * field: counts out of range, a table that does not cover pos + n_tokens, token ids
 * outside the vocabulary, trailing bytes. */
int tpwire_step_decode(const uint8_t *buf, size_t len, const tpwire_limits *lim, engine_seq *seqs, int *n, err *e);

#endif
