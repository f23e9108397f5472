/* station: the fleet commands (`ship`, `history`, `report summary`) and the hooks that
 * publish `station run`'s live status on MQTT. Each command parses its own options; main.c
 * calls them with one line each. See reports/FLEET.md and reports/MQTT.md. */
#include "station/cmd_fleet.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobs/driver.h"
#include "reports/mqtt/live.h"
#include "reports/report.h"
#include "reports/ship/config.h"
#include "reports/ship/ship.h"
#include "reports/junit.h"
#include "reports/summary.h"
#include "station/core/clock.h"
#include "station/core/text.h"

/* Exit codes (README "Exit codes"), as jobs/driver.h names them. */
enum { FX_OK = ST_EXIT_PASS, FX_FAIL = ST_EXIT_UNIT_FAIL, FX_USAGE = ST_EXIT_USAGE,
       FX_STATION = ST_EXIT_STATION };

static volatile sig_atomic_t stop_flag;

static void on_stop(int sig)
{
    stop_flag = 1;
    (void)sig;
}

static void log_stderr(void *ctx, st_log_level level, const char *module, const char *msg)
{
    char safe[ST_ERR_MSG_MAX];
    fprintf(stderr, "station: %s%s: %s\n", level <= ST_LOG_WARN ? "warning: " : "", module,
            st_text_printable(msg, safe, sizeof safe));
    (void)ctx;
}

static int config_or_default(const char *path, st_fleet_cfg *cfg, bool need, st_err *e)
{
    if (!path)
        path = st_fleet_cfg_default();
    if (!path) {
        memset(cfg, 0, sizeof *cfg);
        return need ? st_err_set(e, ST_ERR_NOTFOUND, "no fleet configuration: give --config FILE, "
                                                     "set STATION_FLEET_CONFIG or write "
                                                     "/etc/station/fleet.yaml")
                    : 0;
    }
    return st_fleet_cfg_load(path, cfg, e);
}

/* ---- ship ----------------------------------------------------------------------------- */

const st_cli_opt station_ship_opts[] = {
    { "config", "FILE", "fleet configuration (default: $STATION_FLEET_CONFIG, else "
                        "/etc/station/fleet.yaml); must be mode 0600" },
    { "once", NULL, "one pass, then exit: 0 all shipped, 3 some still pending" },
    { "migrate", NULL, "apply the schema migrations the binary carries, then exit" },
    { "conninfo", "CONNINFO", "libpq connection string instead of the configuration's" },
    { "reports", "DIR", "report directory instead of the configuration's" },
    { "state", "DIR", "shipping state directory instead of the configuration's" },
    { NULL, NULL, NULL },
};

const st_cli_opt station_history_opts[] = {
    { "config", "FILE", "fleet configuration (default: $STATION_FLEET_CONFIG, else "
                        "/etc/station/fleet.yaml); must be mode 0600" },
    { "conninfo", "CONNINFO", "libpq connection string instead of the configuration's" },
    { NULL, NULL, NULL },
};

const st_cli_opt station_summary_opts[] = {
    { "db", NULL, "the fleet database instead of a report directory" },
    { "config", "FILE", "fleet configuration for --db (default: $STATION_FLEET_CONFIG, else "
                        "/etc/station/fleet.yaml)" },
    { "conninfo", "CONNINFO", "libpq connection string for --db instead of the configuration's" },
    { "yaml", NULL, "machine-readable YAML instead of lines for people" },
    { "top", "N", "failure groups shown (default 10, 0 = all)" },
    { "since", "TIME", "only runs started at or after TIME (UTC, 2026-12-01 or "
                       "2026-12-01T06:00)" },
    { "junit", "FILE", "also write the runs counted as JUnit XML (a report directory only)" },
    { NULL, NULL, NULL },
};

typedef struct ship_ui {
    bool verbose;
} ship_ui;

static void ship_line(void *ctx, const char *file, const char *outcome, const char *why)
{
    ship_ui *u = ctx;
    char a[PATH_MAX], b[ST_ERR_MSG_MAX];
    if (why)
        fprintf(stderr, "station: ship: %s: %s: %s\n", st_text_printable(file, a, sizeof a), outcome,
                st_text_printable(why, b, sizeof b));
    else if (u->verbose)
        printf("%s: %s\n", st_text_printable(file, a, sizeof a), outcome);
}

