/* test_sampler — sampler behaviour on hand-made logits:
 * greedy = argmax; same seed -> same tokens, other seed -> other tokens;
 * empirical frequencies follow softmax(logits / T); top-k, top-p and min-p
 * never pick outside their sets; penalties act as documented (OpenAI's
 * presence/frequency formula, llama.cpp's repetition penalty). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"
#include "t.h"

#define V 1000

static float logits[V];

static void fill(void) {
    /* a smooth distribution with a clear order: logit_i = -0.01 * i, a few bumps */
    for (int i = 0; i < V; i++) logits[i] = -0.01f * (float)i;
    logits[500] = 3.0f;
    logits[7] = 2.0f;
    logits[900] = 1.0f;
}

static sampler *make(sampler_params *p) {
    sampler *s;
    err e = {0};
    if (sampler_create(&s, V, p, &e)) {
        printf("not ok - sampler_create: %s\n", e.msg);
        exit(1);
    }
    return s;
}


/* The pick as its definition reads (sampler.h): every candidate sorted by logit
 * (ties: lower id first), the top m for m = 256, 1024, ... until they hold top_p of
 * the mass (or all but 1e-6 of it), then top_p, min_p and the draw u over the sorted
 * probabilities. A plain full sort, for the large-vocabulary check of the fast path
 * (selection rounds and the radix sort, m >= 2048). */
typedef struct { float l; int32_t id; } rc_t;
static int rc_desc(const void *a, const void *b) {
    const rc_t *x = a, *y = b;
    if (x->l != y->l) return x->l < y->l ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}
static int32_t ref_pick(const float *lg, int32_t n, const sampler_params *p, float u, rc_t *c, double *w) {
    for (int32_t i = 0; i < n; i++) { c[i].l = isnan(lg[i]) ? -INFINITY : lg[i]; c[i].id = i; }
    qsort(c, (size_t)n, sizeof *c, rc_desc);
    if (p->temperature <= 0) return c[0].id;
    double all = 0;
    for (int32_t i = 0; i < n; i++) all += (w[i] = exp(((double)c[i].l - c[0].l) / p->temperature));
    int32_t m = p->top_k > 0 && p->top_k < n ? p->top_k : (n < 256 ? n : 256);
    while (!(p->top_k > 0) && m < n) {
        double in = 0;
        for (int32_t i = 0; i < m; i++) in += w[i];
        if (p->top_p < 1.0f ? in >= p->top_p * all : (all - in) <= 1e-6 * all) break;
        m = m * 4 < n ? m * 4 : n;
    }
    double sum = 0;
    for (int32_t i = 0; i < m; i++) sum += (float)w[i];
    int32_t keep = m;
    if (p->top_p < 1.0f) {
        double acc = 0;
        for (int32_t i = 0; i < m; i++) { acc += (float)w[i]; if (acc >= p->top_p * sum) { keep = i + 1; break; } }
    }
    if (p->min_p > 0) { int32_t k2 = 1; while (k2 < keep && (float)w[k2] >= p->min_p * (float)w[0]) k2++; keep = k2; }
    double tot = 0;
    for (int32_t i = 0; i < keep; i++) tot += (float)w[i];
    const double r = (double)u * tot;
    double acc = 0;
    for (int32_t i = 0; i < keep; i++) { acc += (float)w[i]; if (r < acc) return c[i].id; }
    return c[keep - 1].id;
}

