/* Yield and failure figures over runs (see summary.h). */
#include "reports/summary.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reports/strmap.h"
#include "station/core/text.h"

typedef struct unit_first {
    char *started;
    bool pass;
} unit_first;

struct st_summary {
    unsigned runs, pass, fail, incomplete;
    st_strmap *units; /* identity -> unit_first* */
    st_strmap *fails; /* step "\n" cause -> count (as uintptr_t) */
    st_summary_fail *sorted;
    size_t nsorted;
};

static void free_sorted(st_summary *s)
{
    for (size_t i = 0; i < s->nsorted; i++)
        free((char *)s->sorted[i].step);
    free(s->sorted);
    s->sorted = NULL;
    s->nsorted = 0;
}

st_summary *st_summary_new(void)
{
    st_summary *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->units = st_strmap_new();
    s->fails = st_strmap_new();
    if (!s->units || !s->fails) {
        st_summary_free(s);
        return NULL;
    }
    return s;
}

void st_summary_free(st_summary *s)
{
    if (!s)
        return;
    if (s->units) {
        for (size_t i = 0; i < st_strmap_cap(s->units); i++) {
            void *v;
            if (st_strmap_at(s->units, i, &v)) {
                free(((unit_first *)v)->started);
                free(v);
            }
        }
    }
    st_strmap_free(s->units);
    st_strmap_free(s->fails);
    free_sorted(s);
    free(s);
}

int st_summary_add(st_summary *s, const char *identity, const char *started,
                   const char *verdict, const char *failed_step, const char *cause)
{
    bool pass = verdict && strcmp(verdict, "pass") == 0;
    bool fail = verdict && strcmp(verdict, "fail") == 0;
    s->runs++;
    if (!pass && !fail) {
        s->incomplete++;
        return 0;
    }
    if (pass)
        s->pass++;
    else
        s->fail++;
    if (!started)
        started = "";
    bool created;
    void **slot = st_strmap_put(s->units, identity ? identity : "unknown", &created);
    if (!slot)
        return ST_ERR_NOMEM;
    unit_first *u = *slot;
    if (created) {
        u = calloc(1, sizeof *u);
        if (!u || !(u->started = strdup(started))) {
            free(u);
            *slot = NULL;
            return ST_ERR_NOMEM;
        }
        u->pass = pass;
        *slot = u;
    } else {
        int c = strcmp(started, u->started);
        if (c < 0 || (c == 0 && !pass)) {
            char *d = strdup(started);
            if (!d)
                return ST_ERR_NOMEM;
            free(u->started);
            u->started = d;
            u->pass = pass;
        }
    }
    if (fail) {
        size_t sl = strlen(failed_step ? failed_step : "-"), cl = strlen(cause ? cause : "");
        char *key = malloc(sl + cl + 2);
        if (!key)
            return ST_ERR_NOMEM;
        memcpy(key, failed_step ? failed_step : "-", sl);
        key[sl] = '\n';
        memcpy(key + sl + 1, cause ? cause : "", cl + 1);
        void **c = st_strmap_put(s->fails, key, NULL);
        free(key);
        if (!c)
            return ST_ERR_NOMEM;
        *c = (void *)((uintptr_t)*c + 1);
    }
    return 0;
}

int st_summary_add_report(st_summary *s, const st_rnode *doc)
{
    const char *failed = NULL;
    const st_rnode *steps = st_rget(doc, "steps");
    for (size_t i = 0; i < st_rnode_len(steps); i++) {
        const st_rnode *st = st_rnode_child(steps, i);
        const char *o = st_rget_str(st, "outcome");
        if (o && strcmp(o, "fail") == 0) {
            failed = st_rget_str(st, "name");
            break;
        }
    }
    return st_summary_add(s, st_rget_str(doc, "unit.identity"), st_rget_str(doc, "run.started"),
                          st_rget_str(doc, "verdict"), failed, st_rget_str(doc, "cause"));
}

static int cmp_fail(const void *a, const void *b)
{
    const st_summary_fail *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    int c = strcmp(x->step, y->step);
    return c ? c : strcmp(x->cause, y->cause);
}

