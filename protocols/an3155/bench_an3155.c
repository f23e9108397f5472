/* Benchmark of the AN3155 engine against the G431 ROM model on a real pty (pty server in a
 * thread) with the `datasheet` profile at 115200 baud (8E1 wire time: 11 bits per byte,
 * erase 22 ms per 2 KiB page, 82 us per 64 bits): back up 64 KiB, then flash a different
 * 64 KiB image and verify it. Reports the station's wall time against the wire+device
 * limit of that job and against Debian's stm32flash doing the same job (-r, then -w -v) on
 * the same model in the same run. Not a ctest test; `bench_an3155 --check` is (label
 * bench-smoke): a small run with no timing profile whose results are checked. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "protocols/an3155/an3155.h"
#include "protocols/an3155/an3155_model.h"
#include "protocols/link/pty_server.h"
#include "station/core/clock.h"
#include "station/core/digest.h"
#include "station/core/testutil.h"

#define STM32FLASH "/usr/bin/stm32flash"
#define BAUD 115200u

typedef struct rig {
    st_flash *flash;
    st_an_model *model;
    st_pty_server *srv;
    pthread_t th;
    atomic_bool stop;
    char tty[128];
} rig;

static void *serve(void *arg)
{
    rig *r = arg;
    while (!atomic_load(&r->stop))
        st_pty_server_run(r->srv, 20, NULL);
    return NULL;
}

static int rig_open(rig *r, st_timing_profile t, const uint8_t *holds, size_t n)
{
    memset(r, 0, sizeof *r);
    r->flash = st_flash_new(st_mcu_find("stm32g431xx"), t);
    st_flash_preload(r->flash, 0x08000000, holds, n);
    st_an_model_cfg c = {.accept_8n1 = true, .baud = BAUD};
    r->model = st_an_model_new(r->flash, &c);
    st_err err;
    if (!r->model || st_pty_server_new(st_an_model_stream(r->model), NULL, &r->srv, &err) < 0)
        return -1;
    st_an_model_reset(r->model, true, st_now_us());
    snprintf(r->tty, sizeof r->tty, "%s", st_pty_server_path(r->srv));
    atomic_init(&r->stop, false);
    return pthread_create(&r->th, NULL, serve, r) == 0 ? 0 : -1;
}

static void rig_close(rig *r)
{
    atomic_store(&r->stop, true);
    pthread_join(r->th, NULL);
    st_pty_server_free(r->srv);
    st_an_model_free(r->model);
    st_flash_free(r->flash);
}

static uint8_t *pattern(size_t n, uint32_t seed)
{
    uint8_t *b = malloc(n);
    uint32_t x = seed * 2654435761u + 7;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (uint8_t)(x >> 16);
    }
    return b;
}

/* The job's floor: every byte the protocol must move at 11 bits per byte, plus the flash
 * time. Read: 9 host + 259 device bytes per 256-byte block; write: 265 + 3; one Extended
 * Erase of the image's pages; verify reads it all again. */
static double limit_ms(size_t len, const st_mcu *mcu)
{
    double blocks = (double)((len + 255) / 256);
    double pages = (double)((len + mcu->page_size - 1) / mcu->page_size);
    double bytes = blocks * 268 * 3 + (2 + 1) + (2 + 2 * pages + 1) + 1 + 2;
    double wire_ms = bytes * 11.0 * 1000.0 / BAUD;
    double flash_ms = (pages * mcu->page_erase_us + (double)len / 8 * mcu->dword_program_us) / 1000.0;
    return wire_ms + flash_ms;
}

static int station_job(rig *r, const uint8_t *img, size_t len, uint8_t *backup, double *ms,
                       st_an_flash_stats *fs)
{
    st_stream_line line = {BAUD, 8, 'N', 1, 0};
    st_stream *s;
    st_an3155 *an;
    st_err err;
    st_an_info info;
    if (st_stream_tty_open(r->tty, &line, &s, &err) < 0 || st_an_new(s, NULL, &an, &err) < 0) {
        fprintf(stderr, "bench_an3155: %s\n", err.msg);
        return -1;
    }
    uint64_t t0 = st_now_us();
    int rc = st_an_sync(an, NULL, &err);
    if (!rc)
        rc = st_an_identify(an, &info, &err);
    if (!rc)
        rc = st_an_read(an, 0x08000000, backup, len, NULL, &err);
    st_an_flash_opts o = {.skip_identical = true, .verify = true};
    if (!rc)
        rc = st_an_flash(an, 0x08000000, img, len, &o, fs, NULL, &err);
    *ms = (double)(st_now_us() - t0) / 1000.0;
    if (rc)
        fprintf(stderr, "bench_an3155: station: %s\n", err.msg);
    st_an_free(an);
    st_stream_close(s);
    return rc;
}

