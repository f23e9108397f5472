/* pty server: presents a byte-stream device model (st_stream_model) as a serial port, a
 * pseudo-terminal, so unchanged serial clients (stm32flash, Katapult's flashtool.py, the
 * station's own termios backend) can talk to it. The server keeps only the master open
 * (flashtool refuses a tty another process holds, reference 2.2a) and keeps serving it
 * across client opens and closes. Single-threaded, event-loop friendly. */
#ifndef STATION_PROTOCOLS_LINK_PTY_SERVER_H
#define STATION_PROTOCOLS_LINK_PTY_SERVER_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "protocols/link/stream.h"
#include "station/core/err.h"
#include "station/core/log.h"

typedef struct st_pty_server st_pty_server;

/* Open a pty for model m (not owned; must outlive the server or the next _set_model).
 * log may be NULL. Free with st_pty_server_free. */
int st_pty_server_new(st_stream_model *m, const st_logger *log, st_pty_server **out,
                      st_err *err);

/* The slave path clients open ("/dev/pts/3"). */
const char *st_pty_server_path(const st_pty_server *s);
/* Also make link_path a symlink to it (replacing an existing symlink), e.g. a stable
 * "/tmp/unit1.tty" for a job file; removed again by _free. */
int st_pty_server_symlink(st_pty_server *s, const char *link_path, st_err *err);

/* Swap the model behind the port (a unit that rebooted into another firmware keeps its
 * UART). m not owned. */
void st_pty_server_set_model(st_pty_server *s, st_stream_model *m);

/* Event loop: fd to poll (-1 while no client has the port open: the master then reports
 * a hang-up continuously, so the server is retried on a timer) and the longest wait
 * before the next step (the model's next event, or the retry interval). */
void st_pty_server_pollfd(const st_pty_server *s, struct pollfd *pfd);
int st_pty_server_timeout_ms(const st_pty_server *s);
/* Feed the client's bytes to the model, tell it about line-setting changes, write out what
 * it has ready. Bytes the model sends while no client is connected are dropped, as on a
 * wire nobody listens to. Never blocks on input. 0 or < 0. */
int st_pty_server_step(st_pty_server *s, st_err *err);
/* Convenience: poll and step for ms milliseconds. It wakes a little before the model's
 * next answer is due (twice its timed wake-ups' running lateness + 20 us, at most 0.5 ms)
 * and holds the answer until it is due: the simulated unit answers on time, never early,
 * on a host whose timers fire late. */
int st_pty_server_run(st_pty_server *s, unsigned ms, st_err *err);

typedef struct st_pty_stats {
    bool connected;        /* a client has the slave open now */
    uint64_t rx_bytes;     /* client -> model */
    uint64_t tx_bytes;     /* model -> client */
    uint64_t dropped;      /* model output while nobody was connected */
    uint64_t line_changes; /* line() calls */
    st_stream_line line;   /* current settings as the client set them (parity: a pty
                              drops PARENB, reference 4.3a, so this reads 'N') */
    uint64_t answers;      /* model outputs written that the model had said were due */
    uint64_t late_us;      /* total time those went out after they were due (this
                              server's own wake-up latency: simulation, not client) */
    uint64_t early_wakes;  /* run: answers it woke for early and held until due */
    /* For telling a conversation's time apart (bench_paths): the first input read after
     * each output, and the first output written after each input, counted and their
     * st_now_us() times summed (a client that stamps its own writes and reads the same
     * way gets each direction's pty hop: sum of reads here - sum of its writes). */
    uint64_t first_reads, first_read_sum_us, first_writes, first_write_sum_us;
} st_pty_stats;
void st_pty_server_stats(const st_pty_server *s, st_pty_stats *out);

/* Closes the master (clients see a hang-up), removes the symlink, frees. NULL: no-op. */
void st_pty_server_free(st_pty_server *s);

#endif
