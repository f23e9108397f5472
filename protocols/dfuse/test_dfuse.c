/* DfuSe engine against the G431 ROM DFU model through the in-memory USB bus: descriptors,
 * start states, flash/verify/read/leave, skip-identical, block-number wrap, every injected
 * fault, the device limit, and the real Cartographer V4 combined image. The byte vectors
 * of PROTOCOL.md are checked against the model in test_protocol_vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "protocols/dfuse/dfu_model.h"
#include "protocols/dfuse/dfuse.h"
#include "station/core/clock.h"
#include "station/core/digest.h"

#define PORT "1-2.3"
#define FLASH0 0x08000000u

typedef struct rig {
    st_flash *flash;
    st_dfu_model *model;
    st_vusb_bus *bus;
    st_usb_host *host;
    st_dfuse *d;
    st_usb_dev_info info;
    unsigned leaves;
    uint32_t jump;
} rig;

static void on_leave(void *ctx, uint32_t jump)
{
    rig *r = ctx;
    r->leaves++;
    r->jump = jump;
    st_vusb_detach(r->bus, PORT); /* the unit drops off the bus, as the ROM does */
}

static rig *rig_new_mcu(const st_mcu *mcu, uint16_t xfer, bool start_in_error,
                        st_timing_profile timing)
{
    rig *r = calloc(1, sizeof *r);
    r->flash = st_flash_new(mcu, timing);
    assert_non_null(r->flash);
    st_dfu_model_config cfg = {.serial = "208A31574253", .transfer_size = xfer,
                               .start_in_error = start_in_error, .on_leave = on_leave,
                               .on_leave_ctx = r};
    r->model = st_dfu_model_new(r->flash, &cfg);
    assert_non_null(r->model);
    r->bus = st_vusb_bus_new();
    assert_int_equal(st_vusb_attach(r->bus, PORT, st_dfu_model_usb(r->model), NULL), 0);
    assert_int_equal(st_usb_host_mem_new(r->bus, NULL, &r->host, NULL), 0);
    assert_int_equal(st_usb_host_find(r->host, mcu->usb_rom_dfu.vid, mcu->usb_rom_dfu.pid, PORT,
                                      &r->info, NULL),
                     0);
    return r;
}

static rig *rig_new(uint16_t xfer, bool start_in_error, st_timing_profile timing)
{
    return rig_new_mcu(st_mcu_find("stm32g431"), xfer, start_in_error, timing);
}

static int rig_open(rig *r, st_err *err)
{
    return st_dfuse_open(r->host, &r->info, NULL, &r->d, err);
}

static void rig_open_ok(rig *r)
{
    st_err err = {0};
    if (rig_open(r, &err) != 0)
        fail_msg("open: %s", err.msg);
}

static void rig_free(rig *r)
{
    st_dfuse_close(r->d);
    st_usb_host_free(r->host);
    st_vusb_detach(r->bus, PORT);
    st_vusb_bus_free(r->bus);
    st_dfu_model_free(r->model);
    st_flash_free(r->flash);
    free(r);
}

static st_image *make_image(size_t size, uint32_t addr, unsigned seed)
{
    uint8_t *data = malloc(size);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < size; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (uint8_t)(x >> 16);
    }
    st_image *img;
    assert_int_equal(st_image_from_memory("test", data, size, addr, &img, NULL), 0);
    free(data);
    return img;
}

static void flash_equals(rig *r, const st_image *img)
{
    uint8_t *buf = malloc(img->size);
    assert_int_equal(st_flash_read(r->flash, img->load_addr, buf, img->size), 0);
    assert_memory_equal(buf, img->data, img->size);
    free(buf);
}

static int flash_and_verify(rig *r, const st_image *img, const st_dfuse_opts *o,
                            st_dfuse_result *res, st_err *err)
{
    int rc = st_dfuse_flash(r->d, img, o, res, err);
    return rc < 0 ? rc : st_dfuse_verify(r->d, img, o, res, err);
}

/* ---- descriptors and start states --------------------------------------------------- */

static void test_descriptors(void **state)
{
    (void)state;
    rig *r = rig_new(0, false, ST_TIMING_NONE);
    /* On purpose a literal: dfu-util lists a G431's ROM as 0483:df11 (PROTOCOL.md §1). */
    assert_int_equal(r->info.vid, 0x0483);
    assert_int_equal(r->info.pid, 0xdf11);
    assert_int_equal(r->info.bcd_device, 0x0200);
    assert_string_equal(r->info.manufacturer, "STMicroelectronics");
    assert_string_equal(r->info.product, "STM32  BOOTLOADER");
    assert_string_equal(r->info.serial, "208A31574253");
    rig_open_ok(r);
    const st_dfuse_info *in = st_dfuse_get_info(r->d);
    assert_string_equal(in->serial, "208A31574253");
    assert_int_equal(in->transfer_size, 2048);
    assert_int_equal(in->attributes, 0x0B);
    assert_int_equal(in->detach_timeout_ms, 255);
    assert_int_equal(in->dfu_version, 0x011A);
    assert_int_equal(in->nalts, 3);
    assert_string_equal(in->alts[0].name, "@Internal Flash   /0x08000000/64*02Kg");
    assert_string_equal(in->alts[1].name, "@Option Bytes   /0x1FFF7800/01*40Be");
    assert_string_equal(in->alts[2].name, "@OTP Memory   /0x1FFF7000/01*01Ke");
    assert_int_equal(in->alts[0].layout->segs[0].count, 64);
    assert_int_equal(in->alts[1].layout->segs[0].size, 40);
    assert_int_equal(in->alts[2].layout->segs[0].start, 0x1FFF7000);
    assert_int_equal(in->start_state, 2);
    rig_free(r);

    r = rig_new(1024, false, ST_TIMING_NONE);
    rig_open_ok(r);
    assert_int_equal(st_dfuse_get_info(r->d)->transfer_size, 1024);
    rig_free(r);
}

/* The model's USB id is the MCU row's, not a constant: a row with other ids enumerates with
 * them, and an MCU without a ROM USB DFU (the F103) has no model. */
