/* kvpool.c — KV block bookkeeping and the prefix cache. See kvpool.h. */
#include "kvpool.h"

#include <stdlib.h>

typedef struct kv_block {
    int refs;
    int hashed;             /* holds a full, content-addressed block */
    uint64_t hash;          /* chain hash of all tokens up to this block's end */
    int lru_prev, lru_next; /* cached (refs == 0 && hashed) list, oldest first */
} kv_block;

struct kvpool {
    int n_blocks, bs, prefix_cache;
    kv_block *blk;         /* (n_blocks) */
    int32_t *free_stack;   /* (n_blocks) never-hashed free blocks */
    int n_free;
    int lru_head, lru_tail; /* cached blocks, -1 when empty */
    int n_cached;
    /* hash -> block, open addressing, (map_cap) slots, -1 empty, -2 tombstone */
    int32_t *map;
    int map_cap;
};

static uint64_t chain_hash(uint64_t h, const int32_t *toks, int bs) {
    for (int i = 0; i < bs; i++) {
        h ^= (uint64_t)(uint32_t)toks[i] + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
        h *= 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    return h ? h : 1;
}

static int map_find(const kvpool *p, uint64_t h) {
    for (int i = (int)(h & (uint64_t)(p->map_cap - 1)), n = 0; n < p->map_cap; n++, i = (i + 1) & (p->map_cap - 1)) {
        int b = p->map[i];
        if (b == -1) return -1;
        if (b >= 0 && p->blk[b].hash == h) return b;
    }
    return -1;
}

static void map_put(kvpool *p, int b) {
    const uint64_t h = p->blk[b].hash;
    for (int i = (int)(h & (uint64_t)(p->map_cap - 1));; i = (i + 1) & (p->map_cap - 1))
        if (p->map[i] < 0) {
            p->map[i] = b;
            return;
        }
}

static void map_del(kvpool *p, int b) {
    const uint64_t h = p->blk[b].hash;
    for (int i = (int)(h & (uint64_t)(p->map_cap - 1)), n = 0; n < p->map_cap; n++, i = (i + 1) & (p->map_cap - 1)) {
        if (p->map[i] == -1) return;
        if (p->map[i] == b) {
            p->map[i] = -2;
            return;
        }
    }
}

static void lru_unlink(kvpool *p, int b) {
    kv_block *k = &p->blk[b];
    if (k->lru_prev >= 0) p->blk[k->lru_prev].lru_next = k->lru_next;
    else p->lru_head = k->lru_next;
    if (k->lru_next >= 0) p->blk[k->lru_next].lru_prev = k->lru_prev;
    else p->lru_tail = k->lru_prev;
    k->lru_prev = k->lru_next = -1;
    p->n_cached--;
}

static void lru_push(kvpool *p, int b) {
    kv_block *k = &p->blk[b];
    k->lru_prev = p->lru_tail;
    k->lru_next = -1;
    if (p->lru_tail >= 0) p->blk[p->lru_tail].lru_next = b;
    else p->lru_head = b;
    p->lru_tail = b;
    p->n_cached++;
}

/* A block for new content, or -1. */
static int block_alloc(kvpool *p) {
    int b;
    if (p->n_free > 0) {
        b = p->free_stack[--p->n_free];
    } else if (p->lru_head >= 0) {
        b = p->lru_head; /* evict the least recently used cached block */
        lru_unlink(p, b);
        map_del(p, b);
    } else {
        return -1;
    }
    p->blk[b].refs = 1;
    p->blk[b].hashed = 0;
    return b;
}

static void block_ref(kvpool *p, int b) {
    if (p->blk[b].refs++ == 0) lru_unlink(p, b);
}

static void block_unref(kvpool *p, int b) {
    kv_block *k = &p->blk[b];
    if (--k->refs > 0) return;
    if (k->hashed && p->prefix_cache) lru_push(p, b);
    else {
        if (k->hashed) map_del(p, b);
        k->hashed = 0;
        p->free_stack[p->n_free++] = b;
    }
}

int kvpool_create(kvpool **out, int n_blocks, int block, int prefix_cache, err *e) {
    *out = NULL;
    if (n_blocks < 1 || block < 1 || n_blocks > (1 << 29))
        return err_set(e, ERR_INVALID, "KV pool of %d blocks of %d positions", n_blocks, block);
    kvpool *p = calloc(1, sizeof *p);
    if (!p) return err_set(e, ERR_NOMEM, "out of memory");
    p->n_blocks = n_blocks;
    p->bs = block;
    p->prefix_cache = prefix_cache;
    p->blk = calloc((size_t)n_blocks, sizeof *p->blk);
    p->free_stack = malloc(sizeof(int32_t) * (size_t)n_blocks);
    for (p->map_cap = 16; p->map_cap < 2 * n_blocks; p->map_cap *= 2) {}
    p->map = malloc(sizeof(int32_t) * (size_t)p->map_cap);
    if (!p->blk || !p->free_stack || !p->map) {
        kvpool_free(p);
        return err_set(e, ERR_NOMEM, "out of memory for the KV pool");
    }
    for (int i = 0; i < p->map_cap; i++) p->map[i] = -1;
    for (int i = 0; i < n_blocks; i++) {
        p->blk[i].lru_prev = p->blk[i].lru_next = -1;
        p->free_stack[i] = n_blocks - 1 - i;
    }
    p->n_free = n_blocks;
    p->lru_head = p->lru_tail = -1;
    *out = p;
    return 0;
}

void kvpool_free(kvpool *p) {
    if (!p) return;
    free(p->blk);
    free(p->free_stack);
    free(p->map);
    free(p);
}

int kvpool_block_size(const kvpool *p) { return p->bs; }

int kvpool_blocks_for(const kvpool *p, long n) { return (int)((n + p->bs - 1) / p->bs); }

int kvpool_available(const kvpool *p) { return p->n_free + p->n_cached; }

void kvpool_get_stats(const kvpool *p, kvpool_stats *st) {
    st->total = p->n_blocks;
    st->cached = p->n_cached;
    st->used = p->n_blocks - p->n_free - p->n_cached;
}

int kvpool_seq_map_prefix(kvpool *p, kvpool_seq *s, const int32_t *toks, int len) {
    s->n_blocks = 0;
    if (!p->prefix_cache) return 0;
    const int max_full = (len - 1) / p->bs;
    uint64_t h = 0;
    for (int i = 0; i < max_full; i++) {
        h = chain_hash(h, toks + (size_t)i * p->bs, p->bs);
        int b = map_find(p, h);
        if (b < 0) break;
        block_ref(p, b);
        s->blocks[s->n_blocks++] = b;
    }
    return s->n_blocks * p->bs;
}

int kvpool_seq_reserve(kvpool *p, kvpool_seq *s, int upto) {
    const int need = kvpool_blocks_for(p, upto);
    while (s->n_blocks < need) {
        int b = block_alloc(p);
        if (b < 0) return -1;
        s->blocks[s->n_blocks++] = b;
    }
    return 0;
}

/* Block i of s is full: record its chain hash and publish it, unless an
 * identical block is already cached (then s keeps its private copy). */
static void publish(kvpool *p, kvpool_seq *s, const int32_t *toks, int i) {
    const int b = s->blocks[i];
    if (p->blk[b].hashed) return; /* mapped from the cache */
    p->blk[b].hash = chain_hash(i ? p->blk[s->blocks[i - 1]].hash : 0, toks + (size_t)i * p->bs, p->bs);
    if (!p->prefix_cache || map_find(p, p->blk[b].hash) >= 0) return;
    p->blk[b].hashed = 1;
    map_put(p, b);
}

void kvpool_seq_filled(kvpool *p, kvpool_seq *s, const int32_t *toks, int from, int to) {
    for (int i = from / p->bs; i < to / p->bs; i++) publish(p, s, toks, i);
}

void kvpool_seq_release(kvpool *p, kvpool_seq *s) {
    for (int i = 0; i < s->n_blocks; i++) block_unref(p, s->blocks[i]);
    s->n_blocks = 0;
}
