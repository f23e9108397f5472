/* Klipper message protocol without I/O: CRC, the golden blocks of PROTOCOL.md 9, VLQ
 * vectors (negative numbers, the 5-byte forms, Klipper's host form), the block finder on
 * split, damaged and junk-led input, the dictionary parser (good and bad JSON), messages
 * by format string including buffers, and the dictionaries inside the real images. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "protocols/klipper/msgproto.h"
#include "station/core/testutil.h"

#define SUBSET STATION_SOURCE_DIR "/protocols/klipper/testdata/cartographer-usb-subset.json"
#define FWDIR STATION_SHARED_DIR "/firmware/cartographer-v4/6.0.0/"

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

static st_klp_dict *subset(void)
{
    size_t n;
    char *j = st_test_read_file(SUBSET, &n);
    assert_non_null(j);
    st_klp_dict *d = NULL;
    st_err e;
    int rc = st_klp_dict_parse(j, n, &d, &e);
    if (rc)
        fail_msg("%s", e.msg);
    free(j);
    return d;
}

static void test_crc(void **state)
{
    assert_int_equal(st_klp_crc16((const uint8_t *)"123456789", 9), 0x6F91);
}

/* PROTOCOL.md 9.1 / 9.4: empty blocks (ack/nak) for every sequence number. */
static void test_empty_blocks(void **state)
{
    static const char *want[16] = {
        "05 10 9e 81 7e", "05 11 8f 08 7e", "05 12 bd 93 7e", "05 13 ac 1a 7e",
        "05 14 d8 a5 7e", "05 15 c9 2c 7e", "05 16 fb b7 7e", "05 17 ea 3e 7e",
        "05 18 12 c9 7e", "05 19 03 40 7e", "05 1a 31 db 7e", "05 1b 20 52 7e",
        "05 1c 54 ed 7e", "05 1d 45 64 7e", "05 1e 77 ff 7e", "05 1f 66 76 7e",
    };
    for (unsigned s = 0; s < 16; s++) {
        uint8_t exp[8], got[8];
        size_t n = unhex(want[s], exp, sizeof exp);
        assert_int_equal(st_klp_block_encode((uint8_t)s, NULL, 0, got), 5);
        assert_memory_equal(got, exp, n);
    }
}

/* Encode the text form with the subset dictionary (USB Lite ids) into a block. */
static void block_of(const st_klp_dict *d, const char *text, uint8_t seq, const char *want)
{
    uint8_t m[64], b[64], exp[64];
    st_err e;
    int n = st_klp_msg_encode_text(d, text, m, sizeof m, &e);
    if (n < 0)
        fail_msg("%s: %s", text, e.msg);
    size_t bl = st_klp_block_encode(seq, m, (size_t)n, b);
    size_t el = unhex(want, exp, sizeof exp);
    assert_int_equal(bl, el);
    assert_memory_equal(b, exp, el);
}

/* Decode a golden MCU block with the dictionary and compare its text form. */
static void decode_of(const st_klp_dict *d, const char *hex, const char *want)
{
    uint8_t b[64];
    size_t n = unhex(hex, b, sizeof b);
    bool ns = false;
    st_klp_check c = st_klp_block_check(&ns, b, n);
    assert_int_equal(c.kind, ST_KLP_BLOCK);
    assert_int_equal(c.len, n);
    st_klp_decoded m;
    st_err e;
    int k = st_klp_msg_decode(d, true, st_klp_block_content(b), st_klp_block_content_len(b), &m,
                              &e);
    if (k < 0)
        fail_msg("%s: %s", hex, e.msg);
    assert_int_equal((size_t)k, st_klp_block_content_len(b));
    char txt[256];
    assert_string_equal(st_klp_decoded_format(&m, txt, sizeof txt), want);
}

