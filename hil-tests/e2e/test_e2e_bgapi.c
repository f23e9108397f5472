/* End to end: Bluetooth module updates (BGAPI UART DFU) by the `station` binary on the
 * virtual fixture: the module job on both bootloader generations with its report fields,
 * GBL files refused before any unit is touched, a finish that reports a checksum error
 * (and the rerun on the module it left in DFU mode), the STM32 + module job in one run and
 * one report, and `station ble flash`. Reports are checked through the report reader. */
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
#include "station/core/digest.h"
#include "hil-tests/e2e/e2e.h"

#define GEN STATION_SOURCE_DIR "/jobs/generated"

static size_t read_bin(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void write_bin(const char *name, const uint8_t *buf, size_t n, char sha_hex[65])
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", e2e_dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
    uint8_t md[ST_SHA256_LEN];
    st_sha256(buf, n, md);
    st_hex(md, sizeof md, false, sha_hex);
}

static void expect_has(const st_rnode *doc, const char *path, const char *needle)
{
    const char *got = st_rget_str(doc, path);
    if (!got || !strstr(got, needle))
        fail_msg("%s: \"%s\" does not contain \"%s\"", path, got ? got : "(absent)", needle);
}

static long long get_int(const st_rnode *doc, const char *path)
{
    long long v;
    if (st_rget_int(doc, path, &v))
        fail_msg("%s: absent or not an integer", path);
    return v;
}

/* The images the shipped jobs name, made by the station itself. */
static void images(void)
{
    assert_int_equal(e2e_run("(mkdir -p " GEN " && " STATION " ble image " GEN "/bgm-ncp.gbl --stack "
                         "5.0.1 && " STATION " image generate " GEN "/demo-combined.bin)"), 0);
}

/* A one-slot virtual fixture: an STM32 board whose module has the given settings. */
static void write_fixture(const char *module_extra)
{
    char text[2048];
    snprintf(text, sizeof text,
             "name: e2e-ble\n"
             "gpio: { backend: virtual }\n"
             "timing: { reset_pulse_ms: 1, boot_settle_ms: 1 }\n"
             "slots:\n"
             "  - id: 3\n"
             "    lines: { boot0: B, reset: { name: R, active_low: true } }\n"
             "    usb_port: vusb-3\n"
             "    module: { device: /dev/ttyBLE3, baud: 115200 }\n"
             "    unit:\n"
             "      transport: usb\n"
             "      module: { bootloader: gsdk4%s }\n",
             module_extra);
    e2e_write_file("fixture.yaml", text);
}

/* A module job in dir for image `name` with the given pinned digest; bgapi_extra is
 * ", key: value, ..." for its bgapi: section ("" = bootloader: auto). */
static void write_job(const char *name, const char *sha, const char *bgapi_extra)
{
    char text[2048];
    snprintf(text, sizeof text,
             "name: e2e-bgm\n"
             "target: efr32bg13p632f512\n"
             "images:\n"
             "  module: { path: %s, load_addr: 0, sha256: %s }\n"
             "bgapi: { %s }\n"
             "retries: 0\n"
             "steps: [bgapi-enter-dfu, bgapi-upload, bgapi-finish, bgapi-boot]\n",
             name, sha, bgapi_extra[0] ? bgapi_extra + 2 : "bootloader: auto");
    e2e_write_file("job.yaml", text);
}

static void test_module_job_both_generations(void **state)
{
    images();
    EXPECT_RUN(0, STATION " --plain run " STATION_SOURCE_DIR "/jobs/bgm-uart-dfu.yaml --reports "
                 "%s/reports", e2e_dir);
    assert_int_equal(e2e_count_reports("reports"), 2);
    for (int slot = 1; slot <= 2; slot++) {
        char needle[16];
        snprintf(needle, sizeof needle, "_slot%d_", slot);
        st_rnode *doc = e2e_load_report("reports", needle, NULL);
        e2e_expect_str(doc, "verdict", "pass");
        e2e_expect_str(doc, "images.0.role", "module");
        /* The report fields issue 11 asks for. */
        e2e_expect_str(doc, "unit.module.entry_method", slot == 1 ? "system_reset(1)" : "dfu_reset(1)");
        assert_int_equal(get_int(doc, "unit.module.bootloader_version"),
                         slot == 1 ? 0x02040000 : 0x010c0000);
        e2e_expect_str(doc, "unit.module.bootloader_generation", slot == 1 ? "gsdk>=4.0" : "gsdk<=3.2");
        e2e_expect_str(doc, "unit.module.image_sha256", st_rget_str(doc, "images.0.sha256"));
        assert_int_equal(get_int(doc, "unit.module.chunk_size"), 252);
        long long size = get_int(doc, "images.0.size");
        assert_int_equal(get_int(doc, "unit.module.chunks"), (size + 251) / 252);
        e2e_expect_str(doc, "unit.module.stack_version", "5.0.1");
        e2e_expect_str(doc, "unit.module_state", "application");
        double ms;
        assert_int_equal(st_rget_num(doc, "unit.module.update_ms", &ms), 0);
        assert_int_equal(st_rget_num(doc, "run.duration_ms", &ms), 0);
        e2e_expect_str(doc, "steps.0.name", "bgapi-enter-dfu");
        e2e_expect_str(doc, "steps.3.name", "bgapi-boot");
        e2e_expect_str(doc, "steps.3.outcome", "pass");
        st_report_free(doc);
    }
}

