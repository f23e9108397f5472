/* Benchmark of production mode: `station produce` on virtual lines of 4 and 8 slots whose
 * units use the `datasheet` timing profile, each slot's simulated operator bringing units
 * back to back: units per hour against the device limit (N slots x 3600 s / the DFU
 * model's flash+verify limit per unit, st_dfu_model_device_limit), the station's CPU time
 * and peak RSS (wait4), and where each unit's time beyond the limit went, read back from
 * the reports: the fixture's pulses and settle time and DFU enumeration (enter-bootloader),
 * flash and verify beyond the model's time, start, the report upkeep between steps (run
 * time not in any step), and the hand-over between units (one run's end to the next run's
 * start on the slot: the LEDs, the operator taking the unit out and putting the next in,
 * the station seeing both), plus the process's start and end.
 * (`station report summary` over 100,000 reports is bench_summary.)
 * Not a ctest test; `--check` runs 2 slots x 2 units and checks the results (exit codes,
 * report counts, that the breakdown adds up), never the timing. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "protocols/dfuse/dfu_model.h"
#include "reports/report.h"
#include "protocols/sim/flash.h"
#include "protocols/sim/synth.h"
#include "station/core/clock.h"
#include "station/core/image.h"
#include "station/core/mcu.h"
#include "station/core/testutil.h"

/* What the station's run used, in the units this benchmark prints. */
typedef struct child {
    int exit_code;
    double wall_s, cpu_s;
    long maxrss_kib;
} child;

/* Run argv with stdout+stderr to log (st_test_spawn). */
static int spawn(char *const argv[], const char *log, child *c)
{
    st_test_child t;
    if (st_test_spawn(argv[0], argv, log, NULL, &t))
        return -1;
    *c = (child){ .exit_code = t.exit_code, .wall_s = (double)t.wall_us / 1e6,
                  .cpu_s = t.user_s + t.sys_s, .maxrss_kib = t.maxrss_kib };
    return 0;
}

static unsigned count_files(const char *dir)
{
    DIR *d = opendir(dir);
    unsigned n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strstr(e->d_name, ".yaml") != NULL;
    if (d)
        closedir(d);
    return n;
}

static void show_log(const char *log)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "tail -20 '%s' >&2", log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
}

/* The fixture's timing (write_line): the RESET pulse and the ROM's settle time after it. */
#define FIXTURE_PULSE_MS 20
#define FIXTURE_SETTLE_MS 50

/* A line of n datasheet-timed slots, units each, operators without pauses. */
static int write_line(const char *path, unsigned n, unsigned units)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "name: bench-line-%u\ngpio: { backend: virtual }\n"
               "timing: { reset_pulse_ms: %d, boot_settle_ms: %d }\nslots:\n", n, FIXTURE_PULSE_MS,
            FIXTURE_SETTLE_MS);
    for (unsigned i = 1; i <= n; i++)
        fprintf(f, "  - id: %u\n"
                   "    lines: { boot0: B%u, reset: { name: R%u, active_low: true }, present: P%u,\n"
                   "             led_pass: LP%u, led_fail: LF%u, led_busy: LB%u }\n"
                   "    usb_port: vusb-%u\n"
                   "    unit: { timing: datasheet, serial: \"BE4C000000%02X\",\n"
                   "            operator: { units: %u } }\n",
                i, i, i, i, i, i, i, i, i, units);
    return fclose(f);
}

static int write_job(const char *path, const char *image, const char *sha)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "name: bench-produce\ntarget: stm32g431xx\n"
               "images:\n  combined: { path: %s, load_addr: 0x08000000, sha256: %s }\n"
               "steps:\n  - enter-bootloader\n  - flash: { image: combined }\n"
               "  - verify: { image: combined }\n  - start: { image: combined }\n",
            image, sha);
    return fclose(f);
}

