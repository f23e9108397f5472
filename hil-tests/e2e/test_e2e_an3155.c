/* End to end: seed 002 (Elegoo Neptune 4) on the virtual fixture. The station binary runs
 * jobs/neptune4-backup-and-flash.yaml on fixtures/virtual-neptune4.yaml: the guide's GPIO
 * string on the fixture's lines, the unit's UART on a pty through the termios backend, a
 * backup of the whole flash whose SHA-256 the report records, then flash, verify, start.
 * Also: a bad entry string refused with a caret before anything moves, a GPIO the fixture
 * does not map, a job that does not allow 8N1 on a pty, readout protection, and the
 * `station uart info|backup|flash|go` commands. Reports are read with the report reader. */
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

#include "protocols/sim/synth.h"
#include "reports/report.h"
#include "station/core/digest.h"
#include "station/core/mcu.h"
#include "hil-tests/e2e/e2e.h"

#define JOB STATION_SOURCE_DIR "/jobs/neptune4-backup-and-flash.yaml"
#define FIXTURE STATION_SOURCE_DIR "/fixtures/virtual-neptune4.yaml"
#define IMAGE STATION_SOURCE_DIR "/jobs/generated/neptune4-firmware.bin"

static int setup(void **state)
{
    if (e2e_setup(state))
        return -1;
    /* The job's image, made by the station itself (as the README's demo job's). */
    return e2e_run("mkdir -p " STATION_SOURCE_DIR "/jobs/generated && " STATION
                   " image generate --mcu stm32f401xc --seed 4 --size 49152 " IMAGE) == 0 ? 0 : -1;
}

/* What the unit's flash holds on arrival: synthetic:3 for the F401, the rest erased. */
static void arrival_sha(char hex[65])
{
    const st_mcu *mcu = st_mcu_find("stm32f401xc");
    uint8_t *img = NULL;
    st_err e;
    assert_int_equal(st_synth_combined_seeded(mcu, ST_SYNTH_DEFAULT_SIZE, 3, &img, &e), 0);
    uint8_t *flash = malloc(mcu->flash_size);
    memset(flash, 0xFF, mcu->flash_size);
    memcpy(flash, img, ST_SYNTH_DEFAULT_SIZE);
    uint8_t md[32];
    st_sha256(flash, mcu->flash_size, md);
    st_hex(md, 32, false, hex);
    free(flash);
    free(img);
}

static void test_neptune_job(void **state)
{
    (void)state;
    EXPECT_RUN(0, STATION " --plain run " JOB " -f " FIXTURE " --reports %s/reports", e2e_dir);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    e2e_expect_str(doc, "verdict", "pass");
    e2e_expect_str(doc, "unit.mcu", "stm32f401xc");
    e2e_expect_str(doc, "unit.usart_pid", "0x423");
    e2e_expect_str(doc, "unit.device", "STM32F401xB(C)");
    /* The plan that ran, as data. */
    e2e_expect_str(doc, "steps.0.entry_plan.text", "-2,-1,1:2,-1,,,1");
    e2e_expect_str(doc, "steps.0.entry_plan.entry", "-2,-1,1");
    e2e_expect_str(doc, "steps.0.entry_plan.exit", "2,-1,,,1");
    e2e_expect_str(doc, "steps.0.sync", "ack");
    assert_non_null(strstr(st_rget_str(doc, "steps.0.framing"), "8N1 allowed"));
    /* The backup: the whole 256 KiB flash as it arrived, in a file with that digest. */
    char want[65], got[65];
    arrival_sha(want);
    e2e_expect_str(doc, "steps.2.name", "uart-backup");
    long long bytes = 0;
    assert_int_equal(st_rget_int(doc, "steps.2.bytes", &bytes), 0);
    assert_int_equal(bytes, 256 * 1024);
    e2e_expect_str(doc, "steps.2.sha256", want);
    e2e_expect_str(doc, "unit.backup_sha256", want);
    size_t len;
    e2e_sha256_file(st_rget_str(doc, "steps.2.file"), got, &len);
    assert_int_equal(len, 256 * 1024);
    assert_string_equal(got, want);
    /* Flash: the bootloader sectors are identical and skipped, the application's is not. */
    e2e_expect_str(doc, "steps.3.name", "uart-flash");
    long long skipped = -1, written = -1;
    assert_int_equal(st_rget_int(doc, "steps.3.units_skipped", &skipped), 0);
    assert_int_equal(st_rget_int(doc, "steps.3.units_written", &written), 0);
    assert_true(skipped >= 1 && written >= 1);
    /* Verify read back the new image. */
    e2e_sha256_file(IMAGE, want, &len);
    e2e_expect_str(doc, "steps.4.sha256", want);
    e2e_expect_str(doc, "steps.5.entry_method", "uart:exit-sequence");
    e2e_expect_str(doc, "steps.5.sequence", "2,-1,,,1");
    st_report_free(doc);
}

