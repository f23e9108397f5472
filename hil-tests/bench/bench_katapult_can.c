/* Benchmark of Katapult over CAN at 1 Mbit/s with the `datasheet` timing profile: the
 * Katapult engine flashing and verifying the Cartographer V4 CAN application into N
 * simulated units on one in-memory bus (one thread, CAN link and filter per unit), as wall
 * time versus the model's bus + device limit, and N concurrent units versus N single runs.
 * Not a ctest test; `--check` runs one tiny iteration and checks the results (not the
 * timing) so a broken benchmark is noticed (ctest label bench-smoke). Method: design.md §6. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "protocols/canadmin/canadmin.h"
#include "protocols/katapult/katapult.h"
#include "protocols/katapult/katapult_model.h"
#include "protocols/link/can_model.h"
#include "protocols/sim/flash.h"
#include "protocols/sim/synth.h"
#include "station/core/clock.h"
#include "station/core/testutil.h"
#include "station/core/digest.h"

#define FW STATION_SHARED_DIR \
    "/firmware/cartographer-v4/6.0.0/CartographerV4_6.0.0_CAN_1M_full_8kib_offset.bin"
#define FW_SIZE 27236u     /* size of FW, for the generated stand-in */
#define CHECK_SIZE 4096u   /* --check: two pages, 64 blocks */
#define BITRATE 1000000u
#define MAX_UNITS 4u
#define ASSIGN_MS 2000u
#define MAX_REPS 9u

/* One simulated unit in Katapult and the host side that flashes it. */
typedef struct unit {
    st_flash *flash;
    st_katapult_model *model;
    st_can_stream_node *node;
    st_can_uuid uuid;
    uint8_t nodeid;
    st_can_link *link;
    st_stream *stream;
    st_katapult *kat;
    /* filled by the unit's thread */
    pthread_barrier_t *start;
    const st_image *img;
    uint64_t t0_us, t1_us;
    st_katapult_result flashed, verified;
    int rc;
    st_err err;
    pthread_t thread;
} unit;

/* What one run of n concurrent units measured. */
typedef struct run_result {
    unsigned n;
    uint64_t wall_us;     /* first start to last finish */
    uint64_t bus_us;      /* bus busy time of the flash + verify phase (all units) */
    uint64_t frames;
    uint64_t dev_us;      /* flash-model device time, summed over units */
    uint64_t dev_max_us;  /* the largest single unit's device time */
    uint64_t exchanges;   /* Katapult command/answer pairs (blocks sent + read + EOF) */
    uint64_t cpu_us;      /* process CPU (user + system) in the phase: engines and models */
} run_result;

static void *unit_thread(void *arg)
{
    unit *u = arg;
    pthread_barrier_wait(u->start);
    u->t0_us = st_now_us();
    u->rc = st_katapult_flash(u->kat, u->img, NULL, &u->flashed, &u->err);
    if (u->rc == 0)
        u->rc = st_katapult_verify(u->kat, u->img, &u->verified, &u->err);
    u->t1_us = st_now_us();
    return NULL;
}

/* The result is right, whatever the timing: every block acknowledged and read back, the
 * read-back digest is the padded image's, the unit's flash holds the image, and the bus
 * and flash model accounted for work. Returns the number of problems (printed). */
static int check_unit(const unit *u, unsigned idx)
{
    const st_image *img = u->img;
    uint32_t blocks = (uint32_t)((img->size + 63) / 64);
    size_t padded = (size_t)blocks * 64;
    uint8_t *buf = malloc(padded);
    int bad = 0;
    if (!buf)
        return 1;
    memset(buf, 0xff, padded);
    memcpy(buf, img->data, img->size);
    uint8_t sha1[ST_SHA1_LEN];
    char hex[2 * ST_SHA1_LEN + 1];
    st_sha1(buf, padded, sha1);
    st_hex(sha1, sizeof sha1, true, hex);
    const st_mcu *mcu = st_flash_mcu(u->flash);
    uint32_t pages = (uint32_t)((padded + mcu->page_size - 1) / mcu->page_size);
    if (u->flashed.blocks_sent != blocks || u->verified.blocks_verified != blocks) {
        fprintf(stderr, "unit %u: %u blocks sent, %u verified, want %u\n", idx,
                u->flashed.blocks_sent, u->verified.blocks_verified, blocks);
        bad++;
    }
    if (u->flashed.pages != pages) {
        fprintf(stderr, "unit %u: EOF reports %u pages, want %u\n", idx, u->flashed.pages, pages);
        bad++;
    }
    if (strcmp(u->verified.sha1_hex, hex) != 0 || strcmp(u->flashed.sha1_hex, hex) != 0) {
        fprintf(stderr, "unit %u: SHA-1 flash %s verify %s, want %s\n", idx, u->flashed.sha1_hex,
                u->verified.sha1_hex, hex);
        bad++;
    }
    if (st_flash_read(u->flash, img->load_addr, buf, img->size) != 0 ||
        memcmp(buf, img->data, img->size) != 0) {
        fprintf(stderr, "unit %u: flash contents differ from the image\n", idx);
        bad++;
    }
    free(buf);
    return bad;
}

