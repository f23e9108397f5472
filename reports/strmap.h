/* A string-keyed hash map (open addressing) for the report tools: the shipper's set of
 * shipped files, the summary's units and failure groups. Keys are copied; values are
 * caller-owned pointers or integers. Not thread-safe. */
#ifndef STATION_REPORTS_STRMAP_H
#define STATION_REPORTS_STRMAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct st_strmap st_strmap;

/* New empty map; NULL when out of memory. Free with st_strmap_free. */
st_strmap *st_strmap_new(void);
/* Frees the map and its key copies (not the values). NULL ok. */
void st_strmap_free(st_strmap *m);
/* Slot for key's value, created (holding NULL) if absent; *created (optional) says
 * which. NULL only when out of memory. The slot moves when the map grows: use it before
 * the next insertion. */
void **st_strmap_put(st_strmap *m, const char *key, bool *created);
/* The value for key, NULL if absent (or stored as NULL); *found (optional) says which. */
void *st_strmap_get(const st_strmap *m, const char *key, bool *found);
size_t st_strmap_len(const st_strmap *m);
/* i-th occupied entry in table order (0 <= i < capacity): returns the key or NULL for an
 * empty slot; iterate i from 0 while i < st_strmap_cap(m). */
size_t st_strmap_cap(const st_strmap *m);
const char *st_strmap_at(const st_strmap *m, size_t i, void **value);

#endif
