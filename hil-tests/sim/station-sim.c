/* station-sim: runs one of our device models attached to a real endpoint, so real clients
 * (the station, dfu-util, lsusb, can-utils, flashtool.py, stm32flash) meet it through real
 * kernel drivers: a USB/IP device (vhci-hcd), an slcan CAN interface, or a pty. Used by the
 * kernel-driver rig and for dry runs of a job before hardware arrives. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "hil-tests/sim/toy_models.h"
#include "protocols/link/can_model.h"
#include "protocols/link/pty_server.h"
#include "protocols/link/slcan_server.h"
#include "protocols/link/usbip_server.h"
#include "station/core/clock.h"
#include "station/core/mcu.h"
#ifdef STATION_SIM_HAVE_DFU
#include "protocols/dfuse/dfu_model.h"
#endif
#ifdef STATION_SIM_HAVE_KATAPULT
#include "protocols/katapult/katapult_model.h"
#endif
#ifdef STATION_SIM_HAVE_KLIPPER_NODE
#include "protocols/canadmin/klipper_node.h"
#endif
#ifdef STATION_SIM_HAVE_VUNIT
#include "protocols/sim/klipper_app.h"
#include "protocols/sim/vunit.h"
#endif

#define EXIT_USAGE 2
#define GPIO_POLL_MS 5

static const char usage[] =
    "usage: station-sim ENDPOINT [options]\n"
    "Serve a device model on a real endpoint (root, in the rig VM or on a test host).\n"
    "\n"
    "Endpoints and models:\n"
    "  usbip   --model loopback|dfu|unit   a USB device through vhci-hcd (modprobe vhci-hcd)\n"
    "  slcan   --model echo|katapult|klipper  a CAN bus behind a kernel slcan interface\n"
    "  pty     --model echo|katapult|klipper  a serial port (pseudo-terminal)\n"
    "\n"
    "Options:\n"
    "  --model NAME         the device model (default: loopback / echo)\n"
    "  --mcu NAME           MCU of the unit's flash (default stm32g431xx)\n"
    "  --timing none|datasheet  model timing profile (default none)\n"
    "  --flash FILE[@ADDR]  preload the unit's flash (ADDR hex, default flash start)\n"
    "  --dump FILE          write the unit's main flash to FILE at exit\n"
    "  --serial STR         USB serial number (loopback, dfu)\n"
    "  --uuid HEX12         CAN UUID of the node (default 0a0b0c0d0e0f)\n"
    "  --port N             vhci port (default: first free)\n"
    "  --ifname NAME        name for the slcan interface (default can0)\n"
    "  --link PATH          symlink PATH to the pty\n"
    "  --gpio-sim DIR       unit model: read BOOT0/NRST from gpio-sim sim_gpioN/value in DIR\n"
    "  --boot0-line N, --nrst-line N   line offsets in that chip (default 0 and 1)\n"
    "  --fault STR          unit model fault (vunit.h syntax), repeatable\n"
    "  --ready-file PATH    write endpoint facts (port=, ifname=, path=) there when ready\n"
    "  --duration SEC       exit after SEC seconds (default: run until SIGTERM/SIGINT)\n"
    "  --once               dfu model: exit when the device leaves DFU\n"
    "  -v, --verbose        log every request (repeat for more)\n"
    "  -h, --help           this text      --version   the version\n"
    "\n"
    "Prints 'station-sim: ready: ...' on stdout once the endpoint exists.\n"
    "Exit status: 0 done, 1 runtime error, 2 usage error.\n";

typedef struct sim_opts {
    const char *endpoint, *model, *mcu, *flash_file, *dump, *serial, *ifname, *link;
    const char *gpio_dir, *ready_file;
    uint32_t flash_addr;
    bool has_flash_addr;
    uint8_t uuid[6];
    st_timing_profile timing;
    int port;
    int boot0_line, nrst_line;
    const char *faults[16];
    size_t nfaults;
    double duration_s;
    bool once;
    int verbose;
} sim_opts;

typedef struct sim {
    sim_opts o;
    st_logger log;
    const st_mcu *mcu;
    st_flash *flash;
    uint8_t *holds;
    size_t holds_len;
    /* usbip */
    st_usbip_server *usbip;
    st_usb_model *want_model;  /* what the unit presents on its USB port now */
    bool want_plugged;
    unsigned gen, plugged_gen; /* every attach/detach bumps gen: a replug */
    bool left;                 /* the dfu model left DFU */
    st_toy_usb *toy_usb;
    /* slcan */
    st_vcan_bus *bus;
    st_can_iface *iface;
    st_can_link *link;
    st_slcan_server *slcan;
    st_toy_can toy_can;
    st_can_node *on_bus;       /* the node attached now (katapult/klipper swap) */
    /* pty */
    st_pty_server *pty;
    st_toy_stream toy_stream;
