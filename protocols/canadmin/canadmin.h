/* Host side of the Klipper/Katapult CAN admin protocol (PROTOCOL.md, protocols.md 2.6 and 3):
 * find unassigned nodes by UUID, hand out node ids, ask a Klipper application to reboot
 * into its bootloader, and the UUID and node-id arithmetic both sides share. */
#ifndef STATION_PROTOCOLS_CANADMIN_CANADMIN_H
#define STATION_PROTOCOLS_CANADMIN_CANADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocols/link/can.h"
#include "station/core/err.h"

/* CAN ids (11-bit) and admin bytes. */
#define ST_CANADMIN_ID_CMD 0x3F0u  /* host -> every node */
#define ST_CANADMIN_ID_RESP 0x3F1u /* node -> host */
#define ST_CANADMIN_QUERY_UNASSIGNED 0x00u
#define ST_CANADMIN_SET_KLIPPER_NODEID 0x01u
#define ST_CANADMIN_REQUEST_BOOTLOADER 0x02u
#define ST_CANADMIN_SET_CANBOOT_NODEID 0x11u
#define ST_CANADMIN_CLEAR_CANBOOT_NODEID 0x12u
#define ST_CANADMIN_RESP_NEED_NODEID 0x20u

/* App byte of NEED_NODEID = the set-node-id command that node understands. */
#define ST_CANADMIN_APP_KLIPPER 0x01u
#define ST_CANADMIN_APP_KATAPULT 0x11u

/* Node ids the reference tools hand out: flashtool.py gives the first node len(nodes)+128
 * = 129 (0x202/0x203); Klipper's canbus_ids.py starts at 4 (0x108/0x109). */
#define ST_CANADMIN_NODEID_KATAPULT 129u
#define ST_CANADMIN_NODEID_KLIPPER_FIRST 4u

/* Timings, mirroring scripts/canbus_query.py and katapult flashtool.py (protocols.md 2.6). */
#define ST_CANADMIN_QUERY_MS 2000u          /* collect NEED_NODEID replies after one QUERY */
#define ST_CANADMIN_POST_BOOTLOADER_MS 1000u /* flashtool's wait after REQUEST_BOOTLOADER */
#define ST_CANADMIN_POST_CLEAR_MS 500u      /* flashtool's wait after CLEAR_CANBOOT_NODEID */
#define ST_CANADMIN_POST_SET_MS 500u        /* flashtool's wait after SET_CANBOOT_NODEID */
/* Ours: st_canadmin_katapult_assign re-queries this often instead of sleeping, so a fast
 * node is found at once and a slow one until the caller's deadline. */
#define ST_CANADMIN_REQUERY_MS 100u
#define ST_CANADMIN_SEND_MS 100u            /* transmit-queue deadline for one admin frame */

/* ---- UUIDs ------------------------------------------------------------------------- */

/* A node UUID: 6 bytes in wire order (as sent in admin frames and printed by Klipper). */
typedef struct st_can_uuid {
    uint8_t b[6];
} st_can_uuid;

#define ST_CAN_UUID_STRLEN 13 /* 12 hex digits + NUL */

/* "1a2b3c4d5e6f": 12 lower-case hex digits, byte order. out needs ST_CAN_UUID_STRLEN. */
void st_can_uuid_format(const st_can_uuid *u, char *out);
/* Strict parse: exactly 12 hex digits (either case), nothing else. ST_ERR_INVAL with the
 * offending text quoted (sanitised) otherwise. */
int st_can_uuid_parse(const char *s, st_can_uuid *out, st_err *err);
bool st_can_uuid_equal(const st_can_uuid *a, const st_can_uuid *b);

/* fasthash64 (Zilong Tan's fast-hash, as in Klipper lib/fast-hash). */
uint64_t st_fasthash64(const void *buf, size_t len, uint64_t seed);
/* The UUID Klipper and Katapult derive from the chip's 12-byte unique id: the first six
 * bytes, in little-endian memory order, of fasthash64(uid, 12, 0xA16231A7). */
void st_can_uuid_from_chip_uid(const uint8_t uid[12], st_can_uuid *out);

/* ---- node ids ---------------------------------------------------------------------- */

