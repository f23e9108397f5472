/* DfuSe memory-layout parser (UM0424 §4.3.2 as dfu-util's dfuse_mem.c reads it; see
 * PROTOCOL.md §4). Hand-written instead of sscanf so it is bounded and names the column. */
#include "protocols/dfuse/layout.h"

#include <stdlib.h>
#include <string.h>

#include "station/core/text.h"

typedef struct cursor {
    const char *s;
    size_t pos;
} cursor;

static char peek(const cursor *c)
{
    return c->s[c->pos];
}

static void skip_spaces(cursor *c)
{
    while (peek(c) == ' ' || peek(c) == '\t')
        c->pos++;
}

static int fail(const cursor *c, st_err *err, const char *what)
{
    char shown[160];
    st_text_printable(c->s, shown, sizeof shown);
    return st_err_set(err, ST_ERR_INVAL, "DfuSe layout \"%s%s\": column %zu: %s", shown,
                      strlen(c->s) >= sizeof shown ? "..." : "", c->pos + 1, what);
}

/* Decimal number, at most max; spaces before it are allowed (dfu-util's %d skips them). */
static bool number(cursor *c, uint64_t max, uint64_t *out)
{
    skip_spaces(c);
    if (peek(c) < '0' || peek(c) > '9')
        return false;
    uint64_t v = 0;
    while (peek(c) >= '0' && peek(c) <= '9') {
        v = v * 10 + (uint64_t)(peek(c) - '0');
        if (v > max)
            return false;
        c->pos++;
    }
    *out = v;
    return true;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool is_type(char ch)
{
    return (ch >= 'a' && ch <= 'g') || (ch >= 'A' && ch <= 'G');
}

static int add_seg(st_dfuse_layout *l, size_t *cap, const st_dfuse_segment *seg)
{
    if (l->nsegs == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        st_dfuse_segment *n = realloc(l->segs, ncap * sizeof *n);
        if (!n)
            return ST_ERR_NOMEM;
        l->segs = n;
        *cap = ncap;
    }
    l->segs[l->nsegs++] = *seg;
    return 0;
}

void st_dfuse_layout_free(st_dfuse_layout *l)
{
    if (!l)
        return;
    free(l->segs);
    free(l);
}

static int parse(cursor *c, st_dfuse_layout *l, st_err *err)
{
    size_t cap = 0;
    if (peek(c) != '@')
        return fail(c, err, "expected '@' at the start");
    c->pos++;
    size_t name_start = c->pos;
    while (peek(c) && peek(c) != '/')
        c->pos++;
    size_t name_len = c->pos - name_start;
    if (name_len == 0)
        return fail(c, err, "empty memory name");
    while (name_len && (c->s[name_start + name_len - 1] == ' ' ||
                        c->s[name_start + name_len - 1] == '\t'))
        name_len--;
    char raw[ST_DFUSE_LAYOUT_NAME_MAX];
    size_t keep = name_len < sizeof raw - 1 ? name_len : sizeof raw - 1;
    memcpy(raw, c->s + name_start, keep);
    raw[keep] = '\0';
    st_text_printable(raw, l->name, sizeof l->name);
    /* dfu-util quirk: an interface named "Device Feature" is always R+W (type 'e'). */
    bool device_feature = strcmp(l->name, "Device Feature") == 0;

    if (peek(c) != '/')
        return fail(c, err, "expected '/0x<address>/' after the name");
    while (peek(c) == '/') {
        c->pos++;
        if (peek(c) != '0' || (c->s[c->pos + 1] != 'x' && c->s[c->pos + 1] != 'X'))
            return fail(c, err, "expected '0x' and a hexadecimal address");
        c->pos += 2;
        uint64_t addr = 0;
        size_t digits = 0;
        while (hexval(peek(c)) >= 0) {
            addr = addr << 4 | (uint64_t)hexval(peek(c));
            if (addr > UINT32_MAX)
                return fail(c, err, "address does not fit 32 bits");
            c->pos++;
            digits++;
        }
        if (!digits)
            return fail(c, err, "expected hexadecimal digits");
        if (peek(c) != '/')
            return fail(c, err, "expected '/' after the address");
        c->pos++;
        for (;;) {
            uint64_t count, size;
            if (!number(c, UINT32_MAX, &count))
                return fail(c, err, "expected a page count");
            if (count == 0)
                return fail(c, err, "page count is 0");
            if (peek(c) != '*')
                return fail(c, err, "expected '*' after the page count");
            c->pos++;
            if (!number(c, UINT32_MAX, &size))
                return fail(c, err, "expected a page size");
            if (size == 0)
                return fail(c, err, "page size is 0");
            char mult = peek(c);
            if (!mult)
                return fail(c, err, "expected a multiplier (B, K or M) and a type letter");
            size_t mult_col = c->pos;
            c->pos++;
            /* The type letter may be followed by padding before ',' '/' or the end. */
            char type = 0;
            if (is_type(peek(c))) {
                type = peek(c);
                c->pos++;
            }
            skip_spaces(c);
            if (peek(c) && peek(c) != ',' && peek(c) != '/')
                return fail(c, err, "expected ',' or '/' after the segment type");
            if (mult == 'K')
                size *= 1024;
            else if (mult == 'M')
                size *= 1024 * 1024;
            else if (mult == 'B')
                ;
            else if (is_type(mult) && !type)
                type = mult; /* "no separate type letter": the multiplier is the type */
            else if (mult == ',' || mult == '/') {
                c->pos = mult_col;
                return fail(c, err, "expected a multiplier and a type letter");
            } else
                l->nonstandard_multipliers++; /* dfu-util: "Non-valid multiplier", bytes */
            if (!type) {
                c->pos = mult_col;
                return fail(c, err, "missing segment type letter (a-g)");
            }
            if (size > UINT32_MAX)
                return fail(c, err, "page size does not fit 32 bits");
            uint64_t span = count * size;
            if (addr + span > (uint64_t)UINT32_MAX + 1)
                return fail(c, err, "segment runs past the 32-bit address space");
            if (device_feature)
                type = 'e';
            st_dfuse_segment seg = {
                .start = (uint32_t)addr, .size = span, .page_size = (uint32_t)size,
                .count = (uint32_t)count, .flags = (uint8_t)(type & 7), .type = type,
            };
            if (add_seg(l, &cap, &seg) < 0)
                return st_err_set(err, ST_ERR_NOMEM, "DfuSe layout");
            addr += span;
            if (peek(c) != ',')
                break;
            c->pos++;
        }
    }
    skip_spaces(c);
    if (peek(c))
        return fail(c, err, "unexpected character after the last segment");
    return 0;
}

int st_dfuse_layout_parse(const char *s, st_dfuse_layout **out, st_err *err)
{
    *out = NULL;
    if (!s)
        return st_err_set(err, ST_ERR_INVAL, "DfuSe layout: no string");
    st_dfuse_layout *l = calloc(1, sizeof *l);
    if (!l)
        return st_err_set(err, ST_ERR_NOMEM, "DfuSe layout");
    cursor c = {s, 0};
    int rc = parse(&c, l, err);
    if (rc < 0) {
        st_dfuse_layout_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

const st_dfuse_segment *st_dfuse_layout_find(const st_dfuse_layout *l, uint32_t addr)
{
    for (size_t i = 0; l && i < l->nsegs; i++)
        if (addr >= l->segs[i].start && addr - l->segs[i].start < l->segs[i].size)
            return &l->segs[i];
    return NULL;
}

uint32_t st_dfuse_layout_page_size(const st_dfuse_layout *l, uint32_t addr)
{
    const st_dfuse_segment *s = st_dfuse_layout_find(l, addr);
    return s ? s->page_size : 0;
}

uint32_t st_dfuse_layout_page_start(const st_dfuse_layout *l, uint32_t addr)
{
    const st_dfuse_segment *s = st_dfuse_layout_find(l, addr);
    if (!s)
        return addr;
    return s->start + (addr - s->start) / s->page_size * s->page_size;
}

uint64_t st_dfuse_layout_first_bad(const st_dfuse_layout *l, uint32_t addr, uint64_t len,
                                   unsigned flags)
{
    uint64_t a = addr, end = (uint64_t)addr + len;
    while (a < end) {
        const st_dfuse_segment *s = a <= UINT32_MAX ? st_dfuse_layout_find(l, (uint32_t)a) : NULL;
        if (!s || (s->flags & flags) != flags)
            return a;
        a = (uint64_t)s->start + s->size;
    }
    return end;
}

bool st_dfuse_layout_check(const st_dfuse_layout *l, uint32_t addr, uint64_t len, unsigned flags)
{
    return len > 0 && st_dfuse_layout_first_bad(l, addr, len, flags) == (uint64_t)addr + len;
}

bool st_dfuse_layout_writable(const st_dfuse_layout *l, uint32_t addr, uint64_t len)
{
    return st_dfuse_layout_check(l, addr, len, ST_DFUSE_MEM_WRITABLE);
}

bool st_dfuse_layout_erasable(const st_dfuse_layout *l, uint32_t addr, uint64_t len)
{
    return st_dfuse_layout_check(l, addr, len, ST_DFUSE_MEM_ERASABLE);
}
