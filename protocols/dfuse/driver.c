/* The ROM DFU driver (see driver.h): enter the STM32 ROM's USB DFU bootloader through
 * BOOT0 + RESET, flash, verify, start, and power-cycle; `station dfu list`. */
#include "protocols/dfuse/driver.h"

#include <stdlib.h>
#include <string.h>

#include "fixtures/slot.h"
#include "protocols/dfuse/dfuse.h"
#include "station/core/clock.h"
#include "station/core/text.h"

#define MOD "dfu"

/* The job's dfu: section. */
typedef struct dfu_section {
    st_usb_id device;           /* the ROM's USB id (default: the MCU table's) */
    uint32_t enumerate_timeout_ms;
    uint32_t request_timeout_ms;
} dfu_section;

/* One unit's ROM DFU session. */
typedef struct dfu_session {
    st_dfuse *dfu;
    st_usb_dev_info dev;
    bool flashed;
    bool written_verified;    /* flash + verify both passed: a lost leave status is fine */
} dfu_session;

typedef struct dfu_opts {
    bool skip_identical;
} dfu_opts;

static int section_parse(const st_job_parse *p, const st_ynode *node, void **out, st_err *err)
{
    dfu_section *s = calloc(1, sizeof *s);
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    s->device = p->job->mcu->usb_rom_dfu;
    s->enumerate_timeout_ms = 5000;
    s->request_timeout_ms = 5000; /* dfu-util's */
    int rc = 0;
    if (node) {
        static const char *const keys[] = { "device", "enumerate_timeout_ms", "request_timeout_ms", NULL };
        rc = st_ymap_check_keys(p->doc, node, "dfu", keys, err);
        if (!rc)
            rc = st_job_get_usb_id(p, node, "dfu", "device", "0483:df11", &s->device, err);
        if (!rc)
            rc = st_ymap_get_u32(p->doc, node, "dfu", "enumerate_timeout_ms", false, 1, 600000,
                                 &s->enumerate_timeout_ms, err);
        if (!rc)
            rc = st_ymap_get_u32(p->doc, node, "dfu", "request_timeout_ms", false, 1, 600000,
                                 &s->request_timeout_ms, err);
    }
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static int session_open(const st_step_call *c, void **out, st_err *err)
{
    (void)c;
    dfu_session *s = calloc(1, sizeof *s);
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    *out = s;
    return 0;
}

static void dfu_close(dfu_session *s)
{
    st_dfuse_close(s->dfu);
    s->dfu = NULL;
}

static void session_close(void *session)
{
    dfu_session *s = session;
    if (!s)
        return;
    dfu_close(s);
    free(s);
}

/* The ROM is reached through the slot's BOOT0/RESET lines and USB port: a unit found on a
 * bus that no fixture slot holds has neither. */
static int need_slot(const st_step_call *c, st_err *err)
{
    if (c->env->slot && c->env->fslot)
        return 0;
    return st_err_set(err, ST_ERR_UNSUPPORTED,
                      "the unit is in no fixture slot, so the station has no BOOT0/RESET lines "
                      "or USB port for it (map its CAN UUID to a slot in the fixture)");
}

/* Find the ROM DFU device on the slot's port and open it. */
static int open_dfu(const st_step_call *c, unsigned timeout_ms, st_err *err)
{
    const dfu_section *sec = c->section;
    dfu_session *s = c->session;
    const st_run_env *env = c->env;
    dfu_close(s);
    st_deadline d = st_deadline_in_ms(timeout_ms);
    int rc;
    for (;;) {
        rc = st_usb_host_wait(env->usb, sec->device.vid, sec->device.pid, env->fslot->usb_port,
                              (unsigned)st_deadline_remaining_ms(d), &s->dev, err);
        if (rc)
            return st_err_wrap(err, rc, "waiting for the ROM DFU device");
        rc = st_dfuse_open(env->usb, &s->dev, env->log, &s->dfu, err);
        /* A unit that was already in the ROM is still listed for a moment after the reset
         * took it off the bus: the device found may be the one leaving. Look again. */
        if ((rc == ST_ERR_NOTFOUND || rc == ST_ERR_DISCONNECT) && !st_deadline_passed(d)) {
            /* the enumeration poll of st_usb_host_wait, bounded by the deadline */
            uint64_t next = st_now_us() + 20000;
            st_sleep_until((st_deadline){ next < d.at_us ? next : d.at_us });
            continue;
        }
        if (rc)
            return rc;
        break;
    }
    const st_dfuse_info *info = st_dfuse_get_info(s->dfu);
    char serial[64];
    st_text_printable(info->serial[0] ? info->serial : s->dev.serial, serial, sizeof serial);
    st_rnode *unit = st_run_unit(c->run);
    st_rmap_str(unit, "dfu_serial", serial);
    st_rmap_str(unit, "port_path", s->dev.port_path);
    st_rmap_uint(unit, "dfu_transfer_size", info->transfer_size);
    char identity[128];
    snprintf(identity, sizeof identity, "%s", serial[0] ? serial : s->dev.port_path);
    st_run_identify(c->run, identity);
    return 0;
}

static st_dfuse_opts dfuse_opts(const st_step_call *c)
{
    const dfu_opts *o = c->opts;
    const dfu_section *sec = c->section;
    st_dfuse_opts d = { .skip_identical = o && o->skip_identical,
                        .request_timeout_ms = sec->request_timeout_ms,
                        .progress = c->env->progress };
    return d;
}

static void record_dfu(const st_step_call *c, const st_dfuse_result *res)
{
    if (res->dfu_status) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s (state %s)", st_dfu_status_name(res->dfu_status),
                 st_dfu_state_name(res->dfu_state));
        if (res->fail_addr) {
            size_t n = strlen(msg);
            snprintf(msg + n, sizeof msg - n, " at 0x%08X", res->fail_addr);
        }
        st_run_device_error(c->run, msg);
    }
}

