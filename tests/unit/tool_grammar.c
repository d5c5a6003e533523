/* tool_grammar — drives the grammar engine for the Python tests (tests/grammar/) and the
 * benchmark.
 *
 *   tool_grammar VOCAB.gguf vocab OUT.bin
 *       writes every token's bytes (tok_piece, special=0) and EOG flag:
 *       n_vocab (u32), then per token: eog (u8), len (u32), bytes
 *   tool_grammar VOCAB.gguf batch MASKDIR
 *       stdin: one JSON job per line {"kind":..., "text":..., "ws":0, "seed":1, "walks":2,
 *       "max_steps":300, "masks":0|1, "depth":64, "timing":0|1, "uniform":0|1}; stdout: one
 *       JSON line per job
 *       {"ok":true,"ms":..,"stats":{..},"walks":[{"ids":[..],"hex":"..","ended":true}]} or
 *       {"ok":false,"code":"invalid","error":"..."}. With "masks":1 every step's mask of
 *       walk w of job j goes to MASKDIR/j_w.bin (n_steps x words u32, little endian).
 *       "timing":1 adds each mask's thread CPU and wall time in µs ("cpu_us", "wall_us");
 *       "uniform":1 picks among the allowed tokens with equal logits (long strings).
 *       A walk samples at temperature 1 from random logits (normal, plus a bias toward
 *       tokens holding " } ] that grows after 100 steps for those starting with ", and toward end tokens, so walks
 *       finish) over the allowed tokens only, and checks each pick with
 *       grammar_state_accept.
 *   tool_grammar VOCAB.gguf bench KIND FILE [STEPS [WALKS [WS]]]
 *       random walks timing every grammar_state_mask; prints
 *       "bench masks=N median_us=.. p99_us=.. mean_us=.. max_us=.. compile_ms=.. positions=.."
 *   tool_grammar - check KIND FILE      compile without a vocabulary; "ok" or "error CODE: msg"
 *   tool_grammar - match KIND FILE HEX  compile, feed the bytes; "ok can_end=0|1" or "error ..."
 * KIND: json_schema json_object regex choice gbnf. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "grammar.h"
#include "jsonv.h"
#include "tok.h"

static int kind_of(const char *s, grammar_kind *k)
{
    static const struct {
        const char *n;
        grammar_kind k;
    } t[] = {{"json_schema", GRAMMAR_JSON_SCHEMA}, {"json_object", GRAMMAR_JSON_OBJECT}, {"regex", GRAMMAR_REGEX},
             {"choice", GRAMMAR_CHOICE},           {"gbnf", GRAMMAR_GBNF}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(s, t[i].n) == 0) {
            *k = t[i].k;
            return 0;
        }
    return -1;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0;
    *len = (size_t)n;
    return b;
}

static uint64_t rng_s = 88172645463325252ull;
static uint64_t rng_next(void)
{
    rng_s ^= rng_s << 13;
    rng_s ^= rng_s >> 7;
    rng_s ^= rng_s << 17;
    return rng_s;
}
static double rng_unif(void) { return (double)(rng_next() >> 11) / 9007199254740992.0; }
static double rng_normal(void)
{
    double u = rng_unif(), v = rng_unif();
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

typedef struct vocab_info {
    int32_t n;
    float *bias;    /* per token */
    uint8_t *closer; /* starts with " : its bias grows with the walk's length, so walks end */
    uint8_t *eog;
    const char **piece;
    size_t *len;
} vocab_info;

static void info_build(vocab_info *vi, const tok *t)
{
    vi->n = tok_vocab_size(t);
    vi->bias = calloc((size_t)vi->n, sizeof(float));
    vi->closer = calloc((size_t)vi->n, 1);
    vi->eog = calloc((size_t)vi->n, 1);
    vi->piece = calloc((size_t)vi->n, sizeof(char *));
    vi->len = calloc((size_t)vi->n, sizeof(size_t));
    for (int32_t i = 0; i < vi->n; i++) {
        vi->piece[i] = tok_piece(t, i, &vi->len[i], 0);
        vi->eog[i] = (uint8_t)tok_is_eog(t, i);
        if (vi->eog[i]) vi->bias[i] = 6;
        for (size_t k = 0; k < vi->len[i]; k++) {
            char c = vi->piece[i][k];
            if (c == '"') vi->bias[i] = 4.0f;
            if ((c == '}' || c == ']') && vi->bias[i] < 2.0f) vi->bias[i] = 2.0f;
        }
        if (vi->len[i] && vi->piece[i][0] == '"') vi->closer[i] = 1;
        if (vi->len[i] && vi->piece[i][0] == '\\') vi->bias[i] = -2.0f; /* fewer escapes: strings end sooner */
    }
}

