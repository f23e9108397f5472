/* Tests for the pty server: a real pty on this machine, a client opening and closing the
 * slave like stm32flash or flashtool.py would, against a small upper-casing echo model. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>

#include "protocols/link/pty_server.h"
#include "station/core/clock.h"
#include "station/core/testutil.h"

typedef struct upper_model {
    st_stream_model base;
    uint8_t out[256];
    size_t n;
    uint64_t ready_at;   /* output held until then (a device's answer latency) */
    uint32_t delay_us;
    unsigned lines;
    st_stream_line last;
    int last_dtr;
} upper_model;

static void um_rx(st_stream_model *m, const uint8_t *buf, size_t n, uint64_t now_us)
{
    upper_model *u = (upper_model *)m;
    for (size_t i = 0; i < n && u->n < sizeof(u->out); i++) {
        uint8_t c = buf[i];
        u->out[u->n++] = (c >= 'a' && c <= 'z') ? (uint8_t)(c - 32) : c;
    }
    u->ready_at = now_us + u->delay_us;
}

static size_t um_tx(st_stream_model *m, uint8_t *buf, size_t cap, uint64_t now_us)
{
    upper_model *u = (upper_model *)m;
    if (!u->n || now_us < u->ready_at)
        return 0;
    size_t k = u->n < cap ? u->n : cap;
    memcpy(buf, u->out, k);
    memmove(u->out, u->out + k, u->n - k);
    u->n -= k;
    return k;
}

static uint64_t um_next(st_stream_model *m)
{
    upper_model *u = (upper_model *)m;
    return u->n ? u->ready_at : UINT64_MAX;
}

static void um_line(st_stream_model *m, const st_stream_line *l, int dtr, int rts)
{
    upper_model *u = (upper_model *)m;
    u->lines++;
    u->last = *l;
    u->last_dtr = dtr;
}

static const st_stream_model_ops um_ops = {um_rx, um_tx, um_next, um_line, NULL};

static int open_client(const char *path, speed_t sp)
{
    int fd = open(path, O_RDWR | O_NOCTTY);
    assert_true(fd >= 0);
    struct termios t;
    assert_int_equal(tcgetattr(fd, &t), 0);
    cfmakeraw(&t);
    cfsetispeed(&t, sp);
    cfsetospeed(&t, sp);
    assert_int_equal(tcsetattr(fd, TCSANOW, &t), 0);
    return fd;
}

/* Read until n bytes or the deadline, running the server meanwhile. */
static size_t client_read(st_pty_server *s, int fd, char *buf, size_t n, unsigned ms)
{
    st_deadline d = st_deadline_in_ms(ms);
    size_t got = 0;
    while (got < n && !st_deadline_passed(d)) {
        assert_int_equal(st_pty_server_run(s, 5, NULL), 0);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
            ssize_t r = read(fd, buf + got, n - got);
            if (r > 0)
                got += (size_t)r;
        }
    }
    return got;
}

static void test_echo_and_line_settings(void **state)
{
    (void)state;
    upper_model m = {.base.ops = &um_ops};
    st_pty_server *s;
    assert_int_equal(st_pty_server_new(&m.base, NULL, &s, NULL), 0);
    assert_non_null(strstr(st_pty_server_path(s), "/dev/pts/"));
    assert_int_equal(st_pty_server_run(s, 20, NULL), 0);
    st_pty_stats st;
    st_pty_server_stats(s, &st);
    assert_false(st.connected); /* the server keeps no slave fd of its own */

    int c = open_client(st_pty_server_path(s), B57600);
    assert_int_equal(write(c, "hello", 5), 5);
    char buf[16] = {0};
    assert_int_equal(client_read(s, c, buf, 5, 2000), 5);
    assert_string_equal(buf, "HELLO");
    assert_true(m.lines >= 1);
    assert_int_equal(m.last.baud, 57600);
    assert_int_equal(m.last.data_bits, 8);
    assert_int_equal(m.last_dtr, -1);

    /* The 1200-baud touch a Klipper host does: the model must hear of it. */
    struct termios t;
    tcgetattr(c, &t);
    cfsetospeed(&t, B1200);
    cfsetispeed(&t, B1200);
    tcsetattr(c, TCSANOW, &t);
    assert_int_equal(st_pty_server_run(s, 20, NULL), 0);
    assert_int_equal(m.last.baud, 1200);
    unsigned lines = m.lines;
    assert_int_equal(st_pty_server_run(s, 20, NULL), 0);
    assert_int_equal(m.lines, lines); /* no change, no call */
    st_pty_server_stats(s, &st);
    assert_true(st.connected);
    assert_int_equal(st.rx_bytes, 5);
    assert_int_equal(st.tx_bytes, 5);
    close(c);
    st_pty_server_free(s);
}

/* Client closes: the server keeps serving (EIO is not an error), drops what the model
 * says meanwhile, and the next client gets a clean port. */
