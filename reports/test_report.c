/* Tests for per-unit YAML reports: round trip with hostile strings, getters, file names,
 * atomic writes, schema validation of the SCHEMA.md example, parse errors, rendering. */
#include <math.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
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

#include "reports/report.h"
#include "station/core/clock.h"
#include "station/core/digest.h"
#include "station/core/image.h"
#include "station/core/testutil.h"

#define EXAMPLE STATION_SOURCE_DIR "/reports/example-report.yaml"
#define SCHEMA_MD STATION_SOURCE_DIR "/reports/SCHEMA.md"

/* 2026-11-23T17:42:57.123456Z */
#define WALL_US 1795455777123456ull

static const char hostile_serial[] = "../../x\n: y";
static const char control_bytes[] = "a\x01\x1b[31mred\x7f\tz\r\n";

/* ---- helpers --------------------------------------------------------------------------- */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_rf(const char *dir)
{
    chmod(dir, 0755);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *make_tmpdir(void)
{
    char tmpl[256];
    char *d = strdup(st_test_tmpl(tmpl, sizeof tmpl, "st_report_test"));
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* Structural equality: same types, keys, texts, order. */
static void assert_same_tree(const st_rnode *a, const st_rnode *b, const char *where)
{
    if (st_rnode_type(a) != st_rnode_type(b))
        fail_msg("%s: type %d vs %d", where, (int)st_rnode_type(a), (int)st_rnode_type(b));
    const char *ka = st_rnode_key(a), *kb = st_rnode_key(b);
    if ((ka == NULL) != (kb == NULL) || (ka && strcmp(ka, kb)))
        fail_msg("%s: key differs", where);
    const char *ta = st_rnode_text(a), *tb = st_rnode_text(b);
    if ((ta == NULL) != (tb == NULL) || (ta && strcmp(ta, tb)))
        fail_msg("%s: text '%s' vs '%s'", where, ta ? ta : "(null)", tb ? tb : "(null)");
    assert_int_equal(st_rnode_len(a), st_rnode_len(b));
    for (size_t i = 0; i < st_rnode_len(a); i++) {
        char w[256];
        const char *k = st_rnode_key(st_rnode_child(a, i));
        snprintf(w, sizeof(w), "%s.%s", where, k ? k : "#");
        assert_same_tree(st_rnode_child(a, i), st_rnode_child(b, i), w);
    }
}

static size_t count_nodes(const st_rnode *n)
{
    size_t c = 1;
    for (size_t i = 0; i < st_rnode_len(n); i++)
        c += count_nodes(st_rnode_child(n, i));
    return c;
}

/* A complete schema-1 report with hostile unit strings. */
static st_rnode *build_report(const char *long_str)
{
    st_rnode *doc = st_report_new();
    assert_non_null(doc);
    st_rnode *m = st_rmap_map(doc, "station");
    st_rmap_str(m, "name", "bench");
    st_rmap_str(m, "version", "0.1.0");
    st_rmap_str(m, "host", "pi");
    m = st_rmap_map(doc, "run");
    st_rmap_str(m, "id", "run-1");
    st_rmap_time(m, "started", WALL_US);
    st_rmap_time(m, "finished", WALL_US + 2500000u);
    st_rmap_ms(m, "duration_ms", 2500123u);
    st_rmap_str(doc, "operator", "unknown");
    m = st_rmap_map(doc, "fixture");
    st_rmap_str(m, "name", "virtual-4");
    st_rmap_str(m, "path", "fixtures/virtual.yaml");
    st_rmap_str(m, "backend", "virtual");
    m = st_rmap_map(doc, "slot");
    st_rmap_int(m, "id", 3);
    st_rmap_str(m, "name", "slot-3");
    m = st_rmap_map(doc, "job");
    st_rmap_str(m, "name", "j");
    st_rmap_str(m, "path", "jobs/j.yaml");
    st_rmap_str(m, "sha256", "0000000000000000000000000000000000000000000000000000000000000001");
    m = st_rmap_map(doc, "unit");
    st_rmap_str(m, "identity", hostile_serial);
    st_rmap_str(m, "dfu_serial", hostile_serial);
    st_rmap_str(m, "mcu", control_bytes);
    st_rmap_str(m, "port_path", long_str);
    st_rmap_str(m, "can_uuid", "- not a list # nor a comment: nor a key");
    st_rmap_str(m, "chip_id", "0x468");
    st_rmap_str(m, "looks_numeric", "0123");
    st_rmap_str(m, "looks_bool", "yes");
    st_rmap_str(m, "looks_null", "null");
    st_rmap_str(m, "empty", "");
    st_rmap_str(m, "unicode", "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x94\xa5");
    st_rmap_str(m, "quotes", "it's \"quoted\" \\ back");
    st_rmap_str(m, "edge_spaces", "  lead and trail  ");
    st_rmap_str(m, hostile_serial, "hostile key");
    st_rmap_bool(m, "flag", true);
    st_rmap_int(m, "negative", -42);
    st_rmap_uint(m, "big", 18446744073709551615ull);
    st_rnode *img = st_rseq_add_map(st_rmap_seq(doc, "images"));
    st_rmap_str(img, "role", "combined");
    st_rmap_str(img, "path", "fw/combined.bin");
    st_rmap_uint(img, "size", 35984);
    st_rmap_hex32(img, "load_addr", 0x08000000u);
    st_rmap_str(img, "sha256", "fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c");
    st_rmap_str(img, "sha1_padded", "8BC064ADBA1AD31BA00498A011807CBC069CE299");
    st_rnode *steps = st_rmap_seq(doc, "steps");
    const char *names[] = { "enter-bootloader", "flash" };
    for (int i = 0; i < 2; i++) {
        st_rnode *s = st_rseq_add_map(steps);
        st_rmap_str(s, "name", names[i]);
        st_rmap_time(s, "started", WALL_US + (uint64_t)i * 1000000u);
        st_rmap_ms(s, "duration_ms", 1000u * (uint64_t)(i + 1) + 7u);
        st_rmap_str(s, "outcome", i ? "fail" : "pass");
        st_rmap_int(s, "attempts", 1);
        st_rnode *a = st_rseq_add_map(st_rmap_seq(s, "attempt_log"));
        st_rmap_int(a, "n", 1);
        st_rmap_time(a, "started", WALL_US);
        st_rmap_ms(a, "duration_ms", 5u);
        st_rmap_str(a, "outcome", i ? "fail" : "pass");
        if (i) {
            st_rmap_fmt(a, "error", "write 0x%08x: device reported %s", 0x08004000u, "errPROG");
            st_rmap_uint(s, "bytes", 4096);
            st_rmap_hex32(s, "address", 0x08004000u);
            st_rmap_str(s, "device_error", control_bytes);
            st_rmap_str(s, "error", "dfu: write 0x08004000: device reported errPROG");
        }
    }
    st_rnode *de = st_rmap_seq(doc, "device_errors");
    st_rseq_add_str(de, "errPROG at 0x08004000");
    st_rseq_add_str(de, control_bytes);
    st_rmap_str(doc, "verdict", "fail");
    st_rmap_str(doc, "cause", "flash: dfu: write 0x08004000: device reported errPROG");
    return doc;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_roundtrip(void **state)
{
    (void)state;
    char long_str[301];
    for (int i = 0; i < 300; i++)
        long_str[i] = (char)('a' + i % 26);
    long_str[300] = '\0';
    long_str[150] = ':';
    long_str[151] = ' ';

    st_rnode *doc = build_report(long_str);
    char *dir = make_tmpdir();
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/r.yaml", dir);
    st_err err = { 0 };
    assert_int_equal(st_report_write_atomic(doc, path, &err), 0);

    st_rnode *back = NULL;
    int rc = st_report_load(path, &back, &err);
    if (rc)
        fail_msg("load: %s", err.msg);
    assert_same_tree(doc, back, "");
    assert_int_equal(count_nodes(doc), count_nodes(back));

    /* Spot checks independent of the tree walk. */
    assert_string_equal(st_rget_str(back, "unit.dfu_serial"), hostile_serial);
    assert_string_equal(st_rget_str(back, "unit.mcu"), control_bytes);
    assert_string_equal(st_rget_str(back, "unit.port_path"), long_str);
    assert_int_equal(strlen(st_rget_str(back, "unit.port_path")), 300);
    assert_string_equal(st_rget_str(back, "unit.looks_numeric"), "0123");
    assert_int_equal(st_rnode_type(st_rget(back, "unit.looks_numeric")), ST_RSTR);
    assert_int_equal(st_rnode_type(st_rget(back, "unit.looks_bool")), ST_RSTR);
    assert_int_equal(st_rnode_type(st_rget(back, "unit.looks_null")), ST_RSTR);
    assert_int_equal(st_rnode_type(st_rget(back, "unit.empty")), ST_RSTR);
    assert_int_equal(st_rnode_type(st_rget(back, "unit.flag")), ST_RBOOL);
    assert_string_equal(st_rget_str(back, "unit.edge_spaces"), "  lead and trail  ");
    assert_string_equal(st_rget_str(back, "verdict"), "fail");
    assert_string_equal(st_rget_str(back, "steps.1.attempt_log.0.error"),
                        "write 0x08004000: device reported errPROG");
    long long v = 0;
    assert_int_equal(st_rget_int(back, "images.0.load_addr", &v), 0);
    assert_int_equal(v, 0x08000000);
    assert_int_equal(st_rget_int(back, "unit.negative", &v), 0);
    assert_int_equal(v, -42);
    /* Does not fit a long long: present but not readable as one. */
    assert_int_equal(st_rget_int(back, "unit.big", &v), ST_ERR_INVAL);
    assert_string_equal(st_rget_str(back, "unit.big"), "18446744073709551615");
    double ms = 0;
    assert_int_equal(st_rget_num(back, "run.duration_ms", &ms), 0);
    assert_true(ms > 2500.122 && ms < 2500.124);
    assert_int_equal(st_report_validate(back, &err), 0);

    /* The file itself is ASCII with no raw control bytes but newlines. */
    size_t len;
    char *text = st_test_read_file(path, &len);
    assert_non_null(text);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\n')
            continue;
        if (c < 0x20 || c >= 0x7f)
            fail_msg("byte 0x%02x at offset %zu in the report file", c, i);
    }
    free(text);

    st_report_free(back);
    st_report_free(doc);
    rm_rf(dir);
    free(dir);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    st_rnode *doc = st_report_new();
    /* Lone continuation, truncated 2-byte, overlong '/', surrogate, above U+10FFFF. */
    st_rmap_str(doc, "bad", "\x80x\xc3y\xc0\xafz\xed\xa0\x80w\xf4\x90\x80\x80v\xff");
    st_rmap_str(doc, "\xfekey", "k");
    assert_string_equal(st_rget_str(doc, "bad"), "?x?y??z???w????v?");
    assert_string_equal(st_rget_str(doc, "?key"), "k");
    /* Lookup by the raw key is cleaned the same way. */
    assert_string_equal(st_rget_str(doc, "\xfekey"), "k");
    char *buf = NULL;
    size_t len = 0;
    st_err err;
    assert_int_equal(st_report_emit(doc, &buf, &len, &err), 0);
    st_rnode *back = NULL;
    assert_int_equal(st_report_parse(buf, len, "mem", &back, &err), 0);
    assert_same_tree(doc, back, "");
    free(buf);
    st_report_free(back);

    /* Over-long strings are cut at a character boundary. */
    char *big = malloc(ST_REPORT_STR_MAX + 100);
    assert_non_null(big);
    memset(big, 'x', ST_REPORT_STR_MAX + 99);
    big[ST_REPORT_STR_MAX - 1] = '\xc3';
    big[ST_REPORT_STR_MAX] = '\xa9';
    big[ST_REPORT_STR_MAX + 99] = '\0';
    st_rmap_str(doc, "big", big);
    assert_int_equal(strlen(st_rget_str(doc, "big")), ST_REPORT_STR_MAX - 1);
    free(big);
    st_report_free(doc);
}

static void test_model(void **state)
{
    (void)state;
    st_rnode *doc = st_report_new();
    assert_string_equal(st_rget_str(doc, "schema"), "1");
    st_rmap_str(doc, "a", "1");
    st_rmap_str(doc, "b", "2");
    st_rmap_str(doc, "c", "3");
    st_rmap_str(doc, "b", "two"); /* replace keeps the position */
    assert_string_equal(st_rnode_key(st_rnode_child(doc, 2)), "b");
    assert_string_equal(st_rget_str(doc, "b"), "two");
    st_rmap_del(doc, "a");
    assert_null(st_rget(doc, "a"));
    assert_string_equal(st_rnode_key(st_rnode_child(doc, 1)), "b");
    st_rmap_str(doc, "c", NULL);
    assert_null(st_rget(doc, "c"));

    /* get-or-create returns the same child; a scalar in the way is replaced. */
    st_rnode *u = st_rmap_map(doc, "unit");
    assert_ptr_equal(u, st_rmap_map(doc, "unit"));
    st_rmap_str(doc, "steps", "oops");
    st_rnode *steps = st_rmap_seq(doc, "steps");
    assert_int_equal(st_rnode_type(steps), ST_RSEQ);
    st_rnode *s0 = st_rseq_add_map(steps);
    st_rnode *s1 = st_rseq_add_map(steps);
    st_rmap_str(s0, "name", "first");
    st_rmap_str(s1, "name", "second");
    st_rmap_hex32(s1, "address", 0x0800ABCDu);
    st_rmap_ms(s1, "duration_ms", 1234567u);
    st_rmap_ms(s1, "short_ms", 7u);
    st_rmap_fmt(s1, "msg", "%d-%s", 7, "x");
    assert_string_equal(st_rget_str(doc, "steps.1.name"), "second");
    assert_string_equal(st_rget_str(doc, "steps.0.name"), "first");
    assert_string_equal(st_rget_str(doc, "steps.1.address"), "0x0800ABCD");
    assert_string_equal(st_rget_str(doc, "steps.1.duration_ms"), "1234.567");
    assert_string_equal(st_rget_str(doc, "steps.1.short_ms"), "0.007");
    assert_string_equal(st_rget_str(doc, "steps.1.msg"), "7-x");
    assert_null(st_rget_str(doc, "steps.2.name"));
    assert_null(st_rget_str(doc, "steps.x.name"));
    assert_null(st_rget_str(doc, "steps"));        /* not a scalar */
    assert_null(st_rget_str(doc, "b.deeper"));
    assert_null(st_rget_str(doc, "missing"));
    assert_ptr_equal(st_rget(doc, ""), doc);
    assert_ptr_equal(st_rfind(doc, "steps.1"), s1);
    long long v;
    assert_int_equal(st_rget_int(doc, "steps.1.address", &v), 0);
    assert_int_equal(v, 0x0800ABCD);
    assert_int_equal(st_rget_int(doc, "steps.1.name", &v), ST_ERR_INVAL);
    assert_int_equal(st_rget_int(doc, "steps.9", &v), ST_ERR_NOTFOUND);
    double d;
    assert_int_equal(st_rget_num(doc, "steps.1.duration_ms", &d), 0);
    assert_true(d > 1234.566 && d < 1234.568);

    st_rmap_time(u, "t", WALL_US);
    assert_string_equal(st_rget_str(doc, "unit.t"), "2026-11-23T17:42:57.123Z");

    /* NULL-tolerant builders: a chain through a missing node does nothing. */
    st_rmap_str(st_rmap_map(NULL, "x"), "y", "z");
    st_rseq_add_str(st_rseq_add_map(NULL), "z");
    assert_null(st_rmap_map(steps, "not-a-map"));
    assert_null(st_rseq_add_map(u));
    st_report_free(doc);
}

static void test_make_path(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char nested[PATH_MAX];
    snprintf(nested, sizeof(nested), "%s/a/b/c/", dir);
    char out[PATH_MAX];
    st_err err = { 0 };
    int rc = st_report_make_path(nested, "../../../etc/passwd\n: y", 2, WALL_US, out,
                                 sizeof(out), &err);
    if (rc)
        fail_msg("make_path: %s", err.msg);
    struct stat sb;
    char cdir[PATH_MAX];
    snprintf(cdir, sizeof(cdir), "%s/a/b/c", dir);
    assert_int_equal(stat(cdir, &sb), 0); /* mkdir -p */
    assert_true(S_ISDIR(sb.st_mode));
    /* The name is "<dir>/<one component>": nothing after the directory has a '/', and
     * ".." is never a component. */
    size_t dl = strlen(cdir);
    assert_memory_equal(out, cdir, dl);
    assert_int_equal(out[dl], '/');
    const char *base = out + dl + 1;
    assert_null(strchr(base, '/'));
    assert_int_not_equal(base[0], '.');
    assert_string_equal(base, "_._.._.._etc_passwd___y_slot2_20261123T174257.123Z.yaml");

    /* Unique: an existing name gets -1, -2. */
    FILE *f = fopen(out, "w");
    assert_non_null(f);
    fclose(f);
    char out2[PATH_MAX], out3[PATH_MAX];
    assert_int_equal(st_report_make_path(cdir, "../../../etc/passwd\n: y", 2, WALL_US, out2,
                                         sizeof(out2), &err), 0);
    assert_string_not_equal(out, out2);
    assert_non_null(strstr(out2, "Z-1.yaml"));
    f = fopen(out2, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(st_report_make_path(cdir, "../../../etc/passwd\n: y", 2, WALL_US, out3,
                                         sizeof(out3), &err), 0);
    assert_non_null(strstr(out3, "Z-2.yaml"));

    /* Empty and dot-only identities, long identities, bad arguments. */
    assert_int_equal(st_report_make_path(cdir, "", 0, WALL_US, out, sizeof(out), &err), 0);
    assert_non_null(strstr(out, "/unknown_slot0_"));
    assert_int_equal(st_report_make_path(cdir, "..", 0, WALL_US, out, sizeof(out), &err), 0);
    assert_null(strchr(out + dl + 1, '/'));
    assert_int_not_equal(out[dl + 1], '.');
    char longid[400];
    memset(longid, 'A', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(st_report_make_path(cdir, longid, 1, WALL_US, out, sizeof(out), &err), 0);
    assert_true(strlen(out + dl + 1) < 128);
    assert_int_equal(st_report_make_path(cdir, "x", -2, WALL_US, out, sizeof(out), &err),
                     ST_ERR_INVAL);
    /* A unit that no slot holds is named so, not "slot0" (issue 7). */
    assert_int_equal(st_report_make_path(cdir, "x", ST_REPORT_NO_SLOT, WALL_US, out, sizeof(out),
                                         &err), 0);
    assert_non_null(strstr(out, "/x_noslot_"));
    char tiny[16];
    assert_int_equal(st_report_make_path(cdir, "x", 1, WALL_US, tiny, sizeof(tiny), &err),
                     ST_ERR_INVAL);
    assert_string_equal(tiny, "");
    /* A file where the directory should be. */
    char notdir[PATH_MAX];
    snprintf(notdir, sizeof(notdir), "%s/file", dir);
    f = fopen(notdir, "w");
    assert_non_null(f);
    fclose(f);
    char sub[PATH_MAX + 8];
    snprintf(sub, sizeof(sub), "%s/sub", notdir);
    assert_true(st_report_make_path(sub, "x", 1, WALL_US, out, sizeof(out), &err) < 0);
    rm_rf(dir);
    free(dir);
}

/* Writing into a read-only directory must fail with ST_ERR_PERM, name the file, leave
 * the old report byte-for-byte and no temp file. Returns 0 or the failing check's number
 * (it may run in a forked child, so it does not use cmocka asserts). */
static int readonly_check(const st_rnode *doc, const char *path, const char *dir,
                          const char *before, size_t before_len)
{
    st_err err = { 0 };
    if (st_report_write_atomic(doc, path, &err) != ST_ERR_PERM)
        return 1;
    if (!strstr(err.msg, "unit.yaml"))
        return 2;
    size_t after_len = 0;
    char *after = st_test_read_file(path, &after_len);
    int rc = 0;
    if (!after || after_len != before_len || memcmp(before, after, before_len) != 0)
        rc = 4;
    free(after);
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d)
        closedir(d);
    if (n != 2)
        rc = 5;
    return rc;
}

static void test_atomic_write(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/unit.yaml", dir);
    st_rnode *doc = st_report_new();
    st_rmap_str(doc, "verdict", "incomplete");
    st_err err = { 0 };
    for (int i = 0; i < 5; i++) {
        st_rmap_int(doc, "step", i);
        assert_int_equal(st_report_write_atomic(doc, path, &err), 0);
        assert_int_equal(count_entries(dir), 1); /* no temp files left */
        st_rnode *back = NULL;
        assert_int_equal(st_report_load(path, &back, &err), 0);
        long long v = -1;
        assert_int_equal(st_rget_int(back, "step", &v), 0);
        assert_int_equal(v, i);
        st_report_free(back);
    }
    size_t before_len;
    char *before = st_test_read_file(path, &before_len);
    assert_non_null(before);

    /* The target is a non-empty directory: rename fails, nothing is left behind. */
    char blocked[PATH_MAX], inner[PATH_MAX + 8];
    snprintf(blocked, sizeof(blocked), "%s/blocked.yaml", dir);
    assert_int_equal(mkdir(blocked, 0755), 0);
    snprintf(inner, sizeof(inner), "%s/x", blocked);
    FILE *f = fopen(inner, "w");
    assert_non_null(f);
    fclose(f);
    int rc = st_report_write_atomic(doc, blocked, &err);
    assert_true(rc < 0);
    assert_non_null(strstr(err.msg, "rename"));
    assert_non_null(strstr(err.msg, "blocked.yaml"));
    assert_int_equal(count_entries(dir), 2);
    assert_int_equal(count_entries(blocked), 1);

    /* Read-only directory: the write fails cleanly and the old report is intact. Root
     * ignores directory permissions, so as root the check runs in a child that has
     * dropped to nobody. */
    assert_int_equal(chmod(dir, 0555), 0);
    st_rmap_str(doc, "verdict", "pass");
    if (geteuid() != 0) {
        assert_int_equal(readonly_check(doc, path, dir, before, before_len), 0);
    } else {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0)
                _exit(3);
            _exit(readonly_check(doc, path, dir, before, before_len));
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) != 0)
            fail_msg("read-only directory check failed in the child: step %d",
                     WEXITSTATUS(status));
    }
    assert_int_equal(chmod(dir, 0755), 0);
    size_t after_len;
    char *after = st_test_read_file(path, &after_len);
    assert_non_null(after);
    assert_int_equal(before_len, after_len);
    assert_memory_equal(before, after, before_len);
    free(after);
    assert_int_equal(count_entries(dir), 2);

    /* A missing directory fails and creates nothing. */
    char missing[PATH_MAX];
    snprintf(missing, sizeof(missing), "%s/nope/unit.yaml", dir);
    assert_true(st_report_write_atomic(doc, missing, &err) < 0);
    assert_int_equal(count_entries(dir), 2);
    free(before);
    st_report_free(doc);
    rm_rf(dir);
    free(dir);
}

