/* DfuSe host engine: see dfuse.h and PROTOCOL.md. Protocol facts from
 * shared/reference/protocols.md §1 (cited as §1.x). */
#include "protocols/dfuse/dfuse.h"

#include <stdlib.h>
#include <string.h>

#include "station/core/clock.h"
#include "station/core/digest.h"
#include "station/core/text.h"

#define MOD "dfuse"

/* §1.1 requests, §1.2 states. */
enum { R_DETACH, R_DNLOAD, R_UPLOAD, R_GETSTATUS, R_CLRSTATUS, R_GETSTATE, R_ABORT };
enum {
    S_APP_IDLE = 0, S_APP_DETACH = 1, S_IDLE = 2, S_DNLOAD_SYNC = 3, S_DNBUSY = 4,
    S_DNLOAD_IDLE = 5, S_MANIFEST_SYNC = 6, S_MANIFEST = 7, S_MANIFEST_WAIT_RESET = 8,
    S_UPLOAD_IDLE = 9, S_ERROR = 10,
};
#define OUT_CLASS 0x21
#define IN_CLASS 0xA1
#define MAX_XFER 4096 /* dfu-util clamps to this on Linux (§1.4) */
#define BUSY_CAP_MS 60000u /* no device-requested wait chain may exceed this */

struct st_dfuse {
    st_usb_dev *dev;
    const st_logger *log;
    st_dfuse_info info;
    unsigned timeout_ms;
};

typedef struct dfu_status {
    uint8_t status;
    uint32_t poll_ms;
    uint8_t state;
} dfu_status;

const char *st_dfu_status_name(uint8_t s)
{
    static const char *const names[] = {
        "OK", "errTARGET", "errFILE", "errWRITE", "errERASE", "errCHECK_ERASED", "errPROG",
        "errVERIFY", "errADDRESS", "errNOTDONE", "errFIRMWARE", "errVENDOR", "errUSBR",
        "errPOR", "errUNKNOWN", "errSTALLEDPKT",
    };
    return s < sizeof names / sizeof names[0] ? names[s] : "INVALID";
}

const char *st_dfu_state_name(uint8_t s)
{
    static const char *const names[] = {
        "appIDLE", "appDETACH", "dfuIDLE", "dfuDNLOAD-SYNC", "dfuDNBUSY", "dfuDNLOAD-IDLE",
        "dfuMANIFEST-SYNC", "dfuMANIFEST", "dfuMANIFEST-WAIT-RESET", "dfuUPLOAD-IDLE",
        "dfuERROR",
    };
    return s < sizeof names / sizeof names[0] ? names[s] : "UNKNOWN";
}

static const st_dfuse_opts default_opts = {0};

static unsigned tmo(const st_dfuse *d, const st_dfuse_opts *o)
{
    return o && o->request_timeout_ms ? o->request_timeout_ms : d->timeout_ms;
}

static int req_out(st_dfuse *d, uint8_t req, uint16_t value, const uint8_t *data, uint16_t len,
                   unsigned timeout_ms, st_err *err)
{
    st_usb_setup s = {OUT_CLASS, req, value, d->info.iface, len};
    return st_usb_control(d->dev, &s, (uint8_t *)data, timeout_ms, err);
}

static int req_in(st_dfuse *d, uint8_t req, uint16_t value, uint8_t *data, uint16_t len,
                  unsigned timeout_ms, st_err *err)
{
    st_usb_setup s = {IN_CLASS, req, value, d->info.iface, len};
    return st_usb_control(d->dev, &s, data, timeout_ms, err);
}

static int get_status(st_dfuse *d, dfu_status *st, unsigned timeout_ms, st_dfuse_result *r,
                      st_err *err)
{
    uint8_t b[6];
    *st = (dfu_status){0}; /* defined even on error: callers' error paths name its state */
    int rc = req_in(d, R_GETSTATUS, 0, b, 6, timeout_ms, err);
    if (rc < 0)
        return st_err_wrap(err, rc, "GETSTATUS");
    /* dfu-util treats anything but 6 bytes as failure (§1.1). */
    if (rc != 6)
        return st_err_set(err, ST_ERR_PROTO, "GETSTATUS: %d-byte answer, want 6", rc);
    st->status = b[0];
    st->poll_ms = b[1] | (uint32_t)b[2] << 8 | (uint32_t)b[3] << 16;
    st->state = b[4];
    if (r) {
        r->dfu_status = st->status;
        r->dfu_state = st->state;
    }
    return 0;
}

