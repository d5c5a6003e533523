/* shard.c — one rank's view of a model under tensor parallelism. See shard.h. */
#include "shard.h"

#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "quant.h"

/* Sliced tensors per layer: wq wk wv wo bq bk bv sinks, then w_gate w_up w_down (dense)
 * or gate_exps up_exps down_exps gate_b up_b (MoE by columns), and down_b (by experts). */
#define SHARD_PER_LAYER 14

struct shard {
    model m;             /* the view; layers and tensors below */
    model_layer *layers; /* (n_layer) */
    model_tensor *tens;  /* (n_tens) the sliced tensors */
    uint64_t *stride;    /* (n_tens) source bytes between rows; 0 = contiguous */
    uint64_t *estride;   /* (n_tens) source bytes between experts (stacked expert tensors,
                          * rows numbered expert-major: row e * ne[1] + j); 0 = ne[1] rows */
    int n_tens;
    void *packed;        /* shard_pack: the sliced tensors' bytes, contiguous; NULL = none */
};

void shard_vocab(int n_vocab, int size, int rank, int *v0, int *vn) {
    const int64_t a = (int64_t)n_vocab * rank / size, b = (int64_t)n_vocab * (rank + 1) / size;
    *v0 = (int)a;
    *vn = (int)(b - a);
}

static int block_of(const model_tensor *t) {
    const quant_traits *q = quant_traits_of(t->dtype);
    return q ? q->block_elems : 0;
}

/* A matrix cut along ne[0] into `size` parts: each part a whole number of blocks. */
static int check_cols(const model_tensor *t, int size, err *e) {
    const int b = block_of(t);
    if (!b || t->ne[0] % size || (t->ne[0] / size) % b)
        return err_set(e, ERR_UNSUPPORTED,
                       "tensor parallel %d: tensor '%s' has rows of %lld elements; a rank's %lld are not whole blocks of %d",
                       size, t->name, (long long)t->ne[0], (long long)(t->ne[0] / size), b);
    return 0;
}

static int check_rows(const model_tensor *t, int size, err *e) {
    if (t->ne[1] % size)
        return err_set(e, ERR_UNSUPPORTED, "tensor parallel %d: tensor '%s' has %lld rows, not divisible", size, t->name,
                       (long long)t->ne[1]);
    if (t->scale)
        return err_set(e, ERR_UNSUPPORTED, "tensor parallel: tensor '%s' has a dequantization scale (not sharded yet)",
                       t->name);
    return 0;
}

/* A vector cut into `size` parts: plain elements only (no blocks to split). */
static int check_vec(const model_tensor *t, int size, err *e) {
    if (!t) return 0;
    if (block_of(t) != 1 || t->n_dims != 1 || t->ne[0] % size)
        return err_set(e, ERR_UNSUPPORTED, "tensor parallel %d: vector '%s' (%lld elements) cannot be split", size, t->name,
                       (long long)t->ne[0]);
    return 0;
}

/* A mixture of experts split inside every expert (columns: rows of gate/up and their
 * biases, the same columns of down; router and down bias whole) or by whole experts. */
