/* messages.c — Anthropic's Messages API: /v1/messages (and count_tokens).
 *
 * The request is translated into the chat shape the templates expect, in the
 * request's arena: system -> a system message; text blocks -> content;
 * thinking blocks -> reasoning_content; tool_use blocks -> the assistant's
 * tool_calls (input kept as an object); tool_result blocks -> tool messages
 * naming the tool_use id (an id no earlier tool_use has is a 400); tools with
 * input_schema -> function tools; tool_choice auto / any / tool / none;
 * thinking enabled / disabled -> the template's enable_thinking.
 *
 * The reply: a message with content blocks (thinking, text, tool_use) in the
 * order the model produced them, stop_reason end_turn / max_tokens /
 * stop_sequence / tool_use, usage with cache_read_input_tokens; streamed as
 * message_start, ping, content_block_start / _delta / _stop per block,
 * message_delta, message_stop; a stream that cannot complete ends with an
 * error event instead. Errors on these routes are in Anthropic's shape
 * (reply.c, FCGI_ERR_ANTHROPIC). */
#include <stdio.h>
#include <string.h>

#include "request.h"
#include "run.h"

#define BAD(param, ...) FCGI_BAD(er, param, __VA_ARGS__)
#define BADTYPE(param, want) FCGI_BADTYPE(er, param, want)
#define NOMEM() fcgi_errorf(er, 500, "server_error", NULL, NULL, "out of memory")

/* ---------------------------------------------------------------- request */

/* Text of a block list (text blocks only) joined with "\n", or a string as is. */
static int text_of(jv_arena *ar, const jv *c, const char *where, jv *out, fcgi_error *er) {
    if (fcgi_is_str(c)) { *out = *c; return 0; }
    if (!fcgi_is_list(c)) return BAD("messages", "%s must be a string or a list of blocks", where);
    size_t len = 0;
    for (size_t i = 0; i < c->u.l->n; i++) {
        const jv *b = &c->u.l->v[i];
        if (!fcgi_str_is(fcgi_jget(b, "type"), "text") || !fcgi_is_str(fcgi_jget(b, "text")))
            return BAD("messages", "%s[%zu]: only text blocks are supported here", where, i);
        len += fcgi_jget(b, "text")->u.s->len + 1;
    }
    jv_str *s = jv_alloc(ar, sizeof *s + len + 1);
    if (!s) return NOMEM();
    char *p = s->p;
    for (size_t i = 0; i < c->u.l->n; i++) {
        const jv_str *t = fcgi_jget(&c->u.l->v[i], "text")->u.s;
        if (i) *p++ = '\n';
        memcpy(p, t->p, t->len);
        p += t->len;
    }
    s->len = (size_t)(p - s->p);
    *p = 0;
    *out = jv_strv(s);
    return 0;
}

static int known_id(const jv *ids, const char *id) {
    for (size_t i = 0; i < fcgi_list_n(ids); i++)
        if (!strcmp(fcgi_str(&ids->u.l->v[i]), id)) return 1;
    return 0;
}

