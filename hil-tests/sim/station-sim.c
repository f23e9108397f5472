/* station-sim: runs one of our device models attached to a real endpoint, so real clients
 * (the station, dfu-util, lsusb, can-utils, flashtool.py, stm32flash) meet it through real
 * kernel drivers: a USB/IP device (vhci-hcd), an slcan CAN interface, or a pty. Used by the
 * kernel-driver rig and for dry runs of a job before hardware arrives. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
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
#include "station/core/digest.h"
#include "station/core/mcu.h"
#include "station/core/yamldoc.h"
#ifdef STATION_SIM_HAVE_DFU
#include "protocols/dfuse/dfu_model.h"
#endif
#ifdef STATION_SIM_HAVE_KATAPULT
#include "protocols/katapult/katapult_model.h"
#endif
#ifdef STATION_SIM_HAVE_KLIPPER_NODE
#include "protocols/canadmin/klipper_node.h"
#endif
#ifdef STATION_SIM_HAVE_AN3155
#include "protocols/an3155/an3155_model.h"
#endif
#ifdef STATION_SIM_HAVE_BGAPI
#include "protocols/bgapi/bgapi_model.h"
#endif
#ifdef STATION_SIM_HAVE_VUNIT
#include "protocols/sim/cdc_acm.h"
#include "protocols/sim/klipper_app.h"
#include "protocols/sim/synth.h"
#include "protocols/sim/vunit.h"
#endif

#define EXIT_USAGE 2
#define GPIO_POLL_MS 5
#define MAX_UNITS 8
#define PLUG_RETRY_MS 5000
#define MAX_FAULTS 16

static const char usage[] =
    "usage: station-sim ENDPOINT [options]\n"
    "Serve a device model on a real endpoint (root, in the rig VM or on a test host).\n"
    "\n"
    "Endpoints and models:\n"
    "  usbip   --model loopback|dfu|unit|bgm|an3155  a USB device through vhci-hcd\n"
    "          (modprobe vhci-hcd); bgm: the Bluetooth module behind a USB CDC-ACM\n"
    "          bridge (1209:0003); an3155: a USB CDC-ACM serial adapter (0483:5740)\n"
    "          wired to the ST USART ROM bootloader, which takes only 8E1\n"
    "  units   whole virtual units (same as usbip --model unit): each on its own vhci\n"
    "          port and gpio-sim lines; CAN units share one bus behind an slcan netdev\n"
    "  slcan   --model echo|katapult|klipper  a CAN bus behind a kernel slcan interface\n"
    "  pty     --model echo|katapult|klipper|bgm|an3155  a serial port (pseudo-terminal);\n"
    "          bgm is a Silicon Labs Bluetooth module (NCP) with the BGAPI UART DFU\n"
    "          bootloader; an3155: the ST USART ROM bootloader (8N1 accepted: a pty\n"
    "          drops parity), e.g. stm32flash -m 8n1 PATH; --fault takes its faults\n"
    "          katapult and klipper (pty, slcan) are one unit started in Katapult or in its\n"
    "          Klipper application: after COMPLETE a valid application boots and answers\n"
    "          the bootloader request (a second flash works); a CAN node id is lost on reset\n"
    "\n"
    "Options:\n"
    "  --model NAME         the device model (default: loopback / echo)\n"
    "  --mcu NAME           MCU of the unit's flash (default stm32g431xx)\n"
    "  --timing none|datasheet  model timing profile (default none)\n"
    "  --flash FILE[@ADDR]  preload the unit's flash (ADDR hex, default flash start);\n"
    "                       synthetic:N = the station's synthetic combined image, seed N\n"
    "  --dump FILE          write the unit's main flash to FILE at exit\n"
    "  --serial STR         USB serial number (loopback, dfu)\n"
    "  --uuid HEX12         CAN UUID of the node (default 0a0b0c0d0e0f)\n"
    "  --port N             vhci port (default: first free)\n"
    "  --ifname NAME        name for the slcan interface (default can0)\n"
    "  --socketcan          units: put the CAN units on the existing SocketCAN interface\n"
    "                       --ifname (e.g. a vcan made with ip link) instead of an slcan one\n"
    "  --link PATH          symlink PATH to the pty\n"
    "  --gpio-sim DIR       unit model: read BOOT0/NRST from gpio-sim sim_gpioN/value in DIR\n"
    "  --boot0-line N, --nrst-line N   line offsets in that chip (default 0 and 1)\n"
    "  --fault STR          unit model fault (vunit.h syntax), repeatable\n"
    "  --transport usb|can  unit model: its application and Katapult speak USB-CDC or CAN\n"
    "  --uart PATH          unit model: serve the unit's UART (its ROM's AN3155 bootloader,\n"
    "                       8N1 accepted: a pty drops parity) on a pty, symlinked at PATH\n"
    "  --boot-select low|high  unit model: the BOOT0 level that selects the ROM (default\n"
    "                       high; low = a board that inverts it, seed 002)\n"
    "  --bootloader gsdk3|gsdk4  bgm model: Gecko bootloader generation (up to GSDK 3.2:\n"
    "                       dfu_reset, bg_err codes; from GSDK 4.0: system_reset,\n"
    "                       sl_status codes; default gsdk4)\n"
    "  --baud N             bgm model: the module's UART rate (default 115200)\n"
    "  --empty              bgm model: no application, it comes up in DFU mode\n"
    "  --modem dtr=W,rts=W  an3155 model: the adapter drives a whole board (a virtual unit\n"
    "                       holding --flash) whose pins follow its DTR/RTS as the host sets\n"
    "                       them (SET_CONTROL_LINE_STATE); W: reset, -reset, boot0, -boot0,\n"
    "                       none (\"-\": inverted); without it the ROM runs on its own\n"
    "  --unit               start the next unit's options (port, gpio-sim, lines, flash,\n"
    "                       dump, serial, uuid, transport, fault, uart, boot-select apply\n"
    "                       to the current unit)\n"
    "  --ready-file PATH    write endpoint facts (port=, ifname=, path=) there when ready\n"
    "  --duration SEC       exit after SEC seconds (default: run until SIGTERM/SIGINT)\n"
    "  --once               dfu model: exit when the device leaves DFU\n"
    "  -v, --verbose        log every request (repeat for more)\n"
    "  -h, --help           this text      --version   the version\n"
    "\n"
    "Prints 'station-sim: ready: ...' on stdout once the endpoint exists.\n"
    "Example, three CAN units on can0 (one gpio-sim chip, lines 0-5):\n"
    "  station-sim units --ifname can0 \\\n"
    "    --unit --port 0 --gpio-sim D --boot0-line 0 --nrst-line 1 --transport can \\\n"
    "           --uuid 11aa22bb33c1 --flash synthetic:1 \\\n"
    "    --unit --port 1 --gpio-sim D --boot0-line 2 --nrst-line 3 --transport can ...\n"
    "Exit status: 0 done, 1 runtime error, 2 usage error.\n";

/* One virtual unit's options (per --unit). */
typedef struct unit_opts {
    const char *flash_file, *dump, *serial, *gpio_dir, *uart;
    bool boot_select_low;
    uint32_t flash_addr;
    bool has_flash_addr;
    uint8_t uuid[6];
    bool can;
    int port;
    int boot0_line, nrst_line;
    const char *faults[MAX_FAULTS];
    size_t nfaults;
} unit_opts;

