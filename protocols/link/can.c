/* CAN link dispatchers and interface preparation. */
#include "protocols/link/can.h"

#include "station/core/clock.h"

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

int st_can_send_many(st_can_link *l, const st_can_frame *f, size_t n, unsigned timeout_ms,
                     st_err *err)
{
    if (l->ops->send_many)
        return n ? l->ops->send_many(l, f, n, timeout_ms, err) : 0;
    st_deadline d = st_deadline_in_ms(timeout_ms);
    for (size_t i = 0; i < n; i++) {
        int rc = l->ops->send(l, &f[i], (unsigned)st_deadline_remaining_ms(d), err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int st_can_recv_many(st_can_link *l, st_can_frame *f, size_t cap, unsigned timeout_ms,
                     st_err *err)
{
    if (cap == 0)
        return 0;
    if (l->ops->recv_many)
        return l->ops->recv_many(l, f, cap, timeout_ms, err);
    int rc = l->ops->recv(l, &f[0], timeout_ms, err);
    if (rc != 1)
        return rc;
    size_t n = 1;
    st_err later; /* with frames in hand an error is the next call's */
    while (n < cap && l->ops->recv(l, &f[n], 0, &later) == 1)
        n++;
    return (int)n;
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
