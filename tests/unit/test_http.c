/* test_http — the HTTP API layer of fcgi/ without sockets: request validation
 * (exact status, param and message for hostile bodies), the JSON writer
 * (its output re-parsed by jansson, which nobody here wrote), API-key checks
 * (the FIPS 180-2 "abc" vector), routing and /health on an app that is still
 * loading, and the metrics text. The e2e suite covers the same rows through
 * nginx. */
#include <string.h>

#include <jansson.h>

#include "fcgi.h"
#include "t.h"

/* ---- a capturing fcgi_out ---- */
typedef struct cap {
    char buf[65536];
    size_t n;
} cap;
static int cap_write(void *u, const char *p, size_t n) {
    cap *c = u;
    if (c->n + n >= sizeof c->buf) return -1;
    memcpy(c->buf + c->n, p, n);
    c->n += n;
    c->buf[c->n] = 0;
    return 0;
}
static const char *body_of(const cap *c) {
    const char *b = strstr(c->buf, "\r\n\r\n");
    return b ? b + 4 : "";
}

static fcgi_limits lim(void) {
    fcgi_limits l = {.max_body_bytes = 1 << 20, .max_tokens = 100, .max_stop = 4, .max_stop_len = 8,
                     .max_tools_bytes = 200, .max_top_logprobs = 5, .max_top_k = 1000, .n_vocab = 1000};
    sampler_default_params(&l.sp);
    return l;
}

static void check_parse(int chat, const char *body, int want_status, const char *want_param, const char *want_msg) {
    fcgi_limits l = lim();
    fcgi_gen g;
    fcgi_error er = {0};
    int rc = fcgi_request_parse(body, strlen(body), chat, &l, "m", &g, &er);
    if (want_status == 0) {
        T_OK(rc == 0, "accepts %.60s (%s)", body, er.msg);
        fcgi_gen_free(&g);
        return;
    }
    int ok = rc == -1 && er.status == want_status &&
             ((!want_param && !er.param) || (want_param && er.param && !strcmp(er.param, want_param))) &&
             strstr(er.msg, want_msg) != NULL;
    T_OK(ok, "%d %s for %.70s (got %d %s: %s)", want_status, want_msg, body, er.status, er.param ? er.param : "-", er.msg);
}

