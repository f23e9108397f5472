/* Tests for the user-space CDC-ACM stream: against the st_cdc_acm device model on the
 * in-memory USB bus with an echo model of our own (data, line coding, DTR/RTS, timeouts,
 * unplug), the 1200-baud touch reaching a Klipper application model, and the configuration
 * descriptor parser on good, hostile and random descriptors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/link/serial_ports.h"
#include "protocols/link/stream_cdc.h"
#include "protocols/link/usb_model.h"
#include "protocols/sim/cdc_acm.h"
#include "protocols/sim/klipper_app.h"
#include "station/core/clock.h"
#include "station/core/text.h"

/* Echoes what it receives; records the last line()/modem state it was told. */
typedef struct echo_model {
    st_stream_model base;
    uint8_t buf[16384];
    size_t len;
    st_stream_line line;
    int dtr, rts, line_calls;
} echo_model;

static void echo_rx(st_stream_model *b, const uint8_t *buf, size_t n, uint64_t now)
{
    echo_model *m = (echo_model *)b;
    if (n > sizeof m->buf - m->len)
        n = sizeof m->buf - m->len;
    memcpy(m->buf + m->len, buf, n);
    m->len += n;
}

static size_t echo_tx(st_stream_model *b, uint8_t *buf, size_t cap, uint64_t now)
{
    echo_model *m = (echo_model *)b;
    size_t n = m->len < cap ? m->len : cap;
    /* At most one full-speed packet at a time, like a real CDC device. */
    if (n > 64)
        n = 64;
    memcpy(buf, m->buf, n);
    memmove(m->buf, m->buf + n, m->len - n);
    m->len -= n;
    return n;
}

static uint64_t echo_next(st_stream_model *b)
{
    return ((echo_model *)b)->len ? 0 : UINT64_MAX;
}

static void echo_line(st_stream_model *b, const st_stream_line *line, int dtr, int rts)
{
    echo_model *m = (echo_model *)b;
    m->line = *line;
    m->dtr = dtr;
    m->rts = rts;
    m->line_calls++;
}

static const st_stream_model_ops echo_ops = {
    .rx = echo_rx, .tx = echo_tx, .next_event_us = echo_next, .line = echo_line,
};

#define PORT "1-1.2"

typedef struct fx {
    st_vusb_bus *bus;
    st_usb_host *host;
    echo_model echo;
    st_cdc_acm *cdc;
    st_usb_dev_info want;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->echo.base.ops = &echo_ops;
    f->bus = st_vusb_bus_new();
    assert_non_null(f->bus);
    st_cdc_identity id = {0x1d50, 0x6177, 0x0100, "katapult", "stm32g431xx", "0123"};
    f->cdc = st_cdc_acm_new(&id, &f->echo.base);
    assert_non_null(f->cdc);
    assert_int_equal(st_vusb_attach(f->bus, PORT, st_cdc_acm_usb(f->cdc), NULL), 0);
    assert_int_equal(st_usb_host_mem_new(f->bus, NULL, &f->host, NULL), 0);
    st_strlcpy(f->want.port_path, PORT, sizeof f->want.port_path);
    f->want.vid = 0x1d50;
    f->want.pid = 0x6177;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    st_usb_host_free(f->host);
    st_vusb_detach(f->bus, PORT);
    st_cdc_acm_free(f->cdc);
    st_vusb_bus_free(f->bus);
    free(f);
    return 0;
}

static const st_stream_line l250k = {250000, 8, 'N', 1, 0};

static void test_round_trip(void **state)
{
    fx *f = *state;
    st_stream *s = NULL;
    st_err err;
    assert_int_equal(st_stream_cdc_open(f->host, &f->want, &l250k, &s, &err), 0);
    assert_non_null(strstr(s->name, PORT));
    uint8_t out[3000], in[3000];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(st_stream_write(s, out, sizeof out, 1000, &err), (int)sizeof out);
    assert_int_equal(st_stream_read_exact(s, in, sizeof in, 1000, &err), (int)sizeof in);
    assert_memory_equal(in, out, sizeof out);
    /* Small reads come out of one bulk packet in order. */
    assert_int_equal(st_stream_write(s, out, 50, 1000, &err), 50);
    size_t got = 0;
    while (got < 50) {
        int rc = st_stream_read(s, in + got, 7, 500, &err);
        assert_true(rc > 0 && rc <= 7);
        got += (size_t)rc;
    }
    assert_memory_equal(in, out, 50);
    st_stream_close(s);
}

