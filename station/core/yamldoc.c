/* YAML configuration reading over libyaml's document API: see yamldoc.h. */
#include "yamldoc.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#include "text.h"

struct st_ydoc {
    char *path;
    yaml_document_t doc;
};

/* st_ynode is yaml_node_t: the opaque type keeps libyaml out of our headers. */
static const yaml_node_t *Y(const st_ynode *n)
{
    return (const yaml_node_t *)n;
}

/* A syntax error in either wording: st_ydoc_load's "<file>:<line>:<col>:", or with a kind
 * (the fixture wording) the line only. */
static int syntax_error(const char *path, const st_ydoc_opts *o, const yaml_parser_t *p,
                        st_err *err)
{
    const char *problem = p->problem ? p->problem : (o->kind ? "unknown problem" : "unknown");
    if (o->kind)
        return st_err_set(err, ST_ERR_INVAL, "%s:%zu: YAML syntax error: %s%s%s", path,
                          p->problem_mark.line + 1, problem, p->context ? " " : "",
                          p->context ? p->context : "");
    return st_err_set(err, ST_ERR_INVAL, "%s:%zu:%zu: YAML syntax error: %s%s%s", path,
                      p->problem_mark.line + 1, p->problem_mark.column + 1, problem,
                      p->context ? " " : "", p->context ? p->context : "");
}

/* After the first document: a second one is an error, and so is a broken one (the header
 * promises one document per file; a syntax error after "---" is not an empty tail). */
static int no_second_document(const char *path, const st_ydoc_opts *o, yaml_parser_t *p,
                              st_err *err)
{
    yaml_document_t extra;
    if (!yaml_parser_load(p, &extra))
        return syntax_error(path, o, p, err);
    int rc = 0;
    const yaml_node_t *root = yaml_document_get_root_node(&extra);
    if (root && o->kind)
        rc = st_err_set(err, ST_ERR_INVAL, "%s:%zu: a %s file holds one YAML document; found a "
                        "second one", path, root->start_mark.line + 1, o->kind);
    else if (root)
        rc = st_err_set(err, ST_ERR_INVAL, "%s:%zu: a second YAML document is not allowed",
                        path, extra.start_mark.line + 1);
    yaml_document_delete(&extra);
    return rc;
}

static int load_stream(const char *path, const st_ydoc_opts *o, FILE *f, st_ydoc **out,
                       st_err *err);

int st_ydoc_load_ex(const char *path, const st_ydoc_opts *opts, st_ydoc **out, st_err *err)
{
    static const st_ydoc_opts plain = { 0 };
    const st_ydoc_opts *o = opts ? opts : &plain;
    FILE *f = fopen(path, "rb");
    if (!f)
        return st_err_set(err, st_err_from_errno(errno), "%s: cannot open%s%s: %s", path,
                          o->kind ? " " : "", o->kind ? o->kind : "", strerror(errno));
    struct stat stt;
    if (o->max_bytes > 0 && fstat(fileno(f), &stt) == 0 &&
        (!S_ISREG(stt.st_mode) || stt.st_size > o->max_bytes)) {
        fclose(f);
        char why[64] = "not a regular file";
        if (S_ISREG(stt.st_mode) && o->max_bytes % (1024 * 1024) == 0)
            snprintf(why, sizeof why, "larger than %ld MiB", o->max_bytes / (1024 * 1024));
        else if (S_ISREG(stt.st_mode))
            snprintf(why, sizeof why, "larger than %ld bytes", o->max_bytes);
        return st_err_set(err, ST_ERR_INVAL, "%s: not a %s file (%s)", path,
                          o->kind ? o->kind : "YAML", why);
    }
    return load_stream(path, o, f, out, err);
}

