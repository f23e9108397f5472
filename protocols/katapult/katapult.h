/* Katapult host engine (PROTOCOL.md): connect, flash, verify, read back and start the
 * application of one unit in the Katapult bootloader, over any byte stream (tty, USB-CDC,
 * the CAN adapter stream, or the in-memory stream to the device model). Stop-and-wait with
 * flashtool.py's bounded retries (reference §2.4), except that a NACK (the device lost
 * frame sync, e.g. on the tail of a serial bootloader request) is answered by resending at
 * once, and answers to such resent commands are recognised and skipped. No printing, no
 * globals, no sleeps: pauses between retries are spent draining input until a deadline. */
#ifndef STATION_PROTOCOLS_KATAPULT_KATAPULT_H
#define STATION_PROTOCOLS_KATAPULT_KATAPULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocols/link/stream.h"
#include "station/core/digest.h"
#include "station/core/err.h"
#include "station/core/image.h"
#include "station/core/log.h"
#include "station/core/progress.h"

/* flashtool.py's numbers (reference §2.4), used when an option is 0. */
#define ST_KATAPULT_TRIES 5                /* send_command(tries=5) */
#define ST_KATAPULT_READ_TIMEOUT_MS 2000   /* read_timeout=2.0 */
#define ST_KATAPULT_BLOCK_TRIES 3          /* SEND_BLOCK tries=3 */
#define ST_KATAPULT_BLOCK_TIMEOUT_MS 5000  /* SEND_BLOCK read_timeout=5.0 */
#define ST_KATAPULT_ADDR_TRIES 3           /* echoed-address mismatch attempts */
#define ST_KATAPULT_RETRY_PAUSE_MS 500     /* drain + sleep before a resend */
#define ST_KATAPULT_BUSY_WAIT_MS 1500      /* after a BUSY (0xF3) answer */
#define ST_KATAPULT_ADDR_PAUSE_MS 100      /* after an echoed-address mismatch */
/* Entry polling: a CONNECT frame and its answer take under 3 ms at 250000 baud, so an
 * attempt unanswered after 20 ms was lost (sent while the unit rebooted) and is resent. */
#define ST_KATAPULT_CONNECT_POLL_MS 20

typedef struct st_katapult_opts {
    bool prime;                 /* send the 0x90 prime and discard one answer (STM32G4 USB) */
    unsigned tries;             /* per command; 0 = ST_KATAPULT_TRIES */
    unsigned read_timeout_ms;   /* 0 = ST_KATAPULT_READ_TIMEOUT_MS */
    unsigned block_tries;       /* 0 = ST_KATAPULT_BLOCK_TRIES */
    unsigned block_timeout_ms;  /* 0 = ST_KATAPULT_BLOCK_TIMEOUT_MS */
    unsigned addr_tries;        /* 0 = ST_KATAPULT_ADDR_TRIES */
    unsigned retry_pause_ms;    /* 0 = ST_KATAPULT_RETRY_PAUSE_MS */
    unsigned busy_wait_ms;      /* 0 = ST_KATAPULT_BUSY_WAIT_MS */
    unsigned addr_pause_ms;     /* 0 = ST_KATAPULT_ADDR_PAUSE_MS */
    /* Entry (a unit that is still rebooting into Katapult): when connect_within_ms is set,
     * CONNECT is resent every connect_poll_ms (0 = ST_KATAPULT_CONNECT_POLL_MS) until an
     * answer or until connect_within_ms have passed, instead of `tries` attempts of
     * read_timeout_ms with a drain pause between them. */
    unsigned connect_within_ms;
    unsigned connect_poll_ms;
    const st_logger *log;       /* may be NULL */
    const st_progress *progress;/* may be NULL; phases "write", "verify", "read" in bytes */
} st_katapult_opts;

typedef struct st_katapult st_katapult;

#define ST_KATAPULT_TEXT_MAX 64

/* What CONNECT reported. Strings come from the unit: bounded, printable ASCII only. */
typedef struct st_katapult_info {
    uint32_t proto_version;          /* 0x00010100 */
    char proto[16];                  /* "1.1.0" */
    uint32_t app_start;              /* 0x08002000 */
    uint32_t block_size;             /* 64, 128, 256 or 512 */
    char mcu[ST_KATAPULT_TEXT_MAX];  /* "stm32g431xx" */
    char sw_version[ST_KATAPULT_TEXT_MAX]; /* "" before protocol 1.1.0 */
    bool has_sw_version;
} st_katapult_info;

