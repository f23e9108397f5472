/* Tests of the fixture/job search path (station/paths.h) on a temporary directory tree:
 * order of the directories, names vs paths, ".yaml" added, the default fixture, the share
 * directory derived from the executable's path, and errors that name every place tried. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "station/paths.h"
#include "station/core/testutil.h"

static char root[128];
static char cfg[300], etc[300], share[300], home[300];

static void touch(const char *dir, const char *rel)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    char d[700];
    snprintf(d, sizeof d, "%s", p);
    for (char *s = d + strlen(dir) + 1; (s = strchr(s, '/')) != NULL; s++) {
        *s = '\0';
        mkdir(d, 0755);
        *s = '/';
    }
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("x: 1\n", f);
    fclose(f);
}

static int setup(void **state)
{
    if (!mkdtemp(st_test_tmpl(root, sizeof root, "st-paths")))
        return -1;
    snprintf(cfg, sizeof cfg, "%s/xdg", root);
    snprintf(home, sizeof home, "%s/home", root);
    snprintf(etc, sizeof etc, "%s/etc/station", root);
    snprintf(share, sizeof share, "%s/usr/share/station", root);
    mkdir(cfg, 0755);
    mkdir(home, 0755);
    touch(root, "etc/station/x");
    touch(root, "usr/share/station/x");
    touch(cfg, "station/fixtures/a.yaml");
    touch(etc, "fixtures/a.yaml");
    touch(share, "fixtures/a.yaml");
    touch(share, "fixtures/b.yaml");
    touch(etc, "jobs/j.yml");
    touch(share, "jobs/j.yml");
    touch(share, "fixtures/virtual.yaml");
    touch(home, ".config/station/fixtures/h.yaml");
    return 0;
}

static int teardown(void **state)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static st_path_env env_all(void)
{
    st_path_env e = { .xdg_config = cfg, .home = home, .sysconf = etc, .share = share };
    return e;
}

static void expect(const st_path_env *env, st_path_kind k, const char *name, const char *dir,
                   const char *rel)
{
    char out[1024], want[1024];
    st_err err = { 0 };
    if (st_path_resolve(env, k, name, out, sizeof out, &err) < 0)
        fail_msg("%s: %s", name, err.msg);
    snprintf(want, sizeof want, "%s/%s", dir, rel);
    assert_string_equal(out, want);
}

static void test_order(void **state)
{
    st_path_env env = env_all();
    char xdg_station[400];
    snprintf(xdg_station, sizeof xdg_station, "%s/station", cfg);
    /* The configuration directory wins, then /etc/station, then the share directory. */
    expect(&env, ST_PATH_FIXTURE, "a", xdg_station, "fixtures/a.yaml");
    expect(&env, ST_PATH_FIXTURE, "a.yaml", xdg_station, "fixtures/a.yaml");
    env.xdg_config = NULL; /* ~/.config/station: not in this tree's home, so /etc */
    expect(&env, ST_PATH_FIXTURE, "a", etc, "fixtures/a.yaml");
    expect(&env, ST_PATH_FIXTURE, "h", home, ".config/station/fixtures/h.yaml");
    env.sysconf = NULL;
    expect(&env, ST_PATH_FIXTURE, "a", share, "fixtures/a.yaml");
    expect(&env, ST_PATH_FIXTURE, "b", share, "fixtures/b.yaml");
    /* Jobs live under jobs/; an extension given is kept (no .yaml added). */
    env = env_all();
    expect(&env, ST_PATH_JOB, "j.yml", etc, "jobs/j.yml");
    char out[1024];
    st_err err = { 0 };
    assert_int_equal(st_path_resolve(&env, ST_PATH_JOB, "a", out, sizeof out, &err),
                     ST_ERR_NOTFOUND); /* a fixture is not a job */
}

static void test_paths_as_given(void **state)
{
    st_path_env env = env_all();
    char out[1024];
    st_err err = { 0 };
    /* A name with a '/' is a path: never searched, even when missing. */
    assert_int_equal(st_path_resolve(&env, ST_PATH_FIXTURE, "./a", out, sizeof out, &err), 0);
    assert_string_equal(out, "./a");
    assert_int_equal(st_path_resolve(&env, ST_PATH_FIXTURE, "/no/such.yaml", out, sizeof out,
                                     &err), 0);
    assert_string_equal(out, "/no/such.yaml");
    /* A file in the working directory is used as given. */
    char cwd[1024];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(share), 0);
    assert_int_equal(st_path_resolve(&env, ST_PATH_FIXTURE, "x", out, sizeof out, &err), 0);
    assert_string_equal(out, "x");
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(st_path_resolve(&env, ST_PATH_FIXTURE, "", out, sizeof out, &err),
                     ST_ERR_INVAL);
}

