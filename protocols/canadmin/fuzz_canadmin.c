/* Fuzz target: CAN admin frames (ids 0x3F0/0x3F1) and whatever else a unit or a host puts
 * on the bus. The input is a list of frames, 11 bytes each: id (2 bytes, little-endian,
 * masked to 11 bits), length (0..255: more than 8 is what a broken adapter could report,
 * clamped as the links do), 8 data bytes. Each frame goes to the host's NEED_NODEID
 * decoder and to the two unit-side admin handlers (the Klipper application's node and the
 * stream node that carries Katapult), whose answers are drained after every frame. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/canadmin/canadmin.h"
#include "protocols/canadmin/klipper_node.h"
#include "protocols/katapult/katapult_model.h"
#include "protocols/link/can_model.h"
#include "protocols/sim/flash.h"
#include "station/core/mcu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void drain(st_can_node *n, uint64_t now)
{
    st_can_frame out;
    for (int i = 0; i < 1024 && n->ops->tx(n, &out, now) == 1; i++)
        if (out.len > 8)
            abort(); /* a model never sends a frame longer than CAN allows */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const st_can_uuid uuid = { { 0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f } };
    st_klipper_node_cfg kc = { .uuid = uuid };
    st_klipper_node *kn = st_klipper_node_new(&kc);
    st_flash *flash = st_flash_new(st_mcu_find("stm32g431xx"), ST_TIMING_NONE);
    st_katapult_model *km = flash ? st_katapult_model_new(flash, NULL) : NULL;
    st_can_stream_node_cfg sc = { .app = ST_CANADMIN_APP_KATAPULT };
    memcpy(sc.uuid, uuid.b, 6);
    st_can_stream_node *sn = km ? st_can_stream_node_new(st_katapult_model_stream(km), &sc) : NULL;
    if (!kn || !sn)
        abort();
    st_can_node *a = st_klipper_node_base(kn), *b = st_can_stream_node_base(sn);
    uint64_t now = 0;
    for (size_t off = 0; off + 11 <= size; off += 11) {
        const uint8_t *p = data + off;
        st_can_frame f = { .id = (uint32_t)(p[0] | p[1] << 8) & 0x7FFu, .len = p[2] };
        if (f.len > 8)
            f.len = 8;
        memcpy(f.data, p + 3, 8);
        st_canadmin_node node;
        char name[32];
        if (st_canadmin_decode_need_nodeid(&f, &node) == 1)
            st_canadmin_app_name(&node, name, sizeof name);
        st_canadmin_can_id_to_nodeid(f.id);
        now += 1000;
        a->ops->rx(a, &f, now);
        drain(a, now);
        b->ops->rx(b, &f, now);
        drain(b, now);
    }
    st_can_stream_node_free(sn);
    st_katapult_model_free(km);
    st_flash_free(flash);
    st_klipper_node_free(kn);
    return 0;
}
