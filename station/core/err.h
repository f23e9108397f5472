/* Station's one error convention: functions return 0 or a negative ST_ERR_* code and,
 * when given a non-NULL st_err, fill it with a one-line message; each layer prefixes its
 * step as the error travels up, so the operator reads
 * "slot 2 (unit 3f2a..): dfu: write 0x08004000: device reported errPROG".
 * The returned code is the truth and never depends on the buffer: the st_err is optional,
 * and code paths must behave the same with or without one (st_err_wrap returns the code it
 * is given; nothing returns err->code). */
#ifndef STATION_CORE_ERR_H
#define STATION_CORE_ERR_H

#include <stddef.h>

enum st_status {
    ST_OK = 0,
    ST_ERR_INVAL = -1,       /* bad input: file, field, argument, image */
    ST_ERR_NOMEM = -2,       /* out of memory */
    ST_ERR_IO = -3,          /* operating-system or transport I/O failure */
    ST_ERR_TIMEOUT = -4,     /* a deadline passed */
    ST_ERR_PROTO = -5,       /* the peer said something the protocol does not allow */
    ST_ERR_DEVICE = -6,      /* the device reported an error status */
    ST_ERR_VERIFY = -7,      /* read-back differs from what was written */
    ST_ERR_NOTFOUND = -8,    /* device, file, line or node not found */
    ST_ERR_DISCONNECT = -9,  /* the device went away */
    ST_ERR_STALL = -10,      /* USB endpoint stalled the request */
    ST_ERR_BUSY = -11,       /* resource held by someone else */
    ST_ERR_UNSUPPORTED = -12,/* not supported by this device/backend */
    ST_ERR_MISMATCH = -13,   /* digest, identity or target mismatch */
    ST_ERR_PERM = -14,       /* permission denied (udev rule / group missing) */
    ST_ERR_CANCELLED = -15,  /* operator or signal stopped the run */
};

#define ST_ERR_MSG_MAX 1024

typedef struct st_err {
    int code;                 /* 0 or a negative enum st_status */
    char msg[ST_ERR_MSG_MAX]; /* one line, no trailing newline */
} st_err;

/* Human name of a code ("timeout", "verify failed", ...); never NULL. */
const char *st_strerror(int code);

/* Set err (if non-NULL) to code and a printf-style message; returns code so callers can
 * write `return st_err_set(err, ST_ERR_INVAL, "...")`. */
int st_err_set(st_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix err->msg with "<fmt>: " (the step this layer was doing); does nothing with a NULL
 * err. It returns nothing on purpose: the code a caller returns is the one it got from the
 * call that failed, never one read back from the optional buffer (issue 7: a caller that
 * passed no buffer turned a stall into an I/O error). An err still at ST_OK gets
 * ST_ERR_IO, so a filled message never says "ok". */
void st_err_prefix(st_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* st_err_prefix, then return code (a negative ST_ERR_*), with or without a buffer:
 *     if (rc < 0)
 *         return st_err_wrap(err, rc, "write 0x%08x", addr);
 * A non-NULL err gets err->code = code, so buffer and return value always agree. A code
 * >= 0 (a caller's bug) becomes ST_ERR_IO, with or without a buffer. */
int st_err_wrap(st_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

void st_err_clear(st_err *err);

/* Map an errno value to the closest ST_ERR_* code. */
int st_err_from_errno(int errnum);

#endif
