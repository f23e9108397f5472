/* End to end on the in-memory CAN bus at 1 Mbit/s with datasheet timing: a unit running
 * the Klipper application is found by UUID, asked into Katapult, given node id 129, flashed
 * and verified by the Katapult engine over the CAN byte stream, and started again (seed 001
 * known answers: 14 pages, 435 blocks, SHA-1 FCA6E37F...). Skips without shared firmware. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <unistd.h>

#include "protocols/canadmin/canadmin.h"
#include "protocols/canadmin/klipper_node.h"
#include "protocols/katapult/katapult.h"
#include "protocols/katapult/katapult_model.h"
#include "station/core/clock.h"

#define FW STATION_SHARED_DIR "/firmware/cartographer-v4/6.0.0/CartographerV4_6.0.0_USB_lite_8kib_offset.bin"

/* The unit: one flash, a Klipper application node and a Katapult node; only one of them is
 * on the bus at a time, as on a real probe. */
typedef struct unit {
    st_vcan_bus *bus;
    st_flash *flash;
    st_katapult_model *boot_model;
    st_can_stream_node *boot;
    st_klipper_node *app;
    unsigned to_boot, to_app;
} unit;

static void unit_enter_katapult(void *ctx)
{
    unit *u = ctx;
    u->to_boot++;
    st_vcan_detach(u->bus, st_klipper_node_base(u->app));
    st_katapult_model_reboot(u->boot_model);
    st_vcan_attach(u->bus, st_can_stream_node_base(u->boot), NULL);
}

static void unit_start_app(void *ctx, st_katapult_model *m)
{
    unit *u = ctx;
    u->to_app++;
    st_vcan_detach(u->bus, st_can_stream_node_base(u->boot));
    st_vcan_attach(u->bus, st_klipper_node_base(u->app), NULL);
}

