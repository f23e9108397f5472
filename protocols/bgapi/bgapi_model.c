/* Bluetooth module model with the Gecko bootloader's BGAPI UART DFU (see bgapi_model.h).
 * Behaviour from reference §5.5: the bootloader syncs on a first byte of exactly 0x20,
 * wants the rest of the header within 1 s and the payload within 3 s, answers set_address
 * with 0 whatever the address, parses the GBL stream as uploads arrive (an upload that
 * breaks it is answered with the checksum error; once parsing is over, later uploads are
 * answered 0), answers finish with 0 only for a complete, verified image, ignores commands
 * it does not know, and after a failed application boot sends evt_dfu_boot_failure and
 * then evt_dfu_boot. */
#include "protocols/bgapi/bgapi_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/bgapi/gbl.h"

#define OUTQ 16
#define SEG_MAX 32
/* Boot time of the module for the datasheet profile (bootloader or stack start-up);
 * an assumption, no figure in the reference. */
#define BOOT_US 30000u
#define DEFAULT_BAUD 115200u

typedef struct seg {
    uint64_t ready_at;
    size_t len, off;
    uint8_t data[SEG_MAX];
} seg;

struct st_bgapi_model {
    st_stream_model base; /* first */
    st_flash *flash;
    const st_mcu *mcu;
    st_bgapi_model_cfg cfg;
    bool timed;
    st_bgapi_model_state state;

    /* receive framing (one packet at a time, like btl_comm's receivePacket) */
    uint8_t rx[ST_BGAPI_HDR_LEN + 255];
    size_t rx_len;
    uint64_t first_us, hdr_us;

    /* output */
    seg q[OUTQ];
    unsigned q_head, q_count;
    uint64_t dev_free_us, pending_cost;

    /* line */
    bool line_known;
    uint32_t host_baud;
    bool host_rtscts;

    /* what the flash holds */
    bool installed;
    uint32_t app_version, app_crc;

    /* the DFU session since the bootloader started */
    st_gbl_parser gp;
    uint8_t *page;
    uint32_t page_addr;
    bool page_live, covered_start, have_app_tag;
    uint32_t new_version;

    /* faults */
    unsigned silent_left, finish_fail_left;
    uint32_t packets_seen, drop_at;

    st_bgapi_model_stats stats;
};

static const st_stream_model_ops model_ops;

static uint16_t err_checksum(const st_bgapi_model *m)
{
    return m->cfg.gen == ST_BGAPI_GEN_SDK2 ? 0x0B03 : 0x0046;
}

static uint16_t err_invalid_param(const st_bgapi_model *m)
{
    return m->cfg.gen == ST_BGAPI_GEN_SDK2 ? 0x0180 : 0x0021;
}

static uint64_t wire_us(const st_bgapi_model *m, size_t bytes)
{
    if (!m->timed)
        return 0;
    return ((uint64_t)bytes * 10u * 1000000u + m->cfg.baud - 1) / m->cfg.baud;
}

static void queue(st_bgapi_model *m, const uint8_t *f, size_t n, uint64_t ready)
{
    if (!n || n > SEG_MAX || m->q_count == OUTQ)
        return; /* transmit buffer full: lost, as on the wire */
    seg *s = &m->q[(m->q_head + m->q_count++) % OUTQ];
    s->ready_at = ready;
    s->len = n;
    s->off = 0;
    memcpy(s->data, f, n);
}

/* A response to a command of rx_len bytes, after the flash work it caused. */
static void respond(st_bgapi_model *m, uint8_t id, uint16_t result, size_t rx_len, uint64_t now)
{
    uint8_t p[2], f[8];
    st_bgapi_put_le16(p, result);
    size_t n = st_bgapi_encode(false, ST_BGAPI_CLASS_DFU, id, p, 2, f, sizeof f);
    uint64_t ready = now;
    if (m->timed) {
        uint64_t start = now > m->dev_free_us ? now : m->dev_free_us;
        ready = start + wire_us(m, rx_len) + m->pending_cost + wire_us(m, n);
        m->dev_free_us = ready;
        m->stats.device_us += ready - start;
    }
    m->pending_cost = 0;
    queue(m, f, n, ready);
}

