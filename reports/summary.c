/* Yield and failure figures over runs (see summary.h). */
#include "reports/summary.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reports/strmap.h"
#include "station/core/text.h"

typedef struct unit_first {
    char *started;
    bool pass;
} unit_first;

/* A growing list of samples (ms). */
typedef struct samples {
    double *v;
    size_t n, cap;
} samples;

typedef struct step_acc {
    char *name;
    size_t pos;      /* smallest index it had in a report's steps: the order shown */
    samples t;
    unsigned runs, fails, retries;
} step_acc;

typedef struct entry_acc {
    char *method;
    unsigned tries, ok;
} entry_acc;

struct st_summary {
    unsigned runs, pass, fail, incomplete;
    st_strmap *units; /* identity -> unit_first* */
    st_strmap *fails; /* step "\n" cause -> count (as uintptr_t) */
    st_summary_fail *sorted;
    size_t nsorted;
    char *since;
    samples unit_t;
    char first_started[40], last_finished[40];
    unsigned retries, runs_with_retries;
    st_strmap *step_ix;  /* step name -> index + 1 (as uintptr_t) */
    step_acc *steps;
    size_t nsteps, capsteps;
    st_summary_step *step_out;
    st_strmap *entry_ix; /* method -> index + 1 */
    entry_acc *entries;
    size_t nentries, capentries;
    st_summary_entry *entry_out;
};

static int push(samples *s, double v)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        double *nv = realloc(s->v, cap * sizeof *nv);
        if (!nv)
            return ST_ERR_NOMEM;
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n++] = v;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts the samples in place (they are only ever read sorted). */
static st_summary_dist dist_of(samples *s)
{
    st_summary_dist d = { (unsigned)s->n, 0, 0 };
    if (!s->n)
        return d;
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    d.median_ms = s->n % 2 ? s->v[s->n / 2] : (s->v[s->n / 2 - 1] + s->v[s->n / 2]) / 2;
    size_t rank = (size_t)ceil(0.95 * (double)s->n);
    d.p95_ms = s->v[rank ? rank - 1 : 0];
    return d;
}

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
    s->step_ix = st_strmap_new();
    s->entry_ix = st_strmap_new();
    if (!s->units || !s->fails || !s->step_ix || !s->entry_ix) {
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
    free(s->since);
    free(s->unit_t.v);
    for (size_t i = 0; i < s->nsteps; i++) {
        free(s->steps[i].name);
        free(s->steps[i].t.v);
    }
    free(s->steps);
    free(s->step_out);
    st_strmap_free(s->step_ix);
    for (size_t i = 0; i < s->nentries; i++)
        free(s->entries[i].method);
    free(s->entries);
    free(s->entry_out);
    st_strmap_free(s->entry_ix);
    free(s);
}

int st_summary_set_since(st_summary *s, const char *since)
{
    free(s->since);
    s->since = NULL;
    if (!since)
        return 0;
    /* A prefix of YYYY-MM-DDTHH:MM:SS.mmmZ, at least the date. */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    size_t n = strlen(since);
    bool ok = n >= 10 && n <= sizeof shape - 1;
    for (size_t i = 0; ok && i < n; i++)
        ok = shape[i] == 'd' ? since[i] >= '0' && since[i] <= '9' : since[i] == shape[i];
    if (!ok)
        return ST_ERR_INVAL;
    s->since = strdup(since);
    return s->since ? 0 : ST_ERR_NOMEM;
}

static bool before_since(const st_summary *s, const char *started)
{
    return s->since && (!started || strcmp(started, s->since) < 0);
}

int st_summary_add(st_summary *s, const char *identity, const char *started,
                   const char *verdict, const char *failed_step, const char *cause)
{
    if (before_since(s, started))
        return 0;
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

/* Index of name in a keyed list, appended when new; -1 when out of memory. */
static long index_of(st_strmap *ix, const char *name, void **list, size_t *n, size_t *cap,
                     size_t elem)
{
    bool created;
    void **slot = st_strmap_put(ix, name, &created);
    if (!slot)
        return -1;
    if (!created)
        return (long)((uintptr_t)*slot - 1);
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        void *nl = realloc(*list, nc * elem);
        if (!nl)
            return -1;
        *list = nl;
        *cap = nc;
    }
    /* The slot may have moved only on insertion, which has happened already. */
    slot = st_strmap_put(ix, name, NULL);
    *slot = (void *)(uintptr_t)(*n + 1);
    memset((char *)*list + *n * elem, 0, elem);
    return (long)(*n)++;
}

