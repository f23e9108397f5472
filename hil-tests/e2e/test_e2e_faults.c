/* The fault matrix (issue 8 item 11): every fault string the device models accept, on every
 * path it applies to, each run in-process on the virtual fixture (station/context.c) as
 * `station run` runs it, then the same unit, as the faulty run left it, run again without
 * the fault. Each cell is checked against the expectation table below: the verdict, a
 * report that validates, a cause naming the step (and the address, for transfer faults),
 * no hang (a deadline per cell, in a child process), and a unit that passes the rerun (not
 * stranded). Prints a table per path. Also the Katapult NACK-storm cases of item 5. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "fixtures/slot.h"
#include "hil-tests/e2e/e2e.h"
#include "jobs/engine.h"
#include "jobs/job.h"
#include "reports/report.h"
#include "station/context.h"
#include "station/core/digest.h"
#include "station/core/testutil.h"
#include "station/drivers.h"

#define STATION STATION_BINARY_DIR "/station/station"
#define REAL_USB_COMBINED \
    STATION_SHARED_DIR "/firmware/cartographer-v4/6.0.0/Katapult_plus_CartographerV4_6.0.0__USB_lite.bin"
#define CELL_DEADLINE_S 30 /* a cell that has not finished by then hangs */

/* ---- paths ---------------------------------------------------------------------------- */

typedef enum path_id { P_DFU, P_KCAN, P_KUSB, P_KUART, P_AN3155, P_BGAPI, P_CHECK, NPATHS } path_id;

static const char *const path_names[NPATHS] = {
    "rom-dfu", "katapult-can", "katapult-usb", "katapult-uart", "an3155", "bgapi", "checks",
};

static char base[64];   /* scratch dir: images and jobs */
static char app_sha[65], comb_sha[65], gbl_sha[65];

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static bool have_real_firmware(void)
{
    return access(REAL_USB_COMBINED, R_OK) == 0;
}

/* The jobs of each path, written once into base/. */
static void write_jobs(void)
{
    char cmd[512], p[256], job[2048];
    snprintf(cmd, sizeof cmd,
             STATION " image generate --app --seed 9 %s/app.bin >/dev/null && " STATION
             " image generate --seed 9 %s/combined.bin >/dev/null && " STATION
             " ble image %s/bgm.gbl --stack 5.0.1 >/dev/null", base, base, base);
    assert_int_equal(system(cmd), 0);
    snprintf(p, sizeof p, "%s/app.bin", base);
    e2e_sha256_file(p, app_sha, NULL);
    snprintf(p, sizeof p, "%s/combined.bin", base);
    e2e_sha256_file(p, comb_sha, NULL);
    snprintf(p, sizeof p, "%s/bgm.gbl", base);
    e2e_sha256_file(p, gbl_sha, NULL);

    snprintf(job, sizeof job,
             "name: matrix-rom-dfu\ntarget: stm32g431xx\n"
             "images:\n  combined: { path: combined.bin, load_addr: 0x08000000, sha256: %s }\n"
             "dfu: { enumerate_timeout_ms: 1000, request_timeout_ms: 500 }\n"
             "retries: 2\n"
             "steps:\n  - enter-bootloader\n  - flash\n  - verify\n  - start\n"
             "  - wait-for-app: { usb: \"1d50:614e\", timeout_ms: 2000 }\n", comb_sha);
    snprintf(p, sizeof p, "%s/rom-dfu.yaml", base);
    write_text(p, job);
    static const char *const kt[] = { "can", "usb", "uart" };
    for (int k = 0; k < 3; k++) {
        for (int ladder = 0; ladder < 2; ladder++) {
            bool can = k == 0;
            snprintf(job, sizeof job,
                     "name: matrix-katapult-%s\ntarget: stm32g431xx\n"
                     "images:\n"
                     "  application: { path: app.bin, load_addr: 0x08002000, sha256: %s }\n"
                     "  combined: { path: combined.bin, load_addr: 0x08000000, sha256: %s }\n"
                     "katapult: { transport: %s, timeout_ms: 100, tries: 2 }\n"
                     "dfu: { enumerate_timeout_ms: 1000, request_timeout_ms: 500 }\n"
                     "%s"
                     "retries: 1\n"
                     "steps:\n"
                     "  - enter-katapult%s\n"
                     "  - read-app\n"
                     "  - katapult-flash: { skip_identical: true }\n"
                     "  - katapult-verify\n"
                     "  - katapult-complete\n"
                     "%s",
                     kt[k], app_sha, comb_sha, can ? "can, bitrate: 1000000" : kt[k],
                     ladder ? "recovery: { image: combined }\n" : "",
                     can ? "" : ": { timeout_ms: 300 }",
                     k == 0   ? "  - wait-for-app: { can: true, timeout_ms: 3000 }\n"
                     : k == 1 ? "  - wait-for-app: { usb: \"1d50:614e\", timeout_ms: 3000 }\n"
                              : "" /* no wait-for-app on a UART: katapult-complete decides */);
            snprintf(p, sizeof p, "%s/katapult-%s%s.yaml", base, kt[k], ladder ? "" : "-no-ladder");
            write_text(p, job);
        }
    }
    snprintf(job, sizeof job,
             "name: matrix-an3155\ntarget: stm32g431xx\n"
             "images:\n  combined: { path: combined.bin, load_addr: 0x08000000, sha256: %s }\n"
             "uart: { allow_8n1: true }\n"
             "retries: 2\n"
             "steps: [uart-enter, uart-info, uart-flash, uart-verify, uart-start]\n", comb_sha);
    snprintf(p, sizeof p, "%s/an3155.yaml", base);
    write_text(p, job);
    snprintf(job, sizeof job,
             "name: matrix-bgapi\ntarget: efr32bg13p632f512\n"
             "images:\n  module: { path: bgm.gbl, load_addr: 0, sha256: %s }\n"
             "bgapi: { bootloader: auto, entry_timeout_ms: 3000, response_timeout_ms: 500, "
             "boot_timeout_ms: 2000 }\n"
             "retries: 1\n"
             "steps: [bgapi-enter-dfu, bgapi-upload, bgapi-finish, bgapi-boot]\n", gbl_sha);
    snprintf(p, sizeof p, "%s/bgapi.yaml", base);
    write_text(p, job);
    snprintf(job, sizeof job,
             "name: matrix-checks\ntarget: stm32g431xx\n"
             "images:\n  combined: { path: %s, load_addr: 0x08000000,\n"
             "    sha256: fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c }\n"
             "klipper: { transport: usb, version: \"CARTOGRAPHER V4 6.0.0 Lite\", timeout_ms: 2000 }\n"
             "retries: 1\n"
             "steps:\n"
             "  - wait-for-app: { usb: \"1d50:614e\", timeout_ms: 3000 }\n"
             "  - identify: { clock_freq: 170000000 }\n"
             "  - alive: { duration_ms: 300, tolerance: 0.05 }\n"
             "  - sample:\n      count: 50\n      unit: counts\n      limits:\n"
             "        mean: { low: 2900000, high: 3100000 }\n"
             "        stddev: { low: 5, high: 2000 }\n"
             "        gaps: { high: 0 }\n", REAL_USB_COMBINED);
    snprintf(p, sizeof p, "%s/checks.yaml", base);
    write_text(p, job);
}

