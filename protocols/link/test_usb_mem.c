/* Tests of the standard-request helper and the in-memory USB bus (usb_model_std.c,
 * usb_mem.c): descriptors on the wire, identity read back, attach/detach semantics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/link/usb_model.h"
#include "station/core/clock.h"

static const uint8_t dev_desc[18] = {18, 1, 0x00, 0x02, 0, 0, 0, 64, 0x83, 0x04, 0x11, 0xdf,
                                     0x00, 0x02, 1, 2, 3, 1};
static const uint8_t cfg_desc[] = {
    9, 2, 27, 0, 1, 1, 0, 0x80, 50,
    9, 4, 0, 0, 0, 0xfe, 1, 2, 4,
    9, 4, 0, 1, 0, 0xfe, 1, 2, 5,
};
static const char *const strs[] = {"STMicroelectronics", "STM32  BOOTLOADER", "208A31574253",
                                   "alt zero", "alt one"};

typedef struct tmodel {
    st_usb_model base;
    st_usb_model_desc desc;
    int alt;
    st_vusb_bus *bus;
    const char *port;
    unsigned calls;
    uint16_t pid_override;
} tmodel;

static int tcontrol(st_usb_model *m, const st_usb_setup *s, uint8_t *data)
{
    tmodel *t = (tmodel *)m;
    __atomic_add_fetch(&t->calls, 1, __ATOMIC_SEQ_CST);
    int rc = st_usb_model_std_control(&t->desc, s, data, &t->alt);
    if (rc != ST_ERR_UNSUPPORTED) {
        if (rc >= 18 && s->wValue == 0x0100 && t->pid_override) {
            data[10] = t->pid_override & 0xff;
            data[11] = t->pid_override >> 8;
        }
        return rc;
    }
    if (s->bmRequestType == 0x40 && s->bRequest == 1) {
        /* A device leaving: it unplugs itself from inside its own request. */
        st_vusb_detach(t->bus, t->port);
        return ST_ERR_DISCONNECT;
    }
    if (s->bmRequestType == 0xC0 && s->bRequest == 2) {
        for (unsigned i = 0; i < s->wLength && i < 4; i++)
            data[i] = (uint8_t)(0xA0 + i);
        return s->wLength < 4 ? s->wLength : 4;
    }
    return ST_ERR_STALL;
}

static const st_usb_model_ops tops = {.control = tcontrol};

static void tmodel_init(tmodel *t, st_vusb_bus *bus, const char *port)
{
    memset(t, 0, sizeof *t);
    t->base.ops = &tops;
    t->desc = (st_usb_model_desc){dev_desc, cfg_desc, sizeof cfg_desc, strs, 5};
    t->bus = bus;
    t->port = port;
}

