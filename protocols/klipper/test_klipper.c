/* The host engine against the MCU model: first-contact resync, identify (72 round trips
 * for the real Cartographer dictionary), get_uptime/get_clock/get_config, the clock rate,
 * shutdown and clear_shutdown, cartographer_data streaming, every model fault (stuck
 * sensor, temperature, dropped samples, bad-CRC blocks, no answer), and the same session
 * over CAN after SET_KLIPPER_NODEID on the in-memory bus. */
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
#include "protocols/klipper/klipper_model.h"
#include "protocols/link/can_model.h"
#include "station/core/clock.h"
#include "station/core/testutil.h"

#define SUBSET STATION_SOURCE_DIR "/protocols/klipper/testdata/cartographer-usb-subset.json"
#define FW STATION_SHARED_DIR "/firmware/cartographer-v4/6.0.0/CartographerV4_6.0.0_USB_lite_8kib_offset.bin"
#define FW_CAN STATION_SHARED_DIR "/firmware/cartographer-v4/6.0.0/CartographerV4_6.0.0_CAN_1M_full_8kib_offset.bin"

/* The subset dictionary compressed as a build does (zlib level 9). */
static uint8_t *subset_z(size_t *zlen)
{
    size_t n;
    uint8_t *j = st_test_read_file(SUBSET, &n);
    assert_non_null(j);
    uLongf cap = compressBound(n);
    uint8_t *z = malloc(cap);
    assert_int_equal(compress2(z, &cap, j, n, 9), Z_OK);
    free(j);
    *zlen = cap;
    return z;
}

typedef struct rig {
    st_klp_model *m;
    st_stream *s;
    st_klp_host *h;
} rig;

