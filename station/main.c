/* station: the command-line front end. Parses the command line, builds the context for a
 * fixture, runs jobs on slots in parallel threads and shows the operator what happens.
 * The only code (with ui.c) that writes to the terminal or chooses an exit code. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fixtures/slot.h"
#include "jobs/driver.h"
#include "jobs/engine.h"
#include "jobs/job.h"
#include "protocols/link/serial_ports.h"
#include "protocols/sim/synth.h"
#include "reports/journal.h"
#include "reports/junit.h"
#include "reports/report.h"
#include "station/cmd_fleet.h"
#include "station/context.h"
#include "station/core/clock.h"
#include "station/core/digest.h"
#include "station/core/text.h"
#include "station/core/uuid.h"
#include "station/drivers.h"
#include "station/paths.h"
#include "station/produce.h"
#include "station/ui.h"

/* Exit codes (README "Exit codes"): jobs/driver.h, shared with the drivers' commands. */
enum {
    EXIT_PASS = ST_EXIT_PASS,
    EXIT_UNIT_FAIL = ST_EXIT_UNIT_FAIL,
    EXIT_USAGE = ST_EXIT_USAGE,
    EXIT_STATION = ST_EXIT_STATION,
    EXIT_INCOMPLETE = ST_EXIT_INCOMPLETE,
};

static volatile sig_atomic_t cancel_flag;

static void on_signal(int sig)
{
    cancel_flag = 1;
    signal(sig, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

/* ---- options ---------------------------------------------------------------------- */

/* Options every command takes, and those of every command that runs a job (`run` and the
 * driver commands flagged ST_CLI_RUNS_JOBS). A command's own options come from its table
 * (drivers' commands included), so a driver adds options without an edit here. */
static const st_cli_opt common_opts[] = {
    { "fixture", "FILE", "fixture file or name (default: $STATION_FIXTURE, else fixture.yaml "
                         "in ~/.config/station or /etc/station, else the virtual fixture in "
                         "the share directory)" },
    { "plain", NULL, "plain progress lines even on a terminal" },
    { "verbose", NULL, "more log lines: -v the steps and devices, -vv every request" },
    { "help", NULL, "this help" },
    { "version", NULL, "the station's version" },
    { NULL, NULL, NULL },
};

static const st_cli_opt run_opts[] = {
    { "slot", "N", "run on slot N only (repeatable)" },
    { "reports", "DIR", "write reports to DIR instead of the job's report_dir" },
    { "operator", "NAME", "operator name for the reports (default: $USER)" },
    { "uuid", "UUID", "units: discover: run only the unit with this CAN UUID (12 hex digits)" },
    { "iface", "NAME", "CAN interface (default: the slot's, else the fixture's first)" },
    { "junit", "FILE", "also write JUnit XML for CI: a test suite per unit, a test case per step" },
    { NULL, NULL, NULL },
};

#define MAX_OPTS 64

typedef struct opts {
    const char *names[MAX_OPTS];   /* every option any command takes */
    bool has_arg[MAX_OPTS];
    const char *vals[MAX_OPTS];    /* the value given ("" for a flag), NULL when absent */
    size_t n;
    int slots[64];
    int nslots;
    int verbose;
} opts;

static int opt_index(const opts *o, const char *name)
{
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->names[i], name) == 0)
            return (int)i;
    return -1;
}

static const char *opt_get(const opts *o, const char *name)
{
    int i = opt_index(o, name);
    return i < 0 ? NULL : o->vals[i];
}

static void opt_add(opts *o, const st_cli_opt *list)
{
    for (const st_cli_opt *c = list; c && c->name; c++)
        if (opt_index(o, c->name) < 0 && o->n < MAX_OPTS) {
            o->names[o->n] = c->name;
            o->has_arg[o->n] = c->arg != NULL;
            o->n++;
        }
}

static void err_line(const char *what, const st_err *e)
{
    fprintf(stderr, "station: %s: %s\n", what, e->msg[0] ? e->msg : st_strerror(e->code));
}

/* A job or fixture name through the search path (station/paths.h; NULL fixture: the
 * default one); NULL when not found, already reported. */
static const char *find_file(st_path_kind kind, const char *name, char *buf, size_t cap)
{
    st_err e;
    if (st_path_find(kind, name, buf, cap, &e) == 0)
        return buf;
    err_line(kind == ST_PATH_JOB ? "job" : "fixture", &e);
    return NULL;
}

/* Open the fixture's context; 0, or the exit status for the failure (already reported). */
static int open_context(const opts *o, const st_logger *log, st_ctx **ctx)
{
    st_err e;
    /* The fixture file first, as `fixture check` reads it: whatever is wrong with the file
     * (missing, unreadable, a FIFO, a bad field, a fault string) is bad input, exit 2, with
     * the same message from every command. What is left is the station's own backends. */
    char path[4096];
    if (!find_file(ST_PATH_FIXTURE, opt_get(o, "fixture"), path, sizeof path))
        return EXIT_USAGE;
    st_fixture *fx = NULL;
    int rc = st_fixture_load(path, &fx, &e);
    if (!rc)
        rc = st_ctx_check_units(fx, &e);
    st_fixture_free(fx);
    if (rc) {
        err_line("fixture", &e);
        return EXIT_USAGE;
    }
    rc = st_ctx_open(path, log, ctx, &e);
    if (!rc)
        return 0;
    err_line("fixture", &e);
    return rc == ST_ERR_INVAL ? EXIT_USAGE : EXIT_STATION;
}

/* ---- run -------------------------------------------------------------------------- */

/* One unit to run the job on: a fixture slot, a unit found on the CAN bus, or both. */
typedef struct target {
    const st_fixture_slot *fs;
    char uuid[13]; /* a CAN UUID: 12 hex digits */
    char iface[32];
} target;

typedef struct slot_run {
    st_run_env env;
    st_progress progress;
    st_ui *ui;
    int row;
    const st_job *job;
    st_image *const *images;
    st_run_result res;
    int rc;
    pthread_t thread;
    bool started;             /* its thread runs (join it) */
    char label[24];           /* "slot 2", "unit 0a0b0c0d0e01" */
    station_fleet *fleet;     /* live status on MQTT; NULL without a fleet configuration */
} slot_run;

