/* Kernel tty lookup through sysfs, the bootloader entry requests, and the serial host
 * (serial_ports.h). The sysfs layout is the kernel's USB device naming
 * (Documentation/ABI/stable/sysfs-bus-usb): a device is "<bus>-<port>[.<port>...]", its
 * interfaces "<device>:<config>.<interface>"; cdc_acm puts its tty class device under
 * "<iface>/tty/ttyACMn", usb-serial drivers put "ttyUSBn" straight under the interface. */
#include "protocols/link/serial_ports.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "protocols/link/stream_cdc.h"
#include "station/core/clock.h"
#include "station/core/text.h"

/* Re-enumeration after a reboot takes a few hundred ms (flashtool polls 8 x 0.5 s); 20 ms
 * keeps the added latency small without hammering sysfs. */
#define POLL_US 20000

static bool valid_port_path(const char *p)
{
    if (!p || !p[0] || strlen(p) >= ST_USB_PORT_PATH_MAX)
        return false;
    for (const char *c = p; *c; c++)
        if (!((*c >= '0' && *c <= '9') || *c == '-' || *c == '.'))
            return false;
    return true;
}

/* A kernel device name we are willing to put after "/dev/": no separators, no dots. */
static bool valid_tty_name(const char *n)
{
    if (!n[0] || strlen(n) >= sizeof(((st_serial_port *)0)->tty))
        return false;
    for (const char *c = n; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
              (*c >= 'A' && *c <= 'Z') || *c == '_'))
            return false;
    return true;
}

/* Read a sysfs id file: four hex digits and a newline. */
static int read_hex16(const char *path, uint16_t *out)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char buf[16] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *end;
    errno = 0;
    unsigned long v = strtoul(buf, &end, 16);
    if (end == buf || errno || v > 0xffff || (*end && *end != '\n'))
        return -1;
    *out = (uint16_t)v;
    return 0;
}

/* "<a>/<b>" into out; false when it does not fit. */
static bool join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    return n >= 0 && (size_t)n < cap;
}

/* "1d50:6177", with "*" for a part the caller left open (0). */
static const char *id_str(uint16_t vid, uint16_t pid, char buf[16])
{
    char v[8] = "*", p[8] = "*";
    if (vid)
        snprintf(v, sizeof v, "%04x", vid);
    if (pid)
        snprintf(p, sizeof p, "%04x", pid);
    snprintf(buf, 16, "%s:%s", v, p);
    return buf;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* First entry of dir whose name starts with prefix (any name when prefix is ""), or false. */
static bool first_entry(const char *dir, const char *prefix, char *name, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool hit = false;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strncmp(e->d_name, prefix, strlen(prefix)) != 0 ||
            !valid_tty_name(e->d_name))
            continue;
        /* Several ttys under one interface do not happen; take the lowest name for a
         * stable answer anyway. */
        if (!hit || strcmp(e->d_name, name) < 0) {
            st_strlcpy(name, e->d_name, cap);
            hit = true;
        }
    }
    closedir(d);
    return hit;
}

