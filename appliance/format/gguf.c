/* gguf.c — the GGUF v2/v3 reader (see gguf.h for the contract).
 *
 * The header is read with pread() into a buffer that grows as the parser walks
 * forward, so only the header (megabytes for a 262144-token vocab) is read at
 * open, never the weights. Every parsed position is an offset into that buffer
 * (it moves when it grows); pointers are resolved once parsing is complete.
 *
 * File layout (all little-endian):
 *   magic "GGUF" u32 | version u32 | n_tensors u64 | n_kv u64
 *   n_kv   x { key: str | vtype u32 | value }
 *   n_tensors x { name: str | n_dims u32 | ne[n_dims] u64 | type u32 | offset u64 }
 *   padding to general.alignment | data section (tensor offsets are relative to it)
 *   str = { len u64 | len bytes }; array value = { elem vtype u32 | n u64 | n values } */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
/* Arrays of arrays are legal GGUF; nothing we read uses them, so a small
 * bound keeps recursion (and hostile files) shallow. */
#define GGUF_MAX_NEST 8
#define GGUF_HDR_CHUNK (1u << 20)       /* first header read; doubles after */
#ifndef GGUF_LOAD_CHUNK
#define GGUF_LOAD_CHUNK (64ull << 20) /* one pread() of the data section */
#endif
#define GGUF_PROGRESS_EVERY (256ull << 20)
/* Smallest encodings, used to bound counts by the bytes left in the file. */
#define GGUF_MIN_KV_BYTES 14     /* key len 8 + 1 byte key + vtype 4 + u8 value */
#define GGUF_MIN_TENSOR_BYTES 25 /* name len 8 + 1 + n_dims 4 + ne 8 + type 4 */

typedef struct gguf_kv {
    uint64_t key_off;  /* into names: NUL-terminated copy of the key */
    uint32_t type;     /* enum gguf_vtype */
    uint64_t val_off;  /* into hdr: the value (for arrays: the first element) */
    uint32_t arr_type; /* ARRAY only: element vtype */
    uint64_t arr_n;    /* ARRAY only: element count */
    uint64_t str_idx;  /* ARRAY of STRING only: first entry in str_offs */
} gguf_kv;

struct gguf_file {
    int fd;                 /* -1 when reading from memory */
    const uint8_t *mem;     /* memory source (gguf_open_mem), not owned */
    uint64_t file_size;
    uint32_t version;

    gguf_sink_fn sink;      /* gguf_set_sink: fed every byte of the file while loading */
    void *sink_user;

    uint8_t *hdr;           /* bytes [0, hdr_len) of the file */
    uint64_t hdr_len, hdr_cap;

    char *names;            /* NUL-terminated keys and tensor names */
    uint64_t names_len, names_cap;

    gguf_kv *kv;
    int64_t n_kv;
    int64_t *kv_hash; /* open addressing over kv indices, -1 = empty */
    uint64_t kv_hash_mask;

    /* str_offs[kv.str_idx + i]: hdr offset of element i's u64 length prefix,
     * so gguf_arr_str is O(1) for the vocabulary. */
    uint64_t *str_offs;
    uint64_t n_str_offs, str_offs_cap;

    gguf_tensor *tensors;
    uint64_t *tensor_name_off; /* into names, resolved to tensors[i].name at the end */
    int64_t n_tensors;
    int64_t *t_hash;
    uint64_t t_hash_mask;

    uint64_t alignment;
    uint64_t data_offset;
    uint64_t data_size;

    void *map; /* gguf_map_data() mapping of the whole file */
};

/* ---------------------------------------------------------------- helpers */

static const uint8_t gguf_vt_size[GGUF_VT_COUNT] = {
    [GGUF_VT_UINT8] = 1, [GGUF_VT_INT8] = 1,    [GGUF_VT_UINT16] = 2,  [GGUF_VT_INT16] = 2,
    [GGUF_VT_UINT32] = 4, [GGUF_VT_INT32] = 4,  [GGUF_VT_FLOAT32] = 4, [GGUF_VT_BOOL] = 1,
    [GGUF_VT_STRING] = 0, [GGUF_VT_ARRAY] = 0,  [GGUF_VT_UINT64] = 8,  [GGUF_VT_INT64] = 8,
    [GGUF_VT_FLOAT64] = 8,
};

const char *gguf_vtype_name(uint32_t t) {
    static const char *const names[GGUF_VT_COUNT] = {
        "uint8", "int8",  "uint16", "int16", "uint32", "int32",  "float32",
        "bool",  "string", "array", "uint64", "int64", "float64",
    };
    return t < GGUF_VT_COUNT ? names[t] : "unknown";
}

/* A file-supplied name made safe to print: printable ASCII only, truncated. */
typedef struct shown {
    char s[72];
} shown;

static shown show(const char *p, uint64_t len) {
    shown r;
    size_t n = 0;
    for (uint64_t i = 0; i < len && n < 60; i++) {
        unsigned char c = (unsigned char)p[i];
        r.s[n++] = (c >= 0x20 && c < 0x7f && c != '\'') ? (char)c : '?';
    }
    if (len > 60) {
        memcpy(r.s + n, "...", 3);
        n += 3;
    }
    r.s[n] = '\0';
    return r;
}

