/* The job engine: steps, retries, the recovery ladder, and the unit's report kept current
 * on disk through the report journal (reports/journal.h): the report is on disk before any
 * pin moves, each step is on disk as `incomplete` (with what it is about to do) before it
 * starts, and the final report is folded in atomically at the end. Every step runs through
 * its driver's table (driver.h); the engine names no protocol and keeps one session per
 * driver per unit. */
#include "jobs/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobs/driver.h"
#include "reports/journal.h"
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

struct st_run {
    const st_job *job;
    st_image *const *images;
    const st_run_env *env;
    st_rnode *doc;
    st_rnode *steps;
    char path[PATH_MAX];      /* where the report is now */
    bool identified;
    uint64_t started_wall, started_mono;
    st_rnode *cur;            /* the current step's report node */
    unsigned attempt;         /* the current step's attempt (1, 2, ...) */
    void *sessions[ST_JOB_MAX_DRIVERS];
    bool open[ST_JOB_MAX_DRIVERS];
    st_journal *jr;           /* the report's journal, from the first write to the last */
    int save_rc;              /* the first failed save (sticky), 0 while all went to disk */
    st_err save_err;
    char label[40];           /* "slot 2", or "unit 0a0b0c0d0e01" for a unit in no slot */
};
typedef struct st_run run;

int st_run_slot_id(const run *r)
{
    return r->env->fslot ? r->env->fslot->id : -1;
}
#define run_slot_id st_run_slot_id

const char *st_run_label(const run *r)
{
    return r->label;
}

st_rnode *st_run_unit(run *r)
{
    return st_rmap_map(r->doc, "unit");
}

/* Journal the parts of the report a step changes: the step (by its index), the unit, the
 * device errors and the recovery map. sync: on disk when this returns (a step about to
 * start). The first failure sticks: the unit is stopped before its next step (the next
 * safe point: never inside an erase or a write). */
static int run_save(run *r, st_rnode *step, bool sync)
{
    if (r->save_rc)
        return r->save_rc;
    st_err e;
    int rc = 0;
    if (step) {
        char p[32];
        snprintf(p, sizeof p, "steps.%zu", st_rnode_len(r->steps) - 1);
        for (size_t i = 0; i < st_rnode_len(r->steps); i++)
            if (st_rnode_child(r->steps, i) == step)
                snprintf(p, sizeof p, "steps.%zu", i);
        rc = st_journal_put(r->jr, p, step, false, &e);
    }
    static const char *const parts[] = { "unit", "device_errors", "recovery", NULL };
    for (size_t i = 0; rc == 0 && parts[i]; i++) {
        const st_rnode *n = st_rget(r->doc, parts[i]);
        if (n)
            rc = st_journal_put(r->jr, parts[i], n, false, &e);
    }
    if (rc == 0 && sync)
        rc = st_journal_sync(r->jr, &e);
    if (rc) {
        r->save_rc = rc;
        r->save_err = e;
        ST_LOGE(r->env->log, MOD, "%s: report %s: %s", r->label, r->path, e.msg);
    }
    return rc;
}

/* The report's file name comes from the unit's identity, known only once the unit has
 * answered; until then it lives under a provisional name and is renamed (atomically). */
void st_run_identify(run *r, const char *identity)
{
    if (r->identified)
        return;
    char path[PATH_MAX];
    st_err e;
    const char *dir = r->env->report_dir ? r->env->report_dir : r->job->report_dir;
    if (st_report_make_path(dir, identity, run_slot_id(r), r->started_wall, path, sizeof path,
                            &e) == 0 &&
        st_journal_rename(r->jr, path, &e) == 0) {
        st_strlcpy(r->path, path, sizeof r->path);
        r->identified = true;
    }
    st_rmap_str(st_rmap_map(r->doc, "unit"), "identity", identity);
}

