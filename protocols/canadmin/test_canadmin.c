/* CAN admin tests: frame encodings (the PROTOCOL.md vectors), UUID text, the fasthash
 * UUID derivation, node-id mapping, and conversations on the in-memory bus with Klipper
 * application nodes and Katapult nodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "protocols/canadmin/canadmin.h"
#include "protocols/canadmin/klipper_node.h"
#include "station/core/clock.h"

static const st_can_uuid UA = { { 0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f } };
static const st_can_uuid UB = { { 0xc0, 0xff, 0xee, 0x00, 0x01, 0x02 } };
static const st_can_uuid UK = { { 0x90, 0xa4, 0xae, 0x02, 0x2d, 0xfc } };

static void expect_frame(const st_can_frame *f, uint32_t id, const uint8_t *d, uint8_t len)
{
    assert_int_equal(f->id, id);
    assert_int_equal(f->len, len);
    assert_memory_equal(f->data, d, len);
}

static void test_encodings(void **state)
{
    st_can_frame f;
    st_canadmin_encode_query(&f);
    expect_frame(&f, 0x3F0, (const uint8_t[]){ 0x00 }, 1);
    st_canadmin_encode_set_nodeid(&f, ST_CANADMIN_SET_KLIPPER_NODEID, &UA, 4);
    expect_frame(&f, 0x3F0, (const uint8_t[]){ 0x01, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f, 0x04 },
                 8);
    st_canadmin_encode_set_nodeid(&f, ST_CANADMIN_SET_CANBOOT_NODEID, &UA, 129);
    expect_frame(&f, 0x3F0, (const uint8_t[]){ 0x11, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f, 0x81 },
                 8);
    st_canadmin_encode_request_bootloader(&f, &UA);
    expect_frame(&f, 0x3F0, (const uint8_t[]){ 0x02, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f }, 7);
    st_canadmin_encode_clear_nodeids(&f);
    expect_frame(&f, 0x3F0, (const uint8_t[]){ 0x12 }, 1);
}

static void test_decode_need_nodeid(void **state)
{
    st_can_frame f = { 0x3F1, 8, { 0x20, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f, 0x11 } };
    st_canadmin_node n;
    char app[32];
    assert_int_equal(st_canadmin_decode_need_nodeid(&f, &n), 1);
    assert_true(st_can_uuid_equal(&n.uuid, &UA));
    assert_true(n.has_app);
    assert_string_equal(st_canadmin_app_name(&n, app, sizeof app), "katapult");
    f.data[7] = 0x01;
    st_canadmin_decode_need_nodeid(&f, &n);
    assert_string_equal(st_canadmin_app_name(&n, app, sizeof app), "klipper");
    f.data[7] = 0x42;
    st_canadmin_decode_need_nodeid(&f, &n);
    assert_string_equal(st_canadmin_app_name(&n, app, sizeof app), "unknown (0x42)");
    f.len = 7; /* older firmware: no app byte */
    assert_int_equal(st_canadmin_decode_need_nodeid(&f, &n), 1);
    assert_false(n.has_app);
    assert_string_equal(st_canadmin_app_name(&n, app, sizeof app), "unknown (none)");
    f.len = 6;
    assert_int_equal(st_canadmin_decode_need_nodeid(&f, &n), 0);
    f.len = 8;
    f.id = 0x3F0;
    assert_int_equal(st_canadmin_decode_need_nodeid(&f, &n), 0);
    f.id = 0x3F1;
    f.data[0] = 0x21;
    assert_int_equal(st_canadmin_decode_need_nodeid(&f, &n), 0);
    f.data[0] = 0x20;
    f.len = 9; /* not a classic frame */
    assert_int_equal(st_canadmin_decode_need_nodeid(&f, &n), 0);
}

static void test_uuid_text(void **state)
{
    char s[ST_CAN_UUID_STRLEN];
    st_can_uuid_format(&UB, s);
    assert_string_equal(s, "c0ffee000102");
    st_can_uuid u;
    assert_int_equal(st_can_uuid_parse("C0FFEE000102", &u, NULL), 0);
    assert_true(st_can_uuid_equal(&u, &UB));
    assert_int_equal(st_can_uuid_parse("1a2b3c4d5e6f", &u, NULL), 0);
    assert_true(st_can_uuid_equal(&u, &UA));
    static const char *bad[] = { "", "1a2b3c4d5e6", "1a2b3c4d5e6f0", "1a2b3c4d5e6g",
                                 " 1a2b3c4d5e6f", "1a2b3c4d5e6f\n", "0x1a2b3c4d5e",
                                 "1a:2b:3c:4d:5e:6f", "-1a2b3c4d5e6" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st_err e = { 0 };
        assert_int_equal(st_can_uuid_parse(bad[i], &u, &e), ST_ERR_INVAL);
        assert_int_equal(e.code, ST_ERR_INVAL);
    }
    st_err e = { 0 };
    st_can_uuid_parse("1a2b\x1b[31m", &u, &e);
    assert_string_equal(e.msg, "bad CAN UUID \"1a2b?[31m\": want 12 hex digits, e.g. 1a2b3c4d5e6f");
    assert_int_equal(st_can_uuid_parse(NULL, &u, NULL), ST_ERR_INVAL);
}

