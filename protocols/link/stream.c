/* Byte-stream link dispatchers. */
#include "protocols/link/stream.h"

#include "station/core/clock.h"

int st_stream_write(st_stream *s, const uint8_t *buf, size_t n, unsigned timeout_ms, st_err *err)
{
    return s->ops->write(s, buf, n, timeout_ms, err);
}

void st_stream_set_clock(st_stream *s, const st_clock *clock)
{
    s->clock = clock;
}

int st_stream_read(st_stream *s, uint8_t *buf, size_t cap, unsigned timeout_ms, st_err *err)
{
    return s->ops->read(s, buf, cap, timeout_ms, err);
}

int st_stream_read_exact(st_stream *s, uint8_t *buf, size_t n, unsigned timeout_ms, st_err *err)
{
    st_deadline d = st_clock_deadline_in_ms(s->clock, timeout_ms);
    size_t got = 0;
    while (got < n) {
        int left = st_clock_deadline_remaining_ms(s->clock, d);
        if (left == 0)
            return st_err_set(err, ST_ERR_TIMEOUT, "%s: %zu of %zu bytes within %u ms", s->name,
                              got, n, timeout_ms);
        int rc = st_stream_read(s, buf + got, n - got, (unsigned)left, err);
        if (rc < 0)
            return rc;
        got += (size_t)rc;
    }
    return (int)n;
}

int st_stream_set_line(st_stream *s, const st_stream_line *line, st_err *err)
{
    return s->ops->set_line(s, line, err);
}

int st_stream_set_modem(st_stream *s, int dtr, int rts, st_err *err)
{
    return s->ops->set_modem(s, dtr, rts, err);
}

int st_stream_flush_input(st_stream *s, st_err *err)
{
    return s->ops->flush_input(s, err);
}

void st_stream_close(st_stream *s)
{
    if (s)
        s->ops->close(s);
}
