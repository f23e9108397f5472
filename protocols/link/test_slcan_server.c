/* Tests for the slcan adapter server: line format vectors, and the bridge with the test
 * playing the kernel's slcan on a socket pair and an echo node behind a test CAN link. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "protocols/link/slcan_server.h"

/* ---- echo node behind a link: every frame comes back on id + 1, data reversed -------- */

typedef struct echo_link {
    st_can_link base;
    st_can_frame q[64];
    size_t n;
    st_can_frame last_sent;
    unsigned sent;
} echo_link;

static int el_send(st_can_link *l, const st_can_frame *f, unsigned timeout_ms, st_err *err)
{
    echo_link *e = (echo_link *)l;
    e->last_sent = *f;
    e->sent++;
    st_can_frame r = {.id = f->id + 1, .len = f->len};
    for (uint8_t i = 0; i < f->len; i++)
        r.data[i] = f->data[f->len - 1 - i];
    if (e->n < 64)
        e->q[e->n++] = r;
    return 0;
}

static int el_recv(st_can_link *l, st_can_frame *f, unsigned timeout_ms, st_err *err)
{
    echo_link *e = (echo_link *)l;
    if (!e->n)
        return 0;
    *f = e->q[0];
    memmove(e->q, e->q + 1, (e->n - 1) * sizeof(e->q[0]));
    e->n--;
    return 1;
}

static int el_filter(st_can_link *l, const uint32_t *ids, size_t n, st_err *err)
{
    return 0;
}

static void el_close(st_can_link *l)
{
}

static const st_can_link_ops el_ops = {el_send, el_recv, el_filter, el_close, NULL, NULL};

typedef struct fixture {
    echo_link link;
    st_slcan_server *srv;
    int kfd;
    int states;
    bool last_open;
    uint32_t last_rate;
} fixture;

static void on_state(void *ctx, bool open, uint32_t bitrate)
{
    fixture *f = ctx;
    f->states++;
    f->last_open = open;
    f->last_rate = bitrate;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    f->link.base.ops = &el_ops;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    st_slcan_opts o = {.on_state = on_state, .ctx = f};
    assert_int_equal(st_slcan_server_new_fd(&f->link.base, sv[0], &o, NULL, &f->srv, NULL), 0);
    f->kfd = sv[1];
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    st_slcan_server_free(f->srv);
    close(f->kfd);
    free(f);
    return 0;
}

static void kwrite(fixture *f, const char *s)
{
    assert_int_equal(write(f->kfd, s, strlen(s)), (ssize_t)strlen(s));
}

static size_t kread(fixture *f, char *buf, size_t cap)
{
    ssize_t r = recv(f->kfd, buf, cap - 1, MSG_DONTWAIT);
    if (r < 0) {
        assert_int_equal(errno, EAGAIN);
        r = 0;
    }
    buf[r] = 0;
    return (size_t)r;
}

static void test_format_and_parse_vectors(void **state)
{
    (void)state;
    char buf[24];
    st_can_frame f = {.id = 0x3f1, .len = 8, .data = {1, 2, 3, 4, 5, 6, 7, 8}};
    size_t n = st_slcan_format(&f, buf);
    assert_int_equal(n, 22);
    assert_memory_equal(buf, "t3F180102030405060708\r", 22);
    st_can_frame e = {.id = 0x7ff, .len = 0};
    n = st_slcan_format(&e, buf);
    assert_memory_equal(buf, "t7FF0\r", n);

    st_can_frame p;
    char cmd = 0;
    assert_int_equal(st_slcan_parse("t1234DEADBEEF", 13, &p, &cmd), 1);
    assert_int_equal(p.id, 0x123);
    assert_int_equal(p.len, 4);
    const uint8_t want[4] = {0xde, 0xad, 0xbe, 0xef};
    assert_memory_equal(p.data, want, 4);
    assert_int_equal(st_slcan_parse("t20280102", 9, &p, &cmd), ST_ERR_PROTO); /* short */
    assert_int_equal(st_slcan_parse("t2029", 5, &p, &cmd), ST_ERR_PROTO);     /* len 9 */
    assert_int_equal(st_slcan_parse("t2G20102", 8, &p, &cmd), ST_ERR_PROTO);  /* not hex */
    assert_int_equal(st_slcan_parse("T0000012320102", 14, &p, &cmd), 2);      /* extended */
    assert_int_equal(st_slcan_parse("r1230", 5, &p, &cmd), 2);                /* remote */
    assert_int_equal(st_slcan_parse("O", 1, &p, &cmd), 0);
    assert_int_equal(cmd, 'O');
    assert_int_equal(st_slcan_parse("\x07", 1, &p, &cmd), ST_ERR_PROTO);
    assert_int_equal(st_slcan_bitrate("S8", 2), 1000000);
    assert_int_equal(st_slcan_bitrate("S6", 2), 500000);
    assert_int_equal(st_slcan_bitrate("S0", 2), 10000);
    assert_int_equal(st_slcan_bitrate("S9", 2), 0);
    assert_int_equal(st_slcan_bitrate("O", 1), 0);
}

