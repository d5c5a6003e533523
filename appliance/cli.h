/* cli.h — the command line's options: one table for every subcommand, parsed with
 * getopt_long, so a name means the same thing wherever it is accepted.
 *
 *   --opt=value and --opt value both work; short options take -n 32 or -n32.
 *   llama-server / llama-cli spellings people type are aliases: -c/--ctx-size,
 *   -n/--n-predict, -t/--threads, -b/--batch-size, -np/--parallel, -ngl/--n-gpu-layers/
 *   --gpu-layers (accepted; any value > 0 means "the GPU when there is one", 0 the CPU),
 *   -ctk/-ctv/--cache-type-k/--cache-type-v (sparkd has one KV type: both must agree),
 *   --host/--port (listen on HOST:PORT: FastCGI over TCP, for nginx's fastcgi_pass — not
 *   HTTP), --alias (the served model id), --api-key-file (keys hashed at start), and the
 *   sampling flags. --api-key KEY is refused: a key on the command line is visible to
 *   every user in ps.
 *   The single-dash multi-letter spellings (-ngl, -np, -ctk, -ctv, -cb) are rewritten to
 *   their long names before getopt_long sees them; nothing else is single-dash long.
 *   `sparkd CMD --help` lists exactly the options CMD takes.
 *
 * Owns: a.files, the array of FILE arguments (its strings are argv's); cli_free releases it,
 * and cli_parse releases it itself when it returns non-zero. */
#ifndef SPARKD_CLI_H
#define SPARKD_CLI_H

#include <stdint.h>
#include <stdio.h>

enum cli_cmd {
    CLI_RUN = 1 << 0,
    CLI_INFO = 1 << 1,
    CLI_BENCH = 1 << 2,
    CLI_SERVE = 1 << 3,
    CLI_VERIFY = 1 << 4,
    CLI_DEVICE = 1 << 5,
    CLI_SELFTEST = 1 << 6,
};

/* What was given; every numeric field is meaningful only when its has_ flag is set,
 * so a command fills its own defaults and serve lets the INI stand for what is absent. */
typedef struct cli_args {
    int cmd;                          /* one enum cli_cmd */
    const char *model, *prompt, *config, *listen, *host, *manifest, *api_key_file, *alias;
    const char *chat_template_file, *device, *kv, *precision;
    int port, has_port;
    int n_predict, has_n_predict;     /* run: tokens to generate; bench: tg; serve: max_tokens cap */
    int n_prompt, has_n_prompt;       /* bench: prompt tokens (-p N) */
    int reps, has_reps;
    int threads, has_threads;
    int ctx, has_ctx;
    int batch, has_batch;
    int parallel, has_parallel;       /* serve: [engine] max_seqs; info: sequences the plan is for */
    int memory_limit_mb, has_memory_limit_mb;
    int gpu_layers, has_gpu_layers;
    float temp, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty;
    int has_temp, has_top_p, has_min_p, has_repeat_penalty, has_presence_penalty, has_frequency_penalty;
    int top_k, has_top_k;
    uint64_t seed;
    int has_seed;
    int use_mmap, load_only, print_ids, no_bos, special, ignore_eos;
    int quick, kbench, model_only;    /* selftest --quick / --bench / --model-only */
    int tp, has_tp;                   /* serve: [parallel] size; selftest: the tensor-parallel check */
    int tp_rank, has_tp_rank;         /* serve: [parallel] rank */
    const char *tp_addr;              /* serve, selftest: [parallel] address */
    const char *moe_split;            /* serve, selftest: [parallel] moe_split (NULL = the INI's) */
    const char *npl;                  /* bench --npl LIST (comma-separated sequence counts) */
    int depth, has_depth;             /* bench --depth N */
    const char **files;               /* verify: the FILE arguments */
    int n_files;
} cli_args;

/* The subcommand named s (CLI_*), or 0. */
int cli_command(const char *s);
const char *cli_command_name(int cmd);

/* Parses argv[2..] for the subcommand in argv[1]. Returns 0 (parsed), 1 (--help was
 * printed to out: exit 0) or 2 (an error was printed to err: exit 2). */
int cli_parse(cli_args *a, int argc, char **argv, FILE *out, FILE *err);

/* Frees what cli_parse allocated (a.files); a is then empty. */
void cli_free(cli_args *a);

/* `sparkd CMD --help`: usage and the options CMD takes. */
void cli_help(FILE *f, int cmd);
/* `sparkd --help`: the subcommands. */
void cli_usage(FILE *f);

#endif
