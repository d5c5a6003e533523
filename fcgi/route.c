/* route.c — method + path -> handler, auth, and the small endpoints.
 *
 *   GET  /health                 200 {"status":"ok"}; 503 while loading/draining
 *   GET  /metrics                Prometheus text
 *   GET  /v1/models[/ID]         the served model
 *   POST /v1/chat/completions    generate.c
 *   POST /v1/completions         generate.c
 *   POST /v1/responses           generate.c, responses.c (OpenAI's Responses API)
 *   POST /v1/messages            generate.c, messages.c (Anthropic's Messages API)
 *   POST /v1/messages/count_tokens  the prompt such a request would have, counted
 *   POST /infill                 generate.c (llama-server's fill-in-the-middle)
 *   POST /tokenize               {"content", "add_special", "with_pieces"} -> {"tokens"}  (llama-server)
 *   POST /detokenize             {"tokens"} -> {"content"}                                 (llama-server)
 * Everything except /health (and /metrics with metrics_public) needs an API
 * key when keys are configured: "Authorization: Bearer KEY" or "x-api-key: KEY". */
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "constrain.h"
#include "fcgi.h"

void fcgi_limits_from(const fcgi_app *a, fcgi_limits *l) {
    const config *c = a->cfg;
    l->max_body_bytes = c->max_body_bytes;
    l->max_tokens = c->max_tokens;
    l->max_stop = c->max_stop < FCGI_MAX_STOP ? c->max_stop : FCGI_MAX_STOP;
    l->max_stop_len = c->max_stop_len;
    l->max_tools_bytes = c->max_tools_bytes;
    l->max_top_logprobs = c->max_top_logprobs < SCHED_MAX_TOP_LOGPROBS ? c->max_top_logprobs : SCHED_MAX_TOP_LOGPROBS;
    int V = a->tk ? tok_vocab_size(a->tk) : 1 << 20;
    l->max_top_k = c->max_top_k > 0 && c->max_top_k < V ? c->max_top_k : V;
    l->n_vocab = V;
    l->sp = c->sp;
}

static int error_reply(fcgi_out *o, int status, const char *type, const char *code, const char *extra,
                       const char *msg) {
    fcgi_error er;
    fcgi_errorf(&er, status, type, code, NULL, "%s", msg);
    fcgi_reply_error(o, &er, extra);
    return status;
}

static int h_health(fcgi_app *a, fcgi_out *o) {
    int st = atomic_load(&a->state);
    if (st == FCGI_READY && a->s) {
        /* an engine that can no longer step (a tensor-parallel peer died) is not ready */
        sched_stats ss;
        sched_get_stats(a->s, &ss);
        if (ss.engine_failed) st = FCGI_FAILED;
    }
    jw b = {0};
    if (st == FCGI_READY) {
        jw_lit(&b, "{\"status\":\"ok\"}");
        fcgi_reply_json(o, 200, &b, NULL);
        jw_free(&b);
        return 200;
    }
    const char *why = st == FCGI_LOADING ? "loading the model" : st == FCGI_DRAINING ? "draining" : "failed";
    fcgi_error er;
    fcgi_errorf(&er, 503, "server_error", "service_unavailable", NULL, "not ready: %s", why);
    fcgi_error_write(&b, &er);
    /* {"error":{...},"status":"loading"}: the error object, one more member */
    if (b.n) b.n--;
    jw_lit(&b, ",\"status\":\"");
    jw_lit(&b, st == FCGI_LOADING ? "loading" : st == FCGI_DRAINING ? "draining" : "failed");
    jw_lit(&b, "\"}");
    fcgi_reply_json(o, 503, &b, "Retry-After: 1\r\n");
    jw_free(&b);
    return 503;
}

