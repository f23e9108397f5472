/* Per-unit YAML reports: document model, libyaml emitter/parser, atomic write, file
 * names. Validation and rendering live in report_check.c. See report.h. */
#include "reports/report.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <yaml.h>

#include "station/core/clock.h"
#include "station/core/digest.h"
#include "station/core/text.h"
#include "station/core/yamldoc.h"

/* Reports are a few KiB; anything past this on load is not a report. */
#define REPORT_FILE_MAX (16u * 1024u * 1024u)
/* Longest identity kept in a file name, so the name stays far below NAME_MAX (255). */
#define IDENTITY_NAME_MAX 64

struct st_rnode {
    st_rtype type;
    bool plain;      /* scalar emitted as a plain scalar (numbers, trusted formats) */
    bool oom;        /* root only: an allocation failed while building */
    bool inline_str; /* key and text live in the node's own allocation (the reader's) */
    char *key;       /* key in the parent map, NULL otherwise */
    char *text;      /* scalar text */
    st_rnode *parent;
    st_rnode **kids;
    size_t n, cap;
    /* Maps with many keys: open-addressing table of kids indices + 1 (0 = empty), so a
     * lookup does not compare the key with every other one (issue 7: the reader was
     * quadratic in the number of keys). NULL below INDEX_FROM keys. */
    uint32_t *index;
    size_t index_cap; /* a power of two, at least twice n */
};

#define INDEX_FROM 16

/* ---- untrusted text ------------------------------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), or 0 if s does not start one. s is NUL-terminated, so the
 * continuation checks stop at the terminator. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned char lo = 0x80, hi = 0xbf;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        if (c == 0xed)
            hi = 0x9f; /* surrogates */
        if (s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80)
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned char lo = 0x80, hi = 0xbf;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
        if (s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

static bool is_ascii(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80)
            return false;
    return true;
}

/* Copy s as valid UTF-8 (bad bytes become '?'), at most ST_REPORT_STR_MAX bytes. */
static char *clean_dup(const char *s)
{
    if (!s)
        s = "";
    size_t in_len = strnlen(s, ST_REPORT_STR_MAX * 4u);
    size_t cap = in_len < ST_REPORT_STR_MAX ? in_len : ST_REPORT_STR_MAX;
    char *out = malloc(cap + 1);
    if (!out)
        return NULL;
    /* Nearly every string is short ASCII, which is already clean: one copy (report
     * summary reads every key and value of 100,000 files through here). */
    if (in_len <= cap && is_ascii(s, in_len)) {
        memcpy(out, s, in_len + 1);
        return out;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < in_len) {
        size_t l = utf8_len(p + i);
        if (l == 0 || i + l > in_len) {
            if (o + 1 > cap)
                break;
            out[o++] = '?';
            i++;
            continue;
        }
        if (o + l > cap)
            break;
        memcpy(out + o, p + i, l);
        o += l;
        i += l;
    }
    out[o] = '\0';
    return out;
}

/* ---- nodes --------------------------------------------------------------------------- */

static st_rnode *node_new(st_rtype type)
{
    st_rnode *n = calloc(1, sizeof(*n));
    if (n)
        n->type = type;
    return n;
}

static void node_free(st_rnode *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        node_free(n->kids[i]);
    free(n->kids);
    free(n->index);
    if (!n->inline_str) {
        free(n->key);
        free(n->text);
    }
    free(n);
}

/* A node, its key (NULL for none) and its text (NULL for a container) in one allocation:
 * the reader makes about 300 per report, and `report summary` reads 100,000 reports. Both
 * strings must already be clean (ASCII is: clean_dup would copy it unchanged). */
static st_rnode *node_new_inline(st_rtype type, const char *key, size_t klen, const char *text,
                                 size_t tlen)
{
    size_t size = sizeof(st_rnode) + (key ? klen + 1 : 0) + (text ? tlen + 1 : 0);
    st_rnode *n = malloc(size);
    if (!n)
        return NULL;
    memset(n, 0, sizeof *n);
    n->type = type;
    n->inline_str = true;
    char *p = (char *)(n + 1);
    if (key) {
        memcpy(p, key, klen);
        p[klen] = '\0';
        n->key = p;
        p += klen + 1;
    }
    if (text) {
        memcpy(p, text, tlen);
        p[tlen] = '\0';
        n->text = p;
    }
    return n;
}

static void mark_oom(st_rnode *n)
{
    while (n && n->parent)
        n = n->parent;
    if (n)
        n->oom = true;
}

static bool is_container(const st_rnode *n)
{
    return n && (n->type == ST_RMAP || n->type == ST_RSEQ);
}

/* FNV-1a over the key's bytes. */
static size_t key_hash(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211u;
    }
    return (size_t)h;
}

static void index_put(st_rnode *map, size_t i)
{
    const char *k = map->kids[i]->key ? map->kids[i]->key : "";
    size_t mask = map->index_cap - 1;
    size_t at = key_hash(k, strlen(k)) & mask;
    while (map->index[at])
        at = (at + 1) & mask;
    map->index[at] = (uint32_t)(i + 1);
}

/* (Re)build the index of a map from its kids; keeps none below INDEX_FROM keys. Returns
 * ST_ERR_NOMEM (the map then has no index and lookups scan, which is slow but right). */
static int index_rebuild(st_rnode *map)
{
    free(map->index);
    map->index = NULL;
    map->index_cap = 0;
    if (map->type != ST_RMAP || map->n < INDEX_FROM || map->n >= UINT32_MAX / 4)
        return 0;
    size_t cap = 64;
    while (cap < map->n * 2 + 2)
        cap *= 2;
    map->index = calloc(cap, sizeof *map->index);
    if (!map->index)
        return ST_ERR_NOMEM;
    map->index_cap = cap;
    for (size_t i = 0; i < map->n; i++)
        index_put(map, i);
    return 0;
}

