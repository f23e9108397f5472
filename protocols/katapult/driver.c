/* The Katapult driver (see driver.h): reach Katapult from the running application (CAN
 * admin request by UUID, USB 1200-baud touch, UART request string), read back what the
 * unit holds, flash, verify, complete; find units on a CAN bus; the CAN/serial commands. */
#include "protocols/katapult/driver.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocols/canadmin/canadmin.h"
#include "protocols/katapult/katapult.h"
#include "protocols/link/can_model.h" /* st_can_stream_open */
#include "protocols/link/serial_ports.h"
#include "station/core/digest.h"
#include "station/core/text.h"
#include "station/core/yamldoc.h"

#define MOD "katapult"
/* How long a unit may take from the bootloader request to answering as Katapult:
 * flashtool allows 1 s + 0.5 s + 2 s of query. */
#define ENTER_DEFAULT_MS 5000u
#define SERIAL_ENUM_MS 4000u   /* flashtool polls the re-enumeration 8 x 0.5 s */

/* How Katapult is reached. */
typedef enum kat_transport {
    KAT_CAN,   /* Klipper/Katapult CAN admin + byte stream on node ids */
    KAT_USB,   /* USB-CDC: 1200-baud touch, Katapult re-enumerates with its own USB id */
    KAT_UART,  /* a UART tty: the serial request string */
} kat_transport;

/* The job's katapult: section. */
typedef struct kat_section {
    kat_transport transport;
    uint32_t bitrate;         /* CAN: 0 = leave the interface's rate alone */
    uint32_t baud;            /* UART: the application's and Katapult's baud */
    st_usb_id app_usb;        /* USB: the running application's id */
    uint32_t discover_ms;     /* units: discover: how long to collect answers */
    uint32_t timeout_ms;      /* per Katapult command answer; 0 = flashtool's (2 s, 5 s) */
    uint32_t tries;           /* per Katapult command; 0 = flashtool's (5, 3 for blocks) */
} kat_section;

/* One unit's Katapult session. */
typedef struct kat_session {
    st_can_link *adm, *data;
    st_stream *kstream;
    st_katapult *kat;
    st_katapult_info kinfo;
    /* CAN: the node id this unit's Katapult was given and still holds (the session's
     * stream reaches it). A retry of enter-katapult talks to it there: Katapult with a
     * node id no longer answers QUERY, so assigning again could never find it. */
    bool can_held;
    /* The entry reached Katapult but CONNECT failed (NACKs, no answer): the unit sits in
     * Katapult. A retry tries CONNECT again; once the retries are spent, the recovery
     * ladder (when the job has one) or the abandon's reset takes it out. */
    bool stuck;
    bool wrote;               /* katapult-flash began sending: the application may be torn */
    char where[80];           /* how the unit is addressed: "node 129 (CAN id 0x202)" */
    /* CAN: no answer to QUERY, so the node id was set blindly (a unit left in Katapult by
     * an earlier run); if CONNECT finds nobody there, the QUERY's error stands. */
    bool blind;
    int blind_rc;
    st_err blind_err;
    uint8_t *before;          /* the application as read before flashing (read-app) */
    size_t before_len;
    uint32_t before_addr;
} kat_session;

typedef struct kat_opts {
    bool skip_identical;
} kat_opts;

/* ---- the section ---------------------------------------------------------------------- */

