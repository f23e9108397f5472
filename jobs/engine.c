/* The job engine: steps, retries, recovery, and the unit's report kept current on disk. */
#include "jobs/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "protocols/dfuse/dfuse.h"
#include "reports/report.h"
#include "station/core/clock.h"
#include "station/core/text.h"

#define MOD "job"
/* After a leave the application needs time to start and enumerate. */
#define WAIT_FOR_APP_DEFAULT_MS 10000u

const char *st_verdict_name(st_verdict v)
{
    switch (v) {
    case ST_VERDICT_PASS: return "pass";
    case ST_VERDICT_FAIL: return "fail";
    default: return "incomplete";
    }
}

/* One run of a job on a slot. */
typedef struct run {
    const st_job *job;
    st_image *const *images;
    const st_run_env *env;
    st_rnode *doc;
    st_rnode *steps;
    char path[PATH_MAX];      /* where the report is now */
    bool identified;
    uint64_t started_wall, started_mono;
    st_dfuse *dfu;
    st_usb_dev_info dfu_dev;
    bool written_verified;    /* flash + verify both passed: a lost leave status is fine */
    bool flashed;
    st_rnode *cur;            /* the current step's report node */
} run;

static int save(run *r, st_err *err)
{
    return st_report_write_atomic(r->doc, r->path, err);
}

/* The report's file name comes from the unit's identity, known only once the unit has
 * answered; until then it lives under a provisional name and is renamed (atomically). */
static void identify(run *r, const char *identity)
{
    if (r->identified)
        return;
    char path[PATH_MAX];
    st_err e;
    const char *dir = r->env->report_dir ? r->env->report_dir : r->job->report_dir;
    if (st_report_make_path(dir, identity, r->env->fslot->id, r->started_wall, path, sizeof path,
                            &e) == 0 &&
        rename(r->path, path) == 0) {
        st_strlcpy(r->path, path, sizeof r->path);
        r->identified = true;
    }
    st_rmap_str(st_rmap_map(r->doc, "unit"), "identity", identity);
}

static void begin_report(run *r)
{
    const st_run_env *env = r->env;
    st_rnode *d = r->doc;
    st_rnode *st = st_rmap_map(d, "station");
    st_rmap_str(st, "name", env->station_name ? env->station_name : "station");
    st_rmap_str(st, "version", STATION_VERSION);
    char host[256] = "unknown";
    gethostname(host, sizeof host - 1);
    st_rmap_str(st, "host", host);
    st_rnode *rn = st_rmap_map(d, "run");
    st_rmap_str(rn, "id", env->run_id ? env->run_id : "-");
    st_rmap_time(rn, "started", r->started_wall);
    st_rmap_str(d, "operator", env->operator_name ? env->operator_name : "unknown");
    st_rnode *fx = st_rmap_map(d, "fixture");
    st_rmap_str(fx, "name", env->fixture->name);
    st_rmap_str(fx, "path", env->fixture->path);
    st_rmap_str(fx, "backend", st_gpio_backend_name(env->fixture->backend));
    st_rnode *sl = st_rmap_map(d, "slot");
    st_rmap_int(sl, "id", env->fslot->id);
    st_rmap_str(sl, "name", env->fslot->name);
    st_rnode *jb = st_rmap_map(d, "job");
    st_rmap_str(jb, "name", r->job->name);
    st_rmap_str(jb, "path", r->job->path);
    st_rmap_str(jb, "sha256", r->job->sha256);
    st_rnode *unit = st_rmap_map(d, "unit");
    st_rmap_str(unit, "mcu", r->job->mcu->name);
    if (env->fslot->usb_port[0])
        st_rmap_str(unit, "port_path", env->fslot->usb_port);
    if (env->fslot->can.uuid[0])
        st_rmap_str(unit, "can_uuid", env->fslot->can.uuid);
    st_rmap_seq(d, "images");
    for (size_t i = 0; i < r->job->nimages; i++) {
        st_report_add_image(d, r->job->images[i].role, r->images[i]);
    }
    r->steps = st_rmap_seq(d, "steps");
    st_rmap_seq(d, "device_errors");
    st_rmap_str(d, "verdict", "incomplete");
    st_rmap_str(d, "cause", "the run has not finished");
}

static void close_dfu(run *r)
{
    st_dfuse_close(r->dfu);
    r->dfu = NULL;
}

/* Find the ROM DFU device on the slot's port and open it. */
static int open_dfu(run *r, unsigned timeout_ms, st_err *err)
{
    const st_job *job = r->job;
    const st_run_env *env = r->env;
    close_dfu(r);
    int rc = st_usb_host_wait(env->usb, job->dfu_vid, job->dfu_pid, env->fslot->usb_port,
                              timeout_ms, &r->dfu_dev, err);
    if (rc)
        return st_err_prefix(err, "waiting for the ROM DFU device");
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
    identify(r, identity);
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
    st_rnode *c = r->cur;
    if (res->dfu_status) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s (state %s)", st_dfu_status_name(res->dfu_status),
                 st_dfu_state_name(res->dfu_state));
        if (res->fail_addr) {
            size_t n = strlen(msg);
            snprintf(msg + n, sizeof msg - n, " at 0x%08X", res->fail_addr);
        }
        st_rmap_str(c, "device_error", msg);
        st_rseq_add_str(st_rmap_seq(r->doc, "device_errors"), msg);
    }
}

