/* Job file parser and pre-flight image validation: see job.h. */
#include "jobs/job.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "station/core/digest.h"
#include "station/core/text.h"
#include "station/core/yamldoc.h"

static const struct {
    const char *name;
    st_step_kind kind;
} step_names[] = {
    { "enter-bootloader", ST_STEP_ENTER_BOOTLOADER },
    { "flash", ST_STEP_FLASH },
    { "verify", ST_STEP_VERIFY },
    { "start", ST_STEP_START },
    { "wait-for-app", ST_STEP_WAIT_FOR_APP },
    { "power-cycle", ST_STEP_POWER_CYCLE },
    { "enter-katapult", ST_STEP_ENTER_KATAPULT },
    { "read-app", ST_STEP_READ_APP },
    { "katapult-flash", ST_STEP_KATAPULT_FLASH },
    { "katapult-verify", ST_STEP_KATAPULT_VERIFY },
    { "katapult-complete", ST_STEP_KATAPULT_COMPLETE },
};

const char *st_step_kind_name(st_step_kind k)
{
    for (size_t i = 0; i < sizeof step_names / sizeof step_names[0]; i++)
        if (step_names[i].kind == k)
            return step_names[i].name;
    return "?";
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
        if (!role || strlen(role) >= sizeof job->images[0].role)
            return st_ydoc_error(doc, im, "images", err, ST_ERR_INVAL, "bad image name");
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

static int find_image(const st_job *job, const char *role)
{
    for (size_t i = 0; i < job->nimages; i++)
        if (strcmp(job->images[i].role, role) == 0)
            return (int)i;
    return -1;
}

/* katapult:, units: and recovery: */
static int parse_katapult(const st_ydoc *doc, const st_ynode *root, st_job *job, st_err *err)
{
    const st_ynode *k = NULL, *rec = NULL;
    const char *units = NULL, *transport = NULL, *app = NULL, *img = NULL;
    int rc = st_ymap_get_str(doc, root, "", "units", false, &units, err);
    if (!rc && units) {
        if (strcmp(units, "slots") == 0)
            job->units = ST_UNITS_SLOTS;
        else if (strcmp(units, "discover") == 0)
            job->units = ST_UNITS_DISCOVER;
        else
            rc = st_ydoc_error(doc, st_ymap_get(doc, root, "units"), "units", err, ST_ERR_INVAL,
                               "expected slots or discover");
    }
    if (!rc)
        rc = st_ymap_get_map(doc, root, "", "katapult", false, &k, err);
    if (!rc && k) {
        static const char *const kk[] = { "transport", "bitrate", "baud", "app_usb", "discover_ms",
                                          "timeout_ms", "tries", NULL };
        rc = st_ymap_check_keys(doc, k, "katapult", kk, err);
        if (!rc)
            rc = st_ymap_get_str(doc, k, "katapult", "transport", false, &transport, err);
        if (!rc && transport) {
            if (strcmp(transport, "can") == 0)
                job->katapult.transport = ST_KAT_CAN;
            else if (strcmp(transport, "usb") == 0)
                job->katapult.transport = ST_KAT_USB;
            else if (strcmp(transport, "uart") == 0)
                job->katapult.transport = ST_KAT_UART;
            else
                rc = st_ydoc_error(doc, st_ymap_get(doc, k, "transport"), "katapult.transport", err,
                                   ST_ERR_INVAL, "expected can, usb or uart");
        }
        if (!rc)
            rc = st_ymap_get_u32(doc, k, "katapult", "bitrate", false, 0, 1000000, &job->katapult.bitrate, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, k, "katapult", "baud", false, 1200, 4000000, &job->katapult.baud, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, k, "katapult", "discover_ms", false, 100, 60000,
                                 &job->katapult.discover_ms, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, k, "katapult", "timeout_ms", false, 10, 60000,
                                 &job->katapult.timeout_ms, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, k, "katapult", "tries", false, 1, 20, &job->katapult.tries, err);
        if (!rc)
            rc = st_ymap_get_str(doc, k, "katapult", "app_usb", false, &app, err);
        if (!rc && app && !st_parse_usb_id(app, &job->katapult.app_vid, &job->katapult.app_pid))
            rc = st_ydoc_error(doc, st_ymap_get(doc, k, "app_usb"), "katapult.app_usb", err,
                               ST_ERR_INVAL, "expected a USB id like 1d50:614e");
    }
    if (!rc && job->units == ST_UNITS_DISCOVER && job->katapult.transport != ST_KAT_CAN)
        rc = st_ydoc_error(doc, st_ymap_get(doc, root, "units"), "units", err, ST_ERR_INVAL,
                           "discover finds units on a CAN bus: it needs katapult.transport: can");
    if (!rc)
        rc = st_ymap_get_map(doc, root, "", "recovery", false, &rec, err);
    if (!rc && rec) {
        static const char *const rk[] = { "image", NULL };
        rc = st_ymap_check_keys(doc, rec, "recovery", rk, err);
        if (!rc)
            rc = st_ymap_get_str(doc, rec, "recovery", "image", true, &img, err);
        if (!rc && (job->recovery_image = find_image(job, img)) < 0)
            rc = st_ydoc_error(doc, st_ymap_get(doc, rec, "image"), "recovery.image", err,
                               ST_ERR_INVAL, "no image named \"%.40s\" in images", img);
    }
    return rc;
}

static int parse_step(const st_ydoc *doc, const st_ynode *item, size_t idx, st_job *job, st_err *err)
{
    char field[48];
    snprintf(field, sizeof field, "steps[%zu]", idx);
    const char *name = NULL;
    const st_ynode *opts = NULL;
    if (st_ynode_is_scalar(item)) {
        name = st_ynode_text(item);
    } else if (st_ynode_is_map(item) && st_ymap_len(doc, item) == 1) {
        name = st_ymap_at(doc, item, 0, &opts);
        if (opts && !st_ynode_is_map(opts) &&
            !(st_ynode_is_scalar(opts) && st_ynode_text(opts)[0] == '\0'))
            return st_ydoc_error(doc, opts, field, err, ST_ERR_INVAL,
                                 "the options of step \"%.40s\" must be a map", name ? name : "?");
        if (!st_ynode_is_map(opts))
            opts = NULL;
    } else {
        return st_ydoc_error(doc, item, field, err, ST_ERR_INVAL,
                             "expected a step name or a map {step-name: {options}}");
    }
    st_job_step *s = &job->steps[job->nsteps];
    memset(s, 0, sizeof *s);
    s->image = -1;
    s->retries = job->retries;
    s->line = st_ynode_line(item);
    bool known = false;
    for (size_t i = 0; name && i < sizeof step_names / sizeof step_names[0]; i++) {
        if (strcmp(step_names[i].name, name) == 0) {
            s->kind = step_names[i].kind;
            known = true;
        }
    }
    if (!known) {
        char shown[48];
        return st_ydoc_error(doc, item, field, err, ST_ERR_INVAL,
                             "unknown step \"%s\" (steps: enter-bootloader, flash, verify, start, "
                             "wait-for-app, power-cycle, enter-katapult, read-app, katapult-flash, "
                             "katapult-verify, katapult-complete)",
                             st_text_printable(name ? name : "?", shown, sizeof shown));
    }
    snprintf(field, sizeof field, "steps[%zu].%s", idx, name);
    static const char *const k_flash[] = { "image", "skip_identical", "retries", "timeout_ms", NULL };
    static const char *const k_verify[] = { "image", "retries", "timeout_ms", NULL };
    static const char *const k_wait[] = { "usb", "can", "retries", "timeout_ms", NULL };
    static const char *const k_plain[] = { "retries", "timeout_ms", NULL };
    const char *const *allowed = k_plain;
    if (s->kind == ST_STEP_FLASH || s->kind == ST_STEP_KATAPULT_FLASH)
        allowed = k_flash;
    else if (s->kind == ST_STEP_VERIFY || s->kind == ST_STEP_START ||
             s->kind == ST_STEP_KATAPULT_VERIFY || s->kind == ST_STEP_READ_APP)
        allowed = k_verify;
    else if (s->kind == ST_STEP_WAIT_FOR_APP)
        allowed = k_wait;
    int rc = 0;
    if (opts) {
        rc = st_ymap_check_keys(doc, opts, field, allowed, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, opts, field, "retries", false, 0, 20, &s->retries, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, opts, field, "timeout_ms", false, 1, 3600000, &s->timeout_ms, err);
        if (!rc)
            rc = st_ymap_get_bool(doc, opts, field, "skip_identical", false, &s->skip_identical, err);
        if (!rc)
            rc = st_ymap_get_bool(doc, opts, field, "can", false, &s->can, err);
        const char *img = NULL, *usb = NULL;
        if (!rc)
            rc = st_ymap_get_str(doc, opts, field, "image", false, &img, err);
        if (!rc)
            rc = st_ymap_get_str(doc, opts, field, "usb", false, &usb, err);
        if (rc)
            return rc;
        char sub[64];
        snprintf(sub, sizeof sub, "%s.image", field);
        if (img && (s->image = find_image(job, img)) < 0)
            return st_ydoc_error(doc, st_ymap_get(doc, opts, "image"), sub, err, ST_ERR_INVAL,
                                 "no image named \"%.40s\" in images", img);
        snprintf(sub, sizeof sub, "%s.usb", field);
        if (usb && !st_parse_usb_id(usb, &s->usb_vid, &s->usb_pid))
            return st_ydoc_error(doc, st_ymap_get(doc, opts, "usb"), sub, err, ST_ERR_INVAL,
                                 "expected a USB id like 1d50:614e");
    }
    /* Steps that move an image default to the job's first one. */
    if (s->image < 0 && (s->kind == ST_STEP_FLASH || s->kind == ST_STEP_VERIFY ||
                         s->kind == ST_STEP_START || s->kind == ST_STEP_READ_APP ||
                         s->kind == ST_STEP_KATAPULT_FLASH || s->kind == ST_STEP_KATAPULT_VERIFY))
        s->image = 0;
    if (s->kind == ST_STEP_WAIT_FOR_APP && !s->usb_vid && !s->can)
        return st_ydoc_error(doc, item, field, err, ST_ERR_INVAL,
                             "wait-for-app needs the application's USB id (usb: \"1d50:614e\") "
                             "or can: true");
    job->nsteps++;
    return 0;
}

void st_job_defaults(st_job *job)
{
    job->retries = 2;
    job->dfu_vid = 0x0483;
    job->dfu_pid = 0xdf11;
    job->enumerate_timeout_ms = 5000;
    job->request_timeout_ms = 5000;
    job->recovery_image = -1;
    job->units = ST_UNITS_SLOTS;
    job->katapult.transport = ST_KAT_CAN;
    job->katapult.baud = 250000;       /* Katapult's UART default (protocols.md 2.5) */
    job->katapult.app_vid = 0x1d50;
    job->katapult.app_pid = 0x614e;
    job->katapult.discover_ms = 2000;  /* canbus_query.py's collection time */
    st_strlcpy(job->report_dir, "reports-out", sizeof job->report_dir);
}

int st_job_load(const char *path, st_job **out, st_err *err)
{
    st_ydoc *doc = NULL;
    int rc = st_ydoc_load(path, &doc, err);
    if (rc)
        return rc;
    st_job *job = calloc(1, sizeof *job);
    /* Reports cite the job by absolute path; images resolve against its directory. */
    char *abs = realpath(path, NULL);
    if (!job || !(job->path = abs ? abs : strdup(path))) {
        free(job);
        st_ydoc_free(doc);
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    }
    st_job_defaults(job);

    const st_ynode *root = st_ydoc_root(doc);
    static const char *const keys[] = { "name", "description", "target", "images", "steps",
                                        "retries", "report_dir", "dfu", "katapult", "units",
                                        "recovery", NULL };
    const char *name = NULL, *desc = NULL, *target = NULL, *rdir = NULL, *dfudev = NULL;
    const st_ynode *images = NULL, *steps = NULL, *dfu = NULL;
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
    if (!rc && !(job->mcu = st_mcu_find(target)))
        rc = st_ydoc_error(doc, st_ymap_get(doc, root, "target"), "target", err, ST_ERR_INVAL,
                           "unknown MCU \"%.40s\" (known: stm32g431xx)", target);
    if (!rc)
        rc = st_ymap_get_u32(doc, root, "", "retries", false, 0, 20, &job->retries, err);
    if (!rc)
        rc = st_ymap_get_str(doc, root, "", "report_dir", false, &rdir, err);
    if (!rc)
        rc = st_ymap_get_map(doc, root, "", "dfu", false, &dfu, err);
    if (!rc && dfu) {
        static const char *const dkeys[] = { "device", "enumerate_timeout_ms", "request_timeout_ms", NULL };
        rc = st_ymap_check_keys(doc, dfu, "dfu", dkeys, err);
        if (!rc)
            rc = st_ymap_get_str(doc, dfu, "dfu", "device", false, &dfudev, err);
        if (!rc && dfudev && !st_parse_usb_id(dfudev, &job->dfu_vid, &job->dfu_pid))
            rc = st_ydoc_error(doc, st_ymap_get(doc, dfu, "device"), "dfu.device", err,
                               ST_ERR_INVAL, "expected a USB id like 0483:df11");
        if (!rc)
            rc = st_ymap_get_u32(doc, dfu, "dfu", "enumerate_timeout_ms", false, 1, 600000,
                                 &job->enumerate_timeout_ms, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, dfu, "dfu", "request_timeout_ms", false, 1, 600000,
                                 &job->request_timeout_ms, err);
    }
    if (!rc)
        rc = st_ymap_get_map(doc, root, "", "images", true, &images, err);
    if (!rc)
        rc = parse_images(doc, images, job, err);
    if (!rc)
        rc = parse_katapult(doc, root, job, err);
    if (!rc)
        rc = st_ymap_get_seq(doc, root, "", "steps", true, &steps, err);
    if (!rc && st_yseq_len(doc, steps) == 0)
        rc = st_ydoc_error(doc, steps, "steps", err, ST_ERR_INVAL, "at least one step is needed");
    if (!rc && st_yseq_len(doc, steps) > ST_JOB_MAX_STEPS)
        rc = st_ydoc_error(doc, steps, "steps", err, ST_ERR_INVAL, "at most %d steps", ST_JOB_MAX_STEPS);
    for (size_t i = 0; !rc && i < st_yseq_len(doc, steps); i++)
        rc = parse_step(doc, st_yseq_at(doc, steps, i), i, job, err);
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

void st_job_free(st_job *job)
{
    if (!job)
        return;
    for (size_t i = 0; i < job->nimages; i++)
        free(job->images[i].path);
    free(job->path);
    free(job);
}

int st_job_load_images(const st_job *job, st_image *images[ST_JOB_MAX_IMAGES], st_err *err)
{
    for (size_t i = 0; i < ST_JOB_MAX_IMAGES; i++)
        images[i] = NULL;
    for (size_t i = 0; i < job->nimages; i++) {
        const st_job_image *ji = &job->images[i];
        int rc = st_image_load(ji->path, ji->load_addr, &images[i], err);
        if (!rc)
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
    return 0;
}
