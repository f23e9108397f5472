/* YAML configuration reading over libyaml's document API: see yamldoc.h. */
#include "yamldoc.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
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

#define DEFAULT_MAX_DEPTH 64

/* An error at a mark in either wording: "<file>:<line>:<col>: what", or the line only
 * with a kind (the fixture wording). */
static int mark_error(const char *path, const st_ydoc_opts *o, yaml_mark_t m, st_err *err,
                      const char *what)
{
    if (o->kind)
        return st_err_set(err, ST_ERR_INVAL, "%s:%zu: %s", path, m.line + 1, what);
    return st_err_set(err, ST_ERR_INVAL, "%s:%zu:%zu: %s", path, m.line + 1, m.column + 1, what);
}

typedef struct anchor {
    char *name;
    int id;
} anchor;

/* Builds the document from parser events. */
typedef struct builder {
    const char *path;
    const st_ydoc_opts *o;
    yaml_parser_t *p;
    yaml_document_t *doc;
    unsigned max_depth;
    int *stack;       /* open containers' node ids */
    int *pending_key; /* per open mapping: its key read, value not yet (0: none) */
    unsigned depth;
    anchor *anchors;
    size_t nanchors, capanchors;
    st_err *err;
} builder;

static int nomem(const builder *b)
{
    return st_err_set(b->err, ST_ERR_NOMEM, "%s: out of memory", b->path);
}

static int parse_event(builder *b, yaml_event_t *ev)
{
    if (yaml_parser_parse(b->p, ev))
        return 0;
    if (b->p->error == YAML_MEMORY_ERROR)
        return nomem(b);
    return syntax_error(b->path, b->o, b->p, b->err);
}

static int remember_anchor(builder *b, const yaml_char_t *name, int id)
{
    if (!name)
        return 0;
    if (b->nanchors == b->capanchors) {
        size_t cap = b->capanchors ? b->capanchors * 2 : 8;
        anchor *na = realloc(b->anchors, cap * sizeof *na);
        if (!na)
            return nomem(b);
        b->anchors = na;
        b->capanchors = cap;
    }
    char *copy = strdup((const char *)name);
    if (!copy)
        return nomem(b);
    b->anchors[b->nanchors++] = (anchor){ copy, id };
    return 0;
}

/* Put node id where it belongs: the root, an item of the open sequence, or the key or the
 * value of the open mapping. */
static int place(builder *b, int id)
{
    if (!b->depth)
        return 0; /* the root: node 1 */
    int parent = b->stack[b->depth - 1];
    const yaml_node_t *pn = b->doc->nodes.start + parent - 1;
    int ok;
    if (pn->type == YAML_SEQUENCE_NODE) {
        ok = yaml_document_append_sequence_item(b->doc, parent, id);
    } else if (!b->pending_key[b->depth - 1]) {
        b->pending_key[b->depth - 1] = id;
        ok = 1;
    } else {
        ok = yaml_document_append_mapping_pair(b->doc, parent, b->pending_key[b->depth - 1], id);
        b->pending_key[b->depth - 1] = 0;
    }
    return ok ? 0 : nomem(b);
}

static void set_marks(builder *b, int id, const yaml_event_t *ev)
{
    yaml_node_t *n = b->doc->nodes.start + id - 1;
    n->start_mark = ev->start_mark;
    n->end_mark = ev->end_mark;
}

static const yaml_char_t *tag_or(const yaml_char_t *tag, const char *dflt)
{
    return !tag || strcmp((const char *)tag, "!") == 0 ? (const yaml_char_t *)dflt : tag;
}

/* One event inside the first document, as libyaml's own loader treats it. Returns 0, 1
 * when the document is complete, or a negative code. */
