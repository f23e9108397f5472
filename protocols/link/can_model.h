/* Device side of CAN: the node-model interface, an in-memory CAN bus that device models
 * attach to (with a timing profile and fault injection), its host-side st_can_iface, and
 * the CAN transport of a byte stream (host st_stream over an st_can_link, and a node that
 * hosts any st_stream_model and answers the Katapult admin commands). */
#ifndef STATION_PROTOCOLS_LINK_CAN_MODEL_H
#define STATION_PROTOCOLS_LINK_CAN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocols/link/can.h"
#include "protocols/link/stream.h"
#include "station/core/timing.h"

/* ---- Node models ---------------------------------------------------------------------- */

/* A CAN node model (a unit's CAN controller and firmware). The bus calls it with its lock
 * held, from whichever host thread is waiting on the bus; calls on one bus never overlap.
 * A node may call st_vcan_attach/st_vcan_detach from inside these callbacks (a unit
 * rebooting into its bootloader). now_us is st_now_us(). */
typedef struct st_can_node st_can_node;
typedef struct st_can_node_ops {
    /* Every frame on the bus except the node's own (no acceptance filter: the node filters,
     * as Klipper and Katapult do in software). */
    void (*rx)(st_can_node *n, const st_can_frame *f, uint64_t now_us);
    /* One frame the node wants to send that is ready by now_us: 1 with *f filled, 0 none. */
    int (*tx)(st_can_node *n, st_can_frame *f, uint64_t now_us);
    /* Earliest time the node will have something to do without new input (UINT64_MAX =
     * never; a time <= now means "call tx now"). */
    uint64_t (*next_event_us)(st_can_node *n);
    /* Optional: the node joins the bus (st_vcan_attach) as a controller that has just
     * started: a unit powered up or rebooted. What lives in its RAM, such as a Klipper or
     * Katapult node id, is gone. Called with the bus locked. */
    void (*power_on)(st_can_node *n);
} st_can_node_ops;

struct st_can_node {
    const st_can_node_ops *ops;
};

/* ---- In-memory bus -------------------------------------------------------------------- */

/* Worst-case bits on the wire for a classic CAN frame with a standard (11-bit) id and len
 * data bytes (len > 8 counts as 8):
 *   unstuffed  = 47 + 8*len   (SOF 1, id 11, RTR 1, IDE 1, r0 1, DLC 4, data 8*len, CRC 15,
 *                              CRC delim 1, ACK 2, EOF 7, intermission 3)
 *   stuffable  = 34 + 8*len   (SOF through the CRC sequence)
 *   worst case = unstuffed + floor((stuffable - 1) / 4)
 * so 8 data bytes: 111 + 24 = 135 bits; 0 bytes: 47 + 8 = 55 bits. */
unsigned st_can_frame_bits(uint8_t len);

typedef struct st_vcan_bus st_vcan_bus;

typedef struct st_vcan_stats {
    uint64_t frames;       /* frames put on the bus (dropped ones included) */
    uint64_t bits;         /* worst-case bits of those frames */
    uint64_t busy_us;      /* bus time they took with the datasheet profile (0 with none) */
    uint64_t dropped;      /* frames removed by the drop fault */
    uint64_t corrupted;    /* frames altered by the corrupt fault */
    uint64_t overruns;     /* frames lost because a host link's receive queue was full */
    uint64_t wakeups;      /* waiting host threads woken because a frame was queued for
                            * their link (each waiter is woken only for its own frames) */
    uint64_t sleeps;       /* times a host thread went to sleep waiting on the bus */
} st_vcan_stats;

/* New bus. bitrate in bit/s (0 = "no bitrate", like vcan; only allowed with
 * ST_TIMING_NONE). With ST_TIMING_DATASHEET each frame occupies the bus for
 * st_can_frame_bits(len) bit times and frames go out one at a time in the order they were
 * queued (arbitration by id is not modelled), so units in parallel really contend.
 * Returns NULL on bad arguments or no memory. Free with st_vcan_bus_free after every
 * iface made on it is freed. Thread-safe. */
st_vcan_bus *st_vcan_bus_new(uint32_t bitrate, st_timing_profile timing);
void st_vcan_bus_free(st_vcan_bus *bus);

/* Attach a node (not owned); ST_ERR_BUSY if it is already attached. */
int st_vcan_attach(st_vcan_bus *bus, st_can_node *n, st_err *err);
/* Detach a node (no-op if absent). Frames it queued but that are not delivered yet are
 * still delivered (they are on the wire). After it returns the bus never calls n again,
 * unless it is called from inside one of n's own callbacks (then: after that callback). */
void st_vcan_detach(st_vcan_bus *bus, st_can_node *n);

/* Faults. bus-off: st_can_send/st_can_recv on every link fail with ST_ERR_IO naming the
 * state, the iface reports ST_CAN_BUS_OFF, until the iface's restart() or
 * st_vcan_fault_bus_off(bus, false). drop/corrupt: the nth frame put on the bus from now
 * (1 = the next one) is lost / has its last data byte (or its DLC, when empty) inverted;
 * 0 disarms. A real controller's CRC would reject a corrupted frame: this fault exists to
 * test the layers above against payload damage. */
