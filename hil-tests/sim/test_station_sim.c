/* Tests for station-sim and its toy models on this host (no VM): the toy models' own
 * answers, and the program serving the stream echo on a pty to a client, its usage errors
 * and its clean exit on SIGTERM. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>

#include "hil-tests/sim/toy_models.h"
#include "station/core/clock.h"
#ifdef TEST_WITH_KATAPULT
#include "protocols/katapult/katapult.h"
#include "protocols/link/serial_ports.h"
#include "protocols/link/stream.h"
#include "station/core/image.h"
#endif
#ifdef TEST_WITH_BGAPI
#include <stdlib.h>

#include "protocols/bgapi/bgapi.h"
#include "protocols/bgapi/gbl.h"
#endif

static void test_toy_usb_identity_and_loopback(void **state)
{
    (void)state;
    st_toy_usb *t = st_toy_usb_new("ABC123");
    st_usb_model *m = st_toy_usb_model(t);
    st_usb_dev_info info = {0};
    assert_int_equal(st_usb_model_describe(m, &info), 0);
    assert_int_equal(info.vid, ST_TOY_USB_VID);
    assert_int_equal(info.pid, ST_TOY_USB_PID);
    assert_string_equal(info.serial, "ABC123");
    assert_string_equal(info.product, "station-sim loopback");
    uint8_t buf[64];
    assert_int_equal(m->ops->bulk_in(m, 0x81, buf, sizeof(buf)), 0);
    assert_int_equal(m->ops->bulk_out(m, 0x01, (const uint8_t *)"ping", 4), 4);
    assert_int_equal(m->ops->bulk_in(m, 0x81, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(m->ops->bulk_in(m, 0x82, buf, sizeof(buf)), 0);
    assert_int_equal(m->ops->bulk_out(m, 0x02, buf, 1), ST_ERR_STALL);
    st_usb_setup set = {0x40, 0x01, 0, 0, 3};
    assert_int_equal(m->ops->control(m, &set, (uint8_t *)"xyz"), 0);
    st_usb_setup get = {0xc0, 0x02, 0, 0, 64};
    assert_int_equal(m->ops->control(m, &get, buf), 3);
    assert_memory_equal(buf, "xyz", 3);
    st_usb_setup bad = {0xc0, 0x55, 0, 0, 1};
    assert_int_equal(m->ops->control(m, &bad, buf), ST_ERR_STALL);
    st_toy_usb_free(t);
}

static void test_toy_can_echo(void **state)
{
    (void)state;
    st_toy_can n;
    st_toy_can_init(&n);
    st_can_frame f = {.id = 0x7ff, .len = 2, .data = {1, 2}}, out;
    assert_int_equal(n.base.ops->next_event_us(&n.base), UINT64_MAX);
    n.base.ops->rx(&n.base, &f, 0);
    assert_int_equal(n.base.ops->next_event_us(&n.base), 0);
    assert_int_equal(n.base.ops->tx(&n.base, &out, 0), 1);
    assert_int_equal(out.id, 0x000); /* wraps within 11 bits */
    assert_int_equal(out.len, 2);
    assert_int_equal(out.data[1], 2);
    assert_int_equal(n.base.ops->tx(&n.base, &out, 0), 0);
    assert_int_equal(n.rx_count, 1);
}

static int run_sim(const char *const *args, int *out_fd, pid_t *pid)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    *pid = fork();
    assert_true(*pid >= 0);
    if (*pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execv(STATION_SIM_PATH, (char *const *)args);
        _exit(127);
    }
    close(p[1]);
    *out_fd = p[0];
    return 0;
}

