/* A protocol added without touching the engine: this test registers a toy driver (a job
 * section, two steps with their own options, a session, a failure class that calls for the
 * recovery ladder) in its own registry, loads job files that use it and runs them through
 * st_job_run end to end; every report passes the schema check. HACKING.md "Adding a
 * protocol" walks through the same table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "jobs/driver.h"
#include "jobs/engine.h"
#include "jobs/job.h"
#include "station/core/digest.h"
#include "station/core/testutil.h"

/* ---- the toy driver ------------------------------------------------------------------ */

/* What the test observes of the sessions (a test may count; a driver keeps no globals). */
static struct {
    int opened, closed, abandoned;
} seen;

typedef struct toy_section {
    char greeting[32];
} toy_section;

typedef struct toy_session {
    int number;               /* which session of the run this is (1, 2...) */
    unsigned failures;        /* toy-write attempts failed so far */
} toy_session;

typedef enum { FAIL_NONE, FAIL_IO, FAIL_CUT_OFF } toy_fail;

typedef struct toy_write_opts {
    int fail;                 /* toy_fail */
    uint32_t fail_times;      /* how many attempts fail before one passes */
} toy_write_opts;

static int toy_section_parse(const st_job_parse *p, const st_ynode *node, void **out, st_err *err)
{
    toy_section *s = calloc(1, sizeof *s);
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    snprintf(s->greeting, sizeof s->greeting, "hello");
    static const char *const keys[] = { "greeting", NULL };
    const char *g = NULL;
    int rc = node ? st_ymap_check_keys(p->doc, node, "toy", keys, err) : 0;
    if (!rc && node)
        rc = st_ymap_get_str(p->doc, node, "toy", "greeting", false, &g, err);
    if (rc) {
        free(s);
        return rc;
    }
    if (g)
        snprintf(s->greeting, sizeof s->greeting, "%s", g);
    *out = s;
    return 0;
}

static int toy_session_open(const st_step_call *c, void **out, st_err *err)
{
    toy_session *s = calloc(1, sizeof *s);
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    s->number = ++seen.opened;
    *out = s;
    return 0;
}

static void toy_session_abandon(const st_step_call *c, void *session)
{
    seen.abandoned++;
}

static void toy_session_close(void *session)
{
    seen.closed++;
    free(session);
}

static int toy_hello(st_step_call *c, st_err *err)
{
    const toy_section *sec = c->section;
    const toy_session *s = c->session;
    st_rmap_str(c->rec, "greeting", sec->greeting);
    st_rmap_int(c->rec, "session", s->number);
    st_run_identify(c->run, "toy-unit-1");
    return 0;
}

static int toy_write(st_step_call *c, st_err *err)
{
    const toy_write_opts *o = c->opts;
    toy_session *s = c->session;
    if (o->fail != FAIL_NONE && s->failures < o->fail_times) {
        s->failures++;
        return st_err_set(err, o->fail == FAIL_IO ? ST_ERR_IO : ST_ERR_DISCONNECT,
                          "toy unit dropped the write (%u)", s->failures);
    }
    st_rmap_uint(c->rec, "bytes", c->image->size);
    st_rmap_str(c->rec, "sha256", c->image->sha256_hex);
    st_rmap_hex32(c->rec, "address", c->image->load_addr);
    st_rmap_str(st_run_unit(c->run), "after_sha256", c->image->sha256_hex);
    return 0;
}

/* A write cut off (disconnect) strands the toy unit: the ladder must bring it back. */
static st_fail_class toy_write_classify(const st_step_call *c, int code)
{
    return code == ST_ERR_DISCONNECT ? ST_FAIL_LADDER : st_fail_default(code);
}

