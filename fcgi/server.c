/* server.c — the libfcgi transport and the server's life.
 *
 * libfcgi threading as its threaded example does it: FCGX_Init once, one
 * FCGX_Request per worker thread, accept serialized by a mutex. Each
 * connection nginx keeps open (fastcgi_keep_conn) stays with one worker
 * thread, so nginx must never open more connections than there are workers:
 * the site's upstream sets max_conns (nginx/render.sh --max-conns). SIGPIPE
 * is ignored (a write to a closed connection returns -1, which cancels the
 * request). SIGTERM/SIGINT are blocked in every thread and taken by the main
 * thread with sigwait: it flips the state to DRAINING (new requests get 503),
 * waits up to drain_s for in-flight requests, then shuts the listening socket
 * so the workers' accepts fail and they exit.
 *
 * The socket listens before the model loads, so /health answers 503 while
 * loading instead of refusing connections. */
#include <errno.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fcgi.h"
#include "sha256.h"

typedef struct worker_ctx {
    fcgi_app *a;
    int listen_fd;
    pthread_t th;
    _Atomic int exited;
    fcgi_worker w;
    int w_ready;
} worker_ctx;

static pthread_mutex_t accept_mu = PTHREAD_MUTEX_INITIALIZER;
/* The app lives in static storage so that everything it owns stays reachable
 * (for LeakSanitizer) if we exit while a worker sits on an idle keep-alive
 * connection. */
static fcgi_app g_app;

int fcgi_worker_init(fcgi_worker *w, const fcgi_app *a, err *e) {
    memset(w, 0, sizeof *w);
    w->ids_cap = a->n_ctx + 1;
    w->ids = malloc(sizeof(int32_t) * (size_t)w->ids_cap);
    w->body_cap = (size_t)a->cfg->max_body_bytes;
    w->body = malloc(w->body_cap + 1);
    w->hold_cap = (size_t)a->cfg->max_stop_len * 2 + 1024;
    w->hold = malloc(w->hold_cap);
    if (!w->ids || !w->body || !w->hold) {
        fcgi_worker_free(w);
        return err_set(e, ERR_NOMEM, "out of memory for worker buffers");
    }
    return 0;
}

void fcgi_worker_free(fcgi_worker *w) {
    free(w->ids);
    free(w->body);
    free(w->hold);
    jw_free(&w->frame); jw_free(&w->content); jw_free(&w->reasoning); jw_free(&w->tools);
    jw_free(&w->lp); jw_free(&w->lp2); jw_free(&w->lp3); jw_free(&w->lp4);
    memset(w, 0, sizeof *w);
}

