/* Klipper host engine: reliable blocks, identify, commands and responses (klipper.h). */
#include "protocols/klipper/klipper.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "station/core/clock.h"

#define MOD "klipper"
#define WINDOW_BLOCKS 12u     /* Klipper's host: at most 12 unacked blocks (7) */
#define RTO_MIN_US 25000u     /* serialqueue.c MIN_RTO */
#define RTO_MAX_US 5000000u   /* MAX_RTO */
#define RXQ_CAP 256u          /* responses held for the caller */
#define IDENTIFY_CHUNK 40u    /* what Klipper asks for (a reply must fit a block) */
#define IDENTIFY_RETRY_MS 50u  /* Klipper retries after 10 ms, doubling */
#define QUERY_RETRY_MS 100u

typedef struct sent_block {
    uint64_t seq;
    uint8_t len;
    uint8_t data[ST_KLP_BLOCK_MAX];
    uint64_t sent_us;
    bool retransmitted;
} sent_block;

typedef struct rx_msg {
    uint8_t len;
    uint8_t data[ST_KLP_CONTENT_MAX];
} rx_msg;

struct st_klp_host {
    st_stream *s;
    const st_logger *log;
    st_klp_dict *boot;   /* identify / identify_response only */
    st_klp_dict *dict;
    uint8_t *raw;
    size_t raw_len;
    /* receive side: the caller-owned state of st_klp_block_check */
    uint8_t in[512];
    size_t in_len;
    bool need_sync;
    /* sequence numbers as 64-bit counters (Klipper's serialqueue.c): send_seq is the next
     * number to give a block, receive_seq the next the unit expects */
    uint64_t send_seq, receive_seq, ignore_nak_seq;
    sent_block unacked[WINDOW_BLOCKS];
    size_t n_unacked;
    uint64_t rto_us, srtt_us, rttvar_us, rtx_at_us;
    unsigned receive_window; /* RECEIVE_WINDOW bytes, 0 = none */
    bool synced;             /* a valid block came: its sequence number is the truth */
    rx_msg q[RXQ_CAP];
    size_t q_head, q_len;
    uint8_t cur[ST_KLP_CONTENT_MAX];
    st_klp_host_stats st;
};

static const char boot_json[] =
    "{\"version\":\"\",\"config\":{\"CLOCK_FREQ\":1},\"commands\":{},\"responses\":{}}";

int st_klp_host_open(st_stream *s, const st_logger *log, st_klp_host **out, st_err *err)
{
    st_klp_host *h = calloc(1, sizeof *h);
    if (!h)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    int rc = st_klp_dict_parse(boot_json, sizeof boot_json - 1, &h->boot, err);
    if (rc) {
        free(h);
        return rc;
    }
    h->s = s;
    h->log = log;
    h->send_seq = h->receive_seq = 1; /* as Klipper: the first block says seq 1 (5.3) */
    h->rto_us = RTO_MIN_US;
    *out = h;
    return 0;
}

void st_klp_host_close(st_klp_host *h)
{
    if (!h)
        return;
    st_klp_dict_free(h->boot);
    st_klp_dict_free(h->dict);
    free(h->raw);
    free(h);
}

const st_klp_dict *st_klp_host_dict(const st_klp_host *h)
{
    return h->dict;
}

const uint8_t *st_klp_host_dict_raw(const st_klp_host *h, size_t *len)
{
    *len = h->raw_len;
    return h->raw;
}

void st_klp_host_get_stats(const st_klp_host *h, st_klp_host_stats *out)
{
    *out = h->st;
}

static const st_klp_dict *cur_dict(const st_klp_host *h)
{
    return h->dict ? h->dict : h->boot;
}

static size_t unacked_bytes(const st_klp_host *h)
{
    size_t n = 0;
    for (size_t i = 0; i < h->n_unacked; i++)
        n += h->unacked[i].len;
    return n;
}

