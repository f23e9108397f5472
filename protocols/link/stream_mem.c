/* In-memory byte stream to a device model (st_stream_mem_open, stream.h): host writes go
 * straight to the model; reads return what the model has ready, waiting for the model's
 * next event within the read timeout, so a `datasheet` model's delays are real time (or
 * virtual time, on a stream given a virtual clock: st_stream_set_clock). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/link/stream.h"
#include "station/core/clock.h"
#include "station/core/text.h"

typedef struct mem_stream {
    st_stream base; /* first */
    st_stream_model *m;
    st_stream_line line;
    bool have_line;
    int dtr, rts;
} mem_stream;

static mem_stream *ms(st_stream *s)
{
    return (mem_stream *)s;
}

static int mem_write(st_stream *s, const uint8_t *buf, size_t n, unsigned timeout_ms, st_err *err)
{
    mem_stream *m = ms(s);
    if (n)
        m->m->ops->rx(m->m, buf, n, st_clock_now_us(s->clock));
    return (int)n;
}

static int mem_read(st_stream *s, uint8_t *buf, size_t cap, unsigned timeout_ms, st_err *err)
{
    mem_stream *m = ms(s);
    st_deadline d = st_clock_deadline_in_ms(s->clock, timeout_ms);
    if (cap > (size_t)INT32_MAX)
        cap = INT32_MAX;
    for (;;) {
        uint64_t now = st_clock_now_us(s->clock);
        size_t n = m->m->ops->tx(m->m, buf, cap, now);
        if (n)
            return (int)n;
        if (now >= d.at_us)
            return 0;
        /* Nothing yet: sleep until the model's next event or the deadline, whichever is
         * first (the model cannot produce anything in between without input). */
        uint64_t ev = m->m->ops->next_event_us ? m->m->ops->next_event_us(m->m) : UINT64_MAX;
        st_deadline until = {ev < d.at_us ? ev : d.at_us};
        if (until.at_us <= now)
            until.at_us = now + 50; /* event due now but nothing came out: yield briefly */
        st_clock_sleep_until_us(s->clock, until.at_us);
    }
}

static void notify(mem_stream *m)
{
    if (m->m->ops->line)
        m->m->ops->line(m->m, m->have_line ? &m->line : NULL, m->dtr, m->rts);
}

static int mem_set_line(st_stream *s, const st_stream_line *line, st_err *err)
{
    mem_stream *m = ms(s);
    if (!line)
        return st_err_set(err, ST_ERR_INVAL, "%s: no line settings", s->name);
    m->line = *line;
    m->have_line = true;
    notify(m);
    return 0;
}

static int mem_set_modem(st_stream *s, int dtr, int rts, st_err *err)
{
    mem_stream *m = ms(s);
    if (dtr >= 0)
        m->dtr = dtr ? 1 : 0;
    if (rts >= 0)
        m->rts = rts ? 1 : 0;
    notify(m);
    return 0;
}

static int mem_flush_input(st_stream *s, st_err *err)
{
    mem_stream *m = ms(s);
    uint8_t junk[256];
    uint64_t now = st_clock_now_us(s->clock);
    while (m->m->ops->tx(m->m, junk, sizeof junk, now))
        ;
    return 0;
}

static int mem_send_break(st_stream *s, unsigned hold_ms, st_err *err)
{
    mem_stream *m = ms(s);
    (void)hold_ms;
    (void)err;
    if (m->m->ops->brk)
        m->m->ops->brk(m->m, st_now_us());
    return 0;
}

static void mem_close(st_stream *s)
{
    free(s);
}

static const st_stream_ops mem_ops = {
    .write = mem_write,
    .read = mem_read,
    .set_line = mem_set_line,
    .set_modem = mem_set_modem,
    .flush_input = mem_flush_input,
    .close = mem_close,
    .send_break = mem_send_break,
};

int st_stream_mem_open(st_stream_model *model, const char *name, st_stream **out, st_err *err)
{
    if (!model || !model->ops || !model->ops->rx || !model->ops->tx || !out)
        return st_err_set(err, ST_ERR_INVAL, "mem stream: no device model");
    mem_stream *m = calloc(1, sizeof *m);
    if (!m)
        return st_err_set(err, ST_ERR_NOMEM, "mem stream: out of memory");
    m->base.ops = &mem_ops;
    st_strlcpy(m->base.name, name ? name : "mem", sizeof m->base.name);
    m->m = model;
    m->dtr = m->rts = -1; /* unknown until the host sets them */
    *out = &m->base;
    return 0;
}