typedef struct serve_ui {
    const st_logger *log;
    bool down;
} serve_ui;

/* The service's log: one line when the database goes away and one when it is back. */
static void served(void *ctx, int rc, const st_err *e, const st_ship_stats *st)
{
    serve_ui *u = ctx;
    if (st->inserted || st->duplicate)
        ST_LOGI(u->log, "ship", "%u shipped (%u already there); %u in total",
                st->inserted + st->duplicate, st->duplicate, st->total_shipped);
    if (rc && !u->down)
        fprintf(stderr, "station: ship: %s; %u report%s waiting, retrying\n", e->msg, st->pending,
                st->pending == 1 ? "" : "s");
    else if (!rc && u->down)
        fprintf(stderr, "station: ship: database back; shipping resumed\n");
    u->down = rc != 0;
}

int station_cmd_ship(station_opt_fn get, const void *o, int verbose, char *const args[])
{
    const char *cfg_path = get(o, "config"), *db = get(o, "conninfo");
    const char *reports = get(o, "reports"), *state = get(o, "state");
    bool once = get(o, "once") != NULL, migrate = get(o, "migrate") != NULL;
    ship_ui ui = { verbose > 0 };
    (void)args;
    st_fleet_cfg *cfg = calloc(1, sizeof *cfg);
    st_err e;
    int status = FX_OK;
    if (!cfg)
        return FX_STATION;
    if (config_or_default(cfg_path, cfg, !db, &e)) {
        fprintf(stderr, "station: ship: %s\n", e.msg);
        free(cfg);
        return e.code == ST_ERR_PERM || e.code == ST_ERR_INVAL || e.code == ST_ERR_NOTFOUND ? FX_USAGE
                                                                                            : FX_STATION;
    }
    const char *conninfo = db ? db : cfg->has_db ? cfg->db_conninfo : NULL;
    if (!conninfo) {
        fprintf(stderr, "station: ship: %s has no database section (or give --conninfo)\n", cfg->path);
        free(cfg);
        return FX_USAGE;
    }
    if (migrate) {
        st_fleetdb *d = NULL;
        int n = 0;
        if (st_fleetdb_open(conninfo, cfg->db_password, &d, &e) || st_fleetdb_migrate(d, &n, &e)) {
            fprintf(stderr, "station: ship --migrate: %s\n", e.msg);
            status = FX_STATION;
        } else {
            printf("station: ship: %d migration%s applied\n", n, n == 1 ? "" : "s");
        }
        st_fleetdb_close(d);
        free(cfg);
        return status;
    }
    if (!reports)
        reports = cfg->reports[0] ? cfg->reports : NULL;
    if (!state)
        state = cfg->state[0] ? cfg->state : NULL;
    if (!reports || !state) {
        fprintf(stderr, "station: ship: no %s directory: set \"%s:\" in the configuration or "
                        "give --%s\n", reports ? "state" : "reports", reports ? "state" : "reports",
                reports ? "state" : "reports");
        free(cfg);
        return FX_USAGE;
    }
    st_logger log = { log_stderr, NULL, ui.verbose ? ST_LOG_INFO : ST_LOG_WARN };
    st_ship_config sc = { reports, state, conninfo, cfg->db_password, &log, ship_line, &ui };
    st_ship *s = NULL;
    if (st_ship_open(&sc, &s, &e)) {
        fprintf(stderr, "station: ship: %s\n", e.msg);
        free(cfg);
        return e.code == ST_ERR_BUSY ? FX_USAGE : FX_STATION;
    }
    signal(SIGINT, on_stop);
    signal(SIGTERM, on_stop);
    if (once) {
        st_ship_stats st;
        int rc = st_ship_pass(s, &st, &e);
        printf("station: ship: %u inserted, %u already there, %u conflicting, %u rejected, "
               "%u pending, %u not finished\n", st.inserted, st.duplicate, st.conflict,
               st.rejected, st.pending, st.in_flight);
        if (rc) {
            fprintf(stderr, "station: ship: %s\n", e.msg);
            status = FX_STATION;
        }
    } else {
        serve_ui su = { &log, false };
        if (st_ship_serve(s, &stop_flag, 2000, served, &su) != 0)
            status = FX_STATION;
    }
    st_ship_close(s);
    free(cfg);
    return status;
}

/* ---- history -------------------------------------------------------------------------- */

