/* YAML configuration reading over libyaml's document API: see yamldoc.h. */
#include "yamldoc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

int st_ydoc_load(const char *path, st_ydoc **out, st_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return st_err_set(err, st_err_from_errno(errno), "%s: cannot open: %s", path,
                          strerror(errno));
    st_ydoc *d = calloc(1, sizeof *d);
    if (!d || !(d->path = strdup(path))) {
        free(d);
        fclose(f);
        return st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
    }
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    int rc = 0;
    if (!yaml_parser_load(&p, &d->doc)) {
        rc = st_err_set(err, ST_ERR_INVAL, "%s:%zu:%zu: YAML syntax error: %s%s%s", path,
                        p.problem_mark.line + 1, p.problem_mark.column + 1,
                        p.problem ? p.problem : "unknown", p.context ? " " : "",
                        p.context ? p.context : "");
        yaml_parser_delete(&p);
        fclose(f);
        free(d->path);
        free(d);
        return rc;
    }
    if (!yaml_document_get_root_node(&d->doc)) {
        rc = st_err_set(err, ST_ERR_INVAL, "%s: the file is empty", path);
    } else {
        yaml_document_t extra;
        if (yaml_parser_load(&p, &extra)) {
            if (yaml_document_get_root_node(&extra))
                rc = st_err_set(err, ST_ERR_INVAL, "%s:%zu: a second YAML document is not allowed",
                                path, extra.start_mark.line + 1);
            yaml_document_delete(&extra);
        }
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

int st_ydoc_error(const st_ydoc *doc, const st_ynode *at, const char *field, st_err *err,
                  int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (at)
        return st_err_set(err, code, "%s:%u: %s: %s", doc->path, st_ynode_line(at),
                          field && field[0] ? field : "(top level)", msg);
    return st_err_set(err, code, "%s: %s: %s", doc->path, field && field[0] ? field : "(top level)",
                      msg);
}

/* "steps[2]" + "timeout_ms" -> "steps[2].timeout_ms" */
static const char *join(char *buf, size_t cap, const char *field, const char *key)
{
    if (field && field[0])
        snprintf(buf, cap, "%s.%s", field, key);
    else
        snprintf(buf, cap, "%s", key);
    return buf;
}

/* Quote a scalar for an error message, bounded and printable. */
static const char *shown(const st_ynode *n, char *buf, size_t cap)
{
    if (st_ynode_is_map(n))
        return "a map";
    if (st_ynode_is_seq(n))
        return "a list";
    char p[64];
    st_text_printable(st_ynode_text(n), p, sizeof p);
    snprintf(buf, cap, "\"%s\"", p);
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
            char list[256] = "", kp[64];
            for (const char *const *a = allowed; *a; a++) {
                if (list[0])
                    strncat(list, ", ", sizeof list - strlen(list) - 1);
                strncat(list, *a, sizeof list - strlen(list) - 1);
            }
            char f[256];
            return st_ydoc_error(doc, v, join(f, sizeof f, field, st_text_printable(k ? k : "?", kp, sizeof kp)),
                                 err, ST_ERR_INVAL, "unknown key (allowed: %s)", list);
        }
    }
    return 0;
}

static int get(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
               bool required, const st_ynode **out, st_err *err)
{
    char f[256];
    *out = st_ymap_get(doc, map, key);
    if (!*out && required)
        return st_ydoc_error(doc, map, join(f, sizeof f, field, key), err, ST_ERR_INVAL,
                             "missing (required)");
    return 0;
}

int st_ymap_get_str(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
                    bool required, const char **out, st_err *err)
{
    const st_ynode *v;
    char f[256], b[80];
    int rc = get(doc, map, field, key, required, &v, err);
    if (rc || !v)
        return rc;
    if (!st_ynode_is_scalar(v))
        return st_ydoc_error(doc, v, join(f, sizeof f, field, key), err, ST_ERR_INVAL,
                             "expected a string, got %s", shown(v, b, sizeof b));
    *out = st_ynode_text(v);
    return 0;
}

bool st_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? 16 : 10);
    if (errno || *end || end == s)
        return false;
    *out = v;
    return true;
}

int st_ymap_get_u64(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
                    bool required, uint64_t min, uint64_t max, uint64_t *out, st_err *err)
{
    const st_ynode *v;
    char f[256], b[80];
    int rc = get(doc, map, field, key, required, &v, err);
    if (rc || !v)
        return rc;
    uint64_t x;
    if (!st_ynode_is_scalar(v) || !st_parse_u64(st_ynode_text(v), &x))
        return st_ydoc_error(doc, v, join(f, sizeof f, field, key), err, ST_ERR_INVAL,
                             "expected a non-negative integer, got %s", shown(v, b, sizeof b));
    if (x < min || x > max)
        return st_ydoc_error(doc, v, join(f, sizeof f, field, key), err, ST_ERR_INVAL,
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

int st_ymap_get_bool(const st_ydoc *doc, const st_ynode *map, const char *field,
                     const char *key, bool required, bool *out, st_err *err)
{
    const st_ynode *v;
    char f[256], b[80];
    int rc = get(doc, map, field, key, required, &v, err);
    if (rc || !v)
        return rc;
    const char *t = st_ynode_text(v);
    static const char *const yes[] = { "true", "yes", "on", NULL }, *const no[] = { "false", "no", "off", NULL };
    for (int i = 0; t && yes[i]; i++) {
        if (strcasecmp(t, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(t, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return st_ydoc_error(doc, v, join(f, sizeof f, field, key), err, ST_ERR_INVAL,
                         "expected true or false, got %s", shown(v, b, sizeof b));
}

int st_ymap_get_map(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
                    bool required, const st_ynode **out, st_err *err)
{
    const st_ynode *v;
    char f[256], b[80];
    int rc = get(doc, map, field, key, required, &v, err);
    if (rc || !v)
        return rc;
    if (!st_ynode_is_map(v))
        return st_ydoc_error(doc, v, join(f, sizeof f, field, key), err, ST_ERR_INVAL,
                             "expected a map, got %s", shown(v, b, sizeof b));
    *out = v;
    return 0;
}

int st_ymap_get_seq(const st_ydoc *doc, const st_ynode *map, const char *field, const char *key,
                    bool required, const st_ynode **out, st_err *err)
{
    const st_ynode *v;
    char f[256], b[80];
    int rc = get(doc, map, field, key, required, &v, err);
    if (rc || !v)
        return rc;
    if (!st_ynode_is_seq(v))
        return st_ydoc_error(doc, v, join(f, sizeof f, field, key), err, ST_ERR_INVAL,
                             "expected a list, got %s", shown(v, b, sizeof b));
    *out = v;
    return 0;
}
