/* Schema-1 validation of a report (reports/SCHEMA.md) and the human summary printed by
 * `station report show`. See report.h. */
#include "reports/report.h"

#include <stdio.h>
#include <string.h>

#include "station/core/text.h"

/* ---- validation ------------------------------------------------------------------------ */

enum want {
    W_MAP,
    W_SEQ,
    W_STR,      /* any string */
    W_NESTR,    /* non-empty string */
    W_UINT,     /* integer >= 0 */
    W_NUM,      /* number >= 0 (int or float) */
    W_REAL,     /* any number, negative or .nan too (measurement values and limits) */
    W_TIME,     /* "YYYY-MM-DDTHH:MM:SS[.fff]Z" */
    W_HEX64,    /* SHA-256, 64 hex digits */
    W_HEX40,    /* SHA-1, 40 hex digits */
    W_ENUM,     /* string from a list */
    W_SCALAR,   /* string or integer (chip_id, rung) */
    W_NAME,     /* a name the job gave (st_text_is_name): image roles */
};

static const char *const outcomes[] = { "pass", "fail", "skipped", "incomplete", NULL };
static const char *const verdicts[] = { "pass", "fail", "incomplete", NULL };
static const char *const backends[] = { "libgpiod", "virtual", NULL };

static const char *type_name(st_rtype t)
{
    switch (t) {
    case ST_RMAP: return "a map";
    case ST_RSEQ: return "a list";
    case ST_RSTR: return "a string";
    case ST_RINT: return "an integer";
    case ST_RFLOAT: return "a number";
    case ST_RBOOL: return "a boolean";
    case ST_RNULL: return "null";
    }
    return "?";
}

static bool is_hex(const char *s, size_t n)
{
    return strlen(s) == n && strspn(s, "0123456789abcdefABCDEF") == n;
}

static bool is_time(const char *s)
{
    /* 2026-11-23T17:42:57.123Z: digits where the template has 9, literal elsewhere. */
    static const char tmpl[] = "9999-99-99T99:99:99";
    size_t i;
    for (i = 0; tmpl[i]; i++) {
        if (tmpl[i] == '9' ? (s[i] < '0' || s[i] > '9') : s[i] != tmpl[i])
            return false;
    }
    if (s[i] == '.') {
        i++;
        size_t d = strspn(s + i, "0123456789");
        if (d == 0)
            return false;
        i += d;
    }
    return s[i] == 'Z' && s[i + 1] == '\0';
}

static const char *enum_list(const char *const *e, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (size_t i = 0; e[i]; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, cap - l, "%s%s", i ? "|" : "", e[i]);
    }
    return buf;
}

/* "<prefix>.<key>", or "<key>" at the top. */
static const char *field_name(char *buf, size_t cap, const char *prefix, const char *key)
{
    if (prefix && *prefix)
        snprintf(buf, cap, "%s.%s", prefix, key);
    else
        snprintf(buf, cap, "%s", key);
    return buf;
}

/* Check map[key] (field name "<prefix>.<key>" or "<key>"); absent is an error only when
 * required. *found (optional) receives the node. */