typedef struct st_katapult_result {
    uint32_t pages;            /* SEND_EOF page count (pages the device started) */
    uint32_t blocks;           /* blocks in the padded image */
    uint32_t blocks_sent;      /* SEND_BLOCKs acknowledged */
    uint32_t blocks_skipped;   /* in pages the caller said already match, or before start */
    uint32_t blocks_verified;  /* REQUEST_BLOCKs answered and compared */
    uint32_t blocks_probed;    /* flash with probe: REQUEST_BLOCKs read to decide */
    uint32_t pages_skipped;    /* flash: pages left as they were (skip_page or probe) */
    bool any_done;             /* last_addr is valid */
    uint32_t last_addr;        /* last block acknowledged (flash) or read (verify) */
    uint32_t fail_addr;        /* block being sent/read when an error stopped the run */
    uint32_t retries;          /* resends during this operation */
    uint8_t sha1[ST_SHA1_LEN]; /* flash: of the padded image; verify: of the returned data */
    char sha1_hex[2 * ST_SHA1_LEN + 1];       /* upper case, as flashtool prints it */
    uint8_t sha256[ST_SHA256_LEN];
    char sha256_hex[2 * ST_SHA256_LEN + 1];   /* lower case, as reports pin it */
} st_katapult_result;

/* Which blocks of the image st_katapult_flash sends. */
typedef struct st_katapult_flash_opts {
    /* First address to write: 0 = the image start; else a page boundary inside the image
     * (pages before it are left as they are, still hashed). */
    uint32_t start_addr;
    /* Erase-page size for start_addr and skip_page; 0 = from the MCU table by CONNECT's MCU
     * name (2048 on stm32g431xx). */
    uint32_t page_size;
    /* Return true when the page at page_addr already holds the image's bytes and must not
     * be rewritten (may be NULL). */
    bool (*skip_page)(void *ctx, uint32_t page_addr);
    void *skip_ctx;
    /* Skip identical pages by probing (when skip_page is NULL): before a page is written,
     * its first block is read back (REQUEST_BLOCK); a page that differs there is written at
     * once, and the rest of a page is read only while it still matches. A fresh unit costs
     * one read per page, a unit that holds the image one read per block. */
    bool probe;
} st_katapult_flash_opts;

/* Open an engine on s (not owned; the caller closes it after st_katapult_close). opts may
 * be NULL (defaults). Sends nothing yet. Free with st_katapult_close. */
int st_katapult_open(st_stream *s, const st_katapult_opts *opts, st_katapult **out, st_err *err);
void st_katapult_close(st_katapult *k);

/* Prime (if asked) and CONNECT; fills info (may be NULL) and remembers it. Rejects block
 * sizes other than 64/128/256/512 and malformed payloads (ST_ERR_PROTO). */
int st_katapult_connect(st_katapult *k, st_katapult_info *info, st_err *err);
/* The info of the last successful connect, or NULL. */
const st_katapult_info *st_katapult_get_info(const st_katapult *k);

/* Refuse (ST_ERR_MISMATCH) when the unit's MCU string is not `expected` (case-insensitive,
 * e.g. the job's target "stm32g431xx"). */
int st_katapult_check_mcu(const st_katapult_info *info, const char *expected, st_err *err);

/* GET_CANBUS_ID: the 6-byte UUID, in wire order (printed as 12 hex digits in this order). */
int st_katapult_get_canbus_id(st_katapult *k, uint8_t uuid[6], st_err *err);

/* Write img: SEND_BLOCK per block (last one padded with 0xFF), then SEND_EOF. The image
 * lands at img->load_addr, or at the app start when load_addr is 0; it must be block
 * aligned and not below the app start. r (may be NULL) is filled even on failure (how far
 * it got). fo may be NULL (whole image). Errors name the command and block address. */
int st_katapult_flash(st_katapult *k, const st_image *img, const st_katapult_flash_opts *fo,
                      st_katapult_result *r, st_err *err);

/* REQUEST_BLOCK for every block of the padded image; digests over the returned data; the
 * first differing block is named (ST_ERR_VERIFY). */
int st_katapult_verify(st_katapult *k, const st_image *img, st_katapult_result *r, st_err *err);

/* Read len bytes at addr (any alignment) into buf through REQUEST_BLOCK. */
int st_katapult_read(st_katapult *k, uint32_t addr, size_t len, uint8_t *buf, st_err *err);

/* COMPLETE: the device ACKs and starts the application ~100 ms later. Call it after a
 * failed flash too (flashtool's `finally`). */
int st_katapult_complete(st_katapult *k, st_err *err);

/* Resends the engine made since open (all commands). */
uint32_t st_katapult_retries(const st_katapult *k);

#endif
