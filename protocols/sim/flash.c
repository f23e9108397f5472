/* STM32 flash model: see flash.h. */
#include "protocols/sim/flash.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NO_PAGE UINT32_MAX

struct st_flash {
    const st_mcu *mcu;
    st_timing_profile timing;
    pthread_mutex_t lock;
    uint8_t *main;       /* flash_size bytes */
    uint8_t *opt;        /* optbytes_size bytes */
    uint8_t *otp;        /* otp_size bytes */
    bool rdp;
    bool from_flash; /* the CPU runs code from main flash: RDP level 1 does not apply */
    uint32_t corrupt_page, prog_error_page;
    unsigned slow_factor;
    bool power_armed, power_lost;
    uint64_t power_budget;
    st_flash_stats stats;
};

st_flash *st_flash_new(const st_mcu *mcu, st_timing_profile timing)
{
    st_flash *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->mcu = mcu;
    f->timing = timing;
    f->main = malloc(mcu->flash_size);
    f->opt = malloc(mcu->optbytes_size ? mcu->optbytes_size : 1);
    f->otp = malloc(mcu->otp_size ? mcu->otp_size : 1);
    if (!f->main || !f->opt || !f->otp) {
        st_flash_free(f);
        return NULL;
    }
    memset(f->main, 0xFF, mcu->flash_size);
    memset(f->opt, 0xFF, mcu->optbytes_size);
    if (mcu->optbytes_size)
        f->opt[0] = 0xAA; /* RDP level 0 */
    memset(f->otp, 0xFF, mcu->otp_size);
    f->corrupt_page = f->prog_error_page = NO_PAGE;
    f->slow_factor = 1;
    pthread_mutex_init(&f->lock, NULL);
    return f;
}

void st_flash_free(st_flash *f)
{
    if (!f)
        return;
    pthread_mutex_destroy(&f->lock);
    free(f->main);
    free(f->opt);
    free(f->otp);
    free(f);
}

const st_mcu *st_flash_mcu(const st_flash *f)
{
    return f->mcu;
}

st_timing_profile st_flash_timing(const st_flash *f)
{
    return f->timing;
}

bool st_flash_in_main(const st_flash *f, uint32_t addr, size_t len)
{
    return addr >= f->mcu->flash_start &&
           (uint64_t)addr + len <= (uint64_t)f->mcu->flash_start + f->mcu->flash_size;
}

uint32_t st_flash_page_index(const st_flash *f, uint32_t addr)
{
    return (addr - f->mcu->flash_start) / f->mcu->page_size;
}

static bool in_region(uint32_t addr, size_t len, uint32_t start, uint32_t size)
{
    return size && addr >= start && (uint64_t)addr + len <= (uint64_t)start + size;
}

uint64_t st_flash_cost_us(const st_mcu *mcu, uint32_t pages, uint64_t bytes)
{
    return (uint64_t)pages * mcu->page_erase_us + (bytes + 7) / 8 * mcu->dword_program_us;
}

/* Readout protection guards flash against the ROM bootloader (and debug), not against code
 * running from flash itself (RM0440 3.5.1: level 1). Lock held. */
static bool protected_now(const st_flash *f)
{
    return f->rdp && !f->from_flash;
}

void st_flash_set_running_from_flash(st_flash *f, bool yes)
{
    pthread_mutex_lock(&f->lock);
    f->from_flash = yes;
    pthread_mutex_unlock(&f->lock);
}

int st_flash_read(st_flash *f, uint32_t addr, uint8_t *buf, size_t len)
{
    int rc = ST_FLASH_OK;
    pthread_mutex_lock(&f->lock);
    const st_mcu *m = f->mcu;
    if (in_region(addr, len, m->flash_start, m->flash_size)) {
        if (protected_now(f))
            rc = ST_FLASH_ERR_PROTECTED;
        else
            memcpy(buf, f->main + (addr - m->flash_start), len);
    } else if (in_region(addr, len, m->optbytes_start, m->optbytes_size)) {
        memcpy(buf, f->opt + (addr - m->optbytes_start), len);
    } else if (in_region(addr, len, m->otp_start, m->otp_size)) {
        memcpy(buf, f->otp + (addr - m->otp_start), len);
    } else {
        rc = ST_FLASH_ERR_ADDRESS;
    }
    pthread_mutex_unlock(&f->lock);
    return rc;
}