static int h_metrics(fcgi_app *a, fcgi_out *o) {
    sched_stats st;
    memset(&st, 0, sizeof st);
    if (a->s) sched_get_stats(a->s, &st);
    char buf[16384];
    size_t n = fcgi_metrics_render(&a->metrics, a->s ? &st : NULL, atomic_load(&a->state), buf, sizeof buf);
    uint64_t gh, gm;
    int ge;
    size_t gb;
    fcgi_gcache_stats(a, &gh, &gm, &ge, &gb);
    int k = snprintf(buf + n, sizeof buf - n,
                     "# HELP sparkd_grammar_cache_hits_total Constrained outputs whose grammar was already compiled.\n"
                     "# TYPE sparkd_grammar_cache_hits_total counter\nsparkd_grammar_cache_hits_total %llu\n"
                     "# HELP sparkd_grammar_cache_misses_total Grammars compiled.\n"
                     "# TYPE sparkd_grammar_cache_misses_total counter\nsparkd_grammar_cache_misses_total %llu\n"
                     "# HELP sparkd_grammar_cache_entries Compiled grammars kept.\n"
                     "# TYPE sparkd_grammar_cache_entries gauge\nsparkd_grammar_cache_entries %d\n"
                     "# HELP sparkd_grammar_cache_bytes Memory of the compiled grammars kept.\n"
                     "# TYPE sparkd_grammar_cache_bytes gauge\nsparkd_grammar_cache_bytes %zu\n",
                     (unsigned long long)gh, (unsigned long long)gm, ge, gb);
    if (k > 0 && (size_t)k < sizeof buf - n) n += (size_t)k;
    fcgi_out_headers(o, 200, "text/plain; version=0.0.4; charset=utf-8", NULL);
    fcgi_out_write(o, buf, n);
    return 200;
}

static void model_obj(fcgi_app *a, jw *b) {
    jw_lit(b, "{\"id\":");
    jw_str(b, a->model_id, strlen(a->model_id));
    jw_lit(b, ",\"object\":\"model\",\"created\":");
    jw_int(b, a->created);
    jw_lit(b, ",\"owned_by\":\"sparkd\",\"max_model_len\":");
    jw_int(b, a->n_ctx);
    jw_lit(b, "}");
}

static int h_models(fcgi_app *a, fcgi_out *o, const char *id) {
    jw b = {0};
    if (id) {
        if (strcmp(id, a->model_id)) {
            char msg[200];
            snprintf(msg, sizeof msg, "The model '%.100s' does not exist", id);
            return error_reply(o, 404, "invalid_request_error", "model_not_found", NULL, msg);
        }
        model_obj(a, &b);
    } else {
        jw_lit(&b, "{\"object\":\"list\",\"data\":[");
        model_obj(a, &b);
        jw_lit(&b, "]}");
    }
    fcgi_reply_json(o, 200, &b, NULL);
    jw_free(&b);
    return 200;
}

static int get_bool_field(const jv *root, const char *k, int *out, fcgi_error *er) {
    const jv *v = fcgi_jget(root, k);
    if (!v || v->type == JV_NONE) return 0;
    if (v->type != JV_BOOL)
        return fcgi_errorf(er, 400, "invalid_request_error", "invalid_type", k, "'%s' must be a boolean", k);
    *out = (int)v->u.i;
    return 0;
}

static int h_tokenize(fcgi_app *a, const fcgi_http_req *rq, fcgi_out *o) {
    fcgi_error er;
    jv_arena *ar;
    jv root;
    if (fcgi_parse_object(rq->body, rq->body_len, &ar, &root, &er)) return fcgi_reply_error(o, &er, NULL), er.status;
    const jv *c = fcgi_jget(&root, "content");
    int add_special = 0, with_pieces = 0;
    if (!c || c->type != JV_STR)
        fcgi_errorf(&er, 400, "invalid_request_error", "invalid_type", "content", "'content' must be a string");
    else if (!get_bool_field(&root, "add_special", &add_special, &er) && !get_bool_field(&root, "with_pieces", &with_pieces, &er)) {
        size_t len = c->u.s->len;
        const size_t mx = tok_max_ids(len);
        int cap = mx > INT_MAX ? INT_MAX : (int)mx;
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
        err e = {0};
        int n = ids ? tok_encode(a->tk, c->u.s->p, len, add_special, 1, ids, cap, &e) : -1;
        jv_arena_free(ar);
        if (n < 0) {
            free(ids);
            return error_reply(o, 500, "server_error", NULL, NULL, ids ? e.msg : "out of memory");
        }
        jw b = {0};
        jw_lit(&b, "{\"tokens\":[");
        for (int i = 0; i < n; i++) {
            if (i) jw_lit(&b, ",");
            if (!with_pieces) { jw_int(&b, ids[i]); continue; }
            size_t pl;
            const char *p = tok_piece(a->tk, ids[i], &pl, 1);
            if (!p) { p = ""; pl = 0; }
            jw_lit(&b, "{\"id\":");
            jw_int(&b, ids[i]);
            jw_lit(&b, ",\"piece\":");
            /* a byte token that is not UTF-8 on its own: its bytes, as llama-server does */
            if (jw_utf8_valid_prefix(p, pl) == pl) jw_str(&b, p, pl);
            else jw_bytes(&b, p, pl);
            jw_lit(&b, "}");
        }
        jw_lit(&b, "]}");
        free(ids);
        fcgi_reply_json(o, 200, &b, NULL);
        jw_free(&b);
        return 200;
    }
    jv_arena_free(ar);
    fcgi_reply_error(o, &er, NULL);
    return er.status;
}

