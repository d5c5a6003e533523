/* tmpl.h — chat templates: a sandboxed Jinja-subset interpreter that renders a
 * model's tokenizer.chat_template (from GGUF metadata or an override file).
 *
 * The render context is given as JSON text (an object) or as parsed values
 * (jsonv.h), the same shape HF's
 * apply_chat_template builds: {"messages": [...], "tools": [...] (optional),
 * "add_generation_prompt": bool, "enable_thinking": bool (optional),
 * "bos_token": "...", "eos_token": "...", ...}. Messages are OpenAI-shaped
 * (role, content (string or list of parts), tool_calls, tool_call_id, name,
 * reasoning_content). Globals HF provides: raise_exception, strftime_now,
 * tojson (HF's semantics), namespace, range, ...
 *
 * Sandbox: no attribute reflection, no access to anything but the context;
 * recursion depth, loop iterations and output size are bounded — breaking a
 * bound is an error (ERR_INVALID with a message), never a hang.
 *
 * Owns: the parsed template (tmpl_compile) — immutable afterwards, so one tmpl
 * may be rendered by several threads at once. */
#ifndef SPARKD_TMPL_H
#define SPARKD_TMPL_H

#include <stddef.h>

#include "err.h"
#include "jsonv.h"

typedef struct tmpl tmpl;

typedef struct tmpl_limits {
    size_t max_output;     /* bytes of rendered text (default 4 MiB) */
    long max_steps;        /* loop iterations + calls (default 10 million) */
    int max_depth;         /* macro/include/recursion depth (default 64) */
} tmpl_limits;

/* Parses template source. Syntax errors name the line and column. */
int tmpl_compile(tmpl **out, const char *src, size_t len, err *e);
void tmpl_free(tmpl *t);

/* Renders with the JSON context. *out is malloc'd (caller frees), NUL-terminated;
 * *out_len excludes the NUL. limits may be NULL (defaults). A template that
 * calls raise_exception(msg) fails with ERR_INVALID and that message. */
int tmpl_render(const tmpl *t, const char *ctx_json, size_t ctx_len, const tmpl_limits *limits,
                char **out, size_t *out_len, err *e);

/* The same with a context already parsed (a JV_DICT in any arena, e.g. the
 * request's own values): the render only reads it, so one context may be
 * rendered by several threads at once. */
int tmpl_render_value(const tmpl *t, jv ctx, const tmpl_limits *limits, char **out, size_t *out_len, err *e);

#endif
