/* Katapult bootloader device model: see katapult_model.h; behaviour from reference §2.3
 * (Katapult src/command.c command_find_block/dispatch, src/flashcmd.c, src/stm32/flash.c). */
#include "protocols/katapult/katapult_model.h"

#include <stdlib.h>
#include <string.h>

#include "protocols/katapult/frame.h"
#include "station/core/text.h"

#define JUMP_DELAY_US 100000u /* flashcmd.c: complete_endtime = now + 100 ms */
#define OUTQ 16
#define RXBUF 2048
#define DEFAULT_VERSION "v0.0.1-110-gb0bf421"

typedef struct seg {
    uint64_t ready_at;
    size_t len, off;
    uint8_t data[ST_KAT_FRAME_MAX];
} seg;

struct st_katapult_model {
    st_stream_model base; /* first: the stream model handle */
    st_flash *flash;
    const st_mcu *mcu;
    st_katapult_model_cfg cfg;
    char mcu_name[64], version[64];
    uint32_t app_start, bs;
    size_t max_frame;
    bool timed;

    st_katapult_model_state state;
    uint64_t jump_at;
    bool need_valid; /* CF_NEED_VALID: a NACK was sent since the last valid frame */
    uint8_t rx[RXBUF];
    size_t rx_len;
    seg q[OUTQ];
    unsigned q_head, q_count;
    uint64_t dev_free_us;
    uint32_t page_count;
    uint32_t frames_seen, answers_made, blocks_seen;

    /* Faults, as absolute counter values (0 = off). */
    uint32_t drop_rx_at, corrupt_rx_at, drop_tx_at, corrupt_tx_at, power_at_block;
    unsigned nack_left, busy_left;
    bool silent_complete;
    st_katapult_model_stats stats;
};

static const st_stream_model_ops model_ops;

static st_katapult_model *from_base(st_stream_model *b)
{
    return (st_katapult_model *)b;
}

st_katapult_model *st_katapult_model_new(st_flash *flash, const st_katapult_model_cfg *cfg)
{
    if (!flash)
        return NULL;
    st_katapult_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->base.ops = &model_ops;
    m->flash = flash;
    m->mcu = st_flash_mcu(flash);
    if (cfg)
        m->cfg = *cfg;
    if (!m->cfg.proto_version)
        m->cfg.proto_version = 0x00010100;
    if (!m->cfg.block_size)
        m->cfg.block_size = 64;
    if (!m->cfg.app_offset)
        m->cfg.app_offset = m->mcu->katapult_app_offset;
    if (!m->cfg.bits_per_char)
        m->cfg.bits_per_char = 10;
    st_strlcpy(m->mcu_name, m->cfg.mcu ? m->cfg.mcu : m->mcu->name, sizeof m->mcu_name);
    st_strlcpy(m->version, m->cfg.sw_version ? m->cfg.sw_version : DEFAULT_VERSION,
               sizeof m->version);
    m->cfg.mcu = m->cfg.sw_version = NULL; /* the copies above are what counts */
    m->bs = m->cfg.block_size;
    m->app_start = m->mcu->flash_start + m->cfg.app_offset;
    /* MESSAGE_MAX is 128 for 64-byte blocks; larger blocks need room for one SEND_BLOCK. */
    m->max_frame = m->bs + 16 > ST_KAT_DEVICE_FRAME_MAX ? m->bs + 16 : ST_KAT_DEVICE_FRAME_MAX;
    m->timed = st_flash_timing(flash) == ST_TIMING_DATASHEET;
    if ((m->bs & (m->bs - 1)) || m->bs < 8 || m->bs > 512 || m->mcu->page_size % m->bs) {
        free(m);
        return NULL;
    }
    return m;
}

void st_katapult_model_free(st_katapult_model *m)
{
    free(m);
}

st_stream_model *st_katapult_model_stream(st_katapult_model *m)
{
    return &m->base;
}

st_katapult_model_state st_katapult_model_get_state(const st_katapult_model *m)
{
    return m->state;
}