static int section_parse(const st_job_parse *p, const st_ynode *k, void **out, st_err *err)
{
    kat_section *s = calloc(1, sizeof *s);
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    s->transport = KAT_CAN;
    s->baud = 250000;       /* Katapult's UART default (protocols.md 2.5) */
    s->app_usb = p->job->mcu->usb_klipper;
    s->discover_ms = 2000;  /* canbus_query.py's collection time */
    int rc = 0;
    if (k) {
        static const char *const kk[] = { "transport", "bitrate", "baud", "app_usb", "discover_ms",
                                          "timeout_ms", "tries", NULL };
        static const char *const transports[] = { "can", "usb", "uart", NULL };
        const st_ydoc *doc = p->doc;
        unsigned t = s->transport;
        rc = st_ymap_check_keys(doc, k, "katapult", kk, err);
        if (!rc)
            rc = st_job_get_choice(p, k, "katapult", "transport", transports, NULL, &t, err);
        s->transport = (kat_transport)t;
        if (!rc)
            rc = st_ymap_get_u32(doc, k, "katapult", "bitrate", false, 0, 1000000, &s->bitrate, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, k, "katapult", "baud", false, 1200, 4000000, &s->baud, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, k, "katapult", "discover_ms", false, 100, 60000,
                                 &s->discover_ms, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, k, "katapult", "timeout_ms", false, 10, 60000, &s->timeout_ms, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, k, "katapult", "tries", false, 1, 20, &s->tries, err);
        if (!rc)
            rc = st_job_get_usb_id(p, k, "katapult", "app_usb", "1d50:614e", &s->app_usb, err);
    }
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* ---- the session ---------------------------------------------------------------------- */

static int session_open(const st_step_call *c, void **out, st_err *err)
{
    (void)c;
    kat_session *s = calloc(1, sizeof *s);
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    *out = s;
    return 0;
}

static void kat_close(kat_session *s)
{
    st_katapult_close(s->kat);
    s->kat = NULL;
    st_stream_close(s->kstream);
    s->kstream = NULL;
    st_can_link_close(s->data);
    s->data = NULL;
    st_can_link_close(s->adm);
    s->adm = NULL;
}

static void session_close(void *session)
{
    kat_session *s = session;
    if (!s)
        return;
    kat_close(s);
    free(s->before);
    free(s);
}

/* After a failure: COMPLETE if a session is open (flashtool always sends it): Katapult
 * resets into the application it holds. A unit that refuses COMPLETE too (a NACK storm, a
 * Katapult that stopped answering) before anything was written still holds a whole
 * application: the slot's RESET pulse with BOOT0 low boots it (Katapult starts a valid
 * application after a reset that was no bootloader request), so the unit is not left
 * sitting in Katapult. A torn application is the ladder's business, not a reset's. */
static void session_abandon(const st_step_call *c, void *session)
{
    kat_session *s = session;
    if (!s || (!s->kat && !s->stuck))
        return;
    st_err e;
    int rc = s->kat ? st_katapult_complete(s->kat, &e) : ST_ERR_INVAL;
    if (rc == 0)
        return;
    if (!c->env->slot && c->rec && c->env->can_uuid && c->env->can_uuid[0]) {
        /* No pin reaches it and discovery no longer sees it (it holds its node id): say
         * how it is reached again. */
        char note[160];
        snprintf(note, sizeof note,
                 "Katapult refused COMPLETE: the unit stays in Katapult; "
                 "`station can flash IMAGE --uuid %s` reaches it",
                 c->env->can_uuid);
        st_rmap_str(c->rec, "note", note);
    }
    if (s->wrote || !c->env->slot)
        return;
    const char *method = NULL;
    if (st_slot_run(c->env->slot, &method, &e) == 0 && c->rec) {
        st_rmap_str(c->rec, "rung", "reset after a refused COMPLETE");
        st_rmap_str(c->rec, "note", "Katapult refused COMPLETE; RESET pulsed with BOOT0 low so "
                                    "it starts the application the unit holds");
    }
}

/* ---- enter-katapult ------------------------------------------------------------------- */

static int enter_can(st_step_call *c, kat_session *s, st_err *err)
{
    const st_run_env *env = c->env;
    if (!env->can || !env->can_uuid || !env->can_uuid[0])
        return st_err_set(err, ST_ERR_INVAL,
                          "no CAN interface or UUID for this unit (give the slot can.iface and "
                          "can.uuid in the fixture, or run the job with units: discover)");
    st_can_uuid u;
    int rc = st_can_uuid_parse(env->can_uuid, &u, err);
    if (!rc)
        rc = env->can->ops->open_link(env->can, &s->adm, err);
    if (!rc)
        rc = env->can->ops->open_link(env->can, &s->data, err);
    if (rc)
        return rc;
    /* Distinct node ids so units on one bus can be flashed at once (flashtool gives its
     * single node 129). */
    uint8_t nodeid = (uint8_t)(ST_CANADMIN_NODEID_KATAPULT + env->unit_index);
    rc = st_canadmin_katapult_assign(s->adm, &u, ST_CANADMIN_ASSIGN_REQUEST_BOOTLOADER, nodeid,
                                     c->step->timeout_ms ? c->step->timeout_ms : ENTER_DEFAULT_MS,
                                     err);
    if (rc == ST_ERR_NOTFOUND) {
        /* A unit an earlier run left in Katapult (it refused COMPLETE, and no slot's RESET
         * could take it out) holds its node id and no longer answers QUERY. Katapult takes
         * SET_CANBOOT_NODEID for its UUID whether it holds an id or not (protocols.md 2.6):
         * set it blindly; CONNECT decides, and if nobody answers the QUERY's error stands. */
        s->blind = true;
        s->blind_rc = rc;
        if (err)
            s->blind_err = *err;
        else
            st_err_set(&s->blind_err, rc, "node %s did not answer as Katapult", env->can_uuid);
        rc = st_canadmin_set_nodeid(s->adm, ST_CANADMIN_SET_CANBOOT_NODEID, &u, nodeid, NULL);
        if (rc < 0) {
            if (err)
                *err = s->blind_err;
            return s->blind_rc;
        }
        st_rmap_str(c->rec, "entry_method", "can:set-node-id");
    } else if (rc) {
        return rc;
    } else {
        st_rmap_str(c->rec, "entry_method", "can:request-bootloader");
    }
    st_rmap_int(c->rec, "can_nodeid", nodeid);
    snprintf(s->where, sizeof s->where, "node %u (CAN id 0x%03x)", nodeid,
             st_canadmin_nodeid_tx_id(nodeid));
    rc = st_can_stream_open(s->data, st_canadmin_nodeid_tx_id(nodeid),
                            st_canadmin_nodeid_rx_id(nodeid), &s->kstream, err);
    /* With the bus's bitrate the stream reads a multi-frame answer in one wake-up (vcan
     * has none: frame by frame). */
    uint32_t bitrate = 0;
    st_err ignored;
    if (!rc && env->can->ops->get_bitrate &&
        env->can->ops->get_bitrate(env->can, &bitrate, &ignored) == 0)
        st_can_stream_set_bitrate(s->kstream, bitrate);
    return rc;
}

static int enter_usb(st_step_call *c, kat_session *s, st_err *err)
{
    const st_run_env *env = c->env;
    const kat_section *sec = c->section;
    if (!env->fslot || !env->fslot->usb_port[0] || !env->serial)
        return st_err_set(err, ST_ERR_INVAL, "Katapult over USB needs the slot's usb_port in the fixture");
    const char *port = env->fslot->usb_port;
    st_stream_line line = { .baud = 115200, .data_bits = 8, .parity = 'N', .stop_bits = 1 };
    st_stream *app = NULL;
    st_err e;
    /* The application is asked to reboot into Katapult by the 1200-baud touch; a unit
     * already in Katapult (a rerun) has no application to touch. */
    if (st_serial_host_open(env->serial, port, sec->app_usb.vid, sec->app_usb.pid, &line, 200,
                            &app, &e) == 0) {
        int rc = st_serial_touch_1200(app, err);
        st_stream_close(app);
        if (rc)
            return st_err_wrap(err, rc, "1200-baud touch at port %s", port);
        st_rmap_str(c->rec, "entry_method", "usb:1200-baud-touch");
    } else {
        st_rmap_str(c->rec, "entry_method", "usb:already-in-katapult");
    }
    st_usb_id kid = c->job->mcu->usb_katapult;
    int rc = st_serial_host_open(env->serial, port, kid.vid, kid.pid, &line,
                                 c->step->timeout_ms ? c->step->timeout_ms : SERIAL_ENUM_MS,
                                 &s->kstream, err);
    if (rc)
        return st_err_wrap(err, rc, "waiting for Katapult (%04x:%04x) at port %s", kid.vid, kid.pid,
                             port);
    st_run_identify(c->run, port);
    snprintf(s->where, sizeof s->where, "port %s", port);
    return 0;
}

static int enter_uart(st_step_call *c, kat_session *s, st_err *err)
{
    const st_run_env *env = c->env;
    const kat_section *sec = c->section;
    if (!env->fslot || !env->fslot->serial.present)
        return st_err_set(err, ST_ERR_INVAL, "Katapult over a UART needs the slot's serial.device");
    st_stream_line line = { .baud = sec->baud, .data_bits = 8, .parity = 'N', .stop_bits = 1 };
    int rc = st_stream_tty_open(env->fslot->serial.device, &line, &s->kstream, err);
    if (!rc)
        rc = st_serial_request_bootloader_uart(s->kstream, err);
    if (rc)
        return rc;
    st_rmap_str(c->rec, "entry_method", "uart:request-string");
    st_run_identify(c->run, env->fslot->serial.device);
    snprintf(s->where, sizeof s->where, "%.70s", env->fslot->serial.device);
    return 0;
}

static int step_enter(st_step_call *c, st_err *err)
{
    kat_session *s = c->session;
    const kat_section *sec = c->section;
    const st_job *job = c->job;
    int rc;
    if (sec->transport == KAT_CAN && s->can_held && s->kat) {
        /* A retry after CONNECT failed on a unit that took its node id (NACKs, a lost
         * answer): it is in Katapult at that id; CONNECT it again on the same stream. */
        st_rmap_str(c->rec, "entry_method", "can:held-node-id");
        st_rmap_int(c->rec, "can_nodeid", ST_CANADMIN_NODEID_KATAPULT + c->env->unit_index);
        rc = st_katapult_connect(s->kat, &s->kinfo, err);
        if (rc)
            return st_err_wrap(err, rc, "%s", s->where);
        s->can_held = false;
        s->stuck = false;
        goto connected;
    }
    kat_close(s);
    s->can_held = false;
    s->stuck = false;
    s->where[0] = '\0';
    s->blind = false;
    rc = sec->transport == KAT_CAN   ? enter_can(c, s, err)
         : sec->transport == KAT_USB ? enter_usb(c, s, err)
                                     : enter_uart(c, s, err);
    if (rc)
        return rc;
    st_katapult_opts o = {
        .prime = sec->transport == KAT_USB && job->mcu->katapult_usb_prime,
        .tries = sec->tries,
        .block_tries = sec->tries,
        .read_timeout_ms = sec->timeout_ms,
        .block_timeout_ms = sec->timeout_ms,
        /* A serial unit reboots into Katapult as the request arrives: CONNECT is polled
         * until it answers (within the step's time), not sent once and waited out. */
        .connect_within_ms = sec->transport == KAT_CAN ? 0
                             : c->step->timeout_ms    ? c->step->timeout_ms
                                                      : ENTER_DEFAULT_MS,
        .log = c->env->log,
        .progress = c->env->progress,
    };
    rc = st_katapult_open(s->kstream, &o, &s->kat, err);
    if (rc)
        return rc;
    rc = st_katapult_connect(s->kat, &s->kinfo, err);
    if (rc == ST_ERR_TIMEOUT && s->blind) {
        /* Nobody at the node id set blindly: the unit is not on the bus as Katapult. */
        s->blind = false;
        if (err)
            *err = s->blind_err;
        return s->blind_rc;
    }
    s->blind = false;
    if (rc) {
        s->can_held = sec->transport == KAT_CAN;
        s->stuck = true;
        return st_err_wrap(err, rc, "%s", s->where);
    }
connected:;
    st_rnode *k = st_rmap_map(c->rec, "katapult");
    st_rmap_str(k, "protocol", s->kinfo.proto);
    st_rmap_str(k, "mcu", s->kinfo.mcu);
    st_rmap_str(k, "version", s->kinfo.sw_version);
    st_rmap_hex32(k, "app_start", s->kinfo.app_start);
    st_rmap_uint(k, "block_size", s->kinfo.block_size);
    st_rmap_str(st_run_unit(c->run), "katapult_version", s->kinfo.sw_version);
    /* unit.mcu is what the unit says it is, not what the job expected. */
    st_rmap_str(st_run_unit(c->run), "mcu", s->kinfo.mcu);
    /* The image's target must be what the bootloader says it runs on. */
    rc = st_katapult_check_mcu(&s->kinfo, job->mcu->name, err);
    if (rc)
        return rc;
    if (sec->transport == KAT_CAN) {
        uint8_t id[6];
        rc = st_katapult_get_canbus_id(s->kat, id, err);
        if (rc)
            return rc;
        st_can_uuid got, want;
        memcpy(got.b, id, 6);
        st_can_uuid_parse(c->env->can_uuid, &want, NULL);
        char shown[ST_CAN_UUID_STRLEN];
        st_can_uuid_format(&got, shown);
        st_rmap_str(k, "canbus_id", shown);
        if (!st_can_uuid_equal(&got, &want))
            return st_err_set(err, ST_ERR_MISMATCH,
                              "GET_CANBUS_ID says %s, the job addressed %s: another node answered",
                              shown, c->env->can_uuid);
    }
    return 0;
}

/* ---- read-app, katapult-flash, katapult-verify, katapult-complete -------------------- */

/* The image must start where Katapult puts applications. */
static int check_image(const kat_session *s, const st_image *img, st_err *err)
{
    if (!s->kat)
        return st_err_set(err, ST_ERR_INVAL, "no Katapult session (enter-katapult must come first)");
    if (img->load_addr != s->kinfo.app_start)
        return st_err_set(err, ST_ERR_INVAL,
                          "%s loads at 0x%08X but Katapult's application starts at 0x%08X",
                          img->path, img->load_addr, s->kinfo.app_start);
    return 0;
}

static size_t padded(size_t n, uint32_t block)
{
    return (n + block - 1) / block * block;
}

/* Read the application area the image will cover, before anything is written. */
static int read_before(kat_session *s, const st_image *img, st_err *err)
{
    size_t len = padded(img->size, s->kinfo.block_size);
    uint8_t *buf = malloc(len);
    if (!buf)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    int rc = st_katapult_read(s->kat, img->load_addr, len, buf, err);
    if (rc) {
        free(buf);
        return rc;
    }
    free(s->before);
    s->before = buf;
    s->before_len = len;
    s->before_addr = img->load_addr;
    return 0;
}

static int step_read_app(st_step_call *c, st_err *err)
{
    kat_session *s = c->session;
    const st_image *img = c->image;
    int rc = check_image(s, img, err);
    if (!rc)
        rc = read_before(s, img, err);
    if (rc)
        return rc;
    uint8_t md[ST_DIGEST_MAX];
    char h256[65], h1[41];
    st_sha256(s->before, img->size, md);
    st_hex(md, ST_SHA256_LEN, false, h256);
    st_sha1(s->before, s->before_len, md);
    st_hex(md, ST_SHA1_LEN, true, h1);
    st_rnode *unit = st_run_unit(c->run);
    st_rmap_str(unit, "before_sha256", h256);
    st_rmap_str(unit, "before_sha1", h1);
    st_rmap_uint(unit, "before_bytes", img->size);
    st_rmap_hex32(unit, "before_addr", img->load_addr);
    st_rmap_uint(c->rec, "bytes", s->before_len);
    st_rmap_uint(c->rec, "blocks", s->before_len / s->kinfo.block_size);
    st_rmap_str(c->rec, "sha256", h256);
    st_rmap_hex32(c->rec, "address", img->load_addr);
    if (memcmp(h256, img->sha256_hex, 64) == 0)
        st_rmap_str(c->rec, "note", "the unit already holds this image");
    return 0;
}

/* skip_page: the page already holds the image's bytes (as read before flashing). */
typedef struct skip_ctx {
    const kat_session *s;
    const st_image *img;
    uint32_t page_size;
    uint32_t skipped;
} skip_ctx;

static bool page_matches(void *ctx, uint32_t page_addr)
{
    skip_ctx *k = ctx;
    const kat_session *s = k->s;
    uint32_t off = page_addr - k->img->load_addr;
    size_t plen = padded(k->img->size, s->kinfo.block_size);
    size_t n = plen - off < k->page_size ? plen - off : k->page_size;
    if (!s->before || page_addr < s->before_addr || off + n > s->before_len)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t want = off + i < k->img->size ? k->img->data[off + i] : 0xFF;
        if (s->before[off + i] != want)
            return false;
    }
    k->skipped++;
    return true;
}