/* Bring the device to dfuIDLE/OK from wherever it is (§1.5 start-up handling). */
static int to_idle(st_dfuse *d, unsigned timeout_ms, st_dfuse_result *r, st_err *err)
{
    dfu_status st;
    for (int round = 0; round < 3; round++) {
        int rc = get_status(d, &st, timeout_ms, r, err);
        if (rc < 0)
            return rc;
        if (st.state == S_IDLE && st.status == 0)
            return 0;
        if (st.state == S_APP_IDLE || st.state == S_APP_DETACH)
            return st_err_set(err, ST_ERR_PROTO,
                              "device is in run-time mode (%s), not the DFU bootloader",
                              st_dfu_state_name(st.state));
        if (st.state == S_ERROR || (st.state == S_IDLE && st.status != 0))
            rc = req_out(d, R_CLRSTATUS, 0, NULL, 0, timeout_ms, err);
        else if (st.state == S_DNBUSY)
            st_sleep_us((uint64_t)st.poll_ms * 1000); /* device-requested wait */
        else
            rc = req_out(d, R_ABORT, 0, NULL, 0, timeout_ms, err);
        if (rc < 0)
            return st_err_wrap(err, rc, "clear state %s (%s)", st_dfu_state_name(st.state),
                                 st_dfu_status_name(st.status));
    }
    return st_err_set(err, ST_ERR_PROTO, "device stays in %s (%s) after clearing",
                      st_dfu_state_name(st.state), st_dfu_status_name(st.status));
}

/* Poll after a DNLOAD until the device is done (§1.3): sleep bwPollTimeout between polls.
 * Returns 0 (dfuDNLOAD-IDLE), 1 (dfuMANIFEST*: the device is leaving) or an error. */
static int poll_done(st_dfuse *d, unsigned timeout_ms, st_dfuse_result *r, st_err *err)
{
    uint64_t start = st_now_us();
    st_deadline dl = st_deadline_in_ms(timeout_ms);
    st_deadline cap = st_deadline_in_ms(timeout_ms > BUSY_CAP_MS ? timeout_ms : BUSY_CAP_MS);
    uint32_t last_poll = 0;
    int stall_retries = 0;
    for (;;) {
        dfu_status st;
        int rc = get_status(d, &st, timeout_ms, r, err);
        /* STM32L4 ROM: a GETSTATUS stalled while busy means "still busy"; dfu-util retries
         * 3 times after a non-zero poll timeout (§1.3). */
        if (rc == ST_ERR_STALL && last_poll && stall_retries < 3) {
            stall_retries++;
            st_sleep_us((uint64_t)last_poll * 1000);
            continue;
        }
        if (rc < 0)
            return rc;
        if (st.state == S_DNBUSY || st.state == S_DNLOAD_SYNC) {
            last_poll = st.poll_ms;
            if (st.poll_ms) {
                /* The device asked for this long; the deadline follows it up to the cap. */
                st_deadline want = st_deadline_in_ms(st.poll_ms + (uint64_t)timeout_ms);
                if (want.at_us > dl.at_us)
                    dl = want.at_us < cap.at_us ? want : cap;
                st_sleep_us((uint64_t)st.poll_ms * 1000);
            }
            if (st_deadline_passed(dl))
                return st_err_set(err, ST_ERR_TIMEOUT, "device still %s after %llu ms",
                                  st_dfu_state_name(st.state),
                                  (unsigned long long)((st_now_us() - start) / 1000));
            continue;
        }
        if (st.state == S_DNLOAD_IDLE && st.status == 0)
            return 0;
        if (st.state == S_MANIFEST || st.state == S_MANIFEST_SYNC ||
            st.state == S_MANIFEST_WAIT_RESET)
            return 1;
        if (st.state == S_ERROR) {
            /* Clear it so the next attempt (or the next job) starts clean. */
            req_out(d, R_CLRSTATUS, 0, NULL, 0, timeout_ms, NULL);
            return st_err_set(err, ST_ERR_DEVICE, "device reported %s (status 0x%02x)",
                              st_dfu_status_name(st.status), st.status);
        }
        return st_err_set(err, ST_ERR_PROTO, "unexpected state %s (%s) while busy",
                          st_dfu_state_name(st.state), st_dfu_status_name(st.status));
    }
}

/* DfuSe special command: DNLOAD wBlockNum 0 (§1.5), then poll. */
static int command(st_dfuse *d, uint8_t op, uint32_t addr, bool with_addr, unsigned timeout_ms,
                   st_dfuse_result *r, st_err *err)
{
    uint8_t b[5] = {op, (uint8_t)addr, (uint8_t)(addr >> 8), (uint8_t)(addr >> 16),
                    (uint8_t)(addr >> 24)};
    int rc = req_out(d, R_DNLOAD, 0, b, with_addr ? 5 : 1, timeout_ms, err);
    if (rc < 0)
        return rc;
    rc = poll_done(d, timeout_ms, r, err);
    if (rc == 1)
        return st_err_set(err, ST_ERR_PROTO, "device started leaving DFU mode");
    return rc;
}

static int set_address(st_dfuse *d, uint32_t addr, unsigned timeout_ms, st_dfuse_result *r,
                       st_err *err)
{
    int rc = command(d, 0x21, addr, true, timeout_ms, r, err);
    return rc < 0 ? st_err_wrap(err, rc, "set address 0x%08x", addr) : 0;
}

