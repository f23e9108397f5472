/* End to end: `station produce` on the virtual fixture with simulated operators (unit.operator)
 * replaying shifts: the reports it writes (read back and schema-checked), the totals it
 * prints, slots that stay independent while one unit hangs or fails, barcodes refused,
 * and SIGINT/SIGTERM (one: finish the units in flight; two: stop them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "reports/report.h"
#include "hil-tests/e2e/e2e.h"

/* The synthetic image and a job for it (timeouts short enough for a dead unit). */
static void write_job(const char *extra)
{
    assert_int_equal(e2e_run(STATION " image generate %s/img.bin", e2e_dir), 0);
    char sha[65] = "";
    const char *s = strstr(e2e_out, "sha256 ");
    assert_non_null(s);
    memcpy(sha, s + 7, 64);
    char text[2048];
    snprintf(text, sizeof text,
             "name: prod\n"
             "target: stm32g431xx\n"
             "images:\n"
             "  combined: { path: img.bin, load_addr: 0x08000000, sha256: %s }\n"
             "%s"
             "%s"
             "dfu: { enumerate_timeout_ms: 300 }\n"
             "steps:\n"
             "  - enter-bootloader\n"
             "  - flash: { image: combined }\n"
             "  - verify: { image: combined }\n"
             "  - start: { image: combined }\n"
             "  - wait-for-app: { usb: \"1d50:614e\", timeout_ms: 3000 }\n",
             sha, strstr(extra, "retries:") ? "" : "retries: 1\n", extra);
    e2e_write_file("job.yaml", text);
}

/* One slot of a shift fixture: start button, present line, LEDs, buzzer, optional scanner
 * and the simulated operator's line (YAML flow map). */
static size_t slot_yaml(char *buf, size_t cap, int id, bool scanner, const char *timing,
                        const char *op)
{
    char sc[256] = "";
    if (scanner)
        snprintf(sc, sizeof sc, "    scanner: { fifo: %s/scan%d }\n", e2e_dir, id);
    return (size_t)snprintf(buf, cap,
                            "  - id: %d\n"
                            "    lines: { boot0: B%d, reset: { name: R%d, active_low: true }, "
                            "button: BTN%d, present: P%d, led_pass: LP%d, led_fail: LF%d, "
                            "led_busy: LB%d, buzzer: BZ%d }\n"
                            "    usb_port: vusb-%d\n"
                            "%s"
                            "    unit:\n"
                            "      serial: \"0A1B2C3D4E%02d\"\n"
                            "      timing: %s\n"
                            "      operator: %s\n",
                            id, id, id, id, id, id, id, id, id, id, sc, id, timing, op);
}

static void write_fixture(int nslots, bool scanner, const char *timing, const char *const ops[])
{
    char text[16384];
    size_t n = (size_t)snprintf(text, sizeof text,
                                "name: shift\n"
                                "gpio: { backend: virtual }\n"
                                "timing: { reset_pulse_ms: 1, boot_settle_ms: 1 }\n"
                                "slots:\n");
    for (int i = 0; i < nslots; i++)
        n += slot_yaml(text + n, sizeof text - n, i + 1, scanner, timing, ops[i]);
    e2e_write_file("fixture.yaml", text);
}

typedef struct rep {
    char name[256];
    st_rnode *doc;
} rep;

/* Every report in dir/reports, loaded and schema-checked; returns how many. */
static size_t load_all(rep *reps, size_t cap)
{
    char rd[128];
    snprintf(rd, sizeof rd, "%s/reports", e2e_dir);
    DIR *d = opendir(rd);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        assert_null(strstr(de->d_name, ".tmp")); /* no torn temp file */
        if (!strstr(de->d_name, ".yaml") || n == cap)
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", rd, de->d_name);
        st_err e;
        rep *r = &reps[n++];
        snprintf(r->name, sizeof r->name, "%s", de->d_name);
        if (st_report_load(p, &r->doc, &e))
            fail_msg("%s: %s", p, e.msg);
        if (st_report_validate(r->doc, &e))
            fail_msg("%s: %s", p, e.msg);
    }
    closedir(d);
    return n;
}

static void free_all(rep *reps, size_t n)
{
    for (size_t i = 0; i < n; i++)
        st_report_free(reps[i].doc);
}

static const char *str(const st_rnode *doc, const char *path)
{
    const char *s = st_rget_str(doc, path);
    return s ? s : "(absent)";
}

static long long num(const st_rnode *doc, const char *path)
{
    long long v = -1;
    st_rget_int(doc, path, &v);
    return v;
}

