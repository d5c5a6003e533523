/* main.c — the sparkd command line.
 *
 *   sparkd run   -m MODEL -p TEXT [-n N] [sampling...]   stream a continuation to stdout
 *   sparkd info  -m MODEL [-c CTX]                       describe a model and its memory
 *   sparkd bench -m MODEL [-p N] [-n N] [-r N]           prompt / generation tok/s
 *   sparkd serve [-c FILE] [-m MODEL] [--listen ADDR]    the FastCGI responder (fcgi/)
 *   sparkd verify --manifest SHA256SUMS [FILE...]         check files against a manifest
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

#include "config.h"
#ifdef SPARKD_CUDA
#include "cuda.h"
#include "cuda_kern.h"
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
    int load_only; /* bench: time the weight load only */
    int max_seqs;  /* info: sequences the plan is for (default 1) */
    uint64_t memory_limit; /* info: bytes the plan must fit (0 = none) */
    engine_kv_type kv_type;
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

static void usage(FILE *f) {
    fprintf(f,
            "sparkd %s — one binary LLM endpoint\n"
            "usage:\n"
            "  sparkd run   -m MODEL -p TEXT [-n N] [options]   continue TEXT, stream to stdout\n"
            "  sparkd info  -m MODEL [-c CTX] [--seqs N] [--kv TYPE] [--memory-limit MB]\n"
            "                                                   architecture, tensors, memory plan\n"
            "  sparkd bench -m MODEL [-p N] [-n N] [-r N]       prompt and generation speed\n"
            "  sparkd device                                    the GPU the CUDA unit sees\n"
            "  sparkd verify --manifest SHA256SUMS [FILE...]    check files' SHA-256 against a sha256sum manifest\n"
            "  sparkd verify FILE...                            print SHA-256 digests (sha256sum format)\n"
            "  sparkd selftest [--quick|--bench]                every GPU kernel against the CPU reference\n"
            "  sparkd serve [-c FILE] [-m MODEL] [--listen unix:PATH|HOST:PORT] [-t N] [--ctx N]\n"
            "               [--device cpu|cuda|auto]\n"
            "                                                   FastCGI responder (OpenAI API)\n"
            "options:\n"
            "  -n N                 tokens to generate (run: 64; bench: 64)\n"
            "  -t N                 threads (default: online CPUs)\n"
            "  -c N                 context length (default: min(model, 4096))\n"
            "  -b N                 prompt chunk size per forward call (default 256)\n"
            "  --temp T             temperature (default 0.8; 0 = greedy)\n"
            "  --top-k K --top-p P --min-p P --seed S\n"
            "  --repeat-penalty R --presence-penalty X --frequency-penalty X\n"
            "  --mmap               map the file instead of reading it (slower on GB10)\n"
            "  --load-only          bench: time loading the weights only\n"
            "  --kv TYPE            KV cache precision: f32 (default, exact), f16, q8, bf16, fp8\n"
            "  --seqs N             info: plan for N concurrent sequences of -c positions (default 1)\n"
            "  --memory-limit MB    info: say whether the plan fits MB MiB (as the INI's memory_limit_mb)\n"
            "  --device D           cpu (default), cuda or auto\n"
            "  --print-ids          print prompt and generated token ids on stderr\n"
            "  --no-bos             do not prepend BOS\n"
            "  --special            parse special tokens in the prompt and print them\n"
            "  --ignore-eos         keep generating past end-of-generation tokens\n",
            SPARKD_VERSION);
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, cli_opts *o) {
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
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_V() do { if (!v) { fprintf(stderr, "error: %s needs a value\n", a); return -1; } i++; } while (0)
#define BAD() do { fprintf(stderr, "error: bad value '%s' for %s\n", v, a); return -1; } while (0)
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEED_V(); o->model_path = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            NEED_V();
            if (!strcmp(argv[1], "bench")) { if (parse_int(v, 1, 1 << 20, &o->bench_pp)) BAD(); }
            else o->prompt = v;
        }
        else if (!strcmp(a, "-n")) {
            NEED_V();
            if (parse_int(v, 0, 1 << 24, &o->n_predict)) BAD();
            o->bench_tg = o->n_predict;
        }
        else if (!strcmp(a, "-r")) { NEED_V(); if (parse_int(v, 1, 1000, &o->bench_reps)) BAD(); }
        else if (!strcmp(a, "-t")) { NEED_V(); if (parse_int(v, 1, 1024, &o->n_threads)) BAD(); }
        else if (!strcmp(a, "-c")) { NEED_V(); if (parse_int(v, 1, 1 << 24, &o->n_ctx)) BAD(); }
        else if (!strcmp(a, "-b")) { NEED_V(); if (parse_int(v, 1, 1 << 16, &o->batch)) BAD(); }
        else if (!strcmp(a, "--temp")) { NEED_V(); if (parse_float(v, &o->sp.temperature)) BAD(); }
        else if (!strcmp(a, "--top-k")) { NEED_V(); if (parse_int(v, 0, 1 << 24, &o->sp.top_k)) BAD(); }
        else if (!strcmp(a, "--top-p")) { NEED_V(); if (parse_float(v, &o->sp.top_p)) BAD(); }
        else if (!strcmp(a, "--min-p")) { NEED_V(); if (parse_float(v, &o->sp.min_p)) BAD(); }
        else if (!strcmp(a, "--repeat-penalty")) { NEED_V(); if (parse_float(v, &o->sp.repetition_penalty)) BAD(); }
        else if (!strcmp(a, "--presence-penalty")) { NEED_V(); if (parse_float(v, &o->sp.presence_penalty)) BAD(); }
        else if (!strcmp(a, "--frequency-penalty")) { NEED_V(); if (parse_float(v, &o->sp.frequency_penalty)) BAD(); }
        else if (!strcmp(a, "--seed")) {
            NEED_V();
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end) BAD();
            o->sp.seed = s;
        }
        else if (!strcmp(a, "--seqs")) { NEED_V(); if (parse_int(v, 1, 4096, &o->max_seqs)) BAD(); }
        else if (!strcmp(a, "--memory-limit")) {
            NEED_V();
            int mb;
            if (parse_int(v, 1, 1 << 30, &mb)) BAD();
            o->memory_limit = (uint64_t)mb << 20;
        }
        else if (!strcmp(a, "--mmap")) o->use_mmap = 1;
        else if (!strcmp(a, "--load-only")) o->load_only = 1;
        else if (!strcmp(a, "--kv")) {
            NEED_V();
            int t = engine_kv_type_parse(v);
            if (t < 0) BAD();
            o->kv_type = (engine_kv_type)t;
        }
        else if (!strcmp(a, "--device")) {
            NEED_V();
            if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto")) BAD();
            o->device = v;
        }
        else if (!strcmp(a, "--print-ids")) o->print_ids = 1;
        else if (!strcmp(a, "--no-bos")) o->no_bos = 1;
        else if (!strcmp(a, "--special")) o->special = 1;
        else if (!strcmp(a, "--ignore-eos")) o->ignore_eos = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); exit(0); }
        else { fprintf(stderr, "error: unknown option '%s'\n", a); return -1; }