/* Parse the one document in f (closed here) under the name path. */
static int load_stream(const char *path, const st_ydoc_opts *o, FILE *f, st_ydoc **out,
                       st_err *err)
{
    st_ydoc *d = calloc(1, sizeof *d);
    yaml_parser_t p;
    if (!d || !(d->path = strdup(path)) || !yaml_parser_initialize(&p)) {
        if (d)
            free(d->path);
        free(d);
        fclose(f);
        return st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
    }
    yaml_parser_set_input_file(&p, f);
    int rc = 0;
    if (!yaml_parser_load(&p, &d->doc)) {
        rc = syntax_error(path, o, &p, err);
        yaml_parser_delete(&p);
        fclose(f);
        free(d->path);
        free(d);
        return rc;
    }
    if (!yaml_document_get_root_node(&d->doc)) {
        if (o->empty_hint)
            rc = st_err_set(err, ST_ERR_INVAL, "%s:1: empty file: %s", path, o->empty_hint);
        else
            rc = st_err_set(err, ST_ERR_INVAL, "%s: the file is empty", path);
    } else {
        rc = no_second_document(path, o, &p, err);
    }
    yaml_parser_delete(&p);
    fclose(f);
    if (rc) {
        st_ydoc_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

int st_ydoc_parse(const char *name, const char *text, st_ydoc **out, st_err *err)
{
    static const st_ydoc_opts plain = { 0 };
    FILE *f = fmemopen((void *)text, strlen(text), "rb");
    if (!f)
        return st_err_set(err, st_err_from_errno(errno), "%s: %s", name, strerror(errno));
    return load_stream(name, &plain, f, out, err);
}

int st_ydoc_load(const char *path, st_ydoc **out, st_err *err)
{
    return st_ydoc_load_ex(path, NULL, out, err);
}

void st_ydoc_free(st_ydoc *doc)
{
    if (!doc)
        return;
    yaml_document_delete(&doc->doc);
    free(doc->path);
    free(doc);
}

const char *st_ydoc_path(const st_ydoc *doc)
{
    return doc->path;
}

const st_ynode *st_ydoc_root(const st_ydoc *doc)
{
    return (const st_ynode *)yaml_document_get_root_node((yaml_document_t *)&doc->doc);
}

bool st_ynode_is_map(const st_ynode *n)
{
    return n && Y(n)->type == YAML_MAPPING_NODE;
}

bool st_ynode_is_seq(const st_ynode *n)
{
    return n && Y(n)->type == YAML_SEQUENCE_NODE;
}

bool st_ynode_is_scalar(const st_ynode *n)
{
    return n && Y(n)->type == YAML_SCALAR_NODE;
}

unsigned st_ynode_line(const st_ynode *n)
{
    return n ? (unsigned)Y(n)->start_mark.line + 1 : 0;
}

const char *st_ynode_text(const st_ynode *n)
{
    return st_ynode_is_scalar(n) ? (const char *)Y(n)->data.scalar.value : NULL;
}

static const st_ynode *node_at(const st_ydoc *doc, int id)
{
    return (const st_ynode *)yaml_document_get_node((yaml_document_t *)&doc->doc, id);
}

size_t st_ymap_len(const st_ydoc *doc, const st_ynode *map)
{
    if (!st_ynode_is_map(map))
        return 0;
    return (size_t)(Y(map)->data.mapping.pairs.top - Y(map)->data.mapping.pairs.start);
}

const char *st_ymap_at(const st_ydoc *doc, const st_ynode *map, size_t i, const st_ynode **value)
{
    const yaml_node_pair_t *pr = Y(map)->data.mapping.pairs.start + i;
    *value = node_at(doc, pr->value);
    return st_ynode_text(node_at(doc, pr->key));
}

const st_ynode *st_ymap_get(const st_ydoc *doc, const st_ynode *map, const char *key)
{
    size_t n = st_ymap_len(doc, map);
    for (size_t i = 0; i < n; i++) {
        const st_ynode *v;
        const char *k = st_ymap_at(doc, map, i, &v);
        if (k && strcmp(k, key) == 0)
            return v;
    }
    return NULL;
}

size_t st_yseq_len(const st_ydoc *doc, const st_ynode *seq)
{
    if (!st_ynode_is_seq(seq))
        return 0;
    return (size_t)(Y(seq)->data.sequence.items.top - Y(seq)->data.sequence.items.start);
}

const st_ynode *st_yseq_at(const st_ydoc *doc, const st_ynode *seq, size_t i)
{
    return node_at(doc, Y(seq)->data.sequence.items.start[i]);
}

/* One formatter for both wordings: st_ydoc_error names the top level "(top level)" and a
 * missing node has no line; st_ynode_error leaves both out (line 1 for a missing node). */
static int verror(const st_ydoc *doc, const st_ynode *at, const char *field, bool strict,
                  st_err *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 7, 0)));

