/* pty server. The master runs in packet mode (TIOCPKT) and the slave has EXTPROC set, so
 * every tcsetattr by the client wakes us with TIOCPKT_IOCTL (drivers/tty/pty.c
 * pty_set_termios); tcgetattr on the master reads the slave's settings (tty_mode_ioctl
 * works on the pair's slave), so we can tell the model what the client asked for. Reads on
 * the master fail with EIO while no client has the slave open (reference 2.2a): that is
 * "nobody connected", not an error. */
#include "protocols/link/pty_server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "station/core/clock.h"

#define MOD "pty"
#define RETRY_MS 10 /* how often a port with no client is looked at again */
#define LEAD_MAX_US 500u /* the most st_pty_server_run wakes before an answer is due */

struct st_pty_server {
    st_stream_model *model;
    const st_logger *log;
    int master;
    char path[64];
    char *symlink;
    bool have_line;
    uint64_t wake_late_us; /* run: how late its timed wake-ups come, a running mean */
    bool heard;            /* input read since the model's last output was written */
    st_pty_stats stats;
};

static uint32_t speed_to_baud(speed_t sp)
{
    static const struct {
        speed_t sp;
        uint32_t baud;
    } map[] = {
        {B50, 50},         {B75, 75},         {B110, 110},       {B134, 134},
        {B150, 150},       {B200, 200},       {B300, 300},       {B600, 600},
        {B1200, 1200},     {B1800, 1800},     {B2400, 2400},     {B4800, 4800},
        {B9600, 9600},     {B19200, 19200},   {B38400, 38400},   {B57600, 57600},
        {B115200, 115200}, {B230400, 230400}, {B460800, 460800}, {B500000, 500000},
        {B576000, 576000}, {B921600, 921600}, {B1000000, 1000000}, {B1152000, 1152000},
        {B1500000, 1500000}, {B2000000, 2000000}, {B2500000, 2500000}, {B3000000, 3000000},
        {B3500000, 3500000}, {B4000000, 4000000},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (map[i].sp == sp)
            return map[i].baud;
    return 0;
}

static void termios_to_line(const struct termios *t, st_stream_line *l)
{
    l->baud = speed_to_baud(cfgetospeed(t));
    switch (t->c_cflag & CSIZE) {
    case CS5: l->data_bits = 5; break;
    case CS6: l->data_bits = 6; break;
    case CS7: l->data_bits = 7; break;
    default: l->data_bits = 8; break;
    }
    l->parity = (t->c_cflag & PARENB) ? ((t->c_cflag & PARODD) ? 'O' : 'E') : 'N';
    l->stop_bits = (t->c_cflag & CSTOPB) ? 2 : 1;
    l->rtscts = (t->c_cflag & CRTSCTS) ? 1 : 0;
}

int st_pty_server_new(st_stream_model *m, const st_logger *log, st_pty_server **out,
                      st_err *err)
{
    st_pty_server *s = calloc(1, sizeof(*s));
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "pty server: out of memory");
    s->model = m;
    s->log = log;
    const char *step = "posix_openpt";
    int slave = -1;
    s->master = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (s->master < 0)
        goto fail;
    step = "grantpt/unlockpt";
    if (grantpt(s->master) < 0 || unlockpt(s->master) < 0)
        goto fail;
    step = "ptsname";
    if (ptsname_r(s->master, s->path, sizeof(s->path)) != 0)
        goto fail;
    step = "open pty slave";
    slave = open(s->path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0)
        goto fail;
    /* Raw from the start: a client that reads before it sets its own modes must not get
     * echo or CR/LF translation; EXTPROC makes termios changes visible to the master. */
    struct termios t;
    step = "set raw mode";
    if (tcgetattr(slave, &t) < 0)
        goto fail;
    cfmakeraw(&t);
    t.c_lflag |= EXTPROC;
    cfsetispeed(&t, B115200);
    cfsetospeed(&t, B115200);
    if (tcsetattr(slave, TCSANOW, &t) < 0)
        goto fail;
    int on = 1;
    step = "TIOCPKT";
    if (ioctl(s->master, TIOCPKT, &on) < 0)
        goto fail;
    close(slave);
    termios_to_line(&t, &s->stats.line);
    ST_LOGI(log, MOD, "serving %s", s->path);
    *out = s;
    return 0;
fail:;
    int e = errno;
    if (slave >= 0)
        close(slave);
    st_pty_server_free(s);
    return st_err_set(err, st_err_from_errno(e), "pty: %s: %s", step, strerror(e));
}

