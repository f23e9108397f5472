/* JUnit XML from reports (hostile unit strings escaped, failures and skips, measurements)
 * and the schema check of steps[].measurements. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reports/junit.h"
#include "reports/report.h"
#include "station/core/testutil.h"

#define EXAMPLE STATION_SOURCE_DIR "/reports/example-report.yaml"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static st_rnode *example_with_checks(void)
{
    st_rnode *doc;
    st_err e;
    if (st_report_load(EXAMPLE, &doc, &e))
        fail_msg("%s", e.msg);
    st_rmap_str(st_rfind(doc, "unit"), "identity", "evil<unit>&\"'\x01");
    st_rnode *steps = st_rfind(doc, "steps");
    st_rnode *s = st_rseq_add_map(steps);
    st_rmap_str(s, "name", "sample");
    st_rmap_str(s, "started", "2026-11-23T17:43:00.871Z");
    st_rmap_ms(s, "duration_ms", 1500);
    st_rmap_str(s, "outcome", "fail");
    st_rmap_uint(s, "attempts", 1);
    st_rmap_str(s, "error", "measurement data_stddev = 0 counts is below the low limit 5 <counts>");
    st_rnode *m = st_rseq_add_map(st_rmap_seq(s, "measurements"));
    st_rmap_str(m, "name", "data_stddev");
    st_rmap_num(m, "value", 0);
    st_rmap_str(m, "unit", "counts");
    st_rmap_num(m, "low", 5);
    st_rmap_str(m, "outcome", "fail");
    return doc;
}

static void test_junit(void **state)
{
    st_rnode *doc = example_with_checks();
    st_err e;
    assert_int_equal(st_report_validate(doc, &e), 0);
    char rpath[256];
    st_test_tmpl(rpath, sizeof rpath, "st-junit");
    int fd = mkstemp(rpath);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(st_report_write_atomic(doc, rpath, &e), 0);
    char xpath[300];
    snprintf(xpath, sizeof xpath, "%s.xml", rpath);
    const char *paths[] = { rpath };
    assert_int_equal(st_junit_write(xpath, "job<1>", paths, 1, &e), 0);
    const char *x = slurp(xpath);
    assert_non_null(strstr(x, "<testsuites name=\"job&lt;1&gt;\">"));
    assert_non_null(strstr(x, "evil&lt;unit&gt;&amp;&quot;&apos;?"));
    assert_null(strstr(x, "evil<unit>"));
    assert_non_null(strstr(x, "<failure type=\"fail\" message=\"measurement data_stddev = 0 "
                               "counts is below the low limit 5 &lt;counts&gt;\">"));
    assert_non_null(strstr(x, "data_stddev = 0 counts [5 .. -] fail"));
    assert_non_null(strstr(x, "</testsuites>"));
    unlink(xpath);
    /* A report that cannot be read is an error naming it; no XML is left behind. */
    const char *missing[] = { "/nonexistent/report.yaml" };
    assert_true(st_junit_write(xpath, "j", missing, 1, &e) < 0);
    assert_int_not_equal(access(xpath, F_OK), 0);
    unlink(rpath);
    st_report_free(doc);
}

static void test_measurements_schema(void **state)
{
    st_rnode *doc = example_with_checks();
    st_err e;
    st_rnode *m = st_rfind(doc, "steps.5.measurements.0");
    assert_non_null(m);
    st_rmap_str(m, "outcome", "great");
    assert_int_equal(st_report_validate(doc, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "measurements.0.outcome"));
    st_rmap_str(m, "outcome", "marginal");
    assert_int_equal(st_report_validate(doc, &e), 0);
    st_rmap_del(m, "value");
    assert_int_equal(st_report_validate(doc, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "value"));
    st_report_free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_junit),
        cmocka_unit_test(test_measurements_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
