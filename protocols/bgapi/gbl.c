/* GBL files: host-side checks, the bootloader's stream parser and a builder (see gbl.h;
 * format from reference §5.5, btl_gbl_format.h tag IDs). */
#include "protocols/bgapi/gbl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t crc_update(uint32_t crc, const uint8_t *d, size_t n)
{
    while (n) {
        uInt k = n > 0x40000000u ? 0x40000000u : (uInt)n;
        crc = (uint32_t)crc32(crc, d, k);
        d += k;
        n -= k;
    }
    return crc;
}

#define FAIL(check, ...)                                                                   \
    do {                                                                                   \
        char detail_[256];                                                                 \
        snprintf(detail_, sizeof detail_, __VA_ARGS__);                                    \
        return st_err_set(err, ST_ERR_INVAL, "%s: GBL check '%s' failed: %s", label,       \
                          check, detail_);                                                 \
    } while (0)

int st_gbl_check(const uint8_t *d, size_t n, const char *label, st_gbl_info *info, st_err *err)
{
    st_gbl_info tmp;
    st_gbl_info *in = info ? info : &tmp;
    memset(in, 0, sizeof *in);
    if (!label)
        label = "image";
    if (n < ST_GBL_MIN_SIZE)
        FAIL("length", "%zu bytes, a GBL file has at least %d", n, ST_GBL_MIN_SIZE);
    if (le32(d) != ST_GBL_TAG_HEADER)
        FAIL("header tag", "file starts with %02x %02x %02x %02x, not eb 17 a6 03", d[0], d[1],
             d[2], d[3]);
    if (le32(d + 4) != 8)
        FAIL("header tag", "header tag length %u, not 8", le32(d + 4));
    in->version = le32(d + 8);
    in->type = le32(d + 12);
    if (in->version >> 24 != ST_GBL_VERSION_MAJOR)
        FAIL("header tag", "format version 0x%08x, major is not 3", in->version);
    if (n % 4)
        FAIL("length", "%zu bytes is not a multiple of 4 (%zu over)", n, n % 4);
    const uint8_t *end = d + n - 12;
    if (le32(end) != ST_GBL_TAG_END || le32(end + 4) != 4)
        FAIL("end tag", "the last 12 bytes are not an end tag (fc 04 04 fc, length 4)");
    in->crc = le32(end + 8);
    uint32_t crc = crc_update(0, d, n);
    if (crc != ST_GBL_CRC_GOOD)
        FAIL("CRC-32", "crc32 of the file is 0x%08x, a valid file gives 0x%08x (the end tag "
             "holds 0x%08x)", crc, ST_GBL_CRC_GOOD, in->crc);
    size_t off = 0;
    for (;;) {
        if (n - off < 8)
            FAIL("tag chain", "tag at offset %zu runs past the end of the file", off);
        uint32_t id = le32(d + off), len = le32(d + off + 4);
        if (len > n - off - 8)
            FAIL("tag chain", "tag 0x%08x at offset %zu has length %u, past the end of the "
                 "file", id, off, len);
        in->tags++;
        if (id == ST_GBL_TAG_APPLICATION && len >= 12) {
            in->has_app = true;
            in->app_type = le32(d + off + 8);
            in->app_version = le32(d + off + 12);
        }
        if ((id == ST_GBL_TAG_PROG || id == ST_GBL_TAG_ERASEPROG) && len >= 4)
            in->prog_bytes += len - 4;
        if (id == ST_GBL_TAG_END) {
            if (off != n - 12)
                FAIL("tag chain", "end tag at offset %zu, %zu bytes before the end of the file",
                     off, n - off - 12);
            break;
        }
        off += 8 + len;
    }
    return 0;
}

/* ---- stream parser ------------------------------------------------------------------ */

enum { S_TAGHDR = 0, S_BODY, S_DONE, S_ERROR };

/* What a tag body is: parsed (a head collected first), streamed as flash data, or skipped. */
enum { B_SKIP = 0, B_HEADER, B_APP, B_PROG, B_END };

const char *st_gbl_status_name(int st)
{
    switch (st) {
    case ST_GBL_OK: return "ok";
    case ST_GBL_EOF: return "parsing already over";
    case ST_GBL_ERR_HEADER: return "no GBL v3 header tag";
    case ST_GBL_ERR_UNSUPPORTED: return "encrypted image not supported";
    case ST_GBL_ERR_UNKNOWN_TAG: return "unknown tag";
    case ST_GBL_ERR_UNEXPECTED: return "tag with impossible length";
    case ST_GBL_ERR_CRC: return "CRC mismatch";
    case ST_GBL_ERR_WRITE: return "flash write failed";
    }
    return "?";
}

