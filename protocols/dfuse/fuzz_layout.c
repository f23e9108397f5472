/* Fuzz target: DfuSe memory-layout strings (the alt-setting names a unit reports, e.g.
 * "@Internal Flash   /0x08000000/64*02Kg"): the parser, then every lookup over it at
 * addresses taken from the input's first bytes. The string is the rest, handed over as a
 * buffer of exactly its size with no NUL after it, as a USB string descriptor may come. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/dfuse/layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    uint32_t addr = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                    (uint32_t)data[3] << 24;
    uint32_t len = (uint32_t)data[4] | (uint32_t)data[5] << 8 | (uint32_t)data[6] << 16 |
                   (uint32_t)data[7] << 24;
    size_t n = size - 8;
    char *s = malloc(n ? n : 1); /* exactly the bytes: ASan sees a read past them */
    if (!s)
        return 0;
    if (n)
        memcpy(s, data + 8, n);
    st_dfuse_layout *l = NULL;
    st_err err;
    /* Half the inputs without an error buffer: codes must not depend on it. */
    if (st_dfuse_layout_parse(s, n, &l, n % 2 ? &err : NULL) == 0) {
        if (strlen(l->name) >= ST_DFUSE_LAYOUT_NAME_MAX || l->nsegs == 0)
            abort();
        for (size_t i = 0; i < l->nsegs; i++) {
            const st_dfuse_segment *g = &l->segs[i];
            if (!g->page_size || !g->count || g->size != (uint64_t)g->count * g->page_size ||
                (uint64_t)g->start + g->size > (uint64_t)UINT32_MAX + 1)
                abort(); /* the header's promise: size = count * page_size, within 4 GiB */
        }
        const st_dfuse_segment *seg = st_dfuse_layout_find(l, addr);
        if (seg && (addr < seg->start || addr - seg->start >= seg->size))
            abort();
        if (st_dfuse_layout_page_size(l, addr))
            st_dfuse_layout_page_start(l, addr);
        st_dfuse_layout_writable(l, addr, len);
        st_dfuse_layout_erasable(l, addr, len);
        uint64_t bad = st_dfuse_layout_first_bad(l, addr, len, ST_DFUSE_MEM_READABLE);
        if (bad < addr || bad > (uint64_t)addr + len)
            abort();
        st_dfuse_layout_free(l);
    }
    free(s);
    return 0;
}
