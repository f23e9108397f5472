/* The job engine: steps, retries, the recovery ladder, and the unit's report kept current
 * on disk after every step. Protocol steps live in steps_dfu.c and steps_katapult.c. */
#include "jobs/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobs/run.h"
#include "station/core/clock.h"
#include "station/core/text.h"

#define MOD "job"

const char *st_verdict_name(st_verdict v)
{
    switch (v) {
    case ST_VERDICT_PASS: return "pass";
    case ST_VERDICT_FAIL: return "fail";
    default: return "incomplete";
    }
}

int run_slot_id(const run *r)
{
    return r->env->fslot ? r->env->fslot->id : 0;
}

int run_save(run *r, st_err *err)
{
    return st_report_write_atomic(r->doc, r->path, err);
}

/* The report's file name comes from the unit's identity, known only once the unit has
 * answered; until then it lives under a provisional name and is renamed (atomically). */
void run_identify(run *r, const char *identity)
{
    if (r->identified)
        return;
    char path[PATH_MAX];
    st_err e;
    const char *dir = r->env->report_dir ? r->env->report_dir : r->job->report_dir;
    if (st_report_make_path(dir, identity, run_slot_id(r), r->started_wall, path, sizeof path,
                            &e) == 0 &&
        rename(r->path, path) == 0) {
        st_strlcpy(r->path, path, sizeof r->path);
        r->identified = true;
    }
    st_rmap_str(st_rmap_map(r->doc, "unit"), "identity", identity);
}

void run_device_error(run *r, const char *msg)
{
    st_rmap_str(r->cur, "device_error", msg);
    st_rseq_add_str(st_rmap_seq(r->doc, "device_errors"), msg);
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
    st_rmap_int(sl, "id", run_slot_id(r));
    st_rmap_str(sl, "name", env->fslot ? env->fslot->name : "none (found on the bus)");
    st_rnode *jb = st_rmap_map(d, "job");
    st_rmap_str(jb, "name", r->job->name);
    st_rmap_str(jb, "path", r->job->path);
    st_rmap_str(jb, "sha256", r->job->sha256);
    st_rnode *unit = st_rmap_map(d, "unit");
    st_rmap_str(unit, "mcu", r->job->mcu->name);
    if (env->fslot && env->fslot->usb_port[0])
        st_rmap_str(unit, "port_path", env->fslot->usb_port);
    if (env->can_uuid && env->can_uuid[0])
        st_rmap_str(unit, "can_uuid", env->can_uuid);
    st_rmap_seq(d, "images");
    for (size_t i = 0; i < r->job->nimages; i++)
        st_report_add_image(d, r->job->images[i].role, r->images[i]);
    r->steps = st_rmap_seq(d, "steps");
    st_rmap_seq(d, "device_errors");
    st_rmap_str(d, "verdict", "incomplete");
    st_rmap_str(d, "cause", "the run has not finished");
}

static int run_step(run *r, const st_job_step *s, st_err *err)
{
    switch (s->kind) {
    case ST_STEP_ENTER_BOOTLOADER: return dfu_step_enter(r, s, err);
    case ST_STEP_FLASH: return dfu_step_flash(r, s, err);
    case ST_STEP_VERIFY: return dfu_step_verify(r, s, err);
    case ST_STEP_START: return dfu_step_start(r, s, err);
    case ST_STEP_WAIT_FOR_APP: return dfu_step_wait_app(r, s, err);
    case ST_STEP_POWER_CYCLE: return dfu_step_power(r, s, err);
    case ST_STEP_ENTER_KATAPULT: return kat_step_enter(r, s, err);
    case ST_STEP_READ_APP: return kat_step_read_app(r, s, err);
    case ST_STEP_KATAPULT_FLASH: return kat_step_flash(r, s, err);
    case ST_STEP_KATAPULT_VERIFY: return kat_step_verify(r, s, err);
    case ST_STEP_KATAPULT_COMPLETE: return kat_step_complete(r, s, err);
    }
    return st_err_set(err, ST_ERR_INVAL, "unknown step");
}

static bool is_katapult_transfer(st_step_kind k)
{
    return k == ST_STEP_READ_APP || k == ST_STEP_KATAPULT_FLASH || k == ST_STEP_KATAPULT_VERIFY;
}

/* Failures worth another attempt. A verify mismatch is not retried by re-reading, bad
 * input never is, and a Katapult unit that stopped answering mid-transfer is not either:
 * the engine already resent each command, and the unit needs the ROM (the ladder). */
