/* Station context: backends per fixture; the virtual fixture's units and bus. */
#include "station/context.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixtures/slot.h"
#include "protocols/link/can_model.h"
#include "protocols/link/pty_server.h"
#include "protocols/link/serial_ports.h"
#include "protocols/link/usb_model.h"
#include "protocols/bgapi/bgapi_model.h"
#include "protocols/bgapi/gbl.h"
#include "protocols/canadmin/canadmin.h"
#include "protocols/sim/synth.h"
#include "protocols/sim/vunit.h"
#include "station/core/image.h"
#include "station/core/text.h"
#include "station/core/yamldoc.h"

/* One simulated unit and the slot it sits in. */
typedef struct vslot {
    st_ctx *ctx;
    const st_fixture_slot *fs;
    st_vunit *unit;
    st_pty_server *uart; /* the unit's UART on a pty (slots with serial), else NULL */
    /* The board's Bluetooth module on the slot's module UART (unit.module), with its own
     * flash. Driven by one run (thread) at a time, through the in-memory stream. */
    st_flash *mflash;
    st_bgapi_model *module;
} vslot;

/* A CAN interface in use: a real one, or an in-memory bus for the virtual fixture. */
typedef struct can_if {
    char name[32];
    st_can_iface *iface;
    st_vcan_bus *bus; /* virtual only */
} can_if;

#define MAX_CAN_IFS 8

struct st_ctx {
    st_fixture *fx;
    const st_logger *log;
    st_serial_host *serial;
    can_if cans[MAX_CAN_IFS];
    size_t ncans;
    st_gpio *gpio;
    st_usb_host *usb;
    st_vusb_bus *vbus;
    vslot *vslots;
    size_t nvslots;
    /* Guards each vslot's unit pointer: a simulated operator puts units in and takes them
     * out while slot threads move pins. */
    pthread_mutex_t vlock;
    /* One thread serves the virtual units' UART ptys (the station opens them through its
     * real termios backend, as it would a jig's UART). */
    pthread_t uart_thread;
    bool uart_running;
    atomic_bool uart_stop;
};

#define MAX_UART_PTYS 64

static void *serve_uarts(void *arg)
{
    st_ctx *c = arg;
    while (!atomic_load(&c->uart_stop)) {
        struct pollfd p[MAX_UART_PTYS];
        st_pty_server *srv[MAX_UART_PTYS];
        size_t n = 0;
        int t = 50;
        for (size_t i = 0; i < c->nvslots && n < MAX_UART_PTYS; i++) {
            if (!c->vslots[i].uart)
                continue;
            srv[n] = c->vslots[i].uart;
            st_pty_server_pollfd(srv[n], &p[n]);
            int ti = st_pty_server_timeout_ms(srv[n]);
            if (ti >= 0 && ti < t)
                t = ti;
            n++;
        }
        (void)poll(p, n, t);
        for (size_t i = 0; i < n; i++)
            (void)st_pty_server_step(srv[i], NULL);
    }
    return NULL;
}

/* A virtual slot whose serial.device is "pty" gets its unit's UART on a fresh pty, and the
 * device becomes the pty's path. Any other device is left alone (a test may serve its own
 * model there). */
static int open_uart(st_ctx *c, vslot *v, st_fixture_slot *fs, const st_logger *log,
                     st_err *err)
{
    st_stream_model *m = st_vunit_uart(v->unit);
    if (!fs->serial.present || strcmp(fs->serial.device, "pty") != 0)
        return 0;
    if (!m)
        return st_err_set(err, ST_ERR_INVAL, "%s: slot %d: serial.device pty: the unit's MCU "
                          "has no AN3155 bootloader model", c->fx->path, fs->id);
    int rc = st_pty_server_new(m, log, &v->uart, err);
    if (rc == 0)
        st_strlcpy(fs->serial.device, st_pty_server_path(v->uart), sizeof fs->serial.device);
    if (rc)
        return st_err_wrap(err, rc, "%s: slot %d: serial", c->fx->path, fs->id);
    return 0;
}

