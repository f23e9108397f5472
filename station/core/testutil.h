/* Test and benchmark support: scratch file and directory names under $TMPDIR (never a
 * hard-coded /tmp; scripts/check-tmp-templates.sh fails the build's tests on one), reading
 * a whole file, running a program and measuring what it used. */
#ifndef ST_TESTUTIL_H
#define ST_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Fills buf (cap bytes) with the mkdtemp/mkstemp template "<dir>/<name>-XXXXXX", <dir>
 * being $TMPDIR when it is set and not empty, else /tmp. Returns buf. When the name does
 * not fit, buf is left empty, so the caller's mkdtemp/mkstemp fails (EINVAL) on its own
 * error path instead of using a truncated template. */
char *st_test_tmpl(char *buf, size_t cap, const char *name);

/* The whole file at path, in a malloc'd buffer with a NUL byte after its *len bytes (so a
 * text file is also a string; len may be NULL); the caller frees it. NULL when it cannot
 * be opened or read (len unchanged). */
void *st_test_read_file(const char *path, size_t *len);

/* What a program run by st_test_spawn used. */
typedef struct st_test_child {
    int exit_code;        /* its exit status, or 128 + the signal that ended it */
    uint64_t wall_us;     /* from fork to wait4 (the real clock) */
    double user_s, sys_s; /* its CPU time */
    long maxrss_kib;      /* its peak resident set */
} st_test_child;

/* Runs the program at path with argv (NULL-terminated), its stdout into the file out and its
 * stderr into the file err (each created or truncated; err NULL: into out as well), waits
 * for it and fills *c. Flushes stdout first (the child must not print our buffered lines
 * again). -1 when it could not be started or waited for; a program that cannot be run exits
 * 127. */
int st_test_spawn(const char *path, char *const argv[], const char *out, const char *err,
                  st_test_child *c);

/* This process's CPU time so far (user + system, all threads), in microseconds; 0 when it
 * cannot be read. */
uint64_t st_test_cpu_us(void);

#endif