static void on_step(void *ctx, const char *step, int attempt)
{
    slot_run *s = ctx;
    st_ui_step(s->ui, s->row, step, attempt);
}

static void *slot_thread(void *arg)
{
    slot_run *s = arg;
    s->rc = st_job_run(s->job, s->images, &s->env, &s->res);
    station_fleet_done(s->fleet, (size_t)s->row, s->rc, &s->res);
    char detail[PATH_MAX + ST_ERR_MSG_MAX + 16];
    if (s->rc && s->res.report_path[0])
        snprintf(detail, sizeof detail, "%s\n         report %s", s->res.cause,
                 s->res.report_path);
    else if (s->rc)
        snprintf(detail, sizeof detail, "no report written: %s",
                 s->res.cause[0] ? s->res.cause : "unknown error");
    else if (s->res.verdict == ST_VERDICT_PASS)
        snprintf(detail, sizeof detail, "report %s", s->res.report_path);
    else
        snprintf(detail, sizeof detail, "%s\n         report %s", s->res.cause, s->res.report_path);
    st_ui_done(s->ui, s->row, s->rc ? "ERROR" : s->res.verdict == ST_VERDICT_PASS ? "PASS" :
                              s->res.verdict == ST_VERDICT_FAIL ? "FAIL" : "INCOMPLETE", detail);
    return NULL;
}

/* What the job's steps (and its recovery rungs) need from a slot, from their drivers. */
static st_slot_needs job_needs(const st_job *job)
{
    st_slot_needs n = { 0, 0 };
    for (size_t i = 0; i < job->nsteps; i++) {
        const st_job_step *s = &job->steps[i];
        if (s->def->needs)
            s->def->needs(job, st_job_section(job, s->driver), s->opts, &n);
    }
    for (size_t r = 0; r < job->nrungs; r++) {
        for (size_t i = 0; i < job->rungs[r].nsteps; i++) {
            const st_job_step *s = &job->rungs[r].steps[i];
            if (s->def->needs)
                s->def->needs(job, st_job_section(job, s->driver), s->opts, &n);
        }
    }
    return n;
}

/* Rebuild the reports of a run that died (their journals) in the report directory. */
static void recover_reports(const st_job *job, const opts *o, const st_logger *log)
{
    const char *dir = opt_get(o, "reports") ? opt_get(o, "reports") : job->report_dir;
    st_journal_recover_counts n;
    st_err e;
    if (st_journal_recover_dir(dir, &n, &e) != 0)
        ST_LOGW(log, "station", "%s: %s", dir, e.msg);
    if (n.recovered)
        ST_LOGW(log, "station", "%s: %u report(s) of a run that stopped were rebuilt from "
                "their journals (verdict incomplete)", dir, n.recovered);
    if (n.orphans)
        ST_LOGW(log, "station", "%s: %u journal(s) without their report left alone", dir,
                n.orphans);
}

/* The CAN interface a command means: --iface, else the first slot's. */
static const char *default_iface(const st_fixture *fx, const opts *o)
{
    const char *i = opt_get(o, "iface");
    return i ? i : st_fixture_can_iface(fx);
}

static bool slot_chosen(const opts *o, int id)
{
    if (!o->nslots)
        return true;
    for (int i = 0; i < o->nslots; i++)
        if (o->slots[i] == id)
            return true;
    return false;
}

/* After an empty discovery: where the units might be. */
static void hint_can_fixture(const st_fixture *fx)
{
    bool can_units = false;
    for (size_t i = 0; i < fx->n_slots; i++)
        can_units |= fx->slots[i].unit.present && fx->slots[i].unit.transport == ST_UNIT_TRANSPORT_CAN;
    if (fx->backend == ST_GPIO_BACKEND_VIRTUAL && !can_units) {
        /* The shipped CAN fixture, wherever the search path finds it. */
        char can[4096];
        st_err e;
        if (st_path_find(ST_PATH_FIXTURE, "virtual-can", can, sizeof can, &e) < 0)
            st_strlcpy(can, "virtual-can", sizeof can);
        fprintf(stderr, "station: fixture %s has no CAN units; %s has three "
                        "(station run JOB -f %s)\n", fx->name, can, can);
    } else if (fx->backend != ST_GPIO_BACKEND_VIRTUAL) {
        fprintf(stderr, "station: check that the units are powered and wired to the bus, and "
                        "the bitrate (station can scan lists what answers)\n");
    }
}

