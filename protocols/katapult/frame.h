/* Katapult wire framing (PROTOCOL.md §1): CRC-16/MCRF4XX, frame encoder and an incremental,
 * state-free frame finder shared by the host engine and the device model. */
#ifndef STATION_PROTOCOLS_KATAPULT_FRAME_H
#define STATION_PROTOCOLS_KATAPULT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define ST_KAT_STX1 0x01
#define ST_KAT_STX2 0x88
#define ST_KAT_ETX1 0x99
#define ST_KAT_ETX2 0x03
/* Header (4) + CRC (2) + trailer (2). */
#define ST_KAT_FRAME_OVERHEAD 8
#define ST_KAT_FRAME_MIN 8
/* Largest frame the device accepts (MESSAGE_MAX); the device's own answers may be longer. */
#define ST_KAT_DEVICE_FRAME_MAX 128
/* Largest frame LEN (one byte of 32-bit words) can describe: what a host must accept. */
#define ST_KAT_FRAME_MAX (ST_KAT_FRAME_OVERHEAD + 255 * 4)

/* Command and response codes (PROTOCOL.md §2). */
enum st_kat_code {
    ST_KAT_CMD_CONNECT = 0x11,
    ST_KAT_CMD_SEND_BLOCK = 0x12,
    ST_KAT_CMD_SEND_EOF = 0x13,
    ST_KAT_CMD_REQUEST_BLOCK = 0x14,
    ST_KAT_CMD_COMPLETE = 0x15,
    ST_KAT_CMD_GET_CANBUS_ID = 0x16,
    ST_KAT_CMD_PRIME = 0x90, /* deliberately invalid; primes STM32 double-buffered USB */
    ST_KAT_RSP_ACK = 0xA0,
    ST_KAT_RSP_NACK = 0xF1,
    ST_KAT_RSP_ERROR = 0xF2,
    ST_KAT_RSP_BUSY = 0xF3,
};

/* Name of a command/response code ("CONNECT", "ACK", ...; "0x%02x"-style "UNKNOWN"). */
const char *st_kat_code_name(uint8_t code);

/* CRC-16/MCRF4XX (Klipper's crc16_ccitt): init 0xFFFF, reflected 0x1021, no final XOR.
 * Pass 0xFFFF as crc to start; the result can be fed back to continue. */
uint16_t st_kat_crc16_update(uint16_t crc, const uint8_t *buf, size_t n);
uint16_t st_kat_crc16(const uint8_t *buf, size_t n);

/* Encode one frame. payload_len must be a multiple of 4 and at most 1020. Returns the frame
 * length (payload_len + 8), or 0 when payload_len is invalid or cap is too small. */
size_t st_kat_frame_encode(uint8_t code, const void *payload, size_t payload_len, uint8_t *out,
                           size_t cap);

/* What st_kat_frame_check found at the start of a buffer. */
typedef enum st_kat_check_kind {
    ST_KAT_NEED_MORE = 0, /* a frame may start here; wait for more bytes */
    ST_KAT_FRAME = 1,     /* a valid frame of len bytes starts at buf[0] */
    ST_KAT_DROP = 2,      /* discard len bytes (>= 1), then check again */
} st_kat_check_kind;

/* Why bytes are dropped (for logs and the device's NACK decision). */
typedef enum st_kat_drop_reason {
    ST_KAT_DROP_NONE = 0,
    ST_KAT_DROP_HEADER,  /* not 01 88 */
    ST_KAT_DROP_LENGTH,  /* LEN gives a frame larger than max_frame */
    ST_KAT_DROP_TRAILER, /* not 99 03 where the trailer belongs */
    ST_KAT_DROP_CRC,     /* CRC mismatch */
} st_kat_drop_reason;

typedef struct st_kat_check {
    st_kat_check_kind kind;
    size_t len;
    st_kat_drop_reason reason;
} st_kat_check;

/* Look at buf[0..n) and say what it holds. Owns no state (PROTOCOL.md §1.3): the caller
 * keeps its buffer, pops `len` bytes on FRAME or DROP, and keeps any resync flags itself.
 * A drop skips to the next 0x01 after buf[0] (or all n bytes). max_frame bounds the frame
 * length (ST_KAT_DEVICE_FRAME_MAX on the device, ST_KAT_FRAME_MAX on the host). */
st_kat_check st_kat_frame_check(const uint8_t *buf, size_t n, size_t max_frame);

/* Accessors for a frame that st_kat_frame_check accepted. */
static inline uint8_t st_kat_frame_code(const uint8_t *frame) { return frame[2]; }
static inline size_t st_kat_frame_payload_len(const uint8_t *frame) { return (size_t)frame[3] * 4; }
static inline const uint8_t *st_kat_frame_payload(const uint8_t *frame) { return frame + 4; }

/* Little-endian helpers for payload words. */
static inline uint32_t st_kat_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void st_kat_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

#endif