static int step_flash(st_step_call *c, st_err *err)
{
    kat_session *s = c->session;
    const kat_opts *ko = c->opts;
    bool skip = ko && ko->skip_identical;
    const st_image *img = c->image;
    int rc = check_image(s, img, err);
    if (rc)
        return rc;
    const st_mcu *mcu = st_mcu_find(s->kinfo.mcu);
    skip_ctx sc = { s, img, mcu ? mcu->page_size : c->job->mcu->page_size, 0 };
    st_katapult_flash_opts fo = { .page_size = sc.page_size };
    if (skip && s->before) {
        /* read-app has read the unit already: decide from what it read. */
        fo.skip_page = page_matches;
        fo.skip_ctx = &sc;
    } else if (skip) {
        /* Probe, then decide: a page is read back only until it first differs. */
        fo.probe = true;
    }
    st_katapult_result res;
    memset(&res, 0, sizeof res);
    s->wrote = true;
    rc = st_katapult_flash(s->kat, img, &fo, &res, err);
    st_rmap_uint(c->rec, "pages_written", res.pages);
    st_rmap_uint(c->rec, "pages_skipped", res.pages_skipped);
    if (fo.probe)
        st_rmap_uint(c->rec, "bytes_probed", (uint64_t)res.blocks_probed * s->kinfo.block_size);
    st_rmap_uint(c->rec, "blocks", res.blocks);
    st_rmap_uint(c->rec, "blocks_sent", res.blocks_sent);
    st_rmap_uint(c->rec, "bytes", (uint64_t)res.blocks_sent * s->kinfo.block_size);
    if (res.sha1_hex[0])
        st_rmap_str(c->rec, "sha1", res.sha1_hex);
    if (rc) {
        /* Name the block the unit was cut off at: the report's evidence for recovery. */
        st_rmap_hex32(c->rec, "address", res.fail_addr);
        st_rmap_uint(c->rec, "block", (res.fail_addr - img->load_addr) / s->kinfo.block_size);
        if (res.any_done)
            st_rmap_hex32(c->rec, "last_acknowledged", res.last_addr);
        return rc;
    }
    st_rmap_hex32(c->rec, "address", img->load_addr);
    /* What was read before no longer describes the unit. */
    free(s->before);
    s->before = NULL;
    return 0;
}

