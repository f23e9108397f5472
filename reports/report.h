/* Per-unit YAML reports: a small ordered document model, an atomic writer (libyaml's
 * emitter) and a reader (station/core/yamldoc, the project's one YAML parser), schema
 * validation and a human summary. Schema: reports/SCHEMA.md.
 *
 * Ownership: st_report_new/st_report_load return a root that owns every node below it;
 * free it with st_report_free. Child pointers returned by the builders and getters stay
 * valid until that node is replaced or removed, or the root is freed.
 *
 * Untrusted text: keys and values are arbitrary bytes from units. The model stores them
 * as valid UTF-8: each byte that is not part of a well-formed UTF-8 sequence (including
 * overlong forms, surrogates and code points above U+10FFFF) becomes '?'; strings longer
 * than ST_REPORT_STR_MAX bytes are cut at a character boundary. Everything else, control
 * bytes included, is kept and round-trips exactly: the writer emits such strings
 * double-quoted with YAML escapes ("\n", "\x01", "\u00e9"), so a report file is plain
 * ASCII and safe to `cat`. C strings cannot hold NUL, so a "\0" escape in a hand-edited
 * file cuts the string there. st_report_render makes every string printable ASCII.
 *
 * NULL handling: every builder accepts a NULL node and does nothing, so a chain such as
 * st_rmap_str(st_rmap_map(doc, "unit"), ...) never crashes. An allocation failure marks
 * the document; st_report_write_atomic then fails with ST_ERR_NOMEM instead of writing a
 * report with holes. */
#ifndef STATION_REPORTS_REPORT_H
#define STATION_REPORTS_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "station/core/err.h"
#include "station/core/image.h"

#define ST_REPORT_SCHEMA 1          /* value of the top-level "schema" field */
#define ST_REPORT_STR_MAX 8192      /* longest key or value kept, in bytes */
#define ST_REPORT_DEPTH_MAX 32      /* deepest nesting the reader accepts */

typedef struct st_rnode st_rnode; /* map, sequence or scalar (opaque) */

/* Node types. Scalars built in memory get the type of their setter; scalars read from a
 * file get it from YAML 1.2 core-schema resolution of plain scalars (quoted scalars are
 * always ST_RSTR). Times are strings. */
typedef enum st_rtype {
    ST_RMAP,
    ST_RSEQ,
    ST_RSTR,
    ST_RINT,   /* decimal or 0x-hex */
    ST_RFLOAT,
    ST_RBOOL,
    ST_RNULL,
} st_rtype;

/* ---- building ------------------------------------------------------------------------ */

/* A new root map holding "schema: ST_REPORT_SCHEMA". NULL only when out of memory. */
st_rnode *st_report_new(void);
/* Free a root (from st_report_new or st_report_load) and everything below it. NULL ok. */
void st_report_free(st_rnode *doc);

/* Get-or-create the child map / sequence at key. An existing child of another type is
 * replaced in place (same position). NULL when map is NULL, not a map, or out of memory. */
st_rnode *st_rmap_map(st_rnode *map, const char *key);
st_rnode *st_rmap_seq(st_rnode *map, const char *key);
/* Append a new map / string to a sequence. */
st_rnode *st_rseq_add_map(st_rnode *seq);
void st_rseq_add_str(st_rnode *seq, const char *v);

/* Set or replace a scalar at key; a new key goes at the end of the map, a replaced one
 * keeps its position. A NULL v removes the key. */
