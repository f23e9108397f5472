/* libusb-1.0 backend of the USB link: one libusb context per host object (no process
 * globals), devices found by port path ("<bus>-<p1>.<p2>", as dfu-util -p and sysfs name
 * them) and VID:PID. */
#include "protocols/link/usb.h"

#include <libusb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "station/core/text.h"

#define MAX_CLAIMED 8

typedef struct lu_host {
    st_usb_host base;
    libusb_context *ctx;
} lu_host;

typedef struct lu_dev {
    st_usb_dev base;
    libusb_device_handle *h;
    int claimed[MAX_CLAIMED];
    int nclaimed;
} lu_dev;

/* Map a libusb error to the station's codes; the ACCESS case tells the operator the fix. */
static int lu_error(int rc, st_err *err, const char *what)
{
    switch (rc) {
    case LIBUSB_ERROR_PIPE:
        return st_err_set(err, ST_ERR_STALL, "%s: stalled (LIBUSB_ERROR_PIPE)", what);
    case LIBUSB_ERROR_NO_DEVICE:
        return st_err_set(err, ST_ERR_DISCONNECT, "%s: device disconnected", what);
    case LIBUSB_ERROR_TIMEOUT:
        return st_err_set(err, ST_ERR_TIMEOUT, "%s: timed out", what);
    case LIBUSB_ERROR_ACCESS:
        return st_err_set(err, ST_ERR_PERM,
                          "%s: permission denied (LIBUSB_ERROR_ACCESS); install the station's "
                          "udev rule and add this user to the plugdev group, then re-plug",
                          what);
    case LIBUSB_ERROR_NOT_FOUND:
        return st_err_set(err, ST_ERR_NOTFOUND, "%s: not found (LIBUSB_ERROR_NOT_FOUND)", what);
    case LIBUSB_ERROR_BUSY:
        return st_err_set(err, ST_ERR_BUSY, "%s: busy (LIBUSB_ERROR_BUSY): another program holds "
                          "the interface", what);
    case LIBUSB_ERROR_NO_MEM:
        return st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", what);
    case LIBUSB_ERROR_NOT_SUPPORTED:
        return st_err_set(err, ST_ERR_UNSUPPORTED, "%s: not supported (LIBUSB_ERROR_NOT_SUPPORTED)",
                          what);
    default:
        return st_err_set(err, ST_ERR_IO, "%s: %s", what, libusb_error_name(rc));
    }
}

static void port_path_of(libusb_device *dev, char *out, size_t cap)
{
    uint8_t ports[8];
    int n = libusb_get_port_numbers(dev, ports, (int)sizeof ports);
    unsigned bus = libusb_get_bus_number(dev);
    if (n <= 0) {
        snprintf(out, cap, "usb%u", bus); /* a root hub, named as sysfs does */
        return;
    }
    size_t o = (size_t)snprintf(out, cap, "%u-", bus);
    for (int i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, i ? ".%u" : "%u", ports[i]);
}

static void read_strings(libusb_device_handle *h, const struct libusb_device_descriptor *dd,
                         st_usb_dev_info *info)
{
    struct { uint8_t index; char *out; } s[3] = {
        {dd->iManufacturer, info->manufacturer},
        {dd->iProduct, info->product},
        {dd->iSerialNumber, info->serial},
    };
    for (int i = 0; i < 3; i++) {
        s[i].out[0] = '\0';
        if (!s[i].index)
            continue;
        int n = libusb_get_string_descriptor_ascii(h, s[i].index, (unsigned char *)s[i].out,
                                                   ST_USB_STRING_MAX);
        if (n < 0)
            s[i].out[0] = '\0';
        else
            s[i].out[n < ST_USB_STRING_MAX ? n : ST_USB_STRING_MAX - 1] = '\0';
    }
}

static void fill_info(libusb_device *dev, const struct libusb_device_descriptor *dd,
                      st_usb_dev_info *info)
{
    memset(info, 0, sizeof *info);
    info->vid = dd->idVendor;
    info->pid = dd->idProduct;
    info->bcd_device = dd->bcdDevice;
    info->bus = libusb_get_bus_number(dev);
    info->address = libusb_get_device_address(dev);
    port_path_of(dev, info->port_path, sizeof info->port_path);
}

