/* DfuSe host engine: flash, verify, read and leave on an ST DFU bootloader (DFU 1.1 +
 * DfuSe, AN3156) over any st_usb_host backend. Pure logic over the USB link: no printing,
 * no globals; every wait is the device's bwPollTimeout or bounded by a deadline. Errors
 * name the step and the address: "write 0x08004000: device reported errPROG".
 * Wire protocol and engine behaviour: protocols/dfuse/PROTOCOL.md. */
#ifndef STATION_PROTOCOLS_DFUSE_DFUSE_H
#define STATION_PROTOCOLS_DFUSE_DFUSE_H

#include <stdbool.h>
#include <stdint.h>

#include "protocols/dfuse/layout.h"
#include "protocols/link/usb.h"
#include "station/core/err.h"
#include "station/core/image.h"
#include "station/core/log.h"
#include "station/core/progress.h"

#define ST_DFUSE_MAX_ALTS 8
#define ST_DFUSE_DEFAULT_TIMEOUT_MS 5000 /* dfu-util's control timeout (§1.1) */
/* skip_identical's probe: one full-speed packet, enough to tell a fresh page from the
 * image's (a blank page differs in its first word unless the image is blank there). */
#define ST_DFUSE_PROBE_BYTES 64u

/* DFU functional descriptor bmAttributes bits (DFU 1.1 §4.1.3). */
#define ST_DFU_ATTR_CAN_DNLOAD 0x01u
#define ST_DFU_ATTR_CAN_UPLOAD 0x02u
#define ST_DFU_ATTR_MANIFEST_TOLERANT 0x04u
#define ST_DFU_ATTR_WILL_DETACH 0x08u

typedef struct st_dfuse_alt {
    uint8_t alt;
    char name[ST_USB_STRING_MAX];   /* as read (UNTRUSTED; sanitise before printing) */
    st_dfuse_layout *layout;        /* owned by the st_dfuse; NULL if the name did not parse */
} st_dfuse_alt;

typedef struct st_dfuse_info {
    char serial[ST_USB_STRING_MAX]; /* USB serial string (UNTRUSTED) */
    uint8_t iface;
    uint16_t transfer_size;         /* wTransferSize in use */
    uint8_t attributes;             /* ST_DFU_ATTR_* */
    uint16_t detach_timeout_ms;
    uint16_t dfu_version;           /* 0x011A for DfuSe */
    uint8_t start_state, start_status; /* what the first GETSTATUS said */
    size_t nalts;
    st_dfuse_alt alts[ST_DFUSE_MAX_ALTS];
} st_dfuse_info;

typedef struct st_dfuse st_dfuse;

typedef struct st_dfuse_opts {
    /* Erase + write only pages that differ: each page's first ST_DFUSE_PROBE_BYTES are read
     * back, and the rest of the page only when those match or are blank (0xFF). A whole
     * page the image covers that reads back blank is written without an erase (flash that
     * is already erased: a factory-fresh unit costs reads, not erases). */
    bool skip_identical;
    unsigned request_timeout_ms; /* per control request and busy wait; 0 = 5000 */
    const st_progress *progress; /* phases "erase", "write", "verify", "read" (bytes) */
    /* Write with one Set Address Pointer per run and wBlockNum 2,3,4... (AN3156 block
     * arithmetic) instead of dfu-util's Set Address + wBlockNum 2 per chunk. */
    bool block_sequence;
} st_dfuse_opts;

typedef struct st_dfuse_result {
    uint32_t pages_erased, pages_written, pages_skipped;
    uint32_t pages_blank;           /* skip_identical: written without an erase (were blank) */
    uint64_t bytes_written, bytes_read;
    uint64_t bytes_probed;          /* skip_identical: read back to decide (in bytes_read) */
    uint8_t readback_sha256[32];
    uint8_t dfu_status, dfu_state;  /* last device status */
    uint32_t fail_addr;             /* first bad address on verify/device error */
    bool leave_status_missing;      /* leave accepted without a status answer (§1.5) */
    uint32_t stall_recoveries;      /* stalled requests recovered by clear + retry */
    uint64_t erase_us, write_us, verify_us, read_us;
} st_dfuse_result;

/* True when a raw configuration descriptor declares a DFU interface (class 0xFE, subclass
 * 1). A malformed descriptor declares nothing. */
bool st_dfuse_config_has_dfu(const uint8_t *cfg, size_t len);
/* Read dev's configuration descriptor and tell whether it declares a DFU interface, without
 * claiming anything: listing must not take a CDC-ACM unit from its kernel driver. */
int st_dfuse_probe(st_usb_host *host, const st_usb_dev_info *dev, bool *is_dfu, st_err *err);

/* Open the DFU interface of dev: claim it, select alt 0 (internal flash), read the
 * functional descriptor and every alt's layout, then bring the device to dfuIDLE
 * (dfuERROR -> CLRSTATUS, dfuDNLOAD-IDLE/dfuUPLOAD-IDLE -> ABORT). A device in run-time
 * mode (appIDLE/appDETACH, or interface protocol 1) is an error. log may be NULL.
 * On success *out is new: close with st_dfuse_close (which closes the USB handle). */
int st_dfuse_open(st_usb_host *host, const st_usb_dev_info *dev, const st_logger *log,
                  st_dfuse **out, st_err *err);
const st_dfuse_info *st_dfuse_get_info(const st_dfuse *d);

/* Erase the pages img touches and write it (skip_identical: only differing pages), then
 * ABORT to dfuIDLE. The image must lie in writable segments of alt 0's layout. o and r may
 * be NULL. Device error statuses come back as ST_ERR_DEVICE naming status and address. */
int st_dfuse_flash(st_dfuse *d, const st_image *img, const st_dfuse_opts *o, st_dfuse_result *r,
                   st_err *err);
/* Read back img's range, SHA-256 it into r->readback_sha256 and compare with the image.
 * ST_ERR_VERIFY names the first differing address (also in r->fail_addr). */
int st_dfuse_verify(st_dfuse *d, const st_image *img, const st_dfuse_opts *o, st_dfuse_result *r,
                    st_err *err);
/* Read len bytes at addr (UPLOAD) into buf. */
int st_dfuse_read(st_dfuse *d, uint32_t addr, uint8_t *buf, size_t len, const st_dfuse_opts *o,
                  st_dfuse_result *r, st_err *err);
/* Leave DFU: Set Address Pointer to jump_addr, zero-length DNLOAD, GETSTATUS (expects
 * dfuMANIFEST). Many STM32s drop off the bus before answering: a stall, disconnect or
 * timeout right after the leave request is success only when write_verified (then
 * r->leave_status_missing is set); confirm by re-enumeration. The device is gone after. */
int st_dfuse_leave(st_dfuse *d, uint32_t jump_addr, bool write_verified, st_dfuse_result *r,
                   st_err *err);
/* Mass erase (DfuSe 0x41 without address). The wait follows the device's bwPollTimeout. */
int st_dfuse_mass_erase(st_dfuse *d, st_dfuse_result *r, st_err *err);
/* Read Unprotect (0x92): the device clears read protection, mass-erases and resets; like
 * dfu-util, one status read follows, and a lost status is expected. The device is gone
 * afterwards (wait for it to re-enumerate, then open it again). */
int st_dfuse_unprotect(st_dfuse *d, st_dfuse_result *r, st_err *err);
void st_dfuse_close(st_dfuse *d);

/* "OK", "errPROG", ... / "dfuIDLE", ...; "INVALID"/"UNKNOWN" outside the tables. */
const char *st_dfu_status_name(uint8_t status);
const char *st_dfu_state_name(uint8_t state);

#endif
