/* AN3155 host engine: see an3155.h and PROTOCOL.md. Timeouts follow stm32flash 0.7
 * (reference 4.5); the handshake and the resynchronisation go further than stm32flash:
 * a lost first 0x7F is accepted, and a ROM caught inside a command is brought back to
 * idle with single 0xFF bytes (never 0x00, which could confirm a pending mass erase). */
#include "protocols/an3155/an3155.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "station/core/clock.h"

#define RESYNC_MAX_BYTES 300u /* > a whole Write Memory payload (1 + 256 + 1) */

struct st_an3155 {
    st_stream *link;
    st_an_cfg cfg;
    st_an_info info;
    bool have_info;
    st_an_stats stats;
};

/* A missing or garbled answer, or a NACK (a byte damaged on the way in fails the ROM's
 * complement or checksum check): worth a resync and another try. A ROM that NACKs for a
 * reason (readout protection, a bad address) NACKs again, and the last error stands. */
static int is_retriable(int rc)
{
    return rc == ST_ERR_TIMEOUT || rc == ST_ERR_PROTO || rc == ST_ERR_DEVICE;
}

void st_an_flash_opts_default(st_an_flash_opts *o)
{
    o->skip_identical = true;
    o->verify = true;
    o->mass_erase_ok = true;
}

int st_an_new(st_stream *link, const st_an_cfg *cfg, st_an3155 **out, st_err *err)
{
    if (!link || !out)
        return st_err_set(err, ST_ERR_INVAL, "an3155: no link");
    st_an3155 *a = calloc(1, sizeof *a);
    if (!a)
        return st_err_set(err, ST_ERR_NOMEM, "an3155: out of memory");
    a->link = link;
    if (cfg)
        a->cfg = *cfg;
    if (!a->cfg.byte_timeout_ms)
        a->cfg.byte_timeout_ms = 500;
    if (!a->cfg.write_timeout_ms)
        a->cfg.write_timeout_ms = 1000;
    if (!a->cfg.page_erase_ms)
        a->cfg.page_erase_ms = 5000;
    if (!a->cfg.mass_erase_ms)
        a->cfg.mass_erase_ms = 35000;
    if (!a->cfg.retries)
        a->cfg.retries = 3;
    if (!a->cfg.resync_wait_ms)
        a->cfg.resync_wait_ms = 20;
    *out = a;
    return 0;
}

void st_an_free(st_an3155 *a)
{
    free(a);
}

void st_an_get_stats(const st_an3155 *a, st_an_stats *out)
{
    *out = a->stats;
}

const st_an_info *st_an_get_info(const st_an3155 *a)
{
    return a->have_info ? &a->info : NULL;
}

bool st_an_has_cmd(const st_an_info *i, uint8_t cmd)
{
    for (size_t k = 0; k < i->n_cmds; k++)
        if (i->cmds[k] == cmd)
            return true;
    return false;
}

const char *st_an_sync_name(st_an_sync_how h)
{
    switch (h) {
    case ST_AN_SYNC_ACK: return "ack";
    case ST_AN_SYNC_NACK: return "already-synced";
    case ST_AN_SYNC_LATE_ACK: return "second-0x7f";
    case ST_AN_SYNC_RESYNC: return "resync";
    }
    return "?";
}

/* ---- bytes ----------------------------------------------------------------------------- */

static int send(st_an3155 *a, const uint8_t *b, size_t n, st_err *err)
{
    int rc = st_stream_write(a->link, b, n, 1000 + (unsigned)n, err);
    if (rc < 0)
        return rc;
    a->stats.tx_bytes += n;
    return 0;
}

/* One byte within timeout_ms; 0 on timeout (no error set), 1 with *b, < 0 on link error. */
static int recv_byte(st_an3155 *a, uint8_t *b, unsigned timeout_ms, st_err *err)
{
    int rc = st_stream_read(a->link, b, 1, timeout_ms, err);
    if (rc > 0)
        a->stats.rx_bytes++;
    return rc;
}

