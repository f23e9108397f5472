/* Job file parser and pre-flight image validation: see job.h. */
#include "jobs/job.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/driver.h"
#include "station/core/digest.h"
#include "station/core/text.h"
#include "station/core/yamldoc.h"

const char *st_job_step_name(const st_job_step *s)
{
    return s->def ? s->def->name : "?";
}

const void *st_job_section(const st_job *job, const st_driver *drv)
{
    int i = st_drivers_index(job->drivers, drv);
    return i < 0 ? NULL : job->sections[i];
}

bool st_parse_usb_id(const char *s, uint16_t *vid, uint16_t *pid)
{
    unsigned v, p;
    char tail;
    if (!s || strlen(s) != 9 || sscanf(s, "%4x:%4x%c", &v, &p, &tail) != 2)
        return false;
    *vid = (uint16_t)v;
    *pid = (uint16_t)p;
    return true;
}

static char *resolve(const char *job_path, const char *rel)
{
    if (rel[0] == '/')
        return strdup(rel);
    char *copy = strdup(job_path);
    if (!copy)
        return NULL;
    const char *dir = dirname(copy);
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s/%s", dir, rel);
    free(copy);
    /* Reports carry the canonical path when the file exists; otherwise the joined one, so
     * the "cannot open" error names what the job asked for. */
    char *canon = out ? realpath(out, NULL) : NULL;
    if (canon) {
        free(out);
        out = canon;
    }
    return out;
}

static int file_sha256(const char *path, char out[65], st_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return st_err_set(err, st_err_from_errno(errno), "%s: cannot open: %s", path, strerror(errno));
    st_digest *d = st_digest_new(ST_DIGEST_SHA256);
    if (!d) {
        fclose(f);
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    }
    uint8_t buf[8192], md[ST_DIGEST_MAX];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        st_digest_update(d, buf, n);
    fclose(f);
    st_digest_final(d, md);
    st_digest_free(d);
    st_hex(md, ST_SHA256_LEN, false, out);
    return 0;
}

static int parse_images(const st_ydoc *doc, const st_ynode *map, st_job *job, st_err *err)
{
    size_t n = st_ymap_len(doc, map);
    if (n == 0)
        return st_ydoc_error(doc, map, "images", err, ST_ERR_INVAL, "at least one image is needed");
    if (n > ST_JOB_MAX_IMAGES)
        return st_ydoc_error(doc, map, "images", err, ST_ERR_INVAL, "at most %d images",
                             ST_JOB_MAX_IMAGES);
    static const char *const keys[] = { "path", "load_addr", "sha256", NULL };
    for (size_t i = 0; i < n; i++) {
        const st_ynode *im;
        const char *role = st_ymap_at(doc, map, i, &im);
        char field[96];
        snprintf(field, sizeof field, "images.%.40s", role ? role : "?");
        /* The role is the job's own name for the image (no closed list: reports take any). */
        _Static_assert(sizeof job->images[0].role > ST_TEXT_NAME_MAX, "role fits a name");
        if (!st_text_is_name(role)) {
            char shown[48];
            return st_ydoc_error(doc, im, "images", err, ST_ERR_INVAL,
                                 "image name \"%s\": give 1-%d letters, digits, '.', '_' or '-'",
                                 st_text_printable(role ? role : "", shown, sizeof shown),
                                 ST_TEXT_NAME_MAX);
        }
        if (!st_ynode_is_map(im))
            return st_ydoc_error(doc, im, field, err, ST_ERR_INVAL,
                                 "expected a map with path, load_addr and sha256");
        int rc = st_ymap_check_keys(doc, im, field, keys, err);
        const char *path = NULL, *sha = NULL;
        st_job_image *ji = &job->images[i];
        if (!rc)
            rc = st_ymap_get_str(doc, im, field, "path", true, &path, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, im, field, "load_addr", true, 0, UINT32_MAX, &ji->load_addr, err);
        if (!rc)
            rc = st_ymap_get_str(doc, im, field, "sha256", true, &sha, err);
        if (rc)
            return rc;
        uint8_t tmp[32];
        if (!st_unhex(sha, tmp, sizeof tmp))
            return st_ydoc_error(doc, st_ymap_get(doc, im, "sha256"), field, err, ST_ERR_INVAL,
                                 "sha256 must be 64 hex digits");
        st_hex(tmp, sizeof tmp, false, ji->sha256);
        st_strlcpy(ji->role, role, sizeof ji->role);
        ji->line = st_ynode_line(im);
        ji->path = resolve(job->path, path);
        if (!ji->path)
            return st_err_set(err, ST_ERR_NOMEM, "out of memory");
        job->nimages++;
    }
    return 0;
}

