/* End to end for issue 12 with the `station` binary: `station image info` on every
 * Cartographer image and on a synthetic one, and the pre-flight refusal of an application
 * image written where it is not linked to run (before the fixture is even opened). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#define STATION STATION_BINARY_DIR "/station/station"
#define FWDIR STATION_SHARED_DIR "/firmware/cartographer-v4/6.0.0/"

static char dir[64];
static char out[65536];

static int setup(void **state)
{
    strcpy(dir, "/tmp/st-e2e-klp-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " > '%s/out.txt' 2>&1", dir);
    int st = system(cmd);
    char p[128];
    snprintf(p, sizeof p, "%s/out.txt", dir);
    FILE *f = fopen(p, "r");
    size_t got = f ? fread(out, 1, sizeof out - 1, f) : 0;
    out[got] = '\0';
    if (f)
        fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect(const char *needle)
{
    if (!strstr(out, needle))
        fail_msg("\"%s\" not in:\n%s", needle, out);
}

static void test_image_info_real(void **state)
{
    static const struct { const char *file, *lines[6]; } t[] = {
        { "CartographerV4_6.0.0_USB_lite_8kib_offset.bin",
          { "linked for: 0x08002000", "version: CARTOGRAPHER V4 6.0.0 Lite\n",
            "mcu: stm32g431xx", "transport: usb\n", "clock: 170000000 Hz", "katapult: no" } },
        { "CartographerV4_6.0.0_CAN_1M_full_8kib_offset.bin",
          { "linked for: 0x08002000", "version: CARTOGRAPHER V4 6.0.0\n",
            "mcu: stm32g431xx", "transport: can 1000000 bit/s", "clock: 170000000 Hz",
            "usb device: none" } },
        { "Katapult_plus_CartographerV4_6.0.0__USB_lite.bin",
          { "linked for: 0x08000000", "version: CARTOGRAPHER V4 6.0.0 Lite\n",
            "usb device: 1d50:6177", "transport: usb\n", "katapult: yes",
            "sha256: fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c" } },
        { "Katapult_plus_CartographerV4_6.0.0__CAN_1M.bin",
          { "linked for: 0x08000000", "version: CARTOGRAPHER V4 6.0.0\n",
            "transport: can 1000000 bit/s", "katapult: yes", "offset 0x7a18, 2904 bytes",
            "vector table: sp 0x20007ff8, reset 0x080000a1" } },
    };
    if (access(FWDIR "CartographerV4_6.0.0_USB_lite_8kib_offset.bin", R_OK) != 0)
        skip(); /* ../shared/firmware is absent */
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        int rc = run(STATION " image info " FWDIR "%s", t[i].file);
        if (rc != 0)
            fail_msg("exit %d:\n%s", rc, out);
        for (size_t k = 0; k < 6; k++)
            expect(t[i].lines[k]);
    }
}

static void test_image_info_synthetic(void **state)
{
    assert_int_equal(run(STATION " image generate %s/app.bin --app", dir), 0);
    assert_int_equal(run(STATION " image info %s/app.bin", dir), 0);
    expect("linked for: 0x08002000");
    expect("klipper dictionary: none");
    assert_int_equal(run(STATION " image info %s/nope.bin", dir), 2);
    expect("station: image info:");
    assert_int_equal(run(STATION " image info %s/app.bin --mcu z80", dir), 2);
    expect("unknown MCU");
}

/* An application-only image (linked for 0x08002000) in a ROM DFU job at 0x08000000. */
static void refuse_app_at_zero(const char *image)
{
    char job[1024], path[256], sha[65];
    assert_int_equal(run(STATION " image info %s", image), 0);
    const char *p = strstr(out, "sha256: ");
    assert_non_null(p);
    memcpy(sha, p + 8, 64);
    sha[64] = '\0';
    snprintf(job, sizeof job,
             "name: app-at-zero\ntarget: stm32g431xx\nimages:\n  app:\n"
             "    path: %s\n    load_addr: 0x08000000\n    sha256: %s\n"
             "steps: [enter-bootloader, flash, verify, start]\n",
             image, sha);
    snprintf(path, sizeof path, "%s/job.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(job, f);
    fclose(f);
    int rc = run(STATION " --plain run %s/job.yaml -f %s/no-such-fixture.yaml --reports %s/reports",
                 dir, dir, dir);
    if (rc != 2)
        fail_msg("exit %d:\n%s", rc, out);
    expect("linked for 0x08002000");
    expect("written at 0x08000000");
    if (strstr(out, "no-such-fixture"))
        fail_msg("the fixture was opened before the refusal:\n%s", out);
    char rd[128];
    snprintf(rd, sizeof rd, "%s/reports", dir);
    assert_int_not_equal(access(rd, F_OK), 0); /* no report: nothing was touched */
}

static void test_app_image_at_zero_refused(void **state)
{
    char img[128];
    snprintf(img, sizeof img, "%s/app.bin", dir);
    assert_int_equal(run(STATION " image generate %s --app", img), 0);
    refuse_app_at_zero(img);
    if (access(FWDIR "CartographerV4_6.0.0_USB_lite_8kib_offset.bin", R_OK) == 0)
        refuse_app_at_zero(FWDIR "CartographerV4_6.0.0_USB_lite_8kib_offset.bin");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_image_info_real, setup, teardown),
        cmocka_unit_test_setup_teardown(test_image_info_synthetic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_app_image_at_zero_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