static int recv_exact(st_an3155 *a, uint8_t *buf, size_t n, unsigned timeout_ms, st_err *err)
{
    int rc = st_stream_read_exact(a->link, buf, n, timeout_ms, err);
    if (rc < 0)
        return rc;
    a->stats.rx_bytes += n;
    return 0;
}

/* Wait for ACK within timeout_ms, skipping BUSY (I2C ROMs; harmless here). */
static int wait_ack(st_an3155 *a, unsigned timeout_ms, const char *what, st_err *err)
{
    st_deadline d = st_deadline_in_ms(timeout_ms);
    for (;;) {
        uint8_t b;
        int left = st_deadline_remaining_ms(d);
        int rc = left ? recv_byte(a, &b, (unsigned)left, err) : 0;
        if (rc < 0)
            return rc;
        if (rc == 0)
            return st_err_set(err, ST_ERR_TIMEOUT, "%s: no answer within %u ms", what,
                              timeout_ms);
        if (b == ST_AN_ACK)
            return 0;
        if (b == ST_AN_NACK) {
            a->stats.nacks++;
            return st_err_set(err, ST_ERR_DEVICE, "%s: NACK", what);
        }
        if (b != ST_AN_BUSY)
            return st_err_set(err, ST_ERR_PROTO, "%s: answer 0x%02x is neither ACK nor NACK",
                              what, b);
    }
}

static int command(st_an3155 *a, uint8_t cmd, st_err *err)
{
    uint8_t b[2] = {cmd, (uint8_t)~cmd};
    a->stats.commands++;
    int rc = send(a, b, 2, err);
    if (rc < 0)
        return rc;
    char what[32];
    snprintf(what, sizeof what, "command 0x%02x", cmd);
    return wait_ack(a, a->cfg.byte_timeout_ms, what, err);
}

static int send_addr(st_an3155 *a, uint32_t addr, st_err *err)
{
    uint8_t b[5] = {(uint8_t)(addr >> 24), (uint8_t)(addr >> 16), (uint8_t)(addr >> 8),
                    (uint8_t)addr, 0};
    b[4] = b[0] ^ b[1] ^ b[2] ^ b[3];
    int rc = send(a, b, 5, err);
    if (rc < 0)
        return rc;
    return wait_ack(a, a->cfg.byte_timeout_ms, "address", err);
}

/* Bring a ROM that may be inside a command back to idle with 0xFF bytes (0xFF is never a
 * valid complement, checksum or length that changes flash: at worst a Write Memory payload
 * of 0xFF, which programs nothing). Bursts of 16 until the ROM answers at all; then its
 * leftover bytes were taken as commands (FF FF: NACK each), so it is idle or holds one FF:
 * single bytes until a NACK settle it. */
#define RESYNC_BURST 16u
static int resync(st_an3155 *a, st_err *err)
{
    uint8_t ff[RESYNC_BURST], junk[64];
    memset(ff, 0xFF, sizeof ff);
    st_stream_flush_input(a->link, NULL);
    bool answered = false;
    for (unsigned sent = 0; sent < RESYNC_MAX_BYTES && !answered; sent += RESYNC_BURST) {
        int rc = send(a, ff, RESYNC_BURST, err);
        if (rc < 0)
            return rc;
        /* Everything that comes back within the wait: any ACK/NACK means it is listening. */
        while ((rc = st_stream_read(a->link, junk, sizeof junk, a->cfg.resync_wait_ms, err)) > 0) {
            a->stats.rx_bytes += (unsigned)rc;
            for (int i = 0; i < rc; i++)
                answered |= junk[i] == ST_AN_ACK || junk[i] == ST_AN_NACK;
        }
        if (rc < 0)
            return rc;
    }
    if (!answered)
        return st_err_set(err, ST_ERR_TIMEOUT,
                          "resync: no ACK/NACK after %u bytes (is the bootloader running?)",
                          RESYNC_MAX_BYTES);
    for (int i = 0; i < 3; i++) {
        uint8_t b;
        int rc = send(a, ff, 1, err);
        if (rc < 0)
            return rc;
        rc = recv_byte(a, &b, a->cfg.resync_wait_ms, err);
        if (rc < 0)
            return rc;
        if (rc == 1 && b == ST_AN_NACK)
            return 0;
    }
    return st_err_set(err, ST_ERR_PROTO, "resync: the ROM answers but does not settle");
}

