/* Yield and failure figures over a set of runs, from report files or from the fleet
 * database: both feed the same accumulator, so `station report summary DIR` and
 * `station report summary --db` print the same figures for the same reports.
 *
 * Definitions (reports/FLEET.md "Summary"): a run is one report; units are distinct
 * unit identities among the pass/fail runs; a unit passed first time when its earliest run
 * (by run.started; on a tie, a fail counts first) passed; first-pass yield = such units /
 * units. Incomplete runs are counted but take no part in the yield. A failed run's step is
 * the first step whose outcome is fail ("-" when none is). */
#ifndef STATION_REPORTS_SUMMARY_H
#define STATION_REPORTS_SUMMARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "reports/report.h"

typedef struct st_summary st_summary;

/* One failure group, most frequent first (then by step, then cause). */
typedef struct st_summary_fail {
    const char *step;
    const char *cause;
    unsigned count;
} st_summary_fail;

typedef struct st_summary_figures {
    unsigned runs, pass, fail, incomplete;
    unsigned units, first_pass;     /* first_pass: units whose earliest run passed */
    double first_pass_yield;        /* first_pass / units (0 when no units) */
    size_t nfailures;
    const st_summary_fail *failures; /* valid until the next add or free */
} st_summary_figures;

st_summary *st_summary_new(void);
void st_summary_free(st_summary *s);

/* Add one run. started is ISO 8601 UTC text (sortable); failed_step and cause may be NULL.
 * 0 or ST_ERR_NOMEM. */
int st_summary_add(st_summary *s, const char *identity, const char *started,
                   const char *verdict, const char *failed_step, const char *cause);
/* Add the run a (validated) report holds. */
int st_summary_add_report(st_summary *s, const st_rnode *doc);

/* The figures so far; 0 or ST_ERR_NOMEM. */
int st_summary_figures_get(st_summary *s, st_summary_figures *out);

/* Print the figures for people, or as YAML (yaml true; strings double-quoted and escaped).
 * top limits the failure groups shown (0 = all). 0 or ST_ERR_IO. */
int st_summary_render(st_summary *s, FILE *out, bool yaml, size_t top);

#endif
