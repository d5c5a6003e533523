/* cli.c — see cli.h. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    O_CONFIG = 256, O_LISTEN, O_HOST, O_PORT, O_PARALLEL, O_NGL, O_DEVICE, O_KV, O_PRECISION, O_CTK, O_CTV, O_MMAP, O_NO_MMAP,
    O_TEMP, O_TOP_K, O_TOP_P, O_MIN_P, O_SEED, O_REPEAT, O_PRESENCE, O_FREQUENCY, O_LOAD_ONLY, O_PRINT_IDS,
    O_NO_BOS, O_SPECIAL, O_IGNORE_EOS, O_MANIFEST, O_API_KEY_FILE, O_API_KEY, O_ALIAS, O_TEMPLATE, O_CONT_BATCHING,
    O_METRICS, O_MEMORY_LIMIT, O_QUICK, O_KBENCH, O_MODEL_ONLY, O_NPL, O_DEPTH, O_TP, O_TP_RANK, O_TP_ADDR, O_MOE_SPLIT,
};

#define ALL_MODEL (CLI_RUN | CLI_INFO | CLI_BENCH | CLI_SERVE)
#define COMPUTE (CLI_RUN | CLI_BENCH | CLI_SERVE)

typedef struct opt {
    const char *name; /* long name */
    int key;          /* what getopt_long returns: the short letter or O_* */
    int has_arg;
    unsigned cmds;    /* CLI_* it belongs to */
    const char *arg;  /* help: the value's placeholder */
    const char *help; /* NULL: an alias, listed with the option it stands for */
} opt;