static void test_usb_id_from_mcu_table(void **state)
{
    (void)state;
    st_mcu other = *st_mcu_find("stm32g431");
    other.usb_rom_dfu = (st_usb_id){0x1209, 0x0042};
    rig *r = rig_new_mcu(&other, 0, false, ST_TIMING_NONE);
    assert_int_equal(r->info.vid, 0x1209);
    assert_int_equal(r->info.pid, 0x0042);
    st_usb_dev_info found;
    assert_int_equal(st_usb_host_find(r->host, 0x0483, 0xdf11, PORT, &found, NULL),
                     ST_ERR_NOTFOUND);
    rig_open_ok(r);
    assert_int_equal(st_dfuse_get_info(r->d)->nalts, 3);
    rig_free(r);

    const st_mcu *f103 = st_mcu_find("stm32f103xb");
    assert_non_null(f103);
    assert_int_equal(f103->usb_rom_dfu.vid, 0);
    st_flash *fl = st_flash_new(f103, ST_TIMING_NONE);
    assert_non_null(fl);
    assert_null(st_dfu_model_new(fl, NULL));
    st_flash_free(fl);
}

/* Listing probes descriptors without claiming: DFU declared or not, malformed = not. */
static void test_probe(void **state)
{
    (void)state;
    rig *r = rig_new(0, false, ST_TIMING_NONE);
    bool is_dfu = false;
    assert_int_equal(st_dfuse_probe(r->host, &r->info, &is_dfu, NULL), 0);
    assert_true(is_dfu);
    rig_free(r);
    /* a CDC-ACM function: communication + data interfaces, no DFU */
    const uint8_t cdc[] = { 9, 2, 27, 0, 2, 1, 0, 0x80, 50, 9, 4, 0, 0, 1, 0x02, 0x02, 0x01, 0,
                            9, 4, 1, 0, 2, 0x0A, 0x00, 0x00, 0 };
    assert_false(st_dfuse_config_has_dfu(cdc, sizeof cdc));
    const uint8_t dfu[] = { 9, 2, 18, 0, 1, 1, 0, 0x80, 50, 9, 4, 0, 0, 0, 0xFE, 0x01, 0x02, 4 };
    assert_true(st_dfuse_config_has_dfu(dfu, sizeof dfu));
    assert_false(st_dfuse_config_has_dfu(dfu, sizeof dfu - 1)); /* truncated interface */
    const uint8_t zero[] = { 0, 2, 9, 4 };                        /* zero length: no loop */
    assert_false(st_dfuse_config_has_dfu(zero, sizeof zero));
}

static void test_start_states(void **state)
{
    (void)state;
    st_dfu_model_counts c;
    /* ST ROMs often enumerate in dfuERROR/errUNKNOWN: CLRSTATUS. */
    rig *r = rig_new(0, true, ST_TIMING_NONE);
    rig_open_ok(r);
    assert_int_equal(st_dfuse_get_info(r->d)->start_state, 10);
    assert_int_equal(st_dfuse_get_info(r->d)->start_status, 0x0E);
    st_dfu_model_get_counts(r->model, &c);
    assert_int_equal(c.clrstatus, 1);
    assert_int_equal(c.abort, 0);
    rig_free(r);
    /* An interrupted previous run: ABORT. */
    const uint8_t states[2] = {5, 9};
    for (int i = 0; i < 2; i++) {
        r = rig_new(0, false, ST_TIMING_NONE);
        st_dfu_model_set_state(r->model, states[i], 0);
        rig_open_ok(r);
        assert_int_equal(st_dfuse_get_info(r->d)->start_state, states[i]);
        st_dfu_model_get_counts(r->model, &c);
        assert_int_equal(c.abort, 1);
        assert_int_equal(c.clrstatus, 0);
        rig_free(r);
    }
    /* Run-time mode is an error that says so. */
    r = rig_new(0, false, ST_TIMING_NONE);
    st_dfu_model_set_state(r->model, 0, 0);
    st_err err = {0};
    assert_int_equal(rig_open(r, &err), ST_ERR_PROTO);
    assert_non_null(strstr(err.msg, "run-time mode"));
    assert_null(r->d);
    rig_free(r);
}

/* ---- flash / verify / read ---------------------------------------------------------- */

static void check_basic(uint16_t xfer)
{
    rig *r = rig_new(xfer, true, ST_TIMING_NONE);
    rig_open_ok(r);
    st_image *img = make_image(10000, FLASH0, 1);
    st_dfuse_result res = {0};
    st_err err = {0};
    unsigned calls = 0;
    if (flash_and_verify(r, img, NULL, &res, &err) != 0)
        fail_msg("%s", err.msg);
    (void)calls;
    assert_int_equal(res.pages_erased, 5);
    assert_int_equal(res.pages_written, 5);
    assert_int_equal(res.pages_skipped, 0);
    assert_int_equal(res.bytes_written, 10000);
    assert_int_equal(res.bytes_read, 10000);
    uint8_t want[32];
    st_sha256(img->data, img->size, want);
    assert_memory_equal(res.readback_sha256, want, 32);
    flash_equals(r, img);
    st_dfu_model_counts c;
    st_dfu_model_get_counts(r->model, &c);
    unsigned chunks = (10000 + xfer - 1) / xfer;
    assert_int_equal(c.cmd_erase, 5);
    assert_int_equal(c.data_blocks, chunks);
    /* dfu-util style: one Set Address per chunk, plus one per read. */
    assert_int_equal(c.cmd_set_address, chunks + 1);
    assert_int_equal(c.bytes_up, 10000);
    assert_int_equal(c.stalls, 0);
    st_image_free(img);
    rig_free(r);
}

static void test_flash_verify_2048(void **state)
{
    (void)state;
    check_basic(2048);
}

static void test_flash_verify_1024(void **state)
{
    (void)state;
    check_basic(1024);
}

static void test_unaligned_and_read(void **state)
{
    (void)state;
    rig *r = rig_new(0, false, ST_TIMING_NONE);
    rig_open_ok(r);
    st_image *img = make_image(3000, FLASH0 + 0x100, 2);
    st_dfuse_result res = {0};
    st_err err = {0};
    assert_int_equal(flash_and_verify(r, img, NULL, &res, &err), 0);
    assert_int_equal(res.pages_erased, 2);
    flash_equals(r, img);
    uint8_t buf[100];
    assert_int_equal(st_dfuse_read(r->d, FLASH0 + 0x110, buf, sizeof buf, NULL, &res, &err), 0);
    assert_memory_equal(buf, img->data + 0x10, sizeof buf);
    /* Running off the end of flash: the device answers short. */
    assert_int_equal(st_dfuse_read(r->d, FLASH0 + 0x1FFF0, buf, 100, NULL, &res, &err),
                     ST_ERR_PROTO);
    assert_non_null(strstr(err.msg, "read 0x0801fff0: short read: 16 of 100"));
    /* Starting past it: Set Address Pointer is refused with errTARGET, named. */
    assert_int_equal(st_dfuse_read(r->d, FLASH0 + 0x20000, buf, 10, NULL, &res, &err),
                     ST_ERR_DEVICE);
    assert_non_null(strstr(err.msg, "set address 0x08020000: device reported errTARGET"));
    /* The session still works afterwards. */
    assert_int_equal(st_dfuse_read(r->d, FLASH0 + 0x100, buf, 10, NULL, &res, &err), 0);
    assert_memory_equal(buf, img->data, 10);
    st_image_free(img);
    rig_free(r);
}