static void test_not_found(void **state)
{
    st_path_env env = env_all();
    char out[1024];
    st_err err = { 0 };
    assert_int_equal(st_path_resolve(&env, ST_PATH_FIXTURE, "nope", out, sizeof out, &err),
                     ST_ERR_NOTFOUND);
    assert_non_null(strstr(err.msg, "fixture \"nope\" not found"));
    char want[600];
    snprintf(want, sizeof want, "%s/station/fixtures/nope.yaml", cfg);
    assert_non_null(strstr(err.msg, want));
    snprintf(want, sizeof want, "%s/fixtures/nope.yaml", etc);
    assert_non_null(strstr(err.msg, want));
    snprintf(want, sizeof want, "%s/fixtures/nope.yaml", share);
    assert_non_null(strstr(err.msg, want));
    /* Without a share directory nothing else is searched (no build tree behind it). */
    st_path_env bare = { 0 };
    assert_int_equal(st_path_resolve(&bare, ST_PATH_JOB, "demo", out, sizeof out, &err),
                     ST_ERR_NOTFOUND);
    assert_string_equal(err.msg, "job \"demo\" not found (looked for demo)");
    /* Untrusted text in the name is shown printable. */
    assert_int_equal(st_path_resolve(&bare, ST_PATH_JOB, "a\033[2Jb", out, sizeof out, &err),
                     ST_ERR_NOTFOUND);
    assert_null(strchr(err.msg, '\033'));
}

static void test_default_fixture(void **state)
{
    st_path_env env = env_all();
    char out[1024], want[1024];
    st_err err = { 0 };
    /* Nothing configured: the share directory's virtual fixture. */
    assert_int_equal(st_path_default_fixture(&env, out, sizeof out, &err), 0);
    snprintf(want, sizeof want, "%s/fixtures/virtual.yaml", share);
    assert_string_equal(out, want);
    /* /etc/station/fixture.yaml (the production jig), then the user's own. */
    touch(etc, "fixture.yaml");
    assert_int_equal(st_path_default_fixture(&env, out, sizeof out, &err), 0);
    snprintf(want, sizeof want, "%s/fixture.yaml", etc);
    assert_string_equal(out, want);
    touch(cfg, "station/fixture.yaml");
    assert_int_equal(st_path_default_fixture(&env, out, sizeof out, &err), 0);
    snprintf(want, sizeof want, "%s/station/fixture.yaml", cfg);
    assert_string_equal(out, want);
    /* $STATION_FIXTURE beats them all, and is itself a name or a path. */
    env.fixture_env = "b";
    assert_int_equal(st_path_default_fixture(&env, out, sizeof out, &err), 0);
    snprintf(want, sizeof want, "%s/fixtures/b.yaml", share);
    assert_string_equal(out, want);
    env.fixture_env = "missing";
    assert_int_equal(st_path_default_fixture(&env, out, sizeof out, &err), ST_ERR_NOTFOUND);
    assert_non_null(strstr(err.msg, "$STATION_FIXTURE: fixture \"missing\" not found"));
    /* Nothing anywhere. */
    st_path_env bare = { 0 };
    assert_int_equal(st_path_default_fixture(&bare, out, sizeof out, &err), ST_ERR_NOTFOUND);
    assert_non_null(strstr(err.msg, "--fixture"));
}

static void test_share_of_exe(void **state)
{
    char out[1024];
    st_err err = { 0 };
    assert_int_equal(st_path_share_of_exe("/usr/bin/station", out, sizeof out, &err), 0);
    assert_string_equal(out, "/usr/share/station");
    assert_int_equal(st_path_share_of_exe("/opt/st//x/../bin/./station", out, sizeof out,
                                          &err), 0);
    assert_string_equal(out, "/opt/st/share/station");
    assert_int_equal(st_path_share_of_exe("/station", out, sizeof out, &err), 0);
    assert_string_equal(out, "/share/station");
    char cwd[1024], want[1100];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(st_path_share_of_exe("bin/station", out, sizeof out, &err), 0);
    snprintf(want, sizeof want, "%s/share/station", strcmp(cwd, "/") ? cwd : "");
    assert_string_equal(out, want);
    char small[8];
    assert_int_equal(st_path_share_of_exe("/usr/bin/station", small, sizeof small, &err),
                     ST_ERR_INVAL);
    /* This test's own executable: <build>/station/test_paths -> <build>/share/station. */
    st_path_env env;
    char sh[1024];
    st_path_env_from_process(&env, sh, sizeof sh);
    assert_non_null(env.share);
    char bin[PATH_MAX], want_share[PATH_MAX + 32];
    assert_non_null(realpath(STATION_BINARY_DIR, bin)); /* /proc/self/exe is resolved too */
    snprintf(want_share, sizeof want_share, "%s/share/station", bin);
    assert_string_equal(env.share, want_share);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_paths_as_given),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_default_fixture),
        cmocka_unit_test(test_share_of_exe),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
