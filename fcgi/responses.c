/* responses.c — OpenAI's Responses API: POST /v1/responses, and the bounded
 * in-memory store behind store / previous_response_id.
 *
 * The request is translated into the chat shape the templates expect, in the
 * request's arena: instructions -> a system message; input (a string, or
 * items: messages with input_text / output_text parts, function_call,
 * function_call_output, reasoning) -> chat messages; function tools ->
 * chat tools; tool_choice, parallel_tool_calls, text.format, reasoning.effort,
 * max_output_tokens, temperature, top_p. previous_response_id prepends the
 * stored conversation of that response (its instructions are not carried over,
 * as OpenAI documents).
 *
 * The reply: a response object whose output items (reasoning, message with
 * output_text, function_call) follow the model's order; status completed, or
 * incomplete with reason max_output_tokens; usage with cached and reasoning
 * tokens. Streamed as response.created, response.in_progress, then per item
 * output_item.added, its deltas (output_text / reasoning_text /
 * function_call_arguments) and done events, output_item.done, and
 * response.completed (or response.incomplete); every event carries its
 * sequence_number. A stream that cannot complete ends with an error event.
 *
 * The store keeps, per response id, the conversation (input + output) as JSON
 * text, at most FCGI_STORE_MAX entries and FCGI_STORE_BYTES bytes (the oldest go
 * first); it lives as long as the process. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "request.h"
#include "run.h"

#define BAD(param, ...) FCGI_BAD(er, param, __VA_ARGS__)
#define BADTYPE(param, want) FCGI_BADTYPE(er, param, want)
#define NOMEM() fcgi_errorf(er, 500, "server_error", NULL, NULL, "out of memory")

/* ---------------------------------------------------------------- store */

typedef struct store_entry {
    char id[48];
    char *text; /* the conversation: a JSON list of chat messages */
    size_t n;
} store_entry;

struct fcgi_store {
    pthread_mutex_t mu;
    store_entry *e; /* (FCGI_STORE_MAX) ring, oldest at head */
    int head, count;
    size_t bytes;
};

int fcgi_store_new(fcgi_store **out) {
    fcgi_store *s = calloc(1, sizeof *s);
    if (!s || !(s->e = calloc(FCGI_STORE_MAX, sizeof *s->e))) {
        free(s);
        return -1;
    }
    pthread_mutex_init(&s->mu, NULL);
    *out = s;
    return 0;
}

void fcgi_store_free(fcgi_store *s) {
    if (!s) return;
    for (int i = 0; i < FCGI_STORE_MAX; i++) free(s->e[i].text);
    pthread_mutex_destroy(&s->mu);
    free(s->e);
    free(s);
}

static void store_drop_oldest(fcgi_store *s) {
    store_entry *x = &s->e[s->head];
    s->bytes -= x->n;
    free(x->text);
    memset(x, 0, sizeof *x);
    s->head = (s->head + 1) % FCGI_STORE_MAX;
    s->count--;
}