static void test_not_writable(void **state)
{
    (void)state;
    rig *r = rig_new(0, false, ST_TIMING_NONE);
    rig_open_ok(r);
    st_image *img = make_image(0x2000, 0x0801F000, 3);
    st_dfuse_result res = {0};
    st_err err = {0};
    assert_int_equal(st_dfuse_flash(r->d, img, NULL, &res, &err), ST_ERR_INVAL);
    assert_non_null(strstr(err.msg, "0x08020000 is not writable"));
    st_dfu_model_counts c;
    st_dfu_model_get_counts(r->model, &c);
    assert_int_equal(c.dnload, 0); /* nothing touched */
    st_image_free(img);
    rig_free(r);
}

static void test_skip_identical(void **state)
{
    (void)state;
    rig *r = rig_new(0, false, ST_TIMING_NONE);
    st_image *img = make_image(36 * 1024, FLASH0, 4);
    st_flash_preload(r->flash, FLASH0, img->data, img->size);
    rig_open_ok(r);
    st_dfuse_opts o = {.skip_identical = true};
    st_dfuse_result res = {0};
    st_err err = {0};
    assert_int_equal(flash_and_verify(r, img, &o, &res, &err), 0);
    assert_int_equal(res.pages_written, 0);
    assert_int_equal(res.pages_erased, 0);
    assert_int_equal(res.pages_skipped, 18);
    /* One probe of the first page, then every page read whole once, then the verify. */
    assert_int_equal(res.bytes_read, 2 * 36 * 1024 + ST_DFUSE_PROBE_BYTES);
    st_dfu_model_counts c;
    st_dfu_model_get_counts(r->model, &c);
    assert_int_equal(c.data_blocks, 0);
    assert_int_equal(c.cmd_erase, 0);
    /* One differing byte in page 3 and one in page 17: exactly those two are rewritten. */
    img->data[3 * 2048 + 7] ^= 0xFF;
    img->data[17 * 2048 + 2047] ^= 0x01;
    memset(&res, 0, sizeof res);
    st_dfu_model_reset_counts(r->model);
    assert_int_equal(flash_and_verify(r, img, &o, &res, &err), 0);
    assert_int_equal(res.pages_written, 2);
    assert_int_equal(res.pages_erased, 2);
    assert_int_equal(res.pages_skipped, 16);
    assert_int_equal(res.bytes_written, 2 * 2048);
    st_dfu_model_get_counts(r->model, &c);
    assert_int_equal(c.cmd_erase, 2);
    flash_equals(r, img);
    /* Without skip_identical every page is rewritten. */
    memset(&res, 0, sizeof res);
    assert_int_equal(flash_and_verify(r, img, NULL, &res, &err), 0);
    assert_int_equal(res.pages_written, 18);
    st_image_free(img);
    rig_free(r);
}

/* Probe, then decide: the bytes read back to choose the pages are one probe per page on a
 * fresh unit, the whole image (plus the first page's probe) on a unit that holds it, and on
 * a partly identical unit a probe where the page before differed and whole pages while
 * they match; a page that differs only in its last bytes is still rewritten. */
