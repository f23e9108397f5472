/* ST USART ROM bootloader (AN3155) host engine over a byte stream, and the device table
 * (reference 4.5) as data. Wire spec in our own words: PROTOCOL.md. The engine never opens
 * the port or drives entry pins: the caller gives it a ready st_stream (8E1, or 8N1 on a
 * pty) and runs the entry plan (entry.h) first. One st_an3155 per unit; no globals. */
#ifndef STATION_PROTOCOLS_AN3155_AN3155_H
#define STATION_PROTOCOLS_AN3155_AN3155_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocols/link/stream.h"
#include "station/core/err.h"
#include "station/core/log.h"
#include "station/core/progress.h"

/* Wire bytes. */
#define ST_AN_SYNC 0x7F
#define ST_AN_ACK 0x79
#define ST_AN_NACK 0x1F
#define ST_AN_BUSY 0x76
#define ST_AN_CMD_GET 0x00
#define ST_AN_CMD_GET_VERSION 0x01
#define ST_AN_CMD_GET_ID 0x02
#define ST_AN_CMD_READ 0x11
#define ST_AN_CMD_GO 0x21
#define ST_AN_CMD_WRITE 0x31
#define ST_AN_CMD_ERASE 0x43
#define ST_AN_CMD_EXT_ERASE 0x44
#define ST_AN_CMD_WRITE_PROTECT 0x63
#define ST_AN_CMD_WRITE_UNPROTECT 0x73
#define ST_AN_CMD_READOUT_PROTECT 0x82
#define ST_AN_CMD_READOUT_UNPROTECT 0x92
#define ST_AN_MAX_BLOCK 256u
#define ST_AN_MAX_ERASE_BATCH 511u /* stm32flash's page-erase batch (reference 4.2) */

/* ---- device table (reference 4.5; stm32flash dev_table.c, AN2606) -------------------- */

typedef struct st_an_dev {
    uint16_t pid;
    const char *name;           /* as stm32flash prints it */
    uint32_t ram_start, ram_end;       /* RAM the ROM leaves free */
    uint32_t flash_start, flash_end;   /* family maximum */
    uint32_t page_size;         /* uniform erase unit; 0: sectors[] */
    const uint32_t *sectors;    /* F2/F4 sector sizes, 0-terminated, the last repeats */
    uint32_t opt_start, opt_end;       /* option bytes, inclusive end */
    uint32_t sys_start, sys_end;       /* system memory */
    uint8_t write_align;        /* write address alignment (G4: 8, others 4) */
    bool legacy_erase_only;     /* ROM V2.x: 0x43 only (informational: Get decides) */
    uint32_t startup_us;        /* ROM start-up after NRST release (AN2606) */
    uint32_t uid_addr;          /* 96-bit unique device ID (reference manuals) */
    /* From this unit on, one unit per erase command (0: none). G0B1 V9.2 cannot erase
     * several bank-2 pages in one command (AN2606); bank 2 starts at page 128. */
    uint32_t erase_single_from;
} st_an_dev;

/* NULL when unknown. */
const st_an_dev *st_an_dev_find(uint16_t pid);
/* The table, terminated by a row with name NULL. */
const st_an_dev *st_an_dev_table(void);
/* The erase unit (page or sector) holding addr: its index, start and size. false when addr
 * is outside flash. */
bool st_an_dev_unit(const st_an_dev *d, uint32_t addr, uint32_t *index, uint32_t *start,
                    uint32_t *size);

/* An erase plan for [addr, addr+len): stm32flash's rule (reference 4.5): first unit =
 * floor(start), count = ceil(end) - first; a range from unit 0 to the flash end is a mass
 * erase. Fails (ST_ERR_INVAL) when the range leaves flash. */
typedef struct st_an_erase_plan {
    bool mass;
    uint32_t first, count;       /* units (pages or sectors) */
    uint32_t start, end;         /* byte range the units cover */
} st_an_erase_plan;
int st_an_plan_erase(const st_an_dev *d, uint32_t addr, uint32_t len, st_an_erase_plan *out,
                     st_err *err);

/* ---- engine -------------------------------------------------------------------------- */

typedef struct st_an3155 st_an3155;

typedef struct st_an_cfg {
    unsigned byte_timeout_ms;    /* one reply byte (default 500, stm32flash's VTIME 5) */
    unsigned write_timeout_ms;   /* ACK after a block write (default 1000) */
    unsigned page_erase_ms;      /* per page/sector in one erase command (default 5000) */
    unsigned mass_erase_ms;      /* default 35000 */
    unsigned retries;            /* per command on a garbled or missing answer (default 3) */
    unsigned resync_wait_ms;     /* wait for an answer to each resync byte (default 20) */
    const st_logger *log;        /* may be NULL */
} st_an_cfg;

/* link is not owned. cfg may be NULL (defaults). */
int st_an_new(st_stream *link, const st_an_cfg *cfg, st_an3155 **out, st_err *err);
void st_an_free(st_an3155 *a);

