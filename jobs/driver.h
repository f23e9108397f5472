/* The driver interface: what a protocol gives the job engine, the job parser and the CLI.
 * One const st_driver table per protocol (protocols/<p>/driver.c) holds its job-file
 * section, its steps (name, option keys, image or not, what each records), what it needs
 * from a slot, its per-unit session, how its failures classify, and its CLI commands. The
 * engine, the job parser and station/main.c loop over a NULL-terminated list of tables
 * (the registry, station/drivers.c) and name no protocol. See HACKING.md "Adding a
 * protocol". Tables are const data: a driver keeps no process state. */
#ifndef STATION_JOBS_DRIVER_H
#define STATION_JOBS_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "jobs/engine.h"
#include "jobs/job.h"
#include "reports/report.h"
#include "station/core/yamldoc.h"

typedef struct st_driver st_driver;
typedef struct st_run st_run; /* the engine's state of one unit's run (opaque) */

/* ---- Parsing: sections and step options ------------------------------------------- */

/* Where a driver's parser is: errors go through st_ydoc_error(p->doc, node, field...) so
 * they name file, line and field. */
typedef struct st_job_parse {
    const st_ydoc *doc;
    const st_ynode *at;  /* the section's or step's own node (errors about it as a whole) */
    const char *field;   /* its path: "katapult", "steps[4].wait-for-app" */
    const st_job *job;   /* images, target and (for steps) every driver's section */
} st_job_parse;

/* Getters for the keys of a section or options map, shared by the drivers' parsers. Errors
 * go through st_ydoc_error and name "<field>.<key>"; on error or an absent key *out is
 * unchanged (so it keeps the driver's default). */
/* A USB id "vvvv:pppp"; a bad one: "expected a USB id like <example>". */
int st_job_get_usb_id(const st_job_parse *p, const st_ynode *map, const char *field,
                      const char *key, const char *example, st_usb_id *out, st_err *err);
/* One of names (NULL-terminated): *out is its index. A value not in names: expected (NULL:
 * "expected a, b or c" from names). */
int st_job_get_choice(const st_job_parse *p, const st_ynode *map, const char *field,
                      const char *key, const char *const names[], const char *expected,
                      unsigned *out, st_err *err);

/* One option key of a step (beyond retries, timeout_ms and, for image steps, image, which
 * the job parser handles for every step). */
typedef struct st_step_opt {
    const char *key;     /* "skip_identical" */
    const char *help;    /* "read first, rewrite only the pages that differ" */
} st_step_opt;

/* ---- Running a step ------------------------------------------------------------------ */

/* Everything a step function sees. The session is this driver's for this unit (opened
 * lazily before its first step); rec is the step's report node. */
typedef struct st_step_call {
    st_run *run;
    const st_job *job;
    const st_job_step *step;
    const void *opts;          /* the step's parsed options (NULL when it has none) */
    const void *section;       /* the driver's parsed job section (NULL when it has none) */
    const st_image *image;     /* the step's image, NULL when it takes none */
    const st_run_env *env;
    void *session;             /* NULL when the driver has no session_open */
    st_rnode *rec;             /* the step's report node: record what it did here */
    unsigned attempt;          /* 1, 2, ...: this attempt (classify: the one that failed;
                                  the last is step->retries + 1) */
} st_step_call;

/* Report helpers for drivers. */
/* The unit's report map ("unit"): identities and before/after digests go here. */
st_rnode *st_run_unit(st_run *r);
/* Name the report after the unit's identity (the first call wins; renames the file). */
void st_run_identify(st_run *r, const char *identity);
/* Note a device-reported error in the current step and in the report's device_errors. */
void st_run_device_error(st_run *r, const char *msg);
/* The slot id the report names (-1 for a unit that no fixture slot holds). */
int st_run_slot_id(const st_run *r);
/* How logs name the unit: "slot 2", or "unit 0a0b0c0d0e01" for a unit in no slot. */
const char *st_run_label(const st_run *r);

/* How a failed attempt counts (the driver decides; st_fail_default is the usual rule). */
typedef enum st_fail_class {
    ST_FAIL_RETRY,  /* transient: another attempt, within the step's retries */
    ST_FAIL_FINAL,  /* no attempt will do better: the unit fails */
    ST_FAIL_LADDER, /* the unit may be stranded: not retried; the job's recovery ladder runs
                       (a driver may retry first: RETRY until c->attempt > step->retries,
                       then LADDER, for a unit its retries could not reach again) */
} st_fail_class;

/* Transport failures and device error statuses are retried; bad input, verify mismatches
 * and everything else are final. */
st_fail_class st_fail_default(int code);

/* Step flags. */
#define ST_STEP_TAKES_IMAGE    0x1u /* has the image option (default: the job's first image) */
#define ST_STEP_AFTER_RECOVERY 0x2u /* still means something after the ladder re-flashed the
                                       unit (wait-for-app): it runs instead of being skipped */

