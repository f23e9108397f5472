/* USB link dispatchers and device lookup by VID:PID + port path. */
#include "protocols/link/usb.h"

#include <stdlib.h>
#include <string.h>

#include "station/core/clock.h"

int st_usb_host_list(st_usb_host *host, st_usb_dev_info **list, size_t *n, st_err *err)
{
    return host->ops->list(host, list, n, err);
}

int st_usb_host_open(st_usb_host *host, const st_usb_dev_info *info, st_usb_dev **out, st_err *err)
{
    return host->ops->open(host, info, out, err);
}

void st_usb_host_free(st_usb_host *host)
{
    if (host)
        host->ops->free(host);
}

int st_usb_control(st_usb_dev *dev, const st_usb_setup *setup, uint8_t *data, unsigned timeout_ms,
                   st_err *err)
{
    return dev->ops->control(dev, setup, data, timeout_ms, err);
}

void st_usb_dev_close(st_usb_dev *dev)
{
    if (dev)
        dev->ops->close(dev);
}

int st_usb_host_find(st_usb_host *host, uint16_t vid, uint16_t pid, const char *port_path,
                     st_usb_dev_info *found, st_err *err)
{
    st_usb_dev_info *list = NULL;
    size_t n = 0;
    int rc = st_usb_host_list(host, &list, &n, err);
    if (rc < 0)
        return rc;
    size_t hits = 0;
    for (size_t i = 0; i < n; i++) {
        if (vid && list[i].vid != vid)
            continue;
        if (pid && list[i].pid != pid)
            continue;
        if (port_path && port_path[0] && strcmp(list[i].port_path, port_path) != 0)
            continue;
        if (hits++ == 0)
            *found = list[i];
    }
    free(list);
    if (hits == 1)
        return 0;
    if (hits == 0)
        return st_err_set(err, ST_ERR_NOTFOUND, "no USB device %04x:%04x at port %s", vid, pid,
                          port_path && port_path[0] ? port_path : "(any)");
    return st_err_set(err, ST_ERR_BUSY,
                      "%zu USB devices %04x:%04x match port %s; give the slot's port path", hits,
                      vid, pid, port_path && port_path[0] ? port_path : "(any)");
}

int st_usb_host_wait(st_usb_host *host, uint16_t vid, uint16_t pid, const char *port_path,
                     unsigned timeout_ms, st_usb_dev_info *found, st_err *err)
{
    st_deadline d = st_deadline_in_ms(timeout_ms);
    for (;;) {
        int rc = st_usb_host_find(host, vid, pid, port_path, found, err);
        if (rc != ST_ERR_NOTFOUND)
            return rc;
        if (st_deadline_passed(d))
            return st_err_wrap(err, rc, "after %u ms", timeout_ms);
        st_sleep_us(20000); /* enumeration polling interval; bounded by the deadline */
    }
}
