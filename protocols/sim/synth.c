/* Synthetic firmware images: see synth.h. */
#include "protocols/sim/synth.h"

#include <stdlib.h>
#include <string.h>

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* xorshift32: fixed, portable, good enough to make every page distinct. */
static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

int st_synth_combined(const st_mcu *mcu, size_t size, uint8_t **out, st_err *err)
{
    return st_synth_combined_seeded(mcu, size, 0, out, err);
}

int st_synth_combined_seeded(const st_mcu *mcu, size_t size, uint32_t seed, uint8_t **out,
                             st_err *err)
{
    size_t app = mcu->katapult_app_offset;
    if (size < app + 1024 || size > mcu->flash_size)
        return st_err_set(err, ST_ERR_INVAL, "synthetic image size %zu must be %zu..%u bytes",
                          size, app + 1024, mcu->flash_size);
    uint8_t *p = malloc(size);
    if (!p)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    memset(p, 0xFF, size);
    /* Bootloader: 6 KiB of "code", the rest of its 8 KiB erased, as a real build. */
    fill(p, app - 2048, 0x4B415441u);
    put32(p, mcu->sram_start + mcu->sram_size - 8);
    put32(p + 4, mcu->flash_start + 0xA0 + 1);
    memcpy(p + 0xA0 - 8, "CanBoot!", 8);
    /* Application. */
    uint32_t app_seed = 0x4150504Cu ^ (seed * 0x9E3779B9u);
    fill(p + app, size - app, app_seed ? app_seed : 1u); /* xorshift must not start at 0 */
    put32(p + app, mcu->sram_start + mcu->sram_size);
    put32(p + app + 4, mcu->flash_start + (uint32_t)app + 0x1DC + 1);
    *out = p;
    return 0;
}
