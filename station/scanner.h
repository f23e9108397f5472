/* Barcode scanners that are keyboards: the key-to-text decoder (pure, no I/O) and an input
 * device read through libevdev, grabbed so that scans never reach the console.
 *
 * A USB barcode scanner in its default mode is a HID keyboard: it "types" the code and
 * presses Enter. The decoder turns the kernel's key events into text as a US layout
 * keyboard would (letters, digits, punctuation, Shift, Caps Lock; Enter or keypad Enter
 * ends a scan). Events from a device are untrusted: a scan keeps only printable ASCII, at
 * most ST_KEYSCAN_MAX - 1 bytes (a longer one is dropped whole), and a scan the kernel
 * dropped events from (SYN_DROPPED) is dropped too. */
#ifndef STATION_SCANNER_H
#define STATION_SCANNER_H

#include <stdbool.h>
#include <stddef.h>

#include "station/core/err.h"

#define ST_KEYSCAN_MAX 128

/* The decoder's state: plain data, one per device; zero it (or st_keyscan_reset) first. */
typedef struct st_keyscan {
    bool lshift, rshift, caps;
    bool spoiled;              /* the scan so far lost events or ran too long: drop it */
    size_t len;
    char buf[ST_KEYSCAN_MAX];
} st_keyscan;

void st_keyscan_reset(st_keyscan *k);

/* Feed one input event (struct input_event's type, code, value). Returns 1 when it ended a
 * scan and out (cap bytes) holds the code, NUL-terminated, cut to cap - 1 (never empty);
 * 0 otherwise (also for an empty or dropped scan, and when cap < 2). Never fails. */
int st_keyscan_feed(st_keyscan *k, unsigned type, unsigned code, int value, char *out,
                    size_t cap);

/* ---- an evdev device ---- */

typedef struct st_scanner st_scanner;

/* Open the scanner: device is a path (/dev/input/by-id/usb-..-event-kbd, /dev/input/event3)
 * or a device name as the kernel gives it (`cat /proc/bus/input/devices`, N: Name=...), in
 * which case input_dir (NULL: /dev/input) is searched for the event device of that name.
 * The device is grabbed (EVIOCGRAB through libevdev): while it is open no other reader,
 * the console included, sees its keys. 0, ST_ERR_NOTFOUND (no such device), ST_ERR_PERM,
 * ST_ERR_BUSY (another program grabbed it), ST_ERR_INVAL (not a keyboard: no Enter key)
 * or ST_ERR_IO; the error names the device. Free with st_scanner_close. */
int st_scanner_open(const char *device, const char *input_dir, st_scanner **out, st_err *err);

/* The file descriptor to poll for input (readable: call st_scanner_read). */
int st_scanner_fd(const st_scanner *s);

/* The device's path and name (valid until close). */
const char *st_scanner_path(const st_scanner *s);
const char *st_scanner_name(const st_scanner *s);

/* Read what the device has now, without blocking. Returns 1 when a scan ended (out holds it,
 * as st_keyscan_feed), 0 when nothing more is waiting, or ST_ERR_IO (ST_ERR_DISCONNECT
 * when the device went away: unplugged). Call again after a 1: more may be waiting. */
int st_scanner_read(st_scanner *s, char *out, size_t cap, st_err *err);

/* Ungrab and close. NULL ok. */
void st_scanner_close(st_scanner *s);

#endif