/* A one-slot fixture for the path, its unit given `faults` (a YAML flow list body). */
static void write_fixture(const char *path, path_id pid, const char *faults)
{
    char text[2048];
    const char *head = "name: matrix\ngpio: { backend: virtual }\n"
                       "timing: { reset_pulse_ms: 1, boot_settle_ms: 1 }\nslots:\n  - id: 1\n"
                       "    lines: { boot0: B1, reset: { name: R1, active_low: true } }\n";
    switch (pid) {
    case P_DFU:
        snprintf(text, sizeof text, "%s    usb_port: vusb-1\n    unit:\n      transport: usb\n"
                 "      faults: [%s]\n", head, faults);
        break;
    case P_KUSB:
        snprintf(text, sizeof text, "%s    usb_port: vusb-1\n    unit:\n      transport: usb\n"
                 "      holds: \"synthetic:4\"\n      faults: [%s]\n", head, faults);
        break;
    case P_KCAN:
        snprintf(text, sizeof text, "%s    usb_port: vusb-1\n"
                 "    can: { iface: vcan-m, bitrate: 1000000, uuid: 0a0b0c0d0e01 }\n"
                 "    unit:\n      transport: can\n      holds: \"synthetic:1\"\n"
                 "      can_uuid: 0a0b0c0d0e01\n      faults: [%s]\n", head, faults);
        break;
    case P_KUART:
        snprintf(text, sizeof text, "%s    usb_port: vusb-1\n    serial: { device: pty }\n"
                 "    unit:\n      transport: uart\n      holds: \"synthetic:5\"\n"
                 "      faults: [%s]\n", head, faults);
        break;
    case P_AN3155:
        snprintf(text, sizeof text, "%s    serial: { device: pty }\n"
                 "    unit: { mcu: stm32g431xx, holds: \"synthetic:2\", faults: [%s] }\n", head,
                 faults);
        break;
    case P_BGAPI:
        snprintf(text, sizeof text, "%s    usb_port: vusb-1\n"
                 "    module: { device: /dev/ttyBLE1, baud: 115200 }\n"
                 "    unit:\n      transport: usb\n"
                 "      module: { bootloader: gsdk4, faults: [%s] }\n", head, faults);
        break;
    case P_CHECK:
        snprintf(text, sizeof text, "%s    usb_port: vusb-1\n    unit:\n      transport: usb\n"
                 "      holds: %s\n      faults: [%s]\n", head, REAL_USB_COMBINED, faults);
        break;
    default:
        fail_msg("no fixture for path %d", pid);
    }
    write_text(path, text);
}

/* ---- one cell, in a child process ------------------------------------------------------ */

