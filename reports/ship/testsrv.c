/* Private PostgreSQL and Mosquitto servers for the fleet tests (see testsrv.h). */
#include "reports/ship/testsrv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <mosquitto.h>
#include <pthread.h>
#include <time.h>

#include "reports/report.h"

#include "station/core/clock.h"
#include "station/core/text.h"

static void reason(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reason(char *why, size_t cap, const char *fmt, ...)
{
    if (!why || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* The system user a server runs as when we are root; NULL when we are not root. */
static const struct passwd *server_user(const char *name)
{
    return geteuid() == 0 ? getpwnam(name) : NULL;
}

/* fork + (drop to user) + exec argv with stdout/stderr to logfile; returns the pid. */
static pid_t spawn(const struct passwd *pw, char *const argv[], const char *logfile)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int fd = open(logfile ? logfile : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
        dup2(devnull, 0);
        close(devnull);
    }
    setsid(); /* ctest's process group signals must not reach the servers twice */
    if (pw && (setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0))
        _exit(126);
    execv(argv[0], argv);
    _exit(127);
}

static int run_wait(const struct passwd *pw, char *const argv[], const char *logfile)
{
    pid_t pid = spawn(pw, argv, logfile);
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int make_dir(char *dir, const struct passwd *pw)
{
    /* Not $TMPDIR (station/core/testutil.h): the servers run as another user, who must
     * reach this directory, and their sockets' paths must stay short. tmp-ok */
    strcpy(dir, "/tmp/st-fleet-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    if (pw && chown(dir, pw->pw_uid, pw->pw_gid) != 0)
        return -1;
    return 0;
}

static void remove_dir(const char *dir)
{
    if (!dir[0])
        return;
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/rm", "rm", "-rf", dir, (char *)NULL);
        _exit(127);
    }
    int st;
    if (pid > 0)
        waitpid(pid, &st, 0);
}

/* ---- PostgreSQL ------------------------------------------------------------------------ */

static int pg_ctl(st_tpg *pg, const char *action, const char *mode)
{
    char data[128], log[128], opts[256], path[PATH_MAX + 16];
    snprintf(data, sizeof data, "%s/data", pg->dir);
    snprintf(log, sizeof log, "%s/server.log", pg->dir);
    /* Sockets in our own directory; loopback TCP only; enough connections for the load
     * test's 50 stations plus readers. */
    snprintf(opts, sizeof opts, "-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=120",
             pg->port, pg->dir);
    snprintf(path, sizeof path, "%s/pg_ctl", pg->bindir);
    char *argv[16];
    int n = 0;
    argv[n++] = path;
    argv[n++] = (char *)action;
    argv[n++] = "-D";
    argv[n++] = data;
    argv[n++] = "-w";
    argv[n++] = "-t";
    argv[n++] = "60";
    if (strcmp(action, "start") == 0) {
        argv[n++] = "-o";
        argv[n++] = opts;
        argv[n++] = "-l";
        argv[n++] = log;
    } else {
        argv[n++] = "-m";
        argv[n++] = (char *)mode;
    }
    argv[n] = NULL;
    return run_wait(server_user("postgres"), argv, NULL) == 0 ? 0 : -1;
}

int st_tpg_start(st_tpg *pg, char *why, size_t cap)
{
    memset(pg, 0, sizeof *pg);
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) != 0 || g.gl_pathc == 0) {
        reason(why, cap, "PostgreSQL server not installed (/usr/lib/postgresql/*/bin/initdb; "
                         "scripts/setup.sh installs it)");
        return -1;
    }
    st_strlcpy(pg->bindir, g.gl_pathv[g.gl_pathc - 1], sizeof pg->bindir);
    globfree(&g);
    *strrchr(pg->bindir, '/') = '\0';
    const struct passwd *pw = server_user("postgres");
    if (geteuid() == 0 && !pw) {
        reason(why, cap, "running as root and there is no postgres user to run the server as");
        return -1;
    }
    if (make_dir(pg->dir, pw) != 0) {
        reason(why, cap, "cannot make a temporary directory: %s", strerror(errno));
        return -1;
    }
    snprintf(pg->super_pw, sizeof pg->super_pw, "su%08x", (unsigned)getpid());
    char pwfile[128], data[128], init[PATH_MAX + 16], log[128];
    snprintf(pwfile, sizeof pwfile, "%s/pw", pg->dir);
    snprintf(data, sizeof data, "%s/data", pg->dir);
    snprintf(log, sizeof log, "%s/initdb.log", pg->dir);
    FILE *f = fopen(pwfile, "w");
    if (!f || fprintf(f, "%s\n", pg->super_pw) < 0 || fclose(f) != 0) {
        reason(why, cap, "cannot write %s", pwfile);
        return -1;
    }
    if (pw && (chown(pwfile, pw->pw_uid, pw->pw_gid) != 0 || chown(pg->dir, pw->pw_uid, pw->pw_gid) != 0)) {
        reason(why, cap, "cannot chown %s", pg->dir);
        return -1;
    }
    snprintf(init, sizeof init, "%s/initdb", pg->bindir);
    /* Local socket: trust (the test's own admin path); TCP: scram passwords, as a station
     * would connect. */
    char *argv[] = { init, "-D", data, "-U", "postgres", "--auth-local=trust",
                     "--auth-host=scram-sha-256", "--pwfile", pwfile, "-E", "UTF8",
                     "--no-instructions", NULL };
    if (run_wait(pw, argv, NULL) != 0) {
        reason(why, cap, "initdb failed in %s", pg->dir);
        return -1;
    }
    pg->port = free_port();
    if (pg->port < 0 || pg_ctl(pg, "start", NULL) != 0) {
        reason(why, cap, "postgres did not start (see %s/server.log)", pg->dir);
        return -1;
    }
    pg->running = true;
    (void)log;
    return 0;
}

int st_tpg_stop(st_tpg *pg, bool immediate)
{
    if (!pg->running)
        return 0;
    int rc = pg_ctl(pg, "stop", immediate ? "immediate" : "fast");
    if (rc == 0)
        pg->running = false;
    return rc;
}

int st_tpg_restart(st_tpg *pg)
{
    if (pg->running)
        return 0;
    int rc = pg_ctl(pg, "start", NULL);
    if (rc == 0)
        pg->running = true;
    return rc;
}

void st_tpg_destroy(st_tpg *pg)
{
    if (pg->running)
        st_tpg_stop(pg, true);
    remove_dir(pg->dir);
    pg->dir[0] = '\0';
}

const char *st_tpg_conninfo(const st_tpg *pg, const char *db, const char *user,
                            const char *password, char *buf, size_t cap)
{
    snprintf(buf, cap, "host=127.0.0.1 port=%d dbname=%s user=%s%s%s", pg->port, db, user,
             password ? " password=" : "", password ? password : "");
    return buf;
}

static PGconn *super_conn(const st_tpg *pg, const char *db)
{
    char ci[256];
    snprintf(ci, sizeof ci, "host=%s port=%d dbname=%s user=postgres", pg->dir, pg->port, db);
    PGconn *c = PQconnectdb(ci);
    if (c && PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

static void quiet(void *ctx, const char *msg)
{
    (void)ctx;
    (void)msg;
}

int st_tpg_sql(const st_tpg *pg, const char *db, const char *sql, char *why, size_t cap)
{
    PGconn *c = super_conn(pg, db);
    if (!c) {
        reason(why, cap, "cannot connect to %s", db);
        return -1;
    }
    PQsetNoticeProcessor(c, quiet, NULL);
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    int rc = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK ? 0 : -1;
    if (rc)
        reason(why, cap, "%s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    return rc;
}

int st_tpg_value(const st_tpg *pg, const char *db, const char *sql, char *out, size_t cap)
{
    PGconn *c = super_conn(pg, db);
    if (!c)
        return -1;
    PGresult *r = PQexec(c, sql);
    int rc = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) >= 1) {
        st_strlcpy(out, PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0), cap);
        rc = 0;
    } else {
        st_strlcpy(out, PQresultErrorMessage(r), cap);
    }
    PQclear(r);
    PQfinish(c);
    return rc;
}

/* ---- Mosquitto --------------------------------------------------------------------------- */

static int mq_spawn(st_tmq *mq)
{
    char conf[128], log[128];
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", mq->dir);
    snprintf(log, sizeof log, "%s/broker.log", mq->dir);
    char *argv[] = { "/usr/sbin/mosquitto", "-c", conf, NULL };
    mq->pid = spawn(server_user("mosquitto"), argv, log);
    if (mq->pid < 0)
        return -1;
    /* Ready when the port accepts a connection (bounded by a deadline). */
    st_deadline dl = st_deadline_in_ms(10000);
    while (!st_deadline_passed(dl)) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)mq->port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return 0;
        int st;
        if (waitpid(mq->pid, &st, WNOHANG) == mq->pid) {
            mq->pid = 0;
            return -1;
        }
        st_sleep_us(20000); /* polling another process's listen socket */
    }
    return -1;
}

