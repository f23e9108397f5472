/* Report journal: a run recorded step by step and folded into its final report; a run
 * killed at any point rebuilt by replay (step in progress `incomplete`, report valid);
 * every truncation and every corrupted byte of the journal's tail; stale journals; refusals
 * that leave nothing behind. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "reports/journal.h"
#include "station/core/testutil.h"

#define EXAMPLE STATION_SOURCE_DIR "/reports/example-report.yaml"

static char dir[64], report[128], jpath[128];

static int setup(void **state)
{
    st_test_tmpl(dir, sizeof dir, "st-journal");
    if (!mkdtemp(dir))
        return -1;
    snprintf(report, sizeof report, "%s/208A31574253_slot2_20261123T174257.123Z.yaml", dir);
    return st_journal_path_for(report, jpath, sizeof jpath);
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The report a unit starts with: the SCHEMA.md example before any step. */
static st_rnode *initial_doc(void)
{
    st_rnode *doc = NULL;
    st_err e;
    assert_int_equal(st_report_load(EXAMPLE, &doc, &e), 0);
    st_rmap_del(st_rmap_map(doc, "run"), "finished");
    st_rmap_del(st_rmap_map(doc, "run"), "duration_ms");
    st_rmap_seq(doc, "steps");
    st_rmap_del(doc, "steps");
    st_rmap_seq(doc, "steps");
    st_rmap_del(doc, "verdict");
    st_rmap_str(doc, "verdict", "incomplete");
    st_rmap_str(doc, "cause", "the run is in progress");
    assert_int_equal(st_report_validate(doc, &e), 0);
    return doc;
}

/* The example's i-th step, with an outcome. */
static st_rnode *step(size_t i, const char *outcome)
{
    st_rnode *ex = NULL;
    st_err e;
    assert_int_equal(st_report_load(EXAMPLE, &ex, &e), 0);
    st_rnode *s = st_report_copy(st_rget(ex, "steps") ? st_rnode_child(st_rget(ex, "steps"), i)
                                                      : NULL);
    assert_non_null(s);
    st_rmap_str(s, "outcome", outcome);
    if (strcmp(outcome, "incomplete") == 0) {
        st_rmap_int(s, "attempts", 0);
        st_rmap_del(s, "attempt_log");
    }
    st_report_free(ex);
    return s;
}

static void put(st_journal *j, st_rnode *doc, const char *path, st_rnode *v, bool sync)
{
    st_err e;
    if (st_journal_put(j, path, v, sync, &e) != 0)
        fail_msg("%s", e.msg);
    assert_non_null(st_rput_copy(doc, path, v));
    st_report_free(v);
}

/* The engine's pattern for the example's five steps: each step on disk as `incomplete`
 * before it runs, then its result. Stops after `upto` records; *doc mirrors the journal. */
static st_journal *run_steps(st_rnode *doc, int upto)
{
    st_journal *j = NULL;
    st_err e;
    if (st_journal_create(report, doc, &j, &e) != 0)
        fail_msg("%s", e.msg);
    int n = 0;
    for (size_t i = 0; i < 5 && n < upto; i++) {
        char p[32];
        snprintf(p, sizeof p, "steps.%zu", i);
        put(j, doc, p, step(i, "incomplete"), true);
        if (++n >= upto)
            break;
        if (i == 0) { /* the unit said who it is */
            st_rnode *unit = st_report_copy(st_rget(doc, "unit"));
            st_rmap_str(unit, "identity", "208A31574253");
            put(j, doc, "unit", unit, false);
            if (++n >= upto)
                break;
        }
        put(j, doc, p, step(i, "pass"), true);
        n++;
    }
    return j;
}

