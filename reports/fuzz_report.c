/* Fuzz entry point for the report reader (st_report_parse: report files are read back by
 * `station report show`, the shipper and the tests, and may be damaged or hostile). What
 * parses must validate or fail cleanly, render, and survive a write/read round trip.
 * libFuzzer calls it directly; fuzz_report_smoke.c calls it with bounded inputs under ctest. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reports/report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 20)
        return 0;
    char *buf = malloc(size ? size : 1); /* exactly the bytes: no NUL after them */
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    st_rnode *doc = NULL;
    st_err err;
    if (st_report_parse(buf, size, "fuzz", &doc, &err) == 0) {
        (void)st_report_validate(doc, &err);
        FILE *null = fopen("/dev/null", "w");
        if (null) {
            (void)st_report_render(doc, null, size % 2);
            fclose(null);
        }
        char *out = NULL;
        size_t olen = 0;
        if (st_report_emit(doc, &out, &olen, &err) == 0) {
            st_rnode *again = NULL;
            if (st_report_parse(out, olen, "again", &again, &err) != 0)
                abort(); /* what the writer emits, the reader must read */
            st_report_free(again);
            free(out);
        }
        st_report_free(doc);
    }
    free(buf);
    return 0;
}
