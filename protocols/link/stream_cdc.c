/* st_stream over a USB CDC-ACM device from user space (stream_cdc.h). Class requests follow
 * USB CDC 1.2 PSTN subclass 6.3: SET_LINE_CODING (0x21/0x20, 7 bytes), SET_CONTROL_LINE_STATE
 * (0x21/0x22, wValue bit 0 DTR, bit 1 RTS), both addressed to the communication interface;
 * data moves on the data interface's bulk pair (protocols.md 2.7: "byte stream over the CDC
 * bulk endpoints"). */
#include "protocols/link/stream_cdc.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "station/core/clock.h"
#include "station/core/text.h"

#define CTRL_TIMEOUT_MS 1000
#define RX_BUF 4096
#define TX_CHUNK 4096
/* Between two polls of a backend that answers a NAK with 0 bytes at once: short enough to
 * keep a Katapult block turnaround well under a millisecond of added latency per poll,
 * long enough not to spin a Pi core. */
#define NAK_POLL_US 250
/* flush_input stops after this long even if the device keeps talking. */
#define FLUSH_MAX_MS 500

typedef struct cdc_stream {
    st_stream base; /* first */
    st_usb_dev *dev;
    st_cdc_layout lay;
    int dtr, rts;
    size_t rx_req; /* bulk IN request size: a multiple of wMaxPacketSize (no babble) */
    size_t rx_off, rx_len;
    uint8_t rx[RX_BUF];
} cdc_stream;

/* ---- configuration descriptor ---------------------------------------------------------- */

typedef struct walk {
    const uint8_t *p;
    size_t len, off;
} walk;

/* Next descriptor, or NULL at the end; *bad set for a descriptor that overruns the buffer
 * or claims a length below 2 (which would loop forever). */
static const uint8_t *walk_next(walk *w, bool *bad)
{
    if (w->off >= w->len)
        return NULL;
    if (w->len - w->off < 2 || w->p[w->off] < 2 || w->p[w->off] > w->len - w->off) {
        *bad = true;
        return NULL;
    }
    const uint8_t *d = w->p + w->off;
    w->off += d[0];
    return d;
}

int st_cdc_parse_config(const uint8_t *desc, size_t len, st_cdc_layout *out, st_err *err)
{
    if (!desc || len < 9 || desc[0] < 9 || desc[1] != 2)
        return st_err_set(err, ST_ERR_PROTO, "bad configuration descriptor header");
    size_t total = desc[2] | (size_t)desc[3] << 8;
    if (total < len)
        len = total;
    bool bad = false;

    /* Pass 1: the first ACM communication interface and the union's first slave. */
    int comm = -1, union_slave = -1, first_data = -1, cur_iface = -1;
    walk w = {desc, len, 0};
    const uint8_t *d;
    while ((d = walk_next(&w, &bad))) {
        if (d[1] == 4 && d[0] >= 9) {
            cur_iface = d[2];
            if (d[5] == 0x02 && d[6] == 0x02 && comm < 0)
                comm = d[2];
            if (d[5] == 0x0A && first_data < 0)
                first_data = d[2];
        } else if (d[1] == 0x24 && d[0] >= 5 && d[2] == 0x06 && cur_iface == comm &&
                   comm >= 0 && union_slave < 0 && d[3] == comm) {
            union_slave = d[4];
        }
    }
    if (bad)
        return st_err_set(err, ST_ERR_PROTO, "malformed configuration descriptor at byte %zu",
                          w.off);
    if (comm < 0)
        return st_err_set(err, ST_ERR_UNSUPPORTED,
                          "no CDC-ACM communication interface (class 02/02): not a USB serial "
                          "device");
    int data = union_slave >= 0 ? union_slave : first_data;
    if (data < 0)
        return st_err_set(err, ST_ERR_UNSUPPORTED, "CDC-ACM interface %d has no data interface",
                          comm);

    /* Pass 2: the first alternate setting of the data interface with a bulk IN/OUT pair. */
    w.off = 0;
    bool in_data = false;
    int alt = -1;
    uint8_t ep_in = 0, ep_out = 0;
    uint16_t mps_in = 0;
    while ((d = walk_next(&w, &bad))) {
        if (d[1] == 4 && d[0] >= 9) {
            if (in_data && ep_in && ep_out)
                break;
            in_data = d[2] == data;
            alt = d[3];
            ep_in = ep_out = 0;
        } else if (d[1] == 5 && d[0] >= 7 && in_data && (d[3] & 3) == 2) {
            if ((d[2] & 0x80) && !ep_in) {
                ep_in = d[2];
                mps_in = (uint16_t)(d[4] | d[5] << 8) & 0x7ff;
            } else if (!(d[2] & 0x80) && !ep_out) {
                ep_out = d[2];
            }
        }
    }
    if (bad)
        return st_err_set(err, ST_ERR_PROTO, "malformed configuration descriptor at byte %zu",
                          w.off);
    if (!in_data || !ep_in || !ep_out)
        return st_err_set(err, ST_ERR_UNSUPPORTED,
                          "CDC data interface %d has no bulk IN/OUT endpoint pair", data);
    out->comm_iface = comm;
    out->data_iface = data;
    out->data_alt = alt;
    out->ep_in = ep_in;
    out->ep_out = ep_out;
    out->max_packet_in = mps_in;
    return 0;
}

