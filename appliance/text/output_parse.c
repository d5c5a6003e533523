/* parse.c — streaming reasoning / tool-call parsers (see parse.h).
 *
 * One rule makes streaming safe: text is emitted only once it is decided.
 * The undecided tail of the input (`pend`) is what could still turn into a
 * tag (a proper prefix of one), an incomplete UTF-8 sequence, or whitespace
 * that a following tag would swallow. Decisions depend on the bytes only,
 * never on how they were split, so the concatenated deltas of a stream equal
 * the one-shot result for every split.
 *
 * Whitespace: Qwen formats drop whitespace next to their tags (after <think>,
 * before </think>, after </think>, around <tool_call> blocks), as the
 * templates put it there. Harmony bodies are passed through exactly.
 *
 * Tool calls stream: a call starts (TOOL_START) as soon as its name is known
 * and its arguments go out as TOOL_ARGS deltas while they are generated:
 *   harmony: the body of a message to=functions.NAME, as it comes (outer
 *     whitespace trimmed), valid JSON or not, as OpenAI passes model-made
 *     arguments through;
 *   Qwen3 JSON: once the body opens with {"name": "NAME", "arguments": {
 *     ("parameters" too), the raw text of the arguments object; js_step
 *     finds its end so the outer `}` never goes out;
 *   Qwen3-Coder XML: at <function=NAME>; then one delta per completed
 *     <parameter=..>, `}` and TOOL_END at </function>.
 * A Qwen body that opens any other way (arguments first, arguments as a JSON
 * string, escapes in the name) is collected whole and checked at the close:
 * malformed, it is emitted as content, tags included.
 *
 * Malformed output elsewhere: text after a streamed call's arguments (other
 * than the closing `}`) and a streamed XML call's unparsable rest go out as
 * content after the call ends; an unterminated <think> stays reasoning; an
 * unterminated header or block is flushed as content at parse_finish.
 *
 * DeepSeek: content and <think> as Qwen3; <｜tool▁calls▁begin｜> (or a bare
 * <｜tool▁call▁begin｜>, which models also write) opens a block of calls.
 * Each call is collected up to <｜tool▁call▁end｜> and then read in either
 * generation's form (ds_call); whitespace between calls is dropped; text in
 * the block that is no call is content. A call interrupted by another marker
 * (<｜tool▁call▁begin｜>, <｜tool▁calls▁end｜>) or cut off by the end of the
 * output is read as it stands, and is content when it does not read.
 *
 * DeepSeek V3.2 runs the same machine over its DSML markers (ds_syntax):
 * <｜DSML｜function_calls> opens the block, <｜DSML｜invoke ...</｜DSML｜invoke>
 * is one call (dsml_call reads its name and parameters), and the block opener
 * also ends reasoning that was never closed. A string parameter holding one
 * of the markers themselves cuts its call short (it is then content), as the
 * template writes string values without escaping. */
#include "output_parse.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "jsonv.h"

enum {
    Q_CONTENT = 0, /* Qwen: plain content */
    Q_REASON,      /* inside <think> */
    Q_TOOL,        /* inside <tool_call>: collecting the body (buffered path) */
    Q_ARGS,        /* inside <tool_call>{"name": .., "arguments": streaming the arguments value */
    Q_XML,         /* inside <tool_call><function=NAME>: streaming one parameter at a time */
    H_START,       /* harmony: between messages, expecting a header */
    H_HEADER,      /* collecting a header up to <|message|> */
    H_BODY,        /* inside a message body */
    D_BLOCK,       /* DeepSeek: inside <｜tool▁calls▁begin｜>, between calls */
    D_CALL,        /* DeepSeek: inside <｜tool▁call▁begin｜>, collecting the call */
};

enum { H_CH_FINAL = 0, H_CH_ANALYSIS, H_CH_TOOL, H_CH_OTHER };

#define PARSE_HDR_MAX 512

struct parse {
    parse_format fmt;
    size_t max_text;
    char *pend; /* [max_text] undecided input */
    size_t npend;
    char *tool; /* [max_text] body of the tool call being collected */
    size_t ntool;
    int mode;
    int skip_ws; /* drop whitespace at the start of what comes next */
    int ntools;
    /* harmony */
    char hdr[PARSE_HDR_MAX]; /* the header being collected (raw) */
    size_t nhdr;
    int channel;
    char recipient[128]; /* function name after "to=functions." */
    int h_started;       /* harmony: some input was consumed (no longer at the stream's start) */
    int h_lead;          /* harmony tool body: still dropping its leading whitespace */
    /* streamed tool calls (Qwen) */
    char name[256];  /* function name of the call being streamed */
    int q_try;       /* Q_TOOL: the body may still turn out streamable */
    int js_depth;    /* Q_ARGS: nesting depth of the arguments value ({ and [) */
    int js_in_str;   /* Q_ARGS: inside a JSON string */
    int js_esc;      /* Q_ARGS: the previous byte was a backslash inside a string */
    int js_done;     /* Q_ARGS: 1 the value is closed, `tool` collects what follows; 2 the call was ended early */
    int xml_nparams; /* Q_XML: parameters emitted so far */
    int xml_state;   /* Q_XML: 0 in the function, 1 after </function>, 2 malformed */
    parse_str_param str_param; /* Q_XML: string-typed parameters (parse_set_str_param), or NULL */
    void *str_param_u;
};

void parse_set_str_param(parse *p, parse_str_param f, void *u) {
    p->str_param = f;
    p->str_param_u = u;
}

/* A Qwen3-Coder value: JSON when it parses, else a string; a parameter the
 * tool's schema declares a string stays the raw text. */
static jv xml_value(const parse *p, jv_arena *a, const char *fn, const char *key, size_t kl, const char *val, size_t vl) {
    jv v;
    err e = {0};
    if ((p->str_param && p->str_param(p->str_param_u, fn, key, kl)) || jv_parse(a, val, vl, 64, &v, &e) != 0) {
        const jv_str *s = jv_str_new(a, val, vl);
        v = s ? jv_strv(s) : jv_undef();
    }
    return v;
}

static atomic_ullong parse_id_counter;

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int parse_create(parse **out, parse_format fmt, int thinking, size_t max_text, err *e) {
    *out = NULL;
    if (max_text < 64) max_text = 64;
    parse *p = calloc(1, sizeof *p);
    if (!p) return err_set(e, ERR_NOMEM, "parser: out of memory");
    p->pend = malloc(max_text);
    p->tool = malloc(max_text);
    if (!p->pend || !p->tool) {
        parse_free(p);
        return err_set(e, ERR_NOMEM, "parser: out of memory");
    }
    p->fmt = fmt;
    p->max_text = max_text;
    if (fmt == PARSE_HARMONY) p->mode = H_START;
    else if ((fmt == PARSE_QWEN3 || fmt == PARSE_QWEN3_CODER || fmt == PARSE_DEEPSEEK || fmt == PARSE_DEEPSEEK_R1 ||
              fmt == PARSE_DEEPSEEK_V32) &&
             thinking) {
        p->mode = Q_REASON;
        p->skip_ws = 1;
    } else p->mode = Q_CONTENT;
    *out = p;
    return 0;
}

void parse_free(parse *p) {
    if (!p) return;
    free(p->pend);
    free(p->tool);
    free(p);
}

int parse_tool_calls(const parse *p) { return p->ntools; }

/* ---------------------------------------------------------------- events */

