/* Fleet tests against real servers: a private PostgreSQL cluster and a private Mosquitto
 * broker (reports/ship/testsrv.c) started for this run. Shipping exactly once (retries,
 * a lost shipped log, a database that goes away), migrations, row level security, MQTT
 * ACLs, injection attempts stored verbatim, live status and last will, the file and
 * database summaries agreeing, `station run` -> `station ship` -> `station history`
 * end to end, and `station produce` publishing live status as `station run` does. Skips
 * (77) with the reason when a server cannot start. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "reports/mqtt/live.h"
#include "reports/ship/config.h"
#include "reports/ship/json.h"
#include "reports/ship/ship.h"
#include "reports/ship/testsrv.h"
#include "reports/summary.h"
#include "station/core/clock.h"
#include "station/core/testutil.h"

#include <libpq-fe.h>

#define STATION STATION_BINARY_DIR "/station/station"

static st_tpg pg;
static st_tmq mq;
static st_tmq tls; /* the TLS broker of test_mqtt_tls (removed at exit even if it fails) */
/* The last-will test's station: a process forked before any thread exists (forking a
 * process that runs MQTT threads could inherit a held lock), told to connect through
 * will_go and killed with SIGKILL once it says it is connected on will_ready. */
static int will_go[2], will_ready[2];
static pid_t will_pid;

static void will_child(void)
{
    char go;
    if (read(will_go[0], &go, 1) != 1)
        _exit(0);
    st_fleet_cfg c = { 0 };
    strcpy(c.station, "st2");
    strcpy(c.mqtt_host, "127.0.0.1");
    c.mqtt_port = (unsigned)mq.port;
    strcpy(c.mqtt_user, "st2");
    strcpy(c.mqtt_password, "p2");
    strcpy(c.mqtt_prefix, "station");
    c.mqtt_keepalive = 30;
    c.has_mqtt = true;
    st_live *l = NULL;
    if (st_live_open(&c, "dies", NULL, &l, NULL) || !st_live_wait_connected(l, 10000))
        _exit(1);
    char r = 'c';
    if (write(will_ready[1], &r, 1) != 1)
        _exit(1);
    for (;;)
        if (read(will_go[0], &go, 1) <= 0)
            _exit(0);
}
static char tmp[64];  /* scratch directory for reports, state and configs */

static const char *const mq_users[] = { "admin:adminpw", "st1:p1", "st2:p2", "dash:d", NULL };
static const char mq_acl[] = "pattern readwrite station/%u/#\n"
                             "\n"
                             "user admin\n"
                             "topic readwrite #\n"
                             "\n"
                             "user dash\n"
                             "topic read station/#\n";

static const char *ci(const char *db, const char *user, const char *pw)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    return st_tpg_conninfo(&pg, db, user, pw, buf[k], sizeof buf[k]);
}

static void sql(const char *db, const char *q)
{
    char why[512];
    if (st_tpg_sql(&pg, db, q, why, sizeof why) != 0)
        fail_msg("%s: %s", q, why);
}

static long value(const char *db, const char *q)
{
    char out[128];
    if (st_tpg_value(&pg, db, q, out, sizeof out) != 0)
        fail_msg("%s: %s", q, out);
    return atol(out);
}

static void text_value(const char *db, const char *q, char *out, size_t cap)
{
    if (st_tpg_value(&pg, db, q, out, cap) != 0)
        fail_msg("%s: %s", q, out);
}

/* A fresh database with the schema and the station and reader roles. */
static void fresh_db(const char *db)
{
    char q[256];
    snprintf(q, sizeof q, "DROP DATABASE IF EXISTS %s", db);
    sql("postgres", q);
    snprintf(q, sizeof q, "CREATE DATABASE %s", db);
    sql("postgres", q);
    st_fleetdb *d = NULL;
    st_err e;
    int n = -1;
    if (st_fleetdb_open(ci(db, "postgres", pg.super_pw), NULL, &d, &e) ||
        st_fleetdb_migrate(d, &n, &e))
        fail_msg("migrate %s: %s", db, e.msg);
    assert_int_equal(n, 2);
    st_fleetdb_close(d);
}

static void mkdirs(const char *sub)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", tmp, sub);
    mkdir(p, 0755);
}

static void report(const char *sub, const char *name, const char *station, const char *run,
                   int slot, const char *id, const char *verdict, const char *cause, bool fin)
{
    char d[256];
    snprintf(d, sizeof d, "%s/%s", tmp, sub);
    st_test_report r = { station, run, id, verdict, cause, slot, fin, 0 };
    assert_int_equal(st_test_write_report(d, name, &r), 0);
}

static int ship_pass(const char *sub, const char *state, const char *user, const char *pw,
                     st_ship_stats *st, st_err *e)
{
    char d[256], s[256];
    snprintf(d, sizeof d, "%s/%s", tmp, sub);
    snprintf(s, sizeof s, "%s/%s", tmp, state);
    st_ship_config c = { d, s, ci("fleet", user, NULL), pw, NULL, NULL, NULL };
    st_ship *sh = NULL;
    int rc = st_ship_open(&c, &sh, e);
    if (rc)
        return rc;
    rc = st_ship_pass(sh, st, e);
    st_ship_close(sh);
    return rc;
}

static size_t count_files(const char *sub)
{
    char d[256];
    snprintf(d, sizeof d, "%s/%s", tmp, sub);
    DIR *dir = opendir(d);
    size_t n = 0;
    struct dirent *e;
    while (dir && (e = readdir(dir)))
        n += strstr(e->d_name, ".yaml") != NULL;
    if (dir)
        closedir(dir);
    return n;
}

/* ---- configuration -------------------------------------------------------------------- */

static void test_config_mode(void **state)
{
    char p[256];
    st_fleet_cfg c;
    st_err e;
    snprintf(p, sizeof p, "%s/cfg.yaml", tmp);
    assert_int_equal(st_test_write_config(p, "station: line2a\ndatabase:\n  conninfo: \"dbname=x\"\n"
                                             "  password: s3cret\nmqtt:\n  host: 127.0.0.1\n"), 0);
    assert_int_equal(st_fleet_cfg_load(p, &c, &e), 0);
    assert_string_equal(c.station, "line2a");
    assert_string_equal(c.db_password, "s3cret");
    assert_string_equal(c.mqtt_user, "line2a");
    assert_int_equal(c.mqtt_port, 1883);
    chmod(p, 0644);
    assert_int_equal(st_fleet_cfg_load(p, &c, &e), ST_ERR_PERM);
    assert_non_null(strstr(e.msg, "readable by others"));
    chmod(p, 0640);
    assert_int_equal(st_fleet_cfg_load(p, &c, &e), ST_ERR_PERM);
    assert_non_null(strstr(e.msg, "its group"));
    /* Bad values name the line and field. */
    assert_int_equal(st_test_write_config(p, "station: line2a\nmqtt:\n  host: h\n  port: 70000\n"), 0);
    assert_int_equal(st_fleet_cfg_load(p, &c, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, ":4:"));
    assert_non_null(strstr(e.msg, "mqtt.port"));
    assert_int_equal(st_test_write_config(p, "station: \"a/+/#\"\n"), 0);
    assert_int_equal(st_fleet_cfg_load(p, &c, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "not a station name"));
}

