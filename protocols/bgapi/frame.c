/* BGAPI framing: header, DFU/system messages, result names and the state-free frame finder
 * (see frame.h; wire facts from reference §5.1, §5.2 and §5.5). */
#include "protocols/bgapi/frame.h"

#include <stdio.h>
#include <string.h>

size_t st_bgapi_encode(bool event, uint8_t cls, uint8_t id, const void *payload, size_t len,
                       uint8_t *out, size_t cap)
{
    if (len > ST_BGAPI_MAX_PAYLOAD || cap < ST_BGAPI_HDR_LEN + len)
        return 0;
    out[0] = (uint8_t)((event ? ST_BGAPI_EVENT_BIT : 0) | ST_BGAPI_TECH_BT | (len >> 8));
    out[1] = (uint8_t)len;
    out[2] = cls;
    out[3] = id;
    if (len)
        memcpy(out + ST_BGAPI_HDR_LEN, payload, len);
    return ST_BGAPI_HDR_LEN + len;
}

void st_bgapi_hdr_decode(const uint8_t b[ST_BGAPI_HDR_LEN], st_bgapi_hdr *h)
{
    h->event = (b[0] & ST_BGAPI_EVENT_BIT) != 0;
    h->tech = b[0] & ST_BGAPI_TECH_MASK;
    h->len = (uint16_t)((b[0] & 7) << 8 | b[1]);
    h->cls = b[2];
    h->id = b[3];
}

size_t st_bgapi_cmd_dfu_reset(uint8_t mode, uint8_t *out, size_t cap)
{
    return st_bgapi_encode(false, ST_BGAPI_CLASS_DFU, ST_BGAPI_DFU_RESET, &mode, 1, out, cap);
}

size_t st_bgapi_cmd_system_reset(uint8_t mode, uint8_t *out, size_t cap)
{
    return st_bgapi_encode(false, ST_BGAPI_CLASS_SYSTEM, ST_BGAPI_SYSTEM_RESET, &mode, 1, out,
                           cap);
}

size_t st_bgapi_cmd_set_address(uint32_t addr, uint8_t *out, size_t cap)
{
    uint8_t p[4];
    st_bgapi_put_le32(p, addr);
    return st_bgapi_encode(false, ST_BGAPI_CLASS_DFU, ST_BGAPI_DFU_SET_ADDRESS, p, 4, out, cap);
}

size_t st_bgapi_cmd_upload(const uint8_t *data, size_t n, uint8_t *out, size_t cap)
{
    /* The payload is a uint8array: one length byte, then the bytes. */
    uint8_t p[1 + 255];
    if (n > 255)
        return 0;
    p[0] = (uint8_t)n;
    if (n)
        memcpy(p + 1, data, n);
    return st_bgapi_encode(false, ST_BGAPI_CLASS_DFU, ST_BGAPI_DFU_UPLOAD, p, 1 + n, out, cap);
}

size_t st_bgapi_cmd_upload_finish(uint8_t *out, size_t cap)
{
    return st_bgapi_encode(false, ST_BGAPI_CLASS_DFU, ST_BGAPI_DFU_UPLOAD_FINISH, NULL, 0, out,
                           cap);
}

const char *st_bgapi_drop_reason_name(st_bgapi_drop_reason r)
{
    switch (r) {
    case ST_BGAPI_DROP_NONE: return "none";
    case ST_BGAPI_DROP_SYNC: return "no BGAPI header";
    case ST_BGAPI_DROP_LENGTH: return "length beyond limit";
    case ST_BGAPI_DROP_SHAPE: return "known message with impossible length";
    }
    return "?";
}

static bool can_start(uint8_t b, const st_bgapi_rules *r)
{
    if (r && r->commands_only)
        return b == ST_BGAPI_TECH_BT;
    return (b & ST_BGAPI_TECH_MASK) == ST_BGAPI_TECH_BT;
}

static st_bgapi_check drop(const uint8_t *buf, size_t n, const st_bgapi_rules *r,
                           st_bgapi_drop_reason why)
{
    /* Skip at least one byte so a bad header that looks like a start makes progress. */
    size_t i = 1;
    while (i < n && !can_start(buf[i], r))
        i++;
    st_bgapi_check c = {ST_BGAPI_DROP, i, why};
    return c;
}

/* Whether a message the DFU host knows has a length it can have (messages it does not
 * know always pass: a running NCP sends many others). */