static int run_job(const st_job *job, st_image *const *images, const opts *o)
{
    st_err e;
    st_err_clear(&e);
    int status = EXIT_PASS;
    bool fancy = !opt_get(o, "plain") &&
                 st_ui_caps_for(isatty(STDOUT_FILENO), getenv("TERM"), getenv("NO_COLOR")).cursor;
    st_log_level level = o->verbose >= 2 ? ST_LOG_DEBUG : o->verbose ? ST_LOG_INFO : ST_LOG_WARN;
    st_ui *ui = NULL;
    st_ctx *ctx = NULL;
    slot_run *runs = NULL;
    target *targets = NULL;
    station_fleet *fleet = NULL;
    size_t nruns = 0, ntargets = 0;
    const char *uuid_opt = opt_get(o, "uuid");
    st_slot_needs needs = job_needs(job);
    /* Ctrl-C / SIGTERM from here on end the run with exit 4 (README): during setup and CAN
     * discovery no unit is touched; once the slots run, each stops at its next attempt. */
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    /* The logger exists before the context so backends can log. */
    st_ui *boot_ui = st_ui_new(stdout, 0, false, level);
    int rc = 0;
    if ((status = open_context(o, st_ui_logger(boot_ui), &ctx)) != 0)
        goto out;
    const st_fixture *fx = st_ctx_fixture(ctx);
    targets = calloc(ST_FIXTURE_MAX_SLOTS + 64, sizeof *targets);
    if (!targets) {
        status = EXIT_STATION;
        goto out;
    }
    for (int i = 0; i < o->nslots; i++) {
        if (!st_fixture_slot_by_id(fx, o->slots[i])) {
            fprintf(stderr, "station: --slot %d: %s has no such slot\n", o->slots[i], fx->path);
            status = EXIT_USAGE;
            goto out;
        }
    }
    if (job->units == ST_UNITS_DISCOVER && uuid_opt) {
        /* One unit named on the command line: no need to ask the whole bus. */
        target *t = &targets[ntargets++];
        st_strlcpy(t->uuid, uuid_opt, sizeof t->uuid);
        for (char *c = t->uuid; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        t->fs = st_fixture_slot_by_can_uuid(fx, t->uuid);
        st_strlcpy(t->iface, t->fs ? t->fs->can.iface : default_iface(fx, o), sizeof t->iface);
        st_can_iface *ifc = NULL;
        if (st_ctx_can_iface(ctx, t->iface, &ifc, &e) ||
            st_can_iface_prepare(ifc, needs.can_bitrate ? needs.can_bitrate
                                                        : st_fixture_can_bitrate(fx, t->iface), &e)) {
            err_line("can", &e);
            status = EXIT_STATION;
            goto out;
        }
    } else if (job->units == ST_UNITS_DISCOVER) {
        const st_driver *finder = job->finder;
        const void *section = st_job_section(job, finder);
        const char *ifname = default_iface(fx, o);
        uint32_t bitrate = needs.can_bitrate ? needs.can_bitrate : st_fixture_can_bitrate(fx, ifname);
        st_found_unit found[64];
        st_can_iface *ifc = NULL;
        printf("station: looking for units on %s for %u ms\n", ifname,
               finder->discover_ms ? finder->discover_ms(section) : 0);
        int n = st_ctx_can_iface(ctx, ifname, &ifc, &e);
        if (!n)
            n = st_can_iface_prepare(ifc, bitrate, &e);
        if (!n)
            n = finder->discover(section, ifc, found, 64, &e);
        if (n < 0) {
            err_line("discover", &e);
            status = EXIT_STATION;
            goto out;
        }
        for (int i = 0; i < n && i < 64; i++) {
            target *t = &targets[ntargets];
            st_strlcpy(t->uuid, found[i].uuid, sizeof t->uuid);
            t->fs = st_fixture_slot_by_can_uuid(fx, t->uuid);
            if (o->nslots && (!t->fs || !slot_chosen(o, t->fs->id)))
                continue;
            st_strlcpy(t->iface, ifname, sizeof t->iface);
            ntargets++;
        }
        if (!ntargets) {
            /* An empty bus is not a station fault: nothing was touched. */
            fprintf(stderr, "station: no unit answered on %s%s\n", ifname,
                    o->nslots ? " in the slots chosen" : "");
            hint_can_fixture(fx);
            status = EXIT_USAGE;
            goto out;
        }
    } else {
        for (size_t i = 0; i < fx->n_slots; i++) {
            const st_fixture_slot *fs = &fx->slots[i];
            if (!slot_chosen(o, fs->id))
                continue;
            target *t = &targets[ntargets++];
            t->fs = fs;
            st_strlcpy(t->uuid, fs->can.uuid, sizeof t->uuid);
            st_strlcpy(t->iface, fs->can.present ? fs->can.iface : default_iface(fx, o), sizeof t->iface);
        }
    }
    ui = st_ui_new(stdout, (int)ntargets, fancy, level);
    runs = calloc(ntargets, sizeof *runs);
    if (!ui || !runs) {
        fprintf(stderr, "station: out of memory\n");
        status = EXIT_STATION;
        goto out;
    }
    char run_id[ST_UUID_STR_LEN];
    st_uuid_new(run_id);
    const char *who = opt_get(o, "operator") ? opt_get(o, "operator") : getenv("USER");
    if ((status = station_fleet_begin(run_id, ntargets, &fleet)) != 0)
        goto out;
    printf("station: job %s on %s (%zu unit%s)\n", job->name, fx->name, ntargets,
           ntargets == 1 ? "" : "s");
    st_serial_host *serial = NULL;
    if ((needs.what & ST_NEED_USB_SERIAL) && (rc = st_ctx_serial(ctx, &serial, &e)) != 0) {
        err_line("serial", &e);
        status = EXIT_STATION;
        goto out;
    }
    for (size_t i = 0; i < ntargets; i++) {
        slot_run *s = &runs[i];
        target *t = &targets[i];
        st_slot *slot = NULL;
        st_can_iface *ifc = NULL;
        if (t->fs && (rc = st_slot_open(fx, t->fs->id, st_ctx_gpio(ctx), &slot, &e)) != 0) {
            err_line("slot", &e);
            status = rc == ST_ERR_INVAL ? EXIT_USAGE : EXIT_STATION;
            goto out;
        }
        if (needs.what & ST_NEED_CAN) {
            rc = st_ctx_can_iface(ctx, t->iface, &ifc, &e);
            if (!rc && job->units != ST_UNITS_DISCOVER)
                rc = st_can_iface_prepare(ifc, needs.can_bitrate ? needs.can_bitrate
                                                                 : st_fixture_can_bitrate(fx, t->iface), &e);
            if (rc) {
                st_slot_close(slot);
                err_line("can", &e);
                status = EXIT_STATION;
                goto out;
            }
        }
        s->ui = ui;
        s->row = (int)i;
        s->job = job;
        s->images = images;
        if (t->fs)
            snprintf(s->label, sizeof s->label, "slot %d", t->fs->id);
        else
            snprintf(s->label, sizeof s->label, "unit %s", t->uuid);
        st_ui_bind(ui, (int)i, s->label, &s->progress);
        s->fleet = fleet;
        s->env = (st_run_env){
            .station_name = station_fleet_name(fleet, "station"),
            .operator_name = who && *who ? who : "unknown",
            .run_id = run_id,
            .report_dir = opt_get(o, "reports"),
            .fixture = fx,
            .fslot = t->fs,
            .slot = slot,
            .usb = st_ctx_usb(ctx),
            .can = ifc,
            .can_uuid = t->uuid,
            .unit_index = (unsigned)i,
            .serial = serial,
            .uart_open = st_ctx_uart_open,
            .uart_ctx = ctx,
            .log = st_ui_logger(ui),
            .progress = &s->progress,
            .on_step = on_step,
            .on_step_ctx = s,
            .cancel = &cancel_flag,
        };
        /* Live status (MQTT) wraps the progress and step hooks, as in `station produce`. */
        station_fleet_attach(fleet, i, t->fs ? t->fs->id : 0, &s->progress, &s->env, "running");
        nruns++;
    }
    if (cancel_flag) {
        fprintf(stderr, "station: stopped by the operator before any unit was touched\n");
        status = EXIT_INCOMPLETE;
        goto out;
    }
    /* Reports a killed run left half-written (a journal beside them) are rebuilt first; the
     * journal of a run still going (another station on this directory) is locked and left
     * alone. */
    recover_reports(job, o, st_ui_logger(ui));
    size_t pass = 0, fail = 0, inc = 0, err = 0, unstarted = 0;
    for (size_t i = 0; i < nruns; i++) {
        /* A thread that cannot start (out of threads or memory) leaves its unit untouched:
         * a station fault, said as such, and never joined. */
        int te = pthread_create(&runs[i].thread, NULL, slot_thread, &runs[i]);
        runs[i].started = te == 0;
        if (te) {
            char why[160];
            snprintf(why, sizeof why, "cannot start its run: %s", strerror(te));
            fprintf(stderr, "station: %s: %s\n", runs[i].label, why);
            st_ui_done(ui, (int)i, "ERROR", why);
        }
    }
    for (size_t i = 0; i < nruns; i++)
        if (runs[i].started)
            pthread_join(runs[i].thread, NULL);
    for (size_t i = 0; i < nruns; i++) {
        if (!runs[i].started)
            unstarted++;
        else if (runs[i].rc)
            err++;
        else if (runs[i].res.verdict == ST_VERDICT_PASS)
            pass++;
        else if (runs[i].res.verdict == ST_VERDICT_FAIL)
            fail++;
        else
            inc++;
    }
    const char *junit = opt_get(o, "junit");
    if (junit) {
        const char **paths = calloc(nruns ? nruns : 1, sizeof *paths);
        size_t np = 0;
        for (size_t i = 0; paths && i < nruns; i++)
            if (!runs[i].rc && runs[i].res.report_path[0])
                paths[np++] = runs[i].res.report_path;
        if (!paths || st_junit_write(junit, job->name, paths, np, &e)) {
            if (!paths)
                st_err_set(&e, ST_ERR_NOMEM, "out of memory");
            err_line("junit", &e);
            err++;
        }
        free(paths);
    }
    printf("station: %zu passed, %zu failed", pass, fail);
    if (inc)
        printf(", %zu incomplete", inc);
    if (err)
        printf(", %zu without a report", err);
    if (unstarted)
        printf(", %zu not started", unstarted);
    printf("\n");
    status = err || unstarted ? EXIT_STATION : inc ? EXIT_INCOMPLETE : fail ? EXIT_UNIT_FAIL : EXIT_PASS;
out:
    for (size_t i = 0; i < nruns; i++)
        st_slot_close(runs[i].env.slot);
    free(runs);
    free(targets);
    station_fleet_end(fleet);
    st_ctx_close(ctx);
    st_ui_free(ui);
    st_ui_free(boot_ui);
    return status;
}

static void free_images(st_image **images)
{
    for (size_t i = 0; i < ST_JOB_MAX_IMAGES; i++)
        st_image_free(images[i]);
}

/* The job named on the command line (through the search path) and its images, every one
 * checked before any pin moves; 0, or -1 when refused (already reported). */
static int load_job(const char *name, st_job **job, st_image *images[ST_JOB_MAX_IMAGES])
{
    st_err e;
    st_err_clear(&e);
    char path[4096];
    *job = NULL;
    if (!find_file(ST_PATH_JOB, name, path, sizeof path))
        return -1;
    if (st_job_load(path, st_drivers_registry(), job, &e)) {
        err_line("job", &e);
        return -1;
    }
    if (st_job_load_images(*job, images, &e)) {
        err_line("job refused", &e);
        st_job_free(*job);
        *job = NULL;
        return -1;
    }
    return 0;
}

static int cmd_run(const opts *o, char *const args[])
{
    st_job *job = NULL;
    st_image *images[ST_JOB_MAX_IMAGES];
    if (load_job(args[0], &job, images))
        return EXIT_USAGE;
    int status = run_job(job, images, o);
    free_images(images);
    st_job_free(job);
    return status;
}

/* `station produce JOB`: production mode (station/produce.c). */
static int cmd_produce(const opts *o, char *const args[])
{
    st_job *job = NULL;
    st_image *images[ST_JOB_MAX_IMAGES];
    if (load_job(args[0], &job, images))
        return EXIT_USAGE;
    const char *units = opt_get(o, "units");
    char *end = NULL;
    unsigned long max_units = units ? strtoul(units, &end, 10) : 0;
    const char *who = opt_get(o, "operator") ? opt_get(o, "operator") : getenv("USER");
    const char *sid = opt_get(o, "station") ? opt_get(o, "station") : getenv("STATION_ID");
    int status;
    char fixture[4096];
    if (!find_file(ST_PATH_FIXTURE, opt_get(o, "fixture"), fixture, sizeof fixture)) {
        status = EXIT_USAGE;
    } else if (units && (!*units || *end || max_units == 0 || max_units > 100000000ul)) {
        fprintf(stderr, "station: --units: \"%s\" is not a number of units\n", units);
        status = EXIT_USAGE;
    } else {
        st_produce_cfg cfg = {
            .job = job, .images = images, .fixture_path = fixture,
            .report_dir = opt_get(o, "reports"), .operator_name = who && *who ? who : "unknown",
            .station_id = sid && *sid ? sid : "station", .lot = opt_get(o, "lot"),
            .slots = o->slots, .nslots = (size_t)o->nslots, .plain = opt_get(o, "plain") != NULL,
            .verbose = o->verbose, .max_units = (unsigned)max_units,
            .rerun = opt_get(o, "rerun") != NULL, .out = stdout,
            .errout = stderr,
        };
        status = st_produce(&cfg);
    }
    free_images(images);
    st_job_free(job);
    return status;
}

/* ---- small commands ------------------------------------------------------------------ */

static int cmd_report_show(const opts *o, char *const args[])
{
    const char *path = args[0];
    st_rnode *doc = NULL;
    st_err e;
    st_journal_replay_info info;
    /* A report whose run is still going, or died, is shown with its journal folded in. */
    if (st_journal_replay(path, &doc, &info, &e)) {
        err_line("report", &e);
        return EXIT_USAGE;
    }
    if (info.had_journal && !info.stale)
        printf("(with %zu record(s) from its journal%s)\n", info.records,
               info.torn_bytes ? "; a torn last record dropped" : "");
    int rc = st_report_validate(doc, &e);
    st_report_render(doc, stdout, !opt_get(o, "no-color") &&
                     st_ui_caps_for(isatty(STDOUT_FILENO), getenv("TERM"), getenv("NO_COLOR")).color);
    if (rc)
        fprintf(stderr, "station: warning: %s: not a valid schema-1 report: %s\n", path, e.msg);
    st_report_free(doc);
    return rc ? EXIT_USAGE : EXIT_PASS;
}

static int cmd_job_check(const opts *o, char *const args[])
{
    char found[4096];
    const char *path = find_file(ST_PATH_JOB, args[0], found, sizeof found);
    if (!path)
        return EXIT_USAGE;
    st_job *job = NULL;
    st_err e;
    if (st_job_load(path, st_drivers_registry(), &job, &e)) {
        err_line("job", &e);
        return EXIT_USAGE;
    }
    st_image *images[ST_JOB_MAX_IMAGES];
    if (st_job_load_images(job, images, &e)) {
        err_line("job refused", &e);
        st_job_free(job);
        return EXIT_USAGE;
    }
    printf("job %s: target %s, %zu image(s), %zu step(s)\n", job->name, job->mcu->name,
           job->nimages, job->nsteps);
    for (size_t i = 0; i < job->nimages; i++) {
        printf("  image %s: %s, %zu bytes at 0x%08X, sha256 %s (matches the pin)\n",
               job->images[i].role, images[i]->path, images[i]->size, images[i]->load_addr,
               images[i]->sha256_hex);
        st_image_free(images[i]);
    }
    for (size_t i = 0; i < job->nsteps; i++)
        printf("  step %zu: %s (%s, retries %u)\n", i + 1, st_job_step_name(&job->steps[i]),
               job->steps[i].driver->name, job->steps[i].retries);
    for (size_t r = 0; r < job->nrungs; r++) {
        printf("  recovery rung %zu: %s, image %s:", r + 1, job->rungs[r].name,
               job->images[job->rungs[r].image].role);
        for (size_t i = 0; i < job->rungs[r].nsteps; i++)
            printf(" %s", st_job_step_name(&job->rungs[r].steps[i]));
        printf("\n");
    }
    st_job_free(job);
    return EXIT_PASS;
}

static int cmd_report_recover(const opts *o, char *const args[])
{
    st_journal_recover_counts n;
    st_err e;
    int rc = st_journal_recover_dir(args[0], &n, &e);
    printf("%s: %u report(s) rebuilt from their journals, %u stale and %u empty journal(s) "
           "and %u temp file(s) removed, %u journal(s) without a report and %u of runs still "
           "going left alone\n", args[0], n.recovered, n.stale, n.empty, n.temps, n.orphans,
           n.live);
    if (rc) {
        err_line("report recover", &e);
        return EXIT_STATION;
    }
    return EXIT_PASS;
}

static int cmd_fixture_check(const opts *o, char *const args[])
{
    char found[4096];
    const char *path = find_file(ST_PATH_FIXTURE, args[0], found, sizeof found);
    if (!path)
        return EXIT_USAGE;
    st_fixture *fx = NULL;
    st_err e;
    if (st_fixture_load(path, &fx, &e) || st_ctx_check_units(fx, &e)) {
        err_line("fixture", &e);
        st_fixture_free(fx);
        return EXIT_USAGE;
    }
    printf("fixture %s: %s backend, chip %s, %zu slot(s)\n", fx->name,
           st_gpio_backend_name(fx->backend), fx->chip, fx->n_slots);
    for (size_t i = 0; i < fx->n_slots; i++) {
        char buf[512];
        printf("  %s\n", st_fixture_slot_describe(&fx->slots[i], buf, sizeof buf));
    }
    st_fixture_free(fx);
    return EXIT_PASS;
}

/* --size/--seed: a number, or -1 after the error is reported. */
static long long num_opt(const opts *o, const char *name, long long dflt, long long max)
{
    const char *v = opt_get(o, name);
    if (!v)
        return dflt;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 0);
    if (!*v || *end || errno || n < 0 || n > max) {
        fprintf(stderr, "station: --%s: \"%s\" is not a %s\n", name, v,
                strcmp(name, "size") == 0 ? "size" : "number");
        return -1;
    }
    return n;
}

