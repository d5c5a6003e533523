/* constrain.h — structured output and forced tool calls (prefix fcgi_constraint):
 * what a request asks of the output's form (response_format / text.format
 * json_object or json_schema; tool_choice "required" or a named function)
 * turned into a sched_constraint, so the scheduler masks every token to it.
 *
 * Owns: per request, the compiled grammar and its per-sequence state; freed by
 * fcgi_constraint_free after the request's final event. */
#ifndef SPARKD_FCGI_CONSTRAIN_H
#define SPARKD_FCGI_CONSTRAIN_H

#include "fcgi.h"

typedef struct fcgi_constraint fcgi_constraint;

/* Per app, once the model is loaded: the grammar vocabulary over the model's
 * n_vocab logit rows, the whitespace-only tokens, the reasoning markers. */
int fcgi_constraint_setup(fcgi_app *a, int32_t n_vocab, err *e);
void fcgi_constraint_teardown(fcgi_app *a);
/* The compiled-grammar cache (constrain.c): lookups that found / compiled, the
 * grammars kept and their bytes. */
void fcgi_gcache_stats(const fcgi_app *a, uint64_t *hits, uint64_t *misses, int *entries, size_t *bytes);
/* The function a forced call calls (named, or "required" with one tool), or NULL. */
const char *fcgi_forced_name(const fcgi_gen *g);

/* A forced tool call (tool_choice "required" or a named function) starts with
 * the model's own tool-call opener written into the prompt (prefill), so the
 * model goes on inside the call: Qwen3 '<tool_call>\n{"name": "NAME",
 * "arguments": ', Qwen3-Coder "<tool_call>\n<function=NAME>\n", harmony
 * "<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>" (a
 * required call leaves the name to the model). *prefix = that text in buf, or
 * NULL when nothing is forced; thinking: the prompt left a reasoning block open
 * (closed first). 400 for a model without a tool-call syntax. */
int fcgi_forced_prefix(const fcgi_app *a, const fcgi_gen *g, int thinking, char *buf, size_t cap, const char **prefix,
                       fcgi_error *er);

/* *out = NULL when the request asks nothing of the output's form; else a
 * constraint for the model's own syntax (thinking: the prompt left a reasoning
 * block open). -1 with er set: 400 for a schema the engine refuses (naming the
 * keyword's path), or for a form this model has no syntax for. */
int fcgi_constraint_new(fcgi_app *a, const fcgi_gen *g, int thinking, fcgi_constraint **out, fcgi_error *er);
const sched_constraint *fcgi_constraint_sched(fcgi_constraint *c); /* NULL for NULL */
/* When the constraint completed the output (the scheduler stopped on done), the
 * markup the model's syntax still needs after it ("}\n</tool_call>", "<|call|>"),
 * which the caller feeds to the output parser; else NULL. */
const char *fcgi_constraint_suffix(const fcgi_constraint *c);
void fcgi_constraint_free(fcgi_constraint *c);

/* Qwen3-Coder's XML call body after "<function=NAME>\n" as llama.cpp GBNF (start
 * rule root) from the tool's parameters schema (NULL: no parameters): each
 * property in the schema's order, "<parameter=KEY>\nVALUE\n</parameter>\n",
 * required ones mandatory, the others optional, then "</function>". VALUE: a
 * string is raw text (never "</parameter>" nor "</tool_call>") or one of its enum
 * strings; integer / number / boolean / null their JSON literals (or enum values);
 * object / array / no type any JSON value of that kind (the nested schema is not
 * enforced). 0 written to out; 1 the schema is not expressible (anyOf, $ref,
 * type lists, bounds, patterns...: the caller keeps prefill only); -1 out overflowed. */
int fcgi_xml_params_gbnf(const jv *params, jv_buf *out);

/* DeepSeek V3.2's DSML call body after "<｜DSML｜invoke name=\"NAME\">\n", the same
 * way: each property "<｜DSML｜parameter name=\"KEY\" string=\"true\">VALUE</｜DSML｜parameter>\n"
 * (string="true" for strings, raw text that never holds "｜DSML｜", where every
 * marker the parser cuts at lies; string="false" for the others, their JSON,
 * whose strings never hold '｜'), then "</｜DSML｜invoke>". Returns as above. */
int fcgi_dsml_params_gbnf(const jv *params, jv_buf *out);

/* "required" over several tools in the markup formats: the text after the
 * prefill's "<function=" (Qwen3-Coder, dsml 0) or "invoke name=\"" (V3.2, dsml 1)
 * as one GBNF: root ::= "NAME0>\n" t0root | "NAME1>\n" t1root ... (V3.2:
 * "NAME\">\n"), each tN the tool's parameters as above (rules prefixed tN), or
 * any parameters for a schema the markup grammar cannot express. 0, or -1 out
 * overflowed. */
int fcgi_calls_gbnf(const fcgi_gen *g, int dsml, jv_buf *out);

/* parse_str_param over the request's tools (u: the fcgi_gen): 1 when function
 * fn's parameters schema types property key as "string", or gives it no type and
 * an enum of strings only (Qwen3-Coder's parser
 * then keeps the value's raw text instead of reading "42" as a number). */
int fcgi_tool_str_param(void *u, const char *fn, const char *key, size_t kl);

#endif
