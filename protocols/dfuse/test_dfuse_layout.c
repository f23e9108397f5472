/* Tests of the DfuSe memory-layout parser (layout.c): G4, F4 and F0 strings, multiple
 * address groups, dfu-util's tolerance rules, lookups, and malformed strings. The strings
 * from PROTOCOL.md §4 are here verbatim. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/dfuse/layout.h"

static st_dfuse_layout *parse_ok(const char *s)
{
    st_dfuse_layout *l = NULL;
    st_err err = {0};
    int rc = st_dfuse_layout_parse(s, s ? strlen(s) : 0, &l, &err);
    if (rc != 0)
        fail_msg("parse \"%s\": %s", s, err.msg);
    assert_non_null(l);
    return l;
}

static void seg_is(const st_dfuse_segment *s, uint32_t start, uint64_t size, uint32_t page,
                   uint32_t count, uint8_t flags)
{
    assert_int_equal(s->start, start);
    assert_int_equal(s->size, size);
    assert_int_equal(s->page_size, page);
    assert_int_equal(s->count, count);
    assert_int_equal(s->flags, flags);
}

static void test_g431_alts(void **state)
{
    (void)state;
    st_dfuse_layout *l = parse_ok("@Internal Flash   /0x08000000/64*02Kg");
    assert_string_equal(l->name, "Internal Flash");
    assert_int_equal(l->nsegs, 1);
    seg_is(&l->segs[0], 0x08000000, 128 * 1024, 2048, 64, 7);
    assert_int_equal(l->nonstandard_multipliers, 0);
    assert_int_equal(st_dfuse_layout_page_size(l, 0x08000000), 2048);
    assert_int_equal(st_dfuse_layout_page_size(l, 0x0801FFFF), 2048);
    assert_int_equal(st_dfuse_layout_page_size(l, 0x08020000), 0);
    assert_int_equal(st_dfuse_layout_page_size(l, 0x07FFFFFF), 0);
    assert_int_equal(st_dfuse_layout_page_start(l, 0x08004123), 0x08004000);
    assert_true(st_dfuse_layout_writable(l, 0x08000000, 128 * 1024));
    assert_false(st_dfuse_layout_writable(l, 0x08000000, 128 * 1024 + 1));
    assert_false(st_dfuse_layout_writable(l, 0x08000000, 0));
    assert_int_equal(st_dfuse_layout_first_bad(l, 0x0801F000, 0x2000, ST_DFUSE_MEM_WRITABLE),
                     0x08020000);
    st_dfuse_layout_free(l);

    l = parse_ok("@Option Bytes   /0x1FFF7800/01*40Be");
    assert_string_equal(l->name, "Option Bytes");
    seg_is(&l->segs[0], 0x1FFF7800, 40, 40, 1, ST_DFUSE_MEM_READABLE | ST_DFUSE_MEM_WRITABLE);
    assert_true(st_dfuse_layout_writable(l, 0x1FFF7800, 40));
    assert_false(st_dfuse_layout_erasable(l, 0x1FFF7800, 1));
    st_dfuse_layout_free(l);

    l = parse_ok("@OTP Memory   /0x1FFF7000/01*01Ke");
    seg_is(&l->segs[0], 0x1FFF7000, 1024, 1024, 1, 5);
    st_dfuse_layout_free(l);
}

static void test_f4_strings(void **state)
{
    (void)state;
    st_dfuse_layout *l = parse_ok("@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg");
    assert_int_equal(l->nsegs, 3);
    seg_is(&l->segs[0], 0x08000000, 64 * 1024, 16384, 4, 7);
    seg_is(&l->segs[1], 0x08010000, 64 * 1024, 65536, 1, 7);
    seg_is(&l->segs[2], 0x08020000, 7 * 128 * 1024, 131072, 7, 7);
    assert_int_equal(st_dfuse_layout_page_size(l, 0x0800C000), 16384);
    assert_int_equal(st_dfuse_layout_page_size(l, 0x08010000), 65536);
    assert_int_equal(st_dfuse_layout_page_size(l, 0x080FFFFF), 131072);
    assert_int_equal(st_dfuse_layout_page_start(l, 0x08030001), 0x08020000);
    assert_int_equal(st_dfuse_layout_page_start(l, 0x08040001), 0x08040000);
    assert_true(st_dfuse_layout_writable(l, 0x08000000, 1024 * 1024));
    st_dfuse_layout_free(l);

    /* Space as multiplier: dfu-util warns "Non-valid multiplier" and assumes bytes. */
    l = parse_ok("@Option Bytes  /0x1FFFC000/01*016 g");
    seg_is(&l->segs[0], 0x1FFFC000, 16, 16, 1, 7);
    assert_int_equal(l->nonstandard_multipliers, 1);
    st_dfuse_layout_free(l);
}

