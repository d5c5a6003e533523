/* fuzz_fcgi_wire — libFuzzer target for the FastCGI record layer (fcgi/wire.c)
 * and the server loop over one connection (fcgi/conn.c, routing, replies):
 * the input is the byte stream a FastCGI peer sends, read in pieces whose
 * sizes the input's first byte varies. The app is the server's own, before
 * its model is loaded (every route answers; generation answers 503), with a
 * worker body buffer so request bodies are read. Oracles: every record written
 * is well formed (version 1, a type a responder may send, the content length
 * its header says), STDOUT only for a request that began, an END_REQUEST at
 * most once per request, and the process survives every input.
 *   make fuzz && tests/fuzz/run_fuzz.sh fuzz_fcgi_wire 60 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi.h"

typedef struct mem {
    const uint8_t *p;
    size_t n, at;
    size_t piece; /* most bytes one read returns */
    long ended;
} mem;

static ssize_t m_read(void *u, void *p, size_t n, int idle) {
    (void)idle;
    mem *m = u;
    if (m->at == m->n) return 0;
    size_t k = n < m->piece ? n : m->piece;
    if (k > m->n - m->at) k = m->n - m->at;
    memcpy(p, m->p + m->at, k);
    m->at += k;
    return (ssize_t)k;
}

static ssize_t m_peek(void *u, void *p, size_t n) {
    mem *m = u;
    if (m->at == m->n) return -1;
    size_t k = n < m->n - m->at ? n : m->n - m->at;
    memcpy(p, m->p + m->at, k);
    return (ssize_t)k;
}

/* Every record goes out as one write: an 8-byte header, then its content. */
static int m_write(void *u, const struct iovec *iov, int n) {
    mem *m = u;
    if (n < 1 || n > 2 || iov[0].iov_len != 8) abort();
    const uint8_t *h = iov[0].iov_base;
    size_t clen = (size_t)h[4] << 8 | h[5];
    size_t got = n == 2 ? iov[1].iov_len : 0;
    if (h[0] != 1 || clen != got || h[6] != 0) abort();
    unsigned id = (unsigned)h[2] << 8 | h[3];
    switch (h[1]) {
    case 6: /* STDOUT */
        if (id == 0) abort();
        break;
    case 3: /* END_REQUEST */
        if (id == 0 || clen != 8) abort();
        m->ended++;
        break;
    case 10: /* GET_VALUES_RESULT */
    case 11: /* UNKNOWN_TYPE */
        if (id != 0) abort();
        break;
    default: abort();
    }
    return 0;
}

static int m_gone(void *u) {
    (void)u;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fcgi_app a;
    static config c;
    static fcgi_worker w;
    static fcgi_conn conn;
    static int init;
    if (!init) {
        config_defaults(&c);
        c.log_requests = 0;
        c.max_body_bytes = 4096;
        a.cfg = &c;
        fcgi_metrics_init(&a.metrics);
        atomic_store(&a.state, FCGI_LOADING);
        w.body_cap = (size_t)c.max_body_bytes;
        w.body = malloc(w.body_cap + 1);
        if (!w.body || fcgi_conn_init(&conn, (fcgi_io){0}, 4)) abort();
        init = 1;
    }
    if (size < 1) return 0;
    mem m = {.p = data + 1, .n = size - 1, .piece = (size_t)(data[0] % 16) + 1};
    if (data[0] >= 0xf0) m.piece = 1 << 20;
    fcgi_conn_reset(&conn, (fcgi_io){.read = m_read, .peek = m_peek, .write = m_write, .gone = m_gone, .u = &m});
    fcgi_conn_serve(&a, &w, &conn);
    /* each END_REQUEST answers a BEGIN_REQUEST: never more than the input holds */
    long begins = 0;
    for (size_t i = 0; i + 8 <= m.n; i++)
        if (m.p[i] == 1 && m.p[i + 1] == 1) begins++;
    if (m.ended > begins) abort();
    return 0;
}
