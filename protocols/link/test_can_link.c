/* CAN link tests: in-memory bus (filters, loopback, faults, bit timing, contention between
 * threads), interface preparation, and the SocketCAN backend's error paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <net/if.h>
#include <pthread.h>

#include "protocols/link/can_model.h"
/* Issue 7: a link must not reach into the simulator for its timing profile type. */
#ifdef STATION_PROTOCOLS_SIM_FLASH_H
#error "protocols/link/can_model.h includes protocols/sim/flash.h"
#endif
#include "station/core/clock.h"

/* A node that answers every frame on rx_id with the same payload on rx_id + 1. */
typedef struct echo_node {
    st_can_node base;
    uint32_t rx_id;
    st_can_frame q[64];
    size_t head, count;
} echo_node;

static void echo_rx(st_can_node *b, const st_can_frame *f, uint64_t now)
{
    echo_node *e = (echo_node *)b;
    if (f->id != e->rx_id || e->count == 64)
        return;
    st_can_frame r = *f;
    r.id = e->rx_id + 1;
    e->q[(e->head + e->count++) % 64] = r;
}

static int echo_tx(st_can_node *b, st_can_frame *f, uint64_t now)
{
    echo_node *e = (echo_node *)b;
    if (!e->count)
        return 0;
    *f = e->q[e->head];
    e->head = (e->head + 1) % 64;
    e->count--;
    return 1;
}

static uint64_t echo_next(st_can_node *b)
{
    echo_node *e = (echo_node *)b;
    return e->count ? 0 : UINT64_MAX;
}

static const st_can_node_ops echo_ops = { echo_rx, echo_tx, echo_next, NULL };

static void echo_init(echo_node *e, uint32_t rx_id)
{
    memset(e, 0, sizeof *e);
    e->base.ops = &echo_ops;
    e->rx_id = rx_id;
}

static st_can_frame frame(uint32_t id, uint8_t len, uint8_t seed)
{
    st_can_frame f = { .id = id, .len = len };
    for (uint8_t i = 0; i < len; i++)
        f.data[i] = (uint8_t)(seed + i * 7);
    return f;
}

static void test_frame_bits(void **state)
{
    /* 47 + 8*len unstuffed; stuffing adds floor((34 + 8*len - 1) / 4) at worst. */
    assert_int_equal(st_can_frame_bits(0), 47 + 8);
    assert_int_equal(st_can_frame_bits(1), 55 + 10);
    assert_int_equal(st_can_frame_bits(8), 111 + 24);
    assert_int_equal(st_can_frame_bits(9), st_can_frame_bits(8));
}

static void test_filters_and_loopback(void **state)
{
    st_vcan_bus *bus = st_vcan_bus_new(0, ST_TIMING_NONE);
    assert_non_null(bus);
    st_can_iface *ifc;
    assert_int_equal(st_can_iface_mem_new(bus, NULL, NULL, &ifc, NULL), 0);
    assert_string_equal(ifc->name, "vcan-virtual");
    st_can_link *a, *b, *c;
    assert_int_equal(ifc->ops->open_link(ifc, &a, NULL), 0);
    assert_int_equal(ifc->ops->open_link(ifc, &b, NULL), 0);
    assert_int_equal(ifc->ops->open_link(ifc, &c, NULL), 0);
    uint32_t ida = 0x100, idb[2] = { 0x200, 0x201 };
    assert_int_equal(st_can_set_filter(a, &ida, 1, NULL), 0);
    assert_int_equal(st_can_set_filter(b, idb, 2, NULL), 0);
    for (uint32_t id = 0x100; id <= 0x300; id += 0x100) {
        st_can_frame f = frame(id, 3, (uint8_t)id);
        assert_int_equal(st_can_send(c, &f, 100, NULL), 0);
    }
    st_can_frame r;
    assert_int_equal(st_can_recv(a, &r, 100, NULL), 1);
    assert_int_equal(r.id, 0x100);
    assert_int_equal(r.len, 3);
    st_can_frame want = frame(0x100, 3, 0);
    assert_memory_equal(r.data, want.data, 3);
    assert_int_equal(st_can_recv(a, &r, 0, NULL), 0);
    assert_int_equal(st_can_recv(b, &r, 0, NULL), 1);
    assert_int_equal(r.id, 0x200);
    assert_int_equal(st_can_recv(b, &r, 0, NULL), 0);
    /* The sender never hears itself. */
    assert_int_equal(st_can_recv(c, &r, 0, NULL), 0);
    /* Bad frames are refused before the wire. */
    st_err e = { 0 };
    st_can_frame bad = frame(0x800, 1, 0);
    assert_int_equal(st_can_send(c, &bad, 10, &e), ST_ERR_INVAL);
    st_can_link_close(a);
    st_can_link_close(b);
    st_can_link_close(c);
    ifc->ops->free(ifc);
    st_vcan_bus_free(bus);
}