static void test_f0_and_groups(void **state)
{
    (void)state;
    /* F0/F3-style strings. */
    st_dfuse_layout *l = parse_ok("@Internal Flash  /0x08000000/064*0002Kg");
    seg_is(&l->segs[0], 0x08000000, 128 * 1024, 2048, 64, 7);
    st_dfuse_layout_free(l);
    l = parse_ok("@Option Bytes  /0x1FFFF800/01*016 e");
    seg_is(&l->segs[0], 0x1FFFF800, 16, 16, 1, 5);
    st_dfuse_layout_free(l);
    /* Several /0xADDR/ groups in one string; read-only and erase-only types. */
    l = parse_ok("@Flash /0x08000000/2*16Ka,1*64Kg/0x20000000/8*1Kb ");
    assert_int_equal(l->nsegs, 3);
    seg_is(&l->segs[0], 0x08000000, 32768, 16384, 2, ST_DFUSE_MEM_READABLE);
    seg_is(&l->segs[1], 0x08008000, 65536, 65536, 1, 7);
    seg_is(&l->segs[2], 0x20000000, 8192, 1024, 8, ST_DFUSE_MEM_ERASABLE);
    assert_false(st_dfuse_layout_writable(l, 0x08000000, 4));
    assert_true(st_dfuse_layout_writable(l, 0x08008000, 65536));
    assert_false(st_dfuse_layout_writable(l, 0x08007FFF, 2));
    assert_int_equal(st_dfuse_layout_first_bad(l, 0x08007FFF, 2, ST_DFUSE_MEM_WRITABLE),
                     0x08007FFF);
    assert_int_equal(st_dfuse_layout_first_bad(l, 0x08008000, 65537, ST_DFUSE_MEM_WRITABLE),
                     0x08018000);
    assert_null(st_dfuse_layout_find(l, 0x08018000));
    st_dfuse_layout_free(l);
}

static void test_type_rules(void **state)
{
    (void)state;
    /* No separate type letter: the multiplier position holds the type. */
    st_dfuse_layout *l = parse_ok("@X/0x0/4*16g,2*8a");
    seg_is(&l->segs[0], 0, 64, 16, 4, 7);
    seg_is(&l->segs[1], 64, 16, 8, 2, 1);
    assert_int_equal(l->nonstandard_multipliers, 0);
    st_dfuse_layout_free(l);
    /* A type letter in the multiplier position followed by a type: bytes, warning. */
    l = parse_ok("@X/0x100/1*16ge");
    seg_is(&l->segs[0], 0x100, 16, 16, 1, 5);
    assert_int_equal(l->nonstandard_multipliers, 1);
    st_dfuse_layout_free(l);
    /* Every type letter a..g and its bits. */
    const char *letters = "abcdefg";
    for (int i = 0; i < 7; i++) {
        char s[40];
        snprintf(s, sizeof s, "@T /0x08000000/1*1K%c", letters[i]);
        l = parse_ok(s);
        assert_int_equal(l->segs[0].flags, i + 1);
        assert_int_equal(l->segs[0].type, letters[i]);
        st_dfuse_layout_free(l);
    }
    /* M multiplier, upper-case hex, padding after the type. */
    l = parse_ok("@Big /0xC0000000/2*1Mg  ");
    seg_is(&l->segs[0], 0xC0000000, 2u << 20, 1u << 20, 2, 7);
    st_dfuse_layout_free(l);
    /* dfu-util quirk: "Device Feature" is forced to 'e'. */
    l = parse_ok("@Device Feature/0xFFFF0000/01*004 g");
    assert_int_equal(l->segs[0].flags, 5);
    st_dfuse_layout_free(l);
    /* A segment ending exactly at 4 GiB. */
    l = parse_ok("@Top/0xFFFFF000/1*4Kg");
    assert_true(st_dfuse_layout_writable(l, 0xFFFFF000, 4096));
    assert_int_equal(st_dfuse_layout_page_size(l, 0xFFFFFFFF), 4096);
    st_dfuse_layout_free(l);
}

static void expect_bad(const char *s, size_t column)
{
    st_dfuse_layout *l = (st_dfuse_layout *)1;
    st_err err = {0};
    int rc = st_dfuse_layout_parse(s, s ? strlen(s) : 0, &l, &err);
    if (rc != ST_ERR_INVAL)
        fail_msg("\"%s\" parsed (rc %d)", s, rc);
    assert_null(l);
    char col[32];
    snprintf(col, sizeof col, "column %zu:", column);
    if (!strstr(err.msg, col))
        fail_msg("\"%s\": want %s in \"%s\"", s, col, err.msg);
    assert_non_null(strstr(err.msg, "DfuSe layout \""));
}

