/* The Katapult driver: the job glue of the Katapult engine over CAN (with the Klipper CAN
 * admin protocol), USB-CDC and UART (steps enter-katapult, read-app, katapult-flash,
 * katapult-verify, katapult-complete; the job section "katapult:"; units: discover on a
 * CAN bus; the commands `station can scan`, `can flash` and `serial flash`). Only this
 * file pair sees the job interface. */
#ifndef STATION_PROTOCOLS_KATAPULT_DRIVER_H
#define STATION_PROTOCOLS_KATAPULT_DRIVER_H

#include "jobs/driver.h"

extern const st_driver st_katapult_driver;

#endif