typedef enum outcome { O_PASS, O_FAIL, O_INCOMPLETE, O_REFUSED, O_ERROR } outcome;
static const char *const outcome_names[] = { "pass", "fail", "incomplete", "refused", "error" };

typedef struct cell_result {
    outcome first, rerun;
    bool report_ok, rerun_report_ok;
    char cause[1024];      /* the faulty run's cause (or why it was refused) */
    char rerun_cause[512];
    char state[16];        /* the unit's state after the faulty run */
    char how[96];          /* the faulty run's retries and recovery rung, from its report */
    char note[256];        /* the faulty run's last step note, from its report */
} cell_result;

/* Run the job once on slot 1 as `station run` would (run_job in station/main.c), on the
 * slot the caller holds open: the rerun finds the unit exactly as the faulty run left it
 * (closing the slot would let its lines fall to their pulls, and that resets the unit). */
static outcome run_once(st_ctx *ctx, st_slot *slot, const st_job *job, st_image *const *images,
                        const char *reports, char *cause, size_t cap, bool *report_ok,
                        char *how, size_t hcap, char *note, size_t ncap)
{
    const st_fixture *fx = st_ctx_fixture(ctx);
    const st_fixture_slot *fs = st_fixture_slot_by_id(fx, 1);
    st_slot_needs needs = { 0, 0 };
    for (size_t i = 0; i < job->nsteps; i++)
        if (job->steps[i].def->needs)
            job->steps[i].def->needs(job, st_job_section(job, job->steps[i].driver),
                                     job->steps[i].opts, &needs);
    st_err e;
    st_err_clear(&e);
    *report_ok = false;
    st_can_iface *ifc = NULL;
    st_serial_host *serial = NULL;
    int rc = 0;
    if (needs.what & ST_NEED_CAN) {
        rc = st_ctx_can_iface(ctx, fs->can.iface, &ifc, &e);
        if (!rc)
            rc = st_can_iface_prepare(ifc, needs.can_bitrate ? needs.can_bitrate : 1000000u, &e);
    }
    if (!rc && (needs.what & ST_NEED_USB_SERIAL))
        rc = st_ctx_serial(ctx, &serial, &e);
    if (rc) {
        snprintf(cause, cap, "%s", e.msg);
        return O_REFUSED; /* the station's own error: no unit touched, no report */
    }
    st_progress progress;
    memset(&progress, 0, sizeof progress);
    st_run_env env = {
        .station_name = "matrix",
        .operator_name = "matrix",
        .run_id = "00000000-0000-4000-8000-000000000000",
        .report_dir = reports,
        .fixture = fx,
        .fslot = fs,
        .slot = slot,
        .usb = st_ctx_usb(ctx),
        .can = ifc,
        .can_uuid = fs->can.uuid,
        .serial = serial,
        .uart_open = st_ctx_uart_open,
        .uart_ctx = ctx,
        .progress = &progress,
    };
    st_run_result res;
    rc = st_job_run(job, images, &env, &res);
    snprintf(cause, cap, "%s", res.cause);
    if (rc)
        return O_ERROR;
    st_rnode *doc = NULL;
    if (st_report_load(res.report_path, &doc, &e) == 0 && st_report_validate(doc, &e) == 0)
        *report_ok = true;
    else
        snprintf(cause + strlen(cause), cap - strlen(cause), " [report: %s]", e.msg);
    if (doc && how) {
        /* What it took: extra attempts, and the recovery rung. */
        long long extra = 0, a;
        const st_rnode *steps = st_rget(doc, "steps");
        for (size_t i = 0; steps && i < st_rnode_len(steps); i++) {
            char q[48];
            snprintf(q, sizeof q, "steps.%zu.attempts", i);
            if (st_rget_int(doc, q, &a) == 0 && a > 1)
                extra += a - 1;
        }
        for (size_t i = 0; note && steps && i < st_rnode_len(steps); i++) {
            char q[48];
            snprintf(q, sizeof q, "steps.%zu.note", i);
            const char *n = st_rget_str(doc, q);
            if (n)
                snprintf(note, ncap, "%s", n);
        }
        const char *rung = st_rget_str(doc, "recovery.rung");
        snprintf(how, hcap, "%lld retries%s%s", extra, rung ? ", rung " : "", rung ? rung : "");
    }
    st_report_free(doc);
    return res.verdict == ST_VERDICT_PASS ? O_PASS
           : res.verdict == ST_VERDICT_FAIL ? O_FAIL : O_INCOMPLETE;
}

/* Run the cell as for a unit the station found on the bus and no slot holds: no pins (the
 * engine gets no slot), so nothing can reset the unit. */
static bool cell_no_pins;