static void test_golden_messages(void **state)
{
    st_klp_dict *d = subset();
    block_of(d, "identify offset=0 count=40", 1, "08 11 01 00 28 42 24 7e");
    block_of(d, "identify offset=0 count=40", 0, "08 10 01 00 28 5e 9f 7e");
    block_of(d, "identify offset=40 count=40", 1, "08 11 01 28 28 af d7 7e");
    block_of(d, "identify offset=2800 count=40", 5, "09 15 01 95 70 28 4e e6 7e");
    block_of(d, "get_uptime", 2, "06 12 04 0f ef 7e");
    block_of(d, "get_config", 3, "06 13 07 24 ac 7e");
    block_of(d, "cartographer_stream en=1", 4, "07 14 54 01 17 ea 7e");
    decode_of(d, "0b 13 59 00 d1 87 fd 00 0b 0f 7e", "uptime high=0 clock=170000000");
    decode_of(d, "0a 14 5b 00 00 00 00 fa 4a 7e",
              "config is_config=0 crc=0 is_shutdown=0 move_count=0");
    decode_of(d, "10 15 6c 8f 80 80 80 00 87 c4 40 90 00 58 da 7e",
              "cartographer_data clock=4026531840 data=123456 temp=2048");
    decode_of(d, "09 10 57 87 68 02 13 1a 7e", "shutdown clock=1000 static_string_id=2");
    decode_of(d, "06 10 55 7f 53 7e", "starting");
    decode_of(d, "09 17 00 96 0b 00 12 97 7e", "identify_response offset=2827 data=");
    /* A 0x7E inside content is data (9.3), and a %.*s buffer comes back byte for byte. */
    decode_of(d,
              "30 11 00 00 28 78 da 9d 59 e9 6a 1c 49 12 7e 95 dc 06 b3 b0 48 a6 ef 43"
              "e0 1f 6d 49 f6 88 b1 6c 8d 5a 9a 59 58 96 a2 54 95 dd 5d a8 ae e7 9f 7e",
              "identify_response offset=0 data=78da9d59e96a1c49127e95dc06b3b048a6ef43e01f6d49f688b16c8d5a9a59589"
              "6a25495dd5da8ae");
    assert_string_equal(st_klp_dict_enum_text(d, "static_string_id", 8), "Command request");
    st_klp_dict_free(d);
}

static void test_vlq_vectors(void **state)
{
    static const struct { int64_t v; const char *hex; } t[] = {
        { 0, "00" }, { 95, "5f" }, { 96, "80 60" }, { 127, "80 7f" }, { 128, "81 00" },
        { 300, "82 2c" }, { -1, "7f" }, { 0xFFFFFFFF, "7f" }, { -32, "60" }, { -33, "ff 5f" },
        { 12287, "df 7f" }, { 12288, "80 e0 00" }, { -4096, "e0 00" }, { -4097, "ff df 7f" },
        { 1572864, "80 e0 80 00" }, { -524289, "ff df ff 7f" },
        { 201326592, "80 e0 80 80 00" }, { -67108864, "e0 80 80 00" },
        { -67108865, "8f df ff ff 7f" }, { 170000000, "d1 87 fd 00" },
        { 0x7FFFFFFF, "87 ff ff ff 7f" }, { 0x80000000, "88 80 80 80 00" },
        { 0xF0000000, "8f 80 80 80 00" },
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        uint8_t exp[8], got[8];
        size_t n = unhex(t[i].hex, exp, sizeof exp);
        size_t k = st_klp_vlq_encode((uint32_t)t[i].v, got);
        assert_int_equal(k, n);
        assert_memory_equal(got, exp, n);
        uint32_t back;
        assert_int_equal(st_klp_vlq_decode(got, k, &back), (int)k);
        assert_int_equal(back, (uint32_t)t[i].v);
        /* Truncated: every shorter prefix asks for more. */
        for (size_t p = 0; p < k; p++)
            assert_int_equal(st_klp_vlq_decode(got, p, &back), 0);
    }
    /* Klipper's Python host form: 0xFFFFFFFF as 5 bytes, -2^31 sign-extended. */
    uint8_t b[8];
    uint32_t v;
    size_t n = unhex("8f ff ff ff 7f", b, sizeof b);
    assert_int_equal(st_klp_vlq_decode(b, n, &v), 5);
    assert_int_equal(v, 0xFFFFFFFFu);
    n = unhex("f8 80 80 80 00", b, sizeof b);
    assert_int_equal(st_klp_vlq_decode(b, n, &v), 5);
    assert_int_equal((int32_t)v, INT32_MIN);
    /* No encoding runs past 5 bytes. */
    n = unhex("80 80 80 80 80 00", b, sizeof b);
    assert_int_equal(st_klp_vlq_decode(b, n, &v), -1);
    /* Every value round-trips: a sweep over the length boundaries and signs. */
    for (int64_t x = -70000000; x < 210000000; x += 9973) {
        uint8_t e[8];
        size_t k = st_klp_vlq_encode((uint32_t)x, e);
        assert_int_equal(st_klp_vlq_decode(e, k, &v), (int)k);
        assert_int_equal((int32_t)v, (int32_t)x);
    }
}

