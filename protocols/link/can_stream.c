/* A byte stream carried over CAN (protocols.md 2.6, klipper-protocol.md 2.2): the host-side
 * st_stream over an st_can_link, and the device-side node that hosts an st_stream_model
 * at a node id and answers the admin commands on 0x3F0 with its UUID. */
#include "protocols/link/can_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "station/core/clock.h"

#define ADMIN_CMD_ID 0x3F0u
#define ADMIN_RESP_ID 0x3F1u
#define ADMIN_QUERY_UNASSIGNED 0x00u
#define ADMIN_SET_KLIPPER_NODEID 0x01u
#define ADMIN_REQUEST_BOOTLOADER 0x02u
#define ADMIN_SET_CANBOOT_NODEID 0x11u
#define ADMIN_CLEAR_CANBOOT_NODEID 0x12u
#define ADMIN_RESP_NEED_NODEID 0x20u
#define NODEID_TO_RX(n) ((uint32_t)(n) * 2u + 0x100u) /* host -> node */
#define NODEID_TO_TX(n) ((uint32_t)(n) * 2u + 0x101u) /* node -> host */
#define MODEL_DRAIN_MAX 4096 /* bytes discarded per tx call while unassigned */

/* ---- host side --------------------------------------------------------------------- */

typedef struct can_stream {
    st_stream base;
    st_can_link *link;
    uint32_t tx_id, rx_id;
    uint8_t buf[8]; /* the rest of a frame the caller had no room for */
    size_t off, len;
    uint32_t bitrate; /* of the bus, when known (read_min sleeps through whole frames) */
    uint64_t expect_us; /* the next read's first look, on base.clock (0: none; st_stream_expect_at) */
    unsigned expect_sleeps; /* reads that slept until expect_us first (for tests) */
} can_stream;

#define CS_BATCH 16 /* frames per send_many / recv_many call */

static int cs_write(st_stream *base, const uint8_t *buf, size_t n, unsigned timeout_ms,
                    st_err *err)
{
    can_stream *s = (can_stream *)base;
    st_deadline d = st_deadline_in_ms(timeout_ms);
    size_t done = 0;
    s->expect_us = 0; /* a hint is about the answer to the write before it */
    while (done < n) {
        st_can_frame f[CS_BATCH];
        size_t k = 0, at = done;
        for (; k < CS_BATCH && at < n; k++) {
            f[k] = (st_can_frame){ .id = s->tx_id, .len = (uint8_t)(n - at > 8 ? 8 : n - at) };
            memcpy(f[k].data, buf + at, f[k].len);
            at += f[k].len;
        }
        int rc = st_can_send_many(s->link, f, k, (unsigned)st_deadline_remaining_ms(d), err);
        if (rc < 0)
            return st_err_wrap(err, rc, "%s: write byte %zu of %zu", base->name, done, n);
        done = at;
    }
    return (int)n;
}

static size_t cs_take(can_stream *s, uint8_t *buf, size_t cap)
{
    size_t k = s->len - s->off < cap ? s->len - s->off : cap;
    memcpy(buf, s->buf + s->off, k);
    s->off += k;
    return k;
}

static int cs_read(st_stream *base, uint8_t *buf, size_t cap, unsigned timeout_ms, st_err *err)
{
    can_stream *s = (can_stream *)base;
    if (cap == 0)
        return 0;
    size_t got = cs_take(s, buf, cap);
    if (!got && s->expect_us) {
        /* The answer is not expected before then: sleep through its frames (no wake-up at
         * each) and take them in one call below; never past this read's own timeout. */
        uint64_t now = st_clock_now_us(base->clock), end = now + (uint64_t)timeout_ms * 1000u;
        uint64_t at = s->expect_us < end ? s->expect_us : end;
        s->expect_us = 0;
        if (at > now) {
            s->expect_sleeps++;
            st_clock_sleep_until_us(base->clock, at);
            uint64_t slept = st_clock_now_us(base->clock) - now;
            timeout_ms = slept / 1000u >= timeout_ms ? 0 : timeout_ms - (unsigned)(slept / 1000u);
        }
    }
    st_deadline d = st_deadline_in_ms(timeout_ms);
    while (got < cap) {
        /* Once we have bytes, only take frames that are already here; never more frames
         * than the room left needs (one may be cut: its rest waits in s->buf). */
        unsigned wait = got ? 0u : (unsigned)st_deadline_remaining_ms(d);
        st_can_frame f[CS_BATCH];
        size_t want = (cap - got + 7u) / 8u;
        st_err later;
        /* With bytes in hand an error is reported by the next read, not this one. */
        size_t ask = want < CS_BATCH ? want : CS_BATCH;
        int rc = st_can_recv_many(s->link, f, ask, wait, got ? &later : err);
        if (rc < 0)
            return got ? (int)got : st_err_wrap(err, rc, "%s: read", base->name);
        if (rc == 0)
            break;
        for (int i = 0; i < rc; i++) {
            if (f[i].id != s->rx_id || f[i].len == 0)
                continue;
            memcpy(s->buf, f[i].data, f[i].len > 8 ? 8 : f[i].len);
            s->off = 0;
            s->len = f[i].len > 8 ? 8 : f[i].len;
            got += cs_take(s, buf + got, cap - got);
        }
        if (got && (size_t)rc < ask)
            break; /* fewer than asked: nothing more was queued (no empty read to learn it) */
    }
    return (int)got;
}