static int h_detokenize(fcgi_app *a, const fcgi_http_req *rq, fcgi_out *o) {
    fcgi_error er;
    jv_arena *ar;
    jv root;
    if (fcgi_parse_object(rq->body, rq->body_len, &ar, &root, &er)) return fcgi_reply_error(o, &er, NULL), er.status;
    const jv *t = fcgi_jget(&root, "tokens");
    if (!t || t->type != JV_LIST) {
        jv_arena_free(ar);
        fcgi_errorf(&er, 400, "invalid_request_error", "invalid_type", "tokens", "'tokens' must be an array of token ids");
        return fcgi_reply_error(o, &er, NULL), 400;
    }
    size_t n = t->u.l->n;
    int32_t V = tok_vocab_size(a->tk);
    int32_t *ids = malloc(sizeof(int32_t) * (n ? n : 1));
    if (!ids) { jv_arena_free(ar); return error_reply(o, 500, "server_error", NULL, NULL, "out of memory"); }
    for (size_t i = 0; i < n; i++) {
        const jv *v = &t->u.l->v[i];
        if (v->type != JV_INT || v->u.i < 0 || v->u.i >= V) {
            free(ids);
            jv_arena_free(ar);
            fcgi_errorf(&er, 400, "invalid_request_error", "invalid_value", "tokens",
                        "tokens[%zu] is not a token id in [0, %d)", i, V);
            return fcgi_reply_error(o, &er, NULL), 400;
        }
        ids[i] = (int32_t)v->u.i;
    }
    jv_arena_free(ar);
    char small[1];
    size_t need = tok_decode(a->tk, ids, (int)n, small, sizeof small, 1);
    char *text = malloc(need + 1);
    if (text) tok_decode(a->tk, ids, (int)n, text, need + 1, 1);
    free(ids);
    if (!text) return error_reply(o, 500, "server_error", NULL, NULL, "out of memory");
    /* decoded bytes need not be UTF-8 (a lone byte token): repair for JSON */
    jw b = {0};
    jw_lit(&b, "{\"content\":");
    jw_str(&b, text, need);
    jw_lit(&b, "}");
    free(text);
    fcgi_reply_json(o, 200, &b, NULL);
    jw_free(&b);
    return 200;
}

