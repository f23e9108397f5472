/* Benchmark of the Klipper host engine over CAN at 1 Mbit/s with the `datasheet` timing
 * profile: identify (the whole data dictionary in 40-byte chunks) and a 500-sample sensor
 * run from a Klipper MCU model serving the Cartographer V4 CAN dictionary, as wall time
 * versus the bus time the frames really took (the wire floor of this conversation: every
 * request, reply and ack is a frame on the one wire), plus the host's CPU time. Not a
 * ctest test; `--check` runs one identify and checks its result (not its timing) so a
 * broken benchmark is noticed (ctest label bench-smoke). Method: design.md §6. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <zlib.h>

#include "protocols/canadmin/canadmin.h"
#include "protocols/klipper/klipper.h"
#include "protocols/klipper/klipper_model.h"
#include "protocols/link/can_model.h"
#include "station/core/clock.h"

#define FW STATION_SHARED_DIR \
    "/firmware/cartographer-v4/6.0.0/CartographerV4_6.0.0_CAN_1M_full_8kib_offset.bin"
#define SUBSET STATION_SOURCE_DIR "/protocols/klipper/testdata/cartographer-usb-subset.json"
#define REPS 5u

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = n > 0 ? malloc((size_t)n) : NULL;
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static uint64_t cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static int nodeid_of(void *ctx)
{
    return st_can_stream_node_nodeid(*(st_can_stream_node **)ctx);
}

typedef struct result {
    uint64_t wall_us, bus_us, cpu_us, frames;
    unsigned requests;
} result;

/* One identify (and, unless check, a sample run) on a fresh unit and bus. */
static int run_once(const uint8_t *z, size_t zl, bool check, result *id, result *sm)
{
    st_vcan_bus *bus = st_vcan_bus_new(1000000, ST_TIMING_DATASHEET);
    st_can_stream_node *node = NULL;
    st_klp_model_cfg c = { .dict_z = z, .dict_z_len = zl, .sample_hz = 1000,
                           .can_uuid = { 0x11, 0xaa, 0x22, 0xbb, 0x33, 0xc1 },
                           .nodeid = nodeid_of, .nodeid_ctx = &node };
    st_klp_model *m = NULL;
    st_err e;
    if (!bus || st_klp_model_new(&c, &m, &e)) {
        fprintf(stderr, "bench: model: %s\n", e.msg);
        return 1;
    }
    st_can_stream_node_cfg nc = { .app = ST_CANADMIN_APP_KLIPPER };
    memcpy(nc.uuid, c.can_uuid, 6);
    node = st_can_stream_node_new(st_klp_model_stream(m), &nc);
    st_can_iface *ifc = NULL;
    st_can_link *adm = NULL, *data = NULL;
    st_stream *s = NULL;
    st_klp_host *h = NULL;
    st_can_uuid u;
    memcpy(u.b, c.can_uuid, 6);
    int rc = st_vcan_attach(bus, st_can_stream_node_base(node), &e);
    if (!rc)
        rc = st_can_iface_mem_new(bus, "vcan-bench", NULL, &ifc, &e);
    if (!rc)
        rc = ifc->ops->open_link(ifc, &adm, &e);
    if (!rc)
        rc = ifc->ops->open_link(ifc, &data, &e);
    if (!rc)
        rc = st_canadmin_set_nodeid(adm, ST_CANADMIN_SET_KLIPPER_NODEID, &u, 4, &e);
    if (!rc)
        rc = st_can_stream_open(data, st_canadmin_nodeid_tx_id(4), st_canadmin_nodeid_rx_id(4),
                                &s, &e);
    if (!rc)
        rc = st_klp_host_open(s, NULL, &h, &e);
    st_vcan_stats b0, b1;
    st_vcan_get_stats(bus, &b0);
    uint64_t t0 = st_now_us(), c0 = cpu_us();
    if (!rc)
        rc = st_klp_host_identify(h, ST_KLP_IDENTIFY_MS * 4, &e);
    uint64_t t1 = st_now_us(), c1 = cpu_us();
    st_vcan_get_stats(bus, &b1);
    st_klp_model_stats ms;
    st_klp_model_get_stats(m, &ms);
    *id = (result){ t1 - t0, b1.busy_us - b0.busy_us, c1 - c0, b1.frames - b0.frames,
                    ms.identify_requests };
    if (!rc && !check) {
        st_klp_stats st;
        st_vcan_get_stats(bus, &b0);
        t0 = st_now_us(), c0 = cpu_us();
        rc = st_klp_host_sample(h, "cartographer_stream en=1", "cartographer_stream en=0",
                                "cartographer_data", "data", 500, 10000, &st, &e);
        t1 = st_now_us(), c1 = cpu_us();
        st_vcan_get_stats(bus, &b1);
        *sm = (result){ t1 - t0, b1.busy_us - b0.busy_us, c1 - c0, b1.frames - b0.frames,
                        st.n };
    }
    if (rc)
        fprintf(stderr, "bench: %s\n", e.msg);
    else if (check && strncmp(st_klp_dict_version(st_klp_host_dict(h)), "CARTOGRAPHER", 12) &&
             strcmp(st_klp_dict_version(st_klp_host_dict(h)), "TEST USB 1.0") != 0)
        rc = 1;
    st_klp_host_close(h);
    st_stream_close(s);
    if (data)
        st_can_link_close(data);
    if (adm)
        st_can_link_close(adm);
    if (ifc)
        ifc->ops->free(ifc);
    st_vcan_detach(bus, st_can_stream_node_base(node));
    st_can_stream_node_free(node);
    st_klp_model_free(m);
    st_vcan_bus_free(bus);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    bool check = argc > 1 && strcmp(argv[1], "--check") == 0;
    size_t n = 0, zl = 0;
    uint8_t *img = read_file(FW, &n);
    uint8_t *z = NULL;
    const char *what = "the Cartographer V4 6.0.0 CAN dictionary (2904 bytes)";
    if (img && n > 0x5A18 + 2904) {
        z = malloc(2904);
        memcpy(z, img + 0x5A18, 2904);
        zl = 2904;
    } else {
        /* Without ../shared: the test subset dictionary, compressed as a build does. */
        size_t jn;
        uint8_t *j = read_file(SUBSET, &jn);
        if (!j)
            return 77;
        uLongf cap = compressBound(jn);
        z = malloc(cap);
        if (compress2(z, &cap, j, jn, 9) != Z_OK)
            return 1;
        zl = cap;
        free(j);
        what = "the test subset dictionary (../shared/firmware absent)";
    }
    free(img);
    printf("bench_klipper_can: %s, 1 Mbit/s, datasheet profile\n", what);
    result id, sm;
    if (check) {
        int rc = run_once(z, zl, true, &id, &sm);
        printf("check: identify %s, %u requests, %llu frames\n", rc ? "FAILED" : "ok",
               id.requests, (unsigned long long)id.frames);
        free(z);
        return rc || id.requests < zl / 40 + 1 || id.frames == 0;
    }
    printf("%-10s %10s %10s %7s %9s %8s %9s\n", "phase", "wall ms", "floor ms", "ratio",
           "cpu ms", "frames", "requests");
    for (unsigned r = 0; r < REPS; r++) {
        if (run_once(z, zl, false, &id, &sm)) {
            free(z);
            return 1;
        }
        printf("%-10s %10.1f %10.1f %7.2f %9.1f %8llu %9u\n", "identify", id.wall_us / 1e3,
               id.bus_us / 1e3, id.bus_us ? (double)id.wall_us / id.bus_us : 0, id.cpu_us / 1e3,
               (unsigned long long)id.frames, id.requests);
        /* The sensor's own rate (the model's 1000 samples/s) is this phase's floor. */
        uint64_t floor = sm.bus_us > 500000u ? sm.bus_us : 500000u;
        printf("%-10s %10.1f %10.1f %7.2f %9.1f %8llu %9u\n", "sample500", sm.wall_us / 1e3,
               floor / 1e3, (double)sm.wall_us / floor, sm.cpu_us / 1e3,
               (unsigned long long)sm.frames, sm.requests);
    }
    free(z);
    return 0;
}
