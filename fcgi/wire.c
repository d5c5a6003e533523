/* wire.c — the FastCGI 1.0 record layer, responder role, written from the
 * specification (no libfcgi).
 *
 * One fcgi_conn per open connection; requests on it are served one after the
 * other (a second request id while one is active is refused with
 * FCGI_CANT_MPX_CONN, as the spec allows). Management records (request id 0)
 * are answered at once: FCGI_GET_VALUES with FCGI_MAX_CONNS / FCGI_MAX_REQS /
 * FCGI_MPXS_CONNS, every other type with FCGI_UNKNOWN_TYPE; nothing is kept.
 *
 * Bounds: a request's PARAMS stream is at most FCGI_MAX_PARAMS_BYTES bytes and
 * FCGI_MAX_PARAMS pairs; a name or value length past the bytes received is a
 * protocol error (CVE-2025-23016's shape). Every buffer is allocated at
 * fcgi_conn_init.
 *
 * The request body (STDIN) is read up to CONTENT_LENGTH and the stream's
 * closing empty record is left in the socket until the reply is complete
 * (fcgi_conn_end). That record is never more than 8 bytes, and it matters: a
 * process that dies holding unread bytes makes the kernel reset the
 * connection (unix: ECONNRESET at the peer; TCP: RST), and nginx answers an
 * upstream reset mid-response by aborting the client connection instead of
 * ending the response cleanly, as it does on a plain EOF. So a crash mid-stream
 * reaches the client as a cut connection (INSTALL.md, "Faults").
 *
 * A peer that half-closes after a complete request (shutdown(SHUT_WR)) is
 * still served: only a hang-up (POLLHUP/POLLERR) or a failed write counts as
 * gone. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fcgi.h"

enum {
    T_BEGIN = 1, T_ABORT = 2, T_END = 3, T_PARAMS = 4, T_STDIN = 5, T_STDOUT = 6, T_STDERR = 7, T_DATA = 8,
    T_GET_VALUES = 9, T_GET_VALUES_RESULT = 10, T_UNKNOWN_TYPE = 11,
};
enum { ROLE_RESPONDER = 1, FLAG_KEEP_CONN = 1 };
enum { ST_COMPLETE = 0, ST_CANT_MPX = 1, ST_UNKNOWN_ROLE = 3 };

typedef struct hdr {
    int type;
    unsigned id;
    size_t clen, plen; /* content and padding lengths */
} hdr;

static void put_hdr(uint8_t h[8], int type, unsigned id, size_t clen) {
    h[0] = 1;
    h[1] = (uint8_t)type;
    h[2] = (uint8_t)(id >> 8);
    h[3] = (uint8_t)id;
    h[4] = (uint8_t)(clen >> 8);
    h[5] = (uint8_t)clen;
    h[6] = 0; /* no padding */
    h[7] = 0;
}

static int send_record(fcgi_conn *c, int type, unsigned id, const void *p, size_t n) {
    uint8_t h[8];
    put_hdr(h, type, id, n);
    struct iovec iov[2] = {{h, 8}, {(void *)p, n}};
    if (c->io.write(c->io.u, iov, n ? 2 : 1)) { c->closed = 1; return -1; }
    return 0;
}

static int send_end(fcgi_conn *c, unsigned id, int protocol_status) {
    uint8_t b[8] = {0, 0, 0, 0, (uint8_t)protocol_status, 0, 0, 0};
    return send_record(c, T_END, id, b, 8);
}

/* Reads exactly n bytes. 0, or -1 (EOF/error: the connection is finished). */
static int read_full(fcgi_conn *c, void *p, size_t n, int idle) {
    uint8_t *q = p;
    while (n) {
        ssize_t k = c->io.read(c->io.u, q, n, idle);
        if (k <= 0) { c->closed = 1; return -1; }
        q += k;
        n -= (size_t)k;
        idle = 0; /* a record started: the rest is not a wait between requests */
    }
    return 0;
}

static int skip(fcgi_conn *c, size_t n) {
    while (n) {
        size_t k = n < c->scratch_cap ? n : c->scratch_cap;
        if (read_full(c, c->scratch, k, 0)) return -1;
        n -= k;
    }
    return 0;
}

/* 1 with *h filled; 0 on a clean EOF at a record boundary; -1 on an error;
 * 2 when idle and nothing has arrived yet (nothing was read). */