/* Katapult is stop-and-wait: one 64-byte block out, one answer back. The stream's own
 * share of that turnaround over the in-memory bus is measured here (no timing profile). */
static void test_round_trip_latency(void **state)
{
    fx *f = *state;
    st_stream *s = NULL;
    st_err err;
    assert_int_equal(st_stream_cdc_open(f->host, &f->want, &l250k, &s, &err), 0);
    uint8_t out[64], in[64];
    enum { N = 500 };
    uint64_t t0 = st_now_us();
    for (int i = 0; i < N; i++) {
        memset(out, i, sizeof out);
        assert_int_equal(st_stream_write(s, out, sizeof out, 500, &err), 64);
        assert_int_equal(st_stream_read_exact(s, in, sizeof in, 500, &err), 64);
        assert_memory_equal(in, out, sizeof out);
    }
    uint64_t ns = (st_now_us() - t0) * 1000 / N;
    print_message("usb-cdc over the in-memory bus: %llu ns per 64-byte round trip\n",
                  (unsigned long long)ns);
    assert_true(ns < 5000000);
    st_stream_close(s);
}

static void test_line_and_modem_reach_model(void **state)
{
    fx *f = *state;
    st_stream *s = NULL;
    st_err err;
    assert_int_equal(st_stream_cdc_open(f->host, &f->want, &l250k, &s, &err), 0);
    st_stream_line l;
    int dtr = -1, rts = -1;
    st_cdc_acm_line(f->cdc, &l, &dtr, &rts);
    assert_int_equal(l.baud, 250000);
    assert_int_equal(l.data_bits, 8);
    assert_int_equal(l.parity, 'N');
    assert_int_equal(l.stop_bits, 1);
    assert_int_equal(dtr, 1);
    assert_int_equal(rts, 1);
    assert_int_equal(f->echo.line.baud, 250000);

    /* -1 leaves a line as it is: RTS stays up while DTR drops. */
    assert_int_equal(st_stream_set_modem(s, 0, -1, &err), 0);
    st_cdc_acm_line(f->cdc, &l, &dtr, &rts);
    assert_int_equal(dtr, 0);
    assert_int_equal(rts, 1);
    assert_int_equal(f->echo.dtr, 0);
    assert_int_equal(st_stream_set_modem(s, -1, 0, &err), 0);
    st_cdc_acm_line(f->cdc, &l, &dtr, &rts);
    assert_int_equal(dtr, 0);
    assert_int_equal(rts, 0);
    assert_int_equal(st_stream_set_modem(s, 1, -1, &err), 0);
    st_cdc_acm_line(f->cdc, &l, &dtr, &rts);
    assert_int_equal(dtr, 1);
    assert_int_equal(rts, 0);
    assert_int_equal(st_stream_set_modem(s, -1, 1, &err), 0);
    st_cdc_acm_line(f->cdc, &l, &dtr, &rts);
    assert_int_equal(dtr, 1); /* -1 kept DTR up */
    assert_int_equal(rts, 1);

    st_stream_line l2 = {9600, 7, 'E', 2, 0};
    assert_int_equal(st_stream_set_line(s, &l2, &err), 0);
    st_cdc_acm_line(f->cdc, &l, NULL, NULL);
    assert_int_equal(l.baud, 9600);
    assert_int_equal(l.data_bits, 7);
    assert_int_equal(l.parity, 'E');
    assert_int_equal(l.stop_bits, 2);
    assert_int_equal(f->echo.line.parity, 'E');
    st_stream_line l3 = {19200, 8, 'O', 1, 0};
    assert_int_equal(st_stream_set_line(s, &l3, &err), 0);
    st_cdc_acm_line(f->cdc, &l, NULL, NULL);
    assert_int_equal(l.parity, 'O');

    st_stream_line bad = {0, 8, 'N', 1, 0};
    assert_int_equal(st_stream_set_line(s, &bad, &err), ST_ERR_INVAL);
    bad = (st_stream_line){9600, 9, 'N', 1, 0};
    assert_int_equal(st_stream_set_line(s, &bad, &err), ST_ERR_INVAL);
    bad = (st_stream_line){9600, 8, 'X', 1, 0};
    assert_int_equal(st_stream_set_line(s, &bad, &err), ST_ERR_INVAL);
    st_stream_close(s);
}

