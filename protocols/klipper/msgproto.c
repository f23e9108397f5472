/* Klipper message protocol without I/O: blocks, VLQ, dictionary, messages (msgproto.h). */
#include "protocols/klipper/msgproto.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "protocols/katapult/frame.h"
#include "station/core/digest.h"
#include "station/core/text.h"

/* ---- blocks -------------------------------------------------------------------------- */

uint16_t st_klp_crc16(const uint8_t *buf, size_t n)
{
    return st_kat_crc16(buf, n); /* one implementation of CRC-16/MCRF4XX in the tree */
}

size_t st_klp_block_encode(uint8_t seq, const uint8_t *content, size_t n, uint8_t *out)
{
    if (n > ST_KLP_CONTENT_MAX)
        return 0;
    size_t len = n + ST_KLP_BLOCK_MIN;
    out[0] = (uint8_t)len;
    out[1] = (uint8_t)(ST_KLP_SEQ_DEST | (seq & 0x0F));
    if (n)
        memcpy(out + 2, content, n);
    uint16_t crc = st_klp_crc16(out, n + 2);
    out[n + 2] = (uint8_t)(crc >> 8);
    out[n + 3] = (uint8_t)crc;
    out[n + 4] = ST_KLP_SYNC;
    return len;
}

static st_klp_check chk(st_klp_check_kind k, size_t len, st_klp_drop_reason r)
{
    st_klp_check c = { k, len, r };
    return c;
}

/* Invalid data at buf[0]: discard through the next 0x7E (Klipper's host rule; for a lone
 * leading 0x7E that is exactly that byte, which is the MCU's quiet case). */
static st_klp_check resync(bool *need_sync, const uint8_t *buf, size_t n, st_klp_drop_reason r)
{
    const uint8_t *p = memchr(buf, ST_KLP_SYNC, n);
    if (!p) {
        *need_sync = true;
        return chk(ST_KLP_DROP, n, r);
    }
    *need_sync = false;
    return chk(ST_KLP_DROP, (size_t)(p - buf) + 1, r);
}

st_klp_check st_klp_block_check(bool *need_sync, const uint8_t *buf, size_t n)
{
    if (n == 0)
        return chk(ST_KLP_NEED_MORE, 0, ST_KLP_DROP_NONE);
    if (*need_sync)
        return resync(need_sync, buf, n, ST_KLP_DROP_SYNC);
    if (buf[0] == ST_KLP_SYNC)
        return chk(ST_KLP_DROP, 1, ST_KLP_DROP_STRAY);
    if (n < 2)
        return chk(ST_KLP_NEED_MORE, 0, ST_KLP_DROP_NONE);
    uint8_t len = buf[0];
    if (len < ST_KLP_BLOCK_MIN || len > ST_KLP_BLOCK_MAX)
        return resync(need_sync, buf, n, ST_KLP_DROP_LENGTH);
    if ((buf[1] & 0xF0) != ST_KLP_SEQ_DEST)
        return resync(need_sync, buf, n, ST_KLP_DROP_SEQ);
    if (n < len)
        return chk(ST_KLP_NEED_MORE, 0, ST_KLP_DROP_NONE);
    if (buf[len - 1] != ST_KLP_SYNC)
        return resync(need_sync, buf, n, ST_KLP_DROP_TRAILER);
    uint16_t crc = st_klp_crc16(buf, (size_t)len - 3);
    if (buf[len - 3] != (uint8_t)(crc >> 8) || buf[len - 2] != (uint8_t)crc)
        return resync(need_sync, buf, n, ST_KLP_DROP_CRC);
    return chk(ST_KLP_BLOCK, len, ST_KLP_DROP_NONE);
}

/* ---- VLQ ----------------------------------------------------------------------------- */

size_t st_klp_vlq_encode(uint32_t v, uint8_t *out)
{
    int32_t s = (int32_t)v;
    size_t n;
    if (s >= -32 && s < 96)
        n = 1;
    else if (s >= -4096 && s < 12288)
        n = 2;
    else if (s >= -524288 && s < 1572864)
        n = 3;
    else if (s >= -67108864 && s < 201326592)
        n = 4;
    else
        n = 5;
    for (size_t i = 0; i < n; i++) {
        unsigned shift = 7u * (unsigned)(n - 1 - i);
        uint8_t g = (uint8_t)((shift >= 32 ? 0 : v >> shift) & 0x7F);
        out[i] = (uint8_t)(g | (i + 1 < n ? 0x80 : 0));
    }
    return n;
}

