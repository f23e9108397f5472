/* Benchmark: the BGAPI UART DFU engine against the module model with the `datasheet` timing
 * profile (115200 baud 8N1, EFR32 page erase and word program times). The model states the
 * device limit (wire + flash time of every answer); the figure is the engine's wall time as
 * a ratio to it, for the vendor host's 48-byte chunks and the station's 252, plus the CPU
 * time per image. `--check` runs one small update and checks its results, not its timing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "protocols/bgapi/bgapi.h"
#include "protocols/bgapi/bgapi_model.h"
#include "protocols/bgapi/gbl.h"
#include "station/core/clock.h"

static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 + ru.ru_stime.tv_sec * 1e3 +
           ru.ru_stime.tv_usec / 1e3;
}

/* One update of a GBL with app_size program bytes in chunks of chunk; 0 or -1. */
static int one(size_t app_size, unsigned chunk, bool check)
{
    st_flash *f = st_flash_new(st_mcu_find("efr32bg13p632f512"), ST_TIMING_DATASHEET);
    st_bgapi_model *m = f ? st_bgapi_model_new(f, NULL) : NULL;
    st_stream *s = NULL;
    st_bgapi *b = NULL;
    uint8_t *g = NULL;
    size_t n = 0;
    st_err e = {0};
    st_bgapi_opts o = {.chunk = chunk};
    int rc = !m ? -1 : st_stream_mem_open(st_bgapi_model_stream(m), "mem:bgm", &s, &e);
    if (!rc)
        rc = st_bgapi_open(s, &o, &b, &e);
    if (!rc)
        rc = st_gbl_synthetic(app_size, 3, st_gbl_stack_version(5, 0, 2, 1), &g, &n, &e);
    double c0 = cpu_ms();
    uint64_t t0 = st_now_us();
    if (!rc)
        rc = st_bgapi_enter_dfu(b, &e);
    uint64_t t1 = st_now_us();
    st_bgapi_model_stats before;
    if (m)
        st_bgapi_model_get_stats(m, &before);
    if (!rc)
        rc = st_bgapi_upload(b, g, n, &e);
    if (!rc)
        rc = st_bgapi_finish(b, &e);
    uint64_t t2 = st_now_us();
    if (!rc)
        rc = st_bgapi_boot(b, &e);
    double cpu = cpu_ms() - c0;
    if (rc) {
        fprintf(stderr, "bench_bgapi: %s\n", e.msg);
    } else {
        const st_bgapi_result *r = st_bgapi_get_result(b);
        st_bgapi_model_stats ms;
        st_bgapi_model_get_stats(m, &ms);
        uint64_t dev = ms.device_us - before.device_us; /* upload + finish answers */
        double wall = (double)(t2 - t1);
        if (check && (r->stack.patch != 2 || r->chunks != (n + chunk - 1) / chunk ||
                      ms.installs != 1 || !dev)) {
            fprintf(stderr, "bench_bgapi: wrong result (stack patch %u, %u chunks, %u installs)\n",
                    r->stack.patch, r->chunks, ms.installs);
            rc = -1;
        } else {
            printf("%7zu-byte GBL, %3u-byte chunks: %4u chunks, enter %.1f ms, upload+finish "
                   "%.1f ms, device limit %.1f ms, ratio %.3f, %.1f KiB/s, cpu %.1f ms\n",
                   n, chunk, r->chunks, (t1 - t0) / 1e3, wall / 1e3, dev / 1e3, wall / (double)dev,
                   n / 1024.0 / (wall / 1e6), cpu);
        }
    }
    free(g);
    st_bgapi_close(b);
    st_stream_close(s);
    st_bgapi_model_free(m);
    st_flash_free(f);
    return rc ? -1 : 0;
}

int main(int argc, char **argv)
{
    bool check = argc > 1 && strcmp(argv[1], "--check") == 0;
    if (argc > 1 && !check) {
        fprintf(stderr, "usage: bench_bgapi [--check]\n");
        return 2;
    }
    if (check)
        return one(4096, 252, true) ? 1 : 0;
    int rc = 0;
    const unsigned chunks[] = {48, 252};
    for (size_t i = 0; i < 2; i++)
        rc |= one(128 * 1024, chunks[i], false);
    return rc ? 1 : 0;
}
