/* Entry-sequence tests: stm32flash -i strings (the seed's, the man page's), bad strings with
 * their carets, canonical text, built-in plans, and the runner's order and pauses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "protocols/an3155/entry.h"
#include "station/core/clock.h"

static void test_seed_string(void **state)
{
    (void)state;
    st_entry_plan p;
    st_err err = {0};
    /* Seed 002: GPIO2 low, 100 ms, GPIO1 low, 100 ms, GPIO1 high : GPIO2 high, 100 ms,
     * GPIO1 low, 300 ms, GPIO1 high (reference 4.3 worked example). */
    assert_int_equal(st_entry_parse("-2,-1,1:2,-1,,,1", &p, &err), 0);
    assert_true(p.has_exit);
    assert_int_equal(p.entry.n, 5);
    assert_int_equal(p.entry.steps[0].kind, ST_ENTRY_GPIO);
    assert_int_equal(p.entry.steps[0].gpio, 2);
    assert_int_equal(p.entry.steps[0].level, 0);
    assert_int_equal(p.entry.steps[1].kind, ST_ENTRY_PAUSE);
    assert_int_equal(p.entry.steps[1].pause_ms, 100);
    assert_int_equal(p.entry.steps[2].gpio, 1);
    assert_int_equal(p.entry.steps[2].level, 0);
    assert_int_equal(p.entry.steps[3].pause_ms, 100);
    assert_int_equal(p.entry.steps[4].gpio, 1);
    assert_int_equal(p.entry.steps[4].level, 1);
    assert_int_equal(p.exit.n, 5);
    assert_int_equal(p.exit.steps[0].gpio, 2);
    assert_int_equal(p.exit.steps[0].level, 1);
    assert_int_equal(p.exit.steps[3].kind, ST_ENTRY_PAUSE);
    assert_int_equal(p.exit.steps[3].pause_ms, 300);
    assert_int_equal(p.exit.steps[4].level, 1);
    char buf[64];
    assert_string_equal(st_entry_seq_str(&p.entry, buf, sizeof buf), "-2,-1,1");
    assert_string_equal(st_entry_seq_str(&p.exit, buf, sizeof buf), "2,-1,,,1");
    assert_string_equal(p.text, "-2,-1,1:2,-1,,,1");
}

static void test_good_strings(void **state)
{
    (void)state;
    st_entry_plan p;
    st_err err = {0};
    char buf[96];
    /* Man page STM32W example: '&' is no pause. */
    assert_int_equal(st_entry_parse("-3&-2,2:3&-2,,,2", &p, &err), 0);
    assert_int_equal(p.entry.n, 4);
    assert_string_equal(st_entry_seq_str(&p.entry, buf, sizeof buf), "-3&-2,2");
    assert_string_equal(st_entry_seq_str(&p.exit, buf, sizeof buf), "3&-2,,,2");
    /* Modem lines and BREAK, any case. */
    assert_int_equal(st_entry_parse("-rts&dtr,brk,-DTR", &p, &err), 0);
    assert_int_equal(p.entry.steps[0].kind, ST_ENTRY_RTS);
    assert_int_equal(p.entry.steps[0].level, 0);
    assert_int_equal(p.entry.steps[1].kind, ST_ENTRY_DTR);
    assert_int_equal(p.entry.steps[3].kind, ST_ENTRY_BRK);
    assert_int_equal(p.entry.steps[5].kind, ST_ENTRY_DTR);
    assert_false(p.has_exit);
    /* Fixture line names (our extension); a trailing ':' is an empty exit. */
    assert_int_equal(st_entry_parse("boot0&-nrst,nrst:", &p, &err), 0);
    assert_int_equal(p.entry.steps[0].kind, ST_ENTRY_LINE);
    assert_string_equal(p.entry.steps[0].name, "boot0");
    assert_true(p.has_exit);
    assert_int_equal(p.exit.n, 0);
    /* Only an exit; pure delays; delimiters are optional after a pause. */
    assert_int_equal(st_entry_parse(":,,5", &p, &err), 0);
    assert_int_equal(p.entry.n, 0);
    assert_int_equal(p.exit.n, 2);
    assert_int_equal(p.exit.steps[0].pause_ms, 200);
    assert_int_equal(st_entry_parse(",,,", &p, &err), 0);
    assert_int_equal(p.entry.n, 1);
    assert_int_equal(p.entry.steps[0].pause_ms, 300);
    assert_int_equal(st_entry_parse("9999", &p, &err), 0);
}

/* Error text: cause + column, then the string, then a caret under column. */
static void expect_caret(const char *text, size_t col, const char *cause)
{
    st_entry_plan p;
    st_err err = {0};
    int rc = st_entry_parse(text, &p, &err);
    if (rc != ST_ERR_INVAL)
        fail_msg("\"%s\" was accepted", text);
    if (!strstr(err.msg, cause))
        fail_msg("\"%s\": message lacks \"%s\": %s", text, cause, err.msg);
    char want[512];
    snprintf(want, sizeof want, "at column %zu\n  %s\n  %*s^", col + 1, text, (int)col, "");
    if (!strstr(err.msg, want))
        fail_msg("\"%s\": expected caret at %zu, got:\n%s", text, col, err.msg);
}

