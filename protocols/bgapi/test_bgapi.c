/* BGAPI UART DFU engine against the module model over the in-memory stream: both
 * bootloader generations, every command and its answers, each error the bootloader can
 * report, and every model fault (silence after reset, wrong baud, a dropped byte, power
 * loss mid-upload, a finish that does not verify, a failed application boot). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/bgapi/bgapi.h"
#include "protocols/bgapi/bgapi_model.h"
#include "protocols/bgapi/gbl.h"
#include "station/core/clock.h"

/* Short limits so fault tests take milliseconds: the model's packet timeouts are scaled
 * down with the host's, keeping their order (response < payload timeout < quiet). */
static const st_bgapi_opts fast = {
    .entry_timeout_ms = 400, .resend_ms = 60, .rsp_timeout_ms = 100, .boot_timeout_ms = 300,
    .quiet_ms = 200,
};

typedef struct rig {
    st_flash *flash;
    st_bgapi_model *model;
    st_stream *s;
    st_bgapi *b;
} rig;

static void rig_up(rig *r, st_bgapi_gen gen, st_timing_profile t, const st_bgapi_model_cfg *mc,
                   const st_bgapi_opts *o)
{
    memset(r, 0, sizeof *r);
    r->flash = st_flash_new(st_mcu_find("efr32bg13p632f512"), t);
    assert_non_null(r->flash);
    st_bgapi_model_cfg c = mc ? *mc : (st_bgapi_model_cfg){0};
    c.gen = gen;
    if (!c.header_timeout_ms)
        c.header_timeout_ms = 100;
    if (!c.payload_timeout_ms)
        c.payload_timeout_ms = 150;
    r->model = st_bgapi_model_new(r->flash, &c);
    assert_non_null(r->model);
    st_err err;
    assert_int_equal(st_stream_mem_open(st_bgapi_model_stream(r->model), "mem:bgm", &r->s, &err),
                     0);
    st_stream_line line = {115200, 8, 'N', 1, 0};
    assert_int_equal(st_stream_set_line(r->s, &line, &err), 0);
    assert_int_equal(st_bgapi_open(r->s, o ? o : &fast, &r->b, &err), 0);
}

static void reopen(rig *r, const st_bgapi_opts *o)
{
    st_err err;
    st_bgapi_close(r->b);
    assert_int_equal(st_bgapi_open(r->s, o ? o : &fast, &r->b, &err), 0);
}

static void rig_down(rig *r)
{
    st_bgapi_close(r->b);
    st_stream_close(r->s);
    st_bgapi_model_free(r->model);
    st_flash_free(r->flash);
}

static uint8_t *image(size_t len, uint32_t version, uint32_t addr, size_t *n)
{
    uint8_t *d = malloc(len);
    uint32_t seed = version;
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1664525u + 1013904223u;
        d[i] = (uint8_t)(seed >> 24);
    }
    d[0] = 0x00, d[1] = 0x80, d[2] = 0x00, d[3] = 0x20; /* initial SP: not blank flash */
    st_gbl_build_opts o = {.app_type = 1u << 3, .app_version = version, .prog_addr = addr,
                           .data = d, .len = len};
    uint8_t *g;
    assert_int_equal(st_gbl_build(&o, &g, n, NULL), 0);
    free(d);
    return g;
}

static int update(rig *r, const uint8_t *g, size_t n, st_err *err)
{
    int rc = st_bgapi_enter_dfu(r->b, err);
    if (rc == 0)
        rc = st_bgapi_upload(r->b, g, n, err);
    if (rc == 0)
        rc = st_bgapi_finish(r->b, err);
    if (rc == 0)
        rc = st_bgapi_boot(r->b, err);
    return rc;
}

static void must(int rc, const st_err *err)
{
    if (rc)
        fail_msg("%s", err->msg);
}

static void expect_in(const st_err *err, const char *s)
{
    if (!strstr(err->msg, s))
        fail_msg("expected '%s' in: %s", s, err->msg);
}

