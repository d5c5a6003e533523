/* kvpool.h — who holds which KV block (prefix kvpool_).
 *
 * The engine owns the KV bytes (engine_plan: n_kv_blocks blocks of kv_block
 * positions); the pool owns their bookkeeping: reference counts, a chain-hashed
 * prefix cache of full blocks with LRU eviction, and the block tables of the
 * sequences (kvpool_seq). The scheduler asks it for blocks; forward reads the
 * tables.
 *
 * Prefix cache: a full block is content-addressed by a chain hash of every token
 * up to its end. When its last holder releases it, it stays cached (LRU) so a
 * later prompt with the same prefix maps it instead of recomputing. Allocation
 * takes a never-hashed free block first, then evicts the least recently used
 * cached block. A preempted sequence releases its blocks; its full blocks stay
 * cached and it maps them back when it resumes. Off when the engine says block
 * sharing is invalid (plan.prefix_cache = 0: recurrent layers) or when asked.
 *
 * Recurrent state: models with recurrent layers keep a fixed-size state per
 * sequence in one of plan.n_state_slots engine slots; the scheduler's slot of a
 * running sequence is that slot (there are as many as sequences decoded
 * together). Snapshots of states at block boundaries, which would make prefix
 * caching valid for hybrid models, come with the first recurrent layer kind.
 *
 * Owns: the block records and the hash map, sized at kvpool_create. Not
 * thread-safe: the scheduler calls it under its lock. */
#ifndef SPARKD_KVPOOL_H
#define SPARKD_KVPOOL_H

#include <stdint.h>

#include "err.h"

typedef struct kvpool kvpool;

/* A sequence's view: its block table. The caller allocates blocks for the
 * longest sequence (kvpool_blocks_for(n_ctx) entries) at start. */
typedef struct kvpool_seq {
    int32_t *blocks; /* block table: blocks[i] holds positions [i * block, (i + 1) * block) */
    int n_blocks;    /* entries held */
} kvpool_seq;

typedef struct kvpool_stats {
    int total;  /* blocks in the pool */
    int used;   /* referenced by sequences */
    int cached; /* unreferenced, kept for prefix reuse */
} kvpool_stats;

/* n_blocks of block positions each; prefix_cache 0 turns caching off. */
int kvpool_create(kvpool **out, int n_blocks, int block, int prefix_cache, err *e);
void kvpool_free(kvpool *p);

int kvpool_block_size(const kvpool *p);
/* Blocks that cover n positions. */
int kvpool_blocks_for(const kvpool *p, long n);
/* Blocks that could be handed out now (free + cached). */
int kvpool_available(const kvpool *p);
void kvpool_get_stats(const kvpool *p, kvpool_stats *st);

/* Maps the longest cached prefix of toks[0..len) into an empty s: whole blocks
 * only, never the block holding the last token (its logits must be computed).
 * Returns the positions whose K/V are now in s's blocks. */
int kvpool_seq_map_prefix(kvpool *p, kvpool_seq *s, const int32_t *toks, int len);
/* Makes s hold blocks for positions [0, upto). 0, or -1 when the pool ran out
 * (s then keeps what it had, plus what it got). */
int kvpool_seq_reserve(kvpool *p, kvpool_seq *s, int upto);
/* K/V of positions [from, to) of toks were just computed: publishes the blocks
 * that became full (unless identical content is cached already). */
void kvpool_seq_filled(kvpool *p, kvpool_seq *s, const int32_t *toks, int from, int to);
/* Drops s's references (full blocks stay cached); s is then empty. */
void kvpool_seq_release(kvpool *p, kvpool_seq *s);

#endif