static uint64_t rd_u64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static uint32_t rd_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* pread() the whole range, retrying on EINTR and short reads. */
static int src_read(gguf_file *g, void *dst, uint64_t n, uint64_t off, const char *what, err *e) {
    if (g->fd < 0) {
        if (off > g->file_size || n > g->file_size - off)
            return err_set(e, ERR_IO, "%s: unexpected end of file at byte %llu", what,
                           (unsigned long long)g->file_size);
        memcpy(dst, g->mem + off, n);
        return 0;
    }
    uint8_t *d = dst;
    while (n > 0) {
        size_t want = n > GGUF_LOAD_CHUNK ? (size_t)GGUF_LOAD_CHUNK : (size_t)n;
        ssize_t got = pread(g->fd, d, want, (off_t)off);
        if (got < 0) {
            if (errno == EINTR) continue;
            return err_set(e, ERR_IO, "%s: read failed at byte %llu: %s", what,
                           (unsigned long long)off, strerror(errno));
        }
        if (got == 0)
            return err_set(e, ERR_IO, "%s: unexpected end of file at byte %llu", what,
                           (unsigned long long)off);
        d += got;
        off += (uint64_t)got;
        n -= (uint64_t)got;
    }
    return 0;
}

/* Makes hdr hold bytes [0, pos + n). Returns 1 if that range passes the end of
 * the file (the caller names the field), -1 with e set on I/O or memory
 * failure, 0 on success. */
static int need(gguf_file *g, uint64_t pos, uint64_t n, err *e) {
    if (pos > g->file_size || n > g->file_size - pos) return 1;
    uint64_t end = pos + n;
    if (end <= g->hdr_len) return 0;
    if (end > g->hdr_cap) {
        uint64_t cap = g->hdr_cap ? g->hdr_cap * 2 : GGUF_HDR_CHUNK;
        if (cap < end) cap = end;
        if (cap > g->file_size) cap = g->file_size;
        uint8_t *p = realloc(g->hdr, (size_t)cap);
        if (!p) {
            err_set(e, ERR_NOMEM, "header: out of memory for %llu bytes", (unsigned long long)cap);
            return -1;
        }
        g->hdr = p;
        g->hdr_cap = cap;
    }
    /* Read ahead to the end of the buffer: the parser asks for a few bytes at a time. */
    if (src_read(g, g->hdr + g->hdr_len, g->hdr_cap - g->hdr_len, g->hdr_len, "header", e))
        return -1;
    g->hdr_len = g->hdr_cap;
    return 0;
}