static void test_update_gsdk4(void **state)
{
    rig r;
    rig_up(&r, ST_BGAPI_GEN_GSDK4, ST_TIMING_NONE, NULL, NULL);
    size_t n;
    uint8_t *g = image(10000, st_gbl_stack_version(5, 1, 2, 77), 0, &n);
    st_err err;
    must(update(&r, g, n, &err), &err);
    const st_bgapi_result *res = st_bgapi_get_result(r.b);
    assert_int_equal(res->entry, ST_BGAPI_ENTRY_SYSTEM_RESET);
    assert_int_equal(res->gen, ST_BGAPI_GEN_GSDK4);
    assert_int_equal(res->bootloader_version, 0x02040000);
    assert_int_equal(res->entry_sends, 1);
    assert_int_equal(res->chunk_size, 252);
    assert_int_equal(res->chunks, (n + 251) / 252);
    assert_int_equal(res->chunks_done, res->chunks);
    assert_int_equal(res->bytes_done, n);
    assert_true(res->finished);
    assert_true(res->booted);
    assert_int_equal(res->stack.major, 5);
    assert_int_equal(res->stack.minor, 1);
    assert_int_equal(res->stack.patch, 2);
    assert_int_equal(res->stack.build, 77);
    assert_int_equal(res->stack.bootloader, 0x02040000);
    assert_true(res->stack.has_hash);
    assert_int_equal(st_bgapi_model_get_state(r.model), ST_BGAPI_MODEL_APP);
    assert_true(st_bgapi_model_app_valid(r.model));
    /* The flash holds the image's program data. */
    uint8_t back[16];
    assert_int_equal(st_flash_read(r.flash, 0, back, 16), ST_FLASH_OK);
    assert_memory_equal(back, g + 16 + 36 + 12, 16);
    st_bgapi_model_stats ms;
    st_bgapi_model_get_stats(r.model, &ms);
    assert_int_equal(ms.installs, 1);
    assert_int_equal(ms.uploads, res->chunks);
    assert_int_equal(ms.resets_ignored, 0);
    free(g);
    rig_down(&r);
}

static void test_update_sdk2_falls_back(void **state)
{
    /* A GSDK <= 3.2 module ignores system_reset: the engine moves on to dfu_reset. */
    rig r;
    rig_up(&r, ST_BGAPI_GEN_SDK2, ST_TIMING_NONE, NULL, NULL);
    size_t n;
    uint8_t *g = image(3000, st_gbl_stack_version(2, 13, 10, 3), 0, &n);
    st_err err;
    must(update(&r, g, n, &err), &err);
    const st_bgapi_result *res = st_bgapi_get_result(r.b);
    assert_int_equal(res->entry, ST_BGAPI_ENTRY_DFU_RESET);
    assert_int_equal(res->gen, ST_BGAPI_GEN_SDK2);
    assert_int_equal(res->bootloader_version, 0x010c0000);
    assert_int_equal(res->entry_sends, 2);
    assert_int_equal(res->stack.minor, 13);
    st_bgapi_model_stats ms;
    st_bgapi_model_get_stats(r.model, &ms);
    assert_int_equal(ms.resets_ignored, 1);
    /* Asking for dfu_reset first gets there in one. */
    st_bgapi_opts o = fast;
    o.first = ST_BGAPI_ENTRY_DFU_RESET;
    reopen(&r, &o);
    must(update(&r, g, n, &err), &err);
    assert_int_equal(st_bgapi_get_result(r.b)->entry_sends, 1);
    free(g);
    rig_down(&r);
}

static void test_gsdk4_ignores_dfu_reset(void **state)
{
    rig r;
    st_bgapi_opts o = fast;
    o.first = ST_BGAPI_ENTRY_DFU_RESET;
    rig_up(&r, ST_BGAPI_GEN_GSDK4, ST_TIMING_NONE, NULL, &o);
    st_err err;
    must(st_bgapi_enter_dfu(r.b, &err), &err);
    assert_int_equal(st_bgapi_get_result(r.b)->entry, ST_BGAPI_ENTRY_SYSTEM_RESET);
    assert_int_equal(st_bgapi_get_result(r.b)->entry_sends, 2);
    rig_down(&r);
}

