/* Every fault string a virtual unit accepts (vunit.h), shown firing: a unit is built from a
 * config carrying the string, as a fixture gives it, and the station's own host engines
 * (DfuSe over the in-memory USB bus, Katapult over USB-CDC) run against it; each test
 * checks the effect that fault must have, and where it makes sense that the same operation
 * passes on a clean unit or after the fault is spent. (can-bus-off is a fault of the bus,
 * not of the unit: hil-tests/e2e/test_e2e_virtual.c runs a job on a bus-off bus.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "protocols/dfuse/dfuse.h"
#include "protocols/katapult/katapult.h"
#include "protocols/link/stream_cdc.h"
#include "protocols/link/usb_model.h"
#include "protocols/sim/synth.h"
#include "protocols/sim/vunit.h"

#define PORT "1-1"

typedef struct rig {
    st_vusb_bus *bus;
    st_usb_host *host;
    st_vunit *u;
    const st_mcu *mcu;
    uint8_t *img;      /* synthetic combined image, ST_SYNTH_DEFAULT_SIZE bytes */
} rig;

static int port_attach(void *ctx, st_usb_model *m, st_err *err)
{
    return st_vusb_attach(ctx, PORT, m, err);
}

static void port_detach(void *ctx)
{
    st_vusb_detach(ctx, PORT);
}

/* A unit with one fault; katapult: it holds the combined image with the application's
 * first page erased, so it stays in Katapult. */
static void rig_up(rig *r, const char *fault, bool katapult, st_timing_profile timing)
{
    memset(r, 0, sizeof *r);
    r->mcu = st_mcu_find("stm32g431xx");
    st_err e;
    assert_int_equal(st_synth_combined(r->mcu, ST_SYNTH_DEFAULT_SIZE, &r->img, &e), 0);
    r->bus = st_vusb_bus_new();
    assert_non_null(r->bus);
    assert_int_equal(st_usb_host_mem_new(r->bus, NULL, &r->host, &e), 0);
    const char *faults[1] = { fault };
    st_vunit_config cfg = { .mcu = r->mcu, .timing = timing, .faults = faults,
                            .n_faults = fault ? 1 : 0 };
    if (katapult) {
        cfg.holds = r->img;
        cfg.holds_len = r->mcu->katapult_app_offset; /* Katapult only: the app is blank */
        cfg.holds_addr = r->mcu->flash_start;
    }
    st_vunit_usb_port port = { port_attach, port_detach, r->bus };
    if (st_vunit_new(&cfg, &port, NULL, &r->u, &e) != 0)
        fail_msg("%s: %s", fault ? fault : "(none)", e.msg);
    assert_string_equal(st_vunit_state(r->u), katapult ? "katapult" : "rom-dfu");
}

static void rig_down(rig *r)
{
    st_vunit_free(r->u);
    st_usb_host_free(r->host);
    st_vusb_bus_free(r->bus);
    free(r->img);
}

static st_image *combined(rig *r)
{
    st_image *img = NULL;
    assert_int_equal(st_image_from_memory("combined", r->img, ST_SYNTH_DEFAULT_SIZE,
                                          r->mcu->flash_start, &img, NULL), 0);
    return img;
}

static st_image *application(rig *r)
{
    st_image *img = NULL;
    uint32_t off = r->mcu->katapult_app_offset;
    assert_int_equal(st_image_from_memory("application", r->img + off,
                                          ST_SYNTH_DEFAULT_SIZE - off,
                                          r->mcu->flash_start + off, &img, NULL), 0);
    return img;
}

static int dfu_open(rig *r, st_dfuse **d, st_err *e)
{
    st_usb_dev_info info;
    int rc = st_usb_host_find(r->host, 0x0483, 0xdf11, PORT, &info, e);
    return rc ? rc : st_dfuse_open(r->host, &info, NULL, d, e);
}

/* Flash + verify the combined image over DFU; returns the first failure. */
static int dfu_write(rig *r, st_dfuse_result *res, st_err *e)
{
    st_dfuse *d = NULL;
    int rc = dfu_open(r, &d, e);
    if (rc)
        return rc;
    st_image *img = combined(r);
    memset(res, 0, sizeof *res);
    rc = st_dfuse_flash(d, img, NULL, res, e);
    if (rc == 0)
        rc = st_dfuse_verify(d, img, NULL, res, e);
    st_image_free(img);
    st_dfuse_close(d);
    return rc;
}

/* BOOT0 high and a reset pulse: back into the ROM, as the ladder's last rung does. */
static void rom_again(rig *r)
{
    st_vunit_set_pin(r->u, ST_VUNIT_BOOT0, 1);
    st_vunit_set_pin(r->u, ST_VUNIT_NRST, 0);
    st_vunit_set_pin(r->u, ST_VUNIT_NRST, 1);
    assert_string_equal(st_vunit_state(r->u), "rom-dfu");
}