static void test_example_validates(void **state)
{
    (void)state;
    st_rnode *doc = NULL;
    st_err err = { 0 };
    int rc = st_report_load(EXAMPLE, &doc, &err);
    if (rc)
        fail_msg("%s", err.msg);
    rc = st_report_validate(doc, &err);
    if (rc)
        fail_msg("validate: %s", err.msg);
    assert_string_equal(st_rget_str(doc, "verdict"), "pass");
    assert_string_equal(st_rget_str(doc, "steps.1.name"), "flash");
    assert_string_equal(st_rget_str(doc, "unit.dfu_serial"), "208A31574253");
    assert_int_equal(st_rnode_type(st_rget(doc, "unit.dfu_serial")), ST_RSTR);

    /* The example is in the writer's own form: emitting it gives the file back. */
    size_t flen;
    char *file = st_test_read_file(EXAMPLE, &flen);
    assert_non_null(file);
    char *emitted = NULL;
    size_t elen = 0;
    assert_int_equal(st_report_emit(doc, &emitted, &elen, &err), 0);
    assert_string_equal(emitted, file);

    /* SCHEMA.md includes the example verbatim. */
    char *md = st_test_read_file(SCHEMA_MD, NULL);
    assert_non_null(md);
    assert_non_null(strstr(md, file));
    free(md);
    free(emitted);
    free(file);
    st_report_free(doc);
}

