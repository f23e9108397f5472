/* Job steps over the Katapult bootloader (protocols/katapult/PROTOCOL.md): reach it from
 * the running application (CAN admin request by UUID, USB 1200-baud touch, UART request
 * string), read back what the unit holds, flash, verify, complete, and wait for the
 * application on the CAN bus. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/run.h"
#include "protocols/canadmin/canadmin.h"
#include "protocols/link/can_model.h"
#include "protocols/link/serial_ports.h"
#include "station/core/clock.h"
#include "station/core/digest.h"
#include "station/core/text.h"

#define MOD "katapult"
/* How long a unit may take from the bootloader request to answering as Katapult, and
 * from COMPLETE to answering as the application: flashtool allows 1 s + 0.5 s + 2 s of
 * query; Katapult itself resets 100 ms after COMPLETE. */
#define ENTER_DEFAULT_MS 5000u
#define SERIAL_ENUM_MS 4000u   /* flashtool polls the re-enumeration 8 x 0.5 s */
#define APP_QUERY_WINDOW_MS 250u

void kat_close(run *r)
{
    st_katapult_close(r->kat);
    r->kat = NULL;
    st_stream_close(r->kstream);
    r->kstream = NULL;
    st_can_link_close(r->data);
    r->data = NULL;
    st_can_link_close(r->adm);
    r->adm = NULL;
}

/* flashtool's "prime" is for USB STM32s with double-buffered full-speed USB (not F2/F4/H7):
 * the first command after enumeration is lost, so an invalid one goes first (2.4). */
static bool wants_prime(const st_job *job)
{
    const char *m = job->mcu->name;
    return job->katapult.transport == ST_KAT_USB && strncmp(m, "stm32", 5) == 0 &&
           strncmp(m, "stm32f2", 7) != 0 && strncmp(m, "stm32f4", 7) != 0 &&
           strncmp(m, "stm32h7", 7) != 0;
}

static int enter_can(run *r, const st_job_step *s, st_err *err)
{
    const st_run_env *env = r->env;
    if (!env->can || !env->can_uuid || !env->can_uuid[0])
        return st_err_set(err, ST_ERR_INVAL,
                          "no CAN interface or UUID for this unit (give the slot can.iface and "
                          "can.uuid in the fixture, or run the job with units: discover)");
    st_can_uuid u;
    int rc = st_can_uuid_parse(env->can_uuid, &u, err);
    if (!rc)
        rc = env->can->ops->open_link(env->can, &r->adm, err);
    if (!rc)
        rc = env->can->ops->open_link(env->can, &r->data, err);
    if (rc)
        return rc;
    uint8_t nodeid = env->can_nodeid ? env->can_nodeid : ST_CANADMIN_NODEID_KATAPULT;
    rc = st_canadmin_katapult_assign(r->adm, &u, ST_CANADMIN_ASSIGN_REQUEST_BOOTLOADER, nodeid,
                                     s->timeout_ms ? s->timeout_ms : ENTER_DEFAULT_MS, err);
    if (rc)
        return rc;
    st_rmap_str(r->cur, "entry_method", "can:request-bootloader");
    st_rmap_int(r->cur, "can_nodeid", nodeid);
    return st_can_stream_open(r->data, st_canadmin_nodeid_tx_id(nodeid),
                              st_canadmin_nodeid_rx_id(nodeid), &r->kstream, err);
}

static int enter_usb(run *r, const st_job_step *s, st_err *err)
{
    const st_run_env *env = r->env;
    const st_job *job = r->job;
    if (!env->fslot || !env->fslot->usb_port[0] || !env->serial)
        return st_err_set(err, ST_ERR_INVAL, "Katapult over USB needs the slot's usb_port in the fixture");
    const char *port = env->fslot->usb_port;
    st_stream_line line = { .baud = 115200, .data_bits = 8, .parity = 'N', .stop_bits = 1 };
    st_stream *app = NULL;
    st_err e;
    /* The application is asked to reboot into Katapult by the 1200-baud touch; a unit
     * already in Katapult (a rerun) has no application to touch. */
    if (st_serial_host_open(env->serial, port, job->katapult.app_vid, job->katapult.app_pid, &line,
                            200, &app, &e) == 0) {
        int rc = st_serial_touch_1200(app, err);
        st_stream_close(app);
        if (rc)
            return st_err_wrap(err, rc, "1200-baud touch at port %s", port);
        st_rmap_str(r->cur, "entry_method", "usb:1200-baud-touch");
    } else {
        st_rmap_str(r->cur, "entry_method", "usb:already-in-katapult");
    }
    int rc = st_serial_host_open(env->serial, port, 0x1d50, 0x6177, &line,
                                 s->timeout_ms ? s->timeout_ms : SERIAL_ENUM_MS, &r->kstream, err);
    if (rc)
        return st_err_wrap(err, rc, "waiting for Katapult (1d50:6177) at port %s", port);
    run_identify(r, port);
    return 0;
}

