/* arch.c — the registry of families and the readers/binders they share. See arch.h. */
#include "arch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

static const model_arch_ops *const arch_table[] = {&arch_gemma3, &arch_llama, &arch_qwen2,
                                                   &arch_qwen3,  &arch_gpt_oss, &arch_qwen3moe};

const model_arch_ops *arch_find(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
        if (strlen(arch_table[i]->name) == len && !memcmp(arch_table[i]->name, name, len)) return arch_table[i];
    return NULL;
}

/* ---- metadata ---- */

int arch_u32(const model *m, const char *suffix, int32_t *out, int required, uint32_t lo, uint32_t hi,
             err *e) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    uint32_t v;
    int rc = model_meta_u32(m, key, &v, e);
    if (rc == ERR_ABSENT) {
        if (required) return err_set(e, ERR_FORMAT, "missing metadata key %s", key);
        return 0;
    }
    if (rc) return rc;
    if (v < lo || v > hi) return err_set(e, ERR_FORMAT, "%s = %u out of range [%u, %u]", key, v, lo, hi);
    *out = (int32_t)v;
    return 0;
}

int arch_f32(const model *m, const char *suffix, float *out, int required, float lo, float hi, err *e) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    float v;
    int rc = model_meta_f32(m, key, &v, e);
    if (rc == ERR_ABSENT) {
        if (required) return err_set(e, ERR_FORMAT, "missing metadata key %s", key);
        return 0;
    }
    if (rc) return rc;
    if (!(v >= lo && v <= hi))
        return err_set(e, ERR_FORMAT, "%s = %g out of range [%g, %g]", key, (double)v, (double)lo, (double)hi);
    *out = v;
    return 0;
}

int arch_read_common(model *m, err *e) {
    model_hparams *hp = &m->hp;
    int rc;
    memset(hp, 0, sizeof *hp);
    if ((rc = arch_u32(m, "embedding_length", &hp->dim, 1, 1, 1u << 16, e))) return rc;
    if ((rc = arch_u32(m, "block_count", &hp->n_layer, 1, 1, 1024, e))) return rc;
    if ((rc = arch_u32(m, "feed_forward_length", &hp->ffn_dim, 1, 1, 1u << 20, e))) return rc;
    if ((rc = arch_u32(m, "attention.head_count", &hp->n_head, 1, 1, 1024, e))) return rc;
    hp->n_head_kv = hp->n_head;
    if ((rc = arch_u32(m, "attention.head_count_kv", &hp->n_head_kv, 0, 1, 1024, e))) return rc;
    if (hp->n_head % hp->n_head_kv)
        return err_set(e, ERR_FORMAT, "attention.head_count %d is not a multiple of head_count_kv %d", hp->n_head,
                       hp->n_head_kv);
    hp->head_dim = hp->dim / hp->n_head;
    if ((rc = arch_u32(m, "attention.key_length", &hp->head_dim, 0, 1, 1024, e))) return rc;
    int32_t vlen = hp->head_dim;
    if ((rc = arch_u32(m, "attention.value_length", &vlen, 0, 1, 1024, e))) return rc;
    if (vlen != hp->head_dim)
        return err_set(e, ERR_UNSUPPORTED, "attention.value_length %d != key_length %d", vlen, hp->head_dim);
    if (hp->head_dim % 2) return err_set(e, ERR_FORMAT, "head dimension %d is odd", hp->head_dim);
    hp->ctx_train = 4096;
    if ((rc = arch_u32(m, "context_length", &hp->ctx_train, 0, 1, 1u << 24, e))) return rc;
    hp->norm_eps = 1e-6f;
    if ((rc = arch_f32(m, "attention.layer_norm_rms_epsilon", &hp->norm_eps, 0, 0.0f, 1.0f, e))) return rc;
    hp->embd_scale = 1.0f;
    hp->act = MODEL_ACT_SILU;
    return 0;
}

