/* station: the fleet commands and the live-status hooks of `station run` (cmd_fleet.c).
 * main.c lists the commands in its table with the option tables below; each command reads
 * its options through get and returns the exit code. */
#ifndef STATION_CMD_FLEET_H
#define STATION_CMD_FLEET_H

#include <stddef.h>

#include "jobs/driver.h"
#include "jobs/engine.h"
#include "station/core/progress.h"

/* The value of option --name: "" for a flag given, NULL when absent. */
typedef const char *(*station_opt_fn)(const void *o, const char *name);

extern const st_cli_opt station_ship_opts[];
extern const st_cli_opt station_history_opts[];
extern const st_cli_opt station_summary_opts[];

/* `station ship`: no arguments; verbose > 0 prints a line per report. */
int station_cmd_ship(station_opt_fn get, const void *o, int verbose, char *const args[]);
/* `station history UNIT`: args[0] is UNIT. */
int station_cmd_history(station_opt_fn get, const void *o, char *const args[]);
/* `station report summary [DIR]`: args[0] is DIR or NULL. */
int station_cmd_report_summary(station_opt_fn get, const void *o, char *const args[]);

/* Live status of one `station run`, when the fleet configuration names a broker. */
typedef struct station_fleet station_fleet;

/* *out is NULL (and 0 returned) when no fleet configuration exists; an exit code when one
 * exists but cannot be used (already reported on stderr). */
int station_fleet_begin(const char *run_id, size_t nslots, station_fleet **out);
/* The configured station name, or fallback without a configuration. */
const char *station_fleet_name(const station_fleet *f, const char *fallback);
/* Slot i (row in the run) is slot_id; p is its progress hook, wrapped to publish too. */
void station_fleet_slot(station_fleet *f, size_t i, int slot_id, st_progress *p);
void station_fleet_step(station_fleet *f, size_t i, const char *step, int attempt);
/* rc and res as st_job_run returned them. */
void station_fleet_done(station_fleet *f, size_t i, int rc, const st_run_result *res);
/* Slots idle, station offline, disconnect. NULL ok. */
void station_fleet_end(station_fleet *f);

#endif
