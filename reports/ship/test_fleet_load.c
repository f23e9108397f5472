/* Fleet load and fault test: 50 simulated stations x 8 slots write reports at production
 * rate (a unit every 3-6 s per slot, written when it starts and when it finishes, with the
 * report writer's fsyncs) into their own report directories; each station runs the real
 * shipping service (st_ship_serve, its own database role and state directory) and its
 * own MQTT publisher (st_live). One private PostgreSQL and one private Mosquitto serve
 * them all. Mid-run the database is stopped abruptly (immediate shutdown: crash recovery
 * on restart) and restarted, then the broker is SIGKILLed and restarted.
 *
 * Asserted: every finished report is in the database exactly once (0 lost, 0 duplicated),
 * per station, and no report file was lost. Printed, not asserted (timing): shipping
 * throughput and the delay from a report's run.finished to its row (p50, p95), the
 * database's catch-up rate after the outage, and the MQTT events a subscriber saw.
 *
 * STATION_LOAD_SECONDS (default 40) sets the production time. Label fleet-load; not run
 * in the sanitizer build. Skips (77) when the servers cannot start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "reports/mqtt/live.h"
#include "reports/ship/config.h"
#include "reports/ship/ship.h"
#include "reports/ship/testsrv.h"
#include "station/core/clock.h"
#include "station/core/testutil.h"

#define NSTATIONS 50
#define NSLOTS 8
#define UNIT_MIN_MS 3000
#define UNIT_SPAN_MS 3000

static st_tpg pg;
static st_tmq mq;
static char tmp[64];
static volatile sig_atomic_t stop_producing, stop_shipping;

typedef struct slot_state {
    unsigned seq;          /* units started in this slot */
    bool busy;
    uint64_t start_us;
    st_deadline next;      /* when the running unit finishes */
    char name[96];
    char run_id[48];
    char identity[32];
} slot_state;

typedef struct station {
    int k;
    char name[16];
    char dir[128], state[128];
    pthread_t producer, shipper;
    unsigned finished;     /* finished reports written */
    unsigned events;       /* unit events published */
    unsigned passes, pass_fail;
    st_live *live;
    volatile int ship_failed; /* its shipping service could not start (ship_err says why) */
    char ship_err[ST_ERR_MSG_MAX];
    uint32_t rng;
    slot_state slots[NSLOTS];
} station;

static station stations[NSTATIONS];

static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void start_unit(station *st, int i)
{
    slot_state *s = &st->slots[i];
    s->seq++;
    s->busy = true;
    s->start_us = st_wall_us();
    snprintf(s->identity, sizeof s->identity, "L%02dS%dU%05u", st->k, i + 1, s->seq);
    snprintf(s->run_id, sizeof s->run_id, "ld%02d-%d-%05u", st->k, i + 1, s->seq);
    snprintf(s->name, sizeof s->name, "L%02dS%dU%05u_slot%d_%05u.yaml", st->k, i + 1, s->seq, i + 1, s->seq);
    s->next = st_deadline_in_ms(UNIT_MIN_MS + rnd(&st->rng) % UNIT_SPAN_MS);
    st_test_report r = { st->name, s->run_id, s->identity, NULL, NULL, i + 1, false, s->start_us };
    st_test_write_report(st->dir, s->name, &r);
    st_live_slot_state(st->live, i + 1, "running", s->identity, s->run_id);
    st_live_slot_step(st->live, i + 1, "flash", 1);
}

static void finish_unit(station *st, int i)
{
    slot_state *s = &st->slots[i];
    bool fail = rnd(&st->rng) % 20 == 0; /* 5 % fail */
    st_test_report r = { st->name, s->run_id, s->identity, fail ? "fail" : "pass",
                         fail ? "flash: dfu: write 0x08004000: device reported errPROG" : NULL,
                         i + 1, true, s->start_us };
    if (st_test_write_report(st->dir, s->name, &r) == 0)
        st->finished++;
    st_live_unit_done(st->live, i + 1, fail ? "fail" : "pass", s->identity, r.cause, s->name,
                      s->run_id);
    st->events++;
    s->busy = false;
}

