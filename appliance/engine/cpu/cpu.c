/* cpu.c — the CPU backend's forward pass (engine_cpu_ops). See cpu.h.
 *
 * Per layer (T = new tokens in the batch, rows of every activation buffer):
 *   xn  = rmsnorm(x) * attn_norm
 *   mixer, by kind:
 *     attention: q,k,v = xn Wq^T (+bq), xn Wk^T (+bk), xn Wv^T (+bv); per-head
 *       rmsnorm of q and k when the layer has q_norm/k_norm; RoPE of the layer's
 *       rope at each token's position; K/V of the new tokens -> their blocks;
 *       causal softmax attention (sliding window, sinks) over the blocks -> att;
 *       o = att Wo^T (+bo)
 *   o = rmsnorm(o) * post_attn_norm (if present);  x += o
 *   xn = rmsnorm(x) * ffn_norm
 *   FFN, by kind:
 *     dense: h = act(xn Wg^T) * (xn Wu^T); o = h Wd^T
 *     MoE: router -> top-k experts -> weighted sum of their gated FFNs (cpu_moe.c)
 *   o = rmsnorm(o) * post_ffn_norm (if present);  x += o
 * then rmsnorm(x) * output_norm and the output projection, only for the rows
 * whose logits are wanted (and final_softcap when set). */
#include "cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "sysmem.h"
#include "vec.h"

static const float *f32_ptr(const model_tensor *t) { return t ? (const float *)t->data : NULL; }

static int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }

/* ---- plan ---- */

int cpu_layout_of(const model *m, const engine_opts *o, cpu_layout *l, err *e) {
    const model_hparams *hp = &m->hp;
    memset(l, 0, sizeof *l);
    if (o->n_threads < 1 || o->n_ctx < 1 || o->max_seqs < 1 || o->max_tokens < 1 || o->n_kv_blocks < 0)
        return err_set(e, ERR_INVALID, "engine options must be positive (threads %d, ctx %d, seqs %d, batch %d)",
                       o->n_threads, o->n_ctx, o->max_seqs, o->max_tokens);
    if (!cpu_kv_supported(o->kv_type))
        return err_set(e, ERR_UNSUPPORTED, "kv_type %s is not supported on the CPU", engine_kv_type_name(o->kv_type));
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *L = &m->layers[il];
        if (L->mixer != MODEL_MIXER_ATTENTION)
            return err_set(e, ERR_UNSUPPORTED, "layer %d: mixer kind %d is not supported on the CPU", il, (int)L->mixer);
        if (L->ffn == MODEL_FFN_MOE) {
            const model_moe *M = &L->moe;
            if (M->shared.w_gate)
                return err_set(e, ERR_UNSUPPORTED, "layer %d: shared experts are not supported on the CPU yet", il);
            if (M->n_expert > l->moe_experts) l->moe_experts = M->n_expert;
            if (M->n_used > l->moe_used) l->moe_used = M->n_used;
            if (M->ffn_dim > l->moe_ffn) l->moe_ffn = M->ffn_dim;
        }
    }
    /* every matrix the forward multiplies must have a CPU kernel */
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        const quant_traits *qt = quant_traits_of(t->dtype);
        if (t->n_dims >= 2 && (!qt || !qt->cpu_supported))
            return err_set(e, ERR_UNSUPPORTED, "tensor '%s' has type %s, not supported on the CPU", t->name,
                           qt ? qt->name : "unknown");
    }
    l->n_ctx = o->n_ctx;
    l->max_seqs = o->max_seqs;
    l->max_tokens = o->max_tokens;
    l->n_threads = o->n_threads;
    l->q_dim = hp->n_head * hp->head_dim;
    l->kv_dim = hp->n_head_kv * hp->head_dim;
    l->n_kv_layers = model_n_kv_layers(m);
    int rc = engine_kv_pool_blocks(o, CPU_KV_BLOCK, &l->n_blocks, e);
    if (rc) return rc;
    const uint64_t blocks = (uint64_t)l->n_blocks;
    l->scratch_floats =
        quant_matmul_scratch_floats(max_i64(max_i64(hp->dim, l->moe_ffn), max_i64(hp->ffn_dim, l->q_dim)));
    l->kv_elems = (uint64_t)l->n_kv_layers * blocks * CPU_KV_BLOCK * (uint64_t)l->kv_dim;
    l->kv_scales = engine_kv_scale_bytes(o->kv_type) ? l->kv_elems / (uint64_t)hp->head_dim : 0;
    l->kv_bytes = 2 * (l->kv_elems * (uint64_t)engine_kv_elem_bytes(o->kv_type) + l->kv_scales * sizeof(float));

    const uint64_t T = (uint64_t)o->max_tokens, S = (uint64_t)o->max_seqs;
    uint64_t floats = T * (3 * (uint64_t)hp->dim + 2 * (uint64_t)l->q_dim + 2 * (uint64_t)l->kv_dim +
                           2 * (uint64_t)hp->ffn_dim);                 /* x xn o, q att, k v, gate up */
    floats += S * ((uint64_t)hp->dim + (uint64_t)hp->n_vocab);         /* outx, logits */
    floats += (uint64_t)o->n_threads * ((uint64_t)o->n_ctx + l->scratch_floats); /* scores, mm_scratch */
    floats += (uint64_t)m->n_rope * (uint64_t)(hp->head_dim / 2);      /* inv_freq */
    if (l->moe_experts) {
        const uint64_t E = (uint64_t)l->moe_experts, K = (uint64_t)l->moe_used, F = (uint64_t)l->moe_ffn;
        floats += T * (E + 2 * K + 2 * (uint64_t)hp->dim + 2 * F); /* logits, w, rw, x, y, g, u */
        floats += 2 * T * K + E + 1;                             /* moe_id, moe_row, moe_first (int32) */
    }
    uint64_t bytes = floats * sizeof(float);
    bytes += (uint64_t)hp->n_layer * sizeof(int32_t);                  /* kv_layer */
    bytes += T * (2 * sizeof(int32_t) + sizeof(const int32_t *));      /* tok_pos, tok_ids, tok_blocks */
    bytes += S * 2 * sizeof(int32_t);                                  /* out_rows, seq_slot */
    bytes += S * sizeof(sampler *) + S * sampler_bytes(hp->n_vocab);   /* samplers */
    l->work_bytes = bytes;
    return 0;
}

