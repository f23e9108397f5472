/* Benchmark of the `station` binary end to end on a virtual fixture whose units use the
 * `datasheet` timing profile: the USB combined image through the ROM DFU on a fresh unit
 * and on one that already holds it (skip-identical), as flash + verify time versus the DFU
 * model's device limit (st_dfu_model_device_limit), plus the station's CPU time and peak
 * RSS per unit (getrusage of the child through wait4) with one and with four slots. Not a
 * ctest test; `--check` runs one tiny image through both cases and checks the results
 * (exit codes, reports, page counts, digests), not the timing (ctest label bench-smoke). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocols/dfuse/dfu_model.h"
#include "protocols/sim/flash.h"
#include "reports/report.h"
#include "station/core/clock.h"
#include "station/core/image.h"
#include "station/core/testutil.h"

#define USB_IMAGE STATION_SHARED_DIR \
    "/firmware/cartographer-v4/6.0.0/Katapult_plus_CartographerV4_6.0.0__USB_lite.bin"
#define FIXTURE_1 STATION_SOURCE_DIR "/hil-tests/bench/fixture-datasheet.yaml"
#define FIXTURE_4 STATION_SOURCE_DIR "/hil-tests/bench/fixture-datasheet-4.yaml"
#define CAN_APP STATION_SHARED_DIR \
    "/firmware/cartographer-v4/6.0.0/CartographerV4_6.0.0_CAN_1M_full_8kib_offset.bin"
#define CAN_COMBINED STATION_SHARED_DIR \
    "/firmware/cartographer-v4/6.0.0/Katapult_plus_CartographerV4_6.0.0__CAN_1M.bin"
#define FIXTURE_CAN STATION_SOURCE_DIR "/hil-tests/bench/fixture-can-datasheet.yaml"
#define LOAD_ADDR 0x08000000u
#define APP_OFFSET 0x2000u         /* Katapult's 8 KiB: the application's offset */
#define APP_ADDR (LOAD_ADDR + APP_OFFSET)
/* Sizes of the real images, for the generated stand-ins when ../shared is absent. */
#define USB_SIZE 35984u
#define CAN_APP_SIZE 27236u
#define CAN_COMBINED_SIZE 35428u
#define CHECK_SIZE 9216u     /* --check: the smallest synthetic combined image, 5 pages */
#define CHECK_APP_SIZE 1024u /* --check: 16 Katapult blocks */
#define USB_SLOTS 4u         /* slots in fixture-datasheet-4.yaml */
#define CAN_SLOTS 3u         /* slots in fixture-can-datasheet.yaml */

/* The run's settings: which station binary, and the scratch directory. */
typedef struct bench {
    const char *station;
    char tmp[64];
} bench;

/* What one station run on one fixture measured. */
typedef struct station_run {
    int exit_code;
    unsigned reports, passed;
    uint64_t wall_us;          /* fork to wait4 */
    double cpu_ms;             /* user + system of the child */
    long maxrss_kib;           /* peak RSS of the child */
    double run_ms;             /* report run.duration_ms (largest over units) */
    double flash_ms, verify_ms;/* step durations (largest over units) */
    double enter_ms, start_ms, wait_ms;
    long long pages_written, pages_skipped; /* of the first report */
    char verify_sha[80];       /* steps.verify.sha256 of the first report */
    /* Katapult over CAN steps (largest over units) */
    double kenter_ms, read_ms, kflash_ms, kverify_ms, kcomplete_ms;
    long long expect_blocks;   /* set by the caller: blocks each CAN unit must send */
    unsigned can_ok;           /* reports whose Katapult steps sent and read back them all */
} station_run;

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int rc = fputs(text, f) < 0 ? -1 : 0;
    return fclose(f) != 0 ? -1 : rc;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = malloc(65536);
    size_t n = buf ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

/* Run the station with argv (NULL-terminated, argv[0] ignored), output to log; fills the
 * exit code, wall time and the child's resource usage. */
static int spawn(const bench *b, char *const argv[], const char *log, station_run *out)
{
    st_test_child t;
    if (st_test_spawn(b->station, argv, log, NULL, &t))
        return -1;
    out->wall_us = t.wall_us;
    out->exit_code = t.exit_code;
    out->cpu_ms = (t.user_s + t.sys_s) * 1000.0;
    out->maxrss_kib = t.maxrss_kib;
    return 0;
}

