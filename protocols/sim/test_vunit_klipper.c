/* The virtual unit boots what its flash holds (issue 12): the application answers the
 * Klipper protocol with the dictionary its image embeds and shows the USB or CAN face that
 * dictionary names, not the fixture's; another build reports its own version; Katapult's
 * face comes from its build; an image written where it is not linked does not boot; the
 * klipper-* faults reach the protocol model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "protocols/canadmin/canadmin.h"
#include "protocols/klipper/klipper.h"
#include "protocols/link/can_model.h"
#include "protocols/link/stream_cdc.h"
#include "protocols/sim/synth.h"
#include "protocols/sim/vunit.h"
#include "station/core/testutil.h"

#define SUBSET STATION_SOURCE_DIR "/protocols/klipper/testdata/cartographer-usb-subset.json"
#define FWDIR STATION_SHARED_DIR "/firmware/cartographer-v4/6.0.0/"
#define PORT "vusb-t"

/* A unit on an in-memory USB bus and CAN bus. */
typedef struct bench {
    st_vusb_bus *usb;
    st_usb_host *host;
    st_vcan_bus *can;
    st_vunit *u;
    bool on_usb;
} bench;

static int usb_attach(void *ctx, st_usb_model *m, st_err *err)
{
    bench *b = ctx;
    int rc = st_vusb_attach(b->usb, PORT, m, err);
    b->on_usb = rc == 0;
    return rc;
}

static void usb_detach(void *ctx)
{
    bench *b = ctx;
    st_vusb_detach(b->usb, PORT);
    b->on_usb = false;
}

static int can_attach(void *ctx, st_can_node *n, st_err *err)
{
    bench *b = ctx;
    return b->can ? st_vcan_attach(b->can, n, err) : st_err_set(err, ST_ERR_NOTFOUND, "no bus");
}

static void can_detach(void *ctx, st_can_node *n)
{
    bench *b = ctx;
    if (b->can)
        st_vcan_detach(b->can, n);
}

/* How many nodes answer QUERY_UNASSIGNED on the bus. */
static int query_once(st_vcan_bus *bus)
{
    st_can_iface *ifc;
    st_can_link *l;
    st_canadmin_node nodes[2];
    assert_int_equal(st_can_iface_mem_new(bus, "vcan-q", NULL, &ifc, NULL), 0);
    assert_int_equal(ifc->ops->open_link(ifc, &l, NULL), 0);
    int n = st_canadmin_query(l, 100, nodes, 2, NULL);
    assert_true(n < 1 || nodes[0].app == ST_CANADMIN_APP_KATAPULT);
    st_can_link_close(l);
    ifc->ops->free(ifc);
    return n;
}

static const uint8_t uuid[6] = { 0x11, 0xaa, 0x22, 0xbb, 0x33, 0xc1 };

static void bench_open(bench *b, bool with_can, bool fixture_can, const uint8_t *img, size_t n,
                       uint32_t at, const char *const *faults, size_t nf)
{
    memset(b, 0, sizeof *b);
    b->usb = st_vusb_bus_new();
    assert_int_equal(st_usb_host_mem_new(b->usb, NULL, &b->host, NULL), 0);
    if (with_can)
        b->can = st_vcan_bus_new(1000000, ST_TIMING_NONE);
    st_vunit_config cfg = { .mcu = st_mcu_find("stm32g431xx"), .timing = ST_TIMING_NONE,
                            .can_transport = fixture_can, .holds = img, .holds_len = n,
                            .holds_addr = at, .faults = faults, .n_faults = nf };
    memcpy(cfg.can_uuid, uuid, 6);
    st_vunit_usb_port up = { usb_attach, usb_detach, b };
    st_vunit_can_port cp = { can_attach, can_detach, b };
    st_err e;
    if (st_vunit_new(&cfg, &up, &cp, &b->u, &e))
        fail_msg("%s", e.msg);
}

