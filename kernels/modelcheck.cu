// modelcheck.cu — the model-level check (cuda_model_check): the CUDA engine against the
// CPU engine (the reference) on one model file, through engine.h only.
//
// For random prompts of 1, 7, 67 and 300 tokens: first-step logits (relative L2 and max
// abs difference against the CPU's), 32 greedy tokens (equal, or a first divergence at a
// step where the CPU's top-2 margin is a near-tie, reported with the margin), the same 32
// steps with temperature 0.8 / top-p 0.9 and the same uniform draws (agreement reported);
// then every prompt decoded again together in one continuously batched run on the GPU
// (prefill of some sequences while others decode), each compared with its solo GPU run.
#include "cuda.h"
#include "cuda_kern.h"
#include "enginecheck.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

extern "C" {
#include "engine.h"
#include "model.h"
#include "sampler.h"
}

extern "C" int cuda_model_check(void *file, const char *path, int kv_type, err *e) {
    FILE *f = file ? (FILE *)file : stdout;
    // two instances of the model: on an integrated GPU the CUDA engine releases the host
    // pages of the weights it has uploaded, and the CPU engine computes from its own copy
    model *m = NULL, *mg = NULL;
    model_load_opts lo;
    memset(&lo, 0, sizeof lo);
    int rc = model_load(&m, path, &lo, e);
    if (rc) return -1;
    if ((rc = model_load(&mg, path, &lo, e))) {
        model_free(m);
        return -1;
    }
    const int quick = getenv("SPARKD_MODELCHECK_QUICK") != NULL; // compute-sanitizer runs
    const int V = m->hp.n_vocab;
    engine_opts o;
    memset(&o, 0, sizeof o);
    o.n_threads = 16;
    o.n_ctx = 512;
    o.max_seqs = 4;
    o.max_tokens = 512;
    o.kv_type = (engine_kv_type)kv_type;
    echeck_runner cpu{}, gpu{};
    int fails = 0;
    if ((rc = echeck_open(&cpu, &engine_cpu_ops, m, &o, e)) || (rc = echeck_open(&gpu, &engine_cuda_ops, mg, &o, e))) {
        if (cpu.g) cpu.ops->destroy(cpu.g);
        model_free(m);
        model_free(mg);
        return -1;
    }
    fprintf(f, "# model check: %s (%s, %d layers, vocab %d), kv %s\n", path, m->arch_name, m->hp.n_layer, V,
            engine_kv_type_name((engine_kv_type)kv_type));
    const int lens[4] = {1, 7, 67, 300};
    const int N = quick ? 4 : 32, NP = quick ? 2 : 4;
    // tolerance of the first-step logits: f32 KV stores what the CPU stores; rounding KV
    // to 16 or 8 bits turns 1e-7 input differences into whole-step differences of a few
    // elements (both engines round the same way, from slightly different inputs)
    // Precision fast (SPARKD_MM_FAST, or SPARKD_GEMV_DP4A forcing the int8 GEMV): every
    // decode product rounds its input to int8 per block of 32 (step amax / 127), an error
    // of ~(amax / 127) / sqrt(12) ~ 0.6% of the input's RMS per element, ~0.6% of each
    // product after the sum over K; through the layers the logits move by ~1e-2 (rel L2).
    // Bound 5e-2: still fails on a wiring bug (wrong input, row, format or path: rel L2 of
    // order 1); the per-format arithmetic is checked at 2e-6 against an int8 reference by
    // selftest (gemv-dp4a lines).
    const bool fast = getenv("SPARKD_MM_FAST") || (getenv("SPARKD_GEMV_DP4A") && atoi(getenv("SPARKD_GEMV_DP4A")));
    const double ltol = fast ? 5e-2 : kv_type == ENGINE_KV_F32 ? 1e-4 : 1e-3;
    if (fast) fprintf(f, "# precision fast: logits bound %.0e (int8 decode inputs)\n", ltol);
    std::vector<std::vector<int32_t>> prompts(4), solo(4);
    uint64_t x = 0x5eed1234ull ^ (uint64_t)V;
    auto rnd = [&]() { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x; };
    sampler_params greedy, hot;
    sampler_default_params(&greedy);
    greedy.temperature = 0;
    sampler_default_params(&hot);
    hot.temperature = 0.8f;
    hot.top_p = 0.9f;
    const echeck_names names = {"model", "the CPU's", "CPU margin"};
    const uint64_t greedy_seed = 1;
    for (int i = 0; i < NP && !rc; i++) {
        for (int k = 0; k < lens[i]; k++) prompts[i].push_back((int32_t)(rnd() % (uint64_t)V));
        if ((rc = echeck_greedy_case(f, &names, &cpu, &gpu, prompts[i], N, V, ltol, &greedy_seed, solo[i], &fails, e)))
            break;
        std::vector<int32_t> sc, sg;
        const uint64_t seed = 77 + i;
        if ((rc = echeck_generate(&cpu, 1, prompts[i], N, &hot, &seed, sc, NULL, NULL, V, e))) break;
        if ((rc = echeck_generate(&gpu, 1, prompts[i], N, &hot, &seed, sg, NULL, NULL, V, e))) break;
        int agree = 0;
        while (agree < N && sc[agree] == sg[agree]) agree++;
        fprintf(f, "# model sampled (T 0.8, top-p 0.9, same draws) after %d: %d of %d tokens agree before the first difference\n",
                lens[i], agree, N);
    }
    // continuous batching on the GPU: prompts start at staggered steps, so prefill
    // chunks and single-token decodes share forward calls
    if (!rc) {
        std::vector<std::vector<int32_t>> got;
        rc = echeck_batched(&gpu, prompts, NP, N, &greedy, got, e);
        for (int i = 0; i < NP && !rc; i++) {
            const bool same = got[i] == solo[i];
            int div = 0;
            while (div < N && div < (int)got[i].size() && got[i][div] == solo[i][div]) div++;
            // precision fast: a batched step runs the tensor-core product where the solo
            // decode runs the int8 GEMV, so the two may part at a near-tie (reported only)
            fails += !same && !fast;
            fprintf(f, "%s - batched GPU run equals its solo run (prompt %d tokens)%s\n",
                    same ? "ok" : fast ? "# (fast, not checked)" : "not ok", lens[i], same ? "" : " — differs");
            if (!same) fprintf(f, "# first difference at step %d\n", div);
        }
    }
    if (rc) {
        fprintf(f, "not ok - model check stopped: %s\n", e->msg);
        fails++;
    }
    engine_usage u;
    gpu.ops->usage(gpu.g, &u);
    fprintf(f, "# GPU engine memory: weights %.1f MB, KV %.1f MB, work %.1f MB\n", u.weights_bytes / 1048576.0,
            u.kv_bytes / 1048576.0, u.work_bytes / 1048576.0);
    cpu.ops->destroy(cpu.g);
    gpu.ops->destroy(gpu.g);
    model_free(m);
    model_free(mg);
    return fails;
}