static int sh(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* stm32flash -r then -w -v, the way a user runs seed 002's guide. */
static int peer_job(rig *r, const char *dir, size_t len, double *ms)
{
    char cmd[1024];
    uint64_t t0 = st_now_us();
    snprintf(cmd, sizeof cmd, STM32FLASH " -m 8n1 -b %u -S 0x08000000:%zu -r %s/backup.bin %s "
             ">%s/peer.log 2>&1", BAUD, len, dir, r->tty, dir);
    int rc = sh(cmd);
    snprintf(cmd, sizeof cmd, STM32FLASH " -m 8n1 -b %u -w %s/new.bin -v %s >>%s/peer.log 2>&1",
             BAUD, dir, r->tty, dir);
    if (rc == 0)
        rc = sh(cmd);
    *ms = (double)(st_now_us() - t0) / 1000.0;
    if (rc)
        fprintf(stderr, "bench_an3155: stm32flash failed (exit %d), see %s/peer.log\n", rc, dir);
    return rc;
}

/* One case: the unit holds `holds`; back up len bytes, flash img and verify, first with the
 * station, then with stm32flash on a fresh model holding the same. */
static int one_case(const char *label, const uint8_t *holds, const uint8_t *img, size_t len,
                    st_timing_profile t, const char *dir, bool check, bool expect_skip)
{
    const st_mcu *mcu = st_mcu_find("stm32g431xx");
    uint8_t *backup = malloc(len), *now = malloc(len);
    int status = 0;
    rig r;
    double st_ms = 0, peer_ms = 0;
    st_an_flash_stats fs;
    memset(&fs, 0, sizeof fs);
    st_an_model_stats ms;
    if (rig_open(&r, t, holds, len) < 0 || station_job(&r, img, len, backup, &st_ms, &fs) < 0)
        return 1;
    st_an_model_get_stats(r.model, &ms);
    st_flash_read(r.flash, 0x08000000, now, len);
    if (memcmp(backup, holds, len) != 0 || memcmp(now, img, len) != 0 ||
        (expect_skip ? fs.units_written != 0 : fs.units_written != fs.units_total)) {
        fprintf(stderr, "bench_an3155: %s: station: backup, flash contents or skips wrong\n",
                label);
        status = 1;
    }
    rig_close(&r);
    bool have_peer = access(STM32FLASH, X_OK) == 0;
    st_an_model_stats pms;
    memset(&pms, 0, sizeof pms);
    if (have_peer) {
        if (rig_open(&r, t, holds, len) < 0)
            return 1;
        if (peer_job(&r, dir, len, &peer_ms) != 0) {
            status = 1;
        } else {
            st_an_model_get_stats(r.model, &pms);
            st_flash_read(r.flash, 0x08000000, now, len);
            char bpath[160];
            snprintf(bpath, sizeof bpath, "%s/backup.bin", dir);
            FILE *b = fopen(bpath, "rb");
            size_t got = b ? fread(backup, 1, len, b) : 0;
            if (b)
                fclose(b);
            if (got != len || memcmp(backup, holds, len) != 0 || memcmp(now, img, len) != 0) {
                fprintf(stderr, "bench_an3155: %s: stm32flash: backup or flash contents wrong\n",
                        label);
                status = 1;
            }
        }
        rig_close(&r);
    }
    if (check) {
        printf("check: %s: station and %s backed up and flashed %zu bytes correctly\n", label,
               have_peer ? "stm32flash" : "(stm32flash absent)", len);
    } else {
        double lim = limit_ms(len, mcu);
        printf("== %s\n", label);
        printf("%-30s %9.1f ms\n", "wire+device limit (fresh)", lim);
        printf("%-30s %9.1f ms  ratio to limit %.3f  (model busy %.1f ms)\n", "station",
               st_ms, st_ms / lim, (double)ms.device_us / 1000.0);
        if (have_peer) {
            printf("%-30s %9.1f ms  ratio to limit %.3f  (model busy %.1f ms)\n",
                   "stm32flash -r; -w -v", peer_ms, peer_ms / lim,
                   (double)pms.device_us / 1000.0);
            printf("station / stm32flash: %.3f\n", st_ms / peer_ms);
        } else {
            printf("stm32flash absent: no peer figure\n");
        }
        printf("station: %u units, %u written, %u skipped, probe reads %llu bytes, %u "
               "commands\n", fs.units_total, fs.units_written, fs.units_skipped,
               (unsigned long long)fs.bytes_read, ms.commands);
    }
    free(backup);
    free(now);
    return status;
}

int main(int argc, char **argv)
{
    bool check = argc > 1 && strcmp(argv[1], "--check") == 0;
    size_t len = check ? 8192 : 64 * 1024;
    st_timing_profile t = check ? ST_TIMING_NONE : ST_TIMING_DATASHEET;
    uint8_t *old = pattern(len, 1), *img = pattern(len, 2);
    char dir[64];
    st_test_tmpl(dir, sizeof dir, "bench-an3155");
    if (!mkdtemp(dir))
        return 1;
    char path[128];
    snprintf(path, sizeof path, "%s/new.bin", dir);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(img, 1, len, f) != len || fclose(f) != 0)
        return 1;
    if (!check)
        printf("job: back up 64 KiB, flash a 64 KiB image and verify; STM32G431 model, "
               "datasheet profile, %u baud 8E1 wire time, on a pty\n", BAUD);
    int status = one_case("unit holds another image", old, img, len, t, dir, check, false);
    status |= one_case("unit holds the image already", img, img, len, t, dir, check, true);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    (void)system(cmd);
    free(old);
    free(img);
    return status;
}
