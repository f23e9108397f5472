/* End to end: the `station` binary on the virtual fixture, checking exit codes and the
 * content of the reports it writes (through the report reader, not by grepping). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <poll.h>
#include <pty.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "reports/report.h"
#include "hil-tests/e2e/e2e.h"

#define USB_JOB STATION_SOURCE_DIR "/jobs/cartographer-v4-usb-dfu.yaml"
#define USB_IMAGE STATION_SHARED_DIR "/firmware/cartographer-v4/6.0.0/Katapult_plus_CartographerV4_6.0.0__USB_lite.bin"
#define USB_SHA "fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c"

static int bad_reports;

/* nftw callback: every unit report a test left validates (issue 8: every report the suite
 * writes, whatever the test checked). Reports are "<identity>_slot<N>_<time>.yaml". */
static int validate_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    const char *base = p + ftw->base;
    size_t l = strlen(base);
    if (flag != FTW_F || l < 5 || strcmp(base + l - 5, ".yaml") != 0 || !strstr(base, "_slot"))
        return 0;
    st_rnode *doc = NULL;
    st_err e;
    if (st_report_load(p, &doc, &e) != 0 || st_report_validate(doc, &e) != 0) {
        print_error("report %s does not validate: %s\n", p, e.msg);
        bad_reports++;
    }
    st_report_free(doc);
    return 0;
}

static int teardown(void **state)
{
    bad_reports = 0;
    nftw(e2e_dir, validate_one, 16, FTW_PHYS);
    return e2e_teardown(state) == 0 && bad_reports == 0 ? 0 : -1;
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
            e2e_expect_str(doc, p, outcome);
        }
    }
}

static void demo_image(void)
{
    assert_int_equal(e2e_run("mkdir -p " STATION_SOURCE_DIR "/jobs/generated && " STATION
                         " image generate " STATION_SOURCE_DIR "/jobs/generated/demo-combined.bin"), 0);
}

/* A run id is an RFC 4122 random UUID (version 4, variant 10xx) in lower-case hex:
 * ids must be unique across stations (issue 7), which a timestamp plus a PID is not. */
static void expect_uuid_v4(const char *id)
{
    assert_non_null(id);
    if (strlen(id) != 36)
        fail_msg("run.id \"%s\" is not a UUID", id);
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? id[i] != '-' : !strchr("0123456789abcdef", id[i]))
            fail_msg("run.id \"%s\" is not a UUID", id);
    }
    if (id[14] != '4' || !strchr("89ab", id[19]))
        fail_msg("run.id \"%s\" is not a random (version 4) UUID", id);
}

static void test_demo_job_two_slots(void **state)
{
    demo_image();
    EXPECT_RUN(0, STATION " --plain run " STATION_SOURCE_DIR "/jobs/demo-usb-dfu.yaml --reports %s/reports", e2e_dir);
    assert_non_null(strstr(e2e_out, "2 passed, 0 failed"));
    assert_int_equal(e2e_count_reports("reports"), 2);
    char run_id[64] = "";
    for (int slot = 1; slot <= 2; slot++) {
        char needle[32];
        /* Named after the ROM's DFU serial (the unit's identity on the DFU path). */
        snprintf(needle, sizeof needle, "0A1B2C3D4E0%d_slot%d_", slot, slot);
        st_rnode *doc = e2e_load_report("reports", needle, NULL);
        e2e_expect_str(doc, "verdict", "pass");
        e2e_expect_str(doc, "fixture.backend", "virtual");
        e2e_expect_str(doc, "steps.0.name", "enter-bootloader");
        e2e_expect_str(doc, "steps.0.entry_method", "gpio:boot0+reset");
        e2e_expect_str(doc, "steps.2.sha256", st_rget_str(doc, "images.0.sha256"));
        e2e_expect_str(doc, "steps.4.app_usb.id", "1d50:614e");
        expect_steps_timed(doc, 5, "pass");
        assert_null(st_rget(doc, "cause"));
        const char *id = st_rget_str(doc, "run.id");
        expect_uuid_v4(id);
        if (slot == 1)
            snprintf(run_id, sizeof run_id, "%s", id);
        else
            e2e_expect_str(doc, "run.id", run_id); /* one id for the slots of one run */
        st_report_free(doc);
    }
    /* A second run of the same job on the same station gets a new id. */
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/reports'", e2e_dir);
    assert_int_equal(system(cmd), 0);
    EXPECT_RUN(0, STATION " --plain run " STATION_SOURCE_DIR "/jobs/demo-usb-dfu.yaml --slot 1 --reports %s/reports", e2e_dir);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    const char *id = st_rget_str(doc, "run.id");
    expect_uuid_v4(id);
    if (strcmp(id, run_id) == 0)
        fail_msg("two runs share the id %s", id);
    st_report_free(doc);
}

