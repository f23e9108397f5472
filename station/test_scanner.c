/* Tests of the barcode scanner's key decoder (US layout, Shift, Caps Lock, Enter, keypad,
 * autorepeat, dropped events, overlong scans) and of opening a scanner that is not there
 * or not an input device. The grab and reads of a real input device are in the rig
 * (hil-tests/rig/scenarios/scanner.sh: a uinput keyboard typing into station produce). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <linux/input.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "station/core/testutil.h"
#include "station/scanner.h"

/* The key that types c on a US keyboard, and whether it needs Shift. */
static unsigned key_for(char c, int *shift)
{
    static const char *const rows[] = { "1234567890-=", "qwertyuiop[]", "asdfghjkl;'`",
                                        "\\zxcvbnm,./" };
    static const char *const srows[] = { "!@#$%^&*()_+", "QWERTYUIOP{}", "ASDFGHJKL:\"~",
                                         "|ZXCVBNM<>?" };
    static const unsigned first[] = { KEY_1, KEY_Q, KEY_A, KEY_BACKSLASH };
    *shift = 0;
    if (c == ' ')
        return KEY_SPACE;
    for (int r = 0; r < 4; r++) {
        const char *p = strchr(rows[r], c);
        if (p && c)
            return first[r] + (unsigned)(p - rows[r]);
        p = strchr(srows[r], c);
        if (p && c) {
            *shift = 1;
            return first[r] + (unsigned)(p - srows[r]);
        }
    }
    fail_msg("no key for '%c'", c);
    return 0;
}

/* Type text as a scanner does (Shift pressed around capitals, a SYN after each event),
 * then Enter; returns what the decoder gave at Enter (or "" when it gave nothing). */
static int feed(st_keyscan *k, unsigned type, unsigned code, int value, char *out, size_t cap)
{
    int r = st_keyscan_feed(k, type, code, value, out, cap);
    assert_int_equal(st_keyscan_feed(k, EV_SYN, SYN_REPORT, 0, out, cap), 0);
    return r;
}

static int type_text(st_keyscan *k, const char *text, char *out, size_t cap)
{
    int got = 0;
    for (const char *c = text; *c; c++) {
        int shift;
        unsigned key = key_for(*c, &shift);
        if (shift)
            got |= feed(k, EV_KEY, KEY_LEFTSHIFT, 1, out, cap);
        got |= feed(k, EV_KEY, key, 1, out, cap);
        got |= feed(k, EV_KEY, key, 0, out, cap);
        if (shift)
            got |= feed(k, EV_KEY, KEY_LEFTSHIFT, 0, out, cap);
    }
    assert_int_equal(got, 0); /* nothing ends before Enter */
    return feed(k, EV_KEY, KEY_ENTER, 1, out, cap) | feed(k, EV_KEY, KEY_ENTER, 0, out, cap);
}

static void test_us_layout(void **state)
{
    (void)state;
    st_keyscan k;
    st_keyscan_reset(&k);
    char out[ST_KEYSCAN_MAX];
    const char *all = "CV4-000123 abc XYZ !@#$%^&*()_+-=[]{};:'\",.<>/?\\|`~";
    assert_int_equal(type_text(&k, all, out, sizeof out), 1);
    assert_string_equal(out, all);
    /* The next scan starts empty; Shift was released. */
    assert_int_equal(type_text(&k, "sn-7", out, sizeof out), 1);
    assert_string_equal(out, "sn-7");
}

