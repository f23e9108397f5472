/* STM32G431 ROM DFU bootloader model: see dfu_model.h and PROTOCOL.md. Facts from
 * shared/reference/protocols.md §1 (cited below as §1.x). */
#include "protocols/dfuse/dfu_model.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "station/core/clock.h"
#include "station/core/mcu.h"
#include "station/core/text.h"

/* §1.2 states and statuses. */
enum {
    S_APP_IDLE = 0, S_IDLE = 2, S_DNLOAD_SYNC = 3, S_DNBUSY = 4, S_DNLOAD_IDLE = 5,
    S_MANIFEST_SYNC = 6, S_MANIFEST = 7, S_UPLOAD_IDLE = 9, S_ERROR = 10,
};
enum {
    E_OK = 0x00, E_TARGET = 0x01, E_PROG = 0x06, E_CHECK_ERASED = 0x05, E_ADDRESS = 0x08,
    E_VENDOR = 0x0B, E_UNKNOWN = 0x0E, E_STALLEDPKT = 0x0F,
};
/* §1.1 class requests. */
enum { R_DETACH, R_DNLOAD, R_UPLOAD, R_GETSTATUS, R_CLRSTATUS, R_GETSTATE, R_ABORT };

#define MAX_XFER 4096
#define CFG_LEN (9 + 3 * 9 + 9)

/* §1.6: alt names as dfu-util lists a G431, byte-exact (three spaces of padding), built
 * from the MCU table so a test MCU with more flash gets a matching layout. */
static void alt_names(const st_mcu *mcu, char names[3][64])
{
    uint32_t pk = mcu->page_size / 1024;
    snprintf(names[0], 64, "@Internal Flash   /0x%08X/%02u*%02uKg", (unsigned)mcu->flash_start,
             (unsigned)(mcu->flash_size / mcu->page_size), (unsigned)pk);
    snprintf(names[1], 64, "@Option Bytes   /0x%08X/01*%02uBe", (unsigned)mcu->optbytes_start,
             (unsigned)mcu->optbytes_size);
    snprintf(names[2], 64, "@OTP Memory   /0x%08X/01*%02uKe", (unsigned)mcu->otp_start,
             (unsigned)(mcu->otp_size / 1024));
}

typedef enum pending_kind { P_NONE, P_CMD, P_DATA } pending_kind;

struct st_dfu_model {
    st_usb_model usb;
    pthread_mutex_t lock;
    st_flash *flash;
    const st_mcu *mcu;
    st_dfu_model_config cfg;
    char serial[ST_DFU_MODEL_SERIAL_MAX + 1];
    uint16_t xfer;
    uint8_t devd[18];
    uint8_t cfgd[CFG_LEN];
    const char *strings[6];
    char names[3][64];
    st_usb_model_desc desc;
    int alt;
    uint8_t state, status;
    uint32_t pointer;
    pending_kind pending;
    uint8_t buf[MAX_XFER];
    uint16_t len, block;
    uint8_t result;          /* status the completing GETSTATUS reports */
    uint64_t busy_until_us;
    bool gone;
    st_dfu_model_faults faults;
    st_dfu_model_counts counts;
    uint64_t bus_cursor_us;  /* end of the last modelled wire transfer */
};

uint64_t st_dfu_wire_us(uint32_t len)
{
    /* A full-speed transaction = token (SYNC+PID+addr/endp+CRC5+EOP = 35 bits) + data
     * packet (SYNC+PID+payload+CRC16+EOP = 35 + 8n bits) + handshake (SYNC+PID+EOP = 19
     * bits): 89 + 8n bits, no bit stuffing, no inter-packet gaps (a floor, not an
     * average). A control transfer = SETUP (8 bytes) + ceil(len/64) data transactions +
     * a zero-length status transaction. 12 bits per microsecond. */
    uint64_t bits = 89 + 64;
    for (uint32_t left = len; left > 0;) {
        uint32_t n = left > 64 ? 64 : left;
        bits += 89 + 8ull * n;
        left -= n;
    }
    bits += 89;
    return (bits + 11) / 12;
}

/* Modelled device time must be accurate to a few microseconds or the benchmark measures
 * nanosleep overshoot (~60 us per call against ~25 us of wire time per request): sleep
 * the bulk, spin the last stretch. */