static void test_usb_combined_image(void **state)
{
    if (access(USB_IMAGE, R_OK) != 0)
        skip(); /* ../shared/firmware is absent */
    EXPECT_RUN(0, STATION " --plain run " USB_JOB " --slot 1 --reports %s/reports", e2e_dir);
    st_rnode *doc = e2e_load_report("reports", "_slot1_", NULL);
    e2e_expect_str(doc, "verdict", "pass");
    e2e_expect_str(doc, "images.0.sha256", USB_SHA);
    e2e_expect_str(doc, "steps.2.name", "verify");
    e2e_expect_str(doc, "steps.2.sha256", USB_SHA);
    expect_steps_timed(doc, 5, "pass");
    long long pages;
    assert_int_equal(st_rget_int(doc, "steps.1.pages_written", &pages), 0);
    assert_true(pages >= 17 && pages <= 18);
    st_report_free(doc);
}

static void test_corrupt_page_fails_verify(void **state)
{
    demo_image();
    e2e_write_fixture("e2e", "      faults: [\"corrupt-page:0x08004000\"]\n");
    int rc = e2e_run(STATION " --plain run " STATION_SOURCE_DIR "/jobs/demo-usb-dfu.yaml -f %s/fixture.yaml"
                 " --reports %s/reports", e2e_dir, e2e_dir);
    assert_int_equal(rc, 1);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    e2e_expect_str(doc, "verdict", "fail");
    const char *cause = st_rget_str(doc, "cause");
    assert_non_null(cause);
    if (!strstr(cause, "verify") || !strstr(cause, "0x0800400"))
        fail_msg("cause does not name the step and address: %s", cause);
    e2e_expect_str(doc, "steps.2.name", "verify");
    e2e_expect_str(doc, "steps.2.outcome", "fail");
    e2e_expect_str(doc, "steps.3.outcome", "skipped");
    e2e_expect_str(doc, "steps.4.outcome", "skipped");
    assert_non_null(strstr(e2e_out, "FAIL"));
    st_report_free(doc);
}

static void test_prog_error_named(void **state)
{
    demo_image();
    e2e_write_fixture("e2e", "      faults: [\"prog-error:0x08006000\"]\n");
    int rc = e2e_run(STATION " --plain run " STATION_SOURCE_DIR "/jobs/demo-usb-dfu.yaml -f %s/fixture.yaml"
                 " --reports %s/reports", e2e_dir, e2e_dir);
    assert_int_equal(rc, 1);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    e2e_expect_str(doc, "steps.1.name", "flash");
    e2e_expect_str(doc, "steps.1.outcome", "fail");
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
    e2e_write_file("job.yaml", job);
    int rc = e2e_run(STATION " --plain run %s/job.yaml -f %s/no-such-fixture.yaml --reports %s/reports",
                 e2e_dir, e2e_dir, e2e_dir);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(e2e_out, "job refused"));
    assert_non_null(strstr(e2e_out, "the job pins " USB_SHA));
    assert_null(strstr(e2e_out, "no-such-fixture"));
    assert_int_equal(e2e_count_reports("reports"), 0);
}

