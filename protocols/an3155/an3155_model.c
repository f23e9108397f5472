/* AN3155 ROM model: see an3155_model.h. Byte-level parser after AN3155 §3 and reference
 * 4.1-4.5: every command is a byte and its complement; a wrong complement or checksum is a
 * NACK and the ROM returns to waiting for a command; it has no timeouts of its own (so an
 * already-synced ROM sees a second session's 0x7F as a command byte, and 7F 7F is NACKed). */
#include "protocols/an3155/an3155_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "station/core/clock.h"

#define OUTQ 1024
#define RAM_MAX (256u * 1024u)

typedef enum phase {
    P_CMD = 0,   /* waiting for a command byte */
    P_CMD2,      /* its complement */
    P_ADDR,      /* 4 address bytes + XOR */
    P_RLEN,      /* Read: N, ~N */
    P_WDATA,     /* Write: N, N+1 bytes, XOR */
    P_ERASE,     /* Erase / Extended Erase arguments */
} phase;

struct st_an_model {
    st_stream_model base; /* first */
    st_flash *flash;
    const st_mcu *mcu;
    const st_an_dev *dev;
    st_an_model_cfg cfg;
    uint8_t cmds[16];
    size_t n_cmds;
    bool timed;
    uint64_t byte_us;

    st_an_model_state state;
    uint64_t start_at;
    bool line_ok;
    phase ph;
    uint8_t cmd;
    uint8_t arg[600];
    size_t arg_len;
    uint32_t addr;

    uint8_t out[OUTQ];
    uint64_t out_at[OUTQ];
    size_t out_head, out_count;
    uint64_t dev_free;

    uint8_t *ram;
    uint32_t ram_size;

    /* faults as absolute counter values */
    uint32_t cmd_count, rx_count, tx_count;
    uint32_t nack_at, silent_at, noise_rx_at, noise_tx_at;
    uint32_t late_start_us;
    st_an_model_stats stats;
};

static const st_stream_model_ops model_ops;

st_an_model *st_an_model_new(st_flash *flash, const st_an_model_cfg *cfg)
{
    if (!flash)
        return NULL;
    st_an_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->base.ops = &model_ops;
    m->flash = flash;
    m->mcu = st_flash_mcu(flash);
    if (cfg)
        m->cfg = *cfg;
    if (!m->cfg.pid)
        m->cfg.pid = m->mcu->usart_pid;
    m->dev = st_an_dev_find(m->cfg.pid);
    /* The table's flash end is the family maximum; the unit's flash must fit in it. */
    if (!m->dev || m->dev->flash_start != m->mcu->flash_start ||
        m->mcu->flash_start + m->mcu->flash_size > m->dev->flash_end) {
        free(m);
        return NULL;
    }
    if (!m->cfg.bl_version)
        m->cfg.bl_version = m->dev->legacy_erase_only ? 0x22 : 0x31;
    if (!m->cfg.baud)
        m->cfg.baud = 115200;
    if (!m->cfg.startup_us)
        m->cfg.startup_us = m->dev->startup_us;
    static const uint8_t zero[12];
    if (memcmp(m->cfg.uid, zero, 12) == 0) {
        static const uint8_t def[12] = {0x20, 0x00, 0x36, 0x00, 0x0F, 0x51, 0x33, 0x30,
                                        0x39, 0x37, 0x38, 0x31};
        memcpy(m->cfg.uid, def, 12);
        m->cfg.uid[11] = (uint8_t)m->cfg.pid;
    }
    /* Get's list (AN3155 Table 2): V2.2 ROMs offer Erase, V3.x Extended Erase. */
    static const uint8_t v3[] = {0x00, 0x01, 0x02, 0x11, 0x21, 0x31, 0x44, 0x63, 0x73, 0x82,
                                 0x92};
    memcpy(m->cmds, v3, sizeof v3);
    m->n_cmds = sizeof v3;
    if (m->dev->legacy_erase_only)
        m->cmds[6] = ST_AN_CMD_ERASE;
    m->timed = st_flash_timing(flash) == ST_TIMING_DATASHEET;
    /* 8E1: start + 8 data + parity + stop = 11 bit times per byte. */
    m->byte_us = m->timed ? (11u * 1000000u + m->cfg.baud - 1) / m->cfg.baud : 0;
    m->ram_size = m->dev->ram_end - m->dev->ram_start;
    if (m->ram_size > RAM_MAX)
        m->ram_size = RAM_MAX;
    m->ram = calloc(1, m->ram_size);
    if (!m->ram) {
        free(m);
        return NULL;
    }
    m->line_ok = true; /* until a host sets something else */
    m->state = ST_AN_MODEL_OFF;
    return m;
}

