/* generate.c — the generation loop behind /v1/chat/completions and
 * /v1/completions: validated request (request.c) -> prompt ids (prompt.c) ->
 * scheduler -> text -> stop strings -> output parser -> the API's writer
 * (chat.c, completions.c) as SSE chunks (sse.c) or one JSON reply.
 *
 * Text path per generated token: tok_stream (complete UTF-8 only) -> stop
 * matcher (holds back text that may be the start of a stop string) -> output
 * parser for chat models with reasoning/tool formats (output_parse.h) ->
 * pending deltas in the worker's buffers.
 *
 * Streaming: headers go out with the first chunk, or with the first keep-alive
 * comment if the prompt takes longer than keepalive_ms to prefill (so proxies
 * do not time out). A failed write, or the connection polled as hung up, cancels
 * the request at once; the scheduler drops it at its next step.
 *
 * How a generation ends, as the client sees it (also INSTALL.md, "Faults"):
 *   end-of-generation token, stop string   finish_reason "stop" ([DONE] when streamed)
 *   tool call(s) parsed                     "tool_calls" (parallel_tool_calls false: the
 *                                           generation ends after the first complete call)
 *   max_tokens or the context reached       "length"
 *   drain deadline (SIGTERM + drain_s)      whole: 503 JSON error, Retry-After;
 *                                           stream: the text so far, then an
 *                                           error event, no finish_reason, no [DONE]
 *   engine fault                            the same with 500 (code engine_error)
 *   sparkd killed mid-stream                the connection is cut (wire.c): the
 *                                           client sees a broken transfer
 * A cut is never reported as "stop". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "constrain.h"
#include "run.h"

#define POLL_MS 50 /* how often a waiting worker checks its client */

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void make_id(char *out, size_t cap, const char *prefix) {
    uint8_t r[12];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        uint64_t t = (uint64_t)(mono_s() * 1e9);
        memcpy(r, &t, 8);
        memset(r + 8, 0x5a, 4);
    }
    int k = snprintf(out, cap, "%s", prefix);
    for (size_t i = 0; i < sizeof r && (size_t)k + 2 < cap; i++) k += snprintf(out + k, cap - (size_t)k, "%02x", r[i]);
}

/* ---------- text routing ---------- */

/* One record of the ordered log: [type u8][index u32][len u32][len bytes];
 * a TOOL_START's bytes are the id, NUL, the name, NUL. */
static void log_event(jw *log, int type, int index, const char *a, size_t na, const char *b, size_t nb) {
    unsigned char h[9];
    uint32_t i = (uint32_t)index, n = (uint32_t)(na + (b ? nb + 2 : 0));
    h[0] = (unsigned char)type;
    memcpy(h + 1, &i, 4);
    memcpy(h + 5, &n, 4);
    jw_raw(log, (const char *)h, 9);
    jw_raw(log, a, na);
    if (b) {
        jw_raw(log, "", 1); /* one NUL byte */
        jw_raw(log, b, nb);
        jw_raw(log, "", 1);
    }
}

int fcgi_events_next(const jw *log, size_t *at, fcgi_evrec *r) {
    if (*at + 9 > log->n) return 0;
    const unsigned char *h = (const unsigned char *)log->p + *at;
    uint32_t i, n;
    memcpy(&i, h + 1, 4);
    memcpy(&n, h + 5, 4);
    memset(r, 0, sizeof *r);
    r->type = h[0];
    r->index = (int)i;
    r->text = log->p + *at + 9;
    r->len = n;
    if (r->type == FCGI_EV_TOOL_START) { /* id, NUL, name */
        r->id = r->text;
        r->name = r->text + strlen(r->text) + 1;
    }
    *at += 9 + n;
    return 1;
}

