/* Gecko Bootloader (GBL) image files (PROTOCOL.md §5): the checks a host makes before any
 * unit is touched, the incremental stream parser the bootloader model runs on uploaded
 * bytes, and a builder for valid files (tests, the demo job, the virtual module). */
#ifndef STATION_PROTOCOLS_BGAPI_GBL_H
#define STATION_PROTOCOLS_BGAPI_GBL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "station/core/err.h"

#define ST_GBL_TAG_HEADER 0x03A617EBu
#define ST_GBL_TAG_BOOTLOADER 0xF50909F5u
#define ST_GBL_TAG_APPLICATION 0xF40A0AF4u
#define ST_GBL_TAG_METADATA 0xF60808F6u
#define ST_GBL_TAG_PROG 0xFE0101FEu
#define ST_GBL_TAG_ERASEPROG 0xFD0303FDu
#define ST_GBL_TAG_PROG_LZ4 0xFD0505FDu
#define ST_GBL_TAG_PROG_LZMA 0xFD0707FDu
#define ST_GBL_TAG_END 0xFC0404FCu
#define ST_GBL_TAG_SE_UPGRADE 0x5EA617EBu
#define ST_GBL_TAG_VERSION_DEPENDENCY 0x76A617EBu
#define ST_GBL_TAG_ENC_HEADER 0xFB0505FBu
#define ST_GBL_TAG_ENC_INIT 0xFA0606FAu
#define ST_GBL_TAG_ENC_DATA 0xF90707F9u
#define ST_GBL_TAG_SIGNATURE 0xF70A0AF7u
#define ST_GBL_TAG_CERTIFICATE 0xF30B0BF3u

#define ST_GBL_VERSION_MAJOR 0x03u       /* top byte of the header's version */
#define ST_GBL_TYPE_ENCRYPTED 0x00000001u
#define ST_GBL_TYPE_SIGNED 0x00000100u
#define ST_GBL_CRC_GOOD 0x2144DF1Cu      /* zlib crc32 of a whole valid file */
#define ST_GBL_MIN_SIZE 32               /* header tag (16) + end tag (12), rounded to 4 */
#define ST_GBL_APP_TAG_LEN 28            /* type, version, capabilities, product id[16] */

typedef struct st_gbl_info {
    uint32_t version;      /* header tag */
    uint32_t type;         /* ST_GBL_TYPE_* bits */
    uint32_t crc;          /* value stored in the end tag */
    unsigned tags;         /* including header and end */
    bool has_app;
    uint32_t app_type, app_version;
    uint64_t prog_bytes;   /* data bytes in PROG/ERASEPROG tags */
} st_gbl_info;

/* Check a whole .gbl file in memory, in this order: "length" (at least ST_GBL_MIN_SIZE and
 * a multiple of 4), "header tag" (EB 17 A6 03, length 8, version major 3), "end tag"
 * (FC 04 04 FC, length 4, at the end), "CRC-32" (zlib crc32 of the file = 0x2144DF1C),
 * "tag chain" (tag lengths lead from the header to the end tag). On failure returns
 * ST_ERR_INVAL with "<label>: GBL check '<name>' failed: <detail>". info may be NULL. */
int st_gbl_check(const uint8_t *d, size_t n, const char *label, st_gbl_info *info, st_err *err);

/* Incremental parser of an uploaded GBL stream, as the bootloader runs it. */
typedef enum st_gbl_status {
    ST_GBL_OK = 0,            /* bytes taken; more expected (or the end tag was verified) */
    ST_GBL_EOF = 1,           /* parsing was already over (done or failed before) */
    ST_GBL_ERR_HEADER = -1,   /* the stream does not start with a GBL v3 header tag */
    ST_GBL_ERR_UNSUPPORTED = -2, /* encrypted image: this bootloader has no key */
    ST_GBL_ERR_UNKNOWN_TAG = -3, /* a tag this bootloader does not know (LZ4/LZMA too) */
    ST_GBL_ERR_UNEXPECTED = -4,  /* a tag with an impossible length */
    ST_GBL_ERR_CRC = -5,      /* the end tag's CRC does not check out */
    ST_GBL_ERR_WRITE = -6,    /* the flash write callback failed */
} st_gbl_status;
const char *st_gbl_status_name(int st);

typedef struct st_gbl_parser_cb {
    /* Program n bytes at addr (PROG/ERASEPROG data, in stream order). 0 or < 0. */
    int (*prog)(void *ctx, uint32_t addr, const uint8_t *data, size_t n);
    /* The application tag's type and version. May be NULL. */
    void (*app)(void *ctx, uint32_t type, uint32_t version);
    void *ctx;
} st_gbl_parser_cb;

typedef struct st_gbl_parser {
    int state;              /* internal */
    uint8_t hdr[8];
    size_t have;            /* bytes of hdr or of the collected tag start */
    uint32_t tag_id, tag_len, tag_off;
    uint8_t head[ST_GBL_APP_TAG_LEN]; /* start of a tag body that is parsed */
    uint32_t prog_addr;
    uint32_t crc;           /* zlib crc32 so far */
    uint32_t type;
    bool seen_header, signed_, has_signature, has_app;
    bool completed, verified; /* end tag seen / its CRC checked out */
    int error;              /* first error (st_gbl_status), 0 if none */
} st_gbl_parser;

void st_gbl_parser_init(st_gbl_parser *p);
/* Feed n bytes. Returns ST_GBL_OK, ST_GBL_EOF (the parser was already done or had failed:
 * the bytes are ignored), or the error that stopped it now (sticky: later calls say EOF). */
int st_gbl_parser_feed(st_gbl_parser *p, const uint8_t *data, size_t n,
                       const st_gbl_parser_cb *cb);

/* Build a valid unencrypted, unsigned GBL: header tag, application tag (app_type,
 * app_version), one PROG tag with data at prog_addr (padded with 0xFF to 4 bytes), end tag.
 * *out is malloc'd (caller frees). 0 or ST_ERR_NOMEM. */
typedef struct st_gbl_build_opts {
    uint32_t app_type;      /* e.g. 1 << 3, Bluetooth */
    uint32_t app_version;
    uint32_t prog_addr;
    const uint8_t *data;
    size_t len;
} st_gbl_build_opts;
int st_gbl_build(const st_gbl_build_opts *o, uint8_t **out, size_t *out_len, st_err *err);

/* A deterministic synthetic NCP firmware image as a GBL (the demo job, tests): app_size
 * bytes of program data at address 0 (a plausible vector table first, then bytes from
 * seed), application type Bluetooth, version `version` (st_gbl_stack_version). */
int st_gbl_synthetic(size_t app_size, uint32_t seed, uint32_t version, uint8_t **out,
                     size_t *out_len, st_err *err);

/* The module model's convention for a stack version inside an application tag version:
 * major<<24 | minor<<16 | patch<<8 | build (build 0..255). */
static inline uint32_t st_gbl_stack_version(unsigned major, unsigned minor, unsigned patch,
                                            unsigned build)
{
    return (uint32_t)(major & 0xff) << 24 | (uint32_t)(minor & 0xff) << 16 |
           (uint32_t)(patch & 0xff) << 8 | (build & 0xff);
}

#endif