static void run_cell_child(const char *dir, const char *job_file, path_id pid, const char *fault,
                           cell_result *r)
{
    char fx[256], jp[256], rep[256], rep2[256], faults[256] = "";
    snprintf(fx, sizeof fx, "%s/fixture.yaml", dir);
    snprintf(jp, sizeof jp, "%s/%s", base, job_file);
    snprintf(rep, sizeof rep, "%s/reports", dir);
    snprintf(rep2, sizeof rep2, "%s/reports-rerun", dir);
    if (fault)
        snprintf(faults, sizeof faults, "\"%s\"", fault);
    write_fixture(fx, pid, faults);
    st_err e;
    st_ctx *ctx = NULL;
    st_job *job = NULL;
    st_image *images[ST_JOB_MAX_IMAGES] = { 0 };
    r->first = r->rerun = O_ERROR;
    st_slot *slot = NULL;
    if (st_ctx_open(fx, NULL, &ctx, &e) || st_job_load(jp, st_drivers_registry(), &job, &e) ||
        st_job_load_images(job, images, &e) ||
        st_slot_open(st_ctx_fixture(ctx), 1, st_ctx_gpio(ctx), &slot, &e)) {
        snprintf(r->cause, sizeof r->cause, "setup: %.900s", e.msg);
        return;
    }
    r->first = run_once(ctx, cell_no_pins ? NULL : slot, job, images, rep, r->cause, sizeof r->cause, &r->report_ok, r->how,
                        sizeof r->how, r->note, sizeof r->note);
    const char *st = st_ctx_virtual_state(ctx, 1);
    snprintf(r->state, sizeof r->state, "%s", st ? st : "-");
    if (st_ctx_virtual_clear_faults(ctx, 1, &e) == 0)
        r->rerun = run_once(ctx, cell_no_pins ? NULL : slot, job, images, rep2, r->rerun_cause, sizeof r->rerun_cause,
                            &r->rerun_report_ok, NULL, 0, NULL, 0);
    st_slot_close(slot);
    for (size_t i = 0; i < ST_JOB_MAX_IMAGES; i++)
        st_image_free(images[i]);
    st_job_free(job);
    st_ctx_close(ctx);
}

/* Fork a child for the cell; collect its result within the deadline, else it hangs. */
static pid_t start_cell(const char *dir, const char *job_file, path_id pid, const char *fault,
                        int *fd)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(p[0]);
        cell_result r;
        memset(&r, 0, sizeof r);
        mkdir(dir, 0700);
        run_cell_child(dir, job_file, pid, fault, &r);
        ssize_t w = write(p[1], &r, sizeof r);
        _exit(w == (ssize_t)sizeof r ? 0 : 1);
    }
    close(p[1]);
    *fd = p[0];
    return child;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the expectation table -------------------------------------------------------------- */

/* Per path, in path_id order: 'P' pass (after a retry or the recovery ladder, if need be),
 * 'F' a clean failure, 'R' refused by the station before any unit is touched (no report),
 * '-' the fault does not apply to the path (n/a), 's' applies but the path is not modelled
 * (counted as n/a and named so in the table). */
typedef struct row {
    const char *fault;
    const char *expect;     /* 7 characters */
    const char *cause_has;  /* a failure's cause must contain this (an address), or NULL */
    const char *why;        /* why this is the right verdict */
    /* The fault is what the unit is (another board), not an event: no rerun "without" it. */
    bool property;
    /* A finding the matrix made that is not fixed yet: the cell is run and shown under
     * "open" (with what it did), not counted as wrong or stranded. Keep this list empty. */
    const char *open;
} row;