static int node_append(st_rnode *parent, st_rnode *child)
{
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 8;
        st_rnode **k = realloc(parent->kids, cap * sizeof(*k));
        if (!k)
            return ST_ERR_NOMEM;
        parent->kids = k;
        parent->cap = cap;
    }
    parent->kids[parent->n++] = child;
    child->parent = parent;
    if (parent->type == ST_RMAP && parent->n >= INDEX_FROM) {
        if (parent->index && parent->index_cap >= parent->n * 2 + 2)
            index_put(parent, parent->n - 1);
        else
            (void)index_rebuild(parent); /* grows in steps of 2x: linear overall */
    }
    return 0;
}

static long map_index(const st_rnode *map, const char *key, size_t key_len)
{
    if (map->index) {
        size_t mask = map->index_cap - 1;
        for (size_t at = key_hash(key, key_len) & mask; map->index[at]; at = (at + 1) & mask) {
            const char *k = map->kids[map->index[at] - 1]->key;
            if (k && strlen(k) == key_len && memcmp(k, key, key_len) == 0)
                return (long)(map->index[at] - 1);
        }
        return -1;
    }
    /* Small maps: the first byte rules out nearly every other key without a strlen. */
    for (size_t i = 0; i < map->n; i++) {
        const char *k = map->kids[i]->key;
        if (k && key_len && k[0] == key[0] && strncmp(k, key, key_len) == 0 && k[key_len] == '\0')
            return (long)i;
        if (k && !key_len && !k[0])
            return (long)i;
    }
    return -1;
}

/* Put child at key (replacing any old child in its position); takes child. */
static st_rnode *map_put(st_rnode *map, const char *key, st_rnode *child)
{
    char *k = clean_dup(key);
    if (!k) {
        node_free(child);
        mark_oom(map);
        return NULL;
    }
    long at = map_index(map, k, strlen(k));
    child->key = k;
    if (at >= 0) {
        node_free(map->kids[at]);
        map->kids[at] = child;
        child->parent = map;
        return child;
    }
    if (node_append(map, child) != 0) {
        node_free(child);
        mark_oom(map);
        return NULL;
    }
    return child;
}

static st_rnode *map_child(st_rnode *map, const char *key)
{
    char *k = clean_dup(key);
    if (!k) {
        mark_oom(map);
        return NULL;
    }
    long at = map_index(map, k, strlen(k));
    free(k);
    return at >= 0 ? map->kids[at] : NULL;
}

static st_rnode *get_or_create(st_rnode *map, const char *key, st_rtype type)
{
    if (!map || map->type != ST_RMAP)
        return NULL;
    st_rnode *old = map_child(map, key);
    if (old && old->type == type)
        return old;
    st_rnode *n = node_new(type);
    if (!n) {
        mark_oom(map);
        return NULL;
    }
    return map_put(map, key, n);
}

st_rnode *st_rmap_map(st_rnode *map, const char *key)
{
    return get_or_create(map, key, ST_RMAP);
}

st_rnode *st_rmap_seq(st_rnode *map, const char *key)
{
    return get_or_create(map, key, ST_RSEQ);
}

st_rnode *st_rseq_add_map(st_rnode *seq)
{
    if (!seq || seq->type != ST_RSEQ)
        return NULL;
    st_rnode *n = node_new(ST_RMAP);
    if (!n || node_append(seq, n) != 0) {
        free(n);
        mark_oom(seq);
        return NULL;
    }
    return n;
}

static st_rnode *scalar_new(st_rtype type, bool plain, const char *text)
{
    st_rnode *n = node_new(type);
    if (!n)
        return NULL;
    n->plain = plain;
    n->text = clean_dup(text);
    if (!n->text) {
        free(n);
        return NULL;
    }
    return n;
}

void st_rseq_add_str(st_rnode *seq, const char *v)
{
    if (!seq || seq->type != ST_RSEQ)
        return;
    st_rnode *n = scalar_new(ST_RSTR, false, v);
    if (!n || node_append(seq, n) != 0) {
        node_free(n);
        mark_oom(seq);
    }
}

static void set_scalar(st_rnode *map, const char *key, st_rtype type, bool plain,
                       const char *text)
{
    if (!map || map->type != ST_RMAP)
        return;
    st_rnode *n = scalar_new(type, plain, text);
    if (!n) {
        mark_oom(map);
        return;
    }
    map_put(map, key, n);
}

void st_rmap_str(st_rnode *map, const char *key, const char *v)
{
    if (!v) {
        st_rmap_del(map, key);
        return;
    }
    set_scalar(map, key, ST_RSTR, false, v);
}

void st_rmap_fmt(st_rnode *map, const char *key, const char *fmt, ...)
{
    if (!map)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0) {
        mark_oom(map);
        return;
    }
    set_scalar(map, key, ST_RSTR, false, s);
    free(s);
}

void st_rmap_int(st_rnode *map, const char *key, long long v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", v);
    set_scalar(map, key, ST_RINT, true, buf);
}

void st_rmap_num(st_rnode *map, const char *key, double v)
{
    char buf[40];
    if (isnan(v))
        snprintf(buf, sizeof(buf), ".nan");
    else if (isinf(v))
        snprintf(buf, sizeof(buf), "%s", v < 0 ? "-.inf" : ".inf");
    else
        snprintf(buf, sizeof(buf), "%.10g", v);
    set_scalar(map, key, ST_RFLOAT, true, buf);
}