static double step_num(const st_rnode *doc, size_t i, const char *field)
{
    char p[64];
    double v = -1;
    snprintf(p, sizeof p, "steps.%zu.%s", i, field);
    return st_rget_num(doc, p, &v) == 0 ? v : -1;
}

static void keep_max(double *acc, double v)
{
    if (v > *acc)
        *acc = v;
}

/* Read every report in dir into out (largest step times over units). */
static int read_reports(const char *dir, station_run *out)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".yaml") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        st_rnode *doc = NULL;
        st_err e = { 0 };
        if (st_report_load(path, &doc, &e) < 0 || st_report_validate(doc, &e) < 0) {
            fprintf(stderr, "bench_station: %s: %s\n", path, e.msg);
            st_report_free(doc);
            continue;
        }
        const char *verdict = st_rget_str(doc, "verdict");
        out->passed += verdict && strcmp(verdict, "pass") == 0;
        double run = -1;
        if (st_rget_num(doc, "run.duration_ms", &run) == 0)
            keep_max(&out->run_ms, run);
        const st_rnode *steps = st_rget(doc, "steps");
        size_t n = steps ? st_rnode_len(steps) : 0;
        long long blocks = -1, sent = -1;
        const char *flash_sha1 = NULL, *verify_sha1 = NULL;
        for (size_t i = 0; i < n; i++) {
            char p[64];
            snprintf(p, sizeof p, "steps.%zu.name", i);
            const char *name = st_rget_str(doc, p);
            double dur = step_num(doc, i, "duration_ms");
            if (!name)
                continue;
            if (strcmp(name, "flash") == 0) {
                keep_max(&out->flash_ms, dur);
                if (out->reports == 0) {
                    snprintf(p, sizeof p, "steps.%zu.pages_written", i);
                    st_rget_int(doc, p, &out->pages_written);
                    snprintf(p, sizeof p, "steps.%zu.pages_skipped", i);
                    st_rget_int(doc, p, &out->pages_skipped);
                }
            } else if (strcmp(name, "verify") == 0) {
                keep_max(&out->verify_ms, dur);
                snprintf(p, sizeof p, "steps.%zu.sha256", i);
                const char *sha = st_rget_str(doc, p);
                if (out->reports == 0 && sha)
                    snprintf(out->verify_sha, sizeof out->verify_sha, "%s", sha);
            } else if (strcmp(name, "enter-bootloader") == 0) {
                keep_max(&out->enter_ms, dur);
            } else if (strcmp(name, "start") == 0) {
                keep_max(&out->start_ms, dur);
            } else if (strcmp(name, "wait-for-app") == 0) {
                keep_max(&out->wait_ms, dur);
            } else if (strcmp(name, "enter-katapult") == 0) {
                keep_max(&out->kenter_ms, dur);
            } else if (strcmp(name, "read-app") == 0) {
                keep_max(&out->read_ms, dur);
            } else if (strcmp(name, "katapult-flash") == 0) {
                keep_max(&out->kflash_ms, dur);
                snprintf(p, sizeof p, "steps.%zu.blocks", i);
                if (st_rget_int(doc, p, &blocks) < 0)
                    blocks = -1;
                snprintf(p, sizeof p, "steps.%zu.blocks_sent", i);
                if (st_rget_int(doc, p, &sent) < 0)
                    sent = -1;
                snprintf(p, sizeof p, "steps.%zu.sha1", i);
                flash_sha1 = st_rget_str(doc, p);
            } else if (strcmp(name, "katapult-verify") == 0) {
                keep_max(&out->kverify_ms, dur);
                snprintf(p, sizeof p, "steps.%zu.sha1", i);
                verify_sha1 = st_rget_str(doc, p);
            } else if (strcmp(name, "katapult-complete") == 0) {
                keep_max(&out->kcomplete_ms, dur);
            }
        }
        /* Katapult: every block of the image sent and read back, the same SHA-1 both ways. */
        if (blocks >= 0 && blocks == out->expect_blocks && sent == blocks && flash_sha1 &&
            verify_sha1 && strlen(flash_sha1) == 40 && strcmp(flash_sha1, verify_sha1) == 0)
            out->can_ok++;
        out->reports++;
        st_report_free(doc);
    }
    closedir(d);
    return 0;
}

