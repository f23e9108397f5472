/* station: the command-line front end. Parses the command line, builds the context for a
 * fixture, runs jobs on slots in parallel threads and shows the operator what happens.
 * The only code (with ui.c) that writes to the terminal or chooses an exit code. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fixtures/slot.h"
#include "jobs/engine.h"
#include "jobs/job.h"
#include "protocols/canadmin/canadmin.h"
#include "protocols/dfuse/dfuse.h"
#include "protocols/link/serial_ports.h"
#include "protocols/sim/synth.h"
#include "reports/report.h"
#include "station/context.h"
#include "station/core/clock.h"
#include "station/core/text.h"
#include "station/core/yamldoc.h"
#include "station/paths.h"
#include "station/ui.h"

/* Exit codes (README "Exit codes"). */
enum {
    EXIT_PASS = 0,       /* every unit passed */
    EXIT_UNIT_FAIL = 1,  /* at least one unit failed; its report says why */
    EXIT_USAGE = 2,      /* bad command line or bad input (job, fixture, image): nothing touched */
    EXIT_STATION = 3,    /* the station itself could not work (backend, permissions, disk) */
    EXIT_INCOMPLETE = 4, /* stopped by the operator or a signal; reports say incomplete */
};

static volatile sig_atomic_t cancel_flag;

