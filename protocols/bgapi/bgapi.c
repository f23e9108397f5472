/* BGAPI UART DFU host engine (see bgapi.h; sequence from reference §5.3 as corrected by
 * §5.5: which reset each generation obeys, a response to every upload, a finish error is
 * a failure, two events after a failed boot). */
#include "protocols/bgapi/bgapi.h"

#include <stdlib.h>
#include <string.h>

#include "station/core/clock.h"

#define MOD "bgapi"
/* Bytes of one frame leave the module's UART back to back; a partial frame with no new
 * byte for this long started on garbage, so the finder drops its first byte and looks
 * again (a BGAPI frame has no checksum to tell). */
#define GAP_MS 50
/* Responses and events a DFU session meets are small; the SDK's host keeps 256. */
#define HOST_MAX_PAYLOAD 256
#define RXCAP (2 * (ST_BGAPI_HDR_LEN + HOST_MAX_PAYLOAD))

struct st_bgapi {
    st_stream *s;
    st_bgapi_opts o;
    st_bgapi_result r;
    uint8_t rx[RXCAP];
    size_t rx_len;
};

static const st_bgapi_rules host_rules = {
    .max_payload = HOST_MAX_PAYLOAD, .commands_only = false, .check_known = true};

const char *st_bgapi_entry_name(st_bgapi_entry e)
{
    switch (e) {
    case ST_BGAPI_ENTRY_SYSTEM_RESET: return "system_reset(1)";
    case ST_BGAPI_ENTRY_DFU_RESET: return "dfu_reset(1)";
    default: return "none";
    }
}

int st_bgapi_opts_check(const st_bgapi_opts *o, st_err *err)
{
    if (o && o->chunk && (o->chunk % 4 || o->chunk > ST_BGAPI_CHUNK_MAX))
        return st_err_set(err, ST_ERR_INVAL,
                          "chunk size %u: must be a multiple of 4 from 4 to %d (the bootloader "
                          "takes 255 payload bytes, one of them the length)",
                          o->chunk, ST_BGAPI_CHUNK_MAX);
    return 0;
}

int st_bgapi_open(st_stream *s, const st_bgapi_opts *opts, st_bgapi **out, st_err *err)
{
    if (!s || !out)
        return st_err_set(err, ST_ERR_INVAL, "bgapi: no stream");
    int rc = st_bgapi_opts_check(opts, err);
    if (rc)
        return rc;
    st_bgapi *b = calloc(1, sizeof *b);
    if (!b)
        return st_err_set(err, ST_ERR_NOMEM, "bgapi: out of memory");
    b->s = s;
    if (opts)
        b->o = *opts;
    if (!b->o.chunk)
        b->o.chunk = ST_BGAPI_CHUNK_DEFAULT;
    if (!b->o.first)
        b->o.first = ST_BGAPI_ENTRY_SYSTEM_RESET;
    if (!b->o.entry_timeout_ms)
        b->o.entry_timeout_ms = ST_BGAPI_ENTRY_TIMEOUT_MS;
    if (!b->o.resend_ms)
        b->o.resend_ms = ST_BGAPI_RESEND_MS;
    if (!b->o.rsp_timeout_ms)
        b->o.rsp_timeout_ms = ST_BGAPI_RSP_TIMEOUT_MS;
    if (!b->o.boot_timeout_ms)
        b->o.boot_timeout_ms = ST_BGAPI_BOOT_TIMEOUT_MS;
    if (!b->o.quiet_ms)
        b->o.quiet_ms = ST_BGAPI_QUIET_MS;
    b->r.chunk_size = b->o.chunk;
    *out = b;
    return 0;
}

void st_bgapi_close(st_bgapi *b)
{
    free(b);
}

const st_bgapi_result *st_bgapi_get_result(const st_bgapi *b)
{
    return &b->r;
}

static void pop(st_bgapi *b, size_t n)
{
    memmove(b->rx, b->rx + n, b->rx_len - n);
    b->rx_len -= n;
}

/* Next well-formed frame before d: 1 (m filled), 0 (deadline), < 0 (link error). */
static int next_msg(st_bgapi *b, st_deadline d, st_bgapi_msg_info *m, st_err *err)
{
    for (;;) {
        while (b->rx_len) {
            st_bgapi_check c = st_bgapi_frame_check(b->rx, b->rx_len, &host_rules);
            if (c.kind == ST_BGAPI_NEED_MORE)
                break;
            if (c.kind == ST_BGAPI_DROP) {
                b->r.dropped_bytes += c.len;
                pop(b, c.len);
                continue;
            }
            st_bgapi_decode(b->rx, c.len, m);
            pop(b, c.len);
            return 1;
        }
        int left = st_deadline_remaining_ms(d);
        if (left == 0)
            return 0;
        unsigned wait = (unsigned)left;
        if (b->rx_len && wait > GAP_MS)
            wait = GAP_MS;
        int rc = st_stream_read(b->s, b->rx + b->rx_len, sizeof b->rx - b->rx_len, wait, err);
        if (rc < 0)
            return rc;
        if (rc == 0 && b->rx_len && wait == GAP_MS) {
            /* A stalled partial frame: its start was garbage. */
            b->r.dropped_bytes++;
            pop(b, 1);
        }
        b->rx_len += (size_t)rc;
    }
}