static int step_verify(st_step_call *c, st_err *err)
{
    kat_session *s = c->session;
    const st_image *img = c->image;
    int rc = check_image(s, img, err);
    if (rc)
        return rc;
    st_katapult_result res;
    memset(&res, 0, sizeof res);
    rc = st_katapult_verify(s->kat, img, &res, err);
    st_rmap_uint(c->rec, "blocks", res.blocks_verified);
    st_rmap_uint(c->rec, "bytes", (uint64_t)res.blocks_verified * s->kinfo.block_size);
    if (rc) {
        st_rmap_hex32(c->rec, "address", res.fail_addr);
        st_rmap_uint(c->rec, "block", (res.fail_addr - img->load_addr) / s->kinfo.block_size);
        return rc;
    }
    /* sha1: flashtool's "Verification Complete: SHA = ..." for the same image. */
    st_rmap_str(c->rec, "sha1", res.sha1_hex);
    st_rmap_str(c->rec, "sha256", res.sha256_hex);
    st_rmap_hex32(c->rec, "address", img->load_addr);
    /* after_* describe the same N bytes as before_* (N = the image's size): verify has just
     * compared every one of them with the image, so they are the image's digests; the
     * padded read-back's own SHA-256 is the step's sha256. */
    st_rnode *unit = st_run_unit(c->run);
    st_rmap_str(unit, "after_sha256", img->sha256_hex);
    st_rmap_str(unit, "after_sha1", res.sha1_hex);
    return 0;
}

