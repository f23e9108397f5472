/* USB CDC-ACM device model (USB CDC 1.2 PSTN: SET_LINE_CODING 0x20, GET_LINE_CODING 0x21,
 * SET_CONTROL_LINE_STATE 0x22). Descriptors follow Klipper's src/generic/usb_cdc.c layout:
 * a communication interface with an interrupt endpoint and a data interface with a bulk
 * pair, so the kernel's cdc_acm driver binds to it in the rig. */
#include "protocols/sim/cdc_acm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "station/core/clock.h"
#include "station/core/text.h"

#define EP_NOTIFY 0x81
#define EP_OUT 0x02
#define EP_IN 0x82

struct st_cdc_acm {
    st_usb_model usb;
    st_stream_model *inner;
    uint8_t device[18];
    char manufacturer[64], product[64], serial[64];
    const char *strings[3];
    st_usb_model_desc desc;
    uint8_t line_coding[7];
    int dtr, rts;
    /* The inner model is single-threaded (stream.h); host transfers and st_cdc_acm_poll may
     * come from different threads. */
    pthread_mutex_t lock;
};

static const uint8_t config_desc[] = {
    /* configuration: 2 interfaces, bus powered, 100 mA */
    9, 2, 67, 0, 2, 1, 0, 0x80, 50,
    /* interface 0: CDC communication, ACM, AT commands */
    9, 4, 0, 0, 1, 0x02, 0x02, 0x01, 0,
    5, 0x24, 0x00, 0x10, 0x01,       /* header, CDC 1.10 */
    5, 0x24, 0x01, 0x00, 0x01,       /* call management */
    4, 0x24, 0x02, 0x02,             /* ACM: line coding + serial state */
    5, 0x24, 0x06, 0x00, 0x01,       /* union: master 0, slave 1 */
    7, 5, EP_NOTIFY, 0x03, 8, 0, 255, /* interrupt IN */
    /* interface 1: CDC data */
    9, 4, 1, 0, 2, 0x0A, 0x00, 0x00, 0,
    7, 5, EP_OUT, 0x02, 64, 0, 0,
    7, 5, EP_IN, 0x02, 64, 0, 0,
};

static void notify_line(st_cdc_acm *d)
{
    if (!d->inner->ops->line)
        return;
    st_stream_line l;
    st_cdc_acm_line(d, &l, NULL, NULL);
    d->inner->ops->line(d->inner, &l, d->dtr, d->rts);
}

static int cdc_control(st_usb_model *m, const st_usb_setup *s, uint8_t *data)
{
    st_cdc_acm *d = (st_cdc_acm *)m;
    int rc = st_usb_model_std_control(&d->desc, s, data, NULL);
    if (rc != ST_ERR_UNSUPPORTED)
        return rc;
    if (s->bmRequestType == 0x21 && s->bRequest == 0x20 && s->wLength >= 7) {
        pthread_mutex_lock(&d->lock);
        memcpy(d->line_coding, data, 7);
        notify_line(d);
        pthread_mutex_unlock(&d->lock);
        return 0;
    }
    if (s->bmRequestType == 0xA1 && s->bRequest == 0x21) {
        size_t n = s->wLength < 7 ? s->wLength : 7;
        memcpy(data, d->line_coding, n);
        return (int)n;
    }
    if (s->bmRequestType == 0x21 && s->bRequest == 0x22) {
        pthread_mutex_lock(&d->lock);
        d->dtr = s->wValue & 1;
        d->rts = (s->wValue >> 1) & 1;
        notify_line(d);
        pthread_mutex_unlock(&d->lock);
        return 0;
    }
    if (s->bmRequestType == 0x21 && s->bRequest == 0x23)
        return 0; /* SEND_BREAK */
    return ST_ERR_STALL;
}

static int cdc_bulk_out(st_usb_model *m, uint8_t ep, const uint8_t *buf, size_t len)
{
    st_cdc_acm *d = (st_cdc_acm *)m;
    if (ep != EP_OUT)
        return ST_ERR_STALL;
    pthread_mutex_lock(&d->lock);
    d->inner->ops->rx(d->inner, buf, len, st_now_us());
    pthread_mutex_unlock(&d->lock);
    return (int)len;
}

