/* sysmem.c — see sysmem.h. */
#include "sysmem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sysmem_available(uint64_t *bytes, err *e) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return err_set(e, ERR_IO, "cannot read /proc/meminfo");
    char line[256];
    unsigned long long avail = 0, swap = 0, v;
    int have = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemAvailable: %llu kB", &v) == 1) { avail = v; have = 1; }
        else if (sscanf(line, "SwapFree: %llu kB", &v) == 1) swap = v;
    }
    fclose(f);
    if (!have) return err_set(e, ERR_IO, "/proc/meminfo has no MemAvailable");
    *bytes = (uint64_t)(avail + swap) * 1024u;
    return 0;
}

int sysmem_check(uint64_t need, const char *what, err *e) {
    const char *skip = getenv("SPARKD_IGNORE_MEMCHECK");
    if (skip && !strcmp(skip, "1")) return 0;
    uint64_t avail;
    if (sysmem_available(&avail, NULL)) return 0;
    if (need <= avail) return 0;
    return err_set(e, ERR_NOMEM, "%s needs %.2f GB but only %.2f GB is available (MemAvailable + SwapFree)",
                   what, (double)need / 1e9, (double)avail / 1e9);
}
