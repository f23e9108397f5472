/* Katapult host engine: see katapult.h and PROTOCOL.md. */
#include "protocols/katapult/katapult.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocols/katapult/frame.h"
#include "station/core/clock.h"
#include "station/core/mcu.h"
#include "station/core/text.h"

#define MOD "katapult"

struct st_katapult {
    st_stream *s;
    st_katapult_opts o; /* defaults filled in */
    st_katapult_info info;
    bool connected;
    uint32_t retries;
    /* Commands resent without a drain (after a NACK, or while polling CONNECT on entry)
     * whose first copy may still be answered: that many unexpected ACKs are skipped. */
    unsigned stale;
    size_t rx_len;
    uint8_t rx[2 * ST_KAT_FRAME_MAX];
    /* Per command (code & 7): how long its last two answers took, from the end of the
     * write to the whole frame in, and the shortest ever (us; 0 = not seen yet). They make
     * the hint for the next one (st_stream_expect_at): a CAN stream then sleeps through
     * the command's and the answer's frames and takes the answer at one wake-up. */
    uint32_t took[8][3];
    unsigned reads;               /* stream reads since the last command was written */
    size_t ans_len;               /* last accepted answer frame */
    uint8_t ans[ST_KAT_FRAME_MAX];
    uint8_t tx[ST_KAT_FRAME_MAX];
};

/* How one attempt ended. */
enum attempt {
    AT_OK,
    AT_TIMEOUT,
    AT_BAD_FRAME, /* CRC or trailer wrong */
    AT_NACK,
    AT_ERROR,     /* 0xF2 */
    AT_BUSY,      /* 0xF3 */
    AT_OTHER,     /* an answer code we do not know */
    AT_WRONG_CMD, /* ACK for another command */
    AT_SHORT,     /* ACK without the echoed command word */
    AT_STALE,     /* the late answer to an earlier copy of a resent command: skipped */
};

static const char *attempt_name(enum attempt a)
{
    switch (a) {
    case AT_OK: return "ok";
    case AT_TIMEOUT: return "no answer";
    case AT_BAD_FRAME: return "corrupt answer (CRC or trailer)";
    case AT_NACK: return "device answered NACK (0xF1: it saw a corrupt frame)";
    case AT_ERROR: return "device answered COMMAND ERROR (0xF2)";
    case AT_BUSY: return "device answered BUSY (0xF3)";
    case AT_OTHER: return "unknown answer code";
    case AT_WRONG_CMD: return "device acknowledged a different command";
    case AT_SHORT: return "ACK without the echoed command";
    case AT_STALE: return "late answer to an earlier command";
    }
    return "?";
}

static int attempt_code(enum attempt a)
{
    switch (a) {
    case AT_TIMEOUT: return ST_ERR_TIMEOUT;
    case AT_ERROR: return ST_ERR_DEVICE;
    case AT_BUSY: return ST_ERR_BUSY;
    default: return ST_ERR_PROTO;
    }
}

static unsigned or_default(unsigned v, unsigned d)
{
    return v ? v : d;
}

int st_katapult_open(st_stream *s, const st_katapult_opts *opts, st_katapult **out, st_err *err)
{
    if (!s || !out)
        return st_err_set(err, ST_ERR_INVAL, "katapult: no stream");
    st_katapult *k = calloc(1, sizeof *k);
    if (!k)
        return st_err_set(err, ST_ERR_NOMEM, "katapult: out of memory");
    k->s = s;
    if (opts)
        k->o = *opts;
    k->o.tries = or_default(k->o.tries, ST_KATAPULT_TRIES);
    k->o.read_timeout_ms = or_default(k->o.read_timeout_ms, ST_KATAPULT_READ_TIMEOUT_MS);
    k->o.block_tries = or_default(k->o.block_tries, ST_KATAPULT_BLOCK_TRIES);
    k->o.block_timeout_ms = or_default(k->o.block_timeout_ms, ST_KATAPULT_BLOCK_TIMEOUT_MS);
    k->o.addr_tries = or_default(k->o.addr_tries, ST_KATAPULT_ADDR_TRIES);
    k->o.retry_pause_ms = or_default(k->o.retry_pause_ms, ST_KATAPULT_RETRY_PAUSE_MS);
    k->o.busy_wait_ms = or_default(k->o.busy_wait_ms, ST_KATAPULT_BUSY_WAIT_MS);
    k->o.addr_pause_ms = or_default(k->o.addr_pause_ms, ST_KATAPULT_ADDR_PAUSE_MS);
    k->o.connect_poll_ms = or_default(k->o.connect_poll_ms, ST_KATAPULT_CONNECT_POLL_MS);
    *out = k;
    return 0;
}