static void ev_text(parse *p, parse_event_type type, const char *s, size_t n, parse_sink sink, void *user) {
    if (p->skip_ws) {
        while (n && is_ws(*s)) { s++; n--; }
        if (n) p->skip_ws = 0;
    }
    if (!n) return;
    parse_event ev = {.type = type, .index = p->ntools, .text = s, .len = n};
    sink(user, &ev);
}

/* A tool call is START, any number of ARGS deltas, END; content events never
 * come between them, so a consumer can keep the call open by its index. */
/* Tool-call ids are unique across restarts: a random 48-bit base drawn once per
 * process (clients key conversation state by these ids), then a counter. */
static uint64_t id_base;
static pthread_once_t id_once = PTHREAD_ONCE_INIT;
static void id_base_init(void) {
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32;
    }
    id_base = r & 0xffffffffffffull;
}

static void ev_tool_start(parse *p, const char *name, parse_sink sink, void *user) {
    char id[40];
    pthread_once(&id_once, id_base_init);
    snprintf(id, sizeof id, "call_%012llx%08llx", (unsigned long long)id_base,
             (unsigned long long)(atomic_fetch_add(&parse_id_counter, 1) + 1) & 0xffffffffull);
    parse_event ev = {.type = PARSE_EV_TOOL_START, .index = p->ntools, .id = id, .name = name};
    sink(user, &ev);
}

static void ev_tool_args(parse *p, const char *s, size_t n, parse_sink sink, void *user) {
    if (!n) return;
    parse_event ea = {.type = PARSE_EV_TOOL_ARGS, .index = p->ntools, .text = s, .len = n};
    sink(user, &ea);
}

static void ev_tool_end(parse *p, parse_sink sink, void *user) {
    parse_event ee = {.type = PARSE_EV_TOOL_END, .index = p->ntools};
    sink(user, &ee);
    p->ntools++;
}

static void ev_tool(parse *p, const char *name, const char *args, size_t nargs, parse_sink sink, void *user) {
    ev_tool_start(p, name, sink, user);
    ev_tool_args(p, args, nargs, sink, user);
    ev_tool_end(p, sink, user);
}

/* ---------------------------------------------------------------- helpers */

static long find(const char *s, size_t n, const char *tag) {
    size_t tl = strlen(tag);
    if (tl > n) return -1;
    const char *f = memmem(s, n, tag, tl);
    return f ? (long)(f - s) : -1;
}

/* Length of the longest suffix of s[0..n) that is a proper prefix of a tag. */
static size_t partial_tag(const char *s, size_t n, const char *const *tags) {
    size_t best = 0;
    for (int t = 0; tags[t]; t++) {
        size_t tl = strlen(tags[t]);
        for (size_t k = (tl - 1 < n ? tl - 1 : n); k > best; k--)
            if (memcmp(s + n - k, tags[t], k) == 0) { best = k; break; }
    }
    return best;
}

/* bytes at the end of s[0..n) that start an incomplete UTF-8 sequence */
static size_t utf8_tail(const char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = (unsigned char)s[n - k];
        if ((c & 0xC0) == 0x80) continue;
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > k ? k : 0;
    }
    return 0;
}

static void consume(parse *p, size_t n) {
    memmove(p->pend, p->pend + n, p->npend - n);
    p->npend -= n;
    if (n) p->h_started = 1;
}

/* Emits the decided head of pend as `type`: everything but a possible tag
 * prefix, an incomplete UTF-8 tail and (if hold_ws) trailing whitespace. */
static void emit_decided(parse *p, parse_event_type type, const char *const *tags, int hold_ws, int final,
                         parse_sink sink, void *user) {
    size_t n = p->npend;
    if (!final) {
        n -= partial_tag(p->pend, n, tags);
        n -= utf8_tail(p->pend, n);
        if (hold_ws)
            while (n && is_ws(p->pend[n - 1])) n--;
    }
    ev_text(p, type, p->pend, n, sink, user);
    consume(p, n);
}

/* ---------------------------------------------------------------- tool bodies */

/* {"name": ..., "arguments": {...}} -> name and compact JSON arguments.
 * Returns 0 when the body is a valid call. */
static int qwen_json_call(const char *body, size_t n, char *name, size_t name_cap, jv_buf *args) {
    jv_arena *a = jv_arena_new(16 * n + 65536);
    if (!a) return -1;
    int rc = -1;
    jv v;
    err e = {0};
    while (n && is_ws(*body)) { body++; n--; }
    while (n && is_ws(body[n - 1])) n--;
    if (jv_parse(a, body, n, 64, &v, &e) == 0 && v.type == JV_DICT) {
        long ni = jv_dict_find(v.u.d, "name", 4);
        long ai = jv_dict_find(v.u.d, "arguments", 9);
        if (ai < 0) ai = jv_dict_find(v.u.d, "parameters", 10);
        if (ni >= 0 && v.u.d->v[ni].type == JV_STR && v.u.d->v[ni].u.s->len > 0 && v.u.d->v[ni].u.s->len < name_cap) {
            jv args_v = ai >= 0 ? v.u.d->v[ai] : jv_undef();
            if (args_v.type == JV_STR) {
                /* arguments given as a JSON string */
                jv inner;
                err e2 = {0};
                if (jv_parse(a, args_v.u.s->p, args_v.u.s->len, 64, &inner, &e2) == 0) args_v = inner;
            }
            if (args_v.type == JV_UNDEF || args_v.type == JV_NONE) {
                jv_buf_puts(args, "{}");
                rc = 0;
            } else if (args_v.type == JV_DICT) {
                rc = jv_dump(args, args_v, NULL, NULL, NULL, 0, 0, NULL) ? -1 : 0;
            }
            if (rc == 0) memcpy(name, v.u.d->v[ni].u.s->p, v.u.d->v[ni].u.s->len + 1);
        }
    }
    jv_arena_free(a);
    return rc || args->over ? -1 : 0;
}

/* The call's arguments: the parameters collected in d written as one JSON object. */
static int dict_args(jv_dict *d, jv_buf *args) {
    jv obj = {0};
    obj.type = JV_DICT;
    obj.u.d = d;
    return jv_dump(args, obj, NULL, NULL, NULL, 0, 0, NULL) ? -1 : 0;
}

/* <function=NAME>\n<parameter=P>\nVALUE\n</parameter>...</function> */
static int qwen_xml_call(const parse *p, const char *body, size_t n, char *name, size_t name_cap, jv_buf *args) {
    jv_arena *a = jv_arena_new(16 * n + 65536);
    if (!a) return -1;
    int rc = -1;
    jv_dict *d = jv_dict_new(a, 0);
    size_t i = 0;
    while (i < n && is_ws(body[i])) i++;
    if (!d || n - i < 11 || memcmp(body + i, "<function=", 10) != 0) goto done;
    i += 10;
    long gt = find(body + i, n - i, ">");
    if (gt <= 0 || (size_t)gt >= name_cap) goto done;
    for (long k = 0; k < gt; k++)
        if (is_ws(body[i + (size_t)k]) || body[i + (size_t)k] == '<') goto done;
    memcpy(name, body + i, (size_t)gt);
    name[gt] = '\0';
    i += (size_t)gt + 1;
    while (1) {
        while (i < n && is_ws(body[i])) i++;
        if (n - i >= 11 && memcmp(body + i, "</function>", 11) == 0) {
            i += 11;
            break;
        }
        if (n - i < 11 || memcmp(body + i, "<parameter=", 11) != 0) goto done;
        i += 11;
        long pg = find(body + i, n - i, ">");
        if (pg <= 0) goto done;
        const jv_str *key = jv_str_new(a, body + i, (size_t)pg);
        i += (size_t)pg + 1;
        long end = find(body + i, n - i, "</parameter>");
        if (!key || end < 0) goto done;
        const char *val = body + i;
        size_t vl = (size_t)end;
        /* the template writes "\n" + value + "\n" */
        if (vl && val[0] == '\n') { val++; vl--; }
        if (vl && val[vl - 1] == '\n') vl--;
        jv jvv = xml_value(p, a, name, key->p, key->len, val, vl);
        if (jvv.type == JV_UNDEF || jv_dict_set(a, d, key, jvv)) goto done;
        i += (size_t)end + 12;
    }
    while (i < n && is_ws(body[i])) i++;
    if (i != n) goto done;
    rc = dict_args(d, args);
done:
    jv_arena_free(a);
    return rc || args->over ? -1 : 0;
}