/* ---- DFU faults -------------------------------------------------------------------- */

static void test_clean_unit_passes(void **state)
{
    rig r;
    rig_up(&r, NULL, false, ST_TIMING_NONE);
    st_dfuse_result res;
    st_err e;
    assert_int_equal(dfu_write(&r, &res, &e), 0);
    assert_int_equal(res.stall_recoveries, 0);
    rig_down(&r);
}

static void test_dfu_start_error(void **state)
{
    rig r;
    rig_up(&r, "dfu-start-error", false, ST_TIMING_NONE);
    st_dfuse *d = NULL;
    st_err e;
    assert_int_equal(dfu_open(&r, &d, &e), 0);
    assert_int_equal(st_dfuse_get_info(d)->start_state, 10); /* dfuERROR, cleared by open */
    assert_int_equal(st_dfuse_get_info(d)->start_status, 0x0E);
    st_dfuse_close(d);
    rig_down(&r);
}

static void test_dfu_transfer_size(void **state)
{
    rig r;
    rig_up(&r, "dfu-transfer-size:256", false, ST_TIMING_NONE);
    st_dfuse *d = NULL;
    st_err e;
    assert_int_equal(dfu_open(&r, &d, &e), 0);
    assert_int_equal(st_dfuse_get_info(d)->transfer_size, 256);
    st_dfuse_close(d);
    rig_down(&r);
}

static void test_dfu_stall(void **state)
{
    rig r;
    rig_up(&r, "dfu-stall:12", false, ST_TIMING_NONE);
    st_dfuse_result res;
    st_err e;
    int rc = dfu_write(&r, &res, &e);
    /* The stall happened: recovered by CLRSTATUS + retry, or reported. */
    assert_true(rc != 0 || res.stall_recoveries >= 1);
    rig_down(&r);
}

static void test_dfu_disconnect(void **state)
{
    rig r;
    rig_up(&r, "dfu-disconnect:20", false, ST_TIMING_NONE);
    st_dfuse_result res;
    st_err e;
    assert_int_equal(dfu_write(&r, &res, &e), ST_ERR_DISCONNECT);
    /* A disconnect is an event: after a reset the ROM is back and the write goes through
     * (it used to vanish again at once, a unit no retry could reach). */
    rom_again(&r);
    if (dfu_write(&r, &res, &e) != 0)
        fail_msg("after the disconnect and a reset: %s", e.msg);
    rig_down(&r);
}

static void leave_fault(const char *fault)
{
    rig r;
    rig_up(&r, fault, false, ST_TIMING_NONE);
    st_dfuse_result res;
    st_err e;
    assert_int_equal(dfu_write(&r, &res, &e), 0);
    st_dfuse *d = NULL;
    assert_int_equal(dfu_open(&r, &d, &e), 0);
    memset(&res, 0, sizeof res);
    int rc = st_dfuse_leave(d, r.mcu->flash_start, true, &res, &e);
    st_dfuse_close(d);
    /* The leave was not answered as the spec says: an error, or accepted without status. */
    if (fault)
        assert_true(rc != 0 || res.leave_status_missing);
    else
        assert_true(rc == 0 && !res.leave_status_missing);
    rig_down(&r);
}

static void test_dfu_leave(void **state)
{
    leave_fault(NULL);
    leave_fault("dfu-leave:stall");
    leave_fault("dfu-leave:vanish");
    leave_fault("dfu-leave:stall-dnload");
}

static void test_corrupt_page(void **state)
{
    rig r;
    rig_up(&r, "corrupt-page:0x08004000", false, ST_TIMING_NONE);
    st_dfuse_result res;
    st_err e;
    assert_int_equal(dfu_write(&r, &res, &e), ST_ERR_VERIFY);
    assert_true(res.fail_addr >= 0x08004000u && res.fail_addr < 0x08004800u);
    rig_down(&r);
}

static void test_prog_error(void **state)
{
    rig r;
    rig_up(&r, "prog-error:0x08006000", false, ST_TIMING_NONE);
    st_dfuse_result res;
    st_err e;
    assert_int_equal(dfu_write(&r, &res, &e), ST_ERR_DEVICE);
    assert_non_null(strstr(e.msg, "0x08006000"));
    rig_down(&r);
}

static void test_slow_erase(void **state)
{
    rig r;
    rig_up(&r, "slow-erase:7", false, ST_TIMING_DATASHEET);
    uint64_t cost = 0;
    assert_int_equal(st_flash_erase_page(st_vunit_flash(r.u), 0x08010000u, &cost), 0);
    assert_int_equal(cost, 7ull * r.mcu->page_erase_us);
    rig_down(&r);
}

