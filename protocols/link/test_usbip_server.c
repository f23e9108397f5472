/* Tests for the USB/IP device server: the test plays vhci-hcd on the other end of a socket
 * pair (byte-exact USB/IP headers), against a small vendor-class test model. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "protocols/link/usbip_server.h"
#include "station/core/testutil.h"

/* ---- test model: vendor device, bulk echo on ep 1, interrupt IN ep 2 that NAKs ------- */

static const uint8_t dev_desc[18] = {18, 1, 0x00, 0x02, 0xff, 0, 0, 64, 0x09, 0x12,
                                     0x01, 0x00, 0x00, 0x01, 1, 2, 3, 1};
static const uint8_t cfg_desc[] = {
    9, 2, 39, 0, 1, 1, 0, 0x80, 50,
    9, 4, 0, 0, 3, 0xff, 0, 0, 0,
    7, 5, 0x01, 2, 64, 0, 0,
    7, 5, 0x81, 2, 64, 0, 0,
    7, 5, 0x82, 3, 8, 0, 10,
};

typedef struct tmodel {
    st_usb_model base;
    uint8_t echo[256];
    size_t echo_len;
    uint8_t vendor[16];
    int disconnect_on_vendor_3;
    int out_budget; /* bytes bulk OUT accepts per call (0 = unlimited) */
} tmodel;

static int tm_control(st_usb_model *m, const st_usb_setup *su, uint8_t *data)
{
    tmodel *t = (tmodel *)m;
    if (su->bmRequestType == 0x80 && su->bRequest == 6) {
        const uint8_t *d = NULL;
        size_t n = 0;
        if (su->wValue >> 8 == 1) {
            d = dev_desc;
            n = sizeof(dev_desc);
        } else if (su->wValue >> 8 == 2) {
            d = cfg_desc;
            n = sizeof(cfg_desc);
        } else {
            return ST_ERR_STALL;
        }
        n = n < su->wLength ? n : su->wLength;
        memcpy(data, d, n);
        return (int)n;
    }
    if (su->bmRequestType == 0x00 && su->bRequest == 9)
        return 0;
    if (su->bmRequestType == 0x40 && su->bRequest == 1 && su->wLength <= sizeof(t->vendor)) {
        memcpy(t->vendor, data, su->wLength);
        return 0;
    }
    if (su->bmRequestType == 0xc0 && su->bRequest == 2) {
        size_t n = su->wLength < sizeof(t->vendor) ? su->wLength : sizeof(t->vendor);
        memcpy(data, t->vendor, n);
        return (int)n;
    }
    if (su->bmRequestType == 0x40 && su->bRequest == 3 && t->disconnect_on_vendor_3)
        return ST_ERR_DISCONNECT;
    return ST_ERR_STALL;
}

static int tm_bulk_out(st_usb_model *m, uint8_t ep, const uint8_t *data, size_t len)
{
    tmodel *t = (tmodel *)m;
    if (ep != 1)
        return ST_ERR_STALL;
    if (t->out_budget && len > (size_t)t->out_budget)
        len = (size_t)t->out_budget;
    if (t->echo_len + len > sizeof(t->echo))
        len = sizeof(t->echo) - t->echo_len;
    memcpy(t->echo + t->echo_len, data, len);
    t->echo_len += len;
    return (int)len;
}

static int tm_bulk_in(st_usb_model *m, uint8_t ep, uint8_t *buf, size_t cap)
{
    tmodel *t = (tmodel *)m;
    if (ep == 0x82)
        return 0; /* interrupt IN: nothing to say, ever */
    if (ep != 0x81)
        return ST_ERR_STALL;
    size_t n = t->echo_len < cap ? t->echo_len : cap;
    memcpy(buf, t->echo, n);
    memmove(t->echo, t->echo + n, t->echo_len - n);
    t->echo_len -= n;
    return (int)n;
}

static const st_usb_model_ops tm_ops = {tm_control, tm_bulk_out, tm_bulk_in, NULL};

/* ---- the fake kernel side ------------------------------------------------------------- */

typedef struct fixture {
    tmodel model;
    st_usbip_server *srv;
    int kfd; /* our end: we are vhci-hcd */
} fixture;

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    f->model.base.ops = &tm_ops;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(st_usbip_server_new(&f->model.base, NULL, &f->srv, NULL), 0);
    assert_int_equal(st_usbip_server_plug_fd(f->srv, NULL, sv[0], NULL), 0);
    f->kfd = sv[1];
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    st_usbip_server_free(f->srv);
    close(f->kfd);
    free(f);
    return 0;
}