static int cmd_image_generate(const opts *o, char *const args[])
{
    const char *out = args[0];
    long long size = num_opt(o, "size", ST_SYNTH_DEFAULT_SIZE, 64 * 1024 * 1024);
    long long seed = num_opt(o, "seed", 0, 0xFFFFFFFFll);
    if (size <= 0 || seed < 0) {
        if (size == 0)
            fprintf(stderr, "station: --size: \"%s\" is not a size\n", opt_get(o, "size"));
        return EXIT_USAGE;
    }
    uint8_t *img = NULL;
    st_err e;
    const char *mcu_name = opt_get(o, "mcu") ? opt_get(o, "mcu") : "stm32g431xx";
    const st_mcu *mcu = st_mcu_find(mcu_name);
    if (!mcu) {
        fprintf(stderr, "station: --mcu %s: unknown MCU\n", mcu_name);
        return EXIT_USAGE;
    }
    size_t n = (size_t)size;
    if (st_synth_combined_seeded(mcu, n, (uint32_t)seed, &img, &e)) {
        err_line("image generate", &e);
        return EXIT_USAGE;
    }
    /* The application part alone is what a Katapult reflash sends. */
    size_t skip = opt_get(o, "app") ? mcu->katapult_app_offset : 0;
    const uint8_t *data = img + skip;
    n -= skip;
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(data, 1, n, f) == n;
    if (f && fclose(f) != 0)
        ok = false;
    if (ok && rename(tmp, out) != 0)
        ok = false;
    if (!ok) {
        perror(out);
        unlink(tmp);
        free(img);
        return EXIT_STATION;
    }
    uint8_t md[32];
    char hex[65];
    st_sha256(data, n, md);
    st_hex(md, 32, false, hex);
    printf("%s: %zu bytes, sha256 %s\n", out, n, hex);
    free(img);
    return EXIT_PASS;
}

