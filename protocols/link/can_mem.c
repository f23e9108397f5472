/* In-memory CAN bus: device-model nodes and host links on one shared medium, with a
 * timing profile and fault injection (see can_model.h). There is no bus thread: whichever
 * host thread sends or waits on the bus runs the nodes ("pumps") under the bus lock, so a
 * frame's delivery time is computed from the wire model, not from who happened to run. */
#include "protocols/link/can_model.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "station/core/clock.h"

#define MEM_LINK_QUEUE 4096   /* frames per link, like a socket receive buffer */
#define PUMP_ROUNDS_MAX 100000 /* two nodes ping-ponging forever must not hang a host call */
#define PUMP_NODE_BURST 64    /* frames taken from one node per round, for fairness */
#define IDLE_SPIN_GUARD_US 200 /* a node whose next event is "now" but that sends nothing */

unsigned st_can_frame_bits(uint8_t len)
{
    unsigned n = len > 8 ? 8u : len;
    unsigned unstuffed = 47u + 8u * n;
    unsigned stuffable = 34u + 8u * n;
    return unstuffed + (stuffable - 1u) / 4u;
}

typedef struct mem_link mem_link;
typedef struct mem_iface mem_iface;

typedef struct inflight {
    st_can_frame f;
    uint64_t at_us;        /* delivery time (end of the frame on the wire) */
    st_can_node *src_node; /* sender, never delivered back to it (NULL: gone/host) */
    mem_link *src_link;
} inflight;

typedef struct node_slot {
    st_can_node *n;
    bool gone;
} node_slot;

struct st_vcan_bus {
    pthread_mutex_t mu; /* recursive: node callbacks may attach/detach */
    pthread_cond_t cv;
    uint32_t bitrate;
    st_timing_profile timing;
    bool bus_off;
    bool down;           /* interface administratively down (fault) */
    bool bitrate_locked; /* set_bitrate refused as without CAP_NET_ADMIN (fault) */
    node_slot *nodes;
    size_t nnodes, capnodes;
    mem_link **links;
    size_t nlinks, caplinks;
    inflight *fl; /* ring of frames on the wire */
    size_t flhead, flcount, flcap;
    uint64_t free_at_us;
    unsigned pump_depth;
    uint64_t drop_nth, corrupt_nth;
    st_vcan_stats stats;
};

struct mem_link {
    st_can_link base;
    st_vcan_bus *bus;
    uint32_t *ids;
    size_t nids;
    st_can_frame *q;
    size_t qhead, qcount;
};

struct mem_iface {
    st_can_iface base;
    st_vcan_bus *bus;
};

/* ---- bus core ---------------------------------------------------------------------- */

st_vcan_bus *st_vcan_bus_new(uint32_t bitrate, st_timing_profile timing)
{
    if (timing == ST_TIMING_DATASHEET && bitrate == 0)
        return NULL;
    st_vcan_bus *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&b->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    b->bitrate = bitrate;
    b->timing = timing;
    return b;
}

void st_vcan_bus_free(st_vcan_bus *b)
{
    if (!b)
        return;
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    free(b->nodes);
    free(b->links);
    free(b->fl);
    free(b);
}

static void bus_compact_nodes(st_vcan_bus *b)
{
    size_t w = 0;
    for (size_t r = 0; r < b->nnodes; r++)
        if (!b->nodes[r].gone)
            b->nodes[w++] = b->nodes[r];
    b->nnodes = w;
}

int st_vcan_attach(st_vcan_bus *b, st_can_node *n, st_err *err)
{
    int rc = 0;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->nnodes; i++)
        if (b->nodes[i].n == n && !b->nodes[i].gone) {
            rc = st_err_set(err, ST_ERR_BUSY, "vcan: node already attached");
            goto out;
        }
    if (b->nnodes == b->capnodes) {
        size_t cap = b->capnodes ? b->capnodes * 2 : 8;
        node_slot *p = realloc(b->nodes, cap * sizeof *p);
        if (!p) {
            rc = st_err_set(err, ST_ERR_NOMEM, "vcan: attach");
            goto out;
        }
        b->nodes = p;
        b->capnodes = cap;
    }
    if (n->ops->power_on)
        n->ops->power_on(n);
    b->nodes[b->nnodes++] = (node_slot){ n, false };
    pthread_cond_broadcast(&b->cv);
