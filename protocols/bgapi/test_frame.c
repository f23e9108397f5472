/* BGAPI framing: the example frames of PROTOCOL.md as golden vectors, header fields,
 * the frame finder split at every boundary, resync after garbage, both rule sets, and the
 * result-code names of both bootloader generations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/bgapi/frame.h"

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    unsigned v;
    int used;
    while (sscanf(s, "%2x%n", &v, &used) == 1) {
        assert_true(n < cap);
        out[n++] = (uint8_t)v;
        s += used;
        while (*s == ' ')
            s++;
    }
    return n;
}

/* Every vector: its name in PROTOCOL.md and the bytes our code makes (or decodes). */
typedef struct vec {
    const char *name;
    uint8_t bytes[64];
    size_t n;
    int seen;
} vec;

static void make_vectors(vec *v, size_t *count)
{
    size_t i = 0;
#define ADD(nm, expr)                                                                      \
    do {                                                                                   \
        v[i].name = nm;                                                                    \
        v[i].n = (expr);                                                                   \
        assert_true(v[i].n > 0);                                                           \
        i++;                                                                               \
    } while (0)
    ADD("cmd.dfu_reset(1)", st_bgapi_cmd_dfu_reset(1, v[i].bytes, 64));
    ADD("cmd.dfu_reset(0)", st_bgapi_cmd_dfu_reset(0, v[i].bytes, 64));
    ADD("cmd.system_reset(1)", st_bgapi_cmd_system_reset(1, v[i].bytes, 64));
    ADD("cmd.system_reset(0)", st_bgapi_cmd_system_reset(0, v[i].bytes, 64));
    ADD("cmd.flash_set_address(0)", st_bgapi_cmd_set_address(0, v[i].bytes, 64));
    const uint8_t four[4] = {0xeb, 0x17, 0xa6, 0x03};
    ADD("cmd.flash_upload(eb17a603)", st_bgapi_cmd_upload(four, 4, v[i].bytes, 64));
    ADD("cmd.flash_upload_finish", st_bgapi_cmd_upload_finish(v[i].bytes, 64));
    uint8_t p[18];
    st_bgapi_put_le16(p, 0);
    ADD("rsp.flash_set_address(0)",
        st_bgapi_encode(false, 0, ST_BGAPI_DFU_SET_ADDRESS, p, 2, v[i].bytes, 64));
    ADD("rsp.flash_upload(0)",
        st_bgapi_encode(false, 0, ST_BGAPI_DFU_UPLOAD, p, 2, v[i].bytes, 64));
    ADD("rsp.flash_upload_finish(0)",
        st_bgapi_encode(false, 0, ST_BGAPI_DFU_UPLOAD_FINISH, p, 2, v[i].bytes, 64));
    st_bgapi_put_le16(p, 0x0b03);
    ADD("rsp.flash_upload(0x0b03)",
        st_bgapi_encode(false, 0, ST_BGAPI_DFU_UPLOAD, p, 2, v[i].bytes, 64));
    st_bgapi_put_le16(p, 0x0046);
    ADD("rsp.flash_upload_finish(0x0046)",
        st_bgapi_encode(false, 0, ST_BGAPI_DFU_UPLOAD_FINISH, p, 2, v[i].bytes, 64));
    st_bgapi_put_le32(p, 0x02040000);
    ADD("evt.dfu_boot(0x02040000)",
        st_bgapi_encode(true, 0, ST_BGAPI_EVT_DFU_BOOT, p, 4, v[i].bytes, 64));
    st_bgapi_put_le32(p, 0x010c0000);
    ADD("evt.dfu_boot(0x010c0000)",
        st_bgapi_encode(true, 0, ST_BGAPI_EVT_DFU_BOOT, p, 4, v[i].bytes, 64));
    st_bgapi_put_le16(p, 0x0b03);
    ADD("evt.dfu_boot_failure(0x0b03)",
        st_bgapi_encode(true, 0, ST_BGAPI_EVT_DFU_BOOT_FAILURE, p, 2, v[i].bytes, 64));
    st_bgapi_put_le16(p, 0x0046);
    ADD("evt.dfu_boot_failure(0x0046)",
        st_bgapi_encode(true, 0, ST_BGAPI_EVT_DFU_BOOT_FAILURE, p, 2, v[i].bytes, 64));
    /* 2.13.10 build 1234, bootloader 0x010c0000, hw 1, hash 0xdeadbeef */
    st_bgapi_put_le16(p, 2);
    st_bgapi_put_le16(p + 2, 13);
    st_bgapi_put_le16(p + 4, 10);
    st_bgapi_put_le16(p + 6, 1234);
    st_bgapi_put_le32(p + 8, 0x010c0000);
    st_bgapi_put_le16(p + 12, 1);
    st_bgapi_put_le32(p + 14, 0xdeadbeef);
    ADD("evt.system_boot(18)",
        st_bgapi_encode(true, 1, ST_BGAPI_EVT_SYSTEM_BOOT, p, 18, v[i].bytes, 64));
    ADD("evt.system_boot(14)",
        st_bgapi_encode(true, 1, ST_BGAPI_EVT_SYSTEM_BOOT, p, 14, v[i].bytes, 64));
#undef ADD
    *count = i;
}

