/* engine_script.c — a scripted engine behind engine.h, for tests only (linked into
 * build/tests/sparkd_scripted, never into a shipped binary).
 *
 * It computes nothing: each sequence's next token comes from a script, the exact
 * text a model would generate (special tokens spelled out, e.g. "<think>..."
 * "</think><tool_call>{...}</tool_call><|im_end|>"), tokenized with the model's
 * own tokenizer. So tool calls, reasoning and every streaming shape run end to end
 * through the real templates, tokenizers, scheduler, parsers and HTTP layer, with
 * outputs a test can predict.
 *
 * Which script: the last "[[script:NAME]]" in the sequence's decoded prompt names
 * $SPARKD_SCRIPT_DIR/NAME.txt (a tool result can carry the marker of the next turn);
 * no marker: "Hello from the scripted engine." When the script is spent: the
 * tokenizer's end token. A grammar mask is obeyed as a model under it would: a
 * script token it forbids is replaced by the longest allowed token that spells a
 * prefix of the rest of the script (the rest is tokenized again after it), else
 * by the end token if allowed, else by the lowest allowed id (noted on stderr). A script whose first
 * line is "#fail-after N" makes sample fail (ERR_IO, as a device fault would) once
 * N tokens have been emitted; the engine keeps working afterwards. "#fail-after N
 * unavailable" fails with ERR_UNAVAILABLE instead, as a tensor-parallel group that lost a
 * rank does (the scheduler then reports the engine failed).
 *
 * Owns: per slot, the script's ids and a position; a tokenizer of its own (from the
 * model's GGUF); a text buffer for decoding prompts. All allocated at create. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "tok.h"

#define SCRIPT_MAX 16384 /* tokens per script */

typedef struct script_slot {
    int32_t *ids; /* (SCRIPT_MAX) */
    int n, pos;
    int fail_at;  /* fail when pos reaches it; -1 never */
    int fail_code; /* ERR_IO, or ERR_UNAVAILABLE ("#fail-after N unavailable") */
} script_slot;

struct engine {
    tok *tk;
    int max_seqs, n_ctx, kv_block;
    script_slot *slots;  /* (max_seqs) */
    int *batch_slot;     /* (max_seqs) slot of each entry of the last forward */
    char *text;          /* (text_cap) a decoded prompt */
    size_t text_cap;
    char *file;          /* (SCRIPT_MAX * 16) a script's text */
};

static int script_plan(const model *m, const engine_opts *o, engine_plan *p, err *e) {
    (void)m;
    (void)e;
    memset(p, 0, sizeof *p);
    p->kv_block = 16;
    p->n_kv_blocks = o->n_kv_blocks ? o->n_kv_blocks : o->max_seqs * ((o->n_ctx + 15) / 16);
    p->prefix_cache = 1;
    p->work_bytes = (uint64_t)o->max_seqs * SCRIPT_MAX * 4;
    p->total_bytes = p->work_bytes;
    p->available_from = "scripted test engine";
    return 0;
}

static void script_destroy(engine *g) {
    if (!g) return;
    for (int i = 0; g->slots && i < g->max_seqs; i++) free(g->slots[i].ids);
    free(g->slots);
    free(g->batch_slot);
    free(g->text);
    free(g->file);
    tok_free(g->tk);
    free(g);
}

static int script_create(engine **out, const model *m, const engine_opts *o, err *e) {
    engine *g = calloc(1, sizeof *g);
    if (!g) return err_set(e, ERR_NOMEM, "out of memory");
    g->max_seqs = o->max_seqs;
    g->n_ctx = o->n_ctx;
    g->kv_block = 16;
    tok_vocab v;
    int rc = tok_vocab_from_gguf(&v, m->gguf, e);
    if (rc) { free(g); return rc; }
    rc = tok_create(&g->tk, &v, e);
    tok_vocab_free(&v);
    if (rc) { free(g); return rc; }
    g->slots = calloc((size_t)o->max_seqs, sizeof *g->slots);
    g->batch_slot = calloc((size_t)o->max_seqs, sizeof *g->batch_slot);
    g->text_cap = (size_t)o->n_ctx * 64 + 1;
    g->text = malloc(g->text_cap);
    g->file = malloc(SCRIPT_MAX * 16 + 1);
    if (!g->slots || !g->batch_slot || !g->text || !g->file) { script_destroy(g); return err_set(e, ERR_NOMEM, "out of memory"); }
    for (int i = 0; i < o->max_seqs; i++)
        if (!(g->slots[i].ids = malloc(sizeof(int32_t) * SCRIPT_MAX))) {
            script_destroy(g);
            return err_set(e, ERR_NOMEM, "out of memory");
        }
    *out = g;
    return 0;
}

static int script_forward(engine *g, const engine_seq *seqs, int n, err *e) {
    for (int i = 0; i < n; i++) {
        if (seqs[i].slot < 0 || seqs[i].slot >= g->max_seqs || seqs[i].pos + seqs[i].n > g->n_ctx)
            return err_set(e, ERR_INVALID, "scripted engine: entry %d out of range", i);
        g->batch_slot[i] = seqs[i].slot;
    }
    return 0;
}