void st_an_model_free(st_an_model *m)
{
    if (!m)
        return;
    free(m->ram);
    free(m);
}

st_stream_model *st_an_model_stream(st_an_model *m)
{
    return &m->base;
}

const st_an_dev *st_an_model_dev(const st_an_model *m)
{
    return m->dev;
}

void st_an_model_reset(st_an_model *m, bool rom, uint64_t now_us)
{
    m->out_count = 0;
    m->ph = P_CMD;
    m->arg_len = 0;
    m->dev_free = 0;
    if (!rom || st_flash_power_lost(m->flash)) {
        m->state = ST_AN_MODEL_OFF;
        return;
    }
    m->state = ST_AN_MODEL_STARTING;
    uint64_t startup = m->late_start_us ? m->late_start_us
                                        : (m->timed ? m->cfg.startup_us : 0);
    m->start_at = now_us + startup;
}

void st_an_model_go_silent(st_an_model *m)
{
    m->state = ST_AN_MODEL_OFF;
    m->ph = P_CMD;
}

static void tick(st_an_model *m, uint64_t now)
{
    if (m->state == ST_AN_MODEL_STARTING && now >= m->start_at)
        m->state = ST_AN_MODEL_WAIT_SYNC;
}

st_an_model_state st_an_model_get_state(const st_an_model *m, uint64_t now_us)
{
    if (m->state == ST_AN_MODEL_STARTING && now_us >= m->start_at)
        return ST_AN_MODEL_WAIT_SYNC;
    return m->state;
}

void st_an_model_get_stats(const st_an_model *m, st_an_model_stats *out)
{
    *out = m->stats;
}

/* ---- output ---------------------------------------------------------------------------- */

/* Queue bytes for the host, the first after `delay_us` of device work from now. */
static void emit(st_an_model *m, const uint8_t *b, size_t n, uint64_t delay_us, uint64_t now)
{
    uint64_t t = (m->dev_free > now ? m->dev_free : now) + delay_us;
    for (size_t i = 0; i < n && m->out_count < OUTQ; i++) {
        t += m->byte_us;
        size_t at = (m->out_head + m->out_count) % OUTQ;
        uint8_t v = b[i];
        if (++m->tx_count == m->noise_tx_at)
            v ^= 0x04;
        m->out[at] = v;
        m->out_at[at] = t;
        m->out_count++;
    }
    m->dev_free = t;
    m->stats.tx_bytes += n;
    m->stats.device_us += delay_us + n * m->byte_us;
}

static void ack(st_an_model *m, uint64_t delay, uint64_t now)
{
    emit(m, (const uint8_t[]){ST_AN_ACK}, 1, delay, now);
}

static void nack(st_an_model *m, uint64_t now)
{
    m->stats.nacks++;
    emit(m, (const uint8_t[]){ST_AN_NACK}, 1, 0, now);
    m->ph = P_CMD;
}

/* ---- memory map ------------------------------------------------------------------------ */

static bool in(uint32_t a, size_t n, uint32_t start, uint32_t end)
{
    return a >= start && (uint64_t)a + n <= end;
}

static bool in_flash(const st_an_model *m, uint32_t a, size_t n)
{
    return st_flash_in_main(m->flash, a, n);
}

static bool in_ram(const st_an_model *m, uint32_t a, size_t n)
{
    return in(a, n, m->dev->ram_start, m->dev->ram_start + m->ram_size);
}

