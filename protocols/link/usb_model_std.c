/* Standard USB requests (USB 2.0 chapter 9) answered from a model's descriptor tables, and
 * reading a model's identity back through its own control() like a host would. */
#include "protocols/link/usb_model.h"

#include <stdbool.h>
#include <string.h>


/* USB 2.0 §9.4 request codes and descriptor types. */
enum {
    REQ_GET_STATUS = 0,
    REQ_CLEAR_FEATURE = 1,
    REQ_SET_FEATURE = 3,
    REQ_SET_ADDRESS = 5,
    REQ_GET_DESCRIPTOR = 6,
    REQ_GET_CONFIGURATION = 8,
    REQ_SET_CONFIGURATION = 9,
    REQ_GET_INTERFACE = 10,
    REQ_SET_INTERFACE = 11,
};
enum { DT_DEVICE = 1, DT_CONFIG = 2, DT_STRING = 3, DT_INTERFACE = 4 };
#define LANGID_EN_US 0x0409

static int copy_in(uint8_t *data, uint16_t wlength, const uint8_t *src, size_t len)
{
    size_t n = len < wlength ? len : wlength;
    if (n)
        memcpy(data, src, n);
    return (int)n;
}

/* A string descriptor is at most 255 bytes: 2 header bytes + 126 UTF-16 code units. */
static int string_descriptor(const st_usb_model_desc *desc, uint8_t index, uint16_t langid,
                             uint8_t *data, uint16_t wlength)
{
    uint8_t buf[255];
    if (index == 0) {
        buf[0] = 4;
        buf[1] = DT_STRING;
        buf[2] = LANGID_EN_US & 0xff;
        buf[3] = LANGID_EN_US >> 8;
        return copy_in(data, wlength, buf, 4);
    }
    /* Only English (US) is offered; 0 is tolerated because some hosts send it. */
    if (langid != LANGID_EN_US && langid != 0)
        return ST_ERR_STALL;
    if (!desc->strings || index > desc->nstrings || !desc->strings[index - 1])
        return ST_ERR_STALL;
    const char *s = desc->strings[index - 1];
    size_t n = strlen(s);
    if (n > 126)
        n = 126;
    buf[0] = (uint8_t)(2 + 2 * n);
    buf[1] = DT_STRING;
    for (size_t i = 0; i < n; i++) {
        buf[2 + 2 * i] = (uint8_t)s[i];
        buf[3 + 2 * i] = 0;
    }
    return copy_in(data, wlength, buf, 2 + 2 * n);
}

/* Does the configuration hold interface iface with alternate setting alt? */
static bool has_alt(const st_usb_model_desc *desc, unsigned iface, unsigned alt)
{
    size_t off = 0;
    while (desc->config && off + 2 <= desc->config_len) {
        uint8_t len = desc->config[off];
        if (len < 2 || off + len > desc->config_len)
            break;
        if (desc->config[off + 1] == DT_INTERFACE && len >= 9 && desc->config[off + 2] == iface &&
            desc->config[off + 3] == alt)
            return true;
        off += len;
    }
    return false;
}