static void on_parse(void *user, const parse_event *ev) {
    fcgi_run *R = user;
    fcgi_worker *w = R->w;
    /* parallel_tool_calls false: nothing after the first complete call is the
     * reply (on_token ends the generation there) */
    if (R->tools.done) return;
    switch (ev->type) {
    case PARSE_EV_CONTENT:
        jw_raw(&w->content, ev->text, ev->len);
        jw_raw(&w->all_content, ev->text, ev->len);
        log_event(&w->events, FCGI_EV_CONTENT, 0, ev->text, ev->len, NULL, 0);
        R->in_reasoning = 0;
        break;
    case PARSE_EV_REASONING:
        jw_raw(&w->reasoning, ev->text, ev->len);
        jw_raw(&w->all_reasoning, ev->text, ev->len);
        log_event(&w->events, FCGI_EV_REASONING, 0, ev->text, ev->len, NULL, 0);
        R->in_reasoning = 1;
        break;
    case PARSE_EV_TOOL_START:
        R->in_reasoning = 0;
        log_event(&w->events, FCGI_EV_TOOL_START, ev->index, ev->id ? ev->id : "", ev->id ? strlen(ev->id) : 0,
                  ev->name ? ev->name : "", ev->name ? strlen(ev->name) : 0);
        fcgi_tools_close(R);
        if (w->tools.n) jw_lit(&w->tools, ",");
        jw_lit(&w->tools, "{\"index\":");
        jw_int(&w->tools, ev->index);
        jw_lit(&w->tools, ",\"id\":");
        jw_str(&w->tools, ev->id ? ev->id : "", ev->id ? strlen(ev->id) : 0);
        jw_lit(&w->tools, ",\"type\":\"function\",\"function\":{\"name\":");
        jw_str(&w->tools, ev->name ? ev->name : "", ev->name ? strlen(ev->name) : 0);
        jw_lit(&w->tools, ",\"arguments\":\"");
        R->tools.open = 1;
        R->tools.n++;
        break;
    case PARSE_EV_TOOL_ARGS:
        if (!R->tools.open) {
            /* streaming: a later chunk continues the open call by index */
            if (w->tools.n) jw_lit(&w->tools, ",");
            jw_lit(&w->tools, "{\"index\":");
            jw_int(&w->tools, ev->index);
            jw_lit(&w->tools, ",\"function\":{\"arguments\":\"");
            R->tools.open = 1;
        }
        jw_str_body(&w->tools, ev->text, ev->len);
        log_event(&w->events, FCGI_EV_TOOL_ARGS, ev->index, ev->text, ev->len, NULL, 0);
        break;
    case PARSE_EV_TOOL_END:
        fcgi_tools_close(R);
        log_event(&w->events, FCGI_EV_TOOL_END, ev->index, "", 0, NULL, 0);
        if (!R->g->parallel_tool_calls) R->tools.done = 1;
        break;
    }
}

/* Released text (no stop string can start in it) goes to the parser or to content. */
static void emit_text(fcgi_run *R, const char *p, size_t n) {
    if (!n) return;
    if (R->ps) parse_feed(R->ps, p, n, on_parse, R);
    else {
        jw_raw(&R->w->content, p, n);
        jw_raw(&R->w->all_content, p, n);
        log_event(&R->w->events, FCGI_EV_CONTENT, 0, p, n, NULL, 0);
    }
}

/* Longest suffix of h[0..n) that is a proper prefix of some stop string. */
static size_t partial_stop(const fcgi_gen *g, const char *h, size_t n) {
    size_t best = 0;
    for (int i = 0; i < g->n_stop; i++) {
        size_t L = g->stop_len[i];
        size_t k = L - 1 < n ? L - 1 : n;
        for (; k > best; k--)
            if (!memcmp(h + n - k, g->stop[i], k)) { best = k; break; }
    }
    return best;
}

/* Adds decoded text; returns 1 if a stop string matched (text before it is emitted). */
static int feed_text(fcgi_run *R, const char *p, size_t n) {
    const fcgi_gen *g = R->g;
    if (!g->n_stop) { emit_text(R, p, n); return 0; }
    fcgi_worker *w = R->w;
    while (n) {
        size_t take = w->hold_cap - R->nhold;
        if (take > n) take = n;
        memcpy(w->hold + R->nhold, p, take);
        R->nhold += take;
        p += take;
        n -= take;
        /* earliest match wins */
        size_t at = (size_t)-1;
        for (int i = 0; i < g->n_stop; i++) {
            const char *m = memmem(w->hold, R->nhold, g->stop[i], g->stop_len[i]);
            if (m && (size_t)(m - w->hold) < at) {
                at = (size_t)(m - w->hold);
                R->stop_index = i;
            }
        }
        if (at != (size_t)-1) {
            emit_text(R, w->hold, at);
            R->nhold = 0;
            return 1;
        }
        size_t keep = partial_stop(g, w->hold, R->nhold);
        emit_text(R, w->hold, R->nhold - keep);
        memmove(w->hold, w->hold + R->nhold - keep, keep);
        R->nhold = keep;
    }
    return 0;
}

