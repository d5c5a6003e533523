/* sse.c — server-sent events framing for streamed replies.
 *
 * Headers go out with the first event (a chunk or a keep-alive comment), with
 * X-Accel-Buffering: no so nginx passes every event on as it is written.
 * Every event is "data: JSON\n\n" and is flushed at once; a failed write marks
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

void fcgi_sse_keepalive(fcgi_run *R) {
    fcgi_sse_start(R);
    fcgi_out_write(R->o, ": keep-alive\n\n", 14);
    fcgi_out_flush(R->o);
    R->t_last = mono_s();
}

int fcgi_sse_chunk(fcgi_run *R, const char *finish) {
    fcgi_worker *w = R->w;
    if (!finish && !w->content.n && !w->reasoning.n && !w->tools.n && !R->lp_count) return 0;
    jw *f = &w->frame;
    jw_reset(f);
    /* an open arguments string is closed in this chunk and continued by
     * index in the next (OpenAI's streamed tool_calls deltas) */
    fcgi_tools_close(R);
    fcgi_write_head(R, f, R->api->chunk_object);
    jw_lit(f, ",\"choices\":[{\"index\":0,");
    R->api->chunk(R, f, finish);
    jw_lit(f, "}]");
    if (R->g->include_usage) jw_lit(f, ",\"usage\":null");
    jw_lit(f, "}");
    jw_reset(&w->content);
    jw_reset(&w->reasoning);
    jw_reset(&w->tools);
    return fcgi_sse_frame(R);
}

int fcgi_sse_usage(fcgi_run *R) {
    jw *f = &R->w->frame;
    jw_reset(f);
    fcgi_write_head(R, f, R->api->chunk_object);
    jw_lit(f, ",\"choices\":[],\"usage\":");
    fcgi_write_usage(R, f);
    jw_lit(f, "}");
    return fcgi_sse_frame(R);
}

int fcgi_sse_done(fcgi_run *R) {
    fcgi_out_write(R->o, "data: [DONE]\n\n", 14);
    return fcgi_out_flush(R->o);
}

int fcgi_sse_error(fcgi_run *R, const fcgi_error *er) {
    jw *f = &R->w->frame;
    jw_reset(f);
    fcgi_error_write(f, er);
    return fcgi_sse_frame(R);
}