static void test_bus_off(void **state)
{
    st_vcan_bus *bus = st_vcan_bus_new(1000000, ST_TIMING_NONE);
    st_can_iface *ifc;
    st_can_link *l;
    assert_int_equal(st_can_iface_mem_new(bus, "vcan0", NULL, &ifc, NULL), 0);
    assert_int_equal(ifc->ops->open_link(ifc, &l, NULL), 0);
    st_vcan_fault_bus_off(bus, true);
    st_err e = { 0 };
    st_can_frame f = frame(0x10, 1, 1);
    assert_int_equal(st_can_send(l, &f, 10, &e), ST_ERR_IO);
    assert_non_null(strstr(e.msg, "bus-off"));
    st_err_clear(&e);
    assert_int_equal(st_can_recv(l, &f, 10, &e), ST_ERR_IO);
    assert_non_null(strstr(e.msg, "bus-off"));
    st_can_state s;
    assert_int_equal(ifc->ops->get_state(ifc, &s, NULL), 0);
    assert_int_equal(s, ST_CAN_BUS_OFF);
    st_err_clear(&e);
    assert_int_equal(st_can_iface_prepare(ifc, 1000000, &e), ST_ERR_IO);
    assert_string_equal(e.msg, "CAN interface vcan0 is bus-off (wrong bitrate on the bus, a "
                               "shorted or unterminated bus, or colliding node replies): "
                               "restart it");
    assert_int_equal(ifc->ops->restart(ifc, NULL), 0);
    assert_int_equal(st_can_iface_prepare(ifc, 1000000, NULL), 0);
    assert_int_equal(st_can_send(l, &f, 10, NULL), 0);
    st_can_link_close(l);
    ifc->ops->free(ifc);
    st_vcan_bus_free(bus);
}

static void test_drop_and_corrupt(void **state)
{
    st_vcan_bus *bus = st_vcan_bus_new(0, ST_TIMING_NONE);
    st_can_iface *ifc;
    st_can_link *tx, *rx;
    assert_int_equal(st_can_iface_mem_new(bus, NULL, NULL, &ifc, NULL), 0);
    assert_int_equal(ifc->ops->open_link(ifc, &tx, NULL), 0);
    assert_int_equal(ifc->ops->open_link(ifc, &rx, NULL), 0);
    st_vcan_fault_drop_nth(bus, 2);
    for (uint8_t i = 1; i <= 3; i++) {
        st_can_frame f = frame(0x100 + i, 2, i);
        assert_int_equal(st_can_send(tx, &f, 10, NULL), 0);
    }
    st_can_frame r;
    assert_int_equal(st_can_recv(rx, &r, 10, NULL), 1);
    assert_int_equal(r.id, 0x101);
    assert_int_equal(st_can_recv(rx, &r, 10, NULL), 1);
    assert_int_equal(r.id, 0x103);
    assert_int_equal(st_can_recv(rx, &r, 0, NULL), 0);
    st_vcan_fault_corrupt_nth(bus, 1);
    st_can_frame f = frame(0x104, 8, 9);
    assert_int_equal(st_can_send(tx, &f, 10, NULL), 0);
    assert_int_equal(st_can_recv(rx, &r, 10, NULL), 1);
    assert_memory_equal(r.data, f.data, 7);
    assert_int_equal(r.data[7], (uint8_t)~f.data[7]);
    st_vcan_stats s;
    st_vcan_get_stats(bus, &s);
    assert_int_equal(s.frames, 4);
    assert_int_equal(s.dropped, 1);
    assert_int_equal(s.corrupted, 1);
    st_can_link_close(tx);
    st_can_link_close(rx);
    ifc->ops->free(ifc);
    st_vcan_bus_free(bus);
}