/* Emits the collected tool call, or (malformed) its raw text as content. */
static void finish_qwen_tool(parse *p, int closed, parse_sink sink, void *user) {
    char name[256];
    jv_buf args;
    jv_buf_init(&args, p->max_text);
    int ok = (p->fmt == PARSE_QWEN3_CODER ? qwen_xml_call(p, p->tool, p->ntool, name, sizeof name, &args)
                                          : qwen_json_call(p->tool, p->ntool, name, sizeof name, &args)) == 0;
    if (!ok && p->fmt == PARSE_QWEN3_CODER) {
        /* Qwen3-Coder sometimes answers in the JSON form: accept it too */
        jv_buf_free(&args);
        jv_buf_init(&args, p->max_text);
        ok = qwen_json_call(p->tool, p->ntool, name, sizeof name, &args) == 0;
    }
    p->skip_ws = 0;
    if (ok) {
        ev_tool(p, name, args.p ? args.p : "{}", args.p ? args.n : 2, sink, user);
    } else {
        ev_text(p, PARSE_EV_CONTENT, "<tool_call>", 11, sink, user);
        ev_text(p, PARSE_EV_CONTENT, p->tool, p->ntool, sink, user);
        if (closed) ev_text(p, PARSE_EV_CONTENT, "</tool_call>", 12, sink, user);
    }
    jv_buf_free(&args);
    p->ntool = 0;
}

/* Appends to the tool-call body; when it would outgrow max_text the call is
 * given up: what was collected so far goes out as content (prefix first), and
 * the caller continues with s as content. Returns 0, or -1 when given up. */
static int tool_append(parse *p, const char *prefix, const char *s, size_t n, parse_sink sink, void *user) {
    if (n <= p->max_text - p->ntool) {
        memcpy(p->tool + p->ntool, s, n);
        p->ntool += n;
        return 0;
    }
    p->skip_ws = 0;
    if (prefix) ev_text(p, PARSE_EV_CONTENT, prefix, strlen(prefix), sink, user);
    ev_text(p, PARSE_EV_CONTENT, p->tool, p->ntool, sink, user);
    p->ntool = 0;
    return -1;
}

/* ---------------------------------------------------------------- Qwen */

static const char *const q_content_tags[] = {"<think>", "<tool_call>", NULL};
static const char *const q_reason_tags[] = {"</think>", NULL};
static const char *const q_tool_tags[] = {"</tool_call>", NULL};

/* ---------------------------------------------------------------- streamed Qwen calls */

/* The streamed paths decide from a bounded head of the body: a call whose
 * opening is not recognised within this many bytes is collected whole. The
 * bound is a byte position, so the decision does not depend on the split. */
#define PARSE_HEAD_MAX 1024

enum { M_MORE = 0, M_NO, M_JSON, M_XML };

/* Byte i of the body seen so far: the collected part, then pend[0..upto). */
static int body_at(const parse *p, size_t upto, size_t i) {
    if (i >= PARSE_HEAD_MAX) return -2; /* too far: not streamable */
    if (i < p->ntool) return (unsigned char)p->tool[i];
    i -= p->ntool;
    return i < upto ? (unsigned char)p->pend[i] : -1; /* -1: not yet seen */
}

/* Matches literal `lit` at *i: 1 matched, 0 not seen yet, -1 mismatch. */
static int body_lit(const parse *p, size_t upto, size_t *i, const char *lit) {
    for (; *lit; lit++, (*i)++) {
        int c = body_at(p, upto, *i);
        if (c == -1) return 0;
        if (c != (unsigned char)*lit) return -1;
    }
    return 1;
}

static int body_ws(const parse *p, size_t upto, size_t *i) {
    int c;
    while ((c = body_at(p, upto, *i)) >= 0 && is_ws((char)c)) (*i)++;
    return c;
}

/* Recognises the opening of a streamable call in the body so far:
 *   JSON: ws { ws "name" ws : ws "NAME" ws , ws "arguments"|"parameters" ws : ws {
 *         -> M_JSON, *k = index of the arguments' `{`
 *   XML (Qwen3-Coder): ws <function=NAME>  -> M_XML, *k = index after `>`
 * M_MORE while the body could still become one, M_NO once it cannot (e.g.
 * "arguments" before "name", arguments as a JSON string, escapes in NAME). */
static int body_match(parse *p, size_t upto, size_t *k) {
    size_t i = 0;
    int c = body_ws(p, upto, &i);
    if (c == -1) return M_MORE;
    if (c == '<' && p->fmt == PARSE_QWEN3_CODER) {
        int r = body_lit(p, upto, &i, "<function=");
        if (r != 1) return r < 0 ? M_NO : M_MORE;
        size_t n0 = i;
        while (1) {
            c = body_at(p, upto, i);
            if (c == -1) return M_MORE;
            if (c == '>') break;
            if (c < 0 || is_ws((char)c) || c == '<' || i - n0 + 1 >= sizeof p->name) return M_NO;
            i++;
        }
        if (i == n0) return M_NO;
        for (size_t j = n0; j < i; j++) p->name[j - n0] = (char)body_at(p, upto, j);
        p->name[i - n0] = '\0';
        *k = i + 1;
        return M_XML;
    }
    if (c != '{') return M_NO;
    i++;
    body_ws(p, upto, &i);
    int r = body_lit(p, upto, &i, "\"name\"");
    if (r != 1) return r < 0 ? M_NO : M_MORE;
    if ((c = body_ws(p, upto, &i)) != ':') return c == -1 ? M_MORE : M_NO;
    i++;
    if ((c = body_ws(p, upto, &i)) != '"') return c == -1 ? M_MORE : M_NO;
    size_t n0 = ++i;
    while (1) {
        c = body_at(p, upto, i);
        if (c == -1) return M_MORE;
        if (c == '"') break;
        if (c < 0x20 || c == '\\' || i - n0 + 1 >= sizeof p->name) return M_NO; /* escapes: the buffered path decodes them */
        i++;
    }
    if (i == n0) return M_NO;
    size_t n1 = i++;
    if ((c = body_ws(p, upto, &i)) != ',') return c == -1 ? M_MORE : M_NO;
    i++;
    if ((c = body_ws(p, upto, &i)) != '"') return c == -1 ? M_MORE : M_NO;
    c = body_at(p, upto, i + 1);
    if (c == -1) return M_MORE;
    r = body_lit(p, upto, &i, c == 'p' ? "\"parameters\"" : "\"arguments\"");
    if (r != 1) return r < 0 ? M_NO : M_MORE;
    if ((c = body_ws(p, upto, &i)) != ':') return c == -1 ? M_MORE : M_NO;
    i++;
    if ((c = body_ws(p, upto, &i)) != '{') return c == -1 ? M_MORE : M_NO;
    for (size_t j = n0; j < n1; j++) p->name[j - n0] = (char)body_at(p, upto, j);
    p->name[n1 - n0] = '\0';
    *k = i;
    return M_JSON;
}

