/* The BGAPI UART DFU driver (see driver.h): put a Silicon Labs Bluetooth module into its
 * Gecko bootloader over the slot's module UART, upload a GBL image, finish, restart into
 * the new firmware and record its stack version; the job section "bgapi:"; the commands
 * `station ble flash` and `station ble image`. */
#include "protocols/bgapi/driver.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/bgapi/bgapi.h"
#include "protocols/bgapi/gbl.h"
#include "station/core/clock.h"
#include "station/core/digest.h"
#include "station/core/text.h"

#define MOD "bgapi"

/* The job's bgapi: section. */
typedef struct bg_section {
    st_bgapi_entry first;       /* reset tried first (bootloader: gsdk3 -> dfu_reset; the
                                   other reset is still tried if this one is ignored) */
    uint32_t chunk;             /* upload chunk, multiple of 4, 4..252 */
    uint32_t entry_timeout_ms, response_timeout_ms, boot_timeout_ms;
    bool raw;                   /* images that are not GBL files are allowed */
    char expect_stack[32];      /* "5.1.2": the stack the new firmware must report ("" = any) */
} bg_section;

/* One unit's module session. */
typedef struct bg_session {
    st_stream *s;
    st_bgapi *b;
    bool in_dfu;                /* evt_dfu_boot seen since the last restart */
    bool dirty;                 /* an upload was cut off: the GBL parser holds a partial stream */
    uint64_t t0_us;             /* when the update started (enter-dfu) */
} bg_session;

/* ---- the section ---------------------------------------------------------------------- */

static bool parse_version(const char *s, unsigned v[3])
{
    char tail;
    return s && sscanf(s, "%u.%u.%u%c", &v[0], &v[1], &v[2], &tail) == 3 && v[0] < 65536 &&
           v[1] < 65536 && v[2] < 65536;
}