static int cpu_plan(const model *m, const engine_opts *o, engine_plan *p, err *e) {
    memset(p, 0, sizeof *p);
    cpu_layout l;
    int rc = cpu_layout_of(m, o, &l, e);
    if (rc) return rc;
    p->weights_bytes = m->weights_bytes;
    p->kv_bytes = l.kv_bytes;
    p->work_bytes = l.work_bytes;
    p->total_bytes = p->weights_bytes + p->kv_bytes + p->state_bytes + p->work_bytes;
    p->kv_bytes_per_token = engine_kv_bytes_per_token(m, o->kv_type);
    p->kv_block = CPU_KV_BLOCK;
    p->n_kv_blocks = l.n_blocks;
    p->n_state_slots = 0;
    p->prefix_cache = 1;
    if (sysmem_available(&p->available_bytes, NULL) == 0)
        p->available_from = "/proc/meminfo MemAvailable + SwapFree";
    if ((rc = engine_plan_check_limit(p, o, e))) return rc;
    /* The weights already sit in the model's buffer when it was loaded; what create
     * adds must fit in what is free now. */
    const uint64_t more = p->total_bytes - (m->weights || m->weights_mapped ? p->weights_bytes : 0);
    return sysmem_check(more, m->weights || m->weights_mapped ? "the engine (KV cache + buffers)"
                                                               : "the engine (weights + KV cache + buffers)",
                        e);
}

/* ---- create / destroy ---- */