int st_klp_vlq_decode(const uint8_t *buf, size_t n, uint32_t *v)
{
    if (n == 0)
        return 0;
    uint8_t c = buf[0];
    uint32_t val = c & 0x7F;
    if ((c & 0x60) == 0x60)
        val |= (uint32_t)-0x20; /* first group 0x60..0x7F: negative (sign-extend) */
    size_t i = 1;
    while (c & 0x80) {
        if (i >= ST_KLP_VLQ_MAX)
            return -1;
        if (i >= n)
            return 0;
        c = buf[i++];
        val = (val << 7) | (c & 0x7F); /* modulo 2^32 */
    }
    *v = val;
    return (int)i;
}

/* ---- dictionary ---------------------------------------------------------------------- */

typedef struct cfg_entry {
    char *name;
    bool is_int;
    int64_t ival;
    char *sval;
} cfg_entry;

typedef struct enum_entry {
    char *enum_name;
    char *text;
    int64_t first;
    int64_t count; /* 1 for a plain value; a range "PA0": [0, 16] stands for PA0..PA15 */
} enum_entry;

struct st_klp_dict {
    char *version;
    char *build_versions;
    cfg_entry *cfg;
    size_t n_cfg;
    st_klp_msg *msgs;
    size_t n_msgs;
    enum_entry *enums;
    size_t n_enums;
};

static const char *type_spec[] = { "%u", "%i", "%hu", "%hi", "%c", "%s", "%.*s", "%*s" };

/* "name p=%u q=%*s": fill m (strings owned by m). */
static int parse_format(const char *fmt, st_klp_msg *m, st_err *err)
{
    m->format = strdup(fmt);
    if (!m->format)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    char *copy = strdup(fmt);
    if (!copy)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    int rc = 0;
    char *save = NULL;
    char *tok = strtok_r(copy, " ", &save);
    if (!tok) {
        rc = st_err_set(err, ST_ERR_PROTO, "empty format");
        goto out;
    }
    m->name = strdup(tok);
    if (!m->name) {
        rc = st_err_set(err, ST_ERR_NOMEM, "out of memory");
        goto out;
    }
    while ((tok = strtok_r(NULL, " ", &save)) != NULL) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok) {
            rc = st_err_set(err, ST_ERR_PROTO, "parameter without name=%%type");
            goto out;
        }
        if (m->n_params >= ST_KLP_MAX_PARAMS) {
            rc = st_err_set(err, ST_ERR_PROTO, "more than %d parameters", ST_KLP_MAX_PARAMS);
            goto out;
        }
        *eq = '\0';
        int t = -1;
        for (int i = 0; i < (int)(sizeof type_spec / sizeof *type_spec); i++)
            if (strcmp(eq + 1, type_spec[i]) == 0)
                t = i;
        if (t < 0) {
            char shown[32];
            rc = st_err_set(err, ST_ERR_PROTO, "parameter \"%s\" has unknown type \"%s\"",
                            st_text_printable(tok, shown, sizeof shown), eq + 1);
            goto out;
        }
        st_klp_param *p = &m->params[m->n_params];
        p->name = strdup(tok);
        if (!p->name) {
            rc = st_err_set(err, ST_ERR_NOMEM, "out of memory");
            goto out;
        }
        p->type = (st_klp_ptype)t;
        m->n_params++;
    }
out:
    free(copy);
    return rc;
}

static void msg_clear(st_klp_msg *m)
{
    free(m->format);
    free(m->name);
    for (size_t i = 0; i < m->n_params; i++)
        free(m->params[i].name);
}

void st_klp_dict_free(st_klp_dict *d)
{
    if (!d)
        return;
    free(d->version);
    free(d->build_versions);
    for (size_t i = 0; i < d->n_cfg; i++) {
        free(d->cfg[i].name);
        free(d->cfg[i].sval);
    }
    free(d->cfg);
    for (size_t i = 0; i < d->n_msgs; i++)
        msg_clear(&d->msgs[i]);
    free(d->msgs);
    for (size_t i = 0; i < d->n_enums; i++) {
        free(d->enums[i].enum_name);
        free(d->enums[i].text);
    }
    free(d->enums);
    free(d);
}