static int grow(void **p, uint64_t *cap, uint64_t want, size_t elem) {
    if (want <= *cap) return 0;
    uint64_t c = *cap ? *cap : 16;
    while (c < want) c *= 2;
    if (c > SIZE_MAX / elem) return -1;
    void *q = realloc(*p, (size_t)(c * elem));
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* Copies a file string into the names pool with a NUL; returns its offset. */
static int add_name(gguf_file *g, const uint8_t *s, uint64_t len, uint64_t *off, err *e) {
    if (grow((void **)&g->names, &g->names_cap, g->names_len + len + 1, 1))
        return err_set(e, ERR_NOMEM, "header: out of memory for names");
    memcpy(g->names + g->names_len, s, len);
    g->names[g->names_len + len] = '\0';
    *off = g->names_len;
    g->names_len += len + 1;
    return 0;
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int hash_alloc(int64_t **tab, uint64_t *mask, int64_t n) {
    uint64_t size = 16;
    while (size < (uint64_t)n * 2) size *= 2;
    *tab = malloc(size * sizeof **tab);
    if (!*tab) return -1;
    for (uint64_t i = 0; i < size; i++) (*tab)[i] = -1;
    *mask = size - 1;
    return 0;
}

/* --------------------------------------------------------------- metadata */

/* Reads a {len u64, bytes} string at *pos; on success *soff is the hdr offset
 * of the bytes. Returns 1 when it runs past end of file. */
static int parse_str(gguf_file *g, uint64_t *pos, uint64_t *soff, uint64_t *len, err *e) {
    int r = need(g, *pos, 8, e);
    if (r) return r;
    *len = rd_u64(g->hdr + *pos);
    if ((r = need(g, *pos + 8, *len, e))) return r;
    *soff = *pos + 8;
    *pos += 8 + *len;
    return 0;
}

/* Validates an array value {elem vtype, n, elements} at *pos and skips it.
 * kv != NULL for a top-level array: records its type, count and (strings) an
 * index of element offsets. */
static int parse_array(gguf_file *g, uint64_t *pos, int depth, const char *key, gguf_kv *kv,
                       err *e) {
    shown k = show(key, strlen(key));
    int r = need(g, *pos, 12, e);
    if (r < 0) return -1;
    if (r) return err_set(e, ERR_FORMAT, "key '%s': array header past end of file", k.s);
    uint32_t et = rd_u32(g->hdr + *pos);
    uint64_t n = rd_u64(g->hdr + *pos + 4);
    *pos += 12;
    if (et >= GGUF_VT_COUNT)
        return err_set(e, ERR_FORMAT, "key '%s': unknown array element type %u", k.s, et);
    if (et == GGUF_VT_ARRAY && depth + 1 >= GGUF_MAX_NEST)
        return err_set(e, ERR_FORMAT, "key '%s': arrays nested deeper than %d", k.s,
                       GGUF_MAX_NEST);
    if (kv) {
        kv->arr_type = et;
        kv->arr_n = n;
        kv->val_off = *pos;
    }
    uint64_t left = g->file_size - *pos;
    if (gguf_vt_size[et]) {
        uint64_t sz = gguf_vt_size[et];
        if (n > left / sz)
            return err_set(e, ERR_FORMAT, "key '%s': array of %llu %s past end of file", k.s,
                           (unsigned long long)n, gguf_vtype_name(et));
        if ((r = need(g, *pos, n * sz, e))) return -1;
        if (et == GGUF_VT_BOOL) {
            for (uint64_t i = 0; i < n; i++)
                if (g->hdr[*pos + i] > 1)
                    return err_set(e, ERR_FORMAT,
                                   "key '%s': bool array element %llu is %u, not 0 or 1", k.s,
                                   (unsigned long long)i, g->hdr[*pos + i]);
        }
        *pos += n * sz;
        return 0;
    }
    uint64_t min_elem = et == GGUF_VT_STRING ? 8 : 12;
    if (n > left / min_elem)
        return err_set(e, ERR_FORMAT, "key '%s': array of %llu %s past end of file", k.s,
                       (unsigned long long)n, gguf_vtype_name(et));
    if (et == GGUF_VT_STRING) {
        if (kv) {
            kv->str_idx = g->n_str_offs;
            if (grow((void **)&g->str_offs, &g->str_offs_cap, g->n_str_offs + n, sizeof(uint64_t)))
                return err_set(e, ERR_NOMEM, "key '%s': out of memory for %llu strings", k.s,
                               (unsigned long long)n);
        }
        for (uint64_t i = 0; i < n; i++) {
            uint64_t at = *pos, soff, len;
            r = parse_str(g, pos, &soff, &len, e);
            if (r < 0) return -1;
            if (r)
                return err_set(e, ERR_FORMAT, "key '%s': string %llu of the array past end of file",
                               k.s, (unsigned long long)i);
            if (kv) g->str_offs[g->n_str_offs++] = at;
        }
        return 0;
    }
    for (uint64_t i = 0; i < n; i++)
        if (parse_array(g, pos, depth + 1, key, NULL, e)) return -1;
    return 0;
}

static int parse_kv(gguf_file *g, int64_t i, uint64_t *pos, err *e) {
    gguf_kv *kv = &g->kv[i];
    memset(kv, 0, sizeof *kv);
    uint64_t koff, klen;
    int r = parse_str(g, pos, &koff, &klen, e);
    if (r < 0) return -1;
    if (r) return err_set(e, ERR_FORMAT, "kv %lld: key length past end of file", (long long)i);
    if (klen == 0) return err_set(e, ERR_FORMAT, "kv %lld: empty key", (long long)i);
    if (memchr(g->hdr + koff, 0, klen)) {
        shown k = show((const char *)g->hdr + koff, klen);
        return err_set(e, ERR_FORMAT, "kv %lld: key '%s' contains a NUL byte", (long long)i, k.s);
    }
    if (add_name(g, g->hdr + koff, klen, &kv->key_off, e)) return -1;
    const char *key = g->names + kv->key_off;
    shown k = show(key, klen);

    if ((r = need(g, *pos, 4, e)) < 0) return -1;
    if (r) return err_set(e, ERR_FORMAT, "key '%s': value type past end of file", k.s);
    kv->type = rd_u32(g->hdr + *pos);
    *pos += 4;
    if (kv->type >= GGUF_VT_COUNT)
        return err_set(e, ERR_FORMAT, "key '%s': unknown value type %u", k.s, kv->type);
    kv->val_off = *pos;
    if (kv->type == GGUF_VT_ARRAY) return parse_array(g, pos, 0, key, kv, e);
    if (kv->type == GGUF_VT_STRING) {
        uint64_t soff, len;
        r = parse_str(g, pos, &soff, &len, e);
        if (r < 0) return -1;
        if (r) return err_set(e, ERR_FORMAT, "key '%s': string length past end of file", k.s);
        return 0;
    }
    uint64_t sz = gguf_vt_size[kv->type];
    if ((r = need(g, *pos, sz, e)) < 0) return -1;
    if (r) return err_set(e, ERR_FORMAT, "key '%s': %s value past end of file", k.s,
                          gguf_vtype_name(kv->type));
    if (kv->type == GGUF_VT_BOOL && g->hdr[*pos] > 1)
        return err_set(e, ERR_FORMAT, "key '%s': bool value %u is not 0 or 1", k.s, g->hdr[*pos]);
    *pos += sz;
    return 0;
}

static int index_keys(gguf_file *g, err *e) {
    if (hash_alloc(&g->kv_hash, &g->kv_hash_mask, g->n_kv))
        return err_set(e, ERR_NOMEM, "header: out of memory for the key index");
    for (int64_t i = 0; i < g->n_kv; i++) {
        const char *key = g->names + g->kv[i].key_off;
        uint64_t h = name_hash(key) & g->kv_hash_mask;
        for (; g->kv_hash[h] >= 0; h = (h + 1) & g->kv_hash_mask) {
            if (strcmp(g->names + g->kv[g->kv_hash[h]].key_off, key) == 0) {
                shown k = show(key, strlen(key));
                return err_set(e, ERR_FORMAT, "duplicate key '%s' (kv %lld and %lld)", k.s,
                               (long long)g->kv_hash[h], (long long)i);
            }
        }
        g->kv_hash[h] = i;
    }
    return 0;
}

/* ---------------------------------------------------------------- tensors */

static int parse_tensor(gguf_file *g, int64_t i, uint64_t *pos, err *e) {
    gguf_tensor *t = &g->tensors[i];
    memset(t, 0, sizeof *t);
    uint64_t soff, len;
    int r = parse_str(g, pos, &soff, &len, e);
    if (r < 0) return -1;
    if (r) return err_set(e, ERR_FORMAT, "tensor %lld: name length past end of file", (long long)i);
    if (len == 0) return err_set(e, ERR_FORMAT, "tensor %lld: empty name", (long long)i);
    shown nm = show((const char *)g->hdr + soff, len);
    if (memchr(g->hdr + soff, 0, len))
        return err_set(e, ERR_FORMAT, "tensor %lld: name '%s' contains a NUL byte", (long long)i,
                       nm.s);
    if (add_name(g, g->hdr + soff, len, &g->tensor_name_off[i], e)) return -1;

    if ((r = need(g, *pos, 4, e)) < 0) return -1;
    if (r) return err_set(e, ERR_FORMAT, "tensor '%s': n_dims past end of file", nm.s);
    t->n_dims = rd_u32(g->hdr + *pos);
    *pos += 4;
    if (t->n_dims == 0) return err_set(e, ERR_FORMAT, "tensor '%s': n_dims 0", nm.s);
    if (t->n_dims > GGUF_MAX_DIMS)
        return err_set(e, ERR_FORMAT, "tensor '%s': n_dims %u > %d", nm.s, t->n_dims, GGUF_MAX_DIMS);
    if ((r = need(g, *pos, 8ull * t->n_dims + 12, e)) < 0) return -1;
    if (r) return err_set(e, ERR_FORMAT, "tensor '%s': dims/type/offset past end of file", nm.s);
    int64_t nelem = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        if (d >= t->n_dims) {
            t->ne[d] = 1;
            continue;
        }
        uint64_t v = rd_u64(g->hdr + *pos + 8ull * d);
        if (v == 0 || v > (uint64_t)INT64_MAX)
            return err_set(e, ERR_FORMAT, "tensor '%s': ne[%u] = %lld must be positive", nm.s, d,
                           (long long)(int64_t)v);
        t->ne[d] = (int64_t)v;
        if (__builtin_mul_overflow(nelem, t->ne[d], &nelem))
            return err_set(e, ERR_FORMAT, "tensor '%s': element count overflows", nm.s);
    }
    *pos += 8ull * t->n_dims;
    t->type = rd_u32(g->hdr + *pos);
    t->offset = rd_u64(g->hdr + *pos + 4);
    *pos += 12;

    const quant_traits *qt = quant_traits_of(t->type);
    if (!qt) return err_set(e, ERR_FORMAT, "tensor '%s': unknown type %u", nm.s, t->type);
    if (t->ne[0] % qt->block_elems != 0)
        return err_set(e, ERR_FORMAT,
                       "tensor '%s': ne[0] = %lld is not a multiple of the %s block size %d", nm.s,
                       (long long)t->ne[0], qt->name, qt->block_elems);
    uint64_t row;
    if (quant_row_bytes(t->type, t->ne[0], &row))
        return err_set(e, ERR_FORMAT, "tensor '%s': byte size overflows", nm.s);
    uint64_t rows = (uint64_t)(nelem / t->ne[0]);
    if (__builtin_mul_overflow(row, rows, &t->nbytes))
        return err_set(e, ERR_FORMAT, "tensor '%s': byte size overflows", nm.s);
    if (t->offset % g->alignment != 0)
        return err_set(e, ERR_FORMAT, "tensor '%s': offset %llu is not a multiple of alignment %llu",
                       nm.s, (unsigned long long)t->offset, (unsigned long long)g->alignment);
    return 0;
}

static int index_tensors(gguf_file *g, err *e) {
    if (hash_alloc(&g->t_hash, &g->t_hash_mask, g->n_tensors))
        return err_set(e, ERR_NOMEM, "header: out of memory for the tensor index");
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const char *name = g->tensors[i].name;
        uint64_t h = name_hash(name) & g->t_hash_mask;
        for (; g->t_hash[h] >= 0; h = (h + 1) & g->t_hash_mask) {
            if (strcmp(g->tensors[g->t_hash[h]].name, name) == 0) {
                shown nm = show(name, strlen(name));
                return err_set(e, ERR_FORMAT, "duplicate tensor name '%s' (tensor %lld and %lld)",
                               nm.s, (long long)g->t_hash[h], (long long)i);
            }
        }
        g->t_hash[h] = i;
    }
    return 0;
}