static int cmd_steps(const opts *o, char *const args[])
{
    st_drivers_describe(st_drivers_registry(), stdout);
    return EXIT_PASS;
}

/* ---- commands and the CLI host a driver's command sees ---------------------------------- */

typedef struct builtin {
    const char *words;
    const char *args;
    unsigned nargs;
    const char *summary;
    const char *help;
    const st_cli_opt *opts;
    unsigned flags;            /* ST_CLI_RUNS_JOBS */
    int (*run)(const opts *o, char *const args[]);
} builtin;

static const st_cli_opt gen_opts[] = {
    { "size", "BYTES", "image size (default 35984)" },
    { "seed", "N", "application variant (default 0)" },
    { "app", NULL, "only the application (loads at the Katapult application start)" },
    { "mcu", "NAME", "target MCU (default stm32g431xx)" },
    { NULL, NULL, NULL },
};

static const st_cli_opt produce_opts[] = {
    { "station", "ID", "station id for the reports (default: $STATION_ID, else \"station\"; a fleet "
      "configuration's name wins)" },
    { "lot", "ID", "production lot or batch id for the reports" },
    { "units", "N", "stop after N units were started (default: run until stopped)" },
    { "rerun", NULL, "after a crash, run the units that were in flight again at once" },
    { NULL, NULL, NULL },
};

