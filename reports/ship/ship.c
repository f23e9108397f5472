/* Shipping reports into PostgreSQL exactly once, migrations and queries (see ship.h). */
#include "reports/ship/ship.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "reports/report.h"
#include "reports/ship/json.h"
#include "reports/ship/migrations.h"
#include "reports/strmap.h"
#include "station/core/clock.h"
#include "station/core/digest.h"
#include "station/core/text.h"

#define MOD "ship"
#define REPORT_MAX (16u * 1024u * 1024u) /* as the report reader's limit */
#define SYNC_EVERY 64                     /* shipped-log lines between fsyncs */
#define MIGRATE_LOCK 0x5354464cL          /* advisory lock key for migrations ("STFL") */

/* ---- connections ---------------------------------------------------------------------- */

struct st_fleetdb {
    PGconn *c;
};

/* libpq messages end with a newline and may span lines: keep the first line. */
static const char *one_line(const char *msg, char *buf, size_t cap)
{
    st_strlcpy(buf, msg ? msg : "", cap);
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    return buf;
}

static void quiet_notice(void *ctx, const char *msg)
{
    (void)ctx;
    (void)msg;
}

int st_fleetdb_open(const char *conninfo, const char *password, st_fleetdb **out, st_err *err)
{
    /* Defaults first: the connection string, then the password, override them (libpq
     * takes the last value of a repeated keyword). tcp_user_timeout and keepalives make a
     * dead server or cable an error within seconds instead of a hang. */
    const char *kw[] = { "connect_timeout", "tcp_user_timeout", "keepalives_idle",
                         "keepalives_interval", "keepalives_count", "application_name",
                         "dbname", "password", NULL };
    const char *val[] = { "5", "10000", "5", "2", "3", "station-ship", conninfo,
                          password && *password ? password : NULL, NULL };
    st_fleetdb *db = calloc(1, sizeof *db);
    if (!db)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    db->c = PQconnectdbParams(kw, val, 1);
    if (!db->c || PQstatus(db->c) != CONNECTION_OK) {
        char b[512];
        const char *m = one_line(db->c ? PQerrorMessage(db->c) : "out of memory", b, sizeof b);
        int code = strstr(m, "authentication") || strstr(m, "role") ? ST_ERR_PERM : ST_ERR_IO;
        st_fleetdb_close(db);
        return st_err_set(err, code, "database: %s", m);
    }
    /* Server notices ("schema already exists, skipping") are not errors, and library
     * code never prints: drop them. */
    PQsetNoticeProcessor(db->c, quiet_notice, NULL);
    *out = db;
    return 0;
}

void st_fleetdb_close(st_fleetdb *db)
{
    if (!db)
        return;
    PQfinish(db->c);
    free(db);
}

/* Map a failed result to an ST_ERR_* code; the connection's own state wins. */
static int result_code(PGconn *c, const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (PQstatus(c) != CONNECTION_OK || !state)
        return ST_ERR_IO;
    if (strncmp(state, "28", 2) == 0 || strcmp(state, "42501") == 0)
        return ST_ERR_PERM;
    if (strcmp(state, "42P01") == 0 || strcmp(state, "42883") == 0 || strcmp(state, "3F000") == 0)
        return ST_ERR_NOTFOUND;
    /* Data (22), integrity (23), limits (54), raised (P0): the report's content. */
    if (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0 ||
        strncmp(state, "54", 2) == 0 || strncmp(state, "P0", 2) == 0)
        return ST_ERR_INVAL;
    return ST_ERR_IO; /* shutdown (57), resources (53), serialization (40), ...: retry */
}

static int fail(PGconn *c, PGresult *r, st_err *err, const char *what)
{
    char b[512];
    int code = result_code(c, r);
    const char *m = r && PQresultErrorMessage(r)[0] ? PQresultErrorMessage(r) : PQerrorMessage(c);
    st_err_set(err, code, "database: %s: %s", what, one_line(m, b, sizeof b));
    PQclear(r);
    return code;
}

static int exec_ok(PGconn *c, const char *sql, st_err *err, const char *what)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
        return fail(c, r, err, what);
    PQclear(r);
    return 0;
}