static void test_open_without_line_keeps_coding(void **state)
{
    fx *f = *state;
    st_stream *s = NULL;
    assert_int_equal(st_stream_cdc_open(f->host, &f->want, NULL, &s, NULL), 0);
    st_stream_line l;
    st_cdc_acm_line(f->cdc, &l, NULL, NULL);
    assert_int_equal(l.baud, 115200); /* the model's power-on coding */
    st_stream_close(s);
}

static void test_read_timeout(void **state)
{
    fx *f = *state;
    st_stream *s = NULL;
    st_err err;
    assert_int_equal(st_stream_cdc_open(f->host, &f->want, &l250k, &s, &err), 0);
    uint8_t b[8];
    uint64_t t0 = st_now_us();
    st_err_clear(&err);
    assert_int_equal(st_stream_read(s, b, sizeof b, 120, &err), 0);
    uint64_t ms = (st_now_us() - t0) / 1000;
    assert_true(ms >= 115);
    assert_true(ms < 1000);
    assert_int_equal(err.code, 0); /* a timeout is "no data", not an error */
    t0 = st_now_us();
    assert_int_equal(st_stream_read(s, b, sizeof b, 0, &err), 0);
    assert_true(st_now_us() - t0 < 200000);
    assert_int_equal(st_stream_read_exact(s, b, 4, 80, &err), ST_ERR_TIMEOUT);
    st_stream_close(s);
}

static void test_flush_input(void **state)
{
    fx *f = *state;
    st_stream *s = NULL;
    st_err err;
    assert_int_equal(st_stream_cdc_open(f->host, &f->want, &l250k, &s, &err), 0);
    uint8_t junk[300] = {1, 2, 3}, b[16];
    assert_int_equal(st_stream_write(s, junk, sizeof junk, 500, &err), (int)sizeof junk);
    /* read one byte so the rest sits partly in the stream's buffer, partly in the model */
    assert_int_equal(st_stream_read(s, b, 1, 500, &err), 1);
    assert_int_equal(st_stream_flush_input(s, &err), 0);
    assert_int_equal(f->echo.len, 0);
    assert_int_equal(st_stream_read(s, b, sizeof b, 50, &err), 0);
    st_stream_close(s);
}

static void test_disconnect(void **state)
{
    fx *f = *state;
    st_stream *s = NULL;
    st_err err;
    assert_int_equal(st_stream_cdc_open(f->host, &f->want, &l250k, &s, &err), 0);
    st_vusb_detach(f->bus, PORT);
    uint8_t b[8] = {0};
    st_err_clear(&err);
    assert_int_equal(st_stream_read(s, b, sizeof b, 200, &err), ST_ERR_DISCONNECT);
    assert_int_equal(err.code, ST_ERR_DISCONNECT);
    assert_non_null(strstr(err.msg, PORT));
    assert_int_equal(st_stream_write(s, b, sizeof b, 200, &err), ST_ERR_DISCONNECT);
    assert_int_equal(st_stream_set_modem(s, 0, 0, &err), ST_ERR_DISCONNECT);
    assert_int_equal(st_stream_set_line(s, &l250k, &err), ST_ERR_DISCONNECT);
    assert_int_equal(st_stream_flush_input(s, &err), ST_ERR_DISCONNECT);
    /* without an error object the code still comes back */
    assert_int_equal(st_stream_read(s, b, sizeof b, 10, NULL), ST_ERR_DISCONNECT);
    st_stream_close(s);
    /* a new open on the empty port: not found */
    assert_int_equal(st_stream_cdc_open(f->host, &f->want, &l250k, &s, &err), ST_ERR_NOTFOUND);
}

static void test_wrong_id(void **state)
{
    fx *f = *state;
    st_stream *s = NULL;
    st_err err;
    st_usb_dev_info w = f->want;
    w.pid = 0x614e;
    assert_int_equal(st_stream_cdc_open(f->host, &w, &l250k, &s, &err), ST_ERR_NOTFOUND);
    assert_non_null(strstr(err.msg, "614e"));
    assert_null(s);
}