void st_rmap_uint(st_rnode *map, const char *key, unsigned long long v)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%llu", v);
    set_scalar(map, key, ST_RINT, true, buf);
}

void st_rmap_bool(st_rnode *map, const char *key, bool v)
{
    set_scalar(map, key, ST_RBOOL, true, v ? "true" : "false");
}

void st_rmap_hex32(st_rnode *map, const char *key, uint32_t v)
{
    char buf[16];
    snprintf(buf, sizeof(buf), "0x%08" PRIX32, v);
    set_scalar(map, key, ST_RINT, true, buf);
}

void st_rmap_time(st_rnode *map, const char *key, uint64_t wall_us)
{
    char buf[32];
    st_format_utc(wall_us, buf, sizeof(buf));
    set_scalar(map, key, ST_RSTR, true, buf);
}

void st_rmap_ms(st_rnode *map, const char *key, uint64_t us)
{
    char buf[40];
    snprintf(buf, sizeof(buf), "%llu.%03u", (unsigned long long)(us / 1000u),
             (unsigned)(us % 1000u));
    set_scalar(map, key, ST_RFLOAT, true, buf);
}

void st_rmap_del(st_rnode *map, const char *key)
{
    if (!map || map->type != ST_RMAP)
        return;
    char *k = clean_dup(key);
    if (!k) {
        mark_oom(map);
        return;
    }
    long at = map_index(map, k, strlen(k));
    free(k);
    if (at < 0)
        return;
    node_free(map->kids[at]);
    memmove(&map->kids[at], &map->kids[at + 1], (map->n - (size_t)at - 1) * sizeof(*map->kids));
    map->n--;
    if (map->index && index_rebuild(map) != 0)
        mark_oom(map); /* lookups still work (by scanning); the writer refuses the report */
}

st_rnode *st_report_new(void)
{
    st_rnode *root = node_new(ST_RMAP);
    if (!root)
        return NULL;
    st_rmap_int(root, "schema", ST_REPORT_SCHEMA);
    if (root->oom) {
        node_free(root);
        return NULL;
    }
    return root;
}

void st_report_free(st_rnode *doc)
{
    node_free(doc);
}

st_rnode *st_report_add_image(st_rnode *doc, const char *role, const st_image *img)
{
    if (!img)
        return NULL;
    st_rnode *m = st_rseq_add_map(st_rmap_seq(doc, "images"));
    if (!m)
        return NULL;
    st_rmap_str(m, "role", role);
    st_rmap_str(m, "path", img->path);
    st_rmap_uint(m, "size", img->size);
    st_rmap_hex32(m, "load_addr", img->load_addr);
    char hex[2 * ST_SHA256_LEN + 1];
    st_hex(img->sha256, ST_SHA256_LEN, false, hex);
    st_rmap_str(m, "sha256", hex);
    /* Katapult sends 64-byte blocks, the last one padded with 0xFF, and hashes what it
     * sent (protocols.md 2.4, flashtool.py); operators compare this line. Computed once
     * per image and shared by the units of the job. */
    uint8_t sum[ST_SHA1_LEN];
    if (st_image_padded_digests(img, 64, sum, NULL) != 0) {
        mark_oom(doc);
        return NULL;
    }
    char sha1[2 * ST_SHA1_LEN + 1];
    st_hex(sum, sizeof sum, true, sha1);
    st_rmap_str(m, "sha1_padded", sha1);
    return m;
}

/* ---- copies ------------------------------------------------------------------------------ */

static st_rnode *find_clean(st_rnode *root, const char *p);

/* Deep copy of src (its key is not copied). NULL when out of memory. */
static st_rnode *node_copy(const st_rnode *src)
{
    st_rnode *n = node_new(src->type);
    if (!n)
        return NULL;
    n->plain = src->plain;
    if (src->text && !(n->text = strdup(src->text)))
        goto oom;
    for (size_t i = 0; i < src->n; i++) {
        st_rnode *c = node_copy(src->kids[i]);
        if (!c)
            goto oom;
        if (src->kids[i]->key && !(c->key = strdup(src->kids[i]->key))) {
            node_free(c);
            goto oom;
        }
        if (node_append(n, c) != 0) {
            node_free(c);
            goto oom;
        }
    }
    return n;
oom:
    node_free(n);
    return NULL;
}

st_rnode *st_report_copy(const st_rnode *src)
{
    return src ? node_copy(src) : NULL;
}

st_rnode *st_rput_copy(st_rnode *root, const char *path, const st_rnode *src)
{
    if (!root || !path || !*path || !src)
        return NULL;
    char *p = clean_dup(path);
    if (!p) {
        mark_oom(root);
        return NULL;
    }
    char *last = strrchr(p, '.');
    st_rnode *parent = root;
    const char *key = p;
    if (last) {
        *last = '\0';
        parent = find_clean(root, p);
        key = last + 1;
    }
    st_rnode *out = NULL;
    if (parent && parent->type == ST_RMAP && *key) {
        st_rnode *c = node_copy(src);
        if (!c)
            mark_oom(root);
        else
            out = map_put(parent, key, c);
    } else if (parent && parent->type == ST_RSEQ && *key && strlen(key) <= 9 &&
               strspn(key, "0123456789") == strlen(key)) {
        size_t idx = (size_t)strtoul(key, NULL, 10);
        st_rnode *c = idx <= parent->n ? node_copy(src) : NULL;
        if (idx <= parent->n && !c) {
            mark_oom(root);
        } else if (c && idx < parent->n) {
            node_free(parent->kids[idx]);
            parent->kids[idx] = c;
            c->parent = parent;
            out = c;
        } else if (c) {
            if (node_append(parent, c) != 0) {
                node_free(c);
                mark_oom(root);
            } else {
                out = c;
            }
        }
    }
    free(p);
    return out;
}

