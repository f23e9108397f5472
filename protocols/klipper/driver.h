/* The Klipper driver: checks on a running unit through the Klipper MCU protocol (steps
 * identify, alive, sample with measurements and limits), the pre-flight refusal of images
 * a unit cannot run (another MCU, another transport, another version than the job pins),
 * and the CLI commands `image info` and `mcu identify|query|sample`. The only code of
 * protocols/klipper that sees the job interface. */
#ifndef STATION_PROTOCOLS_KLIPPER_DRIVER_H
#define STATION_PROTOCOLS_KLIPPER_DRIVER_H

#include "jobs/driver.h"

extern const st_driver st_klipper_driver;

#endif