/* Flash + verify img into n units at once on a fresh bus. Returns the number of failed or
 * wrong units (0 = all good), or -1 when the setup failed. */
static int run_units(const st_image *img, unsigned n, run_result *out)
{
    st_vcan_bus *bus = st_vcan_bus_new(BITRATE, ST_TIMING_DATASHEET);
    st_can_iface *ifc = NULL;
    st_can_link *admin = NULL;
    unit units[MAX_UNITS];
    pthread_barrier_t start;
    st_err err = { 0 };
    int bad = -1;
    unsigned made = 0, started = 0;
    memset(units, 0, sizeof units);
    memset(out, 0, sizeof *out);
    out->n = n;
    pthread_barrier_init(&start, NULL, n);
    if (!bus || st_can_iface_mem_new(bus, "can0", NULL, &ifc, &err) < 0 ||
        st_can_iface_prepare(ifc, BITRATE, &err) < 0 ||
        ifc->ops->open_link(ifc, &admin, &err) < 0)
        goto out;
    const st_mcu *mcu = st_mcu_find("stm32g431xx");
    for (; made < n; made++) {
        unit *u = &units[made];
        static const uint8_t base[6] = { 0x5e, 0x7a, 0x71, 0x00, 0xbe, 0x00 };
        memcpy(u->uuid.b, base, 6);
        u->uuid.b[5] = (uint8_t)(made + 1);
        u->nodeid = (uint8_t)(ST_CANADMIN_NODEID_KATAPULT + made);
        u->img = img;
        u->start = &start;
        u->flash = st_flash_new(mcu, ST_TIMING_DATASHEET);
        st_katapult_model_cfg kc = { .with_can = true };
        memcpy(kc.uuid, u->uuid.b, 6);
        u->model = u->flash ? st_katapult_model_new(u->flash, &kc) : NULL;
        st_can_stream_node_cfg nc = { .app = ST_CANADMIN_APP_KATAPULT };
        memcpy(nc.uuid, u->uuid.b, 6);
        u->node = u->model ? st_can_stream_node_new(st_katapult_model_stream(u->model), &nc) : NULL;
        if (!u->node || st_vcan_attach(bus, st_can_stream_node_base(u->node), &err) < 0) {
            made++; /* partly built: freed below */
            goto out;
        }
    }
    /* Entry and connect are outside the measured phase: it is flash + verify only. */
    /* The bus's bitrate, as the station's Katapult driver takes it from the interface. */
    uint32_t bitrate = 0;
    ifc->ops->get_bitrate(ifc, &bitrate, NULL);
    for (unsigned i = 0; i < n; i++) {
        unit *u = &units[i];
        if (st_canadmin_katapult_assign(admin, &u->uuid, 0, u->nodeid, ASSIGN_MS, &err) < 0 ||
            ifc->ops->open_link(ifc, &u->link, &err) < 0 ||
            st_can_stream_open(u->link, st_canadmin_nodeid_tx_id(u->nodeid),
                               st_canadmin_nodeid_rx_id(u->nodeid), &u->stream, &err) < 0 ||
            (st_can_stream_set_bitrate(u->stream, bitrate), false) ||
            st_katapult_open(u->stream, NULL, &u->kat, &err) < 0 ||
            st_katapult_connect(u->kat, NULL, &err) < 0)
            goto out;
        st_flash_reset_stats(u->flash);
    }
    st_vcan_stats before, after;
    st_vcan_get_stats(bus, &before);
    uint64_t cpu0 = st_test_cpu_us();
    for (; started < n; started++)
        if (pthread_create(&units[started].thread, NULL, unit_thread, &units[started]) != 0) {
            st_err_set(&err, ST_ERR_IO, "cannot start a unit thread");
            break;
        }
    if (started < n) {
        /* The barrier would never open: nothing else to do but report. */
        fprintf(stderr, "bench_katapult_can: %s\n", err.msg);
        exit(1);
    }
    for (unsigned i = 0; i < n; i++)
        pthread_join(units[i].thread, NULL);
    st_vcan_get_stats(bus, &after);
    out->cpu_us = st_test_cpu_us() - cpu0;
    out->bus_us = after.busy_us - before.busy_us;
    out->frames = after.frames - before.frames;
    uint64_t first = UINT64_MAX, last = 0;
    bad = 0;
    for (unsigned i = 0; i < n; i++) {
        unit *u = &units[i];
        if (u->rc < 0) {
            fprintf(stderr, "bench_katapult_can: unit %u: %s\n", i, u->err.msg);
            bad++;
            continue;
        }
        bad += check_unit(u, i) ? 1 : 0;
        out->exchanges += (uint64_t)u->flashed.blocks_sent + u->verified.blocks_verified + 1;
        st_flash_stats fs;
        st_flash_get_stats(u->flash, &fs);
        out->dev_us += fs.busy_us;
        if (fs.busy_us > out->dev_max_us)
            out->dev_max_us = fs.busy_us;
        if (u->t0_us < first)
            first = u->t0_us;
        if (u->t1_us > last)
            last = u->t1_us;
    }
    out->wall_us = last > first ? last - first : 0;
    if (out->bus_us == 0 || out->frames == 0 || out->dev_us == 0) {
        fprintf(stderr, "bench_katapult_can: no bus or device time accounted (%llu us, %llu "
                        "frames, %llu us device)\n", (unsigned long long)out->bus_us,
                (unsigned long long)out->frames, (unsigned long long)out->dev_us);
        bad++;
    }
out:
    if (bad < 0)
        fprintf(stderr, "bench_katapult_can: setup: %s\n", err.msg[0] ? err.msg : "out of memory");
    for (unsigned i = 0; i < made; i++) {
        unit *u = &units[i];
        st_katapult_close(u->kat);
        if (u->stream)
            st_stream_close(u->stream);
        if (u->link)
            st_can_link_close(u->link);
    }
    if (admin)
        st_can_link_close(admin);
    if (ifc)
        ifc->ops->free(ifc);
    for (unsigned i = 0; i < made; i++) {
        unit *u = &units[i];
        if (u->node) {
            st_vcan_detach(bus, st_can_stream_node_base(u->node));
            st_can_stream_node_free(u->node);
        }
        st_katapult_model_free(u->model);
        st_flash_free(u->flash);
    }
    st_vcan_bus_free(bus);
    pthread_barrier_destroy(&start);
    return bad;
}