static int enter_uart(run *r, const st_job_step *s, st_err *err)
{
    const st_run_env *env = r->env;
    if (!env->fslot || !env->fslot->serial.present)
        return st_err_set(err, ST_ERR_INVAL, "Katapult over a UART needs the slot's serial.device");
    st_stream_line line = { .baud = r->job->katapult.baud, .data_bits = 8, .parity = 'N',
                            .stop_bits = 1 };
    int rc = st_stream_tty_open(env->fslot->serial.device, &line, &r->kstream, err);
    if (!rc)
        rc = st_serial_request_bootloader_uart(r->kstream, err);
    if (rc)
        return rc;
    st_rmap_str(r->cur, "entry_method", "uart:request-string");
    run_identify(r, env->fslot->serial.device);
    return 0;
}

int kat_step_enter(run *r, const st_job_step *s, st_err *err)
{
    const st_job *job = r->job;
    kat_close(r);
    int rc = job->katapult.transport == ST_KAT_CAN   ? enter_can(r, s, err)
             : job->katapult.transport == ST_KAT_USB ? enter_usb(r, s, err)
                                                      : enter_uart(r, s, err);
    if (rc)
        return rc;
    st_katapult_opts o = {
        .prime = wants_prime(job),
        .tries = job->katapult.tries,
        .block_tries = job->katapult.tries,
        .read_timeout_ms = job->katapult.timeout_ms,
        .block_timeout_ms = job->katapult.timeout_ms,
        .log = r->env->log,
        .progress = r->env->progress,
    };
    rc = st_katapult_open(r->kstream, &o, &r->kat, err);
    if (!rc)
        rc = st_katapult_connect(r->kat, &r->kinfo, err);
    if (rc)
        return rc;
    st_rnode *k = st_rmap_map(r->cur, "katapult");
    st_rmap_str(k, "protocol", r->kinfo.proto);
    st_rmap_str(k, "mcu", r->kinfo.mcu);
    st_rmap_str(k, "version", r->kinfo.sw_version);
    st_rmap_hex32(k, "app_start", r->kinfo.app_start);
    st_rmap_uint(k, "block_size", r->kinfo.block_size);
    st_rmap_str(st_rmap_map(r->doc, "unit"), "katapult_version", r->kinfo.sw_version);
    /* The image's target must be what the bootloader says it runs on. */
    rc = st_katapult_check_mcu(&r->kinfo, job->mcu->name, err);
    if (rc)
        return rc;
    if (job->katapult.transport == ST_KAT_CAN) {
        uint8_t id[6];
        rc = st_katapult_get_canbus_id(r->kat, id, err);
        if (rc)
            return rc;
        st_can_uuid got, want;
        memcpy(got.b, id, 6);
        st_can_uuid_parse(r->env->can_uuid, &want, NULL);
        char shown[ST_CAN_UUID_STRLEN];
        st_can_uuid_format(&got, shown);
        st_rmap_str(k, "canbus_id", shown);
        if (!st_can_uuid_equal(&got, &want))
            return st_err_set(err, ST_ERR_MISMATCH,
                              "GET_CANBUS_ID says %s, the job addressed %s: another node answered",
                              shown, r->env->can_uuid);
    }
    return 0;
}

/* The image must start where Katapult puts applications. */
static int check_image(run *r, const st_image *img, st_err *err)
{
    if (!r->kat)
        return st_err_set(err, ST_ERR_INVAL, "no Katapult session (enter-katapult must come first)");
    if (img->load_addr != r->kinfo.app_start)
        return st_err_set(err, ST_ERR_INVAL,
                          "%s loads at 0x%08X but Katapult's application starts at 0x%08X",
                          img->path, img->load_addr, r->kinfo.app_start);
    return 0;
}

static size_t padded(size_t n, uint32_t block)
{
    return (n + block - 1) / block * block;
}

