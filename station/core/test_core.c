/* Unit tests for station core: errors, text safety, digests, images. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "station/core/clock.h"
#include "station/core/digest.h"
#include "station/core/err.h"
#include "station/core/image.h"
#include "station/core/measure.h"
#include "station/core/mcu.h"
#include "station/core/text.h"
#include "station/core/yamldoc.h"
#include "station/core/testutil.h"

static void test_err_prefix_chain(void **state)
{
    st_err e;
    st_err_clear(&e);
    assert_int_equal(st_err_set(&e, ST_ERR_DEVICE, "device reported errPROG"), ST_ERR_DEVICE);
    st_err_prefix(&e, "write 0x%08x", 0x08004000u);
    st_err_prefix(&e, "dfu");
    assert_string_equal(e.msg, "dfu: write 0x08004000: device reported errPROG");
    assert_int_equal(e.code, ST_ERR_DEVICE);
    st_err_prefix(NULL, "x"); /* no buffer: nothing to do, nothing to return */
    /* st_err_wrap returns the code it is given, with or without a buffer (issue 7: a
     * NULL buffer used to turn every code into ST_ERR_IO). */
    for (int code = ST_ERR_INVAL; code >= ST_ERR_CANCELLED; code--) {
        assert_int_equal(st_err_wrap(NULL, code, "step %d", 1), code);
        st_err w;
        st_err_clear(&w);
        assert_int_equal(st_err_wrap(&w, code, "step %d", 1), code);
        assert_int_equal(w.code, code);
        char want[128];
        snprintf(want, sizeof want, "step 1: %s", st_strerror(code));
        assert_string_equal(w.msg, want);
    }
    assert_int_equal(st_err_wrap(NULL, 0, "bug"), ST_ERR_IO);
    assert_int_equal(st_err_wrap(&e, ST_ERR_STALL, "GETSTATUS"), ST_ERR_STALL);
    assert_int_equal(e.code, ST_ERR_STALL);
    assert_string_equal(e.msg, "GETSTATUS: dfu: write 0x08004000: device reported errPROG");
    assert_string_equal(st_strerror(ST_ERR_VERIFY), "verify failed");
}

static void test_text(void **state)
{
    char out[64];
    assert_string_equal(st_text_filename("../../x\n: y", out, sizeof out), "_._.._x___y");
    assert_string_equal(st_text_filename("", out, sizeof out), "unknown");
    assert_string_equal(st_text_filename(".hidden", out, sizeof out), "_hidden");
    /* Names a file gives its own things (image roles). */
    assert_true(st_text_is_name("combined"));
    assert_true(st_text_is_name("boot-loader_v2.1"));
    assert_true(st_text_is_name("a234567890123456789012345678901")); /* 31 */
    assert_false(st_text_is_name("a2345678901234567890123456789012")); /* 32 */
    assert_false(st_text_is_name(""));
    assert_false(st_text_is_name(NULL));
    assert_false(st_text_is_name("my image"));
    assert_false(st_text_is_name("x\n"));
    assert_string_equal(st_text_printable("a\x1b[2Jb\xff", out, sizeof out), "a?[2Jb?");
    assert_string_equal(st_text_filename("208A31574253", out, 8), "208A315");
}

/* Padded digests are what an independent hash of the padded bytes gives, for each block
 * size, and stay the same when asked again (from the cache) or from several threads. */
static void *padded_thread(void *arg)
{
    uint8_t s1[ST_SHA1_LEN];
    st_image_padded_digests(arg, 64, s1, NULL);
    return NULL;
}

static void test_image_padded_digests(void **state)
{
    (void)state;
    uint8_t data[1000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 1);
    st_image *img;
    assert_int_equal(st_image_from_memory("p.bin", data, sizeof data, 0x08002000, &img, NULL), 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, padded_thread, img), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    const uint32_t blocks[] = { 64, 512, 1, 64, 128, 256, 8 };
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
        size_t n = (sizeof data + blocks[b] - 1) / blocks[b] * blocks[b];
        uint8_t *p = malloc(n), w1[ST_SHA1_LEN], w2[ST_SHA256_LEN], g1[ST_SHA1_LEN],
                g2[ST_SHA256_LEN];
        memset(p, 0xFF, n);
        memcpy(p, data, sizeof data);
        st_sha1(p, n, w1);
        st_sha256(p, n, w2);
        free(p);
        assert_int_equal(st_image_padded_digests(img, blocks[b], g1, g2), 0);
        assert_memory_equal(g1, w1, sizeof w1);
        assert_memory_equal(g2, w2, sizeof w2);
    }
    uint8_t u[ST_SHA256_LEN];
    assert_int_equal(st_image_padded_digests(img, 0, NULL, u), 0);
    assert_memory_equal(u, img->sha256, sizeof u);
    st_image_free(img);
}

