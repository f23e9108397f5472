/* In-memory USB bus: device models attached to named ports, and an st_usb_host backend
 * over it, so engines run unchanged against simulated units. Every attach is a new
 * enumeration (new address, new generation); a handle is bound to the generation it was
 * opened on, so it reports ST_ERR_DISCONNECT after an unplug even if another model is
 * plugged into the same port later. The bus lock is never held while a model runs: a
 * model's control() may call back into the bus (e.g. to detach itself when it leaves DFU). */
#include "protocols/link/usb_model.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "station/core/clock.h"
#include "station/core/text.h"

/* One call into a model in flight; detach waits for other threads' calls to finish so the
 * owner may free a model as soon as st_vusb_detach returns. */
typedef struct vcall {
    pthread_t thread;
    struct vcall *next;
} vcall;

typedef struct vport {
    char path[ST_USB_PORT_PATH_MAX];
    st_usb_model *model;  /* NULL when empty */
    uint64_t generation;  /* bumped at every attach */
    uint8_t bus, address;
    vcall *calls;
    struct vport *next;
} vport;

struct st_vusb_bus {
    pthread_mutex_t lock;
    pthread_cond_t idle;
    vport *ports;
    uint64_t next_generation;
    uint8_t next_address;
};

typedef struct mem_host {
    st_usb_host base;
    st_vusb_bus *bus;
} mem_host;

typedef struct mem_dev {
    st_usb_dev base;
    st_vusb_bus *bus;
    uint64_t generation;
    int alt;
} mem_dev;

st_vusb_bus *st_vusb_bus_new(void)
{
    st_vusb_bus *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->idle, NULL);
    b->next_generation = 1;
    b->next_address = 1;
    return b;
}

void st_vusb_bus_free(st_vusb_bus *bus)
{
    if (!bus)
        return;
    for (vport *p = bus->ports, *n; p; p = n) {
        n = p->next;
        free(p);
    }
    pthread_cond_destroy(&bus->idle);
    pthread_mutex_destroy(&bus->lock);
    free(bus);
}

static vport *find_port(st_vusb_bus *bus, const char *path)
{
    for (vport *p = bus->ports; p; p = p->next)
        if (strcmp(p->path, path) == 0)
            return p;
    return NULL;
}

static vport *find_generation(st_vusb_bus *bus, uint64_t gen)
{
    for (vport *p = bus->ports; p; p = p->next)
        if (p->model && p->generation == gen)
            return p;
    return NULL;
}

/* The bus number is the part of the port path before '-' ("3-1.2" is on bus 3), as sysfs
 * names devices; paths without one sit on bus 1. */
static uint8_t bus_of_path(const char *path)
{
    unsigned v = 0;
    const char *s = path;
    while (*s >= '0' && *s <= '9' && v < 256)
        v = v * 10 + (unsigned)(*s++ - '0');
    return *s == '-' && s != path && v > 0 && v < 256 ? (uint8_t)v : 1;
}

int st_vusb_attach(st_vusb_bus *bus, const char *port_path, st_usb_model *m, st_err *err)
{
    if (!port_path || !port_path[0] || strlen(port_path) >= ST_USB_PORT_PATH_MAX || !m)
        return st_err_set(err, ST_ERR_INVAL, "virtual USB: bad port path or model");
    pthread_mutex_lock(&bus->lock);
    vport *p = find_port(bus, port_path);
    if (p && p->model) {
        pthread_mutex_unlock(&bus->lock);
        return st_err_set(err, ST_ERR_BUSY, "virtual USB port %s is already in use", port_path);
    }
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&bus->lock);
            return st_err_set(err, ST_ERR_NOMEM, "virtual USB port");
        }
        st_strlcpy(p->path, port_path, sizeof p->path);
        p->next = bus->ports;
        bus->ports = p;
    }
    p->model = m;
    p->generation = bus->next_generation++;
    p->bus = bus_of_path(port_path);
    /* Addresses 1..127 handed out in turn, like a host re-enumerating a device. */
    p->address = bus->next_address;
    bus->next_address = bus->next_address >= 127 ? 1 : bus->next_address + 1;
    pthread_mutex_unlock(&bus->lock);
    return 0;
}

static bool others_in_flight(const vport *p)
{
    pthread_t self = pthread_self();
    for (const vcall *c = p->calls; c; c = c->next)
        if (!pthread_equal(c->thread, self))
            return true;
    return false;
}