/* One byte of the arguments value: tracks strings and nesting so that the
 * value's end is known without parsing it. */
static void js_step(parse *p, char c) {
    if (p->js_in_str) {
        if (p->js_esc) p->js_esc = 0;
        else if (c == '\\') p->js_esc = 1;
        else if (c == '"') p->js_in_str = 0;
    } else if (c == '"') p->js_in_str = 1;
    else if (c == '{' || c == '[') p->js_depth++;
    else if ((c == '}' || c == ']') && --p->js_depth <= 0) p->js_done = 1;
}

/* Text after the streamed part of a call (expected: the outer `}` and
 * whitespace) is collected in `tool`; anything more goes out as content. */
static void after_put(parse *p, const char *s, size_t n, parse_sink sink, void *user) {
    if (n <= p->max_text - p->ntool) {
        memcpy(p->tool + p->ntool, s, n);
        p->ntool += n;
        return;
    }
    if (p->js_done == 1) { /* content never comes inside a call: end it first */
        ev_tool_end(p, sink, user);
        p->js_done = 2;
    }
    p->skip_ws = 0;
    ev_text(p, PARSE_EV_CONTENT, p->tool, p->ntool, sink, user);
    ev_text(p, PARSE_EV_CONTENT, s, n, sink, user);
    p->ntool = 0;
}

/* Ends a streamed call; `drop` is a structural byte expected first in what
 * followed it (the JSON body's closing `}`), or 0. */
static void after_flush(parse *p, char drop, parse_sink sink, void *user) {
    const char *b = p->tool;
    size_t n = p->ntool;
    while (n && is_ws(*b)) { b++; n--; }
    if (drop && n && *b == drop) { b++; n--; }
    while (n && is_ws(*b)) { b++; n--; }
    while (n && is_ws(b[n - 1])) n--;
    p->skip_ws = 0;
    ev_text(p, PARSE_EV_CONTENT, b, n, sink, user);
    p->ntool = 0;
}

/* Closes the arguments object of an XML call and ends the call. */
static void xml_close(parse *p, parse_sink sink, void *user) {
    if (p->xml_state == 1) return;
    if (p->xml_nparams) ev_tool_args(p, "}", 1, sink, user);
    else ev_tool_args(p, "{}", 2, sink, user);
    ev_tool_end(p, sink, user);
    p->xml_state = 1;
}

/* One `<parameter=KEY>VALUE</parameter>` as an arguments delta:
 * `{"KEY": VALUE` first, `, "KEY": VALUE` after; VALUE is JSON when it parses,
 * else a JSON string. Returns 0, or -1 (out of memory: the call is malformed). */
static int xml_param(parse *p, const char *key, size_t kl, const char *val, size_t vl, parse_sink sink, void *user) {
    /* the template writes "\n" + value + "\n" */
    if (vl && val[0] == '\n') { val++; vl--; }
    if (vl && val[vl - 1] == '\n') vl--;
    jv_arena *a = jv_arena_new(16 * (vl + kl) + 65536);
    if (!a) return -1;
    jv_buf b;
    jv_buf_init(&b, p->max_text);
    jv_buf_puts(&b, p->xml_nparams ? ", " : "{");
    int rc = -1;
    const jv_str *ks = jv_str_new(a, key, kl);
    jv v = xml_value(p, a, p->name, key, kl, val, vl);
    if (ks && v.type != JV_UNDEF && !jv_dump(&b, jv_strv(ks), NULL, NULL, NULL, 0, 0, NULL)) {
        jv_buf_puts(&b, ": ");
        if (!jv_dump(&b, v, NULL, NULL, NULL, 0, 0, NULL) && !b.over) rc = 0;
    }
    if (rc == 0) {
        ev_tool_args(p, b.p, b.n, sink, user);
        p->xml_nparams++;
    }
    jv_buf_free(&b);
    jv_arena_free(a);
    return rc;
}

/* Emits every complete parameter collected in `tool` and drops it from there;
 * stops at an incomplete one, at </function> (closing the call) or at text
 * that does not belong there (xml_state 2: it stays in `tool` for content). */
static void xml_steps(parse *p, parse_sink sink, void *user) {
    while (p->xml_state == 0) {
        size_t i = 0;
        while (i < p->ntool && is_ws(p->tool[i])) i++;
        const char *r = p->tool + i;
        size_t rl = p->ntool - i, used = 0;
        if (!rl) return;
        if (rl >= 11 && !memcmp(r, "</function>", 11)) {
            xml_close(p, sink, user);
            used = i + 11;
        } else if (rl >= 11 && !memcmp(r, "<parameter=", 11)) {
            long gt = find(r + 11, rl - 11, ">");
            if (gt < 0) return;
            const char *v = r + 11 + gt + 1;
            long end = find(v, rl - 11 - (size_t)gt - 1, "</parameter>");
            if (gt == 0) {
                p->xml_state = 2;
                return;
            }
            if (end < 0) return;
            if (xml_param(p, r + 11, (size_t)gt, v, (size_t)end, sink, user)) {
                p->xml_state = 2;
                return;
            }
            used = (size_t)(v + end + 12 - p->tool);
        } else {
            if ((rl < 11 && !memcmp(r, "</function>", rl)) || (rl < 11 && !memcmp(r, "<parameter=", rl))) return;
            p->xml_state = 2;
            return;
        }
        memmove(p->tool, p->tool + used, p->ntool - used);
        p->ntool -= used;
    }
}