static int check_moe(const model_layer *L, int il, int size, engine_moe_split split, err *e) {
    const model_moe *M = &L->moe;
    int rc;
    if (M->shared.w_gate || M->shared_gate)
        return err_set(e, ERR_UNSUPPORTED, "tensor parallel: layer %d has a shared expert (not sharded yet)", il);
    if (!M->router || !M->gate_exps || !M->up_exps || !M->down_exps)
        return err_set(e, ERR_UNSUPPORTED, "tensor parallel: layer %d lacks an expert tensor", il);
    if (M->expert0 || (M->n_expert_local && M->n_expert_local != M->n_expert))
        return err_set(e, ERR_UNSUPPORTED, "tensor parallel: layer %d holds a share of its experts already", il);
    if (split == ENGINE_MOE_SPLIT_EXPERTS) { /* whole experts: E / N per rank, no cut inside one */
        if (M->n_expert % size)
            return err_set(e, ERR_UNSUPPORTED,
                           "tensor parallel %d, moe_split = experts: layer %d has %d experts, not divisible by the "
                           "number of ranks",
                           size, il, M->n_expert);
        const model_tensor *ex[3] = {M->gate_exps, M->up_exps, M->down_exps};
        for (int i = 0; i < 3; i++)
            if (ex[i]->n_dims != 3 || ex[i]->ne[2] != M->n_expert || ex[i]->scale)
                return err_set(e, ERR_UNSUPPORTED, "tensor parallel: expert tensor '%s' is not (cols, rows, %d) unscaled",
                               ex[i]->name, M->n_expert);
        const model_tensor *bs[3] = {M->gate_b, M->up_b, M->down_b};
        for (int i = 0; i < 3; i++)
            if (bs[i] && (block_of(bs[i]) != 1 || bs[i]->n_dims != 2 || bs[i]->ne[1] != M->n_expert))
                return err_set(e, ERR_UNSUPPORTED, "tensor parallel: expert bias '%s' is not plain (width, %d)",
                               bs[i]->name, M->n_expert);
        return 0;
    }
    if (M->ffn_dim < size || M->ffn_dim % size)
        return err_set(e, ERR_UNSUPPORTED,
                       "tensor parallel %d: layer %d's experts are %d wide, not divisible by the number of ranks", size, il,
                       M->ffn_dim);
    const model_tensor *ex[3] = {M->gate_exps, M->up_exps, M->down_exps};
    for (int i = 0; i < 3; i++)
        if (ex[i]->n_dims != 3 || ex[i]->ne[2] != M->n_expert || ex[i]->scale)
            return err_set(e, ERR_UNSUPPORTED, "tensor parallel: expert tensor '%s' is not (cols, rows, %d) unscaled",
                           ex[i]->name, M->n_expert);
    if (M->gate_exps->ne[1] != M->ffn_dim || M->up_exps->ne[1] != M->ffn_dim || M->down_exps->ne[0] != M->ffn_dim)
        return err_set(e, ERR_UNSUPPORTED, "tensor parallel: layer %d's expert tensors are not %d wide", il, M->ffn_dim);
    if ((rc = check_cols(M->down_exps, size, e))) return rc;
    const model_tensor *bs[2] = {M->gate_b, M->up_b};
    for (int i = 0; i < 2; i++)
        if (bs[i] && (block_of(bs[i]) != 1 || bs[i]->n_dims != 2 || bs[i]->ne[0] != M->ffn_dim))
            return err_set(e, ERR_UNSUPPORTED, "tensor parallel: expert bias '%s' is not plain (%d, experts)",
                           bs[i]->name, M->ffn_dim);
    return 0;
}

int shard_check(const model *m, int size, engine_moe_split split, err *e) {
    const model_hparams *hp = &m->hp;
    if (size < 1 || size > ENGINE_PARALLEL_MAX)
        return err_set(e, ERR_INVALID, "tensor parallel size %d (1..%d)", size, ENGINE_PARALLEL_MAX);
    if (split != ENGINE_MOE_SPLIT_COLUMNS && split != ENGINE_MOE_SPLIT_EXPERTS)
        return err_set(e, ERR_INVALID, "tensor parallel: moe_split %d", (int)split);
    if (hp->n_head % size || hp->n_head_kv % size)
        return err_set(e, ERR_UNSUPPORTED,
                       "tensor parallel %d: %d query heads and %d KV heads must both divide by the number of ranks", size,
                       hp->n_head, hp->n_head_kv);
    if (hp->n_vocab < size) return err_set(e, ERR_UNSUPPORTED, "tensor parallel %d: vocabulary of %d", size, hp->n_vocab);
    if (!m->output || m->output->n_dims != 2 || m->output->ne[1] != hp->n_vocab)
        return err_set(e, ERR_UNSUPPORTED, "tensor parallel: the output matrix is not (n_vocab, dim)");
    int rc;
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *L = &m->layers[il];
        if (L->mixer != MODEL_MIXER_ATTENTION)
            return err_set(e, ERR_UNSUPPORTED, "tensor parallel: layer %d mixer kind %d is not sharded", il, (int)L->mixer);
        const model_attention *A = &L->attn;
        if (!A->wq || !A->wk || !A->wv || !A->wo)
            return err_set(e, ERR_UNSUPPORTED, "tensor parallel: layer %d lacks a projection", il);
        if ((rc = check_rows(A->wq, size, e)) || (rc = check_rows(A->wk, size, e)) || (rc = check_rows(A->wv, size, e)) ||
            (rc = check_cols(A->wo, size, e)) || (rc = check_vec(A->bq, size, e)) || (rc = check_vec(A->bk, size, e)) ||
            (rc = check_vec(A->bv, size, e)) || (rc = check_vec(A->sinks, size, e)))
            return rc;
        if (A->wo->scale)
            return err_set(e, ERR_UNSUPPORTED, "tensor parallel: layer %d has dequantization scales (not sharded yet)", il);
        if (L->ffn == MODEL_FFN_MOE) {
            if ((rc = check_moe(L, il, size, split, e))) return rc;
            continue;
        }
        if (L->ffn != MODEL_FFN_DENSE)
            return err_set(e, ERR_UNSUPPORTED, "tensor parallel: layer %d FFN kind %d is not sharded", il, (int)L->ffn);
        if (!L->dense.w_gate || !L->dense.w_up || !L->dense.w_down)
            return err_set(e, ERR_UNSUPPORTED, "tensor parallel: layer %d lacks a projection", il);
        if ((rc = check_rows(L->dense.w_gate, size, e)) || (rc = check_rows(L->dense.w_up, size, e)) ||
            (rc = check_cols(L->dense.w_down, size, e)))
            return rc;
        if (L->dense.w_down->scale)
            return err_set(e, ERR_UNSUPPORTED, "tensor parallel: layer %d has dequantization scales (not sharded yet)", il);
    }
    if (m->output->scale) return err_set(e, ERR_UNSUPPORTED, "tensor parallel: the output matrix has a scale");
    return 0;
}