static int vport_attach(void *ctx, st_usb_model *m, st_err *err)
{
    vslot *v = ctx;
    return st_vusb_attach(v->ctx->vbus, v->fs->usb_port, m, err);
}

static void vport_detach(void *ctx)
{
    vslot *v = ctx;
    st_vusb_detach(v->ctx->vbus, v->fs->usb_port);
}

static int virtual_bus(st_ctx *c, const char *name, uint32_t bitrate, st_timing_profile timing,
                       st_vcan_bus **out, st_err *err);

static int vcan_attach(void *ctx, st_can_node *n, st_err *err)
{
    vslot *v = ctx;
    st_vcan_bus *bus;
    int rc = virtual_bus(v->ctx, v->fs->can.iface, v->fs->can.bitrate, ST_TIMING_NONE, &bus, err);
    return rc < 0 ? rc : st_vcan_attach(bus, n, err);
}

static void vcan_detach(void *ctx, st_can_node *n)
{
    vslot *v = ctx;
    st_vcan_bus *bus;
    if (virtual_bus(v->ctx, v->fs->can.iface, v->fs->can.bitrate, ST_TIMING_NONE, &bus, NULL) == 0)
        st_vcan_detach(bus, n);
}

static bool line_is(const st_fixture_line *l, const st_gpio_transition *ev)
{
    if (!l->present)
        return false;
    if (l->name[0])
        return strcmp(l->name, ev->name) == 0;
    return l->offset == ev->offset;
}

/* The virtual jig wires each slot's lines straight to its unit's pins: the unit sees the
 * physical level (active_low in the fixture is the jig's business, as on a real board). */
static void on_gpio(void *ctx, const st_gpio_transition *ev)
{
    st_ctx *c = ctx;
    pthread_mutex_lock(&c->vlock);
    for (size_t i = 0; i < c->nvslots; i++) {
        const st_fixture_slot *fs = c->vslots[i].fs;
        st_vunit *u = c->vslots[i].unit;
        if (!u)
            continue;
        if (line_is(&fs->lines[ST_LINE_BOOT0], ev))
            st_vunit_set_pin(u, ST_VUNIT_BOOT0, ev->level);
        else if (line_is(&fs->lines[ST_LINE_RESET], ev))
            st_vunit_set_pin(u, ST_VUNIT_NRST, ev->level);
        else if (line_is(&fs->lines[ST_LINE_POWER], ev))
            st_vunit_set_pin(u, ST_VUNIT_POWER, ev->level);
    }
    pthread_mutex_unlock(&c->vlock);
}

_Static_assert(sizeof(((st_fixture_unit *)0)->serial) == ST_VUNIT_SERIAL_MAX + 1,
               "the fixture's serial limit is the unit model's");

/* The image a slot's unit holds at arrival (NULL when it arrives erased). */
static int load_holds(const st_fixture *fx, const st_fixture_slot *fs, const st_mcu *mcu,
                      st_image **out, st_err *err)
{
    const st_fixture_unit *fu = &fs->unit;
    *out = NULL;
    uint64_t seed;
    int rc = 0;
    if (strncmp(fu->holds, "synthetic:", 10) == 0 && st_parse_u64(fu->holds + 10, &seed)) {
        uint8_t *img = NULL;
        rc = st_synth_combined_seeded(mcu, ST_SYNTH_DEFAULT_SIZE, (uint32_t)seed, &img, err);
        if (!rc)
            rc = st_image_from_memory(fu->holds, img, ST_SYNTH_DEFAULT_SIZE, mcu->flash_start,
                                      out, err);
        free(img);
    } else if (fu->holds[0]) {
        rc = st_image_load(fu->holds, fu->holds_addr, out, err);
    }
    return rc;
}