static int abort_to_idle(st_dfuse *d, unsigned timeout_ms, st_dfuse_result *r, st_err *err)
{
    int rc = req_out(d, R_ABORT, 0, NULL, 0, timeout_ms, err);
    if (rc < 0)
        return st_err_wrap(err, rc, "ABORT");
    dfu_status st;
    rc = get_status(d, &st, timeout_ms, r, err);
    if (rc < 0)
        return st_err_wrap(err, rc, "ABORT");
    if (st.state != S_IDLE)
        return st_err_set(err, ST_ERR_PROTO, "ABORT left the device in %s (%s)",
                          st_dfu_state_name(st.state), st_dfu_status_name(st.status));
    return 0;
}

/* After a stalled request: log it, bring the device back to dfuIDLE so the step can be
 * retried once (PROTOCOL.md §7). */
static bool recover_stall(st_dfuse *d, const char *step, uint32_t addr, unsigned timeout_ms,
                          st_dfuse_result *r, const st_err *why)
{
    ST_LOGW(d->log, MOD, "%s 0x%08x: %s; clearing and retrying once", step, addr,
            why ? why->msg : "stalled");
    if (to_idle(d, timeout_ms, r, NULL) < 0)
        return false;
    if (r)
        r->stall_recoveries++;
    return true;
}

/* ---- open ---------------------------------------------------------------------------- */

static int parse_config(st_dfuse *d, const uint8_t *c, size_t len, bool *runtime, st_err *err)
{
    bool in_dfu = false, have_iface = false, have_func = false;
    st_dfuse_info *in = &d->info;
    uint8_t first_iface = 0;
    uint8_t names[ST_DFUSE_MAX_ALTS];
    for (size_t off = 0; off + 2 <= len;) {
        uint8_t l = c[off], t = c[off + 1];
        if (l < 2 || off + l > len)
            return st_err_set(err, ST_ERR_PROTO, "configuration descriptor: bad length %u at %zu",
                              l, off);
        if (t == 4 && l >= 9) {
            in_dfu = c[off + 5] == 0xFE && c[off + 6] == 0x01;
            if (in_dfu && (!have_iface || c[off + 2] == first_iface)) {
                if (!have_iface) {
                    first_iface = c[off + 2];
                    *runtime = c[off + 7] == 0x01;
                }
                have_iface = true;
                if (in->nalts < ST_DFUSE_MAX_ALTS) {
                    in->alts[in->nalts].alt = c[off + 3];
                    names[in->nalts] = c[off + 8];
                    in->nalts++;
                }
            }
        } else if (t == 0x21 && l >= 7 && in_dfu && !have_func) {
            have_func = true;
            in->attributes = c[off + 2];
            in->detach_timeout_ms = c[off + 3] | c[off + 4] << 8;
            in->transfer_size = c[off + 5] | c[off + 6] << 8;
            in->dfu_version = l >= 9 ? (uint16_t)(c[off + 7] | c[off + 8] << 8) : 0x0100;
        }
        off += l;
    }
    if (!have_iface)
        return st_err_set(err, ST_ERR_UNSUPPORTED, "no DFU interface (class 0xFE/0x01)");
    if (!have_func)
        return st_err_set(err, ST_ERR_PROTO, "no DFU functional descriptor");
    in->iface = first_iface;
    for (size_t i = 0; i < in->nalts; i++) {
        st_dfuse_alt *a = &in->alts[i];
        if (!names[i])
            continue;
        st_err e2 = {0};
        if (d->dev->ops->string(d->dev, names[i], a->name, sizeof a->name, &e2) < 0)
            a->name[0] = '\0';
    }
    return 0;
}

bool st_dfuse_config_has_dfu(const uint8_t *c, size_t len)
{
    for (size_t off = 0; off + 2 <= len;) {
        uint8_t l = c[off];
        if (l < 2 || off + l > len)
            return false;
        if (c[off + 1] == 4 && l >= 9 && c[off + 5] == 0xFE && c[off + 6] == 0x01)
            return true;
        off += l;
    }
    return false;
}

int st_dfuse_probe(st_usb_host *host, const st_usb_dev_info *devinfo, bool *is_dfu, st_err *err)
{
    *is_dfu = false;
    st_usb_dev *dev = NULL;
    int rc = st_usb_host_open(host, devinfo, &dev, err);
    if (rc < 0)
        return rc;
    uint8_t cfg[1024];
    rc = dev->ops->config_descriptor(dev, cfg, sizeof cfg, err);
    if (rc >= 0)
        *is_dfu = st_dfuse_config_has_dfu(cfg, (size_t)rc);
    st_usb_dev_close(dev);
    return rc < 0 ? rc : 0;
}

