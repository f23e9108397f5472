/* Virtual unit: boot logic over the device models (see vunit.h). */
#include "protocols/sim/vunit.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/an3155/an3155_model.h"
#include "protocols/canadmin/klipper_node.h"
#include "protocols/dfuse/dfu_model.h"
#include "protocols/katapult/katapult_model.h"
#include "protocols/klipper/klipper_model.h"
#include "protocols/sim/cdc_acm.h"
#include "protocols/sim/klipper_app.h"
#include "station/core/clock.h"
#include "station/core/digest.h"
#include "station/core/image.h"
#include "station/core/text.h"
#include "station/core/yamldoc.h"

_Static_assert(ST_VUNIT_SERIAL_MAX == ST_DFU_MODEL_SERIAL_MAX, "one serial limit for a unit");

/* Katapult marks its image with "CanBoot!" 9 bytes before its reset handler's address
 * (Klipper's armcm_reset.c checks the same place, protocols.md 2.8). */
static const char katapult_sig[8] = { 'C', 'a', 'n', 'B', 'o', 'o', 't', '!' };

typedef enum mode { M_OFF, M_RESET, M_ROM, M_KATAPULT, M_APP, M_CRASHED } mode;
static const char *const mode_names[] = { "off", "reset", "rom-dfu", "katapult", "app", "crashed" };

struct st_vunit {
    pthread_mutex_t lock;
    const st_mcu *mcu;
    st_flash *flash;
    st_vunit_usb_port port;
    st_vunit_can_port can;
    bool can_transport;
    bool uart_transport;          /* images that do not say: Katapult and the app are UART builds */
    bool kat_on_can;              /* the Katapult build in flash speaks CAN */
    bool kat_on_uart;             /* ... or USART1 (the UART the ROM's AN3155 uses too) */
    bool app_on_uart;             /* the application runs a serial build on that UART */
    /* A model's callback (the app's bootloader request, Katapult's reset) fired inside a
     * UART call, which holds the lock: acted on when the call returns (uart_after). */
    bool uart_busy;
    pthread_t uart_tid;
    bool uart_app_request, uart_kat_reset;
    st_dfu_model *dfu;
    st_klipper_app *app;
    st_cdc_acm *app_usb;
    st_katapult_model *kat;
    st_cdc_acm *kat_usb;          /* Katapult over USB-CDC (1d50:6177) */
    st_can_stream_node *kat_can;  /* Katapult on the CAN bus */
    st_klipper_node *app_can;     /* the Klipper application on the CAN bus */
    char serial[32];
    uint8_t can_uuid[6];
    int boot0, nrst, power;
    mode mode;
    bool attached;
    st_can_node *on_can;          /* the node attached to the CAN bus, if any */
    bool kat_faults_armed;
    bool bootloader_request; /* RAM flag a running app leaves for Katapult */
    bool start_error;        /* the ROM enumerates in dfuERROR (fault) */
    unsigned boots;
    st_dfu_model_faults dfu_faults;
    st_an_model *uart_rom;        /* the ROM's AN3155 face on the UART (may be NULL) */
    st_stream_model uart;         /* the UART as the host's stream sees it */
    bool boot_select_low;
    st_vunit_wire dtr_wire, rts_wire; /* the UART's modem lines on the board */
    bool uart_go_pending, uart_go_rom, uart_keep;
    uint32_t uart_go_addr;
    /* The Klipper protocol of the application the flash holds (design.md 5: the face comes
     * from the image). app_z is the dictionary found at the last application boot. */
    st_klp_model *klp;
    uint8_t *klp_z, *app_z;
    size_t klp_z_len, app_z_len;
    st_klp_model_faults klp_faults;
    st_image_facts app_facts;     /* what the application's image says (its USB identity) */
    pthread_t clock;              /* the unit's own clock: lets models' timers fire */
    bool kat_reset_pending;       /* a Katapult reset fired on the clock thread (see below) */
    bool clock_running, stopping;
};

/* A board keeps time whether or not the host talks to it: Katapult resets into the
 * application 100 ms after COMPLETE even when the host has closed the port. */
#define CLOCK_TICK_US 5000u
static void katapult_rebooted(st_vunit *u);

/* Inside a UART call on this thread (which holds the lock). */
static bool in_uart_call(st_vunit *u)
{
    return u->uart_busy && pthread_equal(pthread_self(), u->uart_tid);
}

static void *unit_clock(void *arg)
{
    st_vunit *u = arg;
    for (;;) {
        st_sleep_us(CLOCK_TICK_US);
        pthread_mutex_lock(&u->lock);
        bool stop = u->stopping;
        bool kat_usb = u->mode == M_KATAPULT && !u->kat_on_can && !u->kat_on_uart;
        pthread_mutex_unlock(&u->lock);
        if (stop)
            return NULL;
        if (kat_usb)
            st_cdc_acm_poll(u->kat_usb); /* may call on_katapult_reset: no lock held here */
        /* The reset the poll fired, now that the CDC model's lock is released. */
        pthread_mutex_lock(&u->lock);
        if (u->kat_reset_pending) {
            u->kat_reset_pending = false;
            katapult_rebooted(u);
        }
        pthread_mutex_unlock(&u->lock);
    }
}

