/* st_can_iface_prepare: ready any CAN interface (SocketCAN or in-memory) for a job, with
 * one clear error per way it can be unusable (down, wrong bitrate, bus-off). */
#include "protocols/link/can.h"

int st_can_iface_prepare(st_can_iface *i, uint32_t bitrate, st_err *err)
{
    st_can_state state;
    int rc = i->ops->get_state(i, &state, err);
    if (rc < 0)
        return rc;
    if (state == ST_CAN_BUS_OFF)
        return st_err_set(err, ST_ERR_IO,
                          "CAN interface %s is bus-off (wrong bitrate on the bus, a shorted or "
                          "unterminated bus, or colliding node replies): restart it", i->name);
    if (bitrate) {
        uint32_t cur = 0;
        rc = i->ops->get_bitrate(i, &cur, err);
        if (rc < 0)
            return rc;
        /* cur == 0: the interface has no bitrate (vcan); there is nothing to match. */
        if (cur != 0 && cur != bitrate) {
            ST_LOGI(i->log, "can", "%s: bitrate %u -> %u", i->name, (unsigned)cur,
                    (unsigned)bitrate);
            rc = i->ops->set_bitrate(i, bitrate, err);
            if (rc < 0)
                return st_err_prefix(err, "%s runs at %u bit/s, job needs %u bit/s", i->name,
                                     (unsigned)cur, (unsigned)bitrate);
            rc = i->ops->get_state(i, &state, err);
            if (rc < 0)
                return rc;
        }
    }
    if (state == ST_CAN_STOPPED) {
        rc = i->ops->up(i, err);
        if (rc < 0)
            return st_err_prefix(err, "bring %s up", i->name);
    }
    return 0;
}