static void test_bad_entry_string(void **state)
{
    (void)state;
    char job[8192];
    FILE *f = fopen(JOB, "r");
    assert_non_null(f);
    size_t n = fread(job, 1, sizeof job - 1, f);
    fclose(f);
    job[n] = '\0';
    char *e = strstr(job, "\"-2,-1,1:2,-1,,,1\"");
    assert_non_null(e);
    memcpy(e, "\"-2,-1;1:2,-1,,,1\"", 18);
    char *img = strstr(job, "generated/");
    assert_non_null(img);
    /* The copy lives elsewhere: point its image at the generated one. */
    char fixed[9000];
    snprintf(fixed, sizeof fixed, "%.*s%s%s", (int)(img - job), job,
             STATION_SOURCE_DIR "/jobs/", img);
    e2e_write_file("bad.yaml", fixed);
    int rc = e2e_run(STATION " --plain run %s/bad.yaml -f " FIXTURE " --reports %s/r-bad", e2e_dir, e2e_dir);
    assert_int_equal(rc, 2);
    if (!strstr(e2e_out, "uart.entry: entry sequence: ';' is not a signal or delimiter at column 6\n"
                     "  -2,-1;1:2,-1,,,1\n       ^"))
        fail_msg("no caret error:\n%s", e2e_out);
    /* Nothing ran: no report. */
    char p[160];
    snprintf(p, sizeof p, "%s/r-bad", e2e_dir);
    assert_int_not_equal(access(p, F_OK), 0);
    /* The same on the command line. */
    rc = e2e_run(STATION " uart info --slot 1 -f " FIXTURE " --mcu stm32f401xc --allow-8n1 "
                     "--entry '-2,,%%1'");
    assert_int_equal(rc, 2);
    assert_non_null(strstr(e2e_out, "'%' is not a signal or delimiter at column 5\n  -2,,%1\n      ^"));
}

static void test_unmapped_gpio_and_parity(void **state)
{
    (void)state;
    /* GPIO 3 is not in the fixture's serial.entry_gpio: refused with a caret, in the report,
     * before any line moves. */
    int rc = e2e_run(STATION " --plain uart info --slot 1 -f " FIXTURE " --mcu stm32f401xc "
                 "--allow-8n1 --entry '-2,-3,1' --reports %s/r-gpio", e2e_dir);
    assert_int_equal(rc, 1);
    st_rnode *doc = e2e_load_report("r-gpio", NULL, NULL);
    const char *cause = st_rget_str(doc, "cause");
    if (!cause || !strstr(cause, "the fixture maps no GPIO 3"))
        fail_msg("cause: %s\n%s", cause ? cause : "(none)", e2e_out);
    st_report_free(doc);
    /* Without allow-8n1 the pty is refused: the ROM speaks 8E1. */
    rc = e2e_run(STATION " --plain uart info --slot 1 -f " FIXTURE " --mcu stm32f401xc "
             "--entry '-2,-1,1:2,-1,,,1' --reports %s/r-8e1", e2e_dir);
    assert_int_equal(rc, 1);
    doc = e2e_load_report("r-8e1", NULL, NULL);
    cause = st_rget_str(doc, "cause");
    if (!cause || !strstr(cause, "cannot keep even parity"))
        fail_msg("cause: %s\n%s", cause ? cause : "(none)", e2e_out);
    st_report_free(doc);
}