static int add_msgs(st_klp_dict *d, json_object *obj, bool response, const char *key,
                    st_err *err)
{
    if (!json_object_is_type(obj, json_type_object))
        return st_err_set(err, ST_ERR_PROTO, "\"%s\" is not an object", key);
    size_t add = (size_t)json_object_object_length(obj);
    st_klp_msg *n = realloc(d->msgs, (d->n_msgs + add + 2) * sizeof *n);
    if (!n)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    d->msgs = n;
    json_object_object_foreach(obj, fmt, val)
    {
        char shown[64];
        st_text_printable(fmt, shown, sizeof shown);
        if (!json_object_is_type(val, json_type_int))
            return st_err_set(err, ST_ERR_PROTO, "%s \"%s\": id is not an integer", key, shown);
        int64_t id = json_object_get_int64(val);
        if (id < -32 || id > 16383)
            return st_err_set(err, ST_ERR_PROTO, "%s \"%s\": id %" PRId64 " outside -32..16383",
                              key, shown, id);
        st_klp_msg *m = &d->msgs[d->n_msgs];
        memset(m, 0, sizeof *m);
        m->id = (int32_t)id;
        m->response = response;
        d->n_msgs++; /* counted before parsing so st_klp_dict_free frees a partial one */
        int rc = parse_format(fmt, m, err);
        if (rc)
            return st_err_wrap(err, rc, "%s \"%s\"", key, shown);
        for (size_t i = 0; i + 1 < d->n_msgs; i++) {
            if (d->msgs[i].response == response && d->msgs[i].id == m->id)
                return st_err_set(err, ST_ERR_PROTO, "%s \"%s\": id %d used twice", key, shown,
                                  m->id);
            if (d->msgs[i].response == response && strcmp(d->msgs[i].name, m->name) == 0)
                return st_err_set(err, ST_ERR_PROTO, "%s \"%s\": name used twice", key, shown);
        }
    }
    return 0;
}

static int add_default(st_klp_dict *d, const char *fmt, int32_t id, bool response, st_err *err)
{
    for (size_t i = 0; i < d->n_msgs; i++)
        if (d->msgs[i].response == response && d->msgs[i].id == id)
            return 0;
    st_klp_msg *m = &d->msgs[d->n_msgs];
    memset(m, 0, sizeof *m);
    m->id = id;
    m->response = response;
    d->n_msgs++;
    return parse_format(fmt, m, err);
}

static int cfg_cmp(const void *a, const void *b)
{
    return strcmp(((const cfg_entry *)a)->name, ((const cfg_entry *)b)->name);
}

static int add_config(st_klp_dict *d, json_object *obj, st_err *err)
{
    if (!json_object_is_type(obj, json_type_object))
        return st_err_set(err, ST_ERR_PROTO, "\"config\" is not an object");
    size_t n = (size_t)json_object_object_length(obj);
    d->cfg = calloc(n ? n : 1, sizeof *d->cfg);
    if (!d->cfg)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    json_object_object_foreach(obj, name, val)
    {
        cfg_entry *c = &d->cfg[d->n_cfg];
        c->name = strdup(name);
        if (!c->name)
            return st_err_set(err, ST_ERR_NOMEM, "out of memory");
        d->n_cfg++;
        if (json_object_is_type(val, json_type_int)) {
            c->is_int = true;
            c->ival = json_object_get_int64(val);
        } else if (json_object_is_type(val, json_type_string)) {
            c->sval = strdup(json_object_get_string(val));
            if (!c->sval)
                return st_err_set(err, ST_ERR_NOMEM, "out of memory");
        } else {
            char shown[48];
            return st_err_set(err, ST_ERR_PROTO, "config \"%s\" is neither integer nor string",
                              st_text_printable(name, shown, sizeof shown));
        }
    }
    qsort(d->cfg, d->n_cfg, sizeof *d->cfg, cfg_cmp);
    return 0;
}