int st_dfuse_open(st_usb_host *host, const st_usb_dev_info *devinfo, const st_logger *log,
                  st_dfuse **out, st_err *err)
{
    *out = NULL;
    st_dfuse *d = calloc(1, sizeof *d);
    if (!d)
        return st_err_set(err, ST_ERR_NOMEM, "dfu open");
    d->log = log;
    d->timeout_ms = ST_DFUSE_DEFAULT_TIMEOUT_MS;
    int rc = st_usb_host_open(host, devinfo, &d->dev, err);
    if (rc < 0) {
        free(d);
        return rc;
    }
    st_strlcpy(d->info.serial, d->dev->info.serial, sizeof d->info.serial);
    uint8_t cfg[1024];
    bool runtime = false;
    rc = d->dev->ops->config_descriptor(d->dev, cfg, sizeof cfg, err);
    if (rc < 0) {
        st_err_prefix(err, "read configuration descriptor");
        goto fail;
    }
    rc = parse_config(d, cfg, (size_t)rc, &runtime, err);
    if (rc < 0)
        goto fail;
    if (runtime) {
        rc = st_err_set(err, ST_ERR_PROTO,
                        "device is in run-time mode (DFU interface protocol 1), not the "
                        "DFU bootloader");
        goto fail;
    }
    if (d->info.dfu_version != 0x011A) {
        rc = st_err_set(err, ST_ERR_UNSUPPORTED, "not a DfuSe device (bcdDFUVersion 0x%04x)",
                        d->info.dfu_version);
        goto fail;
    }
    if (d->info.transfer_size == 0) {
        rc = st_err_set(err, ST_ERR_PROTO, "functional descriptor gives wTransferSize 0");
        goto fail;
    }
    if (d->info.transfer_size > MAX_XFER) {
        ST_LOGI(log, MOD, "wTransferSize %u clamped to %u", d->info.transfer_size, MAX_XFER);
        d->info.transfer_size = MAX_XFER;
    }
    for (size_t i = 0; i < d->info.nalts; i++) {
        st_dfuse_alt *a = &d->info.alts[i];
        st_err e2 = {0};
        if (st_dfuse_layout_parse(a->name, strnlen(a->name, sizeof a->name), &a->layout, &e2) < 0) {
            if (i == 0) {
                rc = st_err_set(err, e2.code, "alt 0: %s", e2.msg);
                goto fail;
            }
            ST_LOGW(log, MOD, "alt %u: %s", a->alt, e2.msg);
        }
    }
    if (d->info.alts[0].alt != 0) {
        rc = st_err_set(err, ST_ERR_PROTO, "DFU interface has no alt setting 0");
        goto fail;
    }
    rc = d->dev->ops->claim_interface(d->dev, d->info.iface, err);
    if (rc < 0) {
        st_err_prefix(err, "claim interface %u", d->info.iface);
        goto fail;
    }
    rc = d->dev->ops->set_alt(d->dev, d->info.iface, 0, err);
    if (rc < 0)
        goto fail;
    dfu_status st;
    rc = get_status(d, &st, d->timeout_ms, NULL, err);
    if (rc < 0)
        goto fail;
    d->info.start_state = st.state;
    d->info.start_status = st.status;
    if (st.state != S_IDLE || st.status != 0)
        ST_LOGI(log, MOD, "device found in %s (%s); clearing", st_dfu_state_name(st.state),
                st_dfu_status_name(st.status));
    rc = to_idle(d, d->timeout_ms, NULL, err);
    if (rc < 0)
        goto fail;
    ST_LOGI(log, MOD, "opened %04x:%04x at port %s: DFU %x.%02x, transfer size %u, %zu alt "
            "setting%s", devinfo->vid, devinfo->pid, devinfo->port_path, d->info.dfu_version >> 8,
            d->info.dfu_version & 0xFFu, d->info.transfer_size, d->info.nalts,
            d->info.nalts == 1 ? "" : "s");
    *out = d;
    return 0;
fail:
    st_dfuse_close(d);
    return rc;
}

const st_dfuse_info *st_dfuse_get_info(const st_dfuse *d)
{
    return &d->info;
}

void st_dfuse_close(st_dfuse *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->info.nalts; i++)
        st_dfuse_layout_free(d->info.alts[i].layout);
    st_usb_dev_close(d->dev);
    free(d);
}

/* ---- read -------------------------------------------------------------------------- */

static int read_range(st_dfuse *d, uint32_t addr, uint8_t *buf, size_t len, const char *phase,
                      const st_dfuse_opts *o, st_dfuse_result *r, st_err *err)
{
    unsigned t = tmo(d, o);
    if (!(d->info.attributes & ST_DFU_ATTR_CAN_UPLOAD))
        return st_err_set(err, ST_ERR_UNSUPPORTED, "device cannot upload (attributes 0x%02x)",
                          d->info.attributes);
    uint16_t xfer = d->info.transfer_size;
    size_t done = 0;
    bool retried = false;
    while (done < len) {
        uint32_t at = addr + (uint32_t)done;
        ST_LOGD(d->log, MOD, "read 0x%08X (%zu bytes)", at, len - done);
        /* Set the pointer, leave dfuDNLOAD-IDLE (UPLOAD needs dfuIDLE, §1.5), then read
         * blocks 2, 3, ... until wBlockNum would pass 0xFFFF, then re-base. */
        int rc = set_address(d, at, t, r, err);
        if (rc == 0)
            rc = abort_to_idle(d, t, r, err);
        for (uint32_t blk = 2; rc == 0 && done < len && blk <= 0xFFFF; blk++) {
            size_t n = len - done < xfer ? len - done : xfer;
            rc = req_in(d, R_UPLOAD, (uint16_t)blk, buf + done, (uint16_t)n, t, err);
            if (rc >= 0 && (size_t)rc != n)
                rc = st_err_set(err, ST_ERR_PROTO, "short read: %d of %zu bytes", rc, n);
            if (rc < 0) {
                st_err_prefix(err, "read 0x%08x", addr + (uint32_t)done);
                break;
            }
            rc = 0;
            done += n;
            if (r)
                r->bytes_read += n;
            st_progress_update(o ? o->progress : NULL, phase, done, len);
        }
        if (rc == ST_ERR_STALL && !retried &&
            recover_stall(d, "read", addr + (uint32_t)done, t, r, err)) {
            retried = true;
            continue;
        }
        if (rc < 0) {
            if (r)
                r->fail_addr = addr + (uint32_t)done;
            return rc;
        }
    }
    return abort_to_idle(d, t, r, err);
}