static const opt opts[] = {
    {"model", 'm', required_argument, ALL_MODEL | CLI_SELFTEST, "FILE", "the GGUF model"},
    {"config", O_CONFIG, required_argument, CLI_SERVE, "FILE", "the INI file (etc/sparkd.ini documents every key); flags override it"},
    {"prompt", 'p', required_argument, CLI_RUN | CLI_BENCH, "TEXT|N", "run: the text to continue; bench: prompt tokens (128)"},
    {"n-prompt", 'p', required_argument, CLI_BENCH, NULL, NULL},
    {"n-predict", 'n', required_argument, COMPUTE, "N", "tokens to generate (run 64, bench 64); serve: the max_tokens cap"},
    {"repetitions", 'r', required_argument, CLI_BENCH, "N", "bench: repetitions (3)"},
    {"threads", 't', required_argument, ALL_MODEL, "N", "CPU threads (default: online CPUs)"},
    {"ctx-size", 'c', required_argument, ALL_MODEL, "N", "context per sequence (default: the model's, at most 4096)"},
    {"ctx", 'c', required_argument, ALL_MODEL, NULL, NULL},
    {"batch-size", 'b', required_argument, ALL_MODEL, "N", "tokens per forward step (256)"},
    {"parallel", O_PARALLEL, required_argument, CLI_SERVE | CLI_INFO | CLI_BENCH, "N", "sequences decoded together ([engine] max_seqs; info: the plan's; bench: then generated tok/s of N sequences in one batch); also -np, --seqs"},
    {"seqs", O_PARALLEL, required_argument, CLI_SERVE | CLI_INFO, NULL, NULL},
    {"memory-limit", O_MEMORY_LIMIT, required_argument, CLI_SERVE | CLI_INFO, "MB", "refuse a plan over MB MiB ([engine] memory_limit_mb; info: say whether it fits)"},
    {"n-gpu-layers", O_NGL, required_argument, COMPUTE, "N", "accepted for llama.cpp users: N > 0 = the GPU when present, 0 = CPU; also -ngl, --gpu-layers"},
    {"gpu-layers", O_NGL, required_argument, COMPUTE, NULL, NULL},
    {"device", O_DEVICE, required_argument, COMPUTE, "cpu|cuda|auto", "where the model runs (cpu)"},
    {"kv", O_KV, required_argument, ALL_MODEL | CLI_SELFTEST, "TYPE", "KV cache precision: f32 (exact, default), f16, q8, bf16, fp8; also -ctk/-ctv"},
    {"cache-type-k", O_CTK, required_argument, ALL_MODEL, NULL, NULL},
    {"cache-type-v", O_CTV, required_argument, ALL_MODEL, NULL, NULL},
    {"precision", O_PRECISION, required_argument, ALL_MODEL, "exact|fast", "how the GPU reads activations ([engine] precision): exact (f16 hi + lo, f32 at decode; default) or fast (int8 activations per 32: dp4a at decode, int8 tensor cores in prompts)"},
    {"mmap", O_MMAP, no_argument, CLI_RUN | CLI_INFO | CLI_BENCH, NULL, "map the file instead of reading it (slower on GB10)"},
    {"no-mmap", O_NO_MMAP, no_argument, ALL_MODEL, NULL, "read the file into memory (the default; accepted)"},
    {"temp", O_TEMP, required_argument, CLI_RUN | CLI_SERVE, "T", "temperature (run 0.8; serve: [model] temperature); 0 = greedy"},
    {"top-k", O_TOP_K, required_argument, CLI_RUN | CLI_SERVE, "K", "top-k sampling (0 = off)"},
    {"top-p", O_TOP_P, required_argument, CLI_RUN | CLI_SERVE, "P", "top-p sampling (1 = off)"},
    {"min-p", O_MIN_P, required_argument, CLI_RUN | CLI_SERVE, "P", "min-p sampling (0 = off)"},
    {"repeat-penalty", O_REPEAT, required_argument, CLI_RUN | CLI_SERVE, "R", "repetition penalty (1 = off)"},
    {"presence-penalty", O_PRESENCE, required_argument, CLI_RUN | CLI_SERVE, "X", "presence penalty (0 = off)"},
    {"frequency-penalty", O_FREQUENCY, required_argument, CLI_RUN | CLI_SERVE, "X", "frequency penalty (0 = off)"},
    {"seed", O_SEED, required_argument, CLI_RUN, "S", "sampling seed (default: the clock)"},
    {"load-only", O_LOAD_ONLY, no_argument, CLI_BENCH, NULL, "time loading the weights only"},
    {"npl", O_NPL, required_argument, CLI_BENCH, "LIST", "bench: sequences decoded together, e.g. 1,8,32,64 (as llama-batched-bench): prompt and generated tok/s of each"},
    {"depth", O_DEPTH, required_argument, CLI_BENCH, "N", "bench: generate after N positions of context (one prefix shared by the --npl sequences; on the GPU filled with random K/V instead of a prefill)"},
    {"print-ids", O_PRINT_IDS, no_argument, CLI_RUN, NULL, "print prompt and generated token ids on stderr"},
    {"no-bos", O_NO_BOS, no_argument, CLI_RUN, NULL, "do not prepend BOS"},
    {"special", O_SPECIAL, no_argument, CLI_RUN, NULL, "parse special tokens in the prompt and print them"},
    {"ignore-eos", O_IGNORE_EOS, no_argument, CLI_RUN, NULL, "keep generating past end-of-generation tokens"},
    {"listen", O_LISTEN, required_argument, CLI_SERVE, "unix:PATH|HOST:PORT", "where the FastCGI responder listens ([server] listen)"},
    {"host", O_HOST, required_argument, CLI_SERVE, "HOST", "with --port: listen on HOST:PORT (FastCGI over TCP for nginx, not HTTP)"},
    {"port", O_PORT, required_argument, CLI_SERVE, "PORT", "with --host (default 127.0.0.1): FastCGI over TCP"},
    {"alias", O_ALIAS, required_argument, CLI_SERVE, "ID", "the model id /v1/models lists ([model] id)"},
    {"chat-template-file", O_TEMPLATE, required_argument, CLI_SERVE, "FILE", "chat template override ([model] chat_template_file)"},
    {"api-key-file", O_API_KEY_FILE, required_argument, CLI_SERVE, "FILE", "API keys, one per line, hashed at start (not world-readable)"},
    {"api-key", O_API_KEY, required_argument, CLI_SERVE, NULL, NULL},
    {"manifest", 0 /* set below */, required_argument, CLI_SERVE | CLI_VERIFY, "FILE", "a sha256sum manifest: verify checks the files it lists; serve checks the model while loading"},
    {"cont-batching", O_CONT_BATCHING, no_argument, CLI_SERVE, NULL, "accepted: batching is always continuous; also -cb"},
    {"metrics", O_METRICS, no_argument, CLI_SERVE, NULL, "accepted: /metrics is always served"},
    {"quick", O_QUICK, no_argument, CLI_SELFTEST, NULL, "fewer, smaller cases"},
    {"bench", O_KBENCH, no_argument, CLI_SELFTEST, NULL, "time the kernels instead of checking them"},
    {"model-only", O_MODEL_ONLY, no_argument, CLI_SELFTEST, NULL, "with -m: only the CUDA engine against the CPU engine on MODEL"},
    {"tp", O_TP, required_argument, CLI_SERVE | CLI_SELFTEST, "N", "tensor parallel over N GPUs ([parallel] size); selftest -m: N shards against the whole model"},
    {"moe-split", O_MOE_SPLIT, required_argument, CLI_SERVE | CLI_SELFTEST, "columns|experts", "how tensor parallel splits MoE layers ([parallel] moe_split): a slice of every expert (default) or whole experts per rank"},
    {"tp-rank", O_TP_RANK, required_argument, CLI_SERVE, "R", "this process's rank, 0 = the front end ([parallel] rank)"},
    {"tp-addr", O_TP_ADDR, required_argument, CLI_SERVE | CLI_SELFTEST, "HOST:PORT", "rank 0's control socket ([parallel] address); selftest: run the check as rank 0 over NCCL"},
    {"help", 'h', no_argument, ALL_MODEL | CLI_VERIFY | CLI_DEVICE | CLI_SELFTEST, NULL, "this help"},
};
#define N_OPTS (sizeof opts / sizeof *opts)

