/* parse.h — output parsers: split a model's generated text, as it streams, into
 * reasoning, content and tool calls (OpenAI's shapes).
 *
 * Formats: Qwen3 <think>...</think> and <tool_call>{json}</tool_call>;
 * Qwen3-Coder <tool_call><function=NAME><parameter=P>...</parameter></function></tool_call>;
 * GPT-OSS harmony channels (analysis -> reasoning, final -> content,
 * commentary to=functions.NAME -> tool call);
 * DeepSeek <think>...</think> and its tool-call tokens, both generations:
 *   V3 / R1:  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME
 *             ```json\nARGS\n```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
 *   V3.1 on:  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>...
 *   (the parser reads either form whichever the format says; the two formats
 *   differ in what a forced call writes, constrain.h).
 *   V3.2 (DSML markup, its own format):
 *     <｜DSML｜function_calls>\n<｜DSML｜invoke name="NAME">\n
 *     <｜DSML｜parameter name="K" string="true">RAW TEXT</｜DSML｜parameter>\n
 *     <｜DSML｜parameter name="K" string="false">JSON</｜DSML｜parameter>\n
 *     </｜DSML｜invoke>\n...</｜DSML｜function_calls>
 *     string="true" values are taken as they stand (a JSON string), string="false"
 *     ones must parse as JSON, a parameter without the attribute is JSON if it
 *     parses, else a string. <｜DSML｜function_calls> also ends reasoning that was
 *     never closed (the model may call from inside <think>, as llama.cpp allows).
 *
 * Streaming-safe: text that could still become a tag is held back until it is
 * decided, so partial tags never reach content. Malformed output (unterminated
 * tags, bad JSON arguments, nesting) keeps every character somewhere sensible:
 * an unfinished construct is flushed as content (or reasoning) at the end.
 *
 * Tool calls stream as in OpenAI's format: TOOL_START once the name is known,
 * then TOOL_ARGS deltas as the arguments are generated, then TOOL_END. Where
 * the arguments stream (harmony bodies; Qwen3 bodies that open with "name"
 * then "arguments"/"parameters" holding an object) they are the model's own
 * text, not re-serialized, and are not validated: a truncated or invalid body
 * stays in the arguments, as with OpenAI's API. Qwen3-Coder parameters are
 * converted one by one (JSON value if it parses, else a JSON string). Qwen3
 * bodies in another shape are collected whole, validated and re-serialized
 * (one TOOL_ARGS), or emitted as content when malformed. DeepSeek calls are
 * collected whole up to <｜tool▁call▁end｜> the same way (one TOOL_ARGS; ARGS
 * must be a JSON object, or a JSON string holding one, as R1-Distill's
 * template writes it); a malformed one is content, its markers included.
 *
 * Owns: its buffers, sized at parse_create (bounded by max_text); no allocation
 * while feeding. One parser per generated sequence. */
#ifndef SPARKD_PARSE_H
#define SPARKD_PARSE_H

#include <stddef.h>

#include "err.h"

typedef enum parse_format {
    PARSE_PLAIN = 0,   /* everything is content */
    PARSE_QWEN3,       /* <think>, <tool_call>{json} */
    PARSE_QWEN3_CODER, /* <think>, <tool_call><function=...> XML */
    PARSE_HARMONY,     /* GPT-OSS */
    PARSE_DEEPSEEK,    /* <think>, <｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS (V3.1 and later) */
    PARSE_DEEPSEEK_R1, /* <think>, <｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME ```json ARGS``` (V3, R1) */
    PARSE_DEEPSEEK_V32, /* <think>, <｜DSML｜function_calls><｜DSML｜invoke name="NAME">... (V3.2) */
    PARSE_NFORMATS
} parse_format;

typedef enum parse_event_type {
    PARSE_EV_CONTENT = 0,   /* text: a content delta */
    PARSE_EV_REASONING,     /* text: a reasoning_content delta */
    PARSE_EV_TOOL_START,    /* index, id, name: a new tool call */
    PARSE_EV_TOOL_ARGS,     /* index, text: a delta of its JSON arguments string (never empty) */
    PARSE_EV_TOOL_END,      /* index: arguments complete. No content/reasoning
                             * event comes between a call's START and END. */
} parse_event_type;