static void wait_until(uint64_t t)
{
    uint64_t now = st_now_us();
    if (t > now + 400)
        st_sleep_us(t - now - 300);
    while (st_now_us() < t)
        ;
}

static void build_descriptors(st_dfu_model *m)
{
    /* §1.4/§1.6: the ROM's USB id from the MCU table (0483:df11 on every STM32 so far),
     * bcdDevice 0x0200, strings 1..3. */
    const st_usb_id id = m->mcu->usb_rom_dfu;
    const uint8_t dev[18] = {18, 1, 0x00, 0x02, 0, 0, 0, 64,
                             (uint8_t)(id.vid & 0xff), (uint8_t)(id.vid >> 8),
                             (uint8_t)(id.pid & 0xff), (uint8_t)(id.pid >> 8),
                             0x00, 0x02, 1, 2, 3, 1};
    memcpy(m->devd, dev, sizeof dev);
    uint8_t *c = m->cfgd;
    const uint8_t head[9] = {9, 2, CFG_LEN, 0, 1, 1, 0, 0x80, 50};
    memcpy(c, head, 9);
    for (int alt = 0; alt < 3; alt++) {
        /* DFU-mode interface: class 0xFE, subclass 1, protocol 2 (§1.4). */
        const uint8_t intf[9] = {9, 4, 0, (uint8_t)alt, 0, 0xFE, 0x01, 0x02, (uint8_t)(4 + alt)};
        memcpy(c + 9 + 9 * alt, intf, 9);
    }
    /* Functional descriptor: attributes 0x0B, detach 255 ms, wTransferSize, DfuSe 0x011A. */
    const uint8_t func[9] = {9, 0x21, 0x0B, 255, 0, (uint8_t)(m->xfer & 0xff),
                             (uint8_t)(m->xfer >> 8), 0x1A, 0x01};
    memcpy(c + 36, func, 9);
    m->strings[0] = "STMicroelectronics";
    m->strings[1] = "STM32  BOOTLOADER";
    m->strings[2] = m->serial;
    alt_names(m->mcu, m->names);
    for (int i = 0; i < 3; i++)
        m->strings[3 + i] = m->names[i];
    m->desc = (st_usb_model_desc){m->devd, m->cfgd, CFG_LEN, m->strings, 6};
}

static void power_on(st_dfu_model *m)
{
    m->state = m->cfg.start_in_error ? S_ERROR : S_IDLE;
    m->status = m->cfg.start_in_error ? E_UNKNOWN : E_OK;
    m->pointer = m->mcu->flash_start; /* AN2662 §4.4.1 default */
    m->pending = P_NONE;
    m->alt = 0;
    m->gone = false;
    m->busy_until_us = 0;
}

static const st_usb_model_ops dfu_ops;

st_dfu_model *st_dfu_model_new(st_flash *flash, const st_dfu_model_config *cfg)
{
    st_dfu_model_config c = cfg ? *cfg : (st_dfu_model_config){0};
    if (!c.serial)
        c.serial = "208A31574253";
    if (!c.transfer_size)
        c.transfer_size = 2048;
    if (c.transfer_size > MAX_XFER || strlen(c.serial) > ST_DFU_MODEL_SERIAL_MAX || !flash)
        return NULL;
    /* No USB id in the MCU table: its ROM has no USB DFU (the F103), so there is nothing to model. */
    const st_mcu *mcu = st_flash_mcu(flash);
    if (!mcu || (!mcu->usb_rom_dfu.vid && !mcu->usb_rom_dfu.pid))
        return NULL;
    st_dfu_model *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->usb.ops = &dfu_ops;
    pthread_mutex_init(&m->lock, NULL);
    m->flash = flash;
    m->mcu = mcu;
    m->cfg = c;
    st_strlcpy(m->serial, c.serial, sizeof m->serial);
    m->cfg.serial = m->serial;
    m->xfer = c.transfer_size;
    build_descriptors(m);
    power_on(m);
    return m;
}

