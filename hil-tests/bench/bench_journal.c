/* Benchmark: the cost of keeping a unit's report on disk through a run, three ways, on the
 * file system of --dir (put it on the disk you care about: an SD card, a loop device):
 *   rewrite-7   today's engine: the whole report re-emitted and written atomically (temp
 *               file, fsync, rename, directory fsync) at the start and after each of the
 *               five steps of the SCHEMA.md example, and at the end: 7 writes;
 *   rewrite-12  the same with each step also on disk before it starts (design.md section 7,
 *               issue 8 item 2): 12 writes;
 *   journal     reports/journal.h: one atomic write at the start, each step appended to the
 *               journal and synced before it starts, its result appended unsynced (the next
 *               step's sync or the final write covers it), one atomic write at the end.
 * Prints per unit: wall time, fsync/fdatasync calls, renames, bytes written, and the ratio
 * to rewrite-7; then the time an SD card would need at --fsync-ms per sync (fsync dominates
 * there: tens of ms each). --check runs 2 units and checks the counts, not the timing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "reports/journal.h"
#include "station/core/testutil.h"

#define EXAMPLE STATION_SOURCE_DIR "/reports/example-report.yaml"

typedef struct cost {
    double ms;
    unsigned syncs, renames;
    unsigned long long bytes;
} cost;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static st_rnode *example(void)
{
    st_rnode *doc = NULL;
    st_err e;
    if (st_report_load(EXAMPLE, &doc, &e) != 0) {
        fprintf(stderr, "bench_journal: %s\n", e.msg);
        exit(2);
    }
    return doc;
}

/* The example before any step: the report a unit starts with. */
static st_rnode *initial(const st_rnode *ex)
{
    st_rnode *doc = st_report_copy(ex);
    st_rmap_del(st_rmap_map(doc, "run"), "finished");
    st_rmap_del(st_rmap_map(doc, "run"), "duration_ms");
    st_rmap_del(doc, "steps");
    st_rmap_seq(doc, "steps");
    st_rmap_del(doc, "verdict");
    st_rmap_str(doc, "verdict", "incomplete");
    st_rmap_str(doc, "cause", "the run is in progress");
    return doc;
}

static st_rnode *step_started(const st_rnode *ex, size_t i)
{
    st_rnode *s = st_report_copy(st_rnode_child(st_rget(ex, "steps"), i));
    st_rmap_str(s, "outcome", "incomplete");
    st_rmap_int(s, "attempts", 0);
    st_rmap_del(s, "attempt_log");
    return s;
}

static int write_counted(const st_rnode *doc, const char *path, cost *c)
{
    st_err e;
    if (st_report_write_atomic(doc, path, &e) != 0) {
        fprintf(stderr, "bench_journal: %s\n", e.msg);
        return -1;
    }
    struct stat sb;
    if (stat(path, &sb) == 0)
        c->bytes += (unsigned long long)sb.st_size;
    c->syncs += 2;
    c->renames++;
    return 0;
}

static int run_rewrite(const st_rnode *ex, const char *path, bool step_starts, cost *c)
{
    st_rnode *doc = initial(ex);
    size_t nsteps = st_rnode_len(st_rget(ex, "steps"));
    int rc = write_counted(doc, path, c);
    for (size_t i = 0; rc == 0 && i < nsteps; i++) {
        char p[32];
        snprintf(p, sizeof p, "steps.%zu", i);
        if (step_starts) {
            st_rnode *s = step_started(ex, i);
            st_rput_copy(doc, p, s);
            st_report_free(s);
            rc = write_counted(doc, path, c);
        }
        st_rput_copy(doc, p, st_rnode_child(st_rget(ex, "steps"), i));
        if (rc == 0)
            rc = write_counted(doc, path, c);
    }
    if (rc == 0) /* final: the example itself */
        rc = write_counted(ex, path, c);
    st_report_free(doc);
    return rc;
}

