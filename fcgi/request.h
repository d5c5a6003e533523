/* request.h — what the request parsers share (request.c: chat and completions;
 * messages.c: Anthropic's /v1/messages; responses.c: /v1/responses): typed
 * reads of optional fields that answer 400 naming the field, the validators of
 * fields several APIs have (stop strings, sampling, tools, tool_choice, output
 * format), and builders of new values in the request's arena for the
 * translations into the chat shape.
 *
 * Every function returns 0 when fine and -1 with er filled (the status and an
 * OpenAI-shaped type/code/param; the Anthropic route reshapes it on the way
 * out). Values are borrowed from the request's arena. */
#ifndef SPARKD_FCGI_REQUEST_H
#define SPARKD_FCGI_REQUEST_H

#include "fcgi.h"

#define FCGI_BAD(er, param, ...) fcgi_errorf(er, 400, "invalid_request_error", "invalid_value", param, __VA_ARGS__)
#define FCGI_BADTYPE(er, param, want) \
    fcgi_errorf(er, 400, "invalid_request_error", "invalid_type", param, "'%s' must be %s", param, want)

static inline int fcgi_is_null(const jv *v) { return !v || v->type == JV_NONE; }
static inline int fcgi_is_num(const jv *v) { return v && (v->type == JV_INT || v->type == JV_FLOAT); }
static inline int fcgi_is_str(const jv *v) { return v && v->type == JV_STR; }
static inline int fcgi_is_list(const jv *v) { return v && v->type == JV_LIST; }
static inline int fcgi_is_obj(const jv *v) { return v && v->type == JV_DICT; }
static inline size_t fcgi_list_n(const jv *v) { return fcgi_is_list(v) ? v->u.l->n : 0; }
static inline const char *fcgi_str(const jv *v) { return fcgi_is_str(v) ? v->u.s->p : NULL; }
/* v is the string s */
static inline int fcgi_str_is(const jv *v, const char *s) { return fcgi_is_str(v) && !strcmp(v->u.s->p, s); }

/* Starts g for api: defaults from lim, then the body parsed into g's arena
 * (fcgi_parse_object). -1 with er set; g needs fcgi_gen_free either way. */
int fcgi_gen_begin(const char *body, size_t len, fcgi_api_kind api, const fcgi_limits *lim, fcgi_gen *g,
                   fcgi_error *er);

/* Optional fields: absent or null leave *out and return 0. */
int fcgi_opt_float(const jv *o, const char *k, double lo, double hi, float *out, fcgi_error *er);
/* Returns 1 if present (and in range). */
int fcgi_opt_int(const jv *o, const char *k, long long lo, long long hi, long long *out, fcgi_error *er);
int fcgi_opt_bool(const jv *o, const char *k, int *out, fcgi_error *er);
/* An optional string of at most max bytes into *out (NULL when absent). */
int fcgi_opt_str(const jv *o, const char *k, size_t max, const char **out, fcgi_error *er);

/* The request's "model" must name the served model (404 otherwise). */
int fcgi_check_model(const jv *root, const char *model_id, fcgi_gen *g, fcgi_error *er);
/* temperature, top_p (> 0), top_k, min_p, penalties, seed; names as OpenAI's. */
int fcgi_parse_sampling(const jv *root, const fcgi_limits *lim, fcgi_gen *g, fcgi_error *er);
/* Stop strings (a string or a list) from field param. */
int fcgi_check_stop(const jv *v, const char *param, const fcgi_limits *lim, fcgi_gen *g, fcgi_error *er);
/* OpenAI's logit_bias: {"token id": bias in [-100, 100]}, ids below n_vocab. */
int fcgi_parse_logit_bias(const jv *v, int32_t n_vocab, fcgi_gen *g, fcgi_error *er);
/* A list of chat-shaped tools: {"type":"function","function":{"name","description","parameters"}}. */
int fcgi_check_tools(const jv *tools, const fcgi_limits *lim, const char *param, fcgi_error *er);
/* A function name as OpenAI allows it: 1-64 of [A-Za-z0-9_.-]. */
int fcgi_valid_fn_name(const char *s);
/* Sets g->tool_choice / tool_name from "none" | "auto" | "required" | a named
 * function, {"type":"function","function":{"name"}} (chat) or
 * {"type":"function","name"} (responses); a named function must be in g->tools. */
int fcgi_parse_tool_choice(const jv *v, const char *param, fcgi_gen *g, fcgi_error *er);
/* Sets g->format / schema from {"type":"text"|"json_object"|"json_schema", ...}:
 * chat nests the schema as json_schema.schema, responses' text.format holds it
 * directly (flat = 1). */
int fcgi_parse_format(const jv *v, const char *param, int flat, fcgi_gen *g, fcgi_error *er);
/* "minimal" | "low" | "medium" | "high" (and "none") into g->reasoning_effort. */
int fcgi_parse_effort(const jv *v, const char *param, fcgi_gen *g, fcgi_error *er);

/* ---- building values in the request's arena (NULL / -1: the arena is full) */
jv fcgi_jstr(jv_arena *a, const char *s, size_t n);
jv fcgi_jdict(jv_arena *a);
jv fcgi_jlist(jv_arena *a);
int fcgi_jset(jv_arena *a, jv *dict, const char *k, jv v);
int fcgi_jpush(jv_arena *a, jv *list, jv v);
/* A value of JV_UNDEF type: what a failed builder returns. */
static inline int fcgi_jbad(jv v) { return v.type == JV_UNDEF; }

#endif
