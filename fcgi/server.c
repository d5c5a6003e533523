/* server.c — the server's life: the listening socket, worker threads, the
 * model, signals.
 *
 * Connections: one epoll set holds the listening socket and every open
 * connection that is idle between requests. A worker thread takes one ready
 * entry (a new connection to accept, or a parked connection whose next
 * request has begun to arrive), serves what has arrived (conn.c), and parks
 * the connection again (EPOLLONESHOT) or closes it. An idle keep-alive
 * connection (nginx's fastcgi_keep_conn) therefore holds no thread: workers
 * bound the requests served at once, not the connections open, and nginx may
 * keep as many idle connections as it likes (up to MAX_OPEN_CONNS).
 * SIGPIPE is ignored (a write to a closed connection returns -1, which
 * cancels the request).
 *
 * SIGTERM/SIGINT are blocked in every thread and taken by the main thread with
 * sigwait: the first flips the state to DRAINING (new requests get 503) and
 * lets in-flight requests finish for up to drain_s; a second one during the
 * drain exits at once with status 2 (logged). After the drain an eventfd in
 * the epoll set wakes every worker, they finish, and the process exits.
 *
 * The socket listens before the model loads, so /health answers 503 while
 * loading instead of refusing connections. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "constrain.h"
#include "fcgi.h"
#include "sha256.h"

/* How long one read or write on a connection may wait once a request has
 * started. */
#define IO_TIMEOUT_MS 60000
/* Connections open at once (idle ones included); more are closed at accept. */
#define MAX_OPEN_CONNS 4096

typedef struct sock_io {
    int fd;
} sock_io;

typedef struct worker_ctx {
    fcgi_app *a;
    int listen_fd, wake_fd, ep_fd;
    pthread_t th;
    _Atomic int exited;
    fcgi_worker w;        /* buffers allocated once the model is loaded (conn.c) */
    fcgi_conn conn;       /* read/write buffers for the connection being served */
    sock_io sio;
} worker_ctx;

static _Atomic int n_open; /* connections open */
/* The app lives in static storage so that everything it owns stays reachable
 * (for LeakSanitizer) if we exit at once on a second signal. */
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

int fcgi_worker_more(fcgi_worker *w) {
    if (w->more) return 0;
    fcgi_worker *m = calloc(FCGI_MAX_N - 1, sizeof *m);
    if (!m) return -1;
    for (int i = 0; i < FCGI_MAX_N - 1; i++) {
        m[i].hold_cap = w->hold_cap;
        if (!(m[i].hold = malloc(m[i].hold_cap))) {
            for (int k = 0; k < i; k++) free(m[k].hold);
            free(m);
            return -1;
        }
    }
    w->more = m;
    return 0;
}

void fcgi_worker_free(fcgi_worker *w) {
    if (w->more)
        for (int i = 0; i < FCGI_MAX_N - 1; i++) fcgi_worker_free(&w->more[i]);
    free(w->more);
    free(w->ids);
    free(w->body);
    free(w->hold);
    jw_free(&w->frame); jw_free(&w->content); jw_free(&w->reasoning); jw_free(&w->tools); jw_free(&w->events);
    jw_free(&w->item); jw_free(&w->items); jw_free(&w->all_content); jw_free(&w->all_reasoning);
    jw_free(&w->lp); jw_free(&w->lp2); jw_free(&w->lp3); jw_free(&w->lp4);
    memset(w, 0, sizeof *w);
}

/* ---- fcgi_io over a socket ---- */

static ssize_t sock_read(void *u, void *p, size_t n, int idle) {
    sock_io *s = u;
    for (;;) {
        struct pollfd pf = {.fd = s->fd, .events = POLLIN};
        int k = poll(&pf, 1, idle ? 0 : IO_TIMEOUT_MS);
        if (k < 0 && errno == EINTR) continue;
        if (k == 0 && idle) return FCGI_IO_WOULD_WAIT;
        if (k <= 0) return -1;
        ssize_t r = read(s->fd, p, n);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        return r;
    }
}

static ssize_t sock_peek(void *u, void *p, size_t n) {
    ssize_t r = recv(((sock_io *)u)->fd, p, n, MSG_PEEK | MSG_DONTWAIT);
    if (r > 0) return r;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    return -1;
}