void st_vusb_detach(st_vusb_bus *bus, const char *port_path)
{
    pthread_mutex_lock(&bus->lock);
    vport *p = find_port(bus, port_path);
    if (p && p->model) {
        p->model = NULL;
        /* Calls of this thread (a model detaching itself) are not waited for. */
        while (others_in_flight(p))
            pthread_cond_wait(&bus->idle, &bus->lock);
    }
    pthread_mutex_unlock(&bus->lock);
}

/* Enter a call on the model behind a handle: NULL model = the device is gone. */
static st_usb_model *call_enter(mem_dev *d, vcall *c, vport **port)
{
    pthread_mutex_lock(&d->bus->lock);
    vport *p = find_generation(d->bus, d->generation);
    st_usb_model *m = NULL;
    if (p) {
        m = p->model;
        c->thread = pthread_self();
        c->next = p->calls;
        p->calls = c;
    }
    *port = p;
    pthread_mutex_unlock(&d->bus->lock);
    return m;
}

static void call_leave(mem_dev *d, vcall *c, vport *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&d->bus->lock);
    for (vcall **pp = &p->calls; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    pthread_cond_broadcast(&d->bus->idle);
    pthread_mutex_unlock(&d->bus->lock);
}

static int gone(const mem_dev *d, st_err *err)
{
    return st_err_set(err, ST_ERR_DISCONNECT, "USB device at %s has disconnected",
                      d->base.info.port_path);
}

static int model_result(const mem_dev *d, const st_usb_setup *s, int rc, st_err *err)
{
    if (rc >= 0)
        return rc;
    if (rc == ST_ERR_STALL)
        return st_err_set(err, rc, "request 0x%02x/0x%02x stalled", s->bmRequestType,
                          s->bRequest);
    if (rc == ST_ERR_DISCONNECT)
        return gone(d, err);
    return st_err_set(err, rc, "request 0x%02x/0x%02x failed: %s", s->bmRequestType,
                      s->bRequest, st_strerror(rc));
}

static int mem_control(st_usb_dev *dev, const st_usb_setup *setup, uint8_t *data,
                       unsigned timeout_ms, st_err *err)
{
    mem_dev *d = (mem_dev *)dev;
    vcall c;
    vport *p;
    st_usb_model *m = call_enter(d, &c, &p);
    if (!m) {
        call_leave(d, &c, p);
        return gone(d, err);
    }
    int rc = m->ops->control(m, setup, data);
    call_leave(d, &c, p);
    if (rc > setup->wLength)
        rc = setup->wLength;
    if (rc >= 0 && (setup->bmRequestType & 0x7f) == 0x01 && setup->bRequest == 11)
        d->alt = setup->wValue;
    return model_result(d, setup, rc, err);
}

static int mem_config_descriptor(st_usb_dev *dev, uint8_t *buf, size_t cap, st_err *err)
{
    uint8_t head[9];
    st_usb_setup s = {0x80, 6, 0x0200, 0, sizeof head};
    int rc = mem_control(dev, &s, head, 1000, err);
    if (rc < 0)
        return rc;
    if (rc < 4 || head[1] != 2)
        return st_err_set(err, ST_ERR_PROTO, "bad configuration descriptor header");
    size_t total = head[2] | (size_t)head[3] << 8;
    if (total > cap)
        total = cap;
    s.wLength = (uint16_t)total;
    return mem_control(dev, &s, buf, 1000, err);
}

static int mem_string(st_usb_dev *dev, uint8_t index, char *buf, size_t cap, st_err *err)
{
    if (cap == 0)
        return st_err_set(err, ST_ERR_INVAL, "string buffer of 0 bytes");
    buf[0] = '\0';
    uint8_t raw[255];
    st_usb_setup s = {0x80, 6, (uint16_t)(0x0300 | index), 0x0409, sizeof raw};
    int rc = mem_control(dev, &s, raw, 1000, err);
    if (rc < 0)
        return rc;
    if (rc < 2 || raw[1] != 3)
        return st_err_set(err, ST_ERR_PROTO, "bad string descriptor %u", index);
    size_t len = raw[0] < (unsigned)rc ? raw[0] : (size_t)rc, o = 0;
    for (size_t i = 2; i + 1 < len && o + 1 < cap; i += 2) {
        unsigned cu = raw[i] | (unsigned)raw[i + 1] << 8;
        buf[o++] = cu < 0x80 ? (char)cu : '?';
    }
    buf[o] = '\0';
    return (int)o;
}