static bool mem_read(st_an_model *m, uint32_t a, uint8_t *buf, size_t n)
{
    if (in_ram(m, a, n)) {
        memcpy(buf, m->ram + (a - m->dev->ram_start), n);
        return true;
    }
    if (in(a, n, m->dev->uid_addr, m->dev->uid_addr + 12)) {
        memcpy(buf, m->cfg.uid + (a - m->dev->uid_addr), n);
        return true;
    }
    if (in(a, n, m->dev->sys_start, m->dev->sys_end)) {
        memset(buf, 0, n); /* the ROM's own code: not modelled */
        return true;
    }
    return st_flash_read(m->flash, a, buf, n) == ST_FLASH_OK;
}

/* ---- commands -------------------------------------------------------------------------- */

static void go_off(st_an_model *m, uint32_t addr, bool rom, uint64_t now)
{
    m->stats.last_go = addr;
    if (rom) {
        /* The ROM resets itself after (un)protect; the host must sync again. Output
         * already queued (the second ACK) still leaves. */
        m->state = ST_AN_MODEL_STARTING;
        m->start_at = m->dev_free + (m->timed ? m->cfg.startup_us : 0);
    } else {
        m->state = ST_AN_MODEL_OFF;
    }
    m->ph = P_CMD;
    if (m->cfg.on_exit)
        m->cfg.on_exit(m->cfg.ctx, m, addr, rom);
    (void)now;
}

static void start_cmd(st_an_model *m, uint64_t now)
{
    uint8_t c = m->cmd;
    m->stats.commands++;
    m->cmd_count++;
    if (m->cmd_count == m->silent_at) {
        m->ph = P_CMD;
        return;
    }
    if (m->cmd_count == m->nack_at) {
        nack(m, now);
        return;
    }
    bool listed = false;
    for (size_t i = 0; i < m->n_cmds; i++)
        listed |= m->cmds[i] == c;
    if (!listed) {
        nack(m, now);
        return;
    }
    bool rdp = st_flash_rdp(m->flash);
    m->arg_len = 0;
    switch (c) {
    case ST_AN_CMD_GET: {
        uint8_t b[3 + 16];
        size_t n = 0;
        b[n++] = ST_AN_ACK;
        b[n++] = (uint8_t)m->n_cmds;
        b[n++] = m->cfg.bl_version;
        memcpy(b + n, m->cmds, m->n_cmds);
        n += m->n_cmds;
        b[n++] = ST_AN_ACK;
        emit(m, b, n, 0, now);
        m->ph = P_CMD;
        return;
    }
    case ST_AN_CMD_GET_VERSION: {
        uint8_t b[5] = {ST_AN_ACK, m->cfg.bl_version, 0, 0, ST_AN_ACK};
        emit(m, b, 5, 0, now);
        m->ph = P_CMD;
        return;
    }
    case ST_AN_CMD_GET_ID: {
        uint8_t b[5] = {ST_AN_ACK, 1, (uint8_t)(m->cfg.pid >> 8), (uint8_t)m->cfg.pid,
                        ST_AN_ACK};
        emit(m, b, 5, 0, now);
        m->ph = P_CMD;
        return;
    }
    case ST_AN_CMD_READOUT_UNPROTECT: {
        /* Works under RDP (reference 4.5 correction 2): mass erase, RDP off, reset. */
        ack(m, 0, now);
        uint64_t cost = 0;
        st_flash_set_rdp(m->flash, false);
        st_flash_mass_erase(m->flash, &cost);
        m->stats.mass_erases++;
        ack(m, cost, now);
        go_off(m, 0, true, now);
        return;
    }
    default:
        break;
    }
    if (rdp) {
        nack(m, now);
        return;
    }
    switch (c) {
    case ST_AN_CMD_READ:
    case ST_AN_CMD_GO:
    case ST_AN_CMD_WRITE:
        ack(m, 0, now);
        m->ph = P_ADDR;
        return;
    case ST_AN_CMD_ERASE:
    case ST_AN_CMD_EXT_ERASE:
        ack(m, 0, now);
        m->ph = P_ERASE;
        return;
    case ST_AN_CMD_WRITE_UNPROTECT:
        ack(m, 0, now);
        ack(m, 0, now);
        go_off(m, 0, true, now);
        return;
    case ST_AN_CMD_READOUT_PROTECT:
        ack(m, 0, now);
        st_flash_set_rdp(m->flash, true);
        ack(m, 0, now);
        go_off(m, 0, true, now);
        return;
    default: /* 0x63 write protect: not modelled */
        nack(m, now);
        return;
    }
}

