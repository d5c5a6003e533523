/* config.c — the INI file, read by its own small line parser, every key checked.
 *
 * The grammar (etc/sparkd.ini says the same to its readers): one item per line;
 * leading and trailing blanks are ignored; an empty line or one starting with ';'
 * or '#' is a comment; "[name]" opens a section (text after the ']' is ignored);
 * "key = value" sets a key, where a ';' preceded by a blank ends the value (an
 * inline comment). Anything else is a syntax error. A UTF-8 BOM at the start is
 * skipped; a NUL byte, a line over 190 bytes or a file over 1 MiB is refused. */
#include "config.h"
#include "sha256.h"

#include <errno.h>
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

void config_defaults(config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->listen, sizeof c->listen, "unix:/run/sparkd/sparkd.sock");
    c->workers = CONFIG_AUTO;
    c->threads = 0;
    sampler_default_params(&c->sp);
    c->sp.temperature = 1.0f;
    snprintf(c->device, sizeof c->device, "cpu");
    snprintf(c->output_format, sizeof c->output_format, "auto");
    c->max_seqs = 4;
    c->max_batched_tokens = 256;
    c->prefix_cache = 1;
    c->max_body_bytes = 1 << 20;
    c->max_queue = CONFIG_AUTO;
    c->max_tokens = 4096;
    c->max_stop = 8;
    c->max_stop_len = 256;
    c->max_tools_bytes = 64 << 10;
    c->max_top_logprobs = 20;
    c->max_top_k = 0;
    c->keepalive_ms = 10000;
    c->drain_s = 30;
    c->retry_after_s = 1;
    c->log_level = 1;
    c->log_requests = 1;
    c->parallel.size = 1;
    c->parallel.connect_timeout_s = 300;
    c->parallel.step_timeout_s = 30;
}

typedef struct load_ctx {
    config *c;
    char dir[CONFIG_PATH_MAX];
    int lineno;       /* line being parsed (1-based) */
    int fail_line;    /* line of the first failure */
    err *e;
    int failed;
} load_ctx;

static int fail(load_ctx *x, const char *fmt, const char *a, const char *b) {
    if (!x->failed) {
        x->failed = 1;
        x->fail_line = x->lineno;
        char msg[256];
        snprintf(msg, sizeof msg, fmt, a, b);
        x->e->code = ERR_FORMAT;
        snprintf(x->e->msg, sizeof x->e->msg, "%s", msg);
    }
    return 0;
}

static int get_long(load_ctx *x, const char *key, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end) return fail(x, "%s: '%s' is not an integer", key, v);
    if (n < lo || n > hi) {
        char r[96];
        snprintf(r, sizeof r, "%s (range %ld..%ld)", v, lo, hi);
        return fail(x, "%s: %s is out of range", key, r);
    }
    *out = n;
    return 1;
}

static int get_int(load_ctx *x, const char *key, const char *v, int lo, int hi, int *out) {
    long n;
    if (!get_long(x, key, v, lo, hi, &n)) return 0;
    *out = (int)n;
    return 1;
}

static int get_float(load_ctx *x, const char *key, const char *v, float lo, float hi, float *out) {
    char *end;
    errno = 0;
    float f = strtof(v, &end);
    if (errno || end == v || *end || !isfinite(f)) return fail(x, "%s: '%s' is not a finite number", key, v);
    if (f < lo || f > hi) {
        char r[96];
        snprintf(r, sizeof r, "%s (range %g..%g)", v, (double)lo, (double)hi);
        return fail(x, "%s: %s is out of range", key, r);
    }
    *out = f;
    return 1;
}

static int get_bool(load_ctx *x, const char *key, const char *v, int *out) {
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes") || !strcasecmp(v, "on")) *out = 1;
    else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no") || !strcasecmp(v, "off")) *out = 0;
    else return fail(x, "%s: '%s' is not a boolean (true/false)", key, v);
    return 1;
}

static int get_str(load_ctx *x, const char *key, const char *v, char *dst, size_t cap) {
    if (strlen(v) >= cap) return fail(x, "%s: value longer than %s bytes", key, "the limit");
    snprintf(dst, cap, "%s", v);
    return 1;
}