int st_tmq_start(st_tmq *mq, const char *const *users, const char *acl,
                 const char *listener_extra, char *why, size_t cap)
{
    memset(mq, 0, sizeof *mq);
    if (access("/usr/sbin/mosquitto", X_OK) != 0 || access("/usr/bin/mosquitto_passwd", X_OK) != 0) {
        reason(why, cap, "mosquitto not installed (/usr/sbin/mosquitto, mosquitto_passwd; "
                         "scripts/setup.sh installs it)");
        return -1;
    }
    const struct passwd *pw = server_user("mosquitto");
    if (geteuid() == 0 && !pw) {
        reason(why, cap, "running as root and there is no mosquitto user to run the broker as");
        return -1;
    }
    if (make_dir(mq->dir, pw) != 0) {
        reason(why, cap, "cannot make a temporary directory");
        return -1;
    }
    char path[128];
    snprintf(path, sizeof path, "%s/passwd", mq->dir);
    for (size_t i = 0; users && users[i]; i++) {
        char user[128], *colon;
        st_strlcpy(user, users[i], sizeof user);
        if (!(colon = strchr(user, ':')))
            return -1;
        *colon = '\0';
        char *argv[] = { "/usr/bin/mosquitto_passwd", "-b", path, user, colon + 1, NULL };
        if (i == 0) {
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (fd >= 0)
                close(fd);
        }
        if (run_wait(NULL, argv, NULL) != 0) {
            reason(why, cap, "mosquitto_passwd failed");
            return -1;
        }
    }
    char aclp[128], conf[128];
    snprintf(aclp, sizeof aclp, "%s/acl", mq->dir);
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", mq->dir);
    mq->port = free_port();
    FILE *f = fopen(aclp, "w");
    int ok = f && fputs(acl, f) >= 0;
    if (f && fclose(f) != 0)
        ok = 0;
    f = fopen(conf, "w");
    ok = ok && f &&
         fprintf(f, "listener %d 127.0.0.1\n%sallow_anonymous false\npassword_file %s\n"
                    "acl_file %s\npersistence false\nmax_queued_messages 100000\n"
                    "log_dest stderr\nlog_type error\nlog_type warning\n",
                 mq->port, listener_extra ? listener_extra : "", path, aclp) > 0;
    if (f && fclose(f) != 0)
        ok = 0;
    chmod(path, 0600);
    chmod(aclp, 0600);
    if (pw && (chown(path, pw->pw_uid, pw->pw_gid) != 0 || chown(aclp, pw->pw_uid, pw->pw_gid) != 0 ||
               chown(conf, pw->pw_uid, pw->pw_gid) != 0))
        ok = 0;
    if (!ok) {
        reason(why, cap, "cannot write the broker's files in %s", mq->dir);
        return -1;
    }
    if (mq_spawn(mq) != 0) {
        reason(why, cap, "mosquitto did not start (see %s/broker.log)", mq->dir);
        return -1;
    }
    return 0;
}