static void run_qwen(parse *p, int final, parse_sink sink, void *user) {
    while (1) {
        if (p->mode == Q_CONTENT) {
            long t = find(p->pend, p->npend, "<think>");
            long c = find(p->pend, p->npend, "<tool_call>");
            long at = t >= 0 && (c < 0 || t < c) ? t : c;
            if (at < 0) {
                emit_decided(p, PARSE_EV_CONTENT, q_content_tags, 1, final, sink, user);
                return;
            }
            size_t n = (size_t)at;
            while (n && is_ws(p->pend[n - 1])) n--;
            ev_text(p, PARSE_EV_CONTENT, p->pend, n, sink, user);
            if (at == t) {
                consume(p, (size_t)at + 7);
                p->mode = Q_REASON;
            } else {
                consume(p, (size_t)at + 11);
                p->mode = Q_TOOL;
                p->ntool = 0;
                p->q_try = 1;
            }
            p->skip_ws = 1;
        } else if (p->mode == Q_REASON) {
            long at = find(p->pend, p->npend, "</think>");
            if (at < 0) {
                emit_decided(p, PARSE_EV_REASONING, q_reason_tags, 1, final, sink, user);
                return;
            }
            size_t n = (size_t)at;
            while (n && is_ws(p->pend[n - 1])) n--;
            ev_text(p, PARSE_EV_REASONING, p->pend, n, sink, user);
            consume(p, (size_t)at + 8);
            p->mode = Q_CONTENT;
            p->skip_ws = 1;
        } else if (p->mode == Q_TOOL) {
            long at = find(p->pend, p->npend, "</tool_call>");
            size_t upto = at >= 0 ? (size_t)at : p->npend - (final ? 0 : partial_tag(p->pend, p->npend, q_tool_tags));
            if (p->q_try) {
                size_t k = 0;
                int m = body_match(p, upto, &k);
                if (m == M_JSON || m == M_XML) {
                    /* k >= ntool: the previous look saw no complete opening */
                    consume(p, k - p->ntool);
                    p->ntool = 0;
                    p->skip_ws = 0;
                    ev_tool_start(p, p->name, sink, user);
                    p->mode = m == M_JSON ? Q_ARGS : Q_XML;
                    p->js_depth = p->js_in_str = p->js_esc = p->js_done = 0;
                    p->xml_nparams = p->xml_state = 0;
                    continue;
                }
                if (m == M_NO) p->q_try = 0;
            }
            if (tool_append(p, "<tool_call>", p->pend, upto, sink, user)) {
                p->mode = Q_CONTENT; /* too long to be a call: the rest is content */
                continue;
            }
            consume(p, upto);
            if (at < 0) {
                if (final) {
                    /* EOS inside a call: accept it if the body is complete */
                    finish_qwen_tool(p, 0, sink, user);
                    p->mode = Q_CONTENT;
                }
                return;
            }
            consume(p, 12);
            finish_qwen_tool(p, 1, sink, user);
            p->mode = Q_CONTENT;
            p->skip_ws = 1;
        } else if (p->mode == Q_ARGS) {
            /* the arguments value streams as it comes; the value's end (found
             * by js_step) and what follows it are never arguments */
            long at = find(p->pend, p->npend, "</tool_call>");
            size_t upto = at >= 0 ? (size_t)at : p->npend - (final ? 0 : partial_tag(p->pend, p->npend, q_tool_tags));
            size_t i = 0;
            if (!p->js_done) {
                size_t lim = at < 0 && !final ? upto - utf8_tail(p->pend, upto) : upto;
                while (i < lim && !p->js_done) js_step(p, p->pend[i++]);
                ev_tool_args(p, p->pend, i, sink, user);
                if (!p->js_done) upto = i; /* an incomplete UTF-8 tail waits */
            }
            if (upto > i) after_put(p, p->pend + i, upto - i, sink, user);
            consume(p, upto);
            if (at < 0 && !final) return;
            if (at >= 0) consume(p, 12);
            if (p->js_done != 2) ev_tool_end(p, sink, user);
            after_flush(p, '}', sink, user);
            p->mode = Q_CONTENT;
            p->skip_ws = at >= 0;
            if (at < 0) return;
        } else { /* Q_XML: parameters go out one by one as they complete */
            long at = find(p->pend, p->npend, "</tool_call>");
            size_t upto = at >= 0 ? (size_t)at : p->npend - (final ? 0 : partial_tag(p->pend, p->npend, q_tool_tags));
            if (upto > p->max_text - p->ntool) {
                /* a parameter larger than the buffer: close the call with what
                 * is valid; the collected text and the rest are content */
                xml_close(p, sink, user);
                after_flush(p, 0, sink, user);
                p->mode = Q_CONTENT;
                continue;
            }
            memcpy(p->tool + p->ntool, p->pend, upto);
            p->ntool += upto;
            consume(p, upto);
            xml_steps(p, sink, user);
            if (at < 0 && !final) return;
            if (at >= 0) consume(p, 12);
            xml_close(p, sink, user);
            after_flush(p, 0, sink, user);
            p->mode = Q_CONTENT;
            p->skip_ws = at >= 0;
            if (at < 0) return;
        }
    }
}

/* ---------------------------------------------------------------- harmony */

static const char *const h_start_tags[] = {"<|start|>", "<|channel|>", NULL};
static const char *const h_body_tags[] = {"<|end|>", "<|call|>", "<|return|>", "<|start|>", "<|channel|>", NULL};

/* Reads channel and recipient from a header like
 * "<|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json". */
static void h_parse_header(parse *p) {
    p->channel = H_CH_OTHER;
    p->recipient[0] = '\0';
    const char *h = p->hdr;
    size_t n = p->nhdr;
    long ch = find(h, n, "<|channel|>");
    if (ch >= 0) {
        const char *c = h + ch + 11;
        size_t cl = 0;
        while ((size_t)(c - h) + cl < n && !is_ws(c[cl]) && c[cl] != '<') cl++;
        if (cl == 8 && !memcmp(c, "analysis", 8)) p->channel = H_CH_ANALYSIS;
        else if (cl == 5 && !memcmp(c, "final", 5)) p->channel = H_CH_FINAL;
        else if (cl == 10 && !memcmp(c, "commentary", 10)) p->channel = H_CH_OTHER;
    }
    long to = find(h, n, "to=functions.");
    if (to >= 0) {
        const char *r = h + to + 13;
        size_t rl = 0;
        while ((size_t)(r - h) + rl < n && !is_ws(r[rl]) && r[rl] != '<' && rl + 1 < sizeof p->recipient) rl++;
        if (rl) {
            memcpy(p->recipient, r, rl);
            p->recipient[rl] = '\0';
            p->channel = H_CH_TOOL;
        }
    }
}

/* Ends a message; a tool call's arguments are complete. Its body went out as
 * it came, valid JSON or not: OpenAI passes model-made arguments through too. */
static void h_finish_message(parse *p, parse_sink sink, void *user) {
    if (p->channel != H_CH_TOOL) return;
    ev_tool_end(p, sink, user);
    p->channel = H_CH_FINAL; /* a forced flush mid-message continues as content */
}