int st_job_find_image(const st_job *job, const char *role)
{
    for (size_t i = 0; i < job->nimages; i++)
        if (strcmp(job->images[i].role, role) == 0)
            return (int)i;
    return -1;
}

/* Every step name the drivers offer, for "unknown step" errors. */
static void step_list(const st_job *job, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (const st_driver *const *d = job->drivers; *d; d++)
        for (const st_step_def *sd = (*d)->steps; sd && sd->name; sd++)
            if (n < cap)
                n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", sd->name);
}

/* One step: a bare name or {name: {options}}. The keys every step takes (retries,
 * timeout_ms, image for image steps) are handled here; the rest is the driver's. */
static int parse_step(const st_ydoc *doc, const st_ynode *item, const char *at, st_job *job,
                      int default_image, st_job_step *s, st_err *err)
{
    const char *name = NULL;
    const st_ynode *opts = NULL;
    if (st_ynode_is_scalar(item)) {
        name = st_ynode_text(item);
    } else if (st_ynode_is_map(item) && st_ymap_len(doc, item) == 1) {
        name = st_ymap_at(doc, item, 0, &opts);
        if (opts && !st_ynode_is_map(opts) &&
            !(st_ynode_is_scalar(opts) && st_ynode_text(opts)[0] == '\0'))
            return st_ydoc_error(doc, opts, at, err, ST_ERR_INVAL,
                                 "the options of step \"%.40s\" must be a map", name ? name : "?");
        if (!st_ynode_is_map(opts))
            opts = NULL;
    } else {
        return st_ydoc_error(doc, item, at, err, ST_ERR_INVAL,
                             "expected a step name or a map {step-name: {options}}");
    }
    memset(s, 0, sizeof *s);
    s->image = -1;
    s->retries = job->retries;
    s->line = st_ynode_line(item);
    s->def = name ? st_drivers_find_step(job->drivers, name, &s->driver) : NULL;
    if (!s->def) {
        char shown[48], list[512];
        step_list(job, list, sizeof list);
        return st_ydoc_error(doc, item, at, err, ST_ERR_INVAL, "unknown step \"%s\" (steps: %s)",
                             st_text_printable(name ? name : "?", shown, sizeof shown), list);
    }
    char field[96];
    snprintf(field, sizeof field, "%s.%s", at, name);
    const char *allowed[24];
    size_t na = 0;
    allowed[na++] = "retries";
    allowed[na++] = "timeout_ms";
    bool takes_image = s->def->flags & ST_STEP_TAKES_IMAGE;
    if (takes_image)
        allowed[na++] = "image";
    for (const st_step_opt *o = s->def->opts; o && o->key && na < 23; o++)
        allowed[na++] = o->key;
    allowed[na] = NULL;
    int rc = 0;
    if (opts) {
        rc = st_ymap_check_keys(doc, opts, field, allowed, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, opts, field, "retries", false, 0, 20, &s->retries, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, opts, field, "timeout_ms", false, 1, 3600000, &s->timeout_ms, err);
        const char *img = NULL;
        if (!rc && takes_image)
            rc = st_ymap_get_str(doc, opts, field, "image", false, &img, err);
        if (rc)
            return rc;
        char sub[112];
        snprintf(sub, sizeof sub, "%s.image", field);
        if (img && (s->image = st_job_find_image(job, img)) < 0)
            return st_ydoc_error(doc, st_ymap_get(doc, opts, "image"), sub, err, ST_ERR_INVAL,
                                 "no image named \"%.40s\" in images", img);
    }
    /* Steps that move an image default to the job's first one (a rung's to its own). */
    if (takes_image && s->image < 0)
        s->image = default_image;
    if (s->def->parse) {
        st_job_parse p = { .doc = doc, .at = item, .field = field, .job = job };
        rc = s->def->parse(&p, opts, &s->opts, err);
    }
    return rc;
}