void st_tmq_kill(st_tmq *mq)
{
    if (mq->pid <= 0)
        return;
    kill(mq->pid, SIGKILL);
    int st;
    waitpid(mq->pid, &st, 0);
    mq->pid = 0;
}

int st_tmq_restart(st_tmq *mq)
{
    if (mq->pid > 0)
        return 0;
    return mq_spawn(mq);
}

void st_tmq_destroy(st_tmq *mq)
{
    st_tmq_kill(mq);
    remove_dir(mq->dir);
    mq->dir[0] = '\0';
}

int st_test_write_config(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    size_t n = strlen(text);
    int rc = write(fd, text, n) == (ssize_t)n ? 0 : -1;
    fchmod(fd, 0600);
    close(fd);
    return rc;
}

/* ---- reports ----------------------------------------------------------------------------- */

int st_test_write_report(const char *dir, const char *name, const st_test_report *r)
{
    st_rnode *d = st_report_new();
    if (!d)
        return -1;
    uint64_t t0 = r->wall_us ? r->wall_us : st_wall_us();
    bool fail = r->verdict && strcmp(r->verdict, "fail") == 0;
    st_rnode *m = st_rmap_map(d, "station");
    st_rmap_str(m, "name", r->station);
    st_rmap_str(m, "version", "0.1.0");
    st_rmap_str(m, "host", "test-host");
    m = st_rmap_map(d, "run");
    st_rmap_str(m, "id", r->run_id);
    st_rmap_time(m, "started", t0);
    if (r->finished) {
        uint64_t now = st_wall_us();
        st_rmap_time(m, "finished", now);
        st_rmap_ms(m, "duration_ms", now > t0 ? now - t0 : 0);
    }
    st_rmap_str(d, "operator", "tester");
    m = st_rmap_map(d, "fixture");
    st_rmap_str(m, "name", "virtual");
    st_rmap_str(m, "path", "");
    st_rmap_str(m, "backend", "virtual");
    m = st_rmap_map(d, "slot");
    if (r->slot >= 0) {
        st_rmap_int(m, "id", r->slot);
        st_rmap_fmt(m, "name", "slot-%d", r->slot);
    } else {
        st_rmap_str(m, "name", "none (found on the bus)");
    }
    m = st_rmap_map(d, "job");
    st_rmap_str(m, "name", "demo-usb-dfu");
    st_rmap_str(m, "path", "/etc/station/jobs/demo.yaml");
    st_rmap_str(m, "sha256", "61be291834d764072d8c511d62c7c2eb382957fd0659a89818a0637e825fa8f0");
    m = st_rmap_map(d, "unit");
    st_rmap_str(m, "identity", r->identity);
    st_rmap_str(m, "dfu_serial", r->identity);
    st_rmap_seq(d, "images");
    st_rnode *steps = st_rmap_seq(d, "steps");
    static const char *const names[] = { "enter-bootloader", "flash", "verify" };
    for (int i = 0; i < 3; i++) {
        st_rnode *s = st_rseq_add_map(steps);
        bool this_fails = fail && i == 1;
        st_rmap_str(s, "name", names[i]);
        st_rmap_time(s, "started", t0 + (uint64_t)i * 1000u);
        st_rmap_ms(s, "duration_ms", 1000u);
        st_rmap_str(s, "outcome", !r->finished && i == 2 ? "incomplete"
                                  : this_fails ? "fail" : fail && i > 1 ? "skipped" : "pass");
        st_rmap_int(s, "attempts", fail && i > 1 ? 0 : 1);
        if (this_fails)
            st_rmap_str(s, "error", r->cause);
    }
    st_rmap_seq(d, "device_errors");
    st_rmap_str(d, "verdict", r->finished ? (r->verdict ? r->verdict : "pass") : "incomplete");
    if (!r->finished)
        st_rmap_str(d, "cause", "the run has not finished");
    else if (fail || (r->verdict && strcmp(r->verdict, "incomplete") == 0))
        st_rmap_str(d, "cause", r->cause ? r->cause : "stopped");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = st_report_write_atomic(d, path, NULL);
    st_report_free(d);
    return rc ? -1 : 0;
}