static void test_katapult_over_can(void **state)
{
    if (access(FW, R_OK) != 0)
        skip(); /* firmware from shared/firmware is absent: nothing to flash */
    st_image *img;
    assert_int_equal(st_image_load(FW, 0, &img, NULL), 0);

    static const uint8_t chip_uid[12] = { 0x3a, 0x00, 0x28, 0x00, 0x0f, 0x51,
                                          0x33, 0x32, 0x37, 0x38, 0x37, 0x30 };
    st_can_uuid uuid;
    st_can_uuid_from_chip_uid(chip_uid, &uuid);

    unit u = { 0 };
    u.bus = st_vcan_bus_new(1000000, ST_TIMING_DATASHEET);
    u.flash = st_flash_new(st_mcu_find("stm32g431xx"), ST_TIMING_DATASHEET);
    assert_non_null(u.bus);
    assert_non_null(u.flash);
    st_katapult_model_cfg kc = { .with_can = true, .on_reset = unit_start_app, .reset_ctx = &u };
    memcpy(kc.uuid, uuid.b, 6);
    u.boot_model = st_katapult_model_new(u.flash, &kc);
    assert_non_null(u.boot_model);
    st_can_stream_node_cfg bc = { .app = ST_CANADMIN_APP_KATAPULT };
    memcpy(bc.uuid, uuid.b, 6);
    u.boot = st_can_stream_node_new(st_katapult_model_stream(u.boot_model), &bc);
    st_klipper_node_cfg ac = { .uuid = uuid, .on_bootloader_request = unit_enter_katapult,
                               .ctx = &u };
    u.app = st_klipper_node_new(&ac);
    assert_non_null(u.boot);
    assert_non_null(u.app);
    assert_int_equal(st_vcan_attach(u.bus, st_klipper_node_base(u.app), NULL), 0);

    st_can_iface *ifc;
    st_can_link *admin, *data;
    assert_int_equal(st_can_iface_mem_new(u.bus, "can0", NULL, &ifc, NULL), 0);
    assert_int_equal(st_can_iface_prepare(ifc, 1000000, NULL), 0);
    assert_int_equal(ifc->ops->open_link(ifc, &admin, NULL), 0);
    assert_int_equal(ifc->ops->open_link(ifc, &data, NULL), 0);

    /* Discovery: the unit answers as the Klipper application. */
    st_canadmin_node found[4];
    assert_int_equal(st_canadmin_query(admin, 100, found, 4, NULL), 1);
    assert_true(st_can_uuid_equal(&found[0].uuid, &uuid));
    assert_int_equal(found[0].app, ST_CANADMIN_APP_KLIPPER);

    uint64_t t0 = st_now_us();
    st_err e = { 0 };
    int rc = st_canadmin_katapult_assign(admin, &uuid, ST_CANADMIN_ASSIGN_REQUEST_BOOTLOADER,
                                         ST_CANADMIN_NODEID_KATAPULT, 2000, &e);
    assert_int_equal(rc, 0);
    uint64_t t_assign = st_now_us() - t0;
    assert_int_equal(u.to_boot, 1);

    st_stream *s;
    assert_int_equal(st_can_stream_open(data, st_canadmin_nodeid_tx_id(ST_CANADMIN_NODEID_KATAPULT),
                                        st_canadmin_nodeid_rx_id(ST_CANADMIN_NODEID_KATAPULT), &s,
                                        NULL),
                     0);
    st_katapult *k;
    assert_int_equal(st_katapult_open(s, NULL, &k, NULL), 0);
    st_katapult_info info;
    rc = st_katapult_connect(k, &info, &e);
    if (rc)
        fail_msg("%s", e.msg);
    assert_string_equal(info.mcu, "stm32g431xx");
    uint8_t id[6];
    assert_int_equal(st_katapult_get_canbus_id(k, id, NULL), 0);
    assert_memory_equal(id, uuid.b, 6);

    uint64_t t1 = st_now_us();
    st_katapult_result r;
    rc = st_katapult_flash(k, img, NULL, &r, &e);
    if (rc)
        fail_msg("%s", e.msg);
    uint64_t t_flash = st_now_us() - t1;
    assert_int_equal(r.pages, 14);
    t1 = st_now_us();
    rc = st_katapult_verify(k, img, &r, &e);
    if (rc)
        fail_msg("%s", e.msg);
    uint64_t t_verify = st_now_us() - t1;
    assert_int_equal(r.blocks_verified, 435);
    assert_string_equal(r.sha1_hex, "FCA6E37F4D9F344E7AF18C7609AEBBCFD6E597E0");
    assert_int_equal(st_katapult_complete(k, NULL), 0);
    assert_int_equal(st_katapult_retries(k), 0);

    /* ~100 ms later the unit starts the application and answers as Klipper again. */
    int n = 0;
    st_deadline d = st_deadline_in_ms(1000);
    while (n == 0 && !st_deadline_passed(d))
        n = st_canadmin_query(admin, 50, found, 4, NULL);
    assert_int_equal(n, 1);
    assert_int_equal(found[0].app, ST_CANADMIN_APP_KLIPPER);
    assert_int_equal(u.to_app, 1);

    st_vcan_stats bs;
    st_vcan_get_stats(u.bus, &bs);
    st_katapult_model_stats ms;
    st_katapult_model_get_stats(u.boot_model, &ms);
    print_message("katapult over CAN 1 Mbit/s: assign %.1f ms, write %.1f ms, verify %.1f ms; "
                  "bus busy %.1f ms over %llu frames, device %.1f ms\n",
                  t_assign / 1000.0, t_flash / 1000.0, t_verify / 1000.0, bs.busy_us / 1000.0,
                  (unsigned long long)bs.frames, ms.device_us / 1000.0);

    st_katapult_close(k);
    st_stream_close(s);
    st_can_link_close(admin);
    st_can_link_close(data);
    ifc->ops->free(ifc);
    st_vcan_detach(u.bus, st_klipper_node_base(u.app));
    st_vcan_detach(u.bus, st_can_stream_node_base(u.boot));
    st_klipper_node_free(u.app);
    st_can_stream_node_free(u.boot);
    st_katapult_model_free(u.boot_model);
    st_flash_free(u.flash);
    st_vcan_bus_free(u.bus);
    st_image_free(img);
}

