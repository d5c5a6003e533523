/* config.h — the sparkd INI file (etc/sparkd.ini documents every key).
 *
 * Parsed by its own line reader (grammar in config.c). Strict: an unknown section or key, a value that is not a
 * number where one is expected, or a number out of its range stops the start
 * with "FILE:LINE: reason" in the err. Relative paths in the file are resolved
 * against the file's directory. CLI flags override fields after loading.
 *
 * Owns: nothing on the heap; a config is a plain value (fixed-size strings). */
#ifndef SPARKD_CONFIG_H
#define SPARKD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "err.h"
#include "sampler.h"

#define CONFIG_PATH_MAX 512
#define CONFIG_MAX_KEYS 32
#define CONFIG_LINE_MAX 190 /* bytes per line, without the newline */

typedef struct config {
    /* [server] */
    char listen[CONFIG_PATH_MAX]; /* "unix:/path" or "host:port" */
    int workers;                  /* FastCGI worker threads (concurrent requests); CONFIG_AUTO */
    int threads;                  /* engine threads (0 = online CPUs) */
    /* [model] */
    char model_path[CONFIG_PATH_MAX];
    char model_id[128];           /* id served by /v1/models ("" = file name) */
    int n_ctx;                    /* 0 = min(trained context, 4096) */
    char chat_template_file[CONFIG_PATH_MAX]; /* "" = the GGUF's template */
    char output_format[16];       /* reasoning / tool-call syntax: "auto" (from the template and
                                   * the vocabulary), "plain", "qwen3", "qwen3-coder", "harmony",
                                   * "deepseek", "deepseek-r1", "deepseek-v3.1", "deepseek-v3.2" */
    int has_model_sha256;         /* [model] sha256 given */
    uint8_t model_sha256[32];     /* the model file's expected SHA-256 */
    char model_manifest[CONFIG_PATH_MAX]; /* sha256sum manifest listing the model ("" = none) */
    sampler_params sp;            /* defaults for omitted request fields */
    /* [engine] */
    char device[8];               /* "cpu", "cuda" or "auto" (engine_select) */
    int max_seqs;                 /* sequences decoded together */
    int max_batched_tokens;       /* tokens per forward step */
    long memory_limit_mb;         /* refuse to start if weights + plan exceed it (0 = off) */
    int kv_blocks;                /* KV pool in blocks of the engine's size (0 = max_seqs * context / block) */
    engine_kv_type kv_type;       /* K/V storage: f32 (exact), f16, q8, bf16, fp8 */
    engine_precision precision;   /* tensor-core product input: exact (default), fast */
    int prefix_cache;             /* reuse KV blocks of equal prompt prefixes */
    /* [limits] */
    long max_body_bytes;          /* request body cap (413 beyond) */
    int max_queue;                /* waiting requests beyond free decode slots before 429; CONFIG_AUTO */
    int max_tokens;               /* cap on generated tokens per request */
    int max_stop;                 /* stop strings per request */
    int max_stop_len;             /* bytes per stop string */
    long max_tools_bytes;         /* serialized size of "tools" */
    int max_top_logprobs;         /* <= 20 */
    int max_top_k;                /* top_k cap (0 = vocabulary size) */
    /* [timeouts] */
    int keepalive_ms;             /* SSE comment interval while nothing else is sent */
    int drain_s;                  /* SIGTERM: time to finish in-flight requests */
    int retry_after_s;            /* Retry-After on 429 */
    /* [log] */
    int log_level;                /* 0 error, 1 info, 2 debug */
    int log_requests;             /* one line per request */
    /* [auth] */
    int n_keys;                   /* 0 = no authentication */
    uint8_t key_sha256[CONFIG_MAX_KEYS][32];
    int metrics_public;           /* /metrics without a key */
    /* [parallel] */
    engine_parallel parallel;     /* tensor parallel over NCCL (size 1 = off) */
} config;

/* Fills the documented defaults (the same values etc/sparkd.ini shows). */
void config_defaults(config *c);
/* Loads path over the current values of c. Errors: ERR_IO (cannot open), or
 * ERR_FORMAT with "FILE:LINE: reason". */
int config_load(config *c, const char *path, err *e);
/* Same over len bytes of text (fuzzing, tests): name stands for the file in
 * messages, dir (may be NULL) is where relative paths are taken from. */
int config_load_text(config *c, const char *text, size_t len, const char *name, const char *dir, err *e);
/* Adds the API keys in path (one per line; blank lines and lines starting with '#'
 * skipped; surrounding blanks trimmed) to [auth] as their SHA-256 digests, the way
 * llama-server's --api-key-file reads them. Refused: a file other users can read, or a
 * key count over CONFIG_MAX_KEYS. The keys themselves are not kept. */
int config_add_key_file(config *c, const char *path, err *e);
/* The model file's expected SHA-256 from [model] sha256 and/or the manifest (which must
 * list the model; both given must agree). 0 with *have = 0 when neither is set. */
int config_model_digest(const config *c, uint8_t out[32], int *have, err *e);
/* Checks cross-field constraints after CLI overrides. */
int config_check(const config *c, err *e);
/* "auto" (CONFIG_AUTO) for workers and max_queue, made numbers from max_seqs:
 * max_queue = 16 per decode slot, at least 64 (at most 1024); workers =
 * max_seqs + max_queue + 8, at least 128 (at most 1024). After all overrides. */
#define CONFIG_AUTO (-1)
void config_resolve_auto(config *c);

#endif