/* How the 0x7F handshake went (for the report). */
typedef enum st_an_sync_how {
    ST_AN_SYNC_ACK = 0,        /* first 0x7F acknowledged: a fresh ROM */
    ST_AN_SYNC_NACK,           /* NACK: already synced (interface not closed properly) */
    ST_AN_SYNC_LATE_ACK,       /* first 0x7F lost (ROM not up yet), second acknowledged:
                                  stm32flash gives up here (reference 4.5 correction 1) */
    ST_AN_SYNC_RESYNC,         /* the ROM was inside a command: bytes until it answered */
} st_an_sync_how;
const char *st_an_sync_name(st_an_sync_how h);

/* 0x7F autobaud with recovery; then a Get proves the command layer is in step.
 * *how (may be NULL) says which path worked. */
int st_an_sync(st_an3155 *a, st_an_sync_how *how, st_err *err);

typedef struct st_an_info {
    uint8_t bl_version;          /* from Get (0x31 = 3.1) */
    uint8_t cmds[32];            /* command codes Get listed */
    size_t n_cmds;
    uint8_t version;             /* Get Version */
    uint8_t option1, option2;
    uint16_t pid;                /* Get ID */
    const st_an_dev *dev;        /* NULL when the PID is not in the table */
    bool ext_erase;              /* erase with 0x44 (else 0x43) */
} st_an_info;

/* Get, Get Version, Get ID (stm32flash's order: 01, 00, 02 - reference 4.5). An unknown PID
 * is an error (ST_ERR_UNSUPPORTED) naming it. The result is also kept in the engine. */
int st_an_identify(st_an3155 *a, st_an_info *out, st_err *err);
const st_an_info *st_an_get_info(const st_an3155 *a);
bool st_an_has_cmd(const st_an_info *i, uint8_t cmd);

/* Single commands. Reads and writes of any length are split into 256-byte blocks. */
int st_an_read(st_an3155 *a, uint32_t addr, uint8_t *buf, size_t len, const st_progress *p,
               st_err *err);
/* addr must meet the part's write alignment; a tail that is not a multiple of 4 (8 on G4)
 * is padded with 0xFF. */
int st_an_write(st_an3155 *a, uint32_t addr, const uint8_t *data, size_t len,
                const st_progress *p, st_err *err);
/* Erase units (pages / F4 sectors) first..first+count-1, batched; or everything. */
int st_an_erase_units(st_an3155 *a, uint32_t first, uint32_t count, st_err *err);
int st_an_mass_erase(st_an3155 *a, st_err *err);
int st_an_go(st_an3155 *a, uint32_t addr, st_err *err);
/* Readout unprotect (mass-erases the chip) and write unprotect: both reset the MCU, so the
 * caller re-enters the bootloader and syncs again. */
int st_an_readout_unprotect(st_an3155 *a, st_err *err);
int st_an_write_unprotect(st_an3155 *a, st_err *err);

/* Flash an image with the probe-then-decide rule: for each erase unit the image touches,
 * read the image's part of it block by block while it equals the image; at the first
 * differing block the unit is erased and written (and, with verify, read back at once); a
 * unit equal to the end is skipped and counts as verified. A changed image costs at most
 * one extra block read per unit. Without skip_identical: stm32flash's plan (erase the
 * units, or mass erase for a whole-flash image; write; verify everything).
 * stats may be NULL; o NULL = st_an_flash_opts_default. */
typedef struct st_an_flash_opts {
    bool skip_identical;         /* probe (default true via st_an_flash_opts_default) */
    bool verify;                 /* read back after writing */
    bool mass_erase_ok;          /* a full-flash image without probing may mass-erase */
} st_an_flash_opts;
typedef struct st_an_flash_stats {
    uint32_t units_total, units_skipped, units_erased, units_written;
    uint64_t bytes_written, bytes_read, bytes_verified;
    bool mass_erased;
} st_an_flash_stats;
void st_an_flash_opts_default(st_an_flash_opts *o);
int st_an_flash(st_an3155 *a, uint32_t addr, const uint8_t *data, size_t len,
                const st_an_flash_opts *o, st_an_flash_stats *stats, const st_progress *p,
                st_err *err);
/* Compare flash with data; ST_ERR_VERIFY naming the first differing address. */
int st_an_verify(st_an3155 *a, uint32_t addr, const uint8_t *data, size_t len,
                 const st_progress *p, st_err *err);

/* The 96-bit unique ID (Read Memory at the table's uid_addr) as 24 upper-case hex digits,
 * words in address order; the unit's identity in reports. Fails under readout protection. */
int st_an_read_uid(st_an3155 *a, char hex[25], st_err *err);

/* Counters since st_an_new. */
typedef struct st_an_stats {
    uint32_t commands, nacks, retries;
    uint64_t tx_bytes, rx_bytes;
} st_an_stats;
void st_an_get_stats(const st_an3155 *a, st_an_stats *out);

#endif
