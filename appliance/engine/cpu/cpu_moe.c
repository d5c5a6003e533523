/* cpu_moe.c — the mixture-of-experts FFN on the CPU: the readable reference the GPU
 * path is checked against. For the n_tok rows of xn (normed FFN input), into o:
 *
 *   logits[t] = xn[t] Router^T (+ router_b)                      (n_expert per row)
 *   gating, by kind:
 *     TOPK_SOFTMAX (gpt-oss):   the k largest logits, w = softmax over those k
 *     SOFTMAX_TOPK (qwen3moe):  p = softmax over all experts, the k largest p,
 *                               w = those p (divided by their sum when norm_topk)
 *   o[t] = sum over the chosen experts e of  w_e * FFN_e(xn[t]), where
 *     FFN_e(x) = (act(x Wg_e^T + bg_e) * (x Wu_e^T + bu_e)) Wd_e^T + bd_e
 *   with Wg_e, Wu_e, Wd_e the e-th slices of the stacked tensors (ne[2] = expert), read
 *   in place in their stored type (MXFP4, K-quants, ...) and the model's activation
 *   (SwiGLU, or gpt-oss's clamped SwiGLU).
 *
 * Rows are grouped by expert first (moe_first / moe_row), so each chosen expert's
 * weights are read once per call for all its rows: one product of its gathered rows
 * against its slice, threads over the slice's output rows. Ties between equal router
 * values go to the lower expert index.
 *
 * A shard split by experts (shard.h) holds experts [expert0, expert0 + n_expert_local)
 * only: it routes over all of them as above but sums only the chosen experts it holds
 * (the other ranks add the rest: cpu_set_tp's hook after the FFN). */
#include <math.h>
#include <string.h>

#include "cpu.h"

static const float *f32(const model_tensor *t) { return t ? (const float *)t->data : NULL; }

/* The e-th expert's matrix of a stacked tensor, as a 2-D tensor over the same bytes. */
static model_tensor expert_slice(const model_tensor *t, int e) {
    model_tensor s = *t;
    s.n_dims = 2;
    s.ne[2] = 1;
    s.nbytes = (uint64_t)t->ne[1] * t->row_bytes;
    s.data = (const uint8_t *)t->data + (uint64_t)e * s.nbytes;
    s.offset = t->offset + (uint64_t)e * s.nbytes;
    return s;
}

/* Picks k of the n values in v (largest first; ties to the lower index) into id. */
static void top_k(const float *v, int n, int k, int32_t *id) {
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            int taken = 0;
            for (int q = 0; q < j; q++) taken |= id[q] == i;
            if (!taken && (best < 0 || v[i] > v[best])) best = i;
        }
        id[j] = best;
    }
}

/* Row t's experts and weights from its router logits (overwritten with the gating
 * probabilities of SOFTMAX_TOPK). */
static void route(const model_moe *M, float *logit, int32_t *id, float *w) {
    const int n = M->n_expert, k = M->n_used;
    if (M->router_b) {
        const float *b = f32(M->router_b);
        for (int i = 0; i < n; i++) logit[i] += b[i];
    }
    if (M->gating == MODEL_MOE_SOFTMAX_TOPK) {
        float mx = logit[0], sum = 0.0f;
        for (int i = 1; i < n; i++) mx = logit[i] > mx ? logit[i] : mx;
        for (int i = 0; i < n; i++) sum += logit[i] = expf(logit[i] - mx);
        for (int i = 0; i < n; i++) logit[i] /= sum;
        top_k(logit, n, k, id);
        float s = 0.0f;
        for (int j = 0; j < k; j++) s += w[j] = logit[id[j]];
        if (M->norm_topk)
            for (int j = 0; j < k; j++) w[j] /= s;
    } else { /* MODEL_MOE_TOPK_SOFTMAX */
        top_k(logit, n, k, id);
        const float mx = logit[id[0]];
        float s = 0.0f;
        for (int j = 0; j < k; j++) s += w[j] = expf(logit[id[j]] - mx);
        for (int j = 0; j < k; j++) w[j] /= s;
    }
}

void cpu_moe(engine *c, int layer) {
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    const model_moe *M = &m->layers[layer].moe;
    const int T = c->n_tok, E = M->n_expert, k = M->n_used, F = M->ffn_dim, dim = hp->dim;
    const int e0 = M->expert0, e1 = e0 + (M->n_expert_local ? M->n_expert_local : E); /* the experts held */

    /* router and gating */
    cpu_matmul3(c, c->xn, T, 1, M->router, c->moe_logits, NULL, NULL, NULL, NULL);
    for (int t = 0; t < T; t++) route(M, c->moe_logits + (size_t)t * E, c->moe_id + (size_t)t * k, c->moe_w + (size_t)t * k);

    /* group (row, weight) entries by expert: counting sort over expert ids */
    memset(c->moe_first, 0, sizeof(int32_t) * (size_t)(E + 1));
    for (int i = 0; i < T * k; i++) c->moe_first[c->moe_id[i] + 1]++;
    for (int e = 0; e < E; e++) c->moe_first[e + 1] += c->moe_first[e];
    for (int t = 0; t < T; t++)
        for (int j = 0; j < k; j++) {
            const int e = c->moe_id[t * k + j];
            /* moe_first[e] walks forward while filling; restored below */
            c->moe_row[c->moe_first[e]] = t;
            c->moe_rw[c->moe_first[e]] = c->moe_w[t * k + j];
            c->moe_first[e]++;
        }
    for (int e = E; e > 0; e--) c->moe_first[e] = c->moe_first[e - 1];
    c->moe_first[0] = 0;

    memset(c->o, 0, sizeof(float) * (size_t)T * dim);
    const float *bg = f32(M->gate_b), *bu = f32(M->up_b), *bd = f32(M->down_b);
    for (int e = e0; e < e1; e++) { /* pairs routed to experts not held add nothing here */
        const int r0 = c->moe_first[e], n = c->moe_first[e + 1] - r0, el = e - e0;
        if (n == 0) continue;
        for (int r = 0; r < n; r++)
            memcpy(c->moe_x + (size_t)r * dim, c->xn + (size_t)c->moe_row[r0 + r] * dim, sizeof(float) * dim);
        const model_tensor wg = expert_slice(M->gate_exps, el), wu = expert_slice(M->up_exps, el),
                           wd = expert_slice(M->down_exps, el);
        cpu_matmul3(c, c->moe_x, n, 2, &wg, c->moe_g, &wu, c->moe_u, NULL, NULL);
        for (int r = 0; r < n; r++) {
            float *g = c->moe_g + (size_t)r * F, *u = c->moe_u + (size_t)r * F;
            if (bg)
                for (int i = 0; i < F; i++) g[i] += bg[(size_t)el * F + i];
            if (bu)
                for (int i = 0; i < F; i++) u[i] += bu[(size_t)el * F + i];
            cpu_act_rows(hp, g, u, F);
        }
        cpu_matmul3(c, c->moe_g, n, 1, &wd, c->moe_y, NULL, NULL, NULL, NULL);
        for (int r = 0; r < n; r++) {
            const float *y = c->moe_y + (size_t)r * dim;
            float *o = c->o + (size_t)c->moe_row[r0 + r] * dim;
            const float w = c->moe_rw[r0 + r];
            for (int i = 0; i < dim; i++) o[i] += w * (y[i] + (bd ? bd[(size_t)el * dim + i] : 0.0f));
        }
    }
}
