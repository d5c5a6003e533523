#include "err.h"

#include <stdarg.h>
#include <stdio.h>

int err_set(err *e, err_code code, const char *fmt, ...) {
    if (!e) return (int)code;
    if (e->code != ERR_OK) return (int)e->code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return (int)code;
}

void err_clear(err *e) {
    if (!e) return;
    e->code = ERR_OK;
    e->msg[0] = '\0';
}

const char *err_code_name(err_code code) {
    switch (code) {
    case ERR_OK: return "ok";
    case ERR_IO: return "io";
    case ERR_FORMAT: return "format";
    case ERR_NOMEM: return "nomem";
    case ERR_UNSUPPORTED: return "unsupported";
    case ERR_INVALID: return "invalid";
    case ERR_ABSENT: return "absent";
    case ERR_UNAVAILABLE: return "unavailable";
    }
    return "unknown";
}