static void test_std_descriptors(void **state)
{
    (void)state;
    st_usb_model_desc d = {dev_desc, cfg_desc, sizeof cfg_desc, strs, 5};
    uint8_t buf[256];
    st_usb_setup s = {0x80, 6, 0x0100, 0, 64};
    assert_int_equal(st_usb_model_std_control(&d, &s, buf, NULL), 18);
    assert_memory_equal(buf, dev_desc, 18);
    s.wLength = 8; /* the host's first 8-byte read of bMaxPacketSize0 */
    assert_int_equal(st_usb_model_std_control(&d, &s, buf, NULL), 8);
    s = (st_usb_setup){0x80, 6, 0x0200, 0, 9};
    assert_int_equal(st_usb_model_std_control(&d, &s, buf, NULL), 9);
    assert_int_equal(buf[2], 27);
    s.wLength = 255;
    assert_int_equal(st_usb_model_std_control(&d, &s, buf, NULL), 27);
    /* LANGID table: 04 03 09 04 */
    s = (st_usb_setup){0x80, 6, 0x0300, 0, 255};
    assert_int_equal(st_usb_model_std_control(&d, &s, buf, NULL), 4);
    const uint8_t langid[4] = {4, 3, 0x09, 0x04};
    assert_memory_equal(buf, langid, 4);
    /* String 2 in UTF-16LE: 'S' 0 'T' 0 ... */
    s = (st_usb_setup){0x80, 6, 0x0302, 0x0409, 255};
    int n = st_usb_model_std_control(&d, &s, buf, NULL);
    assert_int_equal(n, 2 + 2 * 17);
    assert_int_equal(buf[0], 36);
    assert_int_equal(buf[1], 3);
    assert_int_equal(buf[2], 'S');
    assert_int_equal(buf[3], 0);
    assert_int_equal(buf[2 + 2 * 16], 'R');
    /* Other language, missing index, unknown descriptor type: stall. */
    s.wIndex = 0x0407;
    assert_int_equal(st_usb_model_std_control(&d, &s, buf, NULL), ST_ERR_STALL);
    s = (st_usb_setup){0x80, 6, 0x0309, 0x0409, 255};
    assert_int_equal(st_usb_model_std_control(&d, &s, buf, NULL), ST_ERR_STALL);
    s = (st_usb_setup){0x80, 6, 0x0600, 0, 10};
    assert_int_equal(st_usb_model_std_control(&d, &s, buf, NULL), ST_ERR_STALL);
    /* Class request is not ours. */
    s = (st_usb_setup){0xA1, 3, 0, 0, 6};
    assert_int_equal(st_usb_model_std_control(&d, &s, buf, NULL), ST_ERR_UNSUPPORTED);
}

static void test_std_config_interface(void **state)
{
    (void)state;
    st_usb_model_desc d = {dev_desc, cfg_desc, sizeof cfg_desc, strs, 5};
    uint8_t buf[8];
    int alt = -1;
    st_usb_setup s = {0x00, 9, 1, 0, 0};
    assert_int_equal(st_usb_model_std_control(&d, &s, NULL, &alt), 0);
    assert_int_equal(alt, 0);
    s.wValue = 2;
    assert_int_equal(st_usb_model_std_control(&d, &s, NULL, &alt), ST_ERR_STALL);
    s = (st_usb_setup){0x01, 11, 1, 0, 0};
    assert_int_equal(st_usb_model_std_control(&d, &s, NULL, &alt), 0);
    assert_int_equal(alt, 1);
    s.wValue = 3; /* no such alt */
    assert_int_equal(st_usb_model_std_control(&d, &s, NULL, &alt), ST_ERR_STALL);
    assert_int_equal(alt, 1);
    s = (st_usb_setup){0x81, 10, 0, 0, 1};
    assert_int_equal(st_usb_model_std_control(&d, &s, buf, &alt), 1);
    assert_int_equal(buf[0], 1);
    s = (st_usb_setup){0x80, 0, 0, 0, 2};
    buf[0] = buf[1] = 0x55;
    assert_int_equal(st_usb_model_std_control(&d, &s, buf, NULL), 2);
    assert_int_equal(buf[0], 0);
    s = (st_usb_setup){0x00, 5, 7, 0, 0};
    assert_int_equal(st_usb_model_std_control(&d, &s, NULL, NULL), 0);
    s.wValue = 200;
    assert_int_equal(st_usb_model_std_control(&d, &s, NULL, NULL), ST_ERR_STALL);
}

static void test_describe(void **state)
{
    (void)state;
    tmodel t;
    tmodel_init(&t, NULL, NULL);
    st_usb_dev_info info;
    memset(&info, 0, sizeof info);
    strcpy(info.port_path, "1-4");
    assert_int_equal(st_usb_model_describe(&t.base, &info), 0);
    assert_int_equal(info.vid, 0x0483);
    assert_int_equal(info.pid, 0xdf11);
    assert_int_equal(info.bcd_device, 0x0200);
    assert_string_equal(info.manufacturer, "STMicroelectronics");
    assert_string_equal(info.product, "STM32  BOOTLOADER");
    assert_string_equal(info.serial, "208A31574253");
    assert_string_equal(info.port_path, "1-4");
}