const char *st_pty_server_path(const st_pty_server *s)
{
    return s->path;
}

int st_pty_server_symlink(st_pty_server *s, const char *link_path, st_err *err)
{
    char *copy = strdup(link_path);
    if (!copy)
        return st_err_set(err, ST_ERR_NOMEM, "pty: out of memory");
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.%d.tmp", link_path, (int)getpid());
    /* symlink + rename: replaces an older link in one step, never a regular file. */
    if (symlink(s->path, tmp) < 0 || rename(tmp, link_path) < 0) {
        int e = errno;
        unlink(tmp);
        free(copy);
        return st_err_set(err, st_err_from_errno(e), "pty: link %s -> %s: %s", link_path,
                          s->path, strerror(e));
    }
    free(s->symlink);
    s->symlink = copy;
    return 0;
}

void st_pty_server_set_model(st_pty_server *s, st_stream_model *m)
{
    s->model = m;
    s->have_line = false; /* tell the new model the line settings at the next step */
}

void st_pty_server_stats(const st_pty_server *s, st_pty_stats *out)
{
    *out = s->stats;
}

void st_pty_server_free(st_pty_server *s)
{
    if (!s)
        return;
    if (s->symlink) {
        char target[64];
        ssize_t n = readlink(s->symlink, target, sizeof(target) - 1);
        if (n > 0) {
            target[n] = 0;
            if (strcmp(target, s->path) == 0)
                unlink(s->symlink); /* only our own link, not one a newer server made */
        }
        free(s->symlink);
    }
    if (s->master >= 0)
        close(s->master);
    free(s);
}

void st_pty_server_pollfd(const st_pty_server *s, struct pollfd *pfd)
{
    pfd->fd = s->stats.connected ? s->master : -1;
    pfd->events = POLLIN;
    pfd->revents = 0;
}

int st_pty_server_timeout_ms(const st_pty_server *s)
{
    int t = s->stats.connected ? -1 : RETRY_MS;
    if (s->model) {
        uint64_t next = s->model->ops->next_event_us(s->model);
        if (next != UINT64_MAX) {
            uint64_t now = st_now_us();
            uint64_t ms = next <= now ? 0 : (next - now + 999) / 1000;
            if (ms > 1000)
                ms = 1000;
            if (t < 0 || (int)ms < t)
                t = (int)ms;
        }
    }
    return t;
}

static void check_line(st_pty_server *s)
{
    struct termios t;
    if (tcgetattr(s->master, &t) < 0)
        return;
    st_stream_line l;
    termios_to_line(&t, &l);
    if (s->have_line && memcmp(&l, &s->stats.line, sizeof(l)) == 0)
        return;
    s->stats.line = l;
    s->have_line = true;
    s->stats.line_changes++;
    ST_LOGD(s->log, MOD, "%s: %u %u%c%u", s->path, l.baud, l.data_bits, l.parity, l.stop_bits);
    /* A pty has no modem lines: DTR/RTS are reported as unknown (-1). */
    if (s->model && s->model->ops->line)
        s->model->ops->line(s->model, &l, -1, -1);
}

static int write_out(st_pty_server *s, const uint8_t *buf, size_t n, st_err *err)
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
        if (w < 0 && errno == EIO) { /* the client went away mid-write */
            s->stats.connected = false;
            s->stats.dropped += n - done;
            return 0;
        }
        if (w < 0 && errno != EAGAIN)
            return st_err_set(err, st_err_from_errno(errno), "pty: write %s: %s", s->path,
                              strerror(errno));
        /* The client is not reading and the pty buffer (a few KiB) is full: a real UART
         * would overrun the client's FIFO; wait a little, then drop. */
        if (st_deadline_passed(d)) {
            s->stats.dropped += n - done;
            ST_LOGW(s->log, MOD, "%s: client not reading, %zu bytes dropped", s->path, n - done);
            return 0;
        }
        struct pollfd p = {.fd = s->master, .events = POLLOUT};
        poll(&p, 1, 10);
    }
    s->stats.tx_bytes += n;
    return 0;
}