#ifdef STATION_SIM_HAVE_DFU
    st_dfu_model *dfu;
#endif
#ifdef STATION_SIM_HAVE_KATAPULT
    st_katapult_model *katapult;
    st_can_stream_node *katapult_node;
#endif
#ifdef STATION_SIM_HAVE_KLIPPER_NODE
    st_klipper_node *klipper_node;
#endif
#ifdef STATION_SIM_HAVE_VUNIT
    st_vunit *unit;
    st_klipper_app *app;
    int gpio_fd[2];
    int gpio_val[2];
#endif
} sim;

static void log_write(void *ctx, st_log_level level, const char *module, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "station-sim: %s: %s: %s\n", st_log_level_name(level), module, msg);
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("station-sim: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (station-sim --help)\n", stderr);
    va_end(ap);
    exit(EXIT_USAGE);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool parse_uuid(const char *s, uint8_t out[6])
{
    if (strlen(s) != 12)
        return false;
    for (int i = 0; i < 6; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static long parse_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || *end || end == s || v < lo || v > hi)
        die_usage("%s: '%s' is not a number in %ld..%ld", opt, s, lo, hi);
    return v;
}

static void parse_args(int argc, char **argv, sim_opts *o)
{
    enum { O_MODEL = 256, O_MCU, O_TIMING, O_FLASH, O_DUMP, O_SERIAL, O_UUID, O_PORT,
           O_IFNAME, O_LINK, O_GPIO, O_BOOT0, O_NRST, O_FAULT, O_READY, O_DURATION, O_ONCE,
           O_VERSION };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, O_MODEL},
        {"mcu", required_argument, NULL, O_MCU},
        {"timing", required_argument, NULL, O_TIMING},
        {"flash", required_argument, NULL, O_FLASH},
        {"dump", required_argument, NULL, O_DUMP},
        {"serial", required_argument, NULL, O_SERIAL},
        {"uuid", required_argument, NULL, O_UUID},
        {"port", required_argument, NULL, O_PORT},
        {"ifname", required_argument, NULL, O_IFNAME},
        {"link", required_argument, NULL, O_LINK},
        {"gpio-sim", required_argument, NULL, O_GPIO},
        {"boot0-line", required_argument, NULL, O_BOOT0},
        {"nrst-line", required_argument, NULL, O_NRST},
        {"fault", required_argument, NULL, O_FAULT},
        {"ready-file", required_argument, NULL, O_READY},
        {"duration", required_argument, NULL, O_DURATION},
        {"once", no_argument, NULL, O_ONCE},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    *o = (sim_opts){.mcu = "stm32g431xx", .ifname = "can0", .port = -1, .boot0_line = 0,
                    .nrst_line = 1, .uuid = {0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f}};
    int c;
    while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: o->model = optarg; break;
        case O_MCU: o->mcu = optarg; break;
        case O_TIMING:
            if (!st_timing_parse(optarg, &o->timing))
                die_usage("--timing: '%s' is not none or datasheet", optarg);
            break;
        case O_FLASH: {
            o->flash_file = optarg;
            char *at = strrchr(optarg, '@');
            if (at) {
                *at = 0;
                o->flash_addr = (uint32_t)parse_long("--flash", at + 1, 0, 0xffffffffL);
                o->has_flash_addr = true;
            }
            break;
        }
        case O_DUMP: o->dump = optarg; break;
        case O_SERIAL: o->serial = optarg; break;
        case O_UUID:
            if (!parse_uuid(optarg, o->uuid))
                die_usage("--uuid: '%s' is not 12 hex digits", optarg);
            break;
        case O_PORT: o->port = (int)parse_long("--port", optarg, 0, 255); break;
        case O_IFNAME: o->ifname = optarg; break;
        case O_LINK: o->link = optarg; break;
        case O_GPIO: o->gpio_dir = optarg; break;
        case O_BOOT0: o->boot0_line = (int)parse_long("--boot0-line", optarg, 0, 1023); break;
        case O_NRST: o->nrst_line = (int)parse_long("--nrst-line", optarg, 0, 1023); break;
        case O_FAULT:
            if (o->nfaults == sizeof(o->faults) / sizeof(o->faults[0]))
                die_usage("too many --fault options");
            o->faults[o->nfaults++] = optarg;
            break;
        case O_READY: o->ready_file = optarg; break;
        case O_DURATION:
            o->duration_s = (double)parse_long("--duration", optarg, 0, 86400);
            break;
        case O_ONCE: o->once = true; break;
        case 'v': o->verbose++; break;
        case 'h': fputs(usage, stdout); exit(0);
        case O_VERSION: printf("station-sim 0.1.0\n"); exit(0);
        default: die_usage("bad option");
        }
    }
    if (optind >= argc)
        die_usage("no endpoint given (usbip, slcan or pty)");
    o->endpoint = argv[optind++];
    if (optind < argc)
        die_usage("unexpected argument '%s'", argv[optind]);
    if (strcmp(o->endpoint, "usbip") && strcmp(o->endpoint, "slcan") && strcmp(o->endpoint, "pty"))
        die_usage("unknown endpoint '%s'", o->endpoint);
    if (!o->model)
        o->model = strcmp(o->endpoint, "usbip") == 0 ? "loopback" : "echo";
}