void st_run_device_error(run *r, const char *msg)
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
    if (env->lot && env->lot[0])
        st_rmap_str(rn, "lot", env->lot);
    st_rmap_str(d, "operator", env->operator_name ? env->operator_name : "unknown");
    st_rnode *fx = st_rmap_map(d, "fixture");
    st_rmap_str(fx, "name", env->fixture->name);
    st_rmap_str(fx, "path", env->fixture->path);
    st_rmap_str(fx, "backend", st_gpio_backend_name(env->fixture->backend));
    st_rnode *sl = st_rmap_map(d, "slot");
    if (env->fslot) {
        st_rmap_int(sl, "id", env->fslot->id);
        st_rmap_str(sl, "name", env->fslot->name);
    } else {
        st_rmap_str(sl, "name", "none (found on the bus)"); /* no id: no slot holds it */
    }
    st_rnode *jb = st_rmap_map(d, "job");
    st_rmap_str(jb, "name", r->job->name);
    st_rmap_str(jb, "path", r->job->path);
    st_rmap_str(jb, "sha256", r->job->sha256);
    st_rnode *unit = st_rmap_map(d, "unit");
    /* Until a step or a driver names the unit: the slot's port path, else unknown
     * (SCHEMA.md unit.identity). */
    st_rmap_str(unit, "identity", env->fslot && env->fslot->usb_port[0] ? env->fslot->usb_port
                                                                       : "unknown");
    st_rmap_str(unit, "mcu", r->job->mcu->name);
    if (env->fslot && env->fslot->usb_port[0])
        st_rmap_str(unit, "port_path", env->fslot->usb_port);
    if (env->can_uuid && env->can_uuid[0])
        st_rmap_str(unit, "can_uuid", env->can_uuid);
    if (env->barcode && env->barcode[0]) {
        char shown[128];
        st_rmap_str(unit, "barcode", st_text_printable(env->barcode, shown, sizeof shown));
    }
    st_rmap_seq(d, "images");
    for (size_t i = 0; i < r->job->nimages; i++)
        st_report_add_image(d, r->job->images[i].role, r->images[i]);
    r->steps = st_rmap_seq(d, "steps");
    st_rmap_seq(d, "device_errors");
    st_rmap_str(d, "verdict", "incomplete");
    st_rmap_str(d, "cause", "the run has not finished");
}

/* What a step is about to do, on disk before it starts: its summary and its image. */
static void record_plan(run *r, const st_job_step *s, st_rnode *rec)
{
    const st_image *img = s->image >= 0 ? r->images[s->image] : NULL;
    const char *summary = s->def && s->def->summary ? s->def->summary : "";
    if (img) {
        st_rmap_fmt(rec, "plan", "%s; image %s: %zu bytes at 0x%08X", summary,
                    r->job->images[s->image].role, img->size, img->load_addr);
        st_rmap_hex32(rec, "address", img->load_addr);
    } else if (*summary) {
        st_rmap_str(rec, "plan", summary);
    }
}

static int driver_index(const run *r, const st_driver *d)
{
    return st_drivers_index(r->job->drivers, d);
}

static st_step_call make_call(run *r, const st_job_step *s)
{
    int di = driver_index(r, s->driver);
    st_step_call c = {
        .run = r,
        .job = r->job,
        .step = s,
        .opts = s->opts,
        .section = di >= 0 ? r->job->sections[di] : NULL,
        .image = s->image >= 0 ? r->images[s->image] : NULL,
        .env = r->env,
        .session = di >= 0 ? r->sessions[di] : NULL,
        .rec = r->cur,
        .attempt = r->attempt,
    };
    return c;
}

/* One attempt: the driver's session is opened before its first step of the run. */
static int run_step(run *r, const st_job_step *s, st_err *err)
{
    int di = driver_index(r, s->driver);
    if (di < 0 || !s->def || !s->def->run)
        return st_err_set(err, ST_ERR_INVAL, "step \"%s\" has no driver", st_job_step_name(s));
    st_step_call c = make_call(r, s);
    if (!r->open[di] && s->driver->session_open) {
        int rc = s->driver->session_open(&c, &r->sessions[di], err);
        if (rc)
            return rc;
        r->open[di] = true;
        c.session = r->sessions[di];
    }
    return s->def->run(&c, err);
}

static st_fail_class classify(run *r, const st_job_step *s, int code)
{
    if (!s->def || !s->def->classify)
        return st_fail_default(code);
    st_step_call c = make_call(r, s);
    return s->def->classify(&c, code);
}

/* abandon: a failed run first lets each driver put the unit in a safe state. */
static void close_sessions(run *r, bool abandon)
{
    for (size_t i = 0; r->job->drivers[i] && i < ST_JOB_MAX_DRIVERS; i++) {
        const st_driver *d = r->job->drivers[i];
        if (!r->open[i])
            continue;
        if (abandon && d->session_abandon) {
            st_step_call c = { .run = r, .job = r->job, .section = r->job->sections[i],
                               .env = r->env, .session = r->sessions[i], .rec = r->cur };
            d->session_abandon(&c, r->sessions[i]);
        }
        if (d->session_close)
            d->session_close(r->sessions[i]);
        r->sessions[i] = NULL;
        r->open[i] = false;
    }
}

