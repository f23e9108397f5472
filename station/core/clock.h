/* Monotonic time and deadlines. Engines wait on deadlines, never on fixed sleeps. */
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

/* Ask the kernel to wake the calling thread on time (Linux timer slack 1 ns instead of
 * 50 us) for the rest of its life. The in-memory buses call it in threads that wait for a
 * simulated frame or answer: a real kernel wakes a reader when the data arrives, so the
 * default slack would add simulator-only latency to every exchange. */
void st_clock_precise_wakeups(void);

/* Format a wall time (us since epoch) as ISO 8601 UTC with milliseconds,
 * "2026-11-23T17:42:57.123Z"; buf needs 32 bytes. */
void st_format_utc(uint64_t wall_us, char *buf, unsigned cap);

#endif