static void test_chunk_sizes(void **state)
{
    size_t n;
    uint8_t *g = image(2000, 7, 0, &n);
    const unsigned sizes[] = {4, 48, 128, 252};
    for (size_t i = 0; i < 4; i++) {
        rig r;
        st_bgapi_opts o = fast;
        o.chunk = sizes[i];
        rig_up(&r, ST_BGAPI_GEN_GSDK4, ST_TIMING_NONE, NULL, &o);
        st_err err;
        must(update(&r, g, n, &err), &err);
        assert_int_equal(st_bgapi_get_result(r.b)->chunks, (n + sizes[i] - 1) / sizes[i]);
        assert_int_equal(st_bgapi_get_result(r.b)->chunk_size, sizes[i]);
        rig_down(&r);
    }
    st_err err;
    st_bgapi_opts bad = {.chunk = 250};
    assert_int_equal(st_bgapi_opts_check(&bad, &err), ST_ERR_INVAL);
    expect_in(&err, "multiple of 4");
    bad.chunk = 256;
    assert_int_equal(st_bgapi_opts_check(&bad, &err), ST_ERR_INVAL);
    free(g);
}

static void test_refuses_unaligned_length(void **state)
{
    rig r;
    rig_up(&r, ST_BGAPI_GEN_GSDK4, ST_TIMING_NONE, NULL, NULL);
    uint8_t junk[10] = {0};
    st_err err;
    assert_int_equal(st_bgapi_upload(r.b, junk, 10, &err), ST_ERR_INVAL);
    expect_in(&err, "not a positive multiple of 4");
    st_bgapi_model_stats ms;
    st_bgapi_model_get_stats(r.model, &ms);
    assert_int_equal(ms.packets, 0); /* nothing was sent */
    rig_down(&r);
}

static void corrupt_upload(st_bgapi_gen gen, const char *code, const char *name)
{
    rig r;
    rig_up(&r, gen, ST_TIMING_NONE, NULL, NULL);
    size_t n;
    uint8_t *g = image(2000, 9, 0, &n);
    g[500] ^= 0x10; /* the host's own file check would refuse this; the device must too */
    st_err err;
    int rc = update(&r, g, n, &err);
    assert_int_equal(rc, ST_ERR_DEVICE);
    expect_in(&err, "upload chunk 9 of 9");
    expect_in(&err, code);
    expect_in(&err, name);
    assert_int_equal(st_bgapi_get_result(r.b)->chunks_done, 8);
    assert_int_equal(st_bgapi_model_get_state(r.model), ST_BGAPI_MODEL_BOOTLOADER);
    free(g);
    rig_down(&r);
}

static void test_upload_error_both_generations(void **state)
{
    corrupt_upload(ST_BGAPI_GEN_GSDK4, "0x0046", "SL_STATUS_SECURITY_IMAGE_CHECKSUM_ERROR");
    corrupt_upload(ST_BGAPI_GEN_SDK2, "0x0b03", "bg_err_security_image_checksum_error");
}

static void test_finish_checksum_then_rerun(void **state)
{
    rig r;
    rig_up(&r, ST_BGAPI_GEN_GSDK4, ST_TIMING_NONE, NULL, NULL);
    size_t n;
    uint8_t *g = image(5000, st_gbl_stack_version(5, 2, 0, 1), 0, &n);
    st_err err;
    assert_int_equal(st_bgapi_model_apply_fault(r.model, "finish-checksum", &err), 0);
    int rc = update(&r, g, n, &err);
    assert_int_equal(rc, ST_ERR_DEVICE);
    expect_in(&err, "finish: device answered 0x0046 (SL_STATUS_SECURITY_IMAGE_CHECKSUM_ERROR)");
    expect_in(&err, "stays in DFU mode");
    assert_false(st_bgapi_get_result(r.b)->finished);
    assert_int_equal(st_bgapi_model_get_state(r.model), ST_BGAPI_MODEL_BOOTLOADER);
    assert_false(st_bgapi_model_app_valid(r.model));
    /* A power cycle now shows the two-event boot failure and stays in DFU mode. */
    st_bgapi_model_power_cycle(r.model);
    assert_int_equal(st_bgapi_model_get_state(r.model), ST_BGAPI_MODEL_BOOTLOADER);
    /* The rerun succeeds. */
    reopen(&r, NULL);
    must(update(&r, g, n, &err), &err);
    assert_int_equal(st_bgapi_get_result(r.b)->stack.minor, 2);
    assert_true(st_bgapi_get_result(r.b)->saw_boot_failure);
    assert_int_equal(st_bgapi_get_result(r.b)->boot_failure_reason, 0x0046);
    free(g);
    rig_down(&r);
}