void st_katapult_close(st_katapult *k)
{
    free(k);
}

uint32_t st_katapult_retries(const st_katapult *k)
{
    return k->retries;
}

const st_katapult_info *st_katapult_get_info(const st_katapult *k)
{
    return k->connected ? &k->info : NULL;
}

static void pop(st_katapult *k, size_t n)
{
    memmove(k->rx, k->rx + n, k->rx_len - n);
    k->rx_len -= n;
}

/* Read until one frame arrives. Returns 1 with the frame in k->ans, 0 on timeout, 2 when a
 * complete but corrupt frame was seen (counts as a failed attempt, like flashtool's CRC and
 * trailer checks), or < 0 on a link error. Garbage between frames is skipped. */
static int read_frame(st_katapult *k, st_deadline d, st_err *err)
{
    for (;;) {
        while (k->rx_len) {
            st_kat_check c = st_kat_frame_check(k->rx, k->rx_len, ST_KAT_FRAME_MAX);
            if (c.kind == ST_KAT_FRAME) {
                memcpy(k->ans, k->rx, c.len);
                k->ans_len = c.len;
                pop(k, c.len);
                return 1;
            }
            if (c.kind == ST_KAT_NEED_MORE)
                break;
            pop(k, c.len);
            if (c.reason == ST_KAT_DROP_CRC || c.reason == ST_KAT_DROP_TRAILER) {
                ST_LOGD(k->o.log, MOD, "%s: dropped a corrupt answer frame", k->s->name);
                return 2;
            }
        }
        if (k->rx_len == sizeof k->rx) /* cannot happen: a frame fits half the buffer */
            k->rx_len = 0;
        int left = st_clock_deadline_remaining_ms(k->s->clock, d);
        if (left == 0)
            return 0;
        /* Once a frame's header is in, its length is known: ask for the rest at once (a
         * CAN stream then wakes once for the batch, not at every frame). */
        size_t need = 1;
        if (k->rx_len >= 4 && k->rx[0] == ST_KAT_STX1 && k->rx[1] == ST_KAT_STX2) {
            size_t len = (size_t)k->rx[3] * 4u + ST_KAT_FRAME_OVERHEAD;
            if (len <= ST_KAT_FRAME_MAX && len > k->rx_len)
                need = len - k->rx_len;
        }
        k->reads++;
        int rc = st_stream_read_min(k->s, k->rx + k->rx_len, sizeof k->rx - k->rx_len, need,
                                    (unsigned)left, err);
        if (rc < 0)
            return rc;
        k->rx_len += (size_t)rc;
    }
}

/* Discard input until the deadline: flashtool's "drain, then sleep" between attempts, spent
 * listening so a late answer cannot be taken for the next one. */
static int drain(st_katapult *k, unsigned ms, st_err *err)
{
    st_deadline d = st_clock_deadline_in_ms(k->s->clock, ms);
    k->rx_len = 0;
    k->stale = 0; /* whatever was still owed is drained with the rest */
    for (;;) {
        int left = st_clock_deadline_remaining_ms(k->s->clock, d);
        if (left == 0)
            return 0;
        uint8_t junk[256];
        int rc = st_stream_read(k->s, junk, sizeof junk, (unsigned)left, err);
        if (rc < 0)
            return rc;
    }
}

/* What one answer frame (in k->ans) says about command cmd (addr: the block address a
 * SEND_BLOCK/REQUEST_BLOCK answer must echo, NULL for other commands). */
