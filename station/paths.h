/* Where the station finds fixtures and jobs: a search path, never a compiled-in build-tree
 * path. A name with a '/' (or one that exists in the working directory) is a path and is
 * used as given; a bare name is looked up in order in
 *   $XDG_CONFIG_HOME/station (default ~/.config/station), /etc/station, and the installed
 *   share directory (<dir of the executable>/../share/station),
 * under fixtures/ or jobs/, with ".yaml" appended when the name has no extension. The
 * default fixture is $STATION_FIXTURE (itself looked up the same way), else fixture.yaml in
 * the two configuration directories, else fixtures/virtual.yaml in the share directory.
 * The share directory is found from the executable, so an installed or moved binary looks
 * beside itself; the build tree has build/share/station with links to the source tree's
 * fixtures/ and jobs/ (station/CMakeLists.txt), so a binary run from the build tree finds
 * them by the same rule, and a copy of it elsewhere does not. */
#ifndef STATION_PATHS_H
#define STATION_PATHS_H

#include <stddef.h>

#include "station/core/err.h"

typedef enum st_path_kind {
    ST_PATH_FIXTURE = 0, /* fixtures/ */
    ST_PATH_JOB = 1,     /* jobs/ */
} st_path_kind;

/* What the search depends on. Strings are borrowed; NULL or "" means unset. */
typedef struct st_path_env {
    const char *fixture_env; /* $STATION_FIXTURE */
    const char *xdg_config;  /* $XDG_CONFIG_HOME */
    const char *home;        /* $HOME */
    const char *sysconf;     /* "/etc/station" */
    const char *share;       /* the installed share directory, e.g. /usr/share/station */
} st_path_env;

/* Fill env from the process: getenv(), /etc/station, and the share directory next to
 * /proc/self/exe (written to share_buf, cap bytes; unset when the executable's path is
 * unknown). The strings stay valid while the environment and share_buf do. */
void st_path_env_from_process(st_path_env *env, char *share_buf, size_t cap);

/* The share directory for an executable at exe_path: <dirname>/../share/station, made
 * absolute and normalised ("/usr/bin/station" -> "/usr/share/station"). 0 or a negative
 * ST_ERR_*. */
int st_path_share_of_exe(const char *exe_path, char *out, size_t cap, st_err *err);

/* Resolve a fixture or job name given on the command line (see the top of this file) into
 * out (cap bytes). ST_ERR_NOTFOUND names every place that was tried. */
int st_path_resolve(const st_path_env *env, st_path_kind kind, const char *name, char *out,
                    size_t cap, st_err *err);

/* The fixture to use when none is given on the command line (see the top of this file).
 * ST_ERR_NOTFOUND names every place that was tried. */
int st_path_default_fixture(const st_path_env *env, char *out, size_t cap, st_err *err);

/* What the CLI calls: name (NULL for a fixture: the default) through the search path of
 * this process (st_path_env_from_process). */
int st_path_find(st_path_kind kind, const char *name, char *out, size_t cap, st_err *err);

#endif
