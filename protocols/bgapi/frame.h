/* Silicon Labs BGAPI framing (PROTOCOL.md §1-§3): header encode/decode, the DFU-class and
 * system-class messages the UART DFU uses, result-code names of both bootloader
 * generations, and an incremental, state-free frame finder shared by the host engine and
 * the device model. */
#ifndef STATION_PROTOCOLS_BGAPI_FRAME_H
#define STATION_PROTOCOLS_BGAPI_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ST_BGAPI_HDR_LEN 4
#define ST_BGAPI_EVENT_BIT 0x80    /* byte 0 bit 7: 1 = event, 0 = command/response */
#define ST_BGAPI_TECH_MASK 0x78    /* byte 0 bits 6..3: technology type */
#define ST_BGAPI_TECH_BT 0x20      /* 0b0100 << 3: Bluetooth */
#define ST_BGAPI_MAX_PAYLOAD 2047  /* 11-bit length field */
#define ST_BGAPI_DFU_MAX_PAYLOAD 255 /* what the bootloader's one-byte length takes */
#define ST_BGAPI_CHUNK_MAX 252     /* largest upload chunk that is a multiple of 4 */
#define ST_BGAPI_FRAME_MAX (ST_BGAPI_HDR_LEN + ST_BGAPI_MAX_PAYLOAD)

enum st_bgapi_class {
    ST_BGAPI_CLASS_DFU = 0x00,
    ST_BGAPI_CLASS_SYSTEM = 0x01,
};

/* Message IDs within a class (commands and their responses share the ID). */
enum st_bgapi_msg {
    ST_BGAPI_DFU_RESET = 0x00,          /* cmd, no response */
    ST_BGAPI_DFU_SET_ADDRESS = 0x01,    /* cmd/rsp */
    ST_BGAPI_DFU_UPLOAD = 0x02,         /* cmd/rsp */
    ST_BGAPI_DFU_UPLOAD_FINISH = 0x03,  /* cmd/rsp */
    ST_BGAPI_EVT_DFU_BOOT = 0x00,       /* evt, class DFU */
    ST_BGAPI_EVT_DFU_BOOT_FAILURE = 0x01, /* evt, class DFU */
    ST_BGAPI_SYSTEM_RESET = 0x01,       /* cmd, class system, no response */
    ST_BGAPI_EVT_SYSTEM_BOOT = 0x00,    /* evt, class system */
};

/* The `dfu` argument of dfu_reset / system_reset. */
enum st_bgapi_boot_mode {
    ST_BGAPI_BOOT_NORMAL = 0,
    ST_BGAPI_BOOT_UART_DFU = 1,
    ST_BGAPI_BOOT_OTA_DFU = 2,
};

typedef struct st_bgapi_hdr {
    bool event;
    uint8_t tech;   /* byte 0 & 0x78 */
    uint16_t len;   /* payload bytes */
    uint8_t cls;
    uint8_t id;
} st_bgapi_hdr;

/* Encode a message: header + payload. Returns the frame length, or 0 when len is over
 * ST_BGAPI_MAX_PAYLOAD or cap is too small. */
size_t st_bgapi_encode(bool event, uint8_t cls, uint8_t id, const void *payload, size_t len,
                       uint8_t *out, size_t cap);
/* Decode the 4 header bytes (no checks beyond splitting the fields). */
void st_bgapi_hdr_decode(const uint8_t b[ST_BGAPI_HDR_LEN], st_bgapi_hdr *h);

/* Commands the host sends (out needs ST_BGAPI_HDR_LEN + payload bytes). Each returns the
 * frame length, 0 on a bad argument. */
size_t st_bgapi_cmd_dfu_reset(uint8_t mode, uint8_t *out, size_t cap);
size_t st_bgapi_cmd_system_reset(uint8_t mode, uint8_t *out, size_t cap);
size_t st_bgapi_cmd_set_address(uint32_t addr, uint8_t *out, size_t cap);
/* n at most 255 (the u8 length); the host keeps it a multiple of 4 and <= 252. */
size_t st_bgapi_cmd_upload(const uint8_t *data, size_t n, uint8_t *out, size_t cap);
size_t st_bgapi_cmd_upload_finish(uint8_t *out, size_t cap);

/* What the frame finder does with bytes it is shown. */
typedef struct st_bgapi_rules {
    size_t max_payload; /* longer frames are dropped (0 = ST_BGAPI_MAX_PAYLOAD) */
    /* Device side: the bootloader takes a byte 0 of exactly 0x20 (a command with a
     * one-byte length); everything else is skipped one byte at a time. */
    bool commands_only;
    /* Host side: a known message whose length field is impossible for it (a dfu_boot
     * that is not 4 bytes, a system_boot under 14) is not a frame: resync. */
    bool check_known;
} st_bgapi_rules;