static int read_hdr(fcgi_conn *c, hdr *h, int idle) {
    uint8_t b[8];
    ssize_t k = c->io.read(c->io.u, b, 8, idle);
    if (k == FCGI_IO_WOULD_WAIT && idle) return 2;
    if (k == 0) { c->closed = 1; return 0; }
    if (k < 0) { c->closed = 1; return -1; }
    if (k < 8 && read_full(c, b + k, 8 - (size_t)k, 0)) return -1;
    if (b[0] != 1) { c->closed = 1; return -1; } /* only version 1 exists */
    h->type = b[1];
    h->id = (unsigned)b[2] << 8 | b[3];
    h->clen = (size_t)b[4] << 8 | b[5];
    h->plen = b[6];
    return 1;
}

/* One name-value pair length (1 or 4 bytes) at p[*at..n). -1: cut short. */
static long nv_len(const uint8_t *p, size_t n, size_t *at) {
    if (*at >= n) return -1;
    if (p[*at] < 0x80) return p[(*at)++];
    if (n - *at < 4) return -1;
    long v = (long)(p[*at] & 0x7f) << 24 | (long)p[*at + 1] << 16 | (long)p[*at + 2] << 8 | p[*at + 3];
    *at += 4;
    return v;
}

/* FCGI_GET_VALUES: answers the variables we know, ignores the rest. */
static int get_values(fcgi_conn *c, size_t n) {
    const uint8_t *p = c->scratch;
    uint8_t out[256];
    size_t o = 0, at = 0;
    while (at < n) {
        long nl = nv_len(p, n, &at), vl = nv_len(p, n, &at);
        if (nl < 0 || vl < 0 || (size_t)nl > n - at || (size_t)vl > n - at - (size_t)nl) break;
        const char *name = (const char *)p + at;
        at += (size_t)nl + (size_t)vl;
        char val[16];
        if (nl == 14 && !memcmp(name, "FCGI_MAX_CONNS", 14)) snprintf(val, sizeof val, "%d", c->max_conns);
        else if (nl == 13 && !memcmp(name, "FCGI_MAX_REQS", 13)) snprintf(val, sizeof val, "%d", c->max_conns);
        else if (nl == 15 && !memcmp(name, "FCGI_MPXS_CONNS", 15)) snprintf(val, sizeof val, "0");
        else continue;
        size_t vlen = strlen(val);
        if (o + 2 + (size_t)nl + vlen > sizeof out) break;
        out[o++] = (uint8_t)nl;
        out[o++] = (uint8_t)vlen;
        memcpy(out + o, name, (size_t)nl);
        o += (size_t)nl;
        memcpy(out + o, val, vlen);
        o += vlen;
    }
    return send_record(c, T_GET_VALUES_RESULT, 0, out, o);
}

/* A record that is not part of the active request's flow: management records
 * are answered, records of other request ids refused or dropped. Reads the
 * content and padding. 0, or -1 (connection finished). */
static int other_record(fcgi_conn *c, const hdr *h) {
    if (h->id == 0) {
        if (h->type == T_GET_VALUES) { /* content and padding fit the scratch buffer together */
            if (read_full(c, c->scratch, h->clen + h->plen, 0)) return -1;
            return get_values(c, h->clen);
        }
        if (skip(c, h->clen + h->plen)) return -1;
        uint8_t b[8] = {(uint8_t)h->type, 0, 0, 0, 0, 0, 0, 0};
        return send_record(c, T_UNKNOWN_TYPE, 0, b, 8);
    }
    if (skip(c, h->clen + h->plen)) return -1;
    if (h->type == T_BEGIN) return send_end(c, h->id, ST_CANT_MPX); /* one request at a time */
    return 0; /* PARAMS/STDIN/ABORT of a request we refused: nothing to do */
}

/* The pairs of the raw PARAMS stream into c->env (NUL-terminated name, value). */
static int parse_params(fcgi_conn *c) {
    const uint8_t *p = (const uint8_t *)c->raw;
    size_t n = c->nraw, at = 0, o = 0;
    c->nparams = 0;
    while (at < n) {
        long nl = nv_len(p, n, &at), vl = nv_len(p, n, &at);
        if (nl < 0 || vl < 0 || (size_t)nl > n - at || (size_t)vl > n - at - (size_t)nl) return -1;
        if (c->nparams == FCGI_MAX_PARAMS) return -1;
        c->param_at[c->nparams++] = o;
        memcpy(c->env + o, p + at, (size_t)nl);
        o += (size_t)nl;
        c->env[o++] = 0;
        memcpy(c->env + o, p + at + nl, (size_t)vl);
        o += (size_t)vl;
        c->env[o++] = 0;
        at += (size_t)nl + (size_t)vl;
    }
    return 0;
}

