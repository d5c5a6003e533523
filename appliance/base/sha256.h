/* sha256.h — SHA-256 digests (BearSSL's br_sha256) and `sha256sum` manifests.
 *
 * A digest is computed incrementally (init/update/final) so that the model loader
 * can hash a file while it reads it (gguf_set_sink), never in a second pass.
 *
 * A manifest is the text `sha256sum FILE...` prints: one line per file, 64 hex digits,
 * a blank, then ' ' (text mode) or '*' (binary mode), then the name to the end of the
 * line; a line starting with '\' carries a name with "\\" and "\n" escapes (as GNU
 * sha256sum writes names holding a backslash or newline). A name that is not absolute
 * is taken from the manifest's own directory (the same as `cd DIR && sha256sum -c`).
 * Strict: a malformed line, a duplicate name, a line over 4096 bytes, more than 65536
 * entries or a file over 16 MiB is an error naming "MANIFEST:LINE".
 *
 * Owns: a sha256_manifest and its entries (sha256_manifest_free). */
#ifndef SPARKD_SHA256_H
#define SPARKD_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Room for BearSSL's br_sha256_context (checked in sha256.c). */
typedef struct sha256_ctx {
    uint64_t opaque[20];
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
void sha256_final(sha256_ctx *c, uint8_t out[32]);
/* One call over a buffer. */
void sha256_of(const void *data, size_t n, uint8_t out[32]);
/* Lower-case hex, NUL-terminated. */
void sha256_hex(const uint8_t d[32], char out[65]);
/* 64 hex digits (either case) -> 32 bytes; 0 or -1 if s is not exactly that. */
int sha256_parse_hex(const char *s, size_t n, uint8_t out[32]);
/* The digest of a whole file, read with large pread()s. Errors name the path. */
int sha256_file(const char *path, uint8_t out[32], err *e);

typedef struct sha256_entry {
    uint8_t digest[32];
    char *name;  /* as written in the manifest (unescaped) */
    char *path;  /* name resolved against the manifest's directory */
} sha256_entry;

typedef struct sha256_manifest {
    sha256_entry *entries;
    int n;
} sha256_manifest;

int sha256_manifest_load(sha256_manifest **out, const char *path, err *e);
/* Same over len bytes of text (fuzzing, tests); name stands for the file in messages
 * and dir (may be NULL or "") is where relative names are taken from. */
int sha256_manifest_parse(sha256_manifest **out, const char *text, size_t len, const char *name, const char *dir,
                          err *e);
/* The entry for file: the one whose resolved path is the same file (same device and
 * inode), else the one whose resolved path equals file as written; NULL if none. */
const sha256_entry *sha256_manifest_find(const sha256_manifest *m, const char *file);
void sha256_manifest_free(sha256_manifest *m);

#endif