/* ---- Klipper application: the 1200-baud touch ---- */

typedef struct kl_ctx {
    int fired;
    st_vusb_bus *bus; /* non-NULL: the unit drops off the bus as it reboots */
} kl_ctx;

static void kl_hook(void *p)
{
    kl_ctx *k = p;
    k->fired++;
    if (k->bus)
        st_vusb_detach(k->bus, PORT);
}

static void run_touch(bool drop_off)
{
    st_vusb_bus *bus = st_vusb_bus_new();
    kl_ctx k = {0, drop_off ? bus : NULL};
    st_klipper_app *app = st_klipper_app_new(kl_hook, &k);
    st_cdc_identity id = {0x1d50, 0x614e, 0x0100, "Klipper", "stm32g431xx", "ABC"};
    st_cdc_acm *cdc = st_cdc_acm_new(&id, st_klipper_app_stream(app));
    assert_int_equal(st_vusb_attach(bus, PORT, st_cdc_acm_usb(cdc), NULL), 0);
    st_usb_host *host;
    assert_int_equal(st_usb_host_mem_new(bus, NULL, &host, NULL), 0);
    st_usb_dev_info want = {.vid = 0x1d50, .pid = 0x614e};
    st_strlcpy(want.port_path, PORT, sizeof want.port_path);

    /* Opening at 1200 baud must not reboot the unit: DTR is raised first. */
    static const st_stream_line l1200 = {1200, 8, 'N', 1, 0};
    st_stream *s = NULL;
    st_err err;
    assert_int_equal(st_stream_cdc_open(host, &want, &l1200, &s, &err), 0);
    assert_int_equal(k.fired, 0);
    assert_int_equal(st_stream_set_line(s, &l250k, &err), 0);
    assert_int_equal(k.fired, 0);

    assert_int_equal(st_serial_touch_1200(s, &err), 0);
    assert_int_equal(k.fired, 1);
    st_stream_line l;
    int dtr;
    st_cdc_acm_line(cdc, &l, &dtr, NULL);
    assert_int_equal(l.baud, 1200);
    assert_int_equal(dtr, 0);
    st_stream_close(s);
    assert_int_equal(k.fired, 1);

    st_usb_host_free(host);
    st_vusb_detach(bus, PORT);
    st_cdc_acm_free(cdc);
    st_klipper_app_free(app);
    st_vusb_bus_free(bus);
}

static void test_touch_1200_fires_once(void **state)
{
    run_touch(false);
}

static void test_touch_1200_unit_drops_off(void **state)
{
    run_touch(true);
}

static void test_uart_request_over_cdc(void **state)
{
    st_vusb_bus *bus = st_vusb_bus_new();
    kl_ctx k = {0, NULL};
    st_klipper_app *app = st_klipper_app_new(kl_hook, &k);
    st_cdc_identity id = {0x1d50, 0x614e, 0x0100, "Klipper", "stm32g431xx", "ABC"};
    st_cdc_acm *cdc = st_cdc_acm_new(&id, st_klipper_app_stream(app));
    assert_int_equal(st_vusb_attach(bus, PORT, st_cdc_acm_usb(cdc), NULL), 0);
    st_usb_host *host;
    assert_int_equal(st_usb_host_mem_new(bus, NULL, &host, NULL), 0);
    st_usb_dev_info want = {.vid = 0x1d50, .pid = 0x614e};
    st_strlcpy(want.port_path, PORT, sizeof want.port_path);
    st_stream *s = NULL;
    st_err err;
    assert_int_equal(st_stream_cdc_open(host, &want, &l250k, &s, &err), 0);
    assert_int_equal(st_serial_request_bootloader_uart(s, &err), 0);
    assert_int_equal(k.fired, 1);
    st_stream_close(s);
    st_usb_host_free(host);
    st_vusb_detach(bus, PORT);
    st_cdc_acm_free(cdc);
    st_klipper_app_free(app);
    st_vusb_bus_free(bus);
}

/* ---- not a CDC device ---- */