static uint64_t cdc_next_in(st_usb_model *m, uint8_t ep)
{
    st_cdc_acm *d = (st_cdc_acm *)m;
    if (ep != EP_IN)
        return UINT64_MAX;
    pthread_mutex_lock(&d->lock);
    uint64_t t = d->inner->ops->next_event_us(d->inner);
    pthread_mutex_unlock(&d->lock);
    return t;
}

static int cdc_bulk_in(st_usb_model *m, uint8_t ep, uint8_t *buf, size_t cap)
{
    st_cdc_acm *d = (st_cdc_acm *)m;
    if (ep == EP_NOTIFY)
        return 0;
    if (ep != EP_IN)
        return ST_ERR_STALL;
    pthread_mutex_lock(&d->lock);
    int n = (int)d->inner->ops->tx(d->inner, buf, cap, st_now_us());
    pthread_mutex_unlock(&d->lock);
    return n;
}

void st_cdc_acm_poll(st_cdc_acm *d)
{
    /* A zero-capacity tx lets the model's time pass without taking any of its output. */
    uint8_t none[1];
    pthread_mutex_lock(&d->lock);
    if (d->inner->ops->next_event_us(d->inner) <= st_now_us())
        d->inner->ops->tx(d->inner, none, 0, st_now_us());
    pthread_mutex_unlock(&d->lock);
}

static const st_usb_model_ops cdc_ops = {
    .control = cdc_control,
    .bulk_out = cdc_bulk_out,
    .bulk_in = cdc_bulk_in,
    .next_in_us = cdc_next_in,
};

static void set_identity(st_cdc_acm *d, const st_cdc_identity *id)
{
    const uint8_t dev[18] = { 18, 1, 0x00, 0x02, 0x02, 0x00, 0x00, 64,
                              (uint8_t)id->vid, (uint8_t)(id->vid >> 8),
                              (uint8_t)id->pid, (uint8_t)(id->pid >> 8),
                              (uint8_t)id->bcd_device, (uint8_t)(id->bcd_device >> 8),
                              1, 2, 3, 1 };
    memcpy(d->device, dev, sizeof dev);
    st_strlcpy(d->manufacturer, id->manufacturer, sizeof d->manufacturer);
    st_strlcpy(d->product, id->product, sizeof d->product);
    st_strlcpy(d->serial, id->serial, sizeof d->serial);
}

void st_cdc_acm_set_identity(st_cdc_acm *d, const st_cdc_identity *id)
{
    /* No lock: the descriptors are read without one (control requests), and a detached
     * device has no call in flight (a bus's detach waits for them). Taking d->lock here
     * would also order it after the unit's lock, the reverse of a bulk transfer that asks
     * the unit for its bootloader. */
    set_identity(d, id);
}

st_cdc_acm *st_cdc_acm_new(const st_cdc_identity *id, st_stream_model *inner)
{
    st_cdc_acm *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->usb.ops = &cdc_ops;
    pthread_mutex_init(&d->lock, NULL);
    d->inner = inner;
    set_identity(d, id);
    d->strings[0] = d->manufacturer;
    d->strings[1] = d->product;
    d->strings[2] = d->serial;
    d->desc.device = d->device;
    d->desc.config = config_desc;
    d->desc.config_len = sizeof config_desc;
    d->desc.strings = d->strings;
    d->desc.nstrings = 3;
    /* 115200 8N1 until the host says otherwise */
    const uint8_t lc[7] = { 0x00, 0xC2, 0x01, 0x00, 0, 0, 8 };
    memcpy(d->line_coding, lc, sizeof lc);
    return d;
}

void st_cdc_acm_free(st_cdc_acm *d)
{
    if (!d)
        return;
    pthread_mutex_destroy(&d->lock);
    free(d);
}

st_usb_model *st_cdc_acm_usb(st_cdc_acm *d)
{
    return &d->usb;
}

void st_cdc_acm_line(const st_cdc_acm *d, st_stream_line *line, int *dtr, int *rts)
{
    static const char parity[] = "NOEMS";
    line->baud = (uint32_t)d->line_coding[0] | (uint32_t)d->line_coding[1] << 8 |
                 (uint32_t)d->line_coding[2] << 16 | (uint32_t)d->line_coding[3] << 24;
    line->stop_bits = d->line_coding[4] == 2 ? 2 : 1;
    line->parity = d->line_coding[5] < 5 ? parity[d->line_coding[5]] : '?';
    line->data_bits = d->line_coding[6];
    if (dtr)
        *dtr = d->dtr;
    if (rts)
        *rts = d->rts;
}
