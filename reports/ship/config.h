/* The fleet configuration file: which station this is, where its reports and shipping
 * state live, and how to reach the fleet's PostgreSQL database and MQTT broker (with
 * credentials). Shared by `station ship`, `station run` (live status) and the queries.
 * Format and meaning: reports/FLEET.md. The file holds passwords, so it is refused unless
 * only its owner (the service user) can read it. */
#ifndef STATION_REPORTS_SHIP_CONFIG_H
#define STATION_REPORTS_SHIP_CONFIG_H

#include <limits.h>
#include <stdbool.h>

#include "station/core/err.h"

#define ST_FLEET_NAME_MAX 64 /* station names: [A-Za-z0-9._-], 1..63 bytes */

typedef struct st_fleet_cfg {
    char path[PATH_MAX];
    char station[ST_FLEET_NAME_MAX]; /* the station's name: its database role, MQTT user */
    char reports[PATH_MAX];          /* report directory `station ship` watches ("" unset) */
    char state[PATH_MAX];            /* shipping state directory ("" unset) */
    bool has_db;
    char db_conninfo[1024];          /* libpq connection string (keywords or URI) */
    char db_password[256];           /* "" = none (libpq may still use ~/.pgpass) */
    bool has_mqtt;
    char mqtt_host[256];
    unsigned mqtt_port;              /* default 1883, or 8883 with tls */
    char mqtt_user[128];             /* default: the station name */
    char mqtt_password[256];
    char mqtt_prefix[64];            /* topic root, default "station" */
    unsigned mqtt_keepalive;         /* seconds, default 30 */
    char tls_cafile[PATH_MAX];       /* set: TLS on */
    char tls_certfile[PATH_MAX];     /* client certificate (optional, with keyfile) */
    char tls_keyfile[PATH_MAX];
} st_fleet_cfg;

/* True for a name usable as a station name, database role and MQTT topic level:
 * 1..63 bytes of [A-Za-z0-9._-], not starting with '.' or '-'. */
bool st_fleet_name_ok(const char *name);

/* Load the file at path into *out. Refused (ST_ERR_PERM) when the file is not a regular
 * file, not owned by the effective user, or readable or writable by group or others:
 * "fleet.yaml: mode 0644: readable by others; chmod 600 it (it holds passwords)".
 * Unknown keys and bad values are ST_ERR_INVAL naming file, line and field. */
int st_fleet_cfg_load(const char *path, st_fleet_cfg *out, st_err *err);

/* The configuration file a command uses when none is named: $STATION_FLEET_CONFIG, else
 * /etc/station/fleet.yaml if it exists, else NULL (no fleet: nothing is shipped or
 * published). */
const char *st_fleet_cfg_default(void);

#endif