static enum attempt classify(st_katapult *k, uint8_t cmd, const uint32_t *addr)
{
    uint8_t code = st_kat_frame_code(k->ans);
    if (code == ST_KAT_RSP_ERROR)
        return AT_ERROR;
    if (code == ST_KAT_RSP_BUSY)
        return AT_BUSY;
    if (code == ST_KAT_RSP_NACK)
        return AT_NACK;
    if (code != ST_KAT_RSP_ACK)
        return AT_OTHER;
    size_t len = st_kat_frame_payload_len(k->ans);
    const uint8_t *p = st_kat_frame_payload(k->ans);
    if (len < 4)
        return AT_SHORT;
    bool other_cmd = st_kat_get_le32(p) != cmd;
    bool other_addr = addr && len >= 8 && st_kat_get_le32(p + 4) != *addr;
    /* An ACK for another command, or for another block of this one, while earlier copies
     * of commands are still owed an answer: that answer, late. */
    if ((other_cmd || other_addr) && k->stale) {
        k->stale--;
        return AT_STALE;
    }
    return other_cmd ? AT_WRONG_CMD : AT_OK;
}

/* When the answer to cmd may be expected, from the end of its write: the shorter of its
 * last two answers' times (one slow answer, a page erase, does not move it), but never more
 * than an eighth above the shortest ever: on a bus shared with other units an answer's time
 * varies with their traffic, and a hint past its arrival would leave the bus idle. 0 while
 * fewer than two were seen. */
static uint32_t expect_for(const st_katapult *k, uint8_t cmd)
{
    const uint32_t *t = k->took[cmd & 7];
    if (!t[0] || !t[1])
        return 0;
    uint32_t e = t[0] < t[1] ? t[0] : t[1], cap = t[2] + t[2] / 8u;
    return e < cap ? e : cap;
}

/* Learn how long cmd's answer took. Taken whole at the hinted wake-up (one read), it was in
 * by then and counts as the hint itself (how much earlier is not known); otherwise the
 * time it was complete. */
static void learn(st_katapult *k, uint8_t cmd, uint32_t expect, uint64_t sent)
{
    uint32_t *t = k->took[cmd & 7];
    uint64_t took = st_clock_now_us(k->s->clock) - sent;
    if (expect && k->reads == 1)
        took = expect;
    t[0] = t[1];
    t[1] = took == 0 ? 1u : took > UINT32_MAX ? UINT32_MAX : (uint32_t)took;
    if (!t[2] || t[1] < t[2])
        t[2] = t[1];
}

/* Send one command and wait for its ACK, with up to `tries` attempts (reference §2.4).
 * On success k->ans holds the ACK frame. A NACK says the device lost frame sync (garbage
 * on the line before our frame, or our frame damaged): the command is resent at once, not
 * after flashtool's 0.5 s pause, and its first copy's answer, if one comes, is skipped. */
static int transact(st_katapult *k, uint8_t cmd, const uint8_t *payload, size_t plen,
                    unsigned tries, unsigned timeout_ms, const uint32_t *addr, st_err *err)
{
    size_t n = st_kat_frame_encode(cmd, payload, plen, k->tx, sizeof k->tx);
    if (!n)
        return st_err_set(err, ST_ERR_INVAL, "payload of %zu bytes cannot be framed", plen);
    enum attempt last = AT_TIMEOUT;
    for (unsigned t = 0; t < tries; t++) {
        if (t) {
            k->retries++;
            ST_LOGD(k->o.log, MOD, "%s: %s: %s, resending (%u of %u)", k->s->name,
                    st_kat_code_name(cmd), attempt_name(last), t + 1, tries);
            if (last == AT_NACK) {
                if (k->stale < tries)
                    k->stale++;
            } else {
                int rc = drain(k, last == AT_BUSY ? k->o.busy_wait_ms : k->o.retry_pause_ms,
                               err);
                if (rc < 0)
                    return rc;
            }
        }
        int rc = st_stream_write(k->s, k->tx, n, timeout_ms, err);
        if (rc < 0)
            return rc;
        uint64_t sent = st_clock_now_us(k->s->clock);
        uint32_t expect = t == 0 ? expect_for(k, cmd) : 0;
        if (expect)
            st_stream_expect_at(k->s, sent + expect);
        k->reads = 0;
        st_deadline d = st_clock_deadline_in_ms(k->s->clock, timeout_ms);
        do {
            rc = read_frame(k, d, err);
            if (rc < 0)
                return rc;
            last = rc == 0 ? AT_TIMEOUT : rc == 2 ? AT_BAD_FRAME : classify(k, cmd, addr);
        } while (last == AT_STALE);
        if (last == AT_OK) {
            if (t == 0)
                learn(k, cmd, expect, sent);
            return 0;
        }
    }
    return st_err_set(err, attempt_code(last), "%s after %u %s", attempt_name(last), tries,
                      tries == 1 ? "try" : "tries");
}

