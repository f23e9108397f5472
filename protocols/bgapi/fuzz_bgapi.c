/* Fuzz entry point for the BGAPI parsers that read bytes from a unit or a file: the frame
 * finder under both rule sets with the message decoder, the GBL file check, and the GBL
 * stream parser fed in pieces the input itself chooses. libFuzzer calls it directly; the
 * smoke driver (fuzz_smoke_main.c) calls it with bounded random inputs under ctest. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/bgapi/frame.h"
#include "protocols/bgapi/gbl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int prog(void *ctx, uint32_t addr, const uint8_t *d, size_t n)
{
    uint64_t *sum = ctx;
    for (size_t i = 0; i < n; i++)
        *sum += d[i];
    return (addr & 0xFFF00000u) == 0xFFF00000u ? -1 : 0; /* a failing write now and then */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const st_bgapi_rules rules[3] = {
        {.check_known = true, .max_payload = 256},
        {.max_payload = 255, .commands_only = true},
        {0},
    };
    for (int r = 0; r < 3; r++) {
        size_t pos = 0;
        while (pos < size) {
            st_bgapi_check c = st_bgapi_frame_check(data + pos, size - pos, &rules[r]);
            if (c.kind == ST_BGAPI_NEED_MORE)
                break;
            if (c.len == 0 || c.len > size - pos)
                abort(); /* the finder must always make progress within its input */
            if (c.kind == ST_BGAPI_FRAME) {
                st_bgapi_msg_info m;
                st_bgapi_decode(data + pos, c.len, &m);
            }
            pos += c.len;
        }
    }
    st_gbl_info info;
    (void)st_gbl_check(data, size, "fuzz", &info, NULL);
    /* GBL stream: the first byte picks the piece size, as uploads would cut it. */
    uint64_t sum = 0;
    st_gbl_parser p;
    st_gbl_parser_init(&p);
    st_gbl_parser_cb cb = {.prog = prog, .ctx = &sum};
    size_t piece = size ? (size_t)data[0] % 64 + 1 : 1;
    for (size_t off = 0; off < size; off += piece) {
        size_t k = size - off < piece ? size - off : piece;
        int st = st_gbl_parser_feed(&p, data + off, k, &cb);
        if (st < ST_GBL_ERR_WRITE || st > ST_GBL_EOF)
            abort();
    }
    return 0;
}
