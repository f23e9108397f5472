/* Virtual unit: boot logic over the device models (see vunit.h). */
#include "protocols/sim/vunit.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/canadmin/klipper_node.h"
#include "protocols/dfuse/dfu_model.h"
#include "protocols/katapult/katapult_model.h"
#include "protocols/sim/cdc_acm.h"
#include "protocols/sim/klipper_app.h"
#include "station/core/clock.h"
#include "station/core/text.h"
#include "station/core/yamldoc.h"

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
    st_dfu_model *dfu;
    st_klipper_app *app;
    st_cdc_acm *app_usb;
    st_katapult_model *kat;
    st_cdc_acm *kat_usb;          /* Katapult over USB-CDC (1d50:6177) */
    st_can_stream_node *kat_can;  /* Katapult on the CAN bus */
    st_klipper_node *app_can;     /* the Klipper application on the CAN bus */
    char serial[32];
    int boot0, nrst, power;
    mode mode;
    bool attached;
    st_can_node *on_can;          /* the node attached to the CAN bus, if any */
    bool kat_faults_armed;
    bool bootloader_request; /* RAM flag a running app leaves for Katapult */
    bool start_error;        /* the ROM enumerates in dfuERROR (fault) */
    unsigned boots;
    st_dfu_model_faults dfu_faults;
    pthread_t clock;              /* the unit's own clock: lets models' timers fire */
    bool clock_running, stopping;
};

/* A board keeps time whether or not the host talks to it: Katapult resets into the
 * application 100 ms after COMPLETE even when the host has closed the port. */
#define CLOCK_TICK_US 5000u
static void *unit_clock(void *arg)
{
    st_vunit *u = arg;
    for (;;) {
        st_sleep_us(CLOCK_TICK_US);
        pthread_mutex_lock(&u->lock);
        bool stop = u->stopping;
        bool kat_usb = u->mode == M_KATAPULT && !u->can_transport;
        pthread_mutex_unlock(&u->lock);
        if (stop)
            return NULL;
        if (kat_usb)
            st_cdc_acm_poll(u->kat_usb); /* may call on_katapult_reset: no lock held here */
    }
}

static uint32_t rd32(st_flash *f, uint32_t addr, bool *ok)
{
    uint8_t b[4];
    *ok = st_flash_read(f, addr, b, 4) == ST_FLASH_OK;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
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
    *reset = entry;
    return true;
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
    face f = { NULL, NULL };
    if (u->can_transport)
        f.can = st_can_stream_node_base(u->kat_can);
    else
        f.usb = st_cdc_acm_usb(u->kat_usb);
    return f;
}

static face app_face(st_vunit *u)
{
    u->mode = M_APP;
    face f = { NULL, NULL };
    if (u->can_transport) {
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
    face none = { NULL, NULL };
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
    }
    return app_face(u);
}

static face rom(st_vunit *u)
{
    u->mode = M_ROM;
    st_dfu_model_reset(u->dfu);
    if (u->start_error)
        st_dfu_model_set_state(u->dfu, 10 /* dfuERROR */, 0x0E /* errUNKNOWN */);
    st_dfu_model_set_faults(u->dfu, &u->dfu_faults);
    face f = { st_dfu_model_usb(u->dfu), NULL };
    return f;
}

/* Boot after reset/power-on. Called with the lock held. */
static face boot(st_vunit *u)
{
    u->boots++;
    /* A reset or power-on ends an injected power loss. */
    st_flash_power_restore(u->flash);
    bool ok;
    if (u->boot0 || rd32(u->flash, u->mcu->flash_start, &ok) == 0xFFFFFFFFu) {
        /* BOOT0 high, or main flash empty (PEMPTY): system memory, the ROM bootloader. */
        return rom(u);
    }
    return boot_code(u, u->mcu->flash_start);
}

/* Swap what is on the USB port and the CAN bus: detach the old faces, attach the new. */
static void present(st_vunit *u, face next)
{
    if (u->attached) {
        u->port.detach(u->port.ctx);
        u->attached = false;
    }
    if (u->on_can) {
        u->can.detach(u->can.ctx, u->on_can);
        u->on_can = NULL;
    }
    if (next.usb && u->port.attach(u->port.ctx, next.usb, NULL) == 0)
        u->attached = true;
    if (next.can && u->can.attach && u->can.attach(u->can.ctx, next.can, NULL) == 0)
        u->on_can = next.can;
}

