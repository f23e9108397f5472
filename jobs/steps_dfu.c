/* Job steps over the STM32 ROM USB DFU bootloader (DfuSe): enter through BOOT0 + RESET,
 * flash, verify, start, and wait for the application. */
#include <stdio.h>
#include <string.h>

#include "jobs/run.h"
#include "station/core/text.h"

#define MOD "job"
/* After a leave the application needs time to start and enumerate. */
#define WAIT_FOR_APP_DEFAULT_MS 10000u

/* The ROM is reached through the slot's BOOT0/RESET lines and USB port: a unit found on a
 * bus that no fixture slot holds has neither. */
static int need_slot(run *r, st_err *err)
{
    if (r->env->slot && r->env->fslot)
        return 0;
    return st_err_set(err, ST_ERR_UNSUPPORTED,
                      "the unit is in no fixture slot, so the station has no BOOT0/RESET lines "
                      "or USB port for it (map its CAN UUID to a slot in the fixture)");
}

void dfu_close(run *r)
{
    st_dfuse_close(r->dfu);
    r->dfu = NULL;
}

/* Find the ROM DFU device on the slot's port and open it. */
static int open_dfu(run *r, unsigned timeout_ms, st_err *err)
{
    const st_job *job = r->job;
    const st_run_env *env = r->env;
    dfu_close(r);
    int rc = st_usb_host_wait(env->usb, job->dfu_vid, job->dfu_pid, env->fslot->usb_port,
                              timeout_ms, &r->dfu_dev, err);
    if (rc)
        return st_err_wrap(err, rc, "waiting for the ROM DFU device");
    rc = st_dfuse_open(env->usb, &r->dfu_dev, env->log, &r->dfu, err);
    if (rc)
        return rc;
    const st_dfuse_info *info = st_dfuse_get_info(r->dfu);
    char serial[64];
    st_text_printable(info->serial[0] ? info->serial : r->dfu_dev.serial, serial, sizeof serial);
    st_rnode *unit = st_rmap_map(r->doc, "unit");
    st_rmap_str(unit, "dfu_serial", serial);
    st_rmap_str(unit, "port_path", r->dfu_dev.port_path);
    st_rmap_uint(unit, "dfu_transfer_size", info->transfer_size);
    /* The ROM's DFU serial is a truncated chip id and collides across units: the identity
     * joins it with the port, so two reports never share a name. */
    char identity[128];
    snprintf(identity, sizeof identity, "%s", serial[0] ? serial : r->dfu_dev.port_path);
    run_identify(r, identity);
    return 0;
}

static st_dfuse_opts dfu_opts(const run *r, const st_job_step *s)
{
    st_dfuse_opts o = { .skip_identical = s->skip_identical,
                        .request_timeout_ms = r->job->request_timeout_ms,
                        .progress = r->env->progress };
    return o;
}

static void record_dfu(run *r, const st_dfuse_result *res)
{
    if (res->dfu_status) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s (state %s)", st_dfu_status_name(res->dfu_status),
                 st_dfu_state_name(res->dfu_state));
        if (res->fail_addr) {
            size_t n = strlen(msg);
            snprintf(msg + n, sizeof msg - n, " at 0x%08X", res->fail_addr);
        }
        run_device_error(r, msg);
    }
}

int dfu_step_enter(run *r, const st_job_step *s, st_err *err)
{
    const char *method = NULL;
    if (need_slot(r, err))
        return ST_ERR_UNSUPPORTED; /* need_slot's only code, with or without err */
    dfu_close(r);
    int rc = st_slot_enter_bootloader(r->env->slot, &method, err);
    if (rc)
        return rc;
    st_rmap_str(r->cur, "entry_method", method);
    return open_dfu(r, s->timeout_ms ? s->timeout_ms : r->job->enumerate_timeout_ms, err);
}

/* A transfer that broke off leaves the ROM in an unknown state: the next attempt starts
 * over from BOOT0 + RESET (the first rung of the recovery ladder). */
static int reenter_if_needed(run *r, st_err *err)
{
    if (r->dfu)
        return 0;
    if (need_slot(r, err))
        return ST_ERR_UNSUPPORTED; /* need_slot's only code, with or without err */
    const char *method = NULL;
    int rc = st_slot_enter_bootloader(r->env->slot, &method, err);
    if (!rc)
        rc = open_dfu(r, r->job->enumerate_timeout_ms, err);
    if (!rc)
        st_rmap_str(r->cur, "rung", "boot0+reset re-entry");
    return rc;
}