static bool shape_ok(const st_bgapi_hdr *h)
{
    if (h->cls == ST_BGAPI_CLASS_DFU && !h->event) {
        if (h->id == ST_BGAPI_DFU_SET_ADDRESS || h->id == ST_BGAPI_DFU_UPLOAD ||
            h->id == ST_BGAPI_DFU_UPLOAD_FINISH)
            return h->len == 2;
        return true;
    }
    if (h->cls == ST_BGAPI_CLASS_DFU && h->event) {
        if (h->id == ST_BGAPI_EVT_DFU_BOOT)
            return h->len == 4;
        if (h->id == ST_BGAPI_EVT_DFU_BOOT_FAILURE)
            return h->len == 2;
        return true;
    }
    if (h->cls == ST_BGAPI_CLASS_SYSTEM && h->event && h->id == ST_BGAPI_EVT_SYSTEM_BOOT)
        return h->len >= 14 && h->len <= 32; /* 14 (SDK 2.7) or 18; room for growth */
    return true;
}

st_bgapi_check st_bgapi_frame_check(const uint8_t *buf, size_t n, const st_bgapi_rules *rules)
{
    st_bgapi_check more = {ST_BGAPI_NEED_MORE, 0, ST_BGAPI_DROP_NONE};
    if (n == 0)
        return more;
    if (!can_start(buf[0], rules))
        return drop(buf, n, rules, ST_BGAPI_DROP_SYNC);
    if (n < ST_BGAPI_HDR_LEN)
        return more;
    st_bgapi_hdr h;
    st_bgapi_hdr_decode(buf, &h);
    size_t max = rules && rules->max_payload ? rules->max_payload : ST_BGAPI_MAX_PAYLOAD;
    if (h.len > max)
        return drop(buf, n, rules, ST_BGAPI_DROP_LENGTH);
    if (rules && rules->check_known && !shape_ok(&h))
        return drop(buf, n, rules, ST_BGAPI_DROP_SHAPE);
    if (n < ST_BGAPI_HDR_LEN + (size_t)h.len)
        return more;
    st_bgapi_check c = {ST_BGAPI_FRAME, ST_BGAPI_HDR_LEN + (size_t)h.len, ST_BGAPI_DROP_NONE};
    return c;
}

void st_bgapi_decode(const uint8_t *frame, size_t len, st_bgapi_msg_info *out)
{
    memset(out, 0, sizeof *out);
    if (len < ST_BGAPI_HDR_LEN)
        return;
    st_bgapi_hdr_decode(frame, &out->hdr);
    const st_bgapi_hdr *h = &out->hdr;
    const uint8_t *p = frame + ST_BGAPI_HDR_LEN;
    size_t pl = len - ST_BGAPI_HDR_LEN;
    if (h->len != pl || h->tech != ST_BGAPI_TECH_BT)
        return;
    if (h->cls == ST_BGAPI_CLASS_DFU && !h->event && pl == 2) {
        out->result = st_bgapi_le16(p);
        if (h->id == ST_BGAPI_DFU_SET_ADDRESS)
            out->kind = ST_BGAPI_MSG_RSP_SET_ADDRESS;
        else if (h->id == ST_BGAPI_DFU_UPLOAD)
            out->kind = ST_BGAPI_MSG_RSP_UPLOAD;
        else if (h->id == ST_BGAPI_DFU_UPLOAD_FINISH)
            out->kind = ST_BGAPI_MSG_RSP_FINISH;
    } else if (h->cls == ST_BGAPI_CLASS_DFU && h->event) {
        if (h->id == ST_BGAPI_EVT_DFU_BOOT && pl == 4) {
            out->kind = ST_BGAPI_MSG_EVT_DFU_BOOT;
            out->version = st_bgapi_le32(p);
        } else if (h->id == ST_BGAPI_EVT_DFU_BOOT_FAILURE && pl == 2) {
            out->kind = ST_BGAPI_MSG_EVT_DFU_BOOT_FAILURE;
            out->reason = st_bgapi_le16(p);
        }
    } else if (h->cls == ST_BGAPI_CLASS_SYSTEM && h->event && h->id == ST_BGAPI_EVT_SYSTEM_BOOT &&
               pl >= 14) {
        /* By the length field (reference §5.5): 14 bytes without hash, 18 with. */
        st_bgapi_system_boot *b = &out->boot;
        out->kind = ST_BGAPI_MSG_EVT_SYSTEM_BOOT;
        b->major = st_bgapi_le16(p);
        b->minor = st_bgapi_le16(p + 2);
        b->patch = st_bgapi_le16(p + 4);
        b->build = st_bgapi_le16(p + 6);
        b->bootloader = st_bgapi_le32(p + 8);
        b->hw = st_bgapi_le16(p + 12);
        if (pl >= 18) {
            b->hash = st_bgapi_le32(p + 14);
            b->has_hash = true;
        }
    }
}

