/* Tests for serial_ports: the sysfs tty lookup on a fake tree built in a temp directory
 * (found, wrong ids, missing, appearing late, re-enumerating with a new id), the UART
 * bootloader request reaching a Klipper application model, and both serial hosts: the tty
 * host on a real pty behind a fake sysfs, the USB host over the in-memory bus through a
 * full 1200-baud touch and re-enumeration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protocols/link/serial_ports.h"
#include "protocols/link/stream_cdc.h"
#include "protocols/link/usb_model.h"
#include "protocols/sim/cdc_acm.h"
#include "protocols/sim/klipper_app.h"
#include "station/core/clock.h"
#include "station/core/text.h"

/* ---- fake sysfs ---- */

typedef struct tree {
    char root[256];
} tree;

static void mkdirs(const char *path)
{
    char p[512];
    snprintf(p, sizeof p, "%s", path);
    for (char *c = p + 1; *c; c++) {
        if (*c == '/') {
            *c = '\0';
            mkdir(p, 0755);
            *c = '/';
        }
    }
    mkdir(p, 0755);
}

static void put(const char *root, const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/bus/usb/devices/%s", root, rel);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", p);
    *strrchr(dir, '/') = '\0';
    mkdirs(dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void dir(const char *root, const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/bus/usb/devices/%s", root, rel);
    mkdirs(p);
}

/* A USB device at port with the given id and, when tty is non-NULL, a cdc_acm tty on
 * interface 0 ("tty" sub-directory) or a usb-serial ttyUSB straight under it. */
static void add_device(const char *root, const char *port, const char *vid, const char *pid,
                       const char *tty)
{
    char rel[256], text[16];
    snprintf(rel, sizeof rel, "%s/idVendor", port);
    snprintf(text, sizeof text, "%s\n", vid);
    put(root, rel, text);
    snprintf(rel, sizeof rel, "%s/idProduct", port);
    snprintf(text, sizeof text, "%s\n", pid);
    put(root, rel, text);
    snprintf(rel, sizeof rel, "%s:1.1", port); /* data interface: no tty */
    dir(root, rel);
    if (!tty)
        return;
    if (strncmp(tty, "ttyUSB", 6) == 0)
        snprintf(rel, sizeof rel, "%s:1.0/%s", port, tty);
    else
        snprintf(rel, sizeof rel, "%s:1.0/tty/%s", port, tty);
    dir(root, rel);
}

static void rm_rf(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static int tree_setup(void **state)
{
    tree *t = calloc(1, sizeof *t);
    assert_non_null(t);
    snprintf(t->root, sizeof t->root, "%s/st-sysfs-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(t->root));
    dir(t->root, "");
    add_device(t->root, "1-1.2", "1d50", "614e", "ttyACM3");
    /* a child behind a hub on 1-1.2: its interfaces share the prefix "1-1.2" */
    add_device(t->root, "1-1.2.1", "1d50", "614e", "ttyACM9");
    add_device(t->root, "1-1.3", "0403", "6001", "ttyUSB0");
    add_device(t->root, "1-1.5", "1d50", "6177", NULL);
    *state = t;
    return 0;
}

static int tree_teardown(void **state)
{
    tree *t = *state;
    rm_rf(t->root);
    free(t);
    return 0;
}

static void test_find_acm(void **state)
{
    tree *t = *state;
    st_serial_port p;
    st_err err;
    assert_int_equal(st_serial_port_find(t->root, NULL, "1-1.2", 0x1d50, 0x614e, &p, &err), 0);
    assert_string_equal(p.tty, "ttyACM3");
    assert_string_equal(p.dev_path, "/dev/ttyACM3");
    assert_int_equal(p.vid, 0x1d50);
    assert_int_equal(p.pid, 0x614e);
    assert_int_equal(p.iface, 0);
    /* any id */
    assert_int_equal(st_serial_port_find(t->root, "/x/dev", "1-1.2.1", 0, 0, &p, &err), 0);
    assert_string_equal(p.dev_path, "/x/dev/ttyACM9");
}

static void test_find_ttyusb(void **state)
{
    tree *t = *state;
    st_serial_port p;
    st_err err;
    assert_int_equal(st_serial_port_find(t->root, NULL, "1-1.3", 0x0403, 0x6001, &p, &err), 0);
    assert_string_equal(p.dev_path, "/dev/ttyUSB0");
}

static void test_find_wrong_ids(void **state)
{
    tree *t = *state;
    st_serial_port p;
    st_err err;
    assert_int_equal(st_serial_port_find(t->root, NULL, "1-1.2", 0x1d50, 0x6177, &p, &err),
                     ST_ERR_MISMATCH);
    assert_non_null(strstr(err.msg, "1-1.2"));
    assert_non_null(strstr(err.msg, "1d50:614e"));
    assert_non_null(strstr(err.msg, "expected 1d50:6177"));
    assert_int_equal(st_serial_port_find(t->root, NULL, "1-1.2", 0x0483, 0, &p, &err),
                     ST_ERR_MISMATCH);
    assert_non_null(strstr(err.msg, "expected 0483:*"));
}

static void test_find_missing(void **state)
{
    tree *t = *state;
    st_serial_port p;
    st_err err;
    assert_int_equal(st_serial_port_find(t->root, NULL, "1-4", 0x1d50, 0x6177, &p, &err),
                     ST_ERR_NOTFOUND);
    assert_non_null(strstr(err.msg, "no USB device at port 1-4"));
    assert_non_null(strstr(err.msg, "1d50:6177"));
    /* there, but without a tty */
    assert_int_equal(st_serial_port_find(t->root, NULL, "1-1.5", 0x1d50, 0x6177, &p, &err),
                     ST_ERR_NOTFOUND);
    assert_non_null(strstr(err.msg, "no tty"));
    assert_non_null(strstr(err.msg, "1-1.5"));
    /* ids unreadable: still enumerating */
    put(t->root, "2-1/idVendor", "zz\n");
    assert_int_equal(st_serial_port_find(t->root, NULL, "2-1", 0, 0, &p, &err),
                     ST_ERR_NOTFOUND);
    assert_non_null(strstr(err.msg, "idVendor"));
}

static void test_find_bad_input(void **state)
{
    tree *t = *state;
    st_serial_port p;
    st_err err;
    const char *bad[] = {"", "../../etc", "1-1/..", "1-1:1.0", "usb1", "1-1.2 "};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(st_serial_port_find(t->root, NULL, bad[i], 0, 0, &p, &err),
                         ST_ERR_INVAL);
    assert_int_equal(st_serial_port_find(t->root, NULL, NULL, 0, 0, &p, &err), ST_ERR_INVAL);
    /* a tty name that would escape /dev is not believed */
    dir(t->root, "2-2:1.0/tty/..x");
    put(t->root, "2-2/idVendor", "1d50\n");
    put(t->root, "2-2/idProduct", "614e\n");
    assert_int_equal(st_serial_port_find(t->root, NULL, "2-2", 0, 0, &p, &err),
                     ST_ERR_NOTFOUND);
}

/* A change to the fake sysfs that happens at a moment of the test's virtual clock (an alarm):
 * no thread, no sleep, and the wait sees it exactly when it polls past that moment. */
typedef struct later {
    const char *root;
    int mode; /* 0: a new device appears; 1: 1-1.2 re-enumerates as Katapult */
    uint64_t fired_at;
} later;

static void later_fire(void *arg, uint64_t now_us)
{
    later *l = arg;
    l->fired_at = now_us;
    if (l->mode == 0) {
        add_device(l->root, "1-7", "1d50", "6177", "ttyACM5");
    } else {
        char p[512];
        snprintf(p, sizeof p, "%s/bus/usb/devices/1-1.2", l->root);
        rm_rf(p);
        snprintf(p, sizeof p, "%s/bus/usb/devices/1-1.2:1.0", l->root);
        rm_rf(p);
        snprintf(p, sizeof p, "%s/bus/usb/devices/1-1.2:1.1", l->root);
        rm_rf(p);
        add_device(l->root, "1-1.2", "1d50", "6177", "ttyACM4");
    }
}

static void test_wait_appears(void **state)
{
    tree *t = *state;
    st_clock *clk = st_clock_virtual_new(5000000);
    later l = {t->root, 0, 0};
    uint64_t t0 = st_clock_now_us(clk);
    assert_int_equal(st_clock_virtual_at(clk, t0 + 150000, later_fire, &l), 0);
    st_serial_port p;
    st_err err;
    int rc = st_serial_port_wait(t->root, NULL, "1-7", 0x1d50, 0x6177, 3000, clk, &p, &err);
    assert_int_equal(rc, 0);
    assert_string_equal(p.tty, "ttyACM5");
    assert_int_equal(l.fired_at, t0 + 150000);
    /* Found at the first poll after it appeared (polls are 20 ms apart). */
    uint64_t us = st_clock_now_us(clk) - t0;
    assert_true(us >= 150000);
    assert_true(us <= 170000);
    st_clock_virtual_free(clk);
}

static void test_wait_reenumerates(void **state)
{
    tree *t = *state;
    st_clock *clk = st_clock_virtual_new(0);
    later l = {t->root, 1, 0};
    assert_int_equal(st_clock_virtual_at(clk, 120000, later_fire, &l), 0);
    st_serial_port p;
    st_err err;
    int rc = st_serial_port_wait(t->root, NULL, "1-1.2", 0x1d50, 0x6177, 3000, clk, &p, &err);
    assert_int_equal(rc, 0);
    assert_string_equal(p.tty, "ttyACM4");
    assert_int_equal(p.pid, 0x6177);
    assert_int_equal(l.fired_at, 120000);
    st_clock_virtual_free(clk);
}

static void test_wait_timeout(void **state)
{
    tree *t = *state;
    st_serial_port p;
    st_err err;
    st_clock *clk = st_clock_virtual_new(0);
    assert_int_equal(st_serial_port_wait(t->root, NULL, "1-1.2", 0x1d50, 0x6177, 100, clk, &p,
                                         &err),
                     ST_ERR_MISMATCH);
    assert_int_equal(st_clock_now_us(clk), 100000); /* gave up exactly at the deadline */
    assert_non_null(strstr(err.msg, "after 100 ms"));
    assert_non_null(strstr(err.msg, "1d50:614e"));
    assert_int_equal(st_serial_port_wait(t->root, NULL, "1-9", 0, 0, 50, clk, &p, &err),
                     ST_ERR_NOTFOUND);
    assert_int_equal(st_clock_now_us(clk), 150000);
    /* Without a buffer the code is the same. */
    assert_int_equal(st_serial_port_wait(t->root, NULL, "1-9", 0, 0, 50, clk, &p, NULL),
                     ST_ERR_NOTFOUND);
    st_clock_virtual_free(clk);
}

/* ---- tty serial host on a pty ---- */

static void test_tty_host_pty(void **state)
{
    tree *t = *state;
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    const char *slave = ptsname(master);
    assert_non_null(slave);
    char devdir[300], link[400];
    snprintf(devdir, sizeof devdir, "%s/dev", t->root);
    mkdirs(devdir);
    snprintf(link, sizeof link, "%s/ttyACM3", devdir);
    assert_int_equal(symlink(slave, link), 0);

    st_serial_host *h = NULL;
    st_err err;
    assert_int_equal(st_serial_host_tty_new_at(t->root, devdir, &h, &err), 0);
    st_stream_line l = {115200, 8, 'N', 1, 0};
    st_stream *s = NULL;
    assert_int_equal(st_serial_host_open(h, "1-1.2", 0x1d50, 0x614e, &l, 500, &s, &err), 0);
    assert_int_equal(st_stream_write(s, (const uint8_t *)"abc", 3, 500, &err), 3);
    char got[8] = {0};
    size_t n = 0;
    st_deadline d = st_deadline_in_ms(1000);
    while (n < 3 && !st_deadline_passed(d)) {
        struct pollfd pf = {master, POLLIN, 0};
        if (poll(&pf, 1, 100) > 0) {
            ssize_t r = read(master, got + n, 3 - n);
            if (r > 0)
                n += (size_t)r;
        }
    }
    assert_string_equal(got, "abc");
    st_stream_close(s);

    /* sysfs names a tty whose node never appears: a clear error after the deadline */
    add_device(t->root, "1-8", "1d50", "6177", "ttyACM7");
    uint64_t t0 = st_now_us();
    assert_int_equal(st_serial_host_open(h, "1-8", 0x1d50, 0x6177, &l, 150, &s, &err),
                     ST_ERR_NOTFOUND);
    assert_true(st_now_us() - t0 >= 140000);
    assert_non_null(strstr(err.msg, "ttyACM7"));
    assert_non_null(strstr(err.msg, "1-8"));
    /* the wrong unit at the port */
    assert_int_equal(st_serial_host_open(h, "1-1.2", 0x1d50, 0x6177, &l, 50, &s, &err),
                     ST_ERR_MISMATCH);
    st_serial_host_free(h);
    close(master);
}

/* ---- the UART request on an in-memory stream ---- */

static void count_hook(void *p)
{
    (*(int *)p)++;
}

static void test_uart_request(void **state)
{
    int fired = 0;
    st_klipper_app *app = st_klipper_app_new(count_hook, &fired);
    st_stream *s;
    assert_int_equal(st_stream_mem_open(st_klipper_app_stream(app), "mem:klipper", &s, NULL), 0);
    /* other traffic first: the request still stands out as its own block */
    assert_int_equal(st_stream_write(s, (const uint8_t *)"\x7e\x01\x02", 3, 100, NULL), 3);
    assert_int_equal(fired, 0);
    st_err err;
    assert_int_equal(st_serial_request_bootloader_uart(s, &err), 0);
    assert_int_equal(fired, 1);
    st_stream_close(s);
    st_klipper_app_free(app);
}

/* ---- USB serial host over the in-memory bus: touch, re-enumerate, talk ---- */

typedef struct echo_model {
    st_stream_model base;
    uint8_t buf[1024];
    size_t len;
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
    memcpy(buf, m->buf, n);
    memmove(m->buf, m->buf + n, m->len - n);
    m->len -= n;
    return n;
}

static uint64_t echo_next(st_stream_model *b)
{
    return UINT64_MAX;
}

static const st_stream_model_ops echo_ops = {.rx = echo_rx, .tx = echo_tx,
                                             .next_event_us = echo_next};

typedef struct unit {
    st_vusb_bus *bus;
    st_cdc_acm *app_usb, *boot_usb;
    int fired;
} unit;

static void reboot_hook(void *p)
{
    unit *u = p;
    u->fired++;
    st_vusb_detach(u->bus, "1-1.2"); /* the application drops off the bus */
}

/* Alarm: the bootloader enumerates a moment after the application dropped off. */
static void attach_boot(void *p, uint64_t now_us)
{
    unit *u = p;
    st_vusb_attach(u->bus, "1-1.2", st_cdc_acm_usb(u->boot_usb), NULL);
}

static void test_usb_host_touch_and_reopen(void **state)
{
    unit u = {0};
    u.bus = st_vusb_bus_new();
    st_klipper_app *app = st_klipper_app_new(reboot_hook, &u);
    echo_model boot = {.base = {&echo_ops}};
    st_cdc_identity app_id = {0x1d50, 0x614e, 0x0100, "Klipper", "stm32g431xx", "A1"};
    st_cdc_identity boot_id = {0x1d50, 0x6177, 0x0100, "katapult", "stm32g431xx", "A1"};
    u.app_usb = st_cdc_acm_new(&app_id, st_klipper_app_stream(app));
    u.boot_usb = st_cdc_acm_new(&boot_id, &boot.base);
    assert_int_equal(st_vusb_attach(u.bus, "1-1.2", st_cdc_acm_usb(u.app_usb), NULL), 0);
    st_usb_host *usb;
    assert_int_equal(st_usb_host_mem_new(u.bus, NULL, &usb, NULL), 0);
    st_serial_host *h;
    st_err err;
    assert_int_equal(st_serial_host_usb_new(usb, &h, &err), 0);
    st_clock *clk = st_clock_virtual_new(0); /* every wait below runs in virtual time */
    st_serial_host_set_clock(h, clk);

    st_stream_line l = {250000, 8, 'N', 1, 0};
    st_stream *s = NULL;
    /* nothing at another port */
    assert_int_equal(st_serial_host_open(h, "1-1.4", 0x1d50, 0x614e, &l, 50, &s, &err),
                     ST_ERR_NOTFOUND);
    /* the application is there, not the bootloader: the message says both */
    assert_int_equal(st_serial_host_open(h, "1-1.2", 0x1d50, 0x6177, &l, 50, &s, &err),
                     ST_ERR_MISMATCH);
    assert_non_null(strstr(err.msg, "1d50:614e"));
    assert_non_null(strstr(err.msg, "expected 1d50:6177"));

    assert_int_equal(st_serial_host_open(h, "1-1.2", 0x1d50, 0x614e, &l, 500, &s, &err), 0);
    assert_int_equal(st_serial_touch_1200(s, &err), 0);
    assert_int_equal(u.fired, 1);
    st_stream_close(s);

    uint64_t t0 = st_clock_now_us(clk);
    assert_int_equal(st_clock_virtual_at(clk, t0 + 150000, attach_boot, &u), 0);
    int rc = st_serial_host_open(h, "1-1.2", 0x1d50, 0x6177, &l, 3000, &s, &err);
    assert_int_equal(rc, 0);
    assert_true(st_clock_now_us(clk) - t0 >= 150000);
    assert_true(st_clock_now_us(clk) - t0 <= 170000);
    uint8_t in[5];
    assert_int_equal(st_stream_write(s, (const uint8_t *)"hello", 5, 500, &err), 5);
    assert_int_equal(st_stream_read_exact(s, in, 5, 500, &err), 5);
    assert_memory_equal(in, "hello", 5);
    st_stream_close(s);
    assert_int_equal(u.fired, 1);

    st_serial_host_free(h);
    st_clock_virtual_free(clk);
    st_usb_host_free(usb);
    st_vusb_detach(u.bus, "1-1.2");
    st_cdc_acm_free(u.app_usb);
    st_cdc_acm_free(u.boot_usb);
    st_klipper_app_free(app);
    st_vusb_bus_free(u.bus);
}

static void test_host_bad_args(void **state)
{
    st_err err;
    st_serial_host *h = NULL;
    assert_int_equal(st_serial_host_usb_new(NULL, &h, &err), ST_ERR_INVAL);
    assert_int_equal(st_serial_host_tty_new("/nonexistent-sysfs", &h, &err), 0);
    st_stream *s = NULL;
    assert_int_equal(st_serial_host_open(h, NULL, 0, 0, NULL, 10, &s, &err), ST_ERR_INVAL);
    assert_int_equal(st_serial_host_open(h, "1-1", 0, 0, NULL, 10, &s, &err), ST_ERR_NOTFOUND);
    assert_non_null(strstr(err.msg, "1-1"));
    st_serial_host_free(h);
    st_serial_host_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_find_acm, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_find_ttyusb, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_find_wrong_ids, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_find_missing, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_find_bad_input, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_wait_appears, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_wait_reenumerates, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_wait_timeout, tree_setup, tree_teardown),
        cmocka_unit_test_setup_teardown(test_tty_host_pty, tree_setup, tree_teardown),
        cmocka_unit_test(test_uart_request),
        cmocka_unit_test(test_usb_host_touch_and_reopen),
        cmocka_unit_test(test_host_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
