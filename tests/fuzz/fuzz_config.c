/* fuzz_config — libFuzzer target for the INI reader (appliance/base/config.c).
 * The input is an INI file; it must load or fail with "NAME:LINE: reason", and a
 * file that loads must load again to the same values (the parser keeps no state
 * between calls). Run: tests/fuzz/run_fuzz.sh fuzz_config SECONDS */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
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