static void event(st_bgapi_model *m, uint8_t cls, uint8_t id, const uint8_t *p, size_t len,
                  uint64_t at)
{
    uint8_t f[SEG_MAX];
    size_t n = st_bgapi_encode(true, cls, id, p, len, f, sizeof f);
    if (m->timed) {
        at += wire_us(m, n);
        if (at < m->dev_free_us)
            at = m->dev_free_us;
        m->dev_free_us = at;
    }
    queue(m, f, n, at);
}

/* A restart loses the packet being received and whatever was not on the wire yet; bytes
 * already sent (ready by now) are in the host's receive buffer and stay there. */
static void reset_link(st_bgapi_model *m, uint64_t now)
{
    m->rx_len = 0;
    m->pending_cost = 0;
    unsigned keep = 0;
    while (keep < m->q_count && m->q[(m->q_head + keep) % OUTQ].ready_at <= now)
        keep++;
    m->q_count = keep;
}

static void start_session(st_bgapi_model *m)
{
    st_gbl_parser_init(&m->gp);
    m->page_live = false;
    m->covered_start = false;
    m->have_app_tag = false;
    m->new_version = 0;
}

static void enter_bootloader(st_bgapi_model *m, bool bad_app, uint64_t now)
{
    reset_link(m, now);
    start_session(m);
    m->state = ST_BGAPI_MODEL_BOOTLOADER;
    uint64_t at = now + (m->timed ? BOOT_US : 0);
    if (m->timed && at < m->dev_free_us)
        at = m->dev_free_us;
    if (bad_app) {
        uint8_t r[2];
        st_bgapi_put_le16(r, err_checksum(m));
        event(m, ST_BGAPI_CLASS_DFU, ST_BGAPI_EVT_DFU_BOOT_FAILURE, r, 2, at);
        m->stats.boot_failures++;
    }
    uint8_t v[4];
    st_bgapi_put_le32(v, m->cfg.bootloader_version);
    event(m, ST_BGAPI_CLASS_DFU, ST_BGAPI_EVT_DFU_BOOT, v, 4, at);
    m->stats.dfu_boots++;
}

bool st_bgapi_model_app_valid(const st_bgapi_model *m)
{
    uint8_t w[4];
    if (!m->installed || st_flash_read(m->flash, m->cfg.app_start, w, 4) != ST_FLASH_OK)
        return false;
    return st_bgapi_le32(w) != 0xFFFFFFFFu;
}

uint32_t st_bgapi_model_app_version(const st_bgapi_model *m)
{
    return m->app_version;
}

static void boot(st_bgapi_model *m, uint64_t now)
{
    if (!st_bgapi_model_app_valid(m)) {
        enter_bootloader(m, true, now);
        return;
    }
    reset_link(m, now);
    m->state = ST_BGAPI_MODEL_APP;
    uint8_t p[18];
    uint32_t v = m->app_version;
    st_bgapi_put_le16(p, (uint16_t)(v >> 24));
    st_bgapi_put_le16(p + 2, (uint16_t)(v >> 16 & 0xff));
    st_bgapi_put_le16(p + 4, (uint16_t)(v >> 8 & 0xff));
    st_bgapi_put_le16(p + 6, (uint16_t)(v & 0xff));
    st_bgapi_put_le32(p + 8, m->cfg.bootloader_version);
    st_bgapi_put_le16(p + 12, m->cfg.hw);
    st_bgapi_put_le32(p + 14, m->app_crc);
    uint64_t at = now + (m->timed ? BOOT_US : 0);
    event(m, ST_BGAPI_CLASS_SYSTEM, ST_BGAPI_EVT_SYSTEM_BOOT, p, m->cfg.system_boot_len, at);
    m->stats.app_boots++;
}

static void die(st_bgapi_model *m)
{
    m->state = ST_BGAPI_MODEL_DEAD;
    reset_link(m, 0);
    m->q_count = 0;
    m->page_live = false;
}

