/* test_engine — the engine seam on the CPU backend (engine.h), on the default model
 * (SPARKD_MODEL):
 *  - for every kv_type and several option sets, what create really allocated
 *    (ops->usage, counted allocation by allocation) equals plan's bytes, category by
 *    category, and the KV bytes follow the shared arithmetic (engine_kv_bytes_per_token);
 *  - the memory limit refuses exactly above the planned total, through plan and through
 *    the session the server starts with;
 *  - forward through the ops table: paging is invisible (another block table, bit for
 *    bit), prompt chunks > 1 token and batching with another prefill give the same bits,
 *    every KV type stays close to f32 (and the lossy ones really differ from it);
 *  - forward refuses bad batches (ERR_INVALID, naming the problem) and keeps working;
 *  - sampling through the ops: greedy = argmax, logprobs = log-softmax computed here in
 *    double, mask and bias act, the same draw gives the same token;
 *  - engine_select and the kv type names. */
#include <math.h>
#include <string.h>

#include "engine.h"
#include "model.h"
#include "session.h"
#include "t.h"

static const char *model_path(void) {
    const char *p = getenv("SPARKD_MODEL");
    return p && *p ? p : "models/gemma-3-270m-q4_k_m.gguf";
}

static float *copy_logits(const float *l, int V) {
    float *c = malloc(sizeof(float) * (size_t)V);
    memcpy(c, l, sizeof(float) * (size_t)V);
    return c;
}

