/* conn.c — one FastCGI connection: requests in (wire.c), replies out.
 *
 * Per request: the HTTP view of the params (method, route, credentials), the
 * body read up to CONTENT_LENGTH into the worker's buffer (a larger
 * CONTENT_LENGTH is refused with 413 before reading; a body shorter or longer
 * than it says is a 400 and the connection is closed, since the stream can no
 * longer be trusted), fcgi_handle, then the end of the request. Between
 * requests a connection holds no thread: fcgi_conn_serve returns when nothing
 * more has arrived and the server parks the connection (server.c). The
 * server's worker threads and the fuzzer (tests/fuzz/fuzz_fcgi_wire.c) both
 * run fcgi_conn_serve. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fcgi.h"

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int out_write(void *u, const char *p, size_t n) { return fcgi_conn_write(u, p, n); }
static int out_flush(void *u) { return fcgi_conn_flush(u); }
static int out_gone(void *u) {
    fcgi_conn *c = u;
    return c->io.gone(c->io.u);
}

/* The route: PATH_INFO if set, else DOCUMENT_URI (stock fastcgi_params),
 * else REQUEST_URI without its query. */
static const char *req_path(const fcgi_conn *c, char *buf, size_t cap) {
    const char *p = fcgi_conn_param(c, "PATH_INFO");
    if (p && p[0]) return p;
    p = fcgi_conn_param(c, "DOCUMENT_URI");
    if (p && p[0]) return p;
    p = fcgi_conn_param(c, "REQUEST_URI");
    if (!p || !p[0]) return "";
    size_t n = strcspn(p, "?");
    if (n >= cap) n = cap - 1;
    memcpy(buf, p, n);
    buf[n] = 0;
    return buf;
}

static void handle_one(fcgi_app *a, fcgi_worker *w, fcgi_conn *c) {
    fcgi_out o = {.write = out_write, .flush = out_flush, .gone = out_gone, .u = c};
    char pbuf[512];
    fcgi_http_req rq = {.method = fcgi_conn_param(c, "REQUEST_METHOD"),
                        .path = req_path(c, pbuf, sizeof pbuf),
                        .authorization = fcgi_conn_param(c, "HTTP_AUTHORIZATION"),
                        .x_api_key = fcgi_conn_param(c, "HTTP_X_API_KEY"),
                        .body = "", .body_len = 0};
    double t0 = mono_s();
    int status;
    fcgi_error er;
    atomic_fetch_add(&a->inflight, 1);
    if (!w->ids && atomic_load(&a->state) == FCGI_READY) {
        /* the worker's buffers are sized from the loaded model */
        err e = {0};
        fcgi_worker_init(w, a, &e);
    }
    if (c->too_big) {
        fcgi_errorf(&er, 431, "invalid_request_error", "request_header_fields_too_large", NULL,
                    "the request's FastCGI params exceed %d bytes", FCGI_MAX_PARAMS_BYTES);
        c->keep = 0;
        goto reject;
    }
    const char *cl = fcgi_conn_param(c, "CONTENT_LENGTH");
    long long clen = 0;
    if (cl && cl[0]) {
        char *end;
        errno = 0;
        clen = strtoll(cl, &end, 10);
        if (errno || *end || clen < 0) clen = -1;
    }
    if (clen < 0) {
        fcgi_errorf(&er, 400, "invalid_request_error", "bad_content_length", NULL, "CONTENT_LENGTH is not a number");
        c->keep = 0;
        goto reject;
    }
    if (clen > a->cfg->max_body_bytes) {
        fcgi_errorf(&er, 413, "invalid_request_error", "request_too_large", NULL,
                    "the body is %lld bytes; the limit is %ld", clen, a->cfg->max_body_bytes);
        c->keep = 0; /* the unread body stays on the wire: close rather than resync */
        goto reject;
    }
    if (clen > 0 && !w->body) {
        /* not loaded yet (no worker buffers): refuse without reading */
        fcgi_errorf(&er, 503, "server_error", "service_unavailable", NULL, "the model is loading");
        c->keep = 0;
        goto reject;
    }
    if (clen > 0) {
        size_t got = 0;
        int rc = fcgi_conn_body(c, w->body, (size_t)clen, &got);
        if (rc == FCGI_BODY_ABORTED || rc == FCGI_BODY_ERROR) {
            /* the peer abandoned the request (or the stream broke): no reply,
             * no more of its body to read */
            c->keep = 0;
            c->stdin_done = 1;
            status = 499;
            goto done;
        }
        if (rc == FCGI_BODY_SHORT) {
            fcgi_errorf(&er, 400, "invalid_request_error", "bad_content_length", NULL,
                        "the body has %zu bytes, CONTENT_LENGTH says %lld", got, clen);
            c->keep = 0;
            goto reject;
        }
        if (rc == FCGI_BODY_LONG) {
            fcgi_errorf(&er, 400, "invalid_request_error", "bad_content_length", NULL,
                        "the body is longer than CONTENT_LENGTH (%lld)", clen);
            c->keep = 0;
            goto reject;
        }
        w->body[got] = 0;
        rq.body = w->body;
        rq.body_len = got;
    }
    status = fcgi_handle(a, w, &rq, &o);
    goto done;
reject:
    fcgi_reply_error(&o, &er, NULL);
    status = er.status;
    fcgi_metrics_status(&a->metrics, status);
    fcgi_metrics_error(&a->metrics, "invalid_request_error");
done:
    fcgi_conn_end(c);
    atomic_fetch_sub(&a->inflight, 1);
    if (a->cfg->log_requests)
        fprintf(stderr, "sparkd: %s %s %d %.1f ms\n", rq.method ? rq.method : "-", rq.path[0] ? rq.path : "-", status,
                (mono_s() - t0) * 1e3);
}

int fcgi_conn_serve(fcgi_app *a, fcgi_worker *w, fcgi_conn *c) {
    for (;;) {
        int rc = fcgi_conn_next(c);
        if (rc == 2) return 1;
        if (rc != 1) return 0;
        handle_one(a, w, c);
        if (c->closed) return 0;
    }
}