/* ---- the unit's flash --------------------------------------------------------------- */

static int load_file(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 65536, n = 0;
    uint8_t *b = malloc(cap);
    size_t r;
    while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            uint8_t *nb = cap < (64u << 20) ? realloc(b, cap *= 2) : NULL;
            if (!nb) {
                free(b);
                b = NULL;
            } else {
                b = nb;
            }
        }
    }
    fclose(f);
    if (!b)
        return -1;
    *out = b;
    *len = n;
    return 0;
}

__attribute__((unused)) static int setup_flash(sim *s)
{
    s->mcu = st_mcu_find(s->o.mcu);
    if (!s->mcu) {
        fprintf(stderr, "station-sim: unknown MCU '%s'\n", s->o.mcu);
        return -1;
    }
    if (!s->o.has_flash_addr)
        s->o.flash_addr = s->mcu->flash_start;
    if (s->o.flash_file) {
        if (load_file(s->o.flash_file, &s->holds, &s->holds_len) < 0) {
            fprintf(stderr, "station-sim: --flash %s: %s\n", s->o.flash_file, strerror(errno));
            return -1;
        }
    }
    s->flash = st_flash_new(s->mcu, s->o.timing);
    if (!s->flash)
        return -1;
    if (s->holds)
        st_flash_preload(s->flash, s->o.flash_addr, s->holds, s->holds_len);
    return 0;
}

static void dump_flash(sim *s, st_flash *f)
{
    if (!s->o.dump || !f)
        return;
    uint8_t *b = malloc(s->mcu->flash_size);
    FILE *out = b ? fopen(s->o.dump, "wb") : NULL;
    if (b && out && st_flash_read(f, s->mcu->flash_start, b, s->mcu->flash_size) >= 0 &&
        fwrite(b, 1, s->mcu->flash_size, out) == s->mcu->flash_size) {
        ST_LOGI(&s->log, "sim", "flash written to %s", s->o.dump);
    } else {
        fprintf(stderr, "station-sim: --dump %s: %s\n", s->o.dump, strerror(errno));
    }
    if (out)
        fclose(out);
    free(b);
}

static void ready(sim *s, const char *key, const char *value, const char *what)
{
    printf("station-sim: ready: %s %s=%s\n", what, key, value);
    fflush(stdout);
    if (s->o.ready_file) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", s->o.ready_file);
        FILE *f = fopen(tmp, "w");
        if (f) {
            fprintf(f, "%s=%s\nmodel=%s\n", key, value, s->o.model);
            fclose(f);
            rename(tmp, s->o.ready_file);
        }
    }
}

/* ---- usbip ---------------------------------------------------------------------------- */

/* The unit's USB port. Models call attach/detach from inside a request (DFU leave -> the
 * unit reboots into its application), so only the wish is recorded here; the main loop
 * replugs between steps, never inside one. */
static int port_attach(void *ctx, st_usb_model *m, st_err *err)
{
    sim *s = ctx;
    s->want_model = m;
    s->want_plugged = true;
    s->gen++;
    return 0;
}

