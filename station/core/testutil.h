/* Test and benchmark support: scratch file and directory names under $TMPDIR (never a
 * hard-coded /tmp; scripts/check-tmp-templates.sh fails the build's tests on one), reading
 * a whole file. */
#ifndef ST_TESTUTIL_H
#define ST_TESTUTIL_H

#include <stddef.h>

/* Fills buf (cap bytes) with the mkdtemp/mkstemp template "<dir>/<name>-XXXXXX", <dir>
 * being $TMPDIR when it is set and not empty, else /tmp. Returns buf. When the name does
 * not fit, buf is left empty, so the caller's mkdtemp/mkstemp fails (EINVAL) on its own
 * error path instead of using a truncated template. */
char *st_test_tmpl(char *buf, size_t cap, const char *name);

/* The whole file at path, in a malloc'd buffer with a NUL byte after its *len bytes (so a
 * text file is also a string; len may be NULL); the caller frees it. NULL when it cannot
 * be opened or read (len unchanged). */
void *st_test_read_file(const char *path, size_t *len);

#endif
