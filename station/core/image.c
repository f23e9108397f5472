/* Image loading (.bin, DfuSe .dfu) and pre-flight validation. */
#include "image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "text.h"

#define IMAGE_MAX (16u * 1024u * 1024u)
#define DFU_MAX_GAP (64u * 1024u)

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int read_file(const char *path, uint8_t **data, size_t *size, st_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return st_err_set(err, st_err_from_errno(errno), "%s: cannot open: %s", path,
                          strerror(errno));
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 65536;
            if (cap > IMAGE_MAX + 1)
                cap = IMAGE_MAX + 1;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
        if (len > IMAGE_MAX) {
            free(buf);
            fclose(f);
            return st_err_set(err, ST_ERR_INVAL, "%s: larger than %u bytes", path, IMAGE_MAX);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return st_err_set(err, ST_ERR_IO, "%s: read error", path);
    }
    *data = buf;
    *size = len;
    return 0;
}

static int finish(st_image *img, const char *path, const char *format)
{
    img->path = strdup(path);
    if (!img->path)
        return ST_ERR_NOMEM;
    st_sha256(img->data, img->size, img->sha256);
    st_hex(img->sha256, sizeof img->sha256, false, img->sha256_hex);
    st_strlcpy(img->format, format, sizeof img->format);
    return 0;
}

/* DfuSe container (UM0391; dfu-util src/dfuse.c): prefix "DfuSe" v1, targets, elements,
 * and a 16-byte DFU suffix whose CRC covers all but its own last 4 bytes. */
static int parse_dfuse(const char *path, const uint8_t *f, size_t n, uint32_t want_addr,
                       st_image *img, st_err *err)
{
    if (n < 11 + 16)
        return st_err_set(err, ST_ERR_INVAL, "%s: DfuSe file too short (%zu bytes)", path, n);
    const uint8_t *suf = f + n - 16;
    if (memcmp(suf + 8, "UFD", 3) != 0 || suf[11] != 16)
        return st_err_set(err, ST_ERR_INVAL, "%s: missing DFU suffix", path);
    if ((suf[6] | suf[7] << 8) != 0x011A)
        return st_err_set(err, ST_ERR_INVAL, "%s: DFU suffix bcdDFU 0x%04x, DfuSe needs 0x011a",
                          path, suf[6] | suf[7] << 8);
    uint32_t crc = ~(uint32_t)crc32(0L, f, (uInt)(n - 4));
    if (crc != le32(suf + 12))
        return st_err_set(err, ST_ERR_INVAL, "%s: DFU suffix CRC 0x%08x, computed 0x%08x", path,
                          le32(suf + 12), crc);
    if (f[5] != 0x01)
        return st_err_set(err, ST_ERR_INVAL, "%s: DfuSe format version %u unsupported", path, f[5]);
    size_t body_end = n - 16;
    unsigned targets = f[10];
    if (targets != 1)
        return st_err_set(err, ST_ERR_INVAL,
                          "%s: %u targets in the DfuSe file; the station flashes exactly one", path,
                          targets);
    size_t off = 11;
    if (off + 274 > body_end || memcmp(f + off, "Target", 6) != 0)
        return st_err_set(err, ST_ERR_INVAL, "%s: bad DfuSe target prefix at offset %zu", path, off);
    uint32_t elements = le32(f + off + 270);
    off += 274;
    uint32_t lo = 0, hi = 0;
    size_t scan = off;
    for (uint32_t i = 0; i < elements; i++) {
        if (scan + 8 > body_end)
            return st_err_set(err, ST_ERR_INVAL, "%s: element %u header past end of file", path, i);
        uint32_t a = le32(f + scan), sz = le32(f + scan + 4);
        if (sz > body_end - scan - 8)
            return st_err_set(err, ST_ERR_INVAL, "%s: element %u (0x%08x, %u bytes) past end of file",
                              path, i, a, sz);
        if ((uint64_t)a + sz > 0xFFFFFFFFull)
            return st_err_set(err, ST_ERR_INVAL, "%s: element %u wraps the address space", path, i);
        if (i == 0 || a < lo)
            lo = a;
        if (i == 0 || a + sz > hi)
            hi = a + sz;
        scan += 8 + sz;
    }
    if (elements == 0 || hi == lo)
        return st_err_set(err, ST_ERR_INVAL, "%s: DfuSe file holds no data", path);
    if (want_addr && want_addr != lo)
        return st_err_set(err, ST_ERR_INVAL,
                          "%s: DfuSe file starts at 0x%08x but the job gives load address 0x%08x",
                          path, lo, want_addr);
    uint64_t span = (uint64_t)hi - lo;
    uint64_t total = 0;
    scan = off;
    for (uint32_t i = 0; i < elements; i++) {
        total += le32(f + scan + 4);
        scan += 8 + le32(f + scan + 4);
    }
    if (span > total + DFU_MAX_GAP || span > IMAGE_MAX)
        return st_err_set(err, ST_ERR_INVAL, "%s: DfuSe elements spread over %llu bytes", path,
                          (unsigned long long)span);
    img->data = malloc((size_t)span);
    if (!img->data)
        return st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
    memset(img->data, 0xFF, (size_t)span);
    scan = off;
    for (uint32_t i = 0; i < elements; i++) {
        uint32_t a = le32(f + scan), sz = le32(f + scan + 4);
        memcpy(img->data + (a - lo), f + scan + 8, sz);
        scan += 8 + sz;
    }
    img->size = (size_t)span;
    img->load_addr = lo;
    return 0;
}