int st_pty_server_step(st_pty_server *s, st_err *err)
{
    uint8_t buf[4097];
    for (;;) {
        ssize_t r = read(s->master, buf, sizeof(buf));
        if (r > 0) {
            if (!s->stats.connected)
                ST_LOGD(s->log, MOD, "%s: client connected", s->path);
            s->stats.connected = true;
            /* Packet mode: first byte 0 = data follows; else status bits (TIOCPKT_IOCTL
             * after a tcsetattr, flush/stop/start notices) and no data. */
            if (buf[0] == TIOCPKT_DATA && r > 1 && s->model) {
                uint64_t now = st_now_us();
                if (!s->heard) {
                    s->heard = true;
                    s->stats.first_reads++;
                    s->stats.first_read_sum_us += now;
                }
                s->model->ops->rx(s->model, buf + 1, (size_t)r - 1, now);
                s->stats.rx_bytes += (uint64_t)r - 1;
            }
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN) {
            if (!s->stats.connected)
                ST_LOGD(s->log, MOD, "%s: client connected", s->path);
            s->stats.connected = true;
            break;
        }
        if (r < 0 && errno == EIO) {
            if (s->stats.connected)
                ST_LOGD(s->log, MOD, "%s: client closed", s->path);
            s->stats.connected = false;
            break;
        }
        if (r == 0)
            break;
        return st_err_set(err, st_err_from_errno(errno), "pty: read %s: %s", s->path,
                          strerror(errno));
    }
    check_line(s);
    if (!s->model)
        return 0;
    uint64_t due = s->model->ops->next_event_us(s->model), t0 = st_now_us();
    bool counted = false;
    for (int i = 0; i < 64; i++) { /* bounded: a chatty model must not starve the loop */
        size_t n = s->model->ops->tx(s->model, buf, sizeof(buf), st_now_us());
        if (n && !counted) {
            if (due <= t0) {
                s->stats.answers++;
                s->stats.late_us += t0 - due;
            }
            s->stats.first_writes++;
            s->stats.first_write_sum_us += st_now_us();
            s->heard = false;
            counted = true;
        }
        if (n == 0)
            break;
        if (!s->stats.connected) {
            s->stats.dropped += n;
            continue;
        }
        int rc = write_out(s, buf, n, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* How long before an answer is due st_pty_server_run wakes for it: twice its timed
 * wake-ups' running lateness plus 20 us, at most LEAD_MAX_US. */
static uint64_t wake_lead_us(const st_pty_server *s)
{
    uint64_t lead = 2u * s->wake_late_us + 20u;
    return lead < LEAD_MAX_US ? lead : LEAD_MAX_US;
}

int st_pty_server_run(st_pty_server *s, unsigned ms, st_err *err)
{
    st_deadline d = st_deadline_in_ms(ms);
    for (;;) {
        int rc = st_pty_server_step(s, err);
        if (rc < 0)
            return rc;
        int left = st_deadline_remaining_ms(d);
        if (left == 0)
            return 0;
        struct pollfd p;
        st_pty_server_pollfd(s, &p);
        /* Wait to the microsecond for the model's next answer (a millisecond timeout
         * rounded up would add up to 1 ms to every simulated exchange). */
        uint64_t now = st_now_us(), until = d.at_us, due = UINT64_MAX;
        if (s->model) {
            uint64_t next = s->model->ops->next_event_us(s->model);
            if (next < until)
                until = due = next;
        }
        if (!s->stats.connected && now + RETRY_MS * 1000u < until)
            until = now + RETRY_MS * 1000u;
        /* A timed wake-up comes late (tens of us on a busy or virtual host, more than a
         * byte's time at 250000 baud): for an answer, wake that much before it is due and
         * hold it until then, so the simulated unit answers on time, never early. */
        bool answer = until == due && s->stats.connected;
        uint64_t wake = until;
        if (answer)
            wake = until > now + wake_lead_us(s) ? until - wake_lead_us(s) : now;
        uint64_t us = wake > now ? wake - now : 0;
        struct timespec ts = { .tv_sec = (time_t)(us / 1000000u),
                               .tv_nsec = (long)(us % 1000000u) * 1000 };
        st_clock_precise_wakeups();
        int n = ppoll(&p, 1, &ts, NULL);
        if (n < 0 && errno != EINTR)
            return st_err_set(err, st_err_from_errno(errno), "pty: poll: %s", strerror(errno));
        if (n == 0 && answer) {
            uint64_t t = st_now_us();
            if (us) {
                uint64_t late = t > wake ? t - wake : 0;
                s->wake_late_us = (s->wake_late_us * 7u + late) / 8u;
            }
            if (t < due)
                s->stats.early_wakes++;
            /* Bounded by the lead; yielding lets a thread of the same real-time priority
             * (the station's, under bench.sh --rt) run meanwhile. */
            while (t < due) {
                sched_yield();
                t = st_now_us();
            }
        }
    }
}