/* What a step needs from the slot (st_slot_needs.what): the CLI opens these backends. */
#define ST_NEED_GPIO       0x1u  /* the slot's BOOT0/RESET/power lines */
#define ST_NEED_USB        0x2u  /* the USB host and the slot's usb_port */
#define ST_NEED_CAN        0x4u  /* the slot's CAN interface (up, at can_bitrate) and UUID */
#define ST_NEED_USB_SERIAL 0x8u  /* the serial host: a USB-CDC tty found by port path */
#define ST_NEED_UART       0x10u /* the slot's serial.device */

typedef struct st_slot_needs {
    unsigned what;           /* ST_NEED_* */
    uint32_t can_bitrate;    /* with ST_NEED_CAN: set the interface to this rate (0: leave) */
} st_slot_needs;

typedef struct st_step_def {
    const char *name;          /* in job files; unique across all drivers */
    const char *summary;       /* one line for `station steps` */
    const char *records;       /* what it records in the report, for `station steps` */
    unsigned flags;            /* ST_STEP_* */
    const st_step_opt *opts;   /* its own option keys, terminated by { NULL } (NULL: none) */
    /* Check the step's options and keep them (*out, freed with free_opts). node is the
     * options map or NULL when the step has none. NULL: the step keeps no options. */
    int (*parse)(const st_job_parse *p, const st_ynode *node, void **out, st_err *err);
    void (*free_opts)(void *opts);
    /* What the step needs from the slot, given the job (NULL: nothing beyond the GPIO). */
    void (*needs)(const st_job *job, const void *section, const void *opts, st_slot_needs *out);
    /* Run one attempt. Returns 0 or a negative ST_ERR_* with err filled. */
    int (*run)(st_step_call *c, st_err *err);
    /* How a failed attempt counts (NULL: st_fail_default). */
    st_fail_class (*classify)(const st_step_call *c, int code);
} st_step_def;

/* ---- CLI commands a driver offers ------------------------------------------------------ */

/* Exit codes (README "Exit codes"). */
enum {
    ST_EXIT_PASS = 0,       /* every unit passed */
    ST_EXIT_UNIT_FAIL = 1,  /* at least one unit failed; its report says why */
    ST_EXIT_USAGE = 2,      /* bad command line or bad input (job, fixture, image): nothing touched */
    ST_EXIT_STATION = 3,    /* the station itself could not work (backend, permissions, disk) */
    ST_EXIT_INCOMPLETE = 4, /* stopped by the operator or a signal; reports say incomplete */
};

/* An option of a command: --name [ARG]. */
typedef struct st_cli_opt {
    const char *name;     /* "uuid" */
    const char *arg;      /* "UUID"; NULL for a flag */
    const char *help;
} st_cli_opt;

typedef struct st_cli st_cli;

/* What the station front end offers a command. Output goes to out/errout only. */
struct st_cli {
    FILE *out, *errout;
    const st_driver *const *drivers;  /* the registry */
    /* The value of --name (the last one given), "" for a flag given, NULL when absent. */
    const char *(*opt)(const st_cli *cli, const char *name);
    const int *slots;                 /* --slot N (repeatable) */
    size_t nslots;
    int verbose;
    /* The fixture's backends, opened on first use; 0 or an exit status already reported. */
    int (*open)(const st_cli *cli, const st_fixture **fx, st_usb_host **usb);
    /* The CAN interface ifname of the open fixture (SocketCAN, or the virtual bus). */
    int (*can_iface)(const st_cli *cli, const char *ifname, st_can_iface **out, st_err *err);
    /* Run a job built by the command (on its slots, or units: discover) as `station run`
     * would; takes ownership of neither. Returns the exit status. */
    int (*run_job)(const st_cli *cli, const st_job *job, st_image *const images[]);
    void *host;
};

/* st_cli_cmd.flags: the command runs a job through st_cli.run_job, so it also takes the
 * run options (--slot, --reports, --operator, --uuid, --iface). */
#define ST_CLI_RUNS_JOBS 0x1u

typedef struct st_cli_cmd {
    const char *words;         /* "can scan": the command's words */
    const char *args;          /* "IMAGE": positional arguments (NULL: none) */
    unsigned nargs;            /* how many */
    const char *summary;       /* one line for `station --help` */
    const char *help;          /* more for `station can scan --help` (NULL: none) */
    const st_cli_opt *opts;    /* its own options, terminated by { NULL }; every command also
                                  takes --fixture, --plain, --verbose, --help */
    unsigned flags;            /* ST_CLI_* */
    int (*run)(const st_cli *cli, char *const args[]);
} st_cli_cmd;