static uint64_t timed(const st_flash *f, uint64_t us)
{
    return f->timing == ST_TIMING_DATASHEET ? us : 0;
}

int st_flash_erase_page(st_flash *f, uint32_t addr, uint64_t *cost_us)
{
    if (cost_us)
        *cost_us = 0;
    if (!st_flash_in_main(f, addr, 1))
        return ST_FLASH_ERR_ADDRESS;
    pthread_mutex_lock(&f->lock);
    int rc = ST_FLASH_OK;
    if (f->power_lost) {
        rc = ST_FLASH_ERR_POWER_LOST;
    } else if (protected_now(f)) {
        rc = ST_FLASH_ERR_PROTECTED;
    } else {
        uint32_t page = st_flash_page_index(f, addr);
        memset(f->main + (size_t)page * f->mcu->page_size, 0xFF, f->mcu->page_size);
        uint64_t c = (uint64_t)f->mcu->page_erase_us * f->slow_factor;
        f->stats.pages_erased++;
        f->stats.busy_us += timed(f, c);
        if (cost_us)
            *cost_us = timed(f, c);
    }
    pthread_mutex_unlock(&f->lock);
    return rc;
}

int st_flash_mass_erase(st_flash *f, uint64_t *cost_us)
{
    if (cost_us)
        *cost_us = 0;
    pthread_mutex_lock(&f->lock);
    int rc = ST_FLASH_OK;
    if (f->power_lost) {
        rc = ST_FLASH_ERR_POWER_LOST;
    } else {
        /* Mass erase also clears read protection's reason to exist (RDP regression erases). */
        memset(f->main, 0xFF, f->mcu->flash_size);
        uint64_t c = (uint64_t)f->mcu->mass_erase_us * f->slow_factor;
        f->stats.busy_us += timed(f, c);
        if (cost_us)
            *cost_us = timed(f, c);
    }
    pthread_mutex_unlock(&f->lock);
    return rc;
}

int st_flash_program(st_flash *f, uint32_t addr, const uint8_t *data, size_t len,
                     uint64_t *cost_us)
{
    if (cost_us)
        *cost_us = 0;
    if (!st_flash_in_main(f, addr, len))
        return ST_FLASH_ERR_ADDRESS;
    if (len == 0)
        return ST_FLASH_OK;
    pthread_mutex_lock(&f->lock);
    int rc = ST_FLASH_OK;
    const st_mcu *m = f->mcu;
    size_t off = addr - m->flash_start;
    size_t first = off & ~(size_t)7, last = (off + len + 7) & ~(size_t)7;
    if (f->power_lost) {
        rc = ST_FLASH_ERR_POWER_LOST;
        goto out;
    }
    if (protected_now(f)) {
        rc = ST_FLASH_ERR_PROTECTED;
        goto out;
    }
    for (size_t p = first / m->page_size; p <= (last - 1) / m->page_size; p++) {
        if (p == f->prog_error_page) {
            rc = ST_FLASH_ERR_PROG;
            goto out;
        }
    }
    /* Every covered double word must be blank (the G4 sets PROGERR otherwise). */
    for (size_t d = first; d < last; d += 8) {
        for (size_t i = 0; i < 8; i++) {
            if (f->main[d + i] != 0xFF) {
                rc = ST_FLASH_ERR_NOT_ERASED;
                goto out;
            }
        }
    }
    size_t n = len;
    if (f->power_armed && f->power_budget < n) {
        n = (size_t)f->power_budget;
        f->power_lost = true;
        rc = ST_FLASH_ERR_POWER_LOST;
    }
    memcpy(f->main + off, data, n);
    if (f->power_armed)
        f->power_budget -= n;
    uint64_t c = (last - first) / 8 * m->dword_program_us;
    f->stats.bytes_programmed += n;
    f->stats.program_ops++;
    f->stats.busy_us += timed(f, c);
    if (cost_us)
        *cost_us = timed(f, c);
    if (f->corrupt_page != NO_PAGE) {
        for (size_t p = first / m->page_size; p <= (last - 1) / m->page_size; p++) {
            if (p == f->corrupt_page) {
                size_t at = off > p * m->page_size ? off : p * m->page_size;
                f->main[at] ^= 0x01;
                f->corrupt_page = NO_PAGE; /* one flipped bit per arming */
                break;
            }
        }
    }
out:
    pthread_mutex_unlock(&f->lock);
    return rc;
}

