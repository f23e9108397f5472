/* Benchmark of every flashing path side by side (issue 9): DfuSe (ROM DFU over USB),
 * Katapult over CAN, Katapult over USB-CDC and Katapult over a UART (a real pty through the
 * station's termios link), each with 1, 4 and 8 units at once on `datasheet`-timed device
 * models. Per path and unit count: the slowest unit's time against its device limit, CPU
 * per unit as a share of the unit's wall time, and the peak RSS; per path, skip_identical
 * on a fresh unit against a plain flash. Each configuration runs in a child process so its
 * CPU time and peak RSS are its own (wait4). Not a ctest test; `--check` runs every path
 * once with one and two units on tiny images and checks results, not timing (ctest label
 * bench-smoke). What the columns mean: README.md in this directory. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocols/canadmin/canadmin.h"
#include "protocols/dfuse/dfu_model.h"
#include "protocols/dfuse/dfuse.h"
#include "protocols/katapult/katapult.h"
#include "protocols/katapult/katapult_model.h"
#include "protocols/link/can_model.h"
#include "protocols/link/pty_server.h"
#include "protocols/link/stream_cdc.h"
#include "protocols/link/usb_model.h"
#include "protocols/sim/cdc_acm.h"
#include "protocols/sim/flash.h"
#include "protocols/sim/synth.h"
#include "station/core/clock.h"
#include "station/core/testutil.h"

#define FW_DIR STATION_SHARED_DIR "/firmware/cartographer-v4/6.0.0/"
#define USB_COMBINED FW_DIR "Katapult_plus_CartographerV4_6.0.0__USB_lite.bin"
#define USB_APP FW_DIR "CartographerV4_6.0.0_USB_lite_8kib_offset.bin"
#define CAN_APP FW_DIR "CartographerV4_6.0.0_CAN_1M_full_8kib_offset.bin"
#define USB_COMBINED_SIZE 35984u
#define USB_APP_SIZE 27792u
#define CAN_APP_SIZE 27236u
#define MAX_UNITS 8u
#define MAX_REPS 9u
#define BITRATE 1000000u
#define UART_BAUD 250000u
#define CDC_TURNAROUND_US 1000u /* USB CDC: one frame per command, ~1 ms each way */
#define UART_TURNAROUND_US 100u

static const char request[] = "~ \x1c Request Serial Bootloader!! ~";

typedef enum path { P_DFUSE, P_KAT_CAN, P_KAT_CDC, P_KAT_UART, P_COUNT } path;
static const char *const path_names[] = { "DfuSe (ROM DFU, USB)", "Katapult CAN",
                                          "Katapult USB-CDC", "Katapult UART (pty)" };
static const char *const path_keys[] = { "dfuse", "katapult_can", "katapult_cdc",
                                         "katapult_uart" };
/* The peer tool on the same model: dfu-util runs only against a real USB device (the
 * kernel-driver rig); Katapult's flashtool.py is not packaged in Debian, so Katapult is
 * measured against its wire + device limit only. */
static const char *const peers[] = { "rig", "-", "-", "-" };

/* What a child reports for one configuration (through a pipe). */
typedef struct result {
    int bad;                   /* units that failed or came out wrong */
    unsigned n;
    uint64_t unit_wall_us;     /* the slowest unit: its measured phase */
    uint64_t limit_us;         /* the device limit of that phase (shared floor on CAN) */
    uint64_t flash_us;         /* one unit: the flash step alone */
    uint32_t retries;          /* Katapult resends, all units (0 expected) */
    uint64_t cpu_us;           /* process CPU during the measured phase (all threads) */
    uint64_t station_cpu_us;   /* the station's own threads during the phase (all units) */
    uint64_t syscalls;         /* CAN: the station threads' socket calls (all units) */
    uint64_t polls;            /* CAN: of which polls that waited (all units) */
    uint64_t sleeps;           /* the station threads' voluntary context switches (all units) */
    uint32_t round_trips;      /* Katapult: command/answer pairs of the slowest unit */
    uint64_t sim_late_us;      /* UART: the slowest unit's pty server, answers written late */
    /* UART, the slowest unit's flash + verify (0 pairs: not told apart): each command's
     * pty hop up (station write to the server's read), each answer's hop down (server
     * write to the station's read returning) and the station between an answer and its
     * next command, summed */
    uint32_t hop_pairs;
    uint64_t up_us, down_us, between_us;
    char why[1200];
} result;

/* One unit of any path. */
typedef struct unit {
    path p;
    unsigned idx;
    const st_image *img;
    bool skip;                 /* flash with skip_identical (probe) */
    bool other;                /* the unit holds another image (not a fresh, erased one) */
    st_flash *flash;
    /* DfuSe */
    st_dfu_model *dfu;
    /* Katapult */
    st_katapult_model *kat;
    st_can_stream_node *node;
    st_cdc_acm *cdc;
    st_pty_server *pty;
    pthread_t pty_thread;
    atomic_bool pty_stop;
    st_vusb_bus *vbus;
    st_usb_host *host;
    st_can_link *link;         /* CAN: the station's end (a socket, see sock_link) */
    st_can_link *mem;          /* CAN: the bridge's link on the in-memory bus */
    int sock[2];               /* CAN: [0] the station's, [1] the bridge's */
    pthread_t bridge[2];
    atomic_bool bridge_stop;
    bool bridged;              /* the bridge threads run */
    bool split;                /* CAN: the station's link is a socket, the bus in bridges */
    uint64_t syscalls;         /* CAN: the station thread's socket calls */
    uint64_t polls;            /* CAN: of which polls that waited for a frame */
    st_stream *stream;
    st_stream *tty;            /* UART: the termios stream under stream (a stamp_stream) */
    st_katapult *k;
    uint32_t hop_pairs;
    uint64_t up_us, down_us, between_us;
    st_can_uuid uuid;
    uint8_t nodeid;
    /* measured */
    pthread_barrier_t *start;
    uint64_t t0, t1, flash_us;
    uint64_t cpu_us;           /* this unit's station thread: CPU during the phase */
    uint64_t sleeps;           /* its voluntary context switches (sleeps) in the phase */
    uint32_t round_trips;      /* Katapult commands answered in the phase */
    uint32_t retries;
    int rc;
    st_err err;
    pthread_t thread;
} unit;

/* Voluntary context switches of the calling thread: how often it went to sleep. */
static uint64_t thread_sleeps(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) != 0)
        return 0;
    return (uint64_t)ru.ru_nvcsw;
}