/* ---- migrations ---------------------------------------------------------------------- */

static void test_migrate(void **state)
{
    fresh_db("fleet"); /* applies both migrations */
    st_fleetdb *d = NULL;
    st_err e;
    int n = -1;
    assert_int_equal(st_fleetdb_open(ci("fleet", "postgres", pg.super_pw), NULL, &d, &e), 0);
    assert_int_equal(st_fleetdb_migrate(d, &n, &e), 0);
    assert_int_equal(n, 0); /* nothing runs twice */
    assert_int_equal(value("fleet", "SELECT count(*) FROM fleet.schema_migrations"), 2);
    /* A migration edited after it was applied is refused, by name. */
    char real[80];
    text_value("fleet", "SELECT sha256 FROM fleet.schema_migrations WHERE version = 1", real, sizeof real);
    sql("fleet", "UPDATE fleet.schema_migrations SET sha256 = 'x' WHERE version = 1");
    assert_int_equal(st_fleetdb_migrate(d, &n, &e), ST_ERR_MISMATCH);
    assert_non_null(strstr(e.msg, "0001_schema.sql"));
    char q[256];
    snprintf(q, sizeof q, "UPDATE fleet.schema_migrations SET sha256 = '%s' WHERE version = 1", real);
    sql("fleet", q);
    assert_int_equal(st_fleetdb_migrate(d, &n, &e), 0);
    st_fleetdb_close(d);
    /* The stations and the quality team's reader. */
    sql("fleet", "CREATE ROLE st1 LOGIN PASSWORD 'p1' IN ROLE fleet_station;"
                 "CREATE ROLE st2 LOGIN PASSWORD 'p2' IN ROLE fleet_station;"
                 "CREATE ROLE qa LOGIN PASSWORD 'q' IN ROLE fleet_reader");
    /* The station roles cannot migrate. */
    assert_int_equal(st_fleetdb_open(ci("fleet", "st1", NULL), "p1", &d, &e), 0);
    sql("postgres", "CREATE DATABASE blank");
    st_fleetdb_close(d);
    assert_int_equal(st_fleetdb_open(ci("blank", "st1", NULL), "p1", &d, &e), 0);
    assert_int_not_equal(st_fleetdb_migrate(d, &n, &e), 0);
    st_fleetdb_close(d);
}

/* ---- shipping exactly once ------------------------------------------------------------ */

static void test_exactly_once(void **state)
{
    mkdirs("r1");
    for (int i = 0; i < 12; i++) {
        char name[64], id[32];
        snprintf(name, sizeof name, "U%04d_slot%d_a.yaml", i, i % 4 + 1);
        snprintf(id, sizeof id, "U%04d", i);
        report("r1", name, "st1", "run-a", i % 4 + 1, id, i % 3 ? "pass" : "fail",
               "slot 1: flash: dfu: write 0x08004000: device reported errPROG", true);
    }
    report("r1", "U0100_slot1_b.yaml", "st1", "run-b", 1, "U0100", NULL, NULL, false);
    st_ship_stats st;
    st_err e;
    assert_int_equal(ship_pass("r1", "s1", "st1", "p1", &st, &e), 0);
    assert_int_equal(st.inserted, 12);
    assert_int_equal(st.in_flight, 1);
    assert_int_equal(value("fleet", "SELECT count(*) FROM fleet.runs"), 12);
    assert_int_equal(value("fleet", "SELECT count(*) FROM fleet.steps"), 36);
    assert_int_equal(value("fleet", "SELECT count(*) FROM fleet.runs WHERE verdict = 'fail' "
                                    "AND failed_step = 'flash'"), 4);
    /* Again: nothing new. */
    assert_int_equal(ship_pass("r1", "s1", "st1", "p1", &st, &e), 0);
    assert_int_equal(st.inserted + st.duplicate, 0);
    /* The shipped log lost (a crash before its fsync, or a new disk): every report goes
     * again and the database answers duplicate. */
    char p[256];
    snprintf(p, sizeof p, "%s/s1/shipped", tmp);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(ship_pass("r1", "s1", "st1", "p1", &st, &e), 0);
    assert_int_equal(st.inserted, 0);
    assert_int_equal(st.duplicate, 12);
    /* A torn last line in the log: that report is a duplicate, the rest are known. */
    FILE *f = fopen(p, "a");
    fputs("U0100_slot1_b.ya", f);
    fclose(f);
    /* The in-flight report finishes. */
    report("r1", "U0100_slot1_b.yaml", "st1", "run-b", 1, "U0100", "pass", NULL, true);
    assert_int_equal(ship_pass("r1", "s1", "st1", "p1", &st, &e), 0);
    assert_int_equal(st.inserted, 1);
    assert_int_equal(value("fleet", "SELECT count(*) FROM fleet.runs"), 13);
    /* The same run and unit with other content: the stored row is kept, reported. */
    report("r1", "U0001_slot2_copy.yaml", "st1", "run-a", 2, "U0001", "fail", "edited", true);
    assert_int_equal(ship_pass("r1", "s1", "st1", "p1", &st, &e), 0);
    assert_int_equal(st.conflict, 1);
    assert_int_equal(value("fleet", "SELECT count(*) FROM fleet.runs"), 13);
    /* A unit found on a bus, in no slot: slot_id 0. */
    report("r1", "0a0b0c0d0e0f_noslot_a.yaml", "st1", "run-c", -1, "0a0b0c0d0e0f", "pass", NULL, true);
    assert_int_equal(ship_pass("r1", "s1", "st1", "p1", &st, &e), 0);
    assert_int_equal(st.inserted, 1);
    assert_int_equal(value("fleet", "SELECT slot_id FROM fleet.runs WHERE run_id = 'run-c'"), 0);
    /* A file that is not a report is rejected by name, not retried, and not deleted. */
    snprintf(p, sizeof p, "%s/r1/broken.yaml", tmp);
    f = fopen(p, "w");
    fputs("schema: 1\nverdict: [\n", f);
    fclose(f);
    assert_int_equal(ship_pass("r1", "s1", "st1", "p1", &st, &e), 0);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(count_files("r1"), 16); /* nothing deleted */
    /* Two shippers on one state directory: the second is refused. */
    char d[256], s[256];
    snprintf(d, sizeof d, "%s/r1", tmp);
    snprintf(s, sizeof s, "%s/s1", tmp);
    st_ship_config c = { d, s, ci("fleet", "st1", NULL), "p1", NULL, NULL, NULL };
    st_ship *a = NULL, *b = NULL;
    assert_int_equal(st_ship_open(&c, &a, &e), 0);
    assert_int_equal(st_ship_open(&c, &b, &e), ST_ERR_BUSY);
    st_ship_close(a);
}