static void test_finish_error_sdk2_and_signed(void **state)
{
    /* A bootloader that requires signed images takes every upload of an unsigned file and
     * refuses it at finish. */
    rig r;
    st_bgapi_model_cfg mc = {.require_signed = true};
    rig_up(&r, ST_BGAPI_GEN_SDK2, ST_TIMING_NONE, &mc, NULL);
    size_t n;
    uint8_t *g = image(1000, 3, 0, &n);
    st_err err;
    assert_int_equal(update(&r, g, n, &err), ST_ERR_DEVICE);
    expect_in(&err, "finish: device answered 0x0b03 (bg_err_security_image_checksum_error)");
    assert_int_equal(st_bgapi_get_result(r.b)->chunks_done, st_bgapi_get_result(r.b)->chunks);
    free(g);
    rig_down(&r);
}

static void test_boot_failure_two_events(void **state)
{
    /* A verified image that does not cover the application start: finish says 0, the
     * restart fails with evt_dfu_boot_failure then evt_dfu_boot. */
    for (int gen = ST_BGAPI_GEN_SDK2; gen <= ST_BGAPI_GEN_GSDK4; gen++) {
        rig r;
        rig_up(&r, (st_bgapi_gen)gen, ST_TIMING_NONE, NULL, NULL);
        size_t n;
        uint8_t *g = image(1000, 3, 0x1000, &n);
        st_err err;
        int rc = update(&r, g, n, &err);
        assert_int_equal(rc, ST_ERR_DEVICE);
        expect_in(&err, "did not start the new firmware: evt_dfu_boot_failure reason");
        expect_in(&err, gen == ST_BGAPI_GEN_SDK2 ? "0x0b03 (bg_err_security_image_checksum_error)"
                                                 : "0x0046 (SL_STATUS_SECURITY_IMAGE_CHECKSUM_ERROR)");
        expect_in(&err, "it is in DFU mode (bootloader 0x0");
        expect_in(&err, gen == ST_BGAPI_GEN_SDK2 ? "after dfu_reset(0)" : "after system_reset(0)");
        assert_true(st_bgapi_get_result(r.b)->finished);
        assert_false(st_bgapi_get_result(r.b)->booted);
        assert_int_equal(st_bgapi_model_get_state(r.model), ST_BGAPI_MODEL_BOOTLOADER);
        free(g);
        rig_down(&r);
    }
}

static void test_silent_after_reset(void **state)
{
    rig r;
    rig_up(&r, ST_BGAPI_GEN_GSDK4, ST_TIMING_NONE, NULL, NULL);
    st_err err;
    /* Lost once: the resend brings it in. */
    assert_int_equal(st_bgapi_model_apply_fault(r.model, "silent:1", &err), 0);
    must(st_bgapi_enter_dfu(r.b, &err), &err);
    assert_int_equal(st_bgapi_get_result(r.b)->entry, ST_BGAPI_ENTRY_SYSTEM_RESET);
    assert_int_equal(st_bgapi_get_result(r.b)->entry_sends, 3); /* system, dfu, system */
    /* Silent for good: a timeout naming both resets. */
    reopen(&r, NULL);
    assert_int_equal(st_bgapi_model_apply_fault(r.model, "silent:1000", &err), 0);
    assert_int_equal(st_bgapi_enter_dfu(r.b, &err), ST_ERR_TIMEOUT);
    expect_in(&err, "no evt_dfu_boot within 400 ms: sent system_reset(1)");
    expect_in(&err, "times and dfu_reset(1)");
    expect_in(&err, "silent");
    rig_down(&r);
}

static void test_wrong_baud(void **state)
{
    rig r;
    rig_up(&r, ST_BGAPI_GEN_GSDK4, ST_TIMING_NONE, NULL, NULL);
    st_err err;
    assert_int_equal(st_bgapi_model_apply_fault(r.model, "baud:57600", &err), 0);
    assert_int_equal(st_bgapi_enter_dfu(r.b, &err), ST_ERR_TIMEOUT);
    expect_in(&err, "baud rate");
    /* What the module sends at its rate is junk at ours: a power cycle's boot event. */
    st_bgapi_model_power_cycle(r.model);
    assert_int_equal(st_bgapi_enter_dfu(r.b, &err), ST_ERR_TIMEOUT);
    expect_in(&err, "0 BGAPI frames");
    /* The host at the module's rate gets through. */
    st_stream_line line = {57600, 8, 'N', 1, 0};
    assert_int_equal(st_stream_set_line(r.s, &line, &err), 0);
    must(st_bgapi_enter_dfu(r.b, &err), &err);
    rig_down(&r);
}

