/* The operator screen of production mode: one panel per slot with its state, progress and
 * last verdict in block letters readable from two metres, batch totals and yield, drawn
 * with ncurses. The caller hands it a snapshot of every slot; it never reads station state
 * itself. Front-end code: it writes to the terminal and nothing else does while it is open.
 *
 * Ownership: st_screen_open() returns a screen the caller frees with st_screen_close(),
 * which restores the terminal. Not thread-safe: one thread draws. */
#ifndef STATION_SCREEN_H
#define STATION_SCREEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct st_screen st_screen;

/* What a slot panel shows. big: the word in block letters ("WAIT", "SCAN", "BUSY", "PASS",
 * "FAIL", "STOP", "DONE"); the rest as text. Strings are printable ASCII (the caller has
 * made untrusted text safe). */
typedef struct st_screen_slot {
    int id;
    const char *name;
    const char *big;
    const char *state;       /* "waiting for a unit: press start", "flash 45%" */
    int percent;             /* progress of the current phase, -1 none */
    const char *verdict;     /* last unit's verdict ("" none yet); kept until the next unit */
    const char *unit;        /* last or current unit (identity or barcode), "" none */
    const char *cause;       /* why it failed, "" none */
    unsigned units, pass, fail;
} st_screen_slot;

typedef struct st_screen_totals {
    const char *job, *lot, *station, *operator_name;
    unsigned units, pass, fail, incomplete, refused;
    double first_pass_yield; /* percent, < 0: no unit yet */
    double units_per_hour;   /* < 0: not known yet */
    const char *footer;      /* "Ctrl-C: finish the units in flight and stop" */
} st_screen_totals;

/* Take over the terminal behind out (newterm). color: use colours (NO_COLOR unset). NULL
 * when the terminal cannot be driven (the caller falls back to plain lines). */
st_screen *st_screen_open(FILE *out, bool color);
void st_screen_close(st_screen *s);

/* Redraw everything: n slot panels, the totals and the newest log lines (oldest first). */
void st_screen_draw(st_screen *s, const st_screen_slot *slots, size_t n,
                    const st_screen_totals *t, const char *const *log, size_t nlog);

/* Block letters: row r (0..4) of text in a 5-row font, each glyph 5 columns wide and one
 * column apart, '#' for ink; out gets at most cap-1 characters. Letters without a glyph
 * are blank. Shared with the tests, which look for these rows in tmux. */
void st_screen_big_row(const char *text, int r, char *out, size_t cap);

#endif