static int add_enums(st_klp_dict *d, json_object *obj, st_err *err)
{
    if (!json_object_is_type(obj, json_type_object))
        return st_err_set(err, ST_ERR_PROTO, "\"enumerations\" is not an object");
    json_object_object_foreach(obj, ename, evals)
    {
        if (!json_object_is_type(evals, json_type_object))
            return st_err_set(err, ST_ERR_PROTO, "enumeration is not an object");
        json_object_object_foreach(evals, text, v)
        {
            int64_t first, count = 1;
            if (json_object_is_type(v, json_type_int)) {
                first = json_object_get_int64(v);
            } else if (json_object_is_type(v, json_type_array) &&
                       json_object_array_length(v) == 2 &&
                       json_object_is_type(json_object_array_get_idx(v, 0), json_type_int) &&
                       json_object_is_type(json_object_array_get_idx(v, 1), json_type_int)) {
                first = json_object_get_int64(json_object_array_get_idx(v, 0));
                count = json_object_get_int64(json_object_array_get_idx(v, 1));
                if (count < 1 || count > 65536)
                    return st_err_set(err, ST_ERR_PROTO, "enumeration range count %" PRId64,
                                      count);
            } else {
                return st_err_set(err, ST_ERR_PROTO, "enumeration value is not an integer or "
                                                     "[first, count]");
            }
            enum_entry *n = realloc(d->enums, (d->n_enums + 1) * sizeof *n);
            if (!n)
                return st_err_set(err, ST_ERR_NOMEM, "out of memory");
            d->enums = n;
            enum_entry *e = &d->enums[d->n_enums];
            e->enum_name = strdup(ename);
            e->text = strdup(text);
            e->first = first;
            e->count = count;
            d->n_enums++;
            if (!e->enum_name || !e->text)
                return st_err_set(err, ST_ERR_NOMEM, "out of memory");
        }
    }
    return 0;
}

static const st_klp_msg *find(const st_klp_dict *d, bool response, const char *name, int32_t id,
                              bool by_id);

static int dict_build(json_object *root, st_klp_dict *d, st_err *err)
{
    if (!json_object_is_type(root, json_type_object))
        return st_err_set(err, ST_ERR_PROTO, "the dictionary is not a JSON object");
    json_object *v;
    if (!json_object_object_get_ex(root, "version", &v) || !json_object_is_type(v, json_type_string))
        return st_err_set(err, ST_ERR_PROTO, "no \"version\" string");
    d->version = strdup(json_object_get_string(v));
    const char *bv = "";
    if (json_object_object_get_ex(root, "build_versions", &v) &&
        json_object_is_type(v, json_type_string))
        bv = json_object_get_string(v);
    d->build_versions = strdup(bv);
    if (!d->version || !d->build_versions)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    if (!json_object_object_get_ex(root, "config", &v))
        return st_err_set(err, ST_ERR_PROTO, "no \"config\"");
    int rc = add_config(d, v, err);
    if (rc)
        return rc;
    bool is_int;
    if (st_klp_dict_config(d, "CLOCK_FREQ", &is_int, NULL, NULL) || !is_int ||
        st_klp_dict_config_int(d, "CLOCK_FREQ", 0) <= 0)
        return st_err_set(err, ST_ERR_PROTO, "config has no positive integer CLOCK_FREQ");
    if (!json_object_object_get_ex(root, "commands", &v))
        return st_err_set(err, ST_ERR_PROTO, "no \"commands\"");
    if ((rc = add_msgs(d, v, false, "commands", err)) != 0)
        return rc;
    if (!json_object_object_get_ex(root, "responses", &v))
        return st_err_set(err, ST_ERR_PROTO, "no \"responses\"");
    if ((rc = add_msgs(d, v, true, "responses", err)) != 0)
        return rc;
    /* The two ids fixed before any dictionary exists (PROTOCOL.md 4.1). */
    if ((rc = add_default(d, "identify offset=%u count=%c", 1, false, err)) != 0 ||
        (rc = add_default(d, "identify_response offset=%u data=%.*s", 0, true, err)) != 0)
        return rc;
    /* Those two are fixed by the protocol: a dictionary that moves or redefines them
     * cannot have come from a working build. */
    const st_klp_msg *idc = find(d, false, NULL, 1, true), *idr = find(d, true, NULL, 0, true);
    if (strcmp(idc->format, "identify offset=%u count=%c") != 0 ||
        strcmp(idr->format, "identify_response offset=%u data=%.*s") != 0 ||
        find(d, false, "identify", 0, false) != idc ||
        find(d, true, "identify_response", 0, false) != idr)
        return st_err_set(err, ST_ERR_PROTO,
                          "identify (1) and identify_response (0) are not the protocol's");
    if (json_object_object_get_ex(root, "enumerations", &v) && (rc = add_enums(d, v, err)) != 0)
        return rc;
    return 0;
}