/* The fault a unit has from arrival fires during the write even though the unit booted
 * (and was reset into the ROM) before: it used to be disarmed by the first boot. */
static void test_power_loss(void **state)
{
    rig r;
    rig_up(&r, "power-loss:10000", false, ST_TIMING_NONE);
    rom_again(&r);
    st_dfuse_result res;
    st_err e;
    int rc = dfu_write(&r, &res, &e);
    assert_int_equal(rc, ST_ERR_DISCONNECT);
    /* Cut at byte 10000: the rest of the image never reached the flash. */
    uint8_t b[8];
    assert_int_equal(st_flash_read(st_vunit_flash(r.u), 0x08000000u + 10000u, b, 8), 0);
    assert_memory_not_equal(b, r.img + 10000, 8);
    /* Power back (BOOT0 + reset): the ROM is the way back and a rerun passes. */
    rom_again(&r);
    assert_int_equal(dfu_write(&r, &res, &e), 0);
    rig_down(&r);
}

/* ---- Katapult faults (over USB-CDC) ------------------------------------------------ */

typedef struct kat_run {
    int rc;
    st_err err;
    uint32_t retries;
    st_katapult_result res;
} kat_run;

/* CONNECT, flash the application, verify it, COMPLETE; stops at the first failure. */
static kat_run kat_flash(rig *r, bool complete)
{
    kat_run k;
    memset(&k, 0, sizeof k);
    st_usb_dev_info info;
    k.rc = st_usb_host_wait(r->host, 0x1d50, 0x6177, PORT, 1000, &info, &k.err);
    st_stream *s = NULL;
    if (k.rc == 0)
        k.rc = st_stream_cdc_open(r->host, &info, NULL, &s, &k.err);
    if (k.rc)
        return k;
    /* Short waits: a lost frame costs 200 ms, not flashtool's 2 s. */
    st_katapult_opts o = { .read_timeout_ms = 200, .block_timeout_ms = 200,
                           .retry_pause_ms = 10, .busy_wait_ms = 10, .addr_pause_ms = 10 };
    st_katapult *kat = NULL;
    k.rc = st_katapult_open(s, &o, &kat, &k.err);
    st_katapult_info ki;
    st_image *img = application(r);
    if (k.rc == 0)
        k.rc = st_katapult_connect(kat, &ki, &k.err);
    if (k.rc == 0)
        k.rc = st_katapult_flash(kat, img, NULL, &k.res, &k.err);
    if (k.rc == 0)
        k.rc = st_katapult_verify(kat, img, &k.res, &k.err);
    if (k.rc == 0 && complete)
        k.rc = st_katapult_complete(kat, &k.err);
    if (kat)
        k.retries = st_katapult_retries(kat);
    st_image_free(img);
    st_katapult_close(kat);
    st_stream_close(s);
    return k;
}

static void test_katapult_clean(void **state)
{
    rig r;
    rig_up(&r, NULL, true, ST_TIMING_NONE);
    kat_run k = kat_flash(&r, true);
    if (k.rc)
        fail_msg("%s", k.err.msg);
    assert_int_equal(k.retries, 0);
    rig_down(&r);
}

/* A lost or damaged frame costs a retry, and the transfer still completes. */
static void kat_retry_fault(const char *fault)
{
    rig r;
    rig_up(&r, fault, true, ST_TIMING_NONE);
    kat_run k = kat_flash(&r, false);
    if (k.rc)
        fail_msg("%s: %s", fault, k.err.msg);
    if (k.retries < 1)
        fail_msg("%s: no retry: the fault did not fire", fault);
    rig_down(&r);
}

static void test_katapult_frame_faults(void **state)
{
    kat_retry_fault("katapult-drop-rx:5");
    kat_retry_fault("katapult-drop-tx:5");
    kat_retry_fault("katapult-corrupt-rx:5");
    kat_retry_fault("katapult-corrupt-tx:5");
    kat_retry_fault("katapult-nack-storm:2");
}

static void test_katapult_power_loss(void **state)
{
    rig r;
    rig_up(&r, "katapult-power-loss:40", true, ST_TIMING_NONE);
    kat_run k = kat_flash(&r, false);
    assert_int_not_equal(k.rc, 0);
    assert_true(k.res.blocks_sent < 40); /* cut off at block 40 */
    /* The application's first page was written, so a plain reset would boot the truncated
     * app (design.md section 7): the ROM is the way back, and the fault is spent. */
    rom_again(&r);
    st_dfuse_result res;
    if (dfu_write(&r, &res, &k.err) != 0)
        fail_msg("rerun over the ROM after the power loss: %s", k.err.msg);
    rig_down(&r);
}

