/* Fuzz target: the entry-sequence parser (strings from job files, fixtures and the command
 * line). Property: whatever parses prints back (st_entry_seq_str) to a string that parses
 * to the same steps; whatever does not parse has an error message with a caret line. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/an3155/entry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_seq(const st_entry_seq *a, const st_entry_seq *b)
{
    if (a->n != b->n)
        abort();
    for (size_t i = 0; i < a->n; i++) {
        const st_entry_step *x = &a->steps[i], *y = &b->steps[i];
        if (x->kind != y->kind || x->pause_ms != y->pause_ms ||
            (x->kind != ST_ENTRY_PAUSE && x->level != y->level) ||
            (x->kind == ST_ENTRY_GPIO && x->gpio != y->gpio) ||
            (x->kind == ST_ENTRY_LINE && strcmp(x->name, y->name) != 0))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[512];
    size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    st_entry_plan p, q;
    st_err err;
    if (st_entry_parse(text, &p, &err) < 0) {
        if (!strchr(err.msg, '^') && strlen(text) > 0 && !strstr(err.msg, "none given"))
            abort();
        return 0;
    }
    char e[ST_ENTRY_MAX_TEXT * 2], x[ST_ENTRY_MAX_TEXT * 2], both[ST_ENTRY_MAX_TEXT * 4 + 2];
    st_entry_seq_str(&p.entry, e, sizeof e);
    st_entry_seq_str(&p.exit, x, sizeof x);
    snprintf(both, sizeof both, "%s%s%s", e, p.has_exit ? ":" : "", x);
    if (strlen(both) >= ST_ENTRY_MAX_TEXT || both[0] == '\0')
        return 0; /* canonical text may be longer (a pause split into commas) */
    if (st_entry_parse(both, &q, &err) < 0)
        abort();
    same_seq(&p.entry, &q.entry);
    same_seq(&p.exit, &q.exit);
    return 0;
}