/* The next tensor of the table: a copy of src to be narrowed by the caller. */
static model_tensor *take(shard *s, const model_tensor *src) {
    model_tensor *t = &s->tens[s->n_tens++];
    *t = *src;
    return t;
}

/* Rows [r0, r0 + n) of src (ne[1] = rows; a vector's elements are its "rows"). */
static const model_tensor *rows(shard *s, const model_tensor *src, int64_t r0, int64_t n) {
    if (!src) return NULL;
    model_tensor *t = take(s, src);
    if (src->n_dims == 1) {
        const uint64_t eb = src->row_bytes / (uint64_t)src->ne[0]; /* plain elements (shard_check) */
        t->ne[0] = n;
        t->row_bytes = eb * (uint64_t)n;
        t->nbytes = t->row_bytes;
        t->data = (const uint8_t *)src->data + eb * (uint64_t)r0;
        t->offset = src->offset + eb * (uint64_t)r0;
        return t;
    }
    t->ne[1] = n;
    t->nbytes = src->row_bytes * (uint64_t)n;
    t->data = (const uint8_t *)src->data + src->row_bytes * (uint64_t)r0;
    t->offset = src->offset + src->row_bytes * (uint64_t)r0;
    if (src->n_dims > 2) { /* stacked experts: the same rows of every expert */
        t->nbytes *= (uint64_t)src->ne[2];
        s->stride[t - s->tens] = src->row_bytes;
        s->estride[t - s->tens] = src->row_bytes * (uint64_t)src->ne[1];
    }
    return t;
}

/* Experts [e0, e0 + n) of a stacked expert tensor: contiguous bytes, ne[2] = n. */
static const model_tensor *experts(shard *s, const model_tensor *src, int64_t e0, int64_t n) {
    model_tensor *t = take(s, src);
    const uint64_t eb = src->row_bytes * (uint64_t)src->ne[1];
    t->ne[2] = n;
    t->nbytes = eb * (uint64_t)n;
    t->data = (const uint8_t *)src->data + eb * (uint64_t)e0;
    t->offset = src->offset + eb * (uint64_t)e0;
    return t;
}

/* Columns [c0, c0 + n) of every row of src (block-aligned: shard_check). */
static const model_tensor *cols(shard *s, const model_tensor *src, int64_t c0, int64_t n) {
    model_tensor *t = take(s, src);
    uint64_t rb = 0, skip = 0;
    quant_row_bytes(src->dtype, n, &rb);
    if (c0) quant_row_bytes(src->dtype, c0, &skip);
    t->ne[0] = n;
    t->row_bytes = rb;
    t->nbytes = rb * (uint64_t)src->ne[1] * (uint64_t)(src->n_dims > 2 ? src->ne[2] : 1);
    t->data = (const uint8_t *)src->data + skip;
    t->offset = src->offset + skip;
    s->stride[t - s->tens] = src->row_bytes;
    return t;
}

