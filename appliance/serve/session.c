/* session.c — one assembly from the options. See session.h. */
#include "session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sha256.h"

void session_defaults(session_opts *o) {
    memset(o, 0, sizeof *o);
    o->device = "cpu";
    o->max_seqs = 1;
    o->max_tokens = 256;
    o->kv_type = ENGINE_KV_F32;
    o->prefix_cache = 1;
}

void session_opts_from_config(session_opts *o, const config *c) {
    session_defaults(o);
    o->model_path = c->model_path;
    o->device = c->device;
    o->n_threads = c->threads;
    o->n_ctx = c->n_ctx;
    o->max_seqs = c->max_seqs;
    o->max_tokens = c->max_batched_tokens;
    o->n_kv_blocks = c->kv_blocks;
    o->kv_type = c->kv_type;
    o->precision = c->precision;
    o->memory_limit = (uint64_t)c->memory_limit_mb << 20;
    o->tokenizer = 1;
    o->chat = 1;
    o->chat_template_file = c->chat_template_file;
    o->scheduler = 1;
    o->max_queue = c->max_queue;
    o->prefix_cache = c->prefix_cache;
    if (c->parallel.size > 1) o->parallel = &c->parallel;
}

static int read_file(const char *path, char **out, size_t *len, size_t max, err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(e, ERR_IO, "chat_template_file: cannot open: %s", strerror(errno));
    char *b = malloc(max + 1);
    size_t n = b ? fread(b, 1, max + 1, f) : 0;
    fclose(f);
    if (!b) return err_set(e, ERR_NOMEM, "out of memory");
    if (n > max) {
        free(b);
        return err_set(e, ERR_FORMAT, "chat_template_file: larger than %zu bytes", max);
    }
    b[n] = 0;
    *out = b;
    *len = n;
    return 0;
}

/* The tokenizer from the model's source (GGUF: its tokenizer.ggml.* keys; a
 * tokenizer.json adapter goes here for safetensors). */
static int load_tokenizer(session *s, err *e) {
    tok_vocab v;
    int rc = tok_vocab_from_gguf(&v, s->m->gguf, e);
    if (rc) return rc;
    rc = tok_create(&s->tk, &v, e);
    tok_vocab_free(&v);
    return rc;
}

/* Markers that are one special token in the vocabulary: harmony's channel
 * marker (GPT-OSS speaks harmony whatever template is configured), DeepSeek's
 * tool-calls opener (parse_detect). */
static int one_token(const tok *tk, const char *s) {
    int32_t id;
    err e = {0};
    return tk && tok_encode(tk, s, strlen(s), 0, 1, &id, 1, &e) == 1;
}
static unsigned vocab_markers(const tok *tk) {
    return (one_token(tk, "<|channel|>") ? PARSE_VOCAB_HARMONY : 0u) |
           (one_token(tk, PARSE_DS_CALLS_BEGIN) ? PARSE_VOCAB_DEEPSEEK : 0u);
}

/* The chat template (the override file, else the model's) and the parser format. */
static int open_chat(session *s, const session_opts *o, err *e) {
    char *src = NULL;
    size_t slen = 0;
    int rc;
    if (o->chat_template_file && o->chat_template_file[0]) {
        if ((rc = read_file(o->chat_template_file, &src, &slen, 1 << 20, e))) return rc;
    } else {
        const char *t;
        uint64_t n;
        if (model_meta_str(s->m, "tokenizer.chat_template", &t, &n, NULL) == 0) {
            src = malloc(n + 1);
            if (!src) return err_set(e, ERR_NOMEM, "out of memory");
            memcpy(src, t, n);
            src[n] = 0;
            slen = n;
        }
    }
    s->pfmt = parse_detect(src, slen, vocab_markers(s->tk));
    if (!src) return 0;
    err te = {0};
    rc = tmpl_compile(&s->tp, src, slen, &te);
    free(src);
    if (rc) return err_set(e, te.code, "chat template: %s", te.msg);
    return 0;
}

static void sink_sha256(void *user, const void *data, size_t n) { sha256_update(user, data, n); }