static void test_hostile_serial(void **state)
{
    demo_image();
    e2e_write_fixture("e2e", "      serial: \"../../x: y#\"\n");
    EXPECT_RUN(0, STATION " --plain run " STATION_SOURCE_DIR "/jobs/demo-usb-dfu.yaml -f %s/fixture.yaml"
                 " --reports %s/reports", e2e_dir, e2e_dir);
    char path[512];
    st_rnode *doc = e2e_load_report("reports", NULL, path);
    assert_non_null(strstr(path, "/reports/"));
    assert_null(strstr(path + strlen(e2e_dir) + 9, "/.."));
    const char *s = st_rget_str(doc, "unit.dfu_serial");
    assert_non_null(s);
    for (const char *p = s; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
    /* A fresh (erased) unit: skip_identical finds the pages the image covers whole blank
     * and writes them without an erase; only a partial page is erased. */
    long long written, erased, blank;
    assert_int_equal(st_rget_int(doc, "steps.1.pages_written", &written), 0);
    assert_int_equal(st_rget_int(doc, "steps.1.pages_erased", &erased), 0);
    assert_int_equal(st_rget_int(doc, "steps.1.pages_blank", &blank), 0);
    assert_true(blank > 0);
    assert_true(erased <= 1);
    assert_int_equal(blank + erased, written);
    e2e_expect_str(doc, "verdict", "pass");
    st_report_free(doc);
    /* Nothing escaped the report directory. */
    char esc[256];
    snprintf(esc, sizeof esc, "%s/x", e2e_dir);
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
    e2e_write_fixture("e2e", extra);
    EXPECT_RUN(0, STATION " --plain run " STATION_SOURCE_DIR "/jobs/demo-usb-dfu.yaml -f %s/fixture.yaml"
                 " --reports %s/reports", e2e_dir, e2e_dir);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    long long written, skipped;
    assert_int_equal(st_rget_int(doc, "steps.1.pages_written", &written), 0);
    assert_int_equal(st_rget_int(doc, "steps.1.pages_skipped", &skipped), 0);
    assert_int_equal(written, 0);
    assert_int_equal(skipped, 18);
    long long blank;
    assert_int_equal(st_rget_int(doc, "steps.1.pages_blank", &blank), 0);
    assert_int_equal(blank, 0);
    assert_non_null(st_rget_str(doc, "steps.3.note"));
    e2e_expect_str(doc, "verdict", "pass");
    st_report_free(doc);
}

static void test_dfu_list_and_usage(void **state)
{
    EXPECT_RUN(0, STATION " dfu list");
    /* Fresh virtual units have empty flash: the G4 boots its ROM (PEMPTY). */
    assert_non_null(strstr(e2e_out, "0483:df11 port vusb-1"));
    assert_non_null(strstr(e2e_out, "@Internal Flash   /0x08000000/64*02Kg"));
    assert_non_null(strstr(e2e_out, "0x08000000-0x0801FFFF  64 x 2048 bytes  rew"));
    assert_int_equal(e2e_run(STATION " --help"), 0);
    assert_non_null(strstr(e2e_out, "Exit codes"));
    assert_int_equal(e2e_run(STATION " --version"), 0);
    assert_int_equal(e2e_run(STATION " frobnicate"), 2);
    assert_int_equal(e2e_run(STATION " run"), 2);
    assert_int_equal(e2e_run(STATION " run /nonexistent.yaml"), 2);
    assert_non_null(strstr(e2e_out, "/nonexistent.yaml"));
}

/* ---- terminal output: NO_COLOR and TERM=dumb ---------------------------------------- */

/* Run the station on a pseudo-terminal (so isatty() is true, as for an operator) with TERM
 * and NO_COLOR set as given (NULL: unset); collect everything it writes into out. */
static int run_on_pty(const char *term, const char *no_color, char *const argv[])
{
    int master;
    struct winsize ws = { .ws_row = 40, .ws_col = 200 };
    pid_t pid = forkpty(&master, NULL, NULL, &ws);
    assert_true(pid >= 0);
    if (pid == 0) {
        term ? setenv("TERM", term, 1) : unsetenv("TERM");
        no_color ? setenv("NO_COLOR", no_color, 1) : unsetenv("NO_COLOR");
        execv(argv[0], argv);
        _exit(127);
    }
    size_t got = 0;
    for (;;) {
        struct pollfd pfd = { master, POLLIN, 0 };
        if (poll(&pfd, 1, 30000) <= 0)
            break;
        ssize_t n = read(master, e2e_out + got, sizeof e2e_out - 1 - got);
        if (n <= 0)
            break; /* EIO: the child closed its side */
        got += (size_t)n;
        if (got == sizeof e2e_out - 1)
            break;
    }
    e2e_out[got] = '\0';
    close(master);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_no_color_and_dumb_terminal(void **state)
{
    demo_image();
    char reports[128];
    snprintf(reports, sizeof reports, "%s/reports", e2e_dir);
    char *run_argv[] = { STATION, "run", STATION_SOURCE_DIR "/jobs/demo-usb-dfu.yaml", "--slot", "1",
                         "--reports", reports, NULL };
    /* A capable terminal gets the bars redrawn in place (so the check below can fail). */
    assert_int_equal(run_on_pty("xterm", NULL, run_argv), 0);
    if (!strstr(e2e_out, "\033["))
        fail_msg("no cursor movement on an xterm:\n%s", e2e_out);
    char path[512];
    st_rnode *doc = e2e_load_report("reports", NULL, path);
    st_report_free(doc);
    /* TERM=dumb: no escape sequence at all; the run still reports every step. */
    assert_int_equal(run_on_pty("dumb", NULL, run_argv), 0);
    if (strchr(e2e_out, '\033'))
        fail_msg("escape sequences with TERM=dumb:\n%s", e2e_out);
    assert_non_null(strstr(e2e_out, "PASS"));
    assert_int_equal(run_on_pty(NULL, NULL, run_argv), 0);
    assert_null(strchr(e2e_out, '\033'));

    char *show_argv[] = { STATION, "report", "show", path, NULL };
    assert_int_equal(run_on_pty("xterm", NULL, show_argv), 0);
    if (!strstr(e2e_out, "\033[1;32m"))
        fail_msg("no colour on an xterm:\n%s", e2e_out);
    /* NO_COLOR (any non-empty value): no colour escapes. */
    assert_int_equal(run_on_pty("xterm", "1", show_argv), 0);
    if (strchr(e2e_out, '\033'))
        fail_msg("colour escapes with NO_COLOR=1:\n%s", e2e_out);
    assert_non_null(strstr(e2e_out, "pass"));
    assert_int_equal(run_on_pty("dumb", NULL, show_argv), 0);
    assert_null(strchr(e2e_out, '\033'));
    /* NO_COLOR="" is "unset" (no-color.org). */
    assert_int_equal(run_on_pty("xterm", "", show_argv), 0);
    assert_non_null(strstr(e2e_out, "\033[1;32m"));
}

/* ---- Katapult over CAN and USB-CDC ------------------------------------------------- */

#define CAN_APP STATION_SHARED_DIR "/firmware/cartographer-v4/6.0.0/CartographerV4_6.0.0_CAN_1M_full_8kib_offset.bin"
#define USB_APP STATION_SHARED_DIR "/firmware/cartographer-v4/6.0.0/CartographerV4_6.0.0_USB_lite_8kib_offset.bin"
#define CAN_APP_SHA1 "190E0FF0DFBFE6585680012B572F175BF9F3F171"
#define USB_APP_SHA1 "FCA6E37F4D9F344E7AF18C7609AEBBCFD6E597E0"

/* Synthetic images in the scratch dir: an application (seed) and its combined image. */
static void synth_images(unsigned seed, char app_sha[65], char comb_sha[65])
{
    assert_int_equal(e2e_run(STATION " image generate --app --seed %u %s/app.bin", seed, e2e_dir), 0);
    char *p = strstr(e2e_out, "sha256 ");
    assert_non_null(p);
    memcpy(app_sha, p + 7, 64);
    app_sha[64] = '\0';
    assert_int_equal(e2e_run(STATION " image generate --seed %u %s/combined.bin", seed, e2e_dir), 0);
    p = strstr(e2e_out, "sha256 ");
    assert_non_null(p);
    memcpy(comb_sha, p + 7, 64);
    comb_sha[64] = '\0';
}

/* A CAN reflash job over the scratch images; units: slots or discover; recovery or not. */
static void write_can_job(const char *units, bool recovery, const char *app_sha, const char *comb_sha)
{
    char job[2048];
    snprintf(job, sizeof job,
             "name: e2e-can\ntarget: stm32g431xx\n"
             "images:\n"
             "  application: { path: app.bin, load_addr: 0x08002000, sha256: %s }\n"
             "  combined: { path: combined.bin, load_addr: 0x08000000, sha256: %s }\n"
             "units: %s\n"
             "katapult: { transport: can, bitrate: 1000000, timeout_ms: 100, tries: 2, discover_ms: 300 }\n"
             "%s"
             "retries: 1\n"
             "steps:\n"
             "  - enter-katapult\n"
             "  - read-app\n"
             "  - katapult-flash: { skip_identical: true }\n"
             "  - katapult-verify\n"
             "  - katapult-complete\n"
             "  - wait-for-app: { can: true, timeout_ms: 3000 }\n",
             app_sha, comb_sha, units, recovery ? "recovery: { image: combined }\n" : "");
    e2e_write_file("can-job.yaml", job);
}

/* n CAN units in slots 1..n, unit i holding synthetic:i, with extra YAML for slot 1. */
static void write_can_fixture(int n, const char *slot1_extra)
{
    char text[4096];
    int o = snprintf(text, sizeof text,
                     "name: e2e-can\ngpio: { backend: virtual }\n"
                     "timing: { reset_pulse_ms: 1, boot_settle_ms: 1 }\nslots:\n");
    for (int i = 1; i <= n; i++)
        o += snprintf(text + o, sizeof text - (size_t)o,
                      "  - id: %d\n"
                      "    lines: { boot0: B%d, reset: { name: R%d, active_low: true } }\n"
                      "    usb_port: vusb-%d\n"
                      "    can: { iface: vcan-e2e, bitrate: 1000000, uuid: 0a0b0c0d0e%02x }\n"
                      "    unit:\n"
                      "      transport: can\n"
                      "      holds: \"synthetic:%d\"\n"
                      "      can_uuid: 0a0b0c0d0e%02x\n%s",
                      i, i, i, i, i, i, i, i == 1 && slot1_extra ? slot1_extra : "");
    e2e_write_file("can-fixture.yaml", text);
}

/* Ctrl-C / SIGTERM during CAN discovery (setup, before any unit is touched): exit 4 and
 * no report, not death by the signal (130/143 from a shell). */
static void sig_during_discovery(int sig)
{
    char app_sha[65], comb_sha[65];
    synth_images(9, app_sha, comb_sha);
    write_can_fixture(2, NULL);
    write_can_job("discover", false, app_sha, comb_sha);
    /* A long discovery window, so the signal lands inside it. */
    char p[128];
    snprintf(p, sizeof p, "%s/can-job.yaml", e2e_dir);
    assert_int_equal(e2e_run("sed -i 's/discover_ms: 300/discover_ms: 3000/' %s", p), 0);
    int rc = e2e_run("cd %s && (" STATION " --plain run can-job.yaml -f can-fixture.yaml --reports "
                 "reports & pid=$!; sleep 0.5; kill -%d $pid; wait $pid; echo \"rc=$?\")",
                 e2e_dir, sig);
    (void)rc;
    if (!strstr(e2e_out, "rc=4"))
        fail_msg("signal %d during discovery: expected exit 4:\n%s", sig, e2e_out);
    assert_non_null(strstr(e2e_out, "stopped by the operator before any unit was touched"));
    assert_int_equal(e2e_count_reports("reports"), 0);
}

static void test_sigint_during_discovery(void **state)
{
    sig_during_discovery(SIGINT);
}

static void test_sigterm_during_discovery(void **state)
{
    sig_during_discovery(SIGTERM);
}

/* A board that is not the job's target: unit.mcu says what the unit reported, and the
 * unit fails before anything is written. */
static void test_wrong_mcu_recorded(void **state)
{
    char app_sha[65], comb_sha[65];
    synth_images(9, app_sha, comb_sha);
    write_can_fixture(1, "      faults: [\"katapult-mcu:stm32f072xb\"]\n");
    write_can_job("slots", false, app_sha, comb_sha);
    EXPECT_RUN(1, STATION " --plain run %s/can-job.yaml -f %s/can-fixture.yaml --reports %s/reports",
                 e2e_dir, e2e_dir, e2e_dir);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    e2e_expect_str(doc, "verdict", "fail");
    e2e_expect_str(doc, "unit.mcu", "stm32f072xb");
    e2e_expect_str(doc, "steps.0.katapult.mcu", "stm32f072xb");
    assert_non_null(strstr(st_rget_str(doc, "cause"),
                           "unit reports MCU 'stm32f072xb' but the image is for 'stm32g431xx'"));
    st_report_free(doc);
}

static void test_returned_units_synthetic(void **state)
{
    char app_sha[65], comb_sha[65];
    synth_images(9, app_sha, comb_sha);
    write_can_fixture(3, NULL);
    write_can_job("discover", true, app_sha, comb_sha);
    EXPECT_RUN(0, STATION " --plain run %s/can-job.yaml -f %s/can-fixture.yaml --reports %s/reports",
                 e2e_dir, e2e_dir, e2e_dir);
    assert_non_null(strstr(e2e_out, "3 passed, 0 failed"));
    assert_int_equal(e2e_count_reports("reports"), 3);
    for (int i = 1; i <= 3; i++) {
        char uuid[16];
        snprintf(uuid, sizeof uuid, "0a0b0c0d0e%02x_", i);
        st_rnode *doc = e2e_load_report("reports", uuid, NULL);
        e2e_expect_str(doc, "verdict", "pass");
        e2e_expect_str(doc, "unit.after_sha256", app_sha);
        const char *before = st_rget_str(doc, "unit.before_sha256");
        assert_non_null(before);
        assert_string_not_equal(before, app_sha); /* it held an older application */
        e2e_expect_str(doc, "steps.0.entry_method", "can:request-bootloader");
        e2e_expect_str(doc, "steps.0.katapult.mcu", "stm32g431xx");
        e2e_expect_str(doc, "steps.3.sha1", st_rget_str(doc, "steps.2.sha1"));
        e2e_expect_str(doc, "steps.5.app", "klipper (answers QUERY on the CAN bus)");
        expect_steps_timed(doc, 6, "pass");
        st_report_free(doc);
    }
}

static void test_returned_units_real(void **state)
{
    if (access(CAN_APP, R_OK) != 0)
        skip(); /* ../shared/firmware is absent */
    EXPECT_RUN(0, STATION " --plain run " STATION_SOURCE_DIR "/jobs/returned-units.yaml -f "
                 STATION_SOURCE_DIR "/fixtures/virtual-can.yaml --reports %s/reports", e2e_dir);
    assert_int_equal(e2e_count_reports("reports"), 3);
    for (int i = 1; i <= 3; i++) {
        char uuid[16];
        snprintf(uuid, sizeof uuid, "11aa22bb33c%d_", i);
        st_rnode *doc = e2e_load_report("reports", uuid, NULL);
        e2e_expect_str(doc, "verdict", "pass");
        assert_non_null(st_rget_str(doc, "unit.before_sha256"));
        e2e_expect_str(doc, "unit.after_sha256", "25f27494a2b1d1932bc50f5b4a2c28f587347a1edc09ba154e2dc7b8792d746d");
        e2e_expect_str(doc, "unit.after_sha1", CAN_APP_SHA1);
        e2e_expect_str(doc, "steps.3.sha1", CAN_APP_SHA1);
        long long pages, blocks;
        assert_int_equal(st_rget_int(doc, "steps.2.pages_written", &pages), 0);
        assert_int_equal(st_rget_int(doc, "steps.3.blocks", &blocks), 0);
        assert_int_equal(pages, 14);
        assert_int_equal(blocks, 426);
        st_report_free(doc);
    }
}

static void test_serial_flash_known_answer(void **state)
{
    if (access(USB_APP, R_OK) != 0)
        skip(); /* ../shared/firmware is absent */
    /* A unit running the Klipper application over USB: the 1200-baud touch takes it to
     * Katapult, which comes back on the same port as 1d50:6177 (seed 001). */
    e2e_write_fixture("e2e", "      holds: \"synthetic:4\"\n");
    EXPECT_RUN(0, STATION " --plain -f %s/fixture.yaml serial flash " USB_APP
                 " --slot 7 --reports %s/reports", e2e_dir, e2e_dir);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    e2e_expect_str(doc, "verdict", "pass");
    e2e_expect_str(doc, "steps.0.entry_method", "usb:1200-baud-touch");
    long long pages, blocks;
    assert_int_equal(st_rget_int(doc, "steps.2.pages_written", &pages), 0);
    assert_int_equal(st_rget_int(doc, "steps.3.blocks", &blocks), 0);
    assert_int_equal(pages, 14);
    assert_int_equal(blocks, 435);
    e2e_expect_str(doc, "steps.3.sha1", USB_APP_SHA1);
    e2e_expect_str(doc, "steps.5.app_usb.id", "1d50:614e");
    st_report_free(doc);
    /* Run it again: the unit already holds the image, nothing is rewritten. */
    EXPECT_RUN(0, STATION " --plain -f %s/fixture.yaml serial flash " USB_APP
             " --slot 7 --reports %s/reports2", e2e_dir, e2e_dir);
}

static void test_cut_off_recovered_through_rom(void **state)
{
    char app_sha[65], comb_sha[65];
    synth_images(11, app_sha, comb_sha);
    /* Unit 1 loses power while Katapult writes its 40th block; unit 2 is untouched by that. */
    write_can_fixture(2, "      faults: [\"katapult-power-loss:40\"]\n");
    write_can_job("slots", true, app_sha, comb_sha);
    EXPECT_RUN(0, STATION " --plain run %s/can-job.yaml -f %s/can-fixture.yaml --reports %s/reports",
                 e2e_dir, e2e_dir, e2e_dir);
    st_rnode *doc = e2e_load_report("reports", "0a0b0c0d0e01_", NULL);
    e2e_expect_str(doc, "verdict", "pass");
    e2e_expect_str(doc, "recovery.rung", "rom-dfu");
    e2e_expect_str(doc, "recovery.outcome", "pass");
    e2e_expect_str(doc, "steps.2.name", "katapult-flash");
    e2e_expect_str(doc, "steps.2.outcome", "fail");
    long long block;
    assert_int_equal(st_rget_int(doc, "steps.2.block", &block), 0);
    assert_true(block >= 30 && block <= 40);
    const char *why = st_rget_str(doc, "recovery.reason");
    assert_non_null(why);
    assert_non_null(strstr(why, "SEND_BLOCK"));
    e2e_expect_str(doc, "steps.3.name", "recover:enter-bootloader");
    e2e_expect_str(doc, "steps.4.name", "recover:flash");
    e2e_expect_str(doc, "steps.5.name", "recover:verify");
    e2e_expect_str(doc, "steps.5.sha256", comb_sha);
    e2e_expect_str(doc, "steps.6.name", "recover:start");
    e2e_expect_str(doc, "steps.9.name", "wait-for-app");
    e2e_expect_str(doc, "steps.9.outcome", "pass");
    st_report_free(doc);
    doc = e2e_load_report("reports", "0a0b0c0d0e02_", NULL);
    e2e_expect_str(doc, "verdict", "pass");
    assert_null(st_rget(doc, "recovery"));
    e2e_expect_str(doc, "unit.after_sha256", app_sha);
    st_report_free(doc);
}

static void test_cut_off_without_recovery_fails(void **state)
{
    char app_sha[65], comb_sha[65];
    synth_images(12, app_sha, comb_sha);
    write_can_fixture(1, "      faults: [\"katapult-power-loss:5\"]\n");
    write_can_job("slots", false, app_sha, comb_sha);
    int rc = e2e_run(STATION " --plain run %s/can-job.yaml -f %s/can-fixture.yaml --reports %s/reports",
                 e2e_dir, e2e_dir, e2e_dir);
    assert_int_equal(rc, 1);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    e2e_expect_str(doc, "verdict", "fail");
    e2e_expect_str(doc, "recovery.rung", "none: needs rom-dfu");
    const char *cause = st_rget_str(doc, "cause");
    assert_non_null(cause);
    assert_non_null(strstr(cause, "needs ROM recovery"));
    assert_non_null(strstr(cause, "SEND_BLOCK 0x0800"));
    st_report_free(doc);
}

/* A Katapult that never answers COMPLETE (katapult-silent-complete) still starts the
 * application: the lost answer is not fatal on any transport (jobs/README.md). Over USB
 * the reset takes the CDC device away while the answer is awaited (a disconnect, not a
 * timeout); it used to end `fail` with "no Katapult session" on the retry. */
static void silent_complete(bool usb)
{
    char app_sha[65], comb_sha[65];
    synth_images(9, app_sha, comb_sha);
    if (usb) {
        e2e_write_fixture("e2e", "      holds: \"synthetic:4\"\n"
                      "      faults: [\"katapult-silent-complete\"]\n");
        char job[1024];
        snprintf(job, sizeof job,
                 "name: e2e-usb-kat\ntarget: stm32g431xx\n"
                 "images:\n  application: { path: app.bin, load_addr: 0x08002000, sha256: %s }\n"
                 "katapult: { transport: usb, timeout_ms: 100, tries: 2 }\n"
                 "retries: 1\n"
                 "steps:\n  - enter-katapult\n  - katapult-flash\n  - katapult-verify\n"
                 "  - katapult-complete\n  - wait-for-app: { usb: \"1d50:614e\", timeout_ms: 3000 }\n",
                 app_sha);
        e2e_write_file("usb-job.yaml", job);
    } else {
        write_can_fixture(1, "      faults: [\"katapult-silent-complete\"]\n");
        write_can_job("slots", false, app_sha, comb_sha);
    }
    int rc = usb ? e2e_run(STATION " --plain run %s/usb-job.yaml -f %s/fixture.yaml --reports %s/reports",
                       e2e_dir, e2e_dir, e2e_dir)
                 : e2e_run(STATION " --plain run %s/can-job.yaml -f %s/can-fixture.yaml --reports %s/reports",
                       e2e_dir, e2e_dir, e2e_dir);
    if (rc != 0)
        fail_msg("exit %d:\n%s", rc, e2e_out);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    e2e_expect_str(doc, "verdict", "pass");
    e2e_expect_str(doc, "unit.after_sha256", app_sha);
    int i = usb ? 3 : 4;
    char p[64];
    snprintf(p, sizeof p, "steps.%d.name", i);
    e2e_expect_str(doc, p, "katapult-complete");
    snprintf(p, sizeof p, "steps.%d.outcome", i);
    e2e_expect_str(doc, p, "pass");
    snprintf(p, sizeof p, "steps.%d.note", i);
    e2e_expect_str(doc, p, "COMPLETE was not acknowledged; the unit may have started");
    snprintf(p, sizeof p, "steps.%d.outcome", i + 1);
    e2e_expect_str(doc, p, "pass"); /* wait-for-app: the application did start */
    st_report_free(doc);
}

static void test_silent_complete_usb(void **state)
{
    silent_complete(true);
}

static void test_silent_complete_can(void **state)
{
    silent_complete(false);
}

/* CONNECT answered with NACKs over CAN: the unit has taken its node id and no longer
 * answers QUERY, so the retry reaches it at that id (it used to fail with "did not answer
 * as Katapult", hiding the NACKs, and leave the unit in Katapult). A storm longer than
 * every try fails with the NACK as its cause. */
static void test_can_connect_nacks(void **state)
{
    char app_sha[65], comb_sha[65];
    synth_images(9, app_sha, comb_sha);
    write_can_fixture(1, "      faults: [\"katapult-nack-storm:3\"]\n"); /* tries: 2 */
    write_can_job("slots", false, app_sha, comb_sha);
    EXPECT_RUN(0, STATION " --plain run %s/can-job.yaml -f %s/can-fixture.yaml --reports %s/reports",
                 e2e_dir, e2e_dir, e2e_dir);
    assert_non_null(strstr(e2e_out, "attempt 1: enter-katapult: node 129 (CAN id 0x202): katapult: "
                                    "CONNECT: device answered NACK"));
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    e2e_expect_str(doc, "verdict", "pass");
    e2e_expect_str(doc, "unit.after_sha256", app_sha);
    st_report_free(doc);

    assert_int_equal(e2e_run("rm -rf %s/reports", e2e_dir), 0);
    write_can_fixture(1, "      faults: [\"katapult-nack-storm:50\"]\n");
    EXPECT_RUN(1, STATION " --plain run %s/can-job.yaml -f %s/can-fixture.yaml --reports %s/reports",
             e2e_dir, e2e_dir, e2e_dir);
    doc = e2e_load_report("reports", NULL, NULL);
    e2e_expect_str(doc, "verdict", "fail");
    const char *cause = st_rget_str(doc, "cause");
    assert_non_null(cause);
    if (strncmp(cause, "enter-katapult: node 129 (CAN id 0x202): katapult: CONNECT: device "
                       "answered NACK", 80) != 0 ||
        strstr(cause, "did not answer as Katapult"))
        fail_msg("cause: %s", cause);
    st_report_free(doc);
}

/* Steps of two drivers in one job (issue 7): the ROM DFU driver provisions the combined
 * image, then the Katapult driver reflashes the application over CAN; one session per
 * driver, one report, the unit named by its DFU serial. */
static void test_dfu_then_katapult_one_job(void **state)
{
    char app_sha[65], comb_sha[65], app2_sha[65], unused[65];
    synth_images(14, app2_sha, unused);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mv %s/app.bin %s/app2.bin", e2e_dir, e2e_dir);
    assert_int_equal(system(cmd), 0);
    synth_images(13, app_sha, comb_sha);
    write_can_fixture(1, "      serial: \"MIXED0001\"\n");
    char job[2048];
    snprintf(job, sizeof job,
             "name: e2e-mixed\ntarget: stm32g431xx\n"
             "images:\n"
             "  combined: { path: combined.bin, load_addr: 0x08000000, sha256: %s }\n"
             "  application: { path: app2.bin, load_addr: 0x08002000, sha256: %s }\n"
             "katapult: { transport: can, bitrate: 1000000, timeout_ms: 100, tries: 2 }\n"
             "retries: 1\n"
             "steps:\n"
             "  - enter-bootloader\n"
             "  - flash: { image: combined }\n"
             "  - verify: { image: combined }\n"
             "  - start: { image: combined }\n"
             "  - enter-katapult\n"
             "  - katapult-flash: { image: application }\n"
             "  - katapult-verify: { image: application }\n"
             "  - katapult-complete\n"
             "  - wait-for-app: { can: true, timeout_ms: 3000 }\n",
             comb_sha, app2_sha);
    e2e_write_file("mixed-job.yaml", job);
    EXPECT_RUN(0, STATION " --plain run %s/mixed-job.yaml -f %s/can-fixture.yaml --reports %s/reports",
                 e2e_dir, e2e_dir, e2e_dir);
    assert_int_equal(e2e_count_reports("reports"), 1);
    st_rnode *doc = e2e_load_report("reports", "MIXED0001_", NULL);
    e2e_expect_str(doc, "verdict", "pass");
    e2e_expect_str(doc, "unit.dfu_serial", "MIXED0001");
    e2e_expect_str(doc, "steps.2.sha256", comb_sha);
    e2e_expect_str(doc, "steps.4.entry_method", "can:request-bootloader");
    e2e_expect_str(doc, "unit.after_sha256", app2_sha);
    e2e_expect_str(doc, "steps.8.app", "klipper (answers QUERY on the CAN bus)");
    expect_steps_timed(doc, 9, "pass");
    st_report_free(doc);
}

static void test_can_scan(void **state)
{
    /* One unit runs the application; one holds only Katapult (no application). */
    uint8_t *boot = NULL;
    assert_int_equal(e2e_run(STATION " image generate %s/combined.bin", e2e_dir), 0);
    char p[256];
    snprintf(p, sizeof p, "%s/combined.bin", e2e_dir);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    boot = malloc(8192);
    assert_int_equal(fread(boot, 1, 8192, f), 8192);
    fclose(f);
    snprintf(p, sizeof p, "%s/katapult-only.bin", e2e_dir);
    f = fopen(p, "wb");
    fwrite(boot, 1, 8192, f);
    fclose(f);
    free(boot);
    char extra[512];
    snprintf(extra, sizeof extra, "  - id: 9\n    lines: { boot0: B9, reset: R9 }\n"
                                  "    can: { iface: vcan-e2e, uuid: 0a0b0c0d0e09 }\n"
                                  "    unit: { transport: can, holds: %s, can_uuid: 0a0b0c0d0e09 }\n", p);
    write_can_fixture(1, NULL);
    char fx[128];
    snprintf(fx, sizeof fx, "%s/can-fixture.yaml", e2e_dir);
    f = fopen(fx, "a");
    fputs(extra, f);
    fclose(f);
    EXPECT_RUN(0, STATION " -f %s can scan", fx);
    assert_non_null(strstr(e2e_out, "2 units on vcan-e2e"));
    assert_non_null(strstr(e2e_out, "0a0b0c0d0e01   klipper      1"));
    assert_non_null(strstr(e2e_out, "0a0b0c0d0e09   katapult     9"));
}

static void test_can_bus_off(void **state)
{
    char app_sha[65], comb_sha[65];
    synth_images(13, app_sha, comb_sha);
    write_can_fixture(1, "      faults: [can-bus-off]\n");
    write_can_job("discover", true, app_sha, comb_sha);
    int rc = e2e_run(STATION " --plain run %s/can-job.yaml -f %s/can-fixture.yaml --reports %s/reports",
                 e2e_dir, e2e_dir, e2e_dir);
    assert_int_equal(rc, 3);
    assert_non_null(strstr(e2e_out, "bus-off"));
    assert_int_equal(e2e_count_reports("reports"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_demo_job_two_slots, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_usb_combined_image, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_page_fails_verify, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_prog_error_named, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_pin_mismatch_refused_before_pins, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_serial, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_skip_identical_and_rom_quirks, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_dfu_list_and_usage, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_color_and_dumb_terminal, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_returned_units_synthetic, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigint_during_discovery, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_mcu_recorded, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_during_discovery, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_returned_units_real, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_serial_flash_known_answer, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_off_recovered_through_rom, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_off_without_recovery_fails, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_dfu_then_katapult_one_job, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_can_scan, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_can_bus_off, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_complete_usb, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_complete_can, e2e_setup, teardown),
        cmocka_unit_test_setup_teardown(test_can_connect_nacks, e2e_setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