int st_serial_port_find(const char *sysfs_root, const char *dev_dir, const char *port_path,
                        uint16_t vid, uint16_t pid, st_serial_port *out, st_err *err)
{
    if (!valid_port_path(port_path))
        return st_err_set(err, ST_ERR_INVAL,
                          "bad USB port path \"%.40s\" (expected a sysfs name like 1-1.2)",
                          port_path ? port_path : "");
    if (!out)
        return st_err_set(err, ST_ERR_INVAL, "serial port lookup: no output");
    const char *root = sysfs_root && sysfs_root[0] ? sysfs_root : "/sys";
    const char *dev = dev_dir && dev_dir[0] ? dev_dir : "/dev";
    char devices[PATH_MAX], path[PATH_MAX];
    if ((size_t)snprintf(devices, sizeof devices, "%s/bus/usb/devices", root) >= sizeof devices)
        return st_err_set(err, ST_ERR_INVAL, "sysfs root path too long");
    if (!join(path, sizeof path, devices, port_path))
        return st_err_set(err, ST_ERR_INVAL, "sysfs root path too long");
    char want[16];
    id_str(vid, pid, want);
    if (!is_dir(path))
        return st_err_set(err, ST_ERR_NOTFOUND, "no USB device at port %s (expected %s; %s "
                          "does not exist)", port_path, want, path);
    uint16_t v = 0, p = 0;
    char idf[PATH_MAX];
    int bad = join(idf, sizeof idf, path, "idVendor") ? read_hex16(idf, &v) : -1;
    if (bad == 0)
        bad = join(idf, sizeof idf, path, "idProduct") ? read_hex16(idf, &p) : -1;
    if (bad)
        return st_err_set(err, ST_ERR_NOTFOUND,
                          "USB device at port %s has no readable idVendor/idProduct (still "
                          "enumerating?)", port_path);
    if ((vid && v != vid) || (pid && p != pid))
        return st_err_set(err, ST_ERR_MISMATCH,
                          "USB device at port %s is %04x:%04x, expected %s", port_path, v, p,
                          want);

    DIR *d = opendir(devices);
    if (!d)
        return st_err_set(err, st_err_from_errno(errno), "%s: %s", devices, strerror(errno));
    size_t plen = strlen(port_path);
    int best_iface = -1;
    char best[sizeof out->tty] = "";
    struct dirent *e;
    while ((e = readdir(d))) {
        /* "<port>:<cfg>.<iface>" exactly: "1-1:1.0" is an interface of 1-1, "1-1.2" is a
         * child device behind a hub on 1-1. */
        if (strncmp(e->d_name, port_path, plen) != 0 || e->d_name[plen] != ':')
            continue;
        unsigned cfg, iface;
        int used = 0;
        if (sscanf(e->d_name + plen + 1, "%u.%u%n", &cfg, &iface, &used) != 2 ||
            e->d_name[plen + 1 + used] != '\0' || iface > 255)
            continue;
        if (best_iface >= 0 && (int)iface >= best_iface)
            continue;
        char ifdir[PATH_MAX], sub[PATH_MAX], name[sizeof out->tty];
        if (!join(ifdir, sizeof ifdir, devices, e->d_name) ||
            !join(sub, sizeof sub, ifdir, "tty"))
            continue;
        if (first_entry(sub, "", name, sizeof name) ||
            first_entry(ifdir, "ttyUSB", name, sizeof name)) {
            best_iface = (int)iface;
            st_strlcpy(best, name, sizeof best);
        }
    }
    closedir(d);
    if (best_iface < 0)
        return st_err_set(err, ST_ERR_NOTFOUND,
                          "USB device at port %s (%04x:%04x) has no tty (no ttyACM/ttyUSB "
                          "interface: cdc_acm or usb-serial driver not bound, or a program "
                          "claimed the interface)", port_path, v, p);
    memset(out, 0, sizeof *out);
    st_strlcpy(out->tty, best, sizeof out->tty);
    if ((size_t)snprintf(out->dev_path, sizeof out->dev_path, "%s/%s", dev, best) >=
        sizeof out->dev_path)
        return st_err_set(err, ST_ERR_INVAL, "device directory path too long");
    out->vid = v;
    out->pid = p;
    out->iface = best_iface;
    return 0;
}

/* Sleep one polling interval on clock, never past the deadline. */
static void poll_pause(const st_clock *clock, st_deadline d)
{
    uint64_t now = st_clock_now_us(clock);
    uint64_t left = d.at_us > now ? d.at_us - now : 0;
    st_clock_sleep_us(clock, left < POLL_US ? left : POLL_US);
}