void st_gbl_parser_init(st_gbl_parser *p)
{
    memset(p, 0, sizeof *p);
}

static int body_kind(const st_gbl_parser *p)
{
    switch (p->tag_id) {
    case ST_GBL_TAG_HEADER: return B_HEADER;
    case ST_GBL_TAG_APPLICATION: return B_APP;
    case ST_GBL_TAG_PROG:
    case ST_GBL_TAG_ERASEPROG: return B_PROG;
    case ST_GBL_TAG_END: return B_END;
    default: return B_SKIP;
    }
}

static size_t head_len(int kind, uint32_t tag_len)
{
    switch (kind) {
    case B_HEADER: return 8;
    case B_APP: return tag_len < ST_GBL_APP_TAG_LEN ? tag_len : ST_GBL_APP_TAG_LEN;
    case B_PROG: return 4;
    case B_END: return 4;
    default: return 0;
    }
}

static int fail(st_gbl_parser *p, int code)
{
    p->state = S_ERROR;
    p->error = code;
    return code;
}

/* A tag header has arrived: decide whether the stream may go on. */
static int tag_start(st_gbl_parser *p)
{
    p->tag_id = le32(p->hdr);
    p->tag_len = le32(p->hdr + 4);
    p->tag_off = 0;
    p->have = 0;
    switch (p->tag_id) {
    case ST_GBL_TAG_HEADER:
        if (p->seen_header)
            return ST_GBL_ERR_UNEXPECTED; /* a second header tag */
        return p->tag_len == 8 ? 0 : ST_GBL_ERR_HEADER;
    case ST_GBL_TAG_APPLICATION:
        return p->tag_len >= 12 ? 0 : ST_GBL_ERR_UNEXPECTED;
    case ST_GBL_TAG_PROG:
    case ST_GBL_TAG_ERASEPROG:
        return p->tag_len >= 4 ? 0 : ST_GBL_ERR_UNEXPECTED;
    case ST_GBL_TAG_END:
        return p->tag_len == 4 ? 0 : ST_GBL_ERR_UNEXPECTED;
    case ST_GBL_TAG_SIGNATURE:
        p->has_signature = true;
        return 0;
    case ST_GBL_TAG_METADATA:
    case ST_GBL_TAG_BOOTLOADER:
    case ST_GBL_TAG_VERSION_DEPENDENCY:
    case ST_GBL_TAG_CERTIFICATE:
    case ST_GBL_TAG_SE_UPGRADE:
        return 0;
    case ST_GBL_TAG_ENC_HEADER:
    case ST_GBL_TAG_ENC_INIT:
    case ST_GBL_TAG_ENC_DATA:
        return ST_GBL_ERR_UNSUPPORTED;
    default:
        return ST_GBL_ERR_UNKNOWN_TAG; /* LZ4/LZMA too: no decompressor in this bootloader */
    }
}

/* The collected head of a tag body is complete. */
static int head_done(st_gbl_parser *p, int kind, const st_gbl_parser_cb *cb)
{
    switch (kind) {
    case B_HEADER:
        if (le32(p->head) >> 24 != ST_GBL_VERSION_MAJOR)
            return ST_GBL_ERR_HEADER;
        p->type = le32(p->head + 4);
        if (p->type & ST_GBL_TYPE_ENCRYPTED)
            return ST_GBL_ERR_UNSUPPORTED;
        p->signed_ = (p->type & ST_GBL_TYPE_SIGNED) != 0;
        return 0;
    case B_APP:
        p->has_app = true;
        if (cb && cb->app)
            cb->app(cb->ctx, le32(p->head), le32(p->head + 4));
        return 0;
    case B_PROG:
        p->prog_addr = le32(p->head);
        return 0;
    case B_END:
        p->completed = true;
        if (p->crc != ST_GBL_CRC_GOOD)
            return ST_GBL_ERR_CRC;
        p->verified = true;
        p->state = S_DONE;
        return 0;
    }
    return 0;
}