int main(void) {
    /* depth is measured on raw bytes, strings excluded */
    T_OK(fcgi_json_depth("{\"a\":[[1]]}", 11) == 3, "depth 3");
    T_OK(fcgi_json_depth("{\"a\":\"[[[[\\\"[[\"}", 17) == 1, "brackets in strings (and escaped quotes) ignored");
    char deep[200];
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    deep[130] = 0;
    T_OK(fcgi_json_depth(deep, 130) == 65, "depth 65");

    const char *C = "\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    char b[4096];
#define CHAT(extra) (snprintf(b, sizeof b, "{%s%s}", C, extra), b)
    check_parse(1, CHAT(""), 0, NULL, NULL);
    check_parse(1, "", 400, NULL, "body is empty");
    check_parse(1, "nope", 400, NULL, "invalid JSON at line 1");
    check_parse(1, "[]", 400, NULL, "must be a JSON object");
    check_parse(1, "{\"a\":1,\"a\":2}", 400, NULL, "duplicate object key");
    check_parse(1, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\x28\"}]}", 400, NULL, "invalid JSON");
    check_parse(1, "{\"messages\":[]}", 400, "model", "'model' is required");
    check_parse(1, "{\"model\":\"zzz\"}", 404, "model", "The model 'zzz' does not exist");
    check_parse(1, "{\"model\":\"m\"}", 400, "messages", "'messages' is required");
    check_parse(1, "{\"model\":\"m\",\"messages\":[]}", 400, "messages", "must not be empty");
    check_parse(1, "{\"model\":\"m\",\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}", 400, "messages", "role 'bot'");
    check_parse(1, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", 400, "messages", "content is required");
    check_parse(1, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400,
                "messages", "part type 'image_url' is not supported");
    check_parse(1, "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\"}}]}]}", 0,
                NULL, NULL);
    check_parse(1, CHAT(",\"n\":2"), 0, NULL, NULL);
    check_parse(1, CHAT(",\"n\":8"), 0, NULL, NULL);
    check_parse(1, CHAT(",\"n\":9"), 400, "n", "at most 8 choices per request");
    check_parse(0, "{\"model\":\"m\",\"prompt\":\"a\",\"n\":2,\"best_of\":2}", 400, "best_of", "only 1 is supported");
    {
        fcgi_limits l = lim();
        fcgi_gen g;
        fcgi_error er = {0};
        const char *bd = CHAT(",\"n\":3");
        T_OK(fcgi_request_parse(bd, strlen(bd), 1, &l, "m", &g, &er) == 0 && g.n == 3, "n = 3 parsed into g.n");
        fcgi_gen_free(&g);
        bd = CHAT("");
        T_OK(fcgi_request_parse(bd, strlen(bd), 1, &l, "m", &g, &er) == 0 && g.n == 1, "n absent: 1");
        fcgi_gen_free(&g);
    }
    check_parse(1, CHAT(",\"n\":0"), 400, "n", "must be at least 1");
    check_parse(1, CHAT(",\"n\":1"), 0, NULL, NULL);
    check_parse(1, CHAT(",\"max_tokens\":0"), 400, "max_tokens", "must be at least 1");
    check_parse(1, CHAT(",\"max_completion_tokens\":-1"), 400, "max_completion_tokens", "must be at least 1");
    check_parse(1, CHAT(",\"max_tokens\":\"5\""), 400, "max_tokens", "must be an integer");
    check_parse(1, CHAT(",\"temperature\":2.5"), 400, "temperature", "out of range [0, 2]");
    check_parse(1, CHAT(",\"temperature\":true"), 400, "temperature", "must be a number");
    check_parse(1, CHAT(",\"temperature\":1e999"), 400, NULL, "invalid JSON");
    check_parse(1, CHAT(",\"top_p\":NaN"), 400, NULL, "invalid JSON");
    check_parse(1, CHAT(",\"top_k\":1001"), 400, "top_k", "out of range [-1, 1000]");
    check_parse(1, CHAT(",\"top_k\":-1"), 0, NULL, NULL);
    check_parse(1, CHAT(",\"logprobs\":true,\"top_logprobs\":6"), 400, "top_logprobs", "out of range [0, 5]");
    check_parse(1, CHAT(",\"top_logprobs\":2"), 400, "top_logprobs", "needs 'logprobs': true");
    check_parse(1, CHAT(",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]"), 400, "stop", "5 stop strings; the limit is 4");
    check_parse(1, CHAT(",\"stop\":\"123456789\""), 400, "stop", "stop[0] is 9 bytes; the limit is 8");
    check_parse(1, CHAT(",\"stop\":[\"\"]"), 400, "stop", "stop[0] is empty");
    check_parse(1, CHAT(",\"stop\":null"), 0, NULL, NULL);
    check_parse(1, CHAT(",\"tools\":[{\"type\":\"function\"}]"), 400, "tools", "function must be an object");
    check_parse(1, CHAT(",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]"), 400, "tools", "name must be");
    check_parse(1, CHAT(",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":\""
                        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
                        "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"}}]"),
                400, "tools", "the limit is 200");
    /* tool_choice, response_format, logit_bias, reasoning_effort (issue 12) */