void st_katapult_model_reboot(st_katapult_model *m)
{
    m->state = ST_KATAPULT_MODEL_RUNNING;
    m->need_valid = false;
    m->rx_len = 0;
    m->q_head = m->q_count = 0;
    m->page_count = 0;
    m->dev_free_us = 0;
}

bool st_katapult_model_app_valid(const st_katapult_model *m)
{
    uint8_t w[4];
    if (st_flash_read(m->flash, m->app_start, w, 4) != ST_FLASH_OK)
        return false;
    uint32_t v = st_kat_get_le32(w);
    return v != 0 && v != 0xFFFFFFFFu;
}

void st_katapult_model_get_stats(const st_katapult_model *m, st_katapult_model_stats *out)
{
    *out = m->stats;
    out->pages = m->page_count;
}

void st_katapult_model_fault_drop_rx(st_katapult_model *m, unsigned nth)
{
    m->drop_rx_at = nth ? m->frames_seen + nth : 0;
}

void st_katapult_model_fault_drop_tx(st_katapult_model *m, unsigned nth)
{
    m->drop_tx_at = nth ? m->answers_made + nth : 0;
}

void st_katapult_model_fault_corrupt_rx(st_katapult_model *m, unsigned nth)
{
    m->corrupt_rx_at = nth ? m->frames_seen + nth : 0;
}

void st_katapult_model_fault_corrupt_tx(st_katapult_model *m, unsigned nth)
{
    m->corrupt_tx_at = nth ? m->answers_made + nth : 0;
}

void st_katapult_model_fault_nack_storm(st_katapult_model *m, unsigned k)
{
    m->nack_left = k;
}

void st_katapult_model_fault_busy(st_katapult_model *m, unsigned k)
{
    m->busy_left = k;
}

void st_katapult_model_fault_silent_complete(st_katapult_model *m, bool on)
{
    m->silent_complete = on;
}

void st_katapult_model_fault_power_loss_at_block(st_katapult_model *m, unsigned nth)
{
    m->power_at_block = nth ? m->blocks_seen + nth : 0;
}

void st_katapult_model_fault_clear(st_katapult_model *m)
{
    m->drop_rx_at = m->corrupt_rx_at = m->drop_tx_at = m->corrupt_tx_at = 0;
    m->power_at_block = 0;
    m->nack_left = m->busy_left = 0;
    m->silent_complete = false;
}

static uint64_t wire_us(const st_katapult_model *m, size_t bytes)
{
    if (!m->timed || !m->cfg.baud)
        return 0;
    return ((uint64_t)bytes * m->cfg.bits_per_char * 1000000u + m->cfg.baud - 1) / m->cfg.baud;
}

/* Queue one answer. cost_us is the device time the command took (flash), rx_len the size
 * of the command frame (its wire time delays the answer too). Returns the ready time. */
static uint64_t respond(st_katapult_model *m, uint8_t code, const uint8_t *payload, size_t plen,
                        size_t rx_len, uint64_t cost_us, uint64_t now)
{
    uint8_t frame[ST_KAT_FRAME_MAX];
    size_t n = st_kat_frame_encode(code, payload, plen, frame, sizeof frame);
    uint64_t ready = now;
    if (m->timed) {
        uint64_t start = now > m->dev_free_us ? now : m->dev_free_us;
        ready = start + wire_us(m, rx_len) + m->cfg.turnaround_us + cost_us + wire_us(m, n);
        m->dev_free_us = ready;
        m->stats.device_us += ready - start;
    }
    if (code == ST_KAT_RSP_NACK)
        m->stats.nacks++;
    if (code == ST_KAT_RSP_ERROR)
        m->stats.errors++;
    m->answers_made++;
    if (m->answers_made == m->drop_tx_at)
        return ready;
    if (m->answers_made == m->corrupt_tx_at)
        frame[n - 4] ^= 0x01; /* CRC low byte */
    if (!n || m->q_count == OUTQ)
        return ready; /* transmit buffer full: the answer is lost, as on the wire */
    seg *s = &m->q[(m->q_head + m->q_count++) % OUTQ];
    s->ready_at = ready;
    s->len = n;
    s->off = 0;
    memcpy(s->data, frame, n);
    return ready;
}

