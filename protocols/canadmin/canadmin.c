/* Klipper/Katapult CAN admin protocol, host side: UUIDs, node-id mapping, admin frames and
 * the query / assign / bootloader-request operations (PROTOCOL.md). */
#include "protocols/canadmin/canadmin.h"

#include <stdio.h>
#include <string.h>

#include "station/core/clock.h"
#include "station/core/digest.h"
#include "station/core/text.h"

/* ---- UUIDs ------------------------------------------------------------------------- */

void st_can_uuid_format(const st_can_uuid *u, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 6; i++) {
        out[2 * i] = hex[u->b[i] >> 4];
        out[2 * i + 1] = hex[u->b[i] & 0xF];
    }
    out[12] = '\0';
}

int st_can_uuid_parse(const char *s, st_can_uuid *out, st_err *err)
{
    if (!s)
        return st_err_set(err, ST_ERR_INVAL, "CAN UUID missing");
    char shown[40];
    size_t n = strnlen(s, 64);
    st_can_uuid u;
    if (n != 12 || !st_unhex(s, u.b, sizeof u.b)) {
        st_text_printable(s, shown, sizeof shown);
        return st_err_set(err, ST_ERR_INVAL,
                          "bad CAN UUID \"%s%s\": want 12 hex digits, e.g. 1a2b3c4d5e6f", shown,
                          n >= sizeof shown ? "..." : "");
    }
    *out = u;
    return 0;
}

bool st_can_uuid_equal(const st_can_uuid *a, const st_can_uuid *b)
{
    return memcmp(a->b, b->b, 6) == 0;
}

static uint64_t fh_mix(uint64_t h)
{
    h ^= h >> 23;
    h *= 0x2127599bf4325c37ULL;
    h ^= h >> 47;
    return h;
}

uint64_t st_fasthash64(const void *buf, size_t len, uint64_t seed)
{
    const uint64_t m = 0x880355f21e6d1965ULL;
    const uint8_t *p = buf;
    uint64_t h = seed ^ ((uint64_t)len * m);
    size_t words = len / 8;
    /* Words are read little-endian byte by byte: the MCU is little-endian and the host
     * need not be, nor aligned. */
    for (size_t w = 0; w < words; w++, p += 8) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
            v = v << 8 | p[i];
        h ^= fh_mix(v);
        h *= m;
    }
    size_t tail = len & 7;
    if (tail) {
        uint64_t v = 0;
        for (size_t i = tail; i-- > 0;)
            v = v << 8 | p[i];
        h ^= fh_mix(v);
        h *= m;
    }
    return fh_mix(h);
}

void st_can_uuid_from_chip_uid(const uint8_t uid[12], st_can_uuid *out)
{
    /* Klipper canserial_set_uuid: memcpy of the 64-bit hash, i.e. its low byte first. */
    uint64_t h = st_fasthash64(uid, 12, 0xA16231A7u);
    for (int i = 0; i < 6; i++)
        out->b[i] = (uint8_t)(h >> (8 * i));
}

/* ---- node ids ---------------------------------------------------------------------- */

uint32_t st_canadmin_nodeid_tx_id(uint8_t nodeid)
{
    return (uint32_t)nodeid * 2u + 0x100u;
}

uint32_t st_canadmin_nodeid_rx_id(uint8_t nodeid)
{
    return (uint32_t)nodeid * 2u + 0x101u;
}

int st_canadmin_can_id_to_nodeid(uint32_t can_id)
{
    if (can_id < 0x100u || can_id > 0x2FEu || (can_id & 1u))
        return -1;
    return (int)((can_id - 0x100u) / 2u);
}

/* ---- frames ------------------------------------------------------------------------ */

void st_canadmin_encode_query(st_can_frame *f)
{
    memset(f, 0, sizeof *f);
    f->id = ST_CANADMIN_ID_CMD;
    f->len = 1;
    f->data[0] = ST_CANADMIN_QUERY_UNASSIGNED;
}

void st_canadmin_encode_set_nodeid(st_can_frame *f, uint8_t set_cmd, const st_can_uuid *u,
                                   uint8_t nodeid)
{
    memset(f, 0, sizeof *f);
    f->id = ST_CANADMIN_ID_CMD;
    f->len = 8;
    f->data[0] = set_cmd;
    memcpy(f->data + 1, u->b, 6);
    f->data[7] = nodeid;
}