static void test_malformed(void **state)
{
    (void)state;
    expect_bad("", 1);
    expect_bad("Internal Flash /0x08000000/64*02Kg", 1);
    expect_bad("@/0x08000000/64*02Kg", 2);
    expect_bad("@Internal Flash", 16);
    expect_bad("@Flash /08000000/64*02Kg", 9);
    expect_bad("@Flash /0x/64*02Kg", 11);
    expect_bad("@Flash /0x0800000G/64*02Kg", 18);
    expect_bad("@Flash /0x123456789/1*1Kg", 19);
    expect_bad("@Flash /0x08000000", 19);
    expect_bad("@Flash /0x08000000/", 20);
    expect_bad("@Flash /0x08000000/*02Kg", 20);
    expect_bad("@Flash /0x08000000/64", 22);
    expect_bad("@Flash /0x08000000/64*", 23);
    expect_bad("@Flash /0x08000000/64*Kg", 23);
    expect_bad("@Flash /0x08000000/64*02", 25);
    expect_bad("@Flash /0x08000000/64*02K", 25);    /* no type letter after K */
    expect_bad("@Flash /0x08000000/64*02Kz", 26);   /* z is no type */
    expect_bad("@Flash /0x08000000/64*02Kgx", 27);
    expect_bad("@Flash /0x08000000/64*02Kg,", 28);  /* dangling comma */
    expect_bad("@Flash /0x08000000/64*02Kg;", 27);
    expect_bad("@Flash /0x08000000/0*02Kg", 21);
    expect_bad("@Flash /0x08000000/1*0Kg", 23);
    expect_bad("@Flash /0x08000000/1*2,", 23);
    expect_bad("@Flash /0x08000000/99999999999*1Kg", 20); /* the number that overflows */
    expect_bad("@Flash /0xFFFFF000/2*4Kg", 25);     /* runs past 4 GiB */
    expect_bad("@Flash /0x08000000/64*02Kg/", 28);
    expect_bad("@Flash /0x08000000/64*02K g", 27);
    /* Untrusted bytes are not echoed raw. */
    st_dfuse_layout *l;
    st_err err = {0};
    assert_int_equal(st_dfuse_layout_parse("@\x1b[31m/0x0/1*1Kq", 16, &l, &err), ST_ERR_INVAL);
    assert_null(strchr(err.msg, '\x1b'));
    assert_int_equal(st_dfuse_layout_parse(NULL, 0, &l, &err), ST_ERR_INVAL);
}

/* Every prefix and every single-byte mutation of valid strings must parse or fail
 * cleanly. The buffers have no terminating NUL (a USB string need not have one): the
 * parser reads only the length it is given, and ASan catches a read one byte past it. */
static void test_mutations(void **state)
{
    (void)state;
    const char *seeds[] = {"@Internal Flash   /0x08000000/64*02Kg",
                           "@Internal Flash  /0x08000000/04*016Kg,01*064Kg,07*128Kg",
                           "@Option Bytes  /0x1FFFC000/01*016 g"};
    const char alphabet[] = "@/0x*,KMBag 9Fz\t";
    unsigned ok = 0, bad = 0;
    for (size_t s = 0; s < 3; s++) {
        size_t n = strlen(seeds[s]);
        for (size_t cut = 0; cut <= n; cut++) {
            char *p = malloc(cut ? cut : 1);
            memcpy(p, seeds[s], cut);
            st_dfuse_layout *l;
            st_err err = {0};
            int rc = st_dfuse_layout_parse(p, cut, &l, cut % 2 ? &err : NULL);
            rc == 0 ? ok++ : bad++;
            st_dfuse_layout_free(rc == 0 ? l : NULL);
            free(p);
        }
        for (size_t i = 0; i < n; i++) {
            for (size_t a = 0; a < sizeof alphabet - 1; a++) {
                char *p = malloc(n);
                memcpy(p, seeds[s], n);
                p[i] = alphabet[a];
                st_dfuse_layout *l;
                st_err err = {0};
                if (st_dfuse_layout_parse(p, n, &l, &err) == 0) {
                    ok++;
                    for (size_t k = 0; k < l->nsegs; k++)
                        assert_true(l->segs[k].size > 0 && l->segs[k].page_size > 0);
                    st_dfuse_layout_free(l);
                } else {
                    bad++;
                }
                free(p);
            }
        }
    }
    assert_true(ok > 50);
    assert_true(bad > 50);
}