static void expect_invalid(st_rnode *doc, const char *field)
{
    st_err err = { 0 };
    int rc = st_report_validate(doc, &err);
    assert_int_equal(rc, ST_ERR_INVAL);
    if (strncmp(err.msg, field, strlen(field)) != 0)
        fail_msg("expected an error naming '%s', got '%s'", field, err.msg);
}

static void test_validate_catches(void **state)
{
    (void)state;
    st_rnode *doc = NULL;
    st_err err;
    assert_int_equal(st_report_load(EXAMPLE, &doc, &err), 0);

    st_rmap_del(doc, "verdict");
    expect_invalid(doc, "verdict: missing");
    st_rmap_str(doc, "verdict", "maybe");
    expect_invalid(doc, "verdict: expected pass|fail|incomplete");
    st_rmap_str(doc, "verdict", "fail");
    expect_invalid(doc, "cause: missing");
    st_rmap_str(doc, "cause", "flash: errPROG");
    assert_int_equal(st_report_validate(doc, &err), 0);

    st_rmap_str(st_rfind(doc, "steps.1"), "outcome", "maybe");
    expect_invalid(doc, "steps.1.outcome");
    st_rmap_str(st_rfind(doc, "steps.1"), "outcome", "pass");
    st_rmap_str(st_rfind(doc, "steps.0.attempt_log.1"), "duration_ms", "fast");
    expect_invalid(doc, "steps.0.attempt_log.1.duration_ms");
    st_rmap_ms(st_rfind(doc, "steps.0.attempt_log.1"), "duration_ms", 5);
    st_rmap_int(st_rfind(doc, "steps.2"), "bytes", -1);
    expect_invalid(doc, "steps.2.bytes");
    st_rmap_int(st_rfind(doc, "steps.2"), "bytes", 1);
    assert_int_equal(st_report_validate(doc, &err), 0);

    /* A measurement's value and limits are any number: a temperature below zero, .nan
     * when there is no value (SCHEMA.md); text is not a value. */
    st_rnode *m = st_rseq_add_map(st_rmap_seq(st_rfind(doc, "steps.2"), "measurements"));
    st_rmap_str(m, "name", "temp_min");
    st_rmap_num(m, "value", -12.5);
    st_rmap_str(m, "unit", "C");
    st_rmap_num(m, "low", -40);
    st_rmap_num(m, "high", 85);
    st_rmap_str(m, "outcome", "pass");
    assert_int_equal(st_report_validate(doc, &err), 0);
    st_rmap_num(m, "value", NAN);
    assert_int_equal(st_report_validate(doc, &err), 0);
    st_rmap_str(m, "value", "CARTOGRAPHER V4");
    expect_invalid(doc, "steps.2.measurements.0.value");
    st_rmap_del(st_rfind(doc, "steps.2"), "measurements");

    /* Image roles are whatever the job named them (no closed list), but names, once each. */
    st_rmap_str(st_rfind(doc, "images.0"), "role", "bootloader-v2.1_rc");
    assert_int_equal(st_report_validate(doc, &err), 0);
    st_rmap_str(st_rfind(doc, "images.0"), "role", "");
    expect_invalid(doc, "images.0.role: expected a name");
    st_rmap_str(st_rfind(doc, "images.0"), "role", "a b");
    expect_invalid(doc, "images.0.role: expected a name");
    st_rmap_str(st_rfind(doc, "images.0"), "role", "a23456789012345678901234567890123");
    expect_invalid(doc, "images.0.role: expected a name");
    st_rmap_int(st_rfind(doc, "images.0"), "role", 7);
    expect_invalid(doc, "images.0.role: expected a name");
    st_rmap_str(st_rfind(doc, "images.0"), "role", "combined");
    assert_int_equal(st_report_validate(doc, &err), 0);
    st_rnode *twin = st_rseq_add_map(st_rmap_seq(doc, "images"));
    st_rmap_str(twin, "role", "combined");
    st_rmap_str(twin, "path", "other.bin");
    st_rmap_int(twin, "size", 4);
    st_rmap_int(twin, "load_addr", 0);
    st_rmap_str(twin, "sha256", "fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c");
    st_rmap_str(twin, "sha1_padded", "0123456789012345678901234567890123456789");
    expect_invalid(doc, "images.1.role: 'combined' is images.0's role too");
    st_rmap_str(twin, "role", "module");
    assert_int_equal(st_report_validate(doc, &err), 0);

    st_rmap_str(st_rfind(doc, "images.0"), "sha256", "abc");
    expect_invalid(doc, "images.0.sha256");
    st_rmap_str(st_rfind(doc, "images.0"), "sha256",
                "fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c");
    st_rmap_str(st_rfind(doc, "run"), "started", "yesterday");
    expect_invalid(doc, "run.started");
    st_rmap_time(st_rfind(doc, "run"), "started", WALL_US);
    st_rmap_del(st_rfind(doc, "run"), "finished");
    expect_invalid(doc, "run.finished");
    st_rmap_str(doc, "verdict", "incomplete"); /* an unfinished run may lack it */
    assert_int_equal(st_report_validate(doc, &err), 0);
    st_rmap_del(st_rfind(doc, "run"), "duration_ms");
    assert_int_equal(st_report_validate(doc, &err), 0);
    st_rmap_time(st_rfind(doc, "run"), "finished", WALL_US);
    st_rmap_str(doc, "verdict", "pass");
    expect_invalid(doc, "run.duration_ms: missing");
    st_rmap_ms(st_rfind(doc, "run"), "duration_ms", 1000);
    assert_int_equal(st_report_validate(doc, &err), 0);
    st_rmap_del(doc, "device_errors");
    expect_invalid(doc, "device_errors: missing");
    st_rmap_seq(doc, "device_errors");
    st_rmap_str(st_rmap_map(doc, "fixture"), "backend", "gpio-sim");
    expect_invalid(doc, "fixture.backend");
    st_rmap_str(st_rmap_map(doc, "fixture"), "backend", "virtual");

    st_rmap_del(doc, "steps");
    expect_invalid(doc, "steps: missing");
    st_rmap_str(doc, "steps", "none");
    expect_invalid(doc, "steps: expected a list");
    st_rmap_seq(doc, "steps");
    assert_int_equal(st_report_validate(doc, &err), 0);
    st_rseq_add_map(st_rmap_seq(doc, "steps"));
    expect_invalid(doc, "steps.0.name: missing");

    st_rmap_int(doc, "schema", 2);
    expect_invalid(doc, "schema");
    st_report_free(doc);

    /* A fresh document is missing everything. */
    doc = st_report_new();
    expect_invalid(doc, "station: missing");
    st_report_free(doc);
}