int fcgi_conn_init(fcgi_conn *c, fcgi_io io, int max_conns) {
    memset(c, 0, sizeof *c);
    c->io = io;
    c->max_conns = max_conns;
    c->scratch_cap = 65536 + 256;
    c->scratch = malloc(c->scratch_cap);
    c->raw = malloc(FCGI_MAX_PARAMS_BYTES);
    c->env = malloc(FCGI_MAX_PARAMS_BYTES + 2 * FCGI_MAX_PARAMS);
    c->out = malloc(FCGI_OUT_CAP);
    if (!c->scratch || !c->raw || !c->env || !c->out) { fcgi_conn_free(c); return -1; }
    return 0;
}

void fcgi_conn_free(fcgi_conn *c) {
    free(c->scratch);
    free(c->raw);
    free(c->env);
    free(c->out);
    memset(c, 0, sizeof *c);
}

void fcgi_conn_reset(fcgi_conn *c, fcgi_io io) {
    c->io = io;
    c->id = 0;
    c->keep = 0;
    c->closed = 0;
    c->nout = 0;
    c->out_failed = 0;
    c->ended = 1;
}

int fcgi_conn_next(fcgi_conn *c) {
    c->id = 0;
    c->nraw = 0;
    c->nparams = 0;
    c->stdin_done = 0;
    c->in_left = c->in_pad = 0;
    c->nout = 0;
    c->out_failed = 0;
    c->ended = 0;
    c->too_big = 0;
    int begun = 0;
    for (;;) {
        if (c->closed) return 0;
        hdr h;
        int rc = read_hdr(c, &h, !begun);
        if (rc != 1) return rc;
        if (!begun && h.type == T_BEGIN && h.id != 0) {
            uint8_t b[8];
            if (h.clen != 8) { c->closed = 1; return -1; }
            if (read_full(c, b, 8, 0) || skip(c, h.plen)) return -1;
            if (((unsigned)b[0] << 8 | b[1]) != ROLE_RESPONDER) {
                if (send_end(c, h.id, ST_UNKNOWN_ROLE)) return -1;
                continue;
            }
            begun = 1;
            c->id = h.id;
            c->keep = b[2] & FLAG_KEEP_CONN;
            continue;
        }
        if (!begun || h.id != c->id) {
            if (h.id != 0 && !begun && h.type != T_BEGIN) {
                /* a stray record between requests: drop it */
                if (skip(c, h.clen + h.plen)) return -1;
                continue;
            }
            if (other_record(c, &h)) return -1;
            continue;
        }
        if (h.type == T_ABORT) { /* aborted before it started: forget it */
            if (skip(c, h.clen + h.plen)) return -1;
            begun = 0;
            c->id = 0;
            c->nraw = 0;
            if (send_end(c, h.id, ST_COMPLETE)) return -1;
            continue;
        }
        if (h.type != T_PARAMS) { c->closed = 1; return -1; } /* STDIN before the params ended */
        if (h.clen == 0) {
            if (skip(c, h.plen)) return -1;
            if (c->too_big) return 1; /* the caller answers 431 and closes */
            if (parse_params(c)) { c->closed = 1; return -1; }
            return 1;
        }
        if (c->too_big || h.clen > FCGI_MAX_PARAMS_BYTES - c->nraw) {
            /* over the bound: read on (bounded by the record) without keeping */
            c->too_big = 1;
            if (skip(c, h.clen + h.plen)) return -1;
            continue;
        }
        if (read_full(c, c->raw + c->nraw, h.clen, 0) || skip(c, h.plen)) return -1;
        c->nraw += h.clen;
    }
}

const char *fcgi_conn_param(const fcgi_conn *c, const char *name) {
    for (int i = 0; i < c->nparams; i++) {
        const char *k = c->env + c->param_at[i];
        if (!strcmp(k, name)) return k + strlen(k) + 1;
    }
    return NULL;
}

/* Reads the next STDIN record header of the active request, answering
 * management and foreign records on the way. 1: a STDIN record (in_left/in_pad
 * set, or stdin_done for the empty one); 0: ABORT_REQUEST; -1: error. */
static int next_stdin(fcgi_conn *c) {
    for (;;) {
        hdr h;
        int rc = read_hdr(c, &h, 0);
        if (rc != 1) { c->closed = 1; return -1; }
        if (h.id != c->id) {
            if (other_record(c, &h)) return -1;
            continue;
        }
        if (h.type == T_ABORT) {
            if (skip(c, h.clen + h.plen)) return -1;
            return 0;
        }
        if (h.type != T_STDIN) { c->closed = 1; return -1; }
        if (h.clen == 0) {
            if (skip(c, h.plen)) return -1;
            c->stdin_done = 1;
            return 1;
        }
        c->in_left = h.clen;
        c->in_pad = h.plen;
        return 1;
    }
}

