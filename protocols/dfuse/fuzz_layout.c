/* Fuzz entry point for the DfuSe layout parser (layout.c), which reads an alt setting's
 * name from the unit: the input is handed over as a buffer of exactly its size, with no
 * NUL after it, as a USB string descriptor may come. libFuzzer calls it directly; the smoke
 * driver (fuzz_layout_smoke.c) calls it with bounded random inputs under ctest. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/dfuse/layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1);
    if (!s)
        return 0;
    if (size)
        memcpy(s, data, size);
    st_dfuse_layout *l = NULL;
    st_err err;
    if (st_dfuse_layout_parse(s, size, &l, size % 2 ? &err : NULL) == 0) {
        /* What a parsed layout promises its users. */
        if (strlen(l->name) >= ST_DFUSE_LAYOUT_NAME_MAX || l->nsegs == 0)
            abort();
        for (size_t i = 0; i < l->nsegs; i++) {
            const st_dfuse_segment *g = &l->segs[i];
            if (!g->page_size || !g->count || g->size != (uint64_t)g->count * g->page_size ||
                (uint64_t)g->start + g->size > (uint64_t)UINT32_MAX + 1)
                abort();
            (void)st_dfuse_layout_page_start(l, g->start + (uint32_t)(g->size - 1));
        }
        (void)st_dfuse_layout_writable(l, l->segs[0].start, l->segs[0].size);
        st_dfuse_layout_free(l);
    }
    free(s);
    return 0;
}