int arch_read_rope(model *m, model_rope *r, float base, err *e) {
    int rc;
    memset(r, 0, sizeof *r);
    r->style = MODEL_ROPE_NEOX;
    r->n_rot = m->hp.head_dim;
    r->base = base;
    if ((rc = arch_f32(m, "rope.freq_base", &r->base, 0, 1.0f, 1e12f, e))) return rc;
    /* Rope scaling as GGUF carries it: rope.scaling.type (string), .factor,
     * .original_context_length, and yarn's beta_fast/beta_slow. */
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch_name);
    const char *st;
    uint64_t stlen;
    rc = model_meta_str(m, key, &st, &stlen, e);
    if (rc && rc != ERR_ABSENT) return rc;
    if (rc == 0) {
        if (stlen == 4 && !memcmp(st, "none", 4)) r->scaling = MODEL_ROPE_SCALE_NONE;
        else if (stlen == 6 && !memcmp(st, "linear", 6)) r->scaling = MODEL_ROPE_SCALE_LINEAR;
        else if (stlen == 4 && !memcmp(st, "yarn", 4)) r->scaling = MODEL_ROPE_SCALE_YARN;
        else
            return err_set(e, ERR_UNSUPPORTED, "%s '%.*s' is not supported", key, (int)(stlen > 32 ? 32 : stlen),
                           st);
    }
    r->factor = 1.0f;
    if ((rc = arch_f32(m, "rope.scaling.factor", &r->factor, 0, 0.0f, 1e6f, e))) return rc;
    if (r->factor == 0.0f) r->factor = 1.0f;
    if (r->scaling == MODEL_ROPE_SCALE_NONE && r->factor != 1.0f)
        r->scaling = MODEL_ROPE_SCALE_LINEAR; /* older files: factor without a type */
    r->orig_ctx = m->hp.ctx_train;
    if ((rc = arch_u32(m, "rope.scaling.original_context_length", &r->orig_ctx, 0, 1, 1u << 24, e))) return rc;
    r->yarn_beta_fast = 32.0f;
    r->yarn_beta_slow = 1.0f;
    if ((rc = arch_f32(m, "rope.scaling.yarn_beta_fast", &r->yarn_beta_fast, 0, 0.0f, 1e4f, e))) return rc;
    if ((rc = arch_f32(m, "rope.scaling.yarn_beta_slow", &r->yarn_beta_slow, 0, 0.0f, 1e4f, e))) return rc;
    r->attn_factor = r->scaling == MODEL_ROPE_SCALE_YARN ? 0.1f * logf(r->factor) + 1.0f : 1.0f;
    return 0;
}

/* ---- tensors ---- */

int arch_tensor(model *m, const model_tensor **out, const char *name, int64_t ne0, int64_t ne1, int required,
                err *e) {
    const model_tensor *t = model_find_tensor(m, name);
    if (!t) {
        if (required) return err_set(e, ERR_FORMAT, "missing tensor '%s'", name);
        *out = NULL;
        return 0;
    }
    int want_dims = ne1 ? 2 : 1;
    if (t->n_dims != want_dims || t->ne[0] != ne0 || (ne1 && t->ne[1] != ne1))
        return err_set(e, ERR_FORMAT, "tensor '%s' has shape [%lld, %lld] (%d dims), expected [%lld, %lld]", name,
                       (long long)t->ne[0], (long long)(t->n_dims > 1 ? t->ne[1] : 1), t->n_dims, (long long)ne0,
                       (long long)(ne1 ? ne1 : 1));
    /* Norms, biases and factors are read as plain floats by every backend. */
    if (!ne1 && t->dtype != QUANT_F32) {
        const quant_traits *qt = quant_traits_of(t->dtype);
        return err_set(e, ERR_UNSUPPORTED, "tensor '%s' is %s; 1-D tensors must be F32", name,
                       qt ? qt->name : "unknown");
    }
    *out = t;
    return 0;
}

int arch_layer_weight(model *m, const model_tensor **out, int il, const char *suffix, int64_t ne0, int64_t ne1,
                      int required, err *e) {
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s.weight", il, suffix);
    return arch_tensor(m, out, name, ne0, ne1, required, e);
}