static void *producer(void *arg)
{
    station *st = arg;
    for (int i = 0; i < NSLOTS; i++)
        start_unit(st, i);
    while (!stop_producing) {
        int first = 0;
        for (int i = 1; i < NSLOTS; i++)
            if (st_deadline_remaining_ms(st->slots[i].next) < st_deadline_remaining_ms(st->slots[first].next))
                first = i;
        /* Production pace: wait for the next unit to finish (at most 100 ms at a time, so
         * the end of the run is noticed). */
        int wait = st_deadline_remaining_ms(st->slots[first].next);
        if (wait > 0) {
            st_sleep_until(st_deadline_in_ms((uint64_t)(wait < 100 ? wait : 100)));
            continue;
        }
        finish_unit(st, first);
        start_unit(st, first);
    }
    /* The shift ends: every unit on the jig finishes. */
    for (int i = 0; i < NSLOTS; i++)
        if (st->slots[i].busy)
            finish_unit(st, i);
    return NULL;
}

static void *shipper(void *arg)
{
    station *st = arg;
    char ci[256];
    st_tpg_conninfo(&pg, "fleet", st->name, NULL, ci, sizeof ci);
    st_ship_config c = { st->dir, st->state, ci, "pw", NULL, NULL, NULL };
    st_ship *s = NULL;
    st_err e;
    if (st_ship_open(&c, &s, &e)) {
        snprintf(st->ship_err, sizeof st->ship_err, "%s", e.msg);
        st->ship_failed = 1;
        return NULL;
    }
    st_ship_serve(s, &stop_shipping, 1000, NULL, NULL);
    st_ship_close(s);
    return NULL;
}

static long value(const char *q)
{
    char out[128];
    if (st_tpg_value(&pg, "fleet", q, out, sizeof out) != 0)
        fail_msg("%s: %s", q, out);
    return atol(out);
}

static double dvalue(const char *q)
{
    char out[128];
    if (st_tpg_value(&pg, "fleet", q, out, sizeof out) != 0)
        fail_msg("%s: %s", q, out);
    return atof(out);
}

static unsigned total_finished(void)
{
    unsigned n = 0;
    for (int k = 0; k < NSTATIONS; k++)
        n += stations[k].finished;
    return n;
}

static double since(uint64_t t0)
{
    return (double)(st_now_us() - t0) / 1e6;
}

/* Sleep until `at` seconds after t0; a fault step that overran (a loaded machine) makes it
 * return at once instead of converting a negative time to an unsigned one. */
static void sleep_until_s(uint64_t t0, double at)
{
    double left = at - since(t0);
    if (left > 0)
        st_sleep_until(st_deadline_in_ms((uint64_t)(left * 1000)));
}