/* Write 0x7E then every unacked block, unchanged (7: a retransmission burst). */
static int retransmit(st_klp_host *h, st_err *err)
{
    uint8_t buf[1 + WINDOW_BLOCKS * ST_KLP_BLOCK_MAX];
    size_t n = 0;
    buf[n++] = ST_KLP_SYNC;
    for (size_t i = 0; i < h->n_unacked; i++) {
        memcpy(buf + n, h->unacked[i].data, h->unacked[i].len);
        n += h->unacked[i].len;
        h->unacked[i].retransmitted = true;
        h->st.retransmits++;
    }
    ST_LOGD(h->log, MOD, "%s: retransmitting %zu blocks", h->s->name, h->n_unacked);
    int rc = st_stream_write(h->s, buf, n, 1000, err);
    return rc < 0 ? st_err_wrap(err, rc, "%s: retransmit", h->s->name) : 0;
}

/* The unit acknowledged everything below rseq. */
static void acked(st_klp_host *h, uint64_t rseq, uint64_t now)
{
    size_t k = 0;
    while (k < h->n_unacked && h->unacked[k].seq < rseq) {
        const sent_block *b = &h->unacked[k];
        if (!b->retransmitted && now >= b->sent_us) {
            /* RFC 6298 as serialqueue.c; the first sample is deliberately pessimistic. */
            uint64_t rtt = now - b->sent_us;
            if (h->srtt_us == 0) {
                h->srtt_us = rtt * 10;
                h->rttvar_us = rtt / 2;
            } else {
                uint64_t d = rtt > h->srtt_us ? rtt - h->srtt_us : h->srtt_us - rtt;
                h->rttvar_us = (3 * h->rttvar_us + d) / 4;
                h->srtt_us = (7 * h->srtt_us + rtt) / 8;
            }
            uint64_t rto = h->srtt_us + (4 * h->rttvar_us > 1000 ? 4 * h->rttvar_us : 1000);
            h->rto_us = rto < RTO_MIN_US ? RTO_MIN_US : rto > RTO_MAX_US ? RTO_MAX_US : rto;
        }
        k++;
    }
    memmove(h->unacked, h->unacked + k, (h->n_unacked - k) * sizeof *h->unacked);
    h->n_unacked -= k;
    h->receive_seq = rseq;
    h->rtx_at_us = h->n_unacked ? now + h->rto_us : 0;
}

static void queue_msg(st_klp_host *h, const uint8_t *m, size_t n)
{
    if (h->q_len == RXQ_CAP) {
        h->q_head = (h->q_head + 1) % RXQ_CAP;
        h->q_len--;
        h->st.queue_overflows++;
    }
    rx_msg *r = &h->q[(h->q_head + h->q_len) % RXQ_CAP];
    r->len = (uint8_t)n;
    memcpy(r->data, m, n);
    h->q_len++;
}

static int handle_block(st_klp_host *h, const uint8_t *b, uint64_t now, st_err *err)
{
    h->st.blocks_received++;
    uint64_t rseq = h->receive_seq + ((st_klp_block_seq(b) - h->receive_seq) & 15);
    size_t clen = st_klp_block_content_len(b);
    if (rseq != h->receive_seq) {
        if (rseq > h->send_seq) {
            if (h->synced) {
                ST_LOGD(h->log, MOD, "%s: block acks a block never sent", h->s->name);
                return 0;
            }
            /* First contact: the unit expects another number (5.3). It dropped what we
             * sent; give those blocks the numbers it expects and send them again. */
            h->st.resyncs++;
            h->receive_seq = rseq;
            h->send_seq = rseq;
            for (size_t i = 0; i < h->n_unacked; i++) {
                sent_block *sb = &h->unacked[i];
                uint8_t content[ST_KLP_CONTENT_MAX];
                size_t cl = (size_t)sb->len - 5;
                memcpy(content, sb->data + 2, cl);
                sb->seq = h->send_seq++;
                st_klp_block_encode((uint8_t)sb->seq, content, cl, sb->data);
            }
            h->ignore_nak_seq = h->send_seq;
            if (h->n_unacked) {
                int rc = retransmit(h, err);
                if (rc)
                    return rc;
                h->rtx_at_us = now + h->rto_us;
            }
        } else {
            acked(h, rseq, now);
        }
    } else if (clen == 0 && h->n_unacked && rseq > h->ignore_nak_seq) {
        /* A repeated "next expected" number: a nak. One burst, then ignore naks until
         * everything outstanding now is acked. */
        h->ignore_nak_seq = h->send_seq;
        int rc = retransmit(h, err);
        if (rc)
            return rc;
        h->rtx_at_us = now + h->rto_us;
    }
    h->synced = true;
    if (clen)
        queue_msg(h, st_klp_block_content(b), clen);
    return 0;
}