static void test_cli_commands(void **state)
{
    (void)state;
    const char *common = " --plain -f " FIXTURE " --slot 1 --mcu stm32f401xc --allow-8n1 "
                         "--entry '-2,-1,1:2,-1,,,1'";
    int rc = e2e_run(STATION " uart info%s --reports %s/r-info", common, e2e_dir);
    if (rc)
        fail_msg("uart info: %d\n%s", rc, e2e_out);
    st_rnode *doc = e2e_load_report("r-info", NULL, NULL);
    e2e_expect_str(doc, "unit.device", "STM32F401xB(C)");
    st_report_free(doc);
    rc = e2e_run(STATION " uart backup %s/b.bin --size 65536%s --reports %s/r-backup", e2e_dir, common,
             e2e_dir);
    if (rc)
        fail_msg("uart backup: %d\n%s", rc, e2e_out);
    char path[160], got[65];
    size_t len;
    snprintf(path, sizeof path, "%s/b.bin", e2e_dir);
    e2e_sha256_file(path, got, &len);
    assert_int_equal(len, 65536);
    doc = e2e_load_report("r-backup", NULL, NULL);
    e2e_expect_str(doc, "steps.2.sha256", got);
    st_report_free(doc);
    rc = e2e_run(STATION " uart flash " IMAGE "%s --reports %s/r-flash", common, e2e_dir);
    if (rc)
        fail_msg("uart flash: %d\n%s", rc, e2e_out);
    doc = e2e_load_report("r-flash", NULL, NULL);
    e2e_sha256_file(IMAGE, got, &len);
    e2e_expect_str(doc, "steps.3.sha256", got);
    st_report_free(doc);
    rc = e2e_run(STATION " uart go --addr 0x08000000%s --reports %s/r-go", common, e2e_dir);
    if (rc)
        fail_msg("uart go: %d\n%s", rc, e2e_out);
    doc = e2e_load_report("r-go", NULL, NULL);
    e2e_expect_str(doc, "steps.2.entry_method", "uart:go");
    st_report_free(doc);
    rc = e2e_run(STATION " uart backup%s", common);
    assert_int_equal(rc, 2); /* FILE missing */
    rc = e2e_run(STATION " uart info -f " FIXTURE);
    assert_int_equal(rc, 2); /* --slot missing */
    assert_non_null(strstr(e2e_out, "needs --slot N"));
}

static void test_readout_protected(void **state)
{
    (void)state;
    char fx[4096];
    FILE *f = fopen(FIXTURE, "r");
    assert_non_null(f);
    size_t n = fread(fx, 1, sizeof fx - 1, f);
    fclose(f);
    fx[n] = '\0';
    char *fl = strstr(fx, "faults: []");
    assert_non_null(fl);
    char edited[4200];
    snprintf(edited, sizeof edited, "%.*sfaults: [rdp]%s", (int)(fl - fx), fx, fl + 10);
    e2e_write_file("rdp.yaml", edited);
    int rc = e2e_run(STATION " --plain run " JOB " -f %s/rdp.yaml --reports %s/r-rdp", e2e_dir, e2e_dir);
    assert_int_equal(rc, 1);
    st_rnode *doc = e2e_load_report("r-rdp", NULL, NULL);
    e2e_expect_str(doc, "verdict", "fail");
    const char *cause = st_rget_str(doc, "cause");
    if (!cause || !strstr(cause, "readout protection"))
        fail_msg("cause: %s\n%s", cause ? cause : "(none)", e2e_out);
    /* Nothing was written: the backup step is where it stopped. */
    e2e_expect_str(doc, "steps.2.name", "uart-backup");
    e2e_expect_str(doc, "steps.2.outcome", "fail");
    st_report_free(doc);
}

/* uart-unprotect wipes the chip: refused unless the job says so; with the flag it clears
 * readout protection (mass erase) and the backup that follows reads an erased chip. */