static int mem_claim(st_usb_dev *dev, int iface, st_err *err)
{
    mem_dev *d = (mem_dev *)dev;
    vcall c;
    vport *p;
    st_usb_model *m = call_enter(d, &c, &p);
    call_leave(d, &c, p);
    return m ? 0 : gone(d, err);
}

static int mem_set_alt(st_usb_dev *dev, int iface, int alt, st_err *err)
{
    st_usb_setup s = {0x01, 11, (uint16_t)alt, (uint16_t)iface, 0};
    int rc = mem_control(dev, &s, NULL, 1000, err);
    return rc < 0 ? st_err_wrap(err, rc, "set interface %d alt %d", iface, alt) : 0;
}

/* A model NAKs with 0; the transfer is retried until the caller's deadline, like a host
 * controller retrying a NAKed bulk transaction. */
static int mem_bulk(st_usb_dev *dev, uint8_t ep, uint8_t *data, size_t len, unsigned timeout_ms,
                    st_err *err)
{
    mem_dev *d = (mem_dev *)dev;
    st_deadline dl = st_deadline_in_ms(timeout_ms);
    for (;;) {
        vcall c;
        vport *p;
        st_usb_model *m = call_enter(d, &c, &p);
        if (!m) {
            call_leave(d, &c, p);
            return gone(d, err);
        }
        int rc;
        if (ep & 0x80)
            rc = m->ops->bulk_in ? m->ops->bulk_in(m, ep, data, len) : ST_ERR_UNSUPPORTED;
        else
            rc = m->ops->bulk_out ? m->ops->bulk_out(m, ep, data, len) : ST_ERR_UNSUPPORTED;
        call_leave(d, &c, p);
        if (rc == ST_ERR_UNSUPPORTED)
            return st_err_set(err, rc, "device has no bulk endpoint 0x%02x", ep);
        if (rc == ST_ERR_DISCONNECT)
            return gone(d, err);
        if (rc < 0)
            return st_err_set(err, rc, "bulk endpoint 0x%02x: %s", ep, st_strerror(rc));
        if (rc > 0 || len == 0)
            return rc > (int)len ? (int)len : rc;
        if (st_deadline_passed(dl))
            return st_err_set(err, ST_ERR_TIMEOUT, "bulk endpoint 0x%02x: no data in %u ms", ep,
                              timeout_ms);
        st_sleep_us(200); /* NAK retry interval; bounded by the deadline above */
    }
}

static int mem_reset(st_usb_dev *dev, st_err *err)
{
    mem_dev *d = (mem_dev *)dev;
    vcall c;
    vport *p;
    st_usb_model *m = call_enter(d, &c, &p);
    call_leave(d, &c, p);
    if (!m)
        return gone(d, err);
    /* A port reset puts the device back in its default configuration. */
    st_usb_setup s = {0x00, 9, 0, 0, 0};
    int rc = mem_control(dev, &s, NULL, 1000, err);
    return rc < 0 && rc != ST_ERR_STALL ? rc : 0;
}

static void mem_close(st_usb_dev *dev)
{
    free(dev);
}

static const st_usb_dev_ops mem_dev_ops = {
    .control = mem_control,
    .config_descriptor = mem_config_descriptor,
    .string = mem_string,
    .claim_interface = mem_claim,
    .set_alt = mem_set_alt,
    .bulk = mem_bulk,
    .reset = mem_reset,
    .close = mem_close,
};

typedef struct snapshot {
    char path[ST_USB_PORT_PATH_MAX];
    uint64_t generation;
    uint8_t bus, address;
} snapshot;

/* Copy the attached ports under the lock, so models are described without it. */
static int take_snapshot(st_vusb_bus *bus, snapshot **out, size_t *n)
{
    pthread_mutex_lock(&bus->lock);
    size_t count = 0;
    for (vport *p = bus->ports; p; p = p->next)
        count += p->model != NULL;
    snapshot *s = calloc(count ? count : 1, sizeof *s);
    if (!s) {
        pthread_mutex_unlock(&bus->lock);
        return ST_ERR_NOMEM;
    }
    size_t i = 0;
    for (vport *p = bus->ports; p; p = p->next) {
        if (!p->model)
            continue;
        memcpy(s[i].path, p->path, sizeof s[i].path);
        s[i].generation = p->generation;
        s[i].bus = p->bus;
        s[i].address = p->address;
        i++;
    }
    pthread_mutex_unlock(&bus->lock);
    *out = s;
    *n = count;
    return 0;
}