/* ---- handshake ------------------------------------------------------------------------- */

int st_an_sync(st_an3155 *a, st_an_sync_how *how, st_err *err)
{
    st_an_sync_how h = ST_AN_SYNC_ACK;
    uint8_t s = ST_AN_SYNC, b = 0;
    int rc;
    st_stream_flush_input(a->link, NULL);
    for (int attempt = 0; attempt < 2; attempt++) {
        if ((rc = send(a, &s, 1, err)) < 0)
            return st_err_wrap(err, rc, "sync");
        rc = recv_byte(a, &b, a->cfg.byte_timeout_ms, err);
        if (rc < 0)
            return st_err_wrap(err, rc, "sync");
        if (rc == 1 && b == ST_AN_ACK) {
            h = attempt ? ST_AN_SYNC_LATE_ACK : ST_AN_SYNC_ACK;
            goto done;
        }
        if (rc == 1 && b == ST_AN_NACK) {
            h = ST_AN_SYNC_NACK;
            goto done;
        }
        if (rc == 1)
            break; /* garbage: resync below */
        /* Silence: either the ROM was not up yet (the byte was lost) or it took 0x7F as a
         * command byte and waits for the complement; a second 0x7F tells which. */
    }
    ST_LOGW(a->cfg.log, "an3155", "%s: no clean answer to 0x7F, resynchronising",
            a->link->name);
    if ((rc = resync(a, err)) < 0)
        return st_err_wrap(err, rc, "sync: no answer to 0x7F (bootloader not entered? wrong "
                                  "port, BOOT0 or reset not applied, or 8N1/8E1 mismatch)");
    h = ST_AN_SYNC_RESYNC;
done:
    if (how)
        *how = h;
    ST_LOGD(a->cfg.log, "an3155", "%s: synced (%s)", a->link->name, st_an_sync_name(h));
    return 0;
}

/* Run one exchange, resyncing and retrying on a garbled or missing answer. */
typedef int (*exchange_fn)(st_an3155 *a, void *ctx, st_err *err);

static int with_retry(st_an3155 *a, exchange_fn fn, void *ctx, st_err *err)
{
    int rc = 0;
    for (unsigned i = 0; i <= a->cfg.retries; i++) {
        if (i) {
            a->stats.retries++;
            ST_LOGW(a->cfg.log, "an3155", "%s: retry %u after: %s", a->link->name, i,
                    err ? err->msg : "error");
            int r2 = resync(a, err);
            if (r2 < 0)
                return r2;
        }
        rc = fn(a, ctx, err);
        if (!is_retriable(rc))
            return rc;
    }
    return rc;
}

/* ---- Get, Get Version, Get ID ---------------------------------------------------------- */

static int do_get(st_an3155 *a, void *ctx, st_err *err)
{
    st_an_info *i = ctx;
    int rc = command(a, ST_AN_CMD_GET, err);
    if (rc < 0)
        return rc;
    uint8_t n;
    if ((rc = recv_exact(a, &n, 1, a->cfg.byte_timeout_ms, err)) < 0)
        return rc;
    uint8_t buf[256];
    /* n = count - 1: version byte + n command codes. */
    if ((rc = recv_exact(a, buf, (size_t)n + 1, a->cfg.byte_timeout_ms, err)) < 0)
        return rc;
    if (n == 0 || n > sizeof i->cmds)
        return st_err_set(err, ST_ERR_PROTO, "Get: implausible command count %u", n);
    i->bl_version = buf[0];
    i->n_cmds = n;
    memcpy(i->cmds, buf + 1, n);
    return wait_ack(a, a->cfg.byte_timeout_ms, "Get: final", err);
}