/* ---- subscriber ---------------------------------------------------------------------------- */

typedef struct tmsg {
    char *topic, *payload;
} tmsg;

struct st_tsub {
    struct mosquitto *m;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tmsg *msgs;
    size_t n, cap;
    bool subscribed;
    char topic[256];
};

static pthread_once_t sub_once = PTHREAD_ONCE_INIT;
static void sub_lib_init(void)
{
    mosquitto_lib_init();
}

static void sub_on_connect(struct mosquitto *m, void *ctx, int rc)
{
    st_tsub *s = ctx;
    if (rc == 0)
        mosquitto_subscribe(m, NULL, s->topic, 1);
}

static void sub_on_subscribe(struct mosquitto *m, void *ctx, int mid, int n, const int *q)
{
    st_tsub *s = ctx;
    pthread_mutex_lock(&s->mu);
    s->subscribed = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    (void)m, (void)mid, (void)n, (void)q;
}

static void sub_on_message(struct mosquitto *m, void *ctx, const struct mosquitto_message *msg)
{
    st_tsub *s = ctx;
    pthread_mutex_lock(&s->mu);
    if (s->n == s->cap) {
        size_t c = s->cap ? s->cap * 2 : 256;
        tmsg *a = realloc(s->msgs, c * sizeof *a);
        if (!a) {
            pthread_mutex_unlock(&s->mu);
            return;
        }
        s->msgs = a;
        s->cap = c;
    }
    tmsg *t = &s->msgs[s->n];
    t->topic = strdup(msg->topic);
    t->payload = strndup(msg->payload ? msg->payload : "", (size_t)msg->payloadlen);
    if (t->topic && t->payload)
        s->n++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    (void)m;
}

