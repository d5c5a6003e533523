/* model.c — builds a model description from a validated GGUF file. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "quant.h"
#include "sha256.h"
#include "sysmem.h"

typedef struct arch_info {
    const char *name;
    model_arch arch;
} arch_info;

static const arch_info model_archs[] = {
    {"gemma3", MODEL_ARCH_GEMMA3},
    {"llama", MODEL_ARCH_LLAMA},
    {"qwen2", MODEL_ARCH_QWEN2},
    {"qwen3", MODEL_ARCH_QWEN3},
};

/* Reads "<arch>.<suffix>" as u32. required: absence is an error naming the key. */
static int get_u32(const model *m, const char *suffix, int32_t *out, int required,
                   uint32_t lo, uint32_t hi, err *e) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    uint32_t v;
    int rc = gguf_get_u32(m->gguf, key, &v, e);
    if (rc == ERR_ABSENT) {
        if (required) return err_set(e, ERR_FORMAT, "missing metadata key %s", key);
        return 0;
    }
    if (rc) return rc;
    if (v < lo || v > hi)
        return err_set(e, ERR_FORMAT, "%s = %u out of range [%u, %u]", key, v, lo, hi);
    *out = (int32_t)v;
    return 0;
}

static int get_f32(const model *m, const char *suffix, float *out, int required, float lo,
                   float hi, err *e) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    float v;
    int rc = gguf_get_f32(m->gguf, key, &v, e);
    if (rc == ERR_ABSENT) {
        if (required) return err_set(e, ERR_FORMAT, "missing metadata key %s", key);
        return 0;
    }
    if (rc) return rc;
    if (!(v >= lo && v <= hi))
        return err_set(e, ERR_FORMAT, "%s = %g out of range [%g, %g]", key, (double)v, (double)lo,
                       (double)hi);
    *out = v;
    return 0;
}

/* Finds a tensor and checks its shape: ne0 x ne1 (ne1 = 0 for 1-D). */
static int want_tensor(model *m, const gguf_tensor **out, const char *name, int64_t ne0,
                       int64_t ne1, int required, int check_types, err *e) {
    const gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t) {
        if (required) return err_set(e, ERR_FORMAT, "missing tensor '%s'", name);
        *out = NULL;
        return 0;
    }
    int want_dims = ne1 ? 2 : 1;
    if ((int)t->n_dims != want_dims || t->ne[0] != ne0 || (ne1 && t->ne[1] != ne1))
        return err_set(e, ERR_FORMAT,
                       "tensor '%s' has shape [%lld, %lld] (%u dims), expected [%lld, %lld]", name,
                       (long long)t->ne[0], (long long)(t->n_dims > 1 ? t->ne[1] : 1), t->n_dims,
                       (long long)ne0, (long long)(ne1 ? ne1 : 1));
    const quant_traits *qt = quant_traits_of(t->type);
    if (check_types && (!qt || !qt->cpu_supported))
        return err_set(e, ERR_UNSUPPORTED, "tensor '%s' has type %s, not supported on the CPU",
                       name, qt ? qt->name : "unknown");
    /* Norms and biases are read as plain floats by the forward pass. */
    if (!ne1 && t->type != QUANT_F32)
        return err_set(e, ERR_UNSUPPORTED, "tensor '%s' is %s; 1-D tensors must be F32", name,
                       qt ? qt->name : "unknown");
    *out = t;
    return 0;
}

static int layer_tensor(model *m, const gguf_tensor **out, int il, const char *suffix,
                        int64_t ne0, int64_t ne1, int required, int check, err *e) {
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s.weight", il, suffix);
    return want_tensor(m, out, name, ne0, ne1, required, check, e);
}

static int layer_bias(model *m, const gguf_tensor **out, int il, const char *suffix, int64_t n,
                      err *e) {
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s.bias", il, suffix);
    return want_tensor(m, out, name, n, 0, 0, 1, e);
}

