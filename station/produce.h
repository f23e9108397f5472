/* Production mode, `station produce JOB`: every slot of the fixture runs a loop until the
 * station is stopped: wait for a unit (start button, unit-present line, its USB device or
 * CAN node appearing, as the fixture's slot `start` says), read its barcode when the slot
 * has a scanner, run the job, show the verdict on the slot's LEDs, buzzer and the operator
 * screen, wait for the unit to leave, and again. Slots are independent threads; a failing
 * or hung unit holds only its own slot (the job's per-step deadlines bound it).
 * SIGINT/SIGTERM: the units in flight finish, then the command returns; a second signal
 * stops them at their next step boundary and their reports say why. On start, the
 * journals a crashed run left in the report directory are replayed: the units that were in
 * flight are named with their slot and step, their reports marked incomplete, and their
 * slots offered (or, with rerun, given) a rerun.
 *
 * Front-end code: it writes to out (screen or plain lines) and errout, and returns an exit
 * code (README "Exit codes"). */
#ifndef STATION_PRODUCE_H
#define STATION_PRODUCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "jobs/job.h"

typedef struct st_produce_cfg {
    const st_job *job;
    st_image *const *images;      /* loaded and checked (st_job_load_images) */
    const char *fixture_path;
    const char *report_dir;       /* NULL: the job's */
    const char *operator_name;
    const char *station_id;
    const char *lot;              /* NULL or "": none */
    const int *slots;             /* slot ids to run (nslots 0: every slot) */
    size_t nslots;
    bool plain;                   /* plain lines even on a terminal */
    int verbose;
    unsigned max_units;           /* stop after this many units were started (0: no limit) */
    bool rerun;                   /* after a crash, run the units that were in flight again
                                     at once instead of waiting for a start */
    FILE *out, *errout;
} st_produce_cfg;

/* Run production until stopped (a signal, --units, or the end of a simulated shift).
 * Returns ST_EXIT_PASS when every unit passed, ST_EXIT_UNIT_FAIL when one failed or was
 * refused, ST_EXIT_INCOMPLETE when one was stopped, ST_EXIT_USAGE/ST_EXIT_STATION when it
 * could not start. */
int st_produce(const st_produce_cfg *cfg);

#endif