static void test_prepare_bitrate(void **state)
{
    st_vcan_bus *bus = st_vcan_bus_new(500000, ST_TIMING_NONE);
    st_can_iface *ifc;
    assert_int_equal(st_can_iface_mem_new(bus, "can9", NULL, &ifc, NULL), 0);
    uint32_t br = 0;
    assert_int_equal(st_can_iface_prepare(ifc, 1000000, NULL), 0);
    assert_int_equal(ifc->ops->get_bitrate(ifc, &br, NULL), 0);
    assert_int_equal(br, 1000000);
    assert_int_equal(st_can_iface_prepare(ifc, 0, NULL), 0);
    /* Cannot change it: both rates named, and why. */
    st_vcan_fault_bitrate_locked(bus, true);
    st_err e = { 0 };
    assert_int_equal(st_can_iface_prepare(ifc, 250000, &e), ST_ERR_PERM);
    assert_string_equal(e.msg, "can9 runs at 1000000 bit/s, job needs 250000 bit/s: set bitrate "
                               "of can9: refused (CAP_NET_ADMIN needed: run as root, grant the "
                               "capability, or configure the interface at boot in "
                               "/etc/network/interfaces or systemd-networkd)");
    st_vcan_fault_bitrate_locked(bus, false);
    /* Down: links say so, prepare brings it up. */
    st_can_link *l;
    assert_int_equal(ifc->ops->open_link(ifc, &l, NULL), 0);
    st_vcan_fault_down(bus, true);
    st_can_state cs;
    assert_int_equal(ifc->ops->get_state(ifc, &cs, NULL), 0);
    assert_int_equal(cs, ST_CAN_STOPPED);
    st_can_frame f = frame(0x10, 1, 1);
    st_err_clear(&e);
    assert_int_equal(st_can_send(l, &f, 10, &e), ST_ERR_IO);
    assert_string_equal(e.msg, "CAN interface is down: bring it up");
    assert_int_equal(st_can_iface_prepare(ifc, 1000000, NULL), 0);
    assert_int_equal(ifc->ops->get_state(ifc, &cs, NULL), 0);
    assert_int_equal(cs, ST_CAN_ERROR_ACTIVE);
    assert_int_equal(st_can_send(l, &f, 10, NULL), 0);
    st_can_link_close(l);
    ifc->ops->free(ifc);
    st_vcan_bus_free(bus);
    /* A bus with no bitrate (vcan) satisfies any job bitrate. */
    bus = st_vcan_bus_new(0, ST_TIMING_NONE);
    assert_int_equal(st_can_iface_mem_new(bus, NULL, NULL, &ifc, NULL), 0);
    assert_int_equal(st_can_iface_prepare(ifc, 1000000, NULL), 0);
    assert_int_equal(ifc->ops->get_bitrate(ifc, &br, NULL), 0);
    assert_int_equal(br, 0);
    ifc->ops->free(ifc);
    st_vcan_bus_free(bus);
    assert_null(st_vcan_bus_new(0, ST_TIMING_DATASHEET));
}

/* Round trips through an echo node on one link; used single- and multi-threaded. */
typedef struct rt_job {
    st_can_iface *ifc;
    uint32_t tx_id;
    unsigned rounds;
    unsigned ok;
    unsigned foreign; /* replies seen that were not ours */
} rt_job;

static void *rt_run(void *arg)
{
    rt_job *j = arg;
    st_can_link *l;
    if (j->ifc->ops->open_link(j->ifc, &l, NULL) < 0)
        return NULL;
    uint32_t rx_id = j->tx_id + 1;
    st_can_set_filter(l, &rx_id, 1, NULL);
    for (unsigned i = 0; i < j->rounds; i++) {
        st_can_frame f = frame(j->tx_id, 8, (uint8_t)(i + j->tx_id));
        if (st_can_send(l, &f, 1000, NULL) < 0)
            break;
        st_can_frame r;
        if (st_can_recv(l, &r, 1000, NULL) != 1)
            break;
        if (r.id != rx_id)
            j->foreign++;
        else if (r.len == 8 && memcmp(r.data, f.data, 8) == 0)
            j->ok++;
    }
    st_can_link_close(l);
    return NULL;
}

