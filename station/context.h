/* The station context: owns the backends a fixture needs (GPIO, USB host) and, for the
 * virtual fixture, the simulated units and the in-memory bus they sit on. The job engine
 * receives only the generic handles and never learns which kind it got. */
#ifndef STATION_CONTEXT_H
#define STATION_CONTEXT_H

#include "fixtures/fixture.h"
#include "fixtures/gpio.h"
#include "protocols/link/can.h"
#include "protocols/link/stream.h"
#include "protocols/link/usb.h"
#include "station/core/err.h"
#include "station/core/log.h"

typedef struct st_ctx st_ctx;

/* Load the fixture at path and open its backends. *out is new: free with st_ctx_close. */
int st_ctx_open(const char *fixture_path, const st_logger *log, st_ctx **out, st_err *err);
void st_ctx_close(st_ctx *c);
/* For a virtual fixture: check what its simulated units are given, as st_ctx_open would
 * build them, without building them: every fault string (protocols/sim/vunit.h), each
 * `holds` image (readable, and fitting the unit MCU's main flash) and the MCU name. The
 * error names the file, line and field:
 *   jig.yaml:14: slots[0].unit.faults[1]: unknown or malformed fault "melt:1" (faults: ...)
 * A real jig's fixture has no units: 0. st_ctx_open runs it first. */
int st_ctx_check_units(const st_fixture *fx, st_err *err);

const st_fixture *st_ctx_fixture(const st_ctx *c);
st_gpio *st_ctx_gpio(st_ctx *c);
st_usb_host *st_ctx_usb(st_ctx *c);
/* The CAN interface named ifname (a fixture slot's can.iface): SocketCAN for a real jig,
 * the in-memory bus for the virtual fixture. Owned by the context (opened on first use). */
int st_ctx_can_iface(st_ctx *c, const char *ifname, st_can_iface **out, st_err *err);
/* How the job engine opens a unit's USB serial port: the kernel tty found through sysfs
 * for a real jig, a CDC-ACM stream over the in-memory USB bus for the virtual fixture. */
typedef struct st_serial_host st_serial_host;
int st_ctx_serial(st_ctx *c, st_serial_host **out, st_err *err);
/* How the job engine opens a slot's UART (st_run_env.uart_open; ctx is the st_ctx): the
 * tty at device for a real jig; for the virtual fixture, a stream to the slot's simulated
 * device on that UART: the unit's own UART on its pty (termios; DTR/RTS, which a pty
 * lacks, reach the unit as its unit.modem wiring says), or its Bluetooth module on
 * module.device. */
int st_ctx_uart_open(void *ctx, const st_fixture_slot *slot, const char *device,
                     const st_stream_line *line, st_stream **out, st_err *err);
/* For the virtual fixture: the simulated unit's state in a slot ("rom-dfu", "app", ...),
 * NULL for a real jig. */
const char *st_ctx_virtual_state(st_ctx *c, int slot_id);
/* For the virtual fixture's simulated operator: put a fresh unit into a slot (unit_no: its
 * number in the shift, 1-based; it gets its own USB serial and the faults of its
 * unit.operator.exceptions entry) or take the unit out (it vanishes from USB and CAN).
 * Thread-safe against slot threads moving pins. */
int st_ctx_virtual_insert(st_ctx *c, int slot_id, unsigned unit_no, st_err *err);
void st_ctx_virtual_remove(st_ctx *c, int slot_id);
/* For the virtual fixture: take the slot's faults away and keep its unit as they left it
 * (its flash, its mode; st_vunit_clear_faults), its module's faults (its baud back to its
 * own, its power back after a power-loss) and the bus-off of its CAN bus too: the same
 * unit, run again without the fault. ST_ERR_NOTFOUND for a slot with
 * no simulated unit. */
int st_ctx_virtual_clear_faults(st_ctx *c, int slot_id, st_err *err);

#endif