/* Read what the unit sent for up to wait_ms, process it, and run the retransmit timer. */
static int pump(st_klp_host *h, unsigned wait_ms, st_err *err)
{
    uint64_t now = st_now_us();
    if (h->rtx_at_us && now >= h->rtx_at_us && h->n_unacked) {
        int rc = retransmit(h, err);
        if (rc)
            return rc;
        h->rto_us = h->rto_us * 2 > RTO_MAX_US ? RTO_MAX_US : h->rto_us * 2;
        h->ignore_nak_seq = h->send_seq;
        h->rtx_at_us = now + h->rto_us;
    }
    if (h->rtx_at_us) {
        uint64_t left = h->rtx_at_us > now ? (h->rtx_at_us - now + 999) / 1000 : 0;
        if (left < wait_ms)
            wait_ms = (unsigned)left;
    }
    int n = st_stream_read(h->s, h->in + h->in_len, sizeof h->in - h->in_len, wait_ms, err);
    if (n < 0)
        return st_err_wrap(err, n, "%s: read", h->s->name);
    h->in_len += (size_t)n;
    now = st_now_us();
    for (;;) {
        st_klp_check c = st_klp_block_check(&h->need_sync, h->in, h->in_len);
        if (c.kind == ST_KLP_NEED_MORE)
            break;
        if (c.kind == ST_KLP_BLOCK) {
            int rc = handle_block(h, h->in, now, err);
            if (rc)
                return rc;
        } else if (c.reason != ST_KLP_DROP_STRAY) {
            h->st.bytes_invalid += c.len;
        }
        memmove(h->in, h->in + c.len, h->in_len - c.len);
        h->in_len -= c.len;
    }
    return 0;
}

static bool window_full(const st_klp_host *h, size_t next_len)
{
    if (h->n_unacked >= WINDOW_BLOCKS)
        return true;
    return h->receive_window && unacked_bytes(h) + next_len > h->receive_window;
}

int st_klp_host_send(st_klp_host *h, const uint8_t *msg, size_t n, unsigned timeout_ms,
                     st_err *err)
{
    if (n > ST_KLP_CONTENT_MAX)
        return st_err_set(err, ST_ERR_INVAL, "message of %zu bytes does not fit a block", n);
    st_deadline d = st_deadline_in_ms(timeout_ms);
    while (window_full(h, n + 5)) {
        if (st_deadline_passed(d))
            return st_err_set(err, ST_ERR_TIMEOUT,
                              "%s: the unit acknowledged nothing for %u ms (%zu blocks waiting)",
                              h->s->name, timeout_ms, h->n_unacked);
        int rc = pump(h, (unsigned)st_deadline_remaining_ms(d), err);
        if (rc)
            return rc;
    }
    sent_block *b = &h->unacked[h->n_unacked];
    b->seq = h->send_seq++;
    b->len = (uint8_t)st_klp_block_encode((uint8_t)b->seq, msg, n, b->data);
    b->retransmitted = false;
    b->sent_us = st_now_us();
    h->n_unacked++;
    h->st.blocks_sent++;
    if (!h->rtx_at_us)
        h->rtx_at_us = b->sent_us + h->rto_us;
    int rc = st_stream_write(h->s, b->data, b->len, timeout_ms ? timeout_ms : 1, err);
    return rc < 0 ? st_err_wrap(err, rc, "%s: write", h->s->name) : 0;
}