/*                                              dfu kcan kusb kuart an bgapi checks */
static const row rows[] = {
    { .fault = "dfu-start-error", .expect = "P------", .cause_has = NULL,
      .why = "enter-bootloader clears dfuERROR" },
    { .fault = "dfu-transfer-size:1024", .expect = "P------", .cause_has = NULL,
      .why = "DfuSe uses the ROM's wTransferSize" },
    { .fault = "dfu-stall:3", .expect = "P------", .cause_has = NULL,
      .why = "a stalled request is retried" },
    { .fault = "dfu-stall:12", .expect = "P------", .cause_has = NULL,
      .why = "a stall mid-flash resumes from the ROM" },
    { .fault = "dfu-disconnect:4", .expect = "P------", .cause_has = NULL,
      .why = "the unit comes back on the next attempt" },
    { .fault = "dfu-disconnect:20", .expect = "P------", .cause_has = NULL,
      .why = "a disconnect mid-flash: the retry re-enters" },
    { .fault = "dfu-leave:stall", .expect = "P------", .cause_has = NULL,
      .why = "a refused leave falls back to a RESET pulse" },
    { .fault = "dfu-leave:vanish", .expect = "P------", .cause_has = NULL,
      .why = "ST ROMs jump before answering the leave" },
    { .fault = "dfu-leave:stall-dnload", .expect = "P------", .cause_has = NULL,
      .why = "a refused leave falls back to a RESET pulse" },
    { .fault = "corrupt-page:0x08004000", .expect = "FPPPF--", .cause_has = "0x0800",
      .why = "ROM DFU and AN3155 verify name the page; Katapult reads each block back and "
             "answers an error, and the resend rewrites it" },
    { .fault = "prog-error:0x08006000", .expect = "FFFFF--", .cause_has = "0x0800",
      .why = "errPROG on every attempt names the page" },
    { .fault = "slow-erase:20", .expect = "PPPPP--", .cause_has = NULL,
      .why = "slower erases only take longer" },
    { .fault = "power-loss:4096", .expect = "PPPPP--", .cause_has = NULL,
      .why = "the retry (or the ROM rung) rewrites the unit" },
    { .fault = "katapult-power-loss:5", .expect = "-PPP---", .cause_has = NULL,
      .why = "cut off mid-transfer: the ROM rung recovers" },
    { .fault = "katapult-drop-rx:3", .expect = "-PPP---", .cause_has = NULL,
      .why = "a lost frame is resent" },
    { .fault = "katapult-drop-tx:3", .expect = "-PPP---", .cause_has = NULL,
      .why = "a lost answer is resent" },
    { .fault = "katapult-corrupt-rx:3", .expect = "-PPP---", .cause_has = NULL,
      .why = "a damaged frame is NACKed and resent" },
    { .fault = "katapult-corrupt-tx:3", .expect = "-PPP---", .cause_has = NULL,
      .why = "a damaged answer is resent" },
    { .fault = "katapult-nack-storm:3", .expect = "-PPP---", .cause_has = NULL,
      .why = "the retry CONNECTs again" },
    { .fault = "katapult-nack-storm:1000000000", .expect = "-PPP---", .cause_has = NULL,
      .why = "refused through every retry: the ROM rung" },
    { .fault = "katapult-silent-complete", .expect = "-PPP---", .cause_has = NULL,
      .why = "a lost COMPLETE answer is not fatal" },
    { .fault = "katapult-mcu:stm32f072xb", .expect = "-FFF---", .cause_has = "stm32f072xb",
      .why = "another board: never flashed",
      .property = true },
    { .fault = "can-bus-off", .expect = "-R-----", .cause_has = NULL,
      .why = "the bus is down: the station refuses, no unit touched" },
    { .fault = "rdp", .expect = "FPPPF--", .cause_has = "0x0800",
      .why = "readout protection stops the ROM (DFU and AN3155 refuse; no unprotect in the "
             "jobs), not Katapult running from flash" },
    { .fault = "uart-nack:3", .expect = "----P--", .cause_has = NULL,
      .why = "a NACKed command is retried" },
    { .fault = "uart-silent:3", .expect = "----P--", .cause_has = NULL,
      .why = "an unanswered command is retried" },
    { .fault = "uart-noise-rx:40", .expect = "----P--", .cause_has = NULL,
      .why = "a damaged byte is retried" },
    { .fault = "uart-noise-tx:40", .expect = "----P--", .cause_has = NULL,
      .why = "a damaged answer is retried" },
    { .fault = "uart-late-start:50", .expect = "----P--", .cause_has = NULL,
      .why = "the second 0x7F syncs" },
    { .fault = "silent:1", .expect = "-----P-", .cause_has = NULL,
      .why = "the other reset is tried once a second" },
    { .fault = "drop-rx:5", .expect = "-----P-", .cause_has = NULL,
      .why = "the upload is retried after the packet timeout" },
    { .fault = "power-loss:8192", .expect = "-----F-", .cause_has = "chunk",
      .why = "the module's supply is gone (PROTOCOL.md 6.4): nothing answers; the rerun is "
             "after the power came back (DFU mode, the upload again)" },
    { .fault = "finish-checksum:1", .expect = "-----F-", .cause_has = NULL,
      .why = "the module rejected the image: final, stays in DFU "
                                            "mode; the rerun uploads again" },
    { .fault = "baud:57600", .expect = "-----F-", .cause_has = NULL,
      .why = "a module at another baud never answers" },
    { .fault = "klipper-sensor:stuck", .expect = "------F", .cause_has = NULL,
      .why = "stddev below its limit" },
    { .fault = "klipper-sensor:normal", .expect = "------P", .cause_has = NULL,
      .why = "a varying sensor passes" },
    { .fault = "klipper-temp:4000000000", .expect = "------P", .cause_has = NULL,
      .why = "the job sets no temperature limit" },
    { .fault = "klipper-drop:5", .expect = "------F", .cause_has = NULL, .why = "gaps above 0" },
    { .fault = "klipper-bad-crc:7", .expect = "------F",
      .why = "a damaged block from the unit is lost (Klipper resends only host-to-unit "
             "blocks): samples go missing, gaps above 0" },
    { .fault = "klipper-silent", .expect = "------F", .cause_has = NULL,
      .why = "identify gets no answer" },
};

static const char *job_of(path_id p)
{
    static const char *const jobs[NPATHS] = { "rom-dfu.yaml", "katapult-can.yaml",
                                              "katapult-usb.yaml", "katapult-uart.yaml",
                                              "an3155.yaml",
                                              "bgapi.yaml", "checks.yaml" };
    return jobs[p];
}

/* The steps a cause may name (the job's, the recovery rung's). */
static bool names_a_step(const char *cause)
{
    static const char *const steps[] = {
        "enter-bootloader", "flash", "verify", "start", "wait-for-app", "enter-katapult",
        "read-app", "katapult-", "uart-", "bgapi-", "identify", "alive", "sample", NULL,
    };
    for (size_t i = 0; steps[i]; i++)
        if (strstr(cause, steps[i]))
            return true;
    return false;
}