/* One station run of job on fixture; `tag` names its report directory and log. */
static int run_station(const bench *b, const char *job, const char *fixture, const char *tag,
                       long long expect_blocks, station_run *out)
{
    char reports[128], log[128];
    memset(out, 0, sizeof *out);
    out->pages_written = out->pages_skipped = -1;
    out->expect_blocks = expect_blocks;
    snprintf(reports, sizeof reports, "%s/reports-%s", b->tmp, tag);
    snprintf(log, sizeof log, "%s/station-%s.log", b->tmp, tag);
    char *argv[] = { "station", "--plain", "run", (char *)job, "-f", (char *)fixture,
                     "--reports", reports, NULL };
    if (spawn(b, argv, log, out) < 0) {
        fprintf(stderr, "bench_station: cannot run %s\n", b->station);
        return -1;
    }
    if (out->exit_code != 0) {
        char *text = read_text(log);
        fprintf(stderr, "bench_station: %s: station exited %d:\n%s\n", tag, out->exit_code,
                text ? text : "");
        free(text);
        return -1;
    }
    return read_reports(reports, out);
}

/* The device limit of flash (skip-identical, as the job asks) + verify for img on a unit
 * holding `holds` (NULL: erased), from the same DFU model the virtual unit runs. */
static int device_limit(const st_image *img, const st_image *holds, st_dfu_limit *lim)
{
    st_flash *fl = st_flash_new(st_mcu_find("stm32g431xx"), ST_TIMING_DATASHEET);
    st_dfu_model *m = fl ? st_dfu_model_new(fl, NULL) : NULL;
    int rc = -1;
    if (m) {
        if (holds)
            st_flash_preload(fl, holds->load_addr, holds->data, holds->size);
        rc = st_dfu_model_device_limit(m, img, true, true, lim);
    }
    st_dfu_model_free(m);
    st_flash_free(fl);
    return rc;
}

static int write_job(const char *path, const st_image *img, const char *image_path)
{
    char text[2048];
    snprintf(text, sizeof text,
             "# bench_station's job: cartographer-v4-usb-dfu.yaml with this run's image.\n"
             "name: bench-usb-dfu\n"
             "target: stm32g431xx\n"
             "images:\n"
             "  combined:\n"
             "    path: %s\n"
             "    load_addr: 0x%08X\n"
             "    sha256: %s\n"
             "retries: 0\n"
             "steps:\n"
             "  - enter-bootloader\n"
             "  - flash: { image: combined, skip_identical: true }\n"
             "  - verify: { image: combined }\n"
             "  - start: { image: combined }\n"
             "  - wait-for-app: { usb: \"1d50:614e\", timeout_ms: 10000 }\n",
             image_path, LOAD_ADDR, img->sha256_hex);
    return write_text(path, text);
}

/* fixture-datasheet.yaml with `holds: image` appended to its (last) unit map. */
static int write_holds_fixture(const char *path, const char *image_path)
{
    char *text = read_text(FIXTURE_1);
    if (!text)
        return -1;
    size_t n = strlen(text);
    char *full = malloc(n + 600);
    int rc = -1;
    if (full) {
        snprintf(full, n + 600, "%s%s      holds: %s\n", text,
                 n && text[n - 1] != '\n' ? "\n" : "", image_path);
        rc = write_text(path, full);
    }
    free(full);
    free(text);
    return rc;
}

/* cartographer-v4-can-reflash.yaml's steps with this run's images. */
static int write_can_job(const char *path, const st_image *app, const char *app_path,
                         const st_image *combined, const char *combined_path)
{
    char text[2048];
    snprintf(text, sizeof text,
             "# bench_station's job: cartographer-v4-can-reflash.yaml with this run's images.\n"
             "name: bench-can-reflash\n"
             "target: stm32g431xx\n"
             "images:\n"
             "  application:\n"
             "    path: %s\n"
             "    load_addr: 0x%08X\n"
             "    sha256: %s\n"
             "  combined:\n"
             "    path: %s\n"
             "    load_addr: 0x%08X\n"
             "    sha256: %s\n"
             "katapult:\n"
             "  transport: can\n"
             "  bitrate: 1000000\n"
             "recovery:\n"
             "  image: combined\n"
             "retries: 0\n"
             "steps:\n"
             "  - enter-katapult\n"
             "  - read-app: { image: application }\n"
             "  - katapult-flash: { image: application, skip_identical: true }\n"
             "  - katapult-verify: { image: application }\n"
             "  - katapult-complete\n"
             "  - wait-for-app: { can: true, timeout_ms: 5000 }\n",
             app_path, APP_ADDR, app->sha256_hex, combined_path, LOAD_ADDR,
             combined->sha256_hex);
    return write_text(path, text);
}

