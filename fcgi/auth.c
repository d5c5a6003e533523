/* auth.c — API keys. The INI stores SHA-256 digests, never keys; a request's
 * bearer token is hashed and compared with every stored digest in constant
 * time, so neither the key's length nor how many leading bytes match shows in
 * the response time (the hash hides the length; the compare hides the rest). */
#include <bearssl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "fcgi.h"

static void sha256(const void *data, size_t len, uint8_t out[32]) {
    br_sha256_context c;
    br_sha256_init(&c);
    br_sha256_update(&c, data, len);
    br_sha256_out(&c, out);
}

void fcgi_sha256_hex(const void *data, size_t len, char out[65]) {
    uint8_t d[32];
    sha256(data, len, d);
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* 0 if equal; the loop never exits early and has no data-dependent branch. */
static unsigned ct_diff(const uint8_t *a, const uint8_t *b, size_t n) {
    volatile unsigned acc = 0;
    for (size_t i = 0; i < n; i++) acc |= (unsigned)(a[i] ^ b[i]);
    return acc;
}

int fcgi_auth_check(const config *c, const char *authorization) {
    if (c->n_keys == 0) return 1;
    const char *key = "";
    if (authorization && !strncasecmp(authorization, "Bearer ", 7)) {
        key = authorization + 7;
        while (*key == ' ') key++;
    }
    return fcgi_auth_check_key(c, key);
}

int fcgi_auth_check_key(const config *c, const char *key) {
    if (c->n_keys == 0) return 1;
    if (!key) key = "";
    uint8_t d[32];
    sha256(key, strlen(key), d);
    unsigned ok = 0;
    for (int i = 0; i < c->n_keys; i++) ok |= ct_diff(d, c->key_sha256[i], 32) == 0;
    return ok && key[0];
}