#define TOOL "{\"type\":\"function\",\"function\":{\"name\":\"f\"}}"
    check_parse(1, CHAT(",\"tool_choice\":\"required\""), 400, "tool_choice", "the request has no tools");
    check_parse(1, CHAT(",\"tools\":[" TOOL "],\"tool_choice\":\"required\""), 0, NULL, NULL);
    check_parse(1, CHAT(",\"tools\":[" TOOL "],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}}"), 0,
                NULL, NULL);
    check_parse(1, CHAT(",\"tools\":[" TOOL "],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"g\"}}"), 400,
                "tool_choice", "not among the tools");
    check_parse(1, CHAT(",\"tools\":[" TOOL "],\"tool_choice\":\"sometimes\""), 400, "tool_choice", "is not one of");
    check_parse(1, CHAT(",\"tools\":[" TOOL "," TOOL "]"), 400, "tools", "used twice");
    check_parse(1, CHAT(",\"response_format\":{\"type\":\"json_object\"}"), 0, NULL, NULL);
    check_parse(1, CHAT(",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\"}}"), 400,
                "response_format", "'schema' must be");
    check_parse(1, CHAT(",\"response_format\":{\"type\":\"yaml\"}"), 400, "response_format", "is not one of");
    check_parse(1, CHAT(",\"logit_bias\":{\"1\":5}"), 0, NULL, NULL);
    check_parse(1, CHAT(",\"logit_bias\":{\"5000\":5}"), 400, "logit_bias", "not a token id");
    check_parse(1, CHAT(",\"logit_bias\":{\"1\":101}"), 400, "logit_bias", "in [-100, 100]");
    check_parse(1, CHAT(",\"logit_bias\":{\"x\":1}"), 400, "logit_bias", "not a token id");
    check_parse(1, CHAT(",\"reasoning_effort\":\"extreme\""), 400, "reasoning_effort", "must be one of");
    check_parse(1, CHAT(",\"reasoning_effort\":\"high\""), 0, NULL, NULL);
    /* one JSON path (jsonv.c in strict mode): the rules jansson applied before */
    {
        char big[2048];
        int k = snprintf(big, sizeof big, "{%s", C);
        for (int i = 0; i < 40; i++) k += snprintf(big + k, sizeof big - (size_t)k, ",\"x%d\":%d", i, i);
        snprintf(big + k, sizeof big - (size_t)k, ",\"x7\":0}");
        check_parse(1, big, 400, NULL, "duplicate object key");
        big[k] = '}';
        big[k + 1] = 0;
        check_parse(1, big, 0, NULL, NULL);
    }
    check_parse(1, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", 400, NULL,
                "u0000 in a string");
    check_parse(1, CHAT(",\"top_p\":-Infinity"), 400, NULL, "invalid JSON");
    check_parse(1, CHAT(",\"temperature\":1e-999"), 0, NULL, NULL);
    check_parse(1, CHAT(",\"seed\":99999999999999999999"), 400, NULL, "invalid JSON");
    check_parse(1, "{\"model\":\"m\",\n\"messages\":[}", 400, NULL, "invalid JSON at line 2 column 13");
    check_parse(0, "{\"model\":\"m\",\"prompt\":\"\"}", 400, "prompt", "'prompt' is empty");
    check_parse(0, "{\"model\":\"m\",\"prompt\":[[1,2],[3]]}", 400, "prompt", "batched prompts");
    check_parse(0, "{\"model\":\"m\",\"prompt\":[1,2,3]}", 0, NULL, NULL);
    check_parse(0, "{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":6}", 400, "logprobs", "out of range [0, 5]");
    check_parse(0, "{\"model\":\"m\",\"prompt\":\"x\",\"suffix\":\"y\"}", 0, NULL, NULL);
    check_parse(0, "{\"model\":\"m\",\"prompt\":\"x\",\"suffix\":5}", 400, "suffix", "must be a string");

    /* Anthropic's /v1/messages and OpenAI's /v1/responses: the request table's
     * treatment, then the translation into the chat shape */
    {
        struct { const char *body; int want; const char *param, *msg; } rows[] = {
            {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 400, "max_tokens", "'max_tokens' is required"},
            {"{\"model\":\"m\",\"max_tokens\":5}", 400, "messages", "'messages' is required"},
            {"{\"model\":\"m\",\"max_tokens\":0,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 400, "max_tokens", "at least 1"},
            {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
             "\"tool_use_id\":\"nope\",\"content\":\"x\"}]}]}", 400, "messages", "names no earlier tool_use"},
            {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"hologram\"}]}]}", 400,
             "messages", "'hologram' is not supported"},
            {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\"}]}]}", 400,
             "messages", "image blocks are not supported"},
            {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\","
             "\"content\":\"x\"}]}", 400, "messages", "prefilled"},
            {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":[{\"name\":"
             "\"a b\",\"input_schema\":{}}]}", 400, "tools", "name must be"},
            {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":[{\"type\":"
             "\"web_search_20250305\",\"name\":\"w\"}]}", 400, "tools", "client tools only"},
            {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tool_choice\":{\"type\":"
             "\"any\"}}", 400, "tool_choice", "has no tools"},
            {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":1.5}", 400,
             "temperature", "out of range [0, 1]"},
            {"{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"thinking\":{\"type\":"
             "\"maybe\"}}", 400, "thinking", "enabled"},
        };
        for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
            fcgi_limits l = lim();
            fcgi_gen g;
            fcgi_error er = {0};
            int rc = fcgi_messages_parse(rows[i].body, strlen(rows[i].body), &l, "m", 0, &g, &er);
            int ok = rc == -1 && er.status == rows[i].want && er.param && !strcmp(er.param, rows[i].param) &&
                     strstr(er.msg, rows[i].msg);
            T_OK(ok, "messages: %d %s (got %d %s: %s)", rows[i].want, rows[i].msg, er.status, er.param ? er.param : "-", er.msg);
            fcgi_gen_free(&g);
        }
        /* a tool round trip translates: system, user, assistant (thinking + tool_use), tool, user */
        const char *ok_body =
            "{\"model\":\"m\",\"max_tokens\":5,\"system\":[{\"type\":\"text\",\"text\":\"be brief\"}],\"messages\":["
            "{\"role\":\"user\",\"content\":\"weather?\"},"
            "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"hm\",\"signature\":\"s\"},"
            "{\"type\":\"tool_use\",\"id\":\"tu1\",\"name\":\"get\",\"input\":{\"city\":\"Oslo\"}}]},"
            "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"tu1\",\"content\":[{\"type\":\"text\","
            "\"text\":\"5C\"}]},{\"type\":\"text\",\"text\":\"thanks\"}]}],"
            "\"tools\":[{\"name\":\"get\",\"input_schema\":{\"type\":\"object\"}}],\"tool_choice\":{\"type\":\"tool\",\"name\":"
            "\"get\"},\"stop_sequences\":[\"END\"],\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":2048}}";
        fcgi_limits l = lim();
        fcgi_gen g;
        fcgi_error er = {0};
        int rc = fcgi_messages_parse(ok_body, strlen(ok_body), &l, "m", 0, &g, &er);
        const char *roles[] = {"system", "user", "assistant", "tool", "user"};
        int good = rc == 0 && g.messages && g.messages->u.l->n == 5;
        for (int i = 0; good && i < 5; i++)
            good = !strcmp(fcgi_jget(&g.messages->u.l->v[i], "role")->u.s->p, roles[i]);
        good = good && fcgi_jget(&g.messages->u.l->v[2], "tool_calls") && fcgi_jget(&g.messages->u.l->v[2], "reasoning_content") &&
               !strcmp(fcgi_jget(&g.messages->u.l->v[3], "tool_call_id")->u.s->p, "tu1") &&
               !strcmp(fcgi_jget(&g.messages->u.l->v[3], "content")->u.s->p, "5C") && g.tools && g.tool_choice == FCGI_TOOLS_NAMED &&
               g.n_stop == 1 && g.thinking == 1 && g.max_tokens == 5;
        T_OK(good, "messages: a tool round trip becomes system, user, assistant(thinking, tool_calls), tool, user (%s)", er.msg);
        fcgi_gen_free(&g);
    }
    {
        struct { const char *body; int want; const char *param, *msg; } rows[] = {
            {"{\"model\":\"m\"}", 400, "input", "'input' is required"},
            {"{\"model\":\"m\",\"input\":5}", 400, "input", "must be a string or a list"},
            {"{\"model\":\"m\",\"input\":[{\"type\":\"computer_call\"}]}", 400, "input", "'computer_call' is not supported"},
            {"{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\"}]}]}", 400, "input",
             "only text parts"},
            {"{\"model\":\"m\",\"input\":\"hi\",\"previous_response_id\":\"resp_nope\"}", 400, "previous_response_id", "not found"},
            {"{\"model\":\"m\",\"input\":\"hi\",\"tools\":[{\"type\":\"web_search\"}]}", 400, "tools", "function tools only"},
            {"{\"model\":\"m\",\"input\":\"hi\",\"max_output_tokens\":0}", 400, "max_output_tokens", "at least 1"},
            {"{\"model\":\"m\",\"input\":\"hi\",\"reasoning\":{\"effort\":\"max\"}}", 400, "reasoning.effort", "must be one of"},
            {"{\"model\":\"m\",\"input\":\"hi\",\"text\":{\"format\":{\"type\":\"json_schema\"}}}", 400, "text.format",
             "'schema' must be"},
        };
        for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
            fcgi_limits l = lim();
            fcgi_gen g;
            fcgi_error er = {0};
            int rc = fcgi_responses_parse(rows[i].body, strlen(rows[i].body), &l, "m", NULL, &g, &er);
            int ok = rc == -1 && er.status == rows[i].want && er.param && !strcmp(er.param, rows[i].param) &&
                     strstr(er.msg, rows[i].msg);
            T_OK(ok, "responses: %d %s (got %d %s: %s)", rows[i].want, rows[i].msg, er.status, er.param ? er.param : "-", er.msg);
            fcgi_gen_free(&g);
        }
        const char *ok_body =
            "{\"model\":\"m\",\"instructions\":\"be brief\",\"input\":[{\"role\":\"user\",\"content\":\"weather?\"},"
            "{\"type\":\"reasoning\",\"summary\":[],\"content\":[{\"type\":\"reasoning_text\",\"text\":\"hm\"}]},"
            "{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"get\",\"arguments\":\"{}\"},"
            "{\"type\":\"function_call\",\"call_id\":\"c2\",\"name\":\"get\",\"arguments\":\"{}\"},"
            "{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":\"5C\"},"
            "{\"type\":\"function_call_output\",\"call_id\":\"c2\",\"output\":\"6C\"}],"
            "\"tools\":[{\"type\":\"function\",\"name\":\"get\",\"parameters\":{\"type\":\"object\"}}],"
            "\"tool_choice\":{\"type\":\"function\",\"name\":\"get\"},\"max_output_tokens\":7,\"store\":false,"
            "\"reasoning\":{\"effort\":\"low\"},\"text\":{\"format\":{\"type\":\"json_object\"}}}";
        fcgi_limits l = lim();
        fcgi_gen g;
        fcgi_error er = {0};
        int rc = fcgi_responses_parse(ok_body, strlen(ok_body), &l, "m", NULL, &g, &er);
        const char *roles[] = {"system", "user", "assistant", "tool", "tool"};
        int good = rc == 0 && g.messages && g.messages->u.l->n == 5;
        for (int i = 0; good && i < 5; i++)
            good = !strcmp(fcgi_jget(&g.messages->u.l->v[i], "role")->u.s->p, roles[i]);
        good = good && fcgi_jget(&g.messages->u.l->v[2], "tool_calls")->u.l->n == 2 &&
               fcgi_jget(&g.messages->u.l->v[2], "reasoning_content") && g.tool_choice == FCGI_TOOLS_NAMED && !g.store &&
               g.max_tokens == 7 && g.format == FCGI_FMT_JSON_OBJECT && !strcmp(g.reasoning_effort, "low");
        T_OK(good, "responses: items become system, user, assistant(2 tool_calls, reasoning), tool, tool (%s)", er.msg);
        fcgi_gen_free(&g);
    }

    /* parsed values */
    {
        fcgi_limits l = lim();
        fcgi_gen g;
        fcgi_error er;
        const char *body = "{\"model\":\"m\",\"prompt\":\"hello\",\"max_tokens\":100000,\"temperature\":0,\"seed\":-1,"
                           "\"stop\":[\"a\",\"bc\"],\"stream\":true,\"stream_options\":{\"include_usage\":true},\"logprobs\":3}";
        int rc = fcgi_request_parse(body, strlen(body), 0, &l, "m", &g, &er);
        T_OK(rc == 0 && g.max_tokens == 100 && g.sp.temperature == 0 && g.has_seed && g.sp.seed == UINT64_MAX &&
             g.n_stop == 2 && g.stop_len[1] == 2 && g.stream && g.include_usage && g.logprobs && g.top_logprobs == 3 &&
             g.prompt_len == 5, "completions fields parsed; max_tokens clamped to the cap");
        fcgi_gen_free(&g);
    }

    /* JSON writer: escapes and repairs, and jansson reads back what we meant */
    {
        jw w = {0};
        const char raw[] = "a\"b\\c\n\x01\x7f \xe2\x82\xac \xff \xe2\x82"; /* ends with a cut 3-byte sequence */
        jw_str(&w, raw, sizeof raw - 1);
        json_error_t je;
        json_t *j = json_loadb(w.p, w.n, JSON_DECODE_ANY, &je);
        const char *want = "a\"b\\c\n\x01\x7f \xe2\x82\xac \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd";
        T_OK(j && json_is_string(j) && !strcmp(json_string_value(j), want), "jw_str output re-parsed by jansson: %s", w.p);
        json_decref(j);
        jw_reset(&w);
        jw_num(&w, -0.5);
        jw_lit(&w, ",");
        jw_num(&w, 1.0 / 0.0);
        T_OK(!strcmp(w.p, "-0.5,-9999"), "jw_num: finite and non-finite (%s)", w.p);
        jw_free(&w);
    }

    /* auth: FIPS 180-2 "abc" */
    {
        char hex[65];
        fcgi_sha256_hex("abc", 3, hex);
        T_OK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "SHA-256(abc) = FIPS vector");
        config c;
        config_defaults(&c);
        T_OK(fcgi_auth_check(&c, NULL), "no keys configured -> open");
        c.n_keys = 2;
        memset(c.key_sha256[0], 0x11, 32);
        static const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                        0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
        memcpy(c.key_sha256[1], abc, 32);
        T_OK(fcgi_auth_check(&c, "Bearer abc") && fcgi_auth_check(&c, "bearer abc"), "right key (second of two) accepted");
        T_OK(!fcgi_auth_check(&c, "Bearer abd") && !fcgi_auth_check(&c, "Bearer ab") && !fcgi_auth_check(&c, "Bearer abcd") &&
             !fcgi_auth_check(&c, NULL) && !fcgi_auth_check(&c, "") && !fcgi_auth_check(&c, "Basic abc") &&
             !fcgi_auth_check(&c, "Bearer "), "wrong, short, long, missing, other scheme, empty -> refused");
    }

    /* routing on an app that is still loading (no model) */
    {
        static fcgi_app a;
        config c;
        config_defaults(&c);
        a.cfg = &c;
        fcgi_metrics_init(&a.metrics);
        atomic_store(&a.state, FCGI_LOADING);
        fcgi_worker w;
        memset(&w, 0, sizeof w);
        struct { const char *method, *path, *auth; int want; const char *in_body; } rows[] = {
            {"GET", "/health", NULL, 503, "\"status\":\"loading\""},
            {"GET", "/v1/models", NULL, 503, "\"code\":\"service_unavailable\""},
            {"POST", "/v1/models", NULL, 405, "use GET"},
            {"GET", "/v1/chat/completions", NULL, 405, "use POST"},
            {"GET", "/nope", NULL, 404, "no such endpoint"},
            {"GET", "", NULL, 400, "no path"},
            {"GET", "/metrics", NULL, 200, "sparkd_ready 0"},
        };
        for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
            cap cp = {0};
            fcgi_out o = {.write = cap_write, .u = &cp};
            fcgi_http_req rq = {.method = rows[i].method, .path = rows[i].path, .body = "", .body_len = 0};
            int st = fcgi_handle(&a, &w, &rq, &o);
            char want_line[32];
            snprintf(want_line, sizeof want_line, "Status: %d ", rows[i].want);
            T_OK(st == rows[i].want && !strncmp(cp.buf, want_line, strlen(want_line)) && strstr(body_of(&cp), rows[i].in_body),
                 "%s %s -> %d (got %d)", rows[i].method, rows[i].path, rows[i].want, st);
        }
        c.n_keys = 1;
        cap cp = {0};
        fcgi_out o = {.write = cap_write, .u = &cp};
        fcgi_http_req rq = {.method = "GET", .path = "/v1/models", .authorization = "Bearer x", .body = ""};
        T_OK(fcgi_handle(&a, &w, &rq, &o) == 401 && strstr(cp.buf, "WWW-Authenticate: Bearer") &&
             strstr(body_of(&cp), "\"type\":\"authentication_error\""), "wrong key -> 401 before anything else");
        cp.n = 0;
        rq.path = "/health";
        T_OK(fcgi_handle(&a, &w, &rq, &o) == 503, "/health needs no key");
        /* metrics: counts by status so far, cumulative histogram buckets */
        fcgi_hist_observe(&a.metrics.ttft, 0.03);
        fcgi_hist_observe(&a.metrics.ttft, 1000);
        char m[16384];
        fcgi_metrics_render(&a.metrics, NULL, FCGI_LOADING, m, sizeof m);
        T_OK(strstr(m, "sparkd_requests_total{code=\"503\"} 3\n") && strstr(m, "sparkd_requests_total{code=\"405\"} 2\n") &&
             strstr(m, "sparkd_requests_total{code=\"401\"} 1\n"), "requests counted by status");
        T_OK(strstr(m, "sparkd_time_to_first_token_seconds_bucket{le=\"0.025\"} 0\n") &&
             strstr(m, "sparkd_time_to_first_token_seconds_bucket{le=\"0.05\"} 1\n") &&
             strstr(m, "sparkd_time_to_first_token_seconds_bucket{le=\"160\"} 1\n") &&
             strstr(m, "sparkd_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2\n") &&
             strstr(m, "sparkd_time_to_first_token_seconds_count 2\n"), "histogram buckets cumulative, +Inf = count");
    }
    T_DONE();
}