/* The application image: the real CAN build, or a synthetic one of the same size (the
 * application part of a synthetic combined image) when ../shared is absent. */
static st_image *load_app(size_t size, bool real, st_err *err)
{
    const st_mcu *mcu = st_mcu_find("stm32g431xx");
    uint32_t app = mcu->flash_start + mcu->katapult_app_offset;
    st_image *img = NULL;
    if (real && access(FW, R_OK) == 0) {
        if (st_image_load(FW, app, &img, err) < 0)
            return NULL;
        printf("image: %s (%zu bytes)\n", FW, img->size);
        return img;
    }
    uint8_t *data = NULL;
    if (st_synth_combined(mcu, mcu->katapult_app_offset + size, &data, err) < 0)
        return NULL;
    int rc = st_image_from_memory("generated", data + mcu->katapult_app_offset, size, app, &img,
                                  err);
    free(data);
    if (rc < 0)
        return NULL;
    printf("image: generated application, %zu bytes%s\n", size,
           real ? " (" FW " absent)" : "");
    return img;
}

/* Run n units `reps` times and keep the run with the median wall time (runs differ by
 * host scheduling; the modelled bus and device times do not). Returns run_units' count of
 * bad units summed over runs, or -1. */
static int run_median(const st_image *img, unsigned n, unsigned reps, run_result *out)
{
    run_result runs[MAX_REPS];
    int bad = 0;
    for (unsigned i = 0; i < reps; i++) {
        int rc = run_units(img, n, &runs[i]);
        if (rc < 0)
            return -1;
        bad += rc;
        /* insertion by wall time */
        for (unsigned j = i; j > 0 && runs[j - 1].wall_us > runs[j].wall_us; j--) {
            run_result t = runs[j];
            runs[j] = runs[j - 1];
            runs[j - 1] = t;
        }
    }
    *out = runs[reps / 2];
    return bad;
}

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static void usage(FILE *f)
{
    fputs("Usage: bench_katapult_can [--check] [--units N] [--reps R]\n"
          "  Katapult flash + verify over an in-memory CAN bus at 1 Mbit/s (datasheet timing):\n"
          "  one unit vs the bus + device limit, then 2..N units at once on the same bus.\n"
          "  --check    one tiny run of 2 units; checks the results, not the timing\n"
          "  --units N  most units at once (1..4, default 4)\n"
          "  --reps R   runs per configuration, the median is shown (1..9, default 1)\n",
          f);
}