static int argmax(const float *l, int V) {
    int b = 0;
    for (int i = 1; i < V; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

static float max_abs_diff(const float *a, const float *b, int V) {
    float m = 0;
    for (int i = 0; i < V; i++) m = fabsf(a[i] - b[i]) > m ? fabsf(a[i] - b[i]) : m;
    return m;
}

/* Prefill ids[0..n) into slot 0 with blocks, in chunks of `chunk`; returns a copy of
 * the last logits (NULL on error). */
static float *prefill(const engine_ops *ops, engine *g, const int32_t *ids, int n, int chunk, const int32_t *blocks,
                      int V) {
    err e = {0};
    for (int done = 0; done < n;) {
        int k = n - done < chunk ? n - done : chunk;
        engine_seq q = {.tokens = ids + done, .n = k, .pos = done, .blocks = blocks, .slot = 0,
                        .want = done + k == n ? ENGINE_WANT_LOGITS : 0};
        if (ops->forward(g, &q, 1, &e)) {
            printf("# forward: %s\n", e.msg);
            return NULL;
        }
        done += k;
    }
    const float *l = ops->logits(g, 0, &e);
    return l ? copy_logits(l, V) : NULL;
}

int main(void) {
    err e = {0};
    model *m;
    if (model_load(&m, model_path(), NULL, &e)) {
        printf("not ok - load %s: %s\n", model_path(), e.msg);
        return 1;
    }
    const engine_ops *ops = engine_select("cpu", &e);
    T_OK(ops == &engine_cpu_ops, "engine_select(\"cpu\") is the CPU backend");
    const int V = m->hp.n_vocab;

    /* ---- plan == allocation, every kv type ---- */
    const engine_opts sets[] = {
        {.n_threads = 2, .n_ctx = 200, .max_seqs = 3, .max_tokens = 48},
        {.n_threads = 1, .n_ctx = 64, .max_seqs = 1, .max_tokens = 8, .n_kv_blocks = 7},
        {.n_threads = 3, .n_ctx = 33, .max_seqs = 2, .max_tokens = 5, .n_kv_blocks = 5},
    };
    uint64_t kv_bytes[ENGINE_KV_COUNT] = {0};
    for (int t = 0; t < ENGINE_KV_COUNT; t++)
        for (size_t k = 0; k < sizeof sets / sizeof *sets; k++) {
            engine_opts o = sets[k];
            o.kv_type = (engine_kv_type)t;
            engine_plan p;
            e = (err){0};
            int rc = ops->plan(m, &o, &p, &e);
            engine *g = NULL;
            if (!rc) rc = ops->create(&g, m, &o, &e);
            if (rc) {
                T_OK(0, "kv %s, set %zu: plan + create (%s)", engine_kv_type_name(o.kv_type), k, e.msg);
                continue;
            }
            engine_usage u;
            ops->usage(g, &u);
            const int want_blocks = o.n_kv_blocks ? o.n_kv_blocks : o.max_seqs * ((o.n_ctx + p.kv_block - 1) / p.kv_block);
            T_OK(u.weights_bytes == p.weights_bytes && u.kv_bytes == p.kv_bytes && u.state_bytes == p.state_bytes &&
                     u.work_bytes == p.work_bytes &&
                     p.total_bytes == p.weights_bytes + p.kv_bytes + p.state_bytes + p.work_bytes,
                 "kv %s, set %zu: allocated = planned (weights %llu, KV %llu / %llu, work %llu / %llu)",
                 engine_kv_type_name(o.kv_type), k, (unsigned long long)u.weights_bytes,
                 (unsigned long long)u.kv_bytes, (unsigned long long)p.kv_bytes, (unsigned long long)u.work_bytes,
                 (unsigned long long)p.work_bytes);
            T_OK(p.n_kv_blocks == want_blocks &&
                     p.kv_bytes == engine_kv_bytes_per_token(m, o.kv_type) * (uint64_t)p.kv_block * (uint64_t)want_blocks,
                 "kv %s, set %zu: %d blocks of %d positions x %llu bytes/position", engine_kv_type_name(o.kv_type), k,
                 p.n_kv_blocks, p.kv_block, (unsigned long long)p.kv_bytes_per_token);
            if (k == 0) kv_bytes[t] = p.kv_bytes;
            ops->destroy(g);
        }
    /* the arithmetic itself: K and V, every layer, n_head_kv rows of head_dim elements (+ a scale) */
    const uint64_t rows = 2ull * (uint64_t)m->hp.n_layer * (uint64_t)m->hp.n_head_kv, hd = (uint64_t)m->hp.head_dim;
    T_OK(engine_kv_bytes_per_token(m, ENGINE_KV_F32) == rows * hd * 4 && engine_kv_bytes_per_token(m, ENGINE_KV_F16) == rows * hd * 2 &&
             engine_kv_bytes_per_token(m, ENGINE_KV_BF16) == rows * hd * 2 &&
             engine_kv_bytes_per_token(m, ENGINE_KV_Q8) == rows * (hd + 4) &&
             engine_kv_bytes_per_token(m, ENGINE_KV_FP8) == rows * (hd + 4),
         "KV bytes per token: f32 4, f16/bf16 2, q8/fp8 1 byte per element + an f32 scale per row");
    T_OK(kv_bytes[ENGINE_KV_F32] == 2 * kv_bytes[ENGINE_KV_F16] && kv_bytes[ENGINE_KV_F16] == kv_bytes[ENGINE_KV_BF16] &&
             kv_bytes[ENGINE_KV_Q8] == kv_bytes[ENGINE_KV_FP8] && kv_bytes[ENGINE_KV_Q8] < kv_bytes[ENGINE_KV_F16],
         "plans differ by KV type as they must");

    /* ---- the memory limit: exactly the planned total passes, one byte less fails ---- */
    {
        engine_opts o = sets[0];
        o.kv_type = ENGINE_KV_Q8;
        engine_plan p;
        e = (err){0};
        ops->plan(m, &o, &p, &e);
        o.memory_limit = p.total_bytes;
        engine_plan p2;
        int at = ops->plan(m, &o, &p2, &e);
        o.memory_limit = p.total_bytes - 1;
        e = (err){0};
        int below = ops->plan(m, &o, &p2, &e);
        T_OK(at == 0 && below == ERR_NOMEM && strstr(e.msg, "memory limit") && strstr(e.msg, "KV cache"),
             "plan: limit = total passes, total - 1 refused with ERR_NOMEM (%s)", e.msg);

        session_opts so;
        session_defaults(&so);
        so.model_path = model_path();
        so.n_threads = o.n_threads;
        so.n_ctx = o.n_ctx;
        so.max_seqs = o.max_seqs;
        so.max_tokens = o.max_tokens;
        so.kv_type = o.kv_type;
        so.tokenizer = 1;
        so.scheduler = 1;
        so.max_queue = 2;
        so.memory_limit = p.total_bytes - 1;
        session *s = NULL;
        e = (err){0};
        int rc1 = session_open(&s, &so, &e);
        T_OK(rc1 == ERR_NOMEM && !s, "session (the server's path): limit one byte below the plan refused (%s)", e.msg);
        so.memory_limit = p.total_bytes;
        e = (err){0};
        int rc2 = session_open(&s, &so, &e);
        T_OK(rc2 == 0 && s && s->plan.total_bytes == p.total_bytes,
             "session: limit = the planned total starts, with the same plan (%s)", e.msg);
        session_close(s);
    }

    /* ---- forward through the ops table ---- */
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = ((i * 7919 + 13) % 20000 + 2) % V;
    ids[0] = 2;
    const engine_opts fo = {.n_threads = 2, .n_ctx = 64, .max_seqs = 2, .max_tokens = 48};
    float *ref[ENGINE_KV_COUNT] = {0};
    for (int t = 0; t < ENGINE_KV_COUNT; t++) {
        engine_opts o = fo;
        o.kv_type = (engine_kv_type)t;
        engine *g;
        e = (err){0};
        if (ops->create(&g, m, &o, &e)) {
            T_OK(0, "create kv %s: %s", engine_kv_type_name(o.kv_type), e.msg);
            continue;
        }
        const int32_t b0[4] = {0, 1, 2, 3}, b1[4] = {7, 5, 6, 4};
        ref[t] = prefill(ops, g, ids, 30, 48, b0, V);
        float *paged = prefill(ops, g, ids, 30, 48, b1, V);
        float *chunked = prefill(ops, g, ids, 30, 17, b1, V);
        if (t == ENGINE_KV_F32) {
            T_OK(ref[t] && paged && !memcmp(ref[t], paged, sizeof(float) * (size_t)V),
                 "kv f32: another block table (scattered, reversed) gives the same logits bit for bit");
            T_OK(ref[t] && chunked && !memcmp(ref[t], chunked, sizeof(float) * (size_t)V),
                 "kv f32: the prompt in chunks of 17 + 13 gives the same logits bit for bit");
        } else {
            T_OK(ref[t] && paged && !memcmp(ref[t], paged, sizeof(float) * (size_t)V) && chunked &&
                     !memcmp(ref[t], chunked, sizeof(float) * (size_t)V),
                 "kv %s: block table and chunking invisible, bit for bit", engine_kv_type_name(o.kv_type));
        }
        /* batched with another sequence's prefill: rows of a product are independent
         * (the output head is one product over the rows that want logits, so only
         * entry 1 asks: a head of 2 rows sums in another order than one of 1) */
        engine_seq two[2] = {{.tokens = ids + 5, .n = 9, .pos = 0, .blocks = b0, .slot = 1},
                             {.tokens = ids, .n = 30, .pos = 0, .blocks = b1, .slot = 0, .want = ENGINE_WANT_LOGITS}};
        const float *l1 = NULL;
        int rc = ops->forward(g, two, 2, &e);
        if (!rc) l1 = ops->logits(g, 1, &e);
        T_OK(l1 && ref[t] && !memcmp(l1, ref[t], sizeof(float) * (size_t)V),
             "kv %s: batched with another prefill, entry 1's logits are the same bits", engine_kv_type_name(o.kv_type));

        if (t == ENGINE_KV_F32) {
            /* ---- hostile batches ---- */
            const int32_t bad_tok = V, big[1] = {0};
            const int32_t bad_blocks[4] = {0, 1, 99, 3}, *nob = NULL;
            struct { engine_seq q[2]; int n; const char *want; } rows[] = {
                {{{.tokens = ids, .n = 0, .blocks = b0}}, 1, "do not fit"},
                {{{.tokens = ids, .n = 10, .pos = 60, .blocks = b0}}, 1, "do not fit"},
                {{{.tokens = ids, .n = 1, .pos = -1, .blocks = b0}}, 1, "do not fit"},
                {{{.tokens = ids, .n = 1, .blocks = b0, .slot = 2}}, 1, "slot 2 out of range"},
                {{{.tokens = ids, .n = 1, .blocks = b0}, {.tokens = ids, .n = 1, .blocks = b1}}, 2, "used twice"},
                {{{.tokens = ids, .n = 40, .pos = 0, .blocks = bad_blocks}}, 1, "KV block 99 out of range"},
                {{{.tokens = &bad_tok, .n = 1, .blocks = b0}}, 1, "out of range [0,"},
                {{{.tokens = big, .n = 1, .blocks = nob}}, 1, "no block table"},
                {{{.tokens = ids, .n = 40, .blocks = b0}, {.tokens = ids, .n = 9, .blocks = b1, .slot = 1}}, 2,
                 "more than 48 tokens"},
                {{{.tokens = ids, .n = 1, .blocks = b0}}, 3, "batch of 3 sequences"},
            };
            for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
                e = (err){0};
                rc = ops->forward(g, rows[r].q, rows[r].n, &e);
                T_OK(rc == ERR_INVALID && strstr(e.msg, rows[r].want), "bad batch %zu refused: '%s'", r, e.msg);
            }
            e = (err){0};
            T_OK(!ops->logits(g, 0, &e) && e.code == ERR_INVALID, "after a refused batch no logits are offered (%s)", e.msg);
            float *again = prefill(ops, g, ids, 30, 48, b0, V);
            T_OK(again && ref[t] && !memcmp(again, ref[t], sizeof(float) * (size_t)V),
                 "the engine works the same after refused batches");
            free(again);
            engine_seq nolog = {.tokens = ids, .n = 3, .pos = 0, .blocks = b0, .slot = 0};
            e = (err){0};
            T_OK(ops->forward(g, &nolog, 1, &e) == 0 && !ops->logits(g, 0, &e) && e.code == ERR_INVALID,
                 "an entry that did not want logits has none (%s)", e.msg);

            /* ---- sampling through the ops ---- */
            float *l = prefill(ops, g, ids, 30, 48, b0, V);
            sampler_params sp;
            sampler_default_params(&sp);
            sp.temperature = 0;
            ops->slot_reset(g, 0, ids, 30, &e);
            engine_sample_in in = {.seq = 0, .sp = &sp, .u = 0.5f, .logprob = 1, .n_top = ENGINE_MAX_TOP};
            engine_sample_out out;
            e = (err){0};
            rc = ops->sample(g, &in, 1, &out, &e);
            double mx = l[0], sum = 0;
            for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
            for (int i = 0; i < V; i++) sum += exp((double)l[i] - mx);
            const double lse = mx + log(sum);
            int sorted = out.n_top == ENGINE_MAX_TOP && out.top_ids[0] == argmax(l, V);
            for (int k = 1; k < out.n_top; k++) sorted &= out.top_logprobs[k] <= out.top_logprobs[k - 1];
            T_OK(rc == 0 && out.token == argmax(l, V) && fabs(out.logprob - (l[out.token] - lse)) < 1e-4 && sorted &&
                     fabs(out.top_logprobs[5] - (l[out.top_ids[5]] - lse)) < 1e-4,
                 "greedy sample = argmax %d, logprob %.5f = log-softmax %.5f, top-20 in order", out.token,
                 (double)out.logprob, l[argmax(l, V)] - lse);
            const int best = out.token;
            uint32_t *mask = calloc((size_t)(V + 31) / 32, sizeof(uint32_t));
            mask[123 / 32] |= 1u << (123 % 32);
            mask[4567 / 32] |= 1u << (4567 % 32);
            in = (engine_sample_in){.seq = 0, .sp = &sp, .u = 0.5f, .mask = mask};
            rc = ops->sample(g, &in, 1, &out, &e);
            const int masked = out.token;
            const int32_t bid = 777;
            const float bval = 1000.0f;
            in = (engine_sample_in){.seq = 0, .sp = &sp, .u = 0.5f, .bias_ids = &bid, .bias_vals = &bval, .n_bias = 1};
            rc |= ops->sample(g, &in, 1, &out, &e);
            T_OK(rc == 0 && masked == (l[123] >= l[4567] ? 123 : 4567) && out.token == 777 && best != 777,
                 "mask keeps the pick inside {123, 4567} (%d); a +1000 bias on 777 wins (%d)", masked, out.token);
            free(mask);
            sp.temperature = 1.0f;
            int same = 1, differs = 0;
            int32_t first = -1;
            for (int k = 0; k < 8; k++) {
                in = (engine_sample_in){.seq = 0, .sp = &sp, .u = 0.3f};
                ops->sample(g, &in, 1, &out, &e);
                if (k == 0) first = out.token;
                same &= out.token == first;
                in.u = 0.9999f;
                engine_sample_out o2;
                ops->sample(g, &in, 1, &o2, &e);
                differs |= o2.token != first;
            }
            T_OK(same && differs, "the same draw gives the same token; another draw another one");
            in = (engine_sample_in){.seq = 0, .sp = &sp, .u = 1.0f};
            e = (err){0};
            T_OK(ops->sample(g, &in, 1, &out, &e) == ERR_INVALID, "a draw outside [0, 1) is refused (%s)", e.msg);
            in = (engine_sample_in){.seq = 1, .sp = &sp, .u = 0.1f};
            e = (err){0};
            T_OK(ops->sample(g, &in, 1, &out, &e) == ERR_INVALID, "sampling an entry that has no logits is refused (%s)",
                 e.msg);
            free(l);
        }
        free(paged);
        free(chunked);
        ops->destroy(g);
    }
    /* every KV type near f32; the lossy ones really are lossy (the type is used) */
    if (ref[ENGINE_KV_F32]) {
        const int am = argmax(ref[ENGINE_KV_F32], V);
        for (int t = 1; t < ENGINE_KV_COUNT; t++) {
            if (!ref[t]) continue;
            const float d = max_abs_diff(ref[t], ref[ENGINE_KV_F32], V);
            T_OK(d > 0 && d < 1.5f && argmax(ref[t], V) == am, "kv %s vs f32: max |diff| %.4f, same argmax %d",
                 engine_kv_type_name((engine_kv_type)t), (double)d, am);
        }
    }
    for (int t = 0; t < ENGINE_KV_COUNT; t++) free(ref[t]);

    /* ---- names and selection ---- */
    int names = 1;
    for (int t = 0; t < ENGINE_KV_COUNT; t++) names &= engine_kv_type_parse(engine_kv_type_name((engine_kv_type)t)) == t;
    T_OK(names && engine_kv_type_parse("q8") == ENGINE_KV_Q8 && engine_kv_type_parse("fp8") == ENGINE_KV_FP8 &&
             engine_kv_type_parse("f8") == -1 && engine_kv_type_parse(NULL) == -1,
         "kv type names round-trip (" ENGINE_KV_TYPE_NAMES "); unknown -> -1");
    e = (err){0};
    T_OK(!engine_select("gpu", &e) && e.code == ERR_INVALID && strstr(e.msg, "cpu, cuda, auto"), "unknown device refused (%s)",
         e.msg);
    e = (err){0};
    T_OK(!engine_select("cuda", &e) && e.code == ERR_UNSUPPORTED, "cuda without a CUDA engine linked in: a clean error (%s)",
         e.msg);
    T_OK(engine_select("auto", &e) == &engine_cpu_ops, "auto without a GPU engine is the CPU");
    model_free(m);
    T_DONE();
}