static void test_database_away(void **state)
{
    mkdirs("r2");
    assert_int_equal(st_tpg_stop(&pg, true), 0);
    for (int i = 0; i < 5; i++) {
        char name[64], id[32];
        snprintf(name, sizeof name, "D%04d_slot1_a.yaml", i);
        snprintf(id, sizeof id, "D%04d", i);
        report("r2", name, "st1", "run-d", 1, id, "pass", NULL, true);
    }
    st_ship_stats st;
    st_err e;
    int rc = ship_pass("r2", "s2", "st1", "p1", &st, &e);
    assert_int_equal(rc, ST_ERR_IO);
    assert_int_equal(st.pending, 5);
    assert_int_equal(count_files("r2"), 5);
    assert_int_equal(st_tpg_restart(&pg), 0);
    assert_int_equal(ship_pass("r2", "s2", "st1", "p1", &st, &e), 0);
    assert_int_equal(st.inserted, 5);
    assert_int_equal(value("fleet", "SELECT count(*) FROM fleet.runs WHERE run_id = 'run-d'"), 5);
    /* A database without the schema: pending, with the hint. */
    mkdirs("r2b");
    report("r2b", "E0001_slot1_a.yaml", "st1", "run-e", 1, "E0001", "pass", NULL, true);
    char d[256], s[256];
    snprintf(d, sizeof d, "%s/r2b", tmp);
    snprintf(s, sizeof s, "%s/s2b", tmp);
    st_ship_config c = { d, s, ci("blank", "st1", NULL), "p1", NULL, NULL, NULL };
    st_ship *sh = NULL;
    assert_int_equal(st_ship_open(&c, &sh, &e), 0);
    assert_int_equal(st_ship_pass(sh, &st, &e), ST_ERR_NOTFOUND);
    assert_non_null(strstr(e.msg, "--migrate"));
    assert_int_equal(st.pending, 1);
    st_ship_close(sh);
}

static void count_row(void *ctx, const st_history_row *r)
{
    (*(int *)ctx)++;
    assert_string_equal(r->identity, "U0001");
}

/* ---- security ----------------------------------------------------------------------- */

static void test_row_security(void **state)
{
    mkdirs("r3");
    report("r3", "U0001_slot1_z.yaml", "st2", "run-z", 1, "U0001", "pass", NULL, true);
    st_ship_stats st;
    st_err e;
    assert_int_equal(ship_pass("r3", "s3", "st2", "p2", &st, &e), 0);
    assert_int_equal(st.inserted, 1);
    /* st2 sees only its own run; st1 only its own. */
    st_fleetdb *d = NULL;
    assert_int_equal(st_fleetdb_open(ci("fleet", "st2", NULL), "p2", &d, &e), 0);
    st_summary *sum = st_summary_new();
    assert_int_equal(st_fleetdb_summary(d, sum, &e), 1);
    st_summary_free(sum);
    st_fleetdb_close(d);
    /* A station cannot write another station's rows, nor change or delete its own. */
    char why[512];
    assert_int_not_equal(st_tpg_sql(&pg, "fleet",
                                    "SET ROLE st2; INSERT INTO fleet.runs (station, run_id, slot_id, "
                                    "unit_identity, verdict, report_file, report_sha256, report) VALUES "
                                    "('st1', 'forged', 1, 'U0001', 'pass', 'f', 's', '{}')", why, sizeof why), 0);
    assert_non_null(strstr(why, "row-level security"));
    assert_int_not_equal(st_tpg_sql(&pg, "fleet", "SET ROLE st2; UPDATE fleet.runs SET verdict = 'fail'",
                                    why, sizeof why), 0);
    assert_int_not_equal(st_tpg_sql(&pg, "fleet", "SET ROLE st2; DELETE FROM fleet.runs", why, sizeof why), 0);
    assert_int_not_equal(st_tpg_sql(&pg, "fleet", "SET ROLE qa; DELETE FROM fleet.runs", why, sizeof why), 0);
    assert_int_equal(value("fleet", "SET ROLE st2; SELECT count(*) FROM fleet.runs"), 1);
    assert_int_equal(value("fleet", "SET ROLE st2; SELECT count(*) FROM fleet.steps"), 3);
    assert_int_equal(value("fleet", "SET ROLE st1; SELECT count(*) FROM fleet.runs WHERE station = 'st2'"), 0);
    /* The reader sees both stations' runs of U0001 in its history. */
    assert_int_equal(st_fleetdb_open(ci("fleet", "qa", NULL), "q", &d, &e), 0);
    int rows = 0;
    assert_int_equal(st_fleetdb_history(d, "u0001", count_row, &rows, &e), 2);
    assert_int_equal(rows, 2);
    st_fleetdb_close(d);
    assert_int_equal(value("fleet", "SET ROLE qa; SELECT count(DISTINCT station) FROM fleet.runs "
                                    "WHERE unit_identity = 'U0001'"), 2);
}

static void test_injection(void **state)
{
    mkdirs("r4");
    static const char evil_id[] = "x'); DROP TABLE fleet.runs; --";
    static const char evil_cause[] = "$1 ' \" \\ \n\t\x01 station/st2/# +/\xc3\xa9 {\"a\":1}";
    report("r4", "evil_slot1_a.yaml", "st1", "run-e", 1, evil_id, "fail", evil_cause, true);
    st_ship_stats st;
    st_err e;
    assert_int_equal(ship_pass("r4", "s4", "st1", "p1", &st, &e), 0);
    assert_int_equal(st.inserted, 1);
    char got[512];
    text_value("fleet", "SELECT unit_identity FROM fleet.runs WHERE run_id = 'run-e'", got, sizeof got);
    assert_string_equal(got, evil_id);
    text_value("fleet", "SELECT cause FROM fleet.runs WHERE run_id = 'run-e'", got, sizeof got);
    assert_string_equal(got, evil_cause);
    text_value("fleet", "SELECT report #>> '{unit,identity}' FROM fleet.runs WHERE run_id = 'run-e'", got, sizeof got);
    assert_string_equal(got, evil_id);
    text_value("fleet", "SELECT error FROM fleet.steps s JOIN fleet.runs r ON r.id = s.run "
                        "WHERE r.run_id = 'run-e' AND s.outcome = 'fail'", got, sizeof got);
    assert_string_equal(got, evil_cause);
    assert_true(value("fleet", "SELECT count(*) FROM fleet.runs") > 10); /* still there */
    /* The same text on MQTT goes into the payload only, escaped: topics stay the tree. */
    st_tsub *sub = st_tsub_open(mq.port, "admin", "adminpw", "#");
    assert_non_null(sub);
    st_fleet_cfg c = { 0 };
    strcpy(c.station, "st1");
    strcpy(c.mqtt_host, "127.0.0.1");
    c.mqtt_port = (unsigned)mq.port;
    strcpy(c.mqtt_user, "st1");
    strcpy(c.mqtt_password, "p1");
    strcpy(c.mqtt_prefix, "station");
    c.mqtt_keepalive = 30;
    c.has_mqtt = true;
    st_live *l = NULL;
    assert_int_equal(st_live_open(&c, "inj", NULL, &l, &e), 0);
    assert_true(st_live_wait_connected(l, 10000));
    st_live_unit_done(l, 3, "fail", evil_id, evil_cause, "evil.yaml", "run-e");
    assert_true(st_tsub_wait(sub, "station/st1/events/unit", "DROP TABLE", 1, 10000));
    char p[1024];
    assert_non_null(st_tsub_last(sub, "station/st1/events/unit", p, sizeof p));
    assert_non_null(strstr(p, "\"cause\":\"$1 ' \\\" \\\\ \\u000a\\u0009\\u0001 station/st2/# +/\xc3\xa9 {\\\"a\\\":1}\""));
    assert_int_equal(st_tsub_count_prefix(sub, "station/st2"), 0);
    st_live_close(l, 5000);
    st_tsub_close(sub);
}