static int read_hparams(model *m, err *e) {
    model_hparams *hp = &m->hp;
    int rc;
    memset(hp, 0, sizeof *hp);
    if ((rc = get_u32(m, "embedding_length", &hp->dim, 1, 1, 1u << 16, e))) return rc;
    if ((rc = get_u32(m, "block_count", &hp->n_layer, 1, 1, 1024, e))) return rc;
    if ((rc = get_u32(m, "feed_forward_length", &hp->ffn_dim, 1, 1, 1u << 20, e))) return rc;
    if ((rc = get_u32(m, "attention.head_count", &hp->n_head, 1, 1, 1024, e))) return rc;
    hp->n_head_kv = hp->n_head;
    if ((rc = get_u32(m, "attention.head_count_kv", &hp->n_head_kv, 0, 1, 1024, e))) return rc;
    if (hp->n_head % hp->n_head_kv)
        return err_set(e, ERR_FORMAT, "attention.head_count %d is not a multiple of head_count_kv %d",
                       hp->n_head, hp->n_head_kv);
    hp->head_dim = hp->dim / hp->n_head;
    if ((rc = get_u32(m, "attention.key_length", &hp->head_dim, 0, 1, 1024, e))) return rc;
    int32_t vlen = hp->head_dim;
    if ((rc = get_u32(m, "attention.value_length", &vlen, 0, 1, 1024, e))) return rc;
    if (vlen != hp->head_dim)
        return err_set(e, ERR_UNSUPPORTED, "attention.value_length %d != key_length %d", vlen,
                       hp->head_dim);
    if (hp->head_dim % 2) return err_set(e, ERR_FORMAT, "head dimension %d is odd", hp->head_dim);
    hp->ctx_train = 4096;
    if ((rc = get_u32(m, "context_length", &hp->ctx_train, 0, 1, 1u << 24, e))) return rc;
    hp->norm_eps = 1e-6f;
    if ((rc = get_f32(m, "attention.layer_norm_rms_epsilon", &hp->norm_eps, 0, 0.0f, 1.0f, e)))
        return rc;
    hp->rope_base = 10000.0f;
    if ((rc = get_f32(m, "rope.freq_base", &hp->rope_base, 0, 1.0f, 1e12f, e))) return rc;
    hp->rope_base_swa = hp->rope_base;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    hp->embd_scale = 1.0f;
    hp->act = MODEL_ACT_SILU;
    hp->rope_style = MODEL_ROPE_NEOX;
    hp->rope_factor = 1.0f;

    /* Rope scaling as GGUF carries it: rope.scaling.type (string), .factor,
     * .original_context_length, and yarn's beta_fast/beta_slow. */
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch_name);
    const char *st;
    uint64_t stlen;
    rc = gguf_get_str(m->gguf, key, &st, &stlen, e);
    if (rc && rc != ERR_ABSENT) return rc;
    if (rc == 0) {
        if (stlen == 4 && !memcmp(st, "none", 4)) hp->rope_scaling = MODEL_ROPE_SCALE_NONE;
        else if (stlen == 6 && !memcmp(st, "linear", 6)) hp->rope_scaling = MODEL_ROPE_SCALE_LINEAR;
        else if (stlen == 4 && !memcmp(st, "yarn", 4)) hp->rope_scaling = MODEL_ROPE_SCALE_YARN;
        else return err_set(e, ERR_UNSUPPORTED, "%s '%.*s' is not supported", key, (int)(stlen > 32 ? 32 : stlen), st);
    }
    if ((rc = get_f32(m, "rope.scaling.factor", &hp->rope_factor, 0, 0.0f, 1e6f, e))) return rc;
    if (hp->rope_factor == 0.0f) hp->rope_factor = 1.0f;
    if (hp->rope_scaling == MODEL_ROPE_SCALE_NONE && hp->rope_factor != 1.0f)
        hp->rope_scaling = MODEL_ROPE_SCALE_LINEAR; /* older files: factor without a type */
    hp->rope_orig_ctx = hp->ctx_train;
    if ((rc = get_u32(m, "rope.scaling.original_context_length", &hp->rope_orig_ctx, 0, 1, 1u << 24, e)))
        return rc;
    hp->yarn_beta_fast = 32.0f;
    hp->yarn_beta_slow = 1.0f;
    hp->yarn_attn_factor = 1.0f;
    if ((rc = get_f32(m, "rope.scaling.yarn_beta_fast", &hp->yarn_beta_fast, 0, 0.0f, 1e4f, e))) return rc;
    if ((rc = get_f32(m, "rope.scaling.yarn_beta_slow", &hp->yarn_beta_slow, 0, 0.0f, 1e4f, e))) return rc;

    switch (m->arch) {
    case MODEL_ARCH_GEMMA3:
        hp->act = MODEL_ACT_GELU_TANH;
        hp->embd_scale = sqrtf((float)hp->dim);
        hp->rope_base_swa = 10000.0f; /* Gemma 3's local layers; GGUF does not carry it */
        hp->swa_pattern = 6;
        if ((rc = get_u32(m, "attention.sliding_window", &hp->swa_window, 0, 0, 1u << 24, e))) return rc;
        if ((rc = get_u32(m, "attention.sliding_window_pattern", &hp->swa_pattern, 0, 0, 1024, e))) return rc;
        /* query_pre_attn_scalar: head_dim for all sizes but 27B (62 layers), where
         * it is dim / n_head. */
        if (hp->n_layer == 62) hp->attn_scale = 1.0f / sqrtf((float)(hp->dim / hp->n_head));
        if ((rc = get_f32(m, "final_logit_softcapping", &hp->final_softcap, 0, 0.0f, 1e6f, e))) return rc;
        break;
    case MODEL_ARCH_LLAMA:
        hp->rope_style = MODEL_ROPE_NORM;
        break;
    case MODEL_ARCH_QWEN2:
    case MODEL_ARCH_QWEN3:
        break;
    }
    if ((rc = get_f32(m, "attention.scale", &hp->attn_scale, 0, 0.0f, 1e3f, e))) return rc;
    return 0;
}

