/* Tests for the byte-stream backends: the in-memory stream against a delayed-echo model
 * and the termios backend on a real pty (posix_openpt). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "protocols/link/stream.h"
#include "station/core/clock.h"

/* A model that echoes what it receives, delay_us later. */
typedef struct echo_model {
    st_stream_model base;
    uint64_t delay_us;
    uint8_t buf[256];
    size_t len;
    uint64_t ready_at;
    st_stream_line line;
    int have_line, dtr, rts, line_calls, breaks;
} echo_model;

static void echo_rx(st_stream_model *b, const uint8_t *buf, size_t n, uint64_t now)
{
    echo_model *m = (echo_model *)b;
    memcpy(m->buf + m->len, buf, n);
    m->len += n;
    m->ready_at = now + m->delay_us;
}

static size_t echo_tx(st_stream_model *b, uint8_t *buf, size_t cap, uint64_t now)
{
    echo_model *m = (echo_model *)b;
    if (!m->len || now < m->ready_at)
        return 0;
    size_t n = m->len < cap ? m->len : cap;
    memcpy(buf, m->buf, n);
    memmove(m->buf, m->buf + n, m->len - n);
    m->len -= n;
    return n;
}

static uint64_t echo_next(st_stream_model *b)
{
    echo_model *m = (echo_model *)b;
    return m->len ? m->ready_at : UINT64_MAX;
}

static void echo_line(st_stream_model *b, const st_stream_line *line, int dtr, int rts)
{
    echo_model *m = (echo_model *)b;
    m->line_calls++;
    if (line) {
        m->line = *line;
        m->have_line = 1;
    }
    m->dtr = dtr;
    m->rts = rts;
}

static void echo_brk(st_stream_model *b, uint64_t now)
{
    echo_model *m = (echo_model *)b;
    (void)now;
    m->breaks++;
}

static const st_stream_model_ops echo_ops = {echo_rx, echo_tx, echo_next, echo_line, echo_brk};

static void test_mem_delayed_answer(void **state)
{
    echo_model m = {.base.ops = &echo_ops, .delay_us = 30000};
    st_stream *s;
    st_err err;
    assert_int_equal(st_stream_mem_open(&m.base, "mem:echo", &s, &err), 0);
    assert_string_equal(s->name, "mem:echo");
    /* The model's delay runs from the write: measure from before it (under emulation the
     * write itself can take milliseconds). */
    uint64_t t0 = st_now_us();
    assert_int_equal(st_stream_write(s, (const uint8_t *)"abc", 3, 100, &err), 3);
    uint8_t buf[8];
    /* Too short a timeout: nothing yet. */
    assert_int_equal(st_stream_read(s, buf, sizeof buf, 5, &err), 0);
    assert_int_equal(st_stream_read_exact(s, buf, 3, 500, &err), 3);
    uint64_t took = st_now_us() - t0;
    assert_memory_equal(buf, "abc", 3);
    assert_true(took >= 29000);  /* waited for the model's event ... */
    assert_true(took < 400000);  /* ... not for the whole timeout */
    st_stream_close(s);
}

static void test_mem_timeout_and_flush(void **state)
{
    echo_model m = {.base.ops = &echo_ops, .delay_us = 0};
    st_stream *s;
    st_err err;
    assert_int_equal(st_stream_mem_open(&m.base, NULL, &s, &err), 0);
    uint8_t buf[8];
    uint64_t t0 = st_now_us();
    assert_int_equal(st_stream_read(s, buf, sizeof buf, 40, &err), 0);
    uint64_t took = st_now_us() - t0;
    assert_true(took >= 39000 && took < 300000);
    assert_int_equal(st_stream_write(s, (const uint8_t *)"xyz", 3, 100, &err), 3);
    assert_int_equal(st_stream_flush_input(s, &err), 0);
    assert_int_equal(st_stream_read(s, buf, sizeof buf, 10, &err), 0);
    assert_int_equal(st_stream_read_exact(s, buf, 1, 20, &err), ST_ERR_TIMEOUT);
    assert_int_equal(err.code, ST_ERR_TIMEOUT);
    st_stream_close(s);
}

static void test_mem_line_forwarded(void **state)
{
    echo_model m = {.base.ops = &echo_ops};
    st_stream *s;
    st_err err;
    assert_int_equal(st_stream_mem_open(&m.base, "mem", &s, &err), 0);
    st_stream_line l = {1200, 8, 'N', 1, 0};
    assert_int_equal(st_stream_set_modem(s, 1, -1, &err), 0);
    assert_int_equal(m.dtr, 1);
    assert_int_equal(m.rts, -1);
    assert_int_equal(st_stream_set_line(s, &l, &err), 0);
    assert_true(m.have_line);
    assert_int_equal(m.line.baud, 1200);
    assert_int_equal(st_stream_set_modem(s, 0, 1, &err), 0);
    assert_int_equal(m.dtr, 0);
    assert_int_equal(m.rts, 1);
    assert_int_equal(m.line.baud, 1200);
    assert_int_equal(m.line_calls, 3);
    st_stream_close(s);
}