static int do_get_version(st_an3155 *a, void *ctx, st_err *err)
{
    st_an_info *i = ctx;
    int rc = command(a, ST_AN_CMD_GET_VERSION, err);
    if (rc < 0)
        return rc;
    uint8_t b[3];
    if ((rc = recv_exact(a, b, 3, a->cfg.byte_timeout_ms, err)) < 0)
        return rc;
    i->version = b[0];
    i->option1 = b[1];
    i->option2 = b[2];
    return wait_ack(a, a->cfg.byte_timeout_ms, "Get Version: final", err);
}

static int do_get_id(st_an3155 *a, void *ctx, st_err *err)
{
    st_an_info *i = ctx;
    int rc = command(a, ST_AN_CMD_GET_ID, err);
    if (rc < 0)
        return rc;
    uint8_t n, b[8];
    if ((rc = recv_exact(a, &n, 1, a->cfg.byte_timeout_ms, err)) < 0)
        return rc;
    if (n != 1)
        return st_err_set(err, ST_ERR_PROTO, "Get ID: %u+1 PID bytes (expected 2)", n);
    if ((rc = recv_exact(a, b, 2, a->cfg.byte_timeout_ms, err)) < 0)
        return rc;
    i->pid = (uint16_t)(b[0] << 8 | b[1]);
    return wait_ack(a, a->cfg.byte_timeout_ms, "Get ID: final", err);
}

int st_an_identify(st_an3155 *a, st_an_info *out, st_err *err)
{
    st_an_info i;
    memset(&i, 0, sizeof i);
    int rc;
    if ((rc = with_retry(a, do_get_version, &i, err)) < 0)
        return st_err_wrap(err, rc, "Get Version");
    if ((rc = with_retry(a, do_get, &i, err)) < 0)
        return st_err_wrap(err, rc, "Get");
    if ((rc = with_retry(a, do_get_id, &i, err)) < 0)
        return st_err_wrap(err, rc, "Get ID");
    i.dev = st_an_dev_find(i.pid);
    i.ext_erase = st_an_has_cmd(&i, ST_AN_CMD_EXT_ERASE);
    a->info = i;
    a->have_info = true;
    if (out)
        *out = i;
    if (!i.dev)
        return st_err_set(err, ST_ERR_UNSUPPORTED,
                          "unknown device PID 0x%03x (bootloader V%u.%u): not in the device "
                          "table", i.pid, i.bl_version >> 4, i.bl_version & 15);
    if (!i.ext_erase && !st_an_has_cmd(&i, ST_AN_CMD_ERASE))
        return st_err_set(err, ST_ERR_UNSUPPORTED, "%s: Get lists neither Erase nor "
                          "Extended Erase", i.dev->name);
    return 0;
}

static int need_dev(st_an3155 *a, st_err *err)
{
    if (!a->have_info || !a->info.dev)
        return st_err_set(err, ST_ERR_INVAL, "device not identified (identify first)");
    return 0;
}

/* ---- Read Memory ----------------------------------------------------------------------- */

typedef struct rw_ctx {
    uint32_t addr;
    uint8_t *rbuf;
    const uint8_t *wbuf;
    size_t len;
} rw_ctx;