void st_canadmin_encode_request_bootloader(st_can_frame *f, const st_can_uuid *u)
{
    memset(f, 0, sizeof *f);
    f->id = ST_CANADMIN_ID_CMD;
    f->len = 7;
    f->data[0] = ST_CANADMIN_REQUEST_BOOTLOADER;
    memcpy(f->data + 1, u->b, 6);
}

void st_canadmin_encode_clear_nodeids(st_can_frame *f)
{
    memset(f, 0, sizeof *f);
    f->id = ST_CANADMIN_ID_CMD;
    f->len = 1;
    f->data[0] = ST_CANADMIN_CLEAR_CANBOOT_NODEID;
}

int st_canadmin_decode_need_nodeid(const st_can_frame *f, st_canadmin_node *out)
{
    /* canbus_query.py: id 0x3F1, DLC >= 7, data[0] == 0x20; byte 7 only when DLC > 7. */
    if (f->id != ST_CANADMIN_ID_RESP || f->len < 7 || f->len > 8 ||
        f->data[0] != ST_CANADMIN_RESP_NEED_NODEID)
        return 0;
    memcpy(out->uuid.b, f->data + 1, 6);
    out->has_app = f->len > 7;
    out->app = out->has_app ? f->data[7] : 0;
    return 1;
}

const char *st_canadmin_app_name(const st_canadmin_node *n, char *buf, size_t cap)
{
    if (n->has_app && n->app == ST_CANADMIN_APP_KLIPPER)
        snprintf(buf, cap, "klipper");
    else if (n->has_app && n->app == ST_CANADMIN_APP_KATAPULT)
        snprintf(buf, cap, "katapult");
    else if (n->has_app)
        snprintf(buf, cap, "unknown (0x%02x)", n->app);
    else
        snprintf(buf, cap, "unknown (none)");
    return buf;
}

/* ---- operations -------------------------------------------------------------------- */

static int admin_send(st_can_link *l, const st_can_frame *f, const char *what, st_err *err)
{
    int rc = st_can_send(l, f, ST_CANADMIN_SEND_MS, err);
    return rc < 0 ? st_err_wrap(err, rc, "can admin: %s", what) : 0;
}

static int listen_resp(st_can_link *l, st_err *err)
{
    uint32_t id = ST_CANADMIN_ID_RESP;
    int rc = st_can_set_filter(l, &id, 1, err);
    return rc < 0 ? st_err_wrap(err, rc, "can admin: filter 0x%03x", id) : 0;
}

int st_canadmin_query(st_can_link *l, unsigned duration_ms, st_canadmin_node *out, size_t cap,
                      st_err *err)
{
    int rc = listen_resp(l, err);
    if (rc < 0)
        return rc;
    st_can_frame f;
    st_canadmin_encode_query(&f);
    rc = admin_send(l, &f, "send QUERY_UNASSIGNED", err);
    if (rc < 0)
        return rc;
    st_deadline d = st_deadline_in_ms(duration_ms);
    size_t found = 0;
    /* Seen UUIDs beyond cap are not kept, so a node repeating itself past cap may be
     * counted twice; cap the count so a chatty bus cannot overflow it either. */
    for (;;) {
        int left = st_deadline_remaining_ms(d);
        if (left == 0)
            break;
        rc = st_can_recv(l, &f, (unsigned)left, err);
        if (rc < 0)
            return st_err_wrap(err, rc, "can admin: query");
        if (rc == 0)
            break;
        st_canadmin_node n;
        if (!st_canadmin_decode_need_nodeid(&f, &n))
            continue;
        bool dup = false;
        for (size_t i = 0; i < found && i < cap; i++)
            if (st_can_uuid_equal(&out[i].uuid, &n.uuid)) {
                dup = true;
                out[i] = n; /* the latest answer says what it runs now */
            }
        if (dup)
            continue;
        if (found < cap)
            out[found] = n;
        if (found < 4096)
            found++;
    }
    return (int)found;
}