static int sock_write(void *u, const struct iovec *iov, int n) {
    sock_io *s = u;
    struct iovec v[4];
    if (n > 4) return -1;
    memcpy(v, iov, sizeof *v * (size_t)n);
    struct msghdr m = {.msg_iov = v, .msg_iovlen = (size_t)n};
    while (m.msg_iovlen) {
        ssize_t r = sendmsg(s->fd, &m, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1; /* EPIPE, ECONNRESET, or SO_SNDTIMEO passed */
        while (r > 0 && m.msg_iovlen) {
            if ((size_t)r >= m.msg_iov->iov_len) {
                r -= (ssize_t)m.msg_iov->iov_len;
                m.msg_iov++;
                m.msg_iovlen--;
            } else {
                m.msg_iov->iov_base = (char *)m.msg_iov->iov_base + r;
                m.msg_iov->iov_len -= (size_t)r;
                r = 0;
            }
        }
    }
    return 0;
}

/* Gone = the peer hung up (or the socket failed). A half-close
 * (shutdown(SHUT_WR) after a complete request: POLLRDHUP alone) is not gone;
 * over TCP a full close looks the same until a write fails, which cancels the
 * request then. */
static int sock_gone(void *u) {
    struct pollfd pf = {.fd = ((sock_io *)u)->fd, .events = POLLRDHUP};
    return poll(&pf, 1, 0) > 0 && (pf.revents & (POLLHUP | POLLERR | POLLNVAL));
}

/* Ids in the epoll set: the listening socket, the wake eventfd, or a
 * connection's fd + 2 (fds are >= 0). */
enum { EP_LISTEN = 0, EP_WAKE = 1 };

static void *worker_main(void *arg) {
    worker_ctx *wc = arg;
    fcgi_app *a = wc->a;
    for (;;) {
        struct epoll_event ev;
        int k = epoll_wait(wc->ep_fd, &ev, 1, -1);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 || ev.data.u64 == EP_WAKE) break;
        int fd;
        if (ev.data.u64 == EP_LISTEN) {
            fd = accept4(wc->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd < 0) continue; /* another worker took it, or the peer left */
            if (atomic_fetch_add(&n_open, 1) >= MAX_OPEN_CONNS) {
                atomic_fetch_sub(&n_open, 1);
                close(fd);
                continue;
            }
            struct timeval tv = {.tv_sec = IO_TIMEOUT_MS / 1000};
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        } else fd = (int)(ev.data.u64 - 2);
        wc->sio = (sock_io){.fd = fd};
        fcgi_conn_reset(&wc->conn, (fcgi_io){.read = sock_read, .peek = sock_peek, .write = sock_write,
                                             .gone = sock_gone, .u = &wc->sio});
        if (fcgi_conn_serve(a, &wc->w, &wc->conn)) {
            /* idle: park it until its next request arrives */
            struct epoll_event pe = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.u64 = (uint64_t)fd + 2};
            if (epoll_ctl(wc->ep_fd, ev.data.u64 == EP_LISTEN ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &pe) == 0)
                continue;
        }
        close(fd);
        atomic_fetch_sub(&n_open, 1);
    }
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
    if (!strncmp(listen, "unix:", 5) && check_socket_dir(listen, listen + 5, e)) return -1;
    int fd = fcgi_listen_open(listen, 128, e);
    if (fd < 0) return -1;
    /* the socket is group read/write: nginx reaches it through the group (INSTALL.md) */
    if (!strncmp(listen, "unix:", 5) && chmod(listen + 5, 0660) != 0)
        fprintf(stderr, "sparkd: warning: chmod 0660 %s: %s\n", listen + 5, strerror(errno));
    /* non-blocking: several workers may wake for one connection */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
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
    /* [model] output_format overrides what the template and vocabulary said */
    if (!strcmp(c->output_format, "plain")) a->pfmt = PARSE_PLAIN;
    else if (!strcmp(c->output_format, "qwen3")) a->pfmt = PARSE_QWEN3;
    else if (!strcmp(c->output_format, "qwen3-coder")) a->pfmt = PARSE_QWEN3_CODER;
    else if (!strcmp(c->output_format, "harmony")) a->pfmt = PARSE_HARMONY;
    else if (!strcmp(c->output_format, "deepseek")) /* the generation from the template, else V3.1's */
        a->pfmt = a->pfmt == PARSE_DEEPSEEK_R1 || a->pfmt == PARSE_DEEPSEEK_V32 ? a->pfmt : PARSE_DEEPSEEK;
    else if (!strcmp(c->output_format, "deepseek-r1")) a->pfmt = PARSE_DEEPSEEK_R1;
    else if (!strcmp(c->output_format, "deepseek-v3.1")) a->pfmt = PARSE_DEEPSEEK;
    else if (!strcmp(c->output_format, "deepseek-v3.2")) a->pfmt = PARSE_DEEPSEEK_V32;
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
    err ge = {0};
    if (fcgi_constraint_setup(a, a->sess->m->hp.n_vocab, &ge)) {
        fprintf(stderr, "sparkd: warning: constrained output off: %s\n", ge.msg);
        fcgi_constraint_teardown(a);
    }
    return 0;
}