/* End-of-generation ids, for the scheduler. */
static int eog_ids(const tok *tk, int32_t **out, int *n, err *e) {
    const int32_t V = tok_vocab_size(tk);
    int count = 0;
    for (int32_t i = 0; i < V; i++) count += tok_is_eog(tk, i);
    *out = malloc(sizeof(int32_t) * (size_t)(count ? count : 1));
    if (!*out) return err_set(e, ERR_NOMEM, "out of memory");
    *n = 0;
    for (int32_t i = 0; i < V; i++)
        if (tok_is_eog(tk, i)) (*out)[(*n)++] = i;
    return 0;
}

int session_open(session **out, const session_opts *o, err *e) {
    *out = NULL;
    session *s = calloc(1, sizeof *s);
    if (!s) return err_set(e, ERR_NOMEM, "out of memory");
    int rc;
    s->ops = o->parallel && o->parallel->size > 1 ? engine_select_parallel(o->parallel, o->device, e)
                                                  : engine_select(o->device, e);
    if (!s->ops) {
        rc = e && e->code ? e->code : ERR_INVALID;
        goto fail;
    }
    model_load_opts lo = {.use_mmap = o->use_mmap, .progress = o->progress, .header_only = o->header_only};
    sha256_ctx digest;
    if (o->model_sha256 && !o->header_only) {
        sha256_init(&digest);
        lo.sink = sink_sha256;
        lo.sink_user = &digest;
    }
    err le = {0};
    rc = model_load(&s->m, o->model_path, &lo, &le);
    if (!rc && lo.sink) {
        uint8_t got[32];
        sha256_final(&digest, got);
        if (memcmp(got, o->model_sha256, 32)) {
            char gh[65], wh[65];
            sha256_hex(got, gh);
            sha256_hex(o->model_sha256, wh);
            rc = err_set(&le, ERR_FORMAT, "SHA-256 mismatch: the file has %s, the configuration expects %s", gh, wh);
        }
    }
    if (rc) { /* the reader's messages never name the file */
        err_set(e, le.code, "model %s: %s", o->model_path, le.msg);
        goto fail;
    }
    if (o->tokenizer || o->chat || o->scheduler) {
        /* header_only (describing a file): a broken tokenizer is reported, not fatal */
        if ((rc = load_tokenizer(s, o->header_only ? &s->tok_err : e)) && !o->header_only) goto fail;
        rc = 0;
    }
    if (o->chat && s->tk && (rc = open_chat(s, o, e))) goto fail;

    s->n_ctx = o->n_ctx ? o->n_ctx : (s->m->hp.ctx_train < 4096 ? s->m->hp.ctx_train : 4096);
    int threads = o->n_threads;
    if (!threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n < 1 ? 1 : n > 64 ? 64 : (int)n;
    }
    s->eopts = (engine_opts){.n_threads = threads, .n_ctx = s->n_ctx, .max_seqs = o->max_seqs,
                             .max_tokens = o->max_tokens, .n_kv_blocks = o->n_kv_blocks, .kv_type = o->kv_type,
                             .precision = o->precision, .memory_limit = o->memory_limit,
                             .parallel = o->parallel && o->parallel->size > 1 ? o->parallel : NULL};
    if (o->header_only) {
        s->ops->plan(s->m, &s->eopts, &s->plan, &s->plan_err);
        *out = s;
        return 0;
    }
    if ((rc = s->ops->plan(s->m, &s->eopts, &s->plan, e))) goto fail;
    if ((rc = s->ops->create(&s->eng, s->m, &s->eopts, e))) goto fail;
    if (o->scheduler) {
        int32_t *eog = NULL;
        int n_eog = 0;
        if ((rc = eog_ids(s->tk, &eog, &n_eog, e))) goto fail;
        sched_opts so = {.n_ctx = s->n_ctx, .max_seqs = o->max_seqs, .max_batched_tokens = o->max_tokens,
                         .max_queue = o->max_queue, .no_prefix_cache = !o->prefix_cache,
                         .n_vocab = s->m->hp.n_vocab, .eog = eog, .n_eog = n_eog};
        rc = sched_create(&s->s, s->ops, s->eng, &s->plan, &so, e);
        free(eog);
        if (rc) goto fail;
    }
    *out = s;
    return 0;
fail:
    session_close(s);
    return rc ? rc : ERR_INVALID;
}

void session_close(session *s) {
    if (!s) return;
    sched_free(s->s);
    if (s->eng) s->ops->destroy(s->eng);
    if (s->tp) tmpl_free(s->tp);
    tok_free(s->tk);
    model_free(s->m);
    free(s);
}