/* Two slots, five units each: metadata in every report, a failing unit, a refused barcode. */
static void test_shift_two_slots(void **state)
{
    write_job("barcode: \"^CV4-[0-9]{6}$\"\n");
    const char *ops[] = {
        "{ units: 5, arrive_ms: 2, press_ms: 2, remove_ms: 2, barcode: \"CV4-1%05u\", "
        "exceptions: { 3: { barcode: \"NOT-A-UNIT\" } } }",
        "{ units: 5, arrive_ms: 2, press_ms: 2, remove_ms: 2, barcode: \"CV4-2%05u\", "
        "exceptions: { 2: { faults: [ \"prog-error:0x08002000\" ] } } }",
    };
    write_fixture(2, true, "none", ops);
    int rc = e2e_run("cd %s && " STATION " produce job.yaml -f fixture.yaml --reports reports "
                 "--station line-3 --lot LOT-42 --operator maria", e2e_dir);
    if (rc != 1)
        fail_msg("exit %d (want 1: a unit failed, one was refused):\n%s", rc, e2e_out);
    if (!strstr(e2e_out, "9 units, 8 passed, 1 failed, 1 refused"))
        fail_msg("totals:\n%s", e2e_out);
    assert_non_null(strstr(e2e_out, "REFUSED barcode \"NOT-A-UNIT\" does not match the job's pattern"));
    assert_non_null(strstr(e2e_out, "operators saw 8 pass and 2 fail LEDs"));
    rep reps[32];
    size_t n = load_all(reps, 32);
    assert_int_equal(n, 9); /* the refused unit was never touched: no report */
    unsigned fails = 0;
    for (size_t i = 0; i < n; i++) {
        const st_rnode *d = reps[i].doc;
        assert_string_equal(str(d, "station.name"), "line-3");
        assert_string_equal(str(d, "run.lot"), "LOT-42");
        assert_string_equal(str(d, "operator"), "maria");
        const char *bc = str(d, "unit.barcode");
        long long slot = num(d, "slot.id");
        char want[16];
        /* The unit's serial carries the slot and the unit number (context.c), so the
         * barcode scanned for it can be checked against it. */
        unsigned unit = (unsigned)strtoul(str(d, "unit.dfu_serial") + 8, NULL, 16);
        snprintf(want, sizeof want, "CV4-%lld%05u", slot, unit);
        if (strcmp(bc, want) != 0)
            fail_msg("%s: barcode %s, want %s", reps[i].name, bc, want);
        assert_null(strstr(bc, "NOT-A-UNIT"));
        if (strcmp(str(d, "verdict"), "fail") == 0) {
            fails++;
            assert_int_equal(slot, 2);
            assert_int_equal(unit, 2);
            assert_non_null(strstr(str(d, "cause"), "errPROG"));
        } else {
            assert_string_equal(str(d, "verdict"), "pass");
        }
    }
    assert_int_equal(fails, 1);
    free_all(reps, n);
}

/* Slot 1's second unit is dead (never answers) and its fourth fails; slot 2 keeps going: it
 * starts and finishes units while slot 1's dead unit is still being tried. */
static void test_hung_slot_does_not_stall_others(void **state)
{
    /* Four attempts of 300 ms each at the dead unit: a window slot 2 works through. */
    write_job("retries: 3\n");
    const char *ops[] = {
        "{ units: 4, arrive_ms: 2, press_ms: 2, remove_ms: 2, "
        "exceptions: { 2: { dead: true }, 4: { faults: [ \"corrupt-page:0x08004000\" ] } } }",
        "{ units: 12, arrive_ms: 2, press_ms: 2, remove_ms: 2 }",
    };
    write_fixture(2, false, "none", ops);
    EXPECT_RUN(1, "cd %s && " STATION " produce job.yaml -f fixture.yaml --reports reports", e2e_dir);
    if (!strstr(e2e_out, "16 units, 14 passed, 2 failed"))
        fail_msg("totals:\n%s", e2e_out);
    rep reps[32];
    size_t n = load_all(reps, 32);
    assert_int_equal(n, 16);
    const st_rnode *dead = NULL;
    for (size_t i = 0; i < n; i++)
        if (num(reps[i].doc, "slot.id") == 1 &&
            strcmp(str(reps[i].doc, "steps.0.outcome"), "fail") == 0)
            dead = reps[i].doc; /* it never answered: its first step failed */
    assert_non_null(dead);
    assert_string_equal(str(dead, "verdict"), "fail");
    assert_string_equal(str(dead, "steps.0.name"), "enter-bootloader");
    /* The dead unit's run spans its deadlines; slot 2 completed units inside that span. */
    char t0[40], t1[40];
    snprintf(t0, sizeof t0, "%s", str(dead, "run.started"));
    snprintf(t1, sizeof t1, "%s", str(dead, "run.finished"));
    unsigned inside = 0;
    for (size_t i = 0; i < n; i++) {
        const st_rnode *d = reps[i].doc;
        if (num(d, "slot.id") != 2)
            continue;
        assert_string_equal(str(d, "verdict"), "pass");
        inside += strcmp(str(d, "run.started"), t0) > 0 && strcmp(str(d, "run.finished"), t1) < 0;
    }
    if (inside < 2)
        fail_msg("only %u of slot 2's units ran while slot 1's dead unit was tried (%s .. %s)",
                 inside, t0, t1);
    free_all(reps, n);
}