static void ack(st_katapult_model *m, uint8_t cmd, const uint8_t *data, size_t dlen,
                size_t rx_len, uint64_t cost, uint64_t now)
{
    uint8_t p[ST_KAT_FRAME_MAX];
    st_kat_put_le32(p, cmd);
    if (dlen)
        memcpy(p + 4, data, dlen);
    respond(m, ST_KAT_RSP_ACK, p, 4 + dlen, rx_len, cost, now);
}

static void cmd_error(st_katapult_model *m, size_t rx_len, uint64_t cost, uint64_t now)
{
    respond(m, ST_KAT_RSP_ERROR, NULL, 0, rx_len, cost, now);
}

static bool blank(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0xFF)
            return false;
    return true;
}

/* flash_write_block (src/stm32/flash.c): 0 ok, < 0 refused (answered with 0xF2),
 * 1 power lost (the device is dead and answers nothing). */
static int write_block(st_katapult_model *m, uint32_t addr, const uint8_t *data, uint64_t *cost)
{
    *cost = 0;
    if (addr & (m->bs - 1))
        return -1;
    uint32_t psize = m->mcu->page_size, page = addr - (addr - m->mcu->flash_start) % psize;
    if (!st_flash_in_main(m->flash, page, psize))
        return -1;
    uint8_t *cur = malloc(psize);
    if (!cur)
        return -1;
    int rc = 0;
    bool need_erase = false;
    if (st_flash_read(m->flash, page, cur, psize) != ST_FLASH_OK) {
        rc = -1;
        goto out;
    }
    const uint8_t *blk = cur + (addr - page);
    if (page == addr) {
        if (blank(cur, psize)) {
            /* already erased */
        } else if (memcmp(data, blk, m->bs) == 0 && blank(cur + m->bs, psize - m->bs)) {
            m->stats.blocks_resent++; /* retransmitted first block of a page */
            goto out;
        } else {
            need_erase = true;
        }
        m->page_count++;
    } else if (!blank(blk, m->bs)) {
        if (memcmp(data, blk, m->bs) == 0)
            m->stats.blocks_resent++; /* retransmitted block */
        else
            rc = -2; /* out of order: block not erased */
        goto out;
    }
    uint64_t c = 0;
    int fr = ST_FLASH_OK;
    if (need_erase) {
        fr = st_flash_erase_page(m->flash, page, &c);
        *cost += c;
    }
    if (fr == ST_FLASH_OK) {
        fr = st_flash_program(m->flash, addr, data, m->bs, &c);
        *cost += c;
    }
    if (fr == ST_FLASH_ERR_POWER_LOST || st_flash_power_lost(m->flash)) {
        rc = 1;
        goto out;
    }
    uint8_t back[512];
    if (fr != ST_FLASH_OK || st_flash_read(m->flash, addr, back, m->bs) != ST_FLASH_OK ||
        memcmp(back, data, m->bs) != 0)
        rc = -3; /* "Failed to write to flash?!" */
    else
        m->stats.blocks_written++;
out:
    free(cur);
    return rc;
}

static void cmd_connect(st_katapult_model *m, size_t rx_len, uint64_t now)
{
    uint8_t p[ST_KAT_FRAME_MAX] = {0};
    size_t ml = strlen(m->mcu_name), vl = strlen(m->version);
    size_t mw = (ml + 3) / 4, vw = (vl + 3) / 4;
    st_kat_put_le32(p, m->cfg.proto_version);
    st_kat_put_le32(p + 4, m->app_start);
    st_kat_put_le32(p + 8, m->bs);
    memcpy(p + 12, m->mcu_name, ml);
    size_t len = 12 + mw * 4;
    if ((m->cfg.proto_version & 0xffffff) >= 0x010100) {
        /* 1.1.0: one zero word, then the version string (flashcmd.c command_connect). */
        memcpy(p + len + 4, m->version, vl);
        len += 4 + vw * 4;
    }
    ack(m, ST_KAT_CMD_CONNECT, p, len, rx_len, 0, now);
}