static void bench_close(bench *b)
{
    st_vunit_free(b->u);
    b->host->ops->free(b->host);
    st_vusb_bus_free(b->usb);
    if (b->can)
        st_vcan_bus_free(b->can);
}

/* Identify the unit's application over its USB-CDC face; returns the host (caller closes
 * host and stream). */
static st_klp_host *usb_session(bench *b, st_stream **s)
{
    st_usb_dev_info want;
    memset(&want, 0, sizeof want);
    snprintf(want.port_path, sizeof want.port_path, "%s", PORT);
    want.vid = 0x1d50;
    want.pid = 0x614e;
    st_err e;
    if (st_stream_cdc_open(b->host, &want, NULL, s, &e))
        fail_msg("%s", e.msg);
    st_klp_host *h;
    assert_int_equal(st_klp_host_open(*s, NULL, &h, &e), 0);
    if (st_klp_host_identify(h, ST_KLP_IDENTIFY_MS, &e))
        fail_msg("%s", e.msg);
    return h;
}

/* A synthetic combined image whose application embeds the subset dictionary (version
 * "TEST USB 1.0", USB build): what a test without ../shared can flash. */
static uint8_t *synthetic_with_dictionary(size_t *len)
{
    const st_mcu *mcu = st_mcu_find("stm32g431xx");
    uint8_t *img;
    assert_int_equal(st_synth_combined(mcu, ST_SYNTH_DEFAULT_SIZE, &img, NULL), 0);
    size_t jn;
    uint8_t *j = st_test_read_file(SUBSET, &jn);
    assert_non_null(j);
    uLongf zl = compressBound(jn);
    uint8_t *z = malloc(zl);
    assert_int_equal(compress2(z, &zl, j, jn, 9), Z_OK);
    memcpy(img + mcu->katapult_app_offset + 0x4000, z, zl);
    free(z);
    free(j);
    *len = ST_SYNTH_DEFAULT_SIZE;
    return img;
}

static void test_synthetic_with_dictionary(void **state)
{
    size_t n;
    uint8_t *img = synthetic_with_dictionary(&n);
    bench b;
    /* The fixture says CAN; the image's dictionary says USB: USB wins. */
    bench_open(&b, true, true, img, n, 0x08000000u, NULL, 0);
    assert_string_equal(st_vunit_state(b.u), "app");
    assert_true(b.on_usb);
    st_stream *s;
    st_klp_host *h = usb_session(&b, &s);
    assert_string_equal(st_klp_dict_version(st_klp_host_dict(h)), "TEST USB 1.0");
    st_klp_decoded d;
    st_err e;
    assert_int_equal(st_klp_host_query(h, "get_uptime", "uptime", 1000, &d, &e), 0);
    st_klp_host_close(h);
    st_stream_close(s);
    bench_close(&b);

    /* The plain synthetic image (no dictionary) keeps the fixture's face: CAN here. */
    const st_mcu *mcu = st_mcu_find("stm32g431xx");
    uint8_t *plain;
    assert_int_equal(st_synth_combined(mcu, ST_SYNTH_DEFAULT_SIZE, &plain, NULL), 0);
    bench_open(&b, true, true, plain, ST_SYNTH_DEFAULT_SIZE, 0x08000000u, NULL, 0);
    assert_string_equal(st_vunit_state(b.u), "app");
    assert_false(b.on_usb);
    bench_close(&b);

    /* The application part alone written at 0x08000000 (linked for 0x08002000): no boot,
     * no face; BOOT0 + reset reaches the ROM. */
    bench_open(&b, true, false, img + mcu->katapult_app_offset, n - mcu->katapult_app_offset,
               0x08000000u, NULL, 0);
    assert_string_equal(st_vunit_state(b.u), "crashed");
    assert_false(b.on_usb);
    st_vunit_set_pin(b.u, ST_VUNIT_BOOT0, 1);
    st_vunit_set_pin(b.u, ST_VUNIT_NRST, 0);
    st_vunit_set_pin(b.u, ST_VUNIT_NRST, 1);
    assert_string_equal(st_vunit_state(b.u), "rom-dfu");
    assert_true(b.on_usb);
    bench_close(&b);
    free(plain);
    free(img);
}

