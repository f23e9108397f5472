/* Test and benchmark support: scratch names under $TMPDIR, whole files (see testutil.h). */
#include "station/core/testutil.h"

#include <stdio.h>
#include <stdlib.h>

char *st_test_tmpl(char *buf, size_t cap, const char *name)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    int n = snprintf(buf, cap, "%s/%s-XXXXXX", dir, name);
    if (n < 0 || (size_t)n >= cap)
        buf[0] = '\0';
    return buf;
}

void *st_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}
