// enginecheck.cu — host-side helpers of the engine-against-engine checks (enginecheck.cuh);
// no kernels.
#include "enginecheck.cuh"

#include <math.h>
#include <string.h>

#include <algorithm>

int echeck_open(echeck_runner *r, const engine_ops *ops, const model *m, const engine_opts *o, err *e) {
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

// The gap between the largest and the second largest of l[0..V).
static double margin_of(const float *l, int V) {
    float a = -INFINITY, b = -INFINITY;
    for (int i = 0; i < V; i++) {
        if (l[i] > a) { b = a; a = l[i]; }
        else if (l[i] > b) b = l[i];
    }
    return (double)a - b;
}

int echeck_generate(echeck_runner *r, int slot, const std::vector<int32_t> &prompt, int n, const sampler_params *sp,
                    const uint64_t *seed, std::vector<int32_t> &out, std::vector<float> *first,
                    std::vector<double> *margins, int V, err *e) {
    out.clear();
    int rc = r->ops->slot_reset(r->g, slot, prompt.data(), (int)prompt.size(), e);
    if (rc) return rc;
    sampler_rng rng;
    if (seed) sampler_rng_seed(&rng, *seed);
    engine_seq s;
    memset(&s, 0, sizeof s);
    s.tokens = prompt.data();
    s.n = (int)prompt.size();
    s.pos = 0;
    s.blocks = r->blocks.data() + (size_t)slot * r->bps;
    s.slot = slot;
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
        in.seq = 0;
        in.sp = sp;
        in.u = seed ? sampler_rng_next(&rng) : 0.0f;
        engine_sample_out so;
        if ((rc = r->ops->sample(r->g, &in, 1, &so, e))) return rc;
        out.push_back(so.token);
        if ((rc = r->ops->slot_accept(r->g, slot, so.token, e))) return rc;
        s.pos += s.n;
        s.tokens = &out.back();
        s.n = 1;
    }
    return 0;
}

int echeck_greedy_case(FILE *f, const echeck_names *nm, echeck_runner *ref, echeck_runner *test,
                       const std::vector<int32_t> &prompt, int N, int V, double ltol, const uint64_t *greedy_seed,
                       std::vector<int32_t> &toks, int *fails, err *e) {
    sampler_params greedy;
    sampler_default_params(&greedy);
    greedy.temperature = 0;
    std::vector<int32_t> tr;
    std::vector<float> lr, lg;
    std::vector<double> margins;
    int rc;
    if ((rc = echeck_generate(ref, 0, prompt, N, &greedy, greedy_seed, tr, &lr, &margins, V, e))) return rc;
    if ((rc = echeck_generate(test, 0, prompt, N, &greedy, greedy_seed, toks, &lg, NULL, V, e))) return rc;
    const int len = (int)prompt.size();
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
    *fails += !lok;
    fprintf(f, "%s - %s logits, prompt %d tokens: rel L2 %.2e (tol %.0e), max |diff| %.2e of max |logit| %.1f\n",
            lok ? "ok" : "not ok", nm->name, len, rel, ltol, mx, scale);
    int div = -1;
    for (int k = 0; k < N; k++)
        if (tr[k] != toks[k]) { div = k; break; }
    // a divergence is a near-tie when the reference's top-2 margin there is within 10x the
    // first-step difference (or 1e-3 of the logit scale)
    const double tie = std::max(10 * mx, 1e-3 * scale);
    const bool gok = div < 0 || margins[div] <= tie;
    *fails += !gok;
    if (div < 0) fprintf(f, "ok - %s greedy %d tokens after %d equal %s\n", nm->name, N, len, nm->ref);
    else fprintf(f, "%s - %s greedy after %d: first divergence at step %d, %s %.3g (near-tie bound %.3g)\n",
                 gok ? "ok" : "not ok", nm->name, len, div, nm->margin, margins[div], tie);
    return 0;
}

int echeck_batched(echeck_runner *r, const std::vector<std::vector<int32_t>> &prompts, int NP, int N,
                   const sampler_params *sp, std::vector<std::vector<int32_t>> &got, err *e) {
    got.assign(prompts.size(), std::vector<int32_t>());
    std::vector<int> pos(NP, 0), started(NP, 0);
    std::vector<engine_seq> seqs(NP);
    std::vector<engine_sample_in> in(NP);
    std::vector<engine_sample_out> so(NP);
    std::vector<int> idx(NP);
    int rc = 0;
    for (int i = 0; i < NP && !rc; i++) rc = r->ops->slot_reset(r->g, i, prompts[i].data(), (int)prompts[i].size(), e);
    for (int step = 0; step < N + 8 && !rc; step++) {
        int n = 0;
        for (int i = 0; i < NP; i++) {
            if (step < 2 * i || (int)got[i].size() >= N) continue; // sequence i joins at step 2i
            engine_seq &s = seqs[n];
            memset(&s, 0, sizeof s);
            if (!started[i]) { s.tokens = prompts[i].data(); s.n = (int)prompts[i].size(); started[i] = 1; }
            else { s.tokens = &got[i].back(); s.n = 1; }
            s.pos = pos[i];
            s.blocks = r->blocks.data() + (size_t)i * r->bps;
            s.slot = i;
            s.want = ENGINE_WANT_LOGITS;
            pos[i] += s.n;
            idx[n++] = i;
        }
        if (!n) continue;
        if ((rc = r->ops->forward(r->g, seqs.data(), n, e))) break;
        for (int k = 0; k < n; k++) {
            memset(&in[k], 0, sizeof in[k]);
            in[k].seq = k;
            in[k].sp = sp;
        }
        if ((rc = r->ops->sample(r->g, in.data(), n, so.data(), e))) break;
        for (int k = 0; k < n && !rc; k++) {
            got[idx[k]].push_back(so[k].token);
            rc = r->ops->slot_accept(r->g, idx[k], so[k].token, e);
        }
    }
    return rc;
}
