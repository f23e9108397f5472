/* Katapult framing tests: CRC, golden frames from reference §2.2 and PROTOCOL.md, resync,
 * split frames, bad CRC / trailer / length. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/katapult/frame.h"

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (*s) {
        while (*s && !isxdigit((unsigned char)*s))
            s++;
        if (!*s)
            break;
        unsigned v;
        assert_int_equal(sscanf(s, "%2x", &v), 1);
        assert_true(n < cap);
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

static void test_crc_check_value(void **state)
{
    assert_int_equal(st_kat_crc16((const uint8_t *)"123456789", 9), 0x6F91);
    /* Incremental equals one-shot. */
    uint16_t c = st_kat_crc16_update(0xFFFF, (const uint8_t *)"1234", 4);
    assert_int_equal(st_kat_crc16_update(c, (const uint8_t *)"56789", 5), 0x6F91);
}

typedef struct vec {
    const char *name;
    uint8_t code;
    const char *payload;
    const char *frame;
} vec;

/* Reference §2.2 test vectors (COMPUTED there with the firmware algorithm). */
static const vec vectors[] = {
    {"CONNECT", 0x11, "", "01 88 11 00 f1 7c 99 03"},
    {"SEND_EOF", 0x13, "", "01 88 13 00 41 4f 99 03"},
    {"COMPLETE", 0x15, "", "01 88 15 00 91 1b 99 03"},
    {"GET_CANBUS_ID", 0x16, "", "01 88 16 00 f9 31 99 03"},
    {"prime", 0x90, "", "01 88 90 00 e5 e9 99 03"},
    {"REQUEST_BLOCK", 0x14, "00 20 00 08", "01 88 14 01 00 20 00 08 5b de 99 03"},
    {"ACK(COMPLETE)", 0xa0, "15 00 00 00", "01 88 a0 01 15 00 00 00 00 2e 99 03"},
    {"ACK(EOF 3)", 0xa0, "13 00 00 00 03 00 00 00",
     "01 88 a0 02 13 00 00 00 03 00 00 00 5b fd 99 03"},
    {"NACK", 0xf1, "", "01 88 f1 00 68 95 99 03"},
    {"COMMAND ERROR", 0xf2, "", "01 88 f2 00 00 bf 99 03"},
    /* The BUSY frame upstream's protocol.md gets wrong (it reuses 0xF2's CRC). */
    {"BUSY", 0xf3, "", "01 88 f3 00 d8 a6 99 03"},
    {"ACK(CONNECT)", 0xa0,
     "11 00 00 00 00 01 01 00 00 20 00 08 40 00 00 00"
     "73 74 6d 33 32 67 34 33 31 78 78 00 00 00 00 00"
     "76 30 2e 30 2e 31 2d 31 31 30 2d 67 62 30 62 66 34 32 31 00",
     "01 88 a0 0d 11 00 00 00 00 01 01 00 00 20 00 08 40 00 00 00"
     "73 74 6d 33 32 67 34 33 31 78 78 00 00 00 00 00"
     "76 30 2e 30 2e 31 2d 31 31 30 2d 67 62 30 62 66 34 32 31 00 45 23 99 03"},
};

static void test_golden_vectors(void **state)
{
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        const vec *v = &vectors[i];
        uint8_t payload[256], want[300], got[300];
        size_t pl = unhex(v->payload, payload, sizeof payload);
        size_t wl = unhex(v->frame, want, sizeof want);
        size_t gl = st_kat_frame_encode(v->code, payload, pl, got, sizeof got);
        if (gl != wl || memcmp(got, want, wl) != 0)
            fail_msg("%s: encoded frame differs", v->name);
        st_kat_check c = st_kat_frame_check(want, wl, ST_KAT_DEVICE_FRAME_MAX);
        assert_int_equal(c.kind, ST_KAT_FRAME);
        assert_int_equal(c.len, wl);
        assert_int_equal(st_kat_frame_code(want), v->code);
        assert_int_equal(st_kat_frame_payload_len(want), pl);
    }
    /* A 64-byte SEND_BLOCK is LEN 0x11, 76 bytes. */
    uint8_t p[68] = {0}, f[100];
    assert_int_equal(st_kat_frame_encode(0x12, p, sizeof p, f, sizeof f), 76);
    assert_int_equal(f[3], 0x11);
}