static int lu_list(st_usb_host *host, st_usb_dev_info **list, size_t *n, st_err *err)
{
    lu_host *h = (lu_host *)host;
    libusb_device **devs;
    ssize_t cnt = libusb_get_device_list(h->ctx, &devs);
    if (cnt < 0)
        return lu_error((int)cnt, err, "list USB devices");
    st_usb_dev_info *out = calloc(cnt ? (size_t)cnt : 1, sizeof *out);
    if (!out) {
        libusb_free_device_list(devs, 1);
        return st_err_set(err, ST_ERR_NOMEM, "list USB devices");
    }
    size_t k = 0;
    for (ssize_t i = 0; i < cnt; i++) {
        struct libusb_device_descriptor dd;
        if (libusb_get_device_descriptor(devs[i], &dd) != 0)
            continue;
        fill_info(devs[i], &dd, &out[k]);
        /* Strings are best effort: a device we may not open is still listed. */
        libusb_device_handle *dh;
        if (libusb_open(devs[i], &dh) == 0) {
            read_strings(dh, &dd, &out[k]);
            libusb_close(dh);
        }
        k++;
    }
    libusb_free_device_list(devs, 1);
    *list = out;
    *n = k;
    return 0;
}

static int lu_control(st_usb_dev *dev, const st_usb_setup *s, uint8_t *data, unsigned timeout_ms,
                      st_err *err)
{
    lu_dev *d = (lu_dev *)dev;
    int rc = libusb_control_transfer(d->h, s->bmRequestType, s->bRequest, s->wValue, s->wIndex,
                                     data, s->wLength, timeout_ms);
    if (rc < 0) {
        char what[64];
        snprintf(what, sizeof what, "control request 0x%02x/0x%02x", s->bmRequestType,
                 s->bRequest);
        return lu_error(rc, err, what);
    }
    return rc;
}

static int lu_config_descriptor(st_usb_dev *dev, uint8_t *buf, size_t cap, st_err *err)
{
    lu_dev *d = (lu_dev *)dev;
    struct libusb_config_descriptor *cd;
    int rc = libusb_get_active_config_descriptor(libusb_get_device(d->h), &cd);
    if (rc < 0)
        return lu_error(rc, err, "read active configuration");
    uint8_t value = cd->bConfigurationValue;
    libusb_free_config_descriptor(cd);
    /* The raw descriptor (with class-specific ones like the DFU functional descriptor in
     * place) is read by index; find the index whose bConfigurationValue is active. */
    struct libusb_device_descriptor dd;
    libusb_get_device_descriptor(libusb_get_device(d->h), &dd);
    for (uint8_t idx = 0; idx < dd.bNumConfigurations; idx++) {
        uint8_t head[9];
        rc = libusb_get_descriptor(d->h, LIBUSB_DT_CONFIG, idx, head, sizeof head);
        if (rc < 0)
            return lu_error(rc, err, "read configuration descriptor");
        if (rc < 9 || head[5] != value)
            continue;
        size_t total = head[2] | (size_t)head[3] << 8;
        if (total > cap)
            total = cap;
        rc = libusb_get_descriptor(d->h, LIBUSB_DT_CONFIG, idx, buf, (int)total);
        return rc < 0 ? lu_error(rc, err, "read configuration descriptor") : rc;
    }
    return st_err_set(err, ST_ERR_NOTFOUND, "active configuration %u not found", value);
}

static int lu_string(st_usb_dev *dev, uint8_t index, char *buf, size_t cap, st_err *err)
{
    lu_dev *d = (lu_dev *)dev;
    if (cap == 0 || cap > INT32_MAX)
        return st_err_set(err, ST_ERR_INVAL, "bad string buffer");
    int rc = libusb_get_string_descriptor_ascii(d->h, index, (unsigned char *)buf, (int)cap);
    if (rc < 0) {
        buf[0] = '\0';
        return lu_error(rc, err, "read string descriptor");
    }
    buf[(size_t)rc < cap ? (size_t)rc : cap - 1] = '\0';
    return rc;
}

static int lu_claim(st_usb_dev *dev, int iface, st_err *err)
{
    lu_dev *d = (lu_dev *)dev;
    for (int i = 0; i < d->nclaimed; i++)
        if (d->claimed[i] == iface)
            return 0;
    if (d->nclaimed >= MAX_CLAIMED)
        return st_err_set(err, ST_ERR_INVAL, "too many claimed interfaces");
    int rc = libusb_claim_interface(d->h, iface);
    if (rc < 0) {
        char what[48];
        snprintf(what, sizeof what, "claim interface %d", iface);
        return lu_error(rc, err, what);
    }
    d->claimed[d->nclaimed++] = iface;
    return 0;
}

static int lu_set_alt(st_usb_dev *dev, int iface, int alt, st_err *err)
{
    lu_dev *d = (lu_dev *)dev;
    int rc = libusb_set_interface_alt_setting(d->h, iface, alt);
    if (rc < 0) {
        char what[48];
        snprintf(what, sizeof what, "set interface %d alt %d", iface, alt);
        return lu_error(rc, err, what);
    }
    return 0;
}