static struct timespec abs_ms(unsigned ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

st_tsub *st_tsub_open(int port, const char *user, const char *password, const char *topic)
{
    return st_tsub_open_tls(port, user, password, topic, NULL);
}

st_tsub *st_tsub_open_tls(int port, const char *user, const char *password, const char *topic,
                          const char *cafile)
{
    pthread_once(&sub_once, sub_lib_init);
    st_tsub *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    st_strlcpy(s->topic, topic, sizeof s->topic);
    char id[64];
    snprintf(id, sizeof id, "test-sub-%d-%p", (int)getpid(), (void *)s);
    s->m = mosquitto_new(id, true, s);
    if (!s->m)
        goto fail;
    mosquitto_connect_callback_set(s->m, sub_on_connect);
    mosquitto_subscribe_callback_set(s->m, sub_on_subscribe);
    mosquitto_message_callback_set(s->m, sub_on_message);
    mosquitto_reconnect_delay_set(s->m, 1, 2, false);
    mosquitto_username_pw_set(s->m, user, password);
    if (cafile && mosquitto_tls_set(s->m, cafile, NULL, NULL, NULL, NULL) != MOSQ_ERR_SUCCESS)
        goto fail;
    if (mosquitto_connect_async(s->m, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS ||
        mosquitto_loop_start(s->m) != MOSQ_ERR_SUCCESS)
        goto fail;
    struct timespec until = abs_ms(10000);
    pthread_mutex_lock(&s->mu);
    while (!s->subscribed && pthread_cond_timedwait(&s->cv, &s->mu, &until) == 0)
        ;
    bool ok = s->subscribed;
    pthread_mutex_unlock(&s->mu);
    if (ok)
        return s;
fail:
    st_tsub_close(s);
    return NULL;
}

void st_tsub_close(st_tsub *s)
{
    if (!s)
        return;
    if (s->m) {
        mosquitto_disconnect(s->m);
        mosquitto_loop_stop(s->m, true);
        mosquitto_destroy(s->m);
    }
    for (size_t i = 0; i < s->n; i++) {
        free(s->msgs[i].topic);
        free(s->msgs[i].payload);
    }
    free(s->msgs);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

static size_t count_locked(st_tsub *s, const char *topic, const char *needle)
{
    size_t c = 0;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->msgs[i].topic, topic) == 0 && (!needle || strstr(s->msgs[i].payload, needle)))
            c++;
    return c;
}

size_t st_tsub_count(st_tsub *s, const char *topic, const char *needle)
{
    pthread_mutex_lock(&s->mu);
    size_t c = count_locked(s, topic, needle);
    pthread_mutex_unlock(&s->mu);
    return c;
}

size_t st_tsub_count_prefix(st_tsub *s, const char *prefix)
{
    pthread_mutex_lock(&s->mu);
    size_t c = 0, l = strlen(prefix);
    for (size_t i = 0; i < s->n; i++)
        if (strncmp(s->msgs[i].topic, prefix, l) == 0)
            c++;
    pthread_mutex_unlock(&s->mu);
    return c;
}

bool st_tsub_wait(st_tsub *s, const char *topic, const char *needle, size_t n, unsigned timeout_ms)
{
    struct timespec until = abs_ms(timeout_ms);
    pthread_mutex_lock(&s->mu);
    while (count_locked(s, topic, needle) < n && pthread_cond_timedwait(&s->cv, &s->mu, &until) == 0)
        ;
    bool ok = count_locked(s, topic, needle) >= n;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

const char *st_tsub_last(st_tsub *s, const char *topic, char *buf, size_t cap)
{
    const char *r = NULL;
    pthread_mutex_lock(&s->mu);
    for (size_t i = s->n; i-- > 0;)
        if (strcmp(s->msgs[i].topic, topic) == 0) {
            st_strlcpy(buf, s->msgs[i].payload, cap);
            r = buf;
            break;
        }
    pthread_mutex_unlock(&s->mu);
    return r;
}
