/* Test support: private PostgreSQL and Mosquitto servers for the fleet tests. Each server
 * gets a temporary directory and a free loopback port, runs as an unprivileged user
 * (postgres refuses root: as root the server runs as the "postgres" / "mosquitto" system
 * user, otherwise as the caller) and is stopped and removed by *_destroy. Starting fails
 * with a reason (tests then skip) when the server programs are absent. Only tests link
 * this; nothing here is a mock: these are the Debian servers themselves. */
#ifndef STATION_REPORTS_SHIP_TESTSRV_H
#define STATION_REPORTS_SHIP_TESTSRV_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct st_tpg {
    char dir[64];        /* temporary directory: data/, sockets, log */
    char bindir[PATH_MAX];
    int port;
    bool running;
    char super_pw[32];   /* password of the "postgres" superuser (scram over TCP) */
} st_tpg;

/* initdb + start. 0, or -1 with why filled (the reason to skip). */
int st_tpg_start(st_tpg *pg, char *why, size_t cap);
/* Stop: immediate (SIGQUIT to the postmaster: no checkpoint, crash recovery on the next
 * start, as after a kill) or fast. 0 or -1. */
int st_tpg_stop(st_tpg *pg, bool immediate);
/* Start again on the same data and port. 0 or -1. */
int st_tpg_restart(st_tpg *pg);
/* Stop and remove everything. */
void st_tpg_destroy(st_tpg *pg);
/* A conninfo for user/password on database db (loopback TCP). Returns buf. */
const char *st_tpg_conninfo(const st_tpg *pg, const char *db, const char *user,
                            const char *password, char *buf, size_t cap);
/* Run SQL as the superuser on db ("postgres" for cluster-wide commands). 0, or -1 with
 * the server's message in why (optional). */
int st_tpg_sql(const st_tpg *pg, const char *db, const char *sql, char *why, size_t cap);
/* Run a query returning one value as text into out. 0 or -1. */
int st_tpg_value(const st_tpg *pg, const char *db, const char *sql, char *out, size_t cap);

typedef struct st_tmq {
    char dir[64];
    int port;
    pid_t pid;
} st_tmq;

/* Start mosquitto with password and ACL files. users: "name:password" strings, NULL
 * terminated. acl: the acl_file text. listener_extra (NULL: none): lines for the one
 * listener, e.g. "cafile ..\ncertfile ..\nkeyfile ..\n" for TLS. 0, or -1 with why. */
int st_tmq_start(st_tmq *mq, const char *const *users, const char *acl,
                 const char *listener_extra, char *why, size_t cap);
/* SIGKILL the broker (no clean shutdown) and reap it. */
void st_tmq_kill(st_tmq *mq);
/* Start again on the same port and files. 0 or -1. */
int st_tmq_restart(st_tmq *mq);
void st_tmq_destroy(st_tmq *mq);

/* A schema-1 report as the engine writes it, for tests that need many: steps enter-
 * bootloader, flash, verify; with a fail verdict the flash step fails with cause. Without
 * finished the report is in flight (verdict incomplete, no run.finished). wall_us is the
 * run's start; slot < 0 is a unit in no slot (no slot.id). Written atomically to dir/name. 0 or -1. */
typedef struct st_test_report {
    const char *station, *run_id, *identity, *verdict, *cause;
    int slot;
    bool finished;
    unsigned long long wall_us;
} st_test_report;
int st_test_write_report(const char *dir, const char *name, const st_test_report *r);

/* A subscriber (a real libmosquitto client) that records every message it receives. */
typedef struct st_tsub st_tsub;
/* Connect as user and subscribe to topic (QoS 1); waits for the broker's SUBACK (at most
 * 10 s). NULL on failure. */
st_tsub *st_tsub_open(int port, const char *user, const char *password, const char *topic);
/* The same over TLS, trusting cafile. */
st_tsub *st_tsub_open_tls(int port, const char *user, const char *password, const char *topic,
                          const char *cafile);
void st_tsub_close(st_tsub *s);
/* Messages so far on topic (exact) whose payload contains needle (NULL: any). */
size_t st_tsub_count(st_tsub *s, const char *topic, const char *needle);
/* Messages so far whose topic starts with prefix. */
size_t st_tsub_count_prefix(st_tsub *s, const char *prefix);
/* Wait (at most timeout_ms) until st_tsub_count(topic, needle) >= n. true if it did. */
bool st_tsub_wait(st_tsub *s, const char *topic, const char *needle, size_t n, unsigned timeout_ms);
/* The last payload on topic (copied into buf), or NULL. */
const char *st_tsub_last(st_tsub *s, const char *topic, char *buf, size_t cap);

/* Write a fleet configuration file (mode 0600) at path. Returns 0 or -1. */
int st_test_write_config(const char *path, const char *text);

#endif