/* Write the page being assembled: erase, then program it whole. */
static int flush_page(st_bgapi_model *m)
{
    if (!m->page_live)
        return 0;
    m->page_live = false;
    uint64_t c = 0;
    int fr = st_flash_erase_page(m->flash, m->page_addr, &c);
    m->pending_cost += c;
    if (fr == ST_FLASH_OK) {
        fr = st_flash_program(m->flash, m->page_addr, m->page, m->mcu->page_size, &c);
        m->pending_cost += c;
        if (fr == ST_FLASH_OK)
            m->stats.bytes_programmed += m->mcu->page_size;
    }
    if (fr == ST_FLASH_ERR_POWER_LOST || st_flash_power_lost(m->flash)) {
        die(m);
        return -1;
    }
    return fr == ST_FLASH_OK ? 0 : -1;
}

static int prog_cb(void *ctx, uint32_t addr, const uint8_t *data, size_t n)
{
    st_bgapi_model *m = ctx;
    uint32_t ps = m->mcu->page_size;
    /* The standalone bootloader writes over the running application: from the first
     * byte on, the old firmware is gone. */
    m->installed = false;
    if (addr <= m->cfg.app_start && m->cfg.app_start - addr < n)
        m->covered_start = true;
    while (n) {
        uint32_t page = addr - (addr - m->mcu->flash_start) % ps;
        if (!m->page_live || page != m->page_addr) {
            if (flush_page(m) < 0)
                return -1;
            if (!st_flash_in_main(m->flash, page, ps) ||
                st_flash_read(m->flash, page, m->page, ps) != ST_FLASH_OK)
                return -1;
            m->page_addr = page;
            m->page_live = true;
        }
        size_t k = page + ps - addr < n ? page + ps - addr : n;
        memcpy(m->page + (addr - page), data, k);
        addr += (uint32_t)k;
        data += k;
        n -= k;
    }
    return 0;
}

static void app_cb(void *ctx, uint32_t type, uint32_t version)
{
    st_bgapi_model *m = ctx;
    m->have_app_tag = true;
    m->new_version = version;
}

static void do_reset(st_bgapi_model *m, uint8_t mode, uint64_t now)
{
    if (m->silent_left) {
        m->silent_left--;
        m->stats.resets_ignored++;
        return;
    }
    m->stats.resets_obeyed++;
    if (m->state == ST_BGAPI_MODEL_BOOTLOADER && flush_page(m) < 0 &&
        m->state == ST_BGAPI_MODEL_DEAD)
        return;
    /* dfu argument: 1 stays in (or enters) UART DFU, anything else boots the application. */
    if (mode == ST_BGAPI_BOOT_UART_DFU)
        enter_bootloader(m, false, now);
    else
        boot(m, now);
}

static void cmd_upload(st_bgapi_model *m, const uint8_t *pl, size_t plen, size_t pkt,
                       uint64_t now)
{
    m->stats.uploads++;
    /* uint8array: the bootloader trusts the inner length; bytes it did not get read as
     * zeros (its packet buffer is cleared before each receive). */
    uint8_t data[255] = {0};
    size_t n = plen ? pl[0] : 0;
    if (plen > 1)
        memcpy(data, pl + 1, plen - 1 < n ? plen - 1 : n);
    if (m->cfg.enforce_len4 && n % 4) {
        m->stats.upload_errors++;
        respond(m, ST_BGAPI_DFU_UPLOAD, err_invalid_param(m), pkt, now);
        return;
    }
    st_gbl_parser_cb cb = {.prog = prog_cb, .app = app_cb, .ctx = m};
    bool was_done = m->gp.completed;
    int st = st_gbl_parser_feed(&m->gp, data, n, &cb);
    if (m->state == ST_BGAPI_MODEL_DEAD)
        return;
    if (m->gp.completed && !was_done && flush_page(m) < 0 && m->state == ST_BGAPI_MODEL_DEAD)
        return;
    if (st == ST_GBL_OK || st == ST_GBL_EOF) {
        respond(m, ST_BGAPI_DFU_UPLOAD, 0, pkt, now);
        return;
    }
    m->stats.upload_errors++;
    respond(m, ST_BGAPI_DFU_UPLOAD, err_checksum(m), pkt, now);
}