out:
    pthread_mutex_unlock(&b->mu);
    return rc;
}

void st_vcan_detach(st_vcan_bus *b, st_can_node *n)
{
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->nnodes; i++)
        if (b->nodes[i].n == n)
            b->nodes[i].gone = true;
    for (size_t i = 0; i < b->flcount; i++) {
        inflight *e = &b->fl[(b->flhead + i) % b->flcap];
        if (e->src_node == n)
            e->src_node = NULL;
    }
    if (b->pump_depth == 0)
        bus_compact_nodes(b);
    pthread_mutex_unlock(&b->mu);
}

void st_vcan_fault_bus_off(st_vcan_bus *b, bool on)
{
    pthread_mutex_lock(&b->mu);
    b->bus_off = on;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

void st_vcan_fault_down(st_vcan_bus *b, bool down)
{
    pthread_mutex_lock(&b->mu);
    b->down = down;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

void st_vcan_fault_bitrate_locked(st_vcan_bus *b, bool locked)
{
    pthread_mutex_lock(&b->mu);
    b->bitrate_locked = locked;
    pthread_mutex_unlock(&b->mu);
}

void st_vcan_fault_drop_nth(st_vcan_bus *b, uint64_t nth)
{
    pthread_mutex_lock(&b->mu);
    b->drop_nth = nth;
    pthread_mutex_unlock(&b->mu);
}

void st_vcan_fault_corrupt_nth(st_vcan_bus *b, uint64_t nth)
{
    pthread_mutex_lock(&b->mu);
    b->corrupt_nth = nth;
    pthread_mutex_unlock(&b->mu);
}

void st_vcan_get_stats(st_vcan_bus *b, st_vcan_stats *out)
{
    pthread_mutex_lock(&b->mu);
    *out = b->stats;
    pthread_mutex_unlock(&b->mu);
}

#define MEM_TXQ 10u /* frames a link may have queued for the wire (Linux CAN txqueuelen) */

static uint64_t frame_time_us(const st_vcan_bus *b, uint8_t len)
{
    if (b->timing != ST_TIMING_DATASHEET || b->bitrate == 0)
        return 0;
    uint64_t bits = st_can_frame_bits(len);
    return (bits * 1000000u + b->bitrate - 1u) / b->bitrate;
}

/* Put a frame on the wire at now_us (or when the bus frees up). Returns its start time,
 * or UINT64_MAX when out of memory (frame lost, counted as an overrun). */
static uint64_t bus_enqueue(st_vcan_bus *b, const st_can_frame *f, st_can_node *src_node,
                            mem_link *src_link, uint64_t now_us)
{
    st_can_frame fr = *f;
    if (fr.len > 8)
        fr.len = 8;
    fr.id &= 0x7FFu;
    uint64_t dur = frame_time_us(b, fr.len);
    uint64_t start = now_us > b->free_at_us ? now_us : b->free_at_us;
    b->free_at_us = start + dur;
    b->stats.frames++;
    b->stats.bits += st_can_frame_bits(fr.len);
    b->stats.busy_us += dur;
    bool drop = false;
    if (b->drop_nth && --b->drop_nth == 0) {
        drop = true;
        b->stats.dropped++;
    }
    if (b->corrupt_nth && --b->corrupt_nth == 0) {
        if (fr.len)
            fr.data[fr.len - 1] ^= 0xFFu;
        else
            fr.len = 1; /* an empty frame grows a byte: still visible damage */
        b->stats.corrupted++;
    }
    if (drop)
        return start;
    if (b->flcount == b->flcap) {
        size_t cap = b->flcap ? b->flcap * 2 : 64;
        inflight *p = malloc(cap * sizeof *p);
        if (!p) {
            b->stats.overruns++;
            return UINT64_MAX;
        }
        for (size_t i = 0; i < b->flcount; i++)
            p[i] = b->fl[(b->flhead + i) % b->flcap];
        free(b->fl);
        b->fl = p;
        b->flcap = cap;
        b->flhead = 0;
    }
    b->fl[(b->flhead + b->flcount) % b->flcap] =
        (inflight){ fr, start + dur, src_node, src_link };
    b->flcount++;
    return start;
}

static bool link_accepts(const mem_link *l, uint32_t id)
{
    if (l->nids == 0)
        return true;
    for (size_t i = 0; i < l->nids; i++)
        if (l->ids[i] == id)
            return true;
    return false;
}

static void bus_deliver(st_vcan_bus *b, const inflight *e, uint64_t now_us)
{
    for (size_t i = 0; i < b->nnodes; i++) {
        node_slot *s = &b->nodes[i];
        if (!s->gone && s->n != e->src_node)
            s->n->ops->rx(s->n, &e->f, now_us);
    }
    for (size_t i = 0; i < b->nlinks; i++) {
        mem_link *l = b->links[i];
        if (l == e->src_link || !link_accepts(l, e->f.id))
            continue;
        if (l->qcount == MEM_LINK_QUEUE) {
            b->stats.overruns++;
            continue;
        }
        l->q[(l->qhead + l->qcount) % MEM_LINK_QUEUE] = e->f;
        l->qcount++;
    }
}

/* Run the bus up to the present: deliver frames whose time has come and collect what the
 * nodes want to send, until nothing moves. Called with the lock held. */
static void bus_pump(st_vcan_bus *b)
{
    bool any = false;
    b->pump_depth++;
    for (unsigned round = 0; round < PUMP_ROUNDS_MAX; round++) {
        uint64_t now = st_now_us();
        bool progress = false;
        while (b->flcount && b->fl[b->flhead].at_us <= now) {
            inflight e = b->fl[b->flhead];
            b->flhead = (b->flhead + 1) % b->flcap;
            b->flcount--;
            bus_deliver(b, &e, now);
            progress = true;
        }
        for (size_t i = 0; i < b->nnodes; i++) {
            for (unsigned k = 0; k < PUMP_NODE_BURST && !b->nodes[i].gone; k++) {
                st_can_frame f;
                st_can_node *n = b->nodes[i].n;
                if (n->ops->tx(n, &f, now) != 1)
                    break;
                bus_enqueue(b, &f, n, NULL, now);
                progress = true;
            }
        }
        if (!progress)
            break;
        any = true;
    }
    if (--b->pump_depth == 0)
        bus_compact_nodes(b);
    if (any)
        pthread_cond_broadcast(&b->cv);
}

static uint64_t bus_next_wake(st_vcan_bus *b)
{
    uint64_t wake = UINT64_MAX;
    if (b->flcount)
        wake = b->fl[b->flhead].at_us;
    for (size_t i = 0; i < b->nnodes; i++) {
        if (b->nodes[i].gone)
            continue;
        uint64_t t = b->nodes[i].n->ops->next_event_us(b->nodes[i].n);
        if (t < wake)
            wake = t;
    }
    /* Something claims to be due already but the pump just ran: do not spin on it. */
    uint64_t now = st_now_us();
    if (wake <= now)
        wake = now + IDLE_SPIN_GUARD_US;
    return wake;
}

static void bus_wait_until(st_vcan_bus *b, uint64_t at_us)
{
    struct timespec ts = { .tv_sec = (time_t)(at_us / 1000000u),
                           .tv_nsec = (long)(at_us % 1000000u) * 1000 };
    pthread_cond_timedwait(&b->cv, &b->mu, &ts);
}

/* ---- host links -------------------------------------------------------------------- */

static int bus_off_error(st_err *err)
{
    return st_err_set(err, ST_ERR_IO, "CAN controller is %s: restart the interface",
                      st_can_state_name(ST_CAN_BUS_OFF));
}

static int down_error(st_err *err)
{
    return st_err_set(err, ST_ERR_IO, "CAN interface is down: bring it up");
}

static int mem_send(st_can_link *base, const st_can_frame *f, unsigned timeout_ms, st_err *err)
{
    mem_link *l = (mem_link *)base;
    st_vcan_bus *b = l->bus;
    if (f->len > 8 || f->id > 0x7FFu)
        return st_err_set(err, ST_ERR_INVAL, "CAN frame id 0x%x len %u out of range", f->id,
                          f->len);
    pthread_mutex_lock(&b->mu);
    if (b->bus_off || b->down) {
        int rc = b->down ? down_error(err) : bus_off_error(err);
        pthread_mutex_unlock(&b->mu);
        return rc;
    }
    bus_pump(b);
    uint64_t now = st_now_us();
    /* A bus that will not take the frame before the deadline refuses it. */
    if (b->free_at_us > now && b->free_at_us - now > (uint64_t)timeout_ms * 1000u) {
        pthread_mutex_unlock(&b->mu);
        return st_err_set(err, ST_ERR_TIMEOUT, "CAN bus busy: frame 0x%03x not sent within %u ms",
                          f->id, timeout_ms);
    }
    uint64_t start = bus_enqueue(b, f, NULL, l, now);
    if (start == UINT64_MAX) {
        pthread_mutex_unlock(&b->mu);
        return st_err_set(err, ST_ERR_NOMEM, "CAN send");
    }
    bus_pump(b);
    pthread_cond_broadcast(&b->cv);
    /* Like a SocketCAN netdev's transmit queue (txqueuelen 10 on Linux CAN devices) the
     * send returns while the frame waits behind at most MEM_TXQ - 1 others; only a sender
     * further back waits, as write() on a full queue would. */
    uint64_t slack = (MEM_TXQ - 1u) * frame_time_us(b, 8);
    pthread_mutex_unlock(&b->mu);
    if (start > now + slack)
        st_sleep_until((st_deadline){ start - slack });
    return 0;
}

static int mem_recv(st_can_link *base, st_can_frame *f, unsigned timeout_ms, st_err *err)
{
    mem_link *l = (mem_link *)base;
    st_vcan_bus *b = l->bus;
    uint64_t deadline = st_now_us() + (uint64_t)timeout_ms * 1000u;
    int rc = 0;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        if (b->bus_off || b->down) {
            rc = b->down ? down_error(err) : bus_off_error(err);
            break;
        }
        bus_pump(b);
        if (l->qcount) {
            *f = l->q[l->qhead];
            l->qhead = (l->qhead + 1) % MEM_LINK_QUEUE;
            l->qcount--;
            rc = 1;
            break;
        }
        if (st_now_us() >= deadline)
            break;
        uint64_t wake = bus_next_wake(b);
        bus_wait_until(b, wake < deadline ? wake : deadline);
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

static int mem_set_filter(st_can_link *base, const uint32_t *ids, size_t n, st_err *err)
{
    mem_link *l = (mem_link *)base;
    uint32_t *copy = NULL;
    if (n) {
        copy = malloc(n * sizeof *copy);
        if (!copy)
            return st_err_set(err, ST_ERR_NOMEM, "CAN filter");
        for (size_t i = 0; i < n; i++)
            copy[i] = ids[i] & 0x7FFu;
    }
    pthread_mutex_lock(&l->bus->mu);
    free(l->ids);
    l->ids = copy;
    l->nids = n;
    /* Unlike a SocketCAN filter (which leaves already-queued frames alone), drop queued
     * frames the new filter would not have let through: a link re-aimed at another node
     * must not see the old node's leftovers. */
    size_t w = 0;
    for (size_t i = 0; i < l->qcount; i++) {
        st_can_frame fr = l->q[(l->qhead + i) % MEM_LINK_QUEUE];
        if (link_accepts(l, fr.id))
            l->q[(l->qhead + w++) % MEM_LINK_QUEUE] = fr;
    }
    l->qcount = w;
    pthread_mutex_unlock(&l->bus->mu);
    return 0;
}

static void mem_close(st_can_link *base)
{
    mem_link *l = (mem_link *)base;
    st_vcan_bus *b = l->bus;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->nlinks; i++)
        if (b->links[i] == l) {
            b->links[i] = b->links[--b->nlinks];
            break;
        }
    for (size_t i = 0; i < b->flcount; i++) {
        inflight *e = &b->fl[(b->flhead + i) % b->flcap];
        if (e->src_link == l)
            e->src_link = NULL;
    }
    pthread_mutex_unlock(&b->mu);
    free(l->ids);
    free(l->q);
    free(l);
}

static const st_can_link_ops mem_link_ops = {
    .send = mem_send,
    .recv = mem_recv,
    .set_filter = mem_set_filter,
    .close = mem_close,
};

/* ---- host iface -------------------------------------------------------------------- */

static int mem_open_link(st_can_iface *base, st_can_link **out, st_err *err)
{
    mem_iface *mi = (mem_iface *)base;
    st_vcan_bus *b = mi->bus;
    mem_link *l = calloc(1, sizeof *l);
    if (l)
        l->q = malloc(MEM_LINK_QUEUE * sizeof *l->q);
    if (!l || !l->q) {
        if (l)
            free(l);
        return st_err_set(err, ST_ERR_NOMEM, "%s: open link", base->name);
    }
    l->base.ops = &mem_link_ops;
    l->bus = b;
    pthread_mutex_lock(&b->mu);
    if (b->nlinks == b->caplinks) {
        size_t cap = b->caplinks ? b->caplinks * 2 : 8;
        mem_link **p = realloc(b->links, cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&b->mu);
            free(l->q);
            free(l);
            return st_err_set(err, ST_ERR_NOMEM, "%s: open link", base->name);
        }
        b->links = p;
        b->caplinks = cap;
    }
    b->links[b->nlinks++] = l;
    pthread_mutex_unlock(&b->mu);
    *out = &l->base;
    return 0;
}

static int mem_get_bitrate(st_can_iface *base, uint32_t *bitrate, st_err *err)
{
    mem_iface *mi = (mem_iface *)base;
    pthread_mutex_lock(&mi->bus->mu);
    *bitrate = mi->bus->bitrate;
    pthread_mutex_unlock(&mi->bus->mu);
    return 0;
}

static int mem_set_bitrate(st_can_iface *base, uint32_t bitrate, st_err *err)
{
    mem_iface *mi = (mem_iface *)base;
    int rc = 0;
    pthread_mutex_lock(&mi->bus->mu);
    if (mi->bus->bitrate == 0)
        rc = st_err_set(err, ST_ERR_UNSUPPORTED, "%s has no bitrate (virtual CAN)", base->name);
    else if (mi->bus->bitrate_locked)
        rc = st_err_set(err, ST_ERR_PERM,
                        "set bitrate of %s: refused (CAP_NET_ADMIN needed: run as root, grant "
                        "the capability, or configure the interface at boot in "
                        "/etc/network/interfaces or systemd-networkd)", base->name);
    else if (bitrate == 0)
        rc = st_err_set(err, ST_ERR_INVAL, "%s: bitrate 0", base->name);
    else
        mi->bus->bitrate = bitrate;
    pthread_mutex_unlock(&mi->bus->mu);
    return rc;
}

static int mem_get_state(st_can_iface *base, st_can_state *state, st_err *err)
{
    mem_iface *mi = (mem_iface *)base;
    pthread_mutex_lock(&mi->bus->mu);
    *state = mi->bus->down      ? ST_CAN_STOPPED
             : mi->bus->bus_off ? ST_CAN_BUS_OFF
                                : ST_CAN_ERROR_ACTIVE;
    pthread_mutex_unlock(&mi->bus->mu);
    return 0;
}

static int mem_up(st_can_iface *base, st_err *err)
{
    mem_iface *mi = (mem_iface *)base;
    st_vcan_fault_down(mi->bus, false);
    return 0;
}

static int mem_restart(st_can_iface *base, st_err *err)
{
    mem_iface *mi = (mem_iface *)base;
    st_vcan_fault_bus_off(mi->bus, false);
    return 0;
}

static void mem_free(st_can_iface *base)
{
    free(base);
}

static const st_can_iface_ops mem_iface_ops = {
    .open_link = mem_open_link,
    .get_bitrate = mem_get_bitrate,
    .set_bitrate = mem_set_bitrate,
    .get_state = mem_get_state,
    .up = mem_up,
    .restart = mem_restart,
    .free = mem_free,
};

int st_can_iface_mem_new(st_vcan_bus *bus, const char *name, const st_logger *log,
                         st_can_iface **out, st_err *err)
{
    mem_iface *mi = calloc(1, sizeof *mi);
    if (!mi)
        return st_err_set(err, ST_ERR_NOMEM, "vcan iface");
    mi->base.ops = &mem_iface_ops;
    mi->base.log = log;
    mi->bus = bus;
    const char *nm = name ? name : "vcan-virtual";
    size_t n = strlen(nm);
    if (n >= sizeof mi->base.name)
        n = sizeof mi->base.name - 1;
    memcpy(mi->base.name, nm, n);
    mi->base.name[n] = '\0';
    *out = &mi->base;
    return 0;
}