int shard_open(shard **out, const model *m, int size, int rank, engine_moe_split split, err *e) {
    *out = NULL;
    int rc = shard_check(m, size, split, e);
    if (rc) return rc;
    if (rank < 0 || rank >= size) return err_set(e, ERR_INVALID, "tensor parallel rank %d of %d", rank, size);
    const model_hparams *hp = &m->hp;
    shard *s = calloc(1, sizeof *s);
    const int cap = hp->n_layer * SHARD_PER_LAYER + 1;
    if (s) {
        s->layers = calloc((size_t)(hp->n_layer ? hp->n_layer : 1), sizeof *s->layers);
        s->tens = calloc((size_t)cap, sizeof *s->tens);
        s->stride = calloc((size_t)cap, sizeof *s->stride);
        s->estride = calloc((size_t)cap, sizeof *s->estride);
    }
    if (!s || !s->layers || !s->tens || !s->stride || !s->estride) {
        shard_free(s);
        return err_set(e, ERR_NOMEM, "out of memory");
    }
    s->m = *m;
    s->m.layers = s->layers;
    s->m.hp.n_head = hp->n_head / size;
    s->m.hp.n_head_kv = hp->n_head_kv / size;
    const int hd = hp->head_dim, qh = hp->n_head / size, kh = hp->n_head_kv / size;
    for (int il = 0; il < hp->n_layer; il++) {
        const model_layer *L = &m->layers[il];
        model_layer *V = &s->layers[il];
        *V = *L;
        const model_attention *A = &L->attn;
        model_attention *VA = &V->attn;
        const int64_t q0 = (int64_t)rank * qh * hd, k0 = (int64_t)rank * kh * hd;
        VA->wq = rows(s, A->wq, q0, (int64_t)qh * hd);
        VA->wk = rows(s, A->wk, k0, (int64_t)kh * hd);
        VA->wv = rows(s, A->wv, k0, (int64_t)kh * hd);
        VA->wo = cols(s, A->wo, q0, (int64_t)qh * hd);
        VA->bq = rows(s, A->bq, q0, (int64_t)qh * hd);
        VA->bk = rows(s, A->bk, k0, (int64_t)kh * hd);
        VA->bv = rows(s, A->bv, k0, (int64_t)kh * hd);
        VA->sinks = rows(s, A->sinks, (int64_t)rank * qh, qh);
        if (L->ffn == MODEL_FFN_MOE) {
            const model_moe *M = &L->moe;
            model_moe *VM = &V->moe;
            if (split == ENGINE_MOE_SPLIT_EXPERTS) { /* whole experts; each one's biases go with it */
                const int64_t ne = M->n_expert / size, e0 = rank * ne;
                VM->expert0 = (int)e0;
                VM->n_expert_local = (int)ne;
                VM->gate_exps = experts(s, M->gate_exps, e0, ne);
                VM->up_exps = experts(s, M->up_exps, e0, ne);
                VM->down_exps = experts(s, M->down_exps, e0, ne);
                VM->gate_b = rows(s, M->gate_b, e0, ne);
                VM->up_b = rows(s, M->up_b, e0, ne);
                VM->down_b = rows(s, M->down_b, e0, ne);
                continue;
            }
            const int64_t f = M->ffn_dim / size;
            VM->ffn_dim = (int)f;
            VM->gate_exps = rows(s, M->gate_exps, rank * f, f);
            VM->up_exps = rows(s, M->up_exps, rank * f, f);
            VM->down_exps = cols(s, M->down_exps, rank * f, f);
            VM->gate_b = M->gate_b ? cols(s, M->gate_b, rank * f, f) : NULL;
            VM->up_b = M->up_b ? cols(s, M->up_b, rank * f, f) : NULL;
            VM->down_b = rank == 0 ? M->down_b : NULL; /* added once: the ranks' outputs are summed */
            continue;
        }
        const int64_t F = L->dense.w_gate->ne[1], f = F / size;
        V->dense.w_gate = rows(s, L->dense.w_gate, rank * f, f);
        V->dense.w_up = rows(s, L->dense.w_up, rank * f, f);
        V->dense.w_down = cols(s, L->dense.w_down, rank * f, f);
    }
    s->m.hp.ffn_dim = hp->ffn_dim / size; /* 0 when every layer is MoE */
    int v0, vn;
    shard_vocab(hp->n_vocab, size, rank, &v0, &vn);
    s->m.output = rows(s, m->output, v0, vn); /* tied: a slice of token_embd, a tensor of its own */
    *out = s;
    return 0;
}