static void test_mem_open_rejects_null(void **state)
{
    st_stream *s;
    st_err err;
    assert_int_equal(st_stream_mem_open(NULL, "x", &s, &err), ST_ERR_INVAL);
}

/* pty helpers */
static int open_pty(char *slave, size_t cap)
{
    int fd = posix_openpt(O_RDWR | O_NOCTTY);
    assert_true(fd >= 0);
    assert_int_equal(grantpt(fd), 0);
    assert_int_equal(unlockpt(fd), 0);
    snprintf(slave, cap, "%s", ptsname(fd));
    return fd;
}

static void test_tty_pty_roundtrip(void **state)
{
    char path[128];
    int master = open_pty(path, sizeof path);
    st_stream_line l = {250000, 8, 'N', 1, 0};
    st_stream *s;
    st_err err;
    int rc = st_stream_tty_open(path, &l, &s, &err);
    if (rc != 0)
        fail_msg("open %s: %s", path, err.msg);
    assert_string_equal(s->name, path);
    assert_int_equal(write(master, "hello", 5), 5);
    uint8_t buf[16];
    assert_int_equal(st_stream_read_exact(s, buf, 5, 1000, &err), 5);
    assert_memory_equal(buf, "hello", 5);
    /* Binary data passes untouched in raw mode (no CR/LF mapping, no echo). */
    const uint8_t bin[] = {0x01, 0x88, 0x0d, 0x0a, 0x03, 0x11, 0x13, 0x7f, 0x00, 0xff};
    assert_int_equal(st_stream_write(s, bin, sizeof bin, 500, &err), (int)sizeof bin);
    size_t got = 0;
    st_deadline d = st_deadline_in_ms(1000);
    while (got < sizeof bin && !st_deadline_passed(d)) {
        struct pollfd p = {.fd = master, .events = POLLIN};
        if (poll(&p, 1, 50) > 0) {
            ssize_t r = read(master, buf + got, sizeof buf - got);
            if (r > 0)
                got += (size_t)r;
        }
    }
    assert_int_equal(got, sizeof bin);
    assert_memory_equal(buf, bin, sizeof bin);
    /* Nothing echoed back to us. */
    assert_int_equal(st_stream_read(s, buf, sizeof buf, 30, &err), 0);
    st_stream_close(s);
    close(master);
}

static void test_tty_read_timeout(void **state)
{
    char path[128];
    int master = open_pty(path, sizeof path);
    st_stream *s;
    st_err err;
    assert_int_equal(st_stream_tty_open(path, NULL, &s, &err), 0);
    uint8_t buf[4];
    uint64_t t0 = st_now_us();
    assert_int_equal(st_stream_read(s, buf, sizeof buf, 60, &err), 0);
    uint64_t took = st_now_us() - t0;
    assert_true(took >= 55000 && took < 500000);
    st_stream_close(s);
    close(master);
}

static void test_tty_pty_refuses_parity(void **state)
{
    char path[128];
    int master = open_pty(path, sizeof path);
    st_stream_line l = {115200, 8, 'E', 1, 0};
    st_stream *s;
    st_err err;
    int rc;
    assert_int_equal(st_stream_tty_open(path, &l, &s, &err), ST_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "cannot keep even parity"));
    /* The same device in 8N1 is fine, and switching to 8E1 later is refused too. */
    l.parity = 'N';
    assert_int_equal(st_stream_tty_open(path, &l, &s, &err), 0);
    l.parity = 'E';
    rc = st_stream_set_line(s, &l, &err);
    if (rc != ST_ERR_UNSUPPORTED)
        fail_msg("set_line 8E1: %d %s", rc, err.msg);
    l.parity = 'X';
    assert_int_equal(st_stream_set_line(s, &l, &err), ST_ERR_INVAL);
    st_stream_close(s);
    close(master);
}

static void test_tty_modem_and_flush(void **state)
{
    char path[128];
    int master = open_pty(path, sizeof path);
    st_stream *s;
    st_err err;
    assert_int_equal(st_stream_tty_open(path, NULL, &s, &err), 0);
    /* A pty has no modem lines: either it works or it says so. */
    int rc = st_stream_set_modem(s, 1, 0, &err);
    assert_true(rc == 0 || rc == ST_ERR_UNSUPPORTED);
    if (rc)
        assert_non_null(strstr(err.msg, "DTR/RTS"));
    assert_int_equal(write(master, "junk", 4), 4);
    uint8_t buf[8];
    /* The flush must find the bytes already in the tty's input queue. Wait for exactly
     * that, not for a guessed time: a second descriptor of the same tty sees the queue
     * become readable (poll does not consume it); bounded by a 5 s deadline. */
    int peek = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK);
    assert_true(peek >= 0);
    struct pollfd pfd = { peek, POLLIN, 0 };
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    close(peek);
    assert_int_equal(st_stream_flush_input(s, &err), 0);
    assert_int_equal(st_stream_read(s, buf, sizeof buf, 20, &err), 0);
    st_stream_close(s);
    close(master);
}