void st_dfu_model_free(st_dfu_model *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

st_usb_model *st_dfu_model_usb(st_dfu_model *m)
{
    return &m->usb;
}

st_flash *st_dfu_model_flash(st_dfu_model *m)
{
    return m->flash;
}

void st_dfu_model_reset(st_dfu_model *m)
{
    pthread_mutex_lock(&m->lock);
    power_on(m);
    pthread_mutex_unlock(&m->lock);
}

void st_dfu_model_set_state(st_dfu_model *m, uint8_t state, uint8_t status)
{
    pthread_mutex_lock(&m->lock);
    m->state = state;
    m->status = status;
    pthread_mutex_unlock(&m->lock);
}

void st_dfu_model_set_faults(st_dfu_model *m, const st_dfu_model_faults *f)
{
    pthread_mutex_lock(&m->lock);
    m->faults = f ? *f : (st_dfu_model_faults){0};
    pthread_mutex_unlock(&m->lock);
}

void st_dfu_model_get_counts(st_dfu_model *m, st_dfu_model_counts *out)
{
    pthread_mutex_lock(&m->lock);
    *out = m->counts;
    pthread_mutex_unlock(&m->lock);
}

void st_dfu_model_reset_counts(st_dfu_model *m)
{
    pthread_mutex_lock(&m->lock);
    memset(&m->counts, 0, sizeof m->counts);
    pthread_mutex_unlock(&m->lock);
}

static bool in_range(uint64_t a, uint64_t len, uint32_t start, uint32_t size)
{
    return size && a >= start && a + len <= (uint64_t)start + size;
}

/* The memory an alt setting addresses (§1.6 strings). */
static void alt_region(const st_dfu_model *m, uint32_t *start, uint32_t *size)
{
    if (m->alt == 1) {
        *start = m->mcu->optbytes_start;
        *size = m->mcu->optbytes_size;
    } else if (m->alt == 2) {
        *start = m->mcu->otp_start;
        *size = m->mcu->otp_size;
    } else {
        *start = m->mcu->flash_start;
        *size = m->mcu->flash_size;
    }
}

static uint8_t flash_status(int rc)
{
    switch (rc) {
    case ST_FLASH_OK: return E_OK;
    case ST_FLASH_ERR_PROG: return E_PROG;
    /* Programming a non-blank double word: the G4 sets PROGERR; which DFU status the ROM
     * reports is UNCONFIRMED, errCHECK_ERASED says it best. */
    case ST_FLASH_ERR_NOT_ERASED: return E_CHECK_ERASED;
    case ST_FLASH_ERR_PROTECTED: return E_VENDOR; /* §1.5: RDP -> errVENDOR */
    default: return E_ADDRESS;
    }
}

typedef enum after { A_NONE, A_LEAVE, A_RESET, A_POWER_LOST } after;

/* Run the pending command or write (§1.5 "Execution model"); returns the device time. */
static uint64_t execute(st_dfu_model *m, after *then)
{
    uint64_t cost = 0;
    int rc = ST_FLASH_OK;
    m->result = E_OK;
    if (m->pending == P_CMD) {
        uint8_t op = m->buf[0];
        uint32_t a = m->len >= 5 ? (uint32_t)m->buf[1] | (uint32_t)m->buf[2] << 8 |
                                       (uint32_t)m->buf[3] << 16 | (uint32_t)m->buf[4] << 24
                                 : 0;
        const st_mcu *mcu = m->mcu;
        if (op == 0x00 && m->len == 1) {
            m->counts.cmd_get++;
        } else if (op == 0x21 && m->len == 5) {
            m->counts.cmd_set_address++;
            /* Still accepted under read protection (§1.5). */
            if (in_range(a, 1, mcu->flash_start, mcu->flash_size) ||
                in_range(a, 1, mcu->optbytes_start, mcu->optbytes_size) ||
                in_range(a, 1, mcu->otp_start, mcu->otp_size) ||
                in_range(a, 1, mcu->sram_start, mcu->sram_size))
                m->pointer = a;
            else
                m->result = E_TARGET;
        } else if (op == 0x41 && m->len == 5) {
            m->counts.cmd_erase++;
            if (!in_range(a, 1, mcu->flash_start, mcu->flash_size) || m->alt != 0)
                m->result = E_TARGET;
            else if (st_flash_rdp(m->flash))
                m->result = E_VENDOR;
            else
                rc = st_flash_erase_page(m->flash, a, &cost);
        } else if (op == 0x41 && m->len == 1) {
            m->counts.cmd_mass_erase++;
            if (st_flash_rdp(m->flash))
                m->result = E_VENDOR;
            else
                rc = st_flash_mass_erase(m->flash, &cost);
        } else if (op == 0x92 && m->len == 1) {
            /* Read Unprotect: regress RDP, mass-erase, reset (§1.5). */
            m->counts.cmd_unprotect++;
            st_flash_set_rdp(m->flash, false);
            rc = st_flash_mass_erase(m->flash, &cost);
            *then = A_RESET;
        } else {
            m->counts.cmd_bad++;
            m->result = E_STALLEDPKT; /* AN2662 Figure 55: unsupported command */
        }
    } else if (m->pending == P_DATA) {
        uint64_t a = (uint64_t)m->pointer + (uint64_t)(m->block - 2) * m->xfer; /* §1.5 */
        uint32_t start, size;
        alt_region(m, &start, &size);
        if (!in_range(a, m->len, start, size))
            m->result = E_ADDRESS;
        else if (m->alt == 0)
            rc = st_flash_program(m->flash, (uint32_t)a, m->buf, m->len, &cost);
        else if (m->alt == 1)
            rc = st_flash_write_optbytes(m->flash, (uint32_t)(a - start), m->buf, m->len);
        else
            m->result = E_TARGET; /* OTP programming is not modelled */
    }
    if (rc == ST_FLASH_ERR_POWER_LOST)
        *then = A_POWER_LOST;
    else if (rc != ST_FLASH_OK)
        m->result = flash_status(rc);
    m->pending = P_NONE;
    m->counts.device_us += cost;
    return cost;
}

static int status_reply(uint8_t *data, uint16_t wlength, uint8_t status, uint32_t poll_ms,
                        uint8_t state)
{
    uint8_t r[6] = {status, (uint8_t)poll_ms, (uint8_t)(poll_ms >> 8), (uint8_t)(poll_ms >> 16),
                    state, 0};
    size_t n = wlength < 6 ? wlength : 6;
    memcpy(data, r, n);
    return (int)n;
}

/* A request the state does not allow: stall and fall into dfuERROR (DFU 1.1 §6). */
static int refuse(st_dfu_model *m)
{
    m->state = S_ERROR;
    m->status = E_STALLEDPKT;
    m->pending = P_NONE;
    return ST_ERR_STALL;
}

static int getstatus(st_dfu_model *m, const st_usb_setup *s, uint8_t *data, after *then)
{
    m->counts.getstatus++;
    if (s->wLength < 6)
        return refuse(m);
    switch (m->state) {
    case S_DNLOAD_SYNC: {
        uint64_t cost = execute(m, then);
        if (*then == A_POWER_LOST)
            return ST_ERR_DISCONNECT;
        m->state = S_DNBUSY;
        m->busy_until_us = st_now_us() + (st_flash_timing(m->flash) == ST_TIMING_DATASHEET ? cost : 0);
        uint32_t poll = (uint32_t)((cost + 999) / 1000);
        return status_reply(data, s->wLength, E_OK, poll, S_DNBUSY);
    }
    case S_DNBUSY: {
        /* Asked before the flash is done: the device NAKs until it is. */
        uint64_t now = st_now_us();
        if (now < m->busy_until_us) {
            m->counts.busy_waits++;
            wait_until(m->busy_until_us);
        }
        if (m->result != E_OK) {
            m->state = S_ERROR;
            m->status = m->result;
        } else {
            m->state = S_DNLOAD_IDLE;
            m->status = E_OK;
        }
        return status_reply(data, s->wLength, m->status, 0, m->state);
    }
    case S_MANIFEST_SYNC:
        /* Leave (§1.5): execute, answer dfuMANIFEST (or not: the faults), jump. */
        *then = A_LEAVE;
        m->state = S_MANIFEST;
        if (m->faults.leave == ST_DFU_LEAVE_STALL)
            return ST_ERR_STALL;
        if (m->faults.leave == ST_DFU_LEAVE_VANISH)
            return ST_ERR_DISCONNECT;
        return status_reply(data, s->wLength, E_OK, 0, S_MANIFEST);
    default:
        return status_reply(data, s->wLength, m->status, 0, m->state);
    }
}

static int dnload(st_dfu_model *m, const st_usb_setup *s, const uint8_t *data, after *then)
{
    m->counts.dnload++;
    if (m->state != S_IDLE && m->state != S_DNLOAD_IDLE)
        return refuse(m);
    /* Commands are up to 5 bytes even when a test configures a tinier wTransferSize
     * (a real part never has wTransferSize < 5). */
    if (s->wLength > (s->wValue == 0 && m->xfer < 5 ? 5 : m->xfer))
        return refuse(m);
    if (s->wLength == 0) {
        /* Leave request (§1.5): only wLength matters. */
        m->counts.leave++;
        if (m->faults.leave == ST_DFU_LEAVE_STALL_DNLOAD) {
            *then = A_LEAVE;
            return ST_ERR_STALL;
        }
        m->state = S_MANIFEST_SYNC;
        return 0;
    }
    if (s->wValue == 1)
        return refuse(m); /* wBlockNum 1 has no meaning (§1.5, UNCONFIRMED reaction) */
    memcpy(m->buf, data, s->wLength);
    m->len = s->wLength;
    m->block = s->wValue;
    m->pending = s->wValue == 0 ? P_CMD : P_DATA;
    if (m->pending == P_DATA)
        m->counts.data_blocks++;
    m->counts.bytes_down += s->wLength;
    m->state = S_DNLOAD_SYNC;
    return 0;
}

static int upload(st_dfu_model *m, const st_usb_setup *s, uint8_t *data)
{
    m->counts.upload++;
    if (m->state != S_IDLE && m->state != S_UPLOAD_IDLE)
        return refuse(m);
    if (s->wValue == 0) {
        /* Get Commands (§1.5; the F105 list, UNCONFIRMED for the G431). */
        static const uint8_t cmds[4] = {0x00, 0x21, 0x41, 0x92};
        size_t n = s->wLength < 4 ? s->wLength : 4;
        memcpy(data, cmds, n);
        m->state = S_UPLOAD_IDLE;
        return (int)n;
    }
    if (s->wValue == 1 || s->wLength > m->xfer)
        return refuse(m);
    uint64_t a = (uint64_t)m->pointer + (uint64_t)(s->wValue - 2) * m->xfer;
    uint32_t start, size;
    alt_region(m, &start, &size);
    if (!in_range(a, 1, start, size)) {
        refuse(m);
        m->status = E_ADDRESS;
        return ST_ERR_STALL;
    }
    uint64_t end = (uint64_t)start + size;
    size_t n = a + s->wLength > end ? (size_t)(end - a) : s->wLength;
    if (st_flash_read(m->flash, (uint32_t)a, data, n) != ST_FLASH_OK) {
        refuse(m);
        m->status = E_VENDOR; /* read protection (§1.5) */
        return ST_ERR_STALL;
    }
    m->counts.bytes_up += n;
    m->state = S_UPLOAD_IDLE;
    return (int)n;
}

static int class_request(st_dfu_model *m, const st_usb_setup *s, uint8_t *data, after *then)
{
    if ((s->wIndex & 0xff) != 0)
        return refuse(m);
    switch (s->bRequest) {
    case R_DETACH:
        m->counts.detach++;
        return 0; /* already in DFU mode: nothing to do */
    case R_DNLOAD:
        return dnload(m, s, data, then);
    case R_UPLOAD:
        return upload(m, s, data);
    case R_GETSTATUS:
        return getstatus(m, s, data, then);
    case R_CLRSTATUS:
        m->counts.clrstatus++;
        if (m->state != S_ERROR)
            return refuse(m);
        m->state = S_IDLE;
        m->status = E_OK;
        return 0;
    case R_GETSTATE:
        m->counts.getstate++;
        if (s->wLength < 1)
            return refuse(m);
        data[0] = m->state;
        return 1;
    case R_ABORT:
        m->counts.abort++;
        if (m->state == S_ERROR || m->state == S_DNBUSY || m->state == S_APP_IDLE)
            return refuse(m);
        m->state = S_IDLE;
        m->status = E_OK;
        m->pending = P_NONE;
        return 0;
    default:
        return refuse(m);
    }
}

static int dfu_control(st_usb_model *um, const st_usb_setup *s, uint8_t *data)
{
    st_dfu_model *m = (st_dfu_model *)um;
    pthread_mutex_lock(&m->lock);
    if (m->gone) {
        pthread_mutex_unlock(&m->lock);
        return ST_ERR_DISCONNECT;
    }
    m->counts.total++;
    after then = A_NONE;
    int rc = st_usb_model_std_control(&m->desc, s, data, &m->alt);
    if (rc != ST_ERR_UNSUPPORTED) {
        m->counts.standard++;
    } else if ((s->bmRequestType & 0x60) != 0x20) {
        rc = ST_ERR_STALL; /* vendor requests: none */
    } else {
        uint32_t n = ++m->counts.class_reqs;
        if (m->faults.disconnect_after && n > m->faults.disconnect_after) {
            m->gone = true;
            rc = ST_ERR_DISCONNECT;
        } else if (m->faults.stall_at == n) {
            rc = refuse(m);
        } else {
            rc = class_request(m, s, data, &then);
        }
    }
    if (rc == ST_ERR_STALL)
        m->counts.stalls++;
    if (then != A_NONE)
        m->gone = true;
    uint32_t jump = then == A_RESET ? ST_DFU_MODEL_RESET : m->pointer;
    uint64_t wake = 0;
    if (st_flash_timing(m->flash) == ST_TIMING_DATASHEET && rc != ST_ERR_DISCONNECT) {
        uint64_t wire = st_dfu_wire_us(rc > 0 ? (uint32_t)rc : (s->bmRequestType & 0x80 ? 0 : s->wLength));
        uint64_t now = st_now_us();
        m->bus_cursor_us = (m->bus_cursor_us > now ? m->bus_cursor_us : now) + wire;
        m->counts.wire_us += wire;
        wake = m->bus_cursor_us;
    }
    void (*hook)(void *, uint32_t) = m->cfg.on_leave;
    void *ctx = m->cfg.on_leave_ctx;
    pthread_mutex_unlock(&m->lock);
    /* Wire time is slept outside the lock, to an absolute time so sleep overshoot does not
     * accumulate over a job. */
    if (wake)
        wait_until(wake);
    if ((then == A_LEAVE || then == A_RESET) && hook)
        hook(ctx, jump);
    return rc;
}

static const st_usb_model_ops dfu_ops = {.control = dfu_control};

int st_dfu_model_device_limit(st_dfu_model *m, const st_image *img, bool skip_identical,
                              bool verify, st_dfu_limit *out)
{
    memset(out, 0, sizeof *out);
    const st_mcu *mcu = m->mcu;
    if (!img->size || !in_range(img->load_addr, img->size, mcu->flash_start, mcu->flash_size))
        return ST_ERR_INVAL;
    uint32_t ps = mcu->page_size, xfer = m->xfer;
    uint64_t end = (uint64_t)img->load_addr + img->size;
    uint8_t *page = malloc(ps);
    if (!page)
        return ST_ERR_NOMEM;
    uint32_t first = (img->load_addr - mcu->flash_start) / ps * ps + mcu->flash_start;
    for (uint64_t p = first; p < end; p += ps) {
        uint64_t lo = p > img->load_addr ? p : img->load_addr;
        uint64_t hi = p + ps < end ? p + ps : end;
        size_t n = (size_t)(hi - lo);
        const uint8_t *want = img->data + (lo - img->load_addr);
        if (skip_identical) {
            if (st_flash_read(m->flash, (uint32_t)lo, page, n) != ST_FLASH_OK) {
                free(page);
                return ST_ERR_DEVICE;
            }
            if (memcmp(page, want, n) == 0)
                continue;
        }
        out->pages_erased++;
        out->erase_us += mcu->page_erase_us;
        uint64_t d0 = (lo - mcu->flash_start) & ~7ull, d1 = (hi - mcu->flash_start + 7) & ~7ull;
        out->program_us += (d1 - d0) / 8 * mcu->dword_program_us;
        for (uint64_t a = lo; a < hi; a += xfer)
            out->wire_write_us += st_dfu_wire_us((uint32_t)(hi - a < xfer ? hi - a : xfer));
    }
    free(page);
    uint64_t one_read = 0;
    for (uint64_t a = img->load_addr; a < end; a += xfer)
        one_read += st_dfu_wire_us((uint32_t)(end - a < xfer ? end - a : xfer));
    out->wire_read_us = one_read * ((skip_identical ? 1u : 0u) + (verify ? 1u : 0u));
    out->total_us = out->erase_us + out->program_us + out->wire_write_us + out->wire_read_us;
    return 0;
}
