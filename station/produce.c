/* Production mode: per-slot loops (wait, scan, run, show, wait for the unit to leave), the
 * signal thread, and the operator's view (screen or plain lines). */
#include "station/produce.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fixtures/slot.h"
#include "jobs/driver.h"
#include "jobs/engine.h"
#include "protocols/link/serial_ports.h"
#include "station/cmd_fleet.h"
#include "station/context.h"
#include "station/core/clock.h"
#include "station/core/text.h"
#include "station/core/uuid.h"
#include "reports/journal.h"
#include "reports/report.h"
#include "station/scanner.h"
#include "station/screen.h"
#include "station/shift.h"

#define TICK_MS 5u              /* how often a waiting slot looks at its lines */
#define USB_TICK_MS 50u         /* ... at its USB port */
#define CAN_TICK_MS 500u        /* ... asks the CAN bus (each ask takes bus time) */
#define USB_GONE_MS 500u        /* a port empty this long means the unit left (not a reset) */
#define BUZZ_MS 300u
#define LOG_LINES 4
#define SCAN_MAX 64

typedef struct produce produce;

typedef struct pslot {
    produce *p;
    const st_fixture_slot *fs;
    st_slot *slot;
    st_can_iface *can;
    size_t idx;
    pthread_t thread;
    bool started;
    int scan_fd;              /* scanner.fifo */
    st_scanner *scanner;      /* scanner.evdev (grabbed); NULL while it is unplugged */
    uint64_t scanner_retry_us;/* when to look for an unplugged scanner again */
    char scanbuf[256];
    size_t scanlen;
    char pending[SCAN_MAX];   /* the newest scan not yet given to a unit */
    bool held;                /* the start button is down since it started a unit (or since
                                 the station started): a new press needs a release first */
    st_progress progress;
    st_run_env env;
    st_run_result res;
    /* What the screen shows; under p->lock. */
    char big[8];
    char state[128];
    int percent;
    char verdict[16];
    char unit[96];
    char cause[ST_ERR_MSG_MAX];
    char step[32];
    unsigned units, pass, fail;
    bool rerun;               /* a unit was in flight here when the station died: run it
                                 again first (--rerun) */
} pslot;

struct produce {
    const st_produce_cfg *cfg;
    st_ctx *ctx;
    pslot *slots;
    size_t n;
    pthread_mutex_t lock;
    pthread_cond_t cond;      /* state changed: redraw, stop, a slot ended */
    int stopping;             /* 0 run, 1 finish the units in flight, 2 stop them now */
    char stop_why[96];
    volatile sig_atomic_t abort_flag; /* the engine's cancel flag: set by the second signal */
    unsigned started_units, finished_slots;
    bool shift_over;          /* the simulated operators are all done (shift_over) */
    unsigned total_pass, total_fail, total_incomplete, total_refused, total_error;
    uint64_t t0_us;
    bool has_re;
    regex_t re;
    const st_driver *finder;  /* start: can: the job's driver that finds units on a bus */
    pthread_mutex_t can_lock; /* one bus question at a time, shared by the slots */
    st_screen *screen;
    st_logger logger;
    char log[LOG_LINES][200];
    size_t nlog;
    char run_id[ST_UUID_STR_LEN];
    station_fleet *fleet;     /* live status on MQTT (as `station run`); NULL without one */
};

/* ---- small helpers ------------------------------------------------------------------- */

static struct timespec abs_in(uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000u);
    ts.tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Wait up to ms for a state change; returns the stopping level. */
static int tick(produce *p, uint64_t ms)
{
    struct timespec ts = abs_in(ms);
    pthread_mutex_lock(&p->lock);
    if (!p->stopping)
        pthread_cond_timedwait(&p->cond, &p->lock, &ts);
    int st = p->stopping;
    pthread_mutex_unlock(&p->lock);
    return st;
}

static int stopping(produce *p)
{
    pthread_mutex_lock(&p->lock);
    int st = p->stopping;
    pthread_mutex_unlock(&p->lock);
    return st;
}