static bool retryable(const st_job_step *s, int code)
{
    if (is_katapult_transfer(s->kind) && (code == ST_ERR_TIMEOUT || code == ST_ERR_DISCONNECT))
        return false;
    return code == ST_ERR_TIMEOUT || code == ST_ERR_IO || code == ST_ERR_STALL ||
           code == ST_ERR_DISCONNECT || code == ST_ERR_DEVICE || code == ST_ERR_PROTO ||
           code == ST_ERR_NOTFOUND || code == ST_ERR_BUSY;
}

typedef enum { OUT_PASS, OUT_FAIL, OUT_CANCEL } outcome;

/* One step with its attempts, recorded under r->cur. */
static outcome attempt_step(run *r, const st_job_step *s, const char *name, st_err *err)
{
    const st_run_env *env = r->env;
    r->cur = st_rseq_add_map(r->steps);
    st_rmap_str(r->cur, "name", name);
    uint64_t t0 = st_now_us();
    st_rmap_time(r->cur, "started", st_wall_us());
    st_rnode *alog = st_rmap_seq(r->cur, "attempt_log");
    unsigned attempt = 0;
    outcome out = OUT_PASS;
    for (;;) {
        attempt++;
        if (env->cancel && *env->cancel) {
            st_err_set(err, ST_ERR_CANCELLED, "stopped by the operator");
            out = OUT_CANCEL;
            break;
        }
        if (env->on_step)
            env->on_step(env->on_step_ctx, name, (int)attempt);
        st_rnode *a = st_rseq_add_map(alog);
        st_rmap_int(a, "n", attempt);
        uint64_t a0 = st_now_us();
        st_rmap_time(a, "started", st_wall_us());
        st_err_clear(err);
        int rc = run_step(r, s, err);
        st_rmap_ms(a, "duration_ms", st_now_us() - a0);
        st_rmap_str(a, "outcome", rc ? "fail" : "pass");
        if (rc == 0)
            break;
        st_err_prefix(err, "%s", name);
        st_rmap_str(a, "error", err->msg);
        ST_LOGW(env->log, MOD, "slot %d: attempt %u: %s", run_slot_id(r), attempt, err->msg);
        if (attempt > s->retries || !retryable(s, rc)) {
            out = OUT_FAIL;
            break;
        }
    }
    st_rmap_ms(r->cur, "duration_ms", st_now_us() - t0);
    st_rmap_int(r->cur, "attempts", attempt);
    st_rmap_str(r->cur, "outcome", out == OUT_PASS ? "pass" : out == OUT_FAIL ? "fail" : "incomplete");
    if (out != OUT_PASS)
        st_rmap_str(r->cur, "error", err->msg);
    st_err e2;
    if (run_save(r, &e2) != 0)
        ST_LOGE(env->log, MOD, "slot %d: %s", run_slot_id(r), e2.msg);
    return out;
}

/* The recovery ladder's ROM rung (design.md section 7): a unit that stopped answering
 * Katapult mid-transfer may hold a vector table over a truncated application, which
 * Katapult would boot. BOOT0 + RESET always reaches the ROM; the combined image puts
 * Katapult and the application back. Each rung step is recorded like any other. */