typedef enum st_bgapi_check_kind {
    ST_BGAPI_NEED_MORE = 0, /* a frame may start here; wait for more bytes */
    ST_BGAPI_FRAME = 1,     /* a frame of len bytes starts at buf[0] */
    ST_BGAPI_DROP = 2,      /* discard len bytes (>= 1), then check again */
} st_bgapi_check_kind;

typedef enum st_bgapi_drop_reason {
    ST_BGAPI_DROP_NONE = 0,
    ST_BGAPI_DROP_SYNC,   /* byte 0 does not carry the Bluetooth technology bits */
    ST_BGAPI_DROP_LENGTH, /* payload longer than the rules allow */
    ST_BGAPI_DROP_SHAPE,  /* a known message with a length it never has */
} st_bgapi_drop_reason;

typedef struct st_bgapi_check {
    st_bgapi_check_kind kind;
    size_t len;
    st_bgapi_drop_reason reason;
} st_bgapi_check;

/* Look at buf[0..n) and say what it holds. Owns no state: the caller keeps its buffer and
 * pops len bytes on FRAME or DROP. A drop skips to the next byte that could start a frame
 * under the rules (or all n bytes). rules may be NULL (host defaults, no shape check). */
st_bgapi_check st_bgapi_frame_check(const uint8_t *buf, size_t n, const st_bgapi_rules *rules);
const char *st_bgapi_drop_reason_name(st_bgapi_drop_reason r);

/* A decoded message the DFU host cares about. */
typedef enum st_bgapi_kind {
    ST_BGAPI_MSG_OTHER = 0,       /* a well-formed frame the DFU does not use */
    ST_BGAPI_MSG_RSP_SET_ADDRESS,
    ST_BGAPI_MSG_RSP_UPLOAD,
    ST_BGAPI_MSG_RSP_FINISH,
    ST_BGAPI_MSG_EVT_DFU_BOOT,
    ST_BGAPI_MSG_EVT_DFU_BOOT_FAILURE,
    ST_BGAPI_MSG_EVT_SYSTEM_BOOT,
} st_bgapi_kind;

typedef struct st_bgapi_system_boot {
    uint16_t major, minor, patch, build;
    uint32_t bootloader;
    uint16_t hw;
    uint32_t hash;
    bool has_hash; /* 18-byte form (SDK 2.12 and later); SDK 2.7 sends 14 bytes */
} st_bgapi_system_boot;

typedef struct st_bgapi_msg_info {
    st_bgapi_kind kind;
    st_bgapi_hdr hdr;
    uint16_t result;          /* responses */
    uint32_t version;         /* evt_dfu_boot: bootloader version */
    uint16_t reason;          /* evt_dfu_boot_failure */
    st_bgapi_system_boot boot;/* evt_system_boot */
} st_bgapi_msg_info;

/* Classify a frame that st_bgapi_frame_check accepted (len bytes). A known message that is
 * too short for its fields is ST_BGAPI_MSG_OTHER. */
void st_bgapi_decode(const uint8_t *frame, size_t len, st_bgapi_msg_info *out);

/* Which error space a bootloader answers in. */
typedef enum st_bgapi_gen {
    ST_BGAPI_GEN_UNKNOWN = 0,
    ST_BGAPI_GEN_SDK2 = 1, /* Gecko bootloader up to GSDK 3.2: dfu_reset, bg_err codes */
    ST_BGAPI_GEN_GSDK4 = 2,/* GSDK 4.0 and later: system_reset, sl_status_t codes */
} st_bgapi_gen;
const char *st_bgapi_gen_name(st_bgapi_gen g); /* "gsdk<=3.2" / "gsdk>=4.0" / "unknown" */

/* Name of a result code: "bg_err_security_image_checksum_error",
 * "SL_STATUS_SECURITY_IMAGE_CHECKSUM_ERROR", or for a code not in the tables the name of
 * its space ("bg_errspc_bt code 0x12"). gen UNKNOWN: codes >= 0x100 are read as bg_err,
 * smaller ones as sl_status_t. Writes into buf (cap >= 64 recommended) and returns it. */
const char *st_bgapi_result_name(uint16_t code, st_bgapi_gen gen, char *buf, size_t cap);

/* Little-endian helpers. */
static inline uint16_t st_bgapi_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t st_bgapi_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void st_bgapi_put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void st_bgapi_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

#endif