static void test_upstream_busy_example_is_wrong(void **state)
{
    uint8_t f[8];
    unhex("01 88 f3 00 00 bf 99 03", f, sizeof f);
    st_kat_check c = st_kat_frame_check(f, sizeof f, ST_KAT_FRAME_MAX);
    assert_int_equal(c.kind, ST_KAT_DROP);
    assert_int_equal(c.reason, ST_KAT_DROP_CRC);
    assert_true(c.len >= 1);
}

/* Every frame in a fenced block of PROTOCOL.md is a valid frame (the spec's examples are
 * test vectors). A frame starts at "01 88" and runs over hex-byte tokens, across lines, up
 * to the first other token, blank line or fence. */
static void md_flush(uint8_t *buf, size_t *n, int *frames)
{
    if (*n == 0)
        return;
    st_kat_check c = st_kat_frame_check(buf, *n, ST_KAT_FRAME_MAX);
    if (c.kind != ST_KAT_FRAME || c.len != *n)
        fail_msg("PROTOCOL.md frame #%d (%zu bytes) is not a valid frame", *frames + 1, *n);
    (*frames)++;
    *n = 0;
}

static void test_protocol_md_examples(void **state)
{
    FILE *fp = fopen(STATION_SOURCE_DIR "/protocols/katapult/PROTOCOL.md", "r");
    assert_non_null(fp);
    char line[512], tok[64];
    bool fenced = false;
    uint8_t buf[1100];
    size_t n = 0;
    int frames = 0;
    while (fgets(line, sizeof line, fp)) {
        if (strncmp(line, "```", 3) == 0) {
            md_flush(buf, &n, &frames);
            fenced = !fenced;
            continue;
        }
        if (!fenced)
            continue;
        if (line[strspn(line, " \t\r\n")] == '\0')
            md_flush(buf, &n, &frames);
        const char *s = line;
        int used;
        while (sscanf(s, "%63s%n", tok, &used) == 1) {
            s += used;
            unsigned v = 0;
            bool hex = strlen(tok) == 2 && isxdigit((unsigned char)tok[0]) &&
                       isxdigit((unsigned char)tok[1]) && sscanf(tok, "%2x", &v) == 1;
            if (!hex) {
                if (n == 1)
                    n = 0; /* a lone "01" was not a frame */
                md_flush(buf, &n, &frames);
                continue;
            }
            if ((n == 0 && v != 0x01) || (n == 1 && v != 0x88)) {
                n = 0;
                continue;
            }
            assert_true(n < sizeof buf);
            buf[n++] = (uint8_t)v;
        }
    }
    fclose(fp);
    md_flush(buf, &n, &frames);
    assert_true(frames >= 12);
}

static void test_resync_after_garbage(void **state)
{
    uint8_t buf[64];
    const uint8_t garbage[] = {0x55, 0x01, 0x02, 0x01, 0x88, 0xff, 0x00};
    memcpy(buf, garbage, sizeof garbage);
    size_t n = unhex("01 88 11 00 f1 7c 99 03", buf + sizeof garbage, 16) + sizeof garbage;
    size_t pos = 0;
    int drops = 0;
    for (;;) {
        st_kat_check c = st_kat_frame_check(buf + pos, n - pos, ST_KAT_DEVICE_FRAME_MAX);
        assert_int_not_equal(c.kind, ST_KAT_NEED_MORE);
        if (c.kind == ST_KAT_FRAME) {
            assert_int_equal(c.len, 8);
            assert_int_equal(pos, sizeof garbage);
            break;
        }
        assert_true(c.len >= 1 && c.len <= n - pos);
        pos += c.len;
        drops++;
    }
    assert_true(drops >= 2);
    /* A garbage prefix without any 0x01 is dropped whole. */
    st_kat_check c = st_kat_frame_check((const uint8_t *)"\x55\x66\x77", 3, 128);
    assert_int_equal(c.kind, ST_KAT_DROP);
    assert_int_equal(c.len, 3);
    /* A lone 0x01 may be a header. */
    c = st_kat_frame_check((const uint8_t *)"\x01", 1, 128);
    assert_int_equal(c.kind, ST_KAT_NEED_MORE);
}