static const st_cli_opt show_opts[] = {
    { "no-color", NULL, "no ANSI colours (also NO_COLOR=1 or TERM=dumb)" },
    { NULL, NULL, NULL },
};

/* The fleet commands (cmd_fleet.c) read their options through this. */
static const char *opt_of(const void *o, const char *name)
{
    return opt_get(o, name);
}

static int cmd_ship(const opts *o, char *const args[])
{
    return station_cmd_ship(opt_of, o, o->verbose, args);
}

static int cmd_history(const opts *o, char *const args[])
{
    return station_cmd_history(opt_of, o, args);
}

static int cmd_report_summary(const opts *o, char *const args[])
{
    return station_cmd_report_summary(opt_of, o, args);
}

static const builtin builtins[] = {
    { "run", "JOB", 1,
      "run a job on every slot of the fixture (or --slot N), or on every unit found on the "
      "CAN bus (a job with units: discover)",
      "Every image is loaded and checked against the job before any pin moves. Slots run in "
      "parallel; each unit gets one report. Exit codes: 0 all passed, 1 a unit failed, 2 bad "
      "input (nothing touched), 3 station error, 4 interrupted.",
      NULL, ST_CLI_RUNS_JOBS, cmd_run },
    { "produce", "JOB", 1,
      "production mode: every slot runs the job on unit after unit until stopped",
      "Per slot: wait for a unit (start button, unit-present line, its USB device or CAN node "
      "appearing, as the fixture's slot start: says), read its barcode when the slot has a "
      "scanner (scanner.evdev: a keyboard-like input device, grabbed; scanner.fifo: one line "
      "per scan; a barcode that does not match the job's barcode: pattern is refused: the unit "
      "is not run), run the job, show the verdict on the LEDs and the operator screen, wait for "
      "the unit to leave, and again. Slots are independent. Ctrl-C or SIGTERM finishes the "
      "units in flight and stops; a second one stops them at their next step (their reports "
      "say incomplete). On the virtual fixture, slots with unit.operator replay a shift and "
      "the command ends with it. Exit codes as run (1 also when a unit was refused).",
      produce_opts, ST_CLI_RUNS_JOBS, cmd_produce },
    { "steps", NULL, 0, "list every driver's steps, their options and job sections",
      "The steps a job file may use, by driver, from the drivers' own tables.", NULL, 0,
      cmd_steps },
    { "job check", "JOB", 1, "parse a job and validate its images; touches nothing",
      "Prints the images (with their checked digests), the steps with their drivers and the "
      "recovery ladder.", NULL, 0, cmd_job_check },
    { "report show", "FILE", 1, "summarise a unit report",
      "Prints a unit report and checks it against the schema (reports/SCHEMA.md). A report "
      "whose run is still going, or died, is shown with its journal folded in.", show_opts,
      0, cmd_report_show },
    { "report recover", "DIR", 1, "rebuild the reports a killed run left with journals in DIR",
      "Folds each journal in DIR into its report (verdict incomplete, the step in progress "
      "incomplete), removes stale journals and the temp files of cut-short writes. Every run "
      "does this on its report directory before it starts.", NULL, 0, cmd_report_recover },
    { "report summary", "[DIR]", 1,
      "runs, pass/fail, units, first-pass yield and failures by step and cause: of the "
      "reports in DIR, or (--db) across the fleet database",
      "Both read the same figures (reports/FLEET.md \"Queries\"); --db reads every station "
      "the configured database role may read. From a directory also: median and p95 time "
      "per unit and per step, units per hour, retries and entry-method success rates; "
      "--junit writes the runs as JUnit XML.", station_summary_opts, 0, cmd_report_summary },
    { "ship", NULL, 0, "ship finished reports into the fleet's PostgreSQL database, exactly once",
      "A service (reports/ship/station-ship.service): watches the report directory and ships "
      "every finished report; reports are never changed or deleted, and a database outage "
      "only makes them wait. --once makes one pass; --migrate applies the schema migrations. "
      "-v prints a line per report. See reports/FLEET.md.", station_ship_opts, 0, cmd_ship },
    { "history", "UNIT", 1,
      "every run of a unit (identity, chip UID, DFU serial or CAN UUID) across the stations, "
      "from the fleet database",
      "Oldest first: started, station, slot, verdict, job, failed step, cause. Exit 1 when "
      "the unit has no runs.", station_history_opts, 0, cmd_history },
    { "fixture check", "FILE", 1, "parse a fixture file and describe its slots", NULL, NULL, 0,
      cmd_fixture_check },
    { "image generate", "OUT", 1, "write the synthetic combined image the demo job uses", NULL,
      gen_opts, 0, cmd_image_generate },
    { NULL, NULL, 0, NULL, NULL, NULL, 0, NULL },
};

