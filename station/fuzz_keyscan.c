/* Fuzz target: the barcode scanner's key decoder (st_keyscan_feed) on whatever an input
 * device sends (events from a device are untrusted). The input is a list of 8-byte events,
 * type (2 bytes LE), code (2), value (4); every scan it ends must be non-empty printable
 * ASCII shorter than ST_KEYSCAN_MAX, NUL-terminated inside the caller's buffer, whatever
 * buffer size it gets (the first byte picks it). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "station/scanner.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cap = 1 + data[0] % (ST_KEYSCAN_MAX + 8);
    data++;
    size--;
    st_keyscan k;
    st_keyscan_reset(&k);
    char *out = malloc(cap + 1);
    if (!out)
        return 0;
    for (size_t at = 0; at + 8 <= size; at += 8) {
        const uint8_t *e = data + at;
        unsigned type = (unsigned)(e[0] | e[1] << 8), code = (unsigned)(e[2] | e[3] << 8);
        int value = (int)((uint32_t)e[4] | (uint32_t)e[5] << 8 | (uint32_t)e[6] << 16 |
                          (uint32_t)e[7] << 24);
        out[cap] = 0x5a; /* a canary past the caller's buffer */
        if (st_keyscan_feed(&k, type, code, value, out, cap) == 1) {
            size_t n = strnlen(out, cap);
            if (n == cap || n == 0 || n >= ST_KEYSCAN_MAX || out[cap] != 0x5a)
                abort();
            for (size_t i = 0; i < n; i++)
                if (out[i] < 0x20 || out[i] > 0x7e)
                    abort();
        }
        if (k.len >= ST_KEYSCAN_MAX)
            abort();
    }
    free(out);
    return 0;
}