static uint8_t xor_of(const uint8_t *b, size_t n)
{
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++)
        x ^= b[i];
    return x;
}

static void after_addr(st_an_model *m, uint64_t now)
{
    if (xor_of(m->arg, 5) != 0) {
        nack(m, now);
        return;
    }
    uint32_t a = (uint32_t)m->arg[0] << 24 | (uint32_t)m->arg[1] << 16 |
                 (uint32_t)m->arg[2] << 8 | m->arg[3];
    m->addr = a;
    m->arg_len = 0;
    switch (m->cmd) {
    case ST_AN_CMD_READ: {
        uint8_t probe;
        if (!mem_read(m, a, &probe, 1)) {
            nack(m, now);
            return;
        }
        ack(m, 0, now);
        m->ph = P_RLEN;
        return;
    }
    case ST_AN_CMD_GO:
        if (!in_flash(m, a, 4) && !in_ram(m, a, 4)) {
            nack(m, now);
            return;
        }
        ack(m, 0, now);
        m->stats.gos++;
        go_off(m, a, false, now);
        return;
    default: { /* write */
        unsigned align = m->dev->write_align < 4 ? 4 : m->dev->write_align;
        bool ok = (in_flash(m, a, 1) && a % align == 0) || in_ram(m, a, 1) ||
                  in(a, 1, m->dev->opt_start, m->dev->opt_end + 1);
        if (!ok) {
            nack(m, now);
            return;
        }
        ack(m, 0, now);
        m->ph = P_WDATA;
        return;
    }
    }
}

static void do_read(st_an_model *m, uint64_t now)
{
    if ((uint8_t)(m->arg[0] ^ m->arg[1]) != 0xFF) {
        nack(m, now);
        return;
    }
    size_t n = (size_t)m->arg[0] + 1;
    uint8_t b[1 + 256];
    if (!mem_read(m, m->addr, b + 1, n)) {
        nack(m, now);
        return;
    }
    b[0] = ST_AN_ACK;
    m->stats.reads++;
    emit(m, b, n + 1, 0, now);
    m->ph = P_CMD;
}

static void do_write(st_an_model *m, uint64_t now)
{
    size_t n = (size_t)m->arg[0] + 1;
    if (xor_of(m->arg, n + 2) != 0 || n % 4) {
        nack(m, now);
        return;
    }
    const uint8_t *d = m->arg + 1;
    uint64_t cost = 0;
    if (in_ram(m, m->addr, n)) {
        memcpy(m->ram + (m->addr - m->dev->ram_start), d, n);
    } else if (in(m->addr, n, m->dev->opt_start, m->dev->opt_end + 1)) {
        if (st_flash_write_optbytes(m->flash, m->addr - m->dev->opt_start, d, n) != ST_FLASH_OK) {
            nack(m, now);
            return;
        }
    } else {
        int rc = st_flash_program(m->flash, m->addr, d, n, &cost);
        if (rc == ST_FLASH_ERR_POWER_LOST) {
            m->state = ST_AN_MODEL_OFF; /* browned out mid-write: silence */
            m->out_count = 0;
            return;
        }
        if (rc != ST_FLASH_OK) {
            nack(m, now);
            return;
        }
    }
    m->stats.writes++;
    ack(m, cost, now);
    m->ph = P_CMD;
}

