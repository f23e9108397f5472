/* DfuSe memory-layout strings (the alt-setting names of an ST DFU bootloader, e.g.
 * "@Internal Flash   /0x08000000/64*02Kg"): parser and lookups. The string comes from the
 * unit, so it is untrusted: the parser reads exactly the length it is given (no NUL
 * needed) and rejects garbage with an error that quotes it (sanitised) and names the
 * column. Grammar: PROTOCOL.md §4. */
#ifndef STATION_PROTOCOLS_DFUSE_LAYOUT_H
#define STATION_PROTOCOLS_DFUSE_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "station/core/err.h"

/* Type letter 'a'..'g': its low three bits. */
#define ST_DFUSE_MEM_READABLE 0x1u
#define ST_DFUSE_MEM_ERASABLE 0x2u
#define ST_DFUSE_MEM_WRITABLE 0x4u

/* One "<count>*<size><mult><type>" element: count pages of page_size bytes. */
typedef struct st_dfuse_segment {
    uint32_t start;     /* first address */
    uint64_t size;      /* count * page_size bytes */
    uint32_t page_size; /* erase unit (ERASE_PAGE granularity) */
    uint32_t count;
    uint8_t flags;      /* ST_DFUSE_MEM_* */
    char type;          /* the type letter as given ('a'..'g') */
} st_dfuse_segment;

#define ST_DFUSE_LAYOUT_NAME_MAX 64

typedef struct st_dfuse_layout {
    char name[ST_DFUSE_LAYOUT_NAME_MAX]; /* "Internal Flash", padding trimmed, printable */
    st_dfuse_segment *segs;             /* owned */
    size_t nsegs;
    /* Tolerated oddities, as dfu-util warns about them: a multiplier that is not B/K/M
     * ("01*016 g": taken as bytes). */
    unsigned nonstandard_multipliers;
} st_dfuse_layout;

/* Parse the len bytes at s (a NUL among them is an error, not the end). On success *out is
 * new (free with st_dfuse_layout_free). Returns 0, ST_ERR_INVAL (message quotes the string
 * and the 1-based column: a name longer than ST_DFUSE_LAYOUT_NAME_MAX - 1 characters, a
 * page count or size that overflows 32 bits, ...), or ST_ERR_NOMEM. */
int st_dfuse_layout_parse(const char *s, size_t len, st_dfuse_layout **out, st_err *err);
void st_dfuse_layout_free(st_dfuse_layout *l);

/* Segment holding addr, or NULL. */
const st_dfuse_segment *st_dfuse_layout_find(const st_dfuse_layout *l, uint32_t addr);
/* Page size at addr, 0 when addr is in no segment. */
uint32_t st_dfuse_layout_page_size(const st_dfuse_layout *l, uint32_t addr);
/* Start of the page holding addr (addr must be in a segment; else returns addr). */
uint32_t st_dfuse_layout_page_start(const st_dfuse_layout *l, uint32_t addr);
/* Every byte of [addr, addr+len) lies in segments with all of `flags`. len 0 = false. */
bool st_dfuse_layout_check(const st_dfuse_layout *l, uint32_t addr, uint64_t len, unsigned flags);
bool st_dfuse_layout_writable(const st_dfuse_layout *l, uint32_t addr, uint64_t len);
bool st_dfuse_layout_erasable(const st_dfuse_layout *l, uint32_t addr, uint64_t len);
/* First address in [addr, addr+len) that lacks `flags` (for messages); addr+len if none. */
uint64_t st_dfuse_layout_first_bad(const st_dfuse_layout *l, uint32_t addr, uint64_t len,
                                   unsigned flags);

#endif