static const uint8_t *ack_data(const st_katapult *k, size_t *len)
{
    *len = st_kat_frame_payload_len(k->ans) - 4;
    return st_kat_frame_payload(k->ans) + 4;
}

/* Copy an untrusted, possibly unterminated string of at most n bytes, printable only. */
static void copy_text(char *out, size_t cap, const uint8_t *in, size_t n)
{
    char raw[ST_KATAPULT_TEXT_MAX];
    size_t m = 0;
    while (m < n && m + 1 < sizeof raw && in[m])
        m++;
    memcpy(raw, in, m);
    raw[m] = '\0';
    st_text_printable(raw, out, cap);
}

static int parse_connect(st_katapult *k, st_katapult_info *info, st_err *err)
{
    size_t len;
    const uint8_t *p = ack_data(k, &len);
    memset(info, 0, sizeof *info);
    if (len < 12)
        return st_err_set(err, ST_ERR_PROTO, "CONNECT answer too short (%zu bytes)", len);
    info->proto_version = st_kat_get_le32(p);
    info->app_start = st_kat_get_le32(p + 4);
    info->block_size = st_kat_get_le32(p + 8);
    snprintf(info->proto, sizeof info->proto, "%u.%u.%u", (info->proto_version >> 16) & 0xff,
             (info->proto_version >> 8) & 0xff, info->proto_version & 0xff);
    uint32_t bs = info->block_size;
    if (bs != 64 && bs != 128 && bs != 256 && bs != 512)
        return st_err_set(err, ST_ERR_PROTO, "CONNECT: invalid block size %u", bs);
    if (info->app_start % bs)
        return st_err_set(err, ST_ERR_PROTO, "CONNECT: app start 0x%08x not block aligned",
                          info->app_start);
    /* Strings: MCU up to its first zero byte; from 1.1.0 on, the version string follows
     * after the zero padding (one extra zero word, reference §2.2). */
    const uint8_t *s = p + 12, *end = p + len;
    size_t mlen = 0;
    while (s + mlen < end && s[mlen])
        mlen++;
    copy_text(info->mcu, sizeof info->mcu, s, mlen);
    if ((info->proto_version & 0xffffff) >= 0x010100) {
        const uint8_t *v = s + mlen;
        while (v < end && !*v)
            v++;
        size_t vlen = 0;
        while (v + vlen < end && v[vlen])
            vlen++;
        copy_text(info->sw_version, sizeof info->sw_version, v, vlen);
        info->has_sw_version = vlen > 0;
    }
    if (!info->mcu[0])
        return st_err_set(err, ST_ERR_PROTO, "CONNECT: empty MCU string");
    return 0;
}

/* Entry: resend CONNECT every connect_poll_ms until it is answered or connect_within_ms
 * have passed. A unit still rebooting into Katapult loses the frames sent meanwhile; each
 * unanswered copy may yet be answered late, and such answers are skipped. */
static int connect_poll(st_katapult *k, st_err *err)
{
    st_deadline end = st_clock_deadline_in_ms(k->s->clock, k->o.connect_within_ms);
    for (unsigned n = 0;; n++) {
        if (n)
            k->retries++;
        int rc = transact(k, ST_KAT_CMD_CONNECT, NULL, 0, 1, k->o.connect_poll_ms, NULL, err);
        if (rc == 0 || (rc != ST_ERR_TIMEOUT && rc != ST_ERR_PROTO))
            return rc;
        if (st_clock_deadline_passed(k->s->clock, end))
            return st_err_wrap(err, rc, "within %u ms", k->o.connect_within_ms);
        if (k->stale < 64)
            k->stale++;
    }
}