static bool exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void test_run_and_finish(void **state)
{
    st_rnode *doc = initial_doc();
    st_journal *j = run_steps(doc, 100);
    assert_true(exists(jpath));
    st_journal_stats js;
    st_journal_get_stats(j, &js);
    assert_int_equal(js.records, 11); /* 5 starts, 5 ends, the unit */
    assert_int_equal(js.syncs, 1 + 2 + 10);
    st_rmap_str(doc, "verdict", "pass");
    st_rmap_del(doc, "cause");
    st_rmap_time(st_rmap_map(doc, "run"), "finished", 1795455780871000ull);
    st_rmap_ms(st_rmap_map(doc, "run"), "duration_ms", 3748412);
    st_err e;
    assert_int_equal(st_report_validate(doc, &e), 0);
    assert_int_equal(st_journal_finish(j, doc, &e), 0);
    assert_false(exists(jpath)); /* folded */
    st_rnode *back = NULL;
    st_journal_replay_info info;
    assert_int_equal(st_journal_replay(report, &back, &info, &e), 0);
    assert_false(info.had_journal);
    assert_int_equal(st_report_validate(back, &e), 0);
    char *a, *b;
    assert_int_equal(st_report_emit(doc, &a, NULL, &e), 0);
    assert_int_equal(st_report_emit(back, &b, NULL, &e), 0);
    assert_string_equal(a, b);
    /* The finished report is the SCHEMA.md example itself, unit identity aside. */
    free(a);
    free(b);
    st_report_free(back);
    st_report_free(doc);
}

/* Killed after every record count: replay gives a valid report whose last step is the one
 * in progress, and recover writes it and removes the journal. */
static void test_killed_at_every_record(void **state)
{
    for (int upto = 0; upto <= 11; upto++) {
        st_rnode *doc = initial_doc();
        st_journal *j = run_steps(doc, upto);
        st_journal_close(j); /* kill -9: no finish */
        st_rnode *back = NULL;
        st_journal_replay_info info;
        st_err e;
        assert_int_equal(st_journal_replay(report, &back, &info, &e), 0);
        assert_true(info.had_journal);
        assert_int_equal(info.records, upto);
        assert_int_equal(info.torn_bytes, 0);
        if (st_report_validate(back, &e) != 0)
            fail_msg("after %d records: %s", upto, e.msg);
        assert_string_equal(st_rget_str(back, "verdict"), "incomplete");
        assert_non_null(st_rget(back, "run.finished")); /* when it was last seen */
        size_t nsteps = st_rnode_len(st_rget(back, "steps"));
        assert_int_equal(nsteps, st_rnode_len(st_rget(doc, "steps")));
        const char *cause = st_rget_str(back, "cause");
        assert_non_null(strstr(cause, "the run stopped before it ended"));
        if (nsteps) {
            const st_rnode *last = st_rnode_child(st_rget(back, "steps"), nsteps - 1);
            const char *o = st_rget_str(last, "outcome");
            if (strcmp(o, "incomplete") == 0)
                assert_non_null(strstr(cause, st_rget_str(last, "name")));
        }
        assert_int_equal(st_journal_recover(report, &info, &e), 0);
        assert_false(exists(jpath));
        st_rnode *disk = NULL;
        assert_int_equal(st_report_load(report, &disk, &e), 0);
        assert_int_equal(st_report_validate(disk, &e), 0);
        assert_int_equal(st_rnode_len(st_rget(disk, "steps")), nsteps);
        st_report_free(disk);
        st_report_free(back);
        st_report_free(doc);
        unlink(report);
    }
}

static void copy_file(const char *from, const char *to, size_t len)
{
    FILE *in = fopen(from, "rb");
    FILE *o = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(o);
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, in);
    assert_true(n < sizeof buf);
    assert_true(len <= n);
    assert_int_equal(fwrite(buf, 1, len, o), len);
    fclose(in);
    fclose(o);
}

static size_t file_size(const char *p)
{
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    return (size_t)sb.st_size;
}

/* A power loss tears the journal anywhere: every prefix replays to a valid report holding
 * exactly the whole records in it. */