static void expect_parse_error(const char *yaml, const char *needle)
{
    st_rnode *doc = (st_rnode *)1;
    st_err err = { 0 };
    int rc = st_report_parse(yaml, strlen(yaml), "bad.yaml", &doc, &err);
    assert_true(rc < 0);
    assert_null(doc);
    if (!strstr(err.msg, needle))
        fail_msg("expected '%s' in '%s'", needle, err.msg);
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_parse_error("a: 1\nb: [1, 2\nc: d\n", "bad.yaml:");
    expect_parse_error("a: 1\nb: 2\n  c: 3\n", "bad.yaml:3:");
    /* One rule for every YAML file the station reads (station/core/yamldoc). */
    expect_parse_error("a: 1\nb: 2\na: 3\n", "bad.yaml:3: duplicate key \"a\" (first at line 1)");
    expect_parse_error("a: &x 1\nb: *x\n", "aliases");
    expect_parse_error("- 1\n- 2\n", "must be a map");
    expect_parse_error("just text\n", "must be a map");
    expect_parse_error("a: 1\n---\nb: 2\n", "bad.yaml:2: a second YAML document is not allowed");
    expect_parse_error("", "empty");
    expect_parse_error("? [a]\n: 1\n", "key");
    char deep[400] = "";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    expect_parse_error(deep, "bad.yaml:1:");
    char deep2[400] = "a: ";
    for (int i = 0; i < 40; i++)
        strcat(deep2, "[");
    for (int i = 0; i < 40; i++)
        strcat(deep2, "]");
    expect_parse_error(deep2, "nested too deeply");
    /* Very deep nesting is refused without exhausting the stack (the YAML loader does not
     * recurse; the conversion stops at ST_REPORT_DEPTH_MAX). */
    size_t dn = 200000;
    char *deep3 = malloc(2 * dn + 8);
    assert_non_null(deep3);
    memcpy(deep3, "a: ", 3);
    memset(deep3 + 3, '[', dn);
    memset(deep3 + 3 + dn, ']', dn);
    deep3[3 + 2 * dn] = '\0';
    expect_parse_error(deep3, "bad.yaml:1:");
    free(deep3);

    /* Errors from a file name the file. */
    st_rnode *doc = NULL;
    st_err err;
    assert_int_equal(st_report_load("/nonexistent/r.yaml", &doc, &err), ST_ERR_NOTFOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/r.yaml"));
    char *dir = make_tmpdir();
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/broken.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("schema: 1\nverdict: pass\nsteps: [\n", f);
    fclose(f);
    assert_int_equal(st_report_load(path, &doc, &err), ST_ERR_INVAL);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, ":4:"));
    rm_rf(dir);
    free(dir);

    /* Resolution of plain scalars, and quoted ones staying strings. */
    const char *y = "i: 12\nh: 0x1F\nf: 1.5e3\nb: true\nn: ~\ns: '12'\nt: 2026-11-23T17:42:57Z\n";
    assert_int_equal(st_report_parse(y, strlen(y), "ok", &doc, &err), 0);
    assert_int_equal(st_rnode_type(st_rget(doc, "i")), ST_RINT);
    assert_int_equal(st_rnode_type(st_rget(doc, "h")), ST_RINT);
    assert_int_equal(st_rnode_type(st_rget(doc, "f")), ST_RFLOAT);
    assert_int_equal(st_rnode_type(st_rget(doc, "b")), ST_RBOOL);
    assert_int_equal(st_rnode_type(st_rget(doc, "n")), ST_RNULL);
    assert_int_equal(st_rnode_type(st_rget(doc, "s")), ST_RSTR);
    assert_int_equal(st_rnode_type(st_rget(doc, "t")), ST_RSTR);
    long long v;
    assert_int_equal(st_rget_int(doc, "h", &v), 0);
    assert_int_equal(v, 31);
    st_report_free(doc);
}

