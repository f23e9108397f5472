/* The fixture and job search path (paths.h): configuration directories, /etc/station, and
 * the share directory found from the executable's own location. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "station/core/text.h"
#include "station/paths.h"

#define MAX_DIRS 3

/* stat() of a file with a 64-bit inode number or size fails with EOVERFLOW under a 32-bit
 * off_t/ino_t (armhf without the build's _FILE_OFFSET_BITS=64, cmake/StationTargets.cmake),
 * and a 32-bit time_t ends in 2038: refuse to build that way. */
_Static_assert(sizeof(off_t) == 8 && sizeof(ino_t) == 8, "64-bit file offsets required");
_Static_assert(sizeof(time_t) == 8, "64-bit time_t required");

static bool set(const char *s)
{
    return s && *s;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Anything by that name (a FIFO, a directory): the loader then says what is wrong with it. */
static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

void st_path_env_from_process(st_path_env *env, char *share_buf, size_t cap)
{
    memset(env, 0, sizeof *env);
    env->fixture_env = getenv("STATION_FIXTURE");
    env->xdg_config = getenv("XDG_CONFIG_HOME");
    env->home = getenv("HOME");
    env->sysconf = "/etc/station";
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0 || cap == 0)
        return;
    exe[n] = '\0';
    if (st_path_share_of_exe(exe, share_buf, cap, NULL) == 0)
        env->share = share_buf;
}

int st_path_share_of_exe(const char *exe_path, char *out, size_t cap, st_err *err)
{
    char dir[4096];
    if (exe_path[0] == '/') {
        st_strlcpy(dir, exe_path, sizeof dir);
    } else {
        char cwd[2048];
        if (!getcwd(cwd, sizeof cwd))
            return st_err_set(err, st_err_from_errno(errno), "paths: working directory: %s",
                              strerror(errno));
        snprintf(dir, sizeof dir, "%s/%s", cwd, exe_path);
    }
    /* Normalise textually: drop the file name, "." and ".." components, then the last
     * directory (bin/), and append share/station. */
    char *parts[256];
    size_t np = 0;
    for (char *save = NULL, *p = strtok_r(dir, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
        if (strcmp(p, ".") == 0)
            continue;
        if (strcmp(p, "..") == 0) {
            if (np)
                np--;
            continue;
        }
        if (np == sizeof parts / sizeof parts[0])
            return st_err_set(err, ST_ERR_INVAL, "paths: executable path too deep");
        parts[np++] = p;
    }
    if (np < 1)
        return st_err_set(err, ST_ERR_INVAL, "paths: \"%s\" is not an executable's path",
                          exe_path);
    np--; /* the executable */
    if (np > 0)
        np--; /* its directory (bin/) */
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < np; i++) {
        int w = snprintf(out + len, cap - len, "/%s", parts[i]);
        if (w < 0 || (size_t)w >= cap - len)
            return st_err_set(err, ST_ERR_INVAL, "paths: share directory path too long");
        len += (size_t)w;
    }
    int w = snprintf(out + len, cap - len, "/share/station");
    if (w < 0 || (size_t)w >= cap - len)
        return st_err_set(err, ST_ERR_INVAL, "paths: share directory path too long");
    return 0;
}

/* The configuration directories, then the share directory, in search order. */
static size_t search_dirs(const st_path_env *env, bool with_share, char dirs[][2048])
{
    size_t n = 0;
    if (set(env->xdg_config))
        snprintf(dirs[n++], 2048, "%s/station", env->xdg_config);
    else if (set(env->home))
        snprintf(dirs[n++], 2048, "%s/.config/station", env->home);
    if (set(env->sysconf))
        snprintf(dirs[n++], 2048, "%s", env->sysconf);
    if (with_share && set(env->share))
        snprintf(dirs[n++], 2048, "%s", env->share);
    return n;
}

/* Append "path" to the list of places tried (for the error message; the name in it is
 * untrusted text, shown printable). */
static void tried_add(char *tried, size_t cap, const char *path)
{
    char shown[1024];
    st_text_printable(path, shown, sizeof shown);
    size_t len = strlen(tried);
    snprintf(tried + len, cap - len, "%s%s", len ? ", " : "", shown);
}