static void test_skip_identical_probe(void **state)
{
    (void)state;
    rig *r = rig_new(0, false, ST_TIMING_NONE);
    st_image *img = make_image(10 * 1024 + 100, FLASH0, 7); /* 6 pages, the last partial */
    rig_open_ok(r);
    st_dfuse_opts o = {.skip_identical = true};
    st_dfuse_result res = {0};
    st_err err = {0};
    /* Fresh (erased) unit: one probe per page; the five pages the image covers whole read
     * back blank (0xFF) whole and are written without an erase (the flash model refuses to
     * program a double word that is not blank, as the G4 does); the partial last page is
     * erased as before (what lies past the image in it is unknown). */
    assert_int_equal(st_dfuse_flash(r->d, img, &o, &res, &err), 0);
    assert_int_equal(res.pages_written, 6);
    assert_int_equal(res.pages_skipped, 0);
    assert_int_equal(res.pages_blank, 5);
    assert_int_equal(res.pages_erased, 1);
    assert_int_equal(res.bytes_probed, 6 * ST_DFUSE_PROBE_BYTES + 5 * 2048);
    flash_equals(r, img);
    /* Holds it: every byte read once (after one probe), nothing written. */
    memset(&res, 0, sizeof res);
    assert_int_equal(st_dfuse_flash(r->d, img, &o, &res, &err), 0);
    assert_int_equal(res.pages_written, 0);
    assert_int_equal(res.pages_skipped, 6);
    assert_int_equal(res.bytes_probed, img->size + ST_DFUSE_PROBE_BYTES);
    /* Page 1 differs in its last byte, page 4 in its first: pages 0, 2 and 5 are probed
     * (the page before each differed or there was none) and read whole, pages 1, 3 and 4
     * read whole at once (the page before matched); 1 and 4 rewritten. */
    img->data[2 * 2048 - 1] ^= 0x10;
    img->data[4 * 2048] ^= 0x01;
    memset(&res, 0, sizeof res);
    assert_int_equal(st_dfuse_flash(r->d, img, &o, &res, &err), 0);
    assert_int_equal(res.pages_written, 2);
    assert_int_equal(res.pages_skipped, 4);
    assert_int_equal(res.pages_blank, 0); /* they hold other data: erased first */
    assert_int_equal(res.pages_erased, 2);
    assert_int_equal(res.bytes_probed, img->size + 3 * ST_DFUSE_PROBE_BYTES);
    flash_equals(r, img);
    /* A page that differs only within its probe bytes' length at the very end of a short
     * last page: the partial last page (100 bytes) is read in one probe. */
    img->data[img->size - 1] ^= 0x80;
    memset(&res, 0, sizeof res);
    assert_int_equal(st_dfuse_flash(r->d, img, &o, &res, &err), 0);
    assert_int_equal(res.pages_written, 1);
    assert_int_equal(res.pages_skipped, 5);
    flash_equals(r, img);
    st_image_free(img);
    rig_free(r);

    /* An image that does not start on a wTransferSize boundary (+104) is probed page by page;
     * with wTransferSize 1024 each page is two blocks; a stall inside the probe is cleared
     * and the probe starts over page by page. Same decisions each time. */
    r = rig_new(1024, false, ST_TIMING_NONE);
    rig_open_ok(r);
    img = make_image(3 * 2048, FLASH0 + 104, 8);
    memset(&res, 0, sizeof res);
    if (st_dfuse_flash(r->d, img, &o, &res, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(res.pages_written, 4);
    assert_int_equal(res.bytes_probed, 4 * ST_DFUSE_PROBE_BYTES);
    memset(&res, 0, sizeof res);
    assert_int_equal(st_dfuse_flash(r->d, img, &o, &res, &err), 0);
    assert_int_equal(res.pages_skipped, 4);
    assert_int_equal(res.pages_written, 0);
    flash_equals(r, img);
    st_image_free(img);
    img = make_image(3 * 2048, FLASH0, 8);
    st_flash_preload(r->flash, FLASH0, img->data, img->size);
    memset(&res, 0, sizeof res);
    assert_int_equal(st_dfuse_flash(r->d, img, &o, &res, &err), 0);
    assert_int_equal(res.pages_skipped, 3);
    assert_int_equal(res.bytes_probed, img->size + ST_DFUSE_PROBE_BYTES);
    st_dfu_model_reset_counts(r->model);
    st_dfu_model_faults f = {.stall_at = 4}; /* an UPLOAD of the probe */
    st_dfu_model_set_faults(r->model, &f);
    memset(&res, 0, sizeof res);
    assert_int_equal(st_dfuse_flash(r->d, img, &o, &res, &err), 0);
    assert_int_equal(res.stall_recoveries, 1);
    assert_int_equal(res.pages_skipped, 3);
    assert_int_equal(res.pages_written, 0);
    st_image_free(img);
    rig_free(r);
}

/* wBlockNum is 16 bits: with wTransferSize 8 a 1 MiB-flash part (the G431 row with more
 * flash) takes 65540 blocks; the engine must re-base the pointer before 0xFFFF. */
static void test_block_wrap(void **state)
{
    (void)state;
    st_mcu big = *st_mcu_find("stm32g431");
    big.flash_size = 1024 * 1024;
    rig *r = rig_new_mcu(&big, 8, false, ST_TIMING_NONE);
    rig_open_ok(r);
    assert_string_equal(st_dfuse_get_info(r->d)->alts[0].name,
                        "@Internal Flash   /0x08000000/512*02Kg");
    size_t size = 65540 * 8;
    st_image *img = make_image(size, FLASH0, 5);
    st_dfuse_opts o = {.block_sequence = true};
    st_dfuse_result res = {0};
    st_err err = {0};
    if (flash_and_verify(r, img, &o, &res, &err) != 0)
        fail_msg("%s", err.msg);
    flash_equals(r, img);
    st_dfu_model_counts c;
    st_dfu_model_get_counts(r->model, &c);
    assert_int_equal(c.data_blocks, 65540);
    /* Write: 2 Set Address (start + wrap); read: 2 more. */
    assert_int_equal(c.cmd_set_address, 4);
    assert_int_equal(c.bytes_up, size);
    st_image_free(img);
    rig_free(r);

    /* Sequential blocks with 1 KiB transfers: half the Set Address commands. */
    r = rig_new(1024, false, ST_TIMING_NONE);
    rig_open_ok(r);
    img = make_image(8192, FLASH0, 6);
    assert_int_equal(flash_and_verify(r, img, &o, &res, &err), 0);
    st_dfu_model_get_counts(r->model, &c);
    assert_int_equal(c.cmd_set_address, 2);
    assert_int_equal(c.data_blocks, 8);
    flash_equals(r, img);
    st_image_free(img);
    rig_free(r);
}

/* ---- faults ------------------------------------------------------------------------- */

static void test_errprog(void **state)
{
    (void)state;
    rig *r = rig_new(0, false, ST_TIMING_NONE);
    rig_open_ok(r);
    st_image *img = make_image(8192, FLASH0, 7);
    st_flash_fault_prog_error(r->flash, FLASH0 + 0x1000);
    st_dfuse_result res = {0};
    st_err err = {0};
    assert_int_equal(st_dfuse_flash(r->d, img, NULL, &res, &err), ST_ERR_DEVICE);
    assert_non_null(strstr(err.msg, "write 0x08001000"));
    assert_non_null(strstr(err.msg, "errPROG"));
    assert_int_equal(res.fail_addr, FLASH0 + 0x1000);
    assert_int_equal(res.dfu_status, 0x06);
    assert_int_equal(res.dfu_state, 10);
    /* The engine cleared the error: the same session flashes fine once the fault is gone. */
    st_flash_fault_clear(r->flash);
    memset(&res, 0, sizeof res);
    assert_int_equal(flash_and_verify(r, img, NULL, &res, &err), 0);
    flash_equals(r, img);
    st_image_free(img);
    rig_free(r);
}

static void test_corrupt_page(void **state)
{
    (void)state;
    rig *r = rig_new(0, false, ST_TIMING_NONE);
    rig_open_ok(r);
    st_image *img = make_image(8192, FLASH0, 8);
    st_flash_fault_corrupt_page(r->flash, FLASH0 + 0x800);
    st_dfuse_result res = {0};
    st_err err = {0};
    assert_int_equal(st_dfuse_flash(r->d, img, NULL, &res, &err), 0);
    assert_int_equal(st_dfuse_verify(r->d, img, NULL, &res, &err), ST_ERR_VERIFY);
    assert_int_equal(res.fail_addr, FLASH0 + 0x800);
    assert_non_null(strstr(err.msg, "first difference at 0x08000800"));
    uint8_t want[32];
    st_sha256(img->data, img->size, want);
    assert_memory_not_equal(res.readback_sha256, want, 32);
    st_image_free(img);
    rig_free(r);
}

static void test_not_erased_and_rdp(void **state)
{
    (void)state;
    rig *r = rig_new(0, false, ST_TIMING_NONE);
    rig_open_ok(r);
    st_image *img = make_image(2048, FLASH0, 9);
    st_dfuse_result res = {0};
    st_err err = {0};
    st_flash_set_rdp(r->flash, true);
    assert_int_equal(st_dfuse_flash(r->d, img, NULL, &res, &err), ST_ERR_DEVICE);
    assert_non_null(strstr(err.msg, "erase 0x08000000"));
    assert_non_null(strstr(err.msg, "errVENDOR"));
    st_image_free(img);
    rig_free(r);
}

static void test_mass_erase_unprotect(void **state)
{
    (void)state;
    rig *r = rig_new(0, false, ST_TIMING_NONE);
    st_image *img = make_image(8192, FLASH0, 30);
    st_flash_preload(r->flash, FLASH0, img->data, img->size);
    rig_open_ok(r);
    st_dfuse_result res = {0};
    st_err err = {0};
    assert_int_equal(st_dfuse_mass_erase(r->d, &res, &err), 0);
    for (uint32_t a = FLASH0; a < FLASH0 + 8192; a += 2048)
        assert_true(st_flash_page_blank(r->flash, a));
    /* A read-protected unit: erase refused with errVENDOR, then Read Unprotect clears RDP,
     * erases and resets (the model's hook sees the reset). */
    st_flash_preload(r->flash, FLASH0, img->data, img->size);
    st_flash_set_rdp(r->flash, true);
    assert_int_equal(st_dfuse_mass_erase(r->d, &res, &err), ST_ERR_DEVICE);
    assert_non_null(strstr(err.msg, "mass erase: device reported errVENDOR"));
    assert_int_equal(st_dfuse_unprotect(r->d, &res, &err), 0);
    assert_int_equal(r->leaves, 1);
    assert_int_equal(r->jump, ST_DFU_MODEL_RESET);
    assert_false(st_flash_rdp(r->flash));
    assert_true(st_flash_page_blank(r->flash, FLASH0));
    st_image_free(img);
    rig_free(r);
}

/* Stall the Nth class request, for every N of a clean run: each run ends verified (the
 * engine cleared the stall and retried) or in a clear error; never a wrong image. */
static void test_stall_sweep(void **state)
{
    (void)state;
    st_image *img = make_image(5000, FLASH0, 10);
    rig *r = rig_new(0, false, ST_TIMING_NONE);
    rig_open_ok(r);
    st_dfuse_result res = {0};
    st_err err = {0};
    assert_int_equal(flash_and_verify(r, img, NULL, &res, &err), 0);
    st_dfu_model_counts c;
    st_dfu_model_get_counts(r->model, &c);
    uint32_t total = c.class_reqs;
    rig_free(r);
    assert_true(total > 20);
    unsigned recovered = 0, failed = 0;
    for (uint32_t n = 1; n <= total; n++) {
        r = rig_new(0, false, ST_TIMING_NONE);
        st_dfu_model_faults f = {.stall_at = n};
        st_dfu_model_set_faults(r->model, &f);
        memset(&res, 0, sizeof res);
        memset(&err, 0, sizeof err);
        int rc = rig_open(r, &err);
        if (rc == 0)
            rc = flash_and_verify(r, img, NULL, &res, &err);
        if (rc == 0) {
            flash_equals(r, img);
            recovered += res.stall_recoveries;
        } else {
            failed++;
            assert_true(err.msg[0] != '\0');
            assert_true(rc == ST_ERR_STALL || rc == ST_ERR_PROTO || rc == ST_ERR_DEVICE);
        }
        rig_free(r);
    }
    /* Stalls inside erase/write/read steps are recovered; only the first GETSTATUS of
     * open and the ABORT handshakes are not retried. */
    assert_true(recovered >= total / 2);
    assert_true(failed < total / 4);
    st_image_free(img);
}

/* One stall or disconnect sweep with no error buffer at all (issue 7): the code each run
 * ends with, and whether its stalls were recovered, must be exactly what the same run gives
 * with a buffer. Error codes never depend on the optional st_err. */
static void sweep_without_buffer(bool disconnect)
{
    st_image *img = make_image(5000, FLASH0, 10);
    unsigned differ = 0, failed_with = 0, failed_without = 0, runs = 0;
    for (uint32_t n = 1; n <= 200; n++) {
        int rc[2];
        unsigned recovered[2];
        for (int with = 0; with < 2; with++) {
            rig *r = rig_new(0, false, ST_TIMING_NONE);
            st_dfu_model_faults f = {0};
            if (disconnect)
                f.disconnect_after = n;
            else
                f.stall_at = n;
            st_dfu_model_set_faults(r->model, &f);
            st_dfuse_result res = {0};
            st_err err = {0};
            st_err *e = with ? &err : NULL;
            rc[with] = rig_open(r, e);
            if (rc[with] == 0)
                rc[with] = flash_and_verify(r, img, NULL, &res, e);
            if (rc[with] == 0)
                flash_equals(r, img);
            recovered[with] = res.stall_recoveries;
            rig_free(r);
        }
        runs++;
        failed_with += rc[1] != 0;
        failed_without += rc[0] != 0;
        if (rc[0] != rc[1] || recovered[0] != recovered[1]) {
            print_error("%s at %u: %s (%d, %u recovered) with a buffer, %s (%d, %u recovered) without\n",
                        disconnect ? "disconnect" : "stall", n, st_strerror(rc[1]), rc[1],
                        recovered[1], st_strerror(rc[0]), rc[0], recovered[0]);
            differ++;
        }
        if (disconnect && rc[1] == 0)
            break; /* n is past the end of a whole run */
        if (disconnect)
            assert_int_equal(rc[0], ST_ERR_DISCONNECT);
    }
    print_message("%s sweep: %u runs, %u failed with an error buffer, %u without\n",
                  disconnect ? "disconnect" : "stall", runs, failed_with, failed_without);
    if (differ)
        fail_msg("%u of %u runs end differently without an error buffer (%u failed with one, "
                 "%u without)", differ, runs, failed_with, failed_without);
    st_image_free(img);
}

static void test_stall_sweep_no_err_buffer(void **state)
{
    (void)state;
    sweep_without_buffer(false);
}

static void test_disconnect_sweep_no_err_buffer(void **state)
{
    (void)state;
    sweep_without_buffer(true);
}

/* Disconnect after N class requests, for every N: always ST_ERR_DISCONNECT with the step. */
static void test_disconnect_sweep(void **state)
{
    (void)state;
    st_image *img = make_image(5000, FLASH0, 11);
    for (uint32_t n = 1;; n++) {
        rig *r = rig_new(0, false, ST_TIMING_NONE);
        st_dfu_model_faults f = {.disconnect_after = n};
        st_dfu_model_set_faults(r->model, &f);
        st_dfuse_result res = {0};
        st_err err = {0};
        int rc = rig_open(r, &err);
        if (rc == 0)
            rc = flash_and_verify(r, img, NULL, &res, &err);
        rig_free(r);
        if (rc == 0)
            break; /* n is past the end of a whole run */
        assert_int_equal(rc, ST_ERR_DISCONNECT);
        assert_non_null(strstr(err.msg, "disconnected"));
        assert_true(n < 200);
    }
    st_image_free(img);
}

static void test_slow_erase(void **state)
{
    (void)state;
    rig *r = rig_new(0, false, ST_TIMING_DATASHEET);
    rig_open_ok(r);
    st_image *img = make_image(2048, FLASH0, 12);
    st_flash_fault_slow_erase(r->flash, 5);
    st_dfuse_result res = {0};
    st_err err = {0};
    assert_int_equal(flash_and_verify(r, img, NULL, &res, &err), 0);
    /* 5 x 22 ms, honoured through bwPollTimeout, within the request deadline. */
    assert_true(res.erase_us >= 110000);
    assert_true(res.erase_us < 1000000);
    st_dfu_model_counts c;
    st_dfu_model_get_counts(r->model, &c);
    assert_true(c.device_us >= 110000 + 20000);
    st_image_free(img);
    rig_free(r);
}

/* ---- leave -------------------------------------------------------------------------- */

static void leave_case(st_dfu_leave_fault fault, bool verified, int want_rc, bool want_missing)
{
    rig *r = rig_new(0, true, ST_TIMING_NONE);
    rig_open_ok(r);
    st_image *img = make_image(4096, FLASH0, 13);
    st_dfuse_result res = {0};
    st_err err = {0};
    assert_int_equal(flash_and_verify(r, img, NULL, &res, &err), 0);
    st_dfu_model_faults f = {.leave = fault};
    st_dfu_model_set_faults(r->model, &f);
    int rc = st_dfuse_leave(r->d, FLASH0, verified, &res, &err);
    if (rc != want_rc)
        fail_msg("fault %d verified %d: rc %d (%s)", fault, verified, rc, err.msg);
    assert_int_equal(res.leave_status_missing, want_missing);
    if (rc < 0)
        assert_non_null(strstr(err.msg, "not verified"));
    assert_int_equal(r->leaves, 1);
    assert_int_equal(r->jump, FLASH0);
    st_usb_dev_info found;
    const st_usb_id rom = st_flash_mcu(r->flash)->usb_rom_dfu;
    assert_int_equal(st_usb_host_find(r->host, rom.vid, rom.pid, PORT, &found, NULL),
                     ST_ERR_NOTFOUND);
    st_image_free(img);
    rig_free(r);
}

static void test_leave(void **state)
{
    (void)state;
    leave_case(ST_DFU_LEAVE_OK, false, 0, false);
    leave_case(ST_DFU_LEAVE_OK, true, 0, false);
    leave_case(ST_DFU_LEAVE_STALL, true, 0, true);
    leave_case(ST_DFU_LEAVE_VANISH, true, 0, true);
    leave_case(ST_DFU_LEAVE_STALL_DNLOAD, true, 0, true);
    leave_case(ST_DFU_LEAVE_STALL, false, ST_ERR_STALL, true == false);
    leave_case(ST_DFU_LEAVE_VANISH, false, ST_ERR_DISCONNECT, false);
    leave_case(ST_DFU_LEAVE_STALL_DNLOAD, false, ST_ERR_STALL, false);
}

/* ---- progress and parallel units ---------------------------------------------------- */

typedef struct seen {
    char phase[4][8];
    uint64_t last_done[4], last_total[4], calls[4];
    bool backwards;
} seen;

static void on_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    seen *s = ctx;
    int i = 0;
    while (i < 3 && s->phase[i][0] && strcmp(s->phase[i], phase) != 0)
        i++;
    snprintf(s->phase[i], sizeof s->phase[i], "%s", phase);
    if (done < s->last_done[i] || done > total)
        s->backwards = true;
    s->last_done[i] = done;
    s->last_total[i] = total;
    s->calls[i]++;
}

static void test_progress(void **state)
{
    (void)state;
    rig *r = rig_new(0, false, ST_TIMING_NONE);
    rig_open_ok(r);
    st_image *img = make_image(5000, FLASH0, 16);
    seen s = {0};
    st_progress p = {on_progress, &s};
    st_dfuse_opts o = {.progress = &p};
    assert_int_equal(flash_and_verify(r, img, &o, NULL, NULL), 0);
    assert_string_equal(s.phase[0], "erase");
    assert_int_equal(s.last_done[0], 3 * 2048);
    assert_int_equal(s.calls[0], 3);
    assert_string_equal(s.phase[1], "write");
    assert_int_equal(s.last_done[1], 5000);
    assert_int_equal(s.last_total[1], 5000);
    assert_string_equal(s.phase[2], "verify");
    assert_int_equal(s.last_done[2], 5000);
    assert_false(s.backwards);
    st_image_free(img);
    rig_free(r);
}

typedef struct unit_job {
    st_usb_host *host;
    st_usb_dev_info info;
    const st_image *img;
    int rc;
    char msg[ST_ERR_MSG_MAX];
} unit_job;

static void *unit_thread(void *arg)
{
    unit_job *j = arg;
    st_dfuse *d = NULL;
    st_err err = {0};
    j->rc = st_dfuse_open(j->host, &j->info, NULL, &d, &err);
    if (j->rc == 0)
        j->rc = st_dfuse_flash(d, j->img, NULL, NULL, &err);
    if (j->rc == 0)
        j->rc = st_dfuse_verify(d, j->img, NULL, NULL, &err);
    snprintf(j->msg, sizeof j->msg, "%s", err.msg);
    st_dfuse_close(d);
    return NULL;
}

/* Four units on one bus, one thread each (one station, four slots): no shared state. */
static void test_parallel_units(void **state)
{
    (void)state;
    enum { N = 4 };
    st_vusb_bus *bus = st_vusb_bus_new();
    st_usb_host *host;
    assert_int_equal(st_usb_host_mem_new(bus, NULL, &host, NULL), 0);
    st_flash *fl[N];
    st_dfu_model *m[N];
    st_image *img[N];
    unit_job jobs[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        char port[16], serial[16];
        snprintf(port, sizeof port, "1-%d", i + 1);
        snprintf(serial, sizeof serial, "00000000000%d", i);
        const st_mcu *mcu = st_mcu_find("stm32g431");
        fl[i] = st_flash_new(mcu, ST_TIMING_NONE);
        st_dfu_model_config cfg = {.serial = serial, .start_in_error = i % 2};
        m[i] = st_dfu_model_new(fl[i], &cfg);
        assert_int_equal(st_vusb_attach(bus, port, st_dfu_model_usb(m[i]), NULL), 0);
        img[i] = make_image(6000 + 1000 * (size_t)i, FLASH0, 20 + (unsigned)i);
        jobs[i] = (unit_job){.host = host, .img = img[i]};
        assert_int_equal(st_usb_host_find(host, mcu->usb_rom_dfu.vid, mcu->usb_rom_dfu.pid, port,
                                          &jobs[i].info, NULL),
                         0);
        assert_string_equal(jobs[i].info.serial, serial);
    }
    for (int i = 0; i < N; i++)
        pthread_create(&th[i], NULL, unit_thread, &jobs[i]);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].rc != 0)
            fail_msg("unit %d: %s", i, jobs[i].msg);
        uint8_t *buf = malloc(img[i]->size);
        assert_int_equal(st_flash_read(fl[i], FLASH0, buf, img[i]->size), 0);
        assert_memory_equal(buf, img[i]->data, img[i]->size);
        free(buf);
    }
    for (int i = 0; i < N; i++) {
        char port[16];
        snprintf(port, sizeof port, "1-%d", i + 1);
        st_vusb_detach(bus, port);
        st_dfu_model_free(m[i]);
        st_flash_free(fl[i]);
        st_image_free(img[i]);
    }
    st_usb_host_free(host);
    st_vusb_bus_free(bus);
}