static void test_render(void **state)
{
    (void)state;
    st_rnode *doc = NULL;
    st_err err;
    assert_int_equal(st_report_load(EXAMPLE, &doc, &err), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(st_report_render(doc, f, false), 0);
    fclose(f);
    /* Verdict first. */
    assert_int_equal(strncmp(buf, "verdict:  PASS\n", 15), 0);
    const char *names[] = { "enter-bootloader", "flash", "verify", "start", "wait-for-app",
                            "208A31574253", "combined", "35984" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strstr(buf, names[i]))
            fail_msg("'%s' missing from:\n%s", names[i], buf);
    assert_null(strstr(buf, "\033"));
    assert_null(strstr(buf, "cause:"));
    free(buf);
    st_report_free(doc);

    /* A failed report with hostile strings: the cause is shown, nothing unprintable
     * reaches the terminal except the colour codes asked for. */
    doc = build_report("port");
    buf = NULL;
    f = open_memstream(&buf, &len);
    assert_int_equal(st_report_render(doc, f, true), 0);
    fclose(f);
    assert_non_null(strstr(buf, "FAIL"));
    assert_non_null(strstr(buf, "\033[1;31m"));
    assert_non_null(strstr(buf, "cause:    flash: dfu: write 0x08004000"));
    assert_non_null(strstr(buf, "../../x?: y"));
    assert_non_null(strstr(buf, "errPROG at 0x08004000"));
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\033' && buf[i + 1] == '[') /* our colour codes */
            continue;
        if (c != '\n' && (c < 0x20 || c >= 0x7f))
            fail_msg("byte 0x%02x at %zu in rendered output", c, i);
    }
    free(buf);
    st_report_free(doc);
}

/* The engine's pattern: rewrite after every step; a run that dies leaves "incomplete". */
static void test_incremental_run(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    st_rnode *full = NULL;
    st_err err;
    assert_int_equal(st_report_load(EXAMPLE, &full, &err), 0);
    st_rnode *doc = st_report_new();
    /* Copy the header fields by hand, as the engine would set them. */
    st_rnode *m = st_rmap_map(doc, "station");
    st_rmap_str(m, "name", "s");
    st_rmap_str(m, "version", "0.1.0");
    st_rmap_str(m, "host", "h");
    m = st_rmap_map(doc, "run");
    st_rmap_str(m, "id", "r");
    st_rmap_time(m, "started", WALL_US);
    st_rmap_ms(m, "duration_ms", 0);
    st_rmap_str(doc, "operator", "unknown");
    m = st_rmap_map(doc, "fixture");
    st_rmap_str(m, "name", "virtual");
    st_rmap_str(m, "path", "");
    st_rmap_str(m, "backend", "virtual");
    m = st_rmap_map(doc, "slot");
    st_rmap_int(m, "id", 0);
    st_rmap_str(m, "name", "slot-0");
    m = st_rmap_map(doc, "job");
    st_rmap_str(m, "name", "j");
    st_rmap_str(m, "path", "j.yaml");
    st_rmap_str(m, "sha256", st_rget_str(full, "job.sha256"));
    st_rmap_str(st_rmap_map(doc, "unit"), "identity", "208A31574253");
    st_rmap_seq(doc, "images");
    st_rnode *steps = st_rmap_seq(doc, "steps");
    st_rmap_seq(doc, "device_errors");
    st_rmap_str(doc, "verdict", "incomplete");
    st_rmap_str(doc, "cause", "run stopped before it finished");

    char path[PATH_MAX];
    assert_int_equal(st_report_make_path(dir, "208A31574253", 0, WALL_US, path, sizeof(path),
                                         &err), 0);
    for (size_t i = 0; i < st_rnode_len(st_rget(full, "steps")); i++) {
        char p[32];
        snprintf(p, sizeof(p), "steps.%zu", i);
        st_rnode *s = st_rseq_add_map(steps);
        st_rmap_str(s, "name", st_rget_str(full, strcat(p, ".name")));
        st_rmap_time(s, "started", WALL_US + i * 1000u);
        st_rmap_ms(s, "duration_ms", 1000u);
        st_rmap_str(s, "outcome", "pass");
        st_rmap_int(s, "attempts", 1);
        st_rmap_ms(st_rmap_map(doc, "run"), "duration_ms", (i + 1) * 1000u);
        assert_int_equal(st_report_write_atomic(doc, path, &err), 0);
        st_rnode *back = NULL;
        assert_int_equal(st_report_load(path, &back, &err), 0);
        if (st_report_validate(back, &err))
            fail_msg("after step %zu: %s", i, err.msg);
        assert_string_equal(st_rget_str(back, "verdict"), "incomplete");
        assert_int_equal(st_rnode_len(st_rget(back, "steps")), i + 1);
        st_report_free(back);
    }
    st_rmap_time(st_rmap_map(doc, "run"), "finished", WALL_US + 10000000u);
    st_rmap_str(doc, "verdict", "pass");
    st_rmap_del(doc, "cause");
    assert_int_equal(st_report_write_atomic(doc, path, &err), 0);
    assert_int_equal(count_entries(dir), 1);
    st_rnode *back = NULL;
    assert_int_equal(st_report_load(path, &back, &err), 0);
    assert_int_equal(st_report_validate(back, &err), 0);
    assert_string_equal(st_rget_str(back, "steps.4.name"), "wait-for-app");
    st_report_free(back);
    st_report_free(doc);
    st_report_free(full);
    rm_rf(dir);
    free(dir);
}

/* Damaged files (bytes flipped, inserted, deleted, cut) must never crash the reader; what
 * it accepts must survive emit + parse unchanged. Deterministic, so a failure repeats. */
static void test_parse_mutations(void **state)
{
    (void)state;
    size_t len;
    char *orig = st_test_read_file(EXAMPLE, &len);
    assert_non_null(orig);
    char *buf = malloc(len + 64);
    assert_non_null(buf);
    static const char alphabet[] = ":-?#&*![]{}'\"\\\n\t |>%@`,.0x\x01\xc3\xff";
    uint32_t seed = 12345u;
    int accepted = 0;
    for (int round = 0; round < 3000; round++) {
        memcpy(buf, orig, len);
        size_t n = len;
        int edits = 1 + round % 4;
        for (int e = 0; e < edits && n > 1; e++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            char c = alphabet[(seed >> 8) % (sizeof(alphabet) - 1)];
            switch ((seed >> 20) % 4) {
            case 0: buf[at] = c; break;
            case 1: memmove(buf + at + 1, buf + at, n - at); buf[at] = c; n++; break;
            case 2: memmove(buf + at, buf + at + 1, n - at - 1); n--; break;
            default: n = at + 1; break;
            }
        }
        st_rnode *doc = NULL;
        st_err err;
        if (st_report_parse(buf, n, "m", &doc, &err) != 0) {
            assert_null(doc);
            assert_true(strncmp(err.msg, "m", 1) == 0);
            continue;
        }
        accepted++;
        (void)st_report_validate(doc, &err);
        char *out = NULL;
        size_t olen = 0;
        if (st_report_emit(doc, &out, &olen, &err) != 0)
            fail_msg("round %d: emit: %s", round, err.msg);
        st_rnode *again = NULL;
        if (st_report_parse(out, olen, "again", &again, &err) != 0)
            fail_msg("round %d: re-parse: %s\n%s", round, err.msg, out);
        assert_same_tree(doc, again, "");
        char *shown = NULL;
        size_t slen = 0;
        FILE *f = open_memstream(&shown, &slen);
        assert_non_null(f);
        assert_int_equal(st_report_render(doc, f, round % 2), 0);
        fclose(f);
        free(shown);
        st_report_free(again);
        st_report_free(doc);
        free(out);
    }
    assert_true(accepted > 100); /* the mutations do reach the emitter */
    free(buf);
    free(orig);
}

/* Known answer (design.md 5, seed 001): the Katapult SHA-1 of the padded Cartographer
 * application, and a synthetic image checked against a hand-padded buffer. */
static void test_add_image(void **state)
{
    (void)state;
    st_rnode *doc = st_report_new();
    uint8_t data[100];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7u);
    st_image *img = NULL;
    st_err err;
    assert_int_equal(st_image_from_memory("mem.bin", data, sizeof(data), 0x08002000u, &img,
                                          &err), 0);
    st_rnode *m = st_report_add_image(doc, "application", img);
    assert_non_null(m);
    uint8_t padded[128];
    memset(padded, 0xff, sizeof(padded));
    memcpy(padded, data, sizeof(data));
    uint8_t sum[ST_SHA1_LEN];
    char hex[2 * ST_SHA1_LEN + 1];
    st_sha1(padded, sizeof(padded), sum);
    st_hex(sum, ST_SHA1_LEN, true, hex);
    assert_string_equal(st_rget_str(doc, "images.0.sha1_padded"), hex);
    assert_string_equal(st_rget_str(doc, "images.0.load_addr"), "0x08002000");
    assert_string_equal(st_rget_str(doc, "images.0.size"), "100");
    assert_string_equal(st_rget_str(doc, "images.0.sha256"), img->sha256_hex);
    assert_string_equal(st_rget_str(doc, "images.0.role"), "application");
    st_image_free(img);

    const char *fw = STATION_SHARED_DIR
        "/firmware/cartographer-v4/6.0.0/CartographerV4_6.0.0_USB_lite_8kib_offset.bin";
    if (access(fw, R_OK) != 0) {
        st_report_free(doc);
        skip(); /* real firmware (../shared) absent: the known answer cannot be checked */
    }
    assert_int_equal(st_image_load(fw, 0x08002000u, &img, &err), 0);
    assert_non_null(st_report_add_image(doc, "application", img));
    assert_string_equal(st_rget_str(doc, "images.1.sha1_padded"),
                        "FCA6E37F4D9F344E7AF18C7609AEBBCFD6E597E0");
    assert_string_equal(st_rget_str(doc, "images.1.size"), "27792");
    st_image_free(img);
    st_report_free(doc);
}

