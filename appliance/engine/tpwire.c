/* tpwire.c — the tensor-parallel control channel. See tpwire.h. */
#include "tpwire.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

void tpwire_hello_of(tpwire_hello *h, const model *m, int rank, int size) {
    memset(h, 0, sizeof *h);
    h->version = TPWIRE_VERSION;
    h->rank = (uint32_t)rank;
    h->size = (uint32_t)size;
    h->endian = 0x01020304u;
    h->n_layer = m->hp.n_layer;
    h->dim = m->hp.dim;
    h->n_head = m->hp.n_head;
    h->n_head_kv = m->hp.n_head_kv;
    h->head_dim = m->hp.head_dim;
    h->ffn_dim = m->hp.ffn_dim;
    h->n_vocab = m->hp.n_vocab;
    h->weights_bytes = m->weights_bytes;
}

int tpwire_hello_check(const tpwire_hello *mine, const tpwire_hello *h, err *e) {
    if (h->version != mine->version || h->endian != mine->endian)
        return err_set(e, ERR_INVALID, "peer speaks control protocol %u (byte order %08x), this rank %u (%08x)",
                       h->version, h->endian, mine->version, mine->endian);
    if (h->size != mine->size)
        return err_set(e, ERR_INVALID, "peer rank %u says the group has %u ranks, this rank says %u", h->rank, h->size,
                       mine->size);
    if (h->rank == 0 || h->rank >= mine->size)
        return err_set(e, ERR_INVALID, "peer says it is rank %u (1..%u expected)", h->rank, mine->size - 1);
    if (h->n_layer != mine->n_layer || h->dim != mine->dim || h->n_head != mine->n_head ||
        h->n_head_kv != mine->n_head_kv || h->head_dim != mine->head_dim || h->ffn_dim != mine->ffn_dim ||
        h->n_vocab != mine->n_vocab || h->weights_bytes != mine->weights_bytes)
        return err_set(e, ERR_INVALID,
                       "rank %u loaded another model (%d layers, dim %d, vocab %d, %llu weight bytes; this rank: %d, %d, "
                       "%d, %llu)",
                       h->rank, h->n_layer, h->dim, h->n_vocab, (unsigned long long)h->weights_bytes, mine->n_layer,
                       mine->dim, mine->n_vocab, (unsigned long long)mine->weights_bytes);
    return 0;
}

/* addr -> host, port ("[v6]:port" too). */
static int split_addr(const char *addr, char *host, size_t hcap, char *port, size_t pcap, err *e) {
    const char *colon = strrchr(addr, ':');
    if (!colon || !colon[1] || strlen(colon + 1) >= pcap)
        return err_set(e, ERR_INVALID, "parallel address '%.200s': want HOST:PORT", addr);
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') { h++; hl -= 2; }
    if (hl >= hcap) return err_set(e, ERR_INVALID, "parallel address '%.200s': host too long", addr);
    memcpy(host, h, hl);
    host[hl] = 0;
    snprintf(port, pcap, "%s", colon + 1);
    return 0;
}

int tpwire_listen(const char *addr, err *e) {
    char host[256], port[16];
    if (split_addr(addr, host, sizeof host, port, sizeof port, e)) return -1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (rc) return err_set(e, ERR_IO, "parallel address %.200s: %s", addr, gai_strerror(rc)), -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, ENGINE_PARALLEL_MAX)) {
        int en = errno;
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return err_set(e, ERR_IO, "parallel: cannot listen on %.200s: %s", addr, strerror(en)), -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static void tune(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int tpwire_accept(int lfd, int timeout_ms, err *e) {
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    int r;
    do r = poll(&p, 1, timeout_ms); while (r < 0 && errno == EINTR);
    if (r == 0) return err_set(e, ERR_UNAVAILABLE, "no connection within %.1f s", timeout_ms / 1000.0), -1;
    if (r < 0) return err_set(e, ERR_IO, "poll: %s", strerror(errno)), -1;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) return err_set(e, ERR_IO, "accept: %s", strerror(errno)), -1;
    tune(fd);
    return fd;
}

int tpwire_connect(const char *addr, int timeout_ms, err *e) {
    char host[256], port[16];
    if (split_addr(addr, host, sizeof host, port, sizeof port, e)) return -1;
    const double end = now_ms() + (timeout_ms < 0 ? 1e12 : timeout_ms);
    int last = 0;
    for (;;) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
        int rc = getaddrinfo(host, port, &hints, &ai);
        if (!rc) {
            for (struct addrinfo *a = ai; a; a = a->ai_next) {
                int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0) { last = errno; continue; }
                if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
                    freeaddrinfo(ai);
                    tune(fd);
                    return fd;
                }
                last = errno;
                close(fd);
            }
            freeaddrinfo(ai);
        }
        if (now_ms() >= end)
            return err_set(e, ERR_UNAVAILABLE, "rank 0 at %.200s did not answer within %.1f s (%s)", addr, timeout_ms / 1000.0,
                           rc ? gai_strerror(rc) : strerror(last)),
                   -1;
        usleep(200 * 1000);
    }
}