/* The real image at real_path (unless check), else `station image generate` of size bytes
 * (the application part only with app) into the scratch directory as name. */
static st_image *get_image(const bench *b, bool check, const char *real_path, const char *name,
                           size_t size, bool app, char *path, size_t cap)
{
    if (!check && access(real_path, R_OK) == 0) {
        snprintf(path, cap, "%s", real_path);
    } else {
        snprintf(path, cap, "%s/%s", b->tmp, name);
        char sz[16], log[128];
        snprintf(sz, sizeof sz, "%zu", size);
        snprintf(log, sizeof log, "%s/generate-%s.log", b->tmp, name);
        char *app_argv[] = { "station", "image", "generate", "--app", "--size", sz, path, NULL };
        char *all_argv[] = { "station", "image", "generate", "--size", sz, path, NULL };
        station_run g = { 0 };
        if (spawn(b, app ? app_argv : all_argv, log, &g) < 0 || g.exit_code != 0) {
            fprintf(stderr, "bench_station: station image generate failed (see %s)\n", log);
            return NULL;
        }
    }
    st_image *img = NULL;
    st_err e = { 0 };
    if (st_image_load(path, app ? APP_ADDR : LOAD_ADDR, &img, &e) < 0) {
        fprintf(stderr, "bench_station: %s\n", e.msg);
        return NULL;
    }
    printf("image: %s (%zu bytes)%s\n", path, img->size,
           check || access(real_path, R_OK) == 0 ? "" : " (real image absent)");
    return img;
}

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

/* --check: the results must be right, whatever the timing. */
static int check_run(const char *what, const station_run *r, const st_image *img,
                     long long want_written, long long want_skipped)
{
    int bad = 0;
    if (r->reports != 1 || r->passed != 1) {
        fprintf(stderr, "%s: %u reports, %u passed; want 1 and 1\n", what, r->reports, r->passed);
        bad++;
    }
    if ((want_written >= 0 && r->pages_written != want_written) ||
        r->pages_skipped != want_skipped) {
        fprintf(stderr, "%s: pages written %lld skipped %lld, want %lld and %lld\n", what,
                r->pages_written, r->pages_skipped, want_written, want_skipped);
        bad++;
    }
    if (strcmp(r->verify_sha, img->sha256_hex) != 0) {
        fprintf(stderr, "%s: verify sha256 \"%s\", want %s\n", what, r->verify_sha,
                img->sha256_hex);
        bad++;
    }
    if (r->flash_ms < 0 || r->verify_ms < 0 || r->maxrss_kib <= 0) {
        fprintf(stderr, "%s: missing figures (flash %.1f ms, verify %.1f ms, rss %ld KiB)\n",
                what, r->flash_ms, r->verify_ms, r->maxrss_kib);
        bad++;
    }
    return bad;
}

static void usage(FILE *f)
{
    fputs("Usage: bench_station [--check] [--station PATH]\n"
          "  The station binary on datasheet-timed virtual fixtures: the USB combined image\n"
          "  via ROM DFU on a fresh unit and on one that holds it (skip-identical) versus the\n"
          "  DFU model's device limit; CPU time and peak RSS per unit with 1 and 4 slots; three\n"
          "  units reflashed with Katapult over one 1 Mbit/s CAN bus.\n"
          "  --check         tiny images through every case; checks results, not timing\n"
          "  --station PATH  the station binary (default: the one built with this program)\n",
          f);
}