/* Issue 7: many keys. The reader used to compare each new key with every earlier one
 * (80,000 keys: about 20 s). It must read every key, keep their order, find each one, and
 * still catch a duplicate however far apart the two are. Time is printed, not asserted. */
#define MANY 80000
static void test_many_keys(void **state)
{
    (void)state;
    size_t cap = (size_t)MANY * 40 + 4096;
    char *y = malloc(cap);
    assert_non_null(y);
    size_t n = (size_t)snprintf(y, cap, "schema: 1\nunit:\n");
    for (int i = 0; i < MANY; i++)
        n += (size_t)snprintf(y + n, cap - n, "  k%05d: %d\n", i, i * 3);
    n += (size_t)snprintf(y + n, cap - n, "seq: [a, b]\n");
    uint64_t t0 = st_now_us();
    st_rnode *doc = NULL;
    st_err err = { 0 };
    if (st_report_parse(y, n, "many.yaml", &doc, &err) != 0)
        fail_msg("%s", err.msg);
    uint64_t t_parse = st_now_us() - t0;
    const st_rnode *unit = st_rget(doc, "unit");
    assert_int_equal(st_rnode_len(unit), MANY);
    for (int i = 0; i < MANY; i += 997) {
        char path[32];
        long long v;
        snprintf(path, sizeof path, "unit.k%05d", i);
        assert_int_equal(st_rget_int(doc, path, &v), 0);
        assert_int_equal(v, i * 3);
        char key[16];
        snprintf(key, sizeof key, "k%05d", i);
        assert_string_equal(st_rnode_key(st_rnode_child(unit, (size_t)i)), key);
    }
    assert_string_equal(st_rget_str(doc, "seq.1"), "b");
    /* Changing the big map keeps every lookup right: replace, delete, add. */
    st_rnode *u = st_rfind(doc, "unit");
    st_rmap_str(u, "k40000", "replaced");
    st_rmap_del(u, "k00001");
    st_rmap_del(u, "k79999");
    st_rmap_int(u, "new", 7);
    assert_int_equal(st_rnode_len(u), MANY - 1);
    assert_null(st_rget(doc, "unit.k00001"));
    assert_null(st_rget(doc, "unit.k79999"));
    assert_string_equal(st_rget_str(doc, "unit.k40000"), "replaced");
    assert_string_equal(st_rget_str(doc, "unit.k00002"), "6");
    assert_string_equal(st_rget_str(doc, "unit.k79998"), "239994");
    assert_string_equal(st_rget_str(doc, "unit.new"), "7");
    assert_string_equal(st_rnode_key(st_rnode_child(u, 1)), "k00002");
    /* Round trip through the writer. */
    t0 = st_now_us();
    char *out = NULL;
    size_t olen = 0;
    assert_int_equal(st_report_emit(doc, &out, &olen, &err), 0);
    uint64_t t_emit = st_now_us() - t0;
    st_rnode *again = NULL;
    if (st_report_parse(out, olen, "again", &again, &err) != 0)
        fail_msg("%s", err.msg);
    assert_same_tree(doc, again, "");
    st_report_free(again);
    free(out);
    st_report_free(doc);

    /* A duplicate 79,999 keys after the first one is still an error, at its line. */
    n -= strlen("seq: [a, b]\n");
    n += (size_t)snprintf(y + n, cap - n, "  k00000: again\n");
    doc = (st_rnode *)1;
    assert_int_equal(st_report_parse(y, n, "dup.yaml", &doc, &err), ST_ERR_INVAL);
    assert_null(doc);
    char want[96];
    snprintf(want, sizeof want, "dup.yaml:%d: unit: duplicate key \"k00000\" (first at line 3)",
             MANY + 3);
    if (!strstr(err.msg, want))
        fail_msg("want \"%s\" in \"%s\"", want, err.msg);
    free(y);
    print_message("%d keys: parse %.1f ms, emit %.1f ms\n", MANY, t_parse / 1000.0,
                  t_emit / 1000.0);
}