/* Way two: the reference code's shape (whole 64-bit words loaded from memory, the tail
 * with a falling-through switch), valid on this little-endian host. */
static uint64_t ref_mix(uint64_t h)
{
    h ^= h >> 23;
    h *= 0x2127599bf4325c37ULL;
    h ^= h >> 47;
    return h;
}

static uint64_t ref_fasthash64(const void *buf, size_t len, uint64_t seed)
{
    const uint64_t m = 0x880355f21e6d1965ULL;
    const unsigned char *pos = buf;
    uint64_t h = seed ^ (len * m);
    for (size_t i = 0; i < len / 8; i++, pos += 8) {
        uint64_t v;
        memcpy(&v, pos, 8);
        h ^= ref_mix(v);
        h *= m;
    }
    uint64_t v = 0;
    switch (len & 7) {
    case 7: v ^= (uint64_t)pos[6] << 48; /* fall through */
    case 6: v ^= (uint64_t)pos[5] << 40; /* fall through */
    case 5: v ^= (uint64_t)pos[4] << 32; /* fall through */
    case 4: v ^= (uint64_t)pos[3] << 24; /* fall through */
    case 3: v ^= (uint64_t)pos[2] << 16; /* fall through */
    case 2: v ^= (uint64_t)pos[1] << 8;  /* fall through */
    case 1:
        v ^= (uint64_t)pos[0];
        h ^= ref_mix(v);
        h *= m;
    }
    return ref_mix(h);
}

static void test_fasthash_uuid(void **state)
{
    /* Vectors computed with an independent Python implementation of the algorithm in
     * protocols.md 2.6 (see PROTOCOL.md). */
    static const uint8_t uid1[12] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 };
    static const uint8_t uid2[12] = { 0x3a, 0x00, 0x28, 0x00, 0x0f, 0x51,
                                      0x33, 0x32, 0x37, 0x38, 0x37, 0x30 };
    assert_true(st_fasthash64(uid1, 12, 0xA16231A7u) == 0x3682fc2d02aea490ULL);
    assert_true(st_fasthash64(uid2, 12, 0xA16231A7u) == 0x661906856df90b08ULL);
    assert_true(st_fasthash64("", 0, 0xA16231A7u) == 0x6b478d90c6641bbcULL);
    assert_true(st_fasthash64("123456789", 9, 0) == 0xe159b2b46b0208a2ULL);
    st_can_uuid u;
    char s[ST_CAN_UUID_STRLEN];
    st_can_uuid_from_chip_uid(uid1, &u);
    st_can_uuid_format(&u, s);
    assert_string_equal(s, "90a4ae022dfc");
    st_can_uuid_from_chip_uid(uid2, &u);
    st_can_uuid_format(&u, s);
    assert_string_equal(s, "080bf96d8506");
    /* Way two, over every tail length and odd alignments. */
    uint8_t buf[64];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t off = 0; off < 3; off++)
        for (size_t len = 0; len + off <= sizeof buf; len++)
            assert_true(st_fasthash64(buf + off, len, 0xA16231A7u) ==
                        ref_fasthash64(buf + off, len, 0xA16231A7u));
}

static void test_nodeid_mapping(void **state)
{
    assert_int_equal(st_canadmin_nodeid_tx_id(129), 0x202);
    assert_int_equal(st_canadmin_nodeid_rx_id(129), 0x203);
    assert_int_equal(st_canadmin_nodeid_tx_id(4), 0x108);
    assert_int_equal(st_canadmin_nodeid_rx_id(4), 0x109);
    assert_int_equal(st_canadmin_nodeid_tx_id(64), 0x180);
    for (unsigned n = 0; n < 256; n++)
        assert_int_equal(st_canadmin_can_id_to_nodeid(st_canadmin_nodeid_tx_id((uint8_t)n)),
                         (int)n);
    assert_int_equal(st_canadmin_can_id_to_nodeid(0x203), -1);
    assert_int_equal(st_canadmin_can_id_to_nodeid(0x0FE), -1);
    assert_int_equal(st_canadmin_can_id_to_nodeid(0x300), -1);
    assert_int_equal(st_canadmin_can_id_to_nodeid(0x3F0), -1);
}

