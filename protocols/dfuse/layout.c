/* DfuSe memory-layout parser (UM0424 §4.3.2 as dfu-util's dfuse_mem.c reads it; see
 * PROTOCOL.md §4). Hand-written instead of sscanf so it is bounded and names the column. */
#include "protocols/dfuse/layout.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "station/core/text.h"

typedef struct cursor {
    const char *s;
    size_t len; /* bytes of s; s need not be NUL-terminated */
    size_t pos;
} cursor;

/* The byte at the cursor, '\0' at the end. An embedded NUL also reads as '\0', and the
 * final check (pos < len) then rejects it. */
static char peek(const cursor *c)
{
    return c->pos < c->len ? c->s[c->pos] : '\0';
}

static char peek_at(const cursor *c, size_t off)
{
    return c->pos + off < c->len ? c->s[c->pos + off] : '\0';
}

static void skip_spaces(cursor *c)
{
    while (peek(c) == ' ' || peek(c) == '\t')
        c->pos++;
}

static int fail(const cursor *c, st_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(const cursor *c, st_err *err, const char *fmt, ...)
{
    /* Quote at most 150 bytes of the string, made printable, and nothing past its length. */
    char shown[151];
    size_t n = c->len < sizeof shown - 1 ? c->len : sizeof shown - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)c->s[i];
        shown[i] = ch >= 0x20 && ch <= 0x7e ? (char)ch : '?';
    }
    shown[n] = '\0';
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return st_err_set(err, ST_ERR_INVAL, "DfuSe layout \"%s%s\": column %zu: %s", shown,
                      c->len > n ? "..." : "", c->pos + 1, what);
}

enum { NUM_OK = 0, NUM_NONE = -1, NUM_OVERFLOW = -2 };

/* Decimal number, at most max; spaces before it are allowed (dfu-util's %d skips them).
 * On overflow the cursor stays on the number's first digit, so the error points at it. */
static int number(cursor *c, uint64_t max, uint64_t *out)
{
    skip_spaces(c);
    if (peek(c) < '0' || peek(c) > '9')
        return NUM_NONE;
    size_t start = c->pos;
    uint64_t v = 0;
    while (peek(c) >= '0' && peek(c) <= '9') {
        v = v * 10 + (uint64_t)(peek(c) - '0');
        if (v > max) {
            c->pos = start;
            return NUM_OVERFLOW;
        }
        c->pos++;
    }
    *out = v;
    return NUM_OK;
}

/* "page count 99999999999 overflows 32 bits": quotes the digits (at most 40 of them). */
static int fail_number(cursor *c, st_err *err, int why, const char *what)
{
    if (why == NUM_NONE)
        return fail(c, err, "expected a %s", what);
    size_t n = 0;
    while (n < 40 && peek_at(c, n) >= '0' && peek_at(c, n) <= '9')
        n++;
    bool more = peek_at(c, n) >= '0' && peek_at(c, n) <= '9';
    return fail(c, err, "%s %.*s%s overflows 32 bits", what, (int)n, c->s + c->pos,
                more ? "..." : "");
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
    if (name_len > ST_DFUSE_LAYOUT_NAME_MAX - 1) {
        cursor at = *c;
        at.pos = name_start;
        return fail(&at, err, "memory name is %zu characters long, more than %d", name_len,
                    ST_DFUSE_LAYOUT_NAME_MAX - 1);
    }
    char raw[ST_DFUSE_LAYOUT_NAME_MAX];
    memcpy(raw, c->s + name_start, name_len);
    raw[name_len] = '\0';
    st_text_printable(raw, l->name, sizeof l->name);
    /* dfu-util quirk: an interface named "Device Feature" is always R+W (type 'e'). */
    bool device_feature = strcmp(l->name, "Device Feature") == 0;

    if (peek(c) != '/')
        return fail(c, err, "expected '/0x<address>/' after the name");
    while (peek(c) == '/') {
        c->pos++;
        if (peek(c) != '0' || (peek_at(c, 1) != 'x' && peek_at(c, 1) != 'X'))
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
            int nr = number(c, UINT32_MAX, &count);
            if (nr != NUM_OK)
                return fail_number(c, err, nr, "page count");
            if (count == 0)
                return fail(c, err, "page count is 0");
            if (peek(c) != '*')
                return fail(c, err, "expected '*' after the page count");
            c->pos++;
            nr = number(c, UINT32_MAX, &size);
            if (nr != NUM_OK)
                return fail_number(c, err, nr, "page size");
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
    if (c->pos < c->len)
        return fail(c, err, "%s", c->s[c->pos] ? "unexpected character after the last segment"
                                               : "a NUL byte inside the string");
    return 0;
}

int st_dfuse_layout_parse(const char *s, size_t len, st_dfuse_layout **out, st_err *err)
{
    *out = NULL;
    if (!s)
        return st_err_set(err, ST_ERR_INVAL, "DfuSe layout: no string");
    st_dfuse_layout *l = calloc(1, sizeof *l);
    if (!l)
        return st_err_set(err, ST_ERR_NOMEM, "DfuSe layout");
    cursor c = {s, len, 0};
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
