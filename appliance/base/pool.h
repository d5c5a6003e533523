/* pool.h — a fixed set of worker threads that run one parallel function at a
 * time (fork/join), created once at start. The caller's thread is worker 0.
 *
 * Workers spin briefly for the next job (so back-to-back small ops in the
 * forward pass don't pay a futex round trip), then sleep on a condition
 * variable, so an idle server burns no CPU. */
#ifndef SPARKD_POOL_H
#define SPARKD_POOL_H

typedef struct pool pool;

/* fn(arg, ith, nth): ith in [0, nth). */
typedef void (*pool_fn)(void *arg, int ith, int nth);

/* n_threads >= 1 (1 = run everything on the caller). NULL on failure. */
pool *pool_create(int n_threads);
void pool_free(pool *p);
int pool_size(const pool *p);
/* Runs fn on every thread and returns when all have finished. */
void pool_run(pool *p, pool_fn fn, void *arg);

/* Splits [0, n) into nth nearly equal parts aligned to `align`; part ith. */
void pool_split(long n, int ith, int nth, long align, long *lo, long *hi);

#endif