static void test_faults_reach_the_model(void **state)
{
    size_t n;
    uint8_t *img = synthetic_with_dictionary(&n);
    const char *faults[] = { "klipper-sensor:stuck", "klipper-temp:4095" };
    bench b;
    bench_open(&b, false, false, img, n, 0x08000000u, faults, 2);
    st_stream *s;
    st_klp_host *h = usb_session(&b, &s);
    st_err e;
    assert_int_equal(st_klp_host_send_text(h, "cartographer_stream en=1", 1000, &e), 0);
    uint32_t first = 0;
    unsigned got = 0;
    while (got < 5) {
        st_klp_decoded d;
        int rc = st_klp_host_recv(h, 2000, &d, &e);
        assert_int_equal(rc, 1);
        if (strcmp(d.msg->name, "cartographer_data") != 0)
            continue;
        if (got == 0)
            first = st_klp_decoded_get(&d, "data")->u;
        assert_int_equal(st_klp_decoded_get(&d, "data")->u, first);
        assert_int_equal(st_klp_decoded_get(&d, "temp")->u, 4095);
        got++;
    }
    st_klp_host_close(h);
    st_stream_close(s);
    /* Malformed klipper faults are refused with the list. */
    assert_int_equal(st_vunit_apply_fault(b.u, "klipper-drop:1", &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "klipper-silent"));
    assert_int_equal(st_vunit_apply_fault(b.u, "klipper-silent", &e), 0);
    bench_close(&b);
    free(img);
}

/* The device on the bench's USB port (fails when there is none). */
static st_usb_dev_info on_port(bench *b)
{
    st_usb_dev_info *list = NULL, hit;
    size_t n = 0;
    assert_int_equal(st_usb_host_list(b->host, &list, &n, NULL), 0);
    memset(&hit, 0, sizeof hit);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(list[i].port_path, PORT) == 0) {
            hit = list[i];
            found = true;
        }
    }
    free(list);
    if (!found)
        fail_msg("nothing on %s", PORT);
    return hit;
}

/* Klipper's usb_cdc.c layout: the device descriptor, the language ids, then the strings in
 * index order (manufacturer, product; the serial comes from the chip). */
static void embed_usb_descriptor(uint8_t *at, uint16_t vid, uint16_t pid, const char *mfr,
                                 const char *product)
{
    const uint8_t dev[18] = { 18, 1, 0x00, 0x02, 0x02, 0x00, 0x00, 16,
                              (uint8_t)vid, (uint8_t)(vid >> 8), (uint8_t)pid, (uint8_t)(pid >> 8),
                              0x03, 0x02, 1, 2, 3, 1 };
    memcpy(at, dev, 18);
    at += 18;
    *at++ = 0;
    *at++ = 0;
    const uint8_t lang[4] = { 4, 3, 0x09, 0x04 };
    memcpy(at, lang, 4);
    at += 4;
    const char *str[2] = { mfr, product };
    for (int k = 0; k < 2; k++) {
        size_t l = strlen(str[k]);
        *at++ = (uint8_t)(2 + 2 * l);
        *at++ = 3;
        for (size_t i = 0; i < l; i++) {
            *at++ = (uint8_t)str[k][i];
            *at++ = 0;
        }
    }
}

/* The application's USB identity comes from the image: the device descriptor its build
 * embeds names another id (and its own strings) than the MCU table's 1d50:614e, and the
 * unit enumerates with it (a host waiting for 1d50:614e finds nothing); an image that
 * carries none falls back to the table. */
