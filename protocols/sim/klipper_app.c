/* Klipper application byte-stream model: see klipper_app.h. */
#include "protocols/sim/klipper_app.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Klipper src/generic/serial_bootloader: the 32-byte block the app recognises. */
static const char request[] = " \x1c Request Serial Bootloader!! ~";

struct st_klipper_app {
    st_stream_model m;
    void (*hook)(void *ctx);
    void *ctx;
    bool fired;
    char window[sizeof request - 1];
    size_t have;
    st_stream_model *proto;
};

static void fire(st_klipper_app *a)
{
    if (!a->fired && a->hook) {
        a->fired = true;
        a->hook(a->ctx);
    }
}

static void app_rx(st_stream_model *m, const uint8_t *buf, size_t n, uint64_t now_us)
{
    st_klipper_app *a = (st_klipper_app *)m;
    const size_t len = sizeof request - 1;
    for (size_t i = 0; i < n; i++) {
        if (a->have == len) {
            memmove(a->window, a->window + 1, len - 1);
            a->have--;
        }
        a->window[a->have++] = (char)buf[i];
        if (a->have == len && memcmp(a->window, request, len) == 0)
            fire(a);
    }
    if (a->proto && !a->fired)
        a->proto->ops->rx(a->proto, buf, n, now_us);
}

static size_t app_tx(st_stream_model *m, uint8_t *buf, size_t cap, uint64_t now_us)
{
    st_klipper_app *a = (st_klipper_app *)m;
    return a->proto && !a->fired ? a->proto->ops->tx(a->proto, buf, cap, now_us) : 0;
}

static uint64_t app_next(st_stream_model *m)
{
    st_klipper_app *a = (st_klipper_app *)m;
    return a->proto && !a->fired ? a->proto->ops->next_event_us(a->proto) : UINT64_MAX;
}

static void app_line(st_stream_model *m, const st_stream_line *line, int dtr, int rts)
{
    if (line->baud == 1200 && dtr == 0)
        fire((st_klipper_app *)m);
}

static const st_stream_model_ops app_ops = {
    .rx = app_rx, .tx = app_tx, .next_event_us = app_next, .line = app_line,
};

st_klipper_app *st_klipper_app_new(void (*hook)(void *ctx), void *ctx)
{
    st_klipper_app *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->m.ops = &app_ops;
    a->hook = hook;
    a->ctx = ctx;
    return a;
}

void st_klipper_app_free(st_klipper_app *a)
{
    free(a);
}

st_stream_model *st_klipper_app_stream(st_klipper_app *a)
{
    return &a->m;
}

void st_klipper_app_set_protocol(st_klipper_app *a, st_stream_model *protocol)
{
    a->proto = protocol;
}

void st_klipper_app_reset(st_klipper_app *a)
{
    a->fired = false;
    a->have = 0;
}
