/* Per-unit report journal: the report of a running unit as its first complete version (an
 * atomic write, verdict `incomplete`) plus an append-only journal of changes beside it,
 * synced at step boundaries and folded into the final report with one more atomic write.
 * Cheaper than re-emitting the whole report with two fsyncs and a rename after every step,
 * with the same guarantees (reports/SCHEMA.md "The file"):
 *   - the report file is always a complete report (it only ever changes by rename);
 *   - a record is on disk once a sync covering it returned; a kill -9 or a power loss
 *     leaves at most a torn last record, which replay detects (length + CRC-32) and drops;
 *   - st_journal_replay rebuilds the report of a run that died: its recorded steps, the one
 *     in progress still `incomplete`, verdict `incomplete` and a cause saying so.
 *
 * Files: the report "<dir>/<name>.yaml" and its journal "<dir>/<name>.journal": a line
 * "station-journal 1 <file name of the report when the journal was made>\n", then records "J <len> <crc32 hex>\n<len bytes>\n" whose bytes are
 * a YAML map {p: <dotted path>, v: <value>}: put v at p (st_rput_copy: a map key, or a list
 * index, one past the end appending). The journal is removed once the final report is on
 * disk; a journal beside a report whose verdict is not `incomplete` is stale (the run
 * ended between the two) and replay ignores it.
 *
 * One writer per journal; the functions never print. */
#ifndef STATION_REPORTS_JOURNAL_H
#define STATION_REPORTS_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reports/report.h"
#include "station/core/err.h"

typedef struct st_journal st_journal;

/* Counters for the benchmarks and the operator's log. */
typedef struct st_journal_stats {
    unsigned records;    /* records appended */
    unsigned syncs;      /* fdatasync/fsync calls made, the atomic writes' included */
    uint64_t bytes;      /* bytes written, the atomic writes' included */
} st_journal_stats;

/* The journal's path for a report path: ".yaml" replaced by ".journal" (or ".journal"
 * appended). ST_ERR_INVAL when cap is too small. */
int st_journal_path_for(const char *report_path, char *out, size_t cap);

/* Start a unit's report: create its journal (it must not exist) and sync it, then write
 * doc as the report with st_report_write_atomic (fsynced file and directory), so when this
 * returns 0 both are on disk: the proof a caller needs before it moves any pin. On failure
 * nothing is left behind. Free *out with st_journal_close or st_journal_finish. */
int st_journal_create(const char *report_path, const st_rnode *doc, st_journal **out,
                      st_err *err);

/* Append "put a copy of value at dotted path" (a NULL value is not allowed). With sync, the
 * record (and every one before it) is on disk when this returns: use it at step boundaries
 * (a step about to start, a step that ended). A failed write or sync leaves the journal
 * unusable: every later call fails with the same error. */
int st_journal_put(st_journal *j, const char *path, const st_rnode *value, bool sync,
                   st_err *err);
/* Make every record so far durable. */
int st_journal_sync(st_journal *j, st_err *err);

/* Give the report a new name in the same directory (the unit said who it is): the journal
 * is renamed to match, then the report, then the directory is synced. A crash between the
 * two renames leaves a journal whose report keeps its old name: st_journal_recover_dir
 * finds it through the journal's first line. */
int st_journal_rename(st_journal *j, const char *new_report_path, st_err *err);

/* Fold: write doc (the complete final report) over the report atomically, then remove the
 * journal, and free j (also on failure: the journal is then synced and stays for replay). */
int st_journal_finish(st_journal *j, const st_rnode *doc, st_err *err);
/* Free j without finishing: the journal stays on disk for st_journal_replay. NULL ok. */
void st_journal_close(st_journal *j);

void st_journal_get_stats(const st_journal *j, st_journal_stats *out);
const char *st_journal_report_path(const st_journal *j);

/* What replay found. */
typedef struct st_journal_replay_info {
    bool had_journal;      /* a journal was beside the report */
    bool stale;            /* ... but the report is final: the journal was ignored */
    size_t records;        /* records applied */
    size_t torn_bytes;     /* bytes dropped at the end: a torn or corrupt last record */
    bool ended;            /* the journal holds the run's verdict (its last record) */
} st_journal_replay_info;

/* Rebuild a report: load it, and when a journal lies beside it and the report is still
 * `incomplete`, apply every whole record in order, stopping at the first torn or corrupt
 * one. When a record put the `verdict` (the engine's last record before the final write)
 * the run ended and the result is the final report. Otherwise it keeps verdict
 * `incomplete`, and unless a record set a cause, its cause says the run stopped before it
 * ended and names the step in progress (the last step whose outcome is `incomplete`).
 * Without a journal the report is returned as it is. *out is new
 * (st_report_free); info may be NULL. */
int st_journal_replay(const char *report_path, st_rnode **out, st_journal_replay_info *info,
                      st_err *err);

/* The replay itself, on journal bytes already read: apply buf[0..n)'s whole records to doc
 * (the report they were written against), stopping at the first torn or corrupt one, then
 * set verdict and cause as st_journal_replay says. Fills info's records and torn_bytes.
 * Any bytes are safe to pass (fuzz_journal). */
void st_journal_apply(st_rnode *doc, const char *buf, size_t n, st_journal_replay_info *info);

/* st_journal_replay, then write the result over the report atomically and remove the
 * journal: what a station does with the journals a killed run left in its report
 * directory. A report with no journal is left alone. */
int st_journal_recover(const char *report_path, st_journal_replay_info *info, st_err *err);

/* What st_journal_recover_dir did. */
typedef struct st_journal_recover_counts {
    unsigned recovered; /* reports rebuilt from their journals */
    unsigned stale;     /* journals beside final reports, removed */
    unsigned orphans;   /* journals whose report is gone: left alone */
    unsigned failed;    /* journals that could not be replayed (the first error is err) */
    unsigned temps;     /* temp files of atomic writes a killed run left, removed */
    unsigned live;      /* journals of runs still going (their lock is held): left alone */
    unsigned empty;     /* journals of runs that died before their first report: removed */
} st_journal_recover_counts;

/* st_journal_recover on every "*.journal" in dir: what a station does when it starts on a
 * report directory a killed run left journals in. A journal whose report is missing under
 * its name is matched with the report its first line names (a rename cut short); the
 * rebuilt report then takes the journal's name. Temp files of atomic writes a killed run
 * left ("<name>.yaml.tmp.<pid>") are removed, and so is a journal with no report and no
 * record (its run died before its first report: before any pin moved). A journal whose
 * run is still going (its
 * writer holds an flock on it until it ends or dies) is left alone. A missing dir is no
 * error. */
int st_journal_recover_dir(const char *dir, st_journal_recover_counts *counts, st_err *err);

#endif