static int do_read(st_an3155 *a, void *ctx, st_err *err)
{
    rw_ctx *c = ctx;
    int rc = command(a, ST_AN_CMD_READ, err);
    if (rc == ST_ERR_DEVICE)
        return st_err_wrap(err, rc, "read refused (readout protection active?)");
    if (rc < 0)
        return rc;
    if ((rc = send_addr(a, c->addr, err)) < 0)
        return rc;
    uint8_t n[2] = {(uint8_t)(c->len - 1), (uint8_t)~(c->len - 1)};
    if ((rc = send(a, n, 2, err)) < 0)
        return rc;
    if ((rc = wait_ack(a, a->cfg.byte_timeout_ms, "length", err)) < 0)
        return rc;
    return recv_exact(a, c->rbuf, c->len, a->cfg.byte_timeout_ms + (unsigned)c->len, err);
}

int st_an_read(st_an3155 *a, uint32_t addr, uint8_t *buf, size_t len, const st_progress *p,
               st_err *err)
{
    for (size_t off = 0; off < len;) {
        size_t n = len - off < ST_AN_MAX_BLOCK ? len - off : ST_AN_MAX_BLOCK;
        rw_ctx c = {.addr = addr + (uint32_t)off, .rbuf = buf + off, .len = n};
        int rc = with_retry(a, do_read, &c, err);
        if (rc < 0)
            return st_err_wrap(err, rc, "read 0x%08x", c.addr);
        off += n;
        st_progress_update(p, "read", off, len);
    }
    return 0;
}

int st_an_read_uid(st_an3155 *a, char hex[25], st_err *err)
{
    int rc = need_dev(a, err);
    if (rc < 0)
        return rc;
    uint8_t b[12];
    if ((rc = st_an_read(a, a->info.dev->uid_addr, b, sizeof b, NULL, err)) < 0)
        return st_err_wrap(err, rc, "unique ID");
    static const char digits[] = "0123456789ABCDEF";
    for (int i = 0; i < 12; i++) {
        hex[2 * i] = digits[b[i] >> 4];
        hex[2 * i + 1] = digits[b[i] & 15];
    }
    hex[24] = '\0';
    return 0;
}

/* ---- Write Memory ---------------------------------------------------------------------- */

static int do_write(st_an3155 *a, void *ctx, st_err *err)
{
    rw_ctx *c = ctx;
    int rc = command(a, ST_AN_CMD_WRITE, err);
    if (rc == ST_ERR_DEVICE)
        return st_err_wrap(err, rc, "write refused (readout protection active?)");
    if (rc < 0)
        return rc;
    if ((rc = send_addr(a, c->addr, err)) < 0)
        return rc;
    uint8_t b[ST_AN_MAX_BLOCK + 2];
    b[0] = (uint8_t)(c->len - 1);
    memcpy(b + 1, c->wbuf, c->len);
    uint8_t x = b[0];
    for (size_t i = 0; i < c->len; i++)
        x ^= c->wbuf[i];
    b[c->len + 1] = x;
    if ((rc = send(a, b, c->len + 2, err)) < 0)
        return rc;
    return wait_ack(a, a->cfg.write_timeout_ms, "data", err);
}

static int write_block(st_an3155 *a, uint32_t addr, const uint8_t *data, size_t len,
                       st_err *err)
{
    rw_ctx c = {.addr = addr, .wbuf = data, .len = len};
    int rc = do_write(a, &c, err);
    for (unsigned i = 0; i < a->cfg.retries && is_retriable(rc); i++) {
        /* A lost ACK may hide a write that happened: writing it again would fail on
         * programmed flash, so look first. A NACK for a damaged payload retries too. */
        a->stats.retries++;
        ST_LOGW(a->cfg.log, "an3155", "%s: write 0x%08x: %s; checking", a->link->name, addr,
                err ? err->msg : "error");
        if (resync(a, err) < 0)
            return rc;
        uint8_t back[ST_AN_MAX_BLOCK];
        rw_ctx r = {.addr = addr, .rbuf = back, .len = len};
        int r2 = do_read(a, &r, err);
        if (r2 == 0 && memcmp(back, data, len) == 0)
            return 0;
        if (r2 < 0 && !is_retriable(r2))
            return r2;
        if (r2 < 0 && resync(a, err) < 0)
            return r2;
        rc = do_write(a, &c, err);
    }
    return rc;
}