typedef struct sim_opts {
    const char *endpoint, *model, *mcu, *flash_file, *dump, *serial, *ifname, *link;
    const char *gpio_dir, *ready_file;
    const char *modem; /* an3155 model: "dtr=W,rts=W", the adapter's lines wired to a board */
    uint32_t flash_addr;
    bool has_flash_addr;
    uint8_t uuid[6];
    st_timing_profile timing;
    int port;
    int boot0_line, nrst_line;
    const char *faults[MAX_FAULTS];
    size_t nfaults;
    unit_opts units[MAX_UNITS];
    size_t nunits;
    double duration_s;
    bool once;
    bool socketcan; /* units: CAN on the existing SocketCAN interface --ifname (a vcan) */
    bool bgm_sdk2, empty; /* bgm model */
    uint32_t baud;
    int verbose;
} sim_opts;

struct sim;

/* One virtual unit at run time: its own vhci port (a USB/IP server), its own gpio-sim
 * lines, its own flash; only the CAN bus is shared. The unit's clock thread may reboot it
 * (Katapult's delayed reset), so the USB wish is guarded by a mutex and the main loop
 * replugs. */
typedef struct unit_rt {
    struct sim *s;
    size_t idx;
    const unit_opts *o;
    uint8_t *holds;
    size_t holds_len;
    st_usbip_server *usbip;
    pthread_mutex_t lock;
    bool lock_init;
    st_usb_model *want_model;
    bool want_plugged;
    unsigned gen, plugged_gen;
    st_deadline plug_retry_end; /* replug refused (port still busy): retry until then */
    bool plug_retrying;
    int gpio_fd[2];
    int gpio_val[2];
    st_pty_server *uart; /* --uart: the unit's UART (its ROM's AN3155 bootloader) */
#ifdef STATION_SIM_HAVE_VUNIT
    st_vunit *unit;
#endif
} unit_rt;

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
    /* --socketcan: the bus bridged to an existing SocketCAN interface by two threads */
    st_can_iface *viface;
    st_can_link *vlink;
    pthread_t vcan_th[2];
    atomic_bool vcan_stop;
    bool vcan_running;
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
    st_klipper_app *app;
#endif
#ifdef STATION_SIM_HAVE_AN3155
    st_an_model *an3155;
#endif
#if defined(STATION_SIM_HAVE_AN3155) && defined(STATION_SIM_HAVE_VUNIT)
    st_cdc_acm *an3155_cdc;
    st_vunit *an3155_board;      /* --modem: the board behind the adapter */
#endif
#ifdef STATION_SIM_HAVE_BGAPI
    st_bgapi_model *bgm;
#ifdef STATION_SIM_HAVE_VUNIT
    st_cdc_acm *bgm_cdc;
#endif
#endif
    /* units (usbip --model unit, units) */
    unit_rt units[MAX_UNITS];
    size_t nunits;
} sim;

#if defined(STATION_SIM_HAVE_BGAPI)
static st_stream_model *bgm_stream(sim *s);
#endif

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

static bool parse_uuid(const char *s, uint8_t out[6])
{
    return st_unhex(s, out, 6);
}

/* long long: a 32-bit long (armhf) cannot hold a flash address such as 0x90000000. */
static long long parse_long(const char *opt, const char *s, long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || *end || end == s || v < lo || v > hi)
        die_usage("%s: '%s' is not a number in %lld..%lld", opt, s, lo, hi);
    return v;
}