static int toy_write_parse(const st_job_parse *p, const st_ynode *node, void **out, st_err *err)
{
    toy_write_opts *o = calloc(1, sizeof *o);
    if (!o)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    static const char *const fails[] = { "none", "io", "cut-off", NULL };
    const st_ynode *f = node ? st_ymap_get(p->doc, node, "fail") : NULL;
    char field[128];
    snprintf(field, sizeof field, "%s.fail", p->field);
    o->fail_times = 1;
    int rc = f ? st_ynode_enum(p->doc, f, field, fails, &o->fail, err) : 0;
    if (!rc && node)
        rc = st_ymap_get_u32(p->doc, node, p->field, "fail_times", false, 0, 100, &o->fail_times, err);
    if (rc) {
        free(o);
        return rc;
    }
    *out = o;
    return 0;
}

static const st_step_opt toy_write_keys[] = {
    { "fail", "none, io (retried) or cut-off (needs the ladder)" },
    { "fail_times", "how many attempts fail first (default 1)" },
    { NULL, NULL },
};

static const st_step_def toy_steps[] = {
    { .name = "toy-hello", .summary = "greet the unit and name it", .records = "greeting, session",
      .run = toy_hello },
    { .name = "toy-write", .summary = "write the image", .records = "bytes, sha256, address",
      .flags = ST_STEP_TAKES_IMAGE, .opts = toy_write_keys, .parse = toy_write_parse,
      .free_opts = free, .run = toy_write, .classify = toy_write_classify },
    { .name = NULL },
};

static const st_driver toy_driver = {
    .name = "toy",
    .summary = "a protocol the engine has never heard of",
    .section_parse = toy_section_parse,
    .section_free = free,
    .section_help = "greeting",
    .steps = toy_steps,
    .session_open = toy_session_open,
    .session_abandon = toy_session_abandon,
    .session_close = toy_session_close,
    .ladder_needed = "toy-reset",
    .ladder_hint = "a toy reset",
};

/* The test's registry: one line per driver, as in station/drivers.c. */
static const st_driver *const registry[] = { &toy_driver, NULL };

/* ---- the test ----------------------------------------------------------------------- */

static char dir[64];
static uint8_t app[4096];
static char app_sha[65];

static int setup(void **state)
{
    st_test_tmpl(dir, sizeof dir, "st-toy");
    if (!mkdtemp(dir))
        return -1;
    for (size_t i = 0; i < sizeof app; i++)
        app[i] = (uint8_t)(i * 7 + 3);
    uint8_t md[ST_SHA256_LEN];
    st_sha256(app, sizeof app, md);
    st_hex(md, sizeof md, false, app_sha);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_job_role(const char *role, const char *steps, const char *extra)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/toy-job.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "name: toy-job\n"
            "target: stm32g431xx\n"
            "images:\n"
            "  %s:\n"
            "    path: app.bin\n"
            "    load_addr: 0x08002000\n"
            "    sha256: %s\n"
            "toy:\n"
            "  greeting: ahoy\n"
            "retries: 1\n"
            "%s"
            "steps:\n%s",
            role, app_sha, extra ? extra : "", steps);
    fclose(f);
    return path;
}

static const char *write_job(const char *steps, const char *extra)
{
    return write_job_role("application", steps, extra);
}

/* Run the job file through the engine on a unit that no slot holds; the report is
 * returned loaded and schema-checked. */
static st_rnode *run_toy(const char *job_path, st_run_result *res)
{
    st_job *job = NULL;
    st_err e;
    if (st_job_load(job_path, registry, &job, &e))
        fail_msg("%s", e.msg);
    st_image *images[ST_JOB_MAX_IMAGES] = { NULL };
    assert_int_equal(st_image_from_memory("app.bin", app, sizeof app, 0x08002000u, &images[0], &e), 0);
    st_fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    snprintf(fx->name, sizeof fx->name, "toy-fixture");
    snprintf(fx->path, sizeof fx->path, "(in memory)");
    fx->backend = ST_GPIO_BACKEND_VIRTUAL;
    char reports[128];
    snprintf(reports, sizeof reports, "%s/reports", dir);
    st_run_env env = { .run_id = "toy-run", .report_dir = reports, .fixture = fx };
    memset(&seen, 0, sizeof seen);
    assert_int_equal(st_job_run(job, images, &env, res), 0);
    st_rnode *doc = NULL;
    if (st_report_load(res->report_path, &doc, &e))
        fail_msg("%s: %s", res->report_path, e.msg);
    if (st_report_validate(doc, &e))
        fail_msg("%s: not a valid report: %s", res->report_path, e.msg);
    st_image_free(images[0]);
    st_job_free(job);
    free(fx);
    return doc;
}

