/* termios byte-stream backend (st_stream_tty_open, stream.h): raw mode, VMIN/VTIME 0 and
 * poll() deadlines, any baud (termios2/BOTHER for rates like Katapult's 250000),
 * 5-8 data bits, N/E/O parity, 1-2 stop bits, DTR/RTS, BREAK, and an honest error when
 * the device cannot keep parity (a pty, reference 4.3a). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "protocols/link/stream.h"
#include "station/core/clock.h"
#include "station/core/text.h"

/* struct termios2 and BOTHER come from <asm/termbits.h>, which clashes with glibc's
 * <termios.h>; declare the kernel's generic layout here (x86, Arm, RISC-V). */
#if defined(__linux__) && (defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || \
                           defined(__arm__) || defined(__riscv))
#define HAVE_TERMIOS2 1
#define K_NCCS 19
struct termios2 {
    tcflag_t c_iflag, c_oflag, c_cflag, c_lflag;
    cc_t c_line;
    cc_t c_cc[K_NCCS];
    speed_t c_ispeed, c_ospeed;
};
#ifndef BOTHER
#define BOTHER 0010000
#endif
#define K_CBAUD 0010017
#define K_TCGETS2 _IOR('T', 0x2A, struct termios2)
#define K_TCSETS2 _IOW('T', 0x2B, struct termios2)
#endif

typedef struct tty_stream {
    st_stream base; /* first */
    int fd;
} tty_stream;

static int fd_of(st_stream *s)
{
    return ((tty_stream *)s)->fd;
}

static int tty_write(st_stream *s, const uint8_t *buf, size_t n, unsigned timeout_ms, st_err *err)
{
    st_deadline d = st_deadline_in_ms(timeout_ms);
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd_of(s), buf + done, n - done);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN) {
            int e = errno;
            int code = (e == EIO || e == ENXIO || e == ENODEV) ? ST_ERR_DISCONNECT
                                                                : st_err_from_errno(e);
            return st_err_set(err, code, "%s: write: %s", s->name, strerror(e));
        }
        int left = st_deadline_remaining_ms(d);
        if (left == 0)
            return st_err_set(err, ST_ERR_TIMEOUT, "%s: write: %zu of %zu bytes within %u ms",
                              s->name, done, n, timeout_ms);
        struct pollfd p = {.fd = fd_of(s), .events = POLLOUT};
        if (poll(&p, 1, left) < 0 && errno != EINTR)
            return st_err_set(err, st_err_from_errno(errno), "%s: poll: %s", s->name,
                              strerror(errno));
    }
    return (int)n;
}

static int tty_read(st_stream *s, uint8_t *buf, size_t cap, unsigned timeout_ms, st_err *err)
{
    st_deadline d = st_deadline_in_ms(timeout_ms);
    if (cap > (size_t)INT32_MAX)
        cap = INT32_MAX;
    /* VMIN = VTIME = 0: read() returns 0 both for "nothing yet" and after a hang-up, so
     * poll() decides which it is. */
    for (;;) {
        struct pollfd p = {.fd = fd_of(s), .events = POLLIN};
        int rc = poll(&p, 1, st_deadline_remaining_ms(d));
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            return st_err_set(err, st_err_from_errno(errno), "%s: poll: %s", s->name,
                              strerror(errno));
        }
        if (rc == 0)
            return 0;
        if (p.revents & POLLIN) {
            ssize_t r = read(fd_of(s), buf, cap);
            if (r > 0)
                return (int)r;
            if (r < 0 && (errno == EIO || errno == ENXIO || errno == ENODEV))
                return st_err_set(err, ST_ERR_DISCONNECT, "%s: device went away (%s)",
                                  s->name, strerror(errno));
            if (r < 0 && errno != EAGAIN && errno != EINTR)
                return st_err_set(err, st_err_from_errno(errno), "%s: read: %s", s->name,
                                  strerror(errno));
        }
        if (p.revents & (POLLHUP | POLLERR | POLLNVAL))
            return st_err_set(err, ST_ERR_DISCONNECT, "%s: device went away (hang-up)",
                              s->name);
        if (st_deadline_passed(d))
            return 0;
    }
}

static speed_t std_speed(uint32_t baud)
{
    switch (baud) {
    case 50: return B50;
    case 75: return B75;
    case 110: return B110;
    case 134: return B134;
    case 150: return B150;
    case 200: return B200;
    case 300: return B300;
    case 600: return B600;
    case 1200: return B1200;
    case 1800: return B1800;
    case 2400: return B2400;
    case 4800: return B4800;
    case 9600: return B9600;
    case 19200: return B19200;
    case 38400: return B38400;
    case 57600: return B57600;
    case 115200: return B115200;
    case 230400: return B230400;
    case 460800: return B460800;
    case 500000: return B500000;
    case 576000: return B576000;
    case 921600: return B921600;
    case 1000000: return B1000000;
    case 1500000: return B1500000;
    case 1152000: return B1152000;
    case 2000000: return B2000000;
    case 2500000: return B2500000;
    case 3000000: return B3000000;
    case 3500000: return B3500000;
    case 4000000: return B4000000;
    default: return B0;
    }
}

