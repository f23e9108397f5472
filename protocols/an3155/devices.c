/* The AN3155 device table and erase planning (an3155.h). Rows: reference 4.5, read from
 * stm32flash 0.7 dev_table.c, with write alignment and start-up times from AN2606 and the
 * unique-ID addresses from the reference manuals (RM0440, RM0360, RM0008, RM0368, RM0090,
 * RM0444). */
#include "protocols/an3155/an3155.h"

#include <stddef.h>

/* stm32flash f2f4[]: 16K x4, 64K, then 128K repeating. */
static const uint32_t f4_sectors[] = {16384, 16384, 16384, 16384, 65536, 131072, 0};

static const st_an_dev devs[] = {
    {.pid = 0x468, .name = "STM32G431xx/441xx",
     .ram_start = 0x20004000, .ram_end = 0x20005800,
     .flash_start = 0x08000000, .flash_end = 0x08020000, .page_size = 2048,
     .opt_start = 0x1FFF7800, .opt_end = 0x1FFF782F,
     .sys_start = 0x1FFF0000, .sys_end = 0x1FFF7000,
     .write_align = 8, .startup_us = 390, .uid_addr = 0x1FFF7590},
    {.pid = 0x440, .name = "STM32F030x8/F05xxx",
     .ram_start = 0x20000800, .ram_end = 0x20002000,
     .flash_start = 0x08000000, .flash_end = 0x08010000, .page_size = 1024,
     .opt_start = 0x1FFFF800, .opt_end = 0x1FFFF80F,
     .sys_start = 0x1FFFEC00, .sys_end = 0x1FFFF800,
     .write_align = 4, .startup_us = 1600, .uid_addr = 0x1FFFF7AC},
    {.pid = 0x410, .name = "STM32F10xxx Medium-density",
     .ram_start = 0x20000200, .ram_end = 0x20005000,
     .flash_start = 0x08000000, .flash_end = 0x08020000, .page_size = 1024,
     .opt_start = 0x1FFFF800, .opt_end = 0x1FFFF80F,
     .sys_start = 0x1FFFF000, .sys_end = 0x1FFFF800,
     .write_align = 4, .legacy_erase_only = true, .startup_us = 1600,
     .uid_addr = 0x1FFFF7E8},
    {.pid = 0x423, .name = "STM32F401xB(C)",
     .ram_start = 0x20003000, .ram_end = 0x20010000,
     .flash_start = 0x08000000, .flash_end = 0x08040000, .sectors = f4_sectors,
     .opt_start = 0x1FFFC000, .opt_end = 0x1FFFC00F,
     .sys_start = 0x1FFF0000, .sys_end = 0x1FFF7800,
     .write_align = 4, .startup_us = 85000, .uid_addr = 0x1FFF7A10},
    {.pid = 0x433, .name = "STM32F401xD(E)",
     .ram_start = 0x20003000, .ram_end = 0x20018000,
     .flash_start = 0x08000000, .flash_end = 0x08080000, .sectors = f4_sectors,
     .opt_start = 0x1FFFC000, .opt_end = 0x1FFFC00F,
     .sys_start = 0x1FFF0000, .sys_end = 0x1FFF7800,
     .write_align = 4, .startup_us = 85000, .uid_addr = 0x1FFF7A10},
    {.pid = 0x413, .name = "STM32F40xxx/41xxx",
     .ram_start = 0x20003000, .ram_end = 0x20020000,
     .flash_start = 0x08000000, .flash_end = 0x08100000, .sectors = f4_sectors,
     .opt_start = 0x1FFFC000, .opt_end = 0x1FFFC00F,
     .sys_start = 0x1FFF0000, .sys_end = 0x1FFF7800,
     .write_align = 4, .startup_us = 85000, .uid_addr = 0x1FFF7A10},
    {.pid = 0x467, .name = "STM32G0B0/B1/C1xx",
     .ram_start = 0x20004000, .ram_end = 0x20020000,
     .flash_start = 0x08000000, .flash_end = 0x08080000, .page_size = 2048,
     .opt_start = 0x1FFF7800, .opt_end = 0x1FFF787F,
     .sys_start = 0x1FFF0000, .sys_end = 0x1FFF7000,
     .write_align = 4, .startup_us = 390, .uid_addr = 0x1FFF7590,
     .erase_single_from = 128},
    {.name = NULL},
};

const st_an_dev *st_an_dev_table(void)
{
    return devs;
}

const st_an_dev *st_an_dev_find(uint16_t pid)
{
    for (const st_an_dev *d = devs; d->name; d++)
        if (d->pid == pid)
            return d;
    return NULL;
}

bool st_an_dev_unit(const st_an_dev *d, uint32_t addr, uint32_t *index, uint32_t *start,
                    uint32_t *size)
{
    if (addr < d->flash_start || addr >= d->flash_end)
        return false;
    uint32_t off = addr - d->flash_start;
    if (d->page_size) {
        *index = off / d->page_size;
        *start = d->flash_start + *index * d->page_size;
        *size = d->page_size;
        return true;
    }
    uint32_t at = 0, i = 0;
    const uint32_t *s = d->sectors;
    for (;;) {
        uint32_t sz = *s;
        if (off < at + sz) {
            *index = i;
            *start = d->flash_start + at;
            *size = sz;
            return true;
        }
        at += sz;
        i++;
        if (s[1])
            s++; /* the last size repeats */
    }
}

int st_an_plan_erase(const st_an_dev *d, uint32_t addr, uint32_t len, st_an_erase_plan *out,
                     st_err *err)
{
    if (len == 0 || addr < d->flash_start || (uint64_t)addr + len > d->flash_end)
        return st_err_set(err, ST_ERR_INVAL,
                          "erase 0x%08x+%u: outside the %s flash 0x%08x-0x%08x", addr, len,
                          d->name, d->flash_start, d->flash_end);
    uint32_t i0, s0, z0, i1, s1, z1;
    if (!st_an_dev_unit(d, addr, &i0, &s0, &z0) ||
        !st_an_dev_unit(d, addr + len - 1, &i1, &s1, &z1))
        return st_err_set(err, ST_ERR_INVAL, "erase 0x%08x+%u: not in the %s erase units",
                          addr, len, d->name);
    out->first = i0;
    out->count = i1 - i0 + 1;
    out->start = s0;
    out->end = s1 + z1;
    out->mass = s0 == d->flash_start && out->end == d->flash_end;
    return 0;
}