/* OUT_SAVE: the report could not be kept on disk; the step did not start. */
typedef enum { OUT_PASS, OUT_FAIL, OUT_CANCEL, OUT_LADDER, OUT_SAVE } outcome;

/* One step with its attempts, recorded under r->cur. */
static outcome attempt_step(run *r, const st_job_step *s, const char *name, st_err *err)
{
    const st_run_env *env = r->env;
    r->cur = st_rseq_add_map(r->steps);
    st_rmap_str(r->cur, "name", name);
    uint64_t t0 = st_now_us();
    st_rmap_time(r->cur, "started", st_wall_us());
    st_rmap_ms(r->cur, "duration_ms", 0);
    st_rmap_str(r->cur, "outcome", "incomplete");
    st_rmap_int(r->cur, "attempts", 0);
    record_plan(r, s, r->cur);
    /* The step is on disk before it starts; if it cannot be, it does not start. */
    if (run_save(r, r->cur, true) != 0) {
        st_err_set(err, r->save_rc, "report %s cannot be written (%s): the unit was stopped "
                   "before %s", r->path, r->save_err.msg, name);
        st_rmap_str(r->cur, "error", err->msg);
        return OUT_SAVE;
    }
    st_rnode *alog = st_rmap_seq(r->cur, "attempt_log");
    unsigned attempt = 0;
    outcome out = OUT_PASS;
    st_err first; /* the first attempt's error: the cause names it (later ones may only see
                     the aftermath, e.g. a device that is gone) */
    st_err_clear(&first);
    for (;;) {
        attempt++;
        if (env->cancel && *env->cancel) {
            st_err_set(err, ST_ERR_CANCELLED, "%s",
                       env->cancel_reason ? env->cancel_reason : "stopped by the operator");
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
        r->attempt = attempt;
        int rc = run_step(r, s, err);
        st_rmap_ms(a, "duration_ms", st_now_us() - a0);
        st_rmap_str(a, "outcome", rc ? "fail" : "pass");
        if (rc == 0)
            break;
        st_err_prefix(err, "%s", name);
        st_rmap_str(a, "error", err->msg);
        if (attempt == 1)
            first = *err;
        ST_LOGW(env->log, MOD, "%s: attempt %u: %s", r->label, attempt, err->msg);
        st_fail_class fc = classify(r, s, rc);
        if (fc == ST_FAIL_LADDER) {
            out = OUT_LADDER;
            break;
        }
        if (attempt > s->retries || fc != ST_FAIL_RETRY) {
            out = OUT_FAIL;
            break;
        }
    }
    st_rmap_ms(r->cur, "duration_ms", st_now_us() - t0);
    st_rmap_int(r->cur, "attempts", attempt);
    ST_LOGI(env->log, MOD, "%s: %s: %s (attempt %u, %llu ms)", r->label, name,
            out == OUT_PASS ? "pass" : out == OUT_CANCEL ? "stopped" : "fail", attempt,
            (unsigned long long)((st_now_us() - t0) / 1000u));
    st_rmap_str(r->cur, "outcome", out == OUT_PASS ? "pass" : out == OUT_CANCEL ? "incomplete" : "fail");
    if (out != OUT_PASS && out != OUT_CANCEL && attempt > 1 && first.msg[0] &&
        strcmp(first.msg, err->msg) != 0) {
        char last[ST_ERR_MSG_MAX];
        st_strlcpy(last, err->msg, sizeof last);
        st_err_set(err, err->code, "%.480s; attempt %u: %.480s", first.msg, attempt, last);
    }
    if (out != OUT_PASS)
        st_rmap_str(r->cur, "error", err->msg);
    /* Its result: synced by the next step's start or the final report. A failure here
     * stops the unit before its next step. */
    run_save(r, r->cur, false);
    return out;
}

/* The recovery ladder (design.md section 7): a unit that a step left stranded (its driver
 * classified the failure ST_FAIL_LADDER, e.g. a transfer cut off mid-write) is brought back
 * by the job's rungs, tried in order. Every session is closed first: the rung starts from
 * the unit's pins. Each rung step is recorded like
 * any other, named "recover:<step>". */
static outcome run_ladder(run *r, const st_err *why, const char **rung_out, st_err *err)
{
    const st_job *job = r->job;
    st_rnode *rec = st_rmap_map(r->doc, "recovery");
    st_rmap_str(rec, "reason", why->msg);
    outcome o = OUT_FAIL;
    for (size_t k = 0; k < job->nrungs; k++) {
        const st_job_rung *rung = &job->rungs[k];
        *rung_out = rung->name;
        st_rmap_str(rec, "rung", rung->name);
        close_sessions(r, false);
        o = OUT_PASS;
        for (size_t i = 0; i < rung->nsteps && o == OUT_PASS; i++) {
            char name[64];
            snprintf(name, sizeof name, "recover:%s", st_job_step_name(&rung->steps[i]));
            o = attempt_step(r, &rung->steps[i], name, err);
        }
        if (o == OUT_PASS || o == OUT_CANCEL || o == OUT_SAVE)
            break;
    }
    st_rmap_str(rec, "outcome", o == OUT_PASS ? "pass" : "fail");
    return o == OUT_LADDER ? OUT_FAIL : o;
}

/* A rung whose steps need the slot's pins cannot reach a unit that no fixture slot holds. */
static bool ladder_reachable(const run *r)
{
    if (r->env->slot)
        return true;
    for (size_t k = 0; k < r->job->nrungs; k++) {
        const st_job_rung *rung = &r->job->rungs[k];
        for (size_t i = 0; i < rung->nsteps; i++) {
            const st_job_step *s = &rung->steps[i];
            st_slot_needs n = { 0, 0 };
            if (s->def->needs)
                s->def->needs(r->job, st_job_section(r->job, s->driver), s->opts, &n);
            if (n.what & ST_NEED_GPIO)
                return false;
        }
    }
    return true;
}

/* The early identity (SCHEMA.md): a driver whose steps read the unit's identity from the
 * unit wins (returns -1: none now); otherwise the first that knows it from the start (a bus
 * address); otherwise the slot names the report until a step identifies the unit. */
static bool early_identity(const st_job *job, const st_run_env *env, char *buf, size_t cap)
{
    bool found = false;
    for (size_t i = 0; job->drivers[i]; i++) {
        const st_driver *d = job->drivers[i];
        bool used = false;
        for (size_t k = 0; k < job->nsteps; k++)
            used |= job->steps[k].driver == d;
        if (!used || !d->identity)
            continue;
        char tmp[64];
        int v = d->identity(job, job->sections[i], env, tmp, sizeof tmp);
        if (v < 0)
            return false;
        if (v > 0 && !found) {
            st_strlcpy(buf, tmp, cap);
            found = true;
        }
    }
    return found;
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
    char early[64];
    bool by_identity = early_identity(job, env, early, sizeof early);
    char pending[64];
    if (env->fslot)
        snprintf(r.label, sizeof r.label, "slot %d", env->fslot->id);
    else
        snprintf(r.label, sizeof r.label, "unit %.16s", env->can_uuid ? env->can_uuid : "?");
    if (by_identity)
        snprintf(pending, sizeof pending, "%s", early);
    else /* SCHEMA.md's fallback identity until a step names the unit */
        snprintf(pending, sizeof pending, "%s",
                 env->fslot && env->fslot->usb_port[0] ? env->fslot->usb_port : "unknown");
    int rc = st_report_make_path(dir, pending, run_slot_id(&r), r.started_wall, r.path,
                                 sizeof r.path, &err);
    begin_report(&r);
    /* No pin moves until the report and its journal are on disk. */
    if (!rc)
        rc = st_journal_create(r.path, r.doc, &r.jr, &err);
    if (rc) {
        st_strlcpy(res->cause, err.msg[0] ? err.msg : "unknown error", sizeof res->cause);
        st_report_free(r.doc);
        return rc;
    }
    if (by_identity) {
        /* A unit known from the start: the file already carries its name. */
        r.identified = true;
        st_rmap_str(st_rmap_map(r.doc, "unit"), "identity", early);
    }

    st_verdict verdict = ST_VERDICT_PASS;
    bool recovered = false;
    const char *rung = NULL;
    size_t i = 0;
    for (; i < job->nsteps && verdict == ST_VERDICT_PASS && !recovered; i++) {
        const st_job_step *s = &job->steps[i];
        outcome o = attempt_step(&r, s, st_job_step_name(s), &err);
        if (o == OUT_CANCEL || o == OUT_SAVE) {
            verdict = ST_VERDICT_INCOMPLETE;
        } else if (o == OUT_FAIL) {
            verdict = ST_VERDICT_FAIL;
        } else if (o == OUT_LADDER) {
            const st_driver *d = s->driver;
            if (job->nrungs == 0 || !ladder_reachable(&r)) {
                st_err_prefix(&err, "the unit needs %s%s",
                              d->ladder_hint ? d->ladder_hint : "the recovery ladder",
                              env->slot ? ": the job names no recovery image"
                                        : ": it is in no fixture slot");
                st_rmap_fmt(st_rmap_map(r.doc, "recovery"), "rung", "none: needs %s",
                            d->ladder_needed ? d->ladder_needed : "recovery");
                verdict = ST_VERDICT_FAIL;
            } else {
                st_err why = err;
                outcome ro = run_ladder(&r, &why, &rung, &err);
                if (ro == OUT_PASS) {
                    recovered = true;
                } else {
                    if (ro != OUT_SAVE)
                        st_err_prefix(&err, "recovery after \"%s\" failed", why.msg);
                    verdict = ro == OUT_CANCEL || ro == OUT_SAVE ? ST_VERDICT_INCOMPLETE
                                                                  : ST_VERDICT_FAIL;
                }
            }
        }
    }
    /* After a recovery the unit holds the rung's image, started by the rung: only steps
     * that check the running unit (wait-for-app) still mean something. */
    for (; i < job->nsteps; i++) {
        const st_job_step *s = &job->steps[i];
        if (recovered && verdict == ST_VERDICT_PASS && (s->def->flags & ST_STEP_AFTER_RECOVERY)) {
            outcome o = attempt_step(&r, s, st_job_step_name(s), &err);
            if (o != OUT_PASS)
                verdict = o == OUT_CANCEL || o == OUT_SAVE ? ST_VERDICT_INCOMPLETE
                                                           : ST_VERDICT_FAIL;
            continue;
        }
        st_rnode *sk = st_rseq_add_map(r.steps);
        st_rmap_str(sk, "name", st_job_step_name(s));
        st_rmap_time(sk, "started", st_wall_us());
        st_rmap_ms(sk, "duration_ms", 0);
        st_rmap_str(sk, "outcome", "skipped");
        st_rmap_int(sk, "attempts", 0);
        if (recovered)
            st_rmap_fmt(sk, "note", "not needed: the recovery rung %s flashed the unit", rung);
    }
    close_sessions(&r, verdict != ST_VERDICT_PASS);
    if (env->slot)
        st_slot_set_leds(env->slot, verdict == ST_VERDICT_PASS, verdict != ST_VERDICT_PASS, NULL);
    finish(&r, verdict, &err, res);
    /* Fold the journal into the final report (one atomic write), even after a failed save:
     * the disk may have room again, and then the report tells the whole truth. */
    /* The end in the journal too, unsynced (the final write's fsync follows), the verdict
     * last: if the final write fails, a sync keeps what the run ended with. */
    static const char *const end[] = { "steps", "unit", "device_errors", "recovery", "run",
                                       "cause", "verdict", NULL };
    st_err ferr;
    for (size_t k = 0; !r.save_rc && end[k]; k++) {
        const st_rnode *n = st_rget(r.doc, end[k]);
        if (n && st_journal_put(r.jr, end[k], n, false, &ferr) != 0)
            r.save_rc = ferr.code, r.save_err = ferr;
    }
    rc = st_journal_finish(r.jr, r.doc, &ferr);
    st_strlcpy(res->report_path, r.path, sizeof res->report_path);
    if (rc) {
        char why[ST_ERR_MSG_MAX];
        st_strlcpy(why, res->cause, sizeof why);
        snprintf(res->cause, sizeof res->cause, "%.400s%sfinal report not written: %.400s "
                 "(its journal keeps the steps: station report recover)", why,
                 why[0] ? "; " : "", ferr.msg);
    }
    else if (r.save_rc)
        rc = r.save_rc; /* the station could not keep the report: the run stopped early */
    st_report_free(r.doc);
    return rc;
}
