/* Fuzz target: report YAML (st_report_parse: reports are read back by `station report
 * show`, the shipper and the tests, and may be damaged or hostile), then everything a reader
 * does with a parsed report (validate, render, dotted-path getters) and a round trip:
 * whatever parses must emit, and the emitted text must parse again to the same text. The
 * one-pass reader st_report_parse tries first must agree with the general path
 * (st_report_parse_full): both accept or both refuse, and what they read emits the same
 * text. */
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
    int rc = st_report_parse(buf, size, "fuzz", &doc, &err);
    st_rnode *full = NULL;
    int frc = st_report_parse_full(buf, size, "fuzz", &full, &err);
    free(buf);
    if ((rc == 0) != (frc == 0))
        abort(); /* the fast reader accepted what the general one refuses, or the reverse */
    if (rc == 0) {
        char *x = NULL, *y = NULL;
        size_t xlen = 0, ylen = 0;
        if (st_report_emit(doc, &x, &xlen, &err) != 0 || st_report_emit(full, &y, &ylen, &err) != 0 ||
            xlen != ylen || memcmp(x, y, xlen) != 0)
            abort(); /* both read the same document */
        free(x);
        free(y);
    }
    st_report_free(full);
    if (rc != 0)
        return 0;
    st_report_validate(doc, &err);
    static FILE *null;
    if (!null)
        null = fopen("/dev/null", "w");
    if (null)
        st_report_render(doc, null, true);
    long long v;
    double d;
    st_rget_int(doc, "steps.0.attempts", &v);
    st_rget_num(doc, "run.duration_ms", &d);
    st_rget_str(doc, "unit.identity");
    char *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    if (st_report_emit(doc, &a, &alen, &err) != 0)
        abort(); /* a parsed document always emits */
    st_rnode *again = NULL;
    if (st_report_parse(a, alen, "fuzz-again", &again, &err) != 0)
        abort(); /* the writer's output always parses */
    if (st_report_emit(again, &b, &blen, &err) != 0 || alen != blen || memcmp(a, b, alen) != 0)
        abort(); /* and round-trips to the same text */
    free(a);
    free(b);
    st_report_free(again);
    st_report_free(doc);
    return 0;
}
