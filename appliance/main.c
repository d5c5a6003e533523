/* main.c — the sparkd command line: the subcommands. Their options are one table in
 * cli.c (getopt_long; `sparkd CMD --help` lists each command's):
 *
 *   sparkd run   -m MODEL -p TEXT [-n N] [sampling...]   stream a continuation to stdout
 *   sparkd info  -m MODEL [-c CTX] [--parallel N]        describe a model and its memory plan
 *   sparkd bench -m MODEL [-p N] [-n N] [-r N] [--npl LIST] [--depth N]   prompt / generation tok/s
 *   sparkd serve [--config FILE] [options]               the FastCGI responder (fcgi/)
 *   sparkd verify --manifest SHA256SUMS [FILE...]         check files against a manifest
 *   sparkd device | selftest                             the GPU (CUDA builds)
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#ifdef SPARKD_CUDA
#include "cuda.h"
#include "cuda_moe.h"
#include "cuda_kern.h"
#include "tp.h"
#endif
#include "engine.h"
#include "fcgi.h"
#include "quant.h"
#include "sampler.h"
#include "session.h"
#include "sha256.h"
#include "tok.h"

#define SPARKD_VERSION "0.1.0"

typedef struct cli_opts {
    const char *model_path;
    const char *prompt;
    int n_predict;
    int n_threads;
    int n_ctx;
    int batch;
    int use_mmap;
    int print_ids;
    int no_bos;
    int special;   /* parse special tokens in the prompt, print control tokens */
    int ignore_eos;
    int bench_pp, bench_tg, bench_reps;
    const char *bench_npl; /* bench --npl LIST */
    int bench_depth;       /* bench --depth N */
    int load_only; /* bench: time the weight load only */
    int max_seqs;  /* info: sequences the plan is for (default 1) */
    uint64_t memory_limit; /* info: bytes the plan must fit (0 = none) */
    engine_kv_type kv_type;
    engine_precision precision;
    const char *device;
    sampler_params sp;
} cli_opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

/* run / info / bench: their defaults, then what the command line gave. */
static int opts_from_cli(const cli_args *a, cli_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_predict = 64;
    o->n_threads = default_threads();
    o->batch = 256;
    o->bench_pp = 128;
    o->bench_tg = 64;
    o->bench_reps = 3;
    sampler_default_params(&o->sp);
    o->sp.temperature = 0.8f;
    o->sp.seed = (uint64_t)time(NULL);
    o->device = "cpu";
    o->model_path = a->model;
    o->prompt = a->prompt;
    if (a->has_n_predict) o->n_predict = o->bench_tg = a->n_predict;
    if (a->has_n_prompt) o->bench_pp = a->n_prompt;
    if (a->has_reps) o->bench_reps = a->reps;
    o->bench_npl = a->npl;
    if (a->has_depth) o->bench_depth = a->depth;
    if (a->has_threads) o->n_threads = a->threads;
    if (a->has_ctx) o->n_ctx = a->ctx;
    if (a->has_batch) o->batch = a->batch;
    if (a->has_parallel) o->max_seqs = a->parallel;
    if (a->has_memory_limit_mb) o->memory_limit = (uint64_t)a->memory_limit_mb << 20;
    if (a->has_temp) o->sp.temperature = a->temp;
    if (a->has_top_k) o->sp.top_k = a->top_k;
    if (a->has_top_p) o->sp.top_p = a->top_p;
    if (a->has_min_p) o->sp.min_p = a->min_p;
    if (a->has_repeat_penalty) o->sp.repetition_penalty = a->repeat_penalty;
    if (a->has_presence_penalty) o->sp.presence_penalty = a->presence_penalty;
    if (a->has_frequency_penalty) o->sp.frequency_penalty = a->frequency_penalty;
    if (a->has_seed) o->sp.seed = a->seed;
    o->use_mmap = a->use_mmap;
    o->load_only = a->load_only;
    o->print_ids = a->print_ids;
    o->no_bos = a->no_bos;
    o->special = a->special;
    o->ignore_eos = a->ignore_eos;
    /* -ngl N (llama.cpp): N > 0 = the GPU when there is one; --device wins if both */
    if (a->has_gpu_layers) o->device = a->gpu_layers > 0 ? "auto" : "cpu";
    if (a->device) o->device = a->device;
    if (a->kv) {
        int t = engine_kv_type_parse(a->kv);
        if (t < 0) { fprintf(stderr, "error: bad value '%s' for --kv (f32, f16, q8, bf16, fp8)\n", a->kv); return -1; }
        o->kv_type = (engine_kv_type)t;
    }
    if (a->precision) o->precision = (engine_precision)engine_precision_parse(a->precision);
    if (!o->model_path) {
        fprintf(stderr, "error: -m MODEL is required (sparkd %s --help)\n", cli_command_name(a->cmd));
        return -1;
    }
    return 0;
}