static void refused(const char *what, const uint8_t *img, size_t n, const char *raw_extra,
                    const char *check)
{
    char sha[65];
    write_bin("m.gbl", img, n, sha);
    write_job("m.gbl", sha, raw_extra);
    write_fixture("");
    int rc = e2e_run(STATION " --plain run %s/job.yaml -f %s/fixture.yaml --reports %s/reports", e2e_dir,
                 e2e_dir, e2e_dir);
    if (rc != 2 || !strstr(e2e_out, check))
        fail_msg("%s: exit %d, want 2 and \"%s\":\n%s", what, rc, check, e2e_out);
    /* Refused before any unit was touched: no report, since none is opened first. */
    assert_int_equal(e2e_count_reports("reports"), 0);
    /* `job check` refuses it too, touching nothing. */
    assert_int_equal(e2e_run(STATION " job check %s/job.yaml", e2e_dir), 2);
}

static void test_bad_gbl_refused_before_touching(void **state)
{
    images();
    static uint8_t g[1 << 17];
    size_t n = read_bin(GEN "/bgm-ncp.gbl", g, sizeof g);
    assert_true(n > 1000 && n < sizeof g - 4);
    g[700] ^= 0x40;
    refused("bad CRC", g, n, "", "GBL check 'CRC-32' failed");
    g[700] ^= 0x40;
    g[n] = 0, g[n + 1] = 0;
    refused("length", g, n + 2, "", "GBL check 'length' failed");
    /* A raw image where the job allows them: only the multiple-of-4 rule applies. */
    memset(g, 0x5a, 1002);
    refused("raw length", g, 1002, ", raw: true", "must be a multiple of 4");
}

/* Bad bgapi: sections name the file, line and field. */
static void test_section_errors(void **state)
{
    images();
    static const struct {
        const char *extra, *msg;
    } cases[] = {
        {", chunk: 250", "bgapi.chunk: 250 is not a multiple of 4"},
        {", chunk: 256", "bgapi.chunk"},
        {", bootloader: gsdk5", "bgapi.bootloader: expected auto, gsdk3"},
        {", expect_stack: five", "bgapi.expect_stack: expected a version like 5.1.2"},
        {", baud: 9600", "unknown key \"baud\""},
        {", chunk: 48, chunk: 252", "duplicate key \"chunk\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_job(GEN "/bgm-ncp.gbl",
                  "c64e4734db7479c84dd36ab1245556a915422a353d3e539d8dcdcab6b1075529",
                  cases[i].extra);
        int rc = e2e_run(STATION " job check %s/job.yaml", e2e_dir);
        if (rc != 2 || !strstr(e2e_out, cases[i].msg) || !strstr(e2e_out, "job.yaml:5"))
            fail_msg("%s: exit %d, want 2 and \"job.yaml:5\" and \"%s\":\n%s", cases[i].extra,
                     rc, cases[i].msg, e2e_out);
    }
}