static void test_every_truncation(void **state)
{
    st_rnode *doc = initial_doc();
    st_journal *j = run_steps(doc, 7);
    st_journal_close(j);
    char full[160], rep0[160];
    snprintf(full, sizeof full, "%s/full.journal", dir);
    snprintf(rep0, sizeof rep0, "%s/initial.yaml", dir);
    size_t n = file_size(jpath);
    copy_file(jpath, full, n);
    copy_file(report, rep0, file_size(report));
    /* Record boundaries, from a clean replay of each prefix length. */
    size_t last_records = 0;
    for (size_t len = 0; len <= n; len++) {
        copy_file(full, jpath, len);
        st_rnode *back = NULL;
        st_journal_replay_info info;
        st_err e;
        assert_int_equal(st_journal_replay(report, &back, &info, &e), 0);
        if (st_report_validate(back, &e) != 0)
            fail_msg("journal cut at %zu of %zu bytes: %s", len, n, e.msg);
        assert_true(info.records >= last_records);
        assert_true(info.records <= last_records + 1);
        last_records = info.records;
        assert_true(info.torn_bytes <= len);
        st_report_free(back);
    }
    assert_int_equal(last_records, 7);
    st_report_free(doc);
}

/* Any byte of the last record damaged: that record is dropped, the others kept. */
static void test_every_corrupt_byte_of_the_tail(void **state)
{
    st_rnode *doc = initial_doc();
    st_journal *j = run_steps(doc, 3);
    st_journal_close(j);
    size_t n = file_size(jpath);
    char *orig = malloc(n);
    FILE *f = fopen(jpath, "rb");
    assert_int_equal(fread(orig, 1, n, f), n);
    fclose(f);
    /* The last record starts after the last "\nJ " of the file. */
    size_t start = 0;
    for (size_t i = 0; i + 2 < n; i++)
        if (orig[i] == '\n' && orig[i + 1] == 'J' && orig[i + 2] == ' ')
            start = i + 1;
    assert_true(start > 0);
    for (size_t at = start; at < n; at++) {
        char *bad = malloc(n);
        memcpy(bad, orig, n);
        bad[at] ^= 0x01; /* (0x20 would only change the case of a CRC hex digit) */
        f = fopen(jpath, "wb");
        assert_int_equal(fwrite(bad, 1, n, f), n);
        fclose(f);
        free(bad);
        st_rnode *back = NULL;
        st_journal_replay_info info;
        st_err e;
        assert_int_equal(st_journal_replay(report, &back, &info, &e), 0);
        if (info.records != 2)
            fail_msg("byte %zu flipped: %zu records applied", at, info.records);
        assert_int_equal(info.torn_bytes, n - start);
        assert_int_equal(st_report_validate(back, &e), 0);
        st_report_free(back);
    }
    free(orig);
    st_report_free(doc);
}

/* The run ended between the final report's rename and the journal's removal. */
static void test_stale_journal_ignored(void **state)
{
    st_rnode *doc = initial_doc();
    st_journal *j = run_steps(doc, 4);
    st_journal_close(j);
    char keep[160];
    snprintf(keep, sizeof keep, "%s/keep.journal", dir);
    copy_file(jpath, keep, file_size(jpath));
    st_rmap_str(doc, "verdict", "fail");
    st_rmap_str(doc, "cause", "slot 2: flash: dfu: write 0x08004000: device reported errPROG");
    st_rmap_time(st_rmap_map(doc, "run"), "finished", 1795455780871000ull);
    st_rmap_ms(st_rmap_map(doc, "run"), "duration_ms", 1000);
    st_err e;
    assert_int_equal(st_report_write_atomic(doc, report, &e), 0);
    st_rnode *back = NULL;
    st_journal_replay_info info;
    assert_int_equal(st_journal_replay(report, &back, &info, &e), 0);
    assert_true(info.had_journal && info.stale);
    assert_string_equal(st_rget_str(back, "verdict"), "fail");
    st_report_free(back);
    assert_int_equal(st_journal_recover(report, &info, &e), 0);
    assert_false(exists(jpath));
    st_report_free(doc);
}

