/* Reading YAML configuration files (jobs, fixtures) with libyaml's document API, with
 * typed getters whose errors name the file, the line and the field:
 *   jobs/x.yaml:12: steps[2].timeout_ms: expected a non-negative integer, got "soon" */
#ifndef STATION_CORE_YAMLDOC_H
#define STATION_CORE_YAMLDOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct st_ydoc st_ydoc;     /* a loaded file; owns every node */
typedef struct st_ynode st_ynode;   /* a node inside it (opaque) */

/* Load path. Syntax errors name file, line and column. A file with several documents or
 * none is an error. Free with st_ydoc_free. */
int st_ydoc_load(const char *path, st_ydoc **out, st_err *err);
void st_ydoc_free(st_ydoc *doc);
/* The same for text in memory (one document); name stands for the path in errors. */
int st_ydoc_parse(const char *name, const char *text, st_ydoc **out, st_err *err);
const char *st_ydoc_path(const st_ydoc *doc);
const st_ynode *st_ydoc_root(const st_ydoc *doc);

bool st_ynode_is_map(const st_ynode *n);
bool st_ynode_is_seq(const st_ynode *n);
bool st_ynode_is_scalar(const st_ynode *n);
unsigned st_ynode_line(const st_ynode *n); /* 1-based */
unsigned st_ynode_column(const st_ynode *n); /* 1-based */
/* A scalar written quoted, single or double (or as a block): text by intent, never a
 * number or a boolean. */
bool st_ynode_is_quoted(const st_ynode *n);
/* Scalar text (NULL for non-scalars). */
const char *st_ynode_text(const st_ynode *n);

/* Map access; NULL when absent. */
const st_ynode *st_ymap_get(const st_ydoc *doc, const st_ynode *map, const char *key);
size_t st_ymap_len(const st_ydoc *doc, const st_ynode *map);
/* i-th pair; returns the key text (NULL if the key is not a scalar) and sets *value. */
const char *st_ymap_at(const st_ydoc *doc, const st_ynode *map, size_t i, const st_ynode **value);
/* The i-th key node (a scalar, or a map or list when the file used "? [a]: v"). */
const st_ynode *st_ymap_key_at(const st_ydoc *doc, const st_ynode *map, size_t i);
size_t st_yseq_len(const st_ydoc *doc, const st_ynode *seq);
const st_ynode *st_yseq_at(const st_ydoc *doc, const st_ynode *seq, size_t i);