static void test_tty_hangup(void **state)
{
    char path[128];
    int master = open_pty(path, sizeof path);
    st_stream *s;
    st_err err;
    assert_int_equal(st_stream_tty_open(path, NULL, &s, &err), 0);
    close(master);
    uint8_t buf[4];
    assert_int_equal(st_stream_read(s, buf, sizeof buf, 200, &err), ST_ERR_DISCONNECT);
    st_stream_close(s);
}

static void test_framing_parse(void **state)
{
    st_stream_line l = {57600, 8, 'N', 1, 0};
    st_err err;
    char buf[32];
    assert_int_equal(st_stream_parse_framing("8e1", &l, &err), 0);
    assert_string_equal(st_stream_line_str(&l, buf, sizeof buf), "57600 8E1");
    assert_int_equal(st_stream_parse_framing("7O2", &l, &err), 0);
    assert_string_equal(st_stream_line_str(&l, buf, sizeof buf), "57600 7O2");
    assert_int_equal(st_stream_parse_framing("8x1", &l, &err), ST_ERR_INVAL);
    assert_non_null(strstr(err.msg, "parity 'x'"));
    assert_int_equal(st_stream_parse_framing("9n1", &l, &err), ST_ERR_INVAL);
    assert_int_equal(st_stream_parse_framing("8n3", &l, &err), ST_ERR_INVAL);
    assert_int_equal(st_stream_parse_framing("8n", &l, &err), ST_ERR_INVAL);
    assert_int_equal(st_stream_parse_framing(NULL, &l, &err), ST_ERR_INVAL);
}

static void test_mem_break(void **state)
{
    echo_model m = {.base.ops = &echo_ops};
    st_stream *s;
    st_err err;
    assert_int_equal(st_stream_mem_open(&m.base, "mem:echo", &s, &err), 0);
    assert_int_equal(st_stream_send_break(s, 10, &err), 0);
    assert_int_equal(m.breaks, 1);
    st_stream_close(s);
}

/* Every standard rate and a non-standard one take effect (read back through a second fd),
 * BREAK works or says why, and a framing the pty cannot keep (7 data bits) is refused. */
static void test_tty_rates_break_framing(void **state)
{
    char path[128];
    int master = open_pty(path, sizeof path);
    st_stream *s;
    st_err err;
    st_stream_line l = {1800, 8, 'N', 1, 0};
    assert_int_equal(st_stream_tty_open(path, &l, &s, &err), 0);
    static const uint32_t rates[] = {50, 300, 1800, 9600, 57600, 115200, 921600, 1152000,
                                     4000000};
    int fd = open(path, O_RDWR | O_NOCTTY);
    assert_true(fd >= 0);
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        l.baud = rates[i];
        int rc = st_stream_set_line(s, &l, &err);
        if (rc)
            fail_msg("baud %u: %s", rates[i], err.msg);
        struct termios t;
        assert_int_equal(tcgetattr(fd, &t), 0);
        assert_int_not_equal(cfgetospeed(&t), B0);
    }
    l.baud = 250000; /* BOTHER */
    assert_int_equal(st_stream_set_line(s, &l, &err), 0);
    int rc = st_stream_send_break(s, 5, &err);
    if (rc)
        assert_int_equal(rc, ST_ERR_UNSUPPORTED);
    l.data_bits = 7;
    rc = st_stream_set_line(s, &l, &err);
    if (rc != ST_ERR_UNSUPPORTED)
        fail_msg("7 data bits on a pty: %d %s", rc, err.msg);
    assert_non_null(strstr(err.msg, "7 data bits"));
    close(fd);
    st_stream_close(s);
    close(master);
}

static void test_tty_open_errors(void **state)
{
    st_stream *s;
    st_err err;
    assert_int_equal(st_stream_tty_open("/nonexistent/ttyX", NULL, &s, &err), ST_ERR_NOTFOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/ttyX"));
    assert_int_equal(st_stream_tty_open("/dev/null", NULL, &s, &err), ST_ERR_INVAL);
    assert_non_null(strstr(err.msg, "not a terminal"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mem_delayed_answer),
        cmocka_unit_test(test_mem_timeout_and_flush),
        cmocka_unit_test(test_mem_line_forwarded),
        cmocka_unit_test(test_mem_open_rejects_null),
        cmocka_unit_test(test_tty_pty_roundtrip),
        cmocka_unit_test(test_tty_read_timeout),
        cmocka_unit_test(test_tty_pty_refuses_parity),
        cmocka_unit_test(test_tty_modem_and_flush),
        cmocka_unit_test(test_tty_hangup),
        cmocka_unit_test(test_tty_open_errors),
        cmocka_unit_test(test_framing_parse),
        cmocka_unit_test(test_mem_break),
        cmocka_unit_test(test_tty_rates_break_framing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