/* A replayed shift: 200 units through 4 slots. */
static void test_shift_200_units_4_slots(void **state)
{
    write_job("");
    const char *op = "{ units: 50, arrive_ms: 1, press_ms: 1, remove_ms: 1, "
                     "exceptions: { 17: { faults: [ \"corrupt-page:0x08004000\" ] } } }";
    const char *ops[] = { op, op, op, op };
    write_fixture(4, false, "none", ops);
    EXPECT_RUN(1, "cd %s && " STATION " produce job.yaml -f fixture.yaml --reports reports", e2e_dir);
    if (!strstr(e2e_out, "200 units, 196 passed, 4 failed, 0 refused; first-pass yield 98.0%"))
        fail_msg("totals:\n%s", e2e_out);
    static rep reps[256];
    size_t n = load_all(reps, 256);
    assert_int_equal(n, 200);
    unsigned per_slot[5] = { 0 };
    for (size_t i = 0; i < n; i++) {
        long long s = num(reps[i].doc, "slot.id");
        assert_true(s >= 1 && s <= 4);
        per_slot[s]++;
    }
    for (int s = 1; s <= 4; s++)
        assert_int_equal(per_slot[s], 50);
    free_all(reps, n);
    /* The shift's summary, and its JUnit XML as a JUnit consumer reads it: python3's XML
     * parser plus the elements and attributes the JUnit schema requires. */
    int rc = e2e_run(STATION " report summary %s/reports --junit %s/shift.xml", e2e_dir, e2e_dir);
    if (rc != 0)
        fail_msg("report summary: exit %d\n%s", rc, e2e_out);
    assert_non_null(strstr(e2e_out, "runs 200: 196 pass, 4 fail, 0 incomplete"));
    assert_non_null(strstr(e2e_out, "first-pass yield 98.0%"));
    assert_non_null(strstr(e2e_out, "  4  verify "));
    assert_non_null(strstr(e2e_out, "units/h"));
    assert_non_null(strstr(e2e_out, "gpio:boot0+reset       200 of 200 (100.0%)"));
    if (system("python3 -c 'import xml.etree.ElementTree' 2>/dev/null") != 0)
        return; /* no python3: the XML is checked by test_junit alone */
    rc = e2e_run("python3 -c \"import sys, xml.etree.ElementTree as E\n"
             "r = E.parse(sys.argv[1]).getroot()\n"
             "assert r.tag == 'testsuites', r.tag\n"
             "s = r.findall('testsuite')\n"
             "assert len(s) == 200, len(s)\n"
             "for t in s:\n"
             "    assert t.get('name') and t.get('tests') is not None, t.attrib\n"
             "    assert all(c.get('name') and c.get('classname') is not None for c in t.iter('testcase'))\n"
             "f = sum(1 for t in s if t.find('testcase/failure') is not None)\n"
             "print('suites', len(s), 'failed', f)\n"
             "assert f == 4, f\" %s/shift.xml", e2e_dir);
    if (rc != 0)
        fail_msg("JUnit XML rejected: %s", e2e_out);
}

/* Start produce in the background on a datasheet-timed shift that never ends by itself. */
static pid_t start_bg(void)
{
    return e2e_spawn("out.txt", (const char *const[]){ "produce", "job.yaml", "-f",
                                                        "fixture.yaml", "--reports", "reports",
                                                        NULL });
}

/* Wait (bounded) until some report in dir/reports says verdict: incomplete with a step in
 * progress: a unit is in flight. */
static bool unit_in_flight(void)
{
    for (int tries = 0; tries < 3000; tries++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "grep -l 'verdict: incomplete' %s/reports/*.yaml >/dev/null 2>&1", e2e_dir);
        if (system(cmd) == 0)
            return true;
        struct timespec ts = { 0, 5000000 };
        nanosleep(&ts, NULL); /* a test waiting on another process, not an engine */
    }
    return false;
}