/* A path relative to the config file's directory. */
static int get_path(load_ctx *x, const char *key, const char *v, char *dst, size_t cap) {
    if (!v[0]) { dst[0] = 0; return 1; }
    int n = v[0] == '/' || !x->dir[0] ? snprintf(dst, cap, "%s", v) : snprintf(dst, cap, "%s/%s", x->dir, v);
    if (n < 0 || (size_t)n >= cap) return fail(x, "%s: path longer than %s bytes", key, "the limit");
    return 1;
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static int get_key(load_ctx *x, const char *key, const char *v) {
    config *c = x->c;
    if (strlen(v) != 64) return fail(x, "%s: want 64 hex digits (a SHA-256 digest), got %s", key, "something else");
    if (c->n_keys >= CONFIG_MAX_KEYS) return fail(x, "%s: more than %s keys", key, "32");
    for (int i = 0; i < 32; i++) {
        int hi = hexval(v[2 * i]), lo = hexval(v[2 * i + 1]);
        if (hi < 0 || lo < 0) return fail(x, "%s: '%s' is not hex", key, v);
        c->key_sha256[c->n_keys][i] = (uint8_t)(hi << 4 | lo);
    }
    c->n_keys++;
    return 1;
}

static int handler(void *user, const char *sec, const char *k, const char *v) {
    load_ctx *x = user;
    config *c = x->c;
    if (x->failed) return 0;
#define IS(s, n) (!strcmp(sec, s) && !strcmp(k, n))
    if (IS("server", "listen")) return get_str(x, k, v, c->listen, sizeof c->listen);
    if (IS("server", "workers")) {
        if (!strcmp(v, "auto")) { c->workers = CONFIG_AUTO; return 1; }
        return get_int(x, k, v, 1, 1024, &c->workers);
    }
    if (IS("server", "threads")) return get_int(x, k, v, 0, 1024, &c->threads);
    if (IS("model", "path")) return get_path(x, k, v, c->model_path, sizeof c->model_path);
    if (IS("model", "id")) return get_str(x, k, v, c->model_id, sizeof c->model_id);
    if (IS("model", "context")) return get_int(x, k, v, 0, 1 << 24, &c->n_ctx);
    if (IS("model", "output_format")) {
        if (strcmp(v, "auto") && strcmp(v, "plain") && strcmp(v, "qwen3") && strcmp(v, "qwen3-coder") && strcmp(v, "harmony") &&
            strcmp(v, "deepseek") && strcmp(v, "deepseek-r1") && strcmp(v, "deepseek-v3.1") &&
            strcmp(v, "deepseek-v3.2"))
            return fail(x,
                        "%s: '%s' is not one of auto, plain, qwen3, qwen3-coder, harmony, deepseek, deepseek-r1, "
                        "deepseek-v3.1, deepseek-v3.2",
                        k, v);
        return get_str(x, k, v, c->output_format, sizeof c->output_format);
    }
    if (IS("model", "chat_template_file"))
        return get_path(x, k, v, c->chat_template_file, sizeof c->chat_template_file);
    if (IS("model", "sha256")) {
        if (sha256_parse_hex(v, strlen(v), c->model_sha256))
            return fail(x, "%s: want the 64 hex digits of a SHA-256 digest, got '%s'", k, v);
        c->has_model_sha256 = 1;
        return 1;
    }
    if (IS("model", "manifest")) return get_path(x, k, v, c->model_manifest, sizeof c->model_manifest);
    if (IS("model", "temperature")) return get_float(x, k, v, 0, 2, &c->sp.temperature);
    if (IS("model", "top_p")) return get_float(x, k, v, 0, 1, &c->sp.top_p);
    if (IS("model", "top_k")) return get_int(x, k, v, 0, 1 << 24, &c->sp.top_k);
    if (IS("model", "min_p")) return get_float(x, k, v, 0, 1, &c->sp.min_p);
    if (IS("model", "repetition_penalty")) return get_float(x, k, v, 0.01f, 10, &c->sp.repetition_penalty);
    if (IS("model", "presence_penalty")) return get_float(x, k, v, -2, 2, &c->sp.presence_penalty);
    if (IS("model", "frequency_penalty")) return get_float(x, k, v, -2, 2, &c->sp.frequency_penalty);
    if (IS("engine", "max_seqs")) return get_int(x, k, v, 1, 1024, &c->max_seqs);
    if (IS("engine", "max_batched_tokens")) return get_int(x, k, v, 1, 1 << 16, &c->max_batched_tokens);
    if (IS("engine", "memory_limit_mb")) return get_long(x, k, v, 0, 1L << 30, &c->memory_limit_mb);
    if (IS("engine", "kv_blocks")) return get_int(x, k, v, 0, 1 << 26, &c->kv_blocks);
    if (IS("engine", "kv_type")) {
        int t = engine_kv_type_parse(v);
        if (t < 0) return fail(x, "%s: '%s' is not one of " ENGINE_KV_TYPE_NAMES, k, v);
        c->kv_type = (engine_kv_type)t;
        return 1;
    }
    if (IS("engine", "precision")) {
        int t = engine_precision_parse(v);
        if (t < 0) return fail(x, "%s: '%s' is not one of exact, fast", k, v);
        c->precision = (engine_precision)t;
        return 1;
    }
    if (IS("engine", "device")) {
        if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto"))
            return fail(x, "%s: '%s' is not one of cpu, cuda, auto", k, v);
        return get_str(x, k, v, c->device, sizeof c->device);
    }
    if (IS("engine", "prefix_cache")) return get_bool(x, k, v, &c->prefix_cache);
    if (IS("limits", "max_body_bytes")) return get_long(x, k, v, 1024, 1L << 30, &c->max_body_bytes);
    if (IS("limits", "max_queue")) {
        if (!strcmp(v, "auto")) { c->max_queue = CONFIG_AUTO; return 1; }
        return get_int(x, k, v, 0, 1 << 20, &c->max_queue);
    }
    if (IS("limits", "max_tokens")) return get_int(x, k, v, 1, 1 << 24, &c->max_tokens);
    if (IS("limits", "max_stop")) return get_int(x, k, v, 0, 64, &c->max_stop);
    if (IS("limits", "max_stop_len")) return get_int(x, k, v, 1, 4096, &c->max_stop_len);
    if (IS("limits", "max_tools_bytes")) return get_long(x, k, v, 0, 1L << 26, &c->max_tools_bytes);
    if (IS("limits", "max_top_logprobs")) return get_int(x, k, v, 0, 20, &c->max_top_logprobs);
    if (IS("limits", "max_top_k")) return get_int(x, k, v, 0, 1 << 24, &c->max_top_k);
    if (IS("timeouts", "keepalive_ms")) return get_int(x, k, v, 10, 600000, &c->keepalive_ms);
    if (IS("timeouts", "drain_s")) return get_int(x, k, v, 0, 3600, &c->drain_s);
    if (IS("timeouts", "retry_after_s")) return get_int(x, k, v, 1, 3600, &c->retry_after_s);
    if (IS("log", "level")) {
        if (!strcmp(v, "error")) c->log_level = 0;
        else if (!strcmp(v, "info")) c->log_level = 1;
        else if (!strcmp(v, "debug")) c->log_level = 2;
        else return fail(x, "%s: '%s' is not one of error, info, debug", k, v);
        return 1;
    }
    if (IS("log", "requests")) return get_bool(x, k, v, &c->log_requests);
    if (IS("auth", "api_key_sha256")) return get_key(x, k, v);
    if (IS("auth", "metrics_public")) return get_bool(x, k, v, &c->metrics_public);
    if (IS("parallel", "size")) return get_int(x, k, v, 1, ENGINE_PARALLEL_MAX, &c->parallel.size);
    if (IS("parallel", "rank")) return get_int(x, k, v, 0, ENGINE_PARALLEL_MAX - 1, &c->parallel.rank);
    if (IS("parallel", "address")) {
        if (!strchr(v, ':')) return fail(x, "%s: '%s' is not HOST:PORT", k, v);
        return get_str(x, k, v, c->parallel.addr, sizeof c->parallel.addr);
    }
    if (IS("parallel", "gpu")) return get_int(x, k, v, 0, 255, &c->parallel.gpu);
    if (IS("parallel", "connect_timeout_s")) return get_int(x, k, v, 1, 86400, &c->parallel.connect_timeout_s);
    if (IS("parallel", "step_timeout_s")) return get_int(x, k, v, 1, 3600, &c->parallel.step_timeout_s);
    if (IS("parallel", "moe_split")) {
        int t = engine_moe_split_parse(v);
        if (t < 0) return fail(x, "%s: '%s' is not one of columns, experts", k, v);
        c->parallel.moe_split = (engine_moe_split)t;
        return 1;
    }
    if (IS("parallel", "nccl_library")) return get_path(x, k, v, c->parallel.nccl_lib, sizeof c->parallel.nccl_lib);
#undef IS
    static const char *sections[] = {"server", "model", "engine", "limits", "timeouts", "log", "auth", "parallel"};
    for (size_t i = 0; i < sizeof sections / sizeof *sections; i++)
        if (!strcmp(sec, sections[i])) return fail(x, "unknown key '%s' in [%s]", k, sec);
    if (!sec[0]) return fail(x, "key '%s' outside any section%s", k, "");
    return fail(x, "unknown section [%s] (key '%s')", sec, k);
}

/* Strips blanks at both ends in place; returns the new start. */
static char *strip(char *a, char *end) {
    while (a < end && isspace((unsigned char)*a)) a++;
    while (end > a && isspace((unsigned char)end[-1])) end--;
    *end = 0;
    return a;
}

static int syntax(load_ctx *x, const char *what) {
    return fail(x, "syntax error (%s%s)", what, "");
}

/* One line (NUL-terminated, no newline) in section sec (cap CONFIG_SEC_MAX). */
#define CONFIG_SEC_MAX 64
static int parse_line(load_ctx *x, char *line, char *sec) {
    char *a = strip(line, line + strlen(line));
    if (!*a || *a == ';' || *a == '#') return 1;
    if (*a == '[') {
        char *close = strchr(a, ']');
        if (!close) return syntax(x, "want key = value or [section]");
        char *name = strip(a + 1, close);
        if (strlen(name) >= CONFIG_SEC_MAX) return fail(x, "section name longer than %s bytes%s", "63", "");
        snprintf(sec, CONFIG_SEC_MAX, "%s", name);
        return 1;
    }
    char *eq = strchr(a, '=');
    if (!eq) return syntax(x, "want key = value or [section]");
    char *key = strip(a, eq);
    if (!*key) return syntax(x, "empty key before '='");
    char *v = eq + 1;
    for (char *p = v; *p; p++) /* inline comment: ';' after a blank */
        if (*p == ';' && p > v && isspace((unsigned char)p[-1])) { *p = 0; break; }
    v = strip(v, v + strlen(v));
    return handler(x, sec, key, v);
}

int config_load_text(config *c, const char *text, size_t len, const char *name, const char *dir, err *e) {
    load_ctx x = {.c = c};
    err local = {0};
    x.e = &local;
    if (dir && strlen(dir) < sizeof x.dir) snprintf(x.dir, sizeof x.dir, "%s", dir);
    char sec[CONFIG_SEC_MAX] = "";
    char line[CONFIG_LINE_MAX + 2];
    size_t i = 0;
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) i = 3;
    while (i < len) {
        x.lineno++;
        size_t n = 0;
        while (i < len && text[i] != '\n') {
            if (!text[i]) return err_set(e, ERR_FORMAT, "%s:%d: NUL byte in the file", name, x.lineno);
            if (n >= CONFIG_LINE_MAX)
                return err_set(e, ERR_FORMAT, "%s:%d: line longer than %d bytes", name, x.lineno, CONFIG_LINE_MAX);
            line[n++] = text[i++];
        }
        i++; /* the '\n' */
        if (n && line[n - 1] == '\r') n--;
        line[n] = 0;
        if (!parse_line(&x, line, sec) || x.failed)
            return err_set(e, ERR_FORMAT, "%s:%d: %s", name, x.fail_line, local.msg);
    }
    return 0;
}