int main(int argc, char **argv)
{
    bool check = false;
    unsigned max_units = MAX_UNITS, reps = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--check") == 0) {
            check = true;
        } else if (strcmp(argv[i], "--units") == 0 && i + 1 < argc) {
            max_units = (unsigned)strtoul(argv[++i], NULL, 10);
            if (max_units < 1 || max_units > MAX_UNITS) {
                usage(stderr);
                return 2;
            }
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = (unsigned)strtoul(argv[++i], NULL, 10);
            if (reps < 1 || reps > MAX_REPS) {
                usage(stderr);
                return 2;
            }
        } else {
            usage(strcmp(argv[i], "--help") == 0 ? stdout : stderr);
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    st_err err = { 0 };
    st_image *img = load_app(check ? CHECK_SIZE : FW_SIZE, !check, &err);
    if (!img) {
        fprintf(stderr, "bench_katapult_can: image: %s\n", err.msg);
        return 1;
    }
    int fails = 0;
    if (check) {
        run_result r;
        int bad = run_units(img, 2, &r);
        if (bad == 0)
            printf("check: 2 units, %zu bytes each: flashed and verified; bus %.1f ms over %llu "
                   "frames, device %.1f ms, wall %.1f ms\n", img->size, ms(r.bus_us),
                   (unsigned long long)r.frames, ms(r.dev_us), ms(r.wall_us));
        st_image_free(img);
        return bad == 0 ? 0 : 1;
    }

    /* (a) one unit: the limit is the bus time of the frames exchanged plus the flash time;
     * Katapult is stop-and-wait, so for one unit the two never overlap. */
    run_result one;
    if (run_median(img, 1, reps, &one) != 0) {
        st_image_free(img);
        return 1;
    }
    uint64_t lim1 = one.bus_us + one.dev_us;
    printf("\nKatapult over CAN, 1 Mbit/s, datasheet timing, flash + verify of %zu bytes"
           " (median of %u run%s)\n", img->size, reps, reps == 1 ? "" : "s");
    printf("one unit: wall %.1f ms; limit %.1f ms = bus %.1f ms (%llu frames) + device %.1f ms;"
           " ratio %.3f\n", ms(one.wall_us), ms(lim1), ms(one.bus_us),
           (unsigned long long)one.frames, ms(one.dev_us), (double)one.wall_us / (double)lim1);
    /* Stop-and-wait: whatever the host adds is paid once per command/answer pair. */
    if (one.exchanges && one.wall_us > lim1)
        printf("one unit: host time above the limit %.1f ms = %.0f us per command/answer pair"
               " (%llu pairs)\n", ms(one.wall_us - lim1),
               (double)(one.wall_us - lim1) / (double)one.exchanges,
               (unsigned long long)one.exchanges);

    /* (b) N units at once on the shared bus. Frames of different units interleave on the
     * one wire while each unit erases/programs, so the floor is the larger of the total bus
     * time and one unit's own bus + device time. */
    printf("\n%5s %10s %12s %9s %12s %9s %12s %9s %10s %12s\n", "units", "wall ms",
           "N x 1 unit", "ratio", "N x limit", "ratio", "shared floor", "ratio", "bus util",
           "CPU ms/unit");
    printf("%5u %10.1f %12.1f %9.3f %12.1f %9.3f %12.1f %9.3f %9.1f%% %12.1f\n", 1u,
           ms(one.wall_us), ms(one.wall_us), 1.0, ms(lim1), (double)one.wall_us / (double)lim1,
           ms(lim1), (double)one.wall_us / (double)lim1,
           100.0 * (double)one.bus_us / (double)one.wall_us, ms(one.cpu_us));
    for (unsigned n = 2; n <= max_units; n++) {
        run_result r;
        if (run_median(img, n, reps, &r) != 0) {
            fails++;
            continue;
        }
        uint64_t serial = n * one.wall_us, nlim = n * lim1;
        uint64_t own = r.bus_us / n + r.dev_max_us;
        uint64_t floor_us = r.bus_us > own ? r.bus_us : own;
        printf("%5u %10.1f %12.1f %9.3f %12.1f %9.3f %12.1f %9.3f %9.1f%% %12.1f\n", n,
               ms(r.wall_us), ms(serial), (double)r.wall_us / (double)serial, ms(nlim),
               (double)r.wall_us / (double)nlim, ms(floor_us),
               (double)r.wall_us / (double)floor_us,
               100.0 * (double)r.bus_us / (double)r.wall_us, ms(r.cpu_us) / n);
    }
    printf("\nratio vs N x 1 unit < 1: what concurrency on the shared bus buys; "
           "ratio vs the shared floor: how close the station gets to the wire.\n"
           "CPU is the whole process (engines and the simulated bus and units it drives).\n");
    st_image_free(img);
    return fails ? 1 : 0;
}
