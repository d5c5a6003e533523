/* sse.c — server-sent events framing for streamed replies.
 *
 * Headers go out with the first event (a chunk or a keep-alive comment), with
 * X-Accel-Buffering: no so nginx passes every event on as it is written.
 * OpenAI's streams are "data: JSON\n\n" events; Anthropic's and the Responses
 * API's name each event ("event: NAME\ndata: JSON\n\n"). A failed write marks
 * the output failed (reply.c), which the generation loop sees as the client
 * gone. */
#include <string.h>
#include <time.h>

#include "run.h"

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int fcgi_sse_start(fcgi_run *R) {
    return fcgi_out_headers(R->o, 200, "text/event-stream", "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
}

int fcgi_sse_frame(fcgi_run *R) {
    jw *f = &R->w->frame;
    if (f->oom) return -1;
    if (fcgi_sse_start(R)) return -1;
    fcgi_out_write(R->o, "data: ", 6);
    fcgi_out_write(R->o, f->p, f->n);
    fcgi_out_write(R->o, "\n\n", 2);
    R->t_last = mono_s();
    return fcgi_out_flush(R->o);
}

int fcgi_sse_named(fcgi_run *R, const char *name, int flush) {
    jw *f = &R->w->frame;
    if (f->oom) return -1;
    if (fcgi_sse_start(R)) return -1;
    fcgi_out_write(R->o, "event: ", 7);
    fcgi_out_write(R->o, name, strlen(name));
    fcgi_out_write(R->o, "\ndata: ", 7);
    fcgi_out_write(R->o, f->p, f->n);
    fcgi_out_write(R->o, "\n\n", 2);
    R->t_last = mono_s();
    return flush ? fcgi_out_flush(R->o) : (R->o->failed ? -1 : 0);
}

void fcgi_sse_keepalive(fcgi_run *R) {
    fcgi_sse_start(R);
    fcgi_out_write(R->o, ": keep-alive\n\n", 14);
    fcgi_out_flush(R->o);
    R->t_last = mono_s();
}