/* ---------- the request ---------- */

static int reply_error(fcgi_app *a, fcgi_out *o, const fcgi_error *er) {
    const char *extra = NULL;
    char ra[64];
    if (er->status == 429) {
        snprintf(ra, sizeof ra, "Retry-After: %d\r\n", a->cfg->retry_after_s);
        extra = ra;
    }
    fcgi_reply_error(o, er, extra);
    return er->status;
}

/* Non-streamed reply: everything collected in w->content/reasoning/tools/lp. */
static int send_whole(fcgi_run *R, const char *finish) {
    jw *f = &R->w->frame;
    jw_reset(f);
    R->api->whole(R, f, finish);
    if (f->oom) {
        fcgi_error er;
        fcgi_errorf(&er, 500, "server_error", NULL, NULL, "out of memory building the reply");
        return reply_error(R->a, R->o, &er);
    }
    fcgi_reply_json(R->o, 200, f, NULL);
    return 200;
}

/* A generation that could not finish (drain deadline, engine fault): never a
 * success. Before anything was sent: the error as the whole reply (with
 * Retry-After on 503). Mid-stream: what was generated goes out, then the error
 * object as the last event and no [DONE], so a client that reads to the end
 * knows the text is incomplete (the openai client raises APIError on it). */
static int cut_reply(fcgi_run *R, const fcgi_error *er) {
    if (!R->o->status) {
        if (er->status == 503) {
            fcgi_reply_error(R->o, er, "Retry-After: 1\r\n");
            return 503;
        }
        return reply_error(R->a, R->o, er);
    }
    R->api->stream_error(R, er);
    return R->o->status;
}

static void reset_worker_text(fcgi_worker *w) {
    jw_reset(&w->frame); jw_reset(&w->content); jw_reset(&w->reasoning); jw_reset(&w->tools);
    jw_reset(&w->events); jw_reset(&w->item); jw_reset(&w->items);
    jw_reset(&w->all_content); jw_reset(&w->all_reasoning);
    jw_reset(&w->lp); jw_reset(&w->lp2); jw_reset(&w->lp3); jw_reset(&w->lp4);
}

static int parse_request(fcgi_app *a, const fcgi_http_req *rq, fcgi_api_kind api, fcgi_gen *g, fcgi_error *er) {
    fcgi_limits lim;
    fcgi_limits_from(a, &lim);
    switch (api) {
    case FCGI_API_MESSAGES: return fcgi_messages_parse(rq->body, rq->body_len, &lim, a->model_id, 0, g, er);
    case FCGI_API_RESPONSES:
        return fcgi_responses_parse(rq->body, rq->body_len, &lim, a->model_id, a->store, g, er);
    case FCGI_API_INFILL: return fcgi_infill_parse(rq->body, rq->body_len, &lim, a->model_id, g, er);
    default: return fcgi_request_parse(rq->body, rq->body_len, api == FCGI_API_CHAT, &lim, a->model_id, g, er);
    }
}

static const fcgi_api *api_of(fcgi_api_kind k) {
    switch (k) {
    case FCGI_API_CHAT: return &fcgi_api_chat;
    case FCGI_API_RESPONSES: return &fcgi_api_responses;
    case FCGI_API_MESSAGES: return &fcgi_api_messages;
    case FCGI_API_INFILL: return &fcgi_api_infill;
    default: return &fcgi_api_completions;
    }
}

/* Client gone: cancel, then wait for the scheduler's final event so the log
 * (and the e2e test) can tell how many steps ran after the cancel. */