static void test_signed_params(void **state)
{
    static const char json[] =
        "{\"version\":\"v\",\"config\":{\"CLOCK_FREQ\":1000},"
        "\"commands\":{\"set pos=%i small=%hi buf=%*s\":2},"
        "\"responses\":{\"pos pos=%i small=%hi buf=%*s name=%s\":3}}";
    st_klp_dict *d;
    st_err e;
    assert_int_equal(st_klp_dict_parse(json, sizeof json - 1, &d, &e), 0);
    uint8_t m[64];
    int n = st_klp_msg_encode_text(d, "set pos=-2147483648 small=-5 buf=00ff7e", m, sizeof m, &e);
    assert_true(n > 0);
    uint8_t exp[16];
    size_t el = unhex("02 88 80 80 80 00 7b 03 00 ff 7e", exp, sizeof exp);
    assert_int_equal((size_t)n, el);
    assert_memory_equal(m, exp, el);
    st_klp_decoded dm;
    assert_int_equal(st_klp_msg_decode(d, false, m, (size_t)n, &dm, &e), n);
    assert_int_equal(st_klp_decoded_get(&dm, "pos")->i, INT32_MIN);
    assert_int_equal(st_klp_decoded_get(&dm, "small")->i, -5);
    assert_int_equal(st_klp_decoded_get(&dm, "buf")->len, 3);
    /* A %s from the unit with control bytes is shown printable. */
    uint8_t r[] = { 0x03, 0x7b, 0x01, 0x01, 0x00, 0x05, 'a', '\n', 'b', 0x1b, 'c' };
    assert_int_equal(st_klp_msg_decode(d, true, r, sizeof r, &dm, &e), (int)sizeof r);
    char txt[128];
    assert_string_equal(st_klp_decoded_format(&dm, txt, sizeof txt),
                        "pos pos=-5 small=1 buf=00 name=a?b?c");
    /* Truncated / overlong / unknown. */
    assert_int_equal(st_klp_msg_decode(d, true, r, 5, &dm, &e), ST_ERR_PROTO);
    uint8_t bad[] = { 0x03, 0x00, 0x00, 0x00, 0x09, 'x' };
    assert_int_equal(st_klp_msg_decode(d, true, bad, sizeof bad, &dm, &e), ST_ERR_PROTO);
    assert_non_null(strstr(e.msg, "past the end"));
    uint8_t unk[] = { 0x40 };
    assert_int_equal(st_klp_msg_decode(d, true, unk, 1, &dm, &e), ST_ERR_PROTO);
    assert_non_null(strstr(e.msg, "64"));
    /* Encoding errors name the command and parameter. */
    assert_int_equal(st_klp_msg_encode_text(d, "set pos=1 small=2", m, sizeof m, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "buf missing"));
    assert_int_equal(st_klp_msg_encode_text(d, "set pos=x small=2 buf=", m, sizeof m, &e),
                     ST_ERR_INVAL);
    assert_int_equal(st_klp_msg_encode_text(d, "nosuch", m, sizeof m, &e), ST_ERR_NOTFOUND);
    st_klp_dict_free(d);
}