/* Error helper: "<file>:<line>: <field>: <message>". Returns code. */
int st_ydoc_error(const st_ydoc *doc, const st_ynode *at, const char *field, st_err *err,
                  int code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Every key of map must be in allowed (NULL-terminated); the error names the unknown key
 * and lists the allowed ones. field is the map's own path ("steps[2]"). */
int st_ymap_check_keys(const st_ydoc *doc, const st_ynode *map, const char *field,
                       const char *const *allowed, st_err *err);

/* Typed getters. field is the map's path; the key is appended in messages. When the key is
 * absent: with required, an error "missing"; otherwise *out is left unchanged and 0 is
 * returned. */
int st_ymap_get_str(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
                    bool required, const char **out, st_err *err);
/* Decimal or 0x-hex, within [min, max]. */
int st_ymap_get_u64(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
                    bool required, uint64_t min, uint64_t max, uint64_t *out, st_err *err);
int st_ymap_get_u32(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
                    bool required, uint32_t min, uint32_t max, uint32_t *out, st_err *err);
/* true/false/yes/no/on/off */
int st_ymap_get_bool(const st_ydoc *doc, const st_ynode *map, const char *field,
                     const char *key, bool required, bool *out, st_err *err);
/* The value must be a map / a sequence (when present). */
int st_ymap_get_map(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
                    bool required, const st_ynode **out, st_err *err);
int st_ymap_get_seq(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
                    bool required, const st_ynode **out, st_err *err);

/* Parse an unsigned integer scalar (decimal or 0x hex); false on garbage (including leading
 * white space or a sign) or overflow. */
bool st_parse_u64(const char *s, uint64_t *out);
/* The same for 0..0xFFFFFFFF (an address, a seed): full 32-bit range on every build, where a
 * long is only 32 bits (armhf). *out is left alone on failure. */
bool st_parse_u32(const char *s, uint32_t *out);

/* ---- Strict loading and node getters (the fixture file wording) -------------------------
 * Errors read "<file>:<line>: <field>: <message>", or "<file>:<line>: <message>" when field
 * is "" (the top level). A missing node (NULL) is reported at line 1 as "got nothing". */

/* How st_ydoc_load_ex names and limits the file. */
typedef struct st_ydoc_opts {
    const char *kind;       /* "fixture": "cannot open fixture", "not a fixture file", "a
                               fixture file holds one YAML document"; also selects line-only
                               syntax errors ("<file>:<line>: YAML syntax error: ...") */
    long max_bytes;         /* > 0: refuse non-regular files and larger ones before parsing */
    const char *empty_hint; /* an empty file is "<file>:1: empty file: <empty_hint>" */
    bool no_aliases;        /* "*x" is an error ("<file>:<line>:<col>: aliases are not
                               allowed"): a tree where every node is used once */
    unsigned max_depth;     /* nested maps/lists allowed; 0 = 64. Deeper is an error
                               ("nested too deeply"), found before the rest is read */
} st_ydoc_opts;

/* st_ydoc_load with opts (NULL = st_ydoc_load's wording). Free with st_ydoc_free. */
int st_ydoc_load_ex(const char *path, const st_ydoc_opts *opts, st_ydoc **out, st_err *err);
/* The same from len bytes in memory (need not be NUL-terminated); name stands for the file
 * in messages. opts->max_bytes limits len. (st_ydoc_parse: a C string, default opts.) */
int st_ydoc_parse_ex(const char *buf, size_t len, const char *name, const st_ydoc_opts *opts,
                     st_ydoc **out, st_err *err);

/* "steps[2]" + "timeout_ms" -> "steps[2].timeout_ms"; "" + "name" -> "name". Returns buf,
 * truncated to cap. */
const char *st_yfield(char *buf, size_t cap, const char *field, const char *key);

/* Error at node at (NULL: line 1) in the wording above. Returns code. */
int st_ynode_error(const st_ydoc *doc, const st_ynode *at, const char *field, st_err *err,
                   int code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* What the file had, for "got ..." in these messages: "a mapping", "a list", "nothing", or
 * the scalar quoted and printable, cut at 47 characters with "...". Returns buf or a
 * constant; cap >= 56 holds every form. */
const char *st_ynode_shown(const st_ynode *n, char *buf, size_t cap);

/* A plain empty, "~" or "null" scalar. */
bool st_ynode_is_null(const st_ynode *n);

/* n must be a map whose keys are distinct scalars from allowed (NULL-terminated). Errors:
 * "expected a mapping, got ...", "keys must be plain names", "unknown key \"k\" (allowed:
 * a, b)" and "duplicate key \"k\" (first at line N)", at the offending key's line. */
int st_ymap_check_strict(const st_ydoc *doc, const st_ynode *n, const char *field,
                         const char *const *allowed, st_err *err);

/* The value of key in map; absent: "<field>.<key>: missing (required)" at the map's line,
 * or, with required false, *out = NULL and 0. */
int st_ymap_node(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
                 bool required, const st_ynode **out, st_err *err);

/* Node getters; field is the node's own path. On error *out is unchanged. */
/* A non-empty string without control characters or NUL bytes, shorter than cap, copied. */
int st_ynode_str(const st_ydoc *doc, const st_ynode *n, const char *field, char *out,
                 size_t cap, st_err *err);
/* Decimal or 0x-hex in [min, max]: "expected a non-negative integer, got ...", "\"N\" is out
 * of range (at most max)" / "(at least min)". */
int st_ynode_u64(const st_ydoc *doc, const st_ynode *n, const char *field, uint64_t min,
                 uint64_t max, uint64_t *out, st_err *err);
int st_ynode_u32(const st_ydoc *doc, const st_ynode *n, const char *field, uint32_t min,
                 uint32_t max, uint32_t *out, st_err *err);
/* true/false/yes/no/on/off, like st_ymap_get_bool. */
int st_ynode_bool(const st_ydoc *doc, const st_ynode *n, const char *field, bool *out,
                  st_err *err);
/* One of names (NULL-terminated): *out is its index; "expected a or b, got ...". */
int st_ynode_enum(const st_ydoc *doc, const st_ynode *n, const char *field,
                  const char *const *names, int *out, st_err *err);

#endif
