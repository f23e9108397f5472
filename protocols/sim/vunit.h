/* A virtual unit: one simulated STM32G431 board behind a jig slot. It owns the unit's flash
 * and its device models (ROM DFU, Katapult, Klipper application) and boots exactly as the
 * board would when its pins change: NRST released with BOOT0 high -> ROM DFU on its USB
 * port; BOOT0 low -> the code in flash (Katapult, which starts the application), or the
 * ROM when main flash is empty (the G4's PEMPTY rule). The ROM also answers AN3155 on the
 * unit's UART, where UART builds of Katapult and of the application show too. The flash
 * persists across reboots.
 * The same object serves the virtual fixture, tests and the kernel-driver rig: it only
 * attaches models to and detaches them from a USB attach point. Thread-safe. */
#ifndef STATION_PROTOCOLS_SIM_VUNIT_H
#define STATION_PROTOCOLS_SIM_VUNIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocols/link/can_model.h"
#include "protocols/link/usb_model.h"
#include "protocols/sim/flash.h"
#include "station/core/err.h"
#include "station/core/mcu.h"

/* Where the unit's USB face appears. attach/detach are called with the vunit's lock held
 * (a reboot swaps faces atomically): they must not call back into this vunit. They may be
 * called from inside a model's own request (a DFU leave, a 1200-baud touch). */
typedef struct st_vunit_usb_port {
    int (*attach)(void *ctx, st_usb_model *m, st_err *err);
    void (*detach)(void *ctx);
    void *ctx;
} st_vunit_usb_port;

/* Where the unit's CAN face appears (CAN units only). Same rules as the USB port; also
 * called from inside the bus's own node callbacks (st_vcan_attach/detach allow that). */
typedef struct st_vunit_can_port {
    int (*attach)(void *ctx, st_can_node *n, st_err *err);
    void (*detach)(void *ctx, st_can_node *n);
    void *ctx;
} st_vunit_can_port;

/* Longest USB serial a unit reports (its ROM DFU model's limit). */
#define ST_VUNIT_SERIAL_MAX 15

/* Physical pin levels at the MCU: BOOT0 (1 = ROM), NRST (0 = held in reset), power
 * (1 = powered). Edges drive the boot logic. */
typedef enum st_vunit_pin { ST_VUNIT_BOOT0, ST_VUNIT_NRST, ST_VUNIT_POWER } st_vunit_pin;

/* What one modem line of the unit's UART is wired to on the board (many boards drive RESET
 * and BOOT0 from the USB-serial adapter's DTR and RTS through transistors, the wiring
 * stm32flash's `-i rts,-dtr,dtr` strings assume). The line's level as the host sets it (1 =
 * `dtr`/TIOCMBIS, 0 = `-dtr`/TIOCMBIC) drives the pin, inverted when `inverted` is set: the
 * pin is the same input st_vunit_set_pin drives (BOOT0 = the boot-select line, NRST). */
typedef struct st_vunit_wire {
    bool present;
    st_vunit_pin pin;            /* ST_VUNIT_BOOT0 or ST_VUNIT_NRST */
    bool inverted;               /* pin = !line */
} st_vunit_wire;

typedef struct st_vunit_config {
    const st_mcu *mcu;
    st_timing_profile timing;
    const char *dfu_serial;      /* NULL: model default; at most ST_VUNIT_SERIAL_MAX chars */
    bool can_transport;          /* images that do not say: the app and Katapult speak CAN */
    /* images that do not say: the app and Katapult are UART builds on the unit's UART (the
     * USART the ROM's AN3155 bootloader uses; st_vunit_uart): the app answers Klipper's
     * serial bootloader request string, Katapult its protocol, at whatever baud is set */
    bool uart_transport;
    uint8_t can_uuid[6];         /* the unit's CAN UUID (CAN units) */
    const uint8_t *holds;        /* flash contents at arrival (copied), NULL = erased */
    size_t holds_len;
    uint32_t holds_addr;
    const char *const *faults;   /* fault strings (see st_vunit_apply_fault) */
    size_t n_faults;
    /* The board drives BOOT0 through an inverter (seed 002's Neptune 4 guide: the ROM is
     * entered when the boot-select line is low during reset). */
    bool boot_select_low;
    /* The UART is served on a pty, which cannot carry parity: the ROM model takes 8N1. */
    bool uart_on_pty;
    /* Modem lines of the UART wired to the boot pins (absent: the lines reach nothing). */
    st_vunit_wire dtr, rts;
} st_vunit_config;

typedef struct st_vunit st_vunit;

/* Ports are copied; can may be NULL for a USB unit. The unit starts powered with BOOT0 low
 * and NRST high, so it boots at once (a fresh, empty unit shows up in ROM DFU). */
int st_vunit_new(const st_vunit_config *cfg, const st_vunit_usb_port *usb,
                 const st_vunit_can_port *can, st_vunit **out, st_err *err);
void st_vunit_free(st_vunit *u);

void st_vunit_set_pin(st_vunit *u, st_vunit_pin pin, int level);

/* The unit's UART (USART1 on the boot pins' ROM path): while the ROM runs, its AN3155
 * bootloader answers here (8E1, like the chip; a Go or a reset swaps the face as the pins
 * and the flash say); otherwise the line is silent. The stream model belongs to the unit
 * (for st_stream_mem_open or a pty server); NULL when the MCU has no AN3155 table row.
 * Calls into it take the unit's lock. Its line() op also carries the host's DTR/RTS
 * (-1 = unchanged): with cfg.dtr/cfg.rts wired, a level reaches the pin as the board's
 * transistors would pass it (a DTR pulse resets the unit; the RTS level during the reset
 * picks the ROM), exactly like st_vunit_set_pin. The in-memory stream and the CDC-ACM
 * adapter model (SET_CONTROL_LINE_STATE) deliver them; a pty cannot (it has no modem
 * lines), so the virtual fixture hands them over itself (station/context.c). */