static int step_enter(st_step_call *c, st_err *err)
{
    const char *method = NULL;
    const dfu_section *sec = c->section;
    if (need_slot(c, err))
        return ST_ERR_UNSUPPORTED; /* need_slot's only code, with or without err */
    dfu_close(c->session);
    int rc = st_slot_enter_bootloader(c->env->slot, &method, err);
    if (rc)
        return rc;
    st_rmap_str(c->rec, "entry_method", method);
    return open_dfu(c, c->step->timeout_ms ? c->step->timeout_ms : sec->enumerate_timeout_ms, err);
}

/* A transfer that broke off leaves the ROM in an unknown state: the next attempt starts
 * over from BOOT0 + RESET (the first rung of the recovery ladder). */
static int reenter_if_needed(st_step_call *c, st_err *err)
{
    dfu_session *s = c->session;
    const dfu_section *sec = c->section;
    if (s->dfu)
        return 0;
    if (need_slot(c, err))
        return ST_ERR_UNSUPPORTED; /* need_slot's only code, with or without err */
    const char *method = NULL;
    int rc = st_slot_enter_bootloader(c->env->slot, &method, err);
    if (!rc)
        rc = open_dfu(c, sec->enumerate_timeout_ms, err);
    if (!rc)
        st_rmap_str(c->rec, "rung", "boot0+reset re-entry");
    return rc;
}

static int step_flash(st_step_call *c, st_err *err)
{
    dfu_session *s = c->session;
    int rc = reenter_if_needed(c, err);
    if (rc)
        return rc;
    const st_image *img = c->image;
    st_dfuse_opts o = dfuse_opts(c);
    st_dfuse_result res;
    memset(&res, 0, sizeof res);
    rc = st_dfuse_flash(s->dfu, img, &o, &res, err);
    record_dfu(c, &res);
    st_rmap_uint(c->rec, "bytes", res.bytes_written);
    st_rmap_uint(c->rec, "pages_erased", res.pages_erased);
    st_rmap_uint(c->rec, "pages_written", res.pages_written);
    st_rmap_uint(c->rec, "pages_skipped", res.pages_skipped);
    if (o.skip_identical) {
        st_rmap_uint(c->rec, "bytes_probed", res.bytes_probed);
        st_rmap_uint(c->rec, "pages_blank", res.pages_blank);
    }
    st_rmap_hex32(c->rec, "address", img->load_addr);
    if (rc) {
        if (rc == ST_ERR_DISCONNECT || rc == ST_ERR_STALL || rc == ST_ERR_TIMEOUT || rc == ST_ERR_IO)
            dfu_close(s);
        return rc;
    }
    s->flashed = true;
    return 0;
}

static int step_verify(st_step_call *c, st_err *err)
{
    dfu_session *s = c->session;
    int rc = reenter_if_needed(c, err);
    if (rc)
        return rc;
    const st_image *img = c->image;
    st_dfuse_opts o = dfuse_opts(c);
    st_dfuse_result res;
    memset(&res, 0, sizeof res);
    rc = st_dfuse_verify(s->dfu, img, &o, &res, err);
    record_dfu(c, &res);
    char hex[65];
    st_hex(res.readback_sha256, 32, false, hex);
    st_rmap_uint(c->rec, "bytes", res.bytes_read);
    st_rmap_str(c->rec, "sha256", hex);
    st_rmap_hex32(c->rec, "address", rc == ST_ERR_VERIFY ? res.fail_addr : img->load_addr);
    if (rc == 0)
        s->written_verified = s->flashed;
    else if (rc != ST_ERR_VERIFY)
        dfu_close(s);
    return rc;
}