static int send(st_bgapi *b, const uint8_t *f, size_t n, const char *what, st_err *err)
{
    int rc = st_stream_write(b->s, f, n, 1000, err);
    if (rc < 0)
        return st_err_wrap(err, rc, "send %s", what);
    return 0;
}

static int send_reset(st_bgapi *b, st_bgapi_entry e, uint8_t mode, st_err *err)
{
    uint8_t f[8];
    size_t n = e == ST_BGAPI_ENTRY_DFU_RESET ? st_bgapi_cmd_dfu_reset(mode, f, sizeof f)
                                             : st_bgapi_cmd_system_reset(mode, f, sizeof f);
    return send(b, f, n, e == ST_BGAPI_ENTRY_DFU_RESET ? "dfu_reset" : "system_reset", err);
}

static const char *rname(const st_bgapi *b, uint16_t code, char *buf, size_t cap)
{
    return st_bgapi_result_name(code, b->r.gen, buf, cap);
}

static void note_other(st_bgapi *b, const st_bgapi_msg_info *m, const char *during)
{
    b->r.ignored_frames++;
    ST_LOGD(b->o.log, MOD, "%s: ignored %s class 0x%02x id 0x%02x (%u bytes)", during,
            m->hdr.event ? "event" : "response", m->hdr.cls, m->hdr.id, m->hdr.len);
}

static void note_failure(st_bgapi *b, const st_bgapi_msg_info *m, const char *during)
{
    char nb[96];
    b->r.saw_boot_failure = true;
    b->r.boot_failure_reason = m->reason;
    ST_LOGW(b->o.log, MOD, "%s: evt_dfu_boot_failure, reason 0x%04x (%s)", during, m->reason,
            rname(b, m->reason, nb, sizeof nb));
}

int st_bgapi_enter_dfu(st_bgapi *b, st_err *err)
{
    st_bgapi_entry order[2] = {b->o.first, b->o.first == ST_BGAPI_ENTRY_DFU_RESET
                                               ? ST_BGAPI_ENTRY_SYSTEM_RESET
                                               : ST_BGAPI_ENTRY_DFU_RESET};
    unsigned sends[2] = {0, 0};
    st_deadline end = st_deadline_in_ms(b->o.entry_timeout_ms);
    b->r.entry = ST_BGAPI_ENTRY_NONE;
    b->r.gen = ST_BGAPI_GEN_UNKNOWN;
    uint64_t dropped0 = b->r.dropped_bytes;
    uint32_t frames = 0;
    /* What the module said before we asked anything: an evt_dfu_boot_failure from when it
     * came up is news (recorded); an evt_dfu_boot from then is stale and must not be
     * credited to the first reset we send (it would name the wrong generation). */
    st_bgapi_msg_info m;
    int rc;
    st_deadline pre = st_deadline_in_ms(GAP_MS);
    while ((rc = next_msg(b, pre, &m, err)) == 1) {
        if (m.kind == ST_BGAPI_MSG_EVT_DFU_BOOT_FAILURE)
            note_failure(b, &m, "enter DFU");
        else if (m.kind == ST_BGAPI_MSG_EVT_DFU_BOOT)
            ST_LOGD(b->o.log, MOD, "enter DFU: module already in DFU mode (bootloader 0x%08x)",
                    m.version);
        else
            note_other(b, &m, "enter DFU");
    }
    if (rc < 0)
        return st_err_wrap(err, rc, "enter DFU");
    for (unsigned i = 0;; i ^= 1) {
        rc = send_reset(b, order[i], ST_BGAPI_BOOT_UART_DFU, err);
        if (rc)
            return st_err_wrap(err, rc, "enter DFU");
        sends[i]++;
        b->r.entry_sends++;
        ST_LOGD(b->o.log, MOD, "enter DFU: sent %s", st_bgapi_entry_name(order[i]));
        st_deadline next = st_deadline_in_ms(b->o.resend_ms);
        if (next.at_us > end.at_us)
            next = end;
        while ((rc = next_msg(b, next, &m, err)) == 1) {
            frames++;
            if (m.kind == ST_BGAPI_MSG_EVT_DFU_BOOT) {
                b->r.entry = order[i];
                b->r.gen = order[i] == ST_BGAPI_ENTRY_DFU_RESET ? ST_BGAPI_GEN_SDK2
                                                               : ST_BGAPI_GEN_GSDK4;
                b->r.bootloader_version = m.version;
                ST_LOGI(b->o.log, MOD, "in DFU mode after %s: bootloader 0x%08x",
                        st_bgapi_entry_name(order[i]), m.version);
                return 0;
            }
            if (m.kind == ST_BGAPI_MSG_EVT_DFU_BOOT_FAILURE)
                note_failure(b, &m, "enter DFU");
            else
                note_other(b, &m, "enter DFU");
        }
        if (rc < 0)
            return st_err_wrap(err, rc, "enter DFU");
        if (st_deadline_passed(end)) {
            uint64_t junk = b->r.dropped_bytes - dropped0;
            return st_err_set(
                err, ST_ERR_TIMEOUT,
                "enter DFU: no evt_dfu_boot within %u ms: sent %s %u times and %s %u times; "
                "%u BGAPI frames and %llu other bytes came back (%s)",
                b->o.entry_timeout_ms, st_bgapi_entry_name(order[0]), sends[0],
                st_bgapi_entry_name(order[1]), sends[1], frames, (unsigned long long)junk,
                junk ? "bytes that are not BGAPI: check the baud rate and flow control"
                     : "silent: check power, wiring, baud rate and flow control");
        }
    }
}

