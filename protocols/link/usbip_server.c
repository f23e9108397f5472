/* USB/IP device side over vhci-hcd: the wire format is the kernel's
 * Documentation/usb/usbip_protocol.rst (48-byte big-endian headers; CMD_SUBMIT/RET_SUBMIT,
 * CMD_UNLINK/RET_UNLINK); the attach handshake is drivers/usb/usbip/vhci_sysfs.c. */
#include "protocols/link/usbip_server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "station/core/clock.h"

#define MOD "usbip"
#define HDR_LEN 48
#define CMD_SUBMIT 1u
#define CMD_UNLINK 2u
#define RET_SUBMIT 3u
#define RET_UNLINK 4u
#define DIR_OUT 0u
#define DIR_IN 1u
/* The kernel never submits more than this per URB to a full-speed device in practice
 * (libusb splits at 16 KiB, usbfs caps at 16 MiB); anything above is a protocol error. */
#define MAX_XFER (1u << 20)
#define VDEV_ST_NULL 4 /* drivers/usb/usbip/usbip_common.h: port free */
#define POLL_BUSY_MS 1 /* pending transfers that moved recently */
#define POLL_IDLE_MS 5 /* pending transfers NAKed for a while (interrupt IN may NAK forever) */
#define BUSY_WINDOW_US 50000

typedef struct urb {
    struct urb *next;
    uint32_t seqnum, ep, dir;
    uint32_t len, done;
    uint8_t *buf;
} urb;

struct st_usbip_server {
    st_usb_model *model;
    const st_logger *log;
    int fd;
    int port;      /* vhci port, -1 if none */
    char vhci_dir[128];
    uint8_t *in;   /* bytes received, not yet parsed */
    size_t in_len, in_cap;
    urb *pending;  /* bulk/interrupt URBs the model has not finished, in arrival order */
    uint64_t last_progress_us;
    int unplugged_now; /* set when the connection went away during the current step */
    st_usbip_stats stats;
};

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int st_usbip_server_new(st_usb_model *m, const st_logger *log, st_usbip_server **out,
                        st_err *err)
{
    st_usbip_server *s = calloc(1, sizeof(*s));
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "usbip server: out of memory");
    s->model = m;
    s->log = log;
    s->fd = -1;
    s->port = -1;
    *out = s;
    return 0;
}

static void drop_pending(st_usbip_server *s)
{
    while (s->pending) {
        urb *u = s->pending;
        s->pending = u->next;
        free(u->buf);
        free(u);
    }
}

static int write_sysfs(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t n = strlen(text);
    ssize_t w = write(fd, text, n);
    int e = w < 0 ? -errno : ((size_t)w == n ? 0 : -EIO);
    close(fd);
    return e;
}

void st_usbip_server_unplug(st_usbip_server *s)
{
    if (!s || s->fd < 0)
        return;
    if (s->port >= 0) {
        char path[192], num[16];
        snprintf(path, sizeof(path), "%s/detach", s->vhci_dir);
        snprintf(num, sizeof(num), "%d", s->port);
        /* Fails harmlessly when the kernel already dropped the port (connection closed). */
        int e = write_sysfs(path, num);
        if (e)
            ST_LOGD(s->log, MOD, "detach port %d: %s", s->port, strerror(-e));
    }
    close(s->fd);
    s->fd = -1;
    ST_LOGI(s->log, MOD, "unplugged (port %d)", s->port);
    s->port = -1;
    s->in_len = 0;
    s->unplugged_now = 1;
    drop_pending(s);
}

void st_usbip_server_free(st_usbip_server *s)
{
    if (!s)
        return;
    st_usbip_server_unplug(s);
    free(s->in);
    free(s);
}

int st_usbip_server_plugged(const st_usbip_server *s)
{
    return s->fd >= 0;
}

int st_usbip_server_port(const st_usbip_server *s)
{
    return s->fd >= 0 ? s->port : -1;
}

void st_usbip_server_stats(const st_usbip_server *s, st_usbip_stats *out)
{
    *out = s->stats;
}