static void test_flow_control_mismatch(void **state)
{
    /* The module's bootloader uses RTS/CTS, the host does not: nothing gets through. */
    rig r;
    st_bgapi_model_cfg mc = {.flow_control = true};
    rig_up(&r, ST_BGAPI_GEN_GSDK4, ST_TIMING_NONE, &mc, NULL);
    st_err err;
    assert_int_equal(st_bgapi_enter_dfu(r.b, &err), ST_ERR_TIMEOUT);
    expect_in(&err, "flow control");
    st_stream_line line = {115200, 8, 'N', 1, 1};
    assert_int_equal(st_stream_set_line(r.s, &line, &err), 0);
    must(st_bgapi_enter_dfu(r.b, &err), &err);
    rig_down(&r);
}

static void test_dropped_byte_then_restart(void **state)
{
    rig r;
    rig_up(&r, ST_BGAPI_GEN_GSDK4, ST_TIMING_NONE, NULL, NULL);
    size_t n;
    uint8_t *g = image(3000, 11, 0, &n);
    st_err err;
    must(st_bgapi_enter_dfu(r.b, &err), &err);
    /* Packet 1 is set_address; packet 4 is the third upload. */
    assert_int_equal(st_bgapi_model_apply_fault(r.model, "drop-rx:4", &err), 0);
    int rc = st_bgapi_upload(r.b, g, n, &err);
    assert_int_equal(rc, ST_ERR_TIMEOUT);
    expect_in(&err, "upload chunk 3 of");
    expect_in(&err, "no dfu_flash_upload response within 100 ms");
    /* Wait out the bootloader's payload timeout, then start over: it works. */
    st_bgapi_quiet(r.b);
    reopen(&r, NULL);
    must(update(&r, g, n, &err), &err);
    st_bgapi_model_stats ms;
    st_bgapi_model_get_stats(r.model, &ms);
    assert_int_equal(ms.packets_timed_out, 1);
    free(g);
    rig_down(&r);
}

static void test_power_loss_mid_upload(void **state)
{
    rig r;
    rig_up(&r, ST_BGAPI_GEN_SDK2, ST_TIMING_NONE, NULL, NULL);
    size_t n;
    uint8_t *g = image(20000, st_gbl_stack_version(2, 13, 11, 0), 0, &n);
    st_err err;
    must(st_bgapi_enter_dfu(r.b, &err), &err);
    assert_int_equal(st_bgapi_model_apply_fault(r.model, "power-loss:5000", &err), 0);
    int rc = st_bgapi_upload(r.b, g, n, &err);
    assert_int_equal(rc, ST_ERR_TIMEOUT);
    expect_in(&err, "upload chunk");
    assert_int_equal(st_bgapi_model_get_state(r.model), ST_BGAPI_MODEL_DEAD);
    /* Power back: the half-written application does not boot; the module stays in DFU
     * mode and says why with two events. */
    st_bgapi_model_power_cycle(r.model);
    assert_int_equal(st_bgapi_model_get_state(r.model), ST_BGAPI_MODEL_BOOTLOADER);
    assert_false(st_bgapi_model_app_valid(r.model));
    st_bgapi_model_stats ms;
    st_bgapi_model_get_stats(r.model, &ms);
    assert_int_equal(ms.boot_failures, 1);
    reopen(&r, NULL);
    must(update(&r, g, n, &err), &err);
    assert_int_equal(st_bgapi_get_result(r.b)->stack.patch, 11);
    free(g);
    rig_down(&r);
}

/* Raw conversation with the model: exact answers to single commands. */
static size_t xfer(rig *r, const uint8_t *cmd, size_t n, uint8_t *out, size_t cap)
{
    st_err err;
    assert_int_equal(st_stream_write(r->s, cmd, n, 100, &err), (int)n);
    int got = st_stream_read(r->s, out, cap, 20, &err);
    assert_true(got >= 0);
    return (size_t)got;
}

