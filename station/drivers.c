/* The driver registry (see drivers.h). Adding a protocol: one include and one line here. */
#include "station/drivers.h"

#include "protocols/an3155/driver.h"
#include "protocols/app/driver.h"
#include "protocols/bgapi/driver.h"
#include "protocols/dfuse/driver.h"
#include "protocols/katapult/driver.h"
#include "protocols/klipper/driver.h"

const st_driver *const *st_drivers_registry(void)
{
    static const st_driver *const drivers[] = {
        &st_dfuse_driver,    /* ROM USB DFU (DfuSe): enter-bootloader, flash, verify, start */
        &st_katapult_driver, /* Katapult over CAN / USB-CDC / UART */
        &st_app_driver,      /* the running application: wait-for-app */
        &st_an3155_driver,   /* the USART ROM bootloader (AN3155): entry plans, backup */
        &st_klipper_driver,  /* the running Klipper unit: identify, alive, sample; image info */
        &st_bgapi_driver,    /* Bluetooth modules: BGAPI UART DFU (Gecko bootloader) */
        NULL,
    };
    return drivers;
}
