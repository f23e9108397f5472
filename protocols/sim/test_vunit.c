/* Virtual unit boot logic: ROM with BOOT0 or empty flash, Katapult then the application
 * from flash, the app's bootloader request, crash on a truncated app. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "protocols/an3155/an3155.h"
#include "protocols/link/stream.h"
#include "protocols/sim/synth.h"
#include "protocols/sim/vunit.h"

typedef struct port_rec {
    st_usb_model *attached;
    int attaches, detaches;
} port_rec;

static int rec_attach(void *ctx, st_usb_model *m, st_err *err)
{
    port_rec *p = ctx;
    p->attached = m;
    p->attaches++;
    return 0;
}

static void rec_detach(void *ctx)
{
    port_rec *p = ctx;
    p->attached = NULL;
    p->detaches++;
}

static uint16_t vid_of(st_usb_model *m)
{
    st_usb_dev_info info;
    memset(&info, 0, sizeof info);
    assert_int_equal(st_usb_model_describe(m, &info), 0);
    return info.vid;
}

static void test_boot_paths(void **state)
{
    const st_mcu *mcu = st_mcu_find("stm32g431xx");
    port_rec rec = { 0 };
    st_vunit_usb_port port = { rec_attach, rec_detach, &rec };
    st_vunit_config cfg = { .mcu = mcu, .timing = ST_TIMING_NONE };
    st_vunit *u = NULL;
    st_err e;
    /* Empty flash: the G4 boots its ROM even with BOOT0 low. */
    assert_int_equal(st_vunit_new(&cfg, &port, NULL, &u, &e), 0);
    assert_string_equal(st_vunit_state(u), "rom-dfu");
    assert_int_equal(vid_of(rec.attached), 0x0483);
    /* Hold reset: off the bus. */
    st_vunit_set_pin(u, ST_VUNIT_NRST, 0);
    assert_null(rec.attached);
    assert_string_equal(st_vunit_state(u), "reset");
    /* Load a combined image, release reset with BOOT0 low: Katapult starts the app. */
    uint8_t *img;
    assert_int_equal(st_synth_combined(mcu, ST_SYNTH_DEFAULT_SIZE, &img, &e), 0);
    st_flash_preload(st_vunit_flash(u), mcu->flash_start, img, ST_SYNTH_DEFAULT_SIZE);
    st_vunit_set_pin(u, ST_VUNIT_NRST, 1);
    assert_string_equal(st_vunit_state(u), "app");
    assert_int_equal(vid_of(rec.attached), 0x1d50);
    /* BOOT0 high + reset: the ROM again. */
    st_vunit_set_pin(u, ST_VUNIT_BOOT0, 1);
    st_vunit_set_pin(u, ST_VUNIT_NRST, 0);
    st_vunit_set_pin(u, ST_VUNIT_NRST, 1);
    assert_string_equal(st_vunit_state(u), "rom-dfu");
    /* Truncated application (reset handler erased): Katapult boots it and it dies. */
    st_vunit_set_pin(u, ST_VUNIT_BOOT0, 0);
    st_vunit_set_pin(u, ST_VUNIT_NRST, 0);
    uint32_t page = mcu->flash_start + mcu->katapult_app_offset;
    assert_int_equal(st_flash_erase_page(st_vunit_flash(u), page, NULL), 0);
    assert_int_equal(st_flash_program(st_vunit_flash(u), page, img + mcu->katapult_app_offset, 64, NULL), 0);
    st_vunit_set_pin(u, ST_VUNIT_NRST, 1);
    assert_string_equal(st_vunit_state(u), "crashed");
    assert_null(rec.attached);
    /* Faults: unknown ones are refused with a message. */
    assert_int_equal(st_vunit_apply_fault(u, "melt:1", &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "melt:1"));
    assert_int_equal(st_vunit_apply_fault(u, "corrupt-page:0x08004000", &e), 0);
    assert_int_equal(st_vunit_apply_fault(u, "corrupt-page:0x18004000", &e), ST_ERR_INVAL);
    free(img);
    st_vunit_free(u);
}