int st_serial_port_wait(const char *sysfs_root, const char *dev_dir, const char *port_path,
                        uint16_t vid, uint16_t pid, unsigned timeout_ms, const st_clock *clock,
                        st_serial_port *out, st_err *err)
{
    st_deadline d = st_clock_deadline_in_ms(clock, timeout_ms);
    for (;;) {
        int rc = st_serial_port_find(sysfs_root, dev_dir, port_path, vid, pid, out, err);
        if (rc != ST_ERR_NOTFOUND && rc != ST_ERR_MISMATCH)
            return rc;
        if (st_clock_deadline_passed(clock, d))
            return st_err_wrap(err, rc, "after %u ms", timeout_ms);
        poll_pause(clock, d);
    }
}

int st_serial_touch_1200(st_stream *s, st_err *err)
{
    static const st_stream_line l1200 = {1200, 8, 'N', 1, 0};
    int rc = st_stream_set_modem(s, 1, -1, err);
    if (rc == 0)
        rc = st_stream_set_line(s, &l1200, err);
    if (rc < 0) {
        st_err_prefix(err, "1200-baud touch");
        return rc;
    }
    /* Dropping DTR at 1200 baud is the reboot condition (Klipper usb_cdc.c check_reboot);
     * a unit that vanishes while acknowledging it has done what was asked, and the caller
     * checks the re-enumerated id anyway. */
    rc = st_stream_set_modem(s, 0, -1, err);
    if (rc == ST_ERR_DISCONNECT) {
        st_err_clear(err);
        return 0;
    }
    if (rc < 0) {
        st_err_prefix(err, "1200-baud touch");
        return rc;
    }
    return 0;
}

int st_serial_request_bootloader_uart(st_stream *s, st_err *err)
{
    /* flashtool prefixes Klipper's 32-byte block with '~' so that whatever partial message
     * the app holds is terminated first (protocols.md 2.7). */
    static const char req[] = "~ \x1c Request Serial Bootloader!! ~";
    int rc = st_stream_write(s, (const uint8_t *)req, sizeof req - 1, 1000, err);
    if (rc < 0) {
        st_err_prefix(err, "serial bootloader request");
        return rc;
    }
    return 0;
}

/* ---- serial hosts ---------------------------------------------------------------------- */

int st_serial_host_open(st_serial_host *h, const char *port_path, uint16_t vid, uint16_t pid,
                        const st_stream_line *line, unsigned timeout_ms, st_stream **out,
                        st_err *err)
{
    if (!h || !port_path || !port_path[0] || !out)
        return st_err_set(err, ST_ERR_INVAL, "serial open: missing host, port path or output");
    return h->ops->open(h, port_path, vid, pid, line, timeout_ms, out, err);
}

void st_serial_host_set_clock(st_serial_host *h, const st_clock *clock)
{
    h->clock = clock;
}

void st_serial_host_free(st_serial_host *h)
{
    if (h)
        h->ops->free(h);
}

typedef struct tty_host {
    st_serial_host base;
    char root[PATH_MAX];
    char dev[PATH_MAX];
} tty_host;

static int tty_host_open(st_serial_host *h, const char *port_path, uint16_t vid, uint16_t pid,
                         const st_stream_line *line, unsigned timeout_ms, st_stream **out,
                         st_err *err)
{
    tty_host *t = (tty_host *)h;
    st_deadline d = st_clock_deadline_in_ms(h->clock, timeout_ms);
    st_serial_port sp;
    int rc = st_serial_port_wait(t->root, t->dev, port_path, vid, pid, timeout_ms, h->clock, &sp,
                                 err);
    if (rc < 0)
        return rc;
    /* sysfs knows the tty before udev has created or re-permissioned /dev/ttyACMn; keep
     * trying until the deadline. */
    for (;;) {
        rc = st_stream_tty_open(sp.dev_path, line, out, err);
        if (rc == 0 || (rc != ST_ERR_NOTFOUND && rc != ST_ERR_PERM && rc != ST_ERR_BUSY))
            break;
        if (st_clock_deadline_passed(h->clock, d))
            break;
        poll_pause(h->clock, d);
    }
    if (rc < 0)
        st_err_prefix(err, "serial port of %04x:%04x at USB port %s", sp.vid, sp.pid, port_path);
    return rc;
}

static void tty_host_free(st_serial_host *h)
{
    free(h);
}