static int try_path(const char *path, char *out, size_t cap, char *tried, size_t tcap,
                    st_err *err, bool *found)
{
    tried_add(tried, tcap, path);
    if (!is_file(path))
        return 0;
    if (strlen(path) >= cap)
        return st_err_set(err, ST_ERR_INVAL, "paths: \"%s\": path too long", path);
    st_strlcpy(out, path, cap);
    *found = true;
    return 0;
}

int st_path_resolve(const st_path_env *env, st_path_kind kind, const char *name, char *out,
                    size_t cap, st_err *err)
{
    const char *what = kind == ST_PATH_JOB ? "job" : "fixture";
    const char *sub = kind == ST_PATH_JOB ? "jobs" : "fixtures";
    if (!set(name))
        return st_err_set(err, ST_ERR_INVAL, "%s: empty name", what);
    /* A path, or anything by that name here: as given (the loader reports what is wrong with
     * it: missing, a FIFO, a directory). */
    if (strchr(name, '/') || exists(name)) {
        if (strlen(name) >= cap)
            return st_err_set(err, ST_ERR_INVAL, "%s: path too long", what);
        st_strlcpy(out, name, cap);
        return 0;
    }
    char dirs[MAX_DIRS][2048];
    size_t nd = search_dirs(env, true, dirs);
    const char *dot = strrchr(name, '.');
    bool add_ext = !dot || dot == name;
    char tried[4096] = "";
    tried_add(tried, sizeof tried, name);
    bool found = false;
    for (size_t i = 0; i < nd && !found; i++) {
        char path[4300];
        snprintf(path, sizeof path, "%s/%s/%s", dirs[i], sub, name);
        int rc = try_path(path, out, cap, tried, sizeof tried, err, &found);
        if (rc < 0 || found)
            return rc;
        if (add_ext) {
            snprintf(path, sizeof path, "%s/%s/%s.yaml", dirs[i], sub, name);
            rc = try_path(path, out, cap, tried, sizeof tried, err, &found);
            if (rc < 0 || found)
                return rc;
        }
    }
    char shown[128];
    st_text_printable(name, shown, sizeof shown);
    return st_err_set(err, ST_ERR_NOTFOUND, "%s \"%s\" not found (looked for %s)", what, shown,
                      tried);
}

int st_path_default_fixture(const st_path_env *env, char *out, size_t cap, st_err *err)
{
    if (set(env->fixture_env)) {
        int rc = st_path_resolve(env, ST_PATH_FIXTURE, env->fixture_env, out, cap, err);
        if (rc < 0)
            st_err_prefix(err, "$STATION_FIXTURE");
        return rc;
    }
    char dirs[MAX_DIRS][2048];
    size_t nd = search_dirs(env, false, dirs);
    char tried[4096] = "";
    bool found = false;
    for (size_t i = 0; i < nd; i++) {
        char path[2100];
        snprintf(path, sizeof path, "%s/fixture.yaml", dirs[i]);
        int rc = try_path(path, out, cap, tried, sizeof tried, err, &found);
        if (rc < 0 || found)
            return rc;
    }
    if (set(env->share)) {
        char path[2100];
        snprintf(path, sizeof path, "%s/fixtures/virtual.yaml", env->share);
        int rc = try_path(path, out, cap, tried, sizeof tried, err, &found);
        if (rc < 0 || found)
            return rc;
    }
    return st_err_set(err, ST_ERR_NOTFOUND, "no fixture given and no default fixture found "
                      "(looked for %s; give one with --fixture FILE or $STATION_FIXTURE)",
                      tried[0] ? tried : "nothing: no $HOME and no share directory");
}

int st_path_find(st_path_kind kind, const char *name, char *out, size_t cap, st_err *err)
{
    st_path_env env;
    char share[4096];
    st_path_env_from_process(&env, share, sizeof share);
    if (!name && kind == ST_PATH_FIXTURE)
        return st_path_default_fixture(&env, out, cap, err);
    return st_path_resolve(&env, kind, name, out, cap, err);
}