/* A virtual unit: a Klipper application that reboots into Katapult on request. */
typedef struct unit {
    st_vcan_bus *bus;
    st_klipper_node *app;
    st_can_stream_node *boot;
    unsigned reboots;
} unit;

static void unit_reboot_to_katapult(void *ctx)
{
    unit *u = ctx;
    u->reboots++;
    st_vcan_detach(u->bus, st_klipper_node_base(u->app));
    st_vcan_attach(u->bus, st_can_stream_node_base(u->boot), NULL);
}

static void unit_init(unit *u, st_vcan_bus *bus, const st_can_uuid *id, bool in_app)
{
    memset(u, 0, sizeof *u);
    u->bus = bus;
    st_klipper_node_cfg kc = { .uuid = *id, .on_bootloader_request = unit_reboot_to_katapult,
                               .ctx = u };
    u->app = st_klipper_node_new(&kc);
    st_can_stream_node_cfg bc = { .app = ST_CANADMIN_APP_KATAPULT };
    memcpy(bc.uuid, id->b, 6);
    u->boot = st_can_stream_node_new(NULL, &bc);
    assert_non_null(u->app);
    assert_non_null(u->boot);
    if (in_app)
        assert_int_equal(st_vcan_attach(bus, st_klipper_node_base(u->app), NULL), 0);
    else
        assert_int_equal(st_vcan_attach(bus, st_can_stream_node_base(u->boot), NULL), 0);
}

static void unit_fini(unit *u)
{
    st_vcan_detach(u->bus, st_klipper_node_base(u->app));
    st_vcan_detach(u->bus, st_can_stream_node_base(u->boot));
    st_klipper_node_free(u->app);
    st_can_stream_node_free(u->boot);
}

typedef struct rig {
    st_vcan_bus *bus;
    st_can_iface *ifc;
    st_can_link *l;
    unit a, b, k; /* two Klipper apps, one unit already in Katapult */
} rig;

static void rig_open(rig *r, st_timing_profile timing)
{
    r->bus = st_vcan_bus_new(1000000, timing);
    assert_non_null(r->bus);
    assert_int_equal(st_can_iface_mem_new(r->bus, NULL, NULL, &r->ifc, NULL), 0);
    assert_int_equal(r->ifc->ops->open_link(r->ifc, &r->l, NULL), 0);
    unit_init(&r->a, r->bus, &UA, true);
    unit_init(&r->b, r->bus, &UB, true);
    unit_init(&r->k, r->bus, &UK, false);
}

static void rig_close(rig *r)
{
    unit_fini(&r->a);
    unit_fini(&r->b);
    unit_fini(&r->k);
    st_can_link_close(r->l);
    r->ifc->ops->free(r->ifc);
    st_vcan_bus_free(r->bus);
}

static const st_canadmin_node *find(const st_canadmin_node *n, int count,
                                    const st_can_uuid *u)
{
    for (int i = 0; i < count; i++)
        if (st_can_uuid_equal(&n[i].uuid, u))
            return &n[i];
    return NULL;
}

static void test_query_three_nodes(void **state)
{
    for (int t = 0; t < 2; t++) {
        rig r;
        rig_open(&r, t ? ST_TIMING_DATASHEET : ST_TIMING_NONE);
        st_canadmin_node n[8];
        uint64_t t0 = st_now_us();
        int c = st_canadmin_query(r.l, 150, n, 8, NULL);
        /* The query listens for its whole duration, as canbus_query.py does. */
        assert_true(st_now_us() - t0 >= 150000);
        assert_int_equal(c, 3);
        const st_canadmin_node *p = find(n, c, &UA);
        assert_non_null(p);
        assert_int_equal(p->app, ST_CANADMIN_APP_KLIPPER);
        p = find(n, c, &UB);
        assert_non_null(p);
        assert_int_equal(p->app, ST_CANADMIN_APP_KLIPPER);
        p = find(n, c, &UK);
        assert_non_null(p);
        assert_int_equal(p->app, ST_CANADMIN_APP_KATAPULT);
        /* More nodes than room: the count is still right. */
        assert_int_equal(st_canadmin_query(r.l, 50, n, 2, NULL), 3);
        rig_close(&r);
    }
}