static void test_digest_vectors(void **state)
{
    uint8_t d[32];
    char hex[65];
    st_sha256("abc", 3, d);
    st_hex(d, 32, false, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    st_sha1("abc", 3, d);
    st_hex(d, 20, true, hex);
    assert_string_equal(hex, "A9993E364706816ABA3E25717850C26C9CD0D89D");
    st_digest *g = st_digest_new(ST_DIGEST_SHA256);
    st_digest_update(g, "a", 1);
    st_digest_update(g, "bc", 2);
    uint8_t d2[32];
    assert_int_equal(st_digest_final(g, d2), 32);
    st_sha256("abc", 3, d);
    assert_memory_equal(d, d2, 32);
    st_digest_free(g);
    uint8_t b[2];
    assert_true(st_unhex("aB", b, 1));
    assert_false(st_unhex("zz", b, 1));
    assert_false(st_unhex("abc", b, 1));
}

/* A minimal valid G431 image: SP at SRAM top, reset vector inside, Thumb bit. */
static uint8_t *make_image(size_t n)
{
    uint8_t *p = malloc(n);
    memset(p, 0xA5, n);
    uint32_t sp = 0x20008000u, rv = 0x08000101u;
    memcpy(p, &sp, 4);
    memcpy(p + 4, &rv, 4);
    return p;
}

static char *write_tmp(const void *data, size_t n)
{
    char tmpl[256];
    char *path = strdup(st_test_tmpl(tmpl, sizeof tmpl, "st-core"));
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
    return path;
}

static void test_image_bin_validate(void **state)
{
    const st_mcu *g4 = st_mcu_find("STM32G431");
    assert_non_null(g4);
    uint8_t *raw = make_image(1024);
    char *path = write_tmp(raw, 1024);
    st_image *img = NULL;
    st_err e;
    assert_int_equal(st_image_load(path, 0x08000000u, &img, &e), 0);
    assert_int_equal(img->size, 1024);
    assert_string_equal(img->format, "bin");
    assert_int_equal(st_image_validate(img, g4, img->sha256_hex, &e), 0);

    /* wrong pin */
    char bad[65];
    memcpy(bad, img->sha256_hex, 65);
    bad[0] = bad[0] == '0' ? '1' : '0';
    assert_int_equal(st_image_check_digest(img, bad, &e), ST_ERR_MISMATCH);
    assert_non_null(strstr(e.msg, "the job pins"));
    assert_int_equal(st_image_check_digest(img, "nothex", &e), ST_ERR_INVAL);

    /* does not fit */
    img->load_addr = 0x0801FF00u;
    assert_int_equal(st_image_check_fit(img, g4->flash_start, g4->flash_size, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "do not fit"));
    img->load_addr = 0x08000000u;

    /* SP outside SRAM */
    uint32_t sp = 0x10000000u;
    memcpy(img->data, &sp, 4);
    assert_int_equal(st_image_check_vectors(img, g4, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "initial stack pointer"));
    sp = 0x20008000u;
    memcpy(img->data, &sp, 4);
    /* no Thumb bit */
    uint32_t rv = 0x08000100u;
    memcpy(img->data + 4, &rv, 4);
    assert_int_equal(st_image_check_vectors(img, g4, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "Thumb"));
    /* points past the image */
    rv = 0x08010001u;
    memcpy(img->data + 4, &rv, 4);
    assert_int_equal(st_image_check_vectors(img, g4, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "outside the image"));

    st_image_free(img);
    unlink(path);
    free(path);
    free(raw);

    assert_int_equal(st_image_load("/nonexistent/x.bin", 0, &img, &e), ST_ERR_NOTFOUND);
    assert_non_null(strstr(e.msg, "/nonexistent/x.bin"));
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Build a DfuSe file with two elements and a 16-byte gap between them. */
static size_t make_dfuse(uint8_t *f, int corrupt_crc)
{
    size_t o = 0;
    memcpy(f, "DfuSe", 5);
    f[5] = 1;
    f[10] = 1;
    o = 11;
    uint8_t *t = f + o;
    memset(t, 0, 274);
    memcpy(t, "Target", 6);
    put32(t + 270, 2);
    o += 274;
    uint8_t a[16], b[8];
    memset(a, 0x11, sizeof a);
    memset(b, 0x22, sizeof b);
    put32(f + o, 0x08000000u);
    put32(f + o + 4, sizeof a);
    memcpy(f + o + 8, a, sizeof a);
    o += 8 + sizeof a;
    put32(f + o, 0x08000020u);
    put32(f + o + 4, sizeof b);
    memcpy(f + o + 8, b, sizeof b);
    o += 8 + sizeof b;
    put32(f + 6, (uint32_t)o); /* prefix image size (unchecked) */
    uint8_t *s = f + o;
    memset(s, 0, 16);
    s[6] = 0x1A;
    s[7] = 0x01;
    memcpy(s + 8, "UFD", 3);
    s[11] = 16;
    o += 16;
    uint32_t crc = ~(uint32_t)crc32(0L, f, (uInt)(o - 4));
    put32(f + o - 4, corrupt_crc ? crc ^ 1 : crc);
    return o;
}

static void test_image_dfuse(void **state)
{
    uint8_t f[512];
    size_t n = make_dfuse(f, 0);
    char *path = write_tmp(f, n);
    st_image *img = NULL;
    st_err e;
    assert_int_equal(st_image_load(path, 0, &img, &e), 0);
    assert_string_equal(img->format, "dfu");
    assert_int_equal(img->load_addr, 0x08000000u);
    assert_int_equal(img->size, 0x28);
    assert_int_equal(img->data[0], 0x11);
    assert_int_equal(img->data[0x10], 0xFF);
    assert_int_equal(img->data[0x20], 0x22);
    st_image_free(img);
    assert_int_equal(st_image_load(path, 0x08004000u, &img, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "load address"));
    unlink(path);
    free(path);

    n = make_dfuse(f, 1);
    path = write_tmp(f, n);
    assert_int_equal(st_image_load(path, 0, &img, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "CRC"));
    unlink(path);
    free(path);
}

static void test_real_firmware(void **state)
{
    const char *p = STATION_SHARED_DIR "/firmware/cartographer-v4/6.0.0/Katapult_plus_CartographerV4_6.0.0__USB_lite.bin";
    if (access(p, R_OK) != 0)
        skip();
    st_image *img = NULL;
    st_err e;
    assert_int_equal(st_image_load(p, 0x08000000u, &img, &e), 0);
    assert_string_equal(img->sha256_hex,
                        "fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c");
    assert_int_equal(st_image_validate(img, st_mcu_find("stm32g431xx"), img->sha256_hex, &e), 0);
    st_image_free(img);
}

/* The link address from the vector table; Katapult's mark; the USB device descriptor. */
static void test_image_facts(void **state)
{
    const st_mcu *g4 = st_mcu_find("stm32g431xx");
    uint8_t *raw = make_image(16384);
    uint32_t rv = 0x080021ddu, nmi = 0x080021d9u;
    memcpy(raw + 4, &rv, 4);
    memcpy(raw + 8, &nmi, 4);
    st_image_facts f;
    st_image_facts_of(raw, 16384, g4, &f);
    assert_true(f.has_vectors);
    assert_true(f.link_known);
    assert_int_equal(f.link_addr, 0x08002000u);
    assert_false(f.katapult);
    assert_false(f.usb_device);
    st_image *img;
    st_err e;
    assert_int_equal(st_image_from_memory("app.bin", raw, 16384, 0x08000000u, &img, &e), 0);
    assert_int_equal(st_image_validate(img, g4, NULL, &e), ST_ERR_MISMATCH);
    assert_non_null(strstr(e.msg, "linked for 0x08002000"));
    assert_non_null(strstr(e.msg, "written at 0x08000000"));
    img->load_addr = 0x08002000u;
    assert_int_equal(st_image_validate(img, g4, NULL, &e), 0);
    st_image_free(img);
    /* Katapult: the mark before the reset handler; a USB device descriptor 1d50:6177. */
    rv = 0x080000a1u;
    memcpy(raw + 4, &rv, 4);
    memcpy(raw + 8, &rv, 4);
    memcpy(raw + 0xA0 - 8, "CanBoot!", 8);
    static const uint8_t desc[18] = { 0x12, 0x01, 0x00, 0x02, 0x02, 0x00, 0x00, 0x10, 0x50,
                                      0x1d, 0x77, 0x61, 0x00, 0x01, 0x01, 0x02, 0x03, 0x01 };
    memcpy(raw + 0x400, desc, sizeof desc);
    st_image_facts_of(raw, 16384, g4, &f);
    assert_int_equal(f.link_addr, 0x08000000u);
    assert_true(f.katapult);
    assert_true(f.usb_device);
    assert_int_equal(f.usb_vid, 0x1d50);
    assert_int_equal(f.usb_pid, 0x6177);
    assert_int_equal(f.usb_bcd_device, 0x0100);
    assert_string_equal(f.usb_product, ""); /* no string descriptors behind it */
    /* With them (usb_cdc.c's layout: padding, language ids, strings by index; a control
     * character is shown as '?'; a descriptor cut short by the buffer's end is ignored). */
    static const uint8_t strs[] = { 0, 0, 4, 3, 0x09, 0x04, 10, 3, 'k', 0, 'a', 0, 't', 0,
                                    7, 0, 6, 3, 'g', 0, '4', 0 };
    memcpy(raw + 0x400 + 18, strs, sizeof strs);
    st_image_facts_of(raw, 16384, g4, &f);
    assert_string_equal(f.usb_manufacturer, "kat?");
    assert_string_equal(f.usb_product, "g4");
    assert_string_equal(f.usb_serial, "");
    st_image_facts_of(raw, 0x400 + 18 + 8, g4, &f);
    assert_true(f.usb_device);
    assert_string_equal(f.usb_manufacturer, "");
    /* Garbage: no vectors, nothing known; short buffers are safe. */
    memset(raw, 0xFF, 16384);
    st_image_facts_of(raw, 16384, g4, &f);
    assert_false(f.has_vectors);
    assert_false(f.link_known);
    st_image_facts_of(raw, 3, g4, &f);
    assert_false(f.has_vectors);
    free(raw);

    static const struct { const char *file; uint32_t link; bool kat; uint16_t pid; } t[] = {
        { "CartographerV4_6.0.0_USB_lite_8kib_offset.bin", 0x08002000u, false, 0x614e },
        { "CartographerV4_6.0.0_CAN_1M_full_8kib_offset.bin", 0x08002000u, false, 0 },
        { "Katapult_plus_CartographerV4_6.0.0__USB_lite.bin", 0x08000000u, true, 0x6177 },
        { "Katapult_plus_CartographerV4_6.0.0__CAN_1M.bin", 0x08000000u, true, 0 },
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/firmware/cartographer-v4/6.0.0/%s", STATION_SHARED_DIR,
                 t[i].file);
        if (access(p, R_OK) != 0)
            skip(); /* ../shared/firmware is absent */
        assert_int_equal(st_image_load(p, 0x08000000u, &img, &e), 0);
        st_image_facts_of(img->data, img->size, g4, &f);
        assert_true(f.link_known);
        assert_int_equal(f.link_addr, t[i].link);
        assert_int_equal(f.katapult, t[i].kat);
        assert_int_equal(f.usb_device, t[i].pid != 0);
        if (t[i].pid) {
            assert_int_equal(f.usb_vid, 0x1d50);
            assert_int_equal(f.usb_pid, t[i].pid);
            /* The first descriptor's strings: Katapult's, or the application's. */
            assert_string_equal(f.usb_manufacturer, t[i].kat ? "katapult" : "Cartographer");
            assert_string_equal(f.usb_product, "stm32g431xx");
            assert_string_equal(f.usb_serial, "");
        }
        /* Loaded at 0x08000000 (ROM DFU of a whole flash): only the combined images pass. */
        assert_int_equal(st_image_check_link(img, g4, &e), t[i].kat ? 0 : ST_ERR_MISMATCH);
        st_image_free(img);
    }
}

/* OpenHTF's outcomes: pass, marginal (inside the limits, outside the band), fail. */
static void test_measure(void **state)
{
    st_measure_limits l = { .has_low = true, .low = 10, .has_high = true, .high = 20,
                            .has_marginal_low = true, .marginal_low = 12,
                            .has_marginal_high = true, .marginal_high = 18 };
    assert_int_equal(st_measure_limits_check(&l, NULL), 0);
    st_measure m;
    char why[160];
    assert_int_equal(st_measure_set(&m, "temp", "C", 15, &l), ST_MEASURE_PASS);
    assert_int_equal(st_measure_set(&m, "temp", "C", 10, &l), ST_MEASURE_MARGINAL);
    assert_string_equal(st_measure_explain(&m, why, sizeof why), "temp = 10 C is marginal: below 12 C");
    assert_int_equal(st_measure_set(&m, "temp", "C", 19, &l), ST_MEASURE_MARGINAL);
    assert_int_equal(st_measure_set(&m, "temp", "C", 20, &l), ST_MEASURE_MARGINAL);
    assert_int_equal(st_measure_set(&m, "temp", "C", 20.5, &l), ST_MEASURE_FAIL);
    assert_string_equal(st_measure_explain(&m, why, sizeof why),
                        "temp = 20.5 C is above the high limit 20 C");
    assert_int_equal(st_measure_set(&m, "stddev", "", 0, &l), ST_MEASURE_FAIL);
    assert_string_equal(st_measure_explain(&m, why, sizeof why),
                        "stddev = 0 is below the low limit 10");
    assert_string_equal(st_measure_outcome_name(ST_MEASURE_MARGINAL), "marginal");
    /* No limits: anything finite passes; NaN fails. */
    assert_int_equal(st_measure_set(&m, "x", NULL, -1e9, NULL), ST_MEASURE_PASS);
    assert_int_equal(st_measure_set(&m, "x", NULL, 0.0 / 0.0, NULL), ST_MEASURE_FAIL);
    /* Inconsistent limits are refused. */
    st_measure_limits bad = { .has_low = true, .low = 5, .has_high = true, .high = 1 };
    st_err e;
    assert_int_equal(st_measure_limits_check(&bad, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "low 5 is above high 1"));
    st_measure_limits bad2 = { .has_low = true, .low = 5, .has_marginal_low = true,
                               .marginal_low = 4 };
    assert_int_equal(st_measure_limits_check(&bad2, &e), ST_ERR_INVAL);
}

static void test_yamldoc(void **state)
{
    const char *text = "a: 12\nb: 0x10\nc: yes\nm: { x: 1 }\ns: [1, 2]\nbad: -3\nstr: hi\n";
    char *path = write_tmp(text, strlen(text));
    st_ydoc *d = NULL;
    st_err e;
    assert_int_equal(st_ydoc_load(path, &d, &e), 0);
    const st_ynode *r = st_ydoc_root(d);
    uint64_t v = 0;
    uint32_t w = 0;
    bool b = false;
    const char *str = NULL;
    assert_int_equal(st_ymap_get_u64(d, r, "", "a", true, 0, 100, &v, &e), 0);
    assert_int_equal(v, 12);
    assert_int_equal(st_ymap_get_u32(d, r, "", "b", true, 0, 100, &w, &e), 0);
    assert_int_equal(w, 16);
    assert_int_equal(st_ymap_get_bool(d, r, "", "c", true, &b, &e), 0);
    assert_true(b);
    assert_int_equal(st_ymap_get_u64(d, r, "", "a", true, 0, 5, &v, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, ":1: a: 12 is out of range 0..5"));
    assert_int_equal(st_ymap_get_u64(d, r, "top", "bad", true, 0, 5, &v, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, ":6: top.bad: expected a non-negative integer, got \"-3\""));
    assert_int_equal(st_ymap_get_str(d, r, "", "m", true, &str, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "expected a string, got a map"));
    assert_int_equal(st_ymap_get_u64(d, r, "", "zz", true, 0, 5, &v, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "zz: missing"));
    v = 77;
    assert_int_equal(st_ymap_get_u64(d, r, "", "zz", false, 0, 5, &v, &e), 0);
    assert_int_equal(v, 77);
    const st_ynode *seq = NULL;
    assert_int_equal(st_ymap_get_seq(d, r, "", "s", true, &seq, &e), 0);
    assert_int_equal(st_yseq_len(d, seq), 2);
    static const char *const allowed[] = { "a", "b", NULL };
    assert_int_equal(st_ymap_check_keys(d, r, "", allowed, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, ":3: c: unknown key (allowed: a, b)"));
    st_ydoc_free(d);
    unlink(path);
    free(path);
    const char *broken = "a: [1\n";
    path = write_tmp(broken, strlen(broken));
    assert_int_equal(st_ydoc_load(path, &d, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "YAML syntax error"));
    unlink(path);
    free(path);
    const char *two = "a: 1\n---\nb: 2\n";
    path = write_tmp(two, strlen(two));
    assert_int_equal(st_ydoc_load(path, &d, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "second YAML document"));
    unlink(path);
    free(path);
}

/* Expect msg to be "<path>:<rest>" exactly. */
static void assert_msg(const st_err *e, const char *path, const char *rest)
{
    char want[600];
    snprintf(want, sizeof want, "%s:%s", path, rest);
    if (strcmp(e->msg, want) != 0)
        fail_msg("\n got: %s\nwant: %s", e->msg, want);
}

static void test_yamldoc_strict_load(void **state)
{
    static const st_ydoc_opts fx = { .kind = "fixture", .max_bytes = 64, .empty_hint = "expected x" };
    st_ydoc *d = NULL;
    st_err e;
    assert_int_equal(st_ydoc_load_ex("/nonexistent/f.yaml", &fx, &d, &e), ST_ERR_NOTFOUND);
    assert_string_equal(e.msg, "/nonexistent/f.yaml: cannot open fixture: No such file or directory");
    assert_int_equal(st_ydoc_load_ex("/nonexistent/f.yaml", NULL, &d, &e), ST_ERR_NOTFOUND);
    assert_string_equal(e.msg, "/nonexistent/f.yaml: cannot open: No such file or directory");
    assert_int_equal(st_ydoc_load_ex("/dev/null", &fx, &d, &e), ST_ERR_INVAL);
    assert_string_equal(e.msg, "/dev/null: not a fixture file (a character device)");
    static const st_ydoc_opts mib = { .kind = "fixture", .max_bytes = 1024 * 1024 };
    assert_int_equal(st_ydoc_load_ex("/dev/null", &mib, &d, &e), ST_ERR_INVAL);

    char big[100];
    memset(big, '#', sizeof big);
    char *path = write_tmp(big, sizeof big);
    assert_int_equal(st_ydoc_load_ex(path, &fx, &d, &e), ST_ERR_INVAL);
    char want[300];
    snprintf(want, sizeof want, "%s: not a fixture file (larger than 64 bytes)", path);
    assert_string_equal(e.msg, want);
    assert_int_equal(st_ydoc_load_ex(path, &mib, &d, &e), ST_ERR_INVAL); /* only a comment */
    snprintf(want, sizeof want, "%s: the file is empty", path);
    assert_string_equal(e.msg, want);
    assert_int_equal(st_ydoc_load_ex(path, &(st_ydoc_opts){ .empty_hint = "expected x" }, &d, &e),
                     ST_ERR_INVAL);
    assert_msg(&e, path, "1: empty file: expected x");
    unlink(path);
    free(path);

    /* Syntax errors: line only with a kind, line:column without. */
    const char *broken = "a: 1\nb: { c: 2\n";
    path = write_tmp(broken, strlen(broken));
    assert_int_equal(st_ydoc_load_ex(path, &fx, &d, &e), ST_ERR_INVAL);
    assert_int_equal(strncmp(e.msg + strlen(path), ":3: YAML syntax error: ", 23), 0);
    assert_int_equal(st_ydoc_load(path, &d, &e), ST_ERR_INVAL);
    assert_int_equal(strncmp(e.msg + strlen(path), ":3:1: YAML syntax error: ", 25), 0);
    unlink(path);
    free(path);

    /* A second document is named at its root node with a kind, at its "---" without. */
    const char *two = "a: 1\n---\n\nb: 2\n";
    path = write_tmp(two, strlen(two));
    assert_int_equal(st_ydoc_load_ex(path, &fx, &d, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "4: a fixture file holds one YAML document; found a second one");
    assert_int_equal(st_ydoc_load(path, &d, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "2: a second YAML document is not allowed");
    unlink(path);
    free(path);

    /* A broken second document is not an ignorable tail. */
    const char *tail = "a: 1\n---\nb: [\n";
    path = write_tmp(tail, strlen(tail));
    assert_int_equal(st_ydoc_load(path, &d, &e), ST_ERR_INVAL);
    assert_non_null(strstr(e.msg, "YAML syntax error"));
    assert_null(d);
    unlink(path);
    free(path);

    const char *ok = "a: 1\n...\n# end\n";
    path = write_tmp(ok, strlen(ok));
    assert_int_equal(st_ydoc_load_ex(path, &fx, &d, &e), 0);
    assert_string_equal(st_ynode_text(st_ymap_get(d, st_ydoc_root(d), "a")), "1");
    st_ydoc_free(d);
    unlink(path);
    free(path);
}

/* One rule for every config file, whoever reads it: only regular files (a FIFO used to hang
 * the reader, a directory read as "input error"), and no map with a key twice, anywhere. */
static void test_yamldoc_input_rules(void **state)
{
    st_ydoc *d = NULL;
    st_err e;
    char dir[64], p[128], want[300];
    st_test_tmpl(dir, sizeof dir, "st-yd");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(st_ydoc_load(dir, &d, &e), ST_ERR_INVAL);
    snprintf(want, sizeof want, "%s: is a directory, not a YAML file", dir);
    assert_string_equal(e.msg, want);
    snprintf(p, sizeof p, "%s/fifo", dir);
    assert_int_equal(mkfifo(p, 0600), 0);
    assert_int_equal(st_ydoc_load(p, &d, &e), ST_ERR_INVAL); /* returns: nothing blocks */
    snprintf(want, sizeof want, "%s: not a YAML file (a FIFO)", p);
    assert_string_equal(e.msg, want);
    static const st_ydoc_opts fx = { .kind = "fixture", .max_bytes = 1024 * 1024 };
    assert_int_equal(st_ydoc_load_ex(p, &fx, &d, &e), ST_ERR_INVAL);
    snprintf(want, sizeof want, "%s: not a fixture file (a FIFO)", p);
    assert_string_equal(e.msg, want);
    unlink(p);
    rmdir(dir);

    /* Duplicates at the top, in a nested map and in a map inside a list: PyYAML would
     * take the last one silently ("steps:" twice gave 1 step where PyYAML read 5). */
    const char *top = "name: x\nsteps: [a]\nother: 1\nsteps: [a, b, c, d, e]\n";
    char *path = write_tmp(top, strlen(top));
    assert_int_equal(st_ydoc_load(path, &d, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "4: duplicate key \"steps\" (first at line 2)");
    unlink(path);
    free(path);
    const char *nested = "images:\n  combined: {path: a.bin}\n  combined: {path: b.bin}\n";
    path = write_tmp(nested, strlen(nested));
    assert_int_equal(st_ydoc_load(path, &d, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "3: images: duplicate key \"combined\" (first at line 2)");
    unlink(path);
    free(path);
    const char *inlist = "steps:\n  - flash: {retries: 1, retries: 2}\n";
    path = write_tmp(inlist, strlen(inlist));
    assert_int_equal(st_ydoc_load(path, &d, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "2: steps[0].flash: duplicate key \"retries\" (first at line 2)");
    unlink(path);
    free(path);
    /* Aliases share nodes: a "billion laughs" document is walked once per node. */
    char laughs[4096] = "a: &a [x, x, x, x, x, x, x, x]\n";
    for (char c = 'b'; c <= 'p'; c++) {
        size_t l = strlen(laughs);
        snprintf(laughs + l, sizeof laughs - l, "%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n",
                 c, c, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
    }
    path = write_tmp(laughs, strlen(laughs));
    assert_int_equal(st_ydoc_load(path, &d, &e), 0);
    st_ydoc_free(d);
    unlink(path);
    free(path);
}

static void test_yamldoc_strict_getters(void **state)
{
    const char *text = "a: 12\n"                      /* 1 */
                       "h: 0x1F\n"                    /* 2 */
                       "big: 99999999999999999999\n"  /* 3 */
                       "neg: -1\n"                    /* 4 */
                       "tab: \"\\t5\"\n"              /* 5 */
                       "s: hello\n"                   /* 6 */
                       "nul: \"a\\0b\"\n"             /* 7 */
                       "ctl: \"a\\x01b\"\n"           /* 8 */
                       "n: ~\n"                       /* 9 */
                       "q: \"~\"\n"                   /* 10 */
                       "e: \"\"\n"                    /* 11 */
                       "m: { x: 1 }\n"                /* 12 */
                       "l: [1]\n"                     /* 13 */
                       "y: Yes\n"                     /* 14 */
                       "long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n" /* 15 */
                       "t: can\n";                    /* 16 */
    char *path = write_tmp(text, strlen(text));
    st_ydoc *d = NULL;
    st_err e;
    assert_int_equal(st_ydoc_load(path, &d, &e), 0);
    const st_ynode *r = st_ydoc_root(d);
#define N(k) st_ymap_get(d, r, k)
    uint64_t v = 7;
    uint32_t w = 7;
    assert_int_equal(st_ynode_u64(d, N("a"), "a", 0, 100, &v, &e), 0);
    assert_int_equal(v, 12);
    assert_int_equal(st_ynode_u32(d, N("h"), "h", 0, 100, &w, &e), 0);
    assert_int_equal(w, 31);
    assert_int_equal(st_ynode_u64(d, N("a"), "x.a", 0, 5, &v, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "1: x.a: \"12\" is out of range (at most 5)");
    assert_int_equal(st_ynode_u64(d, N("a"), "a", 13, 50, &v, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "1: a: \"12\" is out of range (at least 13)");
    assert_int_equal(st_ynode_u64(d, N("big"), "big", 0, UINT64_MAX, &v, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "3: big: \"99999999999999999999\" is out of range (at most "
                         "18446744073709551615)");
    assert_int_equal(st_ynode_u64(d, N("neg"), "neg", 0, UINT64_MAX, &v, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "4: neg: expected a non-negative integer, got \"-1\"");
    assert_int_equal(st_ynode_u64(d, N("tab"), "tab", 0, UINT64_MAX, &v, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "5: tab: expected a non-negative integer, got \"?5\"");
    assert_int_equal(st_ynode_u64(d, N("m"), "m", 0, 1, &v, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "12: m: expected a non-negative integer, got a mapping");
    assert_int_equal(st_ynode_u64(d, NULL, "", 0, 1, &v, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "1: expected a non-negative integer, got nothing");
    assert_int_equal(v, 12); /* unchanged by every failure */
    uint64_t p = 0;
    assert_false(st_parse_u64("\t-1", &p));
    assert_false(st_parse_u64(" 1", &p));
    assert_false(st_parse_u64("0x", &p));
    assert_false(st_parse_u64("18446744073709551616", &p));
    assert_true(st_parse_u64("0XfF", &p));
    assert_int_equal(p, 255);

    char buf[8] = "keep";
    assert_int_equal(st_ynode_str(d, N("s"), "s", buf, sizeof buf, &e), 0);
    assert_string_equal(buf, "hello");
    assert_int_equal(st_ynode_str(d, N("s"), "s", buf, 5, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "6: s: too long (5 characters, at most 4)");
    assert_int_equal(st_ynode_str(d, N("nul"), "nul", buf, sizeof buf, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "7: nul: contains a NUL byte");
    assert_int_equal(st_ynode_str(d, N("ctl"), "ctl", buf, sizeof buf, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "8: ctl: contains control characters");
    assert_int_equal(st_ynode_str(d, N("n"), "n", buf, sizeof buf, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "9: n: expected a non-empty string, got \"~\"");
    assert_int_equal(st_ynode_str(d, N("e"), "e", buf, sizeof buf, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "11: e: expected a non-empty string, got \"\"");
    assert_int_equal(st_ynode_str(d, N("l"), "l", buf, sizeof buf, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "13: l: expected a non-empty string, got a list");
    assert_int_equal(st_ynode_str(d, N("q"), "q", buf, sizeof buf, &e), 0); /* quoted: a string */
    assert_string_equal(buf, "~");
    assert_true(st_ynode_is_null(N("n")));
    assert_false(st_ynode_is_null(N("q")));
    assert_false(st_ynode_is_null(N("s")));

    bool b = false;
    assert_int_equal(st_ynode_bool(d, N("y"), "y", &b, &e), 0);
    assert_true(b);
    assert_int_equal(st_ynode_bool(d, N("s"), "s", &b, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "6: s: expected true or false, got \"hello\"");
    static const char *const tr[] = { "usb", "can", "uart", NULL };
    int k = -1;
    assert_int_equal(st_ynode_enum(d, N("t"), "t", tr, &k, &e), 0);
    assert_int_equal(k, 1);
    assert_int_equal(st_ynode_enum(d, N("s"), "u.t", tr, &k, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "6: u.t: expected usb or can or uart, got \"hello\"");
    assert_int_equal(k, 1);

    char g[64];
    assert_string_equal(st_ynode_shown(N("long"), g, sizeof g),
                        "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"");
    assert_string_equal(st_ynode_shown(N("m"), g, sizeof g), "a mapping");
    assert_string_equal(st_yfield(g, sizeof g, "slots[1]", "id"), "slots[1].id");
    assert_string_equal(st_yfield(g, sizeof g, "", "id"), "id");

    const st_ynode *out = r;
    assert_int_equal(st_ymap_node(d, r, "", "zz", false, &out, &e), 0);
    assert_null(out);
    assert_int_equal(st_ymap_node(d, N("m"), "m", "zz", true, &out, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "12: m.zz: missing (required)");
    assert_int_equal(st_ymap_node(d, N("m"), "m", "x", true, &out, &e), 0);
    assert_string_equal(st_ynode_text(out), "1");

    /* Key checks: top level unnamed, the offending key's own line, duplicates, non-maps. */
    static const char *const none[] = { "x", NULL };
    assert_int_equal(st_ymap_check_strict(d, N("m"), "m", none, &e), 0);
    static const char *const all[] = { "a", "h", "big", "neg", "tab", "s", "nul", "ctl", "n", "q",
                                       "e", "m", "l", "y", "long", "t", NULL };
    assert_int_equal(st_ymap_check_strict(d, r, "", all, &e), 0);
    assert_int_equal(st_ymap_check_strict(d, r, "", all + 1, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "1: unknown key \"a\" (allowed: h, big, neg, tab, s, nul, ctl, n, q, e, "
                         "m, l, y, long, t)");
    assert_int_equal(st_ymap_check_strict(d, N("l"), "l", all, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "13: l: expected a mapping, got a list");
    assert_int_equal(st_ynode_error(d, N("s"), "", &e, ST_ERR_PROTO, "odd %d", 3), ST_ERR_PROTO);
    assert_msg(&e, path, "6: odd 3");
#undef N
    st_ydoc_free(d);
    unlink(path);
    free(path);

    const char *keyed = "? [1, 2]\n: x\n";
    path = write_tmp(keyed, strlen(keyed));
    assert_int_equal(st_ydoc_load(path, &d, &e), 0);
    assert_int_equal(st_ymap_check_strict(d, st_ydoc_root(d), "top", none, &e), ST_ERR_INVAL);
    assert_msg(&e, path, "1: top: keys must be plain names, got a list");
    st_ydoc_free(d);
    unlink(path);
    free(path);
}

/* Issue 7: one YAML reader for every file (the report reader too): from memory, with
 * aliases refused or followed, and deep nesting stopped where it starts. */
static void test_yamldoc_parse_memory(void **state)
{
    st_ydoc *d = NULL;
    st_err e;
    const char *y = "base: &b { x: 1 }\nuse: *b\nq: '12'\np: 12\n";
    assert_int_equal(st_ydoc_parse_ex(y, strlen(y), "mem.yaml", NULL, &d, &e), 0);
    const st_ynode *root = st_ydoc_root(d);
    const st_ynode *use = st_ymap_get(d, root, "use");
    assert_true(st_ynode_is_map(use)); /* an alias is followed by default */
    assert_string_equal(st_ynode_text(st_ymap_get(d, use, "x")), "1");
    assert_true(st_ynode_is_quoted(st_ymap_get(d, root, "q")));
    assert_false(st_ynode_is_quoted(st_ymap_get(d, root, "p")));
    assert_int_equal(st_ynode_line(st_ymap_key_at(d, root, 3)), 4);
    assert_int_equal(st_ynode_column(st_ymap_get(d, root, "p")), 4);
    st_ydoc_free(d);

    static const st_ydoc_opts strict = { .no_aliases = true, .max_depth = 3 };
    assert_int_equal(st_ydoc_parse_ex(y, strlen(y), "mem.yaml", &strict, &d, &e), ST_ERR_INVAL);
    assert_string_equal(e.msg, "mem.yaml:2:6: aliases are not allowed");
    const char *undef = "a: *nope\n";
    assert_int_equal(st_ydoc_parse_ex(undef, strlen(undef), "u.yaml", NULL, &d, &e), ST_ERR_INVAL);
    assert_string_equal(e.msg, "u.yaml:1:4: undefined alias");
    const char *deep = "a: [[[1]]]\n";
    assert_int_equal(st_ydoc_parse_ex(deep, strlen(deep), "d.yaml", &strict, &d, &e), ST_ERR_INVAL);
    assert_string_equal(e.msg, "d.yaml:1:6: nested too deeply (more than 3 levels)");
    const char *three = "a: [[1]]\n";
    assert_int_equal(st_ydoc_parse_ex(three, strlen(three), "d.yaml", &strict, &d, &e), 0);
    st_ydoc_free(d);
    /* Not NUL-terminated: only len bytes are read. */
    const char buf[] = { 'a', ':', ' ', '1', '\n', 'b', ':', ' ', '[' };
    assert_int_equal(st_ydoc_parse_ex(buf, 5, "n.yaml", NULL, &d, &e), 0);
    assert_null(st_ymap_get(d, st_ydoc_root(d), "b"));
    st_ydoc_free(d);
    assert_int_equal(st_ydoc_parse_ex("", 0, "e.yaml", NULL, &d, &e), ST_ERR_INVAL);
    assert_string_equal(e.msg, "e.yaml: the file is empty");
}

typedef struct alarm_log {
    uint64_t at[8];
    int tag[8];
    int n;
    st_clock *clk;
} alarm_log;

static void on_alarm(void *ctx, uint64_t now_us)
{
    alarm_log *l = ctx;
    l->at[l->n] = now_us;
    l->tag[l->n] = l->n;
    l->n++;
    if (l->n == 1) /* an alarm may set another, even one already due */
        assert_int_equal(st_clock_virtual_at(l->clk, now_us + 5, on_alarm, l), 0);
}

/* Issue 7: time is injectable. The virtual clock stands still, jumps on sleeps and fires
 * alarms in time order on the way; deadlines work on it as on the system clock. */
static void test_virtual_clock(void **state)
{
    st_clock *c = st_clock_virtual_new(1000);
    assert_non_null(c);
    assert_int_equal(st_clock_now_us(c), 1000);
    assert_int_equal(st_clock_now_us(c), 1000); /* does not move by itself */
    st_deadline d = st_clock_deadline_in_ms(c, 100);
    assert_false(st_clock_deadline_passed(c, d));
    assert_int_equal(st_clock_deadline_remaining_ms(c, d), 100);
    uint64_t real0 = st_now_us();
    st_clock_sleep_us(c, 60000);
    assert_int_equal(st_clock_now_us(c), 61000);
    assert_int_equal(st_clock_deadline_remaining_ms(c, d), 40);
    st_clock_sleep_until_us(c, d.at_us);
    assert_true(st_clock_deadline_passed(c, d));
    st_clock_sleep_until_us(c, 5); /* in the past: time never goes back */
    assert_int_equal(st_clock_now_us(c), 101000);
    /* A virtual 60 ms + 40 ms took no real time worth speaking of (no sleep happened). */
    assert_true(st_now_us() - real0 < 50000);

    alarm_log l = { .clk = c };
    assert_int_equal(st_clock_virtual_at(c, 130000, on_alarm, &l), 0);
    assert_int_equal(st_clock_virtual_at(c, 120000, on_alarm, &l), 0);
    st_clock_virtual_advance(c, 10000); /* to 111000: none due */
    assert_int_equal(l.n, 0);
    st_clock_virtual_advance(c, 100000); /* to 211000 */
    assert_int_equal(l.n, 3);
    assert_int_equal(l.at[0], 120000);
    assert_int_equal(l.at[1], 120005); /* set by the first alarm, fired before 130000 */
    assert_int_equal(l.at[2], 130000);
    assert_int_equal(st_clock_now_us(c), 211000);
    st_clock_virtual_free(c);

    /* NULL and st_clock_system() are the system clock. */
    uint64_t a = st_now_us();
    uint64_t b = st_clock_now_us(NULL), e = st_clock_now_us(st_clock_system());
    assert_true(a <= b && b <= e);
}

/* Issue 7: "--addr 0x90000000" was parsed with strtol into a long, which is 32 bits on
 * armhf, so every address above 2^31 was "not a number". */
static void test_parse_u32(void **state)
{
    uint32_t v = 0;
    assert_true(st_parse_u32("0x90000000", &v));
    assert_int_equal(v, 0x90000000u);
    assert_true(st_parse_u32("0x80000000", &v));
    assert_int_equal(v, 0x80000000u);
    assert_true(st_parse_u32("2147483648", &v));
    assert_int_equal(v, 2147483648u);
    assert_true(st_parse_u32("0xFFFFFFFF", &v));
    assert_int_equal(v, 0xFFFFFFFFu);
    assert_true(st_parse_u32("4294967295", &v));
    assert_int_equal(v, 4294967295u);
    assert_true(st_parse_u32("0x08002000", &v));
    assert_int_equal(v, 0x08002000u);
    assert_true(st_parse_u32("0", &v));
    assert_int_equal(v, 0);
    v = 7;
    assert_false(st_parse_u32("0x100000000", &v));
    assert_false(st_parse_u32("4294967296", &v));
    assert_false(st_parse_u32("99999999999999999999999", &v));
    assert_false(st_parse_u32("-1", &v));
    assert_false(st_parse_u32(" 1", &v));
    assert_false(st_parse_u32("1k", &v));
    assert_false(st_parse_u32("", &v));
    assert_false(st_parse_u32(NULL, &v));
    assert_int_equal(v, 7);
}

/* The test support every test links (testutil.h): $TMPDIR honoured, a name too long for
 * the buffer left empty (so mkdtemp fails), a whole file read with a NUL after it. */
static void test_testutil(void **state)
{
    (void)state;
    const char *old = getenv("TMPDIR");
    char *saved = old ? strdup(old) : NULL;
    char b[64];
    setenv("TMPDIR", "/srv/scratch", 1);
    assert_string_equal(st_test_tmpl(b, sizeof b, "st-x"), "/srv/scratch/st-x-XXXXXX");
    setenv("TMPDIR", "", 1);
    /* tmp-ok: the helper's own default */
    assert_string_equal(st_test_tmpl(b, sizeof b, "st-x"), "/tmp/st-x-XXXXXX");
    unsetenv("TMPDIR");
    /* tmp-ok: the helper's own default */
    assert_string_equal(st_test_tmpl(b, sizeof b, "st-x"), "/tmp/st-x-XXXXXX");
    assert_string_equal(st_test_tmpl(b, 16, "st-x"), "");
    assert_null(mkdtemp(b));
    if (saved) {
        setenv("TMPDIR", saved, 1);
        free(saved);
    }
    size_t n = 0;
    char *text = st_test_read_file(STATION_SOURCE_DIR "/station/core/testutil.h", &n);
    assert_non_null(text);
    assert_int_equal(strlen(text), n);
    assert_non_null(strstr(text, "st_test_read_file"));
    free(text);
    assert_null(st_test_read_file(STATION_SOURCE_DIR "/no-such-file", &n));

    /* A program's stdout and stderr apart, then together; its exit code; one not found. */
    char dir[256], o[300], e[300];
    assert_non_null(mkdtemp(st_test_tmpl(dir, sizeof dir, "st-spawn")));
    snprintf(o, sizeof o, "%s/out", dir);
    snprintf(e, sizeof e, "%s/err", dir);
    char *const argv[] = { "sh", "-c", "echo to-out; echo to-err >&2; exit 3", NULL };
    st_test_child c;
    assert_int_equal(st_test_spawn("/bin/sh", argv, o, e, &c), 0);
    assert_int_equal(c.exit_code, 3);
    assert_true(c.maxrss_kib > 0);
    /* Our own CPU clock moves when we work. */
    uint64_t cpu0 = st_test_cpu_us();
    volatile uint64_t spin = 0;
    while (st_test_cpu_us() == cpu0)
        spin++;
    assert_true(st_test_cpu_us() > cpu0);
    text = st_test_read_file(o, NULL);
    assert_string_equal(text, "to-out\n");
    free(text);
    text = st_test_read_file(e, NULL);
    assert_string_equal(text, "to-err\n");
    free(text);
    assert_int_equal(st_test_spawn("/bin/sh", argv, o, NULL, &c), 0);
    text = st_test_read_file(o, NULL);
    assert_non_null(strstr(text, "to-out"));
    assert_non_null(strstr(text, "to-err"));
    free(text);
    char *const none[] = { "no-such-program", NULL };
    assert_int_equal(st_test_spawn("/no-such-program", none, o, NULL, &c), 0);
    assert_int_equal(c.exit_code, 127);
    unlink(o);
    unlink(e);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_prefix_chain), cmocka_unit_test(test_text),
        cmocka_unit_test(test_digest_vectors),   cmocka_unit_test(test_image_padded_digests),   cmocka_unit_test(test_image_bin_validate),
        cmocka_unit_test(test_image_dfuse),      cmocka_unit_test(test_real_firmware),
        cmocka_unit_test(test_image_facts),
        cmocka_unit_test(test_measure),
        cmocka_unit_test(test_yamldoc),          cmocka_unit_test(test_yamldoc_strict_load),
        cmocka_unit_test(test_yamldoc_strict_getters), cmocka_unit_test(test_parse_u32),
        cmocka_unit_test(test_virtual_clock),    cmocka_unit_test(test_yamldoc_parse_memory),
        cmocka_unit_test(test_yamldoc_input_rules),
        cmocka_unit_test(test_testutil),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