static void test_image_usb_identity(void **state)
{
    const st_mcu *mcu = st_mcu_find("stm32g431xx");
    uint8_t *img;
    assert_int_equal(st_synth_combined(mcu, ST_SYNTH_DEFAULT_SIZE, &img, NULL), 0);
    embed_usb_descriptor(img + mcu->katapult_app_offset + 0x800, 0x1209, 0xbeef, "Acme",
                         "Probe X");
    bench b;
    /* No dictionary, a USB device descriptor: a USB build, though the fixture says CAN. */
    bench_open(&b, true, true, img, ST_SYNTH_DEFAULT_SIZE, 0x08000000u, NULL, 0);
    assert_string_equal(st_vunit_state(b.u), "app");
    assert_true(b.on_usb);
    st_usb_dev_info d = on_port(&b);
    assert_int_equal(d.vid, 0x1209);
    assert_int_equal(d.pid, 0xbeef);
    assert_int_equal(d.bcd_device, 0x0203);
    assert_string_equal(d.manufacturer, "Acme");
    assert_string_equal(d.product, "Probe X");
    assert_string_equal(d.serial, "208A31574253"); /* from the chip: the unit's own */
    st_usb_dev_info want;
    memset(&want, 0, sizeof want);
    snprintf(want.port_path, sizeof want.port_path, "%s", PORT);
    want.vid = 0x1d50;
    want.pid = 0x614e;
    st_stream *s = NULL;
    assert_true(st_stream_cdc_open(b.host, &want, NULL, &s, NULL) < 0);
    want.vid = 0x1209;
    want.pid = 0xbeef;
    st_err e;
    if (st_stream_cdc_open(b.host, &want, NULL, &s, &e))
        fail_msg("%s", e.msg);
    st_stream_close(s);
    /* A unit holding the plain synthetic image (no descriptor): the table's id. */
    uint8_t *plain;
    assert_int_equal(st_synth_combined(mcu, ST_SYNTH_DEFAULT_SIZE, &plain, NULL), 0);
    bench_close(&b);
    bench_open(&b, false, false, plain, ST_SYNTH_DEFAULT_SIZE, 0x08000000u, NULL, 0);
    d = on_port(&b);
    assert_int_equal(d.vid, 0x1d50);
    assert_int_equal(d.pid, 0x614e);
    assert_string_equal(d.manufacturer, "Klipper");
    assert_string_equal(d.product, "stm32g431xx");
    bench_close(&b);
    free(plain);
    free(img);
}

