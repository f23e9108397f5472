/* The AN3155 driver (see driver.h): enter the STM32 USART ROM bootloader through an entry
 * plan (stm32flash -i string on the fixture's lines, the slot's BOOT0/RESET pair, or a DTR
 * pulse), identify, back up, unprotect (only when the job says so), flash with the
 * probe-then-decide skip, verify, start; and `station uart info|backup|flash|go`. */
#include "protocols/an3155/driver.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixtures/slot.h"
#include "protocols/an3155/an3155.h"
#include "protocols/an3155/entry.h"
#include "protocols/link/stream.h"
#include "station/core/clock.h"
#include "station/core/digest.h"
#include "station/core/text.h"

#define MOD "uart"
#define BREAK_MS 250u /* tcsendbreak(fd, 0): 0.25-0.5 s, what stm32flash's brk sends */

typedef enum entry_kind { ENTRY_BOOT0_RESET = 0, ENTRY_DTR_PULSE, ENTRY_STRING } entry_kind;
static const char *const entry_kind_names[] = { "boot0-reset", "dtr-pulse", "gpio-string" };

/* The job's uart: section. */
typedef struct uart_section {
    bool entry_given;         /* the job (or --entry) named the plan; else the fixture's
                                 serial.entry, else boot0-reset */
    entry_kind kind;
    st_entry_plan plan;       /* what runs (also for the built-in kinds) */
    uint32_t baud;            /* 0: the slot's serial.baud */
    st_stream_line framing;   /* default 8E1 */
    bool allow_8n1;           /* a device that cannot keep parity (a pty) may run at 8N1 */
    bool allow_unprotect;     /* uart-unprotect may wipe the chip */
    uint32_t byte_timeout_ms; /* one answer byte (default 500, stm32flash's) */
} uart_section;

typedef struct uart_session {
    uart_section sec;         /* the job's section with this slot's plan (slot_plan) */
    st_stream *link;
    st_an3155 *an;
    bool identified;
    char framing[96];
} uart_session;

typedef struct backup_opts {
    uint32_t address, size;   /* 0 size: the job's MCU flash */
    char file[PATH_MAX];      /* "": <report dir>/backup-slotN-<time>.bin */
} backup_opts;

typedef struct flash_opts {
    bool skip_identical;
    bool verify;
} flash_opts;

typedef struct start_opts {
    bool go;                  /* Go even when the plan has an exit sequence */
    uint32_t address;         /* 0: the image's load address, else the flash start */
} start_opts;

/* ---- section ------------------------------------------------------------------------------ */

static int plan_for(entry_kind kind, const char *text, st_entry_plan *plan, st_err *err)
{
    if (kind == ENTRY_BOOT0_RESET)
        return st_entry_plan_boot0_reset(100, plan, err);
    if (kind == ENTRY_DTR_PULSE)
        return st_entry_plan_dtr_pulse(100, plan, err);
    return st_entry_parse(text, plan, err);
}

/* entry: boot0-reset | dtr-pulse | an stm32flash -i string; exit: a sequence replacing the
 * string's exit part. Errors carry the caret. */
static int set_entry(uart_section *s, const char *entry, const char *exit_seq, st_err *err)
{
    entry_kind k = ENTRY_STRING;
    for (int i = 0; i < 2; i++)
        if (entry && strcmp(entry, entry_kind_names[i]) == 0)
            k = (entry_kind)i;
    if (!entry)
        k = ENTRY_BOOT0_RESET;
    int rc = plan_for(k, entry, &s->plan, err);
    if (rc)
        return rc;
    s->kind = k;
    if (exit_seq) {
        char text[ST_ENTRY_MAX_TEXT * 2 + 2];
        char e[ST_ENTRY_MAX_TEXT];
        /* The entry part as text, then ':' and the new exit: one string, one plan. */
        st_entry_seq_str(&s->plan.entry, e, sizeof e);
        snprintf(text, sizeof text, "%s:%s", e, exit_seq);
        st_entry_plan p;
        st_err e2;
        if (st_entry_parse(exit_seq, &p, &e2) < 0 || p.has_exit) {
            /* Report against the exit string itself. */
            rc = st_entry_parse(exit_seq, &p, err);
            if (!rc)
                rc = st_err_set(err, ST_ERR_INVAL, "exit sequence: \"%s\" holds a ':' (give "
                                "the exit steps only)", exit_seq);
            return st_err_wrap(err, rc, "exit");
        }
        if ((rc = st_entry_parse(text, &s->plan, err)) < 0)
            return rc;
    }
    return 0;
}