/* Random bytes through the report model, JSON and PostgreSQL come back as the model
 * holds them (invalid UTF-8 was already made '?' by the model; everything else verbatim). */
static void test_verbatim_random(void **state)
{
    PGconn *c = PQconnectdb(ci("fleet", "st1", "p1"));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    uint32_t rng = 0xC0FFEE;
    for (int it = 0; it < 300; it++) {
        char txt[96];
        size_t n = 1 + rng % 90;
        for (size_t i = 0; i < n; i++) {
            rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
            txt[i] = (char)(1 + rng % 255);
        }
        txt[n] = '\0';
        st_rnode *d = st_report_new();
        st_rmap_str(d, "cause", txt);
        char *j = NULL;
        st_err e;
        assert_int_equal(st_report_json(d, &j, NULL, &e), 0);
        const char *p[] = { j };
        PGresult *r = PQexecParams(c, "SELECT ($1::jsonb) ->> 'cause'", 1, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            fail_msg("%s: %s", j, PQresultErrorMessage(r));
        assert_string_equal(PQgetvalue(r, 0, 0), st_rget_str(d, "cause"));
        PQclear(r);
        free(j);
        st_report_free(d);
    }
    PQfinish(c);
}

/* Measurements a step reports (the checks of running units) land in their own table. */
static void test_measurements(void **state)
{
    mkdirs("r6");
    report("r6", "M0001_slot1_a.yaml", "st1", "run-m", 1, "M0001", "pass", NULL, true);
    char p[256];
    snprintf(p, sizeof p, "%s/r6/M0001_slot1_a.yaml", tmp);
    st_rnode *d = NULL;
    st_err e;
    assert_int_equal(st_report_load(p, &d, &e), 0);
    st_rnode *ms = st_rmap_seq(st_rfind(d, "steps.2"), "measurements");
    st_rnode *m = st_rseq_add_map(ms);
    st_rmap_str(m, "name", "clock_freq");
    st_rmap_int(m, "value", 170000000);
    st_rmap_str(m, "unit", "Hz");
    st_rmap_int(m, "low", 169000000);
    st_rmap_int(m, "high", 171000000);
    st_rmap_str(m, "outcome", "pass");
    m = st_rseq_add_map(ms);
    st_rmap_str(m, "name", "data_stddev");
    st_rmap_num(m, "value", NAN); /* SCHEMA.md: .nan when there is no value */
    st_rmap_str(m, "unit", "counts");
    st_rmap_str(m, "outcome", "fail");
    assert_int_equal(st_report_write_atomic(d, p, &e), 0);
    st_report_free(d);
    st_ship_stats st;
    assert_int_equal(ship_pass("r6", "s6", "st1", "p1", &st, &e), 0);
    assert_int_equal(st.inserted, 1);
    assert_int_equal(value("fleet", "SELECT count(*) FROM fleet.measurements m JOIN fleet.runs r "
                                    "ON r.id = m.run WHERE r.run_id = 'run-m'"), 2);
    assert_int_equal(value("fleet", "SELECT value::bigint FROM fleet.measurements WHERE name = 'clock_freq' "
                                    "AND low = 169000000 AND high = 171000000 AND unit = 'Hz' AND step_idx = 2"),
                     170000000);
    char got[128];
    text_value("fleet", "SELECT value_text || '|' || coalesce(value::text, 'null') FROM fleet.measurements "
                        "WHERE name = 'data_stddev'", got, sizeof got);
    assert_string_equal(got, ".nan|null");
}

static void test_mqtt_acl(void **state)
{
    /* st1 may not publish into st2's tree nor read it; the broker drops such messages. */
    st_tsub *sub = st_tsub_open(mq.port, "admin", "adminpw", "station/#");
    st_tsub *spy = st_tsub_open(mq.port, "st1", "p1", "station/st2/#");
    assert_non_null(sub);
    assert_non_null(spy);
    st_fleet_cfg c = { 0 };
    st_err e;
    strcpy(c.station, "st2");
    strcpy(c.mqtt_host, "127.0.0.1");
    c.mqtt_port = (unsigned)mq.port;
    strcpy(c.mqtt_user, "st1"); /* station st2's name, st1's credentials */
    strcpy(c.mqtt_password, "p1");
    strcpy(c.mqtt_prefix, "station");
    c.mqtt_keepalive = 30;
    c.has_mqtt = true;
    st_live *forger = NULL, *own = NULL;
    assert_int_equal(st_live_open(&c, "forge", NULL, &forger, &e), 0);
    assert_true(st_live_wait_connected(forger, 10000));
    st_live_unit_done(forger, 1, "pass", "forged", NULL, NULL, "r");
    strcpy(c.station, "st2");
    strcpy(c.mqtt_user, "st2");
    strcpy(c.mqtt_password, "p2");
    assert_int_equal(st_live_open(&c, "own", NULL, &own, &e), 0);
    assert_true(st_live_wait_connected(own, 10000));
    st_live_unit_done(own, 1, "pass", "genuine", NULL, NULL, "r");
    /* The genuine event arrives; by then the forged one (sent first, on another
     * connection the broker already handled) has been dropped. */
    assert_true(st_tsub_wait(sub, "station/st2/events/unit", "genuine", 1, 10000));
    st_live_close(forger, 2000);
    assert_int_equal(st_tsub_count(sub, "station/st2/events/unit", "forged"), 0);
    assert_int_equal(st_tsub_count_prefix(spy, "station/st2"), 0);
    /* Wrong password: never connects. */
    strcpy(c.mqtt_password, "wrong");
    st_live *bad = NULL;
    assert_int_equal(st_live_open(&c, "bad", NULL, &bad, &e), 0);
    assert_false(st_live_wait_connected(bad, 1500));
    st_live_close(bad, 100);
    st_live_close(own, 5000);
    st_tsub_close(spy);
    st_tsub_close(sub);
}

/* ---- live status ----------------------------------------------------------------------- */

static void test_live_and_will(void **state)
{
    st_tsub *sub = st_tsub_open(mq.port, "dash", "d", "station/#");
    assert_non_null(sub);
    st_fleet_cfg c = { 0 };
    st_err e;
    strcpy(c.station, "st1");
    strcpy(c.mqtt_host, "127.0.0.1");
    c.mqtt_port = (unsigned)mq.port;
    strcpy(c.mqtt_user, "st1");
    strcpy(c.mqtt_password, "p1");
    strcpy(c.mqtt_prefix, "station");
    c.mqtt_keepalive = 30;
    c.has_mqtt = true;
    st_live *l = NULL;
    assert_int_equal(st_live_open(&c, "live", NULL, &l, &e), 0);
    assert_true(st_live_wait_connected(l, 10000));
    st_live_slot_state(l, 2, "running", "208A31574253", "run-1");
    st_live_slot_step(l, 2, "flash", 1);
    for (uint64_t d = 0; d <= 36; d += 4)
        st_live_slot_progress(l, 2, "write", d * 1024, 36 * 1024);
    st_live_unit_done(l, 2, "pass", "208A31574253", NULL, "208A31574253_slot2_x.yaml", "run-1");
    assert_true(st_tsub_wait(sub, "station/st1/status", "online", 1, 10000));
    assert_true(st_tsub_wait(sub, "station/st1/slot/2/state", "\"running\"", 1, 10000));
    assert_true(st_tsub_wait(sub, "station/st1/slot/2/step", "\"flash\"", 1, 10000));
    assert_true(st_tsub_wait(sub, "station/st1/slot/2/progress", "\"percent\":100", 1, 10000));
    assert_true(st_tsub_wait(sub, "station/st1/events/unit", "\"verdict\":\"pass\"", 1, 10000));
    assert_true(st_tsub_wait(sub, "station/st1/slot/2/verdict", "\"pass\"", 1, 10000));
    /* Progress is rate limited: far fewer messages than updates, the last one kept. */
    assert_true(st_tsub_count(sub, "station/st1/slot/2/progress", NULL) < 10);
    st_live_close(l, 5000);
    assert_true(st_tsub_wait(sub, "station/st1/status", "offline", 1, 10000));
    /* A late subscriber gets the retained state. */
    st_tsub *late = st_tsub_open(mq.port, "dash", "d", "station/st1/slot/2/#");
    assert_non_null(late);
    assert_true(st_tsub_wait(late, "station/st1/slot/2/verdict", "208A31574253", 1, 10000));
    st_tsub_close(late);
    /* The last will: a station that dies without a goodbye is marked offline. */
    size_t offline = st_tsub_count(sub, "station/st2/status", "offline");
    char go = 'g', ready = 0;
    assert_int_equal(write(will_go[1], &go, 1), 1);
    assert_int_equal(read(will_ready[0], &ready, 1), 1);
    assert_int_equal(ready, 'c');
    assert_true(st_tsub_wait(sub, "station/st2/status", "online", 1, 10000));
    kill(will_pid, SIGKILL);
    int wst;
    waitpid(will_pid, &wst, 0);
    will_pid = 0;
    assert_true(WIFSIGNALED(wst));
    assert_true(st_tsub_wait(sub, "station/st2/status", "offline", offline + 1, 10000));
    st_tsub_close(sub);
}

static void test_events_survive_broker_restart(void **state)
{
    st_fleet_cfg c = { 0 };
    st_err e;
    strcpy(c.station, "st1");
    strcpy(c.mqtt_host, "127.0.0.1");
    c.mqtt_port = (unsigned)mq.port;
    strcpy(c.mqtt_user, "st1");
    strcpy(c.mqtt_password, "p1");
    strcpy(c.mqtt_prefix, "station");
    c.mqtt_keepalive = 30;
    c.has_mqtt = true;
    st_live *l = NULL;
    assert_int_equal(st_live_open(&c, "restart", NULL, &l, &e), 0);
    assert_true(st_live_wait_connected(l, 10000));
    st_tmq_kill(&mq);
    /* Publishing while the broker is away neither fails nor waits for it: the events are
     * queued for the next connection. */
    st_live_stats q;
    st_deadline dl = st_deadline_in_ms(10000);
    for (st_live_get_stats(l, &q); q.connected && !st_deadline_passed(dl); st_live_get_stats(l, &q))
        st_sleep_until(st_deadline_in_ms(10)); /* until the station noticed */
    assert_false(q.connected);
    for (int i = 0; i < 20; i++)
        st_live_unit_done(l, 1, "pass", "while-away", NULL, NULL, "r");
    st_live_get_stats(l, &q);
    assert_int_equal(q.queued, 20);
    /* A station that starts while the broker is away connects once it is back. */
    st_live *late = NULL;
    assert_int_equal(st_live_open(&c, "late", NULL, &late, &e), 0);
    assert_false(st_live_wait_connected(late, 200));
    assert_int_equal(st_tmq_restart(&mq), 0);
    st_tsub *sub = st_tsub_open(mq.port, "admin", "adminpw", "station/#");
    assert_non_null(sub);
    assert_true(st_live_wait_connected(late, 20000));
    st_live_close(late, 2000);
    /* The broker restarted empty; the station republishes its retained state on reconnect
     * and sends the queued events. */
    assert_true(st_tsub_wait(sub, "station/st1/slot/1/verdict", "while-away", 1, 20000));
    st_live_get_stats(l, &q);
    assert_int_equal(q.queued, 0);
    st_live_stats ls;
    st_live_get_stats(l, &ls);
    assert_true(ls.connects >= 2);
    assert_int_equal(ls.dropped, 0);
    st_live_close(l, 5000);
    st_tsub_close(sub);
}

/* TLS to the broker: a private CA and a server certificate for 127.0.0.1 made with the
 * openssl tool, a second broker whose listener takes only TLS. */
static void test_mqtt_tls(void **state)
{
    char d[128], cmd[2048];
    snprintf(d, sizeof d, "%s/tls", tmp);
    mkdir(d, 0755);
    chmod(tmp, 0755); /* the broker's user reads its certificate from here */
    snprintf(cmd, sizeof cmd,
             "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt "
             "-days 2 -subj /CN=fleet-test-ca && openssl req -newkey rsa:2048 -nodes "
             "-keyout srv.key -out srv.csr -subj /CN=127.0.0.1 && printf "
             "'subjectAltName=IP:127.0.0.1\\n' > ext && openssl x509 -req -in srv.csr -CA ca.crt "
             "-CAkey ca.key -CAcreateserial -out srv.crt -days 2 -extfile ext && "
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt -days 2 "
             "-subj /CN=other-ca && chmod 644 *", d);
    strncat(cmd, " >/dev/null 2>&1", sizeof cmd - strlen(cmd) - 1);
    if (system(cmd) != 0) {
        printf("openssl could not make the test certificates: TLS not tested\n");
        skip();
    }
    char extra[512], why[256];
    snprintf(extra, sizeof extra, "cafile %s/ca.crt\ncertfile %s/srv.crt\nkeyfile %s/srv.key\n", d, d, d);
    if (st_tmq_start(&tls, mq_users, mq_acl, extra, why, sizeof why) != 0) {
        st_tmq_destroy(&tls);
        fail_msg("TLS broker: %s", why);
    }
    char ca[160], other[160];
    snprintf(ca, sizeof ca, "%s/ca.crt", d);
    snprintf(other, sizeof other, "%s/other.crt", d);
    st_tsub *sub = st_tsub_open_tls(tls.port, "admin", "adminpw", "station/#", ca);
    assert_non_null(sub);
    st_fleet_cfg c = { 0 };
    st_err e;
    strcpy(c.station, "st1");
    strcpy(c.mqtt_host, "127.0.0.1");
    c.mqtt_port = (unsigned)tls.port;
    strcpy(c.mqtt_user, "st1");
    strcpy(c.mqtt_password, "p1");
    strcpy(c.mqtt_prefix, "station");
    strcpy(c.tls_cafile, ca);
    c.mqtt_keepalive = 30;
    c.has_mqtt = true;
    st_live *l = NULL;
    assert_int_equal(st_live_open(&c, "tls", NULL, &l, &e), 0);
    assert_true(st_live_wait_connected(l, 10000));
    st_live_unit_done(l, 1, "pass", "over-tls", NULL, NULL, "r");
    assert_true(st_tsub_wait(sub, "station/st1/events/unit", "over-tls", 1, 10000));
    st_live_close(l, 5000);
    /* A CA that did not sign the broker's certificate: never connects. */
    strcpy(c.tls_cafile, other);
    assert_int_equal(st_live_open(&c, "tls-bad", NULL, &l, &e), 0);
    assert_false(st_live_wait_connected(l, 1500));
    st_live_close(l, 100);
    /* Plain MQTT to the TLS listener: never connects either. */
    c.tls_cafile[0] = '\0';
    assert_int_equal(st_live_open(&c, "plain", NULL, &l, &e), 0);
    assert_false(st_live_wait_connected(l, 1500));
    st_live_close(l, 100);
    st_tsub_close(sub);
    st_tmq_destroy(&tls);
}

/* ---- a crash of the shipping service ------------------------------------------------ */

/* `station ship` (the service) SIGKILLed while it ships, then started again: every report
 * is in the database once, and the shipped log names each once. */
static void test_service_crash(void **state)
{
    enum { N = 600 };
    mkdirs("r7");
    char d[256], cfg[256], text[1024], statep[256];
    snprintf(d, sizeof d, "%s/r7", tmp);
    snprintf(statep, sizeof statep, "%s/s7", tmp);
    for (int i = 0; i < N; i++) {
        char name[64], id[32];
        snprintf(name, sizeof name, "K%04d_slot%d_a.yaml", i, i % 8 + 1);
        snprintf(id, sizeof id, "K%04d", i);
        st_test_report r = { "st1", "run-k", id, "pass", NULL, i % 8 + 1, true, 0 };
        assert_int_equal(st_test_write_report(d, name, &r), 0);
    }
    snprintf(cfg, sizeof cfg, "%s/crash.yaml", tmp);
    snprintf(text, sizeof text, "station: st1\nreports: %s\nstate: %s\ndatabase:\n  conninfo: \"%s\"\n"
                                "  password: p1\n", d, statep, ci("fleet", "st1", NULL));
    assert_int_equal(st_test_write_config(cfg, text), 0);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execl(STATION, "station", "ship", "--config", cfg, (char *)NULL);
        _exit(127);
    }
    long at_kill = 0;
    st_deadline dl = st_deadline_in_ms(30000);
    while (!st_deadline_passed(dl) &&
           (at_kill = value("fleet", "SELECT count(*) FROM fleet.runs WHERE run_id = 'run-k'")) < 40)
        st_sleep_until(st_deadline_in_ms(5));
    kill(pid, SIGKILL);
    int wst;
    waitpid(pid, &wst, 0);
    assert_true(WIFSIGNALED(wst));
    at_kill = value("fleet", "SELECT count(*) FROM fleet.runs WHERE run_id = 'run-k'");
    printf("station ship SIGKILLed with %ld of %d reports in the database\n", at_kill, N);
    char out[4096];
    snprintf(text, sizeof text, "%s ship --once --config %s", STATION, cfg);
    uint64_t t0 = st_now_us();
    FILE *p = popen(text, "r");
    out[fread(out, 1, sizeof out - 1, p)] = '\0';
    assert_int_equal(pclose(p), 0);
    double secs = (double)(st_now_us() - t0) / 1e6;
    printf("restart: %s", out);
    printf("one shipper (--once, a process start included): %ld reports in %.2f s, %.0f reports/s\n",
           N - at_kill, secs, (double)(N - at_kill) / secs);
    assert_int_equal(value("fleet", "SELECT count(*) FROM fleet.runs WHERE run_id = 'run-k'"), N);
    assert_int_equal(value("fleet", "SELECT count(DISTINCT unit_identity) FROM fleet.runs WHERE run_id = 'run-k'"), N);
    /* The log: every name once. */
    char logp[300];
    snprintf(logp, sizeof logp, "%s/shipped", statep);
    FILE *f = fopen(logp, "r");
    assert_non_null(f);
    char line[512];
    unsigned lines = 0;
    while (fgets(line, sizeof line, f))
        lines += line[0] != '\n';
    fclose(f);
    assert_int_equal(lines, N);
    assert_int_equal(count_files("r7"), N);
    /* The service ships a report that appears while it runs (inotify), and SIGTERM ends
     * it cleanly (exit 0), as systemd stops it. */
    pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execl(STATION, "station", "ship", "--config", cfg, (char *)NULL);
        _exit(127);
    }
    st_test_report r = { "st1", "run-k2", "K9999", "pass", NULL, 1, true, 0 };
    assert_int_equal(st_test_write_report(d, "K9999_slot1_b.yaml", &r), 0);
    dl = st_deadline_in_ms(20000);
    while (!st_deadline_passed(dl) && value("fleet", "SELECT count(*) FROM fleet.runs WHERE run_id = 'run-k2'") < 1)
        st_sleep_until(st_deadline_in_ms(10));
    assert_int_equal(value("fleet", "SELECT count(*) FROM fleet.runs WHERE run_id = 'run-k2'"), 1);
    kill(pid, SIGTERM);
    waitpid(pid, &wst, 0);
    assert_true(WIFEXITED(wst));
    assert_int_equal(WEXITSTATUS(wst), 0);
}