int st_gbl_parser_feed(st_gbl_parser *p, const uint8_t *data, size_t n,
                       const st_gbl_parser_cb *cb)
{
    if (p->state == S_DONE || p->state == S_ERROR)
        return ST_GBL_EOF;
    while (n) {
        if (p->state == S_TAGHDR) {
            size_t k = 8 - p->have < n ? 8 - p->have : n;
            memcpy(p->hdr + p->have, data, k);
            p->crc = crc_update(p->crc, data, k);
            p->have += k;
            data += k;
            n -= k;
            if (p->have < 8)
                break;
            int rc = !p->seen_header && le32(p->hdr) != ST_GBL_TAG_HEADER ? ST_GBL_ERR_HEADER
                                                                          : tag_start(p);
            if (rc)
                return fail(p, rc);
            p->seen_header = true;
            p->state = S_BODY;
            if (p->tag_len == 0)
                p->state = S_TAGHDR;
            continue;
        }
        /* S_BODY */
        int kind = body_kind(p);
        size_t hl = head_len(kind, p->tag_len);
        size_t left = p->tag_len - p->tag_off;
        size_t k = left < n ? left : n;
        if (p->tag_off < hl) {
            size_t want = hl - p->tag_off;
            if (k > want)
                k = want;
            memcpy(p->head + p->tag_off, data, k);
        } else if (kind == B_PROG) {
            if (cb && cb->prog && cb->prog(cb->ctx, p->prog_addr, data, k) < 0) {
                p->crc = crc_update(p->crc, data, k);
                return fail(p, ST_GBL_ERR_WRITE);
            }
            p->prog_addr += (uint32_t)k;
        }
        p->crc = crc_update(p->crc, data, k);
        p->tag_off += (uint32_t)k;
        data += k;
        n -= k;
        if (p->tag_off == hl && hl && k) {
            int rc = head_done(p, kind, cb);
            if (rc)
                return fail(p, rc);
            if (p->state == S_DONE)
                return ST_GBL_OK; /* bytes after the end tag are ignored */
        }
        if (p->tag_off == p->tag_len) {
            p->state = S_TAGHDR;
            p->have = 0;
        }
    }
    return ST_GBL_OK;
}

/* ---- builder ------------------------------------------------------------------------ */

int st_gbl_build(const st_gbl_build_opts *o, uint8_t **out, size_t *out_len, st_err *err)
{
    size_t padded = (o->len + 3) & ~(size_t)3;
    size_t n = 16 + (8 + ST_GBL_APP_TAG_LEN) + (8 + 4 + padded) + 12;
    uint8_t *d = malloc(n);
    if (!d)
        return st_err_set(err, ST_ERR_NOMEM, "gbl: out of memory");
    memset(d, 0, n);
    uint8_t *p = d;
    put32(p, ST_GBL_TAG_HEADER);
    put32(p + 4, 8);
    put32(p + 8, 0x03000000u);
    put32(p + 12, 0);
    p += 16;
    put32(p, ST_GBL_TAG_APPLICATION);
    put32(p + 4, ST_GBL_APP_TAG_LEN);
    put32(p + 8, o->app_type);
    put32(p + 12, o->app_version);
    put32(p + 16, 0); /* capabilities; product id stays zero */
    p += 8 + ST_GBL_APP_TAG_LEN;
    put32(p, ST_GBL_TAG_PROG);
    put32(p + 4, (uint32_t)(4 + padded));
    put32(p + 8, o->prog_addr);
    if (o->len)
        memcpy(p + 12, o->data, o->len);
    memset(p + 12 + o->len, 0xFF, padded - o->len);
    p += 12 + padded;
    put32(p, ST_GBL_TAG_END);
    put32(p + 4, 4);
    uint32_t crc = crc_update(0, d, (size_t)(p + 8 - d));
    put32(p + 8, crc);
    *out = d;
    *out_len = n;
    return 0;
}

int st_gbl_synthetic(size_t app_size, uint32_t seed, uint32_t version, uint8_t **out,
                     size_t *out_len, st_err *err)
{
    if (app_size < 8 || app_size > 1024u * 1024u)
        return st_err_set(err, ST_ERR_INVAL, "synthetic GBL: size %zu outside 8..1048576",
                          app_size);
    uint8_t *d = malloc(app_size);
    if (!d)
        return st_err_set(err, ST_ERR_NOMEM, "gbl: out of memory");
    uint32_t x = seed ? seed : 1;
    for (size_t i = 0; i < app_size; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        d[i] = (uint8_t)x;
    }
    put32(d, 0x20010000u);  /* initial SP: top of the EFR32BG13's 64 KiB SRAM */
    put32(d + 4, 0x00000101u); /* reset handler, Thumb bit */
    st_gbl_build_opts o = {.app_type = 1u << 3, .app_version = version, .prog_addr = 0,
                           .data = d, .len = app_size};
    int rc = st_gbl_build(&o, out, out_len, err);
    free(d);
    return rc;
}
