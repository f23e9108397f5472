/* In-memory CAN bus: device-model nodes and host links on one shared medium, with a
 * timing profile and fault injection (see can_model.h). There is no bus thread: whichever
 * host thread sends or waits on the bus runs the nodes ("pumps") under the bus lock, so a
 * frame's delivery time is computed from the wire model, not from who happened to run.
 * Time on the wire is kept apart from when the pump ran: a node receives each frame
 * stamped with its arrival time and its answer goes on the wire when it was ready, so a
 * host thread that woke late does not make the simulated unit late. Waiters are woken
 * fairly: each link has its own condition variable, signalled only when a frame is queued
 * for it; each waiter sleeps until its own next frame, and one waiting thread at a time
 * (the pumper) also until the nodes' next event, so CPU per unit stays flat as units are
 * added. */
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
    uint64_t vnow_us;    /* arrival time of the latest frame delivered (wire time) */
    mem_link *pumper;    /* the waiter that sleeps until the bus's next event, if any */
    uint64_t pumper_wake_us; /* when it will wake */
    unsigned pump_depth;
    uint64_t drop_nth, corrupt_nth;
    st_vcan_stats stats;
};

struct mem_link {
    st_can_link base;
    st_vcan_bus *bus;
    pthread_cond_t cv;  /* signalled when a frame is queued for it, or it must pump */
    bool waiting;       /* a thread waits in mem_recv on it */
    uint64_t wake_us;   /* when that thread's sleep ends */
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
    b->bitrate = bitrate;
    b->timing = timing;
    return b;
}

