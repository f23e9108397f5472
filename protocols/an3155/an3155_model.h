/* AN3155 USART ROM bootloader device model: the device side of PROTOCOL.md as an
 * st_stream_model over a shared st_flash (the same flash the unit's other models see),
 * byte by byte as the ROM parses it, with a timing profile (8E1 wire time at the configured
 * baud, datasheet erase/program times), readout protection and fault injection. Serves unit
 * tests (in-memory stream), the pty server (stm32flash, the station's termios link) and the
 * virtual unit. The part (PID, RAM, erase units, write alignment, legacy Erase) comes from
 * the engine's device table (an3155.h), so model and engine read the same data. */
#ifndef STATION_PROTOCOLS_AN3155_AN3155_MODEL_H
#define STATION_PROTOCOLS_AN3155_AN3155_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "protocols/an3155/an3155.h"
#include "protocols/link/stream.h"
#include "protocols/sim/flash.h"

typedef struct st_an_model st_an_model;

typedef struct st_an_model_cfg {
    uint16_t pid;              /* device-table row; 0: the flash MCU's usart_pid */
    uint8_t bl_version;        /* Get's version byte; 0: 0x31 (0x22 for legacy-Erase parts) */
    /* Framing the host must use. The ROM speaks 8E1; on a pty the parity cannot be seen
     * (a pty drops PARENB), so a pty server sets accept_8n1. With it false, a host that
     * sets anything but 8E1 is ignored as a real ROM would see parity errors. */
    bool accept_8n1;
    uint32_t baud;             /* datasheet wire time; 0: 115200 */
    uint32_t startup_us;       /* ROM start-up after reset; 0: the device table's */
    uint8_t uid[12];           /* the 96-bit unique ID; all zero: a fixed one from the PID */
    /* Go jumped (to flash or RAM) or the ROM reset itself (unprotect commands; rom=true).
     * Called from inside rx/tx; may be NULL. After a Go the model is silent until
     * st_an_model_reset. */
    void (*on_exit)(void *ctx, st_an_model *m, uint32_t go_addr, bool rom);
    void *ctx;
} st_an_model_cfg;

/* flash is shared and must outlive the model; cfg may be NULL. NULL when the PID is not in
 * the device table or its flash does not match the st_flash's MCU. */
st_an_model *st_an_model_new(st_flash *flash, const st_an_model_cfg *cfg);
void st_an_model_free(st_an_model *m);
st_stream_model *st_an_model_stream(st_an_model *m);
const st_an_dev *st_an_model_dev(const st_an_model *m);

/* Reset (NRST released): rom = true starts the bootloader (it takes startup_us, then
 * waits for 0x7F); false leaves the model silent (the application runs). */
void st_an_model_reset(st_an_model *m, bool rom, uint64_t now_us);

/* The ROM stops answering (another program runs) but what it already sent still arrives:
 * for a jump or a reset the model itself asked for (on_exit). */
void st_an_model_go_silent(st_an_model *m);

typedef enum st_an_model_state {
    ST_AN_MODEL_OFF = 0,   /* not in the bootloader (application, power lost) */
    ST_AN_MODEL_STARTING,  /* ROM starting: bytes are lost */
    ST_AN_MODEL_WAIT_SYNC, /* waiting for 0x7F */
    ST_AN_MODEL_READY,     /* synced, parsing commands */
} st_an_model_state;
st_an_model_state st_an_model_get_state(const st_an_model *m, uint64_t now_us);

typedef struct st_an_model_stats {
    uint32_t syncs, commands, nacks, reads, writes, erases, mass_erases, gos;
    uint32_t refused_line;     /* line settings the ROM could not follow */
    uint32_t last_go;          /* address of the last Go */
    uint64_t rx_bytes, tx_bytes;
    uint64_t device_us;        /* wire time of every byte + flash busy time (device limit) */
    st_stream_line line;       /* as the host last set it (parity 'N' on a pty) */
} st_an_model_stats;
void st_an_model_get_stats(const st_an_model *m, st_an_model_stats *out);

/* Faults: counts are 1-based from the call; 0 disarms.
 *   nack:N        NACK the Nth command instead of running it
 *   silent:N      swallow the Nth command: no answer at all
 *   noise-rx:N    the Nth byte from the host arrives damaged (a parity/noise hit)
 *   noise-tx:N    the Nth byte to the host leaves damaged
 *   slow-erase:F  erases take F times the datasheet time (st_flash)
 *   power-loss:N  power is lost after N more programmed bytes: the ROM goes silent
 *   rdp           readout protection on (only Get/Get Version/Get ID/0x92 work)
 *   late-start:MS the ROM needs MS ms after reset (a first 0x7F is lost)
 * Returns false for an unknown fault string. */
bool st_an_model_fault(st_an_model *m, const char *fault);

#endif
