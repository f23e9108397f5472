/* The BGAPI DFU engine through the station's termios link to the module model served on a
 * real pty (pty server in a thread): both bootloader generations byte for byte through the
 * kernel's tty layer, and a host at the wrong baud rate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/bgapi/bgapi.h"
#include "protocols/bgapi/bgapi_model.h"
#include "protocols/bgapi/gbl.h"
#include "protocols/link/pty_server.h"
#include "station/core/clock.h"

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

static int run(st_bgapi_gen gen, uint32_t module_baud, uint32_t host_baud, st_bgapi_result *out,
               st_err *err, double *ms)
{
    st_flash *flash = st_flash_new(st_mcu_find("efr32bg13p632f512"), ST_TIMING_NONE);
    st_bgapi_model_cfg mc = {.gen = gen, .baud = module_baud};
    st_bgapi_model *m = st_bgapi_model_new(flash, &mc);
    assert_non_null(m);
    server s = {.rc = 0};
    atomic_init(&s.stop, false);
    assert_int_equal(st_pty_server_new(st_bgapi_model_stream(m), NULL, &s.srv, err), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, serve, &s), 0);
    st_stream_line line = {host_baud, 8, 'N', 1, 0};
    st_stream *st;
    int rc = st_stream_tty_open(st_pty_server_path(s.srv), &line, &st, err);
    if (rc)
        fail_msg("%s", err->msg);
    st_bgapi_opts o = {.entry_timeout_ms = module_baud == host_baud ? 5000 : 1200};
    st_bgapi *b;
    assert_int_equal(st_bgapi_open(st, &o, &b, err), 0);
    uint8_t data[30000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 31 + 7);
    st_gbl_build_opts go = {.app_type = 8, .app_version = st_gbl_stack_version(6, 0, 1, 2),
                            .data = data, .len = sizeof data};
    uint8_t *g;
    size_t n;
    assert_int_equal(st_gbl_build(&go, &g, &n, err), 0);
    uint64_t t0 = st_now_us();
    rc = st_bgapi_enter_dfu(b, err);
    if (rc == 0)
        rc = st_bgapi_upload(b, g, n, err);
    if (rc == 0)
        rc = st_bgapi_finish(b, err);
    if (rc == 0)
        rc = st_bgapi_boot(b, err);
    *ms = (st_now_us() - t0) / 1000.0;
    *out = *st_bgapi_get_result(b);
    st_bgapi_close(b);
    st_stream_close(st);
    atomic_store(&s.stop, true);
    pthread_join(th, NULL);
    assert_int_equal(s.rc, 0);
    st_pty_server_free(s.srv);
    st_bgapi_model_free(m);
    st_flash_free(flash);
    free(g);
    return rc;
}

static void test_both_generations_over_pty(void **state)
{
    for (int gen = ST_BGAPI_GEN_SDK2; gen <= ST_BGAPI_GEN_GSDK4; gen++) {
        st_bgapi_result r;
        st_err err;
        double ms;
        int rc = run((st_bgapi_gen)gen, 115200, 115200, &r, &err, &ms);
        if (rc)
            fail_msg("%s", err.msg);
        assert_int_equal(r.entry, gen == ST_BGAPI_GEN_SDK2 ? ST_BGAPI_ENTRY_DFU_RESET
                                                           : ST_BGAPI_ENTRY_SYSTEM_RESET);
        assert_true(r.booted);
        assert_int_equal(r.stack.major, 6);
        assert_int_equal(r.stack.patch, 1);
        assert_int_equal(r.dropped_bytes, 0);
        print_message("over a pty (%s): enter+upload %u chunks+finish+boot %.1f ms\n",
                      st_bgapi_gen_name((st_bgapi_gen)gen), r.chunks, ms);
    }
}

static void test_wrong_baud_over_pty(void **state)
{
    st_bgapi_result r;
    st_err err;
    double ms;
    int rc = run(ST_BGAPI_GEN_GSDK4, 230400, 115200, &r, &err, &ms);
    assert_int_equal(rc, ST_ERR_TIMEOUT);
    if (!strstr(err.msg, "baud rate"))
        fail_msg("no baud hint in: %s", err.msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_both_generations_over_pty),
        cmocka_unit_test(test_wrong_baud_over_pty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