st_stream_model *st_vunit_uart(st_vunit *u);

/* "off", "reset", "rom-dfu", "katapult", "app", "crashed" (no valid code ran). */
const char *st_vunit_state(st_vunit *u);
st_flash *st_vunit_flash(st_vunit *u);
/* How many times the unit booted (any mode). */
unsigned st_vunit_boots(st_vunit *u);

/* Fault strings, as fixture files give them (test_vunit_faults.c shows each firing):
 *   dfu-start-error            the ROM enumerates in dfuERROR
 *   dfu-transfer-size:N        wTransferSize N (64..4096; only in st_vunit_config)
 *   dfu-stall:N                stall the Nth DFU class request
 *   dfu-disconnect:N           vanish after N DFU class requests (once: the next reset
 *                              brings the ROM back)
 *   dfu-leave:stall|vanish|stall-dnload   the leave request is not answered
 *   corrupt-page:ADDR          flip a bit in that page after it is programmed
 *   prog-error:ADDR            programming that page fails (errPROG)
 *   slow-erase:FACTOR          erases take FACTOR times longer
 *   power-loss:BYTES           power is lost after BYTES more programmed bytes (counted
 *                              from when it is given, across resets, until it fires)
 *   katapult-power-loss:N      power is lost while Katapult writes its Nth block from now
 *   katapult-drop-rx:N / katapult-drop-tx:N / katapult-corrupt-rx:N / katapult-corrupt-tx:N
 *                              lose or damage the Nth Katapult frame (host->unit / unit->host)
 *   katapult-nack-storm:K      answer the next K Katapult frames with NACK
 *   katapult-silent-complete   no answer to COMPLETE (the unit still starts its app)
 *   katapult-mcu:NAME          Katapult's CONNECT reports MCU NAME (another board in the
 *                              jig; only in st_vunit_config)
 *   can-bus-off                (fixtures only) the unit's virtual CAN bus is bus-off
 *   rdp                        readout protection is on (the AN3155 ROM refuses reads)
 *   uart-nack:N / uart-silent:N / uart-noise-rx:N / uart-noise-tx:N / uart-late-start:MS
 *                              AN3155 ROM faults (see an3155_model.h)
 *   klipper-sensor:stuck|normal  cartographer_data repeats one value / varies with noise
 *   klipper-temp:N             cartographer_data's temp is N (e.g. out of range)
 *   klipper-drop:N             every Nth cartographer_data is lost (N >= 2)
 *   klipper-bad-crc:N          every Nth block the application sends has a bad CRC
 *   klipper-silent             the application receives and answers nothing
 * Katapult faults and power-loss fire once: a reboot after they fired disarms them;
 * klipper-* faults last. N and K count from 1; ADDR must lie in the MCU's main flash.
 *
 * What boots is what the flash holds (design.md 5). Code runs only where its vector table
 * says it is linked (an application written at the start of flash does not boot: no face,
 * only BOOT0 + ROM DFU reach the unit). Katapult ("CanBoot!" mark) shows USB-CDC when its
 * build carries a USB device descriptor, else CAN. The application answers the Klipper
 * protocol with the dictionary its image embeds and shows the face that dictionary names
 * (USB build: USB-CDC; CAN build: a Klipper CAN node), whatever the fixture says. On USB it
 * enumerates with the device descriptor its image embeds (VID:PID, release, and the
 * manufacturer/product/serial strings stored behind it; a serial made from the chip at run
 * time is the unit's own), and with the MCU table's Klipper id (1d50:614e) only when the
 * image carries none; an image with a descriptor and no dictionary is a USB build.
 * An image without a dictionary (the station's synthetic images) shows the face of
 * can_transport (or uart_transport), for Katapult and application alike, and its
 * application answers only the bootloader requests. */
int st_vunit_apply_fault(st_vunit *u, const char *fault, st_err *err);

/* Disarm every fault the unit was given (or that is still pending: a NACK storm's rest, a
 * stall not yet reached), leaving the unit as the faults left it: its flash, its mode (a
 * unit sitting in Katapult stays there), a power loss that happened (until the next reset
 * or power-on, as before). Readout protection, which is the chip's state rather than an
 * event, is turned off too (as an operator's unprotect would). katapult-mcu and
 * dfu-transfer-size are properties of the unit and stay. The fault matrix's rerun "without
 * the fault" (hil-tests/e2e/test_e2e_faults.c) starts here. */
void st_vunit_clear_faults(st_vunit *u);

/* Whether st_vunit_new would take this fault string for a unit with this MCU, without
 * making one: 0, or ST_ERR_INVAL with a message that quotes it and lists the faults.
 * (can-bus-off is not a unit fault: the fixture's context handles it.) */
int st_vunit_check_fault(const char *fault, const st_mcu *mcu, st_err *err);
/* Whether a `holds` image of len bytes at addr fits the MCU's main flash: 0 or
 * ST_ERR_INVAL saying where the flash is. st_vunit_new refuses one that does not. */
int st_vunit_check_holds(const st_mcu *mcu, uint32_t addr, size_t len, st_err *err);

#endif
