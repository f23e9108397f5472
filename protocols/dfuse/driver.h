/* The ROM DFU driver: the job glue of the DfuSe engine (steps enter-bootloader, flash,
 * verify, start, power-cycle; the job section "dfu:"; the default recovery rung "rom-dfu";
 * the command `station dfu list`). Only this file pair sees the job interface. */
#ifndef STATION_PROTOCOLS_DFUSE_DRIVER_H
#define STATION_PROTOCOLS_DFUSE_DRIVER_H

#include "jobs/driver.h"

extern const st_driver st_dfuse_driver;

#endif