#undef NEED_V
#undef BAD
    }
    if (!o->model_path) { fprintf(stderr, "error: -m MODEL is required\n"); return -1; }
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

static int cmd_bench(const cli_opts *o) {
    err e = {0};
    if (o->load_only) return bench_load(o);
    cli_opts oo = *o;
    if (oo.batch < oo.bench_pp) oo.batch = oo.bench_pp;
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
    printf("model: %s, engine: %s, threads: %d, kv: %s, reps: %d\n", s->m->arch_name, s->ops->name,
           s->eopts.n_threads, engine_kv_type_name(s->eopts.kv_type), oo.bench_reps);
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

/* serve: the INI file first, then flags over it. */
static int cmd_serve(int argc, char **argv) {
    config c;
    config_defaults(&c);
    err e = {0};
    for (int i = 2; i < argc; i++)
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            if (config_load(&c, argv[i + 1], &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
            i++;
        }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v && strcmp(a, "-h") && strcmp(a, "--help")) { fprintf(stderr, "error: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "-c") || !strcmp(a, "--config")) { i++; continue; }
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { snprintf(c.model_path, sizeof c.model_path, "%s", v); i++; }
        else if (!strcmp(a, "--listen")) { snprintf(c.listen, sizeof c.listen, "%s", v); i++; }
        else if (!strcmp(a, "-t")) { if (parse_int(v, 1, 1024, &c.threads)) { fprintf(stderr, "error: bad -t\n"); return 2; } i++; }
        else if (!strcmp(a, "--ctx")) { if (parse_int(v, 2, 1 << 24, &c.n_ctx)) { fprintf(stderr, "error: bad --ctx\n"); return 2; } i++; }
        else if (!strcmp(a, "--device")) {
            if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto")) { fprintf(stderr, "error: bad --device\n"); return 2; }
            snprintf(c.device, sizeof c.device, "%s", v);
            i++;
        }
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else { fprintf(stderr, "error: unknown option '%s'\n", a); return 2; }
    }
    if (config_check(&c, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    if (fcgi_serve(&c, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    return 0;
}

/* verify: SHA-256 (BearSSL) of files against a sha256sum manifest, printed the way
 * `sha256sum -c` prints ("NAME: OK" / "NAME: FAILED"); every listed file, or only the
 * FILEs named (each must be listed). Without --manifest: print the digests of FILEs in
 * sha256sum's format. Exit 0 only if everything matched. */
static int cmd_verify(int argc, char **argv) {
    const char *manifest = NULL;
    int nfiles = 0;
    const char **files = calloc((size_t)argc, sizeof *files);
    if (!files) return 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: sparkd verify --manifest SHA256SUMS [FILE...]\n"
                   "       sparkd verify FILE...\n"
                   "Checks each file the manifest lists (or only the FILEs given, which it must list):\n"
                   "names are taken from the manifest's directory; prints NAME: OK or NAME: FAILED.\n"
                   "Without --manifest, prints the SHA-256 of each FILE in sha256sum's format.\n");
            free(files);
            return 0;
        }
        if (!strcmp(a, "--manifest")) {
            if (i + 1 >= argc) { fprintf(stderr, "error: --manifest needs a value\n"); free(files); return 2; }
            manifest = argv[++i];
        } else if (!strncmp(a, "--manifest=", 11)) manifest = a + 11;
        else if (a[0] == '-' && a[1]) { fprintf(stderr, "error: unknown option '%s'\n", a); free(files); return 2; }
        else files[nfiles++] = a;
    }
    err e = {0};
    uint8_t d[32];
    char hx[65];
    int bad = 0;
    if (!manifest) {
        if (!nfiles) { fprintf(stderr, "error: sparkd verify needs --manifest FILE or files to hash\n"); free(files); return 2; }
        for (int i = 0; i < nfiles; i++) {
            e = (err){0};
            if (sha256_file(files[i], d, &e)) { fprintf(stderr, "error: %s\n", e.msg); bad++; continue; }
            sha256_hex(d, hx);
            printf("%s  %s\n", hx, files[i]);
        }
        free(files);
        return bad ? 1 : 0;
    }
    sha256_manifest *m;
    if (sha256_manifest_load(&m, manifest, &e)) { fprintf(stderr, "error: %s\n", e.msg); free(files); return 1; }
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
    free(files);
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
    return 0;
#else
    fprintf(stderr, "error: this sparkd was built without CUDA (CPU only)\n");
    return 1;
#endif
}

/* selftest: every CUDA kernel against CPU references on fresh random inputs; prints a
 * table; exit status 1 if any check fails, 2 if there is no usable GPU. */
static int cmd_selftest(int argc, char **argv) {
#ifdef SPARKD_CUDA
    int quick = 0, bench = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--bench")) bench = 1;
        else { fprintf(stderr, "error: selftest: unknown option '%s'\n", argv[i]); return 2; }
    }
    err e = {0};
    if (bench) {
        if (cuda_kbench(stdout, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 2; }
        return 0;
    }
    int fails = cuda_selftest(stdout, quick, &e);
    if (fails < 0) { fprintf(stderr, "error: %s\n", e.msg); return 2; }
    return fails ? 1 : 0;
#else
    (void)argc;
    (void)argv;
    fprintf(stderr, "error: this sparkd was built without CUDA (CPU only)\n");
    return 2;
#endif
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "device")) return cmd_device();
    if (!strcmp(argv[1], "selftest")) return cmd_selftest(argc, argv);
    if (!strcmp(argv[1], "serve")) return cmd_serve(argc, argv);
    if (!strcmp(argv[1], "verify")) return cmd_verify(argc, argv);
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) { printf("sparkd %s\n", SPARKD_VERSION); return 0; }
    cli_opts o;
    if (strcmp(argv[1], "run") && strcmp(argv[1], "info") && strcmp(argv[1], "bench")) {
        fprintf(stderr, "error: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    if (parse_args(argc, argv, &o)) return 2;
    if (!strcmp(argv[1], "run")) return cmd_run(&o);
    if (!strcmp(argv[1], "info")) return cmd_info(&o);
    return cmd_bench(&o);
}
