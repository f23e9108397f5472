/* Katapult bootloader device model: the device side of PROTOCOL.md as an st_stream_model
 * over a shared st_flash, byte-exact (reference §2.3), with a timing profile and fault
 * injection. Serves unit tests, the virtual fixture, benchmarks and the pty server; the CAN
 * link carries the same byte stream through its own adapter. */
#ifndef STATION_PROTOCOLS_KATAPULT_KATAPULT_MODEL_H
#define STATION_PROTOCOLS_KATAPULT_KATAPULT_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "protocols/link/stream.h"
#include "protocols/sim/flash.h"

typedef struct st_katapult_model st_katapult_model;

typedef struct st_katapult_model_cfg {
    /* Protocol version: 0x00010100 ("1.1.0", default when 0) or 0x00010000 ("1.0.0",
     * whose CONNECT answer has no version string). */
    uint32_t proto_version;
    const char *mcu;            /* default: the flash's MCU name ("stm32g431xx") */
    const char *sw_version;     /* default "v0.0.1-110-gb0bf421" */
    uint32_t block_size;        /* default 64 */
    uint32_t app_offset;        /* from flash_start; default mcu->katapult_app_offset */
    bool with_can;              /* answer GET_CANBUS_ID (else 0xF2) */
    uint8_t uuid[6];
    /* Link timing for the `datasheet` profile (ignored with ST_TIMING_NONE): per-byte wire
     * time at baud with bits_per_char (0 baud = none, e.g. USB), plus a fixed turnaround
     * per command (USB CDC ~1000 us). */
    uint32_t baud;
    uint8_t bits_per_char;      /* default 10 (8N1) */
    uint32_t turnaround_us;
    /* Called once, from inside an rx/tx/next_event call, when the device resets into the
     * application ~100 ms after COMPLETE (may be NULL). After it the model is gone:
     * it ignores input and never answers until st_katapult_model_reboot, which on_reset
     * may call itself (a unit that comes straight back into the bootloader). */
    void (*on_reset)(void *ctx, st_katapult_model *m);
    void *reset_ctx;
} st_katapult_model_cfg;

/* flash is shared, not owned, and must outlive the model. cfg may be NULL (defaults).
 * Returns NULL when out of memory or cfg is invalid. Free with st_katapult_model_free. */
st_katapult_model *st_katapult_model_new(st_flash *flash, const st_katapult_model_cfg *cfg);
void st_katapult_model_free(st_katapult_model *m);

/* The model as a stream device (for st_stream_mem_open or the pty server). */
st_stream_model *st_katapult_model_stream(st_katapult_model *m);

/* State. */
typedef enum st_katapult_model_state {
    ST_KATAPULT_MODEL_RUNNING = 0, /* in the bootloader, answering */
    ST_KATAPULT_MODEL_JUMPING,     /* COMPLETE acknowledged, reset pending */
    ST_KATAPULT_MODEL_GONE,        /* reset into the application: disconnected */
    ST_KATAPULT_MODEL_DEAD,        /* power lost: silent */
} st_katapult_model_state;
st_katapult_model_state st_katapult_model_get_state(const st_katapult_model *m);
/* Power back / reset into the bootloader again (sync state, page counter and pending output
 * cleared; the flash keeps its contents; faults stay armed). */
void st_katapult_model_reboot(st_katapult_model *m);
/* What Katapult decides at boot (reference §2.3): first app word neither 0 nor 0xFFFFFFFF. */
bool st_katapult_model_app_valid(const st_katapult_model *m);

/* Counters for tests and benchmarks. */
typedef struct st_katapult_model_stats {
    uint32_t frames_rx;     /* valid frames received */
    uint32_t nacks;         /* NACKs sent */
    uint32_t errors;        /* 0xF2 answers sent */
    uint32_t blocks_written;/* SEND_BLOCKs that programmed flash */
    uint32_t blocks_resent; /* identical retransmissions accepted */
    uint32_t blocks_read;
    uint32_t pages;         /* current page counter (what SEND_EOF reports) */
    uint64_t device_us;     /* datasheet device+wire time of all answers (device limit) */
} st_katapult_model_stats;
void st_katapult_model_get_stats(const st_katapult_model *m, st_katapult_model_stats *out);

/* Fault injection; frame counts are 1-based and count from the call. 0 disarms. */
void st_katapult_model_fault_drop_rx(st_katapult_model *m, unsigned nth);    /* host frame lost */
void st_katapult_model_fault_drop_tx(st_katapult_model *m, unsigned nth);    /* answer lost */
void st_katapult_model_fault_corrupt_rx(st_katapult_model *m, unsigned nth); /* bit flip */
void st_katapult_model_fault_corrupt_tx(st_katapult_model *m, unsigned nth);
/* Answer NACK instead of processing the next k valid frames. */
void st_katapult_model_fault_nack_storm(st_katapult_model *m, unsigned k);
/* Answer BUSY (0xF3) instead of processing the next k valid frames. */
void st_katapult_model_fault_busy(st_katapult_model *m, unsigned k);
/* COMPLETE is not acknowledged; the jump still happens ~100 ms later. */
void st_katapult_model_fault_silent_complete(st_katapult_model *m, bool on);
/* Power is lost in the middle of the nth SEND_BLOCK from now: half of that block is
 * programmed, the model never answers again (until reboot + st_flash_power_restore). */
void st_katapult_model_fault_power_loss_at_block(st_katapult_model *m, unsigned nth);
void st_katapult_model_fault_clear(st_katapult_model *m);

#endif
