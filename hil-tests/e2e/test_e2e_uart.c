/* End to end: Katapult over a UART tty. A pty stands in for the jig's serial line; behind it
 * the unit runs the Klipper application until the serial request string arrives, then
 * Katapult (as Klipper's serial bootloader request does). The station binary drives it
 * through its real termios backend: `katapult.transport: uart`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "protocols/katapult/katapult_model.h"
#include "protocols/link/pty_server.h"
#include "protocols/sim/klipper_app.h"
#include "protocols/sim/synth.h"
#include "reports/report.h"
#include "station/core/digest.h"
#include "hil-tests/e2e/e2e.h"


typedef struct unit {
    st_pty_server *pty;
    st_katapult_model *kat;
    volatile int stop;
    volatile int requested; /* 1: the app saw the request string, 2: Katapult answers */
} unit;

static void on_request(void *ctx)
{
    unit *u = ctx;
    u->requested = 1; /* the swap happens between server steps, not inside the model */
}

static void *serve(void *arg)
{
    unit *u = arg;
    while (!u->stop) {
        st_pty_server_run(u->pty, 10, NULL);
        if (u->requested == 1) {
            st_pty_server_set_model(u->pty, st_katapult_model_stream(u->kat));
            u->requested = 2;
        }
    }
    return NULL;
}

/* silent_complete: the unit's Katapult never answers COMPLETE (vunit fault
 * katapult-silent-complete, here on the model itself): a lost answer is not fatal
 * (jobs/README.md), the step records a note and the run passes. */
static void uart_reflash(bool silent_complete)
{
    const st_mcu *mcu = st_mcu_find("stm32g431xx");
    /* The unit holds an older release (synthetic seed 3) and gets seed 21's application. */
    uint8_t *old = NULL, *img = NULL;
    st_err e;
    assert_int_equal(st_synth_combined_seeded(mcu, ST_SYNTH_DEFAULT_SIZE, 3, &old, &e), 0);
    assert_int_equal(st_synth_combined_seeded(mcu, ST_SYNTH_DEFAULT_SIZE, 21, &img, &e), 0);
    size_t off = mcu->katapult_app_offset, n = ST_SYNTH_DEFAULT_SIZE - off;
    char app[128], job[256], fx[256];
    snprintf(app, sizeof app, "%s/app.bin", e2e_dir);
    FILE *f = fopen(app, "wb");
    fwrite(img + off, 1, n, f);
    fclose(f);
    uint8_t md[32];
    char sha[65];
    st_sha256(img + off, n, md);
    st_hex(md, 32, false, sha);

    st_flash *flash = st_flash_new(mcu, ST_TIMING_NONE);
    st_flash_preload(flash, mcu->flash_start, old, ST_SYNTH_DEFAULT_SIZE);
    unit u = { 0 };
    u.kat = st_katapult_model_new(flash, NULL);
    if (silent_complete)
        st_katapult_model_fault_silent_complete(u.kat, true);
    st_klipper_app *appm = st_klipper_app_new(on_request, &u);
    assert_int_equal(st_pty_server_new(st_klipper_app_stream(appm), NULL, &u.pty, &e), 0);
    pthread_t th;
    pthread_create(&th, NULL, serve, &u);

    snprintf(fx, sizeof fx, "%s/fixture.yaml", e2e_dir);
    f = fopen(fx, "w");
    fprintf(f, "name: uart\ngpio: { backend: virtual }\nslots:\n  - id: 1\n"
               "    lines: { boot0: B, reset: R }\n"
               "    serial: { device: %s, baud: 250000 }\n", st_pty_server_path(u.pty));
    fclose(f);
    snprintf(job, sizeof job, "%s/job.yaml", e2e_dir);
    f = fopen(job, "w");
    fprintf(f, "name: uart-reflash\ntarget: stm32g431xx\n"
               "images:\n  application: { path: app.bin, load_addr: 0x08002000, sha256: %s }\n"
               "katapult: { transport: uart, baud: 250000, timeout_ms: 300 }\n"
               "steps: [enter-katapult, read-app, katapult-flash, katapult-verify, katapult-complete]\n",
            sha);
    fclose(f);
    int rc = e2e_run(STATION " --plain run %s -f %s --reports %s/reports", job, fx, e2e_dir);
    u.stop = 1;
    pthread_join(th, NULL);
    if (rc != 0)
        fail_msg("station exit %d:\n%s", rc, e2e_out);
    assert_int_equal(u.requested, 2);

    st_rnode *doc = e2e_load_report("reports", NULL, NULL);
    assert_string_equal(st_rget_str(doc, "verdict"), "pass");
    assert_string_equal(st_rget_str(doc, "steps.0.entry_method"), "uart:request-string");
    assert_string_equal(st_rget_str(doc, "unit.after_sha256"), sha);
    assert_string_not_equal(st_rget_str(doc, "unit.before_sha256"), sha);
    assert_string_equal(st_rget_str(doc, "steps.3.sha1"), st_rget_str(doc, "steps.2.sha1"));
    assert_string_equal(st_rget_str(doc, "steps.4.name"), "katapult-complete");
    assert_string_equal(st_rget_str(doc, "steps.4.outcome"), "pass");
    const char *note = st_rget_str(doc, "steps.4.note");
    if (silent_complete)
        assert_string_equal(note, "COMPLETE was not acknowledged; the unit may have started");
    else
        assert_null(note);
    /* The unit's flash holds the new application. */
    uint8_t *now = malloc(n);
    assert_int_equal(st_flash_read(flash, mcu->flash_start + (uint32_t)off, now, n), 0);
    assert_memory_equal(now, img + off, n);
    free(now);
    st_report_free(doc);

    st_pty_server_free(u.pty);
    st_klipper_app_free(appm);
    st_katapult_model_free(u.kat);
    st_flash_free(flash);
    free(old);
    free(img);
}

static void test_uart_reflash(void **state)
{
    (void)state;
    uart_reflash(false);
}

static void test_uart_silent_complete(void **state)
{
    (void)state;
    uart_reflash(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_uart_reflash, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_uart_silent_complete, e2e_setup, e2e_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