/* 64-byte aligned, counted into *count (kv or work); NULL for 0 bytes. */
static void *cpu_alloc(uint64_t bytes, uint64_t *count, err *e, int *rc) {
    if (*rc || bytes == 0) return NULL;
    void *p = NULL;
    if (bytes > SIZE_MAX || posix_memalign(&p, 64, (size_t)bytes)) {
        *rc = err_set(e, ERR_NOMEM, "cannot allocate %.1f MB for the CPU engine", (double)bytes / 1e6);
        return NULL;
    }
    *count += bytes;
    return p;
}

static void cpu_destroy(engine *c) {
    if (!c) return;
    if (c->pool) pool_free(c->pool);
    if (c->samplers)
        for (int i = 0; i < c->opt.max_seqs; i++) sampler_free(c->samplers[i]);
    free(c->samplers);
    free(c->x); free(c->xn); free(c->q); free(c->k); free(c->v); free(c->att); free(c->o);
    free(c->gate); free(c->up); free(c->outx); free(c->logits); free(c->scores);
    free(c->mm_scratch); free(c->inv_freq); free(c->kv_layer);
    free(c->k_pool); free(c->v_pool); free(c->k_scale); free(c->v_scale);
    free(c->tok_pos); free(c->tok_blocks); free(c->tok_ids); free(c->out_rows); free(c->seq_slot);
    free(c->moe_logits); free(c->moe_id); free(c->moe_w); free(c->moe_first); free(c->moe_row);
    free(c->moe_rw); free(c->moe_x); free(c->moe_g); free(c->moe_u); free(c->moe_y);
    free(c);
}