static void test_protocol_md_vectors(void **state)
{
    vec v[32];
    size_t nv;
    memset(v, 0, sizeof v);
    make_vectors(v, &nv);
    FILE *fp = fopen(STATION_SOURCE_DIR "/protocols/bgapi/PROTOCOL.md", "r");
    assert_non_null(fp);
    char line[512], name[128];
    bool fenced = false;
    int lines = 0;
    while (fgets(line, sizeof line, fp)) {
        if (strncmp(line, "```", 3) == 0) {
            fenced = !fenced;
            continue;
        }
        int used;
        if (!fenced || sscanf(line, "%127s%n", name, &used) != 1)
            continue;
        if (strncmp(name, "cmd.", 4) && strncmp(name, "rsp.", 4) && strncmp(name, "evt.", 4))
            continue;
        uint8_t b[64];
        size_t n = unhex(line + used + strspn(line + used, " "), b, sizeof b);
        size_t i;
        for (i = 0; i < nv; i++)
            if (strcmp(v[i].name, name) == 0)
                break;
        if (i == nv)
            fail_msg("PROTOCOL.md vector %s: no such vector in the test", name);
        if (n != v[i].n || memcmp(b, v[i].bytes, n) != 0)
            fail_msg("PROTOCOL.md vector %s differs from what the code makes", name);
        /* And the finder takes it whole, as a host (responses, events) or the device. */
        st_bgapi_rules host = {.check_known = true};
        st_bgapi_rules dev = {.max_payload = 255, .commands_only = true};
        st_bgapi_check c = st_bgapi_frame_check(b, n, name[0] == 'c' ? &dev : &host);
        assert_int_equal(c.kind, ST_BGAPI_FRAME);
        assert_int_equal(c.len, n);
        v[i].seen++;
        lines++;
    }
    fclose(fp);
    for (size_t i = 0; i < nv; i++)
        if (!v[i].seen)
            fail_msg("vector %s is not in PROTOCOL.md", v[i].name);
    assert_int_equal(lines, (int)nv);
}

static void test_header_fields(void **state)
{
    uint8_t f[ST_BGAPI_FRAME_MAX];
    uint8_t p[0x205];
    memset(p, 0x11, sizeof p);
    size_t n = st_bgapi_encode(true, 0x05, 0x07, p, 0x205, f, sizeof f);
    assert_int_equal(n, 4 + 0x205);
    assert_int_equal(f[0], 0xa2); /* event, Bluetooth, length bits 10..8 = 2 */
    assert_int_equal(f[1], 0x05);
    st_bgapi_hdr h;
    st_bgapi_hdr_decode(f, &h);
    assert_true(h.event);
    assert_int_equal(h.tech, ST_BGAPI_TECH_BT);
    assert_int_equal(h.len, 0x205);
    assert_int_equal(h.cls, 5);
    assert_int_equal(h.id, 7);
    /* As BGLIB_MSG_ID/BGLIB_MSG_LEN see the little-endian u32 header. */
    uint32_t hdr = st_bgapi_le32(f);
    assert_int_equal(hdr & 0xFFFF00F8u, 0x070500a0u);
    assert_int_equal(((hdr & 7) << 8) | ((hdr >> 8) & 0xff), 0x205);
    assert_int_equal(st_bgapi_encode(false, 0, 0, p, ST_BGAPI_MAX_PAYLOAD + 1, f, sizeof f), 0);
    assert_int_equal(st_bgapi_encode(false, 0, 0, p, 8, f, 11), 0);
    assert_int_equal(st_bgapi_cmd_upload(p, 256, f, sizeof f), 0);
    /* 255 data bytes: payload 256, the ninth length bit set. */
    assert_int_equal(st_bgapi_cmd_upload(p, 255, f, sizeof f), 4 + 256);
    assert_int_equal(f[0], 0x21);
    assert_int_equal(f[1], 0x00);
    assert_int_equal(f[4], 255);
}