int st_dfuse_read(st_dfuse *d, uint32_t addr, uint8_t *buf, size_t len, const st_dfuse_opts *o,
                  st_dfuse_result *r, st_err *err)
{
    if ((uint64_t)addr + len > (uint64_t)UINT32_MAX + 1)
        return st_err_set(err, ST_ERR_INVAL, "read 0x%08x+%zu: past the address space", addr, len);
    if (len == 0)
        return 0;
    uint64_t t0 = st_now_us();
    int rc = read_range(d, addr, buf, len, "read", o, r, err);
    if (r)
        r->read_us += st_now_us() - t0;
    return rc;
}

/* ---- flash ------------------------------------------------------------------------- */

static int erase_page(st_dfuse *d, uint32_t page, unsigned t, st_dfuse_result *r, st_err *err)
{
    ST_LOGD(d->log, MOD, "erase 0x%08X", page);
    for (int attempt = 0;; attempt++) {
        int rc = command(d, 0x41, page, true, t, r, err);
        if (rc == ST_ERR_STALL && attempt == 0 && recover_stall(d, "erase", page, t, r, err))
            continue;
        if (rc < 0) {
            if (r)
                r->fail_addr = page;
            return st_err_wrap(err, rc, "erase 0x%08x", page);
        }
        return 0;
    }
}

/* One data DNLOAD; *blk is the next wBlockNum, 0 = the pointer must be set first. */
static int write_chunk(st_dfuse *d, uint32_t addr, const uint8_t *data, uint16_t n, bool seq,
                       uint32_t *blk, unsigned t, st_dfuse_result *r, st_err *err)
{
    ST_LOGD(d->log, MOD, "write 0x%08X (%u bytes)", addr, (unsigned)n);
    for (int attempt = 0;; attempt++) {
        int rc = 0;
        if (!seq || *blk == 0 || *blk > 0xFFFF) {
            rc = set_address(d, addr, t, r, err);
            *blk = 2;
        }
        if (rc == 0)
            rc = req_out(d, R_DNLOAD, (uint16_t)*blk, data, n, t, err);
        if (rc >= 0)
            rc = poll_done(d, t, r, err);
        if (rc == 1)
            rc = st_err_set(err, ST_ERR_PROTO, "device started leaving DFU mode");
        if (rc == ST_ERR_STALL && attempt == 0 && recover_stall(d, "write", addr, t, r, err)) {
            *blk = 0;
            continue;
        }
        if (rc < 0) {
            *blk = 0;
            if (r)
                r->fail_addr = addr;
            return st_err_wrap(err, rc, "write 0x%08x", addr);
        }
        (*blk)++;
        return 0;
    }
}

typedef struct page {
    uint32_t start, size;
    bool write;
    bool blank; /* read back all 0xFF over the whole page: write it without an erase */
} page;

static bool all_ff(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0xFF)
            return false;
    return true;
}

/* The image's part of page p: [*lo, *hi). */
static void page_span(const page *p, const st_image *img, uint64_t *lo, uint64_t *hi)
{
    uint64_t end = (uint64_t)img->load_addr + img->size;
    *lo = p->start > img->load_addr ? p->start : img->load_addr;
    *hi = (uint64_t)p->start + p->size < end ? (uint64_t)p->start + p->size : end;
}

/* Probe, then decide, one read per request: with the Address Pointer set once at the first
 * page, UPLOAD's wBlockNum reaches every page start (pointer + (n - 2) * wTransferSize,
 * AN3156) and wLength may be short. A page is probed with its first ST_DFUSE_PROBE_BYTES;
 * one that differs there is written (a fresh unit: one short read per page); while pages
 * keep matching, the next is read whole at once (a unit that holds the image: about one
 * read of the image). Returns 1 when the layout does not allow it (page starts not
 * wTransferSize apart, too many blocks): the caller probes page by page. */