int arch_layer_bias(model *m, const model_tensor **out, int il, const char *suffix, int64_t n, err *e) {
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s.bias", il, suffix);
    return arch_tensor(m, out, name, n, 0, 0, e);
}

int arch_layer_experts(model *m, const model_tensor **out, int il, const char *suffix, int64_t ne0, int64_t ne1,
                       int64_t n_expert, err *e) {
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s.weight", il, suffix);
    const model_tensor *t = model_find_tensor(m, name);
    if (!t) return err_set(e, ERR_FORMAT, "missing tensor '%s'", name);
    if (t->n_dims != 3 || t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != n_expert)
        return err_set(e, ERR_FORMAT, "tensor '%s' has shape [%lld, %lld, %lld] (%d dims), expected [%lld, %lld, %lld]",
                       name, (long long)t->ne[0], (long long)(t->n_dims > 1 ? t->ne[1] : 1),
                       (long long)(t->n_dims > 2 ? t->ne[2] : 1), t->n_dims, (long long)ne0, (long long)ne1,
                       (long long)n_expert);
    *out = t;
    return 0;
}

int arch_layer_expert_bias(model *m, const model_tensor **out, int il, const char *suffix, int64_t ne1,
                           int64_t n_expert, err *e) {
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s.bias", il, suffix);
    int rc = arch_tensor(m, out, name, ne1, n_expert, 0, e);
    if (rc || !*out) return rc;
    if ((*out)->dtype != QUANT_F32) {
        const quant_traits *qt = quant_traits_of((*out)->dtype);
        return err_set(e, ERR_UNSUPPORTED, "tensor '%s' is %s; expert biases must be F32", name,
                       qt ? qt->name : "unknown");
    }
    return 0;
}

int arch_read_moe(model *m, model_moe *mo, err *e) {
    int32_t n_expert = 0, n_used = 0, ffn = 0;
    int rc;
    if ((rc = arch_u32(m, "expert_count", &n_expert, 1, 1, 1u << 12, e))) return rc;
    if ((rc = arch_u32(m, "expert_used_count", &n_used, 1, 1, (uint32_t)n_expert, e))) return rc;
    if ((rc = arch_u32(m, "expert_feed_forward_length", &ffn, 1, 1, 1u << 20, e))) return rc;
    memset(mo, 0, sizeof *mo);
    mo->n_expert = n_expert;
    mo->n_expert_local = n_expert; /* all of them (a shard by experts narrows it) */
    mo->n_used = n_used;
    mo->ffn_dim = ffn;
    return 0;
}

int arch_bind_embeddings(model *m, err *e) {
    model_hparams *hp = &m->hp;
    int rc;
    const model_tensor *te = model_find_tensor(m, "token_embd.weight");
    if (!te) return err_set(e, ERR_FORMAT, "missing tensor 'token_embd.weight'");
    if (te->n_dims != 2 || te->ne[0] != hp->dim || te->ne[1] < 1 || te->ne[1] > (1 << 24))
        return err_set(e, ERR_FORMAT, "tensor 'token_embd.weight' has shape [%lld, %lld], expected [%d, n_vocab]",
                       (long long)te->ne[0], (long long)te->ne[1], hp->dim);
    hp->n_vocab = (int32_t)te->ne[1];
    if ((rc = arch_tensor(m, &m->token_embd, "token_embd.weight", hp->dim, hp->n_vocab, 1, e))) return rc;
    if ((rc = arch_tensor(m, &m->output_norm, "output_norm.weight", hp->dim, 0, 1, e))) return rc;
    if ((rc = arch_tensor(m, &m->output, "output.weight", hp->dim, hp->n_vocab, 0, e))) return rc;
    if (!m->output) m->output = m->token_embd; /* tied embeddings */
    return 0;
}

int arch_bind_rope_factors(model *m, model_rope *r, err *e) {
    return arch_tensor(m, &r->freq_factors, "rope_freqs.weight", r->n_rot / 2, 0, 0, e);
}