static int verror(const st_ydoc *doc, const st_ynode *at, const char *field, bool strict,
                  st_err *err, int code, const char *fmt, va_list ap)
{
    char msg[600];
    vsnprintf(msg, sizeof msg, fmt, ap);
    bool named = field && field[0];
    if (strict)
        return st_err_set(err, code, "%s:%u: %s%s%s", doc->path, at ? st_ynode_line(at) : 1u,
                          named ? field : "", named ? ": " : "", msg);
    if (at)
        return st_err_set(err, code, "%s:%u: %s: %s", doc->path, st_ynode_line(at),
                          named ? field : "(top level)", msg);
    return st_err_set(err, code, "%s: %s: %s", doc->path, named ? field : "(top level)", msg);
}

int st_ydoc_error(const st_ydoc *doc, const st_ynode *at, const char *field, st_err *err,
                  int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = verror(doc, at, field, false, err, code, fmt, ap);
    va_end(ap);
    return rc;
}

int st_ynode_error(const st_ydoc *doc, const st_ynode *at, const char *field, st_err *err,
                   int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = verror(doc, at, field, true, err, code, fmt, ap);
    va_end(ap);
    return rc;
}

const char *st_yfield(char *buf, size_t cap, const char *field, const char *key)
{
    if (field && field[0])
        snprintf(buf, cap, "%s.%s", field, key);
    else
        snprintf(buf, cap, "%s", key);
    return buf;
}

/* Quote a node for "got ..." in messages, bounded and printable. The strict wording
 * (st_ynode_*) calls a map "a mapping" and marks a cut quote with "...". */
static const char *shown_as(const st_ynode *n, bool strict, char *buf, size_t cap)
{
    if (!n)
        return "nothing";
    if (st_ynode_is_map(n))
        return strict ? "a mapping" : "a map";
    if (st_ynode_is_seq(n))
        return "a list";
    const char *s = st_ynode_text(n);
    char p[64];
    size_t width = strict ? 48 : sizeof p;
    st_text_printable(s, p, width);
    snprintf(buf, cap, "\"%s%s\"", p, strict && strlen(s) >= width ? "..." : "");
    return buf;
}

static const char *shown(const st_ynode *n, char *buf, size_t cap)
{
    return shown_as(n, false, buf, cap);
}

/* "a, b, c" (sep ", ") or "a or b" (sep " or "), cut to cap. */
static char *name_list(char *buf, size_t cap, const char *const *names, const char *sep)
{
    buf[0] = '\0';
    for (const char *const *a = names; *a; a++) {
        if (a != names)
            strncat(buf, sep, cap - strlen(buf) - 1);
        strncat(buf, *a, cap - strlen(buf) - 1);
    }
    return buf;
}

int st_ymap_check_keys(const st_ydoc *doc, const st_ynode *map, const char *field,
                       const char *const *allowed, st_err *err)
{
    size_t n = st_ymap_len(doc, map);
    for (size_t i = 0; i < n; i++) {
        const st_ynode *v;
        const char *k = st_ymap_at(doc, map, i, &v);
        bool ok = false;
        for (const char *const *a = allowed; k && *a && !ok; a++)
            ok = strcmp(*a, k) == 0;
        if (!ok) {
            char list[256], kp[64], f[256];
            return st_ydoc_error(doc, v, st_yfield(f, sizeof f, field, st_text_printable(k ? k : "?", kp, sizeof kp)),
                                 err, ST_ERR_INVAL, "unknown key (allowed: %s)",
                                 name_list(list, sizeof list, allowed, ", "));
        }
    }
    return 0;
}

int st_ymap_node(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
                 bool required, const st_ynode **out, st_err *err)
{
    char f[256];
    *out = st_ymap_get(doc, map, key);
    if (!*out && required)
        return st_ydoc_error(doc, map, st_yfield(f, sizeof f, field, key), err, ST_ERR_INVAL,
                             "missing (required)");
    return 0;
}

int st_ymap_get_str(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
                    bool required, const char **out, st_err *err)
{
    const st_ynode *v;
    char f[256], b[80];
    int rc = st_ymap_node(doc, map, field, key, required, &v, err);
    if (rc || !v)
        return rc;
    if (!st_ynode_is_scalar(v))
        return st_ydoc_error(doc, v, st_yfield(f, sizeof f, field, key), err, ST_ERR_INVAL,
                             "expected a string, got %s", shown(v, b, sizeof b));
    *out = st_ynode_text(v);
    return 0;
}

/* 0, or -1 for garbage, or -2 for a well-formed number that does not fit 64 bits (the strict
 * getters call that out of range). strtoull would skip white space and wrap a sign itself. */
static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+' || isspace((unsigned char)*s))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? 16 : 10);
    if (*end || end == s)
        return -1;
    if (errno)
        return -2;
    *out = v;
    return 0;
}