static void test_bus_attach_open_detach(void **state)
{
    (void)state;
    st_vusb_bus *bus = st_vusb_bus_new();
    assert_non_null(bus);
    st_usb_host *host;
    assert_int_equal(st_usb_host_mem_new(bus, NULL, &host, NULL), 0);
    tmodel a, b;
    tmodel_init(&a, bus, "3-1.2");
    tmodel_init(&b, bus, "3-1.2");
    b.pid_override = 0x1234;
    st_err err = {0};
    assert_int_equal(st_vusb_attach(bus, "3-1.2", &a.base, &err), 0);
    assert_int_equal(st_vusb_attach(bus, "3-1.2", &b.base, &err), ST_ERR_BUSY);

    st_usb_dev_info *list;
    size_t n;
    assert_int_equal(st_usb_host_list(host, &list, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].port_path, "3-1.2");
    assert_int_equal(list[0].bus, 3);
    uint8_t first_addr = list[0].address;
    assert_int_not_equal(first_addr, 0);
    free(list);

    st_usb_dev_info found;
    assert_int_equal(st_usb_host_find(host, 0x0483, 0xdf11, "3-1.2", &found, &err), 0);
    assert_int_equal(st_usb_host_find(host, 0x0483, 0xdf11, "3-1.3", &found, &err),
                     ST_ERR_NOTFOUND);
    st_usb_dev *dev;
    assert_int_equal(st_usb_host_open(host, &found, &dev, &err), 0);
    assert_string_equal(dev->info.serial, "208A31574253");
    uint8_t buf[16];
    st_usb_setup s = {0xC0, 2, 0, 0, 16};
    assert_int_equal(st_usb_control(dev, &s, buf, 100, &err), 4);
    assert_int_equal(buf[3], 0xA3);
    char str[64];
    assert_int_equal(dev->ops->string(dev, 2, str, sizeof str, &err), 17);
    assert_string_equal(str, "STM32  BOOTLOADER");
    uint8_t cfg[64];
    assert_int_equal(dev->ops->config_descriptor(dev, cfg, sizeof cfg, &err), 27);
    assert_memory_equal(cfg, cfg_desc, 27);
    assert_int_equal(dev->ops->set_alt(dev, 0, 1, &err), 0);
    assert_int_equal(a.alt, 1);
    assert_int_equal(dev->ops->set_alt(dev, 0, 7, &err), ST_ERR_STALL);
    assert_int_equal(dev->ops->bulk(dev, 0x81, buf, 4, 10, &err), ST_ERR_UNSUPPORTED);

    /* Unplug, then plug another device into the same port: the old handle stays dead. */
    st_vusb_detach(bus, "3-1.2");
    assert_int_equal(st_usb_control(dev, &s, buf, 100, &err), ST_ERR_DISCONNECT);
    assert_int_equal(st_vusb_attach(bus, "3-1.2", &b.base, &err), 0);
    assert_int_equal(st_usb_control(dev, &s, buf, 100, &err), ST_ERR_DISCONNECT);
    assert_int_equal(b.calls, 0);
    assert_int_equal(st_usb_host_find(host, 0x0483, 0x1234, "3-1.2", &found, &err), 0);
    assert_int_not_equal(found.address, first_addr);
    st_usb_dev_close(dev);
    /* Opening the new device by the old identity fails cleanly. */
    st_usb_dev_info old = found;
    old.pid = 0xdf11;
    assert_int_equal(st_usb_host_open(host, &old, &dev, &err), ST_ERR_NOTFOUND);
    assert_non_null(strstr(err.msg, "3-1.2"));
    /* Stale bus/address: like a device that re-enumerated since it was listed. */
    old = found;
    old.address = first_addr;
    assert_int_equal(st_usb_host_open(host, &old, &dev, &err), ST_ERR_NOTFOUND);
    st_vusb_detach(bus, "3-1.2");
    st_vusb_detach(bus, "3-1.2"); /* no-op when empty */
    assert_int_equal(st_usb_host_list(host, &list, &n, &err), 0);
    assert_int_equal(n, 0);
    free(list);
    st_usb_host_free(host);
    st_vusb_bus_free(bus);
}