/* The ROM's USART bootloader on the unit's UART, entered by the boot-select state during a
 * reset: a board with an inverted boot line (seed 002) enters it with the line low. */
static void test_uart_rom(void **state)
{
    const st_mcu *mcu = st_mcu_find("stm32f401xc");
    port_rec rec = { 0 };
    st_vunit_usb_port port = { rec_attach, rec_detach, &rec };
    uint8_t *img;
    st_err e;
    assert_int_equal(st_synth_combined(mcu, 48 * 1024, &img, &e), 0);
    st_vunit_config cfg = { .mcu = mcu, .timing = ST_TIMING_NONE, .boot_select_low = true,
                            .holds = img, .holds_len = 48 * 1024,
                            .holds_addr = mcu->flash_start };
    st_vunit *u = NULL;
    assert_int_equal(st_vunit_new(&cfg, &port, NULL, &u, &e), 0);
    assert_string_equal(st_vunit_state(u), "app");
    st_stream *s;
    assert_non_null(st_vunit_uart(u));
    assert_int_equal(st_stream_mem_open(st_vunit_uart(u), "mem:uart", &s, &e), 0);
    st_stream_line l = { 115200, 8, 'E', 1, 0 };
    assert_int_equal(st_stream_set_line(s, &l, &e), 0);
    st_an_cfg ac = { .byte_timeout_ms = 30, .resync_wait_ms = 1 };
    st_an3155 *an;
    assert_int_equal(st_an_new(s, &ac, &an, &e), 0);
    /* The application runs: the UART is silent. */
    assert_int_equal(st_an_sync(an, NULL, &e), ST_ERR_TIMEOUT);
    /* The seed's entry: boot line low, reset pulse. */
    st_vunit_set_pin(u, ST_VUNIT_BOOT0, 0);
    st_vunit_set_pin(u, ST_VUNIT_NRST, 0);
    st_vunit_set_pin(u, ST_VUNIT_NRST, 1);
    assert_string_equal(st_vunit_state(u), "rom-dfu");
    st_an_info i;
    assert_int_equal(st_an_sync(an, NULL, &e), 0);
    assert_int_equal(st_an_identify(an, &i, &e), 0);
    assert_int_equal(i.pid, 0x423);
    uint8_t back[64];
    assert_int_equal(st_an_read(an, 0x08000000, back, sizeof back, NULL, &e), 0);
    assert_memory_equal(back, img, sizeof back);
    /* Go: the code in flash runs; the UART goes silent. */
    st_vunit_set_pin(u, ST_VUNIT_BOOT0, 1);
    unsigned boots = st_vunit_boots(u);
    assert_int_equal(st_an_go(an, 0x08000000, &e), 0);
    assert_string_equal(st_vunit_state(u), "app");
    assert_int_equal(st_vunit_boots(u), boots + 1);
    /* UART faults reach the ROM model; readout protection is a unit fault. */
    assert_int_equal(st_vunit_apply_fault(u, "uart-nack:1", &e), 0);
    assert_int_equal(st_vunit_apply_fault(u, "uart-bogus:1", &e), ST_ERR_INVAL);
    assert_int_equal(st_vunit_apply_fault(u, "rdp", &e), 0);
    st_vunit_set_pin(u, ST_VUNIT_BOOT0, 0);
    st_vunit_set_pin(u, ST_VUNIT_NRST, 0);
    st_vunit_set_pin(u, ST_VUNIT_NRST, 1);
    assert_int_equal(st_an_sync(an, NULL, &e), 0);
    assert_int_equal(st_an_read(an, 0x08000000, back, 4, NULL, &e), ST_ERR_DEVICE);
    st_an_free(an);
    st_stream_close(s);
    free(img);
    st_vunit_free(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_boot_paths),
                                        cmocka_unit_test(test_uart_rom) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
