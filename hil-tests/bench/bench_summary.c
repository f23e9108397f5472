/* Benchmark of `station report summary DIR` over 100,000 varied reports (issue 13: "reads
 * 100,000 reports in under 10 s"): wall time, reports/s, CPU time and peak RSS of the
 * station process, against the 10 s budget.
 *
 * The reports have the shapes real runs write (reports/SCHEMA.md): a USB DFU job (enter,
 * flash, verify, start, wait-for-app), a Katapult-over-CAN job and a Klipper check job
 * with measurements (alive, sample); about one run in twelve retries a step (attempt_log),
 * one in fifteen fails with a cause and device errors, one in two hundred is incomplete,
 * and one unit in twenty is run again later. A few files are broken on purpose (not YAML,
 * a field of the wrong type): the summary must name each one and count only the others.
 *
 * They go into a fresh directory under $TMPDIR (default /tmp), removed at the end.
 * `--check` writes 400 reports and checks the counts the summary prints and that each
 * broken file is named with a reason, never the timing (it runs in CI as a ctest).
 *   bench_summary [--check] [--reports N] [--keep]  */
#include <dirent.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "station/core/clock.h"
#include "station/core/testutil.h"

/* A small deterministic generator: the same reports on every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* t_ms since 2026-12-01T00:00:00.000Z as the reports write times. */
static void iso(char *out, size_t cap, uint64_t t_ms)
{
    time_t s = (time_t)(1764547200 + t_ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t l = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + l, cap - l, ".%03uZ", (unsigned)(t_ms % 1000));
}

typedef struct step_shape {
    const char *name;
    unsigned ms;           /* typical duration */
    const char *entry;     /* entry_method, or NULL */
    const char *fail_error;/* what a failure says */
    int kind;              /* 0 plain, 1 flash, 2 verify, 3 alive, 4 sample */
} step_shape;

static const step_shape dfu_steps[] = {
    { "enter-bootloader", 200, "boot0+reset",
      "enter-bootloader: no DFU device 0483:df11 on port 1-1.2 within 1000 ms", 0 },
    { "flash", 1870, NULL, "flash: dfu: write 0x08004000: device reported errPROG", 1 },
    { "verify", 300, NULL, "verify: dfu: upload 0x08002000: 2048 bytes differ from the image", 2 },
    { "start", 52, NULL, "start: dfu: leave: unit did not detach", 0 },
    { "wait-for-app", 305, NULL, "wait-for-app: no USB device 1d50:614e within 3000 ms", 0 },
    { NULL, 0, NULL, NULL, 0 },
};
static const step_shape kat_steps[] = {
    { "enter-katapult", 410, "canbus:reboot",
      "enter-katapult: katapult: CONNECT: no answer after 3 tries", 0 },
    { "katapult-flash", 6300, NULL,
      "katapult-flash: katapult: SEND_BLOCK 0x08002A00 (block 40 of 426): no answer after 3 tries", 1 },
    { "katapult-verify", 120, NULL, "katapult-verify: katapult: crc 0x1c2a3b4d, image 0x5e6f7081", 2 },
    { "katapult-complete", 35, NULL, "katapult-complete: katapult: COMPLETE: NACK", 0 },
    { NULL, 0, NULL, NULL, 0 },
};
static const step_shape klip_steps[] = {
    { "identify", 90, NULL, "identify: klipper: no identify answer within 2000 ms", 0 },
    { "alive", 2010, NULL, "alive: measurement clock_rate_ratio = 1.0412 is above the high limit 1.02", 3 },
    { "sample", 1510, NULL,
      "sample: measurement data_stddev = 0 counts is below the low limit 5 counts", 4 },
    { NULL, 0, NULL, NULL, 0 },
};

typedef struct job_shape {
    const char *name, *file;
    const step_shape *steps;
} job_shape;

static const job_shape jobs[] = {
    { "cartographer-v4-usb-provision", "cartographer-v4-usb.yaml", dfu_steps },
    { "cartographer-v4-can-update", "cartographer-v4-can.yaml", kat_steps },
    { "cartographer-v4-check", "cartographer-v4-check.yaml", klip_steps },
};

static void measurement(FILE *o, const char *name, double v, const char *unit, double lo,
                        double hi, bool fail)
{
    fprintf(o, "  - name: %s\n    value: %.6g\n    unit: '%s'\n    low: %.6g\n    high: %.6g\n"
               "    outcome: %s\n", name, v, unit, lo, hi, fail ? "fail" : "pass");
}