static void history_row(void *ctx, const st_history_row *r)
{
    char a[64], b[80], f[64], g[ST_ERR_MSG_MAX];
    printf("%-24s %-16s %4s  %-8s %-24s %-16s %s\n", r->started, st_text_printable(r->station, a, sizeof a),
           r->slot, r->verdict, st_text_printable(r->job, b, sizeof b),
           st_text_printable(r->failed_step[0] ? r->failed_step : "-", f, sizeof f),
           st_text_printable(r->cause[0] ? r->cause : r->report_file, g, sizeof g));
    (void)ctx;
}

static int open_db(const char *cfg_path, const char *db, const char *who, st_fleetdb **out)
{
    st_fleet_cfg *cfg = calloc(1, sizeof *cfg);
    st_err e;
    if (!cfg)
        return FX_STATION;
    int status = FX_OK;
    if (config_or_default(cfg_path, cfg, !db, &e)) {
        fprintf(stderr, "station: %s: %s\n", who, e.msg);
        status = FX_USAGE;
    } else if (!db && !cfg->has_db) {
        fprintf(stderr, "station: %s: %s has no database section (or give --conninfo)\n", who, cfg->path);
        status = FX_USAGE;
    } else if (st_fleetdb_open(db ? db : cfg->db_conninfo, cfg->db_password, out, &e)) {
        fprintf(stderr, "station: %s: %s\n", who, e.msg);
        status = FX_STATION;
    }
    free(cfg);
    return status;
}

int station_cmd_history(station_opt_fn get, const void *o, char *const args[])
{
    const char *cfg_path = get(o, "config"), *db = get(o, "conninfo");
    const char *unit = args[0];
    st_fleetdb *d = NULL;
    int status = open_db(cfg_path, db, "history", &d);
    if (status)
        return status;
    printf("%-24s %-16s %4s  %-8s %-24s %-16s %s\n", "STARTED", "STATION", "SLOT", "VERDICT", "JOB",
           "FAILED STEP", "CAUSE");
    st_err e;
    int n = st_fleetdb_history(d, unit, history_row, NULL, &e);
    st_fleetdb_close(d);
    if (n < 0) {
        fprintf(stderr, "station: history: %s\n", e.msg);
        return FX_STATION;
    }
    char u[128];
    printf("%d run%s of unit %s\n", n, n == 1 ? "" : "s", st_text_printable(unit, u, sizeof u));
    return n ? FX_OK : FX_FAIL;
}

/* ---- report summary ------------------------------------------------------------------- */

/* The paths of the reports counted, for --junit. */
typedef struct pathlist {
    char **v;
    size_t n, cap;
} pathlist;

static int pathlist_add(pathlist *l, const char *p)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        char **nv = realloc(l->v, cap * sizeof *nv);
        if (!nv)
            return -1;
        l->v = nv;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(p)))
        return -1;
    l->n++;
    return 0;
}

/* Reading and checking a report is the costly part (libyaml): workers share it, and add
 * what they read to the one summary under a lock (its figures do not depend on order). */
typedef struct sum_work {
    const char *dir;
    char **names;
    size_t n, next;
    st_summary *sum;
    pathlist *paths;
    pthread_mutex_t lock;
    unsigned bad;
    bool failed;
} sum_work;