/* Noise for sampling: a table of normal + Gumbel draws (a normal logit, then Gumbel-max
 * sampling at temperature 1), indexed by a fast RNG so a 262k-token step stays cheap. */
static float noise_tab[1 << 16];
static void noise_init(void)
{
    for (int i = 0; i < (1 << 16); i++) {
        double u = rng_unif();
        if (u < 1e-300) u = 1e-300;
        noise_tab[i] = (float)(rng_normal() - log(-log(u)));
    }
}

/* One token at temperature 1 over (normal logit + bias) restricted to the mask:
 * argmax of logit + Gumbel noise is a softmax sample. */
static int uniform_pick; /* 1: every allowed token equally likely (equal logits) */

static int32_t sample(const vocab_info *vi, const uint32_t *mask, int step, int *n_allowed)
{
    const float ramp = step > 100 ? (float)(step - 100) / 25.0f : 0.0f;
    const float scale = uniform_pick ? 0.0f : 1.0f;
    float best = -1e30f;
    int32_t pick = -1;
    int cnt = 0;
    for (int32_t w = 0; w < (vi->n + 31) / 32; w++) {
        uint32_t m = mask[w];
        while (m) {
            int b = __builtin_ctz(m);
            m &= m - 1;
            int32_t id = w * 32 + b;
            if (id >= vi->n) break;
            cnt++;
            float s = scale * (vi->bias[id] + (vi->closer[id] ? ramp : 0.0f)) + noise_tab[rng_next() & 0xFFFF];
            if (s > best) {
                best = s;
                pick = id;
            }
        }
    }
    *n_allowed = cnt;
    return pick;
}

static void put_hex(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) fprintf(f, "%02x", (unsigned char)s[i]);
}

static void put_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static const char *jstr(const jv_dict *d, const char *k, size_t *len)
{
    long i = jv_dict_find(d, k, strlen(k));
    if (i < 0 || d->v[i].type != JV_STR) return NULL;
    *len = d->v[i].u.s->len;
    return d->v[i].u.s->p;
}

