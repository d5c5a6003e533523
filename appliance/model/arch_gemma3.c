/* arch_gemma3.c — Gemma 3 (dense): GeGLU (tanh GELU), embeddings scaled by
 * sqrt(dim), per-head QK RMSNorm, norms after attention and after the FFN, and
 * local sliding-window layers interleaved with global ones.
 *
 * Local layers attend over the last `sliding_window` positions with their own
 * rope (rope[1]: base 10000, never scaled — GGUF does not carry it); every
 * sliding_window_pattern-th layer is global and uses rope[0] (rope.freq_base and
 * the file's scaling). */
#include <math.h>
#include <string.h>

#include "arch.h"

/* query_pre_attn_scalar (HF config.json): q.k is scaled by its inverse square
 * root. It is head_dim for every released size but 27B, where it is dim / n_head
 * (5376 / 32 = 168, head_dim 128). GGUF does not carry it, so the size is
 * recognised by its layer count, as llama.cpp does. */
static const struct {
    int n_layer;
    const char *size;
} gemma3_scale_dim_over_heads[] = {
    {62, "27B"},
};

static int gemma3_read(model *m, err *e) {
    int rc;
    if ((rc = arch_read_common(m, e))) return rc;
    model_hparams *hp = &m->hp;
    hp->act = MODEL_ACT_GELU_TANH;
    hp->embd_scale = sqrtf((float)hp->dim);
    if ((rc = arch_f32(m, "final_logit_softcapping", &hp->final_softcap, 0, 0.0f, 1e6f, e))) return rc;
    if ((rc = arch_read_rope(m, &m->rope[0], 10000.0f, e))) return rc;
    model_rope *local = &m->rope[1];
    memset(local, 0, sizeof *local);
    local->style = MODEL_ROPE_NEOX;
    local->n_rot = hp->head_dim;
    local->base = 10000.0f;
    local->factor = 1.0f;
    local->attn_factor = 1.0f;
    m->n_rope = 2;
    return 0;
}

static int gemma3_bind(model *m, err *e) {
    int rc;
    int32_t window = 0, pattern = 6;
    if ((rc = arch_u32(m, "attention.sliding_window", &window, 0, 0, 1u << 24, e))) return rc;
    if ((rc = arch_u32(m, "attention.sliding_window_pattern", &pattern, 0, 0, 1024, e))) return rc;
    if ((rc = arch_bind_embeddings(m, e))) return rc;
    if ((rc = arch_bind_rope_factors(m, &m->rope[0], e))) return rc;
    const arch_dense_opts o = {.qk_norm = 1, .post_norms = 1};
    if ((rc = arch_bind_dense(m, &o, e))) return rc;
    const model_hparams *hp = &m->hp;
    float scale = 1.0f / sqrtf((float)hp->head_dim);
    for (size_t i = 0; i < sizeof gemma3_scale_dim_over_heads / sizeof *gemma3_scale_dim_over_heads; i++)
        if (hp->n_layer == gemma3_scale_dim_over_heads[i].n_layer) scale = 1.0f / sqrtf((float)(hp->dim / hp->n_head));
    for (int il = 0; il < hp->n_layer; il++) {
        model_attention *A = &m->layers[il].attn;
        const int local = window > 0 && pattern > 0 && (il + 1) % pattern != 0;
        A->window = local ? window : 0;
        A->rope = local ? 1 : 0;
        A->scale = scale;
    }
    return arch_read_attn_scale(m, e);
}

const model_arch_ops arch_gemma3 = {.name = "gemma3", .read = gemma3_read, .bind = gemma3_bind};