/* ---- summaries --------------------------------------------------------------------------- */

static void test_summary_file_equals_db(void **state)
{
    fresh_db("fsum");
    sql("fsum", "GRANT CONNECT ON DATABASE fsum TO st1, qa");
    mkdirs("r5");
    /* Units A (pass), B (fail then pass: not first pass), C (fail twice), D (incomplete). */
    char d[256];
    snprintf(d, sizeof d, "%s/r5", tmp);
    uint64_t t = 1764547200000000ull;
    st_test_report r[] = {
        { "st1", "r1", "A", "pass", NULL, 1, true, t },
        { "st1", "r1", "B", "fail", "flash: errPROG", 2, true, t },
        { "st1", "r2", "B", "pass", NULL, 2, true, t + 60000000 },
        { "st1", "r1", "C", "fail", "flash: errPROG", 3, true, t },
        { "st1", "r2", "C", "fail", "flash: timeout", 3, true, t + 60000000 },
        { "st1", "r2", "D", "incomplete", "stopped by the operator", 4, true, t + 60000000 },
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s_slot%d_%s.yaml", r[i].identity, r[i].slot, r[i].run_id);
        assert_int_equal(st_test_write_report(d, name, &r[i]), 0);
    }
    char s[256];
    snprintf(s, sizeof s, "%s/s5", tmp);
    st_ship_config c = { d, s, ci("fsum", "st1", NULL), "p1", NULL, NULL, NULL };
    st_ship *sh = NULL;
    st_ship_stats st;
    st_err e;
    assert_int_equal(st_ship_open(&c, &sh, &e), 0);
    assert_int_equal(st_ship_pass(sh, &st, &e), 0);
    assert_int_equal(st.inserted, 6);
    st_ship_close(sh);
    /* The CLI's file summary and its --db summary print the same text. */
    char cfg[256], cmd[1024];
    snprintf(cfg, sizeof cfg, "%s/qa.yaml", tmp);
    char text[512];
    snprintf(text, sizeof text, "station: qa\ndatabase:\n  conninfo: \"%s\"\n  password: q\n",
             ci("fsum", "qa", NULL));
    assert_int_equal(st_test_write_config(cfg, text), 0);
    char a[4096] = "", b[4096] = "";
    snprintf(cmd, sizeof cmd, "%s report summary %s --yaml", STATION, d);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    a[fread(a, 1, sizeof a - 1, p)] = '\0';
    assert_int_equal(pclose(p), 0);
    snprintf(cmd, sizeof cmd, "%s report summary --db --config %s --yaml", STATION, cfg);
    p = popen(cmd, "r");
    assert_non_null(p);
    b[fread(b, 1, sizeof b - 1, p)] = '\0';
    assert_int_equal(pclose(p), 0);
    /* The same yield and failures; the files add times, retries and entry methods (the
     * database keeps no steps), after them. */
    char *extra = strstr(a, "unit_time:");
    assert_non_null(extra);
    assert_int_equal(strncmp(a, b, (size_t)(extra - a)), 0);
    assert_string_equal(b + (extra - a), "");
    assert_non_null(strstr(a, "runs: 6\npass: 2\nfail: 3\nincomplete: 1\nunits: 3\nfirst_pass: 1\n"));
    assert_non_null(strstr(a, "- step: \"flash\"\n  cause: \"flash: errPROG\"\n  count: 2\n"));
}

