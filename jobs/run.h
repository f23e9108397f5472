/* Internal to the job engine: the state of one run and the step functions, shared by
 * engine.c (the loop and the report) and steps_*.c (one file per protocol). */
#ifndef STATION_JOBS_RUN_H
#define STATION_JOBS_RUN_H

#include "jobs/engine.h"
#include "protocols/dfuse/dfuse.h"
#include "protocols/katapult/katapult.h"
#include "reports/report.h"

typedef struct run {
    const st_job *job;
    st_image *const *images;
    const st_run_env *env;
    st_rnode *doc;
    st_rnode *steps;
    char path[PATH_MAX];      /* where the report is now */
    bool identified;
    uint64_t started_wall, started_mono;
    st_rnode *cur;            /* the current step's report node */
    /* ROM DFU */
    st_dfuse *dfu;
    st_usb_dev_info dfu_dev;
    bool flashed;
    bool written_verified;    /* flash + verify both passed: a lost leave status is fine */
    /* Katapult */
    st_can_link *adm, *data;
    st_stream *kstream;
    st_katapult *kat;
    st_katapult_info kinfo;
    uint8_t *before;          /* the application as read before flashing (read-app) */
    size_t before_len;
    uint32_t before_addr;
} run;

int run_save(run *r, st_err *err);
/* Name the report after the unit's identity (first call wins; renames the file). */
void run_identify(run *r, const char *identity);
/* Note a device-reported error in the step and in device_errors. */
void run_device_error(run *r, const char *msg);
int run_slot_id(const run *r);

/* steps_dfu.c */
int dfu_step_enter(run *r, const st_job_step *s, st_err *err);
int dfu_step_flash(run *r, const st_job_step *s, st_err *err);
int dfu_step_verify(run *r, const st_job_step *s, st_err *err);
int dfu_step_start(run *r, const st_job_step *s, st_err *err);
int dfu_step_wait_app(run *r, const st_job_step *s, st_err *err);
int dfu_step_power(run *r, const st_job_step *s, st_err *err);
void dfu_close(run *r);

/* steps_katapult.c */
int kat_step_enter(run *r, const st_job_step *s, st_err *err);
int kat_step_read_app(run *r, const st_job_step *s, st_err *err);
int kat_step_flash(run *r, const st_job_step *s, st_err *err);
int kat_step_verify(run *r, const st_job_step *s, st_err *err);
int kat_step_complete(run *r, const st_job_step *s, st_err *err);
/* wait-for-app with can: true: the unit's UUID answers QUERY as the Klipper application. */
int kat_wait_app_can(run *r, unsigned timeout_ms, st_err *err);
void kat_close(run *r);
/* After a failure: COMPLETE if a session is open (flashtool always sends it), then close. */
void kat_abandon(run *r);

#endif