static int wait_exit(pid_t pid)
{
    int st = 0;
    for (int tries = 0; tries < 6000; tries++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static void signal_case(int sig, bool twice)
{
    write_job("");
    const char *op = "{ units: 1000, arrive_ms: 1, press_ms: 1, remove_ms: 1 }";
    const char *ops[] = { op, op };
    write_fixture(2, false, "datasheet", ops);
    pid_t pid = start_bg();
    assert_true(unit_in_flight());
    kill(pid, sig);
    if (twice) {
        struct timespec ts = { 0, 20000000 };
        nanosleep(&ts, NULL);
        kill(pid, sig);
    }
    int rc = wait_exit(pid);
    e2e_read_out();
    rep reps[64];
    size_t n = load_all(reps, 64);
    assert_true(n >= 1);
    unsigned incomplete = 0;
    for (size_t i = 0; i < n; i++) {
        const char *v = str(reps[i].doc, "verdict");
        if (strcmp(v, "incomplete") == 0) {
            incomplete++;
            assert_non_null(strstr(str(reps[i].doc, "cause"), "stopped by a second signal"));
        } else {
            assert_string_equal(v, "pass");
        }
    }
    if (twice) {
        if (rc != 4 || incomplete == 0)
            fail_msg("exit %d, %u incomplete (want 4 and at least one):\n%s", rc, incomplete, e2e_out);
    } else if (rc != 0 || incomplete) {
        fail_msg("exit %d, %u incomplete (want 0 and every report complete):\n%s", rc, incomplete, e2e_out);
    }
    assert_non_null(strstr(e2e_out, "finishing the units in flight"));
    free_all(reps, n);
}

static void test_sigint_finishes_units_in_flight(void **state)
{
    signal_case(SIGINT, false);
}

static void test_sigterm_twice_stops_them(void **state)
{
    signal_case(SIGTERM, true);
}

/* kill -9 mid-run, then a restart: it names the units in flight, their slots and steps,
 * their reports are rebuilt from the journals (incomplete, step named), none is torn, and
 * no journal or temp file is left. */
static void test_kill9_restart(void **state)
{
    write_job("");
    const char *op = "{ units: 1000, arrive_ms: 1, press_ms: 1, remove_ms: 1 }";
    const char *ops[] = { op, op };
    write_fixture(2, false, "datasheet", ops);
    pid_t pid = start_bg();
    assert_true(unit_in_flight());
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s/reports/*.journal >/dev/null 2>&1", e2e_dir);
    assert_int_equal(system(cmd), 0); /* the killed run left journals */
    /* The restart: the units are still in their slots (no operator), --rerun runs the
     * ones that were in flight at once; --units stops after them. Which slots had a unit
     * in flight depends on the moment of the kill: count them from the journals. */
    snprintf(cmd, sizeof cmd, "test $(ls %s/reports/*.journal | wc -l) -eq 2", e2e_dir);
    int inflight = system(cmd) == 0 ? 2 : 1;
    char fx[2048];
    size_t fl = (size_t)snprintf(fx, sizeof fx, "name: restart\ngpio: { backend: virtual }\n"
                                 "timing: { reset_pulse_ms: 1, boot_settle_ms: 1 }\nslots:\n");
    for (int i = 1; i <= 2; i++)
        fl += (size_t)snprintf(fx + fl, sizeof fx - fl,
                               "  - id: %d\n    lines: { boot0: B%d, reset: { name: R%d, "
                               "active_low: true }, present: P%d }\n    usb_port: vusb-%d\n"
                               "    unit: { serial: \"0A1B2C3D4E%02d\" }\n", i, i, i, i, i, i);
    e2e_write_file("fixture.yaml", fx);
    int rc = e2e_run("cd %s && " STATION " produce job.yaml -f fixture.yaml --reports reports "
                 "--rerun --units %d", e2e_dir, inflight);
    if (rc != 0)
        fail_msg("restart: exit %d\n%s", rc, e2e_out);
    char want[64];
    snprintf(want, sizeof want, "%d units, %d passed", inflight, inflight);
    if (!strstr(e2e_out, want) || !strstr(e2e_out, "running it again"))
        fail_msg("the rerun did not run the %d units in flight:\n%s", inflight, e2e_out);
    unsigned named = 0;
    for (const char *q = e2e_out; (q = strstr(q, "after a crash: slot ")); q++)
        named++;
    if (named < 1 || !strstr(e2e_out, "in flight at step ") || !strstr(e2e_out, "is marked incomplete"))
        fail_msg("the restart did not name the units in flight:\n%s", e2e_out);
    snprintf(cmd, sizeof cmd, "ls %s/reports/ | grep -q 'journal\\|tmp'", e2e_dir);
    assert_int_not_equal(system(cmd), 0); /* nothing left to replay, no temp file */
    rep reps[256];
    size_t n = load_all(reps, 256); /* each one loads and validates: none is torn */
    unsigned incomplete = 0;
    for (size_t i = 0; i < n; i++) {
        const char *v = str(reps[i].doc, "verdict");
        if (strcmp(v, "incomplete") == 0) {
            incomplete++;
            assert_non_null(strstr(str(reps[i].doc, "cause"), "the run stopped before it ended"));
        } else {
            assert_string_equal(v, "pass");
        }
    }
    assert_int_equal(incomplete, named);
    assert_int_equal(named, inflight);
    free_all(reps, n);
}

/* Production refuses what it cannot run before touching anything. */
static void test_refusals(void **state)
{
    write_job("barcode: \"^CV4-\"\n");
    const char *ops[] = { "{ units: 1 }" };
    write_fixture(1, false, "none", ops);
    int rc = e2e_run("cd %s && " STATION " produce job.yaml -f fixture.yaml", e2e_dir);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(e2e_out, "slot 1: job prod wants a barcode (barcode: ^CV4-) but the slot "
                                "has no scanner"));
    e2e_write_file("notfifo", "x");
    char fx[512];
    snprintf(fx, sizeof fx, "name: x\ngpio: { backend: virtual }\nslots:\n  - id: 1\n"
                            "    lines: { boot0: B, reset: R, button: BTN }\n"
                            "    scanner: { fifo: %s/notfifo }\n", e2e_dir);
    e2e_write_file("fixture.yaml", fx);
    rc = e2e_run("cd %s && " STATION " produce job.yaml -f fixture.yaml", e2e_dir);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(e2e_out, "notfifo: not a FIFO"));
    write_job("barcode: \"^(CV4\"\n");
    rc = e2e_run("cd %s && " STATION " produce job.yaml -f fixture.yaml", e2e_dir);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(e2e_out, "job.yaml:6: barcode: not a regular expression"));
    rc = e2e_run(STATION " produce job.yaml --units x");
    assert_int_equal(rc, 2);
}

