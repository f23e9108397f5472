/* rig-keyboard: a virtual USB barcode scanner for the kernel-driver rig. It creates a
 * keyboard through /dev/uinput (libevdev_uinput) with the given name, writes its event
 * device's path to READY_FILE, then obeys lines on stdin:
 *   type TEXT    types TEXT as a US keyboard would (Shift around capitals and symbols),
 *                then Enter, as a scanner does, and prints "typed TEXT (N key events seen
 *                by another reader)": a plain reader (the console's place) opened on the
 *                device before typing, which sees nothing while the station holds a grab;
 *   grab?        prints "grab: busy" when another reader holds the device grabbed
 *                (EVIOCGRAB answers EBUSY), else "grab: free";
 *   quit         destroys the device (the scanner is unplugged) and exits 0,
 * as it does at end of input.
 *   rig-keyboard NAME READY_FILE */
#include <errno.h>
#include <fcntl.h>
#include <libevdev/libevdev-uinput.h>
#include <libevdev/libevdev.h>
#include <linux/input.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const rows[] = { "1234567890-=", "qwertyuiop[]", "asdfghjkl;'`",
                                    "\\zxcvbnm,./" };
static const char *const srows[] = { "!@#$%^&*()_+", "QWERTYUIOP{}", "ASDFGHJKL:\"~",
                                     "|ZXCVBNM<>?" };
static const unsigned first[] = { KEY_1, KEY_Q, KEY_A, KEY_BACKSLASH };

static int key_for(char c, int *shift)
{
    *shift = 0;
    if (c == ' ')
        return KEY_SPACE;
    for (int r = 0; r < 4 && c; r++) {
        const char *p = strchr(rows[r], c);
        if (p)
            return (int)first[r] + (int)(p - rows[r]);
        if ((p = strchr(srows[r], c))) {
            *shift = 1;
            return (int)first[r] + (int)(p - srows[r]);
        }
    }
    return -1;
}

/* A key event and its SYN_REPORT, 2 ms apart: a scanner types fast, but not in one burst. */
static int emit(struct libevdev_uinput *ui, unsigned code, int value)
{
    struct timespec ts = { 0, 2000000 };
    if (libevdev_uinput_write_event(ui, EV_KEY, code, value) < 0 ||
        libevdev_uinput_write_event(ui, EV_SYN, SYN_REPORT, 0) < 0)
        return -1;
    nanosleep(&ts, NULL);
    return 0;
}

static int type(struct libevdev_uinput *ui, const char *text)
{
    for (const char *c = text; *c; c++) {
        int shift, k = key_for(*c, &shift);
        if (k < 0) {
            fprintf(stderr, "rig-keyboard: no key for '%c'\n", *c);
            return -1;
        }
        if ((shift && emit(ui, KEY_LEFTSHIFT, 1)) || emit(ui, (unsigned)k, 1) ||
            emit(ui, (unsigned)k, 0) || (shift && emit(ui, KEY_LEFTSHIFT, 0)))
            return -1;
    }
    return emit(ui, KEY_ENTER, 1) || emit(ui, KEY_ENTER, 0) ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: rig-keyboard NAME READY_FILE\n");
        return 2;
    }
    struct libevdev *dev = libevdev_new();
    libevdev_set_name(dev, argv[1]);
    libevdev_set_id_bustype(dev, BUS_USB);
    libevdev_set_id_vendor(dev, 0x05e0); /* a Symbol/Zebra scanner's vendor id */
    libevdev_set_id_product(dev, 0x1200);
    libevdev_enable_event_type(dev, EV_KEY);
    for (unsigned k = KEY_ESC; k <= KEY_KPDOT; k++)
        libevdev_enable_event_code(dev, EV_KEY, k, NULL);
    struct libevdev_uinput *ui;
    int rc = libevdev_uinput_create_from_device(dev, LIBEVDEV_UINPUT_OPEN_MANAGED, &ui);
    if (rc < 0) {
        fprintf(stderr, "rig-keyboard: /dev/uinput: %s\n", strerror(-rc));
        return 1;
    }
    const char *node = libevdev_uinput_get_devnode(ui);
    /* The node appears through devtmpfs a moment after the device. */
    for (int i = 0; i < 200 && (!node || access(node, R_OK) != 0); i++) {
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
        node = libevdev_uinput_get_devnode(ui);
    }
    if (!node) {
        fprintf(stderr, "rig-keyboard: no event device appeared\n");
        return 1;
    }
    FILE *r = fopen(argv[2], "w");
    if (!r || fprintf(r, "%s\n", node) < 0 || fclose(r))
        return 1;
    char line[512];
    int status = 0;
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "type ", 5) == 0) {
            int wfd = open(node, O_RDONLY | O_NONBLOCK);
            if (type(ui, line + 5)) {
                status = 1;
                break;
            }
            struct timespec ts = { 0, 100000000 };
            nanosleep(&ts, NULL);
            struct input_event ev[64];
            long seen = 0;
            ssize_t n;
            while (wfd >= 0 && (n = read(wfd, ev, sizeof ev)) > 0)
                for (size_t i = 0; i < (size_t)n / sizeof ev[0]; i++)
                    seen += ev[i].type == EV_KEY;
            if (wfd >= 0)
                close(wfd);
            printf("typed %s (%ld key events seen by another reader)\n", line + 5, seen);
        } else if (strcmp(line, "quit") == 0) {
            break;
        } else if (strcmp(line, "grab?") == 0) {
            int fd = open(node, O_RDONLY | O_NONBLOCK);
            struct libevdev *probe = NULL;
            if (fd < 0 || libevdev_new_from_fd(fd, &probe) < 0) {
                printf("grab: cannot open %s\n", node);
            } else {
                int g = libevdev_grab(probe, LIBEVDEV_GRAB);
                printf("grab: %s\n", g == -EBUSY ? "busy" : g == 0 ? "free" : strerror(-g));
                if (g == 0)
                    libevdev_grab(probe, LIBEVDEV_UNGRAB);
            }
            if (probe)
                libevdev_free(probe);
            if (fd >= 0)
                close(fd);
        } else {
            fprintf(stderr, "rig-keyboard: unknown command '%s'\n", line);
            status = 2;
            break;
        }
        fflush(stdout);
    }
    libevdev_uinput_destroy(ui);
    libevdev_free(dev);
    return status;
}
