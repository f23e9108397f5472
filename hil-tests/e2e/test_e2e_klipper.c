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
#include <zlib.h>
#include <cmocka.h>

#include <pthread.h>

#include "protocols/klipper/klipper_model.h"
#include "protocols/link/pty_server.h"
#include "protocols/sim/synth.h"
#include "reports/report.h"
#include "station/core/digest.h"
#include "hil-tests/e2e/e2e.h"

#define FWDIR STATION_SHARED_DIR "/firmware/cartographer-v4/6.0.0/"
#define USB_COMBINED FWDIR "Katapult_plus_CartographerV4_6.0.0__USB_lite.bin"
#define CAN_COMBINED FWDIR "Katapult_plus_CartographerV4_6.0.0__CAN_1M.bin"
#define USB_APP FWDIR "CartographerV4_6.0.0_USB_lite_8kib_offset.bin"
#define PROVISION STATION_SOURCE_DIR "/jobs/cartographer-v4-provision.yaml"

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
        EXPECT_RUN(0, STATION " image info " FWDIR "%s", t[i].file);
        for (size_t k = 0; k < 6; k++)
            EXPECT_OUT(t[i].lines[k]);
    }
}

static void test_image_info_synthetic(void **state)
{
    assert_int_equal(e2e_run(STATION " image generate %s/app.bin --app", e2e_dir), 0);
    assert_int_equal(e2e_run(STATION " image info %s/app.bin", e2e_dir), 0);
    EXPECT_OUT("linked for: 0x08002000");
    EXPECT_OUT("klipper dictionary: none");
    assert_int_equal(e2e_run(STATION " image info %s/nope.bin", e2e_dir), 2);
    EXPECT_OUT("station: image info:");
    assert_int_equal(e2e_run(STATION " image info %s/app.bin --mcu z80", e2e_dir), 2);
    EXPECT_OUT("unknown MCU");
}