int st_usbip_server_plug_fd(st_usbip_server *s, st_usb_model *m, int fd, st_err *err)
{
    if (s->fd >= 0) {
        close(fd);
        return st_err_set(err, ST_ERR_BUSY, "usbip: already plugged");
    }
    if (m)
        s->model = m;
    if (!s->model) {
        close(fd);
        return st_err_set(err, ST_ERR_INVAL, "usbip: no device model");
    }
    s->fd = fd;
    s->port = -1;
    s->in_len = 0;
    s->unplugged_now = 0;
    return 0;
}

/* First free port on the hub that takes this speed: "hs" for low/full/high, "ss" for
 * super speed (vhci_sysfs.c status_show_vhci: "hub port sta spd dev sockfd local_busid"). */
static int find_free_port(const char *dir, uint32_t speed, st_err *err)
{
    char path[192], line[256];
    snprintf(path, sizeof(path), "%s/status", dir);
    FILE *f = fopen(path, "re");
    if (!f)
        return st_err_set(err, st_err_from_errno(errno),
                          "usbip: %s: %s (is vhci-hcd loaded? modprobe vhci-hcd)", path,
                          strerror(errno));
    const char *want = speed >= 5 ? "ss" : "hs";
    int port = -1;
    while (port < 0 && fgets(line, sizeof(line), f)) {
        char hub[8];
        int p, sta;
        if (sscanf(line, "%7s %d %d", hub, &p, &sta) == 3 && strcmp(hub, want) == 0 &&
            sta == VDEV_ST_NULL)
            port = p;
    }
    fclose(f);
    if (port < 0)
        return st_err_set(err, ST_ERR_BUSY, "usbip: no free %s port in %s", want, path);
    return port;
}

int st_usbip_server_plug(st_usbip_server *s, st_usb_model *m, const st_usbip_opts *opts,
                         st_err *err)
{
    static const st_usbip_opts defaults = {0};
    if (!opts)
        opts = &defaults;
    if (s->fd >= 0)
        return st_err_set(err, ST_ERR_BUSY, "usbip: already plugged on port %d", s->port);
    if (m)
        s->model = m;
    if (!s->model)
        return st_err_set(err, ST_ERR_INVAL, "usbip: no device model");
    snprintf(s->vhci_dir, sizeof(s->vhci_dir), "%s",
             opts->vhci_dir ? opts->vhci_dir : "/sys/devices/platform/vhci_hcd.0");
    uint32_t speed = opts->speed ? opts->speed : 2; /* USB_SPEED_FULL */
    int port = opts->use_port ? opts->port : find_free_port(s->vhci_dir, speed, err);
    if (port < 0)
        return port;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return st_err_set(err, st_err_from_errno(errno), "usbip: socketpair: %s",
                          strerror(errno));
    uint32_t devid = opts->devid ? opts->devid : (1u << 16) | (uint32_t)(port + 2);
    char path[192], text[64];
    snprintf(path, sizeof(path), "%s/attach", s->vhci_dir);
    snprintf(text, sizeof(text), "%d %d %u %u", port, sv[1], devid, speed);
    int e = write_sysfs(path, text);
    /* The kernel took its own reference to the socket (sockfd_lookup); ours can go. */
    close(sv[1]);
    if (e) {
        close(sv[0]);
        return st_err_set(err, st_err_from_errno(-e), "usbip: write '%s' to %s: %s", text,
                          path, strerror(-e));
    }
    s->fd = sv[0];
    s->port = port;
    s->in_len = 0;
    s->unplugged_now = 0;
    ST_LOGI(s->log, MOD, "plugged on %s port %d (devid 0x%08x, speed %u)", s->vhci_dir, port,
            devid, speed);
    return 0;
}

void st_usbip_server_pollfd(const st_usbip_server *s, struct pollfd *pfd)
{
    pfd->fd = s->fd;
    pfd->events = s->fd >= 0 ? POLLIN : 0;
    pfd->revents = 0;
}

int st_usbip_server_timeout_ms(const st_usbip_server *s)
{
    if (s->fd < 0 || !s->pending)
        return -1;
    return st_now_us() - s->last_progress_us < BUSY_WINDOW_US ? POLL_BUSY_MS : POLL_IDLE_MS;
}