static void test_modifiers(void **state)
{
    (void)state;
    st_keyscan k;
    st_keyscan_reset(&k);
    char out[32];
    /* Caps Lock inverts letters only; Shift with Caps Lock gives lower case. */
    feed(&k, EV_KEY, KEY_CAPSLOCK, 1, out, sizeof out);
    feed(&k, EV_KEY, KEY_CAPSLOCK, 0, out, sizeof out);
    feed(&k, EV_KEY, KEY_A, 1, out, sizeof out);
    feed(&k, EV_KEY, KEY_1, 1, out, sizeof out);
    feed(&k, EV_KEY, KEY_RIGHTSHIFT, 1, out, sizeof out);
    feed(&k, EV_KEY, KEY_B, 1, out, sizeof out);
    feed(&k, EV_KEY, KEY_RIGHTSHIFT, 0, out, sizeof out);
    feed(&k, EV_KEY, KEY_CAPSLOCK, 1, out, sizeof out);
    feed(&k, EV_KEY, KEY_C, 1, out, sizeof out);
    /* Autorepeat types again; a release, Ctrl and F1 type nothing; the keypad types
     * digits; keypad Enter ends the scan. */
    feed(&k, EV_KEY, KEY_C, 2, out, sizeof out);
    feed(&k, EV_KEY, KEY_C, 0, out, sizeof out);
    feed(&k, EV_KEY, KEY_LEFTCTRL, 1, out, sizeof out);
    feed(&k, EV_KEY, KEY_F1, 1, out, sizeof out);
    feed(&k, EV_KEY, KEY_LEFTCTRL, 0, out, sizeof out);
    feed(&k, EV_KEY, KEY_KP7, 1, out, sizeof out);
    feed(&k, EV_MSC, MSC_SCAN, 0x70024, out, sizeof out);
    assert_int_equal(feed(&k, EV_KEY, KEY_KPENTER, 1, out, sizeof out), 1);
    assert_string_equal(out, "A1bcc7");
}

static void test_empty_dropped_long(void **state)
{
    (void)state;
    st_keyscan k;
    st_keyscan_reset(&k);
    char out[ST_KEYSCAN_MAX];
    /* Enter alone is no scan. */
    assert_int_equal(feed(&k, EV_KEY, KEY_ENTER, 1, out, sizeof out), 0);
    /* Events lost in the middle (SYN_DROPPED): the scan is dropped, the next one is whole. */
    feed(&k, EV_KEY, KEY_1, 1, out, sizeof out);
    assert_int_equal(st_keyscan_feed(&k, EV_SYN, SYN_DROPPED, 0, out, sizeof out), 0);
    assert_int_equal(type_text(&k, "23", out, sizeof out), 0);
    assert_int_equal(type_text(&k, "45", out, sizeof out), 1);
    assert_string_equal(out, "45");
    /* Longer than any barcode: dropped whole, not cut. */
    char lng[ST_KEYSCAN_MAX + 10];
    memset(lng, '7', sizeof lng - 1);
    lng[sizeof lng - 1] = '\0';
    assert_int_equal(type_text(&k, lng, out, sizeof out), 0);
    /* The longest kept: ST_KEYSCAN_MAX - 1 characters. */
    lng[ST_KEYSCAN_MAX - 1] = '\0';
    assert_int_equal(type_text(&k, lng, out, sizeof out), 1);
    assert_int_equal(strlen(out), ST_KEYSCAN_MAX - 1);
    /* A small buffer gets the code cut to fit, NUL-terminated. */
    char small[5];
    assert_int_equal(type_text(&k, "CV4-000123", small, sizeof small), 1);
    assert_string_equal(small, "CV4-");
    /* One byte holds no code: no scan (fuzz_keyscan found an empty one returned). */
    char one[1];
    assert_int_equal(type_text(&k, "CV4-1", one, sizeof one), 0);
}

static void test_open_errors(void **state)
{
    (void)state;
    st_scanner *s = NULL;
    st_err e;
    assert_int_equal(st_scanner_open("/nonexistent/event9", NULL, &s, &e), ST_ERR_NOTFOUND);
    assert_null(s);
    assert_non_null(strstr(e.msg, "/nonexistent/event9"));
    /* A character device that is not an input device. */
    int rc = st_scanner_open("/dev/null", NULL, &s, &e);
    assert_true(rc < 0);
    assert_non_null(strstr(e.msg, "/dev/null: not an input event device"));
    /* By name, in a directory without such a device. */
    char dir[256];
    assert_non_null(mkdtemp(st_test_tmpl(dir, sizeof dir, "test-scanner")));
    assert_int_equal(st_scanner_open("Barcode Scanner 9000", dir, &s, &e), ST_ERR_NOTFOUND);
    assert_non_null(strstr(e.msg, "no input device named \"Barcode Scanner 9000\""));
    rmdir(dir);
    st_scanner_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_us_layout),
        cmocka_unit_test(test_modifiers),
        cmocka_unit_test(test_empty_dropped_long),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