int arch_read_attn_scale(model *m, err *e) {
    float scale = -1.0f; /* stays negative when the key is absent */
    int rc = arch_f32(m, "attention.scale", &scale, 0, 0.0f, 1e3f, e);
    if (rc || scale < 0.0f) return rc;
    for (int il = 0; il < m->hp.n_layer; il++)
        if (m->layers[il].mixer == MODEL_MIXER_ATTENTION) m->layers[il].attn.scale = scale;
    return 0;
}

int arch_bind_attention(model *m, int il, const arch_dense_opts *o, err *e) {
    const model_hparams *hp = &m->hp;
    model_layer *L = &m->layers[il];
    model_attention *A = &L->attn;
    const int64_t q_rows = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kv_rows = (int64_t)hp->n_head_kv * hp->head_dim;
    int rc;
    L->mixer = MODEL_MIXER_ATTENTION;
    A->scale = 1.0f / sqrtf((float)hp->head_dim);
    if ((rc = arch_layer_weight(m, &L->attn_norm, il, "attn_norm", hp->dim, 0, 1, e))) return rc;
    if ((rc = arch_layer_weight(m, &A->wq, il, "attn_q", hp->dim, q_rows, 1, e))) return rc;
    if ((rc = arch_layer_weight(m, &A->wk, il, "attn_k", hp->dim, kv_rows, 1, e))) return rc;
    if ((rc = arch_layer_weight(m, &A->wv, il, "attn_v", hp->dim, kv_rows, 1, e))) return rc;
    if ((rc = arch_layer_weight(m, &A->wo, il, "attn_output", q_rows, hp->dim, 1, e))) return rc;
    if ((rc = arch_layer_bias(m, &A->bq, il, "attn_q", q_rows, e))) return rc;
    if ((rc = arch_layer_bias(m, &A->bk, il, "attn_k", kv_rows, e))) return rc;
    if ((rc = arch_layer_bias(m, &A->bv, il, "attn_v", kv_rows, e))) return rc;
    if ((rc = arch_layer_bias(m, &A->bo, il, "attn_output", hp->dim, e))) return rc;
    if ((rc = arch_layer_weight(m, &A->q_norm, il, "attn_q_norm", hp->head_dim, 0, o->qk_norm, e))) return rc;
    if ((rc = arch_layer_weight(m, &A->k_norm, il, "attn_k_norm", hp->head_dim, 0, o->qk_norm, e))) return rc;
    if (o->post_norms &&
        (rc = arch_layer_weight(m, &L->post_attn_norm, il, "post_attention_norm", hp->dim, 0, 1, e)))
        return rc;
    return 0;
}

int arch_bind_dense(model *m, const arch_dense_opts *o, err *e) {
    const model_hparams *hp = &m->hp;
    int rc;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return err_set(e, ERR_NOMEM, "out of memory for %d layers", hp->n_layer);
    for (int il = 0; il < hp->n_layer; il++) {
        model_layer *L = &m->layers[il];
        model_dense_ffn *F = &L->dense;
        L->ffn = MODEL_FFN_DENSE;
        if ((rc = arch_bind_attention(m, il, o, e))) return rc;
        if ((rc = arch_layer_weight(m, &L->ffn_norm, il, "ffn_norm", hp->dim, 0, 1, e))) return rc;
        if ((rc = arch_layer_weight(m, &F->w_gate, il, "ffn_gate", hp->dim, hp->ffn_dim, 1, e))) return rc;
        if ((rc = arch_layer_weight(m, &F->w_up, il, "ffn_up", hp->dim, hp->ffn_dim, 1, e))) return rc;
        if ((rc = arch_layer_weight(m, &F->w_down, il, "ffn_down", hp->ffn_dim, hp->dim, 1, e))) return rc;
        if ((rc = arch_layer_weight(m, &L->post_ffn_norm, il, "post_ffw_norm", hp->dim, 0, o->post_norms, e)))
            return rc;
    }
    return 0;
}
