/* Job files: what to flash (images with load address, pinned SHA-256, target MCU), the steps,
 * retry policy and where reports go. Parsed from YAML into plain structs; every error names
 * file, line and field. See jobs/README.md for the format. */
#ifndef STATION_JOBS_JOB_H
#define STATION_JOBS_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "station/core/err.h"
#include "station/core/image.h"
#include "station/core/mcu.h"

#define ST_JOB_MAX_IMAGES 4
#define ST_JOB_MAX_STEPS 24

typedef enum st_step_kind {
    ST_STEP_ENTER_BOOTLOADER, /* BOOT0 asserted, RESET pulsed, settle; find the ROM DFU device */
    ST_STEP_FLASH,            /* DfuSe erase + write (optionally only differing pages) */
    ST_STEP_VERIFY,           /* read back, compare SHA-256 */
    ST_STEP_START,            /* release BOOT0, DfuSe leave (jump to the image) */
    ST_STEP_WAIT_FOR_APP,     /* the application enumerates on the slot's USB port */
    ST_STEP_POWER_CYCLE,      /* cut and restore DUT power (fixtures with a power line) */
    /* Katapult (protocols.md section 2): */
    ST_STEP_ENTER_KATAPULT,   /* running app -> Katapult (CAN request / 1200-baud touch /
                                 UART string), CONNECT, MCU check, CAN UUID check */
    ST_STEP_READ_APP,         /* read the application the unit holds now (RMA evidence) */
    ST_STEP_KATAPULT_FLASH,   /* SEND_BLOCK... SEND_EOF (optionally only differing pages) */
    ST_STEP_KATAPULT_VERIFY,  /* REQUEST_BLOCK readback, SHA-1 (flashtool's) and SHA-256 */
    ST_STEP_KATAPULT_COMPLETE,/* COMPLETE: Katapult starts the application */
} st_step_kind;

/* How Katapult is reached. */
typedef enum st_katapult_transport {
    ST_KAT_CAN,   /* Klipper/Katapult CAN admin + byte stream on node ids */
    ST_KAT_USB,   /* USB-CDC: 1200-baud touch, Katapult re-enumerates as 1d50:6177 */
    ST_KAT_UART,  /* a UART tty: the serial request string */
} st_katapult_transport;

/* Which units a job runs on. */
typedef enum st_job_units {
    ST_UNITS_SLOTS,    /* the fixture's slots (default) */
    ST_UNITS_DISCOVER, /* every unit that answers on the CAN bus (returned units, batches) */
} st_job_units;

const char *st_step_kind_name(st_step_kind k);

typedef struct st_job_image {
    char role[32];            /* "combined", "application": the key in the job file */
    char *path;               /* resolved against the job file's directory; owned */
    uint32_t load_addr;
    char sha256[65];          /* pinned, lower-case hex */
    unsigned line;
} st_job_image;

typedef struct st_job_step {
    st_step_kind kind;
    unsigned line;
    unsigned retries;         /* extra attempts after the first */
    unsigned timeout_ms;      /* 0: the step's default */
    int image;                /* index into images, -1 when the step takes none */
    bool skip_identical;      /* flash: read first, rewrite only pages that differ */
    uint16_t usb_vid, usb_pid;/* wait-for-app: the application's USB id */
    bool can;                 /* wait-for-app: on the CAN bus (the UUID answers as Klipper) */
} st_job_step;

typedef struct st_job {
    char *path;               /* owned */
    char sha256[65];          /* of the job file itself (reports cite it) */
    char name[64];
    char description[256];
    const st_mcu *mcu;
    st_job_image images[ST_JOB_MAX_IMAGES];
    size_t nimages;
    st_job_step steps[ST_JOB_MAX_STEPS];
    size_t nsteps;
    unsigned retries;         /* default extra attempts per step */
    char report_dir[512];     /* resolved against the current directory when relative */
    uint16_t dfu_vid, dfu_pid;
    unsigned enumerate_timeout_ms;
    unsigned request_timeout_ms;
    st_job_units units;
    struct {
        st_katapult_transport transport;
        uint32_t bitrate;         /* CAN: 0 = leave the interface's rate alone */
        uint32_t baud;            /* UART: the application's and Katapult's baud */
        uint16_t app_vid, app_pid;/* USB: the running application's id (1d50:614e) */
        unsigned discover_ms;     /* units: discover: how long to collect answers */
        unsigned timeout_ms;      /* per Katapult command answer; 0 = flashtool's (2 s, 5 s) */
        unsigned tries;           /* per Katapult command; 0 = flashtool's (5, 3 for blocks) */
    } katapult;
    int recovery_image;       /* ROM DFU recovery image index, -1 = no recovery rung */
} st_job;

/* Fill job with the defaults a job file starts from (retries, DFU ids and timeouts,
 * Katapult transport and timings, report_dir). */
void st_job_defaults(st_job *job);

/* Parse a job file. *out is new (free with st_job_free). */
int st_job_load(const char *path, st_job **out, st_err *err);
void st_job_free(st_job *job);

/* Load every image and validate it against the job before any pin moves: it fits the
 * target's flash, its vector table is plausible, and its SHA-256 is the pinned one.
 * images[i] receives the loaded image (free each with st_image_free). */
int st_job_load_images(const st_job *job, st_image *images[ST_JOB_MAX_IMAGES], st_err *err);

/* Parse "1d50:614e". */
bool st_parse_usb_id(const char *s, uint16_t *vid, uint16_t *pid);

#endif