int st_ctx_check_units(const st_fixture *fx, st_err *err)
{
    if (fx->backend != ST_GPIO_BACKEND_VIRTUAL)
        return 0;
    for (size_t i = 0; i < fx->n_slots; i++) {
        const st_fixture_slot *fs = &fx->slots[i];
        const st_fixture_unit *fu = &fs->unit;
        const char *mcu_name = fu->present ? fu->mcu : ST_FIXTURE_DEFAULT_UNIT_MCU;
        const st_mcu *mcu = st_mcu_find(mcu_name);
        if (!mcu)
            return st_err_set(err, ST_ERR_INVAL, "%s:%u: slots[%zu].unit.mcu: unknown MCU \"%s\"",
                              fx->path, fs->yaml_line, i, mcu_name);
        bool can = fu->transport == ST_UNIT_TRANSPORT_CAN;
        for (size_t k = 0; k < fu->n_faults; k++) {
            int rc = 0;
            if (strcmp(fu->faults[k], "can-bus-off") == 0) {
                if (!can)
                    rc = st_err_set(err, ST_ERR_INVAL, "can-bus-off needs a CAN unit "
                                    "(unit.transport: can) on the slot's can.iface");
            } else {
                rc = st_vunit_check_fault(fu->faults[k], mcu, err);
            }
            if (rc)
                return st_err_wrap(err, rc, "%s:%u: slots[%zu].unit.faults[%zu]", fx->path,
                                   fu->fault_lines[k], i, k);
        }
        if (fu->module.n_faults) {
            /* The Bluetooth module's faults, tried on a model made for the purpose. */
            st_flash *mf = st_flash_new(st_mcu_find("efr32bg13p632f512"), ST_TIMING_NONE);
            st_bgapi_model_cfg mc = { .gen = ST_BGAPI_GEN_GSDK4 };
            st_bgapi_model *m = mf ? st_bgapi_model_new(mf, &mc) : NULL;
            int rc = m ? 0 : st_err_set(err, ST_ERR_NOMEM, "out of memory");
            size_t k = 0;
            for (; rc == 0 && k < fu->module.n_faults; k++)
                rc = st_bgapi_model_apply_fault(m, fu->module.faults[k], err);
            st_bgapi_model_free(m);
            st_flash_free(mf);
            if (rc)
                return st_err_wrap(err, rc, "%s:%u: slots[%zu].unit.module.faults[%zu]",
                                   fx->path, k ? fu->module.fault_lines[k - 1] : fs->yaml_line,
                                   i, k ? k - 1 : 0);
        }
        st_image *holds = NULL;
        int rc = load_holds(fx, fs, mcu, &holds, err);
        if (!rc && holds)
            rc = st_vunit_check_holds(mcu, holds->load_addr, holds->size, err);
        st_image_free(holds);
        if (rc)
            return st_err_wrap(err, rc, "%s:%u: slots[%zu].unit.holds", fx->path, fu->holds_line, i);
    }
    return 0;
}

/* The slot's simulated Bluetooth module (fixture unit.module). */
static int open_virtual_module(st_ctx *c, vslot *v, st_err *err)
{
    const st_fixture_slot *fs = v->fs;
    const st_fixture_unit *fu = &fs->unit;
    unsigned a = 1, b = 0, d = 0;
    if (fu->module.stack[0])
        sscanf(fu->module.stack, "%u.%u.%u", &a, &b, &d);
    st_bgapi_model_cfg mc = {
        .gen = fu->module.gsdk3 ? ST_BGAPI_GEN_SDK2 : ST_BGAPI_GEN_GSDK4,
        .baud = fu->module.baud ? fu->module.baud : fs->module.baud,
        .flow_control = fu->module.flow_control,
        .no_app = fu->module.empty,
        .app_version = st_gbl_stack_version(a, b, d, 1),
        .require_signed = fu->module.require_signed,
    };
    v->mflash = st_flash_new(st_mcu_find("efr32bg13p632f512"),
                             fu->timing == ST_UNIT_TIMING_DATASHEET ? ST_TIMING_DATASHEET
                                                                    : ST_TIMING_NONE);
    v->module = v->mflash ? st_bgapi_model_new(v->mflash, &mc) : NULL;
    if (!v->module)
        return st_err_set(err, ST_ERR_NOMEM, "%s: slot %d: unit.module: out of memory",
                          c->fx->path, fs->id);
    for (size_t f = 0; f < fu->module.n_faults; f++) {
        int rc = st_bgapi_model_apply_fault(v->module, fu->module.faults[f], err);
        if (rc)
            return st_err_wrap(err, rc, "%s: slot %d: unit.module.faults[%zu]", c->fx->path,
                                 fs->id, f);
    }
    return 0;
}