int st_klp_host_send_text(st_klp_host *h, const char *text, unsigned timeout_ms, st_err *err)
{
    uint8_t m[ST_KLP_CONTENT_MAX];
    int n = st_klp_msg_encode_text(cur_dict(h), text, m, sizeof m, err);
    if (n < 0)
        return n;
    return st_klp_host_send(h, m, (size_t)n, timeout_ms, err);
}

/* Pop the next message the dictionary knows. 1 / 0 (queue empty). */
static int pop(st_klp_host *h, st_klp_decoded *out)
{
    while (h->q_len) {
        rx_msg *r = &h->q[h->q_head];
        h->q_head = (h->q_head + 1) % RXQ_CAP;
        h->q_len--;
        memcpy(h->cur, r->data, r->len);
        st_err e;
        if (st_klp_msg_decode(cur_dict(h), true, h->cur, r->len, out, &e) > 0)
            return 1;
        h->st.unknown_messages++;
        ST_LOGD(h->log, MOD, "%s: skipped a message: %s", h->s->name, e.msg);
    }
    return 0;
}

int st_klp_host_recv(st_klp_host *h, unsigned timeout_ms, st_klp_decoded *out, st_err *err)
{
    st_deadline d = st_deadline_in_ms(timeout_ms);
    for (;;) {
        if (pop(h, out))
            return 1;
        int left = st_deadline_remaining_ms(d);
        if (left == 0)
            return 0;
        int rc = pump(h, (unsigned)left, err);
        if (rc)
            return rc;
    }
}

int st_klp_host_flush(st_klp_host *h, unsigned timeout_ms, st_err *err)
{
    st_deadline d = st_deadline_in_ms(timeout_ms);
    while (h->n_unacked) {
        int left = st_deadline_remaining_ms(d);
        if (left == 0)
            return st_err_set(err, ST_ERR_TIMEOUT, "%s: %zu blocks unacknowledged after %u ms",
                              h->s->name, h->n_unacked, timeout_ms);
        int rc = pump(h, (unsigned)left, err);
        if (rc)
            return rc;
    }
    return 0;
}

int st_klp_host_query(st_klp_host *h, const char *cmd_text, const char *resp,
                      unsigned timeout_ms, st_klp_decoded *out, st_err *err)
{
    st_deadline d = st_deadline_in_ms(timeout_ms);
    if (!st_klp_dict_response(cur_dict(h), resp))
        return st_err_set(err, ST_ERR_NOTFOUND, "the unit's dictionary has no response \"%s\"",
                          resp);
    /* Older messages are not the answer. */
    while (pop(h, out))
        ;
    for (;;) {
        int left = st_deadline_remaining_ms(d);
        if (left == 0)
            return st_err_set(err, ST_ERR_TIMEOUT, "%s: no %s answered %s within %u ms",
                              h->s->name, resp, cmd_text, timeout_ms);
        int rc = st_klp_host_send_text(h, cmd_text, (unsigned)left, err);
        if (rc)
            return rc;
        st_deadline retry = st_deadline_in_ms(QUERY_RETRY_MS);
        for (;;) {
            left = st_deadline_remaining_ms(d);
            int rl = st_deadline_remaining_ms(retry);
            if (left == 0 || rl == 0)
                break;
            rc = st_klp_host_recv(h, (unsigned)(rl < left ? rl : left), out, err);
            if (rc < 0)
                return rc;
            if (rc == 1 && strcmp(out->msg->name, resp) == 0)
                return 0;
        }
    }
}