/* A user or assistant message (Anthropic) -> chat messages appended to out. */
static int translate(jv_arena *ar, const jv *m, size_t idx, jv *out, jv *tool_ids, fcgi_error *er) {
    const jv *role = fcgi_jget(m, "role"), *content = fcgi_jget(m, "content");
    if (!fcgi_is_obj(m)) return BAD("messages", "messages[%zu] must be an object", idx);
    int assistant = fcgi_str_is(role, "assistant");
    if (!assistant && !fcgi_str_is(role, "user"))
        return BAD("messages", "messages[%zu].role must be \"user\" or \"assistant\"", idx);
    if (fcgi_is_str(content)) {
        jv cm = fcgi_jdict(ar);
        if (fcgi_jset(ar, &cm, "role", fcgi_jstr(ar, assistant ? "assistant" : "user", assistant ? 9 : 4)) ||
            fcgi_jset(ar, &cm, "content", *content) || fcgi_jpush(ar, out, cm))
            return NOMEM();
        return 0;
    }
    if (!fcgi_is_list(content)) return BAD("messages", "messages[%zu].content must be a string or a list of blocks", idx);
    jv text = fcgi_jlist(ar), calls = fcgi_jlist(ar), reasoning = fcgi_jlist(ar);
    if (fcgi_jbad(text) || fcgi_jbad(calls) || fcgi_jbad(reasoning)) return NOMEM();
    for (size_t i = 0; i < content->u.l->n; i++) {
        const jv *b = &content->u.l->v[i];
        const jv *ty = fcgi_jget(b, "type");
        if (!fcgi_is_obj(b) || !fcgi_is_str(ty)) return BAD("messages", "messages[%zu].content[%zu] needs a type", idx, i);
        const char *t = fcgi_str(ty);
        char where[64];
        snprintf(where, sizeof where, "messages[%zu].content[%zu]", idx, i);
        if (!strcmp(t, "text")) {
            const jv *tx = fcgi_jget(b, "text");
            if (!fcgi_is_str(tx)) return BAD("messages", "%s.text must be a string", where);
            if (fcgi_jpush(ar, &text, *tx)) return NOMEM();
        } else if (!strcmp(t, "thinking") && assistant) {
            const jv *th = fcgi_jget(b, "thinking");
            if (!fcgi_is_str(th)) return BAD("messages", "%s.thinking must be a string", where);
            if (fcgi_jpush(ar, &reasoning, *th)) return NOMEM();
        } else if (!strcmp(t, "redacted_thinking") && assistant) {
            /* nothing a template can show */
        } else if (!strcmp(t, "tool_use") && assistant) {
            const jv *id = fcgi_jget(b, "id"), *name = fcgi_jget(b, "name"), *input = fcgi_jget(b, "input");
            if (!fcgi_is_str(id) || !fcgi_is_str(name) || !fcgi_is_obj(input))
                return BAD("messages", "%s: a tool_use block needs id, name and an input object", where);
            jv fn = fcgi_jdict(ar), call = fcgi_jdict(ar);
            if (fcgi_jset(ar, &fn, "name", *name) || fcgi_jset(ar, &fn, "arguments", *input) ||
                fcgi_jset(ar, &call, "id", *id) || fcgi_jset(ar, &call, "type", fcgi_jstr(ar, "function", 8)) ||
                fcgi_jset(ar, &call, "function", fn) || fcgi_jpush(ar, &calls, call) || fcgi_jpush(ar, tool_ids, *id))
                return NOMEM();
        } else if (!strcmp(t, "tool_result") && !assistant) {
            const jv *id = fcgi_jget(b, "tool_use_id"), *c = fcgi_jget(b, "content");
            if (!fcgi_is_str(id)) return BAD("messages", "%s: a tool_result block needs tool_use_id", where);
            if (!known_id(tool_ids, fcgi_str(id)))
                return BAD("messages", "%s: tool_use_id '%.64s' names no earlier tool_use block", where, fcgi_str(id));
            jv body = fcgi_jstr(ar, "", 0);
            if (!fcgi_is_null(c) && text_of(ar, c, where, &body, er)) return -1;
            jv tm = fcgi_jdict(ar);
            if (fcgi_jset(ar, &tm, "role", fcgi_jstr(ar, "tool", 4)) || fcgi_jset(ar, &tm, "tool_call_id", *id) ||
                fcgi_jset(ar, &tm, "content", body) || fcgi_jpush(ar, out, tm))
                return NOMEM();
        } else if (!strcmp(t, "image") || !strcmp(t, "document")) {
            return BAD("messages", "%s: %s blocks are not supported (text only)", where, t);
        } else {
            return BAD("messages", "%s: block type '%.40s' is not supported here", where, t);
        }
    }
    if (!text.u.l->n && !calls.u.l->n && !reasoning.u.l->n) return 0; /* only tool results */
    /* the text blocks, joined with "\n" */
    size_t len = 0;
    for (size_t i = 0; i < text.u.l->n; i++) len += text.u.l->v[i].u.s->len + 1;
    jv_str *s = jv_alloc(ar, sizeof *s + len + 1);
    if (!s) return NOMEM();
    s->len = 0;
    for (size_t i = 0; i < text.u.l->n; i++) {
        if (i) s->p[s->len++] = '\n';
        memcpy(s->p + s->len, text.u.l->v[i].u.s->p, text.u.l->v[i].u.s->len);
        s->len += text.u.l->v[i].u.s->len;
    }
    s->p[s->len] = 0;
    jv r;
    jv cm = fcgi_jdict(ar);
    if (fcgi_jset(ar, &cm, "role", fcgi_jstr(ar, assistant ? "assistant" : "user", assistant ? 9 : 4)) ||
        fcgi_jset(ar, &cm, "content", jv_strv(s)))
        return NOMEM();
    if (calls.u.l->n && fcgi_jset(ar, &cm, "tool_calls", calls)) return NOMEM();
    if (reasoning.u.l->n) {
        r = reasoning.u.l->v[0];
        if (fcgi_jset(ar, &cm, "reasoning_content", r)) return NOMEM();
    }
    return fcgi_jpush(ar, out, cm) ? NOMEM() : 0;
}