static int step_enter(run *r, const st_job_step *s, st_err *err)
{
    const char *method = NULL;
    close_dfu(r);
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
    const char *method = NULL;
    int rc = st_slot_enter_bootloader(r->env->slot, &method, err);
    if (!rc)
        rc = open_dfu(r, r->job->enumerate_timeout_ms, err);
    if (!rc)
        st_rmap_str(r->cur, "rung", "boot0+reset re-entry");
    return rc;
}

static int step_flash(run *r, const st_job_step *s, st_err *err)
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
            close_dfu(r);
        return rc;
    }
    r->flashed = true;
    return 0;
}

static int step_verify(run *r, const st_job_step *s, st_err *err)
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
        close_dfu(r);
    return rc;
}

static int step_start(run *r, const st_job_step *s, st_err *err)
{
    const char *method = NULL;
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
    close_dfu(r);
    st_rmap_str(r->cur, "entry_method", "dfu-leave");
    st_rmap_hex32(r->cur, "address", img->load_addr);
    if (res.leave_status_missing)
        st_rmap_str(r->cur, "note", "no status after the leave request (the ROM had already "
                                    "jumped); accepted because write and verify passed");
    if (rc) {
        /* A leave the ROM refused: a reset with BOOT0 low starts the image anyway. */
        ST_LOGW(r->env->log, MOD, "slot %d: leave failed (%s); starting by reset",
                r->env->fslot->id, err ? err->msg : "");
        st_err e2;
        rc = st_slot_run(r->env->slot, &method, &e2);
        st_rmap_str(r->cur, "rung", "reset after failed leave");
        if (rc && err)
            *err = e2;
    }
    return rc;
}

static int step_wait_app(run *r, const st_job_step *s, st_err *err)
{
    st_usb_dev_info app;
    unsigned t = s->timeout_ms ? s->timeout_ms : WAIT_FOR_APP_DEFAULT_MS;
    int rc = st_usb_host_wait(r->env->usb, s->usb_vid, s->usb_pid, r->env->fslot->usb_port, t,
                              &app, err);
    if (rc)
        return st_err_prefix(err, "waiting for the application %04x:%04x", s->usb_vid, s->usb_pid);
    char buf[ST_USB_STRING_MAX];
    st_rnode *a = st_rmap_map(r->cur, "app_usb");
    st_rmap_fmt(a, "id", "%04x:%04x", app.vid, app.pid);
    st_rmap_str(a, "manufacturer", st_text_printable(app.manufacturer, buf, sizeof buf));
    st_rmap_str(a, "product", st_text_printable(app.product, buf, sizeof buf));
    st_rmap_str(a, "serial", st_text_printable(app.serial, buf, sizeof buf));
    st_rmap_str(a, "port_path", app.port_path);
    return 0;
}

static int step_power(run *r, const st_job_step *s, st_err *err)
{
    const char *method = NULL;
    close_dfu(r);
    int rc = st_slot_power_cycle(r->env->slot, &method, err);
    st_rmap_str(r->cur, "entry_method", method);
    return rc;
}

static int run_step(run *r, const st_job_step *s, st_err *err)
{
    switch (s->kind) {
    case ST_STEP_ENTER_BOOTLOADER: return step_enter(r, s, err);
    case ST_STEP_FLASH: return step_flash(r, s, err);
    case ST_STEP_VERIFY: return step_verify(r, s, err);
    case ST_STEP_START: return step_start(r, s, err);
    case ST_STEP_WAIT_FOR_APP: return step_wait_app(r, s, err);
    case ST_STEP_POWER_CYCLE: return step_power(r, s, err);
    }
    return st_err_set(err, ST_ERR_INVAL, "unknown step");
}

/* Failures worth another attempt; a verify mismatch is not retried by re-reading, and
 * bad input never is. */
static bool retryable(int code)
{
    return code == ST_ERR_TIMEOUT || code == ST_ERR_IO || code == ST_ERR_STALL ||
           code == ST_ERR_DISCONNECT || code == ST_ERR_DEVICE || code == ST_ERR_PROTO ||
           code == ST_ERR_NOTFOUND || code == ST_ERR_BUSY;
}