/* Waits until fd is ready for `events` or the deadline; 0, or ERR_UNAVAILABLE. */
static int wait_fd(int fd, short events, double end, err *e) {
    for (;;) {
        int ms = end < 0 ? -1 : (int)(end - now_ms());
        if (end >= 0 && ms <= 0) return err_set(e, ERR_UNAVAILABLE, "peer silent past the timeout");
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, ms);
        if (r > 0) return 0;
        if (r < 0 && errno != EINTR) return err_set(e, ERR_IO, "poll: %s", strerror(errno));
    }
}

static int send_all(int fd, const void *p, size_t n, double end, err *e) {
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) { b += w; n -= (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(fd, POLLOUT, end, e);
            if (rc) return rc;
            continue;
        }
        return err_set(e, ERR_UNAVAILABLE, "peer gone (send: %s)", w < 0 ? strerror(errno) : "closed");
    }
    return 0;
}

static int recv_all(int fd, void *p, size_t n, double end, err *e) {
    uint8_t *b = p;
    while (n) {
        int rc = wait_fd(fd, POLLIN, end, e);
        if (rc) return rc;
        ssize_t r = recv(fd, b, n, MSG_DONTWAIT);
        if (r > 0) { b += r; n -= (size_t)r; continue; }
        if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        return err_set(e, ERR_UNAVAILABLE, "peer gone (%s)", r == 0 ? "connection closed" : strerror(errno));
    }
    return 0;
}

int tpwire_send(int fd, uint32_t type, const void *payload, uint32_t len, int timeout_ms, err *e) {
    const double end = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    uint32_t h[3] = {TPWIRE_MAGIC, type, len};
    int rc = send_all(fd, h, sizeof h, end, e);
    if (!rc && len) rc = send_all(fd, payload, len, end, e);
    return rc;
}

int tpwire_recv(int fd, uint32_t *type, void *buf, uint32_t cap, uint32_t *len, int timeout_ms, err *e) {
    const double end = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    uint32_t h[3];
    int rc = recv_all(fd, h, sizeof h, end, e);
    if (rc) return rc;
    if (h[0] != TPWIRE_MAGIC) return err_set(e, ERR_FORMAT, "control frame: bad magic %08x", h[0]);
    if (h[2] > cap) return err_set(e, ERR_FORMAT, "control frame of %u bytes (at most %u)", h[2], cap);
    if (h[2] && (rc = recv_all(fd, buf, h[2], end, e))) return rc;
    *type = h[1];
    *len = h[2];
    return 0;
}

int tpwire_peer_gone(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLERR | POLLNVAL)) return 1;
    char c;
    const ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r > 0) return 0; /* the next frame */
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    return 1; /* EOF or a reset */
}

size_t tpwire_step_cap(int max_seqs, int max_tokens, int max_blocks) {
    return 4 + (size_t)max_seqs * 20 + (size_t)max_tokens * 4 + (size_t)max_seqs * (size_t)max_blocks * 4;
}

static void put32(uint8_t **p, int32_t v) {
    memcpy(*p, &v, 4);
    *p += 4;
}