int st_klp_dict_parse(const char *json, size_t len, st_klp_dict **out, st_err *err)
{
    if (len > ST_KLP_DICT_JSON_MAX)
        return st_err_set(err, ST_ERR_PROTO, "dictionary of %zu bytes exceeds %u", len,
                          ST_KLP_DICT_JSON_MAX);
    if (memchr(json, '\0', len))
        return st_err_set(err, ST_ERR_PROTO, "dictionary holds a NUL byte");
    json_tokener *tok = json_tokener_new_ex(16);
    if (!tok)
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    json_object *root = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success) {
        json_object_put(root);
        return st_err_set(err, ST_ERR_PROTO, "dictionary JSON: %s at byte %zu",
                          json_tokener_error_desc(jerr == json_tokener_success
                                                      ? json_tokener_continue
                                                      : jerr),
                          used);
    }
    if (used != len) {
        json_object_put(root);
        return st_err_set(err, ST_ERR_PROTO, "dictionary JSON: trailing bytes at %zu", used);
    }
    st_klp_dict *d = calloc(1, sizeof *d);
    if (!d) {
        json_object_put(root);
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    }
    int rc = dict_build(root, d, err);
    json_object_put(root);
    if (rc) {
        st_klp_dict_free(d);
        return st_err_wrap(err, rc, "dictionary");
    }
    *out = d;
    return 0;
}

int st_klp_dict_from_zlib(const uint8_t *z, size_t n, size_t *used, st_klp_dict **out,
                          st_err *err)
{
    if (n > ST_KLP_DICT_ZMAX)
        n = ST_KLP_DICT_ZMAX; /* a stream that is not done by then is refused below */
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK)
        return st_err_set(err, ST_ERR_NOMEM, "zlib: cannot initialise");
    size_t cap = 16384, have = 0;
    char *buf = malloc(cap);
    if (!buf) {
        inflateEnd(&zs);
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    }
    zs.next_in = (Bytef *)z;
    zs.avail_in = (uInt)n;
    int zrc;
    for (;;) {
        if (have == cap) {
            if (cap >= ST_KLP_DICT_JSON_MAX) {
                free(buf);
                inflateEnd(&zs);
                return st_err_set(err, ST_ERR_PROTO, "dictionary inflates past %u bytes",
                                  ST_KLP_DICT_JSON_MAX);
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                inflateEnd(&zs);
                return st_err_set(err, ST_ERR_NOMEM, "out of memory");
            }
            buf = nb;
            cap *= 2;
        }
        zs.next_out = (Bytef *)buf + have;
        zs.avail_out = (uInt)(cap - have);
        zrc = inflate(&zs, Z_NO_FLUSH);
        have = cap - zs.avail_out;
        if (zrc == Z_STREAM_END)
            break;
        if (zrc == Z_BUF_ERROR && zs.avail_in == 0) {
            free(buf);
            inflateEnd(&zs);
            return st_err_set(err, ST_ERR_PROTO, "dictionary: zlib stream is truncated");
        }
        if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
            char m[64];
            st_strlcpy(m, zs.msg ? zs.msg : "error", sizeof m);
            free(buf);
            inflateEnd(&zs);
            return st_err_set(err, ST_ERR_PROTO, "dictionary: zlib: %s", m);
        }
    }
    size_t took = n - zs.avail_in;
    inflateEnd(&zs);
    int rc = st_klp_dict_parse(buf, have, out, err);
    free(buf);
    if (rc == 0 && used)
        *used = took;
    return rc;
}

int st_klp_image_dict(const uint8_t *data, size_t n, size_t *off, size_t *zlen,
                      st_klp_dict **out, st_err *err)
{
    for (size_t i = 0; i + 2 < n; i++) {
        /* A zlib header: deflate with a 32 KiB window (0x78) and a valid check value. */
        if (data[i] != 0x78 || ((unsigned)data[i] << 8 | data[i + 1]) % 31 != 0 ||
            (data[i + 1] & 0x20))
            continue;
        size_t used;
        if (st_klp_dict_from_zlib(data + i, n - i, &used, out, NULL) == 0) {
            *off = i;
            *zlen = used;
            return 0;
        }
    }
    return st_err_set(err, ST_ERR_NOTFOUND, "no Klipper data dictionary in the image");
}

const char *st_klp_dict_version(const st_klp_dict *d) { return d->version; }
const char *st_klp_dict_build_versions(const st_klp_dict *d) { return d->build_versions; }

static const cfg_entry *cfg_find(const st_klp_dict *d, const char *name)
{
    cfg_entry key = { .name = (char *)name };
    return d->cfg ? bsearch(&key, d->cfg, d->n_cfg, sizeof *d->cfg, cfg_cmp) : NULL;
}