/* ---- reading the model --------------------------------------------------------------- */

/* Walk a path already cleaned like the keys it is compared with. */
static st_rnode *find_clean(st_rnode *root, const char *p)
{
    st_rnode *n = root;
    if (!*p)
        return n;
    while (n) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (n->type == ST_RMAP) {
            long at = map_index(n, p, len);
            n = at >= 0 ? n->kids[at] : NULL;
        } else if (n->type == ST_RSEQ) {
            if (len == 0 || len > 9 || strspn(p, "0123456789") < len)
                return NULL;
            size_t idx = 0;
            for (size_t i = 0; i < len; i++)
                idx = idx * 10 + (size_t)(p[i] - '0');
            n = idx < n->n ? n->kids[idx] : NULL;
        } else {
            return NULL;
        }
        if (!dot)
            return n;
        p = dot + 1;
    }
    return NULL;
}

st_rnode *st_rfind(st_rnode *root, const char *path)
{
    if (!root)
        return NULL;
    /* A short ASCII path is its own cleaned form: no copy (the schema check and the
     * summary look up every field of every report). */
    size_t len = strnlen(path, ST_REPORT_STR_MAX);
    if (len < ST_REPORT_STR_MAX && is_ascii(path, len))
        return find_clean(root, path);
    char *p = clean_dup(path);
    if (!p)
        return NULL;
    st_rnode *n = find_clean(root, p);
    free(p);
    return n;
}

const st_rnode *st_rget(const st_rnode *root, const char *path)
{
    return st_rfind((st_rnode *)root, path);
}

const char *st_rget_str(const st_rnode *root, const char *path)
{
    const st_rnode *n = st_rget(root, path);
    return n && !is_container(n) ? n->text : NULL;
}

static int parse_int(const char *t, long long *out)
{
    const char *p = t;
    bool neg = false;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    int base = 10;
    if (p[0] == '0' && p[1] == 'x') {
        base = 16;
        p += 2;
    } else if (p[0] == '0' && p[1] == 'o') {
        base = 8;
        p += 2;
    }
    if (!*p || *p == '+' || *p == '-' || *p == ' ')
        return ST_ERR_INVAL;
    errno = 0;
    char *end = NULL;
    unsigned long long u = strtoull(p, &end, base);
    if (errno || *end)
        return ST_ERR_INVAL;
    if (!neg && u > (unsigned long long)LLONG_MAX)
        return ST_ERR_INVAL;
    if (neg && u > (unsigned long long)LLONG_MAX + 1u)
        return ST_ERR_INVAL;
    if (neg)
        *out = u == (unsigned long long)LLONG_MAX + 1u ? LLONG_MIN : -(long long)u;
    else
        *out = (long long)u;
    return 0;
}

int st_rget_int(const st_rnode *root, const char *path, long long *out)
{
    const st_rnode *n = st_rget(root, path);
    if (!n)
        return ST_ERR_NOTFOUND;
    if (n->type != ST_RINT)
        return ST_ERR_INVAL;
    long long v;
    if (parse_int(n->text, &v) != 0)
        return ST_ERR_INVAL;
    if (out)
        *out = v;
    return 0;
}

int st_rget_num(const st_rnode *root, const char *path, double *out)
{
    const st_rnode *n = st_rget(root, path);
    if (!n)
        return ST_ERR_NOTFOUND;
    double v;
    if (n->type == ST_RINT) {
        long long i;
        if (parse_int(n->text, &i) != 0)
            return ST_ERR_INVAL;
        v = (double)i;
    } else if (n->type == ST_RFLOAT) {
        const char *t = n->text;
        const char *u = (*t == '+' || *t == '-') ? t + 1 : t;
        if (u[0] == '.' && (u[1] == 'i' || u[1] == 'I'))
            v = *t == '-' ? -HUGE_VAL : HUGE_VAL;
        else if (u[0] == '.' && (u[1] == 'n' || u[1] == 'N'))
            v = NAN;
        else {
            char *end = NULL;
            errno = 0;
            v = strtod(t, &end);
            if (*end)
                return ST_ERR_INVAL;
        }
    } else {
        return ST_ERR_INVAL;
    }
    if (out)
        *out = v;
    return 0;
}

st_rtype st_rnode_type(const st_rnode *n)
{
    return n ? n->type : ST_RNULL;
}

size_t st_rnode_len(const st_rnode *n)
{
    return is_container(n) ? n->n : 0;
}

const st_rnode *st_rnode_child(const st_rnode *n, size_t i)
{
    return is_container(n) && i < n->n ? n->kids[i] : NULL;
}

const char *st_rnode_key(const st_rnode *n)
{
    return n ? n->key : NULL;
}

const char *st_rnode_text(const st_rnode *n)
{
    return n && !is_container(n) ? n->text : NULL;
}

/* ---- YAML 1.2 core-schema resolution of plain scalars ---------------------------------- */

static bool all_of(const char *s, const char *set)
{
    return *s && strspn(s, set) == strlen(s);
}

