/* Error values with context: see err.h for the convention. */
#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *st_strerror(int code)
{
    switch (code) {
    case ST_OK: return "ok";
    case ST_ERR_INVAL: return "invalid input";
    case ST_ERR_NOMEM: return "out of memory";
    case ST_ERR_IO: return "I/O error";
    case ST_ERR_TIMEOUT: return "timeout";
    case ST_ERR_PROTO: return "protocol error";
    case ST_ERR_DEVICE: return "device reported an error";
    case ST_ERR_VERIFY: return "verify failed";
    case ST_ERR_NOTFOUND: return "not found";
    case ST_ERR_DISCONNECT: return "device disconnected";
    case ST_ERR_STALL: return "request stalled";
    case ST_ERR_BUSY: return "busy";
    case ST_ERR_UNSUPPORTED: return "not supported";
    case ST_ERR_MISMATCH: return "mismatch";
    case ST_ERR_PERM: return "permission denied";
    case ST_ERR_CANCELLED: return "cancelled";
    default: return "unknown error";
    }
}

int st_err_set(st_err *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

static void prefix_v(st_err *err, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void prefix_v(st_err *err, const char *fmt, va_list ap)
{
    char head[ST_ERR_MSG_MAX];
    if (vsnprintf(head, sizeof head, fmt, ap) < 0)
        return;
    /* Truncation keeps the outer steps, which name the unit and step. */
    char joined[2 * ST_ERR_MSG_MAX + 2];
    snprintf(joined, sizeof joined, "%s: %s", head,
             err->msg[0] ? err->msg : st_strerror(err->code));
    memcpy(err->msg, joined, sizeof err->msg - 1);
    err->msg[sizeof err->msg - 1] = '\0';
}

void st_err_prefix(st_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    prefix_v(err, fmt, ap);
    va_end(ap);
    if (err->code == ST_OK)
        err->code = ST_ERR_IO;
}

int st_err_wrap(st_err *err, int code, const char *fmt, ...)
{
    /* A non-negative code here is a caller's bug; it must still read as a failure, the same
     * one with or without a buffer. */
    int rc = code < 0 ? code : ST_ERR_IO;
    if (!err)
        return rc;
    if (!err->msg[0])
        err->code = rc; /* an empty message reads as the code's name */
    va_list ap;
    va_start(ap, fmt);
    prefix_v(err, fmt, ap);
    va_end(ap);
    err->code = rc;
    return rc;
}

void st_err_clear(st_err *err)
{
    if (err) {
        err->code = ST_OK;
        err->msg[0] = '\0';
    }
}

int st_err_from_errno(int errnum)
{
    switch (errnum) {
    case 0: return ST_OK;
    case ENOMEM: return ST_ERR_NOMEM;
    case ETIMEDOUT: case EAGAIN: return ST_ERR_TIMEOUT;
    case ENOENT: case ENODEV: case ENXIO: return ST_ERR_NOTFOUND;
    case EACCES: case EPERM: return ST_ERR_PERM;
    case EBUSY: return ST_ERR_BUSY;
    case EINVAL: return ST_ERR_INVAL;
    case ENOTSUP: return ST_ERR_UNSUPPORTED;
    case EPIPE: return ST_ERR_STALL;
    case ECANCELED: case EINTR: return ST_ERR_CANCELLED;
    default: return ST_ERR_IO;
    }
}