static uint32_t rd32(st_flash *f, uint32_t addr, bool *ok)
{
    uint8_t b[4];
    *ok = st_flash_read(f, addr, b, 4) == ST_FLASH_OK;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* Flash from addr to the end of main flash (malloc'd), for reading what an image holds. */
static uint8_t *flash_from(st_vunit *u, uint32_t addr, size_t *len)
{
    uint32_t end = u->mcu->flash_start + u->mcu->flash_size;
    if (addr >= end)
        return NULL;
    *len = end - addr;
    uint8_t *b = malloc(*len);
    if (b && st_flash_read(u->flash, addr, b, *len) != ST_FLASH_OK) {
        free(b);
        b = NULL;
    }
    return b;
}

static bool code_at(st_vunit *u, uint32_t addr, uint32_t *reset)
{
    bool ok1, ok2;
    uint32_t sp = rd32(u->flash, addr, &ok1), rv = rd32(u->flash, addr + 4, &ok2);
    if (!ok1 || !ok2 || sp == 0 || sp == 0xFFFFFFFFu)
        return false;
    if (sp < u->mcu->sram_start || sp > u->mcu->sram_start + u->mcu->sram_size || !(rv & 1))
        return false;
    uint32_t entry = rv & ~1u;
    if (!st_flash_in_main(u->flash, entry, 4))
        return false;
    /* We cannot execute the code; a reset handler over erased flash would fault at once
     * (the truncated-app case of design.md section 7), so treat it as a crash. */
    bool ok3;
    if (rd32(u->flash, entry, &ok3) == 0xFFFFFFFFu || !ok3)
        return false;
    /* Code linked for another address jumps into the wrong place at its first absolute
     * branch: an application linked behind a bootloader but written at the start of flash
     * never runs (the vector table tells where it is linked). */
    if (entry < addr)
        return false; /* its reset handler lies below its own vector table */
    size_t n;
    uint8_t *head = flash_from(u, addr, &n);
    if (!head)
        return false;
    st_image_facts f;
    st_image_facts_of(head, n, u->mcu, &f);
    free(head);
    if (f.link_known && f.link_addr != addr)
        return false;
    *reset = entry;
    return true;
}

/* Whether the Katapult build in flash carries a USB device descriptor. */
static bool katapult_has_usb(st_vunit *u)
{
    size_t n;
    uint8_t *b = flash_from(u, u->mcu->flash_start, &n);
    if (!b)
        return false;
    st_image_facts f;
    st_image_facts_of(b, u->mcu->katapult_app_offset < n ? u->mcu->katapult_app_offset : n,
                      u->mcu, &f);
    free(b);
    return f.usb_device;
}

/* The transport a Katapult build speaks: USB when it carries a USB device descriptor; else
 * CAN when it is a real build (it names its MCU, as Katapult reports it, or the flash holds
 * a Klipper dictionary). The station's synthetic images carry neither and keep the face
 * their fixture names (CAN, USB, or with uart_transport the UART: katapult_face). */
static bool katapult_on_can(st_vunit *u)
{
    size_t n;
    uint8_t *b = flash_from(u, u->mcu->flash_start, &n);
    if (!b)
        return u->can_transport;
    st_image_facts f;
    size_t kn = u->mcu->katapult_app_offset < n ? u->mcu->katapult_app_offset : n;
    st_image_facts_of(b, kn, u->mcu, &f);
    bool can = u->can_transport;
    if (f.usb_device) {
        can = false;
    } else if (memmem(b, kn, u->mcu->name, strlen(u->mcu->name))) {
        can = true;
    } else {
        size_t off, zl;
        st_klp_dict *d = NULL;
        if (st_klp_image_dict(b, n, &off, &zl, &d, NULL) == 0)
            can = true;
        st_klp_dict_free(d);
    }
    free(b);
    return can;
}

/* Look for the application's dictionary; remember it for present(). Returns the transport
 * it names (ST_KLP_TRANSPORT_UNKNOWN when there is none). */
static st_klp_transport app_dictionary(st_vunit *u, uint32_t addr)
{
    free(u->app_z);
    u->app_z = NULL;
    u->app_z_len = 0;
    size_t n;
    uint8_t *b = flash_from(u, addr, &n);
    if (!b)
        return ST_KLP_TRANSPORT_UNKNOWN;
    size_t off, zl;
    st_klp_dict *d = NULL;
    st_klp_transport t = ST_KLP_TRANSPORT_UNKNOWN;
    if (st_klp_image_dict(b, n, &off, &zl, &d, NULL) == 0) {
        t = st_klp_dict_transport(d, NULL);
        u->app_z = malloc(zl);
        if (u->app_z) {
            memcpy(u->app_z, b + off, zl);
            u->app_z_len = zl;
        }
        st_klp_dict_free(d);
    }
    free(b);
    return t;
}

static int klp_nodeid(void *ctx)
{
    st_vunit *u = ctx;
    return st_klipper_node_nodeid(u->app_can);
}

/* The application's protocol model for what app_dictionary found: a new model when the
 * flash holds another build, else a reboot of the one there. Called with the faces
 * detached. */
static void app_protocol(st_vunit *u)
{
    if (!u->app_z) {
        st_klipper_app_set_protocol(u->app, NULL);
        return;
    }
    if (u->klp && u->klp_z_len == u->app_z_len && memcmp(u->klp_z, u->app_z, u->app_z_len) == 0) {
        st_klp_model_set_faults(u->klp, &u->klp_faults);
        st_klp_model_reset(u->klp);
        st_klipper_app_set_protocol(u->app, st_klp_model_stream(u->klp));
        return;
    }
    st_klipper_app_set_protocol(u->app, NULL);
    st_klp_model_free(u->klp);
    u->klp = NULL;
    free(u->klp_z);
    u->klp_z = NULL;
    st_klp_model_cfg c = { .dict_z = u->app_z, .dict_z_len = u->app_z_len,
                           .nodeid = klp_nodeid, .nodeid_ctx = u, .faults = u->klp_faults,
                           .seed = (uint32_t)st_fasthash64(u->serial, strlen(u->serial), 1) | 1 };
    memcpy(c.can_uuid, u->can_uuid, 6);
    if (st_klp_model_new(&c, &u->klp, NULL) != 0)
        return; /* the image's dictionary does not parse: the app answers nothing */
    u->klp_z = malloc(u->app_z_len);
    if (u->klp_z) {
        memcpy(u->klp_z, u->app_z, u->app_z_len);
        u->klp_z_len = u->app_z_len;
    }
    st_klipper_app_set_protocol(u->app, st_klp_model_stream(u->klp));
}

static bool is_katapult(st_vunit *u, uint32_t entry)
{
    uint8_t sig[8];
    return entry >= 9 && st_flash_read(u->flash, entry - 8, sig, 8) == ST_FLASH_OK &&
           memcmp(sig, katapult_sig, 8) == 0;
}

/* What the unit shows after a boot: a USB model and/or a CAN node (either may be NULL). */
typedef struct face {
    st_usb_model *usb;
    st_can_node *can;
    bool app; /* the application runs: present() readies its protocol model */
} face;

static face katapult_face(st_vunit *u)
{
    u->mode = M_KATAPULT;
    if (u->kat_faults_armed && st_katapult_model_get_state(u->kat) == ST_KATAPULT_MODEL_DEAD) {
        /* The injected power loss has happened: a fault fires once. */
        st_katapult_model_fault_clear(u->kat);
        u->kat_faults_armed = false;
    }
    st_katapult_model_reboot(u->kat);
    face f = { NULL, NULL, false };
    u->kat_on_can = katapult_on_can(u);
    u->kat_on_uart = false;
    if (u->kat_on_can)
        f.can = st_can_stream_node_base(u->kat_can);
    else if (u->uart_transport && !katapult_has_usb(u))
        u->kat_on_uart = true; /* its face is the UART (uart_model) */
    else
        f.usb = st_cdc_acm_usb(u->kat_usb);
    return f;
}

/* The application's face comes from the dictionary its image embeds (USB or CAN build);
 * an image without one (the station's synthetic images) shows the fixture's transport and
 * answers only the bootloader requests; a build for another transport (UART) shows none. */
static face app_face(st_vunit *u, uint32_t addr)
{
    u->mode = M_APP;
    u->app_on_uart = false;
    face f = { NULL, NULL, true };
    st_klp_transport t = app_dictionary(u, addr);
    size_t n;
    uint8_t *b = flash_from(u, addr, &n);
    memset(&u->app_facts, 0, sizeof u->app_facts);
    if (b)
        st_image_facts_of(b, n, u->mcu, &u->app_facts);
    free(b);
    bool can = u->can_transport;
    if (t == ST_KLP_TRANSPORT_CAN)
        can = true;
    else if (t == ST_KLP_TRANSPORT_USB)
        can = false;
    else if (t != ST_KLP_TRANSPORT_UNKNOWN || u->app_z)
        return f; /* a serial build, or one naming no transport: nothing on USB or CAN */
    else if (u->app_facts.usb_device)
        can = false; /* no dictionary, but a USB device descriptor: a USB build */
    else if (u->uart_transport) {
        /* A synthetic image on a UART unit: a serial build on USART1, answering the
         * serial bootloader request string there. */
        st_klipper_app_reset(u->app);
        u->app_on_uart = true;
        return f;
    }
    if (can) {
        f.can = st_klipper_node_base(u->app_can);
    } else {
        st_klipper_app_reset(u->app);
        f.usb = st_cdc_acm_usb(u->app_usb);
    }
    return f;
}

/* Decide the mode after a boot from addr. */
static face boot_code(st_vunit *u, uint32_t addr)
{
    face none = { NULL, NULL, false };
    st_flash_set_running_from_flash(u->flash, true); /* readout protection lets it run */
    uint32_t entry;
    if (!code_at(u, addr, &entry)) {
        u->mode = M_CRASHED;
        return none;
    }
    if (is_katapult(u, entry)) {
        uint32_t app = addr + u->mcu->katapult_app_offset, app_entry;
        bool ok;
        uint32_t w0 = rd32(u->flash, app, &ok);
        /* Katapult stays when asked to, or when the app's first word is blank (2.3). */
        if (u->bootloader_request || !ok || w0 == 0 || w0 == 0xFFFFFFFFu) {
            u->bootloader_request = false;
            return katapult_face(u);
        }
        if (!code_at(u, app, &app_entry)) {
            u->mode = M_CRASHED;
            return none;
        }
        return app_face(u, app);
    }
    return app_face(u, addr);
}

static face rom(st_vunit *u)
{
    u->mode = M_ROM;
    st_flash_set_running_from_flash(u->flash, false); /* readout protection stops the ROM */
    /* A disconnect is an event, like every other fault: once the ROM has vanished, the
     * next reset brings it back whole (the model counts class requests across resets, so
     * re-arming it would make the unit vanish at once on every boot: a dead unit, not a
     * glitch). */
    st_dfu_model_counts cnt;
    st_dfu_model_get_counts(u->dfu, &cnt);
    if (u->dfu_faults.disconnect_after && cnt.class_reqs > u->dfu_faults.disconnect_after)
        u->dfu_faults.disconnect_after = 0;
    st_dfu_model_reset(u->dfu);
    if (u->start_error)
        st_dfu_model_set_state(u->dfu, 10 /* dfuERROR */, 0x0E /* errUNKNOWN */);
    st_dfu_model_set_faults(u->dfu, &u->dfu_faults);
    face f = { st_dfu_model_usb(u->dfu), NULL, false };
    return f;
}

/* Boot after reset/power-on. Called with the lock held. */
static face boot(st_vunit *u)
{
    u->boots++;
    /* A reset or power-on ends an injected power loss. */
    st_flash_power_restore(u->flash);
    bool ok;
    bool rom_selected = u->boot_select_low ? !u->boot0 : u->boot0;
    /* PEMPTY is the hardware's own look at the first word, protection or not. */
    st_flash_set_running_from_flash(u->flash, true);
    if (rom_selected || rd32(u->flash, u->mcu->flash_start, &ok) == 0xFFFFFFFFu) {
        /* BOOT0 high, or main flash empty (PEMPTY): system memory, the ROM bootloader. */
        return rom(u);
    }
    return boot_code(u, u->mcu->flash_start);
}

/* The USB identity the application enumerates with is the one its build carries: the
 * device descriptor its image embeds (ids, release, and the manufacturer/product/serial
 * strings stored behind it), else the MCU table's Klipper id (a synthetic image). A serial
 * number made from the chip's UID at run time is the unit's own. Called detached. */
static void app_usb_identity(st_vunit *u)
{
    const st_image_facts *f = &u->app_facts;
    st_cdc_identity id = { .vid = u->mcu->usb_klipper.vid, .pid = u->mcu->usb_klipper.pid,
                           .bcd_device = 0x0100, .manufacturer = "Klipper",
                           .product = u->mcu->name, .serial = u->serial };
    if (f->usb_device) {
        id.vid = f->usb_vid;
        id.pid = f->usb_pid;
        id.bcd_device = f->usb_bcd_device;
        if (f->usb_manufacturer[0])
            id.manufacturer = f->usb_manufacturer;
        if (f->usb_product[0])
            id.product = f->usb_product;
        if (f->usb_serial[0])
            id.serial = f->usb_serial;
    }
    st_cdc_acm_set_identity(u->app_usb, &id);
}

/* Swap what is on the USB port and the CAN bus: detach the old faces, attach the new. */
static void present(st_vunit *u, face next)
{
    /* The UART follows the mode: the ROM's AN3155 bootloader restarts (and waits for
     * 0x7F again), anything else leaves the line silent. */
    if (u->uart_rom && u->uart_keep) {
        /* The ROM itself jumped or reset: its last ACK is on the wire already. */
        if (u->mode != M_ROM)
            st_an_model_go_silent(u->uart_rom);
    } else if (u->uart_rom) {
        st_an_model_reset(u->uart_rom, u->mode == M_ROM, st_now_us());
    }
    if (u->attached) {
        u->port.detach(u->port.ctx);
        u->attached = false;
    }
    if (u->on_can) {
        u->can.detach(u->can.ctx, u->on_can);
        u->on_can = NULL;
    }
    if (next.app)
        app_protocol(u);
    if (next.app && next.usb)
        app_usb_identity(u);
    if (next.usb && u->port.attach(u->port.ctx, next.usb, NULL) == 0)
        u->attached = true;
    if (next.can && u->can.attach && u->can.attach(u->can.ctx, next.can, NULL) == 0)
        u->on_can = next.can;
}

static face no_face(void)
{
    face f = { NULL, NULL, false };
    return f;
}

static void on_dfu_leave(void *ctx, uint32_t jump_addr)
{
    st_vunit *u = ctx;
    pthread_mutex_lock(&u->lock);
    face next = jump_addr == ST_DFU_MODEL_RESET ? boot(u) : boot_code(u, jump_addr);
    u->boots += jump_addr == ST_DFU_MODEL_RESET ? 0 : 1;
    present(u, next);
    pthread_mutex_unlock(&u->lock);
}

static void app_bootloader_request_locked(st_vunit *u);

static void on_app_bootloader_request(void *ctx)
{
    st_vunit *u = ctx;
    if (in_uart_call(u)) {
        u->uart_app_request = true; /* the lock is held: uart_after acts on it */
        return;
    }
    pthread_mutex_lock(&u->lock);
    app_bootloader_request_locked(u);
    pthread_mutex_unlock(&u->lock);
}

static void app_bootloader_request_locked(st_vunit *u)
{
    /* Klipper's bootloader_request(): Katapult if installed, else the ROM (dfu_reboot). */
    uint32_t entry;
    if (code_at(u, u->mcu->flash_start, &entry) && is_katapult(u, entry)) {
        u->bootloader_request = true;
        u->boots++;
        present(u, boot_code(u, u->mcu->flash_start));
    } else {
        u->boots++;
        present(u, rom(u));
    }
}

/* ---- UART ---------------------------------------------------------------------------- */

/* From inside the AN3155 model (lock held): note the exit, act after the model returns. */
static void on_uart_exit(void *ctx, st_an_model *m, uint32_t addr, bool rom)
{
    st_vunit *u = ctx;
    (void)m;
    u->uart_go_pending = true;
    u->uart_go_addr = addr;
    u->uart_go_rom = rom;
}

/* What answers on the UART now: the ROM's AN3155 bootloader (silent outside the ROM), or a
 * UART build of Katapult or of the application. */
static st_stream_model *uart_model(st_vunit *u)
{
    if (u->mode == M_KATAPULT && u->kat_on_uart)
        return st_katapult_model_stream(u->kat);
    if (u->mode == M_APP && u->app_on_uart)
        return st_klipper_app_stream(u->app);
    return st_an_model_stream(u->uart_rom);
}

static void uart_enter(st_vunit *u)
{
    pthread_mutex_lock(&u->lock);
    u->uart_tid = pthread_self();
    u->uart_busy = true;
}

static void uart_after(st_vunit *u)
{
    u->uart_busy = false;
    if (u->uart_app_request) {
        u->uart_app_request = false;
        app_bootloader_request_locked(u);
    }
    if (u->uart_kat_reset) {
        u->uart_kat_reset = false;
        katapult_rebooted(u);
    }
    if (!u->uart_go_pending)
        return;
    u->uart_go_pending = false;
    u->boots++;
    if (u->uart_go_rom) {
        /* The ROM reset itself after (un)protect: with the boot pin still selecting it,
         * the model already restarts on its own (its last ACK still goes out). */
        bool rom_selected = u->boot_select_low ? !u->boot0 : u->boot0;
        u->uart_keep = true;
        if (!rom_selected)
            present(u, boot(u));
        u->uart_keep = false;
        return;
    }
    /* Go: the code at the address runs (the application, or Katapult). */
    u->uart_keep = true;
    present(u, boot_code(u, u->uart_go_addr));
    u->uart_keep = false;
}

static st_vunit *uart_unit(st_stream_model *b)
{
    return (st_vunit *)((char *)b - offsetof(st_vunit, uart));
}

static void uart_rx(st_stream_model *b, const uint8_t *buf, size_t n, uint64_t now)
{
    st_vunit *u = uart_unit(b);
    uart_enter(u);
    st_stream_model *m = uart_model(u);
    m->ops->rx(m, buf, n, now);
    uart_after(u);
    pthread_mutex_unlock(&u->lock);
}

static size_t uart_tx(st_stream_model *b, uint8_t *buf, size_t cap, uint64_t now)
{
    st_vunit *u = uart_unit(b);
    uart_enter(u);
    st_stream_model *m = uart_model(u);
    size_t n = m->ops->tx(m, buf, cap, now);
    uart_after(u);
    pthread_mutex_unlock(&u->lock);
    return n;
}

static uint64_t uart_next(st_stream_model *b)
{
    st_vunit *u = uart_unit(b);
    uart_enter(u);
    st_stream_model *m = uart_model(u);
    uint64_t t = m->ops->next_event_us(m);
    uart_after(u);
    pthread_mutex_unlock(&u->lock);
    return t;
}

static void set_pin_locked(st_vunit *u, st_vunit_pin pin, int level);

/* The host's DTR/RTS through the board's wiring (vunit.h st_vunit_wire). The line that
 * drives BOOT0 goes first: when both change in one call the boot pin is settled before the
 * reset edge samples it, as with the GPIO pair. */
static void modem_lines(st_vunit *u, int dtr, int rts)
{
    const st_vunit_wire *w[2] = { &u->dtr_wire, &u->rts_wire };
    int lvl[2] = { dtr, rts };
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 2; i++) {
            if (lvl[i] < 0 || !w[i]->present || (w[i]->pin == ST_VUNIT_BOOT0) != (pass == 0))
                continue;
            set_pin_locked(u, w[i]->pin, w[i]->inverted ? !lvl[i] : !!lvl[i]);
        }
    }
}