static int step_complete(st_step_call *c, st_err *err)
{
    kat_session *s = c->session;
    if (!s->kat)
        return st_err_set(err, ST_ERR_INVAL, "no Katapult session (enter-katapult must come first)");
    st_err e;
    int rc = st_katapult_complete(s->kat, &e);
    if (rc == ST_ERR_TIMEOUT || rc == ST_ERR_DISCONNECT) {
        /* Katapult resets into the application ~100 ms after COMPLETE whether or not its
         * answer arrives; wait-for-app is the real check. Over USB the reset also takes
         * the CDC device away, so a lost answer can show as a disconnect, as flashtool.py
         * (which ignores COMPLETE's answer) would not notice either. */
        st_rmap_str(c->rec, "note", "COMPLETE was not acknowledged; the unit may have started");
        rc = 0;
    } else if (rc && err) {
        *err = e;
    }
    kat_close(s);
    return rc;
}

/* A unit that stopped answering mid-transfer is not retried: the engine already resent each
 * command as flashtool does, and the unit may hold a vector table over a truncated
 * application, which Katapult would boot. It needs the ROM (the recovery ladder). */
static st_fail_class classify_transfer(const st_step_call *c, int code)
{
    (void)c;
    if (code == ST_ERR_TIMEOUT || code == ST_ERR_DISCONNECT)
        return ST_FAIL_LADDER;
    return st_fail_default(code);
}

/* enter-katapult: a unit that reached Katapult but refuses CONNECT through every retry
 * (NACKs, no answer) sits in Katapult: the job's recovery ladder takes it from there when
 * the job has one (without one, the abandon's COMPLETE or RESET pulse does). */
static st_fail_class classify_enter(const st_step_call *c, int code)
{
    const kat_session *s = c->session;
    st_fail_class fc = st_fail_default(code);
    if (s && s->stuck && c->job->nrungs > 0 &&
        (fc != ST_FAIL_RETRY || c->attempt > c->step->retries))
        return ST_FAIL_LADDER;
    return fc;
}