int st_klp_host_identify(st_klp_host *h, unsigned timeout_ms, st_err *err)
{
    st_deadline d = st_deadline_in_ms(timeout_ms);
    size_t cap = 4096, got = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    st_klp_dict *saved = h->dict;
    h->dict = NULL; /* identify goes by the fixed ids */
    int rc = 0;
    unsigned requests = 0;
    for (;;) {
        if (st_deadline_passed(d)) {
            rc = st_err_set(err, ST_ERR_TIMEOUT,
                            "%s: identify: %zu dictionary bytes after %u requests in %u ms",
                            h->s->name, got, requests, timeout_ms);
            break;
        }
        uint8_t m[16];
        st_klp_value v[2] = { { .u = (uint32_t)got }, { .u = IDENTIFY_CHUNK } };
        int n = st_klp_msg_encode(st_klp_dict_command(h->boot, "identify"), v, 2, m, sizeof m,
                                  err);
        if (n < 0 || (rc = st_klp_host_send(h, m, (size_t)n,
                                            (unsigned)st_deadline_remaining_ms(d), err)) != 0) {
            rc = n < 0 ? n : rc;
            break;
        }
        requests++;
        st_deadline retry = st_deadline_in_ms(IDENTIFY_RETRY_MS);
        bool done = false, advanced = false;
        while (!advanced && !st_deadline_passed(retry) && !st_deadline_passed(d)) {
            st_klp_decoded r;
            int left = st_deadline_remaining_ms(retry);
            rc = st_klp_host_recv(h, (unsigned)left, &r, err);
            if (rc < 0)
                break;
            if (rc == 0)
                continue; /* the retry deadline has passed: ask again */
            rc = 0;
            if (strcmp(r.msg->name, "identify_response") != 0)
                continue;
            const st_klp_value *off = st_klp_decoded_get(&r, "offset");
            const st_klp_value *data = st_klp_decoded_get(&r, "data");
            if (!off || !data || off->u != got)
                continue; /* an answer to an earlier request: ignore (Klipper does) */
            if (data->len == 0) {
                done = true;
                advanced = true;
                break;
            }
            if (got + data->len > ST_KLP_DICT_ZMAX) {
                rc = st_err_set(err, ST_ERR_PROTO, "%s: identify: dictionary over %u bytes",
                                h->s->name, ST_KLP_DICT_ZMAX);
                break;
            }
            if (got + data->len > cap) {
                uint8_t *nb = realloc(buf, cap * 2);
                if (!nb) {
                    rc = st_err_set(err, ST_ERR_NOMEM, "out of memory");
                    break;
                }
                buf = nb;
                cap *= 2;
            }
            memcpy(buf + got, data->buf, data->len);
            got += data->len;
            advanced = true;
        }
        if (rc)
            break;
        if (done)
            break;
    }
    if (rc == 0) {
        st_klp_dict *nd = NULL;
        rc = st_klp_dict_from_zlib(buf, got, NULL, &nd, err);
        if (rc) {
            st_err_prefix(err, "%s: identify", h->s->name);
        } else {
            st_klp_dict_free(saved);
            saved = NULL;
            h->dict = nd;
            free(h->raw);
            h->raw = buf;
            h->raw_len = got;
            buf = NULL;
            int64_t w = st_klp_dict_config_int(nd, "RECEIVE_WINDOW", 0);
            h->receive_window = w > 0 && w < 65536 ? (unsigned)w : 0;
            ST_LOGI(h->log, MOD, "%s: dictionary of %zu bytes in %u requests", h->s->name,
                    got, requests);
        }
    }
    if (rc)
        h->dict = saved;
    free(buf);
    return rc;
}

/* ---- checks ---------------------------------------------------------------------------- */

#define ALIVE_POLL_MS 200u /* far below the 25 s a 32-bit clock at 170 MHz takes to wrap */

