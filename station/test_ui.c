/* Tests of the operator output (ui.c): the final line of a slot keeps its whole cause and
 * report path, and NO_COLOR / TERM=dumb turn off colour and cursor movement. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "station/ui.h"

/* What a failed run prints: a long cause whose end is the errno reason, and a report path
 * deep enough that the old 160-byte line cut both off. */
static void long_detail(char *detail, size_t cap, char *path, size_t pcap)
{
    snprintf(path, pcap, "/srv/station/reports/line-4/cartographer-v4/2026-12-01/"
                         "0A1B2C3D4E01_slot1_20261201T013300.123Z.yaml");
    snprintf(detail, cap, "step flash (attempt 3 of 3): dfu: write 0x0801F800: "
             "device reported errWRITE (status 0x03): report "
             "/srv/station/reports/line-4/tmp.1234: Read-only file system\n"
             "         report %s", path);
}

static char *capture(bool fancy, int nslots, const char *verdict, const char *detail)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    st_ui *ui = st_ui_new(f, nslots, fancy, ST_LOG_WARN);
    assert_non_null(ui);
    st_progress p;
    for (int i = 0; i < nslots; i++) {
        char label[16];
        snprintf(label, sizeof label, "slot %d", i + 1);
        st_ui_bind(ui, i, label, &p);
    }
    st_ui_step(ui, 0, "flash", 1);
    st_ui_done(ui, 0, verdict, detail);
    st_ui_free(ui);
    fclose(f);
    return buf;
}

static void test_fail_line_whole(void **state)
{
    (void)state;
    char detail[1024], path[512];
    long_detail(detail, sizeof detail, path, sizeof path);
    for (int fancy = 0; fancy < 2; fancy++) {
        char *out = capture(fancy, 1, "FAIL", detail);
        if (!strstr(out, "Read-only file system") || !strstr(out, path))
            fail_msg("%s output lost the cause's end or the report path:\n%s",
                     fancy ? "terminal" : "plain", out);
        free(out);
    }
    /* Very long causes (a whole st_err message) are kept whole too. */
    char huge[3000];
    memset(huge, 'x', sizeof huge - 40);
    snprintf(huge + sizeof huge - 40, 40, " Read-only file system");
    char *out = capture(false, 1, "FAIL", huge);
    assert_non_null(strstr(out, huge));
    free(out);
}

/* On a terminal the rows are redrawn in place: the cursor goes up by the number of lines
 * drawn, which counts the final line's second line ("report ..."): 3 lines for 2 rows
 * here, where the old code went up 2 and overwrote the line above the rows. */
static void test_redraw_counts_lines(void **state)
{
    (void)state;
    char *out = capture(true, 2, "FAIL", "cause\n         report /r.yaml");
    /* Each line of the final row is cleared before it is written. */
    assert_non_null(strstr(out, "slot 1   FAIL  cause\n\r\033[2K         report /r.yaml\n"));
    free(out);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    st_ui *ui = st_ui_new(f, 2, true, ST_LOG_WARN);
    st_progress p;
    st_ui_bind(ui, 0, "slot 1", &p);
    st_ui_bind(ui, 1, "slot 2", &p);
    st_ui_done(ui, 0, "FAIL", "cause\n         report /r.yaml");
    fflush(f);
    size_t mark = len;
    st_ui_step(ui, 1, "verify", 1);
    fflush(f);
    assert_true(len > mark);
    assert_memory_equal(buf + mark, "\033[3A", 4);
    st_ui_free(ui);
    fclose(f);
    free(buf);
}

static void test_term_caps(void **state)
{
    (void)state;
    st_ui_caps c = st_ui_caps_for(true, "xterm-256color", NULL);
    assert_true(c.cursor);
    assert_true(c.color);
    /* https://no-color.org: present and not empty turns colour off, cursor stays. */
    c = st_ui_caps_for(true, "xterm", "1");
    assert_true(c.cursor);
    assert_false(c.color);
    c = st_ui_caps_for(true, "xterm", "");
    assert_true(c.color);
    /* TERM=dumb (or no TERM): neither escapes nor cursor movement. */
    c = st_ui_caps_for(true, "dumb", NULL);
    assert_false(c.cursor);
    assert_false(c.color);
    c = st_ui_caps_for(true, NULL, NULL);
    assert_false(c.cursor);
    assert_false(c.color);
    c = st_ui_caps_for(true, "", NULL);
    assert_false(c.cursor);
    /* Not a terminal: plain. */
    c = st_ui_caps_for(false, "xterm", NULL);
    assert_false(c.cursor);
    assert_false(c.color);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fail_line_whole),
        cmocka_unit_test(test_redraw_counts_lines),
        cmocka_unit_test(test_term_caps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