static void test_load_and_faults(void **state)
{
    const char *env = getenv("STATION_LOAD_SECONDS");
    int seconds = env ? atoi(env) : 40;
    if (seconds < 20)
        seconds = 20;
    st_tsub *sub = st_tsub_open(mq.port, "admin", "adminpw", "station/+/events/unit");
    assert_non_null(sub);
    for (int k = 0; k < NSTATIONS; k++) {
        station *st = &stations[k];
        st->k = k;
        st->rng = 0x9e3779b9u ^ (uint32_t)(k * 7919 + 1);
        snprintf(st->name, sizeof st->name, "ld%02d", k);
        snprintf(st->dir, sizeof st->dir, "%s/ld%02d/reports", tmp, k);
        snprintf(st->state, sizeof st->state, "%s/ld%02d/state", tmp, k);
        char d[160];
        snprintf(d, sizeof d, "%s/ld%02d", tmp, k);
        mkdir(d, 0755);
        mkdir(st->dir, 0755);
        st_fleet_cfg c = { 0 };
        st_err e;
        strcpy(c.station, st->name);
        strcpy(c.mqtt_host, "127.0.0.1");
        c.mqtt_port = (unsigned)mq.port;
        strcpy(c.mqtt_user, st->name);
        strcpy(c.mqtt_password, "pw");
        strcpy(c.mqtt_prefix, "station");
        c.mqtt_keepalive = 30;
        c.has_mqtt = true;
        assert_int_equal(st_live_open(&c, NULL, NULL, &st->live, &e), 0);
    }
    uint64_t t0 = st_now_us();
    for (int k = 0; k < NSTATIONS; k++) {
        pthread_create(&stations[k].shipper, NULL, shipper, &stations[k]);
        pthread_create(&stations[k].producer, NULL, producer, &stations[k]);
    }
    /* The faults, at fixed fractions of the run. */
    double t_db_down = seconds * 0.25, t_db_up = seconds * 0.45;
    double t_mq_down = seconds * 0.6, t_mq_up = seconds * 0.75;
    sleep_until_s(t0, t_db_down);
    unsigned made_at_db_down = total_finished();
    uint64_t wall_down = st_wall_us();
    assert_int_equal(st_tpg_stop(&pg, true), 0);
    printf("t=%5.1fs database stopped (immediate), %u reports so far\n", since(t0), made_at_db_down);
    sleep_until_s(t0, t_db_up);
    assert_int_equal(st_tpg_restart(&pg), 0);
    uint64_t wall_up = st_wall_us();
    unsigned made_at_db_up = total_finished();
    printf("t=%5.1fs database restarted, %u reports so far (%u made while it was down)\n",
           since(t0), made_at_db_up, made_at_db_up - made_at_db_down);
    sleep_until_s(t0, t_mq_down);
    st_tmq_kill(&mq);
    printf("t=%5.1fs broker killed (SIGKILL)\n", since(t0));
    sleep_until_s(t0, t_mq_up);
    assert_int_equal(st_tmq_restart(&mq), 0);
    printf("t=%5.1fs broker restarted\n", since(t0));
    sleep_until_s(t0, seconds);
    stop_producing = 1;
    for (int k = 0; k < NSTATIONS; k++)
        pthread_join(stations[k].producer, NULL);
    unsigned made = total_finished();
    double produce_s = since(t0);
    printf("t=%5.1fs production stopped: %u reports made by %d stations x %d slots\n", since(t0),
           made, NSTATIONS, NSLOTS);
    /* Drain: wait until the shippers caught up (every service running), bounded by a
     * deadline no loaded machine reaches (a stuck shipper still fails, after it). */
    st_deadline dl = st_deadline_in_ms(150000);
    long rows = 0;
    while (!st_deadline_passed(dl) && (rows = value("SELECT count(*) FROM fleet.runs")) < (long)made) {
        for (int k = 0; k < NSTATIONS; k++)
            if (stations[k].ship_failed)
                fail_msg("%s: shipping service did not start: %s", stations[k].name,
                         stations[k].ship_err);
        st_sleep_until(st_deadline_in_ms(200));
    }
    printf("t=%5.1fs drained: %ld rows\n", since(t0), rows);
    stop_shipping = 1;
    for (int k = 0; k < NSTATIONS; k++)
        pthread_join(stations[k].shipper, NULL);

    /* 0 lost, 0 duplicated, per station; no file lost. */
    long distinct = value("SELECT count(DISTINCT (station, run_id, slot_id, unit_identity)) FROM fleet.runs");
    long lost = 0, dup = 0;
    for (int k = 0; k < NSTATIONS; k++) {
        char q[256];
        snprintf(q, sizeof q, "SELECT count(*) FROM fleet.runs WHERE station = '%s'", stations[k].name);
        long r = value(q);
        if (r < (long)stations[k].finished)
            lost += (long)stations[k].finished - r;
        if (r > (long)stations[k].finished)
            dup += r - (long)stations[k].finished;
    }
    printf("reports made %u, rows %ld (distinct %ld): lost %ld, duplicated %ld\n", made, rows,
           distinct, lost, dup);

    /* Figures. Delay: from the report's run.finished (written just before the file) to
     * the row's received_at; both from this machine's clock. */
    double p50 = dvalue("SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - finished)) FROM fleet.runs");
    double p95 = dvalue("SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - finished)) FROM fleet.runs");
    double peak = dvalue("SELECT max(c) FROM (SELECT count(*) c FROM fleet.runs GROUP BY date_trunc('second', received_at)) x");
    double span = dvalue("SELECT extract(epoch FROM max(received_at) - min(received_at)) FROM fleet.runs");
    printf("production: %.1f reports/s for %.1f s (%d slots, a unit every %d-%d ms per slot)\n",
           made / produce_s, produce_s, NSTATIONS * NSLOTS, UNIT_MIN_MS, UNIT_MIN_MS + UNIT_SPAN_MS);
    printf("shipping: %.1f rows/s on average over %.1f s; peak %.0f rows/s (catch-up after the outage)\n",
           rows / span, span, peak);
    /* The outage: reports finished while the database was down wait on disk; catch-up
     * is when the last of them (finished before the restart) reached the database. */
    char q[512];
    snprintf(q, sizeof q, "SELECT extract(epoch FROM max(received_at) - to_timestamp(%.6f)) FROM fleet.runs "
                          "WHERE finished <= to_timestamp(%.6f)", wall_up / 1e6, wall_up / 1e6);
    double catchup = dvalue(q);
    printf("outage: %u reports made while the database was down (%.1f s); all in %.2f s after "
           "it came back\n", made_at_db_up - made_at_db_down, (wall_up - wall_down) / 1e6, catchup);
    printf("report-to-row delay: p50 %.3f s, p95 %.3f s (all reports, outage included)\n", p50, p95);
    char where[256];
    snprintf(where, sizeof where, "(finished < to_timestamp(%.6f) OR finished > to_timestamp(%.6f))",
             wall_down / 1e6, wall_up / 1e6 + catchup);
    snprintf(q, sizeof q, "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "
                          "received_at - finished)) FROM fleet.runs WHERE %s", where);
    double q50 = dvalue(q);
    snprintf(q, sizeof q, "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM "
                          "received_at - finished)) FROM fleet.runs WHERE %s", where);
    double q95 = dvalue(q);
    snprintf(q, sizeof q, "SELECT count(*) FROM fleet.runs WHERE %s", where);
    printf("report-to-row delay outside the outage (%ld reports): p50 %.3f s, p95 %.3f s\n",
           value(q), q50, q95);
    unsigned long events = 0;
    for (int k = 0; k < NSTATIONS; k++) {
        st_live_stats ls;
        st_live_get_stats(stations[k].live, &ls);
        events += stations[k].events;
        (void)ls;
    }
    for (int k = 0; k < NSTATIONS; k++)
        st_live_close(stations[k].live, 2000);
    size_t seen = st_tsub_count_prefix(sub, "station/");
    printf("mqtt: %lu unit events published (QoS 1), %zu seen by one subscriber across the broker restart\n",
           events, seen);
    st_tsub_close(sub);
    /* Files: nothing deleted. */
    unsigned files = 0;
    for (int k = 0; k < NSTATIONS; k++) {
        DIR *d = opendir(stations[k].dir);
        struct dirent *e;
        while (d && (e = readdir(d)))
            files += strstr(e->d_name, ".yaml") && !strstr(e->d_name, ".tmp.");
        if (d)
            closedir(d);
    }
    assert_int_equal(files, made);
    assert_int_equal(lost, 0);
    assert_int_equal(dup, 0);
    assert_int_equal(rows, made);
    assert_int_equal(distinct, rows);
}