static int section_parse(const st_job_parse *p, const st_ynode *k, void **out, st_err *err)
{
    bg_section *s = calloc(1, sizeof *s);
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    s->first = ST_BGAPI_ENTRY_SYSTEM_RESET;
    s->chunk = ST_BGAPI_CHUNK_DEFAULT;
    int rc = 0;
    if (k) {
        static const char *const keys[] = {"bootloader", "chunk", "entry_timeout_ms",
                                           "response_timeout_ms", "boot_timeout_ms", "raw",
                                           "expect_stack", NULL};
        const st_ydoc *doc = p->doc;
        static const char *const bootloaders[] = { "auto", "gsdk3", "gsdk4", NULL };
        const char *stack = NULL;
        unsigned bl = 0;
        rc = st_ymap_check_strict(doc, k, "bgapi", keys, err);
        if (!rc)
            rc = st_job_get_choice(p, k, "bgapi", "bootloader", bootloaders,
                                   "expected auto, gsdk3 (up to GSDK 3.2: dfu_reset first) or "
                                   "gsdk4 (GSDK 4.0 and later: system_reset first)",
                                   &bl, err);
        if (bl == 1)
            s->first = ST_BGAPI_ENTRY_DFU_RESET;
        if (!rc)
            rc = st_ymap_get_u32(doc, k, "bgapi", "chunk", false, 4, ST_BGAPI_CHUNK_MAX,
                                 &s->chunk, err);
        if (!rc && s->chunk % 4)
            rc = st_ydoc_error(doc, st_ymap_get(doc, k, "chunk"), "bgapi.chunk", err,
                               ST_ERR_INVAL,
                               "%u is not a multiple of 4 (the bootloader writes whole words)",
                               s->chunk);
        if (!rc)
            rc = st_ymap_get_u32(doc, k, "bgapi", "entry_timeout_ms", false, 100, 120000,
                                 &s->entry_timeout_ms, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, k, "bgapi", "response_timeout_ms", false, 10, 60000,
                                 &s->response_timeout_ms, err);
        if (!rc)
            rc = st_ymap_get_u32(doc, k, "bgapi", "boot_timeout_ms", false, 10, 120000,
                                 &s->boot_timeout_ms, err);
        if (!rc)
            rc = st_ymap_get_bool(doc, k, "bgapi", "raw", false, &s->raw, err);
        if (!rc)
            rc = st_ymap_get_str(doc, k, "bgapi", "expect_stack", false, &stack, err);
        unsigned v[3];
        if (!rc && stack && !parse_version(stack, v))
            rc = st_ydoc_error(doc, st_ymap_get(doc, k, "expect_stack"), "bgapi.expect_stack",
                               err, ST_ERR_INVAL, "expected a version like 5.1.2");
        if (!rc && stack)
            st_strlcpy(s->expect_stack, stack, sizeof s->expect_stack);
    }
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* ---- images --------------------------------------------------------------------------- */

/* What the station refuses before any unit is touched: a GBL that fails a check, and (for
 * raw images, where the job allows them) a length that is not a multiple of 4. */
static int image_check(const st_job *job, const void *section, const st_image *img,
                       st_err *err)
{
    const bg_section *sec = section;
    if (sec && sec->raw && !(img->size >= 4 && img->data[0] == 0xEB && img->data[1] == 0x17 &&
                             img->data[2] == 0xA6 && img->data[3] == 0x03)) {
        if (img->size == 0 || img->size % 4)
            return st_err_set(err, ST_ERR_INVAL,
                              "%s: raw image of %zu bytes: the length must be a multiple of 4",
                              img->path, img->size);
        return 0;
    }
    return st_gbl_check(img->data, img->size, img->path, NULL, err);
}

/* ---- the session ---------------------------------------------------------------------- */

static int session_open(const st_step_call *c, void **out, st_err *err)
{
    bg_session *s = calloc(1, sizeof *s);
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    *out = s;
    return 0;
}

static void bg_close(bg_session *s)
{
    st_bgapi_close(s->b);
    s->b = NULL;
    st_stream_close(s->s);
    s->s = NULL;
}

static void session_close(void *session)
{
    bg_session *s = session;
    if (!s)
        return;
    bg_close(s);
    free(s);
}

/* After a failure the module is left as it is: in DFU mode it waits for the next update
 * (a restart would only bring it back there with an image that does not boot). */
static void session_abandon(const st_step_call *c, void *session)
{
    bg_session *s = session;
    if (s && s->in_dfu)
        st_rmap_str(st_run_unit(c->run), "module_state", "dfu-mode");
}

/* Open the slot's module UART and the engine on it. */
static int bg_open(st_step_call *c, bg_session *s, st_err *err)
{
    if (s->b)
        return 0;
    const st_run_env *env = c->env;
    const bg_section *sec = c->section;
    const st_fixture_slot *fs = env->fslot;
    if (!fs || !fs->module.present)
        return st_err_set(err, ST_ERR_INVAL,
                          "no module UART for this unit (give the slot module.device in the "
                          "fixture)");
    st_stream_line line = {.baud = fs->module.baud, .data_bits = 8, .parity = 'N',
                           .stop_bits = 1, .rtscts = fs->module.flow_control};
    int rc = env->uart_open ? env->uart_open(env->uart_ctx, fs, fs->module.device, &line,
                                             &s->s, err)
                            : st_stream_tty_open(fs->module.device, &line, &s->s, err);
    if (rc)
        return st_err_wrap(err, rc, "module UART %s", fs->module.device);
    st_bgapi_opts o = {
        .chunk = sec->chunk,
        .first = sec->first,
        .entry_timeout_ms = sec->entry_timeout_ms,
        .rsp_timeout_ms = sec->response_timeout_ms,
        .boot_timeout_ms = sec->boot_timeout_ms,
        .log = env->log,
        .progress = env->progress,
    };
    rc = st_bgapi_open(s->s, &o, &s->b, err);
    if (rc) {
        bg_close(s);
        return rc;
    }
    return 0;
}

static void version_str(uint32_t v, char *buf, size_t cap)
{
    snprintf(buf, cap, "%u.%u.%u", v >> 24, (v >> 16) & 0xff, v & 0xffff);
}

static st_rnode *module_map(st_step_call *c)
{
    return st_rmap_map(st_run_unit(c->run), "module");
}

/* ---- bgapi-enter-dfu ------------------------------------------------------------------ */

static int enter(st_step_call *c, bg_session *s, st_err *err)
{
    int rc = bg_open(c, s, err);
    if (rc)
        return rc;
    if (!s->t0_us)
        s->t0_us = st_now_us();
    rc = st_bgapi_enter_dfu(s->b, err);
    const st_bgapi_result *r = st_bgapi_get_result(s->b);
    st_rmap_uint(c->rec, "resets_sent", r->entry_sends);
    if (r->saw_boot_failure) {
        char nb[96];
        st_rmap_fmt(c->rec, "boot_failure_seen", "0x%04x (%s)", r->boot_failure_reason,
                    st_bgapi_result_name(r->boot_failure_reason, r->gen, nb, sizeof nb));
    }
    if (rc)
        return rc;
    s->in_dfu = true;
    s->dirty = false;
    char v[32];
    version_str(r->bootloader_version, v, sizeof v);
    st_rmap_str(c->rec, "entry_method", st_bgapi_entry_name(r->entry));
    st_rmap_hex32(c->rec, "bootloader_version", r->bootloader_version);
    st_rmap_str(c->rec, "bootloader", st_bgapi_gen_name(r->gen));
    st_rnode *m = module_map(c);
    st_rmap_str(m, "entry_method", st_bgapi_entry_name(r->entry));
    st_rmap_hex32(m, "bootloader_version", r->bootloader_version);
    st_rmap_str(m, "bootloader_release", v);
    st_rmap_str(m, "bootloader_generation", st_bgapi_gen_name(r->gen));
    return 0;
}

static int step_enter(st_step_call *c, st_err *err)
{
    return enter(c, c->session, err);
}

/* ---- bgapi-upload --------------------------------------------------------------------- */

static int step_upload(st_step_call *c, st_err *err)
{
    bg_session *s = c->session;
    const st_image *img = c->image;
    int rc = image_check(c->job, c->section, img, err);
    if (rc)
        return rc;
    if (!s->b || !s->in_dfu)
        return st_err_set(err, ST_ERR_INVAL,
                          "the module is not in DFU mode (bgapi-enter-dfu must come first)");
    if (s->dirty) {
        /* An earlier attempt was cut off: the bootloader's GBL parser holds part of the
         * stream. Let a half-received packet time out, then restart the bootloader. */
        st_bgapi_quiet(s->b);
        rc = enter(c, s, err);
        if (rc)
            return st_err_wrap(err, rc, "re-entering DFU mode after a cut-off upload");
        st_rmap_str(c->rec, "note", "re-entered DFU mode: the previous attempt was cut off");
    }
    s->dirty = true;
    rc = st_bgapi_upload(s->b, img->data, img->size, err);
    const st_bgapi_result *r = st_bgapi_get_result(s->b);
    st_rmap_uint(c->rec, "bytes", r->bytes_done);
    st_rmap_uint(c->rec, "chunk_size", r->chunk_size);
    st_rmap_uint(c->rec, "chunks", r->chunks);
    st_rmap_uint(c->rec, "chunks_sent", r->chunks_done);
    st_rmap_str(c->rec, "sha256", img->sha256_hex);
    if (rc) {
        if (rc == ST_ERR_DEVICE)
            st_run_device_error(c->run, err->msg);
        return rc;
    }
    s->dirty = false;
    st_rnode *m = module_map(c);
    st_rmap_str(m, "image", img->path);
    st_rmap_str(m, "image_sha256", img->sha256_hex);
    st_rmap_uint(m, "image_bytes", img->size);
    st_rmap_uint(m, "chunk_size", r->chunk_size);
    st_rmap_uint(m, "chunks", r->chunks);
    return 0;
}

/* ---- bgapi-finish --------------------------------------------------------------------- */

static int step_finish(st_step_call *c, st_err *err)
{
    bg_session *s = c->session;
    if (!s->b || !s->in_dfu || s->dirty)
        return st_err_set(err, ST_ERR_INVAL,
                          "no complete upload to finish (bgapi-upload must come first)");
    int rc = st_bgapi_finish(s->b, err);
    const st_bgapi_result *r = st_bgapi_get_result(s->b);
    if (rc) {
        char nb[96];
        if (rc == ST_ERR_DEVICE) {
            st_rmap_fmt(c->rec, "result", "0x%04x (%s)", r->last_result,
                        st_bgapi_result_name(r->last_result, r->gen, nb, sizeof nb));
            st_run_device_error(c->run, err->msg);
        }
        st_rmap_str(st_run_unit(c->run), "module_state", "dfu-mode");
        return rc;
    }
    st_rmap_str(c->rec, "result", "0x0000 (accepted)");
    return 0;
}

/* ---- bgapi-boot ----------------------------------------------------------------------- */

static int step_boot(st_step_call *c, st_err *err)
{
    bg_session *s = c->session;
    const bg_section *sec = c->section;
    if (!s->b || !s->in_dfu)
        return st_err_set(err, ST_ERR_INVAL,
                          "the module is not in DFU mode (bgapi-enter-dfu must come first)");
    int rc = st_bgapi_boot(s->b, err);
    const st_bgapi_result *r = st_bgapi_get_result(s->b);
    if (rc) {
        if (rc == ST_ERR_DEVICE) {
            st_run_device_error(c->run, err->msg);
            st_rmap_str(st_run_unit(c->run), "module_state", "dfu-mode");
        }
        return rc;
    }
    s->in_dfu = false;
    const st_bgapi_system_boot *b = &r->stack;
    char stack[32];
    snprintf(stack, sizeof stack, "%u.%u.%u", b->major, b->minor, b->patch);
    st_rmap_str(c->rec, "stack_version", stack);
    st_rmap_uint(c->rec, "stack_build", b->build);
    st_rnode *m = module_map(c);
    st_rmap_str(m, "stack_version", stack);
    st_rmap_uint(m, "stack_build", b->build);
    st_rmap_hex32(m, "stack_bootloader", b->bootloader);
    st_rmap_uint(m, "hw", b->hw);
    if (b->has_hash)
        st_rmap_hex32(m, "stack_hash", b->hash);
    if (s->t0_us)
        st_rmap_ms(m, "update_ms", st_now_us() - s->t0_us);
    st_rmap_str(st_run_unit(c->run), "module_state", "application");
    if (sec->expect_stack[0] && strcmp(sec->expect_stack, stack) != 0)
        return st_err_set(err, ST_ERR_MISMATCH,
                          "the module runs stack %s, the job expects %s", stack,
                          sec->expect_stack);
    return 0;
}

/* A result the bootloader reported is final: another attempt sends the same image to the
 * same bootloader. A link failure (timeout, garbage) is retried; the upload re-enters DFU
 * mode first. */
static st_fail_class classify(const st_step_call *c, int code)
{
    (void)c;
    if (code == ST_ERR_DEVICE || code == ST_ERR_MISMATCH)
        return ST_FAIL_FINAL;
    return st_fail_default(code);
}

static const st_step_def steps[] = {
    {.name = "bgapi-enter-dfu",
     .summary = "module -> Gecko bootloader: system_reset(1) / dfu_reset(1) alternately, once a "
                "second, until evt_dfu_boot",
     .records = "entry_method, bootloader_version, bootloader, resets_sent, boot_failure_seen; "
                "unit.module (entry_method, bootloader_version, bootloader_release, "
                "bootloader_generation)",
     .run = step_enter, .classify = classify},
    {.name = "bgapi-upload",
     .summary = "dfu_flash_set_address(0), then the GBL in chunks, every answer checked",
     .records = "bytes, chunk_size, chunks, chunks_sent, sha256; unit.module (image, "
                "image_sha256, image_bytes, chunk_size, chunks)",
     .flags = ST_STEP_TAKES_IMAGE, .run = step_upload, .classify = classify},
    {.name = "bgapi-finish",
     .summary = "dfu_flash_upload_finish: any non-zero result fails (the module stays in DFU "
                "mode)",
     .records = "result; unit.module_state",
     .run = step_finish, .classify = classify},
    {.name = "bgapi-boot",
     .summary = "restart into the new firmware, wait for evt_system_boot (evt_dfu_boot_failure "
                "fails naming the reason)",
     .records = "stack_version, stack_build; unit.module (stack_version, stack_build, "
                "stack_bootloader, hw, stack_hash, update_ms), unit.module_state",
     .run = step_boot, .classify = classify},
    {.name = NULL},
};

/* ---- commands ------------------------------------------------------------------------ */

static int cmd_ble_flash(const st_cli *cli, char *const args[])
{
    st_err e;
    st_job *job = NULL;
    st_image *images[ST_JOB_MAX_IMAGES] = {NULL};
    int status = ST_EXIT_USAGE;
    const char *bl = cli->opt(cli, "bootloader");
    const char *chunk = cli->opt(cli, "chunk");
    bool raw = cli->opt(cli, "raw") != NULL;
    if (cli->nslots != 1) {
        fprintf(cli->errout,
                "station: ble flash needs --slot N (the slot whose module UART holds it)\n");
        return ST_EXIT_USAGE;
    }
    if (bl && strcmp(bl, "gsdk3") && strcmp(bl, "gsdk4") && strcmp(bl, "auto")) {
        fprintf(cli->errout, "station: --bootloader %s: expected auto, gsdk3 or gsdk4\n", bl);
        return ST_EXIT_USAGE;
    }
    uint64_t ch = ST_BGAPI_CHUNK_DEFAULT;
    if (chunk && (!st_parse_u64(chunk, &ch) || ch < 4 || ch > ST_BGAPI_CHUNK_MAX || ch % 4)) {
        fprintf(cli->errout, "station: --chunk %s: expected a multiple of 4 from 4 to %d\n",
                chunk, ST_BGAPI_CHUNK_MAX);
        return ST_EXIT_USAGE;
    }
    const st_mcu *mcu = st_mcu_find("efr32bg13p632f512");
    if (st_job_new(cli->drivers, mcu, &job, &e)) {
        st_cli_error(cli, "ble flash", &e);
        return ST_EXIT_STATION;
    }
    int di = st_drivers_index(job->drivers, &st_bgapi_driver);
    bg_section *sec = di >= 0 ? job->sections[di] : NULL;
    if (!sec) {
        fprintf(cli->errout, "station: the bgapi driver is not in the registry\n");
        st_job_free(job);
        return ST_EXIT_STATION;
    }
    st_strlcpy(job->name, "ble-flash", sizeof job->name);
    job->retries = 1;
    if (bl && strcmp(bl, "gsdk3") == 0)
        sec->first = ST_BGAPI_ENTRY_DFU_RESET;
    sec->chunk = (uint32_t)ch;
    sec->raw = raw;
    job->images[0].path = realpath(args[0], NULL);
    if (!job->images[0].path)
        job->images[0].path = strdup(args[0]);
    st_strlcpy(job->images[0].role, "module", sizeof job->images[0].role);
    job->nimages = 1;
    if (st_image_load(job->images[0].path, 0, &images[0], &e) ||
        image_check(job, sec, images[0], &e) ||
        (cli->opt(cli, "sha256") && st_image_check_digest(images[0], cli->opt(cli, "sha256"), &e))) {
        st_cli_error(cli, "image refused", &e);
        goto out;
    }
    st_strlcpy(job->images[0].sha256, images[0]->sha256_hex, sizeof job->images[0].sha256);
    char line[PATH_MAX + 128];
    snprintf(line, sizeof line, "station ble flash %s --slot %d --chunk %u%s%s%s",
             job->images[0].path, cli->slots[0], (unsigned)ch, bl ? " --bootloader " : "",
             bl ? bl : "", raw ? " --raw" : "");
    job->path = strdup(line);
    uint8_t md[ST_SHA256_LEN];
    st_sha256(line, strlen(line), md);
    st_hex(md, sizeof md, false, job->sha256);
    int rc = st_job_add_step(job, "bgapi-enter-dfu", 0, NULL, &e);
    if (!rc)
        rc = st_job_add_step(job, "bgapi-upload", 0, NULL, &e);
    if (!rc)
        rc = st_job_add_step(job, "bgapi-finish", 0, NULL, &e);
    if (!rc)
        rc = st_job_add_step(job, "bgapi-boot", 0, NULL, &e);
    if (rc) {
        st_cli_error(cli, "ble flash", &e);
        status = ST_EXIT_STATION;
        goto out;
    }
    status = cli->run_job(cli, job, images);
out:
    for (size_t i = 0; i < ST_JOB_MAX_IMAGES; i++)
        st_image_free(images[i]);
    st_job_free(job);
    return status;
}

/* `station ble image OUT`: the synthetic NCP image of the demo job, as a GBL file. */
static int cmd_ble_image(const st_cli *cli, char *const args[])
{
    st_err e;
    const char *size_s = cli->opt(cli, "size");
    const char *ver_s = cli->opt(cli, "stack");
    const char *seed_s = cli->opt(cli, "seed");
    uint64_t size = 49152, seed = 1;
    unsigned v[3] = {5, 0, 0};
    if ((size_s && (!st_parse_u64(size_s, &size) || size < 8 || size > 1024 * 1024)) ||
        (seed_s && (!st_parse_u64(seed_s, &seed) || seed > 0xffffffffu)) ||
        (ver_s && (!parse_version(ver_s, v) || v[0] > 255 || v[1] > 255 || v[2] > 255))) {
        fprintf(cli->errout, "station: ble image: --size 8..1048576, --seed N, --stack "
                             "X.Y.Z (each 0..255)\n");
        return ST_EXIT_USAGE;
    }
    uint8_t *g;
    size_t n;
    if (st_gbl_synthetic((size_t)size, (uint32_t)seed, st_gbl_stack_version(v[0], v[1], v[2], 1),
                         &g, &n, &e)) {
        st_cli_error(cli, "ble image", &e);
        return ST_EXIT_STATION;
    }
    FILE *f = fopen(args[0], "wb");
    bool ok = f && fwrite(g, 1, n, f) == n;
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok) {
        fprintf(cli->errout, "station: ble image: %s: %s\n", args[0], strerror(errno));
        free(g);
        return ST_EXIT_STATION;
    }
    uint8_t md[ST_SHA256_LEN];
    char hex[65];
    st_sha256(g, n, md);
    st_hex(md, sizeof md, false, hex);
    fprintf(cli->out, "%s: %zu bytes, stack %u.%u.%u, sha256 %s\n", args[0], n, v[0], v[1], v[2],
            hex);
    free(g);
    return ST_EXIT_PASS;
}