typedef struct parse_event {
    parse_event_type type;
    int index;        /* tool call index within this message */
    const char *text; /* delta bytes (not NUL-terminated) */
    size_t len;
    const char *id;   /* TOOL_START: "call_..." id, NUL-terminated */
    const char *name; /* TOOL_START: function name, NUL-terminated */
} parse_event;

/* Events are delivered through a callback; pointers are valid during the call. */
typedef void (*parse_sink)(void *user, const parse_event *ev);

typedef struct parse parse;

/* thinking: the prompt already opened a reasoning block (e.g. Qwen3 templates
 * that end the generation prompt with "<think>\n"), so output starts as reasoning. */
int parse_create(parse **out, parse_format fmt, int thinking, size_t max_text, err *e);
void parse_free(parse *p);
/* Feeds generated text (any split, even mid-UTF-8 or mid-tag). */
void parse_feed(parse *p, const char *text, size_t len, parse_sink sink, void *user);
/* End of generation: flushes whatever is held back. */
void parse_finish(parse *p, parse_sink sink, void *user);
/* Qwen3-Coder's XML values carry no type: a value is read as JSON when it parses,
 * else as a string. With this hook (the request's tools), a parameter whose schema
 * says "string" keeps its raw text ("42" stays "42"), as the template wrote it.
 * f(u, function name, key, key length): 1 for a string parameter. */
typedef int (*parse_str_param)(void *u, const char *fn, const char *key, size_t kl);
void parse_set_str_param(parse *p, parse_str_param f, void *u);
/* Number of tool calls emitted so far. */
int parse_tool_calls(const parse *p);

/* What the vocabulary says (parse_detect's vocab bits). */
#define PARSE_VOCAB_HARMONY 1u  /* <|channel|> is one token (GPT-OSS) */
#define PARSE_VOCAB_DEEPSEEK 2u /* <｜tool▁calls▁begin｜> is one token */

/* Chooses a format from the chat template text (may be NULL) and the
 * vocabulary's markers (PARSE_VOCAB_* bits). */
parse_format parse_detect(const char *chat_template, size_t len, unsigned vocab);

/* The spellings of DeepSeek's markers (UTF-8: ｜ U+FF5C, ▁ U+2581). */
#define PARSE_DS_BAR "\xef\xbd\x9c"
#define PARSE_DS_SP "\xe2\x96\x81"
#define PARSE_DS_CALLS_BEGIN "<" PARSE_DS_BAR "tool" PARSE_DS_SP "calls" PARSE_DS_SP "begin" PARSE_DS_BAR ">"
#define PARSE_DS_CALLS_END "<" PARSE_DS_BAR "tool" PARSE_DS_SP "calls" PARSE_DS_SP "end" PARSE_DS_BAR ">"
#define PARSE_DS_CALL_BEGIN "<" PARSE_DS_BAR "tool" PARSE_DS_SP "call" PARSE_DS_SP "begin" PARSE_DS_BAR ">"
#define PARSE_DS_CALL_END "<" PARSE_DS_BAR "tool" PARSE_DS_SP "call" PARSE_DS_SP "end" PARSE_DS_BAR ">"
#define PARSE_DS_SEP "<" PARSE_DS_BAR "tool" PARSE_DS_SP "sep" PARSE_DS_BAR ">"
/* V3.2's DSML markup (｜DSML｜ with U+FF5C bars) */
#define PARSE_DSML "\xef\xbd\x9c" "DSML" "\xef\xbd\x9c"
#define PARSE_DSML_CALLS_BEGIN "<" PARSE_DSML "function_calls>"
#define PARSE_DSML_CALLS_END "</" PARSE_DSML "function_calls>"
#define PARSE_DSML_INVOKE "<" PARSE_DSML "invoke"
#define PARSE_DSML_INVOKE_END "</" PARSE_DSML "invoke>"
#define PARSE_DSML_PARAM "<" PARSE_DSML "parameter"
#define PARSE_DSML_PARAM_END "</" PARSE_DSML "parameter>"

#endif
