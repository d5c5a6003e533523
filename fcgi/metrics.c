/* metrics.c — counters and histograms, rendered in Prometheus' text format
 * (version 0.0.4). Counters are C11 atomics: workers update them without a
 * lock; a scrape reads each value once (a scrape may see a histogram whose
 * buckets and count differ by an in-flight observation, which Prometheus
 * tolerates). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fcgi.h"

/* Status codes we count; anything else lands in "other". */
static const int status_codes[FCGI_NSTATUS] = {200, 400, 401, 404, 405, 413, 429, 500, 503, 0};
static const char *error_types[8] = {"invalid_request_error", "authentication_error", "not_found_error",
                                     "rate_limit_error", "server_error", "client_gone", "other", NULL};

/* seconds; time to first token spans prefill (long on CPU), inter-token a step */
static const double ttft_le[FCGI_HIST_BUCKETS] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160};
static const double itl_le[FCGI_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1};
static const double e2e_le[FCGI_HIST_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640};

void fcgi_metrics_init(fcgi_metrics *m) {
    memset(m, 0, sizeof *m);
    m->ttft.le = ttft_le;
    m->itl.le = itl_le;
    m->e2e.le = e2e_le;
}

void fcgi_metrics_status(fcgi_metrics *m, int status) {
    int i = 0;
    while (i < FCGI_NSTATUS - 1 && status_codes[i] != status) i++;
    atomic_fetch_add(&m->requests[i], 1);
}

void fcgi_metrics_error(fcgi_metrics *m, const char *type) {
    int i = 0;
    while (error_types[i] && strcmp(error_types[i], type)) i++;
    if (!error_types[i]) i = 6;
    atomic_fetch_add(&m->errors[i], 1);
}

void fcgi_hist_observe(fcgi_hist *h, double s) {
    int i = 0;
    while (i < FCGI_HIST_BUCKETS && s > h->le[i]) i++;
    atomic_fetch_add(&h->count[i], 1);
    atomic_fetch_add(&h->n, 1);
    atomic_fetch_add(&h->sum_us, (uint64_t)(s > 0 ? s * 1e6 : 0));
}

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...) {
    if (b->n >= b->cap) return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    if (w > 0) b->n += (size_t)w < b->cap - b->n ? (size_t)w : b->cap - b->n - 1;
}

static void hist(sbuf *b, const char *name, const char *help, const fcgi_hist *h) {
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    long cum = 0;
    for (int i = 0; i < FCGI_HIST_BUCKETS; i++) {
        cum += atomic_load(&h->count[i]);
        put(b, "%s_bucket{le=\"%g\"} %ld\n", name, h->le[i], cum);
    }
    cum += atomic_load(&h->count[FCGI_HIST_BUCKETS]);
    put(b, "%s_bucket{le=\"+Inf\"} %ld\n", name, cum);
    put(b, "%s_sum %.6f\n%s_count %ld\n", name, (double)atomic_load(&h->sum_us) * 1e-6, name, cum);
}

