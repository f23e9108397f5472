/* CAN link: classic CAN frames to and from an interface, whatever the backend:
 * SocketCAN raw sockets + libsocketcan (can_socketcan.c) or an in-memory bus of device
 * models (can_mem.c). Engines see only st_can_link. */
#ifndef STATION_PROTOCOLS_LINK_CAN_H
#define STATION_PROTOCOLS_LINK_CAN_H

#include <stddef.h>
#include <stdint.h>

#include "station/core/err.h"
#include "station/core/log.h"

typedef struct st_can_frame {
    uint32_t id;      /* 11-bit standard id (the Klipper/Katapult protocols use no others) */
    uint8_t len;      /* 0..8 */
    uint8_t data[8];
} st_can_frame;

typedef enum st_can_state {
    ST_CAN_ERROR_ACTIVE,
    ST_CAN_ERROR_WARNING,
    ST_CAN_ERROR_PASSIVE,
    ST_CAN_BUS_OFF,
    ST_CAN_STOPPED,
    ST_CAN_STATE_UNKNOWN,
} st_can_state;

const char *st_can_state_name(st_can_state s);

typedef struct st_can_link st_can_link;   /* one socket: send + filtered receive */
typedef struct st_can_iface st_can_iface; /* the interface: bitrate, state, links */

typedef struct st_can_link_ops {
    int (*send)(st_can_link *l, const st_can_frame *f, unsigned timeout_ms, st_err *err);
    /* Returns 1 with *f filled, 0 on timeout, < 0 on error (ST_ERR_IO, bus-off...). */
    int (*recv)(st_can_link *l, st_can_frame *f, unsigned timeout_ms, st_err *err);
    /* Receive only these ids (n == 0: everything). */
    int (*set_filter)(st_can_link *l, const uint32_t *ids, size_t n, st_err *err);
    void (*close)(st_can_link *l);
    /* Send n frames in order within the timeout, like n sends but in fewer system calls
     * (sendmmsg). May be NULL: st_can_send_many sends them one by one. */
    int (*send_many)(st_can_link *l, const st_can_frame *f, size_t n, unsigned timeout_ms,
                     st_err *err);
    /* Wait (timeout) for a frame, then take up to cap of those already queued (recvmmsg);
     * returns the count, 0 on timeout, < 0 on error. May be NULL: st_can_recv_many then
     * receives one by one. */
    int (*recv_many)(st_can_link *l, st_can_frame *f, size_t cap, unsigned timeout_ms,
                     st_err *err);
} st_can_link_ops;

struct st_can_link {
    const st_can_link_ops *ops;
};

typedef struct st_can_iface_ops {
    int (*open_link)(st_can_iface *i, st_can_link **out, st_err *err);
    /* Bitrate in bit/s (0 when the interface has none, e.g. vcan). */
    int (*get_bitrate)(st_can_iface *i, uint32_t *bitrate, st_err *err);
    /* Set the bitrate (brings the interface down and up again as needed). */
    int (*set_bitrate)(st_can_iface *i, uint32_t bitrate, st_err *err);
    int (*get_state)(st_can_iface *i, st_can_state *state, st_err *err);
    int (*up)(st_can_iface *i, st_err *err);
    /* Restart after bus-off. */
    int (*restart)(st_can_iface *i, st_err *err);
    void (*free)(st_can_iface *i);
} st_can_iface_ops;

struct st_can_iface {
    const st_can_iface_ops *ops;
    char name[32];
    const st_logger *log;
};

/* Dispatchers (can.c). */
int st_can_send(st_can_link *l, const st_can_frame *f, unsigned timeout_ms, st_err *err);
int st_can_recv(st_can_link *l, st_can_frame *f, unsigned timeout_ms, st_err *err);
int st_can_set_filter(st_can_link *l, const uint32_t *ids, size_t n, st_err *err);
void st_can_link_close(st_can_link *l);
/* n frames in order (0, or < 0 on error); see send_many. */
int st_can_send_many(st_can_link *l, const st_can_frame *f, size_t n, unsigned timeout_ms,
                     st_err *err);
/* Up to cap frames: the first waited for, the rest those already queued; see recv_many. */
int st_can_recv_many(st_can_link *l, st_can_frame *f, size_t cap, unsigned timeout_ms,
                     st_err *err);

/* Ready an interface for a job: check it exists, bring it up at `bitrate` if it is down or
 * at another rate (0 = leave the rate alone), refuse bus-off with a clear error. */
int st_can_iface_prepare(st_can_iface *i, uint32_t bitrate, st_err *err);

/* SocketCAN backend (can_socketcan.c): interface by name ("can0"). */
int st_can_iface_socketcan_new(const char *ifname, const st_logger *log, st_can_iface **out,
                               st_err *err);

#endif
