/* jsonv.h — JSON values with Python's semantics, allocated in a bounded arena.
 *
 * The chat-template engine (tmpl.c) and the output parsers (parse.c) need JSON
 * the way Python's json module sees it: objects keep insertion order, a
 * duplicate key keeps its first position and its last value, integers stay
 * integers, floats print as Python's repr (shortest round trip), and dumping
 * follows json.dumps(ensure_ascii, indent, separators, sort_keys).
 *
 * Memory: every value lives in a jv_arena, a list of chunks with a byte cap; an
 * allocation past the cap fails (returns NULL) instead of growing without
 * bound. Values are never freed one by one: the arena is freed as a whole.
 * Growable output text goes into a jv_buf (malloc'd, with its own cap).
 *
 * Owns: the arena's chunks; a jv_buf's bytes. */
#ifndef SPARKD_JSONV_H
#define SPARKD_JSONV_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct jv_arena jv_arena;

jv_arena *jv_arena_new(size_t cap_bytes);
void jv_arena_free(jv_arena *a);
/* 16-byte aligned; NULL once cap_bytes would be exceeded (the arena remembers). */
void *jv_alloc(jv_arena *a, size_t n);
int jv_arena_exhausted(const jv_arena *a);

typedef enum jv_type {
    JV_UNDEF = 0, /* Jinja's Undefined; never produced by the JSON parser */
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST, /* sub = 1: a tuple (prints as "(a, b)"); sub = 2: a Python generator
              * (what jinja's map/select filters return: always true, no len, not JSON) */
    JV_DICT,
    JV_OBJ, /* engine-specific object: sub says which, o points at it */
} jv_type;

typedef struct jv_str {
    size_t len;
    char p[]; /* len bytes, then a NUL */
} jv_str;

typedef struct jv {
    uint8_t type; /* jv_type */
    uint8_t sub;
    union {
        int64_t i; /* JV_BOOL (0/1), JV_INT */
        double f;
        const jv_str *s;
        struct jv_list *l;
        struct jv_dict *d;
        void *o;
    } u;
} jv;

typedef struct jv_list {
    size_t n, cap;
    jv *v; /* [n] */
} jv_list;

typedef struct jv_dict {
    size_t n, cap;
    const jv_str **k; /* [n] keys, insertion order */
    jv *v;            /* [n] values */
} jv_dict;

static inline jv jv_undef(void) { jv v = {0}; return v; }
static inline jv jv_none(void) { jv v = {0}; v.type = JV_NONE; return v; }
static inline jv jv_bool(int b) { jv v = {0}; v.type = JV_BOOL; v.u.i = b ? 1 : 0; return v; }
static inline jv jv_int(int64_t i) { jv v = {0}; v.type = JV_INT; v.u.i = i; return v; }
static inline jv jv_float(double f) { jv v = {0}; v.type = JV_FLOAT; v.u.f = f; return v; }
static inline jv jv_strv(const jv_str *s) { jv v = {0}; v.type = JV_STR; v.u.s = s; return v; }

const jv_str *jv_str_new(jv_arena *a, const char *p, size_t len); /* NULL: arena full */
jv_list *jv_list_new(jv_arena *a, size_t cap);
int jv_list_push(jv_arena *a, jv_list *l, jv v); /* 0, or -1 when the arena is full */
jv_dict *jv_dict_new(jv_arena *a, size_t cap);
/* Sets key (overwriting in place when present); 0 or -1 when the arena is full. */
int jv_dict_set(jv_arena *a, jv_dict *d, const jv_str *k, jv v);
/* Index of key or -1. */
long jv_dict_find(const jv_dict *d, const char *k, size_t klen);

/* Python's json.loads on text[0..len): strict strings (no raw control
 * characters), NaN/Infinity accepted, nesting deeper than max_depth refused,
 * invalid UTF-8 refused. Trailing non-space text is an error. */
int jv_parse(jv_arena *a, const char *text, size_t len, int max_depth, jv *out, err *e);

/* Stricter rules for outside input (request bodies), OR-ed into flags. */
enum {
    JV_PARSE_NO_DUPLICATES = 1,   /* a key twice in one object is an error, not last-wins */
    JV_PARSE_STRICT_NUMBERS = 2,  /* RFC 8259: no NaN/Infinity, a float overflowing a double is an error */
    JV_PARSE_NO_NUL = 4,          /* \u0000 in a string is an error (values are also used as C strings) */
};
/* jv_parse with flags. On failure *err_at (when not NULL) is the byte offset
 * where the error was found; e's message says what it was. */
int jv_parse_ex(jv_arena *a, const char *text, size_t len, int max_depth, unsigned flags, jv *out, size_t *err_at,
                err *e);

/* Growable text with a byte cap; once over the cap, `over` is set and further
 * appends are dropped (the caller checks `over`). */
typedef struct jv_buf {
    char *p;
    size_t n, cap, max;
    int over;
} jv_buf;

void jv_buf_init(jv_buf *b, size_t max);
void jv_buf_free(jv_buf *b);
void jv_buf_put(jv_buf *b, const char *p, size_t n);
void jv_buf_puts(jv_buf *b, const char *s);
void jv_buf_putc(jv_buf *b, char c);

/* json.dumps. indent: NULL for none, else the indent string (Python's indent=4
 * is "    "). item_sep/key_sep NULL pick Python's defaults for the indent mode.
 * Fails (ERR_INVALID) on values JSON cannot hold (Undefined, engine objects). */
int jv_dump(jv_buf *b, jv v, const char *indent, const char *item_sep, const char *key_sep, int sort_keys,
            int ensure_ascii, err *e);
/* Python's str(v) and repr(v) (engine objects print as "<object>"). */
void jv_to_str(jv_buf *b, jv v);
void jv_repr(jv_buf *b, jv v);
/* Python's repr(float). */
void jv_float_repr(jv_buf *b, double f);

/* Python semantics: truthiness and ==. */
int jv_truthy(jv v);
int jv_equal(jv a, jv b);

/* Unicode helpers shared by the template engine (Python's rules). */
int jv_py_isspace(uint32_t cp);
int jv_py_isprintable(uint32_t cp);
/* Decodes one valid UTF-8 code point (the parser validated the text); returns its length. */
int jv_utf8_next(const char *s, size_t n, uint32_t *cp);
size_t jv_utf8_count(const char *s, size_t n);

#endif