/* A report time (2026-12-01T10:00:00.123Z) in ms since the epoch, or -1. */
static double iso_ms(const char *t)
{
    struct tm tm = { 0 };
    unsigned ms = 0;
    if (!t || sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%3uZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (double)timegm(&tm) * 1000.0 + ms;
}

typedef struct run_times {
    int slot;
    double start, end, dur;        /* ms */
    double enter, flash, verify, start_step, other_steps;
} run_times;

static int cmp_run(const void *a, const void *b)
{
    const run_times *x = a, *y = b;
    if (x->slot != y->slot)
        return x->slot < y->slot ? -1 : 1;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Where the line's wall time went, per unit, from its reports: printed, and checked to add
 * up (the parts of each slot's time sum to its wall time within the process's start and
 * end). */
static int breakdown(const char *dir, unsigned slots, unsigned total, double wall_s,
                     double limit_s, bool check)
{
    run_times *r = calloc(total, sizeof *r);
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;
    int rc = 0;
    while (r && d && (e = readdir(d)) && !rc) {
        if (!strstr(e->d_name, ".yaml") || n == total)
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        st_rnode *doc = NULL;
        st_err err;
        if (st_report_load(p, &doc, &err) || st_report_validate(doc, &err)) {
            fprintf(stderr, "bench_produce: %s\n", err.msg);
            rc = -1;
            st_report_free(doc);
            break;
        }
        run_times *t = &r[n++];
        long long slot = 0;
        st_rget_int(doc, "slot.id", &slot);
        t->slot = (int)slot;
        t->start = iso_ms(st_rget_str(doc, "run.started"));
        t->end = iso_ms(st_rget_str(doc, "run.finished"));
        st_rget_num(doc, "run.duration_ms", &t->dur);
        const st_rnode *steps = st_rget(doc, "steps");
        for (size_t i = 0; i < st_rnode_len(steps); i++) {
            const st_rnode *st = st_rnode_child(steps, i);
            const char *name = st_rget_str(st, "name");
            double ms = 0;
            st_rget_num(st, "duration_ms", &ms);
            double *to = !strcmp(name, "enter-bootloader") ? &t->enter
                         : !strcmp(name, "flash")          ? &t->flash
                         : !strcmp(name, "verify")         ? &t->verify
                         : !strcmp(name, "start")          ? &t->start_step
                                                           : &t->other_steps;
            *to += ms;
        }
        if (t->start < 0 || t->end < 0)
            rc = -1;
        st_report_free(doc);
    }
    if (d)
        closedir(d);
    if (!r || rc || n != total) {
        free(r);
        fprintf(stderr, "bench_produce: cannot read the %u reports for the breakdown\n", total);
        return -1;
    }
    qsort(r, n, sizeof *r, cmp_run);
    double enter = 0, fv = 0, start = 0, upkeep = 0, handover = 0, first = r[0].start,
           last = r[0].end;
    unsigned gaps = 0;
    for (size_t i = 0; i < n; i++) {
        enter += r[i].enter;
        fv += r[i].flash + r[i].verify;
        start += r[i].start_step + r[i].other_steps;
        upkeep += r[i].dur - (r[i].enter + r[i].flash + r[i].verify + r[i].start_step +
                              r[i].other_steps);
        if (i + 1 < n && r[i + 1].slot == r[i].slot) {
            handover += r[i + 1].start - r[i].end;
            gaps++;
        }
        if (r[i].start < first)
            first = r[i].start;
        if (r[i].end > last)
            last = r[i].end;
    }
    /* Per unit per slot, ms: a slot's units run one after the other, so these add up to
     * the slot's share of the wall time. */
    double per = 1.0 / total, lim = limit_s * 1000.0;
    double unit_ms = wall_s * 1000.0 * slots / total;
    double ends = wall_s * 1000.0 - (last - first); /* process start and end, per line */
    double parts = (enter + fv + start + upkeep + handover) * per + ends * slots * per;
    if (check) {
        /* The parts are the wall time, cut differently: within 5% plus 20 ms per unit
         * (report times have millisecond resolution, the wall time is the parent's). */
        if (parts < unit_ms * 0.95 - 20 || parts > unit_ms * 1.05 + 20) {
            fprintf(stderr, "bench_produce: breakdown %.1f ms/unit, wall %.1f ms/unit\n", parts,
                    unit_ms);
            rc = -1;
        }
    } else {
        /* The fixture's BOOT0/RESET pulse and the ROM's settle time are the jig's, as the
         * fixture file sets them (write_line): time a unit needs whatever the station. */
        double jig = FIXTURE_PULSE_MS + FIXTURE_SETTLE_MS, once = ends * slots * per;
        double station_ms = unit_ms - lim - jig - once;
        printf("  per unit per slot: %.1f ms = device limit %.1f (flash+verify as modelled) + "
               "%.1f over it:\n", unit_ms, lim, unit_ms - lim);
        printf("    enter-bootloader %.1f ms (of it the fixture's reset pulse + boot settle "
               "%.0f ms); flash+verify beyond the model %.1f ms; start %.1f ms;\n",
               enter * per, jig, fv * per - lim, start * per);
        printf("    report upkeep between steps %.1f ms; hand-over between units %.1f ms "
               "per unit (%.1f per gap, %u gaps); process start+end %.1f ms (%.1f per unit)\n",
               upkeep * per, handover * per, gaps ? handover / gaps : 0.0, gaps, ends, once);
        printf("  station overhead %.1f ms per unit (%.1f%% of the limit): steady-state "
               "ratio %.3f to the limit, %.3f to the limit + the fixture's %.0f ms\n",
               station_ms, 100.0 * station_ms / lim, (unit_ms - once) / lim,
               (unit_ms - once) / (lim + jig), jig);
    }
    free(r);
    return rc;
}

static int line_case(const char *station, const char *tmp, const char *job, unsigned slots,
                     unsigned units, double limit_s, bool check)
{
    char fx[256], reports[256], log[256];
    snprintf(fx, sizeof fx, "%s/line%u.yaml", tmp, slots);
    snprintf(reports, sizeof reports, "%s/reports%u", tmp, slots);
    snprintf(log, sizeof log, "%s/produce%u.log", tmp, slots);
    if (write_line(fx, slots, units))
        return -1;
    char *argv[] = { (char *)station, "--plain", "produce", (char *)job, "-f", fx, "--reports",
                     reports, NULL };
    child c = { 0 };
    if (spawn(argv, log, &c) || c.exit_code != 0) {
        fprintf(stderr, "bench_produce: %u slots: station produce exited %d\n", slots, c.exit_code);
        show_log(log);
        return -1;
    }
    unsigned total = slots * units, got = count_files(reports);
    if (got != total) {
        fprintf(stderr, "bench_produce: %u slots: %u reports, want %u\n", slots, got, total);
        return -1;
    }
    if (breakdown(reports, slots, total, c.wall_s, limit_s, check))
        return -1;
    if (check)
        return 0;
    double uph = total * 3600.0 / c.wall_s, limit_uph = slots * 3600.0 / limit_s;
    printf("produce %u slots: %u units in %.2f s: %.0f units/h; device limit %.0f units/h "
           "(%.3f s/unit/slot): ratio %.2f; station CPU %.1f ms/unit, peak RSS %ld KiB\n",
           slots, total, c.wall_s, uph, limit_uph, limit_s, limit_uph / uph,
           1000.0 * c.cpu_s / total, c.maxrss_kib);
    return 0;
}

int main(int argc, char **argv)
{
    bool check = argc > 1 && strcmp(argv[1], "--check") == 0;
    const char *station = STATION_BIN;
    char tmp[64];
    st_test_tmpl(tmp, sizeof tmp, "bench-produce");
    if (!mkdtemp(tmp))
        return 1;
    /* The demo's synthetic image: same size as the real USB combined image. */
    const st_mcu *mcu = st_mcu_find("stm32g431xx");
    uint8_t *img = NULL;
    st_err e;
    char image[256], job[256], sha[65];
    snprintf(image, sizeof image, "%s/img.bin", tmp);
    snprintf(job, sizeof job, "%s/job.yaml", tmp);
    if (st_synth_combined_seeded(mcu, ST_SYNTH_DEFAULT_SIZE, 0, &img, &e))
        return 1;
    FILE *f = fopen(image, "wb");
    if (!f || fwrite(img, 1, ST_SYNTH_DEFAULT_SIZE, f) != ST_SYNTH_DEFAULT_SIZE || fclose(f))
        return 1;
    st_image *im = NULL;
    if (st_image_from_memory("bench", img, ST_SYNTH_DEFAULT_SIZE, mcu->flash_start, &im, &e))
        return 1;
    free(img);
    snprintf(sha, sizeof sha, "%s", im->sha256_hex);
    if (write_job(job, image, sha))
        return 1;
    st_flash *fl = st_flash_new(mcu, ST_TIMING_DATASHEET);
    st_dfu_model *m = fl ? st_dfu_model_new(fl, NULL) : NULL;
    st_dfu_limit lim;
    if (!m || st_dfu_model_device_limit(m, im, false, true, &lim))
        return 1;
    st_dfu_model_free(m);
    st_flash_free(fl);
    st_image_free(im);
    double limit_s = (double)lim.total_us / 1e6;
    int rc = 0;
    if (!check)
        printf("bench_produce: synthetic combined image, %u bytes; flash+verify device limit "
               "%.3f s per unit\n", ST_SYNTH_DEFAULT_SIZE, limit_s);
    unsigned units = check ? 2 : 6;
    if (line_case(station, tmp, job, check ? 2 : 4, units, limit_s, check) ||
        (!check && line_case(station, tmp, job, 8, units, limit_s, check)))
        rc = 1;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        rc = 1;
    if (check && !rc)
        printf("bench_produce --check: ok\n");
    return rc;
}