static void uart_line(st_stream_model *b, const st_stream_line *l, int dtr, int rts)
{
    st_vunit *u = uart_unit(b);
    pthread_mutex_lock(&u->lock);
    st_an_model_stream(u->uart_rom)->ops->line(st_an_model_stream(u->uart_rom), l, dtr, rts);
    modem_lines(u, dtr, rts);
    pthread_mutex_unlock(&u->lock);
}

static const st_stream_model_ops uart_ops = {
    .rx = uart_rx, .tx = uart_tx, .next_event_us = uart_next, .line = uart_line, .brk = NULL,
};

st_stream_model *st_vunit_uart(st_vunit *u)
{
    return u->uart_rom ? &u->uart : NULL;
}

void st_vunit_set_pin(st_vunit *u, st_vunit_pin pin, int level)
{
    pthread_mutex_lock(&u->lock);
    set_pin_locked(u, pin, level);
    pthread_mutex_unlock(&u->lock);
}

static void set_pin_locked(st_vunit *u, st_vunit_pin pin, int level)
{
    bool was_running = u->power && u->nrst;
    if (pin == ST_VUNIT_BOOT0)
        u->boot0 = level;
    else if (pin == ST_VUNIT_NRST)
        u->nrst = level;
    else
        u->power = level;
    bool running = u->power && u->nrst;
    if (was_running && !running) {
        u->mode = u->power ? M_RESET : M_OFF;
        present(u, no_face());
    } else if (!was_running && running) {
        present(u, boot(u));
    }
}