/* unit.modem's wiring as the unit model takes it. */
static st_vunit_wire wire_of(st_unit_wire w)
{
    st_vunit_wire v = { .present = w != ST_UNIT_WIRE_NONE,
                        .pin = w == ST_UNIT_WIRE_BOOT0 || w == ST_UNIT_WIRE_BOOT0_INV
                                   ? ST_VUNIT_BOOT0 : ST_VUNIT_NRST,
                        .inverted = w == ST_UNIT_WIRE_RESET_INV || w == ST_UNIT_WIRE_BOOT0_INV };
    return v;
}

/* A fresh simulated unit in slot v: the fixture's unit, and for unit number unit_no (1, 2,
 * ... of a simulated shift; 0 otherwise) its own serial and its exceptions' faults. */
static int make_unit(st_ctx *c, vslot *v, unsigned unit_no, st_err *err)
{
    const st_fixture_slot *fs = v->fs;
    const st_fixture_unit *fu = &fs->unit;
    int rc;
    char serial[64];
    st_strlcpy(serial, fu->serial, sizeof serial);
    if (unit_no)
        snprintf(serial, sizeof serial, "%.6s%02X%04X", fu->serial[0] ? fu->serial : "5E5510",
                 (unsigned)fs->id & 0xFFu, unit_no & 0xFFFFu);
    st_vunit_config cfg = {
        .mcu = st_mcu_find(fu->present ? fu->mcu : "stm32g431xx"),
        .timing = fu->timing == ST_UNIT_TIMING_DATASHEET ? ST_TIMING_DATASHEET : ST_TIMING_NONE,
        .dfu_serial = serial[0] ? serial : NULL,
        .can_transport = fu->transport == ST_UNIT_TRANSPORT_CAN,
        .uart_transport = fu->transport == ST_UNIT_TRANSPORT_UART,
        .boot_select_low = fu->boot_select_low,
        .uart_on_pty = fs->serial.present && strcmp(fs->serial.device, "pty") == 0,
        .dtr = wire_of(fu->modem_dtr),
        .rts = wire_of(fu->modem_rts),
    };
    if (fu->can_uuid[0]) {
        st_can_uuid uuid;
        rc = st_can_uuid_parse(fu->can_uuid, &uuid, err);
        if (rc)
            return st_err_wrap(err, rc, "%s: slot %d: unit.can_uuid", c->fx->path, fs->id);
        memcpy(cfg.can_uuid, uuid.b, 6);
    }
    if (cfg.can_transport && !fs->can.present)
        return st_err_set(err, ST_ERR_INVAL, "%s: slot %d: a CAN unit needs the slot's can.iface",
                          c->fx->path, fs->id);
    st_vcan_bus *bus = NULL;
    if (cfg.can_transport &&
        (rc = virtual_bus(c, fs->can.iface, fs->can.bitrate, cfg.timing, &bus, err)) < 0)
        return st_err_wrap(err, rc, "%s: slot %d", c->fx->path, fs->id);
    /* "can-bus-off" is a fault of the bus the unit sits on, not of the unit. */
    const char *unit_faults[128];
    size_t nuf = 0;
    const st_fixture_shift_unit *x = NULL;
    for (size_t k = 0; unit_no && k < fu->operator.n_exceptions; k++)
        if (fu->operator.exceptions[k].unit == unit_no)
            x = &fu->operator.exceptions[k];
    for (size_t f = 0; f < fu->n_faults + (x ? x->n_faults : 0) && nuf < 128; f++) {
        const char *fault = f < fu->n_faults ? fu->faults[f] : x->faults[f - fu->n_faults];
        if (strcmp(fault, "can-bus-off") == 0 && bus)
            st_vcan_fault_bus_off(bus, true);
        else
            unit_faults[nuf++] = fault;
    }
    cfg.faults = unit_faults;
    cfg.n_faults = nuf;
    if (!cfg.mcu)
        return st_err_set(err, ST_ERR_INVAL, "%s: slot %d: unknown unit MCU \"%s\"",
                          c->fx->path, fs->id, fu->mcu);
    st_image *holds = NULL;
    rc = load_holds(c->fx, fs, cfg.mcu, &holds, err);
    if (rc)
        return st_err_wrap(err, rc, "%s:%u: slots[%zu].unit.holds", c->fx->path, fu->holds_line,
                           (size_t)(fs - c->fx->slots));
    if (holds) {
        cfg.holds = holds->data;
        cfg.holds_len = holds->size;
        cfg.holds_addr = holds->load_addr;
    }
    st_vunit_usb_port port = { vport_attach, vport_detach, v };
    st_vunit_can_port cport = { vcan_attach, vcan_detach, v };
    rc = st_vunit_new(&cfg, &port, &cport, &v->unit, err);
    st_image_free(holds);
    if (rc)
        return st_err_wrap(err, rc, "%s: slot %d: unit", c->fx->path, fs->id);
    return 0;
}