static int probe_blocks(st_dfuse *d, const st_image *img, page *pages, size_t npages,
                        const st_dfuse_opts *o, st_dfuse_result *r, uint8_t *buf, st_err *err)
{
    uint16_t xfer = d->info.transfer_size;
    uint64_t base, hi;
    page_span(&pages[0], img, &base, &hi);
    for (size_t i = 0; i < npages; i++) {
        uint64_t lo;
        page_span(&pages[i], img, &lo, &hi);
        if ((lo - base) % xfer || 2 + (hi - base + xfer - 1) / xfer > 0xFFFF)
            return 1;
    }
    unsigned t = tmo(d, o);
    int rc = set_address(d, (uint32_t)base, t, r, err);
    if (rc == 0)
        rc = abort_to_idle(d, t, r, err);
    bool whole = false; /* the previous page matched: read this one whole */
    for (size_t i = 0; rc == 0 && i < npages; i++) {
        uint64_t lo;
        page_span(&pages[i], img, &lo, &hi);
        size_t n = (size_t)(hi - lo), off = (size_t)(lo - img->load_addr);
        /* A page the image covers whole may turn out blank: then it needs no erase. */
        bool same = true, done = false;
        bool blank = lo == pages[i].start && hi == (uint64_t)pages[i].start + pages[i].size;
        /* Probe (unless the previous page matched), then the page whole, block by block,
         * from its start, only while it matches or is blank. */
        for (size_t got = 0, k = whole ? 1 : 0; rc == 0 && (same || blank) && !done; k++) {
            size_t want = n - got < xfer ? n - got : xfer;
            if (k == 0 && want > ST_DFUSE_PROBE_BYTES)
                want = ST_DFUSE_PROBE_BYTES;
            uint16_t blk = (uint16_t)(2 + (lo + got - base) / xfer);
            ST_LOGD(d->log, MOD, "probe 0x%08X (%zu bytes)", (uint32_t)(lo + got), want);
            rc = req_in(d, R_UPLOAD, blk, buf, (uint16_t)want, t, err);
            if (rc >= 0 && (size_t)rc != want)
                rc = st_err_set(err, ST_ERR_PROTO, "short read: %d of %zu bytes", rc, want);
            if (rc < 0) {
                st_err_prefix(err, "read 0x%08x", (uint32_t)(lo + got));
                r->fail_addr = (uint32_t)(lo + got);
                break;
            }
            rc = 0;
            r->bytes_read += want;
            r->bytes_probed += want;
            same = same && memcmp(buf, img->data + off + got, want) == 0;
            blank = blank && all_ff(buf, want);
            if (k == 0 && want < n)
                continue; /* the probe matched or is blank: read the page whole */
            got += want;
            done = got >= n;
        }
        if (rc == 0 && same) {
            pages[i].write = false;
            r->pages_skipped++;
        } else if (rc == 0 && blank && done) {
            pages[i].blank = true;
            r->pages_blank++;
        }
        whole = rc == 0 && same;
        st_progress_update(o->progress, "read", i + 1, npages);
    }
    if (rc == 0)
        rc = abort_to_idle(d, t, r, err);
    return rc;
}

/* The same page by page (any layout): a probe read, then the rest of the page only when
 * it matched. */
static int probe_pages_slow(st_dfuse *d, const st_image *img, page *pages, size_t npages,
                            const st_dfuse_opts *o, st_dfuse_result *r, uint8_t *cur,
                            st_err *err)
{
    for (size_t i = 0; i < npages; i++) {
        uint64_t lo, hi;
        page_span(&pages[i], img, &lo, &hi);
        size_t n = (size_t)(hi - lo), off = (size_t)(lo - img->load_addr);
        size_t first = n < ST_DFUSE_PROBE_BYTES ? n : ST_DFUSE_PROBE_BYTES;
        int rc = read_range(d, (uint32_t)lo, cur, first, "read", o, r, err);
        r->bytes_probed += first;
        if (rc == 0 && memcmp(cur, img->data + off, first) != 0)
            continue;
        if (rc == 0 && n > first) {
            rc = read_range(d, (uint32_t)lo + (uint32_t)first, cur + first, n - first, "read", o,
                            r, err);
            r->bytes_probed += n - first;
        }
        if (rc < 0)
            return rc;
        if (memcmp(cur + first, img->data + off + first, n - first) == 0) {
            pages[i].write = false;
            r->pages_skipped++;
        }
    }
    return 0;
}

static int probe_pages(st_dfuse *d, const st_image *img, page *pages, size_t npages,
                       const st_dfuse_opts *o, st_dfuse_result *r, st_err *err)
{
    uint32_t biggest = d->info.transfer_size;
    for (size_t i = 0; i < npages; i++)
        biggest = pages[i].size > biggest ? pages[i].size : biggest;
    uint8_t *buf = malloc(biggest);
    if (!buf)
        return st_err_set(err, ST_ERR_NOMEM, "readback buffer");
    int rc = probe_blocks(d, img, pages, npages, o, r, buf, err);
    if (rc == ST_ERR_STALL &&
        recover_stall(d, "read", r->fail_addr, tmo(d, o), r, err)) {
        /* Start over, page by page, from what the unit holds. */
        for (size_t i = 0; i < npages; i++) {
            pages[i].write = true;
            pages[i].blank = false;
        }
        r->pages_skipped = 0;
        r->pages_blank = 0;
        rc = 1;
    }
    if (rc == 1)
        rc = probe_pages_slow(d, img, pages, npages, o, r, buf, err);
    free(buf);
    return rc;
}


