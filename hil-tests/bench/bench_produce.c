/* Benchmark of production mode and of its summary:
 *  1. `station produce` on virtual lines of 4 and 8 slots whose units use the `datasheet`
 *     timing profile, each slot's simulated operator bringing units back to back: units per
 *     hour against the device limit (N slots x 3600 s / the DFU model's flash+verify limit
 *     per unit, st_dfu_model_device_limit), and the station's CPU time and peak RSS (wait4).
 *  2. `station report summary DIR` over 100,000 reports (copies of a real one, each a
 *     different unit and time): wall time against the 10 s budget, CPU, peak RSS.
 * Not a ctest test; `--check` runs 2 slots x 2 units and 300 reports and checks the
 * results (exit codes, report counts, the summary's figures), never the timing. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocols/dfuse/dfu_model.h"
#include "protocols/sim/flash.h"
#include "protocols/sim/synth.h"
#include "station/core/clock.h"
#include "station/core/image.h"
#include "station/core/mcu.h"
#include "station/core/testutil.h"

typedef struct child {
    int exit_code;
    double wall_s, cpu_s;
    long maxrss_kib;
} child;

/* Run argv with stdout+stderr to log; fill *c from wait4. */
static int spawn(char *const argv[], const char *log, child *c)
{
    fflush(stdout); /* the child must not print our buffered lines again */
    uint64_t t0 = st_now_us();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (!freopen(log, "w", stdout) || !freopen(log, "a", stderr))
            _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) != pid)
        return -1;
    c->wall_s = (double)(st_now_us() - t0) / 1e6;
    c->cpu_s = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    c->maxrss_kib = ru.ru_maxrss;
    c->exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
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

/* A line of n datasheet-timed slots, units each, operators without pauses. */
static int write_line(const char *path, unsigned n, unsigned units)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "name: bench-line-%u\ngpio: { backend: virtual }\n"
               "timing: { reset_pulse_ms: 20, boot_settle_ms: 50 }\nslots:\n", n);
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
    child c;
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
    if (check)
        return 0;
    double uph = total * 3600.0 / c.wall_s, limit_uph = slots * 3600.0 / limit_s;
    printf("produce %u slots: %u units in %.2f s: %.0f units/h; device limit %.0f units/h "
           "(%.3f s/unit/slot): ratio %.2f; station CPU %.1f ms/unit, peak RSS %ld KiB\n",
           slots, total, c.wall_s, uph, limit_uph, limit_s, limit_uph / uph,
           1000.0 * c.cpu_s / total, c.maxrss_kib);
    return 0;
}

/* n copies of one real report, each a different unit and start time, into dir. */
static int make_reports(const char *src_dir, const char *dir, unsigned n)
{
    DIR *d = opendir(src_dir);
    struct dirent *e;
    char src[1024] = "";
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".yaml")) {
            snprintf(src, sizeof src, "%s/%s", src_dir, e->d_name);
            break;
        }
    if (d)
        closedir(d);
    FILE *f = src[0] ? fopen(src, "r") : NULL;
    if (!f)
        return -1;
    static char text[1 << 16];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    /* Split at the identity and the start time, the fields that make runs distinct. */
    char *id = strstr(text, "identity: ");
    char *st = strstr(text, "started: ");
    if (!id || !st || id < st)
        return -1;
    char *id_end = strchr(id, '\n'), *st_end = strchr(st, '\n');
    mkdir(dir, 0755);
    for (unsigned i = 0; i < n; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/r%06u.yaml", dir, i);
        FILE *o = fopen(p, "w");
        if (!o)
            return -1;
        fwrite(text, 1, (size_t)(st - text), o);
        fprintf(o, "started: '2026-12-%02uT%02u:%02u:%02u.000Z'", 1 + i / 86400 % 28,
                i / 3600 % 24, i / 60 % 60, i % 60);
        fwrite(st_end, 1, (size_t)(id - st_end), o);
        fprintf(o, "identity: UNIT%06u", i % (n / 2 + 1));
        fputs(id_end, o);
        if (fclose(o))
            return -1;
    }
    return 0;
}

static int summary_case(const char *station, const char *tmp, const char *src, unsigned n,
                        bool check)
{
    char dir[256], log[256];
    snprintf(dir, sizeof dir, "%s/many", tmp);
    snprintf(log, sizeof log, "%s/summary.log", tmp);
    uint64_t t0 = st_now_us();
    if (make_reports(src, dir, n)) {
        fprintf(stderr, "bench_produce: cannot make %u reports\n", n);
        return -1;
    }
    double made = (double)(st_now_us() - t0) / 1e6;
    char *argv[] = { (char *)station, "report", "summary", dir, "--yaml", NULL };
    child c;
    if (spawn(argv, log, &c) || c.exit_code != 0) {
        fprintf(stderr, "bench_produce: report summary exited %d\n", c.exit_code);
        show_log(log);
        return -1;
    }
    FILE *f = fopen(log, "r");
    char line[256];
    unsigned runs = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "runs: %u", &runs) == 1)
            break;
    if (f)
        fclose(f);
    if (runs != n) {
        fprintf(stderr, "bench_produce: report summary counted %u runs, want %u\n", runs, n);
        show_log(log);
        return -1;
    }
    if (!check)
        printf("report summary: %u reports in %.2f s (%.0f reports/s; budget 10 s: ratio %.2f), "
               "CPU %.2f s, peak RSS %ld KiB (made in %.1f s)\n", n, c.wall_s, n / c.wall_s,
               c.wall_s / 10.0, c.cpu_s, c.maxrss_kib, made);
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
        (!check && line_case(station, tmp, job, 8, units, limit_s, check))) {
        rc = 1;
    } else {
        char src[300];
        snprintf(src, sizeof src, "%s/reports%u", tmp, check ? 2 : 4);
        if (summary_case(station, tmp, src, check ? 300 : 100000, check))
            rc = 1;
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        rc = 1;
    if (check && !rc)
        printf("bench_produce --check: ok\n");
    return rc;
}