/* Refusals leave nothing behind: a second journal for the same report, a missing
 * directory, an invalid document. */
static void test_create_refusals(void **state)
{
    st_rnode *doc = initial_doc();
    st_journal *j = NULL, *j2 = NULL;
    st_err e;
    assert_int_equal(st_journal_create(report, doc, &j, &e), 0);
    assert_int_not_equal(st_journal_create(report, doc, &j2, &e), 0);
    assert_null(j2);
    assert_non_null(strstr(e.msg, ".journal: create"));
    st_journal_close(j);
    char nodir[200];
    snprintf(nodir, sizeof nodir, "%s/missing/r.yaml", dir);
    assert_int_not_equal(st_journal_create(nodir, doc, &j2, &e), 0);
    char other[200];
    snprintf(other, sizeof other, "%s/other.yaml", dir);
    /* No document to write. */
    assert_int_not_equal(st_journal_create(other, NULL, &j2, &e), 0);
    char ojournal[200];
    st_journal_path_for(other, ojournal, sizeof ojournal);
    assert_false(exists(ojournal));
    assert_false(exists(other));
    /* Records need a path and a value. */
    assert_int_equal(st_journal_create(other, doc, &j2, &e), 0);
    assert_int_equal(st_journal_put(j2, "", doc, false, &e), ST_ERR_INVAL);
    assert_int_equal(st_journal_put(j2, "steps.0", NULL, false, &e), ST_ERR_INVAL);
    st_journal_close(j2);
    st_report_free(doc);
}

/* The unit said who it is: the report and its journal take its name; a crash between the
 * two renames still recovers, through the journal's first line. */
static void test_rename_and_recover_dir(void **state)
{
    st_rnode *doc = initial_doc();
    st_journal *j = run_steps(doc, 3);
    char newname[160], newj[160];
    snprintf(newname, sizeof newname, "%s/NEWID_slot2_20261123T174257.123Z.yaml", dir);
    st_journal_path_for(newname, newj, sizeof newj);
    st_err e;
    assert_int_equal(st_journal_rename(j, newname, &e), 0);
    assert_false(exists(report));
    assert_false(exists(jpath));
    assert_true(exists(newname) && exists(newj));
    st_rnode *s1 = step(1, "incomplete");
    assert_int_equal(st_journal_put(j, "steps.1", s1, true, &e), 0); /* still appending */
    st_report_free(s1);
    st_journal_close(j);
    st_journal_recover_counts n;
    assert_int_equal(st_journal_recover_dir(dir, &n, &e), 0);
    assert_int_equal(n.recovered, 1);
    assert_false(exists(newj));
    st_rnode *back = NULL;
    assert_int_equal(st_report_load(newname, &back, &e), 0);
    assert_int_equal(st_report_validate(back, &e), 0);
    st_report_free(back);
    unlink(newname);

    /* Cut short: the journal renamed, the report not. */
    j = run_steps(doc, 2);
    st_journal_close(j);
    assert_int_equal(rename(jpath, newj), 0);
    char orphan[160], tmpf[200], livef[200], emptyj[160];
    snprintf(emptyj, sizeof emptyj, "%s/early.journal", dir); /* died before its report */
    FILE *ej = fopen(emptyj, "w");
    fputs("station-journal 1 early.yaml\n", ej);
    fclose(ej);
    pid_t dead = fork(); /* a writer that is gone */
    if (dead == 0)
        _exit(0);
    waitpid(dead, NULL, 0);
    snprintf(tmpf, sizeof tmpf, "%s.tmp.%ld", newname, (long)dead); /* a killed write's */
    snprintf(livef, sizeof livef, "%s.tmp.%ld", report, (long)getppid()); /* a live one */
    FILE *tf = fopen(tmpf, "w");
    fputs("schema: 1\n", tf);
    fclose(tf);
    tf = fopen(livef, "w");
    fclose(tf);
    snprintf(orphan, sizeof orphan, "%s/gone.journal", dir); /* a journal with no report */
    FILE *f = fopen(orphan, "w");
    fputs("station-journal 1 gone-too.yaml\nJ 3 00000000\nabc\n", f); /* records, no report */
    fclose(f);
    assert_int_equal(st_journal_recover_dir(dir, &n, &e), 0);
    assert_int_equal(n.recovered, 1);
    assert_int_equal(n.orphans, 1);
    assert_int_equal(n.empty, 1);
    assert_false(exists(emptyj));
    assert_int_equal(n.temps, 1);
    assert_false(exists(tmpf));
    assert_true(exists(livef));
    unlink(livef);
    assert_false(exists(report));
    assert_true(exists(newname));
    assert_false(exists(newj));
    assert_int_equal(st_report_load(newname, &back, &e), 0);
    assert_int_equal(st_report_validate(back, &e), 0);
    assert_string_equal(st_rget_str(back, "verdict"), "incomplete");
    st_report_free(back);
    st_report_free(doc);
}