/* Katapult resets into the application ~100 ms after COMPLETE (called from inside the
 * model, possibly on the CAN bus's thread with the bus locked). */
/* The Katapult unit reset (COMPLETE): it boots what its flash holds. u->lock held. */
static void katapult_rebooted(st_vunit *u)
{
    u->boots++;
    present(u, boot_code(u, u->mcu->flash_start));
}

static void on_katapult_reset(void *ctx, st_katapult_model *m)
{
    st_vunit *u = ctx;
    if (in_uart_call(u)) {
        u->uart_kat_reset = true; /* the lock is held: uart_after acts on it */
        return;
    }
    pthread_mutex_lock(&u->lock);
    if (u->clock_running && pthread_equal(pthread_self(), u->clock)) {
        /* On the clock thread the CDC model's lock is held (st_cdc_acm_poll): detaching
         * here waits for a host transfer that waits for that lock (deadlock). The clock
         * thread presents the new boot as soon as the poll returns. */
        u->kat_reset_pending = true;
    } else {
        katapult_rebooted(u);
    }
    pthread_mutex_unlock(&u->lock);
}

/* A fault string, parsed. */
typedef enum fault_kind {
    F_START_ERROR, F_TRANSFER_SIZE, F_STALL, F_DISCONNECT, F_LEAVE, F_CORRUPT_PAGE,
    F_PROG_ERROR, F_SLOW_ERASE, F_POWER_LOSS, F_KAT_POWER_LOSS, F_KAT_DROP_RX, F_KAT_DROP_TX,
    F_KAT_CORRUPT_RX, F_KAT_CORRUPT_TX, F_KAT_NACK_STORM, F_KAT_SILENT_COMPLETE, F_KAT_MCU,
    F_KLP_SENSOR, F_KLP_TEMP, F_KLP_DROP, F_KLP_BAD_CRC, F_KLP_SILENT, F_RDP, F_UART,
} fault_kind;

