/* The application driver: checks on the unit's running application that any flashing
 * protocol ends with (step wait-for-app: it enumerates on the slot's USB port, or its CAN
 * UUID answers QUERY as Klipper). Only this file pair sees the job interface. */
#ifndef STATION_PROTOCOLS_APP_DRIVER_H
#define STATION_PROTOCOLS_APP_DRIVER_H

#include "jobs/driver.h"

extern const st_driver st_app_driver;

#endif