/* The slot's script from the last marker in its decoded prompt. */
static void load_script(engine *g, script_slot *s, const int32_t *tokens, int n) {
    size_t len = tok_decode(g->tk, tokens, n, g->text, g->text_cap, 1);
    if (len >= g->text_cap) len = g->text_cap - 1;
    g->text[len] = 0;
    const char *mark = NULL;
    for (const char *p = g->text; (p = strstr(p, "[[script:")); p++) mark = p;
    const char *body = "Hello from the scripted engine.";
    size_t blen = strlen(body);
    char name[64];
    if (mark) {
        const char *q = mark + 9;
        size_t k = 0;
        while (k + 1 < sizeof name && ((q[k] >= 'a' && q[k] <= 'z') || (q[k] >= 'A' && q[k] <= 'Z') ||
                                        (q[k] >= '0' && q[k] <= '9') || q[k] == '_' || q[k] == '-'))
            k++;
        memcpy(name, q, k);
        name[k] = 0;
        const char *dir = getenv("SPARKD_SCRIPT_DIR");
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.txt", dir ? dir : ".", name);
        FILE *f = fopen(path, "rb");
        if (f) {
            blen = fread(g->file, 1, SCRIPT_MAX * 16, f);
            fclose(f);
            body = g->file;
        } else {
            snprintf(g->file, SCRIPT_MAX * 16, "[no script %s]", name);
            body = g->file;
            blen = strlen(body);
        }
    }
    s->fail_at = -1;
    if (blen > 12 && !memcmp(body, "#fail-after ", 12)) {
        s->fail_at = atoi(body + 12);
        const char *nl = memchr(body, '\n', blen);
        const size_t ll = nl ? (size_t)(nl - body) : blen;
        s->fail_code = ll >= 23 && memmem(body, ll, " unavailable", 12) ? ERR_UNAVAILABLE : ERR_IO;
        size_t skip = nl ? (size_t)(nl - body) + 1 : blen;
        body += skip;
        blen -= skip;
    }
    err e = {0};
    int k = tok_encode(g->tk, body, blen, 0, 1, s->ids, SCRIPT_MAX, &e);
    s->n = k < 0 ? 0 : k;
    s->pos = 0;
}

static int script_slot_reset(engine *g, int slot, const int32_t *tokens, int n, err *e) {
    if (slot < 0 || slot >= g->max_seqs) return err_set(e, ERR_INVALID, "scripted engine: slot out of range");
    load_script(g, &g->slots[slot], tokens, n);
    return 0;
}

static int script_slot_accept(engine *g, int slot, int32_t token, err *e) {
    (void)token;
    if (slot < 0 || slot >= g->max_seqs) return err_set(e, ERR_INVALID, "scripted engine: slot out of range");
    g->slots[slot].pos++;
    return 0;
}

static int allowed(const uint32_t *mask, int32_t id) { return !mask || (mask[id / 32] >> (id % 32) & 1); }

static int script_sample(engine *g, const engine_sample_in *in, int n, engine_sample_out *out, err *e) {
    const int32_t V = tok_vocab_size(g->tk), eos = tok_eos(g->tk);
    for (int i = 0; i < n; i++) {
        script_slot *s = &g->slots[g->batch_slot[in[i].seq]];
        if (s->fail_at >= 0 && s->pos >= s->fail_at) {
            s->fail_at = -1;
            return err_set(e, s->fail_code, "injected engine fault (scripted engine, #fail-after)");
        }
        int32_t t = s->pos < s->n ? s->ids[s->pos] : eos;
        for (int b = 0; b < in[i].n_bias; b++) /* a +100 bias wins, as in a real sampler */
            if (in[i].bias_vals[b] >= 100) t = in[i].bias_ids[b];
        if (!allowed(in[i].mask, t) && s->pos < s->n) {
            /* the longest allowed token that is a prefix of the script's rest */
            size_t rl = tok_decode(g->tk, s->ids + s->pos, s->n - s->pos, g->text, g->text_cap, 1);
            if (rl >= g->text_cap) rl = g->text_cap - 1;
            int32_t best = -1;
            size_t best_len = 0;
            for (int32_t id = 0; id < V; id++) {
                size_t pl;
                const char *p = allowed(in[i].mask, id) ? tok_piece(g->tk, id, &pl, 1) : NULL;
                if (p && pl > best_len && pl <= rl && !memcmp(p, g->text, pl)) { best = id; best_len = pl; }
            }
            if (best >= 0) {
                err te = {0};
                int k = tok_encode(g->tk, g->text + best_len, rl - best_len, 0, 1, s->ids + s->pos + 1,
                                   SCRIPT_MAX - s->pos - 1, &te);
                s->ids[s->pos] = best;
                s->n = s->pos + 1 + (k < 0 ? 0 : k);
                t = best;
            }
        }
        if (!allowed(in[i].mask, t)) {
            int32_t pick = eos >= 0 && allowed(in[i].mask, eos) ? eos : -1;
            for (int32_t id = 0; pick < 0 && id < V; id++)
                if (allowed(in[i].mask, id)) pick = id;
            if (pick < 0) return err_set(e, ERR_INVALID, "scripted engine: the mask allows nothing");
            fprintf(stderr, "scripted engine: the mask refused script token %d; picked %d\n", t, pick);
            t = pick;
        }
        memset(&out[i], 0, sizeof out[i]);
        out[i].token = t;
        out[i].logprob = 0;
        out[i].n_top = 0;
    }
    return 0;
}

static const float *script_logits(engine *g, int seq, err *e) {
    (void)g;
    (void)seq;
    err_set(e, ERR_UNSUPPORTED, "the scripted engine has no logits");
    return NULL;
}

static void script_usage(const engine *g, engine_usage *u) {
    memset(u, 0, sizeof *u);
    u->work_bytes = (uint64_t)g->max_seqs * SCRIPT_MAX * 4;
}

/* engine.c selects this table whenever a binary defines it (tests only). */
const engine_ops engine_test_ops = {
    .name = "script",
    .plan = script_plan,
    .create = script_create,
    .destroy = script_destroy,
    .forward = script_forward,
    .slot_reset = script_slot_reset,
    .slot_accept = script_slot_accept,
    .sample = script_sample,
    .logits = script_logits,
    .usage = script_usage,
};
