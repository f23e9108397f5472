/* Fleet pieces that need no server: the report-to-JSON mapping (golden text), the yield
 * figures on hand-made runs, the string map, and bounded mutation runs ("fuzz") of the
 * configuration loader and the JSON writer on random bytes (ASan catches what they miss). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "reports/report.h"
#include "reports/ship/config.h"
#include "reports/ship/json.h"
#include "reports/strmap.h"
#include "reports/summary.h"
#include "station/core/testutil.h"

static void test_json_mapping(void **state)
{
    static const char yaml[] =
        "schema: 1\n"
        "addr: 0x08000000\n"
        "n: 35984\n"
        "ms: 1874.091\n"
        "neg: -3\n"
        "odd: 0o17\n"
        "inf: .inf\n"
        "ok: true\n"
        "none: null\n"
        "s: '0123'\n"
        "esc: \"a\\\"b\\\\c\\nd\\x01\\u00e9\"\n"
        "list: [1, x, {k: v}]\n"
        "empty: []\n";
    st_rnode *doc = NULL;
    st_err e;
    assert_int_equal(st_report_parse(yaml, sizeof yaml - 1, "t", &doc, &e), 0);
    char *j = NULL;
    assert_int_equal(st_report_json(doc, &j, NULL, &e), 0);
    assert_string_equal(j, "{\"schema\":1,\"addr\":\"0x08000000\",\"n\":35984,\"ms\":1874.091,"
                           "\"neg\":-3,\"odd\":\"0o17\",\"inf\":\".inf\",\"ok\":true,\"none\":null,"
                           "\"s\":\"0123\",\"esc\":\"a\\\"b\\\\c\\u000ad\\u0001\xc3\xa9\","
                           "\"list\":[1,\"x\",{\"k\":\"v\"}],\"empty\":[]}");
    free(j);
    st_report_free(doc);
}

static void test_summary_figures(void **state)
{
    st_summary *s = st_summary_new();
    assert_non_null(s);
    /* A: pass. B: fail then pass. C: fail, fail. D: a pass recorded before its earlier
     * fail (order of arrival must not matter). E: incomplete only. */
    assert_int_equal(st_summary_add(s, "A", "2026-01-01T00:00:00.000Z", "pass", NULL, NULL), 0);
    assert_int_equal(st_summary_add(s, "B", "2026-01-01T00:00:00.000Z", "fail", "flash", "x"), 0);
    assert_int_equal(st_summary_add(s, "B", "2026-01-01T00:01:00.000Z", "pass", NULL, NULL), 0);
    assert_int_equal(st_summary_add(s, "C", "2026-01-01T00:00:00.000Z", "fail", "flash", "x"), 0);
    assert_int_equal(st_summary_add(s, "C", "2026-01-01T00:01:00.000Z", "fail", "verify", "y"), 0);
    assert_int_equal(st_summary_add(s, "D", "2026-01-01T00:05:00.000Z", "pass", NULL, NULL), 0);
    assert_int_equal(st_summary_add(s, "D", "2026-01-01T00:04:00.000Z", "fail", NULL, "z"), 0);
    assert_int_equal(st_summary_add(s, "E", "2026-01-01T00:04:00.000Z", "incomplete", NULL, "stop"), 0);
    st_summary_figures f;
    assert_int_equal(st_summary_figures_get(s, &f), 0);
    assert_int_equal(f.runs, 8);
    assert_int_equal(f.pass, 3);
    assert_int_equal(f.fail, 4);
    assert_int_equal(f.incomplete, 1);
    assert_int_equal(f.units, 4);
    assert_int_equal(f.first_pass, 1);
    assert_true(f.first_pass_yield > 0.249 && f.first_pass_yield < 0.251);
    assert_int_equal(f.nfailures, 3);
    assert_string_equal(f.failures[0].step, "flash");
    assert_string_equal(f.failures[0].cause, "x");
    assert_int_equal(f.failures[0].count, 2);
    assert_string_equal(f.failures[1].step, "-"); /* count 1, "-" sorts before "verify" */
    assert_string_equal(f.failures[2].step, "verify");
    char buf[2048];
    FILE *m = fmemopen(buf, sizeof buf, "w");
    assert_int_equal(st_summary_render(s, m, false, 1), 0);
    fclose(m);
    assert_non_null(strstr(buf, "first-pass yield 25.0%"));
    assert_non_null(strstr(buf, "(2 more groups)"));
    st_summary_free(s);
}