static outcome recover_rom(run *r, const st_err *why, st_err *err)
{
    const st_job *job = r->job;
    st_rnode *rec = st_rmap_map(r->doc, "recovery");
    st_rmap_str(rec, "rung", "rom-dfu");
    st_rmap_str(rec, "reason", why->msg);
    kat_close(r);
    st_job_step s = { .retries = job->retries, .image = job->recovery_image };
    static const struct {
        st_step_kind kind;
        const char *name;
    } rung[] = {
        { ST_STEP_ENTER_BOOTLOADER, "recover:enter-bootloader" },
        { ST_STEP_FLASH, "recover:flash" },
        { ST_STEP_VERIFY, "recover:verify" },
        { ST_STEP_START, "recover:start" },
    };
    for (size_t i = 0; i < sizeof rung / sizeof rung[0]; i++) {
        s.kind = rung[i].kind;
        outcome o = attempt_step(r, &s, rung[i].name, err);
        if (o != OUT_PASS) {
            st_rmap_str(rec, "outcome", "fail");
            return o;
        }
    }
    st_rmap_str(rec, "outcome", "pass");
    return OUT_PASS;
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
    /* Identity (SCHEMA.md): the DFU serial when the ROM is used, else the CAN UUID of a
     * Katapult-over-CAN unit (known from the start), else the port. */
    bool by_uuid = env->can_uuid && env->can_uuid[0] && job->katapult.transport == ST_KAT_CAN;
    for (size_t k = 0; k < job->nsteps; k++)
        if (job->steps[k].kind == ST_STEP_ENTER_BOOTLOADER)
            by_uuid = false;
    char pending[64];
    if (by_uuid)
        snprintf(pending, sizeof pending, "%s", env->can_uuid);
    else
        snprintf(pending, sizeof pending, "slot%d-unidentified", run_slot_id(&r));
    int rc = st_report_make_path(dir, pending, run_slot_id(&r), r.started_wall, r.path,
                                 sizeof r.path, &err);
    begin_report(&r);
    if (!rc)
        rc = run_save(&r, &err);
    if (rc) {
        st_strlcpy(res->cause, err.msg, sizeof res->cause);
        st_report_free(r.doc);
        return rc;
    }
    if (by_uuid) {
        /* A CAN unit is named by its UUID from the start: the file already carries it. */
        r.identified = true;
        st_rmap_str(st_rmap_map(r.doc, "unit"), "identity", env->can_uuid);
    }

    st_verdict verdict = ST_VERDICT_PASS;
    bool recovered = false;
    size_t i = 0;
    for (; i < job->nsteps && verdict == ST_VERDICT_PASS && !recovered; i++) {
        const st_job_step *s = &job->steps[i];
        outcome o = attempt_step(&r, s, st_step_kind_name(s->kind), &err);
        if (o == OUT_CANCEL) {
            verdict = ST_VERDICT_INCOMPLETE;
        } else if (o == OUT_FAIL) {
            bool cut_off = is_katapult_transfer(s->kind) &&
                           (err.code == ST_ERR_TIMEOUT || err.code == ST_ERR_DISCONNECT);
            if (!cut_off) {
                verdict = ST_VERDICT_FAIL;
            } else if (job->recovery_image < 0 || !env->slot) {
                st_err_prefix(&err, "the unit needs ROM recovery (BOOT0 + DFU)%s",
                              env->slot ? ": the job names no recovery image"
                                        : ": it is in no fixture slot");
                st_rmap_str(st_rmap_map(r.doc, "recovery"), "rung", "none: needs rom-dfu");
                verdict = ST_VERDICT_FAIL;
            } else {
                st_err why = err;
                outcome ro = recover_rom(&r, &why, &err);
                if (ro == OUT_PASS) {
                    recovered = true;
                } else {
                    st_err_prefix(&err, "recovery after \"%s\" failed", why.msg);
                    verdict = ro == OUT_CANCEL ? ST_VERDICT_INCOMPLETE : ST_VERDICT_FAIL;
                }
            }
        }
    }
    /* After a recovery the unit holds the combined image, started from the ROM: only a
     * final wait-for-app still means something. */
    for (; i < job->nsteps; i++) {
        const st_job_step *s = &job->steps[i];
        if (recovered && verdict == ST_VERDICT_PASS && s->kind == ST_STEP_WAIT_FOR_APP) {
            outcome o = attempt_step(&r, s, st_step_kind_name(s->kind), &err);
            if (o != OUT_PASS)
                verdict = o == OUT_CANCEL ? ST_VERDICT_INCOMPLETE : ST_VERDICT_FAIL;
            continue;
        }
        st_rnode *sk = st_rseq_add_map(r.steps);
        st_rmap_str(sk, "name", st_step_kind_name(s->kind));
        st_rmap_time(sk, "started", st_wall_us());
        st_rmap_ms(sk, "duration_ms", 0);
        st_rmap_str(sk, "outcome", "skipped");
        st_rmap_int(sk, "attempts", 0);
        if (recovered)
            st_rmap_str(sk, "note", "not needed: the ROM recovery rung flashed the unit");
    }
    if (verdict != ST_VERDICT_PASS)
        kat_abandon(&r);
    kat_close(&r);
    dfu_close(&r);
    if (env->slot)
        st_slot_set_leds(env->slot, verdict == ST_VERDICT_PASS, verdict != ST_VERDICT_PASS, NULL);
    finish(&r, verdict, &err, res);
    rc = run_save(&r, &err);
    st_strlcpy(res->report_path, r.path, sizeof res->report_path);
    free(r.before);
    st_report_free(r.doc);
    return rc;
}