static void run_harmony(parse *p, int final, parse_sink sink, void *user) {
    while (1) {
        if (p->mode == H_START) {
            /* a header starts with <|start|> or <|channel|>; anything else is plain content */
            if (p->npend == 0) return;
            int is_hdr = 0, undecided = 0;
            for (int t = 0; h_start_tags[t]; t++) {
                size_t tl = strlen(h_start_tags[t]);
                if (p->npend >= tl ? !memcmp(p->pend, h_start_tags[t], tl) : !memcmp(p->pend, h_start_tags[t], p->npend)) {
                    if (p->npend >= tl) is_hdr = 1;
                    else undecided = 1;
                }
            }
            /* The generation prompt ends with "<|start|>assistant", so a completion
             * may open with the rest of that header: the recipient first
             * (" to=functions.f<|channel|>commentary ..."), as openai-harmony
             * renders tool calls. Only at the very start of the stream. */
            if (!p->h_started && !is_hdr) {
                static const char *const lead[] = {" to=", "to=", NULL};
                for (int t = 0; lead[t]; t++) {
                    size_t tl = strlen(lead[t]);
                    size_t k = p->npend < tl ? p->npend : tl;
                    if (!memcmp(p->pend, lead[t], k)) {
                        if (p->npend >= tl) is_hdr = 1;
                        else undecided = 1;
                    }
                }
            }
            if (is_hdr) {
                p->mode = H_HEADER;
                p->nhdr = 0;
                continue;
            }
            if (undecided && !final) return;
            /* text outside any message: content up to the next header */
            long at = -1;
            for (int t = 0; h_start_tags[t]; t++) {
                long f = find(p->pend, p->npend, h_start_tags[t]);
                if (f >= 0 && (at < 0 || f < at)) at = f;
            }
            if (at < 0) {
                emit_decided(p, PARSE_EV_CONTENT, h_start_tags, 0, final, sink, user);
                return;
            }
            ev_text(p, PARSE_EV_CONTENT, p->pend, (size_t)at, sink, user);
            consume(p, (size_t)at);
        } else if (p->mode == H_HEADER) {
            /* A header is at most PARSE_HDR_MAX bytes before <|message|>; the
             * limit is a byte position, so the decision does not depend on
             * how the input was split. */
            static const char *const msg_tag[] = {"<|message|>", NULL};
            long at = find(p->pend, p->npend, "<|message|>");
            if (at >= 0 && p->nhdr + (size_t)at <= sizeof p->hdr) {
                memcpy(p->hdr + p->nhdr, p->pend, (size_t)at);
                p->nhdr += (size_t)at;
                consume(p, (size_t)at + 11);
                h_parse_header(p);
                p->mode = H_BODY;
                p->ntool = 0;
                if (p->channel == H_CH_TOOL) {
                    ev_tool_start(p, p->recipient, sink, user);
                    p->h_lead = 1;
                }
                continue;
            }
            size_t room = sizeof p->hdr - p->nhdr;
            size_t avail = final ? p->npend : p->npend - partial_tag(p->pend, p->npend, msg_tag);
            size_t take = avail < room ? avail : room;
            memcpy(p->hdr + p->nhdr, p->pend, take);
            p->nhdr += take;
            consume(p, take);
            int full = p->nhdr == sizeof p->hdr && p->npend > 0;
            if (full && !final) {
                size_t k = p->npend < 11 ? p->npend : 11;
                if (memcmp(p->pend, "<|message|>", k) == 0) return; /* may still complete */
            }
            if (full || final) {
                /* not a header after all: it is content */
                ev_text(p, PARSE_EV_CONTENT, p->hdr, p->nhdr, sink, user);
                p->nhdr = 0;
                p->mode = H_BODY;
                p->channel = H_CH_FINAL;
                if (full) continue;
            }
            return;
        } else { /* H_BODY */
            long at = -1;
            const char *which = NULL;
            for (int t = 0; h_body_tags[t]; t++) {
                long f = find(p->pend, p->npend, h_body_tags[t]);
                if (f >= 0 && (at < 0 || f < at)) { at = f; which = h_body_tags[t]; }
            }
            size_t upto = at >= 0 ? (size_t)at : p->npend;
            if (at < 0 && !final) {
                upto -= partial_tag(p->pend, upto, h_body_tags);
                upto -= utf8_tail(p->pend, upto);
            }
            if (p->channel == H_CH_TOOL) {
                /* arguments stream as they come, less the body's outer
                 * whitespace: leading dropped, trailing held until text follows */
                size_t s0 = 0, e0 = upto;
                if (p->h_lead)
                    while (s0 < e0 && is_ws(p->pend[s0])) s0++;
                while (e0 > s0 && is_ws(p->pend[e0 - 1])) e0--;
                if (e0 > s0) {
                    ev_tool_args(p, p->pend + s0, e0 - s0, sink, user);
                    p->h_lead = 0;
                }
                consume(p, at < 0 && !final ? (e0 > s0 ? e0 : s0) : upto);
            } else {
                ev_text(p, p->channel == H_CH_ANALYSIS ? PARSE_EV_REASONING : PARSE_EV_CONTENT, p->pend, upto, sink, user);
                consume(p, upto);
            }
            if (at < 0) {
                if (final) h_finish_message(p, sink, user);
                return;
            }
            h_finish_message(p, sink, user);
            /* <|start|> and <|channel|> begin the next header; the end tags are dropped */
            if (!strcmp(which, "<|start|>") || !strcmp(which, "<|channel|>")) {
                p->mode = H_HEADER;
                p->nhdr = 0;
            } else {
                consume(p, strlen(which));
                p->mode = H_START;
            }
        }
    }
}


/* ---------------------------------------------------------------- DeepSeek */

/* The markers of one generation's tool calls. Each list's order matters:
 * content: <think>, block opener, call opener; reason: </think> first;
 * block: call opener, block closer; call: call closer first. */
typedef struct ds_syntax {
    const char *const *content_tags; /* what ends content */
    const char *const *reason_tags;  /* what ends reasoning ([1], if any, opens a block) */
    const char *const *block_tags;   /* what a block holds between calls */
    const char *const *call_tags;    /* what ends (or cuts short) a call */
    const char *call_begin, *call_end;
    int (*call)(const char *body, size_t n, char *name, size_t name_cap, jv_buf *args);
} ds_syntax;

static const char *const ds_content_tags[] = {"<think>", PARSE_DS_CALLS_BEGIN, PARSE_DS_CALL_BEGIN, NULL};
static const char *const ds_block_tags[] = {PARSE_DS_CALL_BEGIN, PARSE_DS_CALLS_END, NULL};
static const char *const ds_call_tags[] = {PARSE_DS_CALL_END, PARSE_DS_CALL_BEGIN, PARSE_DS_CALLS_END, NULL};
static const char *const dsml_content_tags[] = {"<think>", PARSE_DSML_CALLS_BEGIN, PARSE_DSML_INVOKE, NULL};
static const char *const dsml_reason_tags[] = {"</think>", PARSE_DSML_CALLS_BEGIN, NULL};
static const char *const dsml_block_tags[] = {PARSE_DSML_INVOKE, PARSE_DSML_CALLS_END, NULL};
static const char *const dsml_call_tags[] = {PARSE_DSML_INVOKE_END, PARSE_DSML_INVOKE, PARSE_DSML_CALLS_END, NULL};

/* Arguments text -> compact JSON object in args: an object, or a JSON string
 * that holds one (R1-Distill's template writes `arguments | tojson` of the
 * string); empty text is {}. Returns 0, or -1 when it is neither. */
static int ds_args(const char *s, size_t n, jv_buf *args) {
    while (n && is_ws(*s)) { s++; n--; }
    while (n && is_ws(s[n - 1])) n--;
    if (!n) {
        jv_buf_puts(args, "{}");
        return args->over ? -1 : 0;
    }
    jv_arena *a = jv_arena_new(16 * n + 65536);
    if (!a) return -1;
    int rc = -1;
    jv v;
    err e = {0};
    if (jv_parse(a, s, n, 64, &v, &e) == 0) {
        if (v.type == JV_STR) {
            jv inner;
            err e2 = {0};
            if (jv_parse(a, v.u.s->p, v.u.s->len, 64, &inner, &e2) == 0) v = inner;
        }
        if (v.type == JV_DICT) rc = jv_dump(args, v, NULL, NULL, NULL, 0, 0, NULL) ? -1 : 0;
    }
    jv_arena_free(a);
    return rc || args->over ? -1 : 0;
}

/* A function name: 1..name_cap-1 bytes, no whitespace, no markup. */
static int ds_name(const char *s, size_t n, char *name, size_t name_cap) {
    while (n && is_ws(*s)) { s++; n--; }
    while (n && is_ws(s[n - 1])) n--;
    if (!n || n >= name_cap) return -1;
    for (size_t i = 0; i < n; i++)
        if (is_ws(s[i]) || s[i] == '<' || s[i] == '>' || s[i] == '`') return -1;
    memcpy(name, s, n);
    name[n] = '\0';
    return 0;
}

/* Strips a ```json (or ```) fence opening s[0..*n) and the ``` closing it, if
 * any (a model may leave the closing one out). */
static const char *ds_unfence(const char *s, size_t *n) {
    size_t l = *n;
    while (l && is_ws(*s)) { s++; l--; }
    while (l && is_ws(s[l - 1])) l--;
    if (l >= 3 && !memcmp(s, "```", 3)) {
        s += 3;
        l -= 3;
        if (l >= 4 && !memcmp(s, "json", 4)) { s += 4; l -= 4; }
        if (l >= 3 && !memcmp(s + l - 3, "```", 3)) l -= 3;
    }
    *n = l;
    return s;
}

/* One call's body (between <｜tool▁call▁begin｜> and <｜tool▁call▁end｜>):
 *   V3 / R1:  TYPE<｜tool▁sep｜>NAME\n```json\nARGS\n```   (TYPE is "function")
 *   V3.1 on:  NAME<｜tool▁sep｜>ARGS                      (ARGS possibly fenced)
 * Returns 0 with name and args set when it reads as either. */