static int send_all(st_usbip_server *s, const uint8_t *hdr, const uint8_t *data, size_t n,
                    st_err *err)
{
    struct iovec iov[2] = {{(void *)hdr, HDR_LEN}, {(void *)data, n}};
    size_t total = HDR_LEN + n, sent = 0;
    int iovcnt = n ? 2 : 1;
    while (sent < total) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t w = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return st_err_set(err, st_err_from_errno(errno), "usbip: send: %s",
                              strerror(errno));
        }
        sent += (size_t)w;
        /* Advance the iovecs past what went out (a stream socket may take part). */
        size_t adv = (size_t)w;
        for (int i = 0; i < iovcnt && adv; i++) {
            size_t k = adv < iov[i].iov_len ? adv : iov[i].iov_len;
            iov[i].iov_base = (uint8_t *)iov[i].iov_base + k;
            iov[i].iov_len -= k;
            adv -= k;
        }
    }
    return 0;
}

static int ret_submit(st_usbip_server *s, uint32_t seqnum, int32_t status, uint32_t actual,
                      const uint8_t *data, st_err *err)
{
    uint8_t h[HDR_LEN] = {0};
    put_be32(h, RET_SUBMIT);
    put_be32(h + 4, seqnum);
    put_be32(h + 20, (uint32_t)status);
    put_be32(h + 24, actual);
    if (status == -32)
        s->stats.stalls++;
    return send_all(s, h, data, data ? actual : 0, err);
}

static int ret_unlink(st_usbip_server *s, uint32_t seqnum, int32_t status, st_err *err)
{
    uint8_t h[HDR_LEN] = {0};
    put_be32(h, RET_UNLINK);
    put_be32(h + 4, seqnum);
    put_be32(h + 20, (uint32_t)status);
    return send_all(s, h, NULL, 0, err);
}

/* Model result -> URB status: a stall is -EPIPE, as a real halted endpoint gives. */
static int32_t model_status(st_usbip_server *s, int rc, const char *what)
{
    if (rc == ST_ERR_STALL)
        return -32;
    ST_LOGW(s->log, MOD, "%s: model error %s; answering as a stall", what, st_strerror(rc));
    return -32;
}

static int do_control(st_usbip_server *s, uint32_t seqnum, uint32_t dir, uint32_t len,
                      const uint8_t *setup_raw, const uint8_t *out_data, st_err *err)
{
    st_usb_setup su = {
        .bmRequestType = setup_raw[0],
        .bRequest = setup_raw[1],
        .wValue = (uint16_t)(setup_raw[2] | setup_raw[3] << 8),
        .wIndex = (uint16_t)(setup_raw[4] | setup_raw[5] << 8),
        .wLength = (uint16_t)(setup_raw[6] | setup_raw[7] << 8),
    };
    /* The model may write up to wLength bytes; the kernel's buffer may be shorter. */
    size_t cap = su.wLength > len ? su.wLength : len;
    uint8_t *buf = calloc(1, cap ? cap : 1);
    if (!buf)
        return st_err_set(err, ST_ERR_NOMEM, "usbip: out of memory");
    if (dir == DIR_OUT && len)
        memcpy(buf, out_data, len < su.wLength ? len : su.wLength);
    int rc = s->model->ops->control(s->model, &su, buf);
    s->stats.control++;
    ST_LOGD(s->log, MOD, "control %02x %02x %04x %04x %u -> %d", su.bmRequestType, su.bRequest,
            su.wValue, su.wIndex, su.wLength, rc);
    if (rc == ST_ERR_DISCONNECT) {
        free(buf);
        ST_LOGI(s->log, MOD, "model disconnected during control request %02x", su.bRequest);
        st_usbip_server_unplug(s);
        return 1;
    }
    int ret;
    if (rc < 0) {
        char what[48];
        snprintf(what, sizeof(what), "control %02x %02x", su.bmRequestType, su.bRequest);
        ret = ret_submit(s, seqnum, model_status(s, rc, what), 0, NULL, err);
    } else if (dir == DIR_IN) {
        uint32_t actual = (uint32_t)rc < len ? (uint32_t)rc : len;
        ret = ret_submit(s, seqnum, 0, actual, buf, err);
    } else {
        ret = ret_submit(s, seqnum, 0, len, NULL, err);
    }
    free(buf);
    return ret;
}

/* One pass over the pending bulk/interrupt URBs. Per endpoint and direction only the
 * oldest URB is offered to the model, so data stays in order. *progress counts moves. */