/* ---- stream ops ------------------------------------------------------------------------ */

static cdc_stream *cdc_of(st_stream *s)
{
    return (cdc_stream *)s;
}

/* One bulk IN attempt of at most slice_ms into the receive buffer. Returns bytes (0 = NAK
 * or backend timeout: nothing pending) or a negative code with err filled. */
static int cdc_fill(cdc_stream *c, unsigned slice_ms, st_err *err)
{
    st_err e;
    st_err_clear(&e);
    /* libusb treats 0 as "no timeout". */
    int rc = c->dev->ops->bulk(c->dev, c->lay.ep_in, c->rx, c->rx_req, slice_ms ? slice_ms : 1,
                               &e);
    if (rc == ST_ERR_TIMEOUT)
        return 0;
    if (rc < 0) {
        if (err) {
            *err = e;
            st_err_prefix(err, "%s: read", c->base.name);
        }
        return rc;
    }
    if ((size_t)rc > c->rx_req)
        rc = (int)c->rx_req;
    c->rx_off = 0;
    c->rx_len = (size_t)rc;
    return rc;
}

static void sleep_nak(st_deadline d)
{
    uint64_t now = st_now_us();
    if (now >= d.at_us)
        return;
    uint64_t left = d.at_us - now;
    st_sleep_us(left < NAK_POLL_US ? left : NAK_POLL_US);
}

static int cdc_read(st_stream *s, uint8_t *buf, size_t cap, unsigned timeout_ms, st_err *err)
{
    cdc_stream *c = cdc_of(s);
    if (cap == 0)
        return 0;
    if (cap > INT32_MAX)
        cap = INT32_MAX;
    st_deadline d = st_deadline_in_ms(timeout_ms);
    while (c->rx_len == 0) {
        int rc = cdc_fill(c, (unsigned)st_deadline_remaining_ms(d), err);
        if (rc < 0)
            return rc;
        if (rc > 0)
            break;
        if (st_deadline_passed(d))
            return 0;
        sleep_nak(d);
    }
    size_t n = c->rx_len < cap ? c->rx_len : cap;
    memcpy(buf, c->rx + c->rx_off, n);
    c->rx_off += n;
    c->rx_len -= n;
    return (int)n;
}

