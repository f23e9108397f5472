/* CAN link dispatchers and interface preparation. */
#include "protocols/link/can.h"

const char *st_can_state_name(st_can_state s)
{
    switch (s) {
    case ST_CAN_ERROR_ACTIVE: return "error-active";
    case ST_CAN_ERROR_WARNING: return "error-warning";
    case ST_CAN_ERROR_PASSIVE: return "error-passive";
    case ST_CAN_BUS_OFF: return "bus-off";
    case ST_CAN_STOPPED: return "stopped";
    default: return "unknown";
    }
}

int st_can_send(st_can_link *l, const st_can_frame *f, unsigned timeout_ms, st_err *err)
{
    return l->ops->send(l, f, timeout_ms, err);
}

int st_can_recv(st_can_link *l, st_can_frame *f, unsigned timeout_ms, st_err *err)
{
    return l->ops->recv(l, f, timeout_ms, err);
}

int st_can_set_filter(st_can_link *l, const uint32_t *ids, size_t n, st_err *err)
{
    return l->ops->set_filter(l, ids, n, err);
}

void st_can_link_close(st_can_link *l)
{
    if (l)
        l->ops->close(l);
}