typedef struct tally {
    unsigned tried, clean_fail, recovered, wrong, stranded, hangs, na, refused, open;
} tally;

typedef struct running {
    pid_t pid;
    int fd;
    double t0;
    size_t row;
    path_id path;
    bool busy;
} running;

static char bad[8192];
static size_t nbad;
/* What each cell did, for the grid: "pass", "fail", "refd", "n/a", "skip"; "!" marks a
 * wrong verdict, report or cause, "s" a stranded unit, "HANG" a hang, "open" an open one. */
static char grid[64][NPATHS][8];

static void note_bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_bad(const char *fmt, ...)
{
    size_t l = strlen(bad);
    va_list ap;
    va_start(ap, fmt);
    if (l < sizeof bad - 2)
        vsnprintf(bad + l, sizeof bad - l, fmt, ap);
    va_end(ap);
    nbad++;
}

static void judge_cell(const row *rw, path_id p, const cell_result *r, tally *t);

/* Judge a finished cell (or a hang: r == NULL). */
static void judge(const row *rw, path_id p, const cell_result *r, tally *t)
{
    char want = rw->expect[p];
    char *g = grid[rw - rows][p];
    t->tried++;
    unsigned wrong0 = t->wrong, stranded0 = t->stranded;
    judge_cell(rw, p, r, t);
    if (rw->open)
        snprintf(g, sizeof grid[0][0], "open");
    else if (!r)
        snprintf(g, sizeof grid[0][0], "HANG");
    else
        snprintf(g, sizeof grid[0][0], "%.4s%s%s", r->first == O_REFUSED ? "refd"
                 : outcome_names[r->first], t->wrong > wrong0 ? "!" : "",
                 t->stranded > stranded0 ? "s" : "");
    (void)want;
}

static void judge_cell(const row *rw, path_id p, const cell_result *r, tally *t)
{
    char want = rw->expect[p];
    if (getenv("STATION_MATRIX_VERBOSE") && r)
        printf("  %-13s %-28s %-5s (%s) rerun %s%s%.200s\n", path_names[p], rw->fault,
               outcome_names[r->first], r->how, outcome_names[r->rerun],
               r->cause[0] ? ": " : "", r->cause);
    if (rw->open) {
        t->open++;
        printf("  open: %-13s %-28s %s; this run: %s%s%s, rerun %s\n", path_names[p], rw->fault,
               rw->open, r ? outcome_names[r->first] : "HANG", r && r->cause[0] ? ": " : "",
               r ? r->cause : "", r ? outcome_names[r->rerun] : "-");
        return;
    }
    if (!r) {
        t->hangs++;
        note_bad("  %-13s %-28s HANG (no result within %d s)\n", path_names[p], rw->fault,
                 CELL_DEADLINE_S);
        return;
    }
    outcome wo = want == 'P' ? O_PASS : want == 'F' ? O_FAIL : O_REFUSED;
    bool ok = true;
    if (r->first != wo) {
        t->wrong++;
        ok = false;
        note_bad("  %-13s %-28s WRONG VERDICT %s (want %s): %s\n", path_names[p], rw->fault,
                 outcome_names[r->first], outcome_names[wo], r->cause);
    } else if (wo == O_PASS) {
        t->recovered++;
    } else if (wo == O_FAIL) {
        t->clean_fail++;
    } else {
        t->refused++;
    }
    if (r->first == O_PASS || r->first == O_FAIL || r->first == O_INCOMPLETE) {
        if (!r->report_ok) {
            t->wrong++;
            note_bad("  %-13s %-28s REPORT does not validate: %s\n", path_names[p], rw->fault,
                     r->cause);
        }
    }
    if (ok && wo == O_FAIL) {
        if (!names_a_step(r->cause) || (rw->cause_has && !strstr(r->cause, rw->cause_has))) {
            t->wrong++;
            note_bad("  %-13s %-28s CAUSE does not name the step%s: %s\n", path_names[p],
                     rw->fault, rw->cause_has ? " and the address" : "", r->cause);
        }
    }
    if (!rw->property && (r->rerun != O_PASS || !r->rerun_report_ok)) {
        t->stranded++;
        note_bad("  %-13s %-28s STRANDED: left %s; the rerun: %s: %s\n", path_names[p], rw->fault,
                 r->state, outcome_names[r->rerun], r->rerun_cause);
    }
}