static int service_pass(st_usbip_server *s, int *progress, st_err *err)
{
    uint32_t blocked = 0; /* bit (ep + 16*dir) */
    urb **pp = &s->pending;
    while (*pp && s->fd >= 0) {
        urb *u = *pp;
        uint32_t bit = 1u << ((u->ep & 15) + 16 * u->dir);
        if (blocked & bit) {
            pp = &u->next;
            continue;
        }
        int rc;
        int finished = 0;
        int32_t status = 0;
        if (u->dir == DIR_IN) {
            rc = s->model->ops->bulk_in(s->model, (uint8_t)(0x80 | u->ep), u->buf, u->len);
            if (rc > 0) {
                u->done = (uint32_t)rc > u->len ? u->len : (uint32_t)rc;
                s->stats.bulk_in_bytes += u->done;
                finished = 1;
            }
        } else if (u->len == 0) {
            rc = 0;
            finished = 1; /* zero-length packet: nothing for the model to take */
        } else {
            rc = s->model->ops->bulk_out(s->model, (uint8_t)u->ep, u->buf + u->done,
                                         u->len - u->done);
            if (rc > 0) {
                u->done += (uint32_t)rc > u->len - u->done ? u->len - u->done : (uint32_t)rc;
                s->stats.bulk_out_bytes += (uint32_t)rc;
                s->last_progress_us = st_now_us();
                (*progress)++;
                finished = u->done == u->len;
            }
        }
        if (rc == ST_ERR_DISCONNECT) {
            ST_LOGI(s->log, MOD, "model disconnected during bulk ep %u", u->ep);
            st_usbip_server_unplug(s);
            return 1;
        }
        if (rc < 0) {
            status = model_status(s, rc, "bulk");
            finished = 1;
            u->done = 0;
        }
        if (!finished) {
            blocked |= bit;
            pp = &u->next;
            continue;
        }
        *pp = u->next;
        s->last_progress_us = st_now_us();
        (*progress)++;
        int r = ret_submit(s, u->seqnum, status, u->done,
                           u->dir == DIR_IN && status == 0 ? u->buf : NULL, err);
        free(u->buf);
        free(u);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Passes until nothing moves: bytes a model takes on OUT can be its answer on IN at once. */
static int service_pending(st_usbip_server *s, st_err *err)
{
    for (int pass = 0; pass < 64; pass++) {
        int progress = 0;
        int rc = service_pass(s, &progress, err);
        if (rc != 0 || !progress)
            return rc;
    }
    return 0;
}

static int queue_bulk(st_usbip_server *s, uint32_t seqnum, uint32_t ep, uint32_t dir,
                      uint32_t len, const uint8_t *out_data, st_err *err)
{
    if ((dir == DIR_IN && !s->model->ops->bulk_in) || (dir == DIR_OUT && !s->model->ops->bulk_out))
        return ret_submit(s, seqnum, -32, 0, NULL, err);
    urb *u = calloc(1, sizeof(*u));
    uint8_t *b = malloc(len ? len : 1);
    if (!u || !b) {
        free(u);
        free(b);
        return st_err_set(err, ST_ERR_NOMEM, "usbip: out of memory");
    }
    if (dir == DIR_OUT && len)
        memcpy(b, out_data, len);
    *u = (urb){.seqnum = seqnum, .ep = ep, .dir = dir, .len = len, .buf = b};
    urb **pp = &s->pending;
    while (*pp)
        pp = &(*pp)->next;
    *pp = u;
    return 0;
}

static int do_unlink(st_usbip_server *s, uint32_t seqnum, uint32_t victim, st_err *err)
{
    s->stats.unlinks++;
    for (urb **pp = &s->pending; *pp; pp = &(*pp)->next) {
        if ((*pp)->seqnum == victim) {
            urb *u = *pp;
            *pp = u->next;
            free(u->buf);
            free(u);
            /* -ECONNRESET: the URB was still ours and is now cancelled, no RET_SUBMIT. */
            return ret_unlink(s, seqnum, -104, err);
        }
    }
    /* Already answered: status 0 tells vhci it was given back before the unlink. */
    return ret_unlink(s, seqnum, 0, err);
}

/* Parse and handle whole messages in s->in. Returns bytes consumed, or < 0 / 1 (unplug). */
static int handle_input(st_usbip_server *s, st_err *err)
{
    size_t off = 0;
    int rc = 0;
    while (s->fd >= 0 && s->in_len - off >= HDR_LEN) {
        const uint8_t *h = s->in + off;
        uint32_t cmd = get_be32(h), seqnum = get_be32(h + 4), dir = get_be32(h + 12),
                 ep = get_be32(h + 16);
        size_t need = HDR_LEN;
        if (cmd == CMD_SUBMIT) {
            uint32_t len = get_be32(h + 24);
            int32_t npk = (int32_t)get_be32(h + 32);
            if (len > MAX_XFER || ep > 15 || dir > 1)
                return st_err_set(err, ST_ERR_PROTO,
                                  "usbip: bad CMD_SUBMIT (seq %u ep %u dir %u len %u)", seqnum,
                                  ep, dir, len);
            if (dir == DIR_OUT)
                need += len;
            if (npk > 0) {
                if (npk > 1024)
                    return st_err_set(err, ST_ERR_PROTO, "usbip: %d iso packets", npk);
                need += 16u * (uint32_t)npk;
            }
            if (s->in_len - off < need)
                break;
            s->stats.submits++;
            const uint8_t *data = h + HDR_LEN;
            if (npk > 0) {
                ST_LOGW(s->log, MOD, "isochronous transfer on ep %u refused", ep);
                rc = ret_submit(s, seqnum, -32, 0, NULL, err);
            } else if (ep == 0) {
                rc = do_control(s, seqnum, dir, len, h + 40, data, err);
            } else {
                rc = queue_bulk(s, seqnum, ep, dir, len, data, err);
            }
        } else if (cmd == CMD_UNLINK) {
            rc = do_unlink(s, seqnum, get_be32(h + 20), err);
        } else {
            return st_err_set(err, ST_ERR_PROTO, "usbip: unknown command 0x%08x", cmd);
        }
        if (rc != 0)
            return rc;
        off += need;
    }
    if (s->fd >= 0) {
        memmove(s->in, s->in + off, s->in_len - off);
        s->in_len -= off;
    }
    return 0;
}

int st_usbip_server_step(st_usbip_server *s, st_err *err)
{
    if (s->fd < 0)
        return 1;
    s->unplugged_now = 0;
    for (;;) {
        if (s->in_cap - s->in_len < 65536) {
            size_t cap = s->in_cap ? s->in_cap * 2 : 131072;
            if (cap > 4 * MAX_XFER && s->in_cap >= 4 * MAX_XFER)
                break; /* parse what we have first */
            uint8_t *n = realloc(s->in, cap);
            if (!n)
                return st_err_set(err, ST_ERR_NOMEM, "usbip: out of memory");
            s->in = n;
            s->in_cap = cap;
        }
        ssize_t r = recv(s->fd, s->in + s->in_len, s->in_cap - s->in_len, MSG_DONTWAIT);
        if (r > 0) {
            s->in_len += (size_t)r;
            int rc = handle_input(s, err);
            if (rc < 0) {
                st_usbip_server_unplug(s);
                return rc;
            }
            if (rc == 1 || s->fd < 0)
                return 1;
            continue;
        }
        if (r == 0) {
            ST_LOGI(s->log, MOD, "kernel closed the connection");
            st_usbip_server_unplug(s);
            return 1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        int e = errno;
        st_usbip_server_unplug(s);
        return st_err_set(err, st_err_from_errno(e), "usbip: recv: %s", strerror(e));
    }
    int rc = service_pending(s, err);
    if (rc < 0) {
        st_usbip_server_unplug(s);
        return rc;
    }
    return rc == 1 || s->unplugged_now ? 1 : 0;
}

int st_usbip_server_run(st_usbip_server *s, unsigned ms, st_err *err)
{
    st_deadline d = st_deadline_in_ms(ms);
    for (;;) {
        if (s->fd < 0)
            return 1;
        int left = st_deadline_remaining_ms(d);
        if (left == 0)
            return 0;
        struct pollfd pfd;
        st_usbip_server_pollfd(s, &pfd);
        int t = st_usbip_server_timeout_ms(s);
        if (t < 0 || t > left)
            t = left;
        if (poll(&pfd, 1, t) < 0 && errno != EINTR)
            return st_err_set(err, st_err_from_errno(errno), "usbip: poll: %s", strerror(errno));
        int rc = st_usbip_server_step(s, err);
        if (rc != 0)
            return rc;
    }
}