static void test_real_images(void **state)
{
    size_t un, cn;
    uint8_t *usb = st_test_read_file(FWDIR "Katapult_plus_CartographerV4_6.0.0__USB_lite.bin", &un);
    uint8_t *can = st_test_read_file(FWDIR "Katapult_plus_CartographerV4_6.0.0__CAN_1M.bin", &cn);
    if (!usb || !can) {
        free(usb);
        free(can);
        skip(); /* ../shared/firmware is absent */
    }
    bench b;
    /* USB combined image on a unit the fixture calls CAN: USB face, the real version. */
    bench_open(&b, true, true, usb, un, 0x08000000u, NULL, 0);
    assert_string_equal(st_vunit_state(b.u), "app");
    assert_true(b.on_usb);
    st_stream *s;
    st_klp_host *h = usb_session(&b, &s);
    assert_string_equal(st_klp_dict_version(st_klp_host_dict(h)), "CARTOGRAPHER V4 6.0.0 Lite");
    st_klp_host_close(h);
    st_stream_close(s);
    /* It enumerates as its build's descriptor says (its strings, not the table's). */
    st_usb_dev_info id = on_port(&b);
    assert_int_equal(id.vid, 0x1d50);
    assert_int_equal(id.pid, 0x614e);
    assert_string_equal(id.manufacturer, "Cartographer");
    assert_string_equal(id.product, "stm32g431xx");
    bench_close(&b);
    /* The same build with another id in its descriptor enumerates with that id. */
    assert_int_equal(memcmp(usb + 0x8758 + 8, "\x50\x1d\x4e\x61", 4), 0);
    memcpy(usb + 0x8758 + 8, "\x09\x12\x01\x00", 4);
    bench_open(&b, true, false, usb, un, 0x08000000u, NULL, 0);
    id = on_port(&b);
    assert_int_equal(id.vid, 0x1209);
    assert_int_equal(id.pid, 0x0001);
    assert_string_equal(id.manufacturer, "Cartographer");
    bench_close(&b);
    memcpy(usb + 0x8758 + 8, "\x50\x1d\x4e\x61", 4);

    /* CAN combined image on a unit the fixture calls USB: nothing on USB; on the CAN bus a
     * Klipper node that speaks the protocol after SET_KLIPPER_NODEID. */
    bench_open(&b, true, false, can, cn, 0x08000000u, NULL, 0);
    assert_string_equal(st_vunit_state(b.u), "app");
    assert_false(b.on_usb);
    st_can_iface *ifc;
    st_err e;
    assert_int_equal(st_can_iface_mem_new(b.can, "vcan-t", NULL, &ifc, &e), 0);
    st_can_link *admin, *data;
    assert_int_equal(ifc->ops->open_link(ifc, &admin, &e), 0);
    assert_int_equal(ifc->ops->open_link(ifc, &data, &e), 0);
    st_canadmin_node nodes[2];
    assert_int_equal(st_canadmin_query(admin, 100, nodes, 2, &e), 1);
    assert_int_equal(nodes[0].app, ST_CANADMIN_APP_KLIPPER);
    assert_int_equal(st_canadmin_set_nodeid(admin, ST_CANADMIN_SET_KLIPPER_NODEID, &nodes[0].uuid,
                                            4, &e), 0);
    assert_int_equal(st_can_stream_open(data, st_canadmin_nodeid_tx_id(4),
                                        st_canadmin_nodeid_rx_id(4), &s, &e), 0);
    assert_int_equal(st_klp_host_open(s, NULL, &h, &e), 0);
    if (st_klp_host_identify(h, ST_KLP_IDENTIFY_MS, &e))
        fail_msg("%s", e.msg);
    assert_string_equal(st_klp_dict_version(st_klp_host_dict(h)), "CARTOGRAPHER V4 6.0.0");
    st_klp_decoded d;
    assert_int_equal(st_klp_host_query(h, "get_canbus_id", "canbus_id", 1000, &d, &e), 0);
    assert_memory_equal(st_klp_decoded_get(&d, "canbus_uuid")->buf, uuid, 6);
    assert_int_equal(st_klp_decoded_get(&d, "canbus_nodeid")->u, 4);
    st_klp_host_close(h);
    st_stream_close(s);
    st_can_link_close(data);
    st_can_link_close(admin);
    ifc->ops->free(ifc);
    bench_close(&b);

    /* A unit without a CAN bus holding the CAN build: no face anywhere. */
    bench_open(&b, false, false, can, cn, 0x08000000u, NULL, 0);
    assert_false(b.on_usb);
    bench_close(&b);

    /* Katapult alone (application erased): its face comes from its build. */
    memset(usb + 0x2000, 0xFF, un - 0x2000);
    bench_open(&b, true, true, usb, un, 0x08000000u, NULL, 0);
    assert_string_equal(st_vunit_state(b.u), "katapult");
    assert_true(b.on_usb); /* the USB build's descriptor 1d50:6177, though the fixture says CAN */
    bench_close(&b);
    memset(can + 0x2000, 0xFF, cn - 0x2000);
    bench_open(&b, true, false, can, cn, 0x08000000u, NULL, 0);
    assert_string_equal(st_vunit_state(b.u), "katapult");
    assert_false(b.on_usb); /* the CAN build: on the bus, though the fixture says USB */
    assert_int_equal(query_once(b.can), 1);
    bench_close(&b);
    free(usb);
    free(can);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synthetic_with_dictionary),
        cmocka_unit_test(test_faults_reach_the_model),
        cmocka_unit_test(test_real_images),
        cmocka_unit_test(test_image_usb_identity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