int config_load(config *c, const char *path, err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(e, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    enum { CAP = 1 << 20 };
    char *buf = malloc(CAP + 1);
    size_t n = buf ? fread(buf, 1, CAP + 1, f) : 0;
    int rerr = ferror(f);
    fclose(f);
    if (!buf) return err_set(e, ERR_NOMEM, "out of memory");
    int rc;
    if (rerr) rc = err_set(e, ERR_IO, "%s: read error", path);
    else if (n > CAP) rc = err_set(e, ERR_FORMAT, "%s: larger than 1 MiB", path);
    else {
        char dir[CONFIG_PATH_MAX] = "";
        const char *slash = strrchr(path, '/');
        if (slash && (size_t)(slash - path) < sizeof dir) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        rc = config_load_text(c, buf, n, path, dir, e);
    }
    free(buf);
    return rc;
}

int config_add_key_file(config *c, const char *path, err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(e, ERR_IO, "api key file %s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & S_IROTH)) {
        fclose(f);
        return err_set(e, ERR_INVALID, "api key file %s is readable by every user (chmod o-r %s)", path, path);
    }
    char line[1024];
    int lineno = 0, rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        size_t n = strlen(line);
        if (n == sizeof line - 1 && line[n - 1] != '\n') {
            rc = err_set(e, ERR_FORMAT, "api key file %s:%d: line longer than %d bytes", path, lineno, (int)sizeof line - 2);
            break;
        }
        char *k = strip(line, line + n);
        if (!*k || *k == '#') continue;
        if (c->n_keys >= CONFIG_MAX_KEYS) {
            rc = err_set(e, ERR_INVALID, "api key file %s:%d: more than %d keys in all", path, lineno, CONFIG_MAX_KEYS);
            break;
        }
        sha256_of(k, strlen(k), c->key_sha256[c->n_keys++]);
        memset(line, 0, sizeof line); /* the key itself is not kept */
    }
    fclose(f);
    return rc;
}

