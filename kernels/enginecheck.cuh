// enginecheck.cuh — host-side helpers of the engine-against-engine checks (modelcheck.cu:
// the CUDA engine against the CPU engine; tpcheck.cu: the tensor-parallel group against the
// whole CUDA engine), through engine.h only: an engine with its block table, generation in
// one slot, the first-step logits comparison with the greedy near-tie rule, and the
// continuously batched run (internal; not a C interface).
#ifndef SPARKD_ENGINECHECK_CUH
#define SPARKD_ENGINECHECK_CUH

#include <stdint.h>
#include <stdio.h>

#include <vector>

extern "C" {
#include "engine.h"
#include "model.h"
#include "sampler.h"
}

// One engine under test: its ops, the instance and a block table of max_seqs slots,
// bps blocks each (slot s owns blocks [s*bps, (s+1)*bps), numbered in order).
struct echeck_runner {
    const engine_ops *ops;
    engine *g;
    int bps; // blocks per slot
    std::vector<int32_t> blocks;
};

// Plans and creates the engine for m under o; r->g stays NULL when create did not succeed.
int echeck_open(echeck_runner *r, const engine_ops *ops, const model *m, const engine_opts *o, err *e);

// Generates n tokens after prompt in slot `slot` with sampler sp. Each step's uniform draw
// comes from a sampler_rng seeded with *seed (NULL: every draw is 0). The logits of the
// first step go to *first (when non-NULL, V floats), the top-2 margin of every step to
// *margins (when non-NULL).
int echeck_generate(echeck_runner *r, int slot, const std::vector<int32_t> &prompt, int n, const sampler_params *sp,
                    const uint64_t *seed, std::vector<int32_t> &out, std::vector<float> *first,
                    std::vector<double> *margins, int V, err *e);

// What a check line is called: name "model" or "tp2"; ref "the CPU's" (whose tokens the
// test's equal); margin "CPU margin" (the reference's top-2 margin at a divergence).
struct echeck_names {
    const char *name;
    const char *ref;
    const char *margin;
};

// The test engine's first-step logits against the reference's (relative L2 within ltol,
// all finite) and its N greedy tokens (equal, or a first divergence at a step where the
// reference's top-2 margin is within the near-tie bound max(10 max|diff|, 1e-3 max|logit|)).
// Prints one line for each (TAP "ok"/"not ok"), adds the failures to *fails and leaves the
// test engine's tokens in toks. Both generate in slot 0; greedy_seed as echeck_generate's seed.
int echeck_greedy_case(FILE *f, const echeck_names *nm, echeck_runner *ref, echeck_runner *test,
                       const std::vector<int32_t> &prompt, int N, int V, double ltol, const uint64_t *greedy_seed,
                       std::vector<int32_t> &toks, int *fails, err *e);

// The first NP prompts decoded together on one engine with sampler sp (slot i, its own
// blocks): sequence i joins at step 2i with its whole prompt (prefill chunks and
// single-token decodes share forward calls) and stops after N tokens; got[i] gets them.
int echeck_batched(echeck_runner *r, const std::vector<std::vector<int32_t>> &prompts, int NP, int N,
                   const sampler_params *sp, std::vector<std::vector<int32_t>> &got, err *e);

#endif