static int parse_flash(const st_job_parse *p, const st_ynode *node, void **out, st_err *err)
{
    kat_opts *o = calloc(1, sizeof *o);
    if (!o)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    int rc = node ? st_ymap_get_bool(p->doc, node, p->field, "skip_identical", false,
                                     &o->skip_identical, err)
                  : 0;
    if (rc) {
        free(o);
        return rc;
    }
    *out = o;
    return 0;
}

static void needs(const st_job *job, const void *section, const void *opts, st_slot_needs *out)
{
    (void)job, (void)opts;
    const kat_section *sec = section;
    if (sec->transport == KAT_CAN) {
        out->what |= ST_NEED_CAN;
        if (sec->bitrate)
            out->can_bitrate = sec->bitrate;
    } else if (sec->transport == KAT_USB) {
        out->what |= ST_NEED_USB | ST_NEED_USB_SERIAL;
    } else {
        out->what |= ST_NEED_UART;
    }
}

static const st_step_opt flash_opts[] = {
    { "skip_identical", "do not send pages that already hold the image's bytes (probe each "
                        "page's first block; read on only while it matches)" },
    { NULL, NULL },
};

static const st_step_def steps[] = {
    { .name = "enter-katapult",
      .summary = "running app -> Katapult (CAN request by UUID / 1200-baud touch / UART request "
                 "string), CONNECT, MCU check, CAN UUID check",
      .records = "entry_method, can_nodeid, katapult (protocol, mcu, version, app_start, "
                 "block_size, canbus_id); unit.katapult_version",
      .needs = needs, .run = step_enter, .classify = classify_enter },
    { .name = "read-app",
      .summary = "read back the application the unit holds (RMA evidence)",
      .records = "bytes, blocks, sha256, address; unit.before_sha256, before_sha1, before_bytes, "
                 "before_addr",
      .flags = ST_STEP_TAKES_IMAGE, .needs = needs, .run = step_read_app,
      .classify = classify_transfer },
    { .name = "katapult-flash",
      .summary = "SEND_BLOCK for every block (the last padded with 0xFF), SEND_EOF",
      .records = "pages_written, pages_skipped, blocks, blocks_sent, bytes_probed, bytes, sha1, "
                 "address (block, last_acknowledged when cut off)",
      .flags = ST_STEP_TAKES_IMAGE, .opts = flash_opts, .parse = parse_flash, .free_opts = free,
      .needs = needs, .run = step_flash, .classify = classify_transfer },
    { .name = "katapult-verify",
      .summary = "REQUEST_BLOCK read-back: SHA-1 (flashtool's) and SHA-256 against the image",
      .records = "blocks, bytes, sha1, sha256, address; unit.after_sha256, after_sha1",
      .flags = ST_STEP_TAKES_IMAGE, .needs = needs, .run = step_verify,
      .classify = classify_transfer },
    { .name = "katapult-complete",
      .summary = "COMPLETE: Katapult starts the application ~100 ms later",
      .records = "note (when COMPLETE was not acknowledged)",
      .needs = needs, .run = step_complete },
    { .name = NULL },
};

/* ---- identity and discovery ------------------------------------------------------------- */

/* A unit on a CAN bus is named by its UUID from the start. */
static int identity(const st_job *job, const void *section, const st_run_env *env, char *buf,
                    size_t cap)
{
    (void)job;
    const kat_section *sec = section;
    if (sec->transport != KAT_CAN || !env->can_uuid || !env->can_uuid[0])
        return 0;
    snprintf(buf, cap, "%s", env->can_uuid);
    return 1;
}

static const char *discover_refusal(const void *section)
{
    const kat_section *sec = section;
    return sec->transport == KAT_CAN
               ? NULL
               : "discover finds units on a CAN bus: it needs katapult.transport: can";
}

static unsigned discover_ms(const void *section)
{
    const kat_section *sec = section;
    return sec->discover_ms;
}

/* Every unit that answers QUERY on the interface (Klipper applications and Katapult). */
static int query(st_can_iface *ifc, unsigned ms, st_canadmin_node *nodes, size_t cap, st_err *err)
{
    st_can_link *l = NULL;
    int rc = ifc->ops->open_link(ifc, &l, err);
    if (rc)
        return rc;
    rc = st_canadmin_query(l, ms, nodes, cap, err);
    st_can_link_close(l);
    return rc;
}

static int discover(const void *section, st_can_iface *ifc, st_found_unit *out, size_t cap,
                    st_err *err)
{
    const kat_section *sec = section;
    st_canadmin_node nodes[64];
    int n = query(ifc, sec->discover_ms, nodes, 64, err);
    for (int i = 0; i < n && (size_t)i < cap && i < 64; i++) {
        char u[ST_CAN_UUID_STRLEN];
        st_can_uuid_format(&nodes[i].uuid, u);
        st_strlcpy(out[i].uuid, u, sizeof out[i].uuid);
    }
    return n;
}

/* ---- commands ------------------------------------------------------------------------ */

/* The CAN interface a command means: --iface, else the first slot's. */
static const char *default_iface(const st_fixture *fx, const st_cli *cli)
{
    const char *o = cli->opt(cli, "iface");
    return o ? o : st_fixture_can_iface(fx);
}