int st_an_write(st_an3155 *a, uint32_t addr, const uint8_t *data, size_t len,
                const st_progress *p, st_err *err)
{
    int rc = need_dev(a, err);
    if (rc < 0)
        return rc;
    const st_an_dev *d = a->info.dev;
    unsigned align = d->write_align < 4 ? 4 : d->write_align;
    if (addr % align)
        return st_err_set(err, ST_ERR_INVAL, "write 0x%08x: %s needs %u-byte aligned "
                          "addresses", addr, d->name, align);
    for (size_t off = 0; off < len;) {
        size_t n = len - off < ST_AN_MAX_BLOCK ? len - off : ST_AN_MAX_BLOCK;
        uint8_t blk[ST_AN_MAX_BLOCK];
        memcpy(blk, data + off, n);
        size_t padded = (n + align - 1) / align * align; /* tail padding with 0xFF */
        memset(blk + n, 0xFF, padded - n);
        rc = write_block(a, addr + (uint32_t)off, blk, padded, err);
        if (rc < 0)
            return st_err_wrap(err, rc, "write 0x%08x", addr + (uint32_t)off);
        off += n;
        st_progress_update(p, "write", off, len);
    }
    return 0;
}

/* ---- Erase ------------------------------------------------------------------------------ */

typedef struct erase_ctx {
    bool mass;
    uint32_t first, count;
} erase_ctx;

static int do_erase(st_an3155 *a, void *ctx, st_err *err)
{
    erase_ctx *c = ctx;
    bool ext = a->info.ext_erase;
    int rc = command(a, ext ? ST_AN_CMD_EXT_ERASE : ST_AN_CMD_ERASE, err);
    if (rc == ST_ERR_DEVICE)
        return st_err_wrap(err, rc, "erase refused (readout or write protection active?)");
    if (rc < 0)
        return rc;
    uint8_t b[2 + 2 * ST_AN_MAX_ERASE_BATCH + 1];
    size_t n = 0;
    unsigned timeout;
    if (c->mass) {
        /* stm32flash never sends the bank codes 0xFFFE/0xFFFD (reference 4.5). */
        if (ext) {
            b[n++] = 0xFF;
            b[n++] = 0xFF;
            b[n++] = 0x00;
        } else {
            b[n++] = 0xFF;
            b[n++] = 0x00;
        }
        timeout = a->cfg.mass_erase_ms;
    } else if (ext) {
        uint16_t m = (uint16_t)(c->count - 1);
        b[n++] = (uint8_t)(m >> 8);
        b[n++] = (uint8_t)m;
        for (uint32_t i = 0; i < c->count; i++) {
            b[n++] = (uint8_t)((c->first + i) >> 8);
            b[n++] = (uint8_t)(c->first + i);
        }
        uint8_t x = 0;
        for (size_t i = 0; i < n; i++)
            x ^= b[i];
        b[n++] = x;
        timeout = a->cfg.page_erase_ms * c->count;
    } else {
        b[n++] = (uint8_t)(c->count - 1);
        for (uint32_t i = 0; i < c->count; i++)
            b[n++] = (uint8_t)(c->first + i);
        uint8_t x = 0;
        for (size_t i = 0; i < n; i++)
            x ^= b[i];
        b[n++] = x;
        timeout = a->cfg.page_erase_ms * c->count;
    }
    if ((rc = send(a, b, n, err)) < 0)
        return rc;
    return wait_ack(a, timeout, "erase", err);
}