int st_klp_dict_config(const st_klp_dict *d, const char *name, bool *is_int, int64_t *ival,
                       const char **sval)
{
    const cfg_entry *c = cfg_find(d, name);
    if (!c)
        return ST_ERR_NOTFOUND;
    if (is_int)
        *is_int = c->is_int;
    if (ival)
        *ival = c->ival;
    if (sval)
        *sval = c->sval;
    return 0;
}

int64_t st_klp_dict_config_int(const st_klp_dict *d, const char *name, int64_t def)
{
    const cfg_entry *c = cfg_find(d, name);
    return c && c->is_int ? c->ival : def;
}

const char *st_klp_dict_config_str(const st_klp_dict *d, const char *name)
{
    const cfg_entry *c = cfg_find(d, name);
    return c && !c->is_int ? c->sval : NULL;
}

size_t st_klp_dict_config_count(const st_klp_dict *d) { return d->n_cfg; }

void st_klp_dict_config_at(const st_klp_dict *d, size_t i, const char **name, bool *is_int,
                           int64_t *ival, const char **sval)
{
    const cfg_entry *c = &d->cfg[i];
    *name = c->name;
    *is_int = c->is_int;
    *ival = c->ival;
    *sval = c->sval;
}

static const st_klp_msg *find(const st_klp_dict *d, bool response, const char *name, int32_t id,
                              bool by_id)
{
    for (size_t i = 0; i < d->n_msgs; i++) {
        const st_klp_msg *m = &d->msgs[i];
        if (m->response != response)
            continue;
        if (by_id ? m->id == id : strcmp(m->name, name) == 0)
            return m;
    }
    return NULL;
}

const st_klp_msg *st_klp_dict_command(const st_klp_dict *d, const char *name)
{
    return find(d, false, name, 0, false);
}
const st_klp_msg *st_klp_dict_response(const st_klp_dict *d, const char *name)
{
    return find(d, true, name, 0, false);
}
const st_klp_msg *st_klp_dict_response_by_id(const st_klp_dict *d, int32_t id)
{
    return find(d, true, NULL, id, true);
}
const st_klp_msg *st_klp_dict_command_by_id(const st_klp_dict *d, int32_t id)
{
    return find(d, false, NULL, id, true);
}

size_t st_klp_dict_count(const st_klp_dict *d, bool responses)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n_msgs; i++)
        n += d->msgs[i].response == responses;
    return n;
}

const char *st_klp_dict_enum_text(const st_klp_dict *d, const char *param, int64_t value)
{
    size_t plen = strlen(param);
    for (size_t i = 0; i < d->n_enums; i++) {
        const enum_entry *e = &d->enums[i];
        size_t elen = strlen(e->enum_name);
        bool applies = strcmp(param, e->enum_name) == 0 ||
                       (plen > elen + 1 && param[plen - elen - 1] == '_' &&
                        strcmp(param + plen - elen, e->enum_name) == 0);
        if (applies && e->count == 1 && value == e->first)
            return e->text;
    }
    return NULL;
}

st_klp_transport st_klp_dict_transport(const st_klp_dict *d, uint32_t *bitrate)
{
    if (bitrate)
        *bitrate = 0;
    int64_t f = st_klp_dict_config_int(d, "CANBUS_FREQUENCY", 0);
    if (f > 0) {
        if (bitrate)
            *bitrate = f > UINT32_MAX ? UINT32_MAX : (uint32_t)f;
        return ST_KLP_TRANSPORT_CAN;
    }
    for (size_t i = 0; i < d->n_cfg; i++)
        if (strncmp(d->cfg[i].name, "RESERVE_PINS_USB", 16) == 0)
            return ST_KLP_TRANSPORT_USB;
    f = st_klp_dict_config_int(d, "SERIAL_BAUD", 0);
    if (f > 0) {
        if (bitrate)
            *bitrate = f > UINT32_MAX ? UINT32_MAX : (uint32_t)f;
        return ST_KLP_TRANSPORT_SERIAL;
    }
    return ST_KLP_TRANSPORT_UNKNOWN;
}

const char *st_klp_transport_name(st_klp_transport t)
{
    switch (t) {
    case ST_KLP_TRANSPORT_USB: return "usb";
    case ST_KLP_TRANSPORT_CAN: return "can";
    case ST_KLP_TRANSPORT_SERIAL: return "serial";
    default: return "unknown";
    }
}

/* ---- messages ------------------------------------------------------------------------ */

