/* End to end: the station command line (issue 7's CLI defects): each command's own help
 * and usage errors, -v/-vv, a failing thread start, discovery on a bus without units, and
 * `can flash`'s --sha256 and slot-less units. Runs the binary on virtual fixtures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "reports/report.h"
#include "hil-tests/e2e/e2e.h"

#define SHIM STATION_BINARY_DIR "/hil-tests/e2e/libfail_pthread.so"

/* A USB DFU job over a synthetic combined image in the scratch directory. */
static void write_dfu_job(void)
{
    EXPECT_RUN(0, STATION " image generate %s/combined.bin", e2e_dir);
    char *p = strstr(e2e_out, "sha256 ");
    assert_non_null(p);
    char job[1024];
    snprintf(job, sizeof job,
             "name: cli-dfu\ntarget: stm32g431xx\n"
             "images:\n  combined: { path: combined.bin, load_addr: 0x08000000, sha256: %.64s }\n"
             "steps:\n  - enter-bootloader\n  - flash: { image: combined }\n  - verify\n"
             "  - start\n  - wait-for-app: { usb: \"1d50:614e\" }\n",
             p + 7);
    e2e_write_file("dfu-job.yaml", job);
}

static void test_command_help_and_usage(void **state)
{
    /* Each command has its own help, starting with its usage line. */
    EXPECT_RUN(0, STATION " run --help");
    if (strncmp(e2e_out, "Usage: station run JOB [OPTIONS]\n", 33) != 0)
        fail_msg("station run --help:\n%s", e2e_out);
    EXPECT_OUT("--reports DIR");
    EXPECT_NOT_OUT("image generate");
    EXPECT_RUN(0, STATION " can flash --help");
    if (strncmp(e2e_out, "Usage: station can flash IMAGE [OPTIONS]\n", 41) != 0)
        fail_msg("station can flash --help:\n%s", e2e_out);
    EXPECT_OUT("--uuid UUID");
    EXPECT_RUN(0, STATION " help job check");
    if (strncmp(e2e_out, "Usage: station job check JOB [OPTIONS]\n", 39) != 0)
        fail_msg("station help job check:\n%s", e2e_out);
    /* ...and its own usage errors. */
    EXPECT_RUN(2, STATION " run");
    EXPECT_NOT_OUT("unknown command");
    EXPECT_OUT("station: run: missing JOB");
    EXPECT_OUT("Usage: station run JOB [OPTIONS]");
    EXPECT_NOT_OUT("image generate OUT");
    EXPECT_RUN(2, STATION " run a.yaml b.yaml");
    EXPECT_OUT("station: run: unexpected argument \"b.yaml\"");
    EXPECT_RUN(2, STATION " report show --uuid 0a0b0c0d0e01 x.yaml");
    EXPECT_OUT("station: report show: --uuid is not an option of this command");
    EXPECT_RUN(2, STATION " can frobnicate");
    EXPECT_OUT("unknown command \"can frobnicate\"");
    EXPECT_RUN(0, STATION " --help");
    EXPECT_OUT("station COMMAND --help");
}

static void test_verbose_levels(void **state)
{
    write_dfu_job();
    /* A passing run: quiet by default, the engine's step lines with -v, the libraries'
     * debug lines (each DfuSe request) with -vv. */
    EXPECT_RUN(0, STATION " --plain run %s/dfu-job.yaml --slot 1 --reports %s/r0", e2e_dir, e2e_dir);
    EXPECT_NOT_OUT("station: job:");
    EXPECT_NOT_OUT("station: dfuse:");
    EXPECT_RUN(0, STATION " --plain -v run %s/dfu-job.yaml --slot 1 --reports %s/r1", e2e_dir, e2e_dir);
    EXPECT_OUT("station: job: slot 1: flash: pass");
    EXPECT_OUT("station: dfuse: opened");
    EXPECT_NOT_OUT("station: dfuse: erase 0x08000000");
    EXPECT_RUN(0, STATION " --plain -vv run %s/dfu-job.yaml --slot 1 --reports %s/r2", e2e_dir, e2e_dir);
    EXPECT_OUT("station: dfuse: erase 0x08000000");
    EXPECT_OUT("station: dfuse: write 0x08000000");
}

static void test_thread_start_failure(void **state)
{
    if (access(SHIM, R_OK) != 0)
        skip();
    write_dfu_job();
    /* The virtual fixture's two units start a clock thread each; the third thread is slot
     * 1's run, the fourth (slot 2's) cannot start. */
    int rc = e2e_run("ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0 STATION_TEST_PTHREAD_OK=3 "
                 "LD_PRELOAD=" SHIM " " STATION " --plain run %s/dfu-job.yaml --reports %s/reports",
                 e2e_dir, e2e_dir);
    if (rc != 3)
        fail_msg("exit %d, want 3:\n%s", rc, e2e_out);
    EXPECT_OUT("station: slot 2: cannot start its run: Resource temporarily unavailable");
    EXPECT_OUT("1 passed, 0 failed, 1 not started");
    char path[256];
    st_rnode *doc = e2e_load_report("reports", NULL, path);
    assert_string_equal(st_rget_str(doc, "verdict"), "pass");
    st_report_free(doc);
}

