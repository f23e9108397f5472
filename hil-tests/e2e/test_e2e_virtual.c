/* End to end: the `station` binary on the virtual fixture, checking exit codes and the
 * content of the reports it writes (through the report reader, not by grepping). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "reports/report.h"

#define STATION STATION_BINARY_DIR "/station/station"
#define USB_JOB STATION_SOURCE_DIR "/jobs/cartographer-v4-usb-dfu.yaml"
#define USB_IMAGE STATION_SHARED_DIR "/firmware/cartographer-v4/6.0.0/Katapult_plus_CartographerV4_6.0.0__USB_lite.bin"
#define USB_SHA "fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c"

static char dir[64];     /* per-test scratch directory */
static char out[65536];  /* the command's stdout+stderr */

static int setup(void **state)
{
    strcpy(dir, "/tmp/st-e2e-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Run a shell command line, capture its output, return its exit code. */
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

static void write_file(const char *name, const char *text)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Load the only report in dir/reports whose name contains `needle` (NULL: any). */
static st_rnode *load_report(const char *needle, char *path_out)
{
    char rd[128];
    snprintf(rd, sizeof rd, "%s/reports", dir);
    DIR *d = opendir(rd);
    assert_non_null(d);
    struct dirent *de;
    char found[512] = "";
    int count = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !strstr(de->d_name, ".yaml"))
            continue;
        assert_null(strstr(de->d_name, ".tmp")); /* no torn temp files left behind */
        if (needle && !strstr(de->d_name, needle))
            continue;
        snprintf(found, sizeof found, "%s/%s", rd, de->d_name);
        count++;
    }
    closedir(d);
    if (count != 1)
        fail_msg("%d reports match \"%s\" in %s; output:\n%s", count, needle ? needle : "", rd, out);
    st_rnode *doc = NULL;
    st_err e;
    if (st_report_load(found, &doc, &e))
        fail_msg("%s", e.msg);
    if (st_report_validate(doc, &e))
        fail_msg("%s: %s", found, e.msg);
    if (path_out)
        strcpy(path_out, found);
    return doc;
}

static size_t count_reports(void)
{
    char rd[128];
    snprintf(rd, sizeof rd, "%s/reports", dir);
    DIR *d = opendir(rd);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strstr(de->d_name, ".yaml") != NULL;
    closedir(d);
    return n;
}

