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
#include "tp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <vector>

extern "C" {
#include "engine.h"
#include "model.h"
#include "sampler.h"
}

namespace {

struct runner {
    const engine_ops *ops;
    engine *g;
    int bps; // blocks per slot
    std::vector<int32_t> blocks;
};

int open_runner(runner *r, const engine_ops *ops, const model *m, const engine_opts *o, err *e) {
    r->ops = ops;
    r->g = NULL;
    engine_plan p;
    int rc = ops->plan(m, o, &p, e);
    if (rc) return rc;
    if ((rc = ops->create(&r->g, m, o, e))) return rc;
    r->bps = (o->n_ctx + p.kv_block - 1) / p.kv_block;
    r->blocks.resize((size_t)o->max_seqs * r->bps);
    for (size_t i = 0; i < r->blocks.size(); i++) r->blocks[i] = (int32_t)i;
    return 0;
}

double margin_of(const float *l, int V) {
    float a = -INFINITY, b = -INFINITY;
    for (int i = 0; i < V; i++) {
        if (l[i] > a) { b = a; a = l[i]; }
        else if (l[i] > b) b = l[i];
    }
    return (double)a - b;
}

double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// n greedy tokens after prompt in slot 0; first-step logits to *first, margins per step.
int greedy(runner *r, const std::vector<int32_t> &prompt, int n, std::vector<int32_t> &out, std::vector<float> *first,
           std::vector<double> *margins, int V, err *e) {
    out.clear();
    int rc = r->ops->slot_reset(r->g, 0, prompt.data(), (int)prompt.size(), e);
    if (rc) return rc;
    sampler_params sp;
    sampler_default_params(&sp);
    sp.temperature = 0;
    engine_seq s;
    memset(&s, 0, sizeof s);
    s.tokens = prompt.data();
    s.n = (int)prompt.size();
    s.blocks = r->blocks.data();
    s.want = ENGINE_WANT_LOGITS;
    for (int step = 0; step < n; step++) {
        if ((rc = r->ops->forward(r->g, &s, 1, e))) return rc;
        if ((first && step == 0) || margins) {
            const float *l = r->ops->logits(r->g, 0, e);
            if (!l) return ERR_IO;
            if (first && step == 0) first->assign(l, l + V);
            if (margins) margins->push_back(margin_of(l, V));
        }
        engine_sample_in in;
        memset(&in, 0, sizeof in);
        in.sp = &sp;
        engine_sample_out so;
        if ((rc = r->ops->sample(r->g, &in, 1, &so, e))) return rc;
        out.push_back(so.token);
        if ((rc = r->ops->slot_accept(r->g, 0, so.token, e))) return rc;
        s.pos += s.n;
        s.tokens = &out.back();
        s.n = 1;
    }
    return 0;
}

// Decode speed: B sequences, a prompt of 16 tokens each, then `steps` steps of B tokens
// (forward + greedy sampling), timed after 4 warm-up steps. Generated tokens per second.
int decode_speed(runner *r, int B, int steps, int V, double *tps, err *e) {
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
    runner ref{}, grp{};
    int rc;
    if ((rc = open_runner(&ref, &engine_cuda_ops, m, &o, e)) ||
        (rc = open_runner(&grp, nccl ? &engine_tp_ops : &tp_local_ops, m, &ot, e))) {
        if (ref.g) ref.ops->destroy(ref.g);
        model_free(m);
        return -1;
    }
    fprintf(f, "# tensor-parallel check: %s (%s, %d layers, vocab %d), kv %s, %d ranks %s\n", path, m->arch_name,
            m->hp.n_layer, V, engine_kv_type_name((engine_kv_type)kv_type), par->size,
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
    for (int i = 0; i < NP && !rc; i++) {
        for (int k = 0; k < lens[i]; k++) prompts[i].push_back((int32_t)(rnd() % (uint64_t)V));
        std::vector<int32_t> tr, tg;
        std::vector<float> lr, lg;
        std::vector<double> margins;
        if ((rc = greedy(&ref, prompts[i], N, tr, &lr, &margins, V, e))) break;
        if ((rc = greedy(&grp, prompts[i], N, tg, &lg, NULL, V, e))) break;
        double num = 0, den = 0, mx = 0, scale = 0;
        int fin = 1;
        for (int k = 0; k < V; k++) {
            if (!isfinite(lg[k])) fin = 0;
            const double d = (double)lg[k] - lr[k];
            num += d * d;
            den += (double)lr[k] * lr[k];
            mx = std::max(mx, fabs(d));
            scale = std::max(scale, fabs((double)lr[k]));
        }
        const double rel = sqrt(num / (den > 0 ? den : 1));
        const bool lok = fin && rel <= ltol;
        fails += !lok;
        fprintf(f, "%s - tp%d logits, prompt %d tokens: rel L2 %.2e (tol %.0e), max |diff| %.2e of max |logit| %.1f\n",
                lok ? "ok" : "not ok", par->size, lens[i], rel, ltol, mx, scale);
        int div = -1;
        for (int k = 0; k < N; k++)
            if (tr[k] != tg[k]) { div = k; break; }
        const double tie = std::max(10 * mx, 1e-3 * scale);
        const bool gok = div < 0 || margins[div] <= tie;
        fails += !gok;
        if (div < 0) fprintf(f, "ok - tp%d greedy %d tokens after %d equal the whole engine's\n", par->size, N, lens[i]);
        else fprintf(f, "%s - tp%d greedy after %d: first divergence at step %d, margin %.3g (near-tie bound %.3g)\n",
                     gok ? "ok" : "not ok", par->size, lens[i], div, margins[div], tie);
        solo[i] = tg;
    }
    // continuous batching on the group: prompts join at staggered steps
    if (!rc) {
        sampler_params sp;
        sampler_default_params(&sp);
        sp.temperature = 0;
        std::vector<std::vector<int32_t>> got(4);
        std::vector<int> pos(4, 0), started(4, 0);
        for (int i = 0; i < NP && !rc; i++) rc = grp.ops->slot_reset(grp.g, i, prompts[i].data(), (int)prompts[i].size(), e);
        for (int step = 0; step < N + 8 && !rc; step++) {
            engine_seq seqs[4];
            int idx[4], n = 0;
            for (int i = 0; i < NP; i++) {
                if (step < 2 * i || (int)got[i].size() >= N) continue;
                engine_seq &s = seqs[n];
                memset(&s, 0, sizeof s);
                if (!started[i]) { s.tokens = prompts[i].data(); s.n = (int)prompts[i].size(); started[i] = 1; }
                else { s.tokens = &got[i].back(); s.n = 1; }
                s.pos = pos[i];
                s.blocks = grp.blocks.data() + (size_t)i * grp.bps;
                s.slot = i;
                s.want = ENGINE_WANT_LOGITS;
                pos[i] += s.n;
                idx[n++] = i;
            }
            if (!n) continue;
            if ((rc = grp.ops->forward(grp.g, seqs, n, e))) break;
            engine_sample_in in[4];
            engine_sample_out so[4];
            for (int k = 0; k < n; k++) {
                memset(&in[k], 0, sizeof in[k]);
                in[k].seq = k;
                in[k].sp = &sp;
            }
            if ((rc = grp.ops->sample(grp.g, in, n, so, e))) break;
            for (int k = 0; k < n && !rc; k++) {
                got[idx[k]].push_back(so[k].token);
                rc = grp.ops->slot_accept(grp.g, idx[k], so[k].token, e);
            }
        }
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