int st_canadmin_set_nodeid(st_can_link *l, uint8_t set_cmd, const st_can_uuid *u,
                           uint8_t nodeid, st_err *err)
{
    st_can_frame f;
    char s[ST_CAN_UUID_STRLEN];
    if (set_cmd != ST_CANADMIN_SET_KLIPPER_NODEID && set_cmd != ST_CANADMIN_SET_CANBOOT_NODEID)
        return st_err_set(err, ST_ERR_INVAL, "can admin: 0x%02x is not a set-node-id command",
                          set_cmd);
    st_canadmin_encode_set_nodeid(&f, set_cmd, u, nodeid);
    st_can_uuid_format(u, s);
    int rc = st_can_send(l, &f, ST_CANADMIN_SEND_MS, err);
    return rc < 0 ? st_err_wrap(err, rc, "can admin: set node %s to id %u", s, nodeid) : 0;
}

int st_canadmin_request_bootloader(st_can_link *l, const st_can_uuid *u, st_err *err)
{
    st_can_frame f;
    char s[ST_CAN_UUID_STRLEN];
    st_canadmin_encode_request_bootloader(&f, u);
    st_can_uuid_format(u, s);
    int rc = st_can_send(l, &f, ST_CANADMIN_SEND_MS, err);
    return rc < 0 ? st_err_wrap(err, rc, "can admin: request bootloader of %s", s) : 0;
}

int st_canadmin_clear_nodeids(st_can_link *l, st_err *err)
{
    st_can_frame f;
    st_canadmin_encode_clear_nodeids(&f);
    return admin_send(l, &f, "send CLEAR_CANBOOT_NODEID", err);
}

int st_canadmin_katapult_assign(st_can_link *l, const st_can_uuid *u, unsigned flags,
                                uint8_t nodeid, unsigned timeout_ms, st_err *err)
{
    char s[ST_CAN_UUID_STRLEN];
    st_can_uuid_format(u, s);
    st_deadline d = st_deadline_in_ms(timeout_ms);
    int rc = listen_resp(l, err);
    if (rc < 0)
        return rc;
    if (flags & ST_CANADMIN_ASSIGN_REQUEST_BOOTLOADER) {
        rc = st_canadmin_request_bootloader(l, u, err);
        if (rc < 0)
            return rc;
    }
    if (flags & ST_CANADMIN_ASSIGN_CLEAR_FIRST) {
        rc = st_canadmin_clear_nodeids(l, err);
        if (rc < 0)
            return rc;
    }
    st_canadmin_node last = { .has_app = false };
    bool seen = false;
    for (;;) {
        st_can_frame f;
        st_canadmin_encode_query(&f);
        rc = admin_send(l, &f, "send QUERY_UNASSIGNED", err);
        if (rc < 0)
            return rc;
        st_deadline round = st_deadline_in_ms(ST_CANADMIN_REQUERY_MS);
        if (round.at_us > d.at_us)
            round = d;
        for (;;) {
            int left = st_deadline_remaining_ms(round);
            if (left == 0)
                break;
            rc = st_can_recv(l, &f, (unsigned)left, err);
            if (rc < 0)
                return st_err_wrap(err, rc, "can admin: wait for %s", s);
            if (rc == 0)
                break;
            st_canadmin_node n;
            if (!st_canadmin_decode_need_nodeid(&f, &n) || !st_can_uuid_equal(&n.uuid, u))
                continue;
            last = n;
            seen = true;
            if (n.has_app && n.app == ST_CANADMIN_APP_KATAPULT)
                return st_canadmin_set_nodeid(l, ST_CANADMIN_SET_CANBOOT_NODEID, u, nodeid, err);
            if ((flags & ST_CANADMIN_ASSIGN_REQUEST_BOOTLOADER) && n.has_app &&
                n.app == ST_CANADMIN_APP_KLIPPER) {
                rc = st_canadmin_request_bootloader(l, u, err);
                if (rc < 0)
                    return rc;
            }
        }
        if (st_deadline_passed(d))
            break;
    }
    if (!seen)
        return st_err_set(err, ST_ERR_NOTFOUND,
                          "can admin: node %s did not answer as Katapult within %u ms (not on "
                          "the bus, wrong bitrate, or already holding a node id)",
                          s, timeout_ms);
    char app[32];
    return st_err_set(err, ST_ERR_NOTFOUND,
                      "can admin: node %s still answers as %s, not Katapult, after %u ms", s,
                      st_canadmin_app_name(&last, app, sizeof app), timeout_ms);
}