/* An application-only image (linked for 0x08002000) in a ROM DFU job at 0x08000000. */
static void refuse_app_at_zero(const char *image)
{
    char job[1024], path[256], sha[65];
    assert_int_equal(e2e_run(STATION " image info %s", image), 0);
    const char *p = strstr(e2e_out, "sha256: ");
    assert_non_null(p);
    memcpy(sha, p + 8, 64);
    sha[64] = '\0';
    snprintf(job, sizeof job,
             "name: app-at-zero\ntarget: stm32g431xx\nimages:\n  app:\n"
             "    path: %s\n    load_addr: 0x08000000\n    sha256: %s\n"
             "steps: [enter-bootloader, flash, verify, start]\n",
             image, sha);
    snprintf(path, sizeof path, "%s/job.yaml", e2e_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(job, f);
    fclose(f);
    EXPECT_RUN(2, STATION " --plain run %s/job.yaml -f %s/no-such-fixture.yaml --reports %s/reports",
                 e2e_dir, e2e_dir, e2e_dir);
    EXPECT_OUT("linked for 0x08002000");
    EXPECT_OUT("written at 0x08000000");
    if (strstr(e2e_out, "no-such-fixture"))
        fail_msg("the fixture was opened before the refusal:\n%s", e2e_out);
    char rd[128];
    snprintf(rd, sizeof rd, "%s/reports", e2e_dir);
    assert_int_not_equal(access(rd, F_OK), 0); /* no report: nothing was touched */
}

static void test_app_image_at_zero_refused(void **state)
{
    char img[128];
    snprintf(img, sizeof img, "%s/app.bin", e2e_dir);
    assert_int_equal(e2e_run(STATION " image generate %s --app", img), 0);
    refuse_app_at_zero(img);
    if (access(FWDIR "CartographerV4_6.0.0_USB_lite_8kib_offset.bin", R_OK) == 0)
        refuse_app_at_zero(FWDIR "CartographerV4_6.0.0_USB_lite_8kib_offset.bin");
}

static const char *str_at(const st_rnode *doc, const char *path)
{
    const char *s = st_rget_str(doc, path);
    if (!s)
        fail_msg("%s: absent", path);
    return s;
}

/* The index of the first step called name (from start), or fail. */
static int step_index(const st_rnode *doc, const char *name, int start)
{
    const st_rnode *steps = st_rget(doc, "steps");
    for (size_t i = (size_t)start; i < st_rnode_len(steps); i++) {
        char p[64];
        snprintf(p, sizeof p, "steps.%zu.name", i);
        if (strcmp(str_at(doc, p), name) == 0)
            return (int)i;
    }
    fail_msg("no step %s", name);
    return -1;
}

/* Done-when 1: the provisioning job ends with the version read from the running unit,
 * the uptime check and a sensor measurement with its limits and outcome. */
static void test_provision_passes(void **state)
{
    if (access(USB_COMBINED, R_OK) != 0)
        skip(); /* ../shared/firmware is absent */
    e2e_write_fixture("e2e-klipper", "");
    EXPECT_RUN(0, STATION " --plain run " PROVISION " -f %s/fixture.yaml --reports %s/reports",
                 e2e_dir, e2e_dir);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    assert_string_equal(str_at(doc, "verdict"), "pass");
    int id = step_index(doc, "identify", 0);
    char p[96];
    snprintf(p, sizeof p, "steps.%d.version", id);
    assert_string_equal(str_at(doc, p), "CARTOGRAPHER V4 6.0.0 Lite");
    snprintf(p, sizeof p, "steps.%d.mcu", id);
    assert_string_equal(str_at(doc, p), "stm32g431xx");
    long long freq;
    snprintf(p, sizeof p, "steps.%d.clock_freq", id);
    assert_int_equal(st_rget_int(doc, p, &freq), 0);
    assert_int_equal(freq, 170000000);
    assert_string_equal(str_at(doc, "unit.firmware_version"), "CARTOGRAPHER V4 6.0.0 Lite");
    int al = step_index(doc, "alive", 0);
    snprintf(p, sizeof p, "steps.%d.measurements.0.name", al);
    assert_string_equal(str_at(doc, p), "clock_rate_ratio");
    snprintf(p, sizeof p, "steps.%d.measurements.0.outcome", al);
    assert_string_equal(str_at(doc, p), "pass");
    double v;
    snprintf(p, sizeof p, "steps.%d.measurements.0.value", al);
    assert_int_equal(st_rget_num(doc, p, &v), 0);
    assert_true(v > 0.98 && v < 1.02);
    int sa = step_index(doc, "sample", 0);
    snprintf(p, sizeof p, "steps.%d.measurements.3.name", sa);
    assert_string_equal(str_at(doc, p), "data_stddev");
    snprintf(p, sizeof p, "steps.%d.measurements.3.low", sa);
    assert_int_equal(st_rget_num(doc, p, &v), 0);
    assert_true(v == 5);
    snprintf(p, sizeof p, "steps.%d.measurements.3.outcome", sa);
    assert_string_equal(str_at(doc, p), "pass");
    snprintf(p, sizeof p, "steps.%d.measurements.2.name", sa);
    assert_string_equal(str_at(doc, p), "data_mean");
    snprintf(p, sizeof p, "steps.%d.measurements.2.marginal_low", sa);
    assert_int_equal(st_rget_num(doc, p, &v), 0);
    st_report_free(doc);
}

/* Done-when 2a: a stuck sensor fails, naming measurement, value and limit. */
static void test_stuck_sensor_fails(void **state)
{
    if (access(USB_COMBINED, R_OK) != 0)
        skip(); /* ../shared/firmware is absent */
    e2e_write_fixture("e2e-klipper", "      faults: [\"klipper-sensor:stuck\"]\n");
    int rc = e2e_run(STATION " --plain run " PROVISION " -f %s/fixture.yaml --reports %s/reports",
                 e2e_dir, e2e_dir);
    assert_int_equal(rc, 1);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    assert_string_equal(str_at(doc, "verdict"), "fail");
    const char *cause = str_at(doc, "cause");
    if (!strstr(cause, "data_stddev = 0 counts is below the low limit 5 counts"))
        fail_msg("cause: %s", cause);
    int sa = step_index(doc, "sample", 0);
    char p[96];
    snprintf(p, sizeof p, "steps.%d.outcome", sa);
    assert_string_equal(str_at(doc, p), "fail");
    snprintf(p, sizeof p, "steps.%d.measurements.3.outcome", sa);
    assert_string_equal(str_at(doc, p), "fail");
    snprintf(p, sizeof p, "steps.%d.measurements.2.outcome", sa);
    assert_string_equal(str_at(doc, p), "pass"); /* the mean is still in its band */
    st_report_free(doc);
}

/* A temperature out of range fails the temperature sample. */
static void test_temperature_out_of_range(void **state)
{
    if (access(USB_COMBINED, R_OK) != 0)
        skip(); /* ../shared/firmware is absent */
    e2e_write_fixture("e2e-klipper", "      faults: [\"klipper-temp:4095\"]\n");
    int rc = e2e_run(STATION " --plain run " PROVISION " -f %s/fixture.yaml --reports %s/reports",
                 e2e_dir, e2e_dir);
    assert_int_equal(rc, 1);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    const char *cause = str_at(doc, "cause");
    if (!strstr(cause, "temp_max = 4095 adc is above the high limit 4000 adc"))
        fail_msg("cause: %s", cause);
    st_report_free(doc);
}

/* Dropped samples fail the gaps limit; bad-CRC blocks from the unit are survived (the host
 * drops them and retransmits what lost its ack); a silent unit fails identify, saying so. */
static const char *sha_of(const char *image, char sha[65]);

static void test_link_faults(void **state)
{
    if (access(USB_COMBINED, R_OK) != 0)
        skip(); /* ../shared/firmware is absent */
    e2e_write_fixture("e2e-klipper", "      faults: [\"klipper-drop:10\", \"klipper-bad-crc:9\"]\n");
    int rc = e2e_run(STATION " --plain run " PROVISION " -f %s/fixture.yaml --reports %s/reports",
                 e2e_dir, e2e_dir);
    assert_int_equal(rc, 1);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    const char *cause = str_at(doc, "cause");
    if (!strstr(cause, "sample: measurement data_gaps = ") ||
        !strstr(cause, "is above the high limit 0"))
        fail_msg("cause: %s", cause);
    int id = step_index(doc, "identify", 0);
    char p[96];
    snprintf(p, sizeof p, "steps.%d.outcome", id);
    assert_string_equal(str_at(doc, p), "pass");
    st_report_free(doc);

    char rd[160];
    snprintf(rd, sizeof rd, "rm -rf %s/reports", e2e_dir);
    assert_int_equal(system(rd), 0);
    e2e_write_fixture("e2e-klipper", "      holds: " USB_COMBINED "\n      faults: [\"klipper-silent\"]\n");
    char job[1024], sha[65];
    snprintf(job, sizeof job,
             "name: silent\ntarget: stm32g431xx\nimages:\n  combined:\n"
             "    path: %s\n    load_addr: 0x08000000\n    sha256: %s\n"
             "klipper: { transport: usb, timeout_ms: 500 }\n"
             "steps: [ identify: { retries: 0 } ]\n",
             USB_COMBINED, sha_of(USB_COMBINED, sha));
    e2e_write_file("silent.yaml", job);
    rc = e2e_run(STATION " --plain run %s/silent.yaml -f %s/fixture.yaml --reports %s/reports", e2e_dir,
             e2e_dir, e2e_dir);
    assert_int_equal(rc, 1);
    doc = e2e_load_report("reports", NULL, NULL);
    cause = str_at(doc, "cause");
    if (!strstr(cause, "identify: 0 dictionary bytes after"))
        fail_msg("cause: %s", cause);
    st_report_free(doc);
}

/* The real USB combined image with its dictionary's version replaced (recompressed in
 * place): a unit "flashed with another version". */
static void write_variant(const char *name, const char *from, const char *to);

static void write_other_version(const char *name, const char *version)
{
    char to[128];
    snprintf(to, sizeof to, "\"%s\"", version);
    write_variant(name, "\"CARTOGRAPHER V4 6.0.0 Lite\"", to);
}

/* The real USB combined image with one piece of its dictionary's JSON replaced. */
static void write_variant(const char *name, const char *from, const char *to)
{
    FILE *f = fopen(USB_COMBINED, "rb");
    assert_non_null(f);
    static uint8_t img[40000];
    size_t n = fread(img, 1, sizeof img, f);
    fclose(f);
    static char json[16384];
    uLongf jl = sizeof json - 1;
    assert_int_equal(uncompress((Bytef *)json, &jl, img + 0x7B98, 2827), Z_OK);
    json[jl] = '\0';
    char *at = strstr(json, from);
    assert_non_null(at);
    static char edited[16384];
    size_t head = (size_t)(at - json);
    snprintf(edited, sizeof edited, "%.*s%s%s", (int)head, json, to, at + strlen(from));
    uLongf zl = compressBound(strlen(edited));
    static uint8_t z[20000];
    assert_int_equal(compress2(z, &zl, (const Bytef *)edited, strlen(edited), 9), Z_OK);
    assert_true(0x7B98 + zl <= n);
    memcpy(img + 0x7B98, z, zl);
    char p[256];
    snprintf(p, sizeof p, "%s/%s", e2e_dir, name);
    f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(img, 1, n, f), n);
    fclose(f);
}

