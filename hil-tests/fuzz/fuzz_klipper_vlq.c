/* Fuzz target: VLQ decoding of untrusted bytes, and the round trip of every value decoded
 * (the MCU-style encoder must give back a form that decodes to the same value). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "protocols/klipper/msgproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    while (pos < size) {
        uint32_t v;
        int k = st_klp_vlq_decode(data + pos, size - pos, &v);
        if (k < -1 || k > ST_KLP_VLQ_MAX)
            abort();
        if (k <= 0)
            break;
        uint8_t enc[ST_KLP_VLQ_MAX];
        size_t n = st_klp_vlq_encode(v, enc);
        uint32_t back;
        if (n < 1 || n > ST_KLP_VLQ_MAX || st_klp_vlq_decode(enc, n, &back) != (int)n || back != v)
            abort();
        pos += (size_t)k;
    }
    return 0;
}