/* ---- names, vectors, limit ---------------------------------------------------------- */

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(st_dfu_status_name(0x00), "OK");
    assert_string_equal(st_dfu_status_name(0x06), "errPROG");
    assert_string_equal(st_dfu_status_name(0x0E), "errUNKNOWN");
    assert_string_equal(st_dfu_status_name(0x0F), "errSTALLEDPKT");
    assert_string_equal(st_dfu_status_name(0x10), "INVALID");
    assert_string_equal(st_dfu_state_name(2), "dfuIDLE");
    assert_string_equal(st_dfu_state_name(5), "dfuDNLOAD-IDLE");
    assert_string_equal(st_dfu_state_name(10), "dfuERROR");
    assert_string_equal(st_dfu_state_name(11), "UNKNOWN");
}

static int xfer_(st_usb_model *m, uint8_t bm, uint8_t req, uint16_t value, uint16_t len,
                 uint8_t *data)
{
    st_usb_setup s = {bm, req, value, 0, len};
    return m->ops->control(m, &s, data);
}

/* The examples of PROTOCOL.md, byte for byte. */
static void test_protocol_vectors(void **state)
{
    (void)state;
    st_flash *fl = st_flash_new(st_mcu_find("stm32g431"), ST_TIMING_DATASHEET);
    st_dfu_model_config cfg = {.start_in_error = true};
    st_dfu_model *dm = st_dfu_model_new(fl, &cfg);
    st_usb_model *m = st_dfu_model_usb(dm);
    uint8_t b[64];
    /* §2 functional descriptor inside the configuration descriptor (offset 36). */
    assert_int_equal(xfer_(m, 0x80, 6, 0x0200, 64, b), 45);
    const uint8_t func[9] = {0x09, 0x21, 0x0B, 0xFF, 0x00, 0x00, 0x08, 0x1A, 0x01};
    assert_memory_equal(b + 36, func, 9);
    const uint8_t intf0[9] = {0x09, 0x04, 0x00, 0x00, 0x00, 0xFE, 0x01, 0x02, 0x04};
    assert_memory_equal(b + 9, intf0, 9);
    /* §3 power-on in dfuERROR/errUNKNOWN: 0E 00 00 00 0A 00. */
    assert_int_equal(xfer_(m, 0xA1, 3, 0, 6, b), 6);
    const uint8_t st_err_unknown[6] = {0x0E, 0, 0, 0, 0x0A, 0};
    assert_memory_equal(b, st_err_unknown, 6);
    assert_int_equal(xfer_(m, 0x21, 4, 0, 0, NULL), 0);
    /* §5 Set Address Pointer 0x08004000: 21 00 40 00 08, then DNBUSY, then DNLOAD-IDLE. */
    uint8_t cmd[5] = {0x21, 0x00, 0x40, 0x00, 0x08};
    assert_int_equal(xfer_(m, 0x21, 1, 0, 5, cmd), 0);
    assert_int_equal(xfer_(m, 0xA1, 3, 0, 6, b), 6);
    const uint8_t busy0[6] = {0x00, 0, 0, 0, 0x04, 0};
    assert_memory_equal(b, busy0, 6);
    assert_int_equal(xfer_(m, 0xA1, 3, 0, 6, b), 6);
    const uint8_t dnidle[6] = {0x00, 0, 0, 0, 0x05, 0};
    assert_memory_equal(b, dnidle, 6);
    /* §5 Erase page 0x08004000: 41 00 40 00 08; poll timeout 22 ms = 16 00 00. The time is
     * taken before the erase starts: under emulation the calls between take milliseconds. */
    cmd[0] = 0x41;
    uint64_t t0 = st_now_us();
    assert_int_equal(xfer_(m, 0x21, 1, 0, 5, cmd), 0);
    assert_int_equal(xfer_(m, 0xA1, 3, 0, 6, b), 6);
    const uint8_t busy22[6] = {0x00, 0x16, 0x00, 0x00, 0x04, 0};
    assert_memory_equal(b, busy22, 6);
    assert_int_equal(xfer_(m, 0xA1, 3, 0, 6, b), 6); /* asked early: blocks until done */
    assert_true(st_now_us() - t0 >= 20000);
    assert_memory_equal(b, dnidle, 6);
    /* §5 a 2048-byte write at wBlockNum 2: poll timeout 21 ms (256 x 82 us = 20.992 ms). */
    uint8_t page[2048];
    memset(page, 0x5A, sizeof page);
    cmd[0] = 0x21;
    xfer_(m, 0x21, 1, 0, 5, cmd);
    xfer_(m, 0xA1, 3, 0, 6, b);
    xfer_(m, 0xA1, 3, 0, 6, b);
    assert_int_equal(xfer_(m, 0x21, 1, 2, 2048, page), 0);
    assert_int_equal(xfer_(m, 0xA1, 3, 0, 6, b), 6);
    const uint8_t busy21[6] = {0x00, 0x15, 0x00, 0x00, 0x04, 0};
    assert_memory_equal(b, busy21, 6);
    xfer_(m, 0xA1, 3, 0, 6, b);
    /* Writing it again without erase: dfuERROR + errCHECK_ERASED on the second status. */
    xfer_(m, 0x21, 1, 2, 2048, page);
    xfer_(m, 0xA1, 3, 0, 6, b);
    xfer_(m, 0xA1, 3, 0, 6, b);
    const uint8_t not_erased[6] = {0x05, 0, 0, 0, 0x0A, 0};
    assert_memory_equal(b, not_erased, 6);
    xfer_(m, 0x21, 4, 0, 0, NULL);
    /* §5 Get Commands: UPLOAD wBlockNum 0 -> 00 21 41 92. */
    assert_int_equal(xfer_(m, 0xA1, 2, 0, 64, b), 4);
    const uint8_t cmds[4] = {0x00, 0x21, 0x41, 0x92};
    assert_memory_equal(b, cmds, 4);
    /* UPLOAD in dfuUPLOAD-IDLE, wBlockNum 2 at the pointer 0x08004000. */
    assert_int_equal(xfer_(m, 0xA1, 2, 2, 16, b), 16);
    assert_int_equal(b[0], 0x5A);
    /* §5 unsupported command byte 0x55: errSTALLEDPKT on the second status. */
    xfer_(m, 0x21, 6, 0, 0, NULL);
    uint8_t bad = 0x55;
    xfer_(m, 0x21, 1, 0, 1, &bad);
    xfer_(m, 0xA1, 3, 0, 6, b);
    xfer_(m, 0xA1, 3, 0, 6, b);
    assert_int_equal(b[0], 0x0F);
    assert_int_equal(b[4], 0x0A);
    /* A DNLOAD in dfuERROR stalls. */
    assert_int_equal(xfer_(m, 0x21, 1, 2, 1, page), ST_ERR_STALL);
    /* Wire-time formula (PROTOCOL.md §6). */
    assert_int_equal(st_dfu_wire_us(0), 21);
    assert_int_equal(st_dfu_wire_us(6), 32);
    assert_int_equal(st_dfu_wire_us(2048), 1623);
    st_dfu_model_free(dm);
    st_flash_free(fl);
}