static void cancel_for_client(fcgi_run *R, sched_req *req) {
    sched_event ev;
    int seen = R->n_seen;
    while (sched_next(req, &ev, 0)) { /* events already pushed before the cancel */
        if (ev.type == SCHED_EV_TOKEN) seen++;
        else goto done;
    }
    sched_cancel(req);
    double t0 = mono_s();
    while (mono_s() - t0 < 30) {
        if (!sched_next(req, &ev, 1000)) continue;
        if (ev.type == SCHED_EV_TOKEN) continue;
        goto done;
    }
    fprintf(stderr, "sparkd: %s: client gone; no final event within 30 s\n", R->id);
    return;
done:
    atomic_fetch_add(&R->a->metrics.client_gone, 1);
    atomic_fetch_add(&R->a->metrics.cancelled, 1);
    if (ev.type == SCHED_EV_DONE) atomic_fetch_add(&R->a->metrics.generated_tokens, ev.n_generated);
    if (R->a->cfg->log_level >= 1)
        fprintf(stderr, "sparkd: %s: client gone after %d tokens sent; cancelled at %d generated; generation ended at %d "
                "(%d after the cancel)\n", R->id, R->n_seen, seen, ev.type == SCHED_EV_DONE ? ev.n_generated : -1,
                ev.type == SCHED_EV_DONE ? ev.n_generated - seen : -1);
}

/* One choice in flight: a request runs n of them (n > 1 on chat and
 * completions) over one prompt, each its own sequence, parser, constraint and
 * text buffers (choice 0 the worker's, the others w->more). */
typedef struct gen_choice {
    fcgi_run R;
    sched_req *req;
    fcgi_constraint *cons;
    tok_stream ts;
    const char *finish; /* how it ended, once it has */
    double t_prev;      /* the previous token's arrival */
} gen_choice;

/* One generated token through the text path (and out, when streaming). */
static void on_token(gen_choice *c, const sched_event *ev) {
    fcgi_run *R = &c->R;
    fcgi_app *a = R->a;
    double t = mono_s();
    if (R->n_seen == 0) fcgi_hist_observe(&a->metrics.ttft, t - R->t_submit);
    else fcgi_hist_observe(&a->metrics.itl, t - c->t_prev);
    c->t_prev = t;
    R->n_seen++;
    if (R->stop_hit) return; /* cancelled; draining to DONE */
    if (R->g->logprobs && R->api->logprob) R->api->logprob(R, ev);
    if (R->in_reasoning) R->n_reasoning++;
    char piece[512];
    size_t k = tok_stream_feed(a->tk, &c->ts, ev->token, piece, sizeof piece);
    if (!k && R->ps && (a->pfmt == PARSE_HARMONY || a->pfmt == PARSE_DEEPSEEK || a->pfmt == PARSE_DEEPSEEK_R1)) {
        /* harmony's structure is control tokens (<|channel|>, <|message|>,
         * <|start|>, <|end|>...): its parser reads their text. DeepSeek's
         * tool-call markers (<｜tool▁calls▁begin｜>, <｜tool▁sep｜>...) are control
         * tokens in GGUFs made by llama.cpp's converter (it marks every added
         * "<｜...｜>" token so): their parser reads them too, and only them */
        size_t sl;
        const char *sp = tok_piece(a->tk, ev->token, &sl, 1);
        static const char ds_tool[] = "<\xef\xbd\x9ctool";
        if (sp && sl && sl < sizeof piece &&
            (a->pfmt == PARSE_HARMONY || (sl > sizeof ds_tool - 1 && !memcmp(sp, ds_tool, sizeof ds_tool - 1)))) {
            memcpy(piece, sp, sl);
            k = sl;
        }
    }
    if (feed_text(R, piece, k) || R->tools.done) {
        /* a stop string, or the one tool call parallel_tool_calls false allows:
         * the reply ends here ("tool_calls" for the latter, see the DONE event) */
        R->stop_hit = 1;
        R->n_gen = R->n_seen;
        sched_cancel(c->req);
    }
    if (R->g->stream) R->api->stream_delta(R); /* a failure is handled at the loop top */
}

/* The DONE event: 0 with c->finish set, or -1 when the drain deadline cut the
 * generation (er set). */
