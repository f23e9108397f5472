/* The station context's check of a virtual fixture's units (st_ctx_check_units, run by
 * st_ctx_open before any unit is made): unknown or malformed fault strings, `holds` images
 * that do not fit the unit's flash, can-bus-off on a USB unit, and the one serial limit,
 * each refused with file, line and field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "station/context.h"
#include "station/core/testutil.h"

static char dir[64];

static int setup(void **state)
{
    st_test_tmpl(dir, sizeof dir, "st-ctx");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A one-slot virtual fixture whose unit map ends with `unit` (indented 6). */
static const char *fixture(const char *unit)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/fx.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "name: t\n"
               "gpio: {backend: virtual}\n"
               "slots:\n"
               "  - id: 1\n"
               "    lines: {boot0: B0, reset: R0}\n"
               "    usb_port: \"1-1\"\n"
               "    unit:\n"
               "%s", unit);
    fclose(f);
    return path;
}

static void write_bin(const char *name, size_t n)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++)
        fputc(0x5a, f);
    fclose(f);
}

/* st_ctx_open refuses the fixture with a message containing every `want`. */
static void refused(const char *unit, const char *want1, const char *want2)
{
    st_ctx *c = NULL;
    st_err e;
    int rc = st_ctx_open(fixture(unit), NULL, &c, &e);
    if (rc == 0) {
        st_ctx_close(c);
        fail_msg("accepted:\n%s", unit);
    }
    if (!strstr(e.msg, want1) || (want2 && !strstr(e.msg, want2)))
        fail_msg("message \"%s\" lacks \"%s\" / \"%s\"", e.msg, want1, want2 ? want2 : "");
}

static void test_good_units_open(void **state)
{
    write_bin("small.bin", 4096);
    st_ctx *c = NULL;
    st_err e;
    const char *p = fixture("      holds: small.bin\n"
                            "      holds_addr: 0x0801F000\n" /* the last 4 KiB */
                            "      serial: \"ABCDEFGHIJKLMNO\"\n" /* 15: the limit */
                            "      faults: [\"power-loss:100\", \"dfu-transfer-size:1024\", "
                            "katapult-silent-complete]\n");
    if (st_ctx_open(p, NULL, &c, &e) != 0)
        fail_msg("%s", e.msg);
    assert_int_equal(st_ctx_check_units(st_ctx_fixture(c), &e), 0);
    assert_string_equal(st_ctx_virtual_state(c, 1), "rom-dfu");
    st_ctx_close(c);
}

static void test_unknown_fault(void **state)
{
    refused("      faults:\n"
            "        - dfu-start-error\n"
            "        - \"melt:1\"\n",
            "fx.yaml:10: slots[0].unit.faults[1]: unknown or malformed fault \"melt:1\"",
            "dfu-start-error");
    refused("      faults: [\"dfu-stall:0\"]\n", "fx.yaml:8: slots[0].unit.faults[0]:",
            "\"dfu-stall:0\"");
    refused("      faults: [\"dfu-transfer-size:8192\"]\n", "slots[0].unit.faults[0]", NULL);
    refused("      faults: [\"corrupt-page:0x08020000\"]\n",
            "slots[0].unit.faults[0]: fault \"corrupt-page\": 0x8020000 is not in the "
            "stm32g431xx's main flash", NULL);
    refused("      faults: [can-bus-off]\n",
            "slots[0].unit.faults[0]: can-bus-off needs a CAN unit", NULL);
    /* The Bluetooth module's own fault list (protocols/bgapi). */
    refused("      module:\n"
            "        faults: [\"drop-rx:3\", \"melt\"]\n"
            "    module: { baud: 115200 }\n",
            "fx.yaml:9: slots[0].unit.module.faults[1]:", "melt");
}

static void test_holds_must_fit(void **state)
{
    write_bin("big.bin", 200000);
    refused("      holds: big.bin\n",
            "fx.yaml:8: slots[0].unit.holds: an image of 200000 bytes at 0x08000000 does not "
            "fit the stm32g431xx's main flash (0x08000000..0x0801FFFF)", NULL);
    write_bin("small.bin", 4096);
    refused("      holds: small.bin\n"
            "      holds_addr: 0x0801F800\n",
            "fx.yaml:8: slots[0].unit.holds: an image of 4096 bytes at 0x0801F800 does not fit",
            NULL);
    refused("      holds: small.bin\n"
            "      holds_addr: 0x20000000\n",
            "slots[0].unit.holds: an image of 4096 bytes at 0x20000000 does not fit", NULL);
}

/* One limit, checked when the fixture is read: a serial the unit model cannot hold used to
 * pass `fixture check` and then fail `run` with an out-of-memory code. */
static void test_serial_limit(void **state)
{
    refused("      serial: \"ABCDEFGHIJKLMNOP\"\n",
            "fx.yaml:8: slots[0].unit.serial: too long (16 characters, at most 15)", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_units_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_fault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_holds_must_fit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serial_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