typedef struct span {
    uint64_t offset, nbytes;
    int64_t index;
} span;

static int by_offset(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->index < y->index ? -1 : 1;
}

/* Every tensor inside the file and no two sharing a byte. */
static int check_layout(gguf_file *g, err *e) {
    g->data_size = 0;
    if (g->n_tensors == 0) return 0;
    if (g->data_offset > g->file_size)
        return err_set(e, ERR_FORMAT, "data section starts at byte %llu, past end of file (%llu bytes)",
                       (unsigned long long)g->data_offset, (unsigned long long)g->file_size);
    uint64_t avail = g->file_size - g->data_offset;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (t->offset > avail || t->nbytes > avail - t->offset) {
            shown nm = show(t->name, strlen(t->name));
            return err_set(e, ERR_FORMAT,
                           "tensor '%s': data at offset %llu + %llu bytes past end of file "
                           "(data section has %llu bytes)",
                           nm.s, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                           (unsigned long long)avail);
        }
        if (t->offset + t->nbytes > g->data_size) g->data_size = t->offset + t->nbytes;
    }
    span *order = malloc((size_t)g->n_tensors * sizeof *order);
    if (!order) return err_set(e, ERR_NOMEM, "header: out of memory for the tensor order");
    for (int64_t i = 0; i < g->n_tensors; i++)
        order[i] = (span){g->tensors[i].offset, g->tensors[i].nbytes, i};
    qsort(order, (size_t)g->n_tensors, sizeof *order, by_offset);
    int rc = 0;
    for (int64_t i = 1; i < g->n_tensors; i++) {
        const span *p = &order[i - 1], *t = &order[i];
        if (t->offset < p->offset + p->nbytes) {
            const char *pn = g->tensors[p->index].name, *tn = g->tensors[t->index].name;
            shown a = show(pn, strlen(pn)), b = show(tn, strlen(tn));
            rc = err_set(e, ERR_FORMAT, "tensors '%s' and '%s' overlap", a.s, b.s);
            break;
        }
    }
    free(order);
    return rc;
}

