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
        /* cur == 0: no bit timing. vcan has none to match, but neither has a real
         * controller nobody configured yet (a fresh USB adapter, slcan: seen in the
         * kernel-driver rig), and that one cannot come up without it: give a stopped
         * interface the job's bitrate. vcan refuses, and then only its up() matters;
         * a permission refusal is the answer either way. */
        if (cur == 0 && state == ST_CAN_STOPPED) {
            st_err e2 = {0};
            rc = i->ops->set_bitrate(i, bitrate, &e2);
            if (rc == ST_ERR_PERM) {
                if (err)
                    *err = e2;
                return st_err_wrap(err, rc, "%s has no bitrate yet, job needs %u bit/s", i->name,
                                     (unsigned)bitrate);
            }
            if (rc == 0) {
                ST_LOGI(i->log, "can", "%s: bitrate set to %u", i->name, (unsigned)bitrate);
                rc = i->ops->get_state(i, &state, err);
                if (rc < 0)
                    return rc;
            }
        }
        if (cur != 0 && cur != bitrate) {
            ST_LOGI(i->log, "can", "%s: bitrate %u -> %u", i->name, (unsigned)cur,
                    (unsigned)bitrate);
            rc = i->ops->set_bitrate(i, bitrate, err);
            if (rc < 0)
                return st_err_wrap(err, rc, "%s runs at %u bit/s, job needs %u bit/s", i->name,
                                     (unsigned)cur, (unsigned)bitrate);
            rc = i->ops->get_state(i, &state, err);
            if (rc < 0)
                return rc;
        }
    }
    if (state == ST_CAN_STOPPED) {
        rc = i->ops->up(i, err);
        if (rc < 0)
            return st_err_wrap(err, rc, "bring %s up", i->name);
    }
    return 0;
}