static void *sum_worker(void *arg)
{
    sum_work *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        size_t i = w->next++;
        bool stop = w->failed;
        pthread_mutex_unlock(&w->lock);
        if (i >= w->n || stop)
            return NULL;
        char path[PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/%s", w->dir, w->names[i]);
        st_rnode *doc = NULL;
        st_err e;
        bool ok = st_report_load(path, &doc, &e) == 0 && st_report_validate(doc, &e) == 0;
        pthread_mutex_lock(&w->lock);
        if (!ok) {
            char m[ST_ERR_MSG_MAX];
            fprintf(stderr, "station: report summary: skipped %s: %s\n", path,
                    st_text_printable(e.msg, m, sizeof m));
            w->bad++;
        } else {
            int rc = st_summary_add_report(w->sum, doc);
            if (rc < 0 || (rc == 1 && w->paths && pathlist_add(w->paths, path) < 0))
                w->failed = true;
        }
        pthread_mutex_unlock(&w->lock);
        st_report_free(doc);
    }
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int summarise_dir(const char *dir, st_summary *sum, pathlist *paths)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "station: report summary: %s: %s\n", dir, strerror(errno));
        return FX_USAGE;
    }
    pathlist names = { 0 };
    struct dirent *ent;
    int status = FX_OK;
    while ((ent = readdir(d)) != NULL) {
        size_t l = strlen(ent->d_name);
        if (ent->d_name[0] == '.' || l < 6 || strcmp(ent->d_name + l - 5, ".yaml") != 0)
            continue;
        if (pathlist_add(&names, ent->d_name) < 0) {
            status = FX_STATION;
            break;
        }
    }
    closedir(d);
    sum_work w = { .dir = dir, .names = names.v, .n = names.n, .sum = sum, .paths = paths };
    pthread_mutex_init(&w.lock, NULL);
    if (status == FX_OK) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        size_t nt = cpus < 1 ? 1 : cpus > 8 ? 8 : (size_t)cpus;
        pthread_t th[8];
        size_t started = 0;
        while (started < nt && pthread_create(&th[started], NULL, sum_worker, &w) == 0)
            started++;
        if (!started)
            sum_worker(&w);
        for (size_t i = 0; i < started; i++)
            pthread_join(th[i], NULL);
        if (w.failed)
            status = FX_STATION;
    }
    pthread_mutex_destroy(&w.lock);
    for (size_t i = 0; i < names.n; i++)
        free(names.v[i]);
    free(names.v);
    /* JUnit lists the runs in file-name order, whatever order the workers took them. */
    if (paths && paths->n)
        qsort(paths->v, paths->n, sizeof *paths->v, cmp_name);
    if (w.bad)
        fprintf(stderr, "station: report summary: %u file%s skipped\n", w.bad,
                w.bad == 1 ? "" : "s");
    return status;
}

int station_cmd_report_summary(station_opt_fn get, const void *o, char *const args[])
{
    const char *cfg_path = get(o, "config"), *conninfo = get(o, "conninfo");
    bool use_db = get(o, "db") != NULL || conninfo, yaml = get(o, "yaml") != NULL;
    long top = 10;
    if (get(o, "top")) {
        char *end;
        top = strtol(get(o, "top"), &end, 10);
        if (*end || top < 0 || end == get(o, "top")) {
            fprintf(stderr, "station: report summary: --top: \"%s\" is not a count\n", get(o, "top"));
            return FX_USAGE;
        }
    }
    if (use_db == (args[0] != NULL)) {
        fprintf(stderr, "station: report summary: give a report directory or --db, not %s\n",
                use_db ? "both" : "neither");
        return FX_USAGE;
    }
    const char *junit = get(o, "junit");
    if (junit && use_db) {
        fprintf(stderr, "station: report summary: --junit needs a report directory (the "
                        "database keeps no steps)\n");
        return FX_USAGE;
    }
    st_summary *sum = st_summary_new();
    if (!sum)
        return FX_STATION;
    if (get(o, "since") && st_summary_set_since(sum, get(o, "since"))) {
        fprintf(stderr, "station: report summary: --since: \"%s\" is not a UTC time like "
                        "2026-12-01 or 2026-12-01T06:00:00\n", get(o, "since"));
        st_summary_free(sum);
        return FX_USAGE;
    }
    pathlist paths = { 0 };
    int status;
    if (use_db) {
        st_fleetdb *d = NULL;
        st_err e;
        status = open_db(cfg_path, conninfo, "report summary", &d);
        if (!status && st_fleetdb_summary(d, sum, &e) < 0) {
            fprintf(stderr, "station: report summary: %s\n", e.msg);
            status = FX_STATION;
        }
        st_fleetdb_close(d);
    } else {
        status = summarise_dir(args[0], sum, junit ? &paths : NULL);
    }
    if (!status && st_summary_render(sum, stdout, yaml, (size_t)top))
        status = FX_STATION;
    if (!status && junit) {
        /* JUnit XML shares reports/junit.c with `station run --junit`. */
        st_err e;
        if (st_junit_write(junit, "station report summary", (const char *const *)paths.v,
                           paths.n, &e) < 0) {
            fprintf(stderr, "station: report summary: --junit %s: %s\n", junit, e.msg);
            status = FX_STATION;
        }
    }
    for (size_t i = 0; i < paths.n; i++)
        free(paths.v[i]);
    free(paths.v);
    st_summary_free(sum);
    return status;
}

/* ---- live status during `station run` and `station produce` ---------------------------- */

