/* err.h — errors as values.
 *
 * Every fallible function takes an `err *` (may be NULL) and returns a status:
 * 0 on success, the nonzero err_code on failure. The message names the field or
 * the step that failed and never contains a host file path (it may reach an HTTP
 * client). Once set, an err stays set until err_clear(). */
#ifndef SPARKD_ERR_H
#define SPARKD_ERR_H

typedef enum err_code {
    ERR_OK = 0,
    ERR_IO,          /* open/read/pread failed, short file */
    ERR_FORMAT,      /* malformed input: bad magic, bad field, out-of-range value */
    ERR_NOMEM,       /* allocation failed or a planned buffer is too small */
    ERR_UNSUPPORTED, /* well-formed but not handled (unknown arch, quant type) */
    ERR_INVALID,     /* caller passed something invalid (bad argument, option) */
    ERR_ABSENT,      /* a looked-up key/tensor does not exist */
    ERR_UNAVAILABLE, /* temporarily refusing work (draining, loading): HTTP 503 */
} err_code;

typedef struct err {
    err_code code;
    char msg[320];
} err;

/* Sets code and message (printf-style) unless an error is already set; returns
 * the code that is now set (so `return err_set(e, ERR_FORMAT, ...)` works). */
int err_set(err *e, err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void err_clear(err *e);
const char *err_code_name(err_code code);

#endif
