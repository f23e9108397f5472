/* The MCU table. Figures: STM32G431 datasheet flash table (typical) and
 * shared/reference/protocols.md section 1.7; USB ids: AN2606 (ROM DFU), Katapult and Klipper
 * sources (protocols.md section 2). */
#include "mcu.h"

#include <stddef.h>
#include <strings.h>
#include <string.h>

static const st_mcu mcus[] = {
    {
        .name = "stm32g431xx",
        .flash_start = 0x08000000u, .flash_size = 128u * 1024u, .page_size = 2048u,
        .sram_start = 0x20000000u, .sram_size = 0x8000u,
        .optbytes_start = 0x1FFF7800u, .optbytes_size = 40u,
        .otp_start = 0x1FFF7000u, .otp_size = 1024u,
        .sysmem_start = 0x1FFF0000u,
        .usart_pid = 0x468,
        .katapult_app_offset = 0x2000u,
        .usb_rom_dfu = { 0x0483, 0xdf11 },  /* AN2606 */
        .usb_katapult = { 0x1d50, 0x6177 }, /* Katapult's USB-CDC id (protocols.md 2.4) */
        .usb_klipper = { 0x1d50, 0x614e },  /* Klipper's USB-CDC id */
        .katapult_usb_prime = true,
        .page_erase_us = 22000u, .dword_program_us = 82u, .mass_erase_us = 22000u,
    },
    /* STM32G0B1xE: 512 KiB in two banks of 2 KiB pages (DS13560 typ.: page erase 22 ms,
     * 64 bits 85 us). */
    {
        .name = "stm32g0b1xe",
        .flash_start = 0x08000000u, .flash_size = 512u * 1024u, .page_size = 2048u,
        .sram_start = 0x20000000u, .sram_size = 0x24000u,
        .optbytes_start = 0x1FFF7800u, .optbytes_size = 128u,
        .otp_start = 0x1FFF7000u, .otp_size = 1024u,
        .sysmem_start = 0x1FFF0000u,
        .usart_pid = 0x467,
        .katapult_app_offset = 0x2000u,
        .usb_rom_dfu = { 0x0483, 0xdf11 },
        .usb_katapult = { 0x1d50, 0x6177 },
        .usb_klipper = { 0x1d50, 0x614e },
        .page_erase_us = 22000u, .dword_program_us = 85u, .mass_erase_us = 22000u,
    },
    /* STM32F103xB: 1 KiB pages, half-word programming (40 us typ. per 16 bits, so 160 us
     * per 64 bits), 20 ms page and mass erase (DS5319 typ.). ROM V2.2: legacy Erase only. */
    {
        .name = "stm32f103xb",
        .flash_start = 0x08000000u, .flash_size = 128u * 1024u, .page_size = 1024u,
        .sram_start = 0x20000000u, .sram_size = 0x5000u,
        .optbytes_start = 0x1FFFF800u, .optbytes_size = 16u,
        .sysmem_start = 0x1FFFF000u,
        .usart_pid = 0x410,
        .katapult_app_offset = 0x2000u,
        .usb_katapult = { 0x1d50, 0x6177 }, /* no ROM USB DFU on the F103 */
        .usb_klipper = { 0x1d50, 0x614e },
        .page_erase_us = 20000u, .dword_program_us = 160u, .mass_erase_us = 20000u,
    },
    /* STM32F401xC (Elegoo Neptune 4 mainboard, seed 002) and STM32F407xG: F4 flash has
     * 16/64/128 KiB sectors; page_size is the smallest (16 KiB) and the AN3155 model erases
     * a sector as its 16 KiB pieces. Timings: RM0368/RM0090 and the datasheets, x32
     * parallelism: 128 KiB sector erase 1 s typ. (125 ms per 16 KiB), word program 16 us. */
    {
        .name = "stm32f401xc",
        .flash_start = 0x08000000u, .flash_size = 256u * 1024u, .page_size = 16384u,
        .sram_start = 0x20000000u, .sram_size = 0x10000u,
        .optbytes_start = 0x1FFFC000u, .optbytes_size = 16u,
        .otp_start = 0x1FFF7800u, .otp_size = 528u,
        .sysmem_start = 0x1FFF0000u,
        .usart_pid = 0x423,
        .katapult_app_offset = 0x8000u,
        .usb_rom_dfu = { 0x0483, 0xdf11 },  /* AN2606: the F4 ROM has USB DFU on OTG FS */
        .usb_katapult = { 0x1d50, 0x6177 },
        .usb_klipper = { 0x1d50, 0x614e },
        .page_erase_us = 125000u, .dword_program_us = 32u, .mass_erase_us = 2000000u,
    },
    {
        .name = "stm32f407xx",
        .flash_start = 0x08000000u, .flash_size = 1024u * 1024u, .page_size = 16384u,
        .sram_start = 0x20000000u, .sram_size = 0x20000u,
        .optbytes_start = 0x1FFFC000u, .optbytes_size = 16u,
        .otp_start = 0x1FFF7800u, .otp_size = 528u,
        .sysmem_start = 0x1FFF0000u,
        .usart_pid = 0x413,
        .katapult_app_offset = 0x8000u,
        .usb_rom_dfu = { 0x0483, 0xdf11 },  /* AN2606: the F4 ROM has USB DFU on OTG FS */
        .usb_katapult = { 0x1d50, 0x6177 },
        .usb_klipper = { 0x1d50, 0x614e },
        .page_erase_us = 125000u, .dword_program_us = 32u, .mass_erase_us = 8000000u,
    },
    {
        /* Silicon Labs EFR32BG13 (the SoC of BGM13P Bluetooth modules), for the BGAPI UART
         * DFU module model: 512 KiB flash at 0 in 2 KiB pages, 64 KiB SRAM. Timings are
         * approximate datasheet figures (page erase ~20 ms, 32-bit word ~11 us), used only
         * by the `datasheet` timing profile. No ST ROM: the AN3155/Katapult fields are 0. */
        .name = "efr32bg13p632f512",
        .flash_start = 0x00000000u, .flash_size = 512u * 1024u, .page_size = 2048u,
        .sram_start = 0x20000000u, .sram_size = 0x10000u,
        .page_erase_us = 20000u, .dword_program_us = 22u, .mass_erase_us = 20000u,
    },
    { .name = NULL },
};

const st_mcu *st_mcu_table(void)
{
    return mcus;
}

const st_mcu *st_mcu_find(const char *name)
{
    if (!name)
        return NULL;
    for (const st_mcu *m = mcus; m->name; m++) {
        if (strcasecmp(m->name, name) == 0)
            return m;
        /* "stm32g431" matches "stm32g431xx" */
        size_t n = strlen(name);
        if (n >= 9 && strncasecmp(m->name, name, n) == 0)
            return m;
    }
    return NULL;
}