static void test_device_limit(void **state)
{
    (void)state;
    rig *r = rig_new(0, false, ST_TIMING_DATASHEET);
    st_image *img = make_image(36 * 1024, FLASH0, 14);
    st_dfu_limit lim;
    assert_int_equal(st_dfu_model_device_limit(r->model, img, false, true, &lim), 0);
    assert_int_equal(lim.pages_erased, 18);
    assert_int_equal(lim.erase_us, 18 * 22000);
    assert_int_equal(lim.program_us, 36 * 1024 / 8 * 82);
    assert_int_equal(lim.wire_write_us, 18 * 1623);
    assert_int_equal(lim.wire_read_us, 18 * 1623);
    assert_int_equal(lim.total_us, 396000 + 377856 + 2 * 29214);
    st_flash_preload(r->flash, FLASH0, img->data, img->size);
    assert_int_equal(st_dfu_model_device_limit(r->model, img, true, true, &lim), 0);
    assert_int_equal(lim.pages_erased, 0);
    assert_int_equal(lim.total_us, 2 * 29214);
    /* The engine cannot beat the limit. */
    rig_open_ok(r);
    st_image *img2 = make_image(4096, FLASH0 + 0x10000, 15);
    assert_int_equal(st_dfu_model_device_limit(r->model, img2, false, true, &lim), 0);
    st_dfuse_result res = {0};
    uint64_t t0 = st_now_us();
    assert_int_equal(flash_and_verify(r, img2, NULL, &res, NULL), 0);
    assert_true(st_now_us() - t0 >= lim.total_us);
    st_image_free(img2);
    st_image_free(img);
    rig_free(r);
}