void st_vcan_bus_free(st_vcan_bus *b)
{
    if (!b)
        return;
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

/* Something changed for everyone (a node, a fault): every waiter looks again. */
static void bus_kick(st_vcan_bus *b)
{
    for (size_t i = 0; i < b->nlinks; i++)
        if (b->links[i]->waiting)
            pthread_cond_signal(&b->links[i]->cv);
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
    bus_kick(b);
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
    bus_kick(b);
    pthread_mutex_unlock(&b->mu);
}

void st_vcan_fault_down(st_vcan_bus *b, bool down)
{
    pthread_mutex_lock(&b->mu);
    b->down = down;
    bus_kick(b);
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
    /* Nodes get the frame now, stamped with its arrival time: a model's answer depends only
     * on that stamp, and no host thread has to wake at every frame's end to hand it over
     * (the frame's place on the wire is already fixed: the bus is first come, first
     * served). Host links still get it at its arrival time (bus_pump). */
    uint64_t at = start + dur;
    b->pump_depth++;
    for (size_t i = 0; i < b->nnodes; i++) {
        node_slot *s = &b->nodes[i];
        if (!s->gone && s->n != src_node)
            s->n->ops->rx(s->n, &fr, at);
    }
    if (--b->pump_depth == 0)
        bus_compact_nodes(b);
    if (at > b->vnow_us)
        b->vnow_us = at;
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

/* Deliver a frame that has arrived to the host links: those whose filter takes it get it
 * queued and their waiter (only theirs) woken. (Nodes had it at bus_enqueue.) */
static void bus_deliver(st_vcan_bus *b, const inflight *e)
{
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
        if (l->waiting) {
            pthread_cond_signal(&l->cv);
            b->stats.wakeups++;
        }
    }
}

/* Run the bus up to the present: deliver frames whose time has come and collect what the
 * nodes want to send, until nothing moves. A node's frame goes on the wire when the node
 * had it ready (its next event, never before the latest arrival that may have caused it),
 * not when this pump happened to run. Called with the lock held. */
static void bus_pump(st_vcan_bus *b)
{
    b->pump_depth++;
    for (unsigned round = 0; round < PUMP_ROUNDS_MAX; round++) {
        uint64_t now = st_now_us();
        bool progress = false;
        while (b->flcount && b->fl[b->flhead].at_us <= now) {
            inflight e = b->fl[b->flhead];
            b->flhead = (b->flhead + 1) % b->flcap;
            b->flcount--;
            if (e.at_us > b->vnow_us)
                b->vnow_us = e.at_us;
            bus_deliver(b, &e);
            progress = true;
        }
        for (size_t i = 0; i < b->nnodes; i++) {
            for (unsigned k = 0; k < PUMP_NODE_BURST && !b->nodes[i].gone; k++) {
                st_can_frame f;
                st_can_node *n = b->nodes[i].n;
                uint64_t ready = n->ops->next_event_us(n);
                if (n->ops->tx(n, &f, now) != 1)
                    break;
                if (ready > now)
                    ready = now; /* it said later but had it now */
                if (ready < b->vnow_us)
                    ready = b->vnow_us;
                bus_enqueue(b, &f, n, NULL, ready);
                progress = true;
            }
        }
        if (!progress)
            break;
    }
    if (--b->pump_depth == 0)
        bus_compact_nodes(b);
}

/* Arrival time of the first frame in flight that link l will take (UINT64_MAX: none). */
static uint64_t link_next_frame(const st_vcan_bus *b, const mem_link *l)
{
    for (size_t i = 0; i < b->flcount; i++) {
        const inflight *e = &b->fl[(b->flhead + i) % b->flcap];
        if (e->src_link != l && link_accepts(l, e->f.id))
            return e->at_us;
    }
    return UINT64_MAX;
}

/* The nodes' next event: when the pumper must run the bus (a unit's answer due). */
static uint64_t nodes_next_event(st_vcan_bus *b)
{
    uint64_t wake = UINT64_MAX;
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

static void link_wait_until(mem_link *l, uint64_t at_us)
{
    struct timespec ts = { .tv_sec = (time_t)(at_us / 1000000u),
                           .tv_nsec = (long)(at_us % 1000000u) * 1000 };
    st_clock_precise_wakeups();
    l->wake_us = at_us;
    l->bus->stats.sleeps++;
    pthread_cond_timedwait(&l->cv, &l->bus->mu, &ts);
}

/* After a pump or a send: a waiter whose own next frame now comes before it planned to
 * wake is woken to sleep until that frame instead; the pumper likewise when a node's event
 * now comes earlier. Waiters sleep only until their own frames, so a frame wakes only the
 * thread it is for. */
static void bus_nudge(st_vcan_bus *b, const mem_link *self)
{
    for (size_t i = 0; i < b->nlinks; i++) {
        mem_link *l = b->links[i];
        if (l != self && l->waiting && link_next_frame(b, l) < l->wake_us)
            pthread_cond_signal(&l->cv);
    }
    if (b->pumper && b->pumper != self && nodes_next_event(b) < b->pumper_wake_us)
        pthread_cond_signal(&b->pumper->cv);
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
    bus_nudge(b, NULL); /* another thread may wait on this very link */
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
    l->waiting = true;
    for (;;) {
        if (b->bus_off || b->down) {
            rc = b->down ? down_error(err) : bus_off_error(err);
            break;
        }
        bus_pump(b);
        bus_nudge(b, l);
        if (l->qcount) {
            *f = l->q[l->qhead];
            l->qhead = (l->qhead + 1) % MEM_LINK_QUEUE;
            l->qcount--;
            rc = 1;
            break;
        }
        if (st_now_us() >= deadline)
            break;
        /* Each waiter sleeps until its own next frame; one of them (the pumper) also
         * wakes for the nodes' events, to put the units' answers on the wire. */
        if (!b->pumper)
            b->pumper = l;
        uint64_t until = deadline;
        uint64_t mine = link_next_frame(b, l);
        if (mine < until)
            until = mine;
        if (b->pumper == l) {
            uint64_t wake = nodes_next_event(b);
            if (wake < until)
                until = wake;
            b->pumper_wake_us = until;
        }
        link_wait_until(l, until);
    }
    l->waiting = false;
    if (b->pumper == l) {
        /* Hand the bus to another waiter, if any. */
        b->pumper = NULL;
        for (size_t i = 0; i < b->nlinks; i++)
            if (b->links[i]->waiting) {
                pthread_cond_signal(&b->links[i]->cv);
                break;
            }
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
    pthread_cond_destroy(&l->cv);
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
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
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