/* A command of either kind, for dispatch and help. */
typedef struct command {
    const char *words, *args, *summary, *help;
    unsigned nargs, flags;
    const st_cli_opt *opts;
    const builtin *b;
    const st_cli_cmd *dc;
} command;

#define MAX_COMMANDS 64

static size_t list_commands(command *out, size_t cap)
{
    size_t n = 0;
    for (const builtin *b = builtins; b->words && n < cap; b++)
        out[n++] = (command){ b->words, b->args, b->summary, b->help, b->nargs, b->flags,
                              b->opts, b, NULL };
    for (const st_driver *const *d = st_drivers_registry(); *d; d++)
        for (const st_cli_cmd *c = (*d)->commands; c && c->words && n < cap; c++)
            out[n++] = (command){ c->words, c->args, c->summary, c->help, c->nargs, c->flags,
                                  c->opts, NULL, c };
    return n;
}

typedef struct cli_host {
    st_cli cli;
    const opts *o;
    st_ctx *ctx;
} cli_host;

static const char *cli_opt(const st_cli *cli, const char *name)
{
    const cli_host *h = cli->host;
    return opt_get(h->o, name);
}

static int cli_open(const st_cli *cli, const st_fixture **fx, st_usb_host **usb)
{
    cli_host *h = cli->host;
    if (!h->ctx) {
        int status = open_context(h->o, NULL, &h->ctx);
        if (status)
            return status;
    }
    *fx = st_ctx_fixture(h->ctx);
    *usb = st_ctx_usb(h->ctx);
    return 0;
}

static int cli_can_iface(const st_cli *cli, const char *ifname, st_can_iface **out, st_err *err)
{
    cli_host *h = cli->host;
    if (!h->ctx)
        return st_err_set(err, ST_ERR_INVAL, "no fixture open");
    return st_ctx_can_iface(h->ctx, ifname, out, err);
}

static int cli_run_job(const st_cli *cli, const st_job *job, st_image *const images[])
{
    const cli_host *h = cli->host;
    return run_job(job, images, h->o);
}

static bool opt_listed(const st_cli_opt *list, const char *name)
{
    for (const st_cli_opt *c = list; c && c->name; c++)
        if (strcmp(c->name, name) == 0)
            return true;
    return false;
}

/* One option line; skip: options already printed (NULL: none). */
static void print_opts(FILE *f, const st_cli_opt *list, const st_cli_opt *skip1,
                       const st_cli_opt *skip2)
{
    for (const st_cli_opt *c = list; c && c->name; c++) {
        if (opt_listed(skip1, c->name) || opt_listed(skip2, c->name))
            continue;
        char left[40];
        const char *shortopt = strcmp(c->name, "fixture") == 0    ? "-f, "
                               : strcmp(c->name, "slot") == 0     ? "-s, "
                               : strcmp(c->name, "reports") == 0  ? "-r, "
                               : strcmp(c->name, "operator") == 0 ? "-o, "
                               : strcmp(c->name, "verbose") == 0  ? "-v, "
                               : strcmp(c->name, "help") == 0     ? "-h, "
                               : strcmp(c->name, "version") == 0  ? "-V, "
                                                                  : "    ";
        snprintf(left, sizeof left, "%s--%s%s%s", shortopt, c->name, c->arg ? " " : "",
                 c->arg ? c->arg : "");
        fprintf(f, "  %-24s", left);
        st_print_wrapped(f, 27, 26 + (unsigned)(strlen(left) > 24 ? strlen(left) - 24 : 0),
                         c->help);
    }
}

static void usage_line(FILE *f, const command *c)
{
    fprintf(f, "Usage: station %s%s%s [OPTIONS]\n", c->words, c->args ? " " : "",
            c->args ? c->args : "");
}

/* `station COMMAND --help`. */
static void command_help(FILE *f, const command *c)
{
    usage_line(f, c);
    fputc('\n', f);
    st_print_wrapped(f, 0, 0, c->summary);
    if (c->help) {
        fputc('\n', f);
        st_print_wrapped(f, 0, 0, c->help);
    }
    fputs("\nOptions:\n", f);
    print_opts(f, c->opts, NULL, NULL);
    if (c->flags & ST_CLI_RUNS_JOBS)
        print_opts(f, run_opts, c->opts, NULL);
    print_opts(f, common_opts, c->opts, NULL);
}

static void usage(FILE *f)
{
    command cmds[MAX_COMMANDS];
    size_t n = list_commands(cmds, MAX_COMMANDS);
    fputs("Usage: station COMMAND [OPTIONS]\n\nCommands:\n", f);
    for (size_t i = 0; i < n; i++) {
        char left[40];
        snprintf(left, sizeof left, "%s%s%s", cmds[i].words, cmds[i].args ? " " : "",
                 cmds[i].args ? cmds[i].args : "");
        fprintf(f, "  %-20s", left);
        st_print_wrapped(f, 23, 22, cmds[i].summary);
    }
    fputs("\nOptions every command takes:\n", f);
    print_opts(f, common_opts, NULL, NULL);
    fputs("\n`station COMMAND --help` (or `station help COMMAND`) shows a command's own options.\n"
          "`station steps` lists every driver's job steps and their options.\n"
          "\n"
          "Files: a JOB or fixture FILE without a '/' that is not in the working directory is\n"
          "looked up in ~/.config/station/{jobs,fixtures}/, /etc/station/{jobs,fixtures}/ and\n"
          "the share directory (<prefix>/share/station, beside the executable), with .yaml\n"
          "added when the name has no extension.\n"
          "\n"
          "Exit codes: 0 all units passed; 1 a unit failed (see its report); 2 bad command\n"
          "line or input, nothing touched; 3 station error (backend, permissions, disk);\n"
          "4 interrupted, reports say incomplete.\n",
          f);
}