static void test_reconnect_drops_output_while_closed(void **state)
{
    (void)state;
    upper_model m = {.base.ops = &um_ops};
    st_pty_server *s;
    assert_int_equal(st_pty_server_new(&m.base, NULL, &s, NULL), 0);
    int c = open_client(st_pty_server_path(s), B115200);
    assert_int_equal(write(c, "ab", 2), 2);
    char buf[16] = {0};
    assert_int_equal(client_read(s, c, buf, 2, 2000), 2);
    close(c);
    assert_int_equal(st_pty_server_run(s, 30, NULL), 0);
    st_pty_stats st;
    st_pty_server_stats(s, &st);
    assert_false(st.connected);
    assert_int_equal(st_pty_server_timeout_ms(s), 10);
    /* The model talks to nobody. */
    um_rx(&m.base, (const uint8_t *)"zz", 2, st_now_us());
    assert_int_equal(st_pty_server_run(s, 30, NULL), 0);
    st_pty_server_stats(s, &st);
    assert_int_equal(st.dropped, 2);
    c = open_client(st_pty_server_path(s), B115200);
    assert_int_equal(write(c, "q", 1), 1);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(client_read(s, c, buf, 4, 300), 1);
    assert_string_equal(buf, "Q");
    close(c);
    st_pty_server_free(s);
}

/* A model answering after a delay: the server's timeout follows the model's next event
 * and the answer comes neither early nor much late. */
static void test_model_deadline(void **state)
{
    (void)state;
    upper_model m = {.base.ops = &um_ops, .delay_us = 50000};
    st_pty_server *s;
    assert_int_equal(st_pty_server_new(&m.base, NULL, &s, NULL), 0);
    int c = open_client(st_pty_server_path(s), B115200);
    uint64_t t0 = st_now_us();
    assert_int_equal(write(c, "x", 1), 1);
    assert_int_equal(st_pty_server_run(s, 10, NULL), 0);
    int t = st_pty_server_timeout_ms(s);
    assert_true(t > 20 && t <= 50);
    char b = 0;
    assert_int_equal(client_read(s, c, &b, 1, 2000), 1);
    uint64_t took = st_now_us() - t0;
    assert_int_equal(b, 'X');
    assert_true(took >= 50000);
    assert_true(took < 400000);
    close(c);
    st_pty_server_free(s);
}

static void test_symlink(void **state)
{
    (void)state;
    upper_model m = {.base.ops = &um_ops};
    st_pty_server *s;
    assert_int_equal(st_pty_server_new(&m.base, NULL, &s, NULL), 0);
    char dir[128], link[160];
    assert_non_null(mkdtemp(st_test_tmpl(dir, sizeof dir, "test_pty_server")));
    snprintf(link, sizeof(link), "%s/link", dir);
    assert_int_equal(st_pty_server_symlink(s, link, NULL), 0);
    char target[64] = {0};
    assert_true(readlink(link, target, sizeof(target) - 1) > 0);
    assert_string_equal(target, st_pty_server_path(s));
    st_pty_server_free(s);
    assert_int_equal(access(link, F_OK), -1); /* removed with the server */
    assert_int_equal(rmdir(dir), 0);
    st_err e = {0};
    assert_int_equal(st_pty_server_new(&m.base, NULL, &s, NULL), 0);
    assert_true(st_pty_server_symlink(s, "/nonexistent-dir/x", &e) < 0);
    assert_non_null(strstr(e.msg, "/nonexistent-dir/x"));
    st_pty_server_free(s);
}

/* st_pty_server_run wakes before an answer is due (its timers fire late on a busy host)
 * and holds the answer until then: never early, and every answer counted. A lower bound
 * only; how punctual is measured by the benchmark (bench_paths, UART), not asserted. */
static void test_answers_held_until_due(void **state)
{
    (void)state;
    upper_model m = {.base.ops = &um_ops, .delay_us = 3000};
    st_pty_server *s;
    assert_int_equal(st_pty_server_new(&m.base, NULL, &s, NULL), 0);
    int c = open_client(st_pty_server_path(s), B115200);
    assert_int_equal(st_pty_server_run(s, 5, NULL), 0);
    for (int i = 0; i < 20; i++) {
        uint64_t t0 = st_now_us();
        char q = (char)('a' + i), b = 0;
        assert_int_equal(write(c, &q, 1), 1);
        assert_int_equal(client_read(s, c, &b, 1, 2000), 1);
        assert_int_equal(b, q - 32);
        assert_true(st_now_us() - t0 >= 3000);
    }
    st_pty_stats st;
    st_pty_server_stats(s, &st);
    assert_int_equal(st.answers, 20);
    assert_true(st.early_wakes <= 20);
    close(c);
    st_pty_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_and_line_settings),
        cmocka_unit_test(test_reconnect_drops_output_while_closed),
        cmocka_unit_test(test_model_deadline),
        cmocka_unit_test(test_symlink),
        cmocka_unit_test(test_answers_held_until_due),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
