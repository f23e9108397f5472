/* Target MCU facts as data (flash/SRAM ranges, page size, IDs), looked up by name.
 * Device models and validators read the same table; a new MCU is a new row. */
#ifndef STATION_CORE_MCU_H
#define STATION_CORE_MCU_H

#include <stdbool.h>
#include <stdint.h>

/* A USB vendor:product id. */
typedef struct st_usb_id {
    uint16_t vid, pid;
} st_usb_id;

typedef struct st_mcu {
    const char *name;          /* "stm32g431xx": the string Katapult reports */
    uint32_t flash_start;      /* main flash base */
    uint32_t flash_size;       /* bytes */
    uint32_t page_size;        /* erase unit, bytes */
    uint32_t sram_start;
    uint32_t sram_size;
    uint32_t optbytes_start;   /* option-byte area as the ROM DFU reports it */
    uint32_t optbytes_size;
    uint32_t otp_start, otp_size;
    uint32_t sysmem_start;     /* ROM bootloader */
    uint16_t usart_pid;        /* AN3155 Get ID */
    uint32_t katapult_app_offset; /* application start relative to flash_start */
    st_usb_id usb_rom_dfu;     /* the ROM's USB DFU bootloader */
    st_usb_id usb_katapult;    /* Katapult's USB-CDC bootloader */
    st_usb_id usb_klipper;     /* the Klipper application over USB-CDC */
    /* flashtool's "prime": the first command after enumeration is lost on STM32s with
     * double-buffered full-speed USB (all but F2/F4/H7), so an invalid one goes first. */
    bool katapult_usb_prime;
    /* Datasheet timings (typical) for the `datasheet` timing profile. */
    uint32_t page_erase_us;
    uint32_t dword_program_us; /* one 64-bit program operation */
    uint32_t mass_erase_us;
} st_mcu;

/* Case-insensitive lookup ("stm32g431xx", "STM32G431"); NULL when unknown. */
const st_mcu *st_mcu_find(const char *name);
/* The list, terminated by a row whose name is NULL. */
const st_mcu *st_mcu_table(void);

#endif
