/* String-keyed hash map (see strmap.h): FNV-1a, linear probing, grows at 1/2 load. */
#include "reports/strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct ent {
    char *key;
    void *val;
} ent;

struct st_strmap {
    ent *t;
    size_t cap, n;
};

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

st_strmap *st_strmap_new(void)
{
    st_strmap *m = calloc(1, sizeof *m);
    if (m && !(m->t = calloc(64, sizeof *m->t))) {
        free(m);
        return NULL;
    }
    if (m)
        m->cap = 64;
    return m;
}

void st_strmap_free(st_strmap *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        free(m->t[i].key);
    free(m->t);
    free(m);
}

static ent *find(const st_strmap *m, const char *key)
{
    size_t i = (size_t)hash(key) & (m->cap - 1);
    while (m->t[i].key && strcmp(m->t[i].key, key) != 0)
        i = (i + 1) & (m->cap - 1);
    return &m->t[i];
}

static int grow(st_strmap *m)
{
    st_strmap bigger = { calloc(m->cap * 2, sizeof(ent)), m->cap * 2, m->n };
    if (!bigger.t)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->t[i].key)
            *find(&bigger, m->t[i].key) = m->t[i];
    free(m->t);
    *m = bigger;
    return 0;
}

void **st_strmap_put(st_strmap *m, const char *key, bool *created)
{
    if ((m->n + 1) * 2 > m->cap && grow(m) != 0)
        return NULL;
    ent *e = find(m, key);
    if (created)
        *created = !e->key;
    if (!e->key) {
        if (!(e->key = strdup(key)))
            return NULL;
        e->val = NULL;
        m->n++;
    }
    return &e->val;
}

void *st_strmap_get(const st_strmap *m, const char *key, bool *found)
{
    ent *e = find(m, key);
    if (found)
        *found = e->key != NULL;
    return e->key ? e->val : NULL;
}

size_t st_strmap_len(const st_strmap *m)
{
    return m->n;
}

size_t st_strmap_cap(const st_strmap *m)
{
    return m->cap;
}

const char *st_strmap_at(const st_strmap *m, size_t i, void **value)
{
    if (i >= m->cap || !m->t[i].key)
        return NULL;
    if (value)
        *value = m->t[i].val;
    return m->t[i].key;
}