static void test_finish_checksum_then_rerun(void **state)
{
    images();
    static uint8_t g[1 << 17];
    size_t n = read_bin(GEN "/bgm-ncp.gbl", g, sizeof g);
    char sha[65];
    write_bin("m.gbl", g, n, sha);
    write_job("m.gbl", sha, "");
    write_fixture(", faults: [finish-checksum]");
    int rc = e2e_run(STATION " --plain run %s/job.yaml -f %s/fixture.yaml --reports %s/reports", e2e_dir,
                 e2e_dir, e2e_dir);
    if (rc != 1)
        fail_msg("exit %d, want 1:\n%s", rc, e2e_out);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    e2e_expect_str(doc, "verdict", "fail");
    e2e_expect_str(doc, "steps.1.outcome", "pass"); /* every upload was answered 0 */
    e2e_expect_str(doc, "steps.2.name", "bgapi-finish");
    e2e_expect_str(doc, "steps.2.outcome", "fail");
    expect_has(doc, "steps.2.error", "0x0046 (SL_STATUS_SECURITY_IMAGE_CHECKSUM_ERROR)");
    expect_has(doc, "steps.2.error", "stays in DFU mode");
    e2e_expect_str(doc, "steps.3.outcome", "skipped");
    e2e_expect_str(doc, "unit.module_state", "dfu-mode");
    expect_has(doc, "cause", "finish");
    assert_true(st_rnode_len(st_rget(doc, "device_errors")) >= 1);
    st_report_free(doc);
    /* The rerun, on the module as that run left it: in DFU mode, its application not
     * bootable (it says so with evt_dfu_boot_failure when it comes up). */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/reports'", e2e_dir);
    assert_int_equal(system(cmd), 0);
    write_fixture(", empty: true");
    rc = e2e_run(STATION " --plain run %s/job.yaml -f %s/fixture.yaml --reports %s/reports", e2e_dir, e2e_dir,
             e2e_dir);
    if (rc != 0)
        fail_msg("rerun: exit %d:\n%s", rc, e2e_out);
    doc = e2e_load_report("reports", NULL, NULL);
    e2e_expect_str(doc, "verdict", "pass");
    expect_has(doc, "steps.0.boot_failure_seen", "0x0046");
    e2e_expect_str(doc, "unit.module.stack_version", "5.0.1");
    st_report_free(doc);
}

/* A byte lost on the wire inside an upload: the answer never comes, the step is retried,
 * and the retry waits out the bootloader's 3 s packet timeout and re-enters DFU mode
 * before sending the image again. */
static void test_dropped_byte_retried(void **state)
{
    images();
    static uint8_t g[1 << 17];
    size_t n = read_bin(GEN "/bgm-ncp.gbl", g, sizeof g);
    char sha[65], job[1024];
    write_bin("m.gbl", g, n, sha);
    snprintf(job, sizeof job,
             "name: e2e-bgm-drop\n"
             "target: efr32bg13p632f512\n"
             "images:\n"
             "  module: { path: m.gbl, load_addr: 0, sha256: %s }\n"
             "bgapi: { response_timeout_ms: 300 }\n"
             "steps: [bgapi-enter-dfu, { bgapi-upload: { retries: 1 } }, bgapi-finish, "
             "bgapi-boot]\n",
             sha);
    e2e_write_file("job.yaml", job);
    write_fixture(", faults: [\"drop-rx:20\"]");
    EXPECT_RUN(0, STATION " --plain run %s/job.yaml -f %s/fixture.yaml --reports %s/reports", e2e_dir,
                 e2e_dir, e2e_dir);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    e2e_expect_str(doc, "verdict", "pass");
    assert_int_equal(get_int(doc, "steps.1.attempts"), 2);
    expect_has(doc, "steps.1.attempt_log.0.error", "no dfu_flash_upload response within 300 ms");
    expect_has(doc, "steps.1.note", "re-entered DFU mode");
    st_report_free(doc);
}