int st_image_load(const char *path, uint32_t load_addr, st_image **out, st_err *err)
{
    uint8_t *file = NULL;
    size_t n = 0;
    int rc = read_file(path, &file, &n, err);
    if (rc)
        return rc;
    st_image *img = calloc(1, sizeof *img);
    if (!img) {
        free(file);
        return st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
    }
    const char *format = "bin";
    if (n >= 5 && memcmp(file, "DfuSe", 5) == 0) {
        rc = parse_dfuse(path, file, n, load_addr, img, err);
        free(file);
        format = "dfu";
    } else {
        if (n == 0)
            rc = st_err_set(err, ST_ERR_INVAL, "%s: image is empty", path);
        img->data = file;
        img->size = n;
        img->load_addr = load_addr;
    }
    if (rc == 0 && finish(img, path, format) != 0)
        rc = st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", path);
    if (rc) {
        st_image_free(img);
        return rc;
    }
    *out = img;
    return 0;
}

int st_image_from_memory(const char *label, const void *data, size_t size, uint32_t load_addr,
                         st_image **out, st_err *err)
{
    st_image *img = calloc(1, sizeof *img);
    if (!img || !(img->data = malloc(size ? size : 1))) {
        free(img);
        return st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", label);
    }
    memcpy(img->data, data, size);
    img->size = size;
    img->load_addr = load_addr;
    if (finish(img, label, "bin") != 0) {
        st_image_free(img);
        return st_err_set(err, ST_ERR_NOMEM, "%s: out of memory", label);
    }
    *out = img;
    return 0;
}

void st_image_free(st_image *img)
{
    if (!img)
        return;
    free(img->path);
    free(img->data);
    free(img);
}

int st_image_check_digest(const st_image *img, const char *pinned_hex, st_err *err)
{
    uint8_t want[ST_SHA256_LEN];
    if (!pinned_hex || !st_unhex(pinned_hex, want, sizeof want))
        return st_err_set(err, ST_ERR_INVAL, "%s: pinned sha256 \"%.80s\" is not 64 hex digits",
                          img->path, pinned_hex ? pinned_hex : "");
    if (memcmp(want, img->sha256, sizeof want) != 0)
        return st_err_set(err, ST_ERR_MISMATCH, "%s: sha256 is %s, the job pins %s", img->path,
                          img->sha256_hex, pinned_hex);
    return 0;
}

int st_image_check_fit(const st_image *img, uint32_t start, uint32_t size, st_err *err)
{
    uint64_t end = (uint64_t)img->load_addr + img->size;
    if (img->load_addr < start || end > (uint64_t)start + size)
        return st_err_set(err, ST_ERR_INVAL,
                          "%s: %zu bytes at 0x%08x do not fit the target region 0x%08x-0x%08x",
                          img->path, img->size, img->load_addr, start,
                          (uint32_t)(start + size - 1));
    return 0;
}