static void finish(run *r, st_verdict v, const st_err *cause, st_run_result *res)
{
    uint64_t now = st_wall_us();
    st_rnode *rn = st_rmap_map(r->doc, "run");
    st_rmap_time(rn, "finished", now);
    st_rmap_ms(rn, "duration_ms", st_now_us() - r->started_mono);
    st_rmap_str(r->doc, "verdict", st_verdict_name(v));
    st_rmap_str(r->doc, "cause", v == ST_VERDICT_PASS ? NULL : cause->msg);
    res->verdict = v;
    st_strlcpy(res->cause, v == ST_VERDICT_PASS ? "" : cause->msg, sizeof res->cause);
    res->cause_code = v == ST_VERDICT_PASS ? 0 : cause->code;
}

int st_job_run(const st_job *job, st_image *const images[], const st_run_env *env,
               st_run_result *res)
{
    memset(res, 0, sizeof *res);
    run r = { .job = job, .images = images, .env = env };
    r.started_wall = st_wall_us();
    r.started_mono = st_now_us();
    r.doc = st_report_new();
    if (!r.doc)
        return ST_ERR_NOMEM;
    st_err err;
    st_err_clear(&err);
    const char *dir = env->report_dir ? env->report_dir : job->report_dir;
    char pending[64];
    snprintf(pending, sizeof pending, "slot%d-unidentified", env->fslot->id);
    int rc = st_report_make_path(dir, pending, env->fslot->id, r.started_wall, r.path,
                                 sizeof r.path, &err);
    begin_report(&r);
    if (!rc)
        rc = save(&r, &err);
    if (rc) {
        st_strlcpy(res->cause, err.msg, sizeof res->cause);
        st_report_free(r.doc);
        return rc;
    }

    st_verdict verdict = ST_VERDICT_PASS;
    size_t i = 0;
    for (; i < job->nsteps && verdict == ST_VERDICT_PASS; i++) {
        const st_job_step *s = &job->steps[i];
        r.cur = st_rseq_add_map(r.steps);
        st_rmap_str(r.cur, "name", st_step_kind_name(s->kind));
        uint64_t t0w = st_wall_us(), t0 = st_now_us();
        st_rmap_time(r.cur, "started", t0w);
        st_rnode *alog = st_rmap_seq(r.cur, "attempt_log");
        unsigned attempt = 0;
        for (;;) {
            attempt++;
            if (env->cancel && *env->cancel) {
                st_err_set(&err, ST_ERR_CANCELLED, "stopped by the operator");
                verdict = ST_VERDICT_INCOMPLETE;
                break;
            }
            if (env->on_step)
                env->on_step(env->on_step_ctx, st_step_kind_name(s->kind), (int)attempt);
            st_rnode *a = st_rseq_add_map(alog);
            st_rmap_int(a, "n", attempt);
            uint64_t a0 = st_now_us();
            st_rmap_time(a, "started", st_wall_us());
            st_err_clear(&err);
            rc = run_step(&r, s, &err);
            st_rmap_ms(a, "duration_ms", st_now_us() - a0);
            st_rmap_str(a, "outcome", rc ? "fail" : "pass");
            if (rc == 0)
                break;
            st_err_prefix(&err, "%s", st_step_kind_name(s->kind));
            st_rmap_str(a, "error", err.msg);
            ST_LOGW(env->log, MOD, "slot %d: attempt %u: %s", env->fslot->id, attempt, err.msg);
            if (attempt > s->retries || !retryable(rc)) {
                verdict = ST_VERDICT_FAIL;
                break;
            }
        }
        st_rmap_ms(r.cur, "duration_ms", st_now_us() - t0);
        st_rmap_int(r.cur, "attempts", attempt);
        st_rmap_str(r.cur, "outcome", verdict == ST_VERDICT_PASS ? "pass"
                                      : verdict == ST_VERDICT_FAIL ? "fail" : "incomplete");
        if (verdict != ST_VERDICT_PASS)
            st_rmap_str(r.cur, "error", err.msg);
        st_err e2;
        if (save(&r, &e2) != 0)
            ST_LOGE(env->log, MOD, "slot %d: %s", env->fslot->id, e2.msg);
    }
    for (; i < job->nsteps; i++) {
        st_rnode *sk = st_rseq_add_map(r.steps);
        st_rmap_str(sk, "name", st_step_kind_name(job->steps[i].kind));
        st_rmap_time(sk, "started", st_wall_us());
        st_rmap_ms(sk, "duration_ms", 0);
        st_rmap_str(sk, "outcome", "skipped");
        st_rmap_int(sk, "attempts", 0);
    }
    close_dfu(&r);
    if (verdict != ST_VERDICT_PASS) {
        /* Leave the unit where an operator or a rerun can always reach it: the ROM. */
        ST_LOGI(env->log, MOD, "slot %d: unit left for recovery (BOOT0 held)", env->fslot->id);
    }
    st_slot_set_leds(env->slot, verdict == ST_VERDICT_PASS, verdict != ST_VERDICT_PASS, NULL);
    finish(&r, verdict, &err, res);
    rc = save(&r, &err);
    st_strlcpy(res->report_path, r.path, sizeof res->report_path);
    st_report_free(r.doc);
    return rc;
}
