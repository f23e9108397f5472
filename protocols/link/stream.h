/* Byte-stream link: a tty (UART, USB-CDC) or an in-memory pipe to a device model.
 * Katapult serial, AN3155 and BGAPI engines see only st_stream. */
#ifndef STATION_PROTOCOLS_LINK_STREAM_H
#define STATION_PROTOCOLS_LINK_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "station/core/clock.h"
#include "station/core/err.h"
#include "station/core/log.h"

typedef struct st_stream st_stream;

/* Line settings; parity 'N', 'E' or 'O'; data bits 5..8; stop bits 1 or 2. */
typedef struct st_stream_line {
    uint32_t baud;
    uint8_t data_bits;
    char parity;
    uint8_t stop_bits;
    uint8_t rtscts; /* 1: RTS/CTS hardware flow control (0 in every positional initializer) */
} st_stream_line;

typedef struct st_stream_ops {
    /* Write all n bytes before the timeout; returns n or < 0. */
    int (*write)(st_stream *s, const uint8_t *buf, size_t n, unsigned timeout_ms, st_err *err);
    /* Read up to cap bytes; returns > 0 bytes, 0 on timeout, < 0 on error
     * (ST_ERR_DISCONNECT when the device went away). */
    int (*read)(st_stream *s, uint8_t *buf, size_t cap, unsigned timeout_ms, st_err *err);
    /* Apply line settings; ST_ERR_UNSUPPORTED with a clear message when the device cannot
     * keep them (a pty drops parity). */
    int (*set_line)(st_stream *s, const st_stream_line *line, st_err *err);
    /* Modem lines: each of dtr/rts is 0, 1, or -1 to leave it. */
    int (*set_modem)(st_stream *s, int dtr, int rts, st_err *err);
    /* Discard pending input. */
    int (*flush_input)(st_stream *s, st_err *err);
    void (*close)(st_stream *s);
    /* Send a BREAK (line held at space for at least ms milliseconds; a UART rounds it to
     * what it can do). May be NULL: the link has no BREAK (ST_ERR_UNSUPPORTED). */
    int (*send_break)(st_stream *s, unsigned ms, st_err *err);
    /* Read up to cap bytes, waiting (until the timeout) for at least min of them when the
     * link can do that with fewer wake-ups than one per chunk that arrives; returns > 0
     * bytes (fewer than min at the timeout), 0 on timeout, < 0 on error. May be NULL:
     * st_stream_read_min then reads as read does (returns as soon as anything came). */
    int (*read_min)(st_stream *s, uint8_t *buf, size_t cap, size_t min, unsigned timeout_ms,
                    st_err *err);
    /* The answer to what was just written is not expected to be complete before at_us
     * (this stream's clock): the next read may sleep until then before it first looks, so
     * that it takes the whole answer at one wake-up instead of waking as it arrives. A
     * write cancels it. May be NULL: the hint is dropped (a tty hands over an answer that
     * came in one piece at one wake-up anyway). */
    void (*expect_at)(st_stream *s, uint64_t at_us);
} st_stream_ops;

struct st_stream {
    const st_stream_ops *ops;
    char name[64]; /* for messages: "/dev/ttyACM0", "mem:katapult" */
    /* Time of the conversation on this link (NULL = the system clock): read timeouts and
     * the deadlines of an engine talking over it. Not owned. */
    const st_clock *clock;
};

/* Run this stream's timeouts, and its engine's deadlines, on clock (NULL = system). A
 * virtual clock (station/core/clock.h) lets a test cross a model's 100 ms reset delay
 * without sleeping. The in-memory backend passes the clock's time to its device model. */
void st_stream_set_clock(st_stream *s, const st_clock *clock);

/* Dispatchers (stream.c). */
int st_stream_write(st_stream *s, const uint8_t *buf, size_t n, unsigned timeout_ms, st_err *err);
int st_stream_read(st_stream *s, uint8_t *buf, size_t cap, unsigned timeout_ms, st_err *err);
/* Read up to cap bytes, at least min of them unless the timeout comes first (an engine
 * that knows how long the answer it is reading is says so: a CAN stream then sleeps
 * through the frames it knows must still come instead of waking at each). Returns > 0
 * bytes, possibly fewer than min; 0 on timeout; < 0 on error. */
int st_stream_read_min(st_stream *s, uint8_t *buf, size_t cap, size_t min, unsigned timeout_ms,
                       st_err *err);
/* Hint for the next read after a write: its answer is not expected before at_us (on the
 * stream's clock; the caller's estimate, e.g. learnt from earlier answers). A CAN stream
 * sleeps until then before its first look, then takes every frame already there in one
 * call; other links ignore it. Never delays a read past its own timeout. */
void st_stream_expect_at(st_stream *s, uint64_t at_us);
/* Read exactly n bytes before the deadline (timeout_ms for the whole read). */
int st_stream_read_exact(st_stream *s, uint8_t *buf, size_t n, unsigned timeout_ms, st_err *err);
int st_stream_set_line(st_stream *s, const st_stream_line *line, st_err *err);
int st_stream_set_modem(st_stream *s, int dtr, int rts, st_err *err);
int st_stream_flush_input(st_stream *s, st_err *err);
int st_stream_send_break(st_stream *s, unsigned ms, st_err *err);
void st_stream_close(st_stream *s);

/* Parse a framing such as "8e1", "8N1", "7o2" (stm32flash's -m) into line (baud kept).
 * 0, or ST_ERR_INVAL naming the bad character. */
int st_stream_parse_framing(const char *s, st_stream_line *line, st_err *err);
/* "115200 8E1" into buf (cap >= 24); returns buf. */
const char *st_stream_line_str(const st_stream_line *line, char *buf, size_t cap);

/* termios backend (stream_tty.c). Standard rates through Bxxx, any other rate through
 * termios2/BOTHER; line settings are read back and a device that silently dropped one
 * (a pty drops PARENB) is refused with ST_ERR_UNSUPPORTED. */
int st_stream_tty_open(const char *path, const st_stream_line *line, st_stream **out,
                       st_err *err);

/* Device side of a byte stream: what a byte-stream device model implements. The in-memory
 * stream (stream_mem.c) and the pty server drive it. All calls come from one thread at a
 * time; now_us is st_now_us(). */
typedef struct st_stream_model st_stream_model;
typedef struct st_stream_model_ops {
    /* Bytes from the host. */
    void (*rx)(st_stream_model *m, const uint8_t *buf, size_t n, uint64_t now_us);
    /* Bytes for the host that are ready by now_us; returns the count (0 = none yet). */
    size_t (*tx)(st_stream_model *m, uint8_t *buf, size_t cap, uint64_t now_us);
    /* Earliest time something will happen without new input (UINT64_MAX = never). */
    uint64_t (*next_event_us)(st_stream_model *m);
    /* Host changed line settings / modem lines (may be NULL). */
    void (*line)(st_stream_model *m, const st_stream_line *line, int dtr, int rts);
    /* Host sent a BREAK (may be NULL). */
    void (*brk)(st_stream_model *m, uint64_t now_us);
} st_stream_model_ops;

struct st_stream_model {
    const st_stream_model_ops *ops;
};

/* In-memory stream to a model (not owned). */
int st_stream_mem_open(st_stream_model *m, const char *name, st_stream **out, st_err *err);

#endif
