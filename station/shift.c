/* The virtual fixture's simulated operators: one thread per slot with unit.operator. */
#include "station/shift.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fixtures/slot.h"
#include "station/core/clock.h"

#define POLL_MS 2u /* how often she looks at the LEDs: well under any step's time */
#define PRESS_HOLD_MS 300u /* she holds start this long at most before trying again */
#define PRESS_GAP_MS 50u

typedef struct op {
    st_shift *sh;
    const st_fixture_slot *fs;
    pthread_t thread;
    bool started;
    bool done;
    unsigned passed, failed;
} op;

struct st_shift {
    st_ctx *ctx;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    char error[ST_ERR_MSG_MAX + 64];
    op *ops;
    size_t n;
    void (*on_done)(void *arg);
    void *on_done_arg;
};

/* Wait ms (or until stopped): false when stopped. */
static bool pause_ms(st_shift *sh, uint64_t ms)
{
    uint64_t until = st_now_us() + ms * 1000u;
    pthread_mutex_lock(&sh->lock);
    while (!sh->stop) {
        uint64_t now = st_now_us();
        if (now >= until)
            break;
        uint64_t left = until - now;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(left / 1000000u);
        ts.tv_nsec += (long)(left % 1000000u) * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&sh->cond, &sh->lock, &ts);
    }
    bool go = !sh->stop;
    pthread_mutex_unlock(&sh->lock);
    return go;
}

static int lit(op *o, st_slot_line_role role)
{
    st_ctx *c = o->sh->ctx;
    return st_slot_virtual_asserted(st_ctx_gpio(c), st_ctx_fixture(c), o->fs, role) == 1;
}

/* The station can tell the slot is empty again (it clears the result LEDs when it sees the
 * unit leave) only with a present line, a USB port or a CAN UUID to watch. */
static bool station_sees_departure(const st_fixture_slot *fs)
{
    return fs->lines[ST_LINE_PRESENT].present || fs->usb_port[0] ||
           (fs->start == ST_START_CAN && fs->can.uuid[0]);
}

static void scan(op *o, unsigned unit)
{
    const st_fixture_shift *sh = &o->fs->unit.operator;
    char code[80];
    const char *fmt = sh->barcode;
    for (size_t k = 0; k < sh->n_exceptions; k++)
        if (sh->exceptions[k].unit == unit && sh->exceptions[k].has_barcode)
            fmt = sh->exceptions[k].barcode;
    if (!fmt[0] || !o->fs->scanner.fifo[0])
        return;
    /* The format was checked at load: one %u/%x conversion at most. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    int n = snprintf(code, sizeof code - 1, fmt, unit);
#pragma GCC diagnostic pop
    if (n < 0)
        return;
    size_t len = strlen(code);
    code[len++] = '\n';
    int fd = open(o->fs->scanner.fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return; /* nobody reading: the station is not listening, the scan is lost */
    ssize_t w = write(fd, code, len);
    (void)w;
    close(fd);
}

static void *op_thread(void *arg)
{
    op *o = arg;
    st_shift *sh = o->sh;
    st_ctx *c = sh->ctx;
    const st_fixture *fx = st_ctx_fixture(c);
    const st_fixture_shift *plan = &o->fs->unit.operator;
    st_gpio *g = st_ctx_gpio(c);
    for (unsigned u = 1; u <= plan->units; u++) {
        if (!pause_ms(sh, plan->arrive_ms))
            break;
        scan(o, u);
        bool dead = false;
        for (size_t k = 0; k < plan->n_exceptions; k++)
            dead |= plan->exceptions[k].unit == u && plan->exceptions[k].dead;
        st_err e;
        if (!dead && st_ctx_virtual_insert(c, o->fs->id, u, &e) != 0) {
            pthread_mutex_lock(&sh->lock);
            if (!sh->error[0])
                snprintf(sh->error, sizeof sh->error, "simulated operator of slot %d, unit %u: %s",
                         o->fs->id, u, e.msg);
            pthread_mutex_unlock(&sh->lock);
            break;
        }
        st_slot_virtual_set_input(g, fx, o->fs, ST_LINE_PRESENT, true);
        if (o->fs->start == ST_START_BUTTON) {
            if (!pause_ms(sh, plan->press_ms))
                break;
            /* She holds start until the slot shows it took the unit; when it does not
             * within a moment (it was not looking yet, or saw the button already down),
             * she lets go and presses again, as a person would. */
            bool taken = false;
            while (!taken) {
                st_slot_virtual_set_input(g, fx, o->fs, ST_LINE_BUTTON, true);
                for (unsigned t = 0; t < PRESS_HOLD_MS / POLL_MS && !taken; t++) {
                    taken = lit(o, ST_LINE_LED_BUSY) || lit(o, ST_LINE_LED_PASS) ||
                            lit(o, ST_LINE_LED_FAIL);
                    if (!taken && !pause_ms(sh, POLL_MS))
                        break;
                }
                st_slot_virtual_set_input(g, fx, o->fs, ST_LINE_BUTTON, false);
                if (!taken && !pause_ms(sh, PRESS_GAP_MS))
                    break;
            }
            if (!taken)
                break;
        }
        bool pass = false, fail = false;
        while (!(pass = lit(o, ST_LINE_LED_PASS)) && !(fail = lit(o, ST_LINE_LED_FAIL)) &&
               pause_ms(sh, POLL_MS)) {
        }
        if (!pass && !fail)
            break;
        pthread_mutex_lock(&sh->lock);
        o->passed += pass;
        o->failed += fail;
        pthread_mutex_unlock(&sh->lock);
        if (!pause_ms(sh, plan->remove_ms))
            break;
        st_slot_virtual_set_input(g, fx, o->fs, ST_LINE_PRESENT, false);
        st_ctx_virtual_remove(c, o->fs->id);
        /* The next unit goes in once the slot shows it is empty (the LEDs go out). */
        while (station_sees_departure(o->fs) &&
               (lit(o, ST_LINE_LED_PASS) || lit(o, ST_LINE_LED_FAIL)) && pause_ms(sh, POLL_MS)) {
        }
    }
    pthread_mutex_lock(&sh->lock);
    o->done = true;
    pthread_cond_broadcast(&sh->cond);
    bool all = true;
    for (size_t i = 0; i < sh->n; i++)
        all &= sh->ops[i].done;
    /* Exactly one operator sees them all done: the others were done before her. */
    bool tell = all && sh->on_done && !sh->stop;
    pthread_mutex_unlock(&sh->lock);
    if (tell)
        sh->on_done(sh->on_done_arg);
    return NULL;
}

