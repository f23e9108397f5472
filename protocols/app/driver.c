/* The application driver (see driver.h): wait-for-app over USB (enumeration on the slot's
 * port) or CAN (the Klipper CAN admin QUERY). */
#include "protocols/app/driver.h"

#include <stdlib.h>
#include <string.h>

#include "protocols/canadmin/canadmin.h"
#include "station/core/clock.h"
#include "station/core/text.h"

/* After a start the application needs time to start and enumerate. */
#define WAIT_FOR_APP_DEFAULT_MS 10000u
#define APP_QUERY_WINDOW_MS 250u

typedef struct app_opts {
    st_usb_id usb;            /* the application's USB id (0:0 with can) */
    bool can;                 /* on the CAN bus (the UUID answers as Klipper) */
} app_opts;

static int parse_wait(const st_job_parse *p, const st_ynode *node, void **out, st_err *err)
{
    app_opts *o = calloc(1, sizeof *o);
    if (!o)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    int rc = 0;
    if (node) {
        rc = st_ymap_get_bool(p->doc, node, p->field, "can", false, &o->can, err);
        if (!rc)
            rc = st_job_get_usb_id(p, node, p->field, "usb", "1d50:614e", &o->usb, err);
    }
    if (!rc && !o->usb.vid && !o->can)
        rc = st_ydoc_error(p->doc, p->at, p->field, err, ST_ERR_INVAL,
                           "wait-for-app needs the application's USB id (usb: \"1d50:614e\") "
                           "or can: true");
    if (rc) {
        free(o);
        return rc;
    }
    *out = o;
    return 0;
}

/* The unit's UUID answers QUERY as the Klipper application. */
static int wait_can(st_step_call *c, unsigned timeout_ms, st_err *err)
{
    const st_run_env *env = c->env;
    if (!env->can || !env->can_uuid || !env->can_uuid[0])
        return st_err_set(err, ST_ERR_INVAL, "no CAN interface or UUID for this unit");
    st_can_uuid want;
    int rc = st_can_uuid_parse(env->can_uuid, &want, err);
    st_can_link *l = NULL;
    if (!rc)
        rc = env->can->ops->open_link(env->can, &l, err);
    if (rc)
        return rc;
    st_deadline d = st_deadline_in_ms(timeout_ms);
    char last[32] = "nothing";
    rc = ST_ERR_TIMEOUT;
    while (rc == ST_ERR_TIMEOUT && !st_deadline_passed(d)) {
        st_canadmin_node nodes[32];
        int n = st_canadmin_query(l, APP_QUERY_WINDOW_MS, nodes, 32, err);
        if (n < 0) {
            rc = n;
            break;
        }
        for (int i = 0; i < n && i < 32; i++) {
            if (!st_can_uuid_equal(&nodes[i].uuid, &want))
                continue;
            st_canadmin_app_name(&nodes[i], last, sizeof last);
            if (nodes[i].app == ST_CANADMIN_APP_KLIPPER)
                rc = 0;
        }
    }
    st_can_link_close(l);
    if (rc == ST_ERR_TIMEOUT)
        return st_err_set(err, ST_ERR_TIMEOUT,
                          "%s did not answer as the Klipper application within %u ms (it answered "
                          "as: %s)", env->can_uuid, timeout_ms, last);
    if (!rc)
        st_rmap_str(c->rec, "app", "klipper (answers QUERY on the CAN bus)");
    return rc;
}

static int step_wait(st_step_call *c, st_err *err)
{
    const app_opts *o = c->opts;
    st_usb_dev_info app;
    unsigned t = c->step->timeout_ms ? c->step->timeout_ms : WAIT_FOR_APP_DEFAULT_MS;
    if (o->can)
        return wait_can(c, t, err);
    if (!c->env->fslot || !c->env->fslot->usb_port[0])
        return st_err_set(err, ST_ERR_UNSUPPORTED,
                          "the unit is in no fixture slot with a USB port, so the station cannot "
                          "see its application enumerate");
    int rc = st_usb_host_wait(c->env->usb, o->usb.vid, o->usb.pid, c->env->fslot->usb_port, t,
                              &app, err);
    if (rc) {
        /* Say what the port does hold: a unit running a build with another USB id (its
         * own device descriptor names it) is not the same failure as a unit that is gone. */
        st_usb_dev_info *list = NULL;
        size_t n = 0;
        if (rc == ST_ERR_TIMEOUT || rc == ST_ERR_NOTFOUND) {
            if (st_usb_host_list(c->env->usb, &list, &n, NULL) < 0)
                n = 0;
        }
        for (size_t i = 0; i < n; i++) {
            if (strcmp(list[i].port_path, c->env->fslot->usb_port) != 0)
                continue;
            char m[ST_USB_STRING_MAX], pr[ST_USB_STRING_MAX];
            st_err_prefix(err, "the port has %04x:%04x (\"%s\" \"%s\") instead", list[i].vid,
                          list[i].pid, st_text_printable(list[i].manufacturer, m, sizeof m),
                          st_text_printable(list[i].product, pr, sizeof pr));
            break;
        }
        free(list);
        return st_err_wrap(err, rc, "waiting for the application %04x:%04x", o->usb.vid, o->usb.pid);
    }
    char buf[ST_USB_STRING_MAX];
    st_rnode *a = st_rmap_map(c->rec, "app_usb");
    st_rmap_fmt(a, "id", "%04x:%04x", app.vid, app.pid);
    st_rmap_str(a, "manufacturer", st_text_printable(app.manufacturer, buf, sizeof buf));
    st_rmap_str(a, "product", st_text_printable(app.product, buf, sizeof buf));
    st_rmap_str(a, "serial", st_text_printable(app.serial, buf, sizeof buf));
    st_rmap_str(a, "port_path", app.port_path);
    return 0;
}

static void needs_wait(const st_job *job, const void *section, const void *opts, st_slot_needs *out)
{
    (void)job, (void)section;
    const app_opts *o = opts;
    out->what |= o && o->can ? ST_NEED_CAN : ST_NEED_USB;
}

static const st_step_opt wait_opts[] = {
    { "usb", "the application's USB id, \"vid:pid\": it must enumerate on the slot's port" },
    { "can", "true: the unit's CAN UUID must answer QUERY as the Klipper application" },
    { NULL, NULL },
};

static const st_step_def steps[] = {
    { .name = "wait-for-app",
      .summary = "the application runs: it enumerates on the slot's USB port (usb) or answers "
                 "on the CAN bus (can); default timeout 10 s",
      .records = "app_usb (id, manufacturer, product, serial, port_path) or app",
      .flags = ST_STEP_AFTER_RECOVERY, .opts = wait_opts, .parse = parse_wait, .free_opts = free,
      .needs = needs_wait, .run = step_wait },
    { .name = NULL },
};

const st_driver st_app_driver = {
    .name = "app",
    .summary = "the unit's running application (after any flashing protocol)",
    .steps = steps,
};