static int section_parse(const st_job_parse *p, const st_ynode *node, void **out, st_err *err)
{
    uart_section *s = calloc(1, sizeof *s);
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    s->framing = (st_stream_line){ .baud = 0, .data_bits = 8, .parity = 'E', .stop_bits = 1 };
    s->byte_timeout_ms = 500;
    const char *entry = NULL, *exit_seq = NULL, *framing = NULL;
    int rc = 0;
    if (node) {
        static const char *const keys[] = { "entry", "exit", "baud", "framing", "allow_8n1",
                                            "allow_unprotect", "byte_timeout_ms", NULL };
        rc = st_ymap_check_keys(p->doc, node, "uart", keys, err);
        if (!rc)
            rc = st_ymap_get_str(p->doc, node, "uart", "entry", false, &entry, err);
        if (!rc)
            rc = st_ymap_get_str(p->doc, node, "uart", "exit", false, &exit_seq, err);
        if (!rc)
            rc = st_ymap_get_u32(p->doc, node, "uart", "baud", false, 50, 4000000, &s->baud, err);
        if (!rc)
            rc = st_ymap_get_str(p->doc, node, "uart", "framing", false, &framing, err);
        if (!rc)
            rc = st_ymap_get_bool(p->doc, node, "uart", "allow_8n1", false, &s->allow_8n1, err);
        if (!rc)
            rc = st_ymap_get_bool(p->doc, node, "uart", "allow_unprotect", false,
                                  &s->allow_unprotect, err);
        if (!rc)
            rc = st_ymap_get_u32(p->doc, node, "uart", "byte_timeout_ms", false, 10, 60000,
                                 &s->byte_timeout_ms, err);
        st_err e2;
        if (!rc && framing && st_stream_parse_framing(framing, &s->framing, &e2) < 0)
            rc = st_ydoc_error(p->doc, st_ymap_get(p->doc, node, "framing"), "uart.framing", err,
                               ST_ERR_INVAL, "%s", e2.msg);
        s->entry_given = entry != NULL || exit_seq != NULL;
        if (!rc && set_entry(s, entry, exit_seq, &e2) < 0) {
            const char *key = exit_seq && strncmp(e2.msg, "exit", 4) == 0 ? "exit" : "entry";
            char f[16];
            snprintf(f, sizeof f, "uart.%s", key);
            rc = st_ydoc_error(p->doc, st_ymap_get(p->doc, node, key), f, err, ST_ERR_INVAL,
                               "%s", e2.msg);
        }
    } else {
        rc = set_entry(s, NULL, NULL, err);
    }
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* The plan this slot runs: the job's, else the fixture's serial.entry, else boot0-reset.
 * A bad fixture string names the fixture file, line and field. */
static int slot_plan(const st_step_call *c, uart_section *out, st_err *err)
{
    const uart_section *sec = c->section;
    *out = *sec;
    const st_fixture_slot *fs = c->env->fslot;
    if (sec->entry_given || !fs || !fs->serial.present || !fs->serial.entry[0])
        return 0;
    int rc = set_entry(out, fs->serial.entry, NULL, err);
    if (rc < 0)
        return st_err_wrap(err, rc, "%s:%u: slot %d: serial.entry",
                             c->env->fixture ? c->env->fixture->path : "fixture",
                             fs->serial.entry_line, fs->id);
    return 0;
}

/* ---- session ------------------------------------------------------------------------------ */

static int session_open(const st_step_call *c, void **out, st_err *err)
{
    uart_session *s = calloc(1, sizeof *s);
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    int rc = slot_plan(c, &s->sec, err);
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* The section as this unit runs it (the fixture's plan filled in). */
static const uart_section *SEC(const st_step_call *c)
{
    return &((const uart_session *)c->session)->sec;
}

static void link_close(uart_session *s)
{
    st_an_free(s->an);
    s->an = NULL;
    st_stream_close(s->link);
    s->link = NULL;
    s->identified = false;
}

static void session_close(void *session)
{
    uart_session *s = session;
    if (!s)
        return;
    link_close(s);
    free(s);
}

static int need_serial(const st_step_call *c, st_err *err)
{
    if (c->env->fslot && c->env->fslot->serial.present)
        return 0;
    return st_err_set(err, ST_ERR_INVAL, "the slot has no serial.device: the USART bootloader "
                      "needs the unit's UART (fixture: slots[].serial)");
}

/* Open the slot's tty at the job's framing; a device that cannot keep it (a pty drops
 * PARENB, reference 4.3a) is refused unless the job allows 8N1. */
static int open_link(const st_step_call *c, uart_session *s, st_err *err)
{
    const uart_section *sec = SEC(c);
    const st_fixture_slot *fs = c->env->fslot;
    st_stream_line line = sec->framing;
    line.baud = sec->baud ? sec->baud : fs->serial.baud;
    char shown[32];
    int rc = st_stream_tty_open(fs->serial.device, &line, &s->link, err);
    if (rc == ST_ERR_UNSUPPORTED && line.parity != 'N' && sec->allow_8n1) {
        ST_LOGW(c->env->log, MOD, "slot %d: %s; the job allows 8N1", st_run_slot_id(c->run),
                err ? err->msg : "parity refused");
        line.parity = 'N';
        rc = st_stream_tty_open(fs->serial.device, &line, &s->link, err);
        if (!rc)
            snprintf(s->framing, sizeof s->framing, "%s (8N1 allowed: the device cannot keep "
                     "parity)", st_stream_line_str(&line, shown, sizeof shown));
    } else if (rc == ST_ERR_UNSUPPORTED) {
        return st_err_wrap(err, rc, "the ROM bootloader speaks 8E1 (set uart.allow_8n1 only for "
                                  "a link that cannot carry parity, such as a pty)");
    } else if (!rc) {
        st_strlcpy(s->framing, st_stream_line_str(&line, shown, sizeof shown),
                   sizeof s->framing);
    }
    if (rc)
        return rc;
    st_an_cfg ac = { .byte_timeout_ms = sec->byte_timeout_ms, .log = c->env->log };
    rc = st_an_new(s->link, &ac, &s->an, err);
    if (rc)
        link_close(s);
    return rc;
}

/* ---- entry plans on the fixture's lines --------------------------------------------------- */

typedef struct io_ctx {
    const st_step_call *c;
    st_stream *link;
    const st_entry_plan *plan;
    bool dry;                 /* resolve only (before any line moves) */
} io_ctx;

/* A fixture line a plan step names: a GPIO number through serial.entry_gpio (pin level),
 * or a role key / fixture line name (logical level). */
static int resolve(const io_ctx *x, const st_entry_step *st, st_slot_line_role *role,
                   bool *physical, st_err *err)
{
    const st_fixture_slot *fs = x->c->env->fslot;
    char cause[160];
    if (st->kind == ST_ENTRY_GPIO) {
        for (size_t i = 0; i < fs->serial.n_entry_gpio; i++) {
            if (fs->serial.entry_gpio[i].gpio == st->gpio) {
                *role = fs->serial.entry_gpio[i].role;
                *physical = true;
                return 0;
            }
        }
        snprintf(cause, sizeof cause, "the fixture maps no GPIO %d (slot %d: serial.entry_gpio)",
                 st->gpio, fs->id);
        return st_entry_step_error(x->plan, st, ST_ERR_INVAL, err, cause);
    }
    for (int r = 0; r < ST_LINE__COUNT; r++) {
        const st_fixture_line *l = &fs->lines[r];
        if (!l->present || r == ST_LINE_BUTTON)
            continue;
        if (strcasecmp(st->name, st_slot_line_role_key((st_slot_line_role)r)) == 0 ||
            (l->name[0] && strcmp(st->name, l->name) == 0)) {
            *role = (st_slot_line_role)r;
            *physical = false;
            return 0;
        }
    }
    snprintf(cause, sizeof cause, "slot %d has no line \"%s\" (its lines: boot0, reset%s)",
             fs->id, st->name, fs->lines[ST_LINE_POWER].present ? ", power" : "");
    return st_entry_step_error(x->plan, st, ST_ERR_INVAL, err, cause);
}

static int io_set(void *ctx, const st_entry_step *st, st_err *err)
{
    io_ctx *x = ctx;
    switch (st->kind) {
    case ST_ENTRY_RTS:
        return x->dry ? 0 : st_stream_set_modem(x->link, -1, st->level, err);
    case ST_ENTRY_DTR:
        return x->dry ? 0 : st_stream_set_modem(x->link, st->level, -1, err);
    case ST_ENTRY_BRK:
        return x->dry ? 0 : st_stream_send_break(x->link, BREAK_MS, err);
    default: {
        st_slot_line_role role = ST_LINE_BOOT0;
        bool physical = false;
        int rc = resolve(x, st, &role, &physical, err);
        if (rc || x->dry)
            return rc;
        if (!x->c->env->slot)
            return st_err_set(err, ST_ERR_UNSUPPORTED, "the unit is in no fixture slot: no "
                                                       "lines to drive");
        return st_slot_drive(x->c->env->slot, role, st->level, physical, err);
    }
    }
}

/* Check every step of both sequences resolves before any line moves. */
static int plan_check(const st_step_call *c, const st_entry_plan *plan, st_err *err)
{
    io_ctx x = { .c = c, .plan = plan, .dry = true };
    const st_entry_seq *seqs[2] = { &plan->entry, &plan->exit };
    for (int q = 0; q < 2; q++)
        for (size_t i = 0; i < seqs[q]->n; i++)
            if (seqs[q]->steps[i].kind != ST_ENTRY_PAUSE) {
                int rc = io_set(&x, &seqs[q]->steps[i], err);
                if (rc)
                    return rc;
            }
    return 0;
}

static int run_seq(const st_step_call *c, uart_session *s, const st_entry_seq *seq, st_err *err)
{
    const uart_section *sec = SEC(c);
    io_ctx x = { .c = c, .link = s->link, .plan = &sec->plan };
    st_entry_io io = { io_set, &x };
    return st_entry_run(seq, &io, err);
}

static void record_plan(const st_step_call *c)
{
    const uart_section *sec = SEC(c);
    char buf[ST_ENTRY_MAX_TEXT];
    st_rnode *p = st_rmap_map(c->rec, "entry_plan");
    st_rmap_str(p, "kind", entry_kind_names[sec->kind]);
    st_rmap_str(p, "text", sec->plan.text);
    st_rmap_str(p, "entry", st_entry_seq_str(&sec->plan.entry, buf, sizeof buf));
    if (sec->plan.has_exit)
        st_rmap_str(p, "exit", st_entry_seq_str(&sec->plan.exit, buf, sizeof buf));
}

/* ---- steps -------------------------------------------------------------------------------- */

static int enter(st_step_call *c, st_err *err)
{
    uart_session *s = c->session;
    const uart_section *sec = SEC(c);
    int rc = need_serial(c, err);
    if (!rc)
        rc = plan_check(c, &sec->plan, err);
    if (rc)
        return rc;
    link_close(s);
    if ((rc = open_link(c, s, err)) < 0)
        return rc;
    rc = run_seq(c, s, &sec->plan.entry, err);
    if (rc)
        return st_err_wrap(err, rc, "entry sequence");
    st_stream_flush_input(s->link, NULL);
    st_an_sync_how how;
    rc = st_an_sync(s->an, &how, err);
    if (rc)
        return rc;
    st_rmap_str(c->rec, "sync", st_an_sync_name(how));
    return 0;
}

static int step_enter(st_step_call *c, st_err *err)
{
    const uart_section *sec = SEC(c);
    uart_session *s = c->session;
    st_rmap_fmt(c->rec, "entry_method", "uart:%s", entry_kind_names[sec->kind]);
    record_plan(c);
    int rc = enter(c, err);
    if (s->framing[0])
        st_rmap_str(c->rec, "framing", s->framing);
    st_rmap_str(c->rec, "device", c->env->fslot && c->env->fslot->serial.present
                                      ? c->env->fslot->serial.device : "");
    return rc;
}

/* A later step on a link that broke: enter again (the plan, 0x7F) first. */
static int ensure(st_step_call *c, st_err *err)
{
    uart_session *s = c->session;
    if (!s->an) {
        int rc = enter(c, err);
        if (rc)
            return rc;
        st_rmap_str(c->rec, "rung", "re-entry");
    }
    if (!s->identified) {
        st_an_info info;
        int rc = st_an_identify(s->an, &info, err);
        if (rc)
            return rc;
        s->identified = true;
    }
    return 0;
}

static int fail(uart_session *s, int rc)
{
    /* A transport failure leaves the ROM mid-command: the next attempt starts over. */
    if (rc == ST_ERR_TIMEOUT || rc == ST_ERR_PROTO || rc == ST_ERR_DISCONNECT || rc == ST_ERR_IO)
        link_close(s);
    return rc;
}

static int step_info(st_step_call *c, st_err *err)
{
    uart_session *s = c->session;
    if (!s->an) {
        int rc = enter(c, err);
        if (rc)
            return rc;
    }
    st_an_info i;
    int rc = st_an_identify(s->an, &i, err);
    st_rnode *u = st_run_unit(c->run);
    if (rc && rc != ST_ERR_UNSUPPORTED)
        return fail(s, rc);
    st_rmap_fmt(u, "usart_pid", "0x%03X", i.pid);
    st_rmap_fmt(c->rec, "bootloader_version", "%u.%u", i.bl_version >> 4, i.bl_version & 15);
    st_rmap_str(c->rec, "erase", i.ext_erase ? "extended (0x44)" : "legacy (0x43)");
    st_rmap_fmt(c->rec, "option_bytes", "0x%02X 0x%02X", i.option1, i.option2);
    if (rc)
        return rc;
    s->identified = true;
    st_rmap_str(u, "device", i.dev->name);
    /* The job's target must be the part that answered. */
    if (c->job->mcu && c->job->mcu->usart_pid && c->job->mcu->usart_pid != i.pid)
        return st_err_set(err, ST_ERR_MISMATCH, "the unit is %s (PID 0x%03X), the job targets "
                          "%s (PID 0x%03X)", i.dev->name, i.pid, c->job->mcu->name,
                          c->job->mcu->usart_pid);
    char uid[25];
    if (st_an_read_uid(s->an, uid, NULL) == 0) {
        st_rmap_str(u, "uid", uid);
        st_run_identify(c->run, uid);
    } else {
        /* Under readout protection the ID cannot be read: name the unit by its port. */
        st_rmap_str(c->rec, "note", "unique ID not readable (readout protection?)");
        st_run_identify(c->run, c->env->fslot->serial.device);
    }
    return 0;
}

static uint32_t flash_size(const st_step_call *c, const st_an_dev *d)
{
    /* The table's flash end is the family maximum; the job's MCU says what this part has. */
    if (c->job->mcu && c->job->mcu->usart_pid == d->pid)
        return c->job->mcu->flash_size;
    return d->flash_end - d->flash_start;
}

static int write_file(const char *path, const uint8_t *b, size_t n, st_err *err)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(b, 1, n, f) == n;
    if (f && fclose(f) != 0)
        ok = false;
    if (ok && rename(tmp, path) != 0)
        ok = false;
    if (!ok) {
        int e = errno;
        unlink(tmp);
        return st_err_set(err, st_err_from_errno(e), "backup file %s: %s", path, strerror(e));
    }
    return 0;
}

static int step_backup(st_step_call *c, st_err *err)
{
    uart_session *s = c->session;
    const backup_opts *o = c->opts;
    int rc = ensure(c, err);
    if (rc)
        return fail(s, rc);
    const st_an_dev *d = st_an_get_info(s->an)->dev;
    uint32_t addr = o && o->address ? o->address : d->flash_start;
    uint32_t size = o && o->size ? o->size : flash_size(c, d);
    char path[PATH_MAX];
    if (o && o->file[0]) {
        st_strlcpy(path, o->file, sizeof path);
    } else {
        /* Never a unit string in a path: slot and time only. */
        const char *dir = c->env->report_dir ? c->env->report_dir : c->job->report_dir;
        char when[32];
        st_format_utc(st_wall_us(), when, sizeof when);
        for (char *p = when; *p; p++)
            if (*p == ':')
                *p = '-';
        mkdir(dir, 0755);
        snprintf(path, sizeof path, "%s/backup-slot%d-%s.bin", dir, st_run_slot_id(c->run), when);
    }
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    uint64_t t0 = st_now_us();
    rc = st_an_read(s->an, addr, buf, size, c->env->progress, err);
    if (rc) {
        free(buf);
        return fail(s, rc);
    }
    uint8_t md[ST_SHA256_LEN];
    char hex[65];
    st_sha256(buf, size, md);
    st_hex(md, sizeof md, false, hex);
    rc = write_file(path, buf, size, err);
    free(buf);
    st_rmap_hex32(c->rec, "address", addr);
    st_rmap_uint(c->rec, "bytes", size);
    st_rmap_str(c->rec, "sha256", hex);
    st_rmap_str(c->rec, "file", path);
    st_rmap_ms(c->rec, "read_ms", st_now_us() - t0);
    if (!rc) {
        st_rnode *u = st_run_unit(c->run);
        st_rmap_str(u, "backup_sha256", hex);
    }
    return rc;
}

static int step_unprotect(st_step_call *c, st_err *err)
{
    uart_session *s = c->session;
    const uart_section *sec = SEC(c);
    if (!sec->allow_unprotect)
        return st_err_set(err, ST_ERR_INVAL, "uart-unprotect wipes the chip: the job must set "
                                             "uart.allow_unprotect: true");
    int rc = s->an ? 0 : enter(c, err);
    if (rc)
        return fail(s, rc);
    rc = st_an_readout_unprotect(s->an, err);
    if (rc)
        return fail(s, rc);
    /* The ROM reset itself: with the boot pin still held it comes back; sync again. */
    st_an_sync_how how;
    rc = st_an_sync(s->an, &how, err);
    if (!rc)
        rc = st_an_write_unprotect(s->an, err);
    if (!rc)
        rc = st_an_sync(s->an, &how, err);
    s->identified = false;
    st_rmap_str(c->rec, "done", "readout unprotect (mass erase), write unprotect");
    return rc ? fail(s, rc) : 0;
}

static int step_flash(st_step_call *c, st_err *err)
{
    uart_session *s = c->session;
    const flash_opts *o = c->opts;
    int rc = ensure(c, err);
    if (rc)
        return fail(s, rc);
    const st_image *img = c->image;
    st_an_flash_opts fo = { .skip_identical = o ? o->skip_identical : true,
                            .verify = o ? o->verify : false, .mass_erase_ok = true };
    st_an_flash_stats fs;
    memset(&fs, 0, sizeof fs);
    rc = st_an_flash(s->an, img->load_addr, img->data, img->size, &fo, &fs, c->env->progress,
                     err);
    st_rmap_hex32(c->rec, "address", img->load_addr);
    st_rmap_uint(c->rec, "bytes", fs.bytes_written);
    st_rmap_uint(c->rec, "units_total", fs.units_total);
    st_rmap_uint(c->rec, "units_erased", fs.units_erased);
    st_rmap_uint(c->rec, "units_written", fs.units_written);
    st_rmap_uint(c->rec, "units_skipped", fs.units_skipped);
    st_rmap_bool(c->rec, "mass_erase", fs.mass_erased);
    if (rc == ST_ERR_DEVICE)
        st_run_device_error(c->run, err ? err->msg : "NACK");
    return rc ? fail(s, rc) : 0;
}

static int step_verify(st_step_call *c, st_err *err)
{
    uart_session *s = c->session;
    int rc = ensure(c, err);
    if (rc)
        return fail(s, rc);
    const st_image *img = c->image;
    uint8_t *buf = malloc(img->size ? img->size : 1);
    if (!buf)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    rc = st_an_read(s->an, img->load_addr, buf, img->size, c->env->progress, err);
    if (rc) {
        free(buf);
        return fail(s, rc);
    }
    uint8_t md[ST_SHA256_LEN];
    char hex[65];
    st_sha256(buf, img->size, md);
    st_hex(md, sizeof md, false, hex);
    st_rmap_uint(c->rec, "bytes", img->size);
    st_rmap_str(c->rec, "sha256", hex);
    if (memcmp(buf, img->data, img->size) != 0) {
        /* Read data has no checksum on the wire: compare once more through the engine,
         * which re-reads a differing block before it calls it a mismatch. */
        rc = st_an_verify(s->an, img->load_addr, img->data, img->size, NULL, err);
        if (rc == ST_ERR_VERIFY)
            st_rmap_str(c->rec, "mismatch", err ? err->msg : "");
    }
    st_rmap_hex32(c->rec, "address", img->load_addr);
    free(buf);
    return rc ? fail(s, rc) : 0;
}

static int step_start(st_step_call *c, st_err *err)
{
    uart_session *s = c->session;
    const uart_section *sec = SEC(c);
    const start_opts *o = c->opts;
    int rc = need_serial(c, err);
    if (rc)
        return rc;
    if (sec->plan.has_exit && !(o && o->go)) {
        /* stm32flash runs the exit sequence at the end: boot select released, reset. */
        if (!s->link && (rc = open_link(c, s, err)) < 0)
            return rc;
        if ((rc = plan_check(c, &sec->plan, err)) < 0)
            return rc;
        rc = run_seq(c, s, &sec->plan.exit, err);
        st_rmap_str(c->rec, "entry_method", "uart:exit-sequence");
        char buf[ST_ENTRY_MAX_TEXT];
        st_rmap_str(c->rec, "sequence", st_entry_seq_str(&sec->plan.exit, buf, sizeof buf));
        link_close(s);
        return rc ? st_err_wrap(err, rc, "exit sequence") : 0;
    }
    rc = ensure(c, err);
    if (rc)
        return fail(s, rc);
    uint32_t addr = o && o->address ? o->address
                    : c->image ? c->image->load_addr
                               : st_an_get_info(s->an)->dev->flash_start;
    rc = st_an_go(s->an, addr, err);
    st_rmap_str(c->rec, "entry_method", "uart:go");
    st_rmap_hex32(c->rec, "address", addr);
    if (!rc && sec->plan.has_exit) {
        /* Go first (asked for), then the exit sequence, as stm32flash -g with -i a:b. */
        rc = run_seq(c, s, &sec->plan.exit, err);
        if (rc)
            st_err_prefix(err, "exit sequence");
    }
    link_close(s);
    return rc;
}

/* ---- step options --------------------------------------------------------------------------- */

static int parse_backup(const st_job_parse *p, const st_ynode *node, void **out, st_err *err)
{
    backup_opts *o = calloc(1, sizeof *o);
    if (!o)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    const char *file = NULL;
    int rc = 0;
    if (node) {
        rc = st_ymap_get_u32(p->doc, node, p->field, "address", false, 0, UINT32_MAX,
                             &o->address, err);
        if (!rc)
            rc = st_ymap_get_u32(p->doc, node, p->field, "size", false, 1, 64u << 20, &o->size,
                                 err);
        if (!rc)
            rc = st_ymap_get_str(p->doc, node, p->field, "file", false, &file, err);
        if (!rc && file)
            st_strlcpy(o->file, file, sizeof o->file);
    }
    if (rc) {
        free(o);
        return rc;
    }
    *out = o;
    return 0;
}

static int parse_flash(const st_job_parse *p, const st_ynode *node, void **out, st_err *err)
{
    flash_opts *o = calloc(1, sizeof *o);
    if (!o)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    o->skip_identical = true;
    int rc = 0;
    if (node) {
        rc = st_ymap_get_bool(p->doc, node, p->field, "skip_identical", false,
                              &o->skip_identical, err);
        if (!rc)
            rc = st_ymap_get_bool(p->doc, node, p->field, "verify", false, &o->verify, err);
    }
    if (rc) {
        free(o);
        return rc;
    }
    *out = o;
    return 0;
}

static int parse_start(const st_job_parse *p, const st_ynode *node, void **out, st_err *err)
{
    start_opts *o = calloc(1, sizeof *o);
    if (!o)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    int rc = 0;
    if (node) {
        rc = st_ymap_get_bool(p->doc, node, p->field, "go", false, &o->go, err);
        if (!rc)
            rc = st_ymap_get_u32(p->doc, node, p->field, "address", false, 0, UINT32_MAX,
                                 &o->address, err);
    }
    if (rc) {
        free(o);
        return rc;
    }
    *out = o;
    return 0;
}

static void needs_uart(const st_job *job, const void *section, const void *opts,
                       st_slot_needs *out)
{
    (void)job, (void)section, (void)opts;
    out->what |= ST_NEED_GPIO | ST_NEED_UART;
}

static const st_step_opt backup_opts_keys[] = {
    { "address", "first address to read (default: the flash start)" },
    { "size", "bytes to read (default: the target MCU's whole flash)" },
    { "file", "where the backup goes (default: <report dir>/backup-slotN-<time>.bin)" },
    { NULL, NULL },
};
static const st_step_opt flash_opts_keys[] = {
    { "skip_identical", "probe each page/sector; erase and write only those that differ "
                        "(default true)" },
    { "verify", "read each written page back at once (default false: use uart-verify)" },
    { NULL, NULL },
};
static const st_step_opt start_opts_keys[] = {
    { "go", "send Go even when the entry plan has an exit sequence" },
    { "address", "Go address (default: the image's load address)" },
    { NULL, NULL },
};

static const st_step_def steps[] = {
    { .name = "uart-enter",
      .summary = "open the slot's UART (8E1), play the entry plan on the fixture's lines, "
                 "0x7F autobaud (recovers a synced or mid-command ROM)",
      .records = "entry_method, entry_plan (kind, text, entry, exit), framing, device, sync",
      .needs = needs_uart, .run = step_enter },
    { .name = "uart-info",
      .summary = "Get Version, Get, Get ID; the part from the device table must be the job's "
                 "target; the unique ID names the unit",
      .records = "bootloader_version, erase, option_bytes; unit.usart_pid, unit.device, unit.uid",
      .needs = needs_uart, .run = step_info },
    { .name = "uart-backup",
      .summary = "read the flash (default: all of it) into a file before anything is written",
      .records = "address, bytes, sha256, file, read_ms; unit.backup_sha256",
      .opts = backup_opts_keys, .parse = parse_backup, .free_opts = free,
      .needs = needs_uart, .run = step_backup },
    { .name = "uart-unprotect",
      .summary = "readout unprotect (mass-erases the chip) and write unprotect; refused unless "
                 "uart.allow_unprotect is true",
      .records = "done",
      .needs = needs_uart, .run = step_unprotect },
    { .name = "uart-flash",
      .summary = "erase (pages, F4 sectors or mass, as Get allows) and write the image in "
                 "256-byte blocks",
      .records = "address, bytes, units_total, units_erased, units_written, units_skipped, "
                 "mass_erase; device_error",
      .flags = ST_STEP_TAKES_IMAGE, .opts = flash_opts_keys, .parse = parse_flash,
      .free_opts = free, .needs = needs_uart, .run = step_flash },
    { .name = "uart-verify",
      .summary = "read the image's range back and compare",
      .records = "bytes, sha256 (of what was read), address, mismatch",
      .flags = ST_STEP_TAKES_IMAGE, .needs = needs_uart, .run = step_verify },
    { .name = "uart-start",
      .summary = "start the firmware: the plan's exit sequence, else Go to the image's address",
      .records = "entry_method, sequence or address",
      .flags = ST_STEP_TAKES_IMAGE, .opts = start_opts_keys, .parse = parse_start,
      .free_opts = free, .needs = needs_uart, .run = step_start },
    { .name = NULL },
};

/* uart-info names the unit (its unique ID). */
static int identity(const st_job *job, const void *section, const st_run_env *env, char *buf,
                    size_t cap)
{
    (void)section, (void)env, (void)buf, (void)cap;
    for (size_t i = 0; i < job->nsteps; i++)
        if (job->steps[i].def == &steps[1])
            return -1;
    return 0;
}

/* ---- station uart info|backup|flash|go ------------------------------------------------------ */

typedef enum cmd_kind { CMD_INFO, CMD_BACKUP, CMD_FLASH, CMD_GO } cmd_kind;

static int parse_u32_opt(const st_cli *cli, const char *name, uint32_t *out)
{
    const char *v = cli->opt(cli, name);
    if (!v)
        return 0;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 0);
    if (!*v || *end || errno || n > 0xFFFFFFFFull || v[0] == '-') {
        fprintf(cli->errout, "station: --%s: \"%s\" is not a number\n", name, v);
        return -1;
    }
    *out = (uint32_t)n;
    return 0;
}

static int cmd_run(const st_cli *cli, cmd_kind kind, const char *arg)
{
    static const char *const words[] = { "uart info", "uart backup", "uart flash", "uart go" };
    st_err e;
    st_job *job = NULL;
    st_image *images[ST_JOB_MAX_IMAGES] = { NULL };
    int status = ST_EXIT_USAGE;
    const char *mcu_name = cli->opt(cli, "mcu");
    const st_mcu *mcu = st_mcu_find(mcu_name ? mcu_name : "stm32g431xx");
    uint32_t addr = 0, size = 0, baud = 0;
    if (!mcu) {
        fprintf(cli->errout, "station: --mcu %s: unknown MCU\n", mcu_name);
        return ST_EXIT_USAGE;
    }
    if (cli->nslots != 1) {
        fprintf(cli->errout, "station: %s needs --slot N (the slot whose serial.device is the "
                "unit's UART)\n", words[kind]);
        return ST_EXIT_USAGE;
    }
    if (parse_u32_opt(cli, "addr", &addr) || parse_u32_opt(cli, "size", &size) ||
        parse_u32_opt(cli, "baud", &baud))
        return ST_EXIT_USAGE;
    if (st_job_new(cli->drivers, mcu, &job, &e)) {
        st_cli_error(cli, words[kind], &e);
        return ST_EXIT_STATION;
    }
    int di = st_drivers_index(job->drivers, &st_an3155_driver);
    uart_section *sec = di >= 0 ? job->sections[di] : NULL;
    if (!sec) {
        fprintf(cli->errout, "station: the uart driver is not in the registry\n");
        st_job_free(job);
        return ST_EXIT_STATION;
    }
    sec->entry_given = cli->opt(cli, "entry") || cli->opt(cli, "exit");
    if (set_entry(sec, cli->opt(cli, "entry"), cli->opt(cli, "exit"), &e) < 0) {
        fprintf(cli->errout, "station: --%s: %s\n",
                strncmp(e.msg, "exit", 4) == 0 ? "exit" : "entry", e.msg);
        goto out;
    }
    sec->allow_8n1 = cli->opt(cli, "allow-8n1") != NULL;
    sec->baud = baud;
    const char *framing = cli->opt(cli, "framing");
    if (framing && st_stream_parse_framing(framing, &sec->framing, &e) < 0) {
        fprintf(cli->errout, "station: --framing: %s\n", e.msg);
        goto out;
    }
    snprintf(job->name, sizeof job->name, "uart-%s", words[kind] + 5);
    job->retries = 1;
    if (kind == CMD_FLASH) {
        if (!addr)
            addr = mcu->flash_start;
        job->images[0].path = realpath(arg, NULL);
        if (!job->images[0].path)
            job->images[0].path = strdup(arg);
        st_strlcpy(job->images[0].role, "combined", sizeof job->images[0].role);
        job->images[0].load_addr = addr;
        job->nimages = 1;
        if (st_image_load(job->images[0].path, addr, &images[0], &e) ||
            st_image_validate(images[0], mcu, cli->opt(cli, "sha256"), &e)) {
            st_cli_error(cli, "image refused", &e);
            goto out;
        }
        st_strlcpy(job->images[0].sha256, images[0]->sha256_hex, sizeof job->images[0].sha256);
    }
    /* The job is the command line: the report cites it, and its digest, as the job. */
    char line[PATH_MAX + 512];
    snprintf(line, sizeof line, "station %s%s%s --slot %d --entry \"%s\"", words[kind],
             arg ? " " : "", arg ? arg : "", cli->slots[0], sec->plan.text);
    job->path = strdup(line);
    uint8_t md[ST_SHA256_LEN];
    st_sha256(line, strlen(line), md);
    st_hex(md, sizeof md, false, job->sha256);
    char opts[PATH_MAX + 96];
    int rc = st_job_add_step(job, "uart-enter", -1, NULL, &e);
    if (!rc)
        rc = st_job_add_step(job, "uart-info", -1, NULL, &e);
    if (!rc && kind == CMD_BACKUP) {
        if (strpbrk(arg, "\"\\\n")) {
            fprintf(cli->errout, "station: uart backup: the file name may not hold '\"', '\\' "
                    "or a newline\n");
            goto out;
        }
        char *abs = arg[0] == '/' ? NULL : realpath(".", NULL);
        int n = snprintf(opts, sizeof opts, "{ file: \"%s%s%s\"", abs ? abs : "",
                         abs ? "/" : "", arg);
        free(abs);
        if (addr && n > 0 && (size_t)n < sizeof opts)
            n += snprintf(opts + n, sizeof opts - (size_t)n, ", address: 0x%08X", addr);
        if (size && n > 0 && (size_t)n < sizeof opts)
            n += snprintf(opts + n, sizeof opts - (size_t)n, ", size: %u", size);
        if (n > 0 && (size_t)n < sizeof opts)
            snprintf(opts + n, sizeof opts - (size_t)n, " }");
        rc = st_job_add_step(job, "uart-backup", -1, opts, &e);
    }
    if (!rc && kind == CMD_FLASH) {
        rc = st_job_add_step(job, "uart-flash", 0, NULL, &e);
        if (!rc)
            rc = st_job_add_step(job, "uart-verify", 0, NULL, &e);
        if (!rc)
            rc = st_job_add_step(job, "uart-start", 0, NULL, &e);
    }
    if (!rc && kind == CMD_GO) {
        snprintf(opts, sizeof opts, "{ go: true, address: 0x%08X }",
                 addr ? addr : mcu->flash_start);
        rc = st_job_add_step(job, "uart-start", -1, opts, &e);
    }
    if (rc) {
        st_cli_error(cli, words[kind], &e);
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

static int cmd_info(const st_cli *cli, char *const args[])
{
    (void)args;
    return cmd_run(cli, CMD_INFO, NULL);
}

static int cmd_backup(const st_cli *cli, char *const args[])
{
    return cmd_run(cli, CMD_BACKUP, args[0]);
}

static int cmd_flash(const st_cli *cli, char *const args[])
{
    return cmd_run(cli, CMD_FLASH, args[0]);
}

static int cmd_go(const st_cli *cli, char *const args[])
{
    (void)args;
    return cmd_run(cli, CMD_GO, NULL);
}

#define COMMON_OPTS                                                                            \
    { "entry", "STR", "entry plan: an stm32flash -i string ('-2,-1,1:2,-1,,,1'), boot0-reset "  \
                      "or dtr-pulse (default: the slot's serial.entry, else boot0-reset)" },   \
    { "exit", "STR", "exit sequence (replaces the string's part after ':')" },                 \
    { "baud", "N", "baud rate (default: the slot's serial.baud)" },                            \
    { "framing", "8E1", "framing (default 8e1, the ROM's)" },                                   \
    { "allow-8n1", NULL, "fall back to 8N1 on a link that cannot keep parity (a pty)" },       \
    { "mcu", "NAME", "target MCU (default stm32g431xx)" }

static const st_cli_opt info_opts[] = { COMMON_OPTS, { NULL, NULL, NULL } };
static const st_cli_opt backup_opts_cli[] = {
    COMMON_OPTS,
    { "addr", "ADDR", "first address (default: the flash start)" },
    { "size", "BYTES", "bytes (default: the MCU's whole flash)" },
    { NULL, NULL, NULL },
};
static const st_cli_opt flash_opts_cli[] = {
    COMMON_OPTS,
    { "addr", "ADDR", "load address (default: the flash start)" },
    { "sha256", "HEX", "refuse the image unless it has this digest" },
    { NULL, NULL, NULL },
};
static const st_cli_opt go_opts[] = {
    COMMON_OPTS,
    { "addr", "ADDR", "Go address (default: the flash start)" },
    { NULL, NULL, NULL },
};

static const st_cli_cmd commands[] = {
    { .words = "uart info",
      .summary = "enter the USART ROM bootloader (--slot N) and show the part, version, ID",
      .help = "Runs uart-enter and uart-info on the slot and writes the report.\n",
      .opts = info_opts, .flags = ST_CLI_RUNS_JOBS, .run = cmd_info },
    { .words = "uart backup", .args = "FILE", .nargs = 1,
      .summary = "read the unit's flash into FILE over the USART ROM bootloader (--slot N)",
      .help = "Runs uart-enter, uart-info and uart-backup; the report records the file's "
              "SHA-256.\n",
      .opts = backup_opts_cli, .flags = ST_CLI_RUNS_JOBS, .run = cmd_backup },
    { .words = "uart flash", .args = "IMAGE", .nargs = 1,
      .summary = "flash IMAGE over the USART ROM bootloader, verify, start (--slot N)",
      .help = "Runs uart-enter, uart-info, uart-flash (probe, then rewrite only what differs),\n"
              "uart-verify and uart-start (the exit sequence, else Go).\n",
      .opts = flash_opts_cli, .flags = ST_CLI_RUNS_JOBS, .run = cmd_flash },
    { .words = "uart go",
      .summary = "start the code at --addr through the ROM's Go command (--slot N)",
      .opts = go_opts, .flags = ST_CLI_RUNS_JOBS, .run = cmd_go },
    { .words = NULL },
};

const st_driver st_an3155_driver = {
    .name = "uart",
    .summary = "the STM32 USART ROM bootloader (AN3155), entered by an entry plan on the "
               "fixture's lines",
    .section_parse = section_parse,
    .section_free = free,
    .section_help = "entry (boot0-reset | dtr-pulse | an stm32flash -i string; default: the "
                    "slot's serial.entry, else boot0-reset), exit, baud "
                    "(slot's), framing (8e1), allow_8n1 (false), allow_unprotect (false), "
                    "byte_timeout_ms (500)",
    .steps = steps,
    .session_open = session_open,
    .session_close = session_close,
    .identity = identity,
    .commands = commands,
};