static int run_journal(const st_rnode *ex, const char *path, cost *c)
{
    st_rnode *doc = initial(ex);
    size_t nsteps = st_rnode_len(st_rget(ex, "steps"));
    st_journal *j = NULL;
    st_err e;
    int rc = st_journal_create(path, doc, &j, &e);
    for (size_t i = 0; rc == 0 && i < nsteps; i++) {
        char p[32];
        snprintf(p, sizeof p, "steps.%zu", i);
        st_rnode *s = step_started(ex, i);
        rc = st_journal_put(j, p, s, true, &e);
        st_report_free(s);
        if (rc == 0)
            rc = st_journal_put(j, p, st_rnode_child(st_rget(ex, "steps"), i), false, &e);
    }
    st_journal_stats js = { 0 };
    if (j)
        st_journal_get_stats(j, &js);
    if (rc == 0) {
        rc = st_journal_finish(j, ex, &e);
        js.syncs += 2;
        struct stat sb;
        if (stat(path, &sb) == 0)
            js.bytes += (unsigned long long)sb.st_size;
    } else {
        st_journal_close(j);
    }
    if (rc)
        fprintf(stderr, "bench_journal: %s\n", e.msg);
    c->syncs += js.syncs;
    c->renames += 2;
    c->bytes += js.bytes;
    st_report_free(doc);
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int units = 20;
    double fsync_ms = 20.0;
    bool check = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--check"))
            check = true;
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--units") && i + 1 < argc)
            units = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--fsync-ms") && i + 1 < argc)
            fsync_ms = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_journal [--check] [--dir DIR] [--units N] "
                            "[--fsync-ms MS]\n");
            return 2;
        }
    }
    if (check)
        units = 2;
    char tmp[64];
    st_test_tmpl(tmp, sizeof tmp, "st-bench-journal");
    if (!dir && !(dir = mkdtemp(tmp))) {
        perror("bench_journal: mkdtemp");
        return 2;
    }
    st_rnode *ex = example();
    static const char *const names[] = { "rewrite-7", "rewrite-12", "journal" };
    cost c[3];
    memset(c, 0, sizeof c);
    for (int d = 0; d < 3; d++) {
        double t0 = now_ms();
        for (int u = 0; u < units; u++) {
            char path[512];
            snprintf(path, sizeof path, "%s/unit%d_slot1_%s.yaml", dir, u, names[d]);
            int rc = d == 2 ? run_journal(ex, path, &c[d]) : run_rewrite(ex, path, d == 1, &c[d]);
            if (rc)
                return 1;
            unlink(path);
        }
        c[d].ms = (now_ms() - t0) / units;
    }
    printf("report upkeep per unit (5 steps, %d units, in %s)\n", units, dir);
    printf("%-11s %9s %7s %8s %8s %9s %14s\n", "design", "ms/unit", "syncs", "renames",
           "bytes", "time/rw-7", "SD est. ms");
    for (int d = 0; d < 3; d++) {
        unsigned long long b = c[d].bytes / (unsigned)units;
        unsigned s = c[d].syncs / (unsigned)units, r = c[d].renames / (unsigned)units;
        printf("%-11s %9.3f %7u %8u %8llu %9.2f %14.0f\n", names[d], c[d].ms, s, r, b,
               c[0].ms > 0 ? c[d].ms / c[0].ms : 0.0, s * fsync_ms);
    }
    st_report_free(ex);
    if (dir == tmp)
        rmdir(tmp);
    if (check) {
        /* The counts are the design: the journal needs fewer syncs than rewriting with
         * step starts on disk, and writes fewer bytes than either rewrite. */
        unsigned s7 = c[0].syncs / 2, s12 = c[1].syncs / 2, sj = c[2].syncs / 2;
        if (s7 != 14 || s12 != 24 || sj != 10 || c[2].bytes >= c[0].bytes) {
            fprintf(stderr, "bench_journal: unexpected counts: syncs %u/%u/%u\n", s7, s12, sj);
            return 1;
        }
        printf("check: ok\n");
    }
    return 0;
}