/* Issue 7: the string from the unit is a buffer and a length, not a C string. */
static void test_length_bounded(void **state)
{
    (void)state;
    const char *full = "@Internal Flash   /0x08000000/64*02Kg,01*02KgGARBAGE";
    /* Only the first 37 bytes are the string: what follows is not read. */
    st_dfuse_layout *l = NULL;
    st_err err = {0};
    assert_int_equal(st_dfuse_layout_parse(full, 37, &l, &err), 0);
    assert_int_equal(l->nsegs, 1);
    seg_is(&l->segs[0], 0x08000000, 128 * 1024, 2048, 64, 7);
    st_dfuse_layout_free(l);
    /* Exactly the bytes, in a heap block of that size with no NUL after them. */
    const char *g4 = "@Internal Flash   /0x08000000/64*02Kg";
    size_t n = strlen(g4);
    char *p = malloc(n);
    memcpy(p, g4, n);
    assert_int_equal(st_dfuse_layout_parse(p, n, &l, &err), 0);
    assert_string_equal(l->name, "Internal Flash");
    st_dfuse_layout_free(l);
    /* Cut inside the name: the error quotes what was given and nothing beyond. */
    l = (st_dfuse_layout *)1;
    assert_int_equal(st_dfuse_layout_parse(p, 9, &l, &err), ST_ERR_INVAL);
    assert_null(l);
    assert_non_null(strstr(err.msg, "DfuSe layout \"@Internal\": column 10:"));
    free(p);
    /* A NUL inside the given length is a bad byte, not the end. */
    const char nul[] = "@Flash /0x08000000/64*02Kg\0,1*2Kg";
    assert_int_equal(st_dfuse_layout_parse(nul, sizeof nul - 1, &l, &err), ST_ERR_INVAL);
    assert_non_null(strstr(err.msg, "column 27: a NUL byte inside the string"));
}

/* Issue 7: a name longer than the layout keeps (63 characters) is an error, not cut. */
static void test_long_name(void **state)
{
    (void)state;
    char s[160];
    char name[80];
    memset(name, 'N', sizeof name);
    name[63] = '\0';
    snprintf(s, sizeof s, "@%s   /0x08000000/64*02Kg", name); /* 63: the most kept */
    st_dfuse_layout *l = parse_ok(s);
    assert_int_equal(strlen(l->name), 63);
    st_dfuse_layout_free(l);
    name[64] = '\0';
    name[63] = 'N';
    snprintf(s, sizeof s, "@%s   /0x08000000/64*02Kg", name); /* 64 */
    st_err err = {0};
    l = (st_dfuse_layout *)1;
    assert_int_equal(st_dfuse_layout_parse(s, strlen(s), &l, &err), ST_ERR_INVAL);
    assert_null(l);
    if (!strstr(err.msg, "column 2: memory name is 64 characters long, more than 63"))
        fail_msg("got \"%s\"", err.msg);
}

/* Issue 7: a page count or size too big for 32 bits says so. */
static void test_overflow_wording(void **state)
{
    (void)state;
    st_dfuse_layout *l;
    st_err err = {0};
    const char *s = "@Flash /0x08000000/99999999999*1Kg";
    assert_int_equal(st_dfuse_layout_parse(s, strlen(s), &l, &err), ST_ERR_INVAL);
    if (!strstr(err.msg, "column 20: page count 99999999999 overflows 32 bits"))
        fail_msg("got \"%s\"", err.msg);
    s = "@Flash /0x08000000/1*4294967296Bg";
    assert_int_equal(st_dfuse_layout_parse(s, strlen(s), &l, &err), ST_ERR_INVAL);
    if (!strstr(err.msg, "column 22: page size 4294967296 overflows 32 bits"))
        fail_msg("got \"%s\"", err.msg);
    /* A count made of many digits, longer than the message should quote. */
    char big[200] = "@Flash /0x08000000/";
    memset(big + strlen(big), '9', 120);
    strcat(big, "*1Kg");
    assert_int_equal(st_dfuse_layout_parse(big, strlen(big), &l, &err), ST_ERR_INVAL);
    assert_non_null(strstr(err.msg, "overflows 32 bits"));
    /* The largest count still parses. */
    s = "@Flash /0x00000000/4294967295*1Bg";
    assert_int_equal(st_dfuse_layout_parse(s, strlen(s), &l, &err), 0);
    assert_int_equal(l->segs[0].count, 4294967295u);
    st_dfuse_layout_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_g431_alts),   cmocka_unit_test(test_f4_strings),
        cmocka_unit_test(test_f0_and_groups), cmocka_unit_test(test_type_rules),
        cmocka_unit_test(test_malformed),   cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_length_bounded), cmocka_unit_test(test_long_name),
        cmocka_unit_test(test_overflow_wording),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