static int cmd_can_scan(const st_cli *cli, char *const args[])
{
    (void)args;
    st_err e;
    const st_fixture *fx = NULL;
    st_usb_host *usb = NULL;
    int status = cli->open(cli, &fx, &usb);
    if (status)
        return status;
    const char *ifname = default_iface(fx, cli);
    st_can_iface *ifc = NULL;
    st_canadmin_node nodes[64];
    int n = cli->can_iface(cli, ifname, &ifc, &e);
    if (!n)
        n = st_can_iface_prepare(ifc, st_fixture_can_bitrate(fx, ifname), &e);
    if (!n)
        n = query(ifc, ST_CANADMIN_QUERY_MS, nodes, 64, &e);
    if (n < 0) {
        st_cli_error(cli, "can scan", &e);
        return ST_EXIT_STATION;
    }
    FILE *out = cli->out;
    fprintf(out, "%d unit%s on %s\n", n, n == 1 ? "" : "s", ifname);
    if (n)
        fprintf(out, "%-14s %-12s %s\n", "UUID", "RUNS", "SLOT");
    for (int i = 0; i < n && i < 64; i++) {
        char uuid[ST_CAN_UUID_STRLEN], app[32];
        st_can_uuid_format(&nodes[i].uuid, uuid);
        const st_fixture_slot *fs = st_fixture_slot_by_can_uuid(fx, uuid);
        char slot[80] = "-";
        if (fs)
            snprintf(slot, sizeof slot, "%d%s%s%s", fs->id, fs->name[0] ? " (" : "", fs->name,
                     fs->name[0] ? ")" : "");
        fprintf(out, "%-14s %-12s %s\n", uuid, st_canadmin_app_name(&nodes[i], app, sizeof app), slot);
    }
    if (n > 64)
        fprintf(out, "(%d more not shown)\n", n - 64);
    return ST_EXIT_PASS;
}

/* `can flash` / `serial flash`: the Katapult steps on a job made from the command line. */
static int cmd_flash(const st_cli *cli, bool can, const char *image_path)
{
    st_err e;
    st_job *job = NULL;
    st_image *images[ST_JOB_MAX_IMAGES] = { NULL };
    int status = ST_EXIT_USAGE;
    const char *mcu_name = cli->opt(cli, "mcu");
    const char *uuid = cli->opt(cli, "uuid");
    const char *addr_s = cli->opt(cli, "addr");
    const st_mcu *mcu = st_mcu_find(mcu_name ? mcu_name : "stm32g431xx");
    if (!mcu) {
        fprintf(cli->errout, "station: --mcu %s: unknown MCU\n", mcu_name);
        return ST_EXIT_USAGE;
    }
    uint32_t addr = mcu->flash_start + mcu->katapult_app_offset;
    /* st_parse_u32 is 64-bit inside: 0x90000000 is a number on 32-bit builds too. */
    if (addr_s && !st_parse_u32(addr_s, &addr)) {
        fprintf(cli->errout, "station: --addr: \"%s\" is not a number\n", addr_s);
        return ST_EXIT_USAGE;
    }
    if (can && (!uuid || st_can_uuid_parse(uuid, &(st_can_uuid){ { 0 } }, &e))) {
        fprintf(cli->errout, "station: can flash needs --uuid with the unit's 12-hex-digit CAN UUID\n");
        return ST_EXIT_USAGE;
    }
    if (!can && cli->nslots != 1) {
        fprintf(cli->errout,
                "station: serial flash needs --slot N (the slot whose USB port holds the unit)\n");
        return ST_EXIT_USAGE;
    }
    if (st_job_new(cli->drivers, mcu, &job, &e)) {
        st_cli_error(cli, can ? "can flash" : "serial flash", &e);
        return ST_EXIT_STATION;
    }
    int di = st_drivers_index(job->drivers, &st_katapult_driver);
    kat_section *sec = di >= 0 ? job->sections[di] : NULL;
    if (!sec) {
        fprintf(cli->errout, "station: the katapult driver is not in the registry\n");
        st_job_free(job);
        return ST_EXIT_STATION;
    }
    st_strlcpy(job->name, can ? "can-flash" : "serial-flash", sizeof job->name);
    job->retries = 1;
    sec->transport = can ? KAT_CAN : KAT_USB;
    job->images[0].path = realpath(image_path, NULL);
    if (!job->images[0].path)
        job->images[0].path = strdup(image_path);
    st_strlcpy(job->images[0].role, "application", sizeof job->images[0].role);
    job->images[0].load_addr = addr;
    job->nimages = 1;
    /* --sha256 pins the image here, not a job: say so when it does not match. */
    const char *want = cli->opt(cli, "sha256");
    uint8_t pin[ST_SHA256_LEN];
    if (want && !st_unhex(want, pin, sizeof pin)) {
        fprintf(cli->errout, "station: --sha256: \"%s\" is not 64 hex digits\n", want);
        goto out;
    }
    if (st_image_load(job->images[0].path, addr, &images[0], &e) ||
        st_image_validate(images[0], mcu, NULL, &e)) {
        st_cli_error(cli, "image refused", &e);
        goto out;
    }
    char pinned[65] = "";
    if (want)
        st_hex(pin, sizeof pin, false, pinned);
    if (want && strcmp(pinned, images[0]->sha256_hex) != 0) {
        fprintf(cli->errout, "station: image refused: %s: its SHA-256 is %s, --sha256 asks for %s\n",
                images[0]->path, images[0]->sha256_hex, pinned);
        goto out;
    }
    /* Without --sha256 the image is taken as given; the report still pins what was sent.
     * The job is the command line: the report cites it, and its digest, as the job. */
    st_strlcpy(job->images[0].sha256, images[0]->sha256_hex, sizeof job->images[0].sha256);
    char line[PATH_MAX + 128];
    snprintf(line, sizeof line, "station %s flash %s --addr 0x%08X %s%s", can ? "can" : "serial",
             job->images[0].path, addr, can ? "--uuid " : "--slot", can ? uuid : "");
    if (!can)
        snprintf(line + strlen(line), sizeof line - strlen(line), " %d", cli->slots[0]);
    job->path = strdup(line);
    uint8_t md[ST_SHA256_LEN];
    st_sha256(line, strlen(line), md);
    st_hex(md, sizeof md, false, job->sha256);
    char wait[64];
    if (can)
        snprintf(wait, sizeof wait, "{ can: true }");
    else
        snprintf(wait, sizeof wait, "{ usb: \"%04x:%04x\" }", sec->app_usb.vid, sec->app_usb.pid);
    int rc = st_job_add_step(job, "enter-katapult", 0, NULL, &e);
    if (!rc)
        rc = st_job_add_step(job, "read-app", 0, NULL, &e);
    if (!rc)
        rc = st_job_add_step(job, "katapult-flash", 0, "{ skip_identical: true }", &e);
    if (!rc)
        rc = st_job_add_step(job, "katapult-verify", 0, NULL, &e);
    if (!rc)
        rc = st_job_add_step(job, "katapult-complete", 0, NULL, &e);
    if (!rc)
        rc = st_job_add_step(job, "wait-for-app", 0, wait, &e);
    if (rc) {
        st_cli_error(cli, can ? "can flash" : "serial flash", &e);
        status = ST_EXIT_STATION;
        goto out;
    }
    /* A unit named by UUID runs like a discovered one: in its slot if the fixture maps it. */
    if (can) {
        job->units = ST_UNITS_DISCOVER;
        job->finder = &st_katapult_driver;
    }
    status = cli->run_job(cli, job, images);
out:
    for (size_t i = 0; i < ST_JOB_MAX_IMAGES; i++)
        st_image_free(images[i]);
    st_job_free(job);
    return status;
}

