/* Serial ports of USB units: which kernel tty belongs to the USB device at a port path
 * (sysfs), the Klipper-to-Katapult entry requests on a stream (protocols.md 2.7), and the
 * serial host, which opens "the serial port of the unit at port P with id V:P" as a real
 * kernel tty or as a user-space CDC-ACM stream (virtual fixture) behind one interface. */
#ifndef STATION_PROTOCOLS_LINK_SERIAL_PORTS_H
#define STATION_PROTOCOLS_LINK_SERIAL_PORTS_H

#include <stdint.h>

#include "protocols/link/stream.h"
#include "protocols/link/usb.h"
#include "station/core/err.h"

/* ---- kernel tty of a USB device (sysfs) ---- */

typedef struct st_serial_port {
    char tty[32];       /* kernel name: "ttyACM0", "ttyUSB1" */
    char dev_path[96];  /* "<dev_dir>/<tty>", "/dev/ttyACM0" by default */
    uint16_t vid, pid;  /* as read from sysfs idVendor/idProduct */
    int iface;          /* interface number the tty hangs off */
} st_serial_port;

/* Find the tty of the USB device at port_path ("1-1.2", the sysfs device name; only digits,
 * '-' and '.') under sysfs_root (NULL = "/sys"): <root>/bus/usb/devices/<port>/idVendor,
 * idProduct, then the interfaces <port>:<cfg>.<n>/tty/ttyACM* (CDC-ACM) or
 * <port>:<cfg>.<n>/ttyUSB* (USB-UART bridges); the lowest interface number wins.
 * dev_dir NULL = "/dev". vid/pid 0 = any. Returns 0 and fills *out, or
 * ST_ERR_NOTFOUND (no device at the port, or no tty on it), ST_ERR_MISMATCH (another id is
 * at the port: the message names the id seen and the one expected), ST_ERR_INVAL. */
int st_serial_port_find(const char *sysfs_root, const char *dev_dir, const char *port_path,
                        uint16_t vid, uint16_t pid, st_serial_port *out, st_err *err);

/* The same, polling until timeout_ms has passed: a unit that re-enumerates after the
 * 1200-baud touch keeps its port path but changes its id (and /dev/serial/by-id name).
 * On timeout returns the last lookup's code with "after N ms" in the message. */
/* clock: the time the polling runs on (NULL = system; a virtual clock in tests). */
int st_serial_port_wait(const char *sysfs_root, const char *dev_dir, const char *port_path,
                        uint16_t vid, uint16_t pid, unsigned timeout_ms, const st_clock *clock,
                        st_serial_port *out, st_err *err);

/* ---- bootloader entry requests on an open stream (protocols.md 2.7) ---- */

/* The 1200-baud touch as flashtool/flash_usb.py do it: DTR up, line 1200 8N1, DTR down.
 * Klipper's USB CDC code reboots into the bootloader on "1200 baud and DTR clear"; the
 * caller then closes the stream and waits for the unit to re-enumerate. */
int st_serial_touch_1200(st_stream *s, st_err *err);

/* Send flashtool's UART request "~ \x1c Request Serial Bootloader!! ~" (at the line speed
 * the application uses); the caller then waits (flashtool: 1 s) and reopens. */
int st_serial_request_bootloader_uart(st_stream *s, st_err *err);

/* ---- serial host ---- */

typedef struct st_serial_host st_serial_host;

typedef struct st_serial_host_ops {
    int (*open)(st_serial_host *h, const char *port_path, uint16_t vid, uint16_t pid,
                const st_stream_line *line, unsigned timeout_ms, st_stream **out,
                st_err *err);
    void (*free)(st_serial_host *h);
} st_serial_host_ops;

struct st_serial_host {
    const st_serial_host_ops *ops;
    const st_clock *clock; /* waits for a port to appear run on it (NULL = system) */
};

/* Wait for ports on clock (NULL = system; not owned): with a virtual clock a test's unit
 * that re-enumerates "150 ms later" (an alarm on that clock) costs no real time. */
void st_serial_host_set_clock(st_serial_host *h, const st_clock *clock);

/* Real: sysfs lookup (st_serial_port_wait) + st_stream_tty_open, retried until the
 * deadline while udev is still creating or permitting the node. sysfs_root NULL = "/sys".
 * The kernel's cdc_acm stays bound: this is what the real station uses. */
int st_serial_host_tty_new(const char *sysfs_root, st_serial_host **out, st_err *err);
/* The same with another device directory than "/dev" (tests, containers). */
int st_serial_host_tty_new_at(const char *sysfs_root, const char *dev_dir,
                              st_serial_host **out, st_err *err);
/* Virtual or user-space CDC: st_usb_host_wait + st_stream_cdc_open. usb is not owned and
 * must outlive the serial host and every stream it opened. */
int st_serial_host_usb_new(st_usb_host *usb, st_serial_host **out, st_err *err);

/* Open the serial port of the unit at port_path with id vid:pid (0 = any), waiting up to
 * timeout_ms for it to appear. line may be NULL (leave it). *out: st_stream_close. */
int st_serial_host_open(st_serial_host *h, const char *port_path, uint16_t vid, uint16_t pid,
                        const st_stream_line *line, unsigned timeout_ms, st_stream **out,
                        st_err *err);
void st_serial_host_free(st_serial_host *h);

#endif