static int64_t jint(const jv_dict *d, const char *k, int64_t dflt)
{
    long i = jv_dict_find(d, k, strlen(k));
    if (i < 0 || (d->v[i].type != JV_INT && d->v[i].type != JV_BOOL)) return dflt;
    return d->v[i].u.i;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs one walk; returns steps made. ids/text filled; *ended when an end token was picked. */
static int run_walk(grammar_state *st, const vocab_info *vi, uint32_t *mask, size_t nw, int max_steps, int32_t *ids,
                    char *text, size_t *tlen, size_t tcap, int *ended, FILE *mask_out, double *times, double *ctimes,
                    int *n_times, char *why, size_t why_cap)
{
    int n = 0;
    *ended = 0;
    *tlen = 0;
    why[0] = 0;
    for (int step = 0; step < max_steps; step++) {
        err e = {0};
        double t0 = now_us(), c0 = cpu_us();
        int rc = grammar_state_mask(st, mask, &e);
        double t1 = now_us(), c1 = cpu_us();
        if (times) {
            ctimes[*n_times] = c1 - c0;
            times[(*n_times)++] = t1 - t0;
        }
        if (times && getenv("GRAMMAR_SLOW") && t1 - t0 > atof(getenv("GRAMMAR_SLOW")))
            fprintf(stderr, "slow mask %.0f us at step %d\n", t1 - t0, step);
        if (rc) {
            snprintf(why, why_cap, "mask: %s", e.msg);
            break;
        }
        if (mask_out) fwrite(mask, 4, nw, mask_out);
        int n_allowed = 0;
        int32_t t = sample(vi, mask, step, &n_allowed);
        if (t < 0) {
            snprintf(why, why_cap, "empty mask");
            break;
        }
        ids[n++] = t;
        if (grammar_state_accept(st, t, &e)) {
            snprintf(why, why_cap, "accept %d: %s", t, e.msg);
            break;
        }
        if (vi->eog[t]) {
            *ended = 1;
            break;
        }
        if (*tlen + vi->len[t] < tcap) {
            memcpy(text + *tlen, vi->piece[t], vi->len[t]);
            *tlen += vi->len[t];
        }
    }
    return n;
}

/* Everything main keeps, freed on every way out (the -san build checks for leaks). */
static tok *g_tok;
static grammar_vocab *g_vocab;
static vocab_info g_vi;
static void *g_own[16];
static int g_n_own;
static void *own(void *p)
{
    if (g_n_own < 16) g_own[g_n_own++] = p;
    return p;
}
static int finish(int rc)
{
    for (int i = 0; i < g_n_own; i++) free(g_own[i]);
    free(g_vi.bias);
    free(g_vi.closer);
    free(g_vi.eog);
    free(g_vi.piece);
    free(g_vi.len);
    grammar_vocab_free(g_vocab);
    tok_free(g_tok);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: tool_grammar VOCAB.gguf|- vocab|batch|bench|check|match ...\n");
        return finish(2);
    }
    err e = {0};
    tok *t = NULL;
    grammar_vocab *gv = NULL;
    if (strcmp(argv[1], "-") != 0) {
        gguf_file *g = NULL;
        if (gguf_open(&g, argv[1], &e) || tok_load(&t, g, &e)) {
            fprintf(stderr, "tool_grammar: %s\n", e.msg);
            return finish(1);
        }
        gguf_close(g);
        const char *nv = getenv("GRAMMAR_N_VOCAB"); /* e.g. 151936: Qwen3's logit rows */
        if (grammar_vocab_new(&gv, t, nv ? atoi(nv) : 0, &e)) {
            fprintf(stderr, "tool_grammar: %s\n", e.msg);
            return finish(1);
        }
        info_build(&g_vi, t);
        noise_init();
        g_tok = t;
        g_vocab = gv;
    }
    const char *mode = argv[2];
    if (strcmp(mode, "vocab") == 0 && argc >= 4 && t) {
        FILE *f = fopen(argv[3], "wb");
        uint32_t n = (uint32_t)g_vi.n;
        fwrite(&n, 4, 1, f);
        for (int32_t i = 0; i < g_vi.n; i++) {
            uint8_t eg = g_vi.eog[i];
            uint32_t l = (uint32_t)g_vi.len[i];
            fwrite(&eg, 1, 1, f);
            fwrite(&l, 4, 1, f);
            fwrite(g_vi.piece[i], 1, g_vi.len[i], f);
        }
        fclose(f);
        printf("ok vocab=%d\n", g_vi.n);
        return finish(0);
    }
    if ((strcmp(mode, "check") == 0 || strcmp(mode, "match") == 0) && argc >= 5) {
        grammar_kind k;
        if (kind_of(argv[3], &k)) return finish(2);
        size_t len;
        char *text = own(read_file(argv[4], &len));
        if (!text) return finish(2);
        grammar *gr = NULL;
        if (grammar_compile(&gr, gv, k, text, len, NULL, &e)) {
            printf("error %s: %s\n", err_code_name(e.code), e.msg);
            return finish(0);
        }
        if (strcmp(mode, "match") == 0 && argc >= 6) {
            grammar_state *st;
            grammar_state_new(&st, gr, &e);
            size_t hl = strlen(argv[5]);
            char *bytes = own(malloc(hl / 2 + 1));
            for (size_t i = 0; i < hl / 2; i++) sscanf(argv[5] + 2 * i, "%2hhx", (unsigned char *)&bytes[i]);
            if (grammar_state_accept_bytes(st, bytes, hl / 2, &e)) printf("error %s: %s\n", err_code_name(e.code), e.msg);
            else printf("ok can_end=%d done=%d\n", grammar_state_can_end(st), grammar_state_done(st));
            grammar_state_free(st);
        } else {
            grammar_stats s;
            grammar_get_stats(gr, &s);
            printf("ok rules=%d states=%d\n", s.n_rules, s.n_states);
        }
        grammar_free(gr);
        return finish(0);
    }
    if (!gv) {
        fprintf(stderr, "tool_grammar: this mode needs a vocabulary\n");
        return finish(2);
    }
    size_t nw = grammar_mask_words(gv);
    uint32_t *mask = own(malloc(nw * 4));
    if (strcmp(mode, "allowed") == 0 && argc >= 6) {
        /* allowed KIND FILE HEXPREFIX: the tokens allowed after the prefix */
        grammar_kind k;
        if (kind_of(argv[3], &k)) return finish(2);
        size_t len;
        char *text = own(read_file(argv[4], &len));
        grammar *gr = NULL;
        grammar_state *st = NULL;
        if (grammar_compile(&gr, gv, k, text, len, NULL, &e) || grammar_state_new(&st, gr, &e)) {
            printf("error %s\n", e.msg);
            return finish(1);
        }
        size_t hl = strlen(argv[5]);
        char *bytes = own(malloc(hl / 2 + 1));
        for (size_t i = 0; i < hl / 2; i++) sscanf(argv[5] + 2 * i, "%2hhx", (unsigned char *)&bytes[i]);
        if (grammar_state_accept_bytes(st, bytes, hl / 2, &e)) {
            printf("error %s\n", e.msg);
            return finish(1);
        }
        grammar_state_mask(st, mask, &e);
        int n = 0;
        for (int32_t i = 0; i < g_vi.n; i++)
            if ((mask[i >> 5] >> (i & 31)) & 1) {
                if (n++ < 200) {
                    putchar('[');
                    fwrite(g_vi.piece[i], 1, g_vi.len[i], stdout);
                    putchar(']');
                }
            }
        printf("\nallowed %d\n", n);
        grammar_state_free(st);
        grammar_free(gr);
        return finish(0);
    }
    if (strcmp(mode, "bench") == 0 && argc >= 5) {
        grammar_kind k;
        if (kind_of(argv[3], &k)) return finish(2);
        size_t len;
        char *text = own(read_file(argv[4], &len));
        int steps = argc > 5 ? atoi(argv[5]) : 400;
        int walks = argc > 6 ? atoi(argv[6]) : 10;
        grammar_opts o;
        grammar_opts_default(&o);
        if (argc > 7) o.json_ws = atoi(argv[7]);
        grammar *gr = NULL;
        if (grammar_compile(&gr, gv, k, text, len, &o, &e)) {
            printf("error %s: %s\n", err_code_name(e.code), e.msg);
            return finish(1);
        }
        grammar_stats s;
        grammar_get_stats(gr, &s);
        grammar_state *st;
        grammar_state_new(&st, gr, &e);
        double *times = own(malloc(sizeof(double) * (size_t)steps * (size_t)walks));
        double *ctimes = own(malloc(sizeof(double) * (size_t)steps * (size_t)walks));
        int n_times = 0, n_ended = 0;
        int32_t *ids = own(malloc(sizeof(int32_t) * (size_t)steps));
        char *txt = own(malloc(1 << 20)), why[256];
        size_t tl;
        for (int w = 0; w < walks; w++) {
            grammar_state_reset(st);
            int ended;
            run_walk(st, &g_vi, mask, nw, steps, ids, txt, &tl, 1 << 20, &ended, NULL, times, ctimes, &n_times, why,
                     sizeof why);
            n_ended += ended;
            if (why[0]) fprintf(stderr, "walk %d: %s\n", w, why);
        }
        qsort(times, (size_t)n_times, sizeof(double), cmp_d);
        qsort(ctimes, (size_t)n_times, sizeof(double), cmp_d);
        double sum = 0, csum = 0;
        for (int i = 0; i < n_times; i++) {
            sum += times[i];
            csum += ctimes[i];
        }
        printf("bench masks=%d walks=%d ended=%d median_us=%.2f p99_us=%.2f mean_us=%.2f max_us=%.2f "
               "cpu_median_us=%.2f cpu_p99_us=%.2f cpu_mean_us=%.2f cpu_max_us=%.2f compile_ms=%.1f "
               "positions=%d states=%d accept_ids=%lld uncertain=%lld bytes=%zu\n",
               n_times, walks, n_ended, times[n_times / 2], times[(int)(n_times * 0.99)], sum / n_times,
               times[n_times - 1], ctimes[n_times / 2], ctimes[(int)(n_times * 0.99)], csum / n_times,
               ctimes[n_times - 1], s.compile_ms, s.n_positions, s.n_states, (long long)s.n_accept,
               (long long)s.n_uncertain, s.bytes);
        grammar_state_free(st);
        grammar_free(gr);
        return finish(0);
    }
    if (strcmp(mode, "batch") == 0 && argc >= 4) {
        const char *maskdir = argv[3];
        char *line = NULL;
        size_t cap = 0;
        ssize_t r;
        int job = 0;
        int32_t *ids = own(malloc(sizeof(int32_t) * 4096));
        double *wt = own(malloc(sizeof(double) * 4096)), *ct = own(malloc(sizeof(double) * 4096));
        char *txt = own(malloc(1 << 20)), why[512];
        while ((r = getline(&line, &cap, stdin)) > 0) {
            jv_arena *ar = jv_arena_new((size_t)r * 4 + 65536);
            jv v;
            err pe = {0};
            if (jv_parse(ar, line, (size_t)r, 64, &v, &pe) || v.type != JV_DICT) {
                printf("{\"ok\":false,\"code\":\"tool\",\"error\":\"bad job line\"}\n");
                jv_arena_free(ar);
                job++;
                continue;
            }
            const jv_dict *d = v.u.d;
            size_t kl = 0, tl = 0;
            const char *ks = jstr(d, "kind", &kl);
            const char *text = jstr(d, "text", &tl);
            char kn[32] = {0};
            if (ks && kl < sizeof kn) memcpy(kn, ks, kl);
            grammar_kind k;
            grammar_opts o;
            grammar_opts_default(&o);
            o.json_ws = (int)jint(d, "ws", 0);
            o.max_depth = (int)jint(d, "depth", 64);
            int walks = (int)jint(d, "walks", 1), max_steps = (int)jint(d, "max_steps", 300);
            int want_masks = (int)jint(d, "masks", 0), want_times = (int)jint(d, "timing", 0);
            uniform_pick = (int)jint(d, "uniform", 0);
            if (max_steps > 4096) max_steps = 4096;
            rng_s = 88172645463325252ull ^ (uint64_t)jint(d, "seed", 1) * 0x9E3779B97F4A7C15ull;
            if (kind_of(kn, &k)) {
                printf("{\"ok\":false,\"code\":\"tool\",\"error\":\"bad kind\"}\n");
                jv_arena_free(ar);
                job++;
                continue;
            }
            grammar *gr = NULL;
            err ce = {0};
            if (grammar_compile(&gr, gv, k, text ? text : "", tl, &o, &ce)) {
                printf("{\"ok\":false,\"code\":\"%s\",\"error\":", err_code_name(ce.code));
                put_json_str(stdout, ce.msg);
                printf("}\n");
                fflush(stdout);
                jv_arena_free(ar);
                job++;
                continue;
            }
            grammar_stats s;
            grammar_get_stats(gr, &s);
            grammar_state *st;
            grammar_state_new(&st, gr, &ce);
            printf("{\"ok\":true,\"ms\":%.2f,\"positions\":%d,\"states\":%d,\"walks\":[", s.compile_ms, s.n_positions,
                   s.n_states);
            for (int w = 0; w < walks; w++) {
                grammar_state_reset(st);
                FILE *mf = NULL;
                if (want_masks) {
                    char path[4096];
                    snprintf(path, sizeof path, "%s/%d_%d.bin", maskdir, job, w);
                    mf = fopen(path, "wb");
                }
                int ended, n_t = 0;
                size_t tlen;
                int n = run_walk(st, &g_vi, mask, nw, max_steps, ids, txt, &tlen, 1 << 20, &ended, mf,
                                 want_times ? wt : NULL, want_times ? ct : NULL, &n_t, why, sizeof why);
                if (mf) fclose(mf);
                printf("%s{\"ids\":[", w ? "," : "");
                for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
                printf("],\"hex\":\"");
                put_hex(stdout, txt, tlen);
                printf("\",\"ended\":%s,\"why\":", ended ? "true" : "false");
                put_json_str(stdout, why);
                if (want_times) {
                    printf(",\"cpu_us\":[");
                    for (int i = 0; i < n_t; i++) printf("%s%.3f", i ? "," : "", ct[i]);
                    printf("],\"wall_us\":[");
                    for (int i = 0; i < n_t; i++) printf("%s%.3f", i ? "," : "", wt[i]);
                    printf("]");
                }
                printf("}");
            }
            printf("]}\n");
            fflush(stdout);
            grammar_state_free(st);
            grammar_free(gr);
            jv_arena_free(ar);
            job++;
        }
        free(line);
        return finish(0);
    }
    fprintf(stderr, "tool_grammar: bad arguments\n");
    return finish(2);
}