static void cmd_finish(st_bgapi_model *m, size_t pkt, uint64_t now)
{
    m->stats.finishes++;
    if (flush_page(m) < 0 && m->state == ST_BGAPI_MODEL_DEAD)
        return;
    bool verified = m->gp.completed && m->gp.verified;
    if (verified && m->cfg.require_signed && !(m->gp.signed_ && m->gp.has_signature))
        verified = false;
    if (verified && m->finish_fail_left) {
        m->finish_fail_left--;
        verified = false;
    }
    if (!verified) {
        m->stats.finish_errors++;
        respond(m, ST_BGAPI_DFU_UPLOAD_FINISH, err_checksum(m), pkt, now);
        return;
    }
    if (m->covered_start) {
        m->installed = true;
        m->app_version = m->have_app_tag ? m->new_version : 0;
        uint8_t w[4];
        st_flash_read(m->flash, m->cfg.app_start, w, 4);
        m->app_crc = m->gp.crc ^ st_bgapi_le32(w);
        m->stats.installs++;
    }
    respond(m, ST_BGAPI_DFU_UPLOAD_FINISH, 0, pkt, now);
}

static void dispatch(st_bgapi_model *m, uint64_t now)
{
    st_bgapi_hdr h;
    st_bgapi_hdr_decode(m->rx, &h);
    const uint8_t *pl = m->rx + ST_BGAPI_HDR_LEN;
    size_t plen = m->rx[1], pkt = ST_BGAPI_HDR_LEN + plen;
    m->stats.packets++;
    /* Which reset a module obeys depends on its generation (reference §5.5); the model
     * applies the same rule to the NCP firmware and to the bootloader. */
    bool sdk2 = m->cfg.gen == ST_BGAPI_GEN_SDK2;
    if (h.cls == ST_BGAPI_CLASS_DFU && h.id == ST_BGAPI_DFU_RESET) {
        if (sdk2 && plen >= 1)
            do_reset(m, pl[0], now);
        else
            m->stats.resets_ignored++;
        return;
    }
    if (h.cls == ST_BGAPI_CLASS_SYSTEM && h.id == ST_BGAPI_SYSTEM_RESET) {
        if (!sdk2 && plen >= 1)
            do_reset(m, pl[0], now);
        else
            m->stats.resets_ignored++;
        return;
    }
    if (m->state != ST_BGAPI_MODEL_BOOTLOADER || h.cls != ST_BGAPI_CLASS_DFU)
        return; /* unknown commands are ignored, without an answer */
    switch (h.id) {
    case ST_BGAPI_DFU_SET_ADDRESS:
        respond(m, ST_BGAPI_DFU_SET_ADDRESS, 0, pkt, now); /* deprecated: always 0 */
        break;
    case ST_BGAPI_DFU_UPLOAD:
        cmd_upload(m, pl, plen, pkt, now);
        break;
    case ST_BGAPI_DFU_UPLOAD_FINISH:
        cmd_finish(m, pkt, now);
        break;
    default:
        break;
    }
}

static bool garbled(const st_bgapi_model *m)
{
    return m->line_known && m->host_baud && m->host_baud != m->cfg.baud;
}

/* Flow control on one side only: the side that waits for its clear-to-send never gets it
 * (the pty and in-memory links carry no modem lines, so the model decides from settings). */
static bool blocked(const st_bgapi_model *m)
{
    return m->line_known && m->host_rtscts != m->cfg.flow_control;
}

