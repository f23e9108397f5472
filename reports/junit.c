/* JUnit XML from unit reports (junit.h). */
#include "reports/junit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reports/report.h"

/* Text escaped for an XML attribute or element: &<>"' as entities, other control
 * characters (not allowed in XML 1.0) as '?'. */
static void xml_text(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            if (*p < 0x20 && *p != '\t' && *p != '\n')
                fputc('?', f);
            else
                fputc(*p, f);
        }
    }
}

static const char *str(const st_rnode *n, const char *path, const char *def)
{
    const char *s = st_rget_str(n, path);
    return s ? s : def;
}

static double num(const st_rnode *n, const char *path)
{
    double v = 0;
    return st_rget_num(n, path, &v) == 0 ? v : 0;
}

static void write_measurements(FILE *f, const st_rnode *step)
{
    const st_rnode *ms = st_rget(step, "measurements");
    size_t n = ms ? st_rnode_len(ms) : 0;
    if (!n)
        return;
    fputs("      <system-out>", f);
    for (size_t i = 0; i < n; i++) {
        const st_rnode *m = st_rnode_child(ms, i);
        char line[512];
        snprintf(line, sizeof line, "%s = %s %s [%s .. %s] %s\n", str(m, "name", "?"),
                 str(m, "value", "?"), str(m, "unit", ""), str(m, "low", "-"),
                 str(m, "high", "-"), str(m, "outcome", "?"));
        xml_text(f, line);
    }
    fputs("</system-out>\n", f);
}

static void write_suite(FILE *f, const char *job, const st_rnode *doc, const char *path)
{
    const st_rnode *steps = st_rget(doc, "steps");
    size_t n = steps ? st_rnode_len(steps) : 0, failures = 0, skipped = 0;
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        const st_rnode *s = st_rnode_child(steps, i);
        const char *o = str(s, "outcome", "?");
        failures += strcmp(o, "fail") == 0 || strcmp(o, "incomplete") == 0;
        skipped += strcmp(o, "skipped") == 0;
        total += num(s, "duration_ms") / 1000.0;
    }
    char name[256];
    long long slot = 0;
    st_rget_int(doc, "slot.id", &slot);
    snprintf(name, sizeof name, "%s (slot %lld)", str(doc, "unit.identity", "unknown"), slot);
    fputs("  <testsuite name=\"", f);
    xml_text(f, name);
    fprintf(f, "\" tests=\"%zu\" failures=\"%zu\" errors=\"0\" skipped=\"%zu\" time=\"%.3f\">\n",
            n, failures, skipped, total);
    fputs("    <properties>\n", f);
    const char *props[][2] = { { "verdict", "verdict" }, { "report", NULL },
                               { "firmware_version", "unit.firmware_version" },
                               { "cause", "cause" } };
    for (size_t i = 0; i < sizeof props / sizeof *props; i++) {
        const char *v = props[i][1] ? st_rget_str(doc, props[i][1]) : path;
        if (!v)
            continue;
        fprintf(f, "      <property name=\"%s\" value=\"", props[i][0]);
        xml_text(f, v);
        fputs("\"/>\n", f);
    }
    fputs("    </properties>\n", f);
    for (size_t i = 0; i < n; i++) {
        const st_rnode *s = st_rnode_child(steps, i);
        const char *o = str(s, "outcome", "?");
        fputs("    <testcase classname=\"", f);
        xml_text(f, job);
        fputs(".", f);
        xml_text(f, name);
        fprintf(f, "\" name=\"%zu-", i + 1);
        xml_text(f, str(s, "name", "?"));
        fprintf(f, "\" time=\"%.3f\">\n", num(s, "duration_ms") / 1000.0);
        if (strcmp(o, "fail") == 0 || strcmp(o, "incomplete") == 0) {
            const char *why = str(s, "error", strcmp(o, "incomplete") == 0 ? "incomplete"
                                                                             : "failed");
            fputs("      <failure type=\"", f);
            xml_text(f, o);
            fputs("\" message=\"", f);
            xml_text(f, why);
            fputs("\">", f);
            xml_text(f, why);
            fputs("</failure>\n", f);
        } else if (strcmp(o, "skipped") == 0) {
            fputs("      <skipped/>\n", f);
        }
        write_measurements(f, s);
        fputs("    </testcase>\n", f);
    }
    fputs("  </testsuite>\n", f);
}

int st_junit_write(const char *path, const char *suite_name, const char *const *report_paths,
                   size_t n, st_err *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return st_err_set(err, ST_ERR_INVAL, "%s: path too long", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return st_err_set(err, st_err_from_errno(errno), "%s: %s", tmp, strerror(errno));
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"", f);
    xml_text(f, suite_name);
    fputs("\">\n", f);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        st_rnode *doc = NULL;
        rc = st_report_load(report_paths[i], &doc, err);
        if (!rc)
            write_suite(f, suite_name, doc, report_paths[i]);
        st_report_free(doc);
    }
    fputs("</testsuites>\n", f);
    if (fclose(f) != 0 && !rc)
        rc = st_err_set(err, ST_ERR_IO, "%s: write failed", tmp);
    if (!rc && rename(tmp, path) != 0)
        rc = st_err_set(err, st_err_from_errno(errno), "%s: %s", path, strerror(errno));
    if (rc)
        unlink(tmp);
    return rc;
}
