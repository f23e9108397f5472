/* The adapter side of slcan (LAWICEL ASCII, as Linux drivers/net/can/slcan/slcan-core.c
 * 6.1 speaks it): "t<iii><l><dd..>\r" frames both ways; the kernel also sends "C\r",
 * "S<n>\r" and "O\r" when the netdev goes up and "C\r" when it goes down, and waits until
 * each command has been written to the tty, so the master must be read at all times
 * (reference vm-rig README: otherwise bringing the interface up times out). */
#include "protocols/link/slcan_server.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "station/core/clock.h"

#define MOD "slcan"
#ifndef N_SLCAN
#define N_SLCAN 17 /* include/uapi/linux/tty.h */
#endif
#ifndef N_TTY
#define N_TTY 0
#endif
#define IDLE_POLL_MS 10        /* bus polling after IDLE_AFTER_US without a frame */
#define IDLE_AFTER_US 100000u
#define LINE_MAX_LEN 40 /* "T" + 8 id + 1 len + 16 data = 26; leave room, drop longer */

struct st_slcan_server {
    st_can_link *link;
    const st_logger *log;
    st_slcan_opts opts;
    int master, slave; /* slave -1 in _new_fd mode */
    char ifname[IFNAMSIZ];
    char line[LINE_MAX_LEN];
    size_t line_len;
    int line_overflow;
    uint64_t last_frame_us; /* last frame either way: fast bus polling while traffic flows */
    st_slcan_stats stats;
};

static const char hexd[] = "0123456789ABCDEF";

size_t st_slcan_format(const st_can_frame *f, char *buf)
{
    uint8_t len = f->len > 8 ? 8 : f->len;
    size_t n = 0;
    buf[n++] = 't';
    buf[n++] = hexd[(f->id >> 8) & 0x7];
    buf[n++] = hexd[(f->id >> 4) & 0xf];
    buf[n++] = hexd[f->id & 0xf];
    buf[n++] = (char)('0' + len);
    for (uint8_t i = 0; i < len; i++) {
        buf[n++] = hexd[f->data[i] >> 4];
        buf[n++] = hexd[f->data[i] & 0xf];
    }
    buf[n++] = '\r';
    return n;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int st_slcan_parse(const char *line, size_t n, st_can_frame *f, char *cmd)
{
    if (n == 0)
        return ST_ERR_PROTO;
    char c = line[0];
    if (c != 't' && c != 'T' && c != 'r' && c != 'R') {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) {
            *cmd = c;
            return 0;
        }
        return ST_ERR_PROTO;
    }
    size_t idlen = (c == 't' || c == 'r') ? 3 : 8;
    if (n < 1 + idlen + 1)
        return ST_ERR_PROTO;
    uint32_t id = 0;
    for (size_t i = 0; i < idlen; i++) {
        int v = hexval(line[1 + i]);
        if (v < 0)
            return ST_ERR_PROTO;
        id = id << 4 | (uint32_t)v;
    }
    char lc = line[1 + idlen];
    if (lc < '0' || lc > '8')
        return ST_ERR_PROTO;
    uint8_t len = (uint8_t)(lc - '0');
    size_t want = 1 + idlen + 1 + ((c == 't' || c == 'T') ? 2u * len : 0u);
    if (n != want)
        return ST_ERR_PROTO;
    if (c != 't' || id > 0x7ff)
        return 2; /* extended or remote: nothing in our protocols uses them */
    f->id = id;
    f->len = len;
    memset(f->data, 0, sizeof(f->data));
    for (uint8_t i = 0; i < len; i++) {
        int hi = hexval(line[5 + 2 * i]), lo = hexval(line[6 + 2 * i]);
        if (hi < 0 || lo < 0)
            return ST_ERR_PROTO;
        f->data[i] = (uint8_t)(hi << 4 | lo);
    }
    return 1;
}

uint32_t st_slcan_bitrate(const char *line, size_t n)
{
    static const uint32_t rates[] = {10000,  20000,  50000,  100000, 125000,
                                     250000, 500000, 800000, 1000000};
    if (n != 2 || line[0] != 'S' || line[1] < '0' || line[1] > '8')
        return 0;
    return rates[line[1] - '0'];
}

static int set_raw(int fd)
{
    struct termios t;
    if (tcgetattr(fd, &t) < 0)
        return -1;
    cfmakeraw(&t);
    return tcsetattr(fd, TCSANOW, &t);
}

