/* Klipper application CAN node model: the Klipper flavour (app byte 0x01, bootloader
 * requests) of the generic stream node in protocols/link/can_stream.c. */
#include "protocols/canadmin/klipper_node.h"

#include <stdlib.h>
#include <string.h>

struct st_klipper_node {
    st_can_stream_node *node;
};

st_klipper_node *st_klipper_node_new(const st_klipper_node_cfg *cfg)
{
    st_klipper_node *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    st_can_stream_node_cfg c = {
        .app = ST_CANADMIN_APP_KLIPPER,
        .on_bootloader_request = cfg->on_bootloader_request,
        .ctx = cfg->ctx,
    };
    memcpy(c.uuid, cfg->uuid.b, 6);
    k->node = st_can_stream_node_new(cfg->app, &c);
    if (!k->node) {
        free(k);
        return NULL;
    }
    return k;
}

void st_klipper_node_free(st_klipper_node *k)
{
    if (!k)
        return;
    st_can_stream_node_free(k->node);
    free(k);
}

st_can_node *st_klipper_node_base(st_klipper_node *k)
{
    return st_can_stream_node_base(k->node);
}

int st_klipper_node_nodeid(st_klipper_node *k)
{
    return st_can_stream_node_nodeid(k->node);
}

unsigned st_klipper_node_bootloader_requests(st_klipper_node *k)
{
    return st_can_stream_node_bootloader_requests(k->node);
}

bool st_klipper_node_shutdown(st_klipper_node *k)
{
    return st_can_stream_node_conflicts(k->node) > 0;
}
