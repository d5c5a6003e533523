/* test_tpwire — the tensor-parallel control channel: STEP encoding round trip, the
 * hostile-case table of the decoder (each refusal with its message), frames over a real
 * socket pair, timeouts, a peer that is missing or goes away, the HELLO fingerprint. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "t.h"
#include "tpwire.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const tpwire_limits LIM = {.max_seqs = 4, .max_tokens = 64, .max_blocks = 8, .kv_block = 16, .n_vocab = 1000, .n_ctx = 128};

/* A payload built field by field (little-endian int32s). */
typedef struct pb {
    int32_t w[256];
    int n;
} pb;
static void P(pb *b, int32_t v) { b->w[b->n++] = v; }

static int dec(const pb *b, size_t len, err *e) {
    static int32_t buf[256];
    memcpy(buf, b->w, sizeof buf);
    engine_seq seqs[4];
    int n = 0;
    memset(e, 0, sizeof *e);
    return tpwire_step_decode((const uint8_t *)buf, len, &LIM, seqs, &n, e);
}

/* One sequence header + tokens + blocks appended. */
static void seq(pb *b, int nt, int pos, int slot, int want, int nb, int tok, int blk) {
    P(b, nt); P(b, pos); P(b, slot); P(b, want); P(b, nb);
    for (int i = 0; i < nt && b->n < 250; i++) P(b, tok + i);
    for (int i = 0; i < nb && b->n < 250; i++) P(b, blk + i);
}

static int port_of(int fd) {
    struct sockaddr_in sa;
    socklen_t l = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &l);
    return ntohs(sa.sin_port);
}

typedef struct conn_arg {
    char addr[64];
    int fd;
    err e;
} conn_arg;

static void *connector(void *p) {
    conn_arg *a = p;
    a->fd = tpwire_connect(a->addr, 5000, &a->e);
    return NULL;
}

