/* Live station status over MQTT (libmosquitto): retained per-slot state, step, progress and
 * last verdict, a QoS 1 event per finished unit, and a last will that marks the station
 * offline. Topic tree and payloads: reports/MQTT.md.
 *
 * Publishing never blocks the caller: messages are queued and a libmosquitto network
 * thread sends them, reconnecting with back-off while the broker is away; a supervisor
 * thread of ours makes the first connection (retrying from 1 s to 8 s) and restarts a
 * network thread that has been without a broker for 30 s (libmosquitto's own thread gives
 * up after a failed first connection or a TLS error). Retained state
 * is published again on every (re)connect, so a broker that restarted empty shows the
 * station's current state. Events are QoS 1: while the broker is unreachable they wait in
 * a bounded queue (ST_LIVE_QUEUE_MAX; the oldest are dropped past it, and counted) and go
 * out on reconnect. Topic levels are the configured prefix and station name (checked to be
 * [A-Za-z0-9._-]) and slot numbers: text from a unit only ever appears inside a JSON
 * payload, escaped, never in a topic.
 *
 * Thread safety: every function may be called from any slot thread. */
#ifndef STATION_REPORTS_MQTT_LIVE_H
#define STATION_REPORTS_MQTT_LIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "reports/ship/config.h"
#include "station/core/err.h"
#include "station/core/log.h"

#define ST_LIVE_QUEUE_MAX 10000 /* events kept while the broker is unreachable */

typedef struct st_live st_live;

typedef struct st_live_stats {
    unsigned long published;   /* messages handed to the broker connection */
    unsigned long acked;       /* QoS 1 messages the broker acknowledged */
    unsigned long queued;      /* events waiting for a connection now */
    unsigned long dropped;     /* events dropped because the queue was full */
    unsigned long connects;    /* successful (re)connections */
    bool connected;
} st_live_stats;

/* Start publishing for cfg's station (cfg->has_mqtt must be true). Connects in the
 * background: an unreachable broker is not an error here. client_suffix (NULL = none)
 * makes the MQTT client id "<station>-<suffix>" so several processes of one station (run,
 * produce) can be connected at once. Free with st_live_close. */
int st_live_open(const st_fleet_cfg *cfg, const char *client_suffix, const st_logger *log,
                 st_live **out, st_err *err);

/* Publish "offline", disconnect cleanly (so the will is not sent), waiting at most
 * timeout_ms for queued QoS 1 messages to be acknowledged first. NULL ok. */
void st_live_close(st_live *l, unsigned timeout_ms);

/* Retained slot topics. state: "idle", "running", "done"; unit and run may be NULL. */
void st_live_slot_state(st_live *l, int slot, const char *state, const char *unit,
                        const char *run_id);
void st_live_slot_step(st_live *l, int slot, const char *step, int attempt);
/* Rate-limited: at most one message per slot per 250 ms, plus the last (done == total). */
void st_live_slot_progress(st_live *l, int slot, const char *phase, uint64_t done,
                           uint64_t total);
/* A finished unit: retained verdict for the slot, and a QoS 1 event. cause and report
 * may be NULL. */
void st_live_unit_done(st_live *l, int slot, const char *verdict, const char *unit,
                       const char *cause, const char *report, const char *run_id);

void st_live_get_stats(st_live *l, st_live_stats *out);
/* Wait until connected or timeout; true if connected. (For tests and `station run`.) */
bool st_live_wait_connected(st_live *l, unsigned timeout_ms);

#endif