static void test_unprotect_flag(void **state)
{
    (void)state;
    char fx[4096];
    FILE *f = fopen(FIXTURE, "r");
    assert_non_null(f);
    size_t n = fread(fx, 1, sizeof fx - 1, f);
    fclose(f);
    fx[n] = '\0';
    char *fl = strstr(fx, "faults: []");
    assert_non_null(fl);
    char edited[4200];
    snprintf(edited, sizeof edited, "%.*sfaults: [rdp]%s", (int)(fl - fx), fx, fl + 10);
    e2e_write_file("rdp.yaml", edited);
#define UNPROTECT_JOB(extra)                                                              \
    "name: unprotect\n"                                                                    \
    "target: stm32f401xc\n"                                                                \
    "images: { combined: { path: " IMAGE ", load_addr: 0x08000000,"                         \
    " sha256: f807596741eb3a492a68bf3276a1bedd2bf157eaa0b78139effcb522c6bd3731 } }\n"        \
    "report_dir: r\n"                                                                      \
    "uart: { entry: \"-2,-1,1:2,-1,,,1\", allow_8n1: true" extra " }\n"                    \
    "steps:\n"                                                                             \
    "  - uart-enter\n"                                                                     \
    "  - uart-unprotect\n"                                                                 \
    "  - uart-info\n"                                                                      \
    "  - uart-backup: { size: 32768 }\n"
    char text[1024];
    snprintf(text, sizeof text, "%s", UNPROTECT_JOB(""));
    e2e_write_file("no-flag.yaml", text);
    int rc = e2e_run(STATION " --plain run %s/no-flag.yaml -f %s/rdp.yaml --reports %s/r-nf", e2e_dir,
                 e2e_dir, e2e_dir);
    assert_int_equal(rc, 1);
    st_rnode *doc = e2e_load_report("r-nf", NULL, NULL);
    const char *cause = st_rget_str(doc, "cause");
    if (!cause || !strstr(cause, "uart.allow_unprotect: true"))
        fail_msg("cause: %s\n%s", cause ? cause : "(none)", e2e_out);
    st_report_free(doc);
    snprintf(text, sizeof text, "%s", UNPROTECT_JOB(", allow_unprotect: true"));
    e2e_write_file("flag.yaml", text);
    rc = e2e_run(STATION " --plain run %s/flag.yaml -f %s/rdp.yaml --reports %s/r-f", e2e_dir, e2e_dir, e2e_dir);
    if (rc)
        fail_msg("exit %d\n%s", rc, e2e_out);
    doc = e2e_load_report("r-f", NULL, NULL);
    /* Mass-erased: 32 KiB of 0xFF. */
    static uint8_t ff[32768];
    memset(ff, 0xFF, sizeof ff);
    uint8_t md[32];
    char want[65];
    st_sha256(ff, sizeof ff, md);
    st_hex(md, 32, false, want);
    e2e_expect_str(doc, "steps.3.sha256", want);
    st_report_free(doc);
}

/* The fixture's own BOOT0/RESET pair (the default plan) on a plain G431 board. */
static void test_boot0_reset_plan(void **state)
{
    (void)state;
    e2e_write_file("g4.yaml",
               "name: g4-uart\n"
               "gpio: { backend: virtual, chip: virtual }\n"
               "slots:\n"
               "  - id: 3\n"
               "    lines: { boot0: BOOT0_3, reset: { name: NRST_3, active_low: true } }\n"
               "    serial: { device: pty }\n"
               "    unit: { mcu: stm32g431xx, holds: synthetic:2 }\n");
    int rc = e2e_run(STATION " --plain uart backup %s/g4.bin -f %s/g4.yaml --slot 3 --allow-8n1 "
                 "--reports %s/r-g4", e2e_dir, e2e_dir, e2e_dir);
    if (rc)
        fail_msg("exit %d\n%s", rc, e2e_out);
    st_rnode *doc = e2e_load_report("r-g4", NULL, NULL);
    e2e_expect_str(doc, "steps.0.entry_plan.kind", "boot0-reset");
    e2e_expect_str(doc, "steps.0.entry_plan.text", "boot0&reset,-reset:-boot0&reset,-reset");
    e2e_expect_str(doc, "unit.usart_pid", "0x468");
    long long bytes = 0;
    assert_int_equal(st_rget_int(doc, "steps.2.bytes", &bytes), 0);
    assert_int_equal(bytes, 128 * 1024);
    st_report_free(doc);
}

