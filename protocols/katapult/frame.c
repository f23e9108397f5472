/* Katapult framing: CRC, encoder and the state-free frame finder (see frame.h). */
#include "protocols/katapult/frame.h"

#include <string.h>

const char *st_kat_code_name(uint8_t code)
{
    switch (code) {
    case ST_KAT_CMD_CONNECT: return "CONNECT";
    case ST_KAT_CMD_SEND_BLOCK: return "SEND_BLOCK";
    case ST_KAT_CMD_SEND_EOF: return "SEND_EOF";
    case ST_KAT_CMD_REQUEST_BLOCK: return "REQUEST_BLOCK";
    case ST_KAT_CMD_COMPLETE: return "COMPLETE";
    case ST_KAT_CMD_GET_CANBUS_ID: return "GET_CANBUS_ID";
    case ST_KAT_CMD_PRIME: return "PRIME";
    case ST_KAT_RSP_ACK: return "ACK";
    case ST_KAT_RSP_NACK: return "NACK";
    case ST_KAT_RSP_ERROR: return "COMMAND ERROR";
    case ST_KAT_RSP_BUSY: return "BUSY";
    default: return "UNKNOWN";
    }
}

uint16_t st_kat_crc16_update(uint16_t crc, const uint8_t *buf, size_t n)
{
    /* Byte-wise form of Klipper's crc16_ccitt (reference §2.1). */
    for (size_t i = 0; i < n; i++) {
        uint8_t d = (uint8_t)(buf[i] ^ (crc & 0xff));
        d ^= (uint8_t)(d << 4);
        crc = (uint16_t)((((uint16_t)d << 8) | (crc >> 8)) ^ (uint8_t)(d >> 4) ^
                         ((uint16_t)d << 3));
    }
    return crc;
}

uint16_t st_kat_crc16(const uint8_t *buf, size_t n)
{
    return st_kat_crc16_update(0xFFFF, buf, n);
}

size_t st_kat_frame_encode(uint8_t code, const void *payload, size_t payload_len, uint8_t *out,
                           size_t cap)
{
    if (payload_len % 4 || payload_len > 255 * 4 || cap < payload_len + ST_KAT_FRAME_OVERHEAD)
        return 0;
    out[0] = ST_KAT_STX1;
    out[1] = ST_KAT_STX2;
    out[2] = code;
    out[3] = (uint8_t)(payload_len / 4);
    if (payload_len)
        memcpy(out + 4, payload, payload_len);
    uint16_t crc = st_kat_crc16(out + 2, payload_len + 2);
    out[4 + payload_len] = (uint8_t)crc;
    out[5 + payload_len] = (uint8_t)(crc >> 8);
    out[6 + payload_len] = ST_KAT_ETX1;
    out[7 + payload_len] = ST_KAT_ETX2;
    return payload_len + ST_KAT_FRAME_OVERHEAD;
}

static st_kat_check drop(const uint8_t *buf, size_t n, st_kat_drop_reason why)
{
    /* Resync on the next possible header byte. Starting the search at buf[1] (not buf[0],
     * as Katapult's command_find_block does) guarantees progress on a bad frame that itself
     * starts with 0x01. */
    const uint8_t *next = n > 1 ? memchr(buf + 1, ST_KAT_STX1, n - 1) : NULL;
    st_kat_check c = {ST_KAT_DROP, next ? (size_t)(next - buf) : n, why};
    return c;
}

st_kat_check st_kat_frame_check(const uint8_t *buf, size_t n, size_t max_frame)
{
    st_kat_check more = {ST_KAT_NEED_MORE, 0, ST_KAT_DROP_NONE};
    if (n == 0)
        return more;
    if (buf[0] != ST_KAT_STX1 || (n >= 2 && buf[1] != ST_KAT_STX2))
        return drop(buf, n, ST_KAT_DROP_HEADER);
    if (n < 4)
        return more;
    size_t len = (size_t)buf[3] * 4 + ST_KAT_FRAME_OVERHEAD;
    if (len > max_frame)
        return drop(buf, n, ST_KAT_DROP_LENGTH);
    if (n < len)
        return more;
    if (buf[len - 2] != ST_KAT_ETX1 || buf[len - 1] != ST_KAT_ETX2)
        return drop(buf, n, ST_KAT_DROP_TRAILER);
    uint16_t got = (uint16_t)(buf[len - 4] | buf[len - 3] << 8);
    if (st_kat_crc16(buf + 2, len - 6) != got)
        return drop(buf, n, ST_KAT_DROP_CRC);
    st_kat_check c = {ST_KAT_FRAME, len, ST_KAT_DROP_NONE};
    return c;
}