static int open_virtual(st_ctx *c, const st_logger *log, st_err *err)
{
    int rc = st_ctx_check_units(c->fx, err);
    if (rc)
        return rc;
    c->vbus = st_vusb_bus_new();
    if (!c->vbus)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    rc = st_usb_host_mem_new(c->vbus, log, &c->usb, err);
    if (rc)
        return rc;
    c->vslots = calloc(c->fx->n_slots, sizeof *c->vslots);
    if (!c->vslots)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < c->fx->n_slots; i++) {
        const st_fixture_slot *fs = &c->fx->slots[i];
        vslot *v = &c->vslots[c->nvslots];
        v->ctx = c;
        v->fs = fs;
        if (fs->unit.module.present && (rc = open_virtual_module(c, v, err)) != 0)
            return rc;
        /* A slot with a simulated operator starts empty: she brings the units. */
        if (!fs->unit.operator.present && (rc = make_unit(c, v, 0, err)) != 0)
            return rc;
        c->nvslots++;
        if (v->unit && (rc = open_uart(c, v, &c->fx->slots[i], log, err)) < 0)
            return rc;
    }
    for (size_t i = 0; i < c->nvslots; i++) {
        if (c->vslots[i].uart) {
            atomic_init(&c->uart_stop, false);
            if (pthread_create(&c->uart_thread, NULL, serve_uarts, c) != 0)
                return st_err_set(err, ST_ERR_NOMEM, "cannot start the UART server");
            c->uart_running = true;
            break;
        }
    }
    return st_gpio_virtual_set_observer(c->gpio, on_gpio, c);
}

/* The virtual bus for an interface name, created on first use. The first unit on a bus
 * sets its timing profile (datasheet if that unit is). */
static int virtual_bus(st_ctx *c, const char *name, uint32_t bitrate, st_timing_profile timing,
                       st_vcan_bus **out, st_err *err)
{
    for (size_t i = 0; i < c->ncans; i++) {
        if (strcmp(c->cans[i].name, name) == 0) {
            *out = c->cans[i].bus;
            return 0;
        }
    }
    if (c->ncans == MAX_CAN_IFS)
        return st_err_set(err, ST_ERR_INVAL, "more than %d CAN interfaces", MAX_CAN_IFS);
    can_if *ci = &c->cans[c->ncans];
    ci->bus = st_vcan_bus_new(bitrate, timing);
    if (!ci->bus)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    int rc = st_can_iface_mem_new(ci->bus, name, c->log, &ci->iface, err);
    if (rc < 0) {
        st_vcan_bus_free(ci->bus);
        ci->bus = NULL;
        return rc;
    }
    st_strlcpy(ci->name, name, sizeof ci->name);
    c->ncans++;
    *out = ci->bus;
    return 0;
}