const char *st_bgapi_gen_name(st_bgapi_gen g)
{
    switch (g) {
    case ST_BGAPI_GEN_SDK2: return "gsdk<=3.2";
    case ST_BGAPI_GEN_GSDK4: return "gsdk>=4.0";
    default: return "unknown";
    }
}

typedef struct code_name {
    uint16_t code;
    const char *name;
} code_name;

/* bg_errorcodes.h of Bluetooth SDK 2.x (the error space of bootloaders up to GSDK 3.2). */
static const code_name bg_errs[] = {
    {0x0000, "bg_err_success"},
    {0x0101, "bg_err_invalid_conn_handle"},
    {0x0102, "bg_err_waiting_response"},
    {0x0103, "bg_err_gatt_connection_timeout"},
    {0x0180, "bg_err_invalid_param"},
    {0x0181, "bg_err_wrong_state"},
    {0x0182, "bg_err_out_of_memory"},
    {0x0183, "bg_err_not_implemented"},
    {0x0184, "bg_err_invalid_command"},
    {0x0185, "bg_err_timeout"},
    {0x0186, "bg_err_not_connected"},
    {0x0187, "bg_err_flow"},
    {0x0188, "bg_err_user_attribute"},
    {0x0189, "bg_err_invalid_license_key"},
    {0x018a, "bg_err_command_too_long"},
    {0x018b, "bg_err_out_of_bonds"},
    {0x018c, "bg_err_unspecified"},
    {0x018d, "bg_err_hardware"},
    {0x018e, "bg_err_buffers_full"},
    {0x018f, "bg_err_disconnected"},
    {0x0190, "bg_err_too_many_requests"},
    {0x0191, "bg_err_not_supported"},
    {0x0192, "bg_err_no_bonding"},
    {0x0193, "bg_err_crypto"},
    {0x0501, "bg_err_hardware_ps_store_full"},
    {0x0502, "bg_err_hardware_ps_key_not_found"},
    {0x0503, "bg_err_hardware_i2c_ack_missing"},
    {0x0504, "bg_err_hardware_i2c_timeout"},
    {0x0901, "bg_err_filesystem_file_not_found"},
    {0x0b01, "bg_err_security_image_signature_verification_failed"},
    {0x0b02, "bg_err_security_file_signature_verification_failed"},
    {0x0b03, "bg_err_security_image_checksum_error"},
};

static const code_name bg_spaces[] = {
    {0x0100, "bg_errspc_bg"},         {0x0200, "bg_errspc_bt"},
    {0x0300, "bg_errspc_smp"},        {0x0400, "bg_errspc_att"},
    {0x0500, "bg_errspc_hardware"},   {0x0600, "bg_errspc_sdp"},
    {0x0900, "bg_errspc_filesystem"}, {0x0a00, "bg_errspc_application"},
    {0x0b00, "bg_errspc_security"},   {0x0c00, "bg_errspc_mesh"},
    {0x0d00, "bg_errspc_l2cap"},      {0x0e00, "bg_errspc_mesh_foundation"},
};