static void test_decode(void **state)
{
    uint8_t f[64];
    st_bgapi_msg_info m;
    size_t n = unhex("a0 12 01 00 02 00 0d 00 0a 00 d2 04 00 00 0c 01 01 00 ef be ad de", f,
                     sizeof f);
    st_bgapi_decode(f, n, &m);
    assert_int_equal(m.kind, ST_BGAPI_MSG_EVT_SYSTEM_BOOT);
    assert_int_equal(m.boot.major, 2);
    assert_int_equal(m.boot.minor, 13);
    assert_int_equal(m.boot.patch, 10);
    assert_int_equal(m.boot.build, 1234);
    assert_int_equal(m.boot.bootloader, 0x010c0000);
    assert_int_equal(m.boot.hw, 1);
    assert_true(m.boot.has_hash);
    assert_int_equal(m.boot.hash, 0xdeadbeef);
    n = unhex("a0 0e 01 00 02 00 07 00 00 00 01 00 00 00 00 01 01 00", f, sizeof f);
    st_bgapi_decode(f, n, &m);
    assert_int_equal(m.kind, ST_BGAPI_MSG_EVT_SYSTEM_BOOT);
    assert_int_equal(m.boot.minor, 7);
    assert_false(m.boot.has_hash);
    n = unhex("a0 02 00 01 03 0b", f, sizeof f);
    st_bgapi_decode(f, n, &m);
    assert_int_equal(m.kind, ST_BGAPI_MSG_EVT_DFU_BOOT_FAILURE);
    assert_int_equal(m.reason, 0x0b03);
    n = unhex("20 02 00 03 46 00", f, sizeof f);
    st_bgapi_decode(f, n, &m);
    assert_int_equal(m.kind, ST_BGAPI_MSG_RSP_FINISH);
    assert_int_equal(m.result, 0x46);
    /* Wrong sizes are not the known message. */
    n = unhex("a0 03 00 00 00 00 04", f, sizeof f);
    st_bgapi_decode(f, n, &m);
    assert_int_equal(m.kind, ST_BGAPI_MSG_OTHER);
    n = unhex("a0 0d 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00", f, sizeof f);
    st_bgapi_decode(f, n, &m);
    assert_int_equal(m.kind, ST_BGAPI_MSG_OTHER);
}

/* Feed a stream to the finder in pieces split at `cut`, collecting frames. */
static int run_finder(const uint8_t *s, size_t n, size_t cut, const st_bgapi_rules *r,
                      size_t *lens, int max)
{
    uint8_t buf[1024];
    size_t have = 0, fed = 0;
    int frames = 0;
    while (fed < n || have) {
        size_t take = fed < cut ? cut - fed : n - fed;
        if (take > n - fed)
            take = n - fed;
        memcpy(buf + have, s + fed, take);
        have += take;
        fed += take;
        for (;;) {
            st_bgapi_check c = st_bgapi_frame_check(buf, have, r);
            if (c.kind == ST_BGAPI_NEED_MORE)
                break;
            assert_true(c.len >= 1 && c.len <= have);
            if (c.kind == ST_BGAPI_FRAME) {
                assert_true(frames < max);
                lens[frames++] = c.len;
            }
            memmove(buf, buf + c.len, have - c.len);
            have -= c.len;
        }
        if (fed == n)
            break;
    }
    return frames;
}