int st_dfuse_flash(st_dfuse *d, const st_image *img, const st_dfuse_opts *o, st_dfuse_result *r,
                   st_err *err)
{
    st_dfuse_result scratch;
    if (!r) {
        memset(&scratch, 0, sizeof scratch);
        r = &scratch;
    }
    if (!o)
        o = &default_opts;
    unsigned t = tmo(d, o);
    const st_dfuse_layout *lay = d->info.alts[0].layout;
    uint64_t end = (uint64_t)img->load_addr + img->size;
    if (img->size == 0)
        return st_err_set(err, ST_ERR_INVAL, "image %s is empty", img->path ? img->path : "");
    if (!(d->info.attributes & ST_DFU_ATTR_CAN_DNLOAD))
        return st_err_set(err, ST_ERR_UNSUPPORTED, "device cannot download (attributes 0x%02x)",
                          d->info.attributes);
    uint64_t bad = st_dfuse_layout_first_bad(lay, img->load_addr, img->size,
                                             ST_DFUSE_MEM_WRITABLE);
    if (bad != end) {
        r->fail_addr = (uint32_t)bad;
        return st_err_set(err, ST_ERR_INVAL,
                          "image 0x%08x..0x%08llx: 0x%08llx is not writable in \"%s\"",
                          img->load_addr, (unsigned long long)(end - 1),
                          (unsigned long long)bad, lay->name);
    }
    size_t npages = 0, cap = 0;
    page *pages = NULL;
    for (uint64_t a = st_dfuse_layout_page_start(lay, img->load_addr); a < end;) {
        const st_dfuse_segment *seg = st_dfuse_layout_find(lay, (uint32_t)a);
        if (npages == cap) {
            cap = cap ? cap * 2 : 64;
            page *np = realloc(pages, cap * sizeof *np);
            if (!np) {
                free(pages);
                return st_err_set(err, ST_ERR_NOMEM, "page list");
            }
            pages = np;
        }
        pages[npages++] = (page){(uint32_t)a, seg->page_size, true, false};
        a += seg->page_size;
    }
    int rc = 0;
    if (o->skip_identical) {
        uint64_t t0 = st_now_us();
        rc = probe_pages(d, img, pages, npages, o, r, err);
        r->read_us += st_now_us() - t0;
        if (rc < 0)
            goto out;
    }
    /* Erase pass first, then write pass, as dfu-util does since 0.10 (§1.5 steps 4-5). */
    uint64_t t0 = st_now_us(), total = 0, done = 0;
    for (size_t i = 0; i < npages; i++)
        total += pages[i].write ? pages[i].size : 0;
    for (size_t i = 0; i < npages; i++) {
        if (!pages[i].write)
            continue;
        if (!pages[i].blank && st_dfuse_layout_erasable(lay, pages[i].start, 1)) {
            rc = erase_page(d, pages[i].start, t, r, err);
            if (rc < 0)
                goto out;
            r->pages_erased++;
        }
        done += pages[i].size;
        st_progress_update(o->progress, "erase", done, total);
    }
    r->erase_us += st_now_us() - t0;

    t0 = st_now_us();
    uint16_t xfer = d->info.transfer_size;
    uint64_t wtotal = 0, wdone = 0;
    for (size_t i = 0; i < npages; i++) {
        if (!pages[i].write)
            continue;
        uint64_t lo = pages[i].start > img->load_addr ? pages[i].start : img->load_addr;
        uint64_t hi = (uint64_t)pages[i].start + pages[i].size;
        wtotal += (hi < end ? hi : end) - lo;
    }
    /* Chunks run from the start of each run of consecutive pages to write, so that
     * wBlockNum arithmetic (pointer + (n-2) * wTransferSize) holds in block_sequence mode. */
    for (size_t i = 0; i < npages;) {
        if (!pages[i].write) {
            i++;
            continue;
        }
        size_t j = i;
        while (j + 1 < npages && pages[j + 1].write)
            j++;
        uint64_t lo = pages[i].start > img->load_addr ? pages[i].start : img->load_addr;
        uint64_t hi = (uint64_t)pages[j].start + pages[j].size;
        hi = hi < end ? hi : end;
        uint32_t blk = 0;
        for (uint64_t a = lo; a < hi; a += xfer) {
            uint16_t n = (uint16_t)(hi - a < xfer ? hi - a : xfer);
            rc = write_chunk(d, (uint32_t)a, img->data + (a - img->load_addr), n,
                             o->block_sequence, &blk, t, r, err);
            if (rc < 0)
                goto out;
            r->bytes_written += n;
            wdone += n;
            st_progress_update(o->progress, "write", wdone, wtotal);
        }
        r->pages_written += (uint32_t)(j - i + 1);
        i = j + 1;
    }
    /* §1.5 step 6: ABORT back to dfuIDLE so the next read or leave starts clean. */
    rc = abort_to_idle(d, t, r, err);
    r->write_us += st_now_us() - t0;
out:
    free(pages);
    return rc;
}