int st_ctx_can_iface(st_ctx *c, const char *ifname, st_can_iface **out, st_err *err)
{
    for (size_t i = 0; i < c->ncans; i++) {
        if (strcmp(c->cans[i].name, ifname) == 0) {
            *out = c->cans[i].iface;
            return 0;
        }
    }
    if (c->fx->backend == ST_GPIO_BACKEND_VIRTUAL) {
        st_vcan_bus *bus;
        int rc = virtual_bus(c, ifname, 1000000u, ST_TIMING_NONE, &bus, err);
        if (rc < 0)
            return rc;
        *out = c->cans[c->ncans - 1].iface;
        return 0;
    }
    if (c->ncans == MAX_CAN_IFS)
        return st_err_set(err, ST_ERR_INVAL, "more than %d CAN interfaces", MAX_CAN_IFS);
    can_if *ci = &c->cans[c->ncans];
    int rc = st_can_iface_socketcan_new(ifname, c->log, &ci->iface, err);
    if (rc)
        return rc;
    st_strlcpy(ci->name, ifname, sizeof ci->name);
    c->ncans++;
    *out = ci->iface;
    return 0;
}

int st_ctx_serial(st_ctx *c, st_serial_host **out, st_err *err)
{
    if (!c->serial) {
        int rc = c->fx->backend == ST_GPIO_BACKEND_VIRTUAL
                     ? st_serial_host_usb_new(c->usb, &c->serial, err)
                     : st_serial_host_tty_new("/sys", &c->serial, err);
        if (rc)
            return rc;
    }
    *out = c->serial;
    return 0;
}

/* The virtual unit's UART as the station opens it: the pty through the real termios
 * backend (bytes, framing, parity refusal and flushes all cross the kernel's tty layer, as
 * on a jig's UART), with the one thing a pty cannot carry, the modem lines, handed to the
 * unit's UART face the way a USB-serial adapter's DTR/RTS pins reach the board (the unit's
 * unit.modem wiring decides what they drive): raised at open, set by TIOCMBIS/TIOCMBIC,
 * dropped at close, as the kernel does for a real adapter (the kernel-driver rig's cdc_acm
 * sends the same as SET_CONTROL_LINE_STATE). Everything else goes to the tty. Why not an
 * in-memory stream: the termios backend (8E1 refused on a pty, allow_8n1) would then go
 * untested on the virtual fixture; why not poll TIOCMGET on the pty: a pty has no modem
 * lines, its TIOCMBIS fails with ENOTTY. */
typedef struct modem_tty {
    st_stream base; /* first */
    st_stream *tty;
    st_stream_model *unit;
} modem_tty;

static st_stream *tty_of(st_stream *s)
{
    st_stream *t = ((modem_tty *)s)->tty;
    t->clock = s->clock;
    return t;
}

static int mt_write(st_stream *s, const uint8_t *b, size_t n, unsigned ms, st_err *err)
{
    return st_stream_write(tty_of(s), b, n, ms, err);
}

static int mt_read(st_stream *s, uint8_t *b, size_t cap, unsigned ms, st_err *err)
{
    return st_stream_read(tty_of(s), b, cap, ms, err);
}

static int mt_set_line(st_stream *s, const st_stream_line *l, st_err *err)
{
    return st_stream_set_line(tty_of(s), l, err);
}

static int mt_set_modem(st_stream *s, int dtr, int rts, st_err *err)
{
    (void)err;
    st_stream_model *m = ((modem_tty *)s)->unit;
    m->ops->line(m, NULL, dtr, rts);
    return 0;
}