void shard_free(shard *s) {
    if (!s) return;
    free(s->layers);
    free(s->tens);
    free(s->stride);
    free(s->estride);
    free(s->packed);
    free(s);
}

const model *shard_model(const shard *s) { return &s->m; }

void shard_copy_experts(const shard *s, const model_tensor *t, int f, int fp, int down, int64_t r0, int64_t n,
                        uint64_t rb, void *dst) {
    uint8_t *h = dst;
    if (down) { /* each row: the f columns, then zero blocks up to rb bytes */
        if (fp == f) {
            shard_copy_rows(s, t, r0, n, h);
            return;
        }
        for (int64_t i = 0; i < n; i++) {
            uint8_t *row = h + (uint64_t)i * rb;
            shard_copy_rows(s, t, r0 + i, 1, row);
            memset(row + t->row_bytes, 0, rb - t->row_bytes);
        }
        return;
    }
    for (int64_t i = 0; i < n;) { /* runs of one expert's real rows, then its zero rows */
        const int64_t R = r0 + i, ex = R / fp, j = R % fp, left = n - i;
        if (j < f) {
            const int64_t run = f - j < left ? f - j : left;
            shard_copy_rows(s, t, ex * f + j, run, h + (uint64_t)i * rb);
            i += run;
        } else {
            const int64_t run = fp - j < left ? fp - j : left;
            memset(h + (uint64_t)i * rb, 0, (uint64_t)run * rb);
            i += run;
        }
    }
}

/* Rows shard_copy_rows numbers for t: a vector is one row. */
static int64_t all_rows(const model_tensor *t) {
    return t->n_dims == 1 ? 1 : t->ne[1] * (t->n_dims > 2 ? t->ne[2] : 1);
}

int shard_pack(shard *s, err *e) {
    if (s->packed) return 0;
    uint64_t total = 0;
    for (int i = 0; i < s->n_tens; i++) total += (s->tens[i].row_bytes * (uint64_t)all_rows(&s->tens[i]) + 63) & ~63ull;
    uint8_t *buf = aligned_alloc(64, total ? total : 64);
    if (!buf) return err_set(e, ERR_NOMEM, "tensor parallel: %llu bytes for the packed shard", (unsigned long long)total);
    uint64_t at = 0;
    for (int i = 0; i < s->n_tens; i++) {
        model_tensor *t = &s->tens[i];
        const uint64_t n = t->row_bytes * (uint64_t)all_rows(t);
        shard_copy_rows(s, t, 0, all_rows(t), buf + at);
        t->data = buf + at;
        t->offset = at;
        s->stride[i] = s->estride[i] = 0;
        at += (n + 63) & ~63ull;
    }
    s->packed = buf;
    return 0;
}

void shard_copy_rows(const shard *s, const model_tensor *t, int64_t r0, int64_t n, void *dst) {
    const uint8_t *src = t->data;
    uint64_t stride = 0, estride = 0;
    if (s && t >= s->tens && t < s->tens + s->n_tens) {
        stride = s->stride[t - s->tens];
        estride = s->estride[t - s->tens];
    }
    if (!stride || n <= 0) {
        if (n > 0) memcpy(dst, src + t->row_bytes * (uint64_t)r0, t->row_bytes * (uint64_t)n);
        return;
    }
    const int64_t per = t->n_dims > 2 ? t->ne[1] : n + r0; /* rows of one expert */
    if (!estride) estride = stride * (uint64_t)per;
    for (int64_t i = 0; i < n; i++) {
        const int64_t r = r0 + i, ex = r / per, j = r % per;
        memcpy((uint8_t *)dst + t->row_bytes * (uint64_t)i, src + estride * (uint64_t)ex + stride * (uint64_t)j,
               t->row_bytes);
    }
}
