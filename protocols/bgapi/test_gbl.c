/* GBL files: each host-side check fails with its own name, and the bootloader's stream
 * parser accepts a valid file cut anywhere and rejects each kind of corrupt stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "protocols/bgapi/gbl.h"

static uint8_t *make(size_t len, uint32_t version, size_t *n)
{
    uint8_t *data = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)(i * 13 + 1);
    st_gbl_build_opts o = {.app_type = 1u << 3, .app_version = version, .prog_addr = 0,
                           .data = data, .len = len};
    uint8_t *g;
    assert_int_equal(st_gbl_build(&o, &g, n, NULL), 0);
    free(data);
    return g;
}

static void refix_crc(uint8_t *g, size_t n)
{
    uint32_t crc = (uint32_t)crc32(0, g, (uInt)(n - 4));
    g[n - 4] = (uint8_t)crc;
    g[n - 3] = (uint8_t)(crc >> 8);
    g[n - 2] = (uint8_t)(crc >> 16);
    g[n - 1] = (uint8_t)(crc >> 24);
}

static void expect_gbl_check(const uint8_t *g, size_t n, const char *check)
{
    st_err err;
    int rc = st_gbl_check(g, n, "fw.gbl", NULL, &err);
    assert_int_equal(rc, ST_ERR_INVAL);
    char want[64];
    snprintf(want, sizeof want, "fw.gbl: GBL check '%s' failed", check);
    if (!strstr(err.msg, want))
        fail_msg("expected '%s' in: %s", want, err.msg);
}

static void test_valid(void **state)
{
    size_t n;
    uint8_t *g = make(1001, 0x05000102, &n);
    assert_int_equal(n % 4, 0);
    assert_int_equal((uint32_t)crc32(0, g, (uInt)n), ST_GBL_CRC_GOOD);
    st_gbl_info info;
    st_err err;
    assert_int_equal(st_gbl_check(g, n, "fw.gbl", &info, &err), 0);
    assert_int_equal(info.version, 0x03000000);
    assert_int_equal(info.type, 0);
    assert_int_equal(info.tags, 4);
    assert_true(info.has_app);
    assert_int_equal(info.app_version, 0x05000102);
    assert_int_equal(info.prog_bytes, 1004);
    /* The first bytes are the reference's header tag. */
    const uint8_t hdr[] = {0xeb, 0x17, 0xa6, 0x03, 0x08, 0, 0, 0, 0, 0, 0, 0x03};
    assert_memory_equal(g, hdr, sizeof hdr);
    const uint8_t end[] = {0xfc, 0x04, 0x04, 0xfc, 0x04, 0, 0, 0};
    assert_memory_equal(g + n - 12, end, sizeof end);
    free(g);
}

static void test_each_check(void **state)
{
    size_t n;
    uint8_t *g = make(64, 1, &n);
    uint8_t *c = malloc(n + 8);
    /* length: too short */
    expect_gbl_check(g, 20, "length");
    /* header tag */
    memcpy(c, g, n);
    c[0] ^= 1;
    expect_gbl_check(c, n, "header tag");
    memcpy(c, g, n);
    c[11] = 0x02; /* format major 2 */
    expect_gbl_check(c, n, "header tag");
    /* length not a multiple of 4 */
    memcpy(c, g, n);
    c[n] = 0;
    expect_gbl_check(c, n + 1, "length");
    expect_gbl_check(g, n - 2, "length");
    /* end tag missing (a truncated file that is still a multiple of 4) */
    expect_gbl_check(g, n - 4, "end tag");
    /* CRC */
    memcpy(c, g, n);
    c[40] ^= 0x80;
    expect_gbl_check(c, n, "CRC-32");
    memcpy(c, g, n);
    c[n - 1] ^= 1;
    expect_gbl_check(c, n, "CRC-32");
    /* tag chain: a tag length that overruns, CRC fixed so only the chain is wrong */
    memcpy(c, g, n);
    c[16 + 4] = 0xff;
    refix_crc(c, n);
    expect_gbl_check(c, n, "tag chain");
    free(c);
    free(g);
}

typedef struct sink {
    uint8_t mem[4096];
    uint32_t lo, hi;
    int apps;
    uint32_t app_version;
    int fail_at; /* fail the nth prog call (0 = never) */
    int calls;
} sink;

static int prog(void *ctx, uint32_t addr, const uint8_t *d, size_t n)
{
    sink *s = ctx;
    if (++s->calls == s->fail_at)
        return -1;
    assert_true(addr + n <= sizeof s->mem);
    memcpy(s->mem + addr, d, n);
    if (addr < s->lo)
        s->lo = addr;
    if (addr + n > s->hi)
        s->hi = (uint32_t)(addr + n);
    return 0;
}

static void app(void *ctx, uint32_t type, uint32_t version)
{
    sink *s = ctx;
    s->apps++;
    s->app_version = version;
}

static int feed_all(st_gbl_parser *p, const uint8_t *g, size_t n, size_t piece, sink *s)
{
    st_gbl_parser_cb cb = {.prog = prog, .app = app, .ctx = s};
    int first_err = 0;
    for (size_t off = 0; off < n; off += piece) {
        size_t k = n - off < piece ? n - off : piece;
        int st = st_gbl_parser_feed(p, g + off, k, &cb);
        if (st < 0 && !first_err)
            first_err = st;
    }
    return first_err;
}