/* units: slots | discover. discover needs a driver whose section lets it find units. */
static int parse_units(const st_ydoc *doc, const st_ynode *root, st_job *job, st_err *err)
{
    const char *units = NULL;
    int rc = st_ymap_get_str(doc, root, "", "units", false, &units, err);
    if (rc || !units)
        return rc;
    const st_ynode *at = st_ymap_get(doc, root, "units");
    if (strcmp(units, "slots") == 0) {
        job->units = ST_UNITS_SLOTS;
        return 0;
    }
    if (strcmp(units, "discover") != 0)
        return st_ydoc_error(doc, at, "units", err, ST_ERR_INVAL, "expected slots or discover");
    job->units = ST_UNITS_DISCOVER;
    const char *why = NULL;
    for (size_t i = 0; job->drivers[i]; i++) {
        const st_driver *d = job->drivers[i];
        if (!d->discover)
            continue;
        const char *r = d->discover_refusal ? d->discover_refusal(job->sections[i]) : NULL;
        if (!r) {
            job->finder = d;
            return 0;
        }
        if (!why)
            why = r;
    }
    return st_ydoc_error(doc, at, "units", err, ST_ERR_INVAL, "%s",
                         why ? why : "no driver can find units on a bus");
}

/* A default rung: the first driver that offers one. */
static const st_driver *rung_driver(const st_job *job)
{
    for (const st_driver *const *d = job->drivers; *d; d++)
        if ((*d)->rung_steps && (*d)->rung_name)
            return *d;
    return NULL;
}

static int parse_rung(const st_ydoc *doc, const st_ynode *node, const char *field, st_job *job,
                      st_err *err)
{
    if (job->nrungs == ST_JOB_MAX_RUNGS)
        return st_ydoc_error(doc, node, field, err, ST_ERR_INVAL, "at most %d rungs",
                             ST_JOB_MAX_RUNGS);
    if (!st_ynode_is_map(node))
        return st_ydoc_error(doc, node, field, err, ST_ERR_INVAL,
                             "expected a map with image (and optionally name and steps)");
    static const char *const rk[] = { "image", "name", "steps", NULL };
    st_job_rung *rung = &job->rungs[job->nrungs];
    memset(rung, 0, sizeof *rung);
    rung->line = st_ynode_line(node);
    const char *img = NULL, *name = NULL;
    const st_ynode *steps = NULL;
    char sub[96];
    int rc = st_ymap_check_keys(doc, node, field, rk, err);
    if (!rc)
        rc = st_ymap_get_str(doc, node, field, "image", true, &img, err);
    if (!rc)
        rc = st_ymap_get_str(doc, node, field, "name", false, &name, err);
    if (!rc)
        rc = st_ymap_get_seq(doc, node, field, "steps", false, &steps, err);
    if (rc)
        return rc;
    snprintf(sub, sizeof sub, "%s.image", field);
    if ((rung->image = st_job_find_image(job, img)) < 0)
        return st_ydoc_error(doc, st_ymap_get(doc, node, "image"), sub, err, ST_ERR_INVAL,
                             "no image named \"%.40s\" in images", img);
    job->nrungs++; /* from here on st_job_free frees what its steps hold */
    if (steps) {
        size_t n = st_yseq_len(doc, steps);
        snprintf(sub, sizeof sub, "%s.steps", field);
        if (n == 0 || n > ST_JOB_MAX_RUNG_STEPS)
            return st_ydoc_error(doc, steps, sub, err, ST_ERR_INVAL, "1 to %d steps",
                                 ST_JOB_MAX_RUNG_STEPS);
        for (size_t i = 0; i < n; i++) {
            snprintf(sub, sizeof sub, "%s.steps[%zu]", field, i);
            rc = parse_step(doc, st_yseq_at(doc, steps, i), sub, job, rung->image,
                            &rung->steps[i], err);
            if (rc)
                return rc;
            rung->nsteps++;
        }
        st_strlcpy(rung->name, name ? name : "recovery", sizeof rung->name);
        return 0;
    }
    const st_driver *d = rung_driver(job);
    if (!d)
        return st_ydoc_error(doc, node, field, err, ST_ERR_INVAL,
                             "give the rung's steps: no driver offers a default rung");
    st_strlcpy(rung->name, name ? name : d->rung_name, sizeof rung->name);
    for (size_t i = 0; d->rung_steps[i] && i < ST_JOB_MAX_RUNG_STEPS; i++) {
        st_job_step *s = &rung->steps[i];
        memset(s, 0, sizeof *s);
        s->def = st_drivers_find_step(job->drivers, d->rung_steps[i], &s->driver);
        if (!s->def)
            return st_ydoc_error(doc, node, field, err, ST_ERR_INVAL,
                                 "the default rung's step \"%s\" is in no driver", d->rung_steps[i]);
        s->retries = job->retries;
        s->line = rung->line;
        s->image = s->def->flags & ST_STEP_TAKES_IMAGE ? rung->image : -1;
        rung->nsteps++;
        if (s->def->parse) {
            st_job_parse p = { .doc = doc, .at = node, .field = field, .job = job };
            if ((rc = s->def->parse(&p, NULL, &s->opts, err)) != 0)
                return rc;
        }
    }
    return 0;
}