int st_summary_add_report(st_summary *s, const st_rnode *doc)
{
    const char *started = st_rget_str(doc, "run.started");
    if (before_since(s, started))
        return 0;
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
    const char *verdict = st_rget_str(doc, "verdict");
    int rc = st_summary_add(s, st_rget_str(doc, "unit.identity"), started, verdict, failed,
                            st_rget_str(doc, "cause"));
    if (rc < 0)
        return rc;
    bool done = verdict && (strcmp(verdict, "pass") == 0 || strcmp(verdict, "fail") == 0);
    double ms;
    if (done && st_rget_num(doc, "run.duration_ms", &ms) == 0 && push(&s->unit_t, ms))
        return ST_ERR_NOMEM;
    const char *fin = st_rget_str(doc, "run.finished");
    if (done && started && (!s->first_started[0] || strcmp(started, s->first_started) < 0))
        snprintf(s->first_started, sizeof s->first_started, "%s", started);
    if (done && fin && strcmp(fin, s->last_finished) > 0)
        snprintf(s->last_finished, sizeof s->last_finished, "%s", fin);
    unsigned run_retries = 0;
    for (size_t i = 0; i < st_rnode_len(steps); i++) {
        const st_rnode *st = st_rnode_child(steps, i);
        const char *name = st_rget_str(st, "name"), *o = st_rget_str(st, "outcome");
        if (!name || !o || strcmp(o, "skipped") == 0)
            continue;
        long k = index_of(s->step_ix, name, (void **)&s->steps, &s->nsteps, &s->capsteps,
                          sizeof *s->steps);
        if (k < 0)
            return ST_ERR_NOMEM;
        step_acc *a = &s->steps[k];
        if (!a->name) {
            if (!(a->name = strdup(name)))
                return ST_ERR_NOMEM;
            a->pos = i;
        }
        if (i < a->pos)
            a->pos = i;
        a->runs++;
        a->fails += strcmp(o, "fail") == 0;
        long long att;
        if (st_rget_int(st, "attempts", &att) == 0 && att > 1) {
            a->retries += (unsigned)(att - 1);
            run_retries += (unsigned)(att - 1);
        }
        if (st_rget_num(st, "duration_ms", &ms) == 0 && push(&a->t, ms))
            return ST_ERR_NOMEM;
        const char *em = st_rget_str(st, "entry_method");
        if (em) {
            long e = index_of(s->entry_ix, em, (void **)&s->entries, &s->nentries,
                              &s->capentries, sizeof *s->entries);
            if (e < 0)
                return ST_ERR_NOMEM;
            entry_acc *ea = &s->entries[e];
            if (!ea->method && !(ea->method = strdup(em)))
                return ST_ERR_NOMEM;
            ea->tries++;
            ea->ok += strcmp(o, "pass") == 0;
        }
    }
    s->retries += run_retries;
    s->runs_with_retries += run_retries > 0;
    return 1;
}

