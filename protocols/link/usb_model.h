/* Device side of USB: what a device model implements so the in-memory bus (usb_mem.c)
 * and the USB/IP server can present it as a device. One model serves unit tests, the
 * virtual fixture, benchmarks and the kernel-driver rig. */
#ifndef STATION_PROTOCOLS_LINK_USB_MODEL_H
#define STATION_PROTOCOLS_LINK_USB_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "protocols/link/usb.h"

typedef struct st_usb_model st_usb_model;

typedef struct st_usb_model_ops {
    /* Every control request, standard ones included (GET_DESCRIPTOR, SET_CONFIGURATION,
     * SET_INTERFACE, GET_STATUS...). IN: write up to setup->wLength bytes to data, return
     * the count. OUT: data holds setup->wLength bytes; return 0. Return ST_ERR_STALL to
     * stall, ST_ERR_DISCONNECT when the device has dropped off the bus mid-request.
     * A model with a timing profile may block here for the time the device would take. */
    int (*control)(st_usb_model *m, const st_usb_setup *setup, uint8_t *data);
    /* Bulk OUT to ep: returns bytes accepted (0 = NAK). NULL if the model has no bulk. */
    int (*bulk_out)(st_usb_model *m, uint8_t ep, const uint8_t *data, size_t len);
    /* Bulk IN from ep (0x80 set): returns bytes (0 = NAK, nothing to send). */
    int (*bulk_in)(st_usb_model *m, uint8_t ep, uint8_t *buf, size_t cap);
    /* Optional: when a bulk IN on ep that was just NAKed will have data without new input
     * (st_now_us time; UINT64_MAX = not without new input). The in-memory bus then retries
     * at that moment instead of polling, as a host controller's retries would catch it. */
    uint64_t (*next_in_us)(st_usb_model *m, uint8_t ep);
} st_usb_model_ops;

struct st_usb_model {
    const st_usb_model_ops *ops;
};

/* Standard descriptor tables a model can hand to st_usb_model_std_control. */
typedef struct st_usb_model_desc {
    const uint8_t *device;        /* 18-byte device descriptor */
    const uint8_t *config;        /* full configuration descriptor */
    size_t config_len;
    const char *const *strings;   /* strings[i] is string index i+1 (ASCII, UTF-16LE on wire) */
    size_t nstrings;
} st_usb_model_desc;

/* Answer the standard requests (GET_DESCRIPTOR device/config/string incl. LANGID,
 * SET_CONFIGURATION, SET_ADDRESS, GET_STATUS, SET_INTERFACE recorded in *alt_out if
 * non-NULL). Returns >= 0 / ST_ERR_STALL as control() would, or ST_ERR_UNSUPPORTED when
 * the request is not a standard one (the model then handles it itself). */
int st_usb_model_std_control(const st_usb_model_desc *desc, const st_usb_setup *setup,
                             uint8_t *data, int *alt_out);

/* Read the identity of a model through its own GET_DESCRIPTOR answers (vid, pid,
 * bcdDevice, strings). port_path/bus/address are left as they are in *info. */
int st_usb_model_describe(st_usb_model *m, st_usb_dev_info *info);

/* In-memory USB bus: named ports that models are attached to and detached from
 * (a unit rebooting). Thread-safe. A device handle opened on a port fails with
 * ST_ERR_DISCONNECT once its model is detached, as a real unplug would. */
typedef struct st_vusb_bus st_vusb_bus;

st_vusb_bus *st_vusb_bus_new(void);
void st_vusb_bus_free(st_vusb_bus *bus);
/* Attach a model (not owned) at port_path, replacing nothing: the port must be empty. */
int st_vusb_attach(st_vusb_bus *bus, const char *port_path, st_usb_model *m, st_err *err);
/* Detach whatever is at port_path (no-op when empty). */
void st_vusb_detach(st_vusb_bus *bus, const char *port_path);
/* A host backend over this bus (the bus must outlive it). */
int st_usb_host_mem_new(st_vusb_bus *bus, const st_logger *log, st_usb_host **out, st_err *err);

#endif