/* ---- end to end: station run -> station ship -> station history -------------------------- */

static int sh(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sh(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_end_to_end(void **state)
{
    static char out[65536];
    char img[256], job[256], cfg[256], rep[256], stdir[256], text[2048];
    snprintf(img, sizeof img, "%s/demo-combined.bin", tmp);
    snprintf(job, sizeof job, "%s/job.yaml", tmp);
    snprintf(cfg, sizeof cfg, "%s/st1.yaml", tmp);
    snprintf(rep, sizeof rep, "%s/e2e-reports", tmp);
    snprintf(stdir, sizeof stdir, "%s/e2e-state", tmp);
    assert_int_equal(sh(out, sizeof out, "%s image generate %s", STATION, img), 0);
    FILE *f = fopen(job, "w");
    fprintf(f, "name: demo-usb-dfu\ntarget: stm32g431xx\nimages:\n  combined:\n    path: %s\n"
               "    load_addr: 0x08000000\n"
               "    sha256: 61be291834d764072d8c511d62c7c2eb382957fd0659a89818a0637e825fa8f0\n"
               "retries: 2\nreport_dir: %s\nsteps:\n  - enter-bootloader\n"
               "  - flash: { image: combined, skip_identical: true }\n"
               "  - verify: { image: combined }\n  - start: { image: combined }\n"
               "  - wait-for-app: { usb: \"1d50:614e\", timeout_ms: 10000 }\n", img, rep);
    fclose(f);
    snprintf(text, sizeof text, "station: st1\nreports: %s\nstate: %s\ndatabase:\n  conninfo: \"%s\"\n"
                                "  password: p1\nmqtt:\n  host: 127.0.0.1\n  port: %d\n  password: p1\n",
             rep, stdir, ci("fleet", "st1", NULL), mq.port);
    assert_int_equal(st_test_write_config(cfg, text), 0);
    st_tsub *sub = st_tsub_open(mq.port, "dash", "d", "station/st1/#");
    assert_non_null(sub);
    int rc = sh(out, sizeof out, "STATION_FLEET_CONFIG=%s %s run %s --plain", cfg, STATION, job);
    if (rc != 0)
        fail_msg("station run: %d\n%s", rc, out);
    /* Live status during the run: each slot ran, stepped and ended with a verdict event. */
    assert_true(st_tsub_wait(sub, "station/st1/events/unit", "\"verdict\":\"pass\"", 2, 10000));
    assert_true(st_tsub_count(sub, "station/st1/slot/1/step", "\"flash\"") >= 1);
    assert_true(st_tsub_count(sub, "station/st1/slot/2/state", "\"running\"") >= 1);
    assert_true(st_tsub_count(sub, "station/st1/slot/1/verdict", "\"pass\"") >= 1);
    assert_true(st_tsub_wait(sub, "station/st1/status", "offline", 1, 10000));
    st_tsub_close(sub);
    /* The reports carry the configured station name, and ship exactly once. */
    rc = sh(out, sizeof out, "%s ship --once --config %s", STATION, cfg);
    if (rc != 0)
        fail_msg("station ship: %d\n%s", rc, out);
    assert_non_null(strstr(out, "2 inserted"));
    rc = sh(out, sizeof out, "%s ship --once --config %s", STATION, cfg);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "0 inserted"));
    assert_int_equal(value("fleet", "SELECT count(*) FROM fleet.runs WHERE job_name = 'demo-usb-dfu' "
                                    "AND operator <> 'tester' AND report #>> '{station,name}' = 'st1'"), 2);
    char ident[128];
    text_value("fleet", "SELECT unit_identity FROM fleet.runs WHERE job_name = 'demo-usb-dfu' "
                        "AND operator <> 'tester' ORDER BY slot_id LIMIT 1", ident, sizeof ident);
    rc = sh(out, sizeof out, "%s history %s --config %s", STATION, ident, cfg);
    if (rc != 0)
        fail_msg("station history: %d\n%s", rc, out);
    assert_non_null(strstr(out, "1 run of unit"));
    assert_non_null(strstr(out, "demo-usb-dfu"));
    rc = sh(out, sizeof out, "%s history NO-SUCH-UNIT --config %s", STATION, cfg);
    assert_int_equal(rc, 1);
    /* A world-readable configuration is refused before anything runs. */
    chmod(cfg, 0644);
    rc = sh(out, sizeof out, "STATION_FLEET_CONFIG=%s %s run %s --plain", cfg, STATION, job);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "chmod 600"));
    rc = sh(out, sizeof out, "%s ship --once --config %s", STATION, cfg);
    assert_int_equal(rc, 2);
}