__attribute__((unused)) static void port_detach(void *ctx)
{
    sim *s = ctx;
    s->want_plugged = false;
    s->gen++;
}

static int usb_reconcile(sim *s)
{
    bool plugged = st_usbip_server_plugged(s->usbip);
    if (!s->want_plugged) {
        if (plugged)
            st_usbip_server_unplug(s->usbip);
        return 0;
    }
    if (s->gen == s->plugged_gen)
        return 0; /* unplugged by the model itself (it vanished): stays so until a reboot */
    if (plugged)
        st_usbip_server_unplug(s->usbip);
    st_usbip_opts uo = {.use_port = s->o.port >= 0, .port = s->o.port};
    st_err e = {0};
    if (st_usbip_server_plug(s->usbip, s->want_model, &uo, &e) < 0) {
        fprintf(stderr, "station-sim: %s\n", e.msg);
        return -1;
    }
    s->plugged_gen = s->gen;
    st_usb_dev_info info = {0};
    char facts[64];
    snprintf(facts, sizeof(facts), "%d", st_usbip_server_port(s->usbip));
    if (st_usb_model_describe(s->want_model, &info) == 0) {
        char what[64];
        snprintf(what, sizeof(what), "usb %04x:%04x", info.vid, info.pid);
        ready(s, "port", facts, what);
    } else {
        ready(s, "port", facts, "usb");
    }
    return 0;
}

#ifdef STATION_SIM_HAVE_DFU
static void dfu_left(void *ctx, uint32_t jump)
{
    sim *s = ctx;
    ST_LOGI(&s->log, "sim", "dfu: left DFU (jump to 0x%08x)", jump);
    s->left = true;
}
#endif

#ifdef STATION_SIM_HAVE_VUNIT
/* The unit's own pull resistors: NRST pulled up, BOOT0 pulled down, so lines the station
 * has not requested read as a running unit. */
static int gpio_open(sim *s)
{
    int lines[2] = {s->o.boot0_line, s->o.nrst_line};
    const char *pulls[2] = {"pull-down", "pull-up"};
    for (int i = 0; i < 2; i++) {
        char p[4096];
        snprintf(p, sizeof(p), "%s/sim_gpio%d/pull", s->o.gpio_dir, lines[i]);
        FILE *f = fopen(p, "w");
        if (!f || fputs(pulls[i], f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "station-sim: %s: %s\n", p, strerror(errno));
            return -1;
        }
        snprintf(p, sizeof(p), "%s/sim_gpio%d/value", s->o.gpio_dir, lines[i]);
        s->gpio_fd[i] = open(p, O_RDONLY | O_CLOEXEC);
        if (s->gpio_fd[i] < 0) {
            fprintf(stderr, "station-sim: %s: %s\n", p, strerror(errno));
            return -1;
        }
        s->gpio_val[i] = -1;
    }
    return 0;
}

static void gpio_poll(sim *s)
{
    for (int i = 0; i < 2; i++) {
        char b[4] = {0};
        if (pread(s->gpio_fd[i], b, sizeof(b) - 1, 0) <= 0)
            continue;
        int v = b[0] == '1';
        if (v == s->gpio_val[i])
            continue;
        s->gpio_val[i] = v;
        ST_LOGI(&s->log, "sim", "pin %s -> %d", i == 0 ? "BOOT0" : "NRST", v);
        st_vunit_set_pin(s->unit, i == 0 ? ST_VUNIT_BOOT0 : ST_VUNIT_NRST, v);
    }
}
#endif