static uint64_t thread_cpu_us(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- CAN with the bus in other threads ---------------------------------------------------
 * The in-memory bus runs its units in whichever thread calls it. So that the station's own
 * CPU can be told apart from the simulated bus and units (which a real station does not
 * run: on SocketCAN the kernel and the units do that work), the station's CAN link here is
 * a kernel socket (a SOCK_SEQPACKET socketpair, one frame per message, as a CAN_RAW socket
 * gives one frame per message), and two bridge threads per unit carry its frames to and
 * from a link on the in-memory bus. The station's thread then does only what it does on
 * SocketCAN (sendmmsg per command, recvmmsg per batch, poll when nothing is queued), its
 * engine and its stream; its CPU clock is the station's CPU. */
typedef struct sock_link {
    st_can_link base;
    int fd;
    uint64_t *syscalls; /* the unit's count of the station thread's socket calls */
    uint64_t *polls;    /* of which polls (the thread sleeps until a frame comes) */
    st_can_link *mem; /* the filter is the bridge link's (the bus filters, as the kernel) */
} sock_link;

/* The station's end is non-blocking and used as can_socketcan.c uses a CAN_RAW socket: try
 * first, poll only when nothing is there; many frames per sendmmsg/recvmmsg. */
#define SOCK_BATCH 16

static int sock_send_many(st_can_link *base, const st_can_frame *f, size_t n, unsigned timeout_ms,
                          st_err *err)
{
    sock_link *l = (sock_link *)base;
    size_t done = 0;
    while (done < n) {
        struct iovec iov[SOCK_BATCH];
        struct mmsghdr mh[SOCK_BATCH];
        size_t k = n - done < SOCK_BATCH ? n - done : SOCK_BATCH;
        for (size_t i = 0; i < k; i++) {
            iov[i] = (struct iovec){ .iov_base = (void *)&f[done + i], .iov_len = sizeof *f };
            memset(&mh[i], 0, sizeof mh[i]);
            mh[i].msg_hdr.msg_iov = &iov[i];
            mh[i].msg_hdr.msg_iovlen = 1;
        }
        (*l->syscalls)++;
        int m = sendmmsg(l->fd, mh, (unsigned)k, 0);
        if (m > 0) {
            done += (size_t)m;
            continue;
        }
        if (m < 0 && errno != EAGAIN)
            return st_err_set(err, ST_ERR_IO, "bench CAN socket: send");
        struct pollfd p = { .fd = l->fd, .events = POLLOUT };
        (*l->syscalls)++;
        if (poll(&p, 1, (int)timeout_ms) <= 0)
            return st_err_set(err, ST_ERR_TIMEOUT, "bench CAN socket: send");
    }
    return 0;
}

static int sock_send(st_can_link *base, const st_can_frame *f, unsigned timeout_ms, st_err *err)
{
    return sock_send_many(base, f, 1, timeout_ms, err);
}

static int sock_recv_many(st_can_link *base, st_can_frame *f, size_t cap, unsigned timeout_ms,
                          st_err *err)
{
    sock_link *l = (sock_link *)base;
    if (cap > SOCK_BATCH)
        cap = SOCK_BATCH;
    st_deadline d = st_deadline_in_ms(timeout_ms);
    for (;;) {
        struct iovec iov[SOCK_BATCH];
        struct mmsghdr mh[SOCK_BATCH];
        for (size_t i = 0; i < cap; i++) {
            iov[i] = (struct iovec){ .iov_base = &f[i], .iov_len = sizeof *f };
            memset(&mh[i], 0, sizeof mh[i]);
            mh[i].msg_hdr.msg_iov = &iov[i];
            mh[i].msg_hdr.msg_iovlen = 1;
        }
        (*l->syscalls)++;
        int m = recvmmsg(l->fd, mh, (unsigned)cap, 0, NULL);
        if (m > 0)
            return m;
        if (m < 0 && errno != EAGAIN)
            return st_err_set(err, ST_ERR_IO, "bench CAN socket: receive");
        int left = st_deadline_remaining_ms(d);
        if (left == 0)
            return 0;
        struct pollfd p = { .fd = l->fd, .events = POLLIN };
        (*l->syscalls)++;
        (*l->polls)++;
        poll(&p, 1, left);
    }
}

static int sock_recv(st_can_link *base, st_can_frame *f, unsigned timeout_ms, st_err *err)
{
    return sock_recv_many(base, f, 1, timeout_ms, err);
}

static int sock_set_filter(st_can_link *base, const uint32_t *ids, size_t n, st_err *err)
{
    return st_can_set_filter(((sock_link *)base)->mem, ids, n, err);
}

static void sock_close(st_can_link *base)
{
    free(base);
}

static const st_can_link_ops sock_link_ops = { sock_send, sock_recv, sock_set_filter,
                                               sock_close, sock_send_many, sock_recv_many };

/* Bridge, bus to station: every frame the bridge link receives goes into the socket. */
static void *bridge_down(void *arg)
{
    unit *u = arg;
    while (!atomic_load(&u->bridge_stop)) {
        st_can_frame f;
        int rc = st_can_recv(u->mem, &f, 20, NULL);
        if (rc < 0)
            break;
        if (rc == 1 && write(u->sock[1], &f, sizeof f) != (ssize_t)sizeof f)
            break;
    }
    return NULL;
}

/* Bridge, station to bus: every frame from the socket goes on the bus. Woken once, it takes
 * every frame already queued (a command's frames come in one sendmmsg), so that it does not
 * go back to sleep between them and have the station's send wake it again at each. */
static void *bridge_up(void *arg)
{
    unit *u = arg;
    while (!atomic_load(&u->bridge_stop)) {
        struct pollfd p = { .fd = u->sock[1], .events = POLLIN };
        if (poll(&p, 1, 20) <= 0)
            continue;
        st_can_frame f;
        while (recv(u->sock[1], &f, sizeof f, MSG_DONTWAIT) == (ssize_t)sizeof f)
            if (st_can_send(u->mem, &f, 1000, NULL) < 0)
                return NULL;
    }
    return NULL;
}

static int sock_link_open(unit *u, st_can_iface *ifc, st_err *err)
{
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, u->sock) != 0 ||
        fcntl(u->sock[0], F_SETFL, O_NONBLOCK) != 0)
        return st_err_set(err, ST_ERR_IO, "socketpair");
    int rc = ifc->ops->open_link(ifc, &u->mem, err);
    if (rc)
        return rc;
    sock_link *l = calloc(1, sizeof *l);
    if (!l)
        return st_err_set(err, ST_ERR_NOMEM, "bench CAN socket");
    l->base.ops = &sock_link_ops;
    l->fd = u->sock[0];
    l->mem = u->mem;
    l->syscalls = &u->syscalls;
    l->polls = &u->polls;
    u->link = &l->base;
    atomic_init(&u->bridge_stop, false);
    if (pthread_create(&u->bridge[0], NULL, bridge_down, u) != 0 ||
        pthread_create(&u->bridge[1], NULL, bridge_up, u) != 0)
        return st_err_set(err, ST_ERR_IO, "bridge threads");
    u->bridged = true;
    return 0;
}

/* ---- UART: where a conversation's time goes ------------------------------------------
 * A pass-through stream over the station's termios stream that stamps, with st_now_us(),
 * each write (the first after a read) and each read that returns the first bytes after a
 * write, the way the pty server stamps its side (st_pty_stats first_reads/_writes). Their
 * sums' differences are the pty's hops in each direction, and write minus the previous
 * read is the station's own time between an answer and its next command. */