static const uint8_t vendor_cfg[] = {
    9, 2, 25, 0, 1, 1, 0, 0x80, 50,
    9, 4, 0, 0, 1, 0xFF, 0, 0, 0,
    7, 5, 0x81, 0x02, 64, 0, 0,
};
static const uint8_t vendor_dev[18] = {18, 1, 0, 2, 0, 0, 0, 64, 0x83, 0x04, 0x11, 0xdf,
                                       0, 1, 0, 0, 0, 1};

static int vendor_control(st_usb_model *m, const st_usb_setup *s, uint8_t *data)
{
    st_usb_model_desc d = {vendor_dev, vendor_cfg, sizeof vendor_cfg, NULL, 0};
    int rc = st_usb_model_std_control(&d, s, data, NULL);
    return rc == ST_ERR_UNSUPPORTED ? ST_ERR_STALL : rc;
}

static const st_usb_model_ops vendor_ops = {.control = vendor_control};

static void test_not_cdc(void **state)
{
    st_vusb_bus *bus = st_vusb_bus_new();
    st_usb_model m = {&vendor_ops};
    assert_int_equal(st_vusb_attach(bus, "3-1", &m, NULL), 0);
    st_usb_host *host;
    assert_int_equal(st_usb_host_mem_new(bus, NULL, &host, NULL), 0);
    st_usb_dev_info want = {.vid = 0x0483, .pid = 0xdf11};
    st_strlcpy(want.port_path, "3-1", sizeof want.port_path);
    st_stream *s = NULL;
    st_err err;
    assert_int_equal(st_stream_cdc_open(host, &want, NULL, &s, &err), ST_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "3-1"));
    assert_non_null(strstr(err.msg, "CDC-ACM"));
    st_usb_host_free(host);
    st_vusb_detach(bus, "3-1");
    st_vusb_bus_free(bus);
}

/* ---- descriptor parser ---- */

/* Klipper/Katapult usb_cdc.c layout (the same bytes as protocols/sim/cdc_acm.c). */
static const uint8_t klipper_cfg[] = {
    9, 2, 67, 0, 2, 1, 0, 0x80, 50,
    9, 4, 0, 0, 1, 0x02, 0x02, 0x01, 0,
    5, 0x24, 0x00, 0x10, 0x01,
    5, 0x24, 0x01, 0x00, 0x01,
    4, 0x24, 0x02, 0x02,
    5, 0x24, 0x06, 0x00, 0x01,
    7, 5, 0x81, 0x03, 8, 0, 255,
    9, 4, 1, 0, 2, 0x0A, 0x00, 0x00, 0,
    7, 5, 0x02, 0x02, 64, 0, 0,
    7, 5, 0x82, 0x02, 64, 0, 0,
};

static void test_parse_klipper_layout(void **state)
{
    st_cdc_layout l;
    st_err err;
    assert_int_equal(st_cdc_parse_config(klipper_cfg, sizeof klipper_cfg, &l, &err), 0);
    assert_int_equal(l.comm_iface, 0);
    assert_int_equal(l.data_iface, 1);
    assert_int_equal(l.data_alt, 0);
    assert_int_equal(l.ep_in, 0x82);
    assert_int_equal(l.ep_out, 0x02);
    assert_int_equal(l.max_packet_in, 64);
}

static void test_parse_composite_union(void **state)
{
    /* A composite device: vendor interface 0, ACM on 2/3 with the union naming 3, a
     * decoy data-class interface 1 without endpoints, and the data interface's bulk pair
     * only in alternate setting 1. */
    static const uint8_t cfg[] = {
        9, 2, 87, 0, 4, 1, 0, 0x80, 50,
        9, 4, 0, 0, 0, 0xFF, 0, 0, 0,
        9, 4, 1, 0, 0, 0x0A, 0, 0, 0,
        9, 4, 2, 0, 1, 0x02, 0x02, 0x01, 0,
        5, 0x24, 0x06, 0x02, 0x03,
        7, 5, 0x83, 0x03, 8, 0, 16,
        9, 4, 3, 0, 0, 0x0A, 0, 0, 0,
        9, 4, 3, 1, 2, 0x0A, 0, 0, 0,
        7, 5, 0x84, 0x02, 0x00, 0x02, 0,
        7, 5, 0x04, 0x02, 0x00, 0x02, 0,
        7, 5, 0x85, 0x02, 64, 0, 0, /* a second IN pair after the first: ignored */
    };
    st_cdc_layout l;
    st_err err;
    assert_int_equal(st_cdc_parse_config(cfg, sizeof cfg, &l, &err), 0);
    assert_int_equal(l.comm_iface, 2);
    assert_int_equal(l.data_iface, 3);
    assert_int_equal(l.data_alt, 1);
    assert_int_equal(l.ep_in, 0x84);
    assert_int_equal(l.ep_out, 0x04);
    assert_int_equal(l.max_packet_in, 512);
}