static int setup_usbip(sim *s)
{
    st_err e = {0};
    if (st_usbip_server_new(NULL, &s->log, &s->usbip, &e) < 0)
        return -1;
    const char *m = s->o.model;
    if (strcmp(m, "loopback") == 0) {
        s->toy_usb = st_toy_usb_new(s->o.serial);
        return s->toy_usb ? port_attach(s, st_toy_usb_model(s->toy_usb), NULL) : -1;
    }
#ifdef STATION_SIM_HAVE_DFU
    if (strcmp(m, "dfu") == 0) {
        if (setup_flash(s) < 0)
            return -1;
        st_dfu_model_config c = {.serial = s->o.serial, .on_leave = dfu_left, .on_leave_ctx = s};
        s->dfu = st_dfu_model_new(s->flash, &c);
        if (!s->dfu) {
            fprintf(stderr, "station-sim: dfu model: bad --serial (12 upper-case hex digits)\n");
            return -1;
        }
        return port_attach(s, st_dfu_model_usb(s->dfu), NULL);
    }
#endif
#ifdef STATION_SIM_HAVE_VUNIT
    if (strcmp(m, "unit") == 0) {
        s->mcu = st_mcu_find(s->o.mcu);
        if (!s->mcu)
            return -1;
        if (s->o.flash_file && load_file(s->o.flash_file, &s->holds, &s->holds_len) < 0) {
            fprintf(stderr, "station-sim: --flash %s: %s\n", s->o.flash_file, strerror(errno));
            return -1;
        }
        st_vunit_config c = {.mcu = s->mcu, .timing = s->o.timing, .dfu_serial = s->o.serial,
                             .holds = s->holds, .holds_len = s->holds_len,
                             .holds_addr = s->o.has_flash_addr ? s->o.flash_addr
                                                               : s->mcu->flash_start,
                             .faults = s->o.faults, .n_faults = s->o.nfaults};
        st_vunit_usb_port port = {port_attach, port_detach, s};
        if (st_vunit_new(&c, &port, NULL, &s->unit, &e) < 0) {
            fprintf(stderr, "station-sim: unit: %s\n", e.msg);
            return -1;
        }
        if (s->o.gpio_dir && gpio_open(s) < 0)
            return -1;
        return 0;
    }
#endif
    die_usage("usbip: unknown or unavailable model '%s'", m);
}

/* ---- slcan ---------------------------------------------------------------------------- */

static void slcan_state(void *ctx, bool open, uint32_t bitrate)
{
    sim *s = ctx;
    ST_LOGI(&s->log, "sim", "%s %s at %u bit/s", st_slcan_server_ifname(s->slcan),
            open ? "opened" : "closed", bitrate);
    if (open && bitrate)
        s->iface->ops->set_bitrate(s->iface, bitrate, NULL);
}

/* Node swaps happen inside bus callbacks, where can_model.h allows attach/detach. */
static void bus_swap(sim *s, st_can_node *next)
{
    if (s->on_bus)
        st_vcan_detach(s->bus, s->on_bus);
    s->on_bus = next;
    if (next)
        st_vcan_attach(s->bus, next, NULL);
}

#if defined(STATION_SIM_HAVE_KATAPULT)
static st_stream_model *katapult_stream(sim *s, bool with_can,
                                        void (*on_reset)(void *, st_katapult_model *))
{
    st_katapult_model_cfg c = {.with_can = with_can, .on_reset = on_reset, .reset_ctx = s};
    memcpy(c.uuid, s->o.uuid, 6);
    s->katapult = st_katapult_model_new(s->flash, &c);
    return s->katapult ? st_katapult_model_stream(s->katapult) : NULL;
}
#endif

#if defined(STATION_SIM_HAVE_KATAPULT) && defined(STATION_SIM_HAVE_KLIPPER_NODE)
static void can_app_wants_bootloader(void *ctx)
{
    sim *s = ctx;
    ST_LOGI(&s->log, "sim", "klipper node: bootloader requested, rebooting into katapult");
    st_katapult_model_reboot(s->katapult);
    bus_swap(s, st_can_stream_node_base(s->katapult_node));
}

static void can_katapult_reset(void *ctx, st_katapult_model *m)
{
    sim *s = ctx;
    ST_LOGI(&s->log, "sim", "katapult: reset into the application");
    bus_swap(s, st_klipper_node_base(s->klipper_node));
}
#endif