/* A line for the operator: on the screen's log or as a plain line. Lock held. */
static void say_locked(produce *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say_locked(produce *p, const char *fmt, ...)
{
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (p->screen) {
        if (p->nlog == LOG_LINES) {
            memmove(p->log[0], p->log[1], sizeof p->log[0] * (LOG_LINES - 1));
            p->nlog--;
        }
        st_strlcpy(p->log[p->nlog++], buf, sizeof p->log[0]);
    } else {
        fprintf(p->cfg->out, "%s\n", buf);
        fflush(p->cfg->out);
    }
    pthread_cond_broadcast(&p->cond);
}

static void log_write(void *ctx, st_log_level level, const char *module, const char *msg)
{
    produce *p = ctx;
    pthread_mutex_lock(&p->lock);
    if (p->screen)
        say_locked(p, "%s: %s%s", module, level <= ST_LOG_WARN ? "warning: " : "", msg);
    else
        fprintf(p->cfg->errout, "station: %s: %s%s\n", module,
                level == ST_LOG_ERROR ? "error: " : level == ST_LOG_WARN ? "warning: " : "", msg);
    pthread_mutex_unlock(&p->lock);
}

static void set_state(pslot *s, const char *big, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_state(pslot *s, const char *big, const char *fmt, ...)
{
    produce *p = s->p;
    pthread_mutex_lock(&p->lock);
    st_strlcpy(s->big, big, sizeof s->big);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->state, sizeof s->state, fmt, ap);
    va_end(ap);
    s->percent = -1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void on_step(void *ctx, const char *step, int attempt)
{
    pslot *s = ctx;
    produce *p = s->p;
    pthread_mutex_lock(&p->lock);
    st_strlcpy(s->step, step, sizeof s->step);
    snprintf(s->state, sizeof s->state, "%s%s", step, attempt > 1 ? " (retry)" : "");
    s->percent = -1;
    if (!p->screen && p->cfg->verbose)
        say_locked(p, "slot %d: %s", s->fs->id, s->state);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void on_progress(void *ctx, const char *phase, uint64_t done, uint64_t total)
{
    pslot *s = ctx;
    produce *p = s->p;
    pthread_mutex_lock(&p->lock);
    snprintf(s->state, sizeof s->state, "%s: %s", s->step, phase);
    s->percent = total ? (int)(done * 100u / total) : -1;
    pthread_mutex_unlock(&p->lock);
}

static void signal_line(pslot *s, st_slot_line_role role, bool on)
{
    st_err e;
    if (st_slot_signal(s->slot, role, on, &e) < 0)
        ST_LOGW(&s->p->logger, "produce", "slot %d: %s", s->fs->id, e.msg);
}

/* ---- the scanner ---------------------------------------------------------------------- */

static int scanner_open(pslot *s, st_err *err)
{
    if (s->fs->scanner.evdev[0]) {
        /* Grabbed for as long as the station runs: scans never reach the console. */
        int rc = st_scanner_open(s->fs->scanner.evdev, NULL, &s->scanner, err);
        if (rc)
            return st_err_wrap(err, rc, "slot %d: scanner.evdev", s->fs->id);
        ST_LOGI(&s->p->logger, "produce", "slot %d: scanner %s (%s), grabbed", s->fs->id,
                st_scanner_path(s->scanner), st_scanner_name(s->scanner));
        return 0;
    }
    const char *path = s->fs->scanner.fifo;
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT || mkfifo(path, 0660) != 0)
            return st_err_set(err, ST_ERR_IO, "slot %d: scanner.fifo %s: %s", s->fs->id, path,
                              strerror(errno));
    } else if (!S_ISFIFO(st.st_mode)) {
        return st_err_set(err, ST_ERR_INVAL, "slot %d: scanner.fifo %s: not a FIFO (make one "
                          "with mkfifo, or name a path that does not exist yet)", s->fs->id, path);
    }
    /* Read and write: the FIFO never reports end-of-file when a writer closes it. */
    s->scan_fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (s->scan_fd < 0)
        return st_err_set(err, ST_ERR_IO, "slot %d: scanner.fifo %s: %s", s->fs->id, path,
                          strerror(errno));
    return 0;
}

/* Read whatever was scanned; the newest complete line becomes the pending barcode. */
static void scanner_drain(pslot *s)
{
    if (s->fs->scanner.evdev[0]) {
        produce *p = s->p;
        st_err e;
        if (!s->scanner) {
            /* Unplugged: look for it again once a second (a scanner plugged back in, or
             * another of the same name, is taken and grabbed). */
            uint64_t now = st_now_us();
            if (now < s->scanner_retry_us)
                return;
            s->scanner_retry_us = now + 1000000u;
            if (st_scanner_open(s->fs->scanner.evdev, NULL, &s->scanner, &e) != 0)
                return;
            pthread_mutex_lock(&p->lock);
            say_locked(p, "slot %d: scanner back: %s (%s), grabbed", s->fs->id,
                       st_scanner_path(s->scanner), st_scanner_name(s->scanner));
            pthread_mutex_unlock(&p->lock);
        }
        /* Keys through the same path as the FIFO's lines: the newest scan is pending. */
        char code[ST_KEYSCAN_MAX];
        int rc;
        while ((rc = st_scanner_read(s->scanner, code, sizeof code, &e)) == 1)
            st_strlcpy(s->pending, code, sizeof s->pending);
        if (rc < 0) {
            st_scanner_close(s->scanner);
            s->scanner = NULL;
            s->scanner_retry_us = st_now_us() + 1000000u;
            pthread_mutex_lock(&p->lock);
            say_locked(p, "slot %d: scanner lost: %s; looking for it again every second",
                       s->fs->id, e.msg);
            pthread_mutex_unlock(&p->lock);
        }
        return;
    }
    if (s->scan_fd < 0)
        return;
    for (;;) {
        ssize_t n = read(s->scan_fd, s->scanbuf + s->scanlen, sizeof s->scanbuf - 1 - s->scanlen);
        if (n <= 0)
            break;
        s->scanlen += (size_t)n;
        char *nl;
        while ((nl = memchr(s->scanbuf, '\n', s->scanlen))) {
            *nl = '\0';
            size_t len = (size_t)(nl - s->scanbuf);
            if (len && s->scanbuf[len - 1] == '\r')
                s->scanbuf[len - 1] = '\0';
            /* A scanner's bytes are untrusted: printable only, bounded. */
            if (s->scanbuf[0])
                st_text_printable(s->scanbuf, s->pending, sizeof s->pending);
            size_t used = (size_t)(nl - s->scanbuf) + 1;
            memmove(s->scanbuf, s->scanbuf + used, s->scanlen - used);
            s->scanlen -= used;
        }
        if (s->scanlen == sizeof s->scanbuf - 1)
            s->scanlen = 0; /* a line longer than any barcode: drop it */
    }
}

/* ---- arrival and departure -------------------------------------------------------------- */

static int usb_present(pslot *s)
{
    st_usb_dev_info info;
    st_err e;
    int rc = st_usb_host_find(st_ctx_usb(s->p->ctx), 0, 0, s->fs->usb_port, &info, &e);
    return rc == 0 ? 1 : rc == ST_ERR_NOTFOUND ? 0 : rc;
}

static int can_present(pslot *s)
{
    produce *p = s->p;
    st_found_unit found[64];
    st_err e;
    pthread_mutex_lock(&p->can_lock);
    int n = p->finder->discover(st_job_section(p->cfg->job, p->finder), s->can, found, 64, &e);
    pthread_mutex_unlock(&p->can_lock);
    if (n < 0)
        return n;
    for (int i = 0; i < n && i < 64; i++)
        if (strcasecmp(found[i].uuid, s->fs->can.uuid) == 0)
            return 1;
    return 0;
}

/* Notice a released start button (sampled whenever the slot looks at its lines). */
static void sample_button(pslot *s)
{
    if (s->fs->start == ST_START_BUTTON && st_slot_button(s->slot, NULL) == 0)
        s->held = false;
}

/* 1 a unit is in and asks to be run, 0 the station is stopping, < 0 a station fault. */
static int wait_arrival(pslot *s)
{
    produce *p = s->p;
    st_err e;
    for (;;) {
        int v;
        uint64_t every = TICK_MS;
        switch (s->fs->start) {
        case ST_START_BUTTON:
            /* A press starts one unit: a button still down from the last one does not. */
            v = st_slot_button(s->slot, &e);
            if (v == 0)
                s->held = false;
            else if (v == 1 && s->held)
                v = 0;
            else if (v == 1)
                s->held = true;
            break;
        case ST_START_PRESENT: v = st_slot_present(s->slot, &e); break;
        case ST_START_USB: v = usb_present(s); every = USB_TICK_MS; break;
        default: v = can_present(s); every = CAN_TICK_MS; break;
        }
        if (v < 0) {
            ST_LOGE(&p->logger, "produce", "slot %d: waiting for a unit: %s", s->fs->id,
                    e.msg[0] ? e.msg : st_strerror(v));
            return v;
        }
        if (v == 1)
            return 1;
        if (tick(p, every))
            return 0;
    }
}

/* Can the station see this slot empty? (A button-only slot cannot: the next press is the
 * next unit.) */
static bool departure_visible(const st_fixture_slot *fs)
{
    return fs->lines[ST_LINE_PRESENT].present || fs->usb_port[0] ||
           (fs->start == ST_START_CAN && fs->can.uuid[0]);
}

/* Until the unit is out (1), or the station stops (0). */
static int wait_departure(pslot *s)
{
    produce *p = s->p;
    st_err e;
    uint64_t gone_since = 0;
    while (departure_visible(s->fs)) {
        int v;
        uint64_t every = TICK_MS, debounce = 0;
        if (s->fs->lines[ST_LINE_PRESENT].present) {
            v = st_slot_present(s->slot, &e);
        } else if (s->fs->usb_port[0]) {
            /* A unit re-enumerating after a reset leaves the port empty for a moment. */
            v = usb_present(s);
            every = USB_TICK_MS;
            debounce = USB_GONE_MS * 1000u;
        } else {
            v = can_present(s);
            every = CAN_TICK_MS;
            debounce = 1;
        }
        sample_button(s);
        if (v < 0)
            return 1; /* cannot tell: carry on as if it left; the next arrival decides */
        if (v == 0) {
            uint64_t now = st_now_us();
            if (!gone_since)
                gone_since = now;
            if (now - gone_since >= debounce)
                return 1;
        } else {
            gone_since = 0;
        }
        if (tick(p, every))
            return 0;
    }
    return 1;
}

/* ---- one slot -------------------------------------------------------------------------- */

static void refuse(pslot *s, const char *why)
{
    produce *p = s->p;
    pthread_mutex_lock(&p->lock);
    p->total_refused++;
    st_strlcpy(s->verdict, "REFUSED", sizeof s->verdict);
    st_strlcpy(s->cause, why, sizeof s->cause);
    st_strlcpy(s->big, "STOP", sizeof s->big);
    snprintf(s->state, sizeof s->state, "unit not run: take it out");
    s->percent = -1;
    say_locked(p, "slot %d: REFUSED %s", s->fs->id, why);
    pthread_mutex_unlock(&p->lock);
    signal_line(s, ST_LINE_LED_PASS, false);
    signal_line(s, ST_LINE_LED_FAIL, true);
    signal_line(s, ST_LINE_BUZZER, true);
    tick(p, BUZZ_MS);
    signal_line(s, ST_LINE_BUZZER, false);
}

/* The barcode for the unit that just arrived: 1 have one (or none is needed), 0 refused,
 * -1 stopping. */
static int take_barcode(pslot *s, char *code, size_t cap)
{
    produce *p = s->p;
    code[0] = '\0';
    if (!s->fs->scanner.present)
        return 1;
    scanner_drain(s);
    while (!s->pending[0]) {
        set_state(s, "SCAN", s->fs->scanner.evdev[0] && !s->scanner
                                 ? "plug the barcode scanner back in"
                                 : "scan the unit's barcode");
        if (tick(p, TICK_MS * 4))
            return -1;
        scanner_drain(s);
        if (s->fs->lines[ST_LINE_PRESENT].present && st_slot_present(s->slot, NULL) == 0)
            return 0; /* taken out before it was scanned */
    }
    st_strlcpy(code, s->pending, cap);
    s->pending[0] = '\0';
    if (p->has_re && regexec(&p->re, code, 0, NULL, 0) != 0) {
        char why[ST_ERR_MSG_MAX];
        snprintf(why, sizeof why, "barcode \"%s\" does not match the job's pattern \"%s\"", code,
                 p->cfg->job->barcode);
        refuse(s, why);
        return 0;
    }
    return 1;
}

static void run_unit(pslot *s, const char *barcode)
{
    produce *p = s->p;
    const st_produce_cfg *cfg = p->cfg;
    signal_line(s, ST_LINE_LED_PASS, false);
    signal_line(s, ST_LINE_LED_FAIL, false);
    signal_line(s, ST_LINE_LED_BUSY, true);
    pthread_mutex_lock(&p->lock);
    st_strlcpy(s->big, "BUSY", sizeof s->big);
    snprintf(s->state, sizeof s->state, "starting");
    s->percent = -1;
    s->verdict[0] = s->cause[0] = '\0';
    st_strlcpy(s->unit, barcode, sizeof s->unit);
    if (!p->screen)
        say_locked(p, "slot %d: unit in%s%s", s->fs->id, barcode[0] ? ", barcode " : "", barcode);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);

    s->env.barcode = barcode;
    station_fleet_state(p->fleet, s->idx, "running", barcode);
    int rc = st_job_run(cfg->job, cfg->images, &s->env, &s->res);
    station_fleet_done(p->fleet, s->idx, rc, &s->res);
    signal_line(s, ST_LINE_LED_BUSY, false);
    sample_button(s);
    bool pass = !rc && s->res.verdict == ST_VERDICT_PASS;
    if (rc) {
        /* No report could be written: the engine touched nothing; say so on the LEDs. */
        signal_line(s, ST_LINE_LED_FAIL, true);
    }
    pthread_mutex_lock(&p->lock);
    s->units++;
    const char *v = rc ? "ERROR" : pass ? "PASS" : s->res.verdict == ST_VERDICT_FAIL ? "FAIL" : "STOPPED";
    st_strlcpy(s->verdict, v, sizeof s->verdict);
    st_strlcpy(s->big, pass ? "PASS" : rc ? "STOP" : s->res.verdict == ST_VERDICT_FAIL ? "FAIL" : "STOP",
               sizeof s->big);
    st_strlcpy(s->cause, s->res.cause, sizeof s->cause);
    if (!barcode[0]) {
        const char *base = strrchr(s->res.report_path, '/');
        st_strlcpy(s->unit, base ? base + 1 : s->res.report_path, sizeof s->unit);
    }
    if (pass) {
        s->pass++;
        p->total_pass++;
    } else if (rc) {
        s->fail++;
        p->total_error++;
    } else if (s->res.verdict == ST_VERDICT_FAIL) {
        s->fail++;
        p->total_fail++;
    } else {
        p->total_incomplete++;
    }
    snprintf(s->state, sizeof s->state, "%s", departure_visible(s->fs) ? "take the unit out"
                                                                       : "next unit: press start");
    s->percent = -1;
    if (rc)
        say_locked(p, "slot %d: ERROR no report written: %s", s->fs->id, s->res.cause);
    else if (pass)
        say_locked(p, "slot %d: PASS report %s", s->fs->id, s->res.report_path);
    else
        say_locked(p, "slot %d: %s %s  report %s", s->fs->id, v, s->res.cause, s->res.report_path);
    pthread_mutex_unlock(&p->lock);
    if (!pass) {
        signal_line(s, ST_LINE_BUZZER, true);
        tick(p, BUZZ_MS);
        signal_line(s, ST_LINE_BUZZER, false);
    }
}

