/* Untrusted-text helpers: see text.h. */
#include "text.h"

#include <string.h>

char *st_strlcpy(char *out, const char *in, size_t cap)
{
    if (!cap)
        return out;
    size_t n = in ? strnlen(in, cap - 1) : 0;
    if (n)
        memcpy(out, in, n);
    out[n] = '\0';
    return out;
}

char *st_text_printable(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; in && in[i] && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)in[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (cap)
        out[o] = '\0';
    return out;
}

bool st_text_is_name(const char *s)
{
    size_t n = s ? strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
                 : 0;
    return n > 0 && n <= ST_TEXT_NAME_MAX && s[n] == '\0';
}

char *st_text_filename(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; in && in[i] && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)in[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_' || (c == '.' && o > 0);
        out[o++] = ok ? (char)c : '_';
    }
    if (cap) {
        out[o] = '\0';
        if (o == 0)
            st_strlcpy(out, "unknown", cap);
    }
    return out;
}
