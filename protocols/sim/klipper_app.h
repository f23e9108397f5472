/* The running Klipper application as a byte-stream device model: the Klipper protocol
 * itself (a st_klp_model built from the dictionary the flashed image embeds, set by the
 * owner; none for an image without one) and the way into the bootloader. Over USB-CDC the 1200-baud touch (line coding 1200
 * with DTR clear, Klipper src/generic/usb_cdc.c check_reboot); over a UART the request
 * string " \x1c Request Serial Bootloader!! ~" (protocols.md 2.7). Either calls the owner's
 * hook, which reboots the unit into Katapult. */
#ifndef STATION_PROTOCOLS_SIM_KLIPPER_APP_H
#define STATION_PROTOCOLS_SIM_KLIPPER_APP_H

#include "protocols/link/stream.h"

typedef struct st_klipper_app st_klipper_app;

/* on_bootloader_request(ctx) is called at most once per st_klipper_app_reset. */
st_klipper_app *st_klipper_app_new(void (*on_bootloader_request)(void *ctx), void *ctx);
void st_klipper_app_free(st_klipper_app *a);
st_stream_model *st_klipper_app_stream(st_klipper_app *a);
void st_klipper_app_reset(st_klipper_app *a);
/* The protocol model behind the application (not owned; NULL: the app answers nothing but
 * the bootloader requests). Set it while the app's face is detached. */
void st_klipper_app_set_protocol(st_klipper_app *a, st_stream_model *protocol);

#endif