static void model_rx(st_stream_model *b, const uint8_t *buf, size_t n, uint64_t now)
{
    st_bgapi_model *m = (st_bgapi_model *)b;
    if (m->state == ST_BGAPI_MODEL_DEAD || blocked(m))
        return;
    /* A packet that stalled past the bootloader's limits was abandoned before these
     * bytes came. */
    if (m->rx_len && ((m->rx_len < ST_BGAPI_HDR_LEN &&
                       now - m->first_us > (uint64_t)m->cfg.header_timeout_ms * 1000u) ||
                      (m->rx_len >= ST_BGAPI_HDR_LEN &&
                       now - m->hdr_us > (uint64_t)m->cfg.payload_timeout_ms * 1000u))) {
        m->rx_len = 0;
        m->stats.packets_timed_out++;
    }
    for (size_t i = 0; i < n && m->state != ST_BGAPI_MODEL_DEAD; i++) {
        uint8_t c = buf[i];
        if (garbled(m))
            c = (uint8_t)(c | 0xF8); /* sampled at the wrong rate: never a 0x20 */
        if (m->rx_len == 0) {
            if (c != ST_BGAPI_TECH_BT) {
                m->stats.bytes_skipped++;
                continue;
            }
            m->first_us = now;
            m->packets_seen++;
        }
        m->rx[m->rx_len++] = c;
        if (m->rx_len == ST_BGAPI_HDR_LEN)
            m->hdr_us = now;
        if (m->rx_len < ST_BGAPI_HDR_LEN || m->rx_len < ST_BGAPI_HDR_LEN + (size_t)m->rx[1])
            continue;
        if (m->drop_at && m->packets_seen == m->drop_at) {
            m->drop_at = 0;
            m->rx_len--; /* its last byte never arrived */
            continue;
        }
        dispatch(m, now);
        m->rx_len = 0;
    }
}

static size_t model_tx(st_stream_model *b, uint8_t *buf, size_t cap, uint64_t now)
{
    st_bgapi_model *m = (st_bgapi_model *)b;
    size_t out = 0;
    if (blocked(m))
        return 0;
    while (m->q_count && out < cap) {
        seg *s = &m->q[m->q_head];
        if (s->ready_at > now)
            break;
        size_t k = s->len - s->off < cap - out ? s->len - s->off : cap - out;
        memcpy(buf + out, s->data + s->off, k);
        out += k;
        s->off += k;
        if (s->off == s->len) {
            m->q_head = (m->q_head + 1) % OUTQ;
            m->q_count--;
        }
    }
    if (garbled(m))
        for (size_t i = 0; i < out; i++)
            buf[i] |= 0xF8; /* what a host at the wrong rate reads: no BGAPI header */
    return out;
}

static uint64_t model_next_event(st_stream_model *b)
{
    st_bgapi_model *m = (st_bgapi_model *)b;
    return m->q_count && !blocked(m) ? m->q[m->q_head].ready_at : UINT64_MAX;
}

static void model_line(st_stream_model *b, const st_stream_line *line, int dtr, int rts)
{
    st_bgapi_model *m = (st_bgapi_model *)b;
    if (line) {
        m->line_known = true;
        m->host_baud = line->baud;
        m->host_rtscts = line->rtscts != 0;
    }
}

static const st_stream_model_ops model_ops = {
    .rx = model_rx,
    .tx = model_tx,
    .next_event_us = model_next_event,
    .line = model_line,
};

st_bgapi_model *st_bgapi_model_new(st_flash *flash, const st_bgapi_model_cfg *cfg)
{
    if (!flash)
        return NULL;
    st_bgapi_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->base.ops = &model_ops;
    m->flash = flash;
    m->mcu = st_flash_mcu(flash);
    if (cfg)
        m->cfg = *cfg;
    if (!m->cfg.gen)
        m->cfg.gen = ST_BGAPI_GEN_GSDK4;
    if (!m->cfg.bootloader_version)
        m->cfg.bootloader_version = m->cfg.gen == ST_BGAPI_GEN_SDK2 ? 0x010c0000u : 0x02040000u;
    if (!m->cfg.baud)
        m->cfg.baud = DEFAULT_BAUD;
    if (!m->cfg.app_version)
        m->cfg.app_version = st_gbl_stack_version(1, 0, 0, 1);
    if (!m->cfg.system_boot_len)
        m->cfg.system_boot_len = 18;
    if (!m->cfg.header_timeout_ms)
        m->cfg.header_timeout_ms = 1000;
    if (!m->cfg.payload_timeout_ms)
        m->cfg.payload_timeout_ms = 3000;
    m->page = malloc(m->mcu->page_size);
    if (!m->page || (m->cfg.system_boot_len != 14 && m->cfg.system_boot_len != 18) ||
        !st_flash_in_main(flash, m->cfg.app_start, 4)) {
        free(m->page);
        free(m);
        return NULL;
    }
    m->timed = st_flash_timing(flash) == ST_TIMING_DATASHEET;
    if (!m->cfg.no_app) {
        /* The firmware it arrives with: a vector table's first words at the app start. */
        uint8_t old[8];
        st_bgapi_put_le32(old, 0x20008000u);
        st_bgapi_put_le32(old + 4, m->cfg.app_start + 0x101u);
        if (st_flash_page_blank(flash, m->cfg.app_start))
            st_flash_preload(flash, m->cfg.app_start, old, sizeof old);
        m->installed = true;
        m->app_version = m->cfg.app_version;
        m->app_crc = 0x5A5A0001u;
    }
    boot(m, 0); /* power-on: the NCP's evt_system_boot, or the bootloader */
    return m;
}