static int ds_call(const char *body, size_t n, char *name, size_t name_cap, jv_buf *args) {
    long sep = find(body, n, PARSE_DS_SEP);
    if (sep < 0) return -1;
    const size_t sl = strlen(PARSE_DS_SEP);
    const char *head = body, *rest = body + sep + sl;
    size_t hl = (size_t)sep, rl = n - (size_t)sep - sl;
    if (find(rest, rl, PARSE_DS_SEP) >= 0) return -1;
    while (hl && is_ws(*head)) { head++; hl--; }
    while (hl && is_ws(head[hl - 1])) hl--;
    /* V3 / R1: the head is the call's type, the name is the first line after
     * the separator; else (V3.1) a function that may be named "function" */
    if (hl == 8 && !memcmp(head, "function", 8)) {
        long nl = find(rest, rl, "\n");
        long fence = find(rest, rl, "```");
        if (nl >= 0 && (fence < 0 || nl < fence)) {
            size_t al = rl - (size_t)nl - 1;
            const char *a = ds_unfence(rest + nl + 1, &al);
            if (ds_name(rest, (size_t)nl, name, name_cap)) return -1;
            return ds_args(a, al, args);
        }
    }
    size_t al = rl;
    const char *a = ds_unfence(rest, &al);
    if (ds_name(head, hl, name, name_cap)) return -1;
    return ds_args(a, al, args);
}

/* V3.2: `"TEXT"` after optional whitespace at *i, TEXT without `"`, `<`, `>`
 * or control bytes (1..cap-1 bytes) -> out. Returns 0, or -1. */
static int dsml_quoted(const char *s, size_t n, size_t *i, char *out, size_t cap) {
    while (*i < n && is_ws(s[*i])) (*i)++;
    if (*i >= n || s[*i] != '"') return -1;
    size_t b = ++*i;
    while (*i < n && s[*i] != '"') {
        unsigned char c = (unsigned char)s[*i];
        if (c < 0x20 || c == '<' || c == '>') return -1;
        (*i)++;
    }
    if (*i >= n || *i == b || *i - b >= cap) return -1;
    memcpy(out, s + b, *i - b);
    out[*i - b] = '\0';
    (*i)++;
    return 0;
}

/* V3.2: whitespace, then literal lit at *i (advanced past it). */
static int dsml_lit(const char *s, size_t n, size_t *i, const char *lit) {
    size_t l = strlen(lit);
    while (*i < n && is_ws(s[*i])) (*i)++;
    if (n - *i < l || memcmp(s + *i, lit, l)) return -1;
    *i += l;
    return 0;
}

/* One V3.2 call's body (after <｜DSML｜invoke, up to </｜DSML｜invoke>):
 *    name="NAME">\n
 *   <｜DSML｜parameter name="K" string="true|false">VALUE</｜DSML｜parameter>\n ...
 * Returns 0 with name and the arguments object set when it reads. */
static int dsml_call(const char *body, size_t n, char *name, size_t name_cap, jv_buf *args) {
    size_t i = 0;
    if (n == 0 || !is_ws(body[0])) return -1; /* "<｜DSML｜invokeX" is no call */
    if (dsml_lit(body, n, &i, "name=") || dsml_quoted(body, n, &i, name, name_cap) || dsml_lit(body, n, &i, ">"))
        return -1;
    for (size_t k = 0; name[k]; k++)
        if (is_ws(name[k]) || name[k] == '`') return -1;
    jv_arena *a = jv_arena_new(16 * n + 65536);
    if (!a) return -1;
    int rc = -1;
    jv_dict *d = jv_dict_new(a, 0);
    if (!d) goto done;
    const size_t pl = strlen(PARSE_DSML_PARAM), el = strlen(PARSE_DSML_PARAM_END);
    while (1) {
        while (i < n && is_ws(body[i])) i++;
        if (i == n) break;
        if (n - i < pl || memcmp(body + i, PARSE_DSML_PARAM, pl)) goto done;
        i += pl;
        if (i >= n || !is_ws(body[i])) goto done;
        char key[256];
        if (dsml_lit(body, n, &i, "name=") || dsml_quoted(body, n, &i, key, sizeof key)) goto done;
        int kind = -1; /* 1 string="true", 0 string="false", -1 not said */
        char sv[8];
        size_t j = i;
        if (dsml_lit(body, n, &j, "string=") == 0) {
            if (dsml_quoted(body, n, &j, sv, sizeof sv)) goto done;
            if (!strcmp(sv, "true")) kind = 1;
            else if (!strcmp(sv, "false")) kind = 0;
            else goto done;
            i = j;
        }
        if (dsml_lit(body, n, &i, ">")) goto done;
        long end = find(body + i, n - i, PARSE_DSML_PARAM_END);
        if (end < 0) goto done;
        const char *val = body + i;
        size_t vl = (size_t)end;
        jv v;
        err e = {0};
        const jv_str *ks = jv_str_new(a, key, strlen(key));
        if (!ks) goto done;
        if (kind == 1 || (kind < 0 && jv_parse(a, val, vl, 64, &v, &e) != 0)) {
            const jv_str *s = jv_str_new(a, val, vl); /* as written: the template does not escape */
            if (!s) goto done;
            v = jv_strv(s);
        } else if (kind == 0 && jv_parse(a, val, vl, 64, &v, &e) != 0) {
            goto done; /* string="false" must be JSON */
        }
        if (jv_dict_set(a, d, ks, v)) goto done;
        i += (size_t)end + el;
    }
    rc = dict_args(d, args);
done:
    jv_arena_free(a);
    return rc || args->over ? -1 : 0;
}

static const ds_syntax ds_v3 = {ds_content_tags, q_reason_tags, ds_block_tags, ds_call_tags,
                                PARSE_DS_CALL_BEGIN, PARSE_DS_CALL_END, ds_call};
static const ds_syntax ds_v32 = {dsml_content_tags, dsml_reason_tags, dsml_block_tags, dsml_call_tags,
                                 PARSE_DSML_INVOKE, PARSE_DSML_INVOKE_END, dsml_call};

/* Emits the collected call, or (malformed) its raw text as content. */
static void ds_finish_call(parse *p, const ds_syntax *sx, int closed, parse_sink sink, void *user) {
    char name[256];
    jv_buf args;
    jv_buf_init(&args, p->max_text);
    int ok = sx->call(p->tool, p->ntool, name, sizeof name, &args) == 0;
    p->skip_ws = 0;
    if (ok) {
        ev_tool(p, name, args.p ? args.p : "{}", args.p ? args.n : 2, sink, user);
    } else {
        ev_text(p, PARSE_EV_CONTENT, sx->call_begin, strlen(sx->call_begin), sink, user);
        ev_text(p, PARSE_EV_CONTENT, p->tool, p->ntool, sink, user);
        if (closed) ev_text(p, PARSE_EV_CONTENT, sx->call_end, strlen(sx->call_end), sink, user);
    }
    jv_buf_free(&args);
    p->ntool = 0;
}

/* Earliest of tags in s[0..n): its offset (or -1) and which. */
static long find_first(const char *s, size_t n, const char *const *tags, int *which) {
    long at = -1;
    *which = -1;
    for (int t = 0; tags[t]; t++) {
        long f = find(s, n, tags[t]);
        if (f >= 0 && (at < 0 || f < at)) { at = f; *which = t; }
    }
    return at;
}