static const char *wait_text(const st_fixture_slot *fs)
{
    switch (fs->start) {
    case ST_START_BUTTON: return "put a unit in, press start";
    case ST_START_PRESENT: return "put a unit in";
    case ST_START_USB: return "plug a unit in (USB)";
    default: return "put a unit on the bus (CAN)";
    }
}

static void *slot_main(void *arg)
{
    pslot *s = arg;
    produce *p = s->p;
    for (;;) {
        /* The last verdict stays on the screen until the next unit. */
        pthread_mutex_lock(&p->lock);
        if (!s->verdict[0])
            st_strlcpy(s->big, "WAIT", sizeof s->big);
        snprintf(s->state, sizeof s->state, "%s", wait_text(s->fs));
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        station_fleet_state(p->fleet, s->idx, "waiting", NULL);
        bool again = s->rerun;
        s->rerun = false;
        if (!again && wait_arrival(s) != 1)
            break;
        char barcode[SCAN_MAX];
        int b = take_barcode(s, barcode, sizeof barcode);
        if (b < 0)
            break;
        if (b == 0) {
            if (!wait_departure(s))
                break;
            signal_line(s, ST_LINE_LED_FAIL, false);
            continue;
        }
        pthread_mutex_lock(&p->lock);
        bool go = !p->stopping && (!p->cfg->max_units || p->started_units < p->cfg->max_units);
        if (go)
            p->started_units++;
        /* The last unit --units allows: the others finish theirs, nobody starts another. */
        if (go && p->cfg->max_units && p->started_units == p->cfg->max_units && !p->stopping) {
            p->stopping = 1;
            snprintf(p->stop_why, sizeof p->stop_why, "%u units started (--units)", p->cfg->max_units);
            pthread_cond_broadcast(&p->cond);
        }
        pthread_mutex_unlock(&p->lock);
        if (!go)
            break;
        run_unit(s, barcode);
        if (stopping(p) || !wait_departure(s))
            break;
        signal_line(s, ST_LINE_LED_PASS, false);
        signal_line(s, ST_LINE_LED_FAIL, false);
        pthread_mutex_lock(&p->lock);
        if (!p->screen && p->cfg->verbose)
            say_locked(p, "slot %d: unit out", s->fs->id);
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_lock(&p->lock);
    snprintf(s->state, sizeof s->state, "stopped");
    if (!s->verdict[0])
        st_strlcpy(s->big, "STOP", sizeof s->big);
    p->finished_slots++;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* The simulated shift is over: wake the main loop now (it stops the slots), not at its next
 * look 50 ms later. */
static void shift_over(void *arg)
{
    produce *p = arg;
    pthread_mutex_lock(&p->lock);
    p->shift_over = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* ---- signals ---------------------------------------------------------------------------- */

typedef struct sigctx {
    produce *p;
    sigset_t set;
} sigctx;

static void *signal_main(void *arg)
{
    sigctx *sc = arg;
    produce *p = sc->p;
    for (;;) {
        int sig = 0;
        if (sigwait(&sc->set, &sig) != 0)
            continue;
        /* Cancelled only while waiting, never holding the lock. */
        int old;
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
        pthread_mutex_lock(&p->lock);
        if (p->stopping < 1) {
            p->stopping = 1;
            snprintf(p->stop_why, sizeof p->stop_why, "%s", strsignal(sig));
            say_locked(p, "station: %s: finishing the units in flight, then stopping "
                          "(again to stop them now)", strsignal(sig));
        } else if (p->stopping < 2) {
            p->stopping = 2;
            p->abort_flag = 1;
            say_locked(p, "station: %s again: stopping the units in flight at their next step",
                       strsignal(sig));
        }
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        pthread_setcancelstate(old, NULL);
    }
    return NULL;
}

/* ---- restart after a crash ------------------------------------------------------------ */

/* The step a rebuilt report was at: its last step still incomplete (or its last step). */
static const char *step_in_flight(const st_rnode *doc)
{
    const st_rnode *steps = st_rget(doc, "steps");
    const char *name = NULL;
    for (size_t i = 0; i < st_rnode_len(steps); i++) {
        const st_rnode *st = st_rnode_child(steps, i);
        const char *o = st_rget_str(st, "outcome");
        if (o && strcmp(o, "incomplete") == 0)
            name = st_rget_str(st, "name");
    }
    return name ? name : "before its first step";
}

/* A run of this station that died (kill -9, power loss) left journals in the report
 * directory: rebuild those reports (verdict incomplete, the step in progress named), say
 * which unit was in flight in which slot and at which step, and mark the slots for a
 * rerun. Returns how many units were in flight. */
static unsigned recover_in_flight(produce *p)
{
    const char *dir = p->cfg->report_dir ? p->cfg->report_dir : p->cfg->job->report_dir;
    DIR *d = opendir(dir);
    unsigned n = 0;
    struct dirent *ent;
    while (d && (ent = readdir(d)) != NULL) {
        size_t l = strlen(ent->d_name);
        if (l < 9 || strcmp(ent->d_name + l - 8, ".journal") != 0)
            continue;
        char report[PATH_MAX];
        snprintf(report, sizeof report, "%s/%.*s.yaml", dir, (int)(l - 8), ent->d_name);
        st_journal_replay_info info;
        st_err e;
        if (access(report, F_OK) != 0 || st_journal_recover(report, &info, &e) != 0)
            continue; /* a rename cut short or a live run: st_journal_recover_dir below */
        st_rnode *doc = NULL;
        if (st_report_load(report, &doc, &e) != 0)
            continue;
        const char *verdict = st_rget_str(doc, "verdict");
        long long slot = -1;
        st_rget_int(doc, "slot.id", &slot);
        if (verdict && strcmp(verdict, "incomplete") == 0) {
            char who[96], step[64];
            st_text_printable(st_rget_str(doc, "unit.identity") ? st_rget_str(doc, "unit.identity")
                                                                 : "unknown", who, sizeof who);
            st_text_printable(step_in_flight(doc), step, sizeof step);
            n++;
            pthread_mutex_lock(&p->lock);
            say_locked(p, "station: produce: after a crash: slot %lld had unit %s in flight at "
                          "step %s; its report %s is marked incomplete%s", slot, who, step, report,
                       p->cfg->rerun ? "; running it again" : "; put it back and start it to "
                                                             "run it again (or --rerun)");
            for (size_t i = 0; i < p->n; i++)
                if (p->slots[i].fs->id == slot) {
                    p->slots[i].rerun = p->cfg->rerun;
                    snprintf(p->slots[i].cause, sizeof p->slots[i].cause,
                             "crash: unit %s was at step %s: run it again", who, step);
                    st_strlcpy(p->slots[i].verdict, "CRASH", sizeof p->slots[i].verdict);
                    st_strlcpy(p->slots[i].big, "STOP", sizeof p->slots[i].big);
                }
            pthread_mutex_unlock(&p->lock);
        }
        st_report_free(doc);
    }
    if (d)
        closedir(d);
    st_journal_recover_counts c;
    st_err e;
    if (st_journal_recover_dir(dir, &c, &e) == 0 && c.recovered)
        n += c.recovered; /* renames cut short: rebuilt, named in their reports */
    return n;
}

/* ---- setup and the main loop ---------------------------------------------------------------- */

static st_slot_needs needs_of(const st_job *job)
{
    st_slot_needs n = { 0, 0 };
    for (size_t i = 0; i < job->nsteps; i++) {
        const st_job_step *s = &job->steps[i];
        if (s->def->needs)
            s->def->needs(job, st_job_section(job, s->driver), s->opts, &n);
    }
    for (size_t r = 0; r < job->nrungs; r++)
        for (size_t i = 0; i < job->rungs[r].nsteps; i++) {
            const st_job_step *s = &job->rungs[r].steps[i];
            if (s->def->needs)
                s->def->needs(job, st_job_section(job, s->driver), s->opts, &n);
        }
    return n;
}

static bool chosen(const st_produce_cfg *cfg, int id)
{
    if (!cfg->nslots)
        return true;
    for (size_t i = 0; i < cfg->nslots; i++)
        if (cfg->slots[i] == id)
            return true;
    return false;
}

static void draw(produce *p, const st_job *job)
{
    st_screen_slot v[ST_FIXTURE_MAX_SLOTS];
    const char *logs[LOG_LINES];
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->n && i < ST_FIXTURE_MAX_SLOTS; i++) {
        pslot *s = &p->slots[i];
        v[i] = (st_screen_slot){ .id = s->fs->id, .name = s->fs->name, .big = s->big,
                                 .state = s->state, .percent = s->percent, .verdict = s->verdict,
                                 .unit = s->unit, .cause = s->cause, .units = s->units,
                                 .pass = s->pass, .fail = s->fail };
    }
    for (size_t i = 0; i < p->nlog; i++)
        logs[i] = p->log[i];
    unsigned done = p->total_pass + p->total_fail + p->total_incomplete + p->total_error;
    double hours = (double)(st_now_us() - p->t0_us) / 3.6e9;
    st_screen_totals t = {
        .job = job->name, .lot = p->cfg->lot, .station = p->cfg->station_id,
        .operator_name = p->cfg->operator_name, .units = done, .pass = p->total_pass,
        .fail = p->total_fail + p->total_error, .incomplete = p->total_incomplete,
        .refused = p->total_refused,
        .first_pass_yield = done ? 100.0 * p->total_pass / done : -1,
        .units_per_hour = done && hours > 0 ? done / hours : -1,
        .footer = p->stopping == 0 ? "Ctrl-C: finish the units in flight and stop"
                  : p->stopping == 1 ? "stopping: finishing the units in flight (Ctrl-C again: stop them now)"
                                     : "stopping the units in flight",
    };
    st_screen_draw(p->screen, v, p->n, &t, logs, p->nlog);
    pthread_mutex_unlock(&p->lock);
}

static bool want_screen(const st_produce_cfg *cfg)
{
    const char *term = getenv("TERM");
    return !cfg->plain && isatty(fileno(cfg->out)) && term && *term && strcmp(term, "dumb") != 0;
}

int st_produce(const st_produce_cfg *cfg)
{
    const st_job *job = cfg->job;
    int status = ST_EXIT_PASS;
    st_err e;
    st_err_clear(&e);
    produce pr;
    memset(&pr, 0, sizeof pr);
    produce *p = &pr;
    p->cfg = cfg;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->can_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    p->logger = (st_logger){ log_write, p,
                             cfg->verbose >= 2 ? ST_LOG_DEBUG : cfg->verbose ? ST_LOG_INFO : ST_LOG_WARN };
    /* Signals go to one thread that asks the slots to stop; every thread made from here
     * on inherits the mask. */
    sigctx sc = { .p = p };
    sigemptyset(&sc.set);
    sigaddset(&sc.set, SIGINT);
    sigaddset(&sc.set, SIGTERM);
    sigset_t old;
    pthread_sigmask(SIG_BLOCK, &sc.set, &old);
    pthread_t sigthread;
    bool sig_started = pthread_create(&sigthread, NULL, signal_main, &sc) == 0;
    st_shift *shift = NULL;
    st_serial_host *serial = NULL;
    st_slot_needs needs = needs_of(job);
    st_uuid_new(p->run_id); /* one run id for the whole production session */

    int rc = st_ctx_open(cfg->fixture_path, &p->logger, &p->ctx, &e);
    if (rc) {
        fprintf(cfg->errout, "station: fixture: %s\n", e.msg);
        status = rc == ST_ERR_INVAL ? ST_EXIT_USAGE : ST_EXIT_STATION;
        goto out;
    }
    const st_fixture *fx = st_ctx_fixture(p->ctx);
    for (size_t i = 0; i < cfg->nslots; i++)
        if (!st_fixture_slot_by_id(fx, cfg->slots[i])) {
            fprintf(cfg->errout, "station: --slot %d: %s has no such slot\n", cfg->slots[i], fx->path);
            status = ST_EXIT_USAGE;
            goto out;
        }
    if (job->units == ST_UNITS_DISCOVER) {
        fprintf(cfg->errout, "station: produce: job %s finds its units on a bus (units: "
                             "discover); production runs a fixture's slots: use station run\n",
                job->name);
        status = ST_EXIT_USAGE;
        goto out;
    }
    if (job->barcode[0]) {
        if (regcomp(&p->re, job->barcode, REG_EXTENDED | REG_NOSUB) != 0) {
            fprintf(cfg->errout, "station: job %s: barcode: not a regular expression\n", job->path);
            status = ST_EXIT_USAGE;
            goto out;
        }
        p->has_re = true;
    }
    for (const st_driver *const *d = job->drivers; d && *d && !p->finder; d++)
        if ((*d)->discover)
            p->finder = *d;
    p->slots = calloc(fx->n_slots, sizeof *p->slots);
    if (!p->slots) {
        status = ST_EXIT_STATION;
        goto out;
    }
    /* Live status on MQTT when the fleet configuration names a broker: the same calls as
     * `station run` (station/cmd_fleet.h); its station name names the reports too. */
    if ((status = station_fleet_begin(p->run_id, fx->n_slots, &p->fleet)) != 0)
        goto out;
    if ((needs.what & ST_NEED_USB_SERIAL) && st_ctx_serial(p->ctx, &serial, &e)) {
        fprintf(cfg->errout, "station: serial: %s\n", e.msg);
        status = ST_EXIT_STATION;
        goto out;
    }
    for (size_t i = 0; i < fx->n_slots; i++) {
        const st_fixture_slot *fs = &fx->slots[i];
        if (!chosen(cfg, fs->id))
            continue;
        pslot *s = &p->slots[p->n++];
        s->p = p;
        s->fs = fs;
        s->idx = i;
        s->scan_fd = -1;
        s->percent = -1;
        s->held = true; /* a button down when the station starts is not a press */
        st_strlcpy(s->big, "WAIT", sizeof s->big);
        if (job->barcode[0] && !fs->scanner.present) {
            fprintf(cfg->errout, "station: slot %d: job %s wants a barcode (barcode: %s) but the "
                                 "slot has no scanner (fixture %s: scanner.fifo or scanner.evdev)\n",
                    fs->id, job->name, job->barcode, fx->path);
            status = ST_EXIT_USAGE;
            goto out;
        }
        if (fs->start == ST_START_CAN && !p->finder) {
            fprintf(cfg->errout, "station: slot %d: start: can needs a job whose steps can find "
                                 "units on a CAN bus; job %s has none\n", fs->id, job->name);
            status = ST_EXIT_USAGE;
            goto out;
        }
        if ((rc = st_slot_open(fx, fs->id, st_ctx_gpio(p->ctx), &s->slot, &e)) != 0) {
            fprintf(cfg->errout, "station: slot: %s\n", e.msg);
            status = rc == ST_ERR_INVAL ? ST_EXIT_USAGE : ST_EXIT_STATION;
            goto out;
        }
        if ((needs.what & ST_NEED_CAN) || fs->start == ST_START_CAN) {
            const char *ifname = fs->can.present ? fs->can.iface : st_fixture_can_iface(fx);
            rc = st_ctx_can_iface(p->ctx, ifname, &s->can, &e);
            if (!rc)
                rc = st_can_iface_prepare(s->can, needs.can_bitrate ? needs.can_bitrate
                                                                    : st_fixture_can_bitrate(fx, ifname), &e);
            if (rc) {
                fprintf(cfg->errout, "station: can: %s\n", e.msg);
                status = ST_EXIT_STATION;
                goto out;
            }
        }
        if (fs->scanner.present && (rc = scanner_open(s, &e)) != 0) {
            fprintf(cfg->errout, "station: %s\n", e.msg);
            status = rc == ST_ERR_INVAL ? ST_EXIT_USAGE : ST_EXIT_STATION;
            goto out;
        }
        s->progress = (st_progress){ on_progress, s };
        s->env = (st_run_env){
            .station_name = station_fleet_name(p->fleet, cfg->station_id),
            .operator_name = cfg->operator_name,
            .run_id = p->run_id,
            .report_dir = cfg->report_dir,
            .fixture = fx,
            .fslot = fs,
            .slot = s->slot,
            .usb = st_ctx_usb(p->ctx),
            .can = s->can,
            .can_uuid = fs->can.uuid,
            .unit_index = (unsigned)i,
            .serial = serial,
            .uart_open = st_ctx_uart_open,
            .uart_ctx = p->ctx,
            .log = &p->logger,
            .progress = &s->progress,
            .on_step = on_step,
            .on_step_ctx = s,
            .cancel = &p->abort_flag,
            .cancel_reason = "stopped by a second signal while production was ending",
            .lot = cfg->lot,
        };
        station_fleet_attach(p->fleet, i, fs->id, &s->progress, &s->env, NULL);
    }
    if (!p->n) {
        fprintf(cfg->errout, "station: produce: no slot to run\n");
        status = ST_EXIT_USAGE;
        goto out;
    }
    recover_in_flight(p);
    if (want_screen(cfg))
        p->screen = st_screen_open(cfg->out, !getenv("NO_COLOR"));
    if (!p->screen)
        fprintf(cfg->out, "station: produce: job %s on %s, %zu slot%s%s%s; Ctrl-C finishes the "
                          "units in flight and stops\n", job->name, fx->name, p->n,
                p->n == 1 ? "" : "s", cfg->lot && *cfg->lot ? ", lot " : "",
                cfg->lot && *cfg->lot ? cfg->lot : "");
    p->t0_us = st_now_us();
    for (size_t i = 0; i < p->n; i++) {
        int te = pthread_create(&p->slots[i].thread, NULL, slot_main, &p->slots[i]);
        p->slots[i].started = te == 0;
        if (te) {
            pthread_mutex_lock(&p->lock);
            p->finished_slots++;
            say_locked(p, "slot %d: cannot start: %s", p->slots[i].fs->id, strerror(te));
            pthread_mutex_unlock(&p->lock);
            status = ST_EXIT_STATION;
        }
    }
    /* The virtual fixture's simulated operators start once the slots listen. */
    if (st_shift_start(p->ctx, cfg->slots, cfg->nslots, shift_over, p, &shift, &e) != 0) {
        pthread_mutex_lock(&p->lock);
        p->stopping = 1;
        say_locked(p, "station: %s", e.msg);
        pthread_mutex_unlock(&p->lock);
        status = ST_EXIT_STATION;
    }
    for (;;) {
        if (p->screen)
            draw(p, job);
        struct timespec ts = abs_in(p->screen ? 100 : 50);
        pthread_mutex_lock(&p->lock);
        bool all_done = p->finished_slots == p->n;
        if (!all_done && !(p->shift_over && !p->stopping))
            pthread_cond_timedwait(&p->cond, &p->lock, &ts);
        all_done = p->finished_slots == p->n;
        pthread_mutex_unlock(&p->lock);
        if (all_done)
            break;
        if (shift && !stopping(p) && st_shift_done(shift)) {
            pthread_mutex_lock(&p->lock);
            if (!p->stopping) {
                p->stopping = 1;
                snprintf(p->stop_why, sizeof p->stop_why, "the simulated shift is over");
                pthread_cond_broadcast(&p->cond);
            }
            pthread_mutex_unlock(&p->lock);
        }
    }
    for (size_t i = 0; i < p->n; i++)
        if (p->slots[i].started)
            pthread_join(p->slots[i].thread, NULL);
    if (p->screen) {
        draw(p, job);
        st_screen_close(p->screen);
        p->screen = NULL;
    }
    {
        unsigned done = p->total_pass + p->total_fail + p->total_incomplete + p->total_error;
        double hours = (double)(st_now_us() - p->t0_us) / 3.6e9;
        fprintf(cfg->out, "station: produce: stopped (%s): %u units, %u passed, %u failed",
                p->stop_why[0] ? p->stop_why : "every slot ended", done, p->total_pass,
                p->total_fail);
        if (p->total_incomplete)
            fprintf(cfg->out, ", %u stopped", p->total_incomplete);
        if (p->total_error)
            fprintf(cfg->out, ", %u without a report", p->total_error);
        fprintf(cfg->out, ", %u refused", p->total_refused);
        if (done)
            fprintf(cfg->out, "; first-pass yield %.1f%%, %.0f units/h", 100.0 * p->total_pass / done,
                    hours > 0 ? done / hours : 0.0);
        fprintf(cfg->out, "\n");
        char serr[ST_ERR_MSG_MAX + 64];
        st_shift_error(shift, serr, sizeof serr);
        if (serr[0]) {
            fprintf(cfg->errout, "station: %s\n", serr);
            status = ST_EXIT_USAGE;
        }
        if (shift) {
            unsigned sp, sf;
            st_shift_counts(shift, &sp, &sf);
            fprintf(cfg->out, "station: produce: the simulated operators saw %u pass and %u fail "
                              "LEDs\n", sp, sf);
        }
        if (status == ST_EXIT_PASS)
            status = p->total_error ? ST_EXIT_STATION
                     : p->total_incomplete ? ST_EXIT_INCOMPLETE
                     : p->total_fail || p->total_refused ? ST_EXIT_UNIT_FAIL
                                                         : ST_EXIT_PASS;
    }
out:
    st_shift_free(shift);
    if (p->screen)
        st_screen_close(p->screen);
    for (size_t i = 0; p->slots && i < p->n; i++) {
        if (p->slots[i].slot) {
            st_slot_set_leds(p->slots[i].slot, false, false, NULL);
            st_slot_close(p->slots[i].slot);
        }
        if (p->slots[i].scan_fd >= 0)
            close(p->slots[i].scan_fd);
        st_scanner_close(p->slots[i].scanner);
    }
    free(p->slots);
    station_fleet_end(p->fleet); /* slots idle, station offline */
    st_ctx_close(p->ctx);
    if (p->has_re)
        regfree(&p->re);
    if (sig_started) {
        pthread_cancel(sigthread);
        pthread_join(sigthread, NULL);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->can_lock);
    pthread_mutex_destroy(&p->lock);
    return status;
}
