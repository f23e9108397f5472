/* Katapult engine against the device model: conversations, every model fault, the model's
 * exact device behaviours, timing, and the Cartographer V4 known answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "protocols/katapult/frame.h"
#include "protocols/katapult/katapult.h"
#include "protocols/katapult/katapult_model.h"
#include "protocols/link/serial_ports.h"
#include "station/core/clock.h"
#include "station/core/digest.h"

#define APP 0x08002000u
#define KNOWN_BIN "/firmware/cartographer-v4/6.0.0/CartographerV4_6.0.0_USB_lite_8kib_offset.bin"

typedef struct rig {
    st_flash *flash;
    st_katapult_model *model;
    st_stream *s;
    st_katapult *k;
    int resets;
    st_clock *clock; /* virtual: rig_virtual_time puts the stream (and engine) on it */
} rig;

static void on_reset(void *ctx, st_katapult_model *m)
{
    ((rig *)ctx)->resets++;
}

/* Short timeouts so fault tests take milliseconds, not flashtool's seconds. */
static const st_katapult_opts fast = {
    .read_timeout_ms = 60, .block_timeout_ms = 60, .retry_pause_ms = 5, .busy_wait_ms = 5,
    .addr_pause_ms = 2,
};

static void rig_up(rig *r, st_timing_profile t, const st_katapult_model_cfg *cfg,
                   const st_katapult_opts *o)
{
    memset(r, 0, sizeof *r);
    r->flash = st_flash_new(st_mcu_find("stm32g431xx"), t);
    assert_non_null(r->flash);
    st_katapult_model_cfg c = cfg ? *cfg : (st_katapult_model_cfg){0};
    c.on_reset = on_reset;
    c.reset_ctx = r;
    r->model = st_katapult_model_new(r->flash, &c);
    assert_non_null(r->model);
    st_err err;
    assert_int_equal(st_stream_mem_open(st_katapult_model_stream(r->model), "mem:katapult",
                                        &r->s, &err), 0);
    assert_int_equal(st_katapult_open(r->s, o ? o : &fast, &r->k, &err), 0);
    r->clock = st_clock_virtual_new(1000000);
    assert_non_null(r->clock);
}

/* From here on the conversation runs on the rig's virtual clock: waiting costs no time. */
static void rig_virtual_time(rig *r)
{
    st_stream_set_clock(r->s, r->clock);
}

static void rig_down(rig *r)
{
    st_katapult_close(r->k);
    st_stream_close(r->s);
    st_clock_virtual_free(r->clock);
    st_katapult_model_free(r->model);
    st_flash_free(r->flash);
}

static st_image *make_image(size_t size, uint32_t seed, uint32_t load)
{
    uint8_t *d = malloc(size);
    for (size_t i = 0; i < size; i++) {
        seed = seed * 1664525u + 1013904223u;
        d[i] = (uint8_t)(seed >> 24);
    }
    /* A plausible vector table: SP at the top of SRAM, reset handler inside the image. */
    if (size >= 8) {
        st_kat_put_le32(d, 0x20008000u);
        st_kat_put_le32(d + 4, APP + 0x101u);
    }
    st_image *img;
    st_err err;
    assert_int_equal(st_image_from_memory("test.bin", d, size, load, &img, &err), 0);
    free(d);
    return img;
}

/* SHA-1 of the image padded to whole blocks, computed independently of the engine. */
static void padded_sha1_hex(const st_image *img, uint32_t bs, char out[41])
{
    size_t n = (img->size + bs - 1) / bs * bs;
    uint8_t *p = malloc(n), d[20];
    memset(p, 0xFF, n);
    memcpy(p, img->data, img->size);
    st_sha1(p, n, d);
    st_hex(d, 20, true, out);
    free(p);
}

static void connect_ok(rig *r, st_katapult_info *info)
{
    st_err err;
    int rc = st_katapult_connect(r->k, info, &err);
    if (rc)
        fail_msg("connect: %s", err.msg);
}

/* ---- conversations ---------------------------------------------------------------- */

static void test_connect_info(void **state)
{
    rig r;
    st_katapult_model_cfg c = {.sw_version = "v0.0.1-110-gb0bf421"};
    rig_up(&r, ST_TIMING_NONE, &c, NULL);
    st_katapult_info info;
    connect_ok(&r, &info);
    assert_int_equal(info.proto_version, 0x00010100);
    assert_string_equal(info.proto, "1.1.0");
    assert_int_equal(info.app_start, APP);
    assert_int_equal(info.block_size, 64);
    assert_string_equal(info.mcu, "stm32g431xx");
    assert_true(info.has_sw_version);
    assert_string_equal(info.sw_version, "v0.0.1-110-gb0bf421");
    st_err err;
    assert_int_equal(st_katapult_check_mcu(&info, "STM32G431xx", &err), 0);
    assert_int_equal(st_katapult_check_mcu(&info, "stm32f446xx", &err), ST_ERR_MISMATCH);
    assert_non_null(strstr(err.msg, "stm32g431xx"));
    assert_non_null(strstr(err.msg, "stm32f446xx"));
    assert_int_equal(st_katapult_retries(r.k), 0);
    rig_down(&r);
}

static void test_connect_proto_1_0(void **state)
{
    rig r;
    /* "rp2040ab": 8 characters, a whole number of words, so no terminator on the wire. */
    st_katapult_model_cfg c = {.proto_version = 0x00010000, .mcu = "stm32g4x"};
    rig_up(&r, ST_TIMING_NONE, &c, NULL);
    st_katapult_info info;
    connect_ok(&r, &info);
    assert_string_equal(info.proto, "1.0.0");
    assert_false(info.has_sw_version);
    assert_string_equal(info.sw_version, "");
    assert_string_equal(info.mcu, "stm32g4x");
    rig_down(&r);
}

