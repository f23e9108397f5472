/* Barcode scanners that are keyboards: key events to text (US layout) and the evdev device
 * read through libevdev, grabbed. See scanner.h. */
#include "station/scanner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libevdev/libevdev.h>
#include <linux/input.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "station/core/text.h"

/* ---- the decoder ------------------------------------------------------------------------ */

/* What a key types on a US layout, without and with Shift. */
typedef struct keych {
    unsigned short code;
    char plain, shifted;
} keych;

static const keych us_keys[] = {
    { KEY_1, '1', '!' }, { KEY_2, '2', '@' }, { KEY_3, '3', '#' }, { KEY_4, '4', '$' },
    { KEY_5, '5', '%' }, { KEY_6, '6', '^' }, { KEY_7, '7', '&' }, { KEY_8, '8', '*' },
    { KEY_9, '9', '(' }, { KEY_0, '0', ')' }, { KEY_MINUS, '-', '_' }, { KEY_EQUAL, '=', '+' },
    { KEY_Q, 'q', 'Q' }, { KEY_W, 'w', 'W' }, { KEY_E, 'e', 'E' }, { KEY_R, 'r', 'R' },
    { KEY_T, 't', 'T' }, { KEY_Y, 'y', 'Y' }, { KEY_U, 'u', 'U' }, { KEY_I, 'i', 'I' },
    { KEY_O, 'o', 'O' }, { KEY_P, 'p', 'P' }, { KEY_LEFTBRACE, '[', '{' },
    { KEY_RIGHTBRACE, ']', '}' }, { KEY_A, 'a', 'A' }, { KEY_S, 's', 'S' }, { KEY_D, 'd', 'D' },
    { KEY_F, 'f', 'F' }, { KEY_G, 'g', 'G' }, { KEY_H, 'h', 'H' }, { KEY_J, 'j', 'J' },
    { KEY_K, 'k', 'K' }, { KEY_L, 'l', 'L' }, { KEY_SEMICOLON, ';', ':' },
    { KEY_APOSTROPHE, '\'', '"' }, { KEY_GRAVE, '`', '~' }, { KEY_BACKSLASH, '\\', '|' },
    { KEY_Z, 'z', 'Z' }, { KEY_X, 'x', 'X' }, { KEY_C, 'c', 'C' }, { KEY_V, 'v', 'V' },
    { KEY_B, 'b', 'B' }, { KEY_N, 'n', 'N' }, { KEY_M, 'm', 'M' }, { KEY_COMMA, ',', '<' },
    { KEY_DOT, '.', '>' }, { KEY_SLASH, '/', '?' }, { KEY_SPACE, ' ', ' ' },
    /* Some scanners type digits on the keypad (Num Lock is the scanner's business). */
    { KEY_KP0, '0', '0' }, { KEY_KP1, '1', '1' }, { KEY_KP2, '2', '2' }, { KEY_KP3, '3', '3' },
    { KEY_KP4, '4', '4' }, { KEY_KP5, '5', '5' }, { KEY_KP6, '6', '6' }, { KEY_KP7, '7', '7' },
    { KEY_KP8, '8', '8' }, { KEY_KP9, '9', '9' }, { KEY_KPMINUS, '-', '-' },
    { KEY_KPPLUS, '+', '+' }, { KEY_KPASTERISK, '*', '*' }, { KEY_KPSLASH, '/', '/' },
    { KEY_KPDOT, '.', '.' },
};

static const keych *key_of(unsigned code)
{
    for (size_t i = 0; i < sizeof us_keys / sizeof us_keys[0]; i++)
        if (us_keys[i].code == code)
            return &us_keys[i];
    return NULL;
}

void st_keyscan_reset(st_keyscan *k)
{
    memset(k, 0, sizeof *k);
}

static void scan_clear(st_keyscan *k)
{
    k->len = 0;
    k->spoiled = false;
    k->buf[0] = '\0';
}