static void test_fault_matrix(void **state)
{
    (void)state;
    double t_start = now_s();
    tally t[NPATHS];
    memset(t, 0, sizeof t);
    bad[0] = '\0';
    nbad = 0;
    bool real = have_real_firmware();
    size_t nrows = sizeof rows / sizeof *rows;
    assert_true(nrows <= sizeof grid / sizeof *grid);
    memset(grid, 0, sizeof grid);
    unsigned jobs = 2;
    const char *pj = getenv("STATION_MATRIX_JOBS");
    if (pj && atoi(pj) > 0 && atoi(pj) <= 8)
        jobs = (unsigned)atoi(pj);
    running run[8];
    memset(run, 0, sizeof run);
    const char *only = getenv("STATION_MATRIX_ONLY"); /* a fault substring, for debugging */
    size_t r = 0;
    path_id p = 0;
    unsigned cellno = 0;
    for (;;) {
        /* Start cells while a runner is free. */
        for (unsigned k = 0; k < jobs; k++) {
            if (run[k].busy)
                continue;
            while (r < nrows) {
                const row *rw = &rows[r];
                char want = rw->expect[p];
                size_t cr = r;
                path_id cp = p;
                if (++p == NPATHS) {
                    p = 0;
                    r++;
                }
                if (want == '-')
                    snprintf(grid[cr][cp], sizeof grid[0][0], "n/a");
                if (want == '-' || (only && !strstr(rw->fault, only)))
                    continue;
                if (!job_of(cp) || (cp == P_CHECK && !real)) {
                    snprintf(grid[cr][cp], sizeof grid[0][0], "skip");
                    t[cp].na++;
                    continue;
                }
                char dir[160];
                snprintf(dir, sizeof dir, "%s/cell%03u", base, cellno++);
                run[k].pid = start_cell(dir, job_of(cp), cp, rw->fault, &run[k].fd);
                run[k].t0 = now_s();
                run[k].row = cr;
                run[k].path = cp;
                run[k].busy = true;
                break;
            }
        }
        bool any = false;
        struct pollfd pf[8];
        for (unsigned k = 0; k < jobs; k++) {
            pf[k].fd = run[k].busy ? run[k].fd : -1;
            pf[k].events = POLLIN;
            any |= run[k].busy;
        }
        if (!any)
            break;
        (void)poll(pf, jobs, 200);
        for (unsigned k = 0; k < jobs; k++) {
            if (!run[k].busy)
                continue;
            bool hung = now_s() - run[k].t0 > CELL_DEADLINE_S;
            if (!(pf[k].revents & (POLLIN | POLLHUP)) && !hung)
                continue;
            cell_result res;
            memset(&res, 0, sizeof res);
            ssize_t n = hung ? 0 : read(run[k].fd, &res, sizeof res);
            if (hung)
                kill(run[k].pid, SIGKILL);
            int st;
            waitpid(run[k].pid, &st, 0);
            close(run[k].fd);
            run[k].busy = false;
            if (!hung && n != (ssize_t)sizeof res) {
                res.first = res.rerun = O_ERROR;
                snprintf(res.cause, sizeof res.cause, "the cell's process died (status 0x%x)", st);
            }
            judge(&rows[run[k].row], run[k].path, hung ? NULL : &res, &t[run[k].path]);
        }
    }
    /* The table. */
    printf("\nfault matrix: %zu fault rows x %d paths\n", nrows, NPATHS);
    printf("%-14s %6s %6s %9s %7s %6s %8s %6s %5s %5s\n", "path", "tried", "clean",
           "recovered", "refused", "wrong", "stranded", "hangs", "open", "n/a");
    tally sum;
    memset(&sum, 0, sizeof sum);
    for (int i = 0; i < NPATHS; i++) {
        unsigned na = 0;
        for (size_t k = 0; k < nrows; k++)
            na += rows[k].expect[i] == '-';
        printf("%-14s %6u %6u %9u %7u %6u %8u %6u %5u %5u%s\n", path_names[i], t[i].tried,
               t[i].clean_fail, t[i].recovered, t[i].refused, t[i].wrong, t[i].stranded,
               t[i].hangs, t[i].open, na + t[i].na,
               i == P_CHECK && !real ? "  (../shared/firmware absent)" : "");
        sum.tried += t[i].tried, sum.clean_fail += t[i].clean_fail;
        sum.recovered += t[i].recovered, sum.refused += t[i].refused, sum.wrong += t[i].wrong;
        sum.stranded += t[i].stranded, sum.hangs += t[i].hangs, sum.open += t[i].open;
    }
    printf("%-14s %6u %6u %9u %7u %6u %8u %6u %5u\n", "total", sum.tried, sum.clean_fail,
           sum.recovered, sum.refused, sum.wrong, sum.stranded, sum.hangs, sum.open);
    printf("\n%-30s", "fault");
    for (int i = 0; i < NPATHS; i++)
        printf(" %-7.7s", path_names[i] + (strncmp(path_names[i], "katapult-", 9) ? 0 : 9));
    printf("\n");
    for (size_t k = 0; k < nrows; k++) {
        printf("%-30s", rows[k].fault);
        for (int i = 0; i < NPATHS; i++)
            printf(" %-7s", grid[k][i][0] ? grid[k][i] : "-");
        printf("\n");
    }
    printf("wall time %.1f s\n", now_s() - t_start);
    if (nbad) {
        printf("%zu findings:\n%s", nbad, bad);
        fail_msg("%zu findings (above)", nbad);
    }
}