/* Fewest bits a frame of 8 data bytes takes on the wire (no stuff bits; interframe space
 * included): the soonest the next one can follow. */
#define CAN_FRAME8_MIN_BITS (47u + 64u)

/* Wait for at least min bytes with one wake-up per batch instead of one per frame: once
 * some bytes are here, the r frames still missing cannot all have arrived before r - 1
 * whole frames' wire time has passed, so sleep that long (never past when the last could
 * arrive), then take whatever is queued. Without a known bitrate it reads frame by frame. */
static int cs_read_min(st_stream *base, uint8_t *buf, size_t cap, size_t min, unsigned timeout_ms,
                       st_err *err)
{
    can_stream *s = (can_stream *)base;
    st_deadline d = st_deadline_in_ms(timeout_ms);
    size_t got = 0;
    while (got < min) {
        if (got && s->bitrate) {
            uint64_t r = (min - got + 7u) / 8u;
            if (r > 1) {
                uint64_t until = st_now_us() + (r - 1u) * CAN_FRAME8_MIN_BITS * 1000000u / s->bitrate;
                st_sleep_until((st_deadline){ until < d.at_us ? until : d.at_us });
            }
        }
        int rc = cs_read(base, buf + got, cap - got, (unsigned)st_deadline_remaining_ms(d),
                         got ? NULL : err);
        if (rc < 0)
            return got ? (int)got : rc;
        if (rc == 0)
            break;
        got += (size_t)rc;
    }
    return (int)got;
}

static void cs_expect_at(st_stream *base, uint64_t at_us)
{
    ((can_stream *)base)->expect_us = at_us;
}

unsigned st_can_stream_expect_sleeps(st_stream *base)
{
    return ((can_stream *)base)->expect_sleeps;
}

void st_can_stream_set_bitrate(st_stream *base, uint32_t bitrate)
{
    ((can_stream *)base)->bitrate = bitrate;
}

static int cs_set_line(st_stream *base, const st_stream_line *line, st_err *err)
{
    return 0; /* a CAN byte stream has no line settings */
}

static int cs_set_modem(st_stream *base, int dtr, int rts, st_err *err)
{
    return 0;
}

static int cs_flush_input(st_stream *base, st_err *err)
{
    can_stream *s = (can_stream *)base;
    s->off = s->len = 0;
    st_can_frame f;
    int rc;
    while ((rc = st_can_recv(s->link, &f, 0, err)) > 0) {
    }
    return rc < 0 ? rc : 0;
}

static void cs_close(st_stream *base)
{
    free(base);
}

static const st_stream_ops can_stream_ops = {
    .write = cs_write,
    .read = cs_read,
    .set_line = cs_set_line,
    .set_modem = cs_set_modem,
    .flush_input = cs_flush_input,
    .close = cs_close,
    .read_min = cs_read_min,
    .expect_at = cs_expect_at,
};

int st_can_stream_open(st_can_link *link, uint32_t tx_id, uint32_t rx_id, st_stream **out,
                       st_err *err)
{
    if (tx_id > 0x7FFu || rx_id > 0x7FFu)
        return st_err_set(err, ST_ERR_INVAL, "CAN stream ids 0x%x/0x%x are not 11-bit", tx_id,
                          rx_id);
    int rc = st_can_set_filter(link, &rx_id, 1, err);
    if (rc < 0)
        return rc;
    can_stream *s = calloc(1, sizeof *s);
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "CAN stream");
    s->base.ops = &can_stream_ops;
    snprintf(s->base.name, sizeof s->base.name, "can:0x%03x/0x%03x", tx_id, rx_id);
    s->link = link;
    s->tx_id = tx_id;
    s->rx_id = rx_id;
    *out = &s->base;
    return 0;
}

/* ---- device side ------------------------------------------------------------------- */

struct st_can_stream_node {
    st_can_node base;
    st_stream_model *m;
    st_can_stream_node_cfg cfg;
    int nodeid;         /* -1: unassigned */
    bool reply_pending; /* NEED_NODEID owed to a QUERY_UNASSIGNED */
    unsigned conflicts, bl_requests;
};

static void node_conflict(st_can_stream_node *n)
{
    n->nodeid = -1;
    n->conflicts++;
}

