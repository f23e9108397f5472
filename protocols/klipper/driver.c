/* The Klipper driver (see driver.h): section `klipper:`, steps identify / alive / sample,
 * the image pre-flight, and the image/mcu CLI commands. */
#include "protocols/klipper/driver.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocols/canadmin/canadmin.h"
#include "protocols/klipper/klipper.h"
#include "protocols/link/can_model.h"
#include "protocols/link/serial_ports.h"
#include "station/core/clock.h"
#include "station/core/measure.h"
#include "station/core/text.h"

#define OPEN_DEFAULT_MS 5000u   /* the application's serial port / node to appear */
#define ALIVE_DEFAULT_MS 1000u
#define ALIVE_DEFAULT_TOL 0.01  /* 1 %: crystals are far better; the host's timing is not */
#define SAMPLE_DEFAULT_COUNT 100u
#define SAMPLE_DEFAULT_MS 5000u

typedef enum klp_tr { KLP_T_ANY = 0, KLP_T_USB, KLP_T_CAN } klp_tr;
static const char *const tr_names[] = { "any", "usb", "can", NULL };

typedef struct klp_section {
    klp_tr transport;      /* how the job's units run their application (any: not said) */
    char version[128];     /* the version the job pins ("" none) */
    st_usb_id usb;         /* the application's USB id */
    uint32_t nodeid;       /* CAN node id for the first unit (0: default) */
    uint32_t timeout_ms;
} klp_section;

/* ---- YAML helpers ------------------------------------------------------------------------ */

static int get_num(const st_job_parse *p, const st_ynode *map, const char *field,
                   const char *key, bool *has, double *out, st_err *err)
{
    const char *t = NULL;
    int rc = st_ymap_get_str(p->doc, map, field, key, false, &t, err);
    if (rc || !t)
        return rc;
    char *end;
    errno = 0;
    double v = strtod(t, &end);
    char sub[160];
    if (!*t || *end || errno || !isfinite(v))
        return st_ydoc_error(p->doc, st_ymap_get(p->doc, map, key),
                             st_yfield(sub, sizeof sub, field, key), err, ST_ERR_INVAL,
                             "expected a number, got \"%.40s\"", t);
    *has = true;
    *out = v;
    return 0;
}

static int get_text(const st_job_parse *p, const st_ynode *map, const char *field,
                    const char *key, char *out, size_t cap, st_err *err)
{
    const char *t = NULL;
    int rc = st_ymap_get_str(p->doc, map, field, key, false, &t, err);
    if (rc || !t)
        return rc;
    char sub[160];
    if (!*t || strlen(t) >= cap)
        return st_ydoc_error(p->doc, st_ymap_get(p->doc, map, key),
                             st_yfield(sub, sizeof sub, field, key), err, ST_ERR_INVAL,
                             "expected text of 1..%zu characters", cap - 1);
    st_strlcpy(out, t, cap);
    return 0;
}

/* ---- section ----------------------------------------------------------------------------- */