static int setup_slcan(sim *s)
{
    st_err e = {0};
    s->bus = st_vcan_bus_new(1000000, s->o.timing);
    if (!s->bus || st_can_iface_mem_new(s->bus, "station-sim", &s->log, &s->iface, &e) < 0 ||
        s->iface->ops->open_link(s->iface, &s->link, &e) < 0) {
        fprintf(stderr, "station-sim: in-memory bus: %s\n", e.msg);
        return -1;
    }
    const char *m = s->o.model;
    if (strcmp(m, "echo") == 0) {
        st_toy_can_init(&s->toy_can);
        bus_swap(s, &s->toy_can.base);
    }
#if defined(STATION_SIM_HAVE_KATAPULT)
    else if (strcmp(m, "katapult") == 0 || strcmp(m, "klipper") == 0) {
        if (setup_flash(s) < 0)
            return -1;
        bool klipper = strcmp(m, "klipper") == 0;
#if defined(STATION_SIM_HAVE_KLIPPER_NODE)
        st_stream_model *k = katapult_stream(s, true, klipper ? can_katapult_reset : NULL);
#else
        if (klipper)
            die_usage("slcan: model klipper is not built in");
        st_stream_model *k = katapult_stream(s, true, NULL);
#endif
        st_can_stream_node_cfg nc = {.app = 0x11};
        memcpy(nc.uuid, s->o.uuid, 6);
        s->katapult_node = k ? st_can_stream_node_new(k, &nc) : NULL;
        if (!s->katapult_node)
            return -1;
#if defined(STATION_SIM_HAVE_KLIPPER_NODE)
        if (klipper) {
            st_klipper_node_cfg kc = {.on_bootloader_request = can_app_wants_bootloader,
                                      .ctx = s};
            memcpy(kc.uuid.b, s->o.uuid, 6);
            s->klipper_node = st_klipper_node_new(&kc);
            if (!s->klipper_node)
                return -1;
            bus_swap(s, st_klipper_node_base(s->klipper_node));
        } else
#endif
        {
            bus_swap(s, st_can_stream_node_base(s->katapult_node));
        }
    }
#endif
    else {
        die_usage("slcan: unknown or unavailable model '%s'", m);
    }
    st_slcan_opts so = {.ifname = s->o.ifname, .on_state = slcan_state, .ctx = s};
    if (st_slcan_server_new(s->link, &so, &s->log, &s->slcan, &e) < 0) {
        fprintf(stderr, "station-sim: %s\n", e.msg);
        return -1;
    }
    ready(s, "ifname", st_slcan_server_ifname(s->slcan), "can");
    return 0;
}

/* ---- pty ------------------------------------------------------------------------------ */

#if defined(STATION_SIM_HAVE_KATAPULT) && defined(STATION_SIM_HAVE_VUNIT)
static void pty_app_wants_bootloader(void *ctx)
{
    sim *s = ctx;
    ST_LOGI(&s->log, "sim", "klipper app: bootloader requested, rebooting into katapult");
    st_katapult_model_reboot(s->katapult);
    st_pty_server_set_model(s->pty, st_katapult_model_stream(s->katapult));
}

static void pty_katapult_reset(void *ctx, st_katapult_model *m)
{
    sim *s = ctx;
    ST_LOGI(&s->log, "sim", "katapult: reset into the application");
    st_klipper_app_reset(s->app);
    st_pty_server_set_model(s->pty, st_klipper_app_stream(s->app));
}
#endif

static int setup_pty(sim *s)
{
    st_err e = {0};
    st_stream_model *model = NULL;
    const char *m = s->o.model;
    if (strcmp(m, "echo") == 0) {
        st_toy_stream_init(&s->toy_stream);
        model = &s->toy_stream.base;
    }
#if defined(STATION_SIM_HAVE_KATAPULT)
    else if (strcmp(m, "katapult") == 0) {
        if (setup_flash(s) < 0)
            return -1;
        model = katapult_stream(s, false, NULL);
    }
#endif
#if defined(STATION_SIM_HAVE_KATAPULT) && defined(STATION_SIM_HAVE_VUNIT)
    else if (strcmp(m, "klipper") == 0) {
        if (setup_flash(s) < 0)
            return -1;
        if (!katapult_stream(s, false, pty_katapult_reset))
            return -1;
        s->app = st_klipper_app_new(pty_app_wants_bootloader, s);
        model = s->app ? st_klipper_app_stream(s->app) : NULL;
    }
#endif
    else {
        die_usage("pty: unknown or unavailable model '%s'", m);
    }
    if (!model)
        return -1;
    if (st_pty_server_new(model, &s->log, &s->pty, &e) < 0 ||
        (s->o.link && st_pty_server_symlink(s->pty, s->o.link, &e) < 0)) {
        fprintf(stderr, "station-sim: %s\n", e.msg);
        return -1;
    }
    ready(s, "path", st_pty_server_path(s->pty), "tty");
    return 0;
}

/* ---- main loop ------------------------------------------------------------------------ */

