/* The AN3155 driver: the job glue of the USART ROM bootloader engine (job section "uart:",
 * steps uart-enter, uart-info, uart-backup, uart-unprotect, uart-flash, uart-verify,
 * uart-start; the commands `station uart info|backup|flash|go`). Only this file pair sees
 * the job interface. */
#ifndef STATION_PROTOCOLS_AN3155_DRIVER_H
#define STATION_PROTOCOLS_AN3155_DRIVER_H

#include "jobs/driver.h"

extern const st_driver st_an3155_driver;

#endif