/* `station produce` publishes what `station run` does (the same hooks): a two-slot virtual
 * line whose simulated operators bring one unit each; a subscriber sees each slot wait,
 * run, step, and end with a verdict event per unit, and a subscriber that connects after
 * the shift sees the retained slot state, last verdict and the station offline. */
static void test_produce_live(void **state)
{
    static char out[65536];
    char img[256], job[256], cfg[256], rep[256], fx[256], text[4096];
    snprintf(img, sizeof img, "%s/demo-combined.bin", tmp);
    snprintf(job, sizeof job, "%s/pjob.yaml", tmp);
    snprintf(cfg, sizeof cfg, "%s/st2.yaml", tmp);
    snprintf(rep, sizeof rep, "%s/produce-reports", tmp);
    snprintf(fx, sizeof fx, "%s/line.yaml", tmp);
    assert_int_equal(sh(out, sizeof out, "%s image generate %s", STATION, img), 0);
    FILE *f = fopen(job, "w");
    assert_non_null(f);
    fprintf(f, "name: demo-usb-dfu\ntarget: stm32g431xx\nimages:\n  combined:\n    path: %s\n"
               "    load_addr: 0x08000000\n"
               "    sha256: 61be291834d764072d8c511d62c7c2eb382957fd0659a89818a0637e825fa8f0\n"
               "retries: 2\nreport_dir: %s\nsteps:\n  - enter-bootloader\n"
               "  - flash: { image: combined }\n  - verify: { image: combined }\n", img, rep);
    fclose(f);
    f = fopen(fx, "w");
    assert_non_null(f);
    fprintf(f, "name: line\ngpio: { backend: virtual }\n"
               "timing: { reset_pulse_ms: 1, boot_settle_ms: 1 }\nslots:\n");
    for (int id = 1; id <= 2; id++)
        fprintf(f, "  - id: %d\n    lines: { boot0: B%d, reset: { name: R%d, active_low: true }, "
                   "button: BTN%d, present: P%d, led_pass: LP%d, led_fail: LF%d, led_busy: LB%d, "
                   "buzzer: BZ%d }\n"
                   "    usb_port: vusb-%d\n    unit:\n      serial: \"0A1B2C3D4E%02d\"\n"
                   "      operator: { units: 1, arrive_ms: 2, press_ms: 2, remove_ms: 2 }\n",
                id, id, id, id, id, id, id, id, id, id, id);
    fclose(f);
    snprintf(text, sizeof text, "station: st2\nmqtt:\n  host: 127.0.0.1\n  port: %d\n  password: p2\n",
             mq.port);
    assert_int_equal(st_test_write_config(cfg, text), 0);
    st_tsub *sub = st_tsub_open(mq.port, "dash", "d", "station/st2/#");
    assert_non_null(sub);
    int rc = sh(out, sizeof out, "STATION_FLEET_CONFIG=%s %s produce %s -f %s --plain --units 2",
                cfg, STATION, job, fx);
    if (rc != 0)
        fail_msg("station produce: %d\n%s", rc, out);
    assert_non_null(strstr(out, "2 units, 2 passed"));
    /* One QoS 1 event per unit, each slot seen waiting, running, stepping, done. */
    assert_true(st_tsub_wait(sub, "station/st2/status", "offline", 1, 10000));
    assert_int_equal(st_tsub_count(sub, "station/st2/events/unit", "\"verdict\":\"pass\""), 2);
    assert_int_equal(st_tsub_count(sub, "station/st2/events/unit", NULL), 2);
    for (int id = 1; id <= 2; id++) {
        char t[96];
        snprintf(t, sizeof t, "station/st2/slot/%d/state", id);
        assert_true(st_tsub_count(sub, t, "\"waiting\"") >= 1);
        assert_true(st_tsub_count(sub, t, "\"running\"") >= 1);
        assert_true(st_tsub_count(sub, t, "\"done\"") >= 1);
        snprintf(t, sizeof t, "station/st2/slot/%d/step", id);
        assert_true(st_tsub_count(sub, t, "\"flash\"") >= 1);
        snprintf(t, sizeof t, "station/st2/slot/%d/verdict", id);
        assert_int_equal(st_tsub_count(sub, t, "\"pass\""), 1);
    }
    assert_true(st_tsub_count_prefix(sub, "station/st2/slot/1/progress") >= 1);
    st_tsub_close(sub);
    /* Retained: a subscriber arriving after the shift still sees each slot's state (idle:
     * production ended), its last verdict, and the station offline; no event is replayed. */
    sub = st_tsub_open(mq.port, "dash", "d", "station/st2/#");
    assert_non_null(sub);
    assert_true(st_tsub_wait(sub, "station/st2/status", "offline", 1, 10000));
    for (int id = 1; id <= 2; id++) {
        char t[96];
        snprintf(t, sizeof t, "station/st2/slot/%d/state", id);
        assert_true(st_tsub_wait(sub, t, "\"idle\"", 1, 10000));
        snprintf(t, sizeof t, "station/st2/slot/%d/verdict", id);
        assert_true(st_tsub_wait(sub, t, "\"verdict\":\"pass\"", 1, 10000));
    }
    assert_int_equal(st_tsub_count(sub, "station/st2/events/unit", NULL), 0);
    st_tsub_close(sub);
    /* The reports carry the configured station name. */
    assert_int_equal(sh(out, sizeof out, "grep -l 'name: \"\\?st2' %s/*.yaml | wc -l", rep), 0);
    assert_string_equal(out, "2\n");
}

