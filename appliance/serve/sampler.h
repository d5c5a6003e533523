/* sampler.h — logits -> next token, in two halves:
 *
 *  - the RNG (sampler_rng): a seeded xoshiro256** stream on the host, one uniform
 *    draw per sampled token (sampler_rng_next). It lives with the request, so the
 *    same seed gives the same tokens whichever backend picks them;
 *  - the pick (sampler_pick): from the logits and the caller's draw u. Order (as
 *    llama.cpp and vLLM apply them): logit bias and grammar mask on the raw logits,
 *    repetition penalty, presence and frequency penalties (OpenAI semantics) over
 *    the tokens seen so far; then greedy if temperature <= 0; else top-k,
 *    temperature, softmax, top-p, min-p, and u picks from what is left.
 * sampler_sample is both in one call with the sampler's own RNG (the CLI of old,
 * tests). The same seed and inputs give the same tokens.
 *
 * Owns: a candidate buffer and a per-token count table sized for the vocabulary
 * at sampler_create (sampler_bytes); sampling allocates nothing. One sampler per
 * sequence (the engine keeps one per slot: its penalty history). */
#ifndef SPARKD_SAMPLER_H
#define SPARKD_SAMPLER_H

#include <stdint.h>

#include "err.h"

typedef struct sampler_params {
    float temperature;        /* <= 0: greedy */
    int32_t top_k;            /* <= 0: off */
    float top_p;              /* >= 1: off */
    float min_p;              /* <= 0: off */
    float repetition_penalty; /* 1: off; > 1 discourages repeats */
    float presence_penalty;   /* 0: off (OpenAI range -2..2) */
    float frequency_penalty;  /* 0: off */
    uint64_t seed;
} sampler_params;

typedef struct sampler sampler;

/* The host RNG: 4 words of xoshiro256** state, seeded through splitmix64. */
typedef struct sampler_rng {
    uint64_t s[4];
} sampler_rng;
void sampler_rng_seed(sampler_rng *r, uint64_t seed);
/* Uniform in [0, 1) with 24 bits; advances the stream by one. */
float sampler_rng_next(sampler_rng *r);

void sampler_default_params(sampler_params *p);
/* Checks ranges; the message names the parameter. */
int sampler_check_params(const sampler_params *p, err *e);

int sampler_create(sampler **out, int32_t n_vocab, const sampler_params *p, err *e);
void sampler_free(sampler *s);
/* Forget history and reseed (same buffers). */
void sampler_reset(sampler *s, const sampler_params *p);
/* Record a token as seen (prompt tokens for the repetition penalty, and every
 * generated token — sampler_sample records its own choice). */
void sampler_accept(sampler *s, int32_t id);
/* Picks the next token with the sampler's own RNG and records it (sampler_accept).
 * logits (n_vocab) are not modified. */
int32_t sampler_sample(sampler *s, const float *logits);

/* Picks a token from logits (n_vocab, not modified) under p with the uniform draw u
 * in [0, 1) (unused when greedy). mask: NULL or ceil(n_vocab / 32) words, bit
 * (id % 32) of word id / 32 set = allowed; bias_ids/bias_vals (n_bias) are added to
 * the raw logits. Does not record the token (sampler_accept does). A mask that
 * allows nothing gives token 0. */
int32_t sampler_pick(sampler *s, const sampler_params *p, const float *logits, float u, const uint32_t *mask,
                     const int32_t *bias_ids, const float *bias_vals, int n_bias);
/* Forget the penalty history only. */
void sampler_clear(sampler *s);
/* Heap bytes sampler_create allocates for a vocabulary of n_vocab (the struct aside). */
uint64_t sampler_bytes(int32_t n_vocab);

#endif
