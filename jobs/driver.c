/* The driver interface's shared helpers: registry lookups, the section and option getters
 * of the drivers' parsers, the default failure rule, the `station steps` listing (see
 * driver.h). */
#include "jobs/driver.h"

#include <string.h>

size_t st_drivers_count(const st_driver *const *drivers)
{
    size_t n = 0;
    while (drivers && drivers[n])
        n++;
    return n;
}

int st_drivers_index(const st_driver *const *drivers, const st_driver *drv)
{
    for (size_t i = 0; drivers && drivers[i]; i++)
        if (drivers[i] == drv)
            return (int)i;
    return -1;
}

const st_step_def *st_drivers_find_step(const st_driver *const *drivers, const char *name,
                                        const st_driver **drv)
{
    for (size_t i = 0; drivers && drivers[i]; i++) {
        for (const st_step_def *s = drivers[i]->steps; s && s->name; s++) {
            if (strcmp(s->name, name) == 0) {
                if (drv)
                    *drv = drivers[i];
                return s;
            }
        }
    }
    return NULL;
}

int st_job_get_usb_id(const st_job_parse *p, const st_ynode *map, const char *field,
                      const char *key, const char *example, st_usb_id *out, st_err *err)
{
    const char *t = NULL;
    int rc = st_ymap_get_str(p->doc, map, field, key, false, &t, err);
    if (rc || !t)
        return rc;
    st_usb_id id;
    char sub[160];
    if (!st_parse_usb_id(t, &id.vid, &id.pid))
        return st_ydoc_error(p->doc, st_ymap_get(p->doc, map, key),
                             st_yfield(sub, sizeof sub, field, key), err, ST_ERR_INVAL,
                             "expected a USB id like %s", example);
    out->vid = id.vid;
    out->pid = id.pid;
    return 0;
}

int st_job_get_choice(const st_job_parse *p, const st_ynode *map, const char *field,
                      const char *key, const char *const names[], const char *expected,
                      unsigned *out, st_err *err)
{
    const char *t = NULL;
    int rc = st_ymap_get_str(p->doc, map, field, key, false, &t, err);
    if (rc || !t)
        return rc;
    for (unsigned i = 0; names[i]; i++) {
        if (strcmp(names[i], t) == 0) {
            *out = i;
            return 0;
        }
    }
    char sub[160], list[256] = "expected ";
    if (!expected) {
        for (unsigned i = 0; names[i]; i++) {
            size_t n = strlen(list);
            snprintf(list + n, sizeof list - n, "%s%s", i == 0 ? "" : names[i + 1] ? ", " : " or ",
                     names[i]);
        }
        expected = list;
    }
    return st_ydoc_error(p->doc, st_ymap_get(p->doc, map, key),
                         st_yfield(sub, sizeof sub, field, key), err, ST_ERR_INVAL, "%s",
                         expected);
}

st_fail_class st_fail_default(int code)
{
    switch (code) {
    case ST_ERR_TIMEOUT:
    case ST_ERR_IO:
    case ST_ERR_STALL:
    case ST_ERR_DISCONNECT:
    case ST_ERR_DEVICE:
    case ST_ERR_PROTO:
    case ST_ERR_NOTFOUND:
    case ST_ERR_BUSY:
        return ST_FAIL_RETRY;
    default:
        return ST_FAIL_FINAL;
    }
}

void st_cli_error(const st_cli *cli, const char *what, const st_err *e)
{
    fprintf(cli->errout, "station: %s: %s\n", what, e->msg[0] ? e->msg : st_strerror(e->code));
}

void st_print_wrapped(FILE *out, unsigned indent, unsigned col, const char *text)
{
    const unsigned width = 88;
    unsigned at = col;
    const char *p = text;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t w = strcspn(p, " ");
        if (!w)
            break;
        if (at > indent && at + 1 + w > width) {
            fprintf(out, "\n%*s", (int)indent, "");
            at = indent;
        } else if (at > indent) {
            fputc(' ', out);
            at++;
        } else if (at < indent) {
            fprintf(out, "%*s", (int)(indent - at), "");
            at = indent;
        }
        fwrite(p, 1, w, out);
        at += (unsigned)w;
        p += w;
    }
    fputc('\n', out);
}

void st_drivers_describe(const st_driver *const *drivers, FILE *out)
{
    fputs("Steps, by driver (a step is a bare name or {name: {options}}; every step takes\n"
          "retries and timeout_ms, and a step marked [image] takes image).\n",
          out);
    for (size_t i = 0; drivers && drivers[i]; i++) {
        const st_driver *d = drivers[i];
        fprintf(out, "\n%s: %s\n", d->name, d->summary ? d->summary : "");
        if (d->section_parse) {
            int col = fprintf(out, "  job section \"%s:\":", d->name);
            st_print_wrapped(out, 6, col > 0 ? (unsigned)col : 0,
                             d->section_help ? d->section_help : "");
        }
        if (d->discover)
            fputs("  finds units on a bus (units: discover)\n", out);
        if (d->rung_name)
            fprintf(out, "  default recovery rung \"%s\"\n", d->rung_name);
        for (const st_step_def *s = d->steps; s && s->name; s++) {
            fprintf(out, "  %s%s\n", s->name, s->flags & ST_STEP_TAKES_IMAGE ? " [image]" : "");
            st_print_wrapped(out, 6, 0, s->summary ? s->summary : "");
            for (const st_step_opt *o = s->opts; o && o->key; o++) {
                int col = fprintf(out, "      option %s:", o->key);
                st_print_wrapped(out, 8, col > 0 ? (unsigned)col : 0, o->help ? o->help : "");
            }
            if (s->records) {
                fputs("      records:", out);
                st_print_wrapped(out, 8, 14, s->records);
            }
        }
        for (const st_cli_cmd *c = d->commands; c && c->words; c++)
            fprintf(out, "  command: station %s%s%s\n", c->words, c->args ? " " : "",
                    c->args ? c->args : "");
    }
}
