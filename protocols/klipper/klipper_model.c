/* Klipper MCU device model (klipper_model.h). The receive state machine follows Klipper's
 * src/command.c command_find_block / command_find_and_dispatch (PROTOCOL.md 5.2). */
#include "protocols/klipper/klipper_model.h"

#include <stdlib.h>
#include <string.h>

#include "station/core/clock.h"

#define RX_CAP 256u    /* more than the firmware's 128-byte USB receive buffer */
#define TX_CAP 4096u   /* bytes waiting for the host; a slow reader loses samples */
#define MAX_CATCHUP 64u /* samples generated at most per tx call after a long pause */

struct st_klp_model {
    st_stream_model base; /* first */
    st_klp_model_cfg cfg;
    uint8_t *z;
    st_klp_dict *dict;
    uint32_t clock_freq;
    /* receive */
    uint8_t rx[RX_CAP];
    size_t rx_len;
    bool need_sync, nak_sent;
    uint8_t next_seq;
    /* transmit */
    uint8_t tx[TX_CAP];
    size_t tx_len;
    unsigned blocks_out;
    /* MCU state */
    uint64_t boot_us;
    bool configured, shutdown;
    uint32_t shutdown_reason; /* static_string_id of the reason */
    uint32_t config_crc;
    bool streaming;
    uint64_t next_sample_us;
    unsigned sample_no;
    uint32_t rng;
    st_klp_model_faults f;
    st_klp_model_stats st;
};

static uint64_t ticks(const st_klp_model *m, uint64_t now)
{
    uint64_t us = now > m->boot_us ? now - m->boot_us : 0;
    /* us * freq / 1e6 without overflow and without __int128 (absent on 32-bit targets):
     * whole seconds, then the remainder (< 1e6 * 2^32, fits 64 bits); the same value. */
    return us / 1000000u * m->clock_freq + us % 1000000u * m->clock_freq / 1000000u;
}

static uint32_t rnd(st_klp_model *m)
{
    uint32_t x = m->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return m->rng = x;
}

/* Queue one block with content c (the firmware's seq: the next host block it expects). */
static void send_block(st_klp_model *m, const uint8_t *c, size_t n)
{
    uint8_t b[ST_KLP_BLOCK_MAX];
    size_t len = st_klp_block_encode(m->next_seq, c, n, b);
    if (!len || m->tx_len + len > TX_CAP)
        return; /* the firmware would block; a model that cannot keep up loses output */
    m->blocks_out++;
    if (m->f.bad_crc_every && m->blocks_out % m->f.bad_crc_every == 0)
        b[len - 2] ^= 0x5A;
    memcpy(m->tx + m->tx_len, b, len);
    m->tx_len += len;
}

static void send_ack(st_klp_model *m)
{
    send_block(m, NULL, 0);
}

/* Send response `name` with n values; a message the build lacks, or one that does not fit
 * a block, is silently not sent (as the firmware's failed encode, PROTOCOL.md 4.1). */
static bool respond(st_klp_model *m, const char *name, const st_klp_value *v, size_t n)
{
    const st_klp_msg *r = st_klp_dict_response(m->dict, name);
    if (!r)
        return false;
    uint8_t c[ST_KLP_CONTENT_MAX];
    int k = st_klp_msg_encode(r, v, n, c, sizeof c, NULL);
    if (k < 0)
        return false;
    send_block(m, c, (size_t)k);
    return true;
}

static uint32_t static_string(st_klp_model *m, const char *text)
{
    /* Reverse enumeration lookup: scan the plausible range (ids are small). */
    for (int64_t v = 0; v < 1024; v++) {
        const char *t = st_klp_dict_enum_text(m->dict, "static_string_id", v);
        if (t && strcmp(t, text) == 0)
            return (uint32_t)v;
    }
    return 0;
}

static void do_shutdown(st_klp_model *m, const char *reason, uint64_t now)
{
    if (m->shutdown)
        return;
    m->shutdown = true;
    m->st.shutdown = true;
    m->shutdown_reason = static_string(m, reason);
    m->streaming = false;
    st_klp_value v[2] = { { .u = (uint32_t)ticks(m, now) },
                          { .u = m->shutdown_reason } };
    respond(m, "shutdown", v, 2);
}

static bool allowed_in_shutdown(const char *name)
{
    static const char *const ok[] = { "identify", "get_uptime", "get_clock", "get_config",
                                      "emergency_stop", "clear_shutdown", "debug_read",
                                      "debug_write", "debug_ping", "debug_nop", "reset",
                                      "config_reset", "get_canbus_id", "get_canbus_status" };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (strcmp(name, ok[i]) == 0)
            return true;
    return false;
}

static uint32_t val(const st_klp_decoded *d, const char *name)
{
    const st_klp_value *v = st_klp_decoded_get(d, name);
    return v ? v->u : 0;
}