static int mt_flush_input(st_stream *s, st_err *err)
{
    return st_stream_flush_input(tty_of(s), err);
}

static int mt_send_break(st_stream *s, unsigned ms, st_err *err)
{
    return st_stream_send_break(tty_of(s), ms, err);
}

static void mt_close(st_stream *s)
{
    modem_tty *m = (modem_tty *)s;
    st_stream_close(m->tty);
    /* The last close drops DTR and RTS (HUPCL, which the termios backend leaves set). */
    m->unit->ops->line(m->unit, NULL, 0, 0);
    free(s);
}

static const st_stream_ops modem_tty_ops = {
    .write = mt_write, .read = mt_read, .set_line = mt_set_line, .set_modem = mt_set_modem,
    .flush_input = mt_flush_input, .close = mt_close, .send_break = mt_send_break,
};

static int open_unit_uart(vslot *v, const char *device, const st_stream_line *line,
                          st_stream **out, st_err *err)
{
    modem_tty *m = calloc(1, sizeof *m);
    if (!m)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    int rc = st_stream_tty_open(device, line, &m->tty, err);
    if (rc) {
        free(m);
        return rc;
    }
    m->base.ops = &modem_tty_ops;
    st_strlcpy(m->base.name, m->tty->name, sizeof m->base.name);
    m->unit = st_vunit_uart(v->unit);
    /* Opening a tty raises DTR and RTS (the kernel's tty_port_raise_dtr_rts), as a
     * USB-serial adapter's pins show the board. */
    m->unit->ops->line(m->unit, NULL, 1, 1);
    *out = &m->base;
    return 0;
}

int st_ctx_uart_open(void *ctx, const st_fixture_slot *slot, const char *device,
                     const st_stream_line *line, st_stream **out, st_err *err)
{
    st_ctx *c = ctx;
    if (c->fx->backend != ST_GPIO_BACKEND_VIRTUAL)
        return st_stream_tty_open(device, line, out, err);
    for (size_t i = 0; slot && i < c->nvslots; i++) {
        vslot *v = &c->vslots[i];
        if (v->fs->id == slot->id && v->uart && strcmp(device, v->fs->serial.device) == 0)
            return open_unit_uart(v, device, line, out, err);
    }
    for (size_t i = 0; slot && i < c->nvslots; i++) {
        vslot *v = &c->vslots[i];
        if (v->fs->id != slot->id || !v->module || !slot->module.present ||
            strcmp(device, slot->module.device) != 0)
            continue;
        char name[64];
        snprintf(name, sizeof name, "virtual:slot%d-module", slot->id);
        int rc = st_stream_mem_open(st_bgapi_model_stream(v->module), name, out, err);
        if (!rc)
            rc = st_stream_set_line(*out, line, err);
        return rc;
    }
    return st_err_set(err, ST_ERR_NOTFOUND, "slot %d: no simulated device on the UART \"%s\"",
                      slot ? slot->id : 0, device);
}