static int chk(const st_rnode *map, const char *prefix, const char *key, enum want w,
               bool required, const char *const *allowed, const st_rnode **found, st_err *err)
{
    /* The field's name and the value as shown are only made for an error: this runs for
     * every field of every report `report summary` reads. */
    char field[160];
    const st_rnode *n = st_rget(map, key);
    if (found)
        *found = n;
    if (!n) {
        if (required)
            return st_err_set(err, ST_ERR_INVAL, "%s: missing",
                              field_name(field, sizeof field, prefix, key));
        return 0;
    }
    st_rtype t = st_rnode_type(n);
    const char *text = st_rnode_text(n);
    char shown[72];
    const char *expect = NULL;
    switch (w) {
    case W_MAP:
        if (t != ST_RMAP)
            expect = "a map";
        break;
    case W_SEQ:
        if (t != ST_RSEQ)
            expect = "a list";
        break;
    case W_STR:
        if (t != ST_RSTR)
            expect = "a string";
        break;
    case W_NESTR:
        if (t != ST_RSTR || !*text)
            expect = "a non-empty string";
        break;
    case W_UINT: {
        long long v;
        if (t != ST_RINT || st_rget_int(n, "", &v) != 0 || v < 0)
            expect = "a non-negative integer";
        break;
    }
    case W_NUM: {
        double v;
        if ((t != ST_RINT && t != ST_RFLOAT) || st_rget_num(n, "", &v) != 0 || !(v >= 0))
            expect = "a non-negative number";
        break;
    }
    case W_REAL:
        if (t != ST_RINT && t != ST_RFLOAT)
            expect = "a number";
        break;
    case W_TIME:
        if (t != ST_RSTR || !is_time(text))
            expect = "an ISO 8601 UTC time (2026-11-23T17:42:57.123Z)";
        break;
    case W_HEX64:
        if (t != ST_RSTR || !is_hex(text, 64))
            expect = "64 hex digits (SHA-256)";
        break;
    case W_HEX40:
        if (t != ST_RSTR || !is_hex(text, 40))
            expect = "40 hex digits (SHA-1)";
        break;
    case W_ENUM: {
        bool ok = false;
        for (size_t i = 0; t == ST_RSTR && allowed[i]; i++)
            ok = ok || !strcmp(text, allowed[i]);
        if (!ok) {
            char list[96];
            return st_err_set(err, ST_ERR_INVAL, "%s: expected %s, got '%s'",
                              field_name(field, sizeof field, prefix, key),
                              enum_list(allowed, list, sizeof(list)),
                              st_text_printable(text ? text : "", shown, sizeof(shown)));
        }
        break;
    }
    case W_SCALAR:
        if (t != ST_RSTR && t != ST_RINT)
            expect = "a string or an integer";
        break;
    case W_NAME:
        if (t != ST_RSTR || !st_text_is_name(text))
            expect = "a name (1-31 letters, digits, '.', '_' or '-')";
        break;
    }
    if (expect) {
        field_name(field, sizeof field, prefix, key);
        if (text)
            return st_err_set(err, ST_ERR_INVAL, "%s: expected %s, got %s '%s'", field, expect,
                              type_name(t), st_text_printable(text, shown, sizeof(shown)));
        return st_err_set(err, ST_ERR_INVAL, "%s: expected %s, got %s", field, expect,
                          type_name(t));
    }
    return 0;
}

struct fspec {
    const char *key;
    enum want w;
    bool required;
    const char *const *allowed;
};