static void on_signal(int sig)
{
    cancel_flag = 1;
    signal(sig, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

static void usage(FILE *f)
{
    fputs("Usage: station COMMAND [OPTIONS]\n"
          "\n"
          "Commands:\n"
          "  run JOB              run a job on every slot of the fixture (or --slot N), or on\n"
          "                       every unit found on the CAN bus (a job with units: discover)\n"
          "  dfu list             list DFU devices: port path, serial, alt settings, layout\n"
          "  can scan             list the units on a CAN bus: UUID, Klipper or Katapult, slot\n"
          "  can flash IMAGE      reflash an application over CAN with Katapult (--uuid U)\n"
          "  serial flash IMAGE   reflash an application over USB-CDC with Katapult (--slot N)\n"
          "  report show FILE     summarise a unit report\n"
          "  job check JOB        parse a job and validate its images; touches nothing\n"
          "  fixture check FILE   parse a fixture file and describe its slots\n"
          "  image generate OUT   write the synthetic combined image the demo job uses\n"
          "\n"
          "Options:\n"
          "  -f, --fixture FILE   fixture file or name (default: $STATION_FIXTURE, else\n"
          "                       fixture.yaml in ~/.config/station or /etc/station, else\n"
          "                       the virtual fixture in the share directory)\n"
          "  -s, --slot N         run on slot N only (repeatable)\n"
          "  -r, --reports DIR    write reports to DIR instead of the job's report_dir\n"
          "  -o, --operator NAME  operator name for the reports (default: $USER)\n"
          "      --plain          plain progress lines even on a terminal\n"
          "      --iface NAME     can scan/flash: CAN interface (default: the fixture's)\n"
          "      --uuid UUID      can flash: the unit's CAN UUID (12 hex digits)\n"
          "      --addr ADDR      can/serial flash: load address (default 0x08002000)\n"
          "      --sha256 HEX     can/serial flash: refuse the image unless it has this digest\n"
          "      --mcu NAME       can/serial flash: target MCU (default stm32g431xx)\n"
          "      --size BYTES     image generate: image size (default 35984)\n"
          "      --seed N         image generate: application variant (default 0)\n"
          "      --app            image generate: only the application (loads at 0x08002000)\n"
          "      --no-color       report show: no ANSI colours\n"
          "  -v, --verbose        more log messages (twice for debug)\n"
          "  -h, --help           this help\n"
          "  -V, --version        version\n"
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

typedef struct opts {
    const char *fixture;
    const char *iface;
    const char *uuid;
    const char *sha256;
    const char *mcu;
    uint32_t addr;
    uint32_t seed;
    int slots[64];
    int nslots;
    const char *reports;
    const char *operator_name;
    bool plain;
    bool no_color;
    bool app_only;
    size_t size;
    int verbose;
} opts;

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
    char path[4096];
    if (!find_file(ST_PATH_FIXTURE, o->fixture, path, sizeof path))
        return EXIT_USAGE;
    int rc = st_ctx_open(path, log, ctx, &e);
    if (!rc)
        return 0;
    err_line("fixture", &e);
    return rc == ST_ERR_INVAL ? EXIT_USAGE : EXIT_STATION;
}

/* ---- run -------------------------------------------------------------------------- */

/* One unit to run the job on: a fixture slot, a unit found on the CAN bus, or both. */
typedef struct target {
    const st_fixture_slot *fs;
    char uuid[ST_CAN_UUID_STRLEN];
    char iface[32];
} target;

typedef struct slot_run {
    st_run_env env;
    st_progress progress;
    st_ui *ui;
    int row;
    const st_job *job;
    st_image **images;
    st_run_result res;
    int rc;
    pthread_t thread;
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
    char detail[PATH_MAX + ST_ERR_MSG_MAX + 16];
    if (s->rc)
        snprintf(detail, sizeof detail, "no report written: %s", s->res.cause);
    else if (s->res.verdict == ST_VERDICT_PASS)
        snprintf(detail, sizeof detail, "report %s", s->res.report_path);
    else
        snprintf(detail, sizeof detail, "%s\n         report %s", s->res.cause, s->res.report_path);
    st_ui_done(s->ui, s->row, s->rc ? "ERROR" : s->res.verdict == ST_VERDICT_PASS ? "PASS" :
                              s->res.verdict == ST_VERDICT_FAIL ? "FAIL" : "INCOMPLETE", detail);
    return NULL;
}

static bool job_uses_can(const st_job *job)
{
    if (job->katapult.transport != ST_KAT_CAN)
        return false;
    for (size_t i = 0; i < job->nsteps; i++) {
        st_step_kind k = job->steps[i].kind;
        if (k == ST_STEP_ENTER_KATAPULT || (k == ST_STEP_WAIT_FOR_APP && job->steps[i].can))
            return true;
    }
    return false;
}

/* The CAN interface a command means: --iface, else the first slot's. */
static const char *default_iface(const st_fixture *fx, const opts *o)
{
    if (o->iface)
        return o->iface;
    for (size_t i = 0; i < fx->n_slots; i++)
        if (fx->slots[i].can.present)
            return fx->slots[i].can.iface;
    return "can0";
}

static uint32_t default_bitrate(const st_fixture *fx, const char *iface)
{
    for (size_t i = 0; i < fx->n_slots; i++)
        if (fx->slots[i].can.present && strcmp(fx->slots[i].can.iface, iface) == 0)
            return fx->slots[i].can.bitrate;
    return 0;
}

static const st_fixture_slot *slot_of_uuid(const st_fixture *fx, const char *uuid)
{
    for (size_t i = 0; i < fx->n_slots; i++)
        if (fx->slots[i].can.present && strcasecmp(fx->slots[i].can.uuid, uuid) == 0)
            return &fx->slots[i];
    return NULL;
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

/* Every unit that answers QUERY on the interface (Klipper applications and Katapult). */
static int discover(st_ctx *ctx, const char *ifname, uint32_t bitrate, unsigned ms,
                    st_canadmin_node *nodes, size_t cap, st_err *err)
{
    st_can_iface *ifc = NULL;
    st_can_link *l = NULL;
    int rc = st_ctx_can_iface(ctx, ifname, &ifc, err);
    if (!rc)
        rc = st_can_iface_prepare(ifc, bitrate, err);
    if (!rc)
        rc = ifc->ops->open_link(ifc, &l, err);
    if (rc)
        return rc;
    rc = st_canadmin_query(l, ms, nodes, cap, err);
    st_can_link_close(l);
    return rc;
}

static int run_job(st_job *job, st_image **images, const opts *o)
{
    st_err e;
    st_err_clear(&e);
    int status = EXIT_PASS;
    bool fancy = !o->plain && isatty(STDOUT_FILENO);
    st_log_level level = o->verbose >= 2 ? ST_LOG_DEBUG : o->verbose ? ST_LOG_INFO : ST_LOG_WARN;
    st_ui *ui = NULL;
    st_ctx *ctx = NULL;
    slot_run *runs = NULL;
    target *targets = NULL;
    size_t nruns = 0, ntargets = 0;
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
    if (job->units == ST_UNITS_DISCOVER && o->uuid) {
        /* One unit named on the command line: no need to ask the whole bus. */
        target *t = &targets[ntargets++];
        st_strlcpy(t->uuid, o->uuid, sizeof t->uuid);
        for (char *c = t->uuid; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        t->fs = slot_of_uuid(fx, t->uuid);
        st_strlcpy(t->iface, t->fs ? t->fs->can.iface : default_iface(fx, o), sizeof t->iface);
        st_can_iface *ifc = NULL;
        if (st_ctx_can_iface(ctx, t->iface, &ifc, &e) ||
            st_can_iface_prepare(ifc, job->katapult.bitrate ? job->katapult.bitrate
                                                             : default_bitrate(fx, t->iface), &e)) {
            err_line("can", &e);
            status = EXIT_STATION;
            goto out;
        }
    } else if (job->units == ST_UNITS_DISCOVER) {
        const char *ifname = default_iface(fx, o);
        uint32_t bitrate = job->katapult.bitrate ? job->katapult.bitrate : default_bitrate(fx, ifname);
        st_canadmin_node nodes[64];
        printf("station: looking for units on %s for %u ms\n", ifname, job->katapult.discover_ms);
        int n = discover(ctx, ifname, bitrate, job->katapult.discover_ms, nodes, 64, &e);
        if (n < 0) {
            err_line("discover", &e);
            status = EXIT_STATION;
            goto out;
        }
        for (int i = 0; i < n && i < 64; i++) {
            target *t = &targets[ntargets];
            st_can_uuid_format(&nodes[i].uuid, t->uuid);
            t->fs = slot_of_uuid(fx, t->uuid);
            if (o->nslots && (!t->fs || !slot_chosen(o, t->fs->id)))
                continue;
            st_strlcpy(t->iface, ifname, sizeof t->iface);
            ntargets++;
        }
        if (!ntargets) {
            fprintf(stderr, "station: no unit answered on %s\n", ifname);
            status = EXIT_STATION;
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
    char run_id[40];
    uint64_t now = st_wall_us();
    snprintf(run_id, sizeof run_id, "%llx-%x", (unsigned long long)(now / 1000u), (unsigned)getpid());
    const char *who = o->operator_name ? o->operator_name : getenv("USER");
    printf("station: job %s on %s (%zu unit%s)\n", job->name, fx->name, ntargets,
           ntargets == 1 ? "" : "s");
    st_serial_host *serial = NULL;
    if (job->katapult.transport == ST_KAT_USB && (rc = st_ctx_serial(ctx, &serial, &e)) != 0) {
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
        if (job_uses_can(job)) {
            rc = st_ctx_can_iface(ctx, t->iface, &ifc, &e);
            if (!rc && job->units != ST_UNITS_DISCOVER)
                rc = st_can_iface_prepare(ifc, job->katapult.bitrate ? job->katapult.bitrate
                                                                      : default_bitrate(fx, t->iface), &e);
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
        st_ui_bind(ui, (int)i, t->fs ? t->fs->id : 0, &s->progress);
        s->env = (st_run_env){
            .station_name = "station",
            .operator_name = who && *who ? who : "unknown",
            .run_id = run_id,
            .report_dir = o->reports,
            .fixture = fx,
            .fslot = t->fs,
            .slot = slot,
            .usb = st_ctx_usb(ctx),
            .can = ifc,
            .can_uuid = t->uuid,
            /* Distinct node ids so units on one bus can be flashed at once (flashtool
             * gives its single node 129). */
            .can_nodeid = (uint8_t)(ST_CANADMIN_NODEID_KATAPULT + i),
            .serial = serial,
            .log = st_ui_logger(ui),
            .progress = &s->progress,
            .on_step = on_step,
            .on_step_ctx = s,
            .cancel = &cancel_flag,
        };
        nruns++;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    for (size_t i = 0; i < nruns; i++)
        pthread_create(&runs[i].thread, NULL, slot_thread, &runs[i]);
    for (size_t i = 0; i < nruns; i++)
        pthread_join(runs[i].thread, NULL);
    size_t pass = 0, fail = 0, inc = 0, err = 0;
    for (size_t i = 0; i < nruns; i++) {
        if (runs[i].rc)
            err++;
        else if (runs[i].res.verdict == ST_VERDICT_PASS)
            pass++;
        else if (runs[i].res.verdict == ST_VERDICT_FAIL)
            fail++;
        else
            inc++;
    }
    printf("station: %zu passed, %zu failed", pass, fail);
    if (inc)
        printf(", %zu incomplete", inc);
    if (err)
        printf(", %zu without a report", err);
    printf("\n");
    status = err ? EXIT_STATION : inc ? EXIT_INCOMPLETE : fail ? EXIT_UNIT_FAIL : EXIT_PASS;
out:
    for (size_t i = 0; i < nruns; i++)
        st_slot_close(runs[i].env.slot);
    free(runs);
    free(targets);
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

static int cmd_run(const char *job_path, const opts *o)
{
    st_err e;
    st_err_clear(&e);
    st_job *job = NULL;
    if (st_job_load(job_path, &job, &e)) {
        err_line("job", &e);
        return EXIT_USAGE;
    }
    /* Every image is checked before any pin moves. */
    st_image *images[ST_JOB_MAX_IMAGES];
    if (st_job_load_images(job, images, &e)) {
        err_line("job refused", &e);
        st_job_free(job);
        return EXIT_USAGE;
    }
    int status = run_job(job, images, o);
    free_images(images);
    st_job_free(job);
    return status;
}

/* `can flash` / `serial flash`: the same engine with a job made from the command line. */
static int cmd_flash(bool can, const char *image_path, const opts *o)
{
    st_err e;
    st_job *job = calloc(1, sizeof *job);
    st_image *images[ST_JOB_MAX_IMAGES] = { NULL };
    int status = EXIT_USAGE;
    if (!job)
        return EXIT_STATION;
    job->mcu = st_mcu_find(o->mcu ? o->mcu : "stm32g431xx");
    if (!job->mcu) {
        fprintf(stderr, "station: --mcu %s: unknown MCU\n", o->mcu);
        goto out;
    }
    if (can && (!o->uuid || st_can_uuid_parse(o->uuid, &(st_can_uuid){ { 0 } }, &e))) {
        fprintf(stderr, "station: can flash needs --uuid with the unit's 12-hex-digit CAN UUID\n");
        goto out;
    }
    if (!can && o->nslots != 1) {
        fprintf(stderr, "station: serial flash needs --slot N (the slot whose USB port holds the unit)\n");
        goto out;
    }
    st_job_defaults(job);
    st_strlcpy(job->name, can ? "can-flash" : "serial-flash", sizeof job->name);
    job->retries = 1;
    job->katapult.transport = can ? ST_KAT_CAN : ST_KAT_USB;
    uint32_t addr = o->addr ? o->addr : job->mcu->flash_start + job->mcu->katapult_app_offset;
    job->images[0].path = realpath(image_path, NULL);
    if (!job->images[0].path)
        job->images[0].path = strdup(image_path);
    st_strlcpy(job->images[0].role, "application", sizeof job->images[0].role);
    job->images[0].load_addr = addr;
    job->nimages = 1;
    if (st_image_load(job->images[0].path, addr, &images[0], &e) ||
        st_image_validate(images[0], job->mcu, o->sha256, &e)) {
        err_line("image refused", &e);
        goto out;
    }
    /* Without --sha256 the image is taken as given; the report still pins what was sent.
     * The job is the command line: the report cites it, and its digest, as the job. */
    st_strlcpy(job->images[0].sha256, images[0]->sha256_hex, sizeof job->images[0].sha256);
    char line[PATH_MAX + 128];
    snprintf(line, sizeof line, "station %s flash %s --addr 0x%08X %s%s", can ? "can" : "serial",
             job->images[0].path, addr, can ? "--uuid " : "--slot", can ? o->uuid : "");
    if (!can)
        snprintf(line + strlen(line), sizeof line - strlen(line), " %d", o->slots[0]);
    job->path = strdup(line);
    uint8_t md[ST_SHA256_LEN];
    st_sha256(line, strlen(line), md);
    st_hex(md, sizeof md, false, job->sha256);
    static const st_step_kind steps[] = { ST_STEP_ENTER_KATAPULT, ST_STEP_READ_APP,
                                          ST_STEP_KATAPULT_FLASH, ST_STEP_KATAPULT_VERIFY,
                                          ST_STEP_KATAPULT_COMPLETE, ST_STEP_WAIT_FOR_APP };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        st_job_step *s = &job->steps[job->nsteps++];
        s->kind = steps[i];
        s->retries = job->retries;
        s->image = 0;
        s->skip_identical = steps[i] == ST_STEP_KATAPULT_FLASH;
        s->can = can;
        s->usb_vid = can ? 0 : 0x1d50;
        s->usb_pid = can ? 0 : 0x614e;
    }
    /* A unit named by UUID runs like a discovered one: in its slot if the fixture maps it. */
    if (can)
        job->units = ST_UNITS_DISCOVER;
    status = run_job(job, images, o);
out:
    free_images(images);
    st_job_free(job);
    return status;
}

/* ---- dfu list ----------------------------------------------------------------------- */

static int cmd_dfu_list(const opts *o)
{
    st_err e;
    st_ctx *ctx = NULL;
    int status = open_context(o, NULL, &ctx);
    if (status)
        return status;
    st_usb_host *host = st_ctx_usb(ctx);
    st_usb_dev_info *list = NULL;
    size_t n = 0;
    if (st_usb_host_list(host, &list, &n, &e)) {
        err_line("dfu list", &e);
        st_ctx_close(ctx);
        return EXIT_STATION;
    }
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
        printf("%04x:%04x port %s  serial \"%s\"  %s\n", list[i].vid, list[i].pid,
               list[i].port_path, st_text_printable(list[i].serial, s1, sizeof s1),
               st_text_printable(list[i].product, s2, sizeof s2));
        if (st_dfuse_open(host, &list[i], NULL, &d, &e)) {
            printf("  (cannot open: %s)\n", e.msg);
            continue;
        }
        const st_dfuse_info *info = st_dfuse_get_info(d);
        printf("  DFU %x.%02x, transfer size %u, attributes 0x%02x, detach %u ms\n",
               info->dfu_version >> 8, info->dfu_version & 0xFF, info->transfer_size,
               info->attributes, info->detach_timeout_ms);
        for (size_t a = 0; a < info->nalts; a++) {
            const st_dfuse_alt *alt = &info->alts[a];
            printf("  alt %u \"%s\"\n", alt->alt, st_text_printable(alt->name, s1, sizeof s1));
            if (!alt->layout) {
                printf("    (no memory layout)\n");
                continue;
            }
            for (size_t g = 0; g < alt->layout->nsegs; g++) {
                const st_dfuse_segment *sg = &alt->layout->segs[g];
                printf("    0x%08X-0x%08llX  %u x %u bytes  %s%s%s\n", sg->start,
                       (unsigned long long)(sg->start + sg->size - 1), sg->count, sg->page_size,
                       sg->flags & ST_DFUSE_MEM_READABLE ? "r" : "-",
                       sg->flags & ST_DFUSE_MEM_ERASABLE ? "e" : "-",
                       sg->flags & ST_DFUSE_MEM_WRITABLE ? "w" : "-");
            }
        }
        st_dfuse_close(d);
    }
    if (!found)
        printf("no DFU devices\n");
    free(list);
    st_ctx_close(ctx);
    return EXIT_PASS;
}

/* ---- can scan ---------------------------------------------------------------------- */

static int cmd_can_scan(const opts *o)
{
    st_err e;
    st_ctx *ctx = NULL;
    int status = open_context(o, NULL, &ctx);
    if (status)
        return status;
    const st_fixture *fx = st_ctx_fixture(ctx);
    const char *ifname = default_iface(fx, o);
    st_canadmin_node nodes[64];
    int n = discover(ctx, ifname, default_bitrate(fx, ifname), ST_CANADMIN_QUERY_MS, nodes, 64, &e);
    if (n < 0) {
        err_line("can scan", &e);
        st_ctx_close(ctx);
        return EXIT_STATION;
    }
    printf("%d unit%s on %s\n", n, n == 1 ? "" : "s", ifname);
    if (n)
        printf("%-14s %-12s %s\n", "UUID", "RUNS", "SLOT");
    for (int i = 0; i < n && i < 64; i++) {
        char uuid[ST_CAN_UUID_STRLEN], app[32];
        st_can_uuid_format(&nodes[i].uuid, uuid);
        const st_fixture_slot *fs = slot_of_uuid(fx, uuid);
        char slot[80] = "-";
        if (fs)
            snprintf(slot, sizeof slot, "%d%s%s%s", fs->id, fs->name[0] ? " (" : "", fs->name,
                     fs->name[0] ? ")" : "");
        printf("%-14s %-12s %s\n", uuid, st_canadmin_app_name(&nodes[i], app, sizeof app), slot);
    }
    if (n > 64)
        printf("(%d more not shown)\n", n - 64);
    st_ctx_close(ctx);
    return EXIT_PASS;
}

/* ---- small commands ------------------------------------------------------------------ */

static int cmd_report_show(const char *path, const opts *o)
{
    st_rnode *doc = NULL;
    st_err e;
    if (st_report_load(path, &doc, &e)) {
        err_line("report", &e);
        return EXIT_USAGE;
    }
    int rc = st_report_validate(doc, &e);
    st_report_render(doc, stdout, !o->no_color && isatty(STDOUT_FILENO));
    if (rc)
        fprintf(stderr, "station: warning: %s: not a valid schema-1 report: %s\n", path, e.msg);
    st_report_free(doc);
    return rc ? EXIT_USAGE : EXIT_PASS;
}

static int cmd_job_check(const char *path)
{
    st_job *job = NULL;
    st_err e;
    if (st_job_load(path, &job, &e)) {
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
        printf("  step %zu: %s (retries %u)\n", i + 1, st_step_kind_name(job->steps[i].kind),
               job->steps[i].retries);
    st_job_free(job);
    return EXIT_PASS;
}

static int cmd_fixture_check(const char *path)
{
    st_fixture *fx = NULL;
    st_err e;
    if (st_fixture_load(path, &fx, &e)) {
        err_line("fixture", &e);
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

static int cmd_image_generate(const char *out, const opts *o)
{
    uint8_t *img = NULL;
    st_err e;
    const st_mcu *mcu = st_mcu_find("stm32g431xx");
    size_t n = o->size ? o->size : ST_SYNTH_DEFAULT_SIZE;
    if (st_synth_combined_seeded(mcu, n, o->seed, &img, &e)) {
        err_line("image generate", &e);
        return EXIT_USAGE;
    }
    /* The application part alone is what a Katapult reflash sends. */
    size_t skip = o->app_only ? mcu->katapult_app_offset : 0;
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

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "fixture", required_argument, NULL, 'f' }, { "slot", required_argument, NULL, 's' },
        { "reports", required_argument, NULL, 'r' }, { "operator", required_argument, NULL, 'o' },
        { "plain", no_argument, NULL, 'P' },         { "no-color", no_argument, NULL, 'C' },
        { "size", required_argument, NULL, 'S' },    { "verbose", no_argument, NULL, 'v' },
        { "iface", required_argument, NULL, 'I' },   { "uuid", required_argument, NULL, 'U' },
        { "addr", required_argument, NULL, 'A' },    { "sha256", required_argument, NULL, 'H' },
        { "mcu", required_argument, NULL, 'M' },     { "seed", required_argument, NULL, 'D' },
        { "app", no_argument, NULL, 'a' },
        { "help", no_argument, NULL, 'h' },          { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    opts o;
    memset(&o, 0, sizeof o);
    int c;
    while ((c = getopt_long(argc, argv, "f:s:r:o:vhV", longopts, NULL)) != -1) {
        char *end;
        long v;
        switch (c) {
        case 'f': o.fixture = optarg; break;
        case 's':
            v = strtol(optarg, &end, 10);
            if (*end || v < 0 || v > 999 || o.nslots == 64) {
                fprintf(stderr, "station: --slot: \"%s\" is not a slot number\n", optarg);
                return EXIT_USAGE;
            }
            o.slots[o.nslots++] = (int)v;
            break;
        case 'r': o.reports = optarg; break;
        case 'o': o.operator_name = optarg; break;
        case 'P': o.plain = true; break;
        case 'C': o.no_color = true; break;
        case 'S':
            v = strtol(optarg, &end, 0);
            if (*end || v <= 0) {
                fprintf(stderr, "station: --size: \"%s\" is not a size\n", optarg);
                return EXIT_USAGE;
            }
            o.size = (size_t)v;
            break;
        case 'I': o.iface = optarg; break;
        case 'a': o.app_only = true; break;
        case 'U': o.uuid = optarg; break;
        case 'H': o.sha256 = optarg; break;
        case 'M': o.mcu = optarg; break;
        case 'A':
        case 'D': {
            /* Not strtol: a 32-bit long cannot hold 0x90000000 (armhf). */
            uint64_t u;
            if (!st_parse_u64(optarg, &u) || u > 0xFFFFFFFFu) {
                fprintf(stderr, "station: --%s: \"%s\" is not a number\n", c == 'A' ? "addr" : "seed", optarg);
                return EXIT_USAGE;
            }
            if (c == 'A')
                o.addr = (uint32_t)u;
            else
                o.seed = (uint32_t)u;
            break;
        }
        case 'v': o.verbose++; break;
        case 'h': usage(stdout); return EXIT_PASS;
        case 'V': printf("station %s\n", STATION_VERSION); return EXIT_PASS;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    int n = argc - optind;
    char **a = argv + optind;
    char found[4096]; /* job and fixture names go through the search path */
    if (n == 2 && strcmp(a[0], "run") == 0)
        return find_file(ST_PATH_JOB, a[1], found, sizeof found) ? cmd_run(found, &o)
                                                                   : EXIT_USAGE;
    if (n == 2 && strcmp(a[0], "dfu") == 0 && strcmp(a[1], "list") == 0)
        return cmd_dfu_list(&o);
    if (n == 2 && strcmp(a[0], "can") == 0 && strcmp(a[1], "scan") == 0)
        return cmd_can_scan(&o);
    if (n == 3 && strcmp(a[0], "can") == 0 && strcmp(a[1], "flash") == 0)
        return cmd_flash(true, a[2], &o);
    if (n == 3 && strcmp(a[0], "serial") == 0 && strcmp(a[1], "flash") == 0)
        return cmd_flash(false, a[2], &o);
    if (n == 3 && strcmp(a[0], "report") == 0 && strcmp(a[1], "show") == 0)
        return cmd_report_show(a[2], &o);
    if (n == 3 && strcmp(a[0], "job") == 0 && strcmp(a[1], "check") == 0)
        return find_file(ST_PATH_JOB, a[2], found, sizeof found) ? cmd_job_check(found)
                                                                   : EXIT_USAGE;
    if (n == 3 && strcmp(a[0], "fixture") == 0 && strcmp(a[1], "check") == 0)
        return find_file(ST_PATH_FIXTURE, a[2], found, sizeof found) ? cmd_fixture_check(found)
                                                                       : EXIT_USAGE;
    if (n == 3 && strcmp(a[0], "image") == 0 && strcmp(a[1], "generate") == 0)
        return cmd_image_generate(a[2], &o);
    if (n == 0)
        fprintf(stderr, "station: no command given\n");
    else
        fprintf(stderr, "station: unknown command \"%s\"\n", a[0]);
    usage(stderr);
    return EXIT_USAGE;
}