/* st_report_parse reads the common report in one pass and leaves the rest to the general
 * path (st_report_parse_full): on every input both must accept or refuse it together and
 * read the same document (fuzz_report checks the same on random inputs). */
static void expect_same_reading(const char *yaml, size_t len)
{
    st_rnode *a = NULL, *b = NULL;
    st_err ea, eb;
    int ra = st_report_parse(yaml, len, "x.yaml", &a, &ea);
    int rb = st_report_parse_full(yaml, len, "x.yaml", &b, &eb);
    if ((ra == 0) != (rb == 0))
        fail_msg("one-pass %d, general %d on:\n%.*s", ra, rb, (int)len, yaml);
    if (ra != 0) {
        assert_string_equal(ea.msg, eb.msg); /* errors always come from the general path */
        return;
    }
    char *x = NULL, *y = NULL;
    size_t xl = 0, yl = 0;
    assert_int_equal(st_report_emit(a, &x, &xl, &ea), 0);
    assert_int_equal(st_report_emit(b, &y, &yl, &eb), 0);
    if (xl != yl || memcmp(x, y, xl) != 0)
        fail_msg("one-pass read:\n%.*s\ngeneral read:\n%.*s", (int)xl, x, (int)yl, y);
    free(x);
    free(y);
    st_report_free(a);
    st_report_free(b);
}