static void expect(const st_rnode *doc, const char *path, const char *want)
{
    const char *got = st_rget_str(doc, path);
    if (!got || strcmp(got, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", path, got ? got : "(absent)", want);
}

static void test_toy_job_passes(void **state)
{
    st_run_result res;
    st_rnode *doc = run_toy(write_job("  - toy-hello\n"
                                      "  - toy-write: { image: application, fail: io }\n",
                                      NULL),
                            &res);
    assert_int_equal(res.verdict, ST_VERDICT_PASS);
    expect(doc, "verdict", "pass");
    expect(doc, "unit.identity", "toy-unit-1");
    assert_non_null(strstr(res.report_path, "toy-unit-1"));
    expect(doc, "steps.0.name", "toy-hello");
    expect(doc, "steps.0.greeting", "ahoy");
    expect(doc, "steps.1.name", "toy-write");
    expect(doc, "steps.1.sha256", app_sha);
    long long attempts;
    assert_int_equal(st_rget_int(doc, "steps.1.attempts", &attempts), 0);
    assert_int_equal(attempts, 2); /* io is retried (st_fail_default) */
    /* One session for the unit, opened before its first step, closed at the end. */
    assert_int_equal(seen.opened, 1);
    assert_int_equal(seen.closed, 1);
    assert_int_equal(seen.abandoned, 0);
    st_report_free(doc);
}

static void test_toy_failure_abandons(void **state)
{
    st_run_result res;
    st_rnode *doc = run_toy(write_job("  - toy-hello\n"
                                      "  - toy-write: { fail: io, fail_times: 5 }\n"
                                      "  - toy-hello\n",
                                      NULL),
                            &res);
    assert_int_equal(res.verdict, ST_VERDICT_FAIL);
    assert_int_equal(res.cause_code, ST_ERR_IO);
    assert_non_null(strstr(res.cause, "toy-write: toy unit dropped the write (2)"));
    expect(doc, "steps.1.outcome", "fail");
    expect(doc, "steps.2.outcome", "skipped");
    assert_int_equal(seen.abandoned, 1);
    assert_int_equal(seen.closed, 1);
    st_report_free(doc);
}

static void test_toy_ladder(void **state)
{
    /* The ladder is data: one rung of the toy's own steps, with its image. */
    st_run_result res;
    st_rnode *doc = run_toy(write_job("  - toy-hello\n"
                                      "  - toy-write: { fail: cut-off }\n"
                                      "  - toy-hello\n",
                                      "recovery:\n"
                                      "  - name: toy-reset\n"
                                      "    image: application\n"
                                      "    steps: [toy-hello, toy-write]\n"),
                            &res);
    assert_int_equal(res.verdict, ST_VERDICT_PASS);
    expect(doc, "recovery.rung", "toy-reset");
    expect(doc, "recovery.outcome", "pass");
    assert_non_null(strstr(st_rget_str(doc, "recovery.reason"), "dropped the write"));
    long long attempts;
    assert_int_equal(st_rget_int(doc, "steps.1.attempts", &attempts), 0);
    assert_int_equal(attempts, 1); /* a ladder failure is not retried */
    expect(doc, "steps.2.name", "recover:toy-hello");
    long long session;
    assert_int_equal(st_rget_int(doc, "steps.2.session", &session), 0);
    assert_int_equal(session, 2); /* the rung starts a new session */
    expect(doc, "steps.3.name", "recover:toy-write");
    expect(doc, "steps.3.sha256", app_sha);
    expect(doc, "steps.4.outcome", "skipped");
    assert_int_equal(seen.opened, 2);
    assert_int_equal(seen.closed, 2);
    st_report_free(doc);

    /* Without a ladder the cause says what the unit needs, in the driver's words. */
    doc = run_toy(write_job("  - toy-write: { fail: cut-off }\n", NULL), &res);
    assert_int_equal(res.verdict, ST_VERDICT_FAIL);
    assert_non_null(strstr(res.cause, "the unit needs a toy reset"));
    expect(doc, "recovery.rung", "none: needs toy-reset");
    expect(doc, "unit.identity", "unknown"); /* no step named the unit (SCHEMA.md) */
    st_report_free(doc);
}

/* An image role is the job's own name: one the station has never heard of reaches the
 * report and passes its schema check (run_toy validates). */
static void test_toy_job_own_role(void **state)
{
    st_run_result res;
    st_rnode *doc = run_toy(write_job_role("toy-fw.v2", "  - toy-write: { image: toy-fw.v2 }\n",
                                           NULL),
                            &res);
    assert_int_equal(res.verdict, ST_VERDICT_PASS);
    expect(doc, "images.0.role", "toy-fw.v2");
    expect(doc, "steps.0.sha256", app_sha);
    st_report_free(doc);
}

static void expect_refused(const char *path, const char *needle)
{
    st_job *job = NULL;
    st_err e;
    st_err_clear(&e);
    assert_int_not_equal(st_job_load(path, registry, &job, &e), 0);
    assert_null(job);
    if (!strstr(e.msg, needle) || !strstr(e.msg, "toy-job.yaml:"))
        fail_msg("error \"%s\" lacks \"%s\"", e.msg, needle);
}

static void test_toy_job_errors(void **state)
{
    /* The job parser checks the toy's options and section through its table. */
    expect_refused(write_job("  - toy-write: { fail: sometimes }\n", NULL),
                   ":12: steps[0].toy-write.fail: expected none or io or cut-off");
    expect_refused(write_job("  - toy-write: { speed: 9 }\n", NULL),
                   "steps[0].toy-write.speed: unknown key (allowed: retries, timeout_ms, image, fail, fail_times)");
    expect_refused(write_job("  - toy-hello: { image: application }\n", NULL),
                   "steps[0].toy-hello.image: unknown key (allowed: retries, timeout_ms)");
    expect_refused(write_job("  - flash\n", NULL), "unknown step \"flash\" (steps: toy-hello, toy-write)");
    /* Image roles are names: they reach reports and operator lines. */
    expect_refused(write_job_role("\"my image\"", "  - toy-hello\n", NULL),
                   ":5: images: image name \"my image\": give 1-31 letters, digits, '.', '_' or '-'");
    expect_refused(write_job_role("a23456789012345678901234567890123", "  - toy-hello\n", NULL),
                   "image name \"a23456789012345678901234567890123\"");
    expect_refused(write_job("  - toy-hello\n", "recovery: { image: application }\n"),
                   "recovery: give the rung's steps: no driver offers a default rung");
    expect_refused(write_job("  - toy-hello\n", "units: discover\n"), "units: no driver can find units");
    /* `station steps` lists the toy from its table. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    st_drivers_describe(registry, f);
    fclose(f);
    assert_non_null(strstr(text, "toy: a protocol the engine has never heard of"));
    assert_non_null(strstr(text, "toy-write [image]"));
    assert_non_null(strstr(text, "option fail_times: how many attempts fail first"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_toy_job_passes),
        cmocka_unit_test(test_toy_job_own_role),
        cmocka_unit_test(test_toy_failure_abandons),
        cmocka_unit_test(test_toy_ladder),
        cmocka_unit_test(test_toy_job_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