static int cmd_can_flash(const st_cli *cli, char *const args[])
{
    return cmd_flash(cli, true, args[0]);
}

static int cmd_serial_flash(const st_cli *cli, char *const args[])
{
    return cmd_flash(cli, false, args[0]);
}

static const st_cli_opt scan_opts[] = {
    { "iface", "NAME", "CAN interface (default: the fixture's first)" },
    { NULL, NULL, NULL },
};

static const st_cli_opt can_flash_opts[] = {
    { "uuid", "UUID", "the unit's CAN UUID (12 hex digits), required" },
    { "iface", "NAME", "CAN interface (default: the slot's, else the fixture's first)" },
    { "addr", "ADDR", "load address (default: the MCU's Katapult application start)" },
    { "sha256", "HEX", "refuse the image unless it has this digest" },
    { "mcu", "NAME", "target MCU (default stm32g431xx)" },
    { NULL, NULL, NULL },
};

static const st_cli_opt serial_flash_opts[] = {
    { "addr", "ADDR", "load address (default: the MCU's Katapult application start)" },
    { "sha256", "HEX", "refuse the image unless it has this digest" },
    { "mcu", "NAME", "target MCU (default stm32g431xx)" },
    { NULL, NULL, NULL },
};

static const st_cli_cmd commands[] = {
    { .words = "can scan",
      .summary = "list the units on a CAN bus: UUID, Klipper or Katapult, slot",
      .opts = scan_opts, .run = cmd_can_scan },
    { .words = "can flash", .args = "IMAGE", .nargs = 1,
      .summary = "reflash an application over CAN with Katapult (--uuid U)",
      .help = "Runs enter-katapult, read-app, katapult-flash (skip_identical), katapult-verify, "
              "katapult-complete and wait-for-app on the unit with that UUID, in its slot when "
              "the fixture maps it, and writes its report.",
      .opts = can_flash_opts, .flags = ST_CLI_RUNS_JOBS, .run = cmd_can_flash },
    { .words = "serial flash", .args = "IMAGE", .nargs = 1,
      .summary = "reflash an application over USB-CDC with Katapult (--slot N)",
      .help = "The same steps over the slot's USB port (--slot N): the 1200-baud touch, then "
              "Katapult on the same port path.",
      .opts = serial_flash_opts, .flags = ST_CLI_RUNS_JOBS, .run = cmd_serial_flash },
    { .words = NULL },
};

const st_driver st_katapult_driver = {
    .name = "katapult",
    .summary = "the Katapult bootloader over CAN (Klipper CAN admin), USB-CDC or UART",
    .section_parse = section_parse,
    .section_free = free,
    .section_help = "transport (can|usb|uart), bitrate, baud, app_usb, discover_ms, "
                    "timeout_ms, tries",
    .steps = steps,
    .session_open = session_open,
    .session_abandon = session_abandon,
    .session_close = session_close,
    .identity = identity,
    .discover_refusal = discover_refusal,
    .discover = discover,
    .discover_ms = discover_ms,
    .ladder_needed = "rom-dfu",
    .ladder_hint = "ROM recovery (BOOT0 + DFU)",
    .commands = commands,
};