/* Whether s[0..n) (n shorter than the tag) is a proper prefix of one of tags. */
static int starts_partial(const char *s, size_t n, const char *const *tags) {
    for (int t = 0; tags[t]; t++)
        if (n < strlen(tags[t]) && !memcmp(s, tags[t], n)) return 1;
    return 0;
}

static void run_deepseek(parse *p, const ds_syntax *sx, int final, parse_sink sink, void *user) {
    while (1) {
        if (p->mode == Q_CONTENT) {
            int w;
            long at = find_first(p->pend, p->npend, sx->content_tags, &w);
            if (at < 0) {
                emit_decided(p, PARSE_EV_CONTENT, sx->content_tags, 1, final, sink, user);
                return;
            }
            size_t n = (size_t)at;
            while (n && is_ws(p->pend[n - 1])) n--;
            ev_text(p, PARSE_EV_CONTENT, p->pend, n, sink, user);
            consume(p, (size_t)at + strlen(sx->content_tags[w]));
            p->mode = w == 0 ? Q_REASON : w == 1 ? D_BLOCK : D_CALL;
            p->ntool = 0;
            p->skip_ws = 1;
        } else if (p->mode == Q_REASON) {
            int w;
            long at = find_first(p->pend, p->npend, sx->reason_tags, &w);
            if (at < 0) {
                emit_decided(p, PARSE_EV_REASONING, sx->reason_tags, 1, final, sink, user);
                return;
            }
            size_t n = (size_t)at;
            while (n && is_ws(p->pend[n - 1])) n--;
            ev_text(p, PARSE_EV_REASONING, p->pend, n, sink, user);
            consume(p, (size_t)at + strlen(sx->reason_tags[w]));
            p->mode = w == 0 ? Q_CONTENT : D_BLOCK; /* a block opener ends unclosed reasoning */
            p->ntool = 0;
            p->skip_ws = 1;
        } else if (p->mode == D_BLOCK) {
            /* whitespace is dropped before a marker; before other text it is
             * part of that text (decided by what follows, not by the split) */
            size_t ws = 0;
            while (ws < p->npend && is_ws(p->pend[ws])) ws++;
            if (ws == p->npend) {
                if (final) consume(p, ws);
                return;
            }
            int w;
            long at = find_first(p->pend + ws, p->npend - ws, sx->block_tags, &w);
            if (at == 0) {
                consume(p, ws + strlen(sx->block_tags[w]));
                p->mode = w == 0 ? D_CALL : Q_CONTENT;
                p->ntool = 0;
                p->skip_ws = 1;
                continue;
            }
            if (!final && starts_partial(p->pend + ws, p->npend - ws, sx->block_tags)) return;
            if (at >= 0) at += (long)ws;
            /* text in the block that is no call: content, up to the next marker */
            p->skip_ws = 0;
            if (at < 0) {
                emit_decided(p, PARSE_EV_CONTENT, sx->block_tags, 1, final, sink, user);
                return;
            }
            size_t n = (size_t)at;
            while (n && is_ws(p->pend[n - 1])) n--;
            ev_text(p, PARSE_EV_CONTENT, p->pend, n, sink, user);
            consume(p, (size_t)at);
        } else { /* D_CALL */
            int w;
            long at = find_first(p->pend, p->npend, sx->call_tags, &w);
            size_t upto = at >= 0 ? (size_t)at : p->npend - (final ? 0 : partial_tag(p->pend, p->npend, sx->call_tags));
            if (tool_append(p, sx->call_begin, p->pend, upto, sink, user)) {
                p->mode = Q_CONTENT; /* too long to be a call: the rest is content */
                continue;
            }
            consume(p, upto);
            if (at < 0) {
                if (final) {
                    /* the output ended inside a call: read it as it stands */
                    ds_finish_call(p, sx, 0, sink, user);
                    p->mode = Q_CONTENT;
                }
                return;
            }
            if (w == 0) {
                consume(p, strlen(sx->call_end));
                ds_finish_call(p, sx, 1, sink, user);
            } else {
                ds_finish_call(p, sx, 0, sink, user); /* the next marker cut it short */
            }
            p->mode = D_BLOCK;
        }
    }
}

/* ---------------------------------------------------------------- API */

static void run(parse *p, int final, parse_sink sink, void *user) {
    if (p->fmt == PARSE_HARMONY) run_harmony(p, final, sink, user);
    else if (p->fmt == PARSE_QWEN3 || p->fmt == PARSE_QWEN3_CODER) run_qwen(p, final, sink, user);
    else if (p->fmt == PARSE_DEEPSEEK || p->fmt == PARSE_DEEPSEEK_R1) run_deepseek(p, &ds_v3, final, sink, user);
    else if (p->fmt == PARSE_DEEPSEEK_V32) run_deepseek(p, &ds_v32, final, sink, user);
    else emit_decided(p, PARSE_EV_CONTENT, (const char *const[]){NULL}, 0, final, sink, user);
}

void parse_feed(parse *p, const char *text, size_t len, parse_sink sink, void *user) {
    while (len) {
        size_t room = p->max_text - p->npend;
        size_t take = len < room ? len : room;
        memcpy(p->pend + p->npend, text, take);
        p->npend += take;
        text += take;
        len -= take;
        run(p, 0, sink, user);
        if (p->npend == p->max_text) {
            /* nothing could be decided in a full buffer (a pathological
             * prefix run): give the bytes up as they are */
            run(p, 1, sink, user);
        }
    }
}

void parse_finish(parse *p, parse_sink sink, void *user) {
    run(p, 1, sink, user);
    if (p->mode == Q_TOOL || p->mode == D_CALL) p->mode = Q_CONTENT;
}

parse_format parse_detect(const char *chat_template, size_t len, unsigned vocab) {
    if (vocab & PARSE_VOCAB_HARMONY) return PARSE_HARMONY;
    if (chat_template && len) {
        if (find(chat_template, len, "<|channel|>") >= 0) return PARSE_HARMONY;
        /* V3.2 builds its markers from a variable ('｜DSML｜'), so they are
         * not spelled whole in the template */
        if (find(chat_template, len, PARSE_DSML) >= 0 && find(chat_template, len, "function_calls") >= 0)
            return PARSE_DEEPSEEK_V32;
        /* DeepSeek's tool-call markers; V3 / R1 templates fence the arguments in ```json */
        if (find(chat_template, len, PARSE_DS_CALL_BEGIN) >= 0 || find(chat_template, len, PARSE_DS_CALLS_BEGIN) >= 0) {
            long sep = find(chat_template, len, PARSE_DS_SEP);
            return sep >= 0 && find(chat_template + sep, len - (size_t)sep, "```json") >= 0 ? PARSE_DEEPSEEK_R1
                                                                                             : PARSE_DEEPSEEK;
        }
        if (find(chat_template, len, "<function=") >= 0 && find(chat_template, len, "<parameter=") >= 0)
            return PARSE_QWEN3_CODER;
        if (find(chat_template, len, "<tool_call>") >= 0) return PARSE_QWEN3;
    }
    /* a DeepSeek vocabulary whose template does not show the call syntax
     * (V3.2 and later templates, or none at all) still reasons in <think> */
    if (vocab & PARSE_VOCAB_DEEPSEEK) return PARSE_DEEPSEEK;
    if (chat_template && len) {
        /* "</think>" alone: templates that only strip the reasoning from history
         * (DeepSeek-R1-Distill revisions), whose models still write <think> blocks */
        if (find(chat_template, len, "<think>") >= 0 || find(chat_template, len, "</think>") >= 0) return PARSE_QWEN3;
    }
    return PARSE_PLAIN;
}