static void test_stream_any_cut(void **state)
{
    size_t n;
    uint8_t *g = make(1000, 0x02030405, &n);
    for (size_t piece = 1; piece <= 256; piece += (piece < 16 ? 1 : 37)) {
        sink s = {.lo = UINT32_MAX};
        st_gbl_parser p;
        st_gbl_parser_init(&p);
        assert_int_equal(feed_all(&p, g, n, piece, &s), 0);
        assert_true(p.completed);
        assert_true(p.verified);
        assert_int_equal(s.apps, 1);
        assert_int_equal(s.app_version, 0x02030405);
        assert_int_equal(s.lo, 0);
        assert_int_equal(s.hi, 1000);
        for (uint32_t i = 0; i < 1000; i++)
            assert_int_equal(s.mem[i], (uint8_t)(i * 13 + 1));
        /* After the end tag, more bytes are "parsing already over". */
        st_gbl_parser_cb cb = {.prog = prog, .ctx = &s};
        assert_int_equal(st_gbl_parser_feed(&p, g, 4, &cb), ST_GBL_EOF);
    }
    free(g);
}

static void expect_stream(uint8_t *g, size_t n, int want)
{
    sink s = {.lo = UINT32_MAX};
    st_gbl_parser p;
    st_gbl_parser_init(&p);
    int st = feed_all(&p, g, n, 52, &s);
    assert_int_equal(st, want);
    assert_false(p.verified);
    /* Sticky: the parser is over; later bytes are EOF, never OK. */
    st_gbl_parser_cb cb = {.prog = prog, .ctx = &s};
    assert_int_equal(st_gbl_parser_feed(&p, g, 4, &cb), ST_GBL_EOF);
    assert_string_not_equal(st_gbl_status_name(want), "?");
}

static void test_stream_rejects(void **state)
{
    size_t n;
    uint8_t *g = make(300, 1, &n);
    uint8_t *c = malloc(n);
    /* A flipped data bit: only the end tag's CRC notices. */
    memcpy(c, g, n);
    c[100] ^= 4;
    expect_stream(c, n, ST_GBL_ERR_CRC);
    /* Not a GBL at all. */
    memcpy(c, g, n);
    c[2] = 0;
    expect_stream(c, n, ST_GBL_ERR_HEADER);
    /* Header says format 2. */
    memcpy(c, g, n);
    c[11] = 2;
    expect_stream(c, n, ST_GBL_ERR_HEADER);
    /* Encrypted. */
    memcpy(c, g, n);
    c[12] = 1;
    expect_stream(c, n, ST_GBL_ERR_UNSUPPORTED);
    /* The application tag turned into an LZ4 program tag: no decompressor. */
    memcpy(c, g, n);
    c[16] = 0xfd, c[17] = 0x05, c[18] = 0x05, c[19] = 0xfd;
    expect_stream(c, n, ST_GBL_ERR_UNKNOWN_TAG);
    /* A second header tag. */
    memcpy(c, g, n);
    c[16] = 0xeb, c[17] = 0x17, c[18] = 0xa6, c[19] = 0x03;
    expect_stream(c, n, ST_GBL_ERR_UNEXPECTED);
    /* End tag with a length other than 4. */
    memcpy(c, g, n);
    c[n - 8] = 8;
    expect_stream(c, n, ST_GBL_ERR_UNEXPECTED);
    /* A flash write that fails. */
    sink s = {.lo = UINT32_MAX, .fail_at = 2};
    st_gbl_parser p;
    st_gbl_parser_init(&p);
    assert_int_equal(feed_all(&p, g, n, 64, &s), ST_GBL_ERR_WRITE);
    /* A stream cut short is not completed (no error yet: the bootloader waits). */
    sink t = {.lo = UINT32_MAX};
    st_gbl_parser_init(&p);
    assert_int_equal(feed_all(&p, g, n - 12, 64, &t), 0);
    assert_false(p.completed);
    free(c);
    free(g);
}

static void test_synthetic(void **state)
{
    uint8_t *a, *b;
    size_t na, nb;
    st_err err;
    assert_int_equal(st_gbl_synthetic(5000, 7, st_gbl_stack_version(5, 0, 0, 1), &a, &na, &err),
                     0);
    assert_int_equal(st_gbl_synthetic(5000, 7, st_gbl_stack_version(5, 0, 0, 1), &b, &nb, &err),
                     0);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na); /* deterministic: a job can pin its SHA-256 */
    st_gbl_info info;
    assert_int_equal(st_gbl_check(a, na, "synthetic", &info, &err), 0);
    assert_int_equal(info.app_version, 0x05000001);
    free(b);
    assert_int_equal(st_gbl_synthetic(5000, 8, 1, &b, &nb, &err), 0);
    assert_true(memcmp(a, b, na) != 0);
    free(a);
    free(b);
    assert_int_equal(st_gbl_synthetic(4, 1, 1, &a, &na, &err), ST_ERR_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_each_check),
        cmocka_unit_test(test_stream_any_cut),
        cmocka_unit_test(test_stream_rejects),
        cmocka_unit_test(test_synthetic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
