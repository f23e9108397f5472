/* Timing profile names: see timing.h. */
#include "station/core/timing.h"

#include <strings.h>

bool st_timing_parse(const char *s, st_timing_profile *out)
{
    if (s && strcasecmp(s, "none") == 0)
        *out = ST_TIMING_NONE;
    else if (s && strcasecmp(s, "datasheet") == 0)
        *out = ST_TIMING_DATASHEET;
    else
        return false;
    return true;
}

const char *st_timing_name(st_timing_profile t)
{
    return t == ST_TIMING_DATASHEET ? "datasheet" : "none";
}