int config_model_digest(const config *c, uint8_t out[32], int *have, err *e) {
    *have = 0;
    if (c->has_model_sha256) {
        memcpy(out, c->model_sha256, 32);
        *have = 1;
    }
    if (!c->model_manifest[0]) return 0;
    sha256_manifest *m;
    int rc = sha256_manifest_load(&m, c->model_manifest, e);
    if (rc) return rc;
    const sha256_entry *en = sha256_manifest_find(m, c->model_path);
    if (!en) rc = err_set(e, ERR_INVALID, "manifest %s does not list the model %s", c->model_manifest, c->model_path);
    else if (*have && memcmp(out, en->digest, 32))
        rc = err_set(e, ERR_INVALID, "[model] sha256 and manifest %s disagree about %s", c->model_manifest, c->model_path);
    else {
        memcpy(out, en->digest, 32);
        *have = 1;
    }
    sha256_manifest_free(m);
    return rc;
}

void config_resolve_auto(config *c) {
    /* A queued request holds a handle with its prompt (context x 4 bytes) and a
     * worker thread, both planned at start; 16 per decode slot, at least 64, lets
     * an agent fan out a swarm of sub-agents without a 429. */
    if (c->max_queue == CONFIG_AUTO) {
        long q = 16L * c->max_seqs;
        c->max_queue = (int)(q < 64 ? 64 : q > 1024 ? 1024 : q);
    }
    /* every admitted request, and room to answer 429 beyond them */
    if (c->workers == CONFIG_AUTO) {
        long w = (long)c->max_seqs + c->max_queue + 8;
        c->workers = (int)(w < 128 ? 128 : w > 1024 ? 1024 : w);
    }
}

int config_check(const config *c, err *e) {
    if (!c->model_path[0]) return err_set(e, ERR_INVALID, "no model: set [model] path or pass -m");
    if (strncmp(c->listen, "unix:", 5) && !strchr(c->listen, ':'))
        return err_set(e, ERR_INVALID, "listen: '%s' is neither unix:PATH nor HOST:PORT", c->listen);
    if (c->max_top_logprobs > 20) return err_set(e, ERR_INVALID, "max_top_logprobs: at most 20");
    if (c->parallel.size > 1 && c->parallel.rank >= c->parallel.size)
        return err_set(e, ERR_INVALID, "[parallel] rank %d of size %d (ranks are 0..%d)", c->parallel.rank,
                       c->parallel.size, c->parallel.size - 1);
    if (c->parallel.size > 1 && !c->parallel.addr[0])
        return err_set(e, ERR_INVALID, "[parallel] size %d needs address = HOST:PORT (rank 0's control socket)",
                       c->parallel.size);
    return 0;
}