static bool chosen(const int *slots, size_t n, int id)
{
    if (!n)
        return true;
    for (size_t i = 0; i < n; i++)
        if (slots[i] == id)
            return true;
    return false;
}

int st_shift_start(st_ctx *ctx, const int *slots, size_t nslots, void (*on_done)(void *arg),
                   void *arg, st_shift **out, st_err *err)
{
    *out = NULL;
    const st_fixture *fx = st_ctx_fixture(ctx);
    size_t n = 0;
    for (size_t i = 0; i < fx->n_slots; i++)
        n += fx->slots[i].unit.operator.present && chosen(slots, nslots, fx->slots[i].id);
    if (!n)
        return 0;
    st_shift *sh = calloc(1, sizeof *sh);
    if (!sh || !(sh->ops = calloc(n, sizeof *sh->ops))) {
        free(sh);
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    }
    sh->ctx = ctx;
    sh->on_done = on_done;
    sh->on_done_arg = arg;
    pthread_mutex_init(&sh->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sh->cond, &ca);
    pthread_condattr_destroy(&ca);
    for (size_t i = 0; i < fx->n_slots; i++) {
        const st_fixture_slot *fs = &fx->slots[i];
        if (!fs->unit.operator.present || !chosen(slots, nslots, fs->id))
            continue;
        op *o = &sh->ops[sh->n++];
        o->sh = sh;
        o->fs = fs;
        int te = pthread_create(&o->thread, NULL, op_thread, o);
        o->started = te == 0;
        if (te) {
            o->done = true;
            st_shift_free(sh);
            return st_err_set(err, ST_ERR_IO, "simulated operator of slot %d: cannot start: %s",
                              fs->id, strerror(te));
        }
    }
    *out = sh;
    return 0;
}

bool st_shift_done(st_shift *sh)
{
    if (!sh)
        return true;
    pthread_mutex_lock(&sh->lock);
    bool done = true;
    for (size_t i = 0; i < sh->n; i++)
        done &= sh->ops[i].done;
    pthread_mutex_unlock(&sh->lock);
    return done;
}

void st_shift_counts(st_shift *sh, unsigned *passed, unsigned *failed)
{
    *passed = *failed = 0;
    if (!sh)
        return;
    pthread_mutex_lock(&sh->lock);
    for (size_t i = 0; i < sh->n; i++) {
        *passed += sh->ops[i].passed;
        *failed += sh->ops[i].failed;
    }
    pthread_mutex_unlock(&sh->lock);
}

void st_shift_error(st_shift *sh, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (!sh)
        return;
    pthread_mutex_lock(&sh->lock);
    snprintf(buf, cap, "%s", sh->error);
    pthread_mutex_unlock(&sh->lock);
}

void st_shift_free(st_shift *sh)
{
    if (!sh)
        return;
    pthread_mutex_lock(&sh->lock);
    sh->stop = true;
    pthread_cond_broadcast(&sh->cond);
    pthread_mutex_unlock(&sh->lock);
    for (size_t i = 0; i < sh->n; i++)
        if (sh->ops[i].started)
            pthread_join(sh->ops[i].thread, NULL);
    pthread_cond_destroy(&sh->cond);
    pthread_mutex_destroy(&sh->lock);
    free(sh->ops);
    free(sh);
}