/* ---- Katapult refused through every retry (issue 8 item 5) ------------------------------- */

static void nack_storm(path_id pid, const char *job_file, outcome want, const char *recovery,
                       bool no_pins)
{
    char dir[160];
    snprintf(dir, sizeof dir, "%s/storm-%s-%s%s", base, path_names[pid], job_file,
             no_pins ? "-no-pins" : "");
    int fd;
    cell_no_pins = no_pins; /* the child's copy */
    pid_t child = start_cell(dir, job_file, pid, "katapult-nack-storm:1000000000", &fd);
    cell_no_pins = false;
    struct pollfd pf = { .fd = fd, .events = POLLIN };
    int n = poll(&pf, 1, CELL_DEADLINE_S * 1000);
    cell_result r;
    memset(&r, 0, sizeof r);
    ssize_t got = n > 0 ? read(fd, &r, sizeof r) : 0;
    if (n <= 0)
        kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    close(fd);
    if (got != (ssize_t)sizeof r)
        fail_msg("%s: no result (hang or crash)", job_file);
    if (r.first != want)
        fail_msg("%s: verdict %s, want %s: %s", job_file, outcome_names[r.first],
                 outcome_names[want], r.cause);
    assert_true(r.report_ok);
    if (want == O_FAIL) {
        /* The cause names the first real error: the NACK, the step and where the unit is. */
        if (!strstr(r.cause, "enter-katapult") || !strstr(r.cause, "NACK") ||
            !strstr(r.cause, recovery) || strstr(r.cause, "did not answer as Katapult"))
            fail_msg("%s: cause: %s", job_file, r.cause);
    }
    /* A unit no pin reaches stays in Katapult: the report says how to reach it again. */
    if (no_pins && !strstr(r.note, "--uuid "))
        fail_msg("%s: no way back named in the report (note: %s)", job_file, r.note);
    if (r.rerun != O_PASS || !r.rerun_report_ok)
        fail_msg("%s: stranded: the unit was left %s; the rerun: %s: %s", job_file, r.state,
                 outcome_names[r.rerun], r.rerun_cause);
}

/* Over CAN, with the ROM rung in the job: the rung takes the unit out of Katapult. */
static void test_can_nack_storm_ladder(void **state)
{
    (void)state;
    nack_storm(P_KCAN, "katapult-can.yaml", O_PASS, "", false);
}

/* Over CAN, no ladder: the unit fails naming the NACK and its node; the abandon's RESET
 * pulse lets Katapult start the application, so a rerun finds it. */
static void test_can_nack_storm_no_ladder(void **state)
{
    (void)state;
    nack_storm(P_KCAN, "katapult-can-no-ladder.yaml", O_FAIL, "node 129 (CAN id 0x202)", false);
}

/* Over CAN, a unit in no slot (found on the bus): nothing can reset it, so it stays in
 * Katapult holding its node id, deaf to QUERY; the rerun reaches it by setting that node id
 * for its UUID directly (Katapult adopts it whether it holds one or not). */
static void test_can_nack_storm_no_pins(void **state)
{
    (void)state;
    nack_storm(P_KCAN, "katapult-can-no-ladder.yaml", O_FAIL, "node 129 (CAN id 0x202)", true);
}

static void test_usb_nack_storm_ladder(void **state)
{
    (void)state;
    nack_storm(P_KUSB, "katapult-usb.yaml", O_PASS, "", false);
}

static void test_usb_nack_storm_no_ladder(void **state)
{
    (void)state;
    nack_storm(P_KUSB, "katapult-usb-no-ladder.yaml", O_FAIL, "port vusb-1", false);
}

static void test_uart_nack_storm_ladder(void **state)
{
    (void)state;
    nack_storm(P_KUART, "katapult-uart.yaml", O_PASS, "", false);
}

static void test_uart_nack_storm_no_ladder(void **state)
{
    (void)state;
    nack_storm(P_KUART, "katapult-uart-no-ladder.yaml", O_FAIL, "/dev/pts/", false);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (!mkdtemp(st_test_tmpl(base, sizeof base, "st-matrix")))
        return -1;
    write_jobs();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    if (getenv("STATION_MATRIX_KEEP"))
        return 0; /* keep the cells' fixtures and reports to look at */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest storms[] = {
        cmocka_unit_test(test_can_nack_storm_ladder),
        cmocka_unit_test(test_can_nack_storm_no_ladder),
        cmocka_unit_test(test_can_nack_storm_no_pins),
        cmocka_unit_test(test_usb_nack_storm_ladder),
        cmocka_unit_test(test_usb_nack_storm_no_ladder),
        cmocka_unit_test(test_uart_nack_storm_ladder),
        cmocka_unit_test(test_uart_nack_storm_no_ladder),
    };
    const struct CMUnitTest matrix[] = { cmocka_unit_test(test_fault_matrix) };
    if (argc > 1 && strcmp(argv[1], "--matrix") == 0)
        return cmocka_run_group_tests(matrix, group_setup, group_teardown);
    return cmocka_run_group_tests(storms, group_setup, group_teardown);
}