void st_vcan_fault_bus_off(st_vcan_bus *bus, bool on);
/* down: links fail with "interface is down", the iface reports ST_CAN_STOPPED until its
 * up(). bitrate_locked: the iface's set_bitrate fails with ST_ERR_PERM as SocketCAN does
 * without CAP_NET_ADMIN. */
void st_vcan_fault_down(st_vcan_bus *bus, bool down);
void st_vcan_fault_bitrate_locked(st_vcan_bus *bus, bool locked);
void st_vcan_fault_drop_nth(st_vcan_bus *bus, uint64_t nth);
void st_vcan_fault_corrupt_nth(st_vcan_bus *bus, uint64_t nth);

void st_vcan_get_stats(st_vcan_bus *bus, st_vcan_stats *out);

/* A host-side interface on the bus, named name ("vcan-virtual" if NULL). Its links each
 * have their own receive queue and filter and see every frame other links and nodes send
 * (SocketCAN's local loopback), never their own. Several threads may each use their own
 * link at once. set_bitrate changes the bus rate (refused on a bitrate-0 bus, as vcan).
 * Free with its ops->free after closing its links; the bus must outlive it. */
int st_can_iface_mem_new(st_vcan_bus *bus, const char *name, const st_logger *log,
                         st_can_iface **out, st_err *err);

/* ---- Byte stream over CAN (2.6: the Katapult/Klipper byte stream cut into frames) ----- */

/* Host side: an st_stream whose writes go out on tx_id in frames of up to 8 bytes and
 * whose reads are the payloads of frames received on rx_id, in order. Sets the link's
 * filter to rx_id. The link is not owned and must outlive the stream; close the stream
 * with st_stream_close. set_line and set_modem are accepted and ignored (a CAN link has
 * no baud rate or modem lines). */
int st_can_stream_open(st_can_link *link, uint32_t tx_id, uint32_t rx_id, st_stream **out,
                       st_err *err);
/* The bus's bitrate (0 = unknown, the default) for a stream made by st_can_stream_open:
 * st_stream_read_min then sleeps through the frames that must still come (at their
 * shortest wire time, so never past the last one's arrival) and takes them in one batch,
 * instead of waking at each frame. */
void st_can_stream_set_bitrate(st_stream *s, uint32_t bitrate);
/* Reads of a stream made by st_can_stream_open that slept until an st_stream_expect_at
 * hint before their first look (for tests and benchmarks). */
unsigned st_can_stream_expect_sleeps(st_stream *s);

/* Device side: a CAN node hosting an st_stream_model (not owned; may be NULL for a node
 * with no data channel) and answering the admin commands on 0x3F0 with its UUID:
 *  - QUERY_UNASSIGNED [00] -> [20, uuid0..5, app] on 0x3F1, only while it has no node id;
 *  - [set_cmd, uuid0..5, nodeid] (set_cmd = app: 0x11 SET_CANBOOT_NODEID for Katapult,
 *    0x01 SET_KLIPPER_NODEID for Klipper): a matching UUID adopts nodeid; a node holding
 *    that nodeid whose UUID does not match drops it (id conflict);
 *  - [12] CLEAR_CANBOOT_NODEID (Katapult only): forget the node id;
 *  - [02, uuid0..5] REQUEST_BOOTLOADER (Klipper only, honoured even when assigned):
 *    calls on_bootloader_request(ctx) when the UUID matches;
 *  - a frame from someone else on the node's own transmit id (nodeid*2+0x101): conflict,
 *    node id dropped.
 * With a node id n, frames on n*2+0x100 feed the model's rx, and its tx bytes go out on
 * n*2+0x101 in frames of up to 8 bytes; without one, model output is discarded (as
 * Klipper and Katapult do). Each st_vcan_attach is a power-on: the node id is forgotten
 * and must be assigned again (a rebooted unit has none). */
typedef struct st_can_stream_node_cfg {
    uint8_t uuid[6];
    uint8_t app; /* 0x11 Katapult, 0x01 Klipper application */
    void (*on_bootloader_request)(void *ctx); /* may be NULL; runs with the bus locked */
    void *ctx;
} st_can_stream_node_cfg;

typedef struct st_can_stream_node st_can_stream_node;

/* Returns NULL on no memory. Free with st_can_stream_node_free after detaching it. */
st_can_stream_node *st_can_stream_node_new(st_stream_model *m, const st_can_stream_node_cfg *cfg);
void st_can_stream_node_free(st_can_stream_node *n);
/* The node to attach with st_vcan_attach. */
st_can_node *st_can_stream_node_base(st_can_stream_node *n);
/* The node id, or -1 when unassigned. Read these while no host thread uses the bus. */
int st_can_stream_node_nodeid(st_can_stream_node *n);
/* Counters for tests: id conflicts seen, bootloader requests honoured. */
unsigned st_can_stream_node_conflicts(st_can_stream_node *n);
unsigned st_can_stream_node_bootloader_requests(st_can_stream_node *n);

#endif