static void test_connect_hostile_strings(void **state)
{
    rig r;
    st_katapult_model_cfg c = {.mcu = "stm\x1b[2J32\n", .sw_version = "v1\r\x07"};
    rig_up(&r, ST_TIMING_NONE, &c, NULL);
    st_katapult_info info;
    connect_ok(&r, &info);
    for (const char *p = info.mcu; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
    for (const char *p = info.sw_version; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
    assert_string_equal(info.mcu, "stm?[2J32?");
    st_err err;
    assert_int_equal(st_katapult_check_mcu(&info, "stm32g431xx", &err), ST_ERR_MISMATCH);
    rig_down(&r);
}

static void test_connect_rejects_block_size(void **state)
{
    rig r;
    st_katapult_model_cfg c = {.block_size = 32};
    rig_up(&r, ST_TIMING_NONE, &c, NULL);
    st_err err;
    assert_int_equal(st_katapult_connect(r.k, NULL, &err), ST_ERR_PROTO);
    assert_non_null(strstr(err.msg, "invalid block size 32"));
    assert_null(st_katapult_get_info(r.k));
    rig_down(&r);
}

static void test_prime(void **state)
{
    rig r;
    st_katapult_opts o = fast;
    o.prime = true;
    rig_up(&r, ST_TIMING_NONE, NULL, &o);
    connect_ok(&r, NULL);
    st_katapult_model_stats st;
    st_katapult_model_get_stats(r.model, &st);
    assert_int_equal(st.errors, 1); /* the prime's 0xF2, thrown away */
    assert_int_equal(st.frames_rx, 2);
    assert_int_equal(st_katapult_retries(r.k), 0);
    rig_down(&r);
}

static void test_canbus_id(void **state)
{
    rig r;
    st_katapult_model_cfg c = {.with_can = true, .uuid = {0x3f, 0x2a, 0x11, 0x22, 0x33, 0x44}};
    rig_up(&r, ST_TIMING_NONE, &c, NULL);
    connect_ok(&r, NULL);
    uint8_t u[6];
    st_err err;
    assert_int_equal(st_katapult_get_canbus_id(r.k, u, &err), 0);
    assert_memory_equal(u, c.uuid, 6);
    rig_down(&r);
    rig_up(&r, ST_TIMING_NONE, NULL, NULL);
    assert_int_equal(st_katapult_get_canbus_id(r.k, u, &err), ST_ERR_DEVICE);
    assert_non_null(strstr(err.msg, "GET_CANBUS_ID"));
    assert_non_null(strstr(err.msg, "0xF2"));
    rig_down(&r);
}

static void flash_and_verify(rig *r, const st_image *img, st_katapult_result *w,
                             st_katapult_result *v)
{
    st_err err;
    int rc = st_katapult_flash(r->k, img, NULL, w, &err);
    if (rc)
        fail_msg("flash: %s", err.msg);
    rc = st_katapult_verify(r->k, img, v, &err);
    if (rc)
        fail_msg("verify: %s", err.msg);
}

static void test_flash_verify_complete(void **state)
{
    rig r;
    rig_up(&r, ST_TIMING_NONE, NULL, NULL);
    connect_ok(&r, NULL);
    st_image *img = make_image(5000, 1, 0); /* 3 pages, last block partial */
    st_katapult_result w, v;
    flash_and_verify(&r, img, &w, &v);
    char want[41];
    padded_sha1_hex(img, 64, want);
    assert_int_equal(w.pages, 3);
    assert_int_equal(w.blocks, 79);
    assert_int_equal(w.blocks_sent, 79);
    assert_int_equal(w.last_addr, APP + 78 * 64);
    assert_string_equal(w.sha1_hex, want);
    assert_string_equal(v.sha1_hex, want);
    assert_string_equal(v.sha256_hex, w.sha256_hex);
    assert_int_equal(v.blocks_verified, 79);
    /* What is in flash is the image, then 0xFF padding. */
    uint8_t buf[5056];
    assert_int_equal(st_flash_read(r.flash, APP, buf, sizeof buf), 0);
    assert_memory_equal(buf, img->data, img->size);
    for (size_t i = img->size; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0xFF);
    /* Read back an unaligned range. */
    uint8_t rb[300];
    st_err err;
    assert_int_equal(st_katapult_read(r.k, APP + 37, sizeof rb, rb, &err), 0);
    assert_memory_equal(rb, img->data + 37, sizeof rb);
    /* COMPLETE: ACK now, reset into the application ~100 ms later (virtual time: the
     * test crosses the 100 ms without sleeping). */
    rig_virtual_time(&r);
    uint64_t t0 = st_clock_now_us(r.clock);
    assert_int_equal(st_katapult_complete(r.k, &err), 0);
    assert_int_equal(st_katapult_model_get_state(r.model), ST_KATAPULT_MODEL_JUMPING);
    assert_int_equal(r.resets, 0);
    st_clock_virtual_advance(r.clock, 99000);
    assert_int_equal(st_katapult_model_get_state(r.model), ST_KATAPULT_MODEL_JUMPING);
    /* Nothing answers any more once it has jumped. */
    st_clock_virtual_advance(r.clock, 11000);
    assert_int_equal(st_katapult_connect(r.k, NULL, &err), ST_ERR_TIMEOUT);
    assert_true(st_clock_now_us(r.clock) - t0 >= 100000);
    assert_int_equal(st_katapult_model_get_state(r.model), ST_KATAPULT_MODEL_GONE);
    assert_int_equal(r.resets, 1);
    assert_true(st_katapult_model_app_valid(r.model));
    st_image_free(img);
    rig_down(&r);
}

static void test_bad_image_placement(void **state)
{
    rig r;
    rig_up(&r, ST_TIMING_NONE, NULL, NULL);
    st_err err;
    st_image *img = make_image(256, 2, 0x08000000u); /* over the bootloader */
    assert_int_equal(st_katapult_flash(r.k, img, NULL, NULL, &err), ST_ERR_INVAL);
    assert_non_null(strstr(err.msg, "not connected"));
    connect_ok(&r, NULL);
    assert_int_equal(st_katapult_flash(r.k, img, NULL, NULL, &err), ST_ERR_INVAL);
    assert_non_null(strstr(err.msg, "0x08000000"));
    st_image_free(img);
    img = make_image(256, 2, APP + 8); /* not block aligned */
    assert_int_equal(st_katapult_flash(r.k, img, NULL, NULL, &err), ST_ERR_INVAL);
    st_image_free(img);
    rig_down(&r);
}

static bool skip_all_but_second(void *ctx, uint32_t page)
{
    (*(int *)ctx)++;
    return page != APP + 2048;
}

static void test_partial_rewrite(void **state)
{
    rig r;
    rig_up(&r, ST_TIMING_NONE, NULL, NULL);
    connect_ok(&r, NULL);
    st_image *a = make_image(6144, 3, 0);
    st_katapult_result w, v;
    flash_and_verify(&r, a, &w, &v);
    /* B differs from A in the second page only. */
    uint8_t *d = malloc(6144);
    memcpy(d, a->data, 6144);
    d[2048 + 100] ^= 0x5a;
    st_image *b;
    st_err err;
    assert_int_equal(st_image_from_memory("b.bin", d, 6144, 0, &b, &err), 0);
    free(d);
    st_katapult_model_reboot(r.model); /* page counter from 0 again */
    connect_ok(&r, NULL);
    int calls = 0;
    st_katapult_flash_opts fo = {.skip_page = skip_all_but_second, .skip_ctx = &calls};
    assert_int_equal(st_katapult_flash(r.k, b, &fo, &w, &err), 0);
    assert_int_equal(calls, 3); /* asked once per page */
    assert_int_equal(w.blocks_sent, 32);
    assert_int_equal(w.blocks_skipped, 64);
    assert_int_equal(w.pages, 1);
    char want[41];
    padded_sha1_hex(b, 64, want);
    assert_string_equal(w.sha1_hex, want); /* skipped blocks are hashed too */
    assert_int_equal(st_katapult_verify(r.k, b, &v, &err), 0);
    /* Start at the third page. */
    fo = (st_katapult_flash_opts){.start_addr = APP + 4096};
    assert_int_equal(st_katapult_flash(r.k, b, &fo, &w, &err), 0);
    assert_int_equal(w.blocks_sent, 32);
    assert_int_equal(w.blocks_skipped, 64);
    fo.start_addr = APP + 4096 + 64; /* not a page boundary */
    assert_int_equal(st_katapult_flash(r.k, b, &fo, &w, &err), ST_ERR_INVAL);
    fo.start_addr = APP + 8192; /* past the image */
    assert_int_equal(st_katapult_flash(r.k, b, &fo, &w, &err), ST_ERR_INVAL);
    st_image_free(a);
    st_image_free(b);
    rig_down(&r);
}

/* Probe, then decide (skip_identical without a read-app): REQUEST_BLOCKs spent to decide
 * are one per page on a fresh unit, every block on a unit holding the image, and on a
 * partly identical one only as many as still match; a page that differs only in its last
 * block is rewritten whole. */
static void test_probe_then_decide(void **state)
{
    rig r;
    rig_up(&r, ST_TIMING_NONE, NULL, NULL);
    connect_ok(&r, NULL);
    st_image *img = make_image(5 * 2048 + 640, 11, 0); /* 6 pages, 170 blocks */
    st_katapult_flash_opts fo = {.probe = true};
    st_katapult_result w, v;
    st_err err;
    /* Fresh unit. */
    assert_int_equal(st_katapult_flash(r.k, img, &fo, &w, &err), 0);
    assert_int_equal(w.blocks_probed, 6);
    assert_int_equal(w.pages_skipped, 0);
    assert_int_equal(w.blocks_sent, 170);
    assert_int_equal(w.pages, 6);
    assert_int_equal(st_katapult_verify(r.k, img, &v, &err), 0);
    /* Holds the image: every block read once, nothing sent, SHA-1 still of the image. */
    st_katapult_model_reboot(r.model);
    connect_ok(&r, NULL);
    assert_int_equal(st_katapult_flash(r.k, img, &fo, &w, &err), 0);
    assert_int_equal(w.blocks_probed, 170);
    assert_int_equal(w.pages_skipped, 6);
    assert_int_equal(w.blocks_sent, 0);
    assert_int_equal(w.pages, 0);
    char want[41];
    padded_sha1_hex(img, 64, want);
    assert_string_equal(w.sha1_hex, want);
    /* Page 2 differs only in its last block, page 4 in its first. */
    img->data[3 * 2048 - 1] ^= 0x20;
    img->data[4 * 2048] ^= 0x02;
    st_katapult_model_reboot(r.model);
    connect_ok(&r, NULL);
    assert_int_equal(st_katapult_flash(r.k, img, &fo, &w, &err), 0);
    /* pages 0,1,3,5 read whole (32+32+32+10), page 2 whole (32, its last block differs),
     * page 4 only its first block. */
    assert_int_equal(w.blocks_probed, 32 + 32 + 32 + 32 + 1 + 10);
    assert_int_equal(w.pages_skipped, 4);
    assert_int_equal(w.blocks_sent, 64);
    assert_int_equal(w.pages, 2);
    assert_int_equal(st_katapult_verify(r.k, img, &v, &err), 0);
    uint8_t *now = malloc(img->size);
    assert_int_equal(st_flash_read(r.flash, APP, now, img->size), 0);
    assert_memory_equal(now, img->data, img->size);
    free(now);
    st_image_free(img);
    rig_down(&r);
}

static void test_verify_mismatch_names_block(void **state)
{
    rig r;
    rig_up(&r, ST_TIMING_NONE, NULL, NULL);
    connect_ok(&r, NULL);
    st_image *img = make_image(4096, 4, 0);
    st_katapult_result w, v;
    st_err err;
    assert_int_equal(st_katapult_flash(r.k, img, NULL, &w, &err), 0);
    st_flash_fault_corrupt_page(r.flash, 0); /* not this one: pages are re-armed below */
    st_flash_fault_clear(r.flash);
    /* Flip a byte behind the engine's back (a unit whose flash decayed). */
    uint8_t bad = (uint8_t)(img->data[3000] ^ 0x10);
    st_flash_preload(r.flash, APP + 3000, &bad, 1);
    assert_int_equal(st_katapult_verify(r.k, img, &v, &err), ST_ERR_VERIFY);
    assert_non_null(strstr(err.msg, "block 0x08002b80"));
    assert_non_null(strstr(err.msg, "0x08002bb8"));
    assert_int_equal(v.fail_addr, APP + 3000 / 64 * 64);
    assert_int_equal(v.blocks_verified, 64);
    assert_string_not_equal(v.sha1_hex, w.sha1_hex);
    assert_int_equal(strlen(v.sha1_hex), 40);
    st_image_free(img);
    rig_down(&r);
}

/* ---- faults: each ends in success after a documented recovery, or a clear error ------- */

typedef void (*arm_fn)(st_katapult_model *m);

static void flash_with_fault(arm_fn arm, unsigned *retries, st_katapult_model_stats *st)
{
    rig r;
    rig_up(&r, ST_TIMING_NONE, NULL, NULL);
    connect_ok(&r, NULL);
    st_image *img = make_image(3000, 5, 0);
    arm(r.model);
    st_katapult_result w, v;
    flash_and_verify(&r, img, &w, &v);
    assert_string_equal(w.sha1_hex, v.sha1_hex);
    char want[41];
    padded_sha1_hex(img, 64, want);
    assert_string_equal(v.sha1_hex, want);
    assert_int_equal(w.pages, 2);
    *retries = st_katapult_retries(r.k);
    st_katapult_model_get_stats(r.model, st);
    st_image_free(img);
    rig_down(&r);
}

static void arm_drop_rx(st_katapult_model *m) { st_katapult_model_fault_drop_rx(m, 3); }
static void arm_drop_tx(st_katapult_model *m) { st_katapult_model_fault_drop_tx(m, 3); }
static void arm_corrupt_rx(st_katapult_model *m) { st_katapult_model_fault_corrupt_rx(m, 3); }
static void arm_corrupt_tx(st_katapult_model *m) { st_katapult_model_fault_corrupt_tx(m, 3); }
static void arm_nack2(st_katapult_model *m) { st_katapult_model_fault_nack_storm(m, 2); }
static void arm_busy2(st_katapult_model *m) { st_katapult_model_fault_busy(m, 2); }
static void arm_drop_first_page_ack(st_katapult_model *m)
{
    st_katapult_model_fault_drop_tx(m, 1);
}

static void test_fault_drop_host_frame(void **state)
{
    unsigned retries;
    st_katapult_model_stats st;
    flash_with_fault(arm_drop_rx, &retries, &st);
    assert_int_equal(retries, 1); /* timed out once, resent */
    assert_int_equal(st.blocks_resent, 0);
}

static void test_fault_drop_answer(void **state)
{
    unsigned retries;
    st_katapult_model_stats st;
    /* The block was written but its ACK lost: the resend is accepted as a retransmission. */
    flash_with_fault(arm_drop_tx, &retries, &st);
    assert_int_equal(retries, 1);
    assert_int_equal(st.blocks_resent, 1);
    /* Same for the first block of a page (erase must not run twice). */
    flash_with_fault(arm_drop_first_page_ack, &retries, &st);
    assert_int_equal(retries, 1);
    assert_int_equal(st.blocks_resent, 1);
}

static void test_fault_corrupt_host_frame(void **state)
{
    unsigned retries;
    st_katapult_model_stats st;
    flash_with_fault(arm_corrupt_rx, &retries, &st);
    assert_true(retries >= 1);
    assert_int_equal(st.nacks, 1); /* one NACK for the loss of sync */
}

static void test_fault_corrupt_answer(void **state)
{
    unsigned retries;
    st_katapult_model_stats st;
    flash_with_fault(arm_corrupt_tx, &retries, &st);
    assert_int_equal(retries, 1);
    assert_int_equal(st.blocks_resent, 1);
}

static void test_fault_nack_and_busy_recovered(void **state)
{
    unsigned retries;
    st_katapult_model_stats st;
    flash_with_fault(arm_nack2, &retries, &st);
    assert_int_equal(retries, 2);
    assert_int_equal(st.nacks, 2);
    flash_with_fault(arm_busy2, &retries, &st);
    assert_int_equal(retries, 2);
}

/* Issue 7: error codes never depend on the optional error buffer. Every fault the model
 * has, armed at every point of a connect + flash + verify, ends with the same code with a
 * buffer and without one (in virtual time: the timeouts cost nothing). */
static int sweep_run(int kind, unsigned n, bool with_buffer)
{
    rig r;
    rig_up(&r, ST_TIMING_NONE, NULL, NULL);
    rig_virtual_time(&r);
    switch (kind) {
    case 0: st_katapult_model_fault_drop_rx(r.model, n); break;
    case 1: st_katapult_model_fault_drop_tx(r.model, n); break;
    case 2: st_katapult_model_fault_corrupt_rx(r.model, n); break;
    case 3: st_katapult_model_fault_corrupt_tx(r.model, n); break;
    case 4: st_katapult_model_fault_nack_storm(r.model, n); break;
    case 5: st_katapult_model_fault_busy(r.model, n); break;
    default: st_katapult_model_fault_power_loss_at_block(r.model, n); break;
    }
    st_err err = {0};
    st_err *e = with_buffer ? &err : NULL;
    st_image *img = make_image(3000, 9, 0);
    st_katapult_result w, v;
    int rc = st_katapult_connect(r.k, NULL, e);
    if (rc == 0)
        rc = st_katapult_flash(r.k, img, NULL, &w, e);
    if (rc == 0)
        rc = st_katapult_verify(r.k, img, &v, e);
    if (with_buffer && rc)
        assert_int_equal(err.code, rc);
    st_image_free(img);
    rig_down(&r);
    return rc;
}

static void test_fault_sweep_no_err_buffer(void **state)
{
    unsigned runs = 0, failed = 0;
    for (int kind = 0; kind < 7; kind++) {
        for (unsigned n = 1; n <= 12; n++) {
            int with = sweep_run(kind, n, true), without = sweep_run(kind, n, false);
            if (with != without)
                fail_msg("fault %d at %u: %s with a buffer, %s without", kind, n,
                         st_strerror(with), st_strerror(without));
            runs++;
            failed += with != 0;
        }
    }
    print_message("katapult fault sweep: %u runs, %u failed, same code without a buffer\n",
                  runs, failed);
    assert_true(failed > 0); /* the sweep does reach the error paths */
}

static void test_fault_nack_storm_gives_up(void **state)
{
    rig r;
    rig_up(&r, ST_TIMING_NONE, NULL, NULL);
    connect_ok(&r, NULL);
    st_image *img = make_image(3000, 6, 0);
    st_katapult_model_fault_nack_storm(r.model, 100);
    st_katapult_result w;
    st_err err;
    assert_int_equal(st_katapult_flash(r.k, img, NULL, &w, &err), ST_ERR_PROTO);
    assert_non_null(strstr(err.msg, "SEND_BLOCK 0x08002000"));
    assert_non_null(strstr(err.msg, "NACK"));
    assert_non_null(strstr(err.msg, "3 tries"));
    assert_int_equal(w.blocks_sent, 0);
    assert_false(w.any_done);
    assert_int_equal(w.fail_addr, APP);
    st_image_free(img);
    rig_down(&r);
}

static void test_fault_power_loss(void **state)
{
    rig r;
    rig_up(&r, ST_TIMING_NONE, NULL, NULL);
    connect_ok(&r, NULL);
    st_image *img = make_image(3000, 7, 0);
    st_katapult_model_fault_power_loss_at_block(r.model, 5);
    st_katapult_result w;
    st_err err;
    assert_int_equal(st_katapult_flash(r.k, img, NULL, &w, &err), ST_ERR_TIMEOUT);
    assert_non_null(strstr(err.msg, "SEND_BLOCK 0x08002100 (block 5 of 47)"));
    assert_non_null(strstr(err.msg, "no answer"));
    assert_true(w.any_done);
    assert_int_equal(w.last_addr, APP + 3 * 64);
    assert_int_equal(w.fail_addr, APP + 4 * 64);
    assert_int_equal(w.blocks_sent, 4);
    assert_int_equal(st_katapult_model_get_state(r.model), ST_KATAPULT_MODEL_DEAD);
    /* What was programmed stays: 4 blocks and half of the 5th, a valid-looking vector table
     * over a truncated application (Katapult would boot it). */
    uint8_t buf[6 * 64];
    assert_int_equal(st_flash_read(r.flash, APP, buf, sizeof buf), 0);
    assert_memory_equal(buf, img->data, 4 * 64 + 32);
    assert_int_equal(buf[4 * 64 + 32], 0xFF);
    assert_true(st_katapult_model_app_valid(r.model));
    /* finish() after a failure: no answer either. */
    assert_int_equal(st_katapult_complete(r.k, &err), ST_ERR_TIMEOUT);
    /* Recovery: power back, reboot into Katapult, write again from the start. */
    st_flash_power_restore(r.flash);
    st_katapult_model_reboot(r.model);
    connect_ok(&r, NULL);
    st_katapult_result v;
    flash_and_verify(&r, img, &w, &v);
    assert_string_equal(w.sha1_hex, v.sha1_hex);
    st_image_free(img);
    rig_down(&r);
}

static void test_fault_silent_complete(void **state)
{
    rig r;
    rig_up(&r, ST_TIMING_NONE, NULL, NULL);
    connect_ok(&r, NULL);
    st_katapult_model_fault_silent_complete(r.model, true);
    st_err err;
    assert_int_equal(st_katapult_complete(r.k, &err), ST_ERR_TIMEOUT);
    assert_non_null(strstr(err.msg, "COMPLETE"));
    /* The jump happened anyway. */
    assert_int_equal(st_katapult_model_get_state(r.model), ST_KATAPULT_MODEL_GONE);
    assert_int_equal(r.resets, 1);
    rig_down(&r);
}

/* ---- the device model's exact behaviours, byte for byte ---------------------------- */

static size_t xfer(st_stream *s, const uint8_t *out, size_t n, uint8_t *in, size_t cap,
                   unsigned wait_ms)
{
    st_err err;
    if (n)
        assert_int_equal(st_stream_write(s, out, n, 100, &err), (int)n);
    size_t got = 0;
    st_deadline d = st_clock_deadline_in_ms(s->clock, wait_ms);
    do {
        int rc = st_stream_read(s, in + got, cap - got,
                                (unsigned)st_clock_deadline_remaining_ms(s->clock, d), &err);
        assert_true(rc >= 0);
        got += (size_t)rc;
    } while (!st_clock_deadline_passed(s->clock, d) && got < cap);
    return got;
}

static const uint8_t NACK[] = {0x01, 0x88, 0xf1, 0x00, 0x68, 0x95, 0x99, 0x03};
static const uint8_t CERR[] = {0x01, 0x88, 0xf2, 0x00, 0x00, 0xbf, 0x99, 0x03};
static const uint8_t CONNECT[] = {0x01, 0x88, 0x11, 0x00, 0xf1, 0x7c, 0x99, 0x03};

static void test_model_single_nack_per_resync(void **state)
{
    rig r;
    rig_up(&r, ST_TIMING_NONE, NULL, NULL);
    uint8_t in[256];
    const uint8_t junk[] = {0x55, 0xaa, 0x01, 0x88, 0x11, 0x00, 0x00, 0x00, 0x99, 0x03, 0x42};
    size_t n = xfer(r.s, junk, sizeof junk, in, sizeof in, 20);
    assert_int_equal(n, 8);
    assert_memory_equal(in, NACK, 8);
    /* More garbage: silence. */
    n = xfer(r.s, junk, sizeof junk, in, sizeof in, 20);
    assert_int_equal(n, 0);
    /* A valid frame re-arms the NACK. */
    n = xfer(r.s, CONNECT, sizeof CONNECT, in, sizeof in, 20);
    assert_int_equal(n, 60);
    assert_int_equal(in[2], 0xa0);
    n = xfer(r.s, junk, sizeof junk, in, sizeof in, 20);
    assert_int_equal(n, 8);
    assert_memory_equal(in, NACK, 8);
    rig_down(&r);
}

static void test_model_connect_bytes(void **state)
{
    rig r;
    st_katapult_model_cfg c = {.sw_version = "v0.0.1-110-gb0bf421"};
    rig_up(&r, ST_TIMING_NONE, &c, NULL);
    uint8_t in[256];
    static const uint8_t want[] = {
        0x01, 0x88, 0xa0, 0x0d, 0x11, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x20,
        0x00, 0x08, 0x40, 0x00, 0x00, 0x00, 0x73, 0x74, 0x6d, 0x33, 0x32, 0x67, 0x34, 0x33,
        0x31, 0x78, 0x78, 0x00, 0x00, 0x00, 0x00, 0x00, 0x76, 0x30, 0x2e, 0x30, 0x2e, 0x31,
        0x2d, 0x31, 0x31, 0x30, 0x2d, 0x67, 0x62, 0x30, 0x62, 0x66, 0x34, 0x32, 0x31, 0x00,
        0x45, 0x23, 0x99, 0x03};
    size_t n = xfer(r.s, CONNECT, sizeof CONNECT, in, sizeof in, 20);
    assert_int_equal(n, sizeof want);
    assert_memory_equal(in, want, sizeof want);
    rig_down(&r);
}

static void test_model_unknown_and_prime(void **state)
{
    rig r;
    rig_up(&r, ST_TIMING_NONE, NULL, NULL);
    uint8_t in[64], f[16];
    size_t fl = st_kat_frame_encode(0x42, NULL, 0, f, sizeof f);
    assert_int_equal(xfer(r.s, f, fl, in, sizeof in, 20), 8);
    assert_memory_equal(in, CERR, 8);
    static const uint8_t prime[] = {0x01, 0x88, 0x90, 0x00, 0xe5, 0xe9, 0x99, 0x03};
    assert_int_equal(xfer(r.s, prime, sizeof prime, in, sizeof in, 20), 8);
    assert_memory_equal(in, CERR, 8);
    rig_down(&r);
}

static size_t send_block(rig *r, uint32_t addr, const uint8_t *data, size_t words, uint8_t *in)
{
    uint8_t p[4 + 256], f[300];
    st_kat_put_le32(p, addr);
    memcpy(p + 4, data, words * 4 - 4);
    size_t fl = st_kat_frame_encode(0x12, p, words * 4, f, sizeof f);
    return xfer(r->s, f, fl, in, 64, 20);
}

static void test_model_send_block_rules(void **state)
{
    rig r;
    rig_up(&r, ST_TIMING_NONE, NULL, NULL);
    uint8_t blk[64], in[64];
    memset(blk, 0x5a, sizeof blk);
    /* Wrong word count, below the app start, misaligned: 0xF2. */
    assert_int_equal(send_block(&r, APP, blk, 16, in), 8);
    assert_memory_equal(in, CERR, 8);
    assert_int_equal(send_block(&r, APP - 64, blk, 17, in), 8);
    assert_memory_equal(in, CERR, 8);
    assert_int_equal(send_block(&r, APP + 4, blk, 17, in), 8);
    assert_memory_equal(in, CERR, 8);
    /* A good block: ACK echoing the address. */
    assert_int_equal(send_block(&r, APP, blk, 17, in), 16);
    static const uint8_t ack[] = {0x01, 0x88, 0xa0, 0x02, 0x12, 0x00, 0x00, 0x00,
                                  0x00, 0x20, 0x00, 0x08};
    assert_memory_equal(in, ack, sizeof ack);
    /* The identical block again: accepted without programming. */
    assert_int_equal(send_block(&r, APP, blk, 17, in), 16);
    assert_int_equal(in[2], 0xa0);
    st_katapult_model_stats st;
    st_katapult_model_get_stats(r.model, &st);
    assert_int_equal(st.blocks_resent, 1);
    assert_int_equal(st.blocks_written, 1);
    /* Out of order: a different block over programmed flash mid-page. */
    assert_int_equal(send_block(&r, APP + 64, blk, 17, in), 16);
    memset(blk, 0x11, sizeof blk);
    assert_int_equal(send_block(&r, APP + 64, blk, 17, in), 8);
    assert_memory_equal(in, CERR, 8);
    /* A different first block of the page erases the page. */
    assert_int_equal(send_block(&r, APP, blk, 17, in), 16);
    uint8_t fl[128];
    st_flash_read(r.flash, APP, fl, sizeof fl);
    assert_memory_equal(fl, blk, 64);
    for (int i = 64; i < 128; i++)
        assert_int_equal(fl[i], 0xFF);
    /* SEND_EOF reports pages started since boot: 2 so far (the page was started twice);
     * one more page start makes 3 (the reference's ACK(EOF, 3 pages) vector). */
    assert_int_equal(send_block(&r, APP + 2048, blk, 17, in), 16);
    static const uint8_t eof[] = {0x01, 0x88, 0x13, 0x00, 0x41, 0x4f, 0x99, 0x03};
    static const uint8_t eof3[] = {0x01, 0x88, 0xa0, 0x02, 0x13, 0x00, 0x00, 0x00,
                                   0x03, 0x00, 0x00, 0x00, 0x5b, 0xfd, 0x99, 0x03};
    assert_int_equal(xfer(r.s, eof, sizeof eof, in, sizeof in, 20), 16);
    assert_memory_equal(in, eof3, 16);
    /* REQUEST_BLOCK @APP returns the block. */
    static const uint8_t req[] = {0x01, 0x88, 0x14, 0x01, 0x00, 0x20, 0x00, 0x08, 0x5b, 0xde,
                                  0x99, 0x03};
    uint8_t big[128];
    assert_int_equal(xfer(r.s, req, sizeof req, big, sizeof big, 20), 80);
    assert_int_equal(big[3], 18);
    assert_memory_equal(big + 12, blk, 64);
    rig_down(&r);
}

static void test_model_delayed_reset(void **state)
{
    rig r;
    rig_up(&r, ST_TIMING_NONE, NULL, NULL);
    static const uint8_t complete[] = {0x01, 0x88, 0x15, 0x00, 0x91, 0x1b, 0x99, 0x03};
    static const uint8_t ackc[] = {0x01, 0x88, 0xa0, 0x01, 0x15, 0x00,
                                   0x00, 0x00, 0x00, 0x2e, 0x99, 0x03};
    uint8_t in[64];
    rig_virtual_time(&r);
    uint64_t t0 = st_clock_now_us(r.clock);
    assert_int_equal(xfer(r.s, complete, sizeof complete, in, 12, 50), 12);
    assert_memory_equal(in, ackc, 12);
    /* Still answering until the reset. */
    assert_int_equal(xfer(r.s, CONNECT, sizeof CONNECT, in, 60, 50), 60);
    assert_int_equal(r.resets, 0);
    st_clock_virtual_advance(r.clock, 90000 - (st_clock_now_us(r.clock) - t0));
    assert_int_equal(xfer(r.s, CONNECT, sizeof CONNECT, in, 60, 0), 60); /* at 90 ms: still there */
    assert_int_equal(r.resets, 0);
    assert_int_equal(xfer(r.s, NULL, 0, in, sizeof in, 60), 0);
    assert_true(st_clock_now_us(r.clock) - t0 >= 100000);
    assert_int_equal(r.resets, 1);
    assert_int_equal(st_katapult_model_get_state(r.model), ST_KATAPULT_MODEL_GONE);
    assert_int_equal(xfer(r.s, CONNECT, sizeof CONNECT, in, sizeof in, 20), 0);
    rig_down(&r);
}

/* An answer ready before the jump reaches the host even when the host side (a pty server
 * preempted on a loaded machine) comes for it only after jump_at; the reset then happens. */
static void test_model_answer_before_reset_survives(void **state)
{
    rig r;
    rig_up(&r, ST_TIMING_NONE, NULL, NULL);
    static const uint8_t complete[] = {0x01, 0x88, 0x15, 0x00, 0x91, 0x1b, 0x99, 0x03};
    st_stream_model *b = st_katapult_model_stream(r.model);
    uint8_t in[128];
    uint64_t t = 1000000;
    b->ops->rx(b, complete, sizeof complete, t);
    assert_int_equal(b->ops->tx(b, in, sizeof in, t), 12);
    /* jump_at = t + 100 ms; a CONNECT answered 1 us before it, collected 2 ms after it. */
    b->ops->rx(b, CONNECT, sizeof CONNECT, t + 99999);
    assert_int_equal(r.resets, 0);
    assert_int_equal(b->ops->tx(b, in, sizeof in, t + 102000), 60);
    assert_int_equal(in[2], 0xa0);
    assert_int_equal(r.resets, 1);
    assert_int_equal(st_katapult_model_get_state(r.model), ST_KATAPULT_MODEL_GONE);
    /* After the reset: nothing more. */
    b->ops->rx(b, CONNECT, sizeof CONNECT, t + 103000);
    assert_int_equal(b->ops->tx(b, in, sizeof in, t + 104000), 0);
    rig_down(&r);
}

/* ---- a hostile or broken device: scripted answers --------------------------------- */

typedef struct script {
    st_stream_model base;
    uint8_t in[2048];
    size_t in_len;
    uint8_t out[8192];
    size_t out_len, out_pos;
    bool trickle; /* hand out one byte per read */
    void (*answer)(struct script *s, const uint8_t *frame);
} script;

static void script_emit(script *s, uint8_t code, const uint8_t *p, size_t n)
{
    s->out_len += st_kat_frame_encode(code, p, n, s->out + s->out_len, sizeof s->out - s->out_len);
}

static void script_rx(st_stream_model *b, const uint8_t *buf, size_t n, uint64_t now)
{
    script *s = (script *)b;
    memcpy(s->in + s->in_len, buf, n);
    s->in_len += n;
    for (;;) {
        st_kat_check c = st_kat_frame_check(s->in, s->in_len, ST_KAT_FRAME_MAX);
        if (c.kind == ST_KAT_NEED_MORE)
            break;
        if (c.kind == ST_KAT_FRAME)
            s->answer(s, s->in);
        memmove(s->in, s->in + c.len, s->in_len - c.len);
        s->in_len -= c.len;
    }
}

static size_t script_tx(st_stream_model *b, uint8_t *buf, size_t cap, uint64_t now)
{
    script *s = (script *)b;
    size_t n = s->out_len - s->out_pos;
    if (n > cap)
        n = cap;
    if (s->trickle && n > 1)
        n = 1;
    memcpy(buf, s->out + s->out_pos, n);
    s->out_pos += n;
    if (s->out_pos == s->out_len)
        s->out_pos = s->out_len = 0;
    return n;
}

static uint64_t script_next(st_stream_model *b)
{
    script *s = (script *)b;
    return s->out_len > s->out_pos ? 0 : UINT64_MAX;
}

static const st_stream_model_ops script_ops = {script_rx, script_tx, script_next, NULL, NULL};

/* A well-behaved device for CONNECT (64-byte blocks) that the tests then bend. */
static void connect_answer(script *s, uint8_t cmd, size_t strings)
{
    uint8_t p[1100] = {0};
    st_kat_put_le32(p, cmd);
    st_kat_put_le32(p + 4, 0x00010100);
    st_kat_put_le32(p + 8, APP);
    st_kat_put_le32(p + 12, 64);
    memcpy(p + 16, "stm32g431xx", 11);
    script_emit(s, 0xa0, p, 16 + strings);
}

static void ans_wrong_cmd(script *s, const uint8_t *f)
{
    connect_answer(s, 0x13, 16);
}

static void ans_short_connect(script *s, const uint8_t *f)
{
    uint8_t p[12] = {0x11};
    script_emit(s, 0xa0, p, sizeof p);
}

static void ans_endless_mcu(script *s, const uint8_t *f)
{
    uint8_t p[16 + 240];
    memset(p, 'A', sizeof p);
    st_kat_put_le32(p, 0x11);
    st_kat_put_le32(p + 4, 0x00010100);
    st_kat_put_le32(p + 8, APP);
    st_kat_put_le32(p + 12, 64);
    script_emit(s, 0xa0, p, sizeof p);
}

/* Garbage, then the answer, split over many reads; blocks echo the wrong address. */
static void ans_bad_echo(script *s, const uint8_t *f)
{
    uint8_t cmd = st_kat_frame_code(f);
    static const uint8_t junk[] = {0x00, 0x99, 0x03, 0x01, 0x02, 0x88};
    memcpy(s->out + s->out_len, junk, sizeof junk);
    s->out_len += sizeof junk;
    if (cmd == 0x11) {
        connect_answer(s, 0x11, 16);
        return;
    }
    uint8_t p[8];
    st_kat_put_le32(p, cmd);
    st_kat_put_le32(p + 4, st_kat_get_le32(st_kat_frame_payload(f)) + 64);
    script_emit(s, 0xa0, p, sizeof p); /* also too short for REQUEST_BLOCK */
}

static void script_up(script *s, rig *r, void (*answer)(script *, const uint8_t *))
{
    memset(s, 0, sizeof *s);
    memset(r, 0, sizeof *r);
    s->base.ops = &script_ops;
    s->answer = answer;
    st_err err;
    assert_int_equal(st_stream_mem_open(&s->base, "mem:script", &r->s, &err), 0);
    assert_int_equal(st_katapult_open(r->s, &fast, &r->k, &err), 0);
}

static void script_down(rig *r)
{
    st_katapult_close(r->k);
    st_stream_close(r->s);
}

static void test_hostile_connect_answers(void **state)
{
    script s;
    rig r;
    st_err err;
    script_up(&s, &r, ans_wrong_cmd);
    assert_int_equal(st_katapult_connect(r.k, NULL, &err), ST_ERR_PROTO);
    assert_non_null(strstr(err.msg, "CONNECT"));
    assert_non_null(strstr(err.msg, "different command after 5 tries"));
    assert_int_equal(st_katapult_retries(r.k), 4);
    script_down(&r);

    script_up(&s, &r, ans_short_connect);
    assert_int_equal(st_katapult_connect(r.k, NULL, &err), ST_ERR_PROTO);
    assert_non_null(strstr(err.msg, "too short"));
    script_down(&r);

    script_up(&s, &r, ans_endless_mcu);
    st_katapult_info info;
    assert_int_equal(st_katapult_connect(r.k, &info, &err), 0);
    assert_int_equal(strlen(info.mcu), ST_KATAPULT_TEXT_MAX - 1);
    assert_string_equal(info.sw_version, "");
    assert_false(info.has_sw_version);
    script_down(&r);
}

/* ---- entry: no fixed waits ---------------------------------------------------------- */

/* The serial bootloader request reaching a unit that already runs Katapult (a rerun, or a
 * unit that rebooted faster than the request ended) is garbage to it: one NACK. The engine
 * must resend CONNECT at once, not after flashtool's drain pause, and must skip the late
 * ACK to its first CONNECT instead of taking it for the next command's answer. On the
 * virtual clock with the pause at 30 s: a fixed wait, were it back, would show as 30 s of
 * virtual time (and as drained input), where the untimed model's conversation takes none. */
static void test_entry_nack_resends_at_once(void **state)
{
    rig r;
    st_katapult_opts o = fast;
    o.retry_pause_ms = 30000;
    o.read_timeout_ms = 5000;
    o.block_timeout_ms = 5000;
    rig_up(&r, ST_TIMING_NONE, NULL, &o);
    rig_virtual_time(&r);
    static const char req[] = "~ \x1c Request Serial Bootloader!! ~";
    st_err err;
    uint64_t t0 = st_clock_now_us(r.clock);
    assert_int_equal(st_stream_write(r.s, (const uint8_t *)req, sizeof req - 1, 100, &err),
                     (int)(sizeof req - 1));
    connect_ok(&r, NULL);
    uint64_t took = st_clock_now_us(r.clock) - t0;
    st_katapult_model_stats st;
    st_katapult_model_get_stats(r.model, &st);
    assert_int_equal(st.nacks, 1);
    assert_int_equal(st_katapult_retries(r.k), 1);
    /* No wait of either kind (30 s pause, 5 s timeout) was taken. */
    assert_true(took < 1000u);
    /* The second CONNECT's answer is still on its way: the flash skips it. */
    st_image *img = make_image(1000, 3, 0);
    st_katapult_result w, v;
    assert_int_equal(st_katapult_flash(r.k, img, NULL, &w, &err), 0);
    assert_int_equal(st_katapult_verify(r.k, img, &v, &err), 0);
    assert_int_equal(w.retries, 0);
    assert_int_equal(v.retries, 0);
    assert_int_equal(w.blocks_sent, 16);
    assert_true(st_clock_now_us(r.clock) - t0 < 1000u);
    st_image_free(img);
    rig_down(&r);
}

/* A unit still rebooting drops the first CONNECTs: with connect_within_ms the engine
 * resends every connect_poll_ms until one is answered. */
static unsigned lost_connects;
static void ans_after_reboot(script *s, const uint8_t *f)
{
    if (st_kat_frame_code(f) == 0x11 && lost_connects) {
        lost_connects--;
        return;
    }
    connect_answer(s, 0x11, 16);
}

static void test_entry_connect_polls(void **state)
{
    script s;
    rig r;
    st_err err;
    memset(&s, 0, sizeof s);
    memset(&r, 0, sizeof r);
    s.base.ops = &script_ops;
    s.answer = ans_after_reboot;
    lost_connects = 3;
    st_katapult_opts o = fast;
    o.read_timeout_ms = 30000;
    o.retry_pause_ms = 30000;
    o.connect_within_ms = 5000;
    o.connect_poll_ms = 10;
    assert_int_equal(st_stream_mem_open(&s.base, "mem:script", &r.s, &err), 0);
    assert_int_equal(st_katapult_open(r.s, &o, &r.k, &err), 0);
    uint64_t t0 = st_now_us();
    assert_int_equal(st_katapult_connect(r.k, NULL, &err), 0);
    assert_int_equal(st_katapult_retries(r.k), 3);
    assert_true(st_now_us() - t0 < 5000000u);
    script_down(&r);

    /* Nobody answers: the entry gives up when its time is over, naming it. */
    lost_connects = 1000000;
    o.connect_within_ms = 100;
    assert_int_equal(st_stream_mem_open(&s.base, "mem:script", &r.s, &err), 0);
    assert_int_equal(st_katapult_open(r.s, &o, &r.k, &err), 0);
    assert_int_equal(st_katapult_connect(r.k, NULL, &err), ST_ERR_TIMEOUT);
    assert_non_null(strstr(err.msg, "within 100 ms"));
    assert_true(st_katapult_retries(r.k) >= 5);
    script_down(&r);
}

/* Serial entry on the virtual clock (issue 9 item 1): the engine's default pauses
 * (flashtool's 0.5 s drain before a resend, ST_KATAPULT_RETRY_PAUSE_MS) with the entry the
 * driver uses (connect_within_ms, polled every ST_KATAPULT_CONNECT_POLL_MS), against the
 * datasheet-timed model at 250000 baud. Every wait the engine takes runs on the stream's
 * clock, so it shows as virtual time, and only as that: the bounds below are modelled
 * time, not a measurement of the host. A fixed wait back on the entry (the drain after the
 * request string's NACK, a sleep before CONNECT, one long CONNECT attempt instead of
 * polling) costs at least 500 ms here, where the conversation costs wire time and, for a
 * rebooting unit, its reboot plus at most one poll interval. */
static void reboot_unit(void *ctx, uint64_t now_us)
{
    (void)now_us;
    st_katapult_model_reboot(ctx);
}

static void test_entry_no_fixed_wait_virtual(void **state)
{
    rig r;
    st_katapult_opts o = {.connect_within_ms = 5000}; /* every other option its default */
    st_katapult_model_cfg c = {.baud = 250000};
    rig_up(&r, ST_TIMING_DATASHEET, &c, &o);
    rig_virtual_time(&r);
    st_err err;

    /* The request string reaches a unit already in Katapult (a rerun): one NACK, then
     * CONNECT at once. */
    uint64_t t0 = st_clock_now_us(r.clock);
    assert_int_equal(st_serial_request_bootloader_uart(r.s, &err), 0);
    connect_ok(&r, NULL);
    uint64_t took = st_clock_now_us(r.clock) - t0;
    st_katapult_model_stats st;
    st_katapult_model_get_stats(r.model, &st);
    assert_int_equal(st.nacks, 1);
    assert_int_equal(st_katapult_retries(r.k), 1);
    /* Request (34 bytes), NACK and two CONNECT exchanges: about 5 ms of wire time. */
    assert_true(took > 0);
    assert_true(took < 50000);

    /* The unit runs its application (COMPLETE, then the jump ~100 ms later) and reboots
     * into Katapult 150 ms after the request: CONNECT is answered by the first poll after
     * the reboot. */
    assert_int_equal(st_katapult_complete(r.k, &err), 0);
    st_clock_virtual_advance(r.clock, 110000);
    t0 = st_clock_now_us(r.clock);
    assert_int_equal(st_serial_request_bootloader_uart(r.s, &err), 0);
    assert_int_equal(st_katapult_model_get_state(r.model), ST_KATAPULT_MODEL_GONE);
    assert_int_equal(st_clock_virtual_at(r.clock, t0 + 150000, reboot_unit, r.model), 0);
    connect_ok(&r, NULL);
    took = st_clock_now_us(r.clock) - t0;
    assert_int_equal(st_katapult_model_get_state(r.model), ST_KATAPULT_MODEL_RUNNING);
    assert_true(took >= 150000);
    assert_true(took < 150000 + ST_KATAPULT_CONNECT_POLL_MS * 1000 + 10000);
    /* The CONNECTs lost to the reboot are owed no answer the next command could take. */
    st_image *img = make_image(300, 5, 0);
    st_katapult_result w;
    assert_int_equal(st_katapult_flash(r.k, img, NULL, &w, &err), 0);
    assert_int_equal(w.retries, 0);
    st_image_free(img);
    rig_down(&r);
}

static void test_hostile_block_answers(void **state)
{
    script s;
    rig r;
    st_err err;
    script_up(&s, &r, ans_bad_echo);
    s.trickle = true;
    assert_int_equal(st_katapult_connect(r.k, NULL, &err), 0);
    st_image *img = make_image(200, 9, 0);
    st_katapult_result w;
    assert_int_equal(st_katapult_flash(r.k, img, NULL, &w, &err), ST_ERR_PROTO);
    assert_non_null(strstr(err.msg, "SEND_BLOCK 0x08002000"));
    assert_non_null(strstr(err.msg, "echoed block 0x08002040 3 times"));
    assert_int_equal(w.retries, 2);
    uint8_t buf[16];
    assert_int_equal(st_katapult_read(r.k, APP, sizeof buf, buf, &err), ST_ERR_PROTO);
    assert_non_null(strstr(err.msg, "REQUEST_BLOCK 0x08002000"));
    assert_non_null(strstr(err.msg, "expected 68"));
    st_image_free(img);
    script_down(&r);
}

/* A device answering anything at all (valid framing, random content): the engine must end
 * every call with success or a clean error, never crash or read out of bounds (ASan). */
static uint32_t rnd_state;
static uint32_t rnd(void)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return rnd_state >> 8;
}

static void ans_random(script *s, const uint8_t *f)
{
    static const uint8_t codes[] = {0xa0, 0xa0, 0xa0, 0xa0, 0xf1, 0xf2, 0xf3, 0x42};
    uint8_t p[1020];
    uint8_t cmd = st_kat_frame_code(f);
    if (rnd() % 3 != 0) { /* mostly a well-shaped answer with random content */
        if (cmd == 0x11) {
            connect_answer(s, 0x11, 16);
            return;
        }
        size_t n = cmd == 0x14 ? 8 + 64 : cmd == 0x12 || cmd == 0x13 ? 8 : cmd == 0x16 ? 12 : 4;
        for (size_t i = 0; i < n; i++)
            p[i] = (uint8_t)rnd();
        st_kat_put_le32(p, cmd);
        if (n >= 8 && cmd != 0x13 && rnd() % 16)
            memcpy(p + 4, st_kat_frame_payload(f), 4);
        script_emit(s, 0xa0, p, n);
        return;
    }
    size_t words = rnd() % 4 == 0 ? rnd() % 255 : rnd() % 20;
    for (size_t i = 0; i < words * 4; i++)
        p[i] = (uint8_t)rnd();
    if (words && rnd() % 2)
        st_kat_put_le32(p, st_kat_frame_code(f)); /* often a plausible echo */
    if (words > 1 && rnd() % 2)
        memcpy(p + 4, st_kat_frame_payload(f), 4);
    if (words > 3 && rnd() % 2)
        st_kat_put_le32(p + 12, 64u << (rnd() % 4));
    if (rnd() % 8 == 0)
        return; /* silence */
    script_emit(s, codes[rnd() % sizeof codes], p, words * 4);
    if (rnd() % 6 == 0) { /* and a corrupt byte somewhere */
        if (s->out_len)
            s->out[rnd() % s->out_len] ^= (uint8_t)(1u << (rnd() % 8));
    }
}

static void test_random_device(void **state)
{
    const st_katapult_opts tiny = {.read_timeout_ms = 3, .block_timeout_ms = 3,
                                   .retry_pause_ms = 1, .busy_wait_ms = 1, .addr_pause_ms = 1,
                                   .tries = 3};
    st_image *img = make_image(300, 10, 0);
    int ok = 0, failed = 0;
    for (uint32_t seed = 1; seed <= 300; seed++) {
        rnd_state = seed;
        script s;
        rig r;
        memset(&s, 0, sizeof s);
        s.base.ops = &script_ops;
        s.answer = ans_random;
        s.trickle = seed % 3 == 0;
        st_err err = {0};
        assert_int_equal(st_stream_mem_open(&s.base, "mem:random", &r.s, &err), 0);
        assert_int_equal(st_katapult_open(r.s, &tiny, &r.k, &err), 0);
        int rc = st_katapult_connect(r.k, NULL, &err);
        if (rc == 0) {
            st_katapult_result w;
            uint8_t buf[100];
            rc = st_katapult_flash(r.k, img, NULL, &w, &err);
            if (rc == 0)
                rc = st_katapult_verify(r.k, img, &w, &err);
            if (rc == ST_ERR_VERIFY) /* random data: expected */
                rc = st_katapult_read(r.k, APP + 3, sizeof buf, buf, &err);
            uint8_t u[6];
            (void)st_katapult_get_canbus_id(r.k, u, NULL);
            (void)st_katapult_complete(r.k, NULL);
        }
        if (rc == 0) {
            ok++;
        } else {
            failed++;
            assert_true(rc < 0);
            assert_int_equal(err.code, rc);
            assert_true(err.msg[0] != '\0');
        }
        script_down(&r);
    }
    assert_true(failed > 0);
    assert_true(ok > 0);
    print_message("random device: %d runs ended in success, %d in a clean error\n", ok, failed);
    st_image_free(img);
}

/* ---- timing and the known answer -------------------------------------------------- */

static void test_datasheet_timing(void **state)
{
    rig r;
    /* UART at 250000 baud, 8N1. */
    st_katapult_model_cfg c = {.baud = 250000, .bits_per_char = 10, .turnaround_us = 50};
    rig_up(&r, ST_TIMING_DATASHEET, &c, NULL);
    connect_ok(&r, NULL);
    st_image *img = make_image(4096, 8, 0);
    uint8_t old[4096];
    memset(old, 0, sizeof old); /* an old application: both pages need erasing */
    st_flash_preload(r.flash, APP, old, sizeof old);
    uint64_t t0 = st_now_us();
    st_katapult_result w;
    st_err err;
    assert_int_equal(st_katapult_flash(r.k, img, NULL, &w, &err), 0);
    uint64_t took = st_now_us() - t0;
    st_katapult_model_stats st;
    st_katapult_model_get_stats(r.model, &st);
    /* CONNECT (8 + 60 bytes at 40 us each, + turnaround), 2 page erases (44 ms), 64 blocks
     * x (8 double words x 82 us + (76 + 16) bytes x 40 us + turnaround), SEND_EOF. */
    uint64_t floor_us = (8 + 60) * 40 + 50 + 2 * 22000 + 64 * (8 * 82 + 92 * 40 + 50) +
                        (8 + 16) * 40 + 50;
    assert_int_equal(st.device_us, floor_us);
    assert_true(took >= st.device_us);
    print_message("datasheet 250000 baud: 4 KiB write: device limit %.1f ms, station %.1f ms "
                  "(ratio %.2f)\n", st.device_us / 1000.0, took / 1000.0,
                  (double)took / (double)st.device_us);
    st_image_free(img);
    rig_down(&r);
}

static st_image *load_known(void)
{
    const char *path = STATION_SHARED_DIR KNOWN_BIN;
    if (access(path, R_OK) != 0)
        return NULL;
    st_image *img;
    st_err err;
    int rc = st_image_load(path, 0, &img, &err);
    if (rc)
        fail_msg("%s", err.msg);
    return img;
}

static void known_answer(st_timing_profile t, const st_katapult_model_cfg *c, bool prime)
{
    st_image *img = load_known();
    if (!img) {
        print_message("skip: %s absent\n", STATION_SHARED_DIR KNOWN_BIN);
        skip();
    }
    rig r;
    st_katapult_opts o = {.prime = prime}; /* flashtool's own timeouts */
    rig_up(&r, t, c, &o);
    st_katapult_info info;
    connect_ok(&r, &info);
    st_err err;
    assert_int_equal(st_katapult_check_mcu(&info, "stm32g431xx", &err), 0);
    uint64_t t0 = st_now_us();
    st_katapult_result w, v;
    flash_and_verify(&r, img, &w, &v);
    assert_int_equal(st_katapult_complete(r.k, &err), 0);
    uint64_t took = st_now_us() - t0;
    assert_int_equal(w.pages, 14);
    assert_int_equal(v.blocks_verified, 435);
    assert_int_equal(w.blocks_sent, 435);
    assert_string_equal(w.sha1_hex, "FCA6E37F4D9F344E7AF18C7609AEBBCFD6E597E0");
    assert_string_equal(v.sha1_hex, "FCA6E37F4D9F344E7AF18C7609AEBBCFD6E597E0");
    assert_int_equal(st_katapult_retries(r.k), 0);
    st_katapult_model_stats st;
    st_katapult_model_get_stats(r.model, &st);
    if (t == ST_TIMING_DATASHEET)
        print_message("known answer (datasheet, USB CDC 1 ms turnaround): write+verify+complete "
                      "%.1f ms, device limit %.1f ms, ratio %.2f\n",
                      took / 1000.0, st.device_us / 1000.0, (double)took / st.device_us);
    else
        print_message("known answer (no timing): write+verify %.1f ms\n", took / 1000.0);
    st_image_free(img);
    rig_down(&r);
}

static void test_known_answer_cartographer(void **state)
{
    known_answer(ST_TIMING_NONE, NULL, true);
}

static void test_known_answer_cartographer_datasheet(void **state)
{
    st_katapult_model_cfg c = {.turnaround_us = 1000};
    known_answer(ST_TIMING_DATASHEET, &c, true);
}

/* ---- the answer-time hint (st_stream_expect_at) ------------------------------------ */

/* A stream in front of the rig's in-memory stream that records the engine's hints: how
 * long after the end of each write it expects that command's answer (0: no hint). */
typedef struct hint_stream {
    st_stream base;
    st_stream *in;
    uint64_t wrote_at;
    uint8_t cmd;        /* of the last write */
    unsigned hints[256], writes[256];
    uint64_t hint_min[256], hint_max[256];
} hint_stream;

static int hs_write(st_stream *s, const uint8_t *b, size_t n, unsigned t, st_err *e)
{
    hint_stream *h = (hint_stream *)s;
    int rc = st_stream_write(h->in, b, n, t, e);
    h->wrote_at = st_clock_now_us(s->clock);
    h->cmd = n > 2 ? b[2] : 0;
    h->writes[h->cmd]++;
    return rc;
}

static int hs_read(st_stream *s, uint8_t *b, size_t cap, unsigned t, st_err *e)
{
    return st_stream_read(((hint_stream *)s)->in, b, cap, t, e);
}

static void hs_expect(st_stream *s, uint64_t at)
{
    hint_stream *h = (hint_stream *)s;
    uint64_t d = at - h->wrote_at;
    unsigned c = h->cmd;
    if (!h->hints[c]++ || d < h->hint_min[c])
        h->hint_min[c] = d;
    if (d > h->hint_max[c])
        h->hint_max[c] = d;
}

static int hs_line(st_stream *s, const st_stream_line *l, st_err *e)
{
    return 0;
}

static int hs_modem(st_stream *s, int dtr, int rts, st_err *e)
{
    return 0;
}

static int hs_flush(st_stream *s, st_err *e)
{
    return st_stream_flush_input(((hint_stream *)s)->in, e);
}

static void hs_close(st_stream *s)
{
}

static const st_stream_ops hs_ops = { .write = hs_write, .read = hs_read, .set_line = hs_line,
                                      .set_modem = hs_modem, .flush_input = hs_flush,
                                      .close = hs_close, .expect_at = hs_expect };

/* Issue 9: the engine tells the link when each answer is due, learnt from that command's
 * last two answers (the shorter), so a CAN stream can take it at one wake-up. On the
 * virtual clock with a datasheet-timed model at 250000 baud every block costs the same,
 * except the first block of each page of a unit holding another image, which waits for the
 * page erase: that one slow answer must not move the hint (it would delay the next 31
 * blocks by an erase each). The hint is never given before two answers were seen, and
 * never longer than the answers it was learnt from. */
static void test_answer_time_hint(void **state)
{
    for (int other = 0; other < 2; other++) {
        rig r;
        st_katapult_model_cfg c = { .baud = 250000, .turnaround_us = 100 };
        rig_up(&r, ST_TIMING_DATASHEET, &c, NULL);
        st_image *img = make_image(4 * 2048, 21, 0);
        if (other) {
            uint8_t *inv = malloc(img->size);
            for (size_t i = 0; i < img->size; i++)
                inv[i] = (uint8_t)~img->data[i];
            st_flash_preload(r.flash, APP, inv, img->size);
            free(inv);
        }
        hint_stream h = { .base.ops = &hs_ops, .in = r.s };
        snprintf(h.base.name, sizeof h.base.name, "hint");
        st_stream_set_clock(r.s, r.clock);
        st_stream_set_clock(&h.base, r.clock);
        st_katapult *k;
        assert_int_equal(st_katapult_open(&h.base, &fast, &k, NULL), 0);
        assert_int_equal(st_katapult_connect(k, NULL, NULL), 0);
        st_katapult_result w, v;
        uint64_t t0 = st_clock_now_us(r.clock);
        assert_int_equal(st_katapult_flash(k, img, NULL, &w, NULL), 0);
        uint64_t flash_us = st_clock_now_us(r.clock) - t0;
        assert_int_equal(st_katapult_verify(k, img, &v, NULL), 0);
        assert_int_equal(w.blocks_sent, 128);
        assert_int_equal(v.blocks_verified, 128);
        assert_int_equal(st_katapult_retries(k), 0);
        /* Every block from the third on is hinted, CONNECT (once) never. */
        assert_int_equal(h.writes[ST_KAT_CMD_SEND_BLOCK], 128);
        assert_int_equal(h.hints[ST_KAT_CMD_SEND_BLOCK], 126);
        assert_int_equal(h.hints[ST_KAT_CMD_REQUEST_BLOCK], 126);
        assert_int_equal(h.hints[ST_KAT_CMD_CONNECT], 0);
        /* One hint for every block: the erases (other image: 4 of 128 answers) never
         * lengthen it; and it is at least the wire time of command and answer (80 + 16
         * bytes at 40 us). */
        assert_int_equal(h.hint_min[ST_KAT_CMD_SEND_BLOCK], h.hint_max[ST_KAT_CMD_SEND_BLOCK]);
        assert_true(h.hint_min[ST_KAT_CMD_SEND_BLOCK] >= 96u * 40u);
        assert_true(h.hint_max[ST_KAT_CMD_SEND_BLOCK] * 128u <= flash_us);
        assert_int_equal(h.hint_min[ST_KAT_CMD_REQUEST_BLOCK],
                         h.hint_max[ST_KAT_CMD_REQUEST_BLOCK]);
        assert_true(h.hint_min[ST_KAT_CMD_REQUEST_BLOCK] >= (8u + 80u) * 40u);
        st_katapult_close(k);
        st_image_free(img);
        rig_down(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_info),
        cmocka_unit_test(test_connect_proto_1_0),
        cmocka_unit_test(test_connect_hostile_strings),
        cmocka_unit_test(test_connect_rejects_block_size),
        cmocka_unit_test(test_prime),
        cmocka_unit_test(test_canbus_id),
        cmocka_unit_test(test_flash_verify_complete),
        cmocka_unit_test(test_bad_image_placement),
        cmocka_unit_test(test_partial_rewrite),
        cmocka_unit_test(test_probe_then_decide),
        cmocka_unit_test(test_verify_mismatch_names_block),
        cmocka_unit_test(test_fault_drop_host_frame),
        cmocka_unit_test(test_fault_drop_answer),
        cmocka_unit_test(test_fault_corrupt_host_frame),
        cmocka_unit_test(test_fault_corrupt_answer),
        cmocka_unit_test(test_fault_nack_and_busy_recovered),
        cmocka_unit_test(test_fault_nack_storm_gives_up),
        cmocka_unit_test(test_fault_sweep_no_err_buffer),
        cmocka_unit_test(test_fault_power_loss),
        cmocka_unit_test(test_fault_silent_complete),
        cmocka_unit_test(test_model_single_nack_per_resync),
        cmocka_unit_test(test_model_connect_bytes),
        cmocka_unit_test(test_model_unknown_and_prime),
        cmocka_unit_test(test_model_send_block_rules),
        cmocka_unit_test(test_model_delayed_reset),
        cmocka_unit_test(test_model_answer_before_reset_survives),
        cmocka_unit_test(test_hostile_connect_answers),
        cmocka_unit_test(test_hostile_block_answers),
        cmocka_unit_test(test_entry_nack_resends_at_once),
        cmocka_unit_test(test_entry_connect_polls),
        cmocka_unit_test(test_entry_no_fixed_wait_virtual),
        cmocka_unit_test(test_answer_time_hint),
        cmocka_unit_test(test_random_device),
        cmocka_unit_test(test_datasheet_timing),
        cmocka_unit_test(test_known_answer_cartographer),
        cmocka_unit_test(test_known_answer_cartographer_datasheet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
