/* The driver registry: every protocol driver the station knows, in one list (drivers.c,
 * one line per driver). The job parser, the engine and the CLI see drivers only through it. */
#ifndef STATION_DRIVERS_H
#define STATION_DRIVERS_H

#include "jobs/driver.h"

/* NULL-terminated; static, never freed. */
const st_driver *const *st_drivers_registry(void);

#endif