static void dispatch(st_katapult_model *m, const uint8_t *f, size_t flen, uint64_t now)
{
    uint8_t cmd = st_kat_frame_code(f);
    const uint8_t *pl = st_kat_frame_payload(f);
    size_t words = f[3];
    m->stats.frames_rx++;
    if (m->nack_left) {
        m->nack_left--;
        respond(m, ST_KAT_RSP_NACK, NULL, 0, flen, 0, now);
        return;
    }
    if (m->busy_left) {
        m->busy_left--;
        respond(m, ST_KAT_RSP_BUSY, NULL, 0, flen, 0, now);
        return;
    }
    switch (cmd) {
    case ST_KAT_CMD_CONNECT:
        cmd_connect(m, flen, now);
        return;
    case ST_KAT_CMD_SEND_BLOCK: {
        m->blocks_seen++;
        if (words != m->bs / 4 + 1)
            break;
        uint32_t addr = st_kat_get_le32(pl);
        if (addr < m->app_start)
            break;
        if (m->power_at_block && m->blocks_seen == m->power_at_block)
            st_flash_fault_power_loss_after(m->flash, m->bs / 2);
        uint64_t cost;
        int rc = write_block(m, addr, pl + 4, &cost);
        if (rc == 1) {
            m->state = ST_KATAPULT_MODEL_DEAD;
            m->q_count = 0;
            return;
        }
        if (rc < 0) {
            cmd_error(m, flen, cost, now);
            return;
        }
        uint8_t echo[4];
        st_kat_put_le32(echo, addr);
        ack(m, cmd, echo, 4, flen, cost, now);
        return;
    }
    case ST_KAT_CMD_SEND_EOF: {
        uint8_t n[4];
        st_kat_put_le32(n, m->page_count);
        ack(m, cmd, n, 4, flen, 0, now);
        return;
    }
    case ST_KAT_CMD_REQUEST_BLOCK: {
        if (words < 1)
            break;
        uint32_t addr = st_kat_get_le32(pl);
        uint8_t d[4 + 512];
        st_kat_put_le32(d, addr);
        /* Katapult reads any address; outside flash the model answers 0xF2 instead of
         * reading bus memory (documented deviation). */
        if (st_flash_read(m->flash, addr, d + 4, m->bs) != ST_FLASH_OK)
            break;
        m->stats.blocks_read++;
        ack(m, cmd, d, 4 + m->bs, flen, 0, now);
        return;
    }
    case ST_KAT_CMD_COMPLETE: {
        uint64_t ready = now;
        if (!m->silent_complete) {
            ready = respond(m, ST_KAT_RSP_ACK, (const uint8_t[]){cmd, 0, 0, 0}, 4, flen, 0,
                            now);
        }
        if (m->state == ST_KATAPULT_MODEL_RUNNING) {
            m->state = ST_KATAPULT_MODEL_JUMPING;
            m->jump_at = (ready > now ? ready : now) + JUMP_DELAY_US;
        }
        return;
    }
    case ST_KAT_CMD_GET_CANBUS_ID:
        if (m->cfg.with_can) {
            uint8_t u[8] = {0};
            memcpy(u, m->cfg.uuid, 6);
            ack(m, cmd, u, 8, flen, 0, now);
            return;
        }
        break;
    default:
        break;
    }
    cmd_error(m, flen, 0, now); /* unknown command or refused request */
}