/* Frames lost or damaged on the bus mid-transfer: the engine's retries carry the image
 * through, and the read-back still matches. */
static void test_katapult_over_can_faults(void **state)
{
    if (access(FW, R_OK) != 0)
        skip(); /* firmware from shared/firmware is absent: nothing to flash */
    st_image *img;
    assert_int_equal(st_image_load(FW, 0, &img, NULL), 0);
    static const st_can_uuid uuid = { { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66 } };
    st_vcan_bus *bus = st_vcan_bus_new(1000000, ST_TIMING_NONE);
    st_flash *flash = st_flash_new(st_mcu_find("stm32g431xx"), ST_TIMING_NONE);
    st_katapult_model_cfg kc = { .with_can = true };
    memcpy(kc.uuid, uuid.b, 6);
    st_katapult_model *km = st_katapult_model_new(flash, &kc);
    st_can_stream_node_cfg bc = { .app = ST_CANADMIN_APP_KATAPULT };
    memcpy(bc.uuid, uuid.b, 6);
    st_can_stream_node *node = st_can_stream_node_new(st_katapult_model_stream(km), &bc);
    assert_non_null(node);
    assert_int_equal(st_vcan_attach(bus, st_can_stream_node_base(node), NULL), 0);
    st_can_iface *ifc;
    st_can_link *admin, *data;
    assert_int_equal(st_can_iface_mem_new(bus, NULL, NULL, &ifc, NULL), 0);
    assert_int_equal(ifc->ops->open_link(ifc, &admin, NULL), 0);
    assert_int_equal(ifc->ops->open_link(ifc, &data, NULL), 0);
    assert_int_equal(st_canadmin_katapult_assign(admin, &uuid, 0, 130, 500, NULL), 0);
    st_stream *s;
    assert_int_equal(st_can_stream_open(data, st_canadmin_nodeid_tx_id(130),
                                        st_canadmin_nodeid_rx_id(130), &s, NULL),
                     0);
    st_katapult_opts ko = { .read_timeout_ms = 100, .block_timeout_ms = 100,
                            .retry_pause_ms = 20 };
    st_katapult *k;
    assert_int_equal(st_katapult_open(s, &ko, &k, NULL), 0);
    st_err e = { 0 };
    if (st_katapult_connect(k, NULL, &e))
        fail_msg("%s", e.msg);
    st_vcan_fault_drop_nth(bus, 500);    /* inside the write phase */
    st_vcan_fault_corrupt_nth(bus, 1700); /* a later frame, also while writing */
    st_katapult_result r;
    if (st_katapult_flash(k, img, NULL, &r, &e))
        fail_msg("%s", e.msg);
    if (st_katapult_verify(k, img, &r, &e))
        fail_msg("%s", e.msg);
    assert_string_equal(r.sha1_hex, "FCA6E37F4D9F344E7AF18C7609AEBBCFD6E597E0");
    st_vcan_stats bs;
    st_vcan_get_stats(bus, &bs);
    assert_int_equal(bs.dropped, 1);
    assert_int_equal(bs.corrupted, 1);
    assert_true(st_katapult_retries(k) >= 2);
    st_katapult_close(k);
    st_stream_close(s);
    st_can_link_close(admin);
    st_can_link_close(data);
    ifc->ops->free(ifc);
    st_vcan_detach(bus, st_can_stream_node_base(node));
    st_can_stream_node_free(node);
    st_katapult_model_free(km);
    st_flash_free(flash);
    st_vcan_bus_free(bus);
    st_image_free(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_katapult_over_can),
        cmocka_unit_test(test_katapult_over_can_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