static void test_strmap(void **state)
{
    st_strmap *m = st_strmap_new();
    char k[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof k, "key%d", i);
        bool created;
        void **v = st_strmap_put(m, k, &created);
        assert_non_null(v);
        assert_true(created);
        *v = (void *)(intptr_t)(i + 1);
    }
    assert_int_equal(st_strmap_len(m), 5000);
    for (int i = 0; i < 5000; i += 7) {
        snprintf(k, sizeof k, "key%d", i);
        assert_int_equal((intptr_t)st_strmap_get(m, k, NULL), i + 1);
    }
    bool found = true;
    assert_null(st_strmap_get(m, "nope", &found));
    assert_false(found);
    st_strmap_free(m);
}

static uint32_t rng = 12345;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* Mutations of a valid configuration: every outcome is 0 or a clean error. */
static void test_fuzz_config(void **state)
{
    static const char base[] = "station: line2-a\nreports: /r\nstate: /s\ndatabase:\n"
                               "  conninfo: \"dbname=f\"\n  password: p\nmqtt:\n  host: h\n"
                               "  port: 8883\n  tls:\n    cafile: /ca\n";
    char path[256];
    st_test_tmpl(path, sizeof path, "st-fleet-fuzz");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char buf[sizeof base + 16];
    unsigned ok = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, base, sizeof base);
        size_t len = sizeof base - 1;
        int nmut = 1 + (int)(rnd() % 4);
        for (int k = 0; k < nmut && len > 0; k++) {
            size_t at = rnd() % len;
            switch (rnd() % 3) {
            case 0: buf[at] = (char)(rnd() & 0xff); break;
            case 1: len = at; break;
            default: buf[at] = "\n :\"'-[]{}#&*!|>%@`\t"[rnd() % 20]; break;
            }
        }
        FILE *f = fopen(path, "wb");
        fwrite(buf, 1, len, f);
        fclose(f);
        chmod(path, 0600);
        st_fleet_cfg c;
        st_err e;
        int rc = st_fleet_cfg_load(path, &c, &e);
        if (rc == 0) {
            ok++;
            assert_true(st_fleet_name_ok(c.station));
        } else {
            assert_true(rc < 0);
            assert_true(e.msg[0] != '\0');
        }
    }
    unlink(path);
    assert_true(ok > 0); /* some mutations (in values) still load */
}

/* Random strings through the report model into JSON: always valid, escaped text. */
static void test_fuzz_json(void **state)
{
    for (int it = 0; it < 2000; it++) {
        char s[64];
        size_t n = rnd() % (sizeof s - 1);
        for (size_t i = 0; i < n; i++)
            s[i] = (char)(1 + rnd() % 255);
        s[n] = '\0';
        st_rnode *d = st_report_new();
        st_rmap_str(d, s, s);
        st_rmap_str(st_rmap_map(d, "m"), "v", s);
        char *j = NULL;
        st_err e;
        assert_int_equal(st_report_json(d, &j, NULL, &e), 0);
        /* No raw control byte, and quotes balanced outside escapes. */
        unsigned quotes = 0;
        for (const char *p = j; *p; p++) {
            assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
            if (*p == '\\')
                p++;
            else if (*p == '"')
                quotes++;
        }
        assert_int_equal(quotes % 2, 0);
        free(j);
        st_report_free(d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_mapping),
        cmocka_unit_test(test_summary_figures),
        cmocka_unit_test(test_strmap),
        cmocka_unit_test(test_fuzz_config),
        cmocka_unit_test(test_fuzz_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