/* One answer and the host time in the middle of its round trip. */
static int timed_query(st_klp_host *h, const char *cmd, const char *resp, st_klp_decoded *d,
                       uint64_t *mid_us, uint64_t *rtt_us, st_err *err)
{
    uint64_t t0 = st_now_us();
    int rc = st_klp_host_query(h, cmd, resp, 1000, d, err);
    uint64_t t1 = st_now_us();
    *mid_us = t0 + (t1 - t0) / 2;
    if (rtt_us)
        *rtt_us = t1 - t0;
    return rc;
}

/* The unit's uptime against host time: the best of a few get_uptime round trips (the
 * shortest bounds the error to half of it, as Klipper's clocksync filters by RTT), so a
 * host that was descheduled during one query does not skew the rate. */
#define UPTIME_TRIES 4
static int uptime_point(st_klp_host *h, uint64_t *ticks, uint64_t *host_us, uint64_t *rtt_best,
                        st_err *err)
{
    *rtt_best = UINT64_MAX;
    for (int i = 0; i < UPTIME_TRIES; i++) {
        st_klp_decoded d;
        uint64_t mid, rtt;
        int rc = timed_query(h, "get_uptime", "uptime", &d, &mid, &rtt, err);
        if (rc)
            return rc;
        if (rtt < *rtt_best) {
            *rtt_best = rtt;
            *host_us = mid;
            const st_klp_value *hi = st_klp_decoded_get(&d, "high"), *lo = st_klp_decoded_get(&d, "clock");
            *ticks = (uint64_t)(hi ? hi->u : 0) << 32 | (lo ? lo->u : 0);
        }
    }
    return 0;
}


int st_klp_host_alive(st_klp_host *h, unsigned duration_ms, st_klp_alive *out, st_err *err)
{
    memset(out, 0, sizeof *out);
    if (!h->dict)
        return st_err_set(err, ST_ERR_INVAL, "%s: alive before identify", h->s->name);
    int64_t freq = st_klp_dict_config_int(h->dict, "CLOCK_FREQ", 0);
    st_klp_decoded d;
    uint64_t host0, host1, mid, rtt0, rtt1;
    int rc = uptime_point(h, &out->uptime0, &host0, &rtt0, err);
    if (rc)
        return st_err_wrap(err, rc, "alive");
    uint64_t t = out->uptime0;
    st_deadline end = st_deadline_in_ms(duration_ms);
    while (!st_deadline_passed(end)) {
        /* Wait on the link (answers and naks still move) rather than sleeping. */
        int left = st_deadline_remaining_ms(end);
        unsigned wait = (unsigned)left < ALIVE_POLL_MS ? (unsigned)left : ALIVE_POLL_MS;
        st_deadline w = st_deadline_in_ms(wait);
        while (!st_deadline_passed(w)) {
            if ((rc = pump(h, (unsigned)st_deadline_remaining_ms(w), err)) != 0)
                return st_err_wrap(err, rc, "alive");
        }
        if ((rc = timed_query(h, "get_clock", "clock", &d, &mid, NULL, err)) != 0)
            return st_err_wrap(err, rc, "alive");
        /* Extend the 32-bit clock by its difference from the last value (Klipper's
         * clocksync does the same). */
        uint32_t c = st_klp_decoded_get(&d, "clock") ? st_klp_decoded_get(&d, "clock")->u : 0;
        t += (uint32_t)(c - (uint32_t)t);
        out->clock_reads++;
    }
    if ((rc = uptime_point(h, &out->uptime1, &host1, &rtt1, err)) != 0)
        return st_err_wrap(err, rc, "alive");
    out->host_us = host1 - host0;
    out->rtt_us = rtt0 > rtt1 ? rtt0 : rtt1;
    uint64_t dt = out->uptime1 >= out->uptime0 ? out->uptime1 - out->uptime0 : 0;
    /* The followed clock must lie between the two uptimes: a unit that rebooted, or whose
     * clock and uptime disagree, is not alive in the sense the check means. */
    if (out->uptime1 < out->uptime0 || t > out->uptime1)
        return st_err_set(err, ST_ERR_PROTO,
                          "alive: %s: uptime went from %" PRIu64 " to %" PRIu64
                          " ticks while get_clock reached %" PRIu64,
                          h->s->name, out->uptime0, out->uptime1, t);
    out->rate_hz = out->host_us ? (double)dt / ((double)out->host_us / 1e6) : 0;
    out->ratio = freq > 0 ? out->rate_hz / (double)freq : 0;
    return 0;
}