static face no_face(void)
{
    face f = { NULL, NULL };
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

static void on_app_bootloader_request(void *ctx)
{
    st_vunit *u = ctx;
    pthread_mutex_lock(&u->lock);
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
    pthread_mutex_unlock(&u->lock);
}

void st_vunit_set_pin(st_vunit *u, st_vunit_pin pin, int level)
{
    pthread_mutex_lock(&u->lock);
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
    pthread_mutex_unlock(&u->lock);
}

/* Katapult resets into the application ~100 ms after COMPLETE (called from inside the
 * model, possibly on the CAN bus's thread with the bus locked). */
static void on_katapult_reset(void *ctx, st_katapult_model *m)
{
    st_vunit *u = ctx;
    pthread_mutex_lock(&u->lock);
    u->boots++;
    present(u, boot_code(u, u->mcu->flash_start));
    pthread_mutex_unlock(&u->lock);
}

static bool parse_num(const char *s, uint64_t *v)
{
    return st_parse_u64(s, v);
}

int st_vunit_apply_fault(st_vunit *u, const char *fault, st_err *err)
{
    char name[32] = "";
    const char *arg = strchr(fault, ':');
    size_t n = arg ? (size_t)(arg - fault) : strlen(fault);
    if (n >= sizeof name)
        n = sizeof name - 1;
    memcpy(name, fault, n);
    name[n] = '\0';
    if (arg)
        arg++;
    uint64_t v = 0;
    bool num = arg && parse_num(arg, &v);
    int rc = 0;
    pthread_mutex_lock(&u->lock);
    if (strcmp(name, "dfu-start-error") == 0 && !arg) {
        u->start_error = true;
    } else if (strcmp(name, "dfu-stall") == 0 && num && v > 0 && v < UINT32_MAX) {
        u->dfu_faults.stall_at = (uint32_t)v;
    } else if (strcmp(name, "dfu-disconnect") == 0 && num && v > 0 && v < UINT32_MAX) {
        u->dfu_faults.disconnect_after = (uint32_t)v;
    } else if (strcmp(name, "dfu-leave") == 0 && arg && strcmp(arg, "stall") == 0) {
        u->dfu_faults.leave = ST_DFU_LEAVE_STALL;
    } else if (strcmp(name, "dfu-leave") == 0 && arg && strcmp(arg, "vanish") == 0) {
        u->dfu_faults.leave = ST_DFU_LEAVE_VANISH;
    } else if (strcmp(name, "dfu-leave") == 0 && arg && strcmp(arg, "stall-dnload") == 0) {
        u->dfu_faults.leave = ST_DFU_LEAVE_STALL_DNLOAD;
    } else if (strcmp(name, "corrupt-page") == 0 && num && st_flash_in_main(u->flash, (uint32_t)v, 1)) {
        st_flash_fault_corrupt_page(u->flash, (uint32_t)v);
    } else if (strcmp(name, "prog-error") == 0 && num && st_flash_in_main(u->flash, (uint32_t)v, 1)) {
        st_flash_fault_prog_error(u->flash, (uint32_t)v);
    } else if (strcmp(name, "slow-erase") == 0 && num && v >= 1 && v <= 1000) {
        st_flash_fault_slow_erase(u->flash, (unsigned)v);
    } else if (strcmp(name, "power-loss") == 0 && num) {
        st_flash_fault_power_loss_after(u->flash, v);
    } else if (strncmp(name, "katapult-", 9) == 0 && num && v > 0 && v < UINT32_MAX) {
        const char *k = name + 9;
        unsigned nth = (unsigned)v;
        if (strcmp(k, "power-loss") == 0)
            st_katapult_model_fault_power_loss_at_block(u->kat, nth);
        else if (strcmp(k, "drop-rx") == 0)
            st_katapult_model_fault_drop_rx(u->kat, nth);
        else if (strcmp(k, "drop-tx") == 0)
            st_katapult_model_fault_drop_tx(u->kat, nth);
        else if (strcmp(k, "corrupt-rx") == 0)
            st_katapult_model_fault_corrupt_rx(u->kat, nth);
        else if (strcmp(k, "corrupt-tx") == 0)
            st_katapult_model_fault_corrupt_tx(u->kat, nth);
        else if (strcmp(k, "nack-storm") == 0)
            st_katapult_model_fault_nack_storm(u->kat, nth);
        else
            goto unknown;
        u->kat_faults_armed = true;
    } else if (strcmp(name, "katapult-silent-complete") == 0 && !arg) {
        st_katapult_model_fault_silent_complete(u->kat, true);
        u->kat_faults_armed = true;
    } else {
    unknown:;
        char shown[64];
        rc = st_err_set(err, ST_ERR_INVAL,
                        "unknown or malformed fault \"%s\" (faults: dfu-start-error, "
                        "dfu-stall:N, dfu-disconnect:N, dfu-leave:stall|vanish|stall-dnload, "
                        "corrupt-page:ADDR, prog-error:ADDR, slow-erase:FACTOR, power-loss:BYTES, "
                        "katapult-power-loss:N, katapult-drop-rx|drop-tx|corrupt-rx|corrupt-tx:N, "
                        "katapult-nack-storm:K, katapult-silent-complete)",
                        st_text_printable(fault, shown, sizeof shown));
    }
    st_dfu_model_set_faults(u->dfu, &u->dfu_faults);
    pthread_mutex_unlock(&u->lock);
    return rc;
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
    u->power = u->nrst = 1;
    uint16_t xfer = 0;
    for (size_t i = 0; i < cfg->n_faults; i++) {
        uint64_t v;
        if (strncmp(cfg->faults[i], "dfu-transfer-size:", 18) == 0) {
            if (!st_parse_u64(cfg->faults[i] + 18, &v) || v < 64 || v > 4096)
                return st_vunit_free(u), st_err_set(err, ST_ERR_INVAL,
                                                    "dfu-transfer-size must be 64..4096");
            xfer = (uint16_t)v;
        }
    }
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
                                 .reset_ctx = u };
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
    st_klipper_node_cfg kn = { .on_bootloader_request = on_app_bootloader_request, .ctx = u };
    memcpy(kn.uuid.b, cfg->can_uuid, 6);
    u->app_can = st_klipper_node_new(&kn);
    if (!u->dfu || !u->app_usb || !u->kat || !u->kat_usb || !u->kat_can || !u->app_can) {
        st_vunit_free(u);
        return st_err_set(err, ST_ERR_NOMEM, "cannot create the unit's device models");
    }
    if (cfg->holds)
        st_flash_preload(u->flash, cfg->holds_addr, cfg->holds, cfg->holds_len);
    for (size_t i = 0; i < cfg->n_faults; i++) {
        if (strncmp(cfg->faults[i], "dfu-transfer-size:", 18) == 0)
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
    st_dfu_model_free(u->dfu);
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