/* host -> node id nodeid*2 + 0x100; node -> host that + 1. */
uint32_t st_canadmin_nodeid_tx_id(uint8_t nodeid);
uint32_t st_canadmin_nodeid_rx_id(uint8_t nodeid);
/* The node id a host->node CAN id belongs to, or -1 (odd, or outside 0x100..0x2FE). */
int st_canadmin_can_id_to_nodeid(uint32_t can_id);

/* ---- frames ------------------------------------------------------------------------ */

void st_canadmin_encode_query(st_can_frame *f);
/* set_cmd: ST_CANADMIN_SET_KLIPPER_NODEID or ST_CANADMIN_SET_CANBOOT_NODEID. */
void st_canadmin_encode_set_nodeid(st_can_frame *f, uint8_t set_cmd, const st_can_uuid *u,
                                   uint8_t nodeid);
void st_canadmin_encode_request_bootloader(st_can_frame *f, const st_can_uuid *u);
void st_canadmin_encode_clear_nodeids(st_can_frame *f);

/* One node that answered QUERY_UNASSIGNED. */
typedef struct st_canadmin_node {
    st_can_uuid uuid;
    bool has_app;  /* DLC >= 8: byte 7 names the application */
    uint8_t app;   /* ST_CANADMIN_APP_* or anything else a node sends */
} st_canadmin_node;

/* 1 and *out filled when f is a NEED_NODEID reply (id 0x3F1, DLC >= 7, byte 0 0x20),
 * else 0. Untrusted input: any frame is safe to pass. */
int st_canadmin_decode_need_nodeid(const st_can_frame *f, st_canadmin_node *out);
/* "klipper", "katapult", "unknown (0x42)", "unknown (none)". buf: at least 32 bytes;
 * returns buf. */
const char *st_canadmin_app_name(const st_canadmin_node *n, char *buf, size_t cap);

/* ---- operations over a link ---------------------------------------------------------
 * The link should be one the caller dedicates to admin traffic: st_canadmin_query and
 * st_canadmin_katapult_assign set its filter to ST_CANADMIN_ID_RESP. */

/* Send QUERY_UNASSIGNED once and collect distinct replies for duration_ms
 * (ST_CANADMIN_QUERY_MS mirrors canbus_query.py). Stores up to cap nodes in out (in order
 * of first reply) and returns how many distinct nodes answered (may exceed cap), or < 0. */
int st_canadmin_query(st_can_link *l, unsigned duration_ms, st_canadmin_node *out, size_t cap,
                      st_err *err);
int st_canadmin_set_nodeid(st_can_link *l, uint8_t set_cmd, const st_can_uuid *u,
                           uint8_t nodeid, st_err *err);
int st_canadmin_request_bootloader(st_can_link *l, const st_can_uuid *u, st_err *err);
int st_canadmin_clear_nodeids(st_can_link *l, st_err *err);

/* flashtool's CAN entry sequence, with deadlines instead of its fixed sleeps.
 * Flags: ST_CANADMIN_ASSIGN_REQUEST_BOOTLOADER first sends REQUEST_BOOTLOADER for u (the
 * unit runs the Klipper application); ST_CANADMIN_ASSIGN_CLEAR_FIRST first sends
 * CLEAR_CANBOOT_NODEID (a unit already in Katapult with an id does not answer QUERY).
 * CLEAR is a broadcast with no UUID: do not use it while another slot on the same bus is
 * talking to a Katapult node. Then, until timeout_ms passes: QUERY and listen
 * ST_CANADMIN_REQUERY_MS; as soon as u answers as Katapult (0x11), SET_CANBOOT_NODEID it to
 * nodeid and return 0 (if it answers as the Klipper application and the request flag is
 * set, the request is repeated). On timeout: ST_ERR_NOTFOUND naming the UUID and what it
 * last answered as. The caller then talks Katapult on st_canadmin_nodeid_tx_id(nodeid) /
 * st_canadmin_nodeid_rx_id(nodeid) and confirms with GET_CANBUS_ID. */
#define ST_CANADMIN_ASSIGN_REQUEST_BOOTLOADER 0x1u
#define ST_CANADMIN_ASSIGN_CLEAR_FIRST 0x2u
int st_canadmin_katapult_assign(st_can_link *l, const st_can_uuid *u, unsigned flags,
                                uint8_t nodeid, unsigned timeout_ms, st_err *err);

#endif