int st_fleetdb_migrate(st_fleetdb *db, int *applied, st_err *err)
{
    PGconn *c = db->c;
    int n = 0, rc = 0;
    if (applied)
        *applied = 0;
    for (unsigned i = 0; i < st_nmigrations && !rc; i++) {
        const st_migration *m = &st_migrations[i];
        uint8_t md[ST_SHA256_LEN];
        char hex[2 * ST_SHA256_LEN + 1], ver[16];
        st_sha256(m->sql, strlen(m->sql), md);
        st_hex(md, sizeof md, false, hex);
        snprintf(ver, sizeof ver, "%d", m->version);
        if ((rc = exec_ok(c, "BEGIN", err, "begin")) != 0)
            break;
        rc = exec_ok(c, "SELECT pg_advisory_xact_lock(1398031948);"
                        "CREATE SCHEMA IF NOT EXISTS fleet;"
                        "CREATE TABLE IF NOT EXISTS fleet.schema_migrations ("
                        " version integer PRIMARY KEY, name text NOT NULL,"
                        " sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
                     err, "schema_migrations");
        PGresult *r = NULL;
        if (!rc) {
            const char *p[] = { ver };
            r = PQexecParams(c, "SELECT sha256 FROM fleet.schema_migrations WHERE version = $1",
                             1, NULL, p, NULL, NULL, 0);
            if (PQresultStatus(r) != PGRES_TUPLES_OK) {
                rc = fail(c, r, err, "schema_migrations");
                r = NULL;
            }
        }
        if (!rc && PQntuples(r) == 1) {
            if (strcmp(PQgetvalue(r, 0, 0), hex) != 0)
                rc = st_err_set(err, ST_ERR_MISMATCH,
                                "migration %s was applied with other text (sha256 %.12s..., now "
                                "%.12s...): migrations are never edited, add a new one",
                                m->name, PQgetvalue(r, 0, 0), hex);
            PQclear(r);
            exec_ok(c, "ROLLBACK", NULL, "rollback");
            continue;
        }
        PQclear(r);
        if (!rc && (rc = exec_ok(c, m->sql, err, m->name)) == 0) {
            const char *p[] = { ver, m->name, hex };
            r = PQexecParams(c, "INSERT INTO fleet.schema_migrations (version, name, sha256) "
                                "VALUES ($1, $2, $3)", 3, NULL, p, NULL, NULL, 0);
            if (PQresultStatus(r) != PGRES_COMMAND_OK)
                rc = fail(c, r, err, "schema_migrations");
            else
                PQclear(r);
        }
        if (!rc)
            rc = exec_ok(c, "COMMIT", err, m->name);
        if (rc)
            exec_ok(c, "ROLLBACK", NULL, "rollback");
        else
            n++;
    }
    if (applied)
        *applied = n;
    return rc;
}

/* ---- shipping ----------------------------------------------------------------------- */

typedef struct seen {
    long long mtime_ns;
    long long size;
} seen;

struct st_ship {
    char dir[PATH_MAX];
    char state[PATH_MAX];
    char *conninfo, *password;
    const st_logger *log;
    st_ship_cb cb;
    void *cb_ctx;
    st_strmap *shipped;  /* names in the shipped log */
    st_strmap *waiting;  /* name -> seen: in flight or rejected, skipped while unchanged */
    int log_fd, lock_fd, ino_fd;
    unsigned unsynced;
    bool disk_failed; /* the shipped log could not be written: our disk, not the database */
    st_fleetdb *db;
};