static void rig_open(rig *r, const uint8_t *z, size_t zlen, const st_klp_model_faults *f)
{
    st_klp_model_cfg c = { .dict_z = z, .dict_z_len = zlen, .sample_hz = 1000 };
    if (f)
        c.faults = *f;
    st_err e;
    if (st_klp_model_new(&c, &r->m, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(st_stream_mem_open(st_klp_model_stream(r->m), "mem:klipper", &r->s, &e), 0);
    assert_int_equal(st_klp_host_open(r->s, NULL, &r->h, &e), 0);
}

static void rig_close(rig *r)
{
    st_klp_host_close(r->h);
    st_stream_close(r->s);
    st_klp_model_free(r->m);
}

static void identify(rig *r)
{
    st_err e;
    if (st_klp_host_identify(r->h, ST_KLP_IDENTIFY_MS, &e))
        fail_msg("%s", e.msg);
}

static void test_identify_and_queries(void **state)
{
    size_t zl;
    uint8_t *z = subset_z(&zl);
    rig r;
    rig_open(&r, z, zl, NULL);
    identify(&r);
    assert_string_equal(st_klp_dict_version(st_klp_host_dict(r.h)), "TEST USB 1.0");
    size_t raw_len;
    const uint8_t *raw = st_klp_host_dict_raw(r.h, &raw_len);
    assert_int_equal(raw_len, zl);
    assert_memory_equal(raw, z, zl);
    st_klp_host_stats hs;
    st_klp_host_get_stats(r.h, &hs);
    assert_int_equal(hs.resyncs, 1); /* the model expects 0, the host starts at 1 */

    st_err e;
    st_klp_decoded d;
    assert_int_equal(st_klp_host_query(r.h, "get_config", "config", 1000, &d, &e), 0);
    assert_int_equal(st_klp_decoded_get(&d, "is_config")->u, 0);
    assert_int_equal(st_klp_decoded_get(&d, "is_shutdown")->u, 0);
    assert_int_equal(st_klp_host_send_text(r.h, "finalize_config crc=1234", 1000, &e), 0);
    assert_int_equal(st_klp_host_query(r.h, "get_config", "config", 1000, &d, &e), 0);
    assert_int_equal(st_klp_decoded_get(&d, "is_config")->u, 1);
    assert_int_equal(st_klp_decoded_get(&d, "crc")->u, 1234);

    /* The clock runs at CLOCK_FREQ: two uptimes across a known host interval. */
    assert_int_equal(st_klp_host_query(r.h, "get_uptime", "uptime", 1000, &d, &e), 0);
    uint64_t t0 = (uint64_t)st_klp_decoded_get(&d, "high")->u << 32 | st_klp_decoded_get(&d, "clock")->u;
    uint64_t h0 = st_now_us();
    st_sleep_us(50000);
    assert_int_equal(st_klp_host_query(r.h, "get_uptime", "uptime", 1000, &d, &e), 0);
    uint64_t h1 = st_now_us();
    uint64_t t1 = (uint64_t)st_klp_decoded_get(&d, "high")->u << 32 | st_klp_decoded_get(&d, "clock")->u;
    double rate = (double)(t1 - t0) / ((double)(h1 - h0) / 1e6);
    assert_true(rate > 170e6 * 0.5 && rate < 170e6 * 1.5); /* loose: the host interval includes the query */
    assert_int_equal(st_klp_host_query(r.h, "get_clock", "clock", 1000, &d, &e), 0);

    /* debug_ping echoes a buffer holding 0x7E. */
    assert_int_equal(st_klp_host_query(r.h, "debug_ping data=017e02", "pong", 1000, &d, &e), 0);
    const st_klp_value *pd = st_klp_decoded_get(&d, "data");
    assert_int_equal(pd->len, 3);
    assert_int_equal(pd->buf[1], 0x7e);

    /* An unknown command text is refused before anything is sent. */
    assert_int_equal(st_klp_host_send_text(r.h, "no_such_command", 100, &e), ST_ERR_NOTFOUND);
    rig_close(&r);
    free(z);
}

static void test_shutdown(void **state)
{
    size_t zl;
    uint8_t *z = subset_z(&zl);
    rig r;
    rig_open(&r, z, zl, NULL);
    identify(&r);
    st_err e;
    st_klp_decoded d;
    /* An id the firmware lacks shuts it down with "Invalid command". */
    uint8_t bad[] = { 0x50 };
    assert_int_equal(st_klp_host_send(r.h, bad, 1, 1000, &e), 0);
    int rc;
    do {
        rc = st_klp_host_recv(r.h, 1000, &d, &e);
    } while (rc == 1 && strcmp(d.msg->name, "shutdown") != 0);
    assert_int_equal(rc, 1);
    assert_int_equal(st_klp_decoded_get(&d, "static_string_id")->u, 9);
    assert_int_equal(st_klp_host_query(r.h, "get_config", "config", 1000, &d, &e), 0);
    assert_int_equal(st_klp_decoded_get(&d, "is_shutdown")->u, 1);
    /* A command not allowed in shutdown gets is_shutdown. */
    assert_int_equal(st_klp_host_query(r.h, "finalize_config crc=1", "is_shutdown", 1000, &d, &e), 0);
    assert_int_equal(st_klp_decoded_get(&d, "static_string_id")->u, 9);
    assert_int_equal(st_klp_host_send_text(r.h, "clear_shutdown", 1000, &e), 0);
    assert_int_equal(st_klp_host_query(r.h, "get_config", "config", 1000, &d, &e), 0);
    assert_int_equal(st_klp_decoded_get(&d, "is_shutdown")->u, 0);
    /* emergency_stop: "Command request". */
    assert_int_equal(st_klp_host_query(r.h, "emergency_stop", "shutdown", 1000, &d, &e), 0);
    assert_int_equal(st_klp_decoded_get(&d, "static_string_id")->u, 8);
    rig_close(&r);
    free(z);
}

typedef struct samples {
    unsigned n;
    uint32_t data[200], temp[200], clock[200];
} samples;

static void collect(rig *r, unsigned want, samples *s)
{
    st_err e;
    s->n = 0;
    assert_int_equal(st_klp_host_send_text(r->h, "cartographer_stream en=1", 1000, &e), 0);
    st_deadline d = st_deadline_in_ms(5000);
    while (s->n < want && !st_deadline_passed(d)) {
        st_klp_decoded m;
        int rc = st_klp_host_recv(r->h, 200, &m, &e);
        assert_true(rc >= 0);
        if (rc == 1 && strcmp(m.msg->name, "cartographer_data") == 0) {
            s->data[s->n] = st_klp_decoded_get(&m, "data")->u;
            s->temp[s->n] = st_klp_decoded_get(&m, "temp")->u;
            s->clock[s->n] = st_klp_decoded_get(&m, "clock")->u;
            s->n++;
        }
    }
    assert_int_equal(st_klp_host_send_text(r->h, "cartographer_stream en=0", 1000, &e), 0);
    assert_int_equal(st_klp_host_flush(r->h, 1000, &e), 0);
}

static void test_stream_faults(void **state)
{
    size_t zl;
    uint8_t *z = subset_z(&zl);
    rig r;
    samples s;

    /* Normal: noise around the nominal values, clocks 1 ms (170000 ticks) apart. */
    rig_open(&r, z, zl, NULL);
    identify(&r);
    collect(&r, 50, &s);
    assert_int_equal(s.n, 50);
    uint32_t lo = UINT32_MAX, hi = 0;
    for (unsigned i = 0; i < s.n; i++) {
        lo = s.data[i] < lo ? s.data[i] : lo;
        hi = s.data[i] > hi ? s.data[i] : hi;
        assert_true(s.temp[i] >= ST_KLP_MODEL_TEMP_NOMINAL - ST_KLP_MODEL_TEMP_NOISE &&
                    s.temp[i] <= ST_KLP_MODEL_TEMP_NOMINAL + ST_KLP_MODEL_TEMP_NOISE);
        if (i)
            assert_int_equal(s.clock[i] - s.clock[i - 1], 170000);
    }
    assert_true(hi > lo);
    assert_true(lo >= ST_KLP_MODEL_DATA_NOMINAL - ST_KLP_MODEL_DATA_NOISE);
    assert_true(hi <= ST_KLP_MODEL_DATA_NOMINAL + ST_KLP_MODEL_DATA_NOISE);
    /* Stream stopped: nothing more comes. */
    st_klp_decoded m;
    st_err e;
    int rc;
    while ((rc = st_klp_host_recv(r.h, 20, &m, &e)) == 1)
        assert_string_equal(m.msg->name, "cartographer_data"); /* in flight before en=0 */
    assert_int_equal(st_klp_host_recv(r.h, 50, &m, &e), 0);
    rig_close(&r);

    /* Stuck sensor: identical samples. Temperature out of range. */
    st_klp_model_faults f = { .sensor = ST_KLP_SENSOR_STUCK, .temp_set = true, .temp = 4095 };
    rig_open(&r, z, zl, &f);
    identify(&r);
    collect(&r, 20, &s);
    assert_int_equal(s.n, 20);
    for (unsigned i = 1; i < s.n; i++)
        assert_int_equal(s.data[i], s.data[0]);
    assert_int_equal(s.temp[0], 4095);
    rig_close(&r);

    /* Dropped samples: every 4th is missing, seen as a doubled clock gap. */
    st_klp_model_faults fd = { .drop_every = 4 };
    rig_open(&r, z, zl, &fd);
    identify(&r);
    collect(&r, 30, &s);
    unsigned gaps = 0;
    for (unsigned i = 1; i < s.n; i++)
        gaps += s.clock[i] - s.clock[i - 1] == 2 * 170000;
    assert_true(gaps >= 6);
    st_klp_model_stats ms;
    st_klp_model_get_stats(r.m, &ms);
    assert_true(ms.samples_dropped >= 7);
    rig_close(&r);

    /* Bad-CRC blocks: the host drops them, retransmits what lost its ack, and still gets
     * through identify and a query. */
    st_klp_model_faults fb = { .bad_crc_every = 7 };
    rig_open(&r, z, zl, &fb);
    identify(&r);
    st_klp_decoded d;
    assert_int_equal(st_klp_host_query(r.h, "get_uptime", "uptime", 2000, &d, &e), 0);
    collect(&r, 20, &s);
    assert_true(s.n == 20);
    st_klp_host_stats hs;
    st_klp_host_get_stats(r.h, &hs);
    assert_true(hs.bytes_invalid > 0);
    rig_close(&r);

    /* No answer: identify times out with a message that says how far it got. */
    st_klp_model_faults fs = { .silent = true };
    rig_open(&r, z, zl, &fs);
    assert_int_equal(st_klp_host_identify(r.h, 300, &e), ST_ERR_TIMEOUT);
    assert_non_null(strstr(e.msg, "identify: 0 dictionary bytes"));
    st_klp_host_get_stats(r.h, &hs);
    assert_true(hs.retransmits > 0);
    rig_close(&r);
    free(z);
}

/* The checks: alive (clock rate against the host's) and sample (field statistics). */
static void test_checks(void **state)
{
    size_t zl;
    uint8_t *z = subset_z(&zl);
    rig r;
    st_err e;
    rig_open(&r, z, zl, NULL);
    st_klp_alive a;
    assert_int_equal(st_klp_host_alive(r.h, 100, &a, &e), ST_ERR_INVAL); /* before identify */
    identify(&r);
    if (st_klp_host_alive(r.h, 300, &a, &e))
        fail_msg("%s", e.msg);
    assert_true(a.uptime1 > a.uptime0);
    assert_true(a.clock_reads >= 1);
    assert_true(a.ratio > 0.5 && a.ratio < 1.5); /* the model's clock is the host's */
    assert_true(a.rtt_us < a.host_us);
    st_klp_stats st;
    if (st_klp_host_sample(r.h, "cartographer_stream en=1", "cartographer_stream en=0",
                           "cartographer_data", "data", 40, 3000, &st, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(st.n, 40);
    assert_true(st.min >= ST_KLP_MODEL_DATA_NOMINAL - ST_KLP_MODEL_DATA_NOISE);
    assert_true(st.max <= ST_KLP_MODEL_DATA_NOMINAL + ST_KLP_MODEL_DATA_NOISE);
    assert_true(st.stddev > 10 && st.stddev < 200);
    assert_true(st.mean > st.min && st.mean < st.max);
    assert_int_equal(st.gaps, 0);
    /* Unknown response or field: refused with the format. */
    assert_int_equal(st_klp_host_sample(r.h, "get_clock", NULL, "nosuch", "data", 1, 100, &st, &e),
                     ST_ERR_NOTFOUND);
    assert_int_equal(st_klp_host_sample(r.h, "get_clock", NULL, "clock", "data", 1, 100, &st, &e),
                     ST_ERR_NOTFOUND);
    assert_non_null(strstr(e.msg, "clock clock=%u"));
    rig_close(&r);

    /* Stuck sensor: stddev 0. Dropped samples: gaps. */
    st_klp_model_faults f = { .sensor = ST_KLP_SENSOR_STUCK, .drop_every = 5 };
    rig_open(&r, z, zl, &f);
    identify(&r);
    if (st_klp_host_sample(r.h, "cartographer_stream en=1", "cartographer_stream en=0",
                           "cartographer_data", "temp", 20, 3000, &st, &e))
        fail_msg("%s", e.msg);
    assert_true(st.stddev == 0);
    assert_true(st.min == st.max);
    assert_true(st.gaps >= 3);
    rig_close(&r);

    /* No stream: the timeout names what came. */
    st_klp_model_faults fs = { .drop_every = 2 };
    rig_open(&r, z, zl, &fs);
    identify(&r);
    assert_int_equal(st_klp_host_sample(r.h, "get_clock", NULL, "cartographer_data", "data", 5,
                                        200, &st, &e), ST_ERR_TIMEOUT);
    assert_non_null(strstr(e.msg, "0 of 5 cartographer_data"));
    rig_close(&r);
    free(z);
}

/* The real USB Lite dictionary: 72 identify round trips (PROTOCOL.md 4.1). */
static void test_real_dictionary(void **state)
{
    size_t n;
    uint8_t *img = st_test_read_file(FW, &n);
    if (!img)
        skip(); /* ../shared/firmware is absent */
    rig r;
    rig_open(&r, img + 0x5B98, 2827, NULL);
    identify(&r);
    assert_string_equal(st_klp_dict_version(st_klp_host_dict(r.h)), "CARTOGRAPHER V4 6.0.0 Lite");
    st_klp_model_stats ms;
    st_klp_model_get_stats(r.m, &ms);
    assert_true(ms.identify_requests >= 72);
    st_klp_decoded d;
    st_err e;
    assert_int_equal(st_klp_host_query(r.h, "get_uptime", "uptime", 1000, &d, &e), 0);
    samples s;
    collect(&r, 10, &s);
    assert_int_equal(s.n, 10);
    rig_close(&r);
    free(img);
}

static int nodeid_of(void *ctx)
{
    return st_can_stream_node_nodeid(*(st_can_stream_node **)ctx);
}

/* Over CAN: the node gets its id through SET_KLIPPER_NODEID, then the same session runs on
 * n*2+0x100 / n*2+0x101, and get_canbus_id names the UUID. */
static void test_over_can(void **state)
{
    size_t n;
    uint8_t *img = st_test_read_file(FW_CAN, &n);
    if (!img)
        skip(); /* ../shared/firmware is absent */
    st_vcan_bus *bus = st_vcan_bus_new(1000000, ST_TIMING_NONE);
    st_can_stream_node *node = NULL;
    st_klp_model_cfg c = { .dict_z = img + 0x5A18, .dict_z_len = 2904,
                           .can_uuid = { 0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f },
                           .nodeid = nodeid_of, .nodeid_ctx = &node };
    st_klp_model *m;
    st_err e;
    assert_int_equal(st_klp_model_new(&c, &m, &e), 0);
    st_can_stream_node_cfg nc = { .app = ST_CANADMIN_APP_KLIPPER,
                                  .uuid = { 0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f } };
    node = st_can_stream_node_new(st_klp_model_stream(m), &nc);
    assert_int_equal(st_vcan_attach(bus, st_can_stream_node_base(node), &e), 0);
    st_can_iface *ifc;
    assert_int_equal(st_can_iface_mem_new(bus, "vcan-test", NULL, &ifc, &e), 0);
    st_can_link *admin, *data;
    assert_int_equal(ifc->ops->open_link(ifc, &admin, &e), 0);
    assert_int_equal(ifc->ops->open_link(ifc, &data, &e), 0);
    st_canadmin_node found[4];
    assert_int_equal(st_canadmin_query(admin, 100, found, 4, &e), 1);
    assert_int_equal(found[0].app, ST_CANADMIN_APP_KLIPPER);
    assert_int_equal(st_canadmin_set_nodeid(admin, ST_CANADMIN_SET_KLIPPER_NODEID, &found[0].uuid,
                                            64, &e), 0);
    st_stream *s;
    assert_int_equal(st_can_stream_open(data, st_canadmin_nodeid_tx_id(64),
                                        st_canadmin_nodeid_rx_id(64), &s, &e), 0);
    st_klp_host *h;
    assert_int_equal(st_klp_host_open(s, NULL, &h, &e), 0);
    if (st_klp_host_identify(h, ST_KLP_IDENTIFY_MS, &e))
        fail_msg("%s", e.msg);
    const st_klp_dict *d = st_klp_host_dict(h);
    assert_string_equal(st_klp_dict_version(d), "CARTOGRAPHER V4 6.0.0");
    uint32_t br;
    assert_int_equal(st_klp_dict_transport(d, &br), ST_KLP_TRANSPORT_CAN);
    assert_int_equal(br, 1000000);
    st_klp_decoded r;
    assert_int_equal(st_klp_host_query(h, "get_canbus_id", "canbus_id", 1000, &r, &e), 0);
    assert_int_equal(st_klp_decoded_get(&r, "canbus_uuid")->len, 6);
    assert_memory_equal(st_klp_decoded_get(&r, "canbus_uuid")->buf, nc.uuid, 6);
    assert_int_equal(st_klp_decoded_get(&r, "canbus_nodeid")->u, 64);
    st_klp_host_close(h);
    st_stream_close(s);
    st_can_link_close(data);
    st_can_link_close(admin);
    ifc->ops->free(ifc);
    st_vcan_detach(bus, st_can_stream_node_base(node));
    st_can_stream_node_free(node);
    st_klp_model_free(m);
    st_vcan_bus_free(bus);
    free(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identify_and_queries),
        cmocka_unit_test(test_shutdown),
        cmocka_unit_test(test_stream_faults),
        cmocka_unit_test(test_checks),
        cmocka_unit_test(test_real_dictionary),
        cmocka_unit_test(test_over_can),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