static void test_block_finder(void **state)
{
    uint8_t blk[] = { 0x06, 0x12, 0x04, 0x0f, 0xef, 0x7e };
    bool ns = false;
    /* Byte by byte: need more until whole. */
    for (size_t i = 1; i < sizeof blk; i++)
        assert_int_equal(st_klp_block_check(&ns, blk, i).kind, ST_KLP_NEED_MORE);
    st_klp_check c = st_klp_block_check(&ns, blk, sizeof blk);
    assert_int_equal(c.kind, ST_KLP_BLOCK);
    /* A stray sync before a block goes quietly. */
    uint8_t s2[] = { 0x7e, 0x06, 0x12, 0x04, 0x0f, 0xef, 0x7e };
    c = st_klp_block_check(&ns, s2, sizeof s2);
    assert_int_equal(c.kind, ST_KLP_DROP);
    assert_int_equal(c.len, 1);
    assert_int_equal(c.reason, ST_KLP_DROP_STRAY);
    /* Bad CRC: drop through the trailing 0x7E, then the next block parses. */
    uint8_t s3[12];
    memcpy(s3, blk, 6);
    s3[4] ^= 1;
    memcpy(s3 + 6, blk, 6);
    c = st_klp_block_check(&ns, s3, sizeof s3);
    assert_int_equal(c.kind, ST_KLP_DROP);
    assert_int_equal(c.reason, ST_KLP_DROP_CRC);
    assert_int_equal(c.len, 6);
    assert_false(ns);
    c = st_klp_block_check(&ns, s3 + 6, 6);
    assert_int_equal(c.kind, ST_KLP_BLOCK);
    /* Junk with no sync: drop it all and keep need_sync, then drop through the 0x7E. */
    uint8_t junk[] = { 0x01, 0x02, 0x03 };
    c = st_klp_block_check(&ns, junk, sizeof junk);
    assert_int_equal(c.kind, ST_KLP_DROP);
    assert_int_equal(c.len, 3);
    assert_true(ns);
    uint8_t tail[] = { 0x44, 0x7e, 0x05, 0x10, 0x9e, 0x81, 0x7e };
    c = st_klp_block_check(&ns, tail, sizeof tail);
    assert_int_equal(c.kind, ST_KLP_DROP);
    assert_int_equal(c.len, 2);
    assert_false(ns);
    c = st_klp_block_check(&ns, tail + 2, 5);
    assert_int_equal(c.kind, ST_KLP_BLOCK);
    /* Length and sequence nibble out of range; a missing trailer. */
    uint8_t l4[] = { 0x04, 0x10, 0x00, 0x00, 0x7e };
    assert_int_equal(st_klp_block_check(&ns, l4, 5).reason, ST_KLP_DROP_LENGTH);
    ns = false;
    uint8_t sq[] = { 0x05, 0x20, 0x9e, 0x81, 0x7e };
    assert_int_equal(st_klp_block_check(&ns, sq, 5).reason, ST_KLP_DROP_SEQ);
    ns = false;
    uint8_t tr[] = { 0x05, 0x10, 0x9e, 0x81, 0x7d };
    assert_int_equal(st_klp_block_check(&ns, tr, 5).reason, ST_KLP_DROP_TRAILER);
    /* Content of 59 bytes is the most a block holds. */
    uint8_t big[64], out[70];
    memset(big, 0x11, sizeof big);
    assert_int_equal(st_klp_block_encode(0, big, 59, out), 64);
    assert_int_equal(st_klp_block_encode(0, big, 60, out), 0);
}

static void bad_dict(const char *json, const char *want)
{
    st_klp_dict *d = NULL;
    st_err e;
    assert_true(st_klp_dict_parse(json, strlen(json), &d, &e) < 0);
    assert_null(d);
    if (!strstr(e.msg, want))
        fail_msg("\"%s\" not in \"%s\"", want, e.msg);
}