int st_klp_msg_encode(const st_klp_msg *msg, const st_klp_value *vals, size_t n, uint8_t *out,
                      size_t cap, st_err *err)
{
    if (n != msg->n_params)
        return st_err_set(err, ST_ERR_INVAL, "%s takes %zu parameters, got %zu", msg->name,
                          msg->n_params, n);
    uint8_t tmp[ST_KLP_BLOCK_MAX * 8];
    size_t pos = st_klp_vlq_encode((uint32_t)msg->id, tmp);
    for (size_t i = 0; i < n; i++) {
        const st_klp_param *p = &msg->params[i];
        if (st_klp_ptype_is_bytes(p->type)) {
            if (vals[i].len > 255 || pos + 1 + vals[i].len > sizeof tmp)
                return st_err_set(err, ST_ERR_INVAL, "%s %s: %zu bytes is too long", msg->name,
                                  p->name, vals[i].len);
            tmp[pos++] = (uint8_t)vals[i].len;
            if (vals[i].len)
                memcpy(tmp + pos, vals[i].buf, vals[i].len);
            pos += vals[i].len;
        } else {
            if (pos + ST_KLP_VLQ_MAX > sizeof tmp)
                return st_err_set(err, ST_ERR_INVAL, "%s: too long", msg->name);
            pos += st_klp_vlq_encode(vals[i].u, tmp + pos);
        }
    }
    if (pos > ST_KLP_CONTENT_MAX || pos > cap)
        return st_err_set(err, ST_ERR_INVAL, "%s: %zu bytes do not fit in a block (%d)",
                          msg->name, pos, ST_KLP_CONTENT_MAX);
    memcpy(out, tmp, pos);
    return (int)pos;
}

static bool parse_int(const char *s, int64_t *v)
{
    errno = 0;
    char *end;
    long long x = strtoll(s, &end, 0);
    if (errno || end == s || *end || x < INT32_MIN || x > UINT32_MAX)
        return false;
    *v = x;
    return true;
}

int st_klp_msg_encode_text(const st_klp_dict *d, const char *text, uint8_t *out, size_t cap,
                           st_err *err)
{
    char copy[256];
    if (strlen(text) >= sizeof copy)
        return st_err_set(err, ST_ERR_INVAL, "command text too long");
    st_strlcpy(copy, text, sizeof copy);
    char *save = NULL;
    char *name = strtok_r(copy, " ", &save);
    if (!name)
        return st_err_set(err, ST_ERR_INVAL, "empty command");
    char shown[64];
    const st_klp_msg *m = st_klp_dict_command(d, name);
    if (!m)
        return st_err_set(err, ST_ERR_NOTFOUND, "the unit's dictionary has no command \"%s\"",
                          st_text_printable(name, shown, sizeof shown));
    st_klp_value v[ST_KLP_MAX_PARAMS];
    uint8_t bufs[ST_KLP_MAX_PARAMS][ST_KLP_CONTENT_MAX];
    bool set[ST_KLP_MAX_PARAMS] = { false };
    memset(v, 0, sizeof v);
    char *tok;
    while ((tok = strtok_r(NULL, " ", &save)) != NULL) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return st_err_set(err, ST_ERR_INVAL, "%s: \"%s\" is not name=value", m->name,
                              st_text_printable(tok, shown, sizeof shown));
        *eq = '\0';
        size_t i = 0;
        while (i < m->n_params && strcmp(m->params[i].name, tok) != 0)
            i++;
        if (i == m->n_params)
            return st_err_set(err, ST_ERR_INVAL, "%s has no parameter \"%s\" (format \"%s\")",
                              m->name, st_text_printable(tok, shown, sizeof shown), m->format);
        const char *val = eq + 1;
        if (st_klp_ptype_is_bytes(m->params[i].type)) {
            size_t hl = strlen(val);
            if (hl % 2 || hl / 2 > ST_KLP_CONTENT_MAX)
                return st_err_set(err, ST_ERR_INVAL, "%s %s: give bytes as hex (at most %d)",
                                  m->name, tok, ST_KLP_CONTENT_MAX);
            for (size_t k = 0; k < hl / 2; k++) {
                int hi = st_hexval(val[2 * k]), lo = st_hexval(val[2 * k + 1]);
                if (hi < 0 || lo < 0)
                    return st_err_set(err, ST_ERR_INVAL, "%s %s: not hex", m->name, tok);
                bufs[i][k] = (uint8_t)(hi << 4 | lo);
            }
            v[i].buf = bufs[i];
            v[i].len = hl / 2;
        } else {
            int64_t x;
            if (!parse_int(val, &x))
                return st_err_set(err, ST_ERR_INVAL, "%s %s: \"%s\" is not a 32-bit integer",
                                  m->name, tok, st_text_printable(val, shown, sizeof shown));
            v[i].u = (uint32_t)x;
            v[i].i = x;
        }
        set[i] = true;
    }
    for (size_t i = 0; i < m->n_params; i++)
        if (!set[i])
            return st_err_set(err, ST_ERR_INVAL, "%s: parameter %s missing (format \"%s\")",
                              m->name, m->params[i].name, m->format);
    return st_klp_msg_encode(m, v, m->n_params, out, cap, err);
}