static int on_done(gen_choice *c, const sched_event *ev, fcgi_error *er) {
    fcgi_run *R = &c->R;
    fcgi_app *a = R->a;
    R->n_cached = ev->n_cached;
    atomic_fetch_add(&a->metrics.generated_tokens, ev->n_generated);
    fcgi_hist_observe(&a->metrics.e2e, mono_s() - R->t_submit);
    if (ev->finish == SCHED_FINISH_DRAINED) {
        /* the drain deadline cut it: never "stop", the text is incomplete */
        atomic_fetch_add(&a->metrics.cut_drain, 1);
        fcgi_errorf(er, 503, "server_error", "service_unavailable", NULL,
                    "the server is shutting down: this generation was cut after %d tokens when the drain time "
                    "(%d s) ran out; retry", ev->n_generated, a->cfg->drain_s);
        if (a->cfg->log_requests)
            fprintf(stderr, "sparkd: %s: %d prompt + %d generated tokens, cut by the drain deadline\n", R->id,
                    R->n_prompt, ev->n_generated);
        return -1;
    }
    const char *finish;
    if (R->stop_hit) { finish = "stop"; atomic_fetch_add(&a->metrics.cancelled, 1); }
    else {
        R->n_gen = ev->n_generated;
        finish = ev->finish == SCHED_FINISH_LENGTH ? "length" : "stop";
        /* flush what the stop matcher and the UTF-8 stream still hold */
        char piece[512];
        size_t k = tok_stream_flush(&c->ts, piece, sizeof piece);
        if (k) feed_text(R, piece, k);
        emit_text(R, R->w->hold, R->nhold);
        R->nhold = 0;
    }
    /* a constraint that completed a forced call: the closing markup the
     * model was not asked to write */
    const char *suffix = fcgi_constraint_suffix(c->cons);
    if (suffix && R->ps) parse_feed(R->ps, suffix, strlen(suffix), on_parse, R);
    if (R->ps) parse_finish(R->ps, on_parse, R);
    fcgi_tools_close(R);
    if (R->tools.n && !strcmp(finish, "stop")) finish = "tool_calls";
    c->finish = finish;
    return 0;
}

/* Non-streamed reply of n > 1 choices. */
static int send_whole_n(gen_choice *ch, int n) {
    fcgi_run *Rs[FCGI_MAX_N];
    const char *fin[FCGI_MAX_N];
    for (int i = 0; i < n; i++) {
        Rs[i] = &ch[i].R;
        fin[i] = ch[i].finish;
    }
    jw *f = &ch[0].R.w->frame;
    jw_reset(f);
    ch[0].R.api->whole_n(Rs, n, f, fin);
    if (f->oom) {
        fcgi_error er;
        fcgi_errorf(&er, 500, "server_error", NULL, NULL, "out of memory building the reply");
        return reply_error(ch[0].R.a, ch[0].R.o, &er);
    }
    fcgi_reply_json(ch[0].R.o, 200, f, NULL);
    return 200;
}

static void cancel_all(gen_choice *ch, int n) {
    for (int i = 0; i < n; i++)
        if (ch[i].req && !ch[i].finish) sched_cancel(ch[i].req);
}

static int submit_error(fcgi_app *a, fcgi_out *o, const err *e) {
    fcgi_error er;
    if (e->code == ERR_NOMEM)
        fcgi_errorf(&er, 429, "rate_limit_error", "server_busy", NULL, "%s; retry later", e->msg);
    else if (e->code == ERR_UNAVAILABLE)
        fcgi_errorf(&er, 503, "server_error", "service_unavailable", NULL, "%s", e->msg);
    else fcgi_errorf(&er, 400, "invalid_request_error", "invalid_value", NULL, "%s", e->msg);
    return reply_error(a, o, &er);
}