static void run_command(st_klp_model *m, const st_klp_decoded *d, uint64_t now)
{
    const char *name = d->msg->name;
    m->st.commands++;
    if (m->shutdown && !allowed_in_shutdown(name)) {
        st_klp_value v = { .u = m->shutdown_reason };
        respond(m, "is_shutdown", &v, 1);
        return;
    }
    uint64_t t = ticks(m, now);
    if (strcmp(name, "identify") == 0) {
        m->st.identify_requests++;
        uint32_t off = val(d, "offset"), count = val(d, "count");
        size_t avail = off < m->cfg.dict_z_len ? m->cfg.dict_z_len - off : 0;
        if (count > avail)
            count = (uint32_t)avail;
        st_klp_value v[2] = { { .u = off }, { .buf = m->z + (avail ? off : 0), .len = count } };
        respond(m, "identify_response", v, 2);
    } else if (strcmp(name, "get_uptime") == 0) {
        st_klp_value v[2] = { { .u = (uint32_t)(t >> 32) }, { .u = (uint32_t)t } };
        respond(m, "uptime", v, 2);
    } else if (strcmp(name, "get_clock") == 0) {
        st_klp_value v = { .u = (uint32_t)t };
        respond(m, "clock", &v, 1);
    } else if (strcmp(name, "get_config") == 0) {
        st_klp_value v[4] = { { .u = m->configured }, { .u = m->config_crc },
                              { .u = m->shutdown }, { .u = 0 } };
        respond(m, "config", v, 4);
    } else if (strcmp(name, "finalize_config") == 0) {
        m->configured = true;
        m->config_crc = val(d, "crc");
    } else if (strcmp(name, "emergency_stop") == 0) {
        do_shutdown(m, "Command request", now);
    } else if (strcmp(name, "clear_shutdown") == 0) {
        m->shutdown = false;
        m->st.shutdown = false;
    } else if (strcmp(name, "debug_ping") == 0) {
        const st_klp_value *p = st_klp_decoded_get(d, "data");
        st_klp_value v = { .buf = p ? p->buf : NULL, .len = p ? p->len : 0 };
        respond(m, "pong", &v, 1);
    } else if (strcmp(name, "cartographer_stream") == 0) {
        m->streaming = val(d, "en") != 0;
        m->next_sample_us = now;
    } else if (strcmp(name, "get_canbus_id") == 0) {
        int nid = m->cfg.nodeid ? m->cfg.nodeid(m->cfg.nodeid_ctx) : 0;
        st_klp_value v[2] = { { .buf = m->cfg.can_uuid, .len = 6 },
                              { .u = nid < 0 ? 0u : (uint32_t)nid } };
        respond(m, "canbus_id", v, 2);
    } else if (strcmp(name, "reset") == 0) {
        st_klp_model_reset(m);
    }
    /* Anything else the build knows is accepted and does nothing here (no oids). */
}

static void run_block(st_klp_model *m, const uint8_t *c, size_t n, uint64_t now)
{
    size_t pos = 0;
    while (pos < n) {
        st_klp_decoded d;
        int k = st_klp_msg_decode(m->dict, false, c + pos, n - pos, &d, NULL);
        if (k <= 0) {
            /* Unknown id -> "Invalid command"; bad parameters -> "Command parser error". */
            uint32_t id;
            int ik = st_klp_vlq_decode(c + pos, n - pos, &id);
            bool known = ik > 0 && st_klp_dict_command_by_id(m->dict, (int32_t)id);
            do_shutdown(m, known ? "Command parser error" : "Invalid command", now);
            return;
        }
        run_command(m, &d, now);
        pos += (size_t)k;
    }
}

static void model_rx(st_stream_model *sm, const uint8_t *buf, size_t n, uint64_t now)
{
    st_klp_model *m = (st_klp_model *)sm;
    if (m->f.silent)
        return;
    while (n) {
        size_t take = RX_CAP - m->rx_len < n ? RX_CAP - m->rx_len : n;
        memcpy(m->rx + m->rx_len, buf, take);
        m->rx_len += take;
        buf += take;
        n -= take;
        for (;;) {
            st_klp_check c = st_klp_block_check(&m->need_sync, m->rx, m->rx_len);
            if (c.kind == ST_KLP_NEED_MORE)
                break;
            if (c.kind == ST_KLP_BLOCK) {
                m->st.blocks_received++;
                m->nak_sent = false;
                uint8_t seq = st_klp_block_seq(m->rx);
                if (seq != m->next_seq) {
                    m->st.naks_sent++;
                    send_ack(m); /* same bytes as an ack: the host sees a repeat = nak */
                } else {
                    m->next_seq = (uint8_t)((seq + 1) & 15);
                    run_block(m, st_klp_block_content(m->rx), st_klp_block_content_len(m->rx),
                              now);
                    send_ack(m);
                }
            } else if (c.reason != ST_KLP_DROP_STRAY && !m->nak_sent) {
                m->nak_sent = true;
                m->st.naks_sent++;
                send_ack(m);
            }
            memmove(m->rx, m->rx + c.len, m->rx_len - c.len);
            m->rx_len -= c.len;
        }
        if (m->rx_len == RX_CAP) {
            /* A full buffer holding no block: junk. The firmware resyncs the same way. */
            m->rx_len = 0;
            m->need_sync = true;
        }
    }
}

