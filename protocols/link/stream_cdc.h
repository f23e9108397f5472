/* Byte stream (st_stream) over a USB CDC-ACM device driven from user space through the USB
 * link (usb.h): the in-memory bus of device models, or libusb. Over libusb, claiming the
 * interfaces detaches the kernel's cdc_acm driver from the unit for as long as the stream is
 * open; the real station therefore prefers the kernel tty (serial_ports.h,
 * st_serial_host_tty_new) and uses this backend for the virtual fixture and for hosts
 * without cdc_acm. */
#ifndef STATION_PROTOCOLS_LINK_STREAM_CDC_H
#define STATION_PROTOCOLS_LINK_STREAM_CDC_H

#include <stddef.h>
#include <stdint.h>

#include "protocols/link/stream.h"
#include "protocols/link/usb.h"

/* Where the serial function of a device lives, as found in its configuration descriptor. */
typedef struct st_cdc_layout {
    int comm_iface;     /* CDC communication interface (class 02, subclass 02 ACM) */
    int data_iface;     /* CDC data interface (class 0A) */
    int data_alt;       /* alternate setting of the data interface holding the bulk pair */
    uint8_t ep_in;      /* bulk IN endpoint address (0x80 set) */
    uint8_t ep_out;     /* bulk OUT endpoint address */
    uint16_t max_packet_in;
} st_cdc_layout;

/* Parse a raw configuration descriptor (UNTRUSTED bytes from the unit): the first ACM
 * communication interface, its data interface (from the union functional descriptor, else
 * the first data-class interface) and that interface's bulk pair. Returns 0,
 * ST_ERR_UNSUPPORTED when the device has no CDC-ACM function, ST_ERR_PROTO for a malformed
 * descriptor. */
int st_cdc_parse_config(const uint8_t *desc, size_t len, st_cdc_layout *out, st_err *err);

/* Open the device described by dev (port path, and VID:PID when non-zero) on host, claim
 * its CDC interfaces, raise DTR and RTS as the kernel's tty open does, and apply line (NULL:
 * leave the device's line coding as it is). *out is closed with st_stream_close, which also
 * closes the USB device. host must outlive the stream. Errors: ST_ERR_NOTFOUND,
 * ST_ERR_UNSUPPORTED (not CDC-ACM), ST_ERR_DISCONNECT, ST_ERR_PERM, ST_ERR_BUSY, ... */
int st_stream_cdc_open(st_usb_host *host, const st_usb_dev_info *dev,
                       const st_stream_line *line, st_stream **out, st_err *err);

#endif
