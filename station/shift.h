/* A simulated shift on the virtual fixture: for every slot whose unit has an `operator:`
 * (fixtures/README.md), a thread plays the operator. She scans the next unit's barcode into
 * the slot's scanner FIFO, puts a fresh unit in (its present line asserts, it appears on USB
 * and CAN), presses start, watches the slot's pass and fail LEDs as a person would, takes
 * the unit out a while after one lights, and waits for the station to see the slot empty.
 * So `station produce` can replay a whole shift in a test with nothing mocked on the
 * station's side. Front-end code (station/), not a library: it only drives the virtual
 * world through the context.
 *
 * Ownership: st_shift_start() returns a shift (or NULL when no slot has an operator) that
 * st_shift_free() stops and frees. */
#ifndef STATION_SHIFT_H
#define STATION_SHIFT_H

#include <stdbool.h>
#include <stddef.h>

#include "station/context.h"

typedef struct st_shift st_shift;

/* Start the operators of the chosen slots (slot ids; nslots 0 = every slot). *out NULL
 * when the fixture has none. on_done (optional) is called once, from the last operator's
 * thread and holding no lock of the shift, when every operator is done: the station stops
 * then instead of noticing it at its next look. */
int st_shift_start(st_ctx *ctx, const int *slots, size_t nslots, void (*on_done)(void *arg),
                   void *arg, st_shift **out, st_err *err);

/* Every operator has run all her units (or gave up because the station stopped). */
bool st_shift_done(st_shift *s);

/* Units the operators saw pass and fail (by the LEDs), for the replay's summary line. */
void st_shift_counts(st_shift *s, unsigned *passed, unsigned *failed);

/* The first thing that stopped an operator early (a unit that could not be made: a bad
 * fault string in unit.operator.exceptions), "" when none. */
void st_shift_error(st_shift *s, char *buf, size_t cap);

/* Stop every operator (she leaves at once) and free. NULL is a no-op. */
void st_shift_free(st_shift *s);

#endif
