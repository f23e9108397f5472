/* Shipping reports into the fleet's PostgreSQL database (libpq), exactly once, and the
 * queries that read them back. Design and schema: reports/FLEET.md.
 *
 * The report files are the outbox and stay the source of truth: nothing here deletes or
 * changes one. A report is shipped once it is finished (it has run.finished) by one call of
 * fleet.ship_report() (one transaction), which is idempotent by station, run id, slot and
 * unit (a unique constraint with ON CONFLICT DO NOTHING). After the database has committed,
 * the file name is appended to "<state>/shipped" and fsynced; a crash between the two
 * re-ships the report, which the database answers with "duplicate". So every report
 * reaches the database exactly once, whatever is killed when.
 *
 * Thread safety: one st_ship or st_fleetdb per thread; they share nothing. */
#ifndef STATION_REPORTS_SHIP_SHIP_H
#define STATION_REPORTS_SHIP_SHIP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "reports/summary.h"
#include "station/core/err.h"
#include "station/core/log.h"

/* ---- connections ---------------------------------------------------------------------- */

typedef struct st_fleetdb st_fleetdb;

/* Connect. conninfo is a libpq connection string; password (NULL or "" = none) is added
 * to it. Connect and TCP timeouts default to 5 s / 10 s unless conninfo sets them.
 * ST_ERR_IO (unreachable), ST_ERR_PERM (authentication). Free with st_fleetdb_close. */
int st_fleetdb_open(const char *conninfo, const char *password, st_fleetdb **out, st_err *err);
void st_fleetdb_close(st_fleetdb *db);

/* Apply every compiled-in migration not yet recorded in fleet.schema_migrations, in
 * order, each in its own transaction (under an advisory lock, so concurrent migrators
 * queue). *applied (optional) gets how many ran. A recorded migration whose text changed
 * since is an error (ST_ERR_MISMATCH) naming it. Needs a role that may create schemas and
 * roles. */
int st_fleetdb_migrate(st_fleetdb *db, int *applied, st_err *err);

/* ---- shipping ----------------------------------------------------------------------- */

typedef struct st_ship st_ship;

typedef struct st_ship_stats {
    unsigned inserted;   /* new rows */
    unsigned duplicate;  /* already stored with the same bytes (a retry after a crash) */
    unsigned conflict;   /* already stored with other bytes: the stored row is kept */
    unsigned rejected;   /* not a valid report, or its content refused by the database */
    unsigned pending;    /* not shipped yet because the database failed: the report that met
                            the failure and every new or changed file after it */
    unsigned in_flight;  /* not finished yet (no run.finished) */
    unsigned total_shipped; /* names in the shipped log */
} st_ship_stats;

/* Called for each report a pass handles: outcome is "inserted", "duplicate", "conflict"
 * or "rejected" (then why says why, naming the file and field). */
typedef void (*st_ship_cb)(void *ctx, const char *file, const char *outcome, const char *why);

typedef struct st_ship_config {
    const char *report_dir; /* watched; created (0755) when missing */
    const char *state_dir;  /* the shipped log lives here; created (0700) when missing */
    const char *conninfo;
    const char *password;
    const st_logger *log;
    st_ship_cb on_report;   /* optional */
    void *cb_ctx;
} st_ship_config;

/* Load the shipped log and start watching the directory; does not connect yet. */
int st_ship_open(const st_ship_config *cfg, st_ship **out, st_err *err);
void st_ship_close(st_ship *s);

/* One pass: every finished report not yet in the shipped log goes to the database.
 * Connects (or reconnects) as needed. Returns 0 when nothing is pending, or ST_ERR_IO /
 * ST_ERR_PERM / ST_ERR_NOTFOUND (schema missing) when the database could not take them:
 * they stay pending and a later pass retries. stats (optional) are this pass's. */
int st_ship_pass(st_ship *s, st_ship_stats *stats, st_err *err);

/* Wait until a file appears in the report directory, or timeout_ms passes. Returns 1
 * when something changed, 0 on timeout. Uses inotify; never sleeps longer than asked. */
int st_ship_wait(st_ship *s, int timeout_ms);

/* Called by st_ship_serve after every pass: rc and err as st_ship_pass returned them. */
typedef void (*st_ship_pass_cb)(void *ctx, int rc, const st_err *err, const st_ship_stats *st);

/* The service loop: a pass whenever a report appears (inotify) or every rescan_ms;
 * while the database cannot take reports, passes back off from 0.5 s to 5 s (the
 * reports wait on disk; no slot ever waits for this). Returns 0 once *stop is non-zero,
 * or a negative ST_ERR_* when the state directory cannot be written (nothing else ends
 * it). */
int st_ship_serve(st_ship *s, volatile sig_atomic_t *stop, unsigned rescan_ms,
                  st_ship_pass_cb cb, void *ctx);

/* ---- queries -------------------------------------------------------------------------- */

typedef struct st_history_row {
    const char *started, *station, *run_id, *slot, *identity, *dfu_serial, *can_uuid,
        *chip_uid, *job, *verdict, *cause, *failed_step, *report_file;
} st_history_row;

/* Every run of the unit whose identity, chip UID, DFU serial or CAN UUID is unit (case
 * is ignored for hex ids), oldest first, across the stations the role may read. Returns
 * the number of rows, or a negative ST_ERR_*. */
int st_fleetdb_history(st_fleetdb *db, const char *unit,
                       void (*row)(void *ctx, const st_history_row *r), void *ctx, st_err *err);

/* Feed every run the role may read into sum (the same figures as the files give). */
int st_fleetdb_summary(st_fleetdb *db, st_summary *sum, st_err *err);

#endif