int st_katapult_connect(st_katapult *k, st_katapult_info *info, st_err *err)
{
    k->connected = false;
    k->rx_len = 0;
    if (k->o.prime) {
        /* STM32 double-buffered USB FS drops the first answer after enumeration: an
         * invalid command soaks it up (reference §2.4). Whatever comes back is discarded. */
        size_t n = st_kat_frame_encode(ST_KAT_CMD_PRIME, NULL, 0, k->tx, sizeof k->tx);
        int rc = st_stream_write(k->s, k->tx, n, k->o.read_timeout_ms, err);
        if (rc < 0)
            return st_err_wrap(err, rc, "katapult: prime");
        rc = read_frame(k, st_clock_deadline_in_ms(k->s->clock, k->o.read_timeout_ms), err);
        if (rc < 0)
            return st_err_wrap(err, rc, "katapult: prime");
        k->rx_len = 0;
    }
    int rc = k->o.connect_within_ms ? connect_poll(k, err)
                                    : transact(k, ST_KAT_CMD_CONNECT, NULL, 0, k->o.tries,
                                               k->o.read_timeout_ms, NULL, err);
    if (rc == 0)
        rc = parse_connect(k, &k->info, err);
    if (rc < 0)
        return st_err_wrap(err, rc, "katapult: CONNECT");
    k->connected = true;
    ST_LOGI(k->o.log, MOD, "%s: Katapult %s, MCU %s, app 0x%08x, block %u%s%s", k->s->name,
            k->info.proto, k->info.mcu, k->info.app_start, k->info.block_size,
            k->info.has_sw_version ? ", version " : "", k->info.sw_version);
    if (info)
        *info = k->info;
    return 0;
}

int st_katapult_check_mcu(const st_katapult_info *info, const char *expected, st_err *err)
{
    if (!info || !expected)
        return st_err_set(err, ST_ERR_INVAL, "katapult: no MCU to compare");
    if (strcasecmp(info->mcu, expected) != 0)
        return st_err_set(err, ST_ERR_MISMATCH,
                          "katapult: unit reports MCU '%s' but the image is for '%s'", info->mcu,
                          expected);
    return 0;
}

int st_katapult_get_canbus_id(st_katapult *k, uint8_t uuid[6], st_err *err)
{
    int rc = transact(k, ST_KAT_CMD_GET_CANBUS_ID, NULL, 0, k->o.tries, k->o.read_timeout_ms,
                      NULL, err);
    if (rc < 0)
        return st_err_wrap(err, rc, "katapult: GET_CANBUS_ID");
    size_t len;
    const uint8_t *p = ack_data(k, &len);
    if (len < 6)
        return st_err_set(err, ST_ERR_PROTO, "katapult: GET_CANBUS_ID: answer too short (%zu)",
                          len);
    memcpy(uuid, p, 6);
    return 0;
}

int st_katapult_complete(st_katapult *k, st_err *err)
{
    int rc = transact(k, ST_KAT_CMD_COMPLETE, NULL, 0, k->o.tries, k->o.read_timeout_ms, NULL,
                      err);
    if (rc < 0)
        return st_err_wrap(err, rc, "katapult: COMPLETE");
    return 0;
}

/* One SEND_BLOCK / REQUEST_BLOCK with flashtool's echoed-address loop. */
static int block_cmd(st_katapult *k, uint8_t cmd, uint32_t addr, const uint8_t *data,
                     st_err *err)
{
    uint8_t payload[4 + 512];
    size_t plen = 4;
    st_kat_put_le32(payload, addr);
    if (data) {
        memcpy(payload + 4, data, k->info.block_size);
        plen += k->info.block_size;
    }
    bool send = cmd == ST_KAT_CMD_SEND_BLOCK;
    unsigned tries = send ? k->o.block_tries : k->o.tries;
    unsigned tmo = send ? k->o.block_timeout_ms : k->o.read_timeout_ms;
    uint32_t got = 0;
    for (unsigned a = 0; a < k->o.addr_tries; a++) {
        if (a) {
            k->retries++;
            int rc = drain(k, k->o.addr_pause_ms, err);
            if (rc < 0)
                return rc;
        }
        int rc = transact(k, cmd, payload, plen, tries, tmo, &addr, err);
        if (rc < 0)
            return rc;
        size_t len;
        const uint8_t *p = ack_data(k, &len);
        size_t want = send ? 4 : 4 + k->info.block_size;
        if (len < want)
            return st_err_set(err, ST_ERR_PROTO, "answer has %zu data bytes, expected %zu", len,
                              want);
        got = st_kat_get_le32(p);
        if (got == addr)
            return 0;
        ST_LOGD(k->o.log, MOD, "%s: %s 0x%08x: device echoed 0x%08x", k->s->name,
                st_kat_code_name(cmd), addr, got);
    }
    return st_err_set(err, ST_ERR_PROTO, "device echoed block 0x%08x %u times", got,
                      k->o.addr_tries);
}

