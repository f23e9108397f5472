/* Flash memory model of an STM32 (pages, erase state, 64-bit programming, option bytes,
 * read protection), shared by every device model of one unit: the ROM DFU model, the
 * AN3155 model, Katapult and the Klipper application all see the same st_flash.
 * Operations never sleep: they return what the silicon would take (datasheet timing
 * profile) so each protocol model presents the delay its own way (DFU bwPollTimeout,
 * a late Katapult answer), and the model sums it into the device limit. Thread-safe. */
#ifndef STATION_PROTOCOLS_SIM_FLASH_H
#define STATION_PROTOCOLS_SIM_FLASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "station/core/mcu.h"
#include "station/core/timing.h"

/* Results of flash operations (what the peripheral's status register would say). */
enum st_flash_result {
    ST_FLASH_OK = 0,
    ST_FLASH_ERR_ADDRESS = -1,     /* outside main flash / region */
    ST_FLASH_ERR_NOT_ERASED = -2,  /* programming a double word that is not blank */
    ST_FLASH_ERR_PROG = -3,        /* programming failed (injected fault) */
    ST_FLASH_ERR_PROTECTED = -4,   /* read protection active */
    ST_FLASH_ERR_POWER_LOST = -5,  /* the injected power loss has happened */
};

typedef struct st_flash st_flash;

st_flash *st_flash_new(const st_mcu *mcu, st_timing_profile timing);
void st_flash_free(st_flash *f);
const st_mcu *st_flash_mcu(const st_flash *f);
st_timing_profile st_flash_timing(const st_flash *f);

/* Main flash. addr is absolute. Reads of the option-byte and OTP areas are served too. */
int st_flash_read(st_flash *f, uint32_t addr, uint8_t *buf, size_t len);
/* Erase the page holding addr. *cost_us (may be NULL) gets the device time. */
int st_flash_erase_page(st_flash *f, uint32_t addr, uint64_t *cost_us);
int st_flash_mass_erase(st_flash *f, uint64_t *cost_us);
/* Program len bytes at addr. The covered 64-bit double words must be blank; a partial
 * double word is completed with the bytes already there (0xFF), as the ROM does. */
int st_flash_program(st_flash *f, uint32_t addr, const uint8_t *data, size_t len,
                     uint64_t *cost_us);
bool st_flash_page_blank(st_flash *f, uint32_t addr);
uint32_t st_flash_page_index(const st_flash *f, uint32_t addr);
bool st_flash_in_main(const st_flash *f, uint32_t addr, size_t len);

/* Load contents directly (a unit that arrives already holding an image). */
void st_flash_preload(st_flash *f, uint32_t addr, const uint8_t *data, size_t len);

/* Option bytes (raw image of mcu->optbytes_size bytes) and read protection. */
int st_flash_write_optbytes(st_flash *f, uint32_t offset, const uint8_t *data, size_t len);
void st_flash_set_rdp(st_flash *f, bool protected_);
bool st_flash_rdp(st_flash *f);
/* Who accesses the flash: code running from main flash (Katapult, the application), which
 * readout protection (level 1) does not stop, or the ROM bootloader (the default), which it
 * does. A unit model says so at each boot. */
void st_flash_set_running_from_flash(st_flash *f, bool yes);

/* Fault injection. */
/* After a program operation touching this page completes, flip one bit in it. */
void st_flash_fault_corrupt_page(st_flash *f, uint32_t page_addr);
/* Programming into this page fails with ST_FLASH_ERR_PROG. */
void st_flash_fault_prog_error(st_flash *f, uint32_t page_addr);
/* Erases take this many times longer (slow erase). */
void st_flash_fault_slow_erase(st_flash *f, unsigned factor);
/* After `bytes` more bytes have been programmed, power is lost: the operation in progress
 * is cut at that byte and every later erase/program fails with ST_FLASH_ERR_POWER_LOST
 * until st_flash_power_restore. The fault fires once. */
void st_flash_fault_power_loss_after(st_flash *f, uint64_t bytes);
bool st_flash_power_lost(st_flash *f);
/* Power is back after a loss: erase/program work again and the fault is spent. Without a
 * loss it does nothing (an armed fault stays armed across resets). */
void st_flash_power_restore(st_flash *f);
void st_flash_fault_clear(st_flash *f);
/* Disarm the faults that have not fired (corrupt/prog-error pages, slow erase, a power
 * loss still counting down); a power loss that happened stays until st_flash_power_restore. */
void st_flash_fault_disarm(st_flash *f);

/* Accounting since creation or the last reset. */
typedef struct st_flash_stats {
    uint64_t busy_us;          /* datasheet device time spent erasing/programming */
    uint32_t pages_erased;
    uint64_t bytes_programmed;
    uint32_t program_ops;
} st_flash_stats;
void st_flash_get_stats(st_flash *f, st_flash_stats *out);
void st_flash_reset_stats(st_flash *f);

/* Datasheet device time for erasing `pages` pages and programming `bytes` bytes. */
uint64_t st_flash_cost_us(const st_mcu *mcu, uint32_t pages, uint64_t bytes);

#endif