/* The engine journals the run's end (the verdict last) before the final write: if that
 * write fails, replay gives the final report, not an incomplete one. */
static void test_ended_journal(void **state)
{
    st_rnode *doc = initial_doc();
    st_journal *j = run_steps(doc, 100);
    st_rnode *v = st_report_new();
    st_rmap_del(v, "schema");
    st_rnode *run = st_report_copy(st_rget(doc, "run"));
    st_rmap_time(run, "finished", 1795455780871000ull);
    st_rmap_ms(run, "duration_ms", 3748412);
    put(j, doc, "run", run, false);
    st_report_free(v);
    st_rnode *pass = NULL;
    st_err e;
    assert_int_equal(st_report_parse("verdict: pass\n", 14, "t", &pass, &e), 0);
    assert_int_equal(st_journal_put(j, "verdict", st_rget(pass, "verdict"), true, &e), 0);
    st_report_free(pass);
    st_journal_close(j); /* the final write never happened */
    st_rnode *back = NULL;
    st_journal_replay_info info;
    assert_int_equal(st_journal_replay(report, &back, &info, &e), 0);
    assert_true(info.ended);
    assert_string_equal(st_rget_str(back, "verdict"), "pass");
    assert_null(st_rget(back, "cause"));
    if (st_report_validate(back, &e) != 0)
        fail_msg("%s", e.msg);
    st_report_free(back);
    st_report_free(doc);
}

/* A second station on the same directory must not fold a live run's journal. */
static void test_live_journal_left_alone(void **state)
{
    st_rnode *doc = initial_doc();
    st_journal *j = run_steps(doc, 3);
    st_journal_recover_counts n;
    st_err e;
    assert_int_equal(st_journal_recover_dir(dir, &n, &e), 0);
    assert_int_equal(n.live, 1);
    assert_int_equal(n.recovered, 0);
    assert_true(exists(jpath));
    st_journal_close(j); /* the run dies: its lock goes with it */
    assert_int_equal(st_journal_recover_dir(dir, &n, &e), 0);
    assert_int_equal(n.live, 0);
    assert_int_equal(n.recovered, 1);
    assert_false(exists(jpath));
    st_report_free(doc);
}

static void test_path_for(void **state)
{
    char out[64];
    assert_int_equal(st_journal_path_for("/r/a.yaml", out, sizeof out), 0);
    assert_string_equal(out, "/r/a.journal");
    assert_int_equal(st_journal_path_for("/r/a", out, sizeof out), 0);
    assert_string_equal(out, "/r/a.journal");
    assert_int_equal(st_journal_path_for("/r/a.yaml", out, 10), ST_ERR_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_for),
        cmocka_unit_test_setup_teardown(test_run_and_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_at_every_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_corrupt_byte_of_the_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_journal_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename_and_recover_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ended_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_journal_left_alone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
