/* sampler.h — logits -> next token.
 *
 * Order (as llama.cpp and vLLM apply them): repetition penalty, presence and
 * frequency penalties (OpenAI semantics) over the tokens generated or seen so
 * far; then greedy if temperature <= 0; else top-k, temperature, softmax, top-p,
 * min-p, and a draw from a seeded xoshiro256** generator. The same seed and
 * inputs give the same tokens.
 *
 * Owns: a candidate buffer and a per-token count table sized for the vocabulary
 * at sampler_create; sampling allocates nothing. One sampler per sequence. */
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
/* Picks the next token. logits (n_vocab) are not modified. */
int32_t sampler_sample(sampler *s, const float *logits);

#endif