static void test_dict_errors(void **state)
{
    bad_dict("", "JSON");
    bad_dict("[1]", "not a JSON object");
    bad_dict("{\"config\":{}}", "no \"version\"");
    bad_dict("{\"version\":\"x\",\"config\":{\"MCU\":\"a\"},\"commands\":{},\"responses\":{}}",
             "CLOCK_FREQ");
    bad_dict("{\"version\":\"x\",\"config\":{\"CLOCK_FREQ\":1},\"commands\":{\"a\":2,\"b\":2},"
             "\"responses\":{}}", "used twice");
    bad_dict("{\"version\":\"x\",\"config\":{\"CLOCK_FREQ\":1},\"commands\":{\"a b=%q\":2},"
             "\"responses\":{}}", "unknown type");
    bad_dict("{\"version\":\"x\",\"config\":{\"CLOCK_FREQ\":1},\"commands\":{\"a\":99999},"
             "\"responses\":{}}", "outside");
    bad_dict("{\"version\":\"x\",\"config\":{\"CLOCK_FREQ\":1},\"commands\":{},"
             "\"responses\":{}} junk", "trailing");
    bad_dict("{\"version\":\"x\",\"config\":{\"CLOCK_FREQ\":[1]},\"commands\":{},"
             "\"responses\":{}}", "neither integer nor string");
    bad_dict("{\"version\":\"x\",\"config\":{\"CLOCK_FREQ\":1},"
             "\"commands\":{\"identify offset=%u count=%c\":3},\"responses\":{}}",
             "not the protocol's");
    bad_dict("{\"version\":\"x\",\"config\":{\"CLOCK_FREQ\":1},"
             "\"commands\":{\"reset\":1},\"responses\":{}}", "not the protocol's");
    /* Deep nesting is refused by the tokenizer's depth limit. */
    char deep[400];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = '\0';
    bad_dict(deep, "JSON");
    /* zlib: truncated and not a stream. */
    st_klp_dict *d;
    st_err e;
    uint8_t z[] = { 0x78, 0xda, 0x9d, 0x59 };
    assert_int_equal(st_klp_dict_from_zlib(z, sizeof z, NULL, &d, &e), ST_ERR_PROTO);
    uint8_t nz[] = { 0x12, 0x34, 0x56 };
    assert_int_equal(st_klp_dict_from_zlib(nz, sizeof nz, NULL, &d, &e), ST_ERR_PROTO);
}