/* general.alignment, if present: u32, non-zero, a power of two. */
static int read_alignment(gguf_file *g, err *e) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t i = gguf_find_key(g, "general.alignment");
    if (i < 0) return 0;
    if (g->kv[i].type != GGUF_VT_UINT32)
        return err_set(e, ERR_FORMAT, "general.alignment: type %s, expected uint32",
                       gguf_vtype_name(g->kv[i].type));
    uint32_t a = rd_u32(g->hdr + g->kv[i].val_off);
    if (a == 0 || (a & (a - 1)) != 0)
        return err_set(e, ERR_FORMAT, "general.alignment: %u is not a non-zero power of two", a);
    g->alignment = a;
    return 0;
}

/* ------------------------------------------------------------------- open */

static int parse(gguf_file *g, err *e) {
    if (g->file_size < 24) {
        /* Too short for the fixed header; say whether it is GGUF at all. */
        uint8_t m[4] = {0};
        if (g->file_size >= 4 && src_read(g, m, 4, 0, "header", e)) return -1;
        if (g->file_size < 4 || rd_u32(m) != GGUF_MAGIC)
            return err_set(e, ERR_FORMAT, "bad magic: not a GGUF file");
        return err_set(e, ERR_FORMAT, "header: file too short (%llu bytes)",
                       (unsigned long long)g->file_size);
    }
    if (need(g, 0, 24, e)) return -1;
    uint32_t magic = rd_u32(g->hdr);
    if (magic != GGUF_MAGIC)
        return err_set(e, ERR_FORMAT, "bad magic: not a GGUF file (0x%08x)", magic);
    g->version = rd_u32(g->hdr + 4);
    if (g->version != 2 && g->version != 3) {
        uint32_t sw = __builtin_bswap32(g->version);
        if (sw == 2 || sw == 3)
            return err_set(e, ERR_UNSUPPORTED, "unsupported GGUF version %u (big-endian file)",
                           g->version);
        return err_set(e, ERR_UNSUPPORTED, "unsupported GGUF version %u", g->version);
    }
    uint64_t n_tensors = rd_u64(g->hdr + 8), n_kv = rd_u64(g->hdr + 16);
    uint64_t left = g->file_size - 24;
    if (n_kv > left / GGUF_MIN_KV_BYTES)
        return err_set(e, ERR_FORMAT, "header: n_kv %llu is more than %llu bytes could hold",
                       (unsigned long long)n_kv, (unsigned long long)left);
    if (n_tensors > (left - n_kv * GGUF_MIN_KV_BYTES) / GGUF_MIN_TENSOR_BYTES)
        return err_set(e, ERR_FORMAT, "header: n_tensors %llu is more than %llu bytes could hold",
                       (unsigned long long)n_tensors, (unsigned long long)left);

    uint64_t pos = 24;
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    if (!g->kv) return err_set(e, ERR_NOMEM, "header: out of memory for %llu kvs", (unsigned long long)n_kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        if (parse_kv(g, (int64_t)i, &pos, e)) return -1;
        g->n_kv = (int64_t)i + 1;
    }
    if (index_keys(g, e) || read_alignment(g, e)) return -1;

    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    g->tensor_name_off = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensor_name_off);
    if (!g->tensors || !g->tensor_name_off)
        return err_set(e, ERR_NOMEM, "header: out of memory for %llu tensors",
                       (unsigned long long)n_tensors);
    for (uint64_t i = 0; i < n_tensors; i++) {
        if (parse_tensor(g, (int64_t)i, &pos, e)) return -1;
        g->n_tensors = (int64_t)i + 1;
    }
    /* The names pool no longer moves. */
    for (int64_t i = 0; i < g->n_tensors; i++) g->tensors[i].name = g->names + g->tensor_name_off[i];
    if (index_tensors(g, e)) return -1;

    g->data_offset = (pos + g->alignment - 1) / g->alignment * g->alignment; /* pos < 2^63 */
    return check_layout(g, e);
}

/* Parses g; on failure frees it (without closing a caller's fd). */
static int open_common(gguf_file **out, gguf_file *g, err *e) {
    if (parse(g, e)) {
        int code = (e && e->code != ERR_OK) ? (int)e->code : ERR_FORMAT;
        g->fd = -1;
        gguf_close(g);
        return code;
    }
    *out = g;
    return 0;
}

static gguf_file *gguf_new(void) {
    gguf_file *g = calloc(1, sizeof *g);
    if (g) g->fd = -1;
    return g;
}

