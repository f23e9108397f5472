/* Klipper host <-> MCU message protocol without any I/O (PROTOCOL.md): message blocks
 * (length, sequence, CRC, sync) with an incremental, state-free block finder; VLQ integers;
 * the data dictionary (zlib + JSON, parsed with json-c); and messages encoded and decoded
 * by the dictionary's format strings, never by fixed ids. Shared by the host engine
 * (klipper.h) and the device model (klipper_model.h). Everything here reads untrusted
 * bytes from a unit or an image safely. */
#ifndef STATION_PROTOCOLS_KLIPPER_MSGPROTO_H
#define STATION_PROTOCOLS_KLIPPER_MSGPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "station/core/err.h"

/* ---- message blocks (PROTOCOL.md 1) ----------------------------------------------------- */

#define ST_KLP_BLOCK_MIN 5
#define ST_KLP_BLOCK_MAX 64
#define ST_KLP_CONTENT_MAX (ST_KLP_BLOCK_MAX - ST_KLP_BLOCK_MIN) /* 59 */
#define ST_KLP_SYNC 0x7E
#define ST_KLP_SEQ_DEST 0x10 /* high nibble of the SEQ byte */

/* CRC-16/MCRF4XX, the function Katapult uses too (Klipper stores it high byte first). */
uint16_t st_klp_crc16(const uint8_t *buf, size_t n);

/* Encode one block: LEN, SEQ = 0x10 | (seq & 15), content, CRC (high byte first), 0x7E.
 * Returns the block length (n + 5), or 0 when n > ST_KLP_CONTENT_MAX. out needs n + 5. */
size_t st_klp_block_encode(uint8_t seq, const uint8_t *content, size_t n, uint8_t *out);

typedef enum st_klp_check_kind {
    ST_KLP_NEED_MORE = 0, /* wait for more bytes */
    ST_KLP_BLOCK = 1,     /* a valid block of len bytes starts at buf[0] */
    ST_KLP_DROP = 2,      /* discard len bytes (>= 1), then check again */
} st_klp_check_kind;

typedef enum st_klp_drop_reason {
    ST_KLP_DROP_NONE = 0,
    ST_KLP_DROP_SYNC,    /* discarding up to a 0x7E after an invalid block */
    ST_KLP_DROP_STRAY,   /* a lone leading 0x7E (a sender's extra sync byte): not an error */
    ST_KLP_DROP_LENGTH,  /* LEN outside 5..64 */
    ST_KLP_DROP_SEQ,     /* SEQ high nibble is not 1 */
    ST_KLP_DROP_TRAILER, /* no 0x7E where the block ends */
    ST_KLP_DROP_CRC,     /* CRC mismatch */
} st_klp_drop_reason;

typedef struct st_klp_check {
    st_klp_check_kind kind;
    size_t len;
    st_klp_drop_reason reason;
} st_klp_check;

/* Look at buf[0..n) (Klipper's msgblock_check). Owns no state: the caller keeps its buffer
 * and *need_sync (start with false), pops len bytes on BLOCK or DROP and calls again. After
 * an invalid block *need_sync is set and bytes are dropped through the next 0x7E (a drop of
 * all n bytes when there is none: *need_sync stays set). Any buffer is safe to pass. */
st_klp_check st_klp_block_check(bool *need_sync, const uint8_t *buf, size_t n);

static inline uint8_t st_klp_block_seq(const uint8_t *block) { return block[1] & 0x0F; }
static inline const uint8_t *st_klp_block_content(const uint8_t *block) { return block + 2; }
static inline size_t st_klp_block_content_len(const uint8_t *block) { return (size_t)block[0] - 5; }

/* ---- VLQ integers (PROTOCOL.md 2) -------------------------------------------------------- */

#define ST_KLP_VLQ_MAX 5

/* MCU-style shortest encoding of v taken as 32 bits (unsigned values >= 2^31 count as
 * negative). Returns the length (1..5). */
size_t st_klp_vlq_encode(uint32_t v, uint8_t *out);
/* Decode one VLQ from buf[0..n): returns the bytes used (1..5) with *v the value modulo
 * 2^32 (cast to int32_t for %i/%hi), 0 when buf ends inside it, or -1 when it runs past 5
 * bytes (no valid encoding does). */
int st_klp_vlq_decode(const uint8_t *buf, size_t n, uint32_t *v);

/* ---- dictionary (PROTOCOL.md 4) ---------------------------------------------------------- */

typedef enum st_klp_ptype {
    ST_KLP_P_U32,     /* %u */
    ST_KLP_P_I32,     /* %i */
    ST_KLP_P_U16,     /* %hu */
    ST_KLP_P_I16,     /* %hi */
    ST_KLP_P_BYTE,    /* %c */
    ST_KLP_P_STRING,  /* %s (MCU -> host) */
    ST_KLP_P_PROGMEM, /* %.*s (MCU -> host) */
    ST_KLP_P_BUFFER,  /* %*s */
} st_klp_ptype;

static inline bool st_klp_ptype_is_bytes(st_klp_ptype t) { return t >= ST_KLP_P_STRING; }

typedef struct st_klp_param {
    char *name;
    st_klp_ptype type;
} st_klp_param;

#define ST_KLP_MAX_PARAMS 16

/* One message of the dictionary: "name p1=%u p2=%*s" with its wire id. */
typedef struct st_klp_msg {
    char *format;   /* as in the dictionary */
    char *name;     /* first word */
    int32_t id;     /* the dictionary's value (wire bytes 0x60..0x7F read as -32..-1) */
    bool response;  /* from "responses"/"output" (MCU -> host), else "commands" */
    size_t n_params;
    st_klp_param params[ST_KLP_MAX_PARAMS];
} st_klp_msg;

typedef struct st_klp_dict st_klp_dict;

