/* Job file parsing: the shipped jobs load, and every kind of mistake is named by file,
 * line and field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "jobs/driver.h"
#include "jobs/job.h"
#include "station/drivers.h"
#include "station/core/testutil.h"

static char tmpdir[64];

static int setup(void **state)
{
    st_test_tmpl(tmpdir, sizeof tmpdir, "st-job");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_job(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

#define GOOD_HEAD                                                                          \
    "name: t\n"                                                                            \
    "target: stm32g431xx\n"                                                                \
    "images:\n"                                                                            \
    "  combined:\n"                                                                        \
    "    path: img.bin\n"                                                                  \
    "    load_addr: 0x08000000\n"                                                          \
    "    sha256: fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c\n"

static void test_good(void **state)
{
    const char *p = write_job("good.yaml", GOOD_HEAD
                              "retries: 1\n"
                              "steps:\n"
                              "  - enter-bootloader\n"
                              "  - flash: { image: combined, skip_identical: true, retries: 3 }\n"
                              "  - verify\n"
                              "  - start\n"
                              "  - wait-for-app: { usb: \"1d50:614e\", timeout_ms: 4000 }\n");
    st_job *job = NULL;
    st_err e;
    assert_int_equal(st_job_load(p, st_drivers_registry(), &job, &e), 0);
    assert_string_equal(job->name, "t");
    assert_int_equal(job->nsteps, 5);
    assert_string_equal(st_job_step_name(&job->steps[0]), "enter-bootloader");
    assert_string_equal(job->steps[0].driver->name, "dfu");
    assert_int_equal(job->steps[0].retries, 1);
    assert_string_equal(st_job_step_name(&job->steps[1]), "flash");
    assert_non_null(job->steps[1].opts); /* skip_identical, the driver's own option */
    assert_true(*(const bool *)job->steps[1].opts);
    assert_int_equal(job->steps[1].retries, 3);
    assert_int_equal(job->steps[2].image, 0);
    assert_string_equal(st_job_step_name(&job->steps[4]), "wait-for-app");
    assert_string_equal(job->steps[4].driver->name, "app");
    assert_int_equal(job->steps[4].timeout_ms, 4000);
    assert_int_equal(job->images[0].load_addr, 0x08000000u);
    char want[300];
    snprintf(want, sizeof want, "%s/img.bin", tmpdir);
    assert_string_equal(job->images[0].path, want);
    assert_int_equal(strlen(job->sha256), 64);
    st_job_free(job);
}

static void expect_error(const char *text, const char *needle1, const char *needle2)
{
    const char *p = write_job("bad.yaml", text);
    st_job *job = NULL;
    st_err e;
    st_err_clear(&e);
    int rc = st_job_load(p, st_drivers_registry(), &job, &e);
    if (rc == 0)
        fail_msg("accepted: %s", text);
    assert_null(job);
    if (!strstr(e.msg, needle1) || (needle2 && !strstr(e.msg, needle2)))
        fail_msg("error \"%s\" lacks \"%s\"/\"%s\"", e.msg, needle1, needle2 ? needle2 : "");
    assert_non_null(strstr(e.msg, "bad.yaml"));
}

static void test_errors(void **state)
{
    expect_error(GOOD_HEAD "steps:\n  - enter-bootloader\n  - flsh\n", ":10: steps[1]",
                 "unknown step \"flsh\"");
    expect_error(GOOD_HEAD "steps:\n  - flash: { image: other }\n", ":9: steps[0].flash.image",
                 "no image named \"other\"");
    expect_error(GOOD_HEAD "steps:\n  - flash: { retries: many }\n", "steps[0].flash.retries",
                 "expected a non-negative integer");
    expect_error(GOOD_HEAD "steps:\n  - wait-for-app\n", "steps[0].wait-for-app", "USB id");
    expect_error(GOOD_HEAD "steps:\n  - wait-for-app: { usb: 1d50 }\n", "usb", "USB id");
    expect_error(GOOD_HEAD "stpes: []\n", ":8: stpes", "unknown key");
    expect_error(GOOD_HEAD, "steps", "missing");
    expect_error("name: t\ntarget: stm32f999\n", ":2: target", "unknown MCU");
    expect_error("name: t\ntarget: stm32g431xx\nimages:\n  a:\n    path: x\n    load_addr: 0x8000000\n"
                 "    sha256: abc\nsteps: [start]\n",
                 ":7: images.a", "64 hex digits");
    expect_error("name: t\ntarget: stm32g431xx\nimages:\n  a:\n    path: x\n    sha256: "
                 "fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c\nsteps: [start]\n",
                 "images.a.load_addr", "missing");
    expect_error("name: [t\n", "bad.yaml:", "YAML syntax error");
    expect_error("- a\n- b\n", ":1:", "a job file is a map");
    expect_error(GOOD_HEAD "retries: 99\nsteps: [start]\n", "retries", "out of range");
}

static void test_images_refused(void **state)
{
    /* A job whose pinned digest does not match its image is refused at load time. */
    const char *img = write_job("img.bin", "not firmware at all, but 8+ bytes");
    (void)img;
    const char *p = write_job("pin.yaml", GOOD_HEAD "steps: [enter-bootloader]\n");
    st_job *job = NULL;
    st_err e;
    assert_int_equal(st_job_load(p, st_drivers_registry(), &job, &e), 0);
    st_image *imgs[ST_JOB_MAX_IMAGES];
    int rc = st_job_load_images(job, imgs, &e);
    assert_int_equal(rc, ST_ERR_INVAL); /* vector table checked before the digest */
    assert_non_null(strstr(e.msg, "images.combined"));
    assert_non_null(strstr(e.msg, "initial stack pointer"));
    assert_null(imgs[0]);

    /* a plausible image whose digest differs from the pin */
    uint8_t raw[256];
    memset(raw, 0, sizeof raw);
    uint32_t sp = 0x20008000u, rv = 0x08000081u;
    memcpy(raw, &sp, 4);
    memcpy(raw + 4, &rv, 4);
    char path[256];
    snprintf(path, sizeof path, "%s/img.bin", tmpdir);
    FILE *f = fopen(path, "wb");
    fwrite(raw, 1, sizeof raw, f);
    fclose(f);
    rc = st_job_load_images(job, imgs, &e);
    assert_int_equal(rc, ST_ERR_MISMATCH);
    assert_non_null(strstr(e.msg, "the job pins fec0c7c5"));
    st_job_free(job);
}

