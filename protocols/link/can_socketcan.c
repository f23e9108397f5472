/* SocketCAN backend of the CAN link: one PF_CAN/SOCK_RAW/CAN_RAW socket per st_can_link
 * (each with its own CAN_RAW_FILTER), libsocketcan for bitrate and controller state. */
#include "protocols/link/can.h"
#include "station/core/text.h"

/* net/if.h before any linux/ header: glibc and the kernel headers then agree on IFF_*. */
#include <net/if.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <libsocketcan.h>
#include <linux/can.h>
#include <linux/can/error.h>
#include <linux/can/raw.h>
#include <linux/if_arp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "station/core/clock.h"

#define SEND_RETRY_MS 1 /* ENOBUFS (driver queue full) does not wake poll(): re-try this often */

typedef struct sc_iface {
    st_can_iface base;
    int ifindex;
} sc_iface;

typedef struct sc_link {
    st_can_link base;
    sc_iface *iface;
    int fd;
} sc_link;

/* One interface ioctl (SIOCGIFFLAGS, SIOCGIFHWADDR) on a throwaway socket; ifr is filled. */
static int ifname_ioctl(const char *name, unsigned long req, struct ifreq *ifr)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0)
        return -errno;
    memset(ifr, 0, sizeof *ifr);
    st_strlcpy(ifr->ifr_name, name, IFNAMSIZ);
    int rc = ioctl(fd, req, ifr);
    int e = errno;
    close(fd);
    return rc == 0 ? 0 : -e;
}

static int ifname_flags(const char *name, short *flags)
{
    struct ifreq ifr;
    int rc = ifname_ioctl(name, SIOCGIFFLAGS, &ifr);
    if (rc == 0)
        *flags = ifr.ifr_flags;
    return rc;
}

static int ifname_hwtype(const char *name, int *type)
{
    struct ifreq ifr;
    int rc = ifname_ioctl(name, SIOCGIFHWADDR, &ifr);
    if (rc == 0)
        *type = ifr.ifr_hwaddr.sa_family;
    return rc;
}

/* libsocketcan talks netlink and does not reliably leave errno set; without root the
 * likeliest cause of a refused change is a missing CAP_NET_ADMIN. */
static int admin_error(st_err *err, const char *name, const char *what)
{
    int e = errno;
    if (e == EPERM || e == EACCES || geteuid() != 0)
        return st_err_set(err, ST_ERR_PERM,
                          "%s %s: refused (CAP_NET_ADMIN needed: run as root, grant the "
                          "capability, or configure the interface at boot in "
                          "/etc/network/interfaces or systemd-networkd)", what, name);
    return st_err_set(err, ST_ERR_IO, "%s %s: %s", what, name, e ? strerror(e) : "failed");
}

/* ---- links ------------------------------------------------------------------------- */

static int sc_send(st_can_link *base, const st_can_frame *f, unsigned timeout_ms, st_err *err)
{
    sc_link *l = (sc_link *)base;
    const char *nm = l->iface->base.name;
    if (f->len > 8 || f->id > CAN_SFF_MASK)
        return st_err_set(err, ST_ERR_INVAL, "%s: CAN frame id 0x%x len %u out of range", nm,
                          f->id, f->len);
    struct can_frame cf;
    memset(&cf, 0, sizeof cf);
    cf.can_id = f->id;
    cf.can_dlc = f->len;
    memcpy(cf.data, f->data, f->len);
    st_deadline d = st_deadline_in_ms(timeout_ms);
    for (;;) {
        ssize_t n = write(l->fd, &cf, sizeof cf);
        if (n == (ssize_t)sizeof cf)
            return 0;
        int e = n < 0 ? errno : EIO;
        if (e == ENETDOWN)
            return st_err_set(err, ST_ERR_IO, "CAN interface %s is down: bring it up", nm);
        if (e != EAGAIN && e != ENOBUFS && e != EINTR)
            return st_err_set(err, st_err_from_errno(e), "%s: send 0x%03x: %s", nm, f->id,
                              strerror(e));
        int left = st_deadline_remaining_ms(d);
        if (left == 0)
            return st_err_set(err, ST_ERR_TIMEOUT,
                              "%s: send 0x%03x: transmit queue full for %u ms (no other node "
                              "acknowledging? check wiring, termination and bitrate)",
                              nm, f->id, timeout_ms);
        struct pollfd p = { .fd = l->fd, .events = POLLOUT };
        poll(&p, 1, e == ENOBUFS ? SEND_RETRY_MS : left);
    }
}

#define SC_BATCH 16 /* frames per sendmmsg / recvmmsg */

/* The frames in one sendmmsg: sent in order; a full transmit queue is waited out as in
 * sc_send. */