void st_rmap_str(st_rnode *map, const char *key, const char *v);
void st_rmap_fmt(st_rnode *map, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void st_rmap_int(st_rnode *map, const char *key, long long v);
void st_rmap_uint(st_rnode *map, const char *key, unsigned long long v);
/* A real number, plain (10 significant digits; .nan / .inf / -.inf when not finite). */
void st_rmap_num(st_rnode *map, const char *key, double v);
void st_rmap_bool(st_rnode *map, const char *key, bool v);
/* 0x-prefixed, 8 upper-case hex digits: "0x08000000" (an integer to YAML readers). */
void st_rmap_hex32(st_rnode *map, const char *key, uint32_t v);
/* ISO 8601 UTC with milliseconds (station/core/clock.h st_format_utc). */
void st_rmap_time(st_rnode *map, const char *key, uint64_t wall_us);
/* A duration in milliseconds with 3 decimals, as a number: 1234567 us -> 1234.567 */
void st_rmap_ms(st_rnode *map, const char *key, uint64_t us);
/* Remove key (and its subtree) if present. */
void st_rmap_del(st_rnode *map, const char *key);

/* Append an images[] entry for img to doc's "images" list (created if missing): role,
 * path, size, load_addr, sha256 and sha1_padded (SHA-1 of the data padded with 0xFF to a
 * multiple of 64 bytes, upper-case hex: what Katapult's flashtool prints). Returns the
 * new map, or NULL (doc NULL or out of memory, which also marks doc). */
st_rnode *st_report_add_image(st_rnode *doc, const char *role, const st_image *img);

/* A deep copy of src as a new root (free with st_report_free); NULL when out of memory. */
st_rnode *st_report_copy(const st_rnode *src);
/* Put a deep copy of src at a dotted path of root: the last part is a key of the map the
 * rest names (set or replaced in place), or an index of the list it names (replaced, or
 * appended when it is the list's length). Returns the copy, or NULL when the path does not
 * name such a place (or out of memory, which also marks root). */
st_rnode *st_rput_copy(st_rnode *root, const char *dotted_path, const st_rnode *src);

/* ---- reading ------------------------------------------------------------------------- */

/* Node at a dotted path: "verdict", "unit.dfu_serial", "steps.2.outcome". A part that is
 * a decimal number indexes a sequence (from 0); in a map every part is a key. Keys that
 * contain '.' cannot be reached this way (iterate instead). NULL if absent. An empty path
 * is the root itself. */
const st_rnode *st_rget(const st_rnode *root, const char *dotted_path);
/* Same, for changing a loaded or built document. */
st_rnode *st_rfind(st_rnode *root, const char *dotted_path);
/* Text of the scalar at path (numbers as written, e.g. "0x08000000", "12.500"); NULL if
 * absent or not a scalar. */
const char *st_rget_str(const st_rnode *root, const char *dotted_path);
/* Integer at path (ST_RINT; decimal, 0x-hex or 0o-octal). 0, ST_ERR_NOTFOUND or
 * ST_ERR_INVAL (present but not an integer or out of range). */
int st_rget_int(const st_rnode *root, const char *dotted_path, long long *out);
/* Number at path (ST_RINT or ST_RFLOAT). 0, ST_ERR_NOTFOUND or ST_ERR_INVAL. */
int st_rget_num(const st_rnode *root, const char *dotted_path, double *out);

st_rtype st_rnode_type(const st_rnode *n);
/* Children of a map or sequence (0 for scalars and NULL). */
size_t st_rnode_len(const st_rnode *n);
/* i-th child in order, NULL past the end. */
const st_rnode *st_rnode_child(const st_rnode *n, size_t i);
/* The key under which n sits in its parent map; NULL for sequence items and the root. */
const char *st_rnode_key(const st_rnode *n);
/* Scalar text; NULL for maps and sequences. */
const char *st_rnode_text(const st_rnode *n);

/* ---- files --------------------------------------------------------------------------- */

/* Serialise doc as one YAML document into a new malloc'd NUL-terminated buffer (*out,
 * free() it); *len (optional) gets its length. */
int st_report_emit(const st_rnode *doc, char **out, size_t *len, st_err *err);

/* Write doc to path atomically: serialise in memory, write "<path>.tmp.<pid>" in the same
 * directory, fsync it, rename it over path, fsync the directory. On any failure before
 * the rename the temp file is removed and path is untouched; a failure of the final
 * directory fsync is reported (ST_ERR_IO) although path already holds the new report.
 * One writer per path at a time. */
int st_report_write_atomic(const st_rnode *doc, const char *path, st_err *err);

/* Parse one YAML document whose root is a map, through the project's one YAML reader
 * (station/core/yamldoc.h). name labels errors ("<name>:<line>:<col>: <problem>").
 * Aliases, several documents and nesting deeper than ST_REPORT_DEPTH_MAX are errors; a key
 * that appears twice in a map is an error. Linear in the size of the file: maps index
 * their keys, so 80,000 keys in one map read in well under a second. On success *out is a
 * new root (free with st_report_free). */
int st_report_parse(const char *buf, size_t len, const char *name, st_rnode **out,
                    st_err *err);
/* The same through the general path only (the project's YAML reader, then the model).
 * st_report_parse reads the common case (ASCII, no aliases or duplicates, shallow) in one
 * pass and leaves the rest, errors included, to this; fuzz_report checks that both give
 * the same result. Tests only. */
int st_report_parse_full(const char *buf, size_t len, const char *name, st_rnode **out,
                         st_err *err);
/* st_report_parse on a file. */
int st_report_load(const char *path, st_rnode **out, st_err *err);

/* The slot of a unit that no fixture slot holds (found on a bus). */
#define ST_REPORT_NO_SLOT (-1)

/* Build "<dir>/<identity>_slot<N>_<YYYYmmddTHHMMSS.mmmZ>.yaml" into out ("_noslot_" for
 * ST_REPORT_NO_SLOT), where identity
 * is unit_identity made a safe file-name component (station/core/text.h
 * st_text_filename, at most 64 bytes), so it can never leave dir. Creates dir (mkdir -p,
 * mode 0755) if missing. If the name exists, "-1", "-2", ... is added before ".yaml". The
 * name is not reserved: keep one writer per slot. ST_ERR_INVAL if slot is negative (other than
 * ST_REPORT_NO_SLOT) or out is too small; ST_ERR_IO/ST_ERR_PERM if dir cannot be created. */
int st_report_make_path(const char *dir, const char *unit_identity, int slot,
                        uint64_t wall_us, char *out, size_t cap, st_err *err);

/* Check the schema-1 required fields are present and well typed (SCHEMA.md). The error
 * names the field: "steps.2.outcome: expected pass|fail|skipped|incomplete, got 'maybe'". */
int st_report_validate(const st_rnode *doc, st_err *err);

/* Human summary for `station report show FILE`: verdict, unit, images, a table of steps
 * (name, outcome, attempts, duration, bytes), device errors and the cause. Strings from
 * the report are made printable ASCII. color adds ANSI colours to the verdict and the
 * outcomes. Returns 0 or ST_ERR_IO if writing to out failed. */
int st_report_render(const st_rnode *doc, FILE *out, bool color);

#endif