int fcgi_conn_body(fcgi_conn *c, char *buf, size_t len, size_t *got) {
    *got = 0;
    while (*got < len) {
        if (!c->in_left) {
            if (c->in_pad && skip(c, c->in_pad)) return FCGI_BODY_ERROR;
            c->in_pad = 0;
            if (c->stdin_done) return FCGI_BODY_SHORT;
            int rc = next_stdin(c);
            if (rc < 0) return FCGI_BODY_ERROR;
            if (rc == 0) return FCGI_BODY_ABORTED;
            continue;
        }
        size_t k = len - *got < c->in_left ? len - *got : c->in_left;
        if (read_full(c, buf + *got, k, 0)) return FCGI_BODY_ERROR;
        *got += k;
        c->in_left -= k;
    }
    if (c->in_left) return FCGI_BODY_LONG;
    if (c->in_pad) {
        if (skip(c, c->in_pad)) return FCGI_BODY_ERROR;
        c->in_pad = 0;
    }
    /* The next record, if it is here already, must be the empty STDIN that
     * ends the stream: peeked, not read (see the top of this file). */
    uint8_t b[8];
    if (!c->stdin_done && c->io.peek(c->io.u, b, 8) == 8 && b[0] == 1 && b[1] == T_STDIN &&
        ((unsigned)b[2] << 8 | b[3]) == c->id && (b[4] | b[5]))
        return FCGI_BODY_LONG;
    return FCGI_BODY_OK;
}

static int flush_out(fcgi_conn *c) {
    if (c->out_failed) return -1;
    if (!c->nout) return 0;
    if (send_record(c, T_STDOUT, c->id, c->out, c->nout)) { c->out_failed = 1; return -1; }
    c->nout = 0;
    return 0;
}

int fcgi_conn_write(fcgi_conn *c, const char *p, size_t n) {
    while (n) {
        if (c->out_failed) return -1;
        size_t k = FCGI_OUT_CAP - c->nout;
        if (k > n) k = n;
        memcpy(c->out + c->nout, p, k);
        c->nout += k;
        p += k;
        n -= k;
        if (c->nout == FCGI_OUT_CAP && flush_out(c)) return -1;
    }
    return 0;
}

int fcgi_conn_flush(fcgi_conn *c) { return flush_out(c); }

int fcgi_conn_end(fcgi_conn *c) {
    if (c->ended) return c->closed ? -1 : 0;
    c->ended = 1;
    if (flush_out(c) || send_record(c, T_STDOUT, c->id, NULL, 0) || send_end(c, c->id, ST_COMPLETE)) {
        c->closed = 1;
        return -1;
    }
    /* consume the rest of STDIN up to its empty record (normally just that record) */
    while (!c->stdin_done && !c->closed) {
        if (c->in_left || c->in_pad) {
            if (skip(c, c->in_left + c->in_pad)) break;
            c->in_left = c->in_pad = 0;
        }
        int rc = next_stdin(c);
        if (rc <= 0) { c->closed = 1; break; }
    }
    if (!c->keep) c->closed = 1;
    c->id = 0;
    return c->closed ? -1 : 0;
}

/* ---- the listening socket ---- */

int fcgi_listen_open(const char *listen_addr, int backlog, err *e) {
    int fd;
    if (!strncmp(listen_addr, "unix:", 5)) {
        const char *path = listen_addr + 5;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(path) >= sizeof sa.sun_path) return err_set(e, ERR_IO, "listen %s: path too long", listen_addr), -1;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path); /* stale socket from a previous run */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, backlog)) {
            int en = errno;
            if (fd >= 0) close(fd);
            return err_set(e, ERR_IO, "listen %s: %s", listen_addr, strerror(en)), -1;
        }
        return fd;
    }
    /* HOST:PORT or :PORT */
    char host[256];
    const char *colon = strrchr(listen_addr, ':');
    if (!colon || !colon[1] || (size_t)(colon - listen_addr) >= sizeof host)
        return err_set(e, ERR_IO, "listen %s: want unix:PATH or HOST:PORT", listen_addr), -1;
    memcpy(host, listen_addr, (size_t)(colon - listen_addr));
    host[colon - listen_addr] = 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    int rc = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
    if (rc) return err_set(e, ERR_IO, "listen %s: %s", listen_addr, gai_strerror(rc)), -1;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, backlog)) {
        int en = errno;
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return err_set(e, ERR_IO, "listen %s: %s", listen_addr, strerror(en)), -1;
    }
    freeaddrinfo(ai);
    return fd;
}