static int bind_tensors(model *m, int check, err *e) {
    const model_hparams *hp = &m->hp;
    int rc;
    const gguf_tensor *te = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te) return err_set(e, ERR_FORMAT, "missing tensor 'token_embd.weight'");
    if (te->n_dims != 2 || te->ne[0] != hp->dim || te->ne[1] < 1 || te->ne[1] > (1 << 24))
        return err_set(e, ERR_FORMAT, "tensor 'token_embd.weight' has shape [%lld, %lld], expected [%d, n_vocab]",
                       (long long)te->ne[0], (long long)te->ne[1], hp->dim);
    m->hp.n_vocab = (int32_t)te->ne[1];
    if ((rc = want_tensor(m, &m->token_embd, "token_embd.weight", hp->dim, m->hp.n_vocab, 1, check, e))) return rc;
    if ((rc = want_tensor(m, &m->output_norm, "output_norm.weight", hp->dim, 0, 1, check, e))) return rc;
    if ((rc = want_tensor(m, &m->output, "output.weight", hp->dim, m->hp.n_vocab, 0, check, e))) return rc;
    if (!m->output) m->output = m->token_embd; /* tied embeddings */
    if ((rc = want_tensor(m, &m->rope_freqs, "rope_freqs.weight", hp->head_dim / 2, 0, 0, check, e))) return rc;

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return err_set(e, ERR_NOMEM, "out of memory for %d layers", hp->n_layer);
    const int64_t q_rows = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kv_rows = (int64_t)hp->n_head_kv * hp->head_dim;
    const int gemma = m->arch == MODEL_ARCH_GEMMA3;
    const int qk_norm = m->arch == MODEL_ARCH_GEMMA3 || m->arch == MODEL_ARCH_QWEN3;
    for (int il = 0; il < hp->n_layer; il++) {
        model_layer *L = &m->layers[il];
        if ((rc = layer_tensor(m, &L->attn_norm, il, "attn_norm", hp->dim, 0, 1, check, e))) return rc;
        if ((rc = layer_tensor(m, &L->wq, il, "attn_q", hp->dim, q_rows, 1, check, e))) return rc;
        if ((rc = layer_tensor(m, &L->wk, il, "attn_k", hp->dim, kv_rows, 1, check, e))) return rc;
        if ((rc = layer_tensor(m, &L->wv, il, "attn_v", hp->dim, kv_rows, 1, check, e))) return rc;
        if ((rc = layer_tensor(m, &L->wo, il, "attn_output", q_rows, hp->dim, 1, check, e))) return rc;
        if ((rc = layer_bias(m, &L->bq, il, "attn_q", q_rows, e))) return rc;
        if ((rc = layer_bias(m, &L->bk, il, "attn_k", kv_rows, e))) return rc;
        if ((rc = layer_bias(m, &L->bv, il, "attn_v", kv_rows, e))) return rc;
        if ((rc = layer_tensor(m, &L->q_norm, il, "attn_q_norm", hp->head_dim, 0, qk_norm, check, e))) return rc;
        if ((rc = layer_tensor(m, &L->k_norm, il, "attn_k_norm", hp->head_dim, 0, qk_norm, check, e))) return rc;
        if ((rc = layer_tensor(m, &L->post_attn_norm, il, "post_attention_norm", hp->dim, 0, gemma, check, e))) return rc;
        if ((rc = layer_tensor(m, &L->ffn_norm, il, "ffn_norm", hp->dim, 0, 1, check, e))) return rc;
        if ((rc = layer_tensor(m, &L->w_gate, il, "ffn_gate", hp->dim, hp->ffn_dim, 1, check, e))) return rc;
        if ((rc = layer_tensor(m, &L->w_up, il, "ffn_up", hp->dim, hp->ffn_dim, 1, check, e))) return rc;
        if ((rc = layer_tensor(m, &L->w_down, il, "ffn_down", hp->ffn_dim, hp->dim, 1, check, e))) return rc;
        if ((rc = layer_tensor(m, &L->post_ffn_norm, il, "post_ffw_norm", hp->dim, 0, gemma, check, e))) return rc;
        L->is_swa = hp->swa_window > 0 && hp->swa_pattern > 0 && (il + 1) % hp->swa_pattern != 0;
    }
    return 0;
}