static bool is_float_text(const char *t)
{
    const char *p = (*t == '+' || *t == '-') ? t + 1 : t;
    if (!strcmp(p, ".inf") || !strcmp(p, ".Inf") || !strcmp(p, ".INF"))
        return true;
    if (p == t && (!strcmp(t, ".nan") || !strcmp(t, ".NaN") || !strcmp(t, ".NAN")))
        return true;
    size_t intd = strspn(p, "0123456789");
    p += intd;
    size_t fracd = 0;
    if (*p == '.') {
        p++;
        fracd = strspn(p, "0123456789");
        p += fracd;
    } else if (intd == 0) {
        return false;
    }
    if (intd == 0 && fracd == 0)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        size_t ed = strspn(p, "0123456789");
        if (!ed)
            return false;
        p += ed;
    }
    return *p == '\0';
}

static st_rtype resolve_plain(const char *t)
{
    /* Most plain scalars are words (pass, enter-bootloader, libgpiod): one that starts with
     * a letter no null, boolean or number starts with is a string. */
    char c0 = t[0];
    if (((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z')) && !strchr("nNtTfF", c0))
        return ST_RSTR;
    if (!*t || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") ||
        !strcmp(t, "NULL"))
        return ST_RNULL;
    if (!strcmp(t, "true") || !strcmp(t, "True") || !strcmp(t, "TRUE") ||
        !strcmp(t, "false") || !strcmp(t, "False") || !strcmp(t, "FALSE"))
        return ST_RBOOL;
    const char *p = (*t == '+' || *t == '-') ? t + 1 : t;
    if (all_of(p, "0123456789"))
        return ST_RINT;
    if (t[0] == '0' && t[1] == 'x' && all_of(t + 2, "0123456789abcdefABCDEF"))
        return ST_RINT;
    if (t[0] == '0' && t[1] == 'o' && all_of(t + 2, "01234567"))
        return ST_RINT;
    if (is_float_text(t))
        return ST_RFLOAT;
    return ST_RSTR;
}

/* A string that a YAML 1.1 or 1.2 reader could take for something else when plain
 * (numbers, sexagesimals, timestamps, yes/no/on/off, null) must be quoted. */
static bool needs_quotes(const char *t)
{
    static const char *const words[] = { "y", "n", "yes", "no", "on", "off", "true",
                                         "false", "null" };
    if (!*t || strchr("0123456789+-.~", t[0]))
        return true;
    if (resolve_plain(t) != ST_RSTR)
        return true;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (!strcasecmp(t, words[i]))
            return true;
    return false;
}

/* ---- emitting -------------------------------------------------------------------------- */

struct membuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static int membuf_write(void *data, unsigned char *buf, size_t size)
{
    struct membuf *m = data;
    if (m->len + size + 1 > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < m->len + size + 1)
            cap *= 2;
        char *p = realloc(m->p, cap);
        if (!p) {
            m->oom = true;
            return 0;
        }
        m->p = p;
        m->cap = cap;
    }
    memcpy(m->p + m->len, buf, size);
    m->len += size;
    m->p[m->len] = '\0';
    return 1;
}

static int emit_scalar(yaml_emitter_t *em, const char *text, bool plain)
{
    yaml_event_t ev;
    int quote = !plain && needs_quotes(text);
    /* plain_implicit=0 makes libyaml quote the scalar; quoted_implicit=1 lets it pick
     * single or double quotes (double, with escapes, for control bytes and non-ASCII). */
    /* Line breaks and control bytes go double-quoted as escapes, so every value stays on
     * its key's line (libyaml would otherwise fold them into a multi-line single-quoted
     * scalar: valid, but it defeats grep). */
    yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text),
                                      !quote, 1, style))
        return -1;
    return yaml_emitter_emit(em, &ev) ? 0 : -1;
}

static int emit_node(yaml_emitter_t *em, const st_rnode *n)
{
    yaml_event_t ev;
    if (n->type == ST_RMAP) {
        if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) ||
            !yaml_emitter_emit(em, &ev))
            return -1;
        for (size_t i = 0; i < n->n; i++) {
            if (emit_scalar(em, n->kids[i]->key ? n->kids[i]->key : "", false) != 0 ||
                emit_node(em, n->kids[i]) != 0)
                return -1;
        }
        if (!yaml_mapping_end_event_initialize(&ev) || !yaml_emitter_emit(em, &ev))
            return -1;
        return 0;
    }
    if (n->type == ST_RSEQ) {
        if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                  YAML_BLOCK_SEQUENCE_STYLE) ||
            !yaml_emitter_emit(em, &ev))
            return -1;
        for (size_t i = 0; i < n->n; i++)
            if (emit_node(em, n->kids[i]) != 0)
                return -1;
        if (!yaml_sequence_end_event_initialize(&ev) || !yaml_emitter_emit(em, &ev))
            return -1;
        return 0;
    }
    return emit_scalar(em, n->text ? n->text : "", n->plain);
}

int st_report_emit(const st_rnode *doc, char **out, size_t *len, st_err *err)
{
    if (!doc || !out || doc->type != ST_RMAP)
        return st_err_set(err, ST_ERR_INVAL, "report: no document to write");
    if (doc->oom)
        return st_err_set(err, ST_ERR_NOMEM,
                          "report: out of memory while building the report");
    struct membuf m = { 0 };
    yaml_emitter_t em;
    yaml_event_t ev;
    if (!yaml_emitter_initialize(&em))
        return st_err_set(err, ST_ERR_NOMEM, "report: cannot start the YAML emitter");
    yaml_emitter_set_output(&em, membuf_write, &m);
    yaml_emitter_set_unicode(&em, 0); /* escape all non-ASCII: reports stay ASCII */
    yaml_emitter_set_width(&em, -1);  /* no folding of long values */
    yaml_emitter_set_indent(&em, 2);
    int ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) &&
             yaml_emitter_emit(&em, &ev) &&
             yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) &&
             yaml_emitter_emit(&em, &ev) && emit_node(&em, doc) == 0 &&
             yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&em, &ev) &&
             yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&em, &ev) &&
             yaml_emitter_flush(&em);
    int rc = 0;
    if (!ok) {
        rc = m.oom || em.error == YAML_MEMORY_ERROR
                 ? st_err_set(err, ST_ERR_NOMEM, "report: out of memory while emitting YAML")
                 : st_err_set(err, ST_ERR_INVAL, "report: YAML emitter: %s",
                              em.problem ? em.problem : "unknown error");
        free(m.p);
    } else {
        *out = m.p;
        if (len)
            *len = m.len;
    }
    yaml_emitter_delete(&em);
    return rc;
}

