/* End to end, issue 8's "done when": the `station` binary on a datasheet-timed two-slot
 * virtual jig killed with SIGKILL at 30 random moments (every report on disk then
 * validates, after `station report recover`, and a unit killed inside a step shows that
 * step `incomplete`), and the report directory on a full file system (no unit is touched,
 * exit code 3, the operator line says why). The full-disk test mounts a small tmpfs in a
 * private mount namespace (unshare -r -m); it skips when that is not allowed. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "reports/report.h"
#include "station/core/clock.h"
#include "station/core/text.h"
#include "hil-tests/e2e/e2e.h"

/* Two datasheet-timed USB units (slot 1 with these faults, a YAML list, or none), the demo
 * job (its generated image) writing to reports/. */
static void make_jig_with(const char *slot1_faults)
{
    static const char slot[] =
        "  - id: %d\n"
        "    lines: { boot0: BOOT0_%d, reset: { name: NRST_%d, active_low: true } }\n"
        "    usb_port: vusb-%d\n"
        "    unit: { timing: datasheet, serial: \"0A1B2C3D4E0%d\", faults: %s }\n";
    char fx[1024];
    int n = snprintf(fx, sizeof fx, "name: rel\ngpio: { backend: virtual }\n"
                                    "timing: { reset_pulse_ms: 20, boot_settle_ms: 50 }\nslots:\n");
    for (int i = 1; i <= 2; i++)
        n += snprintf(fx + n, sizeof fx - (size_t)n, slot, i, i, i, i, i,
                      i == 1 && slot1_faults ? slot1_faults : "[]");
    e2e_write_file("fx.yaml", fx);
    e2e_write_file("job.yaml",
               "name: rel\n"
               "target: stm32g431xx\n"
               "images:\n"
               "  combined:\n"
               "    path: generated/demo-combined.bin\n"
               "    load_addr: 0x08000000\n"
               "    sha256: 61be291834d764072d8c511d62c7c2eb382957fd0659a89818a0637e825fa8f0\n"
               "retries: 2\n"
               "report_dir: reports\n"
               "steps:\n"
               "  - enter-bootloader\n"
               "  - flash: { image: combined }\n"
               "  - verify: { image: combined }\n"
               "  - start: { image: combined }\n"
               "  - wait-for-app: { usb: \"1d50:614e\", timeout_ms: 10000 }\n");
    assert_int_equal(e2e_run("mkdir -p '%s/generated' && '%s' image generate '%s/generated/demo-combined.bin'",
                         e2e_dir, STATION, e2e_dir), 0);
}

static void make_jig(void)
{
    make_jig_with(NULL);
}

/* Every file in rdir: no temp files and no journal left; every report validates, at most
 * one step is `incomplete` and only the last. Returns how many reports show a step in
 * progress. */
static int check_reports(const char *rdir, int *nreports)
{
    DIR *d = opendir(rdir);
    *nreports = 0;
    if (!d)
        return 0;
    int in_progress = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (strstr(de->d_name, ".tmp") || strstr(de->d_name, ".journal"))
            fail_msg("%s/%s left behind", rdir, de->d_name);
        char p[512];
        snprintf(p, sizeof p, "%s/%s", rdir, de->d_name);
        st_rnode *doc = NULL;
        st_err e;
        if (st_report_load(p, &doc, &e) != 0 || st_report_validate(doc, &e) != 0)
            fail_msg("%s: %s", p, e.msg);
        (*nreports)++;
        const st_rnode *steps = st_rget(doc, "steps");
        size_t n = st_rnode_len(steps);
        for (size_t i = 0; i < n; i++) {
            const char *o = st_rget_str(st_rnode_child(steps, i), "outcome");
            if (strcmp(o, "incomplete") == 0) {
                if (i != n - 1)
                    fail_msg("%s: step %zu incomplete but not the last", p, i);
                assert_string_equal(st_rget_str(doc, "verdict"), "incomplete");
                assert_non_null(strstr(st_rget_str(doc, "cause"), "step in progress"));
                in_progress++;
            }
        }
        st_report_free(doc);
    }
    closedir(d);
    return in_progress;
}

static double now_s(void)
{
    return (double)st_now_us() / 1e6;
}