/* What the 6.1 kernel sends on "ip link set can0 up" at 1 Mbit/s, then a frame each way. */
static void test_open_and_bridge(void **state)
{
    fixture *f = *state;
    assert_int_equal(st_slcan_server_timeout_ms(f->srv), -1);
    kwrite(f, "C\rS8\rO\r");
    assert_int_equal(st_slcan_server_step(f->srv, NULL), 0);
    st_slcan_stats st;
    st_slcan_server_stats(f->srv, &st);
    assert_true(st.open);
    assert_int_equal(st.bitrate, 1000000);
    assert_int_equal(st.commands, 3);
    assert_int_equal(f->states, 1);
    assert_true(f->last_open);
    assert_int_equal(f->last_rate, 1000000);
    assert_true(st_slcan_server_timeout_ms(f->srv) > 0);

    kwrite(f, "t1234DEADBEEF\r");
    assert_int_equal(st_slcan_server_step(f->srv, NULL), 0);
    assert_int_equal(f->link.sent, 1);
    assert_int_equal(f->link.last_sent.id, 0x123);
    char buf[64];
    kread(f, buf, sizeof(buf));
    assert_string_equal(buf, "t1244EFBEADDE\r");
    assert_int_equal(st_slcan_server_timeout_ms(f->srv), 1); /* traffic: poll fast */
    st_slcan_server_stats(f->srv, &st);
    assert_int_equal(st.to_bus, 1);
    assert_int_equal(st.to_host, 1);
}

/* A frame split over reads, garbage and over-long lines, extended frames, closed channel. */
static void test_split_garbage_and_closed(void **state)
{
    fixture *f = *state;
    kwrite(f, "t12");
    assert_int_equal(st_slcan_server_step(f->srv, NULL), 0);
    assert_int_equal(f->link.sent, 0);
    kwrite(f, "31AB\r");
    assert_int_equal(st_slcan_server_step(f->srv, NULL), 0);
    assert_int_equal(f->link.sent, 1);
    char buf[64];
    /* Not open yet: the echo is dropped, as an adapter off the bus. */
    assert_int_equal(kread(f, buf, sizeof(buf)), 0);
    kwrite(f, "\x01\x02zz\r");
    char longline[100];
    memset(longline, 'A', sizeof(longline));
    assert_int_equal(write(f->kfd, longline, sizeof(longline)), (ssize_t)sizeof(longline));
    kwrite(f, "\rT0000012320102\r");
    assert_int_equal(st_slcan_server_step(f->srv, NULL), 0);
    st_slcan_stats st;
    st_slcan_server_stats(f->srv, &st);
    assert_int_equal(st.bad_lines, 2);
    assert_int_equal(st.dropped, 2); /* the echo while closed + the extended frame */
    assert_int_equal(f->link.sent, 1);
    kwrite(f, "O\rt7FF0\rC\r");
    assert_int_equal(st_slcan_server_step(f->srv, NULL), 0);
    st_slcan_server_stats(f->srv, &st);
    assert_false(st.open);
    /* The echo of t7FF0 came back after C: dropped. */
    assert_int_equal(kread(f, buf, sizeof(buf)), 0);
    assert_int_equal(f->states, 2);
    assert_false(f->last_open);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_and_parse_vectors),
        cmocka_unit_test_setup_teardown(test_open_and_bridge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_garbage_and_closed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