/* Done-when 2b: a unit that reports another version fails at identify (checks only: the
 * nightly job on a unit that already holds 5.9.9). */
static void test_other_version_fails_identify(void **state)
{
    if (access(USB_COMBINED, R_OK) != 0)
        skip(); /* ../shared/firmware is absent */
    write_other_version("other.bin", "CARTOGRAPHER V4 5.9.9 Lite");
    char extra[512];
    snprintf(extra, sizeof extra, "      holds: %s/other.bin\n      holds_addr: 0x08000000\n", e2e_dir);
    e2e_write_fixture("e2e-klipper", extra);
    int rc = e2e_run(STATION " --plain run " STATION_SOURCE_DIR "/jobs/nightly-regression.yaml"
                 " -f %s/fixture.yaml --reports %s/reports", e2e_dir, e2e_dir);
    assert_int_equal(rc, 1);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    const char *cause = str_at(doc, "cause");
    if (!strstr(cause, "identify") ||
        !strstr(cause, "the unit reports version \"CARTOGRAPHER V4 5.9.9 Lite\", the job "
                       "expects \"CARTOGRAPHER V4 6.0.0 Lite\""))
        fail_msg("cause: %s", cause);
    int id = step_index(doc, "identify", 0);
    char p[96];
    snprintf(p, sizeof p, "steps.%d.outcome", id);
    assert_string_equal(str_at(doc, p), "fail");
    snprintf(p, sizeof p, "steps.%d.version", id);
    assert_string_equal(str_at(doc, p), "CARTOGRAPHER V4 5.9.9 Lite");
    st_report_free(doc);
}

