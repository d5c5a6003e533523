/* sysmem.h — how much memory the host can really give us.
 *
 * On GB10 CPU and GPU share one pool, and cudaMemGetInfo ignores reclaimable
 * page cache, so sizes are planned from /proc/meminfo: MemAvailable (which
 * counts reclaimable cache) plus SwapFree, as llama.cpp does there. Used before
 * every large allocation made at start (weights, KV cache); nothing allocates
 * large buffers later. */
#ifndef SPARKD_SYSMEM_H
#define SPARKD_SYSMEM_H

#include <stdint.h>

#include "err.h"

/* Bytes available now (MemAvailable + SwapFree). ERR_IO if /proc/meminfo is unreadable. */
int sysmem_available(uint64_t *bytes, err *e);

/* 0 if `need` bytes fit in what is available, else ERR_NOMEM with a message
 * naming `what`, the need and the availability. If /proc/meminfo cannot be read
 * the check passes (nothing to compare with). SPARKD_IGNORE_MEMCHECK=1 skips it. */
int sysmem_check(uint64_t need, const char *what, err *e);

#endif
