/* slcan adapter server: the far end of a kernel slcan CAN interface (the kernel-driver rig).
 * It opens a pty, puts the slcan line discipline on the slave, so the kernel creates a real
 * CAN netdev (bitrate settable through netlink/libsocketcan, unlike vcan), and on the
 * master speaks the adapter side of the LAWICEL/slcan ASCII protocol, bridging frames to
 * and from a CAN link: typically a host link on an in-memory bus (can_model.h) where the
 * node models live. Single-threaded, event-loop friendly. Needs root (TIOCSETD,
 * CAP_NET_ADMIN to rename) and the slcan module. */
#ifndef STATION_PROTOCOLS_LINK_SLCAN_SERVER_H
#define STATION_PROTOCOLS_LINK_SLCAN_SERVER_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocols/link/can.h"
#include "station/core/err.h"
#include "station/core/log.h"

typedef struct st_slcan_server st_slcan_server;

typedef struct st_slcan_opts {
    const char *ifname;  /* rename the kernel's netdev (can%d / slcan%d) to this; NULL = keep */
    unsigned poll_ms;    /* bus-side polling while frames flow (0 = 1 ms); after 100 ms
                            without a frame, every 10 ms (or poll_ms if larger) */
    /* Told when the kernel opens the channel ("S<n>" then "O") or closes it ("C"); may be
     * NULL. bitrate is 0 when the kernel sent no S command. */
    void (*on_state)(void *ctx, bool open, uint32_t bitrate);
    void *ctx;
} st_slcan_opts;

/* Create the pty, attach slcan and (optionally) rename the netdev. link (not owned, must
 * outlive the server) is the bus side: frames from the kernel are sent on it, frames
 * received on it go to the kernel while the channel is open. opts and log may be NULL. */
int st_slcan_server_new(st_can_link *link, const st_slcan_opts *opts, const st_logger *log,
                        st_slcan_server **out, st_err *err);

/* Serve the adapter protocol on fd (taken over; closed by _free), whose peer plays the
 * kernel's slcan: for tests, with no line discipline or netdev involved. */
int st_slcan_server_new_fd(st_can_link *link, int fd, const st_slcan_opts *opts,
                           const st_logger *log, st_slcan_server **out, st_err *err);

/* The netdev the kernel made ("can0" after a rename). */
const char *st_slcan_server_ifname(const st_slcan_server *s);

/* Event loop: the pty master fd to poll, and the longest wait before the next step
 * (-1 = only on fd activity: the channel is closed). */
void st_slcan_server_pollfd(const st_slcan_server *s, struct pollfd *pfd);
int st_slcan_server_timeout_ms(const st_slcan_server *s);
/* Read all the kernel wrote (always: slcan waits for its commands to be taken), handle it,
 * and move frames from the bus to the kernel. Never blocks on input. 0 or < 0. */
int st_slcan_server_step(st_slcan_server *s, st_err *err);
/* Convenience: poll and step for ms milliseconds. */
int st_slcan_server_run(st_slcan_server *s, unsigned ms, st_err *err);

typedef struct st_slcan_stats {
    bool open;            /* channel opened by the kernel ("O") */
    uint32_t bitrate;     /* from the last S command, bit/s (0 = none yet) */
    uint64_t to_bus;      /* frames from the kernel sent on the link */
    uint64_t to_host;     /* frames from the link written to the kernel */
    uint64_t dropped;     /* frames from the link while closed, extended/RTR frames */
    uint64_t bad_lines;   /* lines that are not slcan */
    uint64_t commands;    /* S/O/C and other commands seen */
} st_slcan_stats;
void st_slcan_server_stats(const st_slcan_server *s, st_slcan_stats *out);

/* Pure helpers (also the tests' vectors). Format one frame as the adapter sends it,
 * "t<id:3 hex><len><data hex>\r"; returns the length (buf needs 22 bytes). */
size_t st_slcan_format(const st_can_frame *f, char *buf);
/* Parse one line (without its '\r') the kernel sent. Returns 1 with *f filled for a
 * standard data frame, 2 for a frame we cannot carry (extended id or RTR), 0 for a
 * command (then *cmd is its letter), ST_ERR_PROTO for garbage. */
int st_slcan_parse(const char *line, size_t n, st_can_frame *f, char *cmd);
/* "S0".."S8" -> bit/s (10k..1M); 0 for anything else. */
uint32_t st_slcan_bitrate(const char *line, size_t n);

/* Detaches the line discipline (the netdev disappears) and frees. NULL is a no-op. */
void st_slcan_server_free(st_slcan_server *s);

#endif