bool st_parse_u64(const char *s, uint64_t *out)
{
    return parse_u64(s, out) == 0;
}

int st_ymap_get_u64(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
                    bool required, uint64_t min, uint64_t max, uint64_t *out, st_err *err)
{
    const st_ynode *v;
    char f[256], b[80];
    int rc = st_ymap_node(doc, map, field, key, required, &v, err);
    if (rc || !v)
        return rc;
    uint64_t x;
    if (!st_ynode_is_scalar(v) || !st_parse_u64(st_ynode_text(v), &x))
        return st_ydoc_error(doc, v, st_yfield(f, sizeof f, field, key), err, ST_ERR_INVAL,
                             "expected a non-negative integer, got %s", shown(v, b, sizeof b));
    if (x < min || x > max)
        return st_ydoc_error(doc, v, st_yfield(f, sizeof f, field, key), err, ST_ERR_INVAL,
                             "%llu is out of range %llu..%llu", (unsigned long long)x,
                             (unsigned long long)min, (unsigned long long)max);
    *out = x;
    return 0;
}

int st_ymap_get_u32(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
                    bool required, uint32_t min, uint32_t max, uint32_t *out, st_err *err)
{
    uint64_t x = *out;
    int rc = st_ymap_get_u64(doc, map, field, key, required, min, max, &x, err);
    if (!rc)
        *out = (uint32_t)x;
    return rc;
}