static void finish_digests(st_digest *d1, st_digest *d256, st_katapult_result *r)
{
    uint8_t out[ST_DIGEST_MAX];
    st_digest_final(d1, out);
    memcpy(r->sha1, out, ST_SHA1_LEN);
    st_hex(r->sha1, ST_SHA1_LEN, true, r->sha1_hex);
    st_digest_final(d256, out);
    memcpy(r->sha256, out, ST_SHA256_LEN);
    st_hex(r->sha256, ST_SHA256_LEN, false, r->sha256_hex);
}

/* Where img goes and how many blocks it spans; checks both against the unit. */
static int image_place(st_katapult *k, const st_image *img, const char *what, uint32_t *base,
                       uint32_t *blocks, st_err *err)
{
    if (!k->connected)
        return st_err_set(err, ST_ERR_INVAL, "katapult: %s: not connected", what);
    if (!img || !img->size)
        return st_err_set(err, ST_ERR_INVAL, "katapult: %s: empty image", what);
    uint32_t bs = k->info.block_size;
    uint32_t b = img->load_addr ? img->load_addr : k->info.app_start;
    uint64_t nb = (img->size + bs - 1) / bs;
    if (b < k->info.app_start || b % bs || (uint64_t)b + nb * bs > UINT32_MAX + 1ull)
        return st_err_set(err, ST_ERR_INVAL,
                          "katapult: %s: %s: load address 0x%08x is not a block-aligned address "
                          "at or above the application start 0x%08x",
                          what, img->path ? img->path : "image", b, k->info.app_start);
    *base = b;
    *blocks = (uint32_t)nb;
    return 0;
}

static void padded_block(const st_image *img, uint32_t i, uint32_t bs, uint8_t *out)
{
    size_t off = (size_t)i * bs, n = img->size - off < bs ? img->size - off : bs;
    memcpy(out, img->data + off, n);
    memset(out + n, 0xFF, bs - n);
}

/* Probe-then-decide for the page holding blocks first.. (up to page_end): read its blocks
 * back one by one and stop at the first that differs from the image (*skip = false: the
 * page must be written); *skip = true when every block matches. */
static int probe_page(st_katapult *k, const st_image *img, uint32_t first, uint32_t base,
                      uint32_t nblocks, uint32_t page_end, st_katapult_result *r, bool *skip,
                      st_err *err)
{
    uint32_t bs = k->info.block_size;
    uint8_t want[512];
    *skip = true;
    for (uint32_t i = first; i < nblocks && base + i * bs < page_end; i++) {
        uint32_t addr = base + i * bs;
        r->fail_addr = addr;
        int rc = block_cmd(k, ST_KAT_CMD_REQUEST_BLOCK, addr, NULL, err);
        if (rc < 0)
            return st_err_wrap(err, rc, "katapult: probe: REQUEST_BLOCK 0x%08x", addr);
        r->blocks_probed++;
        size_t len;
        const uint8_t *got = ack_data(k, &len) + 4;
        padded_block(img, i, bs, want);
        if (memcmp(want, got, bs) != 0) {
            *skip = false;
            return 0;
        }
    }
    return 0;
}

