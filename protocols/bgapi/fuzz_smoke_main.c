/* Bounded random-input run of LLVMFuzzerTestOneInput (fuzz_bgapi.c) for ctest: random
 * bytes, random bytes with BGAPI headers sprinkled in, and mutated valid GBL files. A
 * fixed seed and a fixed count keep it reproducible and quick. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/bgapi/gbl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t rnd(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

int main(void)
{
    uint32_t seed = 0xB6A91u;
    uint8_t *buf = malloc(8192);
    uint8_t payload[700];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7);
    st_gbl_build_opts o = {.app_type = 8, .app_version = 0x01020304, .prog_addr = 0,
                           .data = payload, .len = sizeof payload};
    uint8_t *gbl;
    size_t gl;
    if (!buf || st_gbl_build(&o, &gbl, &gl, NULL))
        return 1;
    int runs = 0;
    for (int i = 0; i < 20000; i++) {
        size_t n;
        if (i % 3 == 2) {
            n = gl;
            memcpy(buf, gbl, gl);
            unsigned flips = rnd(&seed) % 4;
            for (unsigned f = 0; f < flips; f++)
                buf[rnd(&seed) % n] ^= (uint8_t)(1u << (rnd(&seed) % 8));
            if (rnd(&seed) % 4 == 0)
                n = rnd(&seed) % n;
        } else {
            n = rnd(&seed) % 1024;
            for (size_t k = 0; k < n; k++) {
                uint32_t r = rnd(&seed);
                buf[k] = (uint8_t)r;
                if (i % 3 == 1 && (r & 0x700) == 0)
                    buf[k] = (r & 0x800) ? 0xa0 : 0x20;
            }
        }
        LLVMFuzzerTestOneInput(buf, n);
        runs++;
    }
    printf("fuzz smoke: %d inputs\n", runs);
    free(gbl);
    free(buf);
    return 0;
}