static int tools_of(jv_arena *ar, const jv *tools, const fcgi_limits *lim, jv *out, fcgi_error *er) {
    if (!fcgi_is_list(tools)) return BADTYPE("tools", "an array");
    *out = fcgi_jlist(ar);
    if (fcgi_jbad(*out)) return NOMEM();
    for (size_t i = 0; i < tools->u.l->n; i++) {
        const jv *t = &tools->u.l->v[i];
        const jv *ty = fcgi_jget(t, "type");
        if (!fcgi_is_obj(t)) return BAD("tools", "tools[%zu] must be an object", i);
        if (!fcgi_is_null(ty) && !fcgi_str_is(ty, "custom"))
            return BAD("tools", "tools[%zu]: tool type '%.40s' is not supported (client tools only)", i,
                       fcgi_is_str(ty) ? fcgi_str(ty) : "?");
        const jv *name = fcgi_jget(t, "name"), *d = fcgi_jget(t, "description"), *schema = fcgi_jget(t, "input_schema");
        if (!fcgi_is_str(name) || !fcgi_valid_fn_name(fcgi_str(name)))
            return BAD("tools", "tools[%zu].name must be 1-64 of [A-Za-z0-9_.-]", i);
        if (!fcgi_is_obj(schema)) return BAD("tools", "tools[%zu].input_schema must be an object", i);
        if (d && !fcgi_is_null(d) && !fcgi_is_str(d)) return BAD("tools", "tools[%zu].description must be a string", i);
        jv fn = fcgi_jdict(ar), tool = fcgi_jdict(ar);
        if (fcgi_jset(ar, &fn, "name", *name) || (fcgi_is_str(d) && fcgi_jset(ar, &fn, "description", *d)) ||
            fcgi_jset(ar, &fn, "parameters", *schema) || fcgi_jset(ar, &tool, "type", fcgi_jstr(ar, "function", 8)) ||
            fcgi_jset(ar, &tool, "function", fn) || fcgi_jpush(ar, out, tool))
            return NOMEM();
    }
    return fcgi_check_tools(out, lim, "tools", er);
}