int st_an_erase_units(st_an3155 *a, uint32_t first, uint32_t count, st_err *err)
{
    int rc = need_dev(a, err);
    if (rc < 0)
        return rc;
    if (!a->info.ext_erase && first + count > 256)
        return st_err_set(err, ST_ERR_INVAL, "erase pages %u-%u: the legacy Erase (0x43) "
                          "numbers pages with one byte", first, first + count - 1);
    while (count) {
        uint32_t n = count < ST_AN_MAX_ERASE_BATCH ? count : ST_AN_MAX_ERASE_BATCH;
        if (!a->info.ext_erase && n > 255)
            n = 255;
        /* Units the ROM erases only one per command (G0B1 bank 2), and the batch that
         * would run into them stops before. */
        uint32_t single = a->info.dev->erase_single_from;
        if (single && first >= single)
            n = 1;
        else if (single && first + n > single)
            n = single - first;
        erase_ctx c = {.first = first, .count = n};
        if ((rc = with_retry(a, do_erase, &c, err)) < 0)
            return st_err_wrap(err, rc, "erase %s %u-%u", a->info.dev->page_size ? "pages"
                                 : "sectors", first, first + n - 1);
        first += n;
        count -= n;
    }
    return 0;
}

int st_an_mass_erase(st_an3155 *a, st_err *err)
{
    int rc = need_dev(a, err);
    if (rc < 0)
        return rc;
    erase_ctx c = {.mass = true};
    if ((rc = with_retry(a, do_erase, &c, err)) < 0)
        return st_err_wrap(err, rc, "mass erase");
    return 0;
}

/* ---- Go, unprotect ---------------------------------------------------------------------- */

static int do_go(st_an3155 *a, void *ctx, st_err *err)
{
    uint32_t addr = *(uint32_t *)ctx;
    int rc = command(a, ST_AN_CMD_GO, err);
    if (rc < 0)
        return rc;
    return send_addr(a, addr, err);
}

int st_an_go(st_an3155 *a, uint32_t addr, st_err *err)
{
    int rc = with_retry(a, do_go, &addr, err);
    if (rc < 0)
        return st_err_wrap(err, rc, "go 0x%08x", addr);
    return 0;
}

static int unprotect(st_an3155 *a, uint8_t cmd, unsigned timeout_ms, const char *what,
                     st_err *err)
{
    int rc = command(a, cmd, err);
    if (rc == 0)
        rc = wait_ack(a, timeout_ms, "second ACK", err);
    if (rc < 0)
        return st_err_wrap(err, rc, "%s", what);
    return 0;
}

int st_an_readout_unprotect(st_an3155 *a, st_err *err)
{
    /* The second ACK comes after the mass erase: stm32flash's 35 s. */
    return unprotect(a, ST_AN_CMD_READOUT_UNPROTECT, a->cfg.mass_erase_ms,
                     "readout unprotect", err);
}

int st_an_write_unprotect(st_an3155 *a, st_err *err)
{
    return unprotect(a, ST_AN_CMD_WRITE_UNPROTECT, 1000, "write unprotect", err);
}

/* ---- flash with probe-then-decide, verify ---------------------------------------------- */

int st_an_verify(st_an3155 *a, uint32_t addr, const uint8_t *data, size_t len,
                 const st_progress *p, st_err *err)
{
    uint8_t buf[ST_AN_MAX_BLOCK];
    for (size_t off = 0; off < len;) {
        size_t n = len - off < ST_AN_MAX_BLOCK ? len - off : ST_AN_MAX_BLOCK;
        int rc = st_an_read(a, addr + (uint32_t)off, buf, n, NULL, err);
        if (rc < 0)
            return st_err_wrap(err, rc, "verify");
        if (memcmp(buf, data + off, n) != 0) {
            /* Read data carries no checksum: a noise hit on the way back looks like a
             * mismatch. Read once more before calling it one. */
            a->stats.retries++;
            rc = st_an_read(a, addr + (uint32_t)off, buf, n, NULL, err);
            if (rc < 0)
                return st_err_wrap(err, rc, "verify");
        }
        if (memcmp(buf, data + off, n) != 0) {
            size_t i = 0;
            while (buf[i] == data[off + i])
                i++;
            return st_err_set(err, ST_ERR_VERIFY,
                              "verify: 0x%08x reads 0x%02x, image has 0x%02x",
                              addr + (uint32_t)(off + i), buf[i], data[off + i]);
        }
        off += n;
        st_progress_update(p, "verify", off, len);
    }
    return 0;
}