static int flash_blocks(st_katapult *k, const st_image *img, const st_katapult_flash_opts *fo,
                        st_katapult_result *r, st_err *err)
{
    uint32_t base, nblocks, bs = k->info.block_size;
    int rc = image_place(k, img, "flash", &base, &nblocks, err);
    if (rc < 0)
        return rc;
    r->blocks = nblocks;
    uint32_t page = fo ? fo->page_size : 0, start = fo ? fo->start_addr : 0;
    if (!page && fo && (fo->start_addr || fo->skip_page || fo->probe)) {
        const st_mcu *m = st_mcu_find(k->info.mcu);
        if (!m)
            return st_err_set(err, ST_ERR_INVAL,
                              "katapult: flash: page size of MCU '%s' unknown; give it",
                              k->info.mcu);
        page = m->page_size;
    }
    if (page && (page % bs || (start && start % page)))
        return st_err_set(err, ST_ERR_INVAL,
                          "katapult: flash: start 0x%08x / page size %u do not fit blocks of %u",
                          start, page, bs);
    if (start && (start < base || start >= base + nblocks * bs))
        return st_err_set(err, ST_ERR_INVAL, "katapult: flash: start 0x%08x outside the image",
                          start);
    uint8_t block[512];
    bool probe = fo && fo->probe && !fo->skip_page;
    bool skip = false;
    for (uint32_t i = 0; i < nblocks; i++) {
        uint32_t addr = base + i * bs;
        if (addr < start) {
            r->blocks_skipped++;
            continue;
        }
        /* At each page's first block (or the image's first), decide about the page. */
        if ((fo && fo->skip_page) || probe) {
            uint32_t pa = addr - addr % page;
            if (addr == pa || addr == base || addr == start) {
                if (probe) {
                    rc = probe_page(k, img, i, base, nblocks, pa + page, r, &skip, err);
                    if (rc < 0)
                        return rc;
                } else {
                    skip = fo->skip_page(fo->skip_ctx, pa);
                }
                r->pages_skipped += skip;
            }
            if (skip) {
                r->blocks_skipped++;
                continue;
            }
        }
        r->fail_addr = addr;
        padded_block(img, i, bs, block);
        rc = block_cmd(k, ST_KAT_CMD_SEND_BLOCK, addr, block, err);
        if (rc < 0)
            return st_err_wrap(err, rc, "katapult: SEND_BLOCK 0x%08x (block %u of %u)", addr,
                                 i + 1, nblocks);
        r->blocks_sent++;
        r->any_done = true;
        r->last_addr = addr;
        st_progress_update(k->o.progress, "write", (uint64_t)(i + 1) * bs,
                           (uint64_t)nblocks * bs);
    }
    r->fail_addr = 0;
    rc = transact(k, ST_KAT_CMD_SEND_EOF, NULL, 0, k->o.tries, k->o.read_timeout_ms, NULL, err);
    if (rc < 0)
        return st_err_wrap(err, rc, "katapult: SEND_EOF");
    size_t len;
    const uint8_t *p = ack_data(k, &len);
    if (len < 4)
        return st_err_set(err, ST_ERR_PROTO, "katapult: SEND_EOF: no page count");
    r->pages = st_kat_get_le32(p);
    ST_LOGI(k->o.log, MOD, "%s: write complete: %u pages, %u blocks sent, %u skipped",
            k->s->name, r->pages, r->blocks_sent, r->blocks_skipped);
    return 0;
}

static int run_with_digests(st_katapult *k, const st_image *img, const st_katapult_flash_opts *fo,
                            st_katapult_result *r, bool verify, st_err *err);

int st_katapult_flash(st_katapult *k, const st_image *img, const st_katapult_flash_opts *fo,
                      st_katapult_result *r, st_err *err)
{
    return run_with_digests(k, img, fo, r, false, err);
}