int gguf_open(gguf_file **out, const char *path, err *e) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set(e, ERR_IO, "cannot open model file: %s", strerror(errno));
    int rc = gguf_open_fd(out, fd, e);
    if (rc) close(fd);
    return rc;
}

int gguf_open_fd(gguf_file **out, int fd, err *e) {
    *out = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) return err_set(e, ERR_IO, "cannot stat model file: %s", strerror(errno));
    if (!S_ISREG(st.st_mode)) return err_set(e, ERR_IO, "model file is not a regular file");
    gguf_file *g = gguf_new();
    if (!g) return err_set(e, ERR_NOMEM, "out of memory");
    g->fd = fd;
    g->file_size = (uint64_t)st.st_size;
    return open_common(out, g, e);
}

int gguf_open_mem(gguf_file **out, const void *data, size_t size, err *e) {
    *out = NULL;
    gguf_file *g = gguf_new();
    if (!g) return err_set(e, ERR_NOMEM, "out of memory");
    g->mem = data;
    g->file_size = size;
    return open_common(out, g, e);
}

void gguf_close(gguf_file *g) {
    if (!g) return;
    if (g->map) munmap(g->map, (size_t)g->file_size);
    if (g->fd >= 0) close(g->fd);
    free(g->hdr);
    free(g->names);
    free(g->kv);
    free(g->kv_hash);
    free(g->str_offs);
    free(g->tensors);
    free(g->tensor_name_off);
    free(g->t_hash);
    free(g);
}

uint32_t gguf_version(const gguf_file *g) { return g->version; }
uint64_t gguf_file_size(const gguf_file *g) { return g->file_size; }
uint64_t gguf_alignment(const gguf_file *g) { return g->alignment; }
uint64_t gguf_data_offset(const gguf_file *g) { return g->data_offset; }
uint64_t gguf_data_size(const gguf_file *g) { return g->data_size; }

/* ------------------------------------------------------------ metadata API */

int64_t gguf_kv_count(const gguf_file *g) { return g->n_kv; }

const char *gguf_kv_key(const gguf_file *g, int64_t i) {
    return (i >= 0 && i < g->n_kv) ? g->names + g->kv[i].key_off : NULL;
}

uint32_t gguf_kv_type(const gguf_file *g, int64_t i) {
    return (i >= 0 && i < g->n_kv) ? g->kv[i].type : GGUF_VT_COUNT;
}

int64_t gguf_find_key(const gguf_file *g, const char *key) {
    if (!key || !g->kv_hash) return -1;
    for (uint64_t h = name_hash(key) & g->kv_hash_mask; g->kv_hash[h] >= 0;
         h = (h + 1) & g->kv_hash_mask)
        if (strcmp(g->names + g->kv[g->kv_hash[h]].key_off, key) == 0) return g->kv_hash[h];
    return -1;
}

/* Integer value of kv i: *neg set when it is below zero, *mag its magnitude
 * as u64 (exact for every integer type). */
static int get_int(const gguf_file *g, const char *key, int *neg, uint64_t *mag, err *e) {
    int64_t i = gguf_find_key(g, key);
    if (i < 0) return ERR_ABSENT;
    const gguf_kv *kv = &g->kv[i];
    const uint8_t *p = g->hdr + kv->val_off;
    shown k = show(key, strlen(key));
    int64_t s = 0;
    *neg = 0;
    switch (kv->type) {
    case GGUF_VT_UINT8: *mag = p[0]; return 0;
    case GGUF_VT_UINT16: { uint16_t v; memcpy(&v, p, 2); *mag = v; return 0; }
    case GGUF_VT_UINT32: *mag = rd_u32(p); return 0;
    case GGUF_VT_UINT64: *mag = rd_u64(p); return 0;
    case GGUF_VT_INT8: { int8_t v; memcpy(&v, p, 1); s = v; break; }
    case GGUF_VT_INT16: { int16_t v; memcpy(&v, p, 2); s = v; break; }
    case GGUF_VT_INT32: { int32_t v; memcpy(&v, p, 4); s = v; break; }
    case GGUF_VT_INT64: { memcpy(&s, p, 8); break; }
    default:
        return err_set(e, ERR_FORMAT, "key '%s': type %s, expected an integer", k.s,
                       gguf_vtype_name(kv->type));
    }
    *neg = s < 0;
    *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    return 0;
}

/* The integer value of key when it lies in [-max_neg, max_pos] (as get_int says it);
 * else ERR_FORMAT naming the value and want. */
static int get_int_in(const gguf_file *g, const char *key, uint64_t max_pos, uint64_t max_neg, const char *want,
                      int *neg, uint64_t *mag, err *e) {
    int rc = get_int(g, key, neg, mag, e);
    if (rc) return rc;
    if (*neg ? *mag > max_neg : *mag > max_pos) {
        shown k = show(key, strlen(key));
        return err_set(e, ERR_FORMAT, "key '%s': value %s%llu out of range for %s", k.s, *neg ? "-" : "",
                       (unsigned long long)*mag, want);
    }
    return 0;
}

int gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out, err *e) {
    int neg;
    uint64_t mag;
    int rc = get_int_in(g, key, UINT32_MAX, 0, "uint32", &neg, &mag, e);
    if (!rc) *out = (uint32_t)mag;
    return rc;
}

