/* Device model of the STM32G431 ROM USB DFU bootloader (DFU 1.1 + DfuSe, AN3156) as an
 * st_usb_model over a unit's st_flash: descriptors byte-exact as dfu-util lists a G431,
 * the DFU/DfuSe state machine (commands run on the GETSTATUS that follows them), timing
 * profiles, fault injection and request counters. The engine (dfuse.h) never sees this
 * file; it talks to the model through the in-memory USB bus. Thread-safe. */
#ifndef STATION_PROTOCOLS_DFUSE_DFU_MODEL_H
#define STATION_PROTOCOLS_DFUSE_DFU_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "protocols/link/usb_model.h"
#include "protocols/sim/flash.h"
#include "station/core/image.h"

/* Longest USB serial string the model holds. */
#define ST_DFU_MODEL_SERIAL_MAX 15

/* Jump address given to on_leave when the device resets itself (Read Unprotect). */
#define ST_DFU_MODEL_RESET 0xFFFFFFFFu

typedef struct st_dfu_model_config {
    const char *serial;      /* at most ST_DFU_MODEL_SERIAL_MAX characters (the G4 ROM's
                                are 12 upper-case hex digits); NULL = "208A31574253" */
    uint16_t transfer_size;  /* wTransferSize; 0 = 2048 (1024 is the UNCONFIRMED alt.) */
    bool start_in_error;     /* enumerate in dfuERROR/errUNKNOWN, as ST ROMs often do */
    /* Called (without the model's lock) when the device leaves DFU: after the GETSTATUS
     * that executes a leave request, with the Address Pointer to jump to, or with
     * ST_DFU_MODEL_RESET after Read Unprotect. From then on the model answers every request
     * with ST_ERR_DISCONNECT; the owner typically detaches it from the bus here. */
    void (*on_leave)(void *ctx, uint32_t jump_addr);
    void *on_leave_ctx;
} st_dfu_model_config;

typedef struct st_dfu_model st_dfu_model;

/* flash is shared, not owned, and must outlive the model. cfg may be NULL (defaults).
 * The device enumerates with the USB id of the flash's MCU row (st_mcu.usb_rom_dfu).
 * Returns NULL on bad config (transfer_size > 4096, bad serial), for an MCU whose row has
 * no ROM USB DFU id, or on no memory. */
st_dfu_model *st_dfu_model_new(st_flash *flash, const st_dfu_model_config *cfg);
void st_dfu_model_free(st_dfu_model *m);
/* The USB face to attach to a bus (st_vusb_attach). Valid until st_dfu_model_free. */
st_usb_model *st_dfu_model_usb(st_dfu_model *m);

/* Put the device back to power-on state (dfuIDLE, or dfuERROR/errUNKNOWN with
 * start_in_error), pointer 0x08000000, present on the bus again. Faults are kept. */
void st_dfu_model_reset(st_dfu_model *m);
/* Force a state and status (e.g. 0 = appIDLE to model a unit in run-time mode). */
void st_dfu_model_set_state(st_dfu_model *m, uint8_t state, uint8_t status);

/* Fault injection. Class requests (bmRequestType type = class) are counted from 1 since
 * the model was created or the counters were reset. */
typedef enum st_dfu_leave_fault {
    ST_DFU_LEAVE_OK = 0,     /* answer dfuMANIFEST, then leave */
    ST_DFU_LEAVE_STALL,      /* stall the GETSTATUS after the leave request, then leave */
    ST_DFU_LEAVE_VANISH,     /* drop off the bus instead of answering it */
    ST_DFU_LEAVE_STALL_DNLOAD, /* stall the zero-length DNLOAD itself, then leave */
} st_dfu_leave_fault;

typedef struct st_dfu_model_faults {
    uint32_t stall_at;       /* stall the Nth class request (0 = never); once */
    uint32_t disconnect_after; /* after N class requests, vanish (0 = never) */
    st_dfu_leave_fault leave;
} st_dfu_model_faults;
void st_dfu_model_set_faults(st_dfu_model *m, const st_dfu_model_faults *f);
/* errPROG on a page / bit flip after programming / slow erase: see flash.h; these are
 * the same st_flash faults, reachable through the model for convenience. */
st_flash *st_dfu_model_flash(st_dfu_model *m);

/* Requests seen, by type. */
typedef struct st_dfu_model_counts {
    uint32_t total, standard, class_reqs;
    uint32_t detach, dnload, upload, getstatus, clrstatus, getstate, abort;
    uint32_t cmd_set_address, cmd_erase, cmd_mass_erase, cmd_unprotect, cmd_get, cmd_bad;
    uint32_t data_blocks, leave, stalls, busy_waits;
    uint64_t bytes_down, bytes_up;
    uint64_t wire_us;   /* modelled USB wire time (datasheet profile) */
    uint64_t device_us; /* modelled erase/program time */
} st_dfu_model_counts;
void st_dfu_model_get_counts(st_dfu_model *m, st_dfu_model_counts *out);
void st_dfu_model_reset_counts(st_dfu_model *m);

/* USB full-speed wire time of one control transfer with `len` data bytes (PROTOCOL.md §6):
 * SETUP + ceil(len/64) data transactions + status, each token+data+handshake. */
uint64_t st_dfu_wire_us(uint32_t len);

/* The device limit of a job: the least time the device itself needs to flash (and verify)
 * img from its present flash contents, whatever the host does. With skip_identical only
 * pages that differ are erased and programmed, but the host must read the image range
 * first. verify adds one readback. Erase + program times come from the flash model
 * (datasheet profile); wire time is st_dfu_wire_us per wTransferSize chunk. */
typedef struct st_dfu_limit {
    uint32_t pages_erased;
    uint64_t erase_us, program_us, wire_write_us, wire_read_us, total_us;
} st_dfu_limit;
int st_dfu_model_device_limit(st_dfu_model *m, const st_image *img, bool skip_identical,
                              bool verify, st_dfu_limit *out);

#endif
