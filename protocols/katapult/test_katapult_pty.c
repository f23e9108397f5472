/* The Katapult engine through the station's termios link to the device model served on a
 * real pty (pty server in a thread): the whole serial path, byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "protocols/katapult/katapult.h"
#include "protocols/katapult/katapult_model.h"
#include "protocols/link/pty_server.h"
#include "station/core/clock.h"

#define KNOWN_BIN "/firmware/cartographer-v4/6.0.0/CartographerV4_6.0.0_USB_lite_8kib_offset.bin"

typedef struct server {
    st_pty_server *srv;
    atomic_bool stop;
    int rc;
} server;

static void *serve(void *arg)
{
    server *s = arg;
    st_err err;
    while (!atomic_load(&s->stop)) {
        if (st_pty_server_run(s->srv, 20, &err) < 0) {
            s->rc = -1;
            break;
        }
    }
    return NULL;
}

static void test_flash_over_pty(void **state)
{
    const char *path = STATION_SHARED_DIR KNOWN_BIN;
    st_image *img;
    st_err err;
    if (access(path, R_OK) != 0) {
        print_message("skip: %s absent\n", path);
        skip();
    }
    assert_int_equal(st_image_load(path, 0, &img, &err), 0);
    st_flash *flash = st_flash_new(st_mcu_find("stm32g431xx"), ST_TIMING_NONE);
    st_katapult_model *m = st_katapult_model_new(flash, NULL);
    server s = {.rc = 0};
    atomic_init(&s.stop, false);
    assert_int_equal(st_pty_server_new(st_katapult_model_stream(m), NULL, &s.srv, &err), 0);
    char tty[128];
    strncpy(tty, st_pty_server_path(s.srv), sizeof tty - 1);
    tty[sizeof tty - 1] = '\0';
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, serve, &s), 0);

    st_stream_line line = {250000, 8, 'N', 1, 0};
    st_stream *st;
    int rc = st_stream_tty_open(tty, &line, &st, &err);
    if (rc)
        fail_msg("%s", err.msg);
    st_katapult *k;
    st_katapult_opts o = {.prime = true};
    assert_int_equal(st_katapult_open(st, &o, &k, &err), 0);
    st_katapult_info info;
    uint64_t t0 = st_now_us();
    rc = st_katapult_connect(k, &info, &err);
    if (rc)
        fail_msg("%s", err.msg);
    assert_string_equal(info.mcu, "stm32g431xx");
    st_katapult_result w, v;
    rc = st_katapult_flash(k, img, NULL, &w, &err);
    if (rc == 0)
        rc = st_katapult_verify(k, img, &v, &err);
    if (rc)
        fail_msg("%s", err.msg);
    assert_int_equal(st_katapult_complete(k, &err), 0);
    uint64_t took = st_now_us() - t0;
    assert_int_equal(w.pages, 14);
    assert_int_equal(v.blocks_verified, 435);
    assert_string_equal(v.sha1_hex, "FCA6E37F4D9F344E7AF18C7609AEBBCFD6E597E0");
    print_message("over a pty: connect+write+verify+complete %.1f ms, %u retries\n",
                  took / 1000.0, st_katapult_retries(k));
    st_katapult_close(k);
    st_stream_close(st);
    atomic_store(&s.stop, true);
    pthread_join(th, NULL);
    assert_int_equal(s.rc, 0);
    st_pty_server_free(s.srv);
    st_katapult_model_free(m);
    st_flash_free(flash);
    st_image_free(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flash_over_pty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