typedef struct stamp_stream {
    st_stream base;
    st_stream *in;
    bool wrote, read;          /* a write since the last first read; a read since the write */
    uint64_t last_read_us;
    uint64_t writes, write_sum_us, reads, read_sum_us, between_us;
} stamp_stream;

static int ss_write(st_stream *b, const uint8_t *buf, size_t n, unsigned t, st_err *e)
{
    stamp_stream *s = (stamp_stream *)b;
    uint64_t now = st_now_us();
    if (s->read)
        s->between_us += now - s->last_read_us;
    if (!s->wrote) {
        s->writes++;
        s->write_sum_us += now;
    }
    s->wrote = true;
    s->read = false;
    return st_stream_write(s->in, buf, n, t, e);
}

static int ss_read(st_stream *b, uint8_t *buf, size_t cap, unsigned t, st_err *e)
{
    stamp_stream *s = (stamp_stream *)b;
    int rc = st_stream_read(s->in, buf, cap, t, e);
    if (rc > 0) {
        uint64_t now = st_now_us();
        if (s->wrote) {
            s->reads++;
            s->read_sum_us += now;
        }
        s->wrote = false;
        s->read = true;
        s->last_read_us = now;
    }
    return rc;
}

static int ss_line(st_stream *b, const st_stream_line *l, st_err *e)
{
    return st_stream_set_line(((stamp_stream *)b)->in, l, e);
}

static int ss_modem(st_stream *b, int dtr, int rts, st_err *e)
{
    return st_stream_set_modem(((stamp_stream *)b)->in, dtr, rts, e);
}

static int ss_flush(st_stream *b, st_err *e)
{
    return st_stream_flush_input(((stamp_stream *)b)->in, e);
}

static void ss_close(st_stream *b)
{
    stamp_stream *s = (stamp_stream *)b;
    st_stream_close(s->in);
    free(s);
}

static const st_stream_ops stamp_ops = { .write = ss_write, .read = ss_read, .set_line = ss_line,
                                         .set_modem = ss_modem, .flush_input = ss_flush,
                                         .close = ss_close };

static void *pty_serve(void *arg)
{
    unit *u = arg;
    while (!atomic_load(&u->pty_stop))
        if (st_pty_server_run(u->pty, 20, NULL) < 0)
            break;
    return NULL;
}

/* Katapult: flash (plain or probing) + verify; the serial paths start with their entry. */
static int kat_run(unit *u)
{
    st_err *err = &u->err;
    int rc = 0;
    if (u->p == P_KAT_UART) {
        /* The unit already runs Katapult: the request string is garbage to it (one NACK). */
        rc = st_stream_write(u->stream, (const uint8_t *)request, sizeof request - 1, 1000, err);
        if (rc < 0)
            return rc;
    }
    if (u->p != P_KAT_CAN && (rc = st_katapult_connect(u->k, NULL, err)) < 0)
        return rc;
    st_katapult_flash_opts fo = { .probe = u->skip };
    st_katapult_result w, v;
    uint64_t f0 = st_now_us();
    rc = st_katapult_flash(u->k, u->img, &fo, &w, err);
    u->flash_us = st_now_us() - f0;
    /* UART: the hops of the verify (the server is idle once the flash's last answer is
     * in; after CONNECT it may still owe the answer to CONNECT's resent copy). */
    stamp_stream *ss = u->p == P_KAT_UART ? (stamp_stream *)u->stream : NULL;
    st_pty_stats p0;
    stamp_stream s0;
    memset(&p0, 0, sizeof p0);
    memset(&s0, 0, sizeof s0);
    if (ss) {
        st_pty_server_stats(u->pty, &p0);
        s0 = *ss;
    }
    if (rc == 0)
        rc = st_katapult_verify(u->k, u->img, &v, err);
    if (rc == 0 && (w.blocks_sent != w.blocks || v.blocks_verified != w.blocks ||
                    strcmp(w.sha1_hex, v.sha1_hex) != 0))
        rc = st_err_set(err, ST_ERR_VERIFY, "unit %u: %u of %u blocks sent, %u read back",
                        u->idx, w.blocks_sent, w.blocks, v.blocks_verified);
    if (ss && rc == 0) {
        st_pty_stats p1;
        st_pty_server_stats(u->pty, &p1);
        uint64_t nw = ss->writes - s0.writes, nr = ss->reads - s0.reads;
        if (nw && nw == nr && nw == p1.first_reads - p0.first_reads &&
            nw == p1.first_writes - p0.first_writes) {
            u->hop_pairs = (uint32_t)nw;
            u->up_us = (p1.first_read_sum_us - p0.first_read_sum_us) -
                       (ss->write_sum_us - s0.write_sum_us);
            u->down_us = (ss->read_sum_us - s0.read_sum_us) -
                         (p1.first_write_sum_us - p0.first_write_sum_us);
            u->between_us = ss->between_us - s0.between_us;
        }
    }
    u->retries = st_katapult_retries(u->k);
    u->round_trips = (rc == 0 ? w.blocks_sent + v.blocks_verified : 0) + 2u; /* + EOF, CONNECT */
    return rc;
}

static int dfu_run(unit *u)
{
    st_usb_dev_info info;
    st_dfuse *d = NULL;
    char port[16];
    snprintf(port, sizeof port, "1-%u", u->idx + 1);
    int rc = st_usb_host_find(u->host, 0x0483, 0xdf11, port, &info, &u->err);
    if (rc == 0)
        rc = st_dfuse_open(u->host, &info, NULL, &d, &u->err);
    st_dfuse_opts o = { .skip_identical = u->skip };
    st_dfuse_result r;
    memset(&r, 0, sizeof r);
    uint64_t f0 = st_now_us();
    if (rc == 0)
        rc = st_dfuse_flash(d, u->img, &o, &r, &u->err);
    u->flash_us = st_now_us() - f0;
    if (rc == 0)
        rc = st_dfuse_verify(d, u->img, &o, &r, &u->err);
    st_dfuse_close(d);
    return rc;
}

static void *unit_thread(void *arg)
{
    unit *u = arg;
    pthread_barrier_wait(u->start);
    u->t0 = st_now_us();
    uint64_t c0 = thread_cpu_us(), s0 = thread_sleeps();
    u->rc = u->p == P_DFUSE ? dfu_run(u) : kat_run(u);
    u->cpu_us = thread_cpu_us() - c0;
    u->sleeps = thread_sleeps() - s0;
    u->t1 = st_now_us();
    return NULL;
}