static void expect_str(const st_rnode *doc, const char *path, const char *want)
{
    const char *got = st_rget_str(doc, path);
    if (!got || strcmp(got, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", path, got ? got : "(absent)", want);
}

/* Every step has a start, a duration and an outcome. */
static void expect_steps_timed(const st_rnode *doc, size_t nsteps, const char *outcome)
{
    const st_rnode *steps = st_rget(doc, "steps");
    assert_non_null(steps);
    assert_int_equal(st_rnode_len(steps), nsteps);
    for (size_t i = 0; i < nsteps; i++) {
        char p[64];
        double ms;
        snprintf(p, sizeof p, "steps.%zu.duration_ms", i);
        assert_int_equal(st_rget_num(doc, p, &ms), 0);
        assert_true(ms >= 0);
        snprintf(p, sizeof p, "steps.%zu.started", i);
        assert_non_null(st_rget_str(doc, p));
        if (outcome) {
            snprintf(p, sizeof p, "steps.%zu.outcome", i);
            expect_str(doc, p, outcome);
        }
    }
}

/* A one-slot virtual fixture whose unit has the given extra YAML (faults, serial...). */
static void write_fixture(const char *unit_extra)
{
    char text[2048];
    snprintf(text, sizeof text,
             "name: e2e\n"
             "gpio: { backend: virtual }\n"
             "timing: { reset_pulse_ms: 1, boot_settle_ms: 1 }\n"
             "slots:\n"
             "  - id: 7\n"
             "    lines: { boot0: B, reset: { name: R, active_low: true } }\n"
             "    usb_port: vusb-7\n"
             "    unit:\n"
             "      transport: usb\n"
             "%s",
             unit_extra);
    write_file("fixture.yaml", text);
}

static void demo_image(void)
{
    assert_int_equal(run("mkdir -p " STATION_SOURCE_DIR "/jobs/generated && " STATION
                         " image generate " STATION_SOURCE_DIR "/jobs/generated/demo-combined.bin"), 0);
}

static void test_demo_job_two_slots(void **state)
{
    demo_image();
    int rc = run(STATION " --plain run " STATION_SOURCE_DIR "/jobs/demo-usb-dfu.yaml --reports %s/reports", dir);
    if (rc != 0)
        fail_msg("exit %d:\n%s", rc, out);
    assert_non_null(strstr(out, "2 passed, 0 failed"));
    assert_int_equal(count_reports(), 2);
    for (int slot = 1; slot <= 2; slot++) {
        char needle[16];
        snprintf(needle, sizeof needle, "_slot%d_", slot);
        st_rnode *doc = load_report(needle, NULL);
        expect_str(doc, "verdict", "pass");
        expect_str(doc, "fixture.backend", "virtual");
        expect_str(doc, "steps.0.name", "enter-bootloader");
        expect_str(doc, "steps.0.entry_method", "gpio:boot0+reset");
        expect_str(doc, "steps.2.sha256", st_rget_str(doc, "images.0.sha256"));
        expect_str(doc, "steps.4.app_usb.id", "1d50:614e");
        expect_steps_timed(doc, 5, "pass");
        assert_null(st_rget(doc, "cause"));
        st_report_free(doc);
    }
}

static void test_usb_combined_image(void **state)
{
    if (access(USB_IMAGE, R_OK) != 0)
        skip(); /* ../shared/firmware is absent */
    int rc = run(STATION " --plain run " USB_JOB " --slot 1 --reports %s/reports", dir);
    if (rc != 0)
        fail_msg("exit %d:\n%s", rc, out);
    st_rnode *doc = load_report("_slot1_", NULL);
    expect_str(doc, "verdict", "pass");
    expect_str(doc, "images.0.sha256", USB_SHA);
    expect_str(doc, "steps.2.name", "verify");
    expect_str(doc, "steps.2.sha256", USB_SHA);
    expect_steps_timed(doc, 5, "pass");
    long long pages;
    assert_int_equal(st_rget_int(doc, "steps.1.pages_written", &pages), 0);
    assert_true(pages >= 17 && pages <= 18);
    st_report_free(doc);
}

static void test_corrupt_page_fails_verify(void **state)
{
    demo_image();
    write_fixture("      faults: [\"corrupt-page:0x08004000\"]\n");
    int rc = run(STATION " --plain run " STATION_SOURCE_DIR "/jobs/demo-usb-dfu.yaml -f %s/fixture.yaml"
                 " --reports %s/reports", dir, dir);
    assert_int_equal(rc, 1);
    st_rnode *doc = load_report(NULL, NULL);
    expect_str(doc, "verdict", "fail");
    const char *cause = st_rget_str(doc, "cause");
    assert_non_null(cause);
    if (!strstr(cause, "verify") || !strstr(cause, "0x0800400"))
        fail_msg("cause does not name the step and address: %s", cause);
    expect_str(doc, "steps.2.name", "verify");
    expect_str(doc, "steps.2.outcome", "fail");
    expect_str(doc, "steps.3.outcome", "skipped");
    expect_str(doc, "steps.4.outcome", "skipped");
    assert_non_null(strstr(out, "FAIL"));
    st_report_free(doc);
}

static void test_prog_error_named(void **state)
{
    demo_image();
    write_fixture("      faults: [\"prog-error:0x08006000\"]\n");
    int rc = run(STATION " --plain run " STATION_SOURCE_DIR "/jobs/demo-usb-dfu.yaml -f %s/fixture.yaml"
                 " --reports %s/reports", dir, dir);
    assert_int_equal(rc, 1);
    st_rnode *doc = load_report(NULL, NULL);
    expect_str(doc, "steps.1.name", "flash");
    expect_str(doc, "steps.1.outcome", "fail");
    const char *dev = st_rget_str(doc, "device_errors.0");
    if (!dev || !strstr(dev, "errPROG"))
        fail_msg("device_errors.0: %s", dev ? dev : "(absent)");
    long long attempts;
    assert_int_equal(st_rget_int(doc, "steps.1.attempts", &attempts), 0);
    assert_int_equal(attempts, 3); /* first try + job retries: 2 */
    assert_non_null(strstr(st_rget_str(doc, "cause"), "0x08006"));
    st_report_free(doc);
}

static void test_pin_mismatch_refused_before_pins(void **state)
{
    demo_image();
    /* A job whose pinned digest does not match its image. The fixture path does not exist:
     * the job must be refused before the station even opens the fixture (no pin moves). */
    char job[1024];
    snprintf(job, sizeof job,
             "name: wrong-pin\ntarget: stm32g431xx\nimages:\n  combined:\n"
             "    path: %s/jobs/generated/demo-combined.bin\n    load_addr: 0x08000000\n"
             "    sha256: %s\nsteps: [enter-bootloader, flash]\n",
             STATION_SOURCE_DIR, USB_SHA);
    write_file("job.yaml", job);
    int rc = run(STATION " --plain run %s/job.yaml -f %s/no-such-fixture.yaml --reports %s/reports",
                 dir, dir, dir);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "job refused"));
    assert_non_null(strstr(out, "the job pins " USB_SHA));
    assert_null(strstr(out, "no-such-fixture"));
    assert_int_equal(count_reports(), 0);
}