/* start: can: a unit arrives when its CAN UUID answers on the bus (asked through the job's
 * Katapult driver, one question at a time for both slots) and leaves when it stops. */
static void test_can_arrival(void **state)
{
    if (access(STATION_SHARED_DIR "/firmware", R_OK) != 0)
        skip(); /* the CAN reflash job's images live in ../shared/firmware */
    char fx[4096];
    size_t n = (size_t)snprintf(fx, sizeof fx, "name: can-line\ngpio: { backend: virtual }\n"
                                "timing: { reset_pulse_ms: 1, boot_settle_ms: 1 }\nslots:\n");
    for (int i = 1; i <= 2; i++)
        n += (size_t)snprintf(fx + n, sizeof fx - n,
                              "  - id: %d\n"
                              "    lines: { boot0: B%d, reset: { name: R%d, active_low: true }, "
                              "led_pass: LP%d, led_fail: LF%d }\n"
                              "    usb_port: vusb-%d\n"
                              "    can: { iface: vcan-virtual, uuid: 11aa22bb33c%d }\n"
                              "    start: can\n"
                              "    unit: { transport: can, holds: \"synthetic:%d\", can_uuid: "
                              "11aa22bb33c%d, operator: { units: 1, remove_ms: 1 } }\n",
                              i, i, i, i, i, i, i, i, i);
    e2e_write_file("fixture.yaml", fx);
    EXPECT_RUN(0, "cd %s && " STATION " produce " STATION_SOURCE_DIR
                 "/jobs/cartographer-v4-can-reflash.yaml -f fixture.yaml --reports reports", e2e_dir);
    assert_non_null(strstr(e2e_out, "2 units, 2 passed, 0 failed"));
    rep reps[4];
    size_t got = load_all(reps, 4);
    assert_int_equal(got, 2);
    for (size_t i = 0; i < got; i++) {
        assert_string_equal(str(reps[i].doc, "verdict"), "pass");
        assert_non_null(strstr(reps[i].name, "11aa22bb33c"));
    }
    free_all(reps, got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shift_two_slots, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_hung_slot_does_not_stall_others, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_shift_200_units_4_slots, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_sigint_finishes_units_in_flight, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_twice_stops_them, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_kill9_restart, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_refusals, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_can_arrival, e2e_setup, e2e_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