/* Erase units by the device table's geometry (F4 sectors span several st_flash pages). */
static bool erase_unit(st_an_model *m, uint32_t idx, uint64_t *cost)
{
    uint32_t start = m->dev->flash_start, i = 0, size = 0;
    if (m->dev->page_size) {
        start += idx * m->dev->page_size;
        size = m->dev->page_size;
    } else {
        const uint32_t *s = m->dev->sectors;
        for (;; i++) {
            size = *s;
            if (i == idx)
                break;
            start += size;
            if (s[1])
                s++;
        }
    }
    if (!in_flash(m, start, size))
        return false;
    for (uint32_t a = start; a < start + size; a += m->mcu->page_size) {
        uint64_t c = 0;
        if (st_flash_erase_page(m->flash, a, &c) != ST_FLASH_OK)
            return false;
        *cost += c;
    }
    return true;
}

/* Returns true when the argument bytes are complete (and handled). */
static bool erase_args(st_an_model *m, uint64_t now)
{
    bool ext = m->cmd == ST_AN_CMD_EXT_ERASE;
    size_t need;
    uint32_t count = 0;
    bool special = false;
    if (ext) {
        if (m->arg_len < 2)
            return false;
        uint16_t n = (uint16_t)(m->arg[0] << 8 | m->arg[1]);
        special = n >= 0xFFF0;
        count = (uint32_t)n + 1;
        need = special ? 3 : 2 + 2 * count + 1;
    } else {
        if (m->arg_len < 1)
            return false;
        special = m->arg[0] == 0xFF;
        count = (uint32_t)m->arg[0] + 1;
        need = special ? 2 : 1 + count + 1;
    }
    if (need > sizeof m->arg) {
        nack(m, now);
        return true;
    }
    if (m->arg_len < need)
        return false;
    uint64_t cost = 0;
    bool ok;
    if (special) {
        /* Extended: FFFF FF^FF=00; legacy: FF 00 (complement). 0xFFFE/FFFD bank erases:
         * the parts here have one bank as stm32flash sees them; refuse them. */
        if (ext)
            ok = m->arg[0] == 0xFF && m->arg[1] == 0xFF && m->arg[2] == 0x00;
        else
            ok = m->arg[1] == 0x00;
        ok = ok && st_flash_mass_erase(m->flash, &cost) == ST_FLASH_OK;
        if (ok)
            m->stats.mass_erases++;
    } else {
        ok = xor_of(m->arg, need) == 0;
        for (uint32_t i = 0; ok && i < count; i++) {
            uint32_t idx = ext ? (uint32_t)(m->arg[2 + 2 * i] << 8 | m->arg[3 + 2 * i])
                               : m->arg[1 + i];
            ok = erase_unit(m, idx, &cost);
        }
        if (ok)
            m->stats.erases++;
    }
    if (ok) {
        ack(m, cost, now);
        m->ph = P_CMD;
    } else {
        nack(m, now);
    }
    return true;
}

static void byte_in(st_an_model *m, uint8_t b, uint64_t now)
{
    switch (m->state) {
    case ST_AN_MODEL_OFF:
    case ST_AN_MODEL_STARTING:
        return;
    case ST_AN_MODEL_WAIT_SYNC:
        /* Autobaud measures the first byte; only 0x7F gives a usable rate. */
        if (b == ST_AN_SYNC) {
            m->state = ST_AN_MODEL_READY;
            m->stats.syncs++;
            ack(m, 0, now);
        }
        return;
    case ST_AN_MODEL_READY:
        break;
    }
    switch (m->ph) {
    case P_CMD:
        m->cmd = b;
        m->ph = P_CMD2;
        return;
    case P_CMD2:
        if ((uint8_t)(m->cmd ^ b) != 0xFF) {
            nack(m, now);
            return;
        }
        start_cmd(m, now);
        return;
    case P_ADDR:
        m->arg[m->arg_len++] = b;
        if (m->arg_len == 5)
            after_addr(m, now);
        return;
    case P_RLEN:
        m->arg[m->arg_len++] = b;
        if (m->arg_len == 2)
            do_read(m, now);
        return;
    case P_WDATA:
        m->arg[m->arg_len++] = b;
        if (m->arg_len == (size_t)m->arg[0] + 3)
            do_write(m, now);
        return;
    case P_ERASE:
        if (m->arg_len < sizeof m->arg)
            m->arg[m->arg_len++] = b;
        erase_args(m, now);
        return;
    }
}

