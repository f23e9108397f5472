/* Fuzz target: the engine's handling of bytes from a unit. The input is everything the
 * "device" ever says; the engine runs a whole session against it (sync, identify, read,
 * write, erase, go) through a stream that ends the conversation (disconnect) when the input
 * runs out. Nothing may crash, hang or read past a buffer, whatever the unit answers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/an3155/an3155.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct fz_stream {
    st_stream base;
    const uint8_t *data;
    size_t size, at;
} fz_stream;

static int fz_write(st_stream *s, const uint8_t *b, size_t n, unsigned t, st_err *err)
{
    (void)s, (void)b, (void)t, (void)err;
    return (int)n;
}

static int fz_read(st_stream *s, uint8_t *b, size_t cap, unsigned t, st_err *err)
{
    fz_stream *f = (fz_stream *)s;
    (void)t;
    if (f->at >= f->size)
        return st_err_set(err, ST_ERR_DISCONNECT, "end of input");
    /* Answer in small pieces, as a UART does. */
    size_t n = f->data[f->at] % 7 + 1;
    if (n > cap)
        n = cap;
    if (n > f->size - f->at)
        n = f->size - f->at;
    memcpy(b, f->data + f->at, n);
    f->at += n;
    return (int)n;
}

static int fz_line(st_stream *s, const st_stream_line *l, st_err *err)
{
    (void)s, (void)l, (void)err;
    return 0;
}

static int fz_modem(st_stream *s, int d, int r, st_err *err)
{
    (void)s, (void)d, (void)r, (void)err;
    return 0;
}

static int fz_flush(st_stream *s, st_err *err)
{
    (void)s, (void)err;
    return 0;
}

static void fz_close(st_stream *s)
{
    (void)s;
}

static const st_stream_ops fz_ops = {fz_write, fz_read, fz_line, fz_modem, fz_flush, fz_close,
                                     NULL, NULL, NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_stream f = {.base.ops = &fz_ops, .data = data, .size = size};
    strcpy(f.base.name, "fuzz");
    st_an_cfg cfg = {.byte_timeout_ms = 1, .write_timeout_ms = 1, .page_erase_ms = 1,
                     .mass_erase_ms = 1, .retries = 2, .resync_wait_ms = 1};
    st_an3155 *a;
    st_err err;
    if (st_an_new(&f.base, &cfg, &a, &err) < 0)
        abort();
    st_an_info info;
    uint8_t buf[600];
    static uint8_t img[4096];
    st_an_sync(a, NULL, &err);
    if (st_an_identify(a, &info, &err) == 0) {
        if (!info.dev || info.n_cmds > sizeof info.cmds)
            abort();
        st_an_read(a, info.dev->flash_start, buf, sizeof buf, NULL, &err);
        st_an_write(a, info.dev->flash_start, img, 300, NULL, &err);
        st_an_erase_units(a, 0, 3, &err);
        st_an_flash_opts o = {.skip_identical = true, .verify = true};
        st_an_flash(a, info.dev->flash_start, img, sizeof img, &o, NULL, NULL, &err);
        char uid[25];
        st_an_read_uid(a, uid, &err);
        st_an_go(a, info.dev->flash_start, &err);
    }
    st_an_free(a);
    return 0;
}