static void test_parse_hostile(void **state)
{
    st_cdc_layout l;
    st_err err;
    uint8_t b[sizeof klipper_cfg];
    /* a zero-length descriptor in the middle would loop forever if believed */
    memcpy(b, klipper_cfg, sizeof b);
    b[9 + 9] = 0;
    assert_int_equal(st_cdc_parse_config(b, sizeof b, &l, &err), ST_ERR_PROTO);
    /* a descriptor running past the end */
    memcpy(b, klipper_cfg, sizeof b);
    b[sizeof b - 7] = 40;
    assert_int_equal(st_cdc_parse_config(b, sizeof b, &l, &err), ST_ERR_PROTO);
    /* truncated by the transfer: the data endpoints are missing */
    assert_int_equal(st_cdc_parse_config(klipper_cfg, sizeof klipper_cfg - 14, &l, &err),
                     ST_ERR_UNSUPPORTED);
    /* wTotalLength shorter than what was read wins */
    memcpy(b, klipper_cfg, sizeof b);
    b[2] = 53;
    assert_int_equal(st_cdc_parse_config(b, sizeof b, &l, &err), ST_ERR_UNSUPPORTED);
    /* not a configuration descriptor */
    assert_int_equal(st_cdc_parse_config(klipper_cfg + 9, sizeof klipper_cfg - 9, &l, &err),
                     ST_ERR_PROTO);
    assert_int_equal(st_cdc_parse_config(klipper_cfg, 4, &l, &err), ST_ERR_PROTO);
    assert_int_equal(st_cdc_parse_config(NULL, 0, &l, &err), ST_ERR_PROTO);
    /* the data interface has interrupt endpoints only */
    memcpy(b, klipper_cfg, sizeof b);
    b[sizeof b - 11] = 0x03;
    assert_int_equal(st_cdc_parse_config(b, sizeof b, &l, &err), ST_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "bulk"));
}

static void test_parse_random(void **state)
{
    /* Random mutations of a good descriptor: a clean answer every time, and any layout
     * returned points at endpoints that exist in the bytes. */
    srand(4242);
    uint8_t b[sizeof klipper_cfg];
    int ok = 0;
    for (int i = 0; i < 20000; i++) {
        memcpy(b, klipper_cfg, sizeof b);
        int flips = 1 + rand() % 4;
        for (int k = 0; k < flips; k++)
            b[rand() % (int)sizeof b] = (uint8_t)rand();
        size_t len = (size_t)(rand() % 8 == 0 ? rand() % (int)sizeof b : (int)sizeof b);
        st_cdc_layout l;
        int rc = st_cdc_parse_config(b, len, &l, NULL);
        assert_true(rc == 0 || rc == ST_ERR_PROTO || rc == ST_ERR_UNSUPPORTED);
        if (rc == 0) {
            ok++;
            assert_true(l.ep_in & 0x80);
            assert_false(l.ep_out & 0x80);
            assert_non_null(memchr(b, l.ep_in, len));
        }
    }
    assert_true(ok > 0);
}

/* ---- backends that answer "no data" their own way ---- */

/* A scripted USB backend: bulk IN answers "nothing" (0 at once like a NAK-reporting
 * backend, or ST_ERR_TIMEOUT after the slice like libusb) until ready_at, then "data". */
typedef struct nak_dev {
    st_usb_dev base;
    int libusb_like;
    uint64_t ready_at;
    int in_calls, ctrl_calls;
    uint8_t last_ctrl[8];
} nak_dev;

typedef struct nak_host {
    st_usb_host base;
    nak_dev *dev;
} nak_host;

static int nak_control(st_usb_dev *d, const st_usb_setup *su, uint8_t *data, unsigned t,
                       st_err *err)
{
    nak_dev *n = (nak_dev *)d;
    n->ctrl_calls++;
    if (su->bRequest == 0x20 && su->wLength >= 7)
        memcpy(n->last_ctrl, data, 7);
    return 0;
}

