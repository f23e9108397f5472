/* What the end-to-end tests of the station binary share (see e2e.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "hil-tests/e2e/e2e.h"
#include "station/core/digest.h"
#include "station/core/testutil.h"

char e2e_dir[64];
char e2e_out[1 << 17];

int e2e_setup(void **state)
{
    (void)state;
    st_test_tmpl(e2e_dir, sizeof e2e_dir, "st-e2e");
    return mkdtemp(e2e_dir) ? 0 : -1;
}

int e2e_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e2e_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int e2e_run(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof cmd ||
        snprintf(cmd + n, sizeof cmd - (size_t)n, " > '%s/out.txt' 2>&1", e2e_dir) >=
            (int)(sizeof cmd - (size_t)n))
        fail_msg("command line longer than %zu bytes: %.80s...", sizeof cmd, cmd);
    int st = system(cmd);
    e2e_read_out();
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void e2e_read_out(void)
{
    char p[128];
    snprintf(p, sizeof p, "%s/out.txt", e2e_dir);
    FILE *f = fopen(p, "r");
    size_t got = f ? fread(e2e_out, 1, sizeof e2e_out - 1, f) : 0;
    e2e_out[got] = '\0';
    if (f)
        fclose(f);
}

pid_t e2e_spawn(const char *out, const char *const args[])
{
    char *argv[32] = { (char *)STATION };
    size_t n = 1;
    for (; args[n - 1]; n++) {
        if (n == sizeof argv / sizeof argv[0] - 1)
            fail_msg("e2e_spawn: more than %zu arguments", n - 1);
        argv[n] = (char *)args[n - 1];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (chdir(e2e_dir) != 0)
            _exit(127);
        int fd = open(out ? out : "/dev/null", out ? O_WRONLY | O_CREAT | O_TRUNC : O_WRONLY,
                      0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execv(STATION, argv);
        _exit(127);
    }
    return pid;
}

void e2e_write_file(const char *name, const char *text)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", e2e_dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

void e2e_write_fixture(const char *name, const char *unit_extra)
{
    char text[2048];
    snprintf(text, sizeof text,
             "name: %s\n"
             "gpio: { backend: virtual }\n"
             "timing: { reset_pulse_ms: 1, boot_settle_ms: 1 }\n"
             "slots:\n"
             "  - id: 7\n"
             "    lines: { boot0: B, reset: { name: R, active_low: true } }\n"
             "    usb_port: vusb-7\n"
             "    unit:\n"
             "      transport: usb\n"
             "%s",
             name, unit_extra);
    e2e_write_file("fixture.yaml", text);
}

st_rnode *e2e_load_report(const char *sub, const char *needle, char *path_out)
{
    char rd[160], found[E2E_PATH] = "";
    snprintf(rd, sizeof rd, "%s/%s", e2e_dir, sub);
    DIR *d = opendir(rd);
    if (!d)
        fail_msg("no report directory %s; output:\n%s", rd, e2e_out);
    struct dirent *de;
    int count = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !strstr(de->d_name, ".yaml"))
            continue;
        if (strstr(de->d_name, ".tmp")) /* no torn temporary file left behind */
            fail_msg("%s/%s left behind", rd, de->d_name);
        if (needle && !strstr(de->d_name, needle))
            continue;
        snprintf(found, sizeof found, "%s/%s", rd, de->d_name);
        count++;
    }
    closedir(d);
    if (count != 1)
        fail_msg("%d reports match \"%s\" in %s; output:\n%s", count, needle ? needle : "", rd,
                 e2e_out);
    st_rnode *doc = NULL;
    st_err e;
    if (st_report_load(found, &doc, &e))
        fail_msg("%s", e.msg);
    if (st_report_validate(doc, &e))
        fail_msg("%s: %s", found, e.msg);
    if (path_out)
        strcpy(path_out, found);
    return doc;
}

size_t e2e_count_reports(const char *sub)
{
    char rd[160];
    snprintf(rd, sizeof rd, "%s/%s", e2e_dir, sub);
    DIR *d = opendir(rd);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += strstr(de->d_name, ".yaml") != NULL;
    closedir(d);
    return n;
}

void e2e_expect_str(const st_rnode *doc, const char *path, const char *want)
{
    const char *got = st_rget_str(doc, path);
    if (!got || strcmp(got, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"\n%s", path, got ? got : "(absent)", want, e2e_out);
}

void e2e_sha256_file(const char *path, char hex[65], size_t *len)
{
    size_t n = 0;
    uint8_t *buf = st_test_read_file(path, &n);
    if (!buf)
        fail_msg("cannot read %s", path);
    uint8_t md[ST_SHA256_LEN];
    st_sha256(buf, n, md);
    st_hex(md, sizeof md, false, hex);
    free(buf);
    if (len)
        *len = n;
}