static void submit(fixture *f, uint32_t seq, uint32_t ep, uint32_t dir, uint32_t len,
                   const uint8_t setup8[8], const uint8_t *out)
{
    uint8_t h[48] = {0};
    put32(h, 1);
    put32(h + 4, seq);
    put32(h + 8, 0x00010002);
    put32(h + 12, dir);
    put32(h + 16, ep);
    put32(h + 24, len);
    if (setup8)
        memcpy(h + 40, setup8, 8);
    assert_int_equal(write(f->kfd, h, 48), 48);
    if (dir == 0 && len)
        assert_int_equal(write(f->kfd, out, len), (ssize_t)len);
}

/* Read one RET_* message; returns its data length (IN data read into data). */
static void expect_ret(fixture *f, uint32_t cmd, uint32_t seq, int32_t status, uint32_t actual,
                       uint8_t *data)
{
    uint8_t h[48];
    assert_int_equal(recv(f->kfd, h, 48, MSG_WAITALL), 48);
    assert_int_equal(get32(h), cmd);
    assert_int_equal(get32(h + 4), seq);
    assert_int_equal((int32_t)get32(h + 20), status);
    if (cmd == 3) {
        assert_int_equal(get32(h + 24), actual);
        if (data && actual)
            assert_int_equal(recv(f->kfd, data, actual, MSG_WAITALL), (ssize_t)actual);
    }
}