static const char *type_of(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 499: return "client_gone";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

/* POST /v1/messages/count_tokens: the prompt the request would have, counted. */
static int h_count_tokens(fcgi_app *a, fcgi_worker *w, const fcgi_http_req *rq, fcgi_out *o) {
    fcgi_limits lim;
    fcgi_limits_from(a, &lim);
    fcgi_gen g;
    fcgi_error er;
    int thinking = 0, n;
    if (fcgi_messages_parse(rq->body, rq->body_len, &lim, a->model_id, 1, &g, &er) ||
        (n = fcgi_prompt_build(a, w, &g, NULL, &thinking, &er)) < 0) {
        fcgi_gen_free(&g);
        fcgi_reply_error(o, &er, NULL);
        return er.status;
    }
    fcgi_gen_free(&g);
    jw b = {0};
    jw_lit(&b, "{\"input_tokens\":");
    jw_int(&b, n);
    jw_lit(&b, "}");
    fcgi_reply_json(o, 200, &b, NULL);
    jw_free(&b);
    return 200;
}

static int dispatch(fcgi_app *a, fcgi_worker *w, const fcgi_http_req *rq, fcgi_out *o) {
    const char *p = rq->path, *m = rq->method ? rq->method : "";
    if (!p || !p[0])
        return error_reply(o, 400, "invalid_request_error", "no_path", NULL, "the request has no path (empty PATH_INFO and DOCUMENT_URI)");
    int get = !strcmp(m, "GET") || !strcmp(m, "HEAD"), post = !strcmp(m, "POST");
    enum { R_NONE, R_HEALTH, R_METRICS, R_MODELS, R_MODEL, R_CHAT, R_COMPL, R_TOK, R_DETOK, R_RESP, R_MSG, R_COUNT,
           R_INFILL } r = R_NONE;
    int want_post = 1;
    if (!strcmp(p, "/health")) r = R_HEALTH, want_post = 0;
    else if (!strcmp(p, "/metrics")) r = R_METRICS, want_post = 0;
    else if (!strcmp(p, "/v1/models")) r = R_MODELS, want_post = 0;
    else if (!strncmp(p, "/v1/models/", 11) && p[11]) r = R_MODEL, want_post = 0;
    else if (!strcmp(p, "/v1/chat/completions")) r = R_CHAT;
    else if (!strcmp(p, "/v1/completions")) r = R_COMPL;
    else if (!strcmp(p, "/v1/responses")) r = R_RESP;
    else if (!strcmp(p, "/v1/messages")) r = R_MSG;
    else if (!strcmp(p, "/v1/messages/count_tokens")) r = R_COUNT;
    else if (!strcmp(p, "/tokenize")) r = R_TOK;
    else if (!strcmp(p, "/detokenize")) r = R_DETOK;
    else if (!strcmp(p, "/infill")) r = R_INFILL;
    /* Anthropic's routes answer in Anthropic's error shape */
    if (r == R_MSG || r == R_COUNT) o->err_shape = FCGI_ERR_ANTHROPIC;
    if (r == R_NONE) return error_reply(o, 404, "invalid_request_error", "not_found", NULL, "no such endpoint");
    if (want_post ? !post : !get)
        return error_reply(o, 405, "invalid_request_error", "method_not_allowed", want_post ? "Allow: POST\r\n" : "Allow: GET\r\n",
                           want_post ? "use POST" : "use GET");
    if (r == R_HEALTH) return h_health(a, o);
    /* the key: Authorization: Bearer KEY, or x-api-key: KEY (Anthropic's clients) */
    int authed = fcgi_auth_check(a->cfg, rq->authorization) ||
                 (rq->x_api_key && rq->x_api_key[0] && fcgi_auth_check_key(a->cfg, rq->x_api_key));
    if (!(r == R_METRICS && a->cfg->metrics_public) && !authed)
        return error_reply(o, 401, "authentication_error", "invalid_api_key", "WWW-Authenticate: Bearer\r\n",
                           "missing or invalid API key (Authorization: Bearer KEY, or x-api-key: KEY)");
    if (r == R_METRICS) return h_metrics(a, o);
    if (atomic_load(&a->state) != FCGI_READY)
        return error_reply(o, 503, "server_error", "service_unavailable", "Retry-After: 1\r\n",
                           atomic_load(&a->state) == FCGI_DRAINING ? "the server is shutting down" : "the model is loading");
    if ((r == R_CHAT || r == R_COMPL || r == R_RESP || r == R_MSG || r == R_COUNT || r == R_INFILL) && !w->ids)
        /* became ready while this worker was idle */
        return error_reply(o, 503, "server_error", "service_unavailable", "Retry-After: 1\r\n", "the model is loading");
    switch (r) {
    case R_MODELS: return h_models(a, o, NULL);
    case R_MODEL: return h_models(a, o, p + 11);
    case R_CHAT: return fcgi_generate(a, w, rq, FCGI_API_CHAT, o);
    case R_COMPL: return fcgi_generate(a, w, rq, FCGI_API_COMPLETIONS, o);
    case R_RESP: return fcgi_generate(a, w, rq, FCGI_API_RESPONSES, o);
    case R_MSG: return fcgi_generate(a, w, rq, FCGI_API_MESSAGES, o);
    case R_COUNT: return h_count_tokens(a, w, rq, o);
    case R_INFILL: return fcgi_generate(a, w, rq, FCGI_API_INFILL, o);
    case R_TOK: return h_tokenize(a, rq, o);
    case R_DETOK: return h_detokenize(a, rq, o);
    default: return error_reply(o, 404, "invalid_request_error", "not_found", NULL, "no such endpoint");
    }
}

int fcgi_handle(fcgi_app *a, fcgi_worker *w, const fcgi_http_req *rq, fcgi_out *o) {
    int status = dispatch(a, w, rq, o);
    fcgi_metrics_status(&a->metrics, status);
    if (status >= 400) fcgi_metrics_error(&a->metrics, type_of(status));
    return status;
}