int st_an_flash(st_an3155 *a, uint32_t addr, const uint8_t *data, size_t len,
                const st_an_flash_opts *o, st_an_flash_stats *stats, const st_progress *p,
                st_err *err)
{
    st_an_flash_opts def;
    st_an_flash_stats local;
    if (!o) {
        st_an_flash_opts_default(&def);
        o = &def;
    }
    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    int rc = need_dev(a, err);
    if (rc < 0)
        return rc;
    const st_an_dev *d = a->info.dev;
    st_an_erase_plan plan;
    if ((rc = st_an_plan_erase(d, addr, (uint32_t)len, &plan, err)) < 0)
        return st_err_wrap(err, rc, "flash");
    stats->units_total = plan.count;
    /* Without probing, stm32flash's rule: a whole-flash image gets one mass erase. */
    if (!o->skip_identical) {
        if (plan.mass && o->mass_erase_ok) {
            rc = st_an_mass_erase(a, err);
            stats->mass_erased = true;
        } else {
            rc = st_an_erase_units(a, plan.first, plan.count, err);
        }
        if (rc < 0)
            return st_err_wrap(err, rc, "flash");
        stats->units_erased = plan.count;
        if ((rc = st_an_write(a, addr, data, len, p, err)) < 0)
            return st_err_wrap(err, rc, "flash");
        stats->units_written = plan.count;
        stats->bytes_written = len;
    } else {
        uint8_t buf[ST_AN_MAX_BLOCK];
        uint32_t end = addr + (uint32_t)len;
        uint32_t at = addr;
        while (at < end) {
            uint32_t idx, ustart, usize;
            st_an_dev_unit(d, at, &idx, &ustart, &usize);
            uint32_t uend = ustart + usize < end ? ustart + usize : end;
            /* Probe: read block by block while the flash equals the image. */
            bool differs = false;
            uint32_t pos = at;
            while (pos < uend) {
                size_t n = uend - pos < ST_AN_MAX_BLOCK ? uend - pos : ST_AN_MAX_BLOCK;
                if ((rc = st_an_read(a, pos, buf, n, NULL, err)) < 0)
                    return st_err_wrap(err, rc, "flash: probe");
                stats->bytes_read += n;
                if (memcmp(buf, data + (pos - addr), n) != 0) {
                    differs = true;
                    break;
                }
                pos += (uint32_t)n;
            }
            if (!differs) {
                /* Compared in full: this unit is verified already. */
                stats->units_skipped++;
                stats->bytes_verified += uend - at;
            } else {
                if ((rc = st_an_erase_units(a, idx, 1, err)) < 0)
                    return st_err_wrap(err, rc, "flash");
                stats->units_erased++;
                if ((rc = st_an_write(a, at, data + (at - addr), uend - at, NULL, err)) < 0)
                    return st_err_wrap(err, rc, "flash");
                stats->units_written++;
                stats->bytes_written += uend - at;
                if (o->verify) {
                    rc = st_an_verify(a, at, data + (at - addr), uend - at, NULL, err);
                    if (rc < 0)
                        return st_err_wrap(err, rc, "flash");
                    stats->bytes_verified += uend - at;
                }
            }
            at = uend;
            st_progress_update(p, "write", at - addr, len);
        }
    }
    if (o->verify && !o->skip_identical) {
        if ((rc = st_an_verify(a, addr, data, len, p, err)) < 0)
            return st_err_wrap(err, rc, "flash");
        stats->bytes_verified = len;
    }
    return 0;
}