void st_bgapi_model_free(st_bgapi_model *m)
{
    if (!m)
        return;
    free(m->page);
    free(m);
}

st_stream_model *st_bgapi_model_stream(st_bgapi_model *m)
{
    return &m->base;
}

st_bgapi_model_state st_bgapi_model_get_state(const st_bgapi_model *m)
{
    return m->state;
}

void st_bgapi_model_power_cycle(st_bgapi_model *m)
{
    st_flash_power_restore(m->flash);
    m->dev_free_us = 0;
    boot(m, 0);
}

void st_bgapi_model_get_stats(const st_bgapi_model *m, st_bgapi_model_stats *out)
{
    *out = m->stats;
}

void st_bgapi_model_fault_silent(st_bgapi_model *m, unsigned k)
{
    m->silent_left = k;
}

void st_bgapi_model_fault_drop_rx(st_bgapi_model *m, unsigned nth)
{
    m->drop_at = nth ? m->packets_seen + nth : 0;
}

void st_bgapi_model_fault_power_loss(st_bgapi_model *m, uint64_t bytes)
{
    if (bytes)
        st_flash_fault_power_loss_after(m->flash, bytes);
}

void st_bgapi_model_fault_finish_checksum(st_bgapi_model *m, unsigned k)
{
    m->finish_fail_left = k;
}

void st_bgapi_model_set_baud(st_bgapi_model *m, uint32_t baud)
{
    m->cfg.baud = baud ? baud : DEFAULT_BAUD;
}

void st_bgapi_model_fault_clear(st_bgapi_model *m)
{
    m->silent_left = m->finish_fail_left = 0;
    m->drop_at = 0;
    st_flash_fault_clear(m->flash);
}

static bool parse_num(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return false;
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    if (*end || s[0] == '-')
        return false;
    *out = v;
    return true;
}

int st_bgapi_model_apply_fault(st_bgapi_model *m, const char *fault, st_err *err)
{
    char name[32];
    const char *colon = strchr(fault, ':');
    size_t nl = colon ? (size_t)(colon - fault) : strlen(fault);
    uint64_t v = 1;
    if (nl >= sizeof name || (colon && !parse_num(colon + 1, &v)) || v == 0)
        goto bad;
    memcpy(name, fault, nl);
    name[nl] = 0;
    if (strcmp(name, "silent") == 0)
        st_bgapi_model_fault_silent(m, (unsigned)v);
    else if (strcmp(name, "drop-rx") == 0)
        st_bgapi_model_fault_drop_rx(m, (unsigned)v);
    else if (strcmp(name, "power-loss") == 0 && colon)
        st_bgapi_model_fault_power_loss(m, v);
    else if (strcmp(name, "finish-checksum") == 0)
        st_bgapi_model_fault_finish_checksum(m, (unsigned)v);
    else if (strcmp(name, "baud") == 0 && colon)
        st_bgapi_model_set_baud(m, (uint32_t)v);
    else
        goto bad;
    return 0;
bad:
    return st_err_set(err, ST_ERR_INVAL,
                      "module fault '%s': expected silent[:K], drop-rx:N, power-loss:BYTES, "
                      "finish-checksum[:K] or baud:RATE",
                      fault);
}