static int mkdir_p(const char *path, mode_t mode, st_err *err)
{
    char tmp[PATH_MAX];
    st_strlcpy(tmp, path, sizeof tmp);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return st_err_set(err, st_err_from_errno(errno), "mkdir %s: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST)
        return st_err_set(err, st_err_from_errno(errno), "mkdir %s: %s", tmp, strerror(errno));
    return 0;
}

static int read_file(const char *path, char **out, size_t *len, st_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return st_err_set(err, st_err_from_errno(errno), "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > REPORT_MAX) {
        close(fd);
        return st_err_set(err, ST_ERR_INVAL, "%s: not a regular file of at most %u bytes",
                          path, REPORT_MAX);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!buf || got != (size_t)st.st_size) {
        free(buf);
        return st_err_set(err, buf ? ST_ERR_IO : ST_ERR_NOMEM, "%s: short read", path);
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

/* Load "<state>/shipped": one "name\tsha256\toutcome" line per shipped report. A torn
 * last line (a crash mid-append) is ignored: that report ships again as a duplicate. */
static int load_log(st_ship *s, st_err *err)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/shipped", s->state);
    s->log_fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (s->log_fd < 0)
        return st_err_set(err, st_err_from_errno(errno), "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(s->log_fd, &st) != 0)
        return st_err_set(err, ST_ERR_IO, "%s: %s", path, strerror(errno));
    if (st.st_size == 0)
        return 0;
    char *buf = NULL;
    size_t len = 0;
    int rc = read_file(path, &buf, &len, err);
    if (rc)
        return rc;
    char *line = buf;
    for (char *nl; (nl = memchr(line, '\n', len - (size_t)(line - buf))) != NULL; line = nl + 1) {
        *nl = '\0';
        char *tab = strchr(line, '\t');
        if (tab)
            *tab = '\0';
        if (*line && !st_strmap_put(s->shipped, line, NULL)) {
            free(buf);
            return st_err_set(err, ST_ERR_NOMEM, "out of memory");
        }
    }
    bool torn = len && buf[len - 1] != '\0'; /* the last line had no newline */
    free(buf);
    if (torn && write(s->log_fd, "\n", 1) != 1)
        return st_err_set(err, ST_ERR_IO, "%s: %s", path, strerror(errno));
    return 0;
}

int st_ship_open(const st_ship_config *cfg, st_ship **out, st_err *err)
{
    st_ship *s = calloc(1, sizeof *s);
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    s->log_fd = s->lock_fd = s->ino_fd = -1;
    st_strlcpy(s->dir, cfg->report_dir, sizeof s->dir);
    st_strlcpy(s->state, cfg->state_dir, sizeof s->state);
    s->conninfo = strdup(cfg->conninfo ? cfg->conninfo : "");
    s->password = strdup(cfg->password ? cfg->password : "");
    s->log = cfg->log;
    s->cb = cfg->on_report;
    s->cb_ctx = cfg->cb_ctx;
    s->shipped = st_strmap_new();
    s->waiting = st_strmap_new();
    int rc = 0;
    if (!s->conninfo || !s->password || !s->shipped || !s->waiting)
        rc = st_err_set(err, ST_ERR_NOMEM, "out of memory");
    if (!rc)
        rc = mkdir_p(s->dir, 0755, err);
    if (!rc)
        rc = mkdir_p(s->state, 0700, err);
    if (!rc) {
        /* One shipper per state directory: two would both work, but their logs would
         * interleave and each would re-ship what the other did. */
        char lock[PATH_MAX + 16];
        snprintf(lock, sizeof lock, "%s/lock", s->state);
        s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (s->lock_fd < 0)
            rc = st_err_set(err, st_err_from_errno(errno), "%s: %s", lock, strerror(errno));
        else if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0)
            rc = st_err_set(err, ST_ERR_BUSY, "%s: another station ship uses this state directory",
                            s->state);
    }
    if (!rc)
        rc = load_log(s, err);
    if (!rc) {
        s->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (s->ino_fd < 0 ||
            inotify_add_watch(s->ino_fd, s->dir, IN_MOVED_TO | IN_CLOSE_WRITE) < 0)
            rc = st_err_set(err, st_err_from_errno(errno), "inotify %s: %s", s->dir, strerror(errno));
    }
    if (rc) {
        st_ship_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

static int sync_log(st_ship *s)
{
    if (!s->unsynced)
        return 0;
    s->unsynced = 0;
    return fdatasync(s->log_fd) == 0 ? 0 : ST_ERR_IO;
}

void st_ship_close(st_ship *s)
{
    if (!s)
        return;
    if (s->log_fd >= 0) {
        sync_log(s);
        close(s->log_fd);
    }
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    if (s->ino_fd >= 0)
        close(s->ino_fd);
    if (s->waiting)
        for (size_t i = 0; i < st_strmap_cap(s->waiting); i++) {
            void *v;
            if (st_strmap_at(s->waiting, i, &v))
                free(v);
        }
    st_strmap_free(s->waiting);
    st_strmap_free(s->shipped);
    st_fleetdb_close(s->db);
    free(s->conninfo);
    free(s->password);
    free(s);
}

int st_ship_wait(st_ship *s, int timeout_ms)
{
    struct pollfd p = { .fd = s->ino_fd, .events = POLLIN };
    int n = poll(&p, 1, timeout_ms < 0 ? 0 : timeout_ms);
    if (n <= 0)
        return 0;
    char buf[4096];
    while (read(s->ino_fd, buf, sizeof buf) > 0)
        ;
    return 1;
}

static void note(st_ship *s, const char *name, const char *outcome, const char *why)
{
    if (s->cb)
        s->cb(s->cb_ctx, name, outcome, why);
}

static int remember(st_ship *s, const char *name, const struct stat *st)
{
    void **v = st_strmap_put(s->waiting, name, NULL);
    if (!v)
        return ST_ERR_NOMEM;
    if (!*v && !(*v = calloc(1, sizeof(seen))))
        return ST_ERR_NOMEM;
    seen *w = *v;
    w->mtime_ns = (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
    w->size = (long long)st->st_size;
    return 0;
}

static bool unchanged(st_ship *s, const char *name, const struct stat *st)
{
    seen *w = st_strmap_get(s->waiting, name, NULL);
    return w && w->size == (long long)st->st_size &&
           w->mtime_ns == (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
}

static void reject(st_ship *s, const char *name, const struct stat *st, const char *why,
                   st_ship_stats *stats)
{
    stats->rejected++;
    remember(s, name, st);
    ST_LOGW(s->log, MOD, "%s: not shipped: %s", name, why);
    note(s, name, "rejected", why);
    char line[PATH_MAX + ST_ERR_MSG_MAX + 8], path[PATH_MAX + 16];
    char safe[ST_ERR_MSG_MAX];
    snprintf(path, sizeof path, "%s/rejected", s->state);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    int n = snprintf(line, sizeof line, "%s\t%s\n", name, st_text_printable(why, safe, sizeof safe));
    if (n > 0 && write(fd, line, (size_t)n) < 0)
        ST_LOGW(s->log, MOD, "%s: %s", path, strerror(errno));
    close(fd);
}

/* Store one finished report. 0 (stored or known), ST_ERR_INVAL (content refused), or a
 * code that means the database cannot take anything now. */
static int ship_one(st_ship *s, const char *name, const char *json, const char *sha,
                    const char **outcome, st_err *err)
{
    const char *p[] = { json, name, sha };
    PGresult *r = PQexecParams(s->db->c, "SELECT fleet.ship_report($1::jsonb, $2, $3)", 3, NULL,
                               p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        return fail(s->db->c, r, err, name);
    const char *v = PQgetvalue(r, 0, 0);
    *outcome = strcmp(v, "inserted") == 0 ? "inserted" : strcmp(v, "duplicate") == 0 ? "duplicate"
                                                                                     : "conflict";
    PQclear(r);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of the *.yaml files not shipped yet, sorted (the order does not matter for
 * correctness; sorting makes passes reproducible). Temporary files ("x.yaml.tmp.PID")
 * and hidden files are not reports. */
static int list_dir(st_ship *s, char ***names, size_t *n, st_err *err)
{
    DIR *d = opendir(s->dir);
    if (!d)
        return st_err_set(err, st_err_from_errno(errno), "%s: %s", s->dir, strerror(errno));
    size_t cap = 0;
    *names = NULL;
    *n = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' || l < 6 || strcmp(e->d_name + l - 5, ".yaml") != 0 ||
            strchr(e->d_name, '\n') || strchr(e->d_name, '\t'))
            continue;
        bool done;
        st_strmap_get(s->shipped, e->d_name, &done);
        if (done)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            char **m = realloc(*names, cap * sizeof *m);
            if (!m) {
                rc = ST_ERR_NOMEM;
                break;
            }
            *names = m;
        }
        if (!((*names)[*n] = strdup(e->d_name))) {
            rc = ST_ERR_NOMEM;
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (rc)
        return st_err_set(err, rc, "out of memory");
    if (*n)
        qsort(*names, *n, sizeof **names, cmp_str);
    return 0;
}

int st_ship_pass(st_ship *s, st_ship_stats *stats, st_err *err)
{
    st_ship_stats local;
    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    char **names = NULL;
    size_t n = 0;
    int rc = list_dir(s, &names, &n, err);
    if (rc)
        return rc;
    int down = 0; /* the database's failure code once it failed in this pass */
    st_err derr;
    st_err_clear(&derr);
    for (size_t i = 0; i < n && rc != ST_ERR_NOMEM; i++) {
        const char *name = names[i];
        char path[PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/%s", s->dir, name);
        struct stat st;
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (unchanged(s, name, &st)) {
            stats->in_flight++; /* or rejected before: either way, not again until it changes */
            continue;
        }
        if (down) {
            /* The database failed in this pass: the rest wait, unread (a long outage must
             * not make every pass re-parse the whole backlog). */
            stats->pending++;
            continue;
        }
        char *buf = NULL, *json = NULL;
        size_t len = 0;
        st_rnode *doc = NULL;
        st_err e;
        if (read_file(path, &buf, &len, &e) || st_report_parse(buf, len, name, &doc, &e)) {
            reject(s, name, &st, e.msg, stats);
            goto next;
        }
        if (!st_rget(doc, "run.finished")) {
            stats->in_flight++;
            if (remember(s, name, &st))
                rc = ST_ERR_NOMEM;
            goto next;
        }
        if (st_report_validate(doc, &e)) {
            char why[ST_ERR_MSG_MAX + 64];
            snprintf(why, sizeof why, "not a valid report: %s", e.msg);
            reject(s, name, &st, why, stats);
            goto next;
        }
        if (!s->db && (down = st_fleetdb_open(s->conninfo, s->password, &s->db, &derr)) != 0) {
            stats->pending++;
            goto next;
        }
        uint8_t md[ST_SHA256_LEN];
        char sha[2 * ST_SHA256_LEN + 1];
        st_sha256(buf, len, md);
        st_hex(md, sizeof md, false, sha);
        if (st_report_json(doc, &json, NULL, &e)) {
            rc = ST_ERR_NOMEM;
            goto next;
        }
        const char *outcome = NULL;
        int r = ship_one(s, name, json, sha, &outcome, &e);
        if (r == ST_ERR_INVAL) {
            reject(s, name, &st, e.msg, stats);
        } else if (r) {
            down = r;
            derr = e;
            stats->pending++;
            if (PQstatus(s->db->c) != CONNECTION_OK) {
                st_fleetdb_close(s->db);
                s->db = NULL;
            }
        } else {
            char line[PATH_MAX + 96];
            int ln = snprintf(line, sizeof line, "%s\t%s\t%s\n", name, sha, outcome);
            if (write(s->log_fd, line, (size_t)ln) != ln) {
                rc = st_err_set(err, ST_ERR_IO, "%s/shipped: %s", s->state, strerror(errno));
                s->disk_failed = true;
                down = ST_ERR_IO;
            } else if (!st_strmap_put(s->shipped, name, NULL)) {
                rc = ST_ERR_NOMEM;
            }
            if (++s->unsynced >= SYNC_EVERY && sync_log(s))
                ST_LOGW(s->log, MOD, "%s/shipped: fsync: %s", s->state, strerror(errno));
            if (strcmp(outcome, "inserted") == 0)
                stats->inserted++;
            else if (strcmp(outcome, "duplicate") == 0)
                stats->duplicate++;
            else {
                stats->conflict++;
                ST_LOGW(s->log, MOD, "%s: the database holds this run and unit with other content; "
                                     "the stored row is kept", name);
            }
            note(s, name, outcome, NULL);
        }
    next:
        free(json);
        st_report_free(doc);
        free(buf);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (sync_log(s) && !rc && (s->disk_failed = true))
        rc = st_err_set(err, ST_ERR_IO, "%s/shipped: fsync: %s", s->state, strerror(errno));
    stats->total_shipped = (unsigned)st_strmap_len(s->shipped);
    if (rc == ST_ERR_NOMEM)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    if (rc)
        return rc;
    if (down) {
        if (err)
            *err = derr;
        if (down == ST_ERR_NOTFOUND)
            st_err_prefix(err, "the fleet schema is missing (run `station ship --migrate`)");
        return down;
    }
    return 0;
}

int st_ship_serve(st_ship *s, volatile sig_atomic_t *stop, unsigned rescan_ms,
                  st_ship_pass_cb cb, void *ctx)
{
    unsigned backoff_ms = 0;
    while (!*stop) {
        st_ship_stats st;
        st_err e;
        st_err_clear(&e);
        int rc = st_ship_pass(s, &st, &e);
        if (cb)
            cb(ctx, rc, &e, &st);
        if (rc == ST_ERR_NOMEM || s->disk_failed)
            return rc; /* our own disk, not the database: nothing to wait for */
        if (rc) {
            backoff_ms = backoff_ms ? (backoff_ms >= 2500 ? 5000 : backoff_ms * 2) : 500;
            st_deadline dl = st_deadline_in_ms(backoff_ms);
            while (!*stop && !st_deadline_passed(dl))
                st_ship_wait(s, st_deadline_remaining_ms(dl));
        } else {
            backoff_ms = 0;
            st_ship_wait(s, (int)rescan_ms);
        }
    }
    return 0;
}

/* ---- queries -------------------------------------------------------------------------- */

int st_fleetdb_history(st_fleetdb *db, const char *unit,
                       void (*row)(void *ctx, const st_history_row *r), void *ctx, st_err *err)
{
    static const char sql[] =
        "SELECT coalesce(report #>> '{run,started}', ''), station, run_id, slot_id::text,"
        " unit_identity, coalesce(dfu_serial, ''), coalesce(can_uuid, ''),"
        " coalesce(chip_uid, ''), coalesce(job_name, ''), verdict, coalesce(cause, ''),"
        " coalesce(failed_step, ''), report_file"
        " FROM fleet.runs WHERE unit_identity = $1 OR lower(dfu_serial) = lower($1)"
        " OR lower(can_uuid) = lower($1) OR lower(chip_uid) = lower($1)"
        " OR unit_identity IN (SELECT identity FROM fleet.units WHERE lower(dfu_serial) = lower($1)"
        "   OR lower(can_uuid) = lower($1) OR lower(chip_uid) = lower($1))"
        " ORDER BY started, station, id";
    const char *p[] = { unit };
    PGresult *r = PQexecParams(db->c, sql, 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return fail(db->c, r, err, "history");
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        st_history_row h = {
            PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
            PQgetvalue(r, i, 4), PQgetvalue(r, i, 5), PQgetvalue(r, i, 6), PQgetvalue(r, i, 7),
            PQgetvalue(r, i, 8), PQgetvalue(r, i, 9), PQgetvalue(r, i, 10), PQgetvalue(r, i, 11),
            PQgetvalue(r, i, 12),
        };
        row(ctx, &h);
    }
    PQclear(r);
    return n;
}

int st_fleetdb_summary(st_fleetdb *db, st_summary *sum, st_err *err)
{
    PGresult *r = PQexec(db->c, "SELECT unit_identity, report #>> '{run,started}', verdict,"
                                " failed_step, cause FROM fleet.runs");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return fail(db->c, r, err, "summary");
    int n = PQntuples(r), rc = 0;
    for (int i = 0; i < n && !rc; i++) {
#define V(c) (PQgetisnull(r, i, c) ? NULL : PQgetvalue(r, i, c))
        rc = st_summary_add(sum, V(0), V(1), V(2), V(3), V(4));
#undef V
    }
    PQclear(r);
    return rc ? st_err_set(err, rc, "out of memory") : n;
}
