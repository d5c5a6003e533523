// tpcheck.cu — the tensor-parallel check (cuda_tp_check): the sharded engine against the
// whole-model CUDA engine on one model file, through engine.h only.
//
// The group is either N shards in this process on one GPU (tp_local_ops: partial sums
// added on the device) or this process as rank 0 of an NCCL group whose other ranks run
// `sparkd serve` with [parallel] rank > 0 (engine_tp_ops). For random prompts of 1, 7, 67
// and 300 tokens: first-step logits (relative L2 and max |diff| against the whole
// engine's), 32 greedy tokens (equal, or a first divergence where the reference's top-2
// margin is a near-tie); then the four prompts continuously batched on the group, each
// equal to its solo run; then decode speed at 1 and 64 sequences, group and whole engine
// in the same process (the whole engine on this rank's GPU).
#include "cuda.h"
#include "cuda_kern.h"
#include "enginecheck.cuh"
#include "tp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vector>

extern "C" {
#include "engine.h"
#include "model.h"
#include "sampler.h"
}

namespace {

double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// Decode speed: B sequences, a prompt of 16 tokens each, then `steps` steps of B tokens
// (forward + greedy sampling), timed after 4 warm-up steps. Generated tokens per second.
int decode_speed(echeck_runner *r, int B, int steps, int V, double *tps, err *e) {
    std::vector<int32_t> prompt(16), last(B);
    for (int k = 0; k < 16; k++) prompt[k] = (int32_t)((k * 7919 + 13) % V);
    sampler_params sp;
    sampler_default_params(&sp);
    sp.temperature = 0;
    std::vector<engine_seq> seqs(B);
    std::vector<engine_sample_in> in(B);
    std::vector<engine_sample_out> so(B);
    int rc;
    for (int b = 0; b < B; b++) {
        if ((rc = r->ops->slot_reset(r->g, b, prompt.data(), 16, e))) return rc;
        engine_seq &s = seqs[b];
        memset(&s, 0, sizeof s);
        s.tokens = prompt.data();
        s.n = 16;
        s.blocks = r->blocks.data() + (size_t)b * r->bps;
        s.slot = b;
        s.want = ENGINE_WANT_LOGITS;
        memset(&in[b], 0, sizeof in[b]);
        in[b].seq = b;
        in[b].sp = &sp;
    }
    double t0 = 0;
    for (int step = 0; step < steps + 5; step++) {
        if (step == 5) t0 = now_s();
        if ((rc = r->ops->forward(r->g, seqs.data(), B, e))) return rc;
        if ((rc = r->ops->sample(r->g, in.data(), B, so.data(), e))) return rc;
        for (int b = 0; b < B; b++) {
            last[b] = so[b].token;
            seqs[b].pos += seqs[b].n;
            seqs[b].n = 1;
            seqs[b].tokens = &last[b];
        }
    }
    *tps = (double)B * steps / (now_s() - t0);
    return 0;
}

} // namespace

extern "C" int cuda_tp_check(void *file, const char *path, int kv_type, const engine_parallel *par, err *e) {
    FILE *f = file ? (FILE *)file : stdout;
    model *m = NULL;
    model_load_opts lo;
    memset(&lo, 0, sizeof lo);
    if (model_load(&m, path, &lo, e)) return -1;
    const int quick = getenv("SPARKD_MODELCHECK_QUICK") != NULL;
    const int nccl = par->addr[0] != 0;
    const int V = m->hp.n_vocab;
    engine_opts o;
    memset(&o, 0, sizeof o);
    o.n_threads = 4;
    o.n_ctx = 512;
    o.max_seqs = 64;
    o.max_tokens = 1024;
    o.kv_type = (engine_kv_type)kv_type;
    o.device = nccl ? par->gpu : 0;
    engine_opts ot = o;
    ot.parallel = par;
    echeck_runner ref{}, grp{};
    int rc;
    if ((rc = echeck_open(&ref, &engine_cuda_ops, m, &o, e)) ||
        (rc = echeck_open(&grp, nccl ? &engine_tp_ops : &tp_local_ops, m, &ot, e))) {
        if (ref.g) ref.ops->destroy(ref.g);
        model_free(m);
        return -1;
    }
    fprintf(f, "# tensor-parallel check: %s (%s, %d layers, vocab %d), kv %s, %d ranks, moe_split %s, %s\n", path,
            m->arch_name, m->hp.n_layer, V, engine_kv_type_name((engine_kv_type)kv_type), par->size,
            engine_moe_split_name(par->moe_split),
            nccl ? "over NCCL (this process is rank 0)" : "in one process on one GPU (partial sums added on the device)");
    int fails = 0;
    const int lens[4] = {1, 7, 67, 300};
    const int N = quick ? 4 : 32, NP = quick ? 2 : 4;
    // the group sums each product's halves separately: rounding differs from the whole
    // product's at ~1e-7 relative per layer
    const double ltol = kv_type == ENGINE_KV_F32 ? 1e-4 : 1e-3;
    std::vector<std::vector<int32_t>> prompts(4), solo(4);
    uint64_t x = 0x7e115eedull ^ (uint64_t)V;
    auto rnd = [&]() { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x; };
    char name[16];
    snprintf(name, sizeof name, "tp%d", par->size);
    const echeck_names names = {name, "the whole engine's", "margin"};
    for (int i = 0; i < NP && !rc; i++) {
        for (int k = 0; k < lens[i]; k++) prompts[i].push_back((int32_t)(rnd() % (uint64_t)V));
        if ((rc = echeck_greedy_case(f, &names, &ref, &grp, prompts[i], N, V, ltol, NULL, solo[i], &fails, e))) break;
    }
    // continuous batching on the group: prompts join at staggered steps
    if (!rc) {
        sampler_params sp;
        sampler_default_params(&sp);
        sp.temperature = 0;
        std::vector<std::vector<int32_t>> got;
        rc = echeck_batched(&grp, prompts, NP, N, &sp, got, e);
        for (int i = 0; i < NP && !rc; i++) {
            const bool same = got[i] == solo[i];
            fails += !same;
            fprintf(f, "%s - tp%d batched run equals its solo run (prompt %d tokens)\n", same ? "ok" : "not ok", par->size,
                    lens[i]);
        }
    }
    if (!rc && !quick && nccl) { // (one GPU: both shards share it, a time says nothing)
        const int Bs[2] = {1, 64};
        for (int k = 0; k < 2 && !rc; k++) {
            double a = 0, b = 0;
            if ((rc = decode_speed(&ref, Bs[k], 64, V, &a, e)) || (rc = decode_speed(&grp, Bs[k], 64, V, &b, e))) break;
            fprintf(f, "# tp%d decode speed, %d sequence(s): whole engine %.1f tok/s, group %.1f tok/s (x%.2f)\n", par->size,
                    Bs[k], a, b, b / a);
        }
    }
    if (rc) {
        fprintf(f, "not ok - tp%d check stopped: %s\n", par->size, e->msg);
        fails++;
    }
    engine_usage u;
    grp.ops->usage(grp.g, &u);
    fprintf(f, "# rank 0 memory: weights %.1f MB, KV %.1f MB, work %.1f MB\n", u.weights_bytes / 1048576.0,
            u.kv_bytes / 1048576.0, u.work_bytes / 1048576.0);
    grp.ops->destroy(grp.g);
    ref.ops->destroy(ref.g);
    model_free(m);
    return fails;
}