static void parse_args(int argc, char **argv, sim_opts *o)
{
    enum { O_MODEL = 256, O_MCU, O_TIMING, O_FLASH, O_DUMP, O_SERIAL, O_UUID, O_PORT,
           O_IFNAME, O_LINK, O_GPIO, O_BOOT0, O_NRST, O_FAULT, O_READY, O_DURATION, O_ONCE,
           O_VERSION, O_TRANSPORT, O_UNIT, O_UART, O_BOOT_SELECT,
           O_BOOTLOADER, O_BAUD, O_EMPTY, O_MODEM, O_SOCKETCAN };
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
        {"socketcan", no_argument, NULL, O_SOCKETCAN},
        {"transport", required_argument, NULL, O_TRANSPORT},
        {"unit", no_argument, NULL, O_UNIT},
        {"uart", required_argument, NULL, O_UART},
        {"boot-select", required_argument, NULL, O_BOOT_SELECT},
        {"bootloader", required_argument, NULL, O_BOOTLOADER},
        {"baud", required_argument, NULL, O_BAUD},
        {"empty", no_argument, NULL, O_EMPTY},
        {"modem", required_argument, NULL, O_MODEM},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    *o = (sim_opts){.mcu = "stm32g431xx", .ifname = "can0", .port = -1, .boot0_line = 0,
                    .nrst_line = 1, .uuid = {0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f}};
    int c;
    while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        /* Per-unit options describe the current unit (the first one is implicit). */
        bool per_unit = c == O_FLASH || c == O_DUMP || c == O_SERIAL || c == O_UUID ||
                        c == O_PORT || c == O_GPIO || c == O_BOOT0 || c == O_NRST ||
                        c == O_FAULT || c == O_TRANSPORT || c == O_UART || c == O_BOOT_SELECT;
        if ((per_unit && o->nunits == 0) || c == O_UNIT) {
            if (o->nunits == MAX_UNITS)
                die_usage("at most %d units", MAX_UNITS);
            o->units[o->nunits++] = (unit_opts){.port = -1, .boot0_line = 0, .nrst_line = 1,
                                                .uuid = {0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f}};
        }
        unit_opts *u = o->nunits ? &o->units[o->nunits - 1] : NULL;
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
                if (!st_parse_u32(at + 1, &o->flash_addr))
                    die_usage("--flash: '%s' is not an address in 0..0xffffffff", at + 1);
                o->has_flash_addr = true;
            }
            u->flash_file = o->flash_file;
            u->flash_addr = o->flash_addr;
            u->has_flash_addr = at != NULL;
            break;
        }
        case O_DUMP: o->dump = u->dump = optarg; break;
        case O_SERIAL: o->serial = u->serial = optarg; break;
        case O_UUID:
            if (!parse_uuid(optarg, o->uuid))
                die_usage("--uuid: '%s' is not 12 hex digits", optarg);
            memcpy(u->uuid, o->uuid, 6);
            break;
        case O_PORT: o->port = u->port = (int)parse_long("--port", optarg, 0, 255); break;
        case O_IFNAME: o->ifname = optarg; break;
        case O_LINK: o->link = optarg; break;
        case O_GPIO: o->gpio_dir = u->gpio_dir = optarg; break;
        case O_BOOT0:
            o->boot0_line = u->boot0_line = (int)parse_long("--boot0-line", optarg, 0, 1023);
            break;
        case O_NRST:
            o->nrst_line = u->nrst_line = (int)parse_long("--nrst-line", optarg, 0, 1023);
            break;
        case O_FAULT:
            if (o->nfaults == MAX_FAULTS || u->nfaults == MAX_FAULTS)
                die_usage("too many --fault options");
            o->faults[o->nfaults++] = optarg;
            u->faults[u->nfaults++] = optarg;
            break;
        case O_TRANSPORT:
            if (strcmp(optarg, "usb") && strcmp(optarg, "can"))
                die_usage("--transport: '%s' is not usb or can", optarg);
            u->can = strcmp(optarg, "can") == 0;
            break;
        case O_UNIT: break;
        case O_UART: u->uart = optarg; break;
        case O_BOOT_SELECT:
            if (strcmp(optarg, "low") && strcmp(optarg, "high"))
                die_usage("--boot-select: '%s' is not low or high", optarg);
            u->boot_select_low = strcmp(optarg, "low") == 0;
            break;
        case O_BOOTLOADER:
            if (strcmp(optarg, "gsdk3") && strcmp(optarg, "gsdk4"))
                die_usage("--bootloader: '%s' is not gsdk3 or gsdk4", optarg);
            o->bgm_sdk2 = strcmp(optarg, "gsdk3") == 0;
            break;
        case O_BAUD: o->baud = (uint32_t)parse_long("--baud", optarg, 50, 4000000); break;
        case O_MODEM: o->modem = optarg; break;
        case O_EMPTY: o->empty = true; break;
        case O_READY: o->ready_file = optarg; break;
        case O_DURATION:
            o->duration_s = (double)parse_long("--duration", optarg, 0, 86400);
            break;
        case O_ONCE: o->once = true; break;
        case O_SOCKETCAN: o->socketcan = true; break;
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
    if (strcmp(o->endpoint, "usbip") && strcmp(o->endpoint, "slcan") &&
        strcmp(o->endpoint, "pty") && strcmp(o->endpoint, "units"))
        die_usage("unknown endpoint '%s'", o->endpoint);
    if (strcmp(o->endpoint, "units") == 0) {
        o->endpoint = "usbip";
        if (o->model && strcmp(o->model, "unit"))
            die_usage("units: --model is always unit");
        o->model = "unit";
    }
    if (o->nunits == 0)
        o->units[o->nunits++] = (unit_opts){.port = -1, .boot0_line = 0, .nrst_line = 1,
                                            .uuid = {0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f}};
    if (o->nunits > 1 && (!o->model || strcmp(o->model, "unit")))
        die_usage("--unit is for the unit model (units endpoint)");
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