/* recovery: one rung { image, name?, steps? } or a list of them (the ladder, in order). A
 * rung without steps is the default rung of the driver that offers one. */
static int parse_recovery(const st_ydoc *doc, const st_ynode *root, st_job *job, st_err *err)
{
    const st_ynode *rec = st_ymap_get(doc, root, "recovery");
    if (!rec)
        return 0;
    if (st_ynode_is_seq(rec)) {
        size_t n = st_yseq_len(doc, rec);
        if (n == 0)
            return st_ydoc_error(doc, rec, "recovery", err, ST_ERR_INVAL, "at least one rung");
        for (size_t i = 0; i < n; i++) {
            char field[32];
            snprintf(field, sizeof field, "recovery[%zu]", i);
            int rc = parse_rung(doc, st_yseq_at(doc, rec, i), field, job, err);
            if (rc)
                return rc;
        }
        return 0;
    }
    return parse_rung(doc, rec, "recovery", job, err);
}

/* Every driver's section: its key at the top level, parsed by the driver (with NULL when
 * the job has none, for the defaults). */
static int parse_sections(const st_ydoc *doc, const st_ynode *root, st_job *job, st_err *err)
{
    for (size_t i = 0; job->drivers[i]; i++) {
        const st_driver *d = job->drivers[i];
        if (!d->section_parse)
            continue;
        const st_ynode *node = NULL;
        int rc = doc ? st_ymap_get_map(doc, root, "", d->name, false, &node, err) : 0;
        if (rc)
            return rc;
        st_job_parse p = { .doc = doc, .at = node, .field = d->name, .job = job };
        rc = d->section_parse(&p, node, &job->sections[i], err);
        if (rc)
            return rc;
    }
    return 0;
}

static int job_alloc(const st_driver *const *drivers, st_job **out, st_err *err)
{
    if (st_drivers_count(drivers) > ST_JOB_MAX_DRIVERS)
        return st_err_set(err, ST_ERR_INVAL, "more than %d drivers", ST_JOB_MAX_DRIVERS);
    st_job *job = calloc(1, sizeof *job);
    if (!job)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    job->drivers = drivers;
    job->retries = 2;
    job->units = ST_UNITS_SLOTS;
    st_strlcpy(job->report_dir, "reports-out", sizeof job->report_dir);
    *out = job;
    return 0;
}

int st_job_new(const st_driver *const *drivers, const st_mcu *mcu, st_job **out, st_err *err)
{
    st_job *job = NULL;
    int rc = job_alloc(drivers, &job, err);
    if (rc)
        return rc;
    job->mcu = mcu;
    rc = parse_sections(NULL, NULL, job, err);
    if (rc) {
        st_job_free(job);
        return rc;
    }
    *out = job;
    return 0;
}