bool st_flash_page_blank(st_flash *f, uint32_t addr)
{
    if (!st_flash_in_main(f, addr, 1))
        return false;
    pthread_mutex_lock(&f->lock);
    size_t base = (size_t)st_flash_page_index(f, addr) * f->mcu->page_size;
    bool blank = true;
    for (size_t i = 0; i < f->mcu->page_size && blank; i++)
        blank = f->main[base + i] == 0xFF;
    pthread_mutex_unlock(&f->lock);
    return blank;
}

void st_flash_preload(st_flash *f, uint32_t addr, const uint8_t *data, size_t len)
{
    if (!st_flash_in_main(f, addr, len))
        return;
    pthread_mutex_lock(&f->lock);
    memcpy(f->main + (addr - f->mcu->flash_start), data, len);
    pthread_mutex_unlock(&f->lock);
}

int st_flash_write_optbytes(st_flash *f, uint32_t offset, const uint8_t *data, size_t len)
{
    if ((uint64_t)offset + len > f->mcu->optbytes_size)
        return ST_FLASH_ERR_ADDRESS;
    pthread_mutex_lock(&f->lock);
    memcpy(f->opt + offset, data, len);
    pthread_mutex_unlock(&f->lock);
    return ST_FLASH_OK;
}

void st_flash_set_rdp(st_flash *f, bool protected_)
{
    pthread_mutex_lock(&f->lock);
    f->rdp = protected_;
    if (f->mcu->optbytes_size)
        f->opt[0] = protected_ ? 0xBB : 0xAA;
    pthread_mutex_unlock(&f->lock);
}

bool st_flash_rdp(st_flash *f)
{
    pthread_mutex_lock(&f->lock);
    bool r = f->rdp;
    pthread_mutex_unlock(&f->lock);
    return r;
}

void st_flash_fault_corrupt_page(st_flash *f, uint32_t page_addr)
{
    pthread_mutex_lock(&f->lock);
    f->corrupt_page = st_flash_page_index(f, page_addr);
    pthread_mutex_unlock(&f->lock);
}

void st_flash_fault_prog_error(st_flash *f, uint32_t page_addr)
{
    pthread_mutex_lock(&f->lock);
    f->prog_error_page = st_flash_page_index(f, page_addr);
    pthread_mutex_unlock(&f->lock);
}

void st_flash_fault_slow_erase(st_flash *f, unsigned factor)
{
    pthread_mutex_lock(&f->lock);
    f->slow_factor = factor ? factor : 1;
    pthread_mutex_unlock(&f->lock);
}

void st_flash_fault_power_loss_after(st_flash *f, uint64_t bytes)
{
    pthread_mutex_lock(&f->lock);
    f->power_armed = true;
    f->power_budget = bytes;
    pthread_mutex_unlock(&f->lock);
}

bool st_flash_power_lost(st_flash *f)
{
    pthread_mutex_lock(&f->lock);
    bool r = f->power_lost;
    pthread_mutex_unlock(&f->lock);
    return r;
}

void st_flash_power_restore(st_flash *f)
{
    pthread_mutex_lock(&f->lock);
    /* Only a loss that happened is over: one still armed waits for its bytes (a unit's
     * first boot, or a reset before the flash step, must not disarm it). */
    if (f->power_lost)
        f->power_lost = f->power_armed = false;
    pthread_mutex_unlock(&f->lock);
}

void st_flash_fault_clear(st_flash *f)
{
    pthread_mutex_lock(&f->lock);
    f->corrupt_page = f->prog_error_page = NO_PAGE;
    f->slow_factor = 1;
    f->power_armed = f->power_lost = false;
    pthread_mutex_unlock(&f->lock);
}

void st_flash_fault_disarm(st_flash *f)
{
    pthread_mutex_lock(&f->lock);
    f->corrupt_page = f->prog_error_page = NO_PAGE;
    f->slow_factor = 1;
    f->power_armed = false;
    pthread_mutex_unlock(&f->lock);
}

void st_flash_get_stats(st_flash *f, st_flash_stats *out)
{
    pthread_mutex_lock(&f->lock);
    *out = f->stats;
    pthread_mutex_unlock(&f->lock);
}

void st_flash_reset_stats(st_flash *f)
{
    pthread_mutex_lock(&f->lock);
    memset(&f->stats, 0, sizeof f->stats);
    pthread_mutex_unlock(&f->lock);
}