static void test_split_every_boundary(void **state)
{
    uint8_t s[128];
    size_t n = unhex("a0 04 00 00 00 00 04 02 20 02 00 01 00 00 20 02 00 02 46 00 "
                     "a0 12 01 00 02 00 0d 00 0a 00 d2 04 00 00 0c 01 01 00 ef be ad de "
                     "20 02 00 03 00 00",
                     s, sizeof s);
    st_bgapi_rules host = {.check_known = true};
    for (size_t cut = 0; cut <= n; cut++) {
        size_t lens[8];
        int k = run_finder(s, n, cut, &host, lens, 8);
        assert_int_equal(k, 5);
        assert_int_equal(lens[0], 8);
        assert_int_equal(lens[1], 6);
        assert_int_equal(lens[2], 6);
        assert_int_equal(lens[3], 22);
        assert_int_equal(lens[4], 6);
    }
}

static void test_resync_after_garbage(void **state)
{
    /* Garbage: bytes without the technology bits, an "event" dfu_boot with length 7 (no
     * such thing) and a response to finish with length 9: the shape check drops them. */
    uint8_t s[128];
    size_t n = unhex("00 ff 55 a0 07 00 00 13 20 09 00 03 "
                     "a0 04 00 00 00 00 04 02 20 02 00 02 00 00",
                     s, sizeof s);
    st_bgapi_rules host = {.check_known = true};
    size_t pos = 0, drops = 0;
    int frames = 0;
    while (pos < n) {
        st_bgapi_check c = st_bgapi_frame_check(s + pos, n - pos, &host);
        assert_int_not_equal(c.kind, ST_BGAPI_NEED_MORE);
        if (c.kind == ST_BGAPI_DROP) {
            assert_true(c.reason == ST_BGAPI_DROP_SYNC || c.reason == ST_BGAPI_DROP_SHAPE);
            drops += c.len;
        } else {
            frames++;
        }
        pos += c.len;
    }
    assert_int_equal(frames, 2);
    assert_int_equal(drops, 12);
    assert_string_equal(st_bgapi_drop_reason_name(ST_BGAPI_DROP_SHAPE),
                        "known message with impossible length");
}

static void test_device_rules(void **state)
{
    /* The bootloader takes only byte 0 == 0x20: an event header or a two-byte length is
     * skipped one byte at a time until a 0x20. */
    st_bgapi_rules dev = {.max_payload = 255, .commands_only = true};
    uint8_t s[16];
    size_t n = unhex("a0 21 20 00 00 03", s, sizeof s);
    st_bgapi_check c = st_bgapi_frame_check(s, n, &dev);
    assert_int_equal(c.kind, ST_BGAPI_DROP);
    assert_int_equal(c.reason, ST_BGAPI_DROP_SYNC);
    assert_int_equal(c.len, 2);
    c = st_bgapi_frame_check(s + 2, n - 2, &dev);
    assert_int_equal(c.kind, ST_BGAPI_FRAME);
    assert_int_equal(c.len, 4);
    /* Length over the limit. */
    n = unhex("20 ff 00 02", s, sizeof s);
    st_bgapi_rules small = {.max_payload = 100};
    c = st_bgapi_frame_check(s, n, &small);
    assert_int_equal(c.kind, ST_BGAPI_DROP);
    assert_int_equal(c.reason, ST_BGAPI_DROP_LENGTH);
    assert_int_equal(c.len, 4); /* to the next byte that could start a frame: none */
    /* Not a Bluetooth technology type (0x28 = technology 0b0101). */
    n = unhex("28 00 00 00", s, sizeof s);
    c = st_bgapi_frame_check(s, n, NULL);
    assert_int_equal(c.kind, ST_BGAPI_DROP);
    assert_int_equal(c.len, 4);
    c = st_bgapi_frame_check(s, 0, NULL);
    assert_int_equal(c.kind, ST_BGAPI_NEED_MORE);
}