/* One report: run i of unit `unit`, starting at t_ms. */
static int write_report(const char *dir, unsigned i, unsigned unit, uint64_t t_ms)
{
    const job_shape *j = &jobs[rnd(10) < 6 ? 0 : rnd(2) + 1];
    unsigned slot = 1 + rnd(4);
    bool incomplete = rnd(200) == 0;
    int fail_at = -1;
    unsigned nsteps = 0;
    while (j->steps[nsteps].name)
        nsteps++;
    if (!incomplete && rnd(15) == 0)
        fail_at = (int)rnd(nsteps);
    int stop_at = incomplete ? (int)rnd(nsteps) : fail_at;
    char serial[32], started[40], finished[40], p[1024];
    snprintf(serial, sizeof serial, "%04X%08X", 0x208A + unit % 7, unit);
    iso(started, sizeof started, t_ms);
    snprintf(p, sizeof p, "%s/%s_slot%u_r%07u.yaml", dir, serial, slot, i);
    FILE *o = fopen(p, "w");
    if (!o)
        return -1;
    fprintf(o, "schema: 1\nstation:\n  name: line-2-station-a\n  version: 0.1.0\n"
               "  host: pi-line2-a\nrun:\n  id: %08x-9b1d-4e57-a0c4-%012x\n  started: %s\n",
            i, unit, started);
    /* The steps first into a buffer: the run's times depend on them. */
    char *sbuf = NULL;
    size_t slen = 0;
    FILE *s = open_memstream(&sbuf, &slen);
    if (!s) {
        fclose(o);
        return -1;
    }
    uint64_t t = t_ms + 7;
    const char *cause = NULL;
    const char *device_error = NULL;
    for (unsigned k = 0; k < nsteps; k++) {
        const step_shape *st = &j->steps[k];
        char when[40];
        iso(when, sizeof when, t);
        if (stop_at >= 0 && (int)k > stop_at) {
            fprintf(s, "- name: %s\n  started: %s\n  duration_ms: 0.000\n  outcome: skipped\n"
                       "  attempts: 0\n", st->name, when);
            continue;
        }
        bool fails = (int)k == fail_at, inc = incomplete && (int)k == stop_at;
        unsigned attempts = (!inc && rnd(12) == 0) ? 2 + rnd(2) : 1;
        if (fails)
            attempts = 3;
        double total = 0;
        char *alog = NULL;
        size_t alen = 0;
        FILE *a = open_memstream(&alog, &alen);
        if (!a) {
            fclose(s);
            free(sbuf);
            fclose(o);
            return -1;
        }
        uint64_t at = t;
        for (unsigned n = 1; n <= attempts; n++) {
            bool last = n == attempts;
            double d = st->ms * (0.8 + rnd(400) / 1000.0) + rnd(1000) / 1000.0;
            if (!last || fails)
                d = st->ms * 2 + rnd(500);
            char aw[40];
            iso(aw, sizeof aw, at);
            fprintf(a, "  - 'n': %u\n    started: %s\n    duration_ms: %.3f\n    outcome: %s\n",
                    n, aw, d, last && !fails ? "pass" : "fail");
            if (!last || fails)
                fprintf(a, "    error: '%s'\n", st->fail_error);
            total += d;
            at += (uint64_t)d + 3;
        }
        fclose(a);
        fprintf(s, "- name: %s\n  started: %s\n", st->name, when);
        fprintf(s, "  duration_ms: %.3f\n", total);
        fprintf(s, "  outcome: %s\n  attempts: %u\n", inc ? "incomplete" : fails ? "fail" : "pass",
                attempts);
        if (attempts > 1)
            fprintf(s, "  attempt_log:\n%s", alog);
        free(alog);
        if (st->entry)
            fprintf(s, "  entry_method: %s\n", (fails || rnd(30) == 0) ? "gpio:boot0+reset" : st->entry);
        if (st->kind == 1)
            fprintf(s, "  bytes: 35984\n  pages_erased: 18\n  pages_written: %u\n"
                       "  pages_skipped: %u\n  blocks: 18\n  address: 0x08000000\n",
                    18 - (k % 3), k % 3);
        else if (st->kind == 2)
            fprintf(s, "  bytes: 35984\n  sha256: fec0c7c54d10b71da32f06b658c5c28ec616701f084334874"
                       "ffc1c3291a9936c\n  address: 0x08000000\n");
        else if (st->kind == 3) {
            fprintf(s, "  measurements:\n");
            measurement(s, "clock_rate_ratio", fails ? 1.0412 : 1.0 + rnd(100) / 10000.0, "",
                        0.98, 1.02, fails);
            measurement(s, "uptime_advance", 2.0 + rnd(10) / 100.0, "s", 1.0, 1e9, false);
        } else if (st->kind == 4) {
            fprintf(s, "  measurements:\n");
            static const char *f[] = { "min", "max", "mean", "stddev", "gaps" };
            for (unsigned m = 0; m < 5; m++) {
                char name[32];
                snprintf(name, sizeof name, "data_%s", f[m]);
                bool mf = fails && m == 3;
                measurement(s, name, mf ? 0 : 100 + rnd(50), m == 4 ? "" : "counts", 0, 1e6, mf);
            }
        }
        if (fails) {
            fprintf(s, "  error: '%s'\n", st->fail_error);
            cause = st->fail_error;
            if (st->kind == 1)
                device_error = "errPROG at 0x08004000";
        }
        if (inc)
            cause = "the run stopped (station killed) in this step";
        t = at + 2;
    }
    fclose(s);
    iso(finished, sizeof finished, t);
    if (!incomplete)
        fprintf(o, "  finished: %s\n  duration_ms: %.3f\n", finished, (double)(t - t_ms));
    fprintf(o, "operator: %s\nfixture:\n  name: cartographer-jig-4slot\n"
               "  path: /etc/station/fixtures/cartographer-jig-4slot.yaml\n  backend: libgpiod\n"
               "slot:\n  id: %u\n  name: slot-%u\njob:\n  name: %s\n  path: /etc/station/jobs/%s\n"
               "  sha256: 3b1d7f0c55a2e6f4a8c0d9e2b7a4f1c3d5e6f708192a3b4c5d6e7f8091a2b3c4\n"
               "unit:\n  identity: '%s'\n  port_path: 1-1.%u\n  dfu_serial: '%s'\n"
               "  chip_id: 0x468\n  mcu: stm32g431xx\nimages:\n- role: combined\n"
               "  path: /etc/station/firmware/Katapult_plus_CartographerV4_6.0.0__USB_lite.bin\n"
               "  size: 35984\n  load_addr: 0x08000000\n"
               "  sha256: fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c\n"
               "  sha1_padded: 8BC064ADBA1AD31BA00498A011807CBC069CE299\nsteps:\n",
            rnd(3) ? "maria" : "jun", slot, slot, j->name, j->file, serial, slot, serial);
    fwrite(sbuf, 1, slen, o);
    free(sbuf);
    if (device_error)
        fprintf(o, "device_errors:\n- %s\n", device_error);
    else
        fprintf(o, "device_errors: []\n");
    if (incomplete)
        fprintf(o, "verdict: incomplete\ncause: 'slot %u (unit %s): %s'\n", slot, serial, cause);
    else if (fail_at >= 0)
        fprintf(o, "verdict: fail\ncause: 'slot %u (unit %s): %s'\n", slot, serial, cause);
    else
        fprintf(o, "verdict: pass\n");
    return fclose(o) ? -1 : 0;
}

