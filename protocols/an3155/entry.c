/* Entry-sequence parser and runner: see entry.h. The grammar follows stm32flash 0.7's
 * init.c/main.c (reference 4.5 "-i"): tokens [-]N, rts, dtr, brk; ',' sleeps 100 ms and
 * '&' nothing after the previous toggle; a trailing ':' is an empty exit sequence. Where
 * stm32flash silently accepts nonsense (atoi on "2x", "--1"), we refuse it with a caret. */
#include "protocols/an3155/entry.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "station/core/clock.h"
#include "station/core/text.h"

static int caret_error(const char *text, size_t col, st_err *err, const char *cause)
{
    char shown[ST_ENTRY_MAX_TEXT + 8];
    char pad[ST_ENTRY_MAX_TEXT + 8];
    /* Untrusted text may hold control characters: show them as '?', one column each, so
     * the caret stays under the right character. */
    size_t n = 0;
    for (; text[n] && n < ST_ENTRY_MAX_TEXT; n++)
        shown[n] = isprint((unsigned char)text[n]) ? text[n] : '?';
    shown[n] = '\0';
    if (col > n)
        col = n;
    memset(pad, ' ', col);
    pad[col] = '\0';
    return st_err_set(err, ST_ERR_INVAL, "entry sequence: %s at column %zu\n  %s\n  %s^", cause,
                      col + 1, shown, pad);
}

static int add(st_entry_seq *seq, const st_entry_step *st, const char *text, st_err *err)
{
    /* ",,," is one pause of 300 ms. */
    if (st->kind == ST_ENTRY_PAUSE && seq->n && seq->steps[seq->n - 1].kind == ST_ENTRY_PAUSE) {
        seq->steps[seq->n - 1].pause_ms += st->pause_ms;
        return 0;
    }
    if (seq->n >= ST_ENTRY_MAX_STEPS)
        return caret_error(text, st->col, err, "too many steps (at most 64 per sequence)");
    seq->steps[seq->n++] = *st;
    return 0;
}

int st_entry_parse(const char *text, st_entry_plan *plan, st_err *err)
{
    if (!text || !plan)
        return st_err_set(err, ST_ERR_INVAL, "entry sequence: none given");
    memset(plan, 0, sizeof *plan);
    size_t len = strlen(text);
    if (len >= ST_ENTRY_MAX_TEXT)
        return caret_error(text, ST_ENTRY_MAX_TEXT - 1, err,
                           "too long (at most 159 characters)");
    if (len == 0)
        return st_err_set(err, ST_ERR_INVAL, "entry sequence: empty string");
    memcpy(plan->text, text, len + 1);
    st_entry_seq *seq = &plan->entry;
    bool after_signal = false; /* a delimiter or ':' may follow; a signal may not */
    size_t i = 0;
    while (i < len) {
        char c = text[i];
        st_entry_step st = {.col = (uint16_t)i};
        int rc;
        if (c == ':') {
            if (plan->has_exit)
                return caret_error(text, i, err, "a second ':' (one separates entry from exit)");
            plan->has_exit = true;
            seq = &plan->exit;
            after_signal = false;
            i++;
            continue;
        }
        if (c == ',') {
            st.kind = ST_ENTRY_PAUSE;
            st.pause_ms = ST_ENTRY_PAUSE_MS;
            if ((rc = add(seq, &st, text, err)) < 0)
                return rc;
            after_signal = false;
            i++;
            continue;
        }
        if (c == '&') {
            if (!after_signal)
                return caret_error(text, i, err, "'&' must follow a signal");
            after_signal = false;
            i++;
            continue;
        }
        if (!isalnum((unsigned char)c) && c != '-') {
            char cause[64];
            snprintf(cause, sizeof cause, "'%c' is not a signal or delimiter",
                     isprint((unsigned char)c) ? c : '?');
            return caret_error(text, i, err, cause);
        }
        if (after_signal)
            return caret_error(text, i, err,
                               "expected ',', '&' or ':' after a signal");
        st.level = 1;
        if (c == '-') {
            st.level = 0;
            i++;
            if (i >= len || !isalnum((unsigned char)text[i]))
                return caret_error(text, i, err, "'-' must be followed by a signal");
        }
        size_t start = i;
        st.col = (uint16_t)start;
        if (isdigit((unsigned char)text[i])) {
            long v = 0;
            while (i < len && isdigit((unsigned char)text[i])) {
                v = v * 10 + (text[i] - '0');
                if (v > ST_ENTRY_MAX_GPIO)
                    return caret_error(text, start, err, "GPIO number too large (at most 9999)");
                i++;
            }
            if (i < len && isalpha((unsigned char)text[i]))
                return caret_error(text, i, err, "a GPIO number ends in a letter");
            st.kind = ST_ENTRY_GPIO;
            st.gpio = (int)v;
        } else if (isalpha((unsigned char)text[i])) {
            size_t n = 0;
            while (i < len && (isalnum((unsigned char)text[i]) || text[i] == '_')) {
                i++;
                n++;
            }
            if (n >= sizeof st.name)
                return caret_error(text, start, err, "line name too long (at most 31 characters)");
            memcpy(st.name, text + start, n);
            st.name[n] = '\0';
            if (strcasecmp(st.name, "rts") == 0)
                st.kind = ST_ENTRY_RTS;
            else if (strcasecmp(st.name, "dtr") == 0)
                st.kind = ST_ENTRY_DTR;
            else if (strcasecmp(st.name, "brk") == 0)
                st.kind = ST_ENTRY_BRK;
            else
                st.kind = ST_ENTRY_LINE;
            if (st.kind != ST_ENTRY_LINE)
                st.name[0] = '\0';
        } else {
            return caret_error(text, i, err,
                               "not a signal (a GPIO number, rts, dtr, brk or a line name)");
        }
        if ((rc = add(seq, &st, text, err)) < 0)
            return rc;
        after_signal = true;
    }
    return 0;
}

