/* Summary figures (yield, failures, time per unit and per step, units per hour, retries,
 * entry methods, --since) against a hand-made report set whose answers were worked out
 * by hand (see the comments), read back from files like `station report summary DIR`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "reports/report.h"
#include "reports/summary.h"
#include "station/core/testutil.h"

/* One hand-made run: its unit, start, finish, duration, verdict, cause and steps (each
 * "name outcome attempts duration_ms [entry_method]"). */
typedef struct run {
    const char *unit, *started, *finished;
    int duration_ms; /* -1: absent (incomplete) */
    const char *verdict, *cause;
    const char *steps[4];
} run;

static const run set[] = {
    /* A */ { "U1", "2026-12-01T10:00:00.000Z", "2026-12-01T10:00:10.000Z", 10000, "pass", NULL,
              { "enter-bootloader pass 1 100 gpio:boot0+reset", "flash pass 1 5000" } },
    /* B */ { "U2", "2026-12-01T10:10:00.000Z", "2026-12-01T10:10:20.000Z", 20000, "fail",
              "flash: errPROG", { "enter-bootloader pass 2 300 gpio:boot0+reset", "flash fail 3 8000" } },
    /* C */ { "U2", "2026-12-01T10:20:00.000Z", "2026-12-01T10:20:30.000Z", 30000, "pass", NULL,
              { "enter-bootloader pass 1 200 gpio:boot0+reset", "flash pass 1 6000" } },
    /* D */ { "U3", "2026-12-01T10:30:00.000Z", "2026-12-01T10:30:40.000Z", 40000, "fail",
              "enter-bootloader: no device", { "enter-bootloader fail 3 5000 gpio:power",
                                               "flash skipped 0 0" } },
    /* E */ { "U4", "2026-12-01T09:00:00.000Z", NULL, -1, "incomplete", "stopped",
              { "enter-bootloader incomplete 1 50 gpio:power" } },
    /* F */ { "U5", "2026-12-01T10:59:00.000Z", "2026-12-01T11:00:00.000Z", 60000, "pass", NULL,
              { "enter-bootloader pass 1 400 gpio:power", "flash pass 1 7000" } },
};

static st_rnode *make(const run *r)
{
    char text[4096];
    size_t n = (size_t)snprintf(text, sizeof text,
                                "schema: 1\nrun:\n  id: x\n  started: \"%s\"\n", r->started);
    if (r->finished)
        n += (size_t)snprintf(text + n, sizeof text - n, "  finished: \"%s\"\n  duration_ms: %d\n",
                              r->finished, r->duration_ms);
    n += (size_t)snprintf(text + n, sizeof text - n, "unit:\n  identity: %s\nverdict: %s\n",
                          r->unit, r->verdict);
    if (r->cause)
        n += (size_t)snprintf(text + n, sizeof text - n, "cause: \"%s\"\n", r->cause);
    n += (size_t)snprintf(text + n, sizeof text - n, "steps:\n");
    for (size_t i = 0; i < 4 && r->steps[i]; i++) {
        char name[32], outcome[16], entry[32] = "";
        int att, ms;
        assert_true(sscanf(r->steps[i], "%31s %15s %d %d %31s", name, outcome, &att, &ms, entry) >= 4);
        n += (size_t)snprintf(text + n, sizeof text - n,
                              "- name: %s\n  outcome: %s\n  attempts: %d\n  duration_ms: %d\n",
                              name, outcome, att, ms);
        if (entry[0])
            n += (size_t)snprintf(text + n, sizeof text - n, "  entry_method: \"%s\"\n", entry);
    }
    /* Through a file and the report reader, as the command reads them. */
    char path[256];
    st_test_tmpl(path, sizeof path, "st-summary");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    st_rnode *doc = NULL;
    st_err e;
    if (st_report_load(path, &doc, &e))
        fail_msg("%s", e.msg);
    unlink(path);
    return doc;
}

static st_summary *load_set(const char *since)
{
    st_summary *s = st_summary_new();
    assert_non_null(s);
    assert_int_equal(st_summary_set_since(s, since), 0);
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++) {
        st_rnode *doc = make(&set[i]);
        assert_true(st_summary_add_report(s, doc) >= 0);
        st_report_free(doc);
    }
    return s;
}

