/* sampler.c — see sampler.h. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    float logit;
    int32_t id;
} cand;

struct sampler {
    int32_t n_vocab;
    sampler_params p; /* sampler_sample's parameters */
    sampler_rng rng;  /* sampler_sample's stream */
    cand *c;          /* (n_vocab) working candidates */
    cand *tmp;        /* (n_vocab) the radix sort's other buffer */
    uint32_t *counts; /* (n_vocab) occurrences of each token so far */
    int32_t *seen;    /* (n_vocab) distinct tokens with counts > 0, for cheap penalties/reset */
    int32_t n_seen;
};

void sampler_default_params(sampler_params *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->repetition_penalty = 1.0f;
}

int sampler_check_params(const sampler_params *p, err *e) {
    if (!isfinite(p->temperature) || p->temperature < 0 || p->temperature > 100)
        return err_set(e, ERR_INVALID, "temperature must be in [0, 100]");
    if (!isfinite(p->top_p) || p->top_p <= 0 || p->top_p > 1)
        return err_set(e, ERR_INVALID, "top_p must be in (0, 1]");
    if (!isfinite(p->min_p) || p->min_p < 0 || p->min_p > 1)
        return err_set(e, ERR_INVALID, "min_p must be in [0, 1]");
    if (p->top_k < 0) return err_set(e, ERR_INVALID, "top_k must be >= 0");
    if (!isfinite(p->repetition_penalty) || p->repetition_penalty <= 0 || p->repetition_penalty > 100)
        return err_set(e, ERR_INVALID, "repetition_penalty must be in (0, 100]");
    if (!isfinite(p->presence_penalty) || fabsf(p->presence_penalty) > 2)
        return err_set(e, ERR_INVALID, "presence_penalty must be in [-2, 2]");
    if (!isfinite(p->frequency_penalty) || fabsf(p->frequency_penalty) > 2)
        return err_set(e, ERR_INVALID, "frequency_penalty must be in [-2, 2]");
    return 0;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

void sampler_rng_seed(sampler_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

float sampler_rng_next(sampler_rng *r) { return (float)(xoshiro_next(r->s) >> 40) * (1.0f / 16777216.0f); }

void sampler_clear(sampler *s) {
    for (int32_t i = 0; i < s->n_seen; i++) s->counts[s->seen[i]] = 0;
    s->n_seen = 0;
}

void sampler_reset(sampler *s, const sampler_params *p) {
    s->p = *p;
    sampler_rng_seed(&s->rng, p->seed);
    sampler_clear(s);
}

uint64_t sampler_bytes(int32_t n_vocab) {
    return (uint64_t)n_vocab * (2 * sizeof(cand) + sizeof(uint32_t) + sizeof(int32_t));
}

int sampler_create(sampler **out, int32_t n_vocab, const sampler_params *p, err *e) {
    *out = NULL;
    if (n_vocab < 1) return err_set(e, ERR_INVALID, "vocabulary is empty");
    sampler *s = calloc(1, sizeof *s);
    if (!s) return err_set(e, ERR_NOMEM, "out of memory");
    s->n_vocab = n_vocab;
    /* the four buffers add up to sampler_bytes(n_vocab) */
    s->c = malloc(sizeof(cand) * (size_t)n_vocab);
    s->tmp = malloc(sizeof(cand) * (size_t)n_vocab);
    s->counts = calloc((size_t)n_vocab, sizeof(uint32_t));
    s->seen = malloc(sizeof(int32_t) * (size_t)n_vocab);
    if (!s->c || !s->tmp || !s->counts || !s->seen) {
        sampler_free(s);
        return err_set(e, ERR_NOMEM, "out of memory for the sampler");
    }
    sampler_reset(s, p);
    *out = s;
    return 0;
}

void sampler_free(sampler *s) {
    if (!s) return;
    free(s->c);
    free(s->tmp);
    free(s->counts);
    free(s->seen);
    free(s);
}

void sampler_accept(sampler *s, int32_t id) {
    if (id < 0 || id >= s->n_vocab) return;
    if (s->counts[id]++ == 0) s->seen[s->n_seen++] = id;
}

static int cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id; /* ties: lower id first, deterministic */
}

/* Moves the k largest candidates to c[0..k) (unordered) — quickselect. */
static void select_top(cand *c, int32_t n, int32_t k) {
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        cand pivot = c[lo + (hi - lo) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (cand_desc(&c[i], &pivot) < 0) i++;
            while (cand_desc(&c[j], &pivot) > 0) j--;
            if (i <= j) { cand t = c[i]; c[i] = c[j]; c[j] = t; i++; j--; }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

/* The order cand_desc sorts by as one unsigned key of 32 + 32 bits, ascending:
 * the logit's bits made order-preserving and inverted (larger first), then the id. */
static uint32_t logit_key(float f) {
    uint32_t b;
    memcpy(&b, &f, 4);
    b = b & 0x80000000u ? ~b : b | 0x80000000u; /* ascending with f */
    return ~b;
}

/* Sorts c[0..m) as qsort with cand_desc would (the same total order), by LSD radix
 * passes of 11 bits — id bits first, then the logit key — through tmp[0..m); a pass
 * whose digit is the same for all m is skipped. Small m: qsort. */
static void sort_desc(cand *c, cand *tmp, int32_t m) {
    if (m < 2048) {
        qsort(c, (size_t)m, sizeof(cand), cand_desc);
        return;
    }
    uint32_t cnt[2048];
    cand *src = c, *dst = tmp;
    for (int pass = 0; pass < 6; pass++) {
        const int word = pass / 3, shift = (pass % 3) * 11; /* word 0: id, word 1: logit key */
        memset(cnt, 0, sizeof cnt);
        for (int32_t i = 0; i < m; i++) {
            const uint32_t k = word ? logit_key(src[i].logit) : (uint32_t)src[i].id;
            cnt[(k >> shift) & 2047]++;
        }
        uint32_t sum = 0, same = 0;
        for (int d = 0; d < 2048; d++) {
            if (cnt[d] == (uint32_t)m) same = 1;
            const uint32_t t = cnt[d];
            cnt[d] = sum;
            sum += t;
        }
        if (same) continue;
        for (int32_t i = 0; i < m; i++) {
            const uint32_t k = word ? logit_key(src[i].logit) : (uint32_t)src[i].id;
            dst[cnt[(k >> shift) & 2047]++] = src[i];
        }
        cand *t = src;
        src = dst;
        dst = t;
    }
    if (src != c) memcpy(c, src, sizeof(cand) * (size_t)m);
}

int32_t sampler_sample(sampler *s, const float *logits) {
    const float u = s->p.temperature > 0.0f ? sampler_rng_next(&s->rng) : 0.0f;
    const int32_t pick = sampler_pick(s, &s->p, logits, u, NULL, NULL, NULL, 0);
    sampler_accept(s, pick);
    return pick;
}

int32_t sampler_pick(sampler *s, const sampler_params *p, const float *logits, float u, const uint32_t *mask,
                     const int32_t *bias_ids, const float *bias_vals, int n_bias) {
    const int32_t n = s->n_vocab;
    cand *c = s->c;
    for (int32_t i = 0; i < n; i++) {
        c[i].logit = isnan(logits[i]) ? -INFINITY : logits[i];
        c[i].id = i;
    }
    for (int k = 0; k < n_bias; k++)
        if (bias_ids[k] >= 0 && bias_ids[k] < n) c[bias_ids[k]].logit += bias_vals[k];
    if (mask) {
        int any = 0;
        for (int32_t i = 0; i < n; i++) {
            if (mask[i >> 5] >> (i & 31) & 1) any = 1;
            else c[i].logit = -INFINITY;
        }
        if (!any) return 0;
    }
    for (int32_t k = 0; k < s->n_seen; k++) {
        int32_t id = s->seen[k];
        float l = c[id].logit;
        if (p->repetition_penalty != 1.0f) l = l > 0 ? l / p->repetition_penalty : l * p->repetition_penalty;
        l -= p->frequency_penalty * (float)s->counts[id] + p->presence_penalty;
        c[id].logit = l;
    }
    int32_t pick;
    if (p->temperature <= 0.0f) {
        pick = 0;
        for (int32_t i = 1; i < n; i++)
            if (c[i].logit > c[pick].logit) pick = i; /* first maximum, like argmax */
        pick = c[pick].id;
    } else {
        /* Work on the top candidates only: top_k if set, else enough to cover
         * top_p / min_p (x4 until the mass is covered). The rounds only select (the
         * top m unordered in c[0..m)); the whole distribution's mass is summed once;
         * the final m are sorted once. */
        int32_t m = p->top_k > 0 && p->top_k < n ? p->top_k : (n < 256 ? n : 256);
        float lmx = c[0].logit;
        for (int32_t i = 1; i < n; i++)
            if (c[i].logit > lmx) lmx = c[i].logit;
        double all = -1;
        for (;;) {
            if (m < n) select_top(c, n, m);
            if (p->top_k > 0 || m == n) break;
            /* Is the tail beyond m negligible for top_p? Compare the mass of the
             * first m against the whole distribution. */
            if (all < 0) {
                all = 0;
                for (int32_t i = 0; i < n; i++) all += exp(((double)c[i].logit - lmx) / p->temperature);
            }
            double in = 0;
            for (int32_t i = 0; i < m; i++) in += exp(((double)c[i].logit - lmx) / p->temperature);
            if (p->top_p < 1.0f ? in >= p->top_p * all : (all - in) <= 1e-6 * all) break;
            m = m * 4 < n ? m * 4 : n;
        }
        sort_desc(c, s->tmp, m);
        double mx = c[0].logit, sum = 0;
        /* From here on c[i].logit holds the unnormalised probability. */
        for (int32_t i = 0; i < m; i++) {
            c[i].logit = (float)exp(((double)c[i].logit - mx) / p->temperature);
            sum += c[i].logit;
        }
        int32_t keep = m;
        if (p->top_p < 1.0f) {
            double acc = 0;
            for (int32_t i = 0; i < m; i++) {
                acc += c[i].logit;
                if (acc >= p->top_p * sum) { keep = i + 1; break; }
            }
        }
        if (p->min_p > 0.0f) {
            const float thr = p->min_p * c[0].logit;
            int32_t k2 = 1;
            while (k2 < keep && c[k2].logit >= thr) k2++;
            keep = k2;
        }
        double tot = 0;
        for (int32_t i = 0; i < keep; i++) tot += c[i].logit;
        double r = (double)u * tot, acc = 0;
        pick = c[keep - 1].id;
        for (int32_t i = 0; i < keep; i++) {
            acc += c[i].logit;
            if (r < acc) { pick = c[i].id; break; }
        }
    }
    return pick;
}
