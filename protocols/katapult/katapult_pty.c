/* katapult_pty: serve the Katapult device model on a pseudo-terminal so a real client
 * (Katapult's flashtool.py, or the station's termios link) can flash a simulated
 * STM32G431 unit: `katapult_pty --link /tmp/katapult.tty` then
 * `flashtool.py -d /tmp/katapult.tty -f app.bin`. A developer tool, not a library. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/katapult/katapult_model.h"
#include "protocols/link/pty_server.h"
#include "station/core/clock.h"
#include "station/core/image.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void on_reset(void *ctx, st_katapult_model *m)
{
    /* A real unit would now run its application; the simulated one goes back into the
     * bootloader so the next flashtool run finds it again (as with no valid app). At once,
     * from inside the model: waiting for the main loop dropped every CONNECT of the next
     * 200 ms, and flashtool then retries only after 2.5 s. */
    (*(unsigned *)ctx)++;
    st_katapult_model_reboot(m);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: katapult_pty [--link PATH] [--timing none|datasheet] [--proto 1.0|1.1]\n"
               "                    [--preload FILE] [--seconds N]\n"
               "Serves a simulated Katapult bootloader (stm32g431xx) on a pty and prints its\n"
               "path. --link also makes PATH a symlink to it. Exit codes: 0 ok, 1 error,\n"
               "2 bad usage.\n");
}

int main(int argc, char **argv)
{
    const char *link = NULL, *preload = NULL;
    st_timing_profile timing = ST_TIMING_NONE;
    uint32_t proto = 0x00010100;
    long seconds = 0;
    static const struct option opts[] = {
        {"link", required_argument, NULL, 'l'},   {"timing", required_argument, NULL, 't'},
        {"proto", required_argument, NULL, 'p'},  {"preload", required_argument, NULL, 'i'},
        {"seconds", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "l:t:p:i:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'l': link = optarg; break;
        case 'i': preload = optarg; break;
        case 's': seconds = strtol(optarg, NULL, 10); break;
        case 'p':
            if (strcmp(optarg, "1.0") == 0)
                proto = 0x00010000;
            else if (strcmp(optarg, "1.1") != 0) {
                fprintf(stderr, "katapult_pty: --proto: 1.0 or 1.1\n");
                return 2;
            }
            break;
        case 't':
            if (!st_timing_parse(optarg, &timing)) {
                fprintf(stderr, "katapult_pty: --timing: none or datasheet\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    const st_mcu *mcu = st_mcu_find("stm32g431xx");
    st_flash *flash = st_flash_new(mcu, timing);
    unsigned resets = 0;
    st_katapult_model_cfg cfg = {.proto_version = proto, .turnaround_us = 1000,
                                 .on_reset = on_reset, .reset_ctx = &resets};
    st_katapult_model *m = flash ? st_katapult_model_new(flash, &cfg) : NULL;
    if (!m) {
        fprintf(stderr, "katapult_pty: out of memory\n");
        return 1;
    }
    st_err err;
    if (preload) {
        st_image *img;
        if (st_image_load(preload, mcu->flash_start + mcu->katapult_app_offset, &img, &err)) {
            fprintf(stderr, "katapult_pty: %s\n", err.msg);
            return 1;
        }
        st_flash_preload(flash, img->load_addr, img->data, img->size);
        st_image_free(img);
    }
    st_pty_server *srv;
    if (st_pty_server_new(st_katapult_model_stream(m), NULL, &srv, &err) ||
        (link && st_pty_server_symlink(srv, link, &err))) {
        fprintf(stderr, "katapult_pty: %s\n", err.msg);
        return 1;
    }
    printf("%s\n", link ? link : st_pty_server_path(srv));
    fflush(stdout);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    st_deadline end = st_deadline_in_ms(seconds > 0 ? (uint64_t)seconds * 1000 : UINT32_MAX);
    int rc = 0;
    while (!stop_requested && !st_deadline_passed(end)) {
        if (st_pty_server_run(srv, 200, &err) < 0) {
            fprintf(stderr, "katapult_pty: %s\n", err.msg);
            rc = 1;
            break;
        }
    }
    st_pty_server_free(srv);
    st_katapult_model_free(m);
    st_flash_free(flash);
    return rc;
}