/* Read the application area the image will cover, before anything is written. */
static int read_before(run *r, const st_image *img, st_err *err)
{
    size_t len = padded(img->size, r->kinfo.block_size);
    uint8_t *buf = malloc(len);
    if (!buf)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    int rc = st_katapult_read(r->kat, img->load_addr, len, buf, err);
    if (rc) {
        free(buf);
        return rc;
    }
    free(r->before);
    r->before = buf;
    r->before_len = len;
    r->before_addr = img->load_addr;
    return 0;
}

int kat_step_read_app(run *r, const st_job_step *s, st_err *err)
{
    const st_image *img = r->images[s->image];
    int rc = check_image(r, img, err);
    if (!rc)
        rc = read_before(r, img, err);
    if (rc)
        return rc;
    uint8_t md[ST_DIGEST_MAX];
    char h256[65], h1[41];
    st_sha256(r->before, img->size, md);
    st_hex(md, ST_SHA256_LEN, false, h256);
    st_sha1(r->before, r->before_len, md);
    st_hex(md, ST_SHA1_LEN, true, h1);
    st_rnode *unit = st_rmap_map(r->doc, "unit");
    st_rmap_str(unit, "before_sha256", h256);
    st_rmap_str(unit, "before_sha1", h1);
    st_rmap_uint(unit, "before_bytes", img->size);
    st_rmap_hex32(unit, "before_addr", img->load_addr);
    st_rmap_uint(r->cur, "bytes", r->before_len);
    st_rmap_uint(r->cur, "blocks", r->before_len / r->kinfo.block_size);
    st_rmap_str(r->cur, "sha256", h256);
    st_rmap_hex32(r->cur, "address", img->load_addr);
    if (memcmp(h256, img->sha256_hex, 64) == 0)
        st_rmap_str(r->cur, "note", "the unit already holds this image");
    return 0;
}

/* skip_page: the page already holds the image's bytes (as read before flashing). */
typedef struct skip_ctx {
    const run *r;
    const st_image *img;
    uint32_t page_size;
    uint32_t skipped;
} skip_ctx;

static bool page_matches(void *ctx, uint32_t page_addr)
{
    skip_ctx *c = ctx;
    const run *r = c->r;
    uint32_t off = page_addr - c->img->load_addr;
    size_t plen = padded(c->img->size, r->kinfo.block_size);
    size_t n = plen - off < c->page_size ? plen - off : c->page_size;
    if (!r->before || page_addr < r->before_addr || off + n > r->before_len)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t want = off + i < c->img->size ? c->img->data[off + i] : 0xFF;
        if (r->before[off + i] != want)
            return false;
    }
    c->skipped++;
    return true;
}

int kat_step_flash(run *r, const st_job_step *s, st_err *err)
{
    const st_image *img = r->images[s->image];
    int rc = check_image(r, img, err);
    if (rc)
        return rc;
    const st_mcu *mcu = st_mcu_find(r->kinfo.mcu);
    skip_ctx sc = { r, img, mcu ? mcu->page_size : r->job->mcu->page_size, 0 };
    if (s->skip_identical && !r->before && (rc = read_before(r, img, err)) != 0)
        return st_err_wrap(err, rc, "reading the unit's application to skip identical pages");
    st_katapult_flash_opts fo = { .page_size = sc.page_size };
    if (s->skip_identical) {
        fo.skip_page = page_matches;
        fo.skip_ctx = &sc;
    }
    st_katapult_result res;
    memset(&res, 0, sizeof res);
    rc = st_katapult_flash(r->kat, img, &fo, &res, err);
    st_rmap_uint(r->cur, "pages_written", res.pages);
    st_rmap_uint(r->cur, "pages_skipped", sc.skipped);
    st_rmap_uint(r->cur, "blocks", res.blocks);
    st_rmap_uint(r->cur, "blocks_sent", res.blocks_sent);
    st_rmap_uint(r->cur, "bytes", (uint64_t)res.blocks_sent * r->kinfo.block_size);
    if (res.sha1_hex[0])
        st_rmap_str(r->cur, "sha1", res.sha1_hex);
    if (rc) {
        /* Name the block the unit was cut off at: the report's evidence for recovery. */
        st_rmap_hex32(r->cur, "address", res.fail_addr);
        st_rmap_uint(r->cur, "block", (res.fail_addr - img->load_addr) / r->kinfo.block_size);
        if (res.any_done)
            st_rmap_hex32(r->cur, "last_acknowledged", res.last_addr);
        return rc;
    }
    st_rmap_hex32(r->cur, "address", img->load_addr);
    /* What was read before no longer describes the unit. */
    free(r->before);
    r->before = NULL;
    return 0;
}

