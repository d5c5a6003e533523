/* test_config — the INI loader against files written here: defaults, every
 * section, relative paths, and each kind of error with its exact file:line.
 * The SHA-256 digest below is the FIPS 180-2 test vector for "abc". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "t.h"

static char dir[64];

static const char *write_ini(const char *name, const char *text) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loads text; returns the error message ("" on success). */
static const char *load(const char *text, config *c) {
    static err e;
    memset(&e, 0, sizeof e);
    config_defaults(c);
    const char *p = write_ini("t.ini", text);
    if (config_load(c, p, &e) == 0) return "";
    /* strip the directory so expectations read "t.ini:LINE: ..." */
    const char *m = strstr(e.msg, "t.ini");
    return m ? m : e.msg;
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/sparkd-test-config-%d", (int)getpid());
    char cmd[128];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    if (system(cmd)) return 1;
    config c;

    /* the shipped file loads, and says what its comments say */
    err e = {0};
    config_defaults(&c);
    int rc = config_load(&c, "etc/sparkd.ini", &e);
    T_OK(rc == 0, "etc/sparkd.ini loads (%s)", e.msg);
    T_OK(!strcmp(c.listen, "unix:/run/sparkd/sparkd.sock") && c.workers == CONFIG_AUTO && c.max_seqs == 4 && c.n_ctx == 2048,
         "etc/sparkd.ini values");
    T_OK(strstr(c.model_path, "etc/../models/gemma-3-270m-q4_k_m.gguf") != NULL, "relative model path resolved: %s", c.model_path);
    T_OK(strstr(c.chat_template_file, "etc/templates/gemma3.jinja") != NULL, "relative template path resolved");
    T_OK(c.n_keys == 0 && c.max_body_bytes == 1048576 && c.keepalive_ms == 10000, "etc/sparkd.ini limits, no keys");
    T_OK(c.max_queue == CONFIG_AUTO && !strcmp(c.output_format, "auto"), "etc/sparkd.ini: max_queue auto, output_format auto");
    /* auto sizes: the shipped max_seqs 4 queues a swarm of 64; larger max_seqs scale */
    config_resolve_auto(&c);
    T_OK(c.max_queue == 64 && c.workers == 128, "auto: max_seqs 4 -> max_queue 64, workers 128 (%d, %d)", c.max_queue,
         c.workers);
    config_resolve_auto(&c);
    T_OK(c.max_queue == 64 && c.workers == 128, "config_resolve_auto leaves numbers alone");
    config_defaults(&c);
    c.max_seqs = 32;
    config_resolve_auto(&c);
    T_OK(c.max_queue == 512 && c.workers == 552, "auto: max_seqs 32 -> max_queue 512, workers 552 (%d, %d)", c.max_queue,
         c.workers);
    config_defaults(&c);
    c.max_seqs = 256;
    c.max_queue = 0;
    config_resolve_auto(&c);
    T_OK(c.max_queue == 0 && c.workers == 264, "auto workers follow an explicit max_queue 0 (%d)", c.workers);
    c.max_seqs = 1024;
    c.max_queue = CONFIG_AUTO;
    c.workers = CONFIG_AUTO;
    config_resolve_auto(&c);
    T_OK(c.max_queue == 1024 && c.workers == 1024, "auto: capped at 1024 (%d, %d)", c.max_queue, c.workers);
    const char *m0 = load("[model]\npath = /m.gguf\noutput_format = harmony\n[server]\nworkers = auto\n[limits]\nmax_queue = 7\n", &c);
    T_OK(!m0[0] && !strcmp(c.output_format, "harmony") && c.workers == CONFIG_AUTO && c.max_queue == 7,
         "output_format, workers = auto, max_queue = 7 read (%s)", m0);

    const char *m = load("[server]\nlisten = 127.0.0.1:9000 ; inline comment\nworkers = 3\n[model]\npath = /m.gguf\n"
                         "temperature = 0.5\ntop_k = 40\n[auth]\n"
                         "api_key_sha256 = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
                         "api_key_sha256 = BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD\n", &c);
    T_OK(!m[0], "valid file loads (%s)", m);
    T_OK(!strcmp(c.listen, "127.0.0.1:9000") && c.workers == 3 && !strcmp(c.model_path, "/m.gguf"), "values read");
    T_OK(c.sp.temperature == 0.5f && c.sp.top_k == 40, "sampling defaults read");
    T_OK(c.n_keys == 2 && c.key_sha256[0][0] == 0xba && c.key_sha256[0][31] == 0xad &&
         !memcmp(c.key_sha256[0], c.key_sha256[1], 32), "api keys parsed (hex either case)");

    struct { const char *text, *want; } bad[] = {
        {"[server]\nworkers = 4\nbogus = 1\n", "t.ini:3: unknown key 'bogus' in [server]"},
        {"[server]\n\n[nonsense]\nx = 1\n", "t.ini:4: unknown section [nonsense] (key 'x')"},
        {"x = 1\n", "t.ini:1: key 'x' outside any section"},
        {"[server]\nworkers = 0\n", "t.ini:2: workers: 0 (range 1..1024) is out of range"},
        {"[model]\noutput_format = xml\n", "t.ini:2: output_format: 'xml' is not one of auto, plain, qwen3, qwen3-coder, harmony, deepseek, deepseek-r1, deepseek-v3.1, deepseek-v3.2"},
        {"[limits]\nmax_queue = lots\n", "t.ini:2: max_queue: 'lots' is not an integer"},
        {"[server]\nworkers = 12abc\n", "t.ini:2: workers: '12abc' is not an integer"},
        {"[server]\nworkers = 99999999999999999999\n", "t.ini:2: workers: '99999999999999999999' is not an integer"},
        {"[model]\ntemperature = nan\n", "t.ini:2: temperature: 'nan' is not a finite number"},
        {"[model]\ntemperature = 3\n", "t.ini:2: temperature: 3 (range 0..2) is out of range"},
        {"[log]\nrequests = maybe\n", "t.ini:2: requests: 'maybe' is not a boolean (true/false)"},
        {"[log]\nlevel = loud\n", "t.ini:2: level: 'loud' is not one of error, info, debug"},
        {"[auth]\napi_key_sha256 = abc\n", "t.ini:2: api_key_sha256: want 64 hex digits"},
        {"[auth]\napi_key_sha256 = zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n",
         "t.ini:2: api_key_sha256: 'zz78"},
        {"[server]\nthis line has no equals sign\n", "t.ini:2: syntax error"},
        {"[server\nworkers = 1\n", "t.ini:1: syntax error"},
        {"[server]\nworkers = 1\nbad line\nbogus = 2\n", "t.ini:3: syntax error"},
        {"[server]\nlisten = unix:/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
         "t.ini:2: line longer than 190 bytes"},
        {"[limits]\nmax_top_logprobs = 21\n", "t.ini:2: max_top_logprobs: 21 (range 0..20) is out of range"},
        {"[engine]\nkv_type = f8\n", "t.ini:2: kv_type: 'f8' is not one of f32, f16, q8"},
        {"[engine]\nprecision = half\n", "t.ini:2: precision: 'half' is not one of exact, fast"},
        /* the line grammar of config.c */
        {"[server]\n = 4\n", "t.ini:2: syntax error (empty key before '=')"},
        {"[server]\n  workers\n", "t.ini:2: syntax error (want key = value or [section])"},
        {"[aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\n", "t.ini:1: section name longer than 63"},
        {"[server]\nworkers = 4;5\n", "t.ini:2: workers: '4;5' is not an integer"},
        {"[server]\r\nworkers = 0\r\n", "t.ini:2: workers: 0 (range 1..1024) is out of range"},
        {"\xEF\xBB\xBF[server]\nbogus = 1\n", "t.ini:2: unknown key 'bogus' in [server]"},
        {"[ server ] trailing text\n\n\n[model]\nid =\n[x]\ny = 1\n", "t.ini:7: unknown section [x] (key 'y')"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        m = load(bad[i].text, &c);
        T_OK(!strncmp(m, bad[i].want, strlen(bad[i].want)), "error '%s' (got '%s')", bad[i].want, m);
    }
    m = load("\xEF\xBB\xBF  [ server ]  \r\n# c\n  ; c\n\tworkers\t=\t7 ; seven\n\n[model]\nid = a;b\n", &c);
    T_OK(!m[0] && c.workers == 7 && !strcmp(c.model_id, "a;b"), "BOM, CRLF, blanks, comments, ';' inside a value (%s)", m);
    {
        static const char nul[] = "[server]\nworkers = 4\0\n";
        e = (err){0};
        config_defaults(&c);
        rc = config_load_text(&c, nul, sizeof nul - 1, "mem", NULL, &e);
        T_OK(rc == ERR_FORMAT && !strcmp(e.msg, "mem:2: NUL byte in the file"), "NUL byte refused (%s)", e.msg);
        e = (err){0};
        rc = config_load_text(&c, "[server]\nworkers = 5", 20, "mem", NULL, &e);
        T_OK(rc == 0 && c.workers == 5, "last line without a newline (%s)", e.msg);
        char *big = malloc((1 << 20) + 2);
        memset(big, ';', (1 << 20) + 1);
        for (int i = 100; i < (1 << 20); i += 100) big[i] = '\n';
        big[(1 << 20) + 1] = 0;
        FILE *bf = fopen(write_ini("big.ini", ""), "w");
        fwrite(big, 1, (1 << 20) + 1, bf);
        fclose(bf);
        free(big);
        e = (err){0};
        char bp[160];
        snprintf(bp, sizeof bp, "%s/big.ini", dir);
        T_OK(config_load(&c, bp, &e) == ERR_FORMAT && strstr(e.msg, "larger than 1 MiB"), "file over 1 MiB refused (%s)", e.msg);
    }
    {   /* --api-key-file: keys hashed, comments and blanks skipped; others may not read it */
        const char *kf = write_ini("keys", "  abc  \n# a comment\n\nsecond-key\n");
        chmod(kf, 0600);
        config_defaults(&c);
        e = (err){0};
        rc = config_add_key_file(&c, kf, &e);
        T_OK(rc == 0 && c.n_keys == 2 && c.key_sha256[0][0] == 0xba && c.key_sha256[0][31] == 0xad,
             "api key file: two keys, stored as SHA-256 (sha256(abc) = ba78..ad) (%s)", e.msg);
        chmod(kf, 0644);
        e = (err){0};
        rc = config_add_key_file(&c, kf, &e);
        T_OK(rc == ERR_INVALID && strstr(e.msg, "readable by every user"), "api key file readable by all: refused (%s)", e.msg);
        e = (err){0};
        T_OK(config_add_key_file(&c, "/nonexistent/keys", &e) == ERR_IO && strstr(e.msg, "/nonexistent/keys"),
             "missing api key file named");
    }
    /* [parallel]: the shipped defaults, every key, and the cross-field checks */
    config_defaults(&c);
    T_OK(c.parallel.size == 1 && c.parallel.rank == 0 && c.parallel.connect_timeout_s == 300 &&
             c.parallel.step_timeout_s == 30 && !c.parallel.addr[0] && c.parallel.moe_split == ENGINE_MOE_SPLIT_COLUMNS,
         "[parallel] defaults: off, moe_split columns");
    m = load("[model]\npath = /m.gguf\n[parallel]\nsize = 2\nrank = 1\naddress = 10.0.0.1:29500\ngpu = 1\n"
             "connect_timeout_s = 60\nstep_timeout_s = 5\nnccl_library = /opt/nccl/libnccl.so.2\nmoe_split = experts\n", &c);
    e = (err){0};
    T_OK(!m[0] && c.parallel.size == 2 && c.parallel.rank == 1 && !strcmp(c.parallel.addr, "10.0.0.1:29500") &&
             c.parallel.gpu == 1 && c.parallel.connect_timeout_s == 60 && c.parallel.step_timeout_s == 5 &&
             !strcmp(c.parallel.nccl_lib, "/opt/nccl/libnccl.so.2") && c.parallel.moe_split == ENGINE_MOE_SPLIT_EXPERTS &&
             config_check(&c, &e) == 0,
         "[parallel] every key read (%s %s)", m, e.msg);
    struct { const char *text, *want; } bad_par[] = {
        {"[parallel]\nsize = 9\n", "t.ini:2: size: 9 (range 1..8) is out of range"},
        {"[parallel]\nsize = 0\n", "t.ini:2: size: 0 (range 1..8) is out of range"},
        {"[parallel]\nrank = -1\n", "t.ini:2: rank: -1 (range 0..7) is out of range"},
        {"[parallel]\naddress = nohost\n", "t.ini:2: address: 'nohost' is not HOST:PORT"},
        {"[parallel]\nstep_timeout_s = 0\n", "t.ini:2: step_timeout_s: 0 (range 1..3600) is out of range"},
        {"[parallel]\nports = 1\n", "t.ini:2: unknown key 'ports' in [parallel]"},
        {"[parallel]\nmoe_split = rows\n", "t.ini:2: moe_split: 'rows' is not one of columns, experts"},
    };
    for (size_t i = 0; i < sizeof bad_par / sizeof *bad_par; i++) {
        m = load(bad_par[i].text, &c);
        T_OK(!strcmp(m, bad_par[i].want), "[parallel] refused: '%s' (%s)", bad_par[i].want, m);
    }
    m = load("[model]\npath = /m.gguf\n[parallel]\nsize = 2\nrank = 2\naddress = h:1\n", &c);
    e = (err){0};
    T_OK(!m[0] && config_check(&c, &e) == ERR_INVALID && strstr(e.msg, "rank 2 of size 2"), "rank >= size refused (%s)",
         e.msg);
    m = load("[model]\npath = /m.gguf\n[parallel]\nsize = 2\n", &c);
    e = (err){0};
    T_OK(!m[0] && config_check(&c, &e) == ERR_INVALID && strstr(e.msg, "needs address"), "size 2 without address refused (%s)",
         e.msg);
    m = load("[engine]\nprecision = fast\n", &c);
    T_OK(!m[0] && c.precision == ENGINE_PRECISION_FAST, "precision = fast read (%s)", m);
    m = load("[engine]\nkv_type = q8\n", &c);
    T_OK(!m[0] && c.kv_type == 2, "kv_type = q8 read (%s)", m);
    e = (err){0};
    config_defaults(&c);
    T_OK(config_load(&c, "/nonexistent/x.ini", &e) == ERR_IO, "missing file -> ERR_IO");
    config_defaults(&c);
    e = (err){0};
    T_OK(config_check(&c, &e) == ERR_INVALID && strstr(e.msg, "no model"), "no model -> clear error");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) return 1;
    T_DONE();
}