/* ---- the real combined image -------------------------------------------------------- */

#define REAL_IMAGE STATION_SHARED_DIR \
    "/firmware/cartographer-v4/6.0.0/Katapult_plus_CartographerV4_6.0.0__USB_lite.bin"
#define REAL_SHA "fec0c7c54d10b71da32f06b658c5c28ec616701f084334874ffc1c3291a9936c"

static void real_image(uint16_t xfer)
{
    if (access(REAL_IMAGE, R_OK) != 0) {
        print_message("skip: %s absent\n", REAL_IMAGE);
        skip();
    }
    st_image *img;
    st_err err = {0};
    assert_int_equal(st_image_load(REAL_IMAGE, FLASH0, &img, &err), 0);
    assert_int_equal(st_image_check_digest(img, REAL_SHA, &err), 0);
    rig *r = rig_new(xfer, true, ST_TIMING_NONE);
    rig_open_ok(r);
    st_dfuse_result res = {0};
    if (flash_and_verify(r, img, NULL, &res, &err) != 0)
        fail_msg("%s", err.msg);
    char hex[65];
    st_hex(res.readback_sha256, 32, false, hex);
    assert_string_equal(hex, REAL_SHA);
    assert_int_equal(res.pages_written, (img->size + 2047) / 2048);
    assert_int_equal(st_dfuse_leave(r->d, FLASH0, true, &res, &err), 0);
    assert_int_equal(r->leaves, 1);
    st_image_free(img);
    rig_free(r);
}

