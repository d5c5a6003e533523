/* reply.c — status lines, headers and OpenAI-shaped error bodies.
 *
 * Over FastCGI a responder sends CGI-style headers: "Status: 200 OK\r\n" then
 * header lines, a blank line, the body. Once a write or flush fails the
 * output is marked failed and every later write is a no-op returning -1, so a
 * handler can write unconditionally and check o->failed at its loop points. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fcgi.h"

int fcgi_out_write(fcgi_out *o, const char *p, size_t n) {
    if (o->failed) return -1;
    if (n && o->write(o->u, p, n) < 0) { o->failed = 1; return -1; }
    return 0;
}

int fcgi_out_printf(fcgi_out *o, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1; /* callers print short lines only */
    return fcgi_out_write(o, buf, (size_t)n);
}

int fcgi_out_flush(fcgi_out *o) {
    if (o->failed) return -1;
    if (o->flush && o->flush(o->u) < 0) { o->failed = 1; return -1; }
    return 0;
}

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

int fcgi_out_headers(fcgi_out *o, int status, const char *content_type, const char *extra) {
    if (o->status) return 0; /* already sent: a late error goes into the body */
    o->status = status;
    return fcgi_out_printf(o, "Status: %d %s\r\nContent-Type: %s\r\n%s\r\n", status, reason(status), content_type,
                           extra ? extra : "");
}

int fcgi_reply_json(fcgi_out *o, int status, const jw *b, const char *extra) {
    if (b->oom || !b->p) {
        fcgi_out_headers(o, 500, "application/json", NULL);
        return fcgi_out_printf(o, "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,"
                                  "\"code\":null}}\n");
    }
    fcgi_out_headers(o, status, "application/json", extra);
    int rc = fcgi_out_write(o, b->p, b->n);
    if (!rc) rc = fcgi_out_write(o, "\n", 1);
    return rc;
}

int fcgi_errorf(fcgi_error *er, int status, const char *type, const char *code, const char *param,
                const char *fmt, ...) {
    er->status = status;
    er->type = type;
    er->code = code;
    er->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(er->msg, sizeof er->msg, fmt, ap);
    va_end(ap);
    return -1;
}

void fcgi_error_write(jw *b, const fcgi_error *er) {
    /* the message may quote client bytes that are not UTF-8: jw_str repairs them */
    jw_lit(b, "{\"error\":{\"message\":");
    jw_str(b, er->msg, strlen(er->msg));
    jw_lit(b, ",\"type\":");
    jw_str(b, er->type, strlen(er->type));
    jw_lit(b, ",\"param\":");
    if (er->param) jw_str(b, er->param, strlen(er->param));
    else jw_lit(b, "null");
    jw_lit(b, ",\"code\":");
    if (er->code) jw_str(b, er->code, strlen(er->code));
    else jw_lit(b, "null");
    jw_lit(b, "}}");
}

/* Anthropic's error type for a status (their documented list). */
static const char *anthropic_type(int status) {
    switch (status) {
    case 400: case 405: case 414: case 431: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: case 529: return "overloaded_error";
    default: return "api_error";
    }
}

void fcgi_error_write_shape(jw *b, const fcgi_error *er, int shape) {
    if (shape != FCGI_ERR_ANTHROPIC) { fcgi_error_write(b, er); return; }
    jw_lit(b, "{\"type\":\"error\",\"error\":{\"type\":\"");
    jw_lit(b, anthropic_type(er->status));
    jw_lit(b, "\",\"message\":");
    jw_str(b, er->msg, strlen(er->msg));
    jw_lit(b, "}}");
}

int fcgi_reply_error(fcgi_out *o, const fcgi_error *er, const char *extra) {
    jw b = {0};
    fcgi_error_write_shape(&b, er, o->err_shape);
    int rc = fcgi_reply_json(o, er->status, &b, extra);
    jw_free(&b);
    return rc;
}