static void dump_flash(sim *s, const char *path, st_flash *f)
{
    if (!path || !f)
        return;
    uint8_t *b = malloc(s->mcu->flash_size);
    FILE *out = b ? fopen(path, "wb") : NULL;
    if (b && out && st_flash_read(f, s->mcu->flash_start, b, s->mcu->flash_size) >= 0 &&
        fwrite(b, 1, s->mcu->flash_size, out) == s->mcu->flash_size) {
        ST_LOGI(&s->log, "sim", "flash written to %s", path);
    } else {
        fprintf(stderr, "station-sim: --dump %s: %s\n", path, strerror(errno));
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

/* ---- virtual units (usbip --model unit, units) ----------------------------------------- */

static int bus_open(sim *s);
static int slcan_open(sim *s);
static int vcan_open(sim *s);

#ifdef STATION_SIM_HAVE_VUNIT
/* A unit's USB attach point. Called from the main loop (a DFU leave, a pin change, a CAN
 * node's bootloader request) or from the unit's clock thread (Katapult's delayed reset):
 * only the wish is recorded; the main loop replugs between steps, never inside one. */
static int unit_port_attach(void *ctx, st_usb_model *m, st_err *err)
{
    (void)err;
    unit_rt *u = ctx;
    pthread_mutex_lock(&u->lock);
    u->want_model = m;
    u->want_plugged = true;
    u->gen++;
    pthread_mutex_unlock(&u->lock);
    return 0;
}

static void unit_port_detach(void *ctx)
{
    unit_rt *u = ctx;
    pthread_mutex_lock(&u->lock);
    u->want_plugged = false;
    u->gen++;
    pthread_mutex_unlock(&u->lock);
}

/* CAN faces go straight onto the shared bus (vunit.h allows it from bus callbacks). */
static int unit_can_attach(void *ctx, st_can_node *n, st_err *err)
{
    unit_rt *u = ctx;
    return st_vcan_attach(u->s->bus, n, err);
}

static void unit_can_detach(void *ctx, st_can_node *n)
{
    unit_rt *u = ctx;
    st_vcan_detach(u->s->bus, n);
}

static int unit_reconcile(unit_rt *u)
{
    pthread_mutex_lock(&u->lock);
    bool want = u->want_plugged;
    st_usb_model *m = u->want_model;
    unsigned gen = u->gen;
    pthread_mutex_unlock(&u->lock);
    bool plugged = st_usbip_server_plugged(u->usbip);
    if (!want) {
        if (plugged) {
            st_usbip_server_unplug(u->usbip);
            ST_LOGI(&u->s->log, "sim", "unit %zu: unplugged (%s)", u->idx + 1,
                    st_vunit_state(u->unit));
        }
        return 0;
    }
    if (gen == u->plugged_gen)
        return 0; /* unplugged by the model itself (it vanished): stays so until a reboot */
    if (plugged)
        st_usbip_server_unplug(u->usbip);
    st_usbip_opts uo = {.use_port = u->o->port >= 0, .port = u->o->port};
    st_err e = {0};
    if (st_usbip_server_plug(u->usbip, m, &uo, &e) < 0) {
        /* vhci-hcd frees a port asynchronously after a detach: a unit that comes straight
         * back (the 1200-baud touch, a DFU leave) can find it still busy under load (seen
         * in the rig: EBUSY from attach). Retry from the main loop for a while. */
        if (!u->plug_retrying) {
            u->plug_retrying = true;
            u->plug_retry_end = st_deadline_in_ms(PLUG_RETRY_MS);
            ST_LOGI(&u->s->log, "sim", "unit %zu: replug refused (%s), retrying", u->idx + 1,
                    e.msg);
        } else if (st_deadline_remaining_ms(u->plug_retry_end) == 0) {
            fprintf(stderr, "station-sim: unit %zu: %s\n", u->idx + 1, e.msg);
            return -1;
        }
        return 0;
    }
    u->plug_retrying = false;
    u->plugged_gen = gen;
    st_usb_dev_info info = {0};
    st_usb_model_describe(m, &info);
    printf("station-sim: ready: unit %zu usb %04x:%04x port=%d state=%s\n", u->idx + 1,
           info.vid, info.pid, st_usbip_server_port(u->usbip), st_vunit_state(u->unit));
    fflush(stdout);
    return 0;
}

/* The unit's own pull resistors: NRST pulled up, BOOT0 pulled down, so lines the station
 * has not requested read as a running unit. */
static int unit_gpio_open(unit_rt *u)
{
    int lines[2] = {u->o->boot0_line, u->o->nrst_line};
    const char *pulls[2] = {"pull-down", "pull-up"};
    for (int i = 0; i < 2; i++) {
        char p[4096];
        snprintf(p, sizeof(p), "%s/sim_gpio%d/pull", u->o->gpio_dir, lines[i]);
        FILE *f = fopen(p, "w");
        if (!f || fputs(pulls[i], f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "station-sim: %s: %s\n", p, strerror(errno));
            return -1;
        }
        snprintf(p, sizeof(p), "%s/sim_gpio%d/value", u->o->gpio_dir, lines[i]);
        u->gpio_fd[i] = open(p, O_RDONLY | O_CLOEXEC);
        if (u->gpio_fd[i] < 0) {
            fprintf(stderr, "station-sim: %s: %s\n", p, strerror(errno));
            return -1;
        }
        u->gpio_val[i] = -1;
    }
    return 0;
}

static void unit_gpio_poll(unit_rt *u)
{
    for (int i = 0; i < 2; i++) {
        char b[4] = {0};
        if (u->gpio_fd[i] < 0 || pread(u->gpio_fd[i], b, sizeof(b) - 1, 0) <= 0)
            continue;
        int v = b[0] == '1';
        if (v == u->gpio_val[i])
            continue;
        u->gpio_val[i] = v;
        ST_LOGI(&u->s->log, "sim", "unit %zu: pin %s -> %d", u->idx + 1,
                i == 0 ? "BOOT0" : "NRST", v);
        st_vunit_set_pin(u->unit, i == 0 ? ST_VUNIT_BOOT0 : ST_VUNIT_NRST, v);
    }
}

/* --flash FILE[@ADDR] or synthetic:N (the station's synthetic combined image, seed N,
 * as a fixture's unit.holds gives it). */
static int unit_holds(sim *s, unit_rt *u)
{
    const char *f = u->o->flash_file;
    if (!f)
        return 0;
    if (strncmp(f, "synthetic:", 10) == 0) {
        long seed = parse_long("--flash synthetic:", f + 10, 0, 0x7fffffffLL);
        st_err e = {0};
        if (st_synth_combined_seeded(s->mcu, ST_SYNTH_DEFAULT_SIZE, (uint32_t)seed, &u->holds,
                                     &e) < 0) {
            fprintf(stderr, "station-sim: --flash %s: %s\n", f, e.msg);
            return -1;
        }
        u->holds_len = ST_SYNTH_DEFAULT_SIZE;
        return 0;
    }
    if (load_file(f, &u->holds, &u->holds_len) < 0) {
        fprintf(stderr, "station-sim: --flash %s: %s\n", f, strerror(errno));
        return -1;
    }
    return 0;
}

static int setup_units(sim *s)
{
    st_err e = {0};
    s->mcu = st_mcu_find(s->o.mcu);
    if (!s->mcu) {
        fprintf(stderr, "station-sim: unknown MCU '%s'\n", s->o.mcu);
        return -1;
    }
    bool any_can = false;
    for (size_t i = 0; i < s->o.nunits; i++)
        any_can |= s->o.units[i].can;
    if (any_can && bus_open(s) < 0)
        return -1;
    for (size_t i = 0; i < s->o.nunits; i++) {
        unit_rt *u = &s->units[i];
        *u = (unit_rt){.s = s, .idx = i, .o = &s->o.units[i], .gpio_fd = {-1, -1}};
        s->nunits = i + 1;
        pthread_mutex_init(&u->lock, NULL);
        u->lock_init = true;
        if (st_usbip_server_new(NULL, &s->log, &u->usbip, &e) < 0 || unit_holds(s, u) < 0)
            return -1;
        st_vunit_config c = {.mcu = s->mcu, .timing = s->o.timing, .dfu_serial = u->o->serial,
                             .can_transport = u->o->can,
                             .holds = u->holds, .holds_len = u->holds_len,
                             .holds_addr = u->o->has_flash_addr ? u->o->flash_addr
                                                                : s->mcu->flash_start,
                             .faults = u->o->faults, .n_faults = u->o->nfaults,
                             .boot_select_low = u->o->boot_select_low,
                             .uart_on_pty = u->o->uart != NULL};
        memcpy(c.can_uuid, u->o->uuid, 6);
        st_vunit_usb_port port = {unit_port_attach, unit_port_detach, u};
        st_vunit_can_port can = {unit_can_attach, unit_can_detach, u};
        if (st_vunit_new(&c, &port, u->o->can ? &can : NULL, &u->unit, &e) < 0) {
            fprintf(stderr, "station-sim: unit %zu: %s\n", i + 1, e.msg);
            return -1;
        }
        if (u->o->gpio_dir && unit_gpio_open(u) < 0)
            return -1;
        if (u->o->uart) {
            st_stream_model *m = st_vunit_uart(u->unit);
            if (!m) {
                fprintf(stderr, "station-sim: unit %zu: --uart: MCU '%s' has no AN3155 model\n",
                        i + 1, s->o.mcu);
                return -1;
            }
            if (st_pty_server_new(m, &s->log, &u->uart, &e) < 0 ||
                st_pty_server_symlink(u->uart, u->o->uart, &e) < 0) {
                fprintf(stderr, "station-sim: unit %zu: --uart %s: %s\n", i + 1, u->o->uart,
                        e.msg);
                return -1;
            }
        }
        ST_LOGI(&s->log, "sim", "unit %zu: %s, %s, vhci port %d, state %s", i + 1,
                u->o->can ? "CAN" : "USB", u->o->flash_file ? u->o->flash_file : "erased",
                u->o->port, st_vunit_state(u->unit));
    }
    for (size_t i = 0; i < s->nunits; i++)
        if (unit_reconcile(&s->units[i]) < 0)
            return -1;
    if (any_can && (s->o.socketcan ? vcan_open(s) : slcan_open(s)) < 0)
        return -1;
    char n[24];
    snprintf(n, sizeof(n), "%zu", s->nunits);
    ready(s, "units", n,
          !any_can ? "usb" : s->o.socketcan ? s->o.ifname : st_slcan_server_ifname(s->slcan));
    return 0;
}

static void units_free(sim *s)
{
    for (size_t i = 0; i < s->nunits; i++) {
        unit_rt *u = &s->units[i];
        if (u->unit)
            dump_flash(s, u->o->dump, st_vunit_flash(u->unit));
        /* The vunit detaches its faces (CAN from the bus) while both still exist. */
        st_pty_server_free(u->uart);
        st_vunit_free(u->unit);
        st_usbip_server_free(u->usbip);
        for (int k = 0; k < 2; k++)
            if (u->gpio_fd[k] >= 0)
                close(u->gpio_fd[k]);
        free(u->holds);
        if (u->lock_init)
            pthread_mutex_destroy(&u->lock);
    }
    s->nunits = 0;
}
#endif

#if defined(STATION_SIM_HAVE_AN3155)
static void pty_an3155_exit(void *ctx, st_an_model *m, uint32_t addr, bool rom);
#endif

#if defined(STATION_SIM_HAVE_AN3155) && defined(STATION_SIM_HAVE_VUNIT)
static int parse_wire(const char *w, size_t n, st_vunit_wire *out)
{
    static const struct { const char *name; bool present; st_vunit_pin pin; bool inv; } t[] = {
        { "none", false, ST_VUNIT_NRST, false }, { "reset", true, ST_VUNIT_NRST, false },
        { "-reset", true, ST_VUNIT_NRST, true }, { "boot0", true, ST_VUNIT_BOOT0, false },
        { "-boot0", true, ST_VUNIT_BOOT0, true },
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        if (strlen(t[i].name) == n && strncmp(t[i].name, w, n) == 0) {
            *out = (st_vunit_wire){ t[i].present, t[i].pin, t[i].inv };
            return 0;
        }
    }
    return -1;
}

static int board_attach(void *ctx, st_usb_model *m, st_err *err)
{
    (void)ctx;
    (void)m;
    (void)err;
    return 0; /* the board's own USB (its ROM DFU) is not cabled: only the adapter is */
}

static void board_detach(void *ctx)
{
    (void)ctx;
}

/* --modem: the adapter's DTR/RTS drive a whole board's RESET/BOOT0, so an entry plan of
 * modem lines (stm32flash -i 'rts,-dtr,dtr') reaches the ROM through the kernel's cdc_acm
 * as real SET_CONTROL_LINE_STATE requests. */
static int an3155_board(sim *s)
{
    st_vunit_config c = {.mcu = s->mcu, .timing = s->o.timing, .holds = s->holds,
                         .holds_len = s->holds_len, .holds_addr = s->o.flash_addr,
                         .faults = s->o.faults, .n_faults = s->o.nfaults};
    const char *p = s->o.modem;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        st_vunit_wire *w = strncmp(p, "dtr=", 4) == 0 ? &c.dtr
                           : strncmp(p, "rts=", 4) == 0 ? &c.rts : NULL;
        if (!w || n < 4 || parse_wire(p + 4, n - 4, w) < 0)
            die_usage("--modem: '%s' is not dtr=W,rts=W (W: reset, -reset, boot0, -boot0, none)",
                      s->o.modem);
        p += n + (end ? 1 : 0);
    }
    st_vunit_usb_port none = {board_attach, board_detach, NULL};
    st_err e = {0};
    if (st_vunit_new(&c, &none, NULL, &s->an3155_board, &e) < 0) {
        fprintf(stderr, "station-sim: an3155 board: %s\n", e.msg);
        return -1;
    }
    st_stream_model *uart = st_vunit_uart(s->an3155_board);
    if (!uart) {
        fprintf(stderr, "station-sim: an3155: MCU '%s' has no AN3155 device-table row\n",
                s->o.mcu);
        return -1;
    }
    ST_LOGI(&s->log, "sim", "an3155 board (%s): %s", s->o.modem, st_vunit_state(s->an3155_board));
    st_cdc_identity id = {0x0483, 0x5740, 0x0200, "STMicroelectronics",
                          "USB-UART to a board (DTR/RTS wired)",
                          s->o.serial ? s->o.serial : "AN3155BOARD"};
    s->an3155_cdc = st_cdc_acm_new(&id, uart);
    return s->an3155_cdc ? port_attach(s, st_cdc_acm_usb(s->an3155_cdc), NULL) : -1;
}
#endif

static int setup_usbip(sim *s)
{
    st_err e = {0};
    const char *m = s->o.model;
#ifdef STATION_SIM_HAVE_VUNIT
    if (strcmp(m, "unit") == 0)
        return setup_units(s);
#endif
    if (st_usbip_server_new(NULL, &s->log, &s->usbip, &e) < 0)
        return -1;
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
#if defined(STATION_SIM_HAVE_AN3155) && defined(STATION_SIM_HAVE_VUNIT)
    if (strcmp(m, "an3155") == 0) {
        if (setup_flash(s) < 0)
            return -1;
        if (s->o.modem)
            return an3155_board(s);
        /* Behind a real adapter the ROM sees the framing the host set: strict 8E1. */
        st_an_model_cfg c = {.on_exit = pty_an3155_exit, .ctx = s};
        s->an3155 = st_an_model_new(s->flash, &c);
        if (!s->an3155) {
            fprintf(stderr, "station-sim: an3155: MCU '%s' has no AN3155 device-table row\n",
                    s->o.mcu);
            return -1;
        }
        for (size_t i = 0; i < s->o.nfaults; i++)
            if (!st_an_model_fault(s->an3155, s->o.faults[i]))
                die_usage("an3155: unknown fault '%s'", s->o.faults[i]);
        st_an_model_reset(s->an3155, true, st_now_us());
        st_cdc_identity id = {0x0483, 0x5740, 0x0200, "STMicroelectronics",
                              "USB-UART to the AN3155 ROM", s->o.serial ? s->o.serial : "AN3155RIG"};
        s->an3155_cdc = st_cdc_acm_new(&id, st_an_model_stream(s->an3155));
        return s->an3155_cdc ? port_attach(s, st_cdc_acm_usb(s->an3155_cdc), NULL) : -1;
    }
#endif
#if defined(STATION_SIM_HAVE_BGAPI) && defined(STATION_SIM_HAVE_VUNIT)
    if (strcmp(m, "bgm") == 0) {
        /* The module behind a USB CDC-ACM bridge (the kernel's cdc_acm makes it a
         * /dev/ttyACMn); 1209:0003 is a pid.codes test id, like the loopback's 1209:0001. */
        st_stream_model *inner = bgm_stream(s);
        st_cdc_identity id = {.vid = 0x1209, .pid = 0x0003, .bcd_device = 0x0100,
                              .manufacturer = "station-sim",
                              .product = "Bluetooth module (BGAPI UART DFU)",
                              .serial = s->o.serial ? s->o.serial : "BGM000000001"};
        s->bgm_cdc = inner ? st_cdc_acm_new(&id, inner) : NULL;
        return s->bgm_cdc ? port_attach(s, st_cdc_acm_usb(s->bgm_cdc), NULL) : -1;
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

/* Katapult's reset after COMPLETE: a real unit boots what its flash holds. A valid
 * application (Katapult's own test: first word neither 0 nor 0xFFFFFFFF) comes up as the
 * Klipper node, which answers the bootloader request, so a second flash works; without
 * one the unit stays in Katapult. Either way it rejoins the bus without a node id. */
static void can_katapult_reset(void *ctx, st_katapult_model *m)
{
    sim *s = ctx;
    if (!st_katapult_model_app_valid(m)) {
        ST_LOGI(&s->log, "sim", "katapult: reset, no valid application: back into katapult");
        st_katapult_model_reboot(m);
        bus_swap(s, st_can_stream_node_base(s->katapult_node));
        return;
    }
    ST_LOGI(&s->log, "sim", "katapult: reset into the application");
    bus_swap(s, st_klipper_node_base(s->klipper_node));
}
#endif

/* The in-memory bus where node models live, and the host link the slcan server bridges. */
static int bus_open(sim *s)
{
    st_err e = {0};
    s->bus = st_vcan_bus_new(1000000, s->o.timing);
    if (!s->bus || st_can_iface_mem_new(s->bus, "station-sim", &s->log, &s->iface, &e) < 0 ||
        s->iface->ops->open_link(s->iface, &s->link, &e) < 0) {
        fprintf(stderr, "station-sim: in-memory bus: %s\n", e.msg);
        return -1;
    }
    return 0;
}

static int slcan_open(sim *s)
{
    st_err e = {0};
    st_slcan_opts so = {.ifname = s->o.ifname, .on_state = slcan_state, .ctx = s};
    if (st_slcan_server_new(s->link, &so, &s->log, &s->slcan, &e) < 0) {
        fprintf(stderr, "station-sim: %s\n", e.msg);
        return -1;
    }
    return 0;
}

/* --socketcan: frames between the in-memory bus (where the units are) and an existing
 * SocketCAN interface (a vcan: no wire timing of its own, the bus's datasheet timing
 * applies), one thread each way. */
static void *vcan_down(void *arg)
{
    sim *s = arg;
    while (!atomic_load(&s->vcan_stop)) {
        st_can_frame f;
        int rc = st_can_recv(s->link, &f, 50, NULL);
        if (rc < 0)
            break;
        if (rc == 1)
            st_can_send(s->vlink, &f, 100, NULL);
    }
    return NULL;
}

static void *vcan_up(void *arg)
{
    sim *s = arg;
    while (!atomic_load(&s->vcan_stop)) {
        st_can_frame f;
        int rc = st_can_recv(s->vlink, &f, 50, NULL);
        if (rc < 0)
            break;
        if (rc == 1)
            st_can_send(s->link, &f, 1000, NULL);
    }
    return NULL;
}

static int vcan_open(sim *s)
{
    st_err e = {0};
    if (st_can_iface_socketcan_new(s->o.ifname, &s->log, &s->viface, &e) < 0 ||
        s->viface->ops->open_link(s->viface, &s->vlink, &e) < 0) {
        fprintf(stderr, "station-sim: --socketcan %s: %s\n", s->o.ifname, e.msg);
        return -1;
    }
    atomic_init(&s->vcan_stop, false);
    if (pthread_create(&s->vcan_th[0], NULL, vcan_down, s) != 0)
        return -1;
    if (pthread_create(&s->vcan_th[1], NULL, vcan_up, s) != 0) {
        atomic_store(&s->vcan_stop, true);
        pthread_join(s->vcan_th[0], NULL);
        return -1;
    }
    s->vcan_running = true;
    ST_LOGI(&s->log, "sim", "CAN units on %s (SocketCAN)", s->o.ifname);
    return 0;
}

static int setup_slcan(sim *s)
{
    if (bus_open(s) < 0)
        return -1;
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
        /* Both models are one unit: Katapult and the Klipper application it boots; the
         * model named is the one running at start. */
        st_stream_model *k = katapult_stream(s, true, can_katapult_reset);
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
        st_klipper_node_cfg kc = {.on_bootloader_request = can_app_wants_bootloader, .ctx = s};
        memcpy(kc.uuid.b, s->o.uuid, 6);
        s->klipper_node = st_klipper_node_new(&kc);
        if (!s->klipper_node)
            return -1;
        if (klipper)
            bus_swap(s, st_klipper_node_base(s->klipper_node));
        else
#endif
        {
            bus_swap(s, st_can_stream_node_base(s->katapult_node));
        }
    }
#endif
    else {
        die_usage("slcan: unknown or unavailable model '%s'", m);
    }
    if (slcan_open(s) < 0)
        return -1;
    ready(s, "ifname", st_slcan_server_ifname(s->slcan), "can");
    return 0;
}

/* ---- the Bluetooth module ------------------------------------------------------------- */

#if defined(STATION_SIM_HAVE_BGAPI)
/* The module model (its own EFR32 flash), for the pty or behind USB CDC-ACM. */
static st_stream_model *bgm_stream(sim *s)
{
    st_err e = {0};
    if (strcmp(s->o.mcu, "stm32g431xx") == 0)
        s->o.mcu = "efr32bg13p632f512"; /* the module's own chip, not the board's MCU */
    if (setup_flash(s) < 0)
        return NULL;
    st_bgapi_model_cfg c = {.gen = s->o.bgm_sdk2 ? ST_BGAPI_GEN_SDK2 : ST_BGAPI_GEN_GSDK4,
                            .baud = s->o.baud, .no_app = s->o.empty};
    s->bgm = st_bgapi_model_new(s->flash, &c);
    if (!s->bgm)
        return NULL;
    for (size_t i = 0; i < s->o.nfaults; i++)
        if (st_bgapi_model_apply_fault(s->bgm, s->o.faults[i], &e) < 0)
            die_usage("--fault: %s", e.msg);
    return st_bgapi_model_stream(s->bgm);
}
#endif

/* ---- pty ------------------------------------------------------------------------------ */

#if defined(STATION_SIM_HAVE_KATAPULT) && defined(STATION_SIM_HAVE_VUNIT)
static void pty_app_wants_bootloader(void *ctx)
{
    sim *s = ctx;
    ST_LOGI(&s->log, "sim", "klipper app: bootloader requested, rebooting into katapult");
    st_katapult_model_reboot(s->katapult);
    st_pty_server_set_model(s->pty, st_katapult_model_stream(s->katapult));
}

/* As can_katapult_reset: a valid application boots (and answers the bootloader request);
 * without one the unit comes straight back into Katapult. */
static void pty_katapult_reset(void *ctx, st_katapult_model *m)
{
    sim *s = ctx;
    if (!st_katapult_model_app_valid(m)) {
        ST_LOGI(&s->log, "sim", "katapult: reset, no valid application: back into katapult");
        st_katapult_model_reboot(m);
        return;
    }
    ST_LOGI(&s->log, "sim", "katapult: reset into the application");
    st_klipper_app_reset(s->app);
    st_pty_server_set_model(s->pty, st_klipper_app_stream(s->app));
}
#endif

#if defined(STATION_SIM_HAVE_AN3155)
static void pty_an3155_exit(void *ctx, st_an_model *m, uint32_t addr, bool rom)
{
    sim *s = ctx;
    (void)m;
    if (rom)
        ST_LOGI(&s->log, "sim", "an3155: the ROM resets (unprotect): sync again");
    else
        ST_LOGI(&s->log, "sim", "an3155: go 0x%08x: the application runs; the port stays "
                "silent until station-sim restarts", addr);
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
#if defined(STATION_SIM_HAVE_KATAPULT) && defined(STATION_SIM_HAVE_VUNIT)
    /* One unit, Katapult and the Klipper application it boots; the model named is the one
     * running at start. */
    else if (strcmp(m, "katapult") == 0 || strcmp(m, "klipper") == 0) {
        if (setup_flash(s) < 0)
            return -1;
        st_stream_model *k = katapult_stream(s, false, pty_katapult_reset);
        if (!k)
            return -1;
        s->app = st_klipper_app_new(pty_app_wants_bootloader, s);
        if (!s->app)
            return -1;
        model = strcmp(m, "katapult") == 0 ? k : st_klipper_app_stream(s->app);
    }
#elif defined(STATION_SIM_HAVE_KATAPULT)
    else if (strcmp(m, "katapult") == 0) {
        if (setup_flash(s) < 0)
            return -1;
        model = katapult_stream(s, false, NULL);
    }
#endif
#if defined(STATION_SIM_HAVE_AN3155)
    else if (strcmp(m, "an3155") == 0) {
        if (setup_flash(s) < 0)
            return -1;
        st_an_model_cfg c = {.accept_8n1 = true, .on_exit = pty_an3155_exit, .ctx = s};
        s->an3155 = st_an_model_new(s->flash, &c);
        if (!s->an3155) {
            fprintf(stderr, "station-sim: an3155: MCU '%s' has no AN3155 device-table row\n",
                    s->o.mcu);
            return -1;
        }
        for (size_t i = 0; i < s->o.nfaults; i++)
            if (!st_an_model_fault(s->an3155, s->o.faults[i]))
                die_usage("an3155: unknown fault '%s'", s->o.faults[i]);
        st_an_model_reset(s->an3155, true, st_now_us());
        model = st_an_model_stream(s->an3155);
    }
#endif
#if defined(STATION_SIM_HAVE_BGAPI)
    else if (strcmp(m, "bgm") == 0) {
        model = bgm_stream(s);
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
        /* fds: the signal fd, one per unit's USB/IP server (or the single usbip server),
         * the slcan server, the pty server. */
        struct pollfd p[2 * MAX_UNITS + 4];
        size_t np = 0;
        p[np++] = (struct pollfd){.fd = sfd, .events = POLLIN};
        int t = -1;
#ifdef STATION_SIM_HAVE_VUNIT
        for (size_t i = 0; i < s->nunits; i++) {
            unit_rt *u = &s->units[i];
            if (unit_reconcile(u) < 0)
                return 1;
            st_usbip_server_pollfd(u->usbip, &p[np++]);
            t = min_timeout(t, st_usbip_server_timeout_ms(u->usbip));
            if (u->uart) {
                st_pty_server_pollfd(u->uart, &p[np++]);
                t = min_timeout(t, st_pty_server_timeout_ms(u->uart));
            }
            /* gpio-sim values have no poll event; the clock thread may replug the unit. */
            t = min_timeout(t, GPIO_POLL_MS);
        }
#endif
        if (s->usbip) {
            if (usb_reconcile(s) < 0)
                return 1;
            st_usbip_server_pollfd(s->usbip, &p[np++]);
            t = min_timeout(t, st_usbip_server_timeout_ms(s->usbip));
        }
        if (s->slcan) {
            st_slcan_server_pollfd(s->slcan, &p[np++]);
            t = min_timeout(t, st_slcan_server_timeout_ms(s->slcan));
        }
        if (s->pty) {
            st_pty_server_pollfd(s->pty, &p[np++]);
            t = min_timeout(t, st_pty_server_timeout_ms(s->pty));
        }
        if (s->o.duration_s > 0) {
            int left = st_deadline_remaining_ms(end);
            if (left == 0)
                return 0;
            t = min_timeout(t, left);
        }
        if (poll(p, (nfds_t)np, t) < 0 && errno != EINTR) {
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
#ifdef STATION_SIM_HAVE_VUNIT
        for (size_t i = 0; i < s->nunits; i++) {
            unit_rt *u = &s->units[i];
            if (st_usbip_server_plugged(u->usbip)) { /* a CAN unit often has no USB face */
                e = (st_err){0};
                rc = st_usbip_server_step(u->usbip, &e);
                if (rc == 1)
                    ST_LOGI(&s->log, "sim", "unit %zu: usb device unplugged", i + 1);
                if (rc < 0) /* unplugged; a reboot replugs */
                    fprintf(stderr, "station-sim: unit %zu: %s\n", i + 1, e.msg);
            }
            unit_gpio_poll(u);
            if (u->uart) {
                e = (st_err){0};
                if (st_pty_server_step(u->uart, &e) < 0)
                    fprintf(stderr, "station-sim: unit %zu: uart: %s\n", i + 1, e.msg);
            }
        }
#endif
        if (s->usbip) {
            e = (st_err){0};
            rc = st_usbip_server_step(s->usbip, &e);
            if (rc == 1)
                ST_LOGI(&s->log, "sim", "usb device unplugged");
            if (rc < 0)
                fprintf(stderr, "station-sim: %s\n", e.msg); /* unplugged; a reboot replugs */
            if (s->o.once && s->left)
                return 0;
        }
        if (s->slcan) {
            e = (st_err){0};
            if ((rc = st_slcan_server_step(s->slcan, &e)) < 0) {
                fprintf(stderr, "station-sim: %s\n", e.msg);
                return 1;
            }
        }
        if (s->pty) {
            e = (st_err){0};
            if ((rc = st_pty_server_step(s->pty, &e)) < 0) {
                fprintf(stderr, "station-sim: %s\n", e.msg);
                return 1;
            }
        }
    }
}

static void teardown(sim *s)
{
#ifdef STATION_SIM_HAVE_VUNIT
    units_free(s); /* before the bus: units detach their CAN faces from it */
#endif
    dump_flash(s, s->o.dump, s->flash);
    st_usbip_server_free(s->usbip);
    st_slcan_server_free(s->slcan);
    if (s->vcan_running) {
        atomic_store(&s->vcan_stop, true);
        pthread_join(s->vcan_th[0], NULL);
        pthread_join(s->vcan_th[1], NULL);
    }
    if (s->vlink)
        st_can_link_close(s->vlink);
    if (s->viface)
        s->viface->ops->free(s->viface);
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
#endif
#ifdef STATION_SIM_HAVE_BGAPI
#ifdef STATION_SIM_HAVE_VUNIT
    st_cdc_acm_free(s->bgm_cdc);
#endif
    st_bgapi_model_free(s->bgm);
#endif
#ifdef STATION_SIM_HAVE_DFU
    st_dfu_model_free(s->dfu);
#endif
#if defined(STATION_SIM_HAVE_AN3155) && defined(STATION_SIM_HAVE_VUNIT)
    st_cdc_acm_free(s->an3155_cdc);
    st_vunit_free(s->an3155_board);
#endif
#ifdef STATION_SIM_HAVE_AN3155
    st_an_model_free(s->an3155);
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