static void test_model_commands(void **state)
{
    for (int gen = ST_BGAPI_GEN_SDK2; gen <= ST_BGAPI_GEN_GSDK4; gen++) {
        for (int enforce = 0; enforce < 2; enforce++) {
            rig r;
            st_bgapi_model_cfg mc = {.no_app = true, .enforce_len4 = enforce};
            rig_up(&r, (st_bgapi_gen)gen, ST_TIMING_NONE, &mc, NULL);
            uint8_t out[64], f[64];
            /* Empty module: the bootloader starts with the two events. */
            size_t k = st_stream_read(r.s, out, sizeof out, 20, NULL);
            assert_int_equal(k, 6 + 8);
            assert_int_equal(out[0], 0xa0);
            assert_int_equal(out[3], 0x01);
            assert_int_equal(out[6], 0xa0);
            assert_int_equal(out[9], 0x00);
            /* set_address is ignored: 0 for any address. */
            k = xfer(&r, f, st_bgapi_cmd_set_address(0x12345678, f, sizeof f), out, sizeof out);
            const uint8_t ok_addr[] = {0x20, 0x02, 0x00, 0x01, 0x00, 0x00};
            assert_int_equal(k, 6);
            assert_memory_equal(out, ok_addr, 6);
            /* An unknown command and an event-looking packet: no answer. */
            const uint8_t unknown[] = {0x20, 0x00, 0x00, 0x09, 0xa0, 0x00, 0x00, 0x03};
            assert_int_equal(xfer(&r, unknown, sizeof unknown, out, sizeof out), 0);
            /* An upload of 3 bytes: UNCONFIRMED whether parts refuse it; both modelled. */
            const uint8_t three[] = {0xeb, 0x17, 0xa6};
            k = xfer(&r, f, st_bgapi_cmd_upload(three, 3, f, sizeof f), out, sizeof out);
            assert_int_equal(k, 6);
            uint16_t want = enforce ? (gen == ST_BGAPI_GEN_SDK2 ? 0x0180 : 0x0021) : 0;
            assert_int_equal(st_bgapi_le16(out + 4), want);
            /* Finish on an incomplete stream: the checksum error of the generation. */
            k = xfer(&r, f, st_bgapi_cmd_upload_finish(f, sizeof f), out, sizeof out);
            assert_int_equal(k, 6);
            assert_int_equal(out[3], 0x03);
            assert_int_equal(st_bgapi_le16(out + 4), gen == ST_BGAPI_GEN_SDK2 ? 0x0b03 : 0x0046);
            rig_down(&r);
        }
    }
}

static void test_model_packet_timeouts(void **state)
{
    rig r;
    st_bgapi_model_cfg mc = {.no_app = true};
    rig_up(&r, ST_BGAPI_GEN_GSDK4, ST_TIMING_NONE, &mc, NULL);
    uint8_t out[64], f[16];
    st_stream_read(r.s, out, sizeof out, 20, NULL);
    size_t n = st_bgapi_cmd_set_address(0, f, sizeof f);
    st_err err;
    /* A header cut after two bytes, finished after the 100 ms header limit: dropped. */
    st_stream_write(r.s, f, 2, 100, &err);
    assert_int_equal(st_stream_read(r.s, out, sizeof out, 130, NULL), 0);
    st_stream_write(r.s, f + 2, n - 2, 100, &err);
    assert_int_equal(st_stream_read(r.s, out, sizeof out, 20, NULL), 0);
    /* A payload cut short, finished within the 150 ms payload limit: answered. */
    st_stream_write(r.s, f, 6, 100, &err);
    assert_int_equal(st_stream_read(r.s, out, sizeof out, 50, NULL), 0);
    st_stream_write(r.s, f + 6, n - 6, 100, &err);
    assert_int_equal(st_stream_read(r.s, out, sizeof out, 20, NULL), 6);
    st_bgapi_model_stats ms;
    st_bgapi_model_get_stats(r.model, &ms);
    assert_int_equal(ms.packets_timed_out, 1);
    assert_int_equal(st_bgapi_model_apply_fault(r.model, "bogus", &err), ST_ERR_INVAL);
    expect_in(&err, "module fault 'bogus'");
    rig_down(&r);
}

