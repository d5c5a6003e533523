/* test_sha256 — SHA-256 against the FIPS 180-2 test vectors (incremental and in one
 * call, split at every byte of a message), and the sha256sum manifest reader: valid
 * forms (text/binary mode, escaped names, relative/absolute names) and a hostile
 * table, each with its exact "NAME:LINE: reason". The same files against GNU
 * sha256sum are in tests/ship/test_verify.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"
#include "t.h"

static const char *hex_of(const void *p, size_t n) {
    static char hx[65];
    uint8_t d[32];
    sha256_of(p, n, d);
    sha256_hex(d, hx);
    return hx;
}

static const char *parse(const char *text, sha256_manifest **m) {
    static err e;
    e = (err){0};
    if (sha256_manifest_parse(m, text, strlen(text), "S", "/d", &e) == 0) return "";
    return e.msg;
}

int main(void) {
    /* FIPS 180-2 appendix B / NIST CAVP short messages */
    T_OK(!strcmp(hex_of("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "sha256(abc)");
    T_OK(!strcmp(hex_of("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "sha256('')");
    const char *m2 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    T_OK(!strcmp(hex_of(m2, strlen(m2)), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
         "sha256(448-bit message)");
    char *mil = malloc(1000000);
    memset(mil, 'a', 1000000);
    T_OK(!strcmp(hex_of(mil, 1000000), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
         "sha256(one million 'a')");
    /* incremental = one call, at every split of m2 and in odd pieces of the million */
    int same = 1;
    uint8_t whole[32], part[32];
    sha256_of(m2, strlen(m2), whole);
    for (size_t k = 0; k <= strlen(m2); k++) {
        sha256_ctx c;
        sha256_init(&c);
        sha256_update(&c, m2, k);
        sha256_update(&c, m2 + k, strlen(m2) - k);
        sha256_final(&c, part);
        same &= !memcmp(whole, part, 32);
    }
    sha256_ctx c;
    sha256_init(&c);
    for (size_t off = 0, step = 1; off < 1000000; off += step, step = step * 3 % 9973 + 1)
        sha256_update(&c, mil + off, off + step > 1000000 ? 1000000 - off : step);
    sha256_final(&c, part);
    char ph[65];
    sha256_hex(part, ph);
    T_OK(same && !strcmp(ph, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
         "incremental updates give the same digest at every split");
    free(mil);
    uint8_t d[32];
    T_OK(sha256_parse_hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", 64, d) == 0 &&
         d[0] == 0xba && d[31] == 0xad, "hex parse, upper case");
    T_OK(sha256_parse_hex("ba7816bf", 8, d) == -1 && sha256_parse_hex("g a7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a", 64, d) == -1,
         "hex parse refuses short and non-hex");

    /* manifests */
    sha256_manifest *m = NULL;
    const char *ok_text =
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  models/a.gguf\n"
        "\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 *bin/sparkd\n"
        "\\248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1  odd\\\\name\\nx\n"
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0  /abs/p q";
    const char *r = parse(ok_text, &m);
    T_OK(!r[0] && m && m->n == 4, "valid manifest parses (%s)", r);
    if (m && m->n == 4) {
        T_OK(!strcmp(m->entries[0].name, "models/a.gguf") && !strcmp(m->entries[0].path, "/d/models/a.gguf") &&
             m->entries[0].digest[0] == 0xba, "text mode entry, name resolved against the manifest's directory");
        T_OK(!strcmp(m->entries[1].name, "bin/sparkd"), "binary mode ('*') entry");
        T_OK(!strcmp(m->entries[2].name, "odd\\name\nx"), "escaped name (\\\\ and \\n) unescaped");
        T_OK(!strcmp(m->entries[3].path, "/abs/p q"), "absolute name kept, blanks inside a name kept");
        T_OK(sha256_manifest_find(m, "/d/models/a.gguf") == &m->entries[0] && !sha256_manifest_find(m, "/d/x"),
             "find by resolved path");
    }
    sha256_manifest_free(m);
    struct { const char *text, *want; } bad[] = {
        {"abc  x\n", "S:1: want 64 hex digits"},
        {"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad x\n", "S:1: want 64 hex digits"},
        {"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\tx\n", "S:1: want 64 hex digits"},
        {"\nba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  \n", "S:2: want 64 hex digits"},
        {"zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  x\n", "S:1: want 64 hex digits"},
        {"SHA256 (x) = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n", "S:1: want 64 hex digits"},
        {"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  x\n"
         "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  x\n", "S:2: file listed twice"},
        {"\\ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a\\tb\n", "S:1: bad escape"},
        {"\\ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a\\\n", "S:1: bad escape"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        m = NULL;
        r = parse(bad[i].text, &m);
        T_OK(!strncmp(r, bad[i].want, strlen(bad[i].want)) && !m, "manifest error '%s' (got '%s')", bad[i].want, r);
    }
    {
        static const char nul[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a\0b\n";
        err e = {0};
        m = NULL;
        int rc = sha256_manifest_parse(&m, nul, sizeof nul - 1, "S", "", &e);
        T_OK(rc == ERR_FORMAT && !strcmp(e.msg, "S:1: NUL byte"), "NUL byte refused (%s)", e.msg);
        char *longl = malloc(5000);
        memset(longl, 'a', 4999);
        longl[4999] = 0;
        e = (err){0};
        rc = sha256_manifest_parse(&m, longl, 4999, "S", "", &e);
        T_OK(rc == ERR_FORMAT && !strcmp(e.msg, "S:1: line longer than 4096 bytes"), "long line refused (%s)", e.msg);
        free(longl);
        e = (err){0};
        T_OK(sha256_manifest_load(&m, "/nonexistent/SHA256SUMS", &e) == ERR_IO && strstr(e.msg, "/nonexistent/SHA256SUMS"),
             "missing manifest names its path (%s)", e.msg);
        e = (err){0};
        T_OK(sha256_file("/nonexistent/f", d, &e) == ERR_IO && strstr(e.msg, "/nonexistent/f"), "missing file names its path");
    }
    T_DONE();
}