int fcgi_generate(fcgi_app *a, fcgi_worker *w, const fcgi_http_req *rq, fcgi_api_kind api, fcgi_out *o) {
    fcgi_gen g;
    fcgi_error er;
    if (parse_request(a, rq, api, &g, &er)) {
        fcgi_gen_free(&g);
        return reply_error(a, o, &er);
    }
    const int chat = g.chat, n = g.n;
    gen_choice ch[FCGI_MAX_N];
    memset(ch, 0, sizeof ch);
    reset_worker_text(w);
    fcgi_run R = {.a = a, .w = w, .g = &g, .o = o, .api = api_of(api), .created = (long)time(NULL), .stop_index = -1,
                  .block = -1, .item = -1};
    make_id(R.id, sizeof R.id, R.api->id_prefix);
    int status = 0;
    err e = {0};
    int thinking = 0;
    char prefix_buf[256];
    const char *prefix = NULL;
    if (n > 1 && (!R.api->whole_n || fcgi_worker_more(w))) { /* only chat and completions parse n */
        fcgi_errorf(&er, 500, "server_error", NULL, NULL, "out of memory for %d choices", n);
        fcgi_gen_free(&g);
        return reply_error(a, o, &er);
    }
    /* the template's own reasoning opener matters to the prefix: render first
     * without it, then again with it only when a call is forced */
    if ((R.n_prompt = fcgi_prompt_build(a, w, &g, NULL, &thinking, &er)) < 0) { status = reply_error(a, o, &er); goto out; }
    if (chat && (g.tool_choice == FCGI_TOOLS_REQUIRED || g.tool_choice == FCGI_TOOLS_NAMED)) {
        if (fcgi_forced_prefix(a, &g, thinking, prefix_buf, sizeof prefix_buf, &prefix, &er) ||
            (R.n_prompt = fcgi_prompt_build(a, w, &g, prefix, &thinking, &er)) < 0) {
            status = reply_error(a, o, &er);
            goto out;
        }
    }
    for (int i = 0; i < n; i++) {
        gen_choice *c = &ch[i];
        c->R = R;
        c->R.index = i;
        if (i) {
            c->R.w = &w->more[i - 1];
            reset_worker_text(c->R.w);
        }
        if (chat && a->pfmt != PARSE_PLAIN && parse_create(&c->R.ps, a->pfmt, thinking, (size_t)a->n_ctx * 64, &e)) {
            c->R.ps = NULL;
            fcgi_errorf(&er, 500, "server_error", NULL, NULL, "output parser: %s", e.msg);
            status = reply_error(a, o, &er);
            goto out;
        }
        if (c->R.ps && a->pfmt == PARSE_QWEN3_CODER && g.tools) parse_set_str_param(c->R.ps, fcgi_tool_str_param, &g);
        /* structured output and forced tool calls: a grammar over the model's own syntax */
        if (fcgi_constraint_new(a, &g, thinking, &c->cons, &er)) { status = reply_error(a, o, &er); goto out; }
    }

    sched_params sp = {.prompt = w->ids, .n_prompt = R.n_prompt, .sp = g.sp, .ignore_eos = g.ignore_eos,
                       .logprobs = g.logprobs, .top_logprobs = g.top_logprobs, .bias_ids = g.bias_ids,
                       .bias_vals = g.bias_vals, .n_bias = g.n_bias,
                       /* the choices share the prompt's KV: the worker is one request's at a time */
                       .group = n > 1 ? (uint64_t)(uintptr_t)w : 0};
    int room = a->n_ctx - R.n_prompt;
    sp.max_tokens = g.max_tokens > 0 ? g.max_tokens : a->cfg->max_tokens;
    if (sp.max_tokens > room) sp.max_tokens = room;
    uint64_t seed = g.sp.seed;
    /* each choice a sequence of its own against max_seqs + max_queue: all or none */
    for (int i = 0; i < n; i++) {
        /* a given seed: choice i samples with seed + i (choice 0 as a request of n = 1) */
        if (g.has_seed) sp.sp.seed = seed + (uint64_t)i;
        else if (getrandom(&sp.sp.seed, sizeof sp.sp.seed, 0) != (ssize_t)sizeof sp.sp.seed)
            sp.sp.seed = (uint64_t)(mono_s() * 1e9) + (uint64_t)i;
        sp.constraint = fcgi_constraint_sched(ch[i].cons);
        if (sched_submit(a->s, &sp, &ch[i].req, &e)) {
            ch[i].req = NULL;
            cancel_all(ch, i);
            status = submit_error(a, o, &e);
            goto out;
        }
    }
    atomic_fetch_add(&a->metrics.prompt_tokens, R.n_prompt);
    for (int i = 0; i < n; i++) {
        fcgi_run *Ri = &ch[i].R;
        Ri->t_submit = Ri->t_last = mono_s();
        tok_stream_init(&ch[i].ts);
        if (!chat && g.echo && g.prompt) jw_raw(&Ri->w->content, g.prompt, g.prompt_len);
        if (Ri->ps && thinking) Ri->in_reasoning = 1;
        if (prefix && Ri->ps) parse_feed(Ri->ps, prefix, strlen(prefix), on_parse, Ri); /* the parser reads the forced opener */
    }

    int keepalive = a->cfg->keepalive_ms, left = n, turn = 0;
    gen_choice *last = NULL;
    double t_done = 0;
    sched_event ev;
    for (;;) {
        if (o->gone && o->gone(o->u)) { o->failed = 1; }
        if (o->failed) {
            cancel_all(ch, n);
            for (int i = 0; i < n; i++)
                if (!ch[i].finish) cancel_for_client(&ch[i].R, ch[i].req);
            status = 499;
            goto out;
        }
        /* the next event of any running choice, looking from a turn that moves on */
        sched_req *rs[FCGI_MAX_N];
        gen_choice *of[FCGI_MAX_N];
        int m = 0;
        for (int i = 0; i < n; i++)
            if (!ch[i].finish) { rs[m] = ch[i].req; of[m++] = &ch[i]; }
        const int got = m ? sched_next_any(rs, m, turn % m, &ev, POLL_MS) : -1;
        gen_choice *c = got >= 0 ? of[got] : NULL;
        turn = (turn + 1) % 840; /* 840: a multiple of every m <= 8 (FCGI_MAX_N) */
        if (!c) {
            double last = 0;
            for (int i = 0; i < n; i++)
                if (ch[i].R.t_last > last) last = ch[i].R.t_last;
            if (g.stream && (mono_s() - last) * 1000 >= keepalive) fcgi_sse_keepalive(&ch[0].R);
            continue;
        }
        if (ev.type == SCHED_EV_TOKEN) {
            on_token(c, &ev);
            continue;
        }
        if (ev.type == SCHED_EV_ERROR) {
            /* an engine fault: this request fails, the server lives on */
            atomic_fetch_add(&a->metrics.cut_engine, 1);
            c->finish = "error";
            cancel_all(ch, n);
            if (ev.code == ERR_INVALID) /* the output constraint could not go on */
                fcgi_errorf(&er, 500, "server_error", "constraint_error", NULL, "%s", ev.msg);
            else
                fcgi_errorf(&er, ev.code == ERR_UNAVAILABLE || ev.code == ERR_IO ? 503 : 500, "server_error",
                            "engine_error", NULL, "%s", ev.msg);
            status = cut_reply(&c->R, &er);
            goto out;
        }
        /* DONE */
        t_done = mono_s();
        if (on_done(c, &ev, &er)) {
            c->finish = "error";
            cancel_all(ch, n);
            status = cut_reply(&c->R, &er);
            goto out;
        }
        if (--left == 0) { last = c; break; }
        if (g.stream) c->R.api->stream_choice_end(&c->R, c->finish); /* n > 1: this choice's last chunks */
    }
    int n_gen = 0, n_reasoning = 0;
    for (int i = 0; i < n; i++) {
        n_gen += ch[i].R.n_gen;
        n_reasoning += ch[i].R.n_reasoning;
    }
    if (g.stream) {
        if (n == 1) R.api->stream_end(&ch[0].R, ch[0].finish);
        else {
            /* the last to end: its chunks, then usage over all choices and [DONE] */
            last->R.api->stream_choice_end(&last->R, last->finish);
            fcgi_run u = ch[0].R;
            u.n_gen = n_gen;
            u.n_reasoning = n_reasoning;
            u.api->stream_close(&u);
        }
        status = o->failed ? 499 : 200;
    } else status = n == 1 ? send_whole(&ch[0].R, ch[0].finish) : send_whole_n(ch, n);
    if (a->cfg->log_requests)
        fprintf(stderr, "sparkd: %s: %d prompt + %d generated tokens, engine %.2f ms, finish %s%s\n", R.id, R.n_prompt,
                n_gen, (t_done - ch[0].R.t_submit) * 1e3, ch[0].finish, n > 1 ? " (n > 1: choice 0's)" : "");
out:
    for (int i = 0; i < n; i++) {
        if (ch[i].req) sched_release(ch[i].req);
        fcgi_constraint_free(ch[i].cons);
        if (ch[i].R.ps) parse_free(ch[i].R.ps);
    }
    fcgi_gen_free(&g);
    return status;
}
