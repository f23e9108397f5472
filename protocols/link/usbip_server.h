/* USB/IP device server: presents an st_usb_model to the local kernel as a real USB device
 * through the vhci-hcd virtual host controller (the kernel-driver rig), so lsusb, libusb,
 * dfu-util and cdc_acm see it. Single-threaded and event-loop friendly: the caller polls
 * the server's fd and calls step; no threads. */
#ifndef STATION_PROTOCOLS_LINK_USBIP_SERVER_H
#define STATION_PROTOCOLS_LINK_USBIP_SERVER_H

#include <poll.h>
#include <stdint.h>

#include "protocols/link/usb_model.h"
#include "station/core/err.h"
#include "station/core/log.h"

typedef struct st_usbip_server st_usbip_server;

/* Where and how to plug the device. Zero-initialised = first free port of vhci_hcd.0 at
 * full speed (the STM32G431's USB is full speed). */
typedef struct st_usbip_opts {
    const char *vhci_dir; /* sysfs dir of the controller; NULL = /sys/devices/platform/vhci_hcd.0 */
    int use_port;         /* 0: first free port of the right hub; else use `port` */
    int port;             /* vhci port number (the first column of <vhci_dir>/status) */
    uint32_t speed;       /* enum usb_device_speed: 1 low, 2 full (0 = full), 3 high */
    uint32_t devid;       /* (busnum << 16) | devnum as reported to the kernel; 0 = derived */
} st_usbip_opts;

/* A server not plugged anywhere yet, for model m (not owned; must outlive the server or
 * the next st_usbip_server_plug). log may be NULL. Free with st_usbip_server_free. */
int st_usbip_server_new(st_usb_model *m, const st_logger *log, st_usbip_server **out,
                        st_err *err);

/* Plug: create a socket pair and hand one end to vhci-hcd ("<port> <fd> <devid> <speed>"
 * written to <vhci_dir>/attach); the kernel then enumerates the model. opts may be NULL
 * (defaults above). m replaces the server's model when non-NULL (a unit that comes back
 * as another device). Needs root and vhci-hcd loaded. ST_ERR_BUSY if already plugged. */
int st_usbip_server_plug(st_usbip_server *s, st_usb_model *m, const st_usbip_opts *opts,
                         st_err *err);

/* Plug onto an already-connected stream socket whose peer speaks the host side of USB/IP
 * (tests play the kernel this way). Takes ownership of fd. m as for _plug. */
int st_usbip_server_plug_fd(st_usbip_server *s, st_usb_model *m, int fd, st_err *err);

/* Unplug (the unit dropped off the bus): detach the vhci port and close the socket.
 * Pending transfers are dropped. No-op when not plugged. */
void st_usbip_server_unplug(st_usbip_server *s);

/* 1 while plugged, 0 after an unplug (by us, by the kernel closing the connection, or by
 * the model returning ST_ERR_DISCONNECT). */
int st_usbip_server_plugged(const st_usbip_server *s);
/* The vhci port in use (-1 when plugged with _plug_fd or not plugged). */
int st_usbip_server_port(const st_usbip_server *s);

/* Event loop: fill pfd with the fd and events to wait for (fd -1 when unplugged), and the
 * longest wait before the next step (-1 = only on fd activity; small while NAKed IN or
 * OUT transfers are pending and the model must be asked again). */
void st_usbip_server_pollfd(const st_usbip_server *s, struct pollfd *pfd);
int st_usbip_server_timeout_ms(const st_usbip_server *s);

/* Handle everything readable now without blocking on input, answer what can be answered,
 * and retry pending bulk/interrupt transfers. Returns 0, or 1 when the device became
 * unplugged during this step (the kernel or the model disconnected), or < 0 on a broken
 * connection or protocol violation (the server is then unplugged). */
int st_usbip_server_step(st_usbip_server *s, st_err *err);

/* Convenience: poll and step for up to ms milliseconds, or until unplugged (returns 1). */
int st_usbip_server_run(st_usbip_server *s, unsigned ms, st_err *err);

/* Counters for tests and logs. */
typedef struct st_usbip_stats {
    uint64_t submits;   /* CMD_SUBMIT received */
    uint64_t unlinks;   /* CMD_UNLINK received */
    uint64_t control;   /* control transfers answered */
    uint64_t stalls;    /* transfers answered with -EPIPE */
    uint64_t bulk_in_bytes, bulk_out_bytes;
} st_usbip_stats;
void st_usbip_server_stats(const st_usbip_server *s, st_usbip_stats *out);

/* Unplugs if needed and frees. NULL is a no-op. */
void st_usbip_server_free(st_usbip_server *s);

#endif