static void model_rx(st_stream_model *base, const uint8_t *buf, size_t n, uint64_t now)
{
    st_an_model *m = (st_an_model *)base;
    tick(m, now);
    for (size_t i = 0; i < n; i++) {
        uint8_t b = buf[i];
        m->stats.rx_bytes++;
        m->stats.device_us += m->byte_us;
        if (m->timed) /* the byte took its wire time to arrive */
            m->dev_free = (m->dev_free > now ? m->dev_free : now) + m->byte_us;
        if (!m->line_ok)
            continue; /* parity/framing errors: the ROM never sees a valid byte */
        if (++m->rx_count == m->noise_rx_at)
            b ^= 0x10;
        byte_in(m, b, now);
    }
}

static size_t model_tx(st_stream_model *base, uint8_t *buf, size_t cap, uint64_t now)
{
    st_an_model *m = (st_an_model *)base;
    tick(m, now);
    size_t n = 0;
    while (m->out_count && n < cap && m->out_at[m->out_head] <= now) {
        buf[n++] = m->out[m->out_head];
        m->out_head = (m->out_head + 1) % OUTQ;
        m->out_count--;
    }
    return n;
}

static uint64_t model_next(st_stream_model *base)
{
    st_an_model *m = (st_an_model *)base;
    if (m->out_count)
        return m->out_at[m->out_head];
    if (m->state == ST_AN_MODEL_STARTING)
        return m->start_at;
    return UINT64_MAX;
}

static void model_line(st_stream_model *base, const st_stream_line *l, int dtr, int rts)
{
    st_an_model *m = (st_an_model *)base;
    (void)dtr;
    (void)rts;
    if (!l)
        return;
    m->stats.line = *l;
    bool ok = l->data_bits == 8 && l->stop_bits == 1 &&
              (l->parity == 'E' || (m->cfg.accept_8n1 && l->parity == 'N'));
    if (!ok)
        m->stats.refused_line++;
    m->line_ok = ok;
}

static const st_stream_model_ops model_ops = {
    .rx = model_rx,
    .tx = model_tx,
    .next_event_us = model_next,
    .line = model_line,
    .brk = NULL, /* a BREAK is a framing error to the ROM: nothing happens */
};

bool st_an_model_fault(st_an_model *m, const char *f)
{
    unsigned long v = 0;
    const char *c = strchr(f, ':');
    if (c) {
        char *end;
        v = strtoul(c + 1, &end, 0);
        if (end == c + 1 || *end)
            return false;
    }
    size_t k = c ? (size_t)(c - f) : strlen(f);
#define IS(name) (k == strlen(name) && strncmp(f, name, k) == 0)
    if (IS("nack") && c)
        m->nack_at = v ? m->cmd_count + (uint32_t)v : 0;
    else if (IS("silent") && c)
        m->silent_at = v ? m->cmd_count + (uint32_t)v : 0;
    else if (IS("noise-rx") && c)
        m->noise_rx_at = v ? m->rx_count + (uint32_t)v : 0;
    else if (IS("noise-tx") && c)
        m->noise_tx_at = v ? m->tx_count + (uint32_t)v : 0;
    else if (IS("slow-erase") && c)
        st_flash_fault_slow_erase(m->flash, (unsigned)v);
    else if (IS("power-loss") && c)
        st_flash_fault_power_loss_after(m->flash, v);
    else if (IS("rdp") && !c)
        st_flash_set_rdp(m->flash, true);
    else if (IS("late-start") && c)
        m->late_start_us = (uint32_t)v * 1000u;
    else
        return false;
#undef IS
    return true;
}