/* Seconds since the epoch of an ISO 8601 UTC time as reports write it; -1 if not one. */
static double iso_seconds(const char *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    unsigned ms = 0;
    if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%3u", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) < 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (double)timegm(&tm) + ms / 1000.0;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const st_summary_entry *)a)->method, ((const st_summary_entry *)b)->method);
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
    out->unit_time = dist_of(&s->unit_t);
    if (s->first_started[0] && s->last_finished[0]) {
        double span = iso_seconds(s->last_finished) - iso_seconds(s->first_started);
        if (span >= 1.0)
            out->units_per_hour = (s->pass + s->fail) * 3600.0 / span;
    }
    out->retries = s->retries;
    out->runs_with_retries = s->runs_with_retries;
    free(s->step_out);
    free(s->entry_out);
    s->step_out = calloc(s->nsteps + 1, sizeof *s->step_out);
    s->entry_out = calloc(s->nentries + 1, sizeof *s->entry_out);
    if (!s->step_out || !s->entry_out)
        return ST_ERR_NOMEM;
    /* In job order (each step's earliest position in a report), whatever order the
     * reports came in; a tie by name. */
    size_t *ord = malloc((s->nsteps + 1) * sizeof *ord);
    if (!ord)
        return ST_ERR_NOMEM;
    for (size_t i = 0; i < s->nsteps; i++)
        ord[i] = i;
    for (size_t i = 1; i < s->nsteps; i++)
        for (size_t j = i; j > 0; j--) {
            const step_acc *x = &s->steps[ord[j - 1]], *y = &s->steps[ord[j]];
            if (x->pos < y->pos || (x->pos == y->pos && strcmp(x->name, y->name) <= 0))
                break;
            size_t t = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = t;
        }
    for (size_t i = 0; i < s->nsteps; i++) {
        step_acc *a = &s->steps[ord[i]];
        s->step_out[i] = (st_summary_step){ a->name, dist_of(&a->t), a->runs, a->fails,
                                            a->retries };
    }
    free(ord);
    for (size_t i = 0; i < s->nentries; i++)
        s->entry_out[i] = (st_summary_entry){ s->entries[i].method, s->entries[i].tries,
                                              s->entries[i].ok };
    qsort(s->entry_out, s->nentries, sizeof *s->entry_out, cmp_entry);
    out->nsteps = s->nsteps;
    out->steps = s->step_out;
    out->nentries = s->nentries;
    out->entries = s->entry_out;
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
        /* Times, retries and entry methods come from report files only (the fleet database
         * keeps no steps): absent rather than zero when there are none. */
        if (!fg.unit_time.n && !fg.nsteps)
            return ferror(out) ? ST_ERR_IO : 0;
        fprintf(out, "unit_time: { n: %u, median_ms: %.3f, p95_ms: %.3f }\n"
                     "units_per_hour: %.1f\nretries: %u\nruns_with_retries: %u\nsteps:\n",
                fg.unit_time.n, fg.unit_time.median_ms, fg.unit_time.p95_ms, fg.units_per_hour,
                fg.retries, fg.runs_with_retries);
        if (!fg.nsteps)
            fprintf(out, "  []\n");
        for (size_t i = 0; i < fg.nsteps; i++) {
            fprintf(out, "- name: ");
            yaml_str(out, fg.steps[i].name);
            fprintf(out, "\n  runs: %u\n  fails: %u\n  retries: %u\n  median_ms: %.3f\n"
                         "  p95_ms: %.3f\n", fg.steps[i].runs, fg.steps[i].fails,
                    fg.steps[i].retries, fg.steps[i].time.median_ms, fg.steps[i].time.p95_ms);
        }
        fprintf(out, "entry_methods:\n");
        if (!fg.nentries)
            fprintf(out, "  []\n");
        for (size_t i = 0; i < fg.nentries; i++) {
            fprintf(out, "- method: ");
            yaml_str(out, fg.entries[i].method);
            fprintf(out, "\n  tries: %u\n  ok: %u\n  success_rate: %.4f\n", fg.entries[i].tries,
                    fg.entries[i].ok, (double)fg.entries[i].ok / fg.entries[i].tries);
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
        if (fg.unit_time.n)
            fprintf(out, "time per unit: median %.1f ms, p95 %.1f ms (%u runs); %.1f units/h\n",
                    fg.unit_time.median_ms, fg.unit_time.p95_ms, fg.unit_time.n,
                    fg.units_per_hour);
        if (fg.nsteps)
            fprintf(out, "steps:                    runs  fails  retries  median ms    p95 ms\n");
        for (size_t i = 0; i < fg.nsteps; i++) {
            char a[128];
            fprintf(out, "  %-22s %6u %6u %8u %10.1f %9.1f\n",
                    st_text_printable(fg.steps[i].name, a, sizeof a), fg.steps[i].runs,
                    fg.steps[i].fails, fg.steps[i].retries, fg.steps[i].time.median_ms,
                    fg.steps[i].time.p95_ms);
        }
        if (fg.nsteps)
            fprintf(out, "retries: %u, in %u run%s\n", fg.retries, fg.runs_with_retries,
                    fg.runs_with_retries == 1 ? "" : "s");
        if (fg.nentries)
            fprintf(out, "entry methods:\n");
        for (size_t i = 0; i < fg.nentries; i++) {
            char a[128];
            fprintf(out, "  %-22s %u of %u (%.1f%%)\n",
                    st_text_printable(fg.entries[i].method, a, sizeof a), fg.entries[i].ok,
                    fg.entries[i].tries, 100.0 * fg.entries[i].ok / fg.entries[i].tries);
        }
    }
    return ferror(out) ? ST_ERR_IO : 0;
}