static void test_split_every_boundary(void **state)
{
    uint8_t f[100];
    size_t n = unhex("01 88 a0 02 13 00 00 00 03 00 00 00 5b fd 99 03", f, sizeof f);
    for (size_t cut = 0; cut <= n; cut++) {
        /* What a caller holding only the first `cut` bytes sees. */
        st_kat_check c = st_kat_frame_check(f, cut, ST_KAT_DEVICE_FRAME_MAX);
        if (cut < n) {
            if (c.kind != ST_KAT_NEED_MORE)
                fail_msg("cut %zu: expected need-more", cut);
        } else {
            assert_int_equal(c.kind, ST_KAT_FRAME);
            assert_int_equal(c.len, n);
        }
    }
    /* Two frames back to back, the second split: the first is found whole. */
    uint8_t two[200];
    memcpy(two, f, n);
    memcpy(two + n, f, n);
    for (size_t cut = n; cut < 2 * n; cut++) {
        st_kat_check c = st_kat_frame_check(two, cut, ST_KAT_DEVICE_FRAME_MAX);
        assert_int_equal(c.kind, ST_KAT_FRAME);
        assert_int_equal(c.len, n);
        c = st_kat_frame_check(two + n, cut - n, ST_KAT_DEVICE_FRAME_MAX);
        assert_int_equal(c.kind, ST_KAT_NEED_MORE);
    }
}

static void test_bad_crc_trailer_length(void **state)
{
    uint8_t f[16];
    size_t n = unhex("01 88 11 00 f1 7c 99 03", f, sizeof f);
    f[4] ^= 0x40;
    st_kat_check c = st_kat_frame_check(f, n, 128);
    assert_int_equal(c.kind, ST_KAT_DROP);
    assert_int_equal(c.reason, ST_KAT_DROP_CRC);
    assert_int_equal(c.len, n); /* no other 0x01 in it */
    f[4] ^= 0x40;
    f[7] = 0x7e;
    c = st_kat_frame_check(f, n, 128);
    assert_int_equal(c.kind, ST_KAT_DROP);
    assert_int_equal(c.reason, ST_KAT_DROP_TRAILER);
    /* LEN 0x20 -> 136 bytes: too long for the device, fine for a host. */
    uint8_t big[200] = {0x01, 0x88, 0xa0, 0x20};
    c = st_kat_frame_check(big, 10, ST_KAT_DEVICE_FRAME_MAX);
    assert_int_equal(c.kind, ST_KAT_DROP);
    assert_int_equal(c.reason, ST_KAT_DROP_LENGTH);
    c = st_kat_frame_check(big, 10, ST_KAT_FRAME_MAX);
    assert_int_equal(c.kind, ST_KAT_NEED_MORE);
    /* Bad second header byte. */
    c = st_kat_frame_check((const uint8_t *)"\x01\x89\x11\x00", 4, 128);
    assert_int_equal(c.kind, ST_KAT_DROP);
    assert_int_equal(c.reason, ST_KAT_DROP_HEADER);
    assert_int_equal(c.len, 4);
}

static void test_encode_rejects(void **state)
{
    uint8_t out[2000], p[1024] = {0};
    assert_int_equal(st_kat_frame_encode(0x12, p, 3, out, sizeof out), 0);
    assert_int_equal(st_kat_frame_encode(0x12, p, 1024, out, sizeof out), 0);
    assert_int_equal(st_kat_frame_encode(0x12, p, 1020, out, sizeof out), 1028);
    assert_int_equal(st_kat_frame_encode(0x12, p, 4, out, 11), 0);
}

/* Random bytes never make the checker stall or overrun. */
static void test_random_never_stalls(void **state)
{
    uint8_t buf[300];
    uint32_t x = 12345;
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(round % 300);
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            buf[i] = (uint8_t)(x >> 16);
            if (i % 17 == 0)
                buf[i] = 0x01;
        }
        size_t pos = 0;
        while (pos < n) {
            st_kat_check c = st_kat_frame_check(buf + pos, n - pos, ST_KAT_FRAME_MAX);
            if (c.kind == ST_KAT_NEED_MORE)
                break;
            assert_true(c.len >= 1 && c.len <= n - pos);
            pos += c.len;
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc_check_value),
        cmocka_unit_test(test_golden_vectors),
        cmocka_unit_test(test_upstream_busy_example_is_wrong),
        cmocka_unit_test(test_protocol_md_examples),
        cmocka_unit_test(test_resync_after_garbage),
        cmocka_unit_test(test_split_every_boundary),
        cmocka_unit_test(test_bad_crc_trailer_length),
        cmocka_unit_test(test_encode_rejects),
        cmocka_unit_test(test_random_never_stalls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