static void test_system_boot_14(void **state)
{
    rig r;
    st_bgapi_model_cfg mc = {.system_boot_len = 14};
    rig_up(&r, ST_BGAPI_GEN_SDK2, ST_TIMING_NONE, &mc, NULL);
    size_t n;
    uint8_t *g = image(800, st_gbl_stack_version(2, 7, 0, 5), 0, &n);
    st_err err;
    must(update(&r, g, n, &err), &err);
    assert_false(st_bgapi_get_result(r.b)->stack.has_hash);
    assert_int_equal(st_bgapi_get_result(r.b)->stack.minor, 7);
    free(g);
    rig_down(&r);
}

/* A scripted device (not the model): answers resets with evt_dfu_boot and each DFU command
 * with a chosen result, with garbage before every answer; for the engine's error paths
 * and its resync. */
typedef struct scripted {
    st_stream_model base;
    uint8_t out[512];
    size_t out_len;
    uint16_t set_address, upload, finish;
    unsigned uploads_before_error; /* answer 0 to this many uploads first */
    bool garbage, stall_partial;
} scripted;

static void sc_put(scripted *d, const uint8_t *b, size_t n)
{
    if (d->out_len + n <= sizeof d->out) {
        memcpy(d->out + d->out_len, b, n);
        d->out_len += n;
    }
}

static void sc_answer(scripted *d, bool event, uint8_t cls, uint8_t id, const uint8_t *p,
                      size_t n)
{
    uint8_t f[64];
    if (d->garbage) {
        /* Not BGAPI, an "event" with an impossible length, a response that never ends. */
        static const uint8_t junk[] = {0xff, 0x00, 0x55, 0xa0, 0x07, 0x00, 0x00};
        sc_put(d, junk, sizeof junk);
    }
    if (d->stall_partial) {
        static const uint8_t half[] = {0x20, 0xff, 0x00};
        sc_put(d, half, sizeof half);
    }
    sc_put(d, f, st_bgapi_encode(event, cls, id, p, n, f, sizeof f));
}

static void sc_rx(st_stream_model *m, const uint8_t *buf, size_t n, uint64_t now)
{
    scripted *d = (scripted *)m;
    st_bgapi_hdr h;
    if (n < 4)
        return;
    st_bgapi_hdr_decode(buf, &h);
    uint8_t r[4];
    if ((h.cls == 1 && h.id == 1) || (h.cls == 0 && h.id == 0)) {
        st_bgapi_put_le32(r, 0x02040000);
        sc_answer(d, true, 0, ST_BGAPI_EVT_DFU_BOOT, r, 4);
        return;
    }
    uint16_t res = 0;
    if (h.id == ST_BGAPI_DFU_SET_ADDRESS)
        res = d->set_address;
    else if (h.id == ST_BGAPI_DFU_UPLOAD)
        res = d->uploads_before_error ? (d->uploads_before_error--, 0) : d->upload;
    else if (h.id == ST_BGAPI_DFU_UPLOAD_FINISH)
        res = d->finish;
    st_bgapi_put_le16(r, res);
    sc_answer(d, false, 0, h.id, r, 2);
}

static size_t sc_tx(st_stream_model *m, uint8_t *buf, size_t cap, uint64_t now)
{
    scripted *d = (scripted *)m;
    size_t k = d->out_len < cap ? d->out_len : cap;
    memcpy(buf, d->out, k);
    memmove(d->out, d->out + k, d->out_len - k);
    d->out_len -= k;
    return k;
}

static uint64_t sc_next(st_stream_model *m)
{
    return ((scripted *)m)->out_len ? 0 : UINT64_MAX;
}

static const st_stream_model_ops sc_ops = {sc_rx, sc_tx, sc_next, NULL, NULL};

static int scripted_run(scripted *d, st_err *err, const st_bgapi_result **res, st_bgapi **out,
                        st_stream **sout)
{
    d->base.ops = &sc_ops;
    st_stream *s;
    assert_int_equal(st_stream_mem_open(&d->base, "mem:scripted", &s, err), 0);
    st_bgapi *b;
    assert_int_equal(st_bgapi_open(s, &fast, &b, err), 0);
    uint8_t img[1000];
    memset(img, 0xab, sizeof img);
    int rc = st_bgapi_enter_dfu(b, err);
    if (!rc)
        rc = st_bgapi_upload(b, img, sizeof img, err);
    if (!rc)
        rc = st_bgapi_finish(b, err);
    *res = st_bgapi_get_result(b);
    *out = b;
    *sout = s;
    return rc;
}