int main(void)
{
    char why[512];
    if (st_tpg_start(&pg, why, sizeof why) != 0) {
        printf("SKIP: %s\n", why);
        st_tpg_destroy(&pg);
        return 77;
    }
    if (st_tmq_start(&mq, mq_users, mq_acl, NULL, why, sizeof why) != 0) {
        printf("SKIP: %s\n", why);
        st_tpg_destroy(&pg);
        st_tmq_destroy(&mq);
        return 77;
    }
    if (pipe(will_go) != 0 || pipe(will_ready) != 0)
        return 1;
    will_pid = fork();
    if (will_pid == 0)
        will_child();
    st_test_tmpl(tmp, sizeof tmp, "st-fleet-t");
    if (!mkdtemp(tmp))
        return 1;
    if (st_tpg_sql(&pg, "postgres", "CREATE DATABASE fleet", why, sizeof why) != 0) {
        printf("create database: %s\n", why);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_mode),
        cmocka_unit_test(test_migrate),
        cmocka_unit_test(test_exactly_once),
        cmocka_unit_test(test_database_away),
        cmocka_unit_test(test_row_security),
        cmocka_unit_test(test_injection),
        cmocka_unit_test(test_verbatim_random),
        cmocka_unit_test(test_measurements),
        cmocka_unit_test(test_mqtt_acl),
        cmocka_unit_test(test_live_and_will),
        cmocka_unit_test(test_events_survive_broker_restart),
        cmocka_unit_test(test_mqtt_tls),
        cmocka_unit_test(test_service_crash),
        cmocka_unit_test(test_summary_file_equals_db),
        cmocka_unit_test(test_end_to_end),
        cmocka_unit_test(test_produce_live),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    st_tmq_destroy(&tls);
    if (will_pid > 0) {
        kill(will_pid, SIGKILL);
        waitpid(will_pid, NULL, 0);
    }
    st_tmq_destroy(&mq);
    st_tpg_destroy(&pg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