static void run_two_threads(st_timing_profile timing, unsigned rounds, uint64_t *wall_us,
                            st_vcan_stats *stats)
{
    st_vcan_bus *bus = st_vcan_bus_new(1000000, timing);
    echo_node n1, n2;
    echo_init(&n1, 0x202);
    echo_init(&n2, 0x204);
    assert_int_equal(st_vcan_attach(bus, &n1.base, NULL), 0);
    assert_int_equal(st_vcan_attach(bus, &n2.base, NULL), 0);
    assert_int_equal(st_vcan_attach(bus, &n2.base, NULL), ST_ERR_BUSY);
    st_can_iface *ifc;
    assert_int_equal(st_can_iface_mem_new(bus, NULL, NULL, &ifc, NULL), 0);
    rt_job j1 = { ifc, 0x202, rounds, 0, 0 }, j2 = { ifc, 0x204, rounds, 0, 0 };
    uint64_t t0 = st_now_us();
    pthread_t t1, t2;
    assert_int_equal(pthread_create(&t1, NULL, rt_run, &j1), 0);
    assert_int_equal(pthread_create(&t2, NULL, rt_run, &j2), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    *wall_us = st_now_us() - t0;
    assert_int_equal(j1.ok, rounds);
    assert_int_equal(j2.ok, rounds);
    assert_int_equal(j1.foreign + j2.foreign, 0);
    st_vcan_get_stats(bus, stats);
    st_vcan_detach(bus, &n1.base);
    st_vcan_detach(bus, &n2.base);
    ifc->ops->free(ifc);
    st_vcan_bus_free(bus);
}

static void test_two_threads_separate_filters(void **state)
{
    uint64_t wall;
    st_vcan_stats s;
    run_two_threads(ST_TIMING_NONE, 2000, &wall, &s);
    assert_int_equal(s.frames, 2 * 2 * 2000);
    assert_int_equal(s.busy_us, 0);
}

static void test_datasheet_contention(void **state)
{
    /* 2 threads x 100 round trips x 2 frames of 8 bytes, 135 bits each at 1 Mbit/s: the
     * shared bus needs at least 400 * 135 us = 54 ms, whoever runs first. */
    uint64_t wall;
    st_vcan_stats s;
    run_two_threads(ST_TIMING_DATASHEET, 100, &wall, &s);
    assert_int_equal(s.frames, 400);
    assert_int_equal(s.bits, 400 * 135);
    assert_int_equal(s.busy_us, 400 * 135);
    assert_true(wall >= 400 * 135);
    print_message("datasheet: 400 frames, bus busy %llu us, wall %llu us\n",
                  (unsigned long long)s.busy_us, (unsigned long long)wall);
}

static void test_socketcan_missing_interface(void **state)
{
    st_can_iface *ifc = NULL;
    st_err e = { 0 };
    assert_int_equal(st_can_iface_socketcan_new("can-nope7", NULL, &ifc, &e), ST_ERR_NOTFOUND);
    assert_string_equal(e.msg, "no CAN interface can-nope7: create it or check the adapter");
    assert_null(ifc);
    if (if_nametoindex("can0") == 0) {
        st_err_clear(&e);
        assert_int_equal(st_can_iface_socketcan_new("can0", NULL, &ifc, &e), ST_ERR_NOTFOUND);
        assert_string_equal(e.msg, "no CAN interface can0: create it or check the adapter");
    }
    st_err_clear(&e);
    assert_int_equal(st_can_iface_socketcan_new("this-name-is-too-long-for-linux", NULL, &ifc,
                                                &e),
                     ST_ERR_INVAL);
    if (if_nametoindex("lo") != 0) {
        st_err_clear(&e);
        assert_int_equal(st_can_iface_socketcan_new("lo", NULL, &ifc, &e), ST_ERR_INVAL);
        assert_string_equal(e.msg, "lo is not a CAN interface");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_bits),
        cmocka_unit_test(test_filters_and_loopback),
        cmocka_unit_test(test_bus_off),
        cmocka_unit_test(test_drop_and_corrupt),
        cmocka_unit_test(test_prepare_bitrate),
        cmocka_unit_test(test_two_threads_separate_filters),
        cmocka_unit_test(test_datasheet_contention),
        cmocka_unit_test(test_socketcan_missing_interface),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