int st_klp_host_sample(st_klp_host *h, const char *start_cmd, const char *stop_cmd,
                       const char *resp, const char *field, unsigned count, unsigned timeout_ms,
                       st_klp_stats *out, st_err *err)
{
    memset(out, 0, sizeof *out);
    const st_klp_msg *m = st_klp_dict_response(cur_dict(h), resp);
    if (!m)
        return st_err_set(err, ST_ERR_NOTFOUND, "the unit's dictionary has no response \"%s\"",
                          resp);
    bool has_field = false, has_clock = false;
    for (size_t i = 0; i < m->n_params; i++) {
        if (strcmp(m->params[i].name, field) == 0 && !st_klp_ptype_is_bytes(m->params[i].type))
            has_field = true;
        if (strcmp(m->params[i].name, "clock") == 0)
            has_clock = true;
    }
    if (!has_field)
        return st_err_set(err, ST_ERR_NOTFOUND, "%s has no integer field \"%s\" (format \"%s\")",
                          resp, field, m->format);
    st_klp_decoded d;
    while (pop(h, &d))
        ; /* earlier messages are not samples of this run */
    int rc = st_klp_host_send_text(h, start_cmd, timeout_ms, err);
    if (rc)
        return rc;
    double mean = 0, m2 = 0;
    uint32_t last_clock = 0, min_step = UINT32_MAX;
    uint32_t *steps = calloc(count ? count : 1, sizeof *steps);
    if (!steps)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    unsigned nsteps = 0;
    st_deadline end = st_deadline_in_ms(timeout_ms);
    while (out->n < count) {
        int left = st_deadline_remaining_ms(end);
        if (left == 0)
            break;
        rc = st_klp_host_recv(h, (unsigned)left, &d, err);
        if (rc < 0) {
            free(steps);
            return rc;
        }
        if (rc == 0 || strcmp(d.msg->name, resp) != 0)
            continue;
        const st_klp_value *v = st_klp_decoded_get(&d, field);
        double x = (double)v->i; /* the signed reading for %i/%hi, else the unsigned value */
        out->n++;
        if (out->n == 1 || x < out->min)
            out->min = x;
        if (out->n == 1 || x > out->max)
            out->max = x;
        double delta = x - mean; /* Welford */
        mean += delta / out->n;
        m2 += delta * (x - mean);
        if (has_clock) {
            uint32_t c = st_klp_decoded_get(&d, "clock")->u;
            if (out->n > 1) {
                uint32_t step = c - last_clock;
                steps[nsteps++] = step;
                if (step && step < min_step)
                    min_step = step;
            }
            last_clock = c;
        }
    }
    out->mean = mean;
    out->stddev = out->n ? sqrt(m2 / out->n) : 0;
    for (unsigned i = 0; i < nsteps; i++)
        out->gaps += min_step != UINT32_MAX && steps[i] > min_step + min_step / 2;
    free(steps);
    int stop_rc = stop_cmd ? st_klp_host_send_text(h, stop_cmd, 1000, err) : 0;
    if (out->n < count)
        return st_err_set(err, ST_ERR_TIMEOUT, "%s: %u of %u %s within %u ms", h->s->name,
                          out->n, count, resp, timeout_ms);
    return stop_rc;
}