static int sc_send_many(st_can_link *base, const st_can_frame *f, size_t n, unsigned timeout_ms,
                        st_err *err)
{
    sc_link *l = (sc_link *)base;
    const char *nm = l->iface->base.name;
    st_deadline d = st_deadline_in_ms(timeout_ms);
    size_t done = 0;
    while (done < n) {
        struct can_frame cf[SC_BATCH];
        struct iovec iov[SC_BATCH];
        struct mmsghdr mh[SC_BATCH];
        size_t k = n - done < SC_BATCH ? n - done : SC_BATCH;
        for (size_t i = 0; i < k; i++) {
            const st_can_frame *x = &f[done + i];
            if (x->len > 8 || x->id > CAN_SFF_MASK)
                return st_err_set(err, ST_ERR_INVAL, "%s: CAN frame id 0x%x len %u out of range",
                                  nm, x->id, x->len);
            memset(&cf[i], 0, sizeof cf[i]);
            cf[i].can_id = x->id;
            cf[i].can_dlc = x->len;
            memcpy(cf[i].data, x->data, x->len);
            iov[i] = (struct iovec){ .iov_base = &cf[i], .iov_len = sizeof cf[i] };
            memset(&mh[i], 0, sizeof mh[i]);
            mh[i].msg_hdr.msg_iov = &iov[i];
            mh[i].msg_hdr.msg_iovlen = 1;
        }
        int m = sendmmsg(l->fd, mh, (unsigned)k, 0);
        if (m > 0) {
            done += (size_t)m;
            continue;
        }
        int e = m < 0 ? errno : EAGAIN;
        if (e == ENETDOWN)
            return st_err_set(err, ST_ERR_IO, "CAN interface %s is down: bring it up", nm);
        if (e != EAGAIN && e != ENOBUFS && e != EINTR)
            return st_err_set(err, st_err_from_errno(e), "%s: send 0x%03x: %s", nm,
                              f[done].id, strerror(e));
        int left = st_deadline_remaining_ms(d);
        if (left == 0)
            return st_err_set(err, ST_ERR_TIMEOUT,
                              "%s: send 0x%03x: transmit queue full for %u ms (no other node "
                              "acknowledging? check wiring, termination and bitrate)",
                              nm, f[done].id, timeout_ms);
        struct pollfd p = { .fd = l->fd, .events = POLLOUT };
        poll(&p, 1, e == ENOBUFS ? SEND_RETRY_MS : left);
    }
    return 0;
}

/* What is queued, in one recvmmsg: error frames are dropped (bus-off is an error) and so are
 * extended and remote frames (our protocols use standard data frames only). */
static int sc_recv_many(st_can_link *base, st_can_frame *f, size_t cap, unsigned timeout_ms,
                        st_err *err)
{
    sc_link *l = (sc_link *)base;
    const char *nm = l->iface->base.name;
    st_deadline d = st_deadline_in_ms(timeout_ms);
    if (cap > SC_BATCH)
        cap = SC_BATCH;
    for (;;) {
        struct can_frame cf[SC_BATCH];
        struct iovec iov[SC_BATCH];
        struct mmsghdr mh[SC_BATCH];
        for (size_t i = 0; i < cap; i++) {
            iov[i] = (struct iovec){ .iov_base = &cf[i], .iov_len = sizeof cf[i] };
            memset(&mh[i], 0, sizeof mh[i]);
            mh[i].msg_hdr.msg_iov = &iov[i];
            mh[i].msg_hdr.msg_iovlen = 1;
        }
        int m = recvmmsg(l->fd, mh, (unsigned)cap, 0, NULL);
        if (m > 0) {
            size_t got = 0;
            for (int i = 0; i < m; i++) {
                if (mh[i].msg_len != sizeof cf[i])
                    return st_err_set(err, ST_ERR_IO, "%s: short CAN read (%u bytes)", nm,
                                      mh[i].msg_len);
                if (cf[i].can_id & CAN_ERR_FLAG) {
                    if (cf[i].can_id & CAN_ERR_BUSOFF)
                        return st_err_set(err, ST_ERR_IO,
                                          "CAN interface %s went bus-off: restart it", nm);
                    ST_LOGD(l->iface->base.log, "can", "%s: error frame 0x%08x", nm,
                            (unsigned)cf[i].can_id);
                    continue;
                }
                if (cf[i].can_id & (CAN_EFF_FLAG | CAN_RTR_FLAG))
                    continue;
                f[got].id = cf[i].can_id & CAN_SFF_MASK;
                f[got].len = cf[i].can_dlc > 8 ? 8 : cf[i].can_dlc;
                memset(f[got].data, 0, sizeof f[got].data);
                memcpy(f[got].data, cf[i].data, f[got].len);
                got++;
            }
            if (got)
                return (int)got;
            continue;
        }
        int e = m < 0 ? errno : EAGAIN;
        if (e == ENETDOWN)
            return st_err_set(err, ST_ERR_IO, "CAN interface %s is down: bring it up", nm);
        if (e != EAGAIN && e != EINTR)
            return st_err_set(err, st_err_from_errno(e), "%s: receive: %s", nm, strerror(e));
        int left = st_deadline_remaining_ms(d);
        if (left == 0)
            return 0;
        struct pollfd p = { .fd = l->fd, .events = POLLIN };
        poll(&p, 1, left);
    }
}

