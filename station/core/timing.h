/* Timing profiles of device models: how much of the real hardware's time (flash erase and
 * program, USB and CAN wire time) a model spends. Shared by links (the in-memory CAN bus
 * paces frames by bit time) and the simulator (flash costs), so it lives in core. */
#ifndef STATION_CORE_TIMING_H
#define STATION_CORE_TIMING_H

#include <stdbool.h>

typedef enum st_timing_profile {
    ST_TIMING_NONE = 0,  /* unit tests: everything instant */
    ST_TIMING_DATASHEET, /* benchmarks: datasheet erase/program times, wire times */
} st_timing_profile;

/* "none" / "datasheet" (any case); returns false for anything else (and for NULL). */
bool st_timing_parse(const char *s, st_timing_profile *out);
/* "none" or "datasheet"; never NULL. */
const char *st_timing_name(st_timing_profile t);

#endif