/* The nightly job on two already-flashed units, one with a stuck sensor, with JUnit XML. */
static void test_nightly_junit(void **state)
{
    if (access(USB_COMBINED, R_OK) != 0)
        skip(); /* ../shared/firmware is absent */
    char fx[2048];
    snprintf(fx, sizeof fx,
             "name: lab\ngpio: { backend: virtual }\n"
             "timing: { reset_pulse_ms: 1, boot_settle_ms: 1 }\nslots:\n"
             "  - id: 1\n    lines: { boot0: B1, reset: { name: R1, active_low: true } }\n"
             "    usb_port: vusb-1\n    unit: { transport: usb, holds: %s }\n"
             "  - id: 2\n    lines: { boot0: B2, reset: { name: R2, active_low: true } }\n"
             "    usb_port: vusb-2\n"
             "    unit: { transport: usb, holds: %s, faults: [\"klipper-sensor:stuck\"] }\n",
             USB_COMBINED, USB_COMBINED);
    e2e_write_file("lab.yaml", fx);
    EXPECT_RUN(1, STATION " --plain run " STATION_SOURCE_DIR "/jobs/nightly-regression.yaml"
                 " -f %s/lab.yaml --reports %s/reports --junit %s/nightly.xml", e2e_dir, e2e_dir, e2e_dir);
    EXPECT_OUT("1 passed, 1 failed");
    assert_int_equal(e2e_run("cat %s/nightly.xml", e2e_dir), 0);
    EXPECT_OUT("<testsuites name=\"nightly-regression\">");
    EXPECT_OUT("<testsuite name=\"vusb-1 (slot 1)\" tests=\"4\" failures=\"0\"");
    EXPECT_OUT("<testsuite name=\"vusb-2 (slot 2)\" tests=\"4\" failures=\"1\"");
    EXPECT_OUT("name=\"4-sample\"");
    EXPECT_OUT("<failure type=\"fail\" message=\"sample: measurement data_stddev = 0 counts is "
           "below the low limit 5 counts\">");
    EXPECT_OUT("clock_rate_ratio = ");
    EXPECT_OUT("</testsuites>");
    /* Only nightly wrote nothing to the units: no flash step ran. */
    const char *p = strstr(e2e_out, "flash");
    assert_null(p);
}