static int cpu_create(engine **out, const model *m, const engine_opts *o, err *e) {
    *out = NULL;
    engine_plan plan;
    int rc = cpu_plan(m, o, &plan, e);
    if (rc) return rc;
    if (!m->weights && !m->weights_mapped)
        return err_set(e, ERR_INVALID, "the model was loaded without its weights (header only)");
    engine *c = calloc(1, sizeof *c);
    if (!c) return err_set(e, ERR_NOMEM, "out of memory");
    const model_hparams *hp = &m->hp;
    c->m = m;
    c->opt = *o;
    cpu_layout_of(m, o, &c->lay, e); /* succeeded in plan */
    const cpu_layout *l = &c->lay;
    const uint64_t T = (uint64_t)o->max_tokens, S = (uint64_t)o->max_seqs, F = sizeof(float);
    uint64_t *w = &c->allocated_work, *kv = &c->allocated_kv;
    c->x = cpu_alloc(T * hp->dim * F, w, e, &rc);
    c->xn = cpu_alloc(T * hp->dim * F, w, e, &rc);
    c->o = cpu_alloc(T * hp->dim * F, w, e, &rc);
    c->q = cpu_alloc(T * l->q_dim * F, w, e, &rc);
    c->att = cpu_alloc(T * l->q_dim * F, w, e, &rc);
    c->k = cpu_alloc(T * l->kv_dim * F, w, e, &rc);
    c->v = cpu_alloc(T * l->kv_dim * F, w, e, &rc);
    c->gate = cpu_alloc(T * hp->ffn_dim * F, w, e, &rc);
    c->up = cpu_alloc(T * hp->ffn_dim * F, w, e, &rc);
    c->outx = cpu_alloc(S * hp->dim * F, w, e, &rc);
    c->logits = cpu_alloc(S * hp->n_vocab * F, w, e, &rc);
    c->scores = cpu_alloc((uint64_t)o->n_threads * o->n_ctx * F, w, e, &rc);
    c->mm_scratch = cpu_alloc((uint64_t)o->n_threads * l->scratch_floats * F, w, e, &rc);
    c->inv_freq = cpu_alloc((uint64_t)m->n_rope * (hp->head_dim / 2) * F, w, e, &rc);
    c->kv_layer = cpu_alloc((uint64_t)hp->n_layer * sizeof(int32_t), w, e, &rc);
    c->tok_pos = cpu_alloc(T * sizeof(int32_t), w, e, &rc);
    c->tok_ids = cpu_alloc(T * sizeof(int32_t), w, e, &rc);
    c->tok_blocks = cpu_alloc(T * sizeof(const int32_t *), w, e, &rc);
    c->out_rows = cpu_alloc(S * sizeof(int32_t), w, e, &rc);
    c->seq_slot = cpu_alloc(S * sizeof(int32_t), w, e, &rc);
    c->samplers = cpu_alloc(S * sizeof(sampler *), w, e, &rc);
    if (c->samplers) memset(c->samplers, 0, S * sizeof(sampler *));
    if (l->moe_experts) {
        const uint64_t E = (uint64_t)l->moe_experts, K = (uint64_t)l->moe_used, FF = (uint64_t)l->moe_ffn;
        c->moe_logits = cpu_alloc(T * E * F, w, e, &rc);
        c->moe_id = cpu_alloc(T * K * sizeof(int32_t), w, e, &rc);
        c->moe_w = cpu_alloc(T * K * F, w, e, &rc);
        c->moe_first = cpu_alloc((E + 1) * sizeof(int32_t), w, e, &rc);
        c->moe_row = cpu_alloc(T * K * sizeof(int32_t), w, e, &rc);
        c->moe_rw = cpu_alloc(T * K * F, w, e, &rc);
        c->moe_x = cpu_alloc(T * hp->dim * F, w, e, &rc);
        c->moe_y = cpu_alloc(T * hp->dim * F, w, e, &rc);
        c->moe_g = cpu_alloc(T * FF * F, w, e, &rc);
        c->moe_u = cpu_alloc(T * FF * F, w, e, &rc);
    }
    const uint64_t eb = (uint64_t)engine_kv_elem_bytes(o->kv_type);
    c->k_pool = cpu_alloc(l->kv_elems * eb, kv, e, &rc);
    c->v_pool = cpu_alloc(l->kv_elems * eb, kv, e, &rc);
    c->k_scale = cpu_alloc(l->kv_scales * F, kv, e, &rc);
    c->v_scale = cpu_alloc(l->kv_scales * F, kv, e, &rc);
    if (!rc) {
        sampler_params sp;
        sampler_default_params(&sp);
        for (uint64_t i = 0; i < S && !rc; i++) {
            rc = sampler_create(&c->samplers[i], hp->n_vocab, &sp, e);
            if (!rc) *w += sampler_bytes(hp->n_vocab);
        }
    }
    if (!rc) {
        c->pool = pool_create(o->n_threads);
        if (!c->pool) rc = err_set(e, ERR_NOMEM, "cannot start %d threads", o->n_threads);
    }
    if (rc) {
        cpu_destroy(c);
        return rc;
    }
    for (int r = 0; r < m->n_rope; r++) engine_rope_inv_freq(&m->rope[r], c->inv_freq + (size_t)r * (hp->head_dim / 2));
    for (int il = 0, n = 0; il < hp->n_layer; il++)
        c->kv_layer[il] = m->layers[il].mixer == MODEL_MIXER_ATTENTION ? n++ : -1;
    for (int b = 0; b < 256; b++) c->fp8_lut[b] = quant_fp8_e4m3_to_f32((uint8_t)b);
    *out = c;
    return 0;
}

static void cpu_usage(const engine *c, engine_usage *u) {
    u->weights_bytes = c->m->weights_bytes; /* used in place */
    u->kv_bytes = c->allocated_kv;
    u->state_bytes = 0;
    u->work_bytes = c->allocated_work;
}

/* ---- matrix multiply over the pool ---- */

typedef struct mm_job {
    int n;                     /* up to 3 independent products sharing X */
    const model_tensor *w[3];  /* ne = [K, N_i] */
    float *y[3];               /* (T, N_i) */
    const float *x;            /* (T, K) */
    int64_t T;
    engine *c;
} mm_job;

static void mm_worker(void *arg, int ith, int nth) {
    mm_job *j = arg;
    float *scratch = j->c->mm_scratch + (size_t)ith * j->c->lay.scratch_floats;
    for (int i = 0; i < j->n; i++) {
        const model_tensor *w = j->w[i];
        const int64_t K = w->ne[0], N = w->ne[1];
        long lo, hi;
        pool_split((long)N, ith, nth, 16, &lo, &hi);
        if (lo < hi) quant_matmul(w->dtype, w->data, w->row_bytes, K, lo, hi, j->x, K, j->T, j->y[i], N, scratch);
    }
}