static void app_free(fcgi_app *a) {
    fcgi_constraint_teardown(a);
    session_close(a->sess);
    fcgi_store_free(a->store);
    a->sess = NULL; a->s = NULL; a->tp = NULL; a->tk = NULL; a->store = NULL;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The second termination signal, caught by a thread of its own while the
 * main thread drains: exit at once, non-zero. */
static void *second_signal(void *arg) {
    sigset_t *sigs = arg;
    int sig = 0;
    sigwait(sigs, &sig);
    fprintf(stderr, "sparkd: second %s during the drain: exiting now (requests still running are cut)\n",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");
    fflush(stderr);
    _exit(2);
    return NULL;
}

int fcgi_serve(const config *cfg, err *e) {
    /* the served configuration: the caller's with "auto" sizes made numbers */
    static config resolved;
    resolved = *cfg;
    config_resolve_auto(&resolved);
    const config *c = &resolved;
    fcgi_app *a = &g_app;
    memset(a, 0, sizeof *a);
    a->cfg = c;
    fcgi_metrics_init(&a->metrics);
    atomic_store(&a->state, FCGI_LOADING);

    signal(SIGPIPE, SIG_IGN);
    static sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* inherited by every thread we start */

    int fd = open_listen(c->listen, e);
    if (fd < 0) return ERR_IO;
    int wake = eventfd(0, EFD_CLOEXEC);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = EP_LISTEN};
    struct epoll_event wev = {.events = EPOLLIN, .data.u64 = EP_WAKE};
    worker_ctx *wcs = calloc((size_t)c->workers, sizeof *wcs);
    if (!wcs || wake < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &lev) || epoll_ctl(ep, EPOLL_CTL_ADD, wake, &wev)) {
        close(fd);
        free(wcs);
        if (wake >= 0) close(wake);
        if (ep >= 0) close(ep);
        return err_set(e, ERR_NOMEM, "cannot set up the connection loop");
    }
    int started = 0;
    for (int i = 0; i < c->workers; i++) {
        wcs[i].a = a;
        wcs[i].listen_fd = fd;
        wcs[i].wake_fd = wake;
        wcs[i].ep_fd = ep;
        if (fcgi_conn_init(&wcs[i].conn, (fcgi_io){0}, c->workers)) break;
        if (pthread_create(&wcs[i].th, NULL, worker_main, &wcs[i])) { fcgi_conn_free(&wcs[i].conn); break; }
        started++;
    }
    fprintf(stderr, "sparkd: listening on %s with %d workers (queue %d); loading the model\n", c->listen, started,
            c->max_queue);
    double t0 = mono_s();
    int rc = started ? load_model(a, e) : err_set(e, ERR_NOMEM, "cannot start worker threads");
    if (!rc && fcgi_store_new(&a->store)) rc = err_set(e, ERR_NOMEM, "out of memory for the responses store");
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
        fprintf(stderr, "sparkd: %s: draining (up to %d s; a second signal exits at once)\n",
                sig == SIGTERM ? "SIGTERM" : "SIGINT", c->drain_s);
        pthread_t th2;
        pthread_create(&th2, NULL, second_signal, &sigs);
        pthread_detach(th2);
        /* the scheduler finishes running and queued work (cutting what is left
         * at the timeout: those requests end with an error, never as "stop");
         * then the workers write their last bytes */
        int cancelled = sched_drain(a->s, c->drain_s);
        if (cancelled) fprintf(stderr, "sparkd: drain timeout: %d requests cut\n", cancelled);
        double td = mono_s();
        while (atomic_load(&a->inflight) > 0 && mono_s() - td < 5) usleep(20000);
    }
    /* stop accepting; wake every worker (the eventfd stays readable) */
    uint64_t one = 1;
    if (write(wake, &one, sizeof one) != sizeof one) perror("sparkd: eventfd");
    int all = 1;
    double tj = mono_s();
    for (int i = 0; i < started; i++) {
        while (!atomic_load(&wcs[i].exited) && mono_s() - tj < 5.0) usleep(10000);
        if (!atomic_load(&wcs[i].exited)) all = 0;
    }
    if (all) {
        for (int i = 0; i < started; i++) {
            pthread_join(wcs[i].th, NULL);
            fcgi_worker_free(&wcs[i].w);
            fcgi_conn_free(&wcs[i].conn);
        }
        free(wcs);
        app_free(a);
        close(fd);
        close(wake);
        close(ep); /* parked idle connections are closed as the process exits */
    } else {
        /* a worker is stuck in a write to a peer that stopped reading: leave
         * it (and what it could touch) alone; the process exits next */
        fprintf(stderr, "sparkd: exiting with a worker still writing\n");
    }
    if (!strncmp(c->listen, "unix:", 5)) unlink(c->listen + 5);
    if (rc == 0) fprintf(stderr, "sparkd: stopped\n");
    return rc;
}