int st_dfuse_verify(st_dfuse *d, const st_image *img, const st_dfuse_opts *o, st_dfuse_result *r,
                    st_err *err)
{
    st_dfuse_result scratch;
    if (!r) {
        memset(&scratch, 0, sizeof scratch);
        r = &scratch;
    }
    if (img->size == 0)
        return st_err_set(err, ST_ERR_INVAL, "verify: empty image");
    uint8_t *buf = malloc(img->size);
    if (!buf)
        return st_err_set(err, ST_ERR_NOMEM, "verify buffer");
    uint64_t t0 = st_now_us();
    int rc = read_range(d, img->load_addr, buf, img->size, "verify", o, r, err);
    r->verify_us += st_now_us() - t0;
    if (rc < 0) {
        free(buf);
        return st_err_wrap(err, rc, "verify");
    }
    /* Only the read-back is hashed (for the report): the comparison is with the image's
     * bytes, and the image's own digest was computed once when it was loaded. */
    st_sha256(buf, img->size, r->readback_sha256);
    if (memcmp(buf, img->data, img->size) != 0) {
        size_t i = 0;
        while (i < img->size && buf[i] == img->data[i])
            i++;
        r->fail_addr = img->load_addr + (uint32_t)i;
        char hex[2 * ST_SHA256_LEN + 1];
        st_hex(r->readback_sha256, ST_SHA256_LEN, false, hex);
        rc = st_err_set(err, ST_ERR_VERIFY,
                        "verify: first difference at 0x%08x (wrote 0x%02x, read 0x%02x); "
                        "readback sha256 %s",
                        r->fail_addr, img->data[i], buf[i], hex);
    }
    free(buf);
    return rc;
}

/* ---- whole-device commands ------------------------------------------------------- */

int st_dfuse_mass_erase(st_dfuse *d, st_dfuse_result *r, st_err *err)
{
    uint64_t t0 = st_now_us();
    int rc = command(d, 0x41, 0, false, d->timeout_ms, r, err);
    if (r)
        r->erase_us += st_now_us() - t0;
    if (rc < 0)
        return st_err_wrap(err, rc, "mass erase");
    return abort_to_idle(d, d->timeout_ms, r, err);
}

int st_dfuse_unprotect(st_dfuse *d, st_dfuse_result *r, st_err *err)
{
    uint8_t op = 0x92;
    int rc = req_out(d, R_DNLOAD, 0, &op, 1, d->timeout_ms, err);
    if (rc < 0)
        return st_err_wrap(err, rc, "read unprotect");
    dfu_status st;
    st_err e2 = {0};
    rc = get_status(d, &st, d->timeout_ms, r, &e2);
    if (rc == 0 && st.state == S_ERROR)
        return st_err_set(err, ST_ERR_DEVICE, "read unprotect: device reported %s",
                          st_dfu_status_name(st.status));
    /* The device resets while (or instead of) answering: expected (§1.5 step 2). */
    if (rc < 0)
        ST_LOGI(d->log, MOD, "read unprotect: %s (device resetting)", e2.msg);
    return 0;
}

/* ---- leave ------------------------------------------------------------------------- */

static bool status_lost(int rc)
{
    return rc == ST_ERR_STALL || rc == ST_ERR_DISCONNECT || rc == ST_ERR_TIMEOUT ||
           rc == ST_ERR_IO;
}

int st_dfuse_leave(st_dfuse *d, uint32_t jump_addr, bool write_verified, st_dfuse_result *r,
                   st_err *err)
{
    st_dfuse_result scratch;
    if (!r) {
        memset(&scratch, 0, sizeof scratch);
        r = &scratch;
    }
    unsigned t = d->timeout_ms;
    int rc = set_address(d, jump_addr, t, r, err);
    if (rc < 0)
        return st_err_wrap(err, rc, "leave");
    /* Zero-length DNLOAD, wBlockNum 2 as dfu-util sends it (§1.5 step 7). */
    st_err e2 = {0};
    rc = req_out(d, R_DNLOAD, 2, NULL, 0, t, &e2);
    const char *step = "leave request";
    if (rc >= 0) {
        dfu_status st;
        step = "status after the leave request";
        rc = get_status(d, &st, t, r, &e2);
        if (rc == 0) {
            if (st.state == S_MANIFEST || st.state == S_MANIFEST_SYNC ||
                st.state == S_MANIFEST_WAIT_RESET || st.state == S_DNBUSY)
                return 0;
            if (st.state == S_ERROR)
                return st_err_set(err, ST_ERR_DEVICE, "leave: device reported %s",
                                  st_dfu_status_name(st.status));
            return st_err_set(err, ST_ERR_PROTO, "leave: device stayed in %s",
                              st_dfu_state_name(st.state));
        }
    }
    /* Many STM32s jump before answering (dfu-util exits 74 here, §1.5): success only when
     * the image was verified; the caller confirms by re-enumeration. */
    if (status_lost(rc) && write_verified) {
        r->leave_status_missing = true;
        ST_LOGI(d->log, MOD, "leave: %s not answered (%s); image was verified, assuming the "
                "device left", step, e2.msg);
        return 0;
    }
    if (err)
        *err = e2;
    return st_err_wrap(err, rc, "leave: %s failed and the write was not verified", step);
}