int st_job_add_step(st_job *job, const char *name, int image, const char *opts_yaml, st_err *err)
{
    if (job->nsteps == ST_JOB_MAX_STEPS)
        return st_err_set(err, ST_ERR_INVAL, "at most %d steps", ST_JOB_MAX_STEPS);
    char text[512];
    if (opts_yaml)
        snprintf(text, sizeof text, "%s: %s\n", name, opts_yaml);
    else
        snprintf(text, sizeof text, "%s\n", name);
    st_ydoc *doc = NULL;
    int rc = st_ydoc_parse("(built-in step)", text, &doc, err);
    if (rc)
        return rc;
    st_job_step *s = &job->steps[job->nsteps];
    rc = parse_step(doc, st_ydoc_root(doc), "step", job, image >= 0 ? image : 0, s, err);
    st_ydoc_free(doc);
    if (rc) {
        if (s->def && s->def->free_opts)
            s->def->free_opts(s->opts);
        return rc;
    }
    job->nsteps++;
    return 0;
}

/* The MCU names of the MCU table, comma-separated. */
static const char *mcu_list(char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (const st_mcu *m = st_mcu_table(); m->name && n < cap; m++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", m->name);
    return buf;
}

int st_job_load(const char *path, const st_driver *const *drivers, st_job **out, st_err *err)
{
    st_ydoc *doc = NULL;
    int rc = st_ydoc_load(path, &doc, err);
    if (rc)
        return rc;
    st_job *job = NULL;
    rc = job_alloc(drivers, &job, err);
    /* Reports cite the job by absolute path; images resolve against its directory. */
    char *abs = rc ? NULL : realpath(path, NULL);
    if (!rc && !(job->path = abs ? abs : strdup(path)))
        rc = st_err_set(err, ST_ERR_NOMEM, "out of memory");
    if (rc) {
        st_job_free(job);
        st_ydoc_free(doc);
        return rc;
    }

    const st_ynode *root = st_ydoc_root(doc);
    /* The generic keys, then one section per driver that takes one. */
    static const char *const generic[] = { "name", "description", "target", "images", "steps",
                                           "retries", "report_dir", "units", "recovery" };
    const char *keys[sizeof generic / sizeof generic[0] + ST_JOB_MAX_DRIVERS + 1];
    size_t nk = 0;
    for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++)
        keys[nk++] = generic[i];
    for (const st_driver *const *d = drivers; *d; d++)
        if ((*d)->section_parse)
            keys[nk++] = (*d)->name;
    keys[nk] = NULL;
    const char *name = NULL, *desc = NULL, *target = NULL, *rdir = NULL;
    const st_ynode *images = NULL, *steps = NULL;
    if (!st_ynode_is_map(root))
        rc = st_ydoc_error(doc, root, "", err, ST_ERR_INVAL, "a job file is a map");
    if (!rc)
        rc = st_ymap_check_keys(doc, root, "", keys, err);
    if (!rc)
        rc = st_ymap_get_str(doc, root, "", "name", true, &name, err);
    if (!rc)
        rc = st_ymap_get_str(doc, root, "", "description", false, &desc, err);
    if (!rc)
        rc = st_ymap_get_str(doc, root, "", "target", true, &target, err);
    if (!rc && !(job->mcu = st_mcu_find(target))) {
        char known[256];
        rc = st_ydoc_error(doc, st_ymap_get(doc, root, "target"), "target", err, ST_ERR_INVAL,
                           "unknown MCU \"%.40s\" (known: %s)", target, mcu_list(known, sizeof known));
    }
    if (!rc)
        rc = st_ymap_get_u32(doc, root, "", "retries", false, 0, 20, &job->retries, err);
    if (!rc)
        rc = st_ymap_get_str(doc, root, "", "report_dir", false, &rdir, err);
    if (!rc)
        rc = st_ymap_get_map(doc, root, "", "images", true, &images, err);
    if (!rc)
        rc = parse_images(doc, images, job, err);
    if (!rc)
        rc = parse_sections(doc, root, job, err);
    if (!rc)
        rc = parse_units(doc, root, job, err);
    if (!rc)
        rc = parse_recovery(doc, root, job, err);
    if (!rc)
        rc = st_ymap_get_seq(doc, root, "", "steps", true, &steps, err);
    if (!rc && st_yseq_len(doc, steps) == 0)
        rc = st_ydoc_error(doc, steps, "steps", err, ST_ERR_INVAL, "at least one step is needed");
    if (!rc && st_yseq_len(doc, steps) > ST_JOB_MAX_STEPS)
        rc = st_ydoc_error(doc, steps, "steps", err, ST_ERR_INVAL, "at most %d steps", ST_JOB_MAX_STEPS);
    for (size_t i = 0; !rc && i < st_yseq_len(doc, steps); i++) {
        char field[32];
        snprintf(field, sizeof field, "steps[%zu]", i);
        rc = parse_step(doc, st_yseq_at(doc, steps, i), field, job, 0, &job->steps[i], err);
        if (!rc)
            job->nsteps++;
        else if (job->steps[i].def && job->steps[i].def->free_opts)
            job->steps[i].def->free_opts(job->steps[i].opts);
    }
    if (!rc) {
        st_strlcpy(job->name, name, sizeof job->name);
        st_strlcpy(job->description, desc ? desc : "", sizeof job->description);
        if (rdir)
            st_strlcpy(job->report_dir, rdir, sizeof job->report_dir);
        rc = file_sha256(path, job->sha256, err);
    }
    st_ydoc_free(doc);
    if (rc) {
        st_job_free(job);
        return rc;
    }
    *out = job;
    return 0;
}