/* A misbehaving node: answers every frame with a burst of malformed admin replies
 * (short, wrong first byte, and one well-formed duplicate of UA with an odd app byte). */
typedef struct rogue {
    st_can_node base;
    unsigned pending;
    uint32_t seed;
} rogue;

static void rogue_rx(st_can_node *b, const st_can_frame *f, uint64_t now)
{
    if (f->id == 0x3F0)
        ((rogue *)b)->pending = 40;
}

static int rogue_tx(st_can_node *b, st_can_frame *f, uint64_t now)
{
    rogue *r = (rogue *)b;
    if (!r->pending)
        return 0;
    r->pending--;
    r->seed = r->seed * 1103515245u + 12345u;
    memset(f, 0, sizeof *f);
    f->id = 0x3F1;
    f->len = (uint8_t)(r->seed >> 16) % 7; /* 0..6: too short to be NEED_NODEID */
    for (unsigned i = 0; i < 8; i++)
        f->data[i] = (uint8_t)(r->seed >> (i % 4 * 8));
    if (r->pending % 10 == 5) {
        f->len = 8;
        f->data[0] = 0x21; /* not NEED_NODEID */
    }
    return 1;
}

static uint64_t rogue_next(st_can_node *b)
{
    return ((rogue *)b)->pending ? 0 : UINT64_MAX;
}

static const st_can_node_ops rogue_ops = { rogue_rx, rogue_tx, rogue_next, NULL };

static void test_query_ignores_garbage(void **state)
{
    rig r;
    rig_open(&r, ST_TIMING_NONE);
    rogue g = { .base.ops = &rogue_ops, .seed = 7 };
    assert_int_equal(st_vcan_attach(r.bus, &g.base, NULL), 0);
    st_canadmin_node n[8];
    int c = st_canadmin_query(r.l, 50, n, 8, NULL);
    assert_int_equal(c, 3);
    assert_non_null(find(n, c, &UA));
    assert_non_null(find(n, c, &UB));
    assert_non_null(find(n, c, &UK));
    st_vcan_detach(r.bus, &g.base);
    rig_close(&r);
}

static void test_set_and_clear(void **state)
{
    rig r;
    rig_open(&r, ST_TIMING_NONE);
    st_canadmin_node n[8];
    assert_int_equal(st_canadmin_set_nodeid(r.l, ST_CANADMIN_SET_KLIPPER_NODEID, &UA, 4, NULL), 0);
    assert_int_equal(st_klipper_node_nodeid(r.a.app), 4);
    assert_int_equal(st_klipper_node_nodeid(r.b.app), -1);
    /* Katapult does not take Klipper's SET, and the reverse. */
    assert_int_equal(st_canadmin_set_nodeid(r.l, ST_CANADMIN_SET_KLIPPER_NODEID, &UK, 5, NULL), 0);
    assert_int_equal(st_can_stream_node_nodeid(r.k.boot), -1);
    assert_int_equal(st_canadmin_set_nodeid(r.l, ST_CANADMIN_SET_CANBOOT_NODEID, &UB, 6, NULL), 0);
    assert_int_equal(st_klipper_node_nodeid(r.b.app), -1);
    assert_int_equal(st_canadmin_set_nodeid(r.l, ST_CANADMIN_SET_CANBOOT_NODEID, &UK, 129, NULL),
                     0);
    assert_int_equal(st_can_stream_node_nodeid(r.k.boot), 129);
    int c = st_canadmin_query(r.l, 50, n, 8, NULL);
    assert_int_equal(c, 1);
    assert_true(st_can_uuid_equal(&n[0].uuid, &UB));
    /* CLEAR is Katapult's: the Klipper node keeps its id. */
    assert_int_equal(st_canadmin_clear_nodeids(r.l, NULL), 0);
    assert_int_equal(st_can_stream_node_nodeid(r.k.boot), -1);
    assert_int_equal(st_klipper_node_nodeid(r.a.app), 4);
    assert_int_equal(st_canadmin_query(r.l, 50, n, 8, NULL), 2);
    /* The same Klipper id for another UUID: A gives it up and shuts down. */
    assert_int_equal(st_canadmin_set_nodeid(r.l, ST_CANADMIN_SET_KLIPPER_NODEID, &UB, 4, NULL), 0);
    assert_int_equal(st_klipper_node_nodeid(r.b.app), 4);
    assert_int_equal(st_klipper_node_nodeid(r.a.app), -1);
    assert_true(st_klipper_node_shutdown(r.a.app));
    assert_false(st_klipper_node_shutdown(r.b.app));
    st_err e = { 0 };
    assert_int_equal(st_canadmin_set_nodeid(r.l, 0x05, &UA, 1, &e), ST_ERR_INVAL);
    rig_close(&r);
}

