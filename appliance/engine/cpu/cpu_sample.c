/* cpu_sample.c — sampling on the CPU backend: one sampler (penalty history) per
 * slot, the pick with the caller's uniform draw (sampler_pick), and logprobs of
 * the raw logits. See engine.h for the contract. */
#include <math.h>

#include "cpu.h"

static int check_slot(const engine *c, int slot, err *e) {
    if (slot < 0 || slot >= c->opt.max_seqs) return err_set(e, ERR_INVALID, "slot %d out of range", slot);
    return 0;
}

int cpu_slot_reset(engine *c, int slot, const int32_t *tokens, int n, err *e) {
    int rc = check_slot(c, slot, e);
    if (rc) return rc;
    sampler_clear(c->samplers[slot]);
    for (int i = 0; i < n; i++) sampler_accept(c->samplers[slot], tokens[i]);
    return 0;
}

int cpu_slot_accept(engine *c, int slot, int32_t token, err *e) {
    int rc = check_slot(c, slot, e);
    if (rc) return rc;
    sampler_accept(c->samplers[slot], token);
    return 0;
}

const float *cpu_logits(engine *c, int seq, err *e) {
    if (seq < 0 || seq >= c->n_last || c->out_rows[seq] < 0) {
        err_set(e, ERR_INVALID, "forward entry %d has no logits", seq);
        return NULL;
    }
    return c->logits + (size_t)seq * (size_t)c->m->hp.n_vocab;
}

/* log-softmax of the raw logits: the chosen token's value and the n best (n <= 20),
 * by descending logprob, ties toward the lower id. */
static void logprobs(const float *logits, int V, int32_t tok, int n, engine_sample_out *o) {
    float mx = logits[0];
    for (int i = 1; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)(logits[i] - mx));
    const float lse = mx + (float)log(sum);
    o->logprob = logits[tok] - lse;
    o->n_top = 0;
    for (int i = 0; i < V && n > 0; i++) { /* insertion into the top n */
        const float lp = logits[i] - lse;
        int k = o->n_top;
        if (k == n && lp <= o->top_logprobs[k - 1]) continue;
        if (k < n) o->n_top++;
        else k = n - 1;
        while (k > 0 && o->top_logprobs[k - 1] < lp) {
            o->top_logprobs[k] = o->top_logprobs[k - 1];
            o->top_ids[k] = o->top_ids[k - 1];
            k--;
        }
        o->top_logprobs[k] = lp;
        o->top_ids[k] = i;
    }
}

int cpu_sample(engine *c, const engine_sample_in *in, int n, engine_sample_out *out, err *e) {
    const int V = c->m->hp.n_vocab;
    for (int i = 0; i < n; i++) {
        const engine_sample_in *s = &in[i];
        const float *l = cpu_logits(c, s->seq, e);
        if (!l) return ERR_INVALID;
        if (s->n_top < 0 || s->n_top > ENGINE_MAX_TOP)
            return err_set(e, ERR_INVALID, "n_top %d out of range [0, %d]", s->n_top, ENGINE_MAX_TOP);
        if (!(s->u >= 0.0f && s->u < 1.0f)) return err_set(e, ERR_INVALID, "uniform draw out of [0, 1)");
        engine_sample_out *o = &out[i];
        o->token = sampler_pick(c->samplers[c->seq_slot[s->seq]], s->sp, l, s->u, s->mask, s->bias_ids, s->bias_vals,
                                s->n_bias);
        o->logprob = 0.0f;
        o->n_top = 0;
        if (s->logprob || s->n_top) logprobs(l, V, o->token, s->n_top, o);
    }
    return 0;
}