/* station mcu identify|query|sample against a unit in a slot (USB) and by CAN UUID. */
static void test_mcu_commands(void **state)
{
    if (access(USB_COMBINED, R_OK) != 0)
        skip(); /* ../shared/firmware is absent */
    char fx[2048];
    snprintf(fx, sizeof fx,
             "name: bench\ngpio: { backend: virtual }\n"
             "timing: { reset_pulse_ms: 1, boot_settle_ms: 1 }\nslots:\n"
             "  - id: 1\n    lines: { boot0: B1, reset: { name: R1, active_low: true } }\n"
             "    usb_port: vusb-1\n    unit: { transport: usb, holds: %s }\n"
             "  - id: 2\n    lines: { boot0: B2, reset: { name: R2, active_low: true } }\n"
             "    usb_port: vusb-2\n"
             "    can: { iface: vcan-virtual, bitrate: 1000000, uuid: 11aa22bb33c2 }\n"
             "    unit: { transport: can, can_uuid: 11aa22bb33c2, holds: %s }\n",
             USB_COMBINED, CAN_COMBINED);
    e2e_write_file("bench.yaml", fx);
    EXPECT_RUN(0, STATION " mcu identify --slot 1 -f %s/bench.yaml", e2e_dir);
    EXPECT_OUT("version: CARTOGRAPHER V4 6.0.0 Lite\n");
    EXPECT_OUT("mcu: stm32g431xx");
    EXPECT_OUT("clock: 170000000 Hz");
    EXPECT_OUT("transport: usb");
    EXPECT_RUN(0, STATION " mcu query get_uptime --response uptime --slot 1 -f %s/bench.yaml", e2e_dir);
    EXPECT_OUT("uptime high=0 clock=");
    EXPECT_RUN(0, STATION " mcu sample --count 20 --slot 1 -f %s/bench.yaml", e2e_dir);
    EXPECT_OUT("data: n 20, min ");
    EXPECT_RUN(0, STATION " mcu identify --uuid 11aa22bb33c2 -f %s/bench.yaml", e2e_dir);
    EXPECT_OUT("version: CARTOGRAPHER V4 6.0.0\n");
    EXPECT_OUT("transport: can 1000000 bit/s");
    EXPECT_RUN(0, STATION " mcu query get_canbus_id --uuid 11aa22bb33c2 --response canbus_id "
             "-f %s/bench.yaml", e2e_dir);
    EXPECT_OUT("canbus_id canbus_uuid=11aa22bb33c2 canbus_nodeid=4");
    /* Usage errors. */
    assert_int_equal(e2e_run(STATION " mcu identify -f %s/bench.yaml", e2e_dir), 2);
    EXPECT_OUT("give one of --device PATH, --uuid UUID or --slot N");
    assert_int_equal(e2e_run(STATION " mcu query no_such --slot 1 -f %s/bench.yaml", e2e_dir), 1);
    EXPECT_OUT("no command \"no_such\"");
}

/* The same version string but another build (a K1-style variant): identify compares the
 * dictionary the unit sends with the one in the job's image and fails. */
