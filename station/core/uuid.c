/* Random UUIDs through libuuid: see uuid.h. */
#include "station/core/uuid.h"

#include <uuid/uuid.h>

void st_uuid_new(char out[ST_UUID_STR_LEN])
{
    uuid_t u;
    /* uuid_generate_random, not uuid_generate: the time-based fallback would embed the
     * station's MAC address in every report. */
    uuid_generate_random(u);
    uuid_unparse_lower(u, out);
}