static void test_bus_model_detaches_itself(void **state)
{
    (void)state;
    st_vusb_bus *bus = st_vusb_bus_new();
    st_usb_host *host;
    assert_int_equal(st_usb_host_mem_new(bus, NULL, &host, NULL), 0);
    tmodel a;
    tmodel_init(&a, bus, "1-1");
    assert_int_equal(st_vusb_attach(bus, "1-1", &a.base, NULL), 0);
    st_usb_dev_info want = {0};
    strcpy(want.port_path, "1-1");
    st_usb_dev *dev;
    st_err err = {0};
    assert_int_equal(st_usb_host_open(host, &want, &dev, &err), 0);
    st_usb_setup s = {0x40, 1, 0, 0, 0};
    /* Would deadlock if the bus held its lock while calling the model. */
    assert_int_equal(st_usb_control(dev, &s, NULL, 100, &err), ST_ERR_DISCONNECT);
    assert_non_null(strstr(err.msg, "disconnected"));
    assert_int_equal(st_usb_host_find(host, 0, 0, "1-1", &want, &err), ST_ERR_NOTFOUND);
    st_usb_dev_close(dev);
    st_usb_host_free(host);
    st_vusb_bus_free(bus);
}

/* The hammer calls until it sees the disconnect, so it cannot run out of calls before the
 * detach however the threads are scheduled; the deadline only ends a broken run (a detach
 * that never reaches the handle) with a failure instead of a hang. */
typedef struct hammer {
    st_usb_dev *dev;
    st_deadline give_up;
    int disconnects, ok, other;
    bool timed_out;
} hammer;

static void *hammer_thread(void *arg)
{
    hammer *h = arg;
    uint8_t buf[4];
    st_usb_setup s = {0xC0, 2, 0, 0, 4};
    for (;;) {
        if (st_deadline_passed(h->give_up)) {
            h->timed_out = true;
            break;
        }
        int rc = st_usb_control(h->dev, &s, buf, 100, NULL);
        if (rc == ST_ERR_DISCONNECT) {
            h->disconnects++;
            break;
        }
        if (rc == 4)
            __atomic_add_fetch(&h->ok, 1, __ATOMIC_SEQ_CST);
        else
            h->other++;
    }
    return NULL;
}

static void test_bus_detach_while_busy(void **state)
{
    (void)state;
    st_vusb_bus *bus = st_vusb_bus_new();
    st_usb_host *host;
    assert_int_equal(st_usb_host_mem_new(bus, NULL, &host, NULL), 0);
    tmodel *a = malloc(sizeof *a);
    tmodel_init(a, bus, "2-3");
    assert_int_equal(st_vusb_attach(bus, "2-3", &a->base, NULL), 0);
    st_usb_dev_info want = {0};
    strcpy(want.port_path, "2-3");
    hammer h = {.give_up = st_deadline_in_ms(30000)};
    assert_int_equal(st_usb_host_open(host, &want, &h.dev, NULL), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, hammer_thread, &h), 0);
    /* Detach only once the hammer has provably been answered by the model 100 times: the
     * detach then cuts a running stream of requests, one of which may be inside the model
     * at that moment. */
    st_deadline started = st_deadline_in_ms(30000);
    int seen;
    while ((seen = __atomic_load_n(&h.ok, __ATOMIC_SEQ_CST)) < 100 &&
           !st_deadline_passed(started))
        ;
    st_vusb_detach(bus, "2-3");
    /* After detach returns no call is inside the model: freeing it now is safe (ASan). */
    free(a);
    pthread_join(th, NULL);
    assert_true(seen >= 100);
    assert_false(h.timed_out);
    assert_int_equal(h.disconnects, 1);
    assert_int_equal(h.other, 0);
    assert_true(h.ok >= 100);
    st_usb_dev_close(h.dev);
    st_usb_host_free(host);
    st_vusb_bus_free(bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_std_descriptors),
        cmocka_unit_test(test_std_config_interface),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_bus_attach_open_detach),
        cmocka_unit_test(test_bus_model_detaches_itself),
        cmocka_unit_test(test_bus_detach_while_busy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