/* The USB ROM DFU cases. Returns the number of failures. */
static int bench_usb(const bench *b, bool check)
{
    char image_path[256], job[128], holds_fixture[128];
    snprintf(job, sizeof job, "%s/job-usb.yaml", b->tmp);
    snprintf(holds_fixture, sizeof holds_fixture, "%s/fixture-holds.yaml", b->tmp);
    st_image *img = get_image(b, check, USB_IMAGE, "combined.bin",
                              check ? CHECK_SIZE : USB_SIZE, false, image_path,
                              sizeof image_path);
    if (!img)
        return 1;
    st_dfu_limit lim_fresh, lim_holds;
    if (write_job(job, img, image_path) < 0 || write_holds_fixture(holds_fixture, image_path) < 0 ||
        device_limit(img, NULL, &lim_fresh) < 0 || device_limit(img, img, &lim_holds) < 0) {
        fprintf(stderr, "bench_station: usb setup failed (files in %s)\n", b->tmp);
        st_image_free(img);
        return 1;
    }
    int fails = 0;
    station_run fresh, holds, four;
    bool ok_fresh = run_station(b, job, FIXTURE_1, "fresh", -1, &fresh) == 0;
    bool ok_holds = run_station(b, job, holds_fixture, "holds", -1, &holds) == 0;
    fails += !ok_fresh + !ok_holds;

    if (check) {
        /* A synthetic image may hold blank pages the DFU engine skips on a fresh unit, so
         * only the total is fixed there; on a unit holding it, nothing is written. */
        long long pages = (long long)((img->size + 2047) / 2048);
        if (ok_fresh) {
            fails += check_run("fresh unit", &fresh, img, -1, pages - fresh.pages_written) != 0;
            if (fresh.pages_written < 1) {
                fprintf(stderr, "fresh unit: nothing written\n");
                fails++;
            }
        }
        if (ok_holds)
            fails += check_run("holds image", &holds, img, 0, pages) != 0;
        if (lim_fresh.total_us <= lim_holds.total_us || lim_holds.total_us == 0) {
            fprintf(stderr, "device limits: fresh %llu us, holds %llu us\n",
                    (unsigned long long)lim_fresh.total_us,
                    (unsigned long long)lim_holds.total_us);
            fails++;
        }
        if (!fails)
            printf("check usb: fresh unit %lld pages written, holds-image unit %lld skipped; "
                   "both passed and verified\n", fresh.pages_written, holds.pages_skipped);
        st_image_free(img);
        return fails;
    }
    bool ok_four = run_station(b, job, FIXTURE_4, "four", -1, &four) == 0;
    if (ok_four && (four.reports != USB_SLOTS || four.passed != USB_SLOTS)) {
        fprintf(stderr, "bench_station: four slots: %u reports, %u passed\n", four.reports,
                four.passed);
        ok_four = false;
    }
    fails += !ok_four;
    printf("\nstation end to end, ROM DFU, datasheet timing (flash skip-identical + verify)\n");
    printf("%-22s %9s %9s %9s %7s %9s %9s %9s %9s\n", "case", "flash ms", "verify ms",
           "limit ms", "ratio", "run ms", "wall ms", "CPU ms", "RSS KiB");
    const struct {
        const char *label;
        bool ok;
        const station_run *r;
        const st_dfu_limit *lim;
    } rows[] = { { "fresh unit", ok_fresh, &fresh, &lim_fresh },
                 { "holds image (skip)", ok_holds, &holds, &lim_holds } };
    for (size_t i = 0; i < 2; i++) {
        const station_run *r = rows[i].r;
        if (!rows[i].ok)
            continue;
        double fv = r->flash_ms + r->verify_ms;
        printf("%-22s %9.1f %9.1f %9.1f %7.3f %9.1f %9.1f %9.1f %9ld\n", rows[i].label,
               r->flash_ms, r->verify_ms, ms(rows[i].lim->total_us),
               fv / ms(rows[i].lim->total_us), r->run_ms, ms(r->wall_us), r->cpu_ms,
               r->maxrss_kib);
    }
    if (ok_fresh)
        printf("fresh unit: pages written %lld skipped %lld; limit = erase %.1f + program "
               "%.1f + wire write %.1f + wire read %.1f ms; other steps: enter %.1f, start "
               "%.1f, wait-for-app %.1f ms\n", fresh.pages_written, fresh.pages_skipped,
               ms(lim_fresh.erase_us), ms(lim_fresh.program_us), ms(lim_fresh.wire_write_us),
               ms(lim_fresh.wire_read_us), fresh.enter_ms, fresh.start_ms, fresh.wait_ms);
    if (ok_holds)
        printf("holds image: pages written %lld skipped %lld\n", holds.pages_written,
               holds.pages_skipped);
    if (ok_four && ok_fresh)
        printf("\nper unit, %u slots in parallel: wall %.1f ms (1 slot %.1f), flash+verify "
               "%.1f ms (slowest), CPU %.1f ms/unit (1 slot %.1f), peak RSS %ld KiB total, "
               "+%.0f KiB per extra unit (1 slot %ld KiB); %u/%u passed\n", USB_SLOTS,
               ms(four.wall_us), ms(fresh.wall_us), four.flash_ms + four.verify_ms,
               four.cpu_ms / USB_SLOTS, fresh.cpu_ms, four.maxrss_kib,
               (double)(four.maxrss_kib - fresh.maxrss_kib) / (USB_SLOTS - 1),
               fresh.maxrss_kib, four.passed, four.reports);
    st_image_free(img);
    return fails;
}

