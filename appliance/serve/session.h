/* session.h — the one assembly of a served model (prefix session_): model +
 * tokenizer + chat template + output-parser format + engine + scheduler, built
 * once from the options (from the INI file for `sparkd serve`, from flags for
 * `sparkd run` / `bench` / `info`). Nothing else loads a model, a tokenizer or
 * picks a backend.
 *
 * Order: the model (header, then weights), the tokenizer, the template and
 * parser format, the engine's plan for exactly the options create gets (the
 * memory limit is checked there), the engine, the scheduler. Any failure undoes
 * what was built and returns the error (a model that fails to load is named by
 * its path: these messages go to the operator, never to a client).
 *
 * Owns: everything it built; session_close frees it in reverse order. The fields
 * are read-only for callers (the scheduler and the engine are used through their
 * own APIs). */
#ifndef SPARKD_SESSION_H
#define SPARKD_SESSION_H

#include <stdint.h>

#include "config.h"
#include "engine.h"
#include "err.h"
#include "model.h"
#include "output_parse.h"
#include "scheduler.h"
#include "tmpl.h"
#include "tok.h"

typedef struct session_opts {
    const char *model_path;
    const uint8_t *model_sha256; /* 32 bytes: the file's expected SHA-256, checked while loading */
    int use_mmap;          /* map the weights instead of reading them (slower on GB10) */
    int progress;          /* load progress on stderr */
    int header_only;       /* `info`: describe and plan; no weights, no engine */
    const char *device;    /* "cpu", "cuda", "auto" (NULL = cpu) */
    int n_threads;         /* 0 = online CPUs (at most 64) */
    int n_ctx;             /* 0 = min(trained context, 4096) */
    int max_seqs;          /* >= 1 */
    int max_tokens;        /* tokens per forward step */
    int n_kv_blocks;       /* 0 = every sequence can reach n_ctx */
    engine_kv_type kv_type;
    engine_precision precision; /* tensor-core product input (cuda) */
    uint64_t memory_limit; /* bytes, 0 = none */
    int tokenizer;         /* load the tokenizer */
    int chat;              /* also the chat template and the output-parser format */
    const char *chat_template_file; /* NULL / "" = the model's own */
    int scheduler;         /* start the scheduler (serve); else the caller drives the engine */
    int max_queue;
    int prefix_cache;
    const engine_parallel *parallel; /* NULL / size 1: one GPU; else engine_tp_ops (this rank) */
} session_opts;

typedef struct session {
    model *m;
    tok *tk;               /* NULL unless opts.tokenizer (or, header_only, it failed: tok_err) */
    err tok_err;           /* header_only: why the tokenizer could not be built (code 0 = it was) */
    tmpl *tp;              /* NULL: no chat template (or a build without the template engine) */
    parse_format pfmt;     /* output parsers for chat replies */
    const engine_ops *ops;
    engine_opts eopts;     /* what create got */
    engine_plan plan;      /* ops->plan for eopts */
    err plan_err;          /* header_only: why plan refused (code 0 = it did not) */
    engine *eng;           /* NULL when header_only */
    sched *s;              /* NULL unless opts.scheduler */
    int n_ctx;
} session;

/* Defaults for the CLI: one sequence, prompt chunks of 256, f32 KV, the CPU. */
void session_defaults(session_opts *o);
/* The serve options of an INI file (every [engine] key, context, threads, device). */
void session_opts_from_config(session_opts *o, const config *c);

int session_open(session **out, const session_opts *o, err *e);
/* Stops the scheduler (front ends must have released their requests), then frees
 * the engine, template, tokenizer and model. NULL is fine. */
void session_close(session *s);

#endif
