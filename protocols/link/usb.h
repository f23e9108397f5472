/* USB link: how the DFU engine (and the CDC-ACM helpers) reach a USB device, whatever the
 * backend: libusb (usb_libusb.c) or the in-memory bus of device models (usb_mem.c).
 * Engines see only st_usb_host / st_usb_dev and these functions. */
#ifndef STATION_PROTOCOLS_LINK_USB_H
#define STATION_PROTOCOLS_LINK_USB_H

#include <stddef.h>
#include <stdint.h>

#include "station/core/err.h"
#include "station/core/log.h"

#define ST_USB_PORT_PATH_MAX 32  /* "1-1.2.3": bus, then ports, as dfu-util -p / sysfs */
#define ST_USB_STRING_MAX 128

/* One enumerated device. Strings are as read from the device (UNTRUSTED: sanitise with
 * station/core/text.h before printing or using in a file name). */
typedef struct st_usb_dev_info {
    uint16_t vid, pid;
    uint16_t bcd_device;
    uint8_t bus, address;
    char port_path[ST_USB_PORT_PATH_MAX];
    char manufacturer[ST_USB_STRING_MAX];
    char product[ST_USB_STRING_MAX];
    char serial[ST_USB_STRING_MAX];
} st_usb_dev_info;

/* A USB SETUP packet. */
typedef struct st_usb_setup {
    uint8_t bmRequestType;
    uint8_t bRequest;
    uint16_t wValue;
    uint16_t wIndex;
    uint16_t wLength;
} st_usb_setup;

typedef struct st_usb_dev st_usb_dev;
typedef struct st_usb_host st_usb_host;

/* Backend operations on an open device. Every op returns >= 0 on success or a negative
 * ST_ERR_* (ST_ERR_STALL for a stalled pipe, ST_ERR_DISCONNECT when the device is gone,
 * ST_ERR_TIMEOUT, ST_ERR_PERM, ST_ERR_IO) and fills err. */
typedef struct st_usb_dev_ops {
    /* Control transfer on endpoint 0. data holds wLength bytes (OUT) or receives up to
     * wLength bytes (IN). Returns bytes transferred. */
    int (*control)(st_usb_dev *dev, const st_usb_setup *setup, uint8_t *data,
                   unsigned timeout_ms, st_err *err);
    /* Raw active configuration descriptor (all of it). Returns its length. */
    int (*config_descriptor)(st_usb_dev *dev, uint8_t *buf, size_t cap, st_err *err);
    /* String descriptor index as ASCII (non-ASCII code units become '?'). Returns length. */
    int (*string)(st_usb_dev *dev, uint8_t index, char *buf, size_t cap, st_err *err);
    int (*claim_interface)(st_usb_dev *dev, int iface, st_err *err);
    int (*set_alt)(st_usb_dev *dev, int iface, int alt, st_err *err);
    /* Bulk transfer; endpoint address with 0x80 for IN. Returns bytes moved. */
    int (*bulk)(st_usb_dev *dev, uint8_t ep, uint8_t *data, size_t len, unsigned timeout_ms,
                st_err *err);
    int (*reset)(st_usb_dev *dev, st_err *err);
    void (*close)(st_usb_dev *dev);
} st_usb_dev_ops;

/* Every backend's device handle starts with this header. */
struct st_usb_dev {
    const st_usb_dev_ops *ops;
    st_usb_dev_info info;
};

typedef struct st_usb_host_ops {
    /* Allocate *list (free with free()) with *n entries: every device present now. */
    int (*list)(st_usb_host *host, st_usb_dev_info **list, size_t *n, st_err *err);
    /* Open the device at info->port_path with info->vid:pid (bus/address if non-zero). */
    int (*open)(st_usb_host *host, const st_usb_dev_info *info, st_usb_dev **out, st_err *err);
    void (*free)(st_usb_host *host);
} st_usb_host_ops;

struct st_usb_host {
    const st_usb_host_ops *ops;
    const st_logger *log;
};

/* Thin dispatchers (usb.c). */
int st_usb_host_list(st_usb_host *host, st_usb_dev_info **list, size_t *n, st_err *err);
int st_usb_host_open(st_usb_host *host, const st_usb_dev_info *info, st_usb_dev **out, st_err *err);
void st_usb_host_free(st_usb_host *host);

/* Find a device by VID:PID at a port path (either may be 0/empty = any) and fill *found.
 * Returns 0, or ST_ERR_NOTFOUND, or ST_ERR_BUSY with a message if several match. */
int st_usb_host_find(st_usb_host *host, uint16_t vid, uint16_t pid, const char *port_path,
                     st_usb_dev_info *found, st_err *err);
/* The same, polling until the deadline (a device that is enumerating after a reset). */
int st_usb_host_wait(st_usb_host *host, uint16_t vid, uint16_t pid, const char *port_path,
                     unsigned timeout_ms, st_usb_dev_info *found, st_err *err);

int st_usb_control(st_usb_dev *dev, const st_usb_setup *setup, uint8_t *data,
                   unsigned timeout_ms, st_err *err);
void st_usb_dev_close(st_usb_dev *dev);

/* libusb backend (usb_libusb.c). ctx_owner: the host owns its libusb context. */
int st_usb_host_libusb_new(const st_logger *log, st_usb_host **out, st_err *err);

#endif
