/* Per-unit report journal: append-only change records beside an atomically written report,
 * folded into the final report; replay of a journal a dead run left. See journal.h. */
#include "reports/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "station/core/text.h"

/* The first line: the magic, then the report's file name at creation, so a journal whose
 * report was renamed (st_journal_rename cut short by a crash) still finds it. */
#define MAGIC "station-journal 1"
/* A record is one step's worth of report: a few KiB. Anything larger on replay is damage. */
#define RECORD_MAX (1024u * 1024u)
/* The journal of one unit's run: a few dozen records. */
#define JOURNAL_MAX (64u * 1024u * 1024u)

struct st_journal {
    int fd;
    int failed;               /* sticky error code after a failed write or sync */
    char report[PATH_MAX];
    char path[PATH_MAX];
    st_journal_stats stats;
};

int st_journal_path_for(const char *report_path, char *out, size_t cap)
{
    size_t n = strlen(report_path);
    if (n >= 5 && strcmp(report_path + n - 5, ".yaml") == 0)
        n -= 5;
    if (n + sizeof ".journal" > cap)
        return ST_ERR_INVAL;
    memcpy(out, report_path, n);
    memcpy(out + n, ".journal", sizeof ".journal");
    return 0;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The atomic report write, counted. */
static int write_report(st_journal *j, const st_rnode *doc, st_err *err)
{
    int rc = st_report_write_atomic(doc, j->report, err);
    struct stat sb;
    if (rc == 0 && stat(j->report, &sb) == 0)
        j->stats.bytes += (uint64_t)sb.st_size;
    j->stats.syncs += 2; /* the file, then its directory */
    return rc;
}

int st_journal_create(const char *report_path, const st_rnode *doc, st_journal **out,
                      st_err *err)
{
    *out = NULL;
    st_journal *j = calloc(1, sizeof *j);
    if (!j)
        return st_err_set(err, ST_ERR_NOMEM, "report journal: out of memory");
    j->fd = -1;
    if (strlen(report_path) >= sizeof j->report ||
        st_journal_path_for(report_path, j->path, sizeof j->path) != 0) {
        free(j);
        return st_err_set(err, ST_ERR_INVAL, "%s: path too long", report_path);
    }
    st_strlcpy(j->report, report_path, sizeof j->report);
    const char *what = "create";
    j->fd = open(j->path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (j->fd < 0)
        goto fail;
    /* Held while the run lives (and released by the kernel when it dies): recovery leaves a
     * locked journal alone, so a second station on the same directory cannot fold a live
     * run's journal. */
    what = "lock";
    if (flock(j->fd, LOCK_EX | LOCK_NB) != 0)
        goto fail;
    what = "write";
    const char *base = strrchr(report_path, '/');
    base = base ? base + 1 : report_path;
    char first[PATH_MAX + 32];
    int fl = snprintf(first, sizeof first, "%s %s\n", MAGIC, base);
    if (write_all(j->fd, first, (size_t)fl) != 0)
        goto fail;
    j->stats.bytes += (uint64_t)fl;
    what = "sync";
    j->stats.syncs++;
    if (fdatasync(j->fd) != 0)
        goto fail;
    /* The report's rename and directory fsync also make the journal's name durable. */
    int rc = write_report(j, doc, err);
    if (rc != 0) {
        close(j->fd);
        unlink(j->path);
        free(j);
        return rc;
    }
    *out = j;
    return 0;
fail: {
    int e = errno;
    if (j->fd >= 0) {
        close(j->fd);
        unlink(j->path);
    }
    st_err_set(err, st_err_from_errno(e), "%s: %s: %s", j->path, what, strerror(e));
    free(j);
    return st_err_from_errno(e);
}
}

static int sticky(st_journal *j, int e, const char *what, st_err *err)
{
    j->failed = st_err_from_errno(e);
    return st_err_set(err, j->failed, "%s: %s: %s", j->path, what, strerror(e));
}

int st_journal_sync(st_journal *j, st_err *err)
{
    if (j->failed)
        return st_err_set(err, j->failed, "%s: an earlier write failed", j->path);
    j->stats.syncs++;
    if (fdatasync(j->fd) != 0)
        return sticky(j, errno, "sync", err);
    return 0;
}

int st_journal_put(st_journal *j, const char *path, const st_rnode *value, bool sync,
                   st_err *err)
{
    if (j->failed)
        return st_err_set(err, j->failed, "%s: an earlier write failed", j->path);
    if (!path || !*path || !value)
        return st_err_set(err, ST_ERR_INVAL, "%s: a record needs a path and a value", j->path);
    st_rnode *rec = st_report_new();
    if (rec) {
        st_rmap_del(rec, "schema");
        st_rmap_str(rec, "p", path);
        if (!st_rput_copy(rec, "v", value)) {
            st_report_free(rec);
            rec = NULL;
        }
    }
    if (!rec)
        return st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", j->path);
    char *body = NULL;
    size_t len = 0;
    int rc = st_report_emit(rec, &body, &len, err);
    st_report_free(rec);
    if (rc)
        return st_err_wrap(err, rc, "%s", j->path);
    char head[64];
    uint32_t crc = (uint32_t)crc32(0L, (const Bytef *)body, (uInt)len);
    int hl = snprintf(head, sizeof head, "J %zu %08" PRIx32 "\n", len, crc);
    /* One write per record: header, body and the closing newline together. */
    char *buf = malloc((size_t)hl + len + 1);
    if (!buf) {
        free(body);
        return st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", j->path);
    }
    memcpy(buf, head, (size_t)hl);
    memcpy(buf + hl, body, len);
    buf[(size_t)hl + len] = '\n';
    free(body);
    int w = write_all(j->fd, buf, (size_t)hl + len + 1);
    int e = errno;
    free(buf);
    if (w != 0)
        return sticky(j, e, "write", err);
    j->stats.records++;
    j->stats.bytes += (uint64_t)hl + len + 1;
    return sync ? st_journal_sync(j, err) : 0;
}

/* fsync the directory holding path (renames are durable once it returns). */
static int sync_dir(const char *path)
{
    char d[PATH_MAX];
    st_strlcpy(d, path, sizeof d);
    char *slash = strrchr(d, '/');
    if (!slash)
        st_strlcpy(d, ".", sizeof d);
    else if (slash == d)
        d[1] = '\0';
    else
        *slash = '\0';
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return r < 0 && errno != EINVAL && errno != EROFS ? -1 : 0;
}

int st_journal_rename(st_journal *j, const char *new_report_path, st_err *err)
{
    char njournal[PATH_MAX];
    if (strlen(new_report_path) >= sizeof j->report ||
        st_journal_path_for(new_report_path, njournal, sizeof njournal) != 0)
        return st_err_set(err, ST_ERR_INVAL, "%s: path too long", new_report_path);
    /* The journal first: a crash between the two renames leaves the report under its old
     * name, which the journal's first line names. */
    if (rename(j->path, njournal) != 0)
        return st_err_set(err, st_err_from_errno(errno), "%s: rename to %s: %s", j->path,
                          njournal, strerror(errno));
    if (rename(j->report, new_report_path) != 0) {
        int e = errno;
        rename(njournal, j->path);
        return st_err_set(err, st_err_from_errno(e), "%s: rename to %s: %s", j->report,
                          new_report_path, strerror(e));
    }
    st_strlcpy(j->path, njournal, sizeof j->path);
    st_strlcpy(j->report, new_report_path, sizeof j->report);
    j->stats.syncs++;
    if (sync_dir(new_report_path) != 0)
        return sticky(j, errno, "fsync directory", err);
    return 0;
}

int st_journal_finish(st_journal *j, const st_rnode *doc, st_err *err)
{
    int rc = write_report(j, doc, err);
    if (rc != 0 && !j->failed) {
        /* The journal is then all there is: make its unsynced tail durable. */
        j->stats.syncs++;
        fdatasync(j->fd);
    }
    if (rc == 0) {
        close(j->fd);
        j->fd = -1;
        /* Once the final report is on disk the journal is stale: replay ignores a journal
         * beside a final report, so a crash before this unlink loses nothing. */
        unlink(j->path);
    }
    st_journal_close(j);
    return rc;
}

void st_journal_close(st_journal *j)
{
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    free(j);
}

void st_journal_get_stats(const st_journal *j, st_journal_stats *out)
{
    *out = j->stats;
}

const char *st_journal_report_path(const st_journal *j)
{
    return j->report;
}

/* ---- replay ------------------------------------------------------------------------------ */

static int slurp(const char *path, char **out, size_t *len, st_err *err)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return st_err_set(err, st_err_from_errno(errno), "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > JOURNAL_MAX) {
        close(fd);
        return st_err_set(err, ST_ERR_INVAL, "%s: not a report journal", path);
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    if (!buf) {
        close(fd);
        return st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t n = 0;
    while (n < (size_t)sb.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)sb.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* Parse one record at buf[0..n): 1 and its body span, 0 if torn or corrupt. */
static int next_record(const char *buf, size_t n, size_t *body, size_t *body_len, size_t *total)
{
    const char *nl = memchr(buf, '\n', n < 64 ? n : 64);
    if (!nl || n < 2 || buf[0] != 'J' || buf[1] != ' ')
        return 0;
    char head[64];
    size_t hl = (size_t)(nl - buf);
    memcpy(head, buf, hl);
    head[hl] = '\0';
    char *end = NULL;
    errno = 0;
    unsigned long long len = strtoull(head + 2, &end, 10);
    if (errno || end == head + 2 || *end != ' ' || len > RECORD_MAX)
        return 0;
    char *end2 = NULL;
    unsigned long crc = strtoul(end + 1, &end2, 16);
    if (end2 != end + 9 || *end2 != '\0')
        return 0;
    size_t start = hl + 1;
    if (n - start < len + 1 || buf[start + len] != '\n')
        return 0;
    if ((uint32_t)crc32(0L, (const Bytef *)buf + start, (uInt)len) != (uint32_t)crc)
        return 0;
    *body = start;
    *body_len = (size_t)len;
    *total = start + (size_t)len + 1;
    return 1;
}

/* The last step still `incomplete`, for the cause. */
static const char *step_in_progress(const st_rnode *doc)
{
    const st_rnode *steps = st_rget(doc, "steps");
    for (size_t i = st_rnode_len(steps); i-- > 0;) {
        const st_rnode *s = st_rnode_child(steps, i);
        const char *o = st_rget_str(s, "outcome");
        if (o && strcmp(o, "incomplete") == 0)
            return st_rget_str(s, "name");
    }
    return NULL;
}

void st_journal_apply(st_rnode *doc, const char *buf, size_t n, st_journal_replay_info *info)
{
    size_t off = 0, ml = strlen(MAGIC);
    bool cause_set = false, ended = false;
    info->records = 0;
    const char *eol = n > ml ? memchr(buf + ml, '\n', n - ml) : NULL;
    if (eol && memcmp(buf, MAGIC, ml) == 0 && (buf[ml] == ' ' || buf[ml] == '\n')) {
        off = (size_t)(eol - buf) + 1;
        for (;;) {
            size_t body, blen, total;
            if (off >= n || !next_record(buf + off, n - off, &body, &blen, &total))
                break;
            st_rnode *rec = NULL;
            st_err perr;
            const char *p = NULL;
            const st_rnode *v = NULL;
            if (st_report_parse(buf + off + body, blen, "journal record", &rec, &perr) == 0) {
                p = st_rget_str(rec, "p");
                v = st_rget(rec, "v");
            }
            /* A record that passed its CRC but cannot be applied is damage too: stop. So is
             * a cause or a verdict that is not text (the report would not validate). */
            bool scalar_key = p && (strcmp(p, "cause") == 0 || strcmp(p, "verdict") == 0);
            bool ok = p && v && (!scalar_key || st_rget_str(rec, "v")) &&
                      st_rput_copy(doc, p, v);
            if (ok && strcmp(p, "cause") == 0)
                cause_set = true;
            if (ok && strcmp(p, "verdict") == 0)
                ended = true;
            st_report_free(rec);
            if (!ok)
                break;
            info->records++;
            off += total;
        }
    }
    info->torn_bytes = n > off ? n - off : 0;
    info->ended = ended;
    /* A verdict record is the run's last: the run ended and only the final write did not
     * happen. Otherwise the run did not end: the verdict stays incomplete. */
    if (ended) {
        const char *v = st_rget_str(doc, "verdict");
        if (v && strcmp(v, "pass") == 0)
            st_rmap_del(doc, "cause"); /* a pass has none (the first report's placeholder) */
        return;
    }
    st_rmap_str(doc, "verdict", "incomplete");
    if (!cause_set) {
        const char *step = step_in_progress(doc);
        char cause[256];
        snprintf(cause, sizeof cause,
                 "the run stopped before it ended (report rebuilt from its journal, %zu "
                 "records)%s%s", info->records, step ? "; step in progress: " : "",
                 step ? step : "");
        st_rmap_str(doc, "cause", cause);
    }
}

/* Replay report_path against the journal at jpath (which may not exist). */
static int replay_pair(const char *report_path, const char *jpath, st_rnode **out,
                       st_journal_replay_info *info, st_err *err)
{
    memset(info, 0, sizeof *info);
    *out = NULL;
    st_rnode *doc = NULL;
    int rc = st_report_load(report_path, &doc, err);
    if (rc)
        return rc;
    struct stat sb;
    if (!jpath || stat(jpath, &sb) != 0) {
        *out = doc;
        return 0;
    }
    info->had_journal = true;
    const char *verdict = st_rget_str(doc, "verdict");
    if (!verdict || strcmp(verdict, "incomplete") != 0) {
        info->stale = true;
        *out = doc;
        return 0;
    }
    char *buf = NULL;
    size_t n = 0;
    rc = slurp(jpath, &buf, &n, err);
    if (rc) {
        st_report_free(doc);
        return rc;
    }
    st_journal_apply(doc, buf, n, info);
    free(buf);
    /* A run that died has no end time; the journal's last write is when it was last seen
     * alive (SCHEMA.md run.finished), and what tells `station ship` the report is done. */
    if (!info->ended && !st_rget(doc, "run.finished") && stat(jpath, &sb) == 0)
        st_rmap_time(st_rmap_map(doc, "run"), "finished",
                     (uint64_t)sb.st_mtim.tv_sec * 1000000u +
                         (uint64_t)sb.st_mtim.tv_nsec / 1000u);
    *out = doc;
    return 0;
}

int st_journal_replay(const char *report_path, st_rnode **out, st_journal_replay_info *info,
                      st_err *err)
{
    st_journal_replay_info local;
    char jpath[PATH_MAX];
    bool j = st_journal_path_for(report_path, jpath, sizeof jpath) == 0;
    return replay_pair(report_path, j ? jpath : NULL, out, info ? info : &local, err);
}

/* Write the replayed report over report_path, under final_path (the name the journal
 * carries), and remove the journal. */
static int recover_pair(const char *report_path, const char *jpath, const char *final_path,
                        st_journal_replay_info *info, st_err *err)
{
    st_rnode *doc = NULL;
    int rc = replay_pair(report_path, jpath, &doc, info, err);
    if (rc)
        return rc;
    if (info->had_journal && !info->stale)
        rc = st_report_write_atomic(doc, report_path, err);
    st_report_free(doc);
    if (rc == 0 && final_path && strcmp(final_path, report_path) != 0 &&
        rename(report_path, final_path) != 0)
        rc = st_err_set(err, st_err_from_errno(errno), "%s: rename to %s: %s", report_path,
                        final_path, strerror(errno));
    if (rc == 0 && info->had_journal) {
        unlink(jpath);
        sync_dir(jpath);
    }
    return rc;
}

int st_journal_recover(const char *report_path, st_journal_replay_info *info, st_err *err)
{
    st_journal_replay_info local;
    char jpath[PATH_MAX];
    if (st_journal_path_for(report_path, jpath, sizeof jpath) != 0)
        return st_err_set(err, ST_ERR_INVAL, "%s: path too long", report_path);
    return recover_pair(report_path, jpath, NULL, info ? info : &local, err);
}

int st_journal_recover_dir(const char *dir, st_journal_recover_counts *counts, st_err *err)
{
    st_journal_recover_counts local;
    if (!counts)
        counts = &local;
    memset(counts, 0, sizeof *counts);
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return st_err_set(err, st_err_from_errno(errno), "%s: %s", dir, strerror(errno));
    }
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        const char *tmp = strstr(de->d_name, ".yaml.tmp.");
        if (tmp && de->d_name[0] != '.') {
            /* The temp file of an atomic write a killed run never renamed: garbage (the
             * report itself is whole). Its name ends with the writer's pid: a writer that is
             * still alive (another station on this directory) is left alone. */
            long pid = strtol(tmp + 10, NULL, 10);
            if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
                continue;
            char tpath[PATH_MAX];
            if ((size_t)snprintf(tpath, sizeof tpath, "%s/%s", dir, de->d_name) < sizeof tpath &&
                unlink(tpath) == 0)
                counts->temps++;
            continue;
        }
        if (l <= 8 || strcmp(de->d_name + l - 8, ".journal") != 0 || de->d_name[0] == '.')
            continue;
        char jpath[PATH_MAX], rpath[PATH_MAX], first[PATH_MAX];
        if ((size_t)snprintf(jpath, sizeof jpath, "%s/%s", dir, de->d_name) >= sizeof jpath ||
            (size_t)snprintf(rpath, sizeof rpath, "%s/%.*s.yaml", dir, (int)(l - 8),
                             de->d_name) >= sizeof rpath)
            continue;
        /* A journal whose run is alive holds its lock: not ours to fold. */
        int lfd = open(jpath, O_RDONLY | O_CLOEXEC);
        if (lfd >= 0 && flock(lfd, LOCK_SH | LOCK_NB) != 0) {
            close(lfd);
            counts->live++;
            continue;
        }
        const char *report = rpath;
        struct stat sb;
        if (stat(rpath, &sb) != 0) {
            /* Renamed report, cut short: the journal's first line names the old one. */
            char head[PATH_MAX + 32] = "";
            FILE *f = fopen(jpath, "r");
            bool records = false;
            if (f) {
                if (!fgets(head, sizeof head, f))
                    head[0] = '\0';
                records = fgetc(f) != EOF;
                fclose(f);
            }
            size_t ml = strlen(MAGIC);
            head[strcspn(head, "\n")] = '\0';
            const char *name = strncmp(head, MAGIC " ", ml + 1) == 0 ? head + ml + 1 : "";
            if (!*name || strchr(name, '/') ||
                (size_t)snprintf(first, sizeof first, "%s/%s", dir, name) >= sizeof first ||
                stat(first, &sb) != 0) {
                /* No report under either name. A journal with no record is a run that died
                 * before its first report was on disk, so before any pin moved: nothing to
                 * rebuild. One with records has lost its report: left for a person. */
                if (!records && unlink(jpath) == 0)
                    counts->empty++;
                else
                    counts->orphans++;
                if (lfd >= 0)
                    close(lfd);
                continue;
            }
            report = first;
        }
        st_journal_replay_info info;
        st_err e;
        int prc = recover_pair(report, jpath, rpath, &info, &e);
        if (lfd >= 0)
            close(lfd);
        if (prc != 0) {
            counts->failed++;
            if (rc == 0)
                rc = st_err_set(err, e.code, "%s", e.msg);
            continue;
        }
        if (info.stale)
            counts->stale++;
        else
            counts->recovered++;
    }
    closedir(d);
    return rc;
}
