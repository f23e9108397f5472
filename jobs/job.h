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
#define ST_JOB_MAX_DRIVERS 16
#define ST_JOB_MAX_RUNGS 4
#define ST_JOB_MAX_RUNG_STEPS 8

typedef struct st_driver st_driver;     /* jobs/driver.h */
typedef struct st_step_def st_step_def; /* jobs/driver.h */

/* Which units a job runs on. */
typedef enum st_job_units {
    ST_UNITS_SLOTS,    /* the fixture's slots (default) */
    ST_UNITS_DISCOVER, /* every unit a driver finds on the bus (returned units, batches) */
} st_job_units;

typedef struct st_job_image {
    char role[32];            /* the key in the job file ("combined"): st_text_is_name */
    char *path;               /* resolved against the job file's directory; owned */
    uint32_t load_addr;
    char sha256[65];          /* pinned, lower-case hex */
    unsigned line;
} st_job_image;

typedef struct st_job_step {
    const st_driver *driver;  /* the driver that offers the step */
    const st_step_def *def;   /* its table entry (name, options, run) */
    unsigned line;
    unsigned retries;         /* extra attempts after the first */
    unsigned timeout_ms;      /* 0: the step's default */
    int image;                /* index into images, -1 when the step takes none */
    void *opts;               /* the driver's parsed options; owned (def->free_opts) */
} st_job_step;

/* The step's name as the job file spells it. */
const char *st_job_step_name(const st_job_step *s);

/* One rung of the recovery ladder: steps that bring a stranded unit back. */
typedef struct st_job_rung {
    char name[32];            /* "rom-dfu": the report's recovery.rung */
    int image;                /* default image of its steps */
    unsigned line;
    st_job_step steps[ST_JOB_MAX_RUNG_STEPS];
    size_t nsteps;
} st_job_rung;

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
    st_job_units units;
    const st_driver *finder;  /* units: discover: the driver that finds them */
    /* The drivers the job was parsed against (NULL-terminated registry) and each one's
     * parsed section, by the driver's index in that list (owned; section_free). */
    const st_driver *const *drivers;
    void *sections[ST_JOB_MAX_DRIVERS];
    /* The recovery ladder, tried in order when a step classifies as ST_FAIL_LADDER. */
    st_job_rung rungs[ST_JOB_MAX_RUNGS];
    size_t nrungs;
} st_job;

/* A driver's parsed section in job (NULL when it takes none). */
const void *st_job_section(const st_job *job, const st_driver *drv);

/* A job built in code (a CLI command): the defaults a job file starts from, every driver's
 * section at its defaults, no steps. *out is new (free with st_job_free). */
int st_job_new(const st_driver *const *drivers, const st_mcu *mcu, st_job **out, st_err *err);

/* Append the step called name (from drivers) with the job's retries and image (-1: the
 * step's default); options as parsed from the text of a YAML flow map ("{ can: true }",
 * NULL: none). For jobs built in code. */
int st_job_add_step(st_job *job, const char *name, int image, const char *opts_yaml,
                    st_err *err);

/* Parse a job file against drivers (the registry, NULL-terminated). *out is new (free
 * with st_job_free). */
int st_job_load(const char *path, const st_driver *const *drivers, st_job **out, st_err *err);
void st_job_free(st_job *job);

/* Load every image and validate it against the job before any pin moves: it fits the
 * target's flash, its vector table is plausible and linked for its load address, its
 * SHA-256 is the pinned one, and every driver's preflight accepts it.
 * images[i] receives the loaded image (free each with st_image_free). */
int st_job_load_images(const st_job *job, st_image *images[ST_JOB_MAX_IMAGES], st_err *err);

/* The image called role, or -1. */
int st_job_find_image(const st_job *job, const char *role);

/* Parse "1d50:614e". */
bool st_parse_usb_id(const char *s, uint16_t *vid, uint16_t *pid);

#endif