static int build_event(builder *b, const yaml_event_t *ev)
{
    int id = 0, rc;
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        if (b->o->no_aliases)
            return mark_error(b->path, b->o, ev->start_mark, b->err, "aliases are not allowed");
        for (size_t i = b->nanchors; i-- > 0;) {
            if (strcmp(b->anchors[i].name, (const char *)ev->data.alias.anchor) == 0) {
                id = b->anchors[i].id;
                break;
            }
        }
        if (!id)
            return mark_error(b->path, b->o, ev->start_mark, b->err, "undefined alias");
        return place(b, id);
    case YAML_SCALAR_EVENT:
        id = yaml_document_add_scalar(b->doc, tag_or(ev->data.scalar.tag, YAML_DEFAULT_SCALAR_TAG),
                                      ev->data.scalar.value, (int)ev->data.scalar.length,
                                      ev->data.scalar.style);
        if (!id)
            return nomem(b);
        set_marks(b, id, ev);
        rc = remember_anchor(b, ev->data.scalar.anchor, id);
        return rc ? rc : place(b, id);
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        /* Stop before the parser walks a deep nest: libyaml's work per token grows with
         * the depth, so 200,000 '[' took minutes. */
        if (b->depth >= b->max_depth) {
            char what[80];
            snprintf(what, sizeof what, "nested too deeply (more than %u levels)", b->max_depth);
            return mark_error(b->path, b->o, ev->start_mark, b->err, what);
        }
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        if (seq)
            id = yaml_document_add_sequence(
                b->doc, tag_or(ev->data.sequence_start.tag, YAML_DEFAULT_SEQUENCE_TAG),
                ev->data.sequence_start.style);
        else
            id = yaml_document_add_mapping(
                b->doc, tag_or(ev->data.mapping_start.tag, YAML_DEFAULT_MAPPING_TAG),
                ev->data.mapping_start.style);
        if (!id)
            return nomem(b);
        set_marks(b, id, ev);
        rc = remember_anchor(b, seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor,
                             id);
        if (!rc)
            rc = place(b, id);
        if (rc)
            return rc;
        b->stack[b->depth] = id;
        b->pending_key[b->depth] = 0;
        b->depth++;
        return 0;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (b->depth) {
            b->depth--;
            b->doc->nodes.start[b->stack[b->depth] - 1].end_mark = ev->end_mark;
        }
        return 0;
    case YAML_DOCUMENT_END_EVENT:
        return 1;
    default:
        return 0;
    }
}

/* After the first document a second one is an error, and so is a broken one (the header
 * promises one document per file; a syntax error after "---" is not an empty tail): read
 * it to its end, then name it at its root node with a kind, at its "---" without. */
static int second_document(builder *b, const yaml_event_t *start)
{
    yaml_mark_t doc_mark = start->start_mark, root_mark = start->end_mark;
    bool have_root = false;
    unsigned depth = 0;
    for (;;) {
        yaml_event_t ev;
        int rc = parse_event(b, &ev);
        if (rc)
            return rc;
        yaml_event_type_t t = ev.type;
        if (!have_root && t != YAML_DOCUMENT_END_EVENT) {
            root_mark = ev.start_mark;
            have_root = true;
        }
        if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT)
            depth++;
        else if ((t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) && depth)
            depth--;
        yaml_event_delete(&ev);
        if (t == YAML_DOCUMENT_END_EVENT || t == YAML_STREAM_END_EVENT || depth > b->max_depth)
            break;
    }
    if (b->o->kind)
        return st_err_set(b->err, ST_ERR_INVAL, "%s:%zu: a %s file holds one YAML document; "
                          "found a second one", b->path, root_mark.line + 1, b->o->kind);
    return st_err_set(b->err, ST_ERR_INVAL, "%s:%zu: a second YAML document is not allowed",
                      b->path, doc_mark.line + 1);
}

/* Build the document from parser events rather than with yaml_parser_load, so that depth
 * and aliases are refused as they are read, at their place. *has_root: the stream held a
 * document with a node. */