static void test_other_build_same_version_fails(void **state)
{
    if (access(USB_COMBINED, R_OK) != 0)
        skip(); /* ../shared/firmware is absent */
    write_variant("k1.bin", "\"build_versions\":\"\"", "\"build_versions\":\"gcc: k1\"");
    char extra[512];
    snprintf(extra, sizeof extra, "      holds: %s/k1.bin\n", e2e_dir);
    e2e_write_fixture("e2e-klipper", extra);
    int rc = e2e_run(STATION " --plain run " STATION_SOURCE_DIR "/jobs/nightly-regression.yaml"
                 " -f %s/fixture.yaml --reports %s/reports", e2e_dir, e2e_dir);
    assert_int_equal(rc, 1);
    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    const char *cause = str_at(doc, "cause");
    if (!strstr(cause, "identify: the unit's data dictionary") || !strstr(cause, "another build"))
        fail_msg("cause: %s", cause);
    int id = step_index(doc, "identify", 0);
    char p[96];
    snprintf(p, sizeof p, "steps.%d.version", id);
    assert_string_equal(str_at(doc, p), "CARTOGRAPHER V4 6.0.0 Lite");
    snprintf(p, sizeof p, "steps.%d.build_versions", id);
    assert_string_equal(str_at(doc, p), "gcc: k1");
    st_report_free(doc);
}

/* A Klipper MCU on a pseudo-terminal (a UART unit), served from a thread. */
typedef struct pty_unit {
    st_pty_server *srv;
    volatile int stop;
    pthread_t t;
} pty_unit;

static void *pty_loop(void *arg)
{
    pty_unit *p = arg;
    while (!p->stop)
        st_pty_server_run(p->srv, 20, NULL);
    return NULL;
}

/* station mcu identify|query|sample --device: the termios backend to a UART unit (the
 * model with the test subset dictionary; needs no ../shared). */
static void test_mcu_over_uart_pty(void **state)
{
    FILE *f = fopen(STATION_SOURCE_DIR "/protocols/klipper/testdata/cartographer-usb-subset.json",
                    "rb");
    assert_non_null(f);
    static char json[8192];
    size_t jn = fread(json, 1, sizeof json, f);
    fclose(f);
    uint8_t z[4096];
    uLongf zl = sizeof z;
    assert_int_equal(compress2(z, &zl, (const Bytef *)json, jn, 9), Z_OK);
    st_klp_model_cfg c = { .dict_z = z, .dict_z_len = zl };
    st_klp_model *m;
    st_err e;
    assert_int_equal(st_klp_model_new(&c, &m, &e), 0);
    pty_unit p = { 0 };
    assert_int_equal(st_pty_server_new(st_klp_model_stream(m), NULL, &p.srv, &e), 0);
    assert_int_equal(pthread_create(&p.t, NULL, pty_loop, &p), 0);
    const char *dev = st_pty_server_path(p.srv);
    EXPECT_RUN(0, STATION " mcu identify --device %s", dev);
    EXPECT_OUT("version: TEST USB 1.0\n");
    EXPECT_OUT("clock: 170000000 Hz");
    EXPECT_RUN(0, STATION " mcu query 'debug_ping data=7e00ff' --response pong --device %s", dev);
    EXPECT_OUT("pong data=7e00ff");
    EXPECT_RUN(0, STATION " mcu sample --count 30 --field temp --device %s", dev);
    EXPECT_OUT("temp: n 30, min 1997");
    p.stop = 1;
    pthread_join(p.t, NULL);
    st_pty_server_free(p.srv);
    st_klp_model_free(m);
}

/* A job's text with one image; refused before the (missing) fixture opens. */
static void expect_refused(const char *job_text, const char *why)
{
    e2e_write_file("job.yaml", job_text);
    EXPECT_RUN(2, STATION " --plain run %s/job.yaml -f %s/no-such-fixture.yaml --reports %s/reports",
                 e2e_dir, e2e_dir, e2e_dir);
    EXPECT_OUT(why);
    if (strstr(e2e_out, "no-such-fixture"))
        fail_msg("the fixture was opened before the refusal:\n%s", e2e_out);
    char rd[128];
    snprintf(rd, sizeof rd, "%s/reports", e2e_dir);
    assert_int_not_equal(access(rd, F_OK), 0);
}

static const char *sha_of(const char *image, char sha[65])
{
    assert_int_equal(e2e_run(STATION " image info %s", image), 0);
    const char *p = strstr(e2e_out, "sha256: ");
    assert_non_null(p);
    memcpy(sha, p + 8, 64);
    sha[64] = '\0';
    return sha;
}

