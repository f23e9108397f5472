/* Fuzz target: report journal replay (st_journal_apply) on the SCHEMA.md example report.
 * Byte 0 even: the rest is the journal file as read (torn, corrupt, anything). Byte 0 odd:
 * the rest is record bodies separated by 0xFF bytes, framed here with their correct length
 * and CRC-32 (so the fuzzer reaches the record parser and the puts behind the CRC check).
 * Whatever the bytes, the result keeps verdict `incomplete`, has a cause and emits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "reports/journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static st_rnode *base;
    if (!base) {
        st_err e;
        if (st_report_load(STATION_SOURCE_DIR "/reports/example-report.yaml", &base, &e) != 0)
            abort();
        st_rmap_str(base, "verdict", "incomplete");
    }
    if (size < 1)
        return 0;
    char *buf = NULL;
    size_t n = 0;
    if (data[0] % 2 == 0) {
        buf = malloc(size);
        if (!buf)
            return 0;
        memcpy(buf, data + 1, size - 1);
        n = size - 1;
    } else {
        static const char magic[] = "station-journal 1\n";
        size_t cap = sizeof magic + size * 2 + 64 * size;
        buf = malloc(cap);
        if (!buf)
            return 0;
        memcpy(buf, magic, sizeof magic - 1);
        n = sizeof magic - 1;
        size_t start = 1;
        for (size_t i = 1; i <= size; i++) {
            if (i < size && data[i] != 0xFF)
                continue;
            size_t len = i - start;
            uint32_t crc = (uint32_t)crc32(0L, data + start, (uInt)len);
            n += (size_t)snprintf(buf + n, cap - n, "J %zu %08x\n", len, (unsigned)crc);
            memcpy(buf + n, data + start, len);
            n += len;
            buf[n++] = '\n';
            start = i + 1;
        }
    }
    st_rnode *doc = st_report_copy(base);
    if (!doc)
        abort();
    st_journal_replay_info info = { 0 };
    st_journal_apply(doc, buf, n, &info);
    const char *v = st_rget_str(doc, "verdict");
    if (!v || strcmp(v, "incomplete") != 0 || !st_rget_str(doc, "cause") || info.torn_bytes > n)
        abort();
    char *out = NULL;
    st_err e;
    if (st_report_emit(doc, &out, NULL, &e) != 0)
        abort();
    free(out);
    st_report_free(doc);
    free(buf);
    return 0;
}