static void free_step(st_job_step *s)
{
    if (s->def && s->def->free_opts)
        s->def->free_opts(s->opts);
    s->opts = NULL;
}

void st_job_free(st_job *job)
{
    if (!job)
        return;
    for (size_t i = 0; i < job->nimages; i++)
        free(job->images[i].path);
    for (size_t i = 0; i < job->nsteps; i++)
        free_step(&job->steps[i]);
    for (size_t r = 0; r < job->nrungs; r++)
        for (size_t i = 0; i < job->rungs[r].nsteps; i++)
            free_step(&job->rungs[r].steps[i]);
    for (size_t i = 0; job->drivers && job->drivers[i] && i < ST_JOB_MAX_DRIVERS; i++)
        if (job->sections[i] && job->drivers[i]->section_free)
            job->drivers[i]->section_free(job->sections[i]);
    free(job->path);
    free(job);
}

/* The driver that checks image i itself (driver.h image_check): the first one whose step
 * takes it, in the steps or the recovery ladder. NULL: the default rule. */
static const st_driver *image_checker(const st_job *job, int i)
{
    for (size_t k = 0; k < job->nsteps; k++)
        if (job->steps[k].image == i && job->steps[k].driver->image_check)
            return job->steps[k].driver;
    for (size_t r = 0; r < job->nrungs; r++)
        for (size_t k = 0; k < job->rungs[r].nsteps; k++)
            if (job->rungs[r].steps[k].image == i && job->rungs[r].steps[k].driver->image_check)
                return job->rungs[r].steps[k].driver;
    return NULL;
}

int st_job_load_images(const st_job *job, st_image *images[ST_JOB_MAX_IMAGES], st_err *err)
{
    for (size_t i = 0; i < ST_JOB_MAX_IMAGES; i++)
        images[i] = NULL;
    for (size_t i = 0; i < job->nimages; i++) {
        const st_job_image *ji = &job->images[i];
        const st_driver *checker = image_checker(job, (int)i);
        int rc = st_image_load(ji->path, ji->load_addr, &images[i], err);
        if (!rc && checker)
            rc = checker->image_check(job, st_job_section(job, checker), images[i], err);
        if (!rc && checker)
            rc = st_image_check_digest(images[i], ji->sha256, err);
        else if (!rc)
            rc = st_image_validate(images[i], job->mcu, ji->sha256, err);
        if (rc) {
            st_err_prefix(err, "%s:%u: images.%s", job->path, ji->line, ji->role);
            for (size_t j = 0; j <= i; j++) {
                st_image_free(images[j]);
                images[j] = NULL;
            }
            return rc;
        }
    }
    for (size_t d = 0; job->drivers && job->drivers[d]; d++) {
        const st_driver *drv = job->drivers[d];
        if (!drv->preflight)
            continue;
        int rc = drv->preflight(job, job->sections[d], images, err);
        if (rc) {
            st_err_prefix(err, "%s", job->path);
            for (size_t j = 0; j < job->nimages; j++) {
                st_image_free(images[j]);
                images[j] = NULL;
            }
            return rc;
        }
    }
    return 0;
}
