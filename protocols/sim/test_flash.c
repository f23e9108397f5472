/* Flash model: erase/program rules, timing accounting, faults. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "protocols/sim/flash.h"

static void test_program_rules(void **state)
{
    st_flash *f = st_flash_new(st_mcu_find("stm32g431xx"), ST_TIMING_DATASHEET);
    uint8_t d[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 }, r[16];
    uint64_t c;
    assert_int_equal(st_flash_program(f, 0x08000000u, d, 16, &c), ST_FLASH_OK);
    assert_int_equal(c, 2 * 82);
    assert_int_equal(st_flash_read(f, 0x08000000u, r, 16), 0);
    assert_memory_equal(d, r, 16);
    assert_int_equal(st_flash_program(f, 0x08000004u, d, 4, NULL), ST_FLASH_ERR_NOT_ERASED);
    assert_false(st_flash_page_blank(f, 0x08000000u));
    assert_int_equal(st_flash_erase_page(f, 0x08000010u, &c), ST_FLASH_OK);
    assert_int_equal(c, 22000);
    assert_true(st_flash_page_blank(f, 0x08000000u));
    assert_int_equal(st_flash_program(f, 0x08020000u, d, 4, NULL), ST_FLASH_ERR_ADDRESS);
    st_flash_stats s;
    st_flash_get_stats(f, &s);
    assert_int_equal(s.pages_erased, 1);
    assert_int_equal(s.busy_us, 22000 + 2 * 82);
    assert_int_equal(st_flash_cost_us(st_flash_mcu(f), 1, 16), 22000 + 2 * 82);
    uint8_t ob[4];
    assert_int_equal(st_flash_read(f, 0x1FFF7800u, ob, 4), 0);
    assert_int_equal(ob[0], 0xAA);
    st_flash_free(f);
}

static void test_faults(void **state)
{
    st_flash *f = st_flash_new(st_mcu_find("stm32g431xx"), ST_TIMING_NONE);
    uint8_t d[64], r[64];
    memset(d, 0x5A, sizeof d);
    uint64_t c = 1;
    st_flash_fault_corrupt_page(f, 0x08000800u);
    assert_int_equal(st_flash_program(f, 0x08000800u, d, 64, &c), 0);
    assert_int_equal(c, 0);
    st_flash_read(f, 0x08000800u, r, 64);
    assert_memory_not_equal(d, r, 64);
    st_flash_fault_prog_error(f, 0x08001000u);
    assert_int_equal(st_flash_program(f, 0x08001000u, d, 8, NULL), ST_FLASH_ERR_PROG);
    st_flash_fault_clear(f);
    st_flash_fault_power_loss_after(f, 20);
    /* A power-on before the loss happened keeps it armed (the unit's own first boot). */
    st_flash_power_restore(f);
    assert_int_equal(st_flash_program(f, 0x08001800u, d, 64, NULL), ST_FLASH_ERR_POWER_LOST);
    assert_true(st_flash_power_lost(f));
    st_flash_read(f, 0x08001800u, r, 64);
    assert_memory_equal(r, d, 20);
    assert_int_equal(r[20], 0xFF);
    assert_int_equal(st_flash_erase_page(f, 0x08001800u, NULL), ST_FLASH_ERR_POWER_LOST);
    st_flash_power_restore(f);
    assert_int_equal(st_flash_erase_page(f, 0x08001800u, NULL), 0);
    /* Spent: it fires once. */
    assert_int_equal(st_flash_program(f, 0x08001800u, d, 64, NULL), 0);
    st_flash_set_rdp(f, true);
    assert_int_equal(st_flash_read(f, 0x08000000u, r, 4), ST_FLASH_ERR_PROTECTED);
    st_flash_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_program_rules),
        cmocka_unit_test(test_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