/* One frame: what sc_recv_many does with room for one. */
static int sc_recv(st_can_link *base, st_can_frame *f, unsigned timeout_ms, st_err *err)
{
    return sc_recv_many(base, f, 1, timeout_ms, err);
}

static int sc_set_filter(st_can_link *base, const uint32_t *ids, size_t n, st_err *err)
{
    sc_link *l = (sc_link *)base;
    struct can_filter all = { .can_id = 0, .can_mask = 0 };
    struct can_filter *flt = &all;
    size_t cnt = 1;
    if (n) {
        flt = calloc(n, sizeof *flt);
        if (!flt)
            return st_err_set(err, ST_ERR_NOMEM, "CAN filter");
        for (size_t i = 0; i < n; i++) {
            flt[i].can_id = ids[i] & CAN_SFF_MASK;
            /* Exact 11-bit match, data frames with standard ids only. */
            flt[i].can_mask = CAN_SFF_MASK | CAN_EFF_FLAG | CAN_RTR_FLAG;
        }
        cnt = n;
    }
    int rc = setsockopt(l->fd, SOL_CAN_RAW, CAN_RAW_FILTER, flt,
                        (socklen_t)(cnt * sizeof *flt));
    int e = errno;
    if (flt != &all)
        free(flt);
    if (rc < 0)
        return st_err_set(err, st_err_from_errno(e), "%s: set CAN filter: %s",
                          l->iface->base.name, strerror(e));
    return 0;
}

static void sc_close(st_can_link *base)
{
    sc_link *l = (sc_link *)base;
    close(l->fd);
    free(l);
}

static const st_can_link_ops sc_link_ops = {
    .send = sc_send,
    .recv = sc_recv,
    .set_filter = sc_set_filter,
    .close = sc_close,
    .send_many = sc_send_many,
    .recv_many = sc_recv_many,
};

/* ---- iface ------------------------------------------------------------------------- */

static int sc_open_link(st_can_iface *base, st_can_link **out, st_err *err)
{
    sc_iface *i = (sc_iface *)base;
    int fd = socket(PF_CAN, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, CAN_RAW);
    if (fd < 0) {
        int e = errno;
        if (e == EAFNOSUPPORT || e == EPROTONOSUPPORT)
            return st_err_set(err, ST_ERR_UNSUPPORTED,
                              "%s: this kernel has no CAN sockets (load the can and can-raw "
                              "modules)", base->name);
        return st_err_set(err, st_err_from_errno(e), "%s: CAN socket: %s", base->name,
                          strerror(e));
    }
    can_err_mask_t em = CAN_ERR_BUSOFF | CAN_ERR_RESTARTED | CAN_ERR_CRTL;
    setsockopt(fd, SOL_CAN_RAW, CAN_RAW_ERR_FILTER, &em, sizeof em);
    struct sockaddr_can addr;
    memset(&addr, 0, sizeof addr);
    addr.can_family = AF_CAN;
    addr.can_ifindex = i->ifindex;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        int e = errno;
        close(fd);
        if (e == ENODEV)
            return st_err_set(err, ST_ERR_NOTFOUND,
                              "no CAN interface %s: create it or check the adapter", base->name);
        return st_err_set(err, st_err_from_errno(e), "%s: bind: %s", base->name, strerror(e));
    }
    sc_link *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        return st_err_set(err, ST_ERR_NOMEM, "%s: open link", base->name);
    }
    l->base.ops = &sc_link_ops;
    l->iface = i;
    l->fd = fd;
    *out = &l->base;
    return 0;
}

static int sc_get_bitrate(st_can_iface *base, uint32_t *bitrate, st_err *err)
{
    struct can_bittiming bt;
    memset(&bt, 0, sizeof bt);
    /* vcan (and other virtual CAN devices) have no bit timing: "no bitrate", not an error. */
    if (can_get_bittiming(base->name, &bt) != 0)
        bt.bitrate = 0;
    *bitrate = bt.bitrate;
    return 0;
}