static int verify_blocks(st_katapult *k, const st_image *img, st_katapult_result *r,
                         st_digest *d1, st_digest *d256, st_err *err)
{
    uint32_t base, nblocks, bs = k->info.block_size;
    int rc = image_place(k, img, "verify", &base, &nblocks, err);
    if (rc < 0)
        return rc;
    r->blocks = nblocks;
    uint8_t want[512];
    bool bad = false;
    uint32_t bad_addr = 0;
    size_t bad_off = 0;
    for (uint32_t i = 0; i < nblocks; i++) {
        uint32_t addr = base + i * bs;
        r->fail_addr = addr;
        rc = block_cmd(k, ST_KAT_CMD_REQUEST_BLOCK, addr, NULL, err);
        if (rc < 0)
            return st_err_wrap(err, rc, "katapult: REQUEST_BLOCK 0x%08x (block %u of %u)", addr,
                                 i + 1, nblocks);
        size_t len;
        const uint8_t *got = ack_data(k, &len) + 4;
        st_digest_update(d1, got, bs);
        st_digest_update(d256, got, bs);
        padded_block(img, i, bs, want);
        if (!bad && memcmp(want, got, bs) != 0) {
            bad = true;
            bad_addr = addr;
            for (bad_off = 0; want[bad_off] == got[bad_off]; bad_off++)
                ;
        }
        r->blocks_verified++;
        r->any_done = true;
        r->last_addr = addr;
        st_progress_update(k->o.progress, "verify", (uint64_t)(i + 1) * bs,
                           (uint64_t)nblocks * bs);
    }
    r->fail_addr = 0;
    finish_digests(d1, d256, r);
    if (bad) {
        r->fail_addr = bad_addr;
        return st_err_set(err, ST_ERR_VERIFY,
                          "katapult: verify: block 0x%08x differs (first at 0x%08x); "
                          "read-back SHA-1 %s",
                          bad_addr, bad_addr + (uint32_t)bad_off, r->sha1_hex);
    }
    return 0;
}

int st_katapult_verify(st_katapult *k, const st_image *img, st_katapult_result *r, st_err *err)
{
    return run_with_digests(k, img, NULL, r, true, err);
}

static int run_with_digests(st_katapult *k, const st_image *img, const st_katapult_flash_opts *fo,
                            st_katapult_result *r, bool verify, st_err *err)
{
    st_katapult_result local;
    if (!r)
        r = &local;
    memset(r, 0, sizeof *r);
    uint32_t retries0 = k->retries;
    st_digest *d1 = st_digest_new(ST_DIGEST_SHA1), *d256 = st_digest_new(ST_DIGEST_SHA256);
    int rc;
    if (!d1 || !d256)
        rc = st_err_set(err, ST_ERR_NOMEM, "katapult: out of memory");
    else if (verify)
        rc = verify_blocks(k, img, r, d1, d256, err); /* finishes the digests itself */
    else if ((rc = flash_blocks(k, img, fo, r, err)) == 0) {
        /* What was sent is the padded image: its digests are the image's, computed once
         * per image and block size (st_image_padded_digests), not once per unit. */
        if (st_image_padded_digests(img, k->info.block_size, r->sha1, r->sha256) != 0) {
            rc = st_err_set(err, ST_ERR_NOMEM, "katapult: out of memory");
        } else {
            st_hex(r->sha1, ST_SHA1_LEN, true, r->sha1_hex);
            st_hex(r->sha256, ST_SHA256_LEN, false, r->sha256_hex);
        }
    }
    r->retries = k->retries - retries0;
    st_digest_free(d1);
    st_digest_free(d256);
    return rc;
}

int st_katapult_read(st_katapult *k, uint32_t addr, size_t len, uint8_t *buf, st_err *err)
{
    if (!k->connected)
        return st_err_set(err, ST_ERR_INVAL, "katapult: read: not connected");
    uint32_t bs = k->info.block_size;
    if ((uint64_t)addr + len > UINT32_MAX + 1ull)
        return st_err_set(err, ST_ERR_INVAL, "katapult: read: range past 4 GiB");
    size_t done = 0;
    while (done < len) {
        uint32_t a = addr + (uint32_t)done;
        uint32_t blk = a - a % bs, off = a - blk;
        int rc = block_cmd(k, ST_KAT_CMD_REQUEST_BLOCK, blk, NULL, err);
        if (rc < 0)
            return st_err_wrap(err, rc, "katapult: read: REQUEST_BLOCK 0x%08x", blk);
        size_t n = bs - off < len - done ? bs - off : len - done, dlen;
        memcpy(buf + done, ack_data(k, &dlen) + 4 + off, n);
        done += n;
        st_progress_update(k->o.progress, "read", done, len);
    }
    return 0;
}