int st_usb_model_std_control(const st_usb_model_desc *desc, const st_usb_setup *setup,
                             uint8_t *data, int *alt_out)
{
    if ((setup->bmRequestType & 0x60) != 0)
        return ST_ERR_UNSUPPORTED; /* class or vendor: the model's own business */
    uint8_t recipient = setup->bmRequestType & 0x1f;
    bool in = setup->bmRequestType & 0x80;
    switch (setup->bRequest) {
    case REQ_GET_DESCRIPTOR: {
        if (!in)
            return ST_ERR_STALL;
        uint8_t type = setup->wValue >> 8, index = setup->wValue & 0xff;
        if (type == DT_DEVICE && desc->device)
            return copy_in(data, setup->wLength, desc->device, 18);
        if (type == DT_CONFIG && desc->config && index == 0)
            return copy_in(data, setup->wLength, desc->config, desc->config_len);
        if (type == DT_STRING)
            return string_descriptor(desc, index, setup->wIndex, data, setup->wLength);
        return ST_ERR_STALL;
    }
    case REQ_SET_ADDRESS:
        return in || setup->wValue > 127 ? ST_ERR_STALL : 0;
    case REQ_SET_CONFIGURATION: {
        uint8_t value = desc->config && desc->config_len >= 6 ? desc->config[5] : 1;
        if (in || (setup->wValue != 0 && setup->wValue != value))
            return ST_ERR_STALL;
        if (alt_out)
            *alt_out = 0;
        return 0;
    }
    case REQ_GET_CONFIGURATION: {
        if (!in || setup->wLength < 1)
            return ST_ERR_STALL;
        data[0] = desc->config && desc->config_len >= 6 ? desc->config[5] : 1;
        return 1;
    }
    case REQ_GET_STATUS: {
        if (!in)
            return ST_ERR_STALL;
        /* Bus-powered, no remote wakeup, endpoints not halted: all zero. */
        uint8_t st[2] = {0, 0};
        (void)recipient;
        return copy_in(data, setup->wLength, st, 2);
    }
    case REQ_SET_INTERFACE:
        if (in || recipient != 1 || !has_alt(desc, setup->wIndex, setup->wValue))
            return ST_ERR_STALL;
        if (alt_out)
            *alt_out = setup->wValue;
        return 0;
    case REQ_GET_INTERFACE:
        if (!in || setup->wLength < 1 || !has_alt(desc, setup->wIndex, 0))
            return ST_ERR_STALL;
        data[0] = (uint8_t)(alt_out && *alt_out > 0 ? *alt_out : 0);
        return 1;
    case REQ_CLEAR_FEATURE:
    case REQ_SET_FEATURE:
        return in ? ST_ERR_STALL : 0;
    default:
        return ST_ERR_STALL;
    }
}

static int read_string(st_usb_model *m, uint8_t index, char *out, size_t cap)
{
    out[0] = '\0';
    if (index == 0)
        return 0;
    uint8_t buf[255];
    st_usb_setup s = {0x80, REQ_GET_DESCRIPTOR, (uint16_t)(DT_STRING << 8 | index), LANGID_EN_US,
                      sizeof buf};
    int n = m->ops->control(m, &s, buf);
    if (n < 0)
        return n;
    if (n < 2 || buf[1] != DT_STRING)
        return ST_ERR_PROTO;
    size_t len = buf[0] < (unsigned)n ? buf[0] : (size_t)n;
    size_t o = 0;
    for (size_t i = 2; i + 1 < len && o + 1 < cap; i += 2) {
        unsigned cu = buf[i] | (unsigned)buf[i + 1] << 8;
        out[o++] = cu >= 0x20 && cu < 0x7f ? (char)cu : '?';
    }
    out[o] = '\0';
    return (int)o;
}

int st_usb_model_describe(st_usb_model *m, st_usb_dev_info *info)
{
    uint8_t dev[18];
    st_usb_setup s = {0x80, REQ_GET_DESCRIPTOR, DT_DEVICE << 8, 0, sizeof dev};
    int n = m->ops->control(m, &s, dev);
    if (n < 0)
        return n;
    if (n < 18 || dev[0] < 18 || dev[1] != DT_DEVICE)
        return ST_ERR_PROTO;
    info->vid = dev[8] | dev[9] << 8;
    info->pid = dev[10] | dev[11] << 8;
    info->bcd_device = dev[12] | dev[13] << 8;
    /* Strings are best effort, as for a real device a host cannot open. */
    if (read_string(m, dev[14], info->manufacturer, sizeof info->manufacturer) < 0)
        info->manufacturer[0] = '\0';
    if (read_string(m, dev[15], info->product, sizeof info->product) < 0)
        info->product[0] = '\0';
    if (read_string(m, dev[16], info->serial, sizeof info->serial) < 0)
        info->serial[0] = '\0';
    return 0;
}