int st_image_check_vectors(const st_image *img, const st_mcu *mcu, st_err *err)
{
    if (img->size < 8)
        return st_err_set(err, ST_ERR_INVAL, "%s: %zu bytes is too short for a vector table",
                          img->path, img->size);
    uint32_t sp = le32(img->data), rv = le32(img->data + 4);
    uint64_t sram_end = (uint64_t)mcu->sram_start + mcu->sram_size;
    if (sp < mcu->sram_start || sp > sram_end || (sp & 3))
        return st_err_set(err, ST_ERR_INVAL,
                          "%s: initial stack pointer 0x%08x is not in %s SRAM 0x%08x-0x%08llx",
                          img->path, sp, mcu->name, mcu->sram_start, (unsigned long long)sram_end);
    if (!(rv & 1))
        return st_err_set(err, ST_ERR_INVAL, "%s: reset vector 0x%08x lacks the Thumb bit",
                          img->path, rv);
    uint32_t entry = rv & ~1u;
    if (entry < img->load_addr + 8 || (uint64_t)entry >= (uint64_t)img->load_addr + img->size)
        return st_err_set(err, ST_ERR_INVAL,
                          "%s: reset vector 0x%08x points outside the image 0x%08x-0x%08zx",
                          img->path, rv, img->load_addr, img->load_addr + img->size - 1);
    return 0;
}

static bool in_flash(const st_mcu *mcu, uint32_t a)
{
    return a >= mcu->flash_start && (uint64_t)a < (uint64_t)mcu->flash_start + mcu->flash_size;
}

void st_image_facts_of(const uint8_t *data, size_t n, const st_mcu *mcu, st_image_facts *out)
{
    memset(out, 0, sizeof *out);
    if (n >= 8) {
        out->sp = le32(data);
        out->reset = le32(data + 4);
        uint64_t sram_end = (uint64_t)mcu->sram_start + mcu->sram_size;
        out->has_vectors = out->sp >= mcu->sram_start && out->sp <= sram_end &&
                           !(out->sp & 3) && (out->reset & 1) && in_flash(mcu, out->reset & ~1u);
    }
    if (out->has_vectors) {
        uint32_t lowest = UINT32_MAX;
        for (size_t i = 1; i < 16 && 4 * i + 4 <= n; i++) {
            uint32_t v = le32(data + 4 * i);
            if ((v & 1) && in_flash(mcu, v & ~1u) && (v & ~1u) < lowest)
                lowest = v & ~1u;
        }
        uint32_t page = mcu->page_size ? mcu->page_size : 2048;
        uint32_t base = lowest - ((lowest - mcu->flash_start) % page);
        uint32_t entry = out->reset & ~1u;
        if (lowest != UINT32_MAX && entry >= base && (uint64_t)entry < (uint64_t)base + n) {
            out->link_known = true;
            out->link_addr = base;
            /* Katapult's mark sits 8 bytes before its reset handler (protocols.md 2.8). */
            size_t mark = (size_t)(entry - base);
            out->katapult = mark >= 8 && memcmp(data + mark - 8, "CanBoot!", 8) == 0;
        }
    }
    for (size_t i = 0; i + 18 <= n; i++) {
        const uint8_t *d = data + i;
        uint16_t bcd = (uint16_t)(d[2] | d[3] << 8);
        if (d[0] == 18 && d[1] == 1 && (bcd == 0x0200 || bcd == 0x0110) &&
            (d[7] == 8 || d[7] == 16 || d[7] == 32 || d[7] == 64) && d[17] >= 1 && d[17] <= 4) {
            out->usb_device = true;
            out->usb_vid = (uint16_t)(d[8] | d[9] << 8);
            out->usb_pid = (uint16_t)(d[10] | d[11] << 8);
            break;
        }
    }
}

int st_image_check_link(const st_image *img, const st_mcu *mcu, st_err *err)
{
    st_image_facts f;
    st_image_facts_of(img->data, img->size, mcu, &f);
    if (f.link_known && f.link_addr != img->load_addr)
        return st_err_set(err, ST_ERR_MISMATCH,
                          "%s: the image is linked for 0x%08x (its vector table points there) "
                          "but would be written at 0x%08x, where it cannot run",
                          img->path, f.link_addr, img->load_addr);
    return 0;
}

int st_image_validate(const st_image *img, const st_mcu *mcu, const char *pinned_hex, st_err *err)
{
    int rc = st_image_check_fit(img, mcu->flash_start, mcu->flash_size, err);
    if (!rc)
        rc = st_image_check_vectors(img, mcu, err);
    if (!rc)
        rc = st_image_check_link(img, mcu, err);
    if (!rc && pinned_hex)
        rc = st_image_check_digest(img, pinned_hex, err);
    return rc;
}