static void test_kill9_at_30_moments(void **state)
{
    make_jig();
    /* One whole run: how long the kills spread over. */
    double t0 = now_s();
    int rc = e2e_run("cd '%s' && '%s' -f fx.yaml run job.yaml --plain -r reports-full", e2e_dir, STATION);
    double whole = now_s() - t0;
    if (rc != 0)
        fail_msg("a clean run failed (%d):\n%s", rc, e2e_out);
    char rdir[256];
    snprintf(rdir, sizeof rdir, "%s/reports-full", e2e_dir);
    int nrep = 0;
    assert_int_equal(check_reports(rdir, &nrep), 0);
    assert_int_equal(nrep, 2);

    unsigned seed = 20261201u;
    int mid_step = 0, total = 0;
    for (int k = 0; k < 30; k++) {
        double at = whole * (double)(rand_r(&seed) % 1000) / 1000.0;
        snprintf(rdir, sizeof rdir, "%s/reports-%02d", e2e_dir, k);
        pid_t pid = e2e_spawn(NULL, (const char *const[]){ "-f", "fx.yaml", "run", "job.yaml",
                                                            "--plain", "-r", rdir, NULL });
        st_sleep_us((uint64_t)(at * 1e6));
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        /* Rebuild what the killed run left, as the next `station run` would. */
        rc = e2e_run("'%s' report recover '%s'", STATION, rdir);
        if (rc != 0)
            fail_msg("kill at %.3f s: report recover exited %d:\n%s", at, rc, e2e_out);
        int n = 0;
        mid_step += check_reports(rdir, &n);
        total += n;
        assert_true(n <= 2);
    }
    print_message("kill -9 at 30 moments over %.2f s: %d reports on disk, all valid; %d show "
                  "the step in progress\n", whole, total, mid_step);
    /* Most moments fall inside a step (the run is steps end to end). */
    assert_true(mid_step >= 10);
}

/* unshare -r -m: a private mount namespace where we may mount a tmpfs. */
static bool can_unshare(void)
{
    return system("unshare -r -m true >/dev/null 2>&1") == 0;
}

/* The report directory on a full file system: nothing touched, exit 3, the reason named. */
static void test_full_disk(void **state)
{
    if (!can_unshare())
        skip();
    make_jig();
    int rc = e2e_run("cd '%s' && mkdir -p mnt && unshare -r -m sh -c '"
                 "mount -t tmpfs -o size=64k none mnt && "
                 "(dd if=/dev/zero of=mnt/fill bs=4096 >/dev/null 2>&1; true) && "
                 "\"%s\" -f fx.yaml run job.yaml --plain -r mnt/reports; echo \"rc=$?\"'",
                 e2e_dir, STATION);
    (void)rc;
    if (!strstr(e2e_out, "rc=3"))
        fail_msg("expected exit 3 on a full disk:\n%s", e2e_out);
    assert_non_null(strstr(e2e_out, "No space left on device"));
    assert_non_null(strstr(e2e_out, "no report written"));
    /* No step started: no unit was touched. */
    assert_null(strstr(e2e_out, "enter-bootloader"));
}

/* Some room, not enough: whatever the station managed to write tells the truth, and a unit
 * whose report cannot be kept is stopped before a step (exit 3), never during one. */
static void test_nearly_full_disk(void **state)
{
    if (!can_unshare())
        skip();
    make_jig();
    /* 64 KiB of tmpfs with all but 12 KiB filled: room for one unit's report and journal,
     * not for the final writes of both. Then the disk is freed, recover runs, and the
     * reports are copied out of the namespace. */
    int rc = e2e_run("cd '%s' && mkdir -p mnt saved && unshare -r -m sh -c '"
                 "mount -t tmpfs -o size=64k none mnt && "
                 "dd if=/dev/zero of=mnt/fill bs=4096 count=13 >/dev/null 2>&1 && "
                 "\"%s\" -f fx.yaml run job.yaml --plain -r mnt/reports; echo \"rc=$?\"; "
                 "rm -f mnt/fill; \"%s\" report recover mnt/reports >/dev/null; "
                 "cp mnt/reports/* saved/ 2>/dev/null; true'",
                 e2e_dir, STATION, STATION);
    (void)rc;
    char sdir[256];
    snprintf(sdir, sizeof sdir, "%s/saved", e2e_dir);
    int n = 0;
    check_reports(sdir, &n);
    print_message("nearly full disk: %d report(s) kept, output:\n%s", n, e2e_out);
    /* Either both fit (exit 0) or the station said it could not keep a report (exit 3). */
    assert_true(strstr(e2e_out, "rc=0") || strstr(e2e_out, "rc=3"));
    if (strstr(e2e_out, "rc=3"))
        assert_true(strstr(e2e_out, "No space left") || strstr(e2e_out, "cannot be written"));
}

/* A unit that vanishes in the middle of a DFU transfer: the cause names the address of the
 * transfer that failed (the first error), even when the retries end in another error (a
 * disconnect fires once: the retry re-enters the ROM and meets errPROG); the operator line
 * is not cut. */