int st_klp_msg_decode(const st_klp_dict *d, bool responses, const uint8_t *buf, size_t n,
                      st_klp_decoded *out, st_err *err)
{
    uint32_t id;
    int k = st_klp_vlq_decode(buf, n, &id);
    if (k <= 0)
        return st_err_set(err, ST_ERR_PROTO, "truncated message id");
    if (k > 2)
        return st_err_set(err, ST_ERR_PROTO, "message id of %d bytes", k);
    const st_klp_msg *m = find(d, responses, NULL, (int32_t)id, true);
    if (!m)
        return st_err_set(err, ST_ERR_PROTO, "message id %d is not in the dictionary",
                          (int32_t)id);
    size_t pos = (size_t)k;
    out->msg = m;
    out->n = m->n_params;
    for (size_t i = 0; i < m->n_params; i++) {
        st_klp_value *v = &out->v[i];
        memset(v, 0, sizeof *v);
        st_klp_ptype t = m->params[i].type;
        if (st_klp_ptype_is_bytes(t)) {
            if (pos >= n)
                return st_err_set(err, ST_ERR_PROTO, "%s %s: truncated", m->name,
                                  m->params[i].name);
            size_t len = buf[pos++]; /* one raw byte (PROTOCOL.md 3.1) */
            if (len > n - pos)
                return st_err_set(err, ST_ERR_PROTO, "%s %s: length %zu past the end",
                                  m->name, m->params[i].name, len);
            v->buf = buf + pos;
            v->len = len;
            pos += len;
        } else {
            uint32_t x;
            k = st_klp_vlq_decode(buf + pos, n - pos, &x);
            if (k <= 0)
                return st_err_set(err, ST_ERR_PROTO, "%s %s: %s", m->name, m->params[i].name,
                                  k == 0 ? "truncated" : "integer longer than 5 bytes");
            pos += (size_t)k;
            v->u = x;
            v->i = (t == ST_KLP_P_I32 || t == ST_KLP_P_I16) ? (int64_t)(int32_t)x : (int64_t)x;
        }
    }
    return (int)pos;
}

const st_klp_value *st_klp_decoded_get(const st_klp_decoded *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->msg->params[i].name, name) == 0)
            return &m->v[i];
    return NULL;
}

char *st_klp_decoded_format(const st_klp_decoded *m, char *out, size_t cap)
{
    size_t pos = 0;
    out[0] = '\0';
#define PUT(...)                                                                               \
    do {                                                                                       \
        if (pos < cap) {                                                                       \
            int w_ = snprintf(out + pos, cap - pos, __VA_ARGS__);                              \
            pos = w_ < 0 ? cap : pos + (size_t)w_;                                             \
        }                                                                                      \
    } while (0)
    PUT("%s", m->msg->name);
    for (size_t i = 0; i < m->n; i++) {
        const st_klp_param *p = &m->msg->params[i];
        const st_klp_value *v = &m->v[i];
        PUT(" %s=", p->name);
        if (p->type == ST_KLP_P_STRING) {
            char raw[256], shown[256];
            memcpy(raw, v->buf, v->len);
            raw[v->len] = '\0';
            PUT("%s", st_text_printable(raw, shown, sizeof shown));
        } else if (st_klp_ptype_is_bytes(p->type)) {
            for (size_t k = 0; k < v->len; k++)
                PUT("%02x", v->buf[k]);
        } else if (p->type == ST_KLP_P_I32 || p->type == ST_KLP_P_I16) {
            PUT("%" PRId64, v->i);
        } else {
            PUT("%" PRIu32, v->u);
        }
    }
#undef PUT
    if (pos >= cap && cap > 0)
        out[cap - 1] = '\0';
    return out;
}