/* YAML 1.1's words for a boolean, any case. */
static bool parse_bool(const char *t, bool *out)
{
    static const char *const yes[] = { "true", "yes", "on", NULL }, *const no[] = { "false", "no", "off", NULL };
    for (int i = 0; t && yes[i]; i++) {
        if (strcasecmp(t, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(t, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

int st_ymap_get_bool(const st_ydoc *doc, const st_ynode *map, const char *field,
                     const char *key, bool required, bool *out, st_err *err)
{
    const st_ynode *v;
    char f[256], b[80];
    int rc = st_ymap_node(doc, map, field, key, required, &v, err);
    if (rc || !v)
        return rc;
    if (parse_bool(st_ynode_text(v), out))
        return 0;
    return st_ydoc_error(doc, v, st_yfield(f, sizeof f, field, key), err, ST_ERR_INVAL,
                         "expected true or false, got %s", shown(v, b, sizeof b));
}

int st_ymap_get_map(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
                    bool required, const st_ynode **out, st_err *err)
{
    const st_ynode *v;
    char f[256], b[80];
    int rc = st_ymap_node(doc, map, field, key, required, &v, err);
    if (rc || !v)
        return rc;
    if (!st_ynode_is_map(v))
        return st_ydoc_error(doc, v, st_yfield(f, sizeof f, field, key), err, ST_ERR_INVAL,
                             "expected a map, got %s", shown(v, b, sizeof b));
    *out = v;
    return 0;
}

int st_ymap_get_seq(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
                    bool required, const st_ynode **out, st_err *err)
{
    const st_ynode *v;
    char f[256], b[80];
    int rc = st_ymap_node(doc, map, field, key, required, &v, err);
    if (rc || !v)
        return rc;
    if (!st_ynode_is_seq(v))
        return st_ydoc_error(doc, v, st_yfield(f, sizeof f, field, key), err, ST_ERR_INVAL,
                             "expected a list, got %s", shown(v, b, sizeof b));
    *out = v;
    return 0;
}

/* ---- strict node getters (fixture wording) ---------------------------------------------- */

const char *st_ynode_shown(const st_ynode *n, char *buf, size_t cap)
{
    return shown_as(n, true, buf, cap);
}

bool st_ynode_is_null(const st_ynode *n)
{
    if (!st_ynode_is_scalar(n) || Y(n)->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = st_ynode_text(n);
    return !s[0] || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

int st_ymap_check_strict(const st_ydoc *doc, const st_ynode *n, const char *field,
                         const char *const *allowed, st_err *err)
{
    char g[64];
    if (!st_ynode_is_map(n))
        return st_ynode_error(doc, n, field, err, ST_ERR_INVAL, "expected a mapping, got %s",
                              shown_as(n, true, g, sizeof g));
    const yaml_node_pair_t *first = Y(n)->data.mapping.pairs.start;
    size_t len = st_ymap_len(doc, n);
    for (size_t i = 0; i < len; i++) {
        const st_ynode *k = node_at(doc, first[i].key);
        if (!st_ynode_is_scalar(k))
            return st_ynode_error(doc, k, field, err, ST_ERR_INVAL,
                                  "keys must be plain names, got %s", shown_as(k, true, g, sizeof g));
        const char *key = st_ynode_text(k);
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(key, *a) == 0;
        char kk[48];
        if (!ok) {
            char list[300];
            return st_ynode_error(doc, k, field, err, ST_ERR_INVAL,
                                  "unknown key \"%s\" (allowed: %s)",
                                  st_text_printable(key, kk, sizeof kk),
                                  name_list(list, sizeof list, allowed, ", "));
        }
        for (size_t j = 0; j < i; j++) {
            const st_ynode *k2 = node_at(doc, first[j].key);
            if (st_ynode_is_scalar(k2) && strcmp(st_ynode_text(k2), key) == 0)
                return st_ynode_error(doc, k, field, err, ST_ERR_INVAL,
                                      "duplicate key \"%s\" (first at line %u)",
                                      st_text_printable(key, kk, sizeof kk), st_ynode_line(k2));
        }
    }
    return 0;
}

int st_ynode_str(const st_ydoc *doc, const st_ynode *n, const char *field, char *out,
                 size_t cap, st_err *err)
{
    char g[64];
    if (!st_ynode_is_scalar(n) || st_ynode_is_null(n))
        return st_ynode_error(doc, n, field, err, ST_ERR_INVAL,
                              "expected a non-empty string, got %s", shown_as(n, true, g, sizeof g));
    const char *s = st_ynode_text(n);
    size_t len = strlen(s);
    if (!len)
        return st_ynode_error(doc, n, field, err, ST_ERR_INVAL,
                              "expected a non-empty string, got \"\"");
    /* "\0" in a double-quoted scalar: C would see a shorter string than the file holds. */
    if (Y(n)->data.scalar.length != len)
        return st_ynode_error(doc, n, field, err, ST_ERR_INVAL, "contains a NUL byte");
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return st_ynode_error(doc, n, field, err, ST_ERR_INVAL, "contains control characters");
    if (len >= cap)
        return st_ynode_error(doc, n, field, err, ST_ERR_INVAL,
                              "too long (%zu characters, at most %zu)", len, cap - 1);
    memcpy(out, s, len + 1);
    return 0;
}

int st_ynode_u64(const st_ydoc *doc, const st_ynode *n, const char *field, uint64_t min,
                 uint64_t max, uint64_t *out, st_err *err)
{
    char g[64];
    uint64_t v = 0;
    int p = st_ynode_is_scalar(n) ? parse_u64(st_ynode_text(n), &v) : -1;
    if (p == -1)
        return st_ynode_error(doc, n, field, err, ST_ERR_INVAL,
                              "expected a non-negative integer, got %s", shown_as(n, true, g, sizeof g));
    if (p == -2 || v > max)
        return st_ynode_error(doc, n, field, err, ST_ERR_INVAL, "%s is out of range (at most %llu)",
                              shown_as(n, true, g, sizeof g), (unsigned long long)max);
    if (v < min)
        return st_ynode_error(doc, n, field, err, ST_ERR_INVAL, "%s is out of range (at least %llu)",
                              shown_as(n, true, g, sizeof g), (unsigned long long)min);
    *out = v;
    return 0;
}

int st_ynode_u32(const st_ydoc *doc, const st_ynode *n, const char *field, uint32_t min,
                 uint32_t max, uint32_t *out, st_err *err)
{
    uint64_t v;
    int rc = st_ynode_u64(doc, n, field, min, max, &v, err);
    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

int st_ynode_bool(const st_ydoc *doc, const st_ynode *n, const char *field, bool *out,
                  st_err *err)
{
    char g[64];
    if (parse_bool(st_ynode_text(n), out))
        return 0;
    return st_ynode_error(doc, n, field, err, ST_ERR_INVAL, "expected true or false, got %s",
                          shown_as(n, true, g, sizeof g));
}

int st_ynode_enum(const st_ydoc *doc, const st_ynode *n, const char *field,
                  const char *const *names, int *out, st_err *err)
{
    const char *t = st_ynode_text(n);
    for (int i = 0; t && names[i]; i++) {
        if (strcmp(t, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    char list[200], g[64];
    return st_ynode_error(doc, n, field, err, ST_ERR_INVAL, "expected %s, got %s",
                          name_list(list, sizeof list, names, " or "), shown_as(n, true, g, sizeof g));
}