/* ---- atomic write ---------------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        st_strlcpy(dir, ".", sizeof(dir));
    else if (slash == path)
        st_strlcpy(dir, "/", sizeof(dir));
    else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof(dir)) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    /* Some file systems cannot fsync a directory; the rename is still as durable as the
     * file system allows. */
    return (r < 0 && errno != EINVAL && errno != EROFS) ? -1 : 0;
}

int st_report_write_atomic(const st_rnode *doc, const char *path, st_err *err)
{
    if (!path || !*path)
        return st_err_set(err, ST_ERR_INVAL, "report: no path");
    char *buf = NULL;
    size_t len = 0;
    int rc = st_report_emit(doc, &buf, &len, err);
    if (rc != 0) {
        st_err_prefix(err, "%s", path);
        return rc;
    }

    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        free(buf);
        return st_err_set(err, ST_ERR_INVAL, "%s: path too long", path);
    }
    const char *what = "create";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST) {
        /* A stale temp file of a dead process that had our pid: ours to replace. */
        unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    }
    if (fd < 0)
        goto fail_noclean;
    what = "write";
    if (write_all(fd, buf, len) != 0)
        goto fail;
    what = "fsync";
    if (fsync(fd) != 0)
        goto fail;
    what = "close";
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    what = "rename";
    if (rename(tmp, path) != 0)
        goto fail;
    free(buf);
    if (fsync_dir_of(path) != 0) {
        int e = errno;
        return st_err_set(err, st_err_from_errno(e), "%s: fsync directory: %s", path,
                          strerror(e));
    }
    return 0;

fail: {
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    errno = e;
}
fail_noclean: {
    int e = errno;
    free(buf);
    return st_err_set(err, st_err_from_errno(e), "%s: %s %s: %s", path, what, tmp,
                      strerror(e));
}
}

/* ---- parsing --------------------------------------------------------------------------- */

/* The file is read by station/core/yamldoc (the one YAML reader of the project: libyaml's
 * loader, one document, no aliases); here its tree becomes report nodes, with the report's
 * own rules: a map at the root, plain string keys, no duplicate key, bounded depth, and
 * YAML 1.2 core-schema types for plain scalars. */

/* "<name>:<line>:<col>: <what>" at node at. */
static int perr(st_err *err, const char *name, const st_ynode *at, int code, const char *what)
{
    return st_err_set(err, code, "%s:%u:%u: %s", name, st_ynode_line(at), st_ynode_column(at),
                      what);
}

typedef struct pctx {
    const st_ydoc *doc;
    const char *name;
    st_err *err;
} pctx;

/* Convert y into a new node (*out); depth counts the containers above it. */
/* A short ASCII string is already clean: its length, else (size_t)-1. */
static size_t clean_len(const char *s)
{
    if (!s)
        return (size_t)-1;
    size_t l = strnlen(s, ST_REPORT_STR_MAX);
    return l < ST_REPORT_STR_MAX && is_ascii(s, l) ? l : (size_t)-1;
}

/* The node for y, keyed key (a clean string, or NULL in a list). */
static int convert(const pctx *c, const st_ynode *y, const char *key, unsigned depth,
                   st_rnode **out)
{
    *out = NULL;
    size_t klen = key ? strlen(key) : 0;
    if (st_ynode_is_scalar(y)) {
        const char *raw = st_ynode_text(y);
        bool quoted = st_ynode_is_quoted(y);
        size_t tlen = clean_len(raw);
        st_rnode *v;
        if (tlen != (size_t)-1) {
            v = node_new_inline(quoted ? ST_RSTR : resolve_plain(raw), key, klen, raw, tlen);
        } else {
            char *text = clean_dup(raw);
            char *k = key ? strdup(key) : NULL;
            v = text && (k || !key) ? node_new(quoted ? ST_RSTR : resolve_plain(text)) : NULL;
            if (v) {
                v->text = text;
                v->key = k;
            } else {
                free(text);
                free(k);
            }
        }
        if (!v)
            return perr(c->err, c->name, y, ST_ERR_NOMEM, "out of memory");
        v->plain = !quoted;
        *out = v;
        return 0;
    }
    bool is_map = st_ynode_is_map(y);
    if (depth >= ST_REPORT_DEPTH_MAX)
        return perr(c->err, c->name, y, ST_ERR_INVAL, "nested too deeply");
    st_rnode *v = node_new_inline(is_map ? ST_RMAP : ST_RSEQ, key, klen, NULL, 0);
    if (!v)
        return perr(c->err, c->name, y, ST_ERR_NOMEM, "out of memory");
    size_t n = is_map ? st_ymap_len(c->doc, y) : st_yseq_len(c->doc, y);
    /* The list of kids at its final size at once. */
    if (n && n < SIZE_MAX / sizeof(st_rnode *)) {
        v->kids = malloc(n * sizeof *v->kids);
        if (!v->kids) {
            node_free(v);
            return perr(c->err, c->name, y, ST_ERR_NOMEM, "out of memory");
        }
        v->cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        const st_ynode *item;
        char *kbuf = NULL;
        const char *k = NULL;
        const st_ynode *at = y;
        if (is_map) {
            const st_ynode *ky = st_ymap_key_at(c->doc, y, i);
            at = ky;
            st_ymap_at(c->doc, y, i, &item);
            if (!st_ynode_is_scalar(ky)) {
                node_free(v);
                return perr(c->err, c->name, ky, ST_ERR_INVAL, "a key must be a plain string");
            }
            k = st_ynode_text(ky);
            if (clean_len(k) == (size_t)-1) {
                k = kbuf = clean_dup(k);
                if (!kbuf) {
                    node_free(v);
                    return perr(c->err, c->name, ky, ST_ERR_NOMEM, "out of memory");
                }
            }
            if (map_index(v, k, strlen(k)) >= 0) {
                char safe[96], msg[128];
                st_text_printable(k, safe, sizeof(safe));
                snprintf(msg, sizeof(msg), "duplicate key '%s'", safe);
                free(kbuf);
                node_free(v);
                return perr(c->err, c->name, ky, ST_ERR_INVAL, msg);
            }
        } else {
            item = st_yseq_at(c->doc, y, i);
        }
        st_rnode *kid;
        int rc = convert(c, item, k, depth + 1, &kid);
        free(kbuf);
        if (rc) {
            node_free(v);
            return rc;
        }
        if (node_append(v, kid) != 0) {
            node_free(kid);
            node_free(v);
            return perr(c->err, c->name, at, ST_ERR_NOMEM, "out of memory");
        }
    }
    *out = v;
    return 0;
}

