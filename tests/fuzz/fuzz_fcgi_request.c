/* fuzz_fcgi_request — libFuzzer target for the request path of fcgi/: the
 * body parsers and validators of every API (fcgi/request.c: chat and
 * completions; messages.c: Anthropic; responses.c: Responses, with their
 * translations into the chat shape; llama-server's /infill) over jsonv.c, the chat template
 * context built from the parsed values (fcgi/prompt.c) rendered by a small
 * tool-aware template (text/tmpl.c), and the JSON writer (fcgi/jw.c). The
 * first byte picks the API (its low two bits; bit 3 turns completions into
 * /infill); the rest is the body. Every accepted
 * body must yield in-range fields; every refused one a 400/404 with a
 * non-empty message; the writer's output must re-parse as a JSON string.
 *   make fuzz && tests/fuzz/run_fuzz.sh fuzz_fcgi_request 60 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fcgi.h"

/* Walks messages, content parts, tool calls and tools the way real chat
 * templates do, so the render reads every kind of value the context holds. */
static const char tmpl_src[] =
    "{{ bos_token }}{% if tools %}{{ tools | tojson }}{% endif %}"
    "{% for m in messages %}<{{ m.role }}>"
    "{% if m.content is string %}{{ m.content | trim }}{% endif %}"
    "{% for t in m.tool_calls or [] %}{{ t.function.name }}({{ t.function.arguments | tojson }}){% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}{{ eos_token }}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static tmpl *tp;
    if (!tp) {
        err e = {0};
        if (tmpl_compile(&tp, tmpl_src, sizeof tmpl_src - 1, &e)) abort();
    }
    if (size < 1) return 0;
    int api = data[0] & 3, chat = api != 0;
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    fcgi_limits l = {.max_body_bytes = 1 << 20, .max_tokens = 100, .max_stop = 4, .max_stop_len = 16,
                     .max_tools_bytes = 1024, .max_top_logprobs = 20, .max_top_k = 1000, .n_vocab = 1000};
    sampler_default_params(&l.sp);
    fcgi_gen g;
    fcgi_error er = {0};
    int infill = api == 0 && (data[0] & 8);
    int rc = api == 2   ? fcgi_messages_parse(body, n, &l, "m", data[0] & 4, &g, &er)
             : api == 3 ? fcgi_responses_parse(body, n, &l, "m", NULL, &g, &er)
             : infill   ? fcgi_infill_parse(body, n, &l, "m", &g, &er)
                        : fcgi_request_parse(body, n, chat, &l, "m", &g, &er);
    if (rc == 0) {
        for (int i = 0; i < g.n_bias; i++)
            if (g.bias_ids[i] < 0 || g.bias_ids[i] >= 1000 || g.bias_vals[i] < -100 || g.bias_vals[i] > 100) abort();
        if ((g.tool_choice == FCGI_TOOLS_NAMED || g.tool_choice == FCGI_TOOLS_REQUIRED) && !g.tools) abort();
        if (g.max_tokens > 100 || (g.max_tokens < 1 && g.max_tokens != -1) || g.n_stop > 4 || g.top_logprobs > 20 ||
            g.sp.temperature < 0 || g.sp.temperature > 2 || g.sp.top_k > 1000)
            abort();
        for (int i = 0; i < g.n_stop; i++)
            if (g.stop_len[i] == 0 || g.stop_len[i] > 16) abort();
        if (infill && (g.chat || !g.suffix || !g.prompt)) abort();
        if (chat) {
            jv ctx;
            if (fcgi_chat_context(&g, "<s>", "</s>", &ctx)) abort();
            tmpl_limits tl = {.max_output = 1 << 16, .max_steps = 200000, .max_depth = 32};
            char *out = NULL;
            size_t on = 0;
            err e = {0};
            if (tmpl_render_value(tp, ctx, &tl, &out, &on, &e) == 0 && out[on] != 0) abort();
            free(out);
        }
        fcgi_gen_free(&g);
    } else {
        if ((er.status != 400 && er.status != 404) || !er.msg[0]) abort();
        fcgi_gen_free(&g);
    }
    jw w = {0};
    jw_str(&w, body, n);
    json_error_t je;
    json_t *j = json_loadb(w.p, w.n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j || !json_is_string(j)) abort();
    json_decref(j);
    jw_free(&w);
    return 0;
}
