/* Identifiers unique across stations: random (version 4) UUIDs from libuuid, for run ids. */
#ifndef STATION_CORE_UUID_H
#define STATION_CORE_UUID_H

/* "xxxxxxxx-xxxx-4xxx-Nxxx-xxxxxxxxxxxx" plus the NUL. */
#define ST_UUID_STR_LEN 37

/* Write a new random UUID, lower-case hex, into out. libuuid reads the kernel's random
 * source (getrandom), so two stations, or two runs in the same millisecond, never share one. */
void st_uuid_new(char out[ST_UUID_STR_LEN]);

#endif