int main(void) {
    err e;
    /* round trip: prefill of 20 tokens at 0 (2 blocks) and a decode at 40 (3 blocks) */
    int32_t t1[20], t2[1] = {999}, b1[2] = {5, 6}, b2[3] = {1, 2, 7};
    for (int i = 0; i < 20; i++) t1[i] = i * 3;
    engine_seq in[2] = {{.tokens = t1, .n = 20, .pos = 0, .blocks = b1, .slot = 2, .want = 0},
                        {.tokens = t2, .n = 1, .pos = 40, .blocks = b2, .slot = 0, .want = ENGINE_WANT_LOGITS}};
    static int32_t buf[512];
    size_t cap = tpwire_step_cap(LIM.max_seqs, LIM.max_tokens, LIM.max_blocks);
    T_OK(cap <= sizeof buf, "step cap %zu", cap);
    size_t len = tpwire_step_encode((uint8_t *)buf, cap, in, 2, 16);
    T_OK(len == 4 + 2 * 20 + 20 * 4 + 2 * 4 + 4 + 3 * 4, "encoded %zu bytes", len);
    engine_seq out[4];
    int n = 0;
    memset(&e, 0, sizeof e);
    int rc = tpwire_step_decode((const uint8_t *)buf, len, &LIM, out, &n, &e);
    T_OK(rc == 0 && n == 2 && out[0].n == 20 && out[0].pos == 0 && out[0].slot == 2 && out[0].want == 0 &&
             !memcmp(out[0].tokens, t1, sizeof t1) && !memcmp(out[0].blocks, b1, sizeof b1) && out[1].n == 1 &&
             out[1].pos == 40 && out[1].tokens[0] == 999 && out[1].want == ENGINE_WANT_LOGITS &&
             !memcmp(out[1].blocks, b2, sizeof b2),
         "step round trip (%s)", e.msg);
    T_OK(tpwire_step_encode((uint8_t *)buf, len - 1, in, 2, 16) == 0, "encode into too small a buffer: 0");

    /* the decoder's hostile cases */
    struct { const char *name, *want; pb b; int len_adj; } cases[16];
    int nc = 0;
#define CASE(nm, w) (cases[nc].name = (nm), cases[nc].want = (w), memset(&cases[nc].b, 0, sizeof(pb)), cases[nc].len_adj = 0, &cases[nc++].b)
    pb *b;
    b = CASE("zero sequences", "0 sequences"); P(b, 0);
    b = CASE("more sequences than slots", "5 sequences"); P(b, 5);
    b = CASE("negative sequence count", "-1 sequences"); P(b, -1);
    b = CASE("header truncated", "sequence 0 truncated"); P(b, 1); P(b, 1); P(b, 0);
    b = CASE("zero tokens", "has 0 tokens"); P(b, 1); seq(b, 0, 0, 0, 0, 1, 1, 0);
    b = CASE("tokens over max_tokens", "has 65 tokens"); P(b, 1); seq(b, 65, 0, 0, 0, 5, 1, 0);
    b = CASE("position past the context", "does not fit the context"); P(b, 1); seq(b, 1, 128, 0, 0, 9, 1, 0);
    b = CASE("negative position", "does not fit the context"); P(b, 1); seq(b, 1, -1, 0, 0, 1, 1, 0);
    b = CASE("slot out of range", "slot 4"); P(b, 1); seq(b, 1, 0, 4, 0, 1, 1, 0);
    b = CASE("unknown flags", "flags 2"); P(b, 1); seq(b, 1, 0, 0, 2, 1, 1, 0);
    b = CASE("block table too short", "block table of 1 entries"); P(b, 1); seq(b, 1, 16, 0, 0, 1, 1, 0);
    b = CASE("token id out of vocabulary", "token 1000 out of range"); P(b, 1); seq(b, 1, 0, 0, 0, 1, 1000, 0);
    b = CASE("payload truncated", "sequence 0 truncated"); P(b, 1); seq(b, 3, 0, 0, 0, 1, 1, 0); cases[nc - 1].len_adj = -4;
    b = CASE("trailing bytes", "4 trailing bytes"); P(b, 1); seq(b, 1, 0, 0, 0, 1, 1, 0); P(b, 7);
    b = CASE("slot used twice", "slot 1 twice"); P(b, 2); seq(b, 1, 0, 1, 0, 1, 1, 0); seq(b, 1, 0, 1, 0, 1, 1, 0);
    for (int i = 0; i < nc; i++) {
        rc = dec(&cases[i].b, (size_t)(cases[i].b.n * 4 + cases[i].len_adj), &e);
        T_OK(rc == ERR_FORMAT && strstr(e.msg, cases[i].want), "step decode refuses %s (%s)", cases[i].name, e.msg);
    }
    T_OK(dec(&cases[0].b, 2, &e) == ERR_FORMAT, "a step of 2 bytes refused");
    {
        pb ok = {0};
        P(&ok, 1);
        seq(&ok, 2, 14, 3, 1, 1, 5, 9); /* positions 14, 15: one block */
        T_OK(dec(&ok, (size_t)ok.n * 4, &e) == 0, "a well-formed step decodes (%s)", e.msg);
    }

    /* sockets: a listener on an ephemeral port, a connection, frames both ways */
    memset(&e, 0, sizeof e);
    int lfd = tpwire_listen("127.0.0.1:0", &e);
    T_OK(lfd >= 0, "listen on 127.0.0.1:0 (%s)", e.msg);
    conn_arg ca = {.fd = -1};
    snprintf(ca.addr, sizeof ca.addr, "127.0.0.1:%d", port_of(lfd));
    pthread_t th;
    pthread_create(&th, NULL, connector, &ca);
    memset(&e, 0, sizeof e);
    int sfd = tpwire_accept(lfd, 5000, &e);
    pthread_join(th, NULL);
    T_OK(sfd >= 0 && ca.fd >= 0, "accept + connect (%s %s)", e.msg, ca.e.msg);
    const int cfd = ca.fd;
    T_OK(!tpwire_peer_gone(sfd) && !tpwire_peer_gone(cfd), "both ends alive");
    memset(&e, 0, sizeof e);
    rc = tpwire_send(sfd, TPWIRE_STEP, buf, (uint32_t)len, 1000, &e);
    T_OK(!tpwire_peer_gone(cfd), "pending data is not a gone peer");
    uint32_t type = 0, rlen = 0;
    static int32_t rbuf[512];
    int rc2 = tpwire_recv(cfd, &type, rbuf, sizeof rbuf, &rlen, 1000, &e);
    T_OK(rc == 0 && rc2 == 0 && type == TPWIRE_STEP && rlen == len && !memcmp(rbuf, buf, len), "a STEP frame crosses (%s)",
         e.msg);
    memset(&e, 0, sizeof e);
    double t0 = now_s();
    rc = tpwire_recv(cfd, &type, rbuf, sizeof rbuf, &rlen, 300, &e);
    double dt = now_s() - t0;
    T_OK(rc == ERR_UNAVAILABLE && dt >= 0.25 && dt < 10.0, "recv times out after 300 ms (%.2f s, %s)", dt, e.msg);
    memset(&e, 0, sizeof e);
    rc = tpwire_send(sfd, TPWIRE_STEP, buf, (uint32_t)len, 1000, &e);
    memset(&e, 0, sizeof e);
    rc = tpwire_recv(cfd, &type, rbuf, 8, &rlen, 1000, &e);
    T_OK(rc == ERR_FORMAT && strstr(e.msg, "at most 8"), "a frame over the receiver's cap refused (%s)", e.msg);
    {
        uint32_t junk[3] = {0xdeadbeef, 1, 0};
        int fds[2];
        socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
        (void)!write(fds[0], junk, sizeof junk);
        memset(&e, 0, sizeof e);
        rc = tpwire_recv(fds[1], &type, rbuf, sizeof rbuf, &rlen, 1000, &e);
        T_OK(rc == ERR_FORMAT && strstr(e.msg, "bad magic"), "bad magic refused (%s)", e.msg);
        close(fds[0]);
        close(fds[1]);
    }
    /* the peer goes away: gone on the other side, recv and send say so */
    close(cfd);
    usleep(50 * 1000);
    T_OK(tpwire_peer_gone(sfd), "closed peer is gone");
    memset(&e, 0, sizeof e);
    uint8_t big[1 << 16];
    memset(big, 0, sizeof big);
    rc = 0;
    for (int i = 0; i < 64 && !rc; i++) rc = tpwire_send(sfd, TPWIRE_STEP, big, sizeof big, 1000, &e);
    T_OK(rc == ERR_UNAVAILABLE && strstr(e.msg, "peer gone"), "send to a closed peer fails, no SIGPIPE (%s)", e.msg);
    close(sfd);
    /* nobody connects: accept times out; nobody listens: connect gives up after its timeout */
    memset(&e, 0, sizeof e);
    t0 = now_s();
    rc = tpwire_accept(lfd, 300, &e);
    T_OK(rc < 0 && e.code == ERR_UNAVAILABLE, "accept times out (%s)", e.msg);
    char dead[64];
    snprintf(dead, sizeof dead, "127.0.0.1:%d", port_of(lfd));
    close(lfd);
    memset(&e, 0, sizeof e);
    t0 = now_s();
    rc = tpwire_connect(dead, 700, &e);
    dt = now_s() - t0;
    T_OK(rc < 0 && e.code == ERR_UNAVAILABLE && strstr(e.msg, "did not answer within") && dt >= 0.6 && dt < 10,
         "connect to a missing rank 0 gives up after the timeout (%.2f s, %s)", dt, e.msg);
    memset(&e, 0, sizeof e);
    T_OK(tpwire_listen("nohost", &e) < 0 && strstr(e.msg, "want HOST:PORT"), "address without a port refused (%s)", e.msg);

    /* the HELLO fingerprint */
    model m;
    memset(&m, 0, sizeof m);
    m.hp.n_layer = 4; m.hp.dim = 256; m.hp.n_head = 4; m.hp.n_head_kv = 2; m.hp.head_dim = 64; m.hp.ffn_dim = 768;
    m.hp.n_vocab = 1000; m.weights_bytes = 12345;
    tpwire_hello mine, h;
    tpwire_hello_of(&mine, &m, 0, 2);
    tpwire_hello_of(&h, &m, 1, 2);
    memset(&e, 0, sizeof e);
    T_OK(tpwire_hello_check(&mine, &h, &e) == 0, "same model, rank 1 of 2: accepted (%s)", e.msg);
    h.weights_bytes++;
    memset(&e, 0, sizeof e);
    T_OK(tpwire_hello_check(&mine, &h, &e) == ERR_INVALID && strstr(e.msg, "another model"), "another model refused (%s)", e.msg);
    tpwire_hello_of(&h, &m, 2, 2);
    memset(&e, 0, sizeof e);
    T_OK(tpwire_hello_check(&mine, &h, &e) == ERR_INVALID && strstr(e.msg, "rank 2"), "rank out of the group refused (%s)", e.msg);
    tpwire_hello_of(&h, &m, 1, 3);
    memset(&e, 0, sizeof e);
    T_OK(tpwire_hello_check(&mine, &h, &e) == ERR_INVALID && strstr(e.msg, "3 ranks"), "another group size refused (%s)", e.msg);
    T_DONE();
}