static int nak_config(st_usb_dev *d, uint8_t *buf, size_t cap, st_err *err)
{
    size_t n = sizeof klipper_cfg < cap ? sizeof klipper_cfg : cap;
    memcpy(buf, klipper_cfg, n);
    return (int)n;
}

static int nak_claim(st_usb_dev *d, int iface, st_err *err)
{
    return 0;
}

static int nak_bulk(st_usb_dev *d, uint8_t ep, uint8_t *data, size_t len, unsigned t,
                    st_err *err)
{
    nak_dev *n = (nak_dev *)d;
    if (!(ep & 0x80))
        return (int)len;
    n->in_calls++;
    assert_true(t > 0); /* 0 would mean "forever" to libusb */
    if (st_now_us() >= n->ready_at) {
        memcpy(data, "data", 4);
        return 4;
    }
    if (!n->libusb_like)
        return 0;
    uint64_t until = st_now_us() + (uint64_t)t * 1000;
    if (until > n->ready_at)
        until = n->ready_at;
    st_sleep_us(until - st_now_us());
    if (st_now_us() >= n->ready_at) {
        memcpy(data, "data", 4);
        return 4;
    }
    return st_err_set(err, ST_ERR_TIMEOUT, "bulk endpoint 0x%02x: timed out", ep);
}

static void nak_close(st_usb_dev *d)
{
}

static const st_usb_dev_ops nak_dev_ops = {
    .control = nak_control, .config_descriptor = nak_config, .claim_interface = nak_claim,
    .bulk = nak_bulk, .close = nak_close,
};

static int nak_open(st_usb_host *h, const st_usb_dev_info *info, st_usb_dev **out, st_err *err)
{
    *out = &((nak_host *)h)->dev->base;
    return 0;
}

static const st_usb_host_ops nak_host_ops = {.open = nak_open};

static void run_nak(int libusb_like)
{
    nak_dev dev = {.base = {.ops = &nak_dev_ops}, .libusb_like = libusb_like};
    nak_host host = {.base = {.ops = &nak_host_ops}, .dev = &dev};
    st_usb_dev_info want = {.vid = 1};
    st_stream *s = NULL;
    st_err err;
    dev.ready_at = UINT64_MAX;
    assert_int_equal(st_stream_cdc_open(&host.base, &want, &l250k, &s, &err), 0);
    assert_int_equal(dev.last_ctrl[0] | dev.last_ctrl[1] << 8 | dev.last_ctrl[2] << 16, 250000);
    uint8_t b[16];
    /* nothing within 100 ms: 0, and not by spinning on the backend */
    uint64_t t0 = st_now_us();
    st_err_clear(&err);
    assert_int_equal(st_stream_read(s, b, sizeof b, 100, &err), 0);
    assert_true(st_now_us() - t0 >= 100000);
    assert_int_equal(err.code, 0);
    assert_true(dev.in_calls < 1000);
    /* data that turns up 30 ms into a 1 s read arrives promptly */
    dev.in_calls = 0;
    t0 = st_now_us();
    dev.ready_at = t0 + 30000;
    assert_int_equal(st_stream_read(s, b, sizeof b, 1000, &err), 4);
    assert_memory_equal(b, "data", 4);
    uint64_t took = st_now_us() - t0;
    assert_true(took >= 30000 && took < 200000);
    st_stream_close(s);
}

static void test_nak_polling_backend(void **state)
{
    run_nak(0);
}

static void test_timeout_reporting_backend(void **state)
{
    run_nak(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_latency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_and_modem_reach_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_without_line_keeps_coding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_id, setup, teardown),
        cmocka_unit_test(test_touch_1200_fires_once),
        cmocka_unit_test(test_touch_1200_unit_drops_off),
        cmocka_unit_test(test_uart_request_over_cdc),
        cmocka_unit_test(test_not_cdc),
        cmocka_unit_test(test_nak_polling_backend),
        cmocka_unit_test(test_timeout_reporting_backend),
        cmocka_unit_test(test_parse_klipper_layout),
        cmocka_unit_test(test_parse_composite_union),
        cmocka_unit_test(test_parse_hostile),
        cmocka_unit_test(test_parse_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
