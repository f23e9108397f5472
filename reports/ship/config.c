/* Fleet configuration file loader (see config.h). */
#include "reports/ship/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "station/core/text.h"
#include "station/core/yamldoc.h"

#define DEFAULT_PATH "/etc/station/fleet.yaml"

bool st_fleet_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= ST_FLEET_NAME_MAX || name[0] == '.' || name[0] == '-')
        return false;
    return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

const char *st_fleet_cfg_default(void)
{
    const char *env = getenv("STATION_FLEET_CONFIG");
    if (env && *env)
        return env;
    return access(DEFAULT_PATH, F_OK) == 0 ? DEFAULT_PATH : NULL;
}

static int get_str(const st_ydoc *d, const st_ynode *map, const char *field, const char *key,
                   bool required, char *out, size_t cap, st_err *err)
{
    const st_ynode *v = NULL;
    char f[128];
    int rc = st_ymap_node(d, map, field, key, required, &v, err);
    if (rc || !v)
        return rc;
    return st_ynode_str(d, v, st_yfield(f, sizeof f, field, key), out, cap, err);
}

static int check_mode(const char *path, st_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return st_err_set(err, st_err_from_errno(errno), "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return st_err_set(err, ST_ERR_PERM, "%s: not a regular file", path);
    if (st.st_uid != geteuid())
        return st_err_set(err, ST_ERR_PERM,
                          "%s: owned by uid %u, not by the user running the station (uid %u)",
                          path, (unsigned)st.st_uid, (unsigned)geteuid());
    if (st.st_mode & 077)
        return st_err_set(err, ST_ERR_PERM,
                          "%s: mode %04o: %s by %s; it holds passwords: chmod 600 it", path,
                          (unsigned)(st.st_mode & 07777),
                          st.st_mode & 044 ? "readable" : "writable",
                          st.st_mode & 007 ? "others" : "its group");
    return 0;
}

static int load_db(const st_ydoc *d, const st_ynode *m, st_fleet_cfg *c, st_err *err)
{
    static const char *const keys[] = { "conninfo", "password", NULL };
    int rc = st_ymap_check_strict(d, m, "database", keys, err);
    if (!rc)
        rc = get_str(d, m, "database", "conninfo", true, c->db_conninfo, sizeof c->db_conninfo, err);
    if (!rc)
        rc = get_str(d, m, "database", "password", false, c->db_password, sizeof c->db_password, err);
    c->has_db = rc == 0;
    return rc;
}

static int load_mqtt(const st_ydoc *d, const st_ynode *m, st_fleet_cfg *c, st_err *err)
{
    static const char *const keys[] = { "host", "port", "username", "password", "prefix",
                                        "keepalive", "tls", NULL };
    static const char *const tkeys[] = { "cafile", "certfile", "keyfile", NULL };
    uint64_t v;
    const st_ynode *n = NULL;
    int rc = st_ymap_check_strict(d, m, "mqtt", keys, err);
    if (!rc)
        rc = get_str(d, m, "mqtt", "host", true, c->mqtt_host, sizeof c->mqtt_host, err);
    if (!rc)
        rc = get_str(d, m, "mqtt", "username", false, c->mqtt_user, sizeof c->mqtt_user, err);
    if (!rc)
        rc = get_str(d, m, "mqtt", "password", false, c->mqtt_password, sizeof c->mqtt_password, err);
    if (!rc)
        rc = get_str(d, m, "mqtt", "prefix", false, c->mqtt_prefix, sizeof c->mqtt_prefix, err);
    if (!rc && !st_fleet_name_ok(c->mqtt_prefix))
        rc = st_ydoc_error(d, st_ymap_get(d, m, "prefix"), "mqtt.prefix", err, ST_ERR_INVAL,
                           "\"%s\" is not a topic level of [A-Za-z0-9._-]", c->mqtt_prefix);
    if (!rc && !(rc = st_ymap_node(d, m, "mqtt", "tls", false, &n, err)) && n) {
        rc = st_ymap_check_strict(d, n, "mqtt.tls", tkeys, err);
        if (!rc)
            rc = get_str(d, n, "mqtt.tls", "cafile", true, c->tls_cafile, sizeof c->tls_cafile, err);
        if (!rc)
            rc = get_str(d, n, "mqtt.tls", "certfile", false, c->tls_certfile, sizeof c->tls_certfile, err);
        if (!rc)
            rc = get_str(d, n, "mqtt.tls", "keyfile", false, c->tls_keyfile, sizeof c->tls_keyfile, err);
        if (!rc && !c->tls_certfile[0] != !c->tls_keyfile[0])
            rc = st_ydoc_error(d, n, "mqtt.tls", err, ST_ERR_INVAL,
                               "certfile and keyfile go together");
    }
    c->mqtt_port = c->tls_cafile[0] ? 8883 : 1883;
    if (!rc && !(rc = st_ymap_node(d, m, "mqtt", "port", false, &n, err)) && n &&
        !(rc = st_ynode_u64(d, n, "mqtt.port", 1, 65535, &v, err)))
        c->mqtt_port = (unsigned)v;
    if (!rc && !(rc = st_ymap_node(d, m, "mqtt", "keepalive", false, &n, err)) && n &&
        !(rc = st_ynode_u64(d, n, "mqtt.keepalive", 5, 3600, &v, err)))
        c->mqtt_keepalive = (unsigned)v;
    if (!c->mqtt_user[0])
        st_strlcpy(c->mqtt_user, c->station, sizeof c->mqtt_user);
    c->has_mqtt = rc == 0;
    return rc;
}

int st_fleet_cfg_load(const char *path, st_fleet_cfg *out, st_err *err)
{
    static const char *const keys[] = { "station", "reports", "state", "database", "mqtt", NULL };
    memset(out, 0, sizeof *out);
    st_strlcpy(out->path, path, sizeof out->path);
    st_strlcpy(out->mqtt_prefix, "station", sizeof out->mqtt_prefix);
    out->mqtt_keepalive = 30;
    int rc = check_mode(path, err);
    if (rc)
        return rc;
    st_ydoc *d = NULL;
    st_ydoc_opts o = { .kind = "fleet configuration", .max_bytes = 1 << 20,
                       .empty_hint = "see reports/FLEET.md" };
    if ((rc = st_ydoc_load_ex(path, &o, &d, err)) != 0)
        return rc;
    const st_ynode *root = st_ydoc_root(d), *n = NULL;
    rc = st_ymap_check_strict(d, root, "", keys, err);
    if (!rc)
        rc = get_str(d, root, "", "station", true, out->station, sizeof out->station, err);
    if (!rc && !st_fleet_name_ok(out->station))
        rc = st_ydoc_error(d, st_ymap_get(d, root, "station"), "station", err, ST_ERR_INVAL,
                           "\"%s\" is not a station name (1-63 of [A-Za-z0-9._-], no leading . or -)",
                           out->station);
    if (!rc)
        rc = get_str(d, root, "", "reports", false, out->reports, sizeof out->reports, err);
    if (!rc)
        rc = get_str(d, root, "", "state", false, out->state, sizeof out->state, err);
    if (!rc && !(rc = st_ymap_node(d, root, "", "database", false, &n, err)) && n)
        rc = load_db(d, n, out, err);
    if (!rc && !(rc = st_ymap_node(d, root, "", "mqtt", false, &n, err)) && n)
        rc = load_mqtt(d, n, out, err);
    if (!rc && !out->mqtt_port)
        out->mqtt_port = 1883;
    st_ydoc_free(d);
    return rc;
}