static const st_serial_host_ops tty_host_ops = {.open = tty_host_open, .free = tty_host_free};

int st_serial_host_tty_new_at(const char *sysfs_root, const char *dev_dir,
                              st_serial_host **out, st_err *err)
{
    const char *root = sysfs_root && sysfs_root[0] ? sysfs_root : "/sys";
    const char *dev = dev_dir && dev_dir[0] ? dev_dir : "/dev";
    if (!out)
        return st_err_set(err, ST_ERR_INVAL, "serial host: no output");
    if (strlen(root) >= PATH_MAX / 2 || strlen(dev) >= 64)
        return st_err_set(err, ST_ERR_INVAL, "serial host: sysfs or device path too long");
    tty_host *t = calloc(1, sizeof *t);
    if (!t)
        return st_err_set(err, ST_ERR_NOMEM, "serial host: out of memory");
    t->base.ops = &tty_host_ops;
    st_strlcpy(t->root, root, sizeof t->root);
    st_strlcpy(t->dev, dev, sizeof t->dev);
    *out = &t->base;
    return 0;
}

int st_serial_host_tty_new(const char *sysfs_root, st_serial_host **out, st_err *err)
{
    return st_serial_host_tty_new_at(sysfs_root, NULL, out, err);
}

typedef struct usb_host {
    st_serial_host base;
    st_usb_host *usb;
} usb_host;

static int usb_host_open(st_serial_host *h, const char *port_path, uint16_t vid, uint16_t pid,
                         const st_stream_line *line, unsigned timeout_ms, st_stream **out,
                         st_err *err)
{
    usb_host *u = (usb_host *)h;
    st_deadline d = st_clock_deadline_in_ms(h->clock, timeout_ms);
    int rc;
    for (;;) {
        st_usb_dev_info info;
        /* Polled here rather than with st_usb_host_wait, so the wait runs on h->clock. */
        rc = st_usb_host_find(u->usb, vid, pid, port_path, &info, err);
        if (rc == 0)
            rc = st_stream_cdc_open(u->usb, &info, line, out, err);
        /* The unit may drop off again between the lookup and the open (it is still
         * rebooting); that is the same "not there yet" until the deadline. */
        if (rc == 0 || (rc != ST_ERR_NOTFOUND && rc != ST_ERR_DISCONNECT))
            break;
        if (st_clock_deadline_passed(h->clock, d)) {
            if (rc == ST_ERR_NOTFOUND)
                st_err_prefix(err, "after %u ms", timeout_ms);
            break;
        }
        poll_pause(h->clock, d);
    }
    if (rc == ST_ERR_NOTFOUND) {
        /* Say what is at the port instead, if anything: the usual cause is a unit that
         * did not (yet) re-enumerate with the expected id. */
        st_usb_dev_info other;
        if (st_usb_host_find(u->usb, 0, 0, port_path, &other, NULL) == 0 &&
            ((vid && other.vid != vid) || (pid && other.pid != pid))) {
            char want[16];
            st_err_set(err, ST_ERR_MISMATCH, "USB device at port %s is %04x:%04x, expected %s "
                       "(after %u ms)", port_path, other.vid, other.pid,
                       id_str(vid, pid, want), timeout_ms);
            return ST_ERR_MISMATCH;
        }
    }
    return rc;
}

static void usb_host_free(st_serial_host *h)
{
    free(h);
}

static const st_serial_host_ops usb_host_ops = {.open = usb_host_open, .free = usb_host_free};

int st_serial_host_usb_new(st_usb_host *usb, st_serial_host **out, st_err *err)
{
    if (!usb || !out)
        return st_err_set(err, ST_ERR_INVAL, "serial host: no USB host or output");
    usb_host *u = calloc(1, sizeof *u);
    if (!u)
        return st_err_set(err, ST_ERR_NOMEM, "serial host: out of memory");
    u->base.ops = &usb_host_ops;
    u->usb = usb;
    *out = &u->base;
    return 0;
}
