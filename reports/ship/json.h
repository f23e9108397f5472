/* A report document as JSON, for the database's JSONB column and MQTT payloads, and a
 * JSON string writer for untrusted text.
 *
 * Mapping (reports/FLEET.md): maps become objects (keys in file order), sequences arrays,
 * true/false/null stay, decimal integers and floats become JSON numbers when their text is
 * already a JSON number; every other scalar (0x addresses, .inf, times, strings) becomes a
 * JSON string holding its text exactly. Strings are escaped per RFC 8259 (control bytes as
 * \u00XX), so any report content is stored verbatim and cannot break the document. */
#ifndef STATION_REPORTS_SHIP_JSON_H
#define STATION_REPORTS_SHIP_JSON_H

#include <stddef.h>

#include "reports/report.h"
#include "station/core/err.h"

/* A growable buffer; free(buf->p) when done. oom is set by a failed append. */
typedef struct st_jbuf {
    char *p;
    size_t len, cap;
    int oom;
} st_jbuf;

void st_jbuf_add(st_jbuf *b, const char *s, size_t n);
void st_jbuf_str(st_jbuf *b, const char *s);     /* appends "s" quoted and escaped */
void st_jbuf_fmt(st_jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* doc as one JSON text into a new malloc'd NUL-terminated buffer *out (free() it). */
int st_report_json(const st_rnode *doc, char **out, size_t *len, st_err *err);

#endif