/* sl_status.h generic space (GSDK 4.x bootloaders answer these). */
static const char *const sl_generic[] = {
    "SL_STATUS_OK", "SL_STATUS_FAIL", "SL_STATUS_INVALID_STATE", "SL_STATUS_NOT_READY",
    "SL_STATUS_BUSY", "SL_STATUS_IN_PROGRESS", "SL_STATUS_ABORT", "SL_STATUS_TIMEOUT",
    "SL_STATUS_PERMISSION", "SL_STATUS_WOULD_BLOCK", "SL_STATUS_IDLE", "SL_STATUS_IS_WAITING",
    "SL_STATUS_NONE_WAITING", "SL_STATUS_SUSPENDED", "SL_STATUS_NOT_AVAILABLE",
    "SL_STATUS_NOT_SUPPORTED", "SL_STATUS_INITIALIZATION", "SL_STATUS_NOT_INITIALIZED",
    "SL_STATUS_ALREADY_INITIALIZED", "SL_STATUS_DELETED", "SL_STATUS_ISR",
    "SL_STATUS_NETWORK_UP", "SL_STATUS_NETWORK_DOWN", "SL_STATUS_NOT_JOINED",
    "SL_STATUS_NO_BEACONS", "SL_STATUS_ALLOCATION_FAILED", "SL_STATUS_NO_MORE_RESOURCE",
    "SL_STATUS_EMPTY", "SL_STATUS_FULL", "SL_STATUS_WOULD_OVERFLOW", "SL_STATUS_HAS_OVERFLOWED",
    "SL_STATUS_OWNERSHIP", "SL_STATUS_IS_OWNER", "SL_STATUS_INVALID_PARAMETER",
    "SL_STATUS_NULL_POINTER", "SL_STATUS_INVALID_CONFIGURATION", "SL_STATUS_INVALID_MODE",
    "SL_STATUS_INVALID_HANDLE", "SL_STATUS_INVALID_TYPE", "SL_STATUS_INVALID_INDEX",
    "SL_STATUS_INVALID_RANGE", "SL_STATUS_INVALID_KEY", "SL_STATUS_INVALID_CREDENTIALS",
    "SL_STATUS_INVALID_COUNT", "SL_STATUS_INVALID_SIGNATURE", "SL_STATUS_NOT_FOUND",
    "SL_STATUS_ALREADY_EXISTS", "SL_STATUS_IO", "SL_STATUS_IO_TIMEOUT", "SL_STATUS_TRANSMIT",
    "SL_STATUS_TRANSMIT_UNDERFLOW", "SL_STATUS_TRANSMIT_INCOMPLETE", "SL_STATUS_TRANSMIT_BUSY",
    "SL_STATUS_RECEIVE", "SL_STATUS_OBJECT_READ", "SL_STATUS_OBJECT_WRITE",
    "SL_STATUS_MESSAGE_TOO_LONG", "SL_STATUS_EEPROM_MFG_VERSION_MISMATCH",
    "SL_STATUS_EEPROM_STACK_VERSION_MISMATCH", "SL_STATUS_FLASH_WRITE_INHIBITED",
    "SL_STATUS_FLASH_VERIFY_FAILED", "SL_STATUS_FLASH_PROGRAM_FAILED",
    "SL_STATUS_FLASH_ERASE_FAILED", "SL_STATUS_MAC_NO_DATA", "SL_STATUS_MAC_NO_ACK_RECEIVED",
    "SL_STATUS_MAC_INDIRECT_TIMEOUT", "SL_STATUS_MAC_UNKNOWN_HEADER_TYPE",
    "SL_STATUS_MAC_ACK_HEADER_TYPE", "SL_STATUS_MAC_COMMAND_TRANSMIT_FAILURE",
    "SL_STATUS_CLI_STORAGE_NVM_OPEN_ERROR", "SL_STATUS_SECURITY_IMAGE_CHECKSUM_ERROR",
    "SL_STATUS_SECURITY_DECRYPT_ERROR", "SL_STATUS_COMMAND_IS_INVALID",
    "SL_STATUS_COMMAND_TOO_LONG", "SL_STATUS_COMMAND_INCOMPLETE", "SL_STATUS_BUS_ERROR",
};

const char *st_bgapi_result_name(uint16_t code, st_bgapi_gen gen, char *buf, size_t cap)
{
    if (gen == ST_BGAPI_GEN_UNKNOWN)
        gen = code >= 0x100 ? ST_BGAPI_GEN_SDK2 : ST_BGAPI_GEN_GSDK4;
    if (gen == ST_BGAPI_GEN_SDK2) {
        for (size_t i = 0; i < sizeof bg_errs / sizeof bg_errs[0]; i++)
            if (bg_errs[i].code == code) {
                snprintf(buf, cap, "%s", bg_errs[i].name);
                return buf;
            }
        for (size_t i = 0; i < sizeof bg_spaces / sizeof bg_spaces[0]; i++)
            if (bg_spaces[i].code == (code & 0xff00)) {
                snprintf(buf, cap, "%s code 0x%02x", bg_spaces[i].name, code & 0xff);
                return buf;
            }
        snprintf(buf, cap, "not a bg_err code");
        return buf;
    }
    if (code < sizeof sl_generic / sizeof sl_generic[0])
        snprintf(buf, cap, "%s", sl_generic[code]);
    else
        snprintf(buf, cap, "sl_status_t space 0x%02x00 code 0x%02x", code >> 8, code & 0xff);
    return buf;
}