static int tty_set_line(st_stream *s, const st_stream_line *line, st_err *err)
{
    int fd = fd_of(s);
    if (!line)
        return st_err_set(err, ST_ERR_INVAL, "%s: no line settings", s->name);
    if (line->data_bits < 5 || line->data_bits > 8 || (line->stop_bits != 1 && line->stop_bits != 2) ||
        (line->parity != 'N' && line->parity != 'E' && line->parity != 'O') || !line->baud)
        return st_err_set(err, ST_ERR_INVAL, "%s: bad line settings %u %u%c%u", s->name,
                          line->baud, line->data_bits, line->parity, line->stop_bits);
    struct termios t;
    if (tcgetattr(fd, &t) < 0)
        return st_err_set(err, st_err_from_errno(errno), "%s: tcgetattr: %s", s->name,
                          strerror(errno));
    cfmakeraw(&t);
    t.c_cflag |= CLOCAL | CREAD;
    t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | PARODD | CSTOPB | CRTSCTS);
    static const tcflag_t sizes[] = {CS5, CS6, CS7, CS8};
    t.c_cflag |= sizes[line->data_bits - 5];
    if (line->parity != 'N')
        t.c_cflag |= PARENB | (line->parity == 'O' ? PARODD : 0);
    if (line->stop_bits == 2)
        t.c_cflag |= CSTOPB;
    if (line->rtscts)
        t.c_cflag |= CRTSCTS;
    t.c_iflag &= ~(tcflag_t)(IXON | IXOFF | IXANY | INPCK | ISTRIP);
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    speed_t sp = std_speed(line->baud);
    if (sp != B0) {
        cfsetispeed(&t, sp);
        cfsetospeed(&t, sp);
    }
    /* glibc's tcsetattr itself reports EINVAL when the kernel silently dropped PARENB or
     * CSIZE (a pty); the read-back below then names the real cause. */
    int set_errno = tcsetattr(fd, TCSANOW, &t) < 0 ? errno : 0;
    if (set_errno && set_errno != EINVAL)
        return st_err_set(err, st_err_from_errno(set_errno), "%s: tcsetattr: %s", s->name,
                          strerror(set_errno));
    if (sp == B0 && !set_errno) {
#ifdef HAVE_TERMIOS2
        struct termios2 t2;
        if (ioctl(fd, K_TCGETS2, &t2) < 0)
            return st_err_set(err, ST_ERR_UNSUPPORTED, "%s: baud %u: TCGETS2: %s", s->name,
                              line->baud, strerror(errno));
        t2.c_cflag &= ~(tcflag_t)K_CBAUD;
        t2.c_cflag |= BOTHER;
        t2.c_ispeed = t2.c_ospeed = line->baud;
        if (ioctl(fd, K_TCSETS2, &t2) < 0)
            return st_err_set(err, ST_ERR_UNSUPPORTED, "%s: baud %u: TCSETS2: %s", s->name,
                              line->baud, strerror(errno));
#else
        return st_err_set(err, ST_ERR_UNSUPPORTED, "%s: baud %u not supported here", s->name,
                          line->baud);
#endif
    }
    /* Read back: some devices silently drop what they cannot do. A pty forces CS8 and
     * clears PARENB (reference 4.3a), which would garble every AN3155 exchange. */
    struct termios b;
    if (tcgetattr(fd, &b) < 0)
        return st_err_set(err, st_err_from_errno(errno), "%s: tcgetattr: %s", s->name,
                          strerror(errno));
    if (line->parity != 'N' && !(b.c_cflag & PARENB))
        return st_err_set(err, ST_ERR_UNSUPPORTED,
                          "%s: the device cannot keep %s parity (a pty drops it); use 8N1 "
                          "(stm32flash -m 8n1) or a real UART / USB CDC-ACM device",
                          s->name, line->parity == 'E' ? "even" : "odd");
    if ((b.c_cflag & CSIZE) != sizes[line->data_bits - 5])
        return st_err_set(err, ST_ERR_UNSUPPORTED, "%s: the device cannot keep %u data bits",
                          s->name, line->data_bits);
    if (set_errno)
        return st_err_set(err, ST_ERR_INVAL, "%s: tcsetattr: %s", s->name,
                          strerror(set_errno));
    return 0;
}