static void tick(st_katapult_model *m, uint64_t now)
{
    if (m->state == ST_KATAPULT_MODEL_JUMPING && now >= m->jump_at) {
        /* The reset drops whatever the host has not read yet. */
        m->state = ST_KATAPULT_MODEL_GONE;
        m->q_count = 0;
        m->rx_len = 0;
        if (m->cfg.on_reset)
            m->cfg.on_reset(m->cfg.reset_ctx, m);
    }
}

static bool alive(const st_katapult_model *m)
{
    return m->state == ST_KATAPULT_MODEL_RUNNING || m->state == ST_KATAPULT_MODEL_JUMPING;
}

static void pop_rx(st_katapult_model *m, size_t n)
{
    memmove(m->rx, m->rx + n, m->rx_len - n);
    m->rx_len -= n;
}

static void model_rx(st_stream_model *b, const uint8_t *buf, size_t n, uint64_t now_us)
{
    st_katapult_model *m = from_base(b);
    tick(m, now_us);
    if (!alive(m))
        return;
    size_t take = n < RXBUF - m->rx_len ? n : RXBUF - m->rx_len; /* overflow is lost */
    memcpy(m->rx + m->rx_len, buf, take);
    m->rx_len += take;
    while (m->rx_len && alive(m)) {
        st_kat_check c = st_kat_frame_check(m->rx, m->rx_len, m->max_frame);
        if (c.kind == ST_KAT_NEED_MORE)
            break;
        if (c.kind == ST_KAT_FRAME) {
            m->frames_seen++;
            if (m->frames_seen == m->drop_rx_at) {
                pop_rx(m, c.len);
                continue;
            }
            if (m->frames_seen == m->corrupt_rx_at) {
                m->rx[c.len - 4] ^= 0x01; /* the device now sees a CRC error */
                continue;
            }
            m->need_valid = false;
            uint8_t frame[ST_KAT_FRAME_MAX];
            memcpy(frame, m->rx, c.len);
            pop_rx(m, c.len);
            dispatch(m, frame, c.len, now_us);
            continue;
        }
        /* command_find_block: one NACK per loss of sync, re-armed by a valid frame. */
        pop_rx(m, c.len);
        if (!m->need_valid) {
            m->need_valid = true;
            respond(m, ST_KAT_RSP_NACK, NULL, 0, 0, 0, now_us);
        }
    }
}

static size_t model_tx(st_stream_model *b, uint8_t *buf, size_t cap, uint64_t now_us)
{
    st_katapult_model *m = from_base(b);
    /* Answers that were on the wire before the jump (ready by jump_at) reach a host that is
     * reading (cap > 0) even when it asks for them only after it: send them first, then let
     * the reset drop the rest. */
    uint64_t upto = now_us;
    if (m->state == ST_KATAPULT_MODEL_JUMPING && m->jump_at < upto)
        upto = m->jump_at;
    size_t out = 0;
    while (m->q_count && out < cap) {
        seg *s = &m->q[m->q_head];
        if (s->ready_at > upto)
            break;
        size_t n = s->len - s->off < cap - out ? s->len - s->off : cap - out;
        memcpy(buf + out, s->data + s->off, n);
        out += n;
        s->off += n;
        if (s->off == s->len) {
            m->q_head = (m->q_head + 1) % OUTQ;
            m->q_count--;
        }
    }
    if (cap == 0 || !m->q_count || m->q[m->q_head].ready_at > upto)
        tick(m, now_us); /* cap 0: a clock poll only lets time pass (st_cdc_acm_poll) */
    return out;
}

static uint64_t model_next_event(st_stream_model *b)
{
    st_katapult_model *m = from_base(b);
    uint64_t t = UINT64_MAX;
    if (m->q_count)
        t = m->q[m->q_head].ready_at;
    if (m->state == ST_KATAPULT_MODEL_JUMPING && m->jump_at < t)
        t = m->jump_at;
    return t;
}

static const st_stream_model_ops model_ops = {
    .rx = model_rx,
    .tx = model_tx,
    .next_event_us = model_next_event,
    .line = NULL, /* Katapult ignores line settings once it runs */
};