static void test_figures(void **state)
{
    st_summary *s = load_set(NULL);
    st_summary_figures f;
    assert_int_equal(st_summary_figures_get(s, &f), 0);
    assert_int_equal(f.runs, 6);
    assert_int_equal(f.pass, 3);
    assert_int_equal(f.fail, 2);
    assert_int_equal(f.incomplete, 1);
    /* Units U1 U2 U3 U5 (U4 only incomplete); first time passed: U1 and U5 (U2 failed at
     * 10:10 before it passed at 10:20). */
    assert_int_equal(f.units, 4);
    assert_int_equal(f.first_pass, 2);
    assert_true(f.first_pass_yield > 0.4999 && f.first_pass_yield < 0.5001);
    /* Equal counts: by step name. */
    assert_int_equal(f.nfailures, 2);
    assert_string_equal(f.failures[0].step, "enter-bootloader");
    assert_string_equal(f.failures[1].cause, "flash: errPROG");
    /* 10, 20, 30, 40, 60 s: median 30 s; p95 is the 5th of 5 (ceil(4.75)). */
    assert_int_equal(f.unit_time.n, 5);
    assert_true(f.unit_time.median_ms == 30000.0);
    assert_true(f.unit_time.p95_ms == 60000.0);
    /* 5 finished runs from 10:00:00 (A starts) to 11:00:00 (F finishes). */
    assert_true(f.units_per_hour > 4.999 && f.units_per_hour < 5.001);
    /* B: 1 + 2 extra attempts, D: 2. */
    assert_int_equal(f.retries, 5);
    assert_int_equal(f.runs_with_retries, 2);
    /* Steps in first-seen order; a skipped step did not run. */
    assert_int_equal(f.nsteps, 2);
    assert_string_equal(f.steps[0].name, "enter-bootloader");
    assert_int_equal(f.steps[0].runs, 6);  /* E's incomplete attempt ran too */
    assert_int_equal(f.steps[0].fails, 1);
    assert_int_equal(f.steps[0].retries, 3);
    /* 50 100 200 300 400 5000: median (200+300)/2, p95 the 6th of 6. */
    assert_true(f.steps[0].time.median_ms == 250.0);
    assert_true(f.steps[0].time.p95_ms == 5000.0);
    assert_string_equal(f.steps[1].name, "flash");
    assert_int_equal(f.steps[1].runs, 4);
    assert_int_equal(f.steps[1].retries, 2);
    /* 5000 6000 7000 8000: median 6500, p95 the 4th (ceil(3.8)). */
    assert_true(f.steps[1].time.median_ms == 6500.0);
    assert_true(f.steps[1].time.p95_ms == 8000.0);
    /* Entry methods by name: boot0+reset 3 of 3; power: D failed, E incomplete, F passed. */
    assert_int_equal(f.nentries, 2);
    assert_string_equal(f.entries[0].method, "gpio:boot0+reset");
    assert_int_equal(f.entries[0].tries, 3);
    assert_int_equal(f.entries[0].ok, 3);
    assert_string_equal(f.entries[1].method, "gpio:power");
    assert_int_equal(f.entries[1].tries, 3);
    assert_int_equal(f.entries[1].ok, 1);
    st_summary_free(s);
}

static void test_since(void **state)
{
    st_summary *s = load_set("2026-12-01T10:15");
    st_summary_figures f;
    assert_int_equal(st_summary_figures_get(s, &f), 0);
    /* C, D and F started at or after 10:15. */
    assert_int_equal(f.runs, 3);
    assert_int_equal(f.pass, 2);
    assert_int_equal(f.fail, 1);
    assert_int_equal(f.units, 3);
    assert_int_equal(f.first_pass, 2); /* U2's earlier fail is outside the window */
    st_summary_free(s);
    s = st_summary_new();
    assert_int_equal(st_summary_set_since(s, "yesterday"), ST_ERR_INVAL);
    assert_int_equal(st_summary_set_since(s, "2026-12-01 10:00"), ST_ERR_INVAL);
    assert_int_equal(st_summary_set_since(s, "2026-12-01"), 0);
    st_summary_free(s);
}

/* The YAML output carries the same figures and is YAML (read back). */
static void test_render_yaml(void **state)
{
    st_summary *s = load_set(NULL);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(st_summary_render(s, f, true, 0), 0);
    fclose(f);
    assert_non_null(strstr(buf, "unit_time: { n: 5, median_ms: 30000.000, p95_ms: 60000.000 }"));
    assert_non_null(strstr(buf, "units_per_hour: 5.0"));
    assert_non_null(strstr(buf, "- method: \"gpio:power\"\n  tries: 3\n  ok: 1\n  success_rate: 0.3333"));
    char path[256];
    st_test_tmpl(path, sizeof path, "st-summary-yaml");
    int fd = mkstemp(path);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    close(fd);
    st_rnode *doc = NULL;
    st_err e;
    if (st_report_load(path, &doc, &e))
        fail_msg("summary YAML does not read back: %s\n%s", e.msg, buf);
    long long v;
    assert_int_equal(st_rget_int(doc, "retries", &v), 0);
    assert_int_equal(v, 5);
    st_report_free(doc);
    unlink(path);
    free(buf);
    st_summary_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_figures),
        cmocka_unit_test(test_since),
        cmocka_unit_test(test_render_yaml),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
