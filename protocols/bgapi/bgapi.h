/* BGAPI UART DFU host engine (PROTOCOL.md §4): puts a Silicon Labs Bluetooth module (an
 * NCP on the host UART) into its Gecko bootloader, uploads a GBL image, finishes, restarts
 * it into the new firmware and reads the stack version from its boot event, over any byte
 * stream (tty, USB-CDC, the in-memory stream to the device model). Both bootloader
 * generations: up to GSDK 3.2 (dfu_reset, bg_err codes) and from GSDK 4.0 (system_reset,
 * sl_status_t codes). No printing, no globals, no sleeps: waits are read deadlines. */
#ifndef STATION_PROTOCOLS_BGAPI_BGAPI_H
#define STATION_PROTOCOLS_BGAPI_BGAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocols/bgapi/frame.h"
#include "protocols/link/stream.h"
#include "station/core/err.h"
#include "station/core/log.h"
#include "station/core/progress.h"

/* Defaults (used when an option is 0). */
#define ST_BGAPI_CHUNK_DEFAULT 252          /* largest multiple of 4 in a 255-byte payload */
#define ST_BGAPI_ENTRY_TIMEOUT_MS 10000     /* evt_dfu_boot after the first reset command */
#define ST_BGAPI_RESEND_MS 1000             /* the vendor host resends once a second */
#define ST_BGAPI_RSP_TIMEOUT_MS 2000        /* each response (flash page erase included) */
#define ST_BGAPI_BOOT_TIMEOUT_MS 5000       /* evt_system_boot after the reset to normal */
#define ST_BGAPI_QUIET_MS 3200              /* > the bootloader's 3 s payload timeout */

/* How the module was put into DFU mode. */
typedef enum st_bgapi_entry {
    ST_BGAPI_ENTRY_NONE = 0,
    ST_BGAPI_ENTRY_SYSTEM_RESET = 1, /* system_reset(1): GSDK 4.0 and later */
    ST_BGAPI_ENTRY_DFU_RESET = 2,    /* dfu_reset(1): up to GSDK 3.2 */
} st_bgapi_entry;
/* "system_reset(1)" / "dfu_reset(1)" / "none". */
const char *st_bgapi_entry_name(st_bgapi_entry e);

typedef struct st_bgapi_opts {
    unsigned chunk;              /* upload chunk: multiple of 4, 4..252; 0 = 252 */
    st_bgapi_entry first;        /* reset tried first; 0 = system_reset (then dfu_reset) */
    unsigned entry_timeout_ms;   /* 0 = ST_BGAPI_ENTRY_TIMEOUT_MS */
    unsigned resend_ms;          /* 0 = ST_BGAPI_RESEND_MS */
    unsigned rsp_timeout_ms;     /* 0 = ST_BGAPI_RSP_TIMEOUT_MS */
    unsigned boot_timeout_ms;    /* 0 = ST_BGAPI_BOOT_TIMEOUT_MS */
    unsigned quiet_ms;           /* 0 = ST_BGAPI_QUIET_MS */
    const st_logger *log;        /* may be NULL */
    const st_progress *progress; /* may be NULL; phase "write" in bytes */
} st_bgapi_opts;

/* Check options: chunk a multiple of 4 within 4..252. */
int st_bgapi_opts_check(const st_bgapi_opts *o, st_err *err);

typedef struct st_bgapi_result {
    /* enter */
    st_bgapi_entry entry;          /* the reset that brought evt_dfu_boot */
    st_bgapi_gen gen;              /* from the entry method */
    uint32_t bootloader_version;   /* evt_dfu_boot: major<<24 | minor<<16 | customer */
    unsigned entry_sends;          /* reset commands sent */
    bool saw_boot_failure;         /* evt_dfu_boot_failure on the way in */
    uint16_t boot_failure_reason;
    /* upload */
    uint32_t chunk_size, chunks, chunks_done;
    uint64_t bytes_done;
    uint16_t last_result;          /* result of the last response that failed, or 0 */
    /* finish + restart */
    bool finished;                 /* finish answered 0 */
    bool booted;                   /* evt_system_boot arrived */
    st_bgapi_system_boot stack;
    /* link health */
    uint64_t dropped_bytes;        /* bytes skipped while resyncing */
    uint32_t ignored_frames;       /* well-formed frames the DFU did not expect */
} st_bgapi_result;

typedef struct st_bgapi st_bgapi;

/* Open an engine on s (not owned). opts may be NULL. Sends nothing. Free with
 * st_bgapi_close. r (owned by the engine) accumulates what every step found. */
int st_bgapi_open(st_stream *s, const st_bgapi_opts *opts, st_bgapi **out, st_err *err);
void st_bgapi_close(st_bgapi *b);
const st_bgapi_result *st_bgapi_get_result(const st_bgapi *b);

/* Reset into DFU mode: send the first reset, wait resend_ms for evt_dfu_boot, send the
 * other, and so on, until evt_dfu_boot or the entry deadline. Records the method that
 * worked, the generation and the bootloader version. ST_ERR_TIMEOUT names both resets and
 * how often each was sent (and the bytes that were not BGAPI: a wrong baud rate). */
int st_bgapi_enter_dfu(st_bgapi *b, st_err *err);

/* dfu_flash_set_address(0), then the image in chunks, every response checked. The image
 * must be a multiple of 4 long. Errors name the chunk, its byte range and the result code. */
int st_bgapi_upload(st_bgapi *b, const uint8_t *img, size_t n, st_err *err);

/* dfu_flash_upload_finish: any non-zero result is a failure (ST_ERR_DEVICE) that names the
 * code; the module then stays in DFU mode. */
int st_bgapi_finish(st_bgapi *b, st_err *err);

/* Reset to normal with the entry's own command (dfu_reset(0) or system_reset(0)) and wait
 * for evt_system_boot (stack version recorded). evt_dfu_boot_failure (then evt_dfu_boot)
 * fails naming the reason; so does a bare evt_dfu_boot or silence. */
int st_bgapi_boot(st_bgapi *b, st_err *err);

/* Wait quietly for the quiet time, discarding input: lets the bootloader drop a packet it
 * got only part of (its 3 s payload timeout) before the next attempt. */
void st_bgapi_quiet(st_bgapi *b);

#endif