int gguf_get_u64(const gguf_file *g, const char *key, uint64_t *out, err *e) {
    int neg;
    uint64_t mag;
    int rc = get_int_in(g, key, UINT64_MAX, 0, "uint64", &neg, &mag, e);
    if (!rc) *out = mag;
    return rc;
}

int gguf_get_i32(const gguf_file *g, const char *key, int32_t *out, err *e) {
    int neg;
    uint64_t mag;
    int rc = get_int_in(g, key, INT32_MAX, (uint64_t)INT32_MAX + 1, "int32", &neg, &mag, e);
    if (!rc) *out = neg ? (int32_t)(-(int64_t)mag) : (int32_t)mag;
    return rc;
}

int gguf_get_i64(const gguf_file *g, const char *key, int64_t *out, err *e) {
    int neg;
    uint64_t mag;
    int rc = get_int_in(g, key, INT64_MAX, (uint64_t)INT64_MAX + 1, "int64", &neg, &mag, e);
    if (!rc) *out = neg ? -(int64_t)(mag - 1) - 1 : (int64_t)mag; /* no overflow at INT64_MIN */
    return rc;
}

int gguf_get_f64(const gguf_file *g, const char *key, double *out, err *e) {
    int64_t i = gguf_find_key(g, key);
    if (i < 0) return ERR_ABSENT;
    const gguf_kv *kv = &g->kv[i];
    if (kv->type == GGUF_VT_FLOAT64) {
        memcpy(out, g->hdr + kv->val_off, 8);
        return 0;
    }
    if (kv->type == GGUF_VT_FLOAT32) {
        float f;
        memcpy(&f, g->hdr + kv->val_off, 4);
        *out = f;
        return 0;
    }
    shown k = show(key, strlen(key));
    return err_set(e, ERR_FORMAT, "key '%s': type %s, expected float64", k.s,
                   gguf_vtype_name(kv->type));
}

int gguf_get_f32(const gguf_file *g, const char *key, float *out, err *e) {
    int64_t i = gguf_find_key(g, key);
    if (i < 0) return ERR_ABSENT;
    const gguf_kv *kv = &g->kv[i];
    const uint8_t *p = g->hdr + kv->val_off;
    shown k = show(key, strlen(key));
    if (kv->type == GGUF_VT_FLOAT32) {
        memcpy(out, p, 4);
        return 0;
    }
    if (kv->type == GGUF_VT_FLOAT64) {
        double d;
        memcpy(&d, p, 8);
        if (isfinite(d) && fabs(d) > FLT_MAX)
            return err_set(e, ERR_FORMAT, "key '%s': float64 value %g out of range for float32",
                           k.s, d);
        *out = (float)d;
        return 0;
    }
    return err_set(e, ERR_FORMAT, "key '%s': type %s, expected float32", k.s,
                   gguf_vtype_name(kv->type));
}

int gguf_get_bool(const gguf_file *g, const char *key, int *out, err *e) {
    int64_t i = gguf_find_key(g, key);
    if (i < 0) return ERR_ABSENT;
    if (g->kv[i].type != GGUF_VT_BOOL) {
        shown k = show(key, strlen(key));
        return err_set(e, ERR_FORMAT, "key '%s': type %s, expected bool", k.s,
                       gguf_vtype_name(g->kv[i].type));
    }
    *out = g->hdr[g->kv[i].val_off]; /* validated 0 or 1 at open */
    return 0;
}

int gguf_get_str(const gguf_file *g, const char *key, const char **s, uint64_t *len, err *e) {
    int64_t i = gguf_find_key(g, key);
    if (i < 0) return ERR_ABSENT;
    if (g->kv[i].type != GGUF_VT_STRING) {
        shown k = show(key, strlen(key));
        return err_set(e, ERR_FORMAT, "key '%s': type %s, expected string", k.s,
                       gguf_vtype_name(g->kv[i].type));
    }
    *len = rd_u64(g->hdr + g->kv[i].val_off);
    *s = (const char *)g->hdr + g->kv[i].val_off + 8;
    return 0;
}

int gguf_get_arr(const gguf_file *g, const char *key, uint32_t elem_type, gguf_arr *out, err *e) {
    int64_t i = gguf_find_key(g, key);
    if (i < 0) return ERR_ABSENT;
    const gguf_kv *kv = &g->kv[i];
    shown k = show(key, strlen(key));
    if (kv->type != GGUF_VT_ARRAY)
        return err_set(e, ERR_FORMAT, "key '%s': type %s, expected array of %s", k.s,
                       gguf_vtype_name(kv->type), gguf_vtype_name(elem_type));
    if (kv->arr_type == GGUF_VT_ARRAY)
        return err_set(e, ERR_FORMAT, "key '%s': array of arrays, expected array of %s", k.s,
                       gguf_vtype_name(elem_type));
    if (kv->arr_type != elem_type)
        return err_set(e, ERR_FORMAT, "key '%s': array of %s, expected array of %s", k.s,
                       gguf_vtype_name(kv->arr_type), gguf_vtype_name(elem_type));
    out->type = kv->arr_type;
    out->n = kv->arr_n;
    out->data = g->hdr + kv->val_off;
    out->owner = g;
    out->kv_index = i;
    return 0;
}

const char *gguf_arr_str(const gguf_arr *a, uint64_t i, uint64_t *len) {
    if (!a || a->type != GGUF_VT_STRING || i >= a->n || !a->owner) return NULL;
    const gguf_file *g = a->owner;
    uint64_t off = g->str_offs[g->kv[a->kv_index].str_idx + i];
    if (len) *len = rd_u64(g->hdr + off);
    return (const char *)g->hdr + off + 8;
}