static int build(builder *b, bool *has_root)
{
    bool in_doc = false, done = false, started = false;
    int rc = 0;
    while (!rc) {
        yaml_event_t ev;
        rc = parse_event(b, &ev);
        if (rc)
            break;
        yaml_event_type_t t = ev.type;
        if (t == YAML_DOCUMENT_START_EVENT) {
            if (done) {
                rc = second_document(b, &ev);
            } else if (!yaml_document_initialize(b->doc, NULL, NULL, NULL, 1, 1)) {
                rc = nomem(b);
            } else {
                in_doc = true;
                started = true;
            }
        } else if (in_doc) {
            rc = build_event(b, &ev);
            if (rc == 1) {
                rc = 0;
                in_doc = false;
                done = true;
            }
        }
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT)
            break;
    }
    if (!started && !yaml_document_initialize(b->doc, NULL, NULL, NULL, 1, 1) && !rc)
        rc = nomem(b); /* so st_ydoc_free always has a document to delete */
    *has_root = yaml_document_get_root_node(b->doc) != NULL;
    return rc;
}

static const st_ynode *node_at(const st_ydoc *doc, int id);

/* What a non-regular file is, for the refusal. */
static const char *file_type(mode_t m)
{
    if (S_ISFIFO(m))
        return "a FIFO";
    if (S_ISCHR(m))
        return "a character device";
    if (S_ISBLK(m))
        return "a block device";
    if (S_ISSOCK(m))
        return "a socket";
    return "not a regular file";
}

/* Open path for reading without blocking on a FIFO (open(2) of a FIFO waits for a writer:
 * `station run /tmp/fifo` hung forever), and refuse anything but a regular file of at most
 * max bytes, before any byte is read. */
static int open_config(const char *path, const st_ydoc_opts *o, long max, FILE **out,
                       st_err *err)
{
    const char *kind = o->kind ? o->kind : "YAML";
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return st_err_set(err, st_err_from_errno(errno), "%s: cannot open%s%s: %s", path,
                          o->kind ? " " : "", o->kind ? o->kind : "", strerror(errno));
    struct stat stt;
    int rc = 0;
    if (fstat(fd, &stt) != 0)
        rc = st_err_set(err, st_err_from_errno(errno), "%s: %s", path, strerror(errno));
    else if (S_ISDIR(stt.st_mode))
        rc = st_err_set(err, ST_ERR_INVAL, "%s: is a directory, not a %s file", path, kind);
    else if (!S_ISREG(stt.st_mode))
        rc = st_err_set(err, ST_ERR_INVAL, "%s: not a %s file (%s)", path, kind,
                        file_type(stt.st_mode));
    else if (stt.st_size > max && max % (1024 * 1024) == 0)
        rc = st_err_set(err, ST_ERR_INVAL, "%s: not a %s file (larger than %ld MiB)", path, kind,
                        max / (1024 * 1024));
    else if (stt.st_size > max)
        rc = st_err_set(err, ST_ERR_INVAL, "%s: not a %s file (larger than %ld bytes)", path,
                        kind, max);
    FILE *f = NULL;
    if (!rc && (fcntl(fd, F_SETFL, 0) != 0 || !(f = fdopen(fd, "rb"))))
        rc = st_err_set(err, st_err_from_errno(errno), "%s: %s", path, strerror(errno));
    if (rc) {
        close(fd);
        return rc;
    }
    *out = f;
    return 0;
}

/* ---- duplicate keys, in every map of every config file ---------------------------------- */

typedef struct dupkey {
    const char *text;
    size_t index;
    unsigned line;
} dupkey;

static int dupkey_cmp(const void *a, const void *b)
{
    const dupkey *x = a, *y = b;
    int c = strcmp(x->text, y->text);
    return c ? c : (x->index < y->index ? -1 : x->index > y->index);
}

#define WALK_DEPTH_MAX 64

/* Where walk_dups is: a chain up to the root on its stack. The field path text
 * ("steps[2].attempt_log") is only built when there is an error to report: building it for
 * every node cost more than the walk itself (report summary reads 100,000 files). */
typedef struct walk_at {
    const struct walk_at *up;
    const char *key; /* a map's key, or NULL for a list item */
    size_t index;
} walk_at;

static void walk_field(const walk_at *at, char *buf, size_t cap)
{
    if (!at) {
        buf[0] = '\0';
        return;
    }
    char up[256];
    walk_field(at->up, up, sizeof up);
    if (!at->key) {
        snprintf(buf, cap, "%s[%zu]", up, at->index);
    } else {
        char kp[64];
        st_yfield(buf, cap, up, st_text_printable(at->key, kp, sizeof kp));
    }
}