/* "station: <what>: <msg>" on cli->errout. */
void st_cli_error(const st_cli *cli, const char *what, const st_err *e);

/* ---- Units on a bus --------------------------------------------------------------------- */

typedef struct st_found_unit {
    char uuid[13];             /* 12 lower-case hex digits */
} st_found_unit;

/* ---- The driver table -------------------------------------------------------------------- */

struct st_driver {
    const char *name;          /* "katapult": also the key of its section in a job file */
    const char *summary;       /* one line for `station steps` */
    /* The job-file section: node is NULL when the job has none (fill the defaults). NULL
     * parse: the driver takes no section. *out is freed with section_free. */
    int (*section_parse)(const st_job_parse *p, const st_ynode *node, void **out, st_err *err);
    void (*section_free)(void *section);
    const char *section_help;  /* its keys, for `station steps` (NULL: none) */
    const st_step_def *steps;  /* terminated by { NULL } */
    /* A unit's session with this driver: opened before the driver's first step in a run,
     * abandoned after a failure (put the unit in a safe state, best effort), closed at the
     * end of the run and before the recovery ladder. NULL open: no session. */
    int (*session_open)(const st_step_call *c, void **out, st_err *err);
    void (*session_abandon)(const st_step_call *c, void *session);
    void (*session_close)(void *session);
    /* The unit's identity before any step, for the report's name: 1 with buf filled, 0
     * when the driver does not know it, -1 when a step of this driver will read it from the
     * unit itself (then no early identity is used). NULL: 0. */
    int (*identity)(const st_job *job, const void *section, const st_run_env *env, char *buf,
                    size_t cap);
    /* units: discover. NULL reason = this job's section lets it find units. discover asks
     * the bus; returns the count (may exceed cap) or a negative ST_ERR_*. */
    const char *(*discover_refusal)(const void *section);
    int (*discover)(const void *section, st_can_iface *ifc, st_found_unit *out, size_t cap,
                    st_err *err);
    unsigned (*discover_ms)(const void *section); /* how long discover listens */
    /* When one of its steps classifies a failure as ST_FAIL_LADDER without a ladder: */
    const char *ladder_needed; /* "rom-dfu" (the report's "recovery.rung: none: needs ...") */
    const char *ladder_hint;   /* "ROM recovery (BOOT0 + DFU)" (the cause: "needs ...") */
    /* The default rung of `recovery: { image: X }`: its name and steps (NULL: none). */
    const char *rung_name;
    const char *const *rung_steps;
    const st_cli_cmd *commands; /* terminated by { NULL } (NULL: none) */
    /* Two image hooks, because they do two different jobs (st_job_load_images):
     *  - image_check says what a valid image IS for this driver's own steps: it replaces
     *    the default rule, and runs once per image, for the one driver whose step takes it
     *    (a GBL file is not a Cortex-M image at all);
     *  - preflight vetoes images this driver's section knows the units cannot run, on top
     *    of whichever check each image passed: it runs for every driver, over all the
     *    job's images together, including images other drivers' steps flash (the Klipper
     *    driver refuses a DFU- or Katapult-flashed image built for another MCU).
     * Merging them would need a flag for "instead of" against "in addition to" and a
     * per-image against an all-images call: two hooks say it plainly.
     * preflight: before any pin moves (st_job_load_images, after every image is loaded and
     * validated), refuse images this driver knows cannot work on the job's units, with a
     * message that says why (section is NULL when the job has none). NULL: nothing to
     * check. */
    int (*preflight)(const st_job *job, const void *section, st_image *const images[],
                     st_err *err);
    /* image_check: check an image one of its steps takes, before any unit is touched,
     * instead of the default rule (it fits the job target's flash and starts with a
     * Cortex-M vector table): an image for another chip on the board (a Bluetooth module's
     * GBL file) has its own. The pinned SHA-256 is checked either way. NULL: the default
     * rule. */
    int (*image_check)(const st_job *job, const void *section, const st_image *img,
                       st_err *err);
};

/* ---- Registry helpers --------------------------------------------------------------------- */

/* The step called name in drivers (NULL-terminated list); *drv receives its driver. */
const st_step_def *st_drivers_find_step(const st_driver *const *drivers, const char *name,
                                        const st_driver **drv);
/* The index of drv in drivers, or -1. */
int st_drivers_index(const st_driver *const *drivers, const st_driver *drv);
size_t st_drivers_count(const st_driver *const *drivers);
/* Print text word-wrapped at 88 columns, continuation lines indented by indent; the
 * cursor is at column col already. Ends with a newline. */
void st_print_wrapped(FILE *out, unsigned indent, unsigned col, const char *text);
/* `station steps`: every driver's steps, options and sections, from the tables. */
void st_drivers_describe(const st_driver *const *drivers, FILE *out);

#endif
