/* Bluetooth module model: a Silicon Labs module running as an NCP on its UART, with the
 * Gecko bootloader's BGAPI UART DFU (PROTOCOL.md §6), in either generation (up to GSDK 3.2:
 * dfu_reset and bg_err codes; from GSDK 4.0: system_reset and sl_status_t codes). An
 * st_stream_model over its own st_flash: it parses uploaded GBL streams as the bootloader
 * does, writes PROG data over the application in place (standalone bootloader, no staging
 * slot), keeps the documented timing limits (rest of a header within 1 s of its first
 * byte, the payload within 3 s) and boots what its flash holds. Faults: silence after a
 * reset, wrong baud, dropped bytes, power loss mid-upload, a finish that does not verify.
 * Serves unit tests, the virtual fixture and station-sim's pty. Not thread-safe: one
 * caller at a time (the in-memory stream or the pty server). */
#ifndef STATION_PROTOCOLS_BGAPI_BGAPI_MODEL_H
#define STATION_PROTOCOLS_BGAPI_BGAPI_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "protocols/bgapi/frame.h"
#include "protocols/link/stream.h"
#include "protocols/sim/flash.h"
#include "station/core/err.h"

typedef struct st_bgapi_model st_bgapi_model;

typedef struct st_bgapi_model_cfg {
    st_bgapi_gen gen;              /* 0 = ST_BGAPI_GEN_GSDK4 */
    uint32_t bootloader_version;   /* 0 = 0x010c0000 (1.12, GSDK 3.2) / 0x02040000 (2.4) */
    uint32_t baud;                 /* the module's UART; 0 = 115200 */
    bool flow_control;             /* its UART uses RTS/CTS: a host that does not (or the
                                      other way round) gets nothing through */
    uint32_t app_start;            /* where an application must be written to boot; 0 */
    bool no_app;                   /* arrives empty: boots into the bootloader */
    uint32_t app_version;          /* stack version of the arriving firmware
                                      (st_gbl_stack_version); 0 = 1.0.0 build 1 */
    uint16_t hw;                   /* evt_system_boot hw field */
    uint8_t system_boot_len;       /* 18 (SDK 2.12+) or 14 (SDK 2.7); 0 = 18 */
    bool require_signed;           /* bootloader built to require signed images */
    bool enforce_len4;             /* answer invalid-parameter to uploads not a multiple of 4
                                      (UNCONFIRMED on real parts; off by default) */
    uint32_t header_timeout_ms;    /* 0 = 1000 */
    uint32_t payload_timeout_ms;   /* 0 = 3000 */
} st_bgapi_model_cfg;

/* flash (not owned, outlives the model) is the module's own (st_mcu "efr32bg13p632f512").
 * cfg may be NULL. NULL on a bad cfg or out of memory. */
st_bgapi_model *st_bgapi_model_new(st_flash *flash, const st_bgapi_model_cfg *cfg);
void st_bgapi_model_free(st_bgapi_model *m);
st_stream_model *st_bgapi_model_stream(st_bgapi_model *m);

typedef enum st_bgapi_model_state {
    ST_BGAPI_MODEL_APP = 0,    /* the NCP firmware runs */
    ST_BGAPI_MODEL_BOOTLOADER, /* in DFU mode */
    ST_BGAPI_MODEL_DEAD,       /* power lost: silent until st_bgapi_model_power_cycle */
} st_bgapi_model_state;
st_bgapi_model_state st_bgapi_model_get_state(const st_bgapi_model *m);

/* Power off and on: the module boots what its flash holds (the application if it is
 * whole, else the bootloader with evt_dfu_boot_failure then evt_dfu_boot). */
void st_bgapi_model_power_cycle(st_bgapi_model *m);
/* Whether the application would boot, and its stack version. */
bool st_bgapi_model_app_valid(const st_bgapi_model *m);
uint32_t st_bgapi_model_app_version(const st_bgapi_model *m);

typedef struct st_bgapi_model_stats {
    uint32_t resets_obeyed, resets_ignored; /* reset commands acted on / not */
    uint32_t dfu_boots, app_boots, boot_failures; /* events sent */
    uint32_t packets, packets_timed_out, bytes_skipped; /* framing */
    uint32_t uploads, upload_errors, finishes, finish_errors;
    uint32_t installs;             /* images completed and verified */
    uint64_t bytes_programmed;
    uint64_t device_us;            /* datasheet wire + flash time of all answers */
} st_bgapi_model_stats;
void st_bgapi_model_get_stats(const st_bgapi_model *m, st_bgapi_model_stats *out);

/* Faults (counted from the call; 0 disarms). */
/* The next k reset commands are lost: the module neither restarts nor answers. */
void st_bgapi_model_fault_silent(st_bgapi_model *m, unsigned k);
/* The nth command packet from now loses its last byte on the wire. */
void st_bgapi_model_fault_drop_rx(st_bgapi_model *m, unsigned nth);
/* Power fails after `bytes` more bytes are programmed: the module goes silent. */
void st_bgapi_model_fault_power_loss(st_bgapi_model *m, uint64_t bytes);
/* The next k complete images fail verification (finish answers the checksum error). */
void st_bgapi_model_fault_finish_checksum(st_bgapi_model *m, unsigned k);
/* The module's UART runs at this baud (a host at another rate sends and reads garbage). */
void st_bgapi_model_set_baud(st_bgapi_model *m, uint32_t baud);
void st_bgapi_model_fault_clear(st_bgapi_model *m);
/* Apply a fault string: "silent[:K]", "drop-rx:N", "power-loss:BYTES",
 * "finish-checksum[:K]", "baud:RATE". ST_ERR_INVAL naming the string otherwise. */
int st_bgapi_model_apply_fault(st_bgapi_model *m, const char *fault, st_err *err);

#endif