static void test_discover_without_units(void **state)
{
    char job[512];
    EXPECT_RUN(0, STATION " image generate --app %s/app.bin", e2e_dir);
    char *p = strstr(e2e_out, "sha256 ");
    assert_non_null(p);
    snprintf(job, sizeof job,
             "name: cli-discover\ntarget: stm32g431xx\nunits: discover\n"
             "images:\n  application: { path: app.bin, load_addr: 0x08002000, sha256: %.64s }\n"
             "katapult: { discover_ms: 100 }\n"
             "steps: [enter-katapult]\n", p + 7);
    e2e_write_file("discover.yaml", job);
    /* The default fixture's units are USB units: nobody answers on its bus. That is not a
     * station fault (exit 2, nothing touched), and the station says where CAN units are. */
    int rc = e2e_run(STATION " --plain run %s/discover.yaml --reports %s/reports", e2e_dir, e2e_dir);
    if (rc != 2)
        fail_msg("exit %d, want 2:\n%s", rc, e2e_out);
    EXPECT_OUT("no unit answered on vcan-virtual");
    EXPECT_OUT("fixtures/virtual-can.yaml");
}

/* One CAN unit on vcan-cli; with_uuid: its slot maps the UUID. */
static void write_can_fixture(bool with_uuid)
{
    char text[1024];
    snprintf(text, sizeof text,
             "name: cli-can\ngpio: { backend: virtual }\n"
             "timing: { reset_pulse_ms: 1, boot_settle_ms: 1 }\nslots:\n"
             "  - id: 0\n"
             "    lines: { boot0: B0, reset: { name: R0, active_low: true } }\n"
             "    usb_port: vusb-0\n"
             "    can: { iface: vcan-cli, bitrate: 1000000%s }\n"
             "    unit: { transport: can, holds: \"synthetic:1\", can_uuid: 0a0b0c0d0e01 }\n",
             with_uuid ? ", uuid: 0a0b0c0d0e01" : "");
    e2e_write_file("can-fixture.yaml", text);
}

static void test_can_flash_sha256_and_no_slot(void **state)
{
    EXPECT_RUN(0, STATION " image generate --app --seed 5 %s/app.bin", e2e_dir);
    char sha[65];
    char *p = strstr(e2e_out, "sha256 ");
    assert_non_null(p);
    memcpy(sha, p + 7, 64);
    sha[64] = '\0';
    write_can_fixture(false);
    /* A digest mismatch names the option that pinned it, not a job. */
    char wrong[65];
    memset(wrong, '0', 64);
    wrong[64] = '\0';
    EXPECT_RUN(2, STATION " --plain -f %s/can-fixture.yaml can flash %s/app.bin --uuid 0a0b0c0d0e01 "
               "--sha256 %s --reports %s/reports", e2e_dir, e2e_dir, wrong, e2e_dir);
    EXPECT_OUT("--sha256");
    EXPECT_OUT(sha);
    EXPECT_NOT_OUT("the job pins");
    /* A unit that no slot maps (slot 0 here holds it, but does not name its UUID): the run
     * and the report say it is in no slot; nothing says slot 0. */
    EXPECT_RUN(0, STATION " --plain -f %s/can-fixture.yaml can flash %s/app.bin --uuid 0a0b0c0d0e01 "
               "--sha256 %s --reports %s/reports", e2e_dir, e2e_dir, sha, e2e_dir);
    EXPECT_NOT_OUT("slot 0");
    EXPECT_OUT("unit 0a0b0c0d0e01");
    char path[256];
    st_rnode *doc = e2e_load_report("reports", NULL, path);
    assert_string_equal(st_rget_str(doc, "verdict"), "pass");
    assert_null(st_rget(doc, "slot.id"));
    assert_string_equal(st_rget_str(doc, "slot.name"), "none (found on the bus)");
    assert_non_null(strstr(path, "0a0b0c0d0e01_noslot_"));
    st_report_free(doc);
    /* The same unit in slot 0 when the slot maps it. */
    write_can_fixture(true);
    EXPECT_RUN(0, STATION " --plain -f %s/can-fixture.yaml can flash %s/app.bin --uuid 0a0b0c0d0e01 "
               "--reports %s/reports2", e2e_dir, e2e_dir, e2e_dir);
    EXPECT_OUT("slot 0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_command_help_and_usage, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_verbose_levels, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_thread_start_failure, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_discover_without_units, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_can_flash_sha256_and_no_slot, e2e_setup, e2e_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