int fcgi_store_put(fcgi_store *s, const char *id, const char *text, size_t n) {
    if (!s || n > FCGI_STORE_BYTES) return -1;
    char *copy = malloc(n + 1);
    if (!copy) return -1;
    memcpy(copy, text, n);
    copy[n] = 0;
    pthread_mutex_lock(&s->mu);
    while (s->count && (s->count == FCGI_STORE_MAX || s->bytes + n > FCGI_STORE_BYTES)) store_drop_oldest(s);
    store_entry *x = &s->e[(s->head + s->count) % FCGI_STORE_MAX];
    snprintf(x->id, sizeof x->id, "%s", id);
    x->text = copy;
    x->n = n;
    s->count++;
    s->bytes += n;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

char *fcgi_store_get(fcgi_store *s, const char *id, size_t *n) {
    char *out = NULL;
    if (!s) return NULL;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->count; i++) {
        store_entry *x = &s->e[(s->head + i) % FCGI_STORE_MAX];
        if (!strcmp(x->id, id)) {
            out = malloc(x->n + 1);
            if (out) {
                memcpy(out, x->text, x->n + 1);
                *n = x->n;
            }
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

/* ---------------------------------------------------------------- request */

/* Text of a content (a string, or parts of type input_text / output_text / text). */
static int content_text(jv_arena *ar, const jv *c, const char *where, jv *out, fcgi_error *er) {
    if (fcgi_is_str(c)) { *out = *c; return 0; }
    if (!fcgi_is_list(c)) return BAD("input", "%s.content must be a string or a list of parts", where);
    size_t len = 0;
    for (size_t i = 0; i < c->u.l->n; i++) {
        const jv *p = &c->u.l->v[i], *ty = fcgi_jget(p, "type"), *tx = fcgi_jget(p, "text");
        if (!(fcgi_str_is(ty, "input_text") || fcgi_str_is(ty, "output_text") || fcgi_str_is(ty, "text")) ||
            !fcgi_is_str(tx))
            return BAD("input", "%s.content[%zu]: only text parts are supported (input_text, output_text)", where, i);
        len += tx->u.s->len + 1;
    }
    jv_str *s = jv_alloc(ar, sizeof *s + len + 1);
    if (!s) return NOMEM();
    s->len = 0;
    for (size_t i = 0; i < c->u.l->n; i++) {
        const jv_str *t = fcgi_jget(&c->u.l->v[i], "text")->u.s;
        if (i) s->p[s->len++] = '\n';
        memcpy(s->p + s->len, t->p, t->len);
        s->len += t->len;
    }
    s->p[s->len] = 0;
    *out = jv_strv(s);
    return 0;
}

static int push_msg(jv_arena *ar, jv *out, const char *role, jv content) {
    jv m = fcgi_jdict(ar);
    if (fcgi_jset(ar, &m, "role", fcgi_jstr(ar, role, strlen(role))) || fcgi_jset(ar, &m, "content", content) ||
        fcgi_jpush(ar, out, m))
        return -1;
    return 0;
}

/* The last message of out if it is an assistant message that may take more
 * tool calls (consecutive function_call items form one assistant turn). */
static jv *open_assistant(jv *out) {
    if (!out->u.l->n) return NULL;
    jv *m = &out->u.l->v[out->u.l->n - 1];
    return fcgi_str_is(fcgi_jget(m, "role"), "assistant") && fcgi_jget(m, "tool_calls") ? m : NULL;
}

static int translate_input(jv_arena *ar, const jv *input, jv *out, fcgi_error *er) {
    if (fcgi_is_str(input)) return push_msg(ar, out, "user", *input) ? NOMEM() : 0;
    if (!fcgi_is_list(input)) return BADTYPE("input", "a string or a list of items");
    jv pending_reasoning = jv_undef();
    for (size_t i = 0; i < input->u.l->n; i++) {
        const jv *it = &input->u.l->v[i];
        char where[32];
        snprintf(where, sizeof where, "input[%zu]", i);
        if (!fcgi_is_obj(it)) return BAD("input", "%s must be an object", where);
        const jv *ty = fcgi_jget(it, "type"), *role = fcgi_jget(it, "role");
        if (fcgi_is_null(ty) || fcgi_str_is(ty, "message")) {
            const char *r = fcgi_str(role);
            if (!r || (strcmp(r, "user") && strcmp(r, "system") && strcmp(r, "developer") && strcmp(r, "assistant")))
                return BAD("input", "%s.role must be user, system, developer or assistant", where);
            jv text;
            if (content_text(ar, fcgi_jget(it, "content"), where, &text, er)) return -1;
            if (push_msg(ar, out, r, text)) return NOMEM();
            if (!strcmp(r, "assistant") && !fcgi_jbad(pending_reasoning)) {
                if (fcgi_jset(ar, &out->u.l->v[out->u.l->n - 1], "reasoning_content", pending_reasoning)) return NOMEM();
                pending_reasoning = jv_undef();
            }
        } else if (fcgi_str_is(ty, "function_call")) {
            const jv *cid = fcgi_jget(it, "call_id"), *name = fcgi_jget(it, "name"), *args = fcgi_jget(it, "arguments");
            if (!fcgi_is_str(cid) || !fcgi_is_str(name) || !fcgi_is_str(args))
                return BAD("input", "%s: a function_call needs call_id, name and arguments (a string)", where);
            jv *am = open_assistant(out);
            if (!am) {
                jv m = fcgi_jdict(ar), calls = fcgi_jlist(ar);
                if (fcgi_jset(ar, &m, "role", fcgi_jstr(ar, "assistant", 9)) || fcgi_jset(ar, &m, "content", fcgi_jstr(ar, "", 0)) ||
                    fcgi_jset(ar, &m, "tool_calls", calls) || fcgi_jpush(ar, out, m))
                    return NOMEM();
                am = &out->u.l->v[out->u.l->n - 1];
                if (!fcgi_jbad(pending_reasoning)) {
                    if (fcgi_jset(ar, am, "reasoning_content", pending_reasoning)) return NOMEM();
                    pending_reasoning = jv_undef();
                }
            }
            jv fn = fcgi_jdict(ar), call = fcgi_jdict(ar);
            jv *calls = (jv *)fcgi_jget(am, "tool_calls");
            if (fcgi_jset(ar, &fn, "name", *name) || fcgi_jset(ar, &fn, "arguments", *args) ||
                fcgi_jset(ar, &call, "id", *cid) || fcgi_jset(ar, &call, "type", fcgi_jstr(ar, "function", 8)) ||
                fcgi_jset(ar, &call, "function", fn) || fcgi_jpush(ar, calls, call))
                return NOMEM();
        } else if (fcgi_str_is(ty, "function_call_output")) {
            const jv *cid = fcgi_jget(it, "call_id"), *o = fcgi_jget(it, "output");
            if (!fcgi_is_str(cid)) return BAD("input", "%s: a function_call_output needs call_id", where);
            jv text;
            if (fcgi_is_str(o)) text = *o;
            else if (content_text(ar, o, where, &text, er)) return -1;
            jv m = fcgi_jdict(ar);
            if (fcgi_jset(ar, &m, "role", fcgi_jstr(ar, "tool", 4)) || fcgi_jset(ar, &m, "tool_call_id", *cid) ||
                fcgi_jset(ar, &m, "content", text) || fcgi_jpush(ar, out, m))
                return NOMEM();
        } else if (fcgi_str_is(ty, "reasoning")) {
            /* its text rides on the next assistant turn as reasoning_content */
            const jv *c = fcgi_jget(it, "content"), *sm = fcgi_jget(it, "summary");
            const jv *parts = fcgi_list_n(c) ? c : sm;
            jv text = fcgi_jstr(ar, "", 0);
            for (size_t k = 0; k < fcgi_list_n(parts); k++) {
                const jv *tx = fcgi_jget(&parts->u.l->v[k], "text");
                if (fcgi_is_str(tx)) { text = *tx; break; }
            }
            pending_reasoning = text;
        } else {
            return BAD("input", "%s: item type '%.40s' is not supported", where, fcgi_is_str(ty) ? fcgi_str(ty) : "?");
        }
    }
    return 0;
}

static int tools_of(jv_arena *ar, const jv *tools, const fcgi_limits *lim, jv *out, fcgi_error *er) {
    if (!fcgi_is_list(tools)) return BADTYPE("tools", "an array");
    *out = fcgi_jlist(ar);
    if (fcgi_jbad(*out)) return NOMEM();
    for (size_t i = 0; i < tools->u.l->n; i++) {
        const jv *t = &tools->u.l->v[i];
        const jv *ty = fcgi_jget(t, "type");
        if (!fcgi_is_obj(t) || !fcgi_str_is(ty, "function"))
            return BAD("tools", "tools[%zu]: tool type '%.40s' is not supported (function tools only)", i,
                       fcgi_is_str(ty) ? fcgi_str(ty) : "?");
        const jv *name = fcgi_jget(t, "name"), *d = fcgi_jget(t, "description"), *p = fcgi_jget(t, "parameters");
        jv fn = fcgi_jdict(ar), tool = fcgi_jdict(ar);
        if (fcgi_is_str(name) && fcgi_jset(ar, &fn, "name", *name)) return NOMEM();
        if (fcgi_is_str(d) && fcgi_jset(ar, &fn, "description", *d)) return NOMEM();
        if (fcgi_is_obj(p) && fcgi_jset(ar, &fn, "parameters", *p)) return NOMEM();
        if (!fcgi_is_str(name)) return BAD("tools", "tools[%zu].name must be a string", i);
        if (d && !fcgi_is_null(d) && !fcgi_is_str(d)) return BAD("tools", "tools[%zu].description must be a string", i);
        if (p && !fcgi_is_null(p) && !fcgi_is_obj(p)) return BAD("tools", "tools[%zu].parameters must be an object", i);
        if (fcgi_jset(ar, &tool, "type", fcgi_jstr(ar, "function", 8)) || fcgi_jset(ar, &tool, "function", fn) ||
            fcgi_jpush(ar, out, tool))
            return NOMEM();
    }
    return fcgi_check_tools(out, lim, "tools", er);
}

int fcgi_responses_parse(const char *body, size_t len, const fcgi_limits *lim, const char *model_id, fcgi_store *store,
                         fcgi_gen *g, fcgi_error *er) {
    if (fcgi_gen_begin(body, len, FCGI_API_RESPONSES, lim, g, er)) return -1;
    const jv *root = &g->root;
    jv_arena *ar = g->arena;
    if (fcgi_check_model(root, model_id, g, er)) return -1;
    g->store = 1;
    if (fcgi_opt_bool(root, "store", &g->store, er)) return -1;
    if (fcgi_opt_str(root, "instructions", 1 << 20, &g->instructions, er)) return -1;
    jv msgs = fcgi_jlist(ar);
    if (fcgi_jbad(msgs)) return NOMEM();
    if (g->instructions && push_msg(ar, &msgs, "system", fcgi_jstr(ar, g->instructions, strlen(g->instructions))))
        return NOMEM();
    const char *prev = NULL;
    if (fcgi_opt_str(root, "previous_response_id", 64, &prev, er)) return -1;
    if (prev) {
        size_t n = 0;
        char *text = fcgi_store_get(store, prev, &n);
        if (!text)
            return fcgi_errorf(er, 400, "invalid_request_error", "previous_response_not_found", "previous_response_id",
                               "Previous response with id '%.64s' not found (not stored, or evicted)", prev);
        jv old;
        err e = {0};
        int rc = jv_parse(ar, text, n, 128, &old, &e);
        free(text);
        if (rc || old.type != JV_LIST) return fcgi_errorf(er, 500, "server_error", NULL, NULL, "stored response unreadable");
        for (size_t i = 0; i < old.u.l->n; i++)
            if (fcgi_jpush(ar, &msgs, old.u.l->v[i])) return NOMEM();
    }
    const jv *input = fcgi_jget(root, "input");
    if (fcgi_is_null(input)) return BAD("input", "'input' is required");
    if (translate_input(ar, input, &msgs, er)) return -1;
    if (!msgs.u.l->n) return BAD("input", "'input' is empty");
    jv *mp = jv_alloc(ar, sizeof(jv));
    if (!mp) return NOMEM();
    *mp = msgs;
    g->messages = mp;

    const jv *tools = fcgi_jget(root, "tools");
    if (!fcgi_is_null(tools)) {
        jv t;
        if (tools_of(ar, tools, lim, &t, er)) return -1;
        if (t.u.l->n) {
            jv *tp = jv_alloc(ar, sizeof(jv));
            if (!tp) return NOMEM();
            *tp = t;
            g->tools = tp;
        }
    }
    if (fcgi_parse_tool_choice(fcgi_jget(root, "tool_choice"), "tool_choice", g, er)) return -1;
    if (fcgi_opt_bool(root, "parallel_tool_calls", &g->parallel_tool_calls, er)) return -1;
    const jv *text = fcgi_jget(root, "text");
    if (!fcgi_is_null(text)) {
        if (!fcgi_is_obj(text)) return BADTYPE("text", "an object");
        if (fcgi_parse_format(fcgi_jget(text, "format"), "text.format", 1, g, er)) return -1;
    }
    const jv *rs = fcgi_jget(root, "reasoning");
    if (!fcgi_is_null(rs)) {
        if (!fcgi_is_obj(rs)) return BADTYPE("reasoning", "an object");
        if (fcgi_parse_effort(fcgi_jget(rs, "effort"), "reasoning.effort", g, er)) return -1;
    }
    long long x;
    int rc = fcgi_opt_int(root, "max_output_tokens", -(1ll << 62), 1ll << 62, &x, er);
    if (rc < 0) return -1;
    if (rc == 1) {
        if (x < 1) return BAD("max_output_tokens", "'max_output_tokens' = %lld must be at least 1", x);
        g->max_tokens = x > lim->max_tokens ? lim->max_tokens : (int)x;
    }
    if (fcgi_opt_bool(root, "stream", &g->stream, er)) return -1;
    if (fcgi_opt_float(root, "temperature", 0, 2, &g->sp.temperature, er)) return -1;
    if (fcgi_opt_float(root, "top_p", 0, 1, &g->sp.top_p, er)) return -1;
    if (!fcgi_is_null(fcgi_jget(root, "top_p")) && g->sp.top_p <= 0)
        return BAD("top_p", "'top_p' = 0 is out of range (0, 1]: it would keep no token");
    return 0;
}

/* ---------------------------------------------------------------- reply */

static void rand_id(char *out, size_t cap, const char *prefix) {
    uint8_t r[12];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) memset(r, 0x5a, sizeof r);
    int k = snprintf(out, cap, "%s", prefix);
    for (size_t i = 0; i < sizeof r && (size_t)k + 2 < cap; i++) k += snprintf(out + k, cap - (size_t)k, "%02x", r[i]);
}

static void usage(const fcgi_run *R, jw *f) {
    jw_lit(f, "{\"input_tokens\":");
    jw_int(f, R->n_prompt);
    jw_lit(f, ",\"input_tokens_details\":{\"cached_tokens\":");
    jw_int(f, R->n_cached);
    jw_lit(f, "},\"output_tokens\":");
    jw_int(f, R->n_gen);
    jw_lit(f, ",\"output_tokens_details\":{\"reasoning_tokens\":");
    jw_int(f, R->n_reasoning);
    jw_lit(f, "},\"total_tokens\":");
    jw_int(f, R->n_prompt + R->n_gen);
    jw_lit(f, "}");
}

/* The response object. status: "in_progress", "completed", "incomplete";
 * with_output: the items in R->w->items (else []) and usage (else null). */
static void response_obj(fcgi_run *R, jw *f, const char *status, int with_output) {
    const fcgi_gen *g = R->g;
    jw_lit(f, "{\"id\":");
    jw_str(f, R->id, strlen(R->id));
    jw_lit(f, ",\"object\":\"response\",\"created_at\":");
    jw_int(f, R->created);
    jw_lit(f, ",\"status\":\"");
    jw_lit(f, status);
    jw_lit(f, "\",\"error\":null,\"incomplete_details\":");
    if (!strcmp(status, "incomplete")) jw_lit(f, "{\"reason\":\"max_output_tokens\"}");
    else jw_lit(f, "null");
    jw_lit(f, ",\"instructions\":");
    if (g->instructions) jw_str(f, g->instructions, strlen(g->instructions));
    else jw_lit(f, "null");
    jw_lit(f, ",\"max_output_tokens\":");
    if (g->max_tokens > 0) jw_int(f, g->max_tokens);
    else jw_lit(f, "null");
    jw_lit(f, ",\"model\":");
    jw_str(f, R->a->model_id, strlen(R->a->model_id));
    jw_lit(f, ",\"output\":[");
    if (with_output) jw_raw(f, R->w->items.p ? R->w->items.p : "", R->w->items.n);
    jw_lit(f, "],\"parallel_tool_calls\":");
    jw_lit(f, g->parallel_tool_calls ? "true" : "false");
    jw_lit(f, ",\"previous_response_id\":");
    const jv *prev = fcgi_jget(&g->root, "previous_response_id");
    if (fcgi_is_str(prev)) jw_str(f, prev->u.s->p, prev->u.s->len);
    else jw_lit(f, "null");
    jw_lit(f, ",\"reasoning\":{\"effort\":");
    if (g->reasoning_effort) jw_str(f, g->reasoning_effort, strlen(g->reasoning_effort));
    else jw_lit(f, "null");
    jw_lit(f, ",\"summary\":null},\"store\":");
    jw_lit(f, g->store ? "true" : "false");
    jw_lit(f, ",\"temperature\":");
    jw_num(f, g->sp.temperature);
    jw_lit(f, ",\"text\":{\"format\":{\"type\":\"");
    jw_lit(f, g->format == FCGI_FMT_JSON_SCHEMA ? "json_schema" : g->format == FCGI_FMT_JSON_OBJECT ? "json_object" : "text");
    jw_lit(f, "\"}},\"tool_choice\":");
    if (g->tool_choice == FCGI_TOOLS_NAMED) {
        jw_lit(f, "{\"type\":\"function\",\"name\":");
        jw_str(f, g->tool_name, strlen(g->tool_name));
        jw_lit(f, "}");
    } else jw_lit(f, g->tool_choice == FCGI_TOOLS_NONE ? "\"none\"" : g->tool_choice == FCGI_TOOLS_REQUIRED ? "\"required\"" : "\"auto\"");
    jw_lit(f, ",\"tools\":");
    const jv *tools = fcgi_jget(&g->root, "tools");
    jv_buf tb;
    jv_buf_init(&tb, (size_t)-1);
    err e = {0};
    if (fcgi_is_list(tools) && !jv_dump(&tb, *tools, NULL, ",", ":", 0, 0, &e) && !tb.over) jw_raw(f, tb.p, tb.n);
    else jw_lit(f, "[]");
    jv_buf_free(&tb);
    jw_lit(f, ",\"top_p\":");
    jw_num(f, g->sp.top_p);
    jw_lit(f, ",\"truncation\":\"disabled\",\"usage\":");
    if (with_output) usage(R, f);
    else jw_lit(f, "null");
    jw_lit(f, ",\"user\":null,\"metadata\":{}}");
}

static int ev_begin(fcgi_run *R, const char *type) {
    jw *f = &R->w->frame;
    jw_reset(f);
    jw_lit(f, "{\"type\":\"");
    jw_lit(f, type);
    jw_lit(f, "\",\"sequence_number\":");
    jw_int(f, R->seq++);
    return 0;
}

static int ev_send(fcgi_run *R, const char *type) {
    jw_lit(&R->w->frame, "}");
    return fcgi_sse_named(R, type, 0);
}

/* An output item as JSON: type, id, status and what the item holds so far
 * (R->w->item: the text or arguments of the open item). */
static void item_json(fcgi_run *R, jw *f, int type, const char *status) {
    fcgi_worker *w = R->w;
    const char *text = w->item.p ? w->item.p : "";
    jw_lit(f, "{\"id\":");
    jw_str(f, R->item_id, strlen(R->item_id));
    if (type == FCGI_EV_CONTENT) {
        jw_lit(f, ",\"type\":\"message\",\"status\":\"");
        jw_lit(f, status);
        jw_lit(f, "\",\"role\":\"assistant\",\"content\":[");
        if (strcmp(status, "in_progress")) {
            jw_lit(f, "{\"type\":\"output_text\",\"text\":");
            jw_str(f, text, w->item.n);
            jw_lit(f, ",\"annotations\":[],\"logprobs\":[]}");
        }
        jw_lit(f, "]}");
    } else if (type == FCGI_EV_REASONING) {
        jw_lit(f, ",\"type\":\"reasoning\",\"summary\":[]");
        if (strcmp(status, "in_progress")) {
            jw_lit(f, ",\"content\":[{\"type\":\"reasoning_text\",\"text\":");
            jw_str(f, text, w->item.n);
            jw_lit(f, "}]");
        }
        jw_lit(f, "}");
    } else {
        jw_lit(f, ",\"type\":\"function_call\",\"status\":\"");
        jw_lit(f, status);
        jw_lit(f, "\",\"call_id\":");
        jw_str(f, R->call_id, strlen(R->call_id));
        jw_lit(f, ",\"name\":");
        jw_str(f, R->call_name, strlen(R->call_name));
        jw_lit(f, ",\"arguments\":");
        jw_str(f, text, w->item.n);
        jw_lit(f, "}");
    }
}

static void item_head(fcgi_run *R, jw *f) {
    jw_lit(f, ",\"item_id\":");
    jw_str(f, R->item_id, strlen(R->item_id));
    jw_lit(f, ",\"output_index\":");
    jw_int(f, R->item);
}

/* Closes the open item: its done events (stream) and its JSON into w->items. */
static void item_close(fcgi_run *R, int stream) {
    fcgi_worker *w = R->w;
    if (R->item < 0 || !R->item_type) return;
    jw *f = &w->frame;
    const char *text = w->item.p ? w->item.p : "";
    if (stream) {
        if (R->item_type == FCGI_EV_CONTENT) {
            ev_begin(R, "response.output_text.done");
            item_head(R, f);
            jw_lit(f, ",\"content_index\":0,\"text\":");
            jw_str(f, text, w->item.n);
            jw_lit(f, ",\"logprobs\":[]");
            ev_send(R, "response.output_text.done");
            ev_begin(R, "response.content_part.done");
            item_head(R, f);
            jw_lit(f, ",\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":");
            jw_str(f, text, w->item.n);
            jw_lit(f, ",\"annotations\":[],\"logprobs\":[]}");
            ev_send(R, "response.content_part.done");
        } else if (R->item_type == FCGI_EV_REASONING) {
            ev_begin(R, "response.reasoning_text.done");
            item_head(R, f);
            jw_lit(f, ",\"content_index\":0,\"text\":");
            jw_str(f, text, w->item.n);
            ev_send(R, "response.reasoning_text.done");
        } else {
            ev_begin(R, "response.function_call_arguments.done");
            item_head(R, f);
            jw_lit(f, ",\"arguments\":");
            jw_str(f, text, w->item.n);
            ev_send(R, "response.function_call_arguments.done");
        }
        ev_begin(R, "response.output_item.done");
        jw_lit(f, ",\"output_index\":");
        jw_int(f, R->item);
        jw_lit(f, ",\"item\":");
        item_json(R, f, R->item_type, "completed");
        ev_send(R, "response.output_item.done");
    }
    if (w->items.n) jw_lit(&w->items, ",");
    item_json(R, &w->items, R->item_type, "completed");
    R->item_type = 0;
    jw_reset(&w->item);
}

static void item_open(fcgi_run *R, int type, const fcgi_evrec *r, int stream) {
    fcgi_worker *w = R->w;
    item_close(R, stream);
    R->item = R->n_items++;
    R->item_type = type;
    jw_reset(&w->item);
    rand_id(R->item_id, sizeof R->item_id, type == FCGI_EV_CONTENT ? "msg_" : type == FCGI_EV_REASONING ? "rs_" : "fc_");
    if (type == FCGI_EV_TOOL_START) {
        snprintf(R->call_id, sizeof R->call_id, "%s", r->id);
        snprintf(R->call_name, sizeof R->call_name, "%s", r->name);
    }
    if (!stream) return;
    jw *f = &w->frame;
    ev_begin(R, "response.output_item.added");
    jw_lit(f, ",\"output_index\":");
    jw_int(f, R->item);
    jw_lit(f, ",\"item\":");
    item_json(R, f, type, "in_progress");
    ev_send(R, "response.output_item.added");
    if (type == FCGI_EV_CONTENT) {
        ev_begin(R, "response.content_part.added");
        item_head(R, f);
        jw_lit(f, ",\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"\",\"annotations\":[],\"logprobs\":[]}");
        ev_send(R, "response.content_part.added");
    }
}

static void item_delta(fcgi_run *R, const char *p, size_t n, int stream) {
    fcgi_worker *w = R->w;
    jw_raw(&w->item, p, n);
    if (!stream) return;
    jw *f = &w->frame;
    const char *type = R->item_type == FCGI_EV_CONTENT ? "response.output_text.delta"
                       : R->item_type == FCGI_EV_REASONING ? "response.reasoning_text.delta"
                                                           : "response.function_call_arguments.delta";
    ev_begin(R, type);
    item_head(R, f);
    if (R->item_type != FCGI_EV_TOOL_START) jw_lit(f, ",\"content_index\":0");
    jw_lit(f, ",\"delta\":");
    jw_str(f, p, n);
    if (R->item_type == FCGI_EV_CONTENT) jw_lit(f, ",\"logprobs\":[]");
    ev_send(R, type);
}

/* Walks the log from R->ev_at: items opened, fed, closed (events when stream). */
static void walk(fcgi_run *R, int stream) {
    fcgi_worker *w = R->w;
    fcgi_evrec r;
    while (fcgi_events_next(&w->events, &R->ev_at, &r)) {
        switch (r.type) {
        case FCGI_EV_CONTENT:
        case FCGI_EV_REASONING:
            if (R->item_type != r.type) item_open(R, r.type, &r, stream);
            item_delta(R, r.text, r.len, stream);
            break;
        case FCGI_EV_TOOL_START: item_open(R, FCGI_EV_TOOL_START, &r, stream); break;
        case FCGI_EV_TOOL_ARGS:
            if (R->item_type == FCGI_EV_TOOL_START) item_delta(R, r.text, r.len, stream);
            break;
        case FCGI_EV_TOOL_END: item_close(R, stream); break;
        }
    }
}

static void start(fcgi_run *R) {
    if (R->started) return;
    R->started = 1;
    jw *f = &R->w->frame;
    ev_begin(R, "response.created");
    jw_lit(f, ",\"response\":");
    response_obj(R, f, "in_progress", 0);
    ev_send(R, "response.created");
    ev_begin(R, "response.in_progress");
    jw_lit(f, ",\"response\":");
    response_obj(R, f, "in_progress", 0);
    ev_send(R, "response.in_progress");
}

static int responses_delta(fcgi_run *R) {
    start(R);
    walk(R, 1);
    return fcgi_out_flush(R->o);
}

/* The conversation to keep for previous_response_id: the request's messages
 * (without the instructions) and this reply as an assistant message. */
static void store_reply(fcgi_run *R) {
    const fcgi_gen *g = R->g;
    fcgi_app *a = R->a;
    if (!g->store || !a->store) return;
    fcgi_worker *w = R->w;
    jw *b = &w->lp; /* free here */
    jw_reset(b);
    jw_lit(b, "[");
    int k = 0;
    const jv_list *ms = g->messages->u.l;
    jv_buf mb;
    jv_buf_init(&mb, (size_t)64 << 20);
    err e = {0};
    for (size_t i = g->instructions ? 1 : 0; i < ms->n; i++) {
        if (k++) jw_lit(b, ",");
        mb.n = 0;
        if (jv_dump(&mb, ms->v[i], NULL, ",", ":", 0, 0, &e) || mb.over) { jv_buf_free(&mb); return; }
        jw_raw(b, mb.p, mb.n);
    }
    jv_buf_free(&mb);
    /* the reply, from the whole log */
    if (k++) jw_lit(b, ",");
    jw_lit(b, "{\"role\":\"assistant\",\"content\":");
    jw_str(b, w->all_content.p ? w->all_content.p : "", w->all_content.n);
    if (w->all_reasoning.n) {
        jw_lit(b, ",\"reasoning_content\":");
        jw_str(b, w->all_reasoning.p, w->all_reasoning.n);
    }
    size_t at = 0;
    fcgi_evrec r;
    int nt = 0, open = 0;
    while (fcgi_events_next(&w->events, &at, &r)) {
        if (r.type == FCGI_EV_TOOL_START) {
            if (open) jw_lit(b, "\"}}");
            jw_lit(b, nt++ ? ",{\"id\":" : ",\"tool_calls\":[{\"id\":");
            jw_str(b, r.id, strlen(r.id));
            jw_lit(b, ",\"type\":\"function\",\"function\":{\"name\":");
            jw_str(b, r.name, strlen(r.name));
            jw_lit(b, ",\"arguments\":\"");
            open = 1;
        } else if (r.type == FCGI_EV_TOOL_ARGS && open) jw_str_body(b, r.text, r.len);
        else if (r.type == FCGI_EV_TOOL_END && open) { jw_lit(b, "\"}}"); open = 0; }
    }
    if (open) jw_lit(b, "\"}}");
    if (nt) jw_lit(b, "]");
    jw_lit(b, "}]");
    if (!b->oom) fcgi_store_put(a->store, R->id, b->p, b->n);
    jw_reset(b);
}

static int responses_end(fcgi_run *R, const char *finish) {
    start(R);
    walk(R, 1);
    item_close(R, 1);
    const char *status = !strcmp(finish, "length") ? "incomplete" : "completed";
    jw *f = &R->w->frame;
    ev_begin(R, !strcmp(status, "incomplete") ? "response.incomplete" : "response.completed");
    jw_lit(f, ",\"response\":");
    response_obj(R, f, status, 1);
    ev_send(R, !strcmp(status, "incomplete") ? "response.incomplete" : "response.completed");
    store_reply(R);
    return fcgi_out_flush(R->o);
}

static int responses_error(fcgi_run *R, const fcgi_error *er) {
    start(R);
    walk(R, 1);
    jw *f = &R->w->frame;
    /* the documented fields (code, message, param) and an "error" object, which
     * the openai client raises APIError on */
    ev_begin(R, "error");
    jw_lit(f, ",\"code\":");
    if (er->code) jw_str(f, er->code, strlen(er->code));
    else jw_lit(f, "null");
    jw_lit(f, ",\"message\":");
    jw_str(f, er->msg, strlen(er->msg));
    jw_lit(f, ",\"param\":null,\"error\":");
    /* fcgi_error_write writes {"error":{...}}: the inner object only */
    jw tmp = {0};
    fcgi_error_write(&tmp, er);
    if (tmp.n > 10 && !tmp.oom) jw_raw(f, tmp.p + 9, tmp.n - 10);
    else jw_lit(f, "{}");
    jw_free(&tmp);
    ev_send(R, "error");
    return fcgi_out_flush(R->o);
}

static void responses_whole(fcgi_run *R, jw *f, const char *finish) {
    walk(R, 0);
    item_close(R, 0);
    response_obj(R, f, !strcmp(finish, "length") ? "incomplete" : "completed", 1);
    store_reply(R);
}

const fcgi_api fcgi_api_responses = {
    .id_prefix = "resp_",
    .logprob = NULL,
    .stream_delta = responses_delta,
    .stream_end = responses_end,
    .stream_error = responses_error,
    .whole = responses_whole,
};
