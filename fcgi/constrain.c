/* constrain.c — see constrain.h. */
#include "constrain.h"

struct fcgi_constraint {
    sched_constraint sc;
};

#include <stdio.h>
#include <string.h>

int fcgi_forced_prefix(const fcgi_app *a, const fcgi_gen *g, int thinking, char *buf, size_t cap, const char **prefix,
                       fcgi_error *er) {
    *prefix = NULL;
    if (g->tool_choice != FCGI_TOOLS_REQUIRED && g->tool_choice != FCGI_TOOLS_NAMED) return 0;
    const int named = g->tool_choice == FCGI_TOOLS_NAMED;
    /* a required call with one tool is that tool */
    const char *name = named ? g->tool_name : NULL;
    if (!named && g->tools && g->tools->u.l->n == 1) name = fcgi_jget(fcgi_jget(&g->tools->u.l->v[0], "function"), "name")->u.s->p;
    const char *close = thinking ? "\n</think>\n\n" : "";
    int k;
    switch (a->pfmt) {
    case PARSE_QWEN3:
        k = name ? snprintf(buf, cap, "%s<tool_call>\n{\"name\": \"%s\", \"arguments\": ", close, name)
                 : snprintf(buf, cap, "%s<tool_call>\n{\"name\": \"", close);
        break;
    case PARSE_QWEN3_CODER:
        k = name ? snprintf(buf, cap, "%s<tool_call>\n<function=%s>\n", close, name)
                 : snprintf(buf, cap, "%s<tool_call>\n<function=", close);
        break;
    case PARSE_HARMONY:
        k = name ? snprintf(buf, cap, "<|channel|>commentary to=functions.%s <|constrain|>json<|message|>", name)
                 : snprintf(buf, cap, "<|channel|>commentary to=functions.");
        break;
    default:
        return fcgi_errorf(er, 400, "invalid_request_error", "unsupported_value", "tool_choice",
                           "this model's chat template has no tool-call syntax sparkd knows, so a tool call cannot be "
                           "forced; use tool_choice \"auto\"");
    }
    if (k < 0 || (size_t)k >= cap) return fcgi_errorf(er, 500, "server_error", NULL, NULL, "tool-call prefix too long");
    *prefix = buf;
    return 0;
}

int fcgi_constraint_new(fcgi_app *a, const fcgi_gen *g, int thinking, fcgi_constraint **out, fcgi_error *er) {
    (void)a;
    (void)thinking;
    *out = NULL;
    if (g->format != FCGI_FMT_TEXT)
        return fcgi_errorf(er, 400, "invalid_request_error", "unsupported_value", g->api == FCGI_API_RESPONSES ? "text.format" : "response_format",
                           "structured output (json_object / json_schema) is not available in this build yet");
    return 0;
}

const sched_constraint *fcgi_constraint_sched(fcgi_constraint *c) { return c ? &c->sc : NULL; }

void fcgi_constraint_free(fcgi_constraint *c) { (void)c; }
