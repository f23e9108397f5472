/* The job engine: runs one job on one slot, step by step, with deadlines, bounded retries
 * and a recovery ladder, and keeps that unit's report current on disk after every step.
 * It sees only generic backends (USB host, slot GPIO); it does not know whether the
 * fixture is virtual. It never prints: progress and logs go through the caller's hooks. */
#ifndef STATION_JOBS_ENGINE_H
#define STATION_JOBS_ENGINE_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>

#include "fixtures/fixture.h"
#include "fixtures/slot.h"
#include "jobs/job.h"
#include "protocols/link/can.h"
#include "protocols/link/stream.h"
#include "protocols/link/usb.h"
#include "station/core/err.h"
#include "station/core/log.h"
#include "station/core/progress.h"

typedef enum st_verdict {
    ST_VERDICT_PASS,
    ST_VERDICT_FAIL,       /* the unit failed a step */
    ST_VERDICT_INCOMPLETE, /* the run was stopped (operator, signal) */
} st_verdict;

const char *st_verdict_name(st_verdict v);

typedef struct st_serial_host st_serial_host; /* protocols/link/serial_ports.h */

typedef struct st_run_env {
    const char *station_name;   /* reports: station.name */
    const char *operator_name;  /* reports: operator ("unknown" when NULL) */
    const char *run_id;         /* shared by the slots of one `station run` */
    const char *report_dir;     /* overrides the job's report_dir when non-NULL */
    const st_fixture *fixture;
    const st_fixture_slot *fslot; /* NULL for a unit found on a bus that no slot holds */
    st_slot *slot;              /* GPIO side of the slot (NULL with fslot) */
    st_usb_host *usb;
    st_can_iface *can;          /* the unit's CAN interface (when a step needs CAN) */
    const char *can_uuid;       /* its CAN UUID, 12 hex digits (from the fixture or discovery) */
    unsigned unit_index;        /* 0, 1, ...: distinct per unit of one run (a driver derives
                                   per-unit bus addresses from it, e.g. Katapult node ids) */
    st_serial_host *serial;     /* how to open a USB-CDC tty by the slot's port path */
    /* How to open a UART of the slot (a fixture tty path such as module.device) with these
     * line settings. NULL: the termios backend (st_stream_tty_open). The virtual fixture
     * connects the slot's simulated device here instead. */
    int (*uart_open)(void *ctx, const st_fixture_slot *slot, const char *device,
                     const st_stream_line *line, st_stream **out, st_err *err);
    void *uart_ctx;
    const st_logger *log;
    const st_progress *progress;
    /* Phase notifications for the operator's display ("enter-bootloader", "flash"...). */
    void (*on_step)(void *ctx, const char *step, int attempt);
    void *on_step_ctx;
    volatile sig_atomic_t *cancel; /* non-zero: stop at the next step boundary */
} st_run_env;

typedef struct st_run_result {
    st_verdict verdict;
    char report_path[PATH_MAX];
    char cause[ST_ERR_MSG_MAX]; /* empty on pass */
    int cause_code;             /* ST_ERR_* of the cause, 0 on pass */
} st_run_result;

/* Run job on the slot in env. images are the job's images, already loaded and validated
 * (st_job_load_images). Returns 0 when a report was written (whatever the verdict: read
 * res->verdict), or a negative ST_ERR_* when not even the report could be written. */
int st_job_run(const st_job *job, st_image *const images[], const st_run_env *env,
               st_run_result *res);

#endif
