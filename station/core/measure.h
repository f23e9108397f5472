/* Measurements with limits, as OpenHTF has them: a named value with a unit, optional low
 * and high limits, an optional marginal band inside them, and an outcome. A value outside
 * the limits fails; inside the limits but outside the marginal band it is marginal (it
 * passes, flagged); otherwise it passes. Check steps on running units record these. */
#ifndef STATION_CORE_MEASURE_H
#define STATION_CORE_MEASURE_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

typedef enum st_measure_outcome {
    ST_MEASURE_PASS = 0,
    ST_MEASURE_MARGINAL = 1, /* within the limits, outside the marginal band: still passes */
    ST_MEASURE_FAIL = 2,
} st_measure_outcome;

typedef struct st_measure_limits {
    bool has_low, has_high;
    double low, high;
    bool has_marginal_low, has_marginal_high;
    double marginal_low, marginal_high;
} st_measure_limits;

#define ST_MEASURE_NAME_MAX 48
#define ST_MEASURE_UNIT_MAX 16

typedef struct st_measure {
    char name[ST_MEASURE_NAME_MAX];
    char unit[ST_MEASURE_UNIT_MAX]; /* "Hz", "ticks", "" for a count */
    double value;
    st_measure_limits lim;
    st_measure_outcome outcome;     /* set by st_measure_eval */
} st_measure;

/* Limits that make sense: low <= marginal_low <= marginal_high <= high where given, and
 * finite. ST_ERR_INVAL naming the bad pair otherwise. */
int st_measure_limits_check(const st_measure_limits *l, st_err *err);

/* Fill m (name and unit are copied, truncated) and evaluate it. Returns the outcome. */
st_measure_outcome st_measure_set(st_measure *m, const char *name, const char *unit,
                                  double value, const st_measure_limits *lim);

/* "pass", "marginal", "fail". */
const char *st_measure_outcome_name(st_measure_outcome o);

/* One line on why m failed or is marginal, naming measurement, value and limit:
 * "sensor_data_stddev = 0 counts is below the low limit 5 counts". Returns buf. */
char *st_measure_explain(const st_measure *m, char *buf, size_t cap);

#endif