size_t tpwire_step_encode(uint8_t *buf, size_t cap, const engine_seq *seqs, int n, int kv_block) {
    size_t need = 4;
    for (int i = 0; i < n; i++) need += 20 + (size_t)seqs[i].n * 4 + (size_t)((seqs[i].pos + seqs[i].n - 1) / kv_block + 1) * 4;
    if (need > cap || n < 0) return 0;
    uint8_t *p = buf;
    put32(&p, n);
    for (int i = 0; i < n; i++) {
        const engine_seq *s = &seqs[i];
        const int nb = (s->pos + s->n - 1) / kv_block + 1;
        put32(&p, s->n);
        put32(&p, s->pos);
        put32(&p, s->slot);
        put32(&p, s->want);
        put32(&p, nb);
        memcpy(p, s->tokens, (size_t)s->n * 4);
        p += (size_t)s->n * 4;
        memcpy(p, s->blocks, (size_t)nb * 4);
        p += (size_t)nb * 4;
    }
    return (size_t)(p - buf);
}

int tpwire_step_decode(const uint8_t *buf, size_t len, const tpwire_limits *lim, engine_seq *seqs, int *n, err *e) {
    size_t off = 0;
    int32_t v[5];
    *n = 0;
    if (len < 4 || ((uintptr_t)buf & 3)) return err_set(e, ERR_FORMAT, "step: %zu bytes", len);
    memcpy(v, buf, 4);
    off = 4;
    const int ns = v[0];
    if (ns < 1 || ns > lim->max_seqs) return err_set(e, ERR_FORMAT, "step: %d sequences (1..%d)", ns, lim->max_seqs);
    int total = 0;
    for (int i = 0; i < ns; i++) {
        if (len - off < 20) return err_set(e, ERR_FORMAT, "step: sequence %d truncated", i);
        memcpy(v, buf + off, 20);
        off += 20;
        const int nt = v[0], pos = v[1], slot = v[2], want = v[3], nb = v[4];
        if (nt < 1 || nt > lim->max_tokens - total)
            return err_set(e, ERR_FORMAT, "step: sequence %d has %d tokens (%d left of %d)", i, nt, lim->max_tokens - total,
                           lim->max_tokens);
        if (pos < 0 || pos > lim->n_ctx - nt)
            return err_set(e, ERR_FORMAT, "step: sequence %d at position %d does not fit the context", i, pos);
        if (slot < 0 || slot >= lim->max_seqs) return err_set(e, ERR_FORMAT, "step: sequence %d slot %d", i, slot);
        if (want & ~ENGINE_WANT_LOGITS) return err_set(e, ERR_FORMAT, "step: sequence %d flags %d", i, want);
        if (nb != (pos + nt - 1) / lim->kv_block + 1 || nb > lim->max_blocks)
            return err_set(e, ERR_FORMAT, "step: sequence %d has a block table of %d entries", i, nb);
        if ((len - off) / 4 < (size_t)nt + (size_t)nb) return err_set(e, ERR_FORMAT, "step: sequence %d truncated", i);
        const int32_t *tok = (const int32_t *)(buf + off);
        for (int k = 0; k < nt; k++)
            if (tok[k] < 0 || tok[k] >= lim->n_vocab)
                return err_set(e, ERR_FORMAT, "step: sequence %d token %d out of range", i, tok[k]);
        off += (size_t)nt * 4;
        const int32_t *blk = (const int32_t *)(buf + off);
        off += (size_t)nb * 4;
        for (int k = 0; k < i; k++)
            if (seqs[k].slot == slot) return err_set(e, ERR_FORMAT, "step: slot %d twice", slot);
        engine_seq *s = &seqs[i];
        memset(s, 0, sizeof *s);
        s->tokens = tok;
        s->n = nt;
        s->pos = pos;
        s->blocks = blk;
        s->slot = slot;
        s->want = want;
        total += nt;
    }
    if (off != len) return err_set(e, ERR_FORMAT, "step: %zu trailing bytes", len - off);
    *n = ns;
    return 0;
}
