/* Tests of the libusb backend that need no USB hardware: context per host, listing,
 * a clean NOTFOUND for an absent device, and the libusb -> ST_ERR_* mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

/* The error mapping is file-local; test it where it lives. */
#include "protocols/link/usb_libusb.c"

static void test_error_mapping(void **state)
{
    (void)state;
    st_err err = {0};
    assert_int_equal(lu_error(LIBUSB_ERROR_PIPE, &err, "x"), ST_ERR_STALL);
    assert_int_equal(lu_error(LIBUSB_ERROR_NO_DEVICE, &err, "x"), ST_ERR_DISCONNECT);
    assert_int_equal(lu_error(LIBUSB_ERROR_TIMEOUT, &err, "x"), ST_ERR_TIMEOUT);
    assert_int_equal(lu_error(LIBUSB_ERROR_ACCESS, &err, "open"), ST_ERR_PERM);
    assert_non_null(strstr(err.msg, "udev rule"));
    assert_non_null(strstr(err.msg, "plugdev"));
    assert_int_equal(lu_error(LIBUSB_ERROR_OVERFLOW, &err, "read"), ST_ERR_IO);
    assert_non_null(strstr(err.msg, "LIBUSB_ERROR_OVERFLOW"));
    assert_int_equal(err.code, ST_ERR_IO);
}

static void test_two_hosts_list(void **state)
{
    (void)state;
    st_usb_host *a = NULL, *b = NULL;
    st_err err = {0};
    int rc = st_usb_host_libusb_new(NULL, &a, &err);
    if (rc < 0) {
        /* No usbfs in this container: the error must still be clean. */
        assert_true(err.msg[0] != '\0');
        skip();
    }
    /* Each host has its own context: two may live at once and be freed in any order. */
    assert_int_equal(st_usb_host_libusb_new(NULL, &b, &err), 0);
    st_usb_dev_info *list = NULL;
    size_t n = 99;
    rc = st_usb_host_list(a, &list, &n, &err);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) {
            assert_true(list[i].port_path[0] != '\0');
            assert_true(strlen(list[i].serial) < ST_USB_STRING_MAX);
        }
        free(list);
    } else {
        assert_true(err.msg[0] != '\0');
    }
    st_usb_host_free(a);
    st_usb_dev_info found;
    rc = st_usb_host_find(b, 0x0483, 0xdf11, "99-9.9.9", &found, &err);
    assert_true(rc == ST_ERR_NOTFOUND || rc == ST_ERR_IO);
    st_usb_dev_info want = {.vid = 0x0483, .pid = 0xdf11};
    strcpy(want.port_path, "99-9.9.9");
    st_usb_dev *dev = NULL;
    rc = st_usb_host_open(b, &want, &dev, &err);
    assert_true(rc == ST_ERR_NOTFOUND || rc == ST_ERR_IO);
    assert_null(dev);
    assert_non_null(strstr(err.msg, "99-9.9.9"));
    st_usb_host_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_mapping),
        cmocka_unit_test(test_two_hosts_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