static int nothing_pending(fixture *f)
{
    uint8_t b;
    return recv(f->kfd, &b, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

static void test_get_descriptors(void **state)
{
    fixture *f = *state;
    const uint8_t get_dev[8] = {0x80, 6, 0, 1, 0, 0, 64, 0};
    submit(f, 7, 0, 1, 64, get_dev, NULL);
    assert_int_equal(st_usbip_server_step(f->srv, NULL), 0);
    uint8_t d[64];
    expect_ret(f, 3, 7, 0, 18, d);
    assert_memory_equal(d, dev_desc, 18);
    /* wLength 9 first, as the kernel reads a configuration: the model must be cut short. */
    const uint8_t get_cfg9[8] = {0x80, 6, 0, 2, 0, 0, 9, 0};
    submit(f, 8, 0, 1, 9, get_cfg9, NULL);
    const uint8_t get_cfg[8] = {0x80, 6, 0, 2, 0, 0, 0xff, 0};
    submit(f, 9, 0, 1, 255, get_cfg, NULL);
    assert_int_equal(st_usbip_server_step(f->srv, NULL), 0);
    expect_ret(f, 3, 8, 0, 9, d);
    assert_memory_equal(d, cfg_desc, 9);
    expect_ret(f, 3, 9, 0, sizeof(cfg_desc), d);
    assert_memory_equal(d, cfg_desc, sizeof(cfg_desc));
    st_usbip_stats st;
    st_usbip_server_stats(f->srv, &st);
    assert_int_equal(st.control, 3);
}

static void test_control_out_then_in_and_stall(void **state)
{
    fixture *f = *state;
    const uint8_t set[8] = {0x40, 1, 0, 0, 0, 0, 4, 0};
    const uint8_t payload[4] = {0xde, 0xad, 0xbe, 0xef};
    submit(f, 1, 0, 0, 4, set, payload);
    const uint8_t get[8] = {0xc0, 2, 0, 0, 0, 0, 4, 0};
    submit(f, 2, 0, 1, 4, get, NULL);
    const uint8_t bad[8] = {0xc0, 0x77, 0, 0, 0, 0, 4, 0};
    submit(f, 3, 0, 1, 4, bad, NULL);
    assert_int_equal(st_usbip_server_step(f->srv, NULL), 0);
    uint8_t d[4];
    expect_ret(f, 3, 1, 0, 4, NULL);
    expect_ret(f, 3, 2, 0, 4, d);
    assert_memory_equal(d, payload, 4);
    expect_ret(f, 3, 3, -32, 0, NULL);
}

/* A header that arrives a byte at a time must still be answered exactly once. */
static void test_split_header(void **state)
{
    fixture *f = *state;
    uint8_t h[48] = {0};
    put32(h, 1);
    put32(h + 4, 42);
    put32(h + 12, 1);
    put32(h + 24, 18);
    const uint8_t get_dev[8] = {0x80, 6, 0, 1, 0, 0, 18, 0};
    memcpy(h + 40, get_dev, 8);
    for (int i = 0; i < 48; i++) {
        assert_int_equal(write(f->kfd, h + i, 1), 1);
        assert_int_equal(st_usbip_server_step(f->srv, NULL), 0);
        if (i < 47)
            assert_true(nothing_pending(f));
    }
    uint8_t d[18];
    expect_ret(f, 3, 42, 0, 18, d);
    assert_memory_equal(d, dev_desc, 18);
}

static void test_bulk_echo_in_order(void **state)
{
    fixture *f = *state;
    /* IN submitted before any data exists: NAKed, kept, answered once OUT data arrives. */
    submit(f, 10, 1, 1, 64, NULL, NULL);
    assert_int_equal(st_usbip_server_step(f->srv, NULL), 0);
    assert_true(nothing_pending(f));
    assert_true(st_usbip_server_timeout_ms(f->srv) > 0);
    f->model.out_budget = 3; /* the model takes 3 bytes per call: OUT completes over steps */
    const uint8_t msg[5] = {'h', 'e', 'l', 'l', 'o'};
    submit(f, 11, 1, 0, 5, NULL, msg);
    assert_int_equal(st_usbip_server_step(f->srv, NULL), 0);
    uint8_t d[64];
    /* One step: the model took 3 bytes, the IN got them, then the OUT finished. */
    expect_ret(f, 3, 10, 0, 3, d);
    assert_memory_equal(d, "hel", 3);
    expect_ret(f, 3, 11, 0, 5, NULL);
    assert_true(nothing_pending(f));
    submit(f, 12, 1, 1, 64, NULL, NULL);
    assert_int_equal(st_usbip_server_step(f->srv, NULL), 0);
    expect_ret(f, 3, 12, 0, 2, d);
    assert_memory_equal(d, "lo", 2);
    st_usbip_stats st;
    st_usbip_server_stats(f->srv, &st);
    assert_int_equal(st.bulk_out_bytes, 5);
    assert_int_equal(st.bulk_in_bytes, 5);
}

static void test_interrupt_nak_and_unlink(void **state)
{
    fixture *f = *state;
    submit(f, 20, 2, 1, 8, NULL, NULL);
    assert_int_equal(st_usbip_server_run(f->srv, 30, NULL), 0);
    assert_true(nothing_pending(f));
    uint8_t h[48] = {0};
    put32(h, 2);
    put32(h + 4, 21);
    put32(h + 20, 20);
    assert_int_equal(write(f->kfd, h, 48), 48);
    assert_int_equal(st_usbip_server_step(f->srv, NULL), 0);
    expect_ret(f, 4, 21, -104, 0, NULL); /* -ECONNRESET: cancelled while pending */
    assert_int_equal(st_usbip_server_timeout_ms(f->srv), -1);
    /* Unlinking something already answered: status 0. */
    put32(h + 4, 22);
    put32(h + 20, 999);
    assert_int_equal(write(f->kfd, h, 48), 48);
    assert_int_equal(st_usbip_server_step(f->srv, NULL), 0);
    expect_ret(f, 4, 22, 0, 0, NULL);
}

static void test_model_disconnect_unplugs(void **state)
{
    fixture *f = *state;
    f->model.disconnect_on_vendor_3 = 1;
    const uint8_t bye[8] = {0x40, 3, 0, 0, 0, 0, 0, 0};
    submit(f, 30, 0, 0, 0, bye, NULL);
    assert_int_equal(st_usbip_server_step(f->srv, NULL), 1);
    assert_int_equal(st_usbip_server_plugged(f->srv), 0);
    uint8_t b;
    assert_int_equal(recv(f->kfd, &b, 1, 0), 0); /* EOF: the "cable" is gone */
    /* Plug again (the unit came back) and it answers. */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(f->kfd);
    f->kfd = sv[1];
    assert_int_equal(st_usbip_server_plug_fd(f->srv, NULL, sv[0], NULL), 0);
    const uint8_t get_dev[8] = {0x80, 6, 0, 1, 0, 0, 18, 0};
    submit(f, 31, 0, 1, 18, get_dev, NULL);
    assert_int_equal(st_usbip_server_step(f->srv, NULL), 0);
    expect_ret(f, 3, 31, 0, 18, NULL);
}

static void test_kernel_close_and_garbage(void **state)
{
    fixture *f = *state;
    uint8_t h[48] = {0};
    put32(h, 0x99);
    assert_int_equal(write(f->kfd, h, 48), 48);
    st_err e = {0};
    assert_int_equal(st_usbip_server_step(f->srv, &e), ST_ERR_PROTO);
    assert_non_null(strstr(e.msg, "unknown command"));
    assert_int_equal(st_usbip_server_plugged(f->srv), 0);
    /* A submit claiming an absurd length is refused, not allocated. */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(f->kfd);
    f->kfd = sv[1];
    assert_int_equal(st_usbip_server_plug_fd(f->srv, NULL, sv[0], NULL), 0);
    submit(f, 1, 1, 1, 0x7fffffff, NULL, NULL);
    assert_int_equal(st_usbip_server_step(f->srv, &e), ST_ERR_PROTO);
    /* Kernel side closing = unplug, reported as 1. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(f->kfd);
    f->kfd = sv[1];
    assert_int_equal(st_usbip_server_plug_fd(f->srv, NULL, sv[0], NULL), 0);
    close(f->kfd);
    f->kfd = open("/dev/null", O_RDONLY);
    assert_int_equal(st_usbip_server_step(f->srv, NULL), 1);
}

/* The sysfs handshake against a fake vhci directory: port choice and the attach line. */
static void test_plug_writes_attach_line(void **state)
{
    (void)state;
    char dir[128];
    st_test_tmpl(dir, sizeof dir, "test_usbip_vhci");
    assert_non_null(mkdtemp(dir));
    char p[256];
    snprintf(p, sizeof(p), "%s/status", dir);
    FILE *fs = fopen(p, "w");
    fputs("hub port sta spd dev      sockfd local_busid\n"
          "hs  0000 006 002 00010002 000003 1-1\n"
          "hs  0001 004 000 00000000 000000 0-0\n"
          "ss  0008 004 000 00000000 000000 0-0\n",
          fs);
    fclose(fs);
    snprintf(p, sizeof(p), "%s/attach", dir);
    fclose(fopen(p, "w"));
    snprintf(p, sizeof(p), "%s/detach", dir);
    fclose(fopen(p, "w"));
    tmodel m = {.base.ops = &tm_ops};
    st_usbip_server *s;
    assert_int_equal(st_usbip_server_new(&m.base, NULL, &s, NULL), 0);
    st_usbip_opts o = {.vhci_dir = dir};
    assert_int_equal(st_usbip_server_plug(s, NULL, &o, NULL), 0);
    assert_int_equal(st_usbip_server_port(s), 1);
    char line[64] = {0};
    snprintf(p, sizeof(p), "%s/attach", dir);
    FILE *fa = fopen(p, "r");
    assert_non_null(fgets(line, sizeof(line), fa));
    fclose(fa);
    int port, fd;
    unsigned devid, speed;
    assert_int_equal(sscanf(line, "%d %d %u %u", &port, &fd, &devid, &speed), 4);
    assert_int_equal(port, 1);
    assert_true(fd > 2);
    assert_int_equal(devid, (1u << 16) | 3u);
    assert_int_equal(speed, 2); /* full speed */
    st_err e = {0};
    assert_int_equal(st_usbip_server_plug(s, NULL, &o, &e), ST_ERR_BUSY);
    st_usbip_server_unplug(s);
    snprintf(p, sizeof(p), "%s/detach", dir);
    fa = fopen(p, "r");
    assert_non_null(fgets(line, sizeof(line), fa));
    fclose(fa);
    assert_string_equal(line, "1");
    st_usbip_server_free(s);
    /* No vhci: a clear error naming the module to load. */
    assert_int_equal(st_usbip_server_new(&m.base, NULL, &s, NULL), 0);
    st_usbip_opts none = {.vhci_dir = "/nonexistent/vhci"};
    assert_true(st_usbip_server_plug(s, NULL, &none, &e) < 0);
    assert_non_null(strstr(e.msg, "vhci-hcd"));
    st_usbip_server_free(s);
    const char *names[] = {"status", "attach", "detach"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_descriptors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_out_then_in_and_stall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_echo_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupt_nak_and_unlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_disconnect_unplugs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kernel_close_and_garbage, setup, teardown),
        cmocka_unit_test(test_plug_writes_attach_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