static const st_cli_opt flash_opts[] = {
    {"bootloader", "GEN", "auto (default), gsdk3 (dfu_reset first) or gsdk4 (system_reset first)"},
    {"chunk", "N", "upload chunk in bytes: a multiple of 4 up to 252 (default 252)"},
    {"raw", NULL, "allow an image that is not a GBL file (length still a multiple of 4)"},
    {"sha256", "HEX", "refuse the image unless it has this digest"},
    {NULL, NULL, NULL},
};

static const st_cli_opt image_opts[] = {
    {"size", "N", "program bytes (default 49152)"},
    {"stack", "X.Y.Z", "stack version the image reports when it boots (default 5.0.0)"},
    {"seed", "N", "pattern seed (default 1)"},
    {NULL, NULL, NULL},
};

static const st_cli_cmd commands[] = {
    {.words = "ble flash", .args = "IMAGE", .nargs = 1,
     .summary = "update the Bluetooth module of a slot over its UART (BGAPI DFU, --slot N)",
     .help = "Checks the GBL file (header tag, end tag, CRC-32, length a multiple of 4), then "
             "runs bgapi-enter-dfu, bgapi-upload, bgapi-finish and bgapi-boot on the module at "
             "the slot's module.device (--slot N), and writes its report.",
     .opts = flash_opts, .flags = ST_CLI_RUNS_JOBS, .run = cmd_ble_flash},
    {.words = "ble image", .args = "OUT", .nargs = 1,
     .summary = "write the synthetic module image of the demo jobs (a valid GBL file)",
     .opts = image_opts, .run = cmd_ble_image},
    {.words = NULL},
};

const st_driver st_bgapi_driver = {
    .name = "bgapi",
    .summary = "Silicon Labs Bluetooth modules (BGM/EFR32 NCP): BGAPI UART DFU through the "
               "Gecko bootloader, both generations",
    .section_parse = section_parse,
    .section_free = free,
    .section_help = "bootloader (auto|gsdk3|gsdk4), chunk, entry_timeout_ms, "
                    "response_timeout_ms, boot_timeout_ms, raw, expect_stack",
    .steps = steps,
    .session_open = session_open,
    .session_abandon = session_abandon,
    .session_close = session_close,
    .commands = commands,
    .image_check = image_check,
};