typedef struct fleet_slot {
    station_fleet *f;
    int slot;
    st_progress orig; /* the operator display's progress hook, still called first */
    void (*orig_step)(void *ctx, const char *step, int attempt); /* ... and its step hook */
    void *orig_step_ctx;
} fleet_slot;

struct station_fleet {
    st_fleet_cfg cfg;
    st_live *live;
    char run_id[64];
    fleet_slot *slots;
    size_t nslots;
};

int station_fleet_begin(const char *run_id, size_t nslots, station_fleet **out)
{
    *out = NULL;
    const char *path = st_fleet_cfg_default();
    if (!path)
        return 0;
    station_fleet *f = calloc(1, sizeof *f);
    st_err e;
    if (!f || !(f->slots = calloc(nslots ? nslots : 1, sizeof *f->slots))) {
        free(f);
        return FX_STATION;
    }
    if (st_fleet_cfg_load(path, &f->cfg, &e)) {
        fprintf(stderr, "station: fleet: %s\n", e.msg);
        free(f->slots);
        free(f);
        return FX_USAGE;
    }
    st_strlcpy(f->run_id, run_id, sizeof f->run_id);
    f->nslots = nslots;
    if (f->cfg.has_mqtt) {
        char suffix[32];
        snprintf(suffix, sizeof suffix, "run-%d", (int)getpid());
        if (st_live_open(&f->cfg, suffix, NULL, &f->live, &e)) {
            fprintf(stderr, "station: mqtt: %s\n", e.msg);
            free(f->slots);
            free(f);
            return FX_USAGE;
        }
        /* Give a reachable broker a moment so the first states are not only queued; an
         * unreachable one costs this once and never blocks a slot. */
        st_live_wait_connected(f->live, 1000);
    }
    *out = f;
    return 0;
}

const char *station_fleet_name(const station_fleet *f, const char *fallback)
{
    return f ? f->cfg.station : fallback;
}

static void slot_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    fleet_slot *s = ctx;
    st_progress_update(&s->orig, phase, done, total);
    st_live_slot_progress(s->f->live, s->slot, phase, done, total);
}

static void slot_step(void *ctx, const char *step, int attempt)
{
    fleet_slot *s = ctx;
    if (s->orig_step)
        s->orig_step(s->orig_step_ctx, step, attempt);
    st_live_slot_step(s->f->live, s->slot, step, attempt);
}

void station_fleet_attach(station_fleet *f, size_t i, int slot_id, st_progress *p,
                          st_run_env *env, const char *state)
{
    if (!f || i >= f->nslots)
        return;
    fleet_slot *s = &f->slots[i];
    s->f = f;
    s->slot = slot_id;
    s->orig = *p;
    p->update = slot_progress;
    p->ctx = s;
    env->progress = p;
    s->orig_step = env->on_step;
    s->orig_step_ctx = env->on_step_ctx;
    env->on_step = slot_step;
    env->on_step_ctx = s;
    if (state)
        st_live_slot_state(f->live, slot_id, state, NULL, f->run_id);
}

void station_fleet_state(station_fleet *f, size_t i, const char *state, const char *unit)
{
    if (f && i < f->nslots && f->slots[i].f)
        st_live_slot_state(f->live, f->slots[i].slot, state, unit && *unit ? unit : NULL,
                           f->run_id);
}

void station_fleet_done(station_fleet *f, size_t i, int rc, const st_run_result *res)
{
    if (!f || i >= f->nslots || !f->slots[i].f)
        return;
    int slot = f->slots[i].slot;
    const char *verdict = rc ? "error" : st_verdict_name(res->verdict);
    const char *unit = NULL, *name = NULL;
    st_rnode *doc = NULL;
    if (!rc && st_report_load(res->report_path, &doc, NULL) == 0)
        unit = st_rget_str(doc, "unit.identity");
    if (!rc) {
        name = strrchr(res->report_path, '/');
        name = name ? name + 1 : res->report_path;
    }
    st_live_unit_done(f->live, slot, verdict, unit, res->cause[0] ? res->cause : NULL, name,
                      f->run_id);
    st_live_slot_state(f->live, slot, "done", unit, f->run_id);
    st_report_free(doc);
}

void station_fleet_end(station_fleet *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->nslots; i++)
        if (f->slots[i].f)
            st_live_slot_state(f->live, f->slots[i].slot, "idle", NULL, NULL);
    st_live_close(f->live, 5000);
    free(f->slots);
    free(f);
}