/* Three units reflashed with Katapult over one CAN bus. Returns the number of failures. */
static int bench_can(const bench *b, bool check)
{
    char app_path[256], combined_path[256], job[128];
    snprintf(job, sizeof job, "%s/job-can.yaml", b->tmp);
    size_t app_size = check ? CHECK_APP_SIZE : CAN_APP_SIZE;
    /* The generated combined image's application part is the generated application. */
    st_image *app = get_image(b, check, CAN_APP, "app.bin", APP_OFFSET + app_size, true,
                              app_path, sizeof app_path);
    st_image *combined = app ? get_image(b, check, CAN_COMBINED, "can-combined.bin",
                                         check ? APP_OFFSET + app_size : CAN_COMBINED_SIZE,
                                         false, combined_path, sizeof combined_path)
                             : NULL;
    int fails = 0;
    station_run r;
    if (!app || !combined || write_can_job(job, app, app_path, combined, combined_path) < 0) {
        fails++;
        goto out;
    }
    long long blocks = (long long)((app->size + 63) / 64);
    if (run_station(b, job, FIXTURE_CAN, "can", blocks, &r) < 0) {
        fails++;
        goto out;
    }
    if (r.reports != CAN_SLOTS || r.passed != CAN_SLOTS || r.can_ok != CAN_SLOTS) {
        fprintf(stderr, "can: %u reports, %u passed, %u with all %lld blocks sent and read "
                        "back with one SHA-1; want %u\n", r.reports, r.passed, r.can_ok, blocks,
                CAN_SLOTS);
        fails++;
        goto out;
    }
    if (check) {
        printf("check can: %u units reflashed over one bus, %lld blocks each, sent and read "
               "back\n", r.can_ok, blocks);
        goto out;
    }
    printf("\nstation end to end, Katapult over CAN, %u units on one 1 Mbit/s bus, datasheet "
           "timing, %zu-byte application (slowest unit per step)\n", CAN_SLOTS, app->size);
    printf("%9s %9s %9s %9s %9s %9s %9s %9s %11s %9s\n", "enter ms", "read ms", "flash ms",
           "verify ms", "compl ms", "wait ms", "run ms", "wall ms", "CPU ms/unit", "RSS KiB");
    printf("%9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %11.1f %9ld\n", r.kenter_ms,
           r.read_ms, r.kflash_ms, r.kverify_ms, r.kcomplete_ms, r.wait_ms, r.run_ms,
           ms(r.wall_us), r.cpu_ms / CAN_SLOTS, r.maxrss_kib);
    printf("compare flash + verify (%.1f ms) with bench_katapult_can's %u-unit row: the engine "
           "alone on the same bus model\n", r.kflash_ms + r.kverify_ms, CAN_SLOTS);
out:
    st_image_free(app);
    st_image_free(combined);
    return fails;
}

int main(int argc, char **argv)
{
    bench b = { .station = STATION_BIN };
    bool check = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--check") == 0) {
            check = true;
        } else if (strcmp(argv[i], "--station") == 0 && i + 1 < argc) {
            b.station = argv[++i];
        } else {
            bool help = strcmp(argv[i], "--help") == 0;
            usage(help ? stdout : stderr);
            return help ? 0 : 2;
        }
    }
    if (access(b.station, X_OK) != 0) {
        fprintf(stderr, "bench_station: %s: not built\n", b.station);
        return 77;
    }
    st_test_tmpl(b.tmp, sizeof b.tmp, "st-bench");
    if (!mkdtemp(b.tmp)) {
        perror("bench_station: mkdtemp");
        return 1;
    }
    int fails = bench_usb(&b, check);
    fails += bench_can(&b, check);
    if (!fails) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", b.tmp);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_station: could not remove %s\n", b.tmp);
    } else {
        fprintf(stderr, "bench_station: %d failure(s); logs and reports kept in %s\n", fails,
                b.tmp);
    }
    return fails ? 1 : 0;
}