typedef struct fault {
    fault_kind kind;
    uint64_t v;
    const char *arg; /* the text after ':' (katapult-mcu) */
    st_dfu_leave_fault leave;
} fault_spec;

static const struct {
    const char *name;
    fault_kind kind;
} kat_faults[] = {
    { "katapult-power-loss", F_KAT_POWER_LOSS }, { "katapult-drop-rx", F_KAT_DROP_RX },
    { "katapult-drop-tx", F_KAT_DROP_TX },       { "katapult-corrupt-rx", F_KAT_CORRUPT_RX },
    { "katapult-corrupt-tx", F_KAT_CORRUPT_TX }, { "katapult-nack-storm", F_KAT_NACK_STORM },
};

static bool in_main(const st_mcu *mcu, uint64_t a)
{
    return a >= mcu->flash_start && a < (uint64_t)mcu->flash_start + mcu->flash_size;
}

static int parse_fault(const char *fault, const st_mcu *mcu, fault_spec *out, st_err *err)
{
    char name[32] = "";
    const char *arg = fault ? strchr(fault, ':') : NULL;
    size_t n = fault ? (arg ? (size_t)(arg - fault) : strlen(fault)) : 0;
    if (n >= sizeof name)
        n = sizeof name - 1;
    if (fault)
        memcpy(name, fault, n);
    name[n] = '\0';
    if (arg)
        arg++;
    uint64_t v = 0;
    bool num = arg && st_parse_u64(arg, &v);
    bool count = num && v > 0 && v < UINT32_MAX; /* an Nth request/frame/block, from 1 */
    memset(out, 0, sizeof *out);
    out->v = v;
    if (strcmp(name, "dfu-start-error") == 0 && !arg) {
        out->kind = F_START_ERROR;
        return 0;
    }
    if (strcmp(name, "dfu-transfer-size") == 0 && num && v >= 64 && v <= 4096) {
        out->kind = F_TRANSFER_SIZE;
        return 0;
    }
    if (strcmp(name, "dfu-stall") == 0 && count) {
        out->kind = F_STALL;
        return 0;
    }
    if (strcmp(name, "dfu-disconnect") == 0 && count) {
        out->kind = F_DISCONNECT;
        return 0;
    }
    if (strcmp(name, "dfu-leave") == 0 && arg) {
        out->kind = F_LEAVE;
        if (strcmp(arg, "stall") == 0)
            out->leave = ST_DFU_LEAVE_STALL;
        else if (strcmp(arg, "vanish") == 0)
            out->leave = ST_DFU_LEAVE_VANISH;
        else if (strcmp(arg, "stall-dnload") == 0)
            out->leave = ST_DFU_LEAVE_STALL_DNLOAD;
        else
            goto unknown;
        return 0;
    }
    if ((strcmp(name, "corrupt-page") == 0 || strcmp(name, "prog-error") == 0) && num) {
        out->kind = name[0] == 'c' ? F_CORRUPT_PAGE : F_PROG_ERROR;
        if (!in_main(mcu, v))
            return st_err_set(err, ST_ERR_INVAL,
                              "fault \"%s\": 0x%llx is not in the %s's main flash "
                              "(0x%08X..0x%08X)", name, (unsigned long long)v, mcu->name,
                              mcu->flash_start, mcu->flash_start + mcu->flash_size - 1);
        return 0;
    }
    if (strcmp(name, "slow-erase") == 0 && num && v >= 1 && v <= 1000) {
        out->kind = F_SLOW_ERASE;
        return 0;
    }
    if (strcmp(name, "power-loss") == 0 && num) {
        out->kind = F_POWER_LOSS;
        return 0;
    }
    for (size_t i = 0; i < sizeof kat_faults / sizeof *kat_faults; i++) {
        if (strcmp(name, kat_faults[i].name) == 0 && count) {
            out->kind = kat_faults[i].kind;
            return 0;
        }
    }
    if (strcmp(name, "katapult-silent-complete") == 0 && !arg) {
        out->kind = F_KAT_SILENT_COMPLETE;
        return 0;
    }
    /* Readout protection, and the ROM's USART bootloader (protocols/an3155). */
    if (strcmp(name, "rdp") == 0 && !arg) {
        out->kind = F_RDP;
        return 0;
    }
    if ((strcmp(name, "uart-nack") == 0 || strcmp(name, "uart-silent") == 0 ||
         strcmp(name, "uart-noise-rx") == 0 || strcmp(name, "uart-noise-tx") == 0 ||
         strcmp(name, "uart-late-start") == 0) && num && v < UINT32_MAX) {
        out->kind = F_UART;
        out->arg = fault + 5; /* "nack:3": the AN3155 model's own fault string */
        return 0;
    }
    /* The running Klipper application (they last: a reboot keeps them). */
    if (strcmp(name, "klipper-sensor") == 0 && arg &&
        (strcmp(arg, "stuck") == 0 || strcmp(arg, "normal") == 0)) {
        out->kind = F_KLP_SENSOR;
        out->arg = arg;
        return 0;
    }
    if (strcmp(name, "klipper-temp") == 0 && num && v <= UINT32_MAX) {
        out->kind = F_KLP_TEMP;
        return 0;
    }
    if ((strcmp(name, "klipper-drop") == 0 || strcmp(name, "klipper-bad-crc") == 0) && num &&
        v >= 2 && v < UINT32_MAX) {
        out->kind = name[8] == 'd' ? F_KLP_DROP : F_KLP_BAD_CRC;
        return 0;
    }
    if (strcmp(name, "klipper-silent") == 0 && !arg) {
        out->kind = F_KLP_SILENT;
        return 0;
    }
    /* A board in the jig that is not the job's target: Katapult reports this MCU. */
    if (strcmp(name, "katapult-mcu") == 0 && arg && *arg && strlen(arg) < 32 &&
        strspn(arg, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(arg)) {
        out->kind = F_KAT_MCU;
        out->arg = arg;
        return 0;
    }
unknown:;
    char shown[64];
    return st_err_set(err, ST_ERR_INVAL,
                      "unknown or malformed fault \"%s\" (faults: dfu-start-error, "
                      "dfu-transfer-size:64..4096, dfu-stall:N, dfu-disconnect:N, "
                      "dfu-leave:stall|vanish|stall-dnload, corrupt-page:ADDR, prog-error:ADDR, "
                      "slow-erase:1..1000, power-loss:BYTES, katapult-power-loss:N, "
                      "katapult-drop-rx|drop-tx|corrupt-rx|corrupt-tx:N, katapult-nack-storm:K, "
                      "katapult-silent-complete, katapult-mcu:NAME, rdp, "
                      "uart-nack|silent|noise-rx|noise-tx:N, uart-late-start:MS, "
                      "klipper-sensor:stuck|normal, "
                      "klipper-temp:N, klipper-drop:N, klipper-bad-crc:N, klipper-silent; N and K "
                      "from 1, klipper-drop and klipper-bad-crc from 2)",
                      st_text_printable(fault ? fault : "", shown, sizeof shown));
}

int st_vunit_check_holds(const st_mcu *mcu, uint32_t addr, size_t len, st_err *err)
{
    if (len == 0 || !in_main(mcu, addr) ||
        (uint64_t)addr + len > (uint64_t)mcu->flash_start + mcu->flash_size)
        return st_err_set(err, ST_ERR_INVAL,
                          "an image of %zu bytes at 0x%08X does not fit the %s's main flash "
                          "(0x%08X..0x%08X)", len, addr, mcu->name, mcu->flash_start,
                          mcu->flash_start + mcu->flash_size - 1);
    return 0;
}

int st_vunit_check_fault(const char *fault, const st_mcu *mcu, st_err *err)
{
    fault_spec f;
    return parse_fault(fault, mcu, &f, err);
}

int st_vunit_apply_fault(st_vunit *u, const char *fault, st_err *err)
{
    fault_spec f;
    int rc = parse_fault(fault, u->mcu, &f, err);
    if (rc)
        return rc;
    if (f.kind == F_TRANSFER_SIZE || f.kind == F_KAT_MCU)
        return st_err_set(err, ST_ERR_INVAL,
                          "%s is a property of the unit: give it when it is made",
                          f.kind == F_KAT_MCU ? "katapult-mcu" : "dfu-transfer-size");
    pthread_mutex_lock(&u->lock);
    unsigned nth = (unsigned)f.v;
    switch (f.kind) {
    case F_START_ERROR: u->start_error = true; break;
    case F_TRANSFER_SIZE: break;
    case F_STALL: u->dfu_faults.stall_at = (uint32_t)f.v; break;
    case F_DISCONNECT: u->dfu_faults.disconnect_after = (uint32_t)f.v; break;
    case F_LEAVE: u->dfu_faults.leave = f.leave; break;
    case F_CORRUPT_PAGE: st_flash_fault_corrupt_page(u->flash, (uint32_t)f.v); break;
    case F_PROG_ERROR: st_flash_fault_prog_error(u->flash, (uint32_t)f.v); break;
    case F_SLOW_ERASE: st_flash_fault_slow_erase(u->flash, (unsigned)f.v); break;
    case F_POWER_LOSS: st_flash_fault_power_loss_after(u->flash, f.v); break;
    case F_KAT_POWER_LOSS: st_katapult_model_fault_power_loss_at_block(u->kat, nth); break;
    case F_KAT_DROP_RX: st_katapult_model_fault_drop_rx(u->kat, nth); break;
    case F_KAT_DROP_TX: st_katapult_model_fault_drop_tx(u->kat, nth); break;
    case F_KAT_CORRUPT_RX: st_katapult_model_fault_corrupt_rx(u->kat, nth); break;
    case F_KAT_CORRUPT_TX: st_katapult_model_fault_corrupt_tx(u->kat, nth); break;
    case F_KAT_NACK_STORM: st_katapult_model_fault_nack_storm(u->kat, nth); break;
    case F_KAT_SILENT_COMPLETE: st_katapult_model_fault_silent_complete(u->kat, true); break;
    case F_KAT_MCU: break;
    case F_KLP_SENSOR:
        u->klp_faults.sensor = strcmp(f.arg, "stuck") == 0 ? ST_KLP_SENSOR_STUCK
                                                           : ST_KLP_SENSOR_NORMAL;
        break;
    case F_KLP_TEMP:
        u->klp_faults.temp_set = true;
        u->klp_faults.temp = (uint32_t)f.v;
        break;
    case F_KLP_DROP: u->klp_faults.drop_every = (unsigned)f.v; break;
    case F_KLP_BAD_CRC: u->klp_faults.bad_crc_every = (unsigned)f.v; break;
    case F_KLP_SILENT: u->klp_faults.silent = true; break;
    case F_RDP: st_flash_set_rdp(u->flash, true); break;
    case F_UART:
        if (!u->uart_rom || !st_an_model_fault(u->uart_rom, f.arg)) {
            pthread_mutex_unlock(&u->lock);
            return st_err_set(err, ST_ERR_INVAL, "fault \"%s\": this unit's ROM has no USART "
                              "bootloader model", fault);
        }
        break;
    }
    if (f.kind >= F_KAT_POWER_LOSS && f.kind <= F_KAT_SILENT_COMPLETE)
        u->kat_faults_armed = true;
    st_dfu_model_set_faults(u->dfu, &u->dfu_faults);
    if (u->klp)
        st_klp_model_set_faults(u->klp, &u->klp_faults);
    pthread_mutex_unlock(&u->lock);
    return 0;
}

void st_vunit_clear_faults(st_vunit *u)
{
    pthread_mutex_lock(&u->lock);
    u->start_error = false;
    memset(&u->dfu_faults, 0, sizeof u->dfu_faults);
    st_dfu_model_set_faults(u->dfu, &u->dfu_faults);
    st_flash_fault_disarm(u->flash);
    st_flash_set_rdp(u->flash, false);
    st_katapult_model_fault_clear(u->kat);
    u->kat_faults_armed = false;
    memset(&u->klp_faults, 0, sizeof u->klp_faults);
    if (u->klp)
        st_klp_model_set_faults(u->klp, &u->klp_faults);
    if (u->uart_rom) {
        static const char *const off[] = { "nack:0", "silent:0", "noise-rx:0", "noise-tx:0",
                                           "late-start:0", NULL };
        for (size_t i = 0; off[i]; i++)
            st_an_model_fault(u->uart_rom, off[i]);
    }
    pthread_mutex_unlock(&u->lock);
}

int st_vunit_new(const st_vunit_config *cfg, const st_vunit_usb_port *port,
                 const st_vunit_can_port *can, st_vunit **out, st_err *err)
{
    st_vunit *u = calloc(1, sizeof *u);
    if (!u)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&u->lock, NULL);
    u->mcu = cfg->mcu;
    u->port = *port;
    if (can)
        u->can = *can;
    u->can_transport = cfg->can_transport;
    u->uart_transport = cfg->uart_transport && !cfg->can_transport;
    u->boot_select_low = cfg->boot_select_low;
    u->dtr_wire = cfg->dtr;
    u->rts_wire = cfg->rts;
    memcpy(u->can_uuid, cfg->can_uuid, 6);
    u->power = u->nrst = 1;
    /* BOOT0 rests at the level that selects the flash. */
    u->boot0 = u->boot_select_low ? 1 : 0;
    uint16_t xfer = 0;
    char kat_mcu[32] = "";
    for (size_t i = 0; i < cfg->n_faults; i++) {
        fault_spec f;
        if (parse_fault(cfg->faults[i], cfg->mcu, &f, err) != 0)
            return st_vunit_free(u), ST_ERR_INVAL;
        if (f.kind == F_TRANSFER_SIZE)
            xfer = (uint16_t)f.v;
        if (f.kind == F_KAT_MCU)
            st_strlcpy(kat_mcu, f.arg, sizeof kat_mcu);
    }
    if (cfg->dfu_serial && strlen(cfg->dfu_serial) > ST_VUNIT_SERIAL_MAX)
        return st_vunit_free(u), st_err_set(err, ST_ERR_INVAL,
                                            "serial: %zu characters, at most %d",
                                            strlen(cfg->dfu_serial), ST_VUNIT_SERIAL_MAX);
    if (cfg->holds && st_vunit_check_holds(cfg->mcu, cfg->holds_addr, cfg->holds_len, err) != 0)
        return st_vunit_free(u), ST_ERR_INVAL;
    st_strlcpy(u->serial, cfg->dfu_serial ? cfg->dfu_serial : "208A31574253", sizeof u->serial);
    u->flash = st_flash_new(cfg->mcu, cfg->timing);
    st_dfu_model_config dc = { .serial = u->serial, .transfer_size = xfer,
                               .on_leave = on_dfu_leave, .on_leave_ctx = u };
    u->dfu = u->flash ? st_dfu_model_new(u->flash, &dc) : NULL;
    u->app = st_klipper_app_new(on_app_bootloader_request, u);
    char app_serial[48];
    snprintf(app_serial, sizeof app_serial, "%s", u->serial);
    st_cdc_identity id = { .vid = cfg->mcu->usb_klipper.vid, .pid = cfg->mcu->usb_klipper.pid,
                           .bcd_device = 0x0100,
                           .manufacturer = "Klipper", .product = cfg->mcu->name,
                           .serial = app_serial };
    u->app_usb = u->app ? st_cdc_acm_new(&id, st_klipper_app_stream(u->app)) : NULL;
    st_katapult_model_cfg kc = { .with_can = cfg->can_transport, .on_reset = on_katapult_reset,
                                 .reset_ctx = u, .mcu = kat_mcu[0] ? kat_mcu : NULL };
    memcpy(kc.uuid, cfg->can_uuid, 6);
    if (cfg->timing == ST_TIMING_DATASHEET && !cfg->can_transport)
        kc.turnaround_us = 1000; /* USB full-speed CDC: one 1 ms frame per exchange */
    u->kat = u->flash ? st_katapult_model_new(u->flash, &kc) : NULL;
    st_cdc_identity kid = { .vid = cfg->mcu->usb_katapult.vid, .pid = cfg->mcu->usb_katapult.pid,
                            .bcd_device = 0x0100,
                            .manufacturer = "katapult", .product = cfg->mcu->name,
                            .serial = app_serial };
    u->kat_usb = u->kat ? st_cdc_acm_new(&kid, st_katapult_model_stream(u->kat)) : NULL;
    st_can_stream_node_cfg kcn = { .app = 0x11 };
    memcpy(kcn.uuid, cfg->can_uuid, 6);
    u->kat_can = u->kat ? st_can_stream_node_new(st_katapult_model_stream(u->kat), &kcn) : NULL;
    st_klipper_node_cfg kn = { .on_bootloader_request = on_app_bootloader_request, .ctx = u,
                               .app = u->app ? st_klipper_app_stream(u->app) : NULL };
    memcpy(kn.uuid.b, cfg->can_uuid, 6);
    u->app_can = st_klipper_node_new(&kn);
    if (!u->dfu || !u->app_usb || !u->kat || !u->kat_usb || !u->kat_can || !u->app_can) {
        st_vunit_free(u);
        return st_err_set(err, ST_ERR_NOMEM, "cannot create the unit's device models");
    }
    /* The ROM's USART bootloader, when the part is in the AN3155 table. */
    st_an_model_cfg ac = { .on_exit = on_uart_exit, .ctx = u,
                           .baud = 115200, .accept_8n1 = cfg->uart_on_pty };
    /* The unique ID the ROM reads back: the ROM DFU's serial is derived from it on real
     * parts, so the same unit shows the same identity on both paths. */
    for (size_t i = 0; i < 12 && u->serial[i]; i++) {
        int v = st_hexval(u->serial[i]);
        ac.uid[6 + i / 2] |= (uint8_t)((v < 0 ? 0 : v) << (i % 2 ? 0 : 4));
    }
    ac.uid[0] = 0x20;
    u->uart_rom = st_an_model_new(u->flash, &ac);
    u->uart.ops = &uart_ops;
    if (cfg->holds)
        st_flash_preload(u->flash, cfg->holds_addr, cfg->holds, cfg->holds_len);
    for (size_t i = 0; i < cfg->n_faults; i++) {
        fault_spec f;
        if (parse_fault(cfg->faults[i], cfg->mcu, &f, NULL) == 0 &&
            (f.kind == F_TRANSFER_SIZE || f.kind == F_KAT_MCU))
            continue;
        int rc = st_vunit_apply_fault(u, cfg->faults[i], err);
        if (rc) {
            st_vunit_free(u);
            return rc;
        }
    }
    pthread_mutex_lock(&u->lock);
    present(u, boot(u));
    pthread_mutex_unlock(&u->lock);
    if (pthread_create(&u->clock, NULL, unit_clock, u) == 0)
        u->clock_running = true;
    *out = u;
    return 0;
}

