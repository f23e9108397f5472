/* USB CDC-ACM device model: presents any byte-stream device model (st_stream_model) as a
 * USB serial device with a configurable identity, as the Klipper application (1d50:614e)
 * and Katapult (1d50:6177) do. Line coding and DTR/RTS reach the stream model's line()
 * hook, which is how the 1200-baud touch arrives. */
#ifndef STATION_PROTOCOLS_SIM_CDC_ACM_H
#define STATION_PROTOCOLS_SIM_CDC_ACM_H

#include <stdint.h>

#include "protocols/link/stream.h"
#include "protocols/link/usb_model.h"

typedef struct st_cdc_identity {
    uint16_t vid, pid, bcd_device;
    const char *manufacturer; /* copied */
    const char *product;
    const char *serial;
} st_cdc_identity;

typedef struct st_cdc_acm st_cdc_acm;

/* inner is not owned and must outlive the device. NULL on allocation failure. */
st_cdc_acm *st_cdc_acm_new(const st_cdc_identity *id, st_stream_model *inner);
void st_cdc_acm_free(st_cdc_acm *d);
/* Change the identity it enumerates with (a unit that booted another build): only while
 * the device is detached from every bus (no host call in flight). */
void st_cdc_acm_set_identity(st_cdc_acm *d, const st_cdc_identity *id);
st_usb_model *st_cdc_acm_usb(st_cdc_acm *d);
/* Let the inner model's time pass with no host traffic (its delayed actions, such as
 * Katapult's reset 100 ms after COMPLETE, happen then): when its next event is due, a
 * zero-capacity tx runs its clock without taking output. Safe from any thread. */
void st_cdc_acm_poll(st_cdc_acm *d);
/* Current line settings as the host last set them. */
void st_cdc_acm_line(const st_cdc_acm *d, st_stream_line *line, int *dtr, int *rts);

#endif