static void load_progress(uint64_t done, uint64_t total, void *user) {
    (void)user;
    fprintf(stderr, "\rloading weights: %6.1f / %.1f MB (%3d%%)", (double)done / 1e6,
            (double)total / 1e6, total ? (int)(100.0 * (double)done / (double)total) : 100);
    if (done >= total) fputc('\n', stderr);
}

static void sink_sha256(void *user, const void *data, size_t n) { sha256_update(user, data, n); }

int model_load(model **out, const char *path, const model_load_opts *opts, err *e) {
    model_load_opts defaults = {0};
    if (!opts) opts = &defaults;
    *out = NULL;
    model *m = calloc(1, sizeof *m);
    if (!m) return err_set(e, ERR_NOMEM, "out of memory");
    int rc = gguf_open(&m->gguf, path, e);
    if (rc) goto fail;

    const char *an;
    uint64_t anlen;
    rc = gguf_get_str(m->gguf, "general.architecture", &an, &anlen, e);
    if (rc == ERR_ABSENT) rc = err_set(e, ERR_FORMAT, "missing metadata key general.architecture");
    if (rc) goto fail;
    for (size_t i = 0; i < sizeof model_archs / sizeof model_archs[0]; i++) {
        if (strlen(model_archs[i].name) == anlen && !memcmp(model_archs[i].name, an, anlen)) {
            m->arch = model_archs[i].arch;
            m->arch_name = model_archs[i].name;
        }
    }
    if (!m->arch_name) {
        rc = err_set(e, ERR_UNSUPPORTED, "general.architecture '%.*s' is not supported",
                     (int)(anlen > 64 ? 64 : anlen), an);
        goto fail;
    }
    if ((rc = read_hparams(m, e))) goto fail;
    if ((rc = bind_tensors(m, !opts->header_only, e))) goto fail;
    if (opts->header_only) {
        *out = m;
        return 0;
    }

    m->weights_bytes = gguf_data_size(m->gguf);
    sha256_ctx digest;
    if (opts->sha256) {
        sha256_init(&digest);
        gguf_set_sink(m->gguf, sink_sha256, &digest);
    }
    if (opts->use_mmap) {
        if ((rc = gguf_map_data(m->gguf, e))) goto fail;
        m->weights_mapped = 1;
    } else {
        if ((rc = sysmem_check(m->weights_bytes, "loading the weights", e))) goto fail;
        /* 2 MiB alignment + MADV_HUGEPAGE: token generation streams every weight
         * byte once per token, and 4 KiB pages cost ~20% of that in TLB misses
         * (measured: tg64 56.8 -> 69.0 tok/s on 2 threads, gemma3-270m). */
        const size_t align = (size_t)1 << 21;
        size_t sz = (size_t)((m->weights_bytes + align - 1) / align * align);
        if (posix_memalign(&m->weights, align, sz ? sz : align)) {
            m->weights = NULL;
            rc = err_set(e, ERR_NOMEM, "cannot allocate %.1f MB for weights", (double)sz / 1e6);
            goto fail;
        }
#ifdef MADV_HUGEPAGE
        madvise(m->weights, sz ? sz : align, MADV_HUGEPAGE); /* a hint: failure changes nothing */
#endif
        rc = gguf_load_data(m->gguf, m->weights, sz, opts->progress ? load_progress : NULL, NULL, e);
        if (rc) goto fail;
    }
    if (opts->sha256) {
        gguf_set_sink(m->gguf, NULL, NULL);
        uint8_t got[32];
        sha256_final(&digest, got);
        if (memcmp(got, opts->sha256, 32)) {
            char gh[65], wh[65];
            sha256_hex(got, gh);
            sha256_hex(opts->sha256, wh);
            rc = err_set(e, ERR_FORMAT, "SHA-256 mismatch: the file has %s, the configuration expects %s", gh, wh);
            goto fail;
        }
    }
    *out = m;
    return 0;
fail:
    model_free(m);
    return rc ? rc : ERR_FORMAT;
}

void model_free(model *m) {
    if (!m) return;
    free(m->layers);
    if (m->gguf) gguf_close(m->gguf);
    free(m->weights);
    free(m);
}

uint64_t model_kv_bytes_per_token(const model *m, int kv_elem_bytes) {
    return 2ull * (uint64_t)m->hp.n_layer * (uint64_t)m->hp.n_head_kv * (uint64_t)m->hp.head_dim *
           (uint64_t)kv_elem_bytes;
}