int fcgi_messages_parse(const char *body, size_t len, const fcgi_limits *lim, const char *model_id, int count_only,
                        fcgi_gen *g, fcgi_error *er) {
    if (fcgi_gen_begin(body, len, FCGI_API_MESSAGES, lim, g, er)) return -1;
    const jv *root = &g->root;
    jv_arena *ar = g->arena;
    if (fcgi_check_model(root, model_id, g, er)) return -1;
    long long x;
    int rc = fcgi_opt_int(root, "max_tokens", -(1ll << 62), 1ll << 62, &x, er);
    if (rc < 0) return -1;
    if (rc == 0 && !count_only) return BAD("max_tokens", "'max_tokens' is required");
    if (rc == 1) {
        if (x < 1) return BAD("max_tokens", "'max_tokens' = %lld must be at least 1", x);
        g->max_tokens = x > lim->max_tokens ? lim->max_tokens : (int)x;
    }
    jv msgs = fcgi_jlist(ar), tool_ids = fcgi_jlist(ar);
    if (fcgi_jbad(msgs) || fcgi_jbad(tool_ids)) return NOMEM();
    const jv *sys = fcgi_jget(root, "system");
    if (!fcgi_is_null(sys)) {
        jv st;
        if (text_of(ar, sys, "system", &st, er)) return -1;
        jv sm = fcgi_jdict(ar);
        if (fcgi_jset(ar, &sm, "role", fcgi_jstr(ar, "system", 6)) || fcgi_jset(ar, &sm, "content", st) ||
            fcgi_jpush(ar, &msgs, sm))
            return NOMEM();
    }
    const jv *ms = fcgi_jget(root, "messages");
    if (!ms) return BAD("messages", "'messages' is required");
    if (!fcgi_is_list(ms)) return BADTYPE("messages", "an array");
    if (!fcgi_list_n(ms)) return BAD("messages", "'messages' must not be empty");
    for (size_t i = 0; i < ms->u.l->n; i++)
        if (translate(ar, &ms->u.l->v[i], i, &msgs, &tool_ids, er)) return -1;
    if (fcgi_str_is(fcgi_jget(&ms->u.l->v[ms->u.l->n - 1], "role"), "assistant"))
        return BAD("messages", "the last message is the assistant's: continuing a prefilled answer is not supported");
    g->messages = jv_alloc(ar, sizeof(jv));
    if (!g->messages) return NOMEM();
    *(jv *)g->messages = msgs;

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
    const jv *tc = fcgi_jget(root, "tool_choice");
    if (!fcgi_is_null(tc)) {
        const jv *ty = fcgi_jget(tc, "type");
        if (!fcgi_is_obj(tc) || !fcgi_is_str(ty)) return BAD("tool_choice", "'tool_choice' needs a type");
        const char *t = fcgi_str(ty);
        if (!strcmp(t, "auto")) g->tool_choice = FCGI_TOOLS_AUTO;
        else if (!strcmp(t, "none")) g->tool_choice = FCGI_TOOLS_NONE;
        else if (!strcmp(t, "any")) g->tool_choice = FCGI_TOOLS_REQUIRED;
        else if (!strcmp(t, "tool")) {
            const jv *n = fcgi_jget(tc, "name");
            if (!fcgi_is_str(n)) return BAD("tool_choice", "tool_choice type \"tool\" needs a name");
            g->tool_choice = FCGI_TOOLS_NAMED;
            g->tool_name = fcgi_str(n);
        } else return BAD("tool_choice", "tool_choice type '%.40s' is not one of auto, any, tool, none", t);
        int dis = 0;
        if (fcgi_opt_bool(tc, "disable_parallel_tool_use", &dis, er)) return -1;
        g->parallel_tool_calls = !dis;
        if (g->tool_choice == FCGI_TOOLS_REQUIRED || g->tool_choice == FCGI_TOOLS_NAMED) {
            if (!g->tools) return BAD("tool_choice", "tool_choice asks for a tool call but the request has no tools");
            int found = g->tool_choice == FCGI_TOOLS_REQUIRED;
            for (size_t i = 0; !found && i < g->tools->u.l->n; i++)
                found = !strcmp(fcgi_str(fcgi_jget(fcgi_jget(&g->tools->u.l->v[i], "function"), "name")), g->tool_name);
            if (!found) return BAD("tool_choice", "tool_choice names '%.64s', which is not among the tools", g->tool_name);
        }
    }
    const jv *th = fcgi_jget(root, "thinking");
    if (!fcgi_is_null(th)) {
        const jv *ty = fcgi_jget(th, "type");
        if (fcgi_str_is(ty, "enabled")) {
            long long b;
            if (fcgi_opt_int(th, "budget_tokens", 1, 1ll << 30, &b, er) < 0) return -1;
            g->thinking = 1;
        } else if (fcgi_str_is(ty, "disabled")) g->thinking = 0;
        else return BAD("thinking", "thinking.type must be \"enabled\" or \"disabled\"");
    }
    if (count_only) return 0;
    if (fcgi_opt_bool(root, "stream", &g->stream, er)) return -1;
    if (fcgi_opt_float(root, "temperature", 0, 1, &g->sp.temperature, er)) return -1;
    if (fcgi_opt_float(root, "top_p", 0, 1, &g->sp.top_p, er)) return -1;
    if (!fcgi_is_null(fcgi_jget(root, "top_p")) && g->sp.top_p <= 0)
        return BAD("top_p", "'top_p' = 0 is out of range (0, 1]: it would keep no token");
    if ((rc = fcgi_opt_int(root, "top_k", 0, lim->max_top_k, &x, er)) < 0) return -1;
    if (rc == 1) g->sp.top_k = (int32_t)x;
    if (fcgi_check_stop(fcgi_jget(root, "stop_sequences"), "stop_sequences", lim, g, er)) return -1;
    return 0;
}

/* ---------------------------------------------------------------- reply */

static const char *stop_reason(const fcgi_run *R, const char *finish) {
    if (!strcmp(finish, "length")) return "max_tokens";
    if (!strcmp(finish, "tool_calls")) return "tool_use";
    if (R->stop_index >= 0) return "stop_sequence";
    return "end_turn";
}

static void stop_sequence(const fcgi_run *R, jw *f) {
    if (R->stop_index >= 0) jw_str(f, R->g->stop[R->stop_index], R->g->stop_len[R->stop_index]);
    else jw_lit(f, "null");
}

