/* Device model of a Klipper application's CAN node (protocols.md 3): answers
 * QUERY_UNASSIGNED with app byte 0x01 only while it has no node id, adopts
 * SET_KLIPPER_NODEID for its UUID, gives up an id handed to another UUID (Klipper shuts
 * down: "Another CAN node assigned this ID"), and honours REQUEST_BOOTLOADER for its UUID
 * even when assigned by calling the owner's hook (which typically detaches this node and
 * attaches the unit's Katapult node: the unit rebooting). Other UUIDs are ignored. */
#ifndef STATION_PROTOCOLS_CANADMIN_KLIPPER_NODE_H
#define STATION_PROTOCOLS_CANADMIN_KLIPPER_NODE_H

#include <stdbool.h>

#include "protocols/canadmin/canadmin.h"
#include "protocols/link/can_model.h"

typedef struct st_klipper_node_cfg {
    st_can_uuid uuid;
    /* Called on the bus's thread with the bus locked when [02, uuid] arrives; it may call
     * st_vcan_detach/st_vcan_attach. May be NULL (the request is only counted). */
    void (*on_bootloader_request)(void *ctx);
    void *ctx;
    /* The application's byte stream (a Klipper protocol model), not owned; NULL for a
     * node with only the admin side. */
    st_stream_model *app;
} st_klipper_node_cfg;

typedef struct st_klipper_node st_klipper_node;

/* Returns NULL on no memory. Free with st_klipper_node_free once detached. */
st_klipper_node *st_klipper_node_new(const st_klipper_node_cfg *cfg);
void st_klipper_node_free(st_klipper_node *n);
/* The node to pass to st_vcan_attach / st_vcan_detach. */
st_can_node *st_klipper_node_base(st_klipper_node *n);
/* Node id, or -1 while unassigned. Read it while no host thread uses the bus. */
int st_klipper_node_nodeid(st_klipper_node *n);
/* Bootloader requests honoured so far. */
unsigned st_klipper_node_bootloader_requests(st_klipper_node *n);
/* True once another UUID was given this node's id (Klipper would be in shutdown). */
bool st_klipper_node_shutdown(st_klipper_node *n);

#endif