/* The fixture's own plan (serial.entry) runs when the job gives none; a bad one names the
 * fixture file, line and field, with the caret. */
static void test_fixture_plan(void **state)
{
    (void)state;
    int rc = e2e_run(STATION " --plain uart info --slot 1 -f " FIXTURE " --mcu stm32f401xc "
                 "--allow-8n1 --reports %s/r-fx", e2e_dir);
    if (rc)
        fail_msg("exit %d\n%s", rc, e2e_out);
    st_rnode *doc = e2e_load_report("r-fx", NULL, NULL);
    e2e_expect_str(doc, "steps.0.entry_plan.kind", "gpio-string");
    e2e_expect_str(doc, "steps.0.entry_plan.text", "-2,-1,1:2,-1,,,1");
    st_report_free(doc);
    char fx[4096];
    FILE *f = fopen(FIXTURE, "r");
    assert_non_null(f);
    size_t n = fread(fx, 1, sizeof fx - 1, f);
    fclose(f);
    fx[n] = '\0';
    char *e = strstr(fx, "entry: \"-2,-1,1:");
    assert_non_null(e);
    e[13] = ';'; /* "-2,-1;1:..." */
    e2e_write_file("bad-entry.yaml", fx);
    rc = e2e_run(STATION " --plain uart info --slot 1 -f %s/bad-entry.yaml --mcu stm32f401xc "
             "--allow-8n1 --reports %s/r-bad", e2e_dir, e2e_dir);
    assert_int_equal(rc, 1);
    doc = e2e_load_report("r-bad", NULL, NULL);
    const char *cause = st_rget_str(doc, "cause");
    if (!cause || !strstr(cause, "bad-entry.yaml:20: slot 1: serial.entry: entry sequence: "
                                 "';' is not a signal or delimiter at column 6"))
        fail_msg("cause: %s\n%s", cause ? cause : "(none)", e2e_out);
    st_report_free(doc);
}

/* A board whose USB-serial adapter drives RESET from DTR and BOOT0 from RTS through an
 * inverter (unit.modem: dtr: reset, rts: -boot0; opening the port raises both: the unit
 * keeps running its flash): `-rts,-dtr,dtr:rts,-dtr,dtr` enters the ROM through the modem
 * lines alone (the termios backend's TIOCMBIS/TIOCMBIC reach the unit) and the job flashes;
 * the built-in DTR pulse, which leaves RTS raised (BOOT0 low), resets the unit into its
 * flash and the entry step fails naming the plan. */
#define MODEM_FIXTURE                                                                     \
    "name: modem-wired\n"                                                                  \
    "gpio: { backend: virtual, chip: virtual }\n"                                          \
    "slots:\n"                                                                             \
    "  - id: 4\n"                                                                          \
    "    lines: { boot0: BOOT0_4, reset: { name: NRST_4, active_low: true } }\n"               \
    "    serial: { device: pty }\n"                                                        \
    "    unit: { mcu: stm32f401xc, holds: synthetic:3, modem: { dtr: reset, rts: -boot0 } }\n"
#define MODEM_JOB(entry)                                                                  \
    "name: modem-entry\n"                                                                  \
    "target: stm32f401xc\n"                                                                \
    "images: { combined: { path: " IMAGE ", load_addr: 0x08000000,"                         \
    " sha256: f807596741eb3a492a68bf3276a1bedd2bf157eaa0b78139effcb522c6bd3731 } }\n"        \
    "report_dir: r\n"                                                                      \
    "uart: { entry: " entry ", allow_8n1: true }\n"                                        \
    "steps:\n"                                                                             \
    "  - uart-enter\n"                                                                     \
    "  - uart-info\n"                                                                      \
    "  - uart-flash: { image: combined }\n"                                                \
    "  - uart-verify: { image: combined }\n"                                               \
    "  - uart-start: { image: combined }\n"