/* The common case in one pass over libyaml's events, straight into nodes: one document
 * whose root is a map, no alias, no duplicate key, short ASCII keys and values, shallow.
 * Anything else (a syntax error included) returns 1 and st_report_parse takes the full
 * path (yamldoc, then convert), which gives the same tree for what this accepts and the
 * one wording of every error; fuzz_report holds the two to the same result. This halves
 * the cost of reading a report (`report summary` reads 100,000): no libyaml document to
 * build and free, no second walk for duplicate keys. 0 and *out, or 1. */
static int parse_fast(const char *buf, size_t len, st_rnode **out)
{
    enum { DEPTH = 16 }; /* reports nest 4 deep; deeper ones take the full path */
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return 1;
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    st_rnode *stack[DEPTH], *root = NULL;
    yaml_event_t key[DEPTH]; /* a map's key event, kept until its value arrives */
    bool has_key[DEPTH];
    unsigned depth = 0, docs = 0;
    bool ok = false, fail = false;
    while (!fail && !ok) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev))
            break;
        bool keep = false;
        switch (ev.type) {
        case YAML_DOCUMENT_START_EVENT:
            fail = docs++ > 0;
            break;
        case YAML_STREAM_END_EVENT:
            ok = root && depth == 0;
            fail = !ok;
            break;
        case YAML_ALIAS_EVENT:
            fail = true;
            break;
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            st_rnode *parent = depth ? stack[depth - 1] : NULL;
            bool scalar = ev.type == YAML_SCALAR_EVENT;
            if (!parent && (root || ev.type != YAML_MAPPING_START_EVENT)) {
                fail = true; /* the root is not a map (or a second root) */
                break;
            }
            if (parent && parent->type == ST_RMAP && !has_key[depth - 1]) {
                const char *k = (const char *)ev.data.scalar.value;
                if (!scalar || strlen(k) != ev.data.scalar.length ||
                    clean_len(k) == (size_t)-1 || map_index(parent, k, strlen(k)) >= 0) {
                    fail = true; /* not a plain short ASCII key, or a duplicate */
                    break;
                }
                key[depth - 1] = ev;
                has_key[depth - 1] = keep = true;
                break;
            }
            const char *k = parent && parent->type == ST_RMAP
                                ? (const char *)key[depth - 1].data.scalar.value
                                : NULL;
            size_t klen = k ? strlen(k) : 0;
            st_rnode *n;
            if (scalar) {
                const char *t = (const char *)ev.data.scalar.value;
                size_t tl = clean_len(t);
                if (tl == (size_t)-1 || tl != ev.data.scalar.length) {
                    fail = true;
                    break;
                }
                bool quoted = ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE &&
                              ev.data.scalar.style != YAML_ANY_SCALAR_STYLE;
                n = node_new_inline(quoted ? ST_RSTR : resolve_plain(t), k, klen, t, tl);
                if (n)
                    n->plain = !quoted;
            } else {
                if (depth + 1 >= DEPTH) {
                    fail = true;
                    break;
                }
                n = node_new_inline(ev.type == YAML_MAPPING_START_EVENT ? ST_RMAP : ST_RSEQ, k,
                                    klen, NULL, 0);
            }
            if (!n) {
                fail = true;
                break;
            }
            if (!parent) {
                root = n;
            } else if (node_append(parent, n) != 0) {
                node_free(n);
                fail = true;
                break;
            }
            if (k) {
                yaml_event_delete(&key[depth - 1]);
                has_key[depth - 1] = false;
            }
            if (!scalar) {
                stack[depth] = n;
                has_key[depth] = false;
                depth++;
            }
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth)
                depth--;
            break;
        default:
            break;
        }
        if (!keep)
            yaml_event_delete(&ev);
    }
    for (unsigned i = 0; i < depth; i++)
        if (has_key[i])
            yaml_event_delete(&key[i]);
    yaml_parser_delete(&p);
    if (!ok) {
        node_free(root);
        return 1;
    }
    *out = root;
    return 0;
}

