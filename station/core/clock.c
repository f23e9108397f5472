/* Monotonic clock, sleeps and deadlines. */
#include "clock.h"

#include <stdbool.h>
#include <sys/prctl.h>

#include <errno.h>
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

void st_clock_precise_wakeups(void)
{
#ifdef PR_SET_TIMERSLACK
    static _Thread_local bool done;
    if (!done) {
        prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
        done = true;
    }
#endif
}

void st_format_utc(uint64_t wall_us, char *buf, unsigned cap)
{
    time_t secs = (time_t)(wall_us / 1000000u);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)((wall_us / 1000u) % 1000u));
}