/* Wait for the response of kind `want` (what: the command, for messages); *result gets
 * its result code. */
static int wait_rsp(st_bgapi *b, st_bgapi_kind want, const char *what, uint16_t *result,
                    st_err *err)
{
    st_deadline d = st_deadline_in_ms(b->o.rsp_timeout_ms);
    st_bgapi_msg_info m;
    int rc;
    while ((rc = next_msg(b, d, &m, err)) == 1) {
        if (m.kind == want) {
            *result = m.result;
            return 0;
        }
        if (m.kind == ST_BGAPI_MSG_EVT_DFU_BOOT)
            return st_err_set(err, ST_ERR_PROTO,
                              "the module restarted (evt_dfu_boot, bootloader 0x%08x) while "
                              "the %s response was due",
                              m.version, what);
        if (m.kind == ST_BGAPI_MSG_EVT_DFU_BOOT_FAILURE)
            note_failure(b, &m, what);
        else
            note_other(b, &m, what);
    }
    if (rc < 0)
        return rc;
    return st_err_set(err, ST_ERR_TIMEOUT, "no %s response within %u ms", what,
                      b->o.rsp_timeout_ms);
}

int st_bgapi_upload(st_bgapi *b, const uint8_t *img, size_t n, st_err *err)
{
    char nb[96];
    uint8_t f[ST_BGAPI_HDR_LEN + 1 + 255];
    uint16_t res = 0;
    b->r.chunk_size = b->o.chunk;
    b->r.chunks = (uint32_t)((n + b->o.chunk - 1) / b->o.chunk);
    b->r.chunks_done = 0;
    b->r.bytes_done = 0;
    if (n == 0 || n % 4)
        return st_err_set(err, ST_ERR_INVAL,
                          "upload: image length %zu is not a positive multiple of 4", n);
    /* The bootloader ignores the address (always answers 0); a station still checks. */
    size_t fl = st_bgapi_cmd_set_address(0, f, sizeof f);
    int rc = send(b, f, fl, "dfu_flash_set_address", err);
    if (rc == 0)
        rc = wait_rsp(b, ST_BGAPI_MSG_RSP_SET_ADDRESS, "dfu_flash_set_address", &res, err);
    if (rc)
        return st_err_wrap(err, rc, "set address 0");
    if (res) {
        b->r.last_result = res;
        return st_err_set(err, ST_ERR_DEVICE, "set address 0: device answered 0x%04x (%s)", res,
                          rname(b, res, nb, sizeof nb));
    }
    for (size_t off = 0; off < n; off += b->o.chunk) {
        size_t k = n - off < b->o.chunk ? n - off : b->o.chunk;
        uint32_t idx = b->r.chunks_done + 1;
        fl = st_bgapi_cmd_upload(img + off, k, f, sizeof f);
        rc = send(b, f, fl, "dfu_flash_upload", err);
        if (rc == 0)
            rc = wait_rsp(b, ST_BGAPI_MSG_RSP_UPLOAD, "dfu_flash_upload", &res, err);
        if (rc)
            return st_err_wrap(err, rc, "upload chunk %u of %u (bytes %zu..%zu)", idx,
                                 b->r.chunks, off, off + k - 1);
        if (res) {
            /* The bootloader parses the GBL stream as it arrives (reference §5.5). */
            b->r.last_result = res;
            return st_err_set(err, ST_ERR_DEVICE,
                              "upload chunk %u of %u (bytes %zu..%zu): device answered 0x%04x "
                              "(%s): the bootloader rejected the GBL stream",
                              idx, b->r.chunks, off, off + k - 1, res,
                              rname(b, res, nb, sizeof nb));
        }
        b->r.chunks_done = idx;
        b->r.bytes_done = off + k;
        st_progress_update(b->o.progress, "write", off + k, n);
    }
    return 0;
}