int st_report_parse(const char *buf, size_t len, const char *name, st_rnode **out,
                    st_err *err)
{
    *out = NULL;
    if (parse_fast(buf ? buf : "", len, out) == 0)
        return 0;
    return st_report_parse_full(buf, len, name, out, err);
}

int st_report_parse_full(const char *buf, size_t len, const char *name, st_rnode **out,
                         st_err *err)
{
    if (!name)
        name = "<report>";
    *out = NULL;
    static const st_ydoc_opts opts = { .no_aliases = true, .max_depth = ST_REPORT_DEPTH_MAX };
    st_ydoc *doc;
    int rc = st_ydoc_parse_ex(buf, len, name, &opts, &doc, err);
    if (rc)
        return rc;
    const st_ynode *root = st_ydoc_root(doc);
    pctx c = { doc, name, err };
    if (!st_ynode_is_map(root))
        rc = perr(err, name, root, ST_ERR_INVAL, "the report must be a map");
    else
        rc = convert(&c, root, NULL, 0, out);
    st_ydoc_free(doc);
    return rc;
}

int st_report_load(const char *path, st_rnode **out, st_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return st_err_set(err, st_err_from_errno(errno), "%s: %s", path, strerror(errno));
    /* A regular file is read in one call into a buffer of its size (+1 to see it end):
     * `report summary` opens 100,000 of them; stdio cost two more reads and a copy each. */
    struct stat sb;
    bool regular = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode);
    size_t first = regular && sb.st_size >= 0 && (uint64_t)sb.st_size < REPORT_FILE_MAX
                       ? (size_t)sb.st_size + 1
                       : 16384;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : first;
            if (ncap > REPORT_FILE_MAX + 1)
                ncap = REPORT_FILE_MAX + 1;
            if (ncap == cap) {
                rc = st_err_set(err, ST_ERR_INVAL, "%s: larger than %u bytes, not a report",
                                path, REPORT_FILE_MAX);
                break;
            }
            char *p = realloc(buf, ncap);
            if (!p) {
                rc = st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            buf = p;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = st_err_set(err, st_err_from_errno(errno), "%s: read error: %s", path,
                            strerror(errno));
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        /* A regular file's short read is its end (POSIX). */
        if (regular && len < cap)
            break;
    }
    close(fd);
    if (rc == 0)
        rc = st_report_parse(buf ? buf : "", len, path, out, err);
    free(buf);
    return rc;
}

/* ---- file names ------------------------------------------------------------------------ */

static int mkdir_p(const char *dir, st_err *err)
{
    char p[PATH_MAX];
    if (strlen(dir) >= sizeof(p))
        return st_err_set(err, ST_ERR_INVAL, "%s: path too long", dir);
    st_strlcpy(p, dir, sizeof(p));
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                return st_err_set(err, st_err_from_errno(errno), "create directory %s: %s", p,
                                  strerror(errno));
            *s = c;
            if (c == '\0')
                break;
        }
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return st_err_set(err, ST_ERR_IO, "%s: not a directory", dir);
    return 0;
}

int st_report_make_path(const char *dir, const char *unit_identity, int slot,
                        uint64_t wall_us, char *out, size_t cap, st_err *err)
{
    if (!dir || !*dir || !out || cap == 0 || slot < ST_REPORT_NO_SLOT)
        return st_err_set(err, ST_ERR_INVAL, "report path: bad arguments");
    out[0] = '\0';
    char d[PATH_MAX];
    size_t dl = strlen(dir);
    if (dl >= sizeof(d))
        return st_err_set(err, ST_ERR_INVAL, "report path: directory name too long");
    memcpy(d, dir, dl + 1);
    while (dl > 1 && d[dl - 1] == '/')
        d[--dl] = '\0';
    int rc = mkdir_p(d, err);
    if (rc != 0)
        return st_err_wrap(err, rc, "report path");

    char ident[IDENTITY_NAME_MAX + 1];
    st_text_filename(unit_identity, ident, sizeof(ident));
    time_t secs = (time_t)(wall_us / 1000000u);
    struct tm tm;
    if (!gmtime_r(&secs, &tm))
        return st_err_set(err, ST_ERR_INVAL, "report path: bad time");
    char stamp[48];
    snprintf(stamp, sizeof(stamp), "%04d%02d%02dT%02d%02d%02d.%03uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (unsigned)((wall_us / 1000u) % 1000u));
    const char *sep = (dl == 1 && d[0] == '/') ? "" : "/";
    for (int k = 0; k < 1000; k++) {
        char suffix[16] = "";
        if (k)
            snprintf(suffix, sizeof(suffix), "-%d", k);
        char where[16] = "noslot"; /* a unit that no fixture slot holds */
        if (slot != ST_REPORT_NO_SLOT)
            snprintf(where, sizeof where, "slot%d", slot);
        int n = snprintf(out, cap, "%s%s%s_%s_%s%s.yaml", d, sep, ident, where, stamp, suffix);
        if (n < 0 || (size_t)n >= cap) {
            out[0] = '\0';
            return st_err_set(err, ST_ERR_INVAL, "report path: name longer than %zu bytes",
                              cap - 1);
        }
        struct stat sb;
        if (lstat(out, &sb) != 0) {
            if (errno == ENOENT)
                return 0;
            int e = errno;
            out[0] = '\0';
            return st_err_set(err, st_err_from_errno(e), "report path: %s: %s", d,
                              strerror(e));
        }
    }
    out[0] = '\0';
    return st_err_set(err, ST_ERR_BUSY, "report path: 1000 reports with the same name in %s",
                      d);
}