static int section_parse(const st_job_parse *p, const st_ynode *k, void **out, st_err *err)
{
    klp_section *s = calloc(1, sizeof *s);
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    s->usb = p->job->mcu->usb_klipper;
    s->timeout_ms = OPEN_DEFAULT_MS;
    int rc = 0;
    if (k) {
        static const char *const kk[] = { "transport", "version", "usb", "nodeid", "timeout_ms",
                                          NULL };
        const st_ydoc *doc = p->doc;
        /* KLP_T_USB + index (absent: KLP_T_ANY). */
        static const char *const transports[] = { "usb", "can", NULL };
        unsigned t = UINT_MAX;
        rc = st_ymap_check_keys(doc, k, "klipper", kk, err);
        if (!rc)
            rc = st_job_get_choice(p, k, "klipper", "transport", transports, NULL, &t, err);
        if (t != UINT_MAX)
            s->transport = (klp_tr)(KLP_T_USB + t);
        if (!rc)
            rc = get_text(p, k, "klipper", "version", s->version, sizeof s->version, err);
        if (!rc)
            rc = st_job_get_usb_id(p, k, "klipper", "usb", "1d50:614e", &s->usb, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, k, "klipper", "nodeid", false, 0, 100, &s->nodeid, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, k, "klipper", "timeout_ms", false, 100, 60000,
                                 &s->timeout_ms, err);
    }
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* ---- pre-flight -------------------------------------------------------------------------- */

/* Refuse an image whose embedded dictionary says it cannot be what the job's units run. */
static int preflight(const st_job *job, const void *section, st_image *const images[],
                     st_err *err)
{
    const klp_section *sec = section;
    for (size_t i = 0; i < job->nimages; i++) {
        const st_image *img = images[i];
        size_t off, zl;
        st_klp_dict *d = NULL;
        if (!img || st_klp_image_dict(img->data, img->size, &off, &zl, &d, NULL) != 0)
            continue; /* no Klipper build inside: nothing to say */
        const char *role = job->images[i].role;
        char v[128], m[64];
        const char *mcu = st_klp_dict_config_str(d, "MCU");
        uint32_t bitrate;
        st_klp_transport t = st_klp_dict_transport(d, &bitrate);
        int rc = 0;
        if (mcu && strcasecmp(mcu, job->mcu->name) != 0) {
            rc = st_err_set(err, ST_ERR_MISMATCH,
                            "images.%s: built for MCU %s (its Klipper dictionary), the job "
                            "targets %s", role, st_text_printable(mcu, m, sizeof m),
                            job->mcu->name);
        } else if (sec && sec->transport != KLP_T_ANY &&
                   ((sec->transport == KLP_T_USB && t != ST_KLP_TRANSPORT_USB) ||
                    (sec->transport == KLP_T_CAN && t != ST_KLP_TRANSPORT_CAN))) {
            rc = st_err_set(err, ST_ERR_MISMATCH,
                            "images.%s: a %s build (its Klipper dictionary%s), but the job's "
                            "units speak %s (klipper.transport): the unit would not be "
                            "reachable after the flash", role, st_klp_transport_name(t),
                            t == ST_KLP_TRANSPORT_CAN ? " has CANBUS_FREQUENCY" : "",
                            tr_names[sec->transport]);
        } else if (sec && sec->version[0] && strcmp(st_klp_dict_version(d), sec->version) != 0) {
            rc = st_err_set(err, ST_ERR_MISMATCH,
                            "images.%s: holds version \"%s\", the job pins \"%s\" "
                            "(klipper.version)", role,
                            st_text_printable(st_klp_dict_version(d), v, sizeof v), sec->version);
        }
        st_klp_dict_free(d);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- session ----------------------------------------------------------------------------- */

typedef struct klp_session {
    st_stream *s;
    st_can_link *adm, *data;
    st_klp_host *h;
    bool identified;
    bool streaming_cmd; /* a sample step may have left a stream on */
    char stop_cmd[128];
} klp_session;

static void session_close(void *p)
{
    klp_session *s = p;
    if (!s)
        return;
    st_klp_host_close(s->h);
    st_stream_close(s->s);
    if (s->data)
        st_can_link_close(s->data);
    if (s->adm)
        st_can_link_close(s->adm);
    free(s);
}

static klp_tr section_transport(const st_step_call *c)
{
    const klp_section *sec = c->section;
    return sec && sec->transport != KLP_T_ANY ? sec->transport : KLP_T_USB;
}

static int session_open(const st_step_call *c, void **out, st_err *err)
{
    const klp_section *sec = c->section;
    const st_run_env *env = c->env;
    klp_session *s = calloc(1, sizeof *s);
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    unsigned timeout = sec ? sec->timeout_ms : OPEN_DEFAULT_MS;
    int rc;
    if (section_transport(c) == KLP_T_CAN) {
        if (!env->can || !env->can_uuid || !env->can_uuid[0]) {
            session_close(s);
            return st_err_set(err, ST_ERR_INVAL,
                              "no CAN interface or UUID for this unit (give the slot can.iface "
                              "and can.uuid in the fixture)");
        }
        st_can_uuid u;
        uint8_t nodeid = (uint8_t)((sec && sec->nodeid ? sec->nodeid
                                                       : ST_CANADMIN_NODEID_KLIPPER_FIRST) +
                                   env->unit_index);
        rc = st_can_uuid_parse(env->can_uuid, &u, err);
        if (!rc)
            rc = env->can->ops->open_link(env->can, &s->adm, err);
        if (!rc)
            rc = env->can->ops->open_link(env->can, &s->data, err);
        if (!rc)
            rc = st_canadmin_set_nodeid(s->adm, ST_CANADMIN_SET_KLIPPER_NODEID, &u, nodeid, err);
        if (!rc)
            rc = st_can_stream_open(s->data, st_canadmin_nodeid_tx_id(nodeid),
                                    st_canadmin_nodeid_rx_id(nodeid), &s->s, err);
        if (!rc) {
            st_rmap_str(c->rec, "link", "can");
            st_rmap_int(c->rec, "can_nodeid", nodeid);
            st_run_identify(c->run, env->can_uuid);
        }
    } else {
        if (!env->fslot || !env->fslot->usb_port[0] || !env->serial) {
            session_close(s);
            return st_err_set(err, ST_ERR_INVAL,
                              "the Klipper application over USB needs the slot's usb_port in "
                              "the fixture");
        }
        st_usb_id id = sec ? sec->usb : c->job->mcu->usb_klipper;
        st_stream_line line = { .baud = 250000, .data_bits = 8, .parity = 'N', .stop_bits = 1 };
        rc = st_serial_host_open(env->serial, env->fslot->usb_port, id.vid, id.pid, &line,
                                 timeout, &s->s, err);
        if (rc)
            st_err_prefix(err, "the application (%04x:%04x) at port %s", id.vid, id.pid,
                          env->fslot->usb_port);
        else {
            st_rmap_str(c->rec, "link", "usb");
            st_run_identify(c->run, env->fslot->usb_port); /* the first identity wins */
        }
    }
    if (!rc)
        rc = st_klp_host_open(s->s, env->log, &s->h, err);
    if (rc) {
        session_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* After a failure: stop a stream a sample step started (best effort). */
static void session_abandon(const st_step_call *c, void *p)
{
    klp_session *s = p;
    if (s && s->streaming_cmd && s->identified)
        st_klp_host_send_text(s->h, s->stop_cmd, 200, NULL);
}

static int ensure_identified(const st_step_call *c, klp_session *s, st_err *err)
{
    if (s->identified)
        return 0;
    const klp_section *sec = c->section;
    int rc = st_klp_host_identify(s->h, sec ? sec->timeout_ms : ST_KLP_IDENTIFY_MS, err);
    if (!rc)
        s->identified = true;
    return rc;
}

/* ---- measurements ------------------------------------------------------------------------- */

static void record_measure(st_rnode *rec, const st_measure *m)
{
    st_rnode *seq = st_rmap_seq(rec, "measurements");
    st_rnode *r = st_rseq_add_map(seq);
    st_rmap_str(r, "name", m->name);
    st_rmap_num(r, "value", m->value);
    st_rmap_str(r, "unit", m->unit);
    if (m->lim.has_low)
        st_rmap_num(r, "low", m->lim.low);
    if (m->lim.has_high)
        st_rmap_num(r, "high", m->lim.high);
    if (m->lim.has_marginal_low)
        st_rmap_num(r, "marginal_low", m->lim.marginal_low);
    if (m->lim.has_marginal_high)
        st_rmap_num(r, "marginal_high", m->lim.marginal_high);
    st_rmap_str(r, "outcome", st_measure_outcome_name(m->outcome));
}

/* Record and judge: the first failing measurement fails the step, named. */
static int judge(st_rnode *rec, const st_measure *ms, size_t n, st_err *err)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        record_measure(rec, &ms[i]);
        if (ms[i].outcome == ST_MEASURE_FAIL && !rc) {
            char why[256];
            rc = st_err_set(err, ST_ERR_VERIFY, "measurement %s",
                            st_measure_explain(&ms[i], why, sizeof why));
        }
    }
    return rc;
}

/* ---- identify ----------------------------------------------------------------------------- */

typedef struct identify_opts {
    char version[128];
    bool has_clock;
    double clock_freq;
} identify_opts;

static int parse_identify(const st_job_parse *p, const st_ynode *node, void **out, st_err *err)
{
    identify_opts *o = calloc(1, sizeof *o);
    if (!o)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    int rc = 0;
    if (node) {
        static const char *const kk[] = { "version", "clock_freq", "retries", "timeout_ms",
                                          "image", NULL };
        rc = st_ymap_check_keys(p->doc, node, p->field, kk, err);
        if (!rc)
            rc = get_text(p, node, p->field, "version", o->version, sizeof o->version, err);
        if (!rc)
            rc = get_num(p, node, p->field, "clock_freq", &o->has_clock, &o->clock_freq, err);
    }
    if (rc) {
        free(o);
        return rc;
    }
    *out = o;
    return 0;
}

static int step_identify(st_step_call *c, st_err *err)
{
    klp_session *s = c->session;
    const identify_opts *o = c->opts;
    const klp_section *sec = c->section;
    int rc = ensure_identified(c, s, err);
    if (rc)
        return rc;
    const st_klp_dict *d = st_klp_host_dict(s->h);
    char v[160], m[64], bv[256];
    st_text_printable(st_klp_dict_version(d), v, sizeof v);
    const char *mcu = st_klp_dict_config_str(d, "MCU");
    st_text_printable(mcu ? mcu : "unknown", m, sizeof m);
    int64_t freq = st_klp_dict_config_int(d, "CLOCK_FREQ", 0);
    uint32_t bitrate;
    st_klp_transport t = st_klp_dict_transport(d, &bitrate);
    size_t raw_len;
    const uint8_t *raw = st_klp_host_dict_raw(s->h, &raw_len);
    uint8_t md[ST_SHA256_LEN];
    char hex[2 * ST_SHA256_LEN + 1];
    st_sha256(raw, raw_len, md);
    st_hex(md, sizeof md, false, hex);
    st_rmap_str(c->rec, "version", v);
    st_rmap_str(c->rec, "mcu", m);
    st_rmap_int(c->rec, "clock_freq", freq);
    st_rmap_str(c->rec, "build_versions",
                st_text_printable(st_klp_dict_build_versions(d), bv, sizeof bv));
    st_rmap_str(c->rec, "transport", st_klp_transport_name(t));
    if (bitrate)
        st_rmap_uint(c->rec, "bitrate", bitrate);
    st_rnode *dm = st_rmap_map(c->rec, "dictionary");
    st_rmap_uint(dm, "bytes", raw_len);
    st_rmap_str(dm, "sha256", hex);
    st_rmap_uint(dm, "commands", st_klp_dict_count(d, false));
    st_rmap_uint(dm, "responses", st_klp_dict_count(d, true));
    st_rnode *unit = st_run_unit(c->run);
    st_rmap_str(unit, "firmware_version", v);
    const char *want = o && o->version[0] ? o->version : sec && sec->version[0] ? sec->version : NULL;
    if (want) {
        st_rmap_str(c->rec, "expected_version", want);
        if (strcmp(st_klp_dict_version(d), want) != 0)
            return st_err_set(err, ST_ERR_MISMATCH,
                              "the unit reports version \"%s\", the job expects \"%s\"", v, want);
    }
    if (!mcu || strcasecmp(mcu, c->job->mcu->name) != 0)
        return st_err_set(err, ST_ERR_MISMATCH, "the unit reports MCU %s, the job targets %s", m,
                          c->job->mcu->name);
    if (o && o->has_clock && (double)freq != o->clock_freq)
        return st_err_set(err, ST_ERR_MISMATCH,
                          "the unit reports CLOCK_FREQ %lld, the job expects %.0f",
                          (long long)freq, o->clock_freq);
    /* The build itself, not only its version string: the dictionary the unit sent must be
     * the one in the job's image (two builds of one version differ here; seed 001's K1
     * build is one). */
    size_t ioff, izl;
    st_klp_dict *idict = NULL;
    if (c->image && st_klp_image_dict(c->image->data, c->image->size, &ioff, &izl, &idict,
                                      NULL) == 0) {
        st_klp_dict_free(idict);
        bool same = izl == raw_len && memcmp(c->image->data + ioff, raw, raw_len) == 0;
        st_rmap_bool(dm, "matches_image", same);
        if (!same) {
            uint8_t imd[ST_SHA256_LEN];
            char ihex[2 * ST_SHA256_LEN + 1];
            st_sha256(c->image->data + ioff, izl, imd);
            st_hex(imd, sizeof imd, false, ihex);
            return st_err_set(err, ST_ERR_MISMATCH,
                              "the unit's data dictionary (sha256 %.16s..., %zu bytes) is not the "
                              "one in image %s (sha256 %.16s..., %zu bytes): it runs another build",
                              hex, raw_len, c->image->path, ihex, izl);
        }
    }
    return 0;
}

/* ---- alive -------------------------------------------------------------------------------- */

typedef struct alive_opts {
    uint32_t duration_ms;
    double tolerance, marginal;
} alive_opts;

static int parse_alive(const st_job_parse *p, const st_ynode *node, void **out, st_err *err)
{
    alive_opts *o = calloc(1, sizeof *o);
    if (!o)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    o->duration_ms = ALIVE_DEFAULT_MS;
    o->tolerance = ALIVE_DEFAULT_TOL;
    bool has_tol = false, has_marg = false;
    int rc = 0;
    if (node) {
        static const char *const kk[] = { "duration_ms", "tolerance", "marginal", "retries",
                                          "timeout_ms", NULL };
        rc = st_ymap_check_keys(p->doc, node, p->field, kk, err);
        if (!rc)
            rc = st_ymap_get_u32(p->doc, node, p->field, "duration_ms", false, 50, 600000,
                                 &o->duration_ms, err);
        if (!rc)
            rc = get_num(p, node, p->field, "tolerance", &has_tol, &o->tolerance, err);
        if (!rc)
            rc = get_num(p, node, p->field, "marginal", &has_marg, &o->marginal, err);
        if (!rc && (o->tolerance <= 0 || o->tolerance >= 1))
            rc = st_ydoc_error(p->doc, node, p->field, err, ST_ERR_INVAL,
                               "tolerance must be between 0 and 1 (a fraction of CLOCK_FREQ)");
        if (!rc && has_marg && (o->marginal <= 0 || o->marginal > o->tolerance))
            rc = st_ydoc_error(p->doc, node, p->field, err, ST_ERR_INVAL,
                               "marginal must be above 0 and at most the tolerance");
    }
    if (!has_marg)
        o->marginal = o->tolerance / 2;
    if (rc) {
        free(o);
        return rc;
    }
    *out = o;
    return 0;
}

static int step_alive(st_step_call *c, st_err *err)
{
    klp_session *s = c->session;
    const alive_opts *o = c->opts;
    int rc = ensure_identified(c, s, err);
    if (rc)
        return rc;
    st_klp_alive a;
    rc = st_klp_host_alive(s->h, o->duration_ms, &a, err);
    if (rc)
        return rc;
    int64_t freq = st_klp_dict_config_int(st_klp_host_dict(s->h), "CLOCK_FREQ", 1);
    st_rmap_uint(c->rec, "uptime_ticks", a.uptime1);
    st_rmap_num(c->rec, "host_s", (double)a.host_us / 1e6);
    st_rmap_num(c->rec, "clock_hz", a.rate_hz);
    st_rmap_ms(c->rec, "rtt_ms", a.rtt_us);
    st_measure ms[2];
    st_measure_limits l = { .has_low = true, .low = 1 - o->tolerance,
                            .has_high = true, .high = 1 + o->tolerance,
                            .has_marginal_low = true, .marginal_low = 1 - o->marginal,
                            .has_marginal_high = true, .marginal_high = 1 + o->marginal };
    st_measure_set(&ms[0], "clock_rate_ratio", "", a.ratio, &l);
    /* The uptime must advance: the unit did not reboot in between. */
    st_measure_limits adv = { .has_low = true, .low = (double)o->duration_ms / 2000.0 };
    st_measure_set(&ms[1], "uptime_advance", "s",
                   (double)(a.uptime1 - a.uptime0) / (double)freq, &adv);
    return judge(c->rec, ms, 2, err);
}

/* ---- sample ------------------------------------------------------------------------------- */

enum { ST_MIN, ST_MAX, ST_MEAN, ST_STDDEV, ST_GAPS, ST_NSTATS };
static const char *const stat_names[] = { "min", "max", "mean", "stddev", "gaps" };

typedef struct sample_opts {
    char command[128], stop[128], response[64], field[32], unit[ST_MEASURE_UNIT_MAX];
    uint32_t count;
    st_measure_limits lim[ST_NSTATS];
} sample_opts;

static int parse_limits(const st_job_parse *p, const st_ynode *map, const char *field,
                        st_measure_limits *l, st_err *err)
{
    static const char *const kk[] = { "low", "high", "marginal_low", "marginal_high", NULL };
    int rc = st_ymap_check_keys(p->doc, map, field, kk, err);
    if (!rc)
        rc = get_num(p, map, field, "low", &l->has_low, &l->low, err);
    if (!rc)
        rc = get_num(p, map, field, "high", &l->has_high, &l->high, err);
    if (!rc)
        rc = get_num(p, map, field, "marginal_low", &l->has_marginal_low, &l->marginal_low, err);
    if (!rc)
        rc = get_num(p, map, field, "marginal_high", &l->has_marginal_high, &l->marginal_high,
                     err);
    st_err e2;
    if (!rc && st_measure_limits_check(l, &e2))
        rc = st_ydoc_error(p->doc, map, field, err, ST_ERR_INVAL, "%s", e2.msg);
    return rc;
}

static int parse_sample(const st_job_parse *p, const st_ynode *node, void **out, st_err *err)
{
    sample_opts *o = calloc(1, sizeof *o);
    if (!o)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    /* Defaults: the Cartographer's sensor stream. */
    st_strlcpy(o->command, "cartographer_stream en=1", sizeof o->command);
    st_strlcpy(o->stop, "cartographer_stream en=0", sizeof o->stop);
    st_strlcpy(o->response, "cartographer_data", sizeof o->response);
    st_strlcpy(o->field, "data", sizeof o->field);
    o->count = SAMPLE_DEFAULT_COUNT;
    int rc = 0;
    if (node) {
        static const char *const kk[] = { "command", "stop", "response", "field", "count", "unit",
                                          "limits", "retries", "timeout_ms", NULL };
        rc = st_ymap_check_keys(p->doc, node, p->field, kk, err);
        if (!rc)
            rc = get_text(p, node, p->field, "command", o->command, sizeof o->command, err);
        if (!rc)
            rc = get_text(p, node, p->field, "stop", o->stop, sizeof o->stop, err);
        if (!rc)
            rc = get_text(p, node, p->field, "response", o->response, sizeof o->response, err);
        if (!rc)
            rc = get_text(p, node, p->field, "field", o->field, sizeof o->field, err);
        if (!rc)
            rc = get_text(p, node, p->field, "unit", o->unit, sizeof o->unit, err);
        if (!rc)
            rc = st_ymap_get_u32(p->doc, node, p->field, "count", false, 1, 100000, &o->count,
                                 err);
        const st_ynode *lm = NULL;
        if (!rc)
            rc = st_ymap_get_map(p->doc, node, p->field, "limits", false, &lm, err);
        char lf[160];
        st_yfield(lf, sizeof lf, p->field, "limits");
        if (!rc && lm)
            rc = st_ymap_check_keys(p->doc, lm, lf, (const char *const[]){ "min", "max", "mean",
                                                                           "stddev", "gaps", NULL },
                                    err);
        for (int i = 0; !rc && lm && i < ST_NSTATS; i++) {
            const st_ynode *one = NULL;
            char sf[200];
            st_yfield(sf, sizeof sf, lf, stat_names[i]);
            rc = st_ymap_get_map(p->doc, lm, lf, stat_names[i], false, &one, err);
            if (!rc && one)
                rc = parse_limits(p, one, sf, &o->lim[i], err);
        }
    }
    if (rc) {
        free(o);
        return rc;
    }
    *out = o;
    return 0;
}

static int step_sample(st_step_call *c, st_err *err)
{
    klp_session *s = c->session;
    const sample_opts *o = c->opts;
    int rc = ensure_identified(c, s, err);
    if (rc)
        return rc;
    st_strlcpy(s->stop_cmd, o->stop, sizeof s->stop_cmd);
    s->streaming_cmd = true;
    st_klp_stats st;
    unsigned t = c->step->timeout_ms ? c->step->timeout_ms : SAMPLE_DEFAULT_MS;
    rc = st_klp_host_sample(s->h, o->command, o->stop, o->response, o->field, o->count, t, &st,
                            err);
    st_rmap_str(c->rec, "command", o->command);
    st_rmap_str(c->rec, "response", o->response);
    st_rmap_uint(c->rec, "count", st.n);
    if (rc)
        return rc;
    s->streaming_cmd = false;
    double v[ST_NSTATS] = { st.min, st.max, st.mean, st.stddev, (double)st.gaps };
    st_measure ms[ST_NSTATS];
    for (int i = 0; i < ST_NSTATS; i++) {
        char name[ST_MEASURE_NAME_MAX];
        snprintf(name, sizeof name, "%s_%s", o->field, stat_names[i]);
        st_measure_set(&ms[i], name, i == ST_GAPS ? "" : o->unit, v[i], &o->lim[i]);
    }
    return judge(c->rec, ms, ST_NSTATS, err);
}

static void needs(const st_job *job, const void *section, const void *opts, st_slot_needs *out)
{
    (void)job, (void)opts;
    const klp_section *sec = section;
    if (sec && sec->transport == KLP_T_CAN)
        out->what |= ST_NEED_CAN;
    else
        out->what |= ST_NEED_USB | ST_NEED_USB_SERIAL;
}

static const st_step_opt identify_keys[] = {
    { "version", "the version the unit must report (default: klipper.version)" },
    { "clock_freq", "the CLOCK_FREQ the unit must report" },
    { NULL, NULL },
};
static const st_step_opt alive_keys[] = {
    { "duration_ms", "how long to watch the unit's clock (default 1000)" },
    { "tolerance", "allowed clock rate error, a fraction of CLOCK_FREQ (default 0.01)" },
    { "marginal", "rate error beyond which the result is marginal (default tolerance/2)" },
    { NULL, NULL },
};
static const st_step_opt sample_keys[] = {
    { "command", "starts the responses (default \"cartographer_stream en=1\")" },
    { "stop", "stops them (default \"cartographer_stream en=0\")" },
    { "response", "the response to collect (default cartographer_data)" },
    { "field", "the integer field to measure (default data)" },
    { "count", "how many responses (default 100)" },
    { "unit", "the field's unit for the report" },
    { "limits", "per statistic (min, max, mean, stddev, gaps): low, high, marginal_low, "
                "marginal_high" },
    { NULL, NULL },
};

static const st_step_def steps[] = {
    { .name = "identify",
      .summary = "read the running unit's data dictionary: version, MCU, CLOCK_FREQ, build "
                 "versions; fail when they differ from the job, or when the dictionary is not "
                 "the one its image (default: the job's first) embeds",
      .records = "version, mcu, clock_freq, build_versions, transport, dictionary (bytes, "
                 "sha256, commands, responses, matches_image), expected_version; "
                 "unit.firmware_version",
      .flags = ST_STEP_TAKES_IMAGE, .opts = identify_keys, .parse = parse_identify, .free_opts = free, .needs = needs,
      .run = step_identify },
    { .name = "alive",
      .summary = "the unit's uptime and clock advance at the rate CLOCK_FREQ says",
      .records = "uptime_ticks, host_s, clock_hz, measurements clock_rate_ratio and "
                 "uptime_advance",
      .opts = alive_keys, .parse = parse_alive, .free_opts = free, .needs = needs,
      .run = step_alive },
    { .name = "sample",
      .summary = "send a command, collect N responses and judge a field's min, max, mean, "
                 "stddev and gaps against limits",
      .records = "command, response, count, measurements <field>_min/_max/_mean/_stddev/_gaps",
      .opts = sample_keys, .parse = parse_sample, .free_opts = free, .needs = needs,
      .run = step_sample },
    { .name = NULL },
};

/* ---- commands ------------------------------------------------------------------------------ */

static int cmd_image_info(const st_cli *cli, char *const args[])
{
    const char *path = args[0];
    FILE *out = cli->out;
    st_image *img;
    st_err e;
    if (st_image_load(path, 0, &img, &e)) {
        st_cli_error(cli, "image info", &e);
        return ST_EXIT_USAGE;
    }
    size_t off = 0, zlen = 0;
    st_klp_dict *d = NULL;
    bool has_dict = st_klp_image_dict(img->data, img->size, &off, &zlen, &d, NULL) == 0;
    char shown[256];
    /* The memory map: --mcu, else the dictionary's MCU when the station knows it, else the
     * MCU the station knows best. */
    const char *opt_mcu = cli->opt(cli, "mcu");
    const char *dict_mcu = has_dict ? st_klp_dict_config_str(d, "MCU") : NULL;
    const char *mcu_name = opt_mcu ? opt_mcu
                           : dict_mcu && st_mcu_find(dict_mcu) ? dict_mcu
                                                                : "stm32g431xx";
    const st_mcu *mcu = st_mcu_find(mcu_name);
    if (!mcu) {
        fprintf(cli->errout, "station: image info: unknown MCU \"%s\"\n",
                st_text_printable(mcu_name, shown, sizeof shown));
        st_klp_dict_free(d);
        st_image_free(img);
        return ST_EXIT_USAGE;
    }
    uint8_t sha1[ST_SHA1_LEN];
    char sha1_hex[2 * ST_SHA1_LEN + 1];
    st_sha1(img->data, img->size, sha1);
    st_hex(sha1, sizeof sha1, false, sha1_hex);
    st_image_facts f;
    st_image_facts_of(img->data, img->size, mcu, &f);
    fprintf(out, "file: %s\n", st_text_printable(path, shown, sizeof shown));
    fprintf(out, "size: %zu\n", img->size);
    fprintf(out, "sha256: %s\nsha1: %s\n", img->sha256_hex, sha1_hex);
    fprintf(out, "memory map: %s\n", mcu->name);
    if (f.has_vectors)
        fprintf(out, "vector table: sp 0x%08x, reset 0x%08x\n", f.sp, f.reset);
    else
        fprintf(out, "vector table: none (no stack pointer in %s SRAM and reset vector in "
                     "flash)\n", mcu->name);
    if (f.link_known)
        fprintf(out, "linked for: 0x%08x\n", f.link_addr);
    else
        fprintf(out, "linked for: unknown\n");
    fprintf(out, "katapult: %s\n", f.katapult ? "yes (CanBoot! mark before the reset handler)"
                                              : "no");
    if (f.usb_device) {
        fprintf(out, "usb device: %04x:%04x\n", f.usb_vid, f.usb_pid);
        if (f.usb_manufacturer[0] || f.usb_product[0] || f.usb_serial[0])
            fprintf(out, "usb strings: manufacturer \"%s\", product \"%s\", serial \"%s\"\n",
                    f.usb_manufacturer, f.usb_product,
                    f.usb_serial[0] ? f.usb_serial : "(from the chip)");
    } else
        fprintf(out, "usb device: none\n");
    if (has_dict) {
        uint32_t bitrate;
        st_klp_transport tr = st_klp_dict_transport(d, &bitrate);
        const char *dmcu = st_klp_dict_config_str(d, "MCU");
        char v[128], m[64], bv[128];
        fprintf(out, "klipper dictionary: offset 0x%zx, %zu bytes\n", off, zlen);
        fprintf(out, "  version: %s\n", st_text_printable(st_klp_dict_version(d), v, sizeof v));
        fprintf(out, "  mcu: %s\n", st_text_printable(dmcu ? dmcu : "unknown", m, sizeof m));
        if (tr == ST_KLP_TRANSPORT_CAN || tr == ST_KLP_TRANSPORT_SERIAL)
            fprintf(out, "  transport: %s %u bit/s\n", st_klp_transport_name(tr), bitrate);
        else
            fprintf(out, "  transport: %s\n", st_klp_transport_name(tr));
        fprintf(out, "  clock: %lld Hz\n", (long long)st_klp_dict_config_int(d, "CLOCK_FREQ", 0));
        fprintf(out, "  build versions: %s\n",
                st_text_printable(st_klp_dict_build_versions(d), bv, sizeof bv));
        fprintf(out, "  commands: %zu, responses: %zu\n", st_klp_dict_count(d, false),
                st_klp_dict_count(d, true));
    } else {
        fprintf(out, "klipper dictionary: none\n");
    }
    st_klp_dict_free(d);
    st_image_free(img);
    return ST_EXIT_PASS;
}

/* A connection to a running unit for the mcu commands. */
typedef struct mcu_conn {
    st_stream *s;
    st_can_link *adm, *data;
    st_serial_host *serial;
    st_klp_host *h;
} mcu_conn;

static void conn_close(mcu_conn *m)
{
    st_klp_host_close(m->h);
    st_stream_close(m->s);
    if (m->data)
        st_can_link_close(m->data);
    if (m->adm)
        st_can_link_close(m->adm);
    if (m->serial)
        m->serial->ops->free(m->serial);
}

/* --device PATH (a tty), --uuid UUID (CAN, --iface), or --slot N (the slot's USB port).
 * 0, or an exit status already reported. */
static int conn_open(const st_cli *cli, const char *what, mcu_conn *m)
{
    memset(m, 0, sizeof *m);
    const char *dev = cli->opt(cli, "device"), *uuid = cli->opt(cli, "uuid");
    int given = (dev != NULL) + (uuid != NULL) + (cli->nslots > 0);
    if (given != 1) {
        fprintf(cli->errout, "station: %s: give one of --device PATH, --uuid UUID or --slot N\n",
                what);
        return ST_EXIT_USAGE;
    }
    st_err e;
    int rc;
    st_stream_line line = { .baud = 250000, .data_bits = 8, .parity = 'N', .stop_bits = 1 };
    if (dev) {
        rc = st_stream_tty_open(dev, &line, &m->s, &e);
    } else {
        const st_fixture *fx = NULL;
        st_usb_host *usb = NULL;
        int status = cli->open(cli, &fx, &usb);
        if (status)
            return status;
        if (uuid) {
            st_can_uuid u;
            if (st_can_uuid_parse(uuid, &u, &e)) {
                st_cli_error(cli, what, &e);
                return ST_EXIT_USAGE;
            }
            const char *ifname = cli->opt(cli, "iface");
            st_can_iface *ifc = NULL;
            uint8_t nodeid = ST_CANADMIN_NODEID_KLIPPER_FIRST;
            const char *ifn = ifname ? ifname : st_fixture_can_iface(fx);
            rc = cli->can_iface(cli, ifn, &ifc, &e);
            if (!rc) /* up, at the fixture's bitrate, not bus-off (as can scan does) */
                rc = st_can_iface_prepare(ifc, st_fixture_can_bitrate(fx, ifn), &e);
            if (!rc)
                rc = ifc->ops->open_link(ifc, &m->adm, &e);
            if (!rc)
                rc = ifc->ops->open_link(ifc, &m->data, &e);
            if (!rc)
                rc = st_canadmin_set_nodeid(m->adm, ST_CANADMIN_SET_KLIPPER_NODEID, &u, nodeid,
                                            &e);
            if (!rc)
                rc = st_can_stream_open(m->data, st_canadmin_nodeid_tx_id(nodeid),
                                        st_canadmin_nodeid_rx_id(nodeid), &m->s, &e);
        } else {
            const st_fixture_slot *fs = st_fixture_slot_by_id(fx, cli->slots[0]);
            if (!fs || !fs->usb_port[0]) {
                fprintf(cli->errout, "station: %s: the fixture has no slot %d with a usb_port\n",
                        what, cli->slots[0]);
                return ST_EXIT_USAGE;
            }
            st_usb_id id = st_mcu_find("stm32g431xx")->usb_klipper;
            rc = st_serial_host_usb_new(usb, &m->serial, &e);
            if (!rc)
                rc = st_serial_host_open(m->serial, fs->usb_port, id.vid, id.pid, &line,
                                         OPEN_DEFAULT_MS, &m->s, &e);
        }
    }
    if (!rc)
        rc = st_klp_host_open(m->s, NULL, &m->h, &e);
    if (!rc)
        rc = st_klp_host_identify(m->h, ST_KLP_IDENTIFY_MS, &e);
    if (rc) {
        st_cli_error(cli, what, &e);
        conn_close(m);
        return ST_EXIT_STATION;
    }
    return 0;
}

static int cmd_mcu_identify(const st_cli *cli, char *const args[])
{
    (void)args;
    mcu_conn m;
    int status = conn_open(cli, "mcu identify", &m);
    if (status)
        return status;
    const st_klp_dict *d = st_klp_host_dict(m.h);
    char v[160], mc[64], bv[256];
    const char *mcu = st_klp_dict_config_str(d, "MCU");
    uint32_t bitrate;
    st_klp_transport t = st_klp_dict_transport(d, &bitrate);
    size_t raw_len;
    st_klp_host_dict_raw(m.h, &raw_len);
    fprintf(cli->out, "version: %s\n", st_text_printable(st_klp_dict_version(d), v, sizeof v));
    fprintf(cli->out, "mcu: %s\n", st_text_printable(mcu ? mcu : "unknown", mc, sizeof mc));
    fprintf(cli->out, "clock: %lld Hz\n", (long long)st_klp_dict_config_int(d, "CLOCK_FREQ", 0));
    fprintf(cli->out, "transport: %s", st_klp_transport_name(t));
    if (bitrate)
        fprintf(cli->out, " %u bit/s", bitrate);
    fprintf(cli->out, "\nbuild versions: %s\n",
            st_text_printable(st_klp_dict_build_versions(d), bv, sizeof bv));
    fprintf(cli->out, "dictionary: %zu bytes, %zu commands, %zu responses\n", raw_len,
            st_klp_dict_count(d, false), st_klp_dict_count(d, true));
    conn_close(&m);
    return ST_EXIT_PASS;
}

static int cmd_mcu_query(const st_cli *cli, char *const args[])
{
    mcu_conn m;
    int status = conn_open(cli, "mcu query", &m);
    if (status)
        return status;
    const char *resp = cli->opt(cli, "response");
    st_klp_decoded d;
    st_err e;
    int rc;
    if (resp) {
        rc = st_klp_host_query(m.h, args[0], resp, 2000, &d, &e);
    } else {
        rc = st_klp_host_send_text(m.h, args[0], 1000, &e);
        if (!rc) {
            rc = st_klp_host_recv(m.h, 1000, &d, &e);
            if (rc == 0)
                rc = st_err_set(&e, ST_ERR_TIMEOUT, "no answer within 1000 ms");
            else if (rc == 1)
                rc = 0;
        }
    }
    if (rc) {
        st_cli_error(cli, "mcu query", &e);
        conn_close(&m);
        return ST_EXIT_UNIT_FAIL;
    }
    char txt[512];
    fprintf(cli->out, "%s\n", st_klp_decoded_format(&d, txt, sizeof txt));
    conn_close(&m);
    return ST_EXIT_PASS;
}

static int cmd_mcu_sample(const st_cli *cli, char *const args[])
{
    (void)args;
    const char *cmd = cli->opt(cli, "command"), *stop = cli->opt(cli, "stop");
    const char *resp = cli->opt(cli, "response"), *field = cli->opt(cli, "field");
    const char *count_s = cli->opt(cli, "count");
    unsigned count = SAMPLE_DEFAULT_COUNT;
    if (count_s) {
        char *end;
        unsigned long v = strtoul(count_s, &end, 10);
        if (!*count_s || *end || v == 0 || v > 100000) {
            fprintf(cli->errout, "station: --count: \"%s\" is not 1..100000\n", count_s);
            return ST_EXIT_USAGE;
        }
        count = (unsigned)v;
    }
    mcu_conn m;
    int status = conn_open(cli, "mcu sample", &m);
    if (status)
        return status;
    st_klp_stats st;
    st_err e;
    const char *f = field ? field : "data";
    int rc = st_klp_host_sample(m.h, cmd ? cmd : "cartographer_stream en=1",
                                stop ? stop : "cartographer_stream en=0",
                                resp ? resp : "cartographer_data", f, count,
                                SAMPLE_DEFAULT_MS + count * 20, &st, &e);
    if (rc) {
        st_cli_error(cli, "mcu sample", &e);
        conn_close(&m);
        return ST_EXIT_UNIT_FAIL;
    }
    fprintf(cli->out, "%s: n %u, min %.10g, max %.10g, mean %.10g, stddev %.10g, gaps %u\n", f,
            st.n, st.min, st.max, st.mean, st.stddev, st.gaps);
    conn_close(&m);
    return ST_EXIT_PASS;
}

static const st_cli_opt info_opts[] = {
    { "mcu", "NAME", "the MCU whose memory map applies (default: the dictionary's, else "
                     "stm32g431xx)" },
    { NULL, NULL, NULL },
};

#define TARGET_OPTS                                                                            \
    { "device", "PATH", "the unit's serial device (a USB-CDC or UART tty)" },                  \
    { "slot", "N", "the fixture slot whose USB port holds the unit (USB-CDC)" },              \
    { "uuid", "UUID", "the unit's CAN UUID (it is given node id 4)" },                         \
    { "iface", "NAME", "CAN interface (default: the fixture's first)" }

static const st_cli_opt identify_cli_opts[] = { TARGET_OPTS, { NULL, NULL, NULL } };
static const st_cli_opt query_cli_opts[] = {
    TARGET_OPTS,
    { "response", "NAME", "wait for this response (default: print the next message)" },
    { NULL, NULL, NULL },
};
static const st_cli_opt sample_cli_opts[] = {
    TARGET_OPTS,
    { "command", "TEXT", "starts the responses (default \"cartographer_stream en=1\")" },
    { "stop", "TEXT", "stops them (default \"cartographer_stream en=0\")" },
    { "response", "NAME", "the response to collect (default cartographer_data)" },
    { "field", "NAME", "the integer field (default data)" },
    { "count", "N", "how many (default 100)" },
    { NULL, NULL, NULL },
};

static const st_cli_cmd commands[] = {
    { .words = "image info", .args = "FILE", .nargs = 1,
      .summary = "size, digests, vector table, link address, and the Klipper dictionary it "
                 "embeds: version, MCU, transport, clock",
      .help = "Reads the file only. The link address comes from the vector table (the lowest "
              "handler, rounded down to a flash page); the dictionary is the first zlib stream "
              "in the file that inflates to a Klipper data dictionary.",
      .opts = info_opts, .run = cmd_image_info },
    { .words = "mcu identify",
      .summary = "a running unit's version, MCU, clock and transport (--device, --uuid or "
                 "--slot)",
      .help = "Downloads the unit's data dictionary (identify) over its serial device, the "
              "slot's USB-CDC port, or the CAN bus (SET_KLIPPER_NODEID for the UUID, node 4). "
              "Exit codes: 0 read, 2 usage, 3 the unit could not be reached.",
      .opts = identify_cli_opts, .run = cmd_mcu_identify },
    { .words = "mcu query", .args = "COMMAND", .nargs = 1,
      .summary = "send one command (\"get_uptime\") to a running unit and print the answer",
      .help = "COMMAND is the text form with every parameter named, buffers in hex: "
              "\"get_uptime\", \"debug_ping data=0a0b\". Exit codes: 0 answered, 1 no answer "
              "or an unknown command, 2 usage, 3 the unit could not be reached.",
      .opts = query_cli_opts, .run = cmd_mcu_query },
    { .words = "mcu sample",
      .summary = "collect N responses from a running unit and print a field's statistics",
      .help = "By default the Cartographer's sensor: cartographer_stream en=1, 100 "
              "cartographer_data, field data. Prints n, min, max, mean, stddev (population) and "
              "gaps (samples missing by the responses' clock).",
      .opts = sample_cli_opts, .run = cmd_mcu_sample },
    { .words = NULL },
};

const st_driver st_klipper_driver = {
    .name = "klipper",
    .summary = "checks on a running Klipper unit (identify, alive, sample with limits) and the "
               "images it can run",
    .section_parse = section_parse,
    .section_free = free,
    .section_help = "transport (usb|can: how the job's units run their application), version "
                    "(pin), usb (application id), nodeid, timeout_ms",
    .steps = steps,
    .session_open = session_open,
    .session_abandon = session_abandon,
    .session_close = session_close,
    .preflight = preflight,
    .commands = commands,
};