static void test_modem_line_plan(void **state)
{
    (void)state;
    e2e_write_file("modem.yaml", MODEM_FIXTURE);
    e2e_write_file("rts-dtr.yaml", MODEM_JOB("\"-rts,-dtr,dtr:rts,-dtr,dtr\""));
    int rc = e2e_run(STATION " --plain run %s/rts-dtr.yaml -f %s/modem.yaml --reports %s/r-m", e2e_dir,
                 e2e_dir, e2e_dir);
    if (rc)
        fail_msg("exit %d\n%s", rc, e2e_out);
    st_rnode *doc = e2e_load_report("r-m", NULL, NULL);
    e2e_expect_str(doc, "verdict", "pass");
    e2e_expect_str(doc, "steps.0.entry_plan.kind", "gpio-string");
    e2e_expect_str(doc, "steps.0.entry_plan.entry", "-rts,-dtr,dtr");
    e2e_expect_str(doc, "steps.0.sync", "ack");
    e2e_expect_str(doc, "unit.usart_pid", "0x423");
    char want[65];
    size_t len;
    e2e_sha256_file(IMAGE, want, &len);
    e2e_expect_str(doc, "steps.3.sha256", want);
    e2e_expect_str(doc, "steps.4.entry_method", "uart:exit-sequence");
    e2e_expect_str(doc, "steps.4.sequence", "rts,-dtr,dtr");
    st_report_free(doc);
}

static void test_modem_plan_without_boot0(void **state)
{
    (void)state;
    e2e_write_file("modem.yaml", MODEM_FIXTURE);
    e2e_write_file("dtr.yaml", MODEM_JOB("dtr-pulse"));
    int rc = e2e_run(STATION " --plain run %s/dtr.yaml -f %s/modem.yaml --reports %s/r-d", e2e_dir, e2e_dir,
                 e2e_dir);
    assert_int_equal(rc, 1);
    st_rnode *doc = e2e_load_report("r-d", NULL, NULL);
    e2e_expect_str(doc, "verdict", "fail");
    e2e_expect_str(doc, "steps.0.name", "uart-enter");
    e2e_expect_str(doc, "steps.0.outcome", "fail");
    e2e_expect_str(doc, "steps.0.entry_plan.kind", "dtr-pulse");
    const char *cause = st_rget_str(doc, "cause");
    if (!cause || !strstr(cause, "uart-enter") ||
        !strstr(cause, "after entry plan \"-dtr,dtr\" (dtr-pulse)"))
        fail_msg("cause: %s\n%s", cause ? cause : "(none)", e2e_out);
    st_report_free(doc);
    /* The fixture's wiring is checked where it is written. */
    e2e_write_file("bad-modem.yaml", "name: m\n"
                                 "gpio: { backend: virtual, chip: virtual }\n"
                                 "slots:\n"
                                 "  - id: 4\n"
                                 "    lines: { boot0: B, reset: R }\n"
                                 "    serial: { device: pty }\n"
                                 "    unit:\n"
                                 "      modem: { dtr: reset, rts: nrst }\n");
    rc = e2e_run(STATION " --plain run %s/dtr.yaml -f %s/bad-modem.yaml --reports %s/r-bm", e2e_dir,
             e2e_dir, e2e_dir);
    assert_int_equal(rc, 2);
    if (!strstr(e2e_out, "bad-modem.yaml:8: slots[0].unit.modem.rts"))
        fail_msg("no file:line:field error:\n%s", e2e_out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_neptune_job, setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_bad_entry_string, setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_unmapped_gpio_and_parity, setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_cli_commands, setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_readout_protected, setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_unprotect_flag, setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_boot0_reset_plan, setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_fixture_plan, setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_modem_line_plan, setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_modem_plan_without_boot0, setup, e2e_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