int st_entry_step_error(const st_entry_plan *plan, const st_entry_step *step, int code,
                        st_err *err, const char *cause)
{
    caret_error(plan->text, step->col, err, cause);
    if (err)
        err->code = code;
    return code;
}

const char *st_entry_seq_str(const st_entry_seq *seq, char *buf, size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return buf;
    buf[0] = '\0';
    bool prev_signal = false;
    for (size_t i = 0; i < seq->n && o < cap; i++) {
        const st_entry_step *st = &seq->steps[i];
        int w;
        if (st->kind == ST_ENTRY_PAUSE) {
            for (uint32_t t = 0; t < st->pause_ms && o + 1 < cap; t += ST_ENTRY_PAUSE_MS)
                buf[o++] = ',';
            buf[o] = '\0';
            prev_signal = false;
            continue;
        }
        const char *neg = st->level ? "" : "-";
        const char *amp = prev_signal ? "&" : "";
        switch (st->kind) {
        case ST_ENTRY_GPIO: w = snprintf(buf + o, cap - o, "%s%s%d", amp, neg, st->gpio); break;
        case ST_ENTRY_LINE: w = snprintf(buf + o, cap - o, "%s%s%s", amp, neg, st->name); break;
        case ST_ENTRY_RTS: w = snprintf(buf + o, cap - o, "%s%srts", amp, neg); break;
        case ST_ENTRY_DTR: w = snprintf(buf + o, cap - o, "%s%sdtr", amp, neg); break;
        default: w = snprintf(buf + o, cap - o, "%s%sbrk", amp, neg); break;
        }
        if (w < 0 || (size_t)w >= cap - o) {
            buf[cap - 1] = '\0';
            return buf;
        }
        o += (size_t)w;
        prev_signal = true;
    }
    return buf;
}

static const char *kind_name(const st_entry_step *st, char *buf, size_t cap)
{
    switch (st->kind) {
    case ST_ENTRY_GPIO: snprintf(buf, cap, "GPIO %d", st->gpio); break;
    case ST_ENTRY_LINE: snprintf(buf, cap, "line %s", st->name); break;
    case ST_ENTRY_RTS: snprintf(buf, cap, "RTS"); break;
    case ST_ENTRY_DTR: snprintf(buf, cap, "DTR"); break;
    case ST_ENTRY_BRK: snprintf(buf, cap, "BREAK"); break;
    default: snprintf(buf, cap, "pause"); break;
    }
    return buf;
}

int st_entry_run(const st_entry_seq *seq, const st_entry_io *io, st_err *err)
{
    for (size_t i = 0; i < seq->n; i++) {
        const st_entry_step *st = &seq->steps[i];
        if (st->kind == ST_ENTRY_PAUSE) {
            st_sleep_until(st_deadline_in_ms(st->pause_ms));
            continue;
        }
        if (st->kind == ST_ENTRY_BRK && !st->level)
            continue; /* "-brk" is a no-op in stm32flash */
        int rc = io->set(io->ctx, st, err);
        if (rc < 0) {
            char what[48];
            return st_err_wrap(err, rc, "step %zu (%s %s)", i + 1,
                                 kind_name(st, what, sizeof what), st->level ? "high" : "low");
        }
    }
    return 0;
}

static uint32_t commas(uint32_t ms)
{
    uint32_t n = (ms + ST_ENTRY_PAUSE_MS - 1) / ST_ENTRY_PAUSE_MS;
    return n ? n : 1;
}

static int pause_text(uint32_t pulse_ms, char *c, size_t cap, st_err *err)
{
    uint32_t n = commas(pulse_ms);
    if (n >= cap)
        return st_err_set(err, ST_ERR_INVAL, "entry pulse of %u ms is too long", pulse_ms);
    memset(c, ',', n);
    c[n] = '\0';
    return 0;
}

int st_entry_plan_boot0_reset(uint32_t pulse_ms, st_entry_plan *plan, st_err *err)
{
    /* Line names are logical (the fixture applies active_low): boot0 asserted selects the
     * ROM; reset asserted holds the MCU in reset. Exit: boot0 released, reset pulse. */
    char c[40], text[ST_ENTRY_MAX_TEXT];
    int rc = pause_text(pulse_ms, c, sizeof c, err);
    if (rc < 0)
        return rc;
    snprintf(text, sizeof text, "boot0&reset%s-reset:-boot0&reset%s-reset", c, c);
    return st_entry_parse(text, plan, err);
}

int st_entry_plan_dtr_pulse(uint32_t pulse_ms, st_entry_plan *plan, st_err *err)
{
    /* Seed 002, "how Elegoo does it": DTR low, then back high. No exit sequence. */
    char c[40], text[ST_ENTRY_MAX_TEXT];
    int rc = pause_text(pulse_ms, c, sizeof c, err);
    if (rc < 0)
        return rc;
    snprintf(text, sizeof text, "-dtr%sdtr", c);
    return st_entry_parse(text, plan, err);
}
