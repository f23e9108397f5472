/* Byte-stream link dispatchers. */
#include "protocols/link/stream.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

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

int st_stream_read_min(st_stream *s, uint8_t *buf, size_t cap, size_t min, unsigned timeout_ms,
                       st_err *err)
{
    if (s->ops->read_min && min > 1)
        return s->ops->read_min(s, buf, cap, min < cap ? min : cap, timeout_ms, err);
    return s->ops->read(s, buf, cap, timeout_ms, err);
}

void st_stream_expect_at(st_stream *s, uint64_t at_us)
{
    if (s->ops->expect_at)
        s->ops->expect_at(s, at_us);
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

int st_stream_send_break(st_stream *s, unsigned ms, st_err *err)
{
    if (!s->ops->send_break)
        return st_err_set(err, ST_ERR_UNSUPPORTED, "%s: this link cannot send a BREAK", s->name);
    return s->ops->send_break(s, ms, err);
}

int st_stream_parse_framing(const char *s, st_stream_line *line, st_err *err)
{
    if (!s || strlen(s) != 3)
        return st_err_set(err, ST_ERR_INVAL, "framing \"%s\": expected data bits, parity and "
                          "stop bits, e.g. 8e1", s ? s : "");
    if (s[0] < '5' || s[0] > '8')
        return st_err_set(err, ST_ERR_INVAL, "framing \"%s\": data bits '%c' (5..8)", s, s[0]);
    char p = (char)toupper((unsigned char)s[1]);
    if (p != 'N' && p != 'E' && p != 'O')
        return st_err_set(err, ST_ERR_INVAL, "framing \"%s\": parity '%c' (n, e or o)", s, s[1]);
    if (s[2] != '1' && s[2] != '2')
        return st_err_set(err, ST_ERR_INVAL, "framing \"%s\": stop bits '%c' (1 or 2)", s, s[2]);
    line->data_bits = (uint8_t)(s[0] - '0');
    line->parity = p;
    line->stop_bits = (uint8_t)(s[2] - '0');
    return 0;
}

const char *st_stream_line_str(const st_stream_line *line, char *buf, size_t cap)
{
    snprintf(buf, cap, "%u %u%c%u", line->baud, line->data_bits, line->parity, line->stop_bits);
    return buf;
}

void st_stream_close(st_stream *s)
{
    if (s)
        s->ops->close(s);
}