/* Build unit i of path p. The CAN units share bus (already made). */
static int unit_up(unit *u, st_vcan_bus *bus, st_can_iface *ifc, st_can_link *admin)
{
    const st_mcu *mcu = st_mcu_find("stm32g431xx");
    st_err *err = &u->err;
    u->flash = st_flash_new(mcu, ST_TIMING_DATASHEET);
    if (!u->flash)
        return st_err_set(err, ST_ERR_NOMEM, "flash model");
    if (u->other) {
        /* Another image where this one goes: every byte differs, no page is blank. */
        uint8_t *inv = malloc(u->img->size);
        if (!inv)
            return st_err_set(err, ST_ERR_NOMEM, "other image");
        for (size_t i = 0; i < u->img->size; i++)
            inv[i] = (uint8_t)~u->img->data[i];
        st_flash_preload(u->flash, u->img->load_addr, inv, u->img->size);
        free(inv);
    }
    if (u->p == P_DFUSE) {
        st_dfu_model_config cfg = { .transfer_size = 2048, .start_in_error = true };
        char port[16];
        snprintf(port, sizeof port, "1-%u", u->idx + 1);
        u->dfu = st_dfu_model_new(u->flash, &cfg);
        u->vbus = st_vusb_bus_new();
        if (!u->dfu || !u->vbus)
            return st_err_set(err, ST_ERR_NOMEM, "DFU model");
        int rc = st_vusb_attach(u->vbus, port, st_dfu_model_usb(u->dfu), err);
        return rc ? rc : st_usb_host_mem_new(u->vbus, NULL, &u->host, err);
    }
    st_katapult_model_cfg kc = { .with_can = u->p == P_KAT_CAN };
    if (u->p == P_KAT_CDC)
        kc.turnaround_us = CDC_TURNAROUND_US;
    if (u->p == P_KAT_UART) {
        kc.baud = UART_BAUD;
        kc.turnaround_us = UART_TURNAROUND_US;
    }
    static const uint8_t base[6] = { 0x5e, 0x7a, 0x71, 0x00, 0xbe, 0x00 };
    memcpy(u->uuid.b, base, 6);
    u->uuid.b[5] = (uint8_t)(u->idx + 1);
    memcpy(kc.uuid, u->uuid.b, 6);
    u->kat = st_katapult_model_new(u->flash, &kc);
    if (!u->kat)
        return st_err_set(err, ST_ERR_NOMEM, "Katapult model");
    st_katapult_opts ko = { 0 };
    int rc = 0;
    if (u->p == P_KAT_CAN) {
        st_can_stream_node_cfg nc = { .app = ST_CANADMIN_APP_KATAPULT };
        memcpy(nc.uuid, u->uuid.b, 6);
        u->node = st_can_stream_node_new(st_katapult_model_stream(u->kat), &nc);
        u->nodeid = (uint8_t)(ST_CANADMIN_NODEID_KATAPULT + u->idx);
        if (!u->node)
            return st_err_set(err, ST_ERR_NOMEM, "CAN node");
        rc = st_vcan_attach(bus, st_can_stream_node_base(u->node), err);
        if (!rc)
            rc = st_canadmin_katapult_assign(admin, &u->uuid, 0, u->nodeid, 2000, err);
        if (!rc)
            rc = u->split ? sock_link_open(u, ifc, err) : ifc->ops->open_link(ifc, &u->link, err);
        if (!rc)
            rc = st_can_stream_open(u->link, st_canadmin_nodeid_tx_id(u->nodeid),
                                    st_canadmin_nodeid_rx_id(u->nodeid), &u->stream, err);
        /* The bus's bitrate, as the station's Katapult driver takes it from the interface. */
        uint32_t bitrate = 0;
        if (!rc && ifc->ops->get_bitrate(ifc, &bitrate, NULL) == 0)
            st_can_stream_set_bitrate(u->stream, bitrate);
    } else if (u->p == P_KAT_CDC) {
        st_cdc_identity id = { .vid = 0x1d50, .pid = 0x6177, .bcd_device = 0x0100,
                               .manufacturer = "katapult", .product = "stm32g431xx",
                               .serial = "BE4C00000001" };
        char port[16];
        snprintf(port, sizeof port, "1-%u", u->idx + 1);
        u->cdc = st_cdc_acm_new(&id, st_katapult_model_stream(u->kat));
        u->vbus = st_vusb_bus_new();
        if (!u->cdc || !u->vbus)
            return st_err_set(err, ST_ERR_NOMEM, "CDC model");
        st_usb_dev_info info;
        st_stream_line line = { 115200, 8, 'N', 1, 0 };
        rc = st_vusb_attach(u->vbus, port, st_cdc_acm_usb(u->cdc), err);
        if (!rc)
            rc = st_usb_host_mem_new(u->vbus, NULL, &u->host, err);
        if (!rc)
            rc = st_usb_host_find(u->host, 0x1d50, 0x6177, port, &info, err);
        if (!rc)
            rc = st_stream_cdc_open(u->host, &info, &line, &u->stream, err);
        ko.prime = true; /* STM32G4 double-buffered USB (reference 2.4) */
        ko.connect_within_ms = 5000;
    } else {
        atomic_init(&u->pty_stop, false);
        rc = st_pty_server_new(st_katapult_model_stream(u->kat), NULL, &u->pty, err);
        if (!rc && pthread_create(&u->pty_thread, NULL, pty_serve, u) != 0)
            rc = st_err_set(err, ST_ERR_IO, "pty thread");
        st_stream_line line = { UART_BAUD, 8, 'N', 1, 0 };
        if (!rc)
            rc = st_stream_tty_open(st_pty_server_path(u->pty), &line, &u->tty, err);
        if (!rc) {
            stamp_stream *ss = calloc(1, sizeof *ss);
            if (!ss)
                return st_err_set(err, ST_ERR_NOMEM, "stamp stream");
            ss->base.ops = &stamp_ops;
            ss->in = u->tty;
            snprintf(ss->base.name, sizeof ss->base.name, "uart%u", u->idx);
            u->stream = &ss->base;
            u->tty = NULL; /* owned by the stamp stream now */
        }
        ko.connect_within_ms = 5000;
    }
    if (!rc)
        rc = st_katapult_open(u->stream, &ko, &u->k, err);
    if (!rc && u->p == P_KAT_CAN)
        rc = st_katapult_connect(u->k, NULL, err); /* entry on CAN is the node id: not timed */
    return rc;
}

static void unit_down(unit *u, st_vcan_bus *bus)
{
    st_katapult_close(u->k);
    if (u->stream)
        st_stream_close(u->stream);
    if (u->link)
        st_can_link_close(u->link);
    if (u->bridged) {
        atomic_store(&u->bridge_stop, true);
        pthread_join(u->bridge[0], NULL);
        pthread_join(u->bridge[1], NULL);
    }
    if (u->mem) {
        st_can_link_close(u->mem);
        close(u->sock[0]);
        close(u->sock[1]);
    }
    if (u->pty) {
        atomic_store(&u->pty_stop, true);
        pthread_join(u->pty_thread, NULL);
        st_pty_server_free(u->pty);
    }
    if (u->node) {
        st_vcan_detach(bus, st_can_stream_node_base(u->node));
        st_can_stream_node_free(u->node);
    }
    st_usb_host_free(u->host);
    if (u->vbus) {
        char port[16];
        snprintf(port, sizeof port, "1-%u", u->idx + 1);
        st_vusb_detach(u->vbus, port);
        st_vusb_bus_free(u->vbus);
    }
    st_cdc_acm_free(u->cdc);
    st_dfu_model_free(u->dfu);
    st_katapult_model_free(u->kat);
    st_flash_free(u->flash);
}

