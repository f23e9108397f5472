/* Test and benchmark support: scratch names under $TMPDIR (see testutil.h). */
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