void cpu_matmul3(engine *c, const float *x, int64_t T, int n, const model_tensor *w0, float *y0,
                 const model_tensor *w1, float *y1, const model_tensor *w2, float *y2) {
    mm_job j = {.n = n, .w = {w0, w1, w2}, .y = {y0, y1, y2}, .x = x, .T = T, .c = c};
    pool_run(c->pool, mm_worker, &j);
}

/* ---- per-token element-wise stages ---- */

typedef struct tok_job {
    engine *c;
    int layer;
    int stage;
} tok_job;

enum {
    STAGE_EMBED_NORM, /* x = embed(tokens) * scale; xn = norm(x) (layer 0) */
    STAGE_QK_ROPE_KV, /* bias, qk-norm, rope; K/V -> cache */
    STAGE_ATTN_RESID, /* (+bo), post-attn norm, x += o, xn = ffn_norm(x) */
    STAGE_ACT,        /* gate = act(gate) * up */
    STAGE_FFN_RESID,  /* post-ffn norm, x += o, xn = next layer's attn_norm(x) */
};

static float gelu_tanh(float x) {
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

static float silu(float x) { return x / (1.0f + expf(-x)); }

static void rope_apply(float *vec, int n_rot, const float *inv, float pos, model_rope_style style, float mscale) {
    const int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        float th = pos * inv[i];
        float cs = cosf(th) * mscale, sn = sinf(th) * mscale;
        int a = style == MODEL_ROPE_NEOX ? i : 2 * i;
        int b = style == MODEL_ROPE_NEOX ? i + half : 2 * i + 1;
        float x0 = vec[a], x1 = vec[b];
        vec[a] = x0 * cs - x1 * sn;
        vec[b] = x0 * sn + x1 * cs;
    }
}

void cpu_act_rows(const model_hparams *hp, float *g, const float *u, int n) {
    switch (hp->act) {
    case MODEL_ACT_GELU_TANH:
        for (int i = 0; i < n; i++) g[i] = gelu_tanh(g[i]) * u[i];
        break;
    case MODEL_ACT_SWIGLU_OAI: {
        const float alpha = hp->act_alpha, lim = hp->act_limit;
        for (int i = 0; i < n; i++) {
            const float x = g[i] < lim ? g[i] : lim;
            const float y = u[i] < -lim ? -lim : u[i] > lim ? lim : u[i];
            g[i] = x / (1.0f + expf(-alpha * x)) * (y + 1.0f);
        }
        break;
    }
    default:
        for (int i = 0; i < n; i++) g[i] = silu(g[i]) * u[i];
        break;
    }
}