int st_keyscan_feed(st_keyscan *k, unsigned type, unsigned code, int value, char *out,
                    size_t cap)
{
    if (type == EV_SYN && code == SYN_DROPPED) {
        /* The kernel's buffer overran: keys of this scan are lost, and a code with a
         * character missing could still match a loose pattern. */
        k->spoiled = true;
        return 0;
    }
    if (type != EV_KEY)
        return 0;
    /* value: 0 release, 1 press, 2 autorepeat. */
    if (code == KEY_LEFTSHIFT || code == KEY_RIGHTSHIFT) {
        bool *side = code == KEY_LEFTSHIFT ? &k->lshift : &k->rshift;
        if (value == 0 || value == 1)
            *side = value == 1;
        return 0;
    }
    if (value != 1 && value != 2)
        return 0;
    if (code == KEY_CAPSLOCK) {
        if (value == 1)
            k->caps = !k->caps;
        return 0;
    }
    if (code == KEY_ENTER || code == KEY_KPENTER) {
        /* A buffer of one byte cannot hold a code: an empty "scan" would not be one. */
        bool ok = !k->spoiled && k->len > 0 && out && cap > 1;
        if (ok) {
            size_t n = k->len < cap - 1 ? k->len : cap - 1;
            memcpy(out, k->buf, n);
            out[n] = '\0';
        }
        scan_clear(k);
        return ok ? 1 : 0;
    }
    const keych *kc = key_of(code);
    if (!kc)
        return 0; /* Ctrl, Alt, function keys: nothing a barcode holds */
    bool shift = k->lshift || k->rshift;
    char c = shift ? kc->shifted : kc->plain;
    if (k->caps && c >= 'a' && c <= 'z')
        c = (char)(c - 'a' + 'A');
    else if (k->caps && c >= 'A' && c <= 'Z')
        c = (char)(c - 'A' + 'a');
    if (k->len + 1 >= sizeof k->buf) {
        k->spoiled = true; /* longer than any barcode: the whole scan goes */
        return 0;
    }
    k->buf[k->len++] = c;
    k->buf[k->len] = '\0';
    return 0;
}

/* ---- the device ------------------------------------------------------------------------- */

struct st_scanner {
    int fd;
    struct libevdev *dev;
    st_keyscan keys;
    char path[300];
    char name[128];
};

static int open_path(const char *path, st_scanner *s, st_err *err)
{
    s->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (s->fd < 0) {
        int code = errno == ENOENT || errno == ENODEV ? ST_ERR_NOTFOUND
                   : errno == EACCES || errno == EPERM ? ST_ERR_PERM
                                                       : ST_ERR_IO;
        return st_err_set(err, code, "%s: %s%s", path, strerror(errno),
                          code == ST_ERR_PERM ? " (the station's user needs the input group)" : "");
    }
    int rc = libevdev_new_from_fd(s->fd, &s->dev);
    if (rc < 0)
        return st_err_set(err, ST_ERR_IO, "%s: not an input event device: %s", path,
                          strerror(-rc));
    st_strlcpy(s->path, path, sizeof s->path);
    const char *name = libevdev_get_name(s->dev);
    st_text_printable(name ? name : "", s->name, sizeof s->name);
    return 0;
}

static void close_dev(st_scanner *s)
{
    if (s->dev)
        libevdev_free(s->dev);
    s->dev = NULL;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* The event device in dir whose name is name (the first, by file name). */
static int find_by_name(const char *name, const char *dir, st_scanner *s, st_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return st_err_set(err, ST_ERR_NOTFOUND, "%s: %s", dir, strerror(errno));
    char best[300] = "";
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "event", 5) != 0)
            continue;
        char p[300];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        st_scanner t = { .fd = -1 };
        if (open_path(p, &t, NULL) == 0) {
            const char *n = libevdev_get_name(t.dev);
            /* eventN sorts as text: keep the lowest number, whatever readdir's order. */
            if (n && strcmp(n, name) == 0 &&
                (!best[0] || strlen(p) < strlen(best) ||
                 (strlen(p) == strlen(best) && strcmp(p, best) < 0)))
                st_strlcpy(best, p, sizeof best);
        }
        close_dev(&t);
    }
    closedir(d);
    if (!best[0]) {
        char n[96];
        return st_err_set(err, ST_ERR_NOTFOUND, "no input device named \"%s\" in %s (names: "
                          "/proc/bus/input/devices)", st_text_printable(name, n, sizeof n), dir);
    }
    return open_path(best, s, err);
}