/* Done-when 4: a CAN build for a USB unit and a USB build for a CAN unit are refused. */
static void test_transport_mismatches_refused(void **state)
{
    if (access(CAN_COMBINED, R_OK) != 0)
        skip(); /* ../shared/firmware is absent */
    char sha[65], job[2048];
    snprintf(job, sizeof job,
             "name: can-build-to-usb-unit\ntarget: stm32g431xx\nimages:\n  combined:\n"
             "    path: %s\n    load_addr: 0x08000000\n    sha256: %s\n"
             "klipper: { transport: usb }\n"
             "steps: [enter-bootloader, flash, verify, start, identify]\n",
             CAN_COMBINED, sha_of(CAN_COMBINED, sha));
    expect_refused(job, "images.combined: a can build (its Klipper dictionary has "
                        "CANBUS_FREQUENCY), but the job's units speak usb");
    snprintf(job, sizeof job,
             "name: usb-build-to-can-unit\ntarget: stm32g431xx\nimages:\n  application:\n"
             "    path: %s\n    load_addr: 0x08002000\n    sha256: %s\n"
             "katapult: { transport: can }\nklipper: { transport: can }\n"
             "steps: [enter-katapult, katapult-flash, katapult-verify, katapult-complete]\n",
             USB_APP, sha_of(USB_APP, sha));
    expect_refused(job, "images.application: a usb build");
    /* A version the job does not pin. */
    snprintf(job, sizeof job,
             "name: wrong-version\ntarget: stm32g431xx\nimages:\n  combined:\n"
             "    path: %s\n    load_addr: 0x08000000\n    sha256: %s\n"
             "klipper: { transport: usb, version: \"CARTOGRAPHER V4 6.1.0 Lite\" }\n"
             "steps: [enter-bootloader, flash]\n",
             USB_COMBINED, sha_of(USB_COMBINED, sha));
    expect_refused(job, "holds version \"CARTOGRAPHER V4 6.0.0 Lite\", the job pins "
                        "\"CARTOGRAPHER V4 6.1.0 Lite\"");
}

/* A build for another MCU (the synthetic image with a dictionary naming stm32h723xx) is
 * refused; this one needs no ../shared. */
static void test_other_mcu_refused(void **state)
{
    assert_int_equal(e2e_run(STATION " image generate %s/synth.bin", e2e_dir), 0);
    char p[256];
    snprintf(p, sizeof p, "%s/synth.bin", e2e_dir);
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    static const char json[] =
        "{\"version\":\"OTHER 1.0\",\"build_versions\":\"\",\"config\":{\"CLOCK_FREQ\":"
        "550000000,\"MCU\":\"stm32h723xx\",\"RESERVE_PINS_USB\":\"PA11,PA12\"},"
        "\"commands\":{\"get_uptime\":4},\"responses\":{\"uptime high=%u clock=%u\":5}}";
    uint8_t z[512];
    uLongf zl = sizeof z;
    assert_int_equal(compress2(z, &zl, (const Bytef *)json, sizeof json - 1, 9), Z_OK);
    assert_int_equal(fseek(f, 0x2000 + 0x4000, SEEK_SET), 0);
    assert_int_equal(fwrite(z, 1, zl, f), zl);
    fclose(f);
    assert_int_equal(e2e_run(STATION " image info %s", p), 0);
    EXPECT_OUT("  mcu: stm32h723xx");
    char sha[65], job[1024];
    snprintf(job, sizeof job,
             "name: other-mcu\ntarget: stm32g431xx\nimages:\n  combined:\n"
             "    path: %s\n    load_addr: 0x08000000\n    sha256: %s\n"
             "steps: [enter-bootloader, flash]\n",
             p, sha_of(p, sha));
    expect_refused(job, "images.combined: built for MCU stm32h723xx (its Klipper dictionary), "
                        "the job targets stm32g431xx");
}

/* The application enumerates with the USB id its own image's device descriptor names, not
 * the MCU table's: a synthetic image whose descriptor says 1209:beef, flashed through the
 * ROM DFU and started, shows up as 1209:beef; a job waiting for 1d50:614e fails at
 * wait-for-app naming the id it waited for, one waiting for 1209:beef passes. */