/* Refuse a map with two equal scalar keys, anywhere in the document ("duplicate key "k"
 * (first at line N)" at the second one, with the map's field path), as PyYAML would have
 * silently taken the last and libyaml's document API keeps both. Each node is checked once
 * (aliases share nodes: no blow-up), and nesting is bounded. */
static int walk_dups(const st_ydoc *d, int id, const walk_at *at, unsigned depth,
                     unsigned char *seen, st_err *err)
{
    const yaml_node_t *n = yaml_document_get_node((yaml_document_t *)&d->doc, id);
    if (!n || seen[id])
        return 0;
    seen[id] = 1;
    char field[256];
    if (depth > WALK_DEPTH_MAX) {
        walk_field(at, field, sizeof field);
        return st_ynode_error(d, (const st_ynode *)n, field, err, ST_ERR_INVAL,
                              "nested more than %d levels deep", WALK_DEPTH_MAX);
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        size_t len = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
        for (size_t i = 0; i < len; i++) {
            walk_at sub = { at, NULL, i };
            int rc = walk_dups(d, n->data.sequence.items.start[i], &sub, depth + 1, seen, err);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (n->type != YAML_MAPPING_NODE)
        return 0;
    const yaml_node_pair_t *pairs = n->data.mapping.pairs.start;
    size_t len = (size_t)(n->data.mapping.pairs.top - pairs), nk = 0;
    /* Small maps (nearly all of them) compare their keys pairwise on the stack; big ones
     * sort a copy. */
    dupkey small[16];
    dupkey *keys = len <= 16 ? small : calloc(len, sizeof *keys);
    if (!keys)
        return st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", d->path);
    for (size_t i = 0; i < len; i++) {
        const st_ynode *k = node_at(d, pairs[i].key);
        if (st_ynode_is_scalar(k))
            keys[nk++] = (dupkey){ st_ynode_text(k), i, st_ynode_line(k) };
    }
    const dupkey *first = NULL, *second = NULL;
    if (len <= 16) {
        /* The earliest second occurrence, and the first one of its key. */
        for (size_t i = 1; i < nk && !second; i++)
            for (size_t j = 0; j < i; j++)
                if (strcmp(keys[i].text, keys[j].text) == 0) {
                    first = &keys[j];
                    second = &keys[i];
                    break;
                }
    } else {
        if (nk > 1)
            qsort(keys, nk, sizeof *keys, dupkey_cmp);
        for (size_t i = 1; i < nk; i++) {
            if (strcmp(keys[i].text, keys[i - 1].text) != 0 || (i >= 2 && !strcmp(keys[i].text, keys[i - 2].text)))
                continue;
            if (!second || keys[i].index < second->index) {
                first = &keys[i - 1];
                second = &keys[i];
            }
        }
    }
    int rc = 0;
    if (second) {
        char kk[48];
        walk_field(at, field, sizeof field);
        rc = st_ynode_error(d, node_at(d, pairs[second->index].key), field, err, ST_ERR_INVAL,
                            "duplicate key \"%s\" (first at line %u)",
                            st_text_printable(second->text, kk, sizeof kk), first->line);
    }
    for (size_t i = 0; rc == 0 && i < len; i++) {
        const char *kt = st_ynode_text(node_at(d, pairs[i].key));
        walk_at sub = { at, kt ? kt : "?", 0 };
        rc = walk_dups(d, pairs[i].value, &sub, depth + 1, seen, err);
    }
    if (keys != small)
        free(keys);
    return rc;
}

static int check_dups(const st_ydoc *d, st_err *err)
{
    size_t nodes = (size_t)(d->doc.nodes.top - d->doc.nodes.start);
    unsigned char *seen = calloc(nodes + 2, 1);
    if (!seen)
        return st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", d->path);
    int rc = walk_dups(d, 1, NULL, 0, seen, err); /* node ids start at 1: the root */
    free(seen);
    return rc;
}

/* Config files are a few KiB; a bigger one is the wrong file. */
#define CONFIG_MAX_BYTES (1024L * 1024L)


/* Load one document from f, or from buf/len when f is NULL. */
static int load_input(const char *path, const st_ydoc_opts *o, FILE *f, const char *buf,
                      size_t len, st_ydoc **out, st_err *err)
{
    st_ydoc *d = calloc(1, sizeof *d);
    yaml_parser_t p;
    builder b = { .path = path, .o = o, .p = &p, .err = err,
                  .max_depth = o->max_depth ? o->max_depth : DEFAULT_MAX_DEPTH };
    b.stack = calloc(b.max_depth + 1, sizeof *b.stack);
    b.pending_key = calloc(b.max_depth + 1, sizeof *b.pending_key);
    if (!d || !b.stack || !b.pending_key || !(d->path = strdup(path)) ||
        !yaml_parser_initialize(&p)) {
        if (d)
            free(d->path);
        free(d);
        free(b.stack);
        free(b.pending_key);
        return st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
    }
    if (f)
        yaml_parser_set_input_file(&p, f);
    else
        yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    b.doc = &d->doc;
    bool has_root = false;
    int rc = build(&b, &has_root);
    if (!rc && !has_root) {
        if (o->empty_hint)
            rc = st_err_set(err, ST_ERR_INVAL, "%s:1: empty file: %s", path, o->empty_hint);
        else
            rc = st_err_set(err, ST_ERR_INVAL, "%s: the file is empty", path);
    }
    if (!rc)
        rc = check_dups(d, err);
    yaml_parser_delete(&p);
    for (size_t i = 0; i < b.nanchors; i++)
        free(b.anchors[i].name);
    free(b.anchors);
    free(b.stack);
    free(b.pending_key);
    if (rc) {
        st_ydoc_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

int st_ydoc_load_ex(const char *path, const st_ydoc_opts *opts, st_ydoc **out, st_err *err)
{
    static const st_ydoc_opts plain = { 0 };
    const st_ydoc_opts *o = opts ? opts : &plain;
    FILE *f = NULL;
    int rc = open_config(path, o, o->max_bytes > 0 ? o->max_bytes : CONFIG_MAX_BYTES, &f, err);
    if (rc)
        return rc;
    rc = load_input(path, o, f, NULL, 0, out, err);
    fclose(f);
    return rc;
}

int st_ydoc_parse_ex(const char *buf, size_t len, const char *name, const st_ydoc_opts *opts,
                     st_ydoc **out, st_err *err)
{
    static const st_ydoc_opts plain = { 0 };
    const st_ydoc_opts *o = opts ? opts : &plain;
    if (o->max_bytes > 0 && len > (size_t)o->max_bytes)
        return st_err_set(err, ST_ERR_INVAL, "%s: not a %s file (larger than %ld bytes)", name,
                          o->kind ? o->kind : "YAML", o->max_bytes);
    return load_input(name, o, NULL, buf ? buf : "", len, out, err);
}

int st_ydoc_parse(const char *name, const char *text, st_ydoc **out, st_err *err)
{
    return st_ydoc_parse_ex(text, strlen(text), name, NULL, out, err);
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

unsigned st_ynode_column(const st_ynode *n)
{
    return n ? (unsigned)Y(n)->start_mark.column + 1 : 0;
}

bool st_ynode_is_quoted(const st_ynode *n)
{
    return st_ynode_is_scalar(n) && Y(n)->data.scalar.style != YAML_PLAIN_SCALAR_STYLE &&
           Y(n)->data.scalar.style != YAML_ANY_SCALAR_STYLE;
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

const st_ynode *st_ymap_key_at(const st_ydoc *doc, const st_ynode *map, size_t i)
{
    return node_at(doc, (Y(map)->data.mapping.pairs.start + i)->key);
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
    /* Sized so that the quotes and "..." still fit the callers' 64-byte buffers. */
    char p[56];
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

bool st_parse_u32(const char *s, uint32_t *out)
{
    uint64_t v;
    if (parse_u64(s, &v) != 0 || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
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
    uint64_t v = 0;
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
