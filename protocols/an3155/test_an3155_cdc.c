/* The ROM model behind a USB CDC-ACM adapter (the kernel-driver rig's path, here on the
 * in-memory USB bus with the station's user-space CDC stream): the host's 8E1 arrives as a
 * real SET_LINE_CODING, the model sees even parity and answers; a host at 8N1 is refused
 * as the real bootloader would (parity errors: silence). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "protocols/an3155/an3155.h"
#include "protocols/an3155/an3155_model.h"
#include "protocols/link/stream_cdc.h"
#include "protocols/link/usb_model.h"
#include "protocols/sim/cdc_acm.h"
#include "station/core/clock.h"

#define PORT "1-1.4"

static void run(char parity, bool expect_ok)
{
    st_flash *flash = st_flash_new(st_mcu_find("stm32g431xx"), ST_TIMING_NONE);
    st_an_model *m = st_an_model_new(flash, NULL);
    assert_non_null(m);
    st_an_model_reset(m, true, st_now_us());
    /* A CH340-style USB-UART adapter in front of the MCU's USART. */
    st_cdc_identity id = {0x1a86, 0x7523, 0x0264, "adapter", "USB Serial", "A1"};
    st_cdc_acm *cdc = st_cdc_acm_new(&id, st_an_model_stream(m));
    st_vusb_bus *bus = st_vusb_bus_new();
    assert_int_equal(st_vusb_attach(bus, PORT, st_cdc_acm_usb(cdc), NULL), 0);
    st_usb_host *host;
    assert_int_equal(st_usb_host_mem_new(bus, NULL, &host, NULL), 0);
    st_usb_dev_info want;
    memset(&want, 0, sizeof want);
    strcpy(want.port_path, PORT);
    st_stream_line line = {115200, 8, parity, 1, 0};
    st_stream *s;
    st_err err;
    assert_int_equal(st_stream_cdc_open(host, &want, &line, &s, &err), 0);
    st_stream_line seen;
    int dtr, rts;
    st_cdc_acm_line(cdc, &seen, &dtr, &rts);
    assert_int_equal(seen.parity, parity); /* SET_LINE_CODING carried it */
    assert_int_equal(seen.baud, 115200);
    st_an_cfg ac = {.byte_timeout_ms = 50, .resync_wait_ms = 2};
    st_an3155 *an;
    assert_int_equal(st_an_new(s, &ac, &an, &err), 0);
    int rc = st_an_sync(an, NULL, &err);
    st_an_model_stats ms;
    st_an_model_get_stats(m, &ms);
    if (expect_ok) {
        if (rc)
            fail_msg("sync over CDC at 8%c1: %s", parity, err.msg);
        st_an_info i;
        assert_int_equal(st_an_identify(an, &i, &err), 0);
        uint8_t img[8192];
        for (size_t k = 0; k < sizeof img; k++)
            img[k] = (uint8_t)(k * 13);
        rc = st_an_flash(an, 0x08000000, img, sizeof img, NULL, NULL, NULL, &err);
        if (rc)
            fail_msg("flash over CDC: %s", err.msg);
        assert_int_equal(ms.line.parity, 'E'); /* what the ROM's USART saw last */
    } else {
        assert_int_equal(rc, ST_ERR_TIMEOUT);
        assert_true(ms.refused_line >= 1);
        assert_int_equal(ms.line.parity, 'N');
    }
    st_an_free(an);
    st_stream_close(s);
    st_usb_host_free(host);
    st_vusb_detach(bus, PORT);
    st_vusb_bus_free(bus);
    st_cdc_acm_free(cdc);
    st_an_model_free(m);
    st_flash_free(flash);
}

static void test_cdc_8e1(void **state)
{
    (void)state;
    run('E', true);
}

static void test_cdc_8n1_refused(void **state)
{
    (void)state;
    run('N', false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cdc_8e1),
        cmocka_unit_test(test_cdc_8n1_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