static int step_start(st_step_call *c, st_err *err)
{
    dfu_session *s = c->session;
    const char *method = NULL;
    if (need_slot(c, err))
        return ST_ERR_UNSUPPORTED; /* need_slot's only code, with or without err */
    /* BOOT0 low first, so any later reset boots the new firmware, not the ROM. */
    int rc = st_slot_release(c->env->slot, &method, err);
    if (rc)
        return rc;
    if (!s->dfu) {
        /* Nothing to leave: start by reset (the ladder's fallback). */
        rc = st_slot_run(c->env->slot, &method, err);
        st_rmap_str(c->rec, "entry_method", method);
        st_rmap_str(c->rec, "rung", "reset");
        return rc;
    }
    st_dfuse_result res;
    memset(&res, 0, sizeof res);
    const st_image *img = c->image;
    rc = st_dfuse_leave(s->dfu, img->load_addr, s->written_verified, &res, err);
    dfu_close(s);
    st_rmap_str(c->rec, "entry_method", "dfu-leave");
    st_rmap_hex32(c->rec, "address", img->load_addr);
    if (res.leave_status_missing)
        st_rmap_str(c->rec, "note", "no status after the leave request (the ROM had already "
                                    "jumped); accepted because write and verify passed");
    if (rc) {
        /* A leave the ROM refused: a reset with BOOT0 low starts the image anyway. */
        ST_LOGW(c->env->log, MOD, "%s: leave failed (%s); starting by reset",
                st_run_label(c->run), err ? err->msg : "");
        st_err e2;
        rc = st_slot_run(c->env->slot, &method, &e2);
        st_rmap_str(c->rec, "rung", "reset after failed leave");
        if (rc && err)
            *err = e2;
    }
    return rc;
}

static int step_power(st_step_call *c, st_err *err)
{
    const char *method = NULL;
    if (need_slot(c, err))
        return ST_ERR_UNSUPPORTED; /* need_slot's only code, with or without err */
    dfu_close(c->session); /* the ROM's device goes with the power */
    int rc = st_slot_power_cycle(c->env->slot, &method, err);
    st_rmap_str(c->rec, "entry_method", method);
    return rc;
}

