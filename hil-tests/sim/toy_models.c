/* The toy models of toy_models.h. */
#include "hil-tests/sim/toy_models.h"

#include <stdlib.h>
#include <string.h>

/* ---- USB loopback ------------------------------------------------------------------- */

struct st_toy_usb {
    st_usb_model base;
    st_usb_model_desc desc;
    const char *strings[3];
    char serial[64];
    uint8_t echo[4096];
    size_t echo_len;
    uint8_t vendor[64];
    size_t vendor_len;
    int alt;
};

static const uint8_t toy_dev_desc[18] = {
    18, 1, 0x00, 0x02,  /* USB 2.0 */
    0xff, 0x00, 0x00, 64, /* vendor class, ep0 64 bytes */
    ST_TOY_USB_VID & 0xff, ST_TOY_USB_VID >> 8, ST_TOY_USB_PID & 0xff, ST_TOY_USB_PID >> 8,
    0x00, 0x01, 1, 2, 3, 1,
};

static const uint8_t toy_cfg_desc[39] = {
    9, 2, 39, 0, 1, 1, 0, 0x80, 50,
    9, 4, 0, 0, 3, 0xff, 0x00, 0x00, 0,
    7, 5, 0x01, 0x02, 64, 0, 0,  /* bulk OUT */
    7, 5, 0x81, 0x02, 64, 0, 0,  /* bulk IN */
    7, 5, 0x82, 0x03, 8, 0, 10,  /* interrupt IN, 10 ms */
};

static int toy_control(st_usb_model *m, const st_usb_setup *su, uint8_t *data)
{
    st_toy_usb *t = (st_toy_usb *)m;
    int rc = st_usb_model_std_control(&t->desc, su, data, &t->alt);
    if (rc != ST_ERR_UNSUPPORTED)
        return rc;
    if (su->bmRequestType == 0x40 && su->bRequest == 0x01) {
        if (su->wLength > sizeof(t->vendor))
            return ST_ERR_STALL;
        memcpy(t->vendor, data, su->wLength);
        t->vendor_len = su->wLength;
        return 0;
    }
    if (su->bmRequestType == 0xc0 && su->bRequest == 0x02) {
        size_t n = t->vendor_len < su->wLength ? t->vendor_len : su->wLength;
        memcpy(data, t->vendor, n);
        return (int)n;
    }
    return ST_ERR_STALL;
}

static int toy_bulk_out(st_usb_model *m, uint8_t ep, const uint8_t *data, size_t len)
{
    st_toy_usb *t = (st_toy_usb *)m;
    if (ep != 0x01)
        return ST_ERR_STALL;
    size_t room = sizeof(t->echo) - t->echo_len;
    size_t n = len < room ? len : room;
    memcpy(t->echo + t->echo_len, data, n);
    t->echo_len += n;
    return (int)n;
}

static int toy_bulk_in(st_usb_model *m, uint8_t ep, uint8_t *buf, size_t cap)
{
    st_toy_usb *t = (st_toy_usb *)m;
    if (ep == 0x82)
        return 0;
    if (ep != 0x81)
        return ST_ERR_STALL;
    size_t n = t->echo_len < cap ? t->echo_len : cap;
    memcpy(buf, t->echo, n);
    memmove(t->echo, t->echo + n, t->echo_len - n);
    t->echo_len -= n;
    return (int)n;
}

static const st_usb_model_ops toy_usb_ops = {toy_control, toy_bulk_out, toy_bulk_in};

st_toy_usb *st_toy_usb_new(const char *serial)
{
    st_toy_usb *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->base.ops = &toy_usb_ops;
    strncpy(t->serial, serial ? serial : "RIG0001", sizeof(t->serial) - 1);
    t->strings[0] = "Station";
    t->strings[1] = "station-sim loopback";
    t->strings[2] = t->serial;
    t->desc = (st_usb_model_desc){toy_dev_desc, toy_cfg_desc, sizeof(toy_cfg_desc), t->strings, 3};
    return t;
}

void st_toy_usb_free(st_toy_usb *t)
{
    free(t);
}

st_usb_model *st_toy_usb_model(st_toy_usb *t)
{
    return &t->base;
}

/* ---- CAN echo ----------------------------------------------------------------------- */

static void toy_can_rx(st_can_node *n, const st_can_frame *f, uint64_t now_us)
{
    st_toy_can *t = (st_toy_can *)n;
    t->rx_count++;
    t->last_rx = *f;
    if (t->qn < sizeof(t->q) / sizeof(t->q[0])) {
        t->q[t->qn] = *f;
        t->q[t->qn].id = (f->id + 1) & 0x7ff;
        t->qn++;
    }
}

static int toy_can_tx(st_can_node *n, st_can_frame *f, uint64_t now_us)
{
    st_toy_can *t = (st_toy_can *)n;
    if (!t->qn)
        return 0;
    *f = t->q[0];
    memmove(t->q, t->q + 1, (t->qn - 1) * sizeof(t->q[0]));
    t->qn--;
    return 1;
}

static uint64_t toy_can_next(st_can_node *n)
{
    st_toy_can *t = (st_toy_can *)n;
    return t->qn ? 0 : UINT64_MAX;
}

static const st_can_node_ops toy_can_ops = {toy_can_rx, toy_can_tx, toy_can_next, NULL};

void st_toy_can_init(st_toy_can *n)
{
    memset(n, 0, sizeof(*n));
    n->base.ops = &toy_can_ops;
}

/* ---- stream echo -------------------------------------------------------------------- */

static void toy_stream_rx(st_stream_model *m, const uint8_t *buf, size_t n, uint64_t now_us)
{
    st_toy_stream *s = (st_toy_stream *)m;
    for (size_t i = 0; i < n && s->n < sizeof(s->buf); i++) {
        uint8_t c = buf[i];
        s->buf[s->n++] = (c >= 'a' && c <= 'z') ? (uint8_t)(c - 'a' + 'A') : c;
    }
}

static size_t toy_stream_tx(st_stream_model *m, uint8_t *buf, size_t cap, uint64_t now_us)
{
    st_toy_stream *s = (st_toy_stream *)m;
    size_t k = s->n < cap ? s->n : cap;
    memcpy(buf, s->buf, k);
    memmove(s->buf, s->buf + k, s->n - k);
    s->n -= k;
    return k;
}

static uint64_t toy_stream_next(st_stream_model *m)
{
    st_toy_stream *s = (st_toy_stream *)m;
    return s->n ? 0 : UINT64_MAX;
}

static void toy_stream_line(st_stream_model *m, const st_stream_line *l, int dtr, int rts)
{
    st_toy_stream *s = (st_toy_stream *)m;
    s->line = *l;
    s->line_changes++;
}

static const st_stream_model_ops toy_stream_ops = {toy_stream_rx, toy_stream_tx,
                                                   toy_stream_next, toy_stream_line, NULL};

void st_toy_stream_init(st_toy_stream *s)
{
    memset(s, 0, sizeof(*s));
    s->base.ops = &toy_stream_ops;
}
