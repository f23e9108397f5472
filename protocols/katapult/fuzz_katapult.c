/* Fuzz target: Katapult frames, both ways. Byte 0 picks what the host engine does
 * (CONNECT only, then READ, GET_CANBUS_ID, COMPLETE, FLASH or VERIFY of a small image);
 * the rest is what "the unit" answers, handed out 1..64 bytes per read (the next byte
 * says how many), then the link disconnects. The same bytes are also fed to the device
 * model as if the host had sent them, so both framing parsers (frame.c, the model's
 * resync) and the engine's payload decoding see hostile input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/katapult/frame.h"
#include "protocols/katapult/katapult.h"
#include "protocols/katapult/katapult_model.h"
#include "protocols/sim/flash.h"
#include "station/core/image.h"
#include "station/core/mcu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fuzz_stream {
    st_stream base;
    const uint8_t *p;
    size_t n;
} fuzz_stream;

static int fs_write(st_stream *s, const uint8_t *buf, size_t n, unsigned timeout_ms,
                    st_err *err)
{
    return (int)n;
}

static int fs_read(st_stream *s, uint8_t *buf, size_t cap, unsigned timeout_ms, st_err *err)
{
    fuzz_stream *f = (fuzz_stream *)s;
    if (f->n == 0)
        return st_err_set(err, ST_ERR_DISCONNECT, "fuzz: end of input");
    size_t want = (size_t)(f->p[0] % 64u) + 1u;
    f->p++;
    f->n--;
    if (want > f->n)
        want = f->n;
    if (want > cap)
        want = cap;
    memcpy(buf, f->p, want);
    f->p += want;
    f->n -= want;
    return (int)want;
}

static int fs_ok(st_stream *s, st_err *err)
{
    return 0;
}

static int fs_line(st_stream *s, const st_stream_line *l, st_err *err)
{
    return 0;
}

static int fs_modem(st_stream *s, int dtr, int rts, st_err *err)
{
    return 0;
}

static void fs_close(st_stream *s)
{
}

static const st_stream_ops fs_ops = { .write = fs_write, .read = fs_read, .set_line = fs_line,
                                      .set_modem = fs_modem, .flush_input = fs_ok,
                                      .close = fs_close };

static void host_side(const uint8_t *data, size_t size)
{
    if (size < 1)
        return;
    fuzz_stream fs = { .base = { .ops = &fs_ops, .name = "fuzz" }, .p = data + 1, .n = size - 1 };
    /* No pauses: every wait in the engine is a retry after a bad answer. */
    st_katapult_opts o = { .tries = 2, .read_timeout_ms = 1, .block_tries = 2,
                           .block_timeout_ms = 1, .addr_tries = 2, .retry_pause_ms = 1,
                           .busy_wait_ms = 1, .addr_pause_ms = 1, .prime = data[0] & 0x80 };
    st_katapult *k = NULL;
    st_err err;
    if (st_katapult_open(&fs.base, &o, &k, &err) != 0)
        return;
    st_katapult_info info;
    if (st_katapult_connect(k, &info, &err) == 0) {
        st_katapult_check_mcu(&info, "stm32g431xx", &err);
        uint8_t buf[256], uuid[6];
        static uint8_t img_bytes[256];
        st_image img = { .data = img_bytes, .size = sizeof img_bytes, .load_addr = info.app_start,
                         .format = "bin" };
        st_katapult_result r;
        switch (data[0] % 6u) {
        case 1: st_katapult_read(k, info.app_start, sizeof buf, buf, &err); break;
        case 2: st_katapult_get_canbus_id(k, uuid, &err); break;
        case 3: st_katapult_complete(k, &err); break;
        case 4: st_katapult_flash(k, &img, NULL, &r, &err); break;
        case 5: st_katapult_verify(k, &img, &r, &err); break;
        default: break;
        }
    }
    st_katapult_close(k);
}

static void device_side(const uint8_t *data, size_t size)
{
    /* A fresh unit per input, so a run is reproducible from its input alone. */
    st_flash *flash = st_flash_new(st_mcu_find("stm32g431xx"), ST_TIMING_NONE);
    if (!flash)
        abort();
    st_katapult_model *m = st_katapult_model_new(flash, NULL);
    if (!m)
        abort();
    st_stream_model *sm = st_katapult_model_stream(m);
    uint8_t out[2048];
    for (size_t off = 0; off < size;) {
        size_t n = (size - off) < 97 ? size - off : 97; /* odd chunks: frames split anywhere */
        sm->ops->rx(sm, data + off, n, 0);
        off += n;
        while (sm->ops->tx(sm, out, sizeof out, UINT64_MAX / 2) > 0)
            ;
    }
    st_katapult_model_free(m);
    st_flash_free(flash);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The stateless checker on its own, popping as a caller does. */
    for (size_t off = 0; off < size;) {
        st_kat_check c = st_kat_frame_check(data + off, size - off, ST_KAT_FRAME_MAX);
        if (c.kind == ST_KAT_NEED_MORE)
            break;
        if (c.len == 0 || c.len > size - off)
            abort(); /* the contract: FRAME/DROP consume 1..n bytes */
        off += c.len;
    }
    host_side(data, size);
    device_side(data, size);
    return 0;
}