static int parse_flash(const st_job_parse *p, const st_ynode *node, void **out, st_err *err)
{
    dfu_opts *o = calloc(1, sizeof *o);
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

static void needs_rom(const st_job *job, const void *section, const void *opts, st_slot_needs *out)
{
    (void)job, (void)section, (void)opts;
    out->what |= ST_NEED_GPIO | ST_NEED_USB;
}

static void needs_gpio(const st_job *job, const void *section, const void *opts, st_slot_needs *out)
{
    (void)job, (void)section, (void)opts;
    out->what |= ST_NEED_GPIO;
}

static const st_step_opt flash_opts[] = {
    { "skip_identical", "erase and write only the pages that differ (each page read back only "
                        "until it first differs)" },
    { NULL, NULL },
};

static const st_step_def steps[] = {
    { .name = "enter-bootloader",
      .summary = "assert BOOT0, pulse RESET, settle; open the ROM DFU device on the slot's USB "
                 "port (timeout_ms: how long it may take to enumerate)",
      .records = "entry_method; unit.dfu_serial, unit.port_path, unit.dfu_transfer_size",
      .needs = needs_rom, .run = step_enter },
    { .name = "flash",
      .summary = "DfuSe erase + write of the image's pages",
      .records = "bytes, pages_erased, pages_written, pages_skipped, bytes_probed, pages_blank, address; "
                 "device_error",
      .flags = ST_STEP_TAKES_IMAGE, .opts = flash_opts, .parse = parse_flash, .free_opts = free,
      .needs = needs_rom, .run = step_flash },
    { .name = "verify",
      .summary = "read the image's range back (UPLOAD) and compare SHA-256",
      .records = "bytes, sha256, address (the first differing one on a mismatch)",
      .flags = ST_STEP_TAKES_IMAGE, .needs = needs_rom, .run = step_verify },
    { .name = "start",
      .summary = "release BOOT0, DfuSe leave to the image's address (a RESET pulse if refused)",
      .records = "entry_method, address, rung, note",
      .flags = ST_STEP_TAKES_IMAGE, .needs = needs_rom, .run = step_start },
    { .name = "power-cycle",
      .summary = "cut and restore DUT power (fixtures with a power line)",
      .records = "entry_method",
      .needs = needs_gpio, .run = step_power },
    { .name = NULL },
};

/* The ROM names the unit (its DFU serial) when the job enters it. */
static int identity(const st_job *job, const void *section, const st_run_env *env, char *buf,
                    size_t cap)
{
    (void)section, (void)env, (void)buf, (void)cap;
    for (size_t i = 0; i < job->nsteps; i++)
        if (job->steps[i].def == &steps[0])
            return -1;
    return 0;
}

/* ---- station dfu list -------------------------------------------------------------------- */

static int cmd_list(const st_cli *cli, char *const args[])
{
    (void)args;
    st_err e;
    const st_fixture *fx = NULL;
    st_usb_host *host = NULL;
    int status = cli->open(cli, &fx, &host);
    if (status)
        return status;
    st_usb_dev_info *list = NULL;
    size_t n = 0;
    if (st_usb_host_list(host, &list, &n, &e)) {
        st_cli_error(cli, "dfu list", &e);
        return ST_EXIT_STATION;
    }
    FILE *out = cli->out;
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        /* Only devices that declare a DFU interface are opened: claiming an interface of
         * anything else (a CDC-ACM unit) would take it from its kernel driver. */
        bool is_dfu = false;
        if (st_dfuse_probe(host, &list[i], &is_dfu, NULL) != 0 || !is_dfu)
            continue;
        found++;
        st_dfuse *d = NULL;
        char s1[ST_USB_STRING_MAX], s2[ST_USB_STRING_MAX];
        fprintf(out, "%04x:%04x port %s  serial \"%s\"  %s\n", list[i].vid, list[i].pid,
                list[i].port_path, st_text_printable(list[i].serial, s1, sizeof s1),
                st_text_printable(list[i].product, s2, sizeof s2));
        if (st_dfuse_open(host, &list[i], NULL, &d, &e)) {
            fprintf(out, "  (cannot open: %s)\n", e.msg);
            continue;
        }
        const st_dfuse_info *info = st_dfuse_get_info(d);
        fprintf(out, "  DFU %x.%02x, transfer size %u, attributes 0x%02x, detach %u ms\n",
                info->dfu_version >> 8, info->dfu_version & 0xFF, info->transfer_size,
                info->attributes, info->detach_timeout_ms);
        for (size_t a = 0; a < info->nalts; a++) {
            const st_dfuse_alt *alt = &info->alts[a];
            fprintf(out, "  alt %u \"%s\"\n", alt->alt, st_text_printable(alt->name, s1, sizeof s1));
            if (!alt->layout) {
                fprintf(out, "    (no memory layout)\n");
                continue;
            }
            for (size_t g = 0; g < alt->layout->nsegs; g++) {
                const st_dfuse_segment *sg = &alt->layout->segs[g];
                fprintf(out, "    0x%08X-0x%08llX  %u x %u bytes  %s%s%s\n", sg->start,
                        (unsigned long long)(sg->start + sg->size - 1), sg->count, sg->page_size,
                        sg->flags & ST_DFUSE_MEM_READABLE ? "r" : "-",
                        sg->flags & ST_DFUSE_MEM_ERASABLE ? "e" : "-",
                        sg->flags & ST_DFUSE_MEM_WRITABLE ? "w" : "-");
            }
        }
        st_dfuse_close(d);
    }
    if (!found)
        fprintf(out, "no DFU devices\n");
    free(list);
    return ST_EXIT_PASS;
}

static const st_cli_cmd commands[] = {
    { .words = "dfu list",
      .summary = "list DFU devices: port path, serial, alt settings, layout",
      .help = "Lists every USB device of the fixture's USB host that declares a DFU interface, "
              "with its DFU version, transfer size and each alt setting's memory layout.",
      .run = cmd_list },
    { .words = NULL },
};

static const char *const rom_rung[] = { "enter-bootloader", "flash", "verify", "start", NULL };

const st_driver st_dfuse_driver = {
    .name = "dfu",
    .summary = "the STM32 ROM's USB DFU bootloader (DfuSe), reached through BOOT0 + RESET",
    .section_parse = section_parse,
    .section_free = free,
    .section_help = "device (the ROM's USB id, default from the MCU table), "
                    "enumerate_timeout_ms (5000), request_timeout_ms (5000)",
    .steps = steps,
    .session_open = session_open,
    .session_close = session_close,
    .identity = identity,
    .rung_name = "rom-dfu",
    .rung_steps = rom_rung,
    .commands = commands,
};