/* Wire time of the UART request string (part of the serial entry's limit). */
static uint64_t request_wire_us(void)
{
    return ((uint64_t)(sizeof request - 1) * 10u * 1000000u + UART_BAUD - 1) / UART_BAUD;
}

/* Run one configuration in this process: n units of path p flashing img at once. */
/* skip: 0 plain flash on a fresh unit, 1 skip_identical on a fresh unit, 2 skip_identical
 * on a unit holding another image, 3 plain flash on a unit holding another image. */
static void run_config(path p, unsigned n, const st_image *img, int skip, bool split,
                       result *out)
{
    memset(out, 0, sizeof *out);
    out->n = n;
    unit units[MAX_UNITS];
    memset(units, 0, sizeof units);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, n);
    st_vcan_bus *bus = NULL;
    st_can_iface *ifc = NULL;
    st_can_link *admin = NULL;
    st_err err = { 0 };
    unsigned made = 0;
    if (p == P_KAT_CAN) {
        bus = st_vcan_bus_new(BITRATE, ST_TIMING_DATASHEET);
        if (!bus || st_can_iface_mem_new(bus, "can0", NULL, &ifc, &err) < 0 ||
            ifc->ops->open_link(ifc, &admin, &err) < 0) {
            snprintf(out->why, sizeof out->why, "CAN setup: %s", err.msg);
            out->bad = (int)n;
            goto done;
        }
    }
    for (; made < n; made++) {
        unit *u = &units[made];
        u->p = p;
        u->idx = made;
        u->img = img;
        u->skip = skip == 1 || skip == 2;
        u->other = skip >= 2;
        u->split = split;
        u->start = &start;
        if (unit_up(u, bus, ifc, admin) < 0) {
            snprintf(out->why, sizeof out->why, "unit %u setup: %s", made, u->err.msg);
            out->bad = (int)n;
            made++;
            goto done;
        }
        st_flash_reset_stats(u->flash);
    }
    st_vcan_stats b0, b1;
    if (bus)
        st_vcan_get_stats(bus, &b0);
    uint64_t cpu0 = st_test_cpu_us();
    for (unsigned i = 0; i < n; i++)
        if (pthread_create(&units[i].thread, NULL, unit_thread, &units[i]) != 0) {
            fprintf(stderr, "bench_paths: cannot start a thread\n");
            exit(1); /* the barrier would never open */
        }
    for (unsigned i = 0; i < n; i++)
        pthread_join(units[i].thread, NULL);
    out->cpu_us = st_test_cpu_us() - cpu0;
    uint64_t first = UINT64_MAX, last = 0, dev_max = 0;
    for (unsigned i = 0; i < n; i++) {
        unit *u = &units[i];
        if (u->rc < 0) {
            snprintf(out->why, sizeof out->why, "unit %u: %s", i, u->err.msg);
            out->bad++;
            continue;
        }
        uint8_t *now = malloc(img->size);
        if (!now || st_flash_read(u->flash, img->load_addr, now, img->size) != 0 ||
            memcmp(now, img->data, img->size) != 0) {
            snprintf(out->why, sizeof out->why, "unit %u: flash differs from the image", i);
            out->bad++;
        }
        free(now);
        out->retries += u->retries;
        out->station_cpu_us += u->cpu_us;
        out->syscalls += u->syscalls;
        out->polls += u->polls;
        out->sleeps += u->sleeps;
        first = u->t0 < first ? u->t0 : first;
        last = u->t1 > last ? u->t1 : last;
        if (u->t1 - u->t0 > out->unit_wall_us) {
            out->unit_wall_us = u->t1 - u->t0;
            out->flash_us = u->flash_us;
            out->round_trips = u->round_trips;
            if (u->pty) {
                st_pty_stats ps;
                st_pty_server_stats(u->pty, &ps);
                out->sim_late_us = ps.late_us;
                out->hop_pairs = u->hop_pairs;
                out->up_us = u->up_us;
                out->down_us = u->down_us;
                out->between_us = u->between_us;
            }
        }
        /* The device limit of this unit's phase, from its own models. */
        uint64_t lim;
        if (p == P_DFUSE) {
            st_dfu_model_counts c;
            st_dfu_model_get_counts(u->dfu, &c);
            lim = c.wire_us + c.device_us;
        } else if (p == P_KAT_CAN) {
            st_flash_stats fs;
            st_flash_get_stats(u->flash, &fs);
            lim = fs.busy_us;
        } else {
            st_katapult_model_stats ks;
            st_katapult_model_get_stats(u->kat, &ks);
            lim = ks.device_us + (p == P_KAT_UART ? request_wire_us() : 0);
        }
        dev_max = lim > dev_max ? lim : dev_max;
    }
    if (p == P_KAT_CAN) {
        /* One wire for all: the larger of the total bus time and one unit's own bus share
         * plus its device time (bench_katapult_can's shared floor). */
        st_vcan_get_stats(bus, &b1);
        uint64_t busy = b1.busy_us - b0.busy_us, own = busy / n + dev_max;
        out->limit_us = busy > own ? busy : own;
        out->unit_wall_us = last - first;
    } else {
        out->limit_us = dev_max;
    }
done:
    for (unsigned i = 0; i < made; i++)
        unit_down(&units[i], bus);
    if (admin)
        st_can_link_close(admin);
    if (ifc)
        ifc->ops->free(ifc);
    st_vcan_bus_free(bus);
    pthread_barrier_destroy(&start);
}

/* Run a configuration in a child: its own CPU time and peak RSS. */
static int run_child(path p, unsigned n, const st_image *img, int skip, bool split, result *r,
                     double *cpu_ms, long *rss_kib)
{
    int fd[2];
    if (pipe(fd) != 0)
        return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fd[0]);
        result res;
        run_config(p, n, img, skip, split, &res);
        ssize_t w = write(fd[1], &res, sizeof res);
        _exit(w == (ssize_t)sizeof res ? 0 : 1);
    }
    close(fd[1]);
    ssize_t got = read(fd[0], r, sizeof *r);
    close(fd[0]);
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid || got != (ssize_t)sizeof *r || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        return -1;
    *cpu_ms = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000.0 +
              (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000.0;
    *rss_kib = ru.ru_maxrss;
    return r->bad ? -1 : 0;
}

/* One measured configuration: the run with the median ratio (or flash time) of reps. */
typedef struct measured {
    result r;
    double cpu_ms;
    long rss_kib;
    double key;
} measured;

static int run_median(path p, unsigned n, const st_image *img, int skip, bool split,
                      unsigned reps, bool by_flash, measured *out)
{
    measured m[MAX_REPS];
    for (unsigned i = 0; i < reps; i++) {
        if (run_child(p, n, img, skip, split, &m[i].r, &m[i].cpu_ms, &m[i].rss_kib) < 0) {
            out->r = m[i].r;
            return -1;
        }
        m[i].key = by_flash ? (double)m[i].r.flash_us
                            : (double)m[i].r.unit_wall_us / (double)m[i].r.limit_us;
        for (unsigned j = i; j > 0 && m[j - 1].key > m[j].key; j--) {
            measured t = m[j];
            m[j] = m[j - 1];
            m[j - 1] = t;
        }
    }
    *out = m[reps / 2];
    return 0;
}