static int chk_all(const st_rnode *map, const char *prefix, const struct fspec *f, size_t n,
                   st_err *err)
{
    for (size_t i = 0; i < n; i++) {
        int rc = chk(map, prefix, f[i].key, f[i].w, f[i].required, f[i].allowed, NULL, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

#define NFIELDS(a) (sizeof(a) / sizeof((a)[0]))

static int chk_section(const st_rnode *doc, const char *key, const struct fspec *f, size_t n,
                       bool required, st_err *err)
{
    const st_rnode *m;
    int rc = chk(doc, NULL, key, W_MAP, required, NULL, &m, err);
    if (rc != 0 || !m)
        return rc;
    return chk_all(m, key, f, n, err);
}

static const struct fspec station_f[] = {
    { "name", W_NESTR, true, NULL },
    { "version", W_NESTR, true, NULL },
    { "host", W_STR, true, NULL },
};
/* finished and duration_ms are checked here when present and required below unless the
 * run is incomplete. */
static const struct fspec run_f[] = {
    { "id", W_NESTR, true, NULL },
    { "started", W_TIME, true, NULL },
    { "finished", W_TIME, false, NULL },
    { "duration_ms", W_NUM, false, NULL },
    { "lot", W_STR, false, NULL },
};
static const struct fspec fixture_f[] = {
    { "name", W_NESTR, true, NULL },
    { "path", W_STR, true, NULL },
    { "backend", W_ENUM, true, backends },
};
static const struct fspec slot_f[] = {
    { "id", W_UINT, false, NULL }, /* absent for a unit that no slot holds */
    { "name", W_STR, true, NULL },
};
static const struct fspec job_f[] = {
    { "name", W_NESTR, true, NULL },
    { "path", W_STR, true, NULL },
    { "sha256", W_HEX64, true, NULL },
};
static const struct fspec unit_f[] = {
    { "identity", W_STR, true, NULL },
    { "port_path", W_STR, false, NULL },
    { "dfu_serial", W_STR, false, NULL },
    { "chip_id", W_SCALAR, false, NULL },
    { "mcu", W_STR, false, NULL },
    { "can_uuid", W_STR, false, NULL },
    { "before_sha256", W_HEX64, false, NULL },
    { "module", W_MAP, false, NULL },
    { "module_state", W_STR, false, NULL },
    { "barcode", W_STR, false, NULL },
};
/* unit.module: a Bluetooth module updated over BGAPI UART DFU (fields it learnt). */
static const struct fspec module_f[] = {
    { "entry_method", W_STR, false, NULL },
    { "bootloader_version", W_UINT, false, NULL },
    { "image_sha256", W_HEX64, false, NULL },
    { "chunk_size", W_UINT, false, NULL },
    { "chunks", W_UINT, false, NULL },
    { "stack_version", W_STR, false, NULL },
    { "update_ms", W_NUM, false, NULL },
};
static const struct fspec image_f[] = {
    /* Whatever the job called it: roles are the job's data, not a list of the station's. */
    { "role", W_NAME, true, NULL },
    { "path", W_STR, true, NULL },
    { "size", W_UINT, true, NULL },
    { "load_addr", W_UINT, true, NULL },
    { "sha256", W_HEX64, true, NULL },
    { "sha1_padded", W_HEX40, true, NULL },
};
static const struct fspec step_f[] = {
    { "name", W_NESTR, true, NULL },
    { "started", W_TIME, true, NULL },
    { "duration_ms", W_NUM, true, NULL },
    { "outcome", W_ENUM, true, outcomes },
    { "attempts", W_UINT, true, NULL },
    { "attempt_log", W_SEQ, false, NULL },
    { "entry_method", W_STR, false, NULL },
    { "bytes", W_UINT, false, NULL },
    { "pages_erased", W_UINT, false, NULL },
    { "pages_written", W_UINT, false, NULL },
    { "pages_skipped", W_UINT, false, NULL },
    { "pages_blank", W_UINT, false, NULL },
    { "blocks", W_UINT, false, NULL },
    { "sha256", W_HEX64, false, NULL },
    { "sha1", W_HEX40, false, NULL },
    { "address", W_UINT, false, NULL },
    { "device_error", W_STR, false, NULL },
    { "rung", W_SCALAR, false, NULL },
    { "error", W_STR, false, NULL },
};
static const char *const m_outcomes[] = { "pass", "marginal", "fail", NULL };
static const struct fspec measure_f[] = {
    { "name", W_NESTR, true, NULL },
    { "value", W_REAL, true, NULL },
    { "unit", W_STR, true, NULL },
    { "low", W_REAL, false, NULL },
    { "high", W_REAL, false, NULL },
    { "marginal_low", W_REAL, false, NULL },
    { "marginal_high", W_REAL, false, NULL },
    { "outcome", W_ENUM, true, m_outcomes },
};
static const struct fspec attempt_f[] = {
    { "n", W_UINT, true, NULL },
    { "started", W_TIME, true, NULL },
    { "duration_ms", W_NUM, true, NULL },
    { "outcome", W_ENUM, true, outcomes },
    { "error", W_STR, false, NULL },
};

/* Every item of the list at map[key] must be a map satisfying f. */
static int chk_list(const st_rnode *map, const char *prefix, const char *key,
                    const struct fspec *f, size_t n, bool required, st_err *err)
{
    char field[160];
    if (prefix && *prefix)
        snprintf(field, sizeof(field), "%s.%s", prefix, key);
    else
        snprintf(field, sizeof(field), "%s", key);
    const st_rnode *seq;
    int rc = chk(map, prefix, key, W_SEQ, required, NULL, &seq, err);
    if (rc != 0 || !seq)
        return rc;
    for (size_t i = 0; i < st_rnode_len(seq); i++) {
        const st_rnode *item = st_rnode_child(seq, i);
        char at[200];
        snprintf(at, sizeof(at), "%s.%zu", field, i);
        if (st_rnode_type(item) != ST_RMAP)
            return st_err_set(err, ST_ERR_INVAL, "%s: expected a map, got %s", at,
                              type_name(st_rnode_type(item)));
        rc = chk_all(item, at, f, n, err);
        if (rc != 0)
            return rc;
        if (f == step_f) {
            rc = chk_list(item, at, "attempt_log", attempt_f, NFIELDS(attempt_f), false, err);
            if (rc == 0)
                rc = chk_list(item, at, "measurements", measure_f, NFIELDS(measure_f), false, err);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

/* A job names each image once (its images map), so a report's roles are distinct. */
static int chk_unique_roles(const st_rnode *images, st_err *err)
{
    for (size_t i = 0; i < st_rnode_len(images); i++) {
        const char *ri = st_rget_str(st_rnode_child(images, i), "role");
        for (size_t j = 0; j < i; j++)
            if (!strcmp(ri, st_rget_str(st_rnode_child(images, j), "role")))
                return st_err_set(err, ST_ERR_INVAL, "images.%zu.role: '%s' is images.%zu's role too",
                                  i, ri, j);
    }
    return 0;
}

int st_report_validate(const st_rnode *doc, st_err *err)
{
    if (!doc || st_rnode_type(doc) != ST_RMAP)
        return st_err_set(err, ST_ERR_INVAL, "report: not a map");
    long long schema;
    int rc = st_rget_int(doc, "schema", &schema);
    if (rc == ST_ERR_NOTFOUND)
        return st_err_set(err, ST_ERR_INVAL, "schema: missing");
    if (rc != 0 || schema != ST_REPORT_SCHEMA)
        return st_err_set(err, ST_ERR_INVAL, "schema: expected %d, this station reads only %d",
                          ST_REPORT_SCHEMA, ST_REPORT_SCHEMA);
    if ((rc = chk_section(doc, "station", station_f, NFIELDS(station_f), true, err)) ||
        (rc = chk_section(doc, "run", run_f, NFIELDS(run_f), true, err)) ||
        (rc = chk(doc, NULL, "operator", W_NESTR, true, NULL, NULL, err)) ||
        (rc = chk_section(doc, "fixture", fixture_f, NFIELDS(fixture_f), true, err)) ||
        (rc = chk_section(doc, "slot", slot_f, NFIELDS(slot_f), true, err)) ||
        (rc = chk_section(doc, "job", job_f, NFIELDS(job_f), true, err)) ||
        (rc = chk_section(doc, "unit", unit_f, NFIELDS(unit_f), true, err)) ||
        (st_rget(doc, "unit.module") &&
         (rc = chk_all(st_rget(doc, "unit.module"), "unit.module", module_f, NFIELDS(module_f),
                       err))) ||
        (rc = chk_list(doc, NULL, "images", image_f, NFIELDS(image_f), true, err)) ||
        (rc = chk_unique_roles(st_rget(doc, "images"), err)) ||
        (rc = chk_list(doc, NULL, "steps", step_f, NFIELDS(step_f), true, err)))
        return rc;
    const st_rnode *derr;
    if ((rc = chk(doc, NULL, "device_errors", W_SEQ, true, NULL, &derr, err)))
        return rc;
    for (size_t i = 0; i < st_rnode_len(derr); i++)
        if (st_rnode_type(st_rnode_child(derr, i)) != ST_RSTR)
            return st_err_set(err, ST_ERR_INVAL, "device_errors.%zu: expected a string", i);
    const st_rnode *v;
    if ((rc = chk(doc, NULL, "verdict", W_ENUM, true, verdicts, &v, err)))
        return rc;
    const char *verdict = st_rnode_text(v);
    bool pass = !strcmp(verdict, "pass");
    if ((rc = chk(doc, NULL, "cause", W_NESTR, !pass, NULL, NULL, err)))
        return rc;
    /* A finished run says when it finished and how long it took; only an incomplete one
     * may lack them. */
    if (strcmp(verdict, "incomplete") != 0) {
        if (!st_rget(doc, "run.finished"))
            return st_err_set(err, ST_ERR_INVAL, "run.finished: missing (verdict is %s)",
                              verdict);
        if (!st_rget(doc, "run.duration_ms"))
            return st_err_set(err, ST_ERR_INVAL, "run.duration_ms: missing (verdict is %s)",
                              verdict);
    }
    return 0;
}

/* ---- human summary --------------------------------------------------------------------- */

#define C_RESET "\033[0m"
#define C_GREEN "\033[1;32m"
#define C_RED "\033[1;31m"
#define C_YELLOW "\033[1;33m"
#define C_DIM "\033[2m"

static const char *outcome_color(const char *o)
{
    if (!strcmp(o, "pass"))
        return C_GREEN;
    if (!strcmp(o, "fail"))
        return C_RED;
    if (!strcmp(o, "incomplete"))
        return C_YELLOW;
    return C_DIM;
}

/* Printable copy of the scalar at path, or dflt. */
static const char *pr(const st_rnode *n, const char *path, const char *dflt, char *buf,
                      size_t cap)
{
    const char *s = st_rget_str(n, path);
    if (!s)
        return dflt;
    return st_text_printable(s, buf, cap);
}

/* Append " <label> <value>" for each present field. */
static void fields_line(FILE *out, const st_rnode *m, const char *const *keys,
                        const char *const *labels)
{
    char buf[256];
    for (size_t i = 0; keys[i]; i++) {
        const char *v = pr(m, keys[i], NULL, buf, sizeof(buf));
        if (v)
            fprintf(out, "  %s %s", labels[i], v);
    }
}

int st_report_render(const st_rnode *doc, FILE *out, bool color)
{
    char a[512], b[512], c[512], d[512];
    const char *verdict = pr(doc, "verdict", "missing", a, sizeof(a));
    char up[32];
    size_t i;
    for (i = 0; verdict[i] && i + 1 < sizeof(up); i++)
        up[i] = (char)(verdict[i] >= 'a' && verdict[i] <= 'z' ? verdict[i] - 32 : verdict[i]);
    up[i] = '\0';
    fprintf(out, "verdict:  %s%s%s\n", color ? outcome_color(verdict) : "", up,
            color ? C_RESET : "");

    fprintf(out, "unit:     %s", pr(doc, "unit.identity", "(unknown)", a, sizeof(a)));
    static const char *const ukeys[] = { "mcu", "dfu_serial", "can_uuid", "port_path",
                                         "chip_id", NULL };
    static const char *const ulabels[] = { "mcu", "serial", "can", "port", "chip", NULL };
    fields_line(out, st_rget(doc, "unit"), ukeys, ulabels);
    fputc('\n', out);

    fprintf(out, "slot:     %s (%s)  fixture %s  operator %s\n",
            pr(doc, "slot.id", "-", a, sizeof(a)), pr(doc, "slot.name", "?", b, sizeof(b)),
            pr(doc, "fixture.name", "?", c, sizeof(c)),
            pr(doc, "operator", "?", d, sizeof(d)));
    fprintf(out, "job:      %s  run %s  started %s", pr(doc, "job.name", "?", a, sizeof(a)),
            pr(doc, "run.id", "?", b, sizeof(b)), pr(doc, "run.started", "?", c, sizeof(c)));
    const char *dur = pr(doc, "run.duration_ms", NULL, a, sizeof(a));
    if (dur)
        fprintf(out, "  took %s ms", dur);
    fputc('\n', out);

    const st_rnode *imgs = st_rget(doc, "images");
    for (i = 0; i < st_rnode_len(imgs); i++) {
        const st_rnode *im = st_rnode_child(imgs, i);
        char e[80];
        fprintf(out, "image:    %s %s  %s bytes at %s  sha256 %.16s...\n",
                pr(im, "role", "?", a, sizeof(a)), pr(im, "path", "?", b, sizeof(b)),
                pr(im, "size", "?", c, sizeof(c)), pr(im, "load_addr", "?", e, sizeof(e)),
                pr(im, "sha256", "?", d, sizeof(d)));
    }

    const st_rnode *steps = st_rget(doc, "steps");
    fprintf(out, "\n  #  %-24s %-10s %8s %12s %10s\n", "step", "outcome", "attempts",
            "duration ms", "bytes");
    for (i = 0; i < st_rnode_len(steps); i++) {
        const st_rnode *s = st_rnode_child(steps, i);
        char name[25], o[11], att[16], ms[24], by[24];
        const char *oc = pr(s, "outcome", "?", o, sizeof(o));
        fprintf(out, "%3zu  %-24s %s%-10s%s %8s %12s %10s\n", i + 1,
                pr(s, "name", "?", name, sizeof(name)), color ? outcome_color(oc) : "", oc,
                color ? C_RESET : "", pr(s, "attempts", "-", att, sizeof(att)),
                pr(s, "duration_ms", "-", ms, sizeof(ms)), pr(s, "bytes", "-", by, sizeof(by)));
        const st_rnode *meas = st_rget(s, "measurements");
        for (size_t k = 0; meas && k < st_rnode_len(meas); k++) {
            const st_rnode *m = st_rnode_child(meas, k);
            char mn[48], mv[32], mu[24], lo[32], hi[32], mo[16];
            const char *moc = pr(m, "outcome", "?", mo, sizeof(mo));
            fprintf(out, "     %-22s %14s %-8s [%s .. %s] %s%s%s\n",
                    pr(m, "name", "?", mn, sizeof(mn)), pr(m, "value", "?", mv, sizeof(mv)),
                    pr(m, "unit", "", mu, sizeof(mu)), pr(m, "low", "-", lo, sizeof(lo)),
                    pr(m, "high", "-", hi, sizeof(hi)),
                    color ? outcome_color(strcmp(moc, "marginal") == 0 ? "pass" : moc) : "",
                    moc, color ? C_RESET : "");
        }
        const char *e = pr(s, "error", NULL, a, sizeof(a));
        if (e)
            fprintf(out, "     error: %s\n", e);
    }

    const st_rnode *de = st_rget(doc, "device_errors");
    if (st_rnode_len(de)) {
        fprintf(out, "\ndevice errors:\n");
        for (i = 0; i < st_rnode_len(de); i++) {
            const char *t = st_rnode_text(st_rnode_child(de, i));
            fprintf(out, "  - %s\n", st_text_printable(t ? t : "?", a, sizeof(a)));
        }
    }
    const char *cause = pr(doc, "cause", NULL, a, sizeof(a));
    if (cause)
        fprintf(out, "\ncause:    %s\n", cause);
    fflush(out);
    return ferror(out) ? ST_ERR_IO : 0;
}