static int cdc_write(st_stream *s, const uint8_t *buf, size_t n, unsigned timeout_ms,
                     st_err *err)
{
    cdc_stream *c = cdc_of(s);
    if (n > INT32_MAX)
        return st_err_set(err, ST_ERR_INVAL, "%s: write of %zu bytes", s->name, n);
    st_deadline d = st_deadline_in_ms(timeout_ms);
    uint8_t chunk[TX_CHUNK]; /* the bulk op takes a mutable buffer */
    size_t done = 0;
    while (done < n) {
        size_t k = n - done < sizeof chunk ? n - done : sizeof chunk;
        memcpy(chunk, buf + done, k);
        int left = st_deadline_remaining_ms(d);
        st_err e;
        st_err_clear(&e);
        int rc = c->dev->ops->bulk(c->dev, c->lay.ep_out, chunk, k, left ? (unsigned)left : 1,
                                   &e);
        if (rc < 0 && rc != ST_ERR_TIMEOUT) {
            if (err) {
                *err = e;
                st_err_prefix(err, "%s: write", s->name);
            }
            return rc;
        }
        if (rc > 0) {
            done += (size_t)rc > k ? k : (size_t)rc;
            continue;
        }
        if (st_deadline_passed(d))
            return st_err_set(err, ST_ERR_TIMEOUT, "%s: write: %zu of %zu bytes within %u ms",
                              s->name, done, n, timeout_ms);
        sleep_nak(d);
    }
    return (int)n;
}

/* A class request to the communication interface; a stall means the device does not
 * implement it (ACM bmCapabilities bit 1 clear). */
static int cdc_class_out(cdc_stream *c, uint8_t request, uint16_t value, uint8_t *data,
                         uint16_t len, const char *what, st_err *err)
{
    st_usb_setup su = {0x21, request, value, (uint16_t)c->lay.comm_iface, len};
    int rc = c->dev->ops->control(c->dev, &su, data, CTRL_TIMEOUT_MS, err);
    if (rc == ST_ERR_STALL)
        return st_err_set(err, ST_ERR_UNSUPPORTED, "%s: %s: the device stalled the request",
                          c->base.name, what);
    if (rc < 0) {
        st_err_prefix(err, "%s: %s", c->base.name, what);
        return rc;
    }
    return 0;
}

static int cdc_set_line(st_stream *s, const st_stream_line *line, st_err *err)
{
    cdc_stream *c = cdc_of(s);
    if (!line)
        return st_err_set(err, ST_ERR_INVAL, "%s: no line settings", s->name);
    if (!line->baud || line->data_bits < 5 || line->data_bits > 8 ||
        (line->stop_bits != 1 && line->stop_bits != 2) ||
        (line->parity != 'N' && line->parity != 'E' && line->parity != 'O'))
        return st_err_set(err, ST_ERR_INVAL, "%s: bad line settings %u %u%c%u", s->name,
                          line->baud, line->data_bits, line->parity, line->stop_bits);
    /* PSTN 6.3.11 Table 17: dwDTERate (LE), bCharFormat 0 = 1 stop bit, 2 = 2 stop bits,
     * bParityType 0 none, 1 odd, 2 even, bDataBits. */
    uint8_t lc[7] = {
        (uint8_t)line->baud, (uint8_t)(line->baud >> 8), (uint8_t)(line->baud >> 16),
        (uint8_t)(line->baud >> 24), line->stop_bits == 2 ? 2 : 0,
        line->parity == 'O' ? 1 : line->parity == 'E' ? 2 : 0, line->data_bits,
    };
    return cdc_class_out(c, 0x20, 0, lc, sizeof lc, "SET_LINE_CODING", err);
}

static int cdc_set_modem(st_stream *s, int dtr, int rts, st_err *err)
{
    cdc_stream *c = cdc_of(s);
    int ndtr = dtr < 0 ? c->dtr : dtr != 0;
    int nrts = rts < 0 ? c->rts : rts != 0;
    int rc = cdc_class_out(c, 0x22, (uint16_t)(ndtr | nrts << 1), NULL, 0,
                           "SET_CONTROL_LINE_STATE", err);
    if (rc < 0)
        return rc;
    c->dtr = ndtr;
    c->rts = nrts;
    return 0;
}