/* Broken files: the summary must name each, with a reason, and not count it. */
static const char *const broken[][2] = {
    { "broken_not_yaml.yaml", "schema: 1\nsteps: [unclosed\n" },
    { "broken_verdict.yaml", NULL }, /* a good report whose verdict is 'maybe' */
};

typedef struct child {
    int exit_code;
    double wall_s, cpu_s, user_s, sys_s;
    long maxrss_kib;
} child;

static int spawn(char *const argv[], const char *out, const char *errlog, child *c)
{
    st_test_child t;
    if (st_test_spawn(argv[0], argv, out, errlog, &t))
        return -1;
    *c = (child){ .exit_code = t.exit_code, .wall_s = (double)t.wall_us / 1e6,
                  .user_s = t.user_s, .sys_s = t.sys_s, .cpu_s = t.user_s + t.sys_s,
                  .maxrss_kib = t.maxrss_kib };
    return 0;
}

static bool file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[2048];
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    if (f)
        fclose(f);
    return found;
}

static long yaml_count(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    char line[512];
    long v = -1;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    if (f)
        fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    bool check = false, keep = false;
    unsigned n = 100000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--check") == 0)
            check = true;
        else if (strcmp(argv[i], "--keep") == 0)
            keep = true;
        else if (strcmp(argv[i], "--reports") == 0 && i + 1 < argc)
            n = (unsigned)strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: bench_summary [--check] [--reports N] [--keep]\n");
            return 2;
        }
    }
    if (check)
        n = 400;
    char tmp[512];
    if (!mkdtemp(st_test_tmpl(tmp, sizeof tmp, "bench-summary"))) {
        perror("bench_summary: mkdtemp");
        return 1;
    }
    char dir[600], out[600], errlog[600];
    snprintf(dir, sizeof dir, "%s/reports", tmp);
    snprintf(out, sizeof out, "%s/summary.yaml", tmp);
    snprintf(errlog, sizeof errlog, "%s/summary.err", tmp);
    mkdir(dir, 0755);
    uint64_t t0 = st_now_us(), t = 0;
    unsigned units = n * 19 / 20 + 1;
    int rc = 0;
    for (unsigned i = 0; i < n && !rc; i++) {
        /* Mostly new units; one run in twenty is a unit seen before (a rerun). */
        unsigned unit = rnd(20) == 0 && i ? rnd(i < units ? i : units) : i % units;
        rc = write_report(dir, i, unit, t);
        t += 4000 + rnd(30000);
    }
    /* The broken files: one not YAML, one whose verdict is not a verdict. */
    for (size_t b = 0; b < sizeof broken / sizeof broken[0] && !rc; b++) {
        char p[700];
        snprintf(p, sizeof p, "%s/%s", dir, broken[b][0]);
        FILE *f = fopen(p, "w");
        if (!f) {
            rc = -1;
            break;
        }
        if (broken[b][1]) {
            fputs(broken[b][1], f);
        } else {
            /* The first generated report with its verdict line replaced. */
            DIR *d = opendir(dir);
            struct dirent *e;
            char first[1024] = "";
            while (d && (e = readdir(d)))
                if (strstr(e->d_name, "_r0000000.yaml"))
                    snprintf(first, sizeof first, "%s/%s", dir, e->d_name);
            if (d)
                closedir(d);
            FILE *s = first[0] ? fopen(first, "r") : NULL;
            char line[1024];
            while (s && fgets(line, sizeof line, s))
                fputs(strncmp(line, "verdict:", 8) == 0 ? "verdict: maybe\n" : line, f);
            if (s)
                fclose(s);
            else
                rc = -1;
        }
        if (fclose(f))
            rc = -1;
    }
    if (rc) {
        fprintf(stderr, "bench_summary: cannot write the reports into %s\n", dir);
        return 1;
    }
    double made = (double)(st_now_us() - t0) / 1e6;
    char *sargv[] = { (char *)STATION_BIN, "report", "summary", dir, "--yaml", NULL };
    child c = { 0 };
    if (spawn(sargv, out, errlog, &c) || c.exit_code != 0) {
        fprintf(stderr, "bench_summary: station report summary exited %d\n", c.exit_code);
        rc = 1;
    }
    long runs = yaml_count(out, "runs");
    if (!rc && runs != (long)n) {
        fprintf(stderr, "bench_summary: the summary counted %ld runs, want %u\n", runs, n);
        rc = 1;
    }
    for (size_t b = 0; !rc && b < sizeof broken / sizeof broken[0]; b++) {
        char want[700];
        snprintf(want, sizeof want, "skipped %s/%s: ", dir, broken[b][0]);
        if (!file_has(errlog, want)) {
            fprintf(stderr, "bench_summary: the summary did not name %s with a reason\n",
                    broken[b][0]);
            rc = 1;
        }
    }
    if (!rc && !file_has(errlog, "2 files skipped")) {
        fprintf(stderr, "bench_summary: the summary did not say 2 files were skipped\n");
        rc = 1;
    }
    if (!rc && (yaml_count(out, "pass") <= 0 || yaml_count(out, "fail") <= 0 ||
                yaml_count(out, "incomplete") <= 0 || yaml_count(out, "retries") <= 0)) {
        fprintf(stderr, "bench_summary: the summary lacks passes, fails, incomplete runs or "
                        "retries\n");
        rc = 1;
    }
    if (rc) {
        char cmd[1400];
        snprintf(cmd, sizeof cmd, "head -c 3000 '%s' >&2; head -20 '%s' >&2", out, errlog);
        if (system(cmd) != 0)
            fprintf(stderr, "(no output)\n");
    } else if (check) {
        printf("bench_summary --check: ok (%u reports, 2 broken files named)\n", n);
    } else {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        double load[1] = { 0 };
        if (getloadavg(load, 1) < 1)
            load[0] = -1;
        printf("report summary: %u reports (+2 broken) in %.2f s wall: %.0f reports/s; "
               "budget 10 s: ratio %.2f\n", n, c.wall_s, n / c.wall_s, c.wall_s / 10.0);
        printf("  CPU %.2f s (user %.2f, sys %.2f) on %ld CPUs: CPU/wall %.2f; peak RSS %ld KiB; "
               "load average at the end %.2f (written in %.1f s)\n",
               c.cpu_s, c.user_s, c.sys_s, cpus, c.cpu_s / c.wall_s, c.maxrss_kib, load[0], made);
    }
    if (keep) {
        printf("kept %s\n", tmp);
    } else {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0)
            rc = 1;
    }
    return rc;
}
