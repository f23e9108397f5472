/* rig-usb-probe: inside the rig VM, check through the station's own libusb backend
 * (protocols/link/usb_libusb.c) that station-sim's loopback device is a working USB device:
 * listed with its identity, vendor control requests both ways, bulk OUT echoed on bulk IN.
 * Usage: rig-usb-probe [SERIAL]   exit 0 = all good, 1 = a check failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hil-tests/sim/toy_models.h"
#include "protocols/link/usb.h"

static int fail(const char *what, const st_err *e)
{
    fprintf(stderr, "rig-usb-probe: %s: %s\n", what, e && e->msg[0] ? e->msg : "mismatch");
    return 1;
}

int main(int argc, char **argv)
{
    const char *want_serial = argc > 1 ? argv[1] : NULL;
    st_err e = {0};
    st_usb_host *h;
    if (st_usb_host_libusb_new(NULL, &h, &e) < 0)
        return fail("libusb", &e);
    st_usb_dev_info info;
    /* The device may still be enumerating when we start: wait on a deadline. */
    if (st_usb_host_wait(h, ST_TOY_USB_VID, ST_TOY_USB_PID, NULL, 5000, &info, &e) < 0)
        return fail("find 1209:0001", &e);
    printf("found %04x:%04x at %s bus %u addr %u: '%s' '%s' '%s'\n", info.vid, info.pid,
           info.port_path, info.bus, info.address, info.manufacturer, info.product,
           info.serial);
    if (strcmp(info.product, "station-sim loopback") != 0)
        return fail("product string", NULL);
    if (want_serial && strcmp(info.serial, want_serial) != 0)
        return fail("serial string", NULL);
    st_usb_dev *d;
    if (st_usb_host_open(h, &info, &d, &e) < 0)
        return fail("open", &e);
    uint8_t msg[5] = {'p', 'r', 'o', 'b', 'e'}, back[64] = {0};
    st_usb_setup set = {0x40, 0x01, 0, 0, sizeof(msg)};
    if (st_usb_control(d, &set, msg, 1000, &e) < 0)
        return fail("vendor OUT", &e);
    st_usb_setup get = {0xc0, 0x02, 0, 0, sizeof(back)};
    int n = st_usb_control(d, &get, back, 1000, &e);
    if (n != (int)sizeof(msg) || memcmp(back, msg, sizeof(msg)) != 0)
        return fail("vendor IN read-back", n < 0 ? &e : NULL);
    if (d->ops->claim_interface(d, 0, &e) < 0)
        return fail("claim interface 0", &e);
    uint8_t out[200];
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (uint8_t)(i * 7 + 1);
    if (d->ops->bulk(d, 0x01, out, sizeof(out), 1000, &e) != (int)sizeof(out))
        return fail("bulk OUT", &e);
    uint8_t in[256];
    size_t got = 0;
    while (got < sizeof(out)) {
        n = d->ops->bulk(d, 0x81, in + got, sizeof(in) - got, 1000, &e);
        if (n <= 0)
            return fail("bulk IN", &e);
        got += (size_t)n;
    }
    if (got != sizeof(out) || memcmp(in, out, sizeof(out)) != 0)
        return fail("bulk echo", NULL);
    printf("control and bulk loopback OK (%zu bytes)\n", got);
    st_usb_dev_close(d);
    st_usb_host_free(h);
    return 0;
}