int st_bgapi_finish(st_bgapi *b, st_err *err)
{
    char nb[96];
    uint8_t f[8];
    uint16_t res = 0;
    size_t fl = st_bgapi_cmd_upload_finish(f, sizeof f);
    int rc = send(b, f, fl, "dfu_flash_upload_finish", err);
    if (rc == 0)
        rc = wait_rsp(b, ST_BGAPI_MSG_RSP_FINISH, "dfu_flash_upload_finish", &res, err);
    if (rc)
        return st_err_wrap(err, rc, "finish");
    if (res) {
        /* Unlike the vendor's example host, which prints this and exits 0. */
        b->r.last_result = res;
        return st_err_set(err, ST_ERR_DEVICE,
                          "finish: device answered 0x%04x (%s): the image was not accepted and "
                          "the module stays in DFU mode",
                          res, rname(b, res, nb, sizeof nb));
    }
    b->r.finished = true;
    return 0;
}

int st_bgapi_boot(st_bgapi *b, st_err *err)
{
    char nb[96];
    st_bgapi_entry e = b->r.entry ? b->r.entry : b->o.first;
    const char *cmd = e == ST_BGAPI_ENTRY_DFU_RESET ? "dfu_reset(0)" : "system_reset(0)";
    int rc = send_reset(b, e, ST_BGAPI_BOOT_NORMAL, err);
    if (rc)
        return st_err_wrap(err, rc, "restart");
    st_deadline d = st_deadline_in_ms(b->o.boot_timeout_ms);
    bool failed = false;
    st_bgapi_msg_info m;
    while ((rc = next_msg(b, d, &m, err)) == 1) {
        if (m.kind == ST_BGAPI_MSG_EVT_SYSTEM_BOOT) {
            b->r.booted = true;
            b->r.stack = m.boot;
            ST_LOGI(b->o.log, MOD, "booted: stack %u.%u.%u build %u", m.boot.major,
                    m.boot.minor, m.boot.patch, m.boot.build);
            return 0;
        }
        if (m.kind == ST_BGAPI_MSG_EVT_DFU_BOOT_FAILURE) {
            note_failure(b, &m, "restart");
            failed = true;
            /* evt_dfu_boot follows; give it a moment to record the bootloader. */
            st_deadline more = st_deadline_in_ms(b->o.resend_ms);
            if (more.at_us < d.at_us)
                d = more;
            continue;
        }
        if (m.kind == ST_BGAPI_MSG_EVT_DFU_BOOT) {
            if (failed)
                return st_err_set(err, ST_ERR_DEVICE,
                                  "restart: after %s the module did not start the new firmware: "
                                  "evt_dfu_boot_failure reason 0x%04x (%s); it is in DFU mode "
                                  "(bootloader 0x%08x)",
                                  cmd, b->r.boot_failure_reason,
                                  rname(b, b->r.boot_failure_reason, nb, sizeof nb), m.version);
            return st_err_set(err, ST_ERR_DEVICE,
                              "restart: after %s the module came back in DFU mode (evt_dfu_boot, "
                              "bootloader 0x%08x), not in the application",
                              cmd, m.version);
        }
        note_other(b, &m, "restart");
    }
    if (rc < 0)
        return st_err_wrap(err, rc, "restart");
    if (failed)
        return st_err_set(err, ST_ERR_DEVICE,
                          "restart: after %s the module did not start the new firmware: "
                          "evt_dfu_boot_failure reason 0x%04x (%s)",
                          cmd, b->r.boot_failure_reason,
                          rname(b, b->r.boot_failure_reason, nb, sizeof nb));
    return st_err_set(err, ST_ERR_TIMEOUT, "restart: no evt_system_boot within %u ms after %s",
                      b->o.boot_timeout_ms, cmd);
}

void st_bgapi_quiet(st_bgapi *b)
{
    st_deadline d = st_deadline_in_ms(b->o.quiet_ms);
    uint8_t junk[256];
    while (!st_deadline_passed(d)) {
        int left = st_deadline_remaining_ms(d);
        if (st_stream_read(b->s, junk, sizeof junk, (unsigned)left, NULL) < 0)
            break;
    }
    b->rx_len = 0;
}