/* The module's other faults end in a failed report whose cause says what happened. */
static void test_faults_fail_clearly(void **state)
{
    images();
    static uint8_t g[1 << 17];
    size_t n = read_bin(GEN "/bgm-ncp.gbl", g, sizeof g);
    char sha[65];
    write_bin("m.gbl", g, n, sha);
    write_job("m.gbl", sha, ", entry_timeout_ms: 1500, response_timeout_ms: 300");
    static const struct {
        const char *fault, *step, *cause1, *cause2;
    } cases[] = {
        {"silent:1000", "steps.0", "no evt_dfu_boot within 1500 ms", "silent"},
        {"baud:57600", "steps.0", "no evt_dfu_boot within 1500 ms", "baud rate"},
        {"power-loss:20000", "steps.1", "upload chunk", "no dfu_flash_upload response"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char extra[128], cmd[256], p[64];
        snprintf(extra, sizeof extra, ", faults: [\"%s\"]", cases[i].fault);
        write_fixture(extra);
        snprintf(cmd, sizeof cmd, "rm -rf '%s/reports'", e2e_dir);
        assert_int_equal(system(cmd), 0);
        int rc = e2e_run(STATION " --plain run %s/job.yaml -f %s/fixture.yaml --reports %s/reports",
                     e2e_dir, e2e_dir, e2e_dir);
        if (rc != 1)
            fail_msg("%s: exit %d, want 1:\n%s", cases[i].fault, rc, e2e_out);
        st_rnode *doc = e2e_load_report("reports", NULL, NULL);
        e2e_expect_str(doc, "verdict", "fail");
        snprintf(p, sizeof p, "%s.outcome", cases[i].step);
        e2e_expect_str(doc, p, "fail");
        expect_has(doc, "cause", cases[i].cause1);
        expect_has(doc, "cause", cases[i].cause2);
        e2e_expect_str(doc, "steps.3.outcome", "skipped");
        st_report_free(doc);
    }
}

static void test_stm32_and_module_one_report(void **state)
{
    images();
    EXPECT_RUN(0, STATION " --plain run " STATION_SOURCE_DIR "/jobs/board-stm32-bgm.yaml --slot 2 "
                 "--reports %s/reports", e2e_dir);
    assert_int_equal(e2e_count_reports("reports"), 1);
    st_rnode *doc = e2e_load_report("reports", "_slot2_", NULL);
    e2e_expect_str(doc, "verdict", "pass");
    e2e_expect_str(doc, "images.0.role", "combined");
    e2e_expect_str(doc, "images.1.role", "module");
    static const char *const names[] = {"enter-bootloader", "flash", "verify", "start",
                                        "wait-for-app", "bgapi-enter-dfu", "bgapi-upload",
                                        "bgapi-finish", "bgapi-boot"};
    assert_int_equal(st_rnode_len(st_rget(doc, "steps")), 9);
    for (size_t i = 0; i < 9; i++) {
        char p[32];
        snprintf(p, sizeof p, "steps.%zu.name", i);
        e2e_expect_str(doc, p, names[i]);
        snprintf(p, sizeof p, "steps.%zu.outcome", i);
        e2e_expect_str(doc, p, "pass");
    }
    /* Each part with its own digest: the STM32's read back, the module's GBL sent. */
    e2e_expect_str(doc, "steps.2.sha256", st_rget_str(doc, "images.0.sha256"));
    e2e_expect_str(doc, "steps.6.sha256", st_rget_str(doc, "images.1.sha256"));
    e2e_expect_str(doc, "unit.identity", "0A1B2C3D4E02");
    e2e_expect_str(doc, "unit.module.entry_method", "dfu_reset(1)");
    e2e_expect_str(doc, "unit.module.stack_version", "5.0.1");
    st_report_free(doc);
}

static void test_ble_flash_command(void **state)
{
    images();
    EXPECT_RUN(0, STATION " --plain ble flash " GEN "/bgm-ncp.gbl --slot 1 --chunk 48 --reports "
                 "%s/reports", e2e_dir);
    st_rnode *doc = e2e_load_report("reports", "_slot1_", NULL);
    e2e_expect_str(doc, "verdict", "pass");
    e2e_expect_str(doc, "unit.module.entry_method", "system_reset(1)");
    assert_int_equal(get_int(doc, "unit.module.chunk_size"), 48);
    e2e_expect_str(doc, "unit.module.stack_version", "5.0.1");
    st_report_free(doc);
    /* Usage and input errors: exit 2, nothing touched. */
    assert_int_equal(e2e_run(STATION " ble flash " GEN "/bgm-ncp.gbl --slot 1 --chunk 50"), 2);
    assert_non_null(strstr(e2e_out, "multiple of 4"));
    assert_int_equal(e2e_run(STATION " ble flash " GEN "/bgm-ncp.gbl"), 2);
    assert_non_null(strstr(e2e_out, "--slot"));
    static uint8_t g[1 << 17];
    size_t n = read_bin(GEN "/bgm-ncp.gbl", g, sizeof g);
    char sha[65];
    g[20] ^= 1;
    write_bin("bad.gbl", g, n, sha);
    assert_int_equal(e2e_run(STATION " ble flash %s/bad.gbl --slot 1 --reports %s/reports2", e2e_dir, e2e_dir),
                     2);
    assert_non_null(strstr(e2e_out, "GBL check 'CRC-32' failed"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_module_job_both_generations, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_bad_gbl_refused_before_touching, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_section_errors, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_finish_checksum_then_rerun, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_dropped_byte_retried, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_faults_fail_clearly, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_stm32_and_module_one_report, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_ble_flash_command, e2e_setup, e2e_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
