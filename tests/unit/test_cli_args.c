/* test_cli_args — the option table of appliance/cli.c: --opt=value and --opt value,
 * short forms, the llama-server aliases, per-command validity, the errors, and that
 * `CMD --help` lists exactly CMD's options. (The binaries, glibc and musl, are driven
 * with the same spellings in tests/cli/test_cli.py.) */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "t.h"

static char errbuf[4096], outbuf[16384];

/* Parses a NULL-terminated list; returns cli_parse's code, output in errbuf/outbuf. */
static int P(cli_args *a, ...) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = "sparkd";
    va_list ap;
    va_start(ap, a);
    char *s;
    while ((s = va_arg(ap, char *))) argv[argc++] = s;
    va_end(ap);
    argv[argc] = NULL;
    FILE *e = fmemopen(errbuf, sizeof errbuf, "w"), *o = fmemopen(outbuf, sizeof outbuf, "w");
    memset(errbuf, 0, sizeof errbuf);
    memset(outbuf, 0, sizeof outbuf);
    cli_free(a); /* the previous parse's */
    int rc = cli_parse(a, argc, argv, o, e);
    fclose(e);
    fclose(o);
    return rc;
}

int main(void) {
    cli_args a = {0};
    int rc = P(&a, "run", "-m", "M.gguf", "--prompt=Hello there", "-n32", "--threads=3", "--ctx-size", "512",
               "--temp=0", "--top-k", "40", "--seed=7", "--print-ids", NULL);
    T_OK(rc == 0 && a.cmd == CLI_RUN && !strcmp(a.model, "M.gguf") && !strcmp(a.prompt, "Hello there") &&
         a.n_predict == 32 && a.has_n_predict && a.threads == 3 && a.ctx == 512 && a.temp == 0 && a.has_temp &&
         a.top_k == 40 && a.seed == 7 && a.print_ids, "run: --opt=value, --opt value and -nVALUE (%s)", errbuf);
    rc = P(&a, "run", "-m", "M", "-p", "x", "-c", "256", "-ngl", "99", "-ctk", "f16", "-ctv", "f16", NULL);
    T_OK(rc == 0 && a.ctx == 256 && a.gpu_layers == 99 && a.has_gpu_layers && a.kv && !strcmp(a.kv, "f16"),
         "llama-cli aliases: -c, -ngl, -ctk/-ctv (%s)", errbuf);
    rc = P(&a, "serve", "--config=/etc/sparkd/sparkd.ini", "--host", "0.0.0.0", "--port", "9000", "-np", "8",
           "--gpu-layers=0", "--alias", "qwen3-8b", "--api-key-file", "/k", "--batch-size", "512", "-cb", "--metrics",
           "--no-mmap", NULL);
    T_OK(rc == 0 && a.cmd == CLI_SERVE && !strcmp(a.config, "/etc/sparkd/sparkd.ini") && !strcmp(a.host, "0.0.0.0") &&
         a.port == 9000 && a.parallel == 8 && a.gpu_layers == 0 && a.has_gpu_layers && !strcmp(a.alias, "qwen3-8b") &&
         !strcmp(a.api_key_file, "/k") && a.batch == 512, "serve: llama-server flags map (%s)", errbuf);
    rc = P(&a, "serve", "-c", "etc/sparkd.ini", NULL);
    T_OK(rc == 0 && a.config && !strcmp(a.config, "etc/sparkd.ini") && !a.has_ctx && strstr(errbuf, "warning: serve -c"),
         "serve -c FILE: read as --config with a warning (%s)", errbuf);
    rc = P(&a, "serve", "-c", "4096", "--config", "x.ini", NULL);
    T_OK(rc == 0 && a.ctx == 4096 && a.has_ctx && !strcmp(a.config, "x.ini"), "serve -c N is the context");
    rc = P(&a, "bench", "-m", "M", "-p", "64", "-n", "16", "-r", "2", NULL);
    T_OK(rc == 0 && a.n_prompt == 64 && a.has_n_prompt && a.n_predict == 16 && a.reps == 2, "bench: -p N -n N -r N");
    rc = P(&a, "verify", "--manifest", "S", "a", "b c", NULL);
    T_OK(rc == 0 && !strcmp(a.manifest, "S") && a.n_files == 2 && !strcmp(a.files[1], "b c"), "verify: files");
    rc = P(&a, "verify", "a", "--manifest=S", NULL);
    T_OK(rc == 0 && !strcmp(a.manifest, "S") && a.n_files == 1, "verify: options after files (permuted)");
    rc = P(&a, "serve", "--precision=fast", NULL);
    T_OK(rc == 0 && a.precision && !strcmp(a.precision, "fast"), "serve --precision=fast");
    rc = P(&a, "selftest", "-m", "M", "--tp", "2", "--moe-split", "experts", NULL);
    T_OK(rc == 0 && a.has_tp && a.tp == 2 && a.moe_split && !strcmp(a.moe_split, "experts"),
         "selftest --tp 2 --moe-split experts");

    struct { const char *args[8], *want; } bad[] = {
        {{"run", "--bogus", NULL}, "error: unknown option '--bogus' for run"},
        {{"run", "-Z", NULL}, "error: unknown option '-Z' for run"},
        {{"run", "-m", NULL}, "error: -m needs a value"},
        {{"run", "--model", NULL}, "error: --model needs a value"},
        {{"serve", "-p", "x", NULL}, "error: -p is not an option of serve"},
        {{"run", "--listen=unix:/x", NULL}, "error: --listen is not an option of run"},
        {{"info", "--temp", "0", NULL}, "error: --temp is not an option of info"},
        {{"run", "-n", "many", NULL}, "error: bad value 'many' for -n (an integer 0..16777216)"},
        {{"run", "--ctx-size=0", NULL}, "error: bad value '0' for --ctx-size"},
        {{"run", "--temp", "nan", NULL}, "error: bad value 'nan' for --temp (a number)"},
        {{"serve", "--api-key", "sk-1", NULL}, "error: --api-key puts the key where every user sees it"},
        {{"serve", "--device", "tpu", NULL}, "error: bad value 'tpu' for --device"},
        {{"run", "-ctk", "f16", "-ctv", "q8", NULL}, "error: sparkd keeps K and V in one type"},
        {{"serve", "--host", "h", NULL}, "error: --host needs --port"},
        {{"serve", "--port", "1", "--listen", "unix:/x", NULL}, "error: give --listen or --host/--port, not both"},
        {{"run", "stray", NULL}, "error: unexpected argument 'stray' for run"},
        {{"frobnicate", NULL}, "error: unknown command 'frobnicate'"},
        {{"serve", "--port", "70000", NULL}, "error: bad value '70000' for --port"},
        {{"bench", "--precision", "half", NULL}, "error: bad value 'half' for --precision (exact or fast)"},
        {{"serve", "--moe-split", "rows", NULL}, "error: bad value 'rows' for --moe-split (columns or experts)"},
        {{"run", "--moe-split", "experts", NULL}, "error: --moe-split is not an option of run"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *argv[10] = {"sparkd"};
        int n = 1;
        for (int k = 0; bad[i].args[k]; k++) argv[n++] = (char *)bad[i].args[k];
        FILE *e = fmemopen(errbuf, sizeof errbuf, "w"), *o = fmemopen(outbuf, sizeof outbuf, "w");
        memset(errbuf, 0, sizeof errbuf);
        cli_free(&a);
        rc = cli_parse(&a, n, argv, o, e);
        fclose(e);
        fclose(o);
        T_OK(rc == 2 && !strncmp(errbuf, bad[i].want, strlen(bad[i].want)), "%s (got '%.*s')", bad[i].want,
             (int)strcspn(errbuf, "\n"), errbuf);
    }

    rc = P(&a, "serve", "--help", NULL);
    T_OK(rc == 1 && strstr(outbuf, "--config FILE") && strstr(outbuf, "--host HOST") && strstr(outbuf, "-c, --ctx-size N") &&
         !strstr(outbuf, "--prompt") && !strstr(outbuf, "--print-ids") && !strstr(outbuf, "--load-only"),
         "serve --help lists serve's options only");
    rc = P(&a, "run", "-h", NULL);
    T_OK(rc == 1 && strstr(outbuf, "-p, --prompt TEXT") && strstr(outbuf, "--seed S") && !strstr(outbuf, "--config") &&
         !strstr(outbuf, "--listen"), "run -h lists run's options only");
    rc = P(&a, "verify", "--help", NULL);
    T_OK(rc == 1 && strstr(outbuf, "--manifest FILE") && !strstr(outbuf, "--model"), "verify --help");
    cli_free(&a);
    T_DONE();
}