static void tok_worker(void *arg, int ith, int nth) {
    tok_job *j = arg;
    engine *c = j->c;
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    const int dim = hp->dim;
    long lo, hi;
    pool_split(c->n_tok, ith, nth, 1, &lo, &hi);
    const model_layer *L = j->layer >= 0 && j->layer < hp->n_layer ? &m->layers[j->layer] : NULL;
    for (long t = lo; t < hi; t++) {
        float *x = c->x + t * dim, *xn = c->xn + t * dim, *o = c->o + t * dim;
        switch (j->stage) {
        case STAGE_EMBED_NORM: {
            const model_tensor *te = m->token_embd;
            quant_dequant_row(te->dtype, (const uint8_t *)te->data + te->row_bytes * (uint64_t)c->tok_ids[t], x, dim);
            if (hp->embd_scale != 1.0f) vec_scale(x, hp->embd_scale, dim);
            vec_rmsnorm(xn, x, f32_ptr(m->layers[0].attn_norm), dim, hp->norm_eps);
            break;
        }
        case STAGE_QK_ROPE_KV: {
            const model_attention *A = &L->attn;
            const model_rope *R = &m->rope[A->rope];
            const int q_dim = c->lay.q_dim, kv_dim = c->lay.kv_dim;
            float *q = c->q + t * q_dim, *k = c->k + t * kv_dim, *v = c->v + t * kv_dim;
            if (A->bq) vec_axpy(q, 1.0f, f32_ptr(A->bq), q_dim);
            if (A->bk) vec_axpy(k, 1.0f, f32_ptr(A->bk), kv_dim);
            if (A->bv) vec_axpy(v, 1.0f, f32_ptr(A->bv), kv_dim);
            const float *inv = c->inv_freq + (size_t)A->rope * (hp->head_dim / 2);
            const float pos = (float)c->tok_pos[t];
            for (int h = 0; h < hp->n_head; h++) {
                float *qh = q + h * hp->head_dim;
                if (A->q_norm) vec_rmsnorm(qh, qh, f32_ptr(A->q_norm), hp->head_dim, hp->norm_eps);
                rope_apply(qh, R->n_rot, inv, pos, R->style, R->attn_factor);
            }
            for (int h = 0; h < hp->n_head_kv; h++) {
                float *kh = k + h * hp->head_dim;
                if (A->k_norm) vec_rmsnorm(kh, kh, f32_ptr(A->k_norm), hp->head_dim, hp->norm_eps);
                rope_apply(kh, R->n_rot, inv, pos, R->style, R->attn_factor);
            }
            cpu_kv_store(c, j->layer, (int)t);
            break;
        }
        case STAGE_ATTN_RESID:
            if (L->attn.bo) vec_axpy(o, 1.0f, f32_ptr(L->attn.bo), dim);
            if (L->post_attn_norm) vec_rmsnorm(o, o, f32_ptr(L->post_attn_norm), dim, hp->norm_eps);
            vec_axpy(x, 1.0f, o, dim);
            vec_rmsnorm(xn, x, f32_ptr(L->ffn_norm), dim, hp->norm_eps);
            break;
        case STAGE_ACT:
            cpu_act_rows(hp, c->gate + t * hp->ffn_dim, c->up + t * hp->ffn_dim, hp->ffn_dim);
            break;
        case STAGE_FFN_RESID:
            if (L->post_ffn_norm) vec_rmsnorm(o, o, f32_ptr(L->post_ffn_norm), dim, hp->norm_eps);
            vec_axpy(x, 1.0f, o, dim);
            if (j->layer + 1 < hp->n_layer)
                vec_rmsnorm(xn, x, f32_ptr(m->layers[j->layer + 1].attn_norm), dim, hp->norm_eps);
            break;
        }
    }
}

static void run_stage(engine *c, int layer, int stage) {
    tok_job j = {.c = c, .layer = layer, .stage = stage};
    pool_run(c->pool, tok_worker, &j);
}

/* ---- the output head for the rows whose logits are wanted ---- */

typedef struct head_job {
    engine *c;
    int n_out;
} head_job;

static void head_worker(void *arg, int ith, int nth) {
    head_job *j = arg;
    engine *c = j->c;
    const model *m = c->m;
    const model_tensor *w = m->output;
    const int64_t K = w->ne[0], N = w->ne[1];
    long lo, hi;
    pool_split((long)N, ith, nth, 64, &lo, &hi);
    if (lo < hi)
        quant_matmul(w->dtype, w->data, w->row_bytes, K, lo, hi, c->outx, K, j->n_out, c->logits, N,
                     c->mm_scratch + (size_t)ith * c->lay.scratch_floats);
    const float cap = m->hp.final_softcap;
    if (cap > 0.0f)
        for (int r = 0; r < j->n_out; r++)
            for (long i = lo; i < hi; i++) {
                float *l = c->logits + (size_t)r * N + i;
                *l = cap * tanhf(*l / cap);
            }
}

/* ---- one step ---- */