static int server_alloc(st_can_link *link, const st_slcan_opts *opts, const st_logger *log,
                        st_slcan_server **out, st_err *err)
{
    st_slcan_server *s = calloc(1, sizeof(*s));
    *out = s;
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "slcan server: out of memory");
    s->link = link;
    s->log = log;
    if (opts)
        s->opts = *opts;
    if (!s->opts.poll_ms)
        s->opts.poll_ms = 1;
    s->master = s->slave = -1;
    *out = s;
    return 0;
}

int st_slcan_server_new_fd(st_can_link *link, int fd, const st_slcan_opts *opts,
                           const st_logger *log, st_slcan_server **out, st_err *err)
{
    int rc = server_alloc(link, opts, log, out, err);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    (*out)->master = fd;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    snprintf((*out)->ifname, sizeof((*out)->ifname), "fd%d", fd);
    return 0;
}

int st_slcan_server_new(st_can_link *link, const st_slcan_opts *opts, const st_logger *log,
                        st_slcan_server **out, st_err *err)
{
    st_slcan_server *s;
    int rc = server_alloc(link, opts, log, &s, err);
    if (rc < 0)
        return rc;
    const char *step = "posix_openpt";
    s->master = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (s->master < 0)
        goto fail;
    step = "grantpt/unlockpt";
    if (grantpt(s->master) < 0 || unlockpt(s->master) < 0)
        goto fail;
    char name[64];
    step = "ptsname";
    if (ptsname_r(s->master, name, sizeof(name)) != 0)
        goto fail;
    step = "open pty slave";
    s->slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s->slave < 0)
        goto fail;
    step = "raw mode";
    if (set_raw(s->slave) < 0)
        goto fail;
    /* The slave stays open for the server's life: closing it detaches the discipline. */
    int ldisc = N_SLCAN;
    step = "TIOCSETD N_SLCAN (is the slcan module loaded? modprobe slcan)";
    if (ioctl(s->slave, TIOCSETD, &ldisc) < 0)
        goto fail;
    step = "SIOCGIFNAME on the slcan tty";
    if (ioctl(s->slave, SIOCGIFNAME, s->ifname) < 0)
        goto fail;
    s->ifname[IFNAMSIZ - 1] = 0;
    if (s->opts.ifname && strcmp(s->opts.ifname, s->ifname) != 0) {
        struct ifreq ifr;
        memset(&ifr, 0, sizeof(ifr));
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", s->ifname);
        snprintf(ifr.ifr_newname, sizeof(ifr.ifr_newname), "%s", s->opts.ifname);
        int sk = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        step = "rename the netdev (SIOCSIFNAME; is the name taken?)";
        if (sk < 0)
            goto fail;
        int r = ioctl(sk, SIOCSIFNAME, &ifr);
        int e = errno;
        close(sk);
        if (r < 0) {
            errno = e;
            goto fail;
        }
        snprintf(s->ifname, sizeof(s->ifname), "%s", s->opts.ifname);
    }
    ST_LOGI(log, MOD, "slcan on %s is %s", name, s->ifname);
    *out = s;
    return 0;
fail:;
    int e = errno;
    rc = st_err_set(err, st_err_from_errno(e), "slcan: %s: %s", step, strerror(e));
    st_slcan_server_free(s);
    return rc;
}

const char *st_slcan_server_ifname(const st_slcan_server *s)
{
    return s->ifname;
}

void st_slcan_server_stats(const st_slcan_server *s, st_slcan_stats *out)
{
    *out = s->stats;
}

void st_slcan_server_free(st_slcan_server *s)
{
    if (!s)
        return;
    if (s->slave >= 0) {
        int ldisc = N_TTY;
        ioctl(s->slave, TIOCSETD, &ldisc);
        close(s->slave);
    }
    if (s->master >= 0)
        close(s->master);
    free(s);
}

void st_slcan_server_pollfd(const st_slcan_server *s, struct pollfd *pfd)
{
    pfd->fd = s->master;
    pfd->events = POLLIN;
    pfd->revents = 0;
}

int st_slcan_server_timeout_ms(const st_slcan_server *s)
{
    /* The link has no fd: poll it while frames may flow to the kernel, fast while they do
     * (a node answers within microseconds), slower when the bus is quiet (CPU in the VM). */
    if (!s->stats.open)
        return -1;
    if (st_now_us() - s->last_frame_us < IDLE_AFTER_US)
        return (int)s->opts.poll_ms;
    return s->opts.poll_ms > IDLE_POLL_MS ? (int)s->opts.poll_ms : IDLE_POLL_MS;
}