int st_summary_figures_get(st_summary *s, st_summary_figures *out)
{
    memset(out, 0, sizeof *out);
    out->runs = s->runs;
    out->pass = s->pass;
    out->fail = s->fail;
    out->incomplete = s->incomplete;
    for (size_t i = 0; i < st_strmap_cap(s->units); i++) {
        void *v;
        if (st_strmap_at(s->units, i, &v)) {
            out->units++;
            out->first_pass += ((unit_first *)v)->pass;
        }
    }
    out->first_pass_yield = out->units ? (double)out->first_pass / out->units : 0.0;
    free_sorted(s);
    s->sorted = calloc(st_strmap_len(s->fails) + 1, sizeof *s->sorted);
    if (!s->sorted)
        return ST_ERR_NOMEM;
    for (size_t i = 0; i < st_strmap_cap(s->fails); i++) {
        void *v;
        const char *k = st_strmap_at(s->fails, i, &v);
        if (!k)
            continue;
        /* The key is "step\ncause"; the map keeps it, so both halves can point into it
         * once the newline is found (the step part is copied out below). */
        st_summary_fail *f = &s->sorted[s->nsorted++];
        const char *nl = strchr(k, '\n');
        f->step = k;
        f->cause = nl + 1;
        f->count = (unsigned)(uintptr_t)v;
    }
    /* Steps end at the newline: compare and print them through a copy. */
    for (size_t i = 0; i < s->nsorted; i++) {
        size_t n = (size_t)(strchr(s->sorted[i].step, '\n') - s->sorted[i].step);
        char *st = malloc(n + 1);
        if (!st) {
            s->nsorted = i;
            free_sorted(s);
            return ST_ERR_NOMEM;
        }
        memcpy(st, s->sorted[i].step, n);
        st[n] = '\0';
        s->sorted[i].step = st;
    }
    qsort(s->sorted, s->nsorted, sizeof *s->sorted, cmp_fail);
    out->nfailures = s->nsorted;
    out->failures = s->sorted;
    return 0;
}

static void yaml_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02X", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

int st_summary_render(st_summary *s, FILE *out, bool yaml, size_t top)
{
    st_summary_figures fg;
    if (st_summary_figures_get(s, &fg))
        return ST_ERR_NOMEM;
    size_t n = top && top < fg.nfailures ? top : fg.nfailures;
    if (yaml) {
        fprintf(out, "runs: %u\npass: %u\nfail: %u\nincomplete: %u\nunits: %u\n"
                     "first_pass: %u\nfirst_pass_yield: %.4f\nfailures:\n",
                fg.runs, fg.pass, fg.fail, fg.incomplete, fg.units, fg.first_pass,
                fg.first_pass_yield);
        if (!n)
            fprintf(out, "  []\n");
        for (size_t i = 0; i < n; i++) {
            fprintf(out, "- step: ");
            yaml_str(out, fg.failures[i].step);
            fprintf(out, "\n  cause: ");
            yaml_str(out, fg.failures[i].cause);
            fprintf(out, "\n  count: %u\n", fg.failures[i].count);
        }
    } else {
        fprintf(out, "runs %u: %u pass, %u fail, %u incomplete\n", fg.runs, fg.pass, fg.fail,
                fg.incomplete);
        fprintf(out, "units %u, passed first time %u: first-pass yield %.1f%%\n", fg.units,
                fg.first_pass, 100.0 * fg.first_pass_yield);
        if (n)
            fprintf(out, "failures by step and cause:\n");
        for (size_t i = 0; i < n; i++) {
            char a[128], b[512];
            fprintf(out, "  %5u  %-20s %s\n", fg.failures[i].count,
                    st_text_printable(fg.failures[i].step, a, sizeof a),
                    st_text_printable(fg.failures[i].cause, b, sizeof b));
        }
        if (n < fg.nfailures)
            fprintf(out, "  (%zu more groups)\n", fg.nfailures - n);
    }
    return ferror(out) ? ST_ERR_IO : 0;
}
