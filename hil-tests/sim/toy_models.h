/* Small device models of our own for proving the rig's plumbing before (and besides) the
 * real protocol models: a vendor-class USB loopback device, a CAN echo node, and an
 * upper-casing byte-stream echo. station-sim serves them with --model loopback/echo. */
#ifndef STATION_HIL_SIM_TOY_MODELS_H
#define STATION_HIL_SIM_TOY_MODELS_H

#include <stddef.h>
#include <stdint.h>

#include "protocols/link/can_model.h"
#include "protocols/link/stream.h"
#include "protocols/link/usb_model.h"

/* USB loopback: 1209:0001 (pid.codes test PID), vendor class, strings "Station",
 * "station-sim loopback", serial as given. Bulk OUT 0x01 -> bulk IN 0x81 echo (up to 4 KiB
 * buffered, OUT NAKs when full); interrupt IN 0x82 NAKs forever (like a CDC notification
 * endpoint); vendor request 0x01 OUT stores up to 64 bytes that 0x02 IN reads back. */
typedef struct st_toy_usb st_toy_usb;
#define ST_TOY_USB_VID 0x1209
#define ST_TOY_USB_PID 0x0001
st_toy_usb *st_toy_usb_new(const char *serial); /* NULL on no memory; serial copied */
void st_toy_usb_free(st_toy_usb *t);
st_usb_model *st_toy_usb_model(st_toy_usb *t);

/* CAN echo node: every frame it receives comes back on id + 1 (wrapping within 11 bits),
 * same data; counts and remembers the last frame received. */
typedef struct st_toy_can {
    st_can_node base;
    st_can_frame q[32];
    size_t qn;
    uint64_t rx_count;
    st_can_frame last_rx;
} st_toy_can;
void st_toy_can_init(st_toy_can *n);

/* Stream echo: returns what it receives, ASCII letters upper-cased; remembers the last
 * line settings the host chose. */
typedef struct st_toy_stream {
    st_stream_model base;
    uint8_t buf[4096];
    size_t n;
    st_stream_line line;
    unsigned line_changes;
} st_toy_stream;
void st_toy_stream_init(st_toy_stream *s);

#endif