static void test_every_response_checked(void **state)
{
    st_err err;
    const st_bgapi_result *r;
    st_bgapi *b;
    st_stream *s;
    /* set_address answered non-zero (the real bootloader never does): still a failure. */
    scripted d1 = {.set_address = 0x0181, .garbage = true};
    assert_int_equal(scripted_run(&d1, &err, &r, &b, &s), ST_ERR_DEVICE);
    expect_in(&err, "set address 0: device answered 0x0181 (sl_status_t space 0x0100 code 0x81)");
    assert_true(r->dropped_bytes >= 7); /* the garbage was skipped, the answers found */
    st_bgapi_close(b);
    st_stream_close(s);
    /* An upload answered with a code no table names: named by its space. */
    scripted d2 = {.upload = 0x0212, .uploads_before_error = 2};
    assert_int_equal(scripted_run(&d2, &err, &r, &b, &s), ST_ERR_DEVICE);
    expect_in(&err, "upload chunk 3 of 4 (bytes 504..755): device answered 0x0212");
    expect_in(&err, "(sl_status_t space 0x0200 code 0x12)");
    st_bgapi_close(b);
    st_stream_close(s);
    /* A finish error in the bg space. */
    scripted d3 = {.finish = 0x0b02};
    assert_int_equal(scripted_run(&d3, &err, &r, &b, &s), ST_ERR_DEVICE);
    expect_in(&err, "finish: device answered 0x0b02");
    assert_int_equal(r->chunks_done, 4);
    st_bgapi_close(b);
    st_stream_close(s);
    /* Every answer after a partial frame that never ends: the gap rule drops its start and
     * finds the real answer inside. */
    scripted d4 = {.stall_partial = true};
    if (scripted_run(&d4, &err, &r, &b, &s))
        fail_msg("%s", err.msg);
    assert_true(r->dropped_bytes >= 3);
    st_bgapi_close(b);
    st_stream_close(s);
}

static void test_datasheet_timing(void **state)
{
    /* With the datasheet profile the model states its device time; the engine's wall time
     * is printed as a ratio to it (no timing asserts). */
    rig r;
    st_bgapi_opts o = {0};
    rig_up(&r, ST_BGAPI_GEN_GSDK4, ST_TIMING_DATASHEET, NULL, &o);
    size_t n;
    uint8_t *g = image(8192, 1, 0, &n);
    st_err err;
    uint64_t t0 = st_now_us();
    must(update(&r, g, n, &err), &err);
    uint64_t took = st_now_us() - t0;
    st_bgapi_model_stats ms;
    st_bgapi_model_get_stats(r.model, &ms);
    assert_true(ms.device_us > 0);
    print_message("datasheet: %zu-byte GBL at 115200 baud: %.1f ms wall, device limit %.1f ms, "
                  "ratio %.2f\n",
                  n, took / 1000.0, ms.device_us / 1000.0, (double)took / (double)ms.device_us);
    free(g);
    rig_down(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_update_gsdk4),
        cmocka_unit_test(test_update_sdk2_falls_back),
        cmocka_unit_test(test_gsdk4_ignores_dfu_reset),
        cmocka_unit_test(test_chunk_sizes),
        cmocka_unit_test(test_refuses_unaligned_length),
        cmocka_unit_test(test_upload_error_both_generations),
        cmocka_unit_test(test_finish_checksum_then_rerun),
        cmocka_unit_test(test_finish_error_sdk2_and_signed),
        cmocka_unit_test(test_boot_failure_two_events),
        cmocka_unit_test(test_silent_after_reset),
        cmocka_unit_test(test_wrong_baud),
        cmocka_unit_test(test_flow_control_mismatch),
        cmocka_unit_test(test_dropped_byte_then_restart),
        cmocka_unit_test(test_power_loss_mid_upload),
        cmocka_unit_test(test_model_commands),
        cmocka_unit_test(test_model_packet_timeouts),
        cmocka_unit_test(test_system_boot_14),
        cmocka_unit_test(test_every_response_checked),
        cmocka_unit_test(test_datasheet_timing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