static void test_app_usb_id_from_image(void **state)
{
    const st_mcu *mcu = st_mcu_find("stm32g431xx");
    uint8_t *img;
    assert_int_equal(st_synth_combined(mcu, ST_SYNTH_DEFAULT_SIZE, &img, NULL), 0);
    static const uint8_t desc[] = {
        18, 1, 0x00, 0x02, 0x02, 0x00, 0x00, 16, 0x09, 0x12, 0xef, 0xbe, 0x00, 0x01, 1, 2, 3, 1,
        0, 0, 4, 3, 0x09, 0x04,
        10, 3, 'A', 0, 'c', 0, 'm', 0, 'e', 0,
        16, 3, 'P', 0, 'r', 0, 'o', 0, 'b', 0, 'e', 0, ' ', 0, 'X', 0,
    };
    memcpy(img + mcu->katapult_app_offset + 0x800, desc, sizeof desc);
    char p[256];
    snprintf(p, sizeof p, "%s/other-id.bin", e2e_dir);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(img, 1, ST_SYNTH_DEFAULT_SIZE, f), ST_SYNTH_DEFAULT_SIZE);
    fclose(f);
    uint8_t md[32];
    char hex[65];
    st_sha256(img, ST_SYNTH_DEFAULT_SIZE, md);
    st_hex(md, 32, false, hex);
    free(img);
    e2e_write_fixture("e2e-klipper", "");
    const char *ids[2] = { "1d50:614e", "1209:beef" };
    for (int i = 0; i < 2; i++) {
        char job[2048];
        snprintf(job, sizeof job,
                 "name: app-usb-id\n"
                 "target: stm32g431xx\n"
                 "images: { combined: { path: %s, load_addr: 0x08000000, sha256: %s } }\n"
                 "report_dir: r\n"
                 "steps:\n"
                 "  - enter-bootloader\n"
                 "  - flash: { image: combined }\n"
                 "  - start: { image: combined }\n"
                 "  - wait-for-app: { usb: \"%s\", timeout_ms: 1500, retries: 0 }\n",
                 p, hex, ids[i]);
        e2e_write_file("job.yaml", job);
        e2e_run("rm -rf %s/reports", e2e_dir);
        int rc = e2e_run(STATION " --plain run %s/job.yaml -f %s/fixture.yaml --reports %s/reports",
                     e2e_dir, e2e_dir, e2e_dir);
        st_rnode *doc = e2e_load_report("reports", NULL, NULL);
        int w = step_index(doc, "wait-for-app", 0);
        char k[96];
        snprintf(k, sizeof k, "steps.%d.outcome", w);
        if (i == 0) {
            assert_int_equal(rc, 1);
            assert_string_equal(str_at(doc, "verdict"), "fail");
            assert_string_equal(str_at(doc, k), "fail");
            const char *cause = str_at(doc, "cause");
            if (!strstr(cause, "wait-for-app") ||
                !strstr(cause, "waiting for the application 1d50:614e: the port has "
                               "1209:beef (\"Acme\" \"Probe X\") instead"))
                fail_msg("cause: %s\n%s", cause, e2e_out);
        } else {
            if (rc != 0)
                fail_msg("exit %d\n%s", rc, e2e_out);
            assert_string_equal(str_at(doc, k), "pass");
            snprintf(k, sizeof k, "steps.%d.app_usb.id", w);
            const char *got = st_rget_str(doc, k);
            if (!got || strcmp(got, "1209:beef") != 0)
                fail_msg("%s: %s\n%s", k, got ? got : "(absent)", e2e_out);
            snprintf(k, sizeof k, "steps.%d.app_usb.product", w);
            assert_string_equal(str_at(doc, k), "Probe X");
        }
        st_report_free(doc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_image_info_real, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_image_info_synthetic, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_app_image_at_zero_refused, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_provision_passes, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_stuck_sensor_fails, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_temperature_out_of_range, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_link_faults, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_other_version_fails_identify, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_other_build_same_version_fails, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_transport_mismatches_refused, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_other_mcu_refused, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_nightly_junit, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_mcu_commands, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_mcu_over_uart_pty, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_app_usb_id_from_image, e2e_setup, e2e_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