size_t fcgi_metrics_render(const fcgi_metrics *m, const sched_stats *st, int state, char *buf, size_t cap) {
    sbuf b = {buf, 0, cap};
    if (cap) buf[0] = 0;
    put(&b, "# HELP sparkd_requests_total HTTP requests answered, by status code.\n"
            "# TYPE sparkd_requests_total counter\n");
    for (int i = 0; i < FCGI_NSTATUS; i++) {
        if (status_codes[i]) put(&b, "sparkd_requests_total{code=\"%d\"} %ld\n", status_codes[i], atomic_load(&m->requests[i]));
        else put(&b, "sparkd_requests_total{code=\"other\"} %ld\n", atomic_load(&m->requests[i]));
    }
    put(&b, "# HELP sparkd_errors_total Error responses and aborted requests, by type.\n"
            "# TYPE sparkd_errors_total counter\n");
    for (int i = 0; error_types[i]; i++)
        put(&b, "sparkd_errors_total{type=\"%s\"} %ld\n", error_types[i], atomic_load(&m->errors[i]));
    put(&b, "# HELP sparkd_prompt_tokens_total Prompt tokens of admitted requests.\n"
            "# TYPE sparkd_prompt_tokens_total counter\nsparkd_prompt_tokens_total %ld\n", atomic_load(&m->prompt_tokens));
    put(&b, "# HELP sparkd_generation_tokens_total Tokens generated.\n"
            "# TYPE sparkd_generation_tokens_total counter\nsparkd_generation_tokens_total %ld\n",
        atomic_load(&m->generated_tokens));
    put(&b, "# HELP sparkd_requests_cancelled_total Generations cancelled (client gone or stop string).\n"
            "# TYPE sparkd_requests_cancelled_total counter\nsparkd_requests_cancelled_total %ld\n",
        atomic_load(&m->cancelled));
    put(&b, "# HELP sparkd_client_gone_total Streams whose client disconnected before the end.\n"
            "# TYPE sparkd_client_gone_total counter\nsparkd_client_gone_total %ld\n", atomic_load(&m->client_gone));
    put(&b, "# HELP sparkd_requests_cut_total Generations that could not finish, by why (their clients got an error).\n"
            "# TYPE sparkd_requests_cut_total counter\nsparkd_requests_cut_total{reason=\"drain\"} %ld\n"
            "sparkd_requests_cut_total{reason=\"engine\"} %ld\n", atomic_load(&m->cut_drain), atomic_load(&m->cut_engine));
    hist(&b, "sparkd_time_to_first_token_seconds", "Request submit to first generated token.", &m->ttft);
    hist(&b, "sparkd_inter_token_latency_seconds", "Time between consecutive tokens of a request.", &m->itl);
    hist(&b, "sparkd_request_duration_seconds", "Submit to the last event of a generation.", &m->e2e);
    put(&b, "# HELP sparkd_queue_depth Requests waiting for a slot.\n# TYPE sparkd_queue_depth gauge\n"
            "sparkd_queue_depth %ld\n", st ? st->queued : 0);
    put(&b, "# HELP sparkd_running_requests Sequences being decoded.\n# TYPE sparkd_running_requests gauge\n"
            "sparkd_running_requests %ld\n", st ? st->running : 0);
    put(&b, "# HELP sparkd_kv_used_blocks KV cache blocks referenced by running sequences.\n# TYPE sparkd_kv_used_blocks gauge\n"
            "sparkd_kv_used_blocks %ld\n", st ? st->kv_used : 0);
    put(&b, "# HELP sparkd_kv_cached_blocks Unreferenced KV blocks kept for prefix reuse.\n# TYPE sparkd_kv_cached_blocks gauge\n"
            "sparkd_kv_cached_blocks %ld\n", st ? st->kv_cached : 0);
    put(&b, "# HELP sparkd_kv_total_blocks KV cache blocks in the pool.\n# TYPE sparkd_kv_total_blocks gauge\n"
            "sparkd_kv_total_blocks %ld\n", st ? st->kv_total : 0);
    put(&b, "# HELP sparkd_kv_usage_ratio Fraction of the KV pool referenced by running sequences.\n# TYPE sparkd_kv_usage_ratio gauge\n"
            "sparkd_kv_usage_ratio %g\n", st && st->kv_total ? (double)st->kv_used / (double)st->kv_total : 0.0);
    put(&b, "# HELP sparkd_prefix_cache_hit_tokens_total Prompt tokens found in the prefix cache.\n"
            "# TYPE sparkd_prefix_cache_hit_tokens_total counter\nsparkd_prefix_cache_hit_tokens_total %ld\n",
        st ? st->prefix_hit_tokens : 0);
    put(&b, "# HELP sparkd_prefix_cache_miss_tokens_total Prompt tokens computed.\n"
            "# TYPE sparkd_prefix_cache_miss_tokens_total counter\nsparkd_prefix_cache_miss_tokens_total %ld\n",
        st ? st->prefix_miss_tokens : 0);
    put(&b, "# HELP sparkd_preemptions_total Sequences preempted when the KV pool ran out.\n"
            "# TYPE sparkd_preemptions_total counter\nsparkd_preemptions_total %ld\n", st ? st->preemptions : 0);
    put(&b, "# HELP sparkd_engine_steps_total Forward steps run by the scheduler.\n# TYPE sparkd_engine_steps_total counter\n"
            "sparkd_engine_steps_total %ld\n", st ? st->steps : 0);
    put(&b, "# HELP sparkd_engine_batched_sequences_total Sequences summed over forward steps (mean batch size = this / steps).\n"
            "# TYPE sparkd_engine_batched_sequences_total counter\nsparkd_engine_batched_sequences_total %ld\n",
        st ? st->batched_seqs_total : 0);
    put(&b, "# HELP sparkd_ready 1 when serving, 0 while loading or draining.\n# TYPE sparkd_ready gauge\n"
            "sparkd_ready %d\n", state == FCGI_READY);
    return b.n;
}