static void sample(st_klp_model *m, uint64_t at)
{
    m->sample_no++;
    if (m->f.drop_every && m->sample_no % m->f.drop_every == 0) {
        m->st.samples_dropped++;
        return;
    }
    uint32_t data = ST_KLP_MODEL_DATA_NOMINAL, temp = ST_KLP_MODEL_TEMP_NOMINAL;
    if (m->f.sensor == ST_KLP_SENSOR_NORMAL) {
        data = data - ST_KLP_MODEL_DATA_NOISE + rnd(m) % (2 * ST_KLP_MODEL_DATA_NOISE + 1);
        temp = temp - ST_KLP_MODEL_TEMP_NOISE + rnd(m) % (2 * ST_KLP_MODEL_TEMP_NOISE + 1);
    }
    if (m->f.temp_set)
        temp = m->f.temp;
    st_klp_value v[3] = { { .u = (uint32_t)ticks(m, at) }, { .u = data }, { .u = temp } };
    size_t before = m->tx_len;
    if (respond(m, "cartographer_data", v, 3) && m->tx_len > before)
        m->st.samples_sent++;
    else
        m->st.samples_dropped++;
}

static uint64_t period_us(const st_klp_model *m)
{
    uint32_t hz = m->cfg.sample_hz ? m->cfg.sample_hz : ST_KLP_MODEL_SAMPLE_HZ;
    return 1000000u / hz ? 1000000u / hz : 1;
}

static size_t model_tx(st_stream_model *sm, uint8_t *buf, size_t cap, uint64_t now)
{
    st_klp_model *m = (st_klp_model *)sm;
    if (m->f.silent)
        return 0;
    if (m->streaming && !m->shutdown) {
        unsigned k = 0;
        while (m->next_sample_us <= now && k++ < MAX_CATCHUP) {
            sample(m, m->next_sample_us);
            m->next_sample_us += period_us(m);
        }
        if (m->next_sample_us <= now)
            m->next_sample_us = now + period_us(m); /* the host was away: samples are lost */
    }
    size_t n = m->tx_len < cap ? m->tx_len : cap;
    memcpy(buf, m->tx, n);
    memmove(m->tx, m->tx + n, m->tx_len - n);
    m->tx_len -= n;
    return n;
}

static uint64_t model_next(st_stream_model *sm)
{
    st_klp_model *m = (st_klp_model *)sm;
    if (m->f.silent)
        return UINT64_MAX;
    if (m->tx_len)
        return 0;
    if (m->streaming && !m->shutdown)
        return m->next_sample_us;
    return UINT64_MAX;
}

static const st_stream_model_ops model_ops = {
    .rx = model_rx, .tx = model_tx, .next_event_us = model_next, .line = NULL,
};

int st_klp_model_new(const st_klp_model_cfg *cfg, st_klp_model **out, st_err *err)
{
    st_klp_model *m = calloc(1, sizeof *m);
    if (!m)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    m->base.ops = &model_ops;
    m->cfg = *cfg;
    m->z = malloc(cfg->dict_z_len ? cfg->dict_z_len : 1);
    if (!m->z) {
        free(m);
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    }
    memcpy(m->z, cfg->dict_z, cfg->dict_z_len);
    m->cfg.dict_z = m->z;
    size_t used = 0;
    int rc = st_klp_dict_from_zlib(m->z, cfg->dict_z_len, &used, &m->dict, err);
    if (rc) {
        st_klp_model_free(m);
        return rc;
    }
    m->cfg.dict_z_len = used; /* identify serves exactly the stream, as the firmware */
    int64_t f = st_klp_dict_config_int(m->dict, "CLOCK_FREQ", 0);
    m->clock_freq = f > 0 && f <= UINT32_MAX ? (uint32_t)f : 1000000u;
    m->f = cfg->faults;
    m->rng = cfg->seed ? cfg->seed : 0x6361726Fu;
    st_klp_model_reset(m);
    *out = m;
    return 0;
}

void st_klp_model_free(st_klp_model *m)
{
    if (!m)
        return;
    st_klp_dict_free(m->dict);
    free(m->z);
    free(m);
}

st_stream_model *st_klp_model_stream(st_klp_model *m)
{
    return &m->base;
}

const st_klp_dict *st_klp_model_dict(const st_klp_model *m)
{
    return m->dict;
}

void st_klp_model_reset(st_klp_model *m)
{
    m->rx_len = 0;
    m->tx_len = 0;
    m->need_sync = m->nak_sent = false;
    m->next_seq = 0;
    m->boot_us = st_now_us();
    m->configured = m->shutdown = m->streaming = false;
    m->st.shutdown = false;
    m->config_crc = 0;
    m->sample_no = 0;
    /* "starting" goes out at boot; a host usually misses it (PROTOCOL.md 8.3). */
    respond(m, "starting", NULL, 0);
}

void st_klp_model_set_faults(st_klp_model *m, const st_klp_model_faults *f)
{
    m->f = *f;
}

void st_klp_model_get_stats(const st_klp_model *m, st_klp_model_stats *out)
{
    *out = m->st;
}