static void usage(const fcgi_run *R, jw *f, int with_input) {
    jw_lit(f, "{");
    if (with_input) {
        jw_lit(f, "\"input_tokens\":");
        jw_int(f, R->n_prompt - R->n_cached);
        jw_lit(f, ",\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":");
        jw_int(f, R->n_cached);
        jw_lit(f, ",");
    }
    jw_lit(f, "\"output_tokens\":");
    jw_int(f, R->n_gen);
    jw_lit(f, "}");
}

static int event(fcgi_run *R, const char *name) { return fcgi_sse_named(R, name, 0); }

static void start(fcgi_run *R) {
    if (R->started) return;
    R->started = 1;
    jw *f = &R->w->frame;
    jw_reset(f);
    jw_lit(f, "{\"type\":\"message_start\",\"message\":{\"id\":");
    jw_str(f, R->id, strlen(R->id));
    jw_lit(f, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    jw_str(f, R->a->model_id, strlen(R->a->model_id));
    jw_lit(f, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":");
    jw_int(f, R->n_prompt);
    jw_lit(f, ",\"output_tokens\":0}}}");
    event(R, "message_start");
    jw_reset(f);
    jw_lit(f, "{\"type\":\"ping\"}");
    event(R, "ping");
}

static void block_stop(fcgi_run *R) {
    if (R->block < 0 || !R->block_type) return;
    jw *f = &R->w->frame;
    jw_reset(f);
    jw_lit(f, "{\"type\":\"content_block_stop\",\"index\":");
    jw_int(f, R->block);
    jw_lit(f, "}");
    event(R, "content_block_stop");
    R->block_type = 0;
}

static void block_start(fcgi_run *R, int type, const fcgi_evrec *r) {
    block_stop(R);
    R->block++;
    R->block_type = type;
    jw *f = &R->w->frame;
    jw_reset(f);
    jw_lit(f, "{\"type\":\"content_block_start\",\"index\":");
    jw_int(f, R->block);
    if (type == FCGI_EV_CONTENT) jw_lit(f, ",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}");
    else if (type == FCGI_EV_REASONING) jw_lit(f, ",\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}");
    else {
        jw_lit(f, ",\"content_block\":{\"type\":\"tool_use\",\"id\":");
        jw_str(f, r->id, strlen(r->id));
        jw_lit(f, ",\"name\":");
        jw_str(f, r->name, strlen(r->name));
        jw_lit(f, ",\"input\":{}}}");
    }
    event(R, "content_block_start");
}

static void block_delta(fcgi_run *R, const char *kind, const char *field, const char *p, size_t n) {
    jw *f = &R->w->frame;
    jw_reset(f);
    jw_lit(f, "{\"type\":\"content_block_delta\",\"index\":");
    jw_int(f, R->block);
    jw_lit(f, ",\"delta\":{\"type\":\"");
    jw_lit(f, kind);
    jw_lit(f, "\",\"");
    jw_lit(f, field);
    jw_lit(f, "\":");
    jw_str(f, p, n);
    jw_lit(f, "}}");
    event(R, "content_block_delta");
}

static int messages_delta(fcgi_run *R) {
    fcgi_worker *w = R->w;
    start(R);
    fcgi_evrec r;
    while (fcgi_events_next(&w->events, &R->ev_at, &r)) {
        switch (r.type) {
        case FCGI_EV_CONTENT:
            if (R->block_type != FCGI_EV_CONTENT) block_start(R, FCGI_EV_CONTENT, &r);
            block_delta(R, "text_delta", "text", r.text, r.len);
            break;
        case FCGI_EV_REASONING:
            if (R->block_type != FCGI_EV_REASONING) block_start(R, FCGI_EV_REASONING, &r);
            block_delta(R, "thinking_delta", "thinking", r.text, r.len);
            break;
        case FCGI_EV_TOOL_START: block_start(R, FCGI_EV_TOOL_START, &r); break;
        case FCGI_EV_TOOL_ARGS:
            if (R->block_type == FCGI_EV_TOOL_START) block_delta(R, "input_json_delta", "partial_json", r.text, r.len);
            break;
        case FCGI_EV_TOOL_END: block_stop(R); break;
        }
    }
    return fcgi_out_flush(R->o);
}

static int messages_end(fcgi_run *R, const char *finish) {
    messages_delta(R);
    block_stop(R);
    jw *f = &R->w->frame;
    jw_reset(f);
    jw_lit(f, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"");
    jw_lit(f, stop_reason(R, finish));
    jw_lit(f, "\",\"stop_sequence\":");
    stop_sequence(R, f);
    jw_lit(f, "},\"usage\":");
    usage(R, f, 1);
    jw_lit(f, "}");
    event(R, "message_delta");
    jw_reset(f);
    jw_lit(f, "{\"type\":\"message_stop\"}");
    return fcgi_sse_named(R, "message_stop", 1);
}

static int messages_error(fcgi_run *R, const fcgi_error *er) {
    messages_delta(R);
    jw *f = &R->w->frame;
    jw_reset(f);
    fcgi_error_write_shape(f, er, FCGI_ERR_ANTHROPIC);
    return fcgi_sse_named(R, "error", 1);
}

/* A tool_use block's input: the arguments text when it is a JSON object, else
 * the text kept as {"_arguments": "..."} (a model that wrote no valid object). */
static void tool_input(fcgi_run *R, jw *f, const char *p, size_t n) {
    jv_arena *ar = jv_arena_new(64 * n + (1u << 20));
    jv v;
    err e = {0};
    int ok = ar && !jv_parse(ar, p, n, 64, &v, &e) && v.type == JV_DICT;
    jv_arena_free(ar);
    (void)R;
    if (ok) jw_raw(f, p, n);
    else {
        jw_lit(f, "{\"_arguments\":");
        jw_str(f, p, n);
        jw_lit(f, "}");
    }
}

static void messages_whole(fcgi_run *R, jw *f, const char *finish) {
    fcgi_worker *w = R->w;
    jw_lit(f, "{\"id\":");
    jw_str(f, R->id, strlen(R->id));
    jw_lit(f, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    jw_str(f, R->a->model_id, strlen(R->a->model_id));
    jw_lit(f, ",\"content\":[");
    /* blocks from the ordered log: runs of text or thinking merge; each tool
     * call's arguments are gathered (in w->lp, free here) to be checked whole */
    size_t at = 0;
    fcgi_evrec r;
    int open = 0, nb = 0;
    jw *args = &w->lp;
    jw_reset(args);
    while (fcgi_events_next(&w->events, &at, &r)) {
        if (r.type == FCGI_EV_TOOL_ARGS) { jw_raw(args, r.text, r.len); continue; }
        if (r.type == FCGI_EV_TOOL_END) {
            if (open == FCGI_EV_TOOL_START) {
                jw_lit(f, ",\"input\":");
                tool_input(R, f, args->p ? args->p : "", args->n);
                jw_lit(f, "}");
                open = 0;
            }
            continue;
        }
        if (r.type == open && r.type != FCGI_EV_TOOL_START) { jw_str_body(f, r.text, r.len); continue; }
        if (open == FCGI_EV_CONTENT || open == FCGI_EV_REASONING) jw_lit(f, open == FCGI_EV_REASONING ? "\",\"signature\":\"\"}" : "\"}");
        if (nb++) jw_lit(f, ",");
        open = r.type;
        if (r.type == FCGI_EV_CONTENT) {
            jw_lit(f, "{\"type\":\"text\",\"text\":\"");
            jw_str_body(f, r.text, r.len);
        } else if (r.type == FCGI_EV_REASONING) {
            jw_lit(f, "{\"type\":\"thinking\",\"thinking\":\"");
            jw_str_body(f, r.text, r.len);
        } else {
            jw_reset(args);
            jw_lit(f, "{\"type\":\"tool_use\",\"id\":");
            jw_str(f, r.id, strlen(r.id));
            jw_lit(f, ",\"name\":");
            jw_str(f, r.name, strlen(r.name));
        }
    }
    if (open == FCGI_EV_CONTENT) jw_lit(f, "\"}");
    else if (open == FCGI_EV_REASONING) jw_lit(f, "\",\"signature\":\"\"}");
    else if (open == FCGI_EV_TOOL_START) {
        jw_lit(f, ",\"input\":");
        tool_input(R, f, args->p ? args->p : "", args->n);
        jw_lit(f, "}");
    }
    jw_reset(args);
    jw_lit(f, "],\"stop_reason\":\"");
    jw_lit(f, stop_reason(R, finish));
    jw_lit(f, "\",\"stop_sequence\":");
    stop_sequence(R, f);
    jw_lit(f, ",\"usage\":");
    usage(R, f, 1);
    jw_lit(f, "}");
}

const fcgi_api fcgi_api_messages = {
    .id_prefix = "msg_",
    .logprob = NULL,
    .stream_delta = messages_delta,
    .stream_end = messages_end,
    .stream_error = messages_error,
    .whole = messages_whole,
};