static void test_disconnect_names_address(void **state)
{
    make_jig_with("[\"dfu-disconnect:30\", \"prog-error:0x08006000\"]");
    EXPECT_RUN(1, "cd '%s' && '%s' -f fx.yaml run job.yaml --plain -r reports --slot 1", e2e_dir,
                 STATION);
    char rdir[256];
    snprintf(rdir, sizeof rdir, "%s/reports", e2e_dir);
    int n = 0;
    check_reports(rdir, &n);
    assert_int_equal(n, 1);
    /* "flash: erase 0x08000800: USB device at vusb-1 has disconnected; attempt 3: ..." */
    const char *cause = strstr(e2e_out, "FAIL  ");
    assert_non_null(cause);
    assert_non_null(strstr(cause, " 0x0800"));
    assert_non_null(strstr(cause, "disconnected"));
    assert_non_null(strstr(e2e_out, "report "));
    assert_non_null(strstr(e2e_out, ".yaml"));
}

/* One rule for all input: a fixture that is missing, a FIFO, a directory, or names an
 * unknown fault gets exit 2 and the same message from `fixture check` and from `run`
 * (a missing one used to exit 3 under run; a FIFO hung forever). */
static void test_same_input_same_answer(void **state)
{
    make_jig();
    e2e_write_file("badfault.yaml", "name: t\ngpio: {backend: virtual}\nslots:\n  - id: 1\n"
                                "    lines: {boot0: B0, reset: R0}\n    unit:\n"
                                "      faults: [\"melt:1\"]\n");
    char p[256];
    snprintf(p, sizeof p, "%s/fifo.yaml", e2e_dir);
    assert_int_equal(mkfifo(p, 0600), 0);
    static const char *const inputs[] = { "missing.yaml", "fifo.yaml", "generated",
                                          "badfault.yaml" };
    /* A bare name found nowhere: the search path (station/paths.h) says where it looked. */
    static const char *const want[] = { "\"missing.yaml\" not found (looked for missing.yaml",
                                        "not a fixture file (a FIFO)",
                                        "is a directory, not a fixture file",
                                        "slots[0].unit.faults[0]: unknown or malformed fault" };
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        int rc = e2e_run("cd '%s' && timeout 20 '%s' fixture check %s", e2e_dir, STATION, inputs[i]);
        char check[1024];
        st_strlcpy(check, e2e_out, sizeof check);
        if (rc != 2 || !strstr(check, want[i]))
            fail_msg("fixture check %s: exit %d:\n%s", inputs[i], rc, check);
        rc = e2e_run("cd '%s' && timeout 20 '%s' -f %s run job.yaml --plain", e2e_dir, STATION, inputs[i]);
        if (rc != 2 || strcmp(e2e_out, check) != 0)
            fail_msg("run -f %s: exit %d:\n%s\n(fixture check said:\n%s)", inputs[i], rc, e2e_out,
                     check);
    }
}

/* One unit, 8 KiB free: the journal runs out of room during the run. The unit is stopped
 * before its next step (never inside one), exit 3, the line says so, and once there is room
 * again `report recover` gives a valid report that ends with the step it was in. */
static void test_disk_fills_during_run(void **state)
{
    if (!can_unshare())
        skip();
    make_jig();
    e2e_run("cd '%s' && mkdir -p mnt saved && unshare -r -m sh -c '"
        "mount -t tmpfs -o size=64k none mnt && "
        "dd if=/dev/zero of=mnt/fill bs=4096 count=14 >/dev/null 2>&1 && "
        "\"%s\" -f fx.yaml run job.yaml --plain -r mnt/reports --slot 1; echo \"rc=$?\"; "
        "rm -f mnt/fill; \"%s\" report recover mnt/reports >/dev/null; "
        "cp mnt/reports/* saved/ 2>/dev/null; true'",
        e2e_dir, STATION, STATION);
    if (!strstr(e2e_out, "rc=3"))
        fail_msg("expected exit 3:\n%s", e2e_out);
    assert_true(strstr(e2e_out, "the unit was stopped before") ||
                strstr(e2e_out, "final report not written"));
    char sdir[256];
    snprintf(sdir, sizeof sdir, "%s/saved", e2e_dir);
    int n = 0;
    check_reports(sdir, &n);
    assert_int_equal(n, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_disk, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_nearly_full_disk, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_disk_fills_during_run, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_names_address, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_same_input_same_answer, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_kill9_at_30_moments, e2e_setup, e2e_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