int dfu_step_flash(run *r, const st_job_step *s, st_err *err)
{
    int rc = reenter_if_needed(r, err);
    if (rc)
        return rc;
    const st_image *img = r->images[s->image];
    st_dfuse_opts o = dfu_opts(r, s);
    st_dfuse_result res;
    memset(&res, 0, sizeof res);
    rc = st_dfuse_flash(r->dfu, img, &o, &res, err);
    record_dfu(r, &res);
    st_rmap_uint(r->cur, "bytes", res.bytes_written);
    st_rmap_uint(r->cur, "pages_erased", res.pages_erased);
    st_rmap_uint(r->cur, "pages_written", res.pages_written);
    st_rmap_uint(r->cur, "pages_skipped", res.pages_skipped);
    st_rmap_hex32(r->cur, "address", img->load_addr);
    if (rc) {
        if (rc == ST_ERR_DISCONNECT || rc == ST_ERR_STALL || rc == ST_ERR_TIMEOUT || rc == ST_ERR_IO)
            dfu_close(r);
        return rc;
    }
    r->flashed = true;
    return 0;
}

int dfu_step_verify(run *r, const st_job_step *s, st_err *err)
{
    int rc = reenter_if_needed(r, err);
    if (rc)
        return rc;
    const st_image *img = r->images[s->image];
    st_dfuse_opts o = dfu_opts(r, s);
    st_dfuse_result res;
    memset(&res, 0, sizeof res);
    rc = st_dfuse_verify(r->dfu, img, &o, &res, err);
    record_dfu(r, &res);
    char hex[65];
    st_hex(res.readback_sha256, 32, false, hex);
    st_rmap_uint(r->cur, "bytes", res.bytes_read);
    st_rmap_str(r->cur, "sha256", hex);
    st_rmap_hex32(r->cur, "address", rc == ST_ERR_VERIFY ? res.fail_addr : img->load_addr);
    if (rc == 0)
        r->written_verified = r->flashed;
    else if (rc != ST_ERR_VERIFY)
        dfu_close(r);
    return rc;
}

int dfu_step_start(run *r, const st_job_step *s, st_err *err)
{
    const char *method = NULL;
    if (need_slot(r, err))
        return ST_ERR_UNSUPPORTED; /* need_slot's only code, with or without err */
    /* BOOT0 low first, so any later reset boots the new firmware, not the ROM. */
    int rc = st_slot_release(r->env->slot, &method, err);
    if (rc)
        return rc;
    if (!r->dfu) {
        /* Nothing to leave: start by reset (the ladder's fallback). */
        rc = st_slot_run(r->env->slot, &method, err);
        st_rmap_str(r->cur, "entry_method", method);
        st_rmap_str(r->cur, "rung", "reset");
        return rc;
    }
    st_dfuse_result res;
    memset(&res, 0, sizeof res);
    const st_image *img = r->images[s->image];
    rc = st_dfuse_leave(r->dfu, img->load_addr, r->written_verified, &res, err);
    dfu_close(r);
    st_rmap_str(r->cur, "entry_method", "dfu-leave");
    st_rmap_hex32(r->cur, "address", img->load_addr);
    if (res.leave_status_missing)
        st_rmap_str(r->cur, "note", "no status after the leave request (the ROM had already "
                                    "jumped); accepted because write and verify passed");
    if (rc) {
        /* A leave the ROM refused: a reset with BOOT0 low starts the image anyway. */
        ST_LOGW(r->env->log, MOD, "slot %d: leave failed (%s); starting by reset",
                run_slot_id(r), err ? err->msg : "");
        st_err e2;
        rc = st_slot_run(r->env->slot, &method, &e2);
        st_rmap_str(r->cur, "rung", "reset after failed leave");
        if (rc && err)
            *err = e2;
    }
    return rc;
}

int dfu_step_wait_app(run *r, const st_job_step *s, st_err *err)
{
    st_usb_dev_info app;
    unsigned t = s->timeout_ms ? s->timeout_ms : WAIT_FOR_APP_DEFAULT_MS;
    if (s->can)
        return kat_wait_app_can(r, t, err);
    if (need_slot(r, err))
        return ST_ERR_UNSUPPORTED; /* need_slot's only code, with or without err */
    int rc = st_usb_host_wait(r->env->usb, s->usb_vid, s->usb_pid, r->env->fslot->usb_port, t,
                              &app, err);
    if (rc)
        return st_err_wrap(err, rc, "waiting for the application %04x:%04x", s->usb_vid, s->usb_pid);
    char buf[ST_USB_STRING_MAX];
    st_rnode *a = st_rmap_map(r->cur, "app_usb");
    st_rmap_fmt(a, "id", "%04x:%04x", app.vid, app.pid);
    st_rmap_str(a, "manufacturer", st_text_printable(app.manufacturer, buf, sizeof buf));
    st_rmap_str(a, "product", st_text_printable(app.product, buf, sizeof buf));
    st_rmap_str(a, "serial", st_text_printable(app.serial, buf, sizeof buf));
    st_rmap_str(a, "port_path", app.port_path);
    return 0;
}

int dfu_step_power(run *r, const st_job_step *s, st_err *err)
{
    const char *method = NULL;
    if (need_slot(r, err))
        return ST_ERR_UNSUPPORTED; /* need_slot's only code, with or without err */
    dfu_close(r);
    int rc = st_slot_power_cycle(r->env->slot, &method, err);
    st_rmap_str(r->cur, "entry_method", method);
    return rc;
}