int main(void) {
    fill();
    sampler_params p;

    sampler_default_params(&p);
    p.temperature = 0;
    sampler *s = make(&p);
    T_OK(sampler_sample(s, logits) == 500, "greedy picks the argmax");
    sampler_free(s);

    /* ties: first maximum */
    float tie[V];
    memcpy(tie, logits, sizeof tie);
    tie[600] = 3.0f;
    s = make(&p);
    T_OK(sampler_sample(s, tie) == 500, "greedy breaks ties toward the lower id");
    sampler_free(s);

    /* NaN logits never win */
    memcpy(tie, logits, sizeof tie);
    tie[3] = NAN;
    s = make(&p);
    T_OK(sampler_sample(s, tie) == 500, "a NaN logit is never chosen");
    sampler_free(s);

    /* seeds */
    sampler_default_params(&p);
    p.temperature = 1.5f;
    p.seed = 42;
    int a[64], b[64], c[64];
    s = make(&p);
    for (int i = 0; i < 64; i++) a[i] = sampler_sample(s, logits);
    sampler_reset(s, &p);
    for (int i = 0; i < 64; i++) b[i] = sampler_sample(s, logits);
    p.seed = 43;
    sampler_reset(s, &p);
    for (int i = 0; i < 64; i++) c[i] = sampler_sample(s, logits);
    sampler_free(s);
    T_OK(!memcmp(a, b, sizeof a), "same seed, same 64 tokens");
    T_OK(memcmp(a, c, sizeof a) != 0, "different seed, different tokens");

    /* frequencies follow softmax(l / T) */
    p.temperature = 0.7f;
    p.seed = 1;
    s = make(&p);
    static int count[V];
    const int N = 200000;
    for (int i = 0; i < N; i++) {
        sampler_reset(s, &p); /* forget history: no penalties anyway, but keep counts clean */
        p.seed++;
        count[sampler_sample(s, logits)]++;
    }
    sampler_free(s);
    double z = 0;
    for (int i = 0; i < V; i++) z += exp(logits[i] / 0.7);
    double p500 = exp(3.0 / 0.7) / z, p7 = exp(2.0 / 0.7) / z;
    double f500 = (double)count[500] / N, f7 = (double)count[7] / N;
    T_OK(fabs(f500 - p500) < 5 * sqrt(p500 * (1 - p500) / N), "P(500) %.4f ~ softmax %.4f", f500, p500);
    T_OK(fabs(f7 - p7) < 5 * sqrt(p7 * (1 - p7) / N), "P(7) %.4f ~ softmax %.4f", f7, p7);

    /* top-k = 2 only ever picks 500 or 7 */
    sampler_default_params(&p);
    p.temperature = 5.0f;
    p.top_k = 2;
    s = make(&p);
    int bad = 0;
    for (int i = 0; i < 2000; i++) {
        int t = sampler_sample(s, logits);
        bad += t != 500 && t != 7;
    }
    sampler_free(s);
    T_OK(bad == 0, "top_k=2 stays in {500, 7} (%d outside)", bad);

    /* top-p: with T=0.2 the mass of 500 is > 0.99, so top_p 0.9 gives only 500 */
    sampler_default_params(&p);
    p.temperature = 0.2f;
    p.top_p = 0.9f;
    s = make(&p);
    bad = 0;
    for (int i = 0; i < 2000; i++) bad += sampler_sample(s, logits) != 500;
    sampler_free(s);
    T_OK(bad == 0, "top_p=0.9 keeps only the dominant token (%d others)", bad);

    /* top-p at T=1: never beyond the smallest set covering 0.5 */
    sampler_default_params(&p);
    p.top_p = 0.5f;
    s = make(&p);
    double zz = 0;
    for (int i = 0; i < V; i++) zz += exp(logits[i]);
    /* sorted probs: 500, 7, 900, 0, 1, 2, ... find the cutoff set */
    int order[V], n = 0;
    order[n++] = 500; order[n++] = 7; order[n++] = 900;
    for (int i = 0; i < V; i++) if (i != 500 && i != 7 && i != 900) order[n++] = i;
    double acc = 0;
    int keep = 0;
    while (acc < 0.5 * zz) acc += exp(logits[order[keep++]]);
    char allowed[V] = {0};
    for (int i = 0; i < keep; i++) allowed[order[i]] = 1;
    bad = 0;
    for (int i = 0; i < 5000; i++) bad += !allowed[sampler_sample(s, logits)];
    sampler_free(s);
    T_OK(bad == 0, "top_p=0.5 stays within the %d-token nucleus (%d outside)", keep, bad);

    /* min-p: p >= 0.3 * p_max keeps 500 and 7 only at T=1 (e^-1 = 0.37 >= 0.3, e^-2 < 0.3) */
    sampler_default_params(&p);
    p.min_p = 0.3f;
    s = make(&p);
    bad = 0;
    int saw7 = 0;
    for (int i = 0; i < 5000; i++) {
        int t = sampler_sample(s, logits);
        bad += t != 500 && t != 7;
        saw7 += t == 7;
    }
    sampler_free(s);
    T_OK(bad == 0 && saw7 > 0, "min_p=0.3 keeps {500, 7} and uses both (%d outside, %d sevens)", bad, saw7);

    /* presence penalty: after seeing 500, greedy moves to 7 if penalty > 1 */
    sampler_default_params(&p);
    p.temperature = 0;
    p.presence_penalty = 1.5f;
    s = make(&p);
    sampler_accept(s, 500);
    T_OK(sampler_sample(s, logits) == 7, "presence_penalty 1.5 demotes a seen token below the runner-up");
    sampler_free(s);

    /* frequency penalty scales with the count: 0.4 * 2 = 0.8 < 1 keeps 500, 0.4 * 3 moves */
    p.presence_penalty = 0;
    p.frequency_penalty = 0.4f;
    s = make(&p);
    sampler_accept(s, 500);
    sampler_accept(s, 500);
    T_OK(sampler_sample(s, logits) == 500, "frequency_penalty x2 occurrences still keeps 500");
    /* sampler_sample recorded 500 a third time */
    T_OK(sampler_sample(s, logits) == 7, "frequency_penalty x3 occurrences demotes it");
    sampler_free(s);

    /* repetition penalty divides positive logits: 3 / 2 = 1.5 < 2 */
    sampler_default_params(&p);
    p.temperature = 0;
    p.repetition_penalty = 2.0f;
    s = make(&p);
    sampler_accept(s, 500);
    T_OK(sampler_sample(s, logits) == 7, "repetition_penalty 2 halves a seen positive logit");
    sampler_free(s);


    /* a large vocabulary (the selection rounds and the radix sort): random logits of
     * spread 3 with ties and NaNs, picks equal the plain full-sort definition */
    {
        enum { NB = 151936 };
        float *lg = malloc(sizeof(float) * NB);
        rc_t *rc = malloc(sizeof(rc_t) * NB);
        double *w = malloc(sizeof(double) * NB);
        uint64_t x = 88172645463325252ull;
        for (int i = 0; i < NB; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            const double u1 = ((x >> 11) + 0.5) / 9007199254740992.0;
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            const double u2 = (x >> 11) / 9007199254740992.0;
            float v = (float)(3.0 * sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
            if (i % 3 == 0) v = roundf(v * 4.0f) / 4.0f; /* ties */
            lg[i] = i % 5000 == 17 ? NAN : v;
        }
        static const float temps[] = {1.0f, 0.7f, 1.0f, 1.3f, 0.2f};
        static const float tops[] = {1.0f, 1.0f, 0.95f, 1.0f, 1.0f};
        static const float minps[] = {0.0f, 0.0f, 0.0f, 0.001f, 0.0f};
        sampler *sb;
        err eb = {0};
        sampler_default_params(&p);
        int made = sampler_create(&sb, NB, &p, &eb) == 0, bad = 0, n = 0, distinct_big = 0;
        for (int k = 0; made && k < 5; k++) {
            sampler_params q;
            sampler_default_params(&q);
            q.temperature = temps[k]; q.top_p = tops[k]; q.min_p = minps[k];
            int32_t last = -1;
            for (int j = 0; j < 40; j++) {
                const float u = (float)(j + 0.5) / 40.0f;
                const int32_t got = sampler_pick(sb, &q, lg, u, NULL, NULL, NULL, 0);
                const int32_t want = ref_pick(lg, NB, &q, u, rc, w);
                if (got != want) { bad++; printf("# T %.1f top_p %.2f min_p %.3f u %.4f: got %d want %d\n", q.temperature,
                                                 q.top_p, q.min_p, u, got, want); }
                if (got != last) distinct_big++;
                last = got;
                n++;
            }
        }
        T_OK(made && bad == 0 && distinct_big > 100, "vocabulary %d: %d picks equal the full-sort definition (%d mismatches, "
             "%d distinct in a row)", NB, n, bad, distinct_big);
        if (made) sampler_free(sb);
        free(lg);
        free(rc);
        free(w);
    }

    /* parameter checks */
    err e = {0};
    sampler_default_params(&p);
    p.temperature = NAN;
    T_OK(sampler_check_params(&p, &e) == ERR_INVALID && strstr(e.msg, "temperature"), "NaN temperature refused");
    err_clear(&e);
    sampler_default_params(&p);
    p.top_p = 0;
    T_OK(sampler_check_params(&p, &e) == ERR_INVALID && strstr(e.msg, "top_p"), "top_p 0 refused");
    err_clear(&e);
    sampler_default_params(&p);
    p.presence_penalty = 3;
    T_OK(sampler_check_params(&p, &e) == ERR_INVALID && strstr(e.msg, "presence_penalty"), "presence_penalty 3 refused");
    T_DONE();
}
