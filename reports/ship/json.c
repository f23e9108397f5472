/* Report-to-JSON conversion and a small JSON string writer (see json.h). */
#include "reports/ship/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void st_jbuf_add(st_jbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void st_jbuf_fmt(st_jbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->oom = 1;
        return;
    }
    st_jbuf_add(b, tmp, (size_t)n);
}

void st_jbuf_str(st_jbuf *b, const char *s)
{
    st_jbuf_add(b, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = NULL;
        char u[8];
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(u, sizeof u, "\\u%04x", c);
            esc = u;
        }
        if (esc) {
            st_jbuf_add(b, run, (size_t)(s - run));
            st_jbuf_add(b, esc, strlen(esc));
            run = s + 1;
        }
    }
    st_jbuf_add(b, run, (size_t)(s - run));
    st_jbuf_add(b, "\"", 1);
}

/* RFC 8259 number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int is_json_number(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '0')
        s++;
    else if (*s >= '1' && *s <= '9')
        s += strspn(s, "0123456789");
    else
        return 0;
    if (*s == '.') {
        s++;
        size_t d = strspn(s, "0123456789");
        if (!d)
            return 0;
        s += d;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        size_t d = strspn(s, "0123456789");
        if (!d)
            return 0;
        s += d;
    }
    return *s == '\0';
}

static void emit(st_jbuf *b, const st_rnode *n, int depth)
{
    st_rtype t = st_rnode_type(n);
    if (t == ST_RMAP || t == ST_RSEQ) {
        st_jbuf_add(b, t == ST_RMAP ? "{" : "[", 1);
        for (size_t i = 0; i < st_rnode_len(n); i++) {
            const st_rnode *k = st_rnode_child(n, i);
            if (i)
                st_jbuf_add(b, ",", 1);
            if (t == ST_RMAP) {
                st_jbuf_str(b, st_rnode_key(k) ? st_rnode_key(k) : "");
                st_jbuf_add(b, ":", 1);
            }
            emit(b, k, depth + 1);
        }
        st_jbuf_add(b, t == ST_RMAP ? "}" : "]", 1);
        return;
    }
    const char *s = st_rnode_text(n);
    if (!s)
        s = "";
    switch (t) {
    case ST_RBOOL:
        st_jbuf_add(b, s[0] == 't' || s[0] == 'T' ? "true" : "false", s[0] == 't' || s[0] == 'T' ? 4 : 5);
        return;
    case ST_RNULL:
        st_jbuf_add(b, "null", 4);
        return;
    case ST_RINT:
    case ST_RFLOAT:
        if (is_json_number(s)) {
            st_jbuf_add(b, s, strlen(s));
            return;
        }
        break;
    default:
        break;
    }
    st_jbuf_str(b, s);
}

int st_report_json(const st_rnode *doc, char **out, size_t *len, st_err *err)
{
    st_jbuf b = { 0 };
    emit(&b, doc, 0);
    if (b.oom || !b.p) {
        free(b.p);
        return st_err_set(err, ST_ERR_NOMEM, "out of memory");
    }
    *out = b.p;
    if (len)
        *len = b.len;
    return 0;
}