/* Dictionary limits: what a unit may send. */
#define ST_KLP_DICT_ZMAX (256u * 1024u)      /* compressed bytes */
#define ST_KLP_DICT_JSON_MAX (1024u * 1024u) /* inflated bytes */

/* Parse JSON text (len bytes, not necessarily NUL-terminated). Needs "version" (string),
 * "config" with CLOCK_FREQ, "commands" and "responses" objects; every format string must
 * parse. identify (1) and identify_response (0) are added when absent. ST_ERR_PROTO with
 * the key and cause on bad input. Free with st_klp_dict_free. */
int st_klp_dict_parse(const char *json, size_t len, st_klp_dict **out, st_err *err);
/* Inflate a zlib stream (RFC 1950, as identify delivers it) and parse it. *used (may be
 * NULL) gets the compressed length the stream really took (trailing bytes are allowed:
 * an image holds more after it). */
int st_klp_dict_from_zlib(const uint8_t *z, size_t n, size_t *used, st_klp_dict **out,
                          st_err *err);
void st_klp_dict_free(st_klp_dict *d);

/* Find the data dictionary a firmware image embeds: the first zlib stream in data[0..n)
 * that inflates to a valid dictionary. 0 with *out (free it), *off (file offset) and *zlen
 * (compressed bytes, what identify serves); ST_ERR_NOTFOUND when the image holds none. */
int st_klp_image_dict(const uint8_t *data, size_t n, size_t *off, size_t *zlen,
                      st_klp_dict **out, st_err *err);

/* Untrusted strings as the unit gave them (printable-filter before showing them). */
const char *st_klp_dict_version(const st_klp_dict *d);
const char *st_klp_dict_build_versions(const st_klp_dict *d); /* "" when absent */
/* A config constant: is_int says which of ival or sval is valid. ST_ERR_NOTFOUND if absent. */
int st_klp_dict_config(const st_klp_dict *d, const char *name, bool *is_int, int64_t *ival,
                       const char **sval);
/* Convenience: an integer constant or def; a string constant or NULL. */
int64_t st_klp_dict_config_int(const st_klp_dict *d, const char *name, int64_t def);
const char *st_klp_dict_config_str(const st_klp_dict *d, const char *name);
size_t st_klp_dict_config_count(const st_klp_dict *d);
/* i-th constant in name order: name, and as above. */
void st_klp_dict_config_at(const st_klp_dict *d, size_t i, const char **name, bool *is_int,
                           int64_t *ival, const char **sval);

/* Lookups (NULL when absent). Names are the first word of the format. */
const st_klp_msg *st_klp_dict_command(const st_klp_dict *d, const char *name);
const st_klp_msg *st_klp_dict_response(const st_klp_dict *d, const char *name);
const st_klp_msg *st_klp_dict_response_by_id(const st_klp_dict *d, int32_t id);
const st_klp_msg *st_klp_dict_command_by_id(const st_klp_dict *d, int32_t id);
size_t st_klp_dict_count(const st_klp_dict *d, bool responses);
/* Enumeration value text for a parameter (e.g. static_string_id 8 -> "Command request"), or
 * NULL. */
const char *st_klp_dict_enum_text(const st_klp_dict *d, const char *param, int64_t value);

/* Transport the build speaks, from its constants: CAN when CANBUS_FREQUENCY is set, USB
 * when it reserves USB pins (a RESERVE_PINS_USB... constant), serial when SERIAL_BAUD is set. */
typedef enum st_klp_transport {
    ST_KLP_TRANSPORT_UNKNOWN = 0,
    ST_KLP_TRANSPORT_USB,
    ST_KLP_TRANSPORT_CAN,
    ST_KLP_TRANSPORT_SERIAL,
} st_klp_transport;
st_klp_transport st_klp_dict_transport(const st_klp_dict *d, uint32_t *bitrate);
const char *st_klp_transport_name(st_klp_transport t);

/* ---- messages ---------------------------------------------------------------------------- */

/* One parameter value: integers in u (the 32-bit pattern; i for the signed reading), byte
 * strings in buf/len (len <= 255; buf points into the message being decoded or the
 * caller's memory when encoding). */
typedef struct st_klp_value {
    uint32_t u;
    int64_t i;
    const uint8_t *buf;
    size_t len;
} st_klp_value;

typedef struct st_klp_decoded {
    const st_klp_msg *msg;
    size_t n;
    st_klp_value v[ST_KLP_MAX_PARAMS];
} st_klp_decoded;

/* Encode msg with n values (n must equal msg->n_params). Returns the bytes written, or
 * ST_ERR_INVAL (too long for cap / for a block, bad count). */
int st_klp_msg_encode(const st_klp_msg *msg, const st_klp_value *vals, size_t n, uint8_t *out,
                      size_t cap, st_err *err);
/* Encode the text form "name a=1 b=2 data=0a0b" (every parameter named, buffers in hex),
 * looked up among the dictionary's commands. */
int st_klp_msg_encode_text(const st_klp_dict *d, const char *text, uint8_t *out, size_t cap,
                           st_err *err);
/* Decode one message from buf[0..n) (responses when responses, else commands). Returns the
 * bytes used, or ST_ERR_PROTO (unknown id, truncated, bad length). */
int st_klp_msg_decode(const st_klp_dict *d, bool responses, const uint8_t *buf, size_t n,
                      st_klp_decoded *out, st_err *err);
/* The value of a named parameter, or NULL. */
const st_klp_value *st_klp_decoded_get(const st_klp_decoded *m, const char *name);
/* Text form of a decoded message ("uptime high=0 clock=170000000", buffers in hex, strings
 * printable-filtered). Returns out. */
char *st_klp_decoded_format(const st_klp_decoded *m, char *out, size_t cap);

#endif
