/* Bootloader entry sequences: stm32flash's `-i` syntax (reference 4.3 and 4.5) parsed into a
 * plan (plain data: steps with signal, level and pause), and a runner that plays a plan
 * through caller-given signal drivers (fixture GPIO lines through libgpiod, the tty's
 * RTS/DTR/BREAK) with the pauses waited on the station clock.
 *
 *   string   = [entry][":" [exit]]
 *   sequence = { ["-"] signal | delimiter }      signal = GPIO number | rts | dtr | brk | name
 *   "," = 100 ms pause after the previous step, "&" = no pause; "-" = drive low, else high.
 *
 * Our extension: a signal may also be a fixture line name (letters, digits, '_', starting
 * with a letter: "boot0", "reset"), resolved by the fixture like a GPIO number. */
#ifndef STATION_PROTOCOLS_AN3155_ENTRY_H
#define STATION_PROTOCOLS_AN3155_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "station/core/err.h"

#define ST_ENTRY_MAX_STEPS 64
#define ST_ENTRY_MAX_TEXT 160
#define ST_ENTRY_PAUSE_MS 100u /* one ',' */
#define ST_ENTRY_MAX_GPIO 9999 /* a sysfs GPIO number beyond this is a typo */

typedef enum st_entry_kind {
    ST_ENTRY_GPIO = 0, /* gpio = number */
    ST_ENTRY_LINE,     /* name = fixture line name */
    ST_ENTRY_RTS,
    ST_ENTRY_DTR,
    ST_ENTRY_BRK,      /* level 1: send a BREAK; level 0 ("-brk") does nothing, as in stm32flash */
    ST_ENTRY_PAUSE,    /* pause_ms only */
} st_entry_kind;

typedef struct st_entry_step {
    st_entry_kind kind;
    int level;         /* 1 high / asserted, 0 low */
    int gpio;          /* ST_ENTRY_GPIO */
    char name[32];     /* ST_ENTRY_LINE */
    uint32_t pause_ms; /* ST_ENTRY_PAUSE */
    uint16_t col;      /* 0-based column in the source text (for error carets) */
} st_entry_step;

typedef struct st_entry_seq {
    st_entry_step steps[ST_ENTRY_MAX_STEPS];
    size_t n;
} st_entry_seq;

typedef struct st_entry_plan {
    char text[ST_ENTRY_MAX_TEXT]; /* the source string, as given */
    st_entry_seq entry;
    st_entry_seq exit;
    bool has_exit;                /* a ':' was given (an empty exit is still an exit) */
} st_entry_plan;

/* Parse text into *plan. On error returns ST_ERR_INVAL with a message of three lines:
 *   entry sequence: <cause> at column N
 *     <text>
 *     <caret under the bad character>
 * Adjacent pauses are merged (",,," = one 300 ms pause). */
int st_entry_parse(const char *text, st_entry_plan *plan, st_err *err);

/* Error for a step the caller cannot carry out (an unknown line name, a GPIO the fixture
 * does not map), in the same caret format; returns code. */
int st_entry_step_error(const st_entry_plan *plan, const st_entry_step *step, int code,
                        st_err *err, const char *cause);

/* Canonical text of a sequence ("-2,-1,1"), for reports and logs; returns buf. */
const char *st_entry_seq_str(const st_entry_seq *seq, char *buf, size_t cap);

/* The signal drivers a runner needs. set() drives one signal step (never a PAUSE); it
 * returns 0 or < 0 with err filled. */
typedef struct st_entry_io {
    int (*set)(void *ctx, const st_entry_step *step, st_err *err);
    void *ctx;
} st_entry_io;

/* Play seq: each signal step through io, each pause waited on the station clock.
 * Returns 0 or the first error (prefixed with the step). */
int st_entry_run(const st_entry_seq *seq, const st_entry_io *io, st_err *err);

/* Built-in plans as data, in the same syntax (so they are recorded the same way):
 * the fixture's own BOOT0/RESET lines (boot0 high, reset pulse, boot0 back low at exit)
 * and a DTR pulse (the Neptune 4's "toggle DTR low then high"). pulse_ms is rounded up
 * to 100 ms steps. Returns 0 or ST_ERR_INVAL. */
int st_entry_plan_boot0_reset(uint32_t pulse_ms, st_entry_plan *plan, st_err *err);
int st_entry_plan_dtr_pulse(uint32_t pulse_ms, st_entry_plan *plan, st_err *err);

#endif