int st_ctx_open(const char *fixture_path, const st_logger *log, st_ctx **out, st_err *err)
{
    st_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    c->log = log;
    pthread_mutex_init(&c->vlock, NULL);
    int rc = st_fixture_load(fixture_path, &c->fx, err);
    if (!rc)
        rc = st_slot_gpio_open(c->fx, &c->gpio, err);
    if (!rc) {
        if (c->fx->backend == ST_GPIO_BACKEND_VIRTUAL)
            rc = open_virtual(c, log, err);
        else
            rc = st_usb_host_libusb_new(log, &c->usb, err);
    }
    if (rc) {
        st_ctx_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void st_ctx_close(st_ctx *c)
{
    if (!c)
        return;
    st_serial_host_free(c->serial);
    if (c->uart_running) {
        atomic_store(&c->uart_stop, true);
        pthread_join(c->uart_thread, NULL);
    }
    for (size_t i = 0; i < c->nvslots; i++) {
        st_pty_server_free(c->vslots[i].uart);
        st_vunit_free(c->vslots[i].unit);
        st_bgapi_model_free(c->vslots[i].module);
        st_flash_free(c->vslots[i].mflash);
    }
    free(c->vslots);
    for (size_t i = 0; i < c->ncans; i++) {
        c->cans[i].iface->ops->free(c->cans[i].iface);
        st_vcan_bus_free(c->cans[i].bus);
    }
    st_usb_host_free(c->usb);
    st_vusb_bus_free(c->vbus);
    st_gpio_close(c->gpio);
    st_fixture_free(c->fx);
    pthread_mutex_destroy(&c->vlock);
    free(c);
}

const st_fixture *st_ctx_fixture(const st_ctx *c)
{
    return c->fx;
}

st_gpio *st_ctx_gpio(st_ctx *c)
{
    return c->gpio;
}

st_usb_host *st_ctx_usb(st_ctx *c)
{
    return c->usb;
}

const char *st_ctx_virtual_state(st_ctx *c, int slot_id)
{
    const char *st = NULL;
    pthread_mutex_lock(&c->vlock);
    for (size_t i = 0; i < c->nvslots; i++)
        if (c->vslots[i].fs->id == slot_id)
            st = c->vslots[i].unit ? st_vunit_state(c->vslots[i].unit) : "empty";
    pthread_mutex_unlock(&c->vlock);
    return st;
}

static vslot *vslot_of(st_ctx *c, int slot_id)
{
    for (size_t i = 0; i < c->nvslots; i++)
        if (c->vslots[i].fs->id == slot_id)
            return &c->vslots[i];
    return NULL;
}

int st_ctx_virtual_insert(st_ctx *c, int slot_id, unsigned unit_no, st_err *err)
{
    vslot *v = vslot_of(c, slot_id);
    if (!v)
        return st_err_set(err, ST_ERR_NOTFOUND, "slot %d: no simulated slot", slot_id);
    pthread_mutex_lock(&c->vlock);
    int rc = v->unit ? st_err_set(err, ST_ERR_BUSY, "slot %d: a unit is already in", slot_id)
                     : make_unit(c, v, unit_no, err);
    pthread_mutex_unlock(&c->vlock);
    return rc;
}

void st_ctx_virtual_remove(st_ctx *c, int slot_id)
{
    vslot *v = vslot_of(c, slot_id);
    if (!v)
        return;
    pthread_mutex_lock(&c->vlock);
    st_vunit_free(v->unit);
    v->unit = NULL;
    pthread_mutex_unlock(&c->vlock);
}

int st_ctx_virtual_clear_faults(st_ctx *c, int slot_id, st_err *err)
{
    vslot *v = vslot_of(c, slot_id);
    if (!v || (!v->unit && !v->module))
        return st_err_set(err, ST_ERR_NOTFOUND, "slot %d: no simulated unit", slot_id);
    pthread_mutex_lock(&c->vlock);
    if (v->unit)
        st_vunit_clear_faults(v->unit);
    if (v->module) {
        st_bgapi_model_fault_clear(v->module);
        /* baud:RATE is given as a fault: its rerun is at the module's own rate again. */
        const st_fixture_unit *fu = &v->fs->unit;
        st_bgapi_model_set_baud(v->module, fu->module.baud ? fu->module.baud : v->fs->module.baud);
        /* power-loss:BYTES took the module's supply away (bgapi/PROTOCOL.md 6.4): running
         * again without it, the power is back (the module comes up in DFU mode). */
        if (st_bgapi_model_get_state(v->module) == ST_BGAPI_MODEL_DEAD)
            st_bgapi_model_power_cycle(v->module);
    }
    for (size_t i = 0; v->fs->can.present && i < c->ncans; i++)
        if (c->cans[i].bus && strcmp(c->cans[i].name, v->fs->can.iface) == 0)
            st_vcan_fault_bus_off(c->cans[i].bus, false);
    pthread_mutex_unlock(&c->vlock);
    return 0;
}