static int cpu_forward(engine *c, const engine_seq *seqs, int n_seqs, err *e) {
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    c->n_last = 0;
    int rc = engine_check_batch(seqs, n_seqs, &c->opt, CPU_KV_BLOCK, c->lay.n_blocks, hp->n_vocab, e);
    if (rc) return rc;
    int n_tok = 0;
    for (int i = 0; i < n_seqs; i++) {
        const engine_seq *s = &seqs[i];
        for (int t = 0; t < s->n; t++) {
            c->tok_ids[n_tok] = s->tokens[t];
            c->tok_pos[n_tok] = s->pos + t;
            c->tok_blocks[n_tok] = s->blocks;
            n_tok++;
        }
        c->out_rows[i] = s->want & ENGINE_WANT_LOGITS ? n_tok - 1 : -1;
        c->seq_slot[i] = s->slot;
    }
    c->n_tok = n_tok;

    run_stage(c, 0, STAGE_EMBED_NORM);
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *L = &m->layers[il];
        switch (L->mixer) {
        case MODEL_MIXER_ATTENTION: {
            const model_attention *A = &L->attn;
            cpu_matmul3(c, c->xn, n_tok, 3, A->wq, c->q, A->wk, c->k, A->wv, c->v);
            run_stage(c, il, STAGE_QK_ROPE_KV);
            cpu_attention(c, il);
            cpu_matmul3(c, c->att, n_tok, 1, A->wo, c->o, NULL, NULL, NULL, NULL);
            if (c->tp_fn) c->tp_fn(c->tp_user, c->o, (size_t)n_tok * hp->dim); /* partial sums of the heads */
            break;
        }
        }
        run_stage(c, il, STAGE_ATTN_RESID);
        switch (L->ffn) {
        case MODEL_FFN_DENSE: {
            const model_dense_ffn *F = &L->dense;
            cpu_matmul3(c, c->xn, n_tok, 2, F->w_gate, c->gate, F->w_up, c->up, NULL, NULL);
            run_stage(c, il, STAGE_ACT);
            cpu_matmul3(c, c->gate, n_tok, 1, F->w_down, c->o, NULL, NULL, NULL, NULL);
            break;
        }
        case MODEL_FFN_MOE:
            cpu_moe(c, il);
            break;
        }
        if (c->tp_fn) c->tp_fn(c->tp_user, c->o, (size_t)n_tok * hp->dim); /* partial sums of the FFN */
        run_stage(c, il, STAGE_FFN_RESID);
    }

    /* Gather the rows that need logits, in sequence order, then one product. */
    int n_out = 0;
    for (int i = 0; i < n_seqs; i++) {
        if (c->out_rows[i] < 0) continue;
        vec_rmsnorm(c->outx + (size_t)n_out * hp->dim, c->x + (size_t)c->out_rows[i] * hp->dim,
                    f32_ptr(m->output_norm), hp->dim, hp->norm_eps);
        n_out++;
    }
    if (n_out) {
        head_job hj = {.c = c, .n_out = n_out};
        pool_run(c->pool, head_worker, &hj);
        /* logits row r belongs to the r-th sequence that wanted logits; move them
         * to each sequence's own index (descending so nothing is overwritten). */
        int r = n_out - 1;
        for (int i = n_seqs - 1; i >= 0 && r >= 0; i--) {
            if (c->out_rows[i] < 0) continue;
            if (r != i)
                memmove(c->logits + (size_t)i * hp->n_vocab, c->logits + (size_t)r * hp->n_vocab,
                        sizeof(float) * hp->n_vocab);
            r--;
        }
    }
    c->n_last = n_seqs;
    return 0;
}

void cpu_set_tp(engine *c, cpu_tp_fn fn, void *user) {
    c->tp_fn = fn;
    c->tp_user = user;
}

const engine_ops engine_cpu_ops = {
    .name = "cpu",
    .plan = cpu_plan,
    .create = cpu_create,
    .destroy = cpu_destroy,
    .forward = cpu_forward,
    .slot_reset = cpu_slot_reset,
    .slot_accept = cpu_slot_accept,
    .sample = cpu_sample,
    .logits = cpu_logits,
    .usage = cpu_usage,
};
