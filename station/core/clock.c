/* Monotonic clock, sleeps and deadlines. */
#include "clock.h"

#include "err.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

uint64_t st_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t st_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void st_sleep_us(uint64_t us)
{
    struct timespec ts = { .tv_sec = (time_t)(us / 1000000u), .tv_nsec = (long)(us % 1000000u) * 1000 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

st_deadline st_deadline_in_ms(uint64_t ms)
{
    st_deadline d = { st_now_us() + ms * 1000u };
    return d;
}

bool st_deadline_passed(st_deadline d)
{
    return st_now_us() >= d.at_us;
}

int st_deadline_remaining_ms(st_deadline d)
{
    uint64_t now = st_now_us();
    if (now >= d.at_us)
        return 0;
    uint64_t ms = (d.at_us - now + 999u) / 1000u;
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

void st_sleep_until(st_deadline d)
{
    uint64_t now = st_now_us();
    if (now < d.at_us)
        st_sleep_us(d.at_us - now);
}

void st_format_utc(uint64_t wall_us, char *buf, unsigned cap)
{
    time_t secs = (time_t)(wall_us / 1000000u);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)((wall_us / 1000u) % 1000u));
}

/* ---- Injectable clocks ------------------------------------------------------------------- */

static uint64_t sys_now(const st_clock *c)
{
    (void)c;
    return st_now_us();
}

static void sys_sleep_until(const st_clock *c, uint64_t at_us)
{
    (void)c;
    st_deadline d = { at_us };
    st_sleep_until(d);
}

static const st_clock_ops sys_ops = { sys_now, sys_sleep_until };
static const st_clock sys_clock = { &sys_ops };

const st_clock *st_clock_system(void)
{
    return &sys_clock;
}

uint64_t st_clock_now_us(const st_clock *c)
{
    return c ? c->ops->now_us(c) : st_now_us();
}

void st_clock_sleep_until_us(const st_clock *c, uint64_t at_us)
{
    if (c)
        c->ops->sleep_until_us(c, at_us);
    else
        sys_sleep_until(NULL, at_us);
}

void st_clock_sleep_us(const st_clock *c, uint64_t us)
{
    st_clock_sleep_until_us(c, st_clock_now_us(c) + us);
}

st_deadline st_clock_deadline_in_ms(const st_clock *c, uint64_t ms)
{
    st_deadline d = { st_clock_now_us(c) + ms * 1000u };
    return d;
}

bool st_clock_deadline_passed(const st_clock *c, st_deadline d)
{
    return st_clock_now_us(c) >= d.at_us;
}

int st_clock_deadline_remaining_ms(const st_clock *c, st_deadline d)
{
    uint64_t now = st_clock_now_us(c);
    if (now >= d.at_us)
        return 0;
    uint64_t ms = (d.at_us - now + 999u) / 1000u;
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

typedef struct valarm {
    uint64_t at_us;
    uint64_t seq; /* alarms due at the same time fire in the order they were set */
    void (*fn)(void *ctx, uint64_t now_us);
    void *ctx;
} valarm;

typedef struct vclock {
    st_clock base; /* first */
    pthread_mutex_t lock;
    uint64_t now_us, seq;
    valarm *alarms;
    size_t n, cap;
} vclock;

static vclock *vc(const st_clock *c)
{
    return (vclock *)(uintptr_t)c; /* every vclock is heap-allocated and mutable */
}

static uint64_t v_now(const st_clock *c)
{
    vclock *v = vc(c);
    pthread_mutex_lock(&v->lock);
    uint64_t now = v->now_us;
    pthread_mutex_unlock(&v->lock);
    return now;
}

/* Advance to at_us, one due alarm at a time (an alarm may set new ones). */
static void v_sleep_until(const st_clock *c, uint64_t at_us)
{
    vclock *v = vc(c);
    for (;;) {
        pthread_mutex_lock(&v->lock);
        size_t best = v->n;
        for (size_t i = 0; i < v->n; i++)
            if (v->alarms[i].at_us <= at_us &&
                (best == v->n || v->alarms[i].at_us < v->alarms[best].at_us ||
                 (v->alarms[i].at_us == v->alarms[best].at_us &&
                  v->alarms[i].seq < v->alarms[best].seq)))
                best = i;
        if (best == v->n) {
            if (at_us > v->now_us)
                v->now_us = at_us;
            pthread_mutex_unlock(&v->lock);
            return;
        }
        valarm a = v->alarms[best];
        v->alarms[best] = v->alarms[--v->n];
        if (a.at_us > v->now_us)
            v->now_us = a.at_us;
        uint64_t now = v->now_us;
        pthread_mutex_unlock(&v->lock);
        a.fn(a.ctx, now);
    }
}

static const st_clock_ops v_ops = { v_now, v_sleep_until };

st_clock *st_clock_virtual_new(uint64_t start_us)
{
    vclock *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->base.ops = &v_ops;
    v->now_us = start_us;
    pthread_mutex_init(&v->lock, NULL);
    return &v->base;
}

void st_clock_virtual_free(st_clock *c)
{
    if (!c)
        return;
    vclock *v = vc(c);
    pthread_mutex_destroy(&v->lock);
    free(v->alarms);
    free(v);
}

void st_clock_virtual_advance(st_clock *c, uint64_t us)
{
    v_sleep_until(c, v_now(c) + us);
}

int st_clock_virtual_at(st_clock *c, uint64_t at_us, void (*fn)(void *ctx, uint64_t now_us),
                        void *ctx)
{
    vclock *v = vc(c);
    pthread_mutex_lock(&v->lock);
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 8;
        valarm *na = realloc(v->alarms, ncap * sizeof *na);
        if (!na) {
            pthread_mutex_unlock(&v->lock);
            return ST_ERR_NOMEM;
        }
        v->alarms = na;
        v->cap = ncap;
    }
    v->alarms[v->n++] = (valarm){ at_us, v->seq++, fn, ctx };
    pthread_mutex_unlock(&v->lock);
    return 0;
}
