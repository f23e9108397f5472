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

/* Live status of one `station run` or `station produce`, when the fleet configuration
 * names a broker (reports/MQTT.md). Both commands make the same calls: begin, attach each
 * slot, done after each unit (and state between units in production), end. */
typedef struct station_fleet station_fleet;

/* *out is NULL (and 0 returned) when no fleet configuration exists; an exit code when one
 * exists but cannot be used (already reported on stderr). */
int station_fleet_begin(const char *run_id, size_t nslots, station_fleet **out);
/* The configured station name, or fallback without a configuration. */
const char *station_fleet_name(const station_fleet *f, const char *fallback);
/* Slot i (of nslots) is slot_id. Its progress hook p and env's step hook (already set)
 * are wrapped to publish too, and env->progress is set to p; state (or NULL: none yet)
 * is published. Nothing happens when f is NULL. */
void station_fleet_attach(station_fleet *f, size_t i, int slot_id, st_progress *p,
                          st_run_env *env, const char *state);
/* Slot i's state ("waiting", "running", ...); unit NULL or "" when not known yet. */
void station_fleet_state(station_fleet *f, size_t i, const char *state, const char *unit);
/* rc and res as st_job_run returned them. */
void station_fleet_done(station_fleet *f, size_t i, int rc, const st_run_result *res);
/* Slots idle, station offline, disconnect. NULL ok. */
void station_fleet_end(station_fleet *f);

#endif
