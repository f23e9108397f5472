/* Station context: backends per fixture; the virtual fixture's units and bus. */
#include "station/context.h"

#include <stdlib.h>
#include <string.h>

#include "fixtures/slot.h"
#include "protocols/link/usb_model.h"
#include "protocols/sim/vunit.h"
#include "station/core/image.h"

/* One simulated unit and the slot it sits in. */
typedef struct vslot {
    st_ctx *ctx;
    const st_fixture_slot *fs;
    st_vunit *unit;
} vslot;

struct st_ctx {
    st_fixture *fx;
    st_gpio *gpio;
    st_usb_host *usb;
    st_vusb_bus *vbus;
    vslot *vslots;
    size_t nvslots;
};

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
    for (size_t i = 0; i < c->nvslots; i++) {
        const st_fixture_slot *fs = c->vslots[i].fs;
        st_vunit *u = c->vslots[i].unit;
        if (line_is(&fs->lines[ST_LINE_BOOT0], ev))
            st_vunit_set_pin(u, ST_VUNIT_BOOT0, ev->level);
        else if (line_is(&fs->lines[ST_LINE_RESET], ev))
            st_vunit_set_pin(u, ST_VUNIT_NRST, ev->level);
        else if (line_is(&fs->lines[ST_LINE_POWER], ev))
            st_vunit_set_pin(u, ST_VUNIT_POWER, ev->level);
    }
}

static int open_virtual(st_ctx *c, const st_logger *log, st_err *err)
{
    c->vbus = st_vusb_bus_new();
    if (!c->vbus)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    int rc = st_usb_host_mem_new(c->vbus, log, &c->usb, err);
    if (rc)
        return rc;
    c->vslots = calloc(c->fx->n_slots, sizeof *c->vslots);
    if (!c->vslots)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < c->fx->n_slots; i++) {
        const st_fixture_slot *fs = &c->fx->slots[i];
        const st_fixture_unit *fu = &fs->unit;
        vslot *v = &c->vslots[c->nvslots];
        v->ctx = c;
        v->fs = fs;
        st_vunit_config cfg = {
            .mcu = st_mcu_find(fu->present ? fu->mcu : "stm32g431xx"),
            .timing = fu->timing == ST_UNIT_TIMING_DATASHEET ? ST_TIMING_DATASHEET : ST_TIMING_NONE,
            .dfu_serial = fu->serial[0] ? fu->serial : NULL,
            .faults = (const char *const *)fu->faults,
            .n_faults = fu->n_faults,
        };
        if (!cfg.mcu)
            return st_err_set(err, ST_ERR_INVAL, "%s: slot %d: unknown unit MCU \"%s\"",
                              c->fx->path, fs->id, fu->mcu);
        st_image *holds = NULL;
        if (fu->holds[0]) {
            rc = st_image_load(fu->holds, fu->holds_addr, &holds, err);
            if (rc)
                return st_err_prefix(err, "%s: slot %d: unit.holds", c->fx->path, fs->id);
            cfg.holds = holds->data;
            cfg.holds_len = holds->size;
            cfg.holds_addr = holds->load_addr;
        }
        st_vunit_usb_port port = { vport_attach, vport_detach, v };
        rc = st_vunit_new(&cfg, &port, &v->unit, err);
        st_image_free(holds);
        if (rc)
            return st_err_prefix(err, "%s: slot %d: unit", c->fx->path, fs->id);
        c->nvslots++;
    }
    return st_gpio_virtual_set_observer(c->gpio, on_gpio, c);
}

int st_ctx_open(const char *fixture_path, const st_logger *log, st_ctx **out, st_err *err)
{
    st_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
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
    for (size_t i = 0; i < c->nvslots; i++)
        st_vunit_free(c->vslots[i].unit);
    free(c->vslots);
    st_usb_host_free(c->usb);
    st_vusb_bus_free(c->vbus);
    st_gpio_close(c->gpio);
    st_fixture_free(c->fx);
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
    for (size_t i = 0; i < c->nvslots; i++)
        if (c->vslots[i].fs->id == slot_id)
            return st_vunit_state(c->vslots[i].unit);
    return NULL;
}
