/* Monotonic time and deadlines. Engines wait on deadlines, never on fixed sleeps. Time is
 * injectable: an st_clock is the system's monotonic clock or a virtual one that a test (or
 * a simulation) drives, so a 100 ms device delay costs a test no real time at all. Code
 * that takes an st_clock treats NULL as the system clock. */
#ifndef STATION_CORE_CLOCK_H
#define STATION_CORE_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

/* Microseconds on CLOCK_MONOTONIC. */
uint64_t st_now_us(void);
/* Wall-clock time in microseconds since the epoch (reports only, never for deadlines). */
uint64_t st_wall_us(void);
/* Sleep for us microseconds (restarts on EINTR). */
void st_sleep_us(uint64_t us);

typedef struct st_deadline {
    uint64_t at_us; /* absolute st_now_us() value */
} st_deadline;

st_deadline st_deadline_in_ms(uint64_t ms);
bool st_deadline_passed(st_deadline d);
/* Milliseconds left, rounded up, 0 when passed; capped to INT32_MAX. */
int st_deadline_remaining_ms(st_deadline d);
/* Sleep until the deadline (returns at once if it has passed). */
void st_sleep_until(st_deadline d);

/* ---- Injectable clocks ------------------------------------------------------------------- */

typedef struct st_clock st_clock;
typedef struct st_clock_ops {
    uint64_t (*now_us)(const st_clock *c);
    /* Return once now_us() >= at_us (at once if it already is). */
    void (*sleep_until_us)(const st_clock *c, uint64_t at_us);
} st_clock_ops;
struct st_clock {
    const st_clock_ops *ops;
};

/* The system's monotonic clock (st_now_us / st_sleep_us); never freed, holds no state. */
const st_clock *st_clock_system(void);

/* Through a clock; c NULL = the system clock. */
uint64_t st_clock_now_us(const st_clock *c);
void st_clock_sleep_until_us(const st_clock *c, uint64_t at_us);
void st_clock_sleep_us(const st_clock *c, uint64_t us);
st_deadline st_clock_deadline_in_ms(const st_clock *c, uint64_t ms);
bool st_clock_deadline_passed(const st_clock *c, st_deadline d);
int st_clock_deadline_remaining_ms(const st_clock *c, st_deadline d);

/* A virtual clock for tests and simulations. Its time stands still until someone sleeps on
 * it or calls st_clock_virtual_advance; a sleep jumps time to its end at once, firing on
 * the way, in time order, every alarm it passes (on the sleeping thread, with no lock held,
 * so an alarm may act on the world: attach a USB device, reboot a unit). Thread-safe.
 * Returns NULL when out of memory. Free with st_clock_virtual_free. */
st_clock *st_clock_virtual_new(uint64_t start_us);
void st_clock_virtual_free(st_clock *c);
/* Move time forward by us, firing the alarms passed. */
void st_clock_virtual_advance(st_clock *c, uint64_t us);
/* Call fn(ctx, now_us) once time reaches at_us. Returns 0 or ST_ERR_NOMEM. */
int st_clock_virtual_at(st_clock *c, uint64_t at_us, void (*fn)(void *ctx, uint64_t now_us),
                        void *ctx);

/* Format a wall time (us since epoch) as ISO 8601 UTC with milliseconds,
 * "2026-11-23T17:42:57.123Z"; buf needs 32 bytes. */
void st_format_utc(uint64_t wall_us, char *buf, unsigned cap);

#endif