/* Does words (e.g. "can flash") start a (the positional arguments)? *used: its length. */
static bool words_match(const char *words, int n, char **a, int *used)
{
    char buf[64];
    st_strlcpy(buf, words, sizeof buf);
    int k = 0;
    for (char *save = NULL, *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save), k++)
        if (k >= n || strcmp(a[k], w) != 0)
            return false;
    *used = k;
    return true;
}

/* The command a starts with (the longest match), or NULL. */
static const command *find_command(const command *cmds, size_t ncmds, int n, char **a, int *used)
{
    const command *best = NULL;
    for (size_t i = 0; i < ncmds; i++) {
        int u;
        if (words_match(cmds[i].words, n, a, &u) && (!best || u > *used)) {
            best = &cmds[i];
            *used = u;
        }
    }
    return best;
}

/* A usage error of command c: the message, its usage line, a pointer to its help. */
static int usage_error(const command *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const command *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "station: %s: ", c->words);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    usage_line(stderr, c);
    fprintf(stderr, "(`station %s --help` for its options)\n", c->words);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    opts o;
    memset(&o, 0, sizeof o);
    command cmds[MAX_COMMANDS];
    size_t ncmds = list_commands(cmds, MAX_COMMANDS);
    opt_add(&o, common_opts);
    opt_add(&o, run_opts);
    for (size_t i = 0; i < ncmds; i++)
        opt_add(&o, cmds[i].opts);
    struct option longopts[MAX_OPTS + 1];
    for (size_t i = 0; i < o.n; i++) {
        const char *nm = o.names[i];
        int shortc = strcmp(nm, "fixture") == 0 ? 'f' : strcmp(nm, "slot") == 0 ? 's'
                     : strcmp(nm, "reports") == 0 ? 'r' : strcmp(nm, "operator") == 0 ? 'o'
                     : strcmp(nm, "verbose") == 0 ? 'v' : strcmp(nm, "help") == 0 ? 'h'
                     : strcmp(nm, "version") == 0 ? 'V' : 0x100 + (int)i;
        longopts[i] = (struct option){ nm, o.has_arg[i] ? required_argument : no_argument, NULL,
                                       shortc };
    }
    longopts[o.n] = (struct option){ NULL, 0, NULL, 0 };
    bool help = false;
    int c;
    while ((c = getopt_long(argc, argv, "f:s:r:o:vhV", longopts, NULL)) != -1) {
        const char *name = NULL;
        switch (c) {
        case 'f': name = "fixture"; break;
        case 'r': name = "reports"; break;
        case 'o': name = "operator"; break;
        case 's': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 0 || v > 999 || o.nslots == 64) {
                fprintf(stderr, "station: --slot: \"%s\" is not a slot number\n", optarg);
                return EXIT_USAGE;
            }
            o.slots[o.nslots++] = (int)v;
            name = "slot";
            break;
        }
        case 'v': o.verbose++; name = "verbose"; break;
        case 'h': help = true; continue;
        case 'V': printf("station %s\n", STATION_VERSION); return EXIT_PASS;
        default:
            if (c >= 0x100 && c < 0x100 + (int)o.n) {
                name = o.names[c - 0x100];
                break;
            }
            fputs("(`station --help` lists the commands and options)\n", stderr);
            return EXIT_USAGE;
        }
        o.vals[opt_index(&o, name)] = optarg ? optarg : "";
    }
    int n = argc - optind;
    char **a = argv + optind;
    if (n > 0 && strcmp(a[0], "help") == 0) {
        /* `station help [COMMAND]` */
        help = true;
        n--;
        a++;
    }
    int used = 0;
    const command *cmd = find_command(cmds, ncmds, n, a, &used);
    if (!cmd) {
        if (help && n == 0) {
            usage(stdout);
            return EXIT_PASS;
        }
        if (n == 0) {
            fprintf(stderr, "station: no command given\n");
        } else {
            /* Name as many words as start some command ("can frobnicate"). */
            bool first_known = false;
            for (size_t i = 0; i < ncmds; i++)
                first_known |= strncmp(cmds[i].words, a[0], strlen(a[0])) == 0 &&
                               cmds[i].words[strlen(a[0])] == ' ';
            if (first_known && n > 1)
                fprintf(stderr, "station: unknown command \"%s %s\"\n", a[0], a[1]);
            else
                fprintf(stderr, "station: unknown command \"%s\"\n", a[0]);
        }
        usage(stderr);
        return EXIT_USAGE;
    }
    if (help) {
        command_help(stdout, cmd);
        return EXIT_PASS;
    }
    for (size_t i = 0; i < o.n; i++) {
        if (!o.vals[i] || opt_listed(common_opts, o.names[i]) || opt_listed(cmd->opts, o.names[i]) ||
            ((cmd->flags & ST_CLI_RUNS_JOBS) && opt_listed(run_opts, o.names[i])))
            continue;
        return usage_error(cmd, "--%s is not an option of this command", o.names[i]);
    }
    char **args = a + used;
    int nargs = n - used;
    /* An argument shown in brackets ("[DIR]") may be left out. */
    if (nargs < (int)cmd->nargs && !(cmd->args && cmd->args[0] == '['))
        return usage_error(cmd, "missing %s", cmd->args ? cmd->args : "an argument");
    if (nargs > (int)cmd->nargs)
        return usage_error(cmd, "unexpected argument \"%s\"", args[cmd->nargs]);
    if (cmd->b)
        return cmd->b->run(&o, args);
    cli_host h = { .o = &o };
    h.cli = (st_cli){ .out = stdout, .errout = stderr, .drivers = st_drivers_registry(),
                      .opt = cli_opt, .slots = o.slots, .nslots = (size_t)o.nslots,
                      .verbose = o.verbose, .open = cli_open, .can_iface = cli_can_iface,
                      .run_job = cli_run_job, .host = &h };
    int status = cmd->dc->run(&h.cli, args);
    st_ctx_close(h.ctx);
    return status;
}