static int cdc_flush_input(st_stream *s, st_err *err)
{
    cdc_stream *c = cdc_of(s);
    c->rx_off = c->rx_len = 0;
    st_deadline d = st_deadline_in_ms(FLUSH_MAX_MS);
    while (!st_deadline_passed(d)) {
        int rc = cdc_fill(c, 1, err);
        c->rx_off = c->rx_len = 0;
        if (rc < 0) {
            st_err_prefix(err, "flush");
            return rc;
        }
        if (rc == 0)
            break;
    }
    return 0;
}

static void cdc_close(st_stream *s)
{
    if (!s)
        return;
    cdc_stream *c = cdc_of(s);
    st_usb_dev_close(c->dev);
    free(c);
}

static const st_stream_ops cdc_ops = {
    .write = cdc_write,
    .read = cdc_read,
    .set_line = cdc_set_line,
    .set_modem = cdc_set_modem,
    .flush_input = cdc_flush_input,
    .close = cdc_close,
};

int st_stream_cdc_open(st_usb_host *host, const st_usb_dev_info *dev,
                       const st_stream_line *line, st_stream **out, st_err *err)
{
    if (!host || !dev || !out)
        return st_err_set(err, ST_ERR_INVAL, "USB serial: missing host, device or output");
    st_usb_dev *ud = NULL;
    int rc = st_usb_host_open(host, dev, &ud, err);
    if (rc < 0) {
        st_err_prefix(err, "USB serial");
        return rc;
    }
    cdc_stream *c = calloc(1, sizeof *c);
    uint8_t *cfg = malloc(65535);
    if (!c || !cfg) {
        free(c);
        free(cfg);
        st_usb_dev_close(ud);
        return st_err_set(err, ST_ERR_NOMEM, "USB serial: out of memory");
    }
    c->base.ops = &cdc_ops;
    c->dev = ud;
    snprintf(c->base.name, sizeof c->base.name, "usb-cdc:%s %04x:%04x", ud->info.port_path,
             ud->info.vid, ud->info.pid);
    rc = ud->ops->config_descriptor(ud, cfg, 65535, err);
    if (rc >= 0)
        rc = st_cdc_parse_config(cfg, (size_t)rc, &c->lay, err);
    free(cfg);
    if (rc < 0) {
        st_err_prefix(err, "%s: configuration descriptor", c->base.name);
        goto fail;
    }
    size_t mps = c->lay.max_packet_in ? c->lay.max_packet_in : 64;
    c->rx_req = mps <= RX_BUF ? RX_BUF / mps * mps : RX_BUF;
    if ((rc = ud->ops->claim_interface(ud, c->lay.comm_iface, err)) < 0 ||
        (rc = ud->ops->claim_interface(ud, c->lay.data_iface, err)) < 0) {
        st_err_prefix(err, "%s: claim", c->base.name);
        goto fail;
    }
    if (c->lay.data_alt != 0 &&
        (rc = ud->ops->set_alt(ud, c->lay.data_iface, c->lay.data_alt, err)) < 0) {
        st_err_prefix(err, "%s", c->base.name);
        goto fail;
    }
    /* DTR and RTS up before the line coding, in the order the kernel's cdc_acm uses when a
     * tty is opened (acm_port_dtr_rts, then acm_set_line): a unit sees the same sequence
     * whichever way the station reaches it, and never "1200 baud with DTR clear" (the
     * Klipper reboot condition, protocols.md 2.7) just because the stream was opened. */
    if ((rc = cdc_set_modem(&c->base, 1, 1, err)) < 0)
        goto fail;
    if (line && (rc = cdc_set_line(&c->base, line, err)) < 0)
        goto fail;
    ST_LOGD(host->log, "usb-cdc", "%s: comm interface %d, data interface %d alt %d, bulk in 0x%02x "
            "out 0x%02x", c->base.name, c->lay.comm_iface, c->lay.data_iface, c->lay.data_alt,
            c->lay.ep_in, c->lay.ep_out);
    *out = &c->base;
    return 0;
fail:
    cdc_close(&c->base);
    return rc;
}