static st_image *image_for(path p, bool check, st_err *err)
{
    const st_mcu *mcu = st_mcu_find("stm32g431xx");
    uint32_t app = mcu->flash_start + mcu->katapult_app_offset;
    const char *real = p == P_DFUSE ? USB_COMBINED : p == P_KAT_CAN ? CAN_APP : USB_APP;
    size_t size = p == P_DFUSE ? USB_COMBINED_SIZE : p == P_KAT_CAN ? CAN_APP_SIZE : USB_APP_SIZE;
    uint32_t at = p == P_DFUSE ? mcu->flash_start : app;
    st_image *img = NULL;
    if (!check && access(real, R_OK) == 0)
        return st_image_load(real, at, &img, err) < 0 ? NULL : img;
    if (check)
        size = p == P_DFUSE ? 9216 : 3000;
    uint8_t *data = NULL;
    size_t off = p == P_DFUSE ? 0 : mcu->katapult_app_offset;
    if (st_synth_combined(mcu, off + size, &data, err) < 0)
        return NULL;
    int rc = st_image_from_memory("generated", data + off, size, at, &img, err);
    free(data);
    return rc < 0 ? NULL : img;
}

static void usage(FILE *f)
{
    fputs("Usage: bench_paths [--check] [--only PATH] [--units LIST] [--reps R]\n"
          "  Every path at 1, 4 and 8 units on datasheet-timed models: ratio to the device\n"
          "  limit, skip_identical on a fresh unit vs a plain flash, CPU per unit as a share\n"
          "  of the unit's wall time, peak RSS. PATH: dfuse, katapult_can, katapult_cdc,\n"
          "  katapult_uart. LIST: unit counts, e.g. 1,4,8 (default). R: runs per\n"
          "  configuration, the median (by ratio) is shown (1..9, default 1).\n"
          "  --check   1 and 2 units on tiny images; checks results, not timing\n",
          f);
}

/* ---- what one sleep and wake-up costs on this host ---------------------------------------
 * A thread waits in poll on a socket another thread writes one message to every 200 us,
 * then reads it: n times. Its CPU clock over n is the CPU one wake-up for one frame or
 * batch costs a station thread here (the kernel's scheduling and timer work included). */
typedef struct pinger_arg {
    int fd;
    unsigned n;
} pinger_arg;

static void *pinger(void *arg)
{
    pinger_arg *a = arg;
    for (unsigned i = 0; i < a->n; i++) {
        st_sleep_us(200);
        uint8_t c = (uint8_t)i;
        if (write(a->fd, &c, 1) != 1)
            break;
    }
    return NULL;
}

static double wake_cpu_us(unsigned n)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0)
        return 0;
    pinger_arg a = { sv[1], n };
    pthread_t th;
    double per = 0;
    if (pthread_create(&th, NULL, pinger, &a) == 0) {
        uint64_t c0 = thread_cpu_us();
        unsigned got = 0;
        while (got < n) {
            struct pollfd p = { .fd = sv[0], .events = POLLIN };
            uint8_t c;
            if (poll(&p, 1, 1000) <= 0 || read(sv[0], &c, 1) != 1)
                break;
            got++;
        }
        uint64_t used = thread_cpu_us() - c0;
        pthread_join(th, NULL);
        per = got ? (double)used / got : 0;
    }
    close(sv[0]);
    close(sv[1]);
    return per;
}

/* ---- the kernel pty's own cost ------------------------------------------------------------
 * A bare pty echo: the station's termios stream on the slave at the UART path's line
 * settings, a thread on the master that echoes each byte at once (no model, no wire time).
 * Its round trip is what the pty and two thread hand-offs cost per command/answer pair, a
 * floor the UART path pays on top of the wire + device limit and a real UART does not. */
typedef struct echo_arg {
    int fd;
    atomic_bool stop;
} echo_arg;