/* The session the CLI commands share: one sequence, the flags' engine options. */
static int open_session(session **out, const cli_opts *o, int header_only, int tokenizer, err *e) {
    struct stat st;
    int big = stat(o->model_path, &st) == 0 && st.st_size > (1ll << 30);
    session_opts so;
    session_defaults(&so);
    so.model_path = o->model_path;
    so.use_mmap = o->use_mmap;
    so.progress = !header_only && (big || isatty(2));
    so.header_only = header_only;
    so.device = o->device;
    so.n_threads = o->n_threads;
    so.n_ctx = o->n_ctx;
    so.max_tokens = o->batch;
    so.kv_type = o->kv_type;
    so.precision = o->precision;
    if (o->max_seqs) so.max_seqs = o->max_seqs;
    so.memory_limit = o->memory_limit;
    so.tokenizer = tokenizer;
    return session_open(out, &so, e);
}

static int cmd_info(const cli_opts *o) {
    err e = {0};
    session *s;
    if (open_session(&s, o, 1, 1, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    const model *m = s->m;
    const model_hparams *hp = &m->hp;
    const char *name = NULL;
    uint64_t nlen = 0;
    if (model_meta_str(m, "general.name", &name, &nlen, NULL)) { name = "?"; nlen = 1; }
    printf("model          %.*s\n", (int)(nlen > 80 ? 80 : nlen), name);
    printf("architecture   %s\n", m->arch_name);
    printf("gguf           v%u, %" PRId64 " tensors, %" PRId64 " metadata keys, %.1f MB\n",
           gguf_version(m->gguf), gguf_tensor_count(m->gguf), gguf_kv_count(m->gguf),
           (double)gguf_file_size(m->gguf) / 1e6);
    printf("vocab          %d\n", hp->n_vocab);
    printf("dim            %d\n", hp->dim);
    int n_window = 0, window = 0;
    for (int il = 0; il < hp->n_layer; il++)
        if (m->layers[il].mixer == MODEL_MIXER_ATTENTION && m->layers[il].attn.window) {
            n_window++;
            window = m->layers[il].attn.window;
        }
    printf("layers         %d", hp->n_layer);
    if (n_window) printf(" (%d with a sliding window of %d, %d global)", n_window, window, hp->n_layer - n_window);
    printf("\nheads          %d query, %d key/value, head dim %d\n", hp->n_head, hp->n_head_kv, hp->head_dim);
    const char *act =
        hp->act == MODEL_ACT_GELU_TANH ? "GeGLU tanh" : hp->act == MODEL_ACT_SWIGLU_OAI ? "SwiGLU (gpt-oss)" : "SwiGLU";
    const model_moe *moe = NULL;
    for (int il = 0; il < hp->n_layer && !moe; il++)
        if (m->layers[il].ffn == MODEL_FFN_MOE) moe = &m->layers[il].moe;
    if (moe)
        printf("ffn            mixture of experts: %d of %d experts of %d, %s, %s\n", moe->n_used, moe->n_expert,
               moe->ffn_dim,
               moe->gating == MODEL_MOE_TOPK_SOFTMAX ? "softmax over the top-k logits"
               : moe->norm_topk                     ? "top-k of the softmax, renormalized"
                                                    : "top-k of the softmax",
               act);
    else
        printf("ffn            %d (%s)\n", hp->ffn_dim, act);
    printf("context        %d trained\n", hp->ctx_train);
    for (int r = 0; r < m->n_rope; r++) {
        const model_rope *R = &m->rope[r];
        printf("rope %d         %s, base %g", r, R->style == MODEL_ROPE_NEOX ? "neox" : "norm", (double)R->base);
        if (R->scaling != MODEL_ROPE_SCALE_NONE)
            printf(", %s x%g", R->scaling == MODEL_ROPE_SCALE_LINEAR ? "linear" : "yarn", (double)R->factor);
        if (R->freq_factors) printf(", per-dim frequency factors");
        if (m->n_rope > 1) printf(r == 0 ? " (global layers)" : " (sliding-window layers)");
        printf("\n");
    }
    printf("norm eps       %g\n", (double)hp->norm_eps);
    printf("output         %s\n", m->output == m->token_embd ? "tied to token_embd" : "separate");

    /* tensors by type */
    uint64_t count[QUANT_TYPE_LIMIT] = {0}, bytes[QUANT_TYPE_LIMIT] = {0}, params = 0;
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        count[t->dtype]++;
        bytes[t->dtype] += t->nbytes;
        uint64_t n = 1;
        for (int d = 0; d < t->n_dims; d++) n *= (uint64_t)t->ne[d];
        params += n;
    }
    printf("parameters     %.1f M\n", (double)params / 1e6);
    printf("tensor types  ");
    for (int t = 0; t < QUANT_TYPE_LIMIT; t++)
        if (count[t]) printf(" %s x%" PRIu64 " (%.1f MB)", quant_traits_of((uint32_t)t)->name, count[t], (double)bytes[t] / 1e6);
    printf("\n");
    const engine_plan *p = &s->plan;
    const engine_opts *eo = &s->eopts;
    printf("KV cache       %.1f KB/token (%s: %d attention layers x 2 x %d heads x %d dims), %.1f MB at context %d",
           (double)p->kv_bytes_per_token / 1e3, engine_kv_type_name(eo->kv_type), model_n_kv_layers(m), hp->n_head_kv,
           hp->head_dim, (double)p->kv_bytes_per_token * eo->n_ctx / 1e6, eo->n_ctx);
    if (eo->max_seqs > 1)
        printf(" x %d sequences = %.1f MB", eo->max_seqs, (double)p->kv_bytes_per_token * eo->n_ctx * eo->max_seqs / 1e6);
    printf("\n");
    if (n_window && window < eo->n_ctx) {
        /* the paged pool keeps every position of every attention layer */
        const double per_layer = (double)p->kv_bytes_per_token / model_n_kv_layers(m);
        printf("               (the %d sliding-window layers keep all %d positions in the pool; kept to their window "
               "they would take %.1f MB instead of %.1f MB)\n",
               n_window, eo->n_ctx, per_layer * n_window * window * eo->max_seqs / 1e6,
               per_layer * n_window * eo->n_ctx * eo->max_seqs / 1e6);
    }
    printf("engine plan    %s, %d thread%s, %d sequence%s, batch %d: weights %.1f MB + KV %.1f MB (%d blocks of %d)\n"
           "               + state %.1f MB + buffers %.1f MB = %.1f MB",
           s->ops->name, eo->n_threads, eo->n_threads == 1 ? "" : "s", eo->max_seqs, eo->max_seqs == 1 ? "" : "s",
           eo->max_tokens, (double)p->weights_bytes / 1e6, (double)p->kv_bytes / 1e6, p->n_kv_blocks, p->kv_block,
           (double)p->state_bytes / 1e6, (double)p->work_bytes / 1e6, (double)p->total_bytes / 1e6);
    if (p->available_from) printf("; %.1f MB free (%s)", (double)p->available_bytes / 1e6, p->available_from);
    printf("\n");
    if (s->plan_err.code) printf("               refused: %s\n", s->plan_err.msg);
    if (eo->memory_limit)
        printf("memory limit   %.1f MB: the plan %s (%.1f MB %s)\n", (double)eo->memory_limit / 1e6,
               p->total_bytes <= eo->memory_limit ? "fits" : "does not fit",
               (double)(p->total_bytes <= eo->memory_limit ? eo->memory_limit - p->total_bytes
                                                           : p->total_bytes - eo->memory_limit) / 1e6,
               p->total_bytes <= eo->memory_limit ? "to spare" : "over");
    if (!s->tk) {
        printf("tokenizer      error: %s\n", s->tok_err.msg);
        session_close(s);
        return 1;
    }
    printf("tokenizer      %d tokens, bos %d, eos %d\n", tok_vocab_size(s->tk), tok_bos(s->tk), tok_eos(s->tk));
    session_close(s);
    return 0;
}

/* Blocks [0, n) in order: the whole pool is the one sequence's (max_seqs = 1). */
static int32_t *identity_blocks(const session *s) {
    int32_t *b = malloc(sizeof(int32_t) * (size_t)s->plan.n_kv_blocks);
    if (b)
        for (int i = 0; i < s->plan.n_kv_blocks; i++) b[i] = i;
    return b;
}

/* Feeds tokens[0..n) at position pos in chunks of the engine's max_tokens; the
 * last chunk's logits are kept (forward entry 0). */
static int prefill(session *s, const int32_t *blocks, const int32_t *tokens, int n, int pos, err *e) {
    int done = 0;
    while (done < n) {
        int chunk = n - done < s->eopts.max_tokens ? n - done : s->eopts.max_tokens;
        engine_seq q = {.tokens = tokens + done, .n = chunk, .pos = pos + done, .blocks = blocks, .slot = 0,
                        .want = done + chunk == n ? ENGINE_WANT_LOGITS : 0};
        int rc = s->ops->forward(s->eng, &q, 1, e);
        if (rc) return rc;
        done += chunk;
    }
    return 0;
}

/* Samples the next token of forward entry 0 (slot 0) with the host RNG's draw. */
static int next_token(session *s, const sampler_params *sp, sampler_rng *rng, int32_t *id, err *e) {
    engine_sample_in in = {.seq = 0, .sp = sp, .u = sampler_rng_next(rng)};
    engine_sample_out out;
    int rc = s->ops->sample(s->eng, &in, 1, &out, e);
    if (!rc) rc = s->ops->slot_accept(s->eng, 0, out.token, e);
    *id = out.token;
    return rc;
}

static int cmd_run(const cli_opts *o) {
    err e = {0};
    if (!o->prompt) { fprintf(stderr, "error: -p TEXT is required\n"); return 1; }
    if (sampler_check_params(&o->sp, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    session *s;
    if (open_session(&s, o, 0, 1, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    const int n_ctx = s->n_ctx;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n_ctx);
    int32_t *blocks = identity_blocks(s);
    char *buf = malloc(4096);
    int rc = 1;
    if (!ids || !buf || !blocks) { fprintf(stderr, "error: out of memory\n"); goto done; }
    int n = tok_encode(s->tk, o->prompt, strlen(o->prompt), !o->no_bos, o->special, ids, n_ctx, &e);
    if (n < 0) { fprintf(stderr, "error: %s\n", e.msg); goto done; }
    if (n == 0) { fprintf(stderr, "error: the prompt encodes to no tokens\n"); goto done; }
    if (n >= n_ctx) { fprintf(stderr, "error: prompt has %d tokens, context is %d\n", n, n_ctx); goto done; }
    if (o->print_ids) {
        fprintf(stderr, "prompt ids:");
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    sampler_rng rng;
    sampler_rng_seed(&rng, o->sp.seed);
    if (s->ops->slot_reset(s->eng, 0, ids, n, &e)) { fprintf(stderr, "error: %s\n", e.msg); goto done; }
    fputs(o->prompt, stdout);
    fflush(stdout);
    double t0 = now_s();
    if (prefill(s, blocks, ids, n, 0, &e)) { fprintf(stderr, "\nerror: %s\n", e.msg); goto done; }
    double t1 = now_s();
    tok_stream ts;
    tok_stream_init(&ts);
    int pos = n, gen = 0;
    if (o->print_ids) fprintf(stderr, "generated ids:");
    while (gen < o->n_predict && pos < n_ctx) {
        int32_t id;
        if (next_token(s, &o->sp, &rng, &id, &e)) { fprintf(stderr, "\nerror: %s\n", e.msg); goto done; }
        gen++;
        if (o->print_ids) fprintf(stderr, " %d", id);
        if (!o->ignore_eos && tok_is_eog(s->tk, id)) break;
        size_t w = tok_stream_feed(s->tk, &ts, id, buf, 4096);
        fwrite(buf, 1, w, stdout);
        fflush(stdout);
        if (gen == o->n_predict || pos + 1 >= n_ctx) break;
        if (prefill(s, blocks, &id, 1, pos, &e)) { fprintf(stderr, "\nerror: %s\n", e.msg); goto done; }
        pos++;
    }
    size_t w = tok_stream_flush(&ts, buf, 4096);
    fwrite(buf, 1, w, stdout);
    fputc('\n', stdout);
    double t2 = now_s();
    if (o->print_ids) fprintf(stderr, "\n");
    fprintf(stderr, "prompt %d tokens in %.3f s (%.1f tok/s); generated %d tokens in %.3f s (%.1f tok/s); %d threads\n",
            n, t1 - t0, n / (t1 - t0), gen, t2 - t1, gen > 0 ? gen / (t2 - t1) : 0.0, s->eopts.n_threads);
    rc = 0;
done:
    free(ids);
    free(buf);
    free(blocks);
    session_close(s);
    return rc;
}

static void mean_sd(const double *v, int n, double *mean, double *sd) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) ss += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
}

/* Weight load throughput: the whole data section read into its final buffer
 * (pread, or mmap + first touch with --mmap), timed. */
static int bench_load(const cli_opts *o) {
    err e = {0};
    double t0 = now_s();
    model *m;
    model_load_opts lo = {.use_mmap = o->use_mmap};
    if (model_load(&m, o->model_path, &lo, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    volatile uint8_t sink = 0;
    if (m->weights_mapped) /* a mapping costs nothing until touched: touch every page */
        for (int64_t i = 0; i < m->n_tensors; i++) {
            const model_tensor *t = &m->tensors[i];
            for (uint64_t b = 0; b < t->nbytes; b += 4096) sink ^= ((const uint8_t *)t->data)[b];
        }
    double dt = now_s() - t0;
    (void)sink;
    printf("load: %.3f GB in %.3f s = %.2f GB/s (%s)\n", (double)m->weights_bytes / 1e9, dt,
           (double)m->weights_bytes / 1e9 / dt, m->weights_mapped ? "mmap + touch" : "pread");
    model_free(m);
    return 0;
}

/* bench --npl LIST / --depth N: for each B in LIST, B sequences (slots 0..B-1) read a
 * prompt of -p tokens each (S_PP = B * p / time) and then generate -n tokens together, one
 * forward of B tokens per step (S_TG = B * n / time), as llama-batched-bench reports them.
 * With --depth D the sequences instead generate after D positions of context that all of
 * them share (the same KV blocks in every block table, as the prefix cache shares them;
 * llama-batched-bench -pps): on the GPU that context is filled with random K/V rather than
 * prefilled (the time of a decode step does not depend on what the cache holds), on the
 * CPU it is prefilled. One untimed step comes before each timed run (graph capture). */
static int bench_parallel(const cli_opts *o) {
    err e = {0};
    int npl[16], n_npl = 0, bmax = 1;
    const char *c = o->bench_npl ? o->bench_npl : "1";
    while (*c) {
        char *end;
        long v = strtol(c, &end, 10);
        if (end == c || v < 1 || v > 1024 || n_npl == 16 || (*end && *end != ',')) {
            fprintf(stderr, "error: bad --npl list '%s' (up to 16 counts 1..1024, comma-separated)\n", o->bench_npl);
            return 2;
        }
        npl[n_npl++] = (int)v;
        if (v > bmax) bmax = (int)v;
        c = *end ? end + 1 : end;
    }
    const int P = o->bench_pp, N = o->bench_tg > 0 ? o->bench_tg : 1;
    cli_opts oo = *o;
    oo.sp.temperature = 0;
    oo.max_seqs = bmax;
    if (!oo.n_ctx) oo.n_ctx = o->bench_depth + 256 + (o->bench_depth ? 0 : P) + N + 2;
    if (oo.batch < bmax) oo.batch = bmax;
    if (!o->bench_depth && oo.batch < P) oo.batch = P;
    session *s;
    if (open_session(&s, &oo, 0, 0, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    const int kb = s->plan.kv_block, bps = s->plan.n_kv_blocks / bmax;
    const int D = (o->bench_depth + kb - 1) / kb * kb; /* whole shared blocks */
    const int base = D ? D : P;
    int rc = 1;
    int32_t *tables = malloc(sizeof(int32_t) * (size_t)bmax * bps);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(P > 0 ? P : 1) * bmax);
    int32_t *cur = malloc(sizeof(int32_t) * (size_t)bmax);
    engine_seq *seqs = malloc(sizeof(engine_seq) * (size_t)bmax);
    engine_sample_in *sin = malloc(sizeof(engine_sample_in) * (size_t)bmax);
    engine_sample_out *sout = malloc(sizeof(engine_sample_out) * (size_t)bmax);
    if (!tables || !ids || !cur || !seqs || !sin || !sout) { fprintf(stderr, "error: out of memory\n"); goto done; }
    if ((base + N + 1 + kb - 1) / kb > bps) {
        fprintf(stderr, "error: context %d too small for depth %d + %d tokens\n", s->n_ctx, base, N + 1);
        goto done;
    }
    for (int i = 0; i < bmax; i++)
        for (int b = 0; b < bps; b++) tables[(size_t)i * bps + b] = b < D / kb ? b : i * bps + b;
    {
        uint64_t x = 12345;
        for (int i = 0; i < (P > 0 ? P : 1) * bmax; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            ids[i] = (int32_t)((x >> 33) % (uint64_t)s->m->hp.n_vocab);
        }
    }
    printf("model: %s, engine: %s, kv: %s, prompt %d, generate %d, depth %d, precision: %s\n", s->m->arch_name,
           s->ops->name, engine_kv_type_name(s->eopts.kv_type), D ? 0 : P, N, D, engine_precision_name(s->eopts.precision));
    if (D) {
#ifdef SPARKD_CUDA
        if (s->ops == &engine_cuda_ops) {
            if (cuda_bench_fill_kv(s->eng, D / kb, 7, &e)) goto fail; /* the shared prefix's blocks */
        } else
#endif
        if (prefill(s, tables, ids, 1, 0, &e) || (D > 1 && prefill(s, tables, ids, 1, D - 1, &e))) goto fail;
        /* (the CPU engine: only the cache rows at 0 and D-1 are written; the rest is what
         * create left there — zeros — which costs the same to read) */
    }
    for (int k = 0; k < n_npl; k++) {
        const int B = npl[k];
        double t_pp = 0;
        if (!D) {
            /* prompts: B sequences of P tokens, packed into forwards of at most max_tokens */
            const double t0 = now_s();
            int *done = calloc((size_t)B, sizeof(int));
            if (!done) goto fail;
            for (int i0 = 0; i0 < B;) {
                int n = 0, used = 0;
                for (int i = i0; i < B && used < s->eopts.max_tokens; i++) {
                    int take = P - done[i];
                    if (take > s->eopts.max_tokens - used) take = s->eopts.max_tokens - used;
                    seqs[n] = (engine_seq){.tokens = ids + (size_t)i * P + done[i], .n = take, .pos = done[i],
                                           .blocks = tables + (size_t)i * bps, .slot = i,
                                           .want = done[i] + take == P ? ENGINE_WANT_LOGITS : 0};
                    done[i] += take;
                    used += take;
                    n++;
                }
                if (s->ops->forward(s->eng, seqs, n, &e)) { free(done); goto fail; }
                while (i0 < B && done[i0] == P) i0++;
            }
            free(done);
            t_pp = now_s() - t0;
        }
        for (int i = 0; i < B; i++) cur[i] = ids[i];
        double t_tg = 0;
        for (int step = -1; step < N; step++) {
            const double t0 = now_s();
            for (int i = 0; i < B; i++) {
                seqs[i] = (engine_seq){.tokens = &cur[i], .n = 1, .pos = base + step + 1,
                                       .blocks = tables + (size_t)i * bps, .slot = i, .want = ENGINE_WANT_LOGITS};
                sin[i] = (engine_sample_in){.seq = i, .sp = &oo.sp, .u = 0.5f};
            }
            if (s->ops->forward(s->eng, seqs, B, &e) || s->ops->sample(s->eng, sin, B, sout, &e)) goto fail;
            for (int i = 0; i < B; i++) cur[i] = sout[i].token;
            if (step >= 0) t_tg += now_s() - t0;
        }
        if (!D)
            printf("npl %d: pp %d x %d: %.1f tok/s (%.3f s); tg %d x %d: %.1f tok/s (%.3f ms/step)\n", B, P, B,
                   (double)P * B / t_pp, t_pp, N, B, (double)N * B / t_tg, 1e3 * t_tg / N);
        else
            printf("depth %d npl %d: tg %d x %d: %.1f tok/s (%.3f ms/step)\n", D, B, N, B, (double)N * B / t_tg,
                   1e3 * t_tg / N);
        fflush(stdout);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "error: %s\n", e.msg);
done:
    free(tables);
    free(ids);
    free(cur);
    free(seqs);
    free(sin);
    free(sout);
    session_close(s);
    return rc;
}

static int cmd_bench(const cli_opts *o) {
    err e = {0};
    if (o->load_only) return bench_load(o);
    if (o->bench_npl || o->bench_depth) return bench_parallel(o);
    cli_opts oo = *o;
    if (oo.batch < oo.bench_pp) oo.batch = oo.bench_pp;
    if (oo.batch < oo.max_seqs) oo.batch = oo.max_seqs;
    if (!oo.n_ctx) oo.n_ctx = oo.bench_pp + oo.bench_tg + 1;
    oo.sp.temperature = 0;
    session *s;
    if (open_session(&s, &oo, 0, 0, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)oo.bench_pp);
    int32_t *blocks = identity_blocks(s);
    double *pp = calloc((size_t)oo.bench_reps, sizeof(double)), *tg = calloc((size_t)oo.bench_reps, sizeof(double));
    sampler_rng rng;
    sampler_rng_seed(&rng, 0);
    int rc = 1;
    if (!ids || !pp || !tg || !blocks) goto done;
    uint64_t x = 12345;
    for (int i = 0; i < oo.bench_pp; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((x >> 33) % (uint64_t)s->m->hp.n_vocab);
    }
    /* warm-up: one small forward */
    if (prefill(s, blocks, ids, oo.bench_pp < 8 ? oo.bench_pp : 8, 0, &e)) goto fail;
    for (int r = 0; r < oo.bench_reps; r++) {
        double t0 = now_s();
        if (prefill(s, blocks, ids, oo.bench_pp, 0, &e)) goto fail;
        pp[r] = oo.bench_pp / (now_s() - t0);
        int32_t id = ids[0];
        t0 = now_s();
        for (int i = 0; i < oo.bench_tg; i++) {
            if (prefill(s, blocks, &id, 1, i, &e)) goto fail;
            if (next_token(s, &oo.sp, &rng, &id, &e)) goto fail;
        }
        tg[r] = oo.bench_tg / (now_s() - t0);
    }
    double m1, s1, m2, s2;
    mean_sd(pp, oo.bench_reps, &m1, &s1);
    mean_sd(tg, oo.bench_reps, &m2, &s2);
    printf("model: %s, engine: %s, threads: %d, kv: %s, reps: %d, precision: %s\n", s->m->arch_name, s->ops->name,
           s->eopts.n_threads, engine_kv_type_name(s->eopts.kv_type), oo.bench_reps,
           engine_precision_name(s->eopts.precision));
    printf("pp%d: %.2f ± %.2f tok/s\n", oo.bench_pp, m1, s1);
    printf("tg%d: %.2f ± %.2f tok/s\n", oo.bench_tg, m2, s2);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "error: %s\n", e.msg);
done:
    free(ids);
    free(blocks);
    free(pp);
    free(tg);
    session_close(s);
    return rc;
}

/* serve on a tensor-parallel rank > 0: no front end; load the model, join rank 0's
 * group, run the steps it sends until it says goodbye or goes away. */
static int serve_follower(const config *c) {
#ifdef SPARKD_CUDA
    err e = {0};
    session_opts so;
    session_opts_from_config(&so, c);
    so.tokenizer = so.chat = so.scheduler = 0;
    so.progress = 0;
    uint8_t want[32];
    int have = 0;
    if (config_model_digest(c, want, &have, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    if (have) so.model_sha256 = want;
    fprintf(stderr, "sparkd: tensor parallel rank %d of %d: loading %s, then joining %s\n", c->parallel.rank,
            c->parallel.size, c->model_path, c->parallel.addr);
    session *s;
    if (session_open(&s, &so, &e)) { fprintf(stderr, "sparkd: tensor parallel rank %d: start failed: %s\n", c->parallel.rank, e.msg); return 1; }
    fprintf(stderr, "sparkd: tensor parallel rank %d: ready, following rank 0\n", c->parallel.rank);
    int rc = engine_tp_follow(s->eng, &e);
    if (rc) fprintf(stderr, "sparkd: tensor parallel rank %d: stopped: %s\n", c->parallel.rank, e.msg);
    session_close(s);
    return rc ? 1 : 0;
#else
    fprintf(stderr, "error: [parallel] rank %d: this sparkd was built without CUDA (tensor parallel needs it)\n",
            c->parallel.rank);
    return 1;
#endif
}

/* serve: the INI file first, then the flags given over it. */
static int cmd_serve(const cli_args *a) {
    config c;
    config_defaults(&c);
    err e = {0};
    if (a->config && config_load(&c, a->config, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
#define SET_STR(dst, v, what)                                                                        \
    do {                                                                                             \
        if ((size_t)snprintf(dst, sizeof dst, "%s", v) >= sizeof dst) {                              \
            fprintf(stderr, "error: %s: longer than %zu bytes\n", what, sizeof dst - 1);             \
            return 2;                                                                                \
        }                                                                                            \
    } while (0)
    if (a->model) SET_STR(c.model_path, a->model, "--model");
    if (a->listen) SET_STR(c.listen, a->listen, "--listen");
    if (a->has_port) {
        char hp[CONFIG_PATH_MAX];
        snprintf(hp, sizeof hp, "%s:%d", a->host ? a->host : "127.0.0.1", a->port);
        SET_STR(c.listen, hp, "--host");
    }
    if (a->alias) SET_STR(c.model_id, a->alias, "--alias");
    if (a->chat_template_file) SET_STR(c.chat_template_file, a->chat_template_file, "--chat-template-file");
    if (a->manifest) SET_STR(c.model_manifest, a->manifest, "--manifest");
    if (a->has_gpu_layers) SET_STR(c.device, a->gpu_layers > 0 ? "auto" : "cpu", "-ngl");
    if (a->device) SET_STR(c.device, a->device, "--device");
#undef SET_STR
    if (a->has_threads) c.threads = a->threads;
    if (a->has_ctx) c.n_ctx = a->ctx;
    if (a->has_batch) c.max_batched_tokens = a->batch;
    if (a->has_parallel) c.max_seqs = a->parallel;
    if (a->has_n_predict) {
        if (a->n_predict < 1) { fprintf(stderr, "error: serve -n is the max_tokens cap: at least 1\n"); return 2; }
        c.max_tokens = a->n_predict;
    }
    if (a->has_memory_limit_mb) c.memory_limit_mb = a->memory_limit_mb;
    if (a->has_temp) c.sp.temperature = a->temp;
    if (a->has_top_k) c.sp.top_k = a->top_k;
    if (a->has_top_p) c.sp.top_p = a->top_p;
    if (a->has_min_p) c.sp.min_p = a->min_p;
    if (a->has_repeat_penalty) c.sp.repetition_penalty = a->repeat_penalty;
    if (a->has_presence_penalty) c.sp.presence_penalty = a->presence_penalty;
    if (a->has_frequency_penalty) c.sp.frequency_penalty = a->frequency_penalty;
    if (a->kv) {
        int t = engine_kv_type_parse(a->kv);
        if (t < 0) { fprintf(stderr, "error: bad value '%s' for --kv (f32, f16, q8, bf16, fp8)\n", a->kv); return 2; }
        c.kv_type = t;
    }
    if (a->precision) c.precision = (engine_precision)engine_precision_parse(a->precision);
    if (a->api_key_file && config_add_key_file(&c, a->api_key_file, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    if (a->has_tp) c.parallel.size = a->tp;
    if (a->has_tp_rank) c.parallel.rank = a->tp_rank;
    if (a->tp_addr) snprintf(c.parallel.addr, sizeof c.parallel.addr, "%s", a->tp_addr);
    if (a->moe_split) c.parallel.moe_split = (engine_moe_split)engine_moe_split_parse(a->moe_split);
    config_resolve_auto(&c); /* workers / max_queue "auto" from max_seqs, after -np */
    if (config_check(&c, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    if (c.parallel.size > 1 && c.parallel.rank > 0) return serve_follower(&c);
    if (fcgi_serve(&c, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    return 0;
}

/* verify: SHA-256 (BearSSL) of files against a sha256sum manifest, printed the way
 * `sha256sum -c` prints ("NAME: OK" / "NAME: FAILED"); every listed file, or only the
 * FILEs named (each must be listed). Without --manifest: print the digests of FILEs in
 * sha256sum's format. Exit 0 only if everything matched. */
static int cmd_verify(const cli_args *a) {
    const char *manifest = a->manifest;
    int nfiles = a->n_files;
    const char **files = a->files;
    err e = {0};
    uint8_t d[32];
    char hx[65];
    int bad = 0;
    if (!manifest) {
        if (!nfiles) { fprintf(stderr, "error: sparkd verify needs --manifest FILE or files to hash\n"); return 2; }
        for (int i = 0; i < nfiles; i++) {
            e = (err){0};
            if (sha256_file(files[i], d, &e)) { fprintf(stderr, "error: %s\n", e.msg); bad++; continue; }
            sha256_hex(d, hx);
            printf("%s  %s\n", hx, files[i]);
        }
        return bad ? 1 : 0;
    }
    sha256_manifest *m;
    if (sha256_manifest_load(&m, manifest, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    int checked = 0;
    for (int i = 0; i < (nfiles ? nfiles : m->n); i++) {
        const sha256_entry *en = nfiles ? sha256_manifest_find(m, files[i]) : &m->entries[i];
        if (!en) {
            printf("%s: NOT IN MANIFEST\n", files[i]);
            bad++;
            continue;
        }
        e = (err){0};
        checked++;
        if (sha256_file(en->path, d, &e)) {
            printf("%s: FAILED open or read (%s)\n", en->name, e.msg);
            bad++;
        } else if (memcmp(d, en->digest, 32)) {
            printf("%s: FAILED\n", en->name);
            bad++;
        } else printf("%s: OK\n", en->name);
        fflush(stdout);
    }
    if (bad) fprintf(stderr, "sparkd verify: %d of %d files did NOT match %s\n", bad, checked + (nfiles ? nfiles - checked : 0), manifest);
    else fprintf(stderr, "sparkd verify: %d files OK (%s)\n", checked, manifest);
    sha256_manifest_free(m);
    return bad ? 1 : 0;
}

/* device: what the CUDA unit sees (and a read-bandwidth probe). */
static int cmd_device(void) {
#ifdef SPARKD_CUDA
    err e = {0};
    char line[512];
    if (cuda_device_describe(line, sizeof line, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    printf("%s\n", line);
    double gbps;
    if (cuda_probe_read_bw((size_t)1 << 30, 10, &gbps, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    printf("read bandwidth %.1f GB/s (1 GiB, best of 10)\n", gbps);
    double tf;
    if (cuda_probe_mma_peak(&tf, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    printf("mma.sync m16n8k16 f16->f32 peak %.1f TFLOP/s (best of 5)\n", tf);
    if (cuda_probe_mma_peak_s8(&tf, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    printf("mma.sync m16n8k32 s8->s32 peak %.1f TOPS (best of 5)\n", tf);
    return 0;
#else
    fprintf(stderr, "error: this sparkd was built without CUDA (CPU only)\n");
    return 1;
#endif
}

/* selftest: every CUDA kernel against CPU references on fresh random inputs; prints a
 * table; exit status 1 if any check fails, 2 if there is no usable GPU. */
static int cmd_selftest(const cli_args *a) {
#ifdef SPARKD_CUDA
    /* line by line into files and pipes too: a crash must not take the lines already
     * printed with it (a tensor-parallel run's segfault at exit lost every ok line) */
    setvbuf(stdout, NULL, _IOLBF, 0);
    err e = {0};
    if (a->kbench) {
        if (cuda_kbench(stdout, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 2; }
        return 0;
    }
    int kv = 0;
    if (a->kv && (kv = engine_kv_type_parse(a->kv)) < 0) {
        fprintf(stderr, "error: --kv must be one of %s\n", ENGINE_KV_TYPE_NAMES);
        return 2;
    }
    int fails = 0;
    if (!(a->model_only && a->model)) {
        /* SPARKD_SELFTEST_ONLY=kernels or =moe runs one of the two tables */
        const char *only = getenv("SPARKD_SELFTEST_ONLY");
        if (!only || strcmp(only, "moe")) {
            fails = cuda_selftest(stdout, a->quick, &e);
            if (fails < 0) { fprintf(stderr, "error: %s\n", e.msg); return 2; }
        }
        if (!only || strcmp(only, "kernels")) {
            const int moe_fails = cuda_moe_selftest(stdout, a->quick, &e); /* kernels/moe_selftest.cu */
            if (moe_fails < 0) { fprintf(stderr, "error: %s\n", e.msg); return 2; }
            fails += moe_fails;
        }
    }
    if (a->has_tp) { /* the sharded engine against the whole one on this file */
        if (!a->model) { fprintf(stderr, "error: selftest --tp needs -m MODEL\n"); return 2; }
        engine_parallel par;
        memset(&par, 0, sizeof par);
        par.size = a->tp;
        par.connect_timeout_s = 60;
        par.step_timeout_s = 30;
        if (a->tp_addr) snprintf(par.addr, sizeof par.addr, "%s", a->tp_addr);
        if (a->moe_split) par.moe_split = (engine_moe_split)engine_moe_split_parse(a->moe_split);
        int tf = cuda_tp_check(stdout, a->model, kv, &par, &e);
        if (tf < 0) { fprintf(stderr, "error: %s\n", e.msg); return 2; }
        fails += tf;
    } else if (a->model) { /* the CUDA engine against the CPU engine on this file */
        int mf = cuda_model_check(stdout, a->model, kv, &e);
        if (mf < 0) { fprintf(stderr, "error: %s\n", e.msg); return 2; }
        fails += mf;
    }
    return fails ? 1 : 0;
#else
    (void)a;
    fprintf(stderr, "error: this sparkd was built without CUDA (CPU only)\n");
    return 2;
#endif
}

int main(int argc, char **argv) {
    if (argc < 2) { cli_usage(stderr); return 2; }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        printf("sparkd %s — one binary LLM endpoint\n", SPARKD_VERSION);
        cli_usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) { printf("sparkd %s\n", SPARKD_VERSION); return 0; }
    cli_args a;
    int rc = cli_parse(&a, argc, argv, stdout, stderr);
    if (rc) return rc == 1 ? 0 : 2;
    cli_opts o;
    switch (a.cmd) {
    case CLI_DEVICE: rc = cmd_device(); break;
    case CLI_SELFTEST: rc = cmd_selftest(&a); break;
    case CLI_SERVE: rc = cmd_serve(&a); break;
    case CLI_VERIFY: rc = cmd_verify(&a); break;
    default:
        if (opts_from_cli(&a, &o)) { rc = 2; break; }
        rc = a.cmd == CLI_RUN ? cmd_run(&o) : a.cmd == CLI_INFO ? cmd_info(&o) : cmd_bench(&o);
    }
    cli_free(&a);
    return rc;
}
