/* fuzz_config — libFuzzer target for the files an administrator hands sparkd: the INI
 * (appliance/base/config.c) and sha256sum manifests (appliance/base/sha256.c). An input
 * starting with byte 0x01 is a manifest (the rest of it), anything else an INI file.
 * Either loads or fails with "f:LINE: reason"; what loads must load again to the same
 * values (the parsers keep no state between calls).
 * Run: tests/fuzz/run_fuzz.sh fuzz_config SECONDS */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "sha256.h"

static void manifest(const uint8_t *data, size_t size) {
    sha256_manifest *a = NULL, *b = NULL;
    err e = {0};
    int rc = sha256_manifest_parse(&a, (const char *)data, size, "f", "/d", &e);
    if (rc) {
        if (a || rc != ERR_FORMAT || strncmp(e.msg, "f:", 2)) abort();
        return;
    }
    if (sha256_manifest_parse(&b, (const char *)data, size, "f", "/d", &e) || a->n != b->n) abort();
    for (int i = 0; i < a->n; i++) {
        if (memcmp(a->entries[i].digest, b->entries[i].digest, 32) || strcmp(a->entries[i].path, b->entries[i].path))
            abort();
        if (sha256_manifest_find(a, a->entries[i].path) == NULL) abort();
    }
    sha256_manifest_free(a);
    sha256_manifest_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size && data[0] == 1) {
        manifest(data + 1, size - 1);
        return 0;
    }
    config a, b;
    err e = {0};
    config_defaults(&a);
    int rc = config_load_text(&a, (const char *)data, size, "f.ini", "/etc/sparkd", &e);
    if (rc) {
        if (rc != ERR_FORMAT || strncmp(e.msg, "f.ini:", 6)) abort();
        return 0;
    }
    config_defaults(&b);
    if (config_load_text(&b, (const char *)data, size, "f.ini", "/etc/sparkd", &e)) abort();
    if (memcmp(&a, &b, sizeof a)) abort();
    config_check(&a, &e);
    return 0;
}