static void node_admin(st_can_stream_node *n, const st_can_frame *f)
{
    uint8_t set_cmd = n->cfg.app == ADMIN_SET_CANBOOT_NODEID ? ADMIN_SET_CANBOOT_NODEID
                                                              : ADMIN_SET_KLIPPER_NODEID;
    uint8_t cmd = f->data[0];
    bool uuid_match = f->len >= 7 && memcmp(f->data + 1, n->cfg.uuid, 6) == 0;
    if (cmd == ADMIN_QUERY_UNASSIGNED) {
        if (n->nodeid < 0)
            n->reply_pending = true;
    } else if (cmd == set_cmd && f->len >= 8) {
        if (uuid_match)
            n->nodeid = f->data[7];
        else if (n->nodeid >= 0 && n->nodeid == f->data[7])
            node_conflict(n); /* the host gave our id to another UUID */
    } else if (cmd == ADMIN_CLEAR_CANBOOT_NODEID && set_cmd == ADMIN_SET_CANBOOT_NODEID) {
        n->nodeid = -1;
    } else if (cmd == ADMIN_REQUEST_BOOTLOADER && set_cmd == ADMIN_SET_KLIPPER_NODEID &&
               uuid_match) {
        /* Klipper honours this even with a node id assigned (protocols.md 3). */
        n->bl_requests++;
        if (n->cfg.on_bootloader_request)
            n->cfg.on_bootloader_request(n->cfg.ctx);
    }
}

static void node_rx(st_can_node *base, const st_can_frame *f, uint64_t now_us)
{
    st_can_stream_node *n = (st_can_stream_node *)base;
    if (f->id == ADMIN_CMD_ID) {
        if (f->len >= 1)
            node_admin(n, f);
        return;
    }
    if (n->nodeid < 0)
        return;
    if (f->id == NODEID_TO_TX(n->nodeid)) {
        node_conflict(n); /* someone else transmits as us */
        return;
    }
    if (f->id == NODEID_TO_RX(n->nodeid) && n->m && f->len)
        n->m->ops->rx(n->m, f->data, f->len > 8 ? 8 : f->len, now_us);
}

static int node_tx(st_can_node *base, st_can_frame *f, uint64_t now_us)
{
    st_can_stream_node *n = (st_can_stream_node *)base;
    if (n->reply_pending) {
        n->reply_pending = false;
        if (n->nodeid < 0) {
            f->id = ADMIN_RESP_ID;
            f->len = 8;
            f->data[0] = ADMIN_RESP_NEED_NODEID;
            memcpy(f->data + 1, n->cfg.uuid, 6);
            f->data[7] = n->cfg.app;
            return 1;
        }
    }
    if (!n->m)
        return 0;
    for (size_t drained = 0; drained < MODEL_DRAIN_MAX;) {
        uint8_t b[8];
        size_t k = n->m->ops->tx(n->m, b, sizeof b, now_us);
        if (k == 0)
            return 0;
        if (k > 8)
            k = 8;
        if (n->nodeid < 0) {
            drained += k; /* no id: nowhere to send it */
            continue;
        }
        f->id = NODEID_TO_TX(n->nodeid);
        f->len = (uint8_t)k;
        memcpy(f->data, b, k);
        return 1;
    }
    return 0;
}

static uint64_t node_next_event(st_can_node *base)
{
    st_can_stream_node *n = (st_can_stream_node *)base;
    if (n->reply_pending)
        return 0;
    return n->m ? n->m->ops->next_event_us(n->m) : UINT64_MAX;
}

/* A unit that (re)starts has no node id: Katapult and Klipper keep it in RAM only. */
static void node_power_on(st_can_node *base)
{
    st_can_stream_node *n = (st_can_stream_node *)base;
    n->nodeid = -1;
    n->reply_pending = false;
}

static const st_can_node_ops stream_node_ops = {
    .rx = node_rx,
    .tx = node_tx,
    .next_event_us = node_next_event,
    .power_on = node_power_on,
};

st_can_stream_node *st_can_stream_node_new(st_stream_model *m, const st_can_stream_node_cfg *cfg)
{
    st_can_stream_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->base.ops = &stream_node_ops;
    n->m = m;
    n->cfg = *cfg;
    n->nodeid = -1;
    return n;
}

void st_can_stream_node_free(st_can_stream_node *n)
{
    free(n);
}

st_can_node *st_can_stream_node_base(st_can_stream_node *n)
{
    return &n->base;
}

int st_can_stream_node_nodeid(st_can_stream_node *n)
{
    return n->nodeid;
}

unsigned st_can_stream_node_conflicts(st_can_stream_node *n)
{
    return n->conflicts;
}

unsigned st_can_stream_node_bootloader_requests(st_can_stream_node *n)
{
    return n->bl_requests;
}
