/* gguf.h — a GGUF v3 reader that never trusts the file.
 *
 * Owns: the parsed header (metadata key/values, tensor infos) held in memory it
 * allocates at open and frees at close. It does NOT own tensor data: the caller
 * allocates one buffer of gguf_data_size() bytes (aligned to gguf_alignment())
 * and gguf_load_data() fills it with large pread() calls — one copy of the
 * weights, no mmap unless gguf_map_data() is asked for.
 *
 * Every header field is validated before use (magic, version, counts against the
 * bytes left, string lengths, types, dims, byte sizes, offsets, alignment); an
 * error message names the field, e.g. "tensor 'blk.0.attn_q.weight': n_dims 5 > 4".
 * Messages never contain the file's path.
 *
 * Duplicate metadata keys and duplicate tensor names are errors. Unknown quant
 * types are errors (the type id is named in the message). Version 2 (same
 * layout as 3) is accepted; keys and tensor names containing NUL bytes are
 * refused; arrays of arrays are parsed (nesting depth <= 8) but gguf_get_arr
 * refuses them. Tensors need not be packed in order, but must be aligned,
 * inside the file and must not overlap. */
#ifndef SPARKD_GGUF_H
#define SPARKD_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum gguf_vtype {
    GGUF_VT_UINT8 = 0,
    GGUF_VT_INT8 = 1,
    GGUF_VT_UINT16 = 2,
    GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4,
    GGUF_VT_INT32 = 5,
    GGUF_VT_FLOAT32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_UINT64 = 10,
    GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12,
    GGUF_VT_COUNT
};

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

typedef struct gguf_file gguf_file;

/* A metadata array as stored in the file. For numeric element types `data`
 * points at n packed little-endian elements (not necessarily aligned: read
 * them with memcpy or the gguf_arr_* accessors). For strings use gguf_arr_str. */
typedef struct gguf_arr {
    uint32_t type;       /* enum gguf_vtype of the elements (never ARRAY) */
    uint64_t n;          /* element count */
    const uint8_t *data; /* numeric: n * size(type) bytes */
    const gguf_file *owner;
    int64_t kv_index;    /* which key this array belongs to */
} gguf_arr;

typedef struct gguf_tensor {
    const char *name;          /* NUL-terminated, owned by the gguf_file */
    uint32_t type;             /* ggml type id (see quant.h), validated known */
    uint32_t n_dims;           /* 1..4 */
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] = innermost (row length); unused dims = 1 */
    uint64_t offset;           /* byte offset from the start of the data section */
    uint64_t nbytes;           /* exact byte size of the data */
    void *data;                /* NULL until gguf_load_data()/gguf_map_data() */
} gguf_tensor;

/* Opens and fully validates the header. On success *out owns the file handle. */
int gguf_open(gguf_file **out, const char *path, err *e);
/* Same on an open file descriptor: on success *out owns fd (gguf_close closes
 * it); on failure fd stays the caller's. */
int gguf_open_fd(gguf_file **out, int fd, err *e);
/* Same over size bytes in memory (fuzzing, tests). data must outlive *out;
 * gguf_map_data() then points tensors into data itself. */
int gguf_open_mem(gguf_file **out, const void *data, size_t size, err *e);
void gguf_close(gguf_file *g);

uint32_t gguf_version(const gguf_file *g);
uint64_t gguf_file_size(const gguf_file *g);
uint64_t gguf_alignment(const gguf_file *g);   /* general.alignment or 32 */
uint64_t gguf_data_offset(const gguf_file *g); /* where the data section starts */
uint64_t gguf_data_size(const gguf_file *g);   /* bytes from data start to end of last tensor */

/* ---- metadata ---- */
int64_t gguf_kv_count(const gguf_file *g);
const char *gguf_kv_key(const gguf_file *g, int64_t i);
uint32_t gguf_kv_type(const gguf_file *g, int64_t i);
int64_t gguf_find_key(const gguf_file *g, const char *key); /* -1 if absent */

/* Typed getters. Return 0 on success, ERR_ABSENT if the key does not exist
 * (e is NOT set then: absence is the caller's decision), or ERR_FORMAT with e
 * set when the key exists with an incompatible type or out-of-range value.
 * Integer getters accept any integer type whose value fits. */
int gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out, err *e);
int gguf_get_u64(const gguf_file *g, const char *key, uint64_t *out, err *e);
int gguf_get_i32(const gguf_file *g, const char *key, int32_t *out, err *e);
int gguf_get_i64(const gguf_file *g, const char *key, int64_t *out, err *e);
int gguf_get_f32(const gguf_file *g, const char *key, float *out, err *e); /* FLOAT32/64 */
int gguf_get_f64(const gguf_file *g, const char *key, double *out, err *e); /* FLOAT32/64 */
int gguf_get_bool(const gguf_file *g, const char *key, int *out, err *e);
/* String value: *s points into the gguf_file (NOT NUL-terminated in general;
 * use *len). Strings may contain NUL bytes. */
int gguf_get_str(const gguf_file *g, const char *key, const char **s, uint64_t *len, err *e);
/* Array value whose element type must be `elem_type` (ERR_FORMAT otherwise,
 * naming the key, the expected and the found type). */
int gguf_get_arr(const gguf_file *g, const char *key, uint32_t elem_type, gguf_arr *out, err *e);

/* Element accessors (i < a->n is the caller's duty; checked with a return of 0/NULL). */
const char *gguf_arr_str(const gguf_arr *a, uint64_t i, uint64_t *len);
float gguf_arr_f32(const gguf_arr *a, uint64_t i);
int32_t gguf_arr_i32(const gguf_arr *a, uint64_t i);
uint32_t gguf_arr_u32(const gguf_arr *a, uint64_t i);

const char *gguf_vtype_name(uint32_t t);

/* ---- tensors ---- */
int64_t gguf_tensor_count(const gguf_file *g);
gguf_tensor *gguf_tensor_at(gguf_file *g, int64_t i);
gguf_tensor *gguf_find_tensor(gguf_file *g, const char *name); /* NULL if absent */

/* Progress callback: done/total bytes; called every few hundred MB and at the end. */
typedef void (*gguf_progress_fn)(uint64_t done, uint64_t total, void *user);

/* A sink sees every byte of the file exactly once, in order, while gguf_load_data()
 * or gguf_map_data() reads it (the header from the buffer the parser already holds):
 * a digest of the whole file without a second pass (model_load_opts.sink). */
typedef void (*gguf_sink_fn)(void *user, const void *data, size_t n);
void gguf_set_sink(gguf_file *g, gguf_sink_fn fn, void *user);

/* Reads the whole data section into buf (buf_size >= gguf_data_size()) with large
 * pread() calls, then points every tensor's `data` into buf. buf should be aligned
 * to at least gguf_alignment(). */
int gguf_load_data(gguf_file *g, void *buf, uint64_t buf_size, gguf_progress_fn progress,
                   void *user, err *e);
/* Alternative: mmap the file read-only and point tensors into the mapping
 * (released by gguf_close). Slower on GB10; opt-in only. */
int gguf_map_data(gguf_file *g, err *e);

#endif
