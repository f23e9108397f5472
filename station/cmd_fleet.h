/* station: the fleet commands and the live-status hooks of `station run` (cmd_fleet.c).
 * Each command takes its own argv (argv[0] is the command word) and returns the exit code. */
#ifndef STATION_CMD_FLEET_H
#define STATION_CMD_FLEET_H

#include <stddef.h>

#include "jobs/engine.h"
#include "station/core/progress.h"

/* `station ship ...` */
int station_cmd_ship(int argc, char **argv);
/* `station history UNIT ...` */
int station_cmd_history(int argc, char **argv);
/* `station report summary ...` (argv[0] is "summary") */
int station_cmd_report_summary(int argc, char **argv);

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