static int key_of(const opt *o) { return o->key ? o->key : O_MANIFEST; }

/* single-dash multi-letter spellings -> long names */
static const struct { const char *from, *to; } aliases[] = {
    {"-ngl", "--n-gpu-layers"}, {"-np", "--parallel"}, {"-ctk", "--cache-type-k"}, {"-ctv", "--cache-type-v"},
    {"-cb", "--cont-batching"},
};

static const struct { const char *name; int cmd; const char *args, *what; } cmds[] = {
    {"run", CLI_RUN, "-m MODEL -p TEXT [options]", "continue TEXT, stream it to stdout"},
    {"info", CLI_INFO, "-m MODEL [options]", "architecture, tensors, memory a model needs"},
    {"bench", CLI_BENCH, "-m MODEL [-p N] [-n N] [-r N] [options]", "prompt and generation speed"},
    {"serve", CLI_SERVE, "[--config FILE] [options]", "the FastCGI responder behind nginx (OpenAI API)"},
    {"verify", CLI_VERIFY, "--manifest SHA256SUMS [FILE...] | FILE...", "SHA-256 of files against a sha256sum manifest"},
    {"device", CLI_DEVICE, "", "the GPU the CUDA unit sees and its read bandwidth"},
    {"selftest", CLI_SELFTEST, "[--quick|--bench] [-m MODEL [--kv T] [--model-only] [--tp N [--tp-addr A] [--moe-split S]]]",
     "every GPU kernel (and the CUDA engine on MODEL) against the CPU reference (CUDA builds)"},
};

int cli_command(const char *s) {
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (!strcmp(s, cmds[i].name)) return cmds[i].cmd;
    return 0;
}

const char *cli_command_name(int cmd) {
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (cmds[i].cmd == cmd) return cmds[i].name;
    return "?";
}

void cli_usage(FILE *f) {
    fprintf(f, "usage: sparkd COMMAND [options]     (sparkd COMMAND --help lists its options)\n");
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        fprintf(f, "  sparkd %-8s %-44s %s\n", cmds[i].name, cmds[i].args, cmds[i].what);
    fprintf(f, "  sparkd --version\n");
}