static int sc_set_bitrate(st_can_iface *base, uint32_t bitrate, st_err *err)
{
    /* The bit timing can only change while the controller is stopped. */
    errno = 0;
    if (can_do_stop(base->name) != 0)
        return admin_error(err, base->name, "stop");
    errno = 0;
    if (can_set_bitrate(base->name, bitrate) != 0) {
        int rc = admin_error(err, base->name, "set bitrate of");
        can_do_start(base->name);
        return rc;
    }
    errno = 0;
    if (can_do_start(base->name) != 0)
        return admin_error(err, base->name, "start");
    return 0;
}

static int sc_get_state(st_can_iface *base, st_can_state *state, st_err *err)
{
    short flags = 0;
    int rc = ifname_flags(base->name, &flags);
    if (rc < 0) {
        if (rc == -ENODEV)
            return st_err_set(err, ST_ERR_NOTFOUND,
                              "no CAN interface %s: create it or check the adapter", base->name);
        return st_err_set(err, st_err_from_errno(-rc), "%s: interface flags: %s", base->name,
                          strerror(-rc));
    }
    int s = -1;
    if (can_get_state(base->name, &s) != 0) {
        /* vcan has no controller state: up or down is all there is. */
        *state = (flags & IFF_UP) ? ST_CAN_ERROR_ACTIVE : ST_CAN_STOPPED;
        return 0;
    }
    if (!(flags & IFF_UP)) {
        *state = ST_CAN_STOPPED;
        return 0;
    }
    switch (s) {
    case CAN_STATE_ERROR_ACTIVE: *state = ST_CAN_ERROR_ACTIVE; break;
    case CAN_STATE_ERROR_WARNING: *state = ST_CAN_ERROR_WARNING; break;
    case CAN_STATE_ERROR_PASSIVE: *state = ST_CAN_ERROR_PASSIVE; break;
    case CAN_STATE_BUS_OFF: *state = ST_CAN_BUS_OFF; break;
    case CAN_STATE_STOPPED: *state = ST_CAN_STOPPED; break;
    default: *state = ST_CAN_STATE_UNKNOWN; break;
    }
    return 0;
}

static int sc_up(st_can_iface *base, st_err *err)
{
    errno = 0;
    if (can_do_start(base->name) != 0)
        return admin_error(err, base->name, "bring up");
    return 0;
}

static int sc_restart(st_can_iface *base, st_err *err)
{
    errno = 0;
    if (can_do_restart(base->name) != 0)
        return admin_error(err, base->name, "restart");
    return 0;
}

static void sc_free(st_can_iface *base)
{
    free(base);
}

static const st_can_iface_ops sc_iface_ops = {
    .open_link = sc_open_link,
    .get_bitrate = sc_get_bitrate,
    .set_bitrate = sc_set_bitrate,
    .get_state = sc_get_state,
    .up = sc_up,
    .restart = sc_restart,
    .free = sc_free,
};

/* Several units flashed at once share the interface's transmit queue; with Linux's CAN
 * default of 10 frames one slot's sends can be starved for seconds (seen in the kernel-driver
 * rig with three units). Klipper's CAN guide recommends 128. */
#define CAN_TXQUEUELEN_MIN 128
static void warn_txqueuelen(const char *ifname, const st_logger *log)
{
    char path[96];
    snprintf(path, sizeof path, "/sys/class/net/%s/tx_queue_len", ifname);
    FILE *f = fopen(path, "r");
    unsigned q = 0;
    if (!f)
        return;
    if (fscanf(f, "%u", &q) == 1 && q < CAN_TXQUEUELEN_MIN)
        ST_LOGW(log, "can",
                "%s: txqueuelen is %u; for several units at once set `ip link set %s txqueuelen "
                "%d`", ifname, q, ifname, CAN_TXQUEUELEN_MIN);
    fclose(f);
}

int st_can_iface_socketcan_new(const char *ifname, const st_logger *log, st_can_iface **out,
                               st_err *err)
{
    if (!ifname || !ifname[0] || strlen(ifname) >= IFNAMSIZ)
        return st_err_set(err, ST_ERR_INVAL, "bad CAN interface name \"%s\"",
                          ifname ? ifname : "");
    unsigned idx = if_nametoindex(ifname);
    if (idx == 0)
        return st_err_set(err, ST_ERR_NOTFOUND,
                          "no CAN interface %s: create it or check the adapter", ifname);
    int type = -1;
    if (ifname_hwtype(ifname, &type) == 0 && type != ARPHRD_CAN)
        return st_err_set(err, ST_ERR_INVAL, "%s is not a CAN interface", ifname);
    sc_iface *i = calloc(1, sizeof *i);
    if (!i)
        return st_err_set(err, ST_ERR_NOMEM, "%s", ifname);
    i->base.ops = &sc_iface_ops;
    i->base.log = log;
    memcpy(i->base.name, ifname, strlen(ifname) + 1);
    i->ifindex = (int)idx;
    warn_txqueuelen(ifname, log);
    *out = &i->base;
    return 0;
}
