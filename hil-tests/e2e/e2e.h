/* What the end-to-end tests of the station binary share: a scratch directory per test,
 * running a command with its output captured, writing files, and loading the report.
 * For cmocka tests (include <cmocka.h> first: the EXPECT_ macros fail through it). */
#ifndef ST_E2E_H
#define ST_E2E_H

#include <stddef.h>
#include <string.h>
#include <sys/types.h>

#include "reports/report.h"

/* The station binary of this build tree (STATION_BINARY_DIR comes from station_test). */
#define STATION STATION_BINARY_DIR "/station/station"

/* Size of a report path handed back by e2e_load_report. */
#define E2E_PATH 512

/* The running test's scratch directory (made by e2e_setup under $TMPDIR). */
extern char e2e_dir[64];
/* The stdout and stderr of the last e2e_run, NUL-terminated (cut at its size). */
extern char e2e_out[1 << 17];

/* cmocka setup/teardown: make e2e_dir, remove it with all it holds. */
int e2e_setup(void **state);
int e2e_teardown(void **state);

/* Runs the shell command fmt (a printf format) with stdout and stderr into e2e_out; returns
 * its exit code, or -1 when it did not exit. Fails the test on a command too long. */
int e2e_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Starts the station binary in the background, in e2e_dir, with args (its arguments,
 * NULL-terminated) and stdout and stderr into the file out in e2e_dir (NULL: /dev/null).
 * Returns its pid (the caller waits for it); fails the test when fork fails. */
pid_t e2e_spawn(const char *out, const char *const args[]);

/* Reads e2e_dir/out.txt (what e2e_run or e2e_spawn("out.txt", ...) wrote) into e2e_out. */
void e2e_read_out(void);

/* e2e_run the command; fail the test, with its output, unless it exits want. */
#define EXPECT_RUN(want, ...)                                                              \
    do {                                                                                   \
        int rc_ = e2e_run(__VA_ARGS__);                                                    \
        if (rc_ != (want))                                                                 \
            fail_msg("exit %d, want %d:\n%s", rc_, (want), e2e_out);                       \
    } while (0)

/* Fail the test, with the output, unless e2e_out holds (does not hold) needle. */
#define EXPECT_OUT(needle)                                                                 \
    do {                                                                                   \
        if (!strstr(e2e_out, (needle)))                                                    \
            fail_msg("output lacks \"%s\":\n%s", (needle), e2e_out);                       \
    } while (0)

#define EXPECT_NOT_OUT(needle)                                                             \
    do {                                                                                   \
        if (strstr(e2e_out, (needle)))                                                     \
            fail_msg("output has \"%s\":\n%s", (needle), e2e_out);                         \
    } while (0)

/* Writes text to the file name in e2e_dir. */
void e2e_write_file(const char *name, const char *text);

/* Writes fixture.yaml in e2e_dir: a virtual fixture called name with one slot (id 7, USB
 * port vusb-7, active-low RESET) whose USB unit has the given extra YAML (faults, serial,
 * ...: lines indented by six spaces). */
void e2e_write_fixture(const char *name, const char *unit_extra);

/* The only report (*.yaml) in e2e_dir/sub whose name contains needle (NULL: any), loaded and
 * checked against the schema; fails the test on none, several, a torn temporary file left
 * among them, or an invalid one. Its path goes to path_out (E2E_PATH bytes) when not NULL.
 * The caller frees the document with st_report_free. */
st_rnode *e2e_load_report(const char *sub, const char *needle, char *path_out);

/* How many reports (*.yaml) e2e_dir/sub holds (0 when it does not exist). */
size_t e2e_count_reports(const char *sub);

/* The SHA-256 of the file at path, as 64 lowercase hex digits (+ NUL), and its length
 * (len may be NULL); fails the test when it cannot be read. */
void e2e_sha256_file(const char *path, char hex[65], size_t *len);

/* Fails the test, with the last output, unless the report's string at path is want. */
void e2e_expect_str(const st_rnode *doc, const char *path, const char *want);

#endif