/* ---- fcgi_out over an FCGX_Request ---- */
static int req_write(void *u, const char *p, size_t n) {
    FCGX_Request *r = u;
    while (n) {
        int k = n > (1u << 30) ? 1 << 30 : (int)n;
        if (FCGX_PutStr(p, k, r->out) != k) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}
static int req_flush(void *u) { return FCGX_FFlush(((FCGX_Request *)u)->out) < 0 ? -1 : 0; }
/* nginx sends nothing after the request until we answer; a readable hang-up
 * means it closed the connection (its client left). */
static int req_gone(void *u) {
    struct pollfd pf = {.fd = ((FCGX_Request *)u)->ipcFd, .events = POLLRDHUP};
    if (pf.fd < 0) return 1;
    return poll(&pf, 1, 0) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* The route: PATH_INFO if set, else DOCUMENT_URI (stock fastcgi_params),
 * else REQUEST_URI without its query. */
static const char *req_path(FCGX_Request *r, char *buf, size_t cap) {
    const char *p = FCGX_GetParam("PATH_INFO", r->envp);
    if (p && p[0]) return p;
    p = FCGX_GetParam("DOCUMENT_URI", r->envp);
    if (p && p[0]) return p;
    p = FCGX_GetParam("REQUEST_URI", r->envp);
    if (!p || !p[0]) return "";
    size_t n = strcspn(p, "?");
    if (n >= cap) n = cap - 1;
    memcpy(buf, p, n);
    buf[n] = 0;
    return buf;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void handle_one(worker_ctx *wc, FCGX_Request *r) {
    fcgi_app *a = wc->a;
    fcgi_out o = {.write = req_write, .flush = req_flush, .gone = req_gone, .u = r};
    char pbuf[512];
    fcgi_http_req rq = {.method = FCGX_GetParam("REQUEST_METHOD", r->envp),
                        .path = req_path(r, pbuf, sizeof pbuf),
                        .authorization = FCGX_GetParam("HTTP_AUTHORIZATION", r->envp),
                        .body = "", .body_len = 0};
    double t0 = mono_s();
    int status;
    fcgi_error er;
    atomic_fetch_add(&a->inflight, 1);
    if (!wc->w_ready && atomic_load(&a->state) == FCGI_READY) {
        err e = {0};
        if (fcgi_worker_init(&wc->w, a, &e) == 0) wc->w_ready = 1;
    }
    const char *cl = FCGX_GetParam("CONTENT_LENGTH", r->envp);
    long long clen = 0;
    if (cl && cl[0]) {
        char *end;
        errno = 0;
        clen = strtoll(cl, &end, 10);
        if (errno || *end || clen < 0) clen = -1;
    }
    if (clen < 0) {
        fcgi_errorf(&er, 400, "invalid_request_error", "bad_content_length", NULL, "CONTENT_LENGTH is not a number");
        goto reject;
    }
    if (clen > a->cfg->max_body_bytes) {
        fcgi_errorf(&er, 413, "invalid_request_error", "request_too_large", NULL,
                    "the body is %lld bytes; the limit is %ld", clen, a->cfg->max_body_bytes);
        r->keepConnection = 0; /* the unread body stays on the wire: close rather than resync */
        goto reject;
    }
    if (clen > 0) {
        if (!wc->w_ready) {
            /* not loaded yet: refuse without reading */
            r->keepConnection = 0;
            status = 0;
        } else {
            int got = 0;
            while (got < clen) {
                int k = FCGX_GetStr(wc->w.body + got, (int)(clen - got), r->in);
                if (k <= 0) break;
                got += k;
            }
            if (got < clen) {
                fcgi_errorf(&er, 400, "invalid_request_error", "bad_content_length", NULL,
                            "the body has %d bytes, CONTENT_LENGTH says %lld", got, clen);
                r->keepConnection = 0;
                goto reject;
            }
            if (FCGX_GetChar(r->in) != EOF) {
                fcgi_errorf(&er, 400, "invalid_request_error", "bad_content_length", NULL,
                            "the body is longer than CONTENT_LENGTH (%lld)", clen);
                r->keepConnection = 0;
                goto reject;
            }
            wc->w.body[got] = 0;
            rq.body = wc->w.body;
            rq.body_len = (size_t)got;
        }
    }
    status = fcgi_handle(a, &wc->w, &rq, &o);
    goto done;
reject:
    fcgi_reply_error(&o, &er, NULL);
    status = er.status;
    fcgi_metrics_status(&a->metrics, status);
    fcgi_metrics_error(&a->metrics, "invalid_request_error");
done:
    atomic_fetch_sub(&a->inflight, 1);
    if (a->cfg->log_requests)
        fprintf(stderr, "sparkd: %s %s %d %.1f ms\n", rq.method ? rq.method : "-", rq.path[0] ? rq.path : "-", status,
                (mono_s() - t0) * 1e3);
}

static void *worker_main(void *arg) {
    worker_ctx *wc = arg;
    FCGX_Request r;
    if (FCGX_InitRequest(&r, wc->listen_fd, 0) != 0) { atomic_store(&wc->exited, 1); return NULL; }
    for (;;) {
        /* Only accept() is serialized. A thread whose connection nginx kept
         * open (fastcgi_keep_conn) reads its next request from that
         * connection; taking the mutex then would wait on a thread blocked in
         * accept() while nginx waits on us. */
        int locked = r.ipcFd < 0;
        if (locked) pthread_mutex_lock(&accept_mu);
        int rc = FCGX_Accept_r(&r);
        if (locked) pthread_mutex_unlock(&accept_mu);
        if (rc < 0) break;
        handle_one(wc, &r);
        FCGX_Finish_r(&r);
    }
    FCGX_Free(&r, 1);
    atomic_store(&wc->exited, 1);
    return NULL;
}

/* A unix socket's directory must exist and be writable by us; say which and why
 * instead of a bare bind error (the usual first-install mistake). */
static int check_socket_dir(const char *listen, const char *path, err *e) {
    char dir[CONFIG_PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    struct stat st;
    if (stat(dir, &st) != 0)
        return err_set(e, ERR_IO, "listen %s: directory %s: %s (the systemd unit's RuntimeDirectory=sparkd makes "
                       "/run/sparkd; by hand: install -d -o sparkd -g sparkd -m 0750 %s)", listen, dir, strerror(errno), dir);
    if (!S_ISDIR(st.st_mode)) return err_set(e, ERR_IO, "listen %s: %s is not a directory", listen, dir);
    if (access(dir, W_OK | X_OK) != 0)
        return err_set(e, ERR_IO, "listen %s: directory %s is not writable by uid %u: %s", listen, dir,
                       (unsigned)geteuid(), strerror(errno));
    return 0;
}

static int open_listen(const char *listen, err *e) {
    const char *addr = listen;
    if (!strncmp(listen, "unix:", 5)) {
        addr = listen + 5;
        if (check_socket_dir(listen, addr, e)) return -1;
        struct stat st;
        if (stat(addr, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(addr); /* stale socket from a previous run */
    }
    /* FCGX_OpenSocket: "host:port" or ":port" -> TCP, anything else a unix path */
    errno = 0;
    int fd = FCGX_OpenSocket(addr, 128);
    if (fd < 0)
        return err_set(e, ERR_IO, "listen %s: cannot open the socket%s%s", listen, errno ? ": " : "",
                       errno ? strerror(errno) : ""), -1;
    /* the socket is group read/write: nginx reaches it through the group (INSTALL.md) */
    if (!strncmp(listen, "unix:", 5) && chmod(addr, 0660) != 0)
        fprintf(stderr, "sparkd: warning: chmod 0660 %s: %s\n", addr, strerror(errno));
    return fd;
}

/* The session (serve/session.h) from the INI; the app borrows its parts. */
static int load_model(fcgi_app *a, err *e) {
    const config *c = a->cfg;
    session_opts so;
    session_opts_from_config(&so, c);
    uint8_t want[32];
    int have = 0;
    int rc = config_model_digest(c, want, &have, e);
    if (rc) return rc;
    if (have) so.model_sha256 = want;
    if ((rc = session_open(&a->sess, &so, e))) return rc;
    if (have) {
        char hx[65];
        sha256_hex(want, hx);
        fprintf(stderr, "sparkd: model SHA-256 %s verified while loading\n", hx);
    }
    a->tk = a->sess->tk;
    a->tp = a->sess->tp;
    a->s = a->sess->s;
    a->pfmt = a->sess->pfmt;
    a->n_ctx = a->sess->n_ctx;
    size_t l;
    const char *p;
    if (tok_bos(a->tk) >= 0 && (p = tok_piece(a->tk, tok_bos(a->tk), &l, 1)) && l < sizeof a->bos_text)
        snprintf(a->bos_text, sizeof a->bos_text, "%.*s", (int)l, p);
    if (tok_eos(a->tk) >= 0 && (p = tok_piece(a->tk, tok_eos(a->tk), &l, 1)) && l < sizeof a->eos_text)
        snprintf(a->eos_text, sizeof a->eos_text, "%.*s", (int)l, p);
    if (c->model_id[0]) snprintf(a->model_id, sizeof a->model_id, "%s", c->model_id);
    else {
        const char *base = strrchr(c->model_path, '/');
        base = base ? base + 1 : c->model_path;
        size_t bl = strlen(base);
        if (bl > 5 && !strcmp(base + bl - 5, ".gguf")) bl -= 5;
        if (bl >= sizeof a->model_id) bl = sizeof a->model_id - 1;
        snprintf(a->model_id, sizeof a->model_id, "%.*s", (int)bl, base);
    }
    return 0;
}

static void app_free(fcgi_app *a) {
    session_close(a->sess);
    a->sess = NULL; a->s = NULL; a->tp = NULL; a->tk = NULL;
}

int fcgi_serve(const config *c, err *e) {
    fcgi_app *a = &g_app;
    memset(a, 0, sizeof *a);
    a->cfg = c;
    fcgi_metrics_init(&a->metrics);
    atomic_store(&a->state, FCGI_LOADING);

    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* inherited by every thread we start */

    if (FCGX_Init() != 0) return err_set(e, ERR_IO, "FCGX_Init failed");
    int fd = open_listen(c->listen, e);
    if (fd < 0) return ERR_IO;
    worker_ctx *wcs = calloc((size_t)c->workers, sizeof *wcs);
    if (!wcs) { close(fd); return err_set(e, ERR_NOMEM, "out of memory"); }
    int started = 0;
    for (int i = 0; i < c->workers; i++) {
        wcs[i].a = a;
        wcs[i].listen_fd = fd;
        if (pthread_create(&wcs[i].th, NULL, worker_main, &wcs[i])) break;
        started++;
    }
    fprintf(stderr, "sparkd: listening on %s with %d workers; loading the model\n", c->listen, started);
    double t0 = mono_s();
    int rc = started ? load_model(a, e) : err_set(e, ERR_NOMEM, "cannot start worker threads");
    if (rc) {
        atomic_store(&a->state, FCGI_FAILED);
        fprintf(stderr, "sparkd: start failed: %s\n", e->msg);
    } else {
        a->created = (long)time(NULL);
        atomic_store(&a->state, FCGI_READY);
        fprintf(stderr, "sparkd: ready: model '%s' (%s), context %d, %d sequences, %s engine, KV %s, loaded in %.1f s\n",
                a->model_id, a->sess->m->arch_name, a->n_ctx, c->max_seqs, a->sess->ops->name,
                engine_kv_type_name(c->kv_type), mono_s() - t0);
        int sig = 0;
        sigwait(&sigs, &sig);
        atomic_store(&a->state, FCGI_DRAINING);
        fprintf(stderr, "sparkd: %s: draining (up to %d s)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT", c->drain_s);
        /* the scheduler finishes running and queued work (cancelling what is
         * left at the timeout); then the workers write their last bytes */
        int cancelled = sched_drain(a->s, c->drain_s);
        if (cancelled) fprintf(stderr, "sparkd: drain timeout: %d requests cancelled\n", cancelled);
        double td = mono_s();
        while (atomic_load(&a->inflight) > 0 && mono_s() - td < 5) usleep(20000);
    }
    /* wake the workers blocked in accept(); Linux fails accept on a shut socket */
    shutdown(fd, SHUT_RDWR);
    int all = 1;
    double tj = mono_s();
    for (int i = 0; i < started; i++) {
        while (!atomic_load(&wcs[i].exited) && mono_s() - tj < 1.0) usleep(10000);
        if (!atomic_load(&wcs[i].exited)) all = 0;
    }
    if (all) {
        for (int i = 0; i < started; i++) {
            pthread_join(wcs[i].th, NULL);
            if (wcs[i].w_ready) fcgi_worker_free(&wcs[i].w);
        }
        free(wcs);
        app_free(a);
        close(fd);
    } else {
        /* a worker is parked on an idle keep-alive connection: leave it (and
         * the state it could touch) alone; the process exits next */
        fprintf(stderr, "sparkd: exiting with idle keep-alive connections open\n");
    }
    if (!strncmp(c->listen, "unix:", 5)) unlink(c->listen + 5);
    if (rc == 0) fprintf(stderr, "sparkd: stopped\n");
    return rc;
}