static void test_shipped_jobs(void **state)
{
    const char *jobs[] = { "cartographer-v4-usb-dfu.yaml", "cartographer-v4-can-dfu.yaml",
                           "demo-usb-dfu.yaml", "cartographer-v4-can-reflash.yaml",
                           "returned-units.yaml" };
    for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/jobs/%s", STATION_SOURCE_DIR, jobs[i]);
        st_job *job = NULL;
        st_err e;
        if (st_job_load(p, st_drivers_registry(), &job, &e) != 0)
            fail_msg("%s: %s", jobs[i], e.msg);
        st_job_free(job);
    }
}

/* The recovery ladder is job data: the short form takes the default rung of the driver that
 * offers one (the ROM's), the long form lists rungs with their own steps and images. */
static void test_recovery_ladder(void **state)
{
    const char *p = write_job("rec.yaml", GOOD_HEAD
                              "  app:\n"
                              "    path: app.bin\n"
                              "    load_addr: 0x08002000\n"
                              "    sha256: fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c\n"
                              "recovery: { image: combined }\n"
                              "steps: [enter-katapult, katapult-flash: { image: app }]\n");
    st_job *job = NULL;
    st_err e;
    if (st_job_load(p, st_drivers_registry(), &job, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(job->nrungs, 1);
    assert_string_equal(job->rungs[0].name, "rom-dfu");
    assert_int_equal(job->rungs[0].nsteps, 4);
    const char *want[] = { "enter-bootloader", "flash", "verify", "start" };
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(st_job_step_name(&job->rungs[0].steps[i]), want[i]);
    assert_int_equal(job->rungs[0].steps[1].image, 0);
    assert_int_equal(job->steps[1].image, 1);
    assert_string_equal(job->steps[1].driver->name, "katapult");
    st_job_free(job);

    p = write_job("rec2.yaml", GOOD_HEAD
                  "recovery:\n"
                  "  - name: power-first\n"
                  "    image: combined\n"
                  "    steps: [power-cycle, enter-bootloader, flash, start]\n"
                  "  - image: combined\n"
                  "steps: [enter-katapult]\n");
    if (st_job_load(p, st_drivers_registry(), &job, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(job->nrungs, 2);
    assert_string_equal(job->rungs[0].name, "power-first");
    assert_int_equal(job->rungs[0].nsteps, 4);
    assert_string_equal(st_job_step_name(&job->rungs[0].steps[0]), "power-cycle");
    assert_string_equal(job->rungs[1].name, "rom-dfu");
    st_job_free(job);

    expect_error(GOOD_HEAD "recovery: { image: nope }\nsteps: [start]\n", ":8: recovery.image",
                 "no image named \"nope\"");
    expect_error(GOOD_HEAD "recovery:\n  - image: combined\n    steps: [flsh]\nsteps: [start]\n",
                 "recovery[0].steps[0]", "unknown step \"flsh\"");
    expect_error(GOOD_HEAD "recovery: { image: combined, rungs: 2 }\nsteps: [start]\n",
                 "recovery.rungs", "unknown key");
    /* units: discover asks the drivers whether the job lets one find units. */
    expect_error(GOOD_HEAD "units: discover\nkatapult: { transport: usb }\nsteps: [start]\n",
                 ":8: units", "it needs katapult.transport: can");
    expect_error(GOOD_HEAD "dfu: { device: nope }\nsteps: [start]\n", ":8: dfu.device",
                 "expected a USB id");
    /* The section getters every driver shares (jobs/driver.h), through each driver. */
    expect_error(GOOD_HEAD "dfu: { device: \"0483:df1\" }\nsteps: [start]\n", ":8: dfu.device",
                 "expected a USB id like 0483:df11");
    expect_error(GOOD_HEAD "katapult: { app_usb: 1d50 }\nsteps: [start]\n",
                 ":8: katapult.app_usb", "expected a USB id like 1d50:614e");
    expect_error(GOOD_HEAD "katapult: { transport: spi }\nsteps: [start]\n",
                 ":8: katapult.transport", "expected can, usb or uart");
    expect_error(GOOD_HEAD "klipper: { transport: uart }\nsteps: [start]\n",
                 ":8: klipper.transport", "expected usb or can");
    expect_error(GOOD_HEAD "klipper: { usb: \"1d50:614e:1\" }\nsteps: [start]\n",
                 ":8: klipper.usb", "expected a USB id like 1d50:614e");
    expect_error(GOOD_HEAD "steps:\n  - wait-for-app: { usb: x }\n", ":9: steps[0].wait-for-app.usb",
                 "expected a USB id like 1d50:614e");
    expect_error(GOOD_HEAD "bgapi: { bootloader: gsdk5 }\nsteps: [start]\n",
                 ":8: bgapi.bootloader", "expected auto, gsdk3 (up to GSDK 3.2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_images_refused),
        cmocka_unit_test(test_shipped_jobs),
        cmocka_unit_test(test_recovery_ladder),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