/* Describe the model of one generation through a temporary handle. */
static int describe(st_vusb_bus *bus, const snapshot *s, st_usb_dev_info *info)
{
    mem_dev d = {.base = {.ops = &mem_dev_ops}, .bus = bus, .generation = s->generation};
    vcall c;
    vport *p;
    st_usb_model *m = call_enter(&d, &c, &p);
    int rc = m ? st_usb_model_describe(m, info) : ST_ERR_DISCONNECT;
    call_leave(&d, &c, p);
    if (rc < 0)
        return rc;
    st_strlcpy(info->port_path, s->path, sizeof info->port_path);
    info->bus = s->bus;
    info->address = s->address;
    return 0;
}

static int mem_list(st_usb_host *host, st_usb_dev_info **list, size_t *n, st_err *err)
{
    mem_host *h = (mem_host *)host;
    snapshot *snap;
    size_t count;
    if (take_snapshot(h->bus, &snap, &count) < 0)
        return st_err_set(err, ST_ERR_NOMEM, "virtual USB list");
    st_usb_dev_info *out = calloc(count ? count : 1, sizeof *out);
    if (!out) {
        free(snap);
        return st_err_set(err, ST_ERR_NOMEM, "virtual USB list");
    }
    size_t k = 0;
    for (size_t i = 0; i < count; i++) {
        /* A model that vanished between the snapshot and now is simply not listed. */
        if (describe(h->bus, &snap[i], &out[k]) == 0)
            k++;
    }
    free(snap);
    *list = out;
    *n = k;
    return 0;
}

static int mem_open(st_usb_host *host, const st_usb_dev_info *info, st_usb_dev **out,
                    st_err *err)
{
    mem_host *h = (mem_host *)host;
    pthread_mutex_lock(&h->bus->lock);
    vport *p = find_port(h->bus, info->port_path);
    snapshot s = {{0}, 0, 0, 0};
    bool present = p && p->model;
    if (present) {
        memcpy(s.path, p->path, sizeof s.path);
        s.generation = p->generation;
        s.bus = p->bus;
        s.address = p->address;
    }
    pthread_mutex_unlock(&h->bus->lock);
    if (!present)
        return st_err_set(err, ST_ERR_NOTFOUND, "no USB device at port %s", info->port_path);
    mem_dev *d = calloc(1, sizeof *d);
    if (!d)
        return st_err_set(err, ST_ERR_NOMEM, "virtual USB open");
    d->base.ops = &mem_dev_ops;
    d->bus = h->bus;
    d->generation = s.generation;
    int rc = describe(h->bus, &s, &d->base.info);
    if (rc < 0) {
        free(d);
        return st_err_set(err, rc, "USB device at port %s: %s", info->port_path,
                          st_strerror(rc));
    }
    const st_usb_dev_info *got = &d->base.info;
    if ((info->vid && info->vid != got->vid) || (info->pid && info->pid != got->pid) ||
        (info->bus && info->bus != got->bus) || (info->address && info->address != got->address)) {
        int code = ST_ERR_NOTFOUND;
        st_err_set(err, code, "USB device at port %s is %04x:%04x (bus %u address %u), not %04x:%04x",
                   info->port_path, got->vid, got->pid, got->bus, got->address, info->vid,
                   info->pid);
        free(d);
        return code;
    }
    *out = &d->base;
    return 0;
}

static void mem_free(st_usb_host *host)
{
    free(host);
}

static const st_usb_host_ops mem_host_ops = {
    .list = mem_list,
    .open = mem_open,
    .free = mem_free,
};

int st_usb_host_mem_new(st_vusb_bus *bus, const st_logger *log, st_usb_host **out, st_err *err)
{
    mem_host *h = calloc(1, sizeof *h);
    if (!h)
        return st_err_set(err, ST_ERR_NOMEM, "virtual USB host");
    h->base.ops = &mem_host_ops;
    h->base.log = log;
    h->bus = bus;
    *out = &h->base;
    return 0;
}