static void test_bootloader_request_reaches_only_its_node(void **state)
{
    rig r;
    rig_open(&r, ST_TIMING_NONE);
    /* A assigned: the request is honoured anyway. */
    assert_int_equal(st_canadmin_set_nodeid(r.l, ST_CANADMIN_SET_KLIPPER_NODEID, &UA, 4, NULL), 0);
    assert_int_equal(st_canadmin_request_bootloader(r.l, &UA, NULL), 0);
    /* Let the bus run: a receive with a short deadline pumps the nodes. */
    st_can_frame f;
    st_can_recv(r.l, &f, 10, NULL);
    assert_int_equal(r.a.reboots, 1);
    assert_int_equal(r.b.reboots, 0);
    assert_int_equal(r.k.reboots, 0);
    assert_int_equal(st_klipper_node_bootloader_requests(r.a.app), 1);
    assert_int_equal(st_klipper_node_bootloader_requests(r.b.app), 0);
    /* A now answers from Katapult. */
    st_canadmin_node n[8];
    int c = st_canadmin_query(r.l, 50, n, 8, NULL);
    assert_int_equal(c, 3);
    assert_int_equal(find(n, c, &UA)->app, ST_CANADMIN_APP_KATAPULT);
    assert_int_equal(find(n, c, &UB)->app, ST_CANADMIN_APP_KLIPPER);
    /* Unknown UUID: nobody moves. */
    static const st_can_uuid nobody = { { 1, 2, 3, 4, 5, 6 } };
    assert_int_equal(st_canadmin_request_bootloader(r.l, &nobody, NULL), 0);
    st_can_recv(r.l, &f, 10, NULL);
    assert_int_equal(r.b.reboots, 0);
    rig_close(&r);
}

/* With the datasheet profile a frame reaches the nodes when its last bit is on the wire,
 * and the bus runs while a host waits on it: wait a little before looking at a node. */
static void settle(rig *r)
{
    st_can_frame f;
    while (st_can_recv(r->l, &f, 5, NULL) == 1) {
    }
}

static void test_katapult_assign(void **state)
{
    rig r;
    rig_open(&r, ST_TIMING_DATASHEET);
    assert_int_equal(st_canadmin_katapult_assign(r.l, &UB, ST_CANADMIN_ASSIGN_REQUEST_BOOTLOADER,
                                                 ST_CANADMIN_NODEID_KATAPULT, 1000, NULL),
                     0);
    settle(&r);
    assert_int_equal(r.b.reboots, 1);
    assert_int_equal(st_can_stream_node_nodeid(r.b.boot), 129);
    assert_int_equal(st_can_stream_node_nodeid(r.k.boot), -1);
    assert_int_equal(r.a.reboots, 0);
    /* A unit in Katapult with an id needs CLEAR first. */
    st_err e = { 0 };
    assert_int_equal(st_canadmin_katapult_assign(r.l, &UB, 0, 130, 150, &e), ST_ERR_NOTFOUND);
    assert_string_equal(e.msg, "can admin: node c0ffee000102 did not answer as Katapult within "
                               "150 ms (not on the bus, wrong bitrate, or already holding a "
                               "node id)");
    assert_int_equal(st_canadmin_katapult_assign(r.l, &UB, ST_CANADMIN_ASSIGN_CLEAR_FIRST, 130,
                                                 500, NULL),
                     0);
    settle(&r);
    assert_int_equal(st_can_stream_node_nodeid(r.b.boot), 130);
    /* A Klipper app never asked to reboot stays Klipper. */
    st_err_clear(&e);
    assert_int_equal(st_canadmin_katapult_assign(r.l, &UA, 0, 131, 150, &e), ST_ERR_NOTFOUND);
    assert_string_equal(e.msg, "can admin: node 1a2b3c4d5e6f still answers as klipper, not "
                               "Katapult, after 150 ms");
    rig_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encodings),
        cmocka_unit_test(test_decode_need_nodeid),
        cmocka_unit_test(test_uuid_text),
        cmocka_unit_test(test_fasthash_uuid),
        cmocka_unit_test(test_nodeid_mapping),
        cmocka_unit_test(test_query_three_nodes),
        cmocka_unit_test(test_query_ignores_garbage),
        cmocka_unit_test(test_set_and_clear),
        cmocka_unit_test(test_bootloader_request_reaches_only_its_node),
        cmocka_unit_test(test_katapult_assign),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
