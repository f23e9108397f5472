/* Benchmark of the DfuSe engine against the G431 ROM DFU model with the `datasheet` timing
 * profile, through the in-memory USB bus: wall time of flash+verify versus the model's
 * device limit (erase + program + USB full-speed wire time), for a fresh unit and for one
 * that already holds the image (skip-identical). Not a ctest test: run `bench_dfuse`;
 * `bench_dfuse --check` is (label bench-smoke): it checks results, not speed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "protocols/dfuse/dfu_model.h"
#include "protocols/dfuse/dfuse.h"
#include "station/core/clock.h"

#define IMAGE STATION_SHARED_DIR \
    "/firmware/cartographer-v4/6.0.0/Katapult_plus_CartographerV4_6.0.0__USB_lite.bin"
#define PORT "1-1"

typedef struct run {
    const char *label;
    bool skip_identical, block_sequence, preload;
    uint16_t xfer;
} run;

static int bench(const st_image *img, const run *rn, double *ratio)
{
    const st_mcu *mcu = st_mcu_find("stm32g431");
    st_flash *fl = st_flash_new(mcu, ST_TIMING_DATASHEET);
    st_dfu_model_config cfg = {.transfer_size = rn->xfer, .start_in_error = true};
    st_dfu_model *m = st_dfu_model_new(fl, &cfg);
    st_vusb_bus *bus = st_vusb_bus_new();
    st_usb_host *host = NULL;
    st_dfuse *d = NULL;
    st_err err = {0};
    int rc = -1;
    if (!fl || !m || !bus)
        goto out;
    if (rn->preload)
        st_flash_preload(fl, img->load_addr, img->data, img->size);
    st_usb_dev_info info;
    if (st_vusb_attach(bus, PORT, st_dfu_model_usb(m), &err) < 0 ||
        st_usb_host_mem_new(bus, NULL, &host, &err) < 0 ||
        st_usb_host_find(host, mcu->usb_rom_dfu.vid, mcu->usb_rom_dfu.pid, PORT, &info, &err) < 0 ||
        st_dfuse_open(host, &info, NULL, &d, &err) < 0)
        goto out;
    st_dfu_limit lim;
    if (st_dfu_model_device_limit(m, img, rn->skip_identical, true, &lim) < 0)
        goto out;
    st_dfu_model_reset_counts(m);
    st_dfuse_opts o = {.skip_identical = rn->skip_identical,
                       .block_sequence = rn->block_sequence};
    st_dfuse_result res = {0};
    uint64_t t0 = st_now_us();
    rc = st_dfuse_flash(d, img, &o, &res, &err);
    if (rc == 0)
        rc = st_dfuse_verify(d, img, &o, &res, &err);
    uint64_t wall = st_now_us() - t0;
    if (rc < 0)
        goto out;
    st_dfu_model_counts c;
    st_dfu_model_get_counts(m, &c);
    *ratio = (double)wall / (double)lim.total_us;
    uint8_t want[ST_SHA256_LEN];
    st_sha256(img->data, img->size, want);
    if (memcmp(want, res.readback_sha256, sizeof want) != 0 ||
        res.pages_written + res.pages_skipped == 0 || (rn->preload && res.pages_written != 0)) {
        fprintf(stderr, "bench_dfuse: %s: read-back digest or page counts are wrong\n", rn->label);
        rc = -1;
        goto out;
    }
    printf("%-34s engine %8.1f ms  device limit %8.1f ms  ratio %.3f\n", rn->label,
           wall / 1000.0, lim.total_us / 1000.0, *ratio);
    printf("%-34s   pages erased %u written %u skipped %u; limit = erase %.1f + program %.1f"
           " + wire write %.1f + wire read %.1f ms; %u requests, %u busy waits; modelled wire %.1f"
           " + device %.1f ms\n",
           "", res.pages_erased, res.pages_written, res.pages_skipped, lim.erase_us / 1000.0,
           lim.program_us / 1000.0, lim.wire_write_us / 1000.0, lim.wire_read_us / 1000.0,
           c.total, c.busy_waits, c.wire_us / 1000.0, c.device_us / 1000.0);
out:
    if (rc < 0)
        fprintf(stderr, "bench_dfuse: %s: %s\n", rn->label, err.msg[0] ? err.msg : "setup failed");
    st_dfuse_close(d);
    st_usb_host_free(host);
    if (bus)
        st_vusb_detach(bus, PORT);
    st_vusb_bus_free(bus);
    st_dfu_model_free(m);
    st_flash_free(fl);
    return rc;
}

int main(int argc, char **argv)
{
    st_image *img = NULL;
    st_err err = {0};
    /* --check: one small fresh run and one skip-identical run, checking the results (the
     * read-back digest, page counts), never the timing: the ctest smoke test. */
    bool check = argc > 1 && strcmp(argv[1], "--check") == 0;
    if (check) {
        size_t n = 9 * 1024;
        uint8_t *data = malloc(n);
        for (size_t i = 0; i < n; i++)
            data[i] = (uint8_t)(i * 13 + (i >> 9));
        int bad = st_image_from_memory("check", data, n, 0x08000000, &img, &err) < 0;
        free(data);
        double ratio;
        const run small[] = { { "check: fresh unit", false, false, false, 2048 },
                              { "check: holds image", true, false, true, 1024 } };
        for (size_t i = 0; !bad && i < 2; i++)
            bad = bench(img, &small[i], &ratio) < 0;
        st_image_free(img);
        return bad ? 1 : 0;
    }
    if (access(IMAGE, R_OK) == 0) {
        if (st_image_load(IMAGE, 0x08000000, &img, &err) < 0) {
            fprintf(stderr, "bench_dfuse: %s\n", err.msg);
            return 1;
        }
        printf("image: %s (%zu bytes)\n", IMAGE, img->size);
    } else {
        size_t n = 36 * 1024;
        uint8_t *data = malloc(n);
        for (size_t i = 0; i < n; i++)
            data[i] = (uint8_t)(i * 7 + (i >> 8));
        if (st_image_from_memory("generated", data, n, 0x08000000, &img, &err) < 0)
            return 1;
        free(data);
        printf("image: generated, %zu bytes (%s absent)\n", n, IMAGE);
    }
    const run runs[] = {
        {"fresh unit, xfer 2048", false, false, false, 2048},
        {"fresh unit, xfer 1024", false, false, false, 1024},
        {"fresh unit, xfer 2048, block seq", false, true, false, 2048},
        {"fresh unit, xfer 1024, block seq", false, true, false, 1024},
        {"holds image, skip-identical 2048", true, false, true, 2048},
        {"holds image, skip-identical 1024", true, false, true, 1024},
    };
    int fails = 0;
    double worst = 0;
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        double ratio = 0;
        if (bench(img, &runs[i], &ratio) < 0)
            fails++;
        if (ratio > worst)
            worst = ratio;
    }
    printf("worst ratio %.3f (target <= 1.05)\n", worst);
    st_image_free(img);
    return fails ? 1 : 0;
}