static void test_hostile_serial(void **state)
{
    demo_image();
    write_fixture("      serial: \"../../x: y#\"\n");
    int rc = run(STATION " --plain run " STATION_SOURCE_DIR "/jobs/demo-usb-dfu.yaml -f %s/fixture.yaml"
                 " --reports %s/reports", dir, dir);
    if (rc != 0)
        fail_msg("exit %d:\n%s", rc, out);
    char path[512];
    st_rnode *doc = load_report(NULL, path);
    assert_non_null(strstr(path, "/reports/"));
    assert_null(strstr(path + strlen(dir) + 9, "/.."));
    const char *s = st_rget_str(doc, "unit.dfu_serial");
    assert_non_null(s);
    for (const char *p = s; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
    expect_str(doc, "verdict", "pass");
    st_report_free(doc);
    /* Nothing escaped the report directory. */
    char esc[256];
    snprintf(esc, sizeof esc, "%s/x", dir);
    assert_int_not_equal(access(esc, F_OK), 0);
}

static void test_skip_identical_and_rom_quirks(void **state)
{
    demo_image();
    /* The unit already holds the image, starts in dfuERROR, and its ROM drops off the bus
     * instead of answering the leave status: all three are normal for ST parts. */
    char extra[512];
    snprintf(extra, sizeof extra,
             "      holds: %s/jobs/generated/demo-combined.bin\n"
             "      faults: [dfu-start-error, \"dfu-leave:vanish\"]\n",
             STATION_SOURCE_DIR);
    write_fixture(extra);
    int rc = run(STATION " --plain run " STATION_SOURCE_DIR "/jobs/demo-usb-dfu.yaml -f %s/fixture.yaml"
                 " --reports %s/reports", dir, dir);
    if (rc != 0)
        fail_msg("exit %d:\n%s", rc, out);
    st_rnode *doc = load_report(NULL, NULL);
    long long written, skipped;
    assert_int_equal(st_rget_int(doc, "steps.1.pages_written", &written), 0);
    assert_int_equal(st_rget_int(doc, "steps.1.pages_skipped", &skipped), 0);
    assert_int_equal(written, 0);
    assert_int_equal(skipped, 18);
    assert_non_null(st_rget_str(doc, "steps.3.note"));
    expect_str(doc, "verdict", "pass");
    st_report_free(doc);
}

static void test_dfu_list_and_usage(void **state)
{
    int rc = run(STATION " dfu list");
    if (rc != 0)
        fail_msg("exit %d:\n%s", rc, out);
    /* Fresh virtual units have empty flash: the G4 boots its ROM (PEMPTY). */
    assert_non_null(strstr(out, "0483:df11 port vusb-1"));
    assert_non_null(strstr(out, "@Internal Flash   /0x08000000/64*02Kg"));
    assert_non_null(strstr(out, "0x08000000-0x0801FFFF  64 x 2048 bytes  rew"));
    assert_int_equal(run(STATION " --help"), 0);
    assert_non_null(strstr(out, "Exit codes"));
    assert_int_equal(run(STATION " --version"), 0);
    assert_int_equal(run(STATION " frobnicate"), 2);
    assert_int_equal(run(STATION " run"), 2);
    assert_int_equal(run(STATION " run /nonexistent.yaml"), 2);
    assert_non_null(strstr(out, "/nonexistent.yaml"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_demo_job_two_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usb_combined_image, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_page_fails_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prog_error_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pin_mismatch_refused_before_pins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_serial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_skip_identical_and_rom_quirks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dfu_list_and_usage, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
