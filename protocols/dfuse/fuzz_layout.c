/* Fuzz target: DfuSe memory-layout strings (the alt-setting names a unit reports, e.g.
 * "@Internal Flash   /0x08000000/64*02Kg"): the parser, then every lookup over it at
 * addresses taken from the input's first bytes. The string is the rest, NUL-terminated as
 * the USB string reader delivers it. */
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
    char *s = malloc(size - 8 + 1);
    if (!s)
        return 0;
    memcpy(s, data + 8, size - 8);
    s[size - 8] = '\0';
    st_dfuse_layout *l = NULL;
    st_err err;
    if (st_dfuse_layout_parse(s, &l, &err) == 0) {
        for (size_t i = 0; i < l->nsegs; i++)
            if (l->segs[i].size != (uint64_t)l->segs[i].count * l->segs[i].page_size)
                abort(); /* the header's promise: size = count * page_size */
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