int main(void)
{
    char why[512];
    static const char *users[NSTATIONS + 2];
    static char ubuf[NSTATIONS][32];
    users[0] = "admin:adminpw";
    for (int k = 0; k < NSTATIONS; k++) {
        snprintf(ubuf[k], sizeof ubuf[k], "ld%02d:pw", k);
        users[k + 1] = ubuf[k];
    }
    users[NSTATIONS + 1] = NULL;
    if (st_tpg_start(&pg, why, sizeof why) != 0) {
        printf("SKIP: %s\n", why);
        st_tpg_destroy(&pg);
        return 77;
    }
    if (st_tmq_start(&mq, users, "pattern readwrite station/%u/#\n\nuser admin\ntopic readwrite #\n",
                     NULL, why, sizeof why) != 0) {
        printf("SKIP: %s\n", why);
        st_tpg_destroy(&pg);
        st_tmq_destroy(&mq);
        return 77;
    }
    st_test_tmpl(tmp, sizeof tmp, "st-fleet-load");
    if (!mkdtemp(tmp))
        return 1;
    st_fleetdb *d = NULL;
    st_err e;
    char ci[256], roles[NSTATIONS * 96];
    size_t off = 0;
    for (int k = 0; k < NSTATIONS; k++)
        off += (size_t)snprintf(roles + off, sizeof roles - off,
                                "CREATE ROLE ld%02d LOGIN PASSWORD 'pw' IN ROLE fleet_station;", k);
    if (st_tpg_sql(&pg, "postgres", "CREATE DATABASE fleet", why, sizeof why) ||
        st_fleetdb_open(st_tpg_conninfo(&pg, "fleet", "postgres", pg.super_pw, ci, sizeof ci), NULL, &d, &e) ||
        st_fleetdb_migrate(d, NULL, &e) || st_tpg_sql(&pg, "fleet", roles, why, sizeof why)) {
        printf("set-up failed: %s %s\n", why, e.msg);
        return 1;
    }
    st_fleetdb_close(d);
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_load_and_faults) };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    st_tmq_destroy(&mq);
    st_tpg_destroy(&pg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
