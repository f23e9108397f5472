/* Measurements with limits and outcomes (measure.h). */
#include "measure.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "text.h"

int st_measure_limits_check(const st_measure_limits *l, st_err *err)
{
    const struct { bool has; double v; const char *name; } p[4] = {
        { l->has_low, l->low, "low" },
        { l->has_marginal_low, l->marginal_low, "marginal_low" },
        { l->has_marginal_high, l->marginal_high, "marginal_high" },
        { l->has_high, l->high, "high" },
    };
    for (int i = 0; i < 4; i++)
        if (p[i].has && !isfinite(p[i].v))
            return st_err_set(err, ST_ERR_INVAL, "%s is not a finite number", p[i].name);
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++)
            if (p[i].has && p[j].has && p[i].v > p[j].v)
                return st_err_set(err, ST_ERR_INVAL, "%s %g is above %s %g", p[i].name,
                                  p[i].v, p[j].name, p[j].v);
    return 0;
}

st_measure_outcome st_measure_set(st_measure *m, const char *name, const char *unit,
                                  double value, const st_measure_limits *lim)
{
    st_strlcpy(m->name, name, sizeof m->name);
    st_strlcpy(m->unit, unit ? unit : "", sizeof m->unit);
    m->value = value;
    memset(&m->lim, 0, sizeof m->lim);
    if (lim)
        m->lim = *lim;
    const st_measure_limits *l = &m->lim;
    if (!isfinite(value) || (l->has_low && value < l->low) || (l->has_high && value > l->high))
        m->outcome = ST_MEASURE_FAIL;
    else if ((l->has_marginal_low && value < l->marginal_low) ||
             (l->has_marginal_high && value > l->marginal_high))
        m->outcome = ST_MEASURE_MARGINAL;
    else
        m->outcome = ST_MEASURE_PASS;
    return m->outcome;
}

const char *st_measure_outcome_name(st_measure_outcome o)
{
    return o == ST_MEASURE_PASS ? "pass" : o == ST_MEASURE_MARGINAL ? "marginal" : "fail";
}

char *st_measure_explain(const st_measure *m, char *buf, size_t cap)
{
    const st_measure_limits *l = &m->lim;
    const char *sp = m->unit[0] ? " " : "";
    if (!isfinite(m->value))
        snprintf(buf, cap, "%s has no value", m->name);
    else if (l->has_low && m->value < l->low)
        snprintf(buf, cap, "%s = %g%s%s is below the low limit %g%s%s", m->name, m->value, sp,
                 m->unit, l->low, sp, m->unit);
    else if (l->has_high && m->value > l->high)
        snprintf(buf, cap, "%s = %g%s%s is above the high limit %g%s%s", m->name, m->value, sp,
                 m->unit, l->high, sp, m->unit);
    else if (l->has_marginal_low && m->value < l->marginal_low)
        snprintf(buf, cap, "%s = %g%s%s is marginal: below %g%s%s", m->name, m->value, sp,
                 m->unit, l->marginal_low, sp, m->unit);
    else if (l->has_marginal_high && m->value > l->marginal_high)
        snprintf(buf, cap, "%s = %g%s%s is marginal: above %g%s%s", m->name, m->value, sp,
                 m->unit, l->marginal_high, sp, m->unit);
    else
        snprintf(buf, cap, "%s = %g%s%s is within its limits", m->name, m->value, sp, m->unit);
    return buf;
}