int kat_step_verify(run *r, const st_job_step *s, st_err *err)
{
    const st_image *img = r->images[s->image];
    int rc = check_image(r, img, err);
    if (rc)
        return rc;
    st_katapult_result res;
    memset(&res, 0, sizeof res);
    rc = st_katapult_verify(r->kat, img, &res, err);
    st_rmap_uint(r->cur, "blocks", res.blocks_verified);
    st_rmap_uint(r->cur, "bytes", (uint64_t)res.blocks_verified * r->kinfo.block_size);
    if (rc) {
        st_rmap_hex32(r->cur, "address", res.fail_addr);
        st_rmap_uint(r->cur, "block", (res.fail_addr - img->load_addr) / r->kinfo.block_size);
        return rc;
    }
    /* sha1: flashtool's "Verification Complete: SHA = ..." for the same image. */
    st_rmap_str(r->cur, "sha1", res.sha1_hex);
    st_rmap_str(r->cur, "sha256", res.sha256_hex);
    st_rmap_hex32(r->cur, "address", img->load_addr);
    /* after_* describe the same N bytes as before_* (N = the image's size): verify has just
     * compared every one of them with the image, so they are the image's digests; the
     * padded read-back's own SHA-256 is the step's sha256. */
    st_rnode *unit = st_rmap_map(r->doc, "unit");
    st_rmap_str(unit, "after_sha256", img->sha256_hex);
    st_rmap_str(unit, "after_sha1", res.sha1_hex);
    return 0;
}

int kat_step_complete(run *r, const st_job_step *s, st_err *err)
{
    if (!r->kat)
        return st_err_set(err, ST_ERR_INVAL, "no Katapult session (enter-katapult must come first)");
    int rc = st_katapult_complete(r->kat, err);
    if (rc == ST_ERR_TIMEOUT) {
        /* Katapult resets into the application ~100 ms after COMPLETE whether or not its
         * answer arrives; wait-for-app is the real check. */
        st_rmap_str(r->cur, "note", "COMPLETE was not acknowledged; the unit may have started");
        rc = 0;
    }
    kat_close(r);
    return rc;
}

void kat_abandon(run *r)
{
    if (r->kat) {
        st_err e;
        st_katapult_complete(r->kat, &e); /* best effort: the run has already failed */
    }
    kat_close(r);
}

int kat_wait_app_can(run *r, unsigned timeout_ms, st_err *err)
{
    const st_run_env *env = r->env;
    if (!env->can || !env->can_uuid || !env->can_uuid[0])
        return st_err_set(err, ST_ERR_INVAL, "no CAN interface or UUID for this unit");
    st_can_uuid want;
    int rc = st_can_uuid_parse(env->can_uuid, &want, err);
    st_can_link *l = NULL;
    if (!rc)
        rc = env->can->ops->open_link(env->can, &l, err);
    if (rc)
        return rc;
    st_deadline d = st_deadline_in_ms(timeout_ms);
    char last[32] = "nothing";
    rc = ST_ERR_TIMEOUT;
    while (rc == ST_ERR_TIMEOUT && !st_deadline_passed(d)) {
        st_canadmin_node nodes[32];
        int n = st_canadmin_query(l, APP_QUERY_WINDOW_MS, nodes, 32, err);
        if (n < 0) {
            rc = n;
            break;
        }
        for (int i = 0; i < n && i < 32; i++) {
            if (!st_can_uuid_equal(&nodes[i].uuid, &want))
                continue;
            st_canadmin_app_name(&nodes[i], last, sizeof last);
            if (nodes[i].app == ST_CANADMIN_APP_KLIPPER)
                rc = 0;
        }
    }
    st_can_link_close(l);
    if (rc == ST_ERR_TIMEOUT)
        return st_err_set(err, ST_ERR_TIMEOUT,
                          "%s did not answer as the Klipper application within %u ms (it answered "
                          "as: %s)", env->can_uuid, timeout_ms, last);
    if (!rc)
        st_rmap_str(r->cur, "app", "klipper (answers QUERY on the CAN bus)");
    return rc;
}