static int wait_exit(pid_t pid)
{
    int st;
    st_deadline d = st_deadline_in_ms(5000);
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (st_deadline_passed(d)) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        st_sleep_us(10000);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_usage_errors(void **state)
{
    (void)state;
    const char *const cases[][6] = {
        {"station-sim", NULL},
        {"station-sim", "bogus", NULL},
        {"station-sim", "pty", "--model", "nonesuch"},
        {"station-sim", "slcan", "--uuid", "xyz"},
        {"station-sim", "units", "--transport", "serial"},
        {"station-sim", "units", "--model", "dfu"},
        {"station-sim", "pty", "--unit", "--unit"}, /* several units: the unit model only */
        {"station-sim", "units", "--boot-select", "sideways"},
        {"station-sim", "pty", "--model", "an3155", "--fault", "bogus:1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[7] = {0};
        for (int k = 0; k < 6 && cases[i][k]; k++)
            args[k] = cases[i][k];
        int fd;
        pid_t pid;
        run_sim(args, &fd, &pid);
        assert_int_equal(wait_exit(pid), 2);
        close(fd);
    }
    const char *help[] = {"station-sim", "--help", NULL};
    int fd;
    pid_t pid;
    run_sim(help, &fd, &pid);
    char buf[256] = {0};
    assert_true(read(fd, buf, sizeof(buf) - 1) > 0);
    assert_non_null(strstr(buf, "usage: station-sim"));
    assert_int_equal(wait_exit(pid), 0);
    close(fd);
}

/* Wait for "station-sim: ready: ... path=X" and copy X into tty. */
static void read_ready_path(int fd, char *tty, size_t cap)
{
    char line[256] = {0};
    size_t n = 0;
    st_deadline d = st_deadline_in_ms(5000);
    while (!strchr(line, '\n') && n < sizeof(line) - 1 && !st_deadline_passed(d)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) == 1) {
            ssize_t r = read(fd, line + n, sizeof(line) - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
        }
    }
    const char *path = strstr(line, "path=");
    assert_non_null(path);
    snprintf(tty, cap, "%.*s", (int)strcspn(path + 5, "\n"), path + 5);
}

/* The pty endpoint end to end: ready line, a client round trip, SIGTERM -> exit 0. */
static void test_pty_echo_process(void **state)
{
    (void)state;
    const char *args[] = {"station-sim", "pty", "--model", "echo", NULL};
    int fd;
    pid_t pid;
    run_sim(args, &fd, &pid);
    char tty[64] = {0};
    read_ready_path(fd, tty, sizeof(tty));
    st_deadline d;
    int c = open(tty, O_RDWR | O_NOCTTY);
    assert_true(c >= 0);
    struct termios t;
    tcgetattr(c, &t);
    cfmakeraw(&t);
    tcsetattr(c, TCSANOW, &t);
    assert_int_equal(write(c, "rig", 3), 3);
    char got[8] = {0};
    size_t g = 0;
    d = st_deadline_in_ms(3000);
    while (g < 3 && !st_deadline_passed(d)) {
        struct pollfd p = {.fd = c, .events = POLLIN};
        if (poll(&p, 1, 100) == 1) {
            ssize_t r = read(c, got + g, sizeof(got) - 1 - g);
            if (r > 0)
                g += (size_t)r;
        }
    }
    assert_string_equal(got, "RIG");
    close(c);
    kill(pid, SIGTERM);
    assert_int_equal(wait_exit(pid), 0);
    close(fd);
}

/* Seed 001's known answer through real ttys: the station's termios backend and Katapult
 * engine against station-sim's Katapult model on a pty. */
static void test_pty_katapult_seed001(void **state)
{
    (void)state;
#ifndef TEST_WITH_KATAPULT
    skip();
#else
    const char *fw = STATION_SHARED_DIR
        "/firmware/cartographer-v4/6.0.0/CartographerV4_6.0.0_USB_lite_8kib_offset.bin";
    if (access(fw, R_OK) != 0) {
        print_message("skipped: %s absent\n", fw);
        skip();
    }
    const char *args[] = {"station-sim", "pty", "--model", "katapult", NULL};
    int fd;
    pid_t pid;
    run_sim(args, &fd, &pid);
    char tty[64] = {0};
    read_ready_path(fd, tty, sizeof(tty));
    st_err e = {0};
    st_stream *s;
    st_stream_line line = {115200, 8, 'N', 1, 0};
    assert_int_equal(st_stream_tty_open(tty, &line, &s, &e), 0);
    st_katapult *k;
    assert_int_equal(st_katapult_open(s, NULL, &k, &e), 0);
    st_katapult_info info;
    if (st_katapult_connect(k, &info, &e) < 0)
        fail_msg("connect: %s", e.msg);
    assert_string_equal(info.mcu, "stm32g431xx");
    st_image *img;
    assert_int_equal(st_image_load(fw, 0, &img, &e), 0);
    st_katapult_result r;
    if (st_katapult_flash(k, img, NULL, &r, &e) < 0)
        fail_msg("flash: %s", e.msg);
    assert_int_equal(r.pages, 14);
    if (st_katapult_verify(k, img, &r, &e) < 0)
        fail_msg("verify: %s", e.msg);
    assert_int_equal(r.blocks_verified, 435);
    assert_string_equal(r.sha1_hex, "FCA6E37F4D9F344E7AF18C7609AEBBCFD6E597E0");
    assert_int_equal(st_katapult_complete(k, &e), 0);
    st_katapult_close(k);

    /* Issue 7: a real unit now boots the application it was given, which answers the
     * bootloader request, so a second flash works. (station-sim's unit used to stay
     * silent for good.) Katapult still answers until it resets, 100 ms after COMPLETE:
     * wait until CONNECT goes unanswered (the application is up), then ask for the
     * bootloader. */
    st_katapult_opts once = {.tries = 1, .read_timeout_ms = 100};
    assert_int_equal(st_katapult_open(s, &once, &k, &e), 0);
    st_deadline back = st_deadline_in_ms(5000);
    while (st_katapult_connect(k, &info, &e) == 0)
        assert_false(st_deadline_passed(back));
    assert_int_equal(e.code, ST_ERR_TIMEOUT);
    assert_int_equal(st_serial_request_bootloader_uart(s, &e), 0);
    st_katapult_close(k);
    /* The unit reboots: bytes sent meanwhile may be lost, which the engine's retries
     * cover (flashtool waits a second instead). */
    assert_int_equal(st_katapult_open(s, NULL, &k, &e), 0);
    if (st_katapult_connect(k, &info, &e) != 0)
        fail_msg("no Katapult after the bootloader request: %s", e.msg);
    if (st_katapult_flash(k, img, NULL, &r, &e) < 0)
        fail_msg("second flash: %s", e.msg);
    if (st_katapult_verify(k, img, &r, &e) < 0)
        fail_msg("second verify: %s", e.msg);
    assert_string_equal(r.sha1_hex, "FCA6E37F4D9F344E7AF18C7609AEBBCFD6E597E0");
    assert_int_equal(st_katapult_complete(k, &e), 0);
    st_katapult_close(k);
    st_stream_close(s);
    st_image_free(img);
    kill(pid, SIGTERM);
    assert_int_equal(wait_exit(pid), 0);
    close(fd);
#endif
}

/* station-sim serves the Bluetooth module model (GSDK <= 3.2 bootloader, arriving empty)
 * on a pty; the station's engine updates it through the termios backend. */
static void test_pty_bgm(void **state)
{
#ifndef TEST_WITH_BGAPI
    skip();
#else
    const char *args[] = {"station-sim", "pty", "--model", "bgm", "--bootloader", "gsdk3",
                          "--empty", NULL};
    int fd;
    pid_t pid;
    run_sim(args, &fd, &pid);
    char tty[64] = {0};
    read_ready_path(fd, tty, sizeof(tty));
    st_err e = {0};
    st_stream *s;
    st_stream_line line = {115200, 8, 'N', 1, 0};
    assert_int_equal(st_stream_tty_open(tty, &line, &s, &e), 0);
    st_bgapi *b;
    assert_int_equal(st_bgapi_open(s, NULL, &b, &e), 0);
    uint8_t data[4096];
    memset(data, 0x5a, sizeof data);
    st_gbl_build_opts go = {.app_type = 8, .app_version = st_gbl_stack_version(2, 13, 10, 1),
                            .data = data, .len = sizeof data};
    uint8_t *g;
    size_t n;
    assert_int_equal(st_gbl_build(&go, &g, &n, &e), 0);
    int rc = st_bgapi_enter_dfu(b, &e);
    if (rc == 0)
        rc = st_bgapi_upload(b, g, n, &e);
    if (rc == 0)
        rc = st_bgapi_finish(b, &e);
    if (rc == 0)
        rc = st_bgapi_boot(b, &e);
    if (rc)
        fail_msg("%s", e.msg);
    const st_bgapi_result *r = st_bgapi_get_result(b);
    assert_int_equal(r->entry, ST_BGAPI_ENTRY_DFU_RESET);
    assert_int_equal(r->stack.minor, 13);
    st_bgapi_close(b);
    st_stream_close(s);
    free(g);
    kill(pid, SIGTERM);
    assert_int_equal(wait_exit(pid), 0);
    close(fd);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_toy_usb_identity_and_loopback),
        cmocka_unit_test(test_toy_can_echo),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_pty_echo_process),
        cmocka_unit_test(test_pty_katapult_seed001),
        cmocka_unit_test(test_pty_bgm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