static int lu_bulk(st_usb_dev *dev, uint8_t ep, uint8_t *data, size_t len, unsigned timeout_ms,
                   st_err *err)
{
    lu_dev *d = (lu_dev *)dev;
    if (len > INT32_MAX)
        return st_err_set(err, ST_ERR_INVAL, "bulk transfer too long");
    int done = 0;
    int rc = libusb_bulk_transfer(d->h, ep, data, (int)len, &done, timeout_ms);
    /* A timeout after part of the data moved still reports the part. */
    if (rc == LIBUSB_ERROR_TIMEOUT && done > 0)
        return done;
    if (rc < 0) {
        char what[40];
        snprintf(what, sizeof what, "bulk endpoint 0x%02x", ep);
        return lu_error(rc, err, what);
    }
    return done;
}

static int lu_reset(st_usb_dev *dev, st_err *err)
{
    lu_dev *d = (lu_dev *)dev;
    int rc = libusb_reset_device(d->h);
    /* NOT_FOUND: the device re-enumerated as something else (e.g. it left DFU). */
    if (rc == LIBUSB_ERROR_NOT_FOUND)
        return st_err_set(err, ST_ERR_DISCONNECT, "USB reset: device re-enumerated");
    return rc < 0 ? lu_error(rc, err, "USB reset") : 0;
}

static void lu_close(st_usb_dev *dev)
{
    lu_dev *d = (lu_dev *)dev;
    for (int i = 0; i < d->nclaimed; i++)
        libusb_release_interface(d->h, d->claimed[i]);
    libusb_close(d->h);
    free(d);
}

static const st_usb_dev_ops lu_dev_ops = {
    .control = lu_control,
    .config_descriptor = lu_config_descriptor,
    .string = lu_string,
    .claim_interface = lu_claim,
    .set_alt = lu_set_alt,
    .bulk = lu_bulk,
    .reset = lu_reset,
    .close = lu_close,
};

static int lu_open(st_usb_host *host, const st_usb_dev_info *want, st_usb_dev **out, st_err *err)
{
    lu_host *h = (lu_host *)host;
    libusb_device **devs;
    ssize_t cnt = libusb_get_device_list(h->ctx, &devs);
    if (cnt < 0)
        return lu_error((int)cnt, err, "list USB devices");
    libusb_device *hit = NULL;
    struct libusb_device_descriptor dd;
    for (ssize_t i = 0; i < cnt && !hit; i++) {
        st_usb_dev_info info;
        if (libusb_get_device_descriptor(devs[i], &dd) != 0)
            continue;
        fill_info(devs[i], &dd, &info);
        if (want->port_path[0] && strcmp(want->port_path, info.port_path) != 0)
            continue;
        if ((want->vid && want->vid != info.vid) || (want->pid && want->pid != info.pid))
            continue;
        if ((want->bus && want->bus != info.bus) ||
            (want->address && want->address != info.address))
            continue;
        hit = devs[i];
    }
    if (!hit) {
        libusb_free_device_list(devs, 1);
        return st_err_set(err, ST_ERR_NOTFOUND, "no USB device %04x:%04x at port %s", want->vid,
                          want->pid, want->port_path[0] ? want->port_path : "(any)");
    }
    lu_dev *d = calloc(1, sizeof *d);
    if (!d) {
        libusb_free_device_list(devs, 1);
        return st_err_set(err, ST_ERR_NOMEM, "open USB device");
    }
    d->base.ops = &lu_dev_ops;
    fill_info(hit, &dd, &d->base.info);
    int rc = libusb_open(hit, &d->h);
    libusb_free_device_list(devs, 1);
    if (rc < 0) {
        char what[80];
        snprintf(what, sizeof what, "open USB device %04x:%04x at %s", d->base.info.vid,
                 d->base.info.pid, d->base.info.port_path);
        free(d);
        return lu_error(rc, err, what);
    }
    /* A kernel driver bound to the interface (e.g. cdc_acm) is detached on claim and
     * re-attached on release. Not every platform supports it; that is not an error. */
    libusb_set_auto_detach_kernel_driver(d->h, 1);
    read_strings(d->h, &dd, &d->base.info);
    *out = &d->base;
    return 0;
}

static void lu_free(st_usb_host *host)
{
    lu_host *h = (lu_host *)host;
    libusb_exit(h->ctx);
    free(h);
}

static const st_usb_host_ops lu_host_ops = {
    .list = lu_list,
    .open = lu_open,
    .free = lu_free,
};

int st_usb_host_libusb_new(const st_logger *log, st_usb_host **out, st_err *err)
{
    lu_host *h = calloc(1, sizeof *h);
    if (!h)
        return st_err_set(err, ST_ERR_NOMEM, "libusb host");
    int rc = libusb_init(&h->ctx);
    if (rc < 0) {
        free(h);
        return lu_error(rc, err, "initialise libusb");
    }
    h->base.ops = &lu_host_ops;
    h->base.log = log;
    *out = &h->base;
    return 0;
}