static void *pty_echo(void *arg)
{
    echo_arg *e = arg;
    while (!atomic_load(&e->stop)) {
        struct pollfd p = { .fd = e->fd, .events = POLLIN };
        if (poll(&p, 1, 20) <= 0)
            continue;
        uint8_t b[64];
        ssize_t n = read(e->fd, b, sizeof b);
        if (n > 0 && write(e->fd, b, (size_t)n) != n)
            break;
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Median round trip of one byte over a bare pty, in microseconds (0 when it cannot run). */
static uint64_t pty_round_trip_us(unsigned n)
{
    uint64_t rt[400];
    if (n > 400)
        n = 400;
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0) {
        if (m >= 0)
            close(m);
        return 0;
    }
    struct termios t;
    if (tcgetattr(m, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(m, TCSANOW, &t);
    }
    st_stream *s = NULL;
    st_stream_line line = { UART_BAUD, 8, 'N', 1, 0 };
    echo_arg e = { .fd = m };
    atomic_init(&e.stop, false);
    pthread_t th;
    uint64_t med = 0;
    if (st_stream_tty_open(ptsname(m), &line, &s, NULL) == 0 &&
        pthread_create(&th, NULL, pty_echo, &e) == 0) {
        unsigned got = 0;
        for (unsigned i = 0; i < n; i++) {
            uint8_t b = (uint8_t)i, r;
            uint64_t t0 = st_now_us();
            if (st_stream_write(s, &b, 1, 1000, NULL) != 1 ||
                st_stream_read(s, &r, 1, 1000, NULL) != 1)
                break;
            rt[got++] = st_now_us() - t0;
        }
        atomic_store(&e.stop, true);
        pthread_join(th, NULL);
        if (got) {
            qsort(rt, got, sizeof rt[0], cmp_u64);
            med = rt[got / 2];
        }
    }
    if (s)
        st_stream_close(s);
    close(m);
    return med;
}

int main(int argc, char **argv)
{
    bool check = false;
    int only = -1;
    unsigned counts[8] = { 1, 4, 8 }, ncounts = 3, reps = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--check") == 0) {
            check = true;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            i++;
            for (int p = 0; p < P_COUNT; p++)
                if (strcmp(argv[i], path_keys[p]) == 0)
                    only = p;
            if (only < 0) {
                usage(stderr);
                return 2;
            }
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = (unsigned)strtoul(argv[++i], NULL, 10);
            if (reps < 1 || reps > MAX_REPS) {
                usage(stderr);
                return 2;
            }
        } else if (strcmp(argv[i], "--units") == 0 && i + 1 < argc) {
            ncounts = 0;
            for (char *s = argv[++i]; *s && ncounts < 8;) {
                char *end;
                unsigned long v = strtoul(s, &end, 10);
                if (end == s || v < 1 || v > MAX_UNITS) {
                    usage(stderr);
                    return 2;
                }
                counts[ncounts++] = (unsigned)v;
                s = *end == ',' ? end + 1 : end;
            }
        } else {
            bool help = strcmp(argv[i], "--help") == 0;
            usage(help ? stdout : stderr);
            return help ? 0 : 2;
        }
    }
    if (check) {
        counts[0] = 1;
        counts[1] = 2;
        ncounts = 2;
    }
    if (reps > 1)
        printf("median of %u runs per configuration\n", reps);
    printf("%-20s %5s %9s %9s %7s %7s %4s %5s %11s %6s %5s %4s %10s %8s\n", "path", "units",
           "unit ms", "limit ms", "ratio", "target", "met", "peer", "CPU ms/unit", "CPU %",
           "targt", "met", "sim ms/u", "RSS KiB");
    int fails = 0;
    char notes[4096] = "";
    size_t nl = 0;
    uint64_t pty_rt = 0; /* the bare pty round trip, once it is measured */
#define NOTE(...)                                                                           \
    do {                                                                                    \
        if (nl < sizeof notes)                                                              \
            nl += (size_t)snprintf(notes + nl, sizeof notes - nl, __VA_ARGS__);             \
    } while (0)
    for (int p = 0; p < P_COUNT; p++) {
        if (only >= 0 && p != only)
            continue;
        st_err err = { 0 };
        st_image *img = image_for((path)p, check, &err);
        if (!img) {
            fprintf(stderr, "bench_paths: %s: image: %s\n", path_keys[p], err.msg);
            fails++;
            continue;
        }
        /* skip_identical on a fresh unit against a plain flash: the flash step, one unit. */
        /* Fresh: erased flash; other: the unit holds another image (every page differs). */
        measured plain, probe, probe_other, plain_other;
        double skip_ratio = -1, other_ratio = -1;
        if (run_median((path)p, 1, img, 1, false, reps, true, &probe) == 0 &&
            run_median((path)p, 1, img, 2, false, reps, true, &probe_other) == 0 &&
            run_median((path)p, 1, img, 3, false, reps, true, &plain_other) == 0 &&
            run_median((path)p, 1, img, 0, false, reps, true, &plain) == 0 && plain.r.flash_us &&
            plain_other.r.flash_us) {
            skip_ratio = (double)probe.r.flash_us / (double)plain.r.flash_us;
            other_ratio = (double)probe_other.r.flash_us / (double)plain_other.r.flash_us;
        } else {
            fails++;
        }
        double cpu1 = -1, cpu_last = -1, sl1 = 0, sl_last = 0, pct_last = 0;
        unsigned n_last = 0;
        for (unsigned c = 0; c < ncounts; c++) {
            measured m, mc;
            unsigned n = counts[c];
            /* CAN: the time ratio on the bus as the station uses it; the CPU split from a
             * second run with the bus behind the socket bridge (its hops add latency). */
            if (run_median((path)p, n, img, 0, false, reps, false, &m) < 0 ||
                (p == P_KAT_CAN && run_median((path)p, n, img, 0, true, reps, false, &mc) < 0)) {
                fprintf(stderr, "bench_paths: %s, %u units: %s\n", path_keys[p], n,
                        m.r.why[0] ? m.r.why : "failed");
                fails++;
                continue;
            }
            const result *r = &m.r, *rc = p == P_KAT_CAN ? &mc.r : &m.r;
            if (r->retries)
                printf("(%u Katapult resends in this run)\n", r->retries);
            /* The station's own threads; the rest of the child's CPU is the simulation (the
             * units, buses, bridges and pty servers a real station does not run). On DfuSe
             * and USB-CDC the in-memory USB models run inside the station's thread, so
             * their figure includes them (marked *). */
            double wall = r->unit_wall_us / 1000.0, ratio = (double)r->unit_wall_us / (double)r->limit_us;
            double st_ms = rc->station_cpu_us / 1000.0 / n;
            double sim_ms = ((double)rc->cpu_us - (double)rc->station_cpu_us) / 1000.0 / n;
            double pct = 100.0 * st_ms / (rc->unit_wall_us / 1000.0);
            if (sim_ms < 0)
                sim_ms = 0;
            double tgt = p == P_KAT_CAN ? (n == 1 ? 1.08 : 1.01) : p == P_DFUSE ? 0 : 1.05;
            char tg[16] = "-", met[8] = "-";
            if (tgt > 0) {
                snprintf(tg, sizeof tg, "<=%.2f", tgt);
                snprintf(met, sizeof met, "%s", ratio <= tgt ? "yes" : "NO");
            }
            bool in_thread = p == P_DFUSE || p == P_KAT_CDC;
            printf("%-20s %5u %9.1f %9.1f %7.3f %7s %4s %5s %10.1f%s %5.1f%% %5s %4s %10.1f %8ld\n",
                   path_names[p], n, wall, r->limit_us / 1000.0, ratio, tg, met, peers[p], st_ms,
                   in_thread ? "*" : " ", pct, "<=3%", pct <= 3.0 ? "yes" : "NO", sim_ms,
                   m.rss_kib);
            double per = rc->round_trips ? (double)rc->sleeps / n / rc->round_trips : 0;
            if (c == 0) {
                cpu1 = st_ms;
                sl1 = per;
            }
            cpu_last = st_ms;
            sl_last = per;
            pct_last = pct;
            n_last = n;
            if (p == P_KAT_CAN && rc->round_trips)
                printf("%-20s %5u  station thread per command/answer pair: %.2f sleeps "
                       "(voluntary context switches; floor 1: the answer taken whole at one "
                       "wake-up), %.1f socket calls, %.1f us CPU\n",
                       path_names[p], n, (double)rc->sleeps / n / rc->round_trips,
                       (double)rc->syscalls / n / rc->round_trips,
                       1000.0 * st_ms / rc->round_trips);
            if (check)
                continue;
            if (p == P_KAT_CAN && pct > 3.0 && rc->syscalls) {
                double w = wake_cpu_us(2000), floor_ms = w * rc->round_trips / 1000.0;
                double sl = (double)rc->sleeps / n / rc->round_trips;
                NOTE("- %s, %u unit%s: station CPU %.1f%% > 3%%, %.1f us per command/answer "
                     "pair. A sleep and wake-up (poll on a socket another thread writes to, "
                     "then the read) costs %.1f us of the waiting thread's CPU on this host "
                     "(mean of 2000); the station must sleep at least once per pair (Katapult "
                     "answers each command before the next is sent): %u pairs x %.1f us = "
                     "%.1f ms, %.1f%% of the unit's %.0f ms, before any work. Its thread "
                     "slept %.2f times per pair (%.1f%% at that cost) and made %.1f socket "
                     "calls per pair (sendmmsg per command, which also wakes the bridge "
                     "thread that plays the bus, recvmmsg per answer, a poll when an answer "
                     "was not all in at the hinted time). Measured here, not on a Pi.\n",
                     path_names[p], n, n == 1 ? "" : "s", pct,
                     1000.0 * st_ms / rc->round_trips, w, rc->round_trips, w, floor_ms,
                     100.0 * floor_ms / (rc->unit_wall_us / 1000.0), rc->unit_wall_us / 1000.0,
                     sl, 100.0 * sl * floor_ms / (rc->unit_wall_us / 1000.0),
                     (double)rc->syscalls / n / rc->round_trips);
            }
            if (p == P_KAT_UART && r->hop_pairs) {
                /* Where the time above the limit went, from this run's own stamps (the
                 * verify's pairs, per pair; times all the phase's pairs). */
                double lim = r->limit_us / 1000.0, gap = wall - lim, hp = r->hop_pairs;
                double up = r->up_us / hp, down = r->down_us / hp, btw = r->between_us / hp;
                double hops = (up + down) * r->round_trips / 1000.0;
                double late = r->sim_late_us / 1000.0;
                printf("%-20s %5u  per pair (stamped, verify): pty hop up %.0f us, down %.0f us, "
                       "station between answer and command %.1f us; above the limit %.1f ms = "
                       "pty hops %.1f + unit late %.1f + rest %.1f; without the pty's hops and "
                       "the unit's lateness %.3f\n",
                       path_names[p], n, up, down, btw, gap, hops, late, gap - hops - late,
                       (wall - hops - late) / lim);
                if (tgt > 0 && ratio > tgt)
                    NOTE("- %s, %u unit%s: ratio %.3f > %.2f, %.1f ms above the limit over %u "
                         "command/answer pairs. Stamped in this run (the verify's %u pairs, "
                         "both ends' clocks): the pty's hop up (the station's write to the pty "
                         "server's read of it: the kernel's flip-buffer work and the server's "
                         "wake-up) %.0f us per pair, its hop down (the server's write to the "
                         "station's read returning: the same, with the station's wake-up) %.0f "
                         "us: %.1f ms over all pairs, which a real UART does not have (its wire "
                         "time is in the limit); the simulated unit wrote its answers %.1f ms "
                         "late in all; the station itself, from an answer in to its next "
                         "command out, %.1f us per pair. Without the pty's hops and the unit's "
                         "lateness the ratio would be %.3f.\n",
                         path_names[p], n, n == 1 ? "" : "s", ratio, tgt, gap, r->round_trips,
                         r->hop_pairs, up, down, hops, late, btw, (wall - hops - late) / lim);
            } else if (tgt > 0 && ratio > tgt && p == P_KAT_UART) {
                if (!pty_rt) /* measured once per run */
                    pty_rt = pty_round_trip_us(300);
                uint64_t rt = pty_rt;
                double lim = r->limit_us / 1000.0, gap = wall - lim;
                double pty_ms = rt * (double)r->round_trips / 1000.0;
                double late_ms = r->sim_late_us / 1000.0;
                NOTE("- %s, %u unit%s: ratio %.3f > %.2f, %.1f ms above the limit over %u "
                     "command/answer pairs. A bare pty round trip (the station's termios "
                     "stream at %u 8N1, an echo thread, 1 byte) takes %llu us (median of 300): "
                     "%.1f ms for the pairs; the pty server wrote its answers %.1f ms late in "
                     "all. Without those the ratio would be %.3f.\n",
                     path_names[p], n, n == 1 ? "" : "s", ratio, tgt, gap, r->round_trips,
                     UART_BAUD, (unsigned long long)rt, pty_ms, late_ms,
                     (wall - pty_ms - late_ms) / lim);
            }
            if (tgt > 0 && ratio > tgt && p != P_KAT_UART)
                NOTE("- %s, %u unit%s: ratio %.3f > %.2f (load average %s when it ran: a "
                     "ratio is host time over modelled time; rerun on a quiet host)\n",
                     path_names[p], n, n == 1 ? "" : "s", ratio, tgt, "see the header");
        }
        if (p == P_KAT_CAN && cpu1 > 0 && n_last > 1) {
            double flat = cpu_last / cpu1;
            printf("%-20s %5s  station CPU per unit, %u units / 1 unit: %.2f (target: flat, "
                   "<= 1.25) %s\n", path_names[p], "", n_last, flat, flat <= 1.25 ? "yes" : "NO");
            if (flat > 1.25 && !check)
                NOTE("- %s, station CPU per unit, %u units / 1 unit %.2f > 1.25: the in-memory "
                     "bus still wakes only the links a frame is for (the simulation's CPU is "
                     "apart, sim ms/u); it is one unit's station that got cheaper. Alone, its "
                     "answers come when the engine's hint says and its thread sleeps %.2f "
                     "times per command/answer pair (%.1f ms per unit); with %u units on one "
                     "bus an answer's time varies with the others' frames, the hint stays "
                     "near the shortest answer so as not to leave the bus idle, and it sleeps "
                     "%.2f times per pair (%.1f ms per unit, %.1f%% of the unit's time).\n",
                     path_names[p], n_last, flat, sl1, cpu1, n_last, sl_last, cpu_last,
                     pct_last);
        }
        if (skip_ratio > 0) {
            printf("%-20s %5s %9.1f  skip_identical flash, fresh unit / plain flash (%.1f ms): "
                   "%.3f, target <= 1.05 %s\n", path_names[p], "1", probe.r.flash_us / 1000.0,
                   plain.r.flash_us / 1000.0, skip_ratio, skip_ratio <= 1.05 ? "yes" : "NO");
            printf("%-20s %5s %9.1f  skip_identical flash, unit holding another image / plain "
                   "flash there (%.1f ms): %.3f, target <= 1.05 %s\n", path_names[p], "1",
                   probe_other.r.flash_us / 1000.0, plain_other.r.flash_us / 1000.0, other_ratio,
                   other_ratio <= 1.05 ? "yes" : "NO");
        }
        fflush(stdout);
        st_image_free(img);
    }
    printf("\nunit ms: the slowest unit's phase (serial Katapult: request string, CONNECT, "
           "flash, verify; DfuSe and CAN: flash + verify; CAN: first start to last end).\n"
           "limit ms: its device limit (models' wire + device time; CAN: the shared bus floor)."
           "\npeer: dfu-util download+upload vs station flash+verify is measured in the kernel-"
           "driver rig only (rig: scripts/bench.sh --rig); Katapult has no packaged peer "
           "(flashtool.py is not in Debian).\n"
           "CPU ms/unit, CPU %%: the station's own threads (their CPU clocks) during the phase, "
           "per unit and as a share of the unit's wall time. CAN: the station's link is a "
           "kernel socket (a frame per message, many per sendmmsg/recvmmsg, as on CAN_RAW) "
           "and the in-memory bus with "
           "its units runs in two bridge threads per unit (a second run of each CAN row: its "
           "ratio is from the run on the in-memory bus itself, whose hops are fewer); UART: the Katapult model runs in "
           "the pty server's thread; * DfuSe and USB-CDC: the in-memory USB models run inside "
           "the station's thread, so the figure includes them.\n"
           "sim ms/u: the rest of the child's CPU per unit (the simulated units, buses, "
           "bridges, pty servers); RSS: the child's peak.\n");
    if (notes[0])
        printf("\nnot met, and why (measured in this run):\n%s", notes);
#undef NOTE
    return fails ? 1 : 0;
}