static void test_real_image_2048(void **state)
{
    (void)state;
    real_image(2048);
}

static void test_real_image_1024(void **state)
{
    (void)state;
    real_image(1024);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptors),
        cmocka_unit_test(test_usb_id_from_mcu_table),
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_start_states),
        cmocka_unit_test(test_flash_verify_2048),
        cmocka_unit_test(test_flash_verify_1024),
        cmocka_unit_test(test_unaligned_and_read),
        cmocka_unit_test(test_not_writable),
        cmocka_unit_test(test_skip_identical),
        cmocka_unit_test(test_skip_identical_probe),
        cmocka_unit_test(test_block_wrap),
        cmocka_unit_test(test_errprog),
        cmocka_unit_test(test_corrupt_page),
        cmocka_unit_test(test_not_erased_and_rdp),
        cmocka_unit_test(test_mass_erase_unprotect),
        cmocka_unit_test(test_stall_sweep),
        cmocka_unit_test(test_disconnect_sweep),
        cmocka_unit_test(test_stall_sweep_no_err_buffer),
        cmocka_unit_test(test_disconnect_sweep_no_err_buffer),
        cmocka_unit_test(test_slow_erase),
        cmocka_unit_test(test_leave),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_parallel_units),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_protocol_vectors),
        cmocka_unit_test(test_device_limit),
        cmocka_unit_test(test_real_image_2048),
        cmocka_unit_test(test_real_image_1024),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