void cli_help(FILE *f, int cmd) {
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        if (cmds[i].cmd == cmd) fprintf(f, "usage: sparkd %s %s\n%s.\n", cmds[i].name, cmds[i].args, cmds[i].what);
    if (cmd == CLI_VERIFY)
        fprintf(f, "Names in the manifest are taken from its directory; prints NAME: OK or NAME: FAILED like\n"
                   "sha256sum -c and exits 1 on any mismatch. Without --manifest, prints each FILE's digest.\n");
    fprintf(f, "options (--opt=value or --opt value):\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        const opt *o = &opts[i];
        if (!o->help || !(o->cmds & (unsigned)cmd)) continue;
        char lhs[64];
        int k = key_of(o);
        if (k < 256) snprintf(lhs, sizeof lhs, "-%c, --%s%s%s", k, o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        else snprintf(lhs, sizeof lhs, "    --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(f, "  %-34s %s\n", lhs, o->help);
    }
}

static int parse_int(const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static const opt *find_key(int key) {
    for (size_t i = 0; i < N_OPTS; i++)
        if (key_of(&opts[i]) == key) return &opts[i];
    return NULL;
}

int cli_parse(cli_args *a, int argc, char **argv, FILE *out, FILE *err) {
    memset(a, 0, sizeof *a);
    a->cmd = argc > 1 ? cli_command(argv[1]) : 0;
    if (!a->cmd) {
        fprintf(err, "error: unknown command '%s'\n", argc > 1 ? argv[1] : "");
        cli_usage(err);
        return 2;
    }
    const char *cname = argv[1];
    /* argv[1..] with the single-dash aliases spelled long; argv[0] slot = the command */
    char **av = calloc((size_t)argc + 1, sizeof *av);
    a->files = calloc((size_t)argc + 1, sizeof *a->files);
    struct option *lo = calloc(N_OPTS + 1, sizeof *lo);
    if (!av || !a->files || !lo) {
        free(av);
        free(lo);
        cli_free(a);
        fprintf(err, "error: out of memory\n");
        return 2;
    }
    int ac = 0;
    for (int i = 1; i < argc; i++) {
        av[ac] = argv[i];
        for (size_t k = 0; i > 1 && k < sizeof aliases / sizeof *aliases; k++)
            if (!strcmp(argv[i], aliases[k].from)) av[ac] = (char *)aliases[k].to;
        ac++;
    }
    char shorts[64] = ":";
    for (size_t i = 0; i < N_OPTS; i++) {
        lo[i] = (struct option){opts[i].name, opts[i].has_arg, NULL, key_of(&opts[i])};
        int k = key_of(&opts[i]);
        if (k < 256 && !strchr(shorts, k)) {
            size_t n = strlen(shorts);
            shorts[n] = (char)k;
            shorts[n + 1] = 0;
            if (opts[i].has_arg == required_argument) strcat(shorts, ":");
        }
    }
    int rc = 0;
    const char *ctk = NULL, *ctv = NULL;
    optind = 0; /* a full reset, for glibc and musl alike */
    opterr = 0;
    for (;;) {
        int li = -1;
        int c = getopt_long(ac, av, shorts, lo, &li);
        if (c == -1) break;
        const char *v = optarg;
        char given[64]; /* the option as the user spelled it, without a value */
        const char *last = av[optind - 1 < ac ? optind - 1 : ac - 1];
        if (li >= 0) snprintf(given, sizeof given, "--%s", opts[li].name);
        else if ((c == '?' || c == ':') && !strncmp(last, "--", 2))
            snprintf(given, sizeof given, "%.*s", (int)strcspn(last, "="), last);
        else snprintf(given, sizeof given, "-%c", c == '?' || c == ':' ? optopt : c);
        if (c == '?' || c == ':') {
            const char *what = given;
            if (c == ':') fprintf(err, "error: %s needs a value (sparkd %s --help)\n", what, cname);
            else fprintf(err, "error: unknown option '%s' for %s (sparkd %s --help lists them)\n", what, cname, cname);
            rc = 2;
            break;
        }
        const opt *o = li >= 0 ? &opts[li] : find_key(c);
        if (!o || !(o->cmds & (unsigned)a->cmd)) {
            fprintf(err, "error: %s is not an option of %s (sparkd %s --help lists them)\n", given, cname, cname);
            rc = 2;
            break;
        }
#define INT(lo_, hi_, field)                                                                                   \
    do {                                                                                                       \
        if (parse_int(v, lo_, hi_, &a->field)) { fprintf(err, "error: bad value '%s' for %s (an integer %ld..%ld)\n", v, given, (long)(lo_), (long)(hi_)); rc = 2; } \
        a->has_##field = 1;                                                                                    \
    } while (0)
#define FLT(field)                                                                                             \
    do {                                                                                                       \
        if (parse_float(v, &a->field)) { fprintf(err, "error: bad value '%s' for %s (a number)\n", v, given); rc = 2; } \
        a->has_##field = 1;                                                                                    \
    } while (0)
        switch (c) {
        case 'h': cli_help(out, a->cmd); rc = 1; break;
        case 'm': a->model = v; break;
        case O_CONFIG: a->config = v; break;
        case 'p':
            if (a->cmd == CLI_BENCH) INT(1, 1 << 20, n_prompt);
            else a->prompt = v;
            break;
        case 'n': INT(0, 1 << 24, n_predict); break;
        case 'r': INT(1, 1000, reps); break;
        case 't': INT(1, 1024, threads); break;
        case 'c': /* serve -c FILE: before -c meant the context everywhere, it named serve's INI */
            if (a->cmd == CLI_SERVE && parse_int(v, 0, 1 << 24, &a->ctx)) {
                fprintf(err, "warning: serve -c %s is read as --config %s; -c is --ctx-size everywhere\n", v, v);
                a->config = v;
            } else INT(1, 1 << 24, ctx);
            break;
        case 'b': INT(1, 1 << 16, batch); break;
        case O_PARALLEL: INT(1, 1024, parallel); break;
        case O_NPL: a->npl = v; break;
        case O_DEPTH: INT(0, 1 << 24, depth); break;
        case O_NGL: INT(-1, 1 << 20, gpu_layers); break;
        case O_DEVICE:
            if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto")) {
                fprintf(err, "error: bad value '%s' for %s (cpu, cuda or auto)\n", v, given);
                rc = 2;
            }
            a->device = v;
            break;
        case O_KV: a->kv = v; break;
        case O_PRECISION:
            if (strcmp(v, "exact") && strcmp(v, "fast")) {
                fprintf(err, "error: bad value '%s' for %s (exact or fast)\n", v, given);
                rc = 2;
            }
            a->precision = v;
            break;
        case O_CTK: ctk = v; break;
        case O_CTV: ctv = v; break;
        case O_MMAP: a->use_mmap = 1; break;
        case O_NO_MMAP: a->use_mmap = 0; break;
        case O_TEMP: FLT(temp); break;
        case O_TOP_K: INT(0, 1 << 24, top_k); break;
        case O_TOP_P: FLT(top_p); break;
        case O_MIN_P: FLT(min_p); break;
        case O_REPEAT: FLT(repeat_penalty); break;
        case O_PRESENCE: FLT(presence_penalty); break;
        case O_FREQUENCY: FLT(frequency_penalty); break;
        case O_SEED: {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-') { fprintf(err, "error: bad value '%s' for %s\n", v, given); rc = 2; }
            a->seed = s;
            a->has_seed = 1;
            break;
        }
        case O_LOAD_ONLY: a->load_only = 1; break;
        case O_PRINT_IDS: a->print_ids = 1; break;
        case O_NO_BOS: a->no_bos = 1; break;
        case O_SPECIAL: a->special = 1; break;
        case O_IGNORE_EOS: a->ignore_eos = 1; break;
        case O_LISTEN: a->listen = v; break;
        case O_HOST: a->host = v; break;
        case O_PORT: INT(1, 65535, port); break;
        case O_ALIAS: a->alias = v; break;
        case O_TEMPLATE: a->chat_template_file = v; break;
        case O_API_KEY_FILE: a->api_key_file = v; break;
        case O_API_KEY:
            fprintf(err, "error: --api-key puts the key where every user sees it (ps); use --api-key-file FILE "
                         "or [auth] api_key_sha256 in the INI\n");
            rc = 2;
            break;
        case O_MANIFEST: a->manifest = v; break;
        case O_CONT_BATCHING: case O_METRICS: break;
        case O_MEMORY_LIMIT: INT(1, 1 << 30, memory_limit_mb); break;
        case O_QUICK: a->quick = 1; break;
        case O_KBENCH: a->kbench = 1; break;
        case O_MODEL_ONLY: a->model_only = 1; break;
        case O_TP: INT(1, 8, tp); break;
        case O_TP_RANK: INT(0, 7, tp_rank); break;
        case O_TP_ADDR:
            if (!strchr(v, ':') || strlen(v) >= 256) {
                fprintf(err, "error: bad value '%s' for %s (HOST:PORT)\n", v, given);
                rc = 2;
            }
            a->tp_addr = v;
            break;
        case O_MOE_SPLIT:
            if (strcmp(v, "columns") && strcmp(v, "experts")) {
                fprintf(err, "error: bad value '%s' for %s (columns or experts)\n", v, given);
                rc = 2;
            }
            a->moe_split = v;
            break;
        default: fprintf(err, "error: option %s not handled\n", given); rc = 2; break;
        }
#undef INT
#undef FLT
        if (rc) break;
    }
    if (!rc)
        for (int i = optind; i < ac; i++) {
            if (a->cmd == CLI_VERIFY) a->files[a->n_files++] = av[i];
            else {
                fprintf(err, "error: unexpected argument '%s' for %s (sparkd %s --help)\n", av[i], cname, cname);
                rc = 2;
                break;
            }
        }
    if (!rc && (ctk || ctv)) {
        const char *k = ctk ? ctk : ctv;
        if ((ctk && ctv && strcmp(ctk, ctv)) || (a->kv && strcmp(a->kv, k))) {
            fprintf(err, "error: sparkd keeps K and V in one type: --cache-type-k, --cache-type-v and --kv must agree\n");
            rc = 2;
        } else a->kv = k;
    }
    if (!rc && a->has_port && a->listen) {
        fprintf(err, "error: give --listen or --host/--port, not both\n");
        rc = 2;
    }
    if (!rc && a->host && !a->has_port) {
        fprintf(err, "error: --host needs --port\n");
        rc = 2;
    }
    free(av);
    free(lo);
    if (rc) cli_free(a);
    return rc;
}

void cli_free(cli_args *a) {
    free(a->files);
    a->files = NULL;
    a->n_files = 0;
}