static void test_bad_strings(void **state)
{
    (void)state;
    expect_caret("-2,-1;1:2,-1,,,1", 5, "';' is not a signal or delimiter");
    expect_caret("-2,--1,1", 4, "'-' must be followed by a signal");
    expect_caret("-2,-1,1:2:1", 9, "a second ':'");
    expect_caret("2x,1", 1, "a GPIO number ends in a letter");
    expect_caret("-2 -1", 2, "' ' is not a signal or delimiter");
    expect_caret("&1", 0, "'&' must follow a signal");
    expect_caret("1&&2", 2, "'&' must follow a signal");
    expect_caret("rts dtr", 3, "' ' is not a signal or delimiter");
    expect_caret("-2,-_1", 4, "'-' must be followed by a signal");
    expect_caret("12345", 0, "GPIO number too large");
    expect_caret("-", 1, "'-' must be followed by a signal");
    expect_caret("1,-", 3, "'-' must be followed by a signal");
    expect_caret("rts-dtr", 3, "expected ',', '&' or ':' after a signal");
    st_entry_plan p;
    st_err err = {0};
    assert_int_equal(st_entry_parse("", &p, &err), ST_ERR_INVAL);
    assert_non_null(strstr(err.msg, "empty"));
    assert_int_equal(st_entry_parse(NULL, &p, &err), ST_ERR_INVAL);
    /* Control characters are shown as '?' so the caret still lines up. */
    assert_int_equal(st_entry_parse("1,\x1b[2", &p, &err), ST_ERR_INVAL);
    assert_non_null(strstr(err.msg, "  1,?[2\n    ^"));
    /* Too long, too many steps. */
    char big[200];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(st_entry_parse(big, &p, &err), ST_ERR_INVAL);
    char many[ST_ENTRY_MAX_TEXT];
    size_t o = 0;
    for (int i = 0; i < 70 && o + 3 < sizeof many; i++) {
        many[o++] = '1';
        many[o++] = '&';
    }
    many[o - 1] = '\0';
    assert_int_equal(st_entry_parse(many, &p, &err), ST_ERR_INVAL);
    assert_non_null(strstr(err.msg, "too many steps"));
}

static void test_step_error(void **state)
{
    (void)state;
    st_entry_plan p;
    st_err err = {0};
    assert_int_equal(st_entry_parse("-2,-boot1,1", &p, &err), 0);
    assert_int_equal(st_entry_step_error(&p, &p.entry.steps[2], ST_ERR_NOTFOUND, &err,
                                         "the fixture has no line \"boot1\""),
                     ST_ERR_NOTFOUND);
    assert_int_equal(err.code, ST_ERR_NOTFOUND);
    assert_non_null(strstr(err.msg, "no line \"boot1\" at column 5\n  -2,-boot1,1\n      ^"));
}

static void test_builtin_plans(void **state)
{
    (void)state;
    st_entry_plan p;
    st_err err = {0};
    char buf[96];
    assert_int_equal(st_entry_plan_boot0_reset(20, &p, &err), 0);
    assert_string_equal(p.text, "boot0&reset,-reset:-boot0&reset,-reset");
    assert_int_equal(st_entry_plan_dtr_pulse(250, &p, &err), 0);
    assert_string_equal(st_entry_seq_str(&p.entry, buf, sizeof buf), "-dtr,,,dtr");
    assert_false(p.has_exit);
    assert_int_equal(st_entry_plan_dtr_pulse(100000, &p, &err), ST_ERR_INVAL);
}

typedef struct rec {
    char log[256];
    uint64_t t0;
    int fail_at, calls;
} rec;

static int rec_set(void *ctx, const st_entry_step *st, st_err *err)
{
    rec *r = ctx;
    r->calls++;
    if (r->calls == r->fail_at)
        return st_err_set(err, ST_ERR_IO, "line busy");
    size_t o = strlen(r->log);
    snprintf(r->log + o, sizeof r->log - o, "%s%d@%u ",
             st->kind == ST_ENTRY_GPIO ? "g" : st->kind == ST_ENTRY_BRK ? "brk" : "x",
             st->kind == ST_ENTRY_GPIO ? st->gpio * (st->level ? 1 : -1) : st->level,
             (unsigned)((st_now_us() - r->t0 + 50000) / 100000));
    return 0;
}

static void test_runner(void **state)
{
    (void)state;
    st_entry_plan p;
    st_err err = {0};
    assert_int_equal(st_entry_parse("-2,-1,1:brk&-brk&2", &p, &err), 0);
    rec r = {.t0 = st_now_us()};
    st_entry_io io = {rec_set, &r};
    assert_int_equal(st_entry_run(&p.entry, &io, &err), 0);
    /* Times in 100 ms steps: the two pauses really happen, in order. */
    assert_string_equal(r.log, "g-2@0 g-1@1 g1@2 ");
    r.log[0] = '\0';
    r.t0 = st_now_us();
    assert_int_equal(st_entry_run(&p.exit, &io, &err), 0);
    assert_string_equal(r.log, "brk1@0 g2@0 "); /* -brk is a no-op, as in stm32flash */
    rec f = {.t0 = st_now_us(), .fail_at = 2};
    io.ctx = &f;
    assert_int_equal(st_entry_run(&p.exit, &io, &err), ST_ERR_IO);
    assert_non_null(strstr(err.msg, "step 3 (GPIO 2 high): line busy"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_string),  cmocka_unit_test(test_good_strings),
        cmocka_unit_test(test_bad_strings),  cmocka_unit_test(test_step_error),
        cmocka_unit_test(test_builtin_plans), cmocka_unit_test(test_runner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