void st_vunit_free(st_vunit *u)
{
    if (!u)
        return;
    if (u->clock_running) {
        pthread_mutex_lock(&u->lock);
        u->stopping = true;
        pthread_mutex_unlock(&u->lock);
        pthread_join(u->clock, NULL);
    }
    if (u->attached && u->port.detach)
        u->port.detach(u->port.ctx);
    if (u->on_can)
        u->can.detach(u->can.ctx, u->on_can);
    st_klipper_node_free(u->app_can);
    st_can_stream_node_free(u->kat_can);
    st_cdc_acm_free(u->kat_usb);
    st_katapult_model_free(u->kat);
    st_cdc_acm_free(u->app_usb);
    st_klipper_app_free(u->app);
    st_klp_model_free(u->klp);
    free(u->klp_z);
    free(u->app_z);
    st_dfu_model_free(u->dfu);
    st_an_model_free(u->uart_rom);
    st_flash_free(u->flash);
    pthread_mutex_destroy(&u->lock);
    free(u);
}

const char *st_vunit_state(st_vunit *u)
{
    pthread_mutex_lock(&u->lock);
    const char *s = mode_names[u->mode];
    pthread_mutex_unlock(&u->lock);
    return s;
}

st_flash *st_vunit_flash(st_vunit *u)
{
    return u->flash;
}

unsigned st_vunit_boots(st_vunit *u)
{
    pthread_mutex_lock(&u->lock);
    unsigned b = u->boots;
    pthread_mutex_unlock(&u->lock);
    return b;
}