static void test_one_pass_reader(void **state)
{
    (void)state;
    FILE *f = fopen(EXAMPLE, "r");
    assert_non_null(f);
    static char ex[1 << 16];
    size_t n = fread(ex, 1, sizeof ex - 1, f);
    fclose(f);
    expect_same_reading(ex, n);
    static const char *const cases[] = {
        "a: 1\nb: '2'\nc: \"3\"\nd: [x, 0x1F, 1.5, .nan, true, ~, '']\ne: {f: g}\n",
        "---\na: !!str 12\nb: &x 1\n...\n",            /* tags and anchors: both ignore them */
        "'q': 1\n\"r\": [ {s: t}, [u] ]\n'': empty key\n",
        "a: \"caf\\xE9 \\u00e9\"\nb: \"\\x01\\n: y\"\n", /* not ASCII: the general path */
        "a: |\n  two\n  lines\nb: >\n  folded\n",
        "a: \"nul\\0inside\"\n",                       /* a NUL inside: the general path */
        "a: 1\nb: 2\na: 3\n",                            /* errors: the general path's words */
        "a: &x 1\nb: *x\n",
        "- 1\n",
        "a: 1\n---\nb: 2\n",
        "a: [1, 2\n",
        "",
        "a: [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]\n", /* deeper than the one pass takes */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_same_reading(cases[i], strlen(cases[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_model),
        cmocka_unit_test(test_make_path),
        cmocka_unit_test(test_atomic_write),
        cmocka_unit_test(test_example_validates),
        cmocka_unit_test(test_validate_catches),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_one_pass_reader),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_incremental_run),
        cmocka_unit_test(test_parse_mutations),
        cmocka_unit_test(test_add_image),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