static int min_timeout(int a, int b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

static int run(sim *s, int sfd)
{
    st_deadline end = st_deadline_in_ms((uint64_t)(s->o.duration_s * 1000.0));
    for (;;) {
        struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}};
        int t = -1;
        if (s->usbip) {
            if (usb_reconcile(s) < 0)
                return 1;
            st_usbip_server_pollfd(s->usbip, &p[1]);
            t = st_usbip_server_timeout_ms(s->usbip);
#ifdef STATION_SIM_HAVE_VUNIT
            if (s->unit && s->o.gpio_dir)
                t = min_timeout(t, GPIO_POLL_MS);
#endif
        } else if (s->slcan) {
            st_slcan_server_pollfd(s->slcan, &p[1]);
            t = st_slcan_server_timeout_ms(s->slcan);
        } else {
            st_pty_server_pollfd(s->pty, &p[1]);
            t = st_pty_server_timeout_ms(s->pty);
        }
        if (s->o.duration_s > 0) {
            int left = st_deadline_remaining_ms(end);
            if (left == 0)
                return 0;
            t = min_timeout(t, left);
        }
        if (poll(p, 2, t) < 0 && errno != EINTR) {
            perror("station-sim: poll");
            return 1;
        }
        if (p[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                ST_LOGI(&s->log, "sim", "signal %u: stopping", si.ssi_signo);
            return 0;
        }
        st_err e = {0};
        int rc;
        if (s->usbip) {
            rc = st_usbip_server_step(s->usbip, &e);
            if (rc == 1)
                ST_LOGI(&s->log, "sim", "usb device unplugged");
            if (rc < 0)
                fprintf(stderr, "station-sim: %s\n", e.msg); /* unplugged; a reboot replugs */
#ifdef STATION_SIM_HAVE_VUNIT
            if (s->unit && s->o.gpio_dir)
                gpio_poll(s);
#endif
            if (s->o.once && s->left)
                return 0;
        } else if (s->slcan) {
            if ((rc = st_slcan_server_step(s->slcan, &e)) < 0) {
                fprintf(stderr, "station-sim: %s\n", e.msg);
                return 1;
            }
        } else {
            if ((rc = st_pty_server_step(s->pty, &e)) < 0) {
                fprintf(stderr, "station-sim: %s\n", e.msg);
                return 1;
            }
        }
    }
}

static void teardown(sim *s)
{
    st_flash *f = s->flash;
#ifdef STATION_SIM_HAVE_VUNIT
    if (s->unit)
        f = st_vunit_flash(s->unit);
#endif
    dump_flash(s, f);
    st_usbip_server_free(s->usbip);
    st_slcan_server_free(s->slcan);
    st_pty_server_free(s->pty);
    if (s->link)
        st_can_link_close(s->link);
    if (s->bus && s->on_bus)
        st_vcan_detach(s->bus, s->on_bus);
    if (s->iface)
        s->iface->ops->free(s->iface);
#ifdef STATION_SIM_HAVE_KLIPPER_NODE
    st_klipper_node_free(s->klipper_node);
#endif
#ifdef STATION_SIM_HAVE_KATAPULT
    st_can_stream_node_free(s->katapult_node);
    st_katapult_model_free(s->katapult);
#endif
#ifdef STATION_SIM_HAVE_VUNIT
    st_klipper_app_free(s->app);
    st_vunit_free(s->unit);
    for (int i = 0; i < 2; i++)
        if (s->gpio_fd[i] > 0)
            close(s->gpio_fd[i]);
#endif
#ifdef STATION_SIM_HAVE_DFU
    st_dfu_model_free(s->dfu);
#endif
    st_vcan_bus_free(s->bus);
    st_toy_usb_free(s->toy_usb);
    if (s->flash)
        st_flash_free(s->flash);
    free(s->holds);
}

int main(int argc, char **argv)
{
    sim s;
    memset(&s, 0, sizeof(s));
    parse_args(argc, argv, &s.o);
    s.log = (st_logger){log_write, NULL, s.o.verbose >= 1 ? ST_LOG_DEBUG : ST_LOG_INFO};
    /* Signals arrive as poll events: no handler, no global flag. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0) {
        perror("station-sim: signalfd");
        return 1;
    }
    int rc;
    if (strcmp(s.o.endpoint, "usbip") == 0)
        rc = setup_usbip(&s);
    else if (strcmp(s.o.endpoint, "slcan") == 0)
        rc = setup_slcan(&s);
    else
        rc = setup_pty(&s);
    int status = rc < 0 ? 1 : run(&s, sfd);
    teardown(&s);
    close(sfd);
    return status;
}
