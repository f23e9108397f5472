/* The BGAPI UART DFU driver: the job glue of the BGAPI engine (steps bgapi-enter-dfu,
 * bgapi-upload, bgapi-finish, bgapi-boot; the job section "bgapi:"; GBL checks of the
 * images its steps take, before any unit is touched; the commands `station ble flash` and
 * `station ble image`). The module is reached on the slot's module UART (fixture
 * `module:`). Only this file pair sees the job interface. */
#ifndef STATION_PROTOCOLS_BGAPI_DRIVER_H
#define STATION_PROTOCOLS_BGAPI_DRIVER_H

#include "jobs/driver.h"

extern const st_driver st_bgapi_driver;

#endif