float gguf_arr_f32(const gguf_arr *a, uint64_t i) {
    float v = 0;
    if (a && a->type == GGUF_VT_FLOAT32 && i < a->n) memcpy(&v, a->data + 4 * i, 4);
    return v;
}

int32_t gguf_arr_i32(const gguf_arr *a, uint64_t i) {
    int32_t v = 0;
    if (a && a->type == GGUF_VT_INT32 && i < a->n) memcpy(&v, a->data + 4 * i, 4);
    return v;
}

uint32_t gguf_arr_u32(const gguf_arr *a, uint64_t i) {
    uint32_t v = 0;
    if (a && a->type == GGUF_VT_UINT32 && i < a->n) memcpy(&v, a->data + 4 * i, 4);
    return v;
}

/* ------------------------------------------------------------- tensor API */

int64_t gguf_tensor_count(const gguf_file *g) { return g->n_tensors; }

gguf_tensor *gguf_tensor_at(gguf_file *g, int64_t i) {
    return (i >= 0 && i < g->n_tensors) ? &g->tensors[i] : NULL;
}

gguf_tensor *gguf_find_tensor(gguf_file *g, const char *name) {
    if (!name || !g->t_hash) return NULL;
    for (uint64_t h = name_hash(name) & g->t_hash_mask; g->t_hash[h] >= 0;
         h = (h + 1) & g->t_hash_mask)
        if (strcmp(g->tensors[g->t_hash[h]].name, name) == 0) return &g->tensors[g->t_hash[h]];
    return NULL;
}

void gguf_set_sink(gguf_file *g, gguf_sink_fn fn, void *user) {
    g->sink = fn;
    g->sink_user = user;
}

/* Feeds bytes [off, off + n) of the file to the sink: from the header buffer where it
 * holds them (the header is never read twice), else read here (the bytes between the
 * header buffer's end and the data section, and any tail after the last tensor). */
static int sink_range(gguf_file *g, uint64_t off, uint64_t n, err *e) {
    if (off < g->hdr_len) {
        uint64_t k = g->hdr_len - off < n ? g->hdr_len - off : n;
        g->sink(g->sink_user, g->hdr + off, (size_t)k);
        off += k;
        n -= k;
    }
    if (!n) return 0;
    uint8_t *tmp = malloc(GGUF_HDR_CHUNK);
    if (!tmp) return err_set(e, ERR_NOMEM, "out of memory");
    int rc = 0;
    while (n && !rc) {
        uint64_t k = n < GGUF_HDR_CHUNK ? n : GGUF_HDR_CHUNK;
        if (src_read(g, tmp, k, off, "file", e)) rc = e ? (int)e->code : ERR_IO;
        else g->sink(g->sink_user, tmp, (size_t)k);
        off += k;
        n -= k;
    }
    free(tmp);
    return rc;
}

int gguf_load_data(gguf_file *g, void *buf, uint64_t buf_size, gguf_progress_fn progress,
                   void *user, err *e) {
    if (!buf || buf_size < g->data_size)
        return err_set(e, ERR_NOMEM, "data buffer of %llu bytes is smaller than the %llu-byte data section",
                       (unsigned long long)buf_size, (unsigned long long)g->data_size);
    int rc;
    if (g->sink && (rc = sink_range(g, 0, g->data_offset, e))) return rc;
    uint8_t *dst = buf;
    uint64_t done = 0, next_report = GGUF_PROGRESS_EVERY;
    while (done < g->data_size) {
        uint64_t n = g->data_size - done;
        if (n > GGUF_LOAD_CHUNK) n = GGUF_LOAD_CHUNK;
        if (src_read(g, dst + done, n, g->data_offset + done, "data section", e)) return e ? (int)e->code : ERR_IO;
        if (g->sink) g->sink(g->sink_user, dst + done, (size_t)n); /* while the chunk is hot in cache */
        done += n;
        if (progress && done >= next_report && done < g->data_size) {
            progress(done, g->data_size, user);
            next_report += GGUF_PROGRESS_EVERY;
        }
    }
    uint64_t end = g->data_offset + g->data_size;
    if (g->sink && end < g->file_size && (rc = sink_range(g, end, g->file_size - end, e))) return rc;
    if (progress) progress(done, g->data_size, user);
    for (int64_t i = 0; i < g->n_tensors; i++) g->tensors[i].data = dst + g->tensors[i].offset;
    return 0;
}

int gguf_map_data(gguf_file *g, err *e) {
    uint8_t *base;
    if (g->fd < 0) {
        base = (uint8_t *)g->mem; /* memory source: already addressable */
    } else {
        if (!g->map) {
            if (g->file_size == 0) return err_set(e, ERR_IO, "cannot map an empty file");
            void *m = mmap(NULL, (size_t)g->file_size, PROT_READ, MAP_PRIVATE, g->fd, 0);
            if (m == MAP_FAILED) return err_set(e, ERR_IO, "mmap of the model failed: %s", strerror(errno));
            g->map = m;
        }
        base = g->map;
    }
    if (g->sink) g->sink(g->sink_user, base, (size_t)g->file_size); /* touches every page once */
    for (int64_t i = 0; i < g->n_tensors; i++)
        g->tensors[i].data = base + g->data_offset + g->tensors[i].offset;
    return 0;
}