static int write_all(st_slcan_server *s, const char *buf, size_t n, st_err *err)
{
    st_deadline d = st_deadline_in_ms(1000);
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(s->master, buf + done, n - done);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN)
            return st_err_set(err, st_err_from_errno(errno), "slcan: write to %s: %s",
                              s->ifname, strerror(errno));
        if (st_deadline_passed(d))
            return st_err_set(err, ST_ERR_TIMEOUT, "slcan: %s does not take input", s->ifname);
        struct pollfd p = {.fd = s->master, .events = POLLOUT};
        poll(&p, 1, 10);
    }
    return 0;
}

static int handle_line(st_slcan_server *s, st_err *err)
{
    st_can_frame f;
    char cmd = 0;
    int rc = st_slcan_parse(s->line, s->line_len, &f, &cmd);
    if (rc == 1) {
        s->stats.to_bus++;
        s->last_frame_us = st_now_us();
        ST_LOGD(s->log, MOD, "%s -> bus %03x [%u]", s->ifname, f.id, f.len);
        return st_can_send(s->link, &f, 1000, err);
    }
    if (rc == 2) {
        s->stats.dropped++;
        return 0;
    }
    if (rc == 0) {
        s->stats.commands++;
        bool was_open = s->stats.open;
        if (cmd == 'S') {
            uint32_t br = st_slcan_bitrate(s->line, s->line_len);
            if (br)
                s->stats.bitrate = br;
        } else if (cmd == 'O') {
            s->stats.open = true;
        } else if (cmd == 'C') {
            s->stats.open = false;
        }
        ST_LOGD(s->log, MOD, "%s command %.*s", s->ifname, (int)s->line_len, s->line);
        if (was_open != s->stats.open && s->opts.on_state)
            s->opts.on_state(s->opts.ctx, s->stats.open, s->stats.bitrate);
        return 0;
    }
    s->stats.bad_lines++;
    ST_LOGW(s->log, MOD, "%s: not slcan: %.*s", s->ifname, (int)s->line_len, s->line);
    return 0;
}

int st_slcan_server_step(st_slcan_server *s, st_err *err)
{
    char buf[512];
    for (;;) {
        ssize_t r = read(s->master, buf, sizeof(buf));
        if (r > 0) {
            for (ssize_t i = 0; i < r; i++) {
                char c = buf[i];
                if (c == '\r' || c == '\n') {
                    if (!s->line_overflow && s->line_len) {
                        int rc = handle_line(s, err);
                        if (rc < 0)
                            return rc;
                    } else if (s->line_overflow) {
                        s->stats.bad_lines++;
                    }
                    s->line_len = 0;
                    s->line_overflow = 0;
                } else if (s->line_len < sizeof(s->line)) {
                    s->line[s->line_len++] = c;
                } else {
                    s->line_overflow = 1;
                }
            }
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EIO))
            break; /* EIO: a pty whose other side is not open yet */
        if (r == 0)
            break;
        return st_err_set(err, st_err_from_errno(errno), "slcan: read %s: %s", s->ifname,
                          strerror(errno));
    }
    /* Frames from the bus. While closed a real adapter is off the bus: drain and drop. */
    st_can_frame f;
    for (int i = 0; i < 256; i++) {
        int rc = st_can_recv(s->link, &f, 0, err);
        if (rc < 0)
            return rc;
        if (rc == 0)
            break;
        if (!s->stats.open) {
            s->stats.dropped++;
            continue;
        }
        char line[24];
        size_t n = st_slcan_format(&f, line);
        rc = write_all(s, line, n, err);
        if (rc < 0)
            return rc;
        s->stats.to_host++;
        s->last_frame_us = st_now_us();
    }
    return 0;
}

int st_slcan_server_run(st_slcan_server *s, unsigned ms, st_err *err)
{
    st_deadline d = st_deadline_in_ms(ms);
    for (;;) {
        int rc = st_slcan_server_step(s, err);
        if (rc < 0)
            return rc;
        int left = st_deadline_remaining_ms(d);
        if (left == 0)
            return 0;
        struct pollfd p;
        st_slcan_server_pollfd(s, &p);
        int t = st_slcan_server_timeout_ms(s);
        if (t < 0 || t > left)
            t = left;
        if (poll(&p, 1, t) < 0 && errno != EINTR)
            return st_err_set(err, st_err_from_errno(errno), "slcan: poll: %s", strerror(errno));
    }
}
