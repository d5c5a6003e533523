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
#include "cpu.h"
#ifdef SPARKD_CUDA
#include "cuda.h"
#include "cuda_kern.h"
#endif
#include "fcgi.h"
#include "model.h"
#include "quant.h"
#include "sampler.h"
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
    cpu_kv_type kv_type;
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
            "  sparkd info  -m MODEL [-c CTX]                   architecture, tensors, memory\n"
            "  sparkd bench -m MODEL [-p N] [-n N] [-r N]       prompt and generation speed\n"
            "  sparkd device                                    the GPU the CUDA unit sees\n"
            "  sparkd verify --manifest SHA256SUMS [FILE...]    check files' SHA-256 against a sha256sum manifest\n"
            "  sparkd verify FILE...                            print SHA-256 digests (sha256sum format)\n"
            "  sparkd selftest [--quick|--bench]                every GPU kernel against the CPU reference\n"
            "  sparkd serve [-c FILE] [-m MODEL] [--listen unix:PATH|HOST:PORT] [-t N] [--ctx N]\n"
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
            "  --kv f32|f16|q8      KV cache precision (default f32: exact)\n"
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
        else if (!strcmp(a, "--mmap")) o->use_mmap = 1;
        else if (!strcmp(a, "--load-only")) o->load_only = 1;
        else if (!strcmp(a, "--kv")) {
            NEED_V();
            if (!strcmp(v, "f32")) o->kv_type = CPU_KV_F32;
            else if (!strcmp(v, "f16")) o->kv_type = CPU_KV_F16;
            else if (!strcmp(v, "q8")) o->kv_type = CPU_KV_Q8;
            else BAD();
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

static int load(const cli_opts *o, model **m, int header_only, err *e) {
    struct stat st;
    int big = stat(o->model_path, &st) == 0 && st.st_size > (1ll << 30);
    model_load_opts lo = {.use_mmap = o->use_mmap, .progress = big || isatty(2), .header_only = header_only};
    return model_load(m, o->model_path, &lo, e);
}

static int ctx_for(const cli_opts *o, const model *m) {
    if (o->n_ctx) return o->n_ctx;
    return m->hp.ctx_train < 4096 ? m->hp.ctx_train : 4096;
}

static int cmd_info(const cli_opts *o) {
    err e = {0};
    model *m;
    if (load(o, &m, 1, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    const model_hparams *hp = &m->hp;
    const char *name = NULL;
    uint64_t nlen = 0;
    if (gguf_get_str(m->gguf, "general.name", &name, &nlen, NULL)) { name = "?"; nlen = 1; }
    printf("model          %.*s\n", (int)(nlen > 80 ? 80 : nlen), name);
    printf("architecture   %s\n", m->arch_name);
    printf("gguf           v%u, %" PRId64 " tensors, %" PRId64 " metadata keys, %.1f MB\n",
           gguf_version(m->gguf), gguf_tensor_count(m->gguf), gguf_kv_count(m->gguf),
           (double)gguf_file_size(m->gguf) / 1e6);
    printf("vocab          %d\n", hp->n_vocab);
    printf("dim            %d\n", hp->dim);
    printf("layers         %d", hp->n_layer);
    if (hp->swa_window) printf(" (sliding window %d, every %d-th layer global)", hp->swa_window, hp->swa_pattern);
    printf("\nheads          %d query, %d key/value, head dim %d\n", hp->n_head, hp->n_head_kv, hp->head_dim);
    printf("ffn            %d (%s)\n", hp->ffn_dim, hp->act == MODEL_ACT_GELU_TANH ? "GeGLU tanh" : "SwiGLU");
    printf("context        %d trained\n", hp->ctx_train);
    printf("rope           %s, base %g", hp->rope_style == MODEL_ROPE_NEOX ? "neox" : "norm", (double)hp->rope_base);
    if (hp->rope_base_swa != hp->rope_base) printf(" (local layers %g)", (double)hp->rope_base_swa);
    if (hp->rope_scaling != MODEL_ROPE_SCALE_NONE)
        printf(", %s x%g", hp->rope_scaling == MODEL_ROPE_SCALE_LINEAR ? "linear" : "yarn", (double)hp->rope_factor);
    if (m->rope_freqs) printf(", per-dim frequency factors");
    printf("\nnorm eps       %g\n", (double)hp->norm_eps);
    printf("output         %s\n", m->output == m->token_embd ? "tied to token_embd" : "separate");

    /* tensors by type */
    uint64_t count[QUANT_TYPE_LIMIT] = {0}, bytes[QUANT_TYPE_LIMIT] = {0}, params = 0;
    for (int64_t i = 0; i < gguf_tensor_count(m->gguf); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->gguf, i);
        count[t->type]++;
        bytes[t->type] += t->nbytes;
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) n *= (uint64_t)t->ne[d];
        params += n;
    }
    printf("parameters     %.1f M\n", (double)params / 1e6);
    printf("tensor types  ");
    for (int t = 0; t < QUANT_TYPE_LIMIT; t++)
        if (count[t]) printf(" %s x%" PRIu64 " (%.1f MB)", quant_traits_of((uint32_t)t)->name, count[t], (double)bytes[t] / 1e6);
    printf("\n");
    cpu_engine_opts eo = {.n_threads = o->n_threads, .n_ctx = ctx_for(o, m), .n_slots = 1, .max_tokens = o->batch};
    uint64_t wbytes = gguf_data_size(m->gguf);
    uint64_t kvt = model_kv_bytes_per_token(m, 4);
    uint64_t plan = cpu_engine_plan_bytes(m, &eo);
    printf("memory         weights %.1f MB; KV cache %.1f KB/token (f32), %.1f MB at context %d;\n"
           "               CPU engine total (1 slot, batch %d) %.1f MB\n",
           (double)wbytes / 1e6, (double)kvt / 1e3, (double)kvt * eo.n_ctx / 1e6, eo.n_ctx, o->batch,
           (double)(wbytes + plan) / 1e6);
    tok *tk = NULL;
    if (tok_load(&tk, m->gguf, &e)) {
        printf("tokenizer      error: %s\n", e.msg);
        model_free(m);
        return 1;
    }
    printf("tokenizer      %d tokens, bos %d, eos %d\n", tok_vocab_size(tk), tok_bos(tk), tok_eos(tk));
    tok_free(tk);
    model_free(m);
    return 0;
}

typedef struct session {
    model *m;
    tok *tk;
    cpu_engine *eng;
    sampler *smp;
} session;

static void session_free(session *s) {
    sampler_free(s->smp);
    cpu_engine_free(s->eng);
    tok_free(s->tk);
    model_free(s->m);
}

static int session_open(session *s, const cli_opts *o, int need_tok, err *e) {
    memset(s, 0, sizeof *s);
    int rc = load(o, &s->m, 0, e);
    if (!rc && need_tok) rc = tok_load(&s->tk, s->m->gguf, e);
    if (!rc) {
        cpu_engine_opts eo = {.n_threads = o->n_threads, .n_ctx = ctx_for(o, s->m), .n_slots = 1, .max_tokens = o->batch,
                              .kv_type = o->kv_type};
        rc = cpu_engine_create(&s->eng, s->m, &eo, e);
    }
    if (!rc) rc = sampler_check_params(&o->sp, e);
    if (!rc) rc = sampler_create(&s->smp, s->m->hp.n_vocab, &o->sp, e);
    if (rc) session_free(s);
    return rc;
}

static int cmd_run(const cli_opts *o) {
    err e = {0};
    if (!o->prompt) { fprintf(stderr, "error: -p TEXT is required\n"); return 1; }
    session s;
    if (session_open(&s, o, 1, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    const int n_ctx = ctx_for(o, s.m);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n_ctx);
    char *buf = malloc(4096);
    int rc = 1;
    if (!ids || !buf) { fprintf(stderr, "error: out of memory\n"); goto done; }
    int n = tok_encode(s.tk, o->prompt, strlen(o->prompt), !o->no_bos, o->special, ids, n_ctx, &e);
    if (n < 0) { fprintf(stderr, "error: %s\n", e.msg); goto done; }
    if (n == 0) { fprintf(stderr, "error: the prompt encodes to no tokens\n"); goto done; }
    if (n >= n_ctx) { fprintf(stderr, "error: prompt has %d tokens, context is %d\n", n, n_ctx); goto done; }
    if (o->print_ids) {
        fprintf(stderr, "prompt ids:");
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    for (int i = 0; i < n; i++) sampler_accept(s.smp, ids[i]);
    fputs(o->prompt, stdout);
    fflush(stdout);
    double t0 = now_s();
    if (cpu_prefill(s.eng, 0, ids, n, 0, &e)) { fprintf(stderr, "\nerror: %s\n", e.msg); goto done; }
    double t1 = now_s();
    tok_stream ts;
    tok_stream_init(&ts);
    int pos = n, gen = 0;
    if (o->print_ids) fprintf(stderr, "generated ids:");
    while (gen < o->n_predict && pos < n_ctx) {
        int32_t id = sampler_sample(s.smp, cpu_logits(s.eng, 0));
        gen++;
        if (o->print_ids) fprintf(stderr, " %d", id);
        if (!o->ignore_eos && tok_is_eog(s.tk, id)) break;
        size_t w = tok_stream_feed(s.tk, &ts, id, buf, 4096);
        fwrite(buf, 1, w, stdout);
        fflush(stdout);
        if (gen == o->n_predict || pos + 1 >= n_ctx) break;
        cpu_seq sq = {.tokens = &id, .n = 1, .pos = pos, .slot = 0, .want_logits = 1};
        if (cpu_forward(s.eng, &sq, 1, &e)) { fprintf(stderr, "\nerror: %s\n", e.msg); goto done; }
        pos++;
    }
    size_t w = tok_stream_flush(&ts, buf, 4096);
    fwrite(buf, 1, w, stdout);
    fputc('\n', stdout);
    double t2 = now_s();
    if (o->print_ids) fprintf(stderr, "\n");
    fprintf(stderr, "prompt %d tokens in %.3f s (%.1f tok/s); generated %d tokens in %.3f s (%.1f tok/s); %d threads\n",
            n, t1 - t0, n / (t1 - t0), gen, t2 - t1, gen > 0 ? gen / (t2 - t1) : 0.0, o->n_threads);
    rc = 0;
done:
    free(ids);
    free(buf);
    session_free(&s);
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
    if (load(o, &m, 0, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    volatile uint8_t sink = 0;
    if (m->weights_mapped) /* a mapping costs nothing until touched: touch every page */
        for (int64_t i = 0; i < gguf_tensor_count(m->gguf); i++) {
            const gguf_tensor *t = gguf_tensor_at(m->gguf, i);
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
    session s;
    if (session_open(&s, &oo, 0, &e)) { fprintf(stderr, "error: %s\n", e.msg); return 1; }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)oo.bench_pp);
    double *pp = calloc((size_t)oo.bench_reps, sizeof(double)), *tg = calloc((size_t)oo.bench_reps, sizeof(double));
    int rc = 1;
    if (!ids || !pp || !tg) goto done;
    uint64_t x = 12345;
    for (int i = 0; i < oo.bench_pp; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((x >> 33) % (uint64_t)s.m->hp.n_vocab);
    }
    /* warm-up: one small forward */
    if (cpu_prefill(s.eng, 0, ids, oo.bench_pp < 8 ? oo.bench_pp : 8, 0, &e)) goto fail;
    for (int r = 0; r < oo.bench_reps; r++) {
        double t0 = now_s();
        if (cpu_prefill(s.eng, 0, ids, oo.bench_pp, 0, &e)) goto fail;
        pp[r] = oo.bench_pp / (now_s() - t0);
        int32_t id = ids[0];
        t0 = now_s();
        for (int i = 0; i < oo.bench_tg; i++) {
            cpu_seq sq = {.tokens = &id, .n = 1, .pos = i, .slot = 0, .want_logits = 1};
            if (cpu_forward(s.eng, &sq, 1, &e)) goto fail;
            id = sampler_sample(s.smp, cpu_logits(s.eng, 0));
        }
        tg[r] = oo.bench_tg / (now_s() - t0);
    }
    double m1, s1, m2, s2;
    mean_sd(pp, oo.bench_reps, &m1, &s1);
    mean_sd(tg, oo.bench_reps, &m2, &s2);
    printf("model: %s, threads: %d, reps: %d\n", s.m->arch_name, oo.n_threads, oo.bench_reps);
    printf("pp%d: %.2f ± %.2f tok/s\n", oo.bench_pp, m1, s1);
    printf("tg%d: %.2f ± %.2f tok/s\n", oo.bench_tg, m2, s2);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "error: %s\n", e.msg);
done:
    free(ids);
    free(pp);
    free(tg);
    session_free(&s);
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