static void test_result_names(void **state)
{
    char b[96];
    assert_string_equal(st_bgapi_result_name(0x0b03, ST_BGAPI_GEN_SDK2, b, sizeof b),
                        "bg_err_security_image_checksum_error");
    assert_string_equal(st_bgapi_result_name(0x0b01, ST_BGAPI_GEN_SDK2, b, sizeof b),
                        "bg_err_security_image_signature_verification_failed");
    assert_string_equal(st_bgapi_result_name(0x0046, ST_BGAPI_GEN_GSDK4, b, sizeof b),
                        "SL_STATUS_SECURITY_IMAGE_CHECKSUM_ERROR");
    assert_string_equal(st_bgapi_result_name(0x0046, ST_BGAPI_GEN_UNKNOWN, b, sizeof b),
                        "SL_STATUS_SECURITY_IMAGE_CHECKSUM_ERROR");
    assert_string_equal(st_bgapi_result_name(0x0b03, ST_BGAPI_GEN_UNKNOWN, b, sizeof b),
                        "bg_err_security_image_checksum_error");
    assert_string_equal(st_bgapi_result_name(0x0180, ST_BGAPI_GEN_SDK2, b, sizeof b),
                        "bg_err_invalid_param");
    assert_string_equal(st_bgapi_result_name(0x0021, ST_BGAPI_GEN_GSDK4, b, sizeof b),
                        "SL_STATUS_INVALID_PARAMETER");
    assert_string_equal(st_bgapi_result_name(0x0212, ST_BGAPI_GEN_SDK2, b, sizeof b),
                        "bg_errspc_bt code 0x12");
    assert_string_equal(st_bgapi_result_name(0x0d05, ST_BGAPI_GEN_SDK2, b, sizeof b),
                        "bg_errspc_l2cap code 0x05");
    assert_string_equal(st_bgapi_result_name(0x0000, ST_BGAPI_GEN_SDK2, b, sizeof b),
                        "bg_err_success");
    assert_string_equal(st_bgapi_result_name(0x0000, ST_BGAPI_GEN_GSDK4, b, sizeof b),
                        "SL_STATUS_OK");
    /* Every code of either space gets a non-empty name. */
    for (unsigned c = 0; c <= 0xffff; c++) {
        assert_true(st_bgapi_result_name((uint16_t)c, ST_BGAPI_GEN_SDK2, b, sizeof b)[0]);
        assert_true(st_bgapi_result_name((uint16_t)c, ST_BGAPI_GEN_GSDK4, b, sizeof b)[0]);
    }
    assert_string_equal(st_bgapi_gen_name(ST_BGAPI_GEN_SDK2), "gsdk<=3.2");
    assert_string_equal(st_bgapi_gen_name(ST_BGAPI_GEN_GSDK4), "gsdk>=4.0");
}

static void test_random_never_stalls(void **state)
{
    /* Bounded random input: the finder always makes progress and never claims more than
     * it was given. */
    uint32_t seed = 12345;
    uint8_t buf[600];
    st_bgapi_rules rules[3] = {{.check_known = true, .max_payload = 256},
                               {.max_payload = 255, .commands_only = true},
                               {0}};
    for (int round = 0; round < 3000; round++) {
        size_t n = 0;
        seed = seed * 1664525u + 1013904223u;
        size_t len = seed % sizeof buf;
        for (; n < len; n++) {
            seed = seed * 1664525u + 1013904223u;
            buf[n] = (uint8_t)(seed >> 24);
            if ((seed & 0x300) == 0)
                buf[n] = (seed & 0x80) ? 0xa0 : 0x20; /* plenty of header-looking bytes */
        }
        const st_bgapi_rules *r = &rules[round % 3];
        size_t pos = 0;
        while (pos < n) {
            st_bgapi_check c = st_bgapi_frame_check(buf + pos, n - pos, r);
            if (c.kind == ST_BGAPI_NEED_MORE)
                break;
            assert_true(c.len >= 1 && c.len <= n - pos);
            if (c.kind == ST_BGAPI_FRAME) {
                st_bgapi_msg_info m;
                st_bgapi_decode(buf + pos, c.len, &m);
                assert_true(c.len >= 4);
            }
            pos += c.len;
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protocol_md_vectors), cmocka_unit_test(test_header_fields),
        cmocka_unit_test(test_decode),              cmocka_unit_test(test_split_every_boundary),
        cmocka_unit_test(test_resync_after_garbage), cmocka_unit_test(test_device_rules),
        cmocka_unit_test(test_result_names),        cmocka_unit_test(test_random_never_stalls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