static int tty_set_modem(st_stream *s, int dtr, int rts, st_err *err)
{
    int set = 0, clr = 0;
    if (dtr >= 0)
        *(dtr ? &set : &clr) |= TIOCM_DTR;
    if (rts >= 0)
        *(rts ? &set : &clr) |= TIOCM_RTS;
    if ((set && ioctl(fd_of(s), TIOCMBIS, &set) < 0) ||
        (clr && ioctl(fd_of(s), TIOCMBIC, &clr) < 0)) {
        int e = errno;
        /* cdc_acm sends SET_CONTROL_LINE_STATE synchronously: a unit that reboots on it
         * (the 1200-baud touch) is gone before the status stage, and the ioctl returns
         * the URB's ESHUTDOWN/ENODEV (seen in the kernel-driver rig). */
        int code = (e == ENOTTY || e == EINVAL)                              ? ST_ERR_UNSUPPORTED
                   : (e == ESHUTDOWN || e == ENODEV || e == EIO || e == ENXIO) ? ST_ERR_DISCONNECT
                                                                             : st_err_from_errno(e);
        return st_err_set(err, code, "%s: cannot set DTR/RTS: %s", s->name, strerror(e));
    }
    return 0;
}

static int tty_flush_input(st_stream *s, st_err *err)
{
    if (tcflush(fd_of(s), TCIFLUSH) < 0)
        return st_err_set(err, st_err_from_errno(errno), "%s: tcflush: %s", s->name,
                          strerror(errno));
    return 0;
}

static int tty_send_break(st_stream *s, unsigned ms, st_err *err)
{
    /* TIOCSBRK/TIOCCBRK hold the break for the time asked; tcsendbreak(0) is 0.25-0.5 s
     * whatever the driver. The hold is a bounded wait on the wire, like a write. */
    if (ioctl(fd_of(s), TIOCSBRK) < 0) {
        int e = errno;
        if (e == ENOTTY || e == EINVAL) {
            if (tcsendbreak(fd_of(s), 0) == 0)
                return 0;
            e = errno;
        }
        return st_err_set(err, e == ENOTTY || e == EINVAL ? ST_ERR_UNSUPPORTED
                                                          : st_err_from_errno(e),
                          "%s: cannot send BREAK: %s", s->name, strerror(e));
    }
    st_sleep_until(st_deadline_in_ms(ms ? ms : 1));
    if (ioctl(fd_of(s), TIOCCBRK) < 0)
        return st_err_set(err, st_err_from_errno(errno), "%s: cannot end BREAK: %s", s->name,
                          strerror(errno));
    return 0;
}

static void tty_close(st_stream *s)
{
    if (!s)
        return;
    close(fd_of(s));
    free(s);
}

static const st_stream_ops tty_ops = {
    .write = tty_write,
    .read = tty_read,
    .set_line = tty_set_line,
    .set_modem = tty_set_modem,
    .flush_input = tty_flush_input,
    .close = tty_close,
    .send_break = tty_send_break,
};

int st_stream_tty_open(const char *path, const st_stream_line *line, st_stream **out,
                       st_err *err)
{
    if (!path || !out)
        return st_err_set(err, ST_ERR_INVAL, "tty: no path");
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return st_err_set(err, st_err_from_errno(e), "%s: open: %s%s", path, strerror(e),
                          e == EACCES ? " (add the user to the dialout group)" : "");
    }
    if (!isatty(fd)) {
        close(fd);
        return st_err_set(err, ST_ERR_INVAL, "%s: not a terminal device", path);
    }
    tty_stream *t = calloc(1, sizeof *t);
    if (!t) {
        close(fd);
        return st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
    }
    t->base.ops = &tty_ops;
    t->fd = fd;
    st_strlcpy(t->base.name, path, sizeof t->base.name);
    /* Raw mode even without line settings: no echo, no line discipline on binary data. */
    struct termios tio;
    int rc = 0;
    if (tcgetattr(fd, &tio) < 0) {
        rc = st_err_set(err, st_err_from_errno(errno), "%s: tcgetattr: %s", path,
                        strerror(errno));
    } else {
        cfmakeraw(&tio);
        tio.c_cflag |= CLOCAL | CREAD;
        tio.c_cc[VMIN] = 0;
        tio.c_cc[VTIME] = 0;
        if (tcsetattr(fd, TCSANOW, &tio) < 0)
            rc = st_err_set(err, st_err_from_errno(errno), "%s: tcsetattr: %s", path,
                            strerror(errno));
    }
    if (rc == 0 && line)
        rc = tty_set_line(&t->base, line, err);
    if (rc == 0)
        tcflush(fd, TCIOFLUSH);
    if (rc < 0) {
        tty_close(&t->base);
        return rc;
    }
    *out = &t->base;
    return 0;
}