static void test_katapult_silent_complete(void **state)
{
    rig r;
    rig_up(&r, "katapult-silent-complete", true, ST_TIMING_NONE);
    kat_run k = kat_flash(&r, true);
    assert_int_not_equal(k.rc, 0); /* COMPLETE got no answer */
    /* ... but the unit still starts its application. */
    st_usb_dev_info info;
    assert_int_equal(st_usb_host_wait(r.host, 0x1d50, 0x614e, PORT, 2000, &info, NULL), 0);
    assert_string_equal(st_vunit_state(r.u), "app");
    rig_down(&r);
}

static void test_katapult_mcu(void **state)
{
    rig r;
    rig_up(&r, "katapult-mcu:stm32f072xb", true, ST_TIMING_NONE);
    st_usb_dev_info info;
    st_err e;
    assert_int_equal(st_usb_host_wait(r.host, 0x1d50, 0x6177, PORT, 1000, &info, &e), 0);
    st_stream *s = NULL;
    assert_int_equal(st_stream_cdc_open(r.host, &info, NULL, &s, &e), 0);
    st_katapult *kat = NULL;
    assert_int_equal(st_katapult_open(s, NULL, &kat, &e), 0);
    st_katapult_info ki;
    assert_int_equal(st_katapult_connect(kat, &ki, &e), 0);
    assert_string_equal(ki.mcu, "stm32f072xb");
    assert_int_equal(st_katapult_check_mcu(&ki, "stm32g431xx", &e), ST_ERR_MISMATCH);
    st_katapult_close(kat);
    st_stream_close(s);
    rig_down(&r);
}

/* ---- the list in vunit.h is the list the parser takes -------------------------------- */

static void test_malformed_faults_refused(void **state)
{
    static const char *const bad[] = {
        "dfu-stall", "dfu-stall:0", "dfu-stall:x", "dfu-leave:sideways", "corrupt-page:0x1",
        "prog-error", "slow-erase:0", "slow-erase:1001", "power-loss", "power-loss:-1",
        "katapult-drop-rx:0", "katapult-melt:3", "katapult-silent-complete:1",
        "dfu-start-error:1", "can-bus-off", "", "melt", "katapult-mcu:", "katapult-mcu:STM32",
        "katapult-mcu:a/b",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rig r;
        memset(&r, 0, sizeof r);
        r.mcu = st_mcu_find("stm32g431xx");
        r.bus = st_vusb_bus_new();
        const char *faults[1] = { bad[i] };
        st_vunit_config cfg = { .mcu = r.mcu, .faults = faults, .n_faults = 1 };
        st_vunit_usb_port port = { port_attach, port_detach, r.bus };
        st_err e;
        if (st_vunit_new(&cfg, &port, NULL, &r.u, &e) != ST_ERR_INVAL)
            fail_msg("fault \"%s\" was accepted", bad[i]);
        st_vusb_bus_free(r.bus);
    }
}

/* Readout protection (level 1) stops the ROM, not code running from flash: a protected
 * unit boots the Katapult it holds, which writes and reads its own flash; the ROM DFU is
 * refused. (The unit used to boot nothing: its boot logic read the flash as the ROM.) */
static void test_rdp_code_still_runs(void **state)
{
    rig r;
    rig_up(&r, "rdp", true, ST_TIMING_NONE); /* asserts that Katapult runs */
    kat_run k = kat_flash(&r, false);
    if (k.rc)
        fail_msg("Katapult on a protected unit: %s", k.err.msg);
    rom_again(&r);
    st_dfuse_result res;
    st_err e;
    assert_int_not_equal(dfu_write(&r, &res, &e), 0);
    rig_down(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_unit_passes),
        cmocka_unit_test(test_dfu_start_error),
        cmocka_unit_test(test_dfu_transfer_size),
        cmocka_unit_test(test_dfu_stall),
        cmocka_unit_test(test_dfu_disconnect),
        cmocka_unit_test(test_dfu_leave),
        cmocka_unit_test(test_corrupt_page),
        cmocka_unit_test(test_prog_error),
        cmocka_unit_test(test_slow_erase),
        cmocka_unit_test(test_power_loss),
        cmocka_unit_test(test_katapult_clean),
        cmocka_unit_test(test_katapult_frame_faults),
        cmocka_unit_test(test_katapult_power_loss),
        cmocka_unit_test(test_rdp_code_still_runs),
        cmocka_unit_test(test_katapult_silent_complete),
        cmocka_unit_test(test_katapult_mcu),
        cmocka_unit_test(test_malformed_faults_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