int st_scanner_open(const char *device, const char *input_dir, st_scanner **out, st_err *err)
{
    *out = NULL;
    st_scanner *s = calloc(1, sizeof *s);
    if (!s)
        return st_err_set(err, ST_ERR_NOMEM, "scanner: out of memory");
    s->fd = -1;
    int rc = device[0] == '/' ? open_path(device, s, err)
                              : find_by_name(device, input_dir ? input_dir : "/dev/input", s, err);
    if (rc == 0 && !libevdev_has_event_code(s->dev, EV_KEY, KEY_ENTER) &&
        !libevdev_has_event_code(s->dev, EV_KEY, KEY_KPENTER))
        rc = st_err_set(err, ST_ERR_INVAL, "%s (%s): not a keyboard (it has no Enter key)",
                        s->path, s->name);
    if (rc == 0) {
        /* Grabbed, the scanner's keys never reach the console or a desktop: a scan typed
         * into a shell would run as a command. */
        int g = libevdev_grab(s->dev, LIBEVDEV_GRAB);
        if (g < 0)
            rc = st_err_set(err, g == -EBUSY ? ST_ERR_BUSY : ST_ERR_IO,
                            "%s (%s): cannot grab it: %s", s->path, s->name,
                            g == -EBUSY ? "another program holds it" : strerror(-g));
    }
    if (rc) {
        close_dev(s);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int st_scanner_fd(const st_scanner *s)
{
    return s->fd;
}

const char *st_scanner_path(const st_scanner *s)
{
    return s->path;
}

const char *st_scanner_name(const st_scanner *s)
{
    return s->name;
}

int st_scanner_read(st_scanner *s, char *out, size_t cap, st_err *err)
{
    unsigned flag = LIBEVDEV_READ_FLAG_NORMAL;
    for (;;) {
        struct input_event ev;
        int rc = libevdev_next_event(s->dev, flag, &ev);
        if (rc == -EAGAIN) {
            if (flag == LIBEVDEV_READ_FLAG_SYNC) {
                flag = LIBEVDEV_READ_FLAG_NORMAL; /* the resync is over */
                continue;
            }
            return 0;
        }
        if (rc == LIBEVDEV_READ_STATUS_SYNC) {
            /* Events were dropped: libevdev replays the key state (so Shift is right
             * afterwards); the scan in progress is lost. */
            st_keyscan_feed(&s->keys, EV_SYN, SYN_DROPPED, 0, NULL, 0);
            flag = LIBEVDEV_READ_FLAG_SYNC;
            continue;
        }
        if (rc < 0)
            return st_err_set(err, rc == -ENODEV ? ST_ERR_DISCONNECT : ST_ERR_IO,
                              "%s (%s): %s", s->path, s->name,
                              rc == -ENODEV ? "the scanner went away (unplugged?)" : strerror(-rc));
        if (flag == LIBEVDEV_READ_FLAG_SYNC) {
            /* Replayed state: modifiers only, never text. */
            if (ev.type == EV_KEY && (ev.code == KEY_LEFTSHIFT || ev.code == KEY_RIGHTSHIFT))
                st_keyscan_feed(&s->keys, ev.type, ev.code, ev.value, NULL, 0);
            continue;
        }
        if (st_keyscan_feed(&s->keys, ev.type, ev.code, ev.value, out, cap) == 1)
            return 1;
    }
}

void st_scanner_close(st_scanner *s)
{
    if (!s)
        return;
    if (s->dev)
        libevdev_grab(s->dev, LIBEVDEV_UNGRAB);
    close_dev(s);
    free(s);
}