/* The dictionaries inside the four Cartographer V4 6.0.0 images (PROTOCOL.md 4.2). */
static void test_image_dictionaries(void **state)
{
    static const struct {
        const char *file;
        size_t off, zlen;
        const char *version;
        st_klp_transport tr;
        int32_t stream_id, data_id;
    } t[] = {
        { "CartographerV4_6.0.0_USB_lite_8kib_offset.bin", 0x5B98, 2827,
          "CARTOGRAPHER V4 6.0.0 Lite", ST_KLP_TRANSPORT_USB, 84, -20 },
        { "Katapult_plus_CartographerV4_6.0.0__USB_lite.bin", 0x7B98, 2827,
          "CARTOGRAPHER V4 6.0.0 Lite", ST_KLP_TRANSPORT_USB, 84, -20 },
        { "CartographerV4_6.0.0_CAN_1M_full_8kib_offset.bin", 0x5A18, 2904,
          "CARTOGRAPHER V4 6.0.0", ST_KLP_TRANSPORT_CAN, 85, -18 },
        { "Katapult_plus_CartographerV4_6.0.0__CAN_1M.bin", 0x7A18, 2904,
          "CARTOGRAPHER V4 6.0.0", ST_KLP_TRANSPORT_CAN, 85, -18 },
    };
    char path[512];
    snprintf(path, sizeof path, "%s%s", FWDIR, t[0].file);
    if (access(path, R_OK) != 0)
        skip(); /* ../shared/firmware is absent */
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        snprintf(path, sizeof path, "%s%s", FWDIR, t[i].file);
        size_t n;
        char *img = st_test_read_file(path, &n);
        assert_non_null(img);
        st_klp_dict *d;
        st_err e;
        size_t used = 0;
        int rc = st_klp_dict_from_zlib((uint8_t *)img + t[i].off, n - t[i].off, &used, &d, &e);
        if (rc)
            fail_msg("%s: %s", t[i].file, e.msg);
        assert_int_equal(used, t[i].zlen);
        assert_string_equal(st_klp_dict_version(d), t[i].version);
        assert_string_equal(st_klp_dict_build_versions(d), "");
        assert_string_equal(st_klp_dict_config_str(d, "MCU"), "stm32g431xx");
        assert_int_equal(st_klp_dict_config_int(d, "CLOCK_FREQ", 0), 170000000);
        uint32_t br;
        assert_int_equal(st_klp_dict_transport(d, &br), t[i].tr);
        assert_int_equal(br, t[i].tr == ST_KLP_TRANSPORT_CAN ? 1000000u : 0u);
        assert_int_equal(st_klp_dict_command(d, "cartographer_stream")->id, t[i].stream_id);
        assert_int_equal(st_klp_dict_response(d, "cartographer_data")->id, t[i].data_id);
        assert_int_equal(st_klp_dict_command(d, "identify")->id, 1);
        assert_int_equal(st_klp_dict_response(d, "identify_response")->id, 0);
        assert_string_equal(st_klp_dict_enum_text(d, "static_string_id", 8), "Command request");
        assert_true(st_klp_dict_count(d, false) > 50);
        st_klp_dict_free(d);
        free(img);
    }
}

/* Every line of PROTOCOL.md's vectors block holds (section 9). */
static void test_protocol_md_vectors(void **state)
{
    FILE *f = fopen(STATION_SOURCE_DIR "/protocols/klipper/PROTOCOL.md", "r");
    assert_non_null(f);
    st_klp_dict *d = subset();
    char line[512];
    bool in = false;
    unsigned n = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "```vectors", 10) == 0) {
            in = true;
            continue;
        }
        if (in && strncmp(line, "```", 3) == 0)
            break;
        if (!in)
            continue;
        char *bar1 = strchr(line, '|'), *bar2 = bar1 ? strchr(bar1 + 1, '|') : NULL;
        assert_non_null(bar2);
        *bar1 = *bar2 = '\0';
        char *text = line + 2;
        for (char *e = bar1 - 1; e > text && *e == ' '; e--)
            *e = '\0';
        unsigned seq = (unsigned)atoi(bar1 + 1);
        if (line[0] == 'T') {
            block_of(d, text, (uint8_t)seq, bar2 + 1);
        } else if (line[0] == 'R') {
            uint8_t b[64];
            size_t bl = unhex(bar2 + 1, b, sizeof b);
            assert_int_equal(st_klp_block_seq(b), seq);
            assert_int_equal(b[0], bl);
            decode_of(d, bar2 + 1, text);
        } else {
            assert_int_equal(line[0], 'E');
            uint8_t exp[8], got[8];
            size_t el = unhex(bar2 + 1, exp, sizeof exp);
            assert_int_equal(st_klp_block_encode((uint8_t)seq, NULL, 0, got), el);
            assert_memory_equal(got, exp, el);
        }
        n++;
    }
    fclose(f);
    assert_true(n >= 17);
    st_klp_dict_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc),
        cmocka_unit_test(test_empty_blocks),
        cmocka_unit_test(test_golden_messages),
        cmocka_unit_test(test_vlq_vectors),
        cmocka_unit_test(test_signed_params),
        cmocka_unit_test(test_block_finder),
        cmocka_unit_test(test_dict_errors),
        cmocka_unit_test(test_image_dictionaries),
        cmocka_unit_test(test_protocol_md_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
